//! The hit path answers exactly as the proxy would. Two nodes of one region share a memcached
//! pool, so they hold the same stored objects (same `Date`, same age reference): `fast` with the
//! hit path on (the default), `full` with `server.hit_path = false`, where every request goes
//! through the proxy. The same hit requests (plain, HEAD, conditional, `Vary` variants, request
//! directives, `Connection: close`, pipelined) get the same bytes from both; the hit path's own
//! counter proves it answered them. Purged and soft-purged objects are not served from the old
//! copy by either, and become hit-path hits again once refreshed.

use std::net::SocketAddr;
use std::time::Duration;

use super::purge::{TOKEN, purge};
use super::{SITE, get_site};
use outpost_e2e::{EdgeProcess, Memcached, Reply, ScriptedOrigin, raw, wait};

/// A region node's config; `extra` goes under `[server]`.
fn node(memcached: &Memcached, server: &str) -> String {
    format!(
        "[server]\n{server}\n[admin]\ntoken = \"{TOKEN}\"\n\
         [l2]\nservers = [\"{}\"]\ndeadline_ms = 200\nchunk_deadline_ms = 500\n",
        memcached.addr
    )
}

/// Sends `request` (ending with `Connection: close`) on a new connection; the bytes back.
async fn send(addr: SocketAddr, request: &str) -> anyhow::Result<Vec<u8>> {
    raw::exchange(addr, request.as_bytes()).await
}

/// The same request to `fast`, `full`, and `fast` again: when both `fast` answers are the same
/// bytes (no `Age` or `ttl` second passed between them), `full`'s, sent between them, must be
/// too. Returns that answer.
async fn same_from_both(
    fast: &EdgeProcess,
    full: &EdgeProcess,
    request: &str,
) -> anyhow::Result<String> {
    for _ in 0..10 {
        let first = send(fast.addr, request).await?;
        let from_full = send(full.addr, request).await?;
        let again = send(fast.addr, request).await?;
        if first == again {
            let text = String::from_utf8_lossy(&first).into_owned();
            assert_eq!(
                String::from_utf8_lossy(&from_full),
                text,
                "the proxy and the hit path answer {request:?} differently"
            );
            return Ok(text);
        }
    }
    anyhow::bail!("no two answers of the hit path within the same second for {request:?}")
}

fn request(method: &str, path: &str, fields: &[&str]) -> String {
    let mut r = format!("{method} {path} HTTP/1.1\r\nHost: {SITE}\r\n");
    for f in fields {
        r.push_str(f);
        r.push_str("\r\n");
    }
    r
}

/// `request` closing its connection.
fn closing(method: &str, path: &str, fields: &[&str]) -> String {
    request(method, path, fields) + "Connection: close\r\n\r\n"
}

async fn answered_on_hit_path(edge: &EdgeProcess) -> anyhow::Result<f64> {
    edge.metric("outpost_hit_path_answers_total").await
}

