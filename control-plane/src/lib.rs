//! `spate-control-plane`: the replication machinery every Spate node runs.
//!
//! * [`raft`]: the multi-group openraft runtime — one RocksDB per node holding the logs of
//!   every Raft group (keys prefixed by group id) with a node-wide group-commit flusher, and a
//!   tonic transport with one HTTP/2 channel per peer whose every RPC names its group.
//! * [`meta`]: the control-plane metadata group (group 0): streams, shards with their hash
//!   ranges, placement of shard replicas across zones, the node registry and cluster secrets;
//!   a pure state machine core plus its openraft adapter, and a handle that proposes commands
//!   through the current meta leader.

pub mod meta;
pub mod raft;
