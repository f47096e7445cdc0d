//! [`Watched`]: a client connection as Pingora reads it, with the request framing followed
//! ([`super::framing`]) and deadlines on what the client owes:
//!
//! - a request head must be whole `server.request_head_timeout_ms` after its first byte (on a new
//!   connection: after the accept);
//! - a request body must keep coming: `server.request_body_timeout_ms` after its start, plus one
//!   second per `server.request_body_min_rate` bytes received (Apache's `mod_reqtimeout` rule).
//!   Only time spent waiting on the client counts: when Pingora is not reading (the origin is
//!   slow to take the body), bytes waiting in the socket are not the client's fault.
//!
//! A missed deadline fails the read, and Pingora closes the connection. Chunked framing that RFC
//! 9112 does not allow fails the read too, after handing on what came before the fault; the
//! proxy answers 400 ([`violation_of`]).
//!
//! A head that Pingora's own parser refuses (a malformed request line or field, userinfo in
//! `Host`) gets Pingora's plain 400 without reaching the proxy's phases; the stream notices (a 4xx
//! written after a head the proxy never acknowledged) and counts it as a malformed request.
//!
//! The next response head gets the `Date` the proxy asked for ([`restore_date`], see
//! [`super::date`]). Everything else passes straight through to the underlying stream.
//!
//! Read [`Watched::one_request_at_a_time`] (the HTTP/1 loop of [`super::http1`]), a read never
//! goes past the end of the current request: what the client pipelined behind it waits here
//! until [`Watched::next_request`], so whoever reads the request (the hit path or Pingora) cannot
//! swallow the next one.

use std::collections::VecDeque;
use std::pin::Pin;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::task::{Context, Poll};
use std::time::Duration;

use async_trait::async_trait;
use bytes::{Buf, BytesMut};
use parking_lot::Mutex;
use pingora_core::protocols::raw_connect::ProxyDigest;
use pingora_core::protocols::tls::{SslDigest, TlsRef};
use pingora_core::protocols::{
    ALPN, GetProxyDigest, GetSocketDigest, GetTimingDigest, Peek, Shutdown, SocketDigest, Ssl,
    Stream, TimingDigest, UniqueID, UniqueIDType,
};
use prometheus::IntCounter;
use tokio::io::{AsyncRead, AsyncWrite, ReadBuf};
use tokio::time::{Instant, Sleep};

use super::date::{HttpDate, Patch};
use super::framing::{Framing, Head, Violation};
use super::limits::Slot;
use crate::storage::body::BodyFile;

/// Counters a watched connection bumps (resolved once, not per read).
#[derive(Clone, Debug)]
pub struct Counters {
    pub head_timeouts: IntCounter,
    pub body_timeouts: IntCounter,
    pub framing_violations: IntCounter,
    /// Heads refused by Pingora's parser before the proxy saw them.
    pub malformed: IntCounter,
}

/// What a client is given to send its requests.
#[derive(Clone, Copy, Debug)]
pub struct Deadlines {
    pub head: Duration,
    pub body: Duration,
    /// Bytes per second that extend the body deadline by a second; 0: no extension, the body
    /// has `body` in all.
    pub body_min_rate: u64,
}

/// Why a connection is condemned: every later read fails with it.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum Fault {
    Framing(Violation),
    HeadTimeout,
    BodyTimeout,
}

/// A client connection with its framing followed and its heads and bodies on deadlines.
pub struct Watched {
    inner: Stream,
    framing: Framing,
    deadlines: Deadlines,
    /// When the current head (or, before the first, the connection) started.
    head_started: Option<Instant>,
    /// When the current body started.
    body_started: Option<Instant>,
    /// One timer for the connection, moved to whichever deadline applies.
    timer: Pin<Box<Sleep>>,
    fault: Option<Fault>,
    /// Heads seen whole that the proxy has not acknowledged yet (see [`acknowledge`]).
    unacknowledged: Mutex<VecDeque<Head>>,
    /// The proxy switched the connection to another protocol (see [`switching_protocols`]).
    switched: AtomicBool,
    /// The last response head written was a 4xx.
    last_answer_4xx: bool,
    /// The client opened with the HTTP/2 preface on a plain connection (h2c, prior knowledge):
    /// reported to Pingora as ALPN `h2`, which is how it chooses HTTP/2.
    h2c: bool,
    /// The `Date` the next final response head must carry (see [`restore_date`]).
    date: Mutex<Option<HttpDate>>,
    /// That date, being written over the head's.
    date_patch: Option<Patch>,
    /// Reads stop at the end of each request (see [`Watched::one_request_at_a_time`]).
    bounded: bool,
    /// Bounded: the current request has been read whole.
    ended: bool,
    /// Bounded: bytes read past the end of the current request, not followed yet.
    surplus: BytesMut,
    counters: Counters,
    /// Holds this connection's place in the connection limits until it closes.
    _slot: Slot,
}

