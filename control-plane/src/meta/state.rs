//! The metadata state machine as a pure core. [`MetaState::apply`] is deterministic: the
//! same commands in the same order give the same state on every replica (time and
//! randomness arrive inside commands, chosen by the proposer).

use std::collections::BTreeMap;

use serde::{Deserialize, Serialize};

use super::consumers::{ConsumerCommand, ConsumerMeta};
use super::mode::{ModeCommand, ModeSwitches};
use super::moves::{MoveCommand, ReplicaMove};
use super::settings::{AccountSettings, SettingsChange, StreamSettings};

/// Number of replicas of every shard group.
pub const REPLICAS: usize = 3;

/// A node of the cluster.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct NodeInfo {
    pub id: u64,
    pub zone: String,
    /// Internal gRPC address (`host:port`).
    pub peer_addr: String,
    /// The incarnation of the node's data directory once the node has registered itself
    /// (`None` for an entry written by the bootstrap); see `raft::identity`.
    pub incarnation: Option<u64>,
}

/// Secrets generated once at bootstrap and shared by every node.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct ClusterSecrets {
    pub iterator_key_id: u8,
    pub iterator_key: [u8; 32],
    /// Random cluster id, used in logs and metrics.
    pub cluster_id: u64,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
pub enum StreamStatus {
    Creating,
    Active,
    Updating,
    Deleting,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
pub enum CapacityMode {
    Provisioned,
    OnDemand,
}

/// Lifecycle of a shard. Writes go to `Open` and `Sealing` shards; `Pending` children
/// become `Open` when their parents are sealed; `Closed` shards stay readable until their
/// records expire, then they are removed (EXPIRED).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
pub enum ShardState {
    Open,
    /// A parent being split/merged: writable until its group commits the seal.
    Sealing,
    /// A child created by a split/merge, not writable until its parents are sealed.
    Pending,
    Closed,
}

/// Where a sealed shard ended.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
pub struct ShardEnd {
    /// Ordinal after the last record (records are `1 .. end_ordinal`).
    pub end_ordinal: u64,
    /// When the seal was applied (seconds), for the ending sequence number.
    pub sealed_secs: u64,
}

/// A split or merge in progress: parents being sealed, children waiting.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct ReshardStep {
    pub parents: Vec<u32>,
    pub children: Vec<u32>,
}

/// One shard: a hash range of a stream, replicated by its own Raft group.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct ShardMeta {
    pub index: u32,
    pub group: u64,
    pub hash_start: u128,
    pub hash_end: u128,
    pub parent: Option<u32>,
    pub adjacent_parent: Option<u32>,
    /// Logical creation second: the leading field of the shard's sequence numbers.
    pub create_secs: u64,
    pub state: ShardState,
    /// Nodes holding the shard's replicas, in distinct zones where possible.
    pub replicas: Vec<u64>,
    /// Set once the shard is closed.
    pub end: Option<ShardEnd>,
}

impl ShardMeta {
    /// Takes writes (open, or a parent not yet sealed).
    pub fn writable(&self) -> bool {
        matches!(self.state, ShardState::Open | ShardState::Sealing)
    }

    /// Visible to clients (everything but pending children).
    pub fn visible(&self) -> bool {
        self.state != ShardState::Pending
    }
}

/// A stream and its shards (open and closed, not yet expired).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct StreamMeta {
    pub name: String,
    /// Unique across re-creations of the same name; iterators carry it.
    pub uid: u64,
    pub status: StreamStatus,
    pub mode: CapacityMode,
    pub created_ms: u64,
    pub retention_hours: u32,
    pub shards: Vec<ShardMeta>,
    pub next_shard_index: u32,
    /// Pure-metadata settings (tags, encryption, monitoring, policies, ...).
    pub settings: StreamSettings,
    /// Registered enhanced fan-out consumers.
    pub consumers: Vec<ConsumerMeta>,
    /// The split/merge in progress, if any.
    pub reshard: Option<ReshardStep>,
    /// UpdateShardCount in progress: the open shard count to reach.
    pub target_shard_count: Option<u32>,
    /// When UpdateShardCount was called (ms), for the 10-per-24-hours limit.
    pub shard_count_updates: Vec<u64>,
    /// Capacity-mode switches: recent ones and the one in progress (see `mode`).
    pub mode_switches: ModeSwitches,
}

