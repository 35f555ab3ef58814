//! `caidan-agent`: the on-device agent and its maintenance commands.

use std::io::Write as _;
use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::sync::Arc;

use anyhow::{Context, Result};
use caidan_agent::catalogue::CatalogueFile;
use caidan_agent::config::{self, AgentConfig};
use caidan_agent::runtime::{self, MqttTarget, RunOptions};
use caidan_agent::store::{Reader, StockUpdate};
use caidan_sync::broker_url::BrokerUrl;
use caidan_sync::clock::{Clock, SystemClock};
use caidan_sync::credentials::TokenHash;
use caidan_sync::tls::TlsFiles;
use clap::{Args, Parser, Subcommand};
use tokio::sync::Notify;

#[derive(Parser)]
#[command(
    name = "caidan-agent",
    version,
    about = "Caidan touchpoint agent: eggs, claims and the outbox"
)]
struct Cli {
    /// Log as JSON lines instead of human-readable text.
    #[arg(long, global = true)]
    log_json: bool,
    #[command(subcommand)]
    command: Command,
}

#[derive(Args, Clone)]
struct Target {
    /// Agent config (TOML). Without it, the bundled demo config.
    #[arg(long, short)]
    config: Option<PathBuf>,
    /// Data folder holding the store; overrides `store.dir` of the config.
    #[arg(long)]
    data: Option<PathBuf>,
}

impl Target {
    fn load(&self) -> Result<(AgentConfig, PathBuf)> {
        let cfg = match &self.config {
            Some(p) => AgentConfig::load(p)?,
            None => AgentConfig::demo(),
        };
        let data = self.data.clone().unwrap_or_else(|| cfg.store.dir.clone());
        Ok((cfg, data))
    }

    fn reader(&self) -> Result<Reader> {
        let (_, data) = self.load()?;
        Ok(Reader::open(&runtime::store_path(&data))?)
    }
}

#[derive(Subcommand)]
enum Command {
    /// Run the agent: HTTP API, egg pages, store.
    Run {
        #[command(flatten)]
        target: Target,
        /// Listen address; overrides `http.listen` (port 0 picks a free port).
        #[arg(long)]
        listen: Option<SocketAddr>,
        /// Screen listen address (QR token, screen page, /metrics); overrides
        /// `http.screen_listen`.
        #[arg(long)]
        screen_listen: Option<SocketAddr>,
        /// Sync the outbox to this MQTT broker: mqtt://[user[:password]@]HOST:PORT or
        /// mqtts://...; a password left out of the URL is read from CAIDAN_MQTT_PASSWORD.
        #[arg(long)]
        mqtt: Option<String>,
        /// CA certificate (PEM) the broker's certificate must chain to, for mqtts://.
        #[arg(long, requires = "mqtt")]
        mqtt_ca: Option<PathBuf>,
        /// Client certificate (PEM) for mutual TLS.
        #[arg(long, requires = "mqtt_key")]
        mqtt_cert: Option<PathBuf>,
        /// Client private key (PEM) for mutual TLS.
        #[arg(long, requires = "mqtt_cert")]
        mqtt_key: Option<PathBuf>,
        /// Also draw the touchpoint's own screens on a Linux framebuffer: fb:/dev/fb0 (its
        /// geometry and pixel format as the driver reports them), or a file laid out like
        /// one: fb:FILE?size=WxH&format=rgb565|xrgb8888|bgr888|mono[&line_length=BYTES].
        #[arg(long)]
        display: Option<caidan_agent::display::fbdev::DisplayTarget>,
    },
    /// Offer catalogue maintenance.
    Offers {
        #[command(subcommand)]
        command: OffersCommand,
    },
    /// Claims held by this device.
    Claims {
        #[command(subcommand)]
        command: ClaimsCommand,
    },
    /// The outbox of events waiting for the data bank.
    Outbox {
        #[command(subcommand)]
        command: OutboxCommand,
    },
    /// Stock at this touchpoint.
    Inventory {
        #[command(subcommand)]
        command: InventoryCommand,
    },
    /// Validate an agent config file and exit.
    CheckConfig { file: PathBuf },
    /// Draw one of the touchpoint's screens to a PNG, as its panel would show it now.
    Render {
        #[command(flatten)]
        target: Target,
        /// Firmware profile (file name in firmware-profiles/profiles without `.toml`);
        /// defaults to the config's.
        #[arg(long)]
        profile: Option<String>,
        #[arg(long, value_enum)]
        screen: caidan_agent::display::Which,
        #[arg(long)]
        out: PathBuf,
    },
    /// Print the `sha256:` form of a staff token for the config's `staff.tokens`.
    HashStaffToken { token: String },
}

