//! `RequestCtx`: what one request learns on its way through the proxy phases, for the later
//! phases, `Cache-Status`, metrics and the access log.

use std::sync::Arc;
use std::time::{Duration, Instant, SystemTime};

use pingora_http::ResponseHeader;

use crate::client::Client;
use crate::connection::framing::Head;
use crate::metrics::Outcome;
use crate::origin_fault::OriginFault;
use crate::policy::NotStored;
use crate::policy::directives::Directives;
use crate::sites::Site;
use crate::target::Target;

/// What the cache lookup found.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Lookup {
    /// Nothing stored for the URL.
    UriMiss,
    /// The URL is stored, but not the variant this request's `Vary` fields select.
    VaryMiss,
    Fresh,
    Stale,
}

/// Why a stale response was served.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum StaleServed {
    /// Within stale-while-revalidate; a refresh runs in the background.
    WhileRevalidating,
    /// Within stale-if-error, because the origin failed (its status, if it answered).
    OnError(Option<u16>),
}

#[derive(Debug)]
pub struct RequestCtx {
    pub started: Instant,
    /// The request target, parsed once: the cache key and the origin request come from it.
    /// `None` only before `request_filter` (or when it refused the request).
    pub target: Option<Target>,
    /// What the connection's framing follower saw of this request's head (HTTP/1 only).
    pub head: Option<Head>,
    /// Who sent the request.
    pub client: Client,
    /// The site its host chose (`None` only before `request_filter`, or for an unknown host).
    pub site: Option<Arc<Site>>,
    /// A GET or HEAD with a body: the cache stays out of it.
    pub has_body: bool,
    /// Request cache directives, parsed once.
    pub req_dirs: Directives,
    /// The cache took part in this request (a GET or HEAD with caching on).
    pub cache_used: bool,
    pub lookup: Option<Lookup>,
    /// The tier that held the stored response, if one was found.
    pub tier: Option<crate::storage::Tier>,
    /// The client's directives forced a stored response to be revalidated.
    pub forced_by_request: bool,
    /// When the request to the origin was sent and its response header arrived.
    pub request_time: Option<SystemTime>,
    pub response_time: Option<SystemTime>,
    pub upstream_sent_at: Option<Instant>,
    pub upstream_status: Option<u16>,
    /// The origin asked last, and how long its response head took (for the access log).
    pub origin_addr: Option<pingora_core::protocols::l4::socket::SocketAddr>,
    pub origin_time: Option<Duration>,
    /// When the response head was handed to the connection (time to first byte).
    pub head_sent_at: Option<Instant>,
    /// Logged and sent to the origin as `X-Request-Id`: a trusted proxy's, or a new one made
    /// when first needed ([`RequestCtx::request_id`]); empty until then.
    pub request_id: String,
    /// A 304 received while revalidating, merged into the stored header in full (§3.2).
    pub not_modified: Option<Box<ResponseHeader>>,
    /// The response was admitted to the cache.
    pub stored: bool,
    /// Why the response was not stored, or what failed (`detail=` in `Cache-Status`).
    pub detail: Option<NotStored>,
    pub stale_served: Option<StaleServed>,
    /// How the exchange with the origin failed, if it did (for the access log).
    pub origin_fault: Option<OriginFault>,
    /// A stored response was found (fresh or stale); if the origin then fails and it is not
    /// served, the answer is 504 (RFC 9111 §4.2.4).
    pub had_stored: bool,
    /// Failed attempts to connect to an origin (for retrying another one).
    pub connect_failures: usize,
    /// The `Cache-Status` sent, for logs and metrics.
    pub cache_status: Option<String>,
    pub outcome: Outcome,
}

impl RequestCtx {
    pub fn new() -> Self {
        Self {
            started: Instant::now(),
            target: None,
            head: None,
            client: Client::default(),
            site: None,
            has_body: false,
            req_dirs: Directives::default(),
            cache_used: false,
            lookup: None,
            tier: None,
            forced_by_request: false,
            request_time: None,
            response_time: None,
            upstream_sent_at: None,
            upstream_status: None,
            origin_addr: None,
            origin_time: None,
            head_sent_at: None,
            request_id: String::new(),
            not_modified: None,
            stored: false,
            detail: None,
            stale_served: None,
            origin_fault: None,
            had_stored: false,
            connect_failures: 0,
            cache_status: None,
            outcome: Outcome::Pass,
        }
    }
}

impl RequestCtx {
    /// The request id, made now if no trusted proxy sent one: only a request that reaches the
    /// origin or the access log needs one.
    pub fn request_id(&mut self) -> &str {
        if self.request_id.is_empty() {
            self.request_id = crate::access_log::new_request_id();
        }
        &self.request_id
    }
}

impl Default for RequestCtx {
    fn default() -> Self {
        Self::new()
    }
}
