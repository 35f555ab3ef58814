//! Writing screens into a Linux framebuffer (`/dev/fb0` or a file laid out like one), band
//! by band and region by region, in the framebuffer's own geometry and pixel format.
//!
//! Nothing is mapped: each band is packed into a small buffer and written at its offset, so
//! drawing any panel, 4K included, holds one band in memory, never a frame.

use std::fs::File;
use std::os::unix::fs::FileExt;

use caidan_profiles::{ColourDepth, DisplaySpec, Orientation};
use embedded_graphics::pixelcolor::{BinaryColor, Rgb565, Rgb888, RgbColor};
use embedded_graphics::prelude::*;
use embedded_graphics::primitives::Rectangle;

use crate::refresh::Refresh;
use crate::{BAND_ROWS, Drawing, Frame, ScreenColor};

/// Where one colour channel sits in a pixel, as `fb_bitfield` reports it.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Channel {
    /// Bit offset from the pixel's least significant bit.
    pub offset: u32,
    /// Bits the channel has.
    pub length: u32,
}

/// How one pixel is stored.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum PixelFormat {
    /// One bit per pixel, the leftmost pixel in the most significant bit; `ink_set`: a set
    /// bit is black (`FB_VISUAL_MONO01`), else white (`FB_VISUAL_MONO10`).
    Mono { ink_set: bool },
    /// 16, 24 or 32 bits per pixel, little-endian, channels where the driver says.
    Packed {
        bits_per_pixel: u32,
        red: Channel,
        green: Channel,
        blue: Channel,
    },
}

const fn ch(offset: u32, length: u32) -> Channel {
    Channel { offset, length }
}

impl PixelFormat {
    pub const RGB565: PixelFormat = PixelFormat::Packed {
        bits_per_pixel: 16,
        red: ch(11, 5),
        green: ch(5, 6),
        blue: ch(0, 5),
    };
    /// 32-bit `0xXXRRGGBB`, what DRM's fbdev emulation offers.
    pub const XRGB8888: PixelFormat = PixelFormat::Packed {
        bits_per_pixel: 32,
        red: ch(16, 8),
        green: ch(8, 8),
        blue: ch(0, 8),
    };
    /// 24-bit, bytes blue, green, red in memory.
    pub const BGR888: PixelFormat = PixelFormat::Packed {
        bits_per_pixel: 24,
        red: ch(16, 8),
        green: ch(8, 8),
        blue: ch(0, 8),
    };
    pub const MONO: PixelFormat = PixelFormat::Mono { ink_set: true };

    /// The format called `name`: `rgb565`, `xrgb8888`, `bgr888` or `mono`.
    pub fn named(name: &str) -> Option<PixelFormat> {
        Some(match name {
            "rgb565" => Self::RGB565,
            "xrgb8888" => Self::XRGB8888,
            "bgr888" => Self::BGR888,
            "mono" | "mono1" => Self::MONO,
            _ => return None,
        })
    }

    pub fn bits_per_pixel(self) -> u32 {
        match self {
            PixelFormat::Mono { .. } => 1,
            PixelFormat::Packed { bits_per_pixel, .. } => bits_per_pixel,
        }
    }

    /// The colour depth screens are drawn in for this format.
    pub fn depth(self) -> ColourDepth {
        match self.bits_per_pixel() {
            1 => ColourDepth::Mono1,
            16 => ColourDepth::Rgb565,
            _ => ColourDepth::Rgb888,
        }
    }
}

/// Why a framebuffer cannot be drawn on.
#[derive(Debug, thiserror::Error)]
pub enum FbError {
    #[error("framebuffer {path}: {source}")]
    Io {
        path: String,
        source: std::io::Error,
    },
    #[error("framebuffer {path}: {reason}")]
    Unsupported { path: String, reason: String },
}

/// A framebuffer's visible size, row length and pixel format.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Geometry {
    pub width: u32,
    pub height: u32,
    /// Bytes from the start of one row to the next (`line_length`; may exceed the pixels').
    pub line_length: u32,
    pub format: PixelFormat,
    /// Where the visible area starts in the framebuffer (panning), in bytes.
    pub first_byte: u64,
}

