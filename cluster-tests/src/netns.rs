//! A private network for a test cluster: one network namespace per node on a bridge, a client
//! namespace for the workload, and nftables rules for partitions.
//!
//! Layout (all inside namespaces this module creates; nothing is added to the host's network
//! namespace, nothing is routed off the box):
//!
//! ```text
//!   spate-<pid>-<k>-hub   bridge br0 (no address)
//!     ├── veth vn<i> <──> eth0 in spate-<pid>-<k>-n<i>   10.77.0.<i+1>/24  (node i)
//!     └── veth vc    <──> eth0 in spate-<pid>-<k>-cli    10.77.0.100/24    (test client)
//! ```
//!
//! Partitions are nftables `drop` rules in the *input* hook of the receiving node's namespace
//! (table `inet spate_chaos`), so a directed drop `a -> b` silently discards every packet from
//! a's address arriving at b. Client traffic is never dropped (faults are between nodes, as in
//! Jepsen). [`NetLab::heal`] deletes the table everywhere.
//!
//! Teardown: [`Drop`] deletes every namespace it created (which removes the veths, the bridge
//! and the rules with them). Namespaces left by a test process that died without unwinding
//! (SIGKILL) are removed by the next [`NetLab::create`]: their names carry the creator's pid.
//!
//! [`NetLab::available`] says whether this works here (root, `ip netns`, `nft`); otherwise the
//! harness falls back to distinct 127.0.0.x addresses and the nemesis only uses process faults.

use std::collections::BTreeSet;
use std::fs::File;
use std::io::Write;
use std::net::Ipv4Addr;
use std::os::fd::AsRawFd;
use std::process::{Command, Stdio};
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::OnceLock;

use anyhow::{bail, Context, Result};

const PREFIX: &str = "spate-";
static LAB_SEQ: AtomicUsize = AtomicUsize::new(0);

/// Run a command, fail with its stderr.
fn run(cmd: &str, args: &[&str]) -> Result<()> {
    let out = Command::new(cmd)
        .args(args)
        .stdin(Stdio::null())
        .output()
        .with_context(|| format!("running {cmd}"))?;
    if !out.status.success() {
        bail!(
            "{cmd} {}: {}: {}",
            args.join(" "),
            out.status,
            String::from_utf8_lossy(&out.stderr).trim()
        );
    }
    Ok(())
}

/// Run `nft -f -` inside a namespace with `script` on stdin.
fn nft_in(ns: &str, script: &str) -> Result<()> {
    let mut child = Command::new("ip")
        .args(["netns", "exec", ns, "nft", "-f", "-"])
        .stdin(Stdio::piped())
        .stdout(Stdio::null())
        .stderr(Stdio::piped())
        .spawn()
        .context("spawning nft")?;
    child
        .stdin
        .take()
        .expect("stdin")
        .write_all(script.as_bytes())?;
    let out = child.wait_with_output()?;
    if !out.status.success() {
        bail!(
            "nft in {ns}: {}: {}\nscript:\n{script}",
            out.status,
            String::from_utf8_lossy(&out.stderr).trim()
        );
    }
    Ok(())
}

fn pid_alive(pid: i32) -> bool {
    // SAFETY: signal 0 only checks for existence.
    let rc = unsafe { libc::kill(pid, 0) };
    rc == 0 || std::io::Error::last_os_error().raw_os_error() == Some(libc::EPERM)
}

/// Delete namespaces named `spate-<pid>-...` whose creating process is gone.
pub fn remove_stale_namespaces() {
    let Ok(out) = Command::new("ip").args(["netns", "list"]).output() else {
        return;
    };
    for line in String::from_utf8_lossy(&out.stdout).lines() {
        let name = line.split_whitespace().next().unwrap_or("");
        let Some(rest) = name.strip_prefix(PREFIX) else {
            continue;
        };
        let Some(pid) = rest.split('-').next().and_then(|p| p.parse::<i32>().ok()) else {
            continue;
        };
        if !pid_alive(pid) {
            let _ = run("ip", &["netns", "del", name]);
        }
    }
}

/// A directed link drop: packets from node `from` to node `to` are discarded.
pub type Drop2 = (usize, usize);

/// The private network of one cluster.
pub struct NetLab {
    base: String,
    nodes: usize,
    namespaces: Vec<String>,
    ns_files: Vec<File>,
    client_ns: File,
    /// The directed drops currently installed.
    blocked: std::sync::Mutex<BTreeSet<Drop2>>,
}

