//! Where each part of a screen goes: rectangle arithmetic only, no drawing.
//!
//! Portrait panels put the QR above the text, landscape panels beside it. Text lines are
//! `LINE_PX * scale` tall; the renderer draws font pixels `scale` x `scale` big.

use caidan_profiles::{DisplaySpec, Orientation};
use embedded_graphics::prelude::*;
use embedded_graphics::primitives::Rectangle;

use crate::ScreenError;

/// Height of one text line at scale 1: a 16 px font plus leading.
pub const LINE_PX: u32 = 20;

/// Font pixel size on this panel: 1 up to 719 px on the short side, then one more per 360.
pub fn text_scale(d: &DisplaySpec) -> u32 {
    (short_side(d) / 360).max(1)
}

/// Space kept free at the panel's edges and between blocks.
pub fn margin(d: &DisplaySpec) -> u32 {
    (short_side(d) / 32).max(4)
}

fn short_side(d: &DisplaySpec) -> u32 {
    d.width.min(d.height)
}

/// The largest QR side (quiet zone included) the attract layout can give, in pixels.
pub fn qr_max_side(d: &DisplaySpec) -> u32 {
    let (m, line) = (margin(d), LINE_PX * text_scale(d));
    match d.orientation {
        // Two brand lines and a two-line banner below the QR, with a margin between blocks.
        Orientation::Portrait => (d.width - 2 * m).min(d.height.saturating_sub(4 * m + 4 * line)),
        // Leave at least two fifths of the width for the text column.
        Orientation::Landscape => {
            (d.height - 2 * m).min(d.width.saturating_sub(3 * m + d.width * 2 / 5))
        }
    }
}

/// The attract screen: the egg QR, the brand line in two languages and a state banner.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct AttractLayout {
    pub qr: Rectangle,
    pub brand_zh: Rectangle,
    pub brand_en: Rectangle,
    pub banner_zh: Rectangle,
    pub banner_en: Rectangle,
    pub scale: u32,
}

/// The reveal screen: offer title, claim code and what to do next (two lines).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct RevealLayout {
    pub title_zh: Rectangle,
    pub title_en: Rectangle,
    pub code: Rectangle,
    pub footer_zh: Rectangle,
    pub footer_en: Rectangle,
    pub scale: u32,
}

/// The pickup prompt: the prompt, the code being typed and a status line.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct PickupLayout {
    pub prompt_zh: Rectangle,
    pub prompt_en: Rectangle,
    pub entry: Rectangle,
    pub status_zh: Rectangle,
    pub status_en: Rectangle,
    pub scale: u32,
}

/// Scale factor of the claim code and pickup entry relative to body text.
pub const CODE_SCALE: u32 = 2;

fn rect(x: u32, y: u32, w: u32, h: u32) -> Rectangle {
    Rectangle::new(Point::new(x as i32, y as i32), Size::new(w, h))
}

fn too_small(screen: &'static str, d: &DisplaySpec, reason: String) -> ScreenError {
    ScreenError::DoesNotFit {
        screen,
        width: d.width,
        height: d.height,
        reason,
    }
}

/// Lays out the attract screen around a QR `qr_side` pixels wide (quiet zone included).
pub fn attract(d: &DisplaySpec, qr_side: u32) -> Result<AttractLayout, ScreenError> {
    let (m, scale) = (margin(d), text_scale(d));
    let line = LINE_PX * scale;
    if qr_side > qr_max_side(d) {
        return Err(too_small(
            "attract",
            d,
            format!("QR of {qr_side} px, at most {} px fits", qr_max_side(d)),
        ));
    }
    let (qr, col_x, col_w, text_top) = match d.orientation {
        Orientation::Portrait => {
            let qr = rect((d.width - qr_side) / 2, m, qr_side, qr_side);
            (qr, m, d.width - 2 * m, m + qr_side + m)
        }
        Orientation::Landscape => {
            let qr = rect(m, (d.height - qr_side) / 2, qr_side, qr_side);
            let x = 2 * m + qr_side;
            (qr, x, d.width - x - m, m)
        }
    };
    let banner_top = d.height - m - 2 * line;
    if text_top + 2 * line + m > banner_top {
        return Err(too_small(
            "attract",
            d,
            "no room for the brand line above the banner".into(),
        ));
    }
    Ok(AttractLayout {
        qr,
        brand_zh: rect(col_x, text_top, col_w, line),
        brand_en: rect(col_x, text_top + line, col_w, line),
        banner_zh: rect(col_x, banner_top, col_w, line),
        banner_en: rect(col_x, banner_top + line, col_w, line),
        scale,
    })
}

/// Stacks lines of the given heights (in body lines) centred vertically in the panel.
fn stack<const N: usize>(
    screen: &'static str,
    d: &DisplaySpec,
    lines: [u32; N],
) -> Result<[Rectangle; N], ScreenError> {
    let (m, line) = (margin(d), LINE_PX * text_scale(d));
    let heights = lines.map(|n| n * line);
    let total: u32 = heights.iter().sum::<u32>() + m * (N as u32 - 1);
    if total + 2 * m > d.height {
        return Err(too_small(
            screen,
            d,
            format!("{total} px of text, {} px high", d.height),
        ));
    }
    let mut y = (d.height - total) / 2;
    Ok(heights.map(|h| {
        let r = rect(m, y, d.width - 2 * m, h);
        y += h + m;
        r
    }))
}

