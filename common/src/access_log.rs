//! The access log's destination and the pieces both binaries' lines are made of. Lines are
//! copied into a buffer that a thread of their own writes out (every `flush_ms`, or when half
//! full), in one write per batch, as nginx's `buffer=`/`flush=` do: a slow disk or a full pipe
//! never holds a request, and a line that finds the buffer full is dropped and counted, never
//! waited for. The destination is standard output (the journal, under systemd) or a file,
//! reopened on a signal so that logrotate can move it away.
//!
//! Text lines start as the Combined Log Format does (`client - - [time] "request" status bytes
//! "referer" "user-agent"`), so the usual tools read them, and go on with `key=value` fields;
//! JSON lines carry the same fields as one object each.

use std::fmt::Write as _;
use std::fs::{File, OpenOptions};
use std::io::{self, Write};
use std::net::IpAddr;
use std::path::{Path, PathBuf};
use std::sync::{Arc, Condvar, Mutex};
use std::thread::JoinHandle;
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use serde::Deserialize;

use crate::config::ConfigError;

/// How lines are written.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Format {
    /// Combined Log Format, then `key=value` fields.
    #[default]
    Text,
    /// One JSON object per line.
    Json,
    /// No access log.
    Off,
}

/// `[access_log]`.
#[derive(Debug, Clone, PartialEq, Eq, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct AccessLogConfig {
    pub format: Format,
    /// A file to append to; absent: standard output.
    pub path: Option<PathBuf>,
    /// Bytes of lines held for the writer; a line that does not fit is dropped and counted.
    pub buffer_bytes: usize,
    /// Lines are written at least this often (and sooner when half the buffer is used).
    pub flush_ms: u64,
}

impl Default for AccessLogConfig {
    fn default() -> Self {
        Self {
            format: Format::Text,
            path: None,
            buffer_bytes: 4 << 20,
            flush_ms: 200,
        }
    }
}

/// Bounds of `buffer_bytes` and `flush_ms`.
const BUFFER_BYTES: std::ops::RangeInclusive<usize> = 4096..=1 << 30;
const FLUSH_MS: std::ops::RangeInclusive<u64> = 1..=60_000;

impl AccessLogConfig {
    /// Pushes one error per bad key, named under `section` (`access_log`).
    pub fn validate(&self, section: &str, errors: &mut Vec<ConfigError>) {
        if !BUFFER_BYTES.contains(&self.buffer_bytes) {
            errors.push(ConfigError::new(
                format!("{section}.buffer_bytes"),
                format!(
                    "must be between 4096 and {} (1 GiB), not {}",
                    BUFFER_BYTES.end(),
                    self.buffer_bytes
                ),
            ));
        }
        if !FLUSH_MS.contains(&self.flush_ms) {
            errors.push(ConfigError::new(
                format!("{section}.flush_ms"),
                format!("must be between 1 and 60000, not {}", self.flush_ms),
            ));
        }
        if let Some(path) = &self.path
            && self.format != Format::Off
            && let Err(why) = writable_file(path)
        {
            errors.push(ConfigError::new(
                format!("{section}.path"),
                format!("{}: {why}", path.display()),
            ));
        }
    }
}

/// Why lines could not be appended to `path`, if they could not: it must be a file (or not exist
/// yet) in an existing directory.
fn writable_file(path: &Path) -> Result<(), String> {
    if path.is_dir() {
        return Err("is a directory".into());
    }
    let dir = match path.parent() {
        Some(d) if !d.as_os_str().is_empty() => d,
        _ => Path::new("."),
    };
    if !dir.is_dir() {
        return Err(format!("its directory {} does not exist", dir.display()));
    }
    Ok(())
}

/// What requests and the writer share.
struct Shared {
    state: Mutex<State>,
    /// Wakes the writer: half the buffer used, a reopen, or the close.
    wake: Condvar,
    /// Wakes a caller of [`AccessLog::reopen`] once the writer has reopened.
    reopened: Condvar,
    capacity: usize,
    flush: Duration,
}

#[derive(Default)]
struct State {
    lines: Vec<u8>,
    /// Reopens asked for, and done (the writer catches up with the first).
    reopen_asked: u64,
    reopen_done: u64,
    closing: bool,
}

