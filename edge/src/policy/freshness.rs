//! Freshness (RFC 9111 §4.2): how long a stored response may be used without asking the origin,
//! and how old it already is when it arrives.
//!
//! Age is corrected for `Age`, `Date` and the time the exchange took (§4.2.3); we record it in the
//! [`CacheMeta`] as an epoch (`response_time − corrected_initial_age`), so every later
//! `meta.age()` is the RFC's `current_age` and `Age` on hits is right without more work.

use std::time::{Duration, SystemTime};

use http::HeaderMap;
use http::header::{AGE, DATE, EXPIRES, LAST_MODIFIED};

use super::directives::{DELTA_MAX, Directives, Source};
use super::http_date;

/// When our request left for the origin and when its response header arrived.
#[derive(Clone, Copy, Debug)]
pub struct Exchange {
    pub request_time: SystemTime,
    pub response_time: SystemTime,
}

/// §4.2.3: `max(apparent_age, age_value + response_delay)`.
pub fn corrected_initial_age(headers: &HeaderMap, exchange: Exchange) -> Duration {
    let date = http_date(headers, DATE.as_str()).unwrap_or(exchange.response_time);
    let apparent_age = exchange
        .response_time
        .duration_since(date)
        .unwrap_or_default();
    let age_value = age_value(headers).map_or(Duration::ZERO, Duration::from_secs);
    let response_delay = exchange
        .response_time
        .duration_since(exchange.request_time)
        .unwrap_or_default();
    apparent_age.max(age_value + response_delay)
}

/// The `Age` a response arrived with: the first value when a list arrived (`Age: 7200, 0`,
/// RFC 9111 §5.1); `None` when absent or not a number.
pub fn age_value(headers: &HeaderMap) -> Option<u64> {
    let first = headers.get(AGE)?.to_str().ok()?.split(',').next()?;
    super::directives::parse_delta(first.trim())
}

/// How a freshness lifetime was obtained.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Lifetime {
    /// From directives or `Expires`.
    Explicit(Duration),
    /// 10% of the time since `Last-Modified` (§4.2.2), or the configured default.
    Heuristic(Duration),
    /// No explicit freshness and no way to guess one.
    None,
}

impl Lifetime {
    pub fn duration(self) -> Duration {
        match self {
            Lifetime::Explicit(d) | Lifetime::Heuristic(d) => d,
            Lifetime::None => Duration::ZERO,
        }
    }
}

/// Limits from configuration.
#[derive(Clone, Copy, Debug)]
pub struct Limits {
    pub max_ttl: Duration,
    pub heuristic_max: Duration,
    pub default_ttl: Duration,
}

/// The explicit lifetime, in precedence order: `s-maxage`, `max-age`, then `Expires − Date`
/// (only when the directives came from `Cache-Control`: a targeted field replaces `Expires`).
pub fn explicit_lifetime(d: &Directives, source: Source, headers: &HeaderMap) -> Option<Duration> {
    if d.invalid_freshness {
        return Some(Duration::ZERO);
    }
    if let Some(s) = d.s_maxage.or(d.max_age) {
        return Some(Duration::from_secs(s));
    }
    if source != Source::CacheControl {
        return None;
    }
    let lines: Vec<_> = headers.get_all(EXPIRES).iter().collect();
    match lines.as_slice() {
        [] => None,
        [one] => {
            let Some(expires) = one.to_str().ok().and_then(http_date::parse) else {
                // An invalid Expires ("0", "-1") means already expired (§5.3).
                return Some(Duration::ZERO);
            };
            let date = http_date(headers, DATE.as_str()).unwrap_or_else(SystemTime::now);
            Some(expires.duration_since(date).unwrap_or_default())
        }
        // Conflicting Expires lines: stale (§4.2.1).
        _ => Some(Duration::ZERO),
    }
}