#[derive(Subcommand)]
enum OffersCommand {
    /// Validate a catalogue (JSON) whole and import it; a bad file changes nothing.
    Import {
        file: PathBuf,
        #[command(flatten)]
        target: Target,
    },
}

#[derive(Subcommand)]
enum ClaimsCommand {
    /// List the most recent claims.
    List {
        #[command(flatten)]
        target: Target,
        #[arg(long, default_value_t = 50)]
        limit: usize,
        /// One JSON object per line.
        #[arg(long)]
        json: bool,
    },
}

#[derive(Subcommand)]
enum InventoryCommand {
    /// Every SKU's units on hand, reserved and available.
    List {
        #[command(flatten)]
        target: Target,
        /// One JSON object per line.
        #[arg(long)]
        json: bool,
    },
    /// Set a SKU's units on hand as counted (reserved units included).
    Set {
        sku: String,
        on_hand: i64,
        #[arg(long)]
        note: Option<String>,
        #[command(flatten)]
        target: Target,
    },
    /// Change a SKU's units on hand: a positive DELTA with --reason restock, a negative one
    /// with --reason damage (or count).
    Adjust {
        sku: String,
        #[arg(allow_negative_numbers = true)]
        delta: i64,
        #[arg(long)]
        reason: String,
        #[arg(long)]
        note: Option<String>,
        #[command(flatten)]
        target: Target,
    },
}

#[derive(Subcommand)]
enum OutboxCommand {
    /// Depth, sequence range and event types of the outbox.
    Stats {
        #[command(flatten)]
        target: Target,
        #[arg(long)]
        json: bool,
    },
}

