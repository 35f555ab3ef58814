//! `report.html`: one self-contained page (no network needed, no script, no external style or
//! font) with the run's verdicts, faults, fleet and devices, the plots as inline SVG (drawn
//! in [`crate::report_plots`]) and each device's screens, whose PNGs sit beside the page.

use std::fmt::Write as _;

use crate::report_plots::{self as plots, Plot, hm};
use crate::summary::Summary;

/// Text made safe for HTML content and attribute values.
pub fn esc(s: &str) -> String {
    let mut o = String::with_capacity(s.len());
    for c in s.chars() {
        match c {
            '&' => o.push_str("&amp;"),
            '<' => o.push_str("&lt;"),
            '>' => o.push_str("&gt;"),
            '"' => o.push_str("&quot;"),
            '\'' => o.push_str("&#39;"),
            c => o.push(c),
        }
    }
    o
}

const STYLE: &str = "
body{font-family:system-ui,sans-serif;margin:1.5rem auto;max-width:1200px;padding:0 1rem;color:#222}
h1{margin-bottom:.2rem}h2{border-bottom:1px solid #ccc;padding-bottom:.2rem;margin-top:2rem}
table{border-collapse:collapse;margin:.5rem 0}th,td{border:1px solid #ccc;padding:.25rem .5rem;text-align:left;vertical-align:top}
td.n{text-align:right;font-variant-numeric:tabular-nums}
.PASS{color:#05662f;font-weight:bold}.FAIL{color:#b00020;font-weight:bold}
.banner{padding:.5rem 1rem;border-radius:4px;display:inline-block;margin:.5rem 0}
.banner.ok{background:#e3f5e9}.banner.bad{background:#fde7ea}
dl.meta{display:grid;grid-template-columns:max-content auto;gap:.1rem 1rem}dl.meta dt{font-weight:bold}dl.meta dd{margin:0}
figure{margin:1rem 0;border:1px solid #ddd;padding:.5rem}figcaption{font-size:.9rem;color:#444;margin-top:.3rem}
figure svg{max-width:100%;height:auto}.panels{display:flex;flex-wrap:wrap;gap:.5rem}
.empty{color:#666;font-style:italic}
.screens{display:flex;flex-wrap:wrap;gap:1rem;align-items:flex-start}
.screens figure{border:none;padding:0;margin:0}.screens img{border:1px solid #999;max-width:320px;height:auto}
ul.breaches{margin:.2rem 0;padding-left:1.2rem}
";

fn row(h: &mut String, cells: &[String]) {
    h.push_str("<tr>");
    for c in cells {
        h.push_str(c);
    }
    h.push_str("</tr>");
}

fn td(s: &str) -> String {
    format!("<td>{}</td>", esc(s))
}

fn tn(n: impl std::fmt::Display) -> String {
    format!("<td class=\"n\">{n}</td>")
}

fn th(h: &mut String, names: &[&str]) {
    h.push_str("<thead><tr>");
    for n in names {
        let _ = write!(h, "<th>{}</th>", esc(n));
    }
    h.push_str("</tr></thead>");
}

/// `+h:mm`, and the UTC time when the start parses.
fn when(s: &Summary, minute: u32) -> String {
    match s.start.parse::<jiff::Timestamp>() {
        Ok(t) => match t.checked_add(jiff::SignedDuration::from_mins(i64::from(minute))) {
            Ok(at) => format!("+{} ({})", hm(minute), at.strftime("%Y-%m-%d %H:%M UTC")),
            Err(_) => format!("+{}", hm(minute)),
        },
        Err(_) => format!("+{}", hm(minute)),
    }
}

fn figure(h: &mut String, id: &str, plot: &Plot, caption: &str) {
    let _ = write!(h, "<figure id=\"{}\">", esc(id));
    match plot {
        Plot::Svg(panels) => {
            h.push_str("<div class=\"panels\">");
            for p in panels {
                h.push_str(p);
            }
            h.push_str("</div>");
        }
        Plot::Empty(why) => {
            let _ = write!(h, "<p class=\"empty\">{}</p>", esc(why));
        }
        Plot::Failed(e) => {
            let _ = write!(
                h,
                "<p class=\"empty\">The plot could not be drawn: {}</p>",
                esc(e)
            );
        }
    }
    let _ = write!(h, "<figcaption>{}</figcaption></figure>", esc(caption));
}

fn header(h: &mut String, s: &Summary) {
    let _ = write!(h, "<h1>Caidan simulation: {}</h1>", esc(&s.scenario));
    h.push_str("<dl class=\"meta\">");
    let samples = s.timing.samples.len();
    for (k, v) in [
        ("Scenario", s.scenario.clone()),
        ("Seed", s.seed.to_string()),
        ("Start", s.start.clone()),
        ("Hours", s.hours.to_string()),
        ("Devices", s.devices.len().to_string()),
        (
            "Wall time",
            format!(
                "{:.1} s ({:.0}x virtual speed over the simulated span), {:.0} stored events/s, peak RSS {} MiB (timing depends on this machine)",
                s.timing.wall_secs,
                s.timing.achieved_speed,
                s.timing.events_per_sec,
                s.timing.peak_rss_kib / 1024
            ),
        ),
        ("Fleet samples", samples.to_string()),
    ] {
        let _ = write!(h, "<dt>{}</dt><dd>{}</dd>", esc(k), esc(&v));
    }
    h.push_str("</dl>");
    let failed = s.verdicts.iter().filter(|v| !v.holds).count();
    if s.verdicts.is_empty() {
        h.push_str("<p class=\"banner bad\">No promise was checked.</p>");
    } else if failed == 0 {
        let _ = write!(
            h,
            "<p class=\"banner ok\"><span class=\"PASS\">PASS</span>: all {} promises hold.</p>",
            s.verdicts.len()
        );
    } else {
        let _ = write!(
            h,
            "<p class=\"banner bad\"><span class=\"FAIL\">FAIL</span>: {failed} of {} promises breached.</p>",
            s.verdicts.len()
        );
    }
}

fn verdicts(h: &mut String, s: &Summary) {
    h.push_str("<h2 id=\"verdicts\">Verdicts</h2>");
    if s.verdicts.is_empty() {
        h.push_str("<p class=\"empty\">No promise was checked.</p>");
        return;
    }
    h.push_str("<table class=\"verdicts\">");
    th(h, &["Promise", "Result", "Checked", "Breaches"]);
    h.push_str("<tbody>");
    for v in &s.verdicts {
        let result = if v.holds { "PASS" } else { "FAIL" };
        let breaches = if v.breaches.is_empty() {
            "<td>none</td>".to_owned()
        } else {
            let mut b = String::from("<td><ul class=\"breaches\">");
            for x in &v.breaches {
                let _ = write!(b, "<li>{}</li>", esc(x));
            }
            b.push_str("</ul></td>");
            b
        };
        row(
            h,
            &[
                td(&v.promise),
                format!("<td class=\"{result}\">{result}</td>"),
                td(&v.checked),
                breaches,
            ],
        );
    }
    h.push_str("</tbody></table>");
}

fn faults(h: &mut String, s: &Summary) {
    h.push_str("<h2 id=\"faults\">Fault timeline</h2>");
    if s.faults.is_empty() {
        h.push_str("<p class=\"empty\">No fault was injected.</p>");
        return;
    }
    h.push_str("<table class=\"faults\">");
    th(h, &["When", "What"]);
    h.push_str("<tbody>");
    for f in &s.faults {
        row(h, &[td(&when(s, f.minute)), td(&f.what)]);
    }
    h.push_str("</tbody></table>");
}

fn plots_section(h: &mut String, s: &Summary) {
    h.push_str("<h2 id=\"plots\">Plots</h2>");
    figure(
        h,
        "plot-funnel",
        &plots::funnel(&s.funnel),
        "Funnel per brand and scene, as the data bank computes it: interest counts scans and \
         claims, purchase counts redemptions and picked-up orders, loyalty counts shoppers with \
         two or more purchases. Awareness (impressions) is left out of this reproducible summary, \
         since impressions are aggregated on real time; the dashboard shows it.",
    );
    figure(
        h,
        "plot-claims-per-hour",
        &plots::claims_per_hour(&s.claims_per_hour),
        "Claims stored in the data bank per local hour on the device, one line per scene.",
    );
    figure(
        h,
        "plot-sync",
        &plots::sync(&s.timing.samples, &s.faults),
        "Sync, over virtual time: events stored in the data bank (left axis), and a sync-lag \
         proxy (right axis): the events written on the devices but not yet acknowledged by the \
         data bank, summed over every device whose outbox could be read. It counts events \
         waiting, not how long they waited. Faults are marked where they were injected.",
    );
    let (shown, readable) = plots::outbox_lines(&s.timing.samples);
    let cap = if readable > shown.len() {
        format!(
            " Only the {} deepest of {readable} devices are drawn (by peak depth, largest first).",
            shown.len()
        )
    } else {
        String::new()
    };
    figure(
        h,
        "plot-outbox",
        &plots::outbox(&s.timing.samples, &s.devices),
        &format!(
            "Outbox depth per device over virtual time: events each device holds that the data \
             bank has not acknowledged; a gap is a sample where the outbox could not be read.{cap}"
        ),
    );
    let o = &s.orders;
    figure(
        h,
        "plot-orders",
        &plots::orders(o),
        &format!(
            "Orders by state, counted from the data bank: {} reserved, {} picked up, {} expired, \
             {} rejected, {} dispense failed.",
            o.reserved, o.picked_up, o.expired, o.rejected, o.dispense_failed
        ),
    );
}

fn funnel_table(h: &mut String, s: &Summary) {
    h.push_str("<h2 id=\"funnel\">Funnel figures</h2>");
    if s.funnel.values().all(Vec::is_empty) {
        h.push_str("<p class=\"empty\">No funnel rows.</p>");
        return;
    }
    h.push_str("<table class=\"funnel\">");
    th(
        h,
        &[
            "Brand",
            "Scene",
            "Awareness",
            "Interest",
            "Purchase",
            "Loyalty",
        ],
    );
    h.push_str("<tbody>");
    for (brand, rows) in &s.funnel {
        for r in rows {
            row(
                h,
                &[
                    td(brand),
                    td(&r.key),
                    tn(r.awareness),
                    tn(r.interest),
                    tn(r.purchase),
                    tn(r.loyalty),
                ],
            );
        }
    }
    h.push_str("</tbody></table>");
}

fn fleet(h: &mut String, s: &Summary) {
    h.push_str("<h2 id=\"fleet\">Fleet</h2>");
    let t = &s.tally;
    h.push_str("<table class=\"tally\">");
    th(h, &["What the simulator counted", "Count"]);
    h.push_str("<tbody>");
    let mut lines: Vec<(String, u64)> = vec![
        ("visits".into(), t.visits),
        ("claims".into(), t.claims),
        ("rescans".into(), t.rescans),
        ("redemptions".into(), t.redemptions),
        ("orders sent".into(), t.orders_sent),
        ("pickups".into(), t.pickups),
        ("requests that found the agent down".into(), t.unreachable),
    ];
    lines.extend(t.refused.iter().map(|(k, n)| (format!("refused: {k}"), *n)));
    lines.extend(
        t.pickups_refused
            .iter()
            .map(|(k, n)| (format!("pickup refused: {k}"), *n)),
    );
    for (k, n) in lines {
        row(h, &[td(&k), tn(n)]);
    }
    h.push_str("</tbody></table>");
    if !s.events.is_empty() {
        h.push_str("<table class=\"events\">");
        th(h, &["Events stored in the data bank", "Count"]);
        h.push_str("<tbody>");
        for (k, n) in &s.events {
            row(h, &[td(k), tn(n)]);
        }
        h.push_str("</tbody></table>");
    }
}

fn devices(h: &mut String, s: &Summary) {
    h.push_str("<h2 id=\"devices\">Devices</h2>");
    if s.devices.is_empty() {
        h.push_str("<p class=\"empty\">No device ran.</p>");
        return;
    }
    h.push_str("<table class=\"devices\">");
    th(
        h,
        &[
            "Device",
            "Scene",
            "Profile",
            "Region",
            "Visits",
            "Claims",
            "Redemptions",
            "Pickups",
        ],
    );
    h.push_str("<tbody>");
    for d in &s.devices {
        let t = &d.tally;
        row(
            h,
            &[
                if d.screens.is_empty() {
                    td(&d.id)
                } else {
                    format!("<td><a href=\"#screens-{0}\">{0}</a></td>", esc(&d.id))
                },
                td(&d.scene),
                td(&d.profile),
                td(&d.region),
                tn(t.visits),
                tn(t.claims),
                tn(t.redemptions),
                tn(t.pickups),
            ],
        );
    }
    h.push_str("</tbody></table>");
}

fn screens(h: &mut String, s: &Summary) {
    h.push_str("<h2 id=\"screens\">Screens</h2>");
    if s.devices.iter().all(|d| d.screens.is_empty()) {
        h.push_str("<p class=\"empty\">No screen was drawn.</p>");
        return;
    }
    for d in s.devices.iter().filter(|d| !d.screens.is_empty()) {
        let _ = write!(
            h,
            "<h3 id=\"screens-{0}\">{0} ({1}, {2})</h3><div class=\"screens\">",
            esc(&d.id),
            esc(&d.scene),
            esc(&d.profile)
        );
        for path in &d.screens {
            let which = path
                .rsplit('/')
                .next()
                .and_then(|f| f.strip_suffix(".png"))
                .and_then(|f| f.strip_prefix(d.id.as_str()))
                .map(|f| f.trim_start_matches('-'))
                .filter(|f| !f.is_empty())
                .unwrap_or(path);
            let _ = write!(
                h,
                "<figure><a href=\"{0}\" title=\"full size\"><img src=\"{0}\" alt=\"{1} {2} screen\"></a>\
                 <figcaption>{2}</figcaption></figure>",
                esc(path),
                esc(&d.id),
                esc(which)
            );
        }
        h.push_str("</div>");
    }
}

/// The page for `s`.
pub fn render(s: &Summary) -> String {
    let mut h = String::new();
    let _ = write!(
        h,
        "<!doctype html><html lang=\"en\"><head><meta charset=\"utf-8\">\
         <meta name=\"viewport\" content=\"width=device-width, initial-scale=1\">\
         <title>Caidan simulation: {}</title><style>{STYLE}</style></head><body>",
        esc(&s.scenario)
    );
    header(&mut h, s);
    verdicts(&mut h, s);
    faults(&mut h, s);
    plots_section(&mut h, s);
    funnel_table(&mut h, s);
    fleet(&mut h, s);
    devices(&mut h, s);
    screens(&mut h, s);
    h.push_str("</body></html>\n");
    h
}

#[cfg(test)]
mod tests {
    use std::collections::BTreeMap;

    use caidan_cloud::databank::funnel::FunnelRow;

    use super::*;
    use crate::check::Verdict;
    use crate::drive::{FaultLog, Sample, Tally};
    use crate::summary::{DeviceSummary, Orders, Timing};

    const FIGURES: [&str; 5] = [
        "plot-funnel",
        "plot-claims-per-hour",
        "plot-sync",
        "plot-outbox",
        "plot-orders",
    ];

    fn empty() -> Summary {
        Summary {
            scenario: "empty".into(),
            seed: 0,
            start: "2025-03-01T07:00:00Z".into(),
            hours: 0,
            devices: vec![],
            tally: Tally::default(),
            events: BTreeMap::new(),
            claims_per_hour: BTreeMap::new(),
            funnel: BTreeMap::new(),
            orders: Orders::default(),
            faults: vec![],
            verdicts: vec![],
            all_hold: true,
            timing: Timing {
                wall_secs: 0.0,
                run_secs: 0.0,
                achieved_speed: 0.0,
                peak_rss_kib: 0,
                events_per_sec: 0.0,
                samples: vec![],
            },
        }
    }

    /// The section of `html` from the figure `id` to its end.
    fn figure_of<'a>(html: &'a str, id: &str) -> &'a str {
        let start = html
            .find(&format!("<figure id=\"{id}\">"))
            .unwrap_or_else(|| panic!("figure {id} missing"));
        let end = html[start..].find("</figure>").expect("figure closes") + start;
        &html[start..end]
    }

    #[test]
    fn every_plot_is_an_inline_svg_in_its_figure() {
        let s = crate::report_example::summary(25);
        let html = render(&s);
        for id in FIGURES {
            let f = figure_of(&html, id);
            assert!(f.contains("<svg"), "{id} has no svg: {f}");
            assert!(f.contains("<figcaption>"), "{id} has no caption");
        }
        // No network: nothing fetched but the screens beside the page.
        assert!(!html.contains("<script"), "a script in the page");
        assert!(!html.contains("<link"), "a link in the page");
        let no_ns = html.replace("xmlns=\"http://www.w3.org/2000/svg\"", "");
        assert!(
            !no_ns.contains("http:") && !no_ns.contains("https:"),
            "a URL in the page"
        );
        assert!(
            html.contains("<img src=\"screens/kiosk-01-attract.png\""),
            "screen missing"
        );
        // 25 devices sampled: the cap is drawn and said.
        assert!(
            html.contains("Only the 20 deepest of 25 devices"),
            "cap not stated"
        );
        assert!(html.contains("<a href=\"#screens-kiosk-01\">kiosk-01</a>"));
        assert!(html.contains("<h3 id=\"screens-kiosk-01\">"));
        assert!(html.contains("+1:30 (2025-03-01 08:30 UTC)"), "fault time");
    }

    #[test]
    fn the_outbox_plot_keeps_the_deepest_twenty_largest_first() {
        let s = crate::report_example::summary(25);
        let (shown, readable) = plots::outbox_lines(&s.timing.samples);
        assert_eq!(readable, 25);
        assert_eq!(shown.len(), plots::MAX_OUTBOX_LINES);
        // Device i peaks at 3 * i: the deepest is the last one.
        assert_eq!(shown[0], 24);
        assert!(!shown.contains(&0) && !shown.contains(&4));
    }

    #[test]
    fn a_breach_renders_fail_with_its_text_escaped() {
        let mut s = empty();
        s.verdicts = vec![
            Verdict {
                promise: "stock never negative".into(),
                holds: true,
                checked: "12 devices".into(),
                breaches: vec![],
            },
            Verdict {
                promise: "an egg is claimed once".into(),
                holds: false,
                checked: "340 claims".into(),
                breaches: vec!["kiosk-02 <script>alert(1)</script> & \"twice\"".into()],
            },
        ];
        s.all_hold = false;
        let html = render(&s);
        assert!(html.contains("<td class=\"FAIL\">FAIL</td>"), "{html}");
        assert!(html.contains("<td class=\"PASS\">PASS</td>"));
        assert!(html.contains("1 of 2 promises breached"));
        assert!(
            html.contains("kiosk-02 &lt;script&gt;alert(1)&lt;/script&gt; &amp; &quot;twice&quot;"),
            "{html}"
        );
        assert!(!html.contains("<script>"));
    }

    #[test]
    fn empty_data_gives_notes_not_plots_or_panics() {
        let html = render(&empty());
        for id in FIGURES {
            let f = figure_of(&html, id);
            assert!(!f.contains("<svg"), "{id} drew from nothing");
            assert!(
                f.contains("class=\"empty\""),
                "{id} has no empty-state note"
            );
        }
        assert!(html.contains("No fault was injected."));
        assert!(html.contains("No device ran."));
        // Degenerate but present data: a single sample, one hour, a brand with only zeros,
        // outboxes that could not be read.
        let mut s = empty();
        s.timing.samples = vec![Sample {
            minute: 0,
            stored: 0,
            outbox: vec![-1, -1],
            offline: 2,
        }];
        s.claims_per_hour
            .insert("cafe".into(), BTreeMap::from([("07".into(), 1)]));
        s.funnel.insert(
            "orbit".into(),
            vec![FunnelRow {
                key: "total".into(),
                ..FunnelRow::default()
            }],
        );
        s.faults = vec![FaultLog {
            minute: 999,
            what: "x".into(),
        }];
        let html = render(&s);
        assert!(figure_of(&html, "plot-sync").contains("<svg"));
        assert!(figure_of(&html, "plot-claims-per-hour").contains("<svg"));
        assert!(!figure_of(&html, "plot-outbox").contains("<svg"));
        assert!(!figure_of(&html, "plot-funnel").contains("<svg"));
    }

    #[test]
    fn text_in_plots_is_escaped() {
        let mut s = crate::report_example::summary(2);
        s.claims_per_hour
            .insert("<b>scene</b>".into(), BTreeMap::from([("09".into(), 4)]));
        let html = render(&s);
        assert!(!html.contains("<b>scene</b>"));
        assert!(figure_of(&html, "plot-claims-per-hour").contains("&lt;b&gt;scene&lt;/b&gt;"));
    }

    #[test]
    fn a_device_without_readable_samples_is_still_listed() {
        let mut s = empty();
        s.devices.push(DeviceSummary {
            id: "kiosk-09".into(),
            scene: "gym".into(),
            profile: "pi-zero".into(),
            region: "eu".into(),
            tally: Tally {
                visits: 3,
                ..Tally::default()
            },
            screens: vec![],
        });
        let html = render(&s);
        assert!(html.contains("<td>kiosk-09</td><td>gym</td><td>pi-zero</td>"));
        assert!(!html.contains("href=\"#screens-kiosk-09\""));
        assert!(html.contains("No screen was drawn."));
    }
}
