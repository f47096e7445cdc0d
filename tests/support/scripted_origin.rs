//! A scripted origin for edge tests: a real HTTP/1.1 server on `127.0.0.1:0`, written directly on
//! tokio so a test controls every byte it answers (interim 1xx responses, odd header casing,
//! duplicate fields, delays, dropped connections) and sees every request the edge sent.
//!
//! Each test sets replies per path (`route`, `route_seq`, `route_fn`) and afterwards asserts on
//! what arrived (`requests`, `count`).

use std::collections::{HashMap, VecDeque};
use std::net::SocketAddr;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, SystemTime};

use anyhow::Context;
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::{TcpListener, TcpStream};
use tokio::sync::watch;

/// One request as the origin received it.
#[derive(Clone, Debug)]
pub struct Recorded {
    pub method: String,
    /// Path and query, as sent.
    pub target: String,
    /// Header fields in order, names as sent (original case).
    pub headers: Vec<(String, String)>,
    pub body: Vec<u8>,
    /// Which connection it came on (1, 2, …), to observe keep-alive.
    pub connection: usize,
}

impl Recorded {
    /// The first value of `name` (case-insensitive).
    pub fn header(&self, name: &str) -> Option<&str> {
        self.headers
            .iter()
            .find(|(k, _)| k.eq_ignore_ascii_case(name))
            .map(|(_, v)| v.as_str())
    }

    pub fn path(&self) -> &str {
        self.target.split('?').next().unwrap_or(&self.target)
    }
}

/// What the origin does with a request.
#[derive(Clone, Debug)]
pub struct Reply {
    pub status: u16,
    pub headers: Vec<(String, String)>,
    pub body: Vec<u8>,
    /// 1xx responses sent before the final one.
    pub interim: Vec<(u16, Vec<(String, String)>)>,
    pub delay: Duration,
    /// Close the connection without answering.
    pub hang_up: bool,
    /// Send the body chunked instead of with Content-Length.
    pub chunked: bool,
    /// Do not add a `Date` field (one is added unless the reply sets its own).
    pub no_date: bool,
    /// After this reply (a `101`), echo every byte the connection brings until it closes.
    pub echo: bool,
}

impl Reply {
    pub fn new(status: u16) -> Self {
        Self {
            status,
            headers: Vec::new(),
            body: Vec::new(),
            interim: Vec::new(),
            delay: Duration::ZERO,
            hang_up: false,
            chunked: false,
            no_date: false,
            echo: false,
        }
    }

    /// `101 Switching Protocols` to WebSocket, then an echo of whatever the client sends.
    pub fn websocket_echo() -> Self {
        let mut r = Self::new(101)
            .header("Connection", "Upgrade")
            .header("Upgrade", "websocket")
            .no_date();
        r.echo = true;
        r
    }

    /// `200` with `Cache-Control: <cache_control>` and `body`.
    pub fn ok(cache_control: &str, body: impl Into<Vec<u8>>) -> Self {
        Self::new(200)
            .header("Cache-Control", cache_control)
            .body(body)
    }

    pub fn header(mut self, name: &str, value: &str) -> Self {
        self.headers.push((name.to_owned(), value.to_owned()));
        self
    }

    pub fn body(mut self, body: impl Into<Vec<u8>>) -> Self {
        self.body = body.into();
        self
    }

    pub fn interim(mut self, status: u16, headers: &[(&str, &str)]) -> Self {
        let h = headers
            .iter()
            .map(|(k, v)| ((*k).to_owned(), (*v).to_owned()))
            .collect();
        self.interim.push((status, h));
        self
    }

    pub fn delay(mut self, delay: Duration) -> Self {
        self.delay = delay;
        self
    }

    pub fn hang_up() -> Self {
        Self {
            hang_up: true,
            ..Self::new(0)
        }
    }

    pub fn chunked(mut self) -> Self {
        self.chunked = true;
        self
    }

    pub fn no_date(mut self) -> Self {
        self.no_date = true;
        self
    }
}

type Handler = Arc<dyn Fn(&Recorded) -> Reply + Send + Sync>;

enum Route {
    /// Successive replies; the last one repeats.
    Sequence(VecDeque<Reply>),
    Handler(Handler),
}

#[derive(Default)]
struct State {
    routes: Mutex<HashMap<String, Route>>,
    requests: Mutex<Vec<Recorded>>,
    connections: AtomicUsize,
}