fn main() -> Result<()> {
    let cli = Cli::parse();
    caidan_sync::logs::init(cli.log_json, "info");
    match cli.command {
        Command::Run {
            target,
            listen,
            screen_listen,
            mqtt,
            mqtt_ca,
            mqtt_cert,
            mqtt_key,
            display,
        } => {
            let mqtt = mqtt
                .map(|url| -> Result<MqttTarget> {
                    Ok(MqttTarget {
                        url: BrokerUrl::parse_env(&url)?,
                        tls: TlsFiles {
                            ca: mqtt_ca,
                            client_cert: mqtt_cert,
                            client_key: mqtt_key,
                        },
                    })
                })
                .transpose()?;
            run(target, listen, screen_listen, mqtt, display)
        }
        Command::Offers {
            command: OffersCommand::Import { file, target },
        } => import(&file, &target),
        Command::Claims {
            command:
                ClaimsCommand::List {
                    target,
                    limit,
                    json,
                },
        } => {
            let claims = target.reader()?.claims(limit)?;
            let mut out = std::io::stdout().lock();
            if json {
                for c in claims {
                    writeln!(out, "{}", serde_json::to_string(&c)?)?;
                }
            } else {
                writeln!(
                    out,
                    "{:<10} {:<24} {:<18} {:<12} {:<25} REDEEMED",
                    "CODE", "OFFER", "BRAND", "KIND", "CREATED"
                )?;
                for c in claims {
                    let at = |ms: i64| {
                        jiff::Timestamp::from_millisecond(ms)
                            .map(|t| t.to_string())
                            .unwrap_or_default()
                    };
                    let redeemed = c.redeemed_ms.map(at).unwrap_or_else(|| "-".into());
                    writeln!(
                        out,
                        "{:<10} {:<24} {:<18} {:<12} {:<25} {redeemed}",
                        c.claim_code,
                        c.offer_id,
                        c.brand,
                        c.kind.as_str(),
                        at(c.created_ms)
                    )?;
                }
            }
            Ok(())
        }
        Command::Outbox {
            command: OutboxCommand::Stats { target, json },
        } => {
            let (cfg, _) = target.load()?;
            let s = target.reader()?.outbox_stats()?;
            let budget = cfg.storage_budget();
            let fill = budget.fill(s.store_used_bytes);
            if json {
                let mut v = serde_json::to_value(&s)?;
                v["store_budget_bytes"] = budget.limit.into();
                v["store_fill"] = fill.as_str().into();
                println!("{}", serde_json::to_string_pretty(&v)?);
            } else {
                println!("epoch:     {}", s.epoch);
                println!("depth:     {} events ({} bytes)", s.depth, s.bytes);
                println!(
                    "storage:   {} of {} bytes in use ({:.1}%, {})",
                    s.store_used_bytes,
                    budget.limit,
                    s.store_used_bytes as f64 * 100.0 / budget.limit.max(1) as f64,
                    fill.as_str()
                );
                println!(
                    "sequence:  {} .. {}",
                    s.first_seq
                        .map(|v| v.to_string())
                        .unwrap_or_else(|| "-".into()),
                    s.last_seq
                );
                for (t, n) in s.by_type {
                    println!("  {t:<24} {n}");
                }
            }
            Ok(())
        }
        Command::Inventory { command } => inventory(command),
        Command::CheckConfig { file } => {
            let cfg = AgentConfig::load(&file)?;
            if let Some(cat) = &cfg.catalogue {
                let c = runtime::read_catalogue(cat)?;
                println!(
                    "{}: catalogue {} ok ({} offers)",
                    file.display(),
                    cat.display(),
                    c.offers.len()
                );
            }
            // The screen's QR must be readable from where shoppers stand (the profile's
            // [scan] distance) and fit the panel, with the egg link this config makes.
            let link = caidan_agent::display::egg_link(&cfg, SystemClock::shared().now_ms());
            caidan_screens::qr::QrPlan::new(cfg.profile(), &link)
                .with_context(|| format!("{}: the screen's QR code", file.display()))?;
            println!(
                "{}: ok (device {}, scene {}, profile {})",
                file.display(),
                cfg.device.id,
                cfg.device.scene,
                cfg.device.profile
            );
            Ok(())
        }
        Command::Render {
            target,
            profile,
            screen,
            out,
        } => {
            let (cfg, _) = target.load()?;
            let from_file = target.config.is_some();
            let name = profile.unwrap_or_else(|| cfg.device.profile.clone());
            let profile = caidan_profiles::bundled(&name).ok_or_else(|| {
                anyhow::anyhow!(
                    "no bundled profile {name:?}; known: {}",
                    caidan_profiles::bundled_names().join(", ")
                )
            })?;
            // The demo config's catalogue is built in, like the demo config itself.
            let catalogue = match cfg.catalogue.as_ref().filter(|_| from_file) {
                Some(path) => Some(runtime::read_catalogue(path)?),
                None => {
                    caidan_agent::catalogue::Catalogue::from_json(config::DEMO_CATALOGUE, "demo")
                        .ok()
                }
            };
            let now = SystemClock::shared().now_ms();
            let png =
                caidan_agent::display::render_png(&cfg, &profile, catalogue.as_ref(), screen, now)?;
            std::fs::write(&out, png).with_context(|| format!("cannot write {}", out.display()))?;
            println!(
                "{}: {} on {} ({}x{})",
                out.display(),
                format!("{screen:?}").to_lowercase(),
                profile.name,
                profile.display.width,
                profile.display.height
            );
            Ok(())
        }
        Command::HashStaffToken { token } => {
            println!("{}", TokenHash::of(&token));
            Ok(())
        }
    }
}

fn inventory(command: InventoryCommand) -> Result<()> {
    let (target, update) = match command {
        InventoryCommand::List { target, json } => {
            let stock = target.reader()?.stock()?;
            let mut out = std::io::stdout().lock();
            if json {
                for s in stock {
                    writeln!(out, "{}", serde_json::to_string(&s)?)?;
                }
            } else {
                writeln!(
                    out,
                    "{:<32} {:>9} {:>9} {:>9}",
                    "SKU", "ON HAND", "RESERVED", "AVAILABLE"
                )?;
                for s in stock {
                    writeln!(
                        out,
                        "{:<32} {:>9} {:>9} {:>9}",
                        s.sku, s.on_hand, s.reserved, s.available
                    )?;
                }
            }
            return Ok(());
        }
        InventoryCommand::Set {
            sku,
            on_hand,
            note,
            target,
        } => {
            let update =
                StockUpdate::from_parts(sku_arg(&sku)?, Some(on_hand), None, "count", note);
            (target, update)
        }
        InventoryCommand::Adjust {
            sku,
            delta,
            reason,
            note,
            target,
        } => {
            let update = StockUpdate::from_parts(sku_arg(&sku)?, None, Some(delta), &reason, note);
            (target, update)
        }
    };
    let update = update.map_err(anyhow::Error::msg)?;
    let (cfg, data) = target.load()?;
    let clock: Arc<dyn Clock> = Arc::new(SystemClock::new());
    let (writer, thread) = runtime::open_writer(&cfg, &data, clock, Arc::new(Notify::new()), None)?;
    let sku = update.sku.clone();
    let result = writer.change_stock_blocking(update);
    drop(writer);
    let _ = thread.join();
    let after = result?.map_err(anyhow::Error::new)?;
    println!(
        "{sku}: {} on hand, {} reserved, {} available",
        after.on_hand, after.reserved, after.available
    );
    Ok(())
}

