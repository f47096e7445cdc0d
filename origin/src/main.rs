//! `origin --config FILE [--validate]`: load the config (every bad key reported, exit 64), then
//! run until SIGINT/SIGTERM.

use std::path::PathBuf;
use std::process::ExitCode;

use clap::Parser;
use origin::config::OriginConfig;
use outpost_common::cli;

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
    cli::init_logging("info,sqlx=warn,tower_http=info", &[]);
    let config: OriginConfig = match cli::load_config(args.config.as_deref(), args.validate) {
        Ok(config) => config,
        Err(exit) => return exit,
    };
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
