//! What drawing its own 4K panel costs the agent in resident memory, in one run: the real
//! release `caidan-agent run` on the cinema-screen demo config (QR rotating every second,
//! per-client limits lifted), started without a display (the baseline) and with
//! `--display fb:FILE?size=2160x3840&format=xrgb8888`, each driven the same way: a claim
//! every 200 ms for 10 s (each reveal is a full 4K redraw), then 12 s without claims (the
//! attract screen returns in full and the QR is redrawn at each rotation). VmRSS is sampled
//! every 20 ms from /proc beside the kernel's own high-water mark (VmHWM). The limit it is
//! judged by: drawing any profile adds no more than 4 MiB to the agent's resident memory.
//!
//! `cargo bench -p caidan-agent --bench panel_rss` (RUNS=3). Prints one figure a line, then
//! the medians.

use std::io::{BufRead, BufReader};
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::time::{Duration, Instant};

use caidan_testkit::Proc;
use caidan_testkit::agent::LOAD_LIMITS;
use serde_json::{Value, json};

const LIMIT_KIB: u64 = 4 * 1024;
const SAMPLE_EVERY: Duration = Duration::from_millis(20);
const CLAIMING: Duration = Duration::from_secs(10);
const CLAIM_EVERY: Duration = Duration::from_millis(200);
const QUIET: Duration = Duration::from_secs(12);
const SETTLE: Duration = Duration::from_secs(3);
const WIDTH: u64 = 2160;
const HEIGHT: u64 = 3840;

type Result<T> = std::result::Result<T, Box<dyn std::error::Error + Send + Sync>>;

/// A `kB` field of `/proc/PID/status`.
fn status_kib(pid: u32, field: &str) -> Option<u64> {
    let status = std::fs::read_to_string(format!("/proc/{pid}/status")).ok()?;
    status
        .lines()
        .find_map(|l| l.strip_prefix(field))
        .and_then(|rest| rest.split_whitespace().next())
        .and_then(|v| v.parse().ok())
}

/// The largest VmRSS seen every 20 ms until dropped.
struct Sampler {
    max: Arc<AtomicU64>,
    stop: Arc<AtomicBool>,
    thread: Option<std::thread::JoinHandle<()>>,
}

impl Sampler {
    fn start(pid: u32) -> Sampler {
        let (max, stop) = (
            Arc::new(AtomicU64::new(0)),
            Arc::new(AtomicBool::new(false)),
        );
        let (m, s) = (max.clone(), stop.clone());
        let thread = std::thread::spawn(move || {
            while !s.load(Ordering::Relaxed) {
                if let Some(rss) = status_kib(pid, "VmRSS:") {
                    m.fetch_max(rss, Ordering::Relaxed);
                }
                std::thread::sleep(SAMPLE_EVERY);
            }
        });
        Sampler {
            max,
            stop,
            thread: Some(thread),
        }
    }

    fn finish(mut self) -> u64 {
        self.stop.store(true, Ordering::Relaxed);
        if let Some(t) = self.thread.take() {
            let _ = t.join();
        }
        self.max.load(Ordering::Relaxed)
    }
}

/// The demo config with its catalogue found by absolute path, the QR rotating every second
/// (the shortest the cinema profile allows) and the per-client limits lifted: every claim
/// comes from this one process.
fn write_config(dir: &Path) -> Result<PathBuf> {
    let demo = Path::new(env!("CARGO_MANIFEST_DIR")).join("demo");
    let text = std::fs::read_to_string(demo.join("agent.toml"))?;
    for needle in ["catalogue = \"catalogue.json\"", "rotation_secs = 30"] {
        assert!(text.contains(needle), "demo config has no {needle:?}");
    }
    let text = text
        .replace(
            "catalogue = \"catalogue.json\"",
            &format!(
                "catalogue = {:?}",
                demo.join("catalogue.json").display().to_string()
            ),
        )
        .replace("rotation_secs = 30", "rotation_secs = 1");
    let path = dir.join("agent.toml");
    std::fs::write(&path, format!("{text}\n{LOAD_LIMITS}"))?;
    Ok(path)
}

