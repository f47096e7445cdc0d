//! The access log's destination and the pieces both binaries' lines are made of. Lines are
//! written by a thread of their own, so a slow disk or a full pipe never holds a request: a line
//! that finds the queue full is dropped and counted, never waited for. The destination is
//! standard output (the journal, under systemd) or a file, reopened on SIGHUP so that logrotate
//! can move it away.
//!
//! Text lines start as the Combined Log Format does (`client - - [time] "request" status bytes
//! "referer" "user-agent"`), so the usual tools read them, and go on with `key=value` fields;
//! JSON lines carry the same fields as one object each.

use std::fmt::Write as _;
use std::fs::{File, OpenOptions};
use std::io::{self, BufWriter, Write};
use std::path::{Path, PathBuf};
use std::sync::Mutex;
use std::sync::mpsc::{self, Receiver, SyncSender, TrySendError};
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
    /// Lines waiting for the writer; a line beyond them is dropped and counted.
    pub queue_lines: usize,
}

impl Default for AccessLogConfig {
    fn default() -> Self {
        Self {
            format: Format::Text,
            path: None,
            queue_lines: 65_536,
        }
    }
}

impl AccessLogConfig {
    /// Pushes one error per bad key, named under `section` (`access_log`).
    pub fn validate(&self, section: &str, errors: &mut Vec<ConfigError>) {
        if !(1..=1 << 24).contains(&self.queue_lines) {
            errors.push(ConfigError::new(
                format!("{section}.queue_lines"),
                format!(
                    "must be between 1 and {}, not {}",
                    1 << 24,
                    self.queue_lines
                ),
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

enum Message {
    Line(String),
    Reopen,
    Close,
}

/// Where access lines go. Cheap to call from any thread: [`AccessLog::write`] only queues.
pub struct AccessLog {
    format: Format,
    queue: Option<SyncSender<Message>>,
    writer: Mutex<Option<JoinHandle<()>>>,
    /// Called once per line dropped because the queue was full.
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
            queue: None,
            writer: Mutex::new(None),
            on_drop: Box::new(on_drop),
        };
        if config.format == Format::Off {
            return Ok(log);
        }
        let out = Destination::open(config.path.clone())?;
        let (tx, rx) = mpsc::sync_channel(config.queue_lines);
        let writer = std::thread::Builder::new()
            .name("access-log".into())
            .spawn(move || out.run(rx))?;
        log.queue = Some(tx);
        log.writer = Mutex::new(Some(writer));
        Ok(log)
    }

    /// A log that writes nothing (for tests and tools).
    pub fn off() -> Self {
        Self {
            format: Format::Off,
            queue: None,
            writer: Mutex::new(None),
            on_drop: Box::new(|| {}),
        }
    }

    pub fn format(&self) -> Format {
        self.format
    }

    /// Lines are wanted: callers skip building them otherwise.
    pub fn is_on(&self) -> bool {
        self.queue.is_some()
    }

    /// Queues `line` (without its newline).
    pub fn write(&self, line: String) {
        if let Some(queue) = &self.queue
            && let Err(TrySendError::Full(_)) = queue.try_send(Message::Line(line))
        {
            (self.on_drop)();
        }
    }

    /// Reopens the file by its path, after the lines queued before (SIGHUP, after logrotate
    /// moved it).
    pub fn reopen(&self) {
        if let Some(queue) = &self.queue {
            // Waits for room: a reopen must not be lost the way a line may be.
            let _ = queue.send(Message::Reopen);
        }
    }

    /// Writes out every queued line and stops the writer (at exit).
    pub fn close(&self) {
        if let Some(queue) = &self.queue {
            let _ = queue.send(Message::Close);
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
    out: BufWriter<Box<dyn Write + Send>>,
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
            out: BufWriter::with_capacity(64 * 1024, out),
            failing: false,
        })
    }

    fn run(mut self, queue: Receiver<Message>) {
        // Writes what is queued, and flushes when the queue runs dry: one write(2) per burst.
        while let Ok(first) = queue.recv() {
            let mut next = Some(first);
            while let Some(message) = next {
                match message {
                    Message::Line(line) => {
                        let written = self
                            .out
                            .write_all(line.as_bytes())
                            .and_then(|()| self.out.write_all(b"\n"));
                        self.outcome(written);
                    }
                    Message::Reopen => self.reopen(),
                    Message::Close => {
                        let flushed = self.out.flush();
                        self.outcome(flushed);
                        return;
                    }
                }
                next = queue.try_recv().ok();
            }
            let flushed = self.out.flush();
            self.outcome(flushed);
        }
    }

    fn reopen(&mut self) {
        let flushed = self.out.flush();
        self.outcome(flushed);
        let Some(path) = &self.path else { return };
        match append(path) {
            Ok(file) => {
                self.out = BufWriter::with_capacity(64 * 1024, Box::new(file));
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
    for &b in bytes {
        if (0x20..0x7f).contains(&b) && b != b'"' && b != b'\\' {
            out.push(char::from(b));
        } else {
            let _ = write!(out, "\\x{b:02X}");
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
    let micros = d.as_micros();
    let _ = write!(out, "{}.{:03}", micros / 1000, micros % 1000);
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

/// Appends `t` as the Common Log Format writes it, in UTC: `01/Dec/2026:22:09:51 +0000`.
pub fn push_clf_time(out: &mut String, t: SystemTime) {
    let (y, mo, d, h, mi, s, _) = civil(t);
    let month = MONTHS.get(mo.wrapping_sub(1)).copied().unwrap_or("Jan");
    let _ = write!(out, "{d:02}/{month}/{y}:{h:02}:{mi:02}:{s:02} +0000");
}

/// `t` in RFC 3339, UTC, to the millisecond: `2026-12-01T22:09:51.123Z`.
pub fn rfc3339(t: SystemTime) -> String {
    let (y, mo, d, h, mi, s, ms) = civil(t);
    format!("{y}-{mo:02}-{d:02}T{h:02}:{mi:02}:{s:02}.{ms:03}Z")
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
    fn milliseconds_have_three_decimals() {
        let mut out = String::new();
        push_ms(&mut out, Duration::from_micros(12_345));
        assert_eq!(out, "12.345");
        assert!((ms(Duration::from_micros(1_500)) - 1.5).abs() < 1e-9);
    }

    #[test]
    fn a_bad_path_or_queue_is_named() {
        let mut errors = Vec::new();
        AccessLogConfig {
            format: Format::Text,
            path: Some("/nonexistent-dir/access.log".into()),
            queue_lines: 0,
        }
        .validate("access_log", &mut errors);
        let keys: Vec<&str> = errors.iter().map(|e| e.key.as_str()).collect();
        assert_eq!(keys, ["access_log.queue_lines", "access_log.path"]);
        assert!(errors[1].problem.contains("/nonexistent-dir"), "{errors:?}");
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
        log.write("one".into());
        log.write("two".into());
        // logrotate moves the file: the writer's open file moves with it...
        std::fs::rename(&path, &rotated).expect("rotate");
        log.write("three".into());
        // ...until SIGHUP makes it open the path again.
        log.reopen();
        log.write("four".into());
        log.close();
        let read = |p: &Path| std::fs::read_to_string(p).expect("read");
        assert_eq!(read(&rotated), "one\ntwo\nthree\n");
        assert_eq!(read(&path), "four\n");
    }

    #[test]
    fn a_full_queue_drops_and_counts_instead_of_waiting() {
        use std::sync::Arc;
        use std::sync::atomic::{AtomicUsize, Ordering};
        let dropped = Arc::new(AtomicUsize::new(0));
        let counter = Arc::clone(&dropped);
        // No writer thread: the queue of one fills with the first line.
        let (tx, _rx) = mpsc::sync_channel(1);
        let log = AccessLog {
            format: Format::Text,
            queue: Some(tx),
            writer: Mutex::new(None),
            on_drop: Box::new(move || {
                counter.fetch_add(1, Ordering::Relaxed);
            }),
        };
        for _ in 0..5 {
            log.write("x".into());
        }
        assert_eq!(dropped.load(Ordering::Relaxed), 4);
    }
}
