//! Client connections before they reach the proxy: [`EdgeApp`] is the listener's application. It
//! admits a connection within the limits ([`limits`]: in all, per client address) or refuses it
//! with a short 503, then wraps it as a [`stream::Watched`] stream: request framing followed
//! ([`framing`]), every request head on a deadline. An HTTP/1 connection runs the loop of
//! [`http1`], where the hit path answers what it can and the Pingora proxy the rest (with
//! `server.hit_path = false`, Pingora's own loop and proxy answer everything). An HTTP/2
//! connection (TLS with ALPN `h2`, or with `server.h2c` a plain one that opens with the HTTP/2
//! preface) goes to the proxy, watched only until its first bytes: its frames are not HTTP/1
//! framing.
//!
//! Slow clients cannot hold the node: a head must arrive whole within
//! `server.request_head_timeout_ms`, a body must keep up `server.request_body_min_rate`, an idle
//! keep-alive connection closes after `server.keepalive_timeout_secs` and a client that stops
//! reading after `server.send_timeout_ms` (both set per request in the proxy), and no address
//! holds more than `server.max_connections_per_client` connections.

pub mod date;
pub mod framing;
pub mod http1;
pub mod limits;
pub mod stream;

use std::sync::Arc;
use std::time::Duration;

use async_trait::async_trait;
use pingora_core::apps::{HttpServerApp, ServerApp};
use pingora_core::protocols::{ALPN, Stream};
use pingora_core::server::ShutdownWatch;
use tokio::io::{AsyncReadExt, AsyncWriteExt};

use http1::Answers;
use limits::{Limits, Refusal};
use stream::{Counters, Deadlines, Watched};

/// How long a refused client gets to take its 503 before the connection closes.
const REFUSAL_LINGER: Duration = Duration::from_millis(200);

/// File descriptors kept for everything but client connections: origin connections beyond one
/// per client (the keep-alive pool), memcached, listeners, logs.
const RESERVED_FDS: u64 = 2048;

/// The connection layer in front of `A` (the Pingora proxy), which it knows only as an
/// application that takes connections, and of `H` (the hit path), which it knows only as
/// something that may answer a request head.
pub struct EdgeApp<A, H> {
    pub proxy: Arc<A>,
    pub limits: Arc<Limits>,
    pub deadlines: Deadlines,
    pub counters: Counters,
    /// `outpost_connections_refused_total{reason}`, resolved per reason.
    pub refused: [prometheus::IntCounter; 2],
    /// This node's name, for the refusal's `Cache-Status`.
    pub name: String,
    /// `server.h2c`: plain connections that open with the HTTP/2 preface speak HTTP/2.
    pub h2c: bool,
    /// The hit path, unless `server.hit_path = false`.
    pub hits: Option<Arc<H>>,
}

#[async_trait]
impl<A, H> ServerApp for EdgeApp<A, H>
where
    A: HttpServerApp + Send + Sync + 'static,
    H: Answers + 'static,
{
    async fn process_new(
        self: &Arc<Self>,
        stream: Stream,
        shutdown: &ShutdownWatch,
    ) -> Option<Stream> {
        let peer = stream
            .get_socket_digest()
            .and_then(|d| d.peer_addr().and_then(|a| a.as_inet()).map(|a| a.ip()));
        let slot = match self.limits.admit(peer) {
            Ok(slot) => slot,
            Err(why) => {
                self.refused[usize::from(why == Refusal::PerClient)].inc();
                tracing::debug!(?peer, reason = why.as_str(), "connection refused");
                refuse(stream, why, &self.name).await;
                return None;
            }
        };
        let mut h2 = matches!(stream.selected_alpn_proto(), Some(ALPN::H2));
        let mut h2c = false;
        let mut stream = stream;
        if self.h2c && stream.get_ssl_digest().is_none() {
            match sniff_h2c(stream, self.deadlines.head).await {
                Sniffed::Stream(s, preface) => (stream, h2c) = (s, preface),
                Sniffed::Gone(why) => {
                    if why == Gone::Late {
                        self.counters.head_timeouts.inc();
                    }
                    return None;
                }
            }
            h2 |= h2c;
        }
        let mut watched = Watched::new(stream, self.deadlines, slot, self.counters.clone());
        if h2c {
            watched = watched.h2c();
        } else if h2 {
            watched = watched.http2();
        } else if let Some(hits) = &self.hits {
            http1::serve(
                &self.proxy,
                hits.as_ref(),
                watched.one_request_at_a_time(),
                shutdown,
            )
            .await;
            return None;
        }
        self.proxy.process_new(Box::new(watched), shutdown).await
    }

    async fn cleanup(&self) {
        self.proxy.cleanup().await;
    }
}

/// The HTTP/2 connection preface (RFC 9113 §3.4).
const H2_PREFACE: &[u8; 24] = b"PRI * HTTP/2.0\r\n\r\nSM\r\n\r\n";

