//! The check every stored object passes on a hit, L1 or L2, before it is served: defined here,
//! implemented by whoever knows what has been invalidated (the purge filter), so storage knows
//! nothing of purges.

use std::time::SystemTime;

use pingora_cache::key::HashBinary;

/// What a hit may do once the filter has seen it.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum HitVerdict {
    /// Nothing says otherwise: serve as its headers say.
    Serve,
    /// Stale now (a soft purge); served only under its stale-while-revalidate / stale-if-error.
    Stale,
    /// Must be revalidated before it is served, stale windows or not.
    Revalidate,
    /// Gone (a hard purge): a miss.
    Gone,
}

impl HitVerdict {
    /// For the `verdict` label of `outpost_purge_filtered_total`.
    pub fn label(self) -> &'static str {
        match self {
            HitVerdict::Serve => "serve",
            HitVerdict::Stale => "stale",
            HitVerdict::Revalidate => "revalidate",
            HitVerdict::Gone => "gone",
        }
    }
}

/// A stored object as the filter sees it.
pub struct StoredObject<'a> {
    pub primary: &'a HashBinary,
    /// The primary key's text (`http://host/path?query`), for prefix rules.
    pub primary_text: &'a str,
    pub tags: &'a [String],
    /// When it was stored or last revalidated.
    pub stored: SystemTime,
}

pub trait HitFilter: Send + Sync {
    fn check(&self, object: &StoredObject<'_>, now: SystemTime) -> HitVerdict;
}

/// Serves everything: for storage tests.
#[cfg(test)]
pub struct ServeAll;

#[cfg(test)]
impl HitFilter for ServeAll {
    fn check(&self, _: &StoredObject<'_>, _: SystemTime) -> HitVerdict {
        HitVerdict::Serve
    }
}
