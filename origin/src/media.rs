//! Image bytes in and out: what counts as an acceptable upload, decoding under limits, encoding
//! filter results, and the content address (SHA-256) that names every stored image.
//!
//! Everything here is CPU work and runs on the [`crate::workers`] pool, never on the async runtime.

use std::io::Cursor;

use image::{DynamicImage, ImageDecoder, ImageFormat, ImageReader, Limits};
use sha2::{Digest, Sha256};

/// The two formats we accept, recognised by their magic bytes, never by a filename.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum MediaType {
    Jpeg,
    Png,
}

impl MediaType {
    pub fn content_type(self) -> &'static str {
        match self {
            MediaType::Jpeg => "image/jpeg",
            MediaType::Png => "image/png",
        }
    }

    /// The extension used in media URLs (`/media/<sha256>.<ext>`).
    pub fn extension(self) -> &'static str {
        match self {
            MediaType::Jpeg => "jpg",
            MediaType::Png => "png",
        }
    }

    pub fn from_content_type(ct: &str) -> Option<Self> {
        match ct {
            "image/jpeg" => Some(MediaType::Jpeg),
            "image/png" => Some(MediaType::Png),
            _ => None,
        }
    }

    pub fn from_extension(ext: &str) -> Option<Self> {
        match ext {
            "jpg" => Some(MediaType::Jpeg),
            "png" => Some(MediaType::Png),
            _ => None,
        }
    }

    fn sniff(bytes: &[u8]) -> Option<Self> {
        match image::guess_format(bytes).ok()? {
            ImageFormat::Jpeg => Some(MediaType::Jpeg),
            ImageFormat::Png => Some(MediaType::Png),
            _ => None,
        }
    }

    fn image_format(self) -> ImageFormat {
        match self {
            MediaType::Jpeg => ImageFormat::Jpeg,
            MediaType::Png => ImageFormat::Png,
        }
    }
}

/// Limits against oversized and hostile images (decompression bombs).
#[derive(Clone, Copy, Debug)]
pub struct DecodeLimits {
    /// Largest width or height accepted.
    pub max_dimension: u32,
    /// Largest width × height accepted.
    pub max_pixels: u64,
}

impl DecodeLimits {
    fn image_limits(self) -> Limits {
        let mut limits = Limits::default();
        limits.max_image_width = Some(self.max_dimension);
        limits.max_image_height = Some(self.max_dimension);
        // RGBA8 of the largest accepted image plus room for the decoder's own buffers.
        limits.max_alloc = Some(self.max_pixels.saturating_mul(4).saturating_add(64 << 20));
        limits
    }
}

/// Why bytes were not accepted as an image. Each maps to a 4xx the client can act on.
#[derive(Debug, thiserror::Error, PartialEq, Eq)]
pub enum MediaError {
    #[error("the file is not a JPEG or PNG image")]
    UnsupportedType,
    #[error(
        "the image is {width}×{height} pixels; the limit is {max_dimension} pixels per side and \
         {max_pixels} pixels in all"
    )]
    TooManyPixels {
        width: u32,
        height: u32,
        max_dimension: u32,
        max_pixels: u64,
    },
    #[error("the image is corrupt or truncated: {0}")]
    Corrupt(String),
    #[error("could not encode the result: {0}")]
    Encode(String),
}

/// A decoded image together with the format it came in.
pub struct Decoded {
    pub image: DynamicImage,
    pub media_type: MediaType,
}

/// Bytes ready to be stored: the encoded image, its content address and its facts.
#[derive(Clone, Debug)]
pub struct Encoded {
    pub bytes: Vec<u8>,
    pub sha256: String,
    pub media_type: MediaType,
    pub width: u32,
    pub height: u32,
}

