//! The on-demand autoscaler's decisions: a pure function [`plan`] from a stream, its recent
//! write load and the time to the reshard operations to run (`docs/capacity.md`).
//!
//! * **Hot shard**: an open shard whose write utilisation
//!   `max(bytes/s ÷ byte limit, records/s ÷ record limit)` is at least `split_threshold`
//!   (50 %) in at least `hot_fraction` of the seconds of the window is split at the midpoint
//!   of its hash range. Seconds without a sample count as idle.
//! * **Target**: the stream keeps at least `ceil(2 × peak)` open shards (peak = the recent
//!   peak aggregate load in shards), at least `min_shards`; missing shards are added by
//!   splitting the hottest shards.
//! * **Cooldown**: a shard younger than `child_cooldown_ms` is neither split nor merged (its
//!   window must fill); one round per stream per `round_interval_ms`.
//! * **Merge**: two hash-adjacent open shards are merged only when both have stayed cold
//!   (below `merge_threshold`, 25 %) for `merge_after_ms`, their summed recent load is below
//!   `merge_threshold`, no split is planned, and the stream stays at or above its target.
//!   The 25 %/50 % gap and the long cold period keep splits and merges from flapping.
//! * **Limits**: never more than `shard_limit` open shards.
//!
//! Only ACTIVE, ON_DEMAND streams without a reshard or UpdateShardCount in progress are
//! planned. Every operation carries the reason it was chosen, for the operator's log.

use std::collections::BTreeMap;

use serde::{Deserialize, Serialize};

use super::state::{CapacityMode, ShardMeta, ShardState, StreamMeta, StreamStatus};

/// Autoscaler parameters (defaults as in `docs/capacity.md`).
#[derive(Debug, Clone, Copy, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct AutoscaleParams {
    /// Run the autoscaler at all.
    pub enabled: bool,
    /// How often the autoscaler evaluates each ON_DEMAND stream, ms.
    pub interval_ms: u64,
    /// Per-shard write byte limit (utilisation 1.0), bytes/s; taken from `[limits]`.
    #[serde(skip)]
    pub shard_write_bytes_per_sec: u64,
    /// Per-shard write record limit (utilisation 1.0), records/s; taken from `[limits]`.
    #[serde(skip)]
    pub shard_write_records_per_sec: u64,
    /// Utilisation at or above which a second counts as hot.
    pub split_threshold: f64,
    /// Fraction of the window's seconds that must be hot to split.
    pub hot_fraction: f64,
    /// Measurement window, seconds.
    pub window_secs: u64,
    /// Utilisation below which a shard counts as cold (and a pair's sum must stay).
    pub merge_threshold: f64,
    /// How long both shards of a pair must stay cold before a merge, ms.
    pub merge_after_ms: u64,
    /// A shard younger than this is neither split nor merged, ms.
    pub child_cooldown_ms: u64,
    /// At most one round per stream per this interval, ms.
    pub round_interval_ms: u64,
    /// Open shards an ON_DEMAND stream keeps at least.
    pub min_shards: u32,
    /// Open shards a stream may never exceed.
    pub shard_limit: u32,
}

impl Default for AutoscaleParams {
    fn default() -> Self {
        Self {
            enabled: true,
            interval_ms: 10_000,
            shard_write_bytes_per_sec: 1 << 20,
            shard_write_records_per_sec: 1_000,
            split_threshold: 0.5,
            hot_fraction: 0.9,
            window_secs: 60,
            merge_threshold: 0.25,
            merge_after_ms: 24 * 3_600_000,
            child_cooldown_ms: 300_000,
            round_interval_ms: 60_000,
            min_shards: 4,
            shard_limit: 200,
        }
    }
}

impl AutoscaleParams {
    /// Write utilisation of one second: `max(bytes ÷ byte limit, records ÷ record limit)`.
    pub fn utilisation(&self, bytes: u64, records: u64) -> f64 {
        let b = bytes as f64 / self.shard_write_bytes_per_sec.max(1) as f64;
        let r = records as f64 / self.shard_write_records_per_sec.max(1) as f64;
        b.max(r)
    }
}

