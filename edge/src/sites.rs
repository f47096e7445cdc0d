//! The sites an edge serves and which one a request is for. A [`Site`] is a set of host names
//! with its origin pool and its key rules; [`Sites`] routes a host to one (exact name, then a
//! wildcard for the parent, then `*`); [`LiveSites`] is the table in force, swapped whole by a
//! reload while requests keep the site they started with.

use std::collections::HashMap;
use std::sync::Arc;

use arc_swap::ArcSwap;
use prometheus::IntCounter;

use crate::cache_key::{KeyBuilder, RulesByHost};
use crate::metrics::{Metrics, Outcome};
use crate::settings::SiteSettings;
use crate::target::QueryRules;
use crate::upstream::Origins;

pub struct Site {
    pub name: String,
    pub redirect_to_https: bool,
    pub origins: Arc<Origins>,
    /// What the pool was built from (a reload keeps a pool whose settings did not change, and
    /// with it its health state).
    origin_settings: crate::settings::OriginSettings,
    pub keys: KeyBuilder,
    /// `outpost_site_requests_total{site, cache}`, resolved per outcome.
    by_outcome: Vec<IntCounter>,
}

impl std::fmt::Debug for Site {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Site")
            .field("name", &self.name)
            .finish_non_exhaustive()
    }
}

impl Site {
    /// The site `settings` describe, with `pool` if given, else a new pool whose names are not
    /// resolved yet ([`Sites::resolve`]).
    fn new(
        settings: &SiteSettings,
        pool: Option<Arc<Origins>>,
        metrics: &Arc<Metrics>,
    ) -> anyhow::Result<Self> {
        let origins = match pool {
            Some(pool) => pool,
            None => Arc::new(
                Origins::new(&settings.name, &settings.origin, Arc::clone(metrics)).map_err(
                    |e| {
                        e.context(format!(
                            "building the origin pool of site {}",
                            settings.name
                        ))
                    },
                )?,
            ),
        };
        Ok(Self {
            name: settings.name.clone(),
            redirect_to_https: settings.redirect_to_https,
            origins,
            origin_settings: settings.origin.clone(),
            keys: KeyBuilder::new(settings.query.clone()),
            by_outcome: Outcome::ALL
                .iter()
                .map(|o| {
                    metrics
                        .site_requests
                        .with_label_values(&[&settings.name, o.label()])
                })
                .collect(),
        })
    }

    /// Counts one request of this site.
    pub fn count(&self, outcome: Outcome) {
        self.by_outcome[outcome as usize].inc();
    }
}

/// Sites by host.
pub struct Sites {
    sites: Vec<Arc<Site>>,
    exact: HashMap<String, usize>,
    /// Wildcard sites by the parent they stand under (`*.example.com` under `example.com`).
    wildcard: HashMap<String, usize>,
    any: Option<usize>,
}

impl Sites {
    /// The table of `settings` (validated: hosts unique, at most one `*`).
    pub fn new(settings: &[SiteSettings], metrics: &Arc<Metrics>) -> anyhow::Result<Self> {
        Self::build(settings, metrics, |_| None)
    }

    /// The table of `settings`, keeping the pools of `running` sites whose name and origin
    /// settings are unchanged (already resolved and checked).
    pub fn reusing(
        settings: &[SiteSettings],
        metrics: &Arc<Metrics>,
        running: &Sites,
    ) -> anyhow::Result<Self> {
        Self::build(settings, metrics, |s| {
            running
                .sites
                .iter()
                .find(|r| r.name == s.name && r.origin_settings == s.origin)
                .map(|r| Arc::clone(&r.origins))
        })
    }

    fn build(
        settings: &[SiteSettings],
        metrics: &Arc<Metrics>,
        pool_of: impl Fn(&SiteSettings) -> Option<Arc<Origins>>,
    ) -> anyhow::Result<Self> {
        let mut table = Self {
            sites: Vec::with_capacity(settings.len()),
            exact: HashMap::new(),
            wildcard: HashMap::new(),
            any: None,
        };
        for (i, s) in settings.iter().enumerate() {
            table
                .sites
                .push(Arc::new(Site::new(s, pool_of(s), metrics)?));
            for host in &s.hosts {
                if host == "*" {
                    table.any = Some(i);
                } else if let Some(parent) = host.strip_prefix("*.") {
                    table.wildcard.insert(parent.to_owned(), i);
                } else {
                    table.exact.insert(host.clone(), i);
                }
            }
        }
        Ok(table)
    }

