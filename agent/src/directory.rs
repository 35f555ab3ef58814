//! The store directory a device holds offline ("近场引导"): each brand's stores with their
//! place and opening hours, and the nearest one of a brand, open now or not, in the device's
//! time zone.

use std::collections::BTreeMap;

use caidan_sync::contract::Location;
use jiff::Zoned;
use jiff::civil::{Time, Weekday};
use serde::{Deserialize, Serialize};

use crate::catalogue::Text;

/// Most stores a device's directory may hold.
pub const MAX_STORES: usize = 2_000;

/// One brand store (`[[stores]]` in the agent config).
#[derive(Debug, Clone, Deserialize, PartialEq)]
#[serde(deny_unknown_fields)]
pub struct StoreEntry {
    pub brand: String,
    pub name: Text,
    #[serde(default)]
    pub address: Text,
    pub lat: f64,
    pub lon: f64,
    /// Opening hours per weekday (`mon` .. `sun`), local time: `"09:00-21:00"`, several
    /// ranges separated by commas, a range past midnight like `"18:00-02:00"`, or
    /// `"closed"`. A day left out is closed.
    #[serde(default)]
    pub hours: BTreeMap<String, String>,
}

/// One opening range; `end` before `start` runs past midnight.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
struct Range {
    start: Time,
    end: Time,
}

const DAYS: [(&str, Weekday); 7] = [
    ("mon", Weekday::Monday),
    ("tue", Weekday::Tuesday),
    ("wed", Weekday::Wednesday),
    ("thu", Weekday::Thursday),
    ("fri", Weekday::Friday),
    ("sat", Weekday::Saturday),
    ("sun", Weekday::Sunday),
];

fn parse_day(text: &str) -> Result<Vec<Range>, String> {
    let text = text.trim();
    if text.eq_ignore_ascii_case("closed") {
        return Ok(Vec::new());
    }
    text.split(',')
        .map(|r| {
            let (a, b) = r
                .trim()
                .split_once('-')
                .ok_or_else(|| format!("{r:?} is not HH:MM-HH:MM"))?;
            let time = |t: &str| {
                t.trim()
                    .parse::<Time>()
                    .map_err(|_| format!("{t:?} is not a time (HH:MM)"))
            };
            let range = Range {
                start: time(a)?,
                end: time(b)?,
            };
            if range.start == range.end {
                return Err(format!("{r:?} is empty"));
            }
            Ok(range)
        })
        .collect()
}

/// A store's weekly hours, parsed.
#[derive(Debug, Clone, Default, PartialEq)]
struct Week(BTreeMap<i8, Vec<Range>>);

impl Week {
    fn parse(hours: &BTreeMap<String, String>) -> Result<Week, String> {
        let mut week = BTreeMap::new();
        for (day, text) in hours {
            let (_, wd) = DAYS
                .iter()
                .find(|(name, _)| *name == day.as_str())
                .ok_or_else(|| format!("{day:?} is not a weekday (mon, tue, ... sun)"))?;
            week.insert(wd.to_monday_zero_offset(), parse_day(text)?);
        }
        Ok(Week(week))
    }

    fn ranges(&self, day: Weekday) -> &[Range] {
        self.0
            .get(&day.to_monday_zero_offset())
            .map_or(&[], |v| v.as_slice())
    }

    fn open_at(&self, day: Weekday, t: Time) -> bool {
        let today = self.ranges(day).iter().any(|r| {
            if r.start < r.end {
                r.start <= t && t < r.end
            } else {
                t >= r.start
            }
        });
        // Yesterday's range past midnight still runs in the small hours.
        let overnight = self
            .ranges(day.wrapping_sub(1))
            .iter()
            .any(|r| r.end < r.start && t < r.end);
        today || overnight
    }
}

impl StoreEntry {
    pub fn validate(&self) -> Result<(), String> {
        if !caidan_sync::contract::Ident::valid(&self.brand) {
            return Err(format!("brand {:?} is not a valid id", self.brand));
        }
        if self.name.zh.trim().is_empty() && self.name.en.trim().is_empty() {
            return Err("name needs Chinese or English text".into());
        }
        if [&self.name, &self.address]
            .iter()
            .any(|t| t.zh.len() > 200 || t.en.len() > 200)
        {
            return Err("name and address are at most 200 bytes each".into());
        }
        if Location::new(self.lat, self.lon).is_none() {
            return Err(format!(
                "lat {} / lon {} out of range (-90..90, -180..180)",
                self.lat, self.lon
            ));
        }
        Week::parse(&self.hours).map(|_| ())
    }

    fn location(&self) -> Location {
        Location {
            lat: self.lat,
            lon: self.lon,
        }
    }
}

/// The nearest store of a brand, as the reveal and pickup pages show it.
#[derive(Debug, Clone, Serialize, PartialEq, schemars::JsonSchema)]
pub struct NearestStore {
    pub brand: String,
    pub name: Text,
    pub address: Text,
    /// Straight-line distance from this touchpoint, in metres.
    pub distance_m: u32,
    pub open_now: bool,
    /// Today's hours as configured (`"closed"` when none).
    pub hours_today: String,
    pub location: Location,
}

/// The store directory, checked once at load.
#[derive(Debug, Clone, Default)]
pub struct Directory {
    stores: Vec<(StoreEntry, Week)>,
}

