//! The node server: configuration, bootstrap of one node, the admin endpoints and the
//! local development cluster.

pub mod admin;
pub mod config;
pub mod dev;
pub mod node;
