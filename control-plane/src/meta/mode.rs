//! Capacity-mode switches (UpdateStreamMode) in the metadata state machine. Applied through
//! [`MetaCommand::StreamMode`](super::MetaCommand::StreamMode).
//!
//! A switch is two commands:
//!
//! 1. [`ModeCommand::Switch`] (proposed by the API): the stream must be ACTIVE and in the
//!    other mode, and may have switched at most [`MODE_SWITCHES_PER_DAY`] times in the
//!    rolling 24 hours before `now_ms`. It records the switch, sets the new mode and marks
//!    the stream `UPDATING` with a pending switch.
//! 2. [`ModeCommand::Finish`] (proposed by the metadata leader once the switch's work is
//!    done — for PROVISIONED → ON_DEMAND, measuring the stream's load and sizing it): either
//!    the stream returns to ACTIVE, or it keeps `UPDATING` while the UpdateShardCount
//!    machinery (`target_shard_count`) reshards it to the chosen size.
//!
//! Both are idempotent and carry their time, so every replica applies them identically and a
//! new metadata leader finishes a switch its predecessor left pending.

use serde::{Deserialize, Serialize};

use super::state::{CapacityMode, MetaError, MetaResponse, MetaState, StreamStatus};

/// Most capacity-mode switches per stream in a rolling 24 hours (AWS: twice).
pub const MODE_SWITCHES_PER_DAY: usize = 2;
const DAY_MS: u64 = 24 * 3600 * 1000;

/// A stream's capacity-mode switch record.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct ModeSwitches {
    /// When the mode was switched (ms), within the last 24 hours of the latest switch.
    pub history_ms: Vec<u64>,
    /// A switch whose work is not done yet (the stream is `UPDATING`).
    pub pending: Option<PendingSwitch>,
}

/// A switch in progress.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
pub struct PendingSwitch {
    pub from: CapacityMode,
    pub to: CapacityMode,
    pub since_ms: u64,
}

/// Commands of a capacity-mode switch.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub enum ModeCommand {
    /// UpdateStreamMode: switch stream `name` to `mode` at `now_ms`.
    Switch {
        name: String,
        mode: CapacityMode,
        now_ms: u64,
    },
    /// The pending switch of stream `name` (incarnation `uid`) is done. `target_shards`:
    /// the open shard count to reshard to (`None`: keep the current one).
    Finish {
        name: String,
        uid: u64,
        target_shards: Option<u32>,
    },
}

impl std::fmt::Display for ModeCommand {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            ModeCommand::Switch { name, mode, .. } => write!(f, "Switch({name}, {mode:?})"),
            ModeCommand::Finish {
                name,
                target_shards,
                ..
            } => write!(f, "Finish({name}, {target_shards:?})"),
        }
    }
}

/// The API name of a mode.
pub fn mode_name(mode: CapacityMode) -> &'static str {
    match mode {
        CapacityMode::Provisioned => "PROVISIONED",
        CapacityMode::OnDemand => "ON_DEMAND",
    }
}

/// The switch history after one more switch at `now_ms`, or the `LimitExceededException`
/// message if `history_ms` already holds [`MODE_SWITCHES_PER_DAY`] switches in the 24 hours
/// before `now_ms`.
pub fn record_switch(stream: &str, history_ms: &[u64], now_ms: u64) -> Result<Vec<u64>, String> {
    let mut recent: Vec<u64> = history_ms
        .iter()
        .copied()
        .filter(|t| now_ms.saturating_sub(*t) < DAY_MS && *t <= now_ms)
        .collect();
    if recent.len() >= MODE_SWITCHES_PER_DAY {
        let oldest = recent.iter().copied().min().unwrap_or(now_ms);
        let wait_s = (oldest + DAY_MS).saturating_sub(now_ms).div_ceil(1000);
        return Err(format!(
            "Stream {stream} has already had its capacity mode updated {} times in the last 24 hours; the stream mode can be updated at most {MODE_SWITCHES_PER_DAY} times in a rolling 24-hour period. Try again in {wait_s} seconds.",
            recent.len()
        ));
    }
    recent.push(now_ms);
    Ok(recent)
}

