//! Shared-tier (L2) benchmarks against the real `edge` binary (release build) and real memcached.
//!
//! ```sh
//! cargo build --release --workspace --bins && cargo bench --bench shared_tier [-- OUT.md]
//! ```
//!
//! 1. **L2 hit path.** Two edge nodes with the same config, except that one keeps objects in L1
//!    and the other only in L2 (`cache.l1.max_object_bytes` below the object size), so every
//!    request is an L1 hit on one and an L2 hit on the other. For 1 KiB (inline in the manifest),
//!    100 KiB (one chunk) and 1 MiB (three chunks) objects: requests per second and per edge
//!    CPU-second under a closed loop of 16 connections, and p50/p99 of sequential requests on
//!    one connection. Rounds interleave the two nodes; tables report medians over rounds and the
//!    L2/L1 ratios. The edge is pinned to core 0; this process (client, origin) and memcached to
//!    core 1, and memcached's CPU is reported beside the edge's.
//! 2. **Origin offload.** Four edge nodes with 8 MiB of L1 each, 10,000 objects of 4 KiB
//!    (40 MiB), Zipf-distributed requests (s = 1) spread at random over the nodes; the origin's
//!    request count with and without the shared tier, then the same for one restarted node.
//!
//! Every answer is checked (status 200, full body, the expected tier in `Cache-Status`); the
//! report counts any that were not what the benchmark meant to measure.
//!
//! Knobs (environment): `SHARED_TIER_ROUNDS` (3), `SHARED_TIER_SECS` (5, per throughput run),
//! `SHARED_TIER_REQUESTS` (100000, offload requests).

use std::collections::HashSet;
use std::fmt::Write as _;
use std::net::SocketAddr;
use std::process::Command;
use std::sync::Arc;
use std::sync::atomic::{AtomicI64, Ordering};
use std::time::{Duration, Instant};

use anyhow::{Context, bail};

mod common;
use common::{Rng, knob};

use outpost_e2e::{EdgeProcess, Memcached, Reply, ScriptedOrigin};

/// The site every node serves: the Host is part of the cache key, so nodes share objects only
/// for the same name.
const HOST: &str = "bench.example";
const EDGE_CPU: &str = "0";
const OTHER_CPU: &str = "1";

fn main() -> anyhow::Result<()> {
    // Pin this process before the runtime starts its threads (they inherit the mask).
    let pinned = pin(std::process::id(), OTHER_CPU);
    let runtime = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()?;
    let mut report = String::from("## Shared tier (L2)\n\n");
    if !pinned {
        report.push_str("(taskset unavailable: processes not pinned to cores)\n\n");
    }
    runtime.block_on(async {
        hit_path(&mut report).await?;
        offload(&mut report).await
    })?;
    let mut stdout = std::io::stdout().lock();
    std::io::Write::write_all(&mut stdout, report.as_bytes())?;
    if let Some(out) = std::env::args().skip(1).find(|a| !a.starts_with("--")) {
        std::fs::write(&out, &report).with_context(|| format!("writing {out}"))?;
    }
    Ok(())
}

/// Pins every thread of `pid` to `cpu`; false when that is not possible here.
fn pin(pid: u32, cpu: &str) -> bool {
    Command::new("taskset")
        .args(["-a", "-p", "-c", cpu, &pid.to_string()])
        .stdout(std::process::Stdio::null())
        .status()
        .is_ok_and(|s| s.success())
}

/// utime + stime of a process, in seconds.
fn cpu_seconds(pid: u32) -> anyhow::Result<f64> {
    let stat = std::fs::read_to_string(format!("/proc/{pid}/stat"))?;
    // Fields after the command name (which may hold spaces) start at field 3.
    let rest = stat.rsplit_once(')').context("odd /proc stat")?.1;
    let fields: Vec<&str> = rest.split_whitespace().collect();
    let ticks: u64 = fields.get(11).context("utime")?.parse::<u64>()?
        + fields.get(12).context("stime")?.parse::<u64>()?;
    Ok(ticks as f64 / clock_ticks())
}

fn clock_ticks() -> f64 {
    Command::new("getconf")
        .arg("CLK_TCK")
        .output()
        .ok()
        .and_then(|o| String::from_utf8(o.stdout).ok())
        .and_then(|s| s.trim().parse().ok())
        .unwrap_or(100.0)
}

