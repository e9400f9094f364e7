//! The client half of the Raft transport: one lazily connected HTTP/2 channel per peer,
//! shared by every group; a per-(group, target) [`GroupClient`] implements openraft's
//! `RaftNetworkV2` by sending postcard-encoded messages tagged with the group id.

use std::collections::HashMap;
use std::future::Future;
use std::marker::PhantomData;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use openraft::alias::{SnapshotOf, VoteOf};
use openraft::errors::{NetworkError, RPCError, ReplicationClosed, StreamingError, Unreachable};
use openraft::network::{Backoff, RPCOption, RaftNetworkFactory};
use openraft::raft::{
    AppendEntriesRequest, AppendEntriesResponse, SnapshotResponse, TransferLeaderRequest,
    TransferLeaderResponse, VoteRequest, VoteResponse,
};
use openraft::{BasicNode, OptionalSend, RaftNetworkV2, RaftTypeConfig};
use spate_proto::grpc::forward_client::ForwardClient;
use spate_proto::grpc::raft_transport_client::RaftTransportClient;
use spate_proto::grpc::{GroupMessage, SnapshotChunk};
use tonic::transport::{Channel, Endpoint};

use super::codec::{decode, encode};
use super::identity::PeerIncarnations;
use super::{GroupId, NodeId, SnapshotData};

/// Longest a snapshot transfer may take.
const SNAPSHOT_TTL: Duration = Duration::from_secs(600);

/// One channel per peer address, shared by all groups and by request forwarding, and the
/// registered incarnation of every peer (see [`super::identity`]).
#[derive(Default)]
pub struct PeerChannels {
    channels: Mutex<HashMap<String, Channel>>,
    incarnations: PeerIncarnations,
}

impl PeerChannels {
    pub fn new() -> Arc<Self> {
        Arc::new(Self::default())
    }

    /// The registered incarnation of every node, which Raft messages are addressed to.
    pub fn incarnations(&self) -> &PeerIncarnations {
        &self.incarnations
    }

    /// The channel to `addr` (`host:port`), created on first use.
    pub fn channel(&self, addr: &str) -> Result<Channel, tonic::transport::Error> {
        let mut map = self.channels.lock().unwrap_or_else(|p| p.into_inner());
        if let Some(ch) = map.get(addr) {
            return Ok(ch.clone());
        }
        let ch = Endpoint::from_shared(format!("http://{addr}"))?
            .connect_timeout(Duration::from_millis(500))
            .tcp_nodelay(true)
            .http2_keep_alive_interval(Duration::from_secs(5))
            .keep_alive_timeout(Duration::from_secs(5))
            .initial_connection_window_size(Some(8 << 20))
            .initial_stream_window_size(Some(4 << 20))
            .connect_lazy();
        map.insert(addr.to_string(), ch.clone());
        Ok(ch)
    }

    /// A raft transport client for `addr`.
    pub fn raft_client(
        &self,
        addr: &str,
    ) -> Result<RaftTransportClient<Channel>, tonic::transport::Error> {
        Ok(RaftTransportClient::new(self.channel(addr)?)
            .max_decoding_message_size(64 << 20)
            .max_encoding_message_size(64 << 20))
    }

    /// A forwarding client for `addr`.
    pub fn forward_client(
        &self,
        addr: &str,
    ) -> Result<ForwardClient<Channel>, tonic::transport::Error> {
        Ok(ForwardClient::new(self.channel(addr)?)
            .max_decoding_message_size(64 << 20)
            .max_encoding_message_size(64 << 20))
    }
}

/// Creates [`GroupClient`]s for one group.
pub struct GroupNetworkFactory<C> {
    peers: Arc<PeerChannels>,
    group: GroupId,
    _c: PhantomData<C>,
}

impl<C> GroupNetworkFactory<C> {
    pub fn new(peers: Arc<PeerChannels>, group: GroupId) -> Self {
        Self {
            peers,
            group,
            _c: PhantomData,
        }
    }
}

impl<C> RaftNetworkFactory<C> for GroupNetworkFactory<C>
where
    C: RaftTypeConfig<NodeId = NodeId, Node = BasicNode>,
{
    type Network = GroupClient<C>;

    async fn new_client(&mut self, target: NodeId, node: &BasicNode) -> Self::Network {
        GroupClient {
            peers: self.peers.clone(),
            addr: node.addr.clone(),
            target,
            group: self.group,
            _c: PhantomData,
        }
    }
}

/// Talks to one peer on behalf of one group.
pub struct GroupClient<C> {
    peers: Arc<PeerChannels>,
    addr: String,
    target: NodeId,
    group: GroupId,
    _c: PhantomData<C>,
}

#[derive(Debug, thiserror::Error)]
#[error("{0}")]
struct TransportError(String);