/// What sniffing a plain connection for the HTTP/2 preface found.
enum Sniffed {
    /// The connection with what was read put back, and whether it was the preface.
    Stream(Stream, bool),
    Gone(Gone),
}

#[derive(Clone, Copy, PartialEq, Eq)]
enum Gone {
    /// Nothing decisive within the head deadline.
    Late,
    /// Closed, failed, or not a TCP stream.
    Closed,
}

/// Reads the first bytes of a plain connection until they either are the HTTP/2 preface or
/// cannot become it (an HTTP/1 request differs at its first byte), within `deadline`, and puts
/// them back. Pingora's own h2c check waits for 24 bytes whatever comes, so a short HTTP/1
/// request would hang, and outside our deadlines.
async fn sniff_h2c(stream: Stream, deadline: Duration) -> Sniffed {
    let Ok(mut tcp) = stream
        .into_any()
        .downcast::<pingora_core::protocols::l4::stream::Stream>()
    else {
        tracing::warn!("a plain client connection is not a TCP stream: closed");
        return Sniffed::Gone(Gone::Closed);
    };
    let mut seen = [0u8; H2_PREFACE.len()];
    let mut n = 0;
    let read = tokio::time::timeout(deadline, async {
        while n < seen.len() && seen[..n] == H2_PREFACE[..n] {
            match tcp.read(&mut seen[n..]).await {
                Ok(0) | Err(_) => return false,
                Ok(got) => n += got,
            }
        }
        true
    })
    .await;
    match read {
        Ok(true) => {
            tcp.rewind(&seen[..n]);
            let preface = seen[..n] == H2_PREFACE[..];
            Sniffed::Stream(tcp, preface)
        }
        Ok(false) => Sniffed::Gone(Gone::Closed),
        Err(_) => Sniffed::Gone(Gone::Late),
    }
}

/// A short `503` and close. What the client sent meanwhile is read briefly before closing: closing
/// with unread bytes would reset the connection, and the client could lose the answer.
async fn refuse(mut stream: Stream, why: Refusal, name: &str) {
    let body = "503 Service Unavailable: too many connections, try again\n";
    let head = format!(
        "HTTP/1.1 503 Service Unavailable\r\nContent-Type: text/plain; charset=utf-8\r\n\
         Content-Length: {}\r\nRetry-After: 1\r\nCache-Status: {name}; detail={}\r\n\
         Connection: close\r\n\r\n{body}",
        body.len(),
        why.as_str()
    );
    let written = tokio::time::timeout(REFUSAL_LINGER, async {
        stream.write_all(head.as_bytes()).await?;
        stream.flush().await
    })
    .await;
    if matches!(written, Ok(Ok(()))) {
        // On the heap: in the future it would make every connection's task 4 KiB larger.
        let mut sink = vec![0u8; 4096];
        let _ = tokio::time::timeout(REFUSAL_LINGER, stream.read(&mut sink)).await;
    }
    let _ = stream.shutdown().await;
}

/// Raises this process's open-file limit to its hard limit, and returns the limit in force.
pub fn raise_file_limit() -> u64 {
    match rlimit::increase_nofile_limit(u64::MAX) {
        Ok(limit) => limit,
        Err(e) => {
            tracing::warn!(error = %e, "could not raise the open-file limit");
            rlimit::Resource::NOFILE
                .get()
                .map_or(1024, |(soft, _)| soft)
        }
    }
}

/// `server.max_connections` when set, else what the file limit leaves room for: each client
/// connection may hold an origin connection too.
pub fn max_connections(configured: usize, file_limit: u64) -> usize {
    if configured > 0 {
        return configured;
    }
    let room = file_limit.saturating_sub(RESERVED_FDS) / 2;
    usize::try_from(room.max(64)).unwrap_or(usize::MAX)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_file_limit_is_raised_to_the_hard_limit() {
        let (soft, hard) = rlimit::Resource::NOFILE.get().expect("limits");
        let lowered = hard.min(1024).max(soft.min(256));
        rlimit::Resource::NOFILE
            .set(lowered, hard)
            .expect("lowering the soft limit");
        assert_eq!(raise_file_limit(), hard);
        assert_eq!(
            rlimit::Resource::NOFILE.get().expect("limits"),
            (hard, hard)
        );
    }

    #[test]
    fn the_derived_cap_stays_below_the_file_limit() {
        assert_eq!(max_connections(500, 1024), 500);
        assert_eq!(max_connections(0, 1_048_576), (1_048_576 - 2048) / 2);
        assert_eq!(
            max_connections(0, 1024),
            64,
            "a tiny limit still serves someone"
        );
        let n = max_connections(0, 65_536) as u64;
        assert!(2 * n + RESERVED_FDS <= 65_536);
    }
}
