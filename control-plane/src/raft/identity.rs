//! A node's identity: its node id and the *incarnation* of its data directory, both stored in
//! the node's RocksDB, and the transport guard built on them.
//!
//! The incarnation is a random 64-bit number drawn the first time a database is created and
//! kept in it for its whole life. A node that loses its disk comes back with an empty
//! database and so with a new incarnation. Raft forbids such a node from answering under its
//! old id: it would have forgotten votes and acknowledged entries (a committed entry could
//! then exist on fewer than a quorum of nodes), and openraft's leader refuses to see a
//! follower's log shrink below what it already matched. So:
//!
//! * every Raft message names its target node and, once the control plane has registered
//!   that node, the target's incarnation ([`PeerIncarnations`], filled from the metadata);
//!   a node refuses a message for another node id or another incarnation ([`LocalIdentity::
//!   check`]) and the sender sees the node as unreachable;
//! * a node starting on an empty disk asks its peers what they know of its configured id
//!   (`meta::replace`) and, when that id belonged to a node that had registered a data
//!   directory, joins as a *new* node id that replaces it; the old id is decommissioned and
//!   its replicas are rebuilt on other nodes by Raft membership changes.
//!
//! The identity lives in the database itself (not in a file beside it), so deleting the
//! database directory alone can never leave a stale identity behind.

use std::collections::HashMap;
use std::sync::{Arc, OnceLock, RwLock};

use rand::RngCore;
use rocksdb::{IteratorMode, DB};

use super::db::{group_prefix, CF_RAFT_LOG, CF_RAFT_STATE};
use super::{NodeId, META_GROUP};

const KEY_INCARNATION: &[u8] = b"spate/identity/incarnation";
const KEY_NODE_ID: &[u8] = b"spate/identity/node_id";

/// Errors reading or writing the stored identity.
#[derive(Debug, thiserror::Error)]
pub enum IdentityError {
    #[error("rocksdb: {0}")]
    Db(#[from] rocksdb::Error),
    #[error("stored identity key {0:?} is corrupt")]
    Corrupt(&'static str),
}

/// A node's resolved identity.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct NodeIdentity {
    pub node_id: NodeId,
    pub incarnation: u64,
}

fn read_u64(db: &DB, key: &'static [u8]) -> Result<Option<u64>, IdentityError> {
    match db.get(key)? {
        None => Ok(None),
        Some(v) => {
            let bytes: [u8; 8] = v
                .as_slice()
                .try_into()
                .map_err(|_| IdentityError::Corrupt(std::str::from_utf8(key).unwrap_or("?")))?;
            Ok(Some(u64::from_be_bytes(bytes)))
        }
    }
}

fn write_u64(db: &DB, key: &[u8], v: u64) -> Result<(), IdentityError> {
    let mut opts = rocksdb::WriteOptions::default();
    opts.set_sync(true);
    db.put_opt(key, v.to_be_bytes(), &opts)?;
    Ok(())
}

/// The database's incarnation, drawn and stored (synced) on first use. Never zero.
pub fn incarnation(db: &DB) -> Result<u64, IdentityError> {
    if let Some(v) = read_u64(db, KEY_INCARNATION)? {
        return Ok(v);
    }
    let v = rand::thread_rng().next_u64().max(1);
    write_u64(db, KEY_INCARNATION, v)?;
    Ok(v)
}

/// The node id stored in the database, if it has one.
pub fn stored_node_id(db: &DB) -> Result<Option<NodeId>, IdentityError> {
    read_u64(db, KEY_NODE_ID)
}

/// Stores the node id (synced). Done once, when the identity is resolved.
pub fn store_node_id(db: &DB, id: NodeId) -> Result<(), IdentityError> {
    write_u64(db, KEY_NODE_ID, id)
}

/// Whether the database holds any state of the metadata group (a vote or a log entry): the
/// node has been part of a cluster. A database from before identities were stored has such
/// state but no stored node id.
pub fn has_meta_state(db: &DB) -> bool {
    let prefix = group_prefix(META_GROUP);
    [CF_RAFT_STATE, CF_RAFT_LOG].iter().any(|name| {
        db.cf_handle(name).is_some_and(|cf| {
            db.iterator_cf(cf, IteratorMode::From(&prefix, rocksdb::Direction::Forward))
                .next()
                .and_then(|r| r.ok())
                .is_some_and(|(k, _)| k.starts_with(&prefix))
        })
    })
}

/// Why a Raft message was refused.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum Misdirected {
    #[error("this node has not resolved its identity yet")]
    Unresolved,
    #[error("message for node {target}, this is node {me}")]
    WrongNode { target: NodeId, me: NodeId },
    #[error(
        "message for incarnation {target:#x} of node {node}, this is incarnation {me:#x} (the node lost its data and must rejoin as a new node)"
    )]
    WrongIncarnation { node: NodeId, target: u64, me: u64 },
}

