//! The plots of `report.html`, drawn by `plotters` into inline SVG: the funnel per brand and
//! scene, claims per hour per scene, the data bank's stored events against what the devices
//! still hold, outbox depth per device, and the orders' fates. Each plot is a pure function of
//! the summary; empty data gives [`Plot::Empty`], never a panic.

use std::collections::BTreeMap;
use std::error::Error;

use plotters::coord::Shift;
use plotters::prelude::*;
use plotters::style::text_anchor::{HPos, Pos, VPos};

use caidan_cloud::databank::funnel::FunnelRow;

use crate::drive::{FaultLog, Sample};
use crate::summary::{DeviceSummary, Orders};

/// Lines drawn in the outbox-per-device plot at most; the deepest outboxes are kept.
pub const MAX_OUTBOX_LINES: usize = 20;

/// One plot as the page shows it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Plot {
    /// SVG documents (one per panel), ready to inline.
    Svg(Vec<String>),
    /// Nothing to draw: why, for the reader.
    Empty(String),
    /// plotters refused to draw: its error, for the reader.
    Failed(String),
}

type Drawn = Result<(), Box<dyn Error>>;

/// Width of a plot's drawing, legend aside; height of a full-width plot.
const W: u32 = 820;
const H: u32 = 380;

// Okabe-Ito: told apart with the common colour blindnesses.
const STAGES: [RGBColor; 4] = [
    RGBColor(0x99, 0x99, 0x99),
    RGBColor(0x00, 0x72, 0xB2),
    RGBColor(0xE6, 0x9F, 0x00),
    RGBColor(0x00, 0x9E, 0x73),
];
// tab20, so twenty device lines stay distinct.
const LINES: [RGBColor; 20] = [
    RGBColor(31, 119, 180),
    RGBColor(255, 127, 14),
    RGBColor(44, 160, 44),
    RGBColor(214, 39, 40),
    RGBColor(148, 103, 189),
    RGBColor(140, 86, 75),
    RGBColor(227, 119, 194),
    RGBColor(127, 127, 127),
    RGBColor(188, 189, 34),
    RGBColor(23, 190, 207),
    RGBColor(174, 199, 232),
    RGBColor(255, 187, 120),
    RGBColor(152, 223, 138),
    RGBColor(255, 152, 150),
    RGBColor(197, 176, 213),
    RGBColor(196, 156, 148),
    RGBColor(247, 182, 210),
    RGBColor(199, 199, 199),
    RGBColor(219, 219, 141),
    RGBColor(158, 218, 229),
];

fn line_color(i: usize) -> RGBColor {
    LINES[i % LINES.len()]
}

/// Draws one SVG of `size` with `draw`; plotters' errors come back as text.
fn svg(
    size: (u32, u32),
    draw: impl FnOnce(&DrawingArea<SVGBackend, Shift>) -> Drawn,
) -> Result<String, String> {
    let mut buf = String::new();
    {
        let root = SVGBackend::with_string(&mut buf, size).into_drawing_area();
        root.fill(&WHITE).map_err(|e| e.to_string())?;
        draw(&root).map_err(|e| e.to_string())?;
        root.present().map_err(|e| e.to_string())?;
    }
    Ok(buf)
}

fn one(r: Result<String, String>) -> Plot {
    match r {
        Ok(s) => Plot::Svg(vec![s]),
        Err(e) => Plot::Failed(e),
    }
}

/// `h:mm` since the start of the run.
pub fn hm(minute: u32) -> String {
    format!("{}:{:02}", minute / 60, minute % 60)
}

/// `h:mm` of a time axis counted in hours.
fn hours_hm(h: f64) -> String {
    hm((h * 60.0).round().max(0.0) as u32)
}

/// A y range with room above the largest value, never empty.
fn y_top(max: u64) -> u64 {
    (max + max / 10).max(max + 1)
}

/// An x range in hours over the sample minutes, never empty.
fn hours_range(minutes: impl Iterator<Item = u32> + Clone) -> std::ops::Range<f64> {
    let m0 = minutes.clone().min().unwrap_or(0);
    let m1 = minutes.max().unwrap_or(0).max(m0 + 1);
    f64::from(m0) / 60.0..f64::from(m1) / 60.0
}

