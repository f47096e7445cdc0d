//! Purge propagation within a region, against the real `edge` binary (release build) and real
//! memcached.
//!
//! ```sh
//! cargo build --release --workspace --bins && cargo bench --bench purge [-- OUT.md]
//! ```
//!
//! Three edge nodes share one memcached (`[l2] servers`, which holds the region's purge log) in
//! front of one scripted origin, whose `/o/{n}` answers `Cache-Control: max-age=3600` and a body
//! naming the object's current version. Every node first caches version 1 of every object
//! (checked: the second request is an L1 hit).
//!
//! 1. **`wait: false`.** Per round: the object's version is bumped at the origin, a hard purge of
//!    its URL is POSTed to one node (round-robin), and from the moment the answer arrives (t0,
//!    "accepted") every node is polled on its own keep-alive connection, one GET every 2 ms,
//!    until it serves the new version. Recorded: t0 → the receiving node serves the new version,
//!    → the slowest of the two others, → all three; and the POST round trip. A node still on the
//!    old version 5 s after t0 fails the round (counted, and ranked above every latency).
//! 2. **`wait: true`.** Same, but the POST returns only once every live node acknowledged the
//!    purge; right after it, one GET per node (concurrently) must already see the new version:
//!    any node that does not is a violation.
//!
//! Both for `purge.poll_interval_ms` 100 (the default) and 25, each with fresh nodes and a fresh
//! memcached. Every round purges a different object, so rounds are independent and all start
//! from the state a real purge meets: the old version in every node's L1, stored long before, no
//! earlier purge mark on that URL, no fill of a previous round still being written behind to the
//! shared tier. (One object purged over and over would make rounds depend on each other: the
//! previous round's refill, its mark, and with `purge.clock_skew_ms` set, a refill stored within
//! the allowance after a purge counts as purged too.) Rounds start after a random pause of 5 ms
//! plus up to one poll interval, so purges land at every phase of the nodes' poll timers.
//!
//! The report also counts answers that were neither version, nodes that went back to the old
//! version, origin fetches per purge, and the nodes' failed memcached operations and purge log
//! gaps; and it describes the first slow rounds and early `wait: true` answers.
//!
//! Knobs (environment): `PURGE_ROUNDS` (200, per mode and poll interval).

use std::fmt::Write as _;
use std::net::SocketAddr;
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::{Duration, Instant};

use anyhow::{Context, bail, ensure};
use serde_json::{Value, json};

mod common;
use common::{Rng, knob};

use outpost_e2e::{EdgeProcess, Memcached, Reply, ScriptedOrigin, http_client};

/// The site every node serves: the Host is part of the cache key, so purge URLs name it too.
const HOST: &str = "images.example";
const TOKEN: &str = "bench";
const NODES: usize = 3;
/// Each node is asked this often while it still serves the old version.
const POLL_EVERY: Duration = Duration::from_millis(2);
/// A node still on the old version this long after t0 fails the round.
const ROUND_TIMEOUT: Duration = Duration::from_secs(5);
/// The goal from the issue: p99 of "accepted → every node of the region serves new".
const GOAL: Duration = Duration::from_millis(250);
/// Poll intervals measured: the default, and a tighter one.
const INTERVALS_MS: [u64; 2] = [100, 25];

fn main() -> anyhow::Result<()> {
    let rounds = knob("PURGE_ROUNDS", 200).max(1) as usize;
    let runtime = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()?;
    let started = Instant::now();
    let mut results = Vec::new();
    runtime.block_on(async {
        for interval in INTERVALS_MS {
            results.push(Box::pin(scenario(interval, rounds)).await?);
        }
        anyhow::Ok(())
    })?;
    let report = render(rounds, &results, started.elapsed());
    let mut stdout = std::io::stdout().lock();
    std::io::Write::write_all(&mut stdout, report.as_bytes())?;
    if let Some(out) = std::env::args().skip(1).find(|a| !a.starts_with("--")) {
        std::fs::write(&out, &report).with_context(|| format!("writing {out}"))?;
    }
    Ok(())
}

// ------------------------------------------------------------------------------------------
// A minimal keep-alive HTTP/1.1 client, so the 2 ms polling measures the edge, not a library.
// ------------------------------------------------------------------------------------------

struct Answer {
    status: u16,
    cache_status: String,
    body: Vec<u8>,
}

impl Answer {
    /// The version the origin wrote into the body (`object N version V`).
    fn version(&self) -> Option<u64> {
        let text = std::str::from_utf8(&self.body).ok()?;
        text.split_once("version ")?.1.trim().parse().ok()
    }

