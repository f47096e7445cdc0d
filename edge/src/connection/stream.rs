//! [`Watched`]: a client connection as Pingora reads it, with the request framing followed
//! ([`super::framing`]) and a deadline on every request head. A head that is not complete
//! `server.request_head_timeout_ms` after its first byte (or, on a new connection, after the
//! accept) fails the read, and Pingora closes the connection; chunked framing that RFC 9112 does
//! not allow fails the read too, and the proxy answers 400 ([`violation_of`]).
//!
//! Everything else passes straight through to the underlying stream.

use std::pin::Pin;
use std::sync::Arc;
use std::task::{Context, Poll};
use std::time::Duration;

use async_trait::async_trait;
use pingora_core::protocols::raw_connect::ProxyDigest;
use pingora_core::protocols::tls::{SslDigest, TlsRef};
use pingora_core::protocols::{
    ALPN, GetProxyDigest, GetSocketDigest, GetTimingDigest, Peek, Shutdown, SocketDigest, Ssl,
    Stream, TimingDigest, UniqueID, UniqueIDType,
};
use prometheus::IntCounter;
use tokio::io::{AsyncRead, AsyncWrite, ReadBuf};
use tokio::time::{Instant, Sleep};

use super::framing::{Framing, Violation};
use super::limits::Slot;

/// Counters a watched connection bumps (resolved once, not per read).
#[derive(Clone, Debug)]
pub struct Counters {
    pub head_timeouts: IntCounter,
    pub framing_violations: IntCounter,
}

/// A client connection with its framing followed and its heads on a deadline.
pub struct Watched {
    inner: Stream,
    framing: Framing,
    head_timeout: Duration,
    /// Armed while a head is awaited or being read.
    deadline: Option<Pin<Box<Sleep>>>,
    /// Set once the client broke the framing rules; every later read fails with it.
    violation: Option<Violation>,
    counters: Counters,
    /// Holds this connection's place in the connection limits until it closes.
    _slot: Slot,
}

impl std::fmt::Debug for Watched {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Watched")
            .field("inner", &self.inner)
            .field("framing", &self.framing)
            .field("violation", &self.violation)
            .finish_non_exhaustive()
    }
}

impl Watched {
    /// Wraps a just-accepted connection: its first head is due within `head_timeout`.
    pub fn new(inner: Stream, head_timeout: Duration, slot: Slot, counters: Counters) -> Self {
        Self {
            inner,
            framing: Framing::default(),
            head_timeout,
            deadline: Some(Box::pin(tokio::time::sleep(head_timeout))),
            violation: None,
            counters,
            _slot: slot,
        }
    }

    fn violated(&mut self, v: Violation) -> std::io::Error {
        if self.violation.is_none() {
            self.counters.framing_violations.inc();
            self.violation = Some(v);
        }
        std::io::Error::new(std::io::ErrorKind::InvalidData, v.0)
    }

    fn head_timed_out(&mut self) -> std::io::Error {
        self.counters.head_timeouts.inc();
        self.deadline = None;
        std::io::Error::new(
            std::io::ErrorKind::TimedOut,
            "the client did not send its request head in time",
        )
    }

    /// Follows what was just read and moves the head deadline with it.
    fn follow(&mut self, bytes: &[u8]) -> std::io::Result<()> {
        if let Err(v) = self.framing.feed(bytes) {
            return Err(self.violated(v));
        }
        if !self.framing.in_head() {
            // Between requests the keep-alive timeout applies (Pingora's), not ours.
            self.deadline = None;
            return Ok(());
        }
        match &self.deadline {
            Some(d) if d.deadline() <= Instant::now() => Err(self.head_timed_out()),
            Some(_) => Ok(()),
            None => {
                self.deadline = Some(Box::pin(tokio::time::sleep(self.head_timeout)));
                Ok(())
            }
        }
    }
}

