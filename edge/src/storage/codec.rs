//! The shared tier's item format. One manifest per object: the serialized `CacheMeta`, when it
//! was stored, its tags, and the body inline when small, or the chunk list when not. Versioned
//! and checksummed: a manifest or chunk that does not check out is a miss, never a wrong body.
//!
//! ```text
//! manifest: "OPM" version:u8 stored_at_ms:i64 internal:bytes header:bytes tags:u16 {tag:bytes}
//!           body_kind:u8 ( inline: body:bytes32
//!                        | chunked: write_id:u64 total:u64 chunk_bytes:u32 count:u32 {xxh3:u64} )
//!           xxh3(all of the above):u64
//! bytes   = len:u16 data (bytes32 = len:u32 data); integers little-endian
//! ```
//!
//! `stored_at_ms` duplicates the stored time inside the serialized meta and no reader uses it;
//! it stays because every node of a region, whatever its version, must read every other node's
//! manifests: dropping it is a format version of its own, with a reader for both.

use bytes::Bytes;
use xxhash_rust::xxh3::xxh3_64;

const MAGIC: &[u8; 3] = b"OPM";
const VERSION: u8 = 1;

/// Where an object's body lives.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Body {
    Inline(Bytes),
    Chunked(Chunks),
}

/// The chunks of one write: `count` items under the object's key and `write_id`.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Chunks {
    pub write_id: u64,
    pub total_len: u64,
    pub chunk_bytes: u32,
    /// xxh3 of each chunk, to detect a corrupt or foreign chunk.
    pub sums: Vec<u64>,
}

#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Manifest {
    /// When the object was stored (ms since the epoch): what purges compare against.
    pub stored_at_ms: i64,
    /// `CacheMeta::serialize()`: internal meta and response header.
    pub meta_internal: Vec<u8>,
    pub meta_header: Vec<u8>,
    /// Surrogate keys of the object, for purging by tag.
    pub tags: Vec<String>,
    pub body: Body,
}

#[derive(Debug, thiserror::Error, PartialEq, Eq)]
pub enum CodecError {
    #[error("not a manifest of this version")]
    Version,
    #[error("manifest truncated")]
    Truncated,
    #[error("manifest checksum mismatch")]
    Checksum,
    #[error("field too large to encode")]
    TooLarge,
}

pub fn encode(m: &Manifest) -> Result<Vec<u8>, CodecError> {
    let inline_len = match &m.body {
        Body::Inline(b) => b.len(),
        Body::Chunked(c) => c.sums.len() * 8,
    };
    let mut out = Vec::with_capacity(64 + m.meta_internal.len() + m.meta_header.len() + inline_len);
    out.extend_from_slice(MAGIC);
    out.push(VERSION);
    out.extend_from_slice(&m.stored_at_ms.to_le_bytes());
    put16(&mut out, &m.meta_internal)?;
    put16(&mut out, &m.meta_header)?;
    let tags = u16::try_from(m.tags.len()).map_err(|_| CodecError::TooLarge)?;
    out.extend_from_slice(&tags.to_le_bytes());
    for tag in &m.tags {
        put16(&mut out, tag.as_bytes())?;
    }
    match &m.body {
        Body::Inline(b) => {
            out.push(0);
            let len = u32::try_from(b.len()).map_err(|_| CodecError::TooLarge)?;
            out.extend_from_slice(&len.to_le_bytes());
            out.extend_from_slice(b);
        }
        Body::Chunked(c) => {
            out.push(1);
            out.extend_from_slice(&c.write_id.to_le_bytes());
            out.extend_from_slice(&c.total_len.to_le_bytes());
            out.extend_from_slice(&c.chunk_bytes.to_le_bytes());
            let count = u32::try_from(c.sums.len()).map_err(|_| CodecError::TooLarge)?;
            out.extend_from_slice(&count.to_le_bytes());
            for sum in &c.sums {
                out.extend_from_slice(&sum.to_le_bytes());
            }
        }
    }
    let sum = xxh3_64(&out);
    out.extend_from_slice(&sum.to_le_bytes());
    Ok(out)
}