/// How a legend entry is marked.
#[derive(Clone, Copy)]
enum Mark {
    Line,
    Bar,
}

/// The pixels a legend of `labels` takes beside a plot. The SVG backend cannot measure text;
/// this is a generous guess for a 12 px sans-serif.
fn legend_width<'a>(labels: impl Iterator<Item = &'a str>) -> u32 {
    let chars = labels.map(|l| l.chars().count()).max().unwrap_or(0) as u32;
    (40 + 7 * chars).clamp(90, 340)
}

/// A legend drawn on `area` from pixel `(x, y)` down. plotters clips its own legend to the
/// plotting area, where it hides lines; this one sits beside the plot.
fn side_legend(
    area: &DrawingArea<SVGBackend, Shift>,
    (x, y): (i32, i32),
    entries: &[(String, RGBColor, Mark)],
) -> Drawn {
    let font =
        TextStyle::from(("sans-serif", 12).into_font()).pos(Pos::new(HPos::Left, VPos::Center));
    for (k, (label, color, mark)) in entries.iter().enumerate() {
        let y = y + 6 + 16 * k as i32;
        match mark {
            Mark::Line => area.draw(&PathElement::new(
                [(x, y), (x + 18, y)],
                color.stroke_width(2),
            ))?,
            Mark::Bar => area.draw(&Rectangle::new(
                [(x + 4, y - 5), (x + 14, y + 5)],
                color.filled(),
            ))?,
        }
        area.draw(&Text::new(label.clone(), (x + 24, y), font.clone()))?;
    }
    Ok(())
}

/// Grouped bars: one group per category, one bar per series; `values[c][s]`.
fn grouped_bars(
    area: &DrawingArea<SVGBackend, Shift>,
    caption: &str,
    categories: &[String],
    series: &[(&str, RGBColor)],
    values: &[Vec<u64>],
    y_desc: &str,
) -> Drawn {
    let n = categories.len().max(1) as f64;
    let max = values.iter().flatten().copied().max().unwrap_or(0);
    let legend = series.len() > 1;
    let legend_w = if legend {
        legend_width(series.iter().map(|(n, _)| *n))
    } else {
        0
    };
    let mut chart = ChartBuilder::on(area)
        .caption(caption, ("sans-serif", 18))
        .margin(10)
        .margin_right(10 + legend_w)
        .x_label_area_size(36)
        .y_label_area_size(56)
        .build_cartesian_2d(0.0..n, 0u64..y_top(max))?;
    // The category names go under their groups, drawn here: plotters' own x labels fall on
    // round numbers of the axis, not on the groups' centres.
    chart
        .configure_mesh()
        .disable_x_mesh()
        .x_labels(0)
        .y_desc(y_desc)
        .draw()?;
    let label =
        TextStyle::from(("sans-serif", 12).into_font()).pos(Pos::new(HPos::Center, VPos::Top));
    for (i, c) in categories.iter().enumerate() {
        let (x, y) = chart.backend_coord(&(i as f64 + 0.5, 0));
        area.draw(&Text::new(c.clone(), (x, y + 8), label.clone()))?;
    }
    let k = series.len().max(1) as f64;
    let width = 0.8 / k;
    for (j, (_, color)) in series.iter().enumerate() {
        chart.draw_series(values.iter().enumerate().map(|(c, row)| {
            let x0 = c as f64 + 0.1 + j as f64 * width;
            let v = row.get(j).copied().unwrap_or(0);
            Rectangle::new([(x0, 0), (x0 + width * 0.92, v)], color.filled())
        }))?;
    }
    if legend {
        let (xs, ys) = chart.plotting_area().get_pixel_range();
        let entries: Vec<_> = series
            .iter()
            .map(|(n, c)| ((*n).to_owned(), *c, Mark::Bar))
            .collect();
        side_legend(area, (xs.end + 12, ys.start), &entries)?;
    }
    Ok(())
}

