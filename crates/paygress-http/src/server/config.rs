//! [`HttpConfig`]: the API's tunables and how they are read.

use std::time::Duration;

use crate::error::HttpError;

/// Tunables of the HTTP API (defaults in each field's doc).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct HttpConfig {
    /// Largest request body accepted; larger ones answer `413`. Default: 64 KiB.
    pub body_limit_bytes: usize,
    /// Longest a request may take before it answers `503`. Default: 30 s. A paid request keeps
    /// running after that; the buyer gets its answer by sending it again.
    pub request_timeout: Duration,
    /// Minutes a `402` payment request asks for when the body names no duration (the
    /// seed's `DEFAULT_POD_DURATION_MINUTES`). Default: 60.
    pub default_duration_minutes: u64,
    /// Requests per minute one client IP may make (`/healthz` exempt), as a token bucket
    /// holding a minute's worth; past it requests answer `429`. `None` means unlimited.
    /// Default: 120.
    pub rate_limit_per_minute: Option<u32>,
    /// Take the client IP (for the rate limit) from the last `X-Forwarded-For` entry
    /// instead of the connection's peer. Turn on only behind exactly one reverse proxy
    /// that appends the client address to `X-Forwarded-For` (nginx
    /// `proxy_add_x_forwarded_for`, Caddy and Traefik by default) and is the only way
    /// to reach the port: anyone who can connect directly could otherwise pick their
    /// own address. Default: off.
    pub trust_forwarded_for: bool,
    /// How long `/healthz` waits for the backend to list its leases. Default: 2 s.
    pub health_check_timeout: Duration,
}

impl Default for HttpConfig {
    fn default() -> Self {
        Self {
            body_limit_bytes: 64 * 1024,
            request_timeout: Duration::from_secs(30),
            default_duration_minutes: 60,
            rate_limit_per_minute: Some(DEFAULT_RATE_LIMIT_PER_MINUTE),
            trust_forwarded_for: false,
            health_check_timeout: Duration::from_secs(2),
        }
    }
}

impl HttpConfig {
    /// Reads the configuration by variable name through `lookup` (the binary passes
    /// the settings it read once, from flags, environment and config file); unset
    /// variables keep their default.
    ///
    /// | variable | field |
    /// |---|---|
    /// | `HTTP_BODY_LIMIT_BYTES` | `body_limit_bytes` |
    /// | `HTTP_REQUEST_TIMEOUT_SECS` | `request_timeout` |
    /// | `DEFAULT_POD_DURATION_MINUTES` (seed) | `default_duration_minutes` |
    /// | `HTTP_RATE_LIMIT_PER_MINUTE` (0 = unlimited) | `rate_limit_per_minute` |
    /// | `HTTP_TRUST_FORWARDED_FOR` (`true`/`false`) | `trust_forwarded_for` |
    ///
    /// `BIND_ADDR` (seed, default `0.0.0.0:8080`) is the binary's to bind; see
    /// [`HttpApi::serve`].
    pub fn from_lookup(lookup: impl Fn(&str) -> Option<String>) -> Result<Self, HttpError> {
        fn parse<T: std::str::FromStr>(
            lookup: &impl Fn(&str) -> Option<String>,
            name: &'static str,
        ) -> Result<Option<T>, HttpError> {
            match lookup(name) {
                None => Ok(None),
                Some(v) if v.trim().is_empty() => Ok(None),
                Some(v) => v.trim().parse().map(Some).map_err(|_| HttpError::Config {
                    name,
                    value: v.clone(),
                }),
            }
        }
        let mut c = Self::default();
        if let Some(v) = parse::<usize>(&lookup, "HTTP_BODY_LIMIT_BYTES")? {
            c.body_limit_bytes = v;
        }
        if let Some(v) = parse::<u64>(&lookup, "HTTP_REQUEST_TIMEOUT_SECS")? {
            c.request_timeout = Duration::from_secs(v.max(1));
        }
        if let Some(v) = parse::<u64>(&lookup, "DEFAULT_POD_DURATION_MINUTES")? {
            c.default_duration_minutes = v.max(1);
        }
        if let Some(v) = parse::<u32>(&lookup, "HTTP_RATE_LIMIT_PER_MINUTE")? {
            c.rate_limit_per_minute = (v > 0).then_some(v);
        }
        if let Some(v) = parse::<bool>(&lookup, "HTTP_TRUST_FORWARDED_FOR")? {
            c.trust_forwarded_for = v;
        }
        Ok(c)
    }
}

/// Default of [`HttpConfig::rate_limit_per_minute`]: far above one buyer's use (a web page
/// and the CLI make a handful of requests per lease).
pub const DEFAULT_RATE_LIMIT_PER_MINUTE: u32 = 120;

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn config_from_lookup() {
        let vars = [
            ("HTTP_BODY_LIMIT_BYTES", "1024"),
            ("HTTP_REQUEST_TIMEOUT_SECS", "5"),
            ("DEFAULT_POD_DURATION_MINUTES", "120"),
            ("HTTP_RATE_LIMIT_PER_MINUTE", "0"),
        ];
        let lookup = |n: &str| {
            vars.iter()
                .find(|(k, _)| *k == n)
                .map(|(_, v)| (*v).to_owned())
        };
        let c = HttpConfig::from_lookup(lookup).unwrap();
        assert_eq!(c.body_limit_bytes, 1024);
        assert_eq!(c.request_timeout, Duration::from_secs(5));
        assert_eq!(c.default_duration_minutes, 120);
        assert_eq!(c.rate_limit_per_minute, None);
        assert!(!c.trust_forwarded_for);
        assert_eq!(
            HttpConfig::default().rate_limit_per_minute,
            Some(DEFAULT_RATE_LIMIT_PER_MINUTE),
            "on by default"
        );
        let trusted = HttpConfig::from_lookup(|n| {
            (n == "HTTP_TRUST_FORWARDED_FOR").then(|| "true".to_owned())
        })
        .unwrap();
        assert!(trusted.trust_forwarded_for);
        assert_eq!(
            HttpConfig::from_lookup(|_| None).unwrap(),
            HttpConfig::default()
        );
        let bad =
            HttpConfig::from_lookup(|n| (n == "HTTP_REQUEST_TIMEOUT_SECS").then(|| "soon".into()));
        assert!(matches!(
            bad,
            Err(HttpError::Config {
                name: "HTTP_REQUEST_TIMEOUT_SECS",
                ..
            })
        ));
    }
}