impl Geometry {
    /// Checks the geometry is one this module can draw into.
    pub fn validate(&self, path: &str) -> Result<(), FbError> {
        let bad = |reason: String| FbError::Unsupported {
            path: path.into(),
            reason,
        };
        let bpp = self.format.bits_per_pixel();
        if !matches!(bpp, 1 | 16 | 24 | 32) {
            return Err(bad(format!(
                "{bpp} bits per pixel (1, 16, 24 and 32 are drawn)"
            )));
        }
        if let PixelFormat::Packed {
            red, green, blue, ..
        } = self.format
            && [red, green, blue]
                .iter()
                .any(|c| c.length == 0 || c.length > 8 || c.offset + c.length > bpp)
        {
            return Err(bad(format!(
                "channel layout {:?} does not fit {bpp} bits",
                self.format
            )));
        }
        if self.width == 0 || self.height == 0 || self.width > 8192 || self.height > 8192 {
            return Err(bad(format!("{}x{} pixels", self.width, self.height)));
        }
        let row_bytes = (u64::from(self.width) * u64::from(bpp)).div_ceil(8);
        if u64::from(self.line_length) < row_bytes {
            return Err(bad(format!(
                "line length {} bytes is shorter than a {}-pixel row ({row_bytes} bytes)",
                self.line_length, self.width
            )));
        }
        Ok(())
    }

    /// Bytes the framebuffer must hold up to the end of its visible rows.
    pub fn bytes(&self) -> u64 {
        self.first_byte + u64::from(self.line_length) * u64::from(self.height)
    }

    /// `display` resized to this framebuffer: its width, height, orientation and depth win
    /// over the profile's, which keeps only what the framebuffer cannot report.
    pub fn display(&self, profile: &DisplaySpec) -> DisplaySpec {
        DisplaySpec {
            width: self.width,
            height: self.height,
            depth: self.format.depth(),
            orientation: if self.width >= self.height {
                Orientation::Landscape
            } else {
                Orientation::Portrait
            },
            full_refresh_every: profile.full_refresh_every,
        }
    }

    /// `area` widened to whole bytes, as 1-bit rows can only be written a byte at a time.
    fn aligned(&self, area: Rectangle) -> Rectangle {
        if self.format.bits_per_pixel() != 1 {
            return area;
        }
        let x0 = area.top_left.x.max(0) as u32 / 8 * 8;
        let x1 = (area.top_left.x.max(0) as u32 + area.size.width)
            .div_ceil(8)
            .saturating_mul(8)
            .min(self.width);
        Rectangle::new(
            Point::new(x0 as i32, area.top_left.y),
            Size::new(x1.saturating_sub(x0), area.size.height),
        )
    }
}

/// Appends `pixels` packed in `format` to `out`.
pub fn pack<C: ScreenColor>(format: PixelFormat, pixels: &[C], out: &mut Vec<u8>) {
    match format {
        PixelFormat::Mono { ink_set } => {
            for eight in pixels.chunks(8) {
                let mut byte = 0u8;
                for (i, c) in eight.iter().enumerate() {
                    let ink = BinaryColor::from_rgb(c.to_rgb()) == BinaryColor::On;
                    if ink == ink_set {
                        byte |= 0x80 >> i;
                    }
                }
                out.push(byte);
            }
        }
        PixelFormat::Packed {
            bits_per_pixel,
            red,
            green,
            blue,
        } => {
            let bytes = (bits_per_pixel / 8) as usize;
            let put = |v: u8, c: Channel| (u32::from(v) >> (8 - c.length)) << c.offset;
            for c in pixels {
                let c = c.to_rgb();
                let word = put(c.r(), red) | put(c.g(), green) | put(c.b(), blue);
                out.extend_from_slice(&word.to_le_bytes()[..bytes]);
            }
        }
    }
}

/// An open framebuffer, written band by band.
#[derive(Debug)]
pub struct Framebuffer {
    file: File,
    path: String,
    geometry: Geometry,
    bytes: Vec<u8>,
}

impl Framebuffer {
    /// Draws into `file`, laid out as `geometry` says; a regular file must already be large
    /// enough to hold every visible row.
    pub fn new(file: File, path: &str, geometry: Geometry) -> Result<Self, FbError> {
        geometry.validate(path)?;
        let io = |source| FbError::Io {
            path: path.into(),
            source,
        };
        let meta = file.metadata().map_err(io)?;
        if meta.is_file() && meta.len() < geometry.bytes() {
            return Err(FbError::Unsupported {
                path: path.into(),
                reason: format!(
                    "the file holds {} bytes, a {}x{} frame with {}-byte rows needs {}",
                    meta.len(),
                    geometry.width,
                    geometry.height,
                    geometry.line_length,
                    geometry.bytes()
                ),
            });
        }
        Ok(Framebuffer {
            file,
            path: path.into(),
            geometry,
            bytes: Vec::new(),
        })
    }

    pub fn geometry(&self) -> Geometry {
        self.geometry
    }

