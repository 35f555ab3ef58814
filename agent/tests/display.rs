//! `run --display fb:...`: the agent draws its own screens into a file-backed framebuffer
//! with the geometry of two profiles (an RGB565 vending panel with padded rows, a 1-bit
//! e-paper locker label mounted the other way round), the QR decodes to the current egg
//! link, and a token rotation rewrites the QR region and nothing else.

mod common;

use std::path::Path;
use std::time::{Duration, Instant};

use caidan_agent::config::{AgentConfig, DEMO_CONFIG};
use common::{TestAgent, coupon_catalogue, unlimited};
use serde_json::json;

fn config(profile: &str, scene: &str, rotation_secs: u32) -> AgentConfig {
    let text = DEMO_CONFIG
        .replace("catalogue = \"catalogue.json\"", "")
        .replace("scene = \"cinema\"", &format!("scene = \"{scene}\""))
        .replace(
            "profile = \"cinema-screen\"",
            &format!("profile = \"{profile}\""),
        )
        .replace(
            "rotation_secs = 30",
            &format!("rotation_secs = {rotation_secs}"),
        );
    unlimited(AgentConfig::from_toml(&text, "test.toml").unwrap())
}

/// A framebuffer file's pixels as grey levels, read through its row stride.
fn grey(bytes: &[u8], width: usize, height: usize, line: usize, bpp: usize) -> Vec<u8> {
    let mut out = Vec::with_capacity(width * height);
    for y in 0..height {
        let row = &bytes[y * line..];
        for x in 0..width {
            out.push(match bpp {
                1 => {
                    if row[x / 8] & (0x80 >> (x % 8)) != 0 {
                        0
                    } else {
                        255
                    }
                }
                16 => {
                    let v = u16::from_le_bytes([row[2 * x], row[2 * x + 1]]);
                    (((v >> 11) & 0x1f) << 3) as u8
                }
                _ => unreachable!(),
            });
        }
    }
    out
}

/// The QR payload the framebuffer shows, if one is there.
fn shown_link(file: &Path, width: usize, height: usize, line: usize, bpp: usize) -> Option<String> {
    let bytes = std::fs::read(file).unwrap();
    let g = grey(&bytes, width, height, line, bpp);
    let mut img =
        rqrr::PreparedImage::prepare_from_greyscale(width, height, |x, y| g[y * width + x]);
    let grids = img.detect_grids();
    grids.first().and_then(|g| g.decode().ok()).map(|(_, s)| s)
}

