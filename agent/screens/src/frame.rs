//! An in-memory frame, or a band of rows of one, to draw into.

use core::convert::Infallible;

use embedded_graphics::prelude::*;
use embedded_graphics::primitives::Rectangle;

/// Rows `top..top + rows` of a `width` x `height` frame, held in memory.
///
/// It reports the size of the whole frame, so a screen draws itself the same way into a
/// band as into the full frame; pixels outside the band are dropped.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Frame<C> {
    width: u32,
    height: u32,
    top: u32,
    rows: u32,
    pixels: Vec<C>,
}

impl<C: PixelColor> Frame<C> {
    /// The whole frame, filled with `background`.
    pub fn new(width: u32, height: u32, background: C) -> Self {
        Frame::band(width, height, 0, height, background)
    }

    /// Rows `top..top + rows` of the frame (cut at its bottom), filled with `background`.
    pub fn band(width: u32, height: u32, top: u32, rows: u32, background: C) -> Self {
        let rows = rows.min(height.saturating_sub(top));
        Frame {
            width,
            height,
            top,
            rows,
            pixels: vec![background; (width * rows) as usize],
        }
    }

    /// Moves the band to start at row `top`, reusing its memory.
    pub fn move_to(&mut self, top: u32, rows: u32, background: C) {
        self.top = top;
        self.rows = rows.min(self.height.saturating_sub(top));
        self.pixels.clear();
        self.pixels
            .resize((self.width * self.rows) as usize, background);
    }

    /// The first frame row this band holds.
    pub fn top(&self) -> u32 {
        self.top
    }

    /// The pixels held, row by row.
    pub fn pixels(&self) -> &[C] {
        &self.pixels
    }

    /// The rows held, as a rectangle in frame coordinates.
    fn window(&self) -> Rectangle {
        Rectangle::new(
            Point::new(0, self.top as i32),
            Size::new(self.width, self.rows),
        )
    }
}

impl<C: PixelColor> OriginDimensions for Frame<C> {
    fn size(&self) -> Size {
        Size::new(self.width, self.height)
    }
}

impl<C: PixelColor> DrawTarget for Frame<C> {
    type Color = C;
    type Error = Infallible;

    fn draw_iter<I>(&mut self, pixels: I) -> Result<(), Infallible>
    where
        I: IntoIterator<Item = Pixel<C>>,
    {
        let window = self.window();
        for Pixel(p, color) in pixels {
            if window.contains(p) {
                let y = p.y as u32 - self.top;
                self.pixels[(y * self.width + p.x as u32) as usize] = color;
            }
        }
        Ok(())
    }

    // QR modules, scaled glyph pixels and backgrounds all arrive as rectangles.
    fn fill_solid(&mut self, area: &Rectangle, color: C) -> Result<(), Infallible> {
        let area = area.intersection(&self.window());
        if area.is_zero_sized() {
            return Ok(());
        }
        let (x0, w) = (area.top_left.x as u32, area.size.width);
        for y in area.rows() {
            let start = ((y as u32 - self.top) * self.width + x0) as usize;
            self.pixels[start..start + w as usize].fill(color);
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use embedded_graphics::pixelcolor::BinaryColor;

    #[test]
    fn a_band_keeps_only_its_rows() {
        let mut band = Frame::band(4, 10, 3, 2, BinaryColor::Off);
        band.fill_solid(
            &Rectangle::new(Point::new(1, 0), Size::new(2, 10)),
            BinaryColor::On,
        )
        .unwrap();
        Pixel(Point::new(0, 4), BinaryColor::On)
            .draw(&mut band)
            .unwrap();
        Pixel(Point::new(0, 5), BinaryColor::On)
            .draw(&mut band)
            .unwrap();
        use BinaryColor::{Off, On};
        assert_eq!(band.pixels(), &[Off, On, On, Off, On, On, On, Off]);
    }
}
