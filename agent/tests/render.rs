//! `caidan-agent render`: every screen of every bundled profile draws to a PNG, and the
//! attract screens' QR decodes to exactly the egg link of the current window.

use std::process::Command;

use caidan_agent::config::AgentConfig;
use caidan_agent::display::egg_link;

fn now_ms() -> i64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .unwrap()
        .as_millis() as i64
}

/// The QR payload of a PNG (grey or RGB, 8-bit).
fn decode(path: &std::path::Path) -> String {
    let decoder = png::Decoder::new(std::io::BufReader::new(std::fs::File::open(path).unwrap()));
    let mut reader = decoder.read_info().unwrap();
    let mut buf = vec![0; reader.output_buffer_size().unwrap()];
    let info = reader.next_frame(&mut buf).unwrap();
    let channels = info.color_type.samples();
    let (w, h) = (info.width as usize, info.height as usize);
    let mut img =
        rqrr::PreparedImage::prepare_from_greyscale(w, h, |x, y| buf[(y * w + x) * channels]);
    let grids = img.detect_grids();
    assert_eq!(grids.len(), 1, "{}: one QR code", path.display());
    grids[0].decode().unwrap().1
}

fn render(profile: &str, screen: &str, out: &std::path::Path) -> std::process::Output {
    Command::new(env!("CARGO_BIN_EXE_caidan-agent"))
        .args(["render", "--profile", profile, "--screen", screen, "--out"])
        .arg(out)
        .output()
        .unwrap()
}

#[test]
fn every_profile_draws_every_screen_and_the_qr_is_the_current_egg_link() {
    let dir = tempfile::tempdir().unwrap();
    let cfg = AgentConfig::demo();
    for profile in caidan_profiles::bundled_names() {
        for screen in ["attract", "reveal", "pickup", "offline", "full"] {
            let out = dir.path().join(format!("{profile}-{screen}.png"));
            let before = egg_link(&cfg, now_ms());
            let run = render(profile, screen, &out);
            let after = egg_link(&cfg, now_ms());
            assert!(
                run.status.success(),
                "{profile} {screen}: {}",
                String::from_utf8_lossy(&run.stderr)
            );
            if matches!(screen, "attract" | "offline" | "full") {
                let link = decode(&out);
                assert!(
                    link == before || link == after,
                    "{profile} {screen}: {link} is not {before}"
                );
            }
        }
    }
    let bad = render("no-such-profile", "attract", &dir.path().join("x.png"));
    assert!(!bad.status.success());
    assert!(
        String::from_utf8_lossy(&bad.stderr).contains("cinema-screen"),
        "known profiles listed"
    );
}

#[test]
fn check_config_refuses_a_link_the_screen_cannot_show_as_a_qr() {
    let dir = tempfile::tempdir().unwrap();
    let demo = caidan_agent::config::DEMO_CONFIG
        .replace("catalogue = \"catalogue.json\"", "")
        .replace("scene = \"cinema\"", "scene = \"vending\"")
        .replace(
            "profile = \"cinema-screen\"",
            "profile = \"vending-machine\"",
        );
    let check = |text: &str| {
        let file = dir.path().join("agent.toml");
        std::fs::write(&file, text).unwrap();
        Command::new(env!("CARGO_BIN_EXE_caidan-agent"))
            .arg("check-config")
            .arg(&file)
            .output()
            .unwrap()
    };
    let ok = check(&demo);
    assert!(
        ok.status.success(),
        "{}",
        String::from_utf8_lossy(&ok.stderr)
    );
    // A public URL too long for any QR code is refused with the reason, not drawn.
    let long = demo.replace(
        "[http]",
        &format!(
            "[http]\npublic_url = \"https://touchpoints.example.com/{}\"",
            "x".repeat(3000)
        ),
    );
    let bad = check(&long);
    let err = String::from_utf8_lossy(&bad.stderr);
    assert!(!bad.status.success());
    assert!(
        err.contains("QR code") && err.contains("cannot be encoded"),
        "{err}"
    );
}
