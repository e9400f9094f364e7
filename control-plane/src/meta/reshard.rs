//! Resharding and retention in the metadata state machine, and the pure planner of
//! UpdateShardCount.
//!
//! A split or merge never moves data. `BeginSplit`/`BeginMerge` marks the parent(s)
//! `Sealing` and creates the children `Pending` (new groups on the parent's replicas, with a
//! creation second after every parent's, so child sequence numbers sort after the parents').
//! The reshard executor then seals each parent group (a committed `Seal` entry: every write
//! to a parent precedes it) and proposes `CompleteReshard`, which closes the parents and opens
//! the children. Every step is recorded here, so a new metadata leader resumes an
//! interrupted operation, and every command is idempotent.
//!
//! UpdateShardCount records a target; [`plan_uniform`] derives the next split or merge from
//! the current open shards until they are the target's uniform ranges.

use serde::{Deserialize, Serialize};
use spate_proto::kinesis::hash::uniform_ranges;

use super::state::{
    MetaError, MetaResponse, MetaState, ReshardStep, ShardEnd, ShardMeta, ShardState, StreamMeta,
    StreamStatus,
};

/// Most UpdateShardCount calls per stream in a rolling 24 hours.
pub const SHARD_COUNT_UPDATES_PER_DAY: usize = 10;
const DAY_MS: u64 = 24 * 3600 * 1000;
/// Retention bounds, hours.
pub const MIN_RETENTION_HOURS: u32 = 24;
pub const MAX_RETENTION_HOURS: u32 = 8760;

/// One step towards a target layout.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
pub enum ReshardOp {
    Split { shard: u32, at: u128 },
    Merge { shard: u32, adjacent: u32 },
}

/// The next split or merge that moves `open` (index, start, end — the open shards) towards
/// `target` uniform ranges, or `None` once they match. Splits first (at every target
/// boundary that falls strictly inside a shard), then merges of adjacent pieces that lie in
/// the same target range. Every step has at most two parents, as Kinesis lineage requires.
pub fn plan_uniform(open: &[(u32, u128, u128)], target: u32) -> Option<ReshardOp> {
    let targets = uniform_ranges(target);
    let mut open: Vec<(u32, u128, u128)> = open.to_vec();
    open.sort_by_key(|s| s.1);
    for (index, start, end) in &open {
        for (t_start, _) in targets.iter().skip(1) {
            if start < t_start && t_start <= end {
                return Some(ReshardOp::Split {
                    shard: *index,
                    at: *t_start,
                });
            }
        }
    }
    for (t_start, t_end) in &targets {
        let pieces: Vec<&(u32, u128, u128)> = open
            .iter()
            .filter(|(_, s, e)| s >= t_start && e <= t_end)
            .collect();
        if pieces.len() > 1 {
            return Some(ReshardOp::Merge {
                shard: pieces[0].0,
                adjacent: pieces[1].0,
            });
        }
    }
    None
}

fn not_found(name: &str) -> MetaResponse {
    MetaResponse::Failed(MetaError::StreamNotFound(name.to_string()))
}

fn shard_missing(stream: &StreamMeta, index: u32) -> MetaResponse {
    MetaResponse::Failed(MetaError::ShardNotFound(format!(
        "Could not find shard shardId-{index:012} in stream {}.",
        stream.name
    )))
}

fn in_use(msg: String) -> MetaResponse {
    MetaResponse::Failed(MetaError::InUse(msg))
}

impl MetaState {
    fn reshard_ready(&self, name: &str, internal: bool) -> Result<&StreamMeta, MetaResponse> {
        let Some(s) = self.streams.get(name) else {
            return Err(not_found(name));
        };
        if s.reshard.is_some() {
            return Err(in_use(format!(
                "Stream {name} is being resharded; try again when it is ACTIVE."
            )));
        }
        let ok =
            s.status == StreamStatus::Active || (internal && s.status == StreamStatus::Updating);
        if !ok {
            return Err(in_use(format!(
                "Stream {name} is not ACTIVE (it is {:?}); try again when it is ACTIVE.",
                s.status
            )));
        }
        Ok(s)
    }