impl StreamMeta {
    pub fn shard(&self, index: u32) -> Option<&ShardMeta> {
        self.shards.iter().find(|s| s.index == index)
    }

    /// The writable shard whose hash range holds `key`.
    pub fn open_shard_for(&self, key: u128) -> Option<&ShardMeta> {
        self.shards
            .iter()
            .find(|s| s.writable() && s.hash_start <= key && key <= s.hash_end)
    }

    /// Shards whose parent or adjacent parent is `index`.
    pub fn children_of(&self, index: u32) -> impl Iterator<Item = &ShardMeta> {
        self.shards
            .iter()
            .filter(move |s| s.parent == Some(index) || s.adjacent_parent == Some(index))
    }

    /// Open (writable) shards, by hash range.
    pub fn open_shards(&self) -> Vec<&ShardMeta> {
        let mut v: Vec<&ShardMeta> = self.shards.iter().filter(|s| s.writable()).collect();
        v.sort_by_key(|s| s.hash_start);
        v
    }
}

/// The whole metadata image.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct MetaState {
    pub secrets: Option<ClusterSecrets>,
    pub nodes: BTreeMap<u64, NodeInfo>,
    pub streams: BTreeMap<String, StreamMeta>,
    /// Next Raft group id to hand out (group 0 is this group).
    pub next_group: u64,
    pub next_stream_uid: u64,
    /// Bumped by every change of the shard map.
    pub epoch: u64,
    /// Account-wide settings.
    pub account: AccountSettings,
    /// Replica moves in progress, by shard group (see `moves`).
    pub replica_moves: BTreeMap<u64, ReplicaMove>,
    /// Groups that have had a replica move: none of their replicas initialises them.
    pub moved_groups: std::collections::BTreeSet<u64>,
    /// Nodes being decommissioned: no new replicas, existing ones move away.
    pub decommissioning: std::collections::BTreeSet<u64>,
    /// Lower bound of the next node id handed to a replacement node (see `replace`).
    pub next_node_id: u64,
    /// Node replacements after disk losses, old id → the id that replaced it (see `replace`).
    pub replaced_by: BTreeMap<u64, u64>,
}

/// Commands of the metadata group.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub enum MetaCommand {
    /// First command of a new cluster: secrets and the initial node registry.
    Bootstrap {
        secrets: ClusterSecrets,
        nodes: Vec<NodeInfo>,
    },
    /// Registers or updates a node (refused when it would change a registered incarnation).
    RegisterNode { node: NodeInfo },
    /// Admits a node that started on an empty disk in place of `old` under a new node id,
    /// and decommissions `old` (see `replace`).
    ReplaceNode {
        old: u64,
        zone: String,
        peer_addr: String,
        incarnation: u64,
    },
    /// Creates a stream with `hash_ranges.len()` shards.
    CreateStream {
        name: String,
        mode: CapacityMode,
        hash_ranges: Vec<(u128, u128)>,
        now_ms: u64,
    },
    /// Marks a CREATING stream ACTIVE once its shard groups serve.
    ActivateStream { name: String, uid: u64 },
    /// Removes a stream; its shard groups are torn down by every node.
    DeleteStream { name: String },
    /// Starts splitting `parent` at `new_start` (see `reshard`).
    BeginSplit {
        name: String,
        parent: u32,
        new_start: u128,
        now_ms: u64,
    },
    /// Starts merging `shard` with the hash-adjacent `adjacent`.
    BeginMerge {
        name: String,
        shard: u32,
        adjacent: u32,
        now_ms: u64,
    },
    /// Closes the sealed parents of the step in progress and opens its children.
    CompleteReshard {
        name: String,
        ends: Vec<(u32, ShardEnd)>,
    },
    /// UpdateShardCount: reach `target` open shards through splits and merges.
    SetTargetShardCount {
        name: String,
        target: u32,
        now_ms: u64,
    },
    /// The target shard count has been reached.
    FinishShardCount { name: String },
    /// Sets the retention period.
    SetRetention { name: String, hours: u32 },
    /// Removes a closed shard whose records have all expired.
    ExpireShard { name: String, index: u32 },
    /// Changes pure-metadata settings of a stream (see `settings`).
    Settings {
        name: String,
        change: SettingsChange,
    },
    /// Registers/deregisters enhanced fan-out consumers (see `consumers`).
    Consumer(ConsumerCommand),
    /// UpdateStreamMode and its completion (see `mode`).
    StreamMode(ModeCommand),
    /// Replica moves and node decommissioning (see `moves`).
    Move(MoveCommand),
}

