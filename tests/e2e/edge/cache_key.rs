//! The cache key: scheme, host, path and the normalised query.

use super::Setup;
use outpost_e2e::Reply;

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn query_order_and_tracking_parameters_do_not_split_entries() -> anyhow::Result<()> {
    let s = Setup::new().await?;
    s.origin.route("/p", Reply::ok("max-age=60", "p"));
    s.get("/p?b=2&a=1").await?;
    for same in [
        "/p?a=1&b=2",
        "/p?a=1&b=2&utm_source=news&fbclid=x",
        "/p?utm_campaign=y&b=2&a=1",
    ] {
        assert!(s.get(same).await?.is_hit(), "{same}");
    }
    assert!(
        !s.get("/p?a=1").await?.is_hit(),
        "a different query is a different object"
    );
    assert_eq!(s.origin.count("/p"), 2);
    // The origin is asked what the key says: dropped parameters never reach it, and the rest
    // arrive in key order.
    s.origin.route("/q", Reply::ok("max-age=60", "q"));
    s.get("/q?utm_source=news&id=1&a=2").await?;
    assert_eq!(
        s.origin.requests().pop().map(|r| r.target),
        Some("/q?a=2&id=1".to_owned())
    );
    Ok(())
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn hosts_are_separate_and_normalised() -> anyhow::Result<()> {
    let s = Setup::new().await?;
    s.origin.route_fn("/home", |req| {
        Reply::ok("max-age=60", req.header("host").unwrap_or("").to_owned())
    });
    let a = s.get_with("/home", &[("host", "a.example")]).await?;
    let b = s.get_with("/home", &[("host", "b.example")]).await?;
    assert_eq!(
        (a.text().as_str(), b.text().as_str()),
        ("a.example", "b.example")
    );
    let a_again = s.get_with("/home", &[("host", "A.Example.:80")]).await?;
    assert!(
        a_again.is_hit(),
        "case, trailing dot and default port are normalised"
    );
    assert_eq!(a_again.text(), "a.example");
    assert_eq!(s.origin.count("/home"), 2);
    // The origin is sent the canonical form the key uses.
    s.origin.route_fn("/echo-host", |req| {
        Reply::ok("no-store", req.header("host").unwrap_or("").to_owned())
    });
    let echoed = s
        .get_with("/echo-host", &[("host", "B.Example.:80")])
        .await?;
    assert_eq!(echoed.text(), "b.example");
    Ok(())
}
