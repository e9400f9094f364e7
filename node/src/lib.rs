//! `spate-node`: everything one Spate node runs besides the replication runtime.
//!
//! * [`shard`]: shard replicas (one Raft group per shard), record store, batching.
//! * [`cluster`]: the API backend over the cluster — routing to shard leaders, PutRecords
//!   fan-out, iterators — plus forwarding and the control loops.
//! * [`api`]: the Kinesis HTTP front door (dispatch, codecs, validation, AWS errors).
//! * [`server`]: configuration, node start/stop, admin endpoints, `spate dev`.

pub mod api;
pub mod cluster;
pub mod server;
pub mod shard;
