//! `edge purge …`: the purge API from a shell. It sends one `POST /purge` to a node's admin
//! listener and prints the receipt, one line per region with the nodes that applied the purge
//! and the nodes still pending. The exit status says whether the purge is complete:
//!
//! | status | meaning |
//! |---|---|
//! | 0 | complete: every live node of every region applied it |
//! | 2 | accepted, not complete (nodes pending, or a region not reached): the receipt says which |
//! | 1 | refused or failed: the admin listener's error, or no answer |
//! | 64 | nothing to purge, or no admin URL or token to use |
//!
//! The admin URL and token come from the flags, else from `OUTPOST_ADMIN_URL` and
//! `OUTPOST_ADMIN_TOKEN`, else from the config (`admin.listen`, `admin.token`).

use std::process::ExitCode;
use std::time::Duration;

use serde_json::Value;

use crate::config::EdgeConfig;
use crate::purge::{PurgeRequest, Receipt};

/// What to purge, and where.
#[derive(Debug, Default, clap::Args)]
pub struct PurgeArgs {
    /// A URL as clients ask for it (`https://images.example/a.jpg`): every variant. Repeatable.
    #[arg(long = "url", value_name = "URL")]
    pub urls: Vec<String>,
    /// Every object whose URL starts with this. Repeatable.
    #[arg(long = "prefix", value_name = "URL")]
    pub prefixes: Vec<String>,
    /// Every object tagged with this (`Surrogate-Key`, `Cache-Tag`). Repeatable.
    #[arg(long = "tag", value_name = "TAG")]
    pub tags: Vec<String>,
    /// Everything the region has cached.
    #[arg(long)]
    pub all: bool,
    /// Mark stale instead of removing: served while revalidated.
    #[arg(long)]
    pub soft: bool,
    /// Answer once every live node of every region has applied it (or `purge.max_wait_ms` passed).
    #[arg(long)]
    pub wait: bool,
    /// The node's admin listener (`http://10.1.0.11:9091`). Default: `OUTPOST_ADMIN_URL`, else
    /// `admin.listen` of the config.
    #[arg(long, value_name = "URL")]
    pub admin: Option<String>,
    /// The admin token. Default: `OUTPOST_ADMIN_TOKEN`, else `admin.token` of the config.
    #[arg(long, value_name = "TOKEN")]
    pub token: Option<String>,
}

/// Exit status of a purge accepted but not complete.
const INCOMPLETE: u8 = 2;
/// Exit status of a usage error (nothing to purge, no admin URL or token).
const USAGE: u8 = 64;

/// Runs `edge purge` with `config` (the file's, or the defaults); prints the receipt.
pub fn run(args: &PurgeArgs, config: &EdgeConfig) -> ExitCode {
    if args.urls.is_empty() && args.prefixes.is_empty() && args.tags.is_empty() && !args.all {
        eprintln!("edge purge: nothing to purge: give --url, --prefix, --tag or --all");
        return ExitCode::from(USAGE);
    }
    let admin = args
        .admin
        .clone()
        .or_else(|| std::env::var("OUTPOST_ADMIN_URL").ok())
        .unwrap_or_else(|| admin_url(config));
    let token = args
        .token
        .clone()
        .or_else(|| std::env::var("OUTPOST_ADMIN_TOKEN").ok())
        .unwrap_or_else(|| config.admin.token.clone());
    if token.is_empty() {
        eprintln!(
            "edge purge: no admin token: give --token, set OUTPOST_ADMIN_TOKEN, or use a config \
             with admin.token"
        );
        return ExitCode::from(USAGE);
    }
    let request = PurgeRequest {
        urls: args.urls.clone(),
        prefixes: args.prefixes.clone(),
        tags: args.tags.clone(),
        all: args.all,
        soft: args.soft,
        ..PurgeRequest::default()
    };
    // The request type leaves `wait` out of its wire form (it is never forwarded between
    // regions); from here it is the caller's own wish.
    let mut body = serde_json::to_value(&request).unwrap_or_default();
    if args.wait {
        body["wait"] = Value::Bool(true);
    }
    let url = format!("{}/purge", admin.trim_end_matches('/'));
    let answer = match send(&url, &token, &body) {
        Ok(answer) => answer,
        Err(e) => {
            eprintln!("edge purge: {url}: {e:#}");
            return ExitCode::FAILURE;
        }
    };
    match answer {
        (200, answer) => {
            let receipt: Receipt = match serde_json::from_value(answer) {
                Ok(receipt) => receipt,
                Err(e) => {
                    eprintln!("edge purge: {url}: the answer is not a receipt: {e}");
                    return ExitCode::FAILURE;
                }
            };
            // The receipt is this command's output (the lint is for stray prints).
            let _ =
                std::io::Write::write_all(&mut std::io::stdout(), describe(&receipt).as_bytes());
            if receipt.complete {
                ExitCode::SUCCESS
            } else {
                ExitCode::from(INCOMPLETE)
            }
        }
        (status, error) => {
            let why = error["error"]
                .as_str()
                .map_or_else(|| error.to_string(), str::to_owned);
            eprintln!("edge purge: {url} answered {status}: {why}");
            ExitCode::FAILURE
        }
    }
}

