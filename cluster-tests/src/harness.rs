//! Process harness: runs a cluster of real `spate` processes on loopback.
//!
//! [`Cluster::start`] allocates free ports on 127.0.0.1, writes one TOML config per node (zones
//! az-a, az-b, az-c, ...), spawns `spate server --config FILE` with stdout/stderr captured into a
//! log file in the cluster's temp dir, and waits until every node answers `GET /ready` with 200.
//! Faults: [`Cluster::kill`] (SIGKILL), [`Cluster::terminate`] (SIGTERM), [`Cluster::pause`] /
//! [`Cluster::resume`] (SIGSTOP / SIGCONT), [`Cluster::restart`] (same data dir and ports).
//! Dropping the cluster kills and reaps every child, also while unwinding from a panic, in which
//! case the tail of every node's log is printed and the temp dir is kept for inspection.
//! Clusters in one test binary run one at a time (a process-wide lock), to spare small CI
//! machines.
//!
//! Clock faults: with [`ClusterOpts::faketime`], every node runs under Debian's libfaketime
//! (`LD_PRELOAD`) reading a per-node offset file that [`Cluster::set_clock_offset`] rewrites
//! (`+7200`, `-600`, seconds). Only `CLOCK_REALTIME` moves (`FAKETIME_DONT_FAKE_MONOTONIC=1`),
//! like an NTP step or a resumed VM; the file is re-read at most once a second
//! (`FAKETIME_CACHE_DURATION=1`), so a jump takes effect within a second.

use std::fs::{File, OpenOptions};
use std::io::{Read, Seek, SeekFrom, Write};
use std::net::{SocketAddr, TcpListener};
use std::os::unix::process::CommandExt;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::sync::{Arc, Condvar, Mutex};
use std::time::{Duration, Instant};

use anyhow::{anyhow, bail, ensure, Context, Result};
use serde::Deserialize;

use crate::client::KinesisClient;
use crate::netns::NetLab;

static CLUSTER_RUNNING: Mutex<bool> = Mutex::new(false);
static CLUSTER_DONE: Condvar = Condvar::new();

/// Held by a running [`Cluster`]: one cluster per test process at a time (a `Send` guard, so a
/// cluster can move between threads).
struct ClusterSlot;

impl ClusterSlot {
    fn acquire() -> ClusterSlot {
        let mut running = CLUSTER_RUNNING.lock().unwrap_or_else(|e| e.into_inner());
        while *running {
            running = CLUSTER_DONE
                .wait(running)
                .unwrap_or_else(|e| e.into_inner());
        }
        *running = true;
        ClusterSlot
    }
}

impl Drop for ClusterSlot {
    fn drop(&mut self) {
        *CLUSTER_RUNNING.lock().unwrap_or_else(|e| e.into_inner()) = false;
        CLUSTER_DONE.notify_one();
    }
}

/// Options for [`Cluster::start`].
#[derive(Debug, Clone)]
pub struct ClusterOpts {
    /// Number of nodes (the first three are the control-plane voters).
    pub nodes: usize,
    /// How long to wait for every node's `/ready`.
    pub ready_timeout: Duration,
    /// `RUST_LOG` for the nodes.
    pub rust_log: String,
    /// Extra environment for every node (e.g. `SPATE_...` overrides).
    pub env: Vec<(String, String)>,
    /// Run each node in its own network namespace of this lab (10.77.0.x, fixed ports); the
    /// test's own sockets must then be created in the lab's client namespace (see
    /// [`crate::nemesis::run_in_lab`]). `None`: node i listens on 127.0.0.(i+1).
    pub net: Option<Arc<NetLab>>,
    /// Run every node under libfaketime so that [`Cluster::set_clock_offset`] can step its
    /// wall clock (ignored, with [`Cluster::clock_faults`] saying why, when the library is
    /// missing).
    pub faketime: bool,
}

/// Where Debian's `libfaketime` package puts the library.
pub const LIBFAKETIME: &str = "/usr/lib/x86_64-linux-gnu/faketime/libfaketime.so.1";

