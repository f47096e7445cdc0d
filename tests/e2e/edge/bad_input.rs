//! Bad input gets a clear 4xx and the edge keeps serving: malformed request lines and fields,
//! oversized headers, bodies cut short.

use super::Setup;
use outpost_e2e::{Reply, raw};

fn status(bytes: &[u8]) -> u16 {
    String::from_utf8_lossy(bytes)
        .split_whitespace()
        .nth(1)
        .and_then(|s| s.parse().ok())
        .unwrap_or(0)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn malformed_requests_are_refused_and_nothing_breaks() -> anyhow::Result<()> {
    let s = Setup::new().await?;
    s.origin.route("/ok", Reply::ok("max-age=60", "still here"));
    s.get("/ok").await?;
    let huge_header = format!(
        "GET /ok HTTP/1.1\r\nHost: t\r\nX-Big: {}\r\nConnection: close\r\n\r\n",
        "a".repeat(256 * 1024)
    );
    let cases: Vec<(&str, Vec<u8>)> = vec![
        ("garbage request line", b"THIS IS NOT HTTP\r\n\r\n".to_vec()),
        ("bad header line", b"GET /ok HTTP/1.1\r\nHost: t\r\nNo colon here\r\nConnection: close\r\n\r\n".to_vec()),
        ("oversized header", huge_header.into_bytes()),
        ("two content-lengths", b"POST /ok HTTP/1.1\r\nHost: t\r\nContent-Length: 3\r\nContent-Length: 5\r\nConnection: close\r\n\r\nabc".to_vec()),
    ];
    for (what, request) in cases {
        let answer = raw::exchange(s.edge.addr, &request).await?;
        let code = status(&answer);
        if what == "oversized header" {
            assert_eq!(code, 431, "Request Header Fields Too Large");
        }
        assert!(
            answer.is_empty() || (400..500).contains(&code),
            "{what}: {}",
            String::from_utf8_lossy(&answer[..answer.len().min(200)])
        );
        assert!(code != 200, "{what} must not be served");
    }
    // A body that ends early: the origin never sees a request with half a body.
    {
        use tokio::io::AsyncWriteExt;
        let mut c = tokio::net::TcpStream::connect(s.edge.addr).await?;
        c.write_all(b"POST /ok HTTP/1.1\r\nHost: t\r\nContent-Length: 100\r\n\r\nonly a bit")
            .await?;
    }
    for _ in 0..3 {
        let r = s.get("/ok").await?;
        assert_eq!((r.status, r.text().as_str()), (200, "still here"));
    }
    let posts = s
        .origin
        .requests()
        .iter()
        .filter(|r| r.method == "POST" && r.body.len() != 100)
        .count();
    assert_eq!(posts, 0, "no truncated body reached the origin");
    Ok(())
}
