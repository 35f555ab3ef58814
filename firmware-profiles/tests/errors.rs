//! Every kind of bad profile gives an error naming the file, the field and the reason.

use caidan_profiles::{Profile, ProfileError, bundled_source};

const FILE: &str = "bad-kiosk.toml";

fn kiosk() -> String {
    bundled_source("transit-kiosk").unwrap().to_owned()
}

fn edited(from: &str, to: &str) -> String {
    let text = kiosk();
    assert!(text.contains(from), "fixture lacks {from:?}");
    text.replacen(from, to, 1)
}

/// Parses `text`, expecting failure, and returns the message.
fn fail(text: &str) -> (ProfileError, String) {
    let err = Profile::from_toml_str(text, FILE).expect_err("should be rejected");
    let msg = err.to_string();
    assert!(
        msg.starts_with(&format!("{FILE}: ")),
        "no file name in {msg}"
    );
    (err, msg)
}

/// A rule violation: exact `file: field: reason` text.
fn invalid(text: &str, field: &str, reason: &str) {
    let (err, msg) = fail(text);
    assert_eq!(msg, format!("{FILE}: {field}: {reason}"));
    assert_eq!(err.field(), Some(field));
}

/// A shape error from the toml crate: names the file, a line/column, and `needles`.
fn parse_error(text: &str, needles: &[&str]) {
    let (err, msg) = fail(text);
    assert!(matches!(err, ProfileError::Parse { .. }), "{err:?}");
    assert!(msg.contains("line "), "no line in {msg}");
    for needle in needles {
        assert!(msg.contains(needle), "{needle:?} not in {msg}");
    }
}

#[test]
fn fixture_is_valid() {
    Profile::from_toml_str(&kiosk(), FILE).unwrap();
}

#[test]
fn unknown_fields_are_refused() {
    parse_error(
        &edited("[display]\n", "[display]\ncolour = \"red\"\n"),
        &["unknown field `colour`", "colour = \"red\""],
    );
    parse_error(
        &edited("[sync]\n", "[sync]\nlinger_secs = 3\n"),
        &["unknown field `linger_secs`"],
    );
    parse_error(
        &format!("vendor = \"acme\"\n{}", kiosk()),
        &["unknown field `vendor`"],
    );
    parse_error(
        &format!("{}\n[audio]\nvolume = 3\n", kiosk()),
        &["unknown field `audio`"],
    );
}

#[test]
fn bad_enum_values_are_refused() {
    parse_error(
        &edited("depth = \"rgb888\"", "depth = \"rgb666\""),
        &["unknown variant `rgb666`", "depth = \"rgb666\""],
    );
    parse_error(
        &edited("orientation = \"portrait\"", "orientation = \"upright\""),
        &["unknown variant `upright`"],
    );
    parse_error(
        &edited("\"barcode_scanner\"", "\"nfc\""),
        &["unknown variant `nfc`", "kinds"],
    );
    parse_error(
        &edited("type = \"cellular_metered\"", "type = \"lora\""),
        &["unknown variant `lora`", "type"],
    );
    parse_error(
        &edited("\"plaza\"", "\"mall\""),
        &["unknown variant `mall`", "scenes"],
    );
}

#[test]
fn missing_sections_and_fields_are_refused() {
    let without_sync = kiosk().split("[sync]").next().unwrap().to_owned();
    parse_error(&without_sync, &["missing field `sync`"]);
    parse_error(&edited("height = 1920\n", ""), &["missing field `height`"]);
    parse_error(
        &edited("budget_mib = 2048\n", ""),
        &["storage", "budget_mib"],
    );
    parse_error(
        &edited("budget_mib = 2048", "budget_mib = 2048\nbudget_bytes = 1"),
        &["not both"],
    );
    parse_error(&edited("width = 1080", "width = -1"), &["width = -1"]);
    parse_error("name = \"x\"\nscenes = [", &["line "]);
}

#[test]
fn display_limits() {
    invalid(
        &edited("width = 1080", "width = 0"),
        "display.width",
        "must be between 1 and 8192, got 0",
    );
    invalid(
        &edited("height = 1920", "height = 9000"),
        "display.height",
        "must be between 1 and 8192, got 9000",
    );
    invalid(
        &edited("orientation = \"portrait\"", "orientation = \"landscape\""),
        "display.orientation",
        "landscape needs width >= height, got 1080x1920",
    );
}

#[test]
fn identity_rules() {
    invalid(
        &edited("name = \"transit-kiosk\"", "name = \"\""),
        "name",
        "must not be empty",
    );
    invalid(
        &edited("name = \"transit-kiosk\"", "name = \"Transit Kiosk\""),
        "name",
        "\"Transit Kiosk\": use 1-64 characters of a-z, 0-9 and '-'",
    );
    invalid(
        &edited("scenes = [\"transit\", \"plaza\"]", "scenes = []"),
        "scenes",
        "list at least one scene",
    );
    invalid(
        &edited("\"plaza\"]", "\"transit\"]"),
        "scenes",
        "transit is listed twice",
    );
    invalid(
        &edited("description = \"", "description = \"  \" #"),
        "description",
        "must not be empty",
    );
}

