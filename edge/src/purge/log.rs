//! The region's purge log, kept in the region's memcached pool (or in process when there is no
//! pool): on each of its replica servers a generation (a random id, recreated when memcached
//! restarts), a sequence counter, and entries `e:{generation}:{n}`. Writers append to every
//! replica they reach; every node follows every replica and notices a gap (generation changed,
//! counter went back, an entry missing past a grace period), which its caller turns into "drop
//! L1, revalidate everything older". Heartbeats, acknowledgements and receipts live beside it.

use std::sync::Arc;
use std::time::{Duration, Instant};

use parking_lot::Mutex;
use serde::{Deserialize, Serialize};

use super::store::ServerStore;
use crate::storage::shared::TierError;

/// One purge as it travels through the log.
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct LogEntry {
    pub id: String,
    /// The node that accepted it.
    pub node: String,
    /// When it was accepted (µs since the epoch, that node's clock).
    pub at_us: u64,
    pub soft: bool,
    /// Primary cache keys (`http://host/path?query`), normalised.
    #[serde(default)]
    pub urls: Vec<String>,
    #[serde(default)]
    pub prefixes: Vec<String>,
    #[serde(default)]
    pub tags: Vec<String>,
    #[serde(default)]
    pub all: bool,
    /// Primary-key hashes (hex) of URLs invalidated by unsafe requests: 32 characters each,
    /// whatever the URL's length.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub hashes: Vec<String>,
    /// How long this entry's marks matter (ms), when shorter than the longest object life: an
    /// invalidation outlives only the copies it could affect.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub keep_ms: Option<u64>,
}

/// Where this node is in one replica's log.
#[derive(Clone, Debug, Default)]
struct Position {
    generation: Option<Vec<u8>>,
    seq: u64,
    /// Since when the next entry has been missing.
    missing_since: Option<Instant>,
}

/// What one poll found.
#[derive(Debug, Default)]
pub struct Polled {
    pub entries: Vec<LogEntry>,
    /// Something may have been lost: a replica restarted, or an entry vanished.
    pub gap: bool,
    /// At least one replica was read up to its head.
    pub synced: bool,
}

pub struct Settings {
    pub namespace: String,
    pub replicas: usize,
    pub deadline: Duration,
    /// How long entries, acknowledgements and receipts are kept.
    pub entry_ttl: Duration,
    pub heartbeat_ttl: Duration,
    /// A missing entry is a gap only after this long (its writer may be between the counter
    /// and the entry).
    pub missing_grace: Duration,
    /// Entries read per replica per poll.
    pub batch: u64,
}

pub struct Log {
    store: Arc<dyn ServerStore>,
    replicas: Vec<usize>,
    s: Settings,
    positions: Mutex<Vec<Position>>,
}

impl Log {
    pub fn new(store: Arc<dyn ServerStore>, s: Settings) -> Self {
        let mut replicas = store.ranked(&format!("{}:purge", s.namespace));
        replicas.truncate(s.replicas.max(1));
        Self {
            positions: Mutex::new(vec![Position::default(); replicas.len()]),
            store,
            replicas,
            s,
        }
    }

    fn key(&self, what: &str) -> String {
        format!("{}:purge:{what}", self.s.namespace)
    }

    /// The replica's generation, created if it has none.
    async fn generation(&self, server: usize) -> Result<Vec<u8>, TierError> {
        let key = self.key("gen");
        if let Some(g) = self.store.get_on(server, &key, self.s.deadline).await? {
            return Ok(g);
        }
        let fresh = format!("{:016x}", fastrand::u64(..)).into_bytes();
        if self
            .store
            .add_on(server, &key, &fresh, Duration::ZERO, self.s.deadline)
            .await?
        {
            return Ok(fresh);
        }
        // Another writer created it first.
        self.store
            .get_on(server, &key, self.s.deadline)
            .await?
            .ok_or_else(|| TierError::Failed("purge log generation vanished".to_owned()))
    }

    fn entry_key(&self, generation: &[u8], seq: u64) -> String {
        self.key(&format!("e:{}:{seq}", String::from_utf8_lossy(generation)))
    }

    /// Appends `entry` to every replica it can, kept as long as entries are; how many took it.
    pub async fn append(&self, entry: &LogEntry) -> Result<usize, String> {
        self.append_for(entry, self.s.entry_ttl).await
    }