    fn is(&self, version: u64) -> bool {
        self.status == 200 && self.version() == Some(version)
    }
}

/// The shared client, answering with a copy of what a round inspects.
struct Conn(common::Conn);

impl Conn {
    async fn open(addr: SocketAddr) -> anyhow::Result<Self> {
        Ok(Self(common::Conn::open(addr, HOST).await?))
    }

    async fn reopen(&mut self) -> anyhow::Result<()> {
        self.0.reopen().await
    }

    async fn get(&mut self, path: &str) -> anyhow::Result<Answer> {
        self.0
            .get(path, |h| Answer {
                status: h.status,
                cache_status: String::from_utf8_lossy(h.cache_status).into_owned(),
                body: h.body.to_vec(),
            })
            .await
    }
}

// ------------------------------------------------------------------------------------------
// One region: memcached, origin, three nodes
// ------------------------------------------------------------------------------------------

/// What one poll interval measured. Latencies of failed rounds are `Duration::MAX`.
#[derive(Default)]
struct Results {
    interval_ms: u64,
    /// `wait: false`, per round.
    post: Vec<Duration>,
    all: Vec<Duration>,
    receiving: Vec<Duration>,
    slowest_other: Vec<Duration>,
    /// Per node (edge-0, edge-1, edge-2), in rounds where it was not the receiving node.
    per_node_other: [Vec<Duration>; NODES],
    /// Rounds where some node did not serve the new version within `ROUND_TIMEOUT`.
    timeouts: usize,
    /// Answers while polling that were neither the old nor the new version (errors, non-200).
    odd_answers: u64,
    /// A node served the old version again after it had served the new one.
    regressions: u64,
    /// Origin requests for the purged object during a round.
    origin_fetches: Vec<u64>,
    /// `wait: true`, per round.
    wait_post: Vec<Duration>,
    /// Node answers right after a `wait: true` POST that were not the new version.
    wait_violations: u64,
    /// `wait: true` receipts not `complete` or not listing every node as applied.
    wait_incomplete: usize,
    /// What stood out, round by round (slow rounds, early `wait: true` answers).
    anomalies: Vec<String>,
    /// Summed over the nodes at the end: failed memcached operations, and purge log gaps.
    memcached_errors: f64,
    log_gaps: f64,
}

/// At most this many anomalies are described per poll interval.
const MAX_ANOMALIES: usize = 10;

impl Results {
    fn anomaly(&mut self, what: String) {
        if self.anomalies.len() < MAX_ANOMALIES {
            self.anomalies.push(what);
        }
    }
}

struct Region {
    _memcached: Memcached,
    _origin: ScriptedOrigin,
    nodes: Vec<EdgeProcess>,
    conns: Vec<Conn>,
    client: reqwest::Client,
    versions: Arc<Vec<AtomicU64>>,
    fetches: Arc<Vec<AtomicU64>>,
}

fn path(object: usize) -> String {
    format!("/o/{object}")
}

fn url(object: usize) -> String {
    format!("http://{HOST}{}", path(object))
}

impl Region {
    async fn start(interval_ms: u64, objects: usize) -> anyhow::Result<Self> {
        let memcached = Memcached::start()?;
        let origin = ScriptedOrigin::start().await?;
        let versions: Arc<Vec<AtomicU64>> =
            Arc::new((0..objects).map(|_| AtomicU64::new(1)).collect());
        let fetches: Arc<Vec<AtomicU64>> =
            Arc::new((0..objects).map(|_| AtomicU64::new(0)).collect());
        for n in 0..objects {
            let (versions, fetches) = (Arc::clone(&versions), Arc::clone(&fetches));
            origin.route_fn(&path(n), move |_| {
                fetches[n].fetch_add(1, Ordering::Relaxed);
                let v = versions[n].load(Ordering::SeqCst);
                Reply::ok("max-age=3600", format!("object {n} version {v}\n"))
            });
        }
        let mut nodes = Vec::with_capacity(NODES);
        for i in 0..NODES {
            // Distinct names: acknowledgements and receipts are per node name.
            let config = format!(
                "[server]\nthreads = 1\nname = \"edge-{i}\"\n[admin]\ntoken = \"{TOKEN}\"\n\
                 [l2]\nservers = [\"{}\"]\n[purge]\npoll_interval_ms = {interval_ms}\n\
                 [access_log]\nformat = \"off\"\n",
                memcached.addr
            );
            nodes.push(EdgeProcess::start(&[origin.addr], &config)?);
        }
        let mut conns = Vec::with_capacity(NODES);
        for node in &nodes {
            conns.push(Conn::open(node.addr).await?);
        }
        Ok(Self {
            _memcached: memcached,
            _origin: origin,
            nodes,
            conns,
            client: http_client(),
            versions,
            fetches,
        })
    }

