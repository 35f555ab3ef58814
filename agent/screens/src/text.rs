//! Text: a GB2312 font for Chinese, a Latin font for English, drawn at an integer scale.

use std::borrow::Cow;

use embedded_graphics::prelude::*;
use embedded_graphics::primitives::Rectangle;
use u8g2_fonts::types::{FontColor, VerticalPosition};
use u8g2_fonts::{FontRenderer, LookupError, fonts};

use crate::ScreenError;

/// WenQuanYi 16 px with every GB2312 character (and ASCII).
pub const CJK: FontRenderer = FontRenderer::new::<fonts::u8g2_font_wqy16_t_gb2312>();
/// CJK font name, for error messages.
pub const CJK_NAME: &str = "u8g2_font_wqy16_t_gb2312";
/// Helvetica 14 px, full Latin-1.
pub const LATIN: FontRenderer = FontRenderer::new::<fonts::u8g2_font_helvR14_tf>();
/// Latin font name, for error messages.
pub const LATIN_NAME: &str = "u8g2_font_helvR14_tf";

/// The font a string is drawn in: the CJK font if it has any character beyond Latin-1.
pub fn font_for(text: &str) -> (&'static FontRenderer, &'static str) {
    if text.chars().any(|c| u32::from(c) > 0xff) {
        (&CJK, CJK_NAME)
    } else {
        (&LATIN, LATIN_NAME)
    }
}

/// The distinct characters of `text` that `font` has no glyph for, in order of appearance.
pub fn missing_glyphs(font: &FontRenderer, text: &str) -> Vec<char> {
    let mut missing = Vec::new();
    for c in text.chars() {
        let lacks = matches!(
            font.get_rendered_dimensions(c, Point::zero(), VerticalPosition::Top),
            Err(LookupError::GlyphNotFound(_))
        );
        if lacks && !missing.contains(&c) {
            missing.push(c);
        }
    }
    missing
}

/// Fails naming the font and the characters if `text` cannot be drawn in its font.
pub fn check(text: &str) -> Result<(), ScreenError> {
    let (font, name) = font_for(text);
    let missing = missing_glyphs(font, text);
    if missing.is_empty() {
        Ok(())
    } else {
        Err(ScreenError::MissingGlyphs {
            font: name,
            missing,
        })
    }
}

/// The box `text`'s glyphs cover, in font pixels (scale 1), relative to the point it is
/// drawn at with [`VerticalPosition::Top`]; glyphs reach above and left of that point.
fn ink_box(text: &str) -> Rectangle {
    let (font, _) = font_for(text);
    font.get_rendered_dimensions(text, Point::zero(), VerticalPosition::Top)
        .ok()
        .and_then(|d| d.bounding_box)
        .unwrap_or_default()
}

/// Width of `text` in font pixels (scale 1): from the pen start to its rightmost ink.
pub fn width(text: &str) -> u32 {
    let b = ink_box(text);
    (b.top_left.x.max(0) as u32) + b.size.width
}

/// The largest scale up to `max` at which `text` fits across `area`; 1 if none does.
pub fn fitting_scale(text: &str, area: &Rectangle, max: u32) -> u32 {
    let w = width(text);
    (1..=max)
        .rev()
        .find(|s| w * s <= area.size.width)
        .unwrap_or(1)
}

/// `text` as drawn in `max_width` font pixels: whole if it fits, else cut with an ellipsis
/// ("…" in the CJK font, "..." in the Latin one, which has no U+2026).
pub fn fitted(text: &str, max_width: u32) -> Cow<'_, str> {
    if width(text) <= max_width {
        return Cow::Borrowed(text);
    }
    let dots = if font_for(text).1 == CJK_NAME {
        "…"
    } else {
        "..."
    };
    let mut cut = text.to_owned();
    while !cut.is_empty() {
        cut.pop();
        let candidate = format!("{}{dots}", cut.trim_end());
        if width(&candidate) <= max_width {
            return Cow::Owned(candidate);
        }
    }
    Cow::Borrowed("")
}

/// A target seen through a magnifier: each pixel drawn becomes a `scale` x `scale` square
/// placed from `origin`.
struct Scaled<'a, D> {
    inner: &'a mut D,
    origin: Point,
    scale: u32,
}

impl<D: DrawTarget> Dimensions for Scaled<'_, D> {
    fn bounding_box(&self) -> Rectangle {
        let b = self.inner.bounding_box();
        Rectangle::new(Point::zero(), b.size / self.scale)
    }
}