    /// The site for `host` (lower case, no port), if any claims it.
    pub fn route(&self, host: &str) -> Option<&Arc<Site>> {
        let found = self
            .exact
            .get(host)
            .or_else(|| {
                let (_, parent) = host.split_once('.')?;
                self.wildcard.get(parent)
            })
            .or(self.any.as_ref())?;
        self.sites.get(*found)
    }

    pub fn all(&self) -> &[Arc<Site>] {
        &self.sites
    }

    /// Resolves the origin names of every pool not kept yet (before the table serves): a pool
    /// a reload carried over is resolved by its keeper already.
    pub async fn resolve(&self) {
        let new = self.sites.iter().filter(|s| !s.origins.is_kept());
        futures::future::join_all(new.map(|s| s.origins.resolve())).await;
    }

    /// Drops the health series of `self`'s pools (the table a reload replaced) that `next`
    /// does not carry on.
    pub fn retire_for(&self, next: &Sites) {
        let still: std::collections::HashSet<(String, String)> =
            next.sites.iter().flat_map(|s| s.origins.series()).collect();
        for site in &self.sites {
            if !next
                .sites
                .iter()
                .any(|n| Arc::ptr_eq(&n.origins, &site.origins))
            {
                site.origins.retire(&still);
            }
        }
    }

    /// Starts keeping every site's pool (resolved, health-checked) in the background.
    pub fn keep(&self) {
        for site in &self.sites {
            site.origins.keep();
        }
    }
}

/// The site table in force.
pub struct LiveSites(ArcSwap<Sites>);

impl LiveSites {
    pub fn new(sites: Sites) -> Self {
        Self(ArcSwap::from_pointee(sites))
    }

    pub fn current(&self) -> arc_swap::Guard<Arc<Sites>> {
        self.0.load()
    }

    /// Puts `sites` in force for the next requests.
    pub fn swap(&self, sites: Sites) {
        self.0.store(Arc::new(sites));
    }
}

impl RulesByHost for LiveSites {
    fn rules_for(&self, host: &str) -> QueryRules {
        self.current()
            .route(host)
            .map_or(crate::target::KEEP_ALL.clone(), |s| s.keys.rules().clone())
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::settings::OriginSettings;
    use std::time::Duration;

    fn site(name: &str, hosts: &[&str]) -> SiteSettings {
        SiteSettings {
            name: name.to_owned(),
            hosts: hosts.iter().map(|h| (*h).to_owned()).collect(),
            redirect_to_https: false,
            origin: OriginSettings {
                addresses: vec!["127.0.0.1:1".to_owned()],
                dns_refresh: Duration::from_secs(30),
                tls: false,
                sni: None,
                ca_file: None,
                connect_timeout: Duration::from_secs(1),
                read_timeout: Duration::from_secs(1),
                write_timeout: Duration::from_secs(1),
                idle_timeout: Duration::from_secs(1),
                health_check_path: None,
                health_check_interval: Duration::from_secs(1),
            },
            query: crate::target::KEEP_ALL.clone(),
        }
    }

    #[test]
    fn exact_then_wildcard_then_any() {
        let metrics = Arc::new(Metrics::new().expect("metrics"));
        let sites = Sites::new(
            &[
                site("a", &["a.test", "*.a.test"]),
                site("b", &["b.test", "x.a.test"]),
                site("rest", &["*"]),
            ],
            &metrics,
        )
        .expect("sites");
        let name = |host: &str| sites.route(host).map(|s| s.name.as_str());
        assert_eq!(name("a.test"), Some("a"));
        assert_eq!(name("y.a.test"), Some("a"));
        assert_eq!(
            name("x.a.test"),
            Some("b"),
            "an exact name beats a wildcard"
        );
        assert_eq!(name("z.y.a.test"), Some("rest"), "a wildcard is one label");
        assert_eq!(name("127.0.0.1"), Some("rest"));
        let strict = Sites::new(&[site("a", &["a.test"])], &metrics).expect("sites");
        assert!(strict.route("b.test").is_none());
    }
}