/// Checks that `bytes` really are a complete JPEG or PNG within `limits`, and decodes them.
///
/// The dimensions are read from the header before any pixel is decoded, so a 30000×30000 PNG of
/// a few hundred bytes is refused without allocating its 3.6 GB of pixels.
pub fn decode(bytes: &[u8], limits: DecodeLimits) -> Result<Decoded, MediaError> {
    let media_type = MediaType::sniff(bytes).ok_or(MediaError::UnsupportedType)?;
    let reader = || ImageReader::with_format(Cursor::new(bytes), media_type.image_format());
    let mut decoder = reader().into_decoder().map_err(corrupt)?;
    let (width, height) = decoder.dimensions();
    let pixels = u64::from(width) * u64::from(height);
    if width > limits.max_dimension || height > limits.max_dimension || pixels > limits.max_pixels {
        return Err(MediaError::TooManyPixels {
            width,
            height,
            max_dimension: limits.max_dimension,
            max_pixels: limits.max_pixels,
        });
    }
    if width == 0 || height == 0 {
        return Err(MediaError::Corrupt("the image has no pixels".into()));
    }
    decoder.set_limits(limits.image_limits()).map_err(corrupt)?;
    let image = DynamicImage::from_decoder(decoder).map_err(corrupt)?;
    if media_type == MediaType::Jpeg && !jpeg_is_complete(bytes) {
        // The JPEG decoder pads a cut-off scan with grey rather than failing; a missing
        // end-of-image marker is how a truncated upload shows.
        return Err(MediaError::Corrupt(
            "the JPEG data ends before its end-of-image marker".into(),
        ));
    }
    Ok(Decoded { image, media_type })
}

/// Describes already validated upload bytes for storage, keeping them byte-for-byte.
pub fn describe(bytes: Vec<u8>, decoded: &Decoded) -> Encoded {
    Encoded {
        sha256: sha256_hex(&bytes),
        media_type: decoded.media_type,
        width: decoded.image.width(),
        height: decoded.image.height(),
        bytes,
    }
}

/// JPEG quality for filter results: visually lossless for photos at about a third of q100's size.
pub const JPEG_QUALITY: u8 = 88;

/// Encodes a filter result in the format of its source.
pub fn encode(image: &DynamicImage, media_type: MediaType) -> Result<Encoded, MediaError> {
    let bytes = match media_type {
        MediaType::Jpeg => encode_jpeg(image)?,
        MediaType::Png => {
            let mut out = Cursor::new(Vec::new());
            image
                .write_with_encoder(image::codecs::png::PngEncoder::new(&mut out))
                .map_err(|e| MediaError::Encode(e.to_string()))?;
            out.into_inner()
        }
    };
    Ok(Encoded {
        sha256: sha256_hex(&bytes),
        media_type,
        width: image.width(),
        height: image.height(),
        bytes,
    })
}

/// JPEG through `jpeg-encoder` (SIMD; 4:2:0 chroma below q90): encoding is most of a filter
/// job's cost. Grey images stay single-channel; JPEG has no alpha, so it is dropped rather than
/// refused.
fn encode_jpeg(image: &DynamicImage) -> Result<Vec<u8>, MediaError> {
    let too_big = || MediaError::Encode("JPEG images are limited to 65535 pixels per side".into());
    let width = u16::try_from(image.width()).map_err(|_| too_big())?;
    let height = u16::try_from(image.height()).map_err(|_| too_big())?;
    let mut out = Vec::new();
    let encoder = jpeg_encoder::Encoder::new(&mut out, JPEG_QUALITY);
    let result = if matches!(image, DynamicImage::ImageLuma8(_)) {
        encoder.encode(
            image.as_bytes(),
            width,
            height,
            jpeg_encoder::ColorType::Luma,
        )
    } else {
        let rgb = image.to_rgb8();
        encoder.encode(rgb.as_raw(), width, height, jpeg_encoder::ColorType::Rgb)
    };
    result.map_err(|e| MediaError::Encode(e.to_string()))?;
    Ok(out)
}

pub fn sha256_hex(bytes: &[u8]) -> String {
    let digest = Sha256::digest(bytes);
    let mut hex = String::with_capacity(64);
    for b in digest {
        use std::fmt::Write;
        let _ = write!(hex, "{b:02x}");
    }
    hex
}

