//! `spate-node`: the Spate server — the Kinesis HTTP API ([`api`]) in front of the
//! replicated shard groups.

pub mod api;
