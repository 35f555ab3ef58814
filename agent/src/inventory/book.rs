//! The pure reservation core: units on hand and reserved per SKU, and the open holds
//! (pickup orders and the holds of product and sample eggs) that reserve them. No I/O and no
//! clock of its own: the writer asks it first, writes the change to the store, and only then
//! applies it here, so memory never runs ahead of what was committed.
//!
//! Invariants, for every SKU: `reserved <= on_hand` (available never below zero), and
//! `reserved` is the sum of the open holds' units of that SKU.

use std::collections::{BTreeSet, HashMap};

use caidan_sync::contract::{OrderRejection, StockLevel};

/// Most units of one SKU a touchpoint may hold.
pub const MAX_ON_HAND: u32 = caidan_sync::contract::inventory::MAX_ON_HAND;

/// A SKU's stock.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct Level {
    /// Units physically here, reserved ones included.
    pub on_hand: u32,
    /// Units held for open holds.
    pub reserved: u32,
}

impl Level {
    pub fn available(&self) -> u32 {
        self.on_hand - self.reserved
    }
}

/// Units of one SKU.
#[derive(Debug, Clone, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct Units {
    pub sku: String,
    pub qty: u32,
}

/// An open hold: units reserved until picked up, cancelled, released or expired.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Hold {
    pub lines: Vec<Units>,
    pub expires_ms: i64,
    /// A dispense is under way: not to be expired or handed over twice meanwhile.
    pub dispensing: bool,
}

/// Why a stock change was refused.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum StockRefusal {
    #[error(
        "{sku}: {reserved} units are reserved, so units on hand cannot go below that (asked for {wanted})"
    )]
    BelowReserved {
        sku: String,
        reserved: u32,
        wanted: i64,
    },
    #[error("{sku}: at most {MAX_ON_HAND} units on hand (asked for {wanted})")]
    TooMany { sku: String, wanted: i64 },
    #[error("{0}: never stocked here")]
    UnknownSku(String),
}

/// Why a hold could not be taken.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Refused(pub OrderRejection);

/// Stock and open holds of one touchpoint.
#[derive(Debug, Clone, Default)]
pub struct StockBook {
    levels: HashMap<String, Level>,
    holds: HashMap<String, Hold>,
    /// Open holds by expiry, for [`StockBook::due`].
    by_expiry: BTreeSet<(i64, String)>,
}

impl StockBook {
    /// Adds a SKU's stock as stored (loading).
    pub fn load_level(&mut self, sku: &str, level: Level) {
        self.levels.insert(sku.to_owned(), level);
    }

    /// Adds an open hold as stored (loading); its units are already in the levels.
    pub fn load_hold(&mut self, id: &str, hold: Hold) {
        self.by_expiry.insert((hold.expires_ms, id.to_owned()));
        self.holds.insert(id.to_owned(), hold);
    }

    pub fn level(&self, sku: &str) -> Option<Level> {
        self.levels.get(sku).copied()
    }

    /// The wire form of a SKU's stock.
    pub fn report(&self, sku: &str) -> StockLevel {
        let l = self.level(sku).unwrap_or_default();
        StockLevel {
            sku: caidan_sync::contract::Ident::new(sku).expect("SKUs are checked on entry"),
            on_hand: l.on_hand,
            reserved: l.reserved,
        }
    }

    pub fn levels(&self) -> impl Iterator<Item = (&str, Level)> {
        self.levels.iter().map(|(k, v)| (k.as_str(), *v))
    }

    pub fn hold(&self, id: &str) -> Option<&Hold> {
        self.holds.get(id)
    }

    pub fn open_holds(&self) -> usize {
        self.holds.len()
    }

    /// Whether `lines` could all be reserved now: every SKU stocked, and enough available.
    pub fn can_reserve(&self, lines: &[Units]) -> Result<(), Refused> {
        for l in &merged(lines.to_vec()) {
            let Some(level) = self.levels.get(&l.sku) else {
                return Err(Refused(OrderRejection::UnknownSku));
            };
            if level.available() < l.qty {
                return Err(Refused(OrderRejection::OutOfStock));
            }
        }
        Ok(())
    }

    /// Reserves `lines` for hold `id`, all or nothing. The caller checked
    /// [`StockBook::can_reserve`] and that `id` is not open.
    pub fn reserve(&mut self, id: &str, lines: Vec<Units>, expires_ms: i64) -> Result<(), Refused> {
        let lines = merged(lines);
        self.can_reserve(&lines)?;
        debug_assert!(!self.holds.contains_key(id), "hold {id} is already open");
        for l in &lines {
            self.levels.get_mut(&l.sku).expect("checked").reserved += l.qty;
        }
        self.by_expiry.insert((expires_ms, id.to_owned()));
        self.holds.insert(
            id.to_owned(),
            Hold {
                lines,
                expires_ms,
                dispensing: false,
            },
        );
        Ok(())
    }

