//! Drawing each screen onto any `DrawTarget` in the panel's colour depth.

use caidan_profiles::Profile;
use embedded_graphics::pixelcolor::{BinaryColor, Rgb565, Rgb888};
use embedded_graphics::prelude::*;
use embedded_graphics::primitives::{PrimitiveStyleBuilder, Rectangle, StrokeAlignment};

use crate::layout::{self, AttractLayout, CODE_SCALE, PickupLayout, RevealLayout};
use crate::qr::QrPlan;
use crate::strings::{self, Banner, PickupStatus};
use crate::{Frame, ScreenError, text};

/// A colour a screen can be drawn in, made from the design's 24-bit colours.
pub trait ScreenColor: PixelColor {
    /// The nearest colour of this depth.
    fn from_rgb(c: Rgb888) -> Self;
    /// This colour as 24-bit RGB, for PNG output.
    fn to_rgb(self) -> Rgb888;
}

impl ScreenColor for Rgb888 {
    fn from_rgb(c: Rgb888) -> Self {
        c
    }
    fn to_rgb(self) -> Rgb888 {
        self
    }
}

impl ScreenColor for Rgb565 {
    fn from_rgb(c: Rgb888) -> Self {
        c.into()
    }
    fn to_rgb(self) -> Rgb888 {
        self.into()
    }
}

/// `On` is ink (black on e-paper): anything darker than mid grey by luma.
impl ScreenColor for BinaryColor {
    fn from_rgb(c: Rgb888) -> Self {
        let luma = 299 * u32::from(c.r()) + 587 * u32::from(c.g()) + 114 * u32::from(c.b());
        if luma < 128 * 1000 {
            BinaryColor::On
        } else {
            BinaryColor::Off
        }
    }
    fn to_rgb(self) -> Rgb888 {
        match self {
            BinaryColor::On => Rgb888::BLACK,
            BinaryColor::Off => Rgb888::WHITE,
        }
    }
}

/// Warm paper white behind everything.
pub const BACKGROUND: Rgb888 = Rgb888::new(0xff, 0xfb, 0xf2);
/// Body text.
pub const INK: Rgb888 = Rgb888::new(0x1e, 0x1e, 0x1e);
/// Codes and banners: Caidan red, dark enough to threshold to ink on mono panels.
pub const ACCENT: Rgb888 = Rgb888::new(0xc8, 0x10, 0x2e);

/// What a screen shows.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Screen<'a> {
    /// The egg QR for `link`, the brand line (Chinese, English) and a state banner.
    Attract {
        link: &'a str,
        brand: (&'a str, &'a str),
        banner: Banner,
    },
    /// The offer a shopper just got.
    Reveal(Reveal<'a>),
    /// The pickup code entry, with what was typed so far and the last outcome.
    Pickup {
        entered: &'a str,
        status: Option<PickupStatus>,
    },
}

/// The offer on the reveal screen.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Reveal<'a> {
    pub title_zh: &'a str,
    pub title_en: &'a str,
    pub next: NextStep<'a>,
}

/// What the shopper does with the offer.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum NextStep<'a> {
    /// Show the claim code at the counter.
    ShowAtCounter { claim_code: &'a str },
    /// Collect the item with the pickup code before `hold_until` (local time, e.g. "18:30").
    Pickup {
        pickup_code: &'a str,
        hold_until: &'a str,
    },
}

#[derive(Debug, Clone)]
enum Plan {
    Attract(AttractLayout, QrPlan),
    Reveal(RevealLayout),
    Pickup(PickupLayout),
}

/// A screen laid out (and its QR encoded) for one panel, ready to draw any number of times.
#[derive(Debug, Clone)]
pub struct Drawing<'a> {
    screen: Screen<'a>,
    plan: Plan,
    width: u32,
    height: u32,
}

