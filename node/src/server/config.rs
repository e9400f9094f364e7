//! Node configuration: one TOML file per node, every key also settable from the environment
//! as `SPATE_<SECTION>__<KEY>` (e.g. `SPATE_NODE__ID=2`). Unknown keys are errors.
//! `docs/configuration.md` documents every key.

use std::path::{Path, PathBuf};

use figment::providers::{Env, Format, Toml};
use figment::Figment;
use serde::{Deserialize, Serialize};
use spate_control_plane::raft::RaftTuning;

#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Config {
    pub node: NodeSection,
    pub listen: ListenSection,
    pub cluster: ClusterSection,
    #[serde(default)]
    pub kinesis: KinesisSection,
    #[serde(default)]
    pub raft: RaftTuning,
    /// Per-shard throughput limits (`docs/capacity.md`).
    #[serde(default)]
    pub limits: crate::shard::throttle::Limits,
    /// The on-demand autoscaler (`docs/capacity.md`).
    #[serde(default)]
    pub autoscale: spate_control_plane::meta::autoscale::AutoscaleParams,
    #[serde(default)]
    pub tls: TlsSection,
    #[serde(default)]
    pub auth: AuthSection,
    /// The replica rebalancer (`docs/operations.md`, *Scale out / in*).
    #[serde(default)]
    pub rebalance: spate_control_plane::meta::rebalance::RebalanceParams,
}

/// The TLS listener of the Kinesis API (off unless `listen` is set).
#[derive(Debug, Clone, Default, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct TlsSection {
    /// Address of the TLS port (HTTP/1.1 and h2 by ALPN).
    pub listen: Option<String>,
    /// PEM certificate chain.
    pub cert: Option<PathBuf>,
    /// PEM private key.
    pub key: Option<PathBuf>,
}

/// SigV4 verification (off unless both keys are set: then any credentials are accepted).
#[derive(Debug, Clone, Default, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct AuthSection {
    pub access_key_id: Option<String>,
    pub secret_access_key: Option<String>,
}

impl AuthSection {
    /// The credentials to verify signatures against, if configured.
    pub fn credentials(&self) -> Option<crate::api::auth::Credentials> {
        match (&self.access_key_id, &self.secret_access_key) {
            (Some(id), Some(secret)) if !id.is_empty() && !secret.is_empty() => {
                Some(crate::api::auth::Credentials {
                    access_key_id: id.clone(),
                    secret_access_key: secret.clone(),
                })
            }
            _ => None,
        }
    }
}

#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct NodeSection {
    /// Stable, unique node id (the StatefulSet ordinal on Kubernetes).
    pub id: u64,
    /// The availability zone this node stands in.
    pub zone: String,
    /// Where the node keeps its RocksDB.
    pub data_dir: PathBuf,
}

#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ListenSection {
    /// Kinesis HTTP API (HTTP/1.1 and h2c on one port).
    pub api: String,
    /// Internal gRPC (Raft, forwarding).
    pub peer: String,
    /// `/health`, `/ready`, `/metrics`, `/v1/shards`.
    pub admin: String,
}

#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct PeerConfig {
    pub id: u64,
    pub zone: String,
    /// The peer's internal gRPC address as other nodes dial it.
    pub addr: String,
}

#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ClusterSection {
    /// The initial voters of the control plane. A node whose id is not among them joins a
    /// running cluster as a non-voter (it asks these peers to add it).
    pub peers: Vec<PeerConfig>,
    /// This node's internal gRPC address as other nodes dial it. Required for a node that is
    /// not in `peers`; for a voter it defaults to its `peers` entry.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub advertise: Option<String>,
}

#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct KinesisSection {
    pub region: String,
    pub account_id: String,
    /// Length of one hour of retention in milliseconds. Tests shorten it so retention and
    /// expiry run in seconds; leave it at 3,600,000 in production.
    pub retention_hour_ms: u64,
}

impl Default for KinesisSection {
    fn default() -> Self {
        Self {
            region: "us-east-1".into(),
            account_id: "000000000000".into(),
            retention_hour_ms: 3_600_000,
        }
    }
}

