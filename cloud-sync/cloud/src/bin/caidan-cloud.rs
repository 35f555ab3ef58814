//! `caidan-cloud`: the development broker, the data bank, or both in one process; and the
//! fleet operator commands.
#![forbid(unsafe_code)]

use std::net::SocketAddr;
use std::path::PathBuf;

use anyhow::Context as _;
use caidan_cloud::broker;
use caidan_cloud::cli::MqttTlsArgs;
use caidan_cloud::databank::auth::{Access, DEMO_ACK_KEY, DEMO_BRANDS};
use caidan_cloud::databank::{
    Databank, DatabankConfig, HttpsConfig, IngestConfig, StoreUrl, parse_store_url,
};
use caidan_cloud::fleet::{self, cli::FleetArgs};
use caidan_sync::broker_url::BrokerUrl;
use caidan_sync::clock::SystemClock;
use caidan_sync::contract::{DEFAULT_MAX_BATCH_BYTES, Limits};
use caidan_sync::keys::SecretKey;
use caidan_sync::tls::TlsFiles;
use clap::{Args, Parser, Subcommand};
use sha2::{Digest, Sha256};

#[derive(Parser)]
#[command(
    name = "caidan-cloud",
    version,
    about = "Caidan cloud side: development broker, data bank and fleet operator commands"
)]
struct Cli {
    /// Log as JSON lines instead of human-readable text.
    #[arg(long, global = true)]
    log_json: bool,
    #[command(subcommand)]
    command: Command,
}

#[derive(Subcommand)]
enum Command {
    /// Run the embedded development MQTT broker.
    Broker {
        /// Address to listen on (port 0 picks a free port).
        #[arg(long, default_value = broker::DEFAULT_LISTEN)]
        listen: SocketAddr,
    },
    /// Run the data bank against an MQTT broker.
    Databank {
        /// Broker URL: mqtt://[user[:password]@]HOST:PORT or mqtts://...; a password left out
        /// of the URL is read from CAIDAN_MQTT_PASSWORD.
        #[arg(long)]
        mqtt: String,
        #[command(flatten)]
        tls: MqttTlsArgs,
        /// Store: sqlite:PATH, or postgres://USER[:PASSWORD]@HOST:PORT/DATABASE which
        /// several data banks may share.
        #[arg(long)]
        store: String,
        /// Access file (TOML): each brand's and operator's API token hash.
        #[arg(long)]
        brands: PathBuf,
        /// The key acknowledgements are signed with (`caidan-cloud ack-key` makes one);
        /// devices trust its public key in `trust.databank`.
        #[arg(long)]
        ack_key: PathBuf,
        #[command(flatten)]
        common: DatabankArgs,
    },
    /// Make an acknowledgement signing key: FILE (the secret, mode 0600) and FILE.pub.
    AckKey {
        #[arg(long)]
        out: PathBuf,
    },
    /// Fleet operator commands: keys, signed config pushes, status, staged rollouts.
    Fleet(FleetArgs),
    /// Broker and data bank in one process, for development.
    Dev {
        /// MQTT listen address of the embedded broker.
        #[arg(long, default_value = broker::DEFAULT_LISTEN)]
        listen: SocketAddr,
        /// Store: sqlite:PATH or postgres://USER[:PASSWORD]@HOST:PORT/DATABASE.
        #[arg(long, default_value = "sqlite:./caidan-cloud-data/databank.db")]
        store: String,
        /// Brands file; the embedded demo brands when omitted.
        #[arg(long)]
        brands: Option<PathBuf>,
        /// Acknowledgement signing key; the demo key (trusted by the demo agent) when omitted.
        #[arg(long)]
        ack_key: Option<PathBuf>,
        #[command(flatten)]
        common: DatabankArgs,
    },
}

#[derive(Args)]
struct DatabankArgs {
    /// HTTP listen address of the funnel API and dashboard.
    #[arg(long, default_value = "127.0.0.1:18080")]
    http: SocketAddr,
    /// HTTPS listen address serving the same API beside --http (needs --tls-cert and
    /// --tls-key).
    #[arg(long, requires_all = ["tls_cert", "tls_key"])]
    https: Option<SocketAddr>,
    /// Certificate chain (PEM, the server's certificate first) for --https.
    #[arg(long, requires = "https")]
    tls_cert: Option<PathBuf>,
    /// Private key (PEM) of that certificate, for --https.
    #[arg(long, requires = "https")]
    tls_key: Option<PathBuf>,
    /// MQTT client id, stable per ingester (default derived from the store path).
    #[arg(long)]
    client_id: Option<String>,
    /// Shared-subscription group; "none" subscribes without $share.
    #[arg(long, default_value = "databank")]
    share_group: String,
    /// Take event batches from this NATS server (nats://HOST:PORT) as a member of a NATS
    /// queue group (the share group's name, "databank" with none), so several data banks on
    /// a NATS cluster split the load; state and acknowledgements stay on --mqtt.
    #[arg(long, value_parser = nats_url)]
    nats: Option<String>,
    /// Largest accepted batch payload in bytes.
    #[arg(long, default_value_t = DEFAULT_MAX_BATCH_BYTES)]
    max_batch_bytes: usize,
    /// Days of raw events a PostgreSQL store keeps (whole day partitions are dropped);
    /// all of them when omitted. The funnel rollups are always kept.
    #[arg(long, value_parser = clap::value_parser!(u32).range(1..))]
    retention_days: Option<u32>,
    /// Test hook: abort once this many batches are committed, before acknowledging.
    #[arg(long, hide = true)]
    crash_after_commits: Option<u64>,
}

