//! Telling the edge what a write changed: `POST {edge_admin_url}/purge` with `{"tags": [...]}`
//! and the bearer token from config.
//!
//! A purge never fails the user's write. The first attempt runs inline for at most
//! `purge.inline_timeout_ms`, so in the common case the writer's next page view already misses
//! the cache; if it fails or is slow, a background task retries with exponential backoff
//! (merging tags that arrive meanwhile: purges are idempotent) and logs a purge it had to give up.

use std::collections::BTreeSet;
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::Duration;

use outpost_common::backoff;
use outpost_common::purge::PurgeRequest;
use tokio::sync::{mpsc, oneshot};

use crate::cache_headers::Tags;
use crate::config::PurgeConfig;

/// First retry delay; doubles per attempt.
const BASE_BACKOFF: Duration = Duration::from_millis(100);
/// Longest wait between attempts, so a recovered edge is purged within seconds.
const MAX_BACKOFF: Duration = Duration::from_secs(10);

/// Cheap to clone. A disabled purger (no edge configured) does nothing.
#[derive(Clone)]
pub struct Purger {
    inner: Option<Arc<Inner>>,
}

struct Inner {
    client: reqwest::Client,
    endpoint: reqwest::Url,
    token: String,
    inline_timeout: Duration,
    max_attempts: u32,
    tx: mpsc::Sender<Msg>,
    stats: PurgeStats,
}

enum Msg {
    Tags(Vec<String>),
    /// Answered once everything queued before it was sent or given up on.
    Flush(oneshot::Sender<()>),
}

/// Counters for logs, metrics and tests.
#[derive(Default, Debug)]
pub struct PurgeStats {
    /// Purge requests the edge accepted.
    pub sent: AtomicU64,
    /// Failed attempts that were retried.
    pub retried: AtomicU64,
    /// Purges given up on (attempts exhausted, rejected by the edge, or queue full).
    pub lost: AtomicU64,
}

#[derive(Debug, thiserror::Error)]
enum SendError {
    #[error("request failed: {0}")]
    Transport(#[from] reqwest::Error),
    #[error("edge answered {0}")]
    Status(reqwest::StatusCode),
}

impl SendError {
    /// A 4xx other than timeout/rate-limit means the request itself is wrong (bad token, bad
    /// body): sending it again cannot help.
    fn retryable(&self) -> bool {
        match self {
            SendError::Transport(_) => true,
            SendError::Status(s) => !s.is_client_error() || matches!(s.as_u16(), 408 | 425 | 429),
        }
    }
}

impl Purger {
    pub fn disabled() -> Self {
        Self { inner: None }
    }

    /// Starts the background sender on the current Tokio runtime; disabled when no edge is
    /// configured.
    pub fn start(config: &PurgeConfig) -> anyhow::Result<Self> {
        let (Some(url), Some(token)) = (&config.edge_admin_url, &config.token) else {
            return Ok(Self::disabled());
        };
        outpost_common::tls::install_crypto_provider();
        let client = reqwest::Client::builder()
            .timeout(config.request_timeout())
            .user_agent(concat!("outpost-origin/", env!("CARGO_PKG_VERSION")))
            .build()?;
        let endpoint = reqwest::Url::parse(&format!("{}/purge", url.trim_end_matches('/')))?;
        let (tx, rx) = mpsc::channel(config.queue);
        let inner = Arc::new(Inner {
            client,
            endpoint,
            token: token.clone(),
            inline_timeout: config.inline_timeout(),
            max_attempts: config.max_attempts,
            tx,
            stats: PurgeStats::default(),
        });
        tokio::spawn(background(Arc::clone(&inner), rx));
        Ok(Self { inner: Some(inner) })
    }

    pub fn stats(&self) -> Option<&PurgeStats> {
        self.inner.as_deref().map(|i| &i.stats)
    }

    /// Purges `tags` at the edge: one inline attempt bounded by `inline_timeout_ms`, then
    /// background retries. Never fails; problems are logged and counted.
    pub async fn purge(&self, tags: Tags) {
        let Some(inner) = &self.inner else { return };
        let tags = tags.into_vec();
        if !inner.inline_timeout.is_zero() {
            match tokio::time::timeout(inner.inline_timeout, inner.send(&tags)).await {
                Ok(Ok(())) => return,
                Ok(Err(e)) if !e.retryable() => {
                    inner.give_up(&tags, &e);
                    return;
                }
                Ok(Err(e)) => {
                    inner.stats.retried.fetch_add(1, Ordering::Relaxed);
                    tracing::warn!(?tags, error = %e, "purge failed; retrying in the background");
                }
                Err(_) => {
                    inner.stats.retried.fetch_add(1, Ordering::Relaxed);
                    tracing::warn!(?tags, "purge slow; retrying in the background");
                }
            }
        }
        if inner.tx.try_send(Msg::Tags(tags.clone())).is_err() {
            inner.stats.lost.fetch_add(1, Ordering::Relaxed);
            tracing::error!(?tags, "purge queue full; purge dropped");
        }
    }

