//! The HTTP/1 loop of a client connection when the hit path is on: each request head is read
//! here and offered to the hit path (what implements [`Answers`]); what it declines goes to the
//! proxy as a Pingora session of one request (the bytes already read handed over as its
//! pipelined prefix), and the connection comes back here for the next request. An idle
//! connection waits for its next request holding no buffers after a second.
//!
//! The stream reads one request at a time ([`Watched::one_request_at_a_time`]), so neither side
//! can swallow a request the client pipelined behind the current one, and answers go out in
//! order. Deadlines are the ones the proxy keeps: the first head within
//! `server.request_head_timeout_ms` of the accept (the stream's), later ones within
//! `server.keepalive_timeout_secs` of the previous answer, answers written within
//! `server.send_timeout_ms`.

use std::net::IpAddr;
use std::sync::Arc;
use std::time::Duration;

use bytes::BytesMut;
use pingora_core::apps::HttpServerApp;
use pingora_core::protocols::http::ServerSession;
use pingora_core::protocols::tls::SslDigest;
use pingora_core::protocols::{GetSocketDigest, Shutdown, Ssl};
use pingora_core::server::ShutdownWatch;
use pingora_error::Error;
use pingora_error::ErrorType::{WriteError, WriteTimedout};
use tokio::io::AsyncReadExt;

use super::stream::Watched;
use crate::storage::body::Body;

/// Room made in the read buffer before a read: a typical head in one read (Pingora starts with
/// the same).
const READ_ROOM: usize = 4096;

/// How long an idle connection keeps its buffers: the next request on a busy connection usually
/// comes sooner; after this the connection waits holding none.
const IDLE_HOLD: Duration = Duration::from_secs(1);

/// Most fields in a head the hit path parses (a head with more goes to the proxy, whose limit
/// is Pingora's 256).
const MAX_FIELDS: usize = 64;

/// A parsed request head (`httparse`'s, borrowed from the read buffer).
pub struct Head<'b, 'h> {
    /// The bytes the head was parsed from: what [`Answers::log`] gets back after the answer.
    pub bytes: &'b [u8],
    pub method: &'b str,
    pub target: &'b str,
    /// `1` for HTTP/1.1.
    pub version: u8,
    pub fields: &'h [httparse::Header<'b>],
    /// The framing follower found the request line well formed.
    pub line_ok: bool,
    /// The connection is shutting down: the answer closes it.
    pub shutting_down: bool,
}

impl Head<'_, '_> {
    /// Where `part`, a slice of this head, lies in [`Head::bytes`].
    pub fn range_of(&self, part: &[u8]) -> std::ops::Range<usize> {
        let at = (part.as_ptr() as usize).saturating_sub(self.bytes.as_ptr() as usize);
        at..at + part.len()
    }
}

/// An answer whose head is in the loop's output buffer.
pub trait Answer {
    /// What follows the head (nothing for HEAD and 304).
    fn body(&self) -> Option<&Body>;
    /// The connection stays open for another request.
    fn keep_alive(&self) -> bool;
}

/// What answers requests before the proxy (the hit path), as this loop knows it.
pub trait Answers: Send + Sync {
    /// What is known of a connection for all its requests.
    type Conn: Send + Sync;
    type Answer: Answer + Send + Sync;

    fn conn(&self, tls: Option<Arc<SslDigest>>, peer: Option<IpAddr>) -> Self::Conn;
    /// Answers `head` into `out`, or declines it (`None`): the proxy answers it.
    fn answer(
        &self,
        head: &Head<'_, '_>,
        conn: &Self::Conn,
        out: &mut Vec<u8>,
    ) -> Option<Self::Answer>;
    /// Logs an answer once it is sent (or not: `error`); `head` is [`Head::bytes`] of its
    /// request, still in the read buffer.
    fn log(&self, answer: &Self::Answer, head: &[u8], error: Option<&Error>);
    /// How long an idle connection waits for its next request.
    fn keepalive(&self) -> Duration;
    /// How long an answer may take to write.
    fn send_timeout(&self) -> Duration;
}

/// What to do with the head in the buffer.
enum Next<A> {
    /// Answered: its head is in the output buffer.
    Answered(A),
    /// The proxy's to answer.
    Decline,
    /// More bytes are needed.
    Read,
    /// The framing follower and the parser disagree on where the head ends: close.
    Close,
}

