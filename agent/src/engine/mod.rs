//! The egg engine: which offer a shopper gets here and now. Pure logic, no I/O.
//!
//! Offers are first narrowed once per catalogue to what this touchpoint can show at all
//! (scene, region, capabilities), then per scan by time (validity, dayparts), shopper
//! (segments, per-shopper quota), stock and the device's quotas and pacing. A weighted,
//! seeded choice picks among what is left; a content egg is the fallback so no scan is a
//! dead end.

pub mod pacing;
pub mod quota;

use std::collections::{BTreeSet, HashMap};

use caidan_profiles::Scene;
use jiff::Timestamp;
use jiff::civil::{Date, DateTime};
use jiff::tz::TimeZone;
use rand::{Rng, SeedableRng};
use sha2::{Digest, Sha256};

use crate::catalogue::{Capability, Offer, OfferKind, Pacing};
use quota::{OfferCount, QuotaBook};

/// What this device is, for targeting.
#[derive(Debug, Clone)]
pub struct Touchpoint {
    pub device: String,
    pub scene: Scene,
    pub region: String,
    pub capabilities: BTreeSet<Capability>,
}

/// An instant with its local reading in the device's time zone.
#[derive(Debug, Clone, Copy)]
pub struct Moment {
    pub now: Timestamp,
    pub local: DateTime,
}

impl Moment {
    pub fn new(now: Timestamp, tz: &TimeZone) -> Self {
        Self {
            now,
            local: now.to_zoned(tz.clone()).datetime(),
        }
    }

    pub fn today(&self) -> Date {
        self.local.date()
    }

    pub fn hour(&self) -> i8 {
        self.local.hour()
    }
}

/// What the engine knows about the shopper who scanned.
#[derive(Debug, Clone, Default)]
pub struct ShopperView {
    pub segments: Vec<String>,
    /// Claims this shopper already holds, per offer id.
    pub claimed: HashMap<String, u32>,
    /// The offer of the shopper's most recent claim on an earlier day.
    pub previous_offer: Option<String>,
}

/// Why an offer cannot be handed out now.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Ineligible {
    OutsideValidity,
    OutsideDaypart,
    NotForThisTouchpoint,
    Segment,
    OutOfStock,
    TotalQuota,
    DailyQuota,
    ShopperQuota,
    Paced,
}

/// The engine's answer.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Pick {
    /// Index into the catalogue's offers.
    Offer(usize),
    /// Nothing else eligible: this content offer, or the built-in one when `None`.
    Fallback(Option<usize>),
}

/// The offers of one catalogue as seen from one touchpoint.
#[derive(Debug, Clone)]
pub struct EggEngine {
    offers: Vec<Offer>,
    /// Offers this touchpoint can show at all; fixed for a catalogue.
    candidates: Vec<usize>,
    touchpoint: Touchpoint,
}

impl EggEngine {
    pub fn new(offers: Vec<Offer>, touchpoint: Touchpoint) -> Self {
        let candidates = offers
            .iter()
            .enumerate()
            .filter(|(_, o)| fits_touchpoint(o, &touchpoint))
            .map(|(i, _)| i)
            .collect();
        Self {
            offers,
            candidates,
            touchpoint,
        }
    }

    pub fn offers(&self) -> &[Offer] {
        &self.offers
    }

    pub fn offer(&self, index: usize) -> &Offer {
        &self.offers[index]
    }

    pub fn touchpoint(&self) -> &Touchpoint {
        &self.touchpoint
    }

    /// Brands with an offer on screen at this moment, for impression and scan events.
    pub fn brands_in_rotation(&self, at: &Moment) -> BTreeSet<String> {
        self.candidates
            .iter()
            .map(|&i| &self.offers[i])
            .filter(|o| in_time(o, at).is_ok())
            .map(|o| o.brand.clone())
            .collect()
    }