/// The freshness lifetime of a response, capped by `limits.max_ttl`. `heuristic_ok` says whether
/// the status (or `public`) allows a heuristic lifetime.
pub fn lifetime(
    d: &Directives,
    source: Source,
    headers: &HeaderMap,
    heuristic_ok: bool,
    limits: Limits,
) -> Lifetime {
    if let Some(explicit) = explicit_lifetime(d, source, headers) {
        return Lifetime::Explicit(explicit.min(limits.max_ttl));
    }
    if !heuristic_ok {
        return Lifetime::None;
    }
    let date = http_date(headers, DATE.as_str()).unwrap_or_else(SystemTime::now);
    if let Some(modified) = http_date(headers, LAST_MODIFIED.as_str()) {
        let since = date.duration_since(modified).unwrap_or_default();
        let guess = (since / 10).min(limits.heuristic_max).min(limits.max_ttl);
        return Lifetime::Heuristic(Duration::from_secs(guess.as_secs()));
    }
    if limits.default_ttl > Duration::ZERO {
        return Lifetime::Heuristic(limits.default_ttl.min(limits.max_ttl));
    }
    Lifetime::None
}

/// Statuses whose meaning we know (RFC 9110 §15, plus 429 and 431 from RFC 6585 and 451 from
/// RFC 7725), and so may store. Anything else is never stored, explicit freshness or not: a
/// cache must not reuse what it does not understand (RFC 9111 §3, §5.2.2.3 `must-understand`).
/// 511 is left out on purpose: RFC 6585 §6 forbids storing it.
pub fn understood(status: u16) -> bool {
    matches!(
        status,
        200..=206 | 300..=305 | 307 | 308 | 400..=417 | 421 | 422 | 426 | 429 | 431 | 451
            | 500..=505
    )
}

/// RFC 9110 §15.1: statuses cacheable by default (heuristic freshness allowed). 206 is among
/// them there, but we never store a partial response as if it were the whole object.
pub fn heuristically_cacheable(status: u16) -> bool {
    matches!(
        status,
        200 | 203 | 204 | 300 | 301 | 308 | 404 | 405 | 410 | 414 | 501
    )
}

fn http_date(headers: &HeaderMap, name: &str) -> Option<SystemTime> {
    http_date::header(headers, name)
}

