//! HEAD answered from a cached GET, and Range requests answered from cached whole objects
//! (single and multiple ranges, If-Range, 416).

use super::Setup;
use outpost_e2e::Reply;

fn body() -> Vec<u8> {
    (0..1000u32).map(|i| b'a' + (i % 26) as u8).collect()
}

async fn cached(s: &Setup) -> anyhow::Result<()> {
    s.origin.route(
        "/file",
        Reply::ok("max-age=600", body())
            .header("ETag", "\"f1\"")
            .header("Content-Type", "text/plain"),
    );
    s.get("/file").await?;
    Ok(())
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn head_is_answered_from_a_cached_get() -> anyhow::Result<()> {
    let s = Setup::new().await?;
    cached(&s).await?;
    let head = s.send("HEAD", "/file", &[], Vec::new()).await?;
    assert_eq!(
        (head.status, head.body.len(), head.header("content-length")),
        (200, 0, "1000")
    );
    assert!(head.is_hit());
    assert_eq!(s.origin.count("/file"), 1);
    // And a HEAD miss fills the cache for later GETs.
    s.origin
        .route("/later", Reply::ok("max-age=600", "later body"));
    let head = s.send("HEAD", "/later", &[], Vec::new()).await?;
    assert_eq!((head.status, head.body.len()), (200, 0));
    let get = s.get("/later").await?;
    assert!(get.is_hit(), "{}", get.cache_status());
    assert_eq!(get.text(), "later body");
    Ok(())
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn single_and_suffix_ranges_from_cache() -> anyhow::Result<()> {
    let s = Setup::new().await?;
    cached(&s).await?;
    let r = s.get_with("/file", &[("range", "bytes=10-19")]).await?;
    assert_eq!(
        (r.status, r.header("content-range")),
        (206, "bytes 10-19/1000")
    );
    assert_eq!(r.body, body()[10..20]);
    assert!(r.is_hit());
    let r = s.get_with("/file", &[("range", "bytes=-5")]).await?;
    assert_eq!(
        (r.status, r.header("content-range")),
        (206, "bytes 995-999/1000")
    );
    assert_eq!(r.body, body()[995..]);
    let r = s.get_with("/file", &[("range", "bytes=990-")]).await?;
    assert_eq!(r.body, body()[990..]);
    assert_eq!(s.origin.count("/file"), 1);
    Ok(())
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn multiple_ranges_make_a_multipart_response() -> anyhow::Result<()> {
    let s = Setup::new().await?;
    cached(&s).await?;
    let r = s
        .get_with("/file", &[("range", "bytes=0-4,100-104")])
        .await?;
    assert_eq!(r.status, 206);
    let ct = r.header("content-type").to_owned();
    let boundary = ct
        .strip_prefix("multipart/byteranges; boundary=")
        .expect("multipart");
    let text = r.text();
    let parts: Vec<&str> = text
        .split(&format!("--{boundary}"))
        .filter(|p| p.contains("Content-Range"))
        .collect();
    assert_eq!(parts.len(), 2, "{text}");
    assert!(
        parts[0].contains("Content-Range: bytes 0-4/1000")
            && parts[0].trim_end().ends_with("abcde"),
        "{}",
        parts[0]
    );
    assert!(
        parts[1].contains("Content-Range: bytes 100-104/1000")
            && parts[1].trim_end().ends_with("wxyza"),
        "{}",
        parts[1]
    );
    Ok(())
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn if_range_and_unsatisfiable_ranges() -> anyhow::Result<()> {
    let s = Setup::new().await?;
    cached(&s).await?;
    let r = s
        .get_with("/file", &[("range", "bytes=0-9"), ("if-range", "\"f1\"")])
        .await?;
    assert_eq!((r.status, r.body.len()), (206, 10), "If-Range matches");
    let r = s
        .get_with("/file", &[("range", "bytes=0-9"), ("if-range", "\"old\"")])
        .await?;
    assert_eq!(
        (r.status, r.body.len()),
        (200, 1000),
        "If-Range does not match: the whole object"
    );
    let r = s.get_with("/file", &[("range", "bytes=5000-6000")]).await?;
    assert_eq!((r.status, r.header("content-range")), (416, "bytes */1000"));
    assert_eq!(s.origin.count("/file"), 1);
    Ok(())
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_range_miss_fetches_and_stores_the_whole_object() -> anyhow::Result<()> {
    let s = Setup::new().await?;
    s.origin.route("/big", Reply::ok("max-age=600", body()));
    let r = s.get_with("/big", &[("range", "bytes=0-9")]).await?;
    assert_eq!((r.status, r.body.len()), (206, 10));
    let sent = s.origin.requests().pop().expect("the fill");
    assert_eq!(
        sent.header("range"),
        None,
        "the origin is asked for the whole object"
    );
    let whole = s.get("/big").await?;
    assert!(whole.is_hit());
    assert_eq!(whole.body, body());
    Ok(())
}
