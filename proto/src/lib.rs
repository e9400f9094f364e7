//! `spate-proto`: Spate's wire model.
//!
//! * [`kinesis`]: the Kinesis HTTP API side — errors mapped to AWS `__type`s, identifiers
//!   (shard ids, ARNs, hash keys, sequence numbers, iterator tokens), request/response types
//!   and limits. Pure: no I/O, no async runtime.
//! * `grpc`: the internal gRPC messages and services (Raft transport, forwarding, control
//!   plane) generated from `proto/*.proto`.

pub mod kinesis;

/// Internal gRPC messages and services (generated from `proto/spate.proto`).
#[allow(clippy::all, missing_docs)]
pub mod grpc {
    tonic::include_proto!("spate.v1");
}
