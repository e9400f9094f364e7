//! The replica rebalancer's pure planner: which shard replicas to move so that nodes that
//! joined later (scale-out) take a fair share of the existing replicas.
//!
//! [`plan`] looks at the metadata and the set of nodes the metadata leader currently hears
//! from, and answers either a few moves (`MoveCommand::Begin` with an explicit target, run by
//! the replica-move executor like a decommission's moves) or why it stays idle. Rules:
//!
//! * **Only on a healthy, quiet cluster**: idle while a decommission is in flight (a
//!   decommissioning node still holds replicas or takes part in a move), while any registered
//!   node that is not decommissioning is not live (down, partitioned, or not yet a member of
//!   the control plane), and while [`RebalanceParams::max_moves`] moves are already in flight.
//! * **Only settled groups**: shards of ACTIVE streams with no split/merge, shard-count update
//!   or mode switch in progress, never a pending child, never a group already moving.
//! * **Placement is kept**: a move either stays inside the zone of the replica it replaces or
//!   does not reduce the number of distinct zones among the group's replicas — so replicas
//!   that are in distinct zones stay in distinct zones.
//! * **Hysteresis**: a move goes from a node to one holding at least two replicas fewer
//!   (`load[from] - load[to] > 1`). Each such move lowers the sum of squared loads by at least
//!   2, so planning converges and stops; it stops as soon as no placement-keeping move between
//!   nodes two or more replicas apart exists (zones can make a perfect balance impossible:
//!   with one node in a zone and two in another, each zone still holds one replica per shard).
//!
//! Moves in flight count as done (their `to` holds the replica, their `from` not), so a plan
//! made while moves run does not overshoot. Ties are broken by node id and group id: the
//! planner is deterministic.

use std::collections::{BTreeMap, BTreeSet};

use serde::{Deserialize, Serialize};

use super::state::{MetaState, ShardState, StreamStatus};

/// Settings of the rebalancer (`[rebalance]` in the node configuration).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct RebalanceParams {
    /// Move existing replicas onto under-loaded nodes at all.
    pub enabled: bool,
    /// Most replica moves in flight at once (rebalancing starts none beyond it).
    pub max_moves: usize,
    /// How often the metadata leader plans, ms.
    pub interval_ms: u64,
    /// A node whose last heartbeat answer to the metadata leader is older than this counts
    /// as down (and the rebalancer idles), ms.
    pub down_after_ms: u64,
}

impl Default for RebalanceParams {
    fn default() -> Self {
        Self {
            enabled: true,
            max_moves: 1,
            interval_ms: 1_000,
            down_after_ms: 3_000,
        }
    }
}

/// One planned move: `group`'s replica on `from` goes to `to`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
pub struct PlannedMove {
    pub group: u64,
    pub from: u64,
    pub to: u64,
}

/// Why the rebalancer starts nothing.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case", tag = "reason", content = "node")]
pub enum Idle {
    /// Every placement-keeping move would be between nodes at most one replica apart.
    Balanced,
    /// A decommission is moving replicas (this node).
    Decommissioning(u64),
    /// A registered node is down or not (yet) a member of the control plane.
    NodeDown(u64),
    /// `max_moves` moves are already in flight, or the moves in flight are all it would do.
    MovesInFlight,
}

impl std::fmt::Display for Idle {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            Idle::Balanced => write!(f, "balanced"),
            Idle::Decommissioning(n) => write!(f, "node {n} is being decommissioned"),
            Idle::NodeDown(n) => write!(f, "node {n} is down or not yet a member"),
            Idle::MovesInFlight => write!(f, "moves in flight"),
        }
    }
}

/// What [`plan`] decided.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub enum Plan {
    Move(Vec<PlannedMove>),
    Idle(Idle),
}

/// The nodes that take part in rebalancing: registered and not decommissioning.
fn eligible(state: &MetaState) -> BTreeSet<u64> {
    state
        .nodes
        .keys()
        .copied()
        .filter(|n| !state.decommissioning.contains(n))
        .collect()
}