    /// Appends `entry`, kept `ttl` (at most as long as entries are). A reader that finds it
    /// expired counts a gap, so a short life can cost a lagging node its L1, never a purge.
    pub async fn append_for(&self, entry: &LogEntry, ttl: Duration) -> Result<usize, String> {
        let ttl = ttl.min(self.s.entry_ttl);
        let value = serde_json::to_vec(entry).map_err(|e| e.to_string())?;
        let writes = self.replicas.iter().map(|&server| {
            let value = &value;
            async move {
                let generation = self.generation(server).await?;
                let seq = self
                    .store
                    .incr_on(server, &self.key("seq"), self.s.deadline)
                    .await?;
                self.store
                    .set_on(
                        server,
                        &self.entry_key(&generation, seq),
                        value,
                        ttl,
                        self.s.deadline,
                    )
                    .await
            }
        });
        let results = futures::future::join_all(writes).await;
        let written = results.iter().filter(|r| r.is_ok()).count();
        if written == 0 {
            let why: Vec<String> = results
                .into_iter()
                .filter_map(Result::err)
                .map(|e| e.to_string())
                .collect();
            return Err(format!(
                "no purge log replica reachable: {}",
                why.join("; ")
            ));
        }
        Ok(written)
    }

    /// Reads what is new in every replica.
    pub async fn poll(&self) -> Polled {
        let positions = self.positions.lock().clone();
        let reads = self
            .replicas
            .iter()
            .zip(positions)
            .map(|(&server, pos)| self.poll_replica(server, pos));
        let results = futures::future::join_all(reads).await;
        let mut polled = Polled::default();
        let mut next = Vec::with_capacity(results.len());
        for (pos, replica) in results {
            next.push(pos);
            let Some(replica) = replica else { continue };
            polled.entries.extend(replica.entries);
            polled.gap |= replica.gap;
            polled.synced |= replica.synced;
        }
        *self.positions.lock() = next;
        polled
    }

    /// One replica: the new position, and what was read (`None` when unreachable).
    async fn poll_replica(&self, server: usize, mut pos: Position) -> (Position, Option<Polled>) {
        let deadline = self.s.deadline;
        let seq_key = self.key("seq");
        // Readers create the generation too: a replica that had none (no purge written yet)
        // and restarted would otherwise look unchanged, and a purge written just before the
        // restart would be lost without a gap.
        let (generation, head) = futures::join!(
            self.generation(server),
            self.store.get_on(server, &seq_key, deadline),
        );
        let (Ok(generation), Ok(head)) = (generation, head) else {
            return (pos, None);
        };
        let head = head
            .and_then(|h| std::str::from_utf8(&h).ok()?.trim().parse::<u64>().ok())
            .unwrap_or(0);
        let mut out = Polled::default();
        if pos.generation.as_ref() != Some(&generation) {
            // A restarted (or first seen) log: read it from its start. Entries of the old one
            // that this node had not read yet may be lost.
            out.gap = pos.generation.is_some();
            pos = Position {
                generation: Some(generation.clone()),
                ..Position::default()
            };
        } else if head < pos.seq {
            out.gap = true;
            pos.seq = 0;
            pos.missing_since = None;
        }
        let last = head.min(pos.seq + self.s.batch);
        let keys: Vec<String> = (pos.seq + 1..=last)
            .map(|n| self.entry_key(&generation, n))
            .collect();
        let reads = keys.iter().map(|k| self.store.get_on(server, k, deadline));
        for read in futures::future::join_all(reads).await {
            match read {
                Ok(Some(raw)) => {
                    pos.seq += 1;
                    pos.missing_since = None;
                    // An entry we cannot read is as lost as a missing one.
                    match serde_json::from_slice::<LogEntry>(&raw) {
                        Ok(e) => out.entries.push(e),
                        Err(_) => out.gap = true,
                    }
                }
                Ok(None) => {
                    let since = *pos.missing_since.get_or_insert_with(Instant::now);
                    if since.elapsed() < self.s.missing_grace {
                        break;
                    }
                    // Past the grace: this one and any missing right after it are lost (one
                    // wait for a run of expired entries, not one per entry).
                    out.gap = true;
                    pos.seq += 1;
                }
                Err(_) => break,
            }
        }
        out.synced = pos.seq == head;
        (pos, Some(out))
    }

