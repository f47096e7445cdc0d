//! Parsing cache directives: `Cache-Control` (RFC 9111 §5.2), `CDN-Cache-Control` (RFC 9213, a
//! structured-field Dictionary), `Surrogate-Control` (Edge Architecture 1.0, with `;target`
//! suffixes) and `Pragma: no-cache`.
//!
//! Parsing is tolerant, as §4.2.1 asks: names are case-insensitive, unknown directives are
//! ignored, garbage between commas is skipped. Freshness directives whose value is invalid, or
//! that appear twice with different values, make the response stale rather than guessing.

use http::HeaderMap;
use http::header::{CACHE_CONTROL, PRAGMA};

use crate::headers::list_members;

/// Delta-seconds beyond this are clamped (RFC 9111 §1.2.2).
pub const DELTA_MAX: u64 = 2_147_483_648;

/// The directives of one header family, for a request or a response.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct Directives {
    pub max_age: Option<u64>,
    pub s_maxage: Option<u64>,
    pub no_store: bool,
    /// `Some(empty)` for plain `no-cache`; `Some(fields)` for `no-cache="a, b"`.
    pub no_cache: Option<Vec<String>>,
    /// `Some(empty)` for plain `private`; `Some(fields)` for `private="a, b"`.
    pub private: Option<Vec<String>>,
    pub public: bool,
    pub must_revalidate: bool,
    pub proxy_revalidate: bool,
    pub must_understand: bool,
    pub immutable: bool,
    pub stale_while_revalidate: Option<u64>,
    pub stale_if_error: Option<u64>,
    /// Request: `Some(None)` for `max-stale` without a value (any staleness).
    pub max_stale: Option<Option<u64>>,
    pub min_fresh: Option<u64>,
    pub only_if_cached: bool,
    /// A freshness directive (`max-age`, `s-maxage`) was malformed or contradicted itself: the
    /// response is treated as stale (§4.2.1).
    pub invalid_freshness: bool,
}

impl Directives {
    /// Response directives that forbid serving the response stale without revalidating
    /// (§4.2.4, §5.2.2.2, §5.2.2.8, §5.2.2.10: `s-maxage` implies `proxy-revalidate`), or make
    /// every use revalidate (`no-cache`).
    pub fn forbids_stale(&self) -> bool {
        self.must_revalidate
            || self.proxy_revalidate
            || self.s_maxage.is_some()
            || self.no_cache.as_ref().is_some_and(Vec::is_empty)
    }

    fn set_delta(slot: &mut Option<u64>, value: Option<u64>, invalid: &mut bool) {
        match (value, *slot) {
            (None, _) => *invalid = true,
            (Some(v), None) => *slot = Some(v),
            (Some(v), Some(old)) if v == old => {}
            // Two different values: §4.2.1 allows treating the response as stale.
            (Some(_), Some(_)) => *invalid = true,
        }
    }

    /// Applies one parsed directive; unknown names are ignored.
    fn apply(&mut self, name: &str, value: Option<&str>) {
        let delta = || value.and_then(parse_delta);
        match name {
            "max-age" => {
                let v = delta();
                Self::set_delta(&mut self.max_age, v, &mut self.invalid_freshness);
            }
            "s-maxage" => {
                let v = delta();
                Self::set_delta(&mut self.s_maxage, v, &mut self.invalid_freshness);
            }
            "no-store" => self.no_store = true,
            "no-cache" => merge_fields(&mut self.no_cache, value),
            "private" => merge_fields(&mut self.private, value),
            "public" => self.public = true,
            "must-revalidate" => self.must_revalidate = true,
            "proxy-revalidate" => self.proxy_revalidate = true,
            "must-understand" => self.must_understand = true,
            "immutable" => self.immutable = true,
            "only-if-cached" => self.only_if_cached = true,
            "stale-while-revalidate" => {
                self.stale_while_revalidate = self.stale_while_revalidate.or_else(delta);
            }
            "stale-if-error" => self.stale_if_error = self.stale_if_error.or_else(delta),
            "min-fresh" => self.min_fresh = self.min_fresh.or_else(delta),
            "max-stale" if self.max_stale.is_none() => {
                self.max_stale = match value {
                    None => Some(None),
                    Some(v) => parse_delta(v).map(Some),
                };
            }
            _ => {}
        }
    }
}