/// Where access lines go. Cheap to call from any thread: [`AccessLog::write`] copies the line
/// into a buffer the writer thread empties; no request waits for a disk or a pipe.
pub struct AccessLog {
    format: Format,
    shared: Option<Arc<Shared>>,
    writer: Mutex<Option<JoinHandle<()>>>,
    /// Called once per line dropped because the buffer was full.
    on_drop: Box<dyn Fn() + Send + Sync>,
}

impl AccessLog {
    /// Opens the destination (a file is created if missing) and starts the writer thread.
    pub fn start(
        config: &AccessLogConfig,
        on_drop: impl Fn() + Send + Sync + 'static,
    ) -> io::Result<Self> {
        let mut log = Self {
            format: config.format,
            shared: None,
            writer: Mutex::new(None),
            on_drop: Box::new(on_drop),
        };
        if config.format == Format::Off {
            return Ok(log);
        }
        let out = Destination::open(config.path.clone())?;
        let shared = Arc::new(Shared {
            state: Mutex::new(State::default()),
            wake: Condvar::new(),
            reopened: Condvar::new(),
            capacity: config.buffer_bytes,
            flush: Duration::from_millis(config.flush_ms),
        });
        let theirs = Arc::clone(&shared);
        let writer = std::thread::Builder::new()
            .name("access-log".into())
            .spawn(move || out.run(&theirs))?;
        log.shared = Some(shared);
        log.writer = Mutex::new(Some(writer));
        Ok(log)
    }

    /// A log that writes nothing (for tests and tools).
    pub fn off() -> Self {
        Self {
            format: Format::Off,
            shared: None,
            writer: Mutex::new(None),
            on_drop: Box::new(|| {}),
        }
    }

    pub fn format(&self) -> Format {
        self.format
    }

    /// Lines are wanted: callers skip building them otherwise.
    pub fn is_on(&self) -> bool {
        self.shared.is_some()
    }

    /// Adds `line` (without its newline) to what the writer writes next.
    pub fn write(&self, line: &str) {
        let Some(shared) = &self.shared else { return };
        let Ok(mut state) = shared.state.lock() else {
            return;
        };
        if state.lines.len() + line.len() + 1 > shared.capacity {
            drop(state);
            (self.on_drop)();
            return;
        }
        if state.lines.capacity() == 0 {
            state.lines.reserve(shared.capacity);
        }
        state.lines.extend_from_slice(line.as_bytes());
        state.lines.push(b'\n');
        if state.lines.len() >= shared.capacity / 2 {
            shared.wake.notify_one();
        }
    }

    /// Reopens the file by its path once the lines written before are out, and returns when it
    /// has (SIGUSR1 or SIGHUP, after logrotate moved the file). Blocks: call it off a runtime.
    pub fn reopen(&self) {
        let Some(shared) = &self.shared else { return };
        let Ok(mut state) = shared.state.lock() else {
            return;
        };
        state.reopen_asked += 1;
        let asked = state.reopen_asked;
        shared.wake.notify_one();
        // Bounded: a writer stuck on a full pipe must not hold the signal handler forever.
        let _ = shared
            .reopened
            .wait_timeout_while(state, Duration::from_secs(5), |s| s.reopen_done < asked);
    }

    /// Writes out every line and stops the writer (at exit).
    pub fn close(&self) {
        if let Some(shared) = &self.shared
            && let Ok(mut state) = shared.state.lock()
        {
            state.closing = true;
            shared.wake.notify_one();
        }
        let writer = self.writer.lock().ok().and_then(|mut w| w.take());
        if let Some(writer) = writer {
            let _ = writer.join();
        }
    }
}

/// The writer thread's end: standard output or a file.
struct Destination {
    path: Option<PathBuf>,
    out: Box<dyn Write + Send>,
    /// The last write failed (reported once until one succeeds).
    failing: bool,
}

impl Destination {
    fn open(path: Option<PathBuf>) -> io::Result<Self> {
        let out = match &path {
            Some(p) => Box::new(append(p)?) as Box<dyn Write + Send>,
            None => Box::new(io::stdout()),
        };
        Ok(Self {
            path,
            out,
            failing: false,
        })
    }

