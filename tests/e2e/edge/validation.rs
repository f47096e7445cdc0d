//! Validation (RFC 9111 §4.3): stale entries revalidate with their validators, a 304 refreshes
//! the stored header fields and freshness, a 200 replaces the entry, and clients' own
//! conditional requests are answered from cache.

use super::{Setup, http_date_forms};
use outpost_e2e::Reply;

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_304_updates_stored_fields_and_freshness() -> anyhow::Result<()> {
    let s = Setup::new().await?;
    s.origin.route_fn("/doc", |req| {
        if req.header("if-none-match") == Some("\"v1\"") {
            Reply::new(304)
                .header("ETag", "\"v1\"")
                .header("Cache-Control", "max-age=100")
                .header("X-Version", "2")
        } else {
            // Stored already stale: 20 s old with a 10 s lifetime.
            Reply::ok("max-age=10", "the body")
                .header("ETag", "\"v1\"")
                .header("X-Version", "1")
                .header("Age", "20")
        }
    });
    let first = s.get("/doc").await?;
    assert_eq!(first.header("x-version"), "1");
    let revalidated = s.get("/doc").await?;
    assert_eq!(
        (revalidated.status, revalidated.text().as_str()),
        (200, "the body")
    );
    assert!(
        revalidated
            .cache_status()
            .starts_with("outpost; fwd=stale; fwd-status=304; stored; ttl="),
        "{}",
        revalidated.cache_status()
    );
    assert_eq!(
        revalidated.header("x-version"),
        "2",
        "the 304's fields replace the stored ones"
    );
    let hit = s.get("/doc").await?;
    assert!(
        hit.is_hit(),
        "fresh again after the 304: {}",
        hit.cache_status()
    );
    assert_eq!(
        (
            hit.header("x-version"),
            hit.text().as_str(),
            hit.header("cache-control")
        ),
        ("2", "the body", "max-age=100")
    );
    assert_eq!(s.origin.count("/doc"), 2);
    Ok(())
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn last_modified_is_used_as_a_validator() -> anyhow::Result<()> {
    let s = Setup::new().await?;
    let modified = "Tue, 01 Sep 2026 10:00:00 GMT";
    s.origin.route_fn("/lm", move |req| {
        if req.header("if-modified-since") == Some(modified) {
            Reply::new(304).header("Cache-Control", "max-age=60")
        } else {
            Reply::ok("max-age=10", "lm body")
                .header("Last-Modified", modified)
                .header("Age", "20")
        }
    });
    s.get("/lm").await?;
    let r = s.get("/lm").await?;
    assert_eq!(r.text(), "lm body");
    assert!(
        r.cache_status().contains("fwd-status=304"),
        "{}",
        r.cache_status()
    );
    Ok(())
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_200_on_revalidation_replaces_the_entry() -> anyhow::Result<()> {
    let s = Setup::new().await?;
    s.origin.route_seq(
        "/news",
        [
            Reply::ok("max-age=10", "yesterday")
                .header("ETag", "\"a\"")
                .header("Age", "20"),
            Reply::ok("max-age=60", "today").header("ETag", "\"b\""),
        ],
    );
    s.get("/news").await?;
    let r = s.get("/news").await?;
    assert_eq!(r.text(), "today");
    assert!(
        r.cache_status()
            .starts_with("outpost; fwd=stale; fwd-status=200; stored"),
        "{}",
        r.cache_status()
    );
    assert_eq!(
        s.origin.requests()[1].header("if-none-match"),
        Some("\"a\"")
    );
    let hit = s.get("/news").await?;
    assert!(hit.is_hit());
    assert_eq!(
        (hit.text().as_str(), hit.header("etag")),
        ("today", "\"b\"")
    );
    Ok(())
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn client_conditionals_are_answered_from_cache() -> anyhow::Result<()> {
    let s = Setup::new().await?;
    let modified = "Tue, 01 Sep 2026 10:00:00 GMT";
    s.origin.route(
        "/asset",
        Reply::ok("max-age=60", "asset")
            .header("ETag", "\"abc\"")
            .header("Last-Modified", modified),
    );
    s.get("/asset").await?;
    let r = s
        .get_with("/asset", &[("if-none-match", "\"abc\"")])
        .await?;
    assert_eq!((r.status, r.body.len()), (304, 0));
    assert_eq!(r.header("etag"), "\"abc\"");
    assert!(r.is_hit(), "{}", r.cache_status());
    let r = s
        .get_with("/asset", &[("if-none-match", "\"other\", W/\"abc\"")])
        .await?;
    assert_eq!(r.status, 304, "weak comparison over a list");
    let r = s
        .get_with("/asset", &[("if-none-match", "\"other\"")])
        .await?;
    assert_eq!((r.status, r.text().as_str()), (200, "asset"));
    let r = s
        .get_with("/asset", &[("if-modified-since", modified)])
        .await?;
    assert_eq!(r.status, 304);
    // `*` matches any stored representation (RFC 9110 §13.1.2).
    let r = s.get_with("/asset", &[("if-none-match", "*")]).await?;
    assert_eq!((r.status, r.body.len()), (304, 0));
    assert_eq!(
        s.origin.count("/asset"),
        1,
        "none of this reached the origin"
    );

    // No Last-Modified: the stored Date is what If-Modified-Since is compared with (RFC 9111
    // §4.3.2), in whichever HTTP-date form the client sends it.
    let now = std::time::SystemTime::now();
    let forms = http_date_forms(now);
    s.origin.route(
        "/undated",
        Reply::ok("max-age=60", "undated").header("Date", &forms[0]),
    );
    s.get("/undated").await?;
    for since in &forms {
        let r = s
            .get_with("/undated", &[("if-modified-since", since)])
            .await?;
        assert_eq!((r.status, r.body.len()), (304, 0), "{since}");
    }
    let earlier = httpdate::fmt_http_date(now - std::time::Duration::from_secs(60));
    let r = s
        .get_with("/undated", &[("if-modified-since", &earlier)])
        .await?;
    assert_eq!((r.status, r.text().as_str()), (200, "undated"));
    assert_eq!(s.origin.count("/undated"), 1);
    Ok(())
}
