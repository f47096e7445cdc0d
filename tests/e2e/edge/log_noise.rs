//! The error log is for the operator: what clients do (hang up mid-answer) and what the edge does
//! on purpose (shared-tier metadata without a compression dictionary) is not logged as a
//! warning or an error. The access log still records every request.

use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpStream;

use super::purge::node_config;
use super::{SITE, get_site};
use outpost_e2e::{EdgeProcess, Memcached, Reply, ScriptedOrigin, wait};

/// Lines that say nothing an operator can act on.
const NOISE: [&str; 3] = [
    "Downstream WriteError",
    "no header compression dictionary",
    "Downstream ConnectionClosed",
];

/// Asks for `path` and hangs up after the first bytes of the answer.
async fn hang_up_mid_answer(edge: &EdgeProcess, path: &str) -> anyhow::Result<()> {
    let mut s = TcpStream::connect(edge.addr).await?;
    s.write_all(format!("GET {path} HTTP/1.1\r\nHost: {SITE}\r\n\r\n").as_bytes())
        .await?;
    let mut first = [0u8; 512];
    let n = s.read(&mut first).await?;
    anyhow::ensure!(
        first[..n].starts_with(b"HTTP/1.1 200"),
        "{:?}",
        String::from_utf8_lossy(&first[..n])
    );
    // Closed with unread data: the kernel resets the connection, and the edge's next write of
    // the body fails.
    drop(s);
    Ok(())
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn clients_hanging_up_and_shared_tier_metadata_leave_the_error_log_quiet()
-> anyhow::Result<()> {
    let memcached = Memcached::start()?;
    let origin = ScriptedOrigin::start().await?;
    // Large enough that the answer is still being written when the client is gone.
    origin.route("/big", Reply::ok("max-age=3600", vec![b'x'; 4 << 20]));
    let edge = EdgeProcess::start(&[origin.addr], &node_config("quiet", &[&memcached], ""))?;
    assert_eq!(get_site(&edge, "/big", &[]).await?.body.len(), 4 << 20);
    // Stored in the shared tier too (its metadata serialized), and now hit from L1.
    wait::eventually(
        std::time::Duration::from_secs(5),
        "the L2 write",
        || async {
            let written = edge
                .metric("outpost_l2_writes_total{result=\"stored\"}")
                .await
                .ok()?;
            (written >= 1.0).then_some(())
        },
    )
    .await?;
    for _ in 0..20 {
        hang_up_mid_answer(&edge, "/big").await?;
    }
    // A request after them is answered: the log line of each hang-up is queued by then.
    assert!(get_site(&edge, "/big", &[]).await?.is_hit());
    let big = |l: &String| l.contains(" /big HTTP/1.1\"");
    wait::eventually(
        std::time::Duration::from_secs(10),
        "every request in the access log",
        || {
            let logged = edge.access_lines().iter().filter(|l| big(l)).count();
            async move { (logged >= 22).then_some(()) }
        },
    )
    .await?;
    let logs = edge.logs();
    let noisy: Vec<&str> = logs
        .lines()
        .filter(|l| {
            l.contains("ERROR") || l.contains("WARN") || NOISE.iter().any(|n| l.contains(n))
        })
        .collect();
    assert!(noisy.is_empty(), "noise in the error log: {noisy:#?}");
    // The hang-ups did happen, and the access log is where they are told.
    let access = edge.access_lines();
    let hung_up = access
        .iter()
        .filter(|l| big(l) && l.contains("Downstream WriteError"))
        .count();
    assert!(
        hung_up >= 10,
        "hang-ups in the access log: {hung_up}\n{access:#?}"
    );
    Ok(())
}
