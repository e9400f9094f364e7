//! Shard replicas: one openraft group per shard, three voters in three zones.
//!
//! * [`store`]: the shard state machine (deterministic apply that assigns ordinals) over the
//!   node's RocksDB, and the committed-data reads.
//! * [`batcher`]: on the leader, coalesces concurrent puts into one `Append` entry.
//! * [`replica`]: one hosted shard group and the requests it serves (put, read, position).
//! * [`manager`]: follows the shard map and starts/stops this node's shard groups.
//! * [`throttle`]: per-shard token-bucket limits and the per-second load meter.
//! * [`metrics`]: the node's capacity counters (CloudWatch names).

pub mod batcher;
pub mod checkpoint;
pub mod lease;
pub mod manager;
pub mod metrics;
pub mod purge;
pub mod replica;
pub mod snapshot;
pub mod store;
pub mod throttle;

use bytes::Bytes;
use serde::{Deserialize, Serialize};

/// One record as the leader proposes it.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct RecordIn {
    pub partition_key: String,
    pub data: Bytes,
}

impl RecordIn {
    /// Bytes this record counts for against limits (data + partition key).
    pub fn billed_bytes(&self) -> usize {
        self.data.len() + self.partition_key.len()
    }
}

/// Commands of a shard group.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub enum ShardCommand {
    /// Appends records; ordinals and the final arrival time are assigned at apply.
    /// Rejected (nothing written) once the shard is sealed. The records are shared, so the
    /// copies of an entry that Raft and the log cache hand around cost no per-record work
    /// (encoded exactly like a `Vec`).
    Append {
        arrival_ms: u64,
        records: std::sync::Arc<[RecordIn]>,
    },
    /// Closes the shard to writes (split/merge): every append applied before it is in the
    /// shard, none after. Idempotent.
    Seal { now_ms: u64 },
    /// Deletes records that arrived before `cutoff_ms` (retention).
    Trim { cutoff_ms: u64 },
}

impl std::fmt::Display for ShardCommand {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            ShardCommand::Append {
                arrival_ms,
                records,
            } => {
                write!(f, "Append({} records @{arrival_ms})", records.len())
            }
            ShardCommand::Seal { now_ms } => write!(f, "Seal(@{now_ms})"),
            ShardCommand::Trim { cutoff_ms } => write!(f, "Trim(<{cutoff_ms})"),
        }
    }
}

/// What an applied command produced.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub enum ShardResponse {
    Done,
    /// The records got ordinals `first_ordinal ..` in order, all with `arrival_ms`.
    Appended {
        first_ordinal: u64,
        arrival_ms: u64,
    },
    /// The shard is sealed: its records end before `end_ordinal`.
    Sealed {
        end_ordinal: u64,
        sealed_ms: u64,
    },
    /// Records before `trim_ordinal` are gone.
    Trimmed {
        trim_ordinal: u64,
    },
}

openraft::declare_raft_types!(
    /// Type config of shard groups.
    pub ShardTypeConfig:
        D = ShardCommand,
        R = ShardResponse,
        NodeId = u64,
        Node = openraft::BasicNode,
);

/// A shard group's Raft handle.
pub type ShardRaft = openraft::Raft<ShardTypeConfig, store::ShardStore>;

/// Who a shard is, fixed at creation: everything sequence numbers need.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
pub struct ShardIdentity {
    pub stream_uid: u64,
    pub shard_index: u32,
    pub create_secs: u64,
}

impl ShardIdentity {
    /// The Kinesis sequence number of the record at `ordinal` that arrived at `arrival_ms`.
    pub fn sequence_number(&self, ordinal: u64, arrival_ms: u64) -> String {
        spate_proto::kinesis::seqnum::SeqNum {
            shard_create_secs: self.create_secs,
            shard_index: self.shard_index,
            ordinal,
            arrival_secs: arrival_ms / 1000,
        }
        .encode()
    }
}
