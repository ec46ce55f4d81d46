//! The log subscriber: `RUST_LOG` or a per-command default filter, human-readable text
//! (coloured only when stderr is a terminal) or, for `paygress serve` with
//! `LOG_FORMAT=json`, one JSON object per line for log collectors.

use std::io::IsTerminal;

use anyhow::Result;
use tracing_subscriber::EnvFilter;

/// How log lines are written (`LOG_FORMAT`).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, clap::ValueEnum)]
pub enum LogFormat {
    /// Human-readable text, coloured only when stderr is a terminal (and `NO_COLOR` is
    /// unset).
    #[default]
    #[value(alias = "pretty")]
    Text,
    /// One JSON object per line (`timestamp`, `level`, `fields.message`, `span`, `spans`).
    Json,
}

/// The default filter of the service's commands (`serve`, `wallet`, `leases`, `dev`):
/// Paygress at info, third-party chatter at warn. cdk's SQL layer warns of every query
/// over 20 ms ("SLOW QUERY") during normal minting on a busy disk: not actionable for an
/// operator, so errors only.
pub const SERVICE_FILTER: &str = "info,cdk=warn,cdk_axum=warn,cdk_sqlite=warn,cdk_sql_common=error,nostr_relay_pool=warn,nostr_relay_builder=warn,russh=warn";

/// The default filter of commands that talk on stdout (buyer commands, the demo): only
/// problems, without cdk's slow-query notices.
pub const QUIET_FILTER: &str = "warn,cdk_sql_common=error";

/// Installs the subscriber on stderr: `RUST_LOG` if set, else `default`, written as
/// `format`.
pub fn init(default: &str, format: LogFormat) -> Result<()> {
    let filter = EnvFilter::try_from_default_env().unwrap_or_else(|_| EnvFilter::new(default));
    let ansi = std::io::stderr().is_terminal() && std::env::var_os("NO_COLOR").is_none();
    // `try_init` also forwards the `log` records of dependencies that use `log`.
    tracing_subscriber::util::SubscriberInitExt::try_init(subscriber(
        filter,
        format,
        ansi,
        std::io::stderr,
    ))?;
    Ok(())
}

/// The subscriber [`init`] installs, writing to `writer`.
pub fn subscriber<W>(
    filter: EnvFilter,
    format: LogFormat,
    ansi: bool,
    writer: W,
) -> Box<dyn tracing::Subscriber + Send + Sync>
where
    W: for<'w> tracing_subscriber::fmt::MakeWriter<'w> + Send + Sync + 'static,
{
    let builder = tracing_subscriber::fmt()
        .with_env_filter(filter)
        .with_writer(writer);
    match format {
        LogFormat::Text => Box::new(builder.with_ansi(ansi).finish()),
        LogFormat::Json => Box::new(
            builder
                .json()
                .with_current_span(true)
                .with_span_list(false)
                .finish(),
        ),
    }
}

#[cfg(test)]
mod tests {
    use std::sync::{Arc, Mutex};

    use super::*;

    #[derive(Clone, Default)]
    struct Buffer(Arc<Mutex<Vec<u8>>>);

    impl std::io::Write for Buffer {
        fn write(&mut self, buf: &[u8]) -> std::io::Result<usize> {
            self.0.lock().expect("lock").extend_from_slice(buf);
            Ok(buf.len())
        }
        fn flush(&mut self) -> std::io::Result<()> {
            Ok(())
        }
    }

    /// What `default` lets through of a few typical lines, as text without colour.
    fn logged(default: &str) -> String {
        let buffer = Buffer::default();
        let writer = buffer.clone();
        let subscriber = subscriber(EnvFilter::new(default), LogFormat::Text, false, move || {
            writer.clone()
        });
        tracing::subscriber::with_default(subscriber, || {
            // What cdk's SQL layer says during normal minting on a busy disk.
            tracing::warn!(target: "cdk_sql_common::common", "[SLOW QUERY] Took 25 ms: INSERT");
            tracing::info!(target: "cdk::wallet::issue", "minting chatter");
            tracing::warn!(target: "cdk::wallet", "a real cdk problem");
            tracing::info!(target: "paygress_core::service", "request done");
            tracing::warn!(target: "paygress_core::service", "reply not delivered");
        });
        String::from_utf8(buffer.0.lock().expect("lock").clone()).expect("utf-8")
    }

    #[test]
    fn default_filters_keep_cdk_noise_quiet_and_problems_visible() {
        let service = logged(SERVICE_FILTER);
        assert!(!service.contains("SLOW QUERY"), "{service}");
        assert!(!service.contains("minting chatter"), "{service}");
        assert!(service.contains("a real cdk problem"), "{service}");
        assert!(service.contains("request done"), "{service}");
        assert!(!service.contains('\u{1b}'), "no colour: {service}");

        let quiet = logged(QUIET_FILTER);
        assert!(!quiet.contains("SLOW QUERY"), "{quiet}");
        assert!(!quiet.contains("request done"), "{quiet}");
        assert!(quiet.contains("a real cdk problem"), "{quiet}");
        assert!(quiet.contains("reply not delivered"), "{quiet}");
    }
}
