//! Real memcached servers for shared-tier tests: started on a free loopback port, stopped on
//! drop, and abusable on purpose: killed, frozen (SIGSTOP), thawed, restarted. A few raw text
//! protocol helpers let tests look inside (list keys, delete one).

use std::net::SocketAddr;
use std::process::{Child, Command, Stdio};
use std::time::Duration;

use anyhow::{Context, bail};

use crate::process::{Signal, free_port, send_signal};

pub struct Memcached {
    child: Option<Child>,
    pub addr: SocketAddr,
    memory_mb: u32,
}

impl Memcached {
    /// A server with 64 MiB of item memory.
    pub fn start() -> anyhow::Result<Self> {
        Self::with_memory(64)
    }

    pub fn with_memory(memory_mb: u32) -> anyhow::Result<Self> {
        let addr: SocketAddr = format!("127.0.0.1:{}", free_port()?).parse()?;
        let mut m = Self {
            child: None,
            addr,
            memory_mb,
        };
        m.spawn()?;
        Ok(m)
    }

    /// The process id while it runs (for CPU accounting in benchmarks).
    pub fn pid(&self) -> Option<u32> {
        self.child.as_ref().map(Child::id)
    }

    fn spawn(&mut self) -> anyhow::Result<()> {
        let child = Command::new("memcached")
            // -u only matters when run as root (CI is), where memcached insists on it.
            .args([
                "-l",
                "127.0.0.1",
                "-p",
                &self.addr.port().to_string(),
                "-U",
                "0",
                "-m",
                &self.memory_mb.to_string(),
                "-u",
                "root",
            ])
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .context("starting memcached (scripts/test installs it)")?;
        self.child = Some(child);
        let deadline = std::time::Instant::now() + Duration::from_secs(10);
        while std::net::TcpStream::connect(self.addr).is_err() {
            if std::time::Instant::now() > deadline {
                bail!("memcached did not start listening on {}", self.addr);
            }
            std::thread::sleep(Duration::from_millis(10));
        }
        Ok(())
    }

    fn signal(&self, signal: Signal) -> anyhow::Result<()> {
        send_signal(self.child.as_ref().context("not running")?.id(), signal)
    }

    /// SIGKILL: connections are refused from now on.
    pub fn kill(&mut self) -> anyhow::Result<()> {
        if let Some(mut child) = self.child.take() {
            child.kill()?;
            child.wait()?;
        }
        Ok(())
    }

    /// SIGSTOP: connections are accepted by the kernel but nothing answers.
    pub fn freeze(&self) -> anyhow::Result<()> {
        self.signal(Signal::SIGSTOP)
    }

    pub fn thaw(&self) -> anyhow::Result<()> {
        self.signal(Signal::SIGCONT)
    }

    /// A fresh, empty server on the same port.
    pub fn restart(&mut self) -> anyhow::Result<()> {
        self.kill()?;
        self.spawn()
    }

    /// One text-protocol exchange, reading until a line equal to one of `ends`: the lines before
    /// it, and it.
    fn exchange(&self, command: &str, ends: &[&str]) -> anyhow::Result<(Vec<String>, String)> {
        use std::io::{BufRead, BufReader, Write};
        let mut s = std::net::TcpStream::connect(self.addr)?;
        s.set_read_timeout(Some(Duration::from_secs(5)))?;
        s.write_all(command.as_bytes())?;
        let mut lines = Vec::new();
        for line in BufReader::new(s).lines() {
            let line = line?;
            if ends.contains(&line.as_str()) {
                return Ok((lines, line));
            }
            lines.push(line);
        }
        bail!("connection closed before {ends:?}")
    }

    /// Every key stored (via `lru_crawler metadump all`, which percent-encodes them).
    pub fn keys(&self) -> anyhow::Result<Vec<String>> {
        let (lines, _) = self.exchange("lru_crawler metadump all\r\n", &["END"])?;
        lines
            .iter()
            .filter_map(|l| l.split_whitespace().find_map(|f| f.strip_prefix("key=")))
            .map(percent_decode)
            .collect()
    }

    pub fn delete(&self, key: &str) -> anyhow::Result<bool> {
        let (_, end) = self.exchange(&format!("delete {key}\r\n"), &["DELETED", "NOT_FOUND"])?;
        Ok(end == "DELETED")
    }
}

impl Drop for Memcached {
    fn drop(&mut self) {
        if let Some(child) = &self.child {
            // A frozen process must be thawed to die promptly.
            let _ = send_signal(child.id(), Signal::SIGCONT);
        }
        let _ = self.kill();
    }
}

fn percent_decode(s: &str) -> anyhow::Result<String> {
    let mut out = Vec::with_capacity(s.len());
    let mut bytes = s.bytes();
    while let Some(b) = bytes.next() {
        if b == b'%' {
            let hex: String = bytes.by_ref().take(2).map(char::from).collect();
            out.push(
                u8::from_str_radix(&hex, 16).with_context(|| format!("bad escape in key {s}"))?,
            );
        } else {
            out.push(b);
        }
    }
    Ok(String::from_utf8(out)?)
}
