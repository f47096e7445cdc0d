//! Client connections before they reach the proxy: [`EdgeApp`] is the listener's application. It
//! admits a connection within the limits ([`limits`]: in all, per client address) or refuses it
//! with a short 503, then hands it to the Pingora proxy wrapped as a [`stream::Watched`]
//! stream: request framing followed ([`framing`]), every request head on a deadline. An HTTP/2
//! connection (TLS with ALPN `h2`) is watched only until its first bytes: its frames are not
//! HTTP/1 framing.
//!
//! Slow clients cannot hold the node: a head must arrive whole within
//! `server.request_head_timeout_ms`, a body must keep up `server.request_body_min_rate`, an idle
//! keep-alive connection closes after `server.keepalive_timeout_secs` and a client that stops
//! reading after `server.send_timeout_ms` (both set per request in the proxy), and no address
//! holds more than `server.max_connections_per_client` connections.

pub mod date;
pub mod framing;
pub mod limits;
pub mod stream;

use std::sync::Arc;
use std::time::Duration;

use async_trait::async_trait;
use pingora_core::apps::ServerApp;
use pingora_core::protocols::{ALPN, Stream};
use pingora_core::server::ShutdownWatch;
use tokio::io::{AsyncReadExt, AsyncWriteExt};

use limits::{Limits, Refusal};
use stream::{Counters, Deadlines, Watched};

/// How long a refused client gets to take its 503 before the connection closes.
const REFUSAL_LINGER: Duration = Duration::from_millis(200);

/// File descriptors kept for everything but client connections: origin connections beyond one
/// per client (the keep-alive pool), memcached, listeners, logs.
const RESERVED_FDS: u64 = 2048;

/// The connection layer in front of `A` (the Pingora proxy), which it knows only as an
/// application that takes connections.
pub struct EdgeApp<A> {
    pub proxy: Arc<A>,
    pub limits: Arc<Limits>,
    pub deadlines: Deadlines,
    pub counters: Counters,
    /// `outpost_connections_refused_total{reason}`, resolved per reason.
    pub refused: [prometheus::IntCounter; 2],
    /// This node's name, for the refusal's `Cache-Status`.
    pub name: String,
}

#[async_trait]
impl<A: ServerApp + Send + Sync + 'static> ServerApp for EdgeApp<A> {
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
        let h2 = matches!(stream.selected_alpn_proto(), Some(ALPN::H2));
        let mut watched = Watched::new(stream, self.deadlines, slot, self.counters.clone());
        if h2 {
            watched = watched.http2();
        }
        self.proxy.process_new(Box::new(watched), shutdown).await
    }

    async fn cleanup(&self) {
        self.proxy.cleanup().await;
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
        let mut sink = [0u8; 4096];
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
