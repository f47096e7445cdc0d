//! What the edge stores and what it refuses (RFC 9111 §3), seen from the client and the origin.

use super::Setup;
use outpost_e2e::Reply;

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_fresh_response_is_stored_and_served_from_cache() -> anyhow::Result<()> {
    let s = Setup::new().await?;
    s.origin.route("/page", Reply::ok("max-age=60", "hello"));
    let first = s.get("/page").await?;
    assert_eq!((first.status, first.text().as_str()), (200, "hello"));
    assert!(
        first
            .cache_status()
            .starts_with("outpost; fwd=uri-miss; fwd-status=200; stored; ttl="),
        "{}",
        first.cache_status()
    );
    for _ in 0..3 {
        let hit = s.get("/page").await?;
        assert_eq!(hit.text(), "hello");
        assert!(hit.is_hit(), "{}", hit.cache_status());
        assert!(hit.cache_status().ends_with("detail=l1"));
        assert!(hit.headers.contains_key("age"), "Age on every hit");
    }
    assert_eq!(s.origin.count("/page"), 1);
    Ok(())
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn responses_rfc_9111_forbids_are_not_stored() -> anyhow::Result<()> {
    let s = Setup::new().await?;
    let cases = [
        (
            "/no-store",
            Reply::ok("no-store, max-age=60", "x"),
            "no-store",
        ),
        ("/private", Reply::ok("private, max-age=60", "x"), "private"),
        (
            "/cookie",
            Reply::ok("max-age=60", "x").header("Set-Cookie", "session=abc"),
            "set-cookie",
        ),
        (
            "/vary-star",
            Reply::ok("max-age=60", "x").header("Vary", "*"),
            "vary-star",
        ),
        ("/nothing", Reply::new(200).body("x"), "no-freshness"),
        (
            "/error",
            Reply::new(500).header("ETag", "\"e\"").body("x"),
            "no-freshness",
        ),
        (
            "/partial",
            Reply::ok("max-age=60", "x").header("Content-Range", "bytes 0-0/10"),
            "partial",
        ),
    ];
    let mut cases = cases.to_vec();
    cases[6].1.status = 206;
    for (path, reply, _) in &cases {
        s.origin.route(path, reply.clone());
    }
    for (path, _, why) in &cases {
        for _ in 0..2 {
            let r = s.get(path).await?;
            assert!(
                r.cache_status().contains(&format!("detail={why}")),
                "{path}: {}",
                r.cache_status()
            );
        }
        assert_eq!(s.origin.count(path), 2, "{path} was stored");
    }
    Ok(())
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn authorization_needs_public_s_maxage_or_must_revalidate() -> anyhow::Result<()> {
    let s = Setup::new().await?;
    s.origin.route("/plain", Reply::ok("max-age=60", "x"));
    s.origin
        .route("/public", Reply::ok("public, max-age=60", "x"));
    s.origin.route("/shared", Reply::ok("s-maxage=60", "x"));
    let auth = [("authorization", "Bearer secret")];
    for path in ["/plain", "/public", "/shared"] {
        s.get_with(path, &auth).await?;
        s.get_with(path, &auth).await?;
    }
    assert_eq!(
        s.origin.count("/plain"),
        2,
        "a response to an authorized request is private by default"
    );
    assert_eq!(s.origin.count("/public"), 1);
    assert_eq!(s.origin.count("/shared"), 1);
    // An anonymous request is not kept from the cache by the earlier authorized one.
    s.get("/plain").await?;
    assert!(s.get("/plain").await?.is_hit());
    Ok(())
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn qualified_private_and_no_cache_strip_fields_but_store_the_rest() -> anyhow::Result<()> {
    let s = Setup::new().await?;
    s.origin.route(
        "/profile",
        Reply::ok(
            r#"max-age=60, private="X-User", no-cache="X-Token""#,
            "page",
        )
        .header("X-User", "alice")
        .header("X-Token", "t0k")
        .header("X-Shared", "yes"),
    );
    let first = s.get("/profile").await?;
    assert_eq!(
        first.header("x-user"),
        "alice",
        "the first client gets the full response"
    );
    let hit = s.get("/profile").await?;
    assert!(hit.is_hit());
    assert_eq!(
        (
            hit.header("x-user"),
            hit.header("x-token"),
            hit.header("x-shared")
        ),
        ("", "", "yes")
    );
    assert_eq!(s.origin.count("/profile"), 1);
    Ok(())
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn any_status_with_explicit_freshness_is_stored_heuristics_only_for_some()
-> anyhow::Result<()> {
    let s = Setup::new().await?;
    s.origin.route(
        "/gone",
        Reply::new(404)
            .header("Cache-Control", "max-age=60")
            .body("nope"),
    );
    s.origin.route(
        "/broken",
        Reply::new(503)
            .header("Cache-Control", "max-age=60")
            .body("down"),
    );
    s.origin.route(
        "/moved",
        Reply::new(302)
            .header("Location", "/x")
            .header("Cache-Control", "max-age=60"),
    );
    let ten_days_ago = httpdate::fmt_http_date(
        std::time::SystemTime::now() - std::time::Duration::from_secs(10 * 86400),
    );
    s.origin.route(
        "/old",
        Reply::new(200)
            .header("Last-Modified", &ten_days_ago)
            .body("old"),
    );
    s.origin.route(
        "/old-redirect",
        Reply::new(302)
            .header("Location", "/x")
            .header("Last-Modified", &ten_days_ago),
    );
    for path in ["/gone", "/broken", "/moved", "/old", "/old-redirect"] {
        s.get(path).await?;
        s.get(path).await?;
    }
    for path in ["/gone", "/broken", "/moved"] {
        assert_eq!(s.origin.count(path), 1, "{path}");
    }
    assert_eq!(
        s.origin.count("/old"),
        1,
        "200 + Last-Modified: heuristic freshness"
    );
    let old = s.get("/old").await?;
    let ttl: i64 = old
        .cache_status()
        .rsplit("ttl=")
        .next()
        .and_then(|t| t.split(';').next())
        .and_then(|t| t.parse().ok())
        .unwrap_or(0);
    assert!(
        (86_000..=86_400).contains(&ttl),
        "10% of 10 days, capped at a day: {}",
        old.cache_status()
    );
    assert_eq!(
        s.origin.count("/old-redirect"),
        2,
        "302 is not heuristically cacheable"
    );
    Ok(())
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn directive_names_are_case_insensitive_and_conflicts_mean_stale() -> anyhow::Result<()> {
    let s = Setup::new().await?;
    s.origin
        .route("/upper", Reply::ok("PUBLIC, MAX-AGE=60", "x"));
    s.origin.route(
        "/conflict",
        Reply::ok("max-age=60, max-age=3600", "x").header("ETag", "\"c\""),
    );
    s.origin.route(
        "/garbage",
        Reply::ok("max-age=60, ,,=, foo=\"bar, baz\"", "x"),
    );
    for path in ["/upper", "/conflict", "/garbage"] {
        s.get(path).await?;
        s.get(path).await?;
    }
    assert_eq!(s.origin.count("/upper"), 1);
    assert_eq!(
        s.origin.count("/garbage"),
        1,
        "malformed directives around a good one"
    );
    assert_eq!(
        s.origin.count("/conflict"),
        2,
        "conflicting max-age: stored stale, revalidated"
    );
    let conflict: Vec<_> = s
        .origin
        .requests()
        .into_iter()
        .filter(|r| r.path() == "/conflict")
        .collect();
    assert_eq!(
        conflict[1].header("if-none-match"),
        Some("\"c\""),
        "revalidated with its ETag"
    );
    Ok(())
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn statuses_the_cache_does_not_understand_are_never_stored() -> anyhow::Result<()> {
    let s = Setup::new().await?;
    let routes = [
        (
            "/unknown-must-understand",
            299,
            "no-store, must-understand, max-age=60",
        ),
        ("/unknown-fresh", 599, "max-age=60"),
        ("/understood", 200, "no-store, must-understand, max-age=60"),
    ];
    for (path, status, cc) in routes {
        s.origin.route(
            path,
            Reply::new(status).header("Cache-Control", cc).body("x"),
        );
        let first = s.get(path).await?;
        assert_eq!(first.status, status);
        s.get(path).await?;
    }
    assert_eq!(s.origin.count("/unknown-must-understand"), 2);
    assert_eq!(s.origin.count("/unknown-fresh"), 2);
    let understood = s.get("/understood").await?;
    assert!(
        understood.is_hit(),
        "must-understand lets an understood status override no-store: {}",
        understood.cache_status()
    );
    assert_eq!(s.origin.count("/understood"), 1);
    Ok(())
}