/// The admin listener of `config`, as a URL this machine can reach (an unspecified address
/// means this machine).
fn admin_url(config: &EdgeConfig) -> String {
    let mut addr = config.admin.listen;
    if addr.ip().is_unspecified() {
        addr.set_ip(std::net::Ipv4Addr::LOCALHOST.into());
    }
    format!("http://{addr}")
}

/// One `POST` of `body`: the status and the JSON answer.
fn send(url: &str, token: &str, body: &Value) -> anyhow::Result<(u16, Value)> {
    use anyhow::Context;
    outpost_common::tls::install_crypto_provider();
    let runtime = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .context("starting a runtime")?;
    runtime.block_on(async {
        let client = reqwest::Client::builder()
            .timeout(Duration::from_secs(70))
            .build()
            .context("building the HTTP client")?;
        let res = client
            .post(url)
            .bearer_auth(token)
            .json(body)
            .send()
            .await
            .context("sending the purge")?;
        let status = res.status().as_u16();
        let text = res.text().await.context("reading the answer")?;
        let value = serde_json::from_str(&text).unwrap_or(Value::String(text));
        Ok((status, value))
    })
}

/// The receipt as lines: the purge, then each region with its nodes.
fn describe(receipt: &Receipt) -> String {
    let names = |list: &[String]| match list.is_empty() {
        true => "-".to_owned(),
        false => list.join(", "),
    };
    let kind = if receipt.soft { "soft" } else { "hard" };
    let state = if receipt.complete {
        "complete"
    } else {
        "not complete"
    };
    let mut out = format!(
        "purge {} ({kind}): {state}\n  {}: applied {}; pending {}\n",
        receipt.id,
        receipt.region,
        names(&receipt.applied),
        names(&receipt.pending),
    );
    for (name, region) in &receipt.regions {
        // The state as the API spells it.
        let state = serde_json::to_value(region.state).unwrap_or_default();
        out.push_str(&format!(
            "  {name}: {} after {} attempt(s): applied {}; pending {}{}\n",
            state.as_str().unwrap_or("?"),
            region.attempts,
            names(&region.applied),
            names(&region.pending),
            region
                .error
                .as_deref()
                .map(|e| format!("; last error: {e}"))
                .unwrap_or_default(),
        ));
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_receipt_reads_as_one_line_per_region() {
        let receipt: Receipt = serde_json::from_value(serde_json::json!({
            "id": "eu-1", "region": "eu", "soft": true, "accepted_at_ms": 1, "complete": false,
            "applied": ["edge-a"], "pending": ["edge-b"],
            "regions": {"us": {"state": "failed", "attempts": 8, "applied": [], "pending": [],
                               "error": "connection refused"}}
        }))
        .expect("a receipt");
        assert_eq!(
            describe(&receipt),
            "purge eu-1 (soft): not complete\n  eu: applied edge-a; pending edge-b\n  \
             us: failed after 8 attempt(s): applied -; pending -; last error: connection refused\n"
        );
    }

    #[test]
    fn an_unspecified_admin_address_means_this_machine() {
        let mut config = EdgeConfig::default();
        config.admin.listen = "0.0.0.0:9191".parse().expect("addr");
        assert_eq!(admin_url(&config), "http://127.0.0.1:9191");
    }
}