impl<C> GroupClient<C>
where
    C: RaftTypeConfig<NodeId = NodeId, Node = BasicNode>,
{
    fn unreachable(&self, what: impl std::fmt::Display) -> RPCError<C> {
        RPCError::Unreachable(Unreachable::new(&TransportError(format!(
            "node {} ({}) group {}: {what}",
            self.target, self.addr, self.group
        ))))
    }

    fn network(&self, what: impl std::fmt::Display) -> RPCError<C> {
        RPCError::Network(NetworkError::new(&TransportError(format!(
            "node {} ({}) group {}: {what}",
            self.target, self.addr, self.group
        ))))
    }

    fn status_err(&self, status: tonic::Status) -> RPCError<C> {
        match status.code() {
            tonic::Code::Unavailable
            | tonic::Code::NotFound
            | tonic::Code::DeadlineExceeded
            | tonic::Code::FailedPrecondition => self.unreachable(status.message()),
            _ => self.network(status.message()),
        }
    }

    async fn call<Req, Resp, F, Fut>(
        &self,
        req: &Req,
        ttl: Duration,
        f: F,
    ) -> Result<Resp, RPCError<C>>
    where
        Req: serde::Serialize,
        Resp: serde::de::DeserializeOwned,
        F: FnOnce(RaftTransportClient<Channel>, GroupMessage) -> Fut,
        Fut: Future<Output = Result<tonic::Response<GroupMessage>, tonic::Status>>,
    {
        let payload = encode(req).map_err(|e| self.network(e))?;
        let client = self
            .peers
            .raft_client(&self.addr)
            .map_err(|e| self.unreachable(e))?;
        let msg = GroupMessage {
            group_id: self.group,
            payload,
            target_node: Some(self.target),
            target_incarnation: self.peers.incarnations.get(self.target),
        };
        let resp = tokio::time::timeout(ttl, f(client, msg))
            .await
            .map_err(|_| self.unreachable("timed out"))?
            .map_err(|s| self.status_err(s))?;
        decode(&resp.into_inner().payload).map_err(|e| self.network(e))
    }
}

impl<C> RaftNetworkV2<C> for GroupClient<C>
where
    C: RaftTypeConfig<NodeId = NodeId, Node = BasicNode>,
{
    type SnapshotData = SnapshotData;

    async fn append_entries(
        &mut self,
        rpc: AppendEntriesRequest<C>,
        option: RPCOption,
    ) -> Result<AppendEntriesResponse<C>, RPCError<C>> {
        self.call(&rpc, option.hard_ttl(), |mut c, m| async move {
            c.append_entries(m).await
        })
        .await
    }

    async fn vote(
        &mut self,
        rpc: VoteRequest<C>,
        option: RPCOption,
    ) -> Result<VoteResponse<C>, RPCError<C>> {
        self.call(&rpc, option.hard_ttl(), |mut c, m| async move {
            c.vote(m).await
        })
        .await
    }

    async fn pre_vote(
        &mut self,
        rpc: VoteRequest<C>,
        option: RPCOption,
    ) -> Result<VoteResponse<C>, RPCError<C>> {
        self.call(&rpc, option.hard_ttl(), |mut c, m| async move {
            c.pre_vote(m).await
        })
        .await
    }

    async fn full_snapshot(
        &mut self,
        vote: VoteOf<C>,
        snapshot: SnapshotOf<C, SnapshotData>,
        cancel: impl Future<Output = ReplicationClosed> + OptionalSend + 'static,
        option: RPCOption,
    ) -> Result<SnapshotResponse<C>, StreamingError<C>> {
        let header = encode(&(vote, snapshot.meta.clone()))
            .map_err(|e| StreamingError::from(self.network(e)))?;
        let group = self.group;
        // The first chunk carries the header, the last one `last = true`: a receiver that
        // sees the stream end without it discards what it got. Chunks are pulled from the
        // payload as the transport sends them, so at most a few are in memory.
        let first = SnapshotChunk {
            group_id: group,
            header,
            data: Vec::new(),
            target_node: Some(self.target),
            target_incarnation: self.peers.incarnations.get(self.target),
            last: false,
        };
        let body = futures::stream::unfold(Some(snapshot.snapshot), move |data| async move {
            let mut data = data?;
            match data.next_chunk().await {
                Ok(Some(piece)) => Some((
                    SnapshotChunk {
                        group_id: group,
                        header: Vec::new(),
                        data: piece,
                        last: false,
                        target_node: None,
                        target_incarnation: None,
                    },
                    Some(data),
                )),
                Ok(None) => Some((
                    SnapshotChunk {
                        group_id: group,
                        header: Vec::new(),
                        data: Vec::new(),
                        last: true,
                        target_node: None,
                        target_incarnation: None,
                    },
                    None,
                )),
                Err(e) => {
                    // Ends the stream without the last marker: the receiver drops it.
                    tracing::warn!(group, error = %e, "snapshot payload failed");
                    None
                }
            }
        });
        let chunks = futures::StreamExt::chain(futures::stream::iter([first]), body);
        let mut client = self
            .peers
            .raft_client(&self.addr)
            .map_err(|e| StreamingError::from(self.unreachable(e)))?;
        let send = client.install_snapshot(chunks);
        // A shard snapshot carries all retained records: allow for large transfers.
        let ttl = option.hard_ttl().max(SNAPSHOT_TTL);
        tokio::select! {
            closed = cancel => Err(StreamingError::Closed(closed)),
            res = tokio::time::timeout(ttl, send) => {
                let resp = res
                    .map_err(|_| StreamingError::from(self.unreachable("snapshot timed out")))?
                    .map_err(|s| StreamingError::from(self.status_err(s)))?;
                decode(&resp.into_inner().payload).map_err(|e| StreamingError::from(self.network(e)))
            }
        }
    }

    async fn transfer_leader(
        &mut self,
        req: TransferLeaderRequest<C>,
        option: RPCOption,
    ) -> Result<TransferLeaderResponse<C>, RPCError<C>> {
        self.call(&req, option.hard_ttl(), |mut c, m| async move {
            c.transfer_leader(m).await
        })
        .await
    }

    fn backoff(&self) -> Option<Backoff> {
        Some(Backoff::new(std::iter::repeat(Duration::from_millis(200))))
    }
}