fn databank_config(
    broker: BrokerUrl,
    tls: TlsFiles,
    store: &str,
    access: Access,
    ack_key: SecretKey,
    args: DatabankArgs,
    shared: bool,
) -> anyhow::Result<DatabankConfig> {
    let mut store = parse_store_url(store)?;
    // One MQTT session per ingester: a SQLite store's path names it; ingesters sharing a
    // PostgreSQL database differ by where they serve HTTP.
    let identity = match &mut store {
        StoreUrl::Sqlite(path) => {
            anyhow::ensure!(
                args.retention_days.is_none(),
                "--retention-days needs a postgres:// store (a SQLite store keeps every event)"
            );
            let abs = std::path::absolute(&*path).unwrap_or_else(|_| path.clone());
            abs.to_string_lossy().into_owned()
        }
        StoreUrl::Postgres(options) => {
            options.retention_days = args.retention_days;
            format!(
                "{store_shown} {}",
                args.http,
                store_shown = StoreUrl::Postgres(options.clone())
            )
        }
    };
    let client_id = args.client_id.unwrap_or_else(|| {
        let digest = Sha256::digest(identity.as_bytes());
        format!("caidan-databank-{}", &hex::encode(digest)[..12])
    });
    let group = (shared && args.share_group != "none").then_some(args.share_group);
    Ok(DatabankConfig {
        ingest: IngestConfig {
            broker,
            tls,
            client_id,
            shared_group: group,
            limits: Limits {
                max_batch_bytes: args.max_batch_bytes,
            },
            crash_after_commits: args.crash_after_commits,
            ack_key,
            nats: args.nats,
        },
        store,
        http_listen: args.http,
        https: args
            .https
            .zip(args.tls_cert.zip(args.tls_key))
            .map(|(listen, (cert, key))| HttpsConfig { listen, cert, key }),
        access,
        clock: SystemClock::shared(),
    })
}

/// Prints where the data bank listens (tests read these lines), HTTPS first.
fn print_listeners(databank: &Databank) {
    if let Some(addr) = databank.https_addr() {
        println!("data bank https on {addr}");
    }
    println!("data bank http on {}", databank.http_addr());
}

async fn run_until_signal(databank: Databank) {
    let _ = tokio::signal::ctrl_c().await;
    tracing::info!("shutting down");
    databank.shutdown().await;
}

#[tokio::main]
async fn main() -> anyhow::Result<()> {
    let cli = Cli::parse();
    caidan_sync::logs::init(
        cli.log_json,
        "info,rumqttd=warn,rumqttd::server::broker=off",
    );
    match cli.command {
        Command::Broker { listen } => {
            let b = broker::start(listen).context("starting the development broker")?;
            println!("broker listening on {}", b.local_addr());
            println!(
                "data banks on this broker: use --share-group none (rumqttd shared groups panic on reconnect)"
            );
            let _ = tokio::signal::ctrl_c().await;
        }
        Command::Databank {
            mqtt,
            tls,
            store,
            brands,
            ack_key,
            common,
        } => {
            let broker = BrokerUrl::parse_env(&mqtt)?;
            let ack_key = SecretKey::load(&ack_key)?;
            let tls = tls.files();
            let access = Access::load(&brands)?;
            let cfg = databank_config(broker, tls, &store, access, ack_key, common, true)?;
            let databank = Databank::start(cfg).await?;
            print_listeners(&databank);
            run_until_signal(databank).await;
        }
        Command::AckKey { out } => {
            let key = SecretKey::generate();
            key.write(&out)?;
            println!(
                "secret key: {} (keep it on the data bank hosts only)",
                out.display()
            );
            println!("trust it on each device, in [trust] databank = [...]:");
            println!("{}", key.public());
        }
        Command::Dev {
            listen,
            store,
            brands,
            ack_key,
            common,
        } => {
            let b = broker::start(listen).context("starting the development broker")?;
            println!("broker listening on {}", b.local_addr());
            let access = match brands {
                Some(path) => Access::load(&path)?,
                None => Access::parse("embedded demo brands", DEMO_BRANDS)?,
            };
            let ack_key = match ack_key {
                Some(path) => SecretKey::load(&path)?,
                None => SecretKey::from_seed_hex(DEMO_ACK_KEY)?,
            };
            let addr = b.local_addr();
            let broker: BrokerUrl = format!("mqtt://{addr}").parse()?;
            // The in-process broker gets a plain subscription: one ingester needs no
            // sharing, and rumqttd's shared groups are the less-tested path across
            // persistent-session reconnects.
            let cfg = databank_config(
                broker,
                TlsFiles::default(),
                &store,
                access,
                ack_key,
                common,
                false,
            )?;
            let databank = Databank::start(cfg).await?;
            print_listeners(&databank);
            println!(
                "dashboard: http://{}/brands/lumi-cola/dashboard (sign in with demo-token-lumi)",
                databank.http_addr()
            );
            run_until_signal(databank).await;
        }
        Command::Fleet(args) => fleet::cli::run(args).await?,
    }
    Ok(())
}

/// A `nats://HOST:PORT` URL.
fn nats_url(text: &str) -> Result<String, String> {
    let rest = text
        .strip_prefix("nats://")
        .ok_or_else(|| format!("{text}: expected nats://HOST:PORT"))?;
    let (host, port) = rest
        .rsplit_once(':')
        .ok_or_else(|| format!("{text}: expected nats://HOST:PORT (the port is missing)"))?;
    if host.is_empty() || port.parse::<u16>().is_err() {
        return Err(format!("{text}: expected nats://HOST:PORT"));
    }
    Ok(text.to_owned())
}
