//! Slow and abusive clients cannot hold the node: request heads have a deadline, idle
//! keep-alive connections close, one address cannot take every connection, and the node's total
//! stays under its file limit with a clean 503 beyond it. Meanwhile other clients keep being
//! served. Every wait here is bounded; the slow clients stop on their own after 10 s.

use std::net::{IpAddr, SocketAddr};
use std::time::{Duration, Instant};

use super::{SITE, Setup};
use outpost_e2e::{Reply, wait};
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::{TcpSocket, TcpStream};

/// A connection to `edge` from `local` (any 127.0.0.0/8 address works on loopback).
async fn connect_from(local: &str, edge: SocketAddr) -> anyhow::Result<TcpStream> {
    let socket = TcpSocket::new_v4()?;
    socket.bind(SocketAddr::new(local.parse()?, 0))?;
    Ok(socket.connect(edge).await?)
}

/// A connection from `local` that sends `first`, then `chunk` every `every` until the edge closes
/// it (or 10 s pass), reading and dropping whatever the edge says meanwhile (a refusal, an
/// answer). How long the edge let it live, `None` if it never closed.
async fn trickle(
    local: &str,
    edge: SocketAddr,
    first: &[u8],
    chunk: &[u8],
    every: Duration,
) -> anyhow::Result<Option<Duration>> {
    let started = Instant::now();
    let mut c = connect_from(local, edge).await?;
    if c.write_all(first).await.is_err() {
        return Ok(Some(started.elapsed()));
    }
    let mut buf = [0u8; 4096];
    while started.elapsed() < Duration::from_secs(10) {
        match tokio::time::timeout(every, c.read(&mut buf)).await {
            Ok(Ok(0) | Err(_)) => return Ok(Some(started.elapsed())),
            Ok(Ok(_)) => {}
            Err(_) => {
                if c.write_all(chunk).await.is_err() {
                    return Ok(Some(started.elapsed()));
                }
            }
        }
    }
    Ok(None)
}