impl NetLab {
    /// Whether namespaces + nftables can be used: running as root, `ip netns` works, `nft`
    /// exists, and `SPATE_NETNS` is not `0`. Probed once per process.
    pub fn available() -> bool {
        static OK: OnceLock<bool> = OnceLock::new();
        *OK.get_or_init(|| {
            if std::env::var("SPATE_NETNS").is_ok_and(|v| v == "0") {
                return false;
            }
            // SAFETY: geteuid has no preconditions.
            if unsafe { libc::geteuid() } != 0 {
                return false;
            }
            let probe = format!("{PREFIX}{}-probe", std::process::id());
            let ok = run("ip", &["netns", "add", &probe]).is_ok()
                && run("ip", &["netns", "exec", &probe, "nft", "list", "ruleset"]).is_ok();
            let _ = run("ip", &["netns", "del", &probe]);
            if !ok {
                eprintln!(
                    "netns: not usable here (need root, iproute2 and nftables: \
                     apt-get install -y nftables); falling back to 127.0.0.x"
                );
            }
            ok
        })
    }

    /// Create the bridge, one namespace per node and the client namespace.
    pub fn create(nodes: usize) -> Result<NetLab> {
        assert!(nodes > 0 && nodes < 99, "1..=98 nodes");
        remove_stale_namespaces();
        let base = format!(
            "{PREFIX}{}-{}",
            std::process::id(),
            LAB_SEQ.fetch_add(1, Ordering::Relaxed)
        );
        let mut lab = NetLab {
            base: base.clone(),
            nodes,
            namespaces: Vec::new(),
            ns_files: Vec::new(),
            // Placeholder until the client namespace exists (replaced below).
            client_ns: File::open("/proc/self/ns/net")?,
            blocked: Default::default(),
        };
        // On any error below, Drop removes what was created so far.
        let hub = format!("{base}-hub");
        lab.add_ns(&hub)?;
        run("ip", &["-n", &hub, "link", "add", "br0", "type", "bridge"])?;
        run("ip", &["-n", &hub, "link", "set", "br0", "up"])?;
        let attach = |lab: &mut NetLab, ns: &str, hub_if: &str, addr: Ipv4Addr| -> Result<()> {
            lab.add_ns(ns)?;
            run(
                "ip",
                &[
                    "-n", &hub, "link", "add", hub_if, "type", "veth", "peer", "name", "eth0",
                    "netns", ns,
                ],
            )?;
            run("ip", &["-n", &hub, "link", "set", hub_if, "master", "br0"])?;
            run("ip", &["-n", &hub, "link", "set", hub_if, "up"])?;
            run("ip", &["-n", ns, "link", "set", "lo", "up"])?;
            run(
                "ip",
                &[
                    "-n",
                    ns,
                    "addr",
                    "add",
                    &format!("{addr}/24"),
                    "dev",
                    "eth0",
                ],
            )?;
            run("ip", &["-n", ns, "link", "set", "eth0", "up"])?;
            Ok(())
        };
        for i in 0..nodes {
            let ns = lab.node_ns(i);
            attach(&mut lab, &ns, &format!("vn{i}"), Self::node_ip(i))?;
        }
        let cli = format!("{base}-cli");
        attach(&mut lab, &cli, "vc", Self::client_ip())?;
        lab.client_ns = File::open(format!("/run/netns/{cli}"))?;
        for i in 0..nodes {
            lab.ns_files
                .push(File::open(format!("/run/netns/{}", lab.node_ns(i)))?);
        }
        Ok(lab)
    }

    fn add_ns(&mut self, name: &str) -> Result<()> {
        run("ip", &["netns", "add", name])?;
        self.namespaces.push(name.to_string());
        Ok(())
    }

    /// Node `i`'s namespace name.
    pub fn node_ns(&self, i: usize) -> String {
        format!("{}-n{i}", self.base)
    }

    /// Node `i`'s address (10.77.0.<i+1>).
    pub fn node_ip(i: usize) -> Ipv4Addr {
        Ipv4Addr::new(10, 77, 0, (i + 1) as u8)
    }

    /// The client namespace's address.
    pub fn client_ip() -> Ipv4Addr {
        Ipv4Addr::new(10, 77, 0, 100)
    }

    /// Number of nodes.
    pub fn nodes(&self) -> usize {
        self.nodes
    }