/// The framing violation of the client connection `stream`, if it is a watched one that broke
/// the rules (for answering 400 instead of treating it as a hang-up).
pub fn violation_of(stream: Option<&Stream>) -> Option<&'static str> {
    stream?
        .as_any()
        .downcast_ref::<Watched>()?
        .violation
        .map(|v| v.0)
}

impl AsyncRead for Watched {
    fn poll_read(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &mut ReadBuf<'_>,
    ) -> Poll<std::io::Result<()>> {
        let this = self.get_mut();
        if let Some(v) = this.violation {
            return Poll::Ready(Err(this.violated(v)));
        }
        let before = buf.filled().len();
        match Pin::new(&mut this.inner).poll_read(cx, buf) {
            Poll::Ready(Ok(())) => {
                let read = &buf.filled()[before..];
                if read.is_empty() {
                    return Poll::Ready(Ok(()));
                }
                Poll::Ready(this.follow(read))
            }
            Poll::Pending => {
                let expired = this
                    .deadline
                    .as_mut()
                    .is_some_and(|d| d.as_mut().poll(cx).is_ready());
                if expired {
                    Poll::Ready(Err(this.head_timed_out()))
                } else {
                    Poll::Pending
                }
            }
            Poll::Ready(Err(e)) => Poll::Ready(Err(e)),
        }
    }
}

impl AsyncWrite for Watched {
    fn poll_write(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &[u8],
    ) -> Poll<std::io::Result<usize>> {
        Pin::new(&mut self.get_mut().inner).poll_write(cx, buf)
    }

    fn poll_write_vectored(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        bufs: &[std::io::IoSlice<'_>],
    ) -> Poll<std::io::Result<usize>> {
        Pin::new(&mut self.get_mut().inner).poll_write_vectored(cx, bufs)
    }

    fn is_write_vectored(&self) -> bool {
        self.inner.is_write_vectored()
    }

    fn poll_flush(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<std::io::Result<()>> {
        Pin::new(&mut self.get_mut().inner).poll_flush(cx)
    }

    fn poll_shutdown(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<std::io::Result<()>> {
        Pin::new(&mut self.get_mut().inner).poll_shutdown(cx)
    }
}

#[async_trait]
impl Shutdown for Watched {
    async fn shutdown(&mut self) {
        self.inner.shutdown().await;
    }
}

impl UniqueID for Watched {
    fn id(&self) -> UniqueIDType {
        self.inner.id()
    }
}

impl Ssl for Watched {
    fn get_ssl(&self) -> Option<&TlsRef> {
        self.inner.get_ssl()
    }

    fn get_ssl_digest(&self) -> Option<Arc<SslDigest>> {
        self.inner.get_ssl_digest()
    }

    fn selected_alpn_proto(&self) -> Option<ALPN> {
        self.inner.selected_alpn_proto()
    }
}

impl GetTimingDigest for Watched {
    fn get_timing_digest(&self) -> Vec<Option<TimingDigest>> {
        self.inner.get_timing_digest()
    }

    fn get_read_pending_time(&self) -> Duration {
        self.inner.get_read_pending_time()
    }

    fn get_write_pending_time(&self) -> Duration {
        self.inner.get_write_pending_time()
    }
}

impl GetProxyDigest for Watched {
    fn get_proxy_digest(&self) -> Option<Arc<ProxyDigest>> {
        self.inner.get_proxy_digest()
    }

    fn set_proxy_digest(&mut self, digest: ProxyDigest) {
        self.inner.set_proxy_digest(digest);
    }
}

impl GetSocketDigest for Watched {
    fn get_socket_digest(&self) -> Option<Arc<SocketDigest>> {
        self.inner.get_socket_digest()
    }

    fn set_socket_digest(&mut self, digest: SocketDigest) {
        self.inner.set_socket_digest(digest);
    }
}

#[async_trait]
impl Peek for Watched {
    async fn try_peek(&mut self, buf: &mut [u8]) -> std::io::Result<bool> {
        self.inner.try_peek(buf).await
    }
}
