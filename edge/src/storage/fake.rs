//! Test doubles for [`SharedTier`]: an in-memory store, and a faulty one that fails, stalls or
//! loses items on command. Unit tests only; end-to-end tests use real memcached.

use parking_lot::Mutex;
use std::collections::HashMap;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::time::Duration;

use async_trait::async_trait;

use super::shared::{SharedTier, TierError};

#[derive(Default)]
pub struct InMemoryTier {
    pub items: Mutex<HashMap<String, Vec<u8>>>,
    pub gets: AtomicU64,
    pub sets: AtomicU64,
}

impl InMemoryTier {
    pub fn keys(&self) -> Vec<String> {
        self.items.lock().keys().cloned().collect()
    }

    pub fn remove(&self, key: &str) {
        self.items.lock().remove(key);
    }

    pub fn corrupt(&self, key: &str) {
        if let Some(v) = self.items.lock().get_mut(key)
            && let Some(b) = v.last_mut()
        {
            *b ^= 0xFF;
        }
    }
}

#[async_trait]
impl SharedTier for InMemoryTier {
    async fn get(&self, key: &str, _: Duration) -> Result<Option<Vec<u8>>, TierError> {
        self.gets.fetch_add(1, Ordering::Relaxed);
        Ok(self.items.lock().get(key).cloned())
    }

    async fn set(
        &self,
        key: &str,
        value: &[u8],
        _: Duration,
        _: Duration,
    ) -> Result<(), TierError> {
        self.sets.fetch_add(1, Ordering::Relaxed);
        self.items.lock().insert(key.to_owned(), value.to_vec());
        Ok(())
    }

    async fn delete(&self, key: &str, _: Duration) -> Result<(), TierError> {
        self.remove(key);
        Ok(())
    }

    async fn touch(&self, key: &str, _: Duration, _: Duration) -> Result<bool, TierError> {
        Ok(self.items.lock().contains_key(key))
    }
}

/// Wraps an [`InMemoryTier`]; while `failing`, every call errors; while `stalled`, every call
/// waits out its deadline.
#[derive(Default)]
pub struct FaultyTier {
    pub inner: InMemoryTier,
    pub failing: AtomicBool,
    pub stalled: AtomicBool,
}

impl FaultyTier {
    async fn gate(&self, deadline: Duration) -> Result<(), TierError> {
        if self.stalled.load(Ordering::Relaxed) {
            tokio::time::sleep(deadline).await;
            return Err(TierError::Timeout(deadline));
        }
        if self.failing.load(Ordering::Relaxed) {
            return Err(TierError::Failed("injected failure".into()));
        }
        Ok(())
    }
}

#[async_trait]
impl SharedTier for FaultyTier {
    async fn get(&self, key: &str, d: Duration) -> Result<Option<Vec<u8>>, TierError> {
        self.gate(d).await?;
        self.inner.get(key, d).await
    }

    async fn set(
        &self,
        key: &str,
        value: &[u8],
        ttl: Duration,
        d: Duration,
    ) -> Result<(), TierError> {
        self.gate(d).await?;
        self.inner.set(key, value, ttl, d).await
    }

    async fn delete(&self, key: &str, d: Duration) -> Result<(), TierError> {
        self.gate(d).await?;
        self.inner.delete(key, d).await
    }

    async fn touch(&self, key: &str, ttl: Duration, d: Duration) -> Result<bool, TierError> {
        self.gate(d).await?;
        self.inner.touch(key, ttl, d).await
    }
}