    fn close(&mut self, id: &str) -> Option<Hold> {
        let hold = self.holds.remove(id)?;
        self.by_expiry.remove(&(hold.expires_ms, id.to_owned()));
        Some(hold)
    }

    /// Closes an open hold and puts its units back (cancelled, released, expired).
    pub fn release(&mut self, id: &str) -> Option<Hold> {
        let hold = self.close(id)?;
        for l in &hold.lines {
            if let Some(level) = self.levels.get_mut(&l.sku) {
                level.reserved -= l.qty;
            }
        }
        Some(hold)
    }

    /// Marks a hold as being dispensed (or not any more); false when it is not open.
    pub fn set_dispensing(&mut self, id: &str, dispensing: bool) -> bool {
        match self.holds.get_mut(id) {
            Some(h) => {
                h.dispensing = dispensing;
                true
            }
            None => false,
        }
    }

    /// Hands over `given` of hold `id`: the units leave the stock. Whatever of the hold is
    /// left stays reserved; with nothing left the hold closes. Returns what is left, or
    /// `None` when the hold is not open or `given` is more than it holds.
    pub fn hand_over(&mut self, id: &str, given: &[Units]) -> Option<Vec<Units>> {
        let hold = self.holds.get(id)?;
        let mut left = hold.lines.clone();
        for g in given {
            let line = left.iter_mut().find(|l| l.sku == g.sku)?;
            line.qty = line.qty.checked_sub(g.qty)?;
        }
        left.retain(|l| l.qty > 0);
        for g in given {
            let level = self.levels.get_mut(&g.sku).expect("held units are stocked");
            level.reserved -= g.qty;
            level.on_hand -= g.qty;
        }
        if left.is_empty() {
            self.close(id);
        } else {
            let hold = self.holds.get_mut(id).expect("open");
            hold.lines = left.clone();
            hold.dispensing = false;
        }
        Some(left)
    }

    /// The level `sku` would have with `on_hand` units, or why not.
    pub fn plan_set(&self, sku: &str, on_hand: i64, create: bool) -> Result<Level, StockRefusal> {
        let level = match self.levels.get(sku) {
            Some(l) => *l,
            None if create => Level::default(),
            None => return Err(StockRefusal::UnknownSku(sku.to_owned())),
        };
        if on_hand > i64::from(MAX_ON_HAND) {
            return Err(StockRefusal::TooMany {
                sku: sku.to_owned(),
                wanted: on_hand,
            });
        }
        if on_hand < i64::from(level.reserved) {
            return Err(StockRefusal::BelowReserved {
                sku: sku.to_owned(),
                reserved: level.reserved,
                wanted: on_hand,
            });
        }
        Ok(Level {
            on_hand: on_hand as u32,
            reserved: level.reserved,
        })
    }

    /// The level after changing units on hand by `delta`, or why not.
    pub fn plan_adjust(&self, sku: &str, delta: i64, create: bool) -> Result<Level, StockRefusal> {
        let on_hand = self.levels.get(sku).map_or(0, |l| i64::from(l.on_hand));
        self.plan_set(sku, on_hand + delta, create)
    }

    /// Applies a level from [`StockBook::plan_set`] or [`StockBook::plan_adjust`].
    pub fn apply(&mut self, sku: &str, level: Level) {
        debug_assert_eq!(
            level.reserved,
            self.levels.get(sku).map_or(0, |l| l.reserved)
        );
        self.levels.insert(sku.to_owned(), level);
    }

    /// Open holds whose window ended by `now_ms` and that are not being dispensed, oldest
    /// first.
    pub fn due(&self, now_ms: i64) -> Vec<String> {
        self.by_expiry
            .range(..(now_ms.saturating_add(1), String::new()))
            .filter(|(_, id)| self.holds.get(id).is_some_and(|h| !h.dispensing))
            .map(|(_, id)| id.clone())
            .collect()
    }

    /// When the next open hold's window ends.
    pub fn next_expiry(&self) -> Option<i64> {
        self.by_expiry.first().map(|(t, _)| *t)
    }
}

/// `lines` with each SKU once, in SKU order.
pub fn merged(mut lines: Vec<Units>) -> Vec<Units> {
    lines.sort();
    let mut out: Vec<Units> = Vec::with_capacity(lines.len());
    for l in lines {
        match out.last_mut() {
            Some(last) if last.sku == l.sku => last.qty += l.qty,
            _ => out.push(l),
        }
    }
    out
}

#[cfg(test)]
#[path = "book_tests.rs"]
mod tests;
