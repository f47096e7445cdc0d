//! `edge --config FILE [--validate]`.

use std::io::{IsTerminal, Write};
use std::path::PathBuf;
use std::process::ExitCode;

use clap::Parser;
use edge::config::EdgeConfig;

/// Exit status for a bad config file or command line (sysexits' EX_USAGE).
const EX_USAGE: u8 = 64;

#[derive(Parser)]
#[command(version, about = "Outpost edge node: caching reverse proxy")]
struct Args {
    /// Config file (TOML). Without it, built-in local defaults are used.
    #[arg(long, value_name = "FILE")]
    config: Option<PathBuf>,
    /// Check the config file and exit: 0 when valid, 64 with every problem listed otherwise.
    #[arg(long)]
    validate: bool,
}

fn main() -> ExitCode {
    let args = Args::parse();
    tracing_subscriber::fmt()
        .with_env_filter(
            tracing_subscriber::EnvFilter::try_from_default_env().unwrap_or_else(|_| "info".into()),
        )
        .with_writer(std::io::stderr)
        .with_ansi(std::io::stderr().is_terminal())
        .init();
    let config = match &args.config {
        Some(path) => match EdgeConfig::load(path) {
            Ok(c) => c,
            Err(e) => {
                let _ = writeln!(std::io::stderr(), "invalid config {e}");
                return ExitCode::from(EX_USAGE);
            }
        },
        None => EdgeConfig::default(),
    };
    let name = args
        .config
        .map_or("built-in defaults".into(), |p| p.display().to_string());
    if args.validate {
        let _ = writeln!(std::io::stdout(), "{name}: ok");
        return ExitCode::SUCCESS;
    }
    tracing::error!(
        config = %name,
        origins = ?config.origin.addresses,
        "the caching proxy is not built yet; only --validate works in this version"
    );
    ExitCode::from(2)
}