/// Fills `path` through `fast` (and the shared tier), then makes it an L1 entry in `full`.
async fn stored_in_both(
    fast: &EdgeProcess,
    full: &EdgeProcess,
    path: &str,
    fields: &[(&str, &str)],
    written: f64,
) -> anyhow::Result<()> {
    let first = get_site(fast, path, fields).await?;
    anyhow::ensure!(
        first.cache_status().contains("fwd=uri-miss") || first.cache_status().contains("vary-miss"),
        "{path} was cached already: {}",
        first.cache_status()
    );
    fast.metric_reaches("outpost_l2_writes_total{result=\"stored\"}", written)
        .await?;
    let promoted = get_site(full, path, fields).await?;
    anyhow::ensure!(
        promoted.cache_status().contains("detail=l2"),
        "{}",
        promoted.cache_status()
    );
    Ok(())
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn hits_are_the_same_bytes_with_and_without_the_hit_path() -> anyhow::Result<()> {
    let memcached = Memcached::start()?;
    let origin = ScriptedOrigin::start().await?;
    origin.route(
        "/page",
        Reply::ok("public, max-age=3600", "the page")
            .header("ETag", "\"v1\"")
            .header("Last-Modified", "Sun, 06 Nov 1994 08:49:37 GMT")
            .header("Content-Type", "text/html")
            .header("Surrogate-Key", "page")
            .header("Via", "1.1 origin-proxy"),
    );
    origin.route_fn("/vary", |req| {
        let encoding = req.header("accept-encoding").unwrap_or("none").to_owned();
        Reply::ok("max-age=3600", format!("for {encoding}"))
            .header("Vary", "Accept-Encoding")
            .header("ETag", &format!("\"{encoding}\""))
    });
    // Kept in a memory file (over `cache.l1.sendfile_min_bytes`): sent by the kernel.
    let large: Vec<u8> = (0..200_000u32).map(|i| (i % 251) as u8).collect();
    origin.route("/large", Reply::ok("max-age=3600", large.clone()));
    let fast = EdgeProcess::start(&[origin.addr], &node(&memcached, ""))?;
    let full = EdgeProcess::start(&[origin.addr], &node(&memcached, "hit_path = false"))?;
    stored_in_both(&fast, &full, "/page", &[], 1.0).await?;
    stored_in_both(&fast, &full, "/vary", &[("Accept-Encoding", "gzip")], 2.0).await?;
    stored_in_both(&fast, &full, "/vary", &[("Accept-Encoding", "br")], 3.0).await?;
    stored_in_both(&fast, &full, "/large", &[], 4.0).await?;
    let origin_requests = origin.requests().len();
    let before = answered_on_hit_path(&fast).await?;

    let cases = [
        // What the hit path answers.
        closing("GET", "/page", &[]),
        closing("HEAD", "/page", &[]),
        closing("GET", "/page", &["If-None-Match: \"v0\", W/\"v1\""]),
        closing("GET", "/page", &["If-None-Match: \"v0\""]),
        closing(
            "GET",
            "/page",
            &["If-Modified-Since: Sun, 06 Nov 1994 08:49:37 GMT"],
        ),
        closing("HEAD", "/page", &["If-None-Match: *"]),
        closing(
            "GET",
            "/page",
            &["Cache-Control: max-stale=60, min-fresh=5"],
        ),
        closing("GET", "/page?", &["User-Agent: test", "Accept: */*"]),
        closing("GET", "/vary", &["Accept-Encoding: gzip"]),
        closing(
            "GET",
            "/vary",
            &["Accept-Encoding: gzip", "If-None-Match: \"gzip\""],
        ),
        closing("GET", "/large", &[]),
        closing("HEAD", "/large", &[]),
        // A variant in a secondary slot (the proxy finds it with a second lookup).
        closing("GET", "/vary", &["Accept-Encoding: br"]),
        // Declined: the proxy answers on either node (ranges, absolute-form).
        closing("GET", "/page", &["Range: bytes=0-2"]),
        closing("GET", "/large", &["Range: bytes=100-199999"]),
        closing("GET", "http://images.example/page", &[]),
        // Pipelined: keep-alive answers in order, hit path and proxy mixed.
        request("GET", "/page", &[])
            + "\r\n"
            + &request("HEAD", "/vary", &["Accept-Encoding: br"])
            + "\r\n"
            + &request("GET", "/page", &["If-None-Match: \"v1\""])
            + "\r\n"
            + &request("GET", "/large", &[])
            + "\r\n"
            + &closing("GET", "/vary", &["Accept-Encoding: gzip"]),
    ];
    for case in &cases {
        let answer = same_from_both(&fast, &full, case).await?;
        assert!(
            answer.contains("cache-status: outpost; hit"),
            "{case:?}: {answer}"
        );
    }
    let answers = same_from_both(&fast, &full, &cases[0]).await?;
    assert!(answers.starts_with("HTTP/1.1 200 OK\r\n") && answers.ends_with("the page"));
    let pipelined = same_from_both(&fast, &full, &cases[cases.len() - 1]).await?;
    assert_eq!(
        raw::heads(pipelined.as_bytes()).len(),
        1,
        "heads() stops at the first final answer"
    );
    assert_eq!(pipelined.matches("HTTP/1.1 ").count(), 5, "{pipelined}");
    let kept = pipelined
        .to_ascii_lowercase()
        .matches("connection: keep-alive")
        .count();
    assert_eq!(kept, 4, "{pipelined}");
    let whole = send(fast.addr, &cases[10]).await?;
    assert!(whole.ends_with(&large), "the large body, byte for byte");
    assert_eq!(
        fast.metric("outpost_l1_body_files").await?,
        1.0,
        "the large body is kept in a memory file"
    );

    let on_hit_path = answered_on_hit_path(&fast).await? - before;
    // `fast` got each case at least twice: 13 answered on the hit path, and the 5 pipelined
    // requests; then the first case and the pipelined ones twice more, and one more.
    assert!(
        on_hit_path >= 2.0 * 13.0 + 2.0 * 5.0 + 2.0 + 2.0 * 5.0 + 1.0,
        "the hit path answered {on_hit_path}"
    );
    assert_eq!(
        answered_on_hit_path(&full).await?,
        0.0,
        "the switch turns it off"
    );
    assert_eq!(
        origin.requests().len(),
        origin_requests,
        "every answer came from the cache"
    );
    Ok(())
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn purged_objects_are_not_served_from_the_hit_path() -> anyhow::Result<()> {
    let memcached = Memcached::start()?;
    let origin = ScriptedOrigin::start().await?;
    origin.route(
        "/p",
        Reply::ok("max-age=3600", "p body")
            .header("ETag", "\"p\"")
            .header("Surrogate-Key", "p"),
    );
    let edge = EdgeProcess::start(&[origin.addr], &node(&memcached, ""))?;
    get_site(&edge, "/p", &[]).await?;
    let hit = get_site(&edge, "/p", &[]).await?;
    assert!(hit.is_hit());
    let on_hit_path = answered_on_hit_path(&edge).await?;
    assert!(on_hit_path >= 1.0);

    // A soft purge: the next request revalidates with the origin (one request), then hits.
    let (status, receipt) = purge(
        &edge,
        TOKEN,
        r#"{"tags": ["p"], "soft": true, "wait": true}"#,
    )
    .await?;
    assert_eq!(status, 200, "{receipt}");
    let count = origin.count("/p");
    let revalidated = get_site(&edge, "/p", &[]).await?;
    assert!(
        revalidated.cache_status().contains("fwd=stale"),
        "{}",
        revalidated.cache_status()
    );
    assert_eq!(origin.count("/p"), count + 1);
    assert_eq!(answered_on_hit_path(&edge).await?, on_hit_path);
    assert!(get_site(&edge, "/p", &[]).await?.is_hit());
    assert_eq!(
        answered_on_hit_path(&edge).await?,
        on_hit_path + 1.0,
        "the refreshed object is a hit-path hit again"
    );

    // A hard purge: the next request is a miss.
    let (status, receipt) = purge(&edge, TOKEN, r#"{"tags": ["p"], "wait": true}"#).await?;
    assert_eq!(status, 200, "{receipt}");
    let refetched = get_site(&edge, "/p", &[]).await?;
    assert!(
        refetched.cache_status().contains("fwd=uri-miss"),
        "{}",
        refetched.cache_status()
    );
    assert_eq!(origin.count("/p"), count + 2);
    wait::eventually(Duration::from_secs(5), "a hit again", || async {
        get_site(&edge, "/p", &[])
            .await
            .ok()
            .filter(|r| r.is_hit())
            .map(|_| ())
    })
    .await?;
    assert_eq!(origin.count("/p"), count + 2);
    Ok(())
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_large_body_reaches_a_slow_reader_whole() -> anyhow::Result<()> {
    use tokio::io::{AsyncReadExt, AsyncWriteExt};
    let origin = ScriptedOrigin::start().await?;
    let body: Vec<u8> = (0..6_000_000u32).map(|i| (i % 253) as u8).collect();
    origin.route("/huge", Reply::ok("max-age=3600", body.clone()));
    let edge = EdgeProcess::start(&[origin.addr], "")?;
    get_site(&edge, "/huge", &[]).await?;
    let before = answered_on_hit_path(&edge).await?;
    // A small receive window: 6 MB is more than loopback buffers between the two sockets (the
    // sender's is at most 4 MiB), so the edge's socket fills, the kernel refuses more, and the
    // edge goes on piece by piece as room comes back.
    let socket = tokio::net::TcpSocket::new_v4()?;
    socket.set_recv_buffer_size(4096)?;
    let mut stream = socket.connect(edge.addr).await?;
    stream
        .write_all(closing("GET", "/huge", &[]).as_bytes())
        .await?;
    let mut answer = Vec::new();
    let mut chunk = vec![0u8; 8192];
    loop {
        let n = tokio::time::timeout(Duration::from_secs(20), stream.read(&mut chunk)).await??;
        if n == 0 {
            break;
        }
        answer.extend_from_slice(&chunk[..n]);
    }
    let head_end = answer
        .windows(4)
        .position(|w| w == b"\r\n\r\n")
        .ok_or_else(|| anyhow::anyhow!("no head"))?;
    assert!(answer.starts_with(b"HTTP/1.1 200 OK\r\n"));
    assert_eq!(answer.len() - head_end - 4, body.len());
    assert!(
        answer[head_end + 4..] == body[..],
        "the body, byte for byte"
    );
    assert_eq!(answered_on_hit_path(&edge).await?, before + 1.0);
    assert_eq!(edge.metric("outpost_l1_body_files").await?, 1.0);
    Ok(())
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_url_purge_reaches_every_variant_on_the_hit_path() -> anyhow::Result<()> {
    let origin = ScriptedOrigin::start().await?;
    origin.route_fn("/v", |req| {
        let encoding = req.header("accept-encoding").unwrap_or("none").to_owned();
        Reply::ok("max-age=3600", format!("for {encoding}"))
            .header("Vary", "Accept-Encoding")
            .header("ETag", &format!("\"{encoding}\""))
    });
    let edge = EdgeProcess::start(&[origin.addr], &format!("[admin]\ntoken = \"{TOKEN}\"\n"))?;
    // The first variant in the primary slot, the second in a secondary one; both hits.
    for encoding in ["gzip", "br"] {
        get_site(&edge, "/v", &[("Accept-Encoding", encoding)]).await?;
        let hit = get_site(&edge, "/v", &[("Accept-Encoding", encoding)]).await?;
        assert!(hit.is_hit(), "{encoding}: {}", hit.cache_status());
    }
    assert_eq!(origin.count("/v"), 2);
    let on_hit_path = answered_on_hit_path(&edge).await?;
    assert!(on_hit_path >= 2.0, "both variants from the hit path");

    // A soft purge of the URL marks it by its primary key: no variant is served as stored. The
    // one in the primary slot is revalidated; then, with the primary slot refreshed and
    // servable, the one in the secondary slot is older than it and fetched again (Pingora's
    // rule), not answered from the hit path.
    let (status, receipt) = purge(
        &edge,
        TOKEN,
        &format!(r#"{{"urls": ["http://{SITE}/v"], "soft": true, "wait": true}}"#),
    )
    .await?;
    assert_eq!(status, 200, "{receipt}");
    for (encoding, origin_requests) in [("gzip", 3), ("br", 4)] {
        let after = get_site(&edge, "/v", &[("Accept-Encoding", encoding)]).await?;
        assert!(
            !after.is_hit(),
            "the purged {encoding} variant: {}",
            after.cache_status()
        );
        assert_eq!(origin.count("/v"), origin_requests);
    }
    assert_eq!(answered_on_hit_path(&edge).await?, on_hit_path);
    Ok(())
}