/// Serves a plain-HTTP/1 or HTTP/1-over-TLS connection until it closes.
pub async fn serve<A, H>(proxy: &Arc<A>, hits: &H, mut watched: Watched, shutdown: &ShutdownWatch)
where
    A: HttpServerApp + Send + Sync + 'static,
    H: Answers,
{
    let peer = watched
        .get_socket_digest()
        .and_then(|d| d.peer_addr().and_then(|a| a.as_inet()).map(|a| a.ip()));
    let conn = hits.conn(watched.get_ssl_digest(), peer);
    let mut buf = BytesMut::new();
    let mut out = Vec::new();
    let mut idle_wait = shutdown.clone();
    let mut reused = false;
    loop {
        if reused {
            // Between requests: the keep-alive timeout, and shutdown closes idle connections.
            if *idle_wait.borrow() {
                break;
            }
            let hold = hits.keepalive().min(IDLE_HOLD);
            let next = tokio::select! {
                biased;
                read = tokio::time::timeout(hold, read_more(&mut watched, &mut buf)) => read,
                _ = idle_wait.changed() => break,
            };
            match next {
                Ok(Ok(n)) if n > 0 => {}
                Err(_) if hold < hits.keepalive() => {
                    // Idle: wait for the next request without holding buffers.
                    (buf, out) = (BytesMut::new(), Vec::new());
                    watched.release_buffers();
                    let rest = hits.keepalive() - hold;
                    let woke = tokio::select! {
                        biased;
                        woke = tokio::time::timeout(rest, watched.wait_for_bytes()) => woke,
                        _ = idle_wait.changed() => break,
                    };
                    if !matches!(woke, Ok(Ok(()))) {
                        break;
                    }
                    if !matches!(read_more(&mut watched, &mut buf).await, Ok(n) if n > 0) {
                        break;
                    }
                }
                _ => break,
            }
        }
        reused = true;
        let next = loop {
            let next = decide(hits, &conn, &watched, &buf, &mut out, *shutdown.borrow());
            if !matches!(next, Next::Read) {
                break next;
            }
            match read_more(&mut watched, &mut buf).await {
                Ok(n) if n > 0 => {}
                _ => return,
            }
        };
        match next {
            Next::Answered(answer) => {
                watched.take_head();
                let write = async {
                    match answer.body() {
                        None => watched.write_answer(&out, &[]).await,
                        Some(Body::Heap(bytes)) => watched.write_answer(&out, bytes).await,
                        Some(Body::File(file)) => watched.send_answer(&out, file).await,
                    }
                };
                let written = tokio::time::timeout(hits.send_timeout(), write).await;
                // As Pingora names the same failures in the proxy's access lines.
                let error = match written {
                    Ok(Ok(())) => None,
                    Ok(Err(e)) => Some(Error::because(WriteError, "writing response", e)),
                    Err(_) => Some(Error::explain(WriteTimedout, "writing response")),
                }
                .map(Error::into_down);
                hits.log(&answer, &buf, error.as_deref());
                if error.is_some() || !answer.keep_alive() {
                    break;
                }
                buf.clear();
            }
            Next::Decline => {
                let mut session = ServerSession::new_http1(Box::new(watched));
                // As Pingora's own loop starts each session; the proxy sets its own per request.
                session.set_keepalive((!*shutdown.borrow()).then_some(60));
                session.set_pipelined_prefix(buf.split());
                let Some(back) = proxy.process_new_http(session, shutdown).await else {
                    return;
                };
                let (stream, _) = back.consume();
                let Ok(stream) = stream.into_any().downcast::<Watched>() else {
                    return;
                };
                watched = *stream;
                if !watched.following() {
                    // Past a `101` or a head the follower gave up on: where the next request
                    // starts is no longer known.
                    break;
                }
            }
            Next::Close | Next::Read => break,
        }
        watched.next_request();
    }
    watched.shutdown().await;
}

/// Reads what the client sent next into `buf`, with room for a typical head.
async fn read_more(watched: &mut Watched, buf: &mut BytesMut) -> std::io::Result<usize> {
    if buf.capacity() - buf.len() < READ_ROOM / 4 {
        buf.reserve(READ_ROOM);
    }
    watched.read_buf(buf).await
}

/// Parses the head in `buf` (as Pingora does: `httparse` with its defaults) and offers it to the
/// hit path once it is whole.
fn decide<H: Answers>(
    hits: &H,
    conn: &H::Conn,
    watched: &Watched,
    buf: &[u8],
    out: &mut Vec<u8>,
    shutting_down: bool,
) -> Next<H::Answer> {
    if buf.is_empty() {
        return Next::Read;
    }
    let mut fields = [httparse::EMPTY_HEADER; MAX_FIELDS];
    let mut req = httparse::Request::new(&mut fields);
    match req.parse(buf) {
        Ok(httparse::Status::Complete(len)) => {
            // A head with anything after it (a body) is not a plain GET.
            if len != buf.len() || !watched.request_ended() {
                return Next::Decline;
            }
            let head = Head {
                bytes: buf,
                method: req.method.unwrap_or(""),
                target: req.path.unwrap_or(""),
                version: req.version.unwrap_or(0),
                fields: req.headers,
                line_ok: watched.peek_head().is_some_and(|h| h.request_line_ok),
                shutting_down,
            };
            match hits.answer(&head, conn, out) {
                Some(answer) => Next::Answered(answer),
                None => Next::Decline,
            }
        }
        Ok(httparse::Status::Partial) if watched.request_ended() => Next::Close,
        Ok(httparse::Status::Partial) => Next::Read,
        // Malformed, or more fields than parsed here: the proxy answers (or refuses) it.
        Err(_) => Next::Decline,
    }
}
