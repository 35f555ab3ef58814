//! `report.html` in a real headless browser (Debian's chromium through playwright-core, both
//! installed by `.ci/test`): opened from disk with no network, it logs no error, every plot is
//! drawn inside its figure, and a device's screen PNG beside the page loads.

mod browser;

use caidan_sim::{report_example, report_html};
use serde_json::Value;

/// A 4 x 3 RGB PNG, the smallest honest stand-in for a screen.
const PNG: [u8; 73] = [
    0x89, 0x50, 0x4e, 0x47, 0x0d, 0x0a, 0x1a, 0x0a, 0x00, 0x00, 0x00, 0x0d, 0x49, 0x48, 0x44, 0x52,
    0x00, 0x00, 0x00, 0x04, 0x00, 0x00, 0x00, 0x03, 0x08, 0x02, 0x00, 0x00, 0x00, 0x3b, 0x96, 0x39,
    0x91, 0x00, 0x00, 0x00, 0x10, 0x49, 0x44, 0x41, 0x54, 0x78, 0xda, 0x63, 0x38, 0x21, 0x27, 0x07,
    0x47, 0x0c, 0x38, 0x39, 0x00, 0xf5, 0xc7, 0x0c, 0x31, 0xef, 0xea, 0x02, 0x16, 0x00, 0x00, 0x00,
    0x00, 0x49, 0x45, 0x4e, 0x44, 0xae, 0x42, 0x60, 0x82,
];

const FIGURES: [&str; 5] = [
    "plot-funnel",
    "plot-claims-per-hour",
    "plot-sync",
    "plot-outbox",
    "plot-orders",
];

#[test]
fn the_report_opens_in_a_browser_without_errors_and_with_its_plots() {
    let dir = tempfile::tempdir().unwrap();
    // More devices than the outbox plot draws lines for; one screen, written beside the page.
    let mut s = report_example::summary(25);
    for d in s.devices.iter_mut().skip(1) {
        d.screens.clear();
    }
    let screen = &s.devices[0].screens[0];
    std::fs::create_dir_all(dir.path().join("screens")).unwrap();
    std::fs::write(dir.path().join(screen), PNG).unwrap();
    let page = dir.path().join("report.html");
    std::fs::write(&page, report_html::render(&s)).unwrap();

    let seen = browser::open(&page);
    assert_eq!(seen["errors"], serde_json::json!([]), "{seen}");
    let figures: Vec<&str> = seen["figures"]
        .as_array()
        .unwrap()
        .iter()
        .filter_map(Value::as_str)
        .collect();
    for id in FIGURES {
        assert!(figures.contains(&id), "{id} not drawn: {seen}");
    }
    // The funnel has a panel per brand with data: two in the example.
    assert!(seen["svgs"].as_u64().unwrap() >= 6, "{seen}");
    assert_eq!(seen["imgs"], 1, "{seen}");
    assert_eq!(seen["imgs_loaded"], 1, "{seen}");
}
