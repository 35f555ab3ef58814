//! `caidan-sim`: `demo` runs the shipped scenario; `run --scenario FILE` runs yours.

use std::io::Write as _;
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::Duration;

use anyhow::{Context, Result};
use caidan_sim::drive::{self, Progress};
use caidan_sim::scenario::Scenario;
use caidan_sim::{check, report, summary};
use clap::{Parser, Subcommand};
use indicatif::{ProgressBar, ProgressStyle};

#[derive(Parser)]
#[command(
    name = "caidan-sim",
    version,
    about = "Caidan simulator: a fleet, a day of shoppers, orders, a rollout and faults, checked against every promise"
)]
struct Cli {
    #[command(subcommand)]
    command: Command,
}

#[derive(Subcommand)]
enum Command {
    /// Run the demo scenario (examples/demo.toml): every profile, every scene, every fault.
    Demo {
        #[arg(long)]
        seed: Option<u64>,
        /// Report folder; default ./caidan-sim-report.
        #[arg(long)]
        out: Option<PathBuf>,
    },
    /// Run a scenario file.
    Run {
        #[arg(long)]
        scenario: PathBuf,
        /// Overrides the scenario's seed.
        #[arg(long)]
        seed: Option<u64>,
        /// Report folder; default ./caidan-sim-report.
        #[arg(long)]
        out: Option<PathBuf>,
    },
    /// The development broker as a child process (used by the simulator itself).
    #[command(name = "_broker", hide = true)]
    Broker {
        #[arg(long)]
        listen: std::net::SocketAddr,
    },
    /// A real-process agent on the simulator's clock (used by the simulator itself).
    #[command(name = "_agent", hide = true)]
    Agent {
        #[arg(long)]
        config: PathBuf,
        #[arg(long)]
        data: PathBuf,
        #[arg(long)]
        mqtt: String,
        #[arg(long)]
        clock: PathBuf,
    },
}

/// Live progress on the terminal: virtual time, actions, events stored, devices offline.
struct Bar {
    bar: ProgressBar,
    start_ms: i64,
}

impl Progress for Bar {
    fn start(&self, steps: u64) {
        self.bar.set_length(steps);
        self.bar.set_position(0);
    }
    fn step(&self, minute: u32, made: i64, stored: i64, offline: usize) {
        let t = jiff::Timestamp::from_millisecond(self.start_ms + i64::from(minute) * 60_000)
            .map(|t| t.strftime("%m-%d %H:%MZ").to_string())
            .unwrap_or_default();
        self.bar.inc(1);
        self.bar.set_message(format!(
            "{t}  events made {made}  acknowledged {stored}  devices offline {offline}"
        ));
    }
    fn phase(&self, what: &str) {
        self.bar.set_message(what.to_owned());
    }
    fn finish(&self) {
        self.bar.finish_and_clear();
    }
}

fn main() -> Result<()> {
    let cli = Cli::parse();
    match cli.command {
        Command::Demo { seed, out } => simulate(Scenario::demo(), seed, out),
        Command::Run {
            scenario,
            seed,
            out,
        } => simulate(Scenario::load(&scenario)?, seed, out),
        Command::Broker { listen } => {
            let _b = caidan_cloud::broker::start(listen).context("starting the broker")?;
            loop {
                std::thread::sleep(Duration::from_secs(3600));
            }
        }
        Command::Agent {
            config,
            data,
            mqtt,
            clock,
        } => agent(&config, &data, &mqtt, &clock),
    }
}

