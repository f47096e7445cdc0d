//! Pass-through is exact: methods, bodies, request and response fields, interim responses,
//! keep-alive, and no retry of a request that may have reached the origin.

use super::Setup;
use outpost_e2e::{Reply, raw};

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn every_method_and_body_reaches_the_origin_as_sent() -> anyhow::Result<()> {
    let s = Setup::new().await?;
    s.origin.route(
        "/echo",
        Reply::new(200)
            .header("Cache-Control", "no-store")
            .body("done"),
    );
    for method in ["GET", "POST", "PUT", "DELETE", "PATCH", "OPTIONS", "BREW"] {
        let body = if method == "GET" {
            Vec::new()
        } else {
            format!("payload for {method}").into_bytes()
        };
        let r = s
            .send(
                method,
                "/echo?x=1",
                &[
                    ("X-Custom-Case", "MiXeD value"),
                    ("X-Twice", "a"),
                    ("X-Twice", "b"),
                ],
                body.clone(),
            )
            .await?;
        assert_eq!(r.status, 200, "{method}");
        let seen = s.origin.requests().pop().expect("a request");
        assert_eq!(
            (seen.method.as_str(), seen.target.as_str()),
            (method, "/echo?x=1")
        );
        assert_eq!(seen.body, body, "{method} body");
        assert_eq!(seen.header("x-custom-case"), Some("MiXeD value"));
        let twice: Vec<_> = seen
            .headers
            .iter()
            .filter(|(k, _)| k.eq_ignore_ascii_case("x-twice"))
            .map(|(_, v)| v.as_str())
            .collect();
        assert_eq!(twice, ["a", "b"], "repeated fields keep their order");
        assert_eq!(seen.header("via"), Some("1.1 outpost"));
        assert_eq!(seen.header("x-forwarded-for"), Some("127.0.0.1"));
        assert_eq!(seen.header("x-forwarded-proto"), Some("http"));
        assert_eq!(
            seen.header("x-forwarded-host"),
            Some(s.edge.addr.to_string().as_str())
        );
        let expected = if method == "GET" {
            "outpost; fwd=uri-miss; fwd-status=200; detail=no-store"
        } else {
            "outpost; fwd=method; fwd-status=200"
        };
        assert_eq!(r.cache_status(), expected, "{method}");
    }
    // HEAD is answered as a cache fills: the origin is asked for the whole GET (as nginx and
    // Varnish do), and the client gets the head only.
    let head = s.send("HEAD", "/echo", &[], Vec::new()).await?;
    assert_eq!((head.status, head.body.len()), (200, 0));
    assert_eq!(
        s.origin.requests().pop().map(|r| r.method),
        Some("GET".to_owned())
    );
    Ok(())
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn response_fields_pass_byte_for_byte_except_hop_by_hop() -> anyhow::Result<()> {
    let s = Setup::new().await?;
    let reply = |cc: &str| {
        Reply::ok(cc, "body")
            .header("x-MiXeD-Case", "Value  with   spaces")
            .header("X-Dup", "1")
            .header("X-Dup", "2")
            .header("Connection", "X-Hop")
            .header("X-Hop", "secret")
            .header("Keep-Alive", "timeout=5")
    };
    s.origin.route("/pass", reply("no-store"));
    s.origin.route("/cached", reply("max-age=60"));
    for (path, times) in [("/pass", 1), ("/cached", 2)] {
        for _ in 0..times {
            let bytes = raw::exchange(
                s.edge.addr,
                format!("GET {path} HTTP/1.1\r\nHost: t\r\nConnection: close\r\n\r\n").as_bytes(),
            )
            .await?;
            let heads = raw::heads(&bytes);
            let head = heads.last().expect("a response");
            assert!(
                head.contains("\r\nx-MiXeD-Case: Value  with   spaces\r\n"),
                "{path}: name case and value kept:\n{head}"
            );
            assert_eq!(raw::fields(head, "x-dup"), ["1", "2"], "{path}");
            assert!(
                raw::fields(head, "x-hop").is_empty() && raw::fields(head, "keep-alive").is_empty(),
                "{path}:\n{head}"
            );
            assert!(bytes.ends_with(b"body"));
        }
    }
    assert_eq!(s.origin.count("/cached"), 1);
    Ok(())
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn interim_responses_are_forwarded() -> anyhow::Result<()> {
    let s = Setup::new().await?;
    s.origin.route(
        "/hints",
        Reply::ok("no-store", "final")
            .interim(103, &[("Link", "</style.css>; rel=preload; as=style")])
            .interim(102, &[]),
    );
    let bytes = raw::exchange(
        s.edge.addr,
        b"GET /hints HTTP/1.1\r\nHost: t\r\nConnection: close\r\n\r\n",
    )
    .await?;
    let heads = raw::heads(&bytes);
    let statuses: Vec<_> = heads
        .iter()
        .map(|h| h.split_whitespace().nth(1).unwrap_or(""))
        .collect();
    assert_eq!(statuses, ["103", "102", "200"], "{heads:?}");
    assert_eq!(
        raw::fields(&heads[0], "link"),
        ["</style.css>; rel=preload; as=style"]
    );
    assert!(bytes.ends_with(b"final"));
    Ok(())
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn bodies_are_never_rewritten() -> anyhow::Result<()> {
    let s = Setup::new().await?;
    // Compressed bytes stay compressed; binary chunked bodies arrive whole, on miss and hit.
    let gzip = vec![
        0x1f, 0x8b, 0x08, 0x00, 0x00, 0x00, 0x00, 0x00, 0x00, 0x03, 0x01, 0x02, 0x03,
    ];
    s.origin.route(
        "/gz",
        Reply::ok("max-age=60", gzip.clone()).header("Content-Encoding", "gzip"),
    );
    let binary: Vec<u8> = (0..300_000u32)
        .map(|i| (i.wrapping_mul(2_654_435_761) >> 13) as u8)
        .collect();
    s.origin
        .route("/bin", Reply::ok("max-age=60", binary.clone()).chunked());
    for _ in 0..2 {
        let r = s
            .client
            .get(s.edge.url("/gz"))
            .header("accept-encoding", "identity")
            .send()
            .await?;
        assert_eq!(r.headers()["content-encoding"], "gzip");
        assert_eq!(r.bytes().await?.to_vec(), gzip);
        let r = s.get("/bin").await?;
        assert_eq!(r.body.len(), binary.len());
        assert!(r.body == binary, "binary body changed");
    }
    assert_eq!((s.origin.count("/gz"), s.origin.count("/bin")), (1, 1));
    Ok(())
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_request_that_may_have_reached_the_origin_is_not_retried() -> anyhow::Result<()> {
    let s = Setup::new().await?;
    s.origin.route("/submit", Reply::hang_up());
    let r = s.send("POST", "/submit", &[], b"order=1".to_vec()).await?;
    assert_eq!(r.status, 502);
    assert!(
        r.cache_status().starts_with("outpost; fwd=method"),
        "{}",
        r.cache_status()
    );
    assert_eq!(s.origin.count("/submit"), 1, "the POST was sent once");
    Ok(())
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_kept_origin_connection_that_died_is_retried_for_a_safe_request() -> anyhow::Result<()> {
    let s = Setup::new().await?;
    // The origin closes the kept connection as the edge reuses it (its keep-alive timeout ran
    // out at that moment): the second request reaches a dead connection and no answer.
    s.origin.route_seq(
        "/page",
        [
            Reply::ok("no-store", "first"),
            Reply::hang_up(),
            Reply::ok("no-store", "second"),
        ],
    );
    assert_eq!(s.get("/page").await?.text(), "first");
    let again = s.get("/page").await?;
    assert_eq!(again.status, 200, "{}", again.cache_status());
    assert_eq!(again.text(), "second", "retried on a new connection");
    let on: Vec<usize> = s.origin.requests().iter().map(|r| r.connection).collect();
    assert_eq!(on.len(), 3, "{on:?}");
    assert_eq!(on[0], on[1], "the dead connection was the kept one: {on:?}");
    assert_ne!(on[1], on[2], "the retry took a new one: {on:?}");
    Ok(())
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn connections_are_kept_alive_both_ways() -> anyhow::Result<()> {
    use tokio::io::{AsyncReadExt, AsyncWriteExt};
    let s = Setup::new().await?;
    s.origin.route("/ka", Reply::ok("no-store", "0123456789"));
    let mut stream = tokio::net::TcpStream::connect(s.edge.addr).await?;
    for i in 0..5 {
        stream
            .write_all(b"GET /ka HTTP/1.1\r\nHost: t\r\n\r\n")
            .await?;
        let mut got = Vec::new();
        while !(got.windows(4).any(|w| w == b"\r\n\r\n") && got.ends_with(b"0123456789")) {
            let mut buf = [0u8; 4096];
            let n = stream.read(&mut buf).await?;
            anyhow::ensure!(
                n > 0,
                "the edge closed the client connection after {i} requests"
            );
            got.extend_from_slice(&buf[..n]);
        }
    }
    assert_eq!(s.origin.count("/ka"), 5);
    // Health checks open connections of their own; count the ones that carried requests.
    let mut used: Vec<usize> = s.origin.requests().iter().map(|r| r.connection).collect();
    used.dedup();
    assert_eq!(used.len(), 1, "one origin connection, reused: {used:?}");
    Ok(())
}