#[test]
fn hardware_rules() {
    invalid(
        &edited(
            "scenes = [\"transit\", \"plaza\"]",
            "scenes = [\"transit\", \"vending\"]",
        ),
        "actuators.dispenser_slots",
        "a vending profile dispenses, so it needs at least 1 slot, got 0",
    );
    let slots = edited("dispenser_slots = 0", "dispenser_slots = 12");
    Profile::from_toml_str(&slots, FILE).unwrap();
    invalid(
        &slots.replace(
            "kinds = [\"touch\", \"barcode_scanner\"]",
            "kinds = [\"barcode_scanner\"]",
        ),
        "inputs.kinds",
        "dispenser slots or locker doors need a keypad or touch input to enter pickup codes",
    );
    invalid(
        &edited("\"barcode_scanner\"]", "\"touch\"]"),
        "inputs.kinds",
        "touch is listed twice",
    );
    invalid(
        &edited("dispenser_slots = 0", "dispenser_slots = 600"),
        "actuators.dispenser_slots",
        "must be between 0 and 512, got 600",
    );
}

#[test]
fn budget_rules() {
    invalid(
        &edited("budget_mib = 2048\n", "budget_bytes = 1000\n"),
        "storage.budget_bytes",
        "must be between 1048576 (1 MiB) and 1099511627776 (1 TiB), got 1000",
    );
    invalid(
        &edited("budget_mib = 2048\n", "budget_mib = 0\n"),
        "storage.budget_bytes",
        "must be between 1048576 (1 MiB) and 1099511627776 (1 TiB), got 0",
    );
    invalid(
        &edited("warn_at_percent = 80", "warn_at_percent = 100"),
        "storage.warn_at_percent",
        "must be between 1 and 99, got 100",
    );
    invalid(
        &edited("budget_mib = 512", "budget_mib = 0"),
        "memory.budget_mib",
        "must be between 1 and 65536, got 0",
    );
    invalid(
        &edited("budget_mib = 512", "budget_mib = 8"),
        "memory.budget_mib",
        "8 MiB is too small: a 1080x1920 Rgb888 framebuffer (6220800 bytes) must fit in half of it",
    );
}

#[test]
fn link_rules() {
    invalid(
        &edited("monthly_cap_mib = 2048\n", ""),
        "link.monthly_cap_mib",
        "required on a cellular_metered link",
    );
    invalid(
        &edited("type = \"cellular_metered\"", "type = \"wifi\""),
        "link.monthly_cap_mib",
        "only applies to cellular_metered links, not wifi",
    );
}

#[test]
fn sync_rules() {
    let sync = |from: &str, to: &str| edited(from, to);
    invalid(
        &sync("batch_max_events = 1000", "batch_max_events = 0"),
        "sync.batch_max_events",
        "must be between 1 and 10000, got 0",
    );
    invalid(
        &sync("batch_max_events = 1000", "batch_max_events = 10001"),
        "sync.batch_max_events",
        "must be between 1 and 10000, got 10001",
    );
    invalid(
        &sync("batch_max_bytes = 524288", "batch_max_bytes = 100"),
        "sync.batch_max_bytes",
        "must be between 1024 and 268435455, got 100",
    );
    invalid(
        &sync("ack_timeout_ms = 60000", "ack_timeout_ms = 20000"),
        "sync.ack_timeout_ms",
        "must be greater than sync.linger_ms (20000), got 20000",
    );
    invalid(
        &sync("ack_timeout_ms = 60000", "ack_timeout_ms = 0"),
        "sync.ack_timeout_ms",
        "must be between 1000 and 3600000, got 0",
    );
    invalid(
        &sync("linger_ms = 20000", "linger_ms = 700000"),
        "sync.linger_ms",
        "must be between 0 and 600000, got 700000",
    );
    invalid(
        &sync("max_in_flight = 2", "max_in_flight = 0"),
        "sync.max_in_flight",
        "must be between 1 and 64, got 0",
    );
    invalid(
        &sync("max_backoff_ms = 600000", "max_backoff_ms = 1500"),
        "sync.max_backoff_ms",
        "must be at least sync.initial_backoff_ms (2000), got 1500",
    );
    invalid(
        &sync("linger_ms = 20000", "linger_ms = 200"),
        "sync.linger_ms",
        "must be at least 5000 on a cellular_metered link, got 200",
    );
    invalid(
        &sync("batch_max_events = 1000", "batch_max_events = 20"),
        "sync.batch_max_events",
        "must be at least 100 on a cellular_metered link, got 20",
    );
    parse_error(
        &sync("linger_ms = 20000", "linger_ms = \"20s\""),
        &["linger_ms = \"20s\""],
    );
}

#[test]
fn limit_rules() {
    invalid(
        &edited("max_connections = 512", "max_connections = 2"),
        "limits.max_connections",
        "must be between 8 and 65536, got 2",
    );
    invalid(
        &edited(
            "max_connections_per_client = 128",
            "max_connections_per_client = 600",
        ),
        "limits.max_connections_per_client",
        "must be between 1 and 512, got 600",
    );
    invalid(
        &edited("claims_per_minute = 40", "claims_per_minute = 0"),
        "limits.claims_per_minute",
        "must be between 1 and 10000, got 0",
    );
    parse_error(&edited("[limits]", "[limit]"), &["limit"]);
}

#[test]
fn full_refresh_every_is_for_e_paper_and_bounded() {
    let colour = edited(
        "orientation = \"portrait\"",
        "orientation = \"portrait\"\nfull_refresh_every = 10",
    );
    assert!(
        fail(&colour)
            .1
            .contains("display.full_refresh_every: is for 1-bit e-paper panels"),
        "{}",
        fail(&colour).1
    );
    let locker = caidan_profiles::bundled_source("community-locker").unwrap();
    let zero = locker.replace("full_refresh_every = 10", "full_refresh_every = 0");
    let err = Profile::from_toml_str(&zero, "community-locker")
        .unwrap_err()
        .to_string();
    assert!(
        err.contains("display.full_refresh_every: must be between 1 and 1000, got 0"),
        "{err}"
    );
}
