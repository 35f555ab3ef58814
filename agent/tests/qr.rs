//! The QR a screen shows decodes, with a real QR decoder (rqrr), to the egg link the
//! JSON endpoint gives for the same window.

mod common;

use common::{TestAgent, coupon_catalogue};
use serde_json::{Value, json};

/// Rasterises the SVG the agent serves (a white background and one path of squares, the
/// qrcode crate's output) into its side length and one dark flag per pixel.
fn rasterise(svg: &str) -> (usize, Vec<bool>) {
    let attr = |name: &str| -> usize {
        let at = svg.find(&format!("{name}=\"")).expect(name) + name.len() + 2;
        svg[at..].split('"').next().unwrap().parse().unwrap()
    };
    let size = attr("width");
    let path = svg
        .split(" d=\"")
        .nth(1)
        .expect("a path")
        .split('"')
        .next()
        .unwrap();
    // Each dark module is drawn as `M{x} {y}h{m}v{m}H{x}V{y}`.
    let module: usize = path
        .split('h')
        .nth(1)
        .and_then(|s| s.split('v').next())
        .and_then(|s| s.parse().ok())
        .expect("module size");
    let mut dark = vec![false; size * size];
    for cmd in path.split('M').skip(1) {
        let mut nums = cmd
            .split(|c: char| !c.is_ascii_digit())
            .filter(|s| !s.is_empty());
        let x: usize = nums.next().unwrap().parse().unwrap();
        let y: usize = nums.next().unwrap().parse().unwrap();
        for yy in y..(y + module).min(size) {
            for xx in x..(x + module).min(size) {
                dark[yy * size + xx] = true;
            }
        }
    }
    (size, dark)
}

#[tokio::test]
async fn the_served_qr_decodes_to_the_egg_link() {
    let agent = TestAgent::start(coupon_catalogue(json!({}))).await;
    let get = |path: &str| agent.http.get(agent.screen(path)).send();
    let svg = get("/api/v1/qr.svg").await.unwrap().text().await.unwrap();
    let qr: Value = get("/api/v1/qr").await.unwrap().json().await.unwrap();
    let (size, dark) = rasterise(&svg);
    let mut img = rqrr::PreparedImage::prepare_from_bitmap(size, size, |x, y| dark[y * size + x]);
    let grids = img.detect_grids();
    assert_eq!(grids.len(), 1, "one QR code in the SVG");
    let (_, content) = grids[0].decode().expect("the QR decodes");
    assert_eq!(content, qr["link"].as_str().unwrap());
    assert!(content.contains("/e/demo-cinema-01."), "{content}");
}
