//! The shared tier with real memcached processes: nodes of a region share objects (the origin
//! sees one request per object per region), large objects travel in chunks and come back
//! byte-for-byte or not at all, and a dead or frozen memcached costs at most its deadline.

use std::time::{Duration, Instant};

use super::{Response, SITE};
use outpost_e2e::{EdgeProcess, Memcached, Reply, ScriptedOrigin, http_client, wait};

/// Edge config for a node of a region with these memcached servers. Deadlines are generous:
/// debug builds on a loaded CI machine are slow, and these tests are about behaviour.
fn region(servers: &[&Memcached], extra: &str) -> String {
    region_with(
        servers,
        "deadline_ms = 200\nchunk_deadline_ms = 500\n",
        extra,
    )
}

/// Like [`region`] with explicit `[l2]` keys besides `servers`.
fn region_with(servers: &[&Memcached], l2: &str, extra: &str) -> String {
    let list: Vec<String> = servers.iter().map(|m| format!("\"{}\"", m.addr)).collect();
    format!("[l2]\nservers = [{}]\n{l2}{extra}", list.join(", "))
}

async fn get(edge: &EdgeProcess, path: &str) -> anyhow::Result<Response> {
    super::get_site(edge, path, &[]).await
}

/// Waits until `edge` has written `n` objects to the shared tier.
async fn written(edge: &EdgeProcess, n: f64) -> anyhow::Result<()> {
    edge.metric_reaches("outpost_l2_writes_total{result=\"stored\"}", n)
        .await
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn nodes_of_a_region_share_objects_and_a_restarted_node_refills_from_it() -> anyhow::Result<()>
{
    let (m1, m2) = (Memcached::start()?, Memcached::start()?);
    let origin = ScriptedOrigin::start().await?;
    origin.route(
        "/img",
        Reply::ok("public, max-age=600", "the image").header("Surrogate-Key", "image-1"),
    );
    let config = region(&[&m1, &m2], "");
    let a = EdgeProcess::start(&[origin.addr], &config)?;
    let b = EdgeProcess::start(&[origin.addr], &config)?;

    let first = get(&a, "/img").await?;
    assert!(
        first.cache_status().starts_with("outpost; fwd=uri-miss"),
        "{}",
        first.cache_status()
    );
    written(&a, 1.0).await?;
    let from_b = get(&b, "/img").await?;
    assert_eq!(from_b.text(), "the image");
    assert!(
        from_b.cache_status().starts_with("outpost; hit")
            && from_b.cache_status().contains("detail=l2"),
        "{}",
        from_b.cache_status()
    );
    assert!(
        get(&b, "/img").await?.cache_status().contains("detail=l1"),
        "promoted into b's L1"
    );
    assert_eq!(origin.count("/img"), 1, "one origin request for the region");

    drop(b);
    let b = EdgeProcess::start(&[origin.addr], &config)?;
    let after_restart = get(&b, "/img").await?;
    assert!(
        after_restart.cache_status().contains("detail=l2"),
        "{}",
        after_restart.cache_status()
    );
    assert_eq!(
        origin.count("/img"),
        1,
        "a restarted node refills from the region, not the origin"
    );
    Ok(())
}

/// memcached reads a relative expiry over 30 days as a unix time (in 1970: expired at once).
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_object_kept_for_60_days_is_shared_too() -> anyhow::Result<()> {
    let m = Memcached::start()?;
    let origin = ScriptedOrigin::start().await?;
    origin.route(
        "/archive",
        Reply::ok("public, max-age=5184000", "kept long"),
    );
    let config = region(&[&m], "");
    let (a, b) = (
        EdgeProcess::start(&[origin.addr], &config)?,
        EdgeProcess::start(&[origin.addr], &config)?,
    );
    get(&a, "/archive").await?;
    written(&a, 1.0).await?;
    let from_b = get(&b, "/archive").await?;
    assert!(
        from_b.cache_status().contains("detail=l2"),
        "{}",
        from_b.cache_status()
    );
    assert_eq!(origin.count("/archive"), 1);
    Ok(())
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_3_mib_image_round_trips_through_chunks_and_a_lost_chunk_means_a_clean_refetch()
-> anyhow::Result<()> {
    let (m1, m2) = (Memcached::start()?, Memcached::start()?);
    let origin = ScriptedOrigin::start().await?;
    let image: Vec<u8> = (0..3 * 1024 * 1024u32)
        .map(|i| (i.wrapping_mul(2_654_435_761) >> 9) as u8)
        .collect();
    origin.route(
        "/big.jpg",
        Reply::ok("public, max-age=600", image.clone()).header("Content-Type", "image/jpeg"),
    );
    let config = region(&[&m1, &m2], "");
    let a = EdgeProcess::start(&[origin.addr], &config)?;
    assert_eq!(get(&a, "/big.jpg").await?.body.len(), image.len());
    written(&a, 1.0).await?;

    let b = EdgeProcess::start(&[origin.addr], &config)?;
    let via_l2 = get(&b, "/big.jpg").await?;
    assert!(
        via_l2.cache_status().contains("detail=l2"),
        "{}",
        via_l2.cache_status()
    );
    assert!(via_l2.body == image, "byte for byte through the chunks");
    assert_eq!(origin.count("/big.jpg"), 1);

    // Evict one chunk by hand: the next node must refetch, not serve a short or wrong body.
    let mut chunks: Vec<(String, &Memcached)> = Vec::new();
    for m in [&m1, &m2] {
        chunks.extend(
            m.keys()?
                .into_iter()
                .filter(|k| k.contains(":c:"))
                .map(|k| (k, m)),
        );
    }
    let names: Vec<&String> = chunks.iter().map(|(k, _)| k).collect();
    assert_eq!(chunks.len(), 7, "3 MiB in 508 KiB chunks: {names:?}");
    let (victim, server) = &chunks[3];
    assert!(server.delete(victim)?, "deleted {victim}");
    let c = EdgeProcess::start(&[origin.addr], &config)?;
    let refetched = get(&c, "/big.jpg").await?;
    assert!(
        refetched
            .cache_status()
            .starts_with("outpost; fwd=uri-miss"),
        "{}",
        refetched.cache_status()
    );
    assert!(refetched.body == image, "the refetched body is whole");
    assert_eq!(origin.count("/big.jpg"), 2);
    Ok(())
}

/// Requests for `objects` distinct URLs from `workers` concurrent clients for `span`; every
/// latency, and any response that was not a 200 with the expected body.
async fn load(
    edge: &EdgeProcess,
    objects: usize,
    workers: usize,
    span: Duration,
) -> (Vec<Duration>, Vec<String>) {
    let stop = Instant::now() + span;
    let tasks = (0..workers).map(|w| {
        let url = edge.url("");
        tokio::spawn(async move {
            let client = http_client();
            let (mut times, mut errors) = (Vec::new(), Vec::new());
            let mut i = w;
            while Instant::now() < stop {
                let n = i % objects;
                i += workers;
                let started = Instant::now();
                match client
                    .get(format!("{url}/obj/{n}"))
                    .header("Host", SITE)
                    .send()
                    .await
                {
                    Ok(r) if r.status() == 200 => match r.text().await {
                        Ok(body) if body == format!("object {n} {}", "x".repeat(2000)) => {
                            times.push(started.elapsed())
                        }
                        Ok(body) => {
                            errors.push(format!("obj {n}: wrong body ({} bytes)", body.len()))
                        }
                        Err(e) => errors.push(format!("obj {n}: {e}")),
                    },
                    Ok(r) => errors.push(format!("obj {n}: status {}", r.status())),
                    Err(e) => errors.push(format!("obj {n}: {e}")),
                }
            }
            (times, errors)
        })
    });
    let mut times = Vec::new();
    let mut errors = Vec::new();
    for t in futures::future::join_all(tasks).await {
        let (t, e) = t.unwrap_or_default();
        times.extend(t);
        errors.extend(e);
    }
    times.sort();
    (times, errors)
}

fn p99(times: &[Duration]) -> Duration {
    times
        .get(times.len() * 99 / 100)
        .copied()
        .unwrap_or_default()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_killed_or_frozen_memcached_costs_at_most_its_deadline_and_the_breaker_recovers()
-> anyhow::Result<()> {
    let mut servers = [
        Memcached::start()?,
        Memcached::start()?,
        Memcached::start()?,
    ];
    let origin = ScriptedOrigin::start().await?;
    origin.route_fn("/obj", |_| Reply::new(404));
    for n in 0..60 {
        origin.route(
            &format!("/obj/{n}"),
            Reply::ok(
                "public, max-age=600",
                format!("object {n} {}", "x".repeat(2000)),
            ),
        );
    }
    // Objects above l1.max_object_bytes live in the shared tier only: every request asks it.
    let deadline = Duration::from_millis(50);
    let config = region_with(
        &[&servers[0], &servers[1], &servers[2]],
        "deadline_ms = 50\nchunk_deadline_ms = 50\nbreaker_failures = 3\nbreaker_open_ms = 300\n",
        "[cache.l1]\nmax_object_bytes = 1024\n",
    );
    let edge = EdgeProcess::start(&[origin.addr], &config)?;
    let (_, errors) = load(&edge, 60, 4, Duration::from_millis(800)).await;
    assert!(errors.is_empty(), "{errors:?}");
    assert!(
        edge.metric("outpost_l2_lookups_total{result=\"hit\"}")
            .await?
            > 0.0,
        "warm"
    );
    let bound = deadline + Duration::from_millis(400);

    for (what, index) in [("killed", 0usize), ("frozen", 1usize)] {
        let victim = servers[index].addr.to_string();
        if what == "killed" {
            servers[index].kill()?;
        } else {
            servers[index].freeze()?;
        }
        let (times, errors) = load(&edge, 60, 4, Duration::from_millis(1500)).await;
        assert!(errors.is_empty(), "{what}: clients saw errors: {errors:?}");
        assert!(
            p99(&times) < bound,
            "{what}: p99 {:?} over deadline + origin time",
            p99(&times)
        );
        let open = edge
            .metric(&format!("outpost_l2_breaker_open{{server=\"{victim}\"}}"))
            .await?;
        assert_eq!(open, 1.0, "{what}: the breaker opened");

        if what == "killed" {
            servers[index].restart()?;
        } else {
            servers[index].thaw()?;
        }
        // The breaker closes on the first probe that succeeds, so keep traffic flowing.
        let gauge = format!("outpost_l2_breaker_open{{server=\"{victim}\"}}");
        wait::eventually(
            Duration::from_secs(10),
            "the breaker to close after recovery",
            || async {
                load(&edge, 60, 2, Duration::from_millis(100)).await;
                edge.metric(&gauge)
                    .await
                    .is_ok_and(|v| v == 0.0)
                    .then_some(())
            },
        )
        .await
        .map_err(|e| e.context(what))?;
    }
    let hits_before = edge
        .metric("outpost_l2_lookups_total{result=\"hit\"}")
        .await?;
    load(&edge, 60, 4, Duration::from_millis(500)).await;
    assert!(
        edge.metric("outpost_l2_lookups_total{result=\"hit\"}")
            .await?
            > hits_before,
        "shared-tier hits resumed"
    );
    Ok(())
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_edge_starts_and_serves_with_every_memcached_down() -> anyhow::Result<()> {
    let mut m = Memcached::start()?;
    m.kill()?;
    let origin = ScriptedOrigin::start().await?;
    origin.route("/p", Reply::ok("max-age=60", "served"));
    let edge = EdgeProcess::start(&[origin.addr], &region(&[&m], ""))?;
    for _ in 0..3 {
        assert_eq!(get(&edge, "/p").await?.text(), "served");
    }
    assert!(
        get(&edge, "/p").await?.cache_status().contains("detail=l1"),
        "L1 works without L2"
    );
    Ok(())
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn memcached_servers_by_dns_name() -> anyhow::Result<()> {
    let memcached = Memcached::start()?;
    let origin = ScriptedOrigin::start().await?;
    origin.route("/img", Reply::ok("public, max-age=600", "the image"));
    // `localhost` may resolve to ::1 first, where nothing listens: the server's connections try
    // its next address. Both nodes name it the same way, so both route keys to it alike.
    let config = format!(
        "[l2]\nservers = [\"localhost:{}\"]\ndeadline_ms = 500\nchunk_deadline_ms = 500\n",
        memcached.addr.port()
    );
    let a = EdgeProcess::start(&[origin.addr], &config)?;
    let b = EdgeProcess::start(&[origin.addr], &config)?;
    assert_eq!(get(&a, "/img").await?.text(), "the image");
    written(&a, 1.0).await?;
    assert!(!memcached.keys()?.is_empty(), "the object is in memcached");
    let from_b = get(&b, "/img").await?;
    assert!(
        from_b.cache_status().contains("detail=l2"),
        "{}",
        from_b.cache_status()
    );
    assert_eq!(origin.count("/img"), 1);
    Ok(())
}
