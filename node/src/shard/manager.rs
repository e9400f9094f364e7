//! Follows the shard map (the metadata watch) and makes this node host exactly the shard
//! groups placed on it: starts a Raft group for every new shard replica, initialising it
//! with its placement (every replica proposes the same membership, so the group forms even
//! when one replica is down), and tears down and deletes groups whose stream is gone or
//! whose replica moved away from this node.
//!
//! A replica that *joins* an existing group (the target of a replica move, see
//! `meta::moves`) is started without `initialize`: it waits, empty, for the shard leader
//! to add it as a learner and replay the log to it. Only the original replicas of a group
//! that never had a move initialise it; any other `initialize` would propose a second,
//! different first membership and fork the group.

use std::collections::{BTreeMap, HashMap};
use std::sync::{Arc, RwLock};

use openraft::BasicNode;
use rocksdb::DB;
use spate_control_plane::meta::state::MetaState;
use spate_control_plane::meta::MetaView;
use spate_control_plane::raft::flusher::Flusher;
use spate_control_plane::raft::log_store::GroupLogStore;
use spate_control_plane::raft::network::{GroupNetworkFactory, PeerChannels};
use spate_control_plane::raft::registry::{GroupRegistry, RaftEndpoint};
use spate_control_plane::raft::{GroupId, NodeId, RaftTuning};
use tokio::sync::watch;

use super::checkpoint::Checkpoints;
use super::metrics::CapacityMetrics;
use super::replica::{Capacity, ShardReplica};
use super::store::ShardStore;
use super::{ShardIdentity, ShardTypeConfig};

/// Starts and stops this node's shard groups.
pub struct ShardManager {
    node_id: NodeId,
    db: Arc<DB>,
    flusher: Flusher,
    peers: Arc<PeerChannels>,
    registry: Arc<GroupRegistry>,
    tuning: RaftTuning,
    capacity: Capacity,
    /// Checkpoints of all shard state machines of this node.
    checkpoints: Arc<Checkpoints>,
    replicas: RwLock<HashMap<GroupId, Arc<ShardReplica>>>,
}

struct Placement {
    identity: ShardIdentity,
    members: BTreeMap<u64, BasicNode>,
    /// An original replica of a group that never had a move: may `initialize` it.
    initialize: bool,
}

impl ShardManager {
    pub fn new(
        node_id: NodeId,
        db: Arc<DB>,
        flusher: Flusher,
        peers: Arc<PeerChannels>,
        registry: Arc<GroupRegistry>,
        tuning: RaftTuning,
        capacity: Capacity,
    ) -> Arc<Self> {
        let checkpoints = Checkpoints::new(db.clone(), tuning.shard_snapshot_bytes);
        Arc::new(Self {
            node_id,
            db,
            flusher,
            peers,
            registry,
            tuning,
            capacity,
            checkpoints,
            replicas: RwLock::new(HashMap::new()),
        })
    }

    /// The capacity counters of this node's replicas.
    pub fn capacity_metrics(&self) -> &CapacityMetrics {
        &self.capacity.metrics
    }

    /// The hosted replica of `group`, if any.
    pub fn get(&self, group: GroupId) -> Option<Arc<ShardReplica>> {
        self.replicas
            .read()
            .unwrap_or_else(|p| p.into_inner())
            .get(&group)
            .cloned()
    }

    /// Every hosted replica.
    pub fn all(&self) -> Vec<Arc<ShardReplica>> {
        self.replicas
            .read()
            .unwrap_or_else(|p| p.into_inner())
            .values()
            .cloned()
            .collect()
    }

    /// Reconciles on every new shard map until the watch closes.
    pub async fn run(self: Arc<Self>, mut view: watch::Receiver<MetaView>) {
        loop {
            let current = view.borrow_and_update().clone();
            self.reconcile(&current.state).await;
            if view.changed().await.is_err() {
                break;
            }
        }
    }

