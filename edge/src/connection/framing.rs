//! Follows the HTTP/1 request framing of a client connection byte by byte, beside Pingora's own
//! parser: where each request head starts and ends (for the head deadline), and whether chunked
//! framing is exactly what RFC 9112 §7.1 allows. Pingora's chunk parser (httparse) accepts any
//! byte inside a chunk extension, bare LF included; two parsers that disagree on where a chunk
//! ends is what request smuggling is made of, so such a body is refused here instead.
//!
//! It decides nothing about content: it only needs the request line, `Transfer-Encoding` and
//! `Content-Length` of each head. Where it cannot follow (a head Pingora will refuse anyway,
//! `CONNECT`, a connection the proxy switched to another protocol with a `101`: see
//! [`Framing::stop`]) it stops watching rather than guess. An `Upgrade` request answered with
//! anything but `101` is just a request: the connection goes on being followed.

use std::collections::VecDeque;

/// Longest head kept for inspection; Pingora refuses longer ones itself.
const MAX_HEAD: usize = 1024 * 1024;

/// Where the connection is.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
enum State {
    /// Between requests.
    #[default]
    Idle,
    /// Inside a request head, from its first byte: empty lines before the request line (RFC
    /// 9112 §2.2 lets a server skip them) count as part of it, or they would be a free way to
    /// hold a connection. `begun`: the request line has started; `line`: the current line has
    /// something in it besides CR.
    Head {
        begun: bool,
        line: bool,
    },
    /// Inside a body of known length: bytes left.
    Length(u64),
    Chunked(Chunk),
    /// Not followed any further (upgraded, or a head Pingora refuses).
    Opaque,
}

/// Where a chunked body is (RFC 9112 §7.1).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum Chunk {
    /// In the chunk size; hex digits so far and the size they make.
    Size {
        digits: u8,
        size: u64,
    },
    /// Whitespace after the size.
    SizeSpace {
        size: u64,
    },
    /// In a chunk extension.
    Extension {
        size: u64,
    },
    /// CR ending the size line seen.
    SizeCr {
        size: u64,
    },
    Data(u64),
    /// The CRLF after chunk data.
    DataCr,
    DataLf,
    /// At the start of a trailer line (or the final empty line).
    TrailerStart,
    TrailerLine,
    TrailerCr,
    /// CR of the final empty line seen.
    EndCr,
}

/// Request framing that RFC 9112 does not allow, found while following it.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Violation(pub &'static str);

/// A violation, and how many of the bytes fed came before the offending one.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Stopped {
    pub at: usize,
    pub violation: Violation,
}

/// What the follower saw of one whole request head.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Head {
    /// The request line is `method SP target SP version`, one space each, without control
    /// characters, and the target is visible ASCII without a fragment: Pingora would quietly
    /// percent-encode raw whitespace or control bytes and drop a fragment, and RFC 9112 §3.2
    /// allows none of them in a target.
    pub request_line_ok: bool,
}

/// The framing follower of one connection.
#[derive(Debug, Default)]
pub struct Framing {
    state: State,
    head: Vec<u8>,
    /// Heads seen whole and not yet taken by [`Framing::take_heads`].
    heads: VecDeque<Head>,
    /// Body bytes of the current request followed so far.
    body_bytes: u64,
}

impl Framing {
    /// True while a request head has started and not yet ended.
    pub fn in_head(&self) -> bool {
        matches!(self.state, State::Head { .. })
    }

    /// True inside a request body; then [`Framing::body_bytes`] of it have been followed.
    pub fn in_body(&self) -> bool {
        matches!(self.state, State::Length(_) | State::Chunked(_))
    }

    pub fn body_bytes(&self) -> u64 {
        self.body_bytes
    }

