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

/// Installs the subscriber on stderr: `RUST_LOG` if set, else `default`, written as
/// `format`.
pub fn init(default: &str, format: LogFormat) -> Result<()> {
    let filter = EnvFilter::try_from_default_env().unwrap_or_else(|_| EnvFilter::new(default));
    let builder = tracing_subscriber::fmt()
        .with_env_filter(filter)
        .with_writer(std::io::stderr);
    match format {
        LogFormat::Text => builder
            .with_ansi(std::io::stderr().is_terminal() && std::env::var_os("NO_COLOR").is_none())
            .init(),
        LogFormat::Json => builder
            .json()
            .with_current_span(true)
            .with_span_list(false)
            .init(),
    }
    Ok(())
}
