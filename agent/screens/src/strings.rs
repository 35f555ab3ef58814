//! Every fixed string the screens draw, as (Chinese, English) pairs.

/// The brand line on the attract screen.
pub const BRAND: (&str, &str) = ("开盲盒，领惊喜", "Crack an egg, find a surprise");

/// What the attract screen's banner says about the touchpoint.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum Banner {
    /// All well: invite a scan.
    Ready,
    Offline,
    SoldOut,
    StorageFull,
    UpdatingConfig,
}

impl Banner {
    pub const ALL: [Banner; 5] = [
        Banner::Ready,
        Banner::Offline,
        Banner::SoldOut,
        Banner::StorageFull,
        Banner::UpdatingConfig,
    ];

    /// The banner text, Chinese then English.
    pub fn text(self) -> (&'static str, &'static str) {
        match self {
            Banner::Ready => ("扫码开彩蛋", "Scan to crack your egg"),
            Banner::Offline => ("离线也能领", "Offline, still serving"),
            Banner::SoldOut => ("已售罄", "Sold out"),
            Banner::StorageFull => ("存储已满", "Storage full"),
            Banner::UpdatingConfig => ("正在更新配置", "Updating config"),
        }
    }
}

/// The pickup prompt, always shown above the entry.
pub const PICKUP_PROMPT: (&str, &str) = ("请输入取货码", "Enter your pickup code");

/// What happened to the last pickup code entered.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum PickupStatus {
    PickedUp,
    DispenseJam,
    WrongCode,
}

impl PickupStatus {
    pub const ALL: [PickupStatus; 3] = [
        PickupStatus::PickedUp,
        PickupStatus::DispenseJam,
        PickupStatus::WrongCode,
    ];

    /// The status text, Chinese then English.
    pub fn text(self) -> (&'static str, &'static str) {
        match self {
            PickupStatus::PickedUp => ("取货成功", "Picked up"),
            PickupStatus::DispenseJam => {
                ("出货故障，请联系工作人员", "Dispense jam, please ask staff")
            }
            PickupStatus::WrongCode => ("取货码不对，请再试一次", "Wrong code, please try again"),
        }
    }
}

/// Reveal footer for a coupon or sample redeemed at the counter.
pub const SHOW_AT_COUNTER: (&str, &str) = ("请在柜台出示此码", "Show this at the counter");

/// Reveal footer for an item held for pickup; `{}` is the hold end, e.g. `18:30`.
pub const HELD_UNTIL: (&str, &str) = ("取货码，保留至", "Pickup code, held until");

/// Every fixed (Chinese, English) pair.
pub fn pairs() -> Vec<(&'static str, &'static str)> {
    let mut pairs = vec![BRAND, PICKUP_PROMPT, SHOW_AT_COUNTER, HELD_UNTIL];
    pairs.extend(Banner::ALL.map(Banner::text));
    pairs.extend(PickupStatus::ALL.map(PickupStatus::text));
    pairs
}

/// Every fixed string, for glyph coverage checks.
pub fn all() -> Vec<&'static str> {
    pairs().into_iter().flat_map(|(zh, en)| [zh, en]).collect()
}
