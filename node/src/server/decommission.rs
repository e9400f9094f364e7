//! `POST /v1/decommission?node=<id>` (admin port of any node; without `node`, this node):
//! marks the node decommissioning in the metadata (no new replica is placed on it) and the
//! metadata leader moves its shard replicas to other nodes one at a time through Raft
//! membership changes (`cluster::moves`). Answers 202 while the node still holds replicas
//! and 200 once it holds none; then it is also removed from the control-plane membership
//! (`meta::membership`). `GET` reports the same progress without starting anything.

use axum::extract::{Query, State};
use axum::http::StatusCode;
use axum::response::{IntoResponse, Response};
use axum::Json;
use openraft::async_runtime::WatchReceiver;
use serde::{Deserialize, Serialize};
use spate_control_plane::meta::membership::is_emptied;
use spate_control_plane::meta::moves::{MoveCommand, ReplicaMove};
use spate_control_plane::meta::{MetaCommand, MetaResponse};

use super::admin::AdminState;

/// Query of `/v1/decommission`.
#[derive(Debug, Deserialize)]
pub struct Target {
    /// The node to decommission; this node when absent.
    pub node: Option<u64>,
}

/// What `/v1/decommission` reports.
#[derive(Debug, Serialize)]
pub struct DecommissionStatus {
    pub node_id: u64,
    pub decommissioning: bool,
    /// Shard replicas still placed on the node.
    pub replicas: usize,
    /// Moves in progress off or onto the node, by shard group.
    pub moving: Vec<(u64, ReplicaMove)>,
    /// `voter`, `learner` or `none`: the node's place in the control-plane group.
    pub meta_role: &'static str,
    /// Holds no replica and no move involves it.
    pub done: bool,
}

fn status(st: &AdminState, node: u64) -> DecommissionStatus {
    let view = st.meta.view();
    let m = st.meta.raft().metrics().borrow_watched().clone();
    let membership = m.membership_config.membership();
    let meta_role = if membership.voter_ids().any(|v| v == node) {
        "voter"
    } else if membership.learner_ids().any(|v| v == node) {
        "learner"
    } else {
        "none"
    };
    let decommissioning = view.state.decommissioning.contains(&node);
    DecommissionStatus {
        node_id: node,
        decommissioning,
        replicas: view.state.replica_load().get(&node).copied().unwrap_or(0),
        moving: view
            .state
            .replica_moves
            .iter()
            .filter(|(_, m)| m.from == node || m.to == node)
            .map(|(g, m)| (*g, *m))
            .collect(),
        meta_role,
        done: decommissioning && is_emptied(&view.state, node),
    }
}

fn respond(s: DecommissionStatus) -> Response {
    let code = if s.done {
        StatusCode::OK
    } else {
        StatusCode::ACCEPTED
    };
    (code, Json(s)).into_response()
}

fn unknown(node: u64) -> Response {
    (
        StatusCode::NOT_FOUND,
        format!("node {node} is not registered"),
    )
        .into_response()
}

/// Starts decommissioning (idempotent) and reports progress.
pub async fn start(State(st): State<AdminState>, Query(t): Query<Target>) -> Response {
    let node = t.node.unwrap_or(st.node_id);
    if !st.meta.view().state.nodes.contains_key(&node) {
        return unknown(node);
    }
    match st
        .meta
        .propose(MetaCommand::Move(MoveCommand::Decommission { node }))
        .await
    {
        Ok(MetaResponse::Failed(e)) => {
            return (StatusCode::BAD_REQUEST, e.to_string()).into_response()
        }
        Ok(_) => tracing::info!(node, "decommissioning"),
        Err(e) => return (StatusCode::SERVICE_UNAVAILABLE, e.to_string()).into_response(),
    }
    respond(status(&st, node))
}

/// Reports decommissioning progress.
pub async fn get(State(st): State<AdminState>, Query(t): Query<Target>) -> Response {
    let node = t.node.unwrap_or(st.node_id);
    if !st.meta.view().state.nodes.contains_key(&node) {
        return unknown(node);
    }
    respond(status(&st, node))
}
