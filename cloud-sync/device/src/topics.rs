//! MQTT topic names of the wire contract (DESIGN.md, "Wire contract").

/// Root of every Caidan topic.
pub const ROOT: &str = "caidan/v1";

/// `caidan/v1/{fleet}/d/{device}/{leaf}`.
pub fn device_topic(fleet: &str, device: &str, leaf: &str) -> String {
    format!("{ROOT}/{fleet}/d/{device}/{leaf}")
}

/// Uplink event batches.
pub fn events(fleet: &str, device: &str) -> String {
    device_topic(fleet, device, "events")
}

/// Data bank acknowledgements.
pub fn ack(fleet: &str, device: &str) -> String {
    device_topic(fleet, device, "ack")
}

/// Retained device state; the last will marks it offline.
pub fn state(fleet: &str, device: &str) -> String {
    device_topic(fleet, device, "state")
}

/// Pickup orders, cancels and stock counts from the order system.
pub fn orders(fleet: &str, device: &str) -> String {
    device_topic(fleet, device, "orders")
}

/// A device's own config layer (retained).
pub fn device_config(fleet: &str, device: &str) -> String {
    device_topic(fleet, device, "config")
}

/// Where a staged rollout hands one device a fleet or group layer before the whole target
/// gets it (retained; operators only).
pub fn rollout_config(fleet: &str, device: &str) -> String {
    device_topic(fleet, device, "config/rollout")
}

/// A device's answers to config documents.
pub fn config_ack(fleet: &str, device: &str) -> String {
    device_topic(fleet, device, "config/ack")
}

/// A group's config layer (retained).
pub fn group_config(fleet: &str, group: &str) -> String {
    format!("{ROOT}/{fleet}/g/{group}/config")
}

/// The fleet's config layer (retained).
pub fn fleet_config(fleet: &str) -> String {
    format!("{ROOT}/{fleet}/config")
}

/// Extracts `(fleet, device, leaf)` from a device topic; `None` for anything else.
pub fn parse_device_topic(topic: &str) -> Option<(&str, &str, &str)> {
    let rest = topic.strip_prefix(ROOT)?.strip_prefix('/')?;
    let mut parts = rest.splitn(4, '/');
    let fleet = parts.next()?;
    if parts.next()? != "d" {
        return None;
    }
    let device = parts.next()?;
    let leaf = parts.next()?;
    if fleet.is_empty() || device.is_empty() || leaf.is_empty() {
        return None;
    }
    Some((fleet, device, leaf))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn round_trip() {
        let t = events("demo", "cinema-01");
        assert_eq!(t, "caidan/v1/demo/d/cinema-01/events");
        assert_eq!(
            parse_device_topic(&t),
            Some(("demo", "cinema-01", "events"))
        );
        assert_eq!(parse_device_topic("caidan/v1/demo/g/x/config"), None);
        assert_eq!(parse_device_topic("other/v1/demo/d/x/events"), None);
    }
}