impl<'a> Drawing<'a> {
    /// Lays out `screen` for `profile`, refusing it if it does not fit or a glyph is missing.
    pub fn new(profile: &Profile, screen: Screen<'a>) -> Result<Self, ScreenError> {
        let d = &profile.display;
        let plan = match screen {
            Screen::Attract { link, brand, .. } => {
                text::check(brand.0)?;
                text::check(brand.1)?;
                let qr = QrPlan::new(profile, link)?;
                Plan::Attract(layout::attract(d, qr.side_px)?, qr)
            }
            Screen::Reveal(r) => {
                text::check(r.title_zh)?;
                text::check(r.title_en)?;
                let (code, time) = match r.next {
                    NextStep::ShowAtCounter { claim_code } => (claim_code, ""),
                    NextStep::Pickup {
                        pickup_code,
                        hold_until,
                    } => (pickup_code, hold_until),
                };
                text::check(code)?;
                text::check(time)?;
                Plan::Reveal(layout::reveal(d)?)
            }
            Screen::Pickup { entered, .. } => {
                text::check(entered)?;
                Plan::Pickup(layout::pickup(d)?)
            }
        };
        Ok(Drawing {
            screen,
            plan,
            width: d.width,
            height: d.height,
        })
    }

    /// Panel width and height in pixels.
    pub fn size(&self) -> Size {
        Size::new(self.width, self.height)
    }

    /// Every laid-out part, named; nothing is drawn outside them.
    pub fn parts(&self) -> Vec<(&'static str, Rectangle)> {
        match &self.plan {
            Plan::Attract(l, _) => l.parts(),
            Plan::Reveal(l) => l.parts(),
            Plan::Pickup(l) => l.parts(),
        }
    }

    /// The only part that changes when the QR token rotates; redraw it with [`Self::draw_qr`].
    pub fn qr_region(&self) -> Option<Rectangle> {
        match &self.plan {
            Plan::Attract(l, _) => Some(l.qr),
            _ => None,
        }
    }

    /// Draws just the QR (attract screen only), for a token rotation.
    pub fn draw_qr<D, C>(&self, target: &mut D) -> Result<(), D::Error>
    where
        D: DrawTarget<Color = C>,
        C: ScreenColor,
    {
        if let Plan::Attract(l, qr) = &self.plan {
            qr.draw(
                l.qr.top_left,
                C::from_rgb(Rgb888::BLACK),
                C::from_rgb(Rgb888::WHITE),
                target,
            )?;
        }
        Ok(())
    }

    /// The whole panel, as a rectangle.
    pub fn bounds(&self) -> Rectangle {
        Rectangle::new(Point::zero(), self.size())
    }

    /// Draws the screen in bands of at most `max_rows` rows through one reused buffer, handing
    /// each band to `sink` top to bottom, so a large frame never sits in memory whole.
    pub fn draw_bands<C, E>(
        &self,
        max_rows: u32,
        sink: impl FnMut(&Frame<C>) -> Result<(), E>,
    ) -> Result<(), E>
    where
        C: ScreenColor,
    {
        self.draw_area_bands(self.bounds(), max_rows, sink)
    }

    /// Draws just what lies in `area`, in bands of at most `max_rows` rows of it.
    pub fn draw_area_bands<C, E>(
        &self,
        area: Rectangle,
        max_rows: u32,
        mut sink: impl FnMut(&Frame<C>) -> Result<(), E>,
    ) -> Result<(), E>
    where
        C: ScreenColor,
    {
        let area = area.intersection(&self.bounds());
        let (bg, rows) = (C::from_rgb(BACKGROUND), max_rows.max(1));
        let band_at = |top: u32| {
            let h = rows.min(area.size.height - (top - area.top_left.y as u32));
            Rectangle::new(
                Point::new(area.top_left.x, top as i32),
                Size::new(area.size.width, h),
            )
        };
        let top = area.top_left.y as u32;
        let mut band = Frame::window(self.width, self.height, band_at(top), bg);
        for top in (top..top + area.size.height).step_by(rows as usize) {
            band.move_to(band_at(top), bg);
            let Ok(()) = self.draw(&mut band);
            sink(&band)?;
        }
        Ok(())
    }