    /// Every `flush` (or sooner when woken), takes the buffered lines and writes them in one
    /// write, outside the lock; then reopens or stops when asked.
    fn run(mut self, shared: &Shared) {
        let mut spare = Vec::new();
        loop {
            let Ok(state) = shared.state.lock() else {
                return;
            };
            let idle = |s: &mut State| {
                s.lines.len() < shared.capacity / 2 && s.reopen_asked == s.reopen_done && !s.closing
            };
            let Ok((mut state, _)) = shared.wake.wait_timeout_while(state, shared.flush, idle)
            else {
                return;
            };
            std::mem::swap(&mut state.lines, &mut spare);
            let (reopen, closing) = (state.reopen_asked, state.closing);
            let reopening = reopen != state.reopen_done;
            drop(state);
            if !spare.is_empty() {
                let written = self.out.write_all(&spare).and_then(|()| self.out.flush());
                self.outcome(written);
                spare.clear();
            }
            if reopening {
                self.reopen();
                if let Ok(mut state) = shared.state.lock() {
                    state.reopen_done = reopen;
                }
                shared.reopened.notify_all();
            }
            // Closing: out once nothing is left (a line may have come in after the swap).
            if closing && shared.state.lock().map_or(true, |s| s.lines.is_empty()) {
                return;
            }
        }
    }

    fn reopen(&mut self) {
        let Some(path) = &self.path else { return };
        match append(path) {
            Ok(file) => {
                self.out = Box::new(file);
                tracing::info!(path = %path.display(), "access log reopened");
            }
            Err(e) => {
                tracing::error!(path = %path.display(), error = %e, "cannot reopen the access log; still writing to the file it had open");
            }
        }
    }

    fn outcome(&mut self, result: io::Result<()>) {
        match result {
            Ok(()) if self.failing => {
                self.failing = false;
                tracing::info!("access log writable again");
            }
            Ok(()) => {}
            Err(e) if !self.failing => {
                self.failing = true;
                tracing::error!(error = %e, "cannot write the access log; lines are lost until it can");
            }
            Err(_) => {}
        }
    }
}

fn append(path: &Path) -> io::Result<File> {
    OpenOptions::new()
        .create(true)
        .append(true)
        .open(path)
        .map_err(|e| io::Error::new(e.kind(), format!("access log {}: {e}", path.display())))
}

/// Appends `bytes` as nginx escapes a logged value: printable ASCII as it is, `"`, `\` and every
/// other byte as `\xHH`. Nothing a client sends can end a field or a line early.
pub fn push_escaped(out: &mut String, bytes: &[u8]) {
    const HEX: &[u8; 16] = b"0123456789ABCDEF";
    let plain = |b: &u8| (0x20..0x7f).contains(b) && *b != b'"' && *b != b'\\';
    let mut rest = bytes;
    while !rest.is_empty() {
        // Runs of plain bytes are copied whole: a line is mostly them.
        let run = rest.iter().position(|b| !plain(b)).unwrap_or(rest.len());
        let (head, tail) = rest.split_at(run);
        out.push_str(std::str::from_utf8(head).unwrap_or_default());
        if let Some((&b, after)) = tail.split_first() {
            out.push_str("\\x");
            out.push(char::from(HEX[usize::from(b >> 4)]));
            out.push(char::from(HEX[usize::from(b & 0xf)]));
            rest = after;
        } else {
            rest = tail;
        }
    }
}

/// Appends `n` in decimal (without the formatting machinery: a line has several).
pub fn push_int(out: &mut String, n: impl itoa::Integer) {
    out.push_str(itoa::Buffer::new().format(n));
}

/// The Combined Log Format part of a text line, which both binaries' lines start with.
pub struct Combined<'a> {
    pub client: Option<IpAddr>,
    pub time: SystemTime,
    pub method: &'a [u8],
    pub target: &'a [u8],
    pub version: &'a str,
    pub status: u16,
    /// `None`: not known (a streamed body), written `-`.
    pub bytes: Option<u64>,
    pub referer: &'a [u8],
    pub user_agent: &'a [u8],
}

