//! The real binaries as child processes, started with a config file on loopback ports (the
//! origin binds `:0` and logs its address; the edge gets free ports and is polled until it
//! answers), stopped on drop. Their logs are kept for failure messages.

use std::io::{BufRead, BufReader};
use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::sync::{Arc, Mutex, mpsc};
use std::time::Duration;

use anyhow::{Context, bail};

/// How long a process gets to start listening (a cold SQLite file or a migration included).
const START_TIMEOUT: Duration = Duration::from_secs(30);

/// Path of a workspace binary, refusing one that is missing or older than its sources.
///
/// `cargo test --workspace` (what `scripts/test` runs) builds `origin` and `edge` because each
/// package has integration tests. A nested `cargo build` from here would resolve features
/// differently from the outer `cargo test` and make the two rebuild over each other on every
/// run, so we only check and say what to do.
pub fn binary(name: &str) -> anyhow::Result<PathBuf> {
    let exe = std::env::current_exe().context("locating the test executable")?;
    // The test executable lives in target/<profile>/deps/; the binaries in target/<profile>/.
    let profile_dir = exe
        .parent()
        .and_then(Path::parent)
        .context("the test executable is not in target/<profile>/deps")?;
    let path = profile_dir.join(name);
    let release = if profile_dir.ends_with("release") {
        " --release"
    } else {
        ""
    };
    let hint =
        format!("build it with `cargo build{release} --workspace --bins` (or run scripts/test)");
    let built = std::fs::metadata(&path)
        .and_then(|m| m.modified())
        .map_err(|_| anyhow::anyhow!("{} does not exist: {hint}", path.display()))?;
    let workspace = Path::new(env!("CARGO_MANIFEST_DIR"));
    if let Some((source, changed)) = newest_source(workspace, name)
        && changed > built
    {
        bail!(
            "{} is older than {}: {hint}",
            path.display(),
            source.display()
        );
    }
    Ok(path)
}

/// The most recently modified file among the sources of binary `name` (its crate and common).
fn newest_source(workspace: &Path, name: &str) -> Option<(PathBuf, std::time::SystemTime)> {
    let mut newest: Option<(PathBuf, std::time::SystemTime)> = None;
    let mut dirs: Vec<PathBuf> = ["common", name]
        .iter()
        .flat_map(|krate| ["src", "templates", "migrations"].map(|d| workspace.join(krate).join(d)))
        .collect();
    while let Some(dir) = dirs.pop() {
        let Ok(entries) = std::fs::read_dir(&dir) else {
            continue;
        };
        for entry in entries.flatten() {
            let path = entry.path();
            if path.is_dir() {
                dirs.push(path);
            } else if let Ok(modified) = entry.metadata().and_then(|m| m.modified())
                && newest.as_ref().is_none_or(|(_, t)| modified > *t)
            {
                newest = Some((path, modified));
            }
        }
    }
    newest
}

/// A child's log lines, collected by a reader thread.
type Logs = Arc<Mutex<Vec<String>>>;

/// A running `origin`.
pub struct OriginProcess {
    child: Child,
    pub addr: SocketAddr,
    logs: Logs,
    access: Logs,
    /// Holds the config file.
    _dir: tempfile::TempDir,
}

impl OriginProcess {
    /// Starts `origin` with `config` (TOML) plus `listen = "127.0.0.1:0"` unless it sets one.
    pub fn start(config: &str) -> anyhow::Result<Self> {
        let dir = tempfile::tempdir()?;
        let path = dir.path().join("origin.toml");
        let config = if config.lines().any(|l| l.trim_start().starts_with("listen")) {
            config.to_owned()
        } else {
            format!("listen = \"127.0.0.1:0\"\n{config}")
        };
        std::fs::write(&path, config)?;
        let (child, addr, logs, access) =
            spawn_and_wait(&binary("origin")?, &path, "origin listening")?;
        Ok(Self {
            child,
            addr,
            logs,
            access,
            _dir: dir,
        })
    }

    pub fn url(&self, path: &str) -> String {
        format!("http://{}{path}", self.addr)
    }

    pub fn logs(&self) -> String {
        joined(&self.logs)
    }

    /// Its access log lines so far (standard output).
    pub fn access_lines(&self) -> Vec<String> {
        self.access.lock().map(|l| l.clone()).unwrap_or_default()
    }

    /// SIGTERM, then wait for a clean exit; the exit status.
    pub fn stop(mut self) -> anyhow::Result<std::process::ExitStatus> {
        terminate(&mut self.child)
    }
}