    async fn purge(&self, node: usize, url: &str, wait: bool) -> anyhow::Result<Value> {
        let resp = self
            .client
            .post(self.nodes[node].admin_url("/purge"))
            .bearer_auth(TOKEN)
            .json(&json!({ "urls": [url], "soft": false, "wait": wait }))
            .send()
            .await?;
        let status = resp.status();
        let text = resp.text().await?;
        ensure!(status == 200, "POST /purge answered {status}: {text}");
        Ok(serde_json::from_str(&text)?)
    }

    /// Until every node heartbeats into the region's node list (receipts then name all three).
    async fn wait_for_members(&self) -> anyhow::Result<()> {
        let deadline = Instant::now() + Duration::from_secs(30);
        let probe = format!("http://{HOST}/not-cached");
        loop {
            let receipt = self.purge(0, &probe, true).await?;
            if applied(&receipt) == NODES && pending(&receipt) == 0 {
                return Ok(());
            }
            if Instant::now() > deadline {
                bail!("the region never listed all {NODES} nodes; last receipt: {receipt}");
            }
            tokio::time::sleep(Duration::from_millis(200)).await;
        }
    }

    /// Every node caches version 1 of every object, in L1.
    async fn warm(&mut self, objects: usize) -> anyhow::Result<()> {
        for (i, conn) in self.conns.iter_mut().enumerate() {
            for n in 0..objects {
                conn.get(&path(n)).await?;
                let a = conn.get(&path(n)).await?;
                if !a.is(1) || !a.cache_status.contains("detail=l1") {
                    bail!(
                        "warming {} on edge-{i}: status {}, version {:?}, Cache-Status {:?}",
                        path(n),
                        a.status,
                        a.version(),
                        a.cache_status
                    );
                }
            }
        }
        Ok(())
    }

    fn bump(&self, object: usize) -> u64 {
        self.versions[object].fetch_add(1, Ordering::SeqCst) + 1
    }

    /// The sum over every node of metric `name` (all label sets).
    async fn metric(&self, name: &str) -> anyhow::Result<f64> {
        let mut sum = 0.0;
        for node in &self.nodes {
            sum += node.metric(name).await?;
        }
        Ok(sum)
    }
}

fn applied(receipt: &Value) -> usize {
    receipt["applied"].as_array().map_or(0, Vec::len)
}

fn pending(receipt: &Value) -> usize {
    receipt["pending"].as_array().map_or(usize::MAX, Vec::len)
}

/// How one node's polling ended.
struct Polled {
    /// Since t0, when it first served the new version; `None` at the deadline.
    latency: Option<Duration>,
    odd: u64,
}

/// Asks one node for `path` every `POLL_EVERY` until it serves `version`.
async fn first_new(
    conn: &mut Conn,
    path: &str,
    version: u64,
    t0: Instant,
    deadline: Instant,
) -> Polled {
    let mut odd = 0;
    loop {
        let sent = Instant::now();
        if sent >= deadline {
            return Polled { latency: None, odd };
        }
        match tokio::time::timeout_at(deadline.into(), conn.get(path)).await {
            Ok(Ok(a)) if a.is(version) => {
                return Polled {
                    latency: Some(t0.elapsed()),
                    odd,
                };
            }
            Ok(Ok(a)) if a.is(version - 1) => {}
            Ok(Ok(_)) => odd += 1,
            Ok(Err(_)) | Err(_) => {
                odd += 1;
                let _ = conn.reopen().await;
            }
        }
        tokio::time::sleep_until((sent + POLL_EVERY).into()).await;
    }
}

