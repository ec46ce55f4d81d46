//! Mint URL normalisation.

use paygress_core::money::MintUrl;
use url::Url;

use crate::error::CashuError;

/// Normalises a mint URL so that equal mints compare equal as strings.
///
/// Lower-cases scheme and host, removes the default port (80 for `http`, 443 for
/// `https`) and any trailing slash of the path. Only `http` and `https` URLs with a host
/// and without credentials, query or fragment are accepted. Two mints are the same mint
/// only if their normalised forms are equal: `http://127.0.0.1:9` is not
/// `http://127.0.0.1:9999` and `https://mint.example` is not `https://mint.example.evil`.
pub fn normalize_mint_url(raw: &str) -> Result<MintUrl, CashuError> {
    let bad = |reason: &str| CashuError::MintUrl {
        url: raw.to_owned(),
        reason: reason.to_owned(),
    };
    let trimmed = raw.trim();
    let url = Url::parse(trimmed).map_err(|e| bad(&e.to_string()))?;
    let scheme = url.scheme();
    if scheme != "http" && scheme != "https" {
        return Err(bad("scheme must be http or https"));
    }
    if !url.username().is_empty() || url.password().is_some() {
        return Err(bad("credentials are not allowed"));
    }
    if url.query().is_some() || url.fragment().is_some() {
        return Err(bad("query and fragment are not allowed"));
    }
    let host = url
        .host_str()
        .filter(|h| !h.is_empty())
        .ok_or_else(|| bad("no host"))?;
    let mut out = format!("{scheme}://{}", host.to_ascii_lowercase());
    if let Some(port) = url.port() {
        out.push_str(&format!(":{port}"));
    }
    let path = url.path().trim_end_matches('/');
    out.push_str(path);
    Ok(MintUrl::new(out))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn n(s: &str) -> String {
        normalize_mint_url(s).expect("valid").as_str().to_owned()
    }

    #[test]
    fn normalises_case_port_and_slash() {
        assert_eq!(n("HTTPS://Mint.Example:443/"), "https://mint.example");
        assert_eq!(
            n("http://mint.example:80/api/v1/"),
            "http://mint.example/api/v1"
        );
        assert_eq!(n(" http://127.0.0.1:3338 "), "http://127.0.0.1:3338");
        assert_eq!(
            n("https://mint.example:8443/Path"),
            "https://mint.example:8443/Path"
        );
        assert_eq!(n("http://[::1]:3338/"), "http://[::1]:3338");
    }

    #[test]
    fn prefix_tricks_are_different_mints() {
        assert_ne!(n("http://127.0.0.1:9"), n("http://127.0.0.1:9999"));
        assert_ne!(n("https://mint.example"), n("https://mint.example.evil"));
        assert_ne!(
            n("https://mint.example/api"),
            n("https://mint.example/api2")
        );
    }

    #[test]
    fn rejects_odd_urls() {
        for bad in [
            "",
            "mint.example",
            "ftp://mint.example",
            "https://user:pw@mint.example",
            "https://mint.example/?x=1",
            "https://mint.example/#frag",
        ] {
            assert!(normalize_mint_url(bad).is_err(), "{bad:?} accepted");
        }
    }
}