impl std::fmt::Display for MetaCommand {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            MetaCommand::Bootstrap { nodes, .. } => write!(f, "Bootstrap({} nodes)", nodes.len()),
            MetaCommand::RegisterNode { node } => write!(f, "RegisterNode({})", node.id),
            MetaCommand::ReplaceNode { old, .. } => write!(f, "ReplaceNode({old})"),
            MetaCommand::CreateStream {
                name, hash_ranges, ..
            } => {
                write!(f, "CreateStream({name}, {} shards)", hash_ranges.len())
            }
            MetaCommand::ActivateStream { name, uid } => write!(f, "ActivateStream({name}#{uid})"),
            MetaCommand::DeleteStream { name } => write!(f, "DeleteStream({name})"),
            MetaCommand::BeginSplit { name, parent, .. } => {
                write!(f, "BeginSplit({name}, {parent})")
            }
            MetaCommand::BeginMerge {
                name,
                shard,
                adjacent,
                ..
            } => {
                write!(f, "BeginMerge({name}, {shard}+{adjacent})")
            }
            MetaCommand::CompleteReshard { name, .. } => write!(f, "CompleteReshard({name})"),
            MetaCommand::SetTargetShardCount { name, target, .. } => {
                write!(f, "SetTargetShardCount({name}, {target})")
            }
            MetaCommand::FinishShardCount { name } => write!(f, "FinishShardCount({name})"),
            MetaCommand::SetRetention { name, hours } => {
                write!(f, "SetRetention({name}, {hours}h)")
            }
            MetaCommand::ExpireShard { name, index } => write!(f, "ExpireShard({name}, {index})"),
            MetaCommand::Settings { name, change } => write!(f, "Settings({name}, {change})"),
            MetaCommand::Consumer(c) => write!(f, "Consumer({c})"),
            MetaCommand::StreamMode(c) => write!(f, "StreamMode({c})"),
            MetaCommand::Move(c) => write!(f, "Move({c})"),
        }
    }
}

/// Failures of metadata commands, mapped to Kinesis errors by the API.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, thiserror::Error)]
pub enum MetaError {
    #[error("cluster is not bootstrapped yet")]
    NotBootstrapped,
    #[error("Stream {0} already exists")]
    StreamExists(String),
    #[error("Stream {0} not found")]
    StreamNotFound(String),
    #[error("no nodes to place shard replicas on")]
    NoNodes,
    #[error("{0}")]
    Invalid(String),
    /// The stream or shard is not in a state that allows the operation.
    #[error("{0}")]
    InUse(String),
    #[error("{0}")]
    ShardNotFound(String),
    #[error("{0}")]
    LimitExceeded(String),
}

