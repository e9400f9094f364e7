//! Sends shard requests to the replica that should serve them: the group's leader (local or
//! over gRPC), following `NotLeader` hints. A put is retried only when it surely was not
//! applied (a `NotLeader` answer, a refused connection), so retries never duplicate records.

use openraft::async_runtime::WatchReceiver;
use std::collections::HashMap;
use std::sync::{Arc, RwLock};
use std::time::{Duration, Instant};

use spate_control_plane::meta::state::ShardMeta;
use spate_control_plane::meta::MetaHandle;
use spate_control_plane::raft::codec::{decode, encode};
use spate_control_plane::raft::network::PeerChannels;
use spate_control_plane::raft::{GroupId, NodeId};
use spate_proto::grpc::GroupMessage;

use crate::shard::manager::ShardManager;
use crate::shard::replica::{ShardReply, ShardRequest};

/// How long one request may chase a leader.
const ROUTE_DEADLINE: Duration = Duration::from_secs(8);
/// Per-hop timeout of a forwarded call.
const HOP_TIMEOUT: Duration = Duration::from_secs(5);

/// Why a routed request failed.
#[derive(Debug, thiserror::Error)]
pub enum RouteError {
    /// No replica answered in time; the request was not applied.
    #[error("shard unavailable: {0}")]
    Unavailable(String),
    /// The request may or may not have been applied (a put whose answer was lost).
    #[error("outcome unknown: {0}")]
    Unknown(String),
    /// The leader's write queue is full.
    #[error("shard overloaded")]
    Overloaded,
    /// Refused by the shard's throughput limits; not applied.
    #[error("throttled: {0}")]
    Throttled(String),
}

/// Routes shard requests.
pub struct ShardRouter {
    node_id: NodeId,
    meta: MetaHandle,
    shards: Arc<ShardManager>,
    peers: Arc<PeerChannels>,
    hints: RwLock<HashMap<GroupId, NodeId>>,
}

enum Hop {
    Reply(ShardReply),
    /// Not delivered: safe to retry elsewhere.
    NotDelivered(String),
    /// Delivered or maybe delivered, no answer.
    Lost(String),
}

impl ShardRouter {
    pub fn new(
        node_id: NodeId,
        meta: MetaHandle,
        shards: Arc<ShardManager>,
        peers: Arc<PeerChannels>,
    ) -> Self {
        Self {
            node_id,
            meta,
            shards,
            peers,
            hints: RwLock::new(HashMap::new()),
        }
    }

    fn first_target(&self, shard: &ShardMeta) -> NodeId {
        if let Some(r) = self.shards.get(shard.group) {
            if let Some(l) = r.raft.metrics().borrow_watched().current_leader {
                return l;
            }
        }
        if let Some(h) = self
            .hints
            .read()
            .unwrap_or_else(|p| p.into_inner())
            .get(&shard.group)
        {
            return *h;
        }
        shard.replicas.first().copied().unwrap_or(self.node_id)
    }

    fn remember(&self, group: GroupId, leader: NodeId) {
        self.hints
            .write()
            .unwrap_or_else(|p| p.into_inner())
            .insert(group, leader);
    }

    async fn hop(&self, target: NodeId, group: GroupId, req: &ShardRequest) -> Hop {
        if target == self.node_id {
            return match self.shards.get(group) {
                Some(r) => Hop::Reply(r.handle(req.clone()).await),
                None => Hop::NotDelivered("shard not hosted on this node".into()),
            };
        }
        let view = self.meta.view();
        let Some(node) = view.state.nodes.get(&target) else {
            return Hop::NotDelivered(format!("unknown node {target}"));
        };
        let payload = match encode(req) {
            Ok(p) => p,
            Err(e) => return Hop::NotDelivered(e.to_string()),
        };
        let mut client = match self.peers.forward_client(&node.peer_addr) {
            Ok(c) => c,
            Err(e) => return Hop::NotDelivered(e.to_string()),
        };
        match tokio::time::timeout(
            HOP_TIMEOUT,
            client.shard(GroupMessage {
                group_id: group,
                payload,
                target_node: Some(target),
                target_incarnation: None,
            }),
        )
        .await
        {
            Err(_) => Hop::Lost(format!("node {target} timed out")),
            Ok(Err(status)) => {
                let msg = status.message().to_string();
                let never_sent = status.code() == tonic::Code::Unavailable
                    && (msg.contains("connect")
                        || msg.contains("Connection refused")
                        || msg.contains("starting"));
                if never_sent || status.code() == tonic::Code::NotFound {
                    Hop::NotDelivered(format!("node {target}: {msg}"))
                } else {
                    Hop::Lost(format!("node {target}: {msg}"))
                }
            }
            Ok(Ok(resp)) => match decode::<ShardReply>(&resp.into_inner().payload) {
                Ok(reply) => Hop::Reply(reply),
                Err(e) => Hop::Lost(format!("undecodable reply from node {target}: {e}")),
            },
        }
    }

    /// Sends `req` to `shard`'s leader, following hints until [`ROUTE_DEADLINE`].
    pub async fn call(
        &self,
        shard: &ShardMeta,
        req: ShardRequest,
    ) -> Result<ShardReply, RouteError> {
        let is_put = matches!(req, ShardRequest::Put { .. });
        let deadline = Instant::now() + ROUTE_DEADLINE;
        let mut target = self.first_target(shard);
        let mut rotation = 0usize;
        let mut last_err: String;
        loop {
            match self.hop(target, shard.group, &req).await {
                Hop::Reply(ShardReply::NotLeader { leader }) => {
                    last_err = format!("node {target} is not the leader");
                    match leader {
                        Some(l) if l != target => {
                            self.remember(shard.group, l);
                            target = l;
                            continue;
                        }
                        _ => {}
                    }
                }
                Hop::Reply(ShardReply::Unavailable(e)) => last_err = e,
                Hop::Reply(ShardReply::OutcomeUnknown(e)) => return Err(RouteError::Unknown(e)),
                Hop::Reply(ShardReply::Overloaded) => return Err(RouteError::Overloaded),
                Hop::Reply(ShardReply::Throttled(m)) => return Err(RouteError::Throttled(m)),
                Hop::Reply(reply) => {
                    self.remember(shard.group, target);
                    return Ok(reply);
                }
                Hop::NotDelivered(e) => last_err = e,
                Hop::Lost(e) => {
                    if is_put {
                        return Err(RouteError::Unknown(e));
                    }
                    last_err = e;
                }
            }
            if Instant::now() >= deadline {
                return Err(RouteError::Unavailable(last_err));
            }
            // Try the next replica (leader election may be in progress).
            rotation += 1;
            if !shard.replicas.is_empty() {
                let local_leader = self
                    .shards
                    .get(shard.group)
                    .and_then(|r| r.raft.metrics().borrow_watched().current_leader);
                target = match local_leader {
                    Some(l) if l != target => l,
                    _ => shard.replicas[rotation % shard.replicas.len()],
                };
            }
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
    }
}
