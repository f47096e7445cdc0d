//! A successful revalidation makes an object count as stored now: after a soft purge or a gap
//! in the purge log, an unchanged object costs the origin one conditional request and is a hit
//! again, in L1 and in the shared tier, and still after the edge restarts.

use std::sync::Arc;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::time::Duration;

use super::purge::{TOKEN, node_config, purge};
use super::{Response, get_site};
use outpost_e2e::{EdgeProcess, Memcached, Reply, ScriptedOrigin, wait};

/// Origin requests for one path, by kind.
#[derive(Clone, Default)]
struct Counts {
    full: Arc<AtomicUsize>,
    conditional: Arc<AtomicUsize>,
}

impl Counts {
    fn get(&self) -> (usize, usize) {
        (
            self.full.load(Ordering::SeqCst),
            self.conditional.load(Ordering::SeqCst),
        )
    }
}

/// `path` never changes: 200 with a strong ETag and an hour's freshness, 304 to a request that
/// has it. Tagged `t`.
fn unchanging(origin: &ScriptedOrigin, path: &str) -> Counts {
    let counts = Counts::default();
    let c = counts.clone();
    let body = format!("{path} body");
    origin.route_fn(path, move |req| {
        if req.header("if-none-match") == Some("\"same\"") {
            c.conditional.fetch_add(1, Ordering::SeqCst);
            Reply::new(304)
                .header("ETag", "\"same\"")
                .header("Cache-Control", "max-age=3600")
                .header("Surrogate-Key", "t")
        } else {
            c.full.fetch_add(1, Ordering::SeqCst);
            Reply::ok("max-age=3600", body.clone())
                .header("ETag", "\"same\"")
                .header("Surrogate-Key", "t")
        }
    });
    counts
}

async fn get(edge: &EdgeProcess, path: &str) -> anyhow::Result<Response> {
    get_site(edge, path, &[]).await
}

/// Until `edge` has written `n` objects to the shared tier (the write follows the answer).
async fn written(edge: &EdgeProcess, n: f64) -> anyhow::Result<()> {
    wait::eventually(Duration::from_secs(5), "the shared-tier write", || async {
        let stored = edge
            .metric("outpost_l2_writes_total{result=\"stored\"}")
            .await
            .ok()?;
        (stored >= n).then_some(())
    })
    .await
}

async fn soft_purge_tag_t(edge: &EdgeProcess) -> anyhow::Result<()> {
    let (status, receipt) = purge(
        edge,
        TOKEN,
        r#"{"tags": ["t"], "soft": true, "wait": true}"#,
    )
    .await?;
    anyhow::ensure!(status == 200, "soft purge: {status} {receipt}");
    Ok(())
}