/// Answers of metadata commands.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub enum MetaResponse {
    /// Membership/blank entries and commands without a payload.
    Done,
    StreamCreated {
        uid: u64,
    },
    /// UpdateShardCount accepted; the open shard count it started from.
    ShardCountUpdate {
        current: u32,
    },
    /// ReplaceNode: the id the new node takes.
    NodeAdmitted {
        id: u64,
    },
    Failed(MetaError),
}

impl MetaState {
    /// Applies one command; returns its answer. Never panics on any command.
    pub fn apply(&mut self, cmd: &MetaCommand) -> MetaResponse {
        match cmd {
            MetaCommand::Bootstrap { secrets, nodes } => {
                if self.secrets.is_none() {
                    self.secrets = Some(secrets.clone());
                    for n in nodes {
                        self.nodes.insert(n.id, n.clone());
                    }
                    self.next_group = self.next_group.max(1);
                    self.next_stream_uid = self.next_stream_uid.max(1);
                    self.epoch += 1;
                }
                MetaResponse::Done
            }
            MetaCommand::RegisterNode { node } => self.register_node(node),
            MetaCommand::ReplaceNode {
                old,
                zone,
                peer_addr,
                incarnation,
            } => self.replace_node(*old, zone, peer_addr, *incarnation),
            MetaCommand::CreateStream {
                name,
                mode,
                hash_ranges,
                now_ms,
            } => self.create_stream(name, *mode, hash_ranges, *now_ms),
            MetaCommand::ActivateStream { name, uid } => match self.streams.get_mut(name) {
                Some(s) if s.uid == *uid && s.status == StreamStatus::Creating => {
                    s.status = StreamStatus::Active;
                    self.epoch += 1;
                    MetaResponse::Done
                }
                Some(_) => MetaResponse::Done,
                None => MetaResponse::Failed(MetaError::StreamNotFound(name.clone())),
            },
            MetaCommand::DeleteStream { name } => {
                if self.streams.remove(name).is_some() {
                    self.prune_moves();
                    self.epoch += 1;
                    MetaResponse::Done
                } else {
                    MetaResponse::Failed(MetaError::StreamNotFound(name.clone()))
                }
            }
            MetaCommand::BeginSplit {
                name,
                parent,
                new_start,
                now_ms,
            } => self.begin_split(name, *parent, *new_start, *now_ms),
            MetaCommand::BeginMerge {
                name,
                shard,
                adjacent,
                now_ms,
            } => self.begin_merge(name, *shard, *adjacent, *now_ms),
            MetaCommand::CompleteReshard { name, ends } => self.complete_reshard(name, ends),
            MetaCommand::SetTargetShardCount {
                name,
                target,
                now_ms,
            } => self.set_target_shard_count(name, *target, *now_ms),
            MetaCommand::FinishShardCount { name } => self.finish_shard_count(name),
            MetaCommand::SetRetention { name, hours } => self.set_retention(name, *hours),
            MetaCommand::ExpireShard { name, index } => self.expire_shard(name, *index),
            MetaCommand::Settings { name, change } => self.apply_settings(name, change),
            MetaCommand::Consumer(cmd) => self.apply_consumer(cmd),
            MetaCommand::StreamMode(cmd) => self.apply_mode(cmd),
            MetaCommand::Move(cmd) => self.apply_move(cmd),
        }
    }

