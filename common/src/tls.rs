//! The process's one rustls crypto provider. reqwest and Pingora are built without a default
//! provider (no OpenSSL, no aws-lc build), so every process installs ring once, before its first
//! TLS client or listener.

/// Installs ring as the process-wide rustls provider; later calls (or a provider already
/// installed) change nothing.
pub fn install_crypto_provider() {
    let _ = rustls::crypto::ring::default_provider().install_default();
}