/// One second of a shard's accepted writes.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
pub struct LoadSample {
    /// Unix second.
    pub sec: u64,
    pub bytes: u64,
    pub records: u64,
}

/// What the autoscaler knows about a stream's load.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
pub struct LoadHistory {
    /// Per shard index: recent per-second samples (any order; gaps are idle seconds).
    pub recent: BTreeMap<u32, Vec<LoadSample>>,
    /// Per shard index: since when (ms) the shard has been continuously cold.
    pub cold_since_ms: BTreeMap<u32, u64>,
    /// The recent peak of the stream's aggregate load, in shards (sum of utilisations).
    pub peak_shards: f64,
    /// When the last round of this stream was started, ms.
    pub last_round_ms: Option<u64>,
}

/// One operation for the reshard engine.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub enum ReshardOp {
    Split {
        shard: u32,
        new_start: u128,
        reason: String,
    },
    Merge {
        shard: u32,
        adjacent: u32,
        reason: String,
    },
}

/// Open shards a stream being switched from PROVISIONED to ON_DEMAND is sized to: enough
/// that its recent peak load (`peak_shards`, in shards: the sum of per-shard utilisations)
/// would put at most `split_threshold` (50 %) on each shard — `ceil(peak ÷ 0.5)`, i.e. twice
/// the peak, as the on-demand target — at least `min_shards`, never fewer than the stream
/// has (a switch never merges), and never more than `shard_limit` (unless it already has
/// more).
pub fn on_demand_shards(open: u32, peak_shards: f64, p: &AutoscaleParams) -> u32 {
    let per_shard = if p.split_threshold > 0.0 {
        p.split_threshold
    } else {
        0.5
    };
    let need = (peak_shards.max(0.0) / per_shard - 1e-9).ceil();
    // `as` maps NaN to 0 and saturates +inf.
    let need = need.min(f64::from(u32::MAX)) as u32;
    need.max(p.min_shards).min(p.shard_limit.max(1)).max(open)
}

/// The midpoint split of `[start, end]`: the first key of the upper child.
pub fn midpoint(start: u128, end: u128) -> Option<u128> {
    (end > start).then(|| start + (end - start) / 2 + 1)
}

struct Stats {
    hot_secs: u64,
    mean: f64,
}

fn stats(p: &AutoscaleParams, samples: &[LoadSample], now_sec: u64) -> Stats {
    let from = now_sec.saturating_sub(p.window_secs);
    let mut per_sec: BTreeMap<u64, f64> = BTreeMap::new();
    for s in samples.iter().filter(|s| s.sec >= from && s.sec < now_sec) {
        *per_sec.entry(s.sec).or_default() += p.utilisation(s.bytes, s.records);
    }
    let hot_secs = per_sec
        .values()
        .filter(|u| **u >= p.split_threshold)
        .count() as u64;
    let mean = per_sec.values().sum::<f64>() / p.window_secs.max(1) as f64;
    Stats { hot_secs, mean }
}

fn old_enough(p: &AutoscaleParams, shard: &ShardMeta, now_ms: u64) -> bool {
    shard.create_secs.saturating_mul(1000) + p.child_cooldown_ms <= now_ms
}

