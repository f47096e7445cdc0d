//! What both binaries do before their own work: log to stderr, load the config file (or the
//! built-in defaults), and answer `--validate`.

use std::fmt::Write as _;
use std::io::{IsTerminal, Write};
use std::path::Path;
use std::process::ExitCode;

use serde::de::DeserializeOwned;
use tracing::field::{Field, Visit};
use tracing_subscriber::fmt::format::Writer;
use tracing_subscriber::fmt::{FmtContext, FormatEvent, FormatFields};
use tracing_subscriber::registry::LookupSpan;

use crate::config::{self, Validate};

/// Exit status for a bad config file or command line (sysexits' EX_USAGE).
pub const EX_USAGE: u8 = 64;

/// An event to drop: its target starts with `.0` and its message contains `.1`.
pub type Noise = (&'static str, &'static str);

/// Logs to stderr (colour only on a terminal); `RUST_LOG` overrides `default_filter`. Events
/// matching `noise` are dropped: routine conditions that libraries report as errors.
///
/// Level filtering stays global (`EnvFilter`), so its level hint also keeps `log` macros in
/// libraries cheap: disabled levels never build a record. Noise is dropped at formatting.
pub fn init_logging(default_filter: &str, noise: &'static [Noise]) {
    let env = tracing_subscriber::EnvFilter::try_from_default_env()
        .unwrap_or_else(|_| default_filter.into());
    tracing_subscriber::fmt()
        .with_env_filter(env)
        .with_writer(std::io::stderr)
        .with_ansi(std::io::stderr().is_terminal())
        .event_format(Quiet {
            inner: tracing_subscriber::fmt::format(),
            noise,
        })
        .init();
}

/// A formatter that writes nothing for noise and defers to `inner` for the rest.
struct Quiet<F> {
    inner: F,
    noise: &'static [Noise],
}

impl<S, N, F> FormatEvent<S, N> for Quiet<F>
where
    S: tracing::Subscriber + for<'a> LookupSpan<'a>,
    N: for<'a> FormatFields<'a> + 'static,
    F: FormatEvent<S, N>,
{
    fn format_event(
        &self,
        ctx: &FmtContext<'_, S, N>,
        writer: Writer<'_>,
        event: &tracing::Event<'_>,
    ) -> std::fmt::Result {
        if is_noise(self.noise, event) {
            return Ok(());
        }
        self.inner.format_event(ctx, writer, event)
    }
}

fn is_noise(noise: &[Noise], event: &tracing::Event<'_>) -> bool {
    use tracing_log::NormalizeEvent;
    // Records from the `log` crate (Pingora's) carry their real target in the event's fields.
    let normalized = event.normalized_metadata();
    let target = normalized
        .as_ref()
        .map_or_else(|| event.metadata().target(), |m| m.target());
    let candidates: Vec<&str> = noise
        .iter()
        .filter(|(t, _)| target.starts_with(t))
        .map(|(_, m)| *m)
        .collect();
    if candidates.is_empty() {
        return false;
    }
    let mut message = Message(String::new());
    event.record(&mut message);
    candidates.iter().any(|m| message.0.contains(m))
}

struct Message(String);

impl Visit for Message {
    fn record_debug(&mut self, field: &Field, value: &dyn std::fmt::Debug) {
        if field.name() == "message" {
            let _ = write!(self.0, "{value:?}");
        }
    }
}

#[cfg(test)]
mod log_records {
    /// A `log` record as Pingora emits it, through the bridge `init_logging` installs.
    pub fn emit(target: &str, message: &str) {
        let args = format_args!("{message}");
        let record = log::Record::builder()
            .target(target)
            .level(log::Level::Error)
            .args(args)
            .build();
        tracing_log::format_trace(&record).expect("bridged");
    }
}

/// Loads `path` (defaults without one). `Err` carries the exit status to stop with: 64 after
/// printing every problem, or 0 after `--validate` succeeded.
pub fn load_config<T>(path: Option<&Path>, validate: bool) -> Result<T, ExitCode>
where
    T: DeserializeOwned + Validate + Default,
{
    let config = match path {
        Some(path) => config::load_file(path).map_err(|e| {
            let _ = writeln!(std::io::stderr(), "invalid config {e}");
            ExitCode::from(EX_USAGE)
        })?,
        None => T::default(),
    };
    if validate {
        let name = path.map_or("built-in defaults".into(), |p| p.display().to_string());
        let _ = writeln!(std::io::stdout(), "{name}: ok");
        return Err(ExitCode::SUCCESS);
    }
    Ok(config)
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::sync::{Arc, Mutex};

    #[derive(Clone, Default)]
    struct Sink(Arc<Mutex<Vec<u8>>>);

    impl Write for Sink {
        fn write(&mut self, buf: &[u8]) -> std::io::Result<usize> {
            self.0
                .lock()
                .map_err(|_| std::io::Error::other("poisoned"))?
                .extend_from_slice(buf);
            Ok(buf.len())
        }
        fn flush(&mut self) -> std::io::Result<()> {
            Ok(())
        }
    }

    #[test]
    fn noise_is_dropped_by_target_and_message_only() {
        static NOISE: &[Noise] = &[("lib::cache", "Broken pipe")];
        let sink = Sink::default();
        let writer = sink.clone();
        let subscriber = tracing_subscriber::fmt()
            .with_env_filter(tracing_subscriber::EnvFilter::new("info"))
            .with_writer(move || writer.clone())
            .with_ansi(false)
            .event_format(Quiet {
                inner: tracing_subscriber::fmt::format(),
                noise: NOISE,
            })
            .finish();
        tracing::subscriber::with_default(subscriber, || {
            tracing::error!(target: "lib::cache", "Fail to serve cache: Broken pipe (os error 32)");
            tracing::error!(target: "lib::cache", "Fail to serve cache: disk on fire");
            tracing::error!(target: "other", "Broken pipe elsewhere");
            tracing::debug!(target: "other", "below the level");
            // What Pingora logs goes through the `log` bridge: matched on its own target.
            log_records::emit(
                "lib::cache::proxy",
                "Fail to proxy: Broken pipe (os error 32)",
            );
            log_records::emit("lib::cache::proxy", "Fail to proxy: log bridge still works");
        });
        let out = String::from_utf8(sink.0.lock().expect("lock").clone()).expect("utf-8");
        assert!(!out.contains("os error 32"), "{out}");
        assert!(out.contains("log bridge still works"), "{out}");
        assert!(
            out.contains("disk on fire") && out.contains("Broken pipe elsewhere"),
            "{out}"
        );
        assert!(
            !out.contains("below the level"),
            "levels still apply: {out}"
        );
    }
}
