//! The replica-move executor, on every node: for each shard group this node leads that has
//! a move recorded in the metadata (`meta::moves`), add the target as a learner (blocking
//! until it has caught up — by log replay, or by a streamed snapshot of the shard when the
//! leader has purged the log it needs, see `shard::snapshot`), change the voter set to `replicas - from + to`, and propose the
//! completion. Every step checks the group's current membership first, so a new shard
//! leader (or a retry after a timeout) resumes where the previous attempt stopped.
//!
//! Also, on the metadata leader, the decommission driver: for every decommissioning node
//! with no move in progress, begin moving its next replica (one at a time per node).

use std::collections::{BTreeSet, HashSet};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use openraft::async_runtime::WatchReceiver;
use openraft::BasicNode;
use spate_control_plane::meta::moves::{MoveCommand, ReplicaMove};
use spate_control_plane::meta::state::MetaState;
use spate_control_plane::meta::{MetaCommand, MetaHandle, MetaResponse};
use spate_control_plane::raft::GroupId;

use crate::shard::manager::ShardManager;
use crate::shard::replica::ShardReplica;

/// Pause between passes.
const STEP: Duration = Duration::from_millis(200);
/// Bound on one learner catch-up or membership change before the step is retried.
const STEP_TIMEOUT: Duration = Duration::from_secs(60);

/// Runs the executor until the task is dropped.
pub async fn run(meta: MetaHandle, shards: Arc<ShardManager>) {
    let in_flight: Arc<Mutex<HashSet<GroupId>>> = Arc::default();
    let mut tick = tokio::time::interval(STEP);
    tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Skip);
    loop {
        tick.tick().await;
        let view = meta.view();
        if meta.raft().is_leader() {
            drive_decommission(&meta, &view.state).await;
        }
        for (group, mv) in &view.state.replica_moves {
            let Some(replica) = shards.get(*group) else {
                continue;
            };
            if !replica.is_leader() {
                continue;
            }
            let Some(replicas) = view.state.group_replicas(*group) else {
                continue;
            };
            let Some(addr) = view.state.nodes.get(&mv.to).map(|n| n.peer_addr.clone()) else {
                continue;
            };
            if !in_flight
                .lock()
                .unwrap_or_else(|p| p.into_inner())
                .insert(*group)
            {
                continue;
            }
            let (meta, in_flight, mv, group) = (meta.clone(), in_flight.clone(), *mv, *group);
            let replicas = replicas.clone();
            tokio::spawn(async move {
                if let Err(e) = execute(&meta, &replica, mv, &replicas, addr).await {
                    tracing::warn!(group, from = mv.from, to = mv.to, error = %e, "replica move step");
                }
                in_flight
                    .lock()
                    .unwrap_or_else(|p| p.into_inner())
                    .remove(&group);
            });
        }
    }
}

/// One attempt at a move, from wherever the group's membership stands.
async fn execute(
    meta: &MetaHandle,
    replica: &ShardReplica,
    mv: ReplicaMove,
    replicas: &[u64],
    addr: String,
) -> anyhow::Result<()> {
    let group = replica.group;
    let raft = &replica.raft;
    let target: BTreeSet<u64> = replicas
        .iter()
        .copied()
        .filter(|n| *n != mv.from)
        .chain(std::iter::once(mv.to))
        .collect();
    let membership = raft
        .metrics()
        .borrow_watched()
        .membership_config
        .membership()
        .clone();
    let voters: BTreeSet<u64> = membership.voter_ids().collect();
    let joint = membership.get_joint_config().len() > 1;
    if voters != target || joint {
        if !voters.contains(&mv.to) {
            tracing::info!(
                group,
                to = mv.to,
                "replica move: adding the new replica as a learner"
            );
            tokio::time::timeout(
                STEP_TIMEOUT,
                raft.add_learner(mv.to, BasicNode { addr }, true),
            )
            .await
            .map_err(|_| anyhow::anyhow!("learner {} did not catch up in time", mv.to))??;
        }
        tracing::info!(group, voters = ?target, "replica move: changing the voter set");
        tokio::time::timeout(STEP_TIMEOUT, raft.change_membership(target.clone(), false))
            .await
            .map_err(|_| anyhow::anyhow!("membership change timed out"))??;
    }
    let cmd = MetaCommand::Move(MoveCommand::Complete {
        group,
        from: mv.from,
        to: mv.to,
    });
    match meta.propose(cmd).await? {
        MetaResponse::Failed(e) => anyhow::bail!("completion refused: {e}"),
        _ => {
            tracing::info!(group, from = mv.from, to = mv.to, "replica move complete");
            Ok(())
        }
    }
}

/// On the metadata leader: begins the next move off every decommissioning node that has
/// none in progress.
async fn drive_decommission(meta: &MetaHandle, state: &MetaState) {
    for node in &state.decommissioning {
        let busy = state
            .replica_moves
            .iter()
            .any(|(g, m)| m.from == *node && state.group_replicas(*g).is_some());
        if busy {
            continue;
        }
        let next = state
            .streams
            .values()
            .flat_map(|s| s.shards.iter())
            .find(|s| s.replicas.contains(node) && !state.replica_moves.contains_key(&s.group));
        let Some(shard) = next else { continue };
        let cmd = MetaCommand::Move(MoveCommand::Begin {
            group: shard.group,
            from: *node,
            to: None,
        });
        let what = cmd.to_string();
        match meta.propose(cmd).await {
            Ok(r) => tracing::info!(command = %what, result = ?r, "decommission step"),
            Err(e) => tracing::warn!(command = %what, error = %e, "decommission step failed"),
        }
    }
}