impl std::fmt::Debug for Watched {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Watched")
            .field("inner", &self.inner)
            .field("framing", &self.framing)
            .field("fault", &self.fault)
            .finish_non_exhaustive()
    }
}

impl Watched {
    /// Wraps a just-accepted connection: its first head is due within `deadlines.head`.
    pub fn new(inner: Stream, deadlines: Deadlines, slot: Slot, counters: Counters) -> Self {
        let now = Instant::now();
        Self {
            inner,
            framing: Framing::default(),
            deadlines,
            head_started: Some(now),
            body_started: None,
            timer: Box::pin(tokio::time::sleep_until(now + deadlines.head)),
            fault: None,
            unacknowledged: Mutex::new(VecDeque::new()),
            switched: AtomicBool::new(false),
            h2c: false,
            last_answer_4xx: false,
            date: Mutex::new(None),
            date_patch: None,
            bounded: false,
            ended: false,
            surplus: BytesMut::new(),
            counters,
            _slot: slot,
        }
    }

    /// For an HTTP/2 connection (ALPN `h2`): HTTP/1 framing rules mean nothing to its frames,
    /// so only the first deadline applies (some bytes must come within the head timeout); the
    /// h2 layer below Pingora keeps its own limits.
    #[must_use]
    pub fn http2(mut self) -> Self {
        self.framing.stop();
        self
    }

    /// For a plain connection that opened with the HTTP/2 preface ([`super::sniff_h2c`]).
    #[must_use]
    pub fn h2c(mut self) -> Self {
        self.h2c = true;
        self.http2()
    }

    /// Reads stop at the end of each request until [`Watched::next_request`]. Once a request
    /// has been read whole, a read reports the client's hang-up (end of stream) but keeps
    /// whatever else it sent for the next request and stays pending.
    #[must_use]
    pub fn one_request_at_a_time(mut self) -> Self {
        self.bounded = true;
        self
    }

    /// The current request has been read whole (bounded reads only).
    pub fn request_ended(&self) -> bool {
        self.ended
    }

    /// The connection's framing is still followed: false after a `101`, a `CONNECT`, or a head
    /// too odd to follow, when request boundaries are no longer known.
    pub fn following(&self) -> bool {
        self.framing.following()
    }

    /// Done with the current request: reads go on with the next one.
    pub fn next_request(&mut self) {
        self.ended = false;
    }

    /// Gives back the memory kept for the next request (an idle connection holds none).
    pub fn release_buffers(&mut self) {
        if self.surplus.is_empty() {
            self.surplus = BytesMut::new();
        }
        self.framing.release();
        self.unacknowledged.get_mut().shrink_to_fit();
    }

    /// Waits until the client sends something (or hangs up: an error), holding no buffer where
    /// the stream allows (plain TCP; on TLS it returns at once, and the read that follows waits).
    pub async fn wait_for_bytes(&mut self) -> std::io::Result<()> {
        if !self.surplus.is_empty() {
            return Ok(());
        }
        let mut probe = [0u8; 1];
        self.inner.try_peek(&mut probe).await.map(drop)
    }

    /// What the follower saw of the oldest head nobody has taken yet.
    pub fn peek_head(&self) -> Option<Head> {
        self.unacknowledged.lock().front().copied()
    }

    /// Takes that head: its request is being answered outside the proxy.
    pub fn take_head(&mut self) -> Option<Head> {
        self.unacknowledged.get_mut().pop_front()
    }

    /// Writes a whole answer (a head, then a body) straight to the client, in as few writes as
    /// the socket takes, and flushes it.
    pub async fn write_answer(&mut self, head: &[u8], body: &[u8]) -> std::io::Result<()> {
        use tokio::io::AsyncWriteExt;
        self.last_answer_4xx = status_line(head).is_some_and(|s| (400..500).contains(&s));
        let (mut head, mut body) = (head, body);
        while !head.is_empty() || !body.is_empty() {
            let parts = [std::io::IoSlice::new(head), std::io::IoSlice::new(body)];
            let n = self.inner.write_vectored(&parts).await?;
            if n == 0 {
                return Err(std::io::ErrorKind::WriteZero.into());
            }
            let from_head = n.min(head.len());
            head = &head[from_head..];
            body = &body[n - from_head..];
        }
        self.inner.flush().await
    }

