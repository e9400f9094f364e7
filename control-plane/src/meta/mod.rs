//! The control-plane metadata group (group 0): streams, shards and their hash ranges,
//! placement of shard replicas, the node registry and cluster secrets.
//!
//! * [`state`]: the pure state machine core — commands in, new state and a response out.
//! * [`store`]: its openraft adapter, persisted in the node's RocksDB, publishing every new
//!   state on a watch channel (the node's shard map).
//! * [`autoscale`]: the on-demand autoscaler's pure planner.
//! * [`handle`]: proposes commands through the current meta leader, from any node.
//! * [`membership`]: node self-registration and non-voting members beyond the initial voters.
//! * [`mode`]: capacity-mode switches (UpdateStreamMode) and their rolling 24 h limit.
//! * [`moves`]: replica moves between nodes and node decommissioning.
//! * [`rebalance`]: the rebalancer's pure planner (existing replicas onto new nodes).

pub mod autoscale;
pub mod consumers;
pub mod handle;
pub mod membership;
pub mod mode;
pub mod moves;
pub mod rebalance;
pub mod replace;
pub mod reshard;
pub mod settings;
pub mod state;
pub mod store;
#[cfg(test)]
pub(crate) mod testing;

pub use handle::{MetaHandle, ProposeError};
pub use state::{MetaCommand, MetaError, MetaResponse, MetaState};
pub use store::{MetaStore, MetaView};

openraft::declare_raft_types!(
    /// Type config of the metadata group.
    pub MetaTypeConfig:
        D = MetaCommand,
        R = MetaResponse,
        NodeId = u64,
        Node = openraft::BasicNode,
);

/// The metadata group's Raft handle.
pub type MetaRaft = openraft::Raft<MetaTypeConfig, MetaStore>;
