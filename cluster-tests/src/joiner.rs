//! A node started after the cluster, with an id outside the initial voters (scale-out,
//! decommissioning), and the node registry of the admin API.

use std::net::{Ipv4Addr, SocketAddr, TcpListener};
use std::path::PathBuf;
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use anyhow::{bail, Context, Result};

use crate::client::KinesisClient;
use crate::harness::{spate_bin, Cluster};

/// A node started after the cluster: its own process, config and data dir (inside the
/// cluster's temp dir), node id `id` and zone `az-d` (or any, [`Joiner::create_in`]), on
/// 127.0.0.4, with the same
/// `[cluster]` section as the original nodes (so it is not an initial voter) plus
/// `cluster.advertise`.
pub struct Joiner {
    id: u64,
    bin: PathBuf,
    config: PathBuf,
    log: PathBuf,
    api: SocketAddr,
    admin: SocketAddr,
    child: Option<Child>,
}

impl Joiner {
    pub fn create(cluster: &Cluster, id: u64) -> Result<Joiner> {
        Self::create_in(cluster, id, "az-d")
    }

    /// A joining node in `zone`.
    pub fn create_in(cluster: &Cluster, id: u64, zone: &str) -> Result<Joiner> {
        let ip = Ipv4Addr::new(127, 0, 0, 4);
        let mut ports = Vec::new();
        let mut held = Vec::new();
        for _ in 0..3 {
            let l = TcpListener::bind((ip, 0))?;
            ports.push(l.local_addr()?.port());
            held.push(l);
        }
        drop(held);
        let api = SocketAddr::from((ip, ports[0]));
        let peer = SocketAddr::from((ip, ports[1]));
        let admin = SocketAddr::from((ip, ports[2]));
        // The same cluster section as the original nodes: the initial voters 0..2.
        let node0 = std::fs::read_to_string(cluster.dir().join("node0.toml"))?;
        let start = node0
            .find("[cluster]")
            .context("node0.toml: no [cluster]")?;
        let end = node0
            .find("[kinesis]")
            .context("node0.toml: no [kinesis]")?;
        let cluster_section = node0[start..end].trim_end();
        let data_dir = cluster.dir().join(format!("node{id}"));
        std::fs::create_dir_all(&data_dir)?;
        let toml = format!(
            "[node]\nid = {id}\nzone = \"{zone}\"\ndata_dir = \"{}\"\n\n[listen]\napi = \"{api}\"\n\
             peer = \"{peer}\"\nadmin = \"{admin}\"\n\n{cluster_section}\nadvertise = \"{peer}\"\n\n\
             [kinesis]\nregion = \"us-east-1\"\naccount_id = \"000000000000\"\n",
            data_dir.display()
        );
        let config = cluster.dir().join(format!("node{id}.toml"));
        std::fs::write(&config, toml)?;
        Ok(Joiner {
            id,
            bin: spate_bin()?,
            config,
            log: cluster.dir().join(format!("node{id}.log")),
            api,
            admin,
            child: None,
        })
    }

    pub fn spawn(&mut self) -> Result<()> {
        let log = std::fs::OpenOptions::new()
            .create(true)
            .append(true)
            .open(&self.log)?;
        let child = Command::new(&self.bin)
            .arg("server")
            .arg("--config")
            .arg(&self.config)
            .env(
                "RUST_LOG",
                std::env::var("SPATE_TEST_LOG").unwrap_or_else(|_| "info".into()),
            )
            .stdin(Stdio::null())
            .stdout(log.try_clone()?)
            .stderr(log)
            .spawn()
            .with_context(|| format!("spawn node {}", self.id))?;
        self.child = Some(child);
        Ok(())
    }

    pub fn kill(&mut self) {
        if let Some(mut c) = self.child.take() {
            let _ = c.kill();
            let _ = c.wait();
        }
    }

    pub fn client(&self) -> KinesisClient {
        KinesisClient::new(&format!("http://{}", self.api))
    }

    pub fn admin_url(&self) -> String {
        format!("http://{}", self.admin)
    }

    pub fn tail(&self, n: usize) -> String {
        crate::harness::tail(&self.log, n)
    }

    pub async fn wait_ready(&mut self, http: &reqwest::Client, timeout: Duration) -> Result<()> {
        let deadline = Instant::now() + timeout;
        loop {
            let url = format!("{}/ready", self.admin_url());
            if matches!(http.get(&url).send().await, Ok(r) if r.status().is_success()) {
                return Ok(());
            }
            if let Some(c) = self.child.as_mut() {
                if let Some(st) = c.try_wait()? {
                    self.child = None;
                    bail!("node {} exited ({st}):\n{}", self.id, self.tail(40));
                }
            }
            if Instant::now() > deadline {
                bail!(
                    "node {} not ready within {timeout:?}:\n{}",
                    self.id,
                    self.tail(40)
                );
            }
            tokio::time::sleep(Duration::from_millis(200)).await;
        }
    }
}

impl Drop for Joiner {
    fn drop(&mut self) {
        self.kill();
    }
}

/// The node registry as `GET /v1/nodes` on `admin_url` reports it.
pub async fn nodes(http: &reqwest::Client, admin_url: &str) -> Result<Vec<serde_json::Value>> {
    let url = format!("{admin_url}/v1/nodes");
    let body: Vec<serde_json::Value> = http.get(&url).send().await?.json().await?;
    Ok(body)
}
