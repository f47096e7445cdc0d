//! Edge tests: the real `edge` binary in front of a scripted origin. Every test asserts both what
//! the client saw and how many requests reached the origin.

mod access_log;
mod admin;
mod bad_input;
mod cache_key;
mod coalescing;
mod contract;
mod freshness;
mod hit_path;
mod hostile;
mod invalidation;
mod lifecycle;
mod log_noise;
mod passthrough;
mod purge;
mod purge_cli;
mod purge_origin;
mod ranges;
mod requests;
mod revalidation;
mod shared_tier;
mod sites;
mod slow_clients;
mod stale;
mod storing;
mod validation;
mod vary;

use std::time::Duration;

use outpost_e2e::{EdgeProcess, ScriptedOrigin, http_client};
use reqwest::header::{HeaderMap, HeaderName, HeaderValue};

/// A scripted origin, an edge in front of it, and a client.
pub(crate) struct Setup {
    pub origin: ScriptedOrigin,
    pub edge: EdgeProcess,
    pub client: reqwest::Client,
}

impl Setup {
    pub async fn new() -> anyhow::Result<Self> {
        Self::with_config("").await
    }

    /// `extra` is TOML merged over the test edge config.
    pub async fn with_config(extra: &str) -> anyhow::Result<Self> {
        let origin = ScriptedOrigin::start().await?;
        let edge = EdgeProcess::start(&[origin.addr], extra)?;
        Ok(Self {
            origin,
            edge,
            client: http_client(),
        })
    }

    pub async fn get(&self, path: &str) -> anyhow::Result<Response> {
        self.get_with(path, &[]).await
    }

    pub async fn get_with(&self, path: &str, headers: &[(&str, &str)]) -> anyhow::Result<Response> {
        self.send("GET", path, headers, Vec::new()).await
    }

    pub async fn send(
        &self,
        method: &str,
        path: &str,
        headers: &[(&str, &str)],
        body: Vec<u8>,
    ) -> anyhow::Result<Response> {
        let mut map = HeaderMap::new();
        for (k, v) in headers {
            map.append(
                HeaderName::from_bytes(k.as_bytes())?,
                HeaderValue::from_str(v)?,
            );
        }
        let method = reqwest::Method::from_bytes(method.as_bytes())?;
        let res = self
            .client
            .request(method, self.edge.url(path))
            .headers(map)
            .body(body)
            .send()
            .await?;
        Response::read(res).await
    }
}

/// The site the nodes of a test region serve, as DNS would send clients to it: the Host is part
/// of the cache key, so nodes share objects only for the same name (not `127.0.0.1:port`).
pub(crate) const SITE: &str = "images.example";

/// `GET path` on `edge` as a client of [`SITE`], with extra request `headers`.
pub(crate) async fn get_site(
    edge: &EdgeProcess,
    path: &str,
    headers: &[(&str, &str)],
) -> anyhow::Result<Response> {
    let mut req = http_client().get(edge.url(path)).header("Host", SITE);
    for (k, v) in headers {
        req = req.header(*k, *v);
    }
    Response::read(req.send().await?).await
}

/// A response, read whole.
#[derive(Debug)]
pub(crate) struct Response {
    pub status: u16,
    pub headers: HeaderMap,
    pub body: Vec<u8>,
}

impl Response {
    pub async fn read(res: reqwest::Response) -> anyhow::Result<Self> {
        let status = res.status().as_u16();
        let headers = res.headers().clone();
        Ok(Self {
            status,
            headers,
            body: res.bytes().await?.to_vec(),
        })
    }

    pub fn header(&self, name: &str) -> &str {
        self.headers
            .get(name)
            .and_then(|v| v.to_str().ok())
            .unwrap_or("")
    }

    pub fn cache_status(&self) -> &str {
        self.header("cache-status")
    }

    pub fn text(&self) -> String {
        String::from_utf8_lossy(&self.body).into_owned()
    }

    /// True when the edge answered from cache without asking the origin (whatever the node is
    /// called: `Cache-Status` starts with its name).
    pub fn is_hit(&self) -> bool {
        self.cache_status().split(';').nth(1).map(str::trim) == Some("hit")
    }
}

/// Runs `check` until it holds, for things that happen in the background.
pub(crate) async fn eventually(what: &str, mut check: impl FnMut() -> bool) -> anyhow::Result<()> {
    outpost_e2e::wait::eventually(Duration::from_secs(10), what, || {
        let ok = check();
        async move { ok.then_some(()) }
    })
    .await
}

/// `t` as an HTTP-date in the three forms recipients must read (RFC 9110 §5.6.7): IMF-fixdate,
/// RFC 850 and asctime.
pub(crate) fn http_date_forms(t: std::time::SystemTime) -> [String; 3] {
    let imf = httpdate::fmt_http_date(t);
    // "Sun, 06 Nov 1994 08:49:37 GMT"
    let p: Vec<&str> = imf.split([' ', ',']).filter(|x| !x.is_empty()).collect();
    let (day, date, month, year, time) = (p[0], p[1], p[2], p[3], p[4]);
    let long_day = match day {
        "Mon" => "Monday",
        "Tue" => "Tuesday",
        "Wed" => "Wednesday",
        "Thu" => "Thursday",
        "Fri" => "Friday",
        "Sat" => "Saturday",
        _ => "Sunday",
    };
    let rfc850 = format!("{long_day}, {date}-{month}-{} {time} GMT", &year[2..]);
    let asctime = format!(
        "{day} {month} {:>2} {time} {year}",
        date.trim_start_matches('0')
    );
    [imf, rfc850, asctime]
}