/// This node's identity as seen by its transport server; set once it is resolved.
#[derive(Default)]
pub struct LocalIdentity {
    cell: OnceLock<NodeIdentity>,
}

impl LocalIdentity {
    pub fn new() -> Arc<Self> {
        Arc::new(Self::default())
    }

    /// Sets the identity (the first call wins).
    pub fn set(&self, id: NodeIdentity) {
        let _ = self.cell.set(id);
    }

    pub fn get(&self) -> Option<NodeIdentity> {
        self.cell.get().copied()
    }

    /// Accepts a Raft message addressed to `target` / `incarnation` (absent fields are not
    /// checked: a sender that does not know the incarnation yet, an older peer).
    pub fn check(
        &self,
        target: Option<NodeId>,
        incarnation: Option<u64>,
    ) -> Result<(), Misdirected> {
        let me = self.get().ok_or(Misdirected::Unresolved)?;
        if let Some(t) = target {
            if t != me.node_id {
                return Err(Misdirected::WrongNode {
                    target: t,
                    me: me.node_id,
                });
            }
        }
        if let Some(i) = incarnation {
            if i != me.incarnation {
                return Err(Misdirected::WrongIncarnation {
                    node: me.node_id,
                    target: i,
                    me: me.incarnation,
                });
            }
        }
        Ok(())
    }
}

/// The registered incarnation of every node, as this node's metadata shows it; read by the
/// Raft clients to address their messages.
#[derive(Default)]
pub struct PeerIncarnations {
    map: RwLock<HashMap<NodeId, u64>>,
}

impl PeerIncarnations {
    /// Replaces the table.
    pub fn replace(&self, map: HashMap<NodeId, u64>) {
        *self.map.write().unwrap_or_else(|p| p.into_inner()) = map;
    }

    pub fn get(&self, node: NodeId) -> Option<u64> {
        self.map
            .read()
            .unwrap_or_else(|p| p.into_inner())
            .get(&node)
            .copied()
    }
}

/// `Identify` request: what does the answering node know of `node`?
#[derive(Debug, Clone, serde::Serialize, serde::Deserialize)]
pub struct IdentifyRequest {
    pub node: NodeId,
}

/// `Identify` answer.
#[derive(Debug, Clone, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
pub enum IdentifyReply {
    /// The answering node has never been part of a cluster (no metadata-group state).
    Fresh,
    /// It has been, but is still starting and cannot look the node up yet.
    Starting,
    /// What its metadata shows of the node: `None` when the id is not registered.
    Member { known: Option<KnownNode> },
}

/// A registered node as `Identify` reports it.
#[derive(Debug, Clone, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
pub struct KnownNode {
    /// The incarnation the node registered; `None` when it is only listed by the bootstrap
    /// (it has never started with a data directory of its own yet).
    pub incarnation: Option<u64>,
    pub decommissioning: bool,
}

#[cfg(test)]
mod tests {
    use super::*;

    fn ident(node_id: u64, incarnation: u64) -> LocalIdentity {
        let l = LocalIdentity::default();
        l.set(NodeIdentity {
            node_id,
            incarnation,
        });
        l
    }

    #[test]
    fn check_refuses_other_nodes_and_incarnations() {
        assert_eq!(
            LocalIdentity::default().check(Some(1), None),
            Err(Misdirected::Unresolved)
        );
        let l = ident(1, 7);
        assert_eq!(l.check(None, None), Ok(()));
        assert_eq!(l.check(Some(1), Some(7)), Ok(()));
        assert_eq!(l.check(Some(1), None), Ok(()));
        assert!(matches!(
            l.check(Some(2), Some(7)),
            Err(Misdirected::WrongNode { target: 2, me: 1 })
        ));
        assert!(matches!(
            l.check(Some(1), Some(8)),
            Err(Misdirected::WrongIncarnation { .. })
        ));
    }

    #[test]
    fn identity_survives_reopen_and_a_new_database_gets_a_new_one() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("db");
        let (inc, has_state) = {
            let db = super::super::db::open(&path).unwrap();
            assert_eq!(stored_node_id(&db).unwrap(), None);
            let inc = incarnation(&db).unwrap();
            store_node_id(&db, 4).unwrap();
            (inc, has_meta_state(&db))
        };
        assert!(!has_state, "a new database holds no metadata-group state");
        {
            let db = super::super::db::open(&path).unwrap();
            assert_eq!(incarnation(&db).unwrap(), inc);
            assert_eq!(stored_node_id(&db).unwrap(), Some(4));
        }
        std::fs::remove_dir_all(&path).unwrap();
        let db = super::super::db::open(&path).unwrap();
        assert_ne!(incarnation(&db).unwrap(), inc);
        assert_eq!(stored_node_id(&db).unwrap(), None);
    }
}
