//! Replica moves and node decommissioning, as metadata commands (pure; see `state`).
//!
//! A move takes one replica of a shard group from node `from` to node `to`:
//! [`MoveCommand::Begin`] records it in [`MetaState::replica_moves`] (so a new metadata
//! leader, or a new shard leader, resumes it), `to`'s shard manager then starts the group
//! *without* initialising it, the shard leader adds `to` as a learner, changes the voter set
//! to `replicas - from + to`, and proposes [`MoveCommand::Complete`], which swaps `from` for
//! `to` in `ShardMeta::replicas`; `from`'s manager then stops the group and deletes its data.
//! A group that has ever had a move is recorded in [`MetaState::moved_groups`]: none of its
//! replicas initialises it again (the group exists; a second `initialize` with another
//! membership would fork it).
//!
//! [`MoveCommand::Decommission`] marks a node: no new replica is placed on it and the
//! control loop moves its replicas away one at a time; [`MoveCommand::Forget`] removes a
//! decommissioned node holding no replica from the registry.
//!
//! Every command is idempotent: repeating one that already took effect answers `Done`.

use serde::{Deserialize, Serialize};

use super::state::{MetaError, MetaResponse, MetaState, REPLICAS};

/// One replica move in progress.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
pub struct ReplicaMove {
    pub from: u64,
    pub to: u64,
}

/// Commands of replica moves and decommissioning.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub enum MoveCommand {
    /// Starts moving `group`'s replica on `from` to `to` (chosen by placement when `None`).
    Begin {
        group: u64,
        from: u64,
        to: Option<u64>,
    },
    /// The group's voters are now `replicas - from + to`: record it.
    Complete { group: u64, from: u64, to: u64 },
    /// Marks `node` decommissioning: nothing new is placed on it, its replicas move away.
    Decommission { node: u64 },
    /// Removes a decommissioned node that holds no replica from the registry.
    Forget { node: u64 },
}

impl std::fmt::Display for MoveCommand {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            MoveCommand::Begin { group, from, to } => {
                write!(f, "BeginMove(group {group}: {from} -> {to:?})")
            }
            MoveCommand::Complete { group, from, to } => {
                write!(f, "CompleteMove(group {group}: {from} -> {to})")
            }
            MoveCommand::Decommission { node } => write!(f, "Decommission({node})"),
            MoveCommand::Forget { node } => write!(f, "Forget({node})"),
        }
    }
}

/// Why a move command was refused.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, thiserror::Error)]
pub enum MoveError {
    #[error("no shard group {0}")]
    NoGroup(u64),
    #[error("node {0} is not registered")]
    UnknownNode(u64),
    #[error("node {node} holds no replica of group {group}")]
    NotAReplica { group: u64, node: u64 },
    #[error("node {node} already holds a replica of group {group}")]
    AlreadyAReplica { group: u64, node: u64 },
    #[error("node {0} is decommissioning")]
    Decommissioning(u64),
    #[error("group {group} is already moving a replica ({from} -> {to})")]
    Busy { group: u64, from: u64, to: u64 },
    #[error("no node can take the replica of group {0}")]
    NoTarget(u64),
    #[error("no move {from} -> {to} in progress for group {group}")]
    NoSuchMove { group: u64, from: u64, to: u64 },
    #[error("node {node} still holds {replicas} replicas")]
    StillHoldsReplicas { node: u64, replicas: usize },
    #[error("node {0} is not decommissioning")]
    NotDecommissioning(u64),
}

fn failed(e: MoveError) -> MetaResponse {
    MetaResponse::Failed(MetaError::Invalid(e.to_string()))
}

impl MetaState {
    /// The replicas of `group` (stream name and shard index, replicas), if it exists.
    pub fn group_replicas(&self, group: u64) -> Option<&Vec<u64>> {
        self.streams
            .values()
            .flat_map(|s| s.shards.iter())
            .find(|s| s.group == group)
            .map(|s| &s.replicas)
    }

    fn group_replicas_mut(&mut self, group: u64) -> Option<&mut Vec<u64>> {
        self.streams
            .values_mut()
            .flat_map(|s| s.shards.iter_mut())
            .find(|s| s.group == group)
            .map(|s| &mut s.replicas)
    }

    /// Whether `node` may initialise `group` (an original replica of a group that never
    /// had a replica move).
    pub fn may_initialize(&self, group: u64, node: u64) -> bool {
        !self.moved_groups.contains(&group)
            && !self.replica_moves.contains_key(&group)
            && self
                .group_replicas(group)
                .is_some_and(|r| r.contains(&node))
    }

