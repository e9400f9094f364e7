//! The contract between the Kinesis HTTP front door (`api`) and the replicated cluster behind
//! it. The HTTP layer parses, validates and encodes; everything that needs the shard map,
//! the Raft groups or the iterator keys happens behind [`Backend`].
//!
//! Streams are always named by their resolved stream name (the HTTP layer turns a
//! `StreamARN` into a name after checking region and account).

use std::future::Future;

use bytes::Bytes;
use spate_proto::kinesis::KinesisResult;

pub use spate_control_plane::meta::settings::{
    AccountSettings, BillingCommitment, Encryption, SettingsChange, StreamSettings,
};

/// Capacity mode of a stream.
#[derive(Debug, Clone, Copy, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
pub enum StreamMode {
    Provisioned,
    OnDemand,
}

impl StreamMode {
    pub fn as_str(self) -> &'static str {
        match self {
            StreamMode::Provisioned => "PROVISIONED",
            StreamMode::OnDemand => "ON_DEMAND",
        }
    }
}

/// Lifecycle state of a stream as Kinesis reports it.
#[derive(Debug, Clone, Copy, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
pub enum StreamStatus {
    Creating,
    Active,
    Updating,
    Deleting,
}

impl StreamStatus {
    pub fn as_str(self) -> &'static str {
        match self {
            StreamStatus::Creating => "CREATING",
            StreamStatus::Active => "ACTIVE",
            StreamStatus::Updating => "UPDATING",
            StreamStatus::Deleting => "DELETING",
        }
    }
}

/// One shard as DescribeStream / ListShards show it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ShardInfo {
    /// Per-stream shard index; the id is `shardId-%012d`.
    pub index: u32,
    pub parent: Option<u32>,
    pub adjacent_parent: Option<u32>,
    pub hash_start: u128,
    pub hash_end: u128,
    /// 56-digit decimal.
    pub starting_sequence_number: String,
    /// Present once the shard is closed.
    pub ending_sequence_number: Option<String>,
}

/// Everything DescribeStream / DescribeStreamSummary / ListStreams report about a stream.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct StreamDescription {
    pub name: String,
    pub arn: String,
    pub status: StreamStatus,
    pub mode: StreamMode,
    /// Creation time, epoch milliseconds.
    pub created_ms: u64,
    pub retention_hours: u32,
    /// All shards not yet expired, open and closed, in index order.
    pub shards: Vec<ShardInfo>,
    pub open_shard_count: u32,
    pub consumer_count: u32,
}

/// One entry of PutRecord / PutRecords, already validated by the HTTP layer.
#[derive(Debug, Clone)]
pub struct PutEntry {
    pub partition_key: String,
    /// `ExplicitHashKey` parsed; `None` means MD5 of the partition key.
    pub explicit_hash_key: Option<u128>,
    pub data: Bytes,
}

/// The outcome of one accepted record.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct PutOk {
    pub shard_index: u32,
    pub sequence_number: String,
}

/// The outcome of one record: PutRecords reports failures per record
/// (`ErrorCode` = the error's `type_name()`, `ErrorMessage`).
pub type PutOutcome = Result<PutOk, spate_proto::kinesis::KinesisError>;

/// GetShardIterator's starting position.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum IteratorStart {
    TrimHorizon,
    Latest,
    AtSequenceNumber(String),
    AfterSequenceNumber(String),
    /// Epoch milliseconds.
    AtTimestamp(u64),
}

/// A record as GetRecords returns it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct RecordOut {
    pub sequence_number: String,
    /// Epoch milliseconds.
    pub arrival_ms: u64,
    pub data: Bytes,
    pub partition_key: String,
}

/// A child shard, as GetRecords reports it at the end of a closed shard.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ChildShard {
    pub index: u32,
    pub parents: Vec<u32>,
    pub hash_start: u128,
    pub hash_end: u128,
}

/// GetRecords' answer.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct GetRecordsOut {
    pub records: Vec<RecordOut>,
    /// `None` once a closed shard has been read to its end.
    pub next_shard_iterator: Option<String>,
    pub millis_behind_latest: u64,
    /// Non-empty only at the end of a closed shard.
    pub child_shards: Vec<ChildShard>,
}

/// Lifecycle state of an enhanced fan-out consumer.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ConsumerState {
    Creating,
    Active,
    Deleting,
}

impl ConsumerState {
    pub fn as_str(self) -> &'static str {
        match self {
            ConsumerState::Creating => "CREATING",
            ConsumerState::Active => "ACTIVE",
            ConsumerState::Deleting => "DELETING",
        }
    }
}

/// A registered enhanced fan-out consumer. Its ARN is
/// `<stream-arn>/consumer/<name>:<created_secs>`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ConsumerInfo {
    pub name: String,
    /// Registration time, Unix seconds.
    pub created_secs: u64,
    pub status: ConsumerState,
}

/// One `SubscribeToShardEvent`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ShardEvent {
    pub records: Vec<RecordOut>,
    /// `None` only at the end of a closed shard, where `child_shards` is non-empty.
    pub continuation_sequence_number: Option<String>,
    pub millis_behind_latest: u64,
    pub child_shards: Vec<ChildShard>,
}

/// A running SubscribeToShard: its events in order, from a bounded channel (a slow reader
/// throttles the producer). The subscription is over when the channel closes; an `Err` is
/// its last item.
pub type Subscription = tokio::sync::mpsc::Receiver<KinesisResult<ShardEvent>>;

