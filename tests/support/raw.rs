//! Byte-exact HTTP/1.1 over a plain socket, for what a client library hides or normalises:
//! interim 1xx responses, header casing and order, exact framing.

use std::net::SocketAddr;
use std::time::Duration;

use anyhow::Context;
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpStream;

/// Sends `request` (which should say `Connection: close`) and returns everything the server
/// wrote until it closed the connection.
pub async fn exchange(addr: SocketAddr, request: &[u8]) -> anyhow::Result<Vec<u8>> {
    let mut stream = TcpStream::connect(addr).await.context("connecting")?;
    stream.write_all(request).await?;
    let mut out = Vec::new();
    tokio::time::timeout(Duration::from_secs(20), stream.read_to_end(&mut out))
        .await
        .context("no close within 20 s")??;
    Ok(out)
}

/// The response heads (status line and fields) in `bytes`, in order: interim ones first.
pub fn heads(bytes: &[u8]) -> Vec<String> {
    let text = String::from_utf8_lossy(bytes);
    let mut heads = Vec::new();
    let mut rest: &str = &text;
    while rest.starts_with("HTTP/") {
        let Some(end) = rest.find("\r\n\r\n") else {
            break;
        };
        let head = &rest[..end];
        heads.push(head.to_owned());
        rest = &rest[end + 4..];
        // Only interim (1xx) heads are followed by another head.
        if !head
            .split_whitespace()
            .nth(1)
            .is_some_and(|s| s.starts_with('1'))
        {
            break;
        }
    }
    heads
}

/// The value of `name` in a head (case-insensitive), and every value when repeated.
pub fn fields<'a>(head: &'a str, name: &str) -> Vec<&'a str> {
    head.lines()
        .skip(1)
        .filter_map(|l| l.split_once(':'))
        .filter(|(k, _)| k.trim().eq_ignore_ascii_case(name))
        .map(|(_, v)| v.trim())
        .collect()
}
