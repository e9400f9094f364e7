//! The server half of the transport: the `RaftTransport` and `Forward` gRPC services, routing
//! each message to the hosted group it names once it is known to be meant for this node
//! (its identity, see [`super::identity`]), and `Identify` for nodes starting on an empty disk.

use std::sync::Arc;

use spate_proto::grpc::forward_server::{Forward, ForwardServer};
use spate_proto::grpc::raft_transport_server::{RaftTransport, RaftTransportServer};
use spate_proto::grpc::{GroupMessage, SnapshotChunk};
use tonic::{Request, Response, Status, Streaming};

use super::codec::{decode, encode};
use super::identity::{has_meta_state, IdentifyReply, IdentifyRequest, LocalIdentity};
use super::registry::{GroupEndpoint, GroupRegistry};
use super::snapshot::SnapshotSink;

/// Largest snapshot this node accepts in one transfer (spooled to disk past a few MiB).
const MAX_SNAPSHOT_BYTES: u64 = 1 << 40;

/// Serves both internal services from the registry.
#[derive(Clone)]
pub struct PeerService {
    registry: Arc<GroupRegistry>,
    identity: Arc<LocalIdentity>,
    db: Arc<rocksdb::DB>,
}

impl PeerService {
    pub fn new(
        registry: Arc<GroupRegistry>,
        identity: Arc<LocalIdentity>,
        db: Arc<rocksdb::DB>,
    ) -> Self {
        Self {
            registry,
            identity,
            db,
        }
    }

    fn group(&self, id: u64) -> Result<Arc<dyn GroupEndpoint>, Status> {
        self.registry
            .get(id)
            .ok_or_else(|| Status::not_found(format!("group {id} is not hosted here")))
    }

    /// The group a Raft message is for, once the message is known to be meant for this
    /// node (see [`super::identity`]).
    fn addressed(&self, m: &GroupMessage) -> Result<Arc<dyn GroupEndpoint>, Status> {
        self.identity
            .check(m.target_node, m.target_incarnation)
            .map_err(|e| Status::failed_precondition(e.to_string()))?;
        self.group(m.group_id)
    }

    /// Builds the tonic router with both services.
    pub fn router(self) -> tonic::transport::server::Router {
        tonic::transport::Server::builder()
            .tcp_nodelay(true)
            .initial_connection_window_size(Some(8 << 20))
            .initial_stream_window_size(Some(4 << 20))
            .add_service(
                RaftTransportServer::new(self.clone())
                    .max_decoding_message_size(64 << 20)
                    .max_encoding_message_size(64 << 20),
            )
            .add_service(
                ForwardServer::new(self)
                    .max_decoding_message_size(64 << 20)
                    .max_encoding_message_size(64 << 20),
            )
    }
}

fn reply(group_id: u64, payload: Vec<u8>) -> Response<GroupMessage> {
    Response::new(GroupMessage {
        group_id,
        payload,
        target_node: None,
        target_incarnation: None,
    })
}

#[tonic::async_trait]
impl RaftTransport for PeerService {
    async fn append_entries(
        &self,
        req: Request<GroupMessage>,
    ) -> Result<Response<GroupMessage>, Status> {
        let m = req.into_inner();
        let out = self.addressed(&m)?.append_entries(m.payload).await?;
        Ok(reply(m.group_id, out))
    }

    async fn vote(&self, req: Request<GroupMessage>) -> Result<Response<GroupMessage>, Status> {
        let m = req.into_inner();
        let out = self.addressed(&m)?.vote(m.payload).await?;
        Ok(reply(m.group_id, out))
    }

    async fn pre_vote(&self, req: Request<GroupMessage>) -> Result<Response<GroupMessage>, Status> {
        let m = req.into_inner();
        let out = self.addressed(&m)?.pre_vote(m.payload).await?;
        Ok(reply(m.group_id, out))
    }

    async fn install_snapshot(
        &self,
        req: Request<Streaming<SnapshotChunk>>,
    ) -> Result<Response<GroupMessage>, Status> {
        let mut stream = req.into_inner();
        let first = stream
            .message()
            .await?
            .ok_or_else(|| Status::invalid_argument("empty snapshot stream"))?;
        self.identity
            .check(first.target_node, first.target_incarnation)
            .map_err(|e| Status::failed_precondition(e.to_string()))?;
        let group_id = first.group_id;
        let header = first.header;
        let internal = |e: std::io::Error| Status::internal(format!("snapshot spool: {e}"));
        let mut sink = SnapshotSink::new(&self.registry.spool_dir(), group_id);
        sink.write(&first.data).map_err(internal)?;
        let mut complete = first.last;
        while !complete {
            let Some(chunk) = stream.message().await? else {
                return Err(Status::aborted(
                    "snapshot stream ended before its last chunk",
                ));
            };
            if chunk.group_id != group_id {
                return Err(Status::invalid_argument(
                    "snapshot chunks of different groups",
                ));
            }
            if sink.len() + chunk.data.len() as u64 > MAX_SNAPSHOT_BYTES {
                return Err(Status::resource_exhausted("snapshot too large"));
            }
            sink.write(&chunk.data).map_err(internal)?;
            complete = chunk.last;
        }
        let data = sink.finish().map_err(internal)?;
        let out = self.group(group_id)?.install_snapshot(header, data).await?;
        Ok(reply(group_id, out))
    }

    async fn transfer_leader(
        &self,
        req: Request<GroupMessage>,
    ) -> Result<Response<GroupMessage>, Status> {
        let m = req.into_inner();
        let out = self.addressed(&m)?.transfer_leader(m.payload).await?;
        Ok(reply(m.group_id, out))
    }
}

#[tonic::async_trait]
impl Forward for PeerService {
    async fn shard(&self, req: Request<GroupMessage>) -> Result<Response<GroupMessage>, Status> {
        let m = req.into_inner();
        // Sent to a node id that no longer lives at this address: not handled, so the
        // sender may safely route it again.
        self.identity
            .check(m.target_node, None)
            .map_err(|e| Status::unavailable(e.to_string()))?;
        let handler = self
            .registry
            .forward_handler()
            .ok_or_else(|| Status::unavailable("node starting"))?;
        let out = handler.shard(m.group_id, m.payload).await?;
        Ok(reply(m.group_id, out))
    }

    async fn meta(&self, req: Request<GroupMessage>) -> Result<Response<GroupMessage>, Status> {
        let m = req.into_inner();
        let handler = self
            .registry
            .forward_handler()
            .ok_or_else(|| Status::unavailable("node starting"))?;
        let out = handler.meta(m.payload).await?;
        Ok(reply(m.group_id, out))
    }

    async fn identify(&self, req: Request<GroupMessage>) -> Result<Response<GroupMessage>, Status> {
        let m = req.into_inner();
        let ask: IdentifyRequest = decode(&m.payload)
            .map_err(|e| Status::invalid_argument(format!("undecodable request: {e}")))?;
        let answer = if !has_meta_state(&self.db) {
            IdentifyReply::Fresh
        } else {
            match self.registry.forward_handler() {
                Some(h) => h.identify(ask.node),
                None => IdentifyReply::Starting,
            }
        };
        let out = encode(&answer).map_err(|e| Status::internal(e.to_string()))?;
        Ok(reply(m.group_id, out))
    }
}
