//! The response heads of a stored object as the hit path writes them: built once per L1 entry
//! (the first time it is served this way; a refresh stores a new entry) by the same steps, in
//! the same order, as Pingora's hit path and the proxy's phases apply to every hit, then
//! serialised with the three per-hit values (`Age`, `Cache-Status`, `Connection`) left as slots.
//! A hit copies the pieces and fills the slots: no header map, no serialisation.
//!
//! The steps, with where the full path takes them: `Age` inserted and the version set
//! (`pingora_proxy`'s `cache_hit_header`), `304` made with Pingora's own `to_304` for a
//! conditional hit, `Accept-Ranges` ([`crate::headers::advertise_ranges`], the proxy's
//! `range_header_filter`), what the client must not see and `Via`
//! ([`crate::headers::for_client`], `response_filter`), `Cache-Status` (`response_filter`), then
//! what Pingora's HTTP/1 writer adds: `Date` (the stored one, as [`crate::connection::date`]
//! writes it back over Pingora's) and `Connection`.

use bytes::BytesMut;
use http::header::{AGE, CONNECTION, CONTENT_LENGTH, DATE};
use http::{HeaderValue, StatusCode, Version};
use pingora_core::protocols::http::conditional_filter::to_304;
use pingora_http::ResponseHeader;

use crate::connection::date;
use crate::headers::{CACHE_STATUS, advertise_ranges, for_client};
use crate::policy::vary;

/// A per-hit value in a serialised head.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Slot {
    Age,
    CacheStatus,
    Connection,
}

impl Slot {
    const ALL: [Slot; 3] = [Slot::Age, Slot::CacheStatus, Slot::Connection];

    /// What stands in for the value while the head is built: no origin sends these (and a head
    /// that holds one twice is not prepared at all).
    fn marker(self) -> &'static str {
        match self {
            Slot::Age => "\t{outpost-hit-age}\t",
            Slot::CacheStatus => "\t{outpost-hit-cache-status}\t",
            Slot::Connection => "\t{outpost-hit-connection}\t",
        }
    }
}

/// A serialised head: literal bytes, each run followed by a slot, and the bytes after the last.
#[derive(Debug)]
pub struct Template {
    pieces: Vec<(Vec<u8>, Slot)>,
    tail: Vec<u8>,
}

impl Template {
    /// Writes the head into `out`, asking `fill` for each slot's value.
    pub fn write(&self, out: &mut Vec<u8>, mut fill: impl FnMut(Slot, &mut Vec<u8>)) {
        for (bytes, slot) in &self.pieces {
            out.extend_from_slice(bytes);
            fill(*slot, out);
        }
        out.extend_from_slice(&self.tail);
    }
}

/// What the hit path keeps with an L1 entry.
#[derive(Debug)]
pub struct Prepared {
    /// The whole response's head; `None` when the hit path cannot serve this object (no
    /// `Content-Length`, no readable `Date`): the full path does.
    pub full: Option<Template>,
    /// The head of a `304` answered from it.
    pub not_modified: Option<Template>,
    /// The stored response names `Vary` fields: the request's variance must match the entry's.
    pub varies: bool,
}

impl Prepared {
    /// The heads of a stored response, with this node's `Via`.
    pub fn of(stored: &ResponseHeader, via: &str, via_value: &HeaderValue) -> Self {
        Self {
            full: template(stored, false, via, via_value),
            not_modified: template(stored, true, via, via_value),
            varies: matches!(vary::vary_on(&stored.headers), vary::VaryOn::Fields(_)),
        }
    }
}

/// The head of a hit on `stored`, a `304` if `not_modified`, built as the full path builds it.
fn template(
    stored: &ResponseHeader,
    not_modified: bool,
    via: &str,
    via_value: &HeaderValue,
) -> Option<Template> {
    let mut h = stored.clone();
    h.insert_header(AGE, Slot::Age.marker()).ok()?;
    h.set_version(Version::HTTP_11);
    // Without a length the full path chunks the body: not this path's business. (Stored
    // objects get one when they are stored.)
    let bodiless = matches!(h.status, StatusCode::NO_CONTENT | StatusCode::NOT_MODIFIED);
    if !bodiless && !h.headers.contains_key(CONTENT_LENGTH) {
        return None;
    }
    if not_modified {
        to_304(&mut h);
    }
    advertise_ranges(&mut h);
    for_client(&mut h, via, via_value).ok()?;
    h.insert_header(CACHE_STATUS, Slot::CacheStatus.marker())
        .ok()?;
    let date = h.headers.get(DATE).and_then(date::of_value)?;
    h.insert_header(DATE, HeaderValue::from_bytes(&date).ok()?)
        .ok()?;
    h.insert_header(CONNECTION, Slot::Connection.marker())
        .ok()?;
    split(&serialise(&h))
}

