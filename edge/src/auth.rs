//! Who may purge: the admin bearer token, compared in constant time (used by the admin API and
//! by `PURGE` on the proxy listener).

/// A constant-time comparison of a presented bearer token with the configured one; an empty
/// configured token accepts nothing.
pub fn token_matches(presented: Option<&str>, configured: &str) -> bool {
    use subtle::ConstantTimeEq;
    let Some(presented) = presented.and_then(|h| h.strip_prefix("Bearer ")) else {
        return false;
    };
    if configured.is_empty() {
        return false;
    }
    // Hashing first hides the configured token's length from timing.
    let a = blake3::hash(presented.trim().as_bytes());
    let b = blake3::hash(configured.as_bytes());
    a.as_bytes().ct_eq(b.as_bytes()).into()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn tokens_compare_exactly() {
        assert!(token_matches(Some("Bearer s3cret"), "s3cret"));
        assert!(!token_matches(Some("Bearer s3cre"), "s3cret"));
        assert!(!token_matches(Some("s3cret"), "s3cret"));
        assert!(!token_matches(None, "s3cret"));
        assert!(!token_matches(Some("Bearer "), ""));
    }
}
