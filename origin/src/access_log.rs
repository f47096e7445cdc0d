//! The origin's access line: one per request, with the request id the edge sent
//! (`X-Request-Id`), so an edge line and the origin line of the same request can be joined.
//! Written through [`outpost_common::access_log`], in the same formats as the edge's.

use std::net::{IpAddr, SocketAddr};
use std::sync::Arc;
use std::time::{Duration, Instant, SystemTime};

use axum::body::HttpBody;
use axum::extract::{ConnectInfo, Request, State};
use axum::middleware::Next;
use axum::response::Response;
use outpost_common::access_log::{self as common, AccessLog, Format};
use serde::Serialize;

/// Logs the request once its response head is ready (the handler's time).
pub async fn log(State(log): State<Arc<AccessLog>>, request: Request, next: Next) -> Response {
    if !log.is_on() {
        return next.run(request).await;
    }
    let started = Instant::now();
    let mut entry = Entry::of(&request);
    let response = next.run(request).await;
    entry.status = response.status().as_u16();
    entry.bytes = response.body().size_hint().exact();
    entry.took = started.elapsed();
    if let Some(line) = entry.line(log.format()) {
        log.write(&line);
    }
    response
}

/// One line's fields, as the JSON line names them.
#[derive(Serialize)]
struct Entry {
    #[serde(serialize_with = "rfc3339")]
    time: SystemTime,
    client: Option<IpAddr>,
    method: String,
    target: String,
    version: String,
    status: u16,
    /// `None` for a streamed body.
    bytes: Option<u64>,
    referer: Option<String>,
    user_agent: Option<String>,
    host: Option<String>,
    #[serde(rename = "ms", serialize_with = "millis")]
    took: Duration,
    request_id: Option<String>,
}

fn text(value: &Option<String>) -> &[u8] {
    value.as_deref().unwrap_or_default().as_bytes()
}

fn rfc3339<S: serde::Serializer>(t: &SystemTime, s: S) -> Result<S::Ok, S::Error> {
    s.serialize_str(&common::rfc3339(*t))
}

fn millis<S: serde::Serializer>(d: &Duration, s: S) -> Result<S::Ok, S::Error> {
    s.serialize_f64(common::ms(*d))
}

impl Entry {
    /// What the line shows of `request`; the response's parts are filled in after it.
    fn of(request: &Request) -> Self {
        let field = |name: &str| {
            let value = request.headers().get(name)?.as_bytes();
            Some(String::from_utf8_lossy(value).into_owned())
        };
        Entry {
            time: SystemTime::now(),
            client: request
                .extensions()
                .get::<ConnectInfo<SocketAddr>>()
                .map(|c| c.0.ip()),
            method: request.method().as_str().to_owned(),
            target: request
                .uri()
                .path_and_query()
                .map_or_else(|| request.uri().path(), |p| p.as_str())
                .to_owned(),
            version: format!("{:?}", request.version()),
            status: 0,
            bytes: None,
            referer: field("referer"),
            user_agent: field("user-agent"),
            host: field("host"),
            took: Duration::ZERO,
            request_id: field("x-request-id"),
        }
    }

    fn line(&self, format: Format) -> Option<String> {
        match format {
            Format::Off => None,
            Format::Json => serde_json::to_string(self).ok(),
            Format::Text => {
                let mut out = String::with_capacity(256);
                common::push_combined(
                    &mut out,
                    &common::Combined {
                        client: self.client,
                        time: self.time,
                        method: self.method.as_bytes(),
                        target: self.target.as_bytes(),
                        version: &self.version,
                        status: self.status,
                        bytes: self.bytes,
                        referer: text(&self.referer),
                        user_agent: text(&self.user_agent),
                    },
                );
                out.push_str(" host=");
                common::push_quoted(&mut out, text(&self.host));
                out.push_str(" ms=");
                common::push_ms(&mut out, self.took);
                out.push_str(" request_id=");
                common::push_quoted(&mut out, text(&self.request_id));
                Some(out)
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_line_carries_the_edges_request_id_and_escapes_what_clients_sent() {
        let entry = Entry {
            time: SystemTime::UNIX_EPOCH + Duration::from_secs(1_796_162_991),
            client: Some(IpAddr::from([127, 0, 0, 1])),
            method: "GET".into(),
            target: "/images/7".into(),
            version: "HTTP/1.1".into(),
            status: 200,
            bytes: Some(5120),
            referer: None,
            user_agent: Some("Outpost \"edge\"".into()),
            host: None,
            took: Duration::from_micros(2_250),
            request_id: Some("4f2a".into()),
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