// ------------------------------------------------------------------------------------------
// A minimal keep-alive HTTP/1.1 client: the load generator must cost far less than the edge.
// ------------------------------------------------------------------------------------------

#[derive(Clone, Copy, PartialEq, Eq, Debug)]
enum Source {
    L1,
    L2,
    Origin,
    Other,
}

impl Source {
    fn of(cache_status: &[u8]) -> Self {
        let has = |needle: &[u8]| cache_status.windows(needle.len()).any(|w| w == needle);
        if has(b"detail=l1") {
            Source::L1
        } else if has(b"detail=l2") {
            Source::L2
        } else if has(b"fwd=") {
            Source::Origin
        } else {
            Source::Other
        }
    }
}

/// The shared client, answering with what the tallies need and copying no body.
struct Conn(common::Conn);

impl Conn {
    async fn open(addr: SocketAddr) -> anyhow::Result<Self> {
        Ok(Self(common::Conn::open(addr, HOST).await?))
    }

    /// GET `path`: the status, which tier answered, and the body length.
    async fn get(&mut self, path: &str) -> anyhow::Result<(u16, Source, usize)> {
        self.0
            .get(path, |h| {
                (h.status, Source::of(h.cache_status), h.body.len())
            })
            .await
    }
}

/// What a run saw: answers by tier, and answers that were not a 200 with the expected length.
#[derive(Default, Clone, Copy)]
struct Tally {
    by_source: [u64; 4],
    bad: u64,
}

impl Tally {
    fn add(&mut self, other: Tally) {
        for (a, b) in self.by_source.iter_mut().zip(other.by_source) {
            *a += b;
        }
        self.bad += other.bad;
    }
    fn total(&self) -> u64 {
        self.by_source.iter().sum()
    }
    fn count(&mut self, answer: anyhow::Result<(u16, Source, usize)>, expected_len: usize) {
        match answer {
            Ok((200, source, len)) if len == expected_len => self.by_source[source as usize] += 1,
            _ => self.bad += 1,
        }
    }
    fn of(&self, source: Source) -> u64 {
        self.by_source[source as usize]
    }
}

// ------------------------------------------------------------------------------------------
// 1. L2 hit path
// ------------------------------------------------------------------------------------------

struct Size {
    label: &'static str,
    bytes: usize,
    objects: usize,
}

const SIZES: [Size; 3] = [
    Size {
        label: "1 KiB",
        bytes: 1024,
        objects: 1000,
    },
    Size {
        label: "100 KiB",
        bytes: 100 * 1024,
        objects: 200,
    },
    Size {
        label: "1 MiB",
        bytes: 1024 * 1024,
        objects: 40,
    },
];

#[derive(Clone, Copy, Default)]
struct Run {
    rps: f64,
    per_edge_cpu_s: f64,
    memcached_cpu_share: f64,
    p50_us: f64,
    p99_us: f64,
}

