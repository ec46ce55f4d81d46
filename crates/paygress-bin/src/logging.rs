//! The log subscriber: `RUST_LOG` or a per-command default filter, human-readable text
//! (coloured only when stderr is a terminal) or one JSON object per line with
//! `LOG_FORMAT=json`, for log collectors.

use std::io::IsTerminal;

use anyhow::{Result, bail};
use tracing_subscriber::EnvFilter;

/// How log lines are written.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum LogFormat {
    /// Human-readable text.
    Text,
    /// One JSON object per line (`timestamp`, `level`, `fields.message`, `span`, `spans`).
    Json,
}

impl LogFormat {
    /// Reads `LOG_FORMAT` (`text`, the default, or `json`).
    pub fn from_env() -> Result<Self> {
        match std::env::var("LOG_FORMAT") {
            Err(_) => Ok(LogFormat::Text),
            Ok(v) => match v.trim().to_ascii_lowercase().as_str() {
                "" | "text" | "pretty" => Ok(LogFormat::Text),
                "json" => Ok(LogFormat::Json),
                other => bail!("LOG_FORMAT {other:?}: use text or json"),
            },
        }
    }
}

/// Installs the subscriber on stderr: `RUST_LOG` if set, else `default`.
pub fn init(default: &str) -> Result<()> {
    let filter = EnvFilter::try_from_default_env().unwrap_or_else(|_| EnvFilter::new(default));
    let builder = tracing_subscriber::fmt()
        .with_env_filter(filter)
        .with_writer(std::io::stderr);
    match LogFormat::from_env()? {
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
