//! The node's implementation of the API [`Backend`]: resolves streams in the local shard
//! map, hashes records to shards, fans PutRecords out per shard in parallel, routes shard
//! requests to leaders, and issues/decodes iterator tokens with the cluster's keys.

pub mod autoscaler;
pub mod clock;
pub mod controller;
pub mod efo;
pub mod forward;
pub mod moves;
pub mod rebalance;
mod records;
mod reshard;
pub mod router;
pub mod settings;

use std::sync::Arc;

use spate_control_plane::meta::state::{
    CapacityMode, ShardMeta, ShardState, StreamMeta, StreamStatus as MetaStatus,
};
use spate_control_plane::meta::{MetaCommand, MetaError, MetaHandle, MetaResponse, ProposeError};
use spate_proto::kinesis::hash::uniform_ranges;
use spate_proto::kinesis::ids::{shard_id, stream_arn};
use spate_proto::kinesis::iterator::IteratorKeys;
use spate_proto::kinesis::limits;
use spate_proto::kinesis::seqnum::SeqNum;
use spate_proto::kinesis::{KinesisError, KinesisResult};

use crate::api::backend::{
    Backend, ConsumerInfo, GetRecordsOut, IteratorStart, PutEntry, PutOutcome, ShardInfo,
    StreamDescription, StreamMode, StreamStatus, Subscription,
};
use crate::shard::batcher::now_ms;
use crate::shard::replica::{PositionQuery, ShardReply, ShardRequest};
use router::{RouteError, ShardRouter};

/// The cluster as the Kinesis API sees it.
pub struct ClusterBackend {
    meta: MetaHandle,
    router: Arc<ShardRouter>,
    region: String,
    account_id: String,
    /// Most shards a stream may be created with.
    max_shards_per_stream: u32,
    /// Enhanced fan-out subscriptions of this node.
    efo: Arc<efo::EfoState>,
}

impl ClusterBackend {
    pub fn new(
        meta: MetaHandle,
        router: Arc<ShardRouter>,
        region: String,
        account_id: String,
    ) -> Self {
        Self {
            meta,
            router,
            region,
            account_id,
            max_shards_per_stream: limits::DEFAULT_SHARD_LIMIT,
            efo: Arc::default(),
        }
    }

    fn not_found(&self, name: &str) -> KinesisError {
        KinesisError::not_found(format!(
            "Stream {name} under account {} not found.",
            self.account_id
        ))
    }

    fn stream(&self, name: &str) -> KinesisResult<Arc<StreamMeta>> {
        let view = self.meta.view();
        view.state
            .streams
            .get(name)
            .map(|s| Arc::new(s.clone()))
            .ok_or_else(|| self.not_found(name))
    }

    fn keys(&self) -> KinesisResult<IteratorKeys> {
        let view = self.meta.view();
        let secrets = view
            .state
            .secrets
            .as_ref()
            .ok_or_else(|| KinesisError::unavailable("cluster is starting"))?;
        Ok(IteratorKeys::new(
            (secrets.iterator_key_id, secrets.iterator_key),
            None,
        ))
    }

    fn describe(&self, s: &StreamMeta) -> StreamDescription {
        let shards = s
            .shards
            .iter()
            .filter(|sh| sh.visible())
            .map(|sh| ShardInfo {
                index: sh.index,
                parent: sh.parent,
                adjacent_parent: sh.adjacent_parent,
                hash_start: sh.hash_start,
                hash_end: sh.hash_end,
                starting_sequence_number: SeqNum::starting(sh.create_secs, sh.index).encode(),
                ending_sequence_number: sh
                    .end
                    .filter(|_| sh.state == ShardState::Closed)
                    .map(|e| SeqNum::ending(sh.create_secs, sh.index, e.sealed_secs).encode()),
            })
            .collect();
        StreamDescription {
            name: s.name.clone(),
            arn: stream_arn(&self.region, &self.account_id, &s.name),
            status: match s.status {
                MetaStatus::Creating => StreamStatus::Creating,
                MetaStatus::Active => StreamStatus::Active,
                MetaStatus::Updating => StreamStatus::Updating,
                MetaStatus::Deleting => StreamStatus::Deleting,
            },
            mode: match s.mode {
                CapacityMode::Provisioned => StreamMode::Provisioned,
                CapacityMode::OnDemand => StreamMode::OnDemand,
            },
            created_ms: s.created_ms,
            retention_hours: s.retention_hours,
            open_shard_count: s.shards.iter().filter(|x| x.writable()).count() as u32,
            shards,
            consumer_count: s.consumers.len() as u32,
        }
    }