/// The reshard operations stream `s` needs now (empty for most calls).
pub fn plan(
    s: &StreamMeta,
    load: &LoadHistory,
    now_ms: u64,
    p: &AutoscaleParams,
) -> Vec<ReshardOp> {
    if s.mode != CapacityMode::OnDemand
        || s.status != StreamStatus::Active
        || s.reshard.is_some()
        || s.target_shard_count.is_some()
    {
        return Vec::new();
    }
    if load
        .last_round_ms
        .is_some_and(|t| now_ms < t.saturating_add(p.round_interval_ms))
    {
        return Vec::new();
    }
    let now_sec = now_ms / 1000;
    let open: Vec<&ShardMeta> = s
        .shards
        .iter()
        .filter(|sh| sh.state == ShardState::Open)
        .collect();
    let open_n = open.len() as u32;
    let limit = p.shard_limit.max(1);
    let target = ((2.0 * load.peak_shards).ceil().max(0.0) as u32)
        .max(p.min_shards)
        .min(limit);
    let empty = Vec::new();
    // (shard, stats) of the shards that may be split, hottest first.
    let mut candidates: Vec<(&ShardMeta, Stats)> = open
        .iter()
        .copied()
        .filter(|sh| old_enough(p, sh, now_ms) && midpoint(sh.hash_start, sh.hash_end).is_some())
        .map(|sh| {
            let st = stats(p, load.recent.get(&sh.index).unwrap_or(&empty), now_sec);
            (sh, st)
        })
        .collect();
    candidates.sort_by(|a, b| {
        b.1.mean
            .total_cmp(&a.1.mean)
            .then(a.0.index.cmp(&b.0.index))
    });
    let need_hot = (p.hot_fraction * p.window_secs as f64).ceil() as u64;
    let mut ops = Vec::new();
    let mut planned = open_n;
    for (sh, st) in &candidates {
        if planned >= limit {
            break;
        }
        let hot = st.hot_secs >= need_hot.max(1);
        let below_target = planned < target;
        if !hot && !below_target {
            continue;
        }
        let Some(new_start) = midpoint(sh.hash_start, sh.hash_end) else {
            continue;
        };
        let reason = if hot {
            format!(
                "hot: write utilisation >= {:.0}% in {}/{} s (mean {:.0}%)",
                p.split_threshold * 100.0,
                st.hot_secs,
                p.window_secs,
                st.mean * 100.0
            )
        } else {
            format!(
                "below target: {planned} open shards < {target} (2x peak {:.2} shards)",
                load.peak_shards
            )
        };
        ops.push(ReshardOp::Split {
            shard: sh.index,
            new_start,
            reason,
        });
        planned += 1;
    }
    if !ops.is_empty() || open_n <= target {
        return ops;
    }
    // One merge of the coldest adjacent pair that has stayed cold long enough.
    let mut by_start = open.clone();
    by_start.sort_by_key(|sh| sh.hash_start);
    let cold_long = |sh: &ShardMeta| {
        old_enough(p, sh, now_ms)
            && load
                .cold_since_ms
                .get(&sh.index)
                .is_some_and(|t| t.saturating_add(p.merge_after_ms) <= now_ms)
    };
    let mut best: Option<(f64, &ShardMeta, &ShardMeta)> = None;
    for w in by_start.windows(2) {
        let (a, b) = (w[0], w[1]);
        if a.hash_end.checked_add(1) != Some(b.hash_start) || !cold_long(a) || !cold_long(b) {
            continue;
        }
        let sum = stats(p, load.recent.get(&a.index).unwrap_or(&empty), now_sec).mean
            + stats(p, load.recent.get(&b.index).unwrap_or(&empty), now_sec).mean;
        if sum < p.merge_threshold && best.as_ref().is_none_or(|(s, _, _)| sum < *s) {
            best = Some((sum, a, b));
        }
    }
    if let Some((sum, a, b)) = best {
        ops.push(ReshardOp::Merge {
            shard: a.index,
            adjacent: b.index,
            reason: format!(
                "cold: both below {:.0}% for {} s, summed load {:.0}%, {open_n} open > target {target}",
                p.merge_threshold * 100.0,
                p.merge_after_ms / 1000,
                sum * 100.0
            ),
        });
    }
    ops
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::meta::settings::StreamSettings;
    use crate::meta::state::ShardMeta;
    use proptest::prelude::*;

    const NOW_MS: u64 = 10_000_000_000;
    const NOW: u64 = NOW_MS / 1000;

    fn shard(index: u32, start: u128, end: u128, create_secs: u64) -> ShardMeta {
        ShardMeta {
            index,
            group: 100 + index as u64,
            hash_start: start,
            hash_end: end,
            parent: None,
            adjacent_parent: None,
            create_secs,
            state: ShardState::Open,
            replicas: vec![0, 1, 2],
            end: None,
        }
    }

    /// An ON_DEMAND stream with `n` equal open shards created long ago.
    fn stream(n: u32) -> StreamMeta {
        let step = u128::MAX / n as u128;
        let shards = (0..n)
            .map(|i| {
                let start = if i == 0 { 0 } else { step * i as u128 + 1 };
                let end = if i + 1 == n {
                    u128::MAX
                } else {
                    step * (i as u128 + 1)
                };
                shard(i, start, end, 0)
            })
            .collect::<Vec<_>>();
        StreamMeta {
            name: "s".into(),
            uid: 1,
            status: StreamStatus::Active,
            mode: CapacityMode::OnDemand,
            created_ms: 0,
            retention_hours: 24,
            shards,
            next_shard_index: n,
            settings: StreamSettings::default(),
            consumers: Vec::new(),
            reshard: None,
            target_shard_count: None,
            shard_count_updates: Vec::new(),
            mode_switches: Default::default(),
        }
    }

    /// `window` seconds ending now at utilisation `u` (records), per shard.
    fn steady(u: f64, window: u64) -> Vec<LoadSample> {
        (NOW - window..NOW)
            .map(|sec| LoadSample {
                sec,
                bytes: 0,
                records: (u * 1000.0).round() as u64,
            })
            .collect()
    }

    fn history(loads: &[(u32, Vec<LoadSample>)]) -> LoadHistory {
        LoadHistory {
            recent: loads.iter().cloned().collect(),
            ..LoadHistory::default()
        }
    }

    fn splits(ops: &[ReshardOp]) -> Vec<u32> {
        ops.iter()
            .filter_map(|o| match o {
                ReshardOp::Split { shard, .. } => Some(*shard),
                _ => None,
            })
            .collect()
    }

    #[test]
    fn no_split_below_half() {
        let p = AutoscaleParams::default();
        let s = stream(4);
        let h = history(&[(0, steady(0.49, 60)), (1, steady(0.3, 60))]);
        assert!(plan(&s, &h, NOW_MS, &p).is_empty());
    }

    #[test]
    fn sustained_half_load_splits_at_the_midpoint() {
        let p = AutoscaleParams::default();
        let s = stream(4);
        let h = history(&[(2, steady(0.5, 60)), (1, steady(0.2, 60))]);
        let ops = plan(&s, &h, NOW_MS, &p);
        assert_eq!(splits(&ops), vec![2]);
        let sh = &s.shards[2];
        match &ops[0] {
            ReshardOp::Split {
                new_start, reason, ..
            } => {
                assert_eq!(
                    *new_start,
                    sh.hash_start + (sh.hash_end - sh.hash_start) / 2 + 1
                );
                assert!(reason.contains("hot"), "{reason}");
            }
            other => panic!("{other:?}"),
        }
        // Bytes count as well as records.
        let bytes: Vec<LoadSample> = (NOW - 60..NOW)
            .map(|sec| LoadSample {
                sec,
                bytes: 600 << 10,
                records: 10,
            })
            .collect();
        assert_eq!(
            splits(&plan(&s, &history(&[(3, bytes)]), NOW_MS, &p)),
            vec![3]
        );
    }

    #[test]
    fn a_short_burst_does_not_split() {
        let p = AutoscaleParams::default();
        let s = stream(4);
        // Hot for 50 of 60 s (< 54).
        assert!(plan(&s, &history(&[(0, steady(0.9, 50))]), NOW_MS, &p).is_empty());
        assert_eq!(
            splits(&plan(&s, &history(&[(0, steady(0.9, 54))]), NOW_MS, &p)),
            vec![0]
        );
    }

    #[test]
    fn young_children_cool_down() {
        let p = AutoscaleParams::default();
        let mut s = stream(4);
        s.shards[1].create_secs = NOW - 100; // created 100 s ago, cooldown 300 s
        let h = history(&[(1, steady(1.0, 60))]);
        assert!(plan(&s, &h, NOW_MS, &p).is_empty());
        s.shards[1].create_secs = NOW - 301;
        assert_eq!(splits(&plan(&s, &h, NOW_MS, &p)), vec![1]);
    }

    #[test]
    fn one_round_per_interval() {
        let p = AutoscaleParams::default();
        let s = stream(4);
        let mut h = history(&[(0, steady(1.0, 60))]);
        h.last_round_ms = Some(NOW_MS - 30_000);
        assert!(plan(&s, &h, NOW_MS, &p).is_empty());
        h.last_round_ms = Some(NOW_MS - 60_000);
        assert_eq!(splits(&plan(&s, &h, NOW_MS, &p)), vec![0]);
    }

    #[test]
    fn only_active_on_demand_streams_are_planned() {
        let p = AutoscaleParams::default();
        let h = history(&[(0, steady(1.0, 60))]);
        let mut s = stream(4);
        s.mode = CapacityMode::Provisioned;
        assert!(plan(&s, &h, NOW_MS, &p).is_empty());
        let mut s = stream(4);
        s.status = StreamStatus::Updating;
        assert!(plan(&s, &h, NOW_MS, &p).is_empty());
        let mut s = stream(4);
        s.target_shard_count = Some(8);
        assert!(plan(&s, &h, NOW_MS, &p).is_empty());
    }

    #[test]
    fn shard_limit_is_respected() {
        let p = AutoscaleParams {
            shard_limit: 5,
            ..AutoscaleParams::default()
        };
        let s = stream(4);
        let all: Vec<(u32, Vec<LoadSample>)> = (0..4).map(|i| (i, steady(0.9, 60))).collect();
        assert_eq!(plan(&s, &history(&all), NOW_MS, &p).len(), 1);
        let p = AutoscaleParams {
            shard_limit: 4,
            ..p
        };
        assert!(plan(&s, &history(&all), NOW_MS, &p).is_empty());
    }

    #[test]
    fn target_is_at_least_twice_the_peak() {
        let p = AutoscaleParams::default();
        let s = stream(4);
        let mut h = history(&[(0, steady(0.2, 60)), (3, steady(0.4, 60))]);
        h.peak_shards = 2.6; // target ceil(5.2) = 6
        let ops = plan(&s, &h, NOW_MS, &p);
        // The two hottest shards are split.
        assert_eq!(splits(&ops), vec![3, 0]);
        assert!(ops
            .iter()
            .all(|o| matches!(o, ReshardOp::Split { reason, .. } if reason.contains("target"))));
    }

    #[test]
    fn merges_only_after_long_cold() {
        let p = AutoscaleParams::default();
        let s = stream(6);
        let mut h = history(&[(0, steady(0.05, 60)), (1, steady(0.05, 60))]);
        // Cold for only an hour: no merge.
        h.cold_since_ms = (0..6).map(|i| (i, NOW_MS - 3_600_000)).collect();
        assert!(plan(&s, &h, NOW_MS, &p).is_empty());
        h.cold_since_ms = (0..6).map(|i| (i, NOW_MS - 25 * 3_600_000)).collect();
        let ops = plan(&s, &h, NOW_MS, &p);
        assert_eq!(ops.len(), 1);
        assert!(matches!(&ops[0], ReshardOp::Merge { shard, adjacent, .. }
            if s.shard(*shard).map(|a| a.hash_end + 1) == s.shard(*adjacent).map(|b| b.hash_start)));
        // Never below the minimum (4) or the 2x-peak target.
        let s4 = stream(4);
        assert!(plan(&s4, &h, NOW_MS, &p).is_empty());
        h.peak_shards = 3.0; // target 6
        assert!(plan(&s, &h, NOW_MS, &p).is_empty());
    }

    #[test]
    fn oscillating_load_neither_splits_nor_merges() {
        let p = AutoscaleParams::default();
        let s = stream(6);
        // Alternating 80 % / 10 % each second: hot half the time, never cold for long.
        let osc: Vec<LoadSample> = (NOW - 60..NOW)
            .map(|sec| LoadSample {
                sec,
                bytes: 0,
                records: if sec % 2 == 0 { 800 } else { 100 },
            })
            .collect();
        let h = history(&(0..6).map(|i| (i, osc.clone())).collect::<Vec<_>>());
        assert!(plan(&s, &h, NOW_MS, &p).is_empty());
    }

    #[test]
    fn switch_to_on_demand_sizes_for_the_peak() {
        let p = AutoscaleParams::default();
        // Idle or light: the on-demand minimum of 4, never fewer than today.
        assert_eq!(on_demand_shards(1, 0.0, &p), 4);
        assert_eq!(on_demand_shards(1, 1.2, &p), 4);
        assert_eq!(on_demand_shards(6, 0.3, &p), 6);
        // 2.0 shards of load need 4 shards at 50 %; 3.1 need 7.
        assert_eq!(on_demand_shards(2, 2.0, &p), 4);
        assert_eq!(on_demand_shards(5, 3.1, &p), 7);
        // Capped by the shard limit, but an existing larger stream keeps its shards.
        let small = AutoscaleParams {
            shard_limit: 6,
            ..p
        };
        assert_eq!(on_demand_shards(5, 9.0, &small), 6);
        assert_eq!(on_demand_shards(8, 9.0, &small), 8);
        assert_eq!(on_demand_shards(1, f64::INFINITY, &small), 6);
        assert_eq!(on_demand_shards(1, f64::NAN, &p), 4);
    }

    proptest! {
        /// The size always leaves each shard at most 50 % of the peak (when the limit
        /// allows), and respects the bounds.
        #[test]
        fn on_demand_size_bounds(open in 1u32..300, peak in 0.0f64..400.0, limit in 1u32..300) {
            let p = AutoscaleParams { shard_limit: limit, ..AutoscaleParams::default() };
            let n = on_demand_shards(open, peak, &p);
            prop_assert!(n >= open);
            prop_assert!(n <= limit.max(open));
            if n < limit.max(open) {
                prop_assert!(n >= 4);
                prop_assert!(peak / f64::from(n) <= 0.5 + 1e-9);
            }
        }

        /// Whatever the load: splits only of shards hot in >= 90 % of the window (when the
        /// stream is at its target), never past the limit, never a split and a merge together,
        /// and at most one merge.
        #[test]
        fn plan_invariants(
            n in 1u32..12,
            limit in 1u32..16,
            utils in proptest::collection::vec(proptest::collection::vec(0u32..150, 60), 12),
            peak in 0.0f64..10.0,
            cold_hours in proptest::collection::vec(0u64..48, 12),
        ) {
            let p = AutoscaleParams { shard_limit: limit, min_shards: 1, ..AutoscaleParams::default() };
            let s = stream(n);
            let mut h = LoadHistory { peak_shards: peak, ..LoadHistory::default() };
            for i in 0..n {
                let samples = utils[i as usize].iter().enumerate().map(|(k, u)| LoadSample {
                    sec: NOW - 60 + k as u64, bytes: 0, records: u64::from(*u) * 10,
                }).collect();
                h.recent.insert(i, samples);
                h.cold_since_ms.insert(i, NOW_MS - cold_hours[i as usize] * 3_600_000);
            }
            let ops = plan(&s, &h, NOW_MS, &p);
            let split_n = splits(&ops).len() as u32;
            let merge_n = ops.len() as u32 - split_n;
            prop_assert!(split_n == 0 || merge_n == 0);
            prop_assert!(merge_n <= 1);
            if split_n > 0 {
                prop_assert!(n + split_n <= limit.max(n));
                prop_assert!(n < limit);
            }
            let target = ((2.0 * peak).ceil() as u32).max(1).min(limit);
            for i in splits(&ops) {
                let hot = utils[i as usize].iter().filter(|u| **u >= 50).count();
                prop_assert!(hot >= 54 || n < target, "shard {} split with {} hot s", i, hot);
            }
            if merge_n == 1 {
                prop_assert!(n > target);
            }
            // Flapping: a stream that was just split is not merged back in the next round,
            // because no shard has been cold for the merge period.
            let mut h2 = h.clone();
            h2.cold_since_ms.clear();
            let only_splits = plan(&s, &h2, NOW_MS, &p)
                .iter()
                .all(|o| matches!(o, ReshardOp::Split { .. }));
            prop_assert!(only_splits);
        }
    }
}