impl Drop for OriginProcess {
    fn drop(&mut self) {
        let _ = terminate(&mut self.child);
    }
}

/// Spawns `binary --config path` with its stderr (the log) and its stdout (the access log)
/// collected line by line; `on_line` sees each line of the log.
fn spawn(
    binary: &Path,
    config: &Path,
    on_line: impl FnMut(&str) + Send + 'static,
) -> anyhow::Result<(Child, Logs, Logs)> {
    spawn_with_args(binary, config, &[], on_line)
}

/// [`spawn`], with `args` after `--config path`.
fn spawn_with_args(
    binary: &Path,
    config: &Path,
    args: &[&str],
    mut on_line: impl FnMut(&str) + Send + 'static,
) -> anyhow::Result<(Child, Logs, Logs)> {
    let mut child = Command::new(binary)
        .arg("--config")
        .arg(config)
        .args(args)
        .env(
            "RUST_LOG",
            std::env::var("OUTPOST_CHILD_LOG").unwrap_or_else(|_| "info".into()),
        )
        .stdin(Stdio::null())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .with_context(|| format!("spawning {}", binary.display()))?;
    let stderr = child.stderr.take().context("no stderr pipe")?;
    let stdout = child.stdout.take().context("no stdout pipe")?;
    let access = Logs::default();
    let sink = Arc::clone(&access);
    std::thread::spawn(move || {
        for line in BufReader::new(stdout).lines().map_while(Result::ok) {
            if let Ok(mut l) = sink.lock() {
                l.push(line);
            }
        }
    });
    let logs = Logs::default();
    let sink = Arc::clone(&logs);
    std::thread::spawn(move || {
        for line in BufReader::new(stderr).lines().map_while(Result::ok) {
            on_line(&line);
            if let Ok(mut l) = sink.lock() {
                l.push(line);
            }
        }
    });
    Ok((child, logs, access))
}

/// Spawns `binary --config path` and waits for the log line containing `ready_marker` and an
/// `addr=` field: the address it bound.
fn spawn_and_wait(
    binary: &Path,
    config: &Path,
    ready_marker: &str,
) -> anyhow::Result<(Child, SocketAddr, Logs, Logs)> {
    let (addr_tx, addr_rx) = mpsc::channel();
    let marker = ready_marker.to_owned();
    let (mut child, logs, access) = spawn(binary, config, move |line| {
        if line.contains(&marker)
            && let Some(addr) = field(line, "addr").and_then(|a| a.parse().ok())
        {
            let _ = addr_tx.send(addr);
        }
    })?;
    match addr_rx.recv_timeout(START_TIMEOUT) {
        Ok(addr) => Ok((child, addr, logs, access)),
        Err(_) => {
            let _ = child.kill();
            let status = child.wait().ok();
            bail!(
                "{} did not start listening ({status:?}); its log:\n{}",
                binary.display(),
                joined(&logs)
            )
        }
    }
}

fn joined(logs: &Logs) -> String {
    logs.lock().map(|l| l.join("\n")).unwrap_or_default()
}

/// A loopback port nobody listens on right now (bind :0, read it, release it).
/// A loopback port nobody else in this process was given. Ports come from one process-wide
/// counter in a range below the kernel's ephemeral ports (which `127.0.0.1:0` binds draw from),
/// starting at an offset from the process id, so tests running in parallel never receive the
/// same port, and a port-0 listener elsewhere cannot take one between its check and its use. A
/// port another process holds is skipped.
pub fn free_port() -> anyhow::Result<u16> {
    use std::sync::atomic::{AtomicU32, Ordering};
    const FIRST: u32 = 20_000;
    const SPAN: u32 = 12_000;
    static NEXT: AtomicU32 = AtomicU32::new(u32::MAX);
    let _ = NEXT.compare_exchange(
        u32::MAX,
        (std::process::id() * 211) % SPAN,
        Ordering::AcqRel,
        Ordering::Acquire,
    );
    for _ in 0..SPAN {
        let offset = NEXT.fetch_add(1, Ordering::AcqRel) % SPAN;
        let port = u16::try_from(FIRST + offset)?;
        if std::net::TcpListener::bind(("127.0.0.1", port)).is_ok() {
            return Ok(port);
        }
    }
    bail!("no free loopback port in {FIRST}..{}", FIRST + SPAN)
}

pub use nix::sys::signal::Signal;

