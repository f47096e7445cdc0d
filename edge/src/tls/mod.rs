//! TLS towards clients: certificates loaded and checked from their files ([`certs`]), chosen per
//! handshake by SNI ([`resolver`]), on Pingora's rustls listeners.

pub mod certs;
pub mod resolver;

use std::time::SystemTime;

use certs::CertProblem;
use resolver::CertTable;

/// Loads the certificates `files` name (`(cert_file, key_file)`, the default first), checked as
/// the config validation checks them: they were valid then, but may have changed since.
pub fn load_table(files: &[(String, String)]) -> anyhow::Result<CertTable> {
    let now = SystemTime::now();
    let mut loaded = Vec::with_capacity(files.len());
    for (cert, key) in files {
        match certs::load(cert, key, now) {
            Ok(c) => loaded.push(c),
            Err(CertProblem::Cert(why) | CertProblem::Key(why)) => anyhow::bail!(why),
        }
    }
    CertTable::new(loaded).ok_or_else(|| anyhow::anyhow!("no certificate to serve"))
}
