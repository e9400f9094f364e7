//! `spate dev`: a local 3-node, 3-zone cluster in one process. Every node has its own
//! RocksDB and talks to the others over real gRPC on loopback. Ports derive from `--port`
//! (P): Kinesis API on P, P+1, P+2; admin on P+10..P+12; peers on P+20..P+22; TLS API on
//! P+30..P+32 with a self-signed certificate under `<data-dir>/tls/` — fixed, so a restart on
//! the same data directory finds its cluster again.

use std::path::{Path, PathBuf};

use super::config::{
    AuthSection, ClusterSection, Config, ConfigError, KinesisSection, ListenSection, NodeSection,
    PeerConfig, TlsSection,
};
use crate::api::tls::DevCert;

pub const ZONES: [&str; 3] = ["az-a", "az-b", "az-c"];

/// The configurations of the three dev nodes; Raft tuning comes from `SPATE_RAFT__*`
/// variables over the defaults.
pub fn configs(port: u16, data_dir: &Path, bind: &str) -> Result<Vec<Config>, ConfigError> {
    let raft = Config::raft_from_env()?;
    let peer = |i: u16| format!("{bind}:{}", port + 20 + i);
    let peers: Vec<PeerConfig> = (0..3u16)
        .map(|i| PeerConfig {
            id: i as u64,
            zone: ZONES[i as usize].into(),
            addr: peer(i),
        })
        .collect();
    Ok((0..3u16)
        .map(|i| Config {
            node: NodeSection {
                id: i as u64,
                zone: ZONES[i as usize].into(),
                data_dir: data_dir.join(format!("node{i}")),
            },
            listen: ListenSection {
                api: format!("{bind}:{}", port + i),
                peer: peer(i),
                admin: format!("{bind}:{}", port + 10 + i),
            },
            cluster: ClusterSection {
                peers: peers.clone(),
                advertise: None,
            },
            kinesis: KinesisSection::default(),
            raft,
            tls: TlsSection {
                listen: Some(format!("{bind}:{}", port + 30 + i)),
                cert: Some(DevCert::paths(data_dir).cert),
                key: Some(DevCert::paths(data_dir).key),
            },
            auth: AuthSection::default(),
            limits: crate::shard::throttle::Limits::default(),
            autoscale: Default::default(),
            rebalance: Default::default(),
        })
        .collect())
}

/// Default data directory of `spate dev`.
pub fn default_data_dir() -> PathBuf {
    std::env::var_os("XDG_DATA_HOME")
        .map(PathBuf::from)
        .or_else(|| std::env::var_os("HOME").map(|h| PathBuf::from(h).join(".local/share")))
        .unwrap_or_else(|| PathBuf::from("."))
        .join("spate/dev")
}
