//! Admin HTTP endpoints: `/health` (the process serves), `/ready` (member of a control plane
//! with a leader, cluster bootstrapped, this node registered), `/metrics` (Prometheus text),
//! `/v1/shards` (this node's replicas: leader, members, applied progress), `/v1/nodes` (the
//! node registry and control-plane membership), `/v1/identity` (this node's id and
//! data-directory incarnation) and `/v1/drain` (move leadership away before
//! stopping: `POST` starts draining and answers 200 once this node leads no group, 503 while
//! it still leads some; `GET` reports without starting) and `/v1/decommission` (move every
//! replica off a node before removing it, see `decommission`), `/v1/rebalance` (replicas per
//! node, moves in flight, the rebalancer's last decision) and `POST /v1/nodes/{id}/forget`
//! (drop a fully decommissioned node from the registry; both in `rebalance`).

use openraft::async_runtime::WatchReceiver;
use std::sync::Arc;

use axum::extract::State;
use axum::http::StatusCode;
use axum::response::{IntoResponse, Response};
use axum::routing::{get, post};
use axum::{Json, Router};
use prometheus_client::encoding::text::encode;
use prometheus_client::metrics::gauge::Gauge;
use prometheus_client::registry::Registry;
use serde::Serialize;
use spate_control_plane::meta::state::NodeInfo;
use spate_control_plane::meta::MetaHandle;
use spate_proto::kinesis::ids::shard_id;
use std::time::Duration;
use tokio::net::TcpListener;
use tokio::sync::watch;

use super::drain::{DrainStatus, Drainer};
use crate::shard::manager::ShardManager;

/// How long `POST /v1/drain` waits for the transfers before it answers 503.
const DRAIN_WAIT: Duration = Duration::from_secs(3);

#[derive(Clone)]
pub struct AdminState {
    pub node_id: u64,
    /// What this node registers in the control plane (id, zone, peer address).
    pub me: NodeInfo,
    pub meta: MetaHandle,
    pub shards: Arc<ShardManager>,
    pub drainer: Arc<Drainer>,
    /// Turns true when the node stops (ends the drain loop).
    pub stop: watch::Receiver<bool>,
    /// The replica rebalancer's settings and last decision.
    pub rebalance: Arc<crate::cluster::rebalance::RebalanceStatus>,
}

/// One node as `/v1/nodes` shows it.
#[derive(Debug, Serialize)]
pub struct NodeView {
    pub id: u64,
    pub zone: String,
    pub peer_addr: String,
    /// `voter`, `learner`, or `none` (registered, not yet in the control-plane membership).
    pub role: &'static str,
    /// Shard replicas placed on the node.
    pub replicas: usize,
    /// Marked by `/v1/decommission` (it stays so until forgotten).
    pub decommissioning: bool,
}

/// One hosted shard replica as `/v1/shards` shows it.
#[derive(Debug, Serialize)]
pub struct ShardView {
    pub stream: String,
    pub shard_id: String,
    pub group: u64,
    pub leader: Option<u64>,
    pub members: Vec<u64>,
    pub last_applied: u64,
    pub next_ordinal: u64,
    /// Raft log of the group on this node: entries `log_purged + 1 ..= log_last` are kept;
    /// everything up to `snapshot_index` is in the flushed state machine.
    pub log_purged: u64,
    pub log_last: u64,
    pub snapshot_index: u64,
}

pub async fn serve(
    listener: TcpListener,
    state: AdminState,
    shutdown: impl std::future::Future<Output = ()> + Send + 'static,
) -> std::io::Result<()> {
    let app = Router::new()
        .route("/health", get(|| async { "ok" }))
        .route("/ready", get(ready))
        .route("/metrics", get(metrics))
        .route("/v1/shards", get(shards))
        .route("/v1/nodes", get(nodes))
        .route("/v1/identity", get(identity))
        .route("/v1/drain", post(drain).get(drain_status))
        .route(
            "/v1/decommission",
            post(super::decommission::start).get(super::decommission::get),
        )
        .route("/v1/rebalance", get(super::rebalance::get))
        .route("/v1/nodes/{id}/forget", post(super::rebalance::forget))
        .with_state(state);
    axum::serve(listener, app)
        .with_graceful_shutdown(shutdown)
        .await
}

/// `GET /v1/identity`: this node's id, zone, peer address and data-directory incarnation
/// (the id differs from the configured one when the node replaced a node that lost its disk).
async fn identity(State(st): State<AdminState>) -> Json<NodeInfo> {
    Json(st.me.clone())
}

fn is_ready(st: &AdminState) -> bool {
    let m = st.meta.raft().metrics().borrow_watched().clone();
    let view = st.meta.view();
    m.current_leader.is_some()
        && view.state.secrets.is_some()
        && view.state.nodes.get(&st.node_id) == Some(&st.me)
}

async fn ready(State(st): State<AdminState>) -> Response {
    if is_ready(&st) {
        (StatusCode::OK, "ready").into_response()
    } else {
        (
            StatusCode::SERVICE_UNAVAILABLE,
            "not ready: control plane has no leader, is not bootstrapped, or this node is not registered yet",
        )
            .into_response()
    }
}

fn drain_response(status: DrainStatus) -> Response {
    let code = if status.drained || !status.draining {
        StatusCode::OK
    } else {
        StatusCode::SERVICE_UNAVAILABLE
    };
    (code, Json(status)).into_response()
}

