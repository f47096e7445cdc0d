//! Certificates and keys from PEM files, checked before anything serves them: the chain parses,
//! the leaf is valid now, the key is one rustls can sign with and belongs to the leaf. Pingora
//! panics on a file it cannot use; a bad file here is a config error naming its key instead.

use std::sync::Arc;
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use rustls::pki_types::pem::PemObject;
use rustls::pki_types::{CertificateDer, PrivateKeyDer};
use rustls::sign::CertifiedKey;
use x509_parser::extensions::GeneralName;

/// A certificate ready to serve.
#[derive(Debug)]
pub struct LoadedCert {
    /// How metrics and logs name it: its first DNS name.
    pub label: String,
    /// The DNS names it serves, lower case (`*.example.com` wildcards as listed).
    pub names: Arc<[String]>,
    pub not_after: SystemTime,
    pub key: Arc<CertifiedKey>,
}

impl LoadedCert {
    /// Whether it serves `host` (lower case): a name equal to it, or a wildcard for its parent.
    pub fn covers(&self, host: &str) -> bool {
        covers(&self.names, host)
    }
}

/// What is wrong, and with which of the two files.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum CertProblem {
    Cert(String),
    Key(String),
}

/// Whether `names` (a certificate's) serve `host`: exactly, or by a wildcard that stands for
/// its first label (RFC 6125 §6.4.3: one label, the leftmost). A wildcard host (`*.example.com`,
/// a site's pattern) is served only by the same wildcard.
pub fn covers(names: &[String], host: &str) -> bool {
    names.iter().any(|n| {
        n == host
            || n.strip_prefix("*.").is_some_and(|parent| {
                host.split_once('.').is_some_and(|(label, rest)| {
                    rest == parent && !label.is_empty() && label != "*"
                })
            })
    })
}

/// Loads `cert_file` and `key_file` and checks them as of `now`.
pub fn load(cert_file: &str, key_file: &str, now: SystemTime) -> Result<LoadedCert, CertProblem> {
    let chain = CertificateDer::pem_file_iter(cert_file)
        .map_err(|e| CertProblem::Cert(format!("cannot read {cert_file}: {e}")))?
        .collect::<Result<Vec<_>, _>>()
        .map_err(|e| CertProblem::Cert(format!("{cert_file} is not valid PEM: {e}")))?;
    let Some(leaf) = chain.first() else {
        return Err(CertProblem::Cert(format!(
            "{cert_file} holds no certificate"
        )));
    };
    let (names, not_before, not_after) =
        inspect(leaf).map_err(|e| CertProblem::Cert(format!("{cert_file}: {e}")))?;
    if now < not_before {
        return Err(CertProblem::Cert(format!(
            "{cert_file} is not valid before {}",
            httpdate::fmt_http_date(not_before)
        )));
    }
    if now >= not_after {
        return Err(CertProblem::Cert(format!(
            "{cert_file} expired on {}",
            httpdate::fmt_http_date(not_after)
        )));
    }
    let Some(label) = names.first().cloned() else {
        return Err(CertProblem::Cert(format!(
            "{cert_file} names no DNS host (subjectAltName)"
        )));
    };
    let key = PrivateKeyDer::from_pem_file(key_file)
        .map_err(|e| CertProblem::Key(format!("cannot read a private key from {key_file}: {e}")))?;
    let signer = rustls::crypto::ring::sign::any_supported_type(&key)
        .map_err(|e| CertProblem::Key(format!("{key_file}: unusable key: {e}")))?;
    let certified = CertifiedKey::new(chain, signer);
    certified.keys_match().map_err(|_| {
        CertProblem::Key(format!(
            "{key_file} is not the key of the certificate in {cert_file}"
        ))
    })?;
    Ok(LoadedCert {
        label,
        names: names.into(),
        not_after,
        key: Arc::new(certified),
    })
}

/// Loads a PEM file of authorities (to verify origins with).
pub fn load_authorities(path: &str) -> Result<Vec<CertificateDer<'static>>, String> {
    let certs = CertificateDer::pem_file_iter(path)
        .map_err(|e| format!("cannot read {path}: {e}"))?
        .collect::<Result<Vec<_>, _>>()
        .map_err(|e| format!("{path} is not valid PEM: {e}"))?;
    if certs.is_empty() {
        return Err(format!("{path} holds no certificate"));
    }
    for cert in &certs {
        x509_parser::parse_x509_certificate(cert)
            .map_err(|e| format!("{path}: a certificate does not parse: {e}"))?;
    }
    Ok(certs)
}

