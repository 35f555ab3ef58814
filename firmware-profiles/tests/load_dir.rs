//! Loading a folder of profiles from disk.

use std::fs;

use caidan_profiles::{ProfileError, bundled_source, load_dir};

fn write_profile(dir: &std::path::Path, stem: &str, from: &str) {
    let text = bundled_source(from)
        .unwrap()
        .replace(&format!("name = \"{from}\""), &format!("name = \"{stem}\""));
    fs::write(dir.join(format!("{stem}.toml")), text).unwrap();
}

#[test]
fn loads_toml_files_sorted_and_ignores_the_rest() {
    let dir = tempfile::tempdir().unwrap();
    write_profile(dir.path(), "zeta-kiosk", "transit-kiosk");
    write_profile(dir.path(), "alpha-locker", "community-locker");
    fs::write(dir.path().join("README.md"), "not a profile").unwrap();
    fs::create_dir(dir.path().join("drafts.toml")).unwrap();
    let names: Vec<String> = load_dir(dir.path())
        .unwrap()
        .into_iter()
        .map(|p| p.name)
        .collect();
    assert_eq!(names, ["alpha-locker", "zeta-kiosk"]);
}

#[test]
fn empty_dir_gives_no_profiles() {
    let dir = tempfile::tempdir().unwrap();
    assert!(load_dir(dir.path()).unwrap().is_empty());
}

#[test]
fn one_bad_file_fails_the_load_and_is_named() {
    let dir = tempfile::tempdir().unwrap();
    write_profile(dir.path(), "good", "cinema-screen");
    let bad = bundled_source("cinema-screen")
        .unwrap()
        .replace("width = 2160", "width = 0");
    fs::write(dir.path().join("cinema-screen.toml"), bad).unwrap();
    let err = load_dir(dir.path()).unwrap_err();
    let msg = err.to_string();
    assert!(
        msg.ends_with("cinema-screen.toml: display.width: must be between 1 and 8192, got 0"),
        "{msg}"
    );
    assert_eq!(err.field(), Some("display.width"));
}

#[test]
fn name_must_match_file_stem() {
    let dir = tempfile::tempdir().unwrap();
    fs::write(
        dir.path().join("lobby.toml"),
        bundled_source("cinema-screen").unwrap(),
    )
    .unwrap();
    let msg = load_dir(dir.path()).unwrap_err().to_string();
    assert!(
        msg.contains("lobby.toml: name: must match the file name \"lobby\", got \"cinema-screen\""),
        "{msg}"
    );
}

#[test]
fn missing_dir_is_a_read_error_naming_it() {
    let dir = tempfile::tempdir().unwrap();
    let missing = dir.path().join("nope");
    let err = load_dir(&missing).unwrap_err();
    assert!(matches!(err, ProfileError::Read { .. }), "{err:?}");
    assert!(err.to_string().contains("nope: cannot read"), "{err}");
}