    fn create_stream(
        &mut self,
        name: &str,
        mode: CapacityMode,
        hash_ranges: &[(u128, u128)],
        now_ms: u64,
    ) -> MetaResponse {
        if self.secrets.is_none() {
            return MetaResponse::Failed(MetaError::NotBootstrapped);
        }
        if self.streams.contains_key(name) {
            return MetaResponse::Failed(MetaError::StreamExists(name.to_string()));
        }
        if hash_ranges.is_empty() {
            return MetaResponse::Failed(MetaError::Invalid(
                "a stream needs at least one shard".into(),
            ));
        }
        if self.nodes.is_empty() {
            return MetaResponse::Failed(MetaError::NoNodes);
        }
        let uid = self.next_stream_uid.max(1);
        self.next_stream_uid = uid + 1;
        let create_secs = now_ms / 1000;
        let mut shards = Vec::with_capacity(hash_ranges.len());
        let mut load = self.replica_load();
        for (i, (start, end)) in hash_ranges.iter().enumerate() {
            let group = self.next_group.max(1);
            self.next_group = group + 1;
            let replicas = self.place(group, &mut load);
            shards.push(ShardMeta {
                index: i as u32,
                group,
                hash_start: *start,
                hash_end: *end,
                parent: None,
                adjacent_parent: None,
                create_secs,
                state: ShardState::Open,
                replicas,
                end: None,
            });
        }
        let next_shard_index = shards.len() as u32;
        self.streams.insert(
            name.to_string(),
            StreamMeta {
                name: name.to_string(),
                uid,
                status: StreamStatus::Creating,
                mode,
                created_ms: now_ms,
                retention_hours: 24,
                shards,
                next_shard_index,
                settings: StreamSettings::default(),
                consumers: Vec::new(),
                reshard: None,
                target_shard_count: None,
                shard_count_updates: Vec::new(),
                mode_switches: ModeSwitches::default(),
            },
        );
        self.epoch += 1;
        MetaResponse::StreamCreated { uid }
    }

    /// Number of shard replicas each node currently holds.
    pub fn replica_load(&self) -> BTreeMap<u64, usize> {
        let mut load: BTreeMap<u64, usize> = self.nodes.keys().map(|id| (*id, 0)).collect();
        for s in self.streams.values() {
            for sh in &s.shards {
                for r in &sh.replicas {
                    *load.entry(*r).or_default() += 1;
                }
            }
        }
        load
    }

