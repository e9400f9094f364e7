//! Admin endpoints of scale-out and scale-in bookkeeping (any node's admin port):
//!
//! * `GET /v1/rebalance`: the rebalancer's settings, the replicas each node holds, the replica
//!   moves in flight, and — on the metadata leader, which is the only node that plans — its
//!   last decision (`idle` reason or the moves it started).
//! * `POST /v1/nodes/{id}/forget`: removes a fully decommissioned node from the registry:
//!   it must be decommissioning, hold no shard replica, take part in no move and no longer be
//!   a member of the control plane. Answers 200 once forgotten, 404 for an id not in the
//!   registry (never registered, or already forgotten) and 409 with the reason otherwise.

use std::sync::atomic::Ordering;

use axum::extract::{Path, State};
use axum::http::StatusCode;
use axum::response::{IntoResponse, Response};
use axum::Json;
use openraft::async_runtime::WatchReceiver;
use serde::Serialize;
use spate_control_plane::meta::membership::is_emptied;
use spate_control_plane::meta::moves::{MoveCommand, ReplicaMove};
use spate_control_plane::meta::rebalance::{effective_load, RebalanceParams};
use spate_control_plane::meta::{MetaCommand, MetaResponse};

use super::admin::AdminState;
use crate::cluster::rebalance::Decision;

/// One node's share as `/v1/rebalance` shows it.
#[derive(Debug, Serialize)]
pub struct NodeLoad {
    pub id: u64,
    pub zone: String,
    /// Replicas placed on the node now.
    pub replicas: usize,
    /// Replicas once the moves in flight complete (absent for decommissioning nodes).
    pub after_moves: Option<usize>,
    pub decommissioning: bool,
}

/// What `GET /v1/rebalance` reports.
#[derive(Debug, Serialize)]
pub struct RebalanceView {
    pub params: RebalanceParams,
    pub nodes: Vec<NodeLoad>,
    /// Replica moves in flight (rebalancing and decommissioning), by shard group.
    pub moves: Vec<(u64, ReplicaMove)>,
    /// This node's rebalancer: its last decision (only the metadata leader plans).
    pub last: Decision,
    /// Moves this node's rebalancer started since the node started.
    pub moves_started: u64,
}

pub async fn get(State(st): State<AdminState>) -> Json<RebalanceView> {
    let view = st.meta.view();
    let load = view.state.replica_load();
    let after = effective_load(&view.state);
    Json(RebalanceView {
        params: st.rebalance.params,
        nodes: view
            .state
            .nodes
            .values()
            .map(|n| NodeLoad {
                id: n.id,
                zone: n.zone.clone(),
                replicas: load.get(&n.id).copied().unwrap_or(0),
                after_moves: after.get(&n.id).copied(),
                decommissioning: view.state.decommissioning.contains(&n.id),
            })
            .collect(),
        moves: view
            .state
            .replica_moves
            .iter()
            .map(|(g, m)| (*g, *m))
            .collect(),
        last: st.rebalance.last(),
        moves_started: st.rebalance.moves_started.load(Ordering::Relaxed),
    })
}

fn conflict(msg: String) -> Response {
    (StatusCode::CONFLICT, msg).into_response()
}

/// `POST /v1/nodes/{id}/forget`.
pub async fn forget(State(st): State<AdminState>, Path(node): Path<u64>) -> Response {
    let view = st.meta.view();
    if !view.state.nodes.contains_key(&node) {
        return (
            StatusCode::NOT_FOUND,
            format!("node {node} is not registered (never joined, or already forgotten)"),
        )
            .into_response();
    }
    if !view.state.decommissioning.contains(&node) {
        return conflict(format!(
            "node {node} is not decommissioned: POST /v1/decommission?node={node} first and \
             wait for 200"
        ));
    }
    if !is_emptied(&view.state, node) {
        let held = view.state.replica_load().get(&node).copied().unwrap_or(0);
        return conflict(format!(
            "node {node} is still being decommissioned: it holds {held} shard replicas or takes \
             part in a replica move (GET /v1/decommission?node={node} shows the progress)"
        ));
    }
    let m = st.meta.raft().metrics().borrow_watched().clone();
    let membership = m.membership_config.membership();
    let role = if membership.voter_ids().any(|v| v == node) {
        Some("voter")
    } else if membership.learner_ids().any(|v| v == node) {
        Some("learner")
    } else {
        None
    };
    if let Some(role) = role {
        return conflict(format!(
            "node {node} is still a control-plane {role}; the metadata leader removes it \
             shortly (wait until GET /v1/decommission?node={node} shows meta_role \"none\"; a \
             voter is only removed once a learner can be promoted in its place)"
        ));
    }
    match st
        .meta
        .propose(MetaCommand::Move(MoveCommand::Forget { node }))
        .await
    {
        Ok(MetaResponse::Failed(e)) => conflict(format!("node {node} cannot be forgotten: {e}")),
        Ok(_) => {
            tracing::info!(node, "forgot a decommissioned node");
            (
                StatusCode::OK,
                Json(serde_json::json!({ "node_id": node, "forgotten": true })),
            )
                .into_response()
        }
        Err(e) => (StatusCode::SERVICE_UNAVAILABLE, e.to_string()).into_response(),
    }
}