/// Number of distinct zones among `replicas` (nodes missing from the registry count as one
/// zone each).
pub fn distinct_zones(state: &MetaState, replicas: &[u64]) -> usize {
    replicas
        .iter()
        .map(|r| match state.nodes.get(r) {
            Some(n) => n.zone.clone(),
            None => format!("\0unregistered-{r}"),
        })
        .collect::<BTreeSet<_>>()
        .len()
}

/// Whether replacing `from` by `to` in `replicas` keeps the placement rule: `to` is in
/// `from`'s zone, or the group's replicas span at least as many zones afterwards.
pub fn keeps_placement(state: &MetaState, replicas: &[u64], from: u64, to: u64) -> bool {
    if replicas.contains(&to) || !replicas.contains(&from) {
        return false;
    }
    let zone = |n: u64| state.nodes.get(&n).map(|i| i.zone.as_str());
    if zone(from).is_some() && zone(from) == zone(to) {
        return true;
    }
    let after: Vec<u64> = replicas
        .iter()
        .map(|r| if *r == from { to } else { *r })
        .collect();
    distinct_zones(state, &after) >= distinct_zones(state, replicas)
}

/// Replicas per eligible node, counting moves in flight as done.
pub fn effective_load(state: &MetaState) -> BTreeMap<u64, usize> {
    let mut load: BTreeMap<u64, usize> = eligible(state).into_iter().map(|n| (n, 0)).collect();
    for s in state.streams.values() {
        for sh in &s.shards {
            let mv = state.replica_moves.get(&sh.group);
            for r in &sh.replicas {
                let holder = match mv {
                    Some(m) if m.from == *r => m.to,
                    _ => *r,
                };
                if let Some(l) = load.get_mut(&holder) {
                    *l += 1;
                }
            }
        }
    }
    load
}