impl Directory {
    pub fn new(stores: &[StoreEntry]) -> Result<Directory, (usize, String)> {
        if stores.len() > MAX_STORES {
            return Err((MAX_STORES, format!("at most {MAX_STORES} stores")));
        }
        stores
            .iter()
            .enumerate()
            .map(|(i, s)| {
                s.validate().map_err(|e| (i, e))?;
                let week = Week::parse(&s.hours).map_err(|e| (i, e))?;
                Ok((s.clone(), week))
            })
            .collect::<Result<_, _>>()
            .map(|stores| Directory { stores })
    }

    pub fn is_empty(&self) -> bool {
        self.stores.is_empty()
    }

    /// The nearest store of `brand` from `here`, with whether it is open at `now` (local
    /// time of the device's zone).
    pub fn nearest(&self, brand: &str, here: Location, now: &Zoned) -> Option<NearestStore> {
        let (entry, week) = self
            .stores
            .iter()
            .filter(|(s, _)| s.brand == brand)
            .min_by(|a, b| {
                let (da, db) = (
                    here.distance_m(&a.0.location()),
                    here.distance_m(&b.0.location()),
                );
                da.total_cmp(&db)
            })?;
        let day = now.weekday();
        let key = DAYS[day.to_monday_zero_offset() as usize].0;
        Some(NearestStore {
            brand: entry.brand.clone(),
            name: entry.name.clone(),
            address: entry.address.clone(),
            distance_m: here.distance_m(&entry.location()).round() as u32,
            open_now: week.open_at(day, now.time()),
            hours_today: entry
                .hours
                .get(key)
                .cloned()
                .unwrap_or_else(|| "closed".into()),
            location: entry.location(),
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn store(brand: &str, name: &str, lat: f64, lon: f64, hours: &[(&str, &str)]) -> StoreEntry {
        StoreEntry {
            brand: brand.into(),
            name: Text {
                zh: name.into(),
                en: name.into(),
            },
            address: Text::default(),
            lat,
            lon,
            hours: hours
                .iter()
                .map(|(d, h)| (d.to_string(), h.to_string()))
                .collect(),
        }
    }

    fn at(text: &str) -> Zoned {
        format!("{text}[Asia/Shanghai]").parse().unwrap()
    }

    #[test]
    fn nearest_of_the_brand_with_its_hours() {
        let dir = Directory::new(&[
            store("lumi", "far", 31.30, 121.50, &[("tue", "09:00-21:00")]),
            store(
                "lumi",
                "near",
                31.235,
                121.48,
                &[("tue", "09:00-12:00, 13:00-21:00")],
            ),
            store("other", "nearest", 31.2305, 121.4738, &[]),
        ])
        .unwrap();
        let here = Location::new(31.2304, 121.4737).unwrap();
        // 2026-12-01 is a Tuesday.
        let n = dir.nearest("lumi", here, &at("2026-12-01T10:30")).unwrap();
        assert_eq!(n.name.en, "near");
        assert!(n.open_now);
        assert!((700..900).contains(&n.distance_m), "{}", n.distance_m);
        assert!(
            !dir.nearest("lumi", here, &at("2026-12-01T12:30"))
                .unwrap()
                .open_now
        );
        assert!(
            !dir.nearest("lumi", here, &at("2026-12-01T21:00"))
                .unwrap()
                .open_now
        );
        let wed = dir.nearest("lumi", here, &at("2026-12-02T10:30")).unwrap();
        assert!(!wed.open_now, "a day left out is closed");
        assert_eq!(wed.hours_today, "closed");
        assert!(
            dir.nearest("nobody", here, &at("2026-12-01T10:30"))
                .is_none()
        );
    }

    #[test]
    fn hours_past_midnight_run_into_the_next_day() {
        let dir = Directory::new(&[store("lumi", "bar", 31.0, 121.0, &[("fri", "18:00-02:00")])])
            .unwrap();
        let here = Location::new(31.0, 121.0).unwrap();
        // 2026-12-04 is a Friday.
        assert!(
            dir.nearest("lumi", here, &at("2026-12-04T23:00"))
                .unwrap()
                .open_now
        );
        assert!(
            dir.nearest("lumi", here, &at("2026-12-05T01:30"))
                .unwrap()
                .open_now
        );
        assert!(
            !dir.nearest("lumi", here, &at("2026-12-05T02:30"))
                .unwrap()
                .open_now
        );
        assert!(
            !dir.nearest("lumi", here, &at("2026-12-04T17:00"))
                .unwrap()
                .open_now
        );
    }

    #[test]
    fn bad_entries_are_named() {
        let bad = [
            store("lumi", "x", 95.0, 0.0, &[]),
            store("lumi", "x", 0.0, 0.0, &[("mon", "9am")]),
            store("lumi", "x", 0.0, 0.0, &[("monday", "09:00-10:00")]),
            store("lu mi", "x", 0.0, 0.0, &[]),
            store("lumi", "", 0.0, 0.0, &[]),
        ];
        for (i, s) in bad.iter().enumerate() {
            assert!(
                Directory::new(std::slice::from_ref(s)).is_err(),
                "entry {i}"
            );
        }
    }
}