async fn hit_path(report: &mut String) -> anyhow::Result<()> {
    let rounds = knob("SHARED_TIER_ROUNDS", 3) as usize;
    let secs = knob("SHARED_TIER_SECS", 5);
    let memcached = Memcached::with_memory(256)?;
    if let Some(pid) = memcached.pid() {
        pin(pid, OTHER_CPU);
    }
    let origin = ScriptedOrigin::start().await?;
    for size in &SIZES {
        for i in 0..size.objects {
            let body = vec![b'a' + (i % 26) as u8; size.bytes];
            origin.route(&path(size, i), Reply::ok("public, max-age=3600", body));
        }
    }
    // Generous deadlines: this measures the path, not timeouts (any miss is counted below).
    let l2 = format!(
        "[server]\nthreads = 1\n[access_log]\nformat = \"off\"\n\
         [l2]\nservers = [\"{}\"]\ndeadline_ms = 100\nchunk_deadline_ms = 500\n",
        memcached.addr
    );
    let l2_only = EdgeProcess::start(
        &[origin.addr],
        &format!("{l2}[cache.l1]\nmax_object_bytes = 512\n"),
    )?;
    let l1 = EdgeProcess::start(&[origin.addr], &l2)?;
    for edge in [&l1, &l2_only] {
        pin(edge.pid(), EDGE_CPU);
    }
    let all: usize = SIZES.iter().map(|s| s.objects).sum();
    warm(&l2_only).await?;
    wait_for_writes(&l2_only, all as f64).await?;
    warm(&l1).await?;

    let mut results: Vec<[Vec<Run>; 2]> = SIZES.iter().map(|_| [Vec::new(), Vec::new()]).collect();
    let mut unexpected = 0;
    for round in 0..rounds {
        for (s, size) in SIZES.iter().enumerate() {
            // Alternate which node goes first, so drift in the machine's speed hits both.
            let order = if round % 2 == 0 { [0, 1] } else { [1, 0] };
            for which in order {
                let (edge, tier) = if which == 0 {
                    (&l1, Source::L1)
                } else {
                    (&l2_only, Source::L2)
                };
                let (run, tally) =
                    measure(edge, size, tier, memcached.pid(), Duration::from_secs(secs)).await?;
                unexpected += tally.total() - tally.of(tier) + tally.bad;
                results[s][which].push(run);
            }
        }
    }

    let _ = writeln!(
        report,
        "### L2 hit path\n\nEvery request an L1 hit on one node, an L2 hit on the other (same config but \
         `cache.l1.max_object_bytes = 512`); one memcached on loopback. Edge pinned to one core \
         (1 thread); client and memcached on the other. Throughput: 16 connections, closed loop, \
         {secs} s per run; latency: 2000 sequential requests on one connection. Median of {rounds} \
         interleaved rounds.\n"
    );
    let _ = writeln!(
        report,
        "| Object | Tier | req/s | req per edge CPU-s | memcached CPU per edge CPU | p50 | p99 |\n|---|---|---:|---:|---:|---:|---:|"
    );
    for (s, size) in SIZES.iter().enumerate() {
        for (which, tier) in [(0, "L1"), (1, "L2")] {
            let m = median_run(&results[s][which]);
            let _ = writeln!(
                report,
                "| {} | {tier} | {:.0} | {:.0} | {:.2} | {:.0} µs | {:.0} µs |",
                size.label, m.rps, m.per_edge_cpu_s, m.memcached_cpu_share, m.p50_us, m.p99_us
            );
        }
    }
    let _ = writeln!(
        report,
        "\n| Object | L2/L1 req per edge CPU-s | L2/L1 req/s | added p50 | added p99 |\n|---|---:|---:|---:|---:|"
    );
    for (s, size) in SIZES.iter().enumerate() {
        let (a, b) = (median_run(&results[s][0]), median_run(&results[s][1]));
        let _ = writeln!(
            report,
            "| {} | {:.2} | {:.2} | {:+.0} µs | {:+.0} µs |",
            size.label,
            b.per_edge_cpu_s / a.per_edge_cpu_s,
            b.rps / a.rps,
            b.p50_us - a.p50_us,
            b.p99_us - a.p99_us
        );
    }
    let _ = writeln!(
        report,
        "\nAnswers not from the intended tier or not a whole 200: {unexpected}.\n"
    );
    Ok(())
}

fn path(size: &Size, i: usize) -> String {
    format!("/{}/{i}", size.bytes)
}

/// Requests every object twice (fill, then whatever tier now holds it).
async fn warm(edge: &EdgeProcess) -> anyhow::Result<()> {
    let mut conn = Conn::open(edge.addr).await?;
    for _ in 0..2 {
        for size in &SIZES {
            for i in 0..size.objects {
                let (status, _, len) = conn.get(&path(size, i)).await?;
                if status != 200 || len != size.bytes {
                    bail!("warming {}: status {status}, {len} bytes", path(size, i));
                }
            }
        }
    }
    Ok(())
}

async fn wait_for_writes(edge: &EdgeProcess, n: f64) -> anyhow::Result<()> {
    outpost_e2e::wait::eventually(Duration::from_secs(60), "shared-tier writes", || async {
        let stored = edge
            .metric("outpost_l2_writes_total{result=\"stored\"}")
            .await;
        stored.is_ok_and(|v| v >= n).then_some(())
    })
    .await
}

