//! `edge --config FILE [--validate] [--upgrade] [purge …]`: load the config (every bad key
//! reported, exit 64), then run until a signal; or, with `purge`, purge through the admin API of
//! the node the config describes (`purge_cli`).

use std::path::PathBuf;
use std::process::ExitCode;

use clap::Parser;
use edge::config::EdgeConfig;
use outpost_common::cli;

/// Library messages that are not news to an operator.
const NOISE: &[cli::Noise] = &[
    // A client closing its connection mid-response is routine; Pingora logs it from its cache
    // path at error level, outside the `suppress_error_log` hook. The access log records it.
    ("pingora_proxy", "Downstream WriteError"),
    ("pingora_proxy", "Downstream ConnectionClosed"),
    ("pingora_proxy", "Downstream ReadError"),
    ("pingora_proxy", "Downstream WriteTimedout"),
    ("pingora_proxy", "Downstream InvalidHTTPHeader"),
    ("pingora_proxy", "Downstream InvalidChunk"),
    // Clients the connection layer cut off (counted in outpost_client_errors_total): any client
    // could otherwise fill the error log at will.
    ("pingora_proxy", "did not send its request head in time"),
    ("pingora_proxy", "sent its request body too slowly"),
    ("pingora_proxy", "chunked framing"),
    ("pingora_proxy", "chunk size"),
    ("pingora_proxy", "chunk extension"),
    // TLS clients that hang up mid-handshake, refuse our certificate, or probe the port: routine
    // on a public listener, and any client could fill the error log with them. (Pingora offers
    // no hook to count them; successful handshakes are counted.)
    (
        "pingora_core::services::listening",
        "Downstream handshake error",
    ),
    (
        "pingora_core::services::listening",
        "Downstream handshake timeout",
    ),
    ("pingora_core::apps", "H2 handshake error"),
    // Clients that put an IP address in SNI (wrk, curl by IP): rustls ignores it, as it should.
    ("rustls", "Illegal SNI"),
    // Shared-tier metadata is serialized without a dictionary on purpose: every node of a
    // region, whatever its version, must read every other node's entries.
    ("pingora_cache::meta", "no header compression dictionary"),
];

#[global_allocator]
static ALLOCATOR: mimalloc::MiMalloc = mimalloc::MiMalloc;

#[derive(Parser)]
#[command(version, about = "Outpost edge node: caching reverse proxy")]
struct Args {
    /// Config file (TOML). Without it, built-in local defaults are used.
    #[arg(long, value_name = "FILE")]
    config: Option<PathBuf>,
    /// Check the config file and exit: 0 when valid, 64 with every problem listed otherwise.
    #[arg(long)]
    validate: bool,
    /// Take over the listening sockets of the edge running with the same config: start this,
    /// then send the running one SIGQUIT (within 5 s). Needs `server.upgrade_socket`.
    #[arg(long)]
    upgrade: bool,
    #[command(subcommand)]
    command: Option<Command>,
}

#[derive(clap::Subcommand)]
enum Command {
    /// Purge through a node's admin API and print the receipt per region and node. Exit 0:
    /// complete; 2: accepted, nodes still pending; 1: refused or unreachable; 64: usage.
    Purge(edge::purge_cli::PurgeArgs),
}

fn main() -> ExitCode {
    let args = Args::parse();
    cli::init_logging("info,pingora_core=warn,pingora_proxy=warn", NOISE);
    let config: EdgeConfig = match cli::load_config(args.config.as_deref(), args.validate) {
        Ok(config) => config,
        Err(exit) => return exit,
    };
    if let Some(Command::Purge(purge)) = &args.command {
        return edge::purge_cli::run(purge, &config);
    }
    let start = edge::Start {
        config_path: args.config,
        upgrade: args.upgrade,
    };
    match edge::run(&config, start) {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => {
            tracing::error!("edge failed: {e:#}");
            ExitCode::FAILURE
        }
    }
}