/// `no-cache` / `private` may appear bare (all fields) or with a field list; bare wins.
fn merge_fields(slot: &mut Option<Vec<String>>, value: Option<&str>) {
    let fields: Vec<String> = value
        .map(|v| list_members(v).map(str::to_ascii_lowercase).collect())
        .unwrap_or_default();
    match slot {
        Some(existing) if existing.is_empty() => {}
        Some(existing) if fields.is_empty() => existing.clear(),
        Some(existing) => existing.extend(fields),
        None => *slot = Some(fields),
    }
}

/// Delta-seconds: 1*DIGIT, clamped to [`DELTA_MAX`]; anything else is invalid.
pub fn parse_delta(value: &str) -> Option<u64> {
    let value = value.trim();
    if value.is_empty() || !value.bytes().all(|b| b.is_ascii_digit()) {
        return None;
    }
    Some(value.parse::<u64>().map_or(DELTA_MAX, |v| v.min(DELTA_MAX)))
}

/// One `name[=value][;target]` item of a comma-separated directive list.
struct Item<'a> {
    name: String,
    value: Option<std::borrow::Cow<'a, str>>,
    target: Option<&'a str>,
}

/// Splits a header value into directives, honouring quoted strings (commas inside quotes do not
/// split). Malformed pieces yield an item whose name never matches a known directive.
fn items(value: &str) -> Vec<Item<'_>> {
    let mut out = Vec::new();
    for piece in list_members(value) {
        let (name, rest) = match piece.find(['=', ';']) {
            Some(pos) => (&piece[..pos], &piece[pos..]),
            None => (piece, ""),
        };
        let (raw_value, target) = if let Some(rest) = rest.strip_prefix('=') {
            split_target(rest)
        } else if let Some(target) = rest.strip_prefix(';') {
            ("", Some(target.trim()))
        } else {
            ("", None)
        };
        let value = if rest.starts_with('=') {
            Some(unquote(raw_value.trim()))
        } else {
            None
        };
        out.push(Item {
            name: name.trim().to_ascii_lowercase(),
            value,
            target,
        });
    }
    out
}

/// `60;edge` → (`60`, Some(`edge`)); a `;` inside quotes does not count.
fn split_target(s: &str) -> (&str, Option<&str>) {
    let mut in_quotes = false;
    for (i, b) in s.bytes().enumerate() {
        match b {
            b'"' => in_quotes = !in_quotes,
            b';' if !in_quotes => return (&s[..i], Some(s[i + 1..].trim())),
            _ => {}
        }
    }
    (s, None)
}

fn unquote(s: &str) -> std::borrow::Cow<'_, str> {
    match s.strip_prefix('"').and_then(|s| s.strip_suffix('"')) {
        Some(inner) if inner.contains('\\') => {
            let mut out = String::with_capacity(inner.len());
            let mut chars = inner.chars();
            while let Some(c) = chars.next() {
                if c == '\\' {
                    if let Some(next) = chars.next() {
                        out.push(next);
                    }
                } else {
                    out.push(c);
                }
            }
            out.into()
        }
        Some(inner) => inner.into(),
        None => s.into(),
    }
}

fn header_text<'a>(headers: &'a HeaderMap, name: &str) -> impl Iterator<Item = &'a str> {
    headers.get_all(name).iter().filter_map(|v| v.to_str().ok())
}