    /// Writes a head, then a body kept in a memory file: on a plain TCP connection the kernel
    /// sends the body from the file (`sendfile`), without copying it through user space (when
    /// the socket is full, a small piece is written the ordinary way, which waits for room); on
    /// TLS it is read in large pieces and written. (Holding the head back for the body with `MSG_MORE`
    /// cost 10% more CPU per 100 KiB hit on loopback than sending it at once.)
    pub async fn send_answer(&mut self, head: &[u8], body: &BodyFile) -> std::io::Result<()> {
        use tokio::io::AsyncWriteExt;
        /// What is read and written the ordinary way when the socket is full: small, since it
        /// is copied twice; the kernel sends the rest once there is room again.
        const PIECE: usize = 4096;
        /// What is read and written at once when the kernel cannot send from the file (TLS):
        /// large, so the body goes out in full records and few writes.
        const READ: usize = 256 * 1024;
        if self.tcp_fd().is_none() {
            let first = body.read(0, body.len().min(READ))?;
            self.write_answer(head, &first).await?;
            let mut at = first.len();
            while at < body.len() {
                let piece = body.read(at, body.len().min(at + READ))?;
                self.inner.write_all(&piece).await?;
                at += piece.len();
            }
            return self.inner.flush().await;
        }
        // Flushed (`write_answer` flushes): the kernel sends the body straight from the file,
        // after whatever a write buffer below would still hold.
        self.write_answer(head, &[]).await?;
        let mut at = 0;
        while at < body.len() {
            if let Some(sent) = self.sendfile(body, at) {
                match sent {
                    Ok(0) => return Err(std::io::ErrorKind::WriteZero.into()),
                    Ok(n) => {
                        at += n;
                        continue;
                    }
                    Err(e) if e.kind() != std::io::ErrorKind::WouldBlock => return Err(e),
                    Err(_) => {}
                }
            }
            let piece = body.read(at, body.len().min(at + PIECE))?;
            self.inner.write_all(&piece).await?;
            self.inner.flush().await?;
            at += piece.len();
        }
        self.inner.flush().await
    }

    /// The client socket's descriptor, when the connection is plain TCP.
    fn tcp_fd(&self) -> Option<std::os::fd::RawFd> {
        use std::os::fd::AsRawFd;
        let tcp = self
            .inner
            .as_any()
            .downcast_ref::<pingora_core::protocols::l4::stream::Stream>()?;
        Some(tcp.as_raw_fd())
    }

    /// One non-blocking `sendfile` of `body` from `at` to the client socket; `None` when the
    /// connection is not plain TCP.
    fn sendfile(&self, body: &BodyFile, at: usize) -> Option<std::io::Result<usize>> {
        let fd = self.tcp_fd()?;
        // SAFETY: the descriptor is the socket of the stream `self` owns, open for as long as
        // `self` is borrowed here (Pingora's stream offers `AsRawFd` but not `AsFd`).
        #[allow(unsafe_code)]
        let socket = unsafe { std::os::fd::BorrowedFd::borrow_raw(fd) };
        let mut offset = i64::try_from(at).ok()?;
        let count = body.len() - at;
        Some(
            nix::sys::sendfile::sendfile(socket, body.file(), Some(&mut offset), count)
                .map_err(std::io::Error::from),
        )
    }

    fn condemn(&mut self, fault: Fault) {
        if self.fault.is_none() {
            match fault {
                Fault::Framing(_) => self.counters.framing_violations.inc(),
                Fault::HeadTimeout => self.counters.head_timeouts.inc(),
                Fault::BodyTimeout => self.counters.body_timeouts.inc(),
            }
            self.fault = Some(fault);
        }
    }

    /// The error a condemned connection's reads return.
    fn error(&self) -> std::io::Error {
        use std::io::{Error, ErrorKind};
        match self.fault {
            Some(Fault::Framing(v)) => Error::new(ErrorKind::InvalidData, v.0),
            Some(Fault::BodyTimeout) => Error::new(
                ErrorKind::TimedOut,
                "the client sent its request body too slowly",
            ),
            _ => Error::new(
                ErrorKind::TimedOut,
                "the client did not send its request head in time",
            ),
        }
    }

