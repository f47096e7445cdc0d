//! Invalidation (RFC 9111 §4.4): a non-error response to an unsafe method invalidates the target
//! URI and the same-origin `Location` / `Content-Location` it names.

use super::Setup;
use outpost_e2e::Reply;

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn unsafe_methods_invalidate_their_target() -> anyhow::Result<()> {
    let s = Setup::new().await?;
    s.origin
        .route_fn("/items/1", |req| match req.method.as_str() {
            "GET" => Reply::ok("max-age=600", "item"),
            _ => Reply::new(200).body("changed"),
        });
    s.get("/items/1").await?;
    for (i, method) in ["POST", "PUT", "DELETE", "PATCH"].into_iter().enumerate() {
        assert!(s.get("/items/1").await?.is_hit(), "cached before {method}");
        s.send(method, "/items/1", &[], b"x".to_vec()).await?;
        let after = s.get("/items/1").await?;
        assert!(
            !after.is_hit(),
            "{method} invalidated it: {}",
            after.cache_status()
        );
        let gets = s
            .origin
            .requests()
            .iter()
            .filter(|r| r.method == "GET")
            .count();
        assert_eq!(gets, i + 2);
    }
    Ok(())
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn location_and_content_location_are_invalidated_when_same_origin() -> anyhow::Result<()> {
    let s = Setup::new().await?;
    for path in ["/items/2", "/items/3", "/items/4"] {
        s.origin.route(path, Reply::ok("max-age=600", path));
        s.get(path).await?;
    }
    let own = s.edge.addr;
    s.origin.route(
        "/items",
        Reply::new(201)
            .header("Location", "/items/2")
            .header("Content-Location", &format!("http://{own}/items/3")),
    );
    s.send("POST", "/items", &[], b"new".to_vec()).await?;
    assert!(!s.get("/items/2").await?.is_hit(), "Location");
    assert!(!s.get("/items/3").await?.is_hit(), "Content-Location");
    assert!(s.get("/items/4").await?.is_hit(), "untouched");
    s.origin.route(
        "/elsewhere",
        Reply::new(201).header("Location", "http://other.example/items/4"),
    );
    s.send("POST", "/elsewhere", &[], Vec::new()).await?;
    assert!(
        s.get("/items/4").await?.is_hit(),
        "another origin's URL is not ours to invalidate"
    );
    Ok(())
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn error_responses_and_safe_methods_invalidate_nothing() -> anyhow::Result<()> {
    let s = Setup::new().await?;
    s.origin
        .route_fn("/thing", |req| match req.method.as_str() {
            "GET" => Reply::ok("max-age=600", "thing"),
            "OPTIONS" => Reply::new(204),
            _ => Reply::new(500).body("nope"),
        });
    s.get("/thing").await?;
    s.send("POST", "/thing", &[], Vec::new()).await?;
    s.send("OPTIONS", "/thing", &[], Vec::new()).await?;
    assert!(s.get("/thing").await?.is_hit());
    Ok(())
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn every_variant_is_invalidated() -> anyhow::Result<()> {
    let s = Setup::new().await?;
    s.origin
        .route_fn("/multi", |req| match req.method.as_str() {
            "GET" => Reply::ok(
                "max-age=600",
                req.header("x-lang").unwrap_or("-").to_owned(),
            )
            .header("Vary", "X-Lang"),
            _ => Reply::new(204),
        });
    for lang in ["en", "fr"] {
        s.get_with("/multi", &[("x-lang", lang)]).await?;
        assert!(s.get_with("/multi", &[("x-lang", lang)]).await?.is_hit());
    }
    s.send("PUT", "/multi", &[], b"x".to_vec()).await?;
    for lang in ["en", "fr"] {
        assert!(
            !s.get_with("/multi", &[("x-lang", lang)]).await?.is_hit(),
            "{lang}"
        );
    }
    Ok(())
}
