//! `Date` is end-to-end (RFC 9110 §6.6.1): a cache serves the stored `Date` unchanged, and
//! `Age` says how old the answer is. Pingora's HTTP/1 writer stamps its own clock over `Date` on
//! every response head, after the proxy's last phase, with no switch to turn it off. So the
//! proxy tells the connection which date the next head must carry, and the connection writes it
//! back over Pingora's: both are IMF-fixdates, 29 bytes, so the head keeps its length and
//! nothing else in it moves. An answer whose origin sent no (readable) `Date` keeps the edge's.

use std::time::SystemTime;

/// An IMF-fixdate (`Sun, 06 Nov 1994 08:49:37 GMT`): always this long.
pub const LEN: usize = 29;

pub type HttpDate = [u8; LEN];

/// `t` as an IMF-fixdate.
pub fn format(t: SystemTime) -> HttpDate {
    let mut out = [b' '; LEN];
    let text = httpdate::fmt_http_date(t);
    if text.len() == LEN {
        out.copy_from_slice(text.as_bytes());
    }
    out
}

/// The date to send for a `Date` field value: its own bytes when it has an IMF-fixdate's length
/// (the origin's value, end to end, at no parsing cost on a hit), else the instant it names in
/// any HTTP-date form, re-written as an IMF-fixdate; `None` when it names none.
pub fn of_value(value: &http::HeaderValue) -> Option<HttpDate> {
    if let Ok(same) = HttpDate::try_from(value.as_bytes()) {
        return Some(same);
    }
    let t = crate::policy::http_date::parse(value.to_str().ok()?)?;
    Some(format(t))
}

/// A date being written over a head's `Date` value, possibly across several writes.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Patch {
    date: HttpDate,
    /// Where the value starts, relative to the start of the next write (negative once part of
    /// it has been written).
    start: isize,
}

impl Patch {
    /// A patch for the head at the start of `buf`, if it has a `Date` field of the right length.
    pub fn for_head(buf: &[u8], date: HttpDate) -> Option<Self> {
        let start = isize::try_from(value_offset(buf)?).ok()?;
        Some(Self { date, start })
    }

    /// How much of `buf` the next write should take so the patch can be applied to a copy: up
    /// to the end of the value.
    pub fn prefix_len(&self, buf_len: usize) -> usize {
        usize::try_from(self.start + LEN as isize)
            .unwrap_or(0)
            .min(buf_len)
    }

    /// Writes the date over the part of the value that falls in `out`.
    pub fn apply(&self, out: &mut [u8]) {
        let from = self.start.max(0);
        let to = (self.start + LEN as isize).min(out.len() as isize);
        if from < to {
            let (from, to) = (from as usize, to as usize);
            let skip = (from as isize - self.start) as usize;
            out[from..to].copy_from_slice(&self.date[skip..skip + (to - from)]);
        }
    }

    /// The patch after `written` more bytes went out; `None` once the whole value has.
    pub fn advanced(self, written: usize) -> Option<Self> {
        let start = self.start - isize::try_from(written).unwrap_or(isize::MAX);
        (start + (LEN as isize) > 0).then_some(Self { start, ..self })
    }
}

/// Where the value of the `Date` field starts in the head at the start of `buf`, when the value
/// is an IMF-fixdate's length. One pass over the field lines, stopping at the head's end.
fn value_offset(buf: &[u8]) -> Option<usize> {
    let mut line_start = buf.iter().position(|&b| b == b'\n')? + 1;
    loop {
        let rest = buf.get(line_start..)?;
        let line_len = rest.iter().position(|&b| b == b'\n')?;
        let line = &rest[..line_len];
        let line = line.strip_suffix(b"\r").unwrap_or(line);
        if line.is_empty() {
            return None;
        }
        if line.len() > 5 && line[..5].eq_ignore_ascii_case(b"date:") {
            let spaces = line[5..].iter().take_while(|&&b| b == b' ').count();
            return (line.len() - 5 - spaces == LEN).then_some(line_start + 5 + spaces);
        }
        line_start += line_len + 1;
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const HEAD: &[u8] = b"HTTP/1.1 200 OK\r\ncontent-length: 2\r\ndate: Tue, 01 Dec 2026 14:00:00 GMT\r\nage: 5\r\n\r\nhi";
    const STORED: &[u8; LEN] = b"Mon, 30 Nov 2026 09:08:07 GMT";

    fn written_through(patch: Patch, writes: &[usize]) -> Vec<u8> {
        let mut out = Vec::new();
        let mut rest = HEAD;
        let mut patch = Some(patch);
        for &n in writes {
            let take = patch.map_or(n, |p| p.prefix_len(rest.len()).min(n));
            let mut chunk = rest[..take].to_vec();
            if let Some(p) = patch {
                p.apply(&mut chunk);
                patch = p.advanced(take);
            }
            out.extend_from_slice(&chunk);
            rest = &rest[take..];
        }
        out.extend_from_slice(rest);
        out
    }

    #[test]
    fn the_stored_date_replaces_the_edges_in_one_write_or_many() {
        let patch = Patch::for_head(HEAD, *STORED).expect("a date field");
        let expected = String::from_utf8_lossy(HEAD).replace(
            "Tue, 01 Dec 2026 14:00:00 GMT",
            "Mon, 30 Nov 2026 09:08:07 GMT",
        );
        for writes in [
            vec![1000],
            vec![10, 1000],
            vec![50, 3, 1, 1000],
            vec![60, 5, 1000],
        ] {
            assert_eq!(
                String::from_utf8_lossy(&written_through(patch, &writes)),
                expected,
                "{writes:?}"
            );
        }
    }

    #[test]
    fn only_a_date_field_of_the_right_shape_is_patched() {
        assert!(Patch::for_head(b"HTTP/1.1 200 OK\r\ndate: soon\r\n\r\n", *STORED).is_none());
        assert!(
            Patch::for_head(
                b"HTTP/1.1 200 OK\r\nx-date: Tue, 01 Dec 2026 14:00:00 GMT\r\n\r\n",
                *STORED
            )
            .is_none()
        );
        assert!(
            Patch::for_head(
                b"HTTP/1.1 200 OK\r\ndate: Tue, 01 Dec 2026 14:00:00 G",
                *STORED
            )
            .is_none(),
            "not a whole field line"
        );
        assert!(
            Patch::for_head(
                b"HTTP/1.1 200 OK\r\nDate:Tue, 01 Dec 2026 14:00:00 GMT\r\n\r\n",
                *STORED
            )
            .is_some()
        );
        assert_eq!(
            &format(std::time::UNIX_EPOCH),
            b"Thu, 01 Jan 1970 00:00:00 GMT"
        );
    }

    #[test]
    fn a_date_value_in_any_form_becomes_an_imf_fixdate() {
        let value = |v: &'static str| of_value(&http::HeaderValue::from_static(v));
        assert_eq!(
            value("Mon, 30 Nov 2026 09:08:07 GMT").as_ref(),
            Some(STORED)
        );
        assert_eq!(
            value("Monday, 30-Nov-26 09:08:07 GMT").as_ref(),
            Some(STORED)
        );
        assert_eq!(value("mon nov 30 09:08:07 2026").as_ref(), Some(STORED));
        assert_eq!(value("soon"), None);
    }
}
