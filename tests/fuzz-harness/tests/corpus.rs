//! Replays every saved fuzz input on stable: `fuzz/corpus/{target}/` (seeds, what the fuzzer
//! kept and every crash it found) and `fuzz/artifacts/{target}/` when present. A target with
//! no corpus fails, so a moved or emptied folder is noticed.

use std::path::{Path, PathBuf};

use caidan_fuzz_harness::{NOW_MS, TARGETS, signer, trusted};

fn fuzz_dir() -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("../../fuzz")
}

fn files(dir: &Path) -> Vec<PathBuf> {
    let Ok(entries) = std::fs::read_dir(dir) else {
        return Vec::new();
    };
    let mut out: Vec<PathBuf> = entries
        .map(|e| e.unwrap().path())
        .filter(|p| p.is_file())
        .collect();
    out.sort();
    out
}

#[test]
fn every_saved_input_replays_without_a_panic() {
    for (target, run) in TARGETS {
        let corpus = files(&fuzz_dir().join("corpus").join(target));
        assert!(
            !corpus.is_empty(),
            "fuzz/corpus/{target}/ is missing or empty"
        );
        let artifacts = files(&fuzz_dir().join("artifacts").join(target));
        for path in corpus.iter().chain(&artifacts) {
            let data = std::fs::read(path).unwrap();
            let outcome = std::panic::catch_unwind(|| run(&data));
            assert!(outcome.is_ok(), "{target}: {} panics", path.display());
        }
    }
}

fn seed(target: &str, name: &str) -> Vec<u8> {
    std::fs::read(fuzz_dir().join("corpus").join(target).join(name)).unwrap()
}

/// The seeds are real inputs, accepted whole, so the fuzzer starts past every parser's door.
#[test]
fn the_seeds_are_accepted() {
    use caidan_agent::http::bodies;
    use caidan_sync::contract::{ConfigAck, Envelope, Limits, OrderMessage, parse_batch};

    let token = String::from_utf8(seed("qr_token", "seed-current")).unwrap();
    assert!(signer().verify(&token, NOW_MS).is_ok());
    let batch = parse_batch(
        "demo",
        "d1",
        &seed("event_batch", "seed-two-scans"),
        Limits::default(),
    );
    assert_eq!(batch.unwrap().len(), 2);
    let env = Envelope::parse(&seed("config_envelope", "seed-signed")).unwrap();
    assert_eq!(env.verify(trusted()).unwrap().document.version, 3);
    assert!(ConfigAck::parse(&seed("config_envelope", "seed-ack")).is_ok());
    for name in ["seed-order", "seed-cancel", "seed-set-stock"] {
        let msg = OrderMessage::parse(&seed("order_message", name));
        assert!(msg.is_ok(), "{name}: {msg:?}");
    }
    assert!(bodies::egg(&seed("http_bodies", "seed-egg")[1..], signer(), NOW_MS).is_ok());
    assert!(bodies::pickup(&seed("http_bodies", "seed-pickup")[1..]).is_ok());
    let redeem = bodies::redeem(&seed("http_bodies", "seed-redeem")[1..]);
    assert!(redeem.is_ok(), "{redeem:?}");
    for name in ["seed-stock", "seed-count"] {
        let data = seed("http_bodies", name);
        let text = std::str::from_utf8(&data[1..]).unwrap();
        let (sku, body) = text.split_once('\n').unwrap();
        let update = bodies::stock(sku, body.as_bytes());
        assert!(update.is_ok(), "{name}: {update:?}");
    }
}
