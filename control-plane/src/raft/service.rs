//! The server half of the transport: the `RaftTransport` and `Forward` gRPC services, routing
//! each message to the hosted group it names.

use std::sync::Arc;

use spate_proto::grpc::forward_server::{Forward, ForwardServer};
use spate_proto::grpc::raft_transport_server::{RaftTransport, RaftTransportServer};
use spate_proto::grpc::{GroupMessage, SnapshotChunk};
use tonic::{Request, Response, Status, Streaming};

use super::registry::{GroupEndpoint, GroupRegistry};
use super::snapshot::SnapshotSink;

/// Largest snapshot this node accepts in one transfer (spooled to disk past a few MiB).
const MAX_SNAPSHOT_BYTES: u64 = 1 << 40;

/// Serves both internal services from the registry.
#[derive(Clone)]
pub struct PeerService {
    registry: Arc<GroupRegistry>,
}

impl PeerService {
    pub fn new(registry: Arc<GroupRegistry>) -> Self {
        Self { registry }
    }

    fn group(&self, id: u64) -> Result<Arc<dyn GroupEndpoint>, Status> {
        self.registry
            .get(id)
            .ok_or_else(|| Status::not_found(format!("group {id} is not hosted here")))
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
    Response::new(GroupMessage { group_id, payload })
}

#[tonic::async_trait]
impl RaftTransport for PeerService {
    async fn append_entries(
        &self,
        req: Request<GroupMessage>,
    ) -> Result<Response<GroupMessage>, Status> {
        let m = req.into_inner();
        let out = self.group(m.group_id)?.append_entries(m.payload).await?;
        Ok(reply(m.group_id, out))
    }

    async fn vote(&self, req: Request<GroupMessage>) -> Result<Response<GroupMessage>, Status> {
        let m = req.into_inner();
        let out = self.group(m.group_id)?.vote(m.payload).await?;
        Ok(reply(m.group_id, out))
    }

    async fn pre_vote(&self, req: Request<GroupMessage>) -> Result<Response<GroupMessage>, Status> {
        let m = req.into_inner();
        let out = self.group(m.group_id)?.pre_vote(m.payload).await?;
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
        let out = self.group(m.group_id)?.transfer_leader(m.payload).await?;
        Ok(reply(m.group_id, out))
    }
}

#[tonic::async_trait]
impl Forward for PeerService {
    async fn shard(&self, req: Request<GroupMessage>) -> Result<Response<GroupMessage>, Status> {
        let m = req.into_inner();
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
}
