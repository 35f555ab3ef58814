//! The report folder: `summary.json`, a PNG of each device's screens, and `report.html`.

use std::path::Path;

use anyhow::{Context, Result};

use crate::drive::Outcome;
use crate::summary::Summary;

/// Writes every device's screens under `out/screens/`; returns their paths per device,
/// relative to `out`.
pub fn write_screens(o: &Outcome, out: &Path) -> Result<Vec<Vec<String>>> {
    let dir = out.join("screens");
    std::fs::create_dir_all(&dir).with_context(|| format!("cannot create {}", dir.display()))?;
    let mut all = Vec::new();
    for d in &o.devices {
        let mut paths = Vec::new();
        for (which, png) in &d.screens {
            let name = format!("screens/{}-{which}.png", d.id);
            std::fs::write(out.join(&name), png)?;
            paths.push(name);
        }
        all.push(paths);
    }
    Ok(all)
}

/// Writes `summary.json` and `report.html` into `out`.
pub fn write(summary: &Summary, out: &Path) -> Result<()> {
    std::fs::write(
        out.join("summary.json"),
        serde_json::to_vec_pretty(summary)?,
    )?;
    std::fs::write(out.join("report.html"), crate::report_html::render(summary))?;
    Ok(())
}