/// The leaf's DNS names (lower case) and validity.
fn inspect(der: &CertificateDer<'_>) -> Result<(Vec<String>, SystemTime, SystemTime), String> {
    let (_, cert) = x509_parser::parse_x509_certificate(der)
        .map_err(|e| format!("the certificate does not parse: {e}"))?;
    let mut names = Vec::new();
    if let Ok(Some(san)) = cert.subject_alternative_name() {
        for name in &san.value.general_names {
            if let GeneralName::DNSName(n) = name {
                names.push(n.trim_end_matches('.').to_ascii_lowercase());
            }
        }
    }
    let validity = cert.validity();
    Ok((
        names,
        at(validity.not_before.timestamp()),
        at(validity.not_after.timestamp()),
    ))
}

fn at(unix: i64) -> SystemTime {
    match u64::try_from(unix) {
        Ok(secs) => UNIX_EPOCH + Duration::from_secs(secs),
        Err(_) => UNIX_EPOCH,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn names(list: &[&str]) -> Vec<String> {
        list.iter().map(|n| (*n).to_owned()).collect()
    }

    #[test]
    fn wildcards_stand_for_one_leftmost_label() {
        let n = names(&["example.com", "*.b.example.com"]);
        assert!(covers(&n, "example.com"));
        assert!(covers(&n, "x.b.example.com"));
        assert!(covers(&n, "*.b.example.com"), "the same wildcard");
        assert!(!covers(&n, "b.example.com"));
        assert!(!covers(&n, "y.x.b.example.com"), "one label only");
        assert!(!covers(&n, "www.example.com"));
    }

    /// Writes a self-signed certificate for `names` (with `validity` if given) and its key, or
    /// another key when `wrong_key`.
    fn write_cert(
        dir: &std::path::Path,
        names: &[&str],
        validity: Option<(i32, i32)>,
        wrong_key: bool,
    ) -> (String, String) {
        let names: Vec<String> = names.iter().map(|n| (*n).to_owned()).collect();
        let mut params = rcgen::CertificateParams::new(names).expect("params");
        if let Some((from, to)) = validity {
            params.not_before = rcgen::date_time_ymd(from, 1, 1);
            params.not_after = rcgen::date_time_ymd(to, 1, 1);
        }
        let key = rcgen::KeyPair::generate().expect("key");
        let cert = params.self_signed(&key).expect("cert");
        let written_key = if wrong_key {
            rcgen::KeyPair::generate().expect("other key")
        } else {
            key
        };
        let (c, k) = (dir.join("c.pem"), dir.join("k.pem"));
        std::fs::write(&c, cert.pem()).expect("write cert");
        std::fs::write(&k, written_key.serialize_pem()).expect("write key");
        (c.display().to_string(), k.display().to_string())
    }

    #[test]
    fn a_good_pair_loads_with_its_names() {
        let dir = tempfile::tempdir().expect("dir");
        let (c, k) = write_cert(dir.path(), &["A.test", "*.b.test"], None, false);
        let cert = load(&c, &k, SystemTime::now()).expect("loads");
        assert_eq!(cert.label, "a.test");
        assert!(cert.covers("a.test") && cert.covers("x.b.test") && !cert.covers("b.test"));
    }

    #[test]
    fn every_unusable_file_is_refused_with_the_reason() {
        let dir = tempfile::tempdir().expect("dir");
        let now = SystemTime::now();
        let (c, k) = write_cert(dir.path(), &["a.test"], Some((2020, 2021)), false);
        assert!(
            matches!(load(&c, &k, now), Err(CertProblem::Cert(m)) if m.contains("expired")),
            "expired"
        );
        let (c, k) = write_cert(dir.path(), &["a.test"], Some((2090, 2091)), false);
        assert!(
            matches!(load(&c, &k, now), Err(CertProblem::Cert(m)) if m.contains("not valid before")),
            "not yet valid"
        );
        let (c, k) = write_cert(dir.path(), &["a.test"], None, true);
        assert!(
            matches!(load(&c, &k, now), Err(CertProblem::Key(m)) if m.contains("is not the key")),
            "another certificate's key"
        );
        let (c, k) = write_cert(dir.path(), &["127.0.0.1"], None, false);
        assert!(
            matches!(load(&c, &k, now), Err(CertProblem::Cert(m)) if m.contains("names no DNS host")),
            "no DNS name"
        );
        let (c, _) = write_cert(dir.path(), &["a.test"], None, false);
        assert!(
            matches!(load(&c, &c, now), Err(CertProblem::Key(_))),
            "a certificate where the key should be"
        );
        std::fs::write(&c, "not pem").expect("write");
        assert!(
            matches!(load(&c, &k, now), Err(CertProblem::Cert(_))),
            "garbage"
        );
    }

    #[test]
    fn missing_files_name_the_file() {
        let err = load(
            "/nonexistent/c.pem",
            "/nonexistent/k.pem",
            SystemTime::now(),
        )
        .expect_err("no file");
        assert!(
            matches!(&err, CertProblem::Cert(m) if m.contains("/nonexistent/c.pem")),
            "{err:?}"
        );
    }
}