    /// Whether `offer` may be handed to this shopper now.
    pub fn check(
        &self,
        index: usize,
        at: &Moment,
        shopper: &ShopperView,
        count: OfferCount,
        stock: &HashMap<String, i64>,
    ) -> Result<(), Ineligible> {
        let offer = &self.offers[index];
        if !fits_touchpoint(offer, &self.touchpoint) {
            return Err(Ineligible::NotForThisTouchpoint);
        }
        in_time(offer, at)?;
        if !offer.segments.is_empty()
            && !offer.segments.iter().any(|s| shopper.segments.contains(s))
        {
            return Err(Ineligible::Segment);
        }
        if let Some(sku) = &offer.sku
            && offer.kind == OfferKind::FreeSample
            && stock.get(sku).copied().unwrap_or(0) <= 0
        {
            return Err(Ineligible::OutOfStock);
        }
        let q = offer.quota;
        if q.total.is_some_and(|t| count.total >= t) {
            return Err(Ineligible::TotalQuota);
        }
        let today = at.today();
        if let Some(daily) = q.per_device_per_day {
            let used = count.day_count(today);
            if used >= daily {
                return Err(Ineligible::DailyQuota);
            }
            if offer.pacing == Pacing::Even {
                let hour = at.hour();
                let before = used - count.hour_count(today, hour);
                let curve = pacing::hourly_traffic(self.touchpoint.scene);
                if used >= pacing::allowed_through_hour(&curve, hour as usize, daily, before) {
                    return Err(Ineligible::Paced);
                }
            }
        }
        if q.per_shopper
            .is_some_and(|p| shopper.claimed.get(&offer.id).copied().unwrap_or(0) >= p)
        {
            return Err(Ineligible::ShopperQuota);
        }
        Ok(())
    }

    /// Picks the egg for a shopper. The same inputs and seed always give the same pick.
    pub fn choose(
        &self,
        at: &Moment,
        shopper: &ShopperView,
        book: &QuotaBook,
        stock: &HashMap<String, i64>,
        seed: u64,
    ) -> Pick {
        let eligible = |kind_content: bool| -> Vec<usize> {
            self.candidates
                .iter()
                .copied()
                .filter(|&i| (self.offers[i].kind == OfferKind::Content) == kind_content)
                .filter(|&i| {
                    self.check(i, at, shopper, book.get(&self.offers[i].id), stock)
                        .is_ok()
                })
                .collect()
        };
        let mut rng = rand::rngs::StdRng::seed_from_u64(seed);
        let mut offers = eligible(false);
        // "Every day different": yesterday's offer steps aside when another one is there.
        if offers.len() > 1
            && let Some(prev) = &shopper.previous_offer
        {
            offers.retain(|&i| &self.offers[i].id != prev);
        }
        if let Some(i) = self.weighted(&offers, &mut rng) {
            return Pick::Offer(i);
        }
        Pick::Fallback(self.weighted(&eligible(true), &mut rng))
    }

    fn weighted(&self, among: &[usize], rng: &mut impl Rng) -> Option<usize> {
        let total: u64 = among
            .iter()
            .map(|&i| u64::from(self.offers[i].weight))
            .sum();
        if total == 0 {
            return None;
        }
        let mut roll = rng.random_range(0..total);
        for &i in among {
            let w = u64::from(self.offers[i].weight);
            if roll < w {
                return Some(i);
            }
            roll -= w;
        }
        None
    }
}

/// The choice seed for one shopper at one device on one local day: rescans that day
/// choose alike, the next day chooses afresh.
pub fn daily_seed(device: &str, shopper: &str, day: Date) -> u64 {
    let digest = Sha256::digest(format!("{device}|{shopper}|{day}"));
    u64::from_le_bytes(digest[..8].try_into().expect("8 bytes"))
}

fn fits_touchpoint(offer: &Offer, tp: &Touchpoint) -> bool {
    (offer.scenes.is_empty() || offer.scenes.contains(&tp.scene))
        && (offer.regions.is_empty() || offer.regions.iter().any(|r| r == &tp.region))
        && offer.requires.iter().all(|c| tp.capabilities.contains(c))
}

fn in_time(offer: &Offer, at: &Moment) -> Result<(), Ineligible> {
    if offer.valid_from.is_some_and(|f| at.now < f)
        || offer.valid_until.is_some_and(|u| at.now >= u)
    {
        return Err(Ineligible::OutsideValidity);
    }
    let t = at.local.time();
    if !offer.dayparts.is_empty() && !offer.dayparts.iter().any(|d| d.contains(t)) {
        return Err(Ineligible::OutsideDaypart);
    }
    Ok(())
}

#[cfg(test)]
mod tests;