/// Appends `client - - [time] "method target version" status bytes "referer" "user-agent"`:
/// what the usual tools read. The `key=value` fields follow it.
pub fn push_combined(out: &mut String, c: &Combined<'_>) {
    match c.client {
        Some(ip) => push_ip(out, ip),
        None => out.push('-'),
    }
    out.push_str(" - - [");
    push_clf_time(out, c.time);
    out.push_str("] \"");
    push_escaped(out, c.method);
    out.push(' ');
    push_escaped(out, c.target);
    out.push(' ');
    out.push_str(c.version);
    out.push_str("\" ");
    push_int(out, c.status);
    out.push(' ');
    match c.bytes {
        Some(n) => push_int(out, n),
        None => out.push('-'),
    }
    out.push(' ');
    push_quoted(out, c.referer);
    out.push(' ');
    push_quoted(out, c.user_agent);
}

/// An IPv4 address without the formatting machinery; IPv6 with it.
pub fn push_ip(out: &mut String, ip: IpAddr) {
    match ip {
        IpAddr::V4(v4) => {
            for (i, octet) in v4.octets().into_iter().enumerate() {
                if i > 0 {
                    out.push('.');
                }
                push_int(out, octet);
            }
        }
        IpAddr::V6(v6) => {
            let _ = write!(out, "{v6}");
        }
    }
}

/// Appends `bytes` escaped (`-` when empty), between double quotes.
pub fn push_quoted(out: &mut String, bytes: &[u8]) {
    out.push('"');
    if bytes.is_empty() {
        out.push('-');
    } else {
        push_escaped(out, bytes);
    }
    out.push('"');
}

/// Appends `d` in milliseconds with three decimals (`12.345`).
pub fn push_ms(out: &mut String, d: Duration) {
    let micros = u64::try_from(d.as_micros()).unwrap_or(u64::MAX);
    push_int(out, micros / 1000);
    out.push('.');
    let fraction = micros % 1000;
    for digit in [fraction / 100, fraction / 10 % 10, fraction % 10] {
        out.push(char::from(b'0' + u8::try_from(digit).unwrap_or(0)));
    }
}

/// `d` in milliseconds, to the microsecond (for JSON).
pub fn ms(d: Duration) -> f64 {
    d.as_micros() as f64 / 1000.0
}

const MONTHS: [&str; 12] = [
    "Jan", "Feb", "Mar", "Apr", "May", "Jun", "Jul", "Aug", "Sep", "Oct", "Nov", "Dec",
];

/// The civil UTC date and time of `t`: (year, month 1-12, day, hour, minute, second, millis).
fn civil(t: SystemTime) -> (i64, usize, u64, u64, u64, u64, u32) {
    let since = t.duration_since(UNIX_EPOCH).unwrap_or_default();
    let secs = since.as_secs();
    let days = i64::try_from(secs / 86_400).unwrap_or(0);
    let rem = secs % 86_400;
    // Howard Hinnant's days-to-civil, for the proleptic Gregorian calendar.
    let z = days + 719_468;
    let era = z.div_euclid(146_097);
    let doe = z.rem_euclid(146_097);
    let yoe = (doe - doe / 1460 + doe / 36_524 - doe / 146_096) / 365;
    let doy = doe - (365 * yoe + yoe / 4 - yoe / 100);
    let mp = (5 * doy + 2) / 153;
    let day = doy - (153 * mp + 2) / 5 + 1;
    let month = if mp < 10 { mp + 3 } else { mp - 9 };
    let year = yoe + era * 400 + i64::from(month <= 2);
    (
        year,
        usize::try_from(month).unwrap_or(1),
        u64::try_from(day).unwrap_or(1),
        rem / 3600,
        rem % 3600 / 60,
        rem % 60,
        since.subsec_millis(),
    )
}