#[derive(Debug, thiserror::Error)]
pub enum ConfigError {
    #[error("configuration: {0}")]
    Load(#[from] Box<figment::Error>),
    #[error("configuration: {0}")]
    Invalid(String),
}

impl Config {
    /// Loads `path` (if given) overlaid with `SPATE_*` environment variables.
    pub fn load(path: Option<&Path>) -> Result<Self, ConfigError> {
        let mut fig = Figment::new();
        if let Some(p) = path {
            fig = fig.merge(Toml::file_exact(p));
        }
        // Only `SPATE_<SECTION>__<KEY>` variables are configuration; others such as
        // `SPATE_LOG` (log filter) or `SPATE_BIN` (test tooling) are not.
        fig = fig.merge(
            Env::prefixed("SPATE_")
                .filter(|k| k.as_str().contains("__"))
                .split("__"),
        );
        let cfg: Config = fig.extract().map_err(Box::new)?;
        cfg.validate()?;
        Ok(cfg)
    }

    /// Raft tuning from `SPATE_RAFT__*` environment variables over the defaults (used by
    /// `spate dev`, whose other settings are fixed).
    pub fn raft_from_env() -> Result<RaftTuning, ConfigError> {
        Figment::from(figment::providers::Serialized::defaults(
            RaftTuning::default(),
        ))
        .merge(Env::prefixed("SPATE_RAFT__"))
        .extract()
        .map_err(|e| ConfigError::Load(Box::new(e)))
    }

    /// Checks cross-field rules.
    pub fn validate(&self) -> Result<(), ConfigError> {
        if self.cluster.peers.is_empty() {
            return Err(ConfigError::Invalid(
                "cluster.peers must list the control-plane voters".into(),
            ));
        }
        if !self.is_initial_voter() && self.cluster.advertise.as_deref().unwrap_or("").is_empty() {
            return Err(ConfigError::Invalid(format!(
                "node.id {} is not in cluster.peers: a joining node needs cluster.advertise \
                 (its peer address as other nodes dial it)",
                self.node.id
            )));
        }
        if self.node.zone.is_empty() {
            return Err(ConfigError::Invalid("node.zone must not be empty".into()));
        }
        let mut ids: Vec<u64> = self.cluster.peers.iter().map(|p| p.id).collect();
        ids.sort_unstable();
        ids.dedup();
        if ids.len() != self.cluster.peers.len() {
            return Err(ConfigError::Invalid(
                "cluster.peers has duplicate ids".into(),
            ));
        }
        if self.kinesis.account_id.len() != 12
            || !self.kinesis.account_id.bytes().all(|b| b.is_ascii_digit())
        {
            return Err(ConfigError::Invalid(
                "kinesis.account_id must be 12 digits".into(),
            ));
        }
        if self.tls.listen.is_some() && (self.tls.cert.is_none() || self.tls.key.is_none()) {
            return Err(ConfigError::Invalid(
                "tls.listen needs tls.cert and tls.key".into(),
            ));
        }
        let id = self.auth.access_key_id.as_deref().unwrap_or("");
        let secret = self.auth.secret_access_key.as_deref().unwrap_or("");
        if id.is_empty() != secret.is_empty() {
            return Err(ConfigError::Invalid(
                "auth needs both access_key_id and secret_access_key, or neither".into(),
            ));
        }
        if self.raft.election_min_ms <= self.raft.heartbeat_ms
            || self.raft.election_max_ms <= self.raft.election_min_ms
        {
            return Err(ConfigError::Invalid(
                "raft: need heartbeat_ms < election_min_ms < election_max_ms".into(),
            ));
        }
        let l = &self.limits;
        if l.enabled
            && [
                l.shard_write_bytes_per_sec,
                l.shard_write_records_per_sec,
                l.shard_read_bytes_per_sec,
                l.shard_read_calls_per_sec,
                l.burst_ms,
            ]
            .contains(&0)
        {
            return Err(ConfigError::Invalid(
                "limits: every rate and burst_ms must be positive (or set enabled = false)".into(),
            ));
        }
        let a = &self.autoscale;
        if a.window_secs == 0 || a.window_secs > 119 {
            return Err(ConfigError::Invalid(
                "autoscale.window_secs must be between 1 and 119".into(),
            ));
        }
        if !(a.merge_threshold < a.split_threshold && a.split_threshold > 0.0) {
            return Err(ConfigError::Invalid(
                "autoscale: need 0 < merge_threshold < split_threshold".into(),
            ));
        }
        if self.rebalance.max_moves == 0 || self.rebalance.down_after_ms == 0 {
            return Err(ConfigError::Invalid(
                "rebalance: max_moves and down_after_ms must be positive (or set enabled = false)"
                    .into(),
            ));
        }
        Ok(())
    }