fn simulate(s: Scenario, seed: Option<u64>, out: Option<PathBuf>) -> Result<()> {
    let seed = seed.unwrap_or(s.seed);
    let out = out.unwrap_or_else(|| PathBuf::from("caidan-sim-report"));
    std::fs::create_dir_all(&out).with_context(|| format!("cannot create {}", out.display()))?;
    // The agents', broker's and data bank's logs go to a file: the terminal shows progress.
    let log = std::fs::File::create(out.join("sim.log"))?;
    tracing_subscriber::fmt()
        .with_env_filter(
            tracing_subscriber::EnvFilter::try_from_default_env()
                .unwrap_or_else(|_| tracing_subscriber::EnvFilter::new("info,rumqttd=warn")),
        )
        .with_writer(std::sync::Mutex::new(log))
        .with_ansi(false)
        .init();
    let rt = tokio::runtime::Runtime::new()?;
    let bar = ProgressBar::new(0);
    bar.set_style(
        ProgressStyle::with_template("{elapsed_precise} [{bar:30}] {pos}/{len} steps  {msg}")
            .expect("valid template")
            .progress_chars("=> "),
    );
    if std::env::var_os("CI").is_some() {
        bar.set_draw_target(indicatif::ProgressDrawTarget::hidden());
    }
    let progress = Bar {
        bar,
        start_ms: s.start_ms().map_err(|e| anyhow::anyhow!(e))?,
    };
    let devices = s.device_ids().len();
    println!(
        "caidan-sim: {} ({devices} devices, {} h at {}x, seed {seed})",
        s.name, s.time.hours, s.time.speed
    );
    let outcome = rt.block_on(drive::run(&s, seed, &progress))?;
    let verdicts = check::all(&outcome)?;
    let screens = report::write_screens(&outcome, &out)?;
    let summary = summary::summarize(&outcome, &s.name, seed, s.time.hours, verdicts, screens)?;
    report::write(&summary, &out)?;
    if std::env::var_os("CAIDAN_SIM_KEEP").is_some() {
        println!("work folder kept: {}", outcome.work.keep().display());
    }
    print_summary(&summary, &out);
    std::io::stdout().flush()?;
    if !summary.all_hold {
        std::process::exit(1);
    }
    Ok(())
}

fn print_summary(s: &summary::Summary, out: &Path) {
    let t = &s.tally;
    let stored: i64 = s.events.values().sum();
    println!(
        "simulated {} h ({:.0}x over the span, {:.1} s wall in all): {} visits, {} claims, {} redemptions, {} orders ({} picked up, {} expired), {stored} events stored ({:.0}/s), peak RSS {} MiB",
        s.hours,
        s.timing.achieved_speed,
        s.timing.wall_secs,
        t.visits,
        t.claims,
        t.redemptions,
        t.orders_sent,
        s.orders.picked_up,
        s.orders.expired,
        s.timing.events_per_sec,
        s.timing.peak_rss_kib / 1024
    );
    for f in &s.faults {
        println!("  +{:>4} min  {}", f.minute, f.what);
    }
    println!("funnel (interest / purchase / loyalty, all scenes):");
    for (brand, rows) in &s.funnel {
        if let Some(total) = rows.last() {
            println!(
                "  {brand:<18} {:>6} {:>6} {:>4}",
                total.interest, total.purchase, total.loyalty
            );
        }
    }
    for v in &s.verdicts {
        println!(
            "{} {} ({})",
            if v.holds { "PASS" } else { "FAIL" },
            v.promise,
            v.checked
        );
        for b in &v.breaches {
            println!("     {b}");
        }
    }
    println!("report: {}", out.join("report.html").display());
}

/// A real-process agent: the agent runtime on the clock the simulator writes to a file.
fn agent(config: &Path, data: &Path, mqtt: &str, clock: &Path) -> Result<()> {
    use caidan_agent::runtime::{self, MqttTarget, RunOptions};
    let cfg = caidan_agent::config::AgentConfig::load(config)?;
    let clock = Arc::new(caidan_sim::clock::FileClock::follow(clock)?);
    let catalogue = match &cfg.catalogue {
        Some(p) => Some(runtime::read_catalogue_file(p)?),
        None => None,
    };
    let rt = tokio::runtime::Runtime::new()?;
    rt.block_on(async move {
        let opts = RunOptions {
            listen: cfg.http.listen,
            screen_listen: cfg.http.screen_listen,
            config: cfg,
            catalogue,
            data_dir: data.to_owned(),
            mqtt: Some(MqttTarget {
                url: mqtt.parse()?,
                tls: Default::default(),
            }),
            display: None,
        };
        let running = runtime::start(opts, clock).await?;
        let mut term = tokio::signal::unix::signal(tokio::signal::unix::SignalKind::terminate())?;
        tokio::select! {
            _ = tokio::signal::ctrl_c() => {}
            _ = term.recv() => {}
        }
        running.shutdown().await?;
        anyhow::Ok(())
    })
}