/// Sends `signal` to process `pid`.
pub fn send_signal(pid: u32, signal: Signal) -> anyhow::Result<()> {
    let raw = i32::try_from(pid)?;
    nix::sys::signal::kill(nix::unistd::Pid::from_raw(raw), signal)
        .with_context(|| format!("sending {signal} to {pid}"))
}

/// How long a stopped process gets to exit on SIGTERM before SIGKILL.
const STOP_TIMEOUT: Duration = Duration::from_secs(15);

/// A running `edge`, with the scripted or real origins it was given.
pub struct EdgeProcess {
    child: Child,
    /// The proxy listener.
    pub addr: SocketAddr,
    /// The admin listener.
    pub admin: SocketAddr,
    logs: Logs,
    access: Logs,
    _dir: tempfile::TempDir,
}

impl EdgeProcess {
    /// Starts `edge` in front of `origins`, with `extra` (TOML) merged over a test base config:
    /// 2 threads, TCP health checks every 100 ms, free loopback ports.
    pub fn start(origins: &[SocketAddr], extra: &str) -> anyhow::Result<Self> {
        let (addr, admin) = (free_port()?, free_port()?);
        let origins: Vec<String> = origins.iter().map(|o| format!("\"{o}\"")).collect();
        let base = format!(
            "[server]\nlisten = [\"127.0.0.1:{addr}\"]\nthreads = 2\ngrace_period_secs = 0\ngraceful_shutdown_timeout_secs = 0\n\
             [origin]\naddresses = [{}]\nhealth_check_path = \"\"\nhealth_check_interval_ms = 100\n\
             [admin]\nlisten = \"127.0.0.1:{admin}\"\n",
            origins.join(", ")
        );
        let mut config: toml::Table = base.parse()?;
        merge(
            &mut config,
            extra.parse::<toml::Table>().context("extra edge config")?,
        );
        let admin_addr: SocketAddr = format!("127.0.0.1:{admin}").parse()?;
        let proxy_addr: SocketAddr = format!("127.0.0.1:{addr}").parse()?;
        Self::start_with(&toml::to_string(&config)?, proxy_addr, admin_addr, &[])
    }

    /// Starts `edge` with `config` exactly as given (it names every listener: `addr` is one
    /// of its proxy listeners, `admin` its admin listener) and `args` after `--config`; waits
    /// until both accept. With `--upgrade` they accept already (the running edge's): the new
    /// process is waited for by its log line instead.
    pub fn start_with(
        config: &str,
        proxy_addr: SocketAddr,
        admin_addr: SocketAddr,
        args: &[&str],
    ) -> anyhow::Result<Self> {
        let dir = tempfile::tempdir()?;
        let path = dir.path().join("edge.toml");
        std::fs::write(&path, config)?;
        let (listening_tx, listening_rx) = mpsc::channel();
        let (mut child, logs, access) =
            spawn_with_args(&binary("edge")?, &path, args, move |line: &str| {
                if line.contains("edge admin listening") {
                    let _ = listening_tx.send(());
                }
            })?;
        let mut listening = !args.contains(&"--upgrade");
        let deadline = std::time::Instant::now() + START_TIMEOUT;
        loop {
            listening |= listening_rx.try_recv().is_ok();
            if listening
                && answers_healthz(admin_addr)
                && std::net::TcpStream::connect(proxy_addr).is_ok()
            {
                break;
            }
            if let Some(status) = child.try_wait()? {
                bail!(
                    "edge exited ({status}) before listening; its log:\n{}",
                    joined(&logs)
                );
            }
            if std::time::Instant::now() > deadline {
                let _ = child.kill();
                bail!("edge did not start listening; its log:\n{}", joined(&logs));
            }
            std::thread::sleep(Duration::from_millis(20));
        }
        Ok(Self {
            child,
            addr: proxy_addr,
            admin: admin_addr,
            logs,
            access,
            _dir: dir,
        })
    }

    pub fn url(&self, path: &str) -> String {
        format!("http://{}{path}", self.addr)
    }

    /// The config file it runs with (rewrite it, then SIGHUP, to reload).
    pub fn config_path(&self) -> PathBuf {
        self._dir.path().join("edge.toml")
    }

