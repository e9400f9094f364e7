//! Proposes metadata commands from any node: locally when this node leads group 0, otherwise
//! forwarded over gRPC to the leader. Returns only after the answer's entry is applied on
//! this node too, so a node reads its own writes.

use openraft::async_runtime::WatchReceiver;
use std::sync::Arc;
use std::time::{Duration, Instant};

use openraft::errors::{ClientWriteError, RaftError};
use spate_proto::grpc::GroupMessage;
use tokio::sync::watch;

use super::state::{MetaCommand, MetaResponse};
use super::store::MetaView;
use super::MetaRaft;
use crate::raft::codec::{decode, encode};
use crate::raft::network::PeerChannels;
use crate::raft::{NodeId, META_GROUP};

/// How long a proposal may wait for a leader before giving up.
const PROPOSE_DEADLINE: Duration = Duration::from_secs(10);

#[derive(Debug, thiserror::Error)]
pub enum ProposeError {
    #[error("the control plane has no leader right now; retry")]
    NoLeader,
    #[error("control plane error: {0}")]
    Internal(String),
}

/// A node's handle on the metadata group.
#[derive(Clone)]
pub struct MetaHandle {
    raft: MetaRaft,
    view: watch::Receiver<MetaView>,
    peers: Arc<PeerChannels>,
}

/// Forwarded answer: the response and the index of the entry that produced it.
pub type ForwardedMeta = Result<(MetaResponse, u64), String>;

impl MetaHandle {
    pub fn new(raft: MetaRaft, view: watch::Receiver<MetaView>, peers: Arc<PeerChannels>) -> Self {
        Self { raft, view, peers }
    }

    pub fn raft(&self) -> &MetaRaft {
        &self.raft
    }

    /// The latest applied metadata on this node.
    pub fn view(&self) -> MetaView {
        self.view.borrow().clone()
    }

    /// A receiver of every new applied metadata state (the shard-map watch).
    pub fn subscribe(&self) -> watch::Receiver<MetaView> {
        self.view.clone()
    }

    /// The current leader of group 0 as this node knows it, with its peer address.
    pub fn leader(&self) -> Option<(NodeId, String)> {
        let m = self.raft.metrics().borrow_watched().clone();
        let id = m.current_leader?;
        let addr = m.membership_config.membership().get_node(&id)?.addr.clone();
        Some((id, addr))
    }

    /// Proposes `cmd` on the local replica, which must be the leader. Used by the forwarding
    /// handler; returns the response and its log index.
    pub async fn propose_local(&self, cmd: MetaCommand) -> ForwardedMeta {
        match self.raft.client_write(cmd).await {
            Ok(resp) => Ok((resp.data, resp.log_id.index)),
            Err(e) => Err(e.to_string()),
        }
    }

    /// Proposes `cmd` through the current leader and waits until it is applied locally.
    pub async fn propose(&self, cmd: MetaCommand) -> Result<MetaResponse, ProposeError> {
        let deadline = Instant::now() + PROPOSE_DEADLINE;
        loop {
            match self.raft.client_write(cmd.clone()).await {
                Ok(resp) => {
                    self.wait_applied(resp.log_id.index, deadline).await;
                    return Ok(resp.data);
                }
                Err(RaftError::APIError(ClientWriteError::ForwardToLeader(fwd))) => {
                    if let (Some(_), Some(node)) = (fwd.leader_id, fwd.leader_node.as_ref()) {
                        match self.forward(&node.addr, &cmd).await {
                            Ok((resp, index)) => {
                                self.wait_applied(index, deadline).await;
                                return Ok(resp);
                            }
                            Err(e) => {
                                tracing::debug!(error = %e, "forwarding to the meta leader failed")
                            }
                        }
                    }
                }
                Err(e) => return Err(ProposeError::Internal(e.to_string())),
            }
            if Instant::now() >= deadline {
                return Err(ProposeError::NoLeader);
            }
            tokio::time::sleep(Duration::from_millis(100)).await;
        }
    }

    /// Forwards `cmd` to each of `addrs` in turn until one (the metadata leader) applies it.
    /// For a node that is not a member of the metadata group yet and so knows no leader (see
    /// `membership::register`). Does not wait for the entry locally.
    pub async fn propose_via(
        &self,
        addrs: &[String],
        cmd: &MetaCommand,
    ) -> Result<MetaResponse, ProposeError> {
        let mut last = String::from("no peer address configured");
        for addr in addrs {
            match self.forward(addr, cmd).await {
                Ok((resp, _)) => return Ok(resp),
                Err(e) => last = format!("{addr}: {e}"),
            }
        }
        Err(ProposeError::Internal(last))
    }

    async fn forward(&self, addr: &str, cmd: &MetaCommand) -> Result<(MetaResponse, u64), String> {
        forward_meta(&self.peers, addr, cmd).await
    }

    /// Waits (bounded) until this node has applied `index`.
    pub async fn wait_applied(&self, index: u64, deadline: Instant) {
        let mut rx = self.view.clone();
        let wait = rx.wait_for(|v| v.applied_index >= index);
        let _ =
            tokio::time::timeout(deadline.saturating_duration_since(Instant::now()), wait).await;
    }
}

/// Forwards `cmd` to the node at `addr`, which applies it if it leads the metadata group;
/// answers the response and the index of its entry.
pub async fn forward_meta(
    peers: &PeerChannels,
    addr: &str,
    cmd: &MetaCommand,
) -> Result<(MetaResponse, u64), String> {
    let payload = encode(cmd).map_err(|e| e.to_string())?;
    let mut client = peers.forward_client(addr).map_err(|e| e.to_string())?;
    let call = client.meta(GroupMessage {
        group_id: META_GROUP,
        payload,
        target_node: None,
        target_incarnation: None,
    });
    let resp = tokio::time::timeout(Duration::from_secs(5), call)
        .await
        .map_err(|_| "timed out".to_string())?
        .map_err(|s| s.message().to_string())?;
    let answer: ForwardedMeta = decode(&resp.into_inner().payload).map_err(|e| e.to_string())?;
    answer
}
