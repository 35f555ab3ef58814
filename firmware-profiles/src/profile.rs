//! The profile types: what one hardware class has and how its uplink should behave.

use std::collections::BTreeSet;
use std::fmt;

use serde::{Deserialize, Serialize};

use crate::Scene;
use crate::sync::SyncPolicy;

const MIB: u64 = 1024 * 1024;

/// One hardware class, as declared by a TOML file in `profiles/`.
///
/// Build one with [`Profile::from_toml_str`], [`Profile::load`] or [`crate::bundled`]; those
/// validate, so a `Profile` obtained through them is internally consistent.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Profile {
    /// Short id, equal to the file stem; device config refers to the profile by it.
    pub name: String,
    /// One line for operators.
    pub description: String,
    /// Scenes this hardware is deployed in.
    pub scenes: Vec<Scene>,
    pub display: DisplaySpec,
    pub inputs: Inputs,
    pub actuators: Actuators,
    pub storage: Storage,
    pub memory: Memory,
    pub link: Link,
    pub sync: SyncPolicy,
    pub limits: Limits,
    /// How fast this screen can show a new QR token.
    #[serde(default)]
    pub qr: QrRange,
    /// How far shoppers stand and how big the panel is; sizes the QR on screen.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub scan: Option<ScanSpec>,
}

/// The physical side of scanning: distance from the shopper's phone and panel size.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ScanSpec {
    /// Typical distance from the panel to a scanning phone, in millimetres.
    pub distance_mm: u32,
    /// Visible width of the panel as mounted, in millimetres.
    pub panel_width_mm: u32,
    /// Visible height of the panel as mounted, in millimetres.
    pub panel_height_mm: u32,
}

/// The QR rotation periods a screen can show, in seconds (an e-paper panel cannot
/// redraw every few seconds).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct QrRange {
    pub min_rotation_secs: u32,
    pub max_rotation_secs: u32,
}

impl Default for QrRange {
    fn default() -> Self {
        QrRange {
            min_rotation_secs: 1,
            max_rotation_secs: 3600,
        }
    }
}

/// What one touchpoint serves at most, so that one client cannot take it all.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Limits {
    /// HTTP connections open at once; more are closed as they arrive.
    pub max_connections: u32,
    /// HTTP connections open at once from one client address.
    pub max_connections_per_client: u32,
    /// New claims a minute this screen can plausibly see: the shoppers who can stand in
    /// front of it and scan. Enforced per QR window.
    pub claims_per_minute: u32,
}

/// The screen the egg QR and reveal are drawn on.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct DisplaySpec {
    pub width: u32,
    pub height: u32,
    pub depth: ColourDepth,
    pub orientation: Orientation,
    /// E-paper only: partial refreshes allowed between two full ones (a full refresh
    /// flashes the panel and clears the ghosting partial ones leave). None on panels that
    /// redraw any region freely.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub full_refresh_every: Option<u32>,
}

impl DisplaySpec {
    /// Bytes one full frame takes; checked against the memory budget.
    pub fn framebuffer_bytes(&self) -> u64 {
        (u64::from(self.width) * u64::from(self.height) * u64::from(self.depth.bits_per_pixel()))
            .div_ceil(8)
    }
}

/// Colour depth of a display.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum ColourDepth {
    /// 1-bit black and white, as on e-paper.
    Mono1,
    /// 16-bit colour, common on small embedded panels.
    Rgb565,
    /// 24-bit colour.
    Rgb888,
}

impl ColourDepth {
    /// Bits one pixel takes in the framebuffer.
    pub fn bits_per_pixel(self) -> u32 {
        match self {
            ColourDepth::Mono1 => 1,
            ColourDepth::Rgb565 => 16,
            ColourDepth::Rgb888 => 24,
        }
    }
}

/// How the panel is mounted; layouts differ between the two.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Orientation {
    Landscape,
    Portrait,
}

/// Input devices a shopper or staff member can use at the touchpoint.
#[derive(Debug, Clone, PartialEq, Eq, Default, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Inputs {
    /// Empty for a display-only screen, where the shopper's phone is the only input.
    pub kinds: Vec<Input>,
}

/// One kind of input device.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Input {
    Touch,
    BarcodeScanner,
    Keypad,
}

/// Things the touchpoint can physically do.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Actuators {
    /// Product slots a vending machine can dispense from; 0 when it dispenses nothing.
    pub dispenser_slots: u16,
    /// Whether a receipt/coupon printer is fitted.
    pub printer: bool,
    /// Pickup-locker doors the agent can unlock; 0 when there are none.
    #[serde(default)]
    pub locker_doors: u16,
}

/// Disk the agent may use (store, outbox, cached media).
///
/// Written in TOML as exactly one of `budget_bytes` or `budget_mib`; held in bytes.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(try_from = "StorageToml")]
pub struct Storage {
    /// The budget the outbox is bounded by.
    pub budget_bytes: u64,
    /// Fill level, in percent of the budget, at which the agent starts warning loudly.
    pub warn_at_percent: u8,
}

