//! How many client connections the node holds open: in all (below the file descriptor limit, so
//! `accept` never starts failing with "too many open files" for everyone) and per client address
//! (so one address cannot take them all). A connection over either limit is refused; a
//! [`Slot`] holds an admitted connection's place until it is dropped.

use std::collections::HashMap;
use std::net::IpAddr;
use std::sync::Arc;
use std::sync::atomic::{AtomicUsize, Ordering};

use parking_lot::Mutex;
use prometheus::IntGauge;

use crate::client::group;

/// Why a connection was refused.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Refusal {
    /// `server.max_connections` reached.
    Full,
    /// `server.max_connections_per_client` reached for this address.
    PerClient,
}

impl Refusal {
    pub fn as_str(self) -> &'static str {
        match self {
            Refusal::Full => "too-many-connections",
            Refusal::PerClient => "too-many-connections-from-client",
        }
    }
}

#[derive(Debug)]
pub struct Limits {
    max: usize,
    /// 0: no per-client limit.
    max_per_client: usize,
    open: AtomicUsize,
    /// Open connections per client ([`group`]).
    per_client: Mutex<HashMap<IpAddr, usize>>,
    gauge: IntGauge,
}

impl Limits {
    pub fn new(max: usize, max_per_client: usize, gauge: IntGauge) -> Arc<Self> {
        Arc::new(Self {
            max,
            max_per_client,
            open: AtomicUsize::new(0),
            per_client: Mutex::new(HashMap::new()),
            gauge,
        })
    }

    /// A place for a new connection from `peer`, or why there is none.
    pub fn admit(self: &Arc<Self>, peer: Option<IpAddr>) -> Result<Slot, Refusal> {
        if self.open.fetch_add(1, Ordering::AcqRel) >= self.max {
            self.open.fetch_sub(1, Ordering::AcqRel);
            return Err(Refusal::Full);
        }
        let client = peer.map(group);
        if let Some(key) = client.filter(|_| self.max_per_client > 0) {
            let mut per_client = self.per_client.lock();
            let n = per_client.entry(key).or_insert(0);
            if *n >= self.max_per_client {
                drop(per_client);
                self.open.fetch_sub(1, Ordering::AcqRel);
                return Err(Refusal::PerClient);
            }
            *n += 1;
        }
        self.gauge.inc();
        Ok(Slot {
            limits: Arc::clone(self),
            client: client.filter(|_| self.max_per_client > 0),
        })
    }
}

/// An admitted connection's place; given back when dropped.
#[derive(Debug)]
pub struct Slot {
    limits: Arc<Limits>,
    client: Option<IpAddr>,
}

impl Drop for Slot {
    fn drop(&mut self) {
        if let Some(key) = self.client {
            let mut per_client = self.limits.per_client.lock();
            if let Some(n) = per_client.get_mut(&key) {
                *n -= 1;
                if *n == 0 {
                    per_client.remove(&key);
                }
            }
        }
        self.limits.open.fetch_sub(1, Ordering::AcqRel);
        self.limits.gauge.dec();
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn limits(max: usize, per_client: usize) -> Arc<Limits> {
        Limits::new(
            max,
            per_client,
            IntGauge::new("open", "open").expect("gauge"),
        )
    }

    fn ip(s: &str) -> Option<IpAddr> {
        Some(s.parse().expect("ip"))
    }

    #[test]
    fn one_address_cannot_take_every_connection() {
        let l = limits(10, 2);
        let a1 = l.admit(ip("192.0.2.1")).expect("first");
        let _a2 = l
            .admit(ip("::ffff:192.0.2.1"))
            .expect("second, same client");
        assert_eq!(l.admit(ip("192.0.2.1")).err(), Some(Refusal::PerClient));
        let _b = l.admit(ip("192.0.2.2")).expect("another client");
        drop(a1);
        let _a3 = l.admit(ip("192.0.2.1")).expect("a place was given back");
        assert_eq!(l.gauge.get(), 3);
    }

    #[test]
    fn an_ipv6_client_is_its_slash_64() {
        let l = limits(10, 1);
        let _a = l.admit(ip("2001:db8:1:2::1")).expect("first");
        assert_eq!(
            l.admit(ip("2001:db8:1:2:ffff::9")).err(),
            Some(Refusal::PerClient)
        );
        let _b = l.admit(ip("2001:db8:1:3::1")).expect("another /64");
    }

    #[test]
    fn the_total_is_capped_and_counted() {
        let l = limits(2, 0);
        let a = l.admit(ip("192.0.2.1")).expect("1");
        let _b = l.admit(ip("192.0.2.1")).expect("2: no per-client limit");
        assert_eq!(l.admit(ip("192.0.2.3")).err(), Some(Refusal::Full));
        assert_eq!(l.gauge.get(), 2);
        drop(a);
        assert_eq!(l.gauge.get(), 1);
    }
}
