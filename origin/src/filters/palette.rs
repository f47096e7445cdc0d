//! Palette toning, the seed app's signature filter: convert to grayscale, look each grey level up
//! in a colour palette, convert back to RGB. A palette is a gradient through a few colour stops,
//! expanded once into a 256-entry table so toning costs one lookup per pixel.

use image::{DynamicImage, Rgb, RgbImage, Rgba, RgbaImage};

/// A gradient of colour stops at grey levels 0..=255, in increasing order.
pub struct Palette {
    stops: &'static [(u8, [u8; 3])],
}

impl Palette {
    pub const VINTAGE: Palette = Palette {
        stops: &[
            (0, [43, 26, 15]),
            (96, [112, 74, 45]),
            (176, [196, 160, 110]),
            (255, [250, 238, 210]),
        ],
    };
    pub const OCEAN: Palette = Palette {
        stops: &[
            (0, [8, 18, 56]),
            (110, [20, 100, 140]),
            (200, [120, 200, 210]),
            (255, [240, 252, 255]),
        ],
    };
    pub const SUNSET: Palette = Palette {
        stops: &[
            (0, [40, 10, 60]),
            (90, [150, 40, 90]),
            (170, [240, 120, 50]),
            (255, [255, 236, 170]),
        ],
    };

    /// The 256 colours, one per grey level, interpolated linearly between the stops.
    pub fn table(&self) -> [[u8; 3]; 256] {
        let mut table = [[0u8; 3]; 256];
        for (level, entry) in table.iter_mut().enumerate() {
            let level = level as f32;
            let upper = self
                .stops
                .iter()
                .position(|&(at, _)| f32::from(at) >= level);
            *entry = match upper {
                Some(0) => self.stops[0].1,
                Some(i) => {
                    let (a_at, a) = self.stops[i - 1];
                    let (b_at, b) = self.stops[i];
                    let t = (level - f32::from(a_at)) / (f32::from(b_at) - f32::from(a_at));
                    std::array::from_fn(|c| {
                        (f32::from(a[c]) + (f32::from(b[c]) - f32::from(a[c])) * t).round() as u8
                    })
                }
                None => self.stops[self.stops.len() - 1].1,
            };
        }
        table
    }

    /// Tones `image`: grayscale, palette lookup, back to RGB (RGBA if it had alpha).
    pub fn tone(&self, image: &DynamicImage) -> DynamicImage {
        let table = self.table();
        let grey = image.to_luma8();
        if image.color().has_alpha() {
            let alpha = image.to_rgba8();
            DynamicImage::ImageRgba8(RgbaImage::from_fn(grey.width(), grey.height(), |x, y| {
                let [r, g, b] = table[usize::from(grey.get_pixel(x, y).0[0])];
                Rgba([r, g, b, alpha.get_pixel(x, y).0[3]])
            }))
        } else {
            DynamicImage::ImageRgb8(RgbImage::from_fn(grey.width(), grey.height(), |x, y| {
                Rgb(table[usize::from(grey.get_pixel(x, y).0[0])])
            }))
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn table_hits_every_stop_and_interpolates_between() {
        let t = Palette::VINTAGE.table();
        for &(at, colour) in Palette::VINTAGE.stops {
            assert_eq!(t[usize::from(at)], colour);
        }
        // Halfway between (0, [43,26,15]) and (96, [112,74,45]).
        assert_eq!(t[48], [78, 50, 30]);
    }

    #[test]
    fn toning_maps_grey_levels_through_the_palette() {
        let img = DynamicImage::ImageRgb8(RgbImage::from_fn(256, 1, |x, _| Rgb([x as u8; 3])));
        let toned = Palette::OCEAN.tone(&img).to_rgb8();
        let table = Palette::OCEAN.table();
        for x in [0u32, 37, 128, 255] {
            assert_eq!(toned.get_pixel(x, 0).0, table[x as usize]);
        }
    }
}
