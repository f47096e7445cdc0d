//! Forwarding purges to the other regions' admin APIs, and reading their receipts back.

use std::time::Duration;

use crate::settings::RegionPeer;

use super::{PurgeRequest, Receipt};

/// Per request to another region; retries are the caller's.
const TIMEOUT: Duration = Duration::from_secs(2);
/// Reading another region's receipt must not hold up our own.
const RECEIPT_TIMEOUT: Duration = Duration::from_millis(500);

pub struct Forwarder {
    client: reqwest::Client,
}

fn endpoint(region: &RegionPeer, path: &str) -> String {
    format!("{}{path}", region.admin_url.trim_end_matches('/'))
}

impl Forwarder {
    pub fn new() -> anyhow::Result<Self> {
        // Other regions may be https://.
        outpost_common::tls::install_crypto_provider();
        Ok(Self {
            client: reqwest::Client::builder()
                .timeout(TIMEOUT)
                .user_agent(concat!("outpost-edge/", env!("CARGO_PKG_VERSION")))
                .build()?,
        })
    }

    /// Hands `body` to `region`; Ok once it accepted the purge.
    pub async fn send(&self, region: &RegionPeer, body: &PurgeRequest) -> Result<(), String> {
        let resp = self
            .client
            .post(endpoint(region, "/purge"))
            .bearer_auth(&region.token)
            .json(body)
            .send()
            .await
            .map_err(|e| format!("{}: {e}", region.admin_url))?;
        let status = resp.status();
        if status.is_success() {
            return Ok(());
        }
        let text = resp.text().await.unwrap_or_default();
        Err(format!(
            "{} answered {status}: {}",
            region.admin_url,
            text.trim()
        ))
    }

    /// `region`'s receipt for purge `id`, if it answers in time.
    pub async fn receipt(&self, region: &RegionPeer, id: &str) -> Option<Receipt> {
        let resp = self
            .client
            .get(endpoint(region, &format!("/purge/{id}")))
            .bearer_auth(&region.token)
            .timeout(RECEIPT_TIMEOUT)
            .send()
            .await
            .ok()?;
        if !resp.status().is_success() {
            return None;
        }
        resp.json::<Receipt>().await.ok()
    }
}