    /// What must be redrawn to turn a panel showing `self` into one showing `next`: `None`
    /// when the whole panel changes (another screen, another layout), else the parts that
    /// differ (empty when nothing does). A token rotation is just the QR region.
    pub fn changes(&self, next: &Drawing<'_>) -> Option<Vec<Rectangle>> {
        if self.size() != next.size() {
            return None;
        }
        match (&self.plan, &next.plan, self.screen, next.screen) {
            (
                Plan::Attract(a, qa),
                Plan::Attract(b, qb),
                Screen::Attract {
                    brand: brand_a,
                    banner: banner_a,
                    ..
                },
                Screen::Attract {
                    brand: brand_b,
                    banner: banner_b,
                    ..
                },
            ) if a == b => {
                let mut parts = Vec::new();
                if qa != qb {
                    parts.push(a.qr);
                }
                if brand_a != brand_b {
                    parts.extend([a.brand_zh, a.brand_en]);
                }
                if banner_a != banner_b {
                    parts.extend([a.banner_zh, a.banner_en]);
                }
                Some(parts)
            }
            _ if self.screen == next.screen => Some(Vec::new()),
            _ => None,
        }
    }

    /// Draws the whole screen.
    pub fn draw<D, C>(&self, target: &mut D) -> Result<(), D::Error>
    where
        D: DrawTarget<Color = C>,
        C: ScreenColor,
    {
        let (ink, accent) = (C::from_rgb(INK), C::from_rgb(ACCENT));
        target.clear(C::from_rgb(BACKGROUND))?;
        match (&self.plan, self.screen) {
            (Plan::Attract(l, _), Screen::Attract { brand, banner, .. }) => {
                self.draw_qr(target)?;
                pair(brand, l.brand_zh, l.brand_en, l.scale, ink, target)?;
                let (zh, en) = banner.text();
                pair((zh, en), l.banner_zh, l.banner_en, l.scale, accent, target)?;
            }
            (Plan::Reveal(l), Screen::Reveal(r)) => {
                pair(
                    (r.title_zh, r.title_en),
                    l.title_zh,
                    l.title_en,
                    l.scale,
                    ink,
                    target,
                )?;
                let code_scale = l.scale * CODE_SCALE;
                match r.next {
                    NextStep::ShowAtCounter { claim_code } => {
                        text::draw_centred(claim_code, &l.code, code_scale, accent, target)?;
                        pair(
                            strings::SHOW_AT_COUNTER,
                            l.footer_zh,
                            l.footer_en,
                            l.scale,
                            ink,
                            target,
                        )?;
                    }
                    NextStep::Pickup {
                        pickup_code,
                        hold_until,
                    } => {
                        text::draw_centred(pickup_code, &l.code, code_scale, accent, target)?;
                        let (zh, en) = strings::HELD_UNTIL;
                        let zh = format!("{zh}{hold_until}");
                        let en = format!("{en} {hold_until}");
                        pair((&zh, &en), l.footer_zh, l.footer_en, l.scale, ink, target)?;
                    }
                }
            }
            (Plan::Pickup(l), Screen::Pickup { entered, status }) => {
                pair(
                    strings::PICKUP_PROMPT,
                    l.prompt_zh,
                    l.prompt_en,
                    l.scale,
                    ink,
                    target,
                )?;
                let style = PrimitiveStyleBuilder::new()
                    .stroke_color(ink)
                    .stroke_width(l.scale)
                    .stroke_alignment(StrokeAlignment::Inside)
                    .build();
                l.entry.into_styled(style).draw(target)?;
                let shown = if entered.is_empty() {
                    "______"
                } else {
                    entered
                };
                text::draw_centred(shown, &l.entry, l.scale * CODE_SCALE, accent, target)?;
                if let Some(status) = status {
                    pair(
                        status.text(),
                        l.status_zh,
                        l.status_en,
                        l.scale,
                        accent,
                        target,
                    )?;
                }
            }
            _ => unreachable!("a plan is made from its own screen"),
        }
        Ok(())
    }
}