/// The libfaketime library to preload (`SPATE_LIBFAKETIME` overrides the Debian path), or
/// why there is none.
pub fn libfaketime() -> std::result::Result<PathBuf, String> {
    let p =
        PathBuf::from(std::env::var("SPATE_LIBFAKETIME").unwrap_or_else(|_| LIBFAKETIME.into()));
    if p.is_file() {
        Ok(p)
    } else {
        Err(format!(
            "{} not found (apt-get install faketime, or set SPATE_LIBFAKETIME)",
            p.display()
        ))
    }
}

impl Default for ClusterOpts {
    fn default() -> Self {
        ClusterOpts {
            nodes: 3,
            ready_timeout: Duration::from_secs(60),
            rust_log: std::env::var("SPATE_TEST_LOG").unwrap_or_else(|_| "info".into()),
            env: Vec::new(),
            net: None,
            faketime: false,
        }
    }
}

/// One shard replica as reported by a node's `GET /v1/shards`.
#[derive(Debug, Clone, Deserialize, PartialEq, Eq)]
pub struct ShardReplica {
    pub stream: String,
    pub shard_id: String,
    pub group: u64,
    pub leader: Option<u64>,
    pub members: Vec<u64>,
    pub last_applied: u64,
    /// The next ordinal the replica's state machine will assign (absent on old servers).
    #[serde(default)]
    pub next_ordinal: Option<u64>,
    /// Index of the last purged entry of the replica's Raft log (0: none).
    #[serde(default)]
    pub log_purged: u64,
    /// Index of the replica's last log entry.
    #[serde(default)]
    pub log_last: u64,
    /// Index covered by the replica's last snapshot (0: none).
    #[serde(default)]
    pub snapshot_index: u64,
}

struct Node {
    id: usize,
    /// The node's Spate id: `id` until the node replaces itself after a disk loss.
    node_id: u64,
    zone: String,
    api: SocketAddr,
    peer: SocketAddr,
    admin: SocketAddr,
    config: PathBuf,
    log: PathBuf,
    /// The libfaketime offset file (`FAKETIME_TIMESTAMP_FILE`) when clock faults are on.
    clock_file: Option<PathBuf>,
    child: Option<Child>,
}

/// A running cluster of `spate` processes.
pub struct Cluster {
    dir: Option<tempfile::TempDir>,
    bin: PathBuf,
    opts: ClusterOpts,
    nodes: Vec<Node>,
    http: reqwest::Client,
    /// The preloaded libfaketime, or why clock faults are off.
    faketime: std::result::Result<PathBuf, String>,
    _slot: ClusterSlot,
}

/// Where the `spate` binary is: `SPATE_BIN`, `$CARGO_TARGET_DIR/debug/spate`, next to the test
/// binary's target dir, or the lead's shared target dir.
pub fn spate_bin() -> Result<PathBuf> {
    if let Ok(p) = std::env::var("SPATE_BIN") {
        let p = PathBuf::from(p);
        if p.is_file() {
            return Ok(p);
        }
        bail!("SPATE_BIN={} does not exist", p.display());
    }
    let mut candidates = Vec::new();
    if let Ok(t) = std::env::var("CARGO_TARGET_DIR") {
        candidates.push(PathBuf::from(t).join("debug").join("spate"));
    }
    if let Ok(exe) = std::env::current_exe() {
        // <target>/debug/deps/<test> -> <target>/debug/spate
        if let Some(debug) = exe.parent().and_then(Path::parent) {
            candidates.push(debug.join("spate"));
        }
    }
    if let Ok(home) = std::env::var("HOME") {
        candidates.push(PathBuf::from(home).join(".cache/spate/target/debug/spate"));
    }
    candidates.dedup();
    for c in &candidates {
        if c.is_file() {
            return Ok(c.clone());
        }
    }
    bail!(
        "the spate binary was not found (looked at {candidates:?}); run `cargo build -p \
         spate-node` first, or set SPATE_BIN=/path/to/spate"
    )
}

fn free_ports(ip: std::net::Ipv4Addr, n: usize) -> Result<Vec<u16>> {
    // Hold every listener until all are chosen so the ports are distinct.
    let listeners: Vec<TcpListener> = (0..n)
        .map(|_| TcpListener::bind((ip, 0)))
        .collect::<std::io::Result<_>>()?;
    listeners
        .iter()
        .map(|l| Ok(l.local_addr()?.port()))
        .collect()
}

fn zone_of(i: usize) -> String {
    format!("az-{}", (b'a' + (i % 26) as u8) as char)
}

