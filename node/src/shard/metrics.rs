//! Node-wide capacity counters, named after the CloudWatch metrics of Kinesis and exposed
//! on the admin `/metrics` endpoint with the `spate_` prefix.

use prometheus_client::metrics::counter::Counter;
use prometheus_client::registry::Registry;

/// Counters shared by every shard replica of a node (cheap clones share the values).
#[derive(Debug, Clone, Default)]
pub struct CapacityMetrics {
    /// Records refused by the write limits (CloudWatch `WriteProvisionedThroughputExceeded`).
    pub write_throttled: Counter,
    /// `GetRecords` calls refused by the read limits (`ReadProvisionedThroughputExceeded`).
    pub read_throttled: Counter,
    /// Bytes (data + partition key) of accepted records (`IncomingBytes`).
    pub incoming_bytes: Counter,
    /// Accepted records (`IncomingRecords`).
    pub incoming_records: Counter,
}

impl CapacityMetrics {
    /// Registers the counters (shared, not copied) in `registry`.
    pub fn register(&self, registry: &mut Registry) {
        registry.register(
            "WriteProvisionedThroughputExceeded",
            "Records refused by the per-shard write limits",
            self.write_throttled.clone(),
        );
        registry.register(
            "ReadProvisionedThroughputExceeded",
            "GetRecords calls refused by the per-shard read limits",
            self.read_throttled.clone(),
        );
        registry.register(
            "IncomingBytes",
            "Bytes (data + partition key) of records accepted by shard leaders on this node",
            self.incoming_bytes.clone(),
        );
        registry.register(
            "IncomingRecords",
            "Records accepted by shard leaders on this node",
            self.incoming_records.clone(),
        );
    }
}