impl<D: DrawTarget> DrawTarget for Scaled<'_, D> {
    type Color = D::Color;
    type Error = D::Error;

    fn draw_iter<I>(&mut self, pixels: I) -> Result<(), Self::Error>
    where
        I: IntoIterator<Item = Pixel<Self::Color>>,
    {
        let s = self.scale;
        for Pixel(p, color) in pixels {
            let at = self.origin + Point::new(p.x * s as i32, p.y * s as i32);
            self.inner
                .fill_solid(&Rectangle::new(at, Size::new(s, s)), color)?;
        }
        Ok(())
    }
}

/// Draws `text` centred in `area`, as large as fits up to `max_scale`, cut with an
/// ellipsis if it does not fit even at scale 1.
///
/// A glyph the font lacks is skipped; [`check`] and the coverage test keep that from happening.
pub fn draw_centred<D: DrawTarget>(
    text: &str,
    area: &Rectangle,
    max_scale: u32,
    color: D::Color,
    target: &mut D,
) -> Result<(), D::Error> {
    let s = fitting_scale(text, area, max_scale);
    let text = fitted(text, area.size.width / s);
    let text = text.as_ref();
    let (font, _) = font_for(text);
    // Centre the ink, not the pen box: CJK glyphs rise above the Top position, Latin ones
    // sit below it.
    let ink = ink_box(text);
    let (w, h) = (width(text) * s, ink.size.height * s);
    let x = area.top_left.x + (area.size.width.saturating_sub(w) / 2) as i32;
    let y = area.top_left.y + (area.size.height.saturating_sub(h) / 2) as i32
        - ink.top_left.y * s as i32;
    let mut scaled = Scaled {
        inner: target,
        origin: Point::new(x, y),
        scale: s,
    };
    match font.render(
        text,
        Point::zero(),
        VerticalPosition::Top,
        FontColor::Transparent(color),
        &mut scaled,
    ) {
        Err(u8g2_fonts::Error::DisplayError(e)) => Err(e),
        _ => Ok(()),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn every_screen_string_has_all_its_glyphs() {
        for s in crate::strings::all() {
            check(s).unwrap_or_else(|e| panic!("{s:?}: {e}"));
        }
        // Codes, times and the separator drawn between them.
        check("0123456789 ABCDEFGHJKLMNPQRSTUVWXYZ:-·*").unwrap();
        // Masked codes on the agent's public panel.
        check("*****MZT").unwrap();
        check("取货码，保留至 18:30").unwrap();
    }

    /// Why every pair is drawn on two lines: WenQuanYi's GB2312 set has no U+00B7, so
    /// "离线也能领 · Offline, still serving" cannot be one CJK-font line.
    #[test]
    fn the_cjk_font_lacks_the_middle_dot_so_pairs_go_on_two_lines() {
        for (zh, en) in crate::strings::pairs() {
            let line = format!("{zh} · {en}");
            assert_eq!(missing_glyphs(&CJK, &line), vec!['·'], "{line}");
            assert_eq!(
                missing_glyphs(&CJK, &format!("{zh} {en}")),
                Vec::<char>::new()
            );
        }
    }

    #[test]
    fn missing_glyphs_are_reported_once_each() {
        assert_eq!(missing_glyphs(&LATIN, "a中b中"), vec!['中']);
        assert_eq!(missing_glyphs(&CJK, "开盲盒"), Vec::<char>::new());
        assert!(matches!(
            check("🥚 egg"),
            Err(ScreenError::MissingGlyphs { .. })
        ));
    }

    #[test]
    fn text_too_wide_is_cut_with_an_ellipsis() {
        assert_eq!(fitted("Sold out", 200), "Sold out");
        let en = fitted("A very long offer title that no small panel can hold", 120);
        assert!(en.ends_with("...") && width(&en) <= 120, "{en}");
        let zh = fitted("一个非常非常非常长的优惠标题", 100);
        assert!(zh.ends_with('…') && width(&zh) <= 100, "{zh}");
        check(&zh).unwrap();
    }

    #[test]
    fn wider_text_gets_a_smaller_scale() {
        let area = Rectangle::new(Point::zero(), Size::new(200, 40));
        assert_eq!(fitting_scale("Hi", &area, 3), 3);
        assert!(fitting_scale("Crack an egg, find a surprise", &area, 3) < 3);
    }
}
