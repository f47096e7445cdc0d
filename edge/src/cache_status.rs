//! `Cache-Status` (RFC 9211) on every response, saying what the cache did:
//!
//! | Case | Value |
//! |---|---|
//! | fresh hit | `outpost; hit; ttl=42; detail=l1` |
//! | stale, served while revalidating | `outpost; hit; ttl=-3; detail=stale-while-revalidate` |
//! | stale, served because the origin failed | `outpost; fwd=stale; fwd-status=503; ttl=-20; detail=stale-if-error` |
//! | stale, origin said 304 | `outpost; fwd=stale; fwd-status=304; stored; ttl=60` |
//! | stale, replaced | `outpost; fwd=stale; fwd-status=200; stored; ttl=60` |
//! | client asked to revalidate | `outpost; fwd=request; fwd-status=304; stored; ttl=60` |
//! | not stored | `outpost; fwd=uri-miss; fwd-status=200; stored; ttl=60` / `…; detail=no-store` |
//! | other variant stored | `outpost; fwd=vary-miss; …` |
//! | not cacheable by method | `outpost; fwd=method; fwd-status=201` |
//! | skipped (known uncacheable, caching off) | `outpost; fwd=bypass; fwd-status=200` |
//! | the origin failed, nothing to serve | `outpost; fwd=uri-miss; detail=connect-refused` (`origin-timeout`, …) |
//! | refused for what the client sent | `outpost; detail=bad-host` (`bad-target`, `missing-host`, `bad-request`, …) |
//!
//! `collapsed` is added when the request waited on another request's fetch.

use std::fmt::Write;
use std::time::SystemTime;

use pingora_cache::{CacheMeta, CachePhase};

use crate::ctx::{Lookup, RequestCtx, StaleServed};
use crate::metrics::Outcome;
use crate::storage::Tier;

/// What the outcome is called in metrics and logs.
pub fn outcome(phase: CachePhase, ctx: &RequestCtx) -> Outcome {
    match phase {
        CachePhase::Hit => Outcome::Hit,
        CachePhase::StaleUpdating => Outcome::Stale,
        CachePhase::Stale if ctx.stale_served.is_some() => Outcome::Stale,
        CachePhase::Revalidated | CachePhase::RevalidatedNoCache(_) => Outcome::Revalidated,
        _ if ctx.lookup.is_some() => Outcome::Miss,
        _ if ctx.cache_used => Outcome::Bypass,
        _ => Outcome::Pass,
    }
}

/// Seconds of freshness left (negative when stale).
pub fn ttl(meta: &CacheMeta, now: SystemTime) -> i64 {
    ttl_until(meta.fresh_until(), now)
}

/// Seconds from `now` to `fresh_until` (negative when past).
pub fn ttl_until(fresh_until: SystemTime, now: SystemTime) -> i64 {
    match fresh_until.duration_since(now) {
        Ok(left) => i64::try_from(left.as_secs()).unwrap_or(i64::MAX),
        Err(e) => -i64::try_from(e.duration().as_secs()).unwrap_or(i64::MAX),
    }
}

/// The `Cache-Status` value. `meta` is the stored (or newly stored) object's, when there is one.
pub fn value(
    name: &str,
    phase: CachePhase,
    ctx: &RequestCtx,
    meta: Option<&CacheMeta>,
    method_cacheable: bool,
    collapsed: bool,
) -> String {
    let now = SystemTime::now();
    let mut s = String::from(name);
    let ttl_of = |m: Option<&CacheMeta>| m.map(|m| ttl(m, now));
    match phase {
        CachePhase::Hit => push_hit(&mut s, ttl_of(meta), ctx.tier),
        CachePhase::StaleUpdating => {
            s.push_str("; hit");
            push_ttl(&mut s, ttl_of(meta));
            s.push_str("; detail=stale-while-revalidate");
        }
        CachePhase::Stale if matches!(ctx.stale_served, Some(StaleServed::OnError(_))) => {
            s.push_str("; fwd=stale");
            if let Some(StaleServed::OnError(Some(status))) = ctx.stale_served {
                let _ = write!(s, "; fwd-status={status}");
            }
            push_ttl(&mut s, ttl_of(meta));
            s.push_str("; detail=stale-if-error");
        }
        _ => {
            let fwd = if ctx.forced_by_request {
                "request"
            } else {
                match ctx.lookup {
                    Some(Lookup::Stale | Lookup::Fresh) => "stale",
                    Some(Lookup::VaryMiss) => "vary-miss",
                    Some(Lookup::UriMiss) => "uri-miss",
                    None if !method_cacheable => "method",
                    None => "bypass",
                }
            };
            let _ = write!(s, "; fwd={fwd}");
            if let Some(status) = ctx.upstream_status {
                let _ = write!(s, "; fwd-status={status}");
            }
            if ctx.stored {
                s.push_str("; stored");
                push_ttl(&mut s, ttl_of(meta));
            } else if let Some(why) = ctx.detail {
                let _ = write!(s, "; detail={why}");
            }
        }
    }
    if collapsed {
        s.push_str("; collapsed");
    }
    s
}

