//! The replica rebalancer loop, on the metadata leader: every `rebalance.interval_ms` it
//! works out which nodes are live (the leader's last heartbeat answer from each member of the
//! control plane is younger than `rebalance.down_after_ms`), runs the pure planner
//! (`spate_control_plane::meta::rebalance::plan`) and proposes the planned moves as
//! `MoveCommand::Begin` with an explicit target. The replica-move executor (`moves`) then
//! carries them out exactly like a decommission's moves. The last decision is kept in
//! [`RebalanceStatus`] for `GET /v1/rebalance` and `/metrics`.

use std::collections::BTreeSet;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use openraft::async_runtime::WatchReceiver;
use openraft::Instant as _;
use serde::Serialize;
use spate_control_plane::meta::moves::MoveCommand;
use spate_control_plane::meta::rebalance::{plan, Idle, Plan, PlannedMove, RebalanceParams};
use spate_control_plane::meta::{MetaCommand, MetaHandle, MetaResponse};

/// What the rebalancer of this node last decided.
#[derive(Debug, Clone, Default, Serialize)]
pub struct Decision {
    /// Whether this node led the control plane (only the leader plans).
    pub leader: bool,
    /// Why it started nothing, when it started nothing.
    pub idle: Option<Idle>,
    /// The moves it last started.
    pub started: Vec<PlannedMove>,
    /// The nodes it counted as live.
    pub live: Vec<u64>,
}

/// Shared state of the rebalancer, read by the admin endpoints.
#[derive(Debug, Default)]
pub struct RebalanceStatus {
    pub params: RebalanceParams,
    last: Mutex<Decision>,
    /// Moves this node has started since it started.
    pub moves_started: AtomicU64,
}

impl RebalanceStatus {
    pub fn new(params: RebalanceParams) -> Arc<Self> {
        Arc::new(Self {
            params,
            ..Default::default()
        })
    }

    pub fn last(&self) -> Decision {
        self.last.lock().unwrap_or_else(|p| p.into_inner()).clone()
    }

    fn set(&self, d: Decision) {
        *self.last.lock().unwrap_or_else(|p| p.into_inner()) = d;
    }
}

/// The nodes the metadata leader hears from: itself and every member whose last heartbeat
/// answer is younger than `down_after` (empty on a follower).
pub fn live_nodes(meta: &MetaHandle, down_after: Duration) -> BTreeSet<u64> {
    let m = meta.raft().metrics().borrow_watched().clone();
    let mut live = BTreeSet::new();
    if !m.state.is_leader() {
        return live;
    }
    live.insert(m.id);
    for (id, acked) in m.heartbeat.iter().flatten() {
        if acked.as_ref().is_some_and(|t| t.elapsed() <= down_after) {
            live.insert(*id);
        }
    }
    live
}

/// Runs the rebalancer until the task is dropped (idle unless enabled and leading).
pub async fn run(meta: MetaHandle, status: Arc<RebalanceStatus>) {
    let params = status.params;
    if !params.enabled {
        tracing::info!("replica rebalancing is disabled (rebalance.enabled = false)");
        return;
    }
    let mut tick = tokio::time::interval(Duration::from_millis(params.interval_ms.max(100)));
    tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Skip);
    let down_after = Duration::from_millis(params.down_after_ms);
    let mut last_idle: Option<Idle> = None;
    loop {
        tick.tick().await;
        if !meta.raft().is_leader() {
            status.set(Decision::default());
            last_idle = None;
            continue;
        }
        let live = live_nodes(&meta, down_after);
        let view = meta.view();
        let mut decision = Decision {
            leader: true,
            live: live.iter().copied().collect(),
            ..Default::default()
        };
        match plan(&view.state, &live, &params) {
            Plan::Idle(why) => {
                if last_idle.as_ref() != Some(&why) {
                    tracing::info!(target: "spate::rebalance", reason = %why, "rebalancer idle");
                    last_idle = Some(why.clone());
                }
                decision.idle = Some(why);
            }
            Plan::Move(moves) => {
                last_idle = None;
                for m in moves {
                    let cmd = MetaCommand::Move(MoveCommand::Begin {
                        group: m.group,
                        from: m.from,
                        to: Some(m.to),
                    });
                    match meta.propose(cmd).await {
                        Ok(MetaResponse::Failed(e)) => {
                            tracing::info!(target: "spate::rebalance", group = m.group, from = m.from, to = m.to, error = %e, "rebalance move refused")
                        }
                        Ok(_) => {
                            tracing::info!(target: "spate::rebalance", group = m.group, from = m.from, to = m.to, "rebalance: moving a replica");
                            status.moves_started.fetch_add(1, Ordering::Relaxed);
                            decision.started.push(m);
                        }
                        Err(e) => {
                            tracing::warn!(target: "spate::rebalance", group = m.group, error = %e, "rebalance move proposal failed")
                        }
                    }
                }
            }
        }
        status.set(decision);
    }
}
