//! Secondary cache keys (RFC 9111 §4.1): a response with `Vary` is stored per combination of the
//! listed request fields (the cap on variants per URL is the storage's: `storage::variants`).
//!
//! Selection works on the exact bytes of each value, obs-text (bytes ≥ 0x80) included: a value
//! is never "absent" because it is not ASCII, so one client cannot make its answer the variant of
//! clients that do not send the field. The only normalisation is the one RFC 9110 makes
//! equivalent for everyone: whitespace around a value is dropped (§5.5) and, for the content
//! negotiation fields (`Accept*`: case-insensitive lists), field lines are joined into one list
//! (§5.3), whitespace around members and their parameters is dropped and the case-insensitive
//! parts (the member itself, parameter names) are lower-cased; parameter values keep their case
//! (RFC 9110 §5.6.6). Members are never reordered or removed: `fr, en` and `en, fr` may well get
//! different answers. In every other field (and in an `Accept*` value with a quoted string) only
//! the whitespace around commas outside quoted strings is dropped: `a, b` and `a,b` are the same
//! list to every recipient (RFC 9110 §5.6.1).
//!
//! A `Vary` the cache cannot read (a field name that is not a token) counts as `Vary: *`: such a
//! response is not stored, rather than stored for everyone.

use http::HeaderMap;
use pingora_cache::key::{HashBinary, hash_key};

use crate::headers::list_members;
use crate::names::is_tchar;

/// What a response's `Vary` says.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum VaryOn {
    Nothing,
    /// These request fields (lower-case, sorted, deduplicated).
    Fields(Vec<String>),
    /// `*`, or a `Vary` that cannot be read: no stored response can be selected by it.
    Anything,
}

/// What `response`'s `Vary` fields say.
pub fn vary_on(response: &HeaderMap) -> VaryOn {
    let mut fields: Vec<String> = Vec::new();
    for line in response.get_all(http::header::VARY) {
        // Not visible ASCII: no field name, so no variant can be selected by it.
        let Ok(line) = line.to_str() else {
            return VaryOn::Anything;
        };
        for name in list_members(line) {
            if name == "*" || !name.bytes().all(is_tchar) {
                return VaryOn::Anything;
            }
            fields.push(name.to_ascii_lowercase());
        }
    }
    if fields.is_empty() {
        return VaryOn::Nothing;
    }
    fields.sort();
    fields.dedup();
    VaryOn::Fields(fields)
}

/// The variance hash of `request` for a stored response with these headers, or `None` when the
/// response does not vary (or varies on anything, and so is never stored).
pub fn variance(response: &HeaderMap, request: &HeaderMap) -> Option<HashBinary> {
    let VaryOn::Fields(fields) = vary_on(response) else {
        return None;
    };
    let mut canonical = Vec::new();
    for field in &fields {
        canonical.extend_from_slice(field.as_bytes());
        match normalized(request, field) {
            // Absent only matches absent (§4.1): a distinct marker, not an empty value.
            None => canonical.push(0xFF),
            Some(value) => {
                canonical.push(b':');
                canonical.extend_from_slice(&value);
            }
        }
        canonical.push(0);
    }
    Some(hash_key(&canonical))
}

/// The canonical bytes of `field` in `request`, or `None` when it is absent.
fn normalized(request: &HeaderMap, field: &str) -> Option<Vec<u8>> {
    let mut lines = request.get_all(field).iter().peekable();
    lines.peek()?;
    let list = field.starts_with("accept");
    let mut out = Vec::new();
    for (i, line) in lines.enumerate() {
        let value = line.as_bytes().trim_ascii();
        if i > 0 {
            // Other fields keep their line structure: joining `a` + `b` into `a, b` could make a
            // singleton field mean something else to the origin.
            out.push(if list { b',' } else { 0 });
        }
        if list && !value.contains(&b'"') {
            push_list(&mut out, value);
        } else {
            push_commas(&mut out, value);
        }
    }
    Some(out)
}

