//! `caidan-cloud fleet ...`: the operator commands' arguments, and what each prints on
//! stdout (warnings and errors go to stderr).

use std::path::PathBuf;
use std::time::Duration;

use caidan_sync::broker_url::BrokerUrl;
use caidan_sync::contract::Name;
use clap::{Args, Subcommand};

use super::abort::AbortCriteria;
use super::command::{
    PushOptions, RollbackOptions, RolloutOptions, Session, Signing, push, rollback, rollout, status,
};
use super::keygen::keygen;
use super::status::table;
use super::{FleetError, Target};
use crate::cli::MqttTlsArgs;

/// The operator commands.
#[derive(Debug, Args)]
pub struct FleetArgs {
    #[command(subcommand)]
    pub command: FleetCommand,
}

#[derive(Debug, Subcommand)]
pub enum FleetCommand {
    /// Make an operator signing key pair: DIR/operator.key (mode 0600) and DIR/operator.pub.
    Keygen {
        /// Folder for the pair (created if missing); an existing pair is never overwritten.
        #[arg(long, value_name = "DIR")]
        out: PathBuf,
    },
    /// Sign a config file as the next version of a layer and publish it retained.
    Push(PushArgs),
    /// Every device's retained state: versions per layer, last refusal, outbox, storage.
    Status(StatusArgs),
    /// Roll a layer out in waves; halt and roll back when too many devices refuse it.
    Rollout(RolloutArgs),
    /// Publish the settings that ran before again, re-signed above every version seen.
    Rollback(RollbackArgs),
}

/// Which fleet, on which broker.
#[derive(Debug, Args)]
pub struct BrokerArgs {
    /// The fleet (topics under caidan/v1/FLEET).
    #[arg(long, value_name = "NAME", default_value = "demo")]
    pub fleet: Name,
    /// Broker URL: mqtt://[user[:password]@]HOST:PORT or mqtts://...; a password left out of
    /// the URL is read from CAIDAN_MQTT_PASSWORD.
    #[arg(long, value_name = "URL", default_value = "mqtt://127.0.0.1:1883")]
    pub mqtt: String,
    #[command(flatten)]
    pub tls: MqttTlsArgs,
}

impl BrokerArgs {
    fn session(self) -> Result<Session, FleetError> {
        Ok(Session {
            fleet: self.fleet,
            broker: BrokerUrl::parse_env(&self.mqtt)?,
            tls: self.tls.files(),
        })
    }
}

/// What a signing command addresses and signs with.
#[derive(Debug, Args)]
pub struct SigningArgs {
    /// fleet, group:NAME or device:ID.
    #[arg(long, value_name = "TARGET")]
    pub target: Target,
    /// The operator's secret key (`fleet keygen` makes one).
    #[arg(long, value_name = "KEY")]
    pub key: PathBuf,
    /// Folder of the history of signed documents per target (what a rollback restores).
    #[arg(long = "state", value_name = "DIR", default_value = "./.caidan-fleet")]
    pub state: PathBuf,
}

impl SigningArgs {
    fn signing(self) -> Signing {
        Signing {
            target: self.target,
            key: self.key,
            state_dir: self.state,
        }
    }
}

#[derive(Debug, Args)]
pub struct PushArgs {
    #[command(flatten)]
    pub broker: BrokerArgs,
    #[command(flatten)]
    pub signing: SigningArgs,
    /// The config file (TOML); its top-level keys become the layer's settings.
    #[arg(long, value_name = "CONFIG")]
    pub file: PathBuf,
}

#[derive(Debug, Args)]
pub struct StatusArgs {
    #[command(flatten)]
    pub broker: BrokerArgs,
    /// A JSON array, one object per device, instead of the table.
    #[arg(long)]
    pub json: bool,
}

