//! Sizing and drawing the egg QR.
//!
//! Sizing rule: a QR code must be at least one tenth of the scanning distance wide (the common
//! guidance in QR generator vendors' printing guides: read from 1 m, make it 10 cm). The rule
//! applies to the symbol; the 4-module quiet zone comes on top, and every module is a whole
//! number of pixels so no module blurs into its neighbour.

use caidan_profiles::Profile;
use embedded_graphics::prelude::*;
use embedded_graphics::primitives::Rectangle;
use qrcode::{Color, QrCode};

use crate::ScreenError;
use crate::layout::qr_max_side;

/// Light modules kept around the symbol on every side, as the QR standard asks.
pub const QUIET_ZONE_MODULES: u32 = 4;

/// Smallest symbol width readable from `distance_mm`: one tenth of it, rounded up.
pub fn required_symbol_mm(distance_mm: u32) -> u32 {
    distance_mm.div_ceil(10)
}

/// An encoded link with its on-screen size on one panel.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct QrPlan {
    /// Modules across the symbol, quiet zone excluded.
    pub modules: u32,
    /// Pixels per module side.
    pub module_px: u32,
    /// Pixels across the whole code, quiet zone included.
    pub side_px: u32,
    dark: Vec<bool>,
}

/// Pixels per module so that a symbol of `modules` modules is readable on `profile`'s panel,
/// or why it cannot fit (the whole code, quiet zone included, must fit the attract layout).
pub fn module_px(profile: &Profile, modules: u32) -> Result<u32, ScreenError> {
    let scan = profile.scan.ok_or_else(|| ScreenError::NoScanSpec {
        profile: profile.name.clone(),
    })?;
    let d = &profile.display;
    let needed_mm = u64::from(required_symbol_mm(scan.distance_mm));
    // Pixels may not be quite square: size by the axis with more pixels per mm, so the
    // symbol is wide enough in both directions.
    let (w, w_mm) = (u64::from(d.width), u64::from(scan.panel_width_mm));
    let (h, h_mm) = (u64::from(d.height), u64::from(scan.panel_height_mm));
    let (px, mm) = if w * h_mm >= h * w_mm {
        (w, w_mm)
    } else {
        (h, h_mm)
    };
    let module = (needed_mm * px).div_ceil(mm * u64::from(modules)).max(1);
    let side = module * u64::from(modules + 2 * QUIET_ZONE_MODULES);
    let max = u64::from(qr_max_side(d));
    if side > max {
        return Err(ScreenError::QrTooLarge {
            profile: profile.name.clone(),
            needed_mm: (side * mm).div_ceil(px) as u32,
            available_mm: (max * mm / px) as u32,
        });
    }
    Ok(module as u32)
}

impl QrPlan {
    /// Encodes `link` (error correction M) and sizes it for `profile`.
    pub fn new(profile: &Profile, link: &str) -> Result<QrPlan, ScreenError> {
        let code = QrCode::new(link.as_bytes()).map_err(|e| ScreenError::Encode(e.to_string()))?;
        let modules = code.width() as u32;
        let module_px = module_px(profile, modules)?;
        Ok(QrPlan {
            modules,
            module_px,
            side_px: module_px * (modules + 2 * QUIET_ZONE_MODULES),
            dark: code
                .to_colors()
                .into_iter()
                .map(|c| c == Color::Dark)
                .collect(),
        })
    }

    /// Whether the module at column `x`, row `y` of the symbol is dark.
    pub fn is_dark(&self, x: u32, y: u32) -> bool {
        self.dark[(y * self.modules + x) as usize]
    }

    /// Draws the code, quiet zone included, with its top-left corner at `origin`.
    pub fn draw<D: DrawTarget>(
        &self,
        origin: Point,
        dark: D::Color,
        light: D::Color,
        target: &mut D,
    ) -> Result<(), D::Error> {
        let whole = Rectangle::new(origin, Size::new(self.side_px, self.side_px));
        target.fill_solid(&whole, light)?;
        let m = self.module_px;
        let first = origin
            + Point::new(
                (QUIET_ZONE_MODULES * m) as i32,
                (QUIET_ZONE_MODULES * m) as i32,
            );
        for y in 0..self.modules {
            for x in 0..self.modules {
                if self.is_dark(x, y) {
                    let at = first + Point::new((x * m) as i32, (y * m) as i32);
                    target.fill_solid(&Rectangle::new(at, Size::new(m, m)), dark)?;
                }
            }
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use caidan_profiles::{ScanSpec, bundled, bundled_all};

    /// A link as long as the agent's: LAN address, port and a signed token.
    const LINK: &str =
        "http://192.168.100.200:8080/e/AAECAwQFBgcICQoLDA0ODxAREhMUFRYXGBkaGxwdHh8gISIjJCUmJygp";

    #[test]
    fn every_bundled_profile_fits_a_readable_code() {
        for p in bundled_all() {
            let plan = QrPlan::new(&p, LINK).unwrap_or_else(|e| panic!("{e}"));
            let scan = p.scan.unwrap();
            let symbol_px = plan.modules * plan.module_px;
            let across = [
                (scan.panel_width_mm, p.display.width),
                (scan.panel_height_mm, p.display.height),
            ];
            for (mm, px) in across {
                let symbol_mm = f64::from(symbol_px) * f64::from(mm) / f64::from(px);
                assert!(
                    symbol_mm >= f64::from(scan.distance_mm) / 10.0,
                    "{}: {symbol_mm} mm symbol read from {} mm",
                    p.name,
                    scan.distance_mm
                );
            }
            assert_eq!(plan.side_px, plan.module_px * (plan.modules + 8));
            assert!(plan.side_px <= qr_max_side(&p.display), "{}", p.name);
        }
    }

    #[test]
    fn a_panel_too_small_for_the_distance_is_refused_with_the_numbers() {
        let mut p = bundled("vending-machine").unwrap();
        p.scan = Some(ScanSpec {
            distance_mm: 2000,
            ..p.scan.unwrap()
        });
        let err = QrPlan::new(&p, LINK).unwrap_err();
        let ScreenError::QrTooLarge {
            profile,
            needed_mm,
            available_mm,
        } = &err
        else {
            panic!("{err}");
        };
        assert_eq!(profile, "vending-machine");
        assert!(*needed_mm > 200 && *needed_mm > *available_mm, "{err}");
        assert!(err.to_string().contains("vending-machine"), "{err}");
    }

    #[test]
    fn a_profile_without_scan_is_named() {
        let mut p = bundled("campus-screen").unwrap();
        p.scan = None;
        assert_eq!(
            QrPlan::new(&p, LINK).unwrap_err(),
            ScreenError::NoScanSpec {
                profile: "campus-screen".into()
            }
        );
    }

    #[test]
    fn required_size_is_a_tenth_of_the_distance() {
        assert_eq!(required_symbol_mm(3000), 300);
        assert_eq!(required_symbol_mm(405), 41);
    }
}
