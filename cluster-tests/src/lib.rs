//! Real-process cluster tests for Spate.
//!
//! This crate deliberately depends on no other workspace crate: it drives the `spate` binary as
//! separate processes over HTTP, exactly as users and operators do.
//!
//! * [`harness`] starts, kills, pauses and restarts `spate` nodes on loopback.
//! * [`client`] is a minimal Kinesis JSON 1.1 client with timeouts ([`types`] holds its wire
//!   shapes); [`retry`] retries transient errors and records every attempt.
//! * [`workload`] runs producers that log every attempt, tailing readers and the final read.
//! * [`history`] checks the resulting history for lost, vanished, duplicated or reordered records.
//! * [`netns`] puts each node in its own network namespace on a private bridge and cuts links
//!   with nftables; [`nemesis`] runs seeded fault schedules (kill, pause, partitions, restart)
//!   and measures failover and unavailability.
//! * [`eventstream`] reads SubscribeToShard event streams (enhanced fan-out).
//! * [`joiner`] starts a node outside the initial voters (scale-out, decommissioning).
//! * [`resharder`] resizes a stream (UpdateShardCount, SplitShard, MergeShards) while the
//!   nemesis runs, checking the lineage after every step.
//! * [`steps`] holds steps the membership scenarios share (admin JSON, waiting for acks,
//!   every shard writable).
//! * [`bad_input`] holds the malformed-request checks shared by the cluster and emulator tests.

pub mod bad_input;
pub mod client;
pub mod eventstream;
pub mod harness;
pub mod history;
pub mod joiner;
pub mod nemesis;
pub mod netns;
pub mod resharder;
pub mod retry;
pub mod steps;
pub mod types;
pub mod workload;