    /// The heads seen whole since the last call, oldest first.
    pub fn take_heads(&mut self) -> impl Iterator<Item = Head> + '_ {
        self.heads.drain(..)
    }

    /// Gives back the memory kept for heads, between requests.
    pub fn release(&mut self) {
        if self.state == State::Idle {
            self.head = Vec::new();
        }
        self.heads.shrink_to_fit();
    }

    /// Request boundaries are still known (not stopped, see [`Framing::stop`]).
    pub fn following(&self) -> bool {
        self.state != State::Opaque
    }

    /// The proxy switched the connection to another protocol (it answered `101`): nothing
    /// after this is HTTP/1 framing.
    pub fn stop(&mut self) {
        self.state = State::Opaque;
    }

    /// True between requests: the last request followed has ended and the next has not begun.
    pub fn idle(&self) -> bool {
        self.state == State::Idle
    }

    /// Follows `bytes`, the next ones read from the client.
    pub fn feed(&mut self, bytes: &[u8]) -> Result<(), Stopped> {
        let mut pos = 0;
        while pos < bytes.len() {
            pos += self.feed_request(&bytes[pos..]).map_err(|s| Stopped {
                at: pos + s.at,
                ..s
            })?;
        }
        Ok(())
    }

    /// Follows `bytes` up to the end of the request they continue: returns how many it used,
    /// fewer than all when the request ended before them (then [`Framing::idle`] is true).
    pub fn feed_request(&mut self, bytes: &[u8]) -> Result<usize, Stopped> {
        let mut pos = 0;
        while pos < bytes.len() {
            let rest = &bytes[pos..];
            let was_idle = self.state == State::Idle;
            pos += match self.state {
                State::Opaque => return Ok(bytes.len()),
                State::Idle => {
                    self.state = State::Head {
                        begun: false,
                        line: false,
                    };
                    self.head.clear();
                    0
                }
                State::Head { .. } => self.head_bytes(rest),
                State::Length(left) => {
                    let n = take(left, rest.len());
                    self.body_bytes += n as u64;
                    self.state = match left - n as u64 {
                        0 => State::Idle,
                        left => State::Length(left),
                    };
                    n
                }
                State::Chunked(Chunk::Data(left)) => {
                    let n = take(left, rest.len());
                    self.body_bytes += n as u64;
                    self.state = State::Chunked(match left - n as u64 {
                        0 => Chunk::DataCr,
                        left => Chunk::Data(left),
                    });
                    n
                }
                State::Chunked(chunk) => {
                    let next =
                        step(chunk, rest[0]).map_err(|violation| Stopped { at: pos, violation })?;
                    self.body_bytes += 1;
                    self.state = next.map_or(State::Idle, State::Chunked);
                    1
                }
            };
            if !was_idle && self.state == State::Idle {
                break;
            }
        }
        Ok(pos)
    }

    /// Takes head bytes up to the end of the head (an empty line: RFC 9112 §2.2 lets a bare LF
    /// end a line, as httparse does); returns how many it used.
    fn head_bytes(&mut self, bytes: &[u8]) -> usize {
        let State::Head {
            mut begun,
            mut line,
        } = self.state
        else {
            return 0;
        };
        let mut pos = 0;
        if !begun {
            pos = bytes
                .iter()
                .position(|b| !matches!(b, b'\r' | b'\n'))
                .unwrap_or(bytes.len());
            begun = pos < bytes.len();
        }
        while pos < bytes.len() {
            let rest = &bytes[pos..];
            let (segment, ends_line) = match memchr::memchr(b'\n', rest) {
                Some(i) => (&rest[..=i], true),
                None => (rest, false),
            };
            // A CR belongs to the line ending; httparse checks that an LF follows it.
            line |= segment.iter().any(|&b| !matches!(b, b'\r' | b'\n'));
            if self.head.len() + segment.len() > MAX_HEAD {
                self.state = State::Opaque;
                return bytes.len();
            }
            self.head.extend_from_slice(segment);
            pos += segment.len();
            if ends_line {
                if !line {
                    self.state = self.after_head();
                    return pos;
                }
                line = false;
            }
        }
        self.state = State::Head { begun, line };
        pos
    }

    /// What follows the head just read: its body's framing (RFC 9112 §6.3), as Pingora frames it.
    fn after_head(&mut self) -> State {
        let (state, head) = self.framing_of_head();
        self.heads.push_back(head);
        self.body_bytes = 0;
        self.head.clear();
        state
    }

    fn framing_of_head(&mut self) -> (State, Head) {
        let mut lines = self
            .head
            .split(|&b| b == b'\n')
            .map(|l| l.strip_suffix(b"\r").unwrap_or(l));
        let request_line = lines.next().unwrap_or(b"");
        let mut parts = request_line.split(|&b| b == b' ');
        let target = parts.nth(1).unwrap_or(b"");
        let head = Head {
            request_line_ok: request_line.split(|&b| b == b' ').count() == 3
                && target
                    .iter()
                    .all(|&b| (0x21..=0x7e).contains(&b) && b != b'#')
                && !request_line.iter().any(u8::is_ascii_control),
        };
        let method = request_line.split(|&b| b == b' ').next().unwrap_or(b"");
        let mut chunked = false;
        let mut length: Option<Option<u64>> = None;
        for line in lines {
            let Some(colon) = memchr::memchr(b':', line) else {
                continue;
            };
            let (name, value) = (&line[..colon], &line[colon + 1..]);
            if name.eq_ignore_ascii_case(b"transfer-encoding") {
                chunked = true;
            } else if name.eq_ignore_ascii_case(b"content-length") {
                for v in value.split(|&b| b == b',') {
                    let v = std::str::from_utf8(v.trim_ascii())
                        .ok()
                        .and_then(|v| v.parse::<u64>().ok());
                    length = Some(match length {
                        None => v,
                        Some(seen) if seen == v => seen,
                        // Differing lengths: Pingora refuses the request.
                        Some(_) => None,
                    });
                }
            }
        }
        // Pingora refuses CONNECT and closes the connection.
        if method.eq_ignore_ascii_case(b"CONNECT") {
            return (State::Opaque, head);
        }
        // Transfer-Encoding wins over Content-Length; a final coding other than chunked is
        // refused by Pingora.
        let state = if chunked {
            State::Chunked(Chunk::Size { digits: 0, size: 0 })
        } else {
            match length {
                None | Some(Some(0)) => State::Idle,
                Some(Some(n)) => State::Length(n),
                Some(None) => State::Opaque,
            }
        };
        (state, head)
    }
}

