//! The `spate` binary: `spate server --config FILE` runs one node; `spate dev` runs a local
//! 3-node, 3-zone cluster in one process.

use std::path::PathBuf;

use clap::{Parser, Subcommand};
use spate_node::server::config::Config;
use spate_node::server::dev;
use spate_node::server::node::Node;
use tracing_subscriber::EnvFilter;

/// Keeps glibc's malloc from hoarding memory. By default glibc raises its mmap threshold
/// each time a large block is freed, so the large, short-lived buffers of this server (a
/// 10 MiB GetRecords answer, a forwarded PutRecords batch, replication messages) end up in
/// per-thread heap arenas that are rarely returned, and resident memory ratchets up under
/// load. A fixed threshold keeps every block of 4 MiB or more in its own mapping, returned
/// to the system when freed; fewer arenas bound the fragmentation of the rest.
fn tune_malloc() {
    #[cfg(all(target_os = "linux", target_env = "gnu"))]
    // SAFETY: mallopt only changes allocator parameters; called before any other thread runs.
    unsafe {
        libc::mallopt(libc::M_MMAP_THRESHOLD, 4 << 20);
        libc::mallopt(libc::M_ARENA_MAX, 4);
    }
}

#[derive(Parser)]
#[command(
    name = "spate",
    version,
    about = "Self-hosted, wire-compatible Amazon Kinesis Data Streams"
)]
struct Cli {
    #[command(subcommand)]
    cmd: Cmd,
}

#[derive(Subcommand)]
enum Cmd {
    /// Run one node of a cluster.
    Server {
        /// Node configuration (TOML); `SPATE_*` environment variables override it.
        #[arg(long, short)]
        config: Option<PathBuf>,
    },
    /// Run a local 3-node, 3-zone cluster in one process.
    Dev {
        /// Kinesis API port of node 0 (nodes 1 and 2 use the next two ports).
        #[arg(long, default_value_t = 4567)]
        port: u16,
        /// Data directory (kept across restarts).
        #[arg(long)]
        data_dir: Option<PathBuf>,
        /// Address to bind (loopback by default).
        #[arg(long, default_value = "127.0.0.1")]
        bind: String,
        /// Delete the data directory first.
        #[arg(long)]
        fresh: bool,
        /// Disable the per-shard throughput limits (Kinesis's 1 MiB/s and 1,000 records/s
        /// per shard), e.g. for benchmarks.
        #[arg(long)]
        unthrottled: bool,
    },
}

fn init_tracing() {
    let filter = EnvFilter::try_from_env("SPATE_LOG")
        .or_else(|_| EnvFilter::try_from_default_env())
        .unwrap_or_else(|_| EnvFilter::new("info,openraft=warn"));
    tracing_subscriber::fmt()
        .with_env_filter(filter)
        .with_writer(std::io::stderr)
        .init();
}

async fn shutdown_signal() {
    let ctrl_c = tokio::signal::ctrl_c();
    #[cfg(unix)]
    {
        let mut term =
            match tokio::signal::unix::signal(tokio::signal::unix::SignalKind::terminate()) {
                Ok(s) => s,
                Err(_) => {
                    let _ = ctrl_c.await;
                    return;
                }
            };
        tokio::select! {
            _ = ctrl_c => {},
            _ = term.recv() => {},
        }
    }
    #[cfg(not(unix))]
    {
        let _ = ctrl_c.await;
    }
}

fn main() -> anyhow::Result<()> {
    tune_malloc();
    let cli = Cli::parse();
    init_tracing();
    let rt = tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .thread_name("spate")
        .build()?;
    rt.block_on(async move {
        match cli.cmd {
            Cmd::Server { config } => {
                let cfg = Config::load(config.as_deref())?;
                let node = Node::start(cfg).await?;
                shutdown_signal().await;
                tracing::info!("shutting down");
                node.shutdown().await;
            }
            Cmd::Dev {
                port,
                data_dir,
                bind,
                fresh,
                unthrottled,
            } => {
                let dir = data_dir.unwrap_or_else(dev::default_data_dir);
                if fresh && dir.exists() {
                    std::fs::remove_dir_all(&dir)?;
                }
                let cert = spate_node::api::tls::ensure_dev_cert(&dir, &bind)?;
                // Together: a node on an empty disk waits for its peers to say whether the
                // cluster is new (see `meta::replace`).
                let nodes =
                    futures::future::try_join_all(dev::configs(port, &dir, &bind)?.into_iter().map(
                        |mut cfg| {
                            cfg.limits.enabled = !unthrottled;
                            Node::start(cfg)
                        },
                    ))
                    .await?;
                tracing::info!(
                    endpoint = %format!("http://{bind}:{port}"),
                    data_dir = %dir.display(),
                    tls = %format!("https://localhost:{} (CA {})", port + 30, cert.ca.display()),
                    "local 3-zone cluster up: aws --endpoint-url http://{bind}:{port} kinesis list-streams"
                );
                shutdown_signal().await;
                tracing::info!("shutting down");
                for n in nodes {
                    n.shutdown().await;
                }
            }
        }
        Ok::<(), anyhow::Error>(())
    })
}