async fn measure(
    edge: &EdgeProcess,
    size: &Size,
    tier: Source,
    memcached: Option<u32>,
    span: Duration,
) -> anyhow::Result<(Run, Tally)> {
    let paths: Arc<Vec<String>> = Arc::new((0..size.objects).map(|i| path(size, i)).collect());
    let (edge_cpu, mc_cpu) = (
        cpu_seconds(edge.pid())?,
        memcached.map_or(Ok(0.0), cpu_seconds)?,
    );
    let started = Instant::now();
    let stop = started + span;
    let workers = (0..16).map(|w| {
        let (paths, addr, bytes) = (Arc::clone(&paths), edge.addr, size.bytes);
        tokio::spawn(async move {
            let mut tally = Tally::default();
            let Ok(mut conn) = Conn::open(addr).await else {
                tally.bad += 1;
                return tally;
            };
            let mut i = w * 7;
            while Instant::now() < stop {
                tally.count(conn.get(&paths[i % paths.len()]).await, bytes);
                i += 1;
            }
            tally
        })
    });
    let mut tally = Tally::default();
    for t in futures::future::join_all(workers).await {
        tally.add(t?);
    }
    let elapsed = started.elapsed().as_secs_f64();
    let edge_cpu = cpu_seconds(edge.pid())? - edge_cpu;
    let mc_cpu = memcached.map_or(Ok(0.0), cpu_seconds)? - mc_cpu;

    let mut conn = Conn::open(edge.addr).await?;
    let mut times = Vec::with_capacity(2000);
    for i in 0..2000 {
        let t = Instant::now();
        let answer = conn.get(&paths[i % paths.len()]).await;
        times.push(t.elapsed());
        tally.count(answer, size.bytes);
    }
    times.sort();
    let us = |q: usize| times[(times.len() * q / 100).min(times.len() - 1)].as_secs_f64() * 1e6;
    let served = tally.of(tier) as f64;
    let run = Run {
        rps: served / elapsed,
        per_edge_cpu_s: if edge_cpu > 0.0 {
            served / edge_cpu
        } else {
            0.0
        },
        memcached_cpu_share: if edge_cpu > 0.0 {
            mc_cpu / edge_cpu
        } else {
            0.0
        },
        p50_us: us(50),
        p99_us: us(99),
    };
    Ok((run, tally))
}

fn median_run(runs: &[Run]) -> Run {
    let median = |f: fn(&Run) -> f64| {
        let mut v: Vec<f64> = runs.iter().map(f).collect();
        v.sort_by(f64::total_cmp);
        v.get(v.len() / 2).copied().unwrap_or(0.0)
    };
    Run {
        rps: median(|r| r.rps),
        per_edge_cpu_s: median(|r| r.per_edge_cpu_s),
        memcached_cpu_share: median(|r| r.memcached_cpu_share),
        p50_us: median(|r| r.p50_us),
        p99_us: median(|r| r.p99_us),
    }
}

// ------------------------------------------------------------------------------------------
// 2. Origin offload
// ------------------------------------------------------------------------------------------

const OBJECTS: usize = 10_000;
const OBJECT_BYTES: usize = 4096;
const NODES: usize = 4;

/// Zipf(s = 1) over `OBJECTS` ranks: the cumulative distribution, for inverse sampling.
fn zipf_cdf() -> Vec<f64> {
    let weights: Vec<f64> = (1..=OBJECTS).map(|k| 1.0 / k as f64).collect();
    let total: f64 = weights.iter().sum();
    let mut acc = 0.0;
    weights
        .iter()
        .map(|w| {
            acc += w / total;
            acc
        })
        .collect()
}

/// `requests` Zipf requests from 32 workers, each to a random one of `nodes`.
async fn zipf_load(
    nodes: &[SocketAddr],
    requests: i64,
    seed: u64,
) -> anyhow::Result<(Tally, usize)> {
    let cdf = Arc::new(zipf_cdf());
    let left = Arc::new(AtomicI64::new(requests));
    let nodes = Arc::new(nodes.to_vec());
    let workers = (0..32u64).map(|w| {
        let (cdf, left, nodes) = (Arc::clone(&cdf), Arc::clone(&left), Arc::clone(&nodes));
        tokio::spawn(async move {
            let mut conns = Vec::new();
            for addr in nodes.iter() {
                conns.push(Conn::open(*addr).await?);
            }
            let mut rng = Rng(seed.wrapping_mul(1000).wrapping_add(w));
            let (mut tally, mut seen) = (Tally::default(), HashSet::new());
            while left.fetch_sub(1, Ordering::Relaxed) > 0 {
                let u = rng.unit();
                let object = cdf.partition_point(|&c| c < u).min(OBJECTS - 1);
                let node = (rng.next() % conns.len() as u64) as usize;
                seen.insert(object);
                tally.count(conns[node].get(&format!("/o/{object}")).await, OBJECT_BYTES);
            }
            anyhow::Ok((tally, seen))
        })
    });
    let (mut tally, mut seen) = (Tally::default(), HashSet::new());
    for w in futures::future::join_all(workers).await {
        let (t, s) = w??;
        tally.add(t);
        seen.extend(s);
    }
    Ok((tally, seen.len()))
}