/// The last `lines` lines of a file (best effort).
pub fn tail(path: &Path, lines: usize) -> String {
    let mut f = match File::open(path) {
        Ok(f) => f,
        Err(e) => return format!("<cannot open {}: {e}>", path.display()),
    };
    let len = f.metadata().map(|m| m.len()).unwrap_or(0);
    let _ = f.seek(SeekFrom::Start(len.saturating_sub(256 * 1024)));
    let mut buf = Vec::new();
    let _ = f.read_to_end(&mut buf);
    let text = String::from_utf8_lossy(&buf);
    let all: Vec<&str> = text.lines().collect();
    all[all.len().saturating_sub(lines)..].join("\n")
}

impl Cluster {
    /// Start a cluster and wait until every node is ready.
    pub async fn start(opts: ClusterOpts) -> Result<Cluster> {
        let slot = ClusterSlot::acquire();
        let bin = spate_bin()?;
        let dir = tempfile::Builder::new()
            .prefix("spate-cluster-")
            .tempdir()?;
        let faketime = if opts.faketime {
            let lib = libfaketime();
            if let Err(why) = &lib {
                if std::env::var("SPATE_REQUIRE_FAKETIME").is_ok_and(|v| v == "1") {
                    bail!("SPATE_REQUIRE_FAKETIME=1 but {why}");
                }
            }
            lib
        } else {
            Err("clock faults not enabled for this cluster (ClusterOpts::faketime)".into())
        };
        let mut nodes: Vec<Node> = Vec::with_capacity(opts.nodes);
        for i in 0..opts.nodes {
            let (ip, ports) = match &opts.net {
                Some(lab) => {
                    if lab.nodes() < opts.nodes {
                        bail!("the net lab has {} nodes, need {}", lab.nodes(), opts.nodes);
                    }
                    (NetLab::node_ip(i), vec![4567, 4568, 4569])
                }
                None => {
                    let ip = std::net::Ipv4Addr::new(127, 0, 0, (i + 1) as u8);
                    (ip, free_ports(ip, 3)?)
                }
            };
            nodes.push(Node {
                id: i,
                node_id: i as u64,
                zone: zone_of(i),
                api: SocketAddr::from((ip, ports[0])),
                peer: SocketAddr::from((ip, ports[1])),
                admin: SocketAddr::from((ip, ports[2])),
                config: dir.path().join(format!("node{i}.toml")),
                log: dir.path().join(format!("node{i}.log")),
                clock_file: faketime
                    .is_ok()
                    .then(|| dir.path().join(format!("node{i}.faketime"))),
                child: None,
            });
        }
        let peers: Vec<String> = nodes
            .iter()
            .map(|n| {
                format!(
                    "{{ id = {}, zone = \"{}\", addr = \"{}\" }}",
                    n.id, n.zone, n.peer
                )
            })
            .collect();
        for n in &nodes {
            let data_dir = dir.path().join(format!("node{}", n.id));
            std::fs::create_dir_all(&data_dir)?;
            let toml = format!(
                "[node]\nid = {}\nzone = \"{}\"\ndata_dir = \"{}\"\n\n[listen]\napi = \"{}\"\n\
                 peer = \"{}\"\nadmin = \"{}\"\n\n[cluster]\npeers = [\n  {}\n]\n\n[kinesis]\n\
                 region = \"us-east-1\"\naccount_id = \"000000000000\"\n",
                n.id,
                n.zone,
                data_dir.display(),
                n.api,
                n.peer,
                n.admin,
                peers.join(",\n  ")
            );
            std::fs::write(&n.config, toml)?;
            if let Some(f) = &n.clock_file {
                std::fs::write(f, "+0\n")?;
            }
        }
        let http = reqwest::Client::builder()
            .timeout(Duration::from_secs(3))
            .connect_timeout(Duration::from_secs(1))
            .build()?;
        let mut c = Cluster {
            dir: Some(dir),
            bin,
            opts,
            nodes,
            http,
            faketime,
            _slot: slot,
        };
        for i in 0..c.nodes.len() {
            c.spawn(i)?;
        }
        let timeout = c.opts.ready_timeout;
        for i in 0..c.nodes.len() {
            c.wait_ready(i, timeout).await?;
        }
        Ok(c)
    }

