//! The shipped profiles: all load, all validate, and together cover every scene.

use std::collections::BTreeSet;
use std::path::Path;

use caidan_profiles::{
    Capability, LinkKind, Profile, Scene, bundled, bundled_all, bundled_names, bundled_source,
    load_dir,
};

fn profiles_dir() -> &'static Path {
    Path::new(concat!(env!("CARGO_MANIFEST_DIR"), "/profiles"))
}

#[test]
fn every_bundled_profile_loads_and_validates() {
    let names = bundled_names();
    assert!(names.len() >= 6, "{names:?}");
    for name in &names {
        let profile = bundled(name).unwrap_or_else(|| panic!("{name} missing"));
        assert_eq!(&profile.name, name);
        profile.validate(name).unwrap();
        assert!(profile.storage_budget_bytes() >= 16 * 1024 * 1024, "{name}");
        assert!(
            profile.storage_budget_bytes() <= 2 * 1024 * 1024 * 1024,
            "{name}"
        );
        assert!((32..=512).contains(&profile.memory.budget_mib), "{name}");
    }
    assert!(bundled("no-such-profile").is_none());
    assert!(bundled_source("no-such-profile").is_none());
}

#[test]
fn bundled_list_matches_the_profiles_folder() {
    let on_disk: Vec<String> = load_dir(profiles_dir())
        .unwrap()
        .into_iter()
        .map(|p| p.name)
        .collect();
    let bundled: Vec<String> = bundled_names().into_iter().map(String::from).collect();
    assert_eq!(
        on_disk, bundled,
        "every file in profiles/ must be listed in bundled.rs, sorted"
    );
    for profile in bundled_all() {
        let file = profiles_dir().join(format!("{}.toml", profile.name));
        assert_eq!(Profile::load(&file).unwrap(), profile);
    }
}

#[test]
fn all_seven_scenes_are_served() {
    let served: BTreeSet<Scene> = bundled_all()
        .iter()
        .flat_map(|p| p.scenes.clone())
        .collect();
    let all: BTreeSet<Scene> = Scene::ALL.into_iter().collect();
    assert_eq!(served, all);
    for scene in Scene::ALL {
        assert!(bundled_all().iter().any(|p| p.serves(scene)), "{scene}");
    }
}

#[test]
fn capabilities_follow_hardware() {
    let caps = |name: &str| bundled(name).unwrap().capabilities();
    let vending = caps("vending-machine");
    assert!(vending.contains(&Capability::Dispenser) && vending.contains(&Capability::Keypad));
    let locker = caps("community-locker");
    assert!(locker.contains(&Capability::Locker) && !locker.contains(&Capability::Dispenser));
    let kiosk = caps("transit-kiosk");
    for c in [
        Capability::Touch,
        Capability::BarcodeScanner,
        Capability::Printer,
    ] {
        assert!(kiosk.contains(&c), "{c}");
    }
    assert!(caps("cinema-screen").is_empty());
    let names: Vec<String> = kiosk.iter().map(ToString::to_string).collect();
    assert_eq!(names, ["printer", "touch", "barcode_scanner"]);
}

#[test]
fn metered_links_batch_harder_than_unmetered_ones() {
    let all = bundled_all();
    let (metered, unmetered): (Vec<&Profile>, Vec<&Profile>) =
        all.iter().partition(|p| p.is_metered());
    assert!(!metered.is_empty() && !unmetered.is_empty());
    let max_linger = unmetered.iter().map(|p| p.sync.linger_ms).max().unwrap();
    let max_batch = unmetered
        .iter()
        .map(|p| p.sync.batch_max_events)
        .max()
        .unwrap();
    for p in metered {
        assert_eq!(p.link.kind, LinkKind::CellularMetered);
        assert!(p.sync.linger_ms > max_linger, "{}", p.name);
        assert!(p.sync.batch_max_events > max_batch, "{}", p.name);
    }
}

#[test]
fn serialised_profile_reads_back_identically() {
    for profile in bundled_all() {
        let text = profile.to_toml_string();
        assert_eq!(
            Profile::from_toml_str(&text, "round-trip").unwrap(),
            profile,
            "{text}"
        );
    }
}

#[test]
fn every_bundled_profile_has_a_scan_section_and_loads_without_one() {
    for name in bundled_names() {
        let text = bundled_source(name).unwrap();
        let with = Profile::from_toml_str(text, name).unwrap();
        assert!(with.scan.is_some(), "{name}");
        // A file written before [scan] existed: cut it and everything after it.
        let before = &text[..text.find("[scan]").unwrap()];
        let without = Profile::from_toml_str(before, name).unwrap();
        assert_eq!(without.scan, None, "{name}");
        assert_eq!(without.display, with.display, "{name}");
    }
}

#[test]
fn a_scan_distance_out_of_range_is_refused_naming_the_field() {
    let text = bundled_source("campus-screen").unwrap();
    let bad = text.replace("distance_mm = 2000", "distance_mm = 0");
    let err = Profile::from_toml_str(&bad, "campus-screen").unwrap_err();
    assert!(err.to_string().contains("scan.distance_mm"), "{err}");
}