struct Agent {
    proc: Proc,
    base: String,
    screen: String,
}

/// `caidan-agent run` on free ports with its store in `data`, once it listens.
fn start(config: &Path, data: &Path, display: Option<&str>) -> Result<Agent> {
    std::fs::create_dir_all(data)?;
    let mut cmd = Command::new(env!("CARGO_BIN_EXE_caidan-agent"));
    cmd.arg("run").arg("--config").arg(config).args([
        "--listen",
        "127.0.0.1:0",
        "--screen-listen",
        "127.0.0.1:0",
        "--data",
    ]);
    cmd.arg(data);
    if let Some(spec) = display {
        cmd.args(["--display", spec]);
    }
    cmd.stdout(Stdio::piped());
    let mut proc = Proc::spawn_logged(&mut cmd, &data.with_extension("log"))?;
    let mut lines = BufReader::new(proc.child.stdout.take().expect("stdout")).lines();
    let (mut base, mut screen) = (None, None);
    while base.is_none() || screen.is_none() {
        let Some(Ok(line)) = lines.next() else {
            return Err(format!("caidan-agent exited:\n{}", proc.log_text()).into());
        };
        if let Some((_, url)) = line.split_once("listening on ") {
            base = Some(url.trim().to_owned());
        }
        if let Some(rest) = line.strip_prefix("screen:") {
            let url = rest.split_whitespace().next().unwrap_or_default();
            screen = Some(url.trim_end_matches('/').to_owned());
        }
    }
    // Keep reading so the agent never blocks on a full pipe.
    std::thread::spawn(move || lines.map_while(std::result::Result::ok).for_each(drop));
    Ok(Agent {
        proc,
        base: base.unwrap_or_default(),
        screen: screen.unwrap_or_default(),
    })
}

/// One configuration's figures, in KiB, and what the panel did meanwhile.
#[derive(Debug, Clone, Copy)]
struct Figures {
    idle: u64,
    sampled_peak: u64,
    hwm: u64,
    claims: usize,
    full: u64,
    partial: u64,
}

fn metric(metrics: &str, name: &str) -> u64 {
    metrics
        .lines()
        .find_map(|l| l.strip_prefix(name))
        .and_then(|v| v.trim().parse().ok())
        .unwrap_or(0)
}

/// Claims every 200 ms, then leaves the agent alone, sampling its RSS all along.
async fn drive(agent: &Agent, run: usize) -> Result<Figures> {
    let pid = agent.proc.child.id();
    let http = reqwest::Client::new();
    tokio::time::sleep(SETTLE - Duration::from_secs(1)).await;
    let idle_sampler = Sampler::start(pid);
    tokio::time::sleep(Duration::from_secs(1)).await;
    let idle = idle_sampler.finish();

    let sampler = Sampler::start(pid);
    let started = Instant::now();
    let (mut claims, mut refused) = (0, 0);
    let mut tick = tokio::time::interval(CLAIM_EVERY);
    while started.elapsed() < CLAIMING {
        tick.tick().await;
        let qr: Value = http
            .get(format!("{}/api/v1/qr", agent.screen))
            .send()
            .await?
            .json()
            .await?;
        let resp = http
            .post(format!("{}/api/v1/eggs", agent.base))
            .json(&json!({ "token": qr["token"], "shopper": format!("rss-{run}-{claims}-{refused}") }))
            .send()
            .await?;
        if resp.status().as_u16() == 201 {
            claims += 1;
        } else if refused == 0 {
            refused += 1;
            let status = resp.status();
            println!("# claim refused: {status} {}", resp.text().await?);
        } else {
            refused += 1;
        }
    }
    tokio::time::sleep(QUIET).await;
    let sampled_peak = sampler.finish();
    let hwm = status_kib(pid, "VmHWM:").unwrap_or(0);
    let metrics = http
        .get(format!("{}/metrics", agent.screen))
        .send()
        .await?
        .text()
        .await?;
    Ok(Figures {
        idle,
        sampled_peak,
        hwm,
        claims,
        full: metric(&metrics, "caidan_screen_refreshes_total{kind=\"full\"}"),
        partial: metric(&metrics, "caidan_screen_refreshes_total{kind=\"partial\"}"),
    })
}