    /// Sets `key` on every replica (best effort); true if any took it.
    async fn set_everywhere(&self, key: &str, value: &[u8], ttl: Duration) -> bool {
        let sets = self
            .replicas
            .iter()
            .map(|&server| self.store.set_on(server, key, value, ttl, self.s.deadline));
        futures::future::join_all(sets)
            .await
            .iter()
            .any(Result::is_ok)
    }

    /// The first replica's value for `key`. `Ok(None)` only when every replica answered and
    /// none has it: a replica that failed might have, so that is an error, not an absence.
    async fn get_anywhere(&self, key: String) -> Result<Option<Vec<u8>>, TierError> {
        let gets = self
            .replicas
            .iter()
            .map(|&server| self.store.get_on(server, &key, self.s.deadline));
        let mut failed = None;
        for read in futures::future::join_all(gets).await {
            match read {
                Ok(Some(v)) => return Ok(Some(v)),
                Ok(None) => {}
                Err(e) => failed = Some(e),
            }
        }
        failed.map_or(Ok(None), Err)
    }

    /// Says this node is alive, and makes sure every replica's node list names it. Names are
    /// appended (atomic in memcached), never rewritten, so concurrent joins cannot drop one.
    pub async fn heartbeat(&self, node: &str) {
        self.set_everywhere(&self.key(&format!("hb:{node}")), b"1", self.s.heartbeat_ttl)
            .await;
        let list_key = self.key("nodes");
        let joins = self.replicas.iter().map(|&server| {
            let list_key = &list_key;
            async move {
                let deadline = self.s.deadline;
                let listed = self.store.get_on(server, list_key, deadline).await?;
                if listed
                    .as_deref()
                    .is_some_and(|l| node_list(l).any(|n| n == node))
                {
                    return Ok(());
                }
                let entry = format!(" {node}");
                let forever = Duration::ZERO;
                if !self
                    .store
                    .add_on(server, list_key, entry.as_bytes(), forever, deadline)
                    .await?
                {
                    self.store
                        .append_on(server, list_key, entry.as_bytes(), deadline)
                        .await?;
                }
                Ok::<(), TierError>(())
            }
        });
        futures::future::join_all(joins).await;
    }

    /// Nodes of the region whose heartbeat is current; an error when that cannot be known.
    pub async fn live_nodes(&self) -> Result<Vec<String>, TierError> {
        let listed = self
            .get_anywhere(self.key("nodes"))
            .await?
            .unwrap_or_default();
        let mut names: Vec<String> = node_list(&listed).map(str::to_owned).collect();
        names.sort();
        names.dedup();
        let beats = names
            .iter()
            .map(|n| self.get_anywhere(self.key(&format!("hb:{n}"))));
        let alive = futures::future::join_all(beats).await;
        let mut live = Vec::with_capacity(names.len());
        for (name, beat) in names.into_iter().zip(alive) {
            if beat?.is_some() {
                live.push(name);
            }
        }
        Ok(live)
    }

    /// Records that `node` applied purge `id`.
    pub async fn ack(&self, id: &str, node: &str) {
        self.set_everywhere(
            &self.key(&format!("ack:{id}:{node}")),
            b"1",
            self.s.entry_ttl,
        )
        .await;
    }

    /// Which of `nodes` applied purge `id`; an error when that cannot be known.
    pub async fn acked(&self, id: &str, nodes: &[String]) -> Result<Vec<bool>, TierError> {
        let reads = nodes
            .iter()
            .map(|n| self.get_anywhere(self.key(&format!("ack:{id}:{n}"))));
        futures::future::join_all(reads)
            .await
            .into_iter()
            .map(|a| a.map(|v| v.is_some()))
            .collect()
    }

    pub async fn put_record(&self, id: &str, record: &[u8]) -> bool {
        self.set_everywhere(&self.key(&format!("rec:{id}")), record, self.s.entry_ttl)
            .await
    }

    pub async fn record(&self, id: &str) -> Option<Vec<u8>> {
        self.get_anywhere(self.key(&format!("rec:{id}")))
            .await
            .ok()
            .flatten()
    }
}

