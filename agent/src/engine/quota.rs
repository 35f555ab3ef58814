//! Quota counters per offer: total, this device today, this device this hour.
//!
//! Pure bookkeeping: the store persists each row in the same transaction as the claim that
//! moved it, and loads them back at start.

use std::collections::HashMap;

use jiff::civil::Date;

/// Claims handed out for one offer on this device.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub struct OfferCount {
    pub total: u32,
    /// Local date the day and hour counts belong to.
    pub day: Option<Date>,
    pub day_count: u32,
    pub hour: i8,
    pub hour_count: u32,
}

impl OfferCount {
    /// Claims today, reading zero when the counter belongs to another day.
    pub fn day_count(&self, today: Date) -> u32 {
        if self.day == Some(today) {
            self.day_count
        } else {
            0
        }
    }

    /// Claims in this local hour of today.
    pub fn hour_count(&self, today: Date, hour: i8) -> u32 {
        if self.day == Some(today) && self.hour == hour {
            self.hour_count
        } else {
            0
        }
    }

    /// The counter after one more claim at `today`, `hour`.
    pub fn bumped(&self, today: Date, hour: i8) -> OfferCount {
        let day_count = self.day_count(today) + 1;
        let hour_count = self.hour_count(today, hour) + 1;
        OfferCount {
            total: self.total + 1,
            day: Some(today),
            day_count,
            hour,
            hour_count,
        }
    }
}

/// Every offer's counter, keyed by offer id.
#[derive(Debug, Clone, Default)]
pub struct QuotaBook {
    counts: HashMap<String, OfferCount>,
}

impl QuotaBook {
    pub fn get(&self, offer: &str) -> OfferCount {
        self.counts.get(offer).copied().unwrap_or_default()
    }

    pub fn set(&mut self, offer: &str, count: OfferCount) {
        self.counts.insert(offer.to_owned(), count);
    }
}