async fn measure(config: &Path, dir: &Path, run: usize, display: bool) -> Result<Figures> {
    let data = dir.join(format!("{}-{run}", if display { "panel" } else { "bare" }));
    let spec = display.then(|| {
        let fb = dir.join(format!("fb-{run}"));
        let file = std::fs::File::create(&fb).expect("framebuffer file");
        file.set_len(WIDTH * HEIGHT * 4).expect("framebuffer size");
        format!("fb:{}?size={WIDTH}x{HEIGHT}&format=xrgb8888", fb.display())
    });
    let mut agent = start(config, &data, spec.as_deref())?;
    let figures = drive(&agent, run).await;
    agent.proc.kill9();
    let f = figures?;
    println!(
        "run {run} {}: idle VmRSS {} KiB, peak sampled {} KiB, VmHWM {} KiB; {} claims, {} full / {} partial redraws",
        if display {
            "4K panel (xrgb8888)"
        } else {
            "no display"
        },
        f.idle,
        f.sampled_peak,
        f.hwm,
        f.claims,
        f.full,
        f.partial
    );
    Ok(f)
}

fn median(mut v: Vec<u64>) -> u64 {
    v.sort_unstable();
    v[v.len() / 2]
}

fn line(what: &str, values: Vec<u64>) -> u64 {
    let m = median(values.clone());
    println!("{what}: {m} KiB {values:?}");
    m
}

#[tokio::main]
async fn main() -> Result<()> {
    let runs = std::env::var("RUNS")
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(3usize);
    let dir = tempfile::Builder::new()
        .prefix("caidan-bench-panel-rss-")
        .tempdir()?;
    let config = write_config(dir.path())?;
    let (mut bare, mut panel) = (Vec::new(), Vec::new());
    for run in 1..=runs {
        bare.push(measure(&config, dir.path(), run, false).await?);
        panel.push(measure(&config, dir.path(), run, true).await?);
    }
    let col = |v: &[Figures], f: fn(&Figures) -> u64| v.iter().map(f).collect::<Vec<_>>();
    let idle = line("no display, idle VmRSS", col(&bare, |f| f.idle));
    let bare_hwm = line("no display, same load, VmHWM", col(&bare, |f| f.hwm));
    line(
        "no display, same load, sampled peak",
        col(&bare, |f| f.sampled_peak),
    );
    line("4K panel, idle VmRSS", col(&panel, |f| f.idle));
    let hwm = line("4K panel, drawing, VmHWM", col(&panel, |f| f.hwm));
    let sampled = line(
        "4K panel, drawing, sampled peak",
        col(&panel, |f| f.sampled_peak),
    );
    let ratio = |kib: u64| kib as f64 / LIMIT_KIB as f64;
    let over = |peak: u64, base: u64| peak.saturating_sub(base);
    println!(
        "4K drawing peak (VmHWM) - idle without display: {} KiB = {:.2} of the 4 MiB limit",
        over(hwm, idle),
        ratio(over(hwm, idle))
    );
    println!(
        "4K drawing peak (sampled) - idle without display: {} KiB = {:.2} of the 4 MiB limit",
        over(sampled, idle),
        ratio(over(sampled, idle))
    );
    println!(
        "4K drawing peak (VmHWM) - the same load without display (VmHWM): {} KiB = {:.2} of the limit",
        over(hwm, bare_hwm),
        ratio(over(hwm, bare_hwm))
    );
    Ok(())
}
