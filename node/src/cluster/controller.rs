//! Control loops. On the metadata leader: stream activation (CREATING → ACTIVE once every
//! shard group has a leader), the reshard executor (seal parents, open children, step
//! UpdateShardCount through splits and merges) and shard expiry. On every node: retention
//! trimming by the shard groups this node leads.
//!
//! Every step reads the recorded state and proposes idempotent commands, so a new metadata
//! leader resumes whatever its predecessor left half done.

use std::sync::Arc;
use std::time::Duration;

use spate_control_plane::meta::reshard::{plan_uniform, ReshardOp};
use spate_control_plane::meta::state::{ShardEnd, ShardMeta, ShardState, StreamMeta, StreamStatus};
use spate_control_plane::meta::{MetaCommand, MetaHandle};

use super::router::ShardRouter;
use crate::shard::batcher::now_ms;
use crate::shard::manager::ShardManager;
use crate::shard::replica::{ShardReply, ShardRequest};

/// Timing of the control loops.
#[derive(Debug, Clone, Copy)]
pub struct ControlTiming {
    /// Length of one retention "hour" in ms (3,600,000; tests shorten it).
    pub retention_hour_ms: u64,
}

/// Runs the metadata-leader loops until the task is dropped.
pub async fn run(meta: MetaHandle, router: Arc<ShardRouter>, timing: ControlTiming) {
    let mut tick = tokio::time::interval(Duration::from_millis(100));
    tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Skip);
    loop {
        tick.tick().await;
        if !meta.raft().is_leader() {
            continue;
        }
        let view = meta.view();
        for stream in view.state.streams.values() {
            match stream.status {
                StreamStatus::Creating => activate(&meta, &router, stream).await,
                _ => {
                    if stream.reshard.is_some() {
                        continue_reshard(&meta, &router, stream).await;
                    } else if let Some(target) = stream.target_shard_count {
                        next_step(&meta, stream, target).await;
                    }
                    expire(&meta, &router, stream, timing).await;
                }
            }
        }
    }
}

async fn has_leader(router: &ShardRouter, shard: &ShardMeta) -> bool {
    matches!(router.call(shard, ShardRequest::Status).await, Ok(ShardReply::Status(st)) if st.leader.is_some())
}

async fn propose(meta: &MetaHandle, cmd: MetaCommand) {
    let what = cmd.to_string();
    match meta.propose(cmd).await {
        Ok(r) => tracing::info!(command = %what, result = ?r, "control step"),
        Err(e) => tracing::warn!(command = %what, error = %e, "control step failed"),
    }
}

async fn activate(meta: &MetaHandle, router: &ShardRouter, stream: &StreamMeta) {
    for shard in &stream.shards {
        if !has_leader(router, shard).await {
            return;
        }
    }
    propose(
        meta,
        MetaCommand::ActivateStream {
            name: stream.name.clone(),
            uid: stream.uid,
        },
    )
    .await;
}

/// Seals the parents of the step in progress (once the children can take writes) and
/// completes it.
async fn continue_reshard(meta: &MetaHandle, router: &ShardRouter, stream: &StreamMeta) {
    let Some(step) = &stream.reshard else { return };
    for c in &step.children {
        match stream.shard(*c) {
            Some(child) if has_leader(router, child).await => {}
            _ => return,
        }
    }
    let mut ends = Vec::with_capacity(step.parents.len());
    for p in &step.parents {
        let Some(parent) = stream.shard(*p) else {
            return;
        };
        match router.call(parent, ShardRequest::Seal).await {
            Ok(ShardReply::Sealed {
                end_ordinal,
                sealed_ms,
            }) => {
                ends.push((
                    *p,
                    ShardEnd {
                        end_ordinal,
                        sealed_secs: sealed_ms / 1000,
                    },
                ));
            }
            other => {
                tracing::debug!(stream = %stream.name, parent = p, reply = ?other.map(|_| ()), "seal not done yet");
                return;
            }
        }
    }
    propose(
        meta,
        MetaCommand::CompleteReshard {
            name: stream.name.clone(),
            ends,
        },
    )
    .await;
}

