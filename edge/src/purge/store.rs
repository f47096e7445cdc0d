//! What the purge log needs from a store: named servers in a stable order, and a few operations
//! on each. The region's memcached pool provides them (`MemcachedTier`'s per-server operations),
//! or, without a pool, the in-process [`super::local::LocalStore`].

use std::time::Duration;

use async_trait::async_trait;

use crate::storage::shared::{MemcachedTier, TierError};

#[async_trait]
pub trait ServerStore: Send + Sync + 'static {
    /// Every server, best first for `key` (rendezvous order): the same order on every node.
    fn ranked(&self, key: &str) -> Vec<usize>;
    async fn get_on(
        &self,
        server: usize,
        key: &str,
        deadline: Duration,
    ) -> Result<Option<Vec<u8>>, TierError>;
    async fn set_on(
        &self,
        server: usize,
        key: &str,
        value: &[u8],
        ttl: Duration,
        deadline: Duration,
    ) -> Result<(), TierError>;
    /// Stores only if absent; false when the key already exists. A zero `ttl` (here and in
    /// `set_on`) keeps the item until it is evicted.
    async fn add_on(
        &self,
        server: usize,
        key: &str,
        value: &[u8],
        ttl: Duration,
        deadline: Duration,
    ) -> Result<bool, TierError>;
    /// Appends to an existing item (atomically); false when it is missing.
    async fn append_on(
        &self,
        server: usize,
        key: &str,
        value: &[u8],
        deadline: Duration,
    ) -> Result<bool, TierError>;
    /// Adds one to a counter, creating it at 1 (kept forever) when missing; the new value.
    async fn incr_on(&self, server: usize, key: &str, deadline: Duration)
    -> Result<u64, TierError>;
}

#[async_trait]
impl ServerStore for MemcachedTier {
    fn ranked(&self, key: &str) -> Vec<usize> {
        MemcachedTier::ranked(self, key)
    }

    async fn get_on(
        &self,
        server: usize,
        key: &str,
        deadline: Duration,
    ) -> Result<Option<Vec<u8>>, TierError> {
        MemcachedTier::get_on(self, server, key, deadline).await
    }

    async fn set_on(
        &self,
        server: usize,
        key: &str,
        value: &[u8],
        ttl: Duration,
        deadline: Duration,
    ) -> Result<(), TierError> {
        MemcachedTier::set_on(self, server, key, value, ttl, deadline).await
    }

    async fn add_on(
        &self,
        server: usize,
        key: &str,
        value: &[u8],
        ttl: Duration,
        deadline: Duration,
    ) -> Result<bool, TierError> {
        MemcachedTier::add_on(self, server, key, value, ttl, deadline).await
    }

    async fn append_on(
        &self,
        server: usize,
        key: &str,
        value: &[u8],
        deadline: Duration,
    ) -> Result<bool, TierError> {
        MemcachedTier::append_on(self, server, key, value, deadline).await
    }

    async fn incr_on(
        &self,
        server: usize,
        key: &str,
        deadline: Duration,
    ) -> Result<u64, TierError> {
        MemcachedTier::incr_on(self, server, key, deadline).await
    }
}