    fn desired(&self, state: &MetaState) -> HashMap<GroupId, Placement> {
        let mut out = HashMap::new();
        for stream in state.streams.values() {
            for shard in &stream.shards {
                let joining = state
                    .replica_moves
                    .get(&shard.group)
                    .is_some_and(|m| m.to == self.node_id);
                if !shard.replicas.contains(&self.node_id) && !joining {
                    continue;
                }
                let members = shard
                    .replicas
                    .iter()
                    .filter_map(|id| {
                        state.nodes.get(id).map(|n| {
                            (
                                *id,
                                BasicNode {
                                    addr: n.peer_addr.clone(),
                                },
                            )
                        })
                    })
                    .collect();
                let identity = ShardIdentity {
                    stream_uid: stream.uid,
                    shard_index: shard.index,
                    create_secs: shard.create_secs,
                };
                let initialize = state.may_initialize(shard.group, self.node_id);
                out.insert(
                    shard.group,
                    Placement {
                        identity,
                        members,
                        initialize,
                    },
                );
            }
        }
        out
    }

    async fn reconcile(&self, state: &MetaState) {
        if state.secrets.is_none() {
            return;
        }
        let desired = self.desired(state);
        let running: Vec<GroupId> = self
            .replicas
            .read()
            .unwrap_or_else(|p| p.into_inner())
            .keys()
            .copied()
            .collect();
        for group in running {
            // Only groups the map has handed out and since dropped are removed.
            if !desired.contains_key(&group) && group < state.next_group {
                self.stop(group).await;
            }
        }
        for (group, placement) in desired {
            if self.get(group).is_some() {
                continue;
            }
            if let Err(e) = self.start(group, placement).await {
                tracing::error!(group, error = %e, "cannot start shard group");
            }
        }
        self.apply_limits(state);
    }

    /// Hands every hosted replica its stream's limits (the cluster's `[limits]` with the
    /// stream's `spate:` limit tags), so a tag change takes effect without a restart.
    fn apply_limits(&self, state: &MetaState) {
        for stream in state.streams.values() {
            let limits = self
                .capacity
                .limits
                .effective(&stream.settings.limit_overrides());
            for shard in &stream.shards {
                if let Some(r) = self.get(shard.group) {
                    r.set_limits(limits);
                }
            }
        }
    }

    async fn start(&self, group: GroupId, placement: Placement) -> anyhow::Result<()> {
        let config = self.tuning.config(&format!("shard-{group}"), false)?;
        let log =
            GroupLogStore::<ShardTypeConfig>::new(self.db.clone(), group, self.flusher.clone());
        let store = ShardStore::open(
            self.db.clone(),
            group,
            self.checkpoints.clone(),
            self.tuning.shard_log_keep_bytes,
        )?;
        let network = GroupNetworkFactory::<ShardTypeConfig>::new(self.peers.clone(), group);
        let raft = openraft::Raft::new(self.node_id, config, network, log, store.clone()).await?;
        self.registry.insert(group, RaftEndpoint::new(raft.clone()));
        if placement.initialize && !raft.is_initialized().await? {
            if let Err(e) = raft.initialize(placement.members.clone()).await {
                tracing::debug!(group, error = %e, "initialize (another replica may have done it)");
            }
        }
        let replica = Arc::new(ShardReplica::new(
            group,
            placement.identity,
            raft,
            store,
            self.capacity.clone(),
            self.checkpoints.rounds(),
            self.tuning.shard_log_keep,
        ));
        self.replicas
            .write()
            .unwrap_or_else(|p| p.into_inner())
            .insert(group, replica);
        tracing::info!(
            group,
            shard = placement.identity.shard_index,
            "shard replica started"
        );
        Ok(())
    }

    async fn stop(&self, group: GroupId) {
        let replica = self
            .replicas
            .write()
            .unwrap_or_else(|p| p.into_inner())
            .remove(&group);
        self.registry.remove(group);
        if let Some(r) = replica {
            if let Err(e) = r.raft.shutdown().await {
                tracing::warn!(group, error = %e, "shard group shutdown");
            }
            let log =
                GroupLogStore::<ShardTypeConfig>::new(self.db.clone(), group, self.flusher.clone());
            if let Err(e) = r.store.destroy().and_then(|_| log.destroy()) {
                tracing::warn!(group, error = %e, "cannot delete shard group data");
            }
            tracing::info!(group, "shard replica removed");
        }
    }

    /// Shuts every hosted group down (node shutdown).
    pub async fn shutdown(&self) {
        let all: Vec<_> = self
            .replicas
            .write()
            .unwrap_or_else(|p| p.into_inner())
            .drain()
            .collect();
        for (group, r) in all {
            self.registry.remove(group);
            let _ = r.raft.shutdown().await;
        }
    }
}
