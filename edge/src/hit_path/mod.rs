//! The hit path: answers an HTTP/1.1 request on the spot when it is a GET or HEAD of a fresh
//! object in L1 that nothing about the request or a purge keeps from being served as stored,
//! byte for byte as the proxy would answer it, without building a Pingora session. Everything
//! else is declined and goes to the proxy (see [`crate::connection::http1`]).
//!
//! What it answers is decided by the same code the proxy runs: the target and site
//! ([`target::parse_origin_form`], [`crate::sites`]), the key ([`cache_key::primary_bin`]), the
//! purge filter ([`TieredStorage::fresh_in_l1`]), `Vary` ([`vary::variance`]), the client's
//! directives ([`Policy::forces_revalidation`]), conditionals ([`conditional::not_modified_by`]);
//! the head comes from [`wire`]. Whatever it does not follow exactly is declined: request
//! bodies, ranges, `Expect`, `Upgrade`, `Connection` beyond `close`/`keep-alive`, a field the
//! proxy would remove before the cache sees the request, HTTP/1.0, targets other than
//! origin-form, objects stale or only in L2. A `Vary` variant in a secondary slot is served when
//! the proxy's second lookup would serve it (see [`HitPath::variant`]).

pub mod wire;

use std::net::IpAddr;
use std::ops::Range;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::{Duration, Instant, SystemTime};

use http::{HeaderMap, HeaderName, HeaderValue, Method};
use outpost_common::access_log::AccessLog;
use pingora_cache::key::{CacheHashKey, HashBinary};
use pingora_core::protocols::tls::SslDigest;

use crate::access_log;
use crate::cache_key;
use crate::cache_status;
use crate::client::forwarded_for;
use crate::conditional;
use crate::connection::http1::{self, Answers, Head};
use crate::headers::list_members;
use crate::metrics::{Metrics, Outcome};
use crate::policy::{Policy, directives, vary};
use crate::sites::{LiveSites, Site};
use crate::storage::body::Body;
use crate::storage::l1::L1Entry;
use crate::storage::{Tier, TieredStorage};
use crate::target::{self, Scheme};
use crate::tls::resolver::misdirected;
use crate::upstream::removed_before_the_cache;
use wire::{Prepared, Slot};

/// Longest field name the hit path looks at (longer ones are declined): the length of its
/// lower-casing buffer.
const MAX_NAME: usize = 64;

/// What the hit path needs of the proxy's configuration.
pub struct HitPath {
    pub name: String,
    pub via: String,
    pub via_value: HeaderValue,
    pub cache_enabled: bool,
    pub policy: Policy,
    pub sites: Arc<LiveSites>,
    pub storage: &'static TieredStorage,
    pub metrics: Arc<Metrics>,
    pub trusted_proxies: Vec<ipnet::IpNet>,
    /// As the proxy has them (see `EdgeProxy`).
    pub strip_request_headers: Vec<String>,
    pub drop_underscored_headers: bool,
    pub max_request_header_bytes: usize,
    /// Set on SIGTERM: answers close their connection.
    pub closing: Arc<AtomicBool>,
    /// `server.keepalive_timeout_secs` and `server.send_timeout_ms`.
    pub keepalive: Duration,
    pub send_timeout: Duration,
    pub access_log: Arc<AccessLog>,
}

/// The connection a request came on.
pub struct Conn {
    pub scheme: Scheme,
    pub tls: Option<Arc<SslDigest>>,
    /// The peer is a trusted proxy (its forwarding fields reach the cache).
    pub trusted: bool,
    pub peer: Option<IpAddr>,
}

/// An answer whose head is in the caller's buffer.
pub struct Answer {
    body: Option<Body>,
    keep_alive: bool,
    /// For the access log line, written once the answer has been sent.
    site: Arc<Site>,
    method: Method,
    status: u16,
    cache_status: String,
    started: Instant,
    /// To the head being ready to write.
    ttfb: Duration,
    /// What the line needs of the request (only when the access log is on).
    logged: Option<Logged>,
}

