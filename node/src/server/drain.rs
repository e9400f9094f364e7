//! Draining a node before it stops (`POST /v1/drain`, the Kubernetes preStop hook): the node
//! stops campaigning in every Raft group it hosts (openraft's runtime `elect(false)`, so
//! leadership does not come back to it) and hands the leadership of every group it leads —
//! the shard groups and the metadata group — to the most up-to-date other voter
//! (`trigger().transfer_leader`). A leader that transfers stops proposing at once and answers
//! new writes with `ForwardToLeader` (retried by the router); entries already in its log are
//! committed by the new leader, which has flushed them before it campaigns, so their clients
//! still get their answers. A transfer that does not take (the target is down or behind) is
//! retried with the next candidate. Draining lasts until the process stops; it is not
//! persisted, so a restarted node campaigns again.

use std::collections::HashMap;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use openraft::async_runtime::WatchReceiver;
use openraft::storage::RaftStateMachine;
use openraft::{Raft, RaftTypeConfig};
use serde::Serialize;
use spate_control_plane::meta::MetaHandle;
use spate_control_plane::raft::{GroupId, NodeId, META_GROUP};
use tokio::sync::watch;

use crate::shard::manager::ShardManager;

/// How often the drain loop looks at the groups.
const STEP: Duration = Duration::from_millis(100);
/// How long a transfer may take before it is tried again (with the next candidate).
const RETRY_AFTER: Duration = Duration::from_millis(1_500);

/// What `GET/POST /v1/drain` reports.
#[derive(Debug, Clone, Serialize, PartialEq, Eq)]
pub struct DrainStatus {
    pub node_id: NodeId,
    pub draining: bool,
    /// This node leads the metadata group.
    pub leads_meta: bool,
    /// Shard groups this node leads.
    pub leads_shards: Vec<GroupId>,
    /// Draining and leading no group: safe to stop.
    pub drained: bool,
}

/// A leadership transfer in progress for one group.
struct Attempt {
    at: Instant,
    tries: usize,
}

/// The node's drain switch and the loop that moves leadership away.
pub struct Drainer {
    node_id: NodeId,
    meta: MetaHandle,
    shards: Arc<ShardManager>,
    draining: AtomicBool,
    attempts: Mutex<HashMap<GroupId, Attempt>>,
}

impl Drainer {
    pub fn new(node_id: NodeId, meta: MetaHandle, shards: Arc<ShardManager>) -> Arc<Self> {
        Arc::new(Self {
            node_id,
            meta,
            shards,
            draining: AtomicBool::new(false),
            attempts: Mutex::new(HashMap::new()),
        })
    }

    pub fn is_draining(&self) -> bool {
        self.draining.load(Ordering::Acquire)
    }

    /// The groups this node leads right now.
    pub fn status(&self) -> DrainStatus {
        let leads_meta = leads(self.meta.raft(), self.node_id);
        let mut leads_shards: Vec<GroupId> = self
            .shards
            .all()
            .iter()
            .filter(|r| leads(&r.raft, self.node_id))
            .map(|r| r.group)
            .collect();
        leads_shards.sort_unstable();
        let draining = self.is_draining();
        DrainStatus {
            node_id: self.node_id,
            draining,
            drained: draining && !leads_meta && leads_shards.is_empty(),
            leads_meta,
            leads_shards,
        }
    }

    /// Starts draining (idempotent): the first call spawns the drain loop, which runs until
    /// `stop` turns true.
    pub fn start(self: &Arc<Self>, stop: watch::Receiver<bool>) {
        if self.draining.swap(true, Ordering::AcqRel) {
            return;
        }
        tracing::info!(node = self.node_id, "draining: moving leadership away");
        let me = self.clone();
        tokio::spawn(async move { me.run(stop).await });
    }

    async fn run(self: Arc<Self>, mut stop: watch::Receiver<bool>) {
        loop {
            self.step().await;
            tokio::select! {
                _ = tokio::time::sleep(STEP) => {}
                _ = stop.wait_for(|s| *s) => return,
            }
        }
    }

    /// One pass: no group may campaign; every led group is handed over.
    async fn step(&self) {
        self.drain_group(META_GROUP, self.meta.raft()).await;
        for r in self.shards.all() {
            self.drain_group(r.group, &r.raft).await;
        }
    }

    async fn drain_group<C, SM>(&self, group: GroupId, raft: &Raft<C, SM>)
    where
        C: RaftTypeConfig<NodeId = u64>,
        SM: RaftStateMachine<C>,
    {
        raft.runtime_config().elect(false);
        if !leads(raft, self.node_id) {
            self.attempts
                .lock()
                .unwrap_or_else(|p| p.into_inner())
                .remove(&group);
            return;
        }
        let tries = {
            let mut attempts = self.attempts.lock().unwrap_or_else(|p| p.into_inner());
            match attempts.get_mut(&group) {
                Some(a) if a.at.elapsed() < RETRY_AFTER => return,
                Some(a) => {
                    a.at = Instant::now();
                    a.tries += 1;
                    a.tries
                }
                None => {
                    attempts.insert(
                        group,
                        Attempt {
                            at: Instant::now(),
                            tries: 0,
                        },
                    );
                    0
                }
            }
        };
        let candidates = transfer_candidates(raft, self.node_id);
        let Some(to) = candidates.get(tries % candidates.len().max(1)).copied() else {
            tracing::warn!(group, "draining: no other voter to hand leadership to");
            return;
        };
        tracing::info!(
            group,
            to,
            attempt = tries,
            "draining: transferring leadership"
        );
        if let Err(e) = raft.trigger().transfer_leader(to).await {
            tracing::warn!(group, error = %e, "draining: transfer_leader");
        }
    }
}

/// Whether `raft` on node `me` is the leader of its group.
fn leads<C, SM>(raft: &Raft<C, SM>, me: NodeId) -> bool
where
    C: RaftTypeConfig<NodeId = u64>,
    SM: RaftStateMachine<C>,
{
    let m = raft.metrics().borrow_watched().clone();
    m.state.is_leader() || m.current_leader == Some(me)
}

/// The other voters of the group, the most replicated first (the leader's replication
/// progress), so the target can take over without waiting for log.
fn transfer_candidates<C, SM>(raft: &Raft<C, SM>, me: NodeId) -> Vec<NodeId>
where
    C: RaftTypeConfig<NodeId = u64>,
    SM: RaftStateMachine<C>,
{
    let m = raft.metrics().borrow_watched().clone();
    let replication = m.replication.clone().unwrap_or_default();
    let mut voters: Vec<NodeId> = m
        .membership_config
        .membership()
        .voter_ids()
        .filter(|id| *id != me)
        .collect();
    voters.sort_by(|a, b| {
        let ma = replication.get(a).cloned().flatten();
        let mb = replication.get(b).cloned().flatten();
        mb.cmp(&ma).then(a.cmp(b))
    });
    voters
}
