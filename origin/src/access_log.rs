//! The origin's access line: one per request, with the request id the edge sent
//! (`X-Request-Id`), so an edge line and the origin line of the same request can be joined.
//! Written through [`outpost_common::access_log`], in the same formats as the edge's.

use std::fmt::Write as _;
use std::net::SocketAddr;
use std::sync::Arc;
use std::time::{Duration, Instant, SystemTime};

use axum::body::HttpBody;
use axum::extract::{ConnectInfo, Request, State};
use axum::http::{HeaderMap, header};
use axum::middleware::Next;
use axum::response::Response;
use outpost_common::access_log::{self as common, AccessLog, Format};
use serde::Serialize;

/// Logs the request once its response head is ready (the handler's time).
pub async fn log(State(log): State<Arc<AccessLog>>, request: Request, next: Next) -> Response {
    if !log.is_on() {
        return next.run(request).await;
    }
    let (start, started) = (SystemTime::now(), Instant::now());
    let client = request
        .extensions()
        .get::<ConnectInfo<SocketAddr>>()
        .map(|c| c.0.ip().to_string());
    let method = request.method().as_str().to_owned();
    let target = request.uri().path_and_query().map_or_else(
        || request.uri().path().to_owned(),
        |p| p.as_str().to_owned(),
    );
    let version = format!("{:?}", request.version());
    let headers = request.headers().clone();
    let response = next.run(request).await;
    let entry = Entry {
        time: start,
        client: client.as_deref(),
        method: &method,
        target: &target,
        version: &version,
        status: response.status().as_u16(),
        bytes: response.body().size_hint().exact(),
        took: started.elapsed(),
        headers: &headers,
    };
    if let Some(line) = entry.line(log.format()) {
        log.write(&line);
    }
    response
}

struct Entry<'a> {
    time: SystemTime,
    client: Option<&'a str>,
    method: &'a str,
    target: &'a str,
    version: &'a str,
    status: u16,
    /// `None` for a streamed body.
    bytes: Option<u64>,
    took: Duration,
    headers: &'a HeaderMap,
}

impl Entry<'_> {
    fn field(&self, name: header::HeaderName) -> &[u8] {
        self.headers.get(name).map_or(&b""[..], |v| v.as_bytes())
    }

    fn line(&self, format: Format) -> Option<String> {
        let id = self.field(header::HeaderName::from_static("x-request-id"));
        match format {
            Format::Off => None,
            Format::Json => {
                let text =
                    |b: &[u8]| (!b.is_empty()).then(|| String::from_utf8_lossy(b).into_owned());
                serde_json::to_string(&Json {
                    time: common::rfc3339(self.time),
                    client: self.client,
                    method: self.method,
                    target: self.target,
                    version: self.version,
                    status: self.status,
                    bytes: self.bytes,
                    referer: text(self.field(header::REFERER)),
                    user_agent: text(self.field(header::USER_AGENT)),
                    host: text(self.field(header::HOST)),
                    ms: common::ms(self.took),
                    request_id: text(id),
                })
                .ok()
            }
            Format::Text => {
                let mut out = String::with_capacity(256);
                out.push_str(self.client.unwrap_or("-"));
                out.push_str(" - - [");
                common::push_clf_time(&mut out, self.time);
                out.push_str("] \"");
                common::push_escaped(&mut out, self.method.as_bytes());
                out.push(' ');
                common::push_escaped(&mut out, self.target.as_bytes());
                let _ = write!(out, " {}\" {} ", self.version, self.status);
                match self.bytes {
                    Some(n) => {
                        let _ = write!(out, "{n} ");
                    }
                    None => out.push_str("- "),
                }
                common::push_quoted(&mut out, self.field(header::REFERER));
                out.push(' ');
                common::push_quoted(&mut out, self.field(header::USER_AGENT));
                out.push_str(" host=");
                common::push_quoted(&mut out, self.field(header::HOST));
                out.push_str(" ms=");
                common::push_ms(&mut out, self.took);
                out.push_str(" request_id=");
                common::push_quoted(&mut out, id);
                Some(out)
            }
        }
    }
}

#[derive(Serialize)]
struct Json<'a> {
    time: String,
    client: Option<&'a str>,
    method: &'a str,
    target: &'a str,
    version: &'a str,
    status: u16,
    bytes: Option<u64>,
    referer: Option<String>,
    user_agent: Option<String>,
    host: Option<String>,
    ms: f64,
    request_id: Option<String>,
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_line_carries_the_edges_request_id_and_escapes_what_clients_sent() {
        let mut headers = HeaderMap::new();
        headers.insert("x-request-id", "4f2a".parse().expect("value"));
        headers.insert(
            header::USER_AGENT,
            "Outpost \"edge\"".parse().expect("value"),
        );
        let entry = Entry {
            time: SystemTime::UNIX_EPOCH + Duration::from_secs(1_796_162_991),
            client: Some("127.0.0.1"),
            method: "GET",
            target: "/images/7",
            version: "HTTP/1.1",
            status: 200,
            bytes: Some(5120),
            took: Duration::from_micros(2_250),
            headers: &headers,
        };
        assert_eq!(
            entry.line(Format::Text).expect("on"),
            "127.0.0.1 - - [01/Dec/2026:22:09:51 +0000] \"GET /images/7 HTTP/1.1\" 200 5120 \"-\" \
             \"Outpost \\x22edge\\x22\" host=\"-\" ms=2.250 request_id=\"4f2a\""
        );
        let json: serde_json::Value =
            serde_json::from_str(&entry.line(Format::Json).expect("on")).expect("json");
        assert_eq!(json["request_id"], "4f2a");
        assert_eq!(json["bytes"], 5120);
        assert!(json["referer"].is_null());
    }
}
