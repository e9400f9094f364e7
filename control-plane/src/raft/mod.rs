//! The multi-group Raft runtime: storage, transport and the per-group plumbing shared by the
//! metadata group and the shard groups. Generic over the openraft type config of a group.

pub mod codec;
pub mod db;
pub mod flusher;
pub mod identity;
pub mod log_store;
pub mod network;
pub mod registry;
pub mod service;
pub mod snapshot;

use std::sync::Arc;

/// Identifies one Raft group on every node. Group 0 is the metadata group.
pub type GroupId = u64;
/// Identifies one Spate node (stable, e.g. the StatefulSet ordinal).
pub type NodeId = u64;
/// The group id of the control-plane metadata group.
pub const META_GROUP: GroupId = 0;

/// Snapshot payload type of every group (see [`snapshot`]).
pub use snapshot::SnapshotData;

/// Timing knobs of Raft groups, sized so that hundreds of groups per node stay cheap.
#[derive(Debug, Clone, Copy, serde::Serialize, serde::Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct RaftTuning {
    /// Leader heartbeat interval, milliseconds.
    pub heartbeat_ms: u64,
    /// Election timeout lower bound, milliseconds.
    pub election_min_ms: u64,
    /// Election timeout upper bound, milliseconds.
    pub election_max_ms: u64,
    /// Snapshot the metadata group after this many log entries since the last one.
    pub snapshot_logs: u64,
    /// Bytes applied by all shard groups of a node between two checkpoints: a checkpoint
    /// flushes the node's shard state machines, after which each group that applied
    /// anything snapshots and purges its log (see `spate_node::shard::checkpoint`).
    pub shard_snapshot_bytes: u64,
    /// Record bytes of log a shard group keeps below its last snapshot, so that a briefly
    /// lagging follower catches up by log replay rather than by a full snapshot (see
    /// `spate_node::shard::purge`).
    pub shard_log_keep_bytes: u64,
    /// Most log entries a shard group keeps below its last snapshot; a shard leader also
    /// keeps what a follower within this many entries still needs.
    pub shard_log_keep: u64,
}

impl Default for RaftTuning {
    fn default() -> Self {
        Self {
            heartbeat_ms: 200,
            election_min_ms: 600,
            election_max_ms: 900,
            snapshot_logs: 1_000,
            shard_snapshot_bytes: 8 << 20,
            shard_log_keep_bytes: 512 << 10,
            shard_log_keep: 256,
        }
    }
}

impl RaftTuning {
    /// The openraft config for one group. The metadata group (`snapshots = true`) snapshots
    /// every `snapshot_logs` entries. Shard groups (`snapshots = false`) have no openraft
    /// policy: they snapshot at the node's checkpoints (the replica calls
    /// `Raft::trigger().snapshot()`) and purge their log themselves
    /// (`Raft::trigger().purge_log()`, by bytes; see `spate_node::shard::purge`), so
    /// openraft's own purge is off for them.
    pub fn config(
        &self,
        cluster_name: &str,
        snapshots: bool,
    ) -> Result<Arc<openraft::Config>, openraft::ConfigError> {
        let snapshot_policy = if snapshots {
            openraft::SnapshotPolicy::LogsSinceLast(self.snapshot_logs)
        } else {
            openraft::SnapshotPolicy::Never
        };
        let cfg = openraft::Config {
            cluster_name: cluster_name.to_string(),
            heartbeat_interval: self.heartbeat_ms,
            election_timeout_min: self.election_min_ms,
            election_timeout_max: self.election_max_ms,
            enable_pre_vote: Some(true),
            snapshot_policy,
            max_in_snapshot_log_to_keep: if snapshots { 1000 } else { u64::MAX },
            max_payload_entries: 256,
            install_snapshot_timeout: 10_000,
            ..Default::default()
        };
        Ok(Arc::new(cfg.validate()?))
    }
}

/// Turns any error into the `io::Error` openraft's storage traits speak.
pub(crate) fn io_err(e: impl std::fmt::Display) -> std::io::Error {
    std::io::Error::other(e.to_string())
}
