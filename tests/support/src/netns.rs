//! A private network namespace joined to the host by veth pairs, for real network faults:
//! a link cut (the host end set down), slowed and made lossy (tc netem on both ends), and
//! restored. Needs root and iproute2 (`ip`, `tc`). Everything made is removed on drop, also
//! when the test panics.

use std::net::Ipv4Addr;
use std::path::PathBuf;
use std::process::Command;
use std::sync::atomic::{AtomicU32, Ordering};

use crate::proc::find_on_path;

/// Namespaces made by this process, so two in one test binary get distinct names.
static MADE: AtomicU32 = AtomicU32::new(0);

/// The prefix of every namespace this helper makes: `cdt-<pid>-<n>`.
const PREFIX: &str = "cdt-";

/// One veth pair: `host_if` (host side, `host_ip`) and `ns_if` (in the namespace, `ns_ip`),
/// a /30 of 10.231.0.0/16.
#[derive(Debug, Clone)]
pub struct Veth {
    pub host_if: String,
    pub ns_if: String,
    pub host_ip: Ipv4Addr,
    pub ns_ip: Ipv4Addr,
    ns: String,
}

/// A network namespace with its veth pairs, removed on drop.
#[derive(Debug)]
pub struct Netns {
    pub name: String,
    pub links: Vec<Veth>,
}

impl Netns {
    /// Creates a uniquely named namespace with `links` veth pairs, each up with its /30,
    /// `lo` up inside. Only the first pair carries a default route, so the namespace's traffic
    /// to anything but the other pairs' host addresses leaves through it.
    pub fn create(links: usize) -> Result<Netns, String> {
        let ip = tool("ip")?;
        remove_orphans(&ip);
        let pid = std::process::id();
        let n = MADE.fetch_add(1, Ordering::Relaxed);
        let mut ns = Netns {
            name: format!("{PREFIX}{pid}-{n}"),
            links: Vec::new(),
        };
        run(&ip, &["netns", "add", &ns.name])?;
        run(&ip, &["-n", &ns.name, "link", "set", "lo", "up"])?;
        let taken = run(&ip, &["-4", "-o", "addr", "show"])?;
        // The third octet comes from the pid, the fourth steps through /30s; a block another
        // namespace (or anything) on the host already uses is skipped.
        let mut block = (pid % 256) * 64 + (n % 16) * 4;
        for i in 0..links {
            let (host_ip, ns_ip) = loop {
                let base = (10 << 24) | (231 << 16) | ((block % 16384) * 4);
                block += 1;
                let host_ip = Ipv4Addr::from(base + 1);
                let ns_ip = Ipv4Addr::from(base + 2);
                if !taken.contains(&format!("inet {host_ip}/"))
                    && !taken.contains(&format!("inet {ns_ip}/"))
                {
                    break (host_ip, ns_ip);
                }
            };
            // Interface names are at most 15 bytes.
            let tag = format!("{:x}{n:x}{i}", pid % 0x10_0000);
            let veth = Veth {
                host_if: format!("cdh{tag}"),
                ns_if: format!("cdn{tag}"),
                host_ip,
                ns_ip,
                ns: ns.name.clone(),
            };
            // Pushed before it exists so drop removes a half-made pair too.
            ns.links.push(veth.clone());
            run(
                &ip,
                &[
                    "link",
                    "add",
                    &veth.host_if,
                    "type",
                    "veth",
                    "peer",
                    "name",
                    &veth.ns_if,
                    "netns",
                    &ns.name,
                ],
            )?;
            run(
                &ip,
                &[
                    "addr",
                    "add",
                    &format!("{host_ip}/30"),
                    "dev",
                    &veth.host_if,
                ],
            )?;
            run(
                &ip,
                &[
                    "-n",
                    &ns.name,
                    "addr",
                    "add",
                    &format!("{ns_ip}/30"),
                    "dev",
                    &veth.ns_if,
                ],
            )?;
            run(&ip, &["link", "set", &veth.host_if, "up"])?;
            run(&ip, &["-n", &ns.name, "link", "set", &veth.ns_if, "up"])?;
            if i == 0 {
                run(
                    &ip,
                    &[
                        "-n",
                        &ns.name,
                        "route",
                        "add",
                        "default",
                        "via",
                        &host_ip.to_string(),
                    ],
                )?;
            }
        }
        Ok(ns)
    }

    /// [`Netns::create`], or `None` with the reason on stderr so the caller can skip. Under
    /// `CI=true` a namespace that cannot be made fails the test instead: CI runs as root
    /// with iproute2, so there it is a broken setup, not a missing one.
    pub fn create_or_skip(links: usize) -> Option<Netns> {
        match Netns::create(links) {
            Ok(ns) => Some(ns),
            Err(e) if std::env::var("CI").is_ok_and(|v| v == "true") => {
                panic!("could not make a network namespace (needs root and iproute2): {e}")
            }
            Err(e) => {
                eprintln!(
                    "skipped: could not make a network namespace (needs root and iproute2): {e}"
                );
                None
            }
        }
    }

    /// `program args...` run inside the namespace: `ip netns exec NAME program args...`.
    /// `ip netns exec` execs the program, so the child's pid is the program's own.
    pub fn command(&self, program: impl AsRef<std::ffi::OsStr>) -> Command {
        let mut cmd = Command::new(tool("ip").unwrap_or_else(|e| panic!("{e}")));
        cmd.args(["netns", "exec", &self.name]).arg(program);
        cmd
    }