/// `value` with the whitespace around its commas dropped (outside quoted strings): `a, b` and
/// `a,b` are the same list to any recipient (RFC 9110 §5.6.1), so the same variant (RFC 9111
/// §4.1). Nothing else changes.
fn push_commas(out: &mut Vec<u8>, value: &[u8]) {
    let (mut quoted, mut escaped, mut after_comma) = (false, false, false);
    for &b in value {
        if quoted {
            out.push(b);
            match b {
                _ if escaped => escaped = false,
                b'\\' => escaped = true,
                b'"' => quoted = false,
                _ => {}
            }
            continue;
        }
        match b {
            b' ' | b'\t' if after_comma => {}
            b',' => {
                while out.last().is_some_and(|&l| l == b' ' || l == b'\t') {
                    out.pop();
                }
                out.push(b',');
                after_comma = true;
            }
            _ => {
                after_comma = false;
                quoted = b == b'"';
                out.push(b);
            }
        }
    }
}

/// `value`'s members, whitespace around them and their `;` / `=` dropped, members and parameter
/// names lower-cased (not parameter values), in their order.
fn push_list(out: &mut Vec<u8>, value: &[u8]) {
    for (i, member) in value.split(|&b| b == b',').enumerate() {
        if i > 0 {
            out.push(b',');
        }
        for (j, param) in member.split(|&b| b == b';').enumerate() {
            if j > 0 {
                out.push(b';');
            }
            for (k, part) in param.split(|&b| b == b'=').enumerate() {
                let part = part.trim_ascii();
                if k == 0 {
                    out.extend(part.iter().map(u8::to_ascii_lowercase));
                } else {
                    out.push(b'=');
                    out.extend_from_slice(part);
                }
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use http::HeaderValue;

    fn h(pairs: &[(&'static str, &str)]) -> HeaderMap {
        let mut m = HeaderMap::new();
        for (k, v) in pairs {
            m.append(*k, HeaderValue::from_str(v).expect("ascii"));
        }
        m
    }

    #[test]
    fn no_vary_no_variance() {
        assert_eq!(
            variance(&HeaderMap::new(), &h(&[("accept-encoding", "gzip")])),
            None
        );
        assert_eq!(
            vary_on(&h(&[("vary", "Accept-Encoding, accept-encoding ,Cookie")])),
            VaryOn::Fields(vec!["accept-encoding".into(), "cookie".into()])
        );
        assert_eq!(vary_on(&h(&[("vary", "Accept, *")])), VaryOn::Anything);
        let mut unreadable = HeaderMap::new();
        unreadable.insert(
            http::header::VARY,
            HeaderValue::from_bytes(b"Accept-Language, X-\xc3\xa9").expect("obs-text"),
        );
        assert_eq!(
            vary_on(&unreadable),
            VaryOn::Anything,
            "fails closed: not stored rather than stored for everyone"
        );
    }

    #[test]
    fn equivalent_requests_share_a_variant() {
        let resp = h(&[("vary", "Accept-Encoding")]);
        let a = variance(&resp, &h(&[("accept-encoding", "gzip, br")]));
        for same in ["gzip,br", "GZIP ,  BR", " gzip , br "] {
            assert_eq!(
                a,
                variance(&resp, &h(&[("accept-encoding", same)])),
                "{same}"
            );
        }
        let split = variance(
            &resp,
            &h(&[("accept-encoding", "gzip"), ("accept-encoding", "br")]),
        );
        assert_eq!(a, split, "field lines of a list combine");
        assert_eq!(
            variance(&resp, &h(&[("accept-encoding", "br;q=0.5")])),
            variance(&resp, &h(&[("accept-encoding", "BR ; Q = 0.5")])),
        );
        let accept = h(&[("vary", "Accept")]);
        assert_ne!(
            variance(&accept, &h(&[("accept", "application/json;v=ABC")])),
            variance(&accept, &h(&[("accept", "application/json;v=abc")])),
            "parameter values keep their case"
        );
        for different in ["br, gzip", "gzip", "gzip, br, identity;q=0", "gzip;q=1, br"] {
            assert_ne!(
                a,
                variance(&resp, &h(&[("accept-encoding", different)])),
                "{different}: members are never reordered or dropped"
            );
        }
    }

    #[test]
    fn order_in_a_list_is_meaning() {
        let resp = h(&[("vary", "Accept-Language")]);
        assert_ne!(
            variance(&resp, &h(&[("accept-language", "fr, en")])),
            variance(&resp, &h(&[("accept-language", "en, fr")]))
        );
    }

    #[test]
    fn bytes_beyond_ascii_select_their_own_variant() {
        for field in ["cookie", "authorization", "accept-language", "x-mode"] {
            let resp = h(&[("vary", field)]);
            let absent = variance(&resp, &HeaderMap::new());
            let mut hostile = HeaderMap::new();
            hostile.insert(
                http::HeaderName::from_bytes(field.as_bytes()).expect("name"),
                HeaderValue::from_bytes(b"session=\xff\xfe").expect("obs-text"),
            );
            let mut other = HeaderMap::new();
            other.insert(
                http::HeaderName::from_bytes(field.as_bytes()).expect("name"),
                HeaderValue::from_bytes(b"session=\xff\xfd").expect("obs-text"),
            );
            let hostile = variance(&resp, &hostile);
            assert_ne!(hostile, absent, "{field}: obs-text is not absence");
            assert_ne!(hostile, variance(&resp, &other), "{field}: exact bytes");
        }
    }

    #[test]
    fn absent_is_not_empty_and_other_fields_keep_case_and_lines() {
        let resp = h(&[("vary", "X-Mode")]);
        let absent = variance(&resp, &HeaderMap::new());
        let empty = variance(&resp, &h(&[("x-mode", "")]));
        assert_ne!(absent, empty);
        assert_eq!(
            variance(&resp, &h(&[("x-mode", "  Dark mode ")])),
            variance(&resp, &h(&[("x-mode", "Dark mode")]))
        );
        assert_ne!(
            variance(&resp, &h(&[("x-mode", "Dark  mode")])),
            variance(&resp, &h(&[("x-mode", "Dark mode")])),
            "inner whitespace is the origin's to interpret"
        );
        assert_ne!(
            variance(&resp, &h(&[("x-mode", "Dark")])),
            variance(&resp, &h(&[("x-mode", "dark")]))
        );
        assert_ne!(
            variance(&resp, &h(&[("x-mode", "a"), ("x-mode", "b")])),
            variance(&resp, &h(&[("x-mode", "a, b")]))
        );
    }

    #[test]
    fn whitespace_around_commas_is_no_difference_outside_quotes() {
        let resp = h(&[("vary", "X-Mode")]);
        let v = |value: &str| variance(&resp, &h(&[("x-mode", value)]));
        assert_eq!(v("a, b,c"), v("a,b , c"));
        assert_eq!(v("a,\tb"), v("a , b"));
        assert_ne!(v("a, b"), v("a; b"), "only commas");
        assert_ne!(v("a, b"), v("ab"), "the comma stays");
        assert_ne!(
            v("\"x, y\", z"),
            v("\"x,y\", z"),
            "inside a quoted string, whitespace is content"
        );
        assert_eq!(
            v("\"x, \\\" y\" ,z"),
            v("\"x, \\\" y\",z"),
            "escaped quotes stay quoted"
        );
        let accept = h(&[("vary", "Accept")]);
        assert_eq!(
            variance(&accept, &h(&[("accept", "text/html;q=\"1\", */*")])),
            variance(&accept, &h(&[("accept", "text/html;q=\"1\",*/*")]))
        );
    }
}