    /// Number of nodes.
    pub fn len(&self) -> usize {
        self.nodes.len()
    }

    /// Always false: a cluster has at least one node.
    pub fn is_empty(&self) -> bool {
        self.nodes.is_empty()
    }

    /// The cluster's temp dir (configs, data dirs, logs).
    pub fn dir(&self) -> &Path {
        self.dir.as_ref().expect("dir").path()
    }

    /// The Kinesis API base URL of a node, e.g. `http://127.0.0.1:4567`.
    pub fn api_url(&self, node: usize) -> String {
        format!("http://{}", self.nodes[node].api)
    }

    /// The admin base URL of a node.
    pub fn admin_url(&self, node: usize) -> String {
        format!("http://{}", self.nodes[node].admin)
    }

    /// A Kinesis client for a node.
    pub fn client(&self, node: usize) -> KinesisClient {
        KinesisClient::new(&self.api_url(node))
    }

    /// A Kinesis client for every node, in node order.
    pub fn clients(&self) -> Vec<KinesisClient> {
        (0..self.len()).map(|i| self.client(i)).collect()
    }

    /// The log file of a node.
    pub fn log_path(&self, node: usize) -> &Path {
        &self.nodes[node].log
    }

    /// Whether the node's process is running (not killed, not exited).
    pub fn is_running(&mut self, node: usize) -> bool {
        match self.nodes[node].child.as_mut() {
            Some(c) => matches!(c.try_wait(), Ok(None)),
            None => false,
        }
    }

    fn spawn(&mut self, i: usize) -> Result<()> {
        let n = &mut self.nodes[i];
        if n.child.is_some() {
            bail!("node {i} is already running");
        }
        let mut log = OpenOptions::new().create(true).append(true).open(&n.log)?;
        writeln!(log, "===== harness: starting node {i} =====")?;
        let mut cmd = Command::new(&self.bin);
        cmd.arg("server")
            .arg("--config")
            .arg(&n.config)
            .env("RUST_LOG", &self.opts.rust_log)
            .env("RUST_BACKTRACE", "1")
            .stdin(Stdio::null())
            .stdout(Stdio::from(log.try_clone()?))
            .stderr(Stdio::from(log));
        for (k, v) in &self.opts.env {
            cmd.env(k, v);
        }
        if let (Ok(lib), Some(file)) = (&self.faketime, &n.clock_file) {
            cmd.env("LD_PRELOAD", lib)
                .env("FAKETIME_TIMESTAMP_FILE", file)
                .env("FAKETIME_DONT_FAKE_MONOTONIC", "1")
                .env("FAKETIME_CACHE_DURATION", "1");
        }
        let ns_fd = self.opts.net.as_ref().map(|lab| lab.node_ns_fd(i));
        // If the test process dies without running Drop, the kernel kills the node.
        // SAFETY: prctl and setns are async-signal-safe; nothing else runs between fork and
        // exec; the namespace fd stays open in the lab (owned by `self.opts`).
        unsafe {
            cmd.pre_exec(move || {
                libc::prctl(libc::PR_SET_PDEATHSIG, libc::SIGKILL);
                if let Some(fd) = ns_fd {
                    if libc::setns(fd, libc::CLONE_NEWNET) != 0 {
                        return Err(std::io::Error::last_os_error());
                    }
                }
                Ok(())
            });
        }
        let child = cmd
            .spawn()
            .with_context(|| format!("spawning {}", self.bin.display()))?;
        n.child = Some(child);
        Ok(())
    }

    fn signal(&self, node: usize, sig: libc::c_int) -> Result<()> {
        let child = self.nodes[node]
            .child
            .as_ref()
            .ok_or_else(|| anyhow!("node {node} is not running"))?;
        // SAFETY: plain kill(2) on our own child's pid (not yet reaped, so not reused).
        let rc = unsafe { libc::kill(child.id() as libc::pid_t, sig) };
        if rc != 0 {
            bail!("kill({node}, {sig}): {}", std::io::Error::last_os_error());
        }
        Ok(())
    }

    /// `Ok(())` when [`Cluster::set_clock_offset`] works here, else why not.
    pub fn clock_faults(&self) -> std::result::Result<(), String> {
        self.faketime.as_ref().map(|_| ()).map_err(Clone::clone)
    }