    /// The deadline the client is on now, and what missing it means.
    fn due(&self) -> Option<(Instant, Fault)> {
        if let Some(started) = self.head_started {
            return Some((started + self.deadlines.head, Fault::HeadTimeout));
        }
        let started = self.body_started?;
        let d = self.deadlines;
        let earned = match d.body_min_rate {
            0 => Duration::ZERO,
            rate => Duration::from_secs(self.framing.body_bytes() / rate),
        };
        Some((started + d.body + earned, Fault::BodyTimeout))
    }

    /// Follows what was just read and moves the deadlines with it: how many of the bytes belong
    /// to the current request (bounded reads), or all of them. On a fault, says how many of the
    /// bytes came before it: only those are handed on.
    fn follow(&mut self, bytes: &[u8]) -> Result<usize, usize> {
        let now = Instant::now();
        let fed = if self.bounded {
            self.framing.feed_request(bytes)
        } else {
            self.framing.feed(bytes).map(|()| bytes.len())
        };
        {
            let mut heads = self.framing.take_heads().peekable();
            if heads.peek().is_some() {
                self.unacknowledged.get_mut().extend(heads);
            }
        }
        let used = match fed {
            Ok(used) => used,
            Err(stopped) => {
                self.condemn(Fault::Framing(stopped.violation));
                return Err(stopped.at);
            }
        };
        if self.bounded && self.framing.idle() {
            self.ended = true;
        }
        if self.framing.in_head() {
            let started = *self.head_started.get_or_insert(now);
            if started + self.deadlines.head <= now {
                // Still dribbling in past its deadline.
                self.condemn(Fault::HeadTimeout);
                return Err(0);
            }
        } else {
            // Between requests Pingora's keep-alive timeout applies, not ours.
            self.head_started = None;
        }
        self.body_started = match self.framing.in_body() {
            true => Some(self.body_started.unwrap_or(now)),
            false => None,
        };
        Ok(used)
    }

    /// A bounded read once the request has been read whole: the client's hang-up is reported
    /// (end of stream), anything else it sends is kept for the next request and the read stays
    /// pending.
    fn poll_after_end(
        &mut self,
        cx: &mut Context<'_>,
        buf: &mut ReadBuf<'_>,
    ) -> Poll<std::io::Result<()>> {
        if !self.surplus.is_empty() {
            return Poll::Pending;
        }
        let before = buf.filled().len();
        match Pin::new(&mut self.inner).poll_read(cx, buf) {
            Poll::Ready(Ok(())) if buf.filled().len() > before => {
                self.surplus.extend_from_slice(&buf.filled()[before..]);
                buf.set_filled(before);
                Poll::Pending
            }
            other => other,
        }
    }

    /// A read from what was read past the previous request.
    fn read_surplus(&mut self, buf: &mut ReadBuf<'_>) -> std::io::Result<()> {
        let mut surplus = std::mem::take(&mut self.surplus);
        let n = surplus.len().min(buf.remaining());
        let result = match self.follow(&surplus[..n]) {
            Ok(used) => {
                buf.put_slice(&surplus[..used]);
                surplus.advance(used);
                Ok(())
            }
            Err(good) if good > 0 => {
                buf.put_slice(&surplus[..good]);
                surplus.clear();
                Ok(())
            }
            Err(_) => Err(self.error()),
        };
        self.surplus = surplus;
        result
    }
}

/// Tells the watched connection `stream` that the proxy is answering `101`: what follows is
/// another protocol, no longer followed or put on deadlines. Told by the proxy, not read off the
/// bytes written: a response body can look like a status line.
pub fn switching_protocols(stream: Option<&Stream>) {
    if let Some(w) = stream.and_then(|s| s.as_any().downcast_ref::<Watched>()) {
        w.switched.store(true, Ordering::Release);
    }
}

/// Tells the watched connection `stream` that the proxy has its next request head in hand;
/// what the follower saw of that head.
pub fn acknowledge(stream: Option<&Stream>) -> Option<Head> {
    let watched = stream?.as_any().downcast_ref::<Watched>()?;
    // A date asked for an answer that was never written must not reach the next one.
    watched.date.lock().take();
    watched.unacknowledged.lock().pop_front()
}

/// Tells the watched connection `stream` which `Date` the answer about to be written carries
/// (the stored or the origin's), to be written over the one Pingora stamps.
pub fn restore_date(stream: Option<&Stream>, date: HttpDate) {
    if let Some(w) = stream.and_then(|s| s.as_any().downcast_ref::<Watched>()) {
        *w.date.lock() = Some(date);
    }
}

impl Drop for Watched {
    fn drop(&mut self) {
        // A 4xx answered to a head the proxy never saw: Pingora's parser refused it.
        if self.last_answer_4xx && !self.unacknowledged.get_mut().is_empty() && self.fault.is_none()
        {
            self.counters.malformed.inc();
        }
    }
}

