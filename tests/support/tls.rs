//! TLS for end-to-end tests, on real sockets: certificate authorities and leaves made in-process
//! (rcgen, ring) and written to files a config can name; a TLS terminator that puts a plain-TCP
//! server (the real origin) behind HTTPS; HTTPS and h2c clients; and a raw handshake that
//! reports which certificate a server chose for an SNI without judging it.
//!
//! Every HTTPS client here trusts only the CA it is given, never the system's roots, so a test
//! that passes has proved the chain verifies. Listeners bind `127.0.0.1:0` and keep the socket (no
//! window in which another test could take the port).

use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use anyhow::Context;
use rcgen::{
    BasicConstraints, CertificateParams, DistinguishedName, DnType, ExtendedKeyUsagePurpose, IsCa,
    Issuer, KeyPair, KeyUsagePurpose,
};
use rustls::pki_types::pem::PemObject;
use rustls::pki_types::{CertificateDer, PrivateKeyDer, ServerName};
use time::OffsetDateTime;
use tokio::net::{TcpListener, TcpStream};
use tokio::task::{JoinHandle, JoinSet};

/// How long a leaf made by [`TestCa::leaf`] stays valid: far beyond any test run.
const LEAF_VALIDITY: time::Duration = time::Duration::days(30);

/// How far back a leaf's validity starts, so a clock a little behind still accepts it.
const BACKDATE: time::Duration = time::Duration::hours(1);

/// How long [`handshake_info`] waits for the server, so a silent server fails a test instead of
/// hanging it.
const HANDSHAKE_TIMEOUT: Duration = Duration::from_secs(10);

/// A test certificate authority and the files it wrote.
///
/// Two `TestCa::new()` are two unrelated CAs: a leaf of one does not verify against the other.
/// Its files go with it on drop, so keep it alive while a process may (re)read them.
pub struct TestCa {
    /// Signs the leaves.
    issuer: Issuer<'static, KeyPair>,
    ca_pem: String,
    /// Holds `ca.pem` and every leaf's `.pem` and `.key`; removed on drop.
    dir: tempfile::TempDir,
}

/// A certificate and its key, as PEM files and as text.
#[derive(Clone, Debug)]
pub struct Leaf {
    /// The leaf certificate alone (no chain: the CA is the trust anchor, so a server that sends
    /// the leaf alone is verifiable).
    pub cert_path: PathBuf,
    /// Its private key: ECDSA P-256, PKCS#8 PEM.
    pub key_path: PathBuf,
    pub cert_pem: String,
    pub key_pem: String,
}

impl Default for TestCa {
    fn default() -> Self {
        Self::new()
    }
}

impl TestCa {
    /// A new self-signed CA, its certificate written as `ca.pem` in a temporary directory of its
    /// own. It is valid from a year ago to ten years ahead, so any leaf window a test picks lies
    /// inside it.
    pub fn new() -> TestCa {
        let now = OffsetDateTime::now_utc();
        // A name of its own: a verifier looks for a leaf's issuer by name, so two CAs sharing one
        // would fail a foreign leaf as a bad signature rather than as an unknown issuer.
        static SERIAL: AtomicUsize = AtomicUsize::new(1);
        let n = SERIAL.fetch_add(1, Ordering::Relaxed);
        let mut params = CertificateParams::default();
        params.distinguished_name = DistinguishedName::new();
        params.distinguished_name.push(
            DnType::CommonName,
            format!("Outpost test CA {n} (pid {})", std::process::id()),
        );
        params.is_ca = IsCa::Ca(BasicConstraints::Unconstrained);
        // webpki refuses to chain to a CA certificate whose key usage does not allow signing.
        params.key_usages = vec![
            KeyUsagePurpose::KeyCertSign,
            KeyUsagePurpose::CrlSign,
            KeyUsagePurpose::DigitalSignature,
        ];
        params.not_before = now - time::Duration::days(365);
        params.not_after = now + time::Duration::days(3650);
        let key = KeyPair::generate().expect("generating the test CA key");
        let cert = params.self_signed(&key).expect("self-signing the test CA");
        let dir = tempfile::tempdir().expect("creating the test CA's directory");
        let ca_pem = cert.pem();
        std::fs::write(dir.path().join("ca.pem"), &ca_pem).expect("writing ca.pem");
        TestCa {
            issuer: Issuer::new(params, key),
            ca_pem,
            dir,
        }
    }