    /// The raw fd of node `i`'s namespace (for `setns` between fork and exec).
    pub fn node_ns_fd(&self, i: usize) -> i32 {
        self.ns_files[i].as_raw_fd()
    }

    /// Move the calling thread into the client namespace (sockets it creates from now on live
    /// there). Use it from `tokio::runtime::Builder::on_thread_start`.
    pub fn enter_client(&self) -> std::io::Result<()> {
        // SAFETY: setns on a valid namespace fd; affects only the calling thread.
        let rc = unsafe { libc::setns(self.client_ns.as_raw_fd(), libc::CLONE_NEWNET) };
        if rc != 0 {
            return Err(std::io::Error::last_os_error());
        }
        Ok(())
    }

    /// The raw fd of the client namespace.
    pub fn client_ns_fd(&self) -> i32 {
        self.client_ns.as_raw_fd()
    }

    /// Replace the installed drops by `drops` (directed `(from, to)` node pairs).
    pub fn set_drops(&self, drops: &BTreeSet<Drop2>) -> Result<()> {
        let mut cur = self.blocked.lock().unwrap_or_else(|e| e.into_inner());
        for to in 0..self.nodes {
            let srcs: Vec<String> = drops
                .iter()
                .filter(|(f, t)| *t == to && *f != to)
                .map(|(f, _)| Self::node_ip(*f).to_string())
                .collect();
            let had = cur.iter().any(|(_, t)| *t == to);
            if srcs.is_empty() && !had {
                continue;
            }
            // `add table` + `delete table` makes the delete succeed whether or not it exists.
            let mut script =
                String::from("add table inet spate_chaos\ndelete table inet spate_chaos\n");
            if !srcs.is_empty() {
                script.push_str(&format!(
                    "table inet spate_chaos {{\n  chain input {{\n    type filter hook input \
                     priority -10; policy accept;\n    ip saddr {{ {} }} drop\n  }}\n}}\n",
                    srcs.join(", ")
                ));
            }
            nft_in(&self.node_ns(to), &script)?;
        }
        *cur = drops.clone();
        Ok(())
    }

    /// Remove every drop.
    pub fn heal(&self) -> Result<()> {
        self.set_drops(&BTreeSet::new())
    }

    /// The drops currently installed.
    pub fn drops(&self) -> BTreeSet<Drop2> {
        self.blocked
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .clone()
    }
}

impl std::fmt::Debug for NetLab {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("NetLab")
            .field("base", &self.base)
            .field("nodes", &self.nodes)
            .finish()
    }
}

impl Drop for NetLab {
    fn drop(&mut self) {
        for ns in self.namespaces.iter().rev() {
            if let Err(e) = run("ip", &["netns", "del", ns]) {
                eprintln!("netns teardown: {e:#}");
            }
        }
    }
}

/// Directed drops that split the nodes into `groups`: every pair in different groups is cut
/// both ways. Nodes in no group keep all links.
pub fn split(groups: &[Vec<usize>]) -> BTreeSet<Drop2> {
    let mut out = BTreeSet::new();
    for (gi, a) in groups.iter().enumerate() {
        for (gj, b) in groups.iter().enumerate() {
            if gi != gj {
                for &x in a {
                    for &y in b {
                        if x != y {
                            out.insert((x, y));
                        }
                    }
                }
            }
        }
    }
    out
}

/// Drops that cut `node` off from every other node (both directions).
pub fn isolate(node: usize, nodes: usize) -> BTreeSet<Drop2> {
    let rest: Vec<usize> = (0..nodes).filter(|&i| i != node).collect();
    split(&[vec![node], rest])
}

/// A bridge: `bridge` talks to everyone, the other nodes are split into two halves that only
/// reach each other through it.
pub fn bridge(bridge: usize, nodes: usize) -> BTreeSet<Drop2> {
    let rest: Vec<usize> = (0..nodes).filter(|&i| i != bridge).collect();
    let (a, b) = rest.split_at(rest.len() / 2);
    split(&[a.to_vec(), b.to_vec()])
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn partition_shapes() {
        let i = isolate(1, 3);
        assert_eq!(i, [(0, 1), (1, 0), (1, 2), (2, 1)].into_iter().collect());
        let b = bridge(1, 3);
        assert_eq!(b, [(0, 2), (2, 0)].into_iter().collect());
        let s = split(&[vec![0, 1, 2], vec![3, 4]]);
        assert_eq!(s.len(), 12);
        assert!(s.contains(&(4, 0)) && !s.contains(&(0, 1)));
    }
}