/// Starts draining and waits (bounded) until this node leads no group.
async fn drain(State(st): State<AdminState>) -> Response {
    st.drainer.start(st.stop.clone());
    let deadline = tokio::time::Instant::now() + DRAIN_WAIT;
    loop {
        let status = st.drainer.status();
        if status.drained || tokio::time::Instant::now() >= deadline {
            tracing::info!(?status, "drain request");
            return drain_response(status);
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
}

/// Reports the drain state: 200 when not draining or drained, 503 while draining.
async fn drain_status(State(st): State<AdminState>) -> Response {
    drain_response(st.drainer.status())
}

async fn nodes(State(st): State<AdminState>) -> Json<Vec<NodeView>> {
    let view = st.meta.view();
    let m = st.meta.raft().metrics().borrow_watched().clone();
    let membership = m.membership_config.membership();
    let voters: Vec<u64> = membership.voter_ids().collect();
    let learners: Vec<u64> = membership.learner_ids().collect();
    let load = view.state.replica_load();
    Json(
        view.state
            .nodes
            .values()
            .map(|n| NodeView {
                id: n.id,
                zone: n.zone.clone(),
                peer_addr: n.peer_addr.clone(),
                role: if voters.contains(&n.id) {
                    "voter"
                } else if learners.contains(&n.id) {
                    "learner"
                } else {
                    "none"
                },
                replicas: load.get(&n.id).copied().unwrap_or(0),
                decommissioning: view.state.decommissioning.contains(&n.id),
            })
            .collect(),
    )
}

fn shard_views(st: &AdminState) -> Vec<ShardView> {
    let view = st.meta.view();
    let mut out = Vec::new();
    for stream in view.state.streams.values() {
        for shard in &stream.shards {
            if let Some(r) = st.shards.get(shard.group) {
                let s = r.status();
                out.push(ShardView {
                    stream: stream.name.clone(),
                    shard_id: shard_id(shard.index),
                    group: shard.group,
                    leader: s.leader,
                    members: s.members,
                    last_applied: s.last_applied,
                    next_ordinal: s.next_ordinal,
                    log_purged: s.log_purged,
                    log_last: s.log_last,
                    snapshot_index: s.snapshot_index,
                });
            }
        }
    }
    out
}

async fn shards(State(st): State<AdminState>) -> Json<Vec<ShardView>> {
    Json(shard_views(&st))
}

async fn metrics(State(st): State<AdminState>) -> Response {
    let mut registry = Registry::with_prefix("spate");
    let add = |reg: &mut Registry, name: &str, help: &str, v: i64| {
        let g: Gauge = Gauge::default();
        g.set(v);
        reg.register(name, help, g);
    };
    let views = shard_views(&st);
    let view = st.meta.view();
    let meta_m = st.meta.raft().metrics().borrow_watched().clone();
    add(
        &mut registry,
        "node_ready",
        "1 when the node is ready",
        is_ready(&st) as i64,
    );
    add(
        &mut registry,
        "node_draining",
        "1 once POST /v1/drain was called (the node hands leadership away and does not campaign)",
        st.drainer.is_draining() as i64,
    );
    add(
        &mut registry,
        "meta_is_leader",
        "1 when this node leads the control plane",
        st.meta.raft().is_leader() as i64,
    );
    add(
        &mut registry,
        "meta_term",
        "Current term of the control-plane group",
        meta_m.current_term as i64,
    );
    add(
        &mut registry,
        "meta_applied_index",
        "Applied log index of the control-plane group",
        view.applied_index as i64,
    );
    add(
        &mut registry,
        "streams",
        "Streams in the shard map",
        view.state.streams.len() as i64,
    );
    add(
        &mut registry,
        "shard_replicas",
        "Shard replicas hosted on this node",
        views.len() as i64,
    );
    add(
        &mut registry,
        "shard_leaders",
        "Shard groups this node leads",
        views
            .iter()
            .filter(|v| v.leader == Some(st.node_id))
            .count() as i64,
    );
    add(
        &mut registry,
        "shard_records",
        "Records appended to the shards hosted here (sum of ordinals)",
        views
            .iter()
            .map(|v| v.next_ordinal.saturating_sub(1) as i64)
            .sum(),
    );
    add(
        &mut registry,
        "replica_moves",
        "Shard replica moves in flight in the cluster (rebalancing and decommissioning)",
        view.state.replica_moves.len() as i64,
    );
    add(
        &mut registry,
        "rebalance_moves_started",
        "Replica moves this node's rebalancer started (only the metadata leader plans)",
        st.rebalance
            .moves_started
            .load(std::sync::atomic::Ordering::Relaxed) as i64,
    );
    let node_replicas =
        prometheus_client::metrics::family::Family::<Vec<(String, String)>, Gauge>::default();
    for (node, n) in view.state.replica_load() {
        node_replicas
            .get_or_create(&vec![("node".to_string(), node.to_string())])
            .set(n as i64);
    }
    registry.register(
        "node_replicas",
        "Shard replicas placed on each registered node (from the metadata)",
        node_replicas,
    );
    st.shards.capacity_metrics().register(&mut registry);
    let mut body = String::new();
    if encode(&mut body, &registry).is_err() {
        return (StatusCode::INTERNAL_SERVER_ERROR, "metrics encoding failed").into_response();
    }
    (
        [(
            "content-type",
            "application/openmetrics-text; version=1.0.0; charset=utf-8",
        )],
        body,
    )
        .into_response()
}
