//! The harness shared by the end-to-end tests (`tests/e2e`), the origin's integration tests and
//! the load benchmarks: real databases, real processes on loopback ports, fixtures.
//!
//! - [`db`]: a fresh SQLite file or PostgreSQL schema per test.
//! - [`process`]: the real `origin` and `edge` binaries, started on loopback ports and stopped on
//!   drop.
//! - [`fixtures`]: image files for uploads, good and hostile.
//! - [`memcached`]: real memcached servers, killable and freezable.
//! - [`scripted_origin`]: an HTTP server whose every answer a test scripts, for edge tests.
//! - [`raw`]: byte-exact HTTP/1.1 exchanges, where a client library would hide the details.
//! - [`tls`]: test CAs and certificates, a TLS terminator in front of a plain server, HTTPS and
//!   h2c clients, and raw handshakes that show which certificate an SNI got.
//! - [`wait`]: waiting on a condition with a deadline instead of sleeping.

pub mod db;
pub mod fixtures;
pub mod memcached;
pub mod process;
pub mod raw;
pub mod scripted_origin;
pub mod tls;
pub mod wait;

pub use db::{Backend, TestDatabase};
pub use memcached::Memcached;
pub use process::{EdgeProcess, OriginProcess};
pub use scripted_origin::{Recorded, Reply, ScriptedOrigin};

/// An HTTP client for tests: no redirects followed (tests check them), no proxies.
pub fn http_client() -> reqwest::Client {
    outpost_common::tls::install_crypto_provider();
    reqwest::Client::builder()
        .redirect(reqwest::redirect::Policy::none())
        .no_proxy()
        .timeout(std::time::Duration::from_secs(60))
        .build()
        .unwrap_or_else(|e| panic!("building the test HTTP client: {e}"))
}

/// Logs from the code under test, once per test binary; `RUST_LOG` selects what is shown.
pub fn init_tracing() {
    use std::sync::Once;
    static ONCE: Once = Once::new();
    ONCE.call_once(|| {
        let _ = tracing_subscriber::fmt()
            .with_env_filter(
                tracing_subscriber::EnvFilter::try_from_default_env()
                    .unwrap_or_else(|_| "warn".into()),
            )
            .with_test_writer()
            .try_init();
    });
}