/// After a soft purge: one revalidation (a 304), then hits from `edges`, with no origin
/// request.
async fn one_revalidation_then_hits(
    edges: &[&EdgeProcess],
    path: &str,
    counts: &Counts,
) -> anyhow::Result<()> {
    let (full, conditional) = counts.get();
    let first = get(edges[0], path).await?;
    assert_eq!(first.text(), format!("{path} body"));
    assert!(
        first.cache_status().contains("fwd=stale"),
        "the first request after the purge revalidates: {}",
        first.cache_status()
    );
    assert_eq!(counts.get(), (full, conditional + 1), "one 304, no refetch");
    for edge in edges.iter().cycle().take(4) {
        let again = get(edge, path).await?;
        assert!(
            again.is_hit(),
            "a revalidated object is a hit again: {}",
            again.cache_status()
        );
    }
    assert_eq!(
        counts.get(),
        (full, conditional + 1),
        "no more origin requests"
    );
    Ok(())
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_soft_purge_costs_one_revalidation_without_a_shared_tier() -> anyhow::Result<()> {
    let origin = ScriptedOrigin::start().await?;
    let counts = unchanging(&origin, "/p");
    let edge = EdgeProcess::start(
        &[origin.addr],
        &format!("[server]\nname = \"solo\"\n[admin]\ntoken = \"{TOKEN}\"\n"),
    )?;
    get(&edge, "/p").await?;
    assert!(get(&edge, "/p").await?.is_hit());
    soft_purge_tag_t(&edge).await?;
    one_revalidation_then_hits(&[&edge], "/p", &counts).await
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_soft_purge_costs_one_revalidation_in_the_region_and_across_a_restart()
-> anyhow::Result<()> {
    let memcached = Memcached::start()?;
    let origin = ScriptedOrigin::start().await?;
    let counts = unchanging(&origin, "/q");
    let config = |name: &str| node_config(name, &[&memcached], "");
    let a = EdgeProcess::start(&[origin.addr], &config("a"))?;
    let b = EdgeProcess::start(&[origin.addr], &config("b"))?;
    get(&a, "/q").await?;
    written(&a, 1.0).await?;
    assert!(get(&b, "/q").await?.is_hit(), "b found a's copy in L2");
    assert!(get(&a, "/q").await?.is_hit());
    soft_purge_tag_t(&a).await?;
    // One node revalidates; the other finds the refreshed copy in the shared tier.
    one_revalidation_then_hits(&[&a, &b], "/q", &counts).await?;

    // A new process replays the soft purge from the log; the shared tier's copy is newer.
    let before = counts.get();
    b.stop()?;
    let b = EdgeProcess::start(&[origin.addr], &config("b"))?;
    let res = get(&b, "/q").await?;
    assert!(
        res.is_hit(),
        "after a restart the revalidated copy is still a hit: {}",
        res.cache_status()
    );
    assert_eq!(counts.get(), before);
    Ok(())
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_purge_log_gap_costs_each_object_one_revalidation() -> anyhow::Result<()> {
    // Two servers, the log on both: restarting one is a gap for every node, and the objects
    // the other one holds survive it.
    let mut first = Memcached::start()?;
    let second = Memcached::start()?;
    let origin = ScriptedOrigin::start().await?;
    let paths: Vec<String> = (0..8).map(|i| format!("/g{i}")).collect();
    let counts: Vec<Counts> = paths.iter().map(|p| unchanging(&origin, p)).collect();
    let config = |name: &str| node_config(name, &[&first, &second], "");
    let a = EdgeProcess::start(&[origin.addr], &config("a"))?;
    let b = EdgeProcess::start(&[origin.addr], &config("b"))?;
    for (i, path) in paths.iter().enumerate() {
        get(&a, path).await?;
        written(&a, (i + 1) as f64).await?;
        assert!(get(&b, path).await?.is_hit(), "{path} shared");
    }
    let config_b = config("b");
    first.restart()?;
    for node in [&a, &b] {
        wait::eventually(
            Duration::from_secs(5),
            "the node to see the gap",
            || async {
                let gaps = node.metric("outpost_purge_log_gaps_total").await.ok()?;
                (gaps >= 1.0).then_some(())
            },
        )
        .await?;
    }

    let mut revalidated = Vec::new();
    let mut a_writes = paths.len() as f64;
    for (path, counts) in paths.iter().zip(&counts) {
        let (full, conditional) = counts.get();
        let res = get(&a, path).await?;
        assert!(!res.is_hit(), "{path} used unasked after a gap");
        assert_eq!(res.text(), format!("{path} body"));
        let after = counts.get();
        // Its shared copy was on the restarted server (refetched) or survived (a 304).
        assert!(
            after == (full + 1, conditional) || after == (full, conditional + 1),
            "{path}: one origin request, not {after:?} after {:?}",
            (full, conditional)
        );
        if after.1 > conditional {
            revalidated.push(path.clone());
        } else {
            // Refetched: its new copy reaches the shared tier just after the answer.
            a_writes += 1.0;
            written(&a, a_writes).await?;
        }
        for node in [&b, &a, &b] {
            let again = get(node, path).await?;
            assert!(
                again.is_hit(),
                "{path} is a hit again after one revalidation: {}",
                again.cache_status()
            );
        }
        assert_eq!(counts.get(), after, "{path}: no more origin requests");
    }
    assert!(
        !revalidated.is_empty(),
        "some objects lived on the surviving server"
    );

    // A restarted node reads the revalidated copies from the shared tier as hits.
    b.stop()?;
    let b = EdgeProcess::start(&[origin.addr], &config_b)?;
    for path in &revalidated {
        let res = get(&b, path).await?;
        assert!(
            res.is_hit(),
            "{path} after a restart: {}",
            res.cache_status()
        );
    }
    Ok(())
}