/// Waits until `f` holds, up to 20 s.
async fn eventually(what: &str, mut f: impl FnMut() -> bool) {
    let start = Instant::now();
    while !f() {
        assert!(
            start.elapsed() < Duration::from_secs(20),
            "timed out: {what}"
        );
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
}

fn link(agent: &TestAgent) -> String {
    format!("{}/e/{}", agent.running.base_url, agent.token())
}

fn refreshes(metrics: &str, kind: &str) -> u64 {
    let prefix = format!("caidan_screen_refreshes_total{{kind=\"{kind}\"}} ");
    metrics
        .lines()
        .find_map(|l| l.strip_prefix(&prefix))
        .map_or(0, |v| v.parse().unwrap())
}

#[tokio::test]
async fn an_rgb565_panel_with_padded_rows_shows_the_egg_link_and_a_rotation_redraws_only_the_qr() {
    let (w, h, line) = (480usize, 272usize, 1024usize);
    let fb_dir = tempfile::tempdir().unwrap();
    let fb = fb_dir.path().join("fb0");
    // Row padding the agent must never touch.
    std::fs::write(&fb, vec![0xab; line * h]).unwrap();
    let spec = format!(
        "fb:{}?size={w}x{h}&format=rgb565&line_length={line}",
        fb.display()
    );
    let agent = TestAgent::start_on(
        coupon_catalogue(json!({ "per_device_per_day": 100 })),
        config("vending-machine", "vending", 10),
        tempfile::tempdir().unwrap(),
        None,
        Some(&spec),
    )
    .await;
    let first = link(&agent);
    eventually("the first frame shows the egg link", || {
        shown_link(&fb, w, h, line, 16).as_deref() == Some(first.as_str())
    })
    .await;
    let bytes = std::fs::read(&fb).unwrap();
    for y in 0..h {
        assert!(
            bytes[y * line + 2 * w..(y + 1) * line]
                .iter()
                .all(|b| *b == 0xab),
            "row {y}: padding past the visible pixels was written"
        );
    }
    // Mark a pixel far from the QR (the bottom right corner): a QR-only redraw leaves it.
    let mark = (h - 1) * line + 2 * (w - 1);
    let mut marked = bytes.clone();
    marked[mark..mark + 2].copy_from_slice(&[0x34, 0x12]);
    std::fs::write(&fb, &marked).unwrap();

    agent.clock.advance_ms(10_000);
    let second = link(&agent);
    assert_ne!(first, second);
    eventually("the rotated token is shown", || {
        shown_link(&fb, w, h, line, 16).as_deref() == Some(second.as_str())
    })
    .await;
    let after = std::fs::read(&fb).unwrap();
    assert_eq!(
        &after[mark..mark + 2],
        &[0x34, 0x12],
        "only the QR region was redrawn"
    );
    let metrics = agent.metrics().await;
    assert_eq!(refreshes(&metrics, "full"), 1, "{metrics}");
    assert!(refreshes(&metrics, "partial") >= 1, "{metrics}");
    agent.stop().await;
}

#[tokio::test]
async fn an_e_paper_label_mounted_landscape_is_laid_out_for_its_real_geometry_and_reveals_a_claim()
{
    // The locker profile is a 480x800 portrait label; this framebuffer reports 800x480.
    let (w, h) = (800usize, 480usize);
    let line = w / 8;
    let fb_dir = tempfile::tempdir().unwrap();
    let fb = fb_dir.path().join("fb1");
    std::fs::write(&fb, vec![0u8; line * h]).unwrap();
    let spec = format!("fb:{}?size={w}x{h}&format=mono", fb.display());
    let agent = TestAgent::start_on(
        coupon_catalogue(json!({ "per_device_per_day": 100 })),
        config("community-locker", "community", 60),
        tempfile::tempdir().unwrap(),
        None,
        Some(&spec),
    )
    .await;
    let first = link(&agent);
    eventually("the label shows the egg link", || {
        shown_link(&fb, w, h, line, 1).as_deref() == Some(first.as_str())
    })
    .await;
    let (status, body) = agent.crack("phone-1").await;
    assert_eq!(status, 201, "{body}");
    eventually("the claim is revealed (no QR on the reveal)", || {
        shown_link(&fb, w, h, line, 1).is_none()
    })
    .await;
    agent
        .clock
        .advance_ms(caidan_agent::display::view::REVEAL_MS);
    let now = link(&agent);
    eventually("the attract screen returns", || {
        shown_link(&fb, w, h, line, 1).as_deref() == Some(now.as_str())
    })
    .await;
    // E-paper: the first draw flashes, the reveal and the way back are partial refreshes.
    let metrics = agent.metrics().await;
    assert_eq!(refreshes(&metrics, "full"), 1, "{metrics}");
    assert!(refreshes(&metrics, "partial") >= 2, "{metrics}");
    agent.stop().await;
}

#[tokio::test]
async fn a_display_that_cannot_be_drawn_on_fails_the_start_with_the_reason() {
    let fb_dir = tempfile::tempdir().unwrap();
    let fb = fb_dir.path().join("short");
    std::fs::write(&fb, vec![0u8; 100]).unwrap();
    let cfg = config("vending-machine", "vending", 10);
    let opts = caidan_agent::runtime::RunOptions {
        config: cfg,
        catalogue: None,
        data_dir: tempfile::tempdir().unwrap().keep(),
        listen: "127.0.0.1:0".parse().unwrap(),
        screen_listen: "127.0.0.1:0".parse().unwrap(),
        mqtt: None,
        display: Some(
            format!("fb:{}?size=480x272&format=rgb565", fb.display())
                .parse()
                .unwrap(),
        ),
    };
    let clock = caidan_sync::clock::SystemClock::shared();
    let err = match caidan_agent::runtime::start(opts, clock).await {
        Ok(_) => panic!("started on a file too small for the frame"),
        Err(e) => e.to_string(),
    };
    assert!(
        err.contains("the file holds 100 bytes, a 480x272 frame with 960-byte rows needs 261120"),
        "{err}"
    );
}