/// True when `s` looks like a content address (64 lowercase hex digits).
pub fn is_sha256_hex(s: &str) -> bool {
    s.len() == 64 && s.bytes().all(|b| matches!(b, b'0'..=b'9' | b'a'..=b'f'))
}

/// A JPEG ends with the EOI marker (FF D9); cameras sometimes append a few bytes after it, so
/// look for it near the end rather than only in the last two bytes.
fn jpeg_is_complete(bytes: &[u8]) -> bool {
    let tail = &bytes[bytes.len().saturating_sub(4096)..];
    tail.windows(2).any(|w| w == [0xFF, 0xD9])
}

fn corrupt(e: image::ImageError) -> MediaError {
    match e {
        image::ImageError::Limits(l) => {
            MediaError::Corrupt(format!("exceeds decoding limits: {l}"))
        }
        other => MediaError::Corrupt(other.to_string()),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const LIMITS: DecodeLimits = DecodeLimits {
        max_dimension: 12_000,
        max_pixels: 40_000_000,
    };

    fn jpeg(w: u32, h: u32) -> Vec<u8> {
        let img = DynamicImage::ImageRgb8(image::RgbImage::from_fn(w, h, |x, y| {
            image::Rgb([(x * 7) as u8, (y * 5) as u8, ((x + y) * 3) as u8])
        }));
        encode(&img, MediaType::Jpeg).expect("encode").bytes
    }

    #[test]
    fn accepts_real_jpeg_and_png() {
        let d = decode(&jpeg(64, 48), LIMITS).expect("jpeg");
        assert_eq!(
            (d.media_type, d.image.width(), d.image.height()),
            (MediaType::Jpeg, 64, 48)
        );
        let png = encode(&d.image, MediaType::Png).expect("png").bytes;
        assert_eq!(
            decode(&png, LIMITS).expect("png").media_type,
            MediaType::Png
        );
    }

    #[test]
    fn rejects_text_whatever_its_name() {
        assert_eq!(
            decode(b"hello, I am a text file named cat.jpg\n", LIMITS).err(),
            Some(MediaError::UnsupportedType)
        );
        // A GIF is a real image but not one we accept.
        assert_eq!(
            decode(b"GIF89a\x01\x00\x01\x00", LIMITS).err(),
            Some(MediaError::UnsupportedType)
        );
    }

    #[test]
    fn rejects_truncated_jpeg() {
        let bytes = jpeg(256, 256);
        for cut in [bytes.len() / 2, bytes.len() - 2, 600] {
            let err = decode(&bytes[..cut], LIMITS).err();
            assert!(
                matches!(err, Some(MediaError::Corrupt(_))),
                "cut at {cut}: {err:?}"
            );
        }
    }

    #[test]
    fn rejects_bomb_dimensions_before_decoding() {
        let err = decode(&outpost_e2e::fixtures::png_bomb(), LIMITS).err();
        assert!(
            matches!(
                err,
                Some(MediaError::TooManyPixels {
                    width: 30_000,
                    height: 30_000,
                    ..
                })
            ),
            "{err:?}"
        );
        let tight = DecodeLimits {
            max_dimension: 100,
            max_pixels: 1_000,
        };
        let err = decode(&jpeg(40, 40), tight).err();
        assert!(
            matches!(err, Some(MediaError::TooManyPixels { .. })),
            "{err:?}"
        );
    }

    #[test]
    fn content_address_is_sha256_of_the_bytes() {
        assert_eq!(
            sha256_hex(b"abc"),
            "ba7816bf8f01cfea414140de5dae2223b00361a396177a9cb410ff61f20015ad"
        );
        assert!(is_sha256_hex(&sha256_hex(b"")));
        assert!(!is_sha256_hex("../../etc/passwd"));
        assert!(!is_sha256_hex(&sha256_hex(b"").to_uppercase()));
    }
}