    /// The autoscaler's parameters, with the per-shard write limits of `[limits]`.
    pub fn autoscale_params(&self) -> spate_control_plane::meta::autoscale::AutoscaleParams {
        spate_control_plane::meta::autoscale::AutoscaleParams {
            shard_write_bytes_per_sec: self.limits.shard_write_bytes_per_sec,
            shard_write_records_per_sec: self.limits.shard_write_records_per_sec,
            ..self.autoscale
        }
    }

    /// The address other nodes dial to reach this node: `cluster.advertise`, else this
    /// node's `cluster.peers` entry.
    pub fn advertised_peer(&self) -> &str {
        if let Some(a) = self.cluster.advertise.as_deref().filter(|a| !a.is_empty()) {
            return a;
        }
        self.cluster
            .peers
            .iter()
            .find(|p| p.id == self.node.id)
            .map(|p| p.addr.as_str())
            .unwrap_or("")
    }

    /// Whether this node is one of the initial control-plane voters (`cluster.peers`).
    pub fn is_initial_voter(&self) -> bool {
        self.cluster.peers.iter().any(|p| p.id == self.node.id)
    }
}

#[cfg(test)]
#[allow(clippy::result_large_err)]
mod tests {
    use super::*;

    const SAMPLE: &str = r#"
[node]
id = 1
zone = "az-b"
data_dir = "/tmp/x"
[listen]
api = "127.0.0.1:4567"
peer = "127.0.0.1:7401"
admin = "127.0.0.1:9401"
[cluster]
peers = [
  { id = 0, zone = "az-a", addr = "127.0.0.1:7400" },
  { id = 1, zone = "az-b", addr = "127.0.0.1:7401" },
  { id = 2, zone = "az-c", addr = "127.0.0.1:7402" },
]
"#;

    #[test]
    fn loads_file_and_env_overrides() {
        figment::Jail::expect_with(|jail| {
            jail.create_file("n.toml", SAMPLE)?;
            jail.set_env("SPATE_KINESIS__REGION", "eu-west-1");
            jail.set_env("SPATE_RAFT__HEARTBEAT_MS", "100");
            jail.set_env("SPATE_LOG", "debug");
            jail.set_env("SPATE_BIN", "/somewhere/spate");
            let cfg = Config::load(Some(Path::new("n.toml"))).map_err(|e| e.to_string())?;
            assert_eq!(cfg.node.id, 1);
            assert_eq!(cfg.kinesis.region, "eu-west-1");
            assert_eq!(cfg.kinesis.account_id, "000000000000");
            assert_eq!(cfg.raft.heartbeat_ms, 100);
            assert_eq!(cfg.advertised_peer(), "127.0.0.1:7401");
            assert!(cfg.tls.listen.is_none() && cfg.auth.credentials().is_none());
            jail.set_env("SPATE_TLS__LISTEN", "127.0.0.1:4597");
            jail.set_env("SPATE_TLS__CERT", "/etc/spate-tls/tls.crt");
            jail.set_env("SPATE_TLS__KEY", "/etc/spate-tls/tls.key");
            jail.set_env("SPATE_AUTH__ACCESS_KEY_ID", "AKID");
            jail.set_env("SPATE_AUTH__SECRET_ACCESS_KEY", "secret");
            let cfg = Config::load(Some(Path::new("n.toml"))).map_err(|e| e.to_string())?;
            assert_eq!(cfg.tls.listen.as_deref(), Some("127.0.0.1:4597"));
            assert_eq!(
                cfg.auth.credentials().map(|c| c.access_key_id).as_deref(),
                Some("AKID")
            );
            jail.set_env("SPATE_TLS__KEY", "");
            jail.set_env("SPATE_AUTH__SECRET_ACCESS_KEY", "");
            assert!(Config::load(Some(Path::new("n.toml"))).is_err());
            assert_eq!(cfg.limits, crate::shard::throttle::Limits::default());
            Ok(())
        });
    }

