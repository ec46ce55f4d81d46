//! The optional TOML config file (`--config FILE`, `PAYGRESS_CONFIG`): its settings
//! become the defaults of `serve`'s flags, so flags and environment variables override
//! them.

use std::path::PathBuf;

use anyhow::{Context, Result, bail};

/// The `--config` file named on the command line (`--config FILE`, `--config=FILE`) or
/// by `PAYGRESS_CONFIG`, looked up before the arguments are parsed (its values become
/// the flags' defaults).
pub fn config_file_arg(args: &[std::ffi::OsString]) -> Option<PathBuf> {
    let mut it = args.iter();
    while let Some(a) = it.next() {
        let a = a.to_string_lossy();
        if a == "--" {
            break;
        }
        if a == "--config" {
            return it.next().map(PathBuf::from);
        }
        if let Some(v) = a.strip_prefix("--config=") {
            return Some(PathBuf::from(v));
        }
    }
    std::env::var_os("PAYGRESS_CONFIG")
        .filter(|v| !v.is_empty())
        .map(PathBuf::from)
}

/// Makes the settings in the TOML file at `path` the defaults of `serve`'s flags in
/// `command` (so that flags and environment variables override them). Keys are flag
/// ids (`run_mode`) or environment variable names (`RUN_MODE`); arrays are joined with
/// commas. An unknown key is an error (a typo must not pass silently).
pub fn apply_config_file(command: clap::Command, path: &std::path::Path) -> Result<clap::Command> {
    let text = std::fs::read_to_string(path)
        .with_context(|| format!("reading the config file {}", path.display()))?;
    let table: toml::Table = text
        .parse()
        .with_context(|| format!("parsing the config file {}", path.display()))?;
    let mut values = Vec::new();
    for (key, value) in table {
        let text = match value {
            toml::Value::String(s) => s,
            toml::Value::Integer(i) => i.to_string(),
            toml::Value::Float(f) => f.to_string(),
            toml::Value::Boolean(b) => b.to_string(),
            toml::Value::Array(items) => items
                .into_iter()
                .map(|v| match v {
                    toml::Value::String(s) => Ok(s),
                    toml::Value::Integer(i) => Ok(i.to_string()),
                    other => bail!(
                        "{}: {key}: unsupported list item ({})",
                        path.display(),
                        other.type_str()
                    ),
                })
                .collect::<Result<Vec<_>>>()?
                .join(","),
            other => bail!(
                "{}: {key}: unsupported value ({})",
                path.display(),
                other.type_str()
            ),
        };
        values.push((key, text));
    }
    let apply = |mut cmd: clap::Command| -> Result<clap::Command> {
        for (key, value) in &values {
            let id = cmd
                .get_arguments()
                .find(|a| {
                    a.get_id().as_str() == key
                        || a.get_env()
                            .is_some_and(|e| e.to_str() == Some(key.as_str()))
                })
                .map(|a| a.get_id().as_str().to_owned())
                .filter(|id| id != "config")
                .with_context(|| format!("{}: unknown setting {key:?}", path.display()))?;
            let value: &'static str = value.clone().leak();
            cmd = cmd.mut_arg(id, |a| a.default_value(value).required(false));
        }
        Ok(cmd)
    };
    if command.find_subcommand("serve").is_some() {
        let mut serve = None;
        let command = command.mut_subcommand("serve", |sc| {
            let (sc, result) = match apply(sc.clone()) {
                Ok(sc) => (sc, Ok(())),
                Err(e) => (sc, Err(e)),
            };
            serve = Some(result);
            sc
        });
        serve.unwrap_or(Ok(()))?;
        Ok(command)
    } else {
        apply(command)
    }
}