    /// The directory holding `ca.pem` and the leaves' files.
    pub fn dir(&self) -> &Path {
        self.dir.path()
    }

    /// The CA certificate, PEM.
    pub fn ca_pem_path(&self) -> PathBuf {
        self.dir.path().join("ca.pem")
    }

    pub fn ca_pem(&self) -> Vec<u8> {
        self.ca_pem.as_bytes().to_vec()
    }

    /// A leaf for `names`, signed by this CA, valid from an hour ago for 30 days; written as
    /// `<file_stem>.pem` (the leaf alone) and `<file_stem>.key` (PKCS#8 PEM) in [`Self::dir`],
    /// replacing a leaf of the same stem.
    ///
    /// Each name becomes a SAN: an IP literal (`127.0.0.1`, `::1`) an IP address SAN, anything
    /// else a DNS name, wildcards (`*.b.test`) included. The first name is also the subject CN,
    /// for people reading the certificate; verifiers only look at the SANs.
    pub fn leaf(&self, file_stem: &str, names: &[&str]) -> Leaf {
        let now = OffsetDateTime::now_utc();
        self.leaf_valid(file_stem, names, now - BACKDATE, now + LEAF_VALIDITY)
    }

    /// [`Self::leaf`] with an explicit validity window: `not_after` in the past makes an expired
    /// certificate, `not_before` in the future one not yet valid.
    pub fn leaf_valid(
        &self,
        file_stem: &str,
        names: &[&str],
        not_before: OffsetDateTime,
        not_after: OffsetDateTime,
    ) -> Leaf {
        assert_ne!(file_stem, "ca", "the stem `ca` is the CA's own file");
        assert!(!names.is_empty(), "a leaf needs at least one name");
        let mut params =
            CertificateParams::new(names.iter().map(|n| (*n).to_owned()).collect::<Vec<_>>())
                .unwrap_or_else(|e| panic!("a leaf for {names:?}: {e}"));
        params.distinguished_name = DistinguishedName::new();
        params.distinguished_name.push(DnType::CommonName, names[0]);
        params.is_ca = IsCa::ExplicitNoCa;
        params.key_usages = vec![KeyUsagePurpose::DigitalSignature];
        params.extended_key_usages = vec![ExtendedKeyUsagePurpose::ServerAuth];
        params.use_authority_key_identifier_extension = true;
        params.not_before = not_before;
        params.not_after = not_after;
        let key = KeyPair::generate().expect("generating a leaf key");
        let cert = params
            .signed_by(&key, &self.issuer)
            .unwrap_or_else(|e| panic!("signing a leaf for {names:?}: {e}"));
        let leaf = Leaf {
            cert_path: self.dir.path().join(format!("{file_stem}.pem")),
            key_path: self.dir.path().join(format!("{file_stem}.key")),
            cert_pem: cert.pem(),
            key_pem: key.serialize_pem(),
        };
        std::fs::write(&leaf.cert_path, &leaf.cert_pem).expect("writing a leaf certificate");
        std::fs::write(&leaf.key_path, &leaf.key_pem).expect("writing a leaf key");
        leaf
    }
}

impl Leaf {
    /// The certificate and key as rustls takes them.
    fn rustls_parts(&self) -> (Vec<CertificateDer<'static>>, PrivateKeyDer<'static>) {
        let certs = CertificateDer::pem_slice_iter(self.cert_pem.as_bytes())
            .collect::<Result<Vec<_>, _>>()
            .expect("parsing the leaf certificate PEM");
        let key =
            PrivateKeyDer::from_pem_slice(self.key_pem.as_bytes()).expect("parsing the leaf key");
        (certs, key)
    }
}