/// A funnel stage: its name, colour and figure in a row.
type Stage = (&'static str, RGBColor, fn(&FunnelRow) -> u64);

/// The funnel of each brand by scene (the "total" row left out of the bars), one panel per
/// brand. Awareness is drawn only when some row has it: the summary keeps impressions out.
pub fn funnel(funnel: &BTreeMap<String, Vec<FunnelRow>>) -> Plot {
    let any = |f: fn(&FunnelRow) -> u64| funnel.values().flatten().any(|r| f(r) > 0);
    let mut stages: Vec<Stage> = Vec::new();
    if any(|r| r.awareness) {
        stages.push(("awareness", STAGES[0], |r| r.awareness));
    }
    stages.push(("interest", STAGES[1], |r| r.interest));
    stages.push(("purchase", STAGES[2], |r| r.purchase));
    stages.push(("loyalty", STAGES[3], |r| r.loyalty));
    let series: Vec<(&str, RGBColor)> = stages.iter().map(|(n, c, _)| (*n, *c)).collect();
    let mut panels = Vec::new();
    for (brand, rows) in funnel {
        let rows: Vec<&FunnelRow> = rows.iter().filter(|r| r.key != "total").collect();
        if rows
            .iter()
            .all(|r| stages.iter().all(|(_, _, f)| f(r) == 0))
        {
            continue;
        }
        let categories: Vec<String> = rows.iter().map(|r| r.key.clone()).collect();
        let values: Vec<Vec<u64>> = rows
            .iter()
            .map(|r| stages.iter().map(|(_, _, f)| f(r)).collect())
            .collect();
        // Two panels a row on a wide page; a scene needs about 70 px for its name.
        let w = (160 + 70 * categories.len() as u32).clamp(400, 560);
        match svg((w, 300), |a| {
            grouped_bars(a, brand, &categories, &series, &values, "count")
        }) {
            Ok(s) => panels.push(s),
            Err(e) => return Plot::Failed(e),
        }
    }
    if panels.is_empty() {
        Plot::Empty("No brand has a funnel row with any shopper in it.".into())
    } else {
        Plot::Svg(panels)
    }
}

/// Claims per local hour (device time), one line per scene; an hour a scene has no row for
/// had no claim there and is drawn as zero.
pub fn claims_per_hour(cph: &BTreeMap<String, BTreeMap<String, i64>>) -> Plot {
    let parsed: Vec<(&String, BTreeMap<u32, i64>)> = cph
        .iter()
        .map(|(scene, hours)| {
            let pts = hours
                .iter()
                .filter_map(|(h, n)| Some((h.parse::<u32>().ok()?, *n)))
                .collect::<BTreeMap<_, _>>();
            (scene, pts)
        })
        .filter(|(_, pts)| !pts.is_empty())
        .collect();
    if parsed.is_empty() {
        return Plot::Empty("No claim reached the data bank.".into());
    }
    let hours = || parsed.iter().flat_map(|(_, p)| p.keys().copied());
    let h0 = hours().min().unwrap_or(0);
    let h1 = hours().max().unwrap_or(0);
    let lines: Vec<(&String, Vec<(u32, i64)>)> = parsed
        .iter()
        .map(|(scene, p)| {
            let pts = (h0..=h1)
                .map(|h| (h, p.get(&h).copied().unwrap_or(0)))
                .collect();
            (*scene, pts)
        })
        .collect();
    let max = lines
        .iter()
        .flat_map(|(_, p)| p.iter().map(|(_, n)| (*n).max(0) as u64))
        .max()
        .unwrap_or(0);
    let legend_w = legend_width(lines.iter().map(|(s, _)| s.as_str()));
    one(svg((W + legend_w, H), |a| {
        let mut chart = ChartBuilder::on(a)
            .caption("Claims per hour per scene", ("sans-serif", 18))
            .margin(10)
            .margin_right(20 + legend_w)
            .x_label_area_size(40)
            .y_label_area_size(56)
            .build_cartesian_2d(h0..h1.max(h0 + 1), 0i64..y_top(max) as i64)?;
        chart
            .configure_mesh()
            .x_desc("local hour on the device")
            .y_desc("claims")
            .x_labels(((h1 - h0) as usize + 1).min(24))
            .x_label_formatter(&|h| format!("{h:02}"))
            .draw()?;
        let mut entries = Vec::new();
        for (i, (scene, p)) in lines.iter().enumerate() {
            let c = line_color(i);
            chart
                .draw_series(LineSeries::new(p.iter().copied(), c.stroke_width(2)).point_size(3))?;
            entries.push(((*scene).clone(), c, Mark::Line));
        }
        let (xs, ys) = chart.plotting_area().get_pixel_range();
        side_legend(a, (xs.end + 22, ys.start), &entries)
    }))
}

/// Events not yet acknowledged in one sample: the sum of the readable outboxes.
pub fn pending(s: &Sample) -> i64 {
    s.outbox.iter().filter(|n| **n >= 0).sum()
}

/// Events the data bank stored (left axis) and events the devices still hold unacknowledged
/// (right axis) over the run, with the faults marked.
pub fn sync(samples: &[Sample], faults: &[FaultLog]) -> Plot {
    if samples.is_empty() {
        return Plot::Empty("No fleet samples were taken.".into());
    }
    let x = hours_range(samples.iter().map(|s| s.minute));
    let stored_max = samples
        .iter()
        .map(|s| s.stored.max(0) as u64)
        .max()
        .unwrap_or(0);
    let pending_max = samples.iter().map(|s| pending(s) as u64).max().unwrap_or(0);
    let red = RGBColor(0xD5, 0x5E, 0x00);
    let marked: Vec<f64> = faults
        .iter()
        .map(|f| f64::from(f.minute) / 60.0)
        .filter(|h| x.contains(h) || *h == x.end)
        .collect();
    let mut entries = vec![
        (
            "stored in the data bank (left axis)".to_owned(),
            STAGES[1],
            Mark::Line,
        ),
        (
            "waiting in outboxes, all devices (right axis)".to_owned(),
            STAGES[2],
            Mark::Line,
        ),
    ];
    if !marked.is_empty() {
        entries.push(("fault injected".to_owned(), red, Mark::Line));
    }
    let legend_w = legend_width(entries.iter().map(|e| e.0.as_str()));
    one(svg((W + legend_w, H), |a| {
        let mut chart = ChartBuilder::on(a)
            .caption(
                "Stored in the data bank vs. waiting on devices",
                ("sans-serif", 18),
            )
            .margin(10)
            .margin_right(10 + legend_w)
            .x_label_area_size(40)
            .y_label_area_size(64)
            .right_y_label_area_size(64)
            .build_cartesian_2d(x.clone(), 0i64..y_top(stored_max) as i64)?
            .set_secondary_coord(x.clone(), 0i64..y_top(pending_max) as i64);
        chart
            .configure_mesh()
            .x_desc("virtual time since start (h:mm)")
            .y_desc("events stored in the data bank")
            .x_label_formatter(&|h| hours_hm(*h))
            .draw()?;
        chart
            .configure_secondary_axes()
            .y_desc("events in outboxes, not yet acknowledged")
            .draw()?;
        for h in &marked {
            chart.draw_secondary_series(LineSeries::new(
                [(*h, 0), (*h, y_top(pending_max) as i64)],
                red.mix(0.5).stroke_width(1),
            ))?;
        }
        chart.draw_series(LineSeries::new(
            samples
                .iter()
                .map(|s| (f64::from(s.minute) / 60.0, s.stored)),
            STAGES[1].stroke_width(2),
        ))?;
        chart.draw_secondary_series(LineSeries::new(
            samples
                .iter()
                .map(|s| (f64::from(s.minute) / 60.0, pending(s))),
            STAGES[2].stroke_width(2),
        ))?;
        let (xs, ys) = chart.plotting_area().get_pixel_range();
        side_legend(a, (xs.end + 64 + 12, ys.start), &entries)
    }))
}

/// The devices whose outbox lines are drawn (indices into the sample's outbox), deepest
/// first, at most [`MAX_OUTBOX_LINES`]; and how many devices had a readable outbox at all.
pub fn outbox_lines(samples: &[Sample]) -> (Vec<usize>, usize) {
    let n = samples.iter().map(|s| s.outbox.len()).max().unwrap_or(0);
    let mut peak: Vec<(usize, i64)> = (0..n)
        .filter_map(|i| {
            samples
                .iter()
                .filter_map(|s| s.outbox.get(i).copied().filter(|v| *v >= 0))
                .max()
                .map(|m| (i, m))
        })
        .collect();
    let readable = peak.len();
    peak.sort_by(|a, b| b.1.cmp(&a.1).then(a.0.cmp(&b.0)));
    (
        peak.into_iter()
            .take(MAX_OUTBOX_LINES)
            .map(|(i, _)| i)
            .collect(),
        readable,
    )
}

fn device_name(devices: &[DeviceSummary], i: usize) -> String {
    devices
        .get(i)
        .map(|d| d.id.clone())
        .unwrap_or_else(|| format!("device #{i}"))
}

/// Outbox depth of each device over the run, one line per device (the deepest
/// [`MAX_OUTBOX_LINES`]); an unreadable sample breaks the line rather than dipping to zero.
pub fn outbox(samples: &[Sample], devices: &[DeviceSummary]) -> Plot {
    let (shown, _) = outbox_lines(samples);
    if shown.is_empty() {
        return Plot::Empty("No device's outbox was sampled.".into());
    }
    let x = hours_range(samples.iter().map(|s| s.minute));
    let max = shown
        .iter()
        .flat_map(|i| samples.iter().filter_map(|s| s.outbox.get(*i).copied()))
        .max()
        .unwrap_or(0)
        .max(0) as u64;
    let entries: Vec<(String, RGBColor, Mark)> = shown
        .iter()
        .enumerate()
        .map(|(k, i)| (device_name(devices, *i), line_color(k), Mark::Line))
        .collect();
    let legend_w = legend_width(entries.iter().map(|e| e.0.as_str()));
    // Tall enough for twenty legend entries.
    let h = H.max(120 + 16 * entries.len() as u32);
    one(svg((W + legend_w, h), |a| {
        let mut chart = ChartBuilder::on(a)
            .caption("Outbox depth per device", ("sans-serif", 18))
            .margin(10)
            .margin_right(10 + legend_w)
            .x_label_area_size(40)
            .y_label_area_size(56)
            .build_cartesian_2d(x, 0i64..y_top(max) as i64)?;
        chart
            .configure_mesh()
            .x_desc("virtual time since start (h:mm)")
            .y_desc("events not yet acknowledged")
            .x_label_formatter(&|h| hours_hm(*h))
            .draw()?;
        for (k, i) in shown.iter().enumerate() {
            // Runs of readable samples, each its own line.
            let mut runs: Vec<Vec<(f64, i64)>> = vec![Vec::new()];
            for s in samples {
                match s.outbox.get(*i).copied().filter(|v| *v >= 0) {
                    Some(v) => runs
                        .last_mut()
                        .expect("never empty")
                        .push((f64::from(s.minute) / 60.0, v)),
                    None if runs.last().is_some_and(|r| !r.is_empty()) => runs.push(Vec::new()),
                    None => {}
                }
            }
            for run in runs.into_iter().filter(|r| !r.is_empty()) {
                chart.draw_series(LineSeries::new(run, line_color(k).stroke_width(2)))?;
            }
        }
        let (xs, ys) = chart.plotting_area().get_pixel_range();
        side_legend(a, (xs.end + 12, ys.start), &entries)
    }))
}

/// The orders' fates as the data bank counted them.
pub fn orders(o: &Orders) -> Plot {
    let rows = [
        ("reserved", o.reserved),
        ("picked up", o.picked_up),
        ("expired", o.expired),
        ("rejected", o.rejected),
        ("dispense failed", o.dispense_failed),
    ];
    if rows.iter().all(|(_, n)| *n == 0) {
        return Plot::Empty("No order reached the data bank.".into());
    }
    let categories: Vec<String> = rows.iter().map(|(n, _)| (*n).to_owned()).collect();
    let values: Vec<Vec<u64>> = rows.iter().map(|(_, n)| vec![*n]).collect();
    one(svg((W, H), |a| {
        grouped_bars(
            a,
            "Orders by state",
            &categories,
            &[("orders", STAGES[1])],
            &values,
            "orders",
        )
    }))
}