    fn new_child(
        &mut self,
        parent: &ShardMeta,
        range: (u128, u128),
        adjacent: Option<&ShardMeta>,
        now_ms: u64,
    ) -> ShardMeta {
        let group = self.next_group.max(1);
        self.next_group = group + 1;
        let after = adjacent
            .map(|a| a.create_secs)
            .unwrap_or(0)
            .max(parent.create_secs)
            + 1;
        ShardMeta {
            index: 0,
            group,
            hash_start: range.0,
            hash_end: range.1,
            parent: Some(parent.index),
            adjacent_parent: adjacent.map(|a| a.index),
            create_secs: (now_ms / 1000).max(after),
            state: ShardState::Pending,
            // Children live on their parent's nodes: no data moves.
            replicas: parent.replicas.clone(),
            end: None,
        }
    }

    pub(crate) fn begin_split(
        &mut self,
        name: &str,
        parent: u32,
        new_start: u128,
        now_ms: u64,
    ) -> MetaResponse {
        let internal = self
            .streams
            .get(name)
            .is_some_and(|s| s.target_shard_count.is_some());
        let stream = match self.reshard_ready(name, internal) {
            Ok(s) => s,
            Err(r) => return r,
        };
        let Some(p) = stream.shard(parent).cloned() else {
            return shard_missing(stream, parent);
        };
        if p.state != ShardState::Open {
            return in_use(format!("Shard shardId-{parent:012} in stream {name} is not open; only open shards can be split."));
        }
        if new_start <= p.hash_start || new_start > p.hash_end {
            return MetaResponse::Failed(MetaError::Invalid(format!(
                "NewStartingHashKey {new_start} must be greater than the shard's starting hash key {} and at most its ending hash key {}.",
                p.hash_start, p.hash_end
            )));
        }
        let mut a = self.new_child(&p, (p.hash_start, new_start - 1), None, now_ms);
        let mut b = self.new_child(&p, (new_start, p.hash_end), None, now_ms);
        let Some(s) = self.streams.get_mut(name) else {
            return not_found(name);
        };
        a.index = s.next_shard_index;
        b.index = s.next_shard_index + 1;
        s.next_shard_index += 2;
        s.reshard = Some(ReshardStep {
            parents: vec![parent],
            children: vec![a.index, b.index],
        });
        if let Some(ps) = s.shards.iter_mut().find(|x| x.index == parent) {
            ps.state = ShardState::Sealing;
        }
        s.shards.push(a);
        s.shards.push(b);
        s.status = StreamStatus::Updating;
        self.epoch += 1;
        MetaResponse::Done
    }

    pub(crate) fn begin_merge(
        &mut self,
        name: &str,
        shard: u32,
        adjacent: u32,
        now_ms: u64,
    ) -> MetaResponse {
        let internal = self
            .streams
            .get(name)
            .is_some_and(|s| s.target_shard_count.is_some());
        let stream = match self.reshard_ready(name, internal) {
            Ok(s) => s,
            Err(r) => return r,
        };
        let Some(a) = stream.shard(shard).cloned() else {
            return shard_missing(stream, shard);
        };
        let Some(b) = stream.shard(adjacent).cloned() else {
            return shard_missing(stream, adjacent);
        };
        if a.state != ShardState::Open || b.state != ShardState::Open {
            return in_use(format!(
                "Shards to merge in stream {name} must both be open."
            ));
        }
        let adjacent_ok = a.hash_end.checked_add(1) == Some(b.hash_start)
            || b.hash_end.checked_add(1) == Some(a.hash_start);
        if shard == adjacent || !adjacent_ok {
            return MetaResponse::Failed(MetaError::Invalid(format!(
                "Shard shardId-{shard:012} and shard shardId-{adjacent:012} are not adjacent; only hash-adjacent shards can be merged."
            )));
        }
        let range = (a.hash_start.min(b.hash_start), a.hash_end.max(b.hash_end));
        let mut child = self.new_child(&a, range, Some(&b), now_ms);
        let Some(s) = self.streams.get_mut(name) else {
            return not_found(name);
        };
        child.index = s.next_shard_index;
        s.next_shard_index += 1;
        s.reshard = Some(ReshardStep {
            parents: vec![shard, adjacent],
            children: vec![child.index],
        });
        for ps in s
            .shards
            .iter_mut()
            .filter(|x| x.index == shard || x.index == adjacent)
        {
            ps.state = ShardState::Sealing;
        }
        s.shards.push(child);
        s.status = StreamStatus::Updating;
        self.epoch += 1;
        MetaResponse::Done
    }