    /// Step a node's wall clock to `secs` seconds off the real time (0: back to real time),
    /// effective within about a second; its monotonic clock does not move. Survives restarts
    /// of the node until set back.
    pub fn set_clock_offset(&self, node: usize, secs: i64) -> Result<()> {
        if let Err(why) = &self.faketime {
            bail!("clock faults unavailable: {why}");
        }
        let file = self.nodes[node]
            .clock_file
            .as_ref()
            .ok_or_else(|| anyhow!("node {node} has no clock file"))?;
        // Write and rename: libfaketime never reads a half-written file.
        let tmp = file.with_extension("faketime.tmp");
        std::fs::write(
            &tmp,
            format!(
                "{}{}\n",
                if secs < 0 { "-" } else { "+" },
                secs.unsigned_abs()
            ),
        )?;
        std::fs::rename(&tmp, file)?;
        Ok(())
    }

    /// SIGKILL a node and reap it.
    pub fn kill(&mut self, node: usize) -> Result<()> {
        if let Some(mut c) = self.nodes[node].child.take() {
            let _ = c.kill();
            c.wait()?;
        }
        Ok(())
    }

    /// SIGTERM a node and wait for it to exit (SIGKILL after `grace`). Returns its exit status.
    pub fn terminate(&mut self, node: usize, grace: Duration) -> Result<std::process::ExitStatus> {
        // A stopped process cannot handle SIGTERM until continued.
        let _ = self.signal(node, libc::SIGCONT);
        self.signal(node, libc::SIGTERM)?;
        let mut c = self.nodes[node].child.take().expect("running");
        let deadline = Instant::now() + grace;
        loop {
            if let Some(st) = c.try_wait()? {
                return Ok(st);
            }
            if Instant::now() >= deadline {
                eprintln!("node {node} did not exit within {grace:?} of SIGTERM; SIGKILL");
                let _ = c.kill();
                return Ok(c.wait()?);
            }
            std::thread::sleep(Duration::from_millis(50));
        }
    }

    /// SIGTERM every running node at once, then wait for each to exit (SIGKILL after `grace`).
    pub fn terminate_all(&mut self, grace: Duration) -> Result<Vec<std::process::ExitStatus>> {
        let running: Vec<usize> = (0..self.len())
            .filter(|&i| self.nodes[i].child.is_some())
            .collect();
        for &i in &running {
            let _ = self.signal(i, libc::SIGCONT);
            self.signal(i, libc::SIGTERM)?;
        }
        let deadline = Instant::now() + grace;
        let mut statuses = Vec::new();
        for i in running {
            let mut c = self.nodes[i].child.take().expect("running");
            loop {
                if let Some(st) = c.try_wait()? {
                    statuses.push(st);
                    break;
                }
                if Instant::now() >= deadline {
                    eprintln!("node {i} did not exit within {grace:?} of SIGTERM; SIGKILL");
                    let _ = c.kill();
                    statuses.push(c.wait()?);
                    break;
                }
                std::thread::sleep(Duration::from_millis(50));
            }
        }
        Ok(statuses)
    }

    /// SIGKILL every running node.
    pub fn kill_all(&mut self) -> Result<()> {
        for i in 0..self.len() {
            self.kill(i)?;
        }
        Ok(())
    }

    /// SIGSTOP a node.
    ///
    /// Returns once every thread of the process is stopped: kill(2) only queues the signal, and
    /// on a loaded machine the thread chosen to take it may wait for a CPU while the node's
    /// other threads keep serving requests for a few more milliseconds.
    pub fn pause(&self, node: usize) -> Result<()> {
        self.signal(node, libc::SIGSTOP)?;
        let pid = self.nodes[node]
            .child
            .as_ref()
            .ok_or_else(|| anyhow!("node {node} is not running"))?
            .id();
        let deadline = Instant::now() + Duration::from_secs(5);
        while !all_threads_stopped(pid) {
            if Instant::now() > deadline {
                bail!("node {node} (pid {pid}) did not stop within 5 s of SIGSTOP");
            }
            std::thread::sleep(Duration::from_millis(1));
        }
        Ok(())
    }

    /// SIGCONT a node.
    pub fn resume(&self, node: usize) -> Result<()> {
        self.signal(node, libc::SIGCONT)
    }