/// How many of `available` bytes a body with `left` to go takes.
fn take(left: u64, available: usize) -> usize {
    usize::try_from(left).map_or(available, |left| left.min(available))
}

/// One byte of chunked framing outside chunk data; `None` when the body has ended.
fn step(chunk: Chunk, b: u8) -> Result<Option<Chunk>, Violation> {
    use Chunk::*;
    const BARE_LF: Violation = Violation("bare LF in chunked framing");
    const CR_ALONE: Violation = Violation("CR without LF in chunked framing");
    let next = match chunk {
        Size { digits, size } if b.is_ascii_hexdigit() => {
            if digits >= 16 {
                return Err(Violation("chunk size longer than 16 hex digits"));
            }
            let digit = u64::from(char::from(b).to_digit(16).unwrap_or(0));
            Size {
                digits: digits + 1,
                size: size << 4 | digit,
            }
        }
        Size { digits: 0, .. } => return Err(Violation("chunk size is not hexadecimal")),
        Size { size, .. } | SizeSpace { size } => match b {
            b' ' | b'\t' => SizeSpace { size },
            b';' => Extension { size },
            b'\r' => SizeCr { size },
            b'\n' => return Err(BARE_LF),
            _ => return Err(Violation("junk after the chunk size")),
        },
        Extension { size } => match b {
            b'\r' => SizeCr { size },
            b'\n' => return Err(BARE_LF),
            b'\t' => Extension { size },
            0..=31 | 127 => return Err(Violation("control character in a chunk extension")),
            _ => Extension { size },
        },
        SizeCr { size } => match b {
            b'\n' if size == 0 => TrailerStart,
            b'\n' => Data(size),
            _ => return Err(CR_ALONE),
        },
        // Chunk data is taken in bulk by the caller; nothing to check in it.
        Data(left) => Data(left),
        DataCr => match b {
            b'\r' => DataLf,
            _ => return Err(Violation("chunk data longer than its size")),
        },
        DataLf => match b {
            b'\n' => Size { digits: 0, size: 0 },
            _ => return Err(CR_ALONE),
        },
        TrailerStart => match b {
            b'\r' => EndCr,
            b'\n' => return Err(BARE_LF),
            _ => TrailerLine,
        },
        TrailerLine => match b {
            b'\r' => TrailerCr,
            b'\n' => return Err(BARE_LF),
            _ => TrailerLine,
        },
        TrailerCr => match b {
            b'\n' => TrailerStart,
            _ => return Err(CR_ALONE),
        },
        EndCr => match b {
            b'\n' => return Ok(None),
            _ => return Err(CR_ALONE),
        },
    };
    Ok(Some(next))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn follow(parts: &[&[u8]]) -> Result<Framing, Violation> {
        let mut f = Framing::default();
        for part in parts {
            f.feed(part).map_err(|s| s.violation)?;
        }
        Ok(f)
    }

    #[test]
    fn heads_start_and_end_where_pingora_sees_them() {
        let mut f = Framing::default();
        assert!(!f.in_head());
        f.feed(b"\r\n").expect("ok");
        assert!(
            f.in_head(),
            "empty lines before a request line are part of its head"
        );
        f.feed(b"\r\nGET / HTTP/1.1\r\nHo").expect("ok");
        assert!(f.in_head(), "a head has started");
        f.feed(b"st: a\r\n\r").expect("ok");
        assert!(f.in_head());
        f.feed(b"\nGET /2 HTTP/1.1\nHost: a\n\n")
            .expect("bare LF line ends are HTTP's own");
        assert!(!f.in_head(), "two pipelined heads, both complete");
    }

    #[test]
    fn feeding_one_request_stops_at_its_end() {
        let mut f = Framing::default();
        let two = b"GET /1 HTTP/1.1\r\nHost: a\r\n\r\nGET /2 HTTP/1.1\r\nHost: a\r\n\r\n";
        let first = f.feed_request(two).expect("valid");
        assert_eq!(&two[..first], b"GET /1 HTTP/1.1\r\nHost: a\r\n\r\n");
        assert!(f.idle(), "the first request has ended");
        assert_eq!(
            f.feed_request(&two[first..]).expect("valid"),
            two.len() - first
        );
        assert!(f.idle());
        let post = b"POST / HTTP/1.1\r\nContent-Length: 3\r\n\r\nabcGET";
        let used = f.feed_request(post).expect("valid");
        assert_eq!(&post[used..], b"GET", "a body belongs to its request");
        let chunked = b"POST / HTTP/1.1\r\nTransfer-Encoding: chunked\r\n\r\n1\r\nx\r\n0\r\n\r\nG";
        let used = f.feed_request(chunked).expect("valid");
        assert_eq!(chunked.len() - used, 1);
        assert_eq!(f.feed_request(b"ET / HT").expect("valid"), 7);
        assert!(!f.idle(), "inside the next head");
    }

    #[test]
    fn a_head_sent_a_byte_at_a_time_ends_at_its_empty_line() {
        let head = b"GET / HTTP/1.1\r\nHost: a\r\nX: \r\n\r\n";
        let mut f = Framing::default();
        for (i, b) in head.iter().enumerate() {
            f.feed(std::slice::from_ref(b)).expect("valid");
            assert_eq!(f.in_head(), i + 1 < head.len(), "after byte {i}");
        }
        assert_eq!(f.take_heads().count(), 1);
    }

    #[test]
    fn bodies_of_known_length_are_skipped() {
        let mut f = Framing::default();
        f.feed(b"POST / HTTP/1.1\r\nContent-Length: 5, 5\r\n\r\n12")
            .expect("ok");
        assert!(!f.in_head());
        f.feed(b"345GET").expect("ok");
        assert!(f.in_head(), "the next head starts right after the body");
    }

    #[test]
    fn well_formed_chunked_bodies_pass() {
        let f = follow(&[
            b"POST / HTTP/1.1\r\nTransfer-Encoding: chunked\r\n\r\n",
            b"5;name=\"v a\"\r\nhel",
            b"lo\r\nA \t;x\r\n0123456789\r\n",
            b"0\r\nTrailer: 1\r\n\r\n",
            b"GET / HTTP/1.1\r\n",
        ])
        .expect("valid");
        assert!(f.in_head(), "the next request follows the last chunk");
    }

    #[test]
    fn bare_lf_and_other_ambiguity_in_chunked_framing_are_violations() {
        let head: &[u8] = b"POST / HTTP/1.1\r\nTransfer-Encoding: chunked\r\n\r\n";
        for (body, why) in [
            (&b"5\nhello\r\n0\r\n\r\n"[..], "bare LF in chunked framing"),
            (b"5;ext\nhello\r\n0\r\n\r\n", "bare LF in chunked framing"),
            (
                b"5;a\n0\r\n\r\nGET /smuggled HTTP/1.1\r\n",
                "bare LF in chunked framing",
            ),
            (b"5\r\nhello\n0\r\n\r\n", "chunk data longer than its size"),
            (
                b"5\r\nhello\r\n0\r\nX: 1\n\r\n",
                "bare LF in chunked framing",
            ),
            (b"5\r\nhello\r\n0\r\n\n", "bare LF in chunked framing"),
            (b"5\rhello", "CR without LF in chunked framing"),
            (b"5;a\x00b\r\n", "control character in a chunk extension"),
            (b"x\r\n", "chunk size is not hexadecimal"),
            (b"5 5\r\n", "junk after the chunk size"),
            (
                b"00000000000000001\r\n",
                "chunk size longer than 16 hex digits",
            ),
        ] {
            assert_eq!(
                follow(&[head, body]).err(),
                Some(Violation(why)),
                "{}",
                String::from_utf8_lossy(body)
            );
        }
    }

    #[test]
    fn a_violation_says_how_many_bytes_came_before_it() {
        let mut f = Framing::default();
        let request = b"POST / HTTP/1.1\r\nTransfer-Encoding: chunked\r\n\r\n5;a\nhello";
        let stopped = f.feed(request).expect_err("bare LF");
        assert_eq!(
            &request[..stopped.at],
            b"POST / HTTP/1.1\r\nTransfer-Encoding: chunked\r\n\r\n5;a"
        );
    }

    #[test]
    fn an_upgrade_request_is_just_a_request_until_the_proxy_switches() {
        let upgrade: &[u8] = b"GET / HTTP/1.1\r\nUpgrade: websocket\r\n\r\n";
        let smuggle: &[u8] =
            b"POST / HTTP/1.1\r\nTransfer-Encoding: chunked\r\n\r\n5;a\nhello\r\n0\r\n\r\n";
        let mut f = Framing::default();
        f.feed(upgrade).expect("ok");
        assert!(f.feed(smuggle).is_err(), "still followed without a 101");
        let mut f = Framing::default();
        f.feed(upgrade).expect("ok");
        f.stop();
        f.feed(b"\x81\x05hello\n\n").expect("not HTTP any more");
        assert!(!f.in_head() && !f.in_body());
    }

    #[test]
    fn body_bytes_are_counted_per_request() {
        let mut f = Framing::default();
        f.feed(b"POST / HTTP/1.1\r\nContent-Length: 10\r\n\r\n1234")
            .expect("ok");
        assert!(f.in_body());
        assert_eq!(f.body_bytes(), 4);
        f.feed(b"567890POST / HTTP/1.1\r\nTransfer-Encoding: chunked\r\n\r\n3\r\nab")
            .expect("ok");
        assert!(f.in_body());
        assert_eq!(f.body_bytes(), 5, "the framing counts too: 3 CR LF a b");
    }

    #[test]
    fn heads_pingora_refuses_are_not_followed() {
        let f = follow(&[b"POST / HTTP/1.1\r\nContent-Length: 3\r\nContent-Length: 4\r\n\r\n"])
            .expect("refused by Pingora");
        assert!(!f.in_head());
        let f = follow(&[b"CONNECT a:443 HTTP/1.1\r\n\r\n\x16\x03\x01"]).expect("refused too");
        assert!(!f.in_head() && !f.in_body());
    }
}
