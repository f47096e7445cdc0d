//! The admin listener and the origin pool: health, readiness, metrics, failover.

use super::{Setup, eventually};
use outpost_e2e::{EdgeProcess, Reply, ScriptedOrigin, http_client};

async fn metrics(s: &Setup) -> anyhow::Result<String> {
    Ok(s.client
        .get(s.edge.admin_url("/metrics"))
        .send()
        .await?
        .text()
        .await?)
}

/// The metrics once `ready` holds for them (within 10 s).
async fn metrics_once(s: &Setup, ready: impl Fn(&str) -> bool) -> anyhow::Result<String> {
    for _ in 0..500 {
        let m = metrics(s).await?;
        if ready(&m) {
            return Ok(m);
        }
        tokio::time::sleep(std::time::Duration::from_millis(20)).await;
    }
    anyhow::bail!(
        "metrics never reached the expected state:\n{}",
        metrics(s).await?
    )
}

/// The value of the sample `line_prefix …` in a Prometheus exposition.
fn sample(text: &str, line_prefix: &str) -> Option<f64> {
    text.lines()
        .find(|l| l.starts_with(line_prefix))
        .and_then(|l| l.rsplit(' ').next())
        .and_then(|v| v.parse().ok())
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn health_readiness_and_metrics() -> anyhow::Result<()> {
    let s = Setup::new().await?;
    let get = |p: &str| s.client.get(s.edge.admin_url(p)).send();
    let h = get("/healthz").await?;
    assert_eq!(
        (h.status().as_u16(), h.headers()["cache-control"].to_str()?),
        (200, "no-store")
    );
    let ready = get("/readyz").await?;
    assert_eq!(ready.status().as_u16(), 200);
    assert_eq!(
        ready.text().await?,
        "ready\ndefault: 1 of 1 origins healthy\n"
    );
    assert_eq!(get("/nope").await?.status().as_u16(), 404);

    s.origin
        .route("/m", Reply::ok("max-age=60", vec![b'x'; 5000]));
    s.get("/m").await?;
    s.get("/m").await?;
    s.send("POST", "/m", &[], Vec::new()).await?;
    // Requests are counted when their log line is written, just after the response.
    let m = metrics_once(&s, |m| {
        sample(m, "outpost_requests_total{cache=\"pass\"}") == Some(1.0)
    })
    .await?;
    assert_eq!(
        sample(&m, "outpost_requests_total{cache=\"hit\"}"),
        Some(1.0),
        "{m}"
    );
    assert_eq!(
        sample(&m, "outpost_requests_total{cache=\"miss\"}"),
        Some(1.0)
    );
    assert_eq!(
        sample(&m, "outpost_requests_total{cache=\"pass\"}"),
        Some(1.0)
    );
    assert_eq!(
        sample(&m, "outpost_origin_responses_total{class=\"2xx\"}"),
        Some(2.0)
    );
    assert_eq!(
        sample(&m, "outpost_origin_response_seconds_count"),
        Some(2.0)
    );
    assert_eq!(
        sample(&m, "outpost_l1_entries"),
        Some(0.0),
        "the POST invalidated /m"
    );
    assert_eq!(sample(&m, "outpost_invalidations_total"), Some(1.0));
    s.get("/m").await?;
    let m = metrics(&s).await?;
    assert_eq!(sample(&m, "outpost_l1_entries"), Some(1.0));
    assert!(
        sample(&m, "outpost_l1_bytes").is_some_and(|b| b >= 5000.0),
        "{m}"
    );
    assert_eq!(
        sample(
            &m,
            &format!(
                "outpost_origin_healthy{{origin=\"{}\",site=\"default\"}}",
                s.origin.addr
            )
        ),
        Some(1.0)
    );
    Ok(())
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn l1_stays_within_its_byte_budget_and_counts_evictions() -> anyhow::Result<()> {
    let s = Setup::with_config("[cache.l1]\ncapacity_bytes = 1048576\nmax_object_bytes = 262144\n")
        .await?;
    s.origin
        .route_fn("/obj", |_| Reply::ok("max-age=600", vec![b'o'; 200_000]));
    s.origin
        .route("/huge", Reply::ok("max-age=600", vec![b'h'; 300_000]));
    for i in 0..12 {
        s.get(&format!("/obj?n={i}")).await?;
    }
    let m = metrics(&s).await?;
    let bytes = sample(&m, "outpost_l1_bytes").unwrap_or(f64::MAX);
    assert!(bytes <= 1_048_576.0, "{bytes} bytes held");
    assert!(
        sample(&m, "outpost_l1_evictions_total{cause=\"size\"}").is_some_and(|n| n >= 1.0),
        "{m}"
    );
    // Larger than l1.max_object_bytes: served, not stored.
    let big = s.get("/huge").await?;
    assert_eq!(big.body.len(), 300_000);
    assert!(!s.get("/huge").await?.is_hit());
    assert_eq!(s.origin.count("/huge"), 2);
    Ok(())
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_origin_outage_shows_in_origins_and_leaves_the_node_ready() -> anyhow::Result<()> {
    let s = Setup::new().await?;
    s.origin.route(
        "/kept",
        Reply::ok("max-age=3600", "kept while the origin is down"),
    );
    s.get("/kept").await?;
    let client = http_client();
    let status = |path: &'static str| {
        let client = client.clone();
        let url = s.edge.admin_url(path);
        async move { Some(client.get(url).send().await.ok()?.status().as_u16()) }
    };
    assert_eq!(status("/origins").await, Some(200));
    s.origin.stop();
    outpost_e2e::wait::eventually(
        std::time::Duration::from_secs(5),
        "the health checks to notice",
        || async { (status("/origins").await? == 503).then_some(()) },
    )
    .await?;
    // The node serves what it has: taking it out of DNS now would make the outage total.
    assert_eq!(status("/readyz").await, Some(200), "still ready");
    assert_eq!(status("/healthz").await, Some(200), "alive");
    let kept = s.get("/kept").await?;
    assert!(kept.is_hit() && kept.status == 200);
    Ok(())
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn requests_fail_over_to_a_live_origin() -> anyhow::Result<()> {
    let up = ScriptedOrigin::start().await?;
    let down = ScriptedOrigin::start().await?;
    down.stop();
    up.route("/any", Reply::ok("no-store", "from the live one"));
    let edge = EdgeProcess::start(&[down.addr, up.addr], "")?;
    let client = http_client();
    for _ in 0..6 {
        let r = client.get(edge.url("/any")).send().await?;
        assert_eq!(r.status().as_u16(), 200);
        assert_eq!(r.text().await?, "from the live one");
    }
    eventually("all requests at the live origin", || up.count("/any") == 6).await?;
    Ok(())
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn sigterm_drains_and_exits_cleanly() -> anyhow::Result<()> {
    let s = Setup::new().await?;
    s.origin.route("/x", Reply::ok("max-age=60", "x"));
    assert_eq!(s.get("/x").await?.status, 200);
    let Setup { edge, .. } = s;
    let status = tokio::task::spawn_blocking(move || edge.stop()).await??;
    assert!(status.success(), "exit status {status}");
    Ok(())
}