    /// Start a stopped node again (same config, data dir and ports) without waiting.
    pub fn start_node(&mut self, node: usize) -> Result<()> {
        self.spawn(node)
    }

    /// Kill the node if it runs, start it again with the same data dir and ports, and wait for
    /// `/ready`.
    pub async fn restart(&mut self, node: usize) -> Result<()> {
        self.kill(node)?;
        self.spawn(node)?;
        let t = self.opts.ready_timeout;
        self.wait_ready(node, t).await
    }

    /// Whether `GET /ready` answers 200.
    pub async fn is_ready(&self, node: usize) -> bool {
        let url = format!("{}/ready", self.admin_url(node));
        matches!(self.http.get(url).send().await, Ok(r) if r.status().is_success())
    }

    /// Wait until `GET /ready` answers 200; fail early if the process exits.
    pub async fn wait_ready(&mut self, node: usize, timeout: Duration) -> Result<()> {
        let deadline = Instant::now() + timeout;
        loop {
            if self.is_ready(node).await {
                return Ok(());
            }
            if let Some(c) = self.nodes[node].child.as_mut() {
                if let Some(st) = c.try_wait()? {
                    self.nodes[node].child = None;
                    bail!(
                        "node {node} exited ({st}) before becoming ready; log tail:\n{}",
                        tail(&self.nodes[node].log, 40)
                    );
                }
            } else {
                bail!("node {node} is not running");
            }
            if Instant::now() >= deadline {
                bail!(
                    "node {node} not ready within {timeout:?}; log tail:\n{}",
                    tail(&self.nodes[node].log, 40)
                );
            }
            tokio::time::sleep(Duration::from_millis(200)).await;
        }
    }

    /// Wait for `/ready` on every running node.
    pub async fn wait_all_ready(&mut self, timeout: Duration) -> Result<()> {
        for i in 0..self.len() {
            if self.nodes[i].child.is_some() {
                self.wait_ready(i, timeout).await?;
            }
        }
        Ok(())
    }

    /// This node's view of the shard replicas it hosts (`GET /v1/shards`).
    pub async fn shards(&self, node: usize) -> Result<Vec<ShardReplica>> {
        let url = format!("{}/v1/shards", self.admin_url(node));
        let resp = self
            .http
            .get(&url)
            .timeout(Duration::from_secs(5))
            .send()
            .await?;
        let status = resp.status();
        let body = resp.text().await?;
        if !status.is_success() {
            bail!("GET {url}: {status}: {body}");
        }
        serde_json::from_str(&body).with_context(|| format!("GET {url}: bad JSON: {body}"))
    }

    /// The current leader of a shard: a running node that hosts the replica and reports itself
    /// as leader; failing that, the leader most running replicas report.
    pub async fn find_leader(&mut self, stream: &str, shard_id: &str) -> Option<usize> {
        let mut votes: Vec<u64> = Vec::new();
        for i in 0..self.len() {
            if !self.is_running(i) {
                continue;
            }
            let Ok(shards) = self.shards(i).await else {
                continue;
            };
            for s in shards {
                if s.stream == stream && s.shard_id == shard_id {
                    if s.leader == Some(self.nodes[i].node_id) {
                        return Some(i);
                    }
                    votes.extend(s.leader);
                }
            }
        }
        votes.sort_unstable();
        let mut best: Option<(u64, usize)> = None;
        for chunk in votes.chunk_by(|a, b| a == b) {
            if best.is_none_or(|(_, n)| chunk.len() > n) {
                best = Some((chunk[0], chunk.len()));
            }
        }
        best.and_then(|(id, _)| self.index_of(id))
    }

    /// The Spate node id of harness node `node` (its index, unless it replaced itself
    /// after a disk loss; see [`Cluster::wipe`]).
    pub fn node_id(&self, node: usize) -> u64 {
        self.nodes[node].node_id
    }

    /// The harness node that runs Spate node `id`.
    pub fn index_of(&self, id: u64) -> Option<usize> {
        self.nodes.iter().position(|n| n.node_id == id)
    }

    /// The data directory of a node.
    pub fn data_dir(&self, node: usize) -> PathBuf {
        self.dir().join(format!("node{}", self.nodes[node].id))
    }