/// The head as Pingora's HTTP/1 writer serialises it.
fn serialise(h: &ResponseHeader) -> Vec<u8> {
    let mut buf = BytesMut::with_capacity(512);
    buf.extend_from_slice(b"HTTP/1.1 ");
    buf.extend_from_slice(h.status.as_str().as_bytes());
    buf.extend_from_slice(b" ");
    if let Some(reason) = h.get_reason_phrase() {
        buf.extend_from_slice(reason.as_bytes());
    }
    buf.extend_from_slice(b"\r\n");
    h.header_to_h1_wire(&mut buf);
    buf.extend_from_slice(b"\r\n");
    buf.to_vec()
}

/// Cuts a serialised head at its markers, each of which must appear exactly once.
fn split(head: &[u8]) -> Option<Template> {
    let mut at: Vec<(usize, Slot)> = Vec::with_capacity(Slot::ALL.len());
    for slot in Slot::ALL {
        let marker = slot.marker().as_bytes();
        let mut found = memchr::memmem::find_iter(head, marker);
        let (Some(first), None) = (found.next(), found.next()) else {
            return None;
        };
        at.push((first, slot));
    }
    at.sort_unstable_by_key(|(pos, _)| *pos);
    let mut pieces = Vec::with_capacity(at.len());
    let mut from = 0;
    for (pos, slot) in at {
        pieces.push((head[from..pos].to_vec(), slot));
        from = pos + slot.marker().len();
    }
    Some(Template {
        pieces,
        tail: head[from..].to_vec(),
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    fn stored(fields: &[(&str, &str)]) -> ResponseHeader {
        let mut h = ResponseHeader::build(200, None).expect("header");
        for (k, v) in fields {
            h.append_header(k.to_string(), *v).expect("field");
        }
        h
    }

    fn written(t: &Template) -> String {
        let mut out = Vec::new();
        t.write(&mut out, |slot, out| {
            out.extend_from_slice(match slot {
                Slot::Age => b"7",
                Slot::CacheStatus => b"edge; hit",
                Slot::Connection => b"keep-alive",
            })
        });
        String::from_utf8(out).expect("ascii")
    }

    #[test]
    fn a_hit_head_keeps_the_stored_order_and_fills_its_slots() {
        let via = HeaderValue::from_static("1.1 edge");
        let p = Prepared::of(
            &stored(&[
                ("Date", "Sun, 06 Nov 1994 08:49:37 GMT"),
                ("Content-Length", "5"),
                ("Content-Type", "text/plain"),
                ("ETag", "\"v1\""),
                ("Surrogate-Key", "a b"),
                ("Accept-Ranges", "bytes"),
            ]),
            "1.1 edge",
            &via,
        );
        assert!(!p.varies);
        assert_eq!(
            written(p.full.as_ref().expect("servable")),
            // As Pingora's header map orders them: removing `Surrogate-Key` moved the last
            // field (`Age`) into its place.
            "HTTP/1.1 200 OK\r\nDate: Sun, 06 Nov 1994 08:49:37 GMT\r\nContent-Length: 5\r\n\
             Content-Type: text/plain\r\nETag: \"v1\"\r\nAge: 7\r\nAccept-Ranges: bytes\r\n\
             via: 1.1 edge\r\ncache-status: edge; hit\r\nConnection: keep-alive\r\n\r\n"
        );
        assert_eq!(
            written(p.not_modified.as_ref().expect("servable")),
            "HTTP/1.1 304 Not Modified\r\nDate: Sun, 06 Nov 1994 08:49:37 GMT\r\nAge: 7\r\n\
             ETag: \"v1\"\r\nvia: 1.1 edge\r\ncache-status: edge; hit\r\n\
             Connection: keep-alive\r\n\r\n"
        );
    }

    #[test]
    fn objects_the_full_path_must_serve_are_not_prepared() {
        let via = HeaderValue::from_static("1.1 edge");
        let no_date = Prepared::of(&stored(&[("Content-Length", "5")]), "1.1 edge", &via);
        assert!(no_date.full.is_none());
        let no_length = Prepared::of(
            &stored(&[("Date", "Sun, 06 Nov 1994 08:49:37 GMT")]),
            "1.1 edge",
            &via,
        );
        assert!(no_length.full.is_none());
        let marker = Prepared::of(
            &stored(&[
                ("Date", "Sun, 06 Nov 1994 08:49:37 GMT"),
                ("Content-Length", "5"),
                ("X-Odd", Slot::Age.marker().trim()),
                ("X-Odder", Slot::Age.marker()),
            ]),
            "1.1 edge",
            &via,
        );
        assert!(marker.full.is_none(), "a marker in the stored head");
        let varies = Prepared::of(
            &stored(&[
                ("Date", "Sun, 06 Nov 1994 08:49:37 GMT"),
                ("Content-Length", "5"),
                ("Vary", "Accept-Encoding"),
            ]),
            "1.1 edge",
            &via,
        );
        assert!(varies.varies && varies.full.is_some());
    }
}
