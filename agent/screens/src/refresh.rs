//! Deciding how a panel is brought up to date: only what changed, and on e-paper a full
//! refresh (a flash that clears ghosting) at most every N partial ones.

use embedded_graphics::primitives::Rectangle;

/// One update of the panel.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Refresh {
    /// Redraw everything; on e-paper, the flashing full refresh.
    Full,
    /// Redraw these regions only; on e-paper, a partial refresh without a flash.
    Partial(Vec<Rectangle>),
}

/// Tracks what the panel has been through since its last full refresh.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Refresher {
    full_every: Option<u32>,
    partials: u32,
    drawn: bool,
}

impl Refresher {
    /// `full_every`: the profile's `display.full_refresh_every` (e-paper), or none.
    pub fn new(full_every: Option<u32>) -> Self {
        Refresher {
            full_every,
            partials: 0,
            drawn: false,
        }
    }

    /// How to show the next screen, given what changed (from `Drawing::changes`: `None` for
    /// everything); `None` when nothing did. `bounds` is the whole panel.
    pub fn plan(&mut self, changes: Option<Vec<Rectangle>>, bounds: Rectangle) -> Option<Refresh> {
        if !self.drawn {
            self.drawn = true;
            self.partials = 0;
            return Some(Refresh::Full);
        }
        let parts = match changes {
            Some(parts) if parts.is_empty() => return None,
            Some(parts) => parts,
            None if self.full_every.is_none() => return Some(Refresh::Full),
            None => vec![bounds],
        };
        match self.full_every {
            Some(n) if self.partials >= n => {
                self.partials = 0;
                Some(Refresh::Full)
            }
            Some(_) => {
                self.partials += 1;
                Some(Refresh::Partial(parts))
            }
            None => Some(Refresh::Partial(parts)),
        }
    }

    /// Forgets what the panel shows, so the next update is a full one (after the panel was
    /// blanked, or the process restarted).
    pub fn reset(&mut self) {
        self.drawn = false;
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use embedded_graphics::prelude::*;

    fn r(x: i32) -> Rectangle {
        Rectangle::new(Point::new(x, 0), Size::new(10, 10))
    }

    const BOUNDS: Rectangle = Rectangle::new(Point::zero(), Size::new(100, 100));

    #[test]
    fn the_first_update_is_full_and_then_only_what_changed() {
        let mut p = Refresher::new(None);
        assert_eq!(p.plan(Some(vec![r(1)]), BOUNDS), Some(Refresh::Full));
        assert_eq!(p.plan(Some(vec![]), BOUNDS), None);
        for _ in 0..50 {
            assert_eq!(
                p.plan(Some(vec![r(1)]), BOUNDS),
                Some(Refresh::Partial(vec![r(1)]))
            );
        }
        assert_eq!(p.plan(None, BOUNDS), Some(Refresh::Full));
        p.reset();
        assert_eq!(p.plan(Some(vec![r(2)]), BOUNDS), Some(Refresh::Full));
    }

    #[test]
    fn e_paper_flashes_once_after_every_n_partial_refreshes() {
        let mut p = Refresher::new(Some(3));
        let mut seen = Vec::new();
        for i in 0..10 {
            let changes = if i == 5 { None } else { Some(vec![r(i)]) };
            seen.push(match p.plan(changes, BOUNDS).unwrap() {
                Refresh::Full => 'F',
                Refresh::Partial(parts) if parts == vec![BOUNDS] => 'W',
                Refresh::Partial(_) => 'p',
            });
        }
        // A whole-screen change on e-paper is a partial refresh of all of it, and still
        // counts towards the next flash.
        assert_eq!(seen.iter().collect::<String>(), "FpppFWppFp");
        // Nothing changed: no refresh, and no count.
        assert_eq!(p.plan(Some(vec![]), BOUNDS), None);
        for _ in 0..2 {
            assert_eq!(
                p.plan(Some(vec![r(0)]), BOUNDS),
                Some(Refresh::Partial(vec![r(0)]))
            );
        }
        assert_eq!(p.plan(Some(vec![r(0)]), BOUNDS), Some(Refresh::Full));
    }
}