    /// Waits (at most `timeout`) until every queued purge was sent or given up on: for shutdown.
    pub async fn flush(&self, timeout: Duration) {
        let Some(inner) = &self.inner else { return };
        let (done_tx, done_rx) = oneshot::channel();
        if inner.tx.send(Msg::Flush(done_tx)).await.is_ok() {
            let _ = tokio::time::timeout(timeout, done_rx).await;
        }
    }
}

impl Inner {
    async fn send(&self, tags: &[String]) -> Result<(), SendError> {
        let response = self
            .client
            .post(self.endpoint.clone())
            .bearer_auth(&self.token)
            .json(&PurgeRequest {
                tags: tags.to_vec(),
                ..PurgeRequest::default()
            })
            .send()
            .await?;
        if response.status().is_success() {
            self.stats.sent.fetch_add(1, Ordering::Relaxed);
            Ok(())
        } else {
            Err(SendError::Status(response.status()))
        }
    }

    fn give_up(&self, tags: &[String], error: &SendError) {
        self.stats.lost.fetch_add(1, Ordering::Relaxed);
        tracing::error!(?tags, %error, endpoint = %self.endpoint, "purge lost: the edge may serve stale content until it expires");
    }
}

/// Sends queued purges one batch at a time, retrying each with backoff.
async fn background(inner: Arc<Inner>, mut rx: mpsc::Receiver<Msg>) {
    let mut pending = BTreeSet::new();
    let mut flushes = Vec::new();
    while let Some(msg) = rx.recv().await {
        absorb(msg, &mut pending, &mut flushes);
        while let Ok(msg) = rx.try_recv() {
            absorb(msg, &mut pending, &mut flushes);
        }
        let mut attempt = 1;
        while !pending.is_empty() {
            let tags: Vec<String> = pending.iter().cloned().collect();
            match inner.send(&tags).await {
                Ok(()) => pending.clear(),
                Err(e) if !e.retryable() || attempt >= inner.max_attempts => {
                    inner.give_up(&tags, &e);
                    pending.clear();
                }
                Err(e) => {
                    inner.stats.retried.fetch_add(1, Ordering::Relaxed);
                    let delay = backoff::delay(attempt, BASE_BACKOFF, MAX_BACKOFF);
                    tracing::warn!(?tags, error = %e, attempt, ?delay, "purge failed; will retry");
                    tokio::time::sleep(delay).await;
                    while let Ok(msg) = rx.try_recv() {
                        absorb(msg, &mut pending, &mut flushes);
                    }
                    attempt += 1;
                }
            }
        }
        for done in flushes.drain(..) {
            let _ = done.send(());
        }
    }
}

fn absorb(msg: Msg, pending: &mut BTreeSet<String>, flushes: &mut Vec<oneshot::Sender<()>>) {
    match msg {
        Msg::Tags(tags) => pending.extend(tags),
        Msg::Flush(done) => flushes.push(done),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::sync::Mutex;

    use axum::Router;
    use axum::extract::State;
    use axum::http::{HeaderMap, StatusCode};
    use axum::routing::post;

    /// One received purge: its `Authorization` header and JSON body.
    type Received = (Option<String>, serde_json::Value);

    /// A real HTTP listener standing in for the edge admin API: records every purge it receives
    /// and fails the first `fail_first` with `fail_status`.
    #[derive(Clone)]
    struct Recorder {
        seen: Arc<Mutex<Vec<Received>>>,
        fail_first: usize,
        fail_status: StatusCode,
    }

    impl Recorder {
        async fn start(fail_first: usize, fail_status: StatusCode) -> (Self, String) {
            let rec = Recorder {
                seen: Arc::default(),
                fail_first,
                fail_status,
            };
            let app = Router::new()
                .route("/purge", post(record))
                .with_state(rec.clone());
            let listener = tokio::net::TcpListener::bind("127.0.0.1:0")
                .await
                .expect("bind");
            let url = format!("http://{}", listener.local_addr().expect("addr"));
            tokio::spawn(async move { axum::serve(listener, app).await });
            (rec, url)
        }

        fn seen(&self) -> Vec<Received> {
            self.seen.lock().expect("lock").clone()
        }

        async fn wait_for(&self, n: usize) {
            let deadline = tokio::time::Instant::now() + Duration::from_secs(10);
            while self.seen().len() < n {
                assert!(
                    tokio::time::Instant::now() < deadline,
                    "only {:?}",
                    self.seen()
                );
                tokio::time::sleep(Duration::from_millis(5)).await;
            }
        }
    }

    async fn record(
        State(rec): State<Recorder>,
        headers: HeaderMap,
        body: axum::Json<serde_json::Value>,
    ) -> StatusCode {
        let auth = headers
            .get("authorization")
            .and_then(|v| v.to_str().ok())
            .map(str::to_owned);
        let mut seen = rec.seen.lock().expect("lock");
        seen.push((auth, body.0));
        if seen.len() <= rec.fail_first {
            rec.fail_status
        } else {
            StatusCode::OK
        }
    }

    fn config(url: &str) -> PurgeConfig {
        PurgeConfig {
            edge_admin_url: Some(url.to_owned()),
            token: Some("s3cret".into()),
            ..PurgeConfig::default()
        }
    }

    #[tokio::test]
    async fn purge_posts_tags_with_the_bearer_token() {
        let (rec, url) = Recorder::start(0, StatusCode::OK).await;
        let purger = Purger::start(&config(&url)).expect("start");
        purger
            .purge(Tags::new().with("front").with("image-4"))
            .await;
        // The inline attempt succeeded: it was received before purge() returned.
        assert_eq!(
            rec.seen(),
            vec![(
                Some("Bearer s3cret".into()),
                serde_json::json!({"tags": ["front", "image-4"]})
            )]
        );
        assert_eq!(
            purger.stats().map(|s| s.sent.load(Ordering::Relaxed)),
            Some(1)
        );
    }

    #[tokio::test]
    async fn failures_are_retried_in_the_background_until_accepted() {
        let (rec, url) = Recorder::start(3, StatusCode::SERVICE_UNAVAILABLE).await;
        let purger = Purger::start(&config(&url)).expect("start");
        purger.purge(Tags::new().with("gallery")).await;
        rec.wait_for(4).await;
        purger.flush(Duration::from_secs(5)).await;
        let seen = rec.seen();
        assert_eq!(
            seen.len(),
            4,
            "one inline attempt, two failed retries, one success"
        );
        assert!(
            seen.iter()
                .all(|(_, body)| body == &serde_json::json!({"tags": ["gallery"]}))
        );
        let stats = purger.stats().expect("enabled");
        assert_eq!(stats.sent.load(Ordering::Relaxed), 1);
        assert_eq!(stats.retried.load(Ordering::Relaxed), 3);
        assert_eq!(stats.lost.load(Ordering::Relaxed), 0);
    }

    #[tokio::test]
    async fn a_rejected_token_is_not_retried() {
        let (rec, url) = Recorder::start(usize::MAX, StatusCode::UNAUTHORIZED).await;
        let purger = Purger::start(&config(&url)).expect("start");
        purger.purge(Tags::new().with("front")).await;
        purger.flush(Duration::from_secs(5)).await;
        assert_eq!(rec.seen().len(), 1);
        assert_eq!(
            purger.stats().map(|s| s.lost.load(Ordering::Relaxed)),
            Some(1)
        );
    }

    #[tokio::test]
    async fn an_unreachable_edge_is_given_up_on_after_max_attempts() {
        // A port nobody listens on: connection refused, retried, finally given up.
        let listener = std::net::TcpListener::bind("127.0.0.1:0").expect("bind");
        let url = format!("http://{}", listener.local_addr().expect("addr"));
        drop(listener);
        let purger = Purger::start(&PurgeConfig {
            max_attempts: 2,
            ..config(&url)
        })
        .expect("start");
        purger.purge(Tags::new().with("front")).await;
        purger.flush(Duration::from_secs(5)).await;
        let stats = purger.stats().expect("enabled");
        assert_eq!(stats.lost.load(Ordering::Relaxed), 1);
        assert_eq!(stats.sent.load(Ordering::Relaxed), 0);
    }

    #[tokio::test]
    async fn a_hanging_edge_does_not_hold_the_write() {
        // Accepts connections and never answers. Without the inline timeout, purge() would
        // wait for the 2 s request timeout; with it, it hands over to the background.
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0")
            .await
            .expect("bind");
        let url = format!("http://{}", listener.local_addr().expect("addr"));
        let held = tokio::spawn(async move {
            let mut conns = Vec::new();
            while let Ok((c, _)) = listener.accept().await {
                conns.push(c);
            }
        });
        let purger = Purger::start(&PurgeConfig {
            inline_timeout_ms: 50,
            request_timeout_ms: 60_000,
            ..config(&url)
        })
        .expect("start");
        let returned =
            tokio::time::timeout(Duration::from_secs(30), purger.purge(Tags::new().with("x")))
                .await;
        assert!(returned.is_ok(), "purge() waited on the hanging edge");
        assert_eq!(
            purger.stats().map(|s| s.retried.load(Ordering::Relaxed)),
            Some(1)
        );
        held.abort();
    }
}