fn sku_arg(text: &str) -> Result<caidan_sync::contract::Ident> {
    Ok(caidan_sync::contract::Ident::new(text)?)
}

fn import(file: &Path, target: &Target) -> Result<()> {
    // Validate the whole file before the store is even opened: a bad file changes nothing.
    let catalogue = runtime::read_catalogue(file)?;
    let (cfg, data) = target.load()?;
    let clock: Arc<dyn Clock> = Arc::new(SystemClock::new());
    let (writer, thread) = runtime::open_writer(&cfg, &data, clock, Arc::new(Notify::new()), None)?;
    let summary = writer.import_blocking(catalogue)?;
    drop(writer);
    let _ = thread.join();
    println!(
        "imported catalogue v{} into {}: {} offers, {} segments, {} new SKUs",
        summary.version,
        runtime::store_path(&data).display(),
        summary.offers,
        summary.segments,
        summary.new_skus
    );
    Ok(())
}

fn run(
    target: Target,
    listen: Option<SocketAddr>,
    screen_listen: Option<SocketAddr>,
    mqtt: Option<MqttTarget>,
    display: Option<caidan_agent::display::fbdev::DisplayTarget>,
) -> Result<()> {
    let (cfg, data_dir) = target.load()?;
    let catalogue = match (&target.config, &cfg.catalogue) {
        (None, _) => Some(CatalogueFile {
            text: config::DEMO_CATALOGUE.to_owned(),
            origin: "demo/catalogue.json".to_owned(),
        }),
        (Some(config), Some(path)) => Some(
            runtime::read_catalogue_file(path)
                .with_context(|| format!("catalogue named by {}", config.display()))?,
        ),
        (Some(_), None) => None,
    };
    let listen = listen.unwrap_or(cfg.http.listen);
    let screen_listen = screen_listen.unwrap_or(cfg.http.screen_listen);
    let rt = tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()?;
    rt.block_on(async move {
        let clock: Arc<dyn Clock> = Arc::new(SystemClock::new());
        let opts = RunOptions {
            config: cfg.clone(),
            catalogue,
            data_dir: data_dir.clone(),
            listen,
            screen_listen,
            mqtt: mqtt.clone(),
            display: display.clone(),
        };
        let running = runtime::start(opts, clock.clone()).await?;
        let link = format!(
            "{}/e/{}",
            cfg.http
                .public_url
                .as_deref()
                .unwrap_or(&running.base_url)
                .trim_end_matches('/'),
            running.tokens.issue(clock.now_ms())
        );
        println!(
            "caidan-agent {} ({}, {}) listening on {}",
            cfg.device.id, cfg.device.scene, cfg.device.profile, running.base_url
        );
        println!(
            "screen:   {}/  (and the current QR at /api/v1/qr, /metrics; for the screen only)",
            running.screen_url
        );
        println!(
            "egg link: {link}  (rotates every {} s; the screen page always shows the current one)",
            cfg.qr.rotation_secs
        );
        println!("store:    {}", runtime::store_path(&data_dir).display());
        if let Some(m) = &mqtt {
            println!("uplink:   {}", m.url);
        }
        std::io::stdout().flush()?;
        shutdown_signal().await;
        tracing::info!("shutting down");
        running.shutdown().await?;
        Ok(())
    })
}

async fn shutdown_signal() {
    let ctrl_c = tokio::signal::ctrl_c();
    #[cfg(unix)]
    {
        let mut term = tokio::signal::unix::signal(tokio::signal::unix::SignalKind::terminate())
            .expect("SIGTERM handler");
        tokio::select! {
            _ = ctrl_c => {}
            _ = term.recv() => {}
        }
    }
    #[cfg(not(unix))]
    let _ = ctrl_c.await;
}