async fn scenario(interval_ms: u64, rounds: usize) -> anyhow::Result<Results> {
    let objects = 2 * rounds;
    let mut region = Region::start(interval_ms, objects).await?;
    region.wait_for_members().await?;
    region.warm(objects).await?;
    let mut r = Results {
        interval_ms,
        ..Results::default()
    };
    let mut rng = Rng(interval_ms);
    let pause = |rng: &mut Rng| Duration::from_millis(5 + rng.next() % interval_ms);

    // 1. wait: false
    for round in 0..rounds {
        tokio::time::sleep(pause(&mut rng)).await;
        let (object, target) = (round, round % NODES);
        let p = path(object);
        let fetched_before = region.fetches[object].load(Ordering::Relaxed);
        let version = region.bump(object);
        let sent = Instant::now();
        region.purge(target, &url(object), false).await?;
        let t0 = Instant::now();
        r.post.push(t0 - sent);
        let deadline = t0 + ROUND_TIMEOUT;
        let polled = futures::future::join_all(
            region
                .conns
                .iter_mut()
                .map(|c| first_new(c, &p, version, t0, deadline)),
        )
        .await;
        let latency = |n: usize| polled[n].latency.unwrap_or(Duration::MAX);
        r.odd_answers += polled.iter().map(|p| p.odd).sum::<u64>();
        if polled.iter().any(|p| p.latency.is_none()) {
            r.timeouts += 1;
        }
        r.receiving.push(latency(target));
        let others = (0..NODES).filter(|&n| n != target);
        r.slowest_other
            .push(others.clone().map(latency).max().unwrap_or_default());
        for n in others {
            r.per_node_other[n].push(latency(n));
        }
        let slowest = (0..NODES).map(latency).max().unwrap_or_default();
        r.all.push(slowest);
        if slowest > Duration::from_millis(interval_ms * 3 / 2 + 10) {
            let each: Vec<String> = (0..NODES)
                .map(|n| format!("edge-{n} {}", ms(latency(n))))
                .collect();
            r.anomaly(format!(
                "`wait: false` round {round} (purge sent to edge-{target}, POST {}): {}",
                ms(t0 - sent),
                each.join(", ")
            ));
        }
        // Once new, always new.
        for conn in &mut region.conns {
            match conn.get(&p).await {
                Ok(a) if a.is(version) => {}
                Ok(_) => r.regressions += 1,
                Err(_) => {
                    r.odd_answers += 1;
                    conn.reopen().await?;
                }
            }
        }
        r.origin_fetches
            .push(region.fetches[object].load(Ordering::Relaxed) - fetched_before);
    }

    // 2. wait: true
    for round in 0..rounds {
        tokio::time::sleep(pause(&mut rng)).await;
        let (object, target) = (rounds + round, round % NODES);
        let p = path(object);
        let version = region.bump(object);
        let sent = Instant::now();
        let receipt = region.purge(target, &url(object), true).await?;
        let took = sent.elapsed();
        r.wait_post.push(took);
        let incomplete = receipt["complete"] != json!(true)
            || applied(&receipt) != NODES
            || pending(&receipt) != 0;
        if incomplete {
            r.wait_incomplete += 1;
        }
        let answers = futures::future::join_all(region.conns.iter_mut().map(|c| c.get(&p))).await;
        let mut old = Vec::new();
        for (n, a) in answers.into_iter().enumerate() {
            match a {
                Ok(a) if a.is(version) => {}
                Ok(a) => old.push(format!("edge-{n} served version {:?}", a.version())),
                Err(e) => old.push(format!("edge-{n}: {e}")),
            }
        }
        r.wait_violations += old.len() as u64;
        if incomplete || !old.is_empty() {
            r.anomaly(format!(
                "`wait: true` round {round} (purge sent to edge-{target}): POST took {}, \
                 receipt `applied` {}, `pending` {}, `complete` {}; right after: {}",
                ms(took),
                receipt["applied"],
                receipt["pending"],
                receipt["complete"],
                if old.is_empty() {
                    "every node served the new version".to_owned()
                } else {
                    old.join(", ")
                }
            ));
        }
        for conn in &mut region.conns {
            // A failed GET above may have left a connection mid-answer.
            if conn.get(&p).await.is_err() {
                conn.reopen().await?;
            }
        }
    }
    r.memcached_errors = region.metric("outpost_l2_server_errors_total").await?;
    r.log_gaps = region.metric("outpost_purge_log_gaps_total").await?;
    Ok(r)
}

// ------------------------------------------------------------------------------------------
// Report
// ------------------------------------------------------------------------------------------

/// Nearest-rank quantile of `q` (0..=1); `Duration::MAX` marks a failed round.
fn quantile(sorted: &[Duration], q: f64) -> Duration {
    if sorted.is_empty() {
        return Duration::ZERO;
    }
    let rank = ((q * sorted.len() as f64).ceil() as usize).clamp(1, sorted.len());
    sorted[rank - 1]
}

fn ms(d: Duration) -> String {
    if d == Duration::MAX {
        format!("> {} s", ROUND_TIMEOUT.as_secs())
    } else {
        format!("{:.1} ms", d.as_secs_f64() * 1e3)
    }
}