    /// Drops moves of groups that no longer exist (stream deleted, shard expired).
    pub(crate) fn prune_moves(&mut self) {
        let live: std::collections::BTreeSet<u64> = self
            .streams
            .values()
            .flat_map(|s| s.shards.iter().map(|sh| sh.group))
            .collect();
        self.replica_moves.retain(|g, _| live.contains(g));
        self.moved_groups.retain(|g| live.contains(g));
    }

    /// The node to move `group`'s replica on `from` to: not decommissioning, not a replica;
    /// `from`'s zone first, then a zone the group lacks, then any; least loaded, then lowest id.
    pub fn move_target(&self, group: u64, from: u64) -> Option<u64> {
        let replicas = self.group_replicas(group)?;
        let load = self.replica_load();
        let from_zone = self.nodes.get(&from).map(|n| n.zone.as_str());
        let zones: Vec<&str> = replicas
            .iter()
            .filter(|r| **r != from)
            .filter_map(|r| self.nodes.get(r).map(|n| n.zone.as_str()))
            .collect();
        self.nodes
            .values()
            .filter(|n| !replicas.contains(&n.id) && !self.decommissioning.contains(&n.id))
            .min_by_key(|n| {
                let zone_rank = if Some(n.zone.as_str()) == from_zone {
                    0
                } else if !zones.contains(&n.zone.as_str()) {
                    1
                } else {
                    2
                };
                (zone_rank, load.get(&n.id).copied().unwrap_or(0), n.id)
            })
            .map(|n| n.id)
    }

    pub(crate) fn apply_move(&mut self, cmd: &MoveCommand) -> MetaResponse {
        if self.secrets.is_none() {
            return MetaResponse::Failed(MetaError::NotBootstrapped);
        }
        self.prune_moves();
        match *cmd {
            MoveCommand::Begin { group, from, to } => self.begin_move(group, from, to),
            MoveCommand::Complete { group, from, to } => self.complete_move(group, from, to),
            MoveCommand::Decommission { node } => {
                if !self.nodes.contains_key(&node) {
                    return failed(MoveError::UnknownNode(node));
                }
                if self.decommissioning.insert(node) {
                    self.epoch += 1;
                }
                MetaResponse::Done
            }
            MoveCommand::Forget { node } => {
                if !self.nodes.contains_key(&node) {
                    return MetaResponse::Done;
                }
                if !self.decommissioning.contains(&node) {
                    return failed(MoveError::NotDecommissioning(node));
                }
                let held = self.replica_load().get(&node).copied().unwrap_or(0);
                let moving_to = self.replica_moves.values().any(|m| m.to == node);
                if held > 0 || moving_to {
                    return failed(MoveError::StillHoldsReplicas {
                        node,
                        replicas: held + moving_to as usize,
                    });
                }
                self.nodes.remove(&node);
                self.decommissioning.remove(&node);
                self.epoch += 1;
                MetaResponse::Done
            }
        }
    }

    fn begin_move(&mut self, group: u64, from: u64, to: Option<u64>) -> MetaResponse {
        let Some(replicas) = self.group_replicas(group) else {
            return failed(MoveError::NoGroup(group));
        };
        if let Some(m) = self.replica_moves.get(&group).copied() {
            // Repeating the same move is harmless; another one waits.
            if m.from == from && to.is_none_or(|t| t == m.to) {
                return MetaResponse::Done;
            }
            return failed(MoveError::Busy {
                group,
                from: m.from,
                to: m.to,
            });
        }
        if !replicas.contains(&from) {
            // Already moved away (a repeated Begin after Complete).
            return failed(MoveError::NotAReplica { group, node: from });
        }
        let to = match to {
            Some(t) => {
                if !self.nodes.contains_key(&t) {
                    return failed(MoveError::UnknownNode(t));
                }
                if replicas.contains(&t) {
                    return failed(MoveError::AlreadyAReplica { group, node: t });
                }
                if self.decommissioning.contains(&t) {
                    return failed(MoveError::Decommissioning(t));
                }
                t
            }
            None => match self.move_target(group, from) {
                Some(t) => t,
                None => return failed(MoveError::NoTarget(group)),
            },
        };
        self.replica_moves.insert(group, ReplicaMove { from, to });
        self.moved_groups.insert(group);
        self.epoch += 1;
        MetaResponse::Done
    }