    /// A metric from the admin `/metrics`: one series (`name{label="v"}`), or the sum of every
    /// series of a bare name. 0 when absent, as Prometheus counters start.
    pub async fn metric(&self, series: &str) -> anyhow::Result<f64> {
        let text = crate::http_client()
            .get(self.admin_url("/metrics"))
            .send()
            .await?
            .text()
            .await?;
        let bare = !series.contains('{');
        Ok(text
            .lines()
            .filter(|l| {
                l.strip_prefix(series)
                    .is_some_and(|rest| rest.starts_with(' ') || (bare && rest.starts_with('{')))
            })
            .filter_map(|l| l.rsplit(' ').next()?.parse::<f64>().ok())
            .sum::<f64>()
            // An empty float sum is -0.0; say 0 in failure messages.
            + 0.0)
    }

    /// Waits (10 s at most) until `series` (as [`EdgeProcess::metric`] reads it) is at least
    /// `at_least`: for what the edge does in the background.
    pub async fn metric_reaches(&self, series: &str, at_least: f64) -> anyhow::Result<()> {
        let what = format!("{series} >= {at_least}");
        crate::wait::eventually(Duration::from_secs(10), &what, || async {
            let value = self.metric(series).await.ok()?;
            (value >= at_least).then_some(())
        })
        .await
    }

    pub fn admin_url(&self, path: &str) -> String {
        format!("http://{}{path}", self.admin)
    }

    pub fn logs(&self) -> String {
        joined(&self.logs)
    }

    /// Its access log lines so far (standard output).
    pub fn access_lines(&self) -> Vec<String> {
        self.access.lock().map(|l| l.clone()).unwrap_or_default()
    }

    /// The process id (for CPU accounting and pinning in benchmarks).
    pub fn pid(&self) -> u32 {
        self.child.id()
    }

    /// SIGTERM, then wait for the exit status.
    pub fn stop(mut self) -> anyhow::Result<std::process::ExitStatus> {
        terminate(&mut self.child)
    }

    /// Sends `signal` without waiting.
    pub fn signal(&self, signal: Signal) -> anyhow::Result<()> {
        send_signal(self.child.id(), signal)
    }

    /// The exit status once the process has exited, if it does within `timeout`.
    pub fn exited_within(
        &mut self,
        timeout: Duration,
    ) -> anyhow::Result<Option<std::process::ExitStatus>> {
        let deadline = std::time::Instant::now() + timeout;
        loop {
            if let Some(status) = self.child.try_wait()? {
                return Ok(Some(status));
            }
            if std::time::Instant::now() >= deadline {
                return Ok(None);
            }
            std::thread::sleep(Duration::from_millis(20));
        }
    }
}

impl Drop for EdgeProcess {
    fn drop(&mut self) {
        let _ = terminate(&mut self.child);
    }
}

/// Deep-merges `extra` into `base` (tables merge, everything else replaces).
fn merge(base: &mut toml::Table, extra: toml::Table) {
    for (k, v) in extra {
        match (base.get_mut(&k), v) {
            (Some(toml::Value::Table(b)), toml::Value::Table(e)) => merge(b, e),
            (_, v) => {
                base.insert(k, v);
            }
        }
    }
}

/// A blocking `GET /healthz` on the admin listener.
fn answers_healthz(admin: SocketAddr) -> bool {
    use std::io::{Read, Write};
    let Ok(mut s) = std::net::TcpStream::connect(admin) else {
        return false;
    };
    let _ = s.set_read_timeout(Some(Duration::from_secs(2)));
    if s.write_all(b"GET /healthz HTTP/1.1\r\nHost: admin\r\nConnection: close\r\n\r\n")
        .is_err()
    {
        return false;
    }
    let mut out = Vec::new();
    let _ = s.read_to_end(&mut out);
    out.starts_with(b"HTTP/1.1 200")
}

/// The value of `name=value` in a tracing log line.
fn field<'a>(line: &'a str, name: &str) -> Option<&'a str> {
    let start = line.find(&format!("{name}="))? + name.len() + 1;
    line[start..].split_whitespace().next()
}

/// SIGTERM, then SIGKILL if the process is still there after `STOP_TIMEOUT`; its exit status.
fn terminate(child: &mut Child) -> anyhow::Result<std::process::ExitStatus> {
    if let Some(status) = child.try_wait()? {
        return Ok(status);
    }
    let _ = send_signal(child.id(), Signal::SIGTERM);
    let deadline = std::time::Instant::now() + STOP_TIMEOUT;
    while std::time::Instant::now() < deadline {
        if let Some(status) = child.try_wait()? {
            return Ok(status);
        }
        std::thread::sleep(Duration::from_millis(20));
    }
    child.kill()?;
    Ok(child.wait()?)
}