/// What a [`TlsTerminator`] saw of its handshakes.
#[derive(Default)]
struct Handshakes {
    completed: AtomicUsize,
    failed: AtomicUsize,
    /// The SNI of each handshake that got as far as a ClientHello, in order (`None`: none sent).
    server_names: Mutex<Vec<Option<String>>>,
}

/// A TLS terminator in front of a plain-TCP server: accepts TLS on `127.0.0.1:<port 0>` with one
/// leaf (ALPN `http/1.1` only, since the bytes go to the backend as they are) and pipes each
/// connection's bytes to `backend`. Makes the real origin binary reachable over HTTPS.
///
/// Stops on drop: the accept task is aborted, and with it every connection it spawned.
pub struct TlsTerminator {
    pub addr: SocketAddr,
    handshakes: Arc<Handshakes>,
    accept: JoinHandle<()>,
}

impl TlsTerminator {
    /// Starts listening at once; must run inside a tokio runtime.
    pub async fn start(leaf: &Leaf, backend: SocketAddr) -> TlsTerminator {
        outpost_common::tls::install_crypto_provider();
        let (certs, key) = leaf.rustls_parts();
        let mut config = rustls::ServerConfig::builder()
            .with_no_client_auth()
            .with_single_cert(certs, key)
            .expect("a TLS server config for the leaf");
        config.alpn_protocols = vec![b"http/1.1".to_vec()];
        let acceptor = tokio_rustls::TlsAcceptor::from(Arc::new(config));
        let listener = TcpListener::bind("127.0.0.1:0")
            .await
            .expect("binding the TLS terminator");
        let addr = listener.local_addr().expect("the TLS terminator's address");
        let handshakes = Arc::new(Handshakes::default());
        let seen = Arc::clone(&handshakes);
        let accept = tokio::spawn(async move {
            // Owned here so that aborting this task drops it, which aborts every connection.
            let mut connections = JoinSet::new();
            while let Ok((client, _)) = listener.accept().await {
                while connections.try_join_next().is_some() {}
                connections.spawn(terminate(
                    acceptor.clone(),
                    client,
                    backend,
                    Arc::clone(&seen),
                ));
            }
        });
        TlsTerminator {
            addr,
            handshakes,
            accept,
        }
    }

    /// Handshakes completed so far.
    pub fn handshakes(&self) -> usize {
        self.handshakes.completed.load(Ordering::SeqCst)
    }

    /// Handshakes that failed: a client refusing the certificate, or offering no common ALPN
    /// protocol or version.
    pub fn failed_handshakes(&self) -> usize {
        self.handshakes.failed.load(Ordering::SeqCst)
    }

    /// The SNI each client sent, in order (`None`: it sent none), to check what a client asked
    /// for, e.g. the edge connecting to an HTTPS origin.
    pub fn server_names(&self) -> Vec<Option<String>> {
        self.handshakes
            .server_names
            .lock()
            .map(|n| n.clone())
            .unwrap_or_default()
    }
}

impl Drop for TlsTerminator {
    fn drop(&mut self) {
        self.accept.abort();
    }
}

/// One terminated connection: the handshake, then bytes both ways until either side closes.
async fn terminate(
    acceptor: tokio_rustls::TlsAcceptor,
    client: TcpStream,
    backend: SocketAddr,
    seen: Arc<Handshakes>,
) {
    // Lazy, to record the SNI of a handshake that then fails (a client rejecting our leaf).
    let start = tokio_rustls::LazyConfigAcceptor::new(rustls::server::Acceptor::default(), client);
    let Ok(start) = start.await else {
        seen.failed.fetch_add(1, Ordering::SeqCst);
        return;
    };
    let sni = start.client_hello().server_name().map(str::to_owned);
    if let Ok(mut names) = seen.server_names.lock() {
        names.push(sni);
    }
    let Ok(mut tls) = start.into_stream(acceptor.config().clone()).await else {
        seen.failed.fetch_add(1, Ordering::SeqCst);
        return;
    };
    seen.completed.fetch_add(1, Ordering::SeqCst);
    let Ok(mut plain) = TcpStream::connect(backend).await else {
        return;
    };
    let _ = tokio::io::copy_bidirectional(&mut tls, &mut plain).await;
}

