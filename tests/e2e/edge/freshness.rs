//! Freshness (RFC 9111 §4.2, RFC 9213): precedence of the fields, age correction, `Age` on hits.
//! Staleness is produced with `Age` and `Date` fields, not by waiting.

use std::time::{Duration, SystemTime};

use super::Setup;
use outpost_e2e::Reply;

fn ttl(cache_status: &str) -> i64 {
    cache_status
        .split("ttl=")
        .nth(1)
        .and_then(|t| t.split(';').next())
        .and_then(|t| t.parse().ok())
        .unwrap_or(i64::MIN)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn targeted_fields_take_precedence_and_are_stripped() -> anyhow::Result<()> {
    let s = Setup::new().await?;
    s.origin.route(
        "/cdn",
        Reply::ok("no-store", "x").header("CDN-Cache-Control", "max-age=60"),
    );
    s.origin.route(
        "/surrogate",
        Reply::ok("private", "x").header("Surrogate-Control", "max-age=60"),
    );
    s.origin.route(
        "/other-target",
        Reply::ok("max-age=60", "x").header("Surrogate-Control", "no-store;someone-else"),
    );
    for path in ["/cdn", "/surrogate", "/other-target"] {
        let first = s.get(path).await?;
        let hit = s.get(path).await?;
        assert!(hit.is_hit(), "{path}: {}", hit.cache_status());
        for r in [&first, &hit] {
            assert!(
                !r.headers.contains_key("cdn-cache-control")
                    && !r.headers.contains_key("surrogate-control"),
                "{path}"
            );
        }
        assert_eq!(s.origin.count(path), 1, "{path}");
    }
    // Cache-Control itself still reaches the client, for its own cache.
    assert_eq!(s.get("/cdn").await?.header("cache-control"), "no-store");
    Ok(())
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn s_maxage_then_max_age_then_expires() -> anyhow::Result<()> {
    let s = Setup::new().await?;
    let in_an_hour = httpdate::fmt_http_date(SystemTime::now() + Duration::from_secs(3600));
    s.origin
        .route("/s-maxage", Reply::ok("max-age=0, s-maxage=120", "x"));
    s.origin.route(
        "/expires",
        Reply::new(200).header("Expires", &in_an_hour).body("x"),
    );
    s.origin.route(
        "/bad-expires",
        Reply::new(200).header("Expires", "0").body("x"),
    );
    for path in ["/s-maxage", "/expires", "/bad-expires"] {
        s.get(path).await?;
    }
    let t = ttl(s.get("/s-maxage").await?.cache_status());
    assert!((118..=120).contains(&t), "s-maxage wins: {t}");
    let t = ttl(s.get("/expires").await?.cache_status());
    assert!((3590..=3600).contains(&t), "Expires − Date: {t}");
    let again = s.get("/bad-expires").await?;
    assert!(
        !again.is_hit(),
        "an invalid Expires is already stale: {}",
        again.cache_status()
    );
    assert_eq!(s.origin.count("/bad-expires"), 2);
    Ok(())
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn age_is_corrected_for_age_and_date_and_sent_on_hits() -> anyhow::Result<()> {
    let s = Setup::new().await?;
    s.origin
        .route("/aged", Reply::ok("max-age=100", "x").header("Age", "30"));
    let forty_ago = httpdate::fmt_http_date(SystemTime::now() - Duration::from_secs(40));
    s.origin.route(
        "/dated",
        Reply::ok("max-age=100", "x").header("Date", &forty_ago),
    );
    s.origin.route(
        "/already-stale",
        Reply::ok("max-age=60", "x").header("Age", "120"),
    );
    for path in ["/aged", "/dated", "/already-stale"] {
        s.get(path).await?;
    }
    let hit = s.get("/aged").await?;
    let age: i64 = hit.header("age").parse()?;
    assert!((30..=32).contains(&age), "Age {age}");
    assert!(
        (68..=70).contains(&ttl(hit.cache_status())),
        "{}",
        hit.cache_status()
    );
    let hit = s.get("/dated").await?;
    let age: i64 = hit.header("age").parse()?;
    assert!(
        (40..=42).contains(&age),
        "a Date 40 s old means 40 s of age: {age}"
    );
    let again = s.get("/already-stale").await?;
    assert!(!again.is_hit(), "older than its lifetime on arrival");
    assert_eq!(s.origin.count("/already-stale"), 2);
    Ok(())
}