/// What the front door needs from the cluster. Implemented by the node over the Raft
/// groups; every method may be called on any node (it forwards where needed).
pub trait Backend: Send + Sync + 'static {
    /// Creates a stream. `shard_count = None` means ON_DEMAND with 4 shards.
    fn create_stream(
        &self,
        name: &str,
        shard_count: Option<u32>,
        mode: StreamMode,
    ) -> impl Future<Output = KinesisResult<()>> + Send;

    fn delete_stream(
        &self,
        name: &str,
        enforce_consumer_deletion: bool,
    ) -> impl Future<Output = KinesisResult<()>> + Send;

    fn describe_stream(
        &self,
        name: &str,
    ) -> impl Future<Output = KinesisResult<StreamDescription>> + Send;

    /// All streams, sorted by name.
    fn list_streams(&self) -> impl Future<Output = KinesisResult<Vec<StreamDescription>>> + Send;

    /// Puts records of one stream; answers per record, in request order. A whole-request
    /// error (unknown stream, stream not writable) is the outer `Err`.
    fn put_records(
        &self,
        name: &str,
        entries: Vec<PutEntry>,
    ) -> impl Future<Output = KinesisResult<Vec<PutOutcome>>> + Send;

    /// Returns an iterator token for `shard_index` of the stream.
    fn get_shard_iterator(
        &self,
        name: &str,
        shard_index: u32,
        start: IteratorStart,
    ) -> impl Future<Output = KinesisResult<String>> + Send;

    /// Reads up to `limit` records from the position an iterator token holds.
    fn get_records(
        &self,
        iterator: &str,
        limit: u32,
    ) -> impl Future<Output = KinesisResult<GetRecordsOut>> + Send;

    /// SplitShard: closes `shard_index` and opens two children split at `new_starting_hash_key`.
    fn split_shard(
        &self,
        name: &str,
        shard_index: u32,
        new_starting_hash_key: u128,
    ) -> impl Future<Output = KinesisResult<()>> + Send;

    /// MergeShards: closes two hash-adjacent shards and opens their child.
    fn merge_shards(
        &self,
        name: &str,
        shard_index: u32,
        adjacent_index: u32,
    ) -> impl Future<Output = KinesisResult<()>> + Send;

    /// UpdateShardCount (UNIFORM_SCALING); returns the open shard count before the change.
    fn update_shard_count(
        &self,
        name: &str,
        target: u32,
    ) -> impl Future<Output = KinesisResult<u32>> + Send;

    /// Increase/DecreaseStreamRetentionPeriod (`increase` tells which was called).
    fn set_retention(
        &self,
        name: &str,
        hours: u32,
        increase: bool,
    ) -> impl Future<Output = KinesisResult<()>> + Send;

    /// RegisterStreamConsumer: registers `consumer` on the stream in `CREATING`.
    fn register_consumer(
        &self,
        name: &str,
        consumer: &str,
    ) -> impl Future<Output = KinesisResult<ConsumerInfo>> + Send;

    /// DeregisterStreamConsumer. `created_secs` (from a consumer ARN) must match if given.
    fn deregister_consumer(
        &self,
        name: &str,
        consumer: &str,
        created_secs: Option<u64>,
    ) -> impl Future<Output = KinesisResult<()>> + Send;

    /// DescribeStreamConsumer. `created_secs` (from a consumer ARN) must match if given.
    fn describe_consumer(
        &self,
        name: &str,
        consumer: &str,
        created_secs: Option<u64>,
    ) -> impl Future<Output = KinesisResult<ConsumerInfo>> + Send;

    /// ListStreamConsumers: all consumers of the stream, in registration order.
    fn list_consumers(
        &self,
        name: &str,
    ) -> impl Future<Output = KinesisResult<Vec<ConsumerInfo>>> + Send;

    /// SubscribeToShard for the ACTIVE consumer `consumer` registered at `created_secs`.
    /// Errors before the first event (unknown stream/consumer/shard, a subscription of the
    /// same consumer and shard younger than 5 s) are the outer `Err`.
    fn subscribe_to_shard(
        &self,
        name: &str,
        consumer: &str,
        created_secs: u64,
        shard_index: u32,
        start: IteratorStart,
    ) -> impl Future<Output = KinesisResult<Subscription>> + Send;

    /// The pure-metadata settings of a stream (tags, encryption, monitoring, policies, ...).
    fn stream_settings(
        &self,
        name: &str,
    ) -> impl Future<Output = KinesisResult<StreamSettings>> + Send;

    /// Applies a settings change: to stream `name`, or to the account for account-wide
    /// changes (`name` ignored). A refused change (e.g. too many tags) is
    /// `InvalidArgumentException`.
    fn change_settings(
        &self,
        name: &str,
        change: SettingsChange,
    ) -> impl Future<Output = KinesisResult<()>> + Send;

    /// The account-wide settings.
    fn account_settings(&self) -> impl Future<Output = KinesisResult<AccountSettings>> + Send;

    /// UpdateStreamMode: switches the stream's capacity mode (it shows `UPDATING` until the
    /// switch's work is done). Refusals: not ACTIVE → `ResourceInUseException`, already in
    /// `mode` → `InvalidArgumentException`, a third switch in 24 h → `LimitExceededException`.
    fn update_stream_mode(
        &self,
        name: &str,
        mode: StreamMode,
    ) -> impl Future<Output = KinesisResult<()>> + Send;

    /// Region and account this cluster answers for (ARNs, validation of `StreamARN`).
    fn region(&self) -> &str;
    fn account_id(&self) -> &str;
}