/// Seconds as the u32 the stale windows are stored in.
pub fn secs_u32(d: Duration) -> u32 {
    u32::try_from(d.as_secs().min(DELTA_MAX)).unwrap_or(u32::MAX)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::policy::directives;
    use http::HeaderValue;

    const LIMITS: Limits = Limits {
        max_ttl: Duration::from_secs(365 * 86400),
        heuristic_max: Duration::from_secs(86400),
        default_ttl: Duration::ZERO,
    };

    fn headers(pairs: &[(&'static str, String)]) -> HeaderMap {
        let mut h = HeaderMap::new();
        for (k, v) in pairs {
            h.append(*k, HeaderValue::from_str(v).expect("ascii"));
        }
        h
    }

    fn date(t: SystemTime) -> String {
        httpdate::fmt_http_date(t)
    }

    fn now() -> SystemTime {
        // Whole seconds, as HTTP dates are.
        let secs = SystemTime::now()
            .duration_since(SystemTime::UNIX_EPOCH)
            .map_or(0, |d| d.as_secs());
        SystemTime::UNIX_EPOCH + Duration::from_secs(secs)
    }

    fn life(h: &HeaderMap, heuristic_ok: bool) -> Lifetime {
        let (d, source) = directives::response(h, "outpost");
        lifetime(&d, source, h, heuristic_ok, LIMITS)
    }

    #[test]
    fn age_is_corrected_for_age_date_and_delay() {
        let t = now();
        let exchange = Exchange {
            request_time: t - Duration::from_secs(2),
            response_time: t,
        };
        // Age header 10 s, 2 s on the way: 12 s.
        let h = headers(&[("age", "10".into()), ("date", date(t))]);
        assert_eq!(corrected_initial_age(&h, exchange), Duration::from_secs(12));
        // A Date 30 s in the past (a slow upstream cache) outweighs a small Age.
        let h = headers(&[
            ("age", "1".into()),
            ("date", date(t - Duration::from_secs(30))),
        ]);
        assert_eq!(corrected_initial_age(&h, exchange), Duration::from_secs(30));
        // No Age, no Date: only the delay.
        assert_eq!(
            corrected_initial_age(&HeaderMap::new(), exchange),
            Duration::from_secs(2)
        );
        // A Date in the future does not make the response younger than zero.
        let h = headers(&[("date", date(t + Duration::from_secs(100)))]);
        let same = Exchange {
            request_time: t,
            response_time: t,
        };
        assert_eq!(corrected_initial_age(&h, same), Duration::ZERO);
    }

    #[test]
    fn precedence_s_maxage_max_age_expires() {
        let t = now();
        let exp = date(t + Duration::from_secs(500));
        let h = headers(&[
            ("cache-control", "max-age=60, s-maxage=90".into()),
            ("expires", exp.clone()),
            ("date", date(t)),
        ]);
        assert_eq!(life(&h, true), Lifetime::Explicit(Duration::from_secs(90)));
        let h = headers(&[
            ("cache-control", "max-age=60".into()),
            ("expires", exp.clone()),
            ("date", date(t)),
        ]);
        assert_eq!(life(&h, true), Lifetime::Explicit(Duration::from_secs(60)));
        let h = headers(&[("expires", exp.clone()), ("date", date(t))]);
        assert_eq!(life(&h, true), Lifetime::Explicit(Duration::from_secs(500)));
        // CDN-Cache-Control replaces Cache-Control *and* Expires.
        let h = headers(&[
            ("cdn-cache-control", "s-maxage=5".into()),
            ("cache-control", "max-age=60".into()),
            ("expires", exp),
            ("date", date(t)),
        ]);
        assert_eq!(life(&h, true), Lifetime::Explicit(Duration::from_secs(5)));
    }

    #[test]
    fn invalid_expires_and_freshness_are_stale() {
        for bad in ["0", "-1", "yesterday"] {
            let h = headers(&[("expires", bad.into())]);
            assert_eq!(life(&h, true), Lifetime::Explicit(Duration::ZERO), "{bad}");
        }
        let h = headers(&[("cache-control", "max-age=ten".into())]);
        assert_eq!(life(&h, true), Lifetime::Explicit(Duration::ZERO));
    }

    #[test]
    fn heuristic_is_ten_percent_of_last_modified_age_and_capped() {
        let t = now();
        let h = headers(&[
            ("date", date(t)),
            ("last-modified", date(t - Duration::from_secs(1000))),
        ]);
        assert_eq!(
            life(&h, true),
            Lifetime::Heuristic(Duration::from_secs(100))
        );
        assert_eq!(
            life(&h, false),
            Lifetime::None,
            "not for statuses that do not allow it"
        );
        let old = headers(&[
            ("date", date(t)),
            ("last-modified", date(t - Duration::from_secs(100 * 86400))),
        ]);
        assert_eq!(
            life(&old, true),
            Lifetime::Heuristic(Duration::from_secs(86400)),
            "capped"
        );
        assert_eq!(life(&HeaderMap::new(), true), Lifetime::None);
        let with_default = Limits {
            default_ttl: Duration::from_secs(30),
            ..LIMITS
        };
        let (d, s) = directives::response(&HeaderMap::new(), "outpost");
        assert_eq!(
            lifetime(&d, s, &HeaderMap::new(), true, with_default),
            Lifetime::Heuristic(Duration::from_secs(30))
        );
    }

    #[test]
    fn max_ttl_caps_explicit_lifetimes() {
        let h = headers(&[("cache-control", "max-age=999999999".into())]);
        let (d, s) = directives::response(&h, "outpost");
        let capped = Limits {
            max_ttl: Duration::from_secs(3600),
            ..LIMITS
        };
        assert_eq!(
            lifetime(&d, s, &h, true, capped),
            Lifetime::Explicit(Duration::from_secs(3600))
        );
    }
}