pub fn decode(bytes: &[u8]) -> Result<Manifest, CodecError> {
    if bytes.len() < MAGIC.len() + 1 + 8 || &bytes[..3] != MAGIC || bytes[3] != VERSION {
        return Err(CodecError::Version);
    }
    let (body, sum) = bytes.split_at(bytes.len() - 8);
    if xxh3_64(body) != u64::from_le_bytes(sum.try_into().map_err(|_| CodecError::Truncated)?) {
        return Err(CodecError::Checksum);
    }
    let mut r = Reader { bytes: body, at: 4 };
    let stored_at_ms = i64::from_le_bytes(r.array()?);
    let meta_internal = r.bytes16()?.to_vec();
    let meta_header = r.bytes16()?.to_vec();
    let tags = (0..u16::from_le_bytes(r.array()?))
        .map(|_| r.bytes16().map(|t| String::from_utf8_lossy(t).into_owned()))
        .collect::<Result<_, _>>()?;
    let body = match r.array::<1>()?[0] {
        0 => {
            let len = u32::from_le_bytes(r.array()?) as usize;
            Body::Inline(Bytes::copy_from_slice(r.take(len)?))
        }
        1 => {
            let write_id = u64::from_le_bytes(r.array()?);
            let total_len = u64::from_le_bytes(r.array()?);
            let chunk_bytes = u32::from_le_bytes(r.array()?);
            let count = u32::from_le_bytes(r.array()?);
            let sums = (0..count)
                .map(|_| r.array().map(u64::from_le_bytes))
                .collect::<Result<_, _>>()?;
            Body::Chunked(Chunks {
                write_id,
                total_len,
                chunk_bytes,
                sums,
            })
        }
        _ => return Err(CodecError::Version),
    };
    Ok(Manifest {
        stored_at_ms,
        meta_internal,
        meta_header,
        tags,
        body,
    })
}

/// The checksum a chunk must match.
pub fn chunk_sum(chunk: &[u8]) -> u64 {
    xxh3_64(chunk)
}

fn put16(out: &mut Vec<u8>, data: &[u8]) -> Result<(), CodecError> {
    let len = u16::try_from(data.len()).map_err(|_| CodecError::TooLarge)?;
    out.extend_from_slice(&len.to_le_bytes());
    out.extend_from_slice(data);
    Ok(())
}

struct Reader<'a> {
    bytes: &'a [u8],
    at: usize,
}

impl<'a> Reader<'a> {
    fn take(&mut self, n: usize) -> Result<&'a [u8], CodecError> {
        let end = self.at.checked_add(n).ok_or(CodecError::Truncated)?;
        let s = self.bytes.get(self.at..end).ok_or(CodecError::Truncated)?;
        self.at = end;
        Ok(s)
    }

    fn array<const N: usize>(&mut self) -> Result<[u8; N], CodecError> {
        self.take(N)?.try_into().map_err(|_| CodecError::Truncated)
    }

    fn bytes16(&mut self) -> Result<&'a [u8], CodecError> {
        let len = u16::from_le_bytes(self.array()?) as usize;
        self.take(len)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn manifest(body: Body) -> Manifest {
        Manifest {
            stored_at_ms: 1_700_000_000_123,
            meta_internal: vec![1, 2, 3],
            meta_header: b"HTTP/1.1 200 OK\r\n\r\n".to_vec(),
            tags: vec!["front".into(), "image-7".into()],
            body,
        }
    }

    #[test]
    fn inline_and_chunked_round_trip() {
        for body in [
            Body::Inline(Bytes::from_static(b"hello")),
            Body::Inline(Bytes::new()),
            Body::Chunked(Chunks {
                write_id: 42,
                total_len: 3_000_000,
                chunk_bytes: 520_192,
                sums: vec![1, 2, 3, 4, 5, 6],
            }),
        ] {
            let m = manifest(body);
            assert_eq!(decode(&encode(&m).expect("encode")).expect("decode"), m);
        }
    }

    #[test]
    fn damage_is_detected_not_misread() {
        let bytes = encode(&manifest(Body::Inline(Bytes::from_static(b"hello")))).expect("encode");
        for cut in [0, 3, 10, bytes.len() - 1] {
            assert!(decode(&bytes[..cut]).is_err(), "cut at {cut}");
        }
        for flip in [4, 20, bytes.len() / 2, bytes.len() - 9] {
            let mut damaged = bytes.clone();
            damaged[flip] ^= 0x40;
            assert!(decode(&damaged).is_err(), "byte {flip} flipped");
        }
        let mut other_version = bytes.clone();
        other_version[3] = 9;
        assert_eq!(decode(&other_version), Err(CodecError::Version));
        assert_eq!(
            decode(b"garbage that is long enough to check"),
            Err(CodecError::Version)
        );
    }
}
