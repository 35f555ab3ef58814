//! A real NATS server with JetStream and its MQTT listener, on free ports.

use std::path::Path;
use std::process::{Command, Stdio};
use std::time::Duration;

use crate::net::{free_port, listening, loopback};
use crate::proc::{Proc, require};
use crate::wait::wait_until;

/// A `nats-server` process in its own folder, killed on drop.
pub struct Nats {
    pub port: u16,
    pub mqtt_port: u16,
    pub proc: Proc,
}

impl Nats {
    /// Starts NATS with JetStream (store under `dir`) and MQTT enabled.
    pub fn start(dir: &Path) -> Nats {
        for _ in 0..5 {
            let (port, mqtt_port) = (free_port(), free_port());
            let store = dir.join(format!("nats-{port}"));
            let conf = dir.join(format!("nats-{port}.conf"));
            std::fs::write(
                &conf,
                format!(
                    "server_name: caidan-test-{port}\nlisten: 127.0.0.1:{port}\n\
                     jetstream {{ store_dir: \"{}\" }}\nmqtt {{ listen: 127.0.0.1:{mqtt_port} }}\n",
                    store.display()
                ),
            )
            .expect("write nats.conf");
            let child = Command::new(require("nats-server", "nats-server"))
                .arg("-c")
                .arg(&conf)
                .stdout(Stdio::null())
                .stderr(Stdio::null())
                .spawn()
                .expect("spawn nats-server");
            let mut proc = Proc { child, log: None };
            let addr = loopback(mqtt_port);
            if wait_until(Duration::from_secs(15), || listening(addr) || proc.exited())
                && !proc.exited()
            {
                return Nats {
                    port,
                    mqtt_port,
                    proc,
                };
            }
        }
        panic!("nats-server did not start; see {dir:?}");
    }

    /// `mqtt://127.0.0.1:MQTT_PORT`.
    pub fn url(&self) -> String {
        format!("mqtt://127.0.0.1:{}", self.mqtt_port)
    }
}
