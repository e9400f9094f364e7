//! The on-demand autoscaler loop, on the metadata leader: every `interval_ms` it asks the
//! leader of each open shard of every ON_DEMAND stream for its accepted writes per second
//! (`ShardRequest::Load`), keeps the derived history (cold periods, hourly peaks, last
//! round) in memory, runs the pure planner (`spate_control_plane::meta::autoscale::plan`)
//! and starts the first planned operation through the reshard engine (`BeginSplit` /
//! `BeginMerge`). Every decision is logged with its reason (target `spate::autoscale`).
//!
//! The history is not replicated: after a metadata-leader change the new leader starts with
//! an empty one, which can only delay decisions (windows refill, cold periods restart).

use std::collections::{BTreeMap, HashMap};
use std::sync::Arc;
use std::time::Duration;

use spate_control_plane::meta::autoscale::{
    plan, AutoscaleParams, LoadHistory, LoadSample, ReshardOp,
};
use spate_control_plane::meta::state::{CapacityMode, StreamMeta, StreamStatus};
use spate_control_plane::meta::{MetaCommand, MetaHandle};

use super::router::ShardRouter;
use crate::shard::batcher::now_ms;
use crate::shard::replica::{ShardReply, ShardRequest};

/// Hours of hourly peaks kept per stream (the "recent peak" the target follows).
const PEAK_HOURS: usize = 30 * 24;

#[derive(Default)]
struct StreamHistory {
    cold_since_ms: BTreeMap<u32, u64>,
    /// Hour → peak aggregate load (in shards) seen in that hour.
    hourly_peaks: BTreeMap<u64, f64>,
    last_round_ms: Option<u64>,
}

/// Runs the autoscaler until the task is dropped.
pub async fn run(meta: MetaHandle, router: Arc<ShardRouter>, params: AutoscaleParams) {
    if !params.enabled {
        return;
    }
    let mut tick = tokio::time::interval(Duration::from_millis(params.interval_ms.max(100)));
    tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Skip);
    let mut history: HashMap<u64, StreamHistory> = HashMap::new();
    loop {
        tick.tick().await;
        if !meta.raft().is_leader() {
            history.clear();
            continue;
        }
        let view = meta.view();
        history.retain(|uid, _| view.state.streams.values().any(|s| s.uid == *uid));
        for stream in view.state.streams.values() {
            if stream.mode != CapacityMode::OnDemand || stream.status != StreamStatus::Active {
                continue;
            }
            let h = history.entry(stream.uid).or_default();
            evaluate(&meta, &router, &params, stream, h).await;
        }
    }
}

async fn evaluate(
    meta: &MetaHandle,
    router: &ShardRouter,
    p: &AutoscaleParams,
    stream: &StreamMeta,
    h: &mut StreamHistory,
) {
    let now = now_ms();
    let mut load = LoadHistory::default();
    let mut aggregate = 0.0;
    for shard in stream.open_shards() {
        let secs = p.window_secs.min(119) as u32;
        let buckets = match router.call(shard, ShardRequest::Load { secs }).await {
            Ok(ShardReply::Load(b)) => b,
            other => {
                tracing::debug!(target: "spate::autoscale", stream = %stream.name, shard = shard.index, reply = ?other.map(|_| ()), "no load report");
                return;
            }
        };
        let samples: Vec<LoadSample> = buckets
            .iter()
            .map(|b| LoadSample {
                sec: b.sec,
                bytes: b.bytes,
                records: b.records,
            })
            .collect();
        let mean = samples
            .iter()
            .map(|s| p.utilisation(s.bytes, s.records))
            .sum::<f64>()
            / p.window_secs.max(1) as f64;
        aggregate += mean;
        if mean < p.merge_threshold {
            h.cold_since_ms.entry(shard.index).or_insert(now);
        } else {
            h.cold_since_ms.remove(&shard.index);
        }
        load.recent.insert(shard.index, samples);
    }
    h.cold_since_ms
        .retain(|i, _| stream.shard(*i).is_some_and(|s| s.writable()));
    let hour = now / 3_600_000;
    let peak = h.hourly_peaks.entry(hour).or_insert(0.0);
    *peak = peak.max(aggregate);
    while h.hourly_peaks.len() > PEAK_HOURS {
        h.hourly_peaks.pop_first();
    }
    load.peak_shards = h.hourly_peaks.values().copied().fold(0.0, f64::max);
    load.cold_since_ms = h.cold_since_ms.clone();
    load.last_round_ms = h.last_round_ms;
    let ops = plan(stream, &load, now, p);
    let Some(first) = ops.first() else { return };
    for op in &ops {
        tracing::info!(target: "spate::autoscale", stream = %stream.name, ?op, "autoscaler decision");
    }
    let name = stream.name.clone();
    let cmd = match first.clone() {
        ReshardOp::Split {
            shard, new_start, ..
        } => MetaCommand::BeginSplit {
            name,
            parent: shard,
            new_start,
            now_ms: now,
        },
        ReshardOp::Merge {
            shard, adjacent, ..
        } => MetaCommand::BeginMerge {
            name,
            shard,
            adjacent,
            now_ms: now,
        },
    };
    h.last_round_ms = Some(now);
    let what = cmd.to_string();
    match meta.propose(cmd).await {
        Ok(r) => {
            tracing::info!(target: "spate::autoscale", command = %what, result = ?r, "autoscaler step")
        }
        Err(e) => {
            tracing::warn!(target: "spate::autoscale", command = %what, error = %e, "autoscaler step failed")
        }
    }
}