/// Plans the next moves (see the module docs). `live`: the nodes the metadata leader hears
/// from (itself included).
pub fn plan(state: &MetaState, live: &BTreeSet<u64>, params: &RebalanceParams) -> Plan {
    for node in &state.decommissioning {
        let holds = state
            .streams
            .values()
            .flat_map(|s| s.shards.iter())
            .any(|sh| sh.replicas.contains(node));
        let moving = state
            .replica_moves
            .values()
            .any(|m| m.from == *node || m.to == *node);
        if holds || moving {
            return Plan::Idle(Idle::Decommissioning(*node));
        }
    }
    let nodes = eligible(state);
    if let Some(down) = nodes.iter().find(|n| !live.contains(n)) {
        return Plan::Idle(Idle::NodeDown(*down));
    }
    let in_flight = state.replica_moves.len();
    if in_flight >= params.max_moves {
        return Plan::Idle(Idle::MovesInFlight);
    }
    let budget = params.max_moves - in_flight;

    // Candidate groups, open shards first (they carry the writes), then by group id.
    let mut groups: Vec<(bool, u64, Vec<u64>)> = state
        .streams
        .values()
        .filter(|s| {
            s.status == StreamStatus::Active
                && s.reshard.is_none()
                && s.target_shard_count.is_none()
                && s.mode_switches.pending.is_none()
        })
        .flat_map(|s| s.shards.iter())
        .filter(|sh| {
            sh.state != ShardState::Pending && !state.replica_moves.contains_key(&sh.group)
        })
        .map(|sh| (!sh.writable(), sh.group, sh.replicas.clone()))
        .collect();
    groups.sort_by_key(|(closed, g, _)| (*closed, *g));

    let mut load = effective_load(state);
    let mut picked: Vec<PlannedMove> = Vec::new();
    'pick: while picked.len() < budget {
        let mut desc: Vec<(u64, usize)> = load.iter().map(|(n, l)| (*n, *l)).collect();
        desc.sort_by_key(|(n, l)| (std::cmp::Reverse(*l), *n));
        let mut asc = desc.clone();
        asc.sort_by_key(|(n, l)| (*l, *n));
        for (from, lf) in &desc {
            for (to, lt) in &asc {
                if lf.saturating_sub(*lt) < 2 {
                    break;
                }
                let found = groups.iter().position(|(_, _, reps)| {
                    reps.contains(from) && keeps_placement(state, reps, *from, *to)
                });
                if let Some(i) = found {
                    let (_, group, _) = groups.remove(i);
                    picked.push(PlannedMove {
                        group,
                        from: *from,
                        to: *to,
                    });
                    *load.entry(*from).or_default() -= 1;
                    *load.entry(*to).or_default() += 1;
                    continue 'pick;
                }
            }
        }
        break;
    }
    if picked.is_empty() && in_flight > 0 {
        // Nothing more to start; "balanced" only once the moves in flight are done.
        Plan::Idle(Idle::MovesInFlight)
    } else if picked.is_empty() {
        Plan::Idle(Idle::Balanced)
    } else {
        Plan::Move(picked)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::meta::moves::MoveCommand;
    use crate::meta::state::{CapacityMode, MetaCommand, MetaResponse, NodeInfo};
    use crate::meta::testing::bootstrapped;

    fn ranges(n: u32) -> Vec<(u128, u128)> {
        let w = u128::MAX / n as u128;
        (0..n)
            .map(|i| {
                let end = if i + 1 == n {
                    u128::MAX
                } else {
                    w * (i as u128 + 1) - 1
                };
                (w * i as u128, end)
            })
            .collect()
    }

    fn with_stream(nodes: &[(u64, &str)], name: &str, shards: u32) -> MetaState {
        let mut st = bootstrapped(nodes);
        add_stream(&mut st, name, shards);
        st
    }

    fn add_stream(st: &mut MetaState, name: &str, shards: u32) {
        let r = st.apply(&MetaCommand::CreateStream {
            name: name.into(),
            mode: CapacityMode::Provisioned,
            hash_ranges: ranges(shards),
            now_ms: 1_000,
        });
        let MetaResponse::StreamCreated { uid } = r else {
            panic!("create {name}: {r:?}");
        };
        st.apply(&MetaCommand::ActivateStream {
            name: name.into(),
            uid,
        });
    }

    fn join(st: &mut MetaState, id: u64, zone: &str) {
        st.apply(&MetaCommand::RegisterNode {
            node: NodeInfo {
                id,
                zone: zone.into(),
                peer_addr: format!("n{id}:7400"),
                incarnation: None,
            },
        });
    }

    fn all_live(st: &MetaState) -> BTreeSet<u64> {
        st.nodes.keys().copied().collect()
    }

    fn assert_placement(st: &MetaState) {
        let zones: BTreeSet<&str> = st
            .nodes
            .values()
            .filter(|n| !st.decommissioning.contains(&n.id))
            .map(|n| n.zone.as_str())
            .collect();
        for s in st.streams.values() {
            for sh in &s.shards {
                assert_eq!(sh.replicas.len(), 3, "{sh:?}");
                let want = zones.len().min(3);
                assert!(
                    distinct_zones(st, &sh.replicas) >= want,
                    "group {} on {:?} spans fewer than {want} zones",
                    sh.group,
                    sh.replicas
                );
            }
        }
    }

    /// Runs the planner and applies its moves (begin + complete) until it is idle; returns
    /// the number of moves and the final idle reason.
    fn converge(st: &mut MetaState, params: &RebalanceParams) -> (usize, Idle) {
        let mut moves = 0;
        let spread: BTreeMap<u64, usize> = st
            .streams
            .values()
            .flat_map(|s| s.shards.iter())
            .map(|sh| (sh.group, distinct_zones(st, &sh.replicas)))
            .collect();
        for _ in 0..10_000 {
            match plan(st, &all_live(st), params) {
                Plan::Idle(Idle::MovesInFlight) => {
                    let inflight: Vec<(u64, u64, u64)> = st
                        .replica_moves
                        .iter()
                        .map(|(g, m)| (*g, m.from, m.to))
                        .collect();
                    for (group, from, to) in inflight {
                        let r = st.apply(&MetaCommand::Move(MoveCommand::Complete {
                            group,
                            from,
                            to,
                        }));
                        assert_eq!(r, MetaResponse::Done);
                        let reps = st.group_replicas(group).cloned().unwrap_or_default();
                        assert_eq!(reps.len(), 3);
                        assert!(
                            distinct_zones(st, &reps) >= spread[&group],
                            "group {group} now on {reps:?} spans fewer zones"
                        );
                    }
                }
                Plan::Idle(why) => return (moves, why),
                Plan::Move(ms) => {
                    assert!(!ms.is_empty() && ms.len() <= params.max_moves);
                    for m in ms {
                        let reps = st.group_replicas(m.group).cloned().unwrap_or_default();
                        assert!(keeps_placement(st, &reps, m.from, m.to), "{m:?} {reps:?}");
                        let r = st.apply(&MetaCommand::Move(MoveCommand::Begin {
                            group: m.group,
                            from: m.from,
                            to: Some(m.to),
                        }));
                        assert_eq!(r, MetaResponse::Done, "{m:?}");
                        moves += 1;
                    }
                }
            }
        }
        panic!("the rebalancer did not converge");
    }

    fn spread(st: &MetaState) -> (usize, usize) {
        let load = st.replica_load();
        let l: Vec<usize> = load
            .iter()
            .filter(|(n, _)| !st.decommissioning.contains(n))
            .map(|(_, l)| *l)
            .collect();
        (
            l.iter().copied().min().unwrap_or(0),
            l.iter().copied().max().unwrap_or(0),
        )
    }

    #[test]
    fn idle_when_balanced() {
        let st = with_stream(&[(0, "a"), (1, "b"), (2, "c")], "s", 8);
        assert_eq!(
            plan(&st, &all_live(&st), &RebalanceParams::default()),
            Plan::Idle(Idle::Balanced)
        );
        // Six nodes in three zones, placement at creation already balanced: nothing to do.
        let st = with_stream(
            &[(0, "a"), (1, "b"), (2, "c"), (3, "a"), (4, "b"), (5, "c")],
            "s",
            8,
        );
        assert_eq!(
            plan(&st, &all_live(&st), &RebalanceParams::default()),
            Plan::Idle(Idle::Balanced)
        );
    }

    #[test]
    fn a_node_joining_a_zone_takes_half_of_that_zone_and_nothing_else() {
        let mut st = with_stream(&[(0, "a"), (1, "b"), (2, "c")], "s", 8);
        join(&mut st, 3, "a");
        let params = RebalanceParams::default();
        let Plan::Move(first) = plan(&st, &all_live(&st), &params) else {
            panic!("no move planned");
        };
        assert_eq!(first.len(), 1, "one move at a time by default");
        assert_eq!((first[0].from, first[0].to), (0, 3), "within zone a");
        let (moves, why) = converge(&mut st, &params);
        assert_eq!(why, Idle::Balanced);
        assert_eq!(moves, 4);
        let load = st.replica_load();
        assert_eq!((load[&0], load[&1], load[&2], load[&3]), (4, 8, 8, 4));
        assert_placement(&st);
        // Stable: planning again changes nothing.
        assert_eq!(
            plan(&st, &all_live(&st), &params),
            Plan::Idle(Idle::Balanced)
        );
    }

    #[test]
    fn converges_and_keeps_zones_distinct_on_scale_out() {
        // (joining nodes, shards, max_moves, whether an even spread is reachable)
        for (extra, shards, max_moves, even) in [
            (&[(3, "d")][..], 8, 1, true),
            (&[(3, "d"), (4, "e"), (5, "f")][..], 16, 3, true),
            (&[(3, "a"), (4, "b"), (5, "c")][..], 10, 2, true),
            (&[(3, "a"), (4, "a"), (5, "b")][..], 9, 1, false),
        ] {
            let mut st = with_stream(&[(0, "a"), (1, "b"), (2, "c")], "s", shards);
            add_stream(&mut st, "t", 3);
            for (id, zone) in extra {
                join(&mut st, *id, zone);
            }
            let params = RebalanceParams {
                max_moves,
                ..Default::default()
            };
            let (moves, why) = converge(&mut st, &params);
            assert_eq!(why, Idle::Balanced);
            assert!(moves > 0, "{extra:?}: nothing moved");
            assert_placement(&st);
            // At the end no placement-keeping move between nodes ≥ 2 apart exists.
            let load = st.replica_load();
            for sh in st.streams.values().flat_map(|s| s.shards.iter()) {
                for from in &sh.replicas {
                    for to in st.nodes.keys() {
                        if keeps_placement(&st, &sh.replicas, *from, *to) {
                            assert!(load[from] <= load[to] + 1, "{extra:?}: {load:?}");
                        }
                    }
                }
            }
            if even {
                let (lo, hi) = spread(&st);
                assert!(hi - lo <= 1, "{extra:?}: {load:?}");
            }
        }
    }

    #[test]
    fn single_zone_clusters_balance_freely() {
        let mut st = with_stream(&[(0, "z"), (1, "z"), (2, "z")], "s", 6);
        join(&mut st, 3, "z");
        join(&mut st, 4, "z");
        let (moves, why) = converge(&mut st, &RebalanceParams::default());
        assert_eq!(why, Idle::Balanced);
        assert!(moves > 0);
        let (lo, hi) = spread(&st);
        assert!(hi - lo <= 1, "{:?}", st.replica_load());
    }

    #[test]
    fn idle_during_decommission_and_while_a_node_is_down() {
        let mut st = with_stream(&[(0, "a"), (1, "b"), (2, "c")], "s", 4);
        join(&mut st, 3, "d");
        join(&mut st, 4, "a");
        let params = RebalanceParams::default();
        st.apply(&MetaCommand::Move(MoveCommand::Decommission { node: 1 }));
        assert_eq!(
            plan(&st, &all_live(&st), &params),
            Plan::Idle(Idle::Decommissioning(1))
        );
        // Once the decommissioned node is emptied, the others balance again (without it).
        let groups: Vec<u64> = st.streams["s"].shards.iter().map(|s| s.group).collect();
        for g in groups {
            st.apply(&MetaCommand::Move(MoveCommand::Begin {
                group: g,
                from: 1,
                to: None,
            }));
            let m = st.replica_moves[&g];
            st.apply(&MetaCommand::Move(MoveCommand::Complete {
                group: g,
                from: 1,
                to: m.to,
            }));
        }
        let mut live = all_live(&st);
        live.remove(&1);
        let p = plan(&st, &live, &params);
        assert!(
            matches!(p, Plan::Move(_) | Plan::Idle(Idle::Balanced)),
            "{p:?}"
        );
        if let Plan::Move(ms) = p {
            assert!(ms.iter().all(|m| m.from != 1 && m.to != 1));
        }
        // A live node missing: idle.
        live.remove(&4);
        assert_eq!(plan(&st, &live, &params), Plan::Idle(Idle::NodeDown(4)));
    }

    #[test]
    fn bounded_moves_and_settled_groups_only() {
        let mut st = with_stream(&[(0, "a"), (1, "b"), (2, "c")], "s", 6);
        // A stream still being created is never touched.
        st.apply(&MetaCommand::CreateStream {
            name: "new".into(),
            mode: CapacityMode::Provisioned,
            hash_ranges: ranges(4),
            now_ms: 2_000,
        });
        join(&mut st, 3, "d");
        join(&mut st, 4, "e");
        let params = RebalanceParams {
            max_moves: 2,
            ..Default::default()
        };
        let Plan::Move(ms) = plan(&st, &all_live(&st), &params) else {
            panic!("no move");
        };
        assert_eq!(ms.len(), 2);
        let creating: BTreeSet<u64> = st.streams["new"].shards.iter().map(|s| s.group).collect();
        assert!(ms.iter().all(|m| !creating.contains(&m.group)));
        let groups: BTreeSet<u64> = ms.iter().map(|m| m.group).collect();
        assert_eq!(groups.len(), 2, "one move per group");
        for m in &ms {
            st.apply(&MetaCommand::Move(MoveCommand::Begin {
                group: m.group,
                from: m.from,
                to: Some(m.to),
            }));
        }
        assert_eq!(
            plan(&st, &all_live(&st), &params),
            Plan::Idle(Idle::MovesInFlight)
        );
        // With room for one more, the in-flight moves count as done and their groups wait.
        let params3 = RebalanceParams {
            max_moves: 3,
            ..Default::default()
        };
        if let Plan::Move(more) = plan(&st, &all_live(&st), &params3) {
            assert_eq!(more.len(), 1);
            assert!(!groups.contains(&more[0].group));
        }
    }

    proptest::proptest! {
        #![proptest_config(proptest::prelude::ProptestConfig::with_cases(64))]

        /// Any cluster, any scale-out: the planner converges, every move keeps each group's
        /// zone spread, and at the end no placement-keeping move between nodes two or more
        /// replicas apart is left.
        #[test]
        fn converges_without_breaking_placement(
            initial in proptest::collection::vec(0u8..4, 3..6),
            joining in proptest::collection::vec(0u8..5, 1..4),
            streams in proptest::collection::vec(1u32..7, 1..4),
            max_moves in 1usize..4,
        ) {
            let zone = |z: u8| ["a", "b", "c", "d", "e"][z as usize];
            let nodes: Vec<(u64, &str)> =
                initial.iter().enumerate().map(|(i, z)| (i as u64, zone(*z))).collect();
            let mut st = bootstrapped(&nodes);
            for (i, n) in streams.iter().enumerate() {
                add_stream(&mut st, &format!("s{i}"), *n);
            }
            let spread_before: BTreeMap<u64, usize> = st
                .streams
                .values()
                .flat_map(|s| s.shards.iter())
                .map(|sh| (sh.group, distinct_zones(&st, &sh.replicas)))
                .collect();
            for (i, z) in joining.iter().enumerate() {
                join(&mut st, (nodes.len() + i) as u64, zone(*z));
            }
            let params = RebalanceParams { max_moves, ..Default::default() };
            let (_, why) = converge(&mut st, &params);
            proptest::prop_assert_eq!(why, Idle::Balanced);
            let load = st.replica_load();
            for sh in st.streams.values().flat_map(|s| s.shards.iter()) {
                proptest::prop_assert!(
                    distinct_zones(&st, &sh.replicas) >= spread_before[&sh.group]
                );
                for from in &sh.replicas {
                    for to in st.nodes.keys() {
                        if keeps_placement(&st, &sh.replicas, *from, *to) {
                            proptest::prop_assert!(load[from] <= load[to] + 1, "{:?}", load);
                        }
                    }
                }
            }
        }
    }

    #[test]
    fn deterministic() {
        let mut st = with_stream(&[(0, "a"), (1, "b"), (2, "c")], "s", 12);
        join(&mut st, 3, "a");
        join(&mut st, 4, "d");
        let p = RebalanceParams {
            max_moves: 4,
            ..Default::default()
        };
        let a = plan(&st, &all_live(&st), &p);
        let b = plan(&st.clone(), &all_live(&st), &p);
        assert_eq!(a, b);
    }
}