/// What a request's access line shows: its parts still in the read buffer by where they lie in
/// the head ([`Head::range_of`]), nothing copied.
struct Logged {
    start: SystemTime,
    /// The peer, or what a trusted proxy says it forwarded for (as [`crate::client::Client`]
    /// decides for the proxy).
    client: Option<IpAddr>,
    /// The canonical authority, as the proxy logs it.
    host: String,
    target: Range<usize>,
    referer: Option<Range<usize>>,
    user_agent: Option<Range<usize>>,
    /// A trusted proxy's `X-Request-Id`.
    request_id: Option<Range<usize>>,
}

/// What a scan of the request's fields found.
#[derive(Default)]
struct Scan<'b> {
    host: Option<&'b [u8]>,
    close: bool,
    keep_alive: bool,
    /// Conditionals or cache directives: the fields are needed as a map.
    needs_map: bool,
    /// Bytes of the head as the proxy counts them against `server.max_request_header_bytes`.
    size: usize,
    /// For the access line: the first of each, as the proxy's header map gives it.
    user_agent: Option<&'b [u8]>,
    referer: Option<&'b [u8]>,
    /// Only a trusted proxy's reach this far (an untrusted client's are declined above).
    forwarded_for: Option<&'b [u8]>,
    request_id: Option<&'b [u8]>,
}

impl http1::Answer for Answer {
    fn body(&self) -> Option<&Body> {
        self.body.as_ref()
    }

    fn keep_alive(&self) -> bool {
        self.keep_alive
    }
}

impl Answers for HitPath {
    type Conn = Conn;
    type Answer = Answer;

    fn conn(&self, tls: Option<Arc<SslDigest>>, peer: Option<IpAddr>) -> Conn {
        Conn {
            scheme: if tls.is_some() {
                Scheme::Https
            } else {
                Scheme::Http
            },
            tls,
            trusted: peer.is_some_and(|ip| self.trusted_proxies.iter().any(|n| n.contains(&ip))),
            peer,
        }
    }