/// `Cache-Control`, all its field lines combined.
pub fn cache_control(headers: &HeaderMap) -> Directives {
    let mut d = Directives::default();
    for line in header_text(headers, CACHE_CONTROL.as_str()) {
        for item in items(line) {
            if item.target.is_none() {
                d.apply(&item.name, item.value.as_deref());
            }
        }
    }
    d
}

/// True if the request carries `Cache-Control` at all (then `Pragma` is ignored, §5.4).
pub fn has_cache_control(headers: &HeaderMap) -> bool {
    headers.contains_key(CACHE_CONTROL)
}

/// Request directives: `Cache-Control`, or `Pragma: no-cache` when there is no Cache-Control.
pub fn request(headers: &HeaderMap) -> Directives {
    if has_cache_control(headers) {
        return cache_control(headers);
    }
    let mut d = Directives::default();
    let pragma_no_cache = header_text(headers, PRAGMA.as_str())
        .flat_map(list_members)
        .any(|t| t.eq_ignore_ascii_case("no-cache"));
    if pragma_no_cache {
        d.no_cache = Some(Vec::new());
    }
    d
}

/// `CDN-Cache-Control` (RFC 9213): a structured-field Dictionary. `None` when absent, not a
/// valid Dictionary, or when a directive we know has a value of the wrong type (`max-age="60"`,
/// `no-store=3`): the field is then ignored as a whole and `Cache-Control` applies (§2.1).
/// Unknown directives are ignored, whatever their type.
pub fn cdn_cache_control(headers: &HeaderMap) -> Option<Directives> {
    let lines: Vec<&str> = header_text(headers, "cdn-cache-control").collect();
    if lines.is_empty() {
        return None;
    }
    let dict = sfv::Parser::parse_dictionary(lines.join(", ").as_bytes()).ok()?;
    let mut d = Directives::default();
    for (name, entry) in &dict {
        let kind = cdn_directive_type(name);
        if matches!(kind, CdnType::Unknown) {
            continue;
        }
        let sfv::ListEntry::Item(item) = entry else {
            return None;
        };
        let value = match (kind, &item.bare_item) {
            (CdnType::Integer, sfv::BareItem::Integer(n)) if *n >= 0 => Some(n.to_string()),
            (CdnType::Boolean | CdnType::BooleanOrFields, sfv::BareItem::Boolean(true)) => None,
            (CdnType::Boolean | CdnType::BooleanOrFields, sfv::BareItem::Boolean(false)) => {
                continue;
            }
            (CdnType::BooleanOrFields, sfv::BareItem::String(fields)) => Some(fields.clone()),
            _ => return None,
        };
        d.apply(name, value.as_deref());
    }
    Some(d)
}

/// The value type RFC 9213 §2.1 maps each response directive to.
enum CdnType {
    Integer,
    Boolean,
    /// `no-cache` and `private`: `true`, or a String listing fields.
    BooleanOrFields,
    Unknown,
}

fn cdn_directive_type(name: &str) -> CdnType {
    match name {
        "max-age" | "s-maxage" | "stale-while-revalidate" | "stale-if-error" => CdnType::Integer,
        "no-store" | "public" | "must-revalidate" | "proxy-revalidate" | "must-understand"
        | "immutable" | "no-transform" => CdnType::Boolean,
        "no-cache" | "private" => CdnType::BooleanOrFields,
        _ => CdnType::Unknown,
    }
}

/// `Surrogate-Control` directives that apply to us: untargeted, or targeted at `target`.
/// `None` when the header is absent or has nothing for us.
pub fn surrogate_control(headers: &HeaderMap, target: &str) -> Option<Directives> {
    let mut d = Directives::default();
    let mut any = false;
    for line in header_text(headers, "surrogate-control") {
        for item in items(line) {
            if item.target.is_none_or(|t| t.eq_ignore_ascii_case(target)) {
                any = true;
                d.apply(&item.name, item.value.as_deref());
            }
        }
    }
    any.then_some(d)
}