struct Offload {
    origin: usize,
    distinct: usize,
    tally: Tally,
    restarted_origin: usize,
    restarted_distinct: usize,
    restarted: Tally,
}

async fn offload_scenario(shared: Option<&Memcached>, requests: i64) -> anyhow::Result<Offload> {
    let origin = ScriptedOrigin::start().await?;
    for i in 0..OBJECTS {
        let body = format!("{i:>width$}", width = OBJECT_BYTES);
        origin.route(&format!("/o/{i}"), Reply::ok("public, max-age=3600", body));
    }
    let mut config = String::from(
        "[access_log]\nformat = \"off\"\n[cache.l1]\ncapacity_bytes = 8388608\nmax_object_bytes = 1048576\n",
    );
    if let Some(m) = shared {
        let _ = write!(
            config,
            "[l2]\nservers = [\"{}\"]\ndeadline_ms = 50\nchunk_deadline_ms = 200\n",
            m.addr
        );
    }
    let mut nodes = Vec::new();
    for _ in 0..NODES {
        nodes.push(EdgeProcess::start(&[origin.addr], &config)?);
    }
    let addrs: Vec<SocketAddr> = nodes.iter().map(|n| n.addr).collect();
    let (tally, distinct) = zipf_load(&addrs, requests, 1).await?;
    let origin_requests = origin.requests().len();

    // One node restarts (deploy, crash): it comes back with an empty L1.
    let restarted = EdgeProcess::start(&[origin.addr], &config)?;
    drop(nodes.remove(0));
    let (restarted_tally, restarted_distinct) =
        zipf_load(&[restarted.addr], requests / 5, 2).await?;
    Ok(Offload {
        origin: origin_requests,
        distinct,
        tally,
        restarted_origin: origin.requests().len() - origin_requests,
        restarted_distinct,
        restarted: restarted_tally,
    })
}

async fn offload(report: &mut String) -> anyhow::Result<()> {
    let requests = knob("SHARED_TIER_REQUESTS", 100_000) as i64;
    let without = offload_scenario(None, requests).await?;
    let memcached = Memcached::with_memory(256)?;
    let with = offload_scenario(Some(&memcached), requests).await?;

    let _ = writeln!(
        report,
        "### Origin offload\n\n{NODES} edge nodes, 8 MiB of L1 each; {OBJECTS} objects of 4 KiB \
         (40 MiB); {requests} requests, Zipf (s = 1) over the objects, each to a random node, 32 \
         concurrent clients. Then one node restarts (empty L1) and takes {} requests alone.\n",
        requests / 5
    );
    let _ = writeln!(
        report,
        "| | origin requests | distinct objects requested | served from L1 / L2 / origin | bad answers |\n|---|---:|---:|---|---:|"
    );
    for (name, o) in [
        ("without shared tier", &without),
        ("with shared tier", &with),
    ] {
        for (phase, origin, distinct, t) in [
            ("4 nodes", o.origin, o.distinct, &o.tally),
            (
                "restarted node",
                o.restarted_origin,
                o.restarted_distinct,
                &o.restarted,
            ),
        ] {
            let _ = writeln!(
                report,
                "| {name}, {phase} | {origin} | {distinct} | {} / {} / {} | {} |",
                t.of(Source::L1),
                t.of(Source::L2),
                t.of(Source::Origin),
                t.bad + t.of(Source::Other)
            );
        }
    }
    let ratio = |a: usize, b: usize| {
        if b == 0 {
            f64::INFINITY
        } else {
            a as f64 / b as f64
        }
    };
    let _ = writeln!(
        report,
        "\nOrigin requests without / with the shared tier: {:.2}× (4 nodes), {:.2}× (restarted node).\n",
        ratio(without.origin, with.origin),
        ratio(without.restarted_origin, with.restarted_origin)
    );
    Ok(())
}