    fn complete_move(&mut self, group: u64, from: u64, to: u64) -> MetaResponse {
        let Some(replicas) = self.group_replicas(group) else {
            return failed(MoveError::NoGroup(group));
        };
        if replicas.contains(&to) && !replicas.contains(&from) {
            return MetaResponse::Done;
        }
        if self.replica_moves.get(&group) != Some(&ReplicaMove { from, to }) {
            return failed(MoveError::NoSuchMove { group, from, to });
        }
        if let Some(r) = self.group_replicas_mut(group) {
            r.retain(|n| *n != from);
            r.push(to);
            r.sort_unstable();
            debug_assert!(r.len() <= REPLICAS);
        }
        self.replica_moves.remove(&group);
        self.epoch += 1;
        MetaResponse::Done
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::meta::state::{CapacityMode, MetaCommand};

    fn cluster(nodes: &[(u64, &str)]) -> MetaState {
        let mut st = crate::meta::testing::bootstrapped(nodes);
        st.apply(&MetaCommand::CreateStream {
            name: "s".into(),
            mode: CapacityMode::Provisioned,
            hash_ranges: vec![(0, u128::MAX / 2), (u128::MAX / 2 + 1, u128::MAX)],
            now_ms: 1_000,
        });
        st
    }

    fn mv(st: &mut MetaState, c: MoveCommand) -> MetaResponse {
        st.apply(&MetaCommand::Move(c))
    }

    fn invalid(e: MoveError) -> MetaResponse {
        failed(e)
    }

    #[test]
    fn move_prefers_the_same_zone_and_is_idempotent() {
        let mut st = cluster(&[(0, "a"), (1, "b"), (2, "c"), (3, "a"), (4, "d")]);
        let g = st.streams["s"].shards[0].group;
        let from = st.streams["s"].shards[0].replicas[0];
        let from_zone = st.nodes[&from].zone.clone();
        assert!(st.may_initialize(g, from));
        assert_eq!(
            mv(
                &mut st,
                MoveCommand::Begin {
                    group: g,
                    from,
                    to: None
                }
            ),
            MetaResponse::Done
        );
        let m = st.replica_moves[&g];
        assert_eq!(m.from, from);
        assert_eq!(st.nodes[&m.to].zone, from_zone, "same zone first");
        assert!(
            !st.may_initialize(g, from),
            "a moving group is never initialised again"
        );
        // Repeating Begin is harmless; a different move is refused.
        let before = st.clone();
        assert_eq!(
            mv(
                &mut st,
                MoveCommand::Begin {
                    group: g,
                    from,
                    to: None
                }
            ),
            MetaResponse::Done
        );
        assert_eq!(st, before);
        let other = st.streams["s"].shards[0].replicas[1];
        assert_eq!(
            mv(
                &mut st,
                MoveCommand::Begin {
                    group: g,
                    from: other,
                    to: None
                }
            ),
            invalid(MoveError::Busy {
                group: g,
                from,
                to: m.to
            })
        );
        // Completion swaps the replica; repeating it is harmless.
        let done = MoveCommand::Complete {
            group: g,
            from,
            to: m.to,
        };
        assert_eq!(mv(&mut st, done.clone()), MetaResponse::Done);
        let r = &st.streams["s"].shards[0].replicas;
        assert!(r.contains(&m.to) && !r.contains(&from) && r.len() == 3);
        assert!(st.replica_moves.is_empty());
        let after = st.clone();
        assert_eq!(mv(&mut st, done), MetaResponse::Done);
        assert_eq!(st, after);
        assert!(
            !st.may_initialize(g, m.to),
            "a joined replica never initialises"
        );
        // A repeated Begin after the completion is refused (from holds nothing any more).
        assert_eq!(
            mv(
                &mut st,
                MoveCommand::Begin {
                    group: g,
                    from,
                    to: None
                }
            ),
            invalid(MoveError::NotAReplica {
                group: g,
                node: from
            })
        );
    }

    #[test]
    fn bad_moves_are_refused() {
        let mut st = cluster(&[(0, "a"), (1, "b"), (2, "c"), (3, "d")]);
        let sh = st.streams["s"].shards[0].clone();
        let g = sh.group;
        let outsider = (0..4).find(|n| !sh.replicas.contains(n)).unwrap_or(3);
        let from = sh.replicas[0];
        assert_eq!(
            mv(
                &mut st,
                MoveCommand::Begin {
                    group: 999,
                    from,
                    to: None
                }
            ),
            invalid(MoveError::NoGroup(999))
        );
        assert_eq!(
            mv(
                &mut st,
                MoveCommand::Begin {
                    group: g,
                    from,
                    to: Some(77)
                }
            ),
            invalid(MoveError::UnknownNode(77))
        );
        assert_eq!(
            mv(
                &mut st,
                MoveCommand::Begin {
                    group: g,
                    from,
                    to: Some(sh.replicas[1])
                }
            ),
            invalid(MoveError::AlreadyAReplica {
                group: g,
                node: sh.replicas[1]
            })
        );
        assert_eq!(
            mv(
                &mut st,
                MoveCommand::Begin {
                    group: g,
                    from: outsider,
                    to: None
                }
            ),
            invalid(MoveError::NotAReplica {
                group: g,
                node: outsider
            })
        );
        assert_eq!(
            mv(&mut st, MoveCommand::Decommission { node: outsider }),
            MetaResponse::Done
        );
        assert_eq!(
            mv(
                &mut st,
                MoveCommand::Begin {
                    group: g,
                    from,
                    to: Some(outsider)
                }
            ),
            invalid(MoveError::Decommissioning(outsider))
        );
        // The only non-replica is decommissioning: no target.
        assert_eq!(
            mv(
                &mut st,
                MoveCommand::Begin {
                    group: g,
                    from,
                    to: None
                }
            ),
            invalid(MoveError::NoTarget(g))
        );
        assert_eq!(
            mv(
                &mut st,
                MoveCommand::Complete {
                    group: g,
                    from,
                    to: outsider
                }
            ),
            invalid(MoveError::NoSuchMove {
                group: g,
                from,
                to: outsider
            })
        );
        assert!(st.replica_moves.is_empty());
    }

    #[test]
    fn decommissioned_nodes_get_no_new_replicas_and_are_forgotten_when_empty() {
        let mut st = cluster(&[(0, "a"), (1, "b"), (2, "c"), (3, "a")]);
        assert_eq!(
            mv(&mut st, MoveCommand::Decommission { node: 9 }),
            invalid(MoveError::UnknownNode(9))
        );
        assert_eq!(
            mv(&mut st, MoveCommand::Forget { node: 0 }),
            invalid(MoveError::NotDecommissioning(0))
        );
        mv(&mut st, MoveCommand::Decommission { node: 0 });
        mv(&mut st, MoveCommand::Decommission { node: 0 });
        st.apply(&MetaCommand::CreateStream {
            name: "t".into(),
            mode: CapacityMode::Provisioned,
            hash_ranges: vec![(0, u128::MAX)],
            now_ms: 2_000,
        });
        assert!(!st.streams["t"].shards[0].replicas.contains(&0));
        // Move everything off node 0, then forget it.
        let groups: Vec<u64> = st
            .streams
            .values()
            .flat_map(|s| s.shards.iter())
            .filter(|s| s.replicas.contains(&0))
            .map(|s| s.group)
            .collect();
        assert!(!groups.is_empty());
        assert!(matches!(
            mv(&mut st, MoveCommand::Forget { node: 0 }),
            MetaResponse::Failed(_)
        ));
        for g in groups {
            mv(
                &mut st,
                MoveCommand::Begin {
                    group: g,
                    from: 0,
                    to: None,
                },
            );
            let m = st.replica_moves[&g];
            assert_eq!(m.to, 3, "node 0's zone peer takes it");
            mv(
                &mut st,
                MoveCommand::Complete {
                    group: g,
                    from: 0,
                    to: m.to,
                },
            );
        }
        assert_eq!(st.replica_load().get(&0), Some(&0));
        assert_eq!(
            mv(&mut st, MoveCommand::Forget { node: 0 }),
            MetaResponse::Done
        );
        assert!(!st.nodes.contains_key(&0) && st.decommissioning.is_empty());
        assert_eq!(
            mv(&mut st, MoveCommand::Forget { node: 0 }),
            MetaResponse::Done
        );
    }

    #[test]
    fn moves_of_deleted_streams_are_dropped() {
        let mut st = cluster(&[(0, "a"), (1, "b"), (2, "c"), (3, "d")]);
        let g = st.streams["s"].shards[0].group;
        let from = st.streams["s"].shards[0].replicas[0];
        mv(
            &mut st,
            MoveCommand::Begin {
                group: g,
                from,
                to: None,
            },
        );
        st.apply(&MetaCommand::DeleteStream { name: "s".into() });
        assert!(st.replica_moves.is_empty() && st.moved_groups.is_empty());
    }
}
