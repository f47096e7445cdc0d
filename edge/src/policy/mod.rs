//! Our RFC 9111 caching policy, independent of Pingora's partial helpers:
//!
//! - [`Policy::decide`]: may this response be stored (§3), with what freshness (§4.2) and which
//!   stale windows (RFC 5861, §4.2.4), as a ready [`CacheMeta`];
//! - [`merge_304`]: updating stored header fields from a 304 (§3.2, §4.3.4);
//! - [`Policy::on_hit`]: request directives against a stored response (§5.2.1);
//! - [`vary`]: secondary keys (§4.1).
//!
//! Decisions are pure functions of headers and times, so unit tests build metas with past
//! timestamps instead of sleeping.

pub mod directives;
pub mod freshness;
pub mod http_date;
pub mod vary;

use std::time::{Duration, SystemTime};

use pingora_cache::{CacheMeta, ForcedFreshness};
use pingora_http::{RequestHeader, ResponseHeader};

use crate::config::SetCookiePolicy;
use crate::headers::{connection_listed, is_hop_by_hop, strip_hop_by_hop};
use crate::settings::CacheSettings;
use directives::Directives;
use freshness::{Exchange, Lifetime, Limits};

/// Why a response was not stored: short tokens, shown in `Cache-Status` as `detail=`.
pub type NotStored = &'static str;

/// Not stored: a credentialed request (`Cookie`, `Authorization`) got an answer without an
/// explicit lifetime. Says nothing about the URL: another request may store it.
pub const CREDENTIALS: NotStored = "credentials";

/// The outcome of [`Policy::decide`].
pub enum Verdict {
    Store(CacheMeta),
    DontStore(NotStored),
}

/// The caching policy, built once from configuration.
#[derive(Clone, Debug)]
pub struct Policy {
    /// Our `Surrogate-Control` target name.
    pub name: String,
    pub limits: Limits,
    pub default_swr: Duration,
    pub default_sie: Duration,
    pub max_stale: Duration,
    pub set_cookie: SetCookiePolicy,
    pub honor_client_no_cache: bool,
    /// Store answers to credentialed requests on heuristic or default freshness.
    pub heuristics_with_credentials: bool,
}

impl Policy {
    pub fn new(name: &str, cfg: &CacheSettings) -> Self {
        Self {
            name: name.to_owned(),
            limits: Limits {
                max_ttl: cfg.max_ttl,
                heuristic_max: cfg.heuristic_max,
                default_ttl: cfg.default_ttl,
            },
            default_swr: cfg.stale_while_revalidate,
            default_sie: cfg.stale_if_error,
            max_stale: cfg.max_stale,
            set_cookie: cfg.set_cookie,
            honor_client_no_cache: cfg.honor_client_no_cache,
            heuristics_with_credentials: cfg.heuristics_with_credentials,
        }
    }