    pub(crate) fn complete_reshard(
        &mut self,
        name: &str,
        ends: &[(u32, ShardEnd)],
    ) -> MetaResponse {
        let Some(s) = self.streams.get_mut(name) else {
            return not_found(name);
        };
        let Some(step) = s.reshard.clone() else {
            return MetaResponse::Done;
        };
        if !step
            .parents
            .iter()
            .all(|p| ends.iter().any(|(i, _)| i == p))
        {
            return MetaResponse::Failed(MetaError::Invalid("every parent must be sealed".into()));
        }
        for sh in s.shards.iter_mut() {
            if let Some((_, end)) = ends
                .iter()
                .find(|(i, _)| *i == sh.index)
                .filter(|_| step.parents.contains(&sh.index))
            {
                sh.state = ShardState::Closed;
                sh.end = Some(*end);
            } else if step.children.contains(&sh.index) {
                sh.state = ShardState::Open;
            }
        }
        s.reshard = None;
        if s.target_shard_count.is_none() {
            s.status = StreamStatus::Active;
        }
        self.epoch += 1;
        MetaResponse::Done
    }

    pub(crate) fn set_target_shard_count(
        &mut self,
        name: &str,
        target: u32,
        now_ms: u64,
    ) -> MetaResponse {
        let stream = match self.reshard_ready(name, false) {
            Ok(s) => s,
            Err(r) => return r,
        };
        let current = stream.open_shards().len() as u32;
        if target == 0 || target > current.saturating_mul(2) || target.saturating_mul(2) < current {
            return MetaResponse::Failed(MetaError::Invalid(format!(
                "UpdateShardCount can scale stream {name} from {current} open shards to between {} and {} shards; {target} was requested.",
                current.div_ceil(2),
                current * 2
            )));
        }
        let recent = stream
            .shard_count_updates
            .iter()
            .filter(|t| now_ms.saturating_sub(**t) < DAY_MS)
            .count();
        if recent >= SHARD_COUNT_UPDATES_PER_DAY {
            return MetaResponse::Failed(MetaError::LimitExceeded(format!(
                "Stream {name} has been scaled {recent} times in the last 24 hours; at most {SHARD_COUNT_UPDATES_PER_DAY} are allowed."
            )));
        }
        let Some(s) = self.streams.get_mut(name) else {
            return not_found(name);
        };
        s.shard_count_updates
            .retain(|t| now_ms.saturating_sub(*t) < DAY_MS);
        s.shard_count_updates.push(now_ms);
        if target != current {
            s.target_shard_count = Some(target);
            s.status = StreamStatus::Updating;
        }
        self.epoch += 1;
        MetaResponse::ShardCountUpdate { current }
    }

    pub(crate) fn finish_shard_count(&mut self, name: &str) -> MetaResponse {
        let Some(s) = self.streams.get_mut(name) else {
            return not_found(name);
        };
        if s.target_shard_count.take().is_some() && s.reshard.is_none() {
            s.status = StreamStatus::Active;
            self.epoch += 1;
        }
        MetaResponse::Done
    }

    pub(crate) fn set_retention(&mut self, name: &str, hours: u32) -> MetaResponse {
        let Some(s) = self.streams.get_mut(name) else {
            return not_found(name);
        };
        if !(MIN_RETENTION_HOURS..=MAX_RETENTION_HOURS).contains(&hours) {
            return MetaResponse::Failed(MetaError::Invalid(format!(
                "Retention period must be between {MIN_RETENTION_HOURS} and {MAX_RETENTION_HOURS} hours."
            )));
        }
        s.retention_hours = hours;
        self.epoch += 1;
        MetaResponse::Done
    }