/// Appends `t` as the Common Log Format writes it, in UTC: `01/Dec/2026:22:09:51 +0000`. The
/// text of the current second is kept per thread (as nginx caches its time strings): a busy
/// thread formats it once a second.
pub fn push_clf_time(out: &mut String, t: SystemTime) {
    thread_local! {
        static LAST: std::cell::RefCell<(u64, String)> =
            const { std::cell::RefCell::new((u64::MAX, String::new())) };
    }
    let secs = t.duration_since(UNIX_EPOCH).map_or(0, |d| d.as_secs());
    LAST.with_borrow_mut(|(at, text)| {
        if *at != secs {
            let (y, mo, d, h, mi, s, _) = civil(t);
            let month = MONTHS.get(mo.wrapping_sub(1)).copied().unwrap_or("Jan");
            text.clear();
            let _ = write!(text, "{d:02}/{month}/{y}:{h:02}:{mi:02}:{s:02} +0000");
            *at = secs;
        }
        out.push_str(text);
    });
}

/// `t` in RFC 3339, UTC, to the millisecond: `2026-12-01T22:09:51.123Z`.
pub fn rfc3339(t: SystemTime) -> String {
    let mut out = String::with_capacity(24);
    push_rfc3339(&mut out, t);
    out
}

/// Appends [`rfc3339`]`(t)`; the text of the current second is kept per thread.
pub fn push_rfc3339(out: &mut String, t: SystemTime) {
    thread_local! {
        static LAST: std::cell::RefCell<(u64, String)> =
            const { std::cell::RefCell::new((u64::MAX, String::new())) };
    }
    let since = t.duration_since(UNIX_EPOCH).unwrap_or_default();
    LAST.with_borrow_mut(|(at, text)| {
        if *at != since.as_secs() {
            let (y, mo, d, h, mi, s, _) = civil(t);
            text.clear();
            let _ = write!(text, "{y}-{mo:02}-{d:02}T{h:02}:{mi:02}:{s:02}.");
            *at = since.as_secs();
        }
        out.push_str(text);
    });
    let millis = since.subsec_millis();
    for digit in [millis / 100, millis / 10 % 10, millis % 10] {
        out.push(char::from(b'0' + u8::try_from(digit).unwrap_or(0)));
    }
    out.push('Z');
}

/// Appends `bytes` as a JSON string: quoted, with `"`, `\\` and control characters escaped, and
/// bytes that are not UTF-8 replaced (U+FFFD), as `String::from_utf8_lossy` does.
pub fn push_json_string(out: &mut String, bytes: &[u8]) {
    const HEX: &[u8; 16] = b"0123456789abcdef";
    out.push('"');
    for chunk in bytes.utf8_chunks() {
        let valid = chunk.valid();
        let mut from = 0;
        for (at, b) in valid.bytes().enumerate() {
            if b >= 0x20 && b != b'"' && b != b'\\' && b != 0x7f {
                continue;
            }
            // Runs needing no escape are copied whole; ASCII bytes split no character.
            out.push_str(valid.get(from..at).unwrap_or_default());
            match b {
                b'"' => out.push_str("\\\""),
                b'\\' => out.push_str("\\\\"),
                b'\n' => out.push_str("\\n"),
                b'\r' => out.push_str("\\r"),
                b'\t' => out.push_str("\\t"),
                _ => {
                    out.push_str("\\u00");
                    out.push(char::from(HEX[usize::from(b >> 4)]));
                    out.push(char::from(HEX[usize::from(b & 0xf)]));
                }
            }
            from = at + 1;
        }
        out.push_str(valid.get(from..).unwrap_or_default());
        if !chunk.invalid().is_empty() {
            out.push(char::REPLACEMENT_CHARACTER);
        }
    }
    out.push('"');
}

#[cfg(test)]
mod tests {
    use super::*;

    fn at(secs: u64, millis: u64) -> SystemTime {
        UNIX_EPOCH + Duration::from_millis(secs * 1000 + millis)
    }

    #[test]
    fn times_are_written_in_utc_as_clf_and_rfc_3339() {
        // 2026-12-01T22:09:51Z; 2000-02-29 (leap day); the epoch.
        let mut clf = String::new();
        push_clf_time(&mut clf, at(1_796_162_991, 0));
        assert_eq!(clf, "01/Dec/2026:22:09:51 +0000");
        assert_eq!(rfc3339(at(1_796_162_991, 7)), "2026-12-01T22:09:51.007Z");
        assert_eq!(rfc3339(at(951_782_400, 0)), "2000-02-29T00:00:00.000Z");
        assert_eq!(rfc3339(UNIX_EPOCH), "1970-01-01T00:00:00.000Z");
    }

