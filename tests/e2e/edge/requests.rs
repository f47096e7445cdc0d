//! Request directives (RFC 9111 §5.2.1): no-cache, max-age, min-fresh, max-stale,
//! only-if-cached, no-store, and `Pragma: no-cache` only without Cache-Control.

use super::Setup;
use outpost_e2e::{Recorded, Reply};

/// An origin answering 304 to a matching If-None-Match, else 200 with `cache_control`.
fn validating(
    cache_control: &'static str,
    extra: &'static [(&'static str, &'static str)],
) -> impl Fn(&Recorded) -> Reply {
    move |req| {
        if req.header("if-none-match") == Some("\"v1\"") {
            return Reply::new(304)
                .header("ETag", "\"v1\"")
                .header("Cache-Control", cache_control);
        }
        let mut r = Reply::ok(cache_control, "body v1").header("ETag", "\"v1\"");
        for (k, v) in extra {
            r = r.header(k, v);
        }
        r
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn client_no_cache_revalidates_and_pragma_only_without_cache_control() -> anyhow::Result<()> {
    let s = Setup::new().await?;
    s.origin.route_fn("/doc", validating("max-age=300", &[]));
    s.get("/doc").await?;
    for headers in [
        &[("cache-control", "no-cache")][..],
        &[("cache-control", "max-age=0")],
        &[("pragma", "no-cache")],
    ] {
        let before = s.origin.count("/doc");
        let r = s.get_with("/doc", headers).await?;
        assert_eq!(
            (r.status, r.text().as_str()),
            (200, "body v1"),
            "{headers:?}"
        );
        let status = r.cache_status();
        assert!(
            status.starts_with("outpost; fwd=request; fwd-status=304; stored; ttl=29"),
            "{headers:?}: {status}"
        );
        assert_eq!(s.origin.count("/doc"), before + 1);
        let sent = s.origin.requests().pop().expect("revalidation");
        assert_eq!(
            sent.header("if-none-match"),
            Some("\"v1\""),
            "a conditional request, not a refetch"
        );
    }
    let before = s.origin.count("/doc");
    let r = s
        .get_with(
            "/doc",
            &[("pragma", "no-cache"), ("cache-control", "max-age=3600")],
        )
        .await?;
    assert!(r.is_hit(), "Pragma is ignored next to Cache-Control");
    let r = s
        .get_with(
            "/doc",
            &[("cache-control", "no-transform, some-extension=1")],
        )
        .await?;
    assert!(r.is_hit(), "unknown directives are ignored");
    assert_eq!(s.origin.count("/doc"), before);
    Ok(())
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn max_age_and_min_fresh_against_the_stored_age() -> anyhow::Result<()> {
    let s = Setup::new().await?;
    // 50 s old, 100 s lifetime: 50 s of freshness left.
    s.origin
        .route_fn("/doc", validating("max-age=100", &[("Age", "50")]));
    s.get("/doc").await?;
    let cases = [
        ("max-age=30", false),
        ("max-age=60", true),
        ("min-fresh=60", false),
        ("min-fresh=10", true),
    ];
    for (directive, hit) in cases {
        s.origin
            .route_fn("/doc", validating("max-age=100", &[("Age", "50")]));
        let r = s.get_with("/doc", &[("cache-control", directive)]).await?;
        assert_eq!(r.is_hit(), hit, "{directive}: {}", r.cache_status());
    }
    Ok(())
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn max_stale_accepts_stale_unless_the_origin_forbids_it() -> anyhow::Result<()> {
    let s = Setup::new().await?;
    // Stored 30 s stale.
    s.origin.route(
        "/lenient",
        Reply::ok("max-age=10", "old").header("Age", "40"),
    );
    s.origin.route(
        "/strict",
        Reply::ok("max-age=10, must-revalidate", "old").header("Age", "40"),
    );
    s.get("/lenient").await?;
    s.get("/strict").await?;
    for (directive, hit) in [
        ("max-stale", true),
        ("max-stale=60", true),
        ("max-stale=5", false),
    ] {
        let r = s
            .get_with("/lenient", &[("cache-control", directive)])
            .await?;
        assert_eq!(r.is_hit(), hit, "{directive}: {}", r.cache_status());
    }
    assert_eq!(
        s.origin.count("/lenient"),
        2,
        "only max-stale=5 went to the origin"
    );
    let r = s
        .get_with("/strict", &[("cache-control", "max-stale")])
        .await?;
    assert!(!r.is_hit(), "must-revalidate overrides max-stale");
    assert_eq!(s.origin.count("/strict"), 2);
    Ok(())
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn only_if_cached_never_contacts_the_origin() -> anyhow::Result<()> {
    let s = Setup::new().await?;
    s.origin.route("/maybe", Reply::ok("max-age=60", "here"));
    let miss = s
        .get_with("/maybe", &[("cache-control", "only-if-cached")])
        .await?;
    assert_eq!(miss.status, 504);
    assert_eq!(miss.cache_status(), "outpost; detail=only-if-cached");
    assert_eq!(s.origin.count("/maybe"), 0);
    s.get("/maybe").await?;
    let hit = s
        .get_with("/maybe", &[("cache-control", "only-if-cached")])
        .await?;
    assert_eq!((hit.status, hit.text().as_str()), (200, "here"));
    assert_eq!(s.origin.count("/maybe"), 1);
    Ok(())
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn request_no_store_keeps_the_response_out_of_the_cache() -> anyhow::Result<()> {
    let s = Setup::new().await?;
    s.origin.route("/secret", Reply::ok("max-age=60", "x"));
    let r = s
        .get_with("/secret", &[("cache-control", "no-store")])
        .await?;
    assert!(
        r.cache_status().contains("detail=request-no-store"),
        "{}",
        r.cache_status()
    );
    s.get("/secret").await?;
    assert!(
        s.get("/secret").await?.is_hit(),
        "the URL itself stays cacheable"
    );
    assert_eq!(s.origin.count("/secret"), 2);
    Ok(())
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn operators_can_ignore_client_reloads() -> anyhow::Result<()> {
    let s = Setup::with_config("[cache]\nhonor_client_no_cache = false\n").await?;
    s.origin.route("/hot", Reply::ok("max-age=60", "x"));
    s.get("/hot").await?;
    for cc in ["no-cache", "max-age=0"] {
        assert!(
            s.get_with("/hot", &[("cache-control", cc)]).await?.is_hit(),
            "{cc}"
        );
    }
    assert_eq!(s.origin.count("/hot"), 1);
    Ok(())
}