    /// Answers `head` if it is a hit this path serves exactly as the proxy would: the head goes
    /// into `out` and the hit is counted (its access line is written once it is sent: `log`).
    /// `None`: the proxy answers it.
    fn answer(&self, head: &Head<'_, '_>, conn: &Conn, out: &mut Vec<u8>) -> Option<Answer> {
        let started = Instant::now();
        if !self.cache_enabled || !head.line_ok || head.version != 1 {
            return None;
        }
        let method = match head.method {
            "GET" => Method::GET,
            "HEAD" => Method::HEAD,
            _ => return None,
        };
        let raw = head.target;
        if !raw.starts_with('/') || !raw.bytes().all(|b| (0x21..=0x7e).contains(&b)) {
            return None;
        }
        let scan = self.scan(head, conn.trusted)?;
        let size = scan.size + head.method.len() + raw.len() + 12;
        if size > self.max_request_header_bytes {
            return None;
        }
        let sites = self.sites.current();
        let mut site = None;
        let parsed = target::parse_origin_form(raw, scan.host?, conn.scheme, |authority| {
            site = sites.route(target::host_of(authority));
            site.map_or(&target::KEEP_ALL, |s| s.keys.rules())
        });
        let (target, site) = (parsed.ok()?, Arc::clone(site?));
        drop(sites);
        if site.redirect_to_https && conn.scheme == Scheme::Http
            || misdirected(conn.tls.as_deref(), target::host_of(&target.authority))
        {
            return None;
        }
        let key = target.key_text();
        let now = SystemTime::now();
        let primary = cache_key::primary_bin(&key);
        let mut entry = self.storage.fresh_in_l1(&primary, &primary, &key, now)?;
        let mut prepared = self.prepared(&entry)?;
        let fields = (scan.needs_map || prepared.varies)
            .then(|| field_map(head.fields))
            .flatten();
        if scan.needs_map || prepared.varies {
            // Could not be built as the proxy builds it: let the proxy refuse it.
            fields.as_ref()?;
        }
        // The L1 lookups the proxy would make: one, or two for a variant in a secondary slot.
        let mut lookups = 1;
        if prepared.varies
            && let Some(variance) = vary::variance(&entry.meta.header.headers, fields.as_ref()?)
            && entry.meta.variance != Some(variance)
        {
            let variant = self.variant(&key, variance, &entry, fields.as_ref()?, now)?;
            entry = variant;
            prepared = self.prepared(&entry)?;
            lookups = 2;
        }
        let meta = &entry.meta;
        let age = now.duration_since(meta.epoch).unwrap_or_default();
        if let Some(f) = &fields
            && (f.contains_key(http::header::CACHE_CONTROL) || f.contains_key(http::header::PRAGMA))
        {
            let lifetime = meta
                .fresh_until
                .duration_since(meta.epoch)
                .unwrap_or_default();
            if self
                .policy
                .forces_revalidation(&directives::request(f), age, lifetime)
            {
                return None;
            }
        }
        let not_modified = fields
            .as_ref()
            .is_some_and(|f| conditional::not_modified_by(&method, f, &meta.header));
        let template = match not_modified {
            true => prepared.not_modified.as_ref()?,
            false => prepared.full.as_ref()?,
        };

        let keep_alive = (scan.keep_alive || !scan.close)
            && !head.shutting_down
            && !self.closing.load(Ordering::Relaxed);
        let mut cache_status = String::with_capacity(self.name.len() + 32);
        cache_status.push_str(&self.name);
        cache_status::push_hit(
            &mut cache_status,
            Some(cache_status::ttl_until(meta.fresh_until, now)),
            Some(Tier::L1),
        );
        out.clear();
        template.write(out, |slot, out| match slot {
            Slot::Age => {
                let _ = std::io::Write::write_fmt(out, format_args!("{}", age.as_secs()));
            }
            Slot::CacheStatus => out.extend_from_slice(cache_status.as_bytes()),
            Slot::Connection => out.extend_from_slice(match keep_alive {
                true => b"keep-alive",
                false => b"close",
            }),
        });
        let body = (method == Method::GET && !not_modified).then(|| entry.body.clone());
        let logged = self.access_log.is_on().then(|| Logged {
            start: now,
            client: match scan.forwarded_for {
                Some(xff) if conn.trusted => forwarded_for(xff).or(conn.peer),
                _ => conn.peer,
            },
            host: target.authority,
            target: head.range_of(raw.as_bytes()),
            referer: scan.referer.map(|v| head.range_of(v)),
            user_agent: scan.user_agent.map(|v| head.range_of(v)),
            request_id: scan
                .request_id
                .filter(|_| conn.trusted)
                .map(|v| head.range_of(v)),
        });

        for _ in 0..lookups {
            self.storage.count_l1_hit();
        }
        self.metrics.request(Outcome::Hit);
        self.metrics.hit_path_answers.inc();
        site.count(Outcome::Hit);
        Some(Answer {
            body,
            keep_alive,
            site,
            method,
            status: if not_modified {
                304
            } else {
                meta.header.status.as_u16()
            },
            cache_status,
            ttfb: started.elapsed(),
            started,
            logged,
        })
    }

    /// The access line of an answer sent (or not: `error`), as the proxy writes it for every
    /// request. `target` is the request's.
    fn log(&self, answer: &Answer, head: &[u8], error: Option<&pingora_error::Error>) {
        let Some(logged) = &answer.logged else { return };
        let at = |r: &Range<usize>| head.get(r.clone()).unwrap_or_default();
        let part = |r: &Option<Range<usize>>| r.as_ref().map_or(&b""[..], at);
        let request_id = access_log::forwarded_request_id(part(&logged.request_id))
            .unwrap_or_else(access_log::new_request_id);
        let error = error.map(ToString::to_string);
        let entry = access_log::Entry {
            start: logged.start,
            client: logged.client,
            host: logged.host.as_bytes(),
            site: answer.site.name.as_str(),
            method: answer.method.as_str(),
            target: at(&logged.target),
            version: "HTTP/1.1",
            status: answer.status,
            bytes: match (&answer.body, &error) {
                (Some(body), None) => body.len(),
                _ => 0,
            },
            ttfb: Some(answer.ttfb),
            total: answer.started.elapsed(),
            outcome: Outcome::Hit,
            cache_status: &answer.cache_status,
            tier: Some(Tier::L1),
            origin: None,
            origin_time: None,
            origin_fault: None,
            request_id: &request_id,
            referer: part(&logged.referer),
            user_agent: part(&logged.user_agent),
            error: error.as_deref(),
        };
        if let Some(line) = access_log::line(self.access_log.format(), &entry) {
            self.access_log.write(&line);
        }
    }

