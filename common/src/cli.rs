//! What both binaries do before their own work: log to stderr, load the config file (or the
//! built-in defaults), and answer `--validate`.

use std::io::{IsTerminal, Write};
use std::path::Path;
use std::process::ExitCode;

use serde::de::DeserializeOwned;

use crate::config::{self, Validate};

/// Exit status for a bad config file or command line (sysexits' EX_USAGE).
pub const EX_USAGE: u8 = 64;

/// Logs to stderr (colour only on a terminal); `RUST_LOG` overrides `default_filter`.
pub fn init_logging(default_filter: &str) {
    tracing_subscriber::fmt()
        .with_env_filter(
            tracing_subscriber::EnvFilter::try_from_default_env()
                .unwrap_or_else(|_| default_filter.into()),
        )
        .with_writer(std::io::stderr)
        .with_ansi(std::io::stderr().is_terminal())
        .init();
}

/// Loads `path` (defaults without one). `Err` carries the exit status to stop with: 64 after
/// printing every problem, or 0 after `--validate` succeeded.
pub fn load_config<T>(path: Option<&Path>, validate: bool) -> Result<T, ExitCode>
where
    T: DeserializeOwned + Validate + Default,
{
    let config = match path {
        Some(path) => config::load_file(path).map_err(|e| {
            let _ = writeln!(std::io::stderr(), "invalid config {e}");
            ExitCode::from(EX_USAGE)
        })?,
        None => T::default(),
    };
    if validate {
        let name = path.map_or("built-in defaults".into(), |p| p.display().to_string());
        let _ = writeln!(std::io::stdout(), "{name}: ok");
        return Err(ExitCode::SUCCESS);
    }
    Ok(config)
}
