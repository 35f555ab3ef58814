//! Rules a parsed profile must satisfy beyond its shape.

use std::collections::HashSet;
use std::hash::Hash;
use std::ops::RangeInclusive;

use crate::profile::{Capability, ColourDepth, Input, Orientation, Profile};
use crate::{ProfileError, Scene};

/// Largest display side accepted, in pixels.
pub const MAX_DISPLAY_SIDE: u32 = 8192;
/// Smallest storage budget: below this the outbox cannot ride out an outage.
pub const MIN_STORAGE_BYTES: u64 = 1024 * 1024;
/// Largest storage budget accepted (1 TiB); more is a typo, not a device.
pub const MAX_STORAGE_BYTES: u64 = 1024 * 1024 * 1024 * 1024;
/// Accepted memory budget, in MiB.
pub const MEMORY_MIB: RangeInclusive<u32> = 1..=65_536;
/// Accepted `sync.batch_max_events`.
pub const BATCH_EVENTS: RangeInclusive<u32> = 1..=10_000;
/// Accepted `sync.batch_max_bytes`: 1 KiB up to the MQTT maximum packet size.
pub const BATCH_BYTES: RangeInclusive<u32> = 1024..=268_435_455;
/// Longest linger accepted (10 minutes).
pub const MAX_LINGER_MS: u64 = 600_000;
/// Accepted ack timeout and backoff ceiling (1 second to 1 hour).
pub const TIMEOUT_MS: RangeInclusive<u64> = 1_000..=3_600_000;
/// On a metered link a batch must be allowed to linger at least this long.
pub const METERED_MIN_LINGER_MS: u64 = 5_000;
/// On a metered link a batch must be allowed to hold at least this many events.
pub const METERED_MIN_BATCH_EVENTS: u32 = 100;
/// Most slots or doors one controller drives.
pub const MAX_ACTUATOR_UNITS: u16 = 512;
/// Accepted `limits.max_connections`.
pub const CONNECTIONS: RangeInclusive<u64> = 8..=65_536;
/// Accepted `limits.claims_per_minute`.
pub const CLAIMS_PER_MINUTE: RangeInclusive<u64> = 1..=10_000;

/// Checks `profile`; `file` names it in errors, and when `stem` is given the name must equal it.
pub(crate) fn validate(
    profile: &Profile,
    file: &str,
    stem: Option<&str>,
) -> Result<(), ProfileError> {
    let c = Checker { file };
    c.identity(profile, stem)?;
    c.display(profile)?;
    c.hardware(profile)?;
    c.budgets(profile)?;
    c.link(profile)?;
    c.sync(profile)?;
    c.qr(profile)?;
    c.limits(profile)
}

/// Builds errors that name the file being checked.
struct Checker<'a> {
    file: &'a str,
}

