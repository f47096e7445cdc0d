//! What counts as a name, defined once: RFC 9110 tokens (field names, `Vary` members), and the
//! simple names we accept for node, region and namespace names, purge ids and host-name bytes
//! (letters, digits, `-`, `_`, `.`: safe in logs, keys, metrics labels and URLs alike).

/// A `tchar` of RFC 9110 §5.6.2.
pub fn is_tchar(b: u8) -> bool {
    b.is_ascii_alphanumeric() || b"!#$%&'*+-.^_`|~".contains(&b)
}

/// A byte of a simple name: a letter, a digit, `-`, `_` or `.`.
pub fn is_name_byte(b: u8) -> bool {
    b.is_ascii_alphanumeric() || matches!(b, b'-' | b'_' | b'.')
}

/// A simple name of 1 to `max` bytes.
pub fn is_simple_name(s: &str, max: usize) -> bool {
    (1..=max).contains(&s.len()) && s.bytes().all(is_name_byte)
}

/// A DNS host name as configs write it: dot-separated labels of 1 to 63 letters, digits, `-`
/// or `_`, at most 253 bytes, no trailing dot.
pub fn is_dns_name(s: &str) -> bool {
    (1..=253).contains(&s.len())
        && s.split('.').all(|label| {
            (1..=63).contains(&label.len())
                && label
                    .bytes()
                    .all(|b| b.is_ascii_alphanumeric() || b == b'-' || b == b'_')
        })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn names_and_tokens() {
        assert!(is_simple_name("edge-a_1.eu", 64));
        assert!(!is_simple_name("", 64) && !is_simple_name("a b", 64) && !is_simple_name("é", 64));
        assert!(!is_simple_name("abc", 2));
        assert!(b"Accept-Encoding".iter().all(|&b| is_tchar(b)));
        assert!(!is_tchar(b' ') && !is_tchar(b',') && !is_tchar(b'"'));
        assert!(is_dns_name("a.example.com") && is_dns_name("localhost"));
        assert!(
            !is_dns_name("a..b") && !is_dns_name("a.") && !is_dns_name("*.a") && !is_dns_name("")
        );
    }
}