    fn keepalive(&self) -> Duration {
        self.keepalive
    }

    fn send_timeout(&self) -> Duration {
        self.send_timeout
    }
}

impl HitPath {
    /// The heads serialised for `entry`, once for all its hits.
    fn prepared<'e>(&self, entry: &'e L1Entry) -> Option<&'e Prepared> {
        entry
            .prepared
            .get_or_init(|| Box::new(Prepared::of(&entry.meta.header, &self.via, &self.via_value)))
            .downcast_ref::<Prepared>()
    }

    /// The variant `variance` of the URL whose primary slot holds `primary` (another variant),
    /// when the proxy's second lookup would serve it as stored: fresh in L1, let through by the
    /// purge filter, stored no earlier than the primary slot's object (Pingora's rule: a purge of
    /// the URL removes the primary slot only, and its successor outdates every older variant),
    /// and naming the same variance by its own `Vary`.
    fn variant(
        &self,
        key: &str,
        variance: HashBinary,
        primary: &L1Entry,
        fields: &HeaderMap,
        now: SystemTime,
    ) -> Option<Arc<L1Entry>> {
        let mut slot = cache_key::key(key.to_owned());
        slot.set_variance_key(variance);
        // Judged as its URL: purges mark the primary key, whichever slot a variant is in.
        let variant =
            self.storage
                .fresh_in_l1(&slot.combined_bin(), &slot.primary_bin(), key, now)?;
        let meta = &variant.meta;
        (meta.variance == Some(variance)
            && meta.stored >= primary.meta.stored
            && vary::variance(&meta.header.headers, fields) == Some(variance))
        .then_some(variant)
    }

    /// One pass over the fields: the host, the keep-alive wish, and whether anything in them is
    /// beyond this path (`None`).
    fn scan<'b>(&self, head: &Head<'b, '_>, trusted: bool) -> Option<Scan<'b>> {
        let mut scan = Scan::default();
        let mut lower = [0u8; MAX_NAME];
        for field in head.fields {
            scan.size += field.name.len() + field.value.len() + 4;
            let name = lower.get_mut(..field.name.len())?;
            name.copy_from_slice(field.name.as_bytes());
            name.make_ascii_lowercase();
            let name = std::str::from_utf8(name).ok()?;
            match name {
                "host" if scan.host.is_some() => return None,
                "host" => scan.host = Some(field.value),
                "content-length" | "transfer-encoding" | "range" | "if-range" | "expect"
                | "upgrade" | "close" => return None,
                "connection" => {
                    for member in list_members(std::str::from_utf8(field.value).ok()?) {
                        if member.eq_ignore_ascii_case("close") {
                            scan.close = true;
                        } else if member.eq_ignore_ascii_case("keep-alive") {
                            scan.keep_alive = true;
                        } else {
                            return None;
                        }
                    }
                }
                "if-none-match" | "if-modified-since" | "cache-control" | "pragma" => {
                    scan.needs_map = true;
                }
                _ if removed_before_the_cache(
                    name,
                    trusted,
                    &self.strip_request_headers,
                    self.drop_underscored_headers,
                ) =>
                {
                    return None;
                }
                "user-agent" => {
                    scan.user_agent.get_or_insert(field.value);
                }
                "referer" => {
                    scan.referer.get_or_insert(field.value);
                }
                "x-forwarded-for" => {
                    scan.forwarded_for.get_or_insert(field.value);
                }
                "x-request-id" => {
                    scan.request_id.get_or_insert(field.value);
                }
                _ => {}
            }
        }
        Some(scan)
    }
}

/// The request's fields as the proxy holds them (Pingora builds its map the same way, in order).
fn field_map(fields: &[httparse::Header<'_>]) -> Option<HeaderMap> {
    let mut map = HeaderMap::with_capacity(fields.len());
    for f in fields {
        map.append(
            HeaderName::from_bytes(f.name.as_bytes()).ok()?,
            HeaderValue::from_bytes(f.value).ok()?,
        );
    }
    Some(map)
}