/// Default outbox warning level when a profile does not set one.
pub const DEFAULT_WARN_AT_PERCENT: u8 = 80;

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct StorageToml {
    budget_bytes: Option<u64>,
    budget_mib: Option<u64>,
    warn_at_percent: Option<u8>,
}

impl TryFrom<StorageToml> for Storage {
    type Error = String;

    fn try_from(raw: StorageToml) -> Result<Self, Self::Error> {
        let budget_bytes = match (raw.budget_bytes, raw.budget_mib) {
            (Some(bytes), None) => bytes,
            (None, Some(mib)) => mib.checked_mul(MIB).ok_or_else(|| {
                format!("storage.budget_mib: {mib} MiB does not fit in 64 bits of bytes")
            })?,
            (Some(_), Some(_)) => {
                return Err("storage: set budget_bytes or budget_mib, not both".into());
            }
            (None, None) => return Err("storage: missing budget_bytes or budget_mib".into()),
        };
        Ok(Storage {
            budget_bytes,
            warn_at_percent: raw.warn_at_percent.unwrap_or(DEFAULT_WARN_AT_PERCENT),
        })
    }
}

/// RAM the agent may use.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Memory {
    pub budget_mib: u32,
}

/// The uplink the touchpoint reaches the broker over.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Link {
    #[serde(rename = "type")]
    pub kind: LinkKind,
    /// Monthly data allowance of a metered link; required there, refused elsewhere.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub monthly_cap_mib: Option<u32>,
}

/// Kind of network link.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum LinkKind {
    Ethernet,
    Wifi,
    /// Cellular with per-byte cost: sync batches harder and lingers longer.
    CellularMetered,
}

impl LinkKind {
    /// Whether bytes on this link cost money.
    pub fn is_metered(self) -> bool {
        matches!(self, LinkKind::CellularMetered)
    }

    /// The snake_case name used in TOML.
    pub fn as_str(self) -> &'static str {
        match self {
            LinkKind::Ethernet => "ethernet",
            LinkKind::Wifi => "wifi",
            LinkKind::CellularMetered => "cellular_metered",
        }
    }
}

/// What a touchpoint can do, as offers require it (`requires = ["dispenser"]`).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Capability {
    Dispenser,
    Printer,
    Keypad,
    Touch,
    BarcodeScanner,
    Locker,
}

impl Capability {
    /// The snake_case name offers use.
    pub fn as_str(self) -> &'static str {
        match self {
            Capability::Dispenser => "dispenser",
            Capability::Printer => "printer",
            Capability::Keypad => "keypad",
            Capability::Touch => "touch",
            Capability::BarcodeScanner => "barcode_scanner",
            Capability::Locker => "locker",
        }
    }
}

impl fmt::Display for Capability {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

impl From<Input> for Capability {
    fn from(input: Input) -> Self {
        match input {
            Input::Touch => Capability::Touch,
            Input::BarcodeScanner => Capability::BarcodeScanner,
            Input::Keypad => Capability::Keypad,
        }
    }
}

impl Profile {
    /// What offers may require of this hardware: its inputs and its actuators.
    pub fn capabilities(&self) -> BTreeSet<Capability> {
        let mut caps: BTreeSet<Capability> = self
            .inputs
            .kinds
            .iter()
            .copied()
            .map(Capability::from)
            .collect();
        if self.actuators.dispenser_slots > 0 {
            caps.insert(Capability::Dispenser);
        }
        if self.actuators.printer {
            caps.insert(Capability::Printer);
        }
        if self.actuators.locker_doors > 0 {
            caps.insert(Capability::Locker);
        }
        caps
    }

    /// Whether this profile can do `capability`.
    pub fn has(&self, capability: Capability) -> bool {
        self.capabilities().contains(&capability)
    }

    /// Whether a device of this class may be configured for `scene`.
    pub fn serves(&self, scene: Scene) -> bool {
        self.scenes.contains(&scene)
    }

    /// Whether this class has `input`.
    pub fn has_input(&self, input: Input) -> bool {
        self.inputs.kinds.contains(&input)
    }

    /// The QR rotation periods this screen can show, in seconds, inclusive.
    pub fn qr_rotation_range(&self) -> (u32, u32) {
        (self.qr.min_rotation_secs, self.qr.max_rotation_secs)
    }

    /// The storage budget in bytes; the outbox must stay under it.
    pub fn storage_budget_bytes(&self) -> u64 {
        self.storage.budget_bytes
    }

    /// Outbox fill level, in bytes, at which the agent warns.
    pub fn storage_warn_bytes(&self) -> u64 {
        self.storage.budget_bytes / 100 * u64::from(self.storage.warn_at_percent)
    }

    /// The memory budget in bytes.
    pub fn memory_budget_bytes(&self) -> u64 {
        u64::from(self.memory.budget_mib) * MIB
    }

    /// Whether the uplink costs per byte.
    pub fn is_metered(&self) -> bool {
        self.link.kind.is_metered()
    }

    /// The profile as TOML, in the same shape it was read from.
    pub fn to_toml_string(&self) -> String {
        toml::to_string(self).expect("a profile always serialises")
    }
}