    #[test]
    fn nothing_a_client_sends_ends_a_field_or_a_line() {
        let mut out = String::new();
        push_quoted(&mut out, b"a\"b\\c\nd\x7f\xffe f");
        assert_eq!(out, r#""a\x22b\x5Cc\x0Ad\x7F\xFFe f""#);
        out.clear();
        push_quoted(&mut out, b"");
        assert_eq!(out, "\"-\"");
    }

    #[test]
    fn a_json_string_is_valid_json_whatever_a_client_sent() {
        let mut out = String::new();
        push_json_string(&mut out, b"a\"b\\c\n\x01\x7f\xffd\xc3\xa9");
        let parsed: String = serde_json::from_str(&out).expect("valid JSON");
        assert_eq!(parsed, "a\"b\\c\n\u{1}\u{7f}\u{fffd}d\u{e9}");
    }

    #[test]
    fn milliseconds_have_three_decimals() {
        let mut out = String::new();
        push_ms(&mut out, Duration::from_micros(12_345));
        assert_eq!(out, "12.345");
        assert!((ms(Duration::from_micros(1_500)) - 1.5).abs() < 1e-9);
    }

    #[test]
    fn a_bad_path_buffer_or_flush_is_named() {
        let mut errors = Vec::new();
        AccessLogConfig {
            format: Format::Text,
            path: Some("/nonexistent-dir/access.log".into()),
            buffer_bytes: 10,
            flush_ms: 0,
        }
        .validate("access_log", &mut errors);
        let keys: Vec<&str> = errors.iter().map(|e| e.key.as_str()).collect();
        assert_eq!(
            keys,
            [
                "access_log.buffer_bytes",
                "access_log.flush_ms",
                "access_log.path"
            ]
        );
        assert!(errors[2].problem.contains("/nonexistent-dir"), "{errors:?}");
    }

    #[test]
    fn lines_reach_the_file_in_order_and_a_reopen_follows_logrotate() {
        let dir = tempfile::tempdir().expect("temp dir");
        let path = dir.path().join("access.log");
        let rotated = dir.path().join("access.log.1");
        let config = AccessLogConfig {
            path: Some(path.clone()),
            ..AccessLogConfig::default()
        };
        let log = AccessLog::start(&config, || {}).expect("start");
        log.write("one");
        log.write("two");
        // logrotate moves the file: the writer's open file moves with it...
        std::fs::rename(&path, &rotated).expect("rotate");
        log.write("three");
        // ...until a signal makes it open the path again (after writing what came before).
        log.reopen();
        log.write("four");
        log.close();
        let read = |p: &Path| std::fs::read_to_string(p).expect("read");
        assert_eq!(read(&rotated), "one\ntwo\nthree\n");
        assert_eq!(read(&path), "four\n");
    }

    #[test]
    fn a_full_buffer_drops_and_counts_instead_of_waiting() {
        use std::sync::atomic::{AtomicUsize, Ordering};
        let dropped = Arc::new(AtomicUsize::new(0));
        let counter = Arc::clone(&dropped);
        // No writer thread: nothing empties the 4 KiB buffer.
        let log = AccessLog {
            format: Format::Text,
            shared: Some(Arc::new(Shared {
                state: Mutex::new(State::default()),
                wake: Condvar::new(),
                reopened: Condvar::new(),
                capacity: 4096,
                flush: Duration::from_secs(1),
            })),
            writer: Mutex::new(None),
            on_drop: Box::new(move || {
                counter.fetch_add(1, Ordering::Relaxed);
            }),
        };
        let line = "x".repeat(999);
        for _ in 0..6 {
            log.write(&line);
        }
        // Four lines of 1000 bytes with their newlines fit; the fifth and sixth do not.
        assert_eq!(dropped.load(Ordering::Relaxed), 2);
    }
}
