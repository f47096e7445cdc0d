//! Which certificate a TLS client gets: [`Certificates`] picks one per handshake by the name the
//! client asks for (SNI), from a table a reload swaps whole; [`Handshakes`] counts each finished
//! handshake and leaves the session's name and certificate on the connection for the proxy.

use std::any::Any;
use std::collections::HashMap;
use std::fmt;
use std::sync::Arc;

use arc_swap::ArcSwap;
use async_trait::async_trait;
use pingora_core::listeners::TlsAccept;
use pingora_core::protocols::tls::TlsRef;
use rustls::server::{ClientHello, ResolvesServerCert};
use rustls::sign::CertifiedKey;

use super::certs::LoadedCert;

/// The certificates in force, indexed by the names they serve.
#[derive(Debug)]
pub struct CertTable {
    certs: Vec<Arc<LoadedCert>>,
    exact: HashMap<String, usize>,
    /// Wildcards by their parent (`*.example.com` under `example.com`).
    wildcard: HashMap<String, usize>,
}

impl CertTable {
    /// `certs` in config order: the first is the default, and the first to list a name serves it.
    /// `None` when there is none.
    pub fn new(certs: Vec<LoadedCert>) -> Option<Self> {
        if certs.is_empty() {
            return None;
        }
        let mut exact = HashMap::new();
        let mut wildcard = HashMap::new();
        for (i, cert) in certs.iter().enumerate() {
            for name in cert.names.iter() {
                match name.strip_prefix("*.") {
                    Some(parent) => wildcard.entry(parent.to_owned()).or_insert(i),
                    None => exact.entry(name.clone()).or_insert(i),
                };
            }
        }
        Some(Self {
            certs: certs.into_iter().map(Arc::new).collect(),
            exact,
            wildcard,
        })
    }

    /// The certificate for a client asking for `server_name` (lower case), or the default.
    pub fn pick(&self, server_name: Option<&str>) -> &Arc<LoadedCert> {
        let found = server_name.and_then(|name| {
            self.exact.get(name).or_else(|| {
                let (_, parent) = name.split_once('.')?;
                self.wildcard.get(parent)
            })
        });
        &self.certs[found.copied().unwrap_or(0)]
    }

    pub fn certs(&self) -> &[Arc<LoadedCert>] {
        &self.certs
    }
}

/// The TLS listeners' certificate resolver; `swap` installs a reloaded table for the next
/// handshakes (connections already open keep theirs).
pub struct Certificates {
    table: ArcSwap<CertTable>,
}

impl fmt::Debug for Certificates {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Certificates").finish_non_exhaustive()
    }
}

impl Certificates {
    pub fn new(table: CertTable) -> Self {
        Self {
            table: ArcSwap::from_pointee(table),
        }
    }

    pub fn swap(&self, table: CertTable) {
        self.table.store(Arc::new(table));
    }

    pub fn current(&self) -> Arc<CertTable> {
        self.table.load_full()
    }

    /// Sets `gauge{certificate}` to the seconds each certificate in force has left (negative
    /// once expired), and drops the series of certificates no longer in force.
    /// Makes `counter` (handshakes per certificate) show every certificate in force, at zero
    /// until its first handshake.
    pub fn count_from_zero(&self, counter: &prometheus::IntCounterVec) {
        for cert in self.current().certs() {
            counter.with_label_values(&[&cert.label]);
        }
    }

    pub fn export_expiry(&self, gauge: &prometheus::IntGaugeVec) {
        let now = std::time::SystemTime::now();
        gauge.reset();
        for cert in self.current().certs() {
            let left = match cert.not_after.duration_since(now) {
                Ok(d) => i64::try_from(d.as_secs()).unwrap_or(i64::MAX),
                Err(e) => -i64::try_from(e.duration().as_secs()).unwrap_or(i64::MAX),
            };
            gauge.with_label_values(&[&cert.label]).set(left);
        }
    }
}

/// SNI is case-insensitive; clients send lower case, so this rarely allocates.
fn lower(name: &str) -> std::borrow::Cow<'_, str> {
    if name.bytes().any(|b| b.is_ascii_uppercase()) {
        std::borrow::Cow::Owned(name.to_ascii_lowercase())
    } else {
        std::borrow::Cow::Borrowed(name)
    }
}

impl ResolvesServerCert for Certificates {
    fn resolve(&self, hello: ClientHello<'_>) -> Option<Arc<CertifiedKey>> {
        let name = hello.server_name().map(lower);
        let table = self.table.load();
        Some(Arc::clone(&table.pick(name.as_deref()).key))
    }
}

/// What the proxy learns of a TLS connection: the name the client asked for and the names its
/// certificate serves (a request for another host on it is misdirected).
#[derive(Debug)]
pub struct TlsSession {
    pub server_name: Option<String>,
    pub cert_names: Arc<[String]>,
}

/// On TLS, a request for a host other than the one the client named in its handshake (SNI)
/// that the connection's certificate does not serve (RFC 9110 §15.5.20): a client may reuse a
/// connection for another host only when the certificate covers it, so anything else is
/// misdirected (or domain fronting). A client that named no host (by IP, old clients, load
/// balancer probes) made no claim to check.
pub fn misdirected(tls: Option<&pingora_core::protocols::tls::SslDigest>, host: &str) -> bool {
    let Some(tls) = tls.and_then(|d| d.extension.get::<TlsSession>()) else {
        return false;
    };
    tls.server_name
        .as_deref()
        .is_some_and(|sni| sni != host && !super::certs::covers(&tls.cert_names, host))
}

/// Counts handshakes per certificate and records the [`TlsSession`].
pub struct Handshakes {
    pub certificates: Arc<Certificates>,
    /// `outpost_tls_handshakes_total{certificate}`.
    pub counter: prometheus::IntCounterVec,
}

#[async_trait]
impl TlsAccept for Handshakes {
    async fn handshake_complete_callback(
        &self,
        tls: &TlsRef,
    ) -> Option<Arc<dyn Any + Send + Sync>> {
        let server_name = tls.server_name().map(|n| lower(n).into_owned());
        let table = self.certificates.current();
        let cert = table.pick(server_name.as_deref());
        self.counter.with_label_values(&[&cert.label]).inc();
        Some(Arc::new(TlsSession {
            server_name,
            cert_names: Arc::clone(&cert.names),
        }))
    }
}
