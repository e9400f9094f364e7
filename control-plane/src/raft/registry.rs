//! The node's table of Raft groups it hosts, and the object-safe [`GroupEndpoint`] through
//! which the transport service hands a group its messages without knowing its type config.

use std::collections::HashMap;
use std::path::PathBuf;
use std::sync::{Arc, RwLock};

use futures::future::BoxFuture;
use openraft::alias::{SnapshotMetaOf, VoteOf};
use openraft::storage::{RaftStateMachine, Snapshot};
use openraft::{Raft, RaftTypeConfig};

use super::codec::{decode, encode};
use super::{GroupId, SnapshotData};

/// What the transport can do with one hosted group. Payloads are postcard-encoded
/// openraft messages; errors are gRPC statuses.
pub trait GroupEndpoint: Send + Sync + 'static {
    fn append_entries(
        &self,
        payload: Vec<u8>,
    ) -> BoxFuture<'static, Result<Vec<u8>, tonic::Status>>;
    fn vote(&self, payload: Vec<u8>) -> BoxFuture<'static, Result<Vec<u8>, tonic::Status>>;
    fn pre_vote(&self, payload: Vec<u8>) -> BoxFuture<'static, Result<Vec<u8>, tonic::Status>>;
    fn install_snapshot(
        &self,
        header: Vec<u8>,
        data: SnapshotData,
    ) -> BoxFuture<'static, Result<Vec<u8>, tonic::Status>>;
    fn transfer_leader(
        &self,
        payload: Vec<u8>,
    ) -> BoxFuture<'static, Result<Vec<u8>, tonic::Status>>;
}

fn bad_request(e: impl std::fmt::Display) -> tonic::Status {
    tonic::Status::invalid_argument(format!("undecodable raft message: {e}"))
}

fn unavailable(e: impl std::fmt::Display) -> tonic::Status {
    tonic::Status::unavailable(format!("raft group stopped: {e}"))
}

fn encoded<T: serde::Serialize>(v: &T) -> Result<Vec<u8>, tonic::Status> {
    encode(v).map_err(|e| tonic::Status::internal(e.to_string()))
}

/// Adapts an openraft [`Raft`] handle to [`GroupEndpoint`].
pub struct RaftEndpoint<C: RaftTypeConfig, SM: RaftStateMachine<C>> {
    raft: Raft<C, SM>,
}

impl<C: RaftTypeConfig, SM: RaftStateMachine<C>> RaftEndpoint<C, SM> {
    pub fn new(raft: Raft<C, SM>) -> Arc<Self> {
        Arc::new(Self { raft })
    }
}

impl<C, SM> GroupEndpoint for RaftEndpoint<C, SM>
where
    C: RaftTypeConfig,
    SM: RaftStateMachine<C, SnapshotData = SnapshotData>,
{
    fn append_entries(
        &self,
        payload: Vec<u8>,
    ) -> BoxFuture<'static, Result<Vec<u8>, tonic::Status>> {
        let raft = self.raft.clone();
        Box::pin(async move {
            let req = decode(&payload).map_err(bad_request)?;
            let resp = raft.append_entries(req).await.map_err(unavailable)?;
            encoded(&resp)
        })
    }

    fn vote(&self, payload: Vec<u8>) -> BoxFuture<'static, Result<Vec<u8>, tonic::Status>> {
        let raft = self.raft.clone();
        Box::pin(async move {
            let req = decode(&payload).map_err(bad_request)?;
            let resp = raft.vote(req).await.map_err(unavailable)?;
            encoded(&resp)
        })
    }

    fn pre_vote(&self, payload: Vec<u8>) -> BoxFuture<'static, Result<Vec<u8>, tonic::Status>> {
        let raft = self.raft.clone();
        Box::pin(async move {
            let req = decode(&payload).map_err(bad_request)?;
            let resp = raft.pre_vote(req).await.map_err(unavailable)?;
            encoded(&resp)
        })
    }

    fn install_snapshot(
        &self,
        header: Vec<u8>,
        data: SnapshotData,
    ) -> BoxFuture<'static, Result<Vec<u8>, tonic::Status>> {
        let raft = self.raft.clone();
        Box::pin(async move {
            let (vote, meta): (VoteOf<C>, SnapshotMetaOf<C>) =
                decode(&header).map_err(bad_request)?;
            let snapshot = Snapshot {
                meta,
                snapshot: data,
            };
            let resp = raft
                .install_full_snapshot(vote, snapshot)
                .await
                .map_err(unavailable)?;
            encoded(&resp)
        })
    }

    fn transfer_leader(
        &self,
        payload: Vec<u8>,
    ) -> BoxFuture<'static, Result<Vec<u8>, tonic::Status>> {
        let raft = self.raft.clone();
        Box::pin(async move {
            let req = decode(&payload).map_err(bad_request)?;
            let resp = raft
                .handle_transfer_leader(req)
                .await
                .map_err(unavailable)?;
            encoded(&resp)
        })
    }
}