/// Which HTTP an [`https_client`] speaks.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum HttpVersion {
    /// HTTP/1.1 only: ALPN offers `http/1.1` alone.
    Http1,
    /// HTTP/2 only: ALPN offers `h2` alone, so a server without h2 fails the handshake rather
    /// than quietly serving HTTP/1.1.
    Http2,
    /// ALPN offers `h2` then `http/1.1` and the server picks, as browsers do.
    Negotiated,
}

/// An HTTPS client that trusts `ca_pem` (one or more PEM certificates) and nothing else, not the
/// system's roots, and reaches each `(host, addr)` of `resolve` at `addr`, like
/// `curl --resolve`. A port written in the URL wins over the one in `addr`, so write URLs as
/// `https://{host}:{addr.port()}/`.
///
/// Same conventions as [`crate::http_client`] (no redirects, no proxy, 60 s timeout), and each
/// response carries `reqwest::tls::TlsInfo` (the certificate the server sent).
pub fn https_client(
    ca_pem: &[u8],
    resolve: &[(&str, SocketAddr)],
    version: HttpVersion,
) -> reqwest::Client {
    outpost_common::tls::install_crypto_provider();
    let roots = reqwest::Certificate::from_pem_bundle(ca_pem).expect("parsing the CA PEM");
    let mut builder = reqwest::Client::builder()
        .redirect(reqwest::redirect::Policy::none())
        .no_proxy()
        .timeout(Duration::from_secs(60))
        // Only these roots: reqwest otherwise adds them to the platform verifier's.
        .tls_certs_only(roots)
        .tls_info(true);
    for (host, addr) in resolve {
        builder = builder.resolve(host, *addr);
    }
    builder = match version {
        HttpVersion::Http1 => builder.http1_only(),
        // Over TLS, reqwest turns prior knowledge into ALPN `h2` alone plus an h2-only pool.
        HttpVersion::Http2 => builder.http2_prior_knowledge(),
        HttpVersion::Negotiated => builder,
    };
    builder
        .build()
        .unwrap_or_else(|e| panic!("building the test HTTPS client: {e}"))
}

/// An h2c client: HTTP/2 over cleartext with prior knowledge (no `Upgrade` dance), for
/// `http://` URLs. Same conventions as [`crate::http_client`].
pub fn h2c_client() -> reqwest::Client {
    outpost_common::tls::install_crypto_provider();
    reqwest::Client::builder()
        .redirect(reqwest::redirect::Policy::none())
        .no_proxy()
        .timeout(Duration::from_secs(60))
        .http2_prior_knowledge()
        .build()
        .unwrap_or_else(|e| panic!("building the test h2c client: {e}"))
}

/// What a server presented in one handshake.
#[derive(Clone, Debug)]
pub struct HandshakeInfo {
    /// The leaf certificate, DER.
    pub leaf_der: Vec<u8>,
    /// Its DNS subject alternative names, in certificate order.
    pub leaf_names: Vec<String>,
    /// The protocol the server chose by ALPN, if any.
    pub alpn: Option<Vec<u8>>,
    /// `TLSv1.3` or `TLSv1.2`.
    pub version: String,
}

