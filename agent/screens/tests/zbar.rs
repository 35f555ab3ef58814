//! A second QR decoder agrees with rqrr: zbarimg (Debian `zbar-tools`) reads every bundled
//! profile's attract screen back to its link.

use std::process::Command;

use caidan_screens::strings::{BRAND, Banner};
use caidan_screens::{Screen, to_png};

const LINK: &str =
    "http://192.168.100.200:8080/e/AAECAwQFBgcICQoLDA0ODxAREhMUFRYXGBkaGxwdHh8gISIjJCUmJygp";

#[test]
fn zbarimg_reads_every_bundled_attract_screen_back_to_its_link() {
    let dir = tempfile::tempdir().expect("a temp dir");
    for p in caidan_profiles::bundled_all() {
        // A different link per profile, so one cached or stale image cannot pass for another.
        let link = format!("{LINK}{}", p.name.len());
        let screen = Screen::Attract {
            link: &link,
            brand: BRAND,
            banner: Banner::Ready,
        };
        let path = dir.path().join(format!("{}-attract.png", p.name));
        std::fs::write(&path, to_png(&p, screen).expect("draws")).expect("temp dir is writable");
        let out = match Command::new("zbarimg")
            .args(["--quiet", "--raw"])
            .arg(&path)
            .output()
        {
            Ok(out) => out,
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => panic!(
                "zbarimg is not installed: install zbar-tools \
                 (apt-get install zbar-tools; .ci/test installs it when missing)"
            ),
            Err(e) => panic!("zbarimg: {e}"),
        };
        let stdout = String::from_utf8_lossy(&out.stdout);
        assert!(
            out.status.success(),
            "{}: zbarimg {}: {stdout}{}",
            p.name,
            out.status,
            String::from_utf8_lossy(&out.stderr)
        );
        // --raw prints each symbol found on a line of its own: exactly one, our link.
        assert_eq!(stdout, format!("{link}\n"), "{}", p.name);
    }
}
