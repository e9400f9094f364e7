//! Replacing a node that lost its disk.
//!
//! A node's identity is its node id plus the incarnation of its database
//! (`raft::identity`). When a node starts on an empty database it must find out whether its
//! configured id is new or belonged to a node that lost its data ([`resolve`]):
//!
//! 1. it asks every other configured peer (`Identify`) what their metadata shows of the id;
//! 2. when any peer shows the id registered with a data directory (an incarnation) or being
//!    decommissioned, the id is taken: the node proposes [`MetaCommand::ReplaceNode`]
//!    through the peers; the metadata leader admits it under a new id and marks the old id
//!    decommissioning, so the control loops move the old id's shard replicas (onto the
//!    replacement first: it is in the same zone) and promote the replacement into the
//!    control plane's voters in place of the old id (`membership`);
//! 3. when a peer is a cluster member and shows the id unregistered or only listed by the
//!    bootstrap, or when every peer is as new as this node (a new cluster), it keeps its
//!    configured id;
//! 4. otherwise (peers unreachable or still starting) it asks again.
//!
//! The id is stored in the database before any Raft group starts, so a restart never asks
//! again. [`MetaState::register_node`] refuses to change a registered incarnation: if a node
//! ever came up under its old id without its data, the control plane would not vouch for it,
//! and the transport already refuses every Raft message addressed to the old incarnation.

use std::time::Duration;

use rocksdb::DB;
use spate_proto::grpc::GroupMessage;

use super::state::{MetaCommand, MetaError, MetaResponse, MetaState, NodeInfo};
use crate::raft::codec::{decode, encode};
use crate::raft::identity::{
    has_meta_state, incarnation, store_node_id, stored_node_id, IdentifyReply, IdentifyRequest,
    IdentityError, KnownNode, NodeIdentity,
};
use crate::raft::network::PeerChannels;
use crate::raft::{NodeId, META_GROUP};

/// Pause between rounds of [`resolve`].
const RETRY: Duration = Duration::from_secs(1);
/// Deadline of one `Identify` or forwarded proposal.
const CALL_TIMEOUT: Duration = Duration::from_secs(3);

impl MetaState {
    /// `RegisterNode`: inserts or updates the entry unless it would change the incarnation
    /// of a node that has registered one.
    pub(crate) fn register_node(&mut self, node: &NodeInfo) -> MetaResponse {
        if let Some(old) = self.nodes.get(&node.id) {
            if old.incarnation.is_some() && old.incarnation != node.incarnation {
                return MetaResponse::Failed(MetaError::Invalid(format!(
                    "node {} is registered with another data directory: a node that lost its \
                     data must rejoin as a new node (start it on an empty data directory)",
                    node.id
                )));
            }
        }
        self.nodes.insert(node.id, node.clone());
        self.next_node_id = self.next_node_id.max(node.id + 1);
        self.epoch += 1;
        MetaResponse::Done
    }

    /// `ReplaceNode`: admits a node with incarnation `inc` under a new id in place of `old`
    /// (idempotent: the same incarnation gets the same id) and decommissions `old`. `old` is
    /// the starting node's configured id; if it was replaced before, the node that lost its
    /// disk now is the last in that chain of replacements (a pod whose volume is lost twice:
    /// 1 → 4, then 4 → 5), and that one is decommissioned.
    pub(crate) fn replace_node(
        &mut self,
        old: u64,
        zone: &str,
        peer_addr: &str,
        inc: u64,
    ) -> MetaResponse {
        if self.secrets.is_none() {
            return MetaResponse::Failed(MetaError::NotBootstrapped);
        }
        if let Some(n) = self.nodes.values().find(|n| n.incarnation == Some(inc)) {
            return MetaResponse::NodeAdmitted { id: n.id };
        }
        if !self.nodes.contains_key(&old) {
            return MetaResponse::Failed(MetaError::Invalid(format!(
                "node {old} is not registered"
            )));
        }
        let mut old = old;
        let mut hops = 0;
        while let Some(next) = self.replaced_by.get(&old) {
            if !self.nodes.contains_key(next) || hops > self.replaced_by.len() {
                break; // the successor was forgotten: replace the last one still known
            }
            old = *next;
            hops += 1;
        }
        let next_free = self.nodes.keys().next_back().map_or(0, |k| k + 1);
        let id = self.next_node_id.max(next_free);
        self.next_node_id = id + 1;
        self.nodes.insert(
            id,
            NodeInfo {
                id,
                zone: zone.to_string(),
                peer_addr: peer_addr.to_string(),
                incarnation: Some(inc),
            },
        );
        self.decommissioning.insert(old);
        self.replaced_by.insert(old, id);
        self.epoch += 1;
        MetaResponse::NodeAdmitted { id }
    }

