//! What the load-generating benches share: knobs from the environment, a seedable generator,
//! and a minimal keep-alive HTTP/1.1 client (the load generator must cost far less than the
//! edge, so it parses in place and copies nothing it is not asked for).

#![allow(dead_code)] // each bench uses its own part

use std::net::SocketAddr;

use anyhow::{Context, bail};
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpStream;

/// An integer from the environment, or `default`.
pub fn knob(name: &str, default: u64) -> u64 {
    std::env::var(name)
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(default)
}

/// splitmix64: a fixed, seedable generator, so runs draw the same sequence.
pub struct Rng(pub u64);

impl Rng {
    pub fn next(&mut self) -> u64 {
        self.0 = self.0.wrapping_add(0x9E37_79B9_7F4A_7C15);
        let mut z = self.0;
        z = (z ^ (z >> 30)).wrapping_mul(0xBF58_476D_1CE4_E5B9);
        z = (z ^ (z >> 27)).wrapping_mul(0x94D0_49BB_1331_11EB);
        z ^ (z >> 31)
    }

    /// Uniform in [0, 1).
    pub fn unit(&mut self) -> f64 {
        (self.next() >> 11) as f64 / (1u64 << 53) as f64
    }
}

/// One answer, borrowed from the connection's buffer.
pub struct Head<'a> {
    pub status: u16,
    /// The `Cache-Status` value (empty when absent).
    pub cache_status: &'a [u8],
    pub body: &'a [u8],
}

pub struct Conn {
    addr: SocketAddr,
    host: &'static str,
    stream: TcpStream,
    buf: Vec<u8>,
}

impl Conn {
    /// A connection to `addr`, sending `Host: host` on every request.
    pub async fn open(addr: SocketAddr, host: &'static str) -> anyhow::Result<Self> {
        let stream = TcpStream::connect(addr).await?;
        stream.set_nodelay(true)?;
        Ok(Self {
            addr,
            host,
            stream,
            buf: Vec::with_capacity(64 * 1024),
        })
    }

    /// A fresh connection after an error left this one in an unknown state.
    pub async fn reopen(&mut self) -> anyhow::Result<()> {
        *self = Self::open(self.addr, self.host).await?;
        Ok(())
    }

    /// `GET path`; `read` sees the answer in place and returns what the caller keeps.
    pub async fn get<T>(
        &mut self,
        path: &str,
        read: impl FnOnce(Head<'_>) -> T,
    ) -> anyhow::Result<T> {
        let request = format!("GET {path} HTTP/1.1\r\nHost: {}\r\n\r\n", self.host);
        self.stream.write_all(request.as_bytes()).await?;
        loop {
            let mut headers = [httparse::EMPTY_HEADER; 32];
            let mut head = httparse::Response::new(&mut headers);
            if let httparse::Status::Complete(head_len) = head.parse(&self.buf)? {
                let status = head.code.unwrap_or(0);
                let (mut length, mut cache_status) = (None, (0, 0));
                for h in head.headers.iter() {
                    if h.name.eq_ignore_ascii_case("content-length") {
                        length = std::str::from_utf8(h.value)
                            .ok()
                            .and_then(|v| v.parse().ok());
                    } else if h.name.eq_ignore_ascii_case("cache-status") {
                        // Where the value sits in the buffer, to lend it out after the parse.
                        let start = h.value.as_ptr() as usize - self.buf.as_ptr() as usize;
                        cache_status = (start, start + h.value.len());
                    }
                }
                let length: usize = length.context("a response without Content-Length")?;
                while self.buf.len() < head_len + length {
                    self.fill().await?;
                }
                let kept = read(Head {
                    status,
                    cache_status: &self.buf[cache_status.0..cache_status.1],
                    body: &self.buf[head_len..head_len + length],
                });
                self.buf.drain(..head_len + length);
                return Ok(kept);
            }
            self.fill().await?;
        }
    }

    async fn fill(&mut self) -> anyhow::Result<()> {
        if self.stream.read_buf(&mut self.buf).await? == 0 {
            bail!("the edge closed the connection");
        }
        Ok(())
    }
}
