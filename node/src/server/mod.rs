//! The node server: configuration, bootstrap of one node, the admin endpoints, draining and
//! the local development cluster.

pub mod admin;
pub mod config;
pub mod decommission;
pub mod dev;
pub mod drain;
pub mod node;
pub mod rebalance;
