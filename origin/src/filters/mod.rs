//! The image filters users pick from the dropdown. Each is a pure function of its input image
//! (same pixels in, same pixels out), so a derived image's content address is reproducible.
//!
//! Filters are CPU work: callers run them on the [`crate::workers`] pool.

mod palette;

use image::{DynamicImage, GenericImageView, Rgba, RgbaImage};
use serde::{Deserialize, Serialize};

pub use palette::Palette;

/// Every filter the origin offers, in dropdown order.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Filter {
    Grayscale,
    Sepia,
    Invert,
    Blur,
    Sharpen,
    /// Palette toning: warm browns into cream, like an old print.
    Vintage,
    /// Palette toning: deep navy through teal into white.
    Ocean,
    /// Palette toning: violet through orange into pale yellow.
    Sunset,
}

impl Filter {
    pub const ALL: [Filter; 8] = [
        Filter::Grayscale,
        Filter::Sepia,
        Filter::Invert,
        Filter::Blur,
        Filter::Sharpen,
        Filter::Vintage,
        Filter::Ocean,
        Filter::Sunset,
    ];

    /// The name used in URLs, forms and the JSON API.
    pub fn name(self) -> &'static str {
        match self {
            Filter::Grayscale => "grayscale",
            Filter::Sepia => "sepia",
            Filter::Invert => "invert",
            Filter::Blur => "blur",
            Filter::Sharpen => "sharpen",
            Filter::Vintage => "vintage",
            Filter::Ocean => "ocean",
            Filter::Sunset => "sunset",
        }
    }

    /// The label shown in the dropdown.
    pub fn label(self) -> &'static str {
        match self {
            Filter::Grayscale => "Grayscale",
            Filter::Sepia => "Sepia",
            Filter::Invert => "Invert",
            Filter::Blur => "Blur",
            Filter::Sharpen => "Sharpen",
            Filter::Vintage => "Vintage (palette toning)",
            Filter::Ocean => "Ocean (palette toning)",
            Filter::Sunset => "Sunset (palette toning)",
        }
    }

    pub fn from_name(name: &str) -> Option<Filter> {
        Filter::ALL.into_iter().find(|f| f.name() == name)
    }

    /// Applies the filter. Alpha, where present, is kept as it was.
    pub fn apply(self, image: &DynamicImage) -> DynamicImage {
        match self {
            Filter::Grayscale => image.grayscale(),
            Filter::Sepia => map_pixels(image, sepia),
            Filter::Invert => {
                let mut out = image.clone();
                out.invert();
                out
            }
            Filter::Blur => image.fast_blur(blur_sigma(image)),
            Filter::Sharpen => image.unsharpen(1.2, 2),
            Filter::Vintage => Palette::VINTAGE.tone(image),
            Filter::Ocean => Palette::OCEAN.tone(image),
            Filter::Sunset => Palette::SUNSET.tone(image),
        }
    }
}

/// A blur that looks the same on a thumbnail and on a 12-megapixel photo: 0.4% of the longer
/// side, never less than 2 pixels.
fn blur_sigma(image: &DynamicImage) -> f32 {
    let (w, h) = image.dimensions();
    (w.max(h) as f32 * 0.004).max(2.0)
}

/// The classic sepia matrix (as in Microsoft's and most photo tools' sepia).
fn sepia([r, g, b, a]: [u8; 4]) -> [u8; 4] {
    let (r, g, b) = (f32::from(r), f32::from(g), f32::from(b));
    let clamp = |v: f32| v.round().clamp(0.0, 255.0) as u8;
    [
        clamp(0.393 * r + 0.769 * g + 0.189 * b),
        clamp(0.349 * r + 0.686 * g + 0.168 * b),
        clamp(0.272 * r + 0.534 * g + 0.131 * b),
        a,
    ]
}

/// Applies a per-pixel colour function, returning RGB8 (or RGBA8 when the input has alpha).
fn map_pixels(image: &DynamicImage, f: impl Fn([u8; 4]) -> [u8; 4]) -> DynamicImage {
    if image.color().has_alpha() {
        let mut buf: RgbaImage = image.to_rgba8();
        for p in buf.pixels_mut() {
            *p = Rgba(f(p.0));
        }
        DynamicImage::ImageRgba8(buf)
    } else {
        let mut buf = image.to_rgb8();
        for p in buf.pixels_mut() {
            let [r, g, b, _] = f([p.0[0], p.0[1], p.0[2], 255]);
            p.0 = [r, g, b];
        }
        DynamicImage::ImageRgb8(buf)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use image::{Rgb, RgbImage};

    fn sample() -> DynamicImage {
        DynamicImage::ImageRgb8(RgbImage::from_fn(40, 30, |x, y| {
            Rgb([(x * 6) as u8, (y * 8) as u8, 200 - (x * 2) as u8])
        }))
    }

    #[test]
    fn names_round_trip_and_are_unique() {
        for f in Filter::ALL {
            assert_eq!(Filter::from_name(f.name()), Some(f));
        }
        assert_eq!(Filter::from_name("Sepia"), None, "names are exact");
        assert_eq!(Filter::from_name("../sepia"), None);
        let json = serde_json::to_string(&Filter::Vintage).expect("serialize");
        assert_eq!(json, "\"vintage\"");
    }

    #[test]
    fn every_filter_keeps_dimensions_and_changes_pixels() {
        let src = sample();
        for f in Filter::ALL {
            let out = f.apply(&src);
            assert_eq!(out.dimensions(), src.dimensions(), "{f:?}");
            assert_ne!(
                out.to_rgb8().into_raw(),
                src.to_rgb8().into_raw(),
                "{f:?} is a no-op"
            );
        }
    }

    #[test]
    fn filters_are_deterministic() {
        let src = sample();
        for f in Filter::ALL {
            assert_eq!(f.apply(&src).as_bytes(), f.apply(&src).as_bytes(), "{f:?}");
        }
    }

    #[test]
    fn invert_twice_is_identity_and_sepia_is_warm() {
        let src = sample();
        let back = Filter::Invert.apply(&Filter::Invert.apply(&src));
        assert_eq!(back.as_bytes(), src.as_bytes());
        let grey = DynamicImage::ImageRgb8(RgbImage::from_pixel(2, 2, Rgb([128, 128, 128])));
        let px = Filter::Sepia.apply(&grey).to_rgb8().get_pixel(0, 0).0;
        assert!(
            px[0] > px[1] && px[1] > px[2],
            "sepia grey is red > green > blue: {px:?}"
        );
    }

    #[test]
    fn alpha_survives_per_pixel_filters() {
        let src = DynamicImage::ImageRgba8(RgbaImage::from_pixel(3, 3, Rgba([10, 20, 30, 77])));
        for f in [Filter::Sepia, Filter::Vintage, Filter::Invert] {
            assert_eq!(f.apply(&src).to_rgba8().get_pixel(1, 1).0[3], 77, "{f:?}");
        }
    }
}