impl Checker<'_> {
    fn qr(&self, p: &Profile) -> Result<(), ProfileError> {
        let (lo, hi) = p.qr_rotation_range();
        if lo == 0 || lo > hi || hi > 3600 {
            return Err(self.bad(
                "qr",
                format!("rotation range must be 1 <= min <= max <= 3600, got {lo}..={hi}"),
            ));
        }
        Ok(())
    }

    fn bad(&self, field: &str, reason: String) -> ProfileError {
        ProfileError::Invalid {
            file: self.file.to_owned(),
            field: field.to_owned(),
            reason,
        }
    }

    fn in_range(
        &self,
        field: &str,
        value: u64,
        range: RangeInclusive<u64>,
    ) -> Result<(), ProfileError> {
        if range.contains(&value) {
            Ok(())
        } else {
            Err(self.bad(
                field,
                format!(
                    "must be between {} and {}, got {value}",
                    range.start(),
                    range.end()
                ),
            ))
        }
    }

    fn identity(&self, profile: &Profile, stem: Option<&str>) -> Result<(), ProfileError> {
        let name = &profile.name;
        if name.is_empty() {
            return Err(self.bad("name", "must not be empty".into()));
        }
        if name.len() > 64
            || !name
                .bytes()
                .all(|b| b.is_ascii_lowercase() || b.is_ascii_digit() || b == b'-')
        {
            return Err(self.bad(
                "name",
                format!("{name:?}: use 1-64 characters of a-z, 0-9 and '-'"),
            ));
        }
        if let Some(stem) = stem
            && stem != name
        {
            return Err(self.bad(
                "name",
                format!("must match the file name {stem:?}, got {name:?}"),
            ));
        }
        if profile.description.trim().is_empty() {
            return Err(self.bad("description", "must not be empty".into()));
        }
        if profile.scenes.is_empty() {
            return Err(self.bad("scenes", "list at least one scene".into()));
        }
        first_duplicate(&profile.scenes).map_or(Ok(()), |s| {
            Err(self.bad("scenes", format!("{s} is listed twice")))
        })
    }

    fn display(&self, profile: &Profile) -> Result<(), ProfileError> {
        let d = &profile.display;
        self.in_range("display.width", d.width.into(), 1..=MAX_DISPLAY_SIDE.into())?;
        self.in_range(
            "display.height",
            d.height.into(),
            1..=MAX_DISPLAY_SIDE.into(),
        )?;
        let (w, h) = (d.width, d.height);
        match d.orientation {
            Orientation::Landscape if w < h => Err(self.bad(
                "display.orientation",
                format!("landscape needs width >= height, got {w}x{h}"),
            )),
            Orientation::Portrait if h < w => Err(self.bad(
                "display.orientation",
                format!("portrait needs height >= width, got {w}x{h}"),
            )),
            _ => Ok(()),
        }?;
        if let Some(n) = d.full_refresh_every {
            if d.depth != ColourDepth::Mono1 {
                return Err(self.bad(
                    "display.full_refresh_every",
                    format!("is for 1-bit e-paper panels, this one is {:?}", d.depth),
                ));
            }
            self.in_range("display.full_refresh_every", n.into(), 1..=1000)?;
        }
        if let Some(scan) = &profile.scan {
            self.in_range("scan.distance_mm", scan.distance_mm.into(), 50..=20_000)?;
            self.in_range(
                "scan.panel_width_mm",
                scan.panel_width_mm.into(),
                10..=10_000,
            )?;
            self.in_range(
                "scan.panel_height_mm",
                scan.panel_height_mm.into(),
                10..=10_000,
            )?;
        }
        Ok(())
    }

    fn hardware(&self, profile: &Profile) -> Result<(), ProfileError> {
        if let Some(i) = first_duplicate(&profile.inputs.kinds) {
            return Err(self.bad(
                "inputs.kinds",
                format!("{} is listed twice", Capability::from(i)),
            ));
        }
        let a = &profile.actuators;
        let max_units = u64::from(MAX_ACTUATOR_UNITS);
        self.in_range(
            "actuators.dispenser_slots",
            a.dispenser_slots.into(),
            0..=max_units,
        )?;
        self.in_range(
            "actuators.locker_doors",
            a.locker_doors.into(),
            0..=max_units,
        )?;
        if profile.serves(Scene::Vending) && a.dispenser_slots == 0 {
            return Err(self.bad(
                "actuators.dispenser_slots",
                "a vending profile dispenses, so it needs at least 1 slot, got 0".into(),
            ));
        }
        let hands_over = a.dispenser_slots > 0 || a.locker_doors > 0;
        if hands_over && !(profile.has_input(Input::Keypad) || profile.has_input(Input::Touch)) {
            return Err(self.bad(
                "inputs.kinds",
                "dispenser slots or locker doors need a keypad or touch input to enter pickup codes".into(),
            ));
        }
        Ok(())
    }

    fn budgets(&self, profile: &Profile) -> Result<(), ProfileError> {
        let s = &profile.storage;
        if !(MIN_STORAGE_BYTES..=MAX_STORAGE_BYTES).contains(&s.budget_bytes) {
            return Err(self.bad(
                "storage.budget_bytes",
                format!("must be between {MIN_STORAGE_BYTES} (1 MiB) and {MAX_STORAGE_BYTES} (1 TiB), got {}", s.budget_bytes),
            ));
        }
        self.in_range("storage.warn_at_percent", s.warn_at_percent.into(), 1..=99)?;
        let mib = profile.memory.budget_mib;
        self.in_range(
            "memory.budget_mib",
            mib.into(),
            u64::from(*MEMORY_MIB.start())..=u64::from(*MEMORY_MIB.end()),
        )?;
        let d = &profile.display;
        let frame = d.framebuffer_bytes();
        if frame > profile.memory_budget_bytes() / 2 {
            return Err(self.bad(
                "memory.budget_mib",
                format!(
                    "{mib} MiB is too small: a {}x{} {:?} framebuffer ({frame} bytes) must fit in half of it",
                    d.width, d.height, d.depth
                ),
            ));
        }
        Ok(())
    }

    fn link(&self, profile: &Profile) -> Result<(), ProfileError> {
        let link = &profile.link;
        match (link.kind.is_metered(), link.monthly_cap_mib) {
            (true, None) => Err(self.bad(
                "link.monthly_cap_mib",
                "required on a cellular_metered link".into(),
            )),
            (true, Some(0)) => {
                Err(self.bad("link.monthly_cap_mib", "must be at least 1, got 0".into()))
            }
            (false, Some(_)) => Err(self.bad(
                "link.monthly_cap_mib",
                format!(
                    "only applies to cellular_metered links, not {}",
                    link.kind.as_str()
                ),
            )),
            _ => Ok(()),
        }
    }

    fn sync(&self, profile: &Profile) -> Result<(), ProfileError> {
        let p = &profile.sync;
        let wide = |r: &RangeInclusive<u32>| u64::from(*r.start())..=u64::from(*r.end());
        self.in_range(
            "sync.batch_max_events",
            p.batch_max_events.into(),
            wide(&BATCH_EVENTS),
        )?;
        self.in_range(
            "sync.batch_max_bytes",
            p.batch_max_bytes.into(),
            wide(&BATCH_BYTES),
        )?;
        let storage = profile.storage.budget_bytes;
        if u64::from(p.batch_max_bytes) > storage {
            return Err(self.bad(
                "sync.batch_max_bytes",
                format!(
                    "must fit in the storage budget ({storage} bytes), got {}",
                    p.batch_max_bytes
                ),
            ));
        }
        self.in_range("sync.linger_ms", p.linger_ms, 0..=MAX_LINGER_MS)?;
        self.in_range("sync.ack_timeout_ms", p.ack_timeout_ms, TIMEOUT_MS)?;
        if p.ack_timeout_ms <= p.linger_ms {
            return Err(self.bad(
                "sync.ack_timeout_ms",
                format!(
                    "must be greater than sync.linger_ms ({}), got {}",
                    p.linger_ms, p.ack_timeout_ms
                ),
            ));
        }
        self.in_range("sync.max_in_flight", p.max_in_flight.into(), 1..=64)?;
        self.in_range(
            "sync.initial_backoff_ms",
            p.initial_backoff_ms,
            10..=*TIMEOUT_MS.end(),
        )?;
        self.in_range("sync.max_backoff_ms", p.max_backoff_ms, TIMEOUT_MS)?;
        if p.max_backoff_ms < p.initial_backoff_ms {
            return Err(self.bad(
                "sync.max_backoff_ms",
                format!(
                    "must be at least sync.initial_backoff_ms ({}), got {}",
                    p.initial_backoff_ms, p.max_backoff_ms
                ),
            ));
        }
        if profile.is_metered() {
            // Every batch pays MQTT and CloudEvents framing; on a paid link make batches big.
            if p.linger_ms < METERED_MIN_LINGER_MS {
                return Err(self.bad(
                    "sync.linger_ms",
                    format!("must be at least {METERED_MIN_LINGER_MS} on a cellular_metered link, got {}", p.linger_ms),
                ));
            }
            if p.batch_max_events < METERED_MIN_BATCH_EVENTS {
                return Err(self.bad(
                    "sync.batch_max_events",
                    format!(
                        "must be at least {METERED_MIN_BATCH_EVENTS} on a cellular_metered link, got {}",
                        p.batch_max_events
                    ),
                ));
            }
        }
        Ok(())
    }
}

/// The first item that appears twice, if any.
fn first_duplicate<T: Eq + Hash + Copy>(items: &[T]) -> Option<T> {
    let mut seen = HashSet::new();
    items.iter().copied().find(|item| !seen.insert(*item))
}

impl Checker<'_> {
    fn limits(&self, profile: &Profile) -> Result<(), ProfileError> {
        let l = &profile.limits;
        self.in_range(
            "limits.max_connections",
            u64::from(l.max_connections),
            CONNECTIONS,
        )?;
        self.in_range(
            "limits.max_connections_per_client",
            u64::from(l.max_connections_per_client),
            1..=u64::from(l.max_connections),
        )?;
        self.in_range(
            "limits.claims_per_minute",
            u64::from(l.claims_per_minute),
            CLAIMS_PER_MINUTE,
        )
    }
}