/// The framing violation of the client connection `stream`, if it is a watched one that broke
/// the rules (for answering 400 instead of treating it as a hang-up).
pub fn violation_of(stream: Option<&Stream>) -> Option<&'static str> {
    match stream?.as_any().downcast_ref::<Watched>()?.fault? {
        Fault::Framing(v) => Some(v.0),
        _ => None,
    }
}

impl AsyncRead for Watched {
    fn poll_read(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &mut ReadBuf<'_>,
    ) -> Poll<std::io::Result<()>> {
        let this = self.get_mut();
        if this.fault.is_some() {
            return Poll::Ready(Err(this.error()));
        }
        if this.switched.swap(false, Ordering::AcqRel) {
            this.framing.stop();
            this.head_started = None;
            this.body_started = None;
            // No more requests: what the client sent after the upgrade request is the new
            // protocol's, and goes to the proxy.
            this.bounded = false;
            this.ended = false;
        }
        if this.bounded && this.ended {
            return this.poll_after_end(cx, buf);
        }
        if !this.surplus.is_empty() {
            return Poll::Ready(this.read_surplus(buf));
        }
        let before = buf.filled().len();
        match Pin::new(&mut this.inner).poll_read(cx, buf) {
            Poll::Ready(Ok(())) => {
                let read = &buf.filled()[before..];
                if read.is_empty() {
                    return Poll::Ready(Ok(()));
                }
                match this.follow(read) {
                    Ok(used) => {
                        if used < read.len() {
                            this.surplus.extend_from_slice(&read[used..]);
                            buf.set_filled(before + used);
                        }
                        Poll::Ready(Ok(()))
                    }
                    // What came before the fault is handed on (a head in it gets its answer:
                    // 400); the next read fails.
                    Err(good) if good > 0 => {
                        buf.set_filled(before + good);
                        Poll::Ready(Ok(()))
                    }
                    Err(_) => Poll::Ready(Err(this.error())),
                }
            }
            // Waiting on the client: the time counts against whatever it owes.
            Poll::Pending => {
                let Some((due, fault)) = this.due() else {
                    return Poll::Pending;
                };
                if this.timer.deadline() != due {
                    this.timer.as_mut().reset(due);
                }
                if this.timer.as_mut().poll(cx).is_ready() {
                    this.condemn(fault);
                    return Poll::Ready(Err(this.error()));
                }
                Poll::Pending
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
        if let Some(status) = status_line(buf) {
            this.last_answer_4xx = (400..500).contains(&status);
            // Interim (1xx) heads carry no Date; the final head is the one asked for.
            if status >= 200 && this.date_patch.is_none() {
                let date = this.date.lock().take();
                this.date_patch = date.and_then(|d| Patch::for_head(buf, d));
            }
        }
        let Some(patch) = this.date_patch else {
            return Pin::new(&mut this.inner).poll_write(cx, buf);
        };
        // Only up to the end of the value, copied and patched: a head's worth of bytes.
        let mut head = buf[..patch.prefix_len(buf.len())].to_vec();
        patch.apply(&mut head);
        let written = Pin::new(&mut this.inner).poll_write(cx, &head);
        if let Poll::Ready(Ok(n)) = written {
            this.date_patch = patch.advanced(n);
        }
        written
    }

    fn poll_write_vectored(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        bufs: &[std::io::IoSlice<'_>],
    ) -> Poll<std::io::Result<usize>> {
        let first = bufs.iter().find(|b| !b.is_empty());
        let head = first.is_some_and(|b| status_line(b).is_some());
        if head || self.date_patch.is_some() {
            // A head, or the rest of a date being patched: one slice at a time (a shorter write
            // is always allowed).
            return self.poll_write(cx, first.map_or(&[][..], |b| &b[..]));
        }
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

/// The status of a response head starting at `buf` (Pingora writes each head in one piece). Only
/// for counting: a body write can start with the same bytes.
fn status_line(buf: &[u8]) -> Option<u16> {
    let rest = buf
        .strip_prefix(b"HTTP/1.1 ")
        .or_else(|| buf.strip_prefix(b"HTTP/1.0 "))?;
    let digits = rest.get(..3)?;
    digits
        .iter()
        .all(u8::is_ascii_digit)
        .then(|| digits.iter().fold(0, |n, d| n * 10 + u16::from(d - b'0')))
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
        if self.h2c {
            return Some(ALPN::H2);
        }
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
