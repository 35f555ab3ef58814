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

use std::sync::Arc;

use crate::catalogue::{Capability, Daypart, Offer, OfferKind, Pacing, Quota};
use quota::{OfferCount, QuotaBook};

/// Units of a SKU an egg may still take here.
pub trait StockView {
    fn available(&self, sku: &str) -> u32;
}

impl StockView for HashMap<String, i64> {
    fn available(&self, sku: &str) -> u32 {
        self.get(sku)
            .copied()
            .unwrap_or(0)
            .clamp(0, i64::from(u32::MAX)) as u32
    }
}

/// What this device is, for targeting.
#[derive(Debug, Clone)]
pub struct Touchpoint {
    pub device: caidan_sync::contract::Name,
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
    /// Index of the chosen rule.
    Offer(usize),
    /// Nothing else eligible: this content offer, or the built-in one when `None`.
    Fallback(Option<usize>),
}

/// The part of an offer the engine decides with; titles and copy stay in the store, so
/// a device holding 10,000 offers keeps a small resident set.
#[derive(Debug, Clone)]
pub struct Rule {
    pub id: Box<str>,
    pub brand: Arc<str>,
    pub kind: OfferKind,
    valid_from_ms: i64,
    valid_until_ms: i64,
    dayparts: Box<[Daypart]>,
    segments: Box<[Box<str>]>,
    pub sku: Option<Box<str>>,
    pub quota: Quota,
    pub weight: u32,
    pub pacing: Pacing,
    pub claim_ttl_hours: u32,
}

impl Rule {
    fn new(offer: Offer, brands: &mut BTreeSet<Arc<str>>) -> Self {
        let brand = match brands.get(offer.brand.as_str()) {
            Some(b) => b.clone(),
            None => {
                let b: Arc<str> = offer.brand.as_str().into();
                brands.insert(b.clone());
                b
            }
        };
        Rule {
            id: offer.id.into_boxed_str(),
            brand,
            kind: offer.kind,
            valid_from_ms: offer.valid_from.map_or(i64::MIN, |t| t.as_millisecond()),
            valid_until_ms: offer.valid_until.map_or(i64::MAX, |t| t.as_millisecond()),
            dayparts: offer.dayparts.into_boxed_slice(),
            segments: offer
                .segments
                .into_iter()
                .map(String::into_boxed_str)
                .collect(),
            sku: offer.sku.map(String::into_boxed_str),
            quota: offer.quota,
            weight: offer.weight,
            pacing: offer.pacing,
            claim_ttl_hours: offer.claim_ttl_hours,
        }
    }

    fn in_time(&self, at: &Moment) -> Result<(), Ineligible> {
        let now = at.now.as_millisecond();
        if now < self.valid_from_ms || now >= self.valid_until_ms {
            return Err(Ineligible::OutsideValidity);
        }
        let t = at.local.time();
        if !self.dayparts.is_empty() && !self.dayparts.iter().any(|d| d.contains(t)) {
            return Err(Ineligible::OutsideDaypart);
        }
        Ok(())
    }
}

/// Offers on screen during one second, with cumulative weights for sampling.
#[derive(Debug, Clone, Default)]
pub struct Pool {
    second: Option<i64>,
    regular: Vec<usize>,
    cumulative: Vec<u64>,
    content: Vec<usize>,
}

impl Pool {
    /// Whether this pool was built for the second `at` falls in.
    pub fn is_for(&self, at: &Moment) -> bool {
        self.second == Some(at.now.as_second())
    }
}

/// Weighted picks tried by sampling before falling back to a full scan.
const SAMPLES: usize = 32;

/// The offers of one catalogue that this touchpoint can show at all.
#[derive(Debug, Clone)]
pub struct EggEngine {
    rules: Vec<Rule>,
    touchpoint: Touchpoint,
    uses_segments: bool,
}

impl EggEngine {
    /// Keeps only the offers this touchpoint can show (scene, region, capabilities).
    pub fn new(offers: impl IntoIterator<Item = Offer>, touchpoint: Touchpoint) -> Self {
        let mut brands = BTreeSet::new();
        let mut rules: Vec<Rule> = offers
            .into_iter()
            .filter(|o| fits_touchpoint(o, &touchpoint))
            .map(|o| Rule::new(o, &mut brands))
            .collect();
        rules.shrink_to_fit();
        let uses_segments = rules.iter().any(|r| !r.segments.is_empty());
        Self {
            rules,
            touchpoint,
            uses_segments,
        }
    }

    pub fn rules(&self) -> &[Rule] {
        &self.rules
    }

    pub fn rule(&self, index: usize) -> &Rule {
        &self.rules[index]
    }

    pub fn touchpoint(&self) -> &Touchpoint {
        &self.touchpoint
    }