impl MetaState {
    /// Applies a capacity-mode command.
    pub(crate) fn apply_mode(&mut self, cmd: &ModeCommand) -> MetaResponse {
        match cmd {
            ModeCommand::Switch { name, mode, now_ms } => self.switch_mode(name, *mode, *now_ms),
            ModeCommand::Finish {
                name,
                uid,
                target_shards,
            } => self.finish_mode(name, *uid, *target_shards),
        }
    }

    fn switch_mode(&mut self, name: &str, mode: CapacityMode, now_ms: u64) -> MetaResponse {
        let Some(s) = self.streams.get_mut(name) else {
            return MetaResponse::Failed(MetaError::StreamNotFound(name.to_string()));
        };
        let busy = s.reshard.is_some()
            || s.target_shard_count.is_some()
            || s.mode_switches.pending.is_some();
        if s.status != StreamStatus::Active || busy {
            return MetaResponse::Failed(MetaError::InUse(format!(
                "Stream {name} is not ACTIVE (it is {:?}); its capacity mode can be updated only when it is ACTIVE.",
                s.status
            )));
        }
        if s.mode == mode {
            return MetaResponse::Failed(MetaError::Invalid(format!(
                "Stream {name} is already in {} mode.",
                mode_name(mode)
            )));
        }
        let history = match record_switch(name, &s.mode_switches.history_ms, now_ms) {
            Ok(h) => h,
            Err(m) => return MetaResponse::Failed(MetaError::LimitExceeded(m)),
        };
        s.mode_switches = ModeSwitches {
            history_ms: history,
            pending: Some(PendingSwitch {
                from: s.mode,
                to: mode,
                since_ms: now_ms,
            }),
        };
        s.mode = mode;
        s.status = StreamStatus::Updating;
        self.epoch += 1;
        MetaResponse::Done
    }

