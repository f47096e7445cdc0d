//! Serving stale (RFC 5861, RFC 9111 §4.2.4): stale-while-revalidate refreshes in the
//! background; stale-if-error covers origin 5xx, timeouts and refused connections;
//! must-revalidate, proxy-revalidate and s-maxage forbid it (504 instead).

use std::time::Duration;

use super::{Setup, eventually};
use outpost_e2e::{Reply, http_client};

/// Stored 5 s stale, with the given extra directives.
fn stale(directives: &str, body: &str) -> Reply {
    Reply::ok(&format!("max-age=10, {directives}"), body.to_owned()).header("Age", "15")
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn stale_while_revalidate_serves_stale_and_refreshes_in_the_background() -> anyhow::Result<()>
{
    let s = Setup::new().await?;
    s.origin.route_seq(
        "/swr",
        [
            stale("stale-while-revalidate=60", "v1"),
            Reply::ok("max-age=60", "v2"),
        ],
    );
    s.get("/swr").await?;
    let served = s.get("/swr").await?;
    assert_eq!(served.text(), "v1", "the stale copy, at once");
    assert!(
        served.cache_status().starts_with("outpost; hit; ttl=-"),
        "{}",
        served.cache_status()
    );
    assert!(
        served
            .cache_status()
            .ends_with("detail=stale-while-revalidate")
    );
    eventually("the background refresh", || s.origin.count("/swr") == 2).await?;
    // Until the refresh is stored, requests are still served the stale copy.
    let fresh =
        outpost_e2e::wait::eventually(Duration::from_secs(10), "the refreshed copy", || async {
            s.get("/swr").await.ok().filter(|r| r.text() == "v2")
        })
        .await?;
    assert_eq!(fresh.text(), "v2");
    assert!(fresh.is_hit(), "{}", fresh.cache_status());
    assert_eq!(s.origin.count("/swr"), 2, "one background refresh, no more");
    Ok(())
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn stale_if_error_covers_5xx_and_timeouts() -> anyhow::Result<()> {
    let s = Setup::with_config("[origin]\nread_timeout_ms = 300\n").await?;
    s.origin.route_seq(
        "/e5xx",
        [
            stale("stale-if-error=60", "v1"),
            Reply::new(503).body("down"),
        ],
    );
    s.origin.route_seq(
        "/slow",
        [
            stale("stale-if-error=60", "v1"),
            Reply::ok("max-age=60", "late").delay(Duration::from_secs(3)),
        ],
    );
    for path in ["/e5xx", "/slow"] {
        s.get(path).await?;
    }
    let r = s.get("/e5xx").await?;
    assert_eq!((r.status, r.text().as_str()), (200, "v1"));
    assert!(
        r.cache_status()
            .starts_with("outpost; fwd=stale; fwd-status=503; ttl=-"),
        "{}",
        r.cache_status()
    );
    assert!(r.cache_status().ends_with("detail=stale-if-error"));
    let r = s.get("/slow").await?;
    assert_eq!(
        (r.status, r.text().as_str()),
        (200, "v1"),
        "{}",
        r.cache_status()
    );
    assert!(
        r.cache_status().ends_with("detail=stale-if-error"),
        "{}",
        r.cache_status()
    );
    Ok(())
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn stale_if_error_covers_a_refused_connection_and_defaults_from_config() -> anyhow::Result<()>
{
    let s = Setup::new().await?;
    s.origin
        .route("/explicit", stale("stale-if-error=60", "v1"));
    // No stale-if-error from the origin: the configured default (300 s) applies.
    s.origin.route("/default", stale("", "v1"));
    s.get("/explicit").await?;
    s.get("/default").await?;
    s.origin.stop();
    for path in ["/explicit", "/default"] {
        let r = s.get(path).await?;
        assert_eq!(
            (r.status, r.text().as_str()),
            (200, "v1"),
            "{path}: {}",
            r.cache_status()
        );
        assert!(
            r.cache_status().ends_with("detail=stale-if-error"),
            "{}",
            r.cache_status()
        );
    }
    Ok(())
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn revalidation_directives_forbid_stale_and_give_504() -> anyhow::Result<()> {
    let s = Setup::new().await?;
    for (path, directives) in [
        ("/must", "must-revalidate, stale-if-error=60"),
        ("/proxy", "proxy-revalidate, stale-if-error=60"),
        ("/shared", "s-maxage=10, stale-if-error=60"),
    ] {
        s.origin.route_seq(
            path,
            [stale(directives, "v1"), Reply::new(500).body("broken")],
        );
        s.get(path).await?;
        let r = s.get(path).await?;
        assert_eq!(
            (r.status, r.text().as_str()),
            (500, "broken"),
            "{path}: the origin's error, not stale"
        );
    }
    s.origin.stop();
    // What happened is named: the connection was refused, or a kept-alive one found closed
    // (no timeout anywhere). With a stored copy that may not be used, 504 (RFC 9111 §5.2.2.2);
    // with none, 502.
    let named = |status: &str| {
        status.ends_with("detail=connect-refused") || status.ends_with("detail=origin-closed")
    };
    for path in ["/must", "/proxy", "/shared"] {
        let r = s.get(path).await?;
        assert_eq!(r.status, 504, "{path}: {}", r.cache_status());
        assert!(named(r.cache_status()), "{}", r.cache_status());
    }
    let never = s.get("/never-stored").await?;
    assert_eq!(never.status, 502, "{}", never.cache_status());
    assert!(named(never.cache_status()), "{}", never.cache_status());
    let metrics = http_client()
        .get(s.edge.admin_url("/metrics"))
        .send()
        .await?
        .text()
        .await?;
    // Every kind is exported from the start, at zero: read the values.
    let errors = |kind: &str| {
        let series = format!("outpost_origin_errors_total{{kind=\"{kind}\"}} ");
        metrics
            .lines()
            .find_map(|l| l.strip_prefix(&series))
            .and_then(|v| v.trim().parse::<f64>().ok())
    };
    assert!(
        errors("connect_refused").is_some_and(|n| n > 0.0),
        "{metrics}"
    );
    assert_eq!(errors("timeout"), Some(0.0), "nothing timed out: {metrics}");
    Ok(())
}