    fn shard_of<'a>(&self, s: &'a StreamMeta, index: u32) -> KinesisResult<&'a ShardMeta> {
        s.shard(index).filter(|sh| sh.visible()).ok_or_else(|| {
            KinesisError::not_found(format!(
                "Shard {} in stream {} under account {} does not exist",
                shard_id(index),
                s.name,
                self.account_id
            ))
        })
    }

    async fn position(&self, shard: &ShardMeta, q: PositionQuery) -> KinesisResult<u64> {
        match self.router.call(shard, ShardRequest::Position(q)).await {
            Ok(ShardReply::Position(p)) => Ok(p),
            Ok(other) => Err(KinesisError::internal(format!(
                "unexpected shard reply {other:?}"
            ))),
            Err(e) => Err(route_error(e)),
        }
    }

    fn decode_sequence(&self, s: &StreamMeta, shard: &ShardMeta, seq: &str) -> KinesisResult<u64> {
        let parsed = SeqNum::decode(seq).map_err(|e| e.into_kinesis("StartingSequenceNumber"))?;
        if parsed.shard_index != shard.index || parsed.shard_create_secs != shard.create_secs {
            return Err(KinesisError::invalid(format!(
                "Invalid StartingSequenceNumber. It encodes {}, while it was used in a call to a shard with {} in stream {}",
                shard_id(parsed.shard_index),
                shard_id(shard.index),
                s.name
            )));
        }
        Ok(parsed.ordinal)
    }
}

pub(crate) fn route_error(e: RouteError) -> KinesisError {
    match e {
        RouteError::Overloaded => {
            KinesisError::throttled("Rate exceeded for shard: too many requests waiting.")
        }
        RouteError::Throttled(m) => KinesisError::throttled(m),
        RouteError::Unavailable(m) => {
            KinesisError::unavailable(format!("Shard unavailable, retry: {m}"))
        }
        RouteError::Unknown(m) => KinesisError::internal(format!(
            "Internal failure, the put may or may not have been applied: {m}"
        )),
    }
}

pub(crate) fn propose_error(e: ProposeError) -> KinesisError {
    match e {
        ProposeError::NoLeader => {
            KinesisError::unavailable("The control plane is electing a leader; retry.")
        }
        ProposeError::Internal(m) => KinesisError::internal(m),
    }
}

impl Backend for ClusterBackend {
    async fn create_stream(
        &self,
        name: &str,
        shard_count: Option<u32>,
        mode: StreamMode,
    ) -> KinesisResult<()> {
        let (count, mode) = match (shard_count, mode) {
            (None, _) | (_, StreamMode::OnDemand) => (
                shard_count.unwrap_or(limits::ON_DEMAND_INITIAL_SHARDS),
                CapacityMode::OnDemand,
            ),
            (Some(n), StreamMode::Provisioned) => (n, CapacityMode::Provisioned),
        };
        if count == 0 {
            return Err(KinesisError::invalid("ShardCount must be at least 1."));
        }
        if count > self.max_shards_per_stream {
            return Err(KinesisError::limit(format!(
                "This request would exceed the shard limit for the account {} in {}. Current shard count for the account: 0. Limit: {}.",
                self.account_id, self.region, self.max_shards_per_stream
            )));
        }
        let cmd = MetaCommand::CreateStream {
            name: name.to_string(),
            mode,
            hash_ranges: uniform_ranges(count),
            now_ms: now_ms(),
        };
        match self.meta.propose(cmd).await.map_err(propose_error)? {
            MetaResponse::StreamCreated { .. }
            | MetaResponse::Done
            | MetaResponse::ShardCountUpdate { .. }
            | MetaResponse::NodeAdmitted { .. } => Ok(()),
            MetaResponse::Failed(MetaError::StreamExists(_)) => Err(KinesisError::in_use(format!(
                "Stream {name} under account {} already exists.",
                self.account_id
            ))),
            MetaResponse::Failed(MetaError::NotBootstrapped) => {
                Err(KinesisError::unavailable("cluster is starting"))
            }
            MetaResponse::Failed(e) => Err(self.meta_error(name, e)),
        }
    }

