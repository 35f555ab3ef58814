//! Screens as PNG files, for docs, tests and a screen preview.

use std::io::Write;

use caidan_profiles::{ColourDepth, Profile};
use embedded_graphics::pixelcolor::{BinaryColor, Rgb565, Rgb888, RgbColor};

use crate::{Drawing, Screen, ScreenColor, ScreenError};

/// Rows drawn at a time: a 2160 px RGB888 band of 64 rows is 540 KiB (embedded-graphics keeps
/// an RGB888 pixel in 4 bytes), not a 24.9 MB frame.
pub const BAND_ROWS: u32 = 64;

/// `screen` drawn for `profile` in the panel's own colour depth, as a PNG (greyscale for mono).
pub fn to_png(profile: &Profile, screen: Screen<'_>) -> Result<Vec<u8>, ScreenError> {
    let drawing = Drawing::new(profile, screen)?;
    match profile.display.depth {
        ColourDepth::Mono1 => encode::<BinaryColor>(&drawing, true),
        ColourDepth::Rgb565 => encode::<Rgb565>(&drawing, false),
        ColourDepth::Rgb888 => encode::<Rgb888>(&drawing, false),
    }
}

fn encode<C: ScreenColor>(drawing: &Drawing<'_>, grey: bool) -> Result<Vec<u8>, ScreenError> {
    let png_err = |e: png::EncodingError| ScreenError::Png(e.to_string());
    let size = drawing.size();
    let mut out = Vec::new();
    let mut encoder = png::Encoder::new(&mut out, size.width, size.height);
    encoder.set_color(if grey {
        png::ColorType::Grayscale
    } else {
        png::ColorType::Rgb
    });
    encoder.set_depth(png::BitDepth::Eight);
    let mut writer = encoder.write_header().map_err(png_err)?;
    let mut stream = writer.stream_writer().map_err(png_err)?;
    let mut bytes = Vec::new();
    drawing.draw_bands::<C, ScreenError>(BAND_ROWS, |band| {
        bytes.clear();
        for c in band.pixels() {
            let c = c.to_rgb();
            if grey {
                bytes.push(c.r());
            } else {
                bytes.extend([c.r(), c.g(), c.b()]);
            }
        }
        stream
            .write_all(&bytes)
            .map_err(|e| ScreenError::Png(e.to_string()))
    })?;
    stream.finish().map_err(png_err)?;
    writer.finish().map_err(png_err)?;
    Ok(out)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::strings::{Banner, PickupStatus};
    use crate::{Frame, NextStep, Reveal};
    use caidan_profiles::{bundled, bundled_all};

    const LINK: &str =
        "http://192.168.100.200:8080/e/AAECAwQFBgcICQoLDA0ODxAREhMUFRYXGBkaGxwdHh8gISIjJCUmJygp";

    /// Width, height and one grey byte per pixel.
    fn decode_grey(bytes: &[u8]) -> (usize, usize, Vec<u8>) {
        let mut reader = png::Decoder::new(std::io::Cursor::new(bytes))
            .read_info()
            .unwrap();
        let mut buf = vec![0; reader.output_buffer_size().unwrap()];
        let info = reader.next_frame(&mut buf).unwrap();
        let channels = info.color_type.samples();
        let grey = buf[..info.buffer_size()]
            .chunks(channels)
            .map(|p| p[0])
            .collect();
        (info.width as usize, info.height as usize, grey)
    }

    #[test]
    fn the_attract_png_of_every_bundled_profile_scans_back_to_its_link() {
        for p in bundled_all() {
            let link = format!("{LINK}{}", p.name.len());
            let bytes = to_png(
                &p,
                Screen::Attract {
                    link: &link,
                    brand: crate::strings::BRAND,
                    banner: Banner::Offline,
                },
            )
            .unwrap();
            let (w, h, grey) = decode_grey(&bytes);
            assert_eq!((w as u32, h as u32), (p.display.width, p.display.height));
            let mut img = rqrr::PreparedImage::prepare_from_greyscale(w, h, |x, y| grey[y * w + x]);
            let grids = img.detect_grids();
            assert_eq!(grids.len(), 1, "{}: {} codes found", p.name, grids.len());
            let (_, content) = grids[0].decode().unwrap();
            assert_eq!(content, link, "{}", p.name);
        }
    }

    fn screens() -> Vec<Screen<'static>> {
        vec![
            Screen::Attract {
                link: LINK,
                brand: crate::strings::BRAND,
                banner: Banner::Ready,
            },
            Screen::Reveal(Reveal {
                title_zh: "免费咖啡一杯",
                title_en: "A free coffee",
                next: NextStep::ShowAtCounter {
                    claim_code: "K7Q-4MZ",
                },
            }),
            Screen::Reveal(Reveal {
                title_zh: "薯片试吃装",
                title_en: "Crisps, free sample",
                next: NextStep::Pickup {
                    pickup_code: "482913",
                    hold_until: "18:30",
                },
            }),
            Screen::Pickup {
                entered: "4829",
                status: Some(PickupStatus::DispenseJam),
            },
        ]
    }

    #[test]
    fn every_screen_draws_on_every_bundled_profile() {
        for p in bundled_all() {
            for s in screens() {
                let png = to_png(&p, s).unwrap_or_else(|e| panic!("{}: {e}", p.name));
                assert!(png.starts_with(b"\x89PNG"));
            }
        }
    }

    #[test]
    fn banded_output_equals_the_full_frame() {
        let p = bundled("vending-machine").unwrap();
        for s in screens() {
            let drawing = Drawing::new(&p, s).unwrap();
            let size = drawing.size();
            let mut full = Frame::new(size.width, size.height, Rgb565::new(0, 0, 0));
            let Ok(()) = drawing.draw(&mut full);
            let mut banded = Vec::new();
            drawing
                .draw_bands::<Rgb565, ()>(7, |band| {
                    assert!(band.pixels().len() <= (size.width * 7) as usize);
                    banded.extend_from_slice(band.pixels());
                    Ok(())
                })
                .unwrap();
            assert_eq!(banded, full.pixels(), "{s:?}");
        }
    }

    #[test]
    fn redrawing_only_the_qr_region_after_a_rotation_equals_a_full_redraw() {
        let p = bundled("community-locker").unwrap();
        let next = LINK.replace("AAEC", "ZZYX");
        let before = Drawing::new(
            &p,
            Screen::Attract {
                link: LINK,
                brand: crate::strings::BRAND,
                banner: Banner::Ready,
            },
        )
        .unwrap();
        let after = Drawing::new(
            &p,
            Screen::Attract {
                link: &next,
                brand: crate::strings::BRAND,
                banner: Banner::Ready,
            },
        )
        .unwrap();
        assert_eq!(before.qr_region(), after.qr_region());
        let size = before.size();
        let mut screen = Frame::new(size.width, size.height, BinaryColor::Off);
        let Ok(()) = before.draw(&mut screen);
        let Ok(()) = after.draw_qr(&mut screen);
        let mut full = Frame::new(size.width, size.height, BinaryColor::Off);
        let Ok(()) = after.draw(&mut full);
        assert_eq!(screen, full);
    }

    /// No bundled profile is 4K; a 65-inch 3840x2160 lobby screen read from 3 m.
    #[test]
    fn a_4k_frame_is_drawn_in_small_bands_and_still_scans() {
        let mut p = bundled("restaurant-counter").unwrap();
        p.name = "lobby-4k".into();
        p.display.width = 3840;
        p.display.height = 2160;
        p.scan = Some(caidan_profiles::ScanSpec {
            distance_mm: 3000,
            panel_width_mm: 1429,
            panel_height_mm: 804,
        });
        let screen = Screen::Attract {
            link: LINK,
            brand: crate::strings::BRAND,
            banner: Banner::SoldOut,
        };
        let drawing = Drawing::new(&p, screen).unwrap();
        let mut largest = 0;
        drawing
            .draw_bands::<Rgb888, ()>(BAND_ROWS, |band| {
                largest = largest.max(band.pixels().len());
                Ok(())
            })
            .unwrap();
        assert_eq!(largest, (3840 * BAND_ROWS) as usize);
        let (w, h, grey) = decode_grey(&to_png(&p, screen).unwrap());
        let mut img = rqrr::PreparedImage::prepare_from_greyscale(w, h, |x, y| grey[y * w + x]);
        let (_, content) = img.detect_grids()[0].decode().unwrap();
        assert_eq!(content, LINK);
    }
}