    fn finish_mode(&mut self, name: &str, uid: u64, target: Option<u32>) -> MetaResponse {
        let Some(s) = self.streams.get_mut(name) else {
            return MetaResponse::Failed(MetaError::StreamNotFound(name.to_string()));
        };
        if s.uid != uid || s.mode_switches.pending.take().is_none() {
            return MetaResponse::Done;
        }
        let open = s.open_shards().len() as u32;
        match target {
            Some(t) if t > 0 && t != open && s.reshard.is_none() => {
                // Stays UPDATING until the reshard executor reaches the target.
                s.target_shard_count = Some(t);
            }
            _ => {
                if s.reshard.is_none() && s.target_shard_count.is_none() {
                    s.status = StreamStatus::Active;
                }
            }
        }
        self.epoch += 1;
        MetaResponse::Done
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::meta::reshard::plan_uniform;
    use crate::meta::state::{MetaCommand, ShardEnd, ShardState};
    use spate_proto::kinesis::hash::uniform_ranges;

    const T0: u64 = 1_800_000_000_000;
    const HOUR: u64 = 3_600_000;

    fn cluster(mode: CapacityMode, shards: u32) -> MetaState {
        let mut st = crate::meta::testing::bootstrapped(&[(0, "az-0"), (1, "az-1"), (2, "az-2")]);
        st.apply(&MetaCommand::CreateStream {
            name: "s".into(),
            mode,
            hash_ranges: uniform_ranges(shards),
            now_ms: T0,
        });
        st.apply(&MetaCommand::ActivateStream {
            name: "s".into(),
            uid: 1,
        });
        st
    }

    fn switch(st: &mut MetaState, mode: CapacityMode, now_ms: u64) -> MetaResponse {
        st.apply(&MetaCommand::StreamMode(ModeCommand::Switch {
            name: "s".into(),
            mode,
            now_ms,
        }))
    }

    fn finish(st: &mut MetaState, target_shards: Option<u32>) -> MetaResponse {
        st.apply(&MetaCommand::StreamMode(ModeCommand::Finish {
            name: "s".into(),
            uid: 1,
            target_shards,
        }))
    }

    /// Runs the UpdateShardCount machinery to completion, as the controller does.
    fn run_reshard(st: &mut MetaState) {
        for _ in 0..100 {
            let s = &st.streams["s"];
            if let Some(step) = s.reshard.clone() {
                let ends = step
                    .parents
                    .iter()
                    .map(|p| {
                        (
                            *p,
                            ShardEnd {
                                end_ordinal: 1,
                                sealed_secs: T0 / 1000 + 10,
                            },
                        )
                    })
                    .collect();
                st.apply(&MetaCommand::CompleteReshard {
                    name: "s".into(),
                    ends,
                });
                continue;
            }
            let Some(target) = s.target_shard_count else {
                return;
            };
            let open: Vec<(u32, u128, u128)> = s
                .open_shards()
                .iter()
                .map(|x| (x.index, x.hash_start, x.hash_end))
                .collect();
            let cmd = match plan_uniform(&open, target) {
                Some(crate::meta::reshard::ReshardOp::Split { shard, at }) => {
                    MetaCommand::BeginSplit {
                        name: "s".into(),
                        parent: shard,
                        new_start: at,
                        now_ms: T0 + 5_000,
                    }
                }
                Some(crate::meta::reshard::ReshardOp::Merge { shard, adjacent }) => {
                    MetaCommand::BeginMerge {
                        name: "s".into(),
                        shard,
                        adjacent,
                        now_ms: T0 + 5_000,
                    }
                }
                None => MetaCommand::FinishShardCount { name: "s".into() },
            };
            assert_eq!(st.apply(&cmd), MetaResponse::Done, "{cmd}");
        }
        panic!("reshard did not finish");
    }

    #[test]
    fn on_demand_to_provisioned_keeps_the_shards() {
        let mut st = cluster(CapacityMode::OnDemand, 4);
        assert_eq!(
            switch(&mut st, CapacityMode::Provisioned, T0 + 1000),
            MetaResponse::Done
        );
        let s = &st.streams["s"];
        assert_eq!(s.mode, CapacityMode::Provisioned);
        assert_eq!(s.status, StreamStatus::Updating);
        assert_eq!(
            s.mode_switches.pending,
            Some(PendingSwitch {
                from: CapacityMode::OnDemand,
                to: CapacityMode::Provisioned,
                since_ms: T0 + 1000
            })
        );
        assert_eq!(finish(&mut st, None), MetaResponse::Done);
        let s = &st.streams["s"];
        assert_eq!(s.status, StreamStatus::Active);
        assert_eq!(s.open_shards().len(), 4);
        assert!(s.mode_switches.pending.is_none());
        // Finishing again (a new leader repeating the step) changes nothing.
        let before = st.clone();
        assert_eq!(finish(&mut st, Some(9)), MetaResponse::Done);
        assert_eq!(st, before);
    }

    #[test]
    fn provisioned_to_on_demand_reshards_while_updating() {
        let mut st = cluster(CapacityMode::Provisioned, 1);
        assert_eq!(
            switch(&mut st, CapacityMode::OnDemand, T0 + 1000),
            MetaResponse::Done
        );
        assert_eq!(finish(&mut st, Some(4)), MetaResponse::Done);
        let s = &st.streams["s"];
        assert_eq!(s.mode, CapacityMode::OnDemand);
        assert_eq!(s.status, StreamStatus::Updating, "UPDATING until resharded");
        assert_eq!(s.target_shard_count, Some(4));
        // Another switch meanwhile is refused.
        assert!(matches!(
            switch(&mut st, CapacityMode::Provisioned, T0 + 2000),
            MetaResponse::Failed(MetaError::InUse(_))
        ));
        run_reshard(&mut st);
        let s = &st.streams["s"];
        assert_eq!(s.status, StreamStatus::Active);
        assert_eq!(s.open_shards().len(), 4);
        assert!(s
            .shards
            .iter()
            .any(|x| x.index == 0 && x.state == ShardState::Closed));
        // A target equal to the current count goes straight back to ACTIVE.
        let mut st = cluster(CapacityMode::Provisioned, 6);
        switch(&mut st, CapacityMode::OnDemand, T0 + 1000);
        finish(&mut st, Some(6));
        assert_eq!(st.streams["s"].status, StreamStatus::Active);
        assert_eq!(st.streams["s"].target_shard_count, None);
    }

    #[test]
    fn two_switches_per_rolling_day() {
        let mut st = cluster(CapacityMode::Provisioned, 2);
        let flip = |st: &mut MetaState, now: u64| {
            let to = match st.streams["s"].mode {
                CapacityMode::Provisioned => CapacityMode::OnDemand,
                CapacityMode::OnDemand => CapacityMode::Provisioned,
            };
            let r = switch(st, to, now);
            if r == MetaResponse::Done {
                finish(st, None);
            }
            r
        };
        assert_eq!(flip(&mut st, T0), MetaResponse::Done);
        assert_eq!(flip(&mut st, T0 + HOUR), MetaResponse::Done);
        // The third within 24 h of the first is refused, and nothing changes.
        let before = st.clone();
        match flip(&mut st, T0 + 23 * HOUR) {
            MetaResponse::Failed(MetaError::LimitExceeded(m)) => {
                assert!(m.contains("at most 2 times"), "{m}");
                assert!(m.contains(&format!("{} seconds", HOUR / 1000)), "{m}");
            }
            other => panic!("{other:?}"),
        }
        assert_eq!(st, before);
        // Once the first leaves the window, one more is allowed, then refused again
        // until the second leaves it.
        assert_eq!(flip(&mut st, T0 + 24 * HOUR), MetaResponse::Done);
        assert!(matches!(
            flip(&mut st, T0 + 24 * HOUR + 1),
            MetaResponse::Failed(MetaError::LimitExceeded(_))
        ));
        assert_eq!(flip(&mut st, T0 + 25 * HOUR), MetaResponse::Done);
        assert!(st.streams["s"].mode_switches.history_ms.len() <= 2);
    }

    #[test]
    fn refusals() {
        let mut st = cluster(CapacityMode::Provisioned, 2);
        assert!(matches!(
            switch(&mut st, CapacityMode::Provisioned, T0),
            MetaResponse::Failed(MetaError::Invalid(m)) if m.contains("already in PROVISIONED")
        ));
        let r = st.apply(&MetaCommand::StreamMode(ModeCommand::Switch {
            name: "nope".into(),
            mode: CapacityMode::OnDemand,
            now_ms: T0,
        }));
        assert_eq!(
            r,
            MetaResponse::Failed(MetaError::StreamNotFound("nope".into()))
        );
        // Not ACTIVE: resharding.
        st.apply(&MetaCommand::SetTargetShardCount {
            name: "s".into(),
            target: 4,
            now_ms: T0,
        });
        assert!(matches!(
            switch(&mut st, CapacityMode::OnDemand, T0),
            MetaResponse::Failed(MetaError::InUse(_))
        ));
        // Refusals are not counted against the limit.
        assert!(st.streams["s"].mode_switches.history_ms.is_empty());
        // A Finish for another incarnation of the name is ignored.
        let mut st = cluster(CapacityMode::Provisioned, 2);
        switch(&mut st, CapacityMode::OnDemand, T0);
        st.apply(&MetaCommand::StreamMode(ModeCommand::Finish {
            name: "s".into(),
            uid: 77,
            target_shards: None,
        }));
        assert_eq!(st.streams["s"].status, StreamStatus::Updating);
    }

    #[test]
    fn record_switch_window() {
        assert_eq!(record_switch("s", &[], 10), Ok(vec![10]));
        // Entries older than 24 h are dropped.
        assert_eq!(
            record_switch("s", &[1, 2], 1 + DAY_MS + 5),
            Ok(vec![1 + DAY_MS + 5])
        );
        assert!(record_switch("s", &[5, 6], 6 + DAY_MS - 6).is_err());
    }
}
