//! Control-plane membership beyond the initial voters, and node self-registration.
//!
//! * [`register`]: every node announces itself (`RegisterNode`: id, zone, peer address) once
//!   the cluster is bootstrapped, so placement uses the zone the node reports rather than the
//!   static `cluster.peers` list. Idempotent: nothing is proposed when the registry already
//!   holds exactly this entry (a restart with the same settings proposes nothing). A node that
//!   is not a member of the metadata group yet (a joining node) cannot see the registry or the
//!   leader, so it forwards `RegisterNode` to the configured peers until one of them, the
//!   leader, applies it; it is done once its own replica of the metadata shows the entry.
//! * [`run_learners`]: on the metadata leader, every registered node that is not in the
//!   metadata group's membership is added as a learner (a non-voter that receives the log and
//!   snapshots). Voters stay the initial `cluster.peers`; learners never count in a quorum, so
//!   adding or losing one never costs the control plane its majority.
//!
//! * [`run_learners`] also removes a decommissioned node (`MoveCommand::Decommission`) from
//!   the metadata group once it holds no shard replica: a learner is simply removed; a voter
//!   is removed only when another registered learner can be promoted in its place first, so
//!   the number of voters (and the quorum's fault tolerance) does not drop. A decommissioning
//!   node is never (re-)added as a learner.
//!
//! A registered node is eligible for the replicas of new shards (`MetaState::place`) unless
//! it is decommissioning.

use std::time::Duration;

use openraft::async_runtime::WatchReceiver;
use std::collections::BTreeSet;

use openraft::{BasicNode, ChangeMembers};
use tokio::sync::watch;

use super::handle::MetaHandle;
use super::state::{MetaCommand, NodeInfo};

/// Pause between attempts of [`register`] and passes of [`run_learners`].
const RETRY: Duration = Duration::from_millis(500);

/// Whether the local metadata shows `me` registered exactly as given.
pub fn is_registered(meta: &MetaHandle, me: &NodeInfo) -> bool {
    meta.view().state.nodes.get(&me.id) == Some(me)
}

/// Registers this node (see the module docs); returns once the local metadata shows it, or
/// when `stop` turns true. `peers` are the initial voters' peer addresses, used while this
/// node is not a member of the metadata group.
pub async fn register(
    meta: MetaHandle,
    me: NodeInfo,
    peers: Vec<String>,
    mut stop: watch::Receiver<bool>,
) {
    let mut rx = meta.subscribe();
    let mut attempt = 0u64;
    loop {
        let view = rx.borrow_and_update().clone();
        if view.state.nodes.get(&me.id) == Some(&me) {
            tracing::info!(node = me.id, zone = %me.zone, "node registered");
            return;
        }
        let member = meta.leader().is_some();
        let bootstrapped = view.state.secrets.is_some();
        // A member waits for the bootstrap (which writes the static registry) before it
        // overwrites its entry; a non-member cannot see it and asks the peers every few
        // passes (each success is one more, harmless, registry entry).
        let cmd = MetaCommand::RegisterNode { node: me.clone() };
        if member && bootstrapped {
            match meta.propose(cmd).await {
                Ok(super::MetaResponse::Failed(e)) if attempt.is_multiple_of(20) => {
                    tracing::error!(node = me.id, error = %e, "the control plane refuses this node's registration")
                }
                Ok(_) => {}
                Err(e) => tracing::debug!(error = %e, "RegisterNode"),
            }
        } else if !member && attempt.is_multiple_of(4) {
            match meta.propose_via(&peers, &cmd).await {
                Ok(_) => tracing::info!(node = me.id, "asked the control plane to admit this node"),
                Err(e) => tracing::debug!(error = %e, "RegisterNode through the peers"),
            }
        }
        attempt += 1;
        tokio::select! {
            _ = tokio::time::sleep(RETRY) => {}
            _ = rx.changed() => {}
            _ = stop.wait_for(|s| *s) => return,
        }
    }
}

/// On the metadata leader: adds every registered node missing from the metadata group as a
/// learner (and re-adds a learner whose address changed). Runs until `stop` turns true.
pub async fn run_learners(meta: MetaHandle, mut stop: watch::Receiver<bool>) {
    loop {
        if meta.raft().is_leader() {
            add_missing_learners(&meta).await;
            remove_decommissioned(&meta).await;
        }
        tokio::select! {
            _ = tokio::time::sleep(RETRY) => {}
            _ = stop.wait_for(|s| *s) => return,
        }
    }
}

async fn add_missing_learners(meta: &MetaHandle) {
    let view = meta.view();
    let m = meta.raft().metrics().borrow_watched().clone();
    let membership = m.membership_config.membership().clone();
    for node in view.state.nodes.values() {
        if view.state.decommissioning.contains(&node.id) {
            continue;
        }
        let known = membership.get_node(&node.id);
        let is_voter = membership.voter_ids().any(|v| v == node.id);
        if is_voter || known.map(|n| n.addr.as_str()) == Some(node.peer_addr.as_str()) {
            continue;
        }
        let addr = BasicNode {
            addr: node.peer_addr.clone(),
        };
        match meta.raft().add_learner(node.id, addr, false).await {
            Ok(_) => tracing::info!(
                node = node.id,
                zone = %node.zone,
                addr = %node.peer_addr,
                "added a node to the control plane as a learner"
            ),
            Err(e) => tracing::warn!(node = node.id, error = %e, "add_learner"),
        }
    }
}

/// Whether decommissioned `node` holds nothing any more (no replica, no move towards it).
pub fn is_emptied(state: &super::state::MetaState, node: u64) -> bool {
    state.replica_load().get(&node).copied().unwrap_or(0) == 0
        && !state
            .replica_moves
            .values()
            .any(|m| m.to == node || m.from == node)
}

async fn remove_decommissioned(meta: &MetaHandle) {
    let view = meta.view();
    let m = meta.raft().metrics().borrow_watched().clone();
    let membership = m.membership_config.membership().clone();
    if membership.get_joint_config().len() > 1 {
        return;
    }
    let voters: BTreeSet<u64> = membership.voter_ids().collect();
    let learners: BTreeSet<u64> = membership.learner_ids().collect();
    for node in &view.state.decommissioning {
        if !is_emptied(&view.state, *node) {
            continue;
        }
        let change = if learners.contains(node) {
            ChangeMembers::RemoveNodes(BTreeSet::from([*node]))
        } else if voters.contains(node) {
            // Promote a live, registered learner in its place; without one, stay a voter.
            let spare = learners.iter().copied().find(|l| {
                !view.state.decommissioning.contains(l) && view.state.nodes.contains_key(l)
            });
            match spare {
                Some(l) => {
                    let mut next = voters.clone();
                    next.remove(node);
                    next.insert(l);
                    ChangeMembers::ReplaceAllVoters(next)
                }
                None => {
                    tracing::warn!(
                        node,
                        "decommissioned node stays a control-plane voter: no learner to promote"
                    );
                    continue;
                }
            }
        } else {
            continue;
        };
        match meta.raft().change_membership(change, false).await {
            Ok(_) => tracing::info!(node, "removed a decommissioned node from the control plane"),
            Err(e) => tracing::warn!(node, error = %e, "removing a decommissioned node"),
        }
        return;
    }
}