    pub(crate) fn expire_shard(&mut self, name: &str, index: u32) -> MetaResponse {
        let Some(s) = self.streams.get_mut(name) else {
            return not_found(name);
        };
        let before = s.shards.len();
        s.shards
            .retain(|sh| !(sh.index == index && sh.state == ShardState::Closed));
        if s.shards.len() != before {
            self.epoch += 1;
        }
        MetaResponse::Done
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::meta::state::{CapacityMode, MetaCommand};

    fn cluster_with_stream(shards: u32) -> MetaState {
        let mut st = crate::meta::testing::bootstrapped(&[(0, "az-0"), (1, "az-1"), (2, "az-2")]);
        st.apply(&MetaCommand::CreateStream {
            name: "s".into(),
            mode: CapacityMode::Provisioned,
            hash_ranges: uniform_ranges(shards),
            now_ms: 1_000_000,
        });
        st.apply(&MetaCommand::ActivateStream {
            name: "s".into(),
            uid: 1,
        });
        st
    }

    /// Open shards tile [0, u128::MAX] exactly; every closed parent is covered by children.
    fn check_tiling(s: &StreamMeta) {
        let open = s.open_shards();
        assert_eq!(open.first().map(|x| x.hash_start), Some(0));
        assert_eq!(open.last().map(|x| x.hash_end), Some(u128::MAX));
        for w in open.windows(2) {
            assert_eq!(
                w[0].hash_end.checked_add(1),
                Some(w[1].hash_start),
                "gap or overlap"
            );
        }
        for p in s.shards.iter().filter(|x| x.state == ShardState::Closed) {
            let mut kids: Vec<&ShardMeta> = s.children_of(p.index).collect();
            kids.sort_by_key(|k| k.hash_start);
            assert!(!kids.is_empty());
            assert!(
                kids[0].hash_start <= p.hash_start && kids[kids.len() - 1].hash_end >= p.hash_end
            );
            for k in &kids {
                assert!(k.create_secs > p.create_secs, "children sort after parents");
            }
        }
    }

    fn seal_and_complete(st: &mut MetaState) {
        let step = st.streams["s"].reshard.clone().expect("step");
        let ends: Vec<(u32, ShardEnd)> = step
            .parents
            .iter()
            .map(|p| {
                (
                    *p,
                    ShardEnd {
                        end_ordinal: 10,
                        sealed_secs: 2000,
                    },
                )
            })
            .collect();
        assert_eq!(
            st.apply(&MetaCommand::CompleteReshard {
                name: "s".into(),
                ends: ends.clone()
            }),
            MetaResponse::Done
        );
        // Idempotent.
        let again = st.clone();
        st.apply(&MetaCommand::CompleteReshard {
            name: "s".into(),
            ends,
        });
        assert_eq!(&again, st);
    }

    fn run_to_target(st: &mut MetaState, target: u32) -> usize {
        let mut steps = 0;
        loop {
            let open: Vec<(u32, u128, u128)> = st.streams["s"]
                .open_shards()
                .iter()
                .map(|x| (x.index, x.hash_start, x.hash_end))
                .collect();
            match plan_uniform(&open, target) {
                None => break,
                Some(ReshardOp::Split { shard, at }) => {
                    let r = st.apply(&MetaCommand::BeginSplit {
                        name: "s".into(),
                        parent: shard,
                        new_start: at,
                        now_ms: 2_000_000,
                    });
                    assert_eq!(r, MetaResponse::Done);
                }
                Some(ReshardOp::Merge { shard, adjacent }) => {
                    let r = st.apply(&MetaCommand::BeginMerge {
                        name: "s".into(),
                        shard,
                        adjacent,
                        now_ms: 2_000_000,
                    });
                    assert_eq!(r, MetaResponse::Done);
                }
            }
            seal_and_complete(st);
            check_tiling(&st.streams["s"]);
            steps += 1;
            assert!(steps < 100, "planner must terminate");
        }
        steps
    }

    #[test]
    fn split_then_merge_keeps_tiling_and_lineage() {
        let mut st = cluster_with_stream(1);
        let mid = 1u128 << 127;
        assert_eq!(
            st.apply(&MetaCommand::BeginSplit {
                name: "s".into(),
                parent: 0,
                new_start: mid,
                now_ms: 1_000_000
            }),
            MetaResponse::Done
        );
        let s = &st.streams["s"];
        assert_eq!(s.status, StreamStatus::Updating);
        assert!(s
            .shards
            .iter()
            .filter(|x| x.state == ShardState::Pending)
            .all(|x| x.parent == Some(0) && x.adjacent_parent.is_none()));
        // A second operation while one is in flight is refused.
        assert!(matches!(
            st.apply(&MetaCommand::BeginSplit {
                name: "s".into(),
                parent: 0,
                new_start: 5,
                now_ms: 1
            }),
            MetaResponse::Failed(MetaError::InUse(_))
        ));
        seal_and_complete(&mut st);
        let s = &st.streams["s"];
        assert_eq!(s.status, StreamStatus::Active);
        assert_eq!(s.shard(0).map(|x| x.state), Some(ShardState::Closed));
        check_tiling(s);
        // Splitting a closed shard is refused; merging non-adjacent shards is refused.
        assert!(matches!(
            st.apply(&MetaCommand::BeginSplit {
                name: "s".into(),
                parent: 0,
                new_start: mid,
                now_ms: 1
            }),
            MetaResponse::Failed(MetaError::InUse(_))
        ));
        assert_eq!(
            st.apply(&MetaCommand::BeginMerge {
                name: "s".into(),
                shard: 1,
                adjacent: 2,
                now_ms: 3_000_000
            }),
            MetaResponse::Done
        );
        seal_and_complete(&mut st);
        let s = &st.streams["s"];
        let merged = s.shard(3).expect("child 3");
        assert_eq!((merged.parent, merged.adjacent_parent), (Some(1), Some(2)));
        assert_eq!((merged.hash_start, merged.hash_end), (0, u128::MAX));
        check_tiling(s);
    }

    #[test]
    fn split_key_outside_range_is_invalid() {
        let mut st = cluster_with_stream(2);
        let r = st.apply(&MetaCommand::BeginSplit {
            name: "s".into(),
            parent: 0,
            new_start: 0,
            now_ms: 1,
        });
        assert!(matches!(r, MetaResponse::Failed(MetaError::Invalid(_))));
        let r = st.apply(&MetaCommand::BeginSplit {
            name: "s".into(),
            parent: 0,
            new_start: u128::MAX,
            now_ms: 1,
        });
        assert!(matches!(r, MetaResponse::Failed(MetaError::Invalid(_))));
    }

    #[test]
    fn update_shard_count_reaches_uniform_ranges() {
        for (from, to) in [
            (2, 4),
            (4, 8),
            (8, 4),
            (3, 5),
            (5, 3),
            (4, 2),
            (1, 2),
            (7, 13),
        ] {
            let mut st = cluster_with_stream(from);
            let r = st.apply(&MetaCommand::SetTargetShardCount {
                name: "s".into(),
                target: to,
                now_ms: 5,
            });
            assert_eq!(r, MetaResponse::ShardCountUpdate { current: from });
            run_to_target(&mut st, to);
            st.apply(&MetaCommand::FinishShardCount { name: "s".into() });
            let s = &st.streams["s"];
            assert_eq!(s.status, StreamStatus::Active);
            let got: Vec<(u128, u128)> = s
                .open_shards()
                .iter()
                .map(|x| (x.hash_start, x.hash_end))
                .collect();
            assert_eq!(got, uniform_ranges(to), "{from} -> {to}");
            let mut ids: Vec<u32> = s.shards.iter().map(|x| x.index).collect();
            ids.dedup();
            assert_eq!(ids.len(), s.shards.len(), "shard ids are never reused");
        }
    }

    #[test]
    fn update_shard_count_limits() {
        let mut st = cluster_with_stream(4);
        for bad in [1, 9] {
            let r = st.apply(&MetaCommand::SetTargetShardCount {
                name: "s".into(),
                target: bad,
                now_ms: 5,
            });
            assert!(
                matches!(r, MetaResponse::Failed(MetaError::Invalid(_))),
                "{bad}"
            );
        }
        for i in 0..10 {
            let r = st.apply(&MetaCommand::SetTargetShardCount {
                name: "s".into(),
                target: 4,
                now_ms: 10 + i,
            });
            assert_eq!(r, MetaResponse::ShardCountUpdate { current: 4 });
        }
        let r = st.apply(&MetaCommand::SetTargetShardCount {
            name: "s".into(),
            target: 4,
            now_ms: 20,
        });
        assert!(matches!(
            r,
            MetaResponse::Failed(MetaError::LimitExceeded(_))
        ));
        // A day later it is allowed again.
        let r = st.apply(&MetaCommand::SetTargetShardCount {
            name: "s".into(),
            target: 4,
            now_ms: 20 + DAY_MS,
        });
        assert_eq!(r, MetaResponse::ShardCountUpdate { current: 4 });
    }

    #[test]
    fn retention_bounds_and_expiry() {
        let mut st = cluster_with_stream(1);
        assert!(matches!(
            st.apply(&MetaCommand::SetRetention {
                name: "s".into(),
                hours: 23
            }),
            MetaResponse::Failed(_)
        ));
        assert_eq!(
            st.apply(&MetaCommand::SetRetention {
                name: "s".into(),
                hours: 48
            }),
            MetaResponse::Done
        );
        assert_eq!(st.streams["s"].retention_hours, 48);
        // Only a closed shard expires.
        st.apply(&MetaCommand::ExpireShard {
            name: "s".into(),
            index: 0,
        });
        assert_eq!(st.streams["s"].shards.len(), 1);
        st.apply(&MetaCommand::BeginSplit {
            name: "s".into(),
            parent: 0,
            new_start: 1 << 127,
            now_ms: 2_000_000,
        });
        seal_and_complete(&mut st);
        st.apply(&MetaCommand::ExpireShard {
            name: "s".into(),
            index: 0,
        });
        assert!(st.streams["s"].shard(0).is_none());
    }
}