/// What follows the node's name for a hit served as stored: `; hit; ttl=42; detail=l1`.
pub fn push_hit(s: &mut impl Write, ttl: Option<i64>, tier: Option<Tier>) {
    let _ = s.write_str("; hit");
    push_ttl(s, ttl);
    if let Some(tier) = tier {
        let _ = write!(s, "; detail={}", tier.as_str());
    }
}

fn push_ttl(s: &mut impl Write, ttl: Option<i64>) {
    if let Some(ttl) = ttl {
        let _ = write!(s, "; ttl={ttl}");
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use pingora_http::ResponseHeader;
    use std::time::Duration;

    fn meta(fresh_for: i64) -> CacheMeta {
        let now = SystemTime::now();
        let until = if fresh_for >= 0 {
            now + Duration::from_secs(fresh_for as u64 + 1)
        } else {
            now - Duration::from_secs(fresh_for.unsigned_abs())
        };
        CacheMeta::new(
            until,
            now,
            0,
            0,
            ResponseHeader::build(200, None).expect("header"),
        )
    }

    fn ctx() -> RequestCtx {
        RequestCtx {
            cache_used: true,
            tier: Some(Tier::L1),
            ..RequestCtx::new()
        }
    }

    #[test]
    fn hits_say_tier_and_ttl() {
        let v = value(
            "outpost",
            CachePhase::Hit,
            &ctx(),
            Some(&meta(30)),
            true,
            false,
        );
        assert_eq!(v, "outpost; hit; ttl=30; detail=l1");
        let v = value(
            "outpost",
            CachePhase::Hit,
            &ctx(),
            Some(&meta(30)),
            true,
            true,
        );
        assert!(v.ends_with("; collapsed"));
    }

    #[test]
    fn forwards_say_why_and_what_happened() {
        let mut c = ctx();
        c.lookup = Some(Lookup::UriMiss);
        c.upstream_status = Some(200);
        c.stored = true;
        assert_eq!(
            value(
                "outpost",
                CachePhase::Miss,
                &c,
                Some(&meta(60)),
                true,
                false
            ),
            "outpost; fwd=uri-miss; fwd-status=200; stored; ttl=60"
        );
        c.stored = false;
        c.detail = Some("no-store");
        assert_eq!(
            value(
                "outpost",
                CachePhase::Disabled(pingora_cache::NoCacheReason::OriginNotCache),
                &c,
                None,
                true,
                false
            ),
            "outpost; fwd=uri-miss; fwd-status=200; detail=no-store"
        );
        let mut stale = ctx();
        stale.lookup = Some(Lookup::Stale);
        stale.upstream_status = Some(304);
        stale.stored = true;
        assert_eq!(
            value(
                "outpost",
                CachePhase::Revalidated,
                &stale,
                Some(&meta(60)),
                true,
                false
            ),
            "outpost; fwd=stale; fwd-status=304; stored; ttl=60"
        );
        let post = RequestCtx {
            upstream_status: Some(201),
            ..RequestCtx::new()
        };
        assert_eq!(
            value(
                "outpost",
                CachePhase::Disabled(pingora_cache::NoCacheReason::NeverEnabled),
                &post,
                None,
                false,
                false
            ),
            "outpost; fwd=method; fwd-status=201"
        );
    }

    #[test]
    fn stale_serving_is_marked() {
        let v = value(
            "outpost",
            CachePhase::StaleUpdating,
            &ctx(),
            Some(&meta(-3)),
            true,
            false,
        );
        assert_eq!(v, "outpost; hit; ttl=-3; detail=stale-while-revalidate");
        let c = RequestCtx {
            stale_served: Some(StaleServed::OnError(Some(503))),
            ..ctx()
        };
        let v = value(
            "outpost",
            CachePhase::Stale,
            &c,
            Some(&meta(-20)),
            true,
            false,
        );
        assert_eq!(
            v,
            "outpost; fwd=stale; fwd-status=503; ttl=-20; detail=stale-if-error"
        );
    }
}
