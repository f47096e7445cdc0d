//! `/healthz` (the process answers) and `/readyz` (it can reach its database), for load
//! balancers and the edge's origin health checks. Never cached.

use std::time::Duration;

use axum::extract::State;
use axum::http::StatusCode;
use axum::response::{IntoResponse, Response};

use crate::AppState;
use crate::cache_headers::private;

/// A database that takes longer than this to answer `SELECT 1` is as good as down.
const READY_TIMEOUT: Duration = Duration::from_secs(2);

pub async fn healthz() -> Response {
    private("ok\n".into_response())
}

pub async fn readyz(State(state): State<AppState>) -> Response {
    let ready = match tokio::time::timeout(READY_TIMEOUT, state.store.ping()).await {
        Ok(Ok(())) => Ok(()),
        Ok(Err(e)) => Err(e.to_string()),
        Err(_) => Err(format!("no answer within {READY_TIMEOUT:?}")),
    };
    let response = match ready {
        Ok(()) => (StatusCode::OK, "ready\n".to_owned()).into_response(),
        Err(reason) => {
            tracing::warn!(%reason, "not ready: database unreachable");
            (
                StatusCode::SERVICE_UNAVAILABLE,
                format!("database unreachable: {reason}\n"),
            )
                .into_response()
        }
    };
    private(response)
}
