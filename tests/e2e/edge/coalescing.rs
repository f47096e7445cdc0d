//! Coalescing: concurrent misses for one key make one origin request, and a stuck fill never
//! blocks the others forever.

use std::time::Duration;

use super::Setup;
use outpost_e2e::Reply;

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn concurrent_misses_make_one_origin_request() -> anyhow::Result<()> {
    let s = Setup::new().await?;
    s.origin.route(
        "/popular",
        Reply::ok("max-age=60", "everyone gets this").delay(Duration::from_millis(400)),
    );
    let responses: Vec<_> = futures::future::join_all((0..20).map(|_| s.get("/popular")))
        .await
        .into_iter()
        .collect::<anyhow::Result<_>>()?;
    for r in &responses {
        assert_eq!((r.status, r.text().as_str()), (200, "everyone gets this"));
    }
    assert_eq!(
        s.origin.count("/popular"),
        1,
        "one fetch for twenty requests"
    );
    let collapsed = responses
        .iter()
        .filter(|r| r.cache_status().ends_with("; collapsed"))
        .count();
    assert!(
        collapsed >= 1,
        "waiters say they were collapsed: {:?}",
        responses
            .iter()
            .map(|r| r.cache_status())
            .collect::<Vec<_>>()
    );
    Ok(())
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_stuck_fill_releases_its_waiters_after_the_lock_timeout() -> anyhow::Result<()> {
    let s = Setup::with_config("[cache]\nlock_timeout_ms = 300\n").await?;
    s.origin.route_seq(
        "/stuck",
        [
            Reply::ok("max-age=60", "slow").delay(Duration::from_secs(6)),
            Reply::ok("max-age=60", "fast"),
        ],
    );
    let writer = {
        let client = s.client.clone();
        let url = s.edge.url("/stuck");
        tokio::spawn(async move { client.get(url).send().await?.text().await })
    };
    super::eventually("the stuck fill to reach the origin", || {
        s.origin.count("/stuck") == 1
    })
    .await?;
    let waiter = s.get("/stuck").await?;
    assert_eq!(
        waiter.text(),
        "fast",
        "the waiter gave up on the lock and fetched itself"
    );
    assert!(
        !writer.is_finished(),
        "…while the stuck fill was still running"
    );
    assert_eq!(s.origin.count("/stuck"), 2);
    assert_eq!(writer.await??, "slow");
    Ok(())
}