#[derive(Debug, Args)]
pub struct RolloutArgs {
    #[command(flatten)]
    pub broker: BrokerArgs,
    #[command(flatten)]
    pub signing: SigningArgs,
    /// The config file (TOML), as for push.
    #[arg(long, value_name = "CONFIG")]
    pub file: PathBuf,
    /// Share of the devices in scope that get it first (rounded up, at least one).
    #[arg(long, value_name = "PERCENT", default_value_t = 10, value_parser = clap::value_parser!(u8).range(0..=100))]
    pub canary: u8,
    /// Waves after the canary, each about twice the one before.
    #[arg(long, value_name = "N", default_value_t = 3, value_parser = clap::value_parser!(u16).range(0..=64))]
    pub waves: u16,
    /// Halt when rejected plus timed-out devices reach this share of finished ones.
    #[arg(long, value_name = "PERCENT", default_value_t = 20, value_parser = clap::value_parser!(u8).range(0..=100))]
    pub halt_on: u8,
    /// Finished devices needed before --halt-on is checked.
    #[arg(long, value_name = "N", default_value_t = 1)]
    pub min_devices: usize,
    /// Seconds a device has to answer before it counts as timed out.
    #[arg(long, value_name = "SECS", default_value_t = 60, value_parser = clap::value_parser!(u64).range(1..=86_400))]
    pub wave_timeout: u64,
}

#[derive(Debug, Args)]
pub struct RollbackArgs {
    #[command(flatten)]
    pub broker: BrokerArgs,
    #[command(flatten)]
    pub signing: SigningArgs,
    /// Restore this version's settings (from the history) instead of the previous ones.
    #[arg(long, value_name = "V")]
    pub to_version: Option<u64>,
    /// Seconds to wait for the devices' answers.
    #[arg(long, value_name = "SECS", default_value_t = 30)]
    pub wait: u64,
}

/// Runs one operator command. A halted rollout is an error after its summary is printed.
pub async fn run(args: FleetArgs) -> Result<(), FleetError> {
    match args.command {
        FleetCommand::Keygen { out } => {
            let k = keygen(&out)?;
            println!(
                "secret key: {} (mode 0600; keep it off the devices)",
                k.secret_path.display()
            );
            println!("public key: {} ({})", k.public, k.public_path.display());
            println!("key id: {}", k.id);
            println!("trust it in each agent's config:");
            println!("{}", k.trust_line());
        }
        FleetCommand::Push(a) => {
            let target = a.signing.target.to_string();
            let opts = PushOptions {
                signing: a.signing.signing(),
                file: a.file,
            };
            let r = push(&a.broker.session()?, &opts).await?;
            println!("pushed {target} version {} to {}", r.version, r.topic);
            println!("digest {}", r.digest);
        }
        FleetCommand::Status(a) => {
            let fleet = a.broker.fleet.clone();
            let rows = status(&a.broker.session()?).await?;
            if a.json {
                println!(
                    "{}",
                    serde_json::to_string_pretty(&rows).expect("rows always serialise")
                );
            } else if rows.is_empty() {
                eprintln!("no device of fleet {fleet} has a retained state");
            } else {
                print!("{}", table(&rows));
            }
        }
        FleetCommand::Rollout(a) => {
            let opts = RolloutOptions {
                signing: a.signing.signing(),
                file: a.file,
                canary_percent: a.canary,
                waves: a.waves.into(),
                criteria: AbortCriteria {
                    halt_on_percent: a.halt_on,
                    min_devices: a.min_devices,
                },
                wave_timeout: Duration::from_secs(a.wave_timeout),
            };
            let summary = rollout(&a.broker.session()?, &opts).await?;
            print!("{summary}");
            if let Some(h) = summary.halt {
                return Err(FleetError::Halted(h.to_string()));
            }
        }
        FleetCommand::Rollback(a) => {
            let opts = RollbackOptions {
                signing: a.signing.signing(),
                to_version: a.to_version,
                wait: Duration::from_secs(a.wait),
            };
            print!("{}", rollback(&a.broker.session()?, &opts).await?);
        }
    }
    Ok(())
}