/// `| p50 | p90 | p99 | max |` cells.
fn cells(samples: &[Duration]) -> (String, Duration) {
    let mut v = samples.to_vec();
    v.sort();
    let p99 = quantile(&v, 0.99);
    let row = format!(
        "{} | {} | {} | {}",
        ms(quantile(&v, 0.50)),
        ms(quantile(&v, 0.90)),
        ms(p99),
        ms(quantile(&v, 1.0))
    );
    (row, p99)
}

fn render(rounds: usize, results: &[Results], took: Duration) -> String {
    let mut out = String::from("## Purge propagation\n\n");
    let _ = writeln!(
        out,
        "3 edge nodes, 1 memcached (the region's purge log), 1 scripted origin, all on loopback. \
         {rounds} hard purges of one URL each with `wait: false`, round-robin over the nodes, \
         each of a different object every node holds in L1; t0 = the POST's answer arrives; \
         then every node is asked every 2 ms until it serves the new version (5 s = failure). \
         Then {rounds} purges with `wait: true`. Latencies are from t0; resolution ≈ 2 ms.\n"
    );
    let _ = writeln!(
        out,
        "### `wait: false`: accepted → serving the new version\n\n\
         | poll interval | from t0 until | p50 | p90 | p99 | max |\n|---|---|---:|---:|---:|---:|"
    );
    let mut verdicts = Vec::new();
    for r in results {
        let i = r.interval_ms;
        let (all, all_p99) = cells(&r.all);
        verdicts.push((i, all_p99));
        let rows = [
            ("**all 3 nodes**", all),
            ("the receiving node", cells(&r.receiving).0),
            ("the slowest other node", cells(&r.slowest_other).0),
            ("(POST round trip)", cells(&r.post).0),
        ];
        for (what, row) in rows {
            let _ = writeln!(out, "| {i} ms | {what} | {row} |");
        }
    }
    let _ = writeln!(
        out,
        "\n| poll interval | other node | p50 | p90 | p99 | max |\n|---|---|---:|---:|---:|---:|"
    );
    for r in results {
        for (n, samples) in r.per_node_other.iter().enumerate() {
            let _ = writeln!(
                out,
                "| {} ms | edge-{n} | {} |",
                r.interval_ms,
                cells(samples).0
            );
        }
    }
    let _ = writeln!(
        out,
        "\n| poll interval | rounds | failed (> 5 s) | odd answers | served old after new | \
         origin fetches per purge (median / max) | memcached errors | purge log gaps |\n\
         |---|---:|---:|---:|---:|---|---:|---:|"
    );
    for r in results {
        let mut f = r.origin_fetches.clone();
        f.sort_unstable();
        let _ = writeln!(
            out,
            "| {} ms | {} | {} | {} | {} | {} / {} | {} | {} |",
            r.interval_ms,
            r.all.len(),
            r.timeouts,
            r.odd_answers,
            r.regressions,
            f.get(f.len() / 2).copied().unwrap_or(0),
            f.last().copied().unwrap_or(0),
            r.memcached_errors,
            r.log_gaps
        );
    }
    let _ = writeln!(
        out,
        "\n### `wait: true`: POST round trip, and every node right after it\n\n\
         | poll interval | p50 | p90 | p99 | max | receipts not complete | nodes still on the old \
         version |\n|---|---:|---:|---:|---:|---:|---:|"
    );
    for r in results {
        let _ = writeln!(
            out,
            "| {} ms | {} | {} of {} | {} of {} |",
            r.interval_ms,
            cells(&r.wait_post).0,
            r.wait_incomplete,
            r.wait_post.len(),
            r.wait_violations,
            r.wait_post.len() * NODES
        );
    }
    let _ = writeln!(out);
    for (interval, p99) in verdicts {
        let _ = writeln!(
            out,
            "Goal p99 ≤ {} ms (accepted → all nodes), poll interval {interval} ms: {} ({}).",
            GOAL.as_millis(),
            if p99 <= GOAL { "met" } else { "NOT met" },
            ms(p99)
        );
    }
    for r in results {
        if r.anomalies.is_empty() {
            continue;
        }
        let _ = writeln!(
            out,
            "\nWhat stood out at poll interval {} ms (first {MAX_ANOMALIES}):\n",
            r.interval_ms
        );
        for a in &r.anomalies {
            let _ = writeln!(out, "- {a}");
        }
    }
    let _ = writeln!(out, "\nRun time: {:.0} s.", took.as_secs_f64());
    out
}