    /// What this metadata shows of `node`, for `Identify`.
    pub fn identify(&self, node: NodeId) -> IdentifyReply {
        IdentifyReply::Member {
            known: self.nodes.get(&node).map(|n| KnownNode {
                incarnation: n.incarnation,
                decommissioning: self.decommissioning.contains(&node),
            }),
        }
    }
}

/// What a starting node knows of itself and its peers.
#[derive(Debug, Clone)]
pub struct Candidate {
    /// The configured node id.
    pub configured_id: NodeId,
    pub zone: String,
    /// The peer address other nodes reach this node at.
    pub peer_addr: String,
    /// The configured peers (id, peer address); this node's own entry is skipped.
    pub peers: Vec<(NodeId, String)>,
}

/// Why [`resolve`] failed.
#[derive(Debug, thiserror::Error)]
pub enum ResolveError {
    #[error(transparent)]
    Identity(#[from] IdentityError),
    #[error("the control plane refused to admit this node in place of node {old}: {reason}")]
    Refused { old: NodeId, reason: String },
}

/// The decision of one round of answers.
#[derive(Debug, PartialEq, Eq)]
enum Decision {
    KeepConfigured,
    Replace,
    AskAgain,
}

fn decide(asked: usize, answers: &[IdentifyReply], incarnation: u64) -> Decision {
    let mut member = false;
    for a in answers {
        if let IdentifyReply::Member { known } = a {
            member = true;
            if let Some(k) = known {
                if k.decommissioning || k.incarnation.is_some_and(|i| i != incarnation) {
                    return Decision::Replace;
                }
            }
        }
    }
    let all_fresh = answers.len() == asked && answers.iter().all(|a| *a == IdentifyReply::Fresh);
    if member || all_fresh {
        Decision::KeepConfigured
    } else {
        Decision::AskAgain
    }
}

async fn identify(peers: &PeerChannels, addr: &str, node: NodeId) -> Result<IdentifyReply, String> {
    let payload = encode(&IdentifyRequest { node }).map_err(|e| e.to_string())?;
    let mut client = peers.forward_client(addr).map_err(|e| e.to_string())?;
    let call = client.identify(GroupMessage {
        group_id: META_GROUP,
        payload,
        target_node: None,
        target_incarnation: None,
    });
    let resp = tokio::time::timeout(CALL_TIMEOUT, call)
        .await
        .map_err(|_| "timed out".to_string())?
        .map_err(|s| s.message().to_string())?;
    decode(&resp.into_inner().payload).map_err(|e| e.to_string())
}

/// Resolves this node's identity (see the module docs): the stored one, or the configured
/// id, or a new id replacing the configured one. Stores the result in `db`. Waits (asking
/// every second) while the peers cannot answer.
pub async fn resolve(
    db: &DB,
    peers: &PeerChannels,
    me: &Candidate,
) -> Result<NodeIdentity, ResolveError> {
    let inc = incarnation(db)?;
    let keep = |id: NodeId| -> Result<NodeIdentity, ResolveError> {
        store_node_id(db, id)?;
        Ok(NodeIdentity {
            node_id: id,
            incarnation: inc,
        })
    };
    if let Some(id) = stored_node_id(db)? {
        return Ok(NodeIdentity {
            node_id: id,
            incarnation: inc,
        });
    }
    if has_meta_state(db) {
        // A database written before identities were stored: it is this node's own.
        return keep(me.configured_id);
    }
    let others: Vec<&String> = me
        .peers
        .iter()
        .filter(|(id, addr)| *id != me.configured_id && *addr != me.peer_addr)
        .map(|(_, addr)| addr)
        .collect();
    if others.is_empty() {
        return keep(me.configured_id);
    }
    let mut round = 0u64;
    loop {
        let mut answers = Vec::new();
        for addr in &others {
            match identify(peers, addr, me.configured_id).await {
                Ok(a) => answers.push(a),
                Err(e) => tracing::debug!(peer = %addr, error = %e, "Identify"),
            }
        }
        match decide(others.len(), &answers, inc) {
            Decision::KeepConfigured => return keep(me.configured_id),
            Decision::Replace => {
                let id = admit_replacement(peers, &others, me, inc).await?;
                tracing::warn!(
                    old = me.configured_id,
                    new = id,
                    "this node starts on an empty disk but node {} had data: joining as node {} in its place; node {} is decommissioned and its replicas are rebuilt",
                    me.configured_id,
                    id,
                    me.configured_id
                );
                return keep(id);
            }
            Decision::AskAgain => {
                if round.is_multiple_of(10) {
                    tracing::info!(
                        answered = answers.len(),
                        asked = others.len(),
                        "empty data directory: waiting for the peers to tell whether node {} is new",
                        me.configured_id
                    );
                }
            }
        }
        round += 1;
        tokio::time::sleep(RETRY).await;
    }
}

/// Proposes `ReplaceNode` through the peers until the metadata leader applies it.
async fn admit_replacement(
    peers: &PeerChannels,
    addrs: &[&String],
    me: &Candidate,
    inc: u64,
) -> Result<NodeId, ResolveError> {
    let cmd = MetaCommand::ReplaceNode {
        old: me.configured_id,
        zone: me.zone.clone(),
        peer_addr: me.peer_addr.clone(),
        incarnation: inc,
    };
    let mut round = 0u64;
    loop {
        for addr in addrs {
            match super::handle::forward_meta(peers, addr, &cmd).await {
                Ok((MetaResponse::NodeAdmitted { id }, _)) => return Ok(id),
                Ok((MetaResponse::Failed(MetaError::NotBootstrapped), _)) => {}
                Ok((MetaResponse::Failed(e), _)) => {
                    return Err(ResolveError::Refused {
                        old: me.configured_id,
                        reason: e.to_string(),
                    })
                }
                Ok((other, _)) => tracing::warn!(?other, "unexpected answer to ReplaceNode"),
                Err(e) => tracing::debug!(peer = %addr, error = %e, "ReplaceNode"),
            }
        }
        if round.is_multiple_of(10) {
            tracing::info!(
                old = me.configured_id,
                "waiting for the control-plane leader to admit this node as a replacement"
            );
        }
        round += 1;
        tokio::time::sleep(RETRY).await;
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::meta::testing::bootstrapped;

    fn known(incarnation: Option<u64>, decommissioning: bool) -> IdentifyReply {
        IdentifyReply::Member {
            known: Some(KnownNode {
                incarnation,
                decommissioning,
            }),
        }
    }

    #[test]
    fn decisions() {
        use Decision::*;
        let fresh = IdentifyReply::Fresh;
        // A new cluster: every peer answered and none has been in a cluster.
        assert_eq!(
            decide(2, &[fresh.clone(), fresh.clone()], 5),
            KeepConfigured
        );
        // Not everyone answered yet, and nobody is a member: ask again.
        assert_eq!(decide(2, std::slice::from_ref(&fresh), 5), AskAgain);
        assert_eq!(
            decide(2, &[IdentifyReply::Starting, fresh.clone()], 5),
            AskAgain
        );
        // Listed by the bootstrap only (first start of an initial voter), or unknown (a
        // new scale-out node): keep the id.
        assert_eq!(decide(2, &[known(None, false)], 5), KeepConfigured);
        assert_eq!(
            decide(2, &[IdentifyReply::Member { known: None }], 5),
            KeepConfigured
        );
        // The id had a data directory: replace, whatever the other answers say.
        assert_eq!(
            decide(2, &[known(None, false), known(Some(9), false)], 5),
            Replace
        );
        assert_eq!(decide(2, &[known(None, true)], 5), Replace);
        // Our own incarnation (registered just before a crash): keep.
        assert_eq!(decide(2, &[known(Some(5), false)], 5), KeepConfigured);
    }

    fn info(id: u64, inc: Option<u64>) -> NodeInfo {
        NodeInfo {
            id,
            zone: format!("az-{id}"),
            peer_addr: format!("n{id}:7400"),
            incarnation: inc,
        }
    }

    #[test]
    fn register_node_never_changes_a_registered_incarnation() {
        let mut st = bootstrapped(&[(0, "az-0"), (1, "az-1"), (2, "az-2")]);
        // Bootstrap entries have no incarnation: the first registration sets it.
        assert_eq!(
            st.apply(&MetaCommand::RegisterNode {
                node: info(1, Some(11))
            }),
            MetaResponse::Done
        );
        // Same incarnation, new address: fine.
        let mut moved = info(1, Some(11));
        moved.peer_addr = "elsewhere:7400".into();
        assert_eq!(
            st.apply(&MetaCommand::RegisterNode { node: moved }),
            MetaResponse::Done
        );
        // Another incarnation under the same id: refused, entry unchanged.
        let r = st.apply(&MetaCommand::RegisterNode {
            node: info(1, Some(12)),
        });
        assert!(
            matches!(r, MetaResponse::Failed(MetaError::Invalid(_))),
            "{r:?}"
        );
        assert_eq!(st.nodes[&1].incarnation, Some(11));
        assert_eq!(st.identify(1), known(Some(11), false));
        assert_eq!(st.identify(7), IdentifyReply::Member { known: None });
    }

    #[test]
    fn replace_node_admits_a_new_id_once_and_decommissions_the_old() {
        let mut st = bootstrapped(&[(0, "az-0"), (1, "az-1"), (2, "az-2")]);
        st.apply(&MetaCommand::RegisterNode {
            node: info(0, Some(10)),
        });
        let cmd = MetaCommand::ReplaceNode {
            old: 0,
            zone: "az-0".into(),
            peer_addr: "n0:7400".into(),
            incarnation: 99,
        };
        assert_eq!(st.apply(&cmd), MetaResponse::NodeAdmitted { id: 3 });
        assert!(st.decommissioning.contains(&0));
        assert_eq!(st.nodes[&3].incarnation, Some(99));
        assert_eq!(st.nodes[&3].zone, "az-0");
        // Retried (the answer was lost): same id, nothing new.
        assert_eq!(st.apply(&cmd), MetaResponse::NodeAdmitted { id: 3 });
        assert_eq!(st.nodes.len(), 4);
        assert_eq!(st.identify(0), known(Some(10), true));
        // The replacement loses its disk too. It starts with the same configuration, so it
        // names its configured id 0 again: the node replaced now is 3, the last of the chain.
        let again = MetaCommand::ReplaceNode {
            old: 0,
            zone: "az-0".into(),
            peer_addr: "n0:7400".into(),
            incarnation: 100,
        };
        assert_eq!(st.apply(&again), MetaResponse::NodeAdmitted { id: 4 });
        assert!(st.decommissioning.contains(&3), "{:?}", st.decommissioning);
        // Ids are never reused, even after the highest one is forgotten; a forgotten
        // successor ends the chain at the last node still registered.
        st.nodes.remove(&4);
        let third = MetaCommand::ReplaceNode {
            old: 0,
            zone: "az-0".into(),
            peer_addr: "n0:7400".into(),
            incarnation: 101,
        };
        assert_eq!(st.apply(&third), MetaResponse::NodeAdmitted { id: 5 });
        assert_eq!(st.replaced_by.get(&3), Some(&5));
        // Unknown old id.
        let unknown = MetaCommand::ReplaceNode {
            old: 42,
            zone: "az-0".into(),
            peer_addr: "x:1".into(),
            incarnation: 102,
        };
        assert!(matches!(st.apply(&unknown), MetaResponse::Failed(_)));
    }
}