fn node_list(raw: &[u8]) -> impl Iterator<Item = &str> {
    std::str::from_utf8(raw)
        .unwrap_or("")
        .split(' ')
        .filter(|n| !n.is_empty())
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::purge::local::LocalStore;

    fn log(store: Arc<dyn ServerStore>, replicas: usize) -> Log {
        Log::new(
            store,
            Settings {
                namespace: "t".to_owned(),
                replicas,
                deadline: Duration::from_secs(1),
                entry_ttl: Duration::from_secs(3600),
                heartbeat_ttl: Duration::from_secs(2),
                missing_grace: Duration::ZERO,
                batch: 100,
            },
        )
    }

    fn entry(id: &str) -> LogEntry {
        LogEntry {
            id: id.to_owned(),
            tags: vec!["t".to_owned()],
            ..LogEntry::default()
        }
    }

    #[tokio::test]
    async fn readers_see_every_entry_once_per_replica_in_order() {
        let store = Arc::new(LocalStore::with_servers(3));
        let (writer, reader) = (log(store.clone(), 2), log(store.clone(), 2));
        assert!(reader.poll().await.synced);
        writer.append(&entry("a")).await.expect("append");
        writer.append(&entry("b")).await.expect("append");
        let polled = reader.poll().await;
        let ids: Vec<&str> = polled.entries.iter().map(|e| e.id.as_str()).collect();
        assert_eq!(ids, ["a", "b", "a", "b"], "two replicas");
        assert!(polled.synced && !polled.gap);
        assert!(reader.poll().await.entries.is_empty());
    }

    #[tokio::test]
    async fn a_replica_restarted_before_any_purge_is_a_gap_too() {
        let store = Arc::new(LocalStore::with_servers(1));
        let reader = log(store.clone(), 1);
        assert!(!reader.poll().await.gap, "a first sight is no gap");
        store.clear(0);
        assert!(
            reader.poll().await.gap,
            "no generation before, none now: still a restart"
        );
        assert!(!reader.poll().await.gap);
    }

    #[tokio::test]
    async fn a_restarted_replica_or_a_lost_entry_is_a_gap() {
        let store = Arc::new(LocalStore::with_servers(1));
        let (writer, reader) = (log(store.clone(), 1), log(store.clone(), 1));
        writer.append(&entry("a")).await.expect("append");
        assert_eq!(reader.poll().await.entries.len(), 1);
        // memcached restarted: everything gone, a new generation on the next write.
        store.clear(0);
        writer.append(&entry("b")).await.expect("append");
        let polled = reader.poll().await;
        assert!(polled.gap);
        assert_eq!(
            polled.entries,
            vec![entry("b")],
            "the new log is read from its start"
        );

        writer.append(&entry("c")).await.expect("append");
        writer.append(&entry("d")).await.expect("append");
        store.remove_matching(0, ":e:", 2);
        let polled = reader.poll().await;
        assert!(polled.gap, "entry 2 (c) evicted");
        assert_eq!(polled.entries, vec![entry("d")]);
    }

    #[tokio::test]
    async fn heartbeats_list_live_nodes_and_acks_are_per_node() {
        let store = Arc::new(LocalStore::with_servers(2));
        let l = log(store.clone(), 2);
        l.heartbeat("b").await;
        l.heartbeat("a").await;
        l.heartbeat("a").await;
        assert_eq!(
            l.live_nodes().await,
            Ok(vec!["a".to_owned(), "b".to_owned()])
        );
        l.ack("p1", "a").await;
        assert_eq!(
            l.acked("p1", &["a".to_owned(), "b".to_owned()]).await,
            Ok(vec![true, false])
        );
        // Replicas that cannot answer make the list unknown, not empty.
        store.fail(0, true);
        store.fail(1, true);
        assert!(l.live_nodes().await.is_err());
        assert!(l.acked("p1", &["b".to_owned()]).await.is_err());
        store.fail(0, false);
        // A join appends where it can and leaves the rest alone.
        l.heartbeat("c").await;
        store.fail(1, false);
        let listed = |server| {
            let store = &store;
            async move {
                let raw = store.get_on(server, "t:purge:nodes", Duration::ZERO).await;
                let raw = raw.ok().flatten().unwrap_or_default();
                node_list(&raw).map(str::to_owned).collect::<Vec<_>>()
            }
        };
        assert_eq!(listed(0).await, ["b", "a", "c"]);
        assert_eq!(listed(1).await, ["b", "a"]);
    }
}