    /// The prefix that starts a program inside the namespace.
    pub fn exec_prefix(&self) -> Vec<String> {
        let ip = tool("ip").unwrap_or_else(|e| panic!("{e}"));
        vec![
            ip.display().to_string(),
            "netns".into(),
            "exec".into(),
            self.name.clone(),
        ]
    }

    /// The `i`th veth pair.
    pub fn link(&self, i: usize) -> &Veth {
        &self.links[i]
    }
}

impl Veth {
    /// Sets the host end down: nothing passes either way until [`Veth::restore`].
    pub fn cut(&self) {
        must(&["link", "set", &self.host_if, "down"]);
    }

    /// Sets the host end up again.
    pub fn restore(&self) {
        must(&["link", "set", &self.host_if, "up"]);
    }

    /// `delay_ms` more latency and `loss_pct` random loss each way (tc netem on both ends).
    /// An error when the kernel has no netem (`sch_netem`), so the caller can say so and
    /// fall back to [`Veth::throttle`].
    pub fn slow(&self, delay_ms: u32, loss_pct: u32) -> Result<(), String> {
        let (delay, loss) = (format!("{delay_ms}ms"), format!("{loss_pct}%"));
        self.qdisc(&["netem", "delay", &delay, "loss", &loss])
    }

    /// A thin, queueing link each way (tc tbf on both ends): at most `rate_kbit`, and packets
    /// that would wait more than `queue_ms` in the queue are dropped. So it delays (up to
    /// `queue_ms`) and loses (the tail) under load: netem's effects without netem, for
    /// kernels built without it.
    pub fn throttle(&self, rate_kbit: u32, queue_ms: u32) -> Result<(), String> {
        let (rate, latency) = (format!("{rate_kbit}kbit"), format!("{queue_ms}ms"));
        self.qdisc(&["tbf", "rate", &rate, "burst", "4kb", "latency", &latency])
    }

    /// Puts `qdisc` at the root of both ends.
    fn qdisc(&self, qdisc: &[&str]) -> Result<(), String> {
        let tc = tool("tc")?;
        let host = [&["qdisc", "replace", "dev", &self.host_if, "root"], qdisc].concat();
        run(&tc, &host)?;
        let inside = [
            &[
                "-n",
                &self.ns,
                "qdisc",
                "replace",
                "dev",
                &self.ns_if,
                "root",
            ],
            qdisc,
        ]
        .concat();
        run(&tc, &inside).inspect_err(|_| self.clear())?;
        Ok(())
    }

    /// Removes what [`Veth::slow`] or [`Veth::throttle`] added.
    pub fn clear(&self) {
        let tc = tool("tc").unwrap_or_else(|e| panic!("{e}"));
        // Deleting a root qdisc that is not there fails; that is the state wanted.
        let _ = run(&tc, &["qdisc", "del", "dev", &self.host_if, "root"]);
        let _ = run(
            &tc,
            &["-n", &self.ns, "qdisc", "del", "dev", &self.ns_if, "root"],
        );
    }
}

impl Drop for Netns {
    fn drop(&mut self) {
        let Ok(ip) = tool("ip") else { return };
        // Deleting the namespace deletes its veth ends and so their peers; the host ends are
        // deleted by name too, in case a process still holds the namespace open.
        let _ = run(&ip, &["netns", "del", &self.name]);
        for l in &self.links {
            let _ = run(&ip, &["link", "del", &l.host_if]);
        }
    }
}

/// Removes namespaces left by test processes that are gone (killed before their drop ran).
fn remove_orphans(ip: &PathBuf) {
    let Ok(list) = run(ip, &["netns", "list"]) else {
        return;
    };
    for name in list.lines().filter_map(|l| l.split_whitespace().next()) {
        let Some(pid) = name
            .strip_prefix(PREFIX)
            .and_then(|r| r.split('-').next())
            .and_then(|p| p.parse::<u32>().ok())
        else {
            continue;
        };
        if !std::path::Path::new(&format!("/proc/{pid}")).exists() {
            let _ = run(ip, &["netns", "del", name]);
        }
    }
}

fn tool(name: &str) -> Result<PathBuf, String> {
    find_on_path(name).ok_or_else(|| format!("{name} is not installed (apt-get install iproute2)"))
}

/// Runs `program args`; its stdout, or an error naming the command and what it printed.
fn run(program: &PathBuf, args: &[&str]) -> Result<String, String> {
    let out = Command::new(program)
        .args(args)
        .output()
        .map_err(|e| format!("{} {}: {e}", program.display(), args.join(" ")))?;
    if out.status.success() {
        Ok(String::from_utf8_lossy(&out.stdout).into_owned())
    } else {
        Err(format!(
            "{} {}: {}",
            program.display(),
            args.join(" "),
            String::from_utf8_lossy(&out.stderr).trim()
        ))
    }
}

/// `ip args`, panicking with the reason when it fails.
fn must(args: &[&str]) {
    let ip = tool("ip").unwrap_or_else(|e| panic!("{e}"));
    run(&ip, args).unwrap_or_else(|e| panic!("{e}"));
}
