//! Golden images: every screen of every bundled profile, compared pixel by pixel with
//! `tests/golden/{profile}-{screen}.png`.
//!
//! `UPDATE_GOLDEN=1 cargo test -p caidan-screens --test golden` rewrites the golden files whose
//! pixels changed, adds missing ones and removes those no profile draws any more.

use std::collections::BTreeSet;
use std::fmt::Write as _;
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicUsize, Ordering::Relaxed};

use caidan_profiles::Profile;
use caidan_screens::samples;
use caidan_screens::{Screen, to_png};

/// Decoded pixels, three bytes (RGB) each whatever the PNG's colour type.
#[derive(PartialEq, Eq)]
struct Image {
    width: u32,
    height: u32,
    rgb: Vec<u8>,
}

impl Image {
    fn decode(bytes: &[u8]) -> Result<Image, png::DecodingError> {
        let mut decoder = png::Decoder::new(std::io::Cursor::new(bytes));
        decoder.set_transformations(png::Transformations::normalize_to_color8());
        let mut reader = decoder.read_info()?;
        let mut buf = vec![0; reader.output_buffer_size().expect("image fits in memory")];
        let info = reader.next_frame(&mut buf)?;
        let buf = &buf[..info.buffer_size()];
        let rgb = match info.color_type {
            png::ColorType::Rgb => buf.to_vec(),
            png::ColorType::Grayscale => buf.iter().flat_map(|&g| [g, g, g]).collect(),
            other => panic!("screens are grey or RGB, not {other:?}"),
        };
        Ok(Image {
            width: info.width,
            height: info.height,
            rgb,
        })
    }

    /// How many pixels differ from `other`, and the first that does (row by row).
    fn diff(&self, other: &Image) -> (usize, Option<(u32, u32)>) {
        let mut count = 0;
        let mut first = None;
        for (i, (a, b)) in self
            .rgb
            .chunks_exact(3)
            .zip(other.rgb.chunks_exact(3))
            .enumerate()
        {
            if a != b {
                count += 1;
                let i = i as u32;
                first.get_or_insert((i % self.width, i / self.width));
            }
        }
        (count, first)
    }
}

fn golden_dir() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/golden")
}

/// Where a mismatching image is written for a look: `target/tmp/golden/`.
fn actual_dir() -> PathBuf {
    Path::new(env!("CARGO_TARGET_TMPDIR")).join("golden")
}

/// Compares (or, when `update`, rewrites) one golden file; a mismatch comes back as a message.
fn check(profile: &Profile, name: &str, screen: Screen<'_>, update: bool) -> Option<String> {
    let file = format!("{}-{name}.png", profile.name);
    let golden_path = golden_dir().join(&file);
    let bytes = to_png(profile, screen).unwrap_or_else(|e| panic!("{file}: {e}"));
    let actual = Image::decode(&bytes).unwrap_or_else(|e| panic!("{file}: our own PNG: {e}"));
    let golden = match std::fs::read(&golden_path) {
        Ok(golden) => Some(
            Image::decode(&golden)
                .unwrap_or_else(|e| panic!("{}: not a PNG: {e}", golden_path.display())),
        ),
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => None,
        Err(e) => panic!("{}: {e}", golden_path.display()),
    };
    if golden.as_ref() == Some(&actual) {
        return None;
    }
    if update {
        std::fs::write(&golden_path, &bytes)
            .unwrap_or_else(|e| panic!("{}: {e}", golden_path.display()));
        eprintln!("updated {}", golden_path.display());
        return None;
    }
    let actual_path = actual_dir().join(&file);
    std::fs::create_dir_all(actual_dir()).expect("target/tmp is writable");
    std::fs::write(&actual_path, &bytes).expect("target/tmp is writable");
    let what = match golden {
        None => "missing".to_string(),
        Some(g) if (g.width, g.height) != (actual.width, actual.height) => format!(
            "golden is {}x{}, drawn {}x{}",
            g.width, g.height, actual.width, actual.height
        ),
        Some(g) => {
            let (count, first) = g.diff(&actual);
            let (x, y) = first.expect("images differ");
            format!("{count} pixels differ, the first at ({x}, {y})")
        }
    };
    Some(format!(
        "{}: {what}; drawn image at {}",
        golden_path.display(),
        actual_path.display()
    ))
}

#[test]
fn every_screen_of_every_bundled_profile_matches_its_golden_image() {
    let update = std::env::var("UPDATE_GOLDEN").as_deref() == Ok("1");
    if update {
        std::fs::create_dir_all(golden_dir()).expect("tests/golden is writable");
    }
    let profiles = caidan_profiles::bundled_all();
    assert!(!profiles.is_empty());
    // The cinema screen alone is 2160x3840: share the renders among the cores, largest first.
    let mut jobs: Vec<(&Profile, &str, Screen<'_>)> = profiles
        .iter()
        .flat_map(|p| samples::all().map(|(name, screen)| (p, name, screen)))
        .collect();
    jobs.sort_by_key(|(p, ..)| std::cmp::Reverse(p.display.width * p.display.height));
    let next = AtomicUsize::new(0);
    let threads = std::thread::available_parallelism().map_or(2, |n| n.get());
    let mut failures: Vec<String> = std::thread::scope(|s| {
        let workers: Vec<_> = (0..threads)
            .map(|_| {
                s.spawn(|| {
                    let mut failures = Vec::new();
                    while let Some(&(p, name, screen)) = jobs.get(next.fetch_add(1, Relaxed)) {
                        failures.extend(check(p, name, screen, update));
                    }
                    failures
                })
            })
            .collect();
        workers
            .into_iter()
            .flat_map(|w| w.join().expect("a check panicked"))
            .collect()
    });
    failures.sort();

    let expected: BTreeSet<String> = profiles
        .iter()
        .flat_map(|p| samples::all().map(|(name, _)| format!("{}-{name}.png", p.name)))
        .collect();
    let entries = std::fs::read_dir(golden_dir()).map_or_else(|_| Vec::new(), |d| d.collect());
    for entry in entries {
        let path = entry.expect("tests/golden is readable").path();
        let file = path.file_name().and_then(|f| f.to_str()).unwrap_or("");
        if !file.ends_with(".png") || expected.contains(file) {
            continue;
        }
        if update {
            std::fs::remove_file(&path).expect("tests/golden is writable");
            eprintln!("removed {}", path.display());
        } else {
            failures.push(format!("{}: no screen draws it", path.display()));
        }
    }

    if !failures.is_empty() {
        let mut msg = String::new();
        for f in &failures {
            writeln!(msg, "  {f}").unwrap();
        }
        panic!(
            "{} golden images do not match:\n{msg}Look at the drawn images; if the change is \
             intended, run `UPDATE_GOLDEN=1 cargo test -p caidan-screens --test golden` and \
             review the changed PNGs before committing.",
            failures.len()
        );
    }
}