    /// Chooses the replicas of a new group: one node per zone (least loaded first, ties
    /// broken by the group id so placement rotates), then any other nodes up to
    /// [`REPLICAS`] when there are fewer zones than replicas. `load` (replicas per node) is
    /// updated with the choice, so several placements in one command balance.
    pub(crate) fn place(&self, group: u64, load: &mut BTreeMap<u64, usize>) -> Vec<u64> {
        let mut by_zone: BTreeMap<&str, Vec<u64>> = BTreeMap::new();
        for n in self.nodes.values() {
            if self.decommissioning.contains(&n.id) {
                continue;
            }
            by_zone.entry(n.zone.as_str()).or_default().push(n.id);
        }
        let rank = |id: &u64| {
            let l = load.get(id).copied().unwrap_or(0);
            (l, id.wrapping_add(group) % 1_000_003)
        };
        let mut picks: Vec<u64> = Vec::with_capacity(REPLICAS);
        let mut zones: Vec<(&str, Vec<u64>)> = by_zone.into_iter().collect();
        for (_, ids) in zones.iter_mut() {
            ids.sort_by_key(rank);
        }
        // Least-loaded zones first so that zone choice also balances.
        zones.sort_by_key(|(zone, ids)| (ids.first().map(rank), *zone));
        for (_, ids) in &zones {
            if picks.len() == REPLICAS {
                break;
            }
            if let Some(first) = ids.first() {
                picks.push(*first);
            }
        }
        if picks.len() < REPLICAS {
            let mut rest: Vec<u64> = self
                .nodes
                .keys()
                .copied()
                .filter(|id| !picks.contains(id) && !self.decommissioning.contains(id))
                .collect();
            rest.sort_by_key(rank);
            for id in rest {
                if picks.len() == REPLICAS {
                    break;
                }
                picks.push(id);
            }
        }
        picks.sort_unstable();
        for id in &picks {
            *load.entry(*id).or_default() += 1;
        }
        picks
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    use crate::meta::testing::bootstrapped;

    fn ranges(n: u32) -> Vec<(u128, u128)> {
        let w = u128::MAX / n as u128;
        (0..n)
            .map(|i| {
                let start = w * i as u128;
                let end = if i + 1 == n {
                    u128::MAX
                } else {
                    w * (i as u128 + 1) - 1
                };
                (start, end)
            })
            .collect()
    }

    #[test]
    fn create_places_replicas_in_distinct_zones() {
        let mut st = bootstrapped(&[
            (0, "az-a"),
            (1, "az-b"),
            (2, "az-c"),
            (3, "az-a"),
            (4, "az-b"),
            (5, "az-c"),
        ]);
        let r = st.apply(&MetaCommand::CreateStream {
            name: "s".into(),
            mode: CapacityMode::Provisioned,
            hash_ranges: ranges(8),
            now_ms: 1_700_000_000_000,
        });
        assert_eq!(r, MetaResponse::StreamCreated { uid: 1 });
        let s = &st.streams["s"];
        let mut groups = std::collections::BTreeSet::new();
        for sh in &s.shards {
            assert!(groups.insert(sh.group), "group ids are unique");
            assert_eq!(sh.replicas.len(), 3);
            let zones: std::collections::BTreeSet<_> = sh
                .replicas
                .iter()
                .map(|id| st.nodes[id].zone.clone())
                .collect();
            assert_eq!(zones.len(), 3, "replicas of {} in distinct zones", sh.index);
        }
        // 8 shards × 3 replicas over 6 nodes: every node holds 4.
        for (id, l) in st.replica_load() {
            assert_eq!(l, 4, "node {id} load");
        }
    }

    #[test]
    fn stream_lifecycle_and_errors() {
        let mut st = bootstrapped(&[(0, "az-a"), (1, "az-b"), (2, "az-c")]);
        let create = MetaCommand::CreateStream {
            name: "s".into(),
            mode: CapacityMode::OnDemand,
            hash_ranges: ranges(4),
            now_ms: 5_000,
        };
        assert_eq!(st.apply(&create), MetaResponse::StreamCreated { uid: 1 });
        assert_eq!(
            st.apply(&create),
            MetaResponse::Failed(MetaError::StreamExists("s".into()))
        );
        assert_eq!(st.streams["s"].status, StreamStatus::Creating);
        st.apply(&MetaCommand::ActivateStream {
            name: "s".into(),
            uid: 1,
        });
        assert_eq!(st.streams["s"].status, StreamStatus::Active);
        assert_eq!(
            st.apply(&MetaCommand::DeleteStream { name: "s".into() }),
            MetaResponse::Done
        );
        assert!(st.streams.is_empty());
        // Re-creating gives a new uid and new groups.
        assert_eq!(st.apply(&create), MetaResponse::StreamCreated { uid: 2 });
        assert!(st.streams["s"].shards.iter().all(|s| s.group > 4));
    }

    #[test]
    fn apply_is_deterministic() {
        let cmds = vec![
            MetaCommand::CreateStream {
                name: "a".into(),
                mode: CapacityMode::Provisioned,
                hash_ranges: ranges(3),
                now_ms: 1,
            },
            MetaCommand::CreateStream {
                name: "b".into(),
                mode: CapacityMode::Provisioned,
                hash_ranges: ranges(5),
                now_ms: 2,
            },
            MetaCommand::DeleteStream { name: "a".into() },
        ];
        let mut x = bootstrapped(&[(0, "az-a"), (1, "az-b"), (2, "az-c"), (3, "az-c")]);
        let mut y = x.clone();
        for c in &cmds {
            x.apply(c);
        }
        for c in &cmds {
            y.apply(c);
        }
        assert_eq!(x, y);
    }

    #[test]
    fn create_before_bootstrap_fails() {
        let mut st = MetaState::default();
        let r = st.apply(&MetaCommand::CreateStream {
            name: "s".into(),
            mode: CapacityMode::Provisioned,
            hash_ranges: ranges(1),
            now_ms: 0,
        });
        assert_eq!(r, MetaResponse::Failed(MetaError::NotBootstrapped));
    }
}
