//! The on-demand autoscaler loop and the capacity-mode switch executor, on the metadata
//! leader.
//!
//! * **Autoscaling**: every `interval_ms` it asks the leader of each open shard of every
//!   ACTIVE stream for its accepted writes per second (`ShardRequest::Load`), keeps the
//!   derived history (cold periods, hourly peaks, last round) in memory — for PROVISIONED
//!   streams too, so that a switch to ON_DEMAND can be sized for the traffic seen — and, for
//!   ON_DEMAND streams, runs the pure planner
//!   (`spate_control_plane::meta::autoscale::plan`) and starts the first planned operation
//!   through the reshard engine (`BeginSplit` / `BeginMerge`).
//! * **Mode switches** (every 100 ms, even with autoscaling disabled): a stream with a
//!   pending UpdateStreamMode is finished with `ModeCommand::Finish`. ON_DEMAND →
//!   PROVISIONED keeps the shards; PROVISIONED → ON_DEMAND first measures the stream's load
//!   and sizes it with `on_demand_shards` (at least 4 shards, peak ≤ 50 % per shard); the
//!   UpdateShardCount machinery then reshards it while it stays UPDATING.
//!
//! Every decision is logged with its reason (target `spate::autoscale`). The history is not
//! replicated: after a metadata-leader change the new leader starts with an empty one, which
//! can only delay decisions (windows refill, cold periods restart, peaks are re-measured).

use std::collections::{BTreeMap, HashMap};
use std::sync::Arc;
use std::time::{Duration, Instant};

use spate_control_plane::meta::autoscale::{
    on_demand_shards, plan, AutoscaleParams, LoadHistory, LoadSample, ReshardOp,
};
use spate_control_plane::meta::mode::{ModeCommand, PendingSwitch};
use spate_control_plane::meta::state::{CapacityMode, ShardMeta, StreamMeta, StreamStatus};
use spate_control_plane::meta::{MetaCommand, MetaHandle};

use super::router::ShardRouter;
use crate::shard::batcher::now_ms;
use crate::shard::replica::{ShardReply, ShardRequest};

/// Hours of hourly peaks kept per stream (the "recent peak" the target follows).
const PEAK_HOURS: usize = 30 * 24;
/// How often pending mode switches are looked at.
const SWITCH_TICK: Duration = Duration::from_millis(100);
/// How long a switch to ON_DEMAND waits for every shard's load report before it sizes the
/// stream with the reports it has.
const SWITCH_MEASURE_PATIENCE_MS: u64 = 10_000;

#[derive(Default)]
struct StreamHistory {
    cold_since_ms: BTreeMap<u32, u64>,
    /// Hour → peak aggregate load (in shards) seen in that hour.
    hourly_peaks: BTreeMap<u64, f64>,
    last_round_ms: Option<u64>,
}

impl StreamHistory {
    fn peak(&self) -> f64 {
        self.hourly_peaks.values().copied().fold(0.0, f64::max)
    }
}

/// Runs the autoscaler and the mode-switch executor until the task is dropped.
pub async fn run(meta: MetaHandle, router: Arc<ShardRouter>, params: AutoscaleParams) {
    let mut tick = tokio::time::interval(SWITCH_TICK);
    tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Skip);
    let interval = Duration::from_millis(params.interval_ms.max(100));
    let mut next_round = Instant::now();
    let mut history: HashMap<u64, StreamHistory> = HashMap::new();
    loop {
        tick.tick().await;
        if !meta.raft().is_leader() {
            history.clear();
            continue;
        }
        let view = meta.view();
        for stream in view.state.streams.values() {
            if let Some(pending) = stream.mode_switches.pending {
                let h = history.entry(stream.uid).or_default();
                finish_switch(&meta, &router, &params, stream, pending, h).await;
            }
        }
        if !params.enabled || Instant::now() < next_round {
            continue;
        }
        next_round = Instant::now() + interval;
        history.retain(|uid, _| view.state.streams.values().any(|s| s.uid == *uid));
        for stream in view.state.streams.values() {
            if stream.status != StreamStatus::Active {
                continue;
            }
            let h = history.entry(stream.uid).or_default();
            let Some(load) = measure(&router, &params, stream, h).await else {
                continue;
            };
            if stream.mode == CapacityMode::OnDemand {
                evaluate(&meta, &params, stream, load, h).await;
            }
        }
    }
}

