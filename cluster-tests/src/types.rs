//! Kinesis JSON 1.1 request and response shapes used by [`crate::client`].

use serde::Deserialize;
use serde_json::Value;

/// `DescribeStreamSummary` output (the fields tests use).
#[derive(Debug, Clone, Deserialize)]
#[serde(rename_all = "PascalCase")]
pub struct StreamSummary {
    pub stream_name: String,
    #[serde(rename = "StreamARN")]
    pub stream_arn: String,
    pub stream_status: String,
    #[serde(default)]
    pub open_shard_count: Option<u64>,
}

/// One shard as listed by `ListShards`.
#[derive(Debug, Clone, Deserialize, PartialEq, Eq)]
#[serde(rename_all = "PascalCase")]
pub struct Shard {
    pub shard_id: String,
    #[serde(default)]
    pub parent_shard_id: Option<String>,
    #[serde(default)]
    pub adjacent_parent_shard_id: Option<String>,
    pub hash_key_range: HashKeyRange,
    pub sequence_number_range: SequenceNumberRange,
}

/// A shard's hash key range (decimal strings).
#[derive(Debug, Clone, Deserialize, PartialEq, Eq)]
#[serde(rename_all = "PascalCase")]
pub struct HashKeyRange {
    pub starting_hash_key: String,
    pub ending_hash_key: String,
}

/// A shard's sequence number range.
#[derive(Debug, Clone, Deserialize, PartialEq, Eq)]
#[serde(rename_all = "PascalCase")]
pub struct SequenceNumberRange {
    pub starting_sequence_number: String,
    #[serde(default)]
    pub ending_sequence_number: Option<String>,
}

/// `PutRecord` output.
#[derive(Debug, Clone, Deserialize)]
#[serde(rename_all = "PascalCase")]
pub struct PutRecordOutput {
    pub shard_id: String,
    pub sequence_number: String,
}

/// One entry of a `PutRecords` request.
#[derive(Debug, Clone)]
pub struct PutEntry {
    pub partition_key: String,
    pub data: Vec<u8>,
    pub explicit_hash_key: Option<String>,
}

/// One entry of a `PutRecords` response: either shard id + sequence number, or an error code.
#[derive(Debug, Clone, Deserialize)]
#[serde(rename_all = "PascalCase")]
pub struct PutRecordsResultEntry {
    #[serde(default)]
    pub shard_id: Option<String>,
    #[serde(default)]
    pub sequence_number: Option<String>,
    #[serde(default)]
    pub error_code: Option<String>,
    #[serde(default)]
    pub error_message: Option<String>,
}

/// `PutRecords` output.
#[derive(Debug, Clone, Deserialize)]
#[serde(rename_all = "PascalCase")]
pub struct PutRecordsOutput {
    #[serde(default)]
    pub failed_record_count: u64,
    pub records: Vec<PutRecordsResultEntry>,
}

/// Where a shard iterator starts.
#[derive(Debug, Clone)]
pub enum IteratorType {
    TrimHorizon,
    Latest,
    AtSequenceNumber(String),
    AfterSequenceNumber(String),
}

/// A record returned by `GetRecords` (data already base64-decoded).
#[derive(Debug, Clone, PartialEq)]
pub struct Record {
    pub sequence_number: String,
    pub partition_key: String,
    pub data: Vec<u8>,
    pub approximate_arrival_timestamp: Option<f64>,
}

/// `GetRecords` output.
#[derive(Debug, Clone)]
pub struct GetRecordsOutput {
    pub records: Vec<Record>,
    pub next_shard_iterator: Option<String>,
    pub millis_behind_latest: Option<u64>,
    pub child_shards: Vec<Value>,
}

#[derive(Deserialize)]
#[serde(rename_all = "PascalCase")]
pub(crate) struct RawRecord {
    pub(crate) sequence_number: String,
    pub(crate) partition_key: String,
    pub(crate) data: String,
    #[serde(default)]
    pub(crate) approximate_arrival_timestamp: Option<f64>,
}

#[derive(Deserialize)]
#[serde(rename_all = "PascalCase")]
pub(crate) struct RawGetRecords {
    #[serde(default)]
    pub(crate) records: Vec<RawRecord>,
    #[serde(default)]
    pub(crate) next_shard_iterator: Option<String>,
    #[serde(default)]
    pub(crate) millis_behind_latest: Option<u64>,
    #[serde(default)]
    pub(crate) child_shards: Vec<Value>,
}
