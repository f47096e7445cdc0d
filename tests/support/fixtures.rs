//! Images for uploads: the committed photo fixtures and generated good and hostile files.

use std::io::Cursor;
use std::path::PathBuf;

use image::{DynamicImage, ImageFormat, Rgb, RgbImage};

pub fn fixture_path(name: &str) -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR"))
        .join("tests/fixtures/images")
        .join(name)
}

/// A committed fixture's bytes.
pub fn fixture(name: &str) -> Vec<u8> {
    std::fs::read(fixture_path(name)).unwrap_or_else(|e| panic!("fixture {name}: {e}"))
}

/// A small, distinct JPEG per `seed`: uploads in loops each get different bytes.
pub fn jpeg(width: u32, height: u32, seed: u32) -> Vec<u8> {
    let img = RgbImage::from_fn(width, height, |x, y| {
        Rgb([
            (x * 3 + seed * 17) as u8,
            (y * 5 + seed * 29) as u8,
            ((x ^ y) + seed * 7) as u8,
        ])
    });
    encode(&DynamicImage::ImageRgb8(img), ImageFormat::Jpeg)
}

pub fn png(width: u32, height: u32) -> Vec<u8> {
    let img = RgbImage::from_fn(width, height, |x, y| Rgb([x as u8, y as u8, 128]));
    encode(&DynamicImage::ImageRgb8(img), ImageFormat::Png)
}

fn encode(img: &DynamicImage, format: ImageFormat) -> Vec<u8> {
    let mut out = Cursor::new(Vec::new());
    img.write_to(&mut out, format)
        .unwrap_or_else(|e| panic!("encoding a fixture: {e}"));
    out.into_inner()
}

/// The first half of a real JPEG: what an interrupted upload looks like.
pub fn truncated_jpeg() -> Vec<u8> {
    let full = fixture("raccoon-small.jpg");
    full[..full.len() / 2].to_vec()
}

/// A text file, whatever name it is uploaded under.
pub fn text_file() -> Vec<u8> {
    b"This is not an image, even if it is called holiday.jpg.\n".repeat(20)
}

/// A 30000×30000 PNG in a few dozen bytes: a valid header and a tiny compressed stream. Decoded
/// naively it would need 2.7 GB.
pub fn png_bomb() -> Vec<u8> {
    let (w, h) = (30_000u32, 30_000u32);
    let mut out = b"\x89PNG\r\n\x1a\n".to_vec();
    let mut ihdr = Vec::new();
    ihdr.extend_from_slice(&w.to_be_bytes());
    ihdr.extend_from_slice(&h.to_be_bytes());
    ihdr.extend_from_slice(&[8, 2, 0, 0, 0]);
    push_chunk(&mut out, b"IHDR", &ihdr);
    let idat = [
        0x78, 0x01, 0x01, 0x04, 0x00, 0xFB, 0xFF, 0, 0, 0, 0, 0x00, 0x04, 0x00, 0x01,
    ];
    push_chunk(&mut out, b"IDAT", &idat);
    push_chunk(&mut out, b"IEND", &[]);
    out
}

fn push_chunk(out: &mut Vec<u8>, kind: &[u8; 4], data: &[u8]) {
    out.extend_from_slice(&(data.len() as u32).to_be_bytes());
    let mut chunk = kind.to_vec();
    chunk.extend_from_slice(data);
    out.extend_from_slice(&chunk);
    let mut crc = 0xFFFF_FFFFu32;
    for &b in &chunk {
        crc ^= u32::from(b);
        for _ in 0..8 {
            crc = if crc & 1 == 1 {
                (crc >> 1) ^ 0xEDB8_8320
            } else {
                crc >> 1
            };
        }
    }
    out.extend_from_slice(&(!crc).to_be_bytes());
}
