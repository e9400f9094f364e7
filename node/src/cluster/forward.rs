//! Serves requests other nodes forward here: shard requests for groups hosted on this node,
//! metadata commands when this node leads the metadata group, and wall-clock samples
//! ([`crate::cluster::clock::CLOCK_GROUP`]).

use std::sync::Arc;

use futures::future::BoxFuture;
use spate_control_plane::meta::handle::ForwardedMeta;
use spate_control_plane::meta::{MetaCommand, MetaHandle};
use spate_control_plane::raft::codec::{decode, encode};
use spate_control_plane::raft::identity::IdentifyReply;
use spate_control_plane::raft::registry::ForwardHandler;
use spate_control_plane::raft::GroupId;

use crate::shard::manager::ShardManager;
use crate::shard::replica::ShardRequest;

pub struct NodeForward {
    pub meta: MetaHandle,
    pub shards: Arc<ShardManager>,
}

fn bad(e: impl std::fmt::Display) -> tonic::Status {
    tonic::Status::invalid_argument(format!("undecodable request: {e}"))
}

impl ForwardHandler for NodeForward {
    fn shard(
        &self,
        group: GroupId,
        payload: Vec<u8>,
    ) -> BoxFuture<'static, Result<Vec<u8>, tonic::Status>> {
        if group == crate::cluster::clock::CLOCK_GROUP {
            return Box::pin(async { crate::cluster::clock::answer_sample() });
        }
        let shards = self.shards.clone();
        Box::pin(async move {
            let req: ShardRequest = decode(&payload).map_err(bad)?;
            let reply = match shards.get(group) {
                Some(replica) => replica.handle(req).await,
                None => {
                    return Err(tonic::Status::not_found(format!(
                        "group {group} is not hosted here"
                    )))
                }
            };
            encode(&reply).map_err(|e| tonic::Status::internal(e.to_string()))
        })
    }

    fn meta(&self, payload: Vec<u8>) -> BoxFuture<'static, Result<Vec<u8>, tonic::Status>> {
        let meta = self.meta.clone();
        Box::pin(async move {
            let cmd: MetaCommand = decode(&payload).map_err(bad)?;
            let answer: ForwardedMeta = meta.propose_local(cmd).await;
            encode(&answer).map_err(|e| tonic::Status::internal(e.to_string()))
        })
    }

    fn identify(&self, node: u64) -> IdentifyReply {
        self.meta.view().state.identify(node)
    }
}