/// Lays out the reveal screen: title zh, title en, the code (double size), two footer lines.
pub fn reveal(d: &DisplaySpec) -> Result<RevealLayout, ScreenError> {
    let [title, code, footer] = stack("reveal", d, [2, CODE_SCALE, 2])?;
    let (top, bottom) = halves(title);
    let (f_top, f_bottom) = halves(footer);
    Ok(RevealLayout {
        title_zh: top,
        title_en: bottom,
        code,
        footer_zh: f_top,
        footer_en: f_bottom,
        scale: text_scale(d),
    })
}

/// Lays out the pickup prompt: prompt zh, prompt en, the entry (double size), two status lines.
pub fn pickup(d: &DisplaySpec) -> Result<PickupLayout, ScreenError> {
    let [prompt, entry, status] = stack("pickup", d, [2, CODE_SCALE, 2])?;
    let (p_top, p_bottom) = halves(prompt);
    let (s_top, s_bottom) = halves(status);
    Ok(PickupLayout {
        prompt_zh: p_top,
        prompt_en: p_bottom,
        entry,
        status_zh: s_top,
        status_en: s_bottom,
        scale: text_scale(d),
    })
}

fn halves(r: Rectangle) -> (Rectangle, Rectangle) {
    let h = r.size.height / 2;
    let top = Rectangle::new(r.top_left, Size::new(r.size.width, h));
    let bottom = Rectangle::new(r.top_left + Point::new(0, h as i32), top.size);
    (top, bottom)
}

impl AttractLayout {
    /// Every part, named, for checks and debugging.
    pub fn parts(&self) -> Vec<(&'static str, Rectangle)> {
        vec![
            ("qr", self.qr),
            ("brand_zh", self.brand_zh),
            ("brand_en", self.brand_en),
            ("banner_zh", self.banner_zh),
            ("banner_en", self.banner_en),
        ]
    }
}

impl RevealLayout {
    /// Every part, named, for checks and debugging.
    pub fn parts(&self) -> Vec<(&'static str, Rectangle)> {
        vec![
            ("title_zh", self.title_zh),
            ("title_en", self.title_en),
            ("code", self.code),
            ("footer_zh", self.footer_zh),
            ("footer_en", self.footer_en),
        ]
    }
}

impl PickupLayout {
    /// Every part, named, for checks and debugging.
    pub fn parts(&self) -> Vec<(&'static str, Rectangle)> {
        vec![
            ("prompt_zh", self.prompt_zh),
            ("prompt_en", self.prompt_en),
            ("entry", self.entry),
            ("status_zh", self.status_zh),
            ("status_en", self.status_en),
        ]
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use caidan_profiles::bundled_all;

    fn check(name: &str, d: &DisplaySpec, parts: &[(&'static str, Rectangle)]) {
        let panel = Rectangle::new(Point::zero(), Size::new(d.width, d.height));
        for (i, (a, ra)) in parts.iter().enumerate() {
            assert!(
                ra.size.width > 0 && ra.size.height > 0,
                "{name}: {a} is empty"
            );
            assert_eq!(panel.intersection(ra), *ra, "{name}: {a} leaves the panel");
            for (b, rb) in &parts[i + 1..] {
                assert!(
                    ra.intersection(rb).is_zero_sized(),
                    "{name}: {a} overlaps {b}"
                );
            }
        }
    }

    #[test]
    fn every_bundled_profile_lays_out_without_overlap() {
        for p in bundled_all() {
            let d = &p.display;
            let a = attract(d, qr_max_side(d)).unwrap();
            check(&p.name, d, &a.parts());
            check(&p.name, d, &reveal(d).unwrap().parts());
            check(&p.name, d, &pickup(d).unwrap().parts());
        }
    }

    #[test]
    fn portrait_puts_the_qr_above_and_landscape_beside() {
        for p in bundled_all() {
            let a = attract(&p.display, qr_max_side(&p.display)).unwrap();
            let qr_bottom = a.qr.top_left.y + a.qr.size.height as i32;
            let qr_right = a.qr.top_left.x + a.qr.size.width as i32;
            match p.display.orientation {
                Orientation::Portrait => assert!(a.brand_zh.top_left.y >= qr_bottom, "{}", p.name),
                Orientation::Landscape => assert!(a.brand_zh.top_left.x >= qr_right, "{}", p.name),
            }
        }
    }

    #[test]
    fn a_qr_larger_than_the_room_is_refused() {
        let p = caidan_profiles::bundled("vending-machine").unwrap();
        let err = attract(&p.display, qr_max_side(&p.display) + 1).unwrap_err();
        assert!(matches!(
            err,
            ScreenError::DoesNotFit {
                screen: "attract",
                ..
            }
        ));
    }
}