    /// Disk loss: deletes the data directory of a stopped node (it restarts empty, and
    /// joins under a new node id in place of its old one).
    pub fn wipe(&mut self, node: usize) -> Result<()> {
        ensure!(
            self.nodes[node].child.is_none(),
            "node {node} must be stopped before its disk is wiped"
        );
        let dir = self.data_dir(node);
        std::fs::remove_dir_all(&dir).with_context(|| format!("wipe {}", dir.display()))?;
        std::fs::create_dir_all(&dir)?;
        Ok(())
    }

    /// Reads the node's current Spate id (`GET /v1/identity`) and remembers it.
    pub async fn refresh_node_id(&mut self, node: usize) -> Result<u64> {
        let url = format!("{}/v1/identity", self.admin_url(node));
        let body: serde_json::Value = self.http.get(&url).send().await?.json().await?;
        let id = body["id"]
            .as_u64()
            .with_context(|| format!("GET {url}: no id in {body}"))?;
        self.nodes[node].node_id = id;
        Ok(id)
    }

    /// Poll [`Cluster::find_leader`] until a leader is known.
    pub async fn wait_leader(
        &mut self,
        stream: &str,
        shard_id: &str,
        timeout: Duration,
    ) -> Result<usize> {
        let deadline = Instant::now() + timeout;
        loop {
            if let Some(l) = self.find_leader(stream, shard_id).await {
                return Ok(l);
            }
            if Instant::now() >= deadline {
                bail!("no leader for {stream}/{shard_id} within {timeout:?}");
            }
            tokio::time::sleep(Duration::from_millis(100)).await;
        }
    }

    /// The network lab the nodes run in, if any.
    pub fn net(&self) -> Option<&Arc<NetLab>> {
        self.opts.net.as_ref()
    }

    /// The zone of a node (`az-a`, `az-b`, ...).
    pub fn zone(&self, node: usize) -> &str {
        &self.nodes[node].zone
    }

    /// The pid of a running node.
    pub fn pid(&self, node: usize) -> Option<u32> {
        self.nodes[node].child.as_ref().map(|c| c.id())
    }

    /// Whether a node says it leads the control plane (`spate_meta_is_leader 1` in `/metrics`).
    pub async fn is_meta_leader(&self, node: usize) -> Result<bool> {
        let url = format!("{}/metrics", self.admin_url(node));
        let body = self
            .http
            .get(&url)
            .timeout(Duration::from_secs(2))
            .send()
            .await?
            .text()
            .await?;
        Ok(body.lines().any(|l| {
            let mut it = l.split_whitespace();
            it.next() == Some("spate_meta_is_leader") && it.next() == Some("1")
        }))
    }

    /// The running node that says it leads the control plane.
    pub async fn find_meta_leader(&mut self) -> Option<usize> {
        for i in 0..self.len() {
            if self.is_running(i) && self.is_meta_leader(i).await.unwrap_or(false) {
                return Some(i);
            }
        }
        None
    }

    /// Print the tail of every node's log to stderr.
    pub fn dump_logs(&self, lines: usize) {
        for n in &self.nodes {
            eprintln!(
                "----- node {} ({}) log tail: {} -----\n{}",
                n.id,
                n.zone,
                n.log.display(),
                tail(&n.log, lines)
            );
        }
    }
}

impl Drop for Cluster {
    fn drop(&mut self) {
        for n in &mut self.nodes {
            if let Some(mut c) = n.child.take() {
                let _ = c.kill();
                let _ = c.wait();
            }
        }
        if std::thread::panicking() {
            self.dump_logs(60);
            if let Some(dir) = self.dir.take() {
                let kept = dir.keep();
                eprintln!("cluster dir kept for inspection: {}", kept.display());
            }
        }
    }
}

/// Whether every thread of `pid` is in the stopped state (`T` or `t` in `/proc/<pid>/task/*/stat`).
fn all_threads_stopped(pid: u32) -> bool {
    let Ok(tasks) = std::fs::read_dir(format!("/proc/{pid}/task")) else {
        return false;
    };
    tasks.flatten().all(|t| {
        std::fs::read_to_string(t.path().join("stat")).is_ok_and(|st| {
            // The state follows the parenthesised command name, which may contain spaces.
            st.rsplit_once(") ")
                .and_then(|(_, rest)| rest.chars().next())
                .is_some_and(|c| c == 'T' || c == 't')
        })
    })
}
