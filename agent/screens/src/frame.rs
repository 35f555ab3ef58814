//! An in-memory frame, or a window (a band of rows, a region) of one, to draw into.

use core::convert::Infallible;

use embedded_graphics::prelude::*;
use embedded_graphics::primitives::Rectangle;

/// A rectangle of a `width` x `height` frame (a band of rows, a QR region, or all of it),
/// held in memory.
///
/// It reports the size of the whole frame, so a screen draws itself the same way into a
/// window as into the full frame; pixels outside the window are dropped.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Frame<C> {
    width: u32,
    height: u32,
    area: Rectangle,
    pixels: Vec<C>,
}

impl<C: PixelColor> Frame<C> {
    /// The whole frame, filled with `background`.
    pub fn new(width: u32, height: u32, background: C) -> Self {
        Frame::band(width, height, 0, height, background)
    }

    /// Rows `top..top + rows` of the frame (cut at its bottom), filled with `background`.
    pub fn band(width: u32, height: u32, top: u32, rows: u32, background: C) -> Self {
        let area = Rectangle::new(Point::new(0, top as i32), Size::new(width, rows));
        Frame::window(width, height, area, background)
    }

    /// The part of the frame under `area` (cut at its edges), filled with `background`.
    pub fn window(width: u32, height: u32, area: Rectangle, background: C) -> Self {
        let mut frame = Frame {
            width,
            height,
            area: Rectangle::zero(),
            pixels: Vec::new(),
        };
        frame.move_to(area, background);
        frame
    }

    /// Moves the window to `area` (cut at the frame's edges), reusing its memory.
    pub fn move_to(&mut self, area: Rectangle, background: C) {
        let whole = Rectangle::new(Point::zero(), Size::new(self.width, self.height));
        self.area = area.intersection(&whole);
        let size = self.area.size;
        self.pixels.clear();
        self.pixels
            .resize((size.width * size.height) as usize, background);
    }

    /// The part of the frame this window holds, in frame coordinates.
    pub fn area(&self) -> Rectangle {
        self.area
    }

    /// The first frame row this window holds.
    pub fn top(&self) -> u32 {
        self.area.top_left.y as u32
    }

    /// The pixels held, row by row.
    pub fn pixels(&self) -> &[C] {
        &self.pixels
    }

    /// The pixels of one held row, `0` being the window's top row.
    pub fn row(&self, y: u32) -> &[C] {
        let w = self.area.size.width as usize;
        &self.pixels[y as usize * w..(y as usize + 1) * w]
    }

    fn index(&self, p: Point) -> usize {
        let (x, y) = (p - self.area.top_left).into();
        y as usize * self.area.size.width as usize + x as usize
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
        for Pixel(p, color) in pixels {
            if self.area.contains(p) {
                let i = self.index(p);
                self.pixels[i] = color;
            }
        }
        Ok(())
    }

    // QR modules, scaled glyph pixels and backgrounds all arrive as rectangles.
    fn fill_solid(&mut self, area: &Rectangle, color: C) -> Result<(), Infallible> {
        let area = area.intersection(&self.area);
        if area.is_zero_sized() {
            return Ok(());
        }
        let w = area.size.width as usize;
        for y in area.rows() {
            let start = self.index(Point::new(area.top_left.x, y));
            self.pixels[start..start + w].fill(color);
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

    #[test]
    fn a_window_keeps_only_its_rectangle() {
        use BinaryColor::{Off, On};
        let area = Rectangle::new(Point::new(1, 1), Size::new(2, 2));
        let mut w = Frame::window(4, 4, area, Off);
        w.fill_solid(&Rectangle::new(Point::new(0, 0), Size::new(2, 4)), On)
            .unwrap();
        Pixel(Point::new(2, 2), On).draw(&mut w).unwrap();
        Pixel(Point::new(3, 3), On).draw(&mut w).unwrap();
        assert_eq!(w.pixels(), &[On, Off, On, On]);
        assert_eq!(w.row(1), &[On, On]);
        // Cut at the frame's edge.
        let edge = Frame::window(4, 4, Rectangle::new(Point::new(3, 3), Size::new(5, 5)), Off);
        assert_eq!(edge.pixels().len(), 1);
    }
}