/// Completes one TLS handshake with `addr`, sending SNI `server_name` (`None`: no SNI; an IP
/// literal also sends none, as TLS forbids IPs in SNI) and offering `alpn`, and reports the
/// certificate the server chose WITHOUT verifying it: a test wants to see which certificate an
/// SNI got, even a wrong or expired one. An error when the server refuses the handshake (say,
/// no certificate for that name) or does not answer within 10 s.
pub async fn handshake_info(
    addr: SocketAddr,
    server_name: Option<&str>,
    alpn: &[&[u8]],
) -> anyhow::Result<HandshakeInfo> {
    outpost_common::tls::install_crypto_provider();
    let provider = rustls::crypto::CryptoProvider::get_default()
        .context("no rustls crypto provider installed")?
        .clone();
    let mut config = rustls::ClientConfig::builder()
        .dangerous()
        .with_custom_certificate_verifier(Arc::new(AcceptAnyCertificate(provider)))
        .with_no_client_auth();
    config.alpn_protocols = alpn.iter().map(|p| p.to_vec()).collect();
    // rustls sends no SNI for an IP-address server name.
    let name = match server_name {
        Some(name) => ServerName::try_from(name.to_owned())
            .with_context(|| format!("{name:?} is not a valid server name"))?,
        None => ServerName::IpAddress(addr.ip().into()),
    };
    let connector = tokio_rustls::TlsConnector::from(Arc::new(config));
    let tls = tokio::time::timeout(HANDSHAKE_TIMEOUT, async {
        let tcp = TcpStream::connect(addr)
            .await
            .with_context(|| format!("connecting to {addr}"))?;
        connector
            .connect(name, tcp)
            .await
            .with_context(|| format!("TLS handshake with {addr} (SNI {server_name:?})"))
    })
    .await
    .with_context(|| format!("no TLS handshake with {addr} within {HANDSHAKE_TIMEOUT:?}"))??;
    let (_, session) = tls.get_ref();
    let leaf = session
        .peer_certificates()
        .and_then(|c| c.first())
        .context("the server sent no certificate")?
        .to_vec();
    let version = match session.protocol_version() {
        Some(rustls::ProtocolVersion::TLSv1_3) => "TLSv1.3".to_owned(),
        Some(rustls::ProtocolVersion::TLSv1_2) => "TLSv1.2".to_owned(),
        other => format!("{other:?}"),
    };
    Ok(HandshakeInfo {
        leaf_names: dns_names(&leaf)?,
        alpn: session.alpn_protocol().map(<[u8]>::to_vec),
        version,
        leaf_der: leaf,
    })
}

/// The DNS names among a certificate's subject alternative names.
pub fn dns_names(der: &[u8]) -> anyhow::Result<Vec<String>> {
    use x509_parser::extensions::GeneralName;
    let (_, cert) = x509_parser::parse_x509_certificate(der).context("parsing a certificate")?;
    let Some(san) = cert
        .subject_alternative_name()
        .context("reading the subject alternative names")?
    else {
        return Ok(Vec::new());
    };
    Ok(san
        .value
        .general_names
        .iter()
        .filter_map(|n| match n {
            GeneralName::DNSName(name) => Some((*name).to_owned()),
            _ => None,
        })
        .collect())
}

/// Accepts any server certificate (for [`handshake_info`], which reports rather than judges)
/// but still checks the handshake signatures, so the server did hold the certificate's key.
#[derive(Debug)]
struct AcceptAnyCertificate(Arc<rustls::crypto::CryptoProvider>);

