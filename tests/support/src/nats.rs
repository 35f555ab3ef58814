//! A real NATS server with JetStream and its MQTT listener, on free ports.

use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::time::Duration;

use crate::net::{free_port, listening, loopback};
use crate::proc::{Proc, require};
use crate::wait::wait_until;

/// How long a fresh node may take to report healthy.
const BOOT_HEALTH: Duration = Duration::from_secs(30);
/// How long a restarted node may take: `/healthz` waits until every stream and consumer
/// replica it holds (the MQTT sessions' included) has caught up with the other nodes,
/// which on a loaded 2-core runner took longer than a fresh start.
const RESTART_HEALTH: Duration = Duration::from_secs(120);

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
            let mut proc = spawn(&conf);
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

/// `nats-server -c CONF`, its log (stderr) beside the config as `CONF.log`, so a test that
/// fails on a node shows why.
fn spawn(conf: &Path) -> Proc {
    let mut cmd = Command::new(require("nats-server", "nats-server"));
    cmd.arg("-c").arg(conf).stdout(Stdio::null());
    Proc::spawn_logged(&mut cmd, &conf.with_extension("log")).expect("spawn nats-server")
}

/// One node of a [`NatsCluster`]: its ports, its config file and, while it runs, its process.
pub struct NatsNode {
    pub name: String,
    pub port: u16,
    pub mqtt_port: u16,
    pub monitor_port: u16,
    conf: PathBuf,
    proc: Option<Proc>,
}

impl NatsNode {
    /// `mqtt://127.0.0.1:MQTT_PORT` of this node.
    pub fn url(&self) -> String {
        format!("mqtt://127.0.0.1:{}", self.mqtt_port)
    }

    fn spawn(&mut self) {
        self.proc = Some(spawn(&self.conf));
    }

    /// Whether the node serves MQTT and reports itself healthy, JetStream included.
    fn healthy(&mut self) -> bool {
        if self.proc.as_mut().is_none_or(Proc::exited) || !listening(loopback(self.mqtt_port)) {
            return false;
        }
        http_ok(self.monitor_port, "/healthz")
    }
}

/// A bare HTTP/1.0 GET on loopback that answers whether the status was 200.
fn http_ok(port: u16, path: &str) -> bool {
    use std::io::{Read, Write};
    let Ok(mut s) = std::net::TcpStream::connect_timeout(&loopback(port), Duration::from_secs(1))
    else {
        return false;
    };
    let _ = s.set_read_timeout(Some(Duration::from_secs(2)));
    if write!(s, "GET {path} HTTP/1.0\r\nHost: 127.0.0.1\r\n\r\n").is_err() {
        return false;
    }
    let mut head = [0u8; 12];
    s.read_exact(&mut head).is_ok() && head.starts_with(b"HTTP/1.") && &head[9..12] == b"200"
}

/// Three `nats-server` nodes routed into one cluster, each with JetStream (its own store
/// folder) and an MQTT listener, on free ports; every node is killed on drop. MQTT on a NATS
/// cluster keeps its sessions and QoS 1 messages in JetStream streams replicated over the
/// nodes, so a client may connect to any node.
pub struct NatsCluster {
    pub nodes: Vec<NatsNode>,
}

impl NatsCluster {
    /// Starts the three nodes and waits until each serves MQTT and is healthy.
    pub fn start(dir: &Path) -> NatsCluster {
        const NODES: usize = 3;
        let cluster_ports: Vec<u16> = (0..NODES).map(|_| free_port()).collect();
        let routes: Vec<String> = cluster_ports
            .iter()
            .map(|p| format!("nats-route://127.0.0.1:{p}"))
            .collect();
        let mut nodes = Vec::new();
        for (i, cluster_port) in cluster_ports.iter().enumerate() {
            let name = format!("caidan-n{}", i + 1);
            let (port, mqtt_port, monitor_port) = (free_port(), free_port(), free_port());
            let store = dir.join(format!("{name}-js"));
            let conf = dir.join(format!("{name}.conf"));
            std::fs::write(
                &conf,
                format!(
                    "server_name: {name}\nlisten: 127.0.0.1:{port}\nhttp: 127.0.0.1:{monitor_port}\n\
                     jetstream {{ store_dir: \"{}\" }}\n\
                     cluster {{ name: caidan-test, listen: 127.0.0.1:{cluster_port}, routes: [{}] }}\n\
                     mqtt {{ listen: 127.0.0.1:{mqtt_port} }}\n",
                    store.display(),
                    routes.join(", ")
                ),
            )
            .expect("write node config");
            nodes.push(NatsNode {
                name,
                port,
                mqtt_port,
                monitor_port,
                conf,
                proc: None,
            });
        }
        for n in &mut nodes {
            n.spawn();
        }
        let mut cluster = NatsCluster { nodes };
        for i in 0..NODES {
            cluster.wait_healthy(i, BOOT_HEALTH);
        }
        cluster
    }

    fn wait_healthy(&mut self, i: usize, within: Duration) {
        let node = &mut self.nodes[i];
        assert!(
            wait_until(within, || node.healthy()),
            "NATS node {} did not become healthy (config {}):\n{}",
            node.name,
            node.conf.display(),
            node.proc.as_ref().map(Proc::log_text).unwrap_or_default()
        );
    }

    /// `kill -9` of node `i`.
    pub fn kill9(&mut self, i: usize) {
        if let Some(mut p) = self.nodes[i].proc.take() {
            p.kill9();
        }
    }

    /// Starts node `i` again on its ports and store, and waits until it is healthy.
    pub fn restart(&mut self, i: usize) {
        self.kill9(i);
        self.nodes[i].spawn();
        self.wait_healthy(i, RESTART_HEALTH);
    }
}