    /// Whether any offer targets shopper segments (else segment lookups can be skipped).
    pub fn uses_segments(&self) -> bool {
        self.uses_segments
    }

    /// The offers on screen at `at`.
    pub fn pool(&self, at: &Moment) -> Pool {
        let mut pool = Pool {
            second: Some(at.now.as_second()),
            ..Pool::default()
        };
        let mut total = 0u64;
        for (i, r) in self.rules.iter().enumerate() {
            if r.in_time(at).is_err() {
                continue;
            }
            if r.kind == OfferKind::Content {
                pool.content.push(i);
            } else {
                total += u64::from(r.weight);
                pool.regular.push(i);
                pool.cumulative.push(total);
            }
        }
        pool
    }

    /// Brands with an offer on screen at this moment, for impression and scan events.
    pub fn brands_in_rotation(&self, at: &Moment) -> BTreeSet<String> {
        let pool = self.pool(at);
        pool.regular
            .iter()
            .chain(&pool.content)
            .map(|&i| self.rules[i].brand.to_string())
            .collect()
    }

    /// Whether rule `index` may be handed to this shopper now.
    pub fn check(
        &self,
        index: usize,
        at: &Moment,
        shopper: &ShopperView,
        count: OfferCount,
        stock: &dyn StockView,
    ) -> Result<(), Ineligible> {
        let rule = &self.rules[index];
        rule.in_time(at)?;
        if !rule.segments.is_empty()
            && !rule
                .segments
                .iter()
                .any(|s| shopper.segments.iter().any(|t| **s == *t.as_str()))
        {
            return Err(Ineligible::Segment);
        }
        if let Some(sku) = &rule.sku
            && rule.kind.holds_stock()
            && stock.available(sku) == 0
        {
            return Err(Ineligible::OutOfStock);
        }
        let q = rule.quota;
        if q.total.is_some_and(|t| count.total >= t) {
            return Err(Ineligible::TotalQuota);
        }
        let today = at.today();
        if let Some(daily) = q.per_device_per_day {
            let used = count.day_count(today);
            if used >= daily {
                return Err(Ineligible::DailyQuota);
            }
            if rule.pacing == Pacing::Even {
                let hour = at.hour();
                let before = used - count.hour_count(today, hour);
                let curve = pacing::hourly_traffic(self.touchpoint.scene);
                if used >= pacing::allowed_through_hour(&curve, hour as usize, daily, before) {
                    return Err(Ineligible::Paced);
                }
            }
        }
        if q.per_shopper
            .is_some_and(|p| shopper.claimed.get(&*rule.id).copied().unwrap_or(0) >= p)
        {
            return Err(Ineligible::ShopperQuota);
        }
        Ok(())
    }

    /// Picks the egg for a shopper from `pool` (built for this moment). The same inputs and
    /// seed always give the same pick.
    ///
    /// Weighted sampling with rejection gives each eligible offer a chance proportional to
    /// its weight, and costs a few checks instead of one per offer; only when sampling keeps
    /// missing (few offers left eligible) does it scan the pool.
    pub fn choose(
        &self,
        at: &Moment,
        pool: &Pool,
        shopper: &ShopperView,
        book: &QuotaBook,
        stock: &dyn StockView,
        seed: u64,
    ) -> Pick {
        let ok = |i: usize| {
            self.check(i, at, shopper, book.get(&self.rules[i].id), stock)
                .is_ok()
        };
        let previous = |i: usize| shopper.previous_offer.as_deref() == Some(&*self.rules[i].id);
        let mut rng = rand::rngs::StdRng::seed_from_u64(seed);
        if let Some(&total) = pool.cumulative.last() {
            for _ in 0..SAMPLES {
                let roll = rng.random_range(0..total);
                let slot = pool.cumulative.partition_point(|&c| c <= roll);
                let i = pool.regular[slot];
                // "Every day different": yesterday's offer steps aside while others remain.
                if !previous(i) && ok(i) {
                    return Pick::Offer(i);
                }
            }
        }
        let mut eligible: Vec<usize> = pool.regular.iter().copied().filter(|&i| ok(i)).collect();
        if eligible.len() > 1 {
            eligible.retain(|&i| !previous(i));
        }
        if let Some(i) = self.weighted(&eligible, &mut rng) {
            return Pick::Offer(i);
        }
        let content: Vec<usize> = pool.content.iter().copied().filter(|&i| ok(i)).collect();
        Pick::Fallback(self.weighted(&content, &mut rng))
    }

    fn weighted(&self, among: &[usize], rng: &mut impl Rng) -> Option<usize> {
        let total: u64 = among.iter().map(|&i| u64::from(self.rules[i].weight)).sum();
        if total == 0 {
            return None;
        }
        let mut roll = rng.random_range(0..total);
        for &i in among {
            let w = u64::from(self.rules[i].weight);
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

#[cfg(test)]
mod tests;