    /// Decides whether `resp` (the answer to `req`) may be stored, and builds its meta.
    pub fn decide(
        &self,
        req: &RequestHeader,
        req_dirs: &Directives,
        resp: &ResponseHeader,
        exchange: Exchange,
    ) -> Verdict {
        let status = resp.status.as_u16();
        match status {
            100..=199 => return Verdict::DontStore("interim"),
            206 => return Verdict::DontStore("partial"),
            304 => return Verdict::DontStore("not-modified"),
            _ if freshness::understood(status) => {}
            _ => return Verdict::DontStore("status-not-understood"),
        }
        let (d, source) = directives::response(&resp.headers, &self.name);
        if req_dirs.no_store {
            return Verdict::DontStore("request-no-store");
        }
        // must-understand: a cache that understands the status may ignore no-store (§5.2.2.3).
        if d.no_store && !d.must_understand {
            return Verdict::DontStore("no-store");
        }
        if d.private.as_ref().is_some_and(Vec::is_empty) {
            return Verdict::DontStore("private");
        }
        if req.headers.contains_key(http::header::AUTHORIZATION)
            && !(d.public || d.s_maxage.is_some() || d.must_revalidate)
        {
            return Verdict::DontStore("authorization");
        }
        match vary::vary_on(&resp.headers) {
            vary::VaryOn::Anything => return Verdict::DontStore("vary-star"),
            // The edge sets these per client on the way to the origin; the cache sees the
            // client's request without them. An answer chosen by the client's address is the
            // client's own.
            vary::VaryOn::Fields(f)
                if f.iter().any(|f| f == "x-forwarded-for" || f == "forwarded") =>
            {
                return Verdict::DontStore("vary-client-address");
            }
            _ => {}
        }
        let sets_cookie = resp.headers.contains_key(http::header::SET_COOKIE);
        if sets_cookie && self.set_cookie == SetCookiePolicy::Bypass {
            return Verdict::DontStore("set-cookie");
        }
        let heuristic_ok = freshness::heuristically_cacheable(status) || d.public;
        let mut lifetime =
            freshness::lifetime(&d, source, &resp.headers, heuristic_ok, self.limits);
        // Web cache deception: `/account/x.css` answered for the user whose cookie came with it.
        // Without an explicit lifetime (or `public`), such an answer may depend on who asks.
        if !matches!(lifetime, Lifetime::Explicit(_))
            && !d.public
            && !self.heuristics_with_credentials
            && (req.headers.contains_key(http::header::COOKIE)
                || req.headers.contains_key(http::header::AUTHORIZATION))
        {
            return Verdict::DontStore(CREDENTIALS);
        }
        if lifetime == Lifetime::None {
            let has_validator = resp.headers.contains_key(http::header::ETAG)
                || resp.headers.contains_key(http::header::LAST_MODIFIED);
            if !(heuristic_ok && has_validator) {
                return Verdict::DontStore("no-freshness");
            }
        }
        // Plain no-cache: storable, but every use must be validated first.
        if d.no_cache.as_ref().is_some_and(Vec::is_empty) {
            lifetime = Lifetime::Explicit(Duration::ZERO);
        }

        let mut header = resp.clone();
        strip_hop_by_hop(&mut header);
        let strip_fields = d.private.iter().chain(d.no_cache.iter()).flatten();
        for field in strip_fields {
            header.remove_header(field.as_str());
        }
        if sets_cookie {
            header.remove_header(&http::header::SET_COOKIE);
        }

        let (swr, sie) = if d.forbids_stale() {
            (0, 0)
        } else {
            let window = |origin: Option<u64>, default: Duration| {
                freshness::secs_u32(
                    origin
                        .map_or(default, Duration::from_secs)
                        .min(self.max_stale),
                )
            };
            (
                window(d.stale_while_revalidate, self.default_swr),
                window(d.stale_if_error, self.default_sie),
            )
        };
        let age = freshness::corrected_initial_age(&resp.headers, exchange);
        let epoch = exchange
            .response_time
            .checked_sub(age)
            .unwrap_or(SystemTime::UNIX_EPOCH);
        let fresh_until = epoch + lifetime.duration();
        // Stored as of the request, not the answer: a purge accepted while the origin was
        // answering may concern what it answers, so the object counts as older than that purge.
        let mut meta = CacheMeta::new(fresh_until, exchange.request_time, swr, sie, header);
        meta.set_epoch_override(epoch);
        Verdict::Store(meta)
    }

    /// Whether the client's directives (`no-cache`, `max-age`, `min-fresh`) make a stored
    /// response of this `age` and freshness `lifetime` unusable without revalidation.
    pub fn forces_revalidation(
        &self,
        req_dirs: &Directives,
        age: Duration,
        lifetime: Duration,
    ) -> bool {
        if !self.honor_client_no_cache {
            return false;
        }
        let too_old = req_dirs
            .max_age
            .is_some_and(|max| age > Duration::from_secs(max));
        let not_fresh_enough = req_dirs
            .min_fresh
            .is_some_and(|min| lifetime.saturating_sub(age) < Duration::from_secs(min));
        req_dirs.no_cache.is_some() || too_old || not_fresh_enough
    }

    /// Applies the client's request directives to a stored response (§5.2.1): `None` to use the
    /// stored response as its own freshness says, or a forced decision.
    pub fn on_hit(
        &self,
        req_dirs: &Directives,
        meta: &CacheMeta,
        now: SystemTime,
    ) -> Option<ForcedFreshness> {
        let lifetime = meta
            .fresh_until()
            .duration_since(meta.epoch())
            .unwrap_or_default();
        if self.forces_revalidation(req_dirs, meta.age(), lifetime) {
            // The client wants a validated response: no stale serving either.
            return Some(ForcedFreshness::ForceExpired);
        }
        if let Some(max_stale) = req_dirs.max_stale
            && !meta.is_fresh(now)
        {
            let staleness = now.duration_since(meta.fresh_until()).unwrap_or_default();
            let acceptable = max_stale.is_none_or(|max| staleness <= Duration::from_secs(max));
            let (stored, _) = directives::response(meta.headers(), &self.name);
            if acceptable && !stored.forbids_stale() {
                return Some(ForcedFreshness::ForceFresh);
            }
        }
        None
    }
}

