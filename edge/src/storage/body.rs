//! The bodies of L1 objects. Small ones live on the heap (`Bytes`). From
//! `cache.l1.sendfile_min_bytes` up they live in a memory file (`memfd`) instead, written once
//! when stored and never changed, so a reader can hand the file to the kernel to send to a
//! socket (`sendfile`) without copying the bytes through user space; readers that need the
//! bytes themselves (ranges, HTTP/2, TLS) read them from the file.
//!
//! Each memory file is a file descriptor: at most `max_files` exist at once (a share of the
//! process's open-file limit); past that, bodies stay on the heap.

use std::fs::File;
use std::os::unix::fs::FileExt;
use std::sync::Arc;
use std::sync::atomic::{AtomicUsize, Ordering};

use bytes::{Bytes, BytesMut};
use nix::sys::memfd::{MFdFlags, memfd_create};

/// An object's body.
#[derive(Clone, Debug)]
pub enum Body {
    Heap(Bytes),
    File(Arc<BodyFile>),
}

impl Body {
    pub fn len(&self) -> usize {
        match self {
            Body::Heap(b) => b.len(),
            Body::File(f) => f.len,
        }
    }

    /// Bytes `start..end` of the body (`end` at most its length).
    pub fn read(&self, start: usize, end: usize) -> std::io::Result<Bytes> {
        match self {
            Body::Heap(b) => Ok(b.slice(start..end)),
            Body::File(f) => f.read(start, end),
        }
    }
}

/// A body in a memory file.
#[derive(Debug)]
pub struct BodyFile {
    file: File,
    len: usize,
    /// Counted in the live files while this exists.
    live: Arc<Live>,
}

/// The memory files in existence, and their bytes.
#[derive(Debug, Default)]
struct Live {
    files: AtomicUsize,
    bytes: AtomicUsize,
}

impl BodyFile {
    pub fn len(&self) -> usize {
        self.len
    }

    /// The file, for `sendfile`.
    pub fn file(&self) -> &File {
        &self.file
    }

    /// Bytes `start..end` of the file.
    pub fn read(&self, start: usize, end: usize) -> std::io::Result<Bytes> {
        let mut buf = BytesMut::zeroed(end.saturating_sub(start));
        self.file.read_exact_at(&mut buf, start as u64)?;
        Ok(buf.freeze())
    }
}

impl Drop for BodyFile {
    fn drop(&mut self) {
        self.live.files.fetch_sub(1, Ordering::Relaxed);
        self.live.bytes.fetch_sub(self.len, Ordering::Relaxed);
    }
}

/// Where new bodies go: the heap, or a memory file.
#[derive(Debug)]
pub struct Bodies {
    /// Smallest body kept in a file; 0: none are.
    min: usize,
    max_files: usize,
    live: Arc<Live>,
}

impl Bodies {
    pub fn new(min: usize, max_files: usize) -> Self {
        Self {
            min,
            max_files,
            live: Arc::default(),
        }
    }

    /// Memory files in existence, and the bytes they hold.
    pub fn files(&self) -> (usize, usize) {
        (
            self.live.files.load(Ordering::Relaxed),
            self.live.bytes.load(Ordering::Relaxed),
        )
    }

    /// `bytes` as a body to keep: in a memory file when it is large enough and one is to be
    /// had, else as it is.
    pub fn keep(&self, bytes: Bytes) -> Body {
        if self.min == 0 || bytes.len() < self.min {
            return Body::Heap(bytes);
        }
        if self.live.files.fetch_add(1, Ordering::Relaxed) >= self.max_files {
            self.live.files.fetch_sub(1, Ordering::Relaxed);
            return Body::Heap(bytes);
        }
        match write_file(&bytes) {
            Ok(file) => {
                self.live.bytes.fetch_add(bytes.len(), Ordering::Relaxed);
                Body::File(Arc::new(BodyFile {
                    file,
                    len: bytes.len(),
                    live: Arc::clone(&self.live),
                }))
            }
            Err(e) => {
                self.live.files.fetch_sub(1, Ordering::Relaxed);
                tracing::warn!(error = %e, "could not keep a body in a memory file: kept on the heap");
                Body::Heap(bytes)
            }
        }
    }
}

fn write_file(bytes: &[u8]) -> std::io::Result<File> {
    let file = File::from(memfd_create("outpost-body", MFdFlags::MFD_CLOEXEC)?);
    file.write_all_at(bytes, 0)?;
    Ok(file)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn large_bodies_go_to_files_within_the_cap() {
        let bodies = Bodies::new(4, 1);
        let small = bodies.keep(Bytes::from_static(b"abc"));
        assert!(matches!(small, Body::Heap(_)));
        let large = bodies.keep(Bytes::from_static(b"hello world"));
        let Body::File(file) = &large else {
            panic!("a file body");
        };
        assert_eq!(file.len(), 11);
        assert_eq!(large.read(6, 11).expect("read"), &b"world"[..]);
        assert_eq!(bodies.files(), (1, 11));
        let over_cap = bodies.keep(Bytes::from_static(b"another one"));
        assert!(matches!(over_cap, Body::Heap(_)), "one file at most");
        drop(large);
        assert_eq!(bodies.files(), (0, 0), "a dropped body gives its file back");
        assert!(matches!(
            bodies.keep(Bytes::from_static(b"another one")),
            Body::File(_)
        ));
    }
}