impl State {
    fn reply_for(&self, req: &Recorded) -> Reply {
        let Ok(mut routes) = self.routes.lock() else {
            return Reply::new(500);
        };
        let route = if routes.contains_key(&req.target) {
            routes.get_mut(&req.target)
        } else {
            routes.get_mut(req.path())
        };
        match route {
            Some(Route::Sequence(replies)) if replies.len() > 1 => {
                replies.pop_front().unwrap_or_else(|| Reply::new(500))
            }
            Some(Route::Sequence(replies)) => {
                replies.front().cloned().unwrap_or_else(|| Reply::new(500))
            }
            Some(Route::Handler(h)) => h(req),
            None => Reply::new(404)
                .header("Cache-Control", "no-store")
                .body(format!("no route for {}", req.target)),
        }
    }
}

pub struct ScriptedOrigin {
    pub addr: SocketAddr,
    state: Arc<State>,
    stop: watch::Sender<bool>,
}

impl ScriptedOrigin {
    pub async fn start() -> anyhow::Result<Self> {
        let listener = TcpListener::bind("127.0.0.1:0")
            .await
            .context("binding the scripted origin")?;
        let addr = listener.local_addr()?;
        let state = Arc::new(State::default());
        let (stop, stopped) = watch::channel(false);
        tokio::spawn(accept_loop(listener, Arc::clone(&state), stopped));
        Ok(Self { addr, state, stop })
    }

    /// Always answer `path` (path, or path and query) with `reply`.
    pub fn route(&self, path: &str, reply: Reply) {
        self.route_seq(path, [reply]);
    }

    /// Answer `path` with these replies in turn; the last one repeats.
    pub fn route_seq(&self, path: &str, replies: impl IntoIterator<Item = Reply>) {
        if let Ok(mut routes) = self.state.routes.lock() {
            routes.insert(
                path.to_owned(),
                Route::Sequence(replies.into_iter().collect()),
            );
        }
    }

    /// Answer `path` with whatever `handler` makes of the request.
    pub fn route_fn(
        &self,
        path: &str,
        handler: impl Fn(&Recorded) -> Reply + Send + Sync + 'static,
    ) {
        if let Ok(mut routes) = self.state.routes.lock() {
            routes.insert(path.to_owned(), Route::Handler(Arc::new(handler)));
        }
    }

    pub fn requests(&self) -> Vec<Recorded> {
        self.state
            .requests
            .lock()
            .map(|r| r.clone())
            .unwrap_or_default()
    }

    /// Requests received for `path` (matched against the target, then the path alone).
    pub fn count(&self, path: &str) -> usize {
        self.requests()
            .iter()
            .filter(|r| r.target == path || r.path() == path)
            .count()
    }

    pub fn connections(&self) -> usize {
        self.state.connections.load(Ordering::Relaxed)
    }

    /// Stops listening and drops every open connection: the origin is down (refused).
    pub fn stop(&self) {
        let _ = self.stop.send(true);
    }
}

impl Drop for ScriptedOrigin {
    fn drop(&mut self) {
        self.stop();
    }
}

async fn accept_loop(listener: TcpListener, state: Arc<State>, mut stopped: watch::Receiver<bool>) {
    loop {
        tokio::select! {
            _ = stopped.changed() => return,
            accepted = listener.accept() => {
                let Ok((stream, _)) = accepted else { continue };
                let id = state.connections.fetch_add(1, Ordering::Relaxed) + 1;
                let state = Arc::clone(&state);
                let mut stop = stopped.clone();
                tokio::spawn(async move {
                    tokio::select! {
                        _ = stop.changed() => {}
                        _ = serve(stream, id, state) => {}
                    }
                });
            }
        }
    }
}

/// Serves requests on one connection until it closes or a reply says otherwise.
async fn serve(mut stream: TcpStream, connection: usize, state: Arc<State>) -> anyhow::Result<()> {
    let mut buf = Vec::new();
    loop {
        let Some(req) = read_request(&mut stream, &mut buf, connection).await? else {
            return Ok(());
        };
        if let Ok(mut r) = state.requests.lock() {
            r.push(req.clone());
        }
        let reply = state.reply_for(&req);
        if !reply.delay.is_zero() {
            tokio::time::sleep(reply.delay).await;
        }
        if reply.hang_up {
            return Ok(());
        }
        stream
            .write_all(&encode(&reply, req.method == "HEAD"))
            .await?;
        if reply.echo {
            stream.write_all(&std::mem::take(&mut buf)).await?;
            let (mut r, mut w) = stream.split();
            tokio::io::copy(&mut r, &mut w).await?;
            return Ok(());
        }
        let close = req
            .header("connection")
            .is_some_and(|c| c.eq_ignore_ascii_case("close"));
        if close {
            return Ok(());
        }
    }
}