/// Fields a 304 must not change in the stored response (§3.2): framing and encoding of the body
/// we hold, and `Vary` (changing it over a 304 would orphan the stored variants).
const NOT_UPDATED_BY_304: [&str; 5] = [
    "content-length",
    "content-encoding",
    "content-range",
    "transfer-encoding",
    "vary",
];

/// The stored response header updated with every field of a 304 except those §3.2 excludes.
pub fn merge_304(stored: &ResponseHeader, not_modified: &ResponseHeader) -> ResponseHeader {
    let mut merged = stored.clone();
    let listed = connection_listed(&not_modified.headers);
    let mut names: Vec<_> = not_modified.headers.keys().collect();
    names.dedup();
    for name in names {
        let lower = name.as_str();
        if NOT_UPDATED_BY_304.contains(&lower) || is_hop_by_hop(lower, &listed) {
            continue;
        }
        merged.remove_header(name);
        for value in not_modified.headers.get_all(name) {
            let _ = merged.append_header(name.clone(), value.clone());
        }
    }
    merged
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::config::EdgeConfig;
    use crate::settings::Settings;

    /// Header fields of a test request or response.
    type Fields = &'static [(&'static str, &'static str)];

    fn policy() -> Policy {
        Policy::new("outpost", &Settings::of_valid(&EdgeConfig::default()).cache)
    }

    fn req(extra: &[(&str, &str)]) -> RequestHeader {
        let mut r = RequestHeader::build("GET", b"/x", None).expect("request");
        for (k, v) in extra {
            r.append_header(k.to_string(), *v).expect("valid");
        }
        r
    }

    fn resp(status: u16, headers: &[(&str, &str)]) -> ResponseHeader {
        let mut r = ResponseHeader::build(status, None).expect("response");
        for (k, v) in headers {
            r.append_header(k.to_string(), *v).expect("valid");
        }
        r
    }

    fn now() -> SystemTime {
        SystemTime::now()
    }

    fn exchange() -> Exchange {
        Exchange {
            request_time: now(),
            response_time: now(),
        }
    }

    fn decide(r: &RequestHeader, s: &ResponseHeader) -> Result<CacheMeta, NotStored> {
        match policy().decide(r, &directives::request(&r.headers), s, exchange()) {
            Verdict::Store(m) => Ok(m),
            Verdict::DontStore(why) => Err(why),
        }
    }

    #[test]
    fn refuses_what_rfc_9111_forbids() {
        let cases: [(Fields, Fields, u16, NotStored); 13] = [
            (
                &[],
                &[("cache-control", "no-store, max-age=60")],
                200,
                "no-store",
            ),
            (
                &[],
                &[("cache-control", "private, max-age=60")],
                200,
                "private",
            ),
            (
                &[("authorization", "Bearer x")],
                &[("cache-control", "max-age=60")],
                200,
                "authorization",
            ),
            (
                &[],
                &[("cache-control", "max-age=60"), ("vary", "Accept, *")],
                200,
                "vary-star",
            ),
            (
                &[],
                &[("cache-control", "max-age=60"), ("set-cookie", "s=1")],
                200,
                "set-cookie",
            ),
            (&[], &[("cache-control", "max-age=60")], 206, "partial"),
            (
                &[],
                &[("cache-control", "max-age=60"), ("vary", "X-Forwarded-For")],
                200,
                "vary-client-address",
            ),
            (&[], &[], 200, "no-freshness"),
            // Statuses we do not understand: never, must-understand or not (§5.2.2.3).
            (
                &[],
                &[("cache-control", "no-store, must-understand, max-age=60")],
                299,
                "status-not-understood",
            ),
            (
                &[],
                &[("cache-control", "max-age=60")],
                599,
                "status-not-understood",
            ),
            (
                &[],
                &[("cache-control", "public, max-age=60")],
                511,
                "status-not-understood",
            ),
            (&[], &[("etag", "\"a\"")], 500, "no-freshness"),
            (
                &[("cache-control", "no-store")],
                &[("cache-control", "max-age=60")],
                200,
                "request-no-store",
            ),
        ];
        for (request, response, status, why) in cases {
            assert_eq!(
                decide(&req(request), &resp(status, response)).err(),
                Some(why),
                "{response:?}"
            );
        }
    }

    #[test]
    fn credentialed_requests_need_explicit_freshness() {
        let last_modified = httpdate::fmt_http_date(now() - Duration::from_secs(864_000));
        let cookie = req(&[("cookie", "session=alice")]);
        let heuristic = resp(200, &[("last-modified", last_modified.as_str())]);
        assert_eq!(decide(&cookie, &heuristic).err(), Some(CREDENTIALS));
        assert_eq!(
            decide(&cookie, &resp(200, &[("etag", "\"v1\"")])).err(),
            Some(CREDENTIALS),
            "not even stored to revalidate: a 304 would hand one user's page to another"
        );
        assert!(
            decide(&req(&[]), &heuristic).is_ok(),
            "no cookie: heuristics as usual"
        );
        for explicit in ["max-age=60", "public", "s-maxage=60"] {
            let r = resp(
                200,
                &[
                    ("cache-control", explicit),
                    ("last-modified", last_modified.as_str()),
                ],
            );
            assert!(decide(&cookie, &r).is_ok(), "{explicit}");
        }
        let lenient = Policy {
            heuristics_with_credentials: true,
            ..policy()
        };
        let dirs = directives::request(&cookie.headers);
        assert!(matches!(
            lenient.decide(&cookie, &dirs, &heuristic, exchange()),
            Verdict::Store(_)
        ));
    }

    #[test]
    fn stores_what_it_may() {
        // Explicit freshness: any understood status.
        let m = decide(&req(&[]), &resp(503, &[("cache-control", "max-age=5")])).expect("stored");
        assert!(m.is_fresh(now()));
        // Validator only, heuristically cacheable: stored stale, to revalidate.
        let m = decide(&req(&[]), &resp(200, &[("etag", "\"v1\"")])).expect("stored");
        assert!(!m.is_fresh(now() + Duration::from_secs(1)));
        // Authorization is fine with public / s-maxage / must-revalidate.
        for cc in [
            "public, max-age=5",
            "s-maxage=5",
            "must-revalidate, max-age=5",
        ] {
            assert!(
                decide(
                    &req(&[("authorization", "x")]),
                    &resp(200, &[("cache-control", cc)])
                )
                .is_ok(),
                "{cc}"
            );
        }
        // must-understand with an understood status overrides no-store.
        assert!(
            decide(
                &req(&[]),
                &resp(
                    200,
                    &[("cache-control", "must-understand, no-store, max-age=5")]
                )
            )
            .is_ok()
        );
    }

    #[test]
    fn stored_header_drops_private_fields_hop_by_hop_and_cookies_when_stripping() {
        let r = resp(
            200,
            &[
                (
                    "cache-control",
                    "max-age=60, private=\"X-User\", no-cache=\"X-Token\"",
                ),
                ("x-user", "alice"),
                ("x-token", "t"),
                ("x-kept", "1"),
                ("connection", "x-hop"),
                ("x-hop", "h"),
            ],
        );
        let m = decide(&req(&[]), &r).expect("stored");
        let h = m.headers();
        assert!(
            h.get("x-user").is_none() && h.get("x-token").is_none() && h.get("x-hop").is_none()
        );
        assert_eq!(h["x-kept"], "1");
        let strip = Policy {
            set_cookie: SetCookiePolicy::Strip,
            ..policy()
        };
        let with_cookie = resp(
            200,
            &[("cache-control", "max-age=60"), ("set-cookie", "s=1")],
        );
        let Verdict::Store(m) =
            strip.decide(&req(&[]), &Directives::default(), &with_cookie, exchange())
        else {
            panic!("stored when stripping");
        };
        assert!(m.headers().get("set-cookie").is_none());
    }

    #[test]
    fn stale_windows_from_origin_config_and_prohibitions() {
        let m = decide(
            &req(&[]),
            &resp(
                200,
                &[(
                    "cache-control",
                    "max-age=5, stale-while-revalidate=30, stale-if-error=60",
                )],
            ),
        )
        .expect("stored");
        assert_eq!(
            (m.stale_while_revalidate_sec(), m.stale_if_error_sec()),
            (30, 60)
        );
        let m = decide(&req(&[]), &resp(200, &[("cache-control", "max-age=5")])).expect("stored");
        assert_eq!(
            (m.stale_while_revalidate_sec(), m.stale_if_error_sec()),
            (0, 300),
            "config defaults"
        );
        for cc in [
            "max-age=5, must-revalidate, stale-if-error=60",
            "s-maxage=5, stale-while-revalidate=9",
            "proxy-revalidate, max-age=5",
        ] {
            let m = decide(&req(&[]), &resp(200, &[("cache-control", cc)])).expect("stored");
            assert_eq!(
                (m.stale_while_revalidate_sec(), m.stale_if_error_sec()),
                (0, 0),
                "{cc}"
            );
        }
    }

    #[test]
    fn age_is_carried_in_the_meta() {
        let m = decide(
            &req(&[]),
            &resp(200, &[("cache-control", "max-age=100"), ("age", "40")]),
        )
        .expect("stored");
        let age = m.age().as_secs();
        assert!((40..=41).contains(&age), "age {age}");
        let left = m
            .fresh_until()
            .duration_since(now())
            .unwrap_or_default()
            .as_secs();
        assert!((58..=60).contains(&left), "{left} s of freshness left");
        let old = decide(
            &req(&[]),
            &resp(200, &[("cache-control", "max-age=100"), ("age", "150")]),
        )
        .expect("stored");
        assert!(!old.is_fresh(now()), "already older than its lifetime");
    }

    #[test]
    fn request_directives_on_hits() {
        let p = policy();
        let fresh = decide(
            &req(&[]),
            &resp(200, &[("cache-control", "max-age=100"), ("age", "50")]),
        )
        .expect("stored");
        let rd = |cc: &str| directives::request(&req(&[("cache-control", cc)]).headers);
        assert_eq!(
            p.on_hit(&rd("no-cache"), &fresh, now()),
            Some(ForcedFreshness::ForceExpired)
        );
        assert_eq!(
            p.on_hit(&rd("max-age=10"), &fresh, now()),
            Some(ForcedFreshness::ForceExpired)
        );
        assert_eq!(p.on_hit(&rd("max-age=60"), &fresh, now()), None);
        assert_eq!(
            p.on_hit(&rd("min-fresh=80"), &fresh, now()),
            Some(ForcedFreshness::ForceExpired)
        );
        assert_eq!(p.on_hit(&rd("min-fresh=10"), &fresh, now()), None);
        let pragma = directives::request(&req(&[("pragma", "no-cache")]).headers);
        assert_eq!(
            p.on_hit(&pragma, &fresh, now()),
            Some(ForcedFreshness::ForceExpired)
        );
        let lenient = Policy {
            honor_client_no_cache: false,
            ..p.clone()
        };
        assert_eq!(lenient.on_hit(&rd("no-cache"), &fresh, now()), None);

        let stale = decide(
            &req(&[]),
            &resp(200, &[("cache-control", "max-age=10"), ("age", "30")]),
        )
        .expect("stored");
        assert_eq!(
            p.on_hit(&rd("max-stale"), &stale, now()),
            Some(ForcedFreshness::ForceFresh)
        );
        assert_eq!(
            p.on_hit(&rd("max-stale=60"), &stale, now()),
            Some(ForcedFreshness::ForceFresh)
        );
        assert_eq!(
            p.on_hit(&rd("max-stale=5"), &stale, now()),
            None,
            "20 s stale is too stale"
        );
        let strict = decide(
            &req(&[]),
            &resp(
                200,
                &[
                    ("cache-control", "max-age=10, must-revalidate"),
                    ("age", "30"),
                ],
            ),
        )
        .expect("stored");
        assert_eq!(
            p.on_hit(&rd("max-stale"), &strict, now()),
            None,
            "must-revalidate beats max-stale"
        );
    }

    #[test]
    fn a_304_updates_every_field_but_framing_and_vary() {
        let stored = resp(
            200,
            &[
                ("etag", "\"1\""),
                ("cache-control", "max-age=5"),
                ("x-version", "a"),
                ("content-length", "10"),
                ("vary", "accept"),
            ],
        );
        let not_modified = resp(
            304,
            &[
                ("cache-control", "max-age=60"),
                ("x-version", "b"),
                ("x-new", "n"),
                ("content-length", "0"),
                ("vary", "cookie"),
                ("date", "Mon, 23 Nov 2026 10:00:00 GMT"),
                ("connection", "x-hop"),
                ("x-hop", "1"),
            ],
        );
        let merged = merge_304(&stored, &not_modified);
        let h = &merged.headers;
        assert_eq!(
            (
                h["cache-control"].as_bytes(),
                h["x-version"].as_bytes(),
                h["x-new"].as_bytes()
            ),
            (&b"max-age=60"[..], &b"b"[..], &b"n"[..])
        );
        assert_eq!(h["content-length"], "10");
        assert_eq!(h["vary"], "accept");
        assert_eq!(h["etag"], "\"1\"");
        assert!(h.contains_key("date") && !h.contains_key("x-hop"));
        assert_eq!(merged.status.as_u16(), 200);
    }
}
