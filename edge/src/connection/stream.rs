//! [`Watched`]: a client connection as Pingora reads it, with the request framing followed
//! ([`super::framing`]) and a deadline on every request head. A head that is not complete
//! `server.request_head_timeout_ms` after its first byte (or, on a new connection, after the
//! accept) fails the read, and Pingora closes the connection; chunked framing that RFC 9112 does
//! not allow fails the read too, and the proxy answers 400 ([`violation_of`]).
//!
//! A head that Pingora's own parser refuses (a malformed request line or field, userinfo in
//! `Host`) gets Pingora's plain 400 without reaching the proxy's phases; the stream notices (a 4xx
//! written after a head the proxy never acknowledged) and counts it as a malformed request.
//!
//! Everything else passes straight through to the underlying stream.

use std::pin::Pin;
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
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
    /// Heads refused by Pingora's parser before the proxy saw them.
    pub malformed: IntCounter,
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
    /// Set once a head missed its deadline; every later read fails.
    timed_out: bool,
    /// Heads the proxy has seen (see [`acknowledge`]).
    acknowledged: AtomicU64,
    /// The last response head written was a 4xx.
    last_answer_4xx: bool,
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
            timed_out: false,
            acknowledged: AtomicU64::new(0),
            last_answer_4xx: false,
            counters,
            _slot: slot,
        }
    }

    fn violated(&mut self, v: Violation) {
        if self.violation.is_none() {
            self.counters.framing_violations.inc();
            self.violation = Some(v);
        }
    }

    fn head_timed_out(&mut self) {
        if !self.timed_out {
            self.counters.head_timeouts.inc();
            self.timed_out = true;
        }
        self.deadline = None;
    }

    /// Follows what was just read and moves the head deadline with it. On a framing violation,
    /// says how many of the bytes came before it: only those are handed on.
    fn follow(&mut self, bytes: &[u8]) -> Result<(), usize> {
        if let Err(stopped) = self.framing.feed(bytes) {
            self.violated(stopped.violation);
            return Err(stopped.at);
        }
        if !self.framing.in_head() {
            // Between requests the keep-alive timeout applies (Pingora's), not ours.
            self.deadline = None;
            return Ok(());
        }
        match &self.deadline {
            Some(d) if d.deadline() <= Instant::now() => {
                self.head_timed_out();
                Err(0)
            }
            Some(_) => Ok(()),
            None => {
                self.deadline = Some(Box::pin(tokio::time::sleep(self.head_timeout)));
                Ok(())
            }
        }
    }

    /// The client broke the framing rules or missed a head deadline: every read fails.
    fn condemned(&self) -> bool {
        self.violation.is_some() || self.timed_out
    }

    /// The error a condemned connection's reads return.
    fn error(&self) -> std::io::Error {
        match self.violation {
            Some(v) => std::io::Error::new(std::io::ErrorKind::InvalidData, v.0),
            None => std::io::Error::new(
                std::io::ErrorKind::TimedOut,
                "the client did not send its request head in time",
            ),
        }
    }
}

/// Tells the watched connection `stream` that the proxy has a request head of it in hand.
pub fn acknowledge(stream: Option<&Stream>) {
    if let Some(w) = stream.and_then(|s| s.as_any().downcast_ref::<Watched>()) {
        w.acknowledged.fetch_add(1, Ordering::Relaxed);
    }
}

impl Drop for Watched {
    fn drop(&mut self) {
        // A 4xx answered to a head the proxy never saw: Pingora's parser refused it.
        if self.last_answer_4xx
            && self.acknowledged.load(Ordering::Relaxed) < self.framing.heads()
            && self.violation.is_none()
        {
            self.counters.malformed.inc();
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
        if this.condemned() {
            return Poll::Ready(Err(this.error()));
        }
        let before = buf.filled().len();
        match Pin::new(&mut this.inner).poll_read(cx, buf) {
            Poll::Ready(Ok(())) => {
                let read = &buf.filled()[before..];
                if read.is_empty() {
                    return Poll::Ready(Ok(()));
                }
                match this.follow(read) {
                    Ok(()) => Poll::Ready(Ok(())),
                    // What came before the fault is handed on (a head in it gets its answer:
                    // 400); the next read fails.
                    Err(good) if good > 0 => {
                        buf.set_filled(before + good);
                        Poll::Ready(Ok(()))
                    }
                    Err(_) => Poll::Ready(Err(this.error())),
                }
            }
            Poll::Pending => {
                let expired = this
                    .deadline
                    .as_mut()
                    .is_some_and(|d| d.as_mut().poll(cx).is_ready());
                if expired {
                    this.head_timed_out();
                    Poll::Ready(Err(this.error()))
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
        let this = self.get_mut();
        if let Some(status) = buf.strip_prefix(b"HTTP/1.1 ") {
            this.last_answer_4xx = status.first() == Some(&b'4');
        }
        Pin::new(&mut this.inner).poll_write(cx, buf)
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