fn encode(reply: &Reply, head: bool) -> Vec<u8> {
    let mut out = Vec::new();
    for (status, headers) in &reply.interim {
        out.extend_from_slice(format!("HTTP/1.1 {status} {}\r\n", reason(*status)).as_bytes());
        for (k, v) in headers {
            out.extend_from_slice(format!("{k}: {v}\r\n").as_bytes());
        }
        out.extend_from_slice(b"\r\n");
    }
    out.extend_from_slice(
        format!("HTTP/1.1 {} {}\r\n", reply.status, reason(reply.status)).as_bytes(),
    );
    let has = |name: &str| {
        reply
            .headers
            .iter()
            .any(|(k, _)| k.eq_ignore_ascii_case(name))
    };
    for (k, v) in &reply.headers {
        out.extend_from_slice(format!("{k}: {v}\r\n").as_bytes());
    }
    if !reply.no_date && !has("date") {
        out.extend_from_slice(
            format!("Date: {}\r\n", httpdate::fmt_http_date(SystemTime::now())).as_bytes(),
        );
    }
    let bodyless = reply.status == 304 || reply.status == 204 || (100..200).contains(&reply.status);
    if reply.chunked && !bodyless {
        out.extend_from_slice(b"Transfer-Encoding: chunked\r\n\r\n");
        if !head {
            for chunk in reply.body.chunks(1000) {
                out.extend_from_slice(format!("{:x}\r\n", chunk.len()).as_bytes());
                out.extend_from_slice(chunk);
                out.extend_from_slice(b"\r\n");
            }
            out.extend_from_slice(b"0\r\n\r\n");
        }
        return out;
    }
    if !bodyless && !has("content-length") {
        out.extend_from_slice(format!("Content-Length: {}\r\n", reply.body.len()).as_bytes());
    }
    out.extend_from_slice(b"\r\n");
    if !head && !bodyless {
        out.extend_from_slice(&reply.body);
    }
    out
}

fn reason(status: u16) -> &'static str {
    http::StatusCode::from_u16(status)
        .ok()
        .and_then(|s| s.canonical_reason())
        .unwrap_or("Whatever")
}

/// Reads one request (head and body, Content-Length or chunked); `None` at a clean close.
async fn read_request(
    stream: &mut TcpStream,
    buf: &mut Vec<u8>,
    connection: usize,
) -> anyhow::Result<Option<Recorded>> {
    let head_end = loop {
        if let Some(pos) = buf.windows(4).position(|w| w == b"\r\n\r\n") {
            break pos + 4;
        }
        if !fill(stream, buf).await? {
            return Ok(None);
        }
    };
    let mut headers = [httparse::EMPTY_HEADER; 128];
    let mut parsed = httparse::Request::new(&mut headers);
    parsed
        .parse(&buf[..head_end])
        .context("parsing a request head")?;
    let method = parsed.method.unwrap_or("").to_owned();
    let target = parsed.path.unwrap_or("").to_owned();
    let headers: Vec<(String, String)> = parsed
        .headers
        .iter()
        .map(|h| {
            (
                h.name.to_owned(),
                String::from_utf8_lossy(h.value).into_owned(),
            )
        })
        .collect();
    buf.drain(..head_end);
    let find = |name: &str| {
        headers
            .iter()
            .find(|(k, _)| k.eq_ignore_ascii_case(name))
            .map(|(_, v)| v.clone())
    };
    let body =
        if find("transfer-encoding").is_some_and(|t| t.to_ascii_lowercase().contains("chunked")) {
            read_chunked(stream, buf).await?
        } else {
            let len: usize = find("content-length")
                .and_then(|v| v.trim().parse().ok())
                .unwrap_or(0);
            while buf.len() < len {
                if !fill(stream, buf).await? {
                    anyhow::bail!("connection closed inside a request body");
                }
            }
            buf.drain(..len).collect()
        };
    Ok(Some(Recorded {
        method,
        target,
        headers,
        body,
        connection,
    }))
}

async fn read_chunked(stream: &mut TcpStream, buf: &mut Vec<u8>) -> anyhow::Result<Vec<u8>> {
    let mut body = Vec::new();
    loop {
        let line_end = loop {
            if let Some(pos) = buf.windows(2).position(|w| w == b"\r\n") {
                break pos;
            }
            if !fill(stream, buf).await? {
                anyhow::bail!("connection closed inside a chunked body");
            }
        };
        let size_text = String::from_utf8_lossy(&buf[..line_end]).to_string();
        let size = usize::from_str_radix(size_text.split(';').next().unwrap_or("").trim(), 16)?;
        buf.drain(..line_end + 2);
        while buf.len() < size + 2 {
            if !fill(stream, buf).await? {
                anyhow::bail!("connection closed inside a chunk");
            }
        }
        body.extend(buf.drain(..size));
        buf.drain(..2);
        if size == 0 {
            return Ok(body);
        }
    }
}

async fn fill(stream: &mut TcpStream, buf: &mut Vec<u8>) -> anyhow::Result<bool> {
    buf.reserve(16 * 1024);
    Ok(stream.read_buf(buf).await? > 0)
}
