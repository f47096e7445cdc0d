//! `origin --config FILE [--validate]`: load the config (every bad key reported, exit 64), then
//! run until SIGINT/SIGTERM.

use std::io::{IsTerminal, Write};
use std::path::PathBuf;
use std::process::ExitCode;

use clap::Parser;
use origin::config::OriginConfig;

/// Exit status for a bad config file or command line (sysexits' EX_USAGE).
const EX_USAGE: u8 = 64;

#[derive(Parser)]
#[command(version, about = "Outpost origin: the InstaClone app behind the edge")]
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
            tracing_subscriber::EnvFilter::try_from_default_env()
                .unwrap_or_else(|_| "info,sqlx=warn,tower_http=info".into()),
        )
        .with_writer(std::io::stderr)
        .with_ansi(std::io::stderr().is_terminal())
        .init();
    let config = match &args.config {
        Some(path) => match OriginConfig::load(path) {
            Ok(c) => c,
            Err(e) => {
                let _ = writeln!(std::io::stderr(), "invalid config {e}");
                return ExitCode::from(EX_USAGE);
            }
        },
        None => OriginConfig::default(),
    };
    if args.validate {
        let name = args
            .config
            .map_or("built-in defaults".into(), |p| p.display().to_string());
        let _ = writeln!(std::io::stdout(), "{name}: ok");
        return ExitCode::SUCCESS;
    }
    let runtime = match tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()
    {
        Ok(rt) => rt,
        Err(e) => {
            tracing::error!(error = %e, "cannot start the async runtime");
            return ExitCode::FAILURE;
        }
    };
    match runtime.block_on(origin::run(config)) {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => {
            tracing::error!("origin failed: {e:#}");
            ExitCode::FAILURE
        }
    }
}