/// The next split or merge of an UpdateShardCount in progress.
async fn next_step(meta: &MetaHandle, stream: &StreamMeta, target: u32) {
    let open: Vec<(u32, u128, u128)> = stream
        .open_shards()
        .iter()
        .map(|s| (s.index, s.hash_start, s.hash_end))
        .collect();
    let name = stream.name.clone();
    let cmd = match plan_uniform(&open, target) {
        Some(ReshardOp::Split { shard, at }) => MetaCommand::BeginSplit {
            name,
            parent: shard,
            new_start: at,
            now_ms: now_ms(),
        },
        Some(ReshardOp::Merge { shard, adjacent }) => MetaCommand::BeginMerge {
            name,
            shard,
            adjacent,
            now_ms: now_ms(),
        },
        None => MetaCommand::FinishShardCount { name },
    };
    propose(meta, cmd).await;
}

/// Removes closed shards whose records have all passed retention (EXPIRED).
async fn expire(
    meta: &MetaHandle,
    router: &ShardRouter,
    stream: &StreamMeta,
    timing: ControlTiming,
) {
    let retention_ms = stream.retention_hours as u64 * timing.retention_hour_ms;
    // Agreed cluster time, like trimming: one wrong clock does not expire shards early.
    let Some(now) = crate::cluster::clock::agreed_now_ms() else {
        return;
    };
    for shard in stream
        .shards
        .iter()
        .filter(|s| s.state == ShardState::Closed)
    {
        let Some(end) = shard.end else { continue };
        if now.saturating_sub(end.sealed_secs * 1000) < retention_ms {
            continue;
        }
        if let Ok(ShardReply::Status(st)) = router.call(shard, ShardRequest::Status).await {
            if st.trim_ordinal >= end.end_ordinal {
                propose(
                    meta,
                    MetaCommand::ExpireShard {
                        name: stream.name.clone(),
                        index: shard.index,
                    },
                )
                .await;
            }
        }
    }
}

/// The trim cutoff of a stream with `retention_hours` at agreed cluster time `agreed_now_ms`
/// (records that arrived before it are past retention).
pub fn retention_cutoff(agreed_now_ms: u64, retention_hours: u32, timing: ControlTiming) -> u64 {
    agreed_now_ms.saturating_sub(retention_hours as u64 * timing.retention_hour_ms)
}

/// On every node: the shard groups this node leads trim records past their stream's
/// retention period.
///
/// Invariant: **no single node's wall clock can trim a record that is still inside
/// retention.** The cutoff is computed from agreed cluster time
/// ([`crate::cluster::clock::agreed_now_ms`]: the lower median of this node's clock and
/// fresh, monotonically extrapolated readings of the other nodes' clocks, from a majority of
/// the registered nodes), never from the leader's own wall clock; arrival times are cluster
/// time as well. A shard leader whose clock jumps 25 h ahead therefore trims exactly what a
/// correct clock would (a leader cut off from the majority trims nothing), and a wrong clock
/// elsewhere is outvoted. Apply stays deterministic: the cutoff travels in the `Trim` entry.
pub async fn retention(meta: MetaHandle, shards: Arc<ShardManager>, timing: ControlTiming) {
    let period = Duration::from_millis((timing.retention_hour_ms / 60).clamp(200, 30_000));
    let mut tick = tokio::time::interval(period);
    tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Skip);
    loop {
        tick.tick().await;
        let view = meta.view();
        for replica in shards.all() {
            if !replica.is_leader() {
                continue;
            }
            let Some(stream) = view
                .state
                .streams
                .values()
                .find(|s| s.uid == replica.identity.stream_uid)
            else {
                continue;
            };
            let Some(now) = crate::cluster::clock::agreed_now_ms() else {
                tracing::debug!(group = replica.group, "retention: no agreed cluster time");
                continue;
            };
            let cutoff = retention_cutoff(now, stream.retention_hours, timing);
            let first = replica.progress.trim_ordinal();
            let oldest = match replica.store.read(first, 1, usize::MAX) {
                Ok(r) => r.first().map(|r| r.record.arrival_ms),
                Err(e) => {
                    tracing::warn!(group = replica.group, error = %e, "retention read");
                    continue;
                }
            };
            if oldest.is_some_and(|a| a < cutoff) {
                let reply = replica
                    .handle(ShardRequest::Trim { cutoff_ms: cutoff })
                    .await;
                tracing::debug!(group = replica.group, ?reply, "retention trim");
            }
        }
    }
}
