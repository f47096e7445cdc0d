//! Stopping a node without dropping traffic: on SIGTERM `/readyz` answers 503 at once while the
//! listeners keep serving for `server.grace_period_secs`, answers close their connections, and
//! in-flight requests finish after the listeners close. A client that follows `/readyz` sees no
//! error while a node of two stops under load.

use std::sync::Arc;
use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
use std::time::Duration;

use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpStream;

use super::SITE;
use outpost_e2e::process::Signal;
use outpost_e2e::{EdgeProcess, Reply, ScriptedOrigin, http_client, wait};

const DRAINING: &str = "[server]\ngrace_period_secs = 2\ngraceful_shutdown_timeout_secs = 3\n";

/// One keep-alive request on `stream`: the response head (lower-cased) and body.
async fn keepalive_get(stream: &mut TcpStream, path: &str) -> anyhow::Result<(String, Vec<u8>)> {
    let request = format!("GET {path} HTTP/1.1\r\nHost: {SITE}\r\n\r\n");
    stream.write_all(request.as_bytes()).await?;
    let mut buf = Vec::new();
    let mut chunk = [0u8; 4096];
    loop {
        let n = tokio::time::timeout(Duration::from_secs(5), stream.read(&mut chunk)).await??;
        anyhow::ensure!(
            n > 0,
            "closed before a whole answer: {:?}",
            String::from_utf8_lossy(&buf)
        );
        buf.extend_from_slice(&chunk[..n]);
        let Some(end) = buf.windows(4).position(|w| w == b"\r\n\r\n") else {
            continue;
        };
        let head = String::from_utf8_lossy(&buf[..end]).to_ascii_lowercase();
        let length: usize = head
            .lines()
            .find_map(|l| l.strip_prefix("content-length:"))
            .and_then(|v| v.trim().parse().ok())
            .unwrap_or(0);
        if buf.len() >= end + 4 + length {
            return Ok((head, buf[end + 4..end + 4 + length].to_vec()));
        }
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn sigterm_drains_a_node_without_a_failed_request() -> anyhow::Result<()> {
    let origin = ScriptedOrigin::start().await?;
    origin.route("/hit", Reply::ok("max-age=3600", "cached"));
    // Uncacheable and slow: some are always in flight when the listeners close.
    origin.route(
        "/slow",
        Reply::ok("no-store", "slow").delay(Duration::from_millis(300)),
    );
    let mut a = EdgeProcess::start(&[origin.addr], DRAINING)?;
    let b = EdgeProcess::start(&[origin.addr], DRAINING)?;

    // An idle keep-alive client of A, connected before the signal.
    let mut idle = TcpStream::connect(a.addr).await?;
    let (head, _) = keepalive_get(&mut idle, "/hit").await?;
    assert!(!head.contains("connection: close"), "{head}");

    // Clients follow A's /readyz: to A while it says ready, to B otherwise.
    let a_ready = Arc::new(AtomicBool::new(true));
    let stop = Arc::new(AtomicBool::new(false));
    let (served, failed, served_by_a) = (
        Arc::new(AtomicUsize::new(0)),
        Arc::new(AtomicUsize::new(0)),
        Arc::new(AtomicUsize::new(0)),
    );
    let failures = Arc::new(std::sync::Mutex::new(Vec::<String>::new()));
    let client = http_client();
    let mut tasks = Vec::new();
    for i in 0..8 {
        let (client, a_ready, stop) = (client.clone(), a_ready.clone(), stop.clone());
        let (served, failed, served_by_a, failures) = (
            served.clone(),
            failed.clone(),
            served_by_a.clone(),
            failures.clone(),
        );
        let (a_url, b_url) = (a.url(""), b.url(""));
        tasks.push(tokio::spawn(async move {
            let path = if i % 4 == 0 { "/slow" } else { "/hit" };
            while !stop.load(Ordering::Relaxed) {
                let to_a = a_ready.load(Ordering::Relaxed);
                let base = if to_a { &a_url } else { &b_url };
                let res = match client
                    .get(format!("{base}{path}"))
                    .header("Host", SITE)
                    .send()
                    .await
                {
                    Ok(r) if r.status() == 200 => r.bytes().await.map(|_| 200),
                    Ok(r) => Ok(r.status().as_u16()),
                    Err(e) => Err(e),
                };
                match res {
                    Ok(200) => {
                        served.fetch_add(1, Ordering::Relaxed);
                        if to_a {
                            served_by_a.fetch_add(1, Ordering::Relaxed);
                        }
                    }
                    other => {
                        failed.fetch_add(1, Ordering::Relaxed);
                        if let Ok(mut f) = failures.lock() {
                            f.push(format!("{path} to {base}: {other:?}"));
                        }
                    }
                }
            }
        }));
    }
    let readyz = a.admin_url("/readyz");
    let watcher = {
        let (client, a_ready, stop) = (client.clone(), a_ready.clone(), stop.clone());
        tokio::spawn(async move {
            let mut seen = Vec::new();
            while !stop.load(Ordering::Relaxed) {
                let status = match client.get(&readyz).send().await {
                    Ok(r) => r.status().as_u16(),
                    Err(_) => 0,
                };
                if seen.last() != Some(&status) {
                    seen.push(status);
                }
                a_ready.store(status == 200, Ordering::Relaxed);
                tokio::time::sleep(Duration::from_millis(50)).await;
            }
            seen
        })
    };

    wait::eventually(Duration::from_secs(5), "load on A", || async {
        (served_by_a.load(Ordering::Relaxed) > 50).then_some(())
    })
    .await?;
    a.signal(Signal::SIGTERM)?;
    wait::eventually(
        Duration::from_secs(1),
        "A's /readyz to answer 503",
        || async {
            let r = client.get(a.admin_url("/readyz")).send().await.ok()?;
            (r.status() == 503).then_some(())
        },
    )
    .await?;

    // Draining, A still serves: the idle client's next request and a new connection are
    // answered, and told to close.
    let (head, body) = keepalive_get(&mut idle, "/hit").await?;
    assert!(head.starts_with("http/1.1 200"), "{head}");
    assert_eq!(body, b"cached");
    assert!(head.contains("connection: close"), "{head}");
    let mut fresh = TcpStream::connect(a.addr).await?;
    let (head, _) = keepalive_get(&mut fresh, "/hit").await?;
    assert!(
        head.starts_with("http/1.1 200") && head.contains("connection: close"),
        "{head}"
    );

    let status = tokio::task::spawn_blocking(move || {
        let status = a.exited_within(Duration::from_secs(15));
        (a, status)
    })
    .await?;
    let (a, status) = status;
    let status = status?.ok_or_else(|| anyhow::anyhow!("A did not exit"))?;
    assert!(status.success(), "A exited with {status}:\n{}", a.logs());
    stop.store(true, Ordering::Relaxed);
    for t in tasks {
        t.await?;
    }
    let seen = watcher.await?;
    assert_eq!(
        seen.first().copied(),
        Some(200),
        "A's /readyz as the client saw it: {seen:?}"
    );
    assert_eq!(
        seen.get(1).copied(),
        Some(503),
        "503 before the listener went away: {seen:?}"
    );
    let failures = failures.lock().map(|f| f.clone()).unwrap_or_default();
    assert_eq!(
        failed.load(Ordering::Relaxed),
        0,
        "failed requests ({} served): {failures:#?}\nA's log:\n{}",
        served.load(Ordering::Relaxed),
        a.logs()
    );
    assert!(served.load(Ordering::Relaxed) > served_by_a.load(Ordering::Relaxed));
    Ok(())
}