    /// Brings the framebuffer from its last screen to `drawing` as `refresh` says. Returns
    /// the pixels written.
    pub fn show(&mut self, drawing: &Drawing<'_>, refresh: &Refresh) -> Result<u64, FbError> {
        let areas = match refresh {
            Refresh::Full => vec![drawing.bounds()],
            Refresh::Partial(parts) => parts.clone(),
        };
        let mut written = 0;
        for area in areas {
            let area = self.geometry.aligned(area);
            written += u64::from(area.size.width) * u64::from(area.size.height);
            match self.geometry.format.depth() {
                ColourDepth::Mono1 => self.draw::<BinaryColor>(drawing, area)?,
                ColourDepth::Rgb565 => self.draw::<Rgb565>(drawing, area)?,
                ColourDepth::Rgb888 => self.draw::<Rgb888>(drawing, area)?,
            }
        }
        Ok(written)
    }

    fn draw<C: ScreenColor>(
        &mut self,
        drawing: &Drawing<'_>,
        area: Rectangle,
    ) -> Result<(), FbError> {
        let g = self.geometry;
        let bpp = u64::from(g.format.bits_per_pixel());
        let (file, bytes, path) = (&self.file, &mut self.bytes, &self.path);
        drawing.draw_area_bands::<C, FbError>(area, BAND_ROWS, |band: &Frame<C>| {
            let a = band.area();
            let x_byte = u64::from(a.top_left.x as u32) * bpp / 8;
            for y in 0..a.size.height {
                bytes.clear();
                pack(g.format, band.row(y), bytes);
                let at =
                    g.first_byte + u64::from(band.top() + y) * u64::from(g.line_length) + x_byte;
                file.write_all_at(bytes, at).map_err(|source| FbError::Io {
                    path: path.clone(),
                    source,
                })?;
            }
            Ok(())
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn pixels_pack_where_the_driver_puts_each_channel() {
        let mut out = Vec::new();
        pack(
            PixelFormat::RGB565,
            &[Rgb888::new(0xff, 0, 0), Rgb888::new(0, 0, 0xff)],
            &mut out,
        );
        assert_eq!(out, [0x00, 0xf8, 0x1f, 0x00]);
        out.clear();
        pack(PixelFormat::XRGB8888, &[Rgb888::new(1, 2, 3)], &mut out);
        assert_eq!(out, [3, 2, 1, 0]);
        out.clear();
        pack(PixelFormat::BGR888, &[Rgb888::new(1, 2, 3)], &mut out);
        assert_eq!(out, [3, 2, 1]);
        out.clear();
        let bgr_swapped = PixelFormat::Packed {
            bits_per_pixel: 32,
            red: ch(0, 8),
            green: ch(8, 8),
            blue: ch(16, 8),
        };
        pack(bgr_swapped, &[Rgb888::new(1, 2, 3)], &mut out);
        assert_eq!(out, [1, 2, 3, 0]);
    }

    #[test]
    fn mono_packs_eight_pixels_a_byte_leftmost_first() {
        use BinaryColor::{Off, On};
        let row = [On, Off, Off, Off, Off, Off, Off, On, On];
        let mut out = Vec::new();
        pack(PixelFormat::MONO, &row, &mut out);
        assert_eq!(out, [0b1000_0001, 0b1000_0000]);
        out.clear();
        pack(PixelFormat::Mono { ink_set: false }, &row, &mut out);
        assert_eq!(out, [0b0111_1110, 0b0000_0000]);
    }

    #[test]
    fn a_mono_region_widens_to_whole_bytes() {
        let g = Geometry {
            width: 20,
            height: 4,
            line_length: 3,
            format: PixelFormat::MONO,
            first_byte: 0,
        };
        let a = g.aligned(Rectangle::new(Point::new(3, 1), Size::new(6, 2)));
        assert_eq!(a, Rectangle::new(Point::new(0, 1), Size::new(16, 2)));
        let edge = g.aligned(Rectangle::new(Point::new(17, 0), Size::new(3, 1)));
        assert_eq!(edge, Rectangle::new(Point::new(16, 0), Size::new(4, 1)));
    }

    #[test]
    fn impossible_geometry_is_refused_with_the_reason() {
        let g = Geometry {
            width: 480,
            height: 272,
            line_length: 900,
            format: PixelFormat::RGB565,
            first_byte: 0,
        };
        let e = g.validate("/dev/fb0").unwrap_err().to_string();
        assert!(
            e.contains("line length 900 bytes is shorter than a 480-pixel row (960 bytes)"),
            "{e}"
        );
        let g = Geometry {
            line_length: 960,
            format: PixelFormat::Packed {
                bits_per_pixel: 8,
                red: ch(0, 3),
                green: ch(3, 3),
                blue: ch(6, 2),
            },
            ..g
        };
        assert!(
            g.validate("x")
                .unwrap_err()
                .to_string()
                .contains("8 bits per pixel")
        );
    }
}
