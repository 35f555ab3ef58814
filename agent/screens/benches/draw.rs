//! Drawing the attract screen into a file-backed framebuffer in each bundled profile's own
//! geometry and pixel format: a full frame, and the QR-only update a token rotation makes.
//! The comparison is the one against the other: a rotation should cost a fraction of a frame.
//!
//! `cargo bench -p caidan-screens --bench draw`. Prints the pixels each update writes first.

use std::hint::black_box;
use std::time::Duration;

use caidan_profiles::{ColourDepth, Profile};
use caidan_screens::fb::{Framebuffer, Geometry, PixelFormat};
use caidan_screens::refresh::Refresh;
use caidan_screens::strings::{BRAND, Banner};
use caidan_screens::{Drawing, Screen};
use criterion::{Criterion, criterion_group, criterion_main};

/// Two egg links of the same length, as a rotation makes: the QR keeps its version and size.
const LINKS: [&str; 2] = [
    "http://192.168.100.200:8080/e/AAECAwQFBgcICQoLDA0ODxAREhMUFRYXGBkaGxwdHh8gISIjJCUmJygp",
    "http://192.168.100.200:8080/e/KSgnJiUkIyIhIB8eHRwbGhkYFxYVFBMSERAPDg0MCwoJCAcGBQQDAgEA",
];

fn attract<'a>(profile: &Profile, link: &'a str) -> Drawing<'a> {
    Drawing::new(
        profile,
        Screen::Attract {
            link,
            brand: BRAND,
            banner: Banner::Ready,
        },
    )
    .expect("every bundled profile draws the attract screen")
}

/// The framebuffer a device of `profile` would have: its size, its depth, rows unpadded.
fn framebuffer(profile: &Profile, file: &tempfile::NamedTempFile) -> Framebuffer {
    let d = &profile.display;
    let format = match d.depth {
        ColourDepth::Mono1 => PixelFormat::MONO,
        ColourDepth::Rgb565 => PixelFormat::RGB565,
        ColourDepth::Rgb888 => PixelFormat::XRGB8888,
    };
    let geometry = Geometry {
        width: d.width,
        height: d.height,
        line_length: (d.width * format.bits_per_pixel()).div_ceil(8),
        format,
        first_byte: 0,
    };
    let handle = file.reopen().unwrap();
    handle.set_len(geometry.bytes()).unwrap();
    Framebuffer::new(handle, &file.path().display().to_string(), geometry).unwrap()
}

fn draw(c: &mut Criterion) {
    for profile in caidan_profiles::bundled_all() {
        let file = tempfile::NamedTempFile::new().unwrap();
        let mut fb = framebuffer(&profile, &file);
        let drawings = LINKS.map(|link| attract(&profile, link));
        let qr = drawings[0]
            .qr_region()
            .expect("the attract screen has a QR");
        assert_eq!(
            drawings[0].changes(&drawings[1]),
            Some(vec![qr]),
            "{}: a rotation changes the QR and nothing else",
            profile.name
        );
        let rotation = Refresh::Partial(vec![qr]);
        let full_px = fb.show(&drawings[0], &Refresh::Full).unwrap();
        let qr_px = fb.show(&drawings[1], &rotation).unwrap();
        let d = &profile.display;
        println!(
            "{}: {}x{} {:?}; full frame writes {full_px} px, QR-only {qr_px} px ({:.3} of the frame)",
            profile.name,
            d.width,
            d.height,
            d.depth,
            qr_px as f64 / full_px as f64
        );

        let mut group = c.benchmark_group(&profile.name);
        // A 4K frame takes tens of milliseconds; ten samples keep the whole run in minutes.
        group.sample_size(10);
        group.measurement_time(Duration::from_secs(5));
        group.bench_function("full attract frame", |b| {
            b.iter(|| fb.show(black_box(&drawings[0]), &Refresh::Full).unwrap())
        });
        let mut next = 0;
        group.bench_function("QR-only update", |b| {
            b.iter(|| {
                next = 1 - next;
                fb.show(black_box(&drawings[next]), &rotation).unwrap()
            })
        });
        group.finish();
    }
}

criterion_group!(benches, draw);
criterion_main!(benches);
