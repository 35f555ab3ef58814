//! The brand dashboard page: the funnel drawn as inline SVG, no external assets.

use std::fmt::Write as _;

use crate::databank::funnel::{Funnel, FunnelRow};

/// Escapes text for HTML content and attribute values.
pub fn escape(s: &str) -> String {
    html_escape::encode_quoted_attribute(s).into_owned()
}

const STYLE: &str = "body{font-family:system-ui,sans-serif;margin:2rem;color:#222;max-width:60rem}
table{border-collapse:collapse;margin-top:1rem}td,th{padding:.3rem .8rem;border-bottom:1px solid #ddd;text-align:right}
td:first-child,th:first-child{text-align:left}form{margin:1rem 0}input,select{margin-right:.5rem}.err{color:#b00}";

const COLORS: [&str; 4] = ["#f4a261", "#e76f51", "#2a9d8f", "#264653"];

fn page(title: &str, body: &str) -> String {
    format!(
        "<!doctype html><html lang=\"en\"><head><meta charset=\"utf-8\">\
         <meta name=\"viewport\" content=\"width=device-width,initial-scale=1\">\
         <link rel=\"icon\" href=\"/favicon.svg\" type=\"image/svg+xml\">\
         <title>{}</title><style>{STYLE}</style></head><body>{body}</body></html>",
        escape(title)
    )
}

/// The sign-in form: the token is posted once and kept in an HttpOnly cookie, never put in
/// a URL.
pub fn login(brand: &str, message: Option<&str>) -> String {
    let msg = message
        .map(|m| format!("<p class=\"err\">{}</p>", escape(m)))
        .unwrap_or_default();
    page(
        &format!("{brand} · sign in"),
        &format!(
            "<h1>Caidan data bank · {b}</h1>{msg}\
             <form method=\"post\" action=\"/brands/{b}/login\">\
             <label>Brand API token <input type=\"password\" name=\"token\" autocomplete=\"current-password\" autofocus></label>\
             <button type=\"submit\">Sign in</button></form>",
            b = escape(brand)
        ),
    )
}

/// The funnel as four horizontal bars, widths relative to awareness.
pub fn funnel_svg(t: &FunnelRow) -> String {
    let stages = [
        ("Awareness", t.awareness),
        ("Interest", t.interest),
        ("Purchase", t.purchase),
        ("Loyalty", t.loyalty),
    ];
    let max = stages.iter().map(|s| s.1).max().unwrap_or(0).max(1) as f64;
    let (width, bar_h, gap) = (600.0, 44.0, 10.0);
    let mut svg = format!(
        "<svg xmlns=\"http://www.w3.org/2000/svg\" role=\"img\" aria-label=\"AIPL funnel\" \
         width=\"{w}\" height=\"{h}\" viewBox=\"0 0 {w} {h}\">",
        w = width + 160.0,
        h = 4.0 * (bar_h + gap)
    );
    for (i, (label, value)) in stages.iter().enumerate() {
        let w = (*value as f64 / max * width).max(2.0);
        let x = 150.0 + (width - w) / 2.0;
        let y = i as f64 * (bar_h + gap);
        let _ = write!(
            svg,
            "<text x=\"0\" y=\"{ty}\" font-size=\"15\">{label}</text>\
             <rect x=\"{x:.1}\" y=\"{y}\" width=\"{w:.1}\" height=\"{bar_h}\" rx=\"4\" fill=\"{c}\"/>\
             <text x=\"{cx}\" y=\"{ty}\" font-size=\"15\" text-anchor=\"middle\" fill=\"#fff\" \
             stroke=\"#000\" stroke-width=\"0.3\">{value}</text>",
            ty = y + bar_h / 2.0 + 5.0,
            c = COLORS[i],
            cx = 150.0 + width / 2.0,
        );
    }
    svg.push_str("</svg>");
    svg
}

/// The full dashboard for one brand's funnel.
pub fn render(f: &Funnel) -> String {
    let by = serde_json::to_value(f.by)
        .ok()
        .and_then(|v| v.as_str().map(str::to_owned))
        .unwrap_or_default();
    let mut options = String::new();
    for o in ["touchpoint", "scene", "offer", "hour"] {
        let sel = if o == by { " selected" } else { "" };
        let _ = write!(options, "<option{sel}>{o}</option>");
    }
    let mut table = format!(
        "<table><tr><th>{}</th><th>Awareness</th><th>Interest</th><th>Purchase</th><th>Loyalty</th></tr>",
        escape(&by)
    );
    for r in f.rows.iter().chain(std::iter::once(&f.totals)) {
        let _ = write!(
            table,
            "<tr><td>{}</td><td>{}</td><td>{}</td><td>{}</td><td>{}</td></tr>",
            escape(&r.key),
            r.awareness,
            r.interest,
            r.purchase,
            r.loyalty
        );
    }
    table.push_str("</table>");
    let body = format!(
        "<h1>AIPL funnel · {brand}</h1><p>{from} to {to}</p>\
         <form method=\"get\">\
         <label>from <input name=\"from\" value=\"{from}\"></label>\
         <label>to <input name=\"to\" value=\"{to}\"></label>\
         <label>by <select name=\"by\">{options}</select></label><button>Show</button></form>\
         {svg}{table}\
         <form method=\"post\" action=\"/brands/{brand}/logout\"><button>Sign out</button></form>",
        brand = escape(&f.brand),
        from = escape(&f.from),
        to = escape(&f.to),
        svg = funnel_svg(&f.totals),
    );
    page(&format!("{} · AIPL funnel", f.brand), &body)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn escapes_and_draws_four_bars() {
        let escaped = escape("<a href='x'>&\"");
        assert!(!escaped.contains(['<', '>', '\'', '"']), "{escaped}");
        assert!(
            escaped.starts_with("&lt;a href=") && escaped.contains("&amp;"),
            "{escaped}"
        );
        let svg = funnel_svg(&FunnelRow {
            key: "total".into(),
            awareness: 100,
            interest: 10,
            purchase: 3,
            loyalty: 1,
        });
        assert_eq!(svg.matches("<rect").count(), 4);
        assert!(svg.contains(">Loyalty<"));
    }
}