impl rustls::client::danger::ServerCertVerifier for AcceptAnyCertificate {
    fn verify_server_cert(
        &self,
        _end_entity: &CertificateDer<'_>,
        _intermediates: &[CertificateDer<'_>],
        _server_name: &ServerName<'_>,
        _ocsp_response: &[u8],
        _now: rustls::pki_types::UnixTime,
    ) -> Result<rustls::client::danger::ServerCertVerified, rustls::Error> {
        Ok(rustls::client::danger::ServerCertVerified::assertion())
    }

    fn verify_tls12_signature(
        &self,
        message: &[u8],
        cert: &CertificateDer<'_>,
        dss: &rustls::DigitallySignedStruct,
    ) -> Result<rustls::client::danger::HandshakeSignatureValid, rustls::Error> {
        rustls::crypto::verify_tls12_signature(
            message,
            cert,
            dss,
            &self.0.signature_verification_algorithms,
        )
    }

    fn verify_tls13_signature(
        &self,
        message: &[u8],
        cert: &CertificateDer<'_>,
        dss: &rustls::DigitallySignedStruct,
    ) -> Result<rustls::client::danger::HandshakeSignatureValid, rustls::Error> {
        rustls::crypto::verify_tls13_signature(
            message,
            cert,
            dss,
            &self.0.signature_verification_algorithms,
        )
    }

    fn supported_verify_schemes(&self) -> Vec<rustls::SignatureScheme> {
        self.0.signature_verification_algorithms.supported_schemes()
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use tokio::io::{AsyncReadExt, AsyncWriteExt};

    /// A plain HTTP/1.1 server that answers every request on a connection with `200 hello`.
    async fn hello_server() -> (SocketAddr, JoinHandle<()>) {
        let listener = TcpListener::bind("127.0.0.1:0").await.expect("bind");
        let addr = listener.local_addr().expect("addr");
        let task = tokio::spawn(async move {
            while let Ok((mut s, _)) = listener.accept().await {
                tokio::spawn(async move {
                    let mut buf = Vec::new();
                    let mut chunk = [0u8; 4096];
                    loop {
                        // Requests here are GETs with no body: one per blank line.
                        while let Some(end) = buf.windows(4).position(|w| w == b"\r\n\r\n") {
                            buf.drain(..end + 4);
                            let reply = "HTTP/1.1 200 OK\r\ncontent-length: 5\r\n\r\nhello";
                            if s.write_all(reply.as_bytes()).await.is_err() {
                                return;
                            }
                        }
                        match s.read(&mut chunk).await {
                            Ok(0) | Err(_) => return,
                            Ok(n) => buf.extend_from_slice(&chunk[..n]),
                        }
                    }
                });
            }
        });
        (addr, task)
    }

    /// An HTTP/2 server over TLS (ALPN `h2` only) with `leaf`, or cleartext (h2c) without one,
    /// answering every stream with `200` and the protocol it saw.
    async fn h2_server(leaf: Option<&Leaf>) -> (SocketAddr, JoinHandle<()>) {
        let acceptor = leaf.map(|leaf| {
            let (certs, key) = leaf.rustls_parts();
            let mut config = rustls::ServerConfig::builder()
                .with_no_client_auth()
                .with_single_cert(certs, key)
                .expect("server config");
            config.alpn_protocols = vec![b"h2".to_vec()];
            tokio_rustls::TlsAcceptor::from(Arc::new(config))
        });
        let listener = TcpListener::bind("127.0.0.1:0").await.expect("bind");
        let addr = listener.local_addr().expect("addr");
        let task = tokio::spawn(async move {
            while let Ok((tcp, _)) = listener.accept().await {
                let acceptor = acceptor.clone();
                tokio::spawn(async move {
                    match acceptor {
                        Some(a) => {
                            if let Ok(tls) = a.accept(tcp).await {
                                serve_h2(tls).await;
                            }
                        }
                        None => serve_h2(tcp).await,
                    }
                });
            }
        });
        (addr, task)
    }

    async fn serve_h2<T>(io: T)
    where
        T: tokio::io::AsyncRead + tokio::io::AsyncWrite + Unpin,
    {
        let Ok(mut conn) = h2::server::handshake(io).await else {
            return;
        };
        while let Some(Ok((request, mut respond))) = conn.accept().await {
            let body = format!("{:?}", request.version());
            let response = http::Response::builder()
                .status(200)
                .body(())
                .expect("response");
            if let Ok(mut stream) = respond.send_response(response, false) {
                let _ = stream.send_data(body.into(), true);
            }
        }
    }

    /// The error and its causes on one line, to look for rustls's reason.
    fn chain(e: &(dyn std::error::Error + 'static)) -> String {
        let mut out = e.to_string();
        let mut source = e.source();
        while let Some(s) = source {
            out.push_str(": ");
            out.push_str(&s.to_string());
            source = s.source();
        }
        out
    }

    #[tokio::test]
    async fn https_through_the_terminator_over_http1() {
        let ca = TestCa::new();
        let leaf = ca.leaf("a", &["a.test", "*.b.test", "127.0.0.1"]);
        assert!(leaf.cert_path.exists() && leaf.key_path.exists());
        assert!(ca.ca_pem_path().exists());
        assert!(leaf.key_pem.starts_with("-----BEGIN PRIVATE KEY-----"));
        let (backend, _server) = hello_server().await;
        let tls = TlsTerminator::start(&leaf, backend).await;
        let port = tls.addr.port();

        let client = https_client(
            &ca.ca_pem(),
            &[("a.test", tls.addr), ("x.b.test", tls.addr)],
            HttpVersion::Http1,
        );
        for url in [
            format!("https://a.test:{port}/"),
            format!("https://x.b.test:{port}/"),
            format!("https://127.0.0.1:{port}/"),
        ] {
            let response = client.get(&url).send().await.expect(&url);
            assert_eq!(response.status(), 200);
            assert_eq!(response.version(), http::Version::HTTP_11);
            let info = response
                .extensions()
                .get::<reqwest::tls::TlsInfo>()
                .expect("TLS info");
            let names =
                dns_names(info.peer_certificate().expect("peer certificate")).expect("names");
            assert_eq!(names, ["a.test", "*.b.test"]);
            assert_eq!(response.text().await.expect("body"), "hello");
        }
        // The client pools one connection per host name.
        assert_eq!(tls.handshakes(), 3);
        assert_eq!(
            tls.server_names(),
            [Some("a.test".to_owned()), Some("x.b.test".to_owned()), None]
        );

        // A name the leaf does not carry.
        let client = https_client(&ca.ca_pem(), &[("c.test", tls.addr)], HttpVersion::Http1);
        let err = client
            .get(format!("https://c.test:{port}/"))
            .send()
            .await
            .expect_err("a name outside the leaf must be refused");
        assert!(
            chain(&err).contains("not valid for name"),
            "{}",
            chain(&err)
        );
    }

    #[tokio::test]
    async fn an_expired_leaf_is_refused() {
        let ca = TestCa::new();
        let now = OffsetDateTime::now_utc();
        let leaf = ca.leaf_valid(
            "old",
            &["old.test"],
            now - time::Duration::days(10),
            now - time::Duration::days(1),
        );
        let (backend, _server) = hello_server().await;
        let tls = TlsTerminator::start(&leaf, backend).await;
        let client = https_client(&ca.ca_pem(), &[("old.test", tls.addr)], HttpVersion::Http1);
        let err = client
            .get(format!("https://old.test:{}/", tls.addr.port()))
            .send()
            .await
            .expect_err("an expired certificate must be refused");
        assert!(
            chain(&err).contains("certificate expired"),
            "{}",
            chain(&err)
        );
        // The client's alert reaches the terminator's task a moment after the client gave up.
        crate::wait::eventually(Duration::from_secs(5), "the failed handshake", || async {
            (tls.failed_handshakes() == 1).then_some(())
        })
        .await
        .expect("the terminator saw the handshake fail");
        assert_eq!(tls.handshakes(), 0);

        // handshake_info shows it all the same.
        let info = handshake_info(tls.addr, Some("old.test"), &[b"http/1.1"])
            .await
            .expect("handshake");
        assert_eq!(info.leaf_names, ["old.test"]);
    }

    #[tokio::test]
    async fn a_client_trusting_another_ca_refuses_the_leaf() {
        let ca = TestCa::new();
        let other = TestCa::new();
        let leaf = ca.leaf("a", &["a.test"]);
        let (backend, _server) = hello_server().await;
        let tls = TlsTerminator::start(&leaf, backend).await;
        let client = https_client(&other.ca_pem(), &[("a.test", tls.addr)], HttpVersion::Http1);
        let err = client
            .get(format!("https://a.test:{}/", tls.addr.port()))
            .send()
            .await
            .expect_err("a leaf of another CA must be refused");
        assert!(chain(&err).contains("UnknownIssuer"), "{}", chain(&err));
    }

    #[tokio::test]
    async fn http2_is_forced_over_tls_and_h2c_works() {
        let ca = TestCa::new();
        let leaf = ca.leaf("h2", &["h2.test"]);
        let (addr, _server) = h2_server(Some(&leaf)).await;
        let url = format!("https://h2.test:{}/", addr.port());
        for version in [HttpVersion::Http2, HttpVersion::Negotiated] {
            let client = https_client(&ca.ca_pem(), &[("h2.test", addr)], version);
            let response = client.get(&url).send().await.expect("h2 GET");
            assert_eq!(response.version(), http::Version::HTTP_2, "{version:?}");
            assert_eq!(response.text().await.expect("body"), "HTTP/2.0");
        }

        // Forced h2 does not fall back to HTTP/1.1 against a server without h2.
        let (backend, _server) = hello_server().await;
        let tls = TlsTerminator::start(&leaf, backend).await;
        let client = https_client(&ca.ca_pem(), &[("h2.test", tls.addr)], HttpVersion::Http2);
        client
            .get(format!("https://h2.test:{}/", tls.addr.port()))
            .send()
            .await
            .expect_err("no h2 at the terminator");
        // While a negotiating client settles for HTTP/1.1 there.
        let client = https_client(
            &ca.ca_pem(),
            &[("h2.test", tls.addr)],
            HttpVersion::Negotiated,
        );
        let response = client
            .get(format!("https://h2.test:{}/", tls.addr.port()))
            .send()
            .await
            .expect("negotiated GET");
        assert_eq!(response.version(), http::Version::HTTP_11);

        let (addr, _server) = h2_server(None).await;
        let response = h2c_client()
            .get(format!("http://{addr}/"))
            .send()
            .await
            .expect("h2c GET");
        assert_eq!(response.version(), http::Version::HTTP_2);
    }

    #[tokio::test]
    async fn handshake_info_reports_names_alpn_and_sends_no_sni_when_asked() {
        let ca = TestCa::new();
        let leaf = ca.leaf("multi", &["a.test", "*.b.test", "127.0.0.1"]);
        let (backend, _server) = hello_server().await;
        let tls = TlsTerminator::start(&leaf, backend).await;

        let info = handshake_info(tls.addr, Some("a.test"), &[b"h2", b"http/1.1"])
            .await
            .expect("handshake with SNI");
        assert_eq!(info.leaf_names, ["a.test", "*.b.test"]);
        assert_eq!(info.alpn.as_deref(), Some(&b"http/1.1"[..]));
        assert_eq!(info.version, "TLSv1.3");
        assert_eq!(info.leaf_der, leaf.rustls_parts().0[0].to_vec());

        let info = handshake_info(tls.addr, None, &[])
            .await
            .expect("handshake without SNI");
        assert_eq!(info.leaf_names, ["a.test", "*.b.test"]);
        assert_eq!(info.alpn, None);
        assert_eq!(
            tls.server_names(),
            [Some("a.test".to_owned()), None],
            "the second handshake must carry no SNI"
        );

        // A certificate from an unrelated CA is reported, not refused.
        let stranger = TestCa::new().leaf("s", &["s.test"]);
        let tls = TlsTerminator::start(&stranger, backend).await;
        let info = handshake_info(tls.addr, Some("whatever.test"), &[])
            .await
            .expect("unverified handshake");
        assert_eq!(info.leaf_names, ["s.test"]);
    }

    #[tokio::test]
    async fn the_terminator_stops_on_drop() {
        let ca = TestCa::new();
        let leaf = ca.leaf("a", &["a.test"]);
        let (backend, _server) = hello_server().await;
        let tls = TlsTerminator::start(&leaf, backend).await;
        let addr = tls.addr;
        drop(tls);
        // The abort lands at the accept task's next poll.
        crate::wait::eventually(Duration::from_secs(5), "the listener to close", || async {
            TcpStream::connect(addr).await.is_err().then_some(())
        })
        .await
        .expect("still accepting after drop");
    }
}