fn pair<D: DrawTarget>(
    (zh, en): (&str, &str),
    zh_area: Rectangle,
    en_area: Rectangle,
    scale: u32,
    color: D::Color,
    target: &mut D,
) -> Result<(), D::Error> {
    text::draw_centred(zh, &zh_area, scale, color, target)?;
    text::draw_centred(en, &en_area, scale, color, target)
}

#[cfg(test)]
mod tests {
    use super::*;
    use caidan_profiles::bundled_all;

    const LINK: &str =
        "http://192.168.100.200:8080/e/AAECAwQFBgcICQoLDA0ODxAREhMUFRYXGBkaGxwdHh8gISIjJCUmJygp";

    /// Text drawn wider than its box would be cut or run into its neighbour.
    #[test]
    fn every_fixed_string_fits_its_box_on_every_bundled_profile() {
        for p in bundled_all() {
            let d = &p.display;
            let narrowest = [
                layout::attract(d, QrPlan::new(&p, LINK).unwrap().side_px)
                    .unwrap()
                    .brand_en,
                layout::reveal(d).unwrap().footer_en,
                layout::pickup(d).unwrap().status_en,
            ]
            .into_iter()
            .map(|r| r.size.width)
            .min()
            .unwrap();
            for s in strings::all() {
                let w = text::width(s);
                assert!(
                    w <= narrowest,
                    "{}: {s:?} is {w} px, box {narrowest}",
                    p.name
                );
            }
        }
    }

    #[test]
    fn mono_thresholds_ink_and_accent_to_on_and_paper_to_off() {
        assert_eq!(BinaryColor::from_rgb(INK), BinaryColor::On);
        assert_eq!(BinaryColor::from_rgb(ACCENT), BinaryColor::On);
        assert_eq!(BinaryColor::from_rgb(BACKGROUND), BinaryColor::Off);
    }

    #[test]
    fn only_the_attract_screen_has_a_qr_region() {
        let p = caidan_profiles::bundled("restaurant-counter").unwrap();
        let link = "http://10.0.0.1/e/x";
        let attract = Drawing::new(
            &p,
            Screen::Attract {
                link,
                brand: strings::BRAND,
                banner: Banner::Ready,
            },
        )
        .unwrap();
        let region = attract.qr_region().unwrap();
        assert_eq!(region.size.width, QrPlan::new(&p, link).unwrap().side_px);
        let pickup = Drawing::new(
            &p,
            Screen::Pickup {
                entered: "",
                status: None,
            },
        )
        .unwrap();
        assert_eq!(pickup.qr_region(), None);
    }

    #[test]
    fn nothing_is_drawn_outside_the_laid_out_parts() {
        let screens = [
            Screen::Attract {
                link: LINK,
                brand: strings::BRAND,
                banner: Banner::UpdatingConfig,
            },
            Screen::Reveal(Reveal {
                title_zh: "一个非常非常非常非常非常非常非常非常非常长的优惠标题",
                title_en: "A very long offer title that no panel here can hold in one line",
                next: NextStep::ShowAtCounter {
                    claim_code: "K7Q-4MZ",
                },
            }),
            Screen::Pickup {
                entered: "",
                status: Some(PickupStatus::WrongCode),
            },
        ];
        for p in bundled_all() {
            for screen in screens {
                let drawing = Drawing::new(&p, screen).unwrap();
                let size = drawing.size();
                let bg = Rgb888::from_rgb(BACKGROUND);
                let mut frame = crate::Frame::new(size.width, size.height, bg);
                let Ok(()) = drawing.draw(&mut frame);
                let parts = drawing.parts();
                for (i, c) in frame.pixels().iter().enumerate() {
                    let at = Point::new(
                        (i as u32 % size.width) as i32,
                        (i as u32 / size.width) as i32,
                    );
                    if *c != bg {
                        assert!(
                            parts.iter().any(|(_, r)| r.contains(at)),
                            "{}: {screen:?} drew at {at}",
                            p.name
                        );
                    }
                }
            }
        }
    }
}