    async fn delete_stream(
        &self,
        name: &str,
        enforce_consumer_deletion: bool,
    ) -> KinesisResult<()> {
        efo::check_delete(self, name, enforce_consumer_deletion)?;
        match self
            .meta
            .propose(MetaCommand::DeleteStream {
                name: name.to_string(),
            })
            .await
            .map_err(propose_error)?
        {
            MetaResponse::Failed(MetaError::StreamNotFound(_)) => Err(self.not_found(name)),
            MetaResponse::Failed(e) => Err(KinesisError::internal(e.to_string())),
            _ => Ok(()),
        }
    }

    async fn describe_stream(&self, name: &str) -> KinesisResult<StreamDescription> {
        let s = self.stream(name)?;
        Ok(self.describe(&s))
    }

    async fn list_streams(&self) -> KinesisResult<Vec<StreamDescription>> {
        let view = self.meta.view();
        Ok(view
            .state
            .streams
            .values()
            .map(|s| self.describe(s))
            .collect())
    }

    async fn put_records(
        &self,
        name: &str,
        entries: Vec<PutEntry>,
    ) -> KinesisResult<Vec<PutOutcome>> {
        self.put_records_impl(name, entries).await
    }

    async fn get_shard_iterator(
        &self,
        name: &str,
        shard_index: u32,
        start: IteratorStart,
    ) -> KinesisResult<String> {
        self.get_shard_iterator_impl(name, shard_index, start).await
    }

    async fn get_records(&self, iterator: &str, limit: u32) -> KinesisResult<GetRecordsOut> {
        self.get_records_impl(iterator, limit).await
    }

    async fn split_shard(&self, name: &str, shard_index: u32, key: u128) -> KinesisResult<()> {
        self.split_shard_impl(name, shard_index, key).await
    }

    async fn merge_shards(&self, name: &str, a: u32, b: u32) -> KinesisResult<()> {
        self.merge_shards_impl(name, a, b).await
    }

    async fn update_shard_count(&self, name: &str, target: u32) -> KinesisResult<u32> {
        self.update_shard_count_impl(name, target).await
    }

    async fn set_retention(&self, name: &str, hours: u32, increase: bool) -> KinesisResult<()> {
        self.set_retention_impl(name, hours, increase).await
    }

    async fn register_consumer(&self, name: &str, consumer: &str) -> KinesisResult<ConsumerInfo> {
        efo::register(self, name, consumer).await
    }

    async fn deregister_consumer(
        &self,
        name: &str,
        consumer: &str,
        created: Option<u64>,
    ) -> KinesisResult<()> {
        efo::deregister(self, name, consumer, created).await
    }

    async fn describe_consumer(
        &self,
        name: &str,
        consumer: &str,
        created: Option<u64>,
    ) -> KinesisResult<ConsumerInfo> {
        efo::describe(self, name, consumer, created)
    }

    async fn list_consumers(&self, name: &str) -> KinesisResult<Vec<ConsumerInfo>> {
        efo::list(self, name)
    }

    async fn subscribe_to_shard(
        &self,
        name: &str,
        consumer: &str,
        created: u64,
        shard: u32,
        start: IteratorStart,
    ) -> KinesisResult<Subscription> {
        efo::subscribe(self, name, consumer, created, shard, start).await
    }

    async fn stream_settings(&self, name: &str) -> KinesisResult<settings::StreamSettings> {
        self.settings_of(name)
    }

    async fn change_settings(&self, name: &str, change: settings::Change) -> KinesisResult<()> {
        self.propose_settings(name, change).await
    }

    async fn account_settings(&self) -> KinesisResult<settings::AccountSettings> {
        Ok(self.account_of())
    }

    async fn update_stream_mode(&self, name: &str, mode: StreamMode) -> KinesisResult<()> {
        self.update_stream_mode_impl(name, mode).await
    }

    fn region(&self) -> &str {
        &self.region
    }

    fn account_id(&self) -> &str {
        &self.account_id
    }
}