/// The accepted writes of the last window of one shard, from its leader.
async fn shard_load(
    router: &ShardRouter,
    p: &AutoscaleParams,
    stream: &StreamMeta,
    shard: &ShardMeta,
) -> Option<Vec<LoadSample>> {
    let secs = p.window_secs.clamp(1, 119) as u32;
    match router.call(shard, ShardRequest::Load { secs }).await {
        Ok(ShardReply::Load(b)) => Some(
            b.iter()
                .map(|b| LoadSample {
                    sec: b.sec,
                    bytes: b.bytes,
                    records: b.records,
                })
                .collect(),
        ),
        other => {
            tracing::debug!(target: "spate::autoscale", stream = %stream.name, shard = shard.index, reply = ?other.map(|_| ()), "no load report");
            None
        }
    }
}

/// Mean write utilisation of a shard over the window.
fn mean_utilisation(p: &AutoscaleParams, samples: &[LoadSample]) -> f64 {
    samples
        .iter()
        .map(|s| p.utilisation(s.bytes, s.records))
        .sum::<f64>()
        / p.window_secs.max(1) as f64
}

/// Measures a stream's open shards and updates its history; `None` if a shard did not
/// report (the stream is skipped this round).
async fn measure(
    router: &ShardRouter,
    p: &AutoscaleParams,
    stream: &StreamMeta,
    h: &mut StreamHistory,
) -> Option<LoadHistory> {
    let now = now_ms();
    let mut load = LoadHistory::default();
    let mut aggregate = 0.0;
    for shard in stream.open_shards() {
        let samples = shard_load(router, p, stream, shard).await?;
        let mean = mean_utilisation(p, &samples);
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
    load.peak_shards = h.peak();
    load.cold_since_ms = h.cold_since_ms.clone();
    load.last_round_ms = h.last_round_ms;
    Some(load)
}

/// Plans an ON_DEMAND stream and starts the first operation.
async fn evaluate(
    meta: &MetaHandle,
    p: &AutoscaleParams,
    stream: &StreamMeta,
    load: LoadHistory,
    h: &mut StreamHistory,
) {
    let now = now_ms();
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
    propose(meta, cmd).await;
}

/// Finishes a pending capacity-mode switch (see the module doc).
async fn finish_switch(
    meta: &MetaHandle,
    router: &ShardRouter,
    p: &AutoscaleParams,
    stream: &StreamMeta,
    pending: PendingSwitch,
    h: &mut StreamHistory,
) {
    let target_shards = match pending.to {
        CapacityMode::Provisioned => {
            tracing::info!(target: "spate::autoscale", stream = %stream.name, shards = stream.open_shards().len(), "mode switch to PROVISIONED: shard count kept, autoscaling stops");
            None
        }
        CapacityMode::OnDemand => {
            let mut fresh = 0.0;
            let mut missing = 0;
            let open = stream.open_shards();
            for shard in &open {
                match shard_load(router, p, stream, shard).await {
                    Some(samples) => fresh += mean_utilisation(p, &samples),
                    None => missing += 1,
                }
            }
            if missing > 0 && now_ms() < pending.since_ms + SWITCH_MEASURE_PATIENCE_MS {
                return; // retried on the next tick
            }
            let peak = h.peak().max(fresh);
            let n = open.len() as u32;
            let target = on_demand_shards(n, peak, p);
            tracing::info!(
                target: "spate::autoscale",
                stream = %stream.name,
                open = n,
                target,
                reason = %format!(
                    "mode switch to ON_DEMAND: peak write load {peak:.2} shards (last {} s: {fresh:.2}; {missing} shards without a report) -> at least {} shards, <= {:.0}% each",
                    p.window_secs, p.min_shards, p.split_threshold * 100.0
                ),
                "autoscaler decision"
            );
            Some(target)
        }
    };
    propose(
        meta,
        MetaCommand::StreamMode(ModeCommand::Finish {
            name: stream.name.clone(),
            uid: stream.uid,
            target_shards,
        }),
    )
    .await;
}

async fn propose(meta: &MetaHandle, cmd: MetaCommand) {
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