/// Handles requests forwarded from other nodes (put to a shard leader, a meta command to the
/// meta leader). Implemented by the node; payloads are postcard-encoded by their owners.
pub trait ForwardHandler: Send + Sync + 'static {
    fn shard(
        &self,
        group: GroupId,
        payload: Vec<u8>,
    ) -> BoxFuture<'static, Result<Vec<u8>, tonic::Status>>;
    fn meta(&self, payload: Vec<u8>) -> BoxFuture<'static, Result<Vec<u8>, tonic::Status>>;
    /// What this node's metadata shows of `node` (see [`super::identity`]).
    fn identify(&self, node: super::NodeId) -> super::identity::IdentifyReply;
}

/// The groups this node hosts, by id.
#[derive(Default)]
pub struct GroupRegistry {
    groups: RwLock<HashMap<GroupId, Arc<dyn GroupEndpoint>>>,
    forward: RwLock<Option<Arc<dyn ForwardHandler>>>,
    /// Where received snapshots too large for memory are spooled.
    spool_dir: RwLock<Option<PathBuf>>,
}

impl GroupRegistry {
    pub fn new() -> Arc<Self> {
        Arc::new(Self::default())
    }

    pub fn insert(&self, group: GroupId, endpoint: Arc<dyn GroupEndpoint>) {
        self.groups
            .write()
            .unwrap_or_else(|p| p.into_inner())
            .insert(group, endpoint);
    }

    pub fn remove(&self, group: GroupId) {
        self.groups
            .write()
            .unwrap_or_else(|p| p.into_inner())
            .remove(&group);
    }

    /// Forgets every group and the forward handler (node shutdown).
    pub fn clear(&self) {
        self.groups
            .write()
            .unwrap_or_else(|p| p.into_inner())
            .clear();
        *self.forward.write().unwrap_or_else(|p| p.into_inner()) = None;
    }

    pub fn get(&self, group: GroupId) -> Option<Arc<dyn GroupEndpoint>> {
        self.groups
            .read()
            .unwrap_or_else(|p| p.into_inner())
            .get(&group)
            .cloned()
    }

    pub fn set_forward_handler(&self, handler: Arc<dyn ForwardHandler>) {
        *self.forward.write().unwrap_or_else(|p| p.into_inner()) = Some(handler);
    }

    /// Sets the directory received snapshots are spooled to (default: the system temp dir).
    pub fn set_spool_dir(&self, dir: PathBuf) {
        *self.spool_dir.write().unwrap_or_else(|p| p.into_inner()) = Some(dir);
    }

    /// The directory received snapshots are spooled to.
    pub fn spool_dir(&self) -> PathBuf {
        self.spool_dir
            .read()
            .unwrap_or_else(|p| p.into_inner())
            .clone()
            .unwrap_or_else(std::env::temp_dir)
    }

    pub fn forward_handler(&self) -> Option<Arc<dyn ForwardHandler>> {
        self.forward
            .read()
            .unwrap_or_else(|p| p.into_inner())
            .clone()
    }
}
