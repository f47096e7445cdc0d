//! The purge log's store when a node has no memcached pool: the same [`ServerStore`] calls, held
//! in this process (a region of one node). Unit tests use it with several "servers".

use parking_lot::{Mutex, MutexGuard};
use std::collections::HashMap;
use std::time::{Duration, Instant};

use async_trait::async_trait;

use super::store::ServerStore;
use crate::storage::shared::TierError;

type Items = HashMap<String, (Vec<u8>, Option<Instant>)>;

pub struct LocalStore {
    servers: Vec<Mutex<Items>>,
    /// Servers that fail every call (tests).
    #[cfg(test)]
    failing: Mutex<std::collections::HashSet<usize>>,
}

/// Expired items are swept when a server holds more than this many.
const SWEEP_ABOVE: usize = 4096;

impl LocalStore {
    pub fn with_servers(n: usize) -> Self {
        Self {
            servers: (0..n.max(1)).map(|_| Mutex::new(HashMap::new())).collect(),
            #[cfg(test)]
            failing: Mutex::new(std::collections::HashSet::new()),
        }
    }

    fn server(&self, i: usize) -> Result<MutexGuard<'_, Items>, TierError> {
        #[cfg(test)]
        if self.failing.lock().contains(&i) {
            return Err(TierError::Failed(format!("local#{i} made to fail")));
        }
        self.servers
            .get(i)
            .map(Mutex::lock)
            .ok_or_else(|| TierError::Failed(format!("no server number {i}")))
    }

    /// Makes server `i` fail every call (or work again).
    #[cfg(test)]
    pub fn fail(&self, i: usize, failing: bool) {
        {
            let mut f = self.failing.lock();
            if failing {
                f.insert(i);
            } else {
                f.remove(&i);
            }
        }
    }

    /// Forgets everything on server `i`, as a restarted memcached would.
    #[cfg(test)]
    pub fn clear(&self, i: usize) {
        if let Ok(mut s) = self.server(i) {
            s.clear();
        }
    }

    /// Removes the item whose key contains `part` and ends with `:{n}`.
    #[cfg(test)]
    pub fn remove_matching(&self, i: usize, part: &str, n: u64) {
        if let Ok(mut s) = self.server(i) {
            let end = format!(":{n}");
            s.retain(|k, _| !(k.contains(part) && k.ends_with(&end)));
        }
    }
}

fn live(item: &(Vec<u8>, Option<Instant>)) -> bool {
    item.1.is_none_or(|until| until > Instant::now())
}

fn until(ttl: Duration) -> Option<Instant> {
    (!ttl.is_zero()).then(|| Instant::now() + ttl)
}

fn store(items: &mut Items, key: &str, value: &[u8], ttl: Duration) {
    if items.len() > SWEEP_ABOVE {
        items.retain(|_, v| live(v));
    }
    items.insert(key.to_owned(), (value.to_vec(), until(ttl)));
}

#[async_trait]
impl ServerStore for LocalStore {
    fn ranked(&self, _key: &str) -> Vec<usize> {
        (0..self.servers.len()).collect()
    }

    async fn get_on(
        &self,
        server: usize,
        key: &str,
        _: Duration,
    ) -> Result<Option<Vec<u8>>, TierError> {
        Ok(self
            .server(server)?
            .get(key)
            .filter(|v| live(v))
            .map(|v| v.0.clone()))
    }

    async fn set_on(
        &self,
        server: usize,
        key: &str,
        value: &[u8],
        ttl: Duration,
        _: Duration,
    ) -> Result<(), TierError> {
        store(&mut *self.server(server)?, key, value, ttl);
        Ok(())
    }

    async fn add_on(
        &self,
        server: usize,
        key: &str,
        value: &[u8],
        ttl: Duration,
        _: Duration,
    ) -> Result<bool, TierError> {
        let mut items = self.server(server)?;
        if items.get(key).is_some_and(live) {
            return Ok(false);
        }
        store(&mut items, key, value, ttl);
        Ok(true)
    }

    async fn append_on(
        &self,
        server: usize,
        key: &str,
        value: &[u8],
        _: Duration,
    ) -> Result<bool, TierError> {
        let mut items = self.server(server)?;
        match items.get_mut(key).filter(|v| live(v)) {
            Some(item) => {
                item.0.extend_from_slice(value);
                Ok(true)
            }
            None => Ok(false),
        }
    }

    async fn incr_on(&self, server: usize, key: &str, _: Duration) -> Result<u64, TierError> {
        let mut items = self.server(server)?;
        let next = items
            .get(key)
            .filter(|v| live(v))
            .and_then(|v| std::str::from_utf8(&v.0).ok()?.trim().parse::<u64>().ok())
            .map_or(1, |n| n + 1);
        items.insert(key.to_owned(), (next.to_string().into_bytes(), None));
        Ok(next)
    }
}