/// A slow-loris client: the start of a head, then one byte every 250 ms.
async fn slow_loris(local: &'static str, edge: SocketAddr) -> anyhow::Result<Option<Duration>> {
    let every = Duration::from_millis(250);
    trickle(local, edge, b"GET / HTTP/1.1\r\nHo", b"s", every).await
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn slow_heads_are_cut_off_while_other_clients_are_served() -> anyhow::Result<()> {
    let s = Setup::with_config(
        "[server]\nrequest_head_timeout_ms = 1000\nmax_connections_per_client = 100\n",
    )
    .await?;
    s.origin.route("/ok", Reply::ok("no-store", "fine"));
    let attackers: Vec<_> = (0..300)
        .map(|_| tokio::spawn(slow_loris("127.0.0.1", s.edge.addr)))
        .collect();
    // A normal client on another address, served throughout the attack.
    let normal = reqwest::Client::builder()
        .local_address("127.0.0.2".parse::<IpAddr>()?)
        .no_proxy()
        .build()?;
    let mut served = 0;
    let until = Instant::now() + Duration::from_secs(3);
    while Instant::now() < until {
        let r = normal
            .get(s.edge.url("/ok"))
            .header("Host", SITE)
            .timeout(Duration::from_secs(5))
            .send()
            .await?;
        assert_eq!(r.status(), 200);
        assert_eq!(r.text().await?, "fine");
        served += 1;
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    assert!(served >= 10, "only {served} requests served");
    let mut lifetimes = Vec::new();
    for a in attackers {
        lifetimes.push(a.await??);
    }
    let survivors = lifetimes.iter().filter(|l| l.is_none()).count();
    assert_eq!(survivors, 0, "every slow connection was closed by the edge");
    let longest = lifetimes
        .iter()
        .flatten()
        .max()
        .copied()
        .unwrap_or_default();
    assert!(
        longest < Duration::from_secs(5),
        "a 1 s head deadline held a connection {longest:?}"
    );
    let refused = s
        .edge
        .metric("outpost_connections_refused_total{reason=\"too-many-connections-from-client\"}")
        .await?;
    let cut = s
        .edge
        .metric("outpost_client_errors_total{kind=\"head_timeout\"}")
        .await?;
    assert!(refused >= 1.0, "the per-client cap refused some");
    assert_eq!(refused + cut, 300.0, "each slow client refused or cut off");
    assert_eq!(s.origin.count("/"), 0, "no partial head reached the origin");
    let errors: Vec<String> = s
        .edge
        .logs()
        .lines()
        .filter(|l| l.contains("ERROR"))
        .map(str::to_owned)
        .collect();
    assert!(
        errors.is_empty(),
        "clients cannot fill the error log: {errors:#?}"
    );
    Ok(())
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn idle_connections_close_after_their_timeouts() -> anyhow::Result<()> {
    let s = Setup::with_config(
        "[server]\nrequest_head_timeout_ms = 1000\nkeepalive_timeout_secs = 1\n",
    )
    .await?;
    s.origin.route("/ok", Reply::ok("max-age=60", "fine"));
    // Kept alive after an answer, then closed once idle for the keep-alive timeout.
    let mut c = TcpStream::connect(s.edge.addr).await?;
    c.write_all(format!("GET /ok HTTP/1.1\r\nHost: {SITE}\r\n\r\n").as_bytes())
        .await?;
    let mut got = Vec::new();
    let mut buf = [0u8; 4096];
    while !String::from_utf8_lossy(&got).contains("fine") {
        let n = tokio::time::timeout(Duration::from_secs(5), c.read(&mut buf)).await??;
        anyhow::ensure!(n > 0, "closed before the answer");
        got.extend_from_slice(&buf[..n]);
    }
    let answered = Instant::now();
    let n = tokio::time::timeout(Duration::from_secs(5), c.read(&mut buf)).await??;
    assert_eq!(n, 0, "closed, with nothing more said");
    assert!(
        answered.elapsed() >= Duration::from_millis(900),
        "kept for the keep-alive timeout first"
    );
    // A new connection that never sends a head is closed after the head deadline.
    let mut silent = TcpStream::connect(s.edge.addr).await?;
    let opened = Instant::now();
    let n = tokio::time::timeout(Duration::from_secs(5), silent.read(&mut buf)).await??;
    assert_eq!(n, 0);
    assert!(opened.elapsed() >= Duration::from_millis(900));
    Ok(())
}

/// The soft and hard open-file limits of process `pid`.
fn file_limits(pid: u32) -> anyhow::Result<(String, String)> {
    let limits = std::fs::read_to_string(format!("/proc/{pid}/limits"))?;
    let line = limits
        .lines()
        .find(|l| l.starts_with("Max open files"))
        .ok_or_else(|| anyhow::anyhow!("no open-file limit in {limits}"))?;
    let fields: Vec<&str> = line.split_whitespace().collect();
    Ok((fields[3].to_owned(), fields[4].to_owned()))
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn past_the_connection_limit_clients_get_a_clean_503() -> anyhow::Result<()> {
    let s = Setup::with_config("[server]\nmax_connections = 20\nmax_connections_per_client = 0\n")
        .await?;
    s.origin.route("/ok", Reply::ok("no-store", "fine"));
    let (soft, hard) = file_limits(s.edge.pid())?;
    assert_eq!(
        soft, hard,
        "the edge raised its open-file limit to the hard limit"
    );
    let mut held = Vec::new();
    for _ in 0..20 {
        held.push(TcpStream::connect(s.edge.addr).await?);
    }
    wait::eventually(Duration::from_secs(5), "20 connections open", || async {
        let open = s.edge.metric("outpost_client_connections").await.ok()?;
        (open == 20.0).then_some(())
    })
    .await?;
    let refused = outpost_e2e::raw::exchange(
        s.edge.addr,
        format!("GET /ok HTTP/1.1\r\nHost: {SITE}\r\nConnection: close\r\n\r\n").as_bytes(),
    )
    .await?;
    let text = String::from_utf8_lossy(&refused);
    assert!(text.starts_with("HTTP/1.1 503 "), "{text}");
    assert!(text.contains("Retry-After: 1"), "{text}");
    assert!(text.contains("detail=too-many-connections"), "{text}");
    assert_eq!(s.origin.count("/ok"), 0);
    drop(held);
    wait::eventually(Duration::from_secs(5), "a place is free again", || async {
        let r = super::get_site(&s.edge, "/ok", &[]).await.ok()?;
        (r.status == 200).then_some(())
    })
    .await?;
    assert!(
        s.edge
            .metric("outpost_connections_refused_total{reason=\"too-many-connections\"}")
            .await?
            >= 1.0
    );
    Ok(())
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn empty_lines_slow_heads_after_an_upgrade_and_slow_bodies_are_cut_off() -> anyhow::Result<()>
{
    let s = Setup::with_config(
        "[server]\nrequest_head_timeout_ms = 1000\nrequest_body_timeout_ms = 1000\n\
         request_body_min_rate = 1000\n",
    )
    .await?;
    s.origin.route("/x", Reply::ok("no-store", "x"));
    s.origin.route("/upload", Reply::new(200).body("taken"));
    let every = Duration::from_millis(300);
    // Empty lines before a request line: skipped by HTTP, but not free.
    let crlf = trickle("127.0.0.1", s.edge.addr, b"\r\n", b"\r\n", every).await?;
    assert!(crlf.is_some_and(|d| d < Duration::from_secs(5)), "{crlf:?}");
    // A slow head after an upgrade request that was answered 200.
    let upgrade =
        format!("GET /x HTTP/1.1\r\nHost: {SITE}\r\nUpgrade: foo\r\nConnection: Upgrade\r\n\r\n");
    let closed = trickle("127.0.0.1", s.edge.addr, upgrade.as_bytes(), b"G", every).await?;
    assert!(
        closed.is_some_and(|d| d < Duration::from_secs(5)),
        "{closed:?}"
    );
    // A body sent a byte at a time: cut off, and the origin never gets a whole request.
    let head = format!("POST /upload HTTP/1.1\r\nHost: {SITE}\r\nContent-Length: 100\r\n\r\n");
    let body = trickle("127.0.0.1", s.edge.addr, head.as_bytes(), b"x", every).await?;
    assert!(body.is_some_and(|d| d < Duration::from_secs(5)), "{body:?}");
    assert_eq!(s.origin.count("/upload"), 0);
    assert!(
        s.edge
            .metric("outpost_client_errors_total{kind=\"body_timeout\"}")
            .await?
            >= 1.0
    );
    // A body that keeps up is taken whole.
    let r = reqwest::Client::new()
        .post(s.edge.url("/upload"))
        .header("Host", SITE)
        .body(vec![b'y'; 256 * 1024])
        .send()
        .await?;
    assert_eq!(r.status(), 200);
    assert_eq!(s.origin.count("/upload"), 1);
    Ok(())
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_client_that_stops_reading_loses_its_connection() -> anyhow::Result<()> {
    let s = Setup::with_config("[server]\nsend_timeout_ms = 1000\n").await?;
    let big = vec![b'z'; 64 * 1024 * 1024];
    s.origin.route("/big", Reply::ok("no-store", big));
    let mut c = TcpStream::connect(s.edge.addr).await?;
    c.write_all(format!("GET /big HTTP/1.1\r\nHost: {SITE}\r\n\r\n").as_bytes())
        .await?;
    // Not reading, until the edge has given the connection up.
    wait::eventually(
        Duration::from_secs(20),
        "the stalled connection dropped",
        || async {
            let open = s.edge.metric("outpost_client_connections").await.ok()?;
            (open == 0.0).then_some(())
        },
    )
    .await?;
    let mut received = 0usize;
    let mut buf = vec![0u8; 1 << 20];
    let drained = tokio::time::timeout(Duration::from_secs(20), async {
        loop {
            match c.read(&mut buf).await {
                Ok(0) | Err(_) => return,
                Ok(n) => received += n,
            }
        }
    })
    .await;
    assert!(drained.is_ok(), "the connection ended");
    assert!(
        received < 64 * 1024 * 1024,
        "the edge gave up on the stalled client ({received} bytes sent)"
    );
    Ok(())
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_websocket_after_its_101_is_neither_followed_nor_timed() -> anyhow::Result<()> {
    let s = Setup::with_config("[server]\nrequest_head_timeout_ms = 1000\n").await?;
    s.origin.route("/ws", Reply::websocket_echo());
    let mut c = TcpStream::connect(s.edge.addr).await?;
    c.write_all(
        format!(
            "GET /ws HTTP/1.1\r\nHost: {SITE}\r\nUpgrade: websocket\r\nConnection: Upgrade\r\n\
             Sec-WebSocket-Key: dGhlIHNhbXBsZSBub25jZQ==\r\nSec-WebSocket-Version: 13\r\n\r\n"
        )
        .as_bytes(),
    )
    .await?;
    let mut got = Vec::new();
    let mut buf = [0u8; 4096];
    while !String::from_utf8_lossy(&got).contains("\r\n\r\n") {
        let n = tokio::time::timeout(Duration::from_secs(5), c.read(&mut buf)).await??;
        anyhow::ensure!(n > 0, "closed before the 101");
        got.extend_from_slice(&buf[..n]);
    }
    assert!(
        got.starts_with(b"HTTP/1.1 101"),
        "{}",
        String::from_utf8_lossy(&got)
    );
    // Bytes that would start a request head, then nothing for longer than the head deadline,
    // then a bare LF: none of it is HTTP any more, and all of it comes back.
    c.write_all(b"G").await?;
    tokio::time::sleep(Duration::from_millis(1_500)).await;
    c.write_all(b"ET 5;a\n").await?;
    let mut echoed = Vec::new();
    while echoed.len() < 8 {
        let n = tokio::time::timeout(Duration::from_secs(5), c.read(&mut buf)).await??;
        anyhow::ensure!(n > 0, "the edge closed the upgraded connection");
        echoed.extend_from_slice(&buf[..n]);
    }
    assert_eq!(echoed, b"GET 5;a\n");
    Ok(())
}