/// Which header the effective response directives came from.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
#[expect(
    clippy::enum_variant_names,
    reason = "each variant is the name of the header field it stands for"
)]
pub enum Source {
    CdnCacheControl,
    SurrogateControl,
    CacheControl,
}

/// The directives a shared cache obeys for a response: the first targeted field present
/// (`CDN-Cache-Control`, then `Surrogate-Control`) replaces `Cache-Control` *and* `Expires`
/// (RFC 9213 §2.2); otherwise `Cache-Control`.
pub fn response(headers: &HeaderMap, target: &str) -> (Directives, Source) {
    if let Some(d) = cdn_cache_control(headers) {
        return (d, Source::CdnCacheControl);
    }
    if let Some(d) = surrogate_control(headers, target) {
        return (d, Source::SurrogateControl);
    }
    (cache_control(headers), Source::CacheControl)
}

#[cfg(test)]
mod tests {
    use super::*;
    use http::HeaderValue;

    fn headers(pairs: &[(&'static str, &str)]) -> HeaderMap {
        let mut h = HeaderMap::new();
        for (k, v) in pairs {
            h.append(*k, HeaderValue::from_str(v).expect("ascii"));
        }
        h
    }

    fn cc(v: &str) -> Directives {
        cache_control(&headers(&[("cache-control", v)]))
    }

    #[test]
    fn parses_the_common_directives_case_insensitively() {
        let d = cc(
            "Public, MAX-AGE=60, s-maxage=120 ,must-revalidate, Stale-While-Revalidate=30, immutable",
        );
        assert!(d.public && d.must_revalidate && d.immutable);
        assert_eq!(
            (d.max_age, d.s_maxage, d.stale_while_revalidate),
            (Some(60), Some(120), Some(30))
        );
        assert!(!d.invalid_freshness);
    }

    #[test]
    fn quoted_values_and_field_lists() {
        let d = cc(r#"private="Set-Cookie, X-User", no-cache="Authorization-Info", max-age="10""#);
        assert_eq!(
            d.private,
            Some(vec!["set-cookie".to_owned(), "x-user".to_owned()])
        );
        assert_eq!(d.no_cache, Some(vec!["authorization-info".to_owned()]));
        assert_eq!(d.max_age, Some(10), "a quoted delta is tolerated");
        let bare = cc(r#"no-cache="a", no-cache"#);
        assert_eq!(
            bare.no_cache,
            Some(vec![]),
            "bare no-cache wins over a field list"
        );
    }

    #[test]
    fn malformed_and_conflicting_freshness_means_stale() {
        assert!(cc("max-age=abc").invalid_freshness);
        assert!(cc("max-age=-1").invalid_freshness);
        assert!(cc("max-age=60, max-age=120").invalid_freshness);
        assert!(!cc("max-age=60, max-age=60").invalid_freshness);
        let split = cache_control(&headers(&[
            ("cache-control", "max-age=5"),
            ("cache-control", "max-age=6"),
        ]));
        assert!(
            split.invalid_freshness,
            "duplicates across field lines count too"
        );
        assert_eq!(cc("max-age=99999999999999").max_age, Some(DELTA_MAX));
    }

    #[test]
    fn garbage_is_skipped_not_fatal() {
        let d = cc(r#",,  = , "unterminated , max-age=5"#);
        // The unterminated quote swallows the rest; nothing panics and nothing is invented.
        assert_eq!(d.max_age, None);
        let d = cc("foo=bar=baz, max-age=7, ;;;");
        assert_eq!(d.max_age, Some(7));
        assert!(
            !cc("no-store;x").no_store,
            "targeted items are not Cache-Control"
        );
    }

    #[test]
    fn request_directives_and_pragma() {
        let d = request(&headers(&[(
            "cache-control",
            "max-stale, min-fresh=5, only-if-cached",
        )]));
        assert_eq!(d.max_stale, Some(None));
        assert_eq!(d.min_fresh, Some(5));
        assert!(d.only_if_cached);
        assert_eq!(
            request(&headers(&[("cache-control", "max-stale=30")])).max_stale,
            Some(Some(30))
        );
        let pragma = request(&headers(&[("pragma", "no-cache")]));
        assert_eq!(pragma.no_cache, Some(vec![]));
        let both = request(&headers(&[
            ("pragma", "no-cache"),
            ("cache-control", "max-age=10"),
        ]));
        assert_eq!(
            both.no_cache, None,
            "Pragma is ignored when Cache-Control is present"
        );
    }

    #[test]
    fn cdn_cache_control_is_a_dictionary_and_wins() {
        let h = headers(&[
            ("cache-control", "no-store"),
            ("cdn-cache-control", "max-age=300, stale-if-error=60"),
        ]);
        let (d, source) = response(&h, "outpost");
        assert_eq!(source, Source::CdnCacheControl);
        assert_eq!(
            (d.max_age, d.stale_if_error, d.no_store),
            (Some(300), Some(60), false)
        );
        // Not a valid Dictionary (upper-case key): ignored, Cache-Control applies.
        let bad = headers(&[
            ("cache-control", "max-age=5"),
            ("cdn-cache-control", "Max-Age=300"),
        ]);
        assert_eq!(
            response(&bad, "outpost"),
            (cc("max-age=5"), Source::CacheControl)
        );
        let private = headers(&[("cdn-cache-control", "private, no-store")]);
        let (d, _) = response(&private, "outpost");
        assert!(d.no_store && d.private.is_some());
    }

    #[test]
    fn a_cdn_cache_control_with_a_wrong_type_is_ignored_whole() {
        for bad in [
            "max-age=\"10000\"",
            "max-age=60, no-store=3",
            "max-age=-1",
            "max-age=60, private=(a b)",
            "max-age=1.5",
        ] {
            let h = headers(&[("cdn-cache-control", bad), ("cache-control", "max-age=7")]);
            assert_eq!(cdn_cache_control(&h), None, "{bad}");
            let (d, source) = response(&h, "outpost");
            assert_eq!(
                (source, d.max_age),
                (Source::CacheControl, Some(7)),
                "{bad}"
            );
        }
        let fine = headers(&[(
            "cdn-cache-control",
            "max-age=60, private=\"set-cookie\", no-cache=?0, x-ours=(1 2), x-other=\"s\"",
        )]);
        let d = cdn_cache_control(&fine).expect("valid");
        assert_eq!(d.max_age, Some(60));
        assert_eq!(d.private, Some(vec!["set-cookie".to_owned()]));
        assert_eq!(d.no_cache, None);
    }

    #[test]
    fn surrogate_control_honours_targets() {
        let h = headers(&[(
            "surrogate-control",
            "max-age=60;outpost, no-store;other, max-age=5;other",
        )]);
        let d = surrogate_control(&h, "outpost").expect("applies");
        assert_eq!((d.max_age, d.no_store), (Some(60), false));
        let none = headers(&[("surrogate-control", "no-store;other")]);
        assert_eq!(surrogate_control(&none, "outpost"), None);
        let untargeted = headers(&[
            ("surrogate-control", "max-age=30"),
            ("cache-control", "private"),
        ]);
        let (d, source) = response(&untargeted, "outpost");
        assert_eq!(
            (source, d.max_age, d.private),
            (Source::SurrogateControl, Some(30), None)
        );
    }

    #[test]
    fn what_forbids_stale() {
        assert!(cc("must-revalidate").forbids_stale());
        assert!(cc("proxy-revalidate").forbids_stale());
        assert!(cc("s-maxage=10").forbids_stale());
        assert!(cc("no-cache").forbids_stale());
        assert!(!cc(r#"no-cache="set-cookie""#).forbids_stale());
        assert!(!cc("max-age=10, stale-if-error=5").forbids_stale());
    }
}
