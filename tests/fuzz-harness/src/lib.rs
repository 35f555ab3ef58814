//! The bodies of the fuzz targets in `fuzz/`, one function a target, each taking the raw
//! input. The targets call them under libFuzzer on nightly; `tests/corpus.rs` replays the
//! saved corpus through the same functions on stable, so a crash once found stays fixed.
//!
//! Each function may panic only when an invariant of the code under test breaks; a refused
//! input is an `Err` and passes.

#![forbid(unsafe_code)]

use std::sync::OnceLock;

use caidan_agent::config::AgentConfig;
use caidan_agent::http::bodies;
use caidan_agent::token::TokenSigner;
use caidan_sync::contract::{ConfigAck, Envelope, Limits, OrderMessage, parse_batch};
use caidan_sync::keys::{PublicKey, TrustedKeys};

/// The instant every target checks tokens at; the seed tokens were issued at it.
pub const NOW_MS: i64 = 1_790_000_000_000;
/// The topic an event batch is checked against (the seeds' fleet and device).
pub const FLEET: &str = "demo";
pub const DEVICE: &str = "d1";
/// The demo operator's public key, the one the config seeds are signed with.
pub const OPERATOR_PUB: &str =
    include_str!("../../../cloud-sync/cloud/examples/fleet/operator.pub");

/// A target's body: takes libFuzzer's input, panics only on a broken invariant.
pub type Target = fn(&[u8]);

/// Every target by name, as `fuzz/fuzz_targets/{name}.rs` and `fuzz/corpus/{name}/` name it.
pub const TARGETS: &[(&str, Target)] = &[
    ("qr_token", qr_token),
    ("event_batch", event_batch),
    ("config_envelope", config_envelope),
    ("order_message", order_message),
    ("http_bodies", http_bodies),
];

/// The token signer of the demo config, as the screen and `POST /api/v1/eggs` build it.
pub fn signer() -> &'static TokenSigner {
    static SIGNER: OnceLock<TokenSigner> = OnceLock::new();
    SIGNER.get_or_init(|| {
        let cfg = AgentConfig::demo();
        TokenSigner::new(
            cfg.device.id.as_str(),
            cfg.qr.secret.clone(),
            cfg.qr.rotation_secs,
        )
    })
}

/// The keys a device trusts for config: the demo operator's.
pub fn trusted() -> &'static TrustedKeys {
    static KEYS: OnceLock<TrustedKeys> = OnceLock::new();
    KEYS.get_or_init(|| {
        let key: PublicKey = OPERATOR_PUB
            .trim()
            .parse()
            .expect("the demo operator key parses");
        TrustedKeys::new(vec![key])
    })
}

/// A scanned QR token (the path segment of `/e/{token}`).
pub fn qr_token(data: &[u8]) {
    let Ok(token) = std::str::from_utf8(data) else {
        return;
    };
    let s = signer();
    if let Ok(window) = s.verify(token, NOW_MS) {
        let current = s.window_at(NOW_MS);
        assert!(
            window == current || window == current - 1,
            "accepted a token of window {window} at window {current}"
        );
    }
}

/// An event batch as it arrives on `caidan/v1/demo/d/d1/events`.
pub fn event_batch(data: &[u8]) {
    if let Ok(events) = parse_batch(FLEET, DEVICE, data, Limits::default()) {
        assert!(!events.is_empty(), "an accepted batch holds an event");
        for r in &events {
            assert_eq!(r.event.device.as_str(), DEVICE);
        }
    }
}

/// A signed config envelope (and, read the same way, a device's config ack).
pub fn config_envelope(data: &[u8]) {
    if let Ok(env) = Envelope::parse(data) {
        let _ = env.digest();
        if let Ok(v) = env.verify(trusted()) {
            assert!(v.document.version > 0, "version 0 is refused");
            assert_eq!(v.digest, env.digest());
        }
    }
    if let Ok(ack) = ConfigAck::parse(data) {
        let again = ConfigAck::parse(&ack.to_json());
        assert!(again.is_ok(), "an ack we write reads back: {again:?}");
    }
}

/// A message on `.../d/{device}/orders`. What parses also reads back from its own JSON.
pub fn order_message(data: &[u8]) {
    if let Ok(msg) = OrderMessage::parse(data) {
        let again = OrderMessage::parse(&msg.to_json());
        assert_eq!(again.as_ref(), Ok(&msg), "an order message reads back");
    }
}

/// The agent's JSON request bodies; the first byte picks the route:
/// 0 `POST /api/v1/eggs`, 1 `POST /api/v1/redemptions`, 2 `POST /api/v1/pickups`,
/// 3 `POST /api/v1/inventory/{sku}` (the SKU is the first line of the rest, the body after).
pub fn http_bodies(data: &[u8]) {
    let Some((&which, body)) = data.split_first() else {
        return;
    };
    match which % 4 {
        0 => {
            let _ = bodies::egg(body, signer(), NOW_MS);
        }
        1 => {
            let _ = bodies::redeem(body);
        }
        2 => {
            let _ = bodies::pickup(body);
        }
        _ => {
            let (sku, body) = match body.iter().position(|&b| b == b'\n') {
                Some(i) => (&body[..i], &body[i + 1..]),
                None => (body, &[][..]),
            };
            let Ok(sku) = std::str::from_utf8(sku) else {
                return;
            };
            let _ = bodies::stock(sku, body);
        }
    }
}