    #[test]
    fn rejects_unknown_keys_and_bad_values() {
        figment::Jail::expect_with(|jail| {
            jail.create_file("bad.toml", &format!("{SAMPLE}\n[node2]\nx = 1\n"))?;
            assert!(Config::load(Some(Path::new("bad.toml"))).is_err());
            jail.create_file("bad2.toml", &SAMPLE.replace("id = 1\n", "id = 7\n"))?;
            assert!(Config::load(Some(Path::new("bad2.toml"))).is_err());
            // The same id with an advertised address is a joining (non-voter) node.
            jail.set_env("SPATE_CLUSTER__ADVERTISE", "127.0.0.1:7407");
            let cfg = Config::load(Some(Path::new("bad2.toml"))).map_err(|e| e.to_string())?;
            assert!(!cfg.is_initial_voter());
            assert_eq!(cfg.advertised_peer(), "127.0.0.1:7407");
            jail.create_file("bad3.toml", &format!("{SAMPLE}\n[limits]\nburst_ms = 0\n"))?;
            assert!(Config::load(Some(Path::new("bad3.toml"))).is_err());
            Ok(())
        });
    }

    #[test]
    fn rebalancing_is_on_by_default_and_switchable() {
        figment::Jail::expect_with(|jail| {
            jail.create_file("r.toml", SAMPLE)?;
            let cfg = Config::load(Some(Path::new("r.toml"))).map_err(|e| e.to_string())?;
            assert!(cfg.rebalance.enabled);
            assert_eq!(cfg.rebalance.max_moves, 1);
            jail.set_env("SPATE_REBALANCE__ENABLED", "false");
            let cfg = Config::load(Some(Path::new("r.toml"))).map_err(|e| e.to_string())?;
            assert!(!cfg.rebalance.enabled);
            jail.create_file(
                "r2.toml",
                &format!("{SAMPLE}\n[rebalance]\nmax_moves = 2\ninterval_ms = 500\n"),
            )?;
            let cfg = Config::load(Some(Path::new("r2.toml"))).map_err(|e| e.to_string())?;
            assert_eq!(
                (cfg.rebalance.max_moves, cfg.rebalance.interval_ms),
                (2, 500)
            );
            jail.create_file(
                "r3.toml",
                &format!("{SAMPLE}\n[rebalance]\nmax_moves = 0\n"),
            )?;
            assert!(Config::load(Some(Path::new("r3.toml"))).is_err());
            jail.create_file("r4.toml", &format!("{SAMPLE}\n[rebalance]\nspeed = 3\n"))?;
            assert!(Config::load(Some(Path::new("r4.toml"))).is_err());
            Ok(())
        });
    }

    #[test]
    fn limits_can_be_raised_or_disabled() {
        figment::Jail::expect_with(|jail| {
            jail.create_file(
                "l.toml",
                &format!("{SAMPLE}\n[limits]\nshard_write_records_per_sec = 5000\n"),
            )?;
            jail.set_env("SPATE_LIMITS__ENABLED", "false");
            let cfg = Config::load(Some(Path::new("l.toml"))).map_err(|e| e.to_string())?;
            assert!(!cfg.limits.enabled);
            assert_eq!(cfg.limits.shard_write_records_per_sec, 5000);
            assert_eq!(cfg.limits.shard_write_bytes_per_sec, 1 << 20);
            Ok(())
        });
    }
}
