//! The node's implementation of the API [`Backend`]: resolves streams in the local shard
//! map, hashes records to shards, fans PutRecords out per shard in parallel, routes shard
//! requests to leaders, and issues/decodes iterator tokens with the cluster's keys.

pub mod controller;
pub mod forward;
pub mod router;
pub mod settings;

use std::collections::BTreeMap;
use std::sync::Arc;

use spate_control_plane::meta::state::{
    CapacityMode, ShardMeta, ShardState, StreamMeta, StreamStatus as MetaStatus,
};
use spate_control_plane::meta::{MetaCommand, MetaError, MetaHandle, MetaResponse, ProposeError};
use spate_proto::kinesis::hash::{partition_key_hash, uniform_ranges};
use spate_proto::kinesis::ids::{shard_id, stream_arn};
use spate_proto::kinesis::iterator::{IteratorKeys, IteratorPosition};
use spate_proto::kinesis::limits;
use spate_proto::kinesis::seqnum::SeqNum;
use spate_proto::kinesis::{ErrorKind, KinesisError, KinesisResult};

use crate::api::backend::{
    Backend, GetRecordsOut, IteratorStart, PutEntry, PutOk, PutOutcome, RecordOut, ShardInfo,
    StreamDescription, StreamMode, StreamStatus,
};
use crate::shard::batcher::now_ms;
use crate::shard::replica::{PositionQuery, ShardReply, ShardRequest};
use crate::shard::{RecordIn, ShardIdentity};
use router::{RouteError, ShardRouter};

/// The cluster as the Kinesis API sees it.
pub struct ClusterBackend {
    meta: MetaHandle,
    router: Arc<ShardRouter>,
    region: String,
    account_id: String,
    /// Most shards a stream may be created with.
    max_shards_per_stream: u32,
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
            .map(|sh| ShardInfo {
                index: sh.index,
                parent: sh.parent,
                adjacent_parent: sh.adjacent_parent,
                hash_start: sh.hash_start,
                hash_end: sh.hash_end,
                starting_sequence_number: SeqNum::starting(sh.create_secs, sh.index).encode(),
                ending_sequence_number: None,
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
            open_shard_count: s
                .shards
                .iter()
                .filter(|x| x.state == ShardState::Open)
                .count() as u32,
            shards,
            consumer_count: 0,
        }
    }

    fn shard_of<'a>(&self, s: &'a StreamMeta, index: u32) -> KinesisResult<&'a ShardMeta> {
        s.shard(index).ok_or_else(|| {
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

    async fn put_to_shard(
        &self,
        shard: &ShardMeta,
        records: Vec<RecordIn>,
    ) -> Result<(u64, u64), KinesisError> {
        match self.router.call(shard, ShardRequest::Put { records }).await {
            Ok(ShardReply::Appended {
                first_ordinal,
                arrival_ms,
            }) => Ok((first_ordinal, arrival_ms)),
            Ok(other) => Err(KinesisError::internal(format!(
                "unexpected shard reply {other:?}"
            ))),
            Err(e) => Err(route_error(e)),
        }
    }
}

fn route_error(e: RouteError) -> KinesisError {
    match e {
        RouteError::Overloaded => {
            KinesisError::throttled("Rate exceeded for shard: too many requests waiting.")
        }
        RouteError::Unavailable(m) => {
            KinesisError::unavailable(format!("Shard unavailable, retry: {m}"))
        }
        RouteError::Unknown(m) => KinesisError::internal(format!(
            "Internal failure, the put may or may not have been applied: {m}"
        )),
    }
}

fn propose_error(e: ProposeError) -> KinesisError {
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
            MetaResponse::StreamCreated { .. } | MetaResponse::Done => Ok(()),
            MetaResponse::Failed(MetaError::StreamExists(_)) => Err(KinesisError::in_use(format!(
                "Stream {name} under account {} already exists.",
                self.account_id
            ))),
            MetaResponse::Failed(MetaError::NotBootstrapped) => {
                Err(KinesisError::unavailable("cluster is starting"))
            }
            MetaResponse::Failed(e) => Err(KinesisError::invalid(e.to_string())),
        }
    }

    async fn delete_stream(
        &self,
        name: &str,
        _enforce_consumer_deletion: bool,
    ) -> KinesisResult<()> {
        self.stream(name)?;
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
        let s = self.stream(name)?;
        match s.status {
            MetaStatus::Active | MetaStatus::Updating => {}
            MetaStatus::Creating => return Err(self.not_found(name)),
            MetaStatus::Deleting => {
                return Err(KinesisError::in_use(format!(
                    "Stream {name} under account {} is being deleted.",
                    self.account_id
                )))
            }
        }
        // Group entries by shard, remembering each entry's position in the request.
        let mut per_shard: BTreeMap<u32, (Vec<usize>, Vec<RecordIn>)> = BTreeMap::new();
        let n = entries.len();
        for (i, e) in entries.into_iter().enumerate() {
            let key = e
                .explicit_hash_key
                .unwrap_or_else(|| partition_key_hash(&e.partition_key));
            let shard = s.open_shard_for(key).ok_or_else(|| {
                KinesisError::internal(format!("no open shard covers hash key {key}"))
            })?;
            let slot = per_shard.entry(shard.index).or_default();
            slot.0.push(i);
            slot.1.push(RecordIn {
                partition_key: e.partition_key,
                data: e.data,
            });
        }
        let calls = per_shard.into_iter().map(|(index, (positions, records))| {
            let s = s.clone();
            async move {
                let shard = s.shard(index).cloned();
                let outcome = match shard {
                    Some(shard) => self.put_to_shard(&shard, records).await.map(|r| (shard, r)),
                    None => Err(KinesisError::internal("shard vanished")),
                };
                (positions, outcome)
            }
        });
        let results = futures::future::join_all(calls).await;
        let mut out: Vec<Option<PutOutcome>> = (0..n).map(|_| None).collect();
        for (positions, outcome) in results {
            match outcome {
                Ok((shard, (first, arrival_ms))) => {
                    let id = ShardIdentity {
                        stream_uid: s.uid,
                        shard_index: shard.index,
                        create_secs: shard.create_secs,
                    };
                    for (k, pos) in positions.into_iter().enumerate() {
                        out[pos] = Some(Ok(PutOk {
                            shard_index: shard.index,
                            sequence_number: id.sequence_number(first + k as u64, arrival_ms),
                        }));
                    }
                }
                Err(e) => {
                    let e = if e.kind == ErrorKind::ProvisionedThroughputExceeded {
                        e
                    } else {
                        KinesisError::internal(e.message)
                    };
                    for pos in positions {
                        out[pos] = Some(Err(e.clone()));
                    }
                }
            }
        }
        Ok(out
            .into_iter()
            .map(|o| o.unwrap_or_else(|| Err(KinesisError::internal("record lost in fan-out"))))
            .collect())
    }

    async fn get_shard_iterator(
        &self,
        name: &str,
        shard_index: u32,
        start: IteratorStart,
    ) -> KinesisResult<String> {
        let s = self.stream(name)?;
        let shard = self.shard_of(&s, shard_index)?;
        let position = match start {
            IteratorStart::TrimHorizon => self.position(shard, PositionQuery::TrimHorizon).await?,
            IteratorStart::Latest => self.position(shard, PositionQuery::Latest).await?,
            IteratorStart::AtTimestamp(ts) => {
                let now = now_ms();
                if ts > now {
                    return Err(KinesisError::invalid(format!(
                        "The timestampInMillis parameter cannot be greater than the currentTimestampInMillis. timestampInMillis: {ts}, currentTimestampInMillis: {now}"
                    )));
                }
                self.position(shard, PositionQuery::AtTimestamp(ts)).await?
            }
            IteratorStart::AtSequenceNumber(seq) => self.decode_sequence(&s, shard, &seq)?.max(1),
            IteratorStart::AfterSequenceNumber(seq) => {
                self.decode_sequence(&s, shard, &seq)?.saturating_add(1)
            }
        };
        let pos = IteratorPosition {
            stream_uid: s.uid,
            shard_index,
            position,
            issued_at_ms: now_ms(),
        };
        Ok(self.keys()?.encode(&pos))
    }

    async fn get_records(&self, iterator: &str, limit: u32) -> KinesisResult<GetRecordsOut> {
        let keys = self.keys()?;
        let now = now_ms();
        let pos = keys.decode(iterator, now)?;
        let view = self.meta.view();
        let s = view
            .state
            .streams
            .values()
            .find(|s| s.uid == pos.stream_uid)
            .cloned()
            .ok_or_else(|| {
                KinesisError::not_found("The stream this iterator belongs to no longer exists.")
            })?;
        let shard = self.shard_of(&s, pos.shard_index)?.clone();
        let req = ShardRequest::Read {
            from: pos.position,
            limit: limit.clamp(1, limits::GET_RECORDS_MAX_LIMIT as u32),
            max_bytes: limits::GET_RECORDS_MAX_BYTES as u64,
        };
        let (records, next_ordinal, _last_arrival) = match self.router.call(&shard, req).await {
            Ok(ShardReply::Records {
                records,
                next_ordinal,
                last_arrival_ms,
            }) => (records, next_ordinal, last_arrival_ms),
            Ok(other) => {
                return Err(KinesisError::internal(format!(
                    "unexpected shard reply {other:?}"
                )))
            }
            Err(e) => return Err(route_error(e)),
        };
        let id = ShardIdentity {
            stream_uid: s.uid,
            shard_index: shard.index,
            create_secs: shard.create_secs,
        };
        let next_position = records.last().map(|(o, _)| o + 1).unwrap_or(pos.position);
        let millis_behind_latest = match records.last() {
            Some((_, r)) if next_position < next_ordinal => now.saturating_sub(r.arrival_ms),
            _ => 0,
        };
        let out = records
            .into_iter()
            .map(|(ordinal, r)| RecordOut {
                sequence_number: id.sequence_number(ordinal, r.arrival_ms),
                arrival_ms: r.arrival_ms,
                data: r.data,
                partition_key: r.partition_key,
            })
            .collect();
        let next = IteratorPosition {
            stream_uid: s.uid,
            shard_index: shard.index,
            position: next_position,
            issued_at_ms: now,
        };
        Ok(GetRecordsOut {
            records: out,
            next_shard_iterator: Some(keys.encode(&next)),
            millis_behind_latest,
            child_shards: Vec::new(),
        })
    }

    async fn split_shard(&self, _name: &str, _shard_index: u32, _key: u128) -> KinesisResult<()> {
        Err(KinesisError::new(
            ErrorKind::UnknownOperation,
            "Operation SplitShard is not supported by this server yet",
        ))
    }

    async fn merge_shards(&self, _name: &str, _a: u32, _b: u32) -> KinesisResult<()> {
        Err(KinesisError::new(
            ErrorKind::UnknownOperation,
            "Operation MergeShards is not supported by this server yet",
        ))
    }

    async fn update_shard_count(&self, _name: &str, _target: u32) -> KinesisResult<u32> {
        Err(KinesisError::new(
            ErrorKind::UnknownOperation,
            "Operation UpdateShardCount is not supported by this server yet",
        ))
    }

    async fn set_retention(&self, _name: &str, _hours: u32, _increase: bool) -> KinesisResult<()> {
        Err(KinesisError::new(
            ErrorKind::UnknownOperation,
            "Retention changes are not supported by this server yet",
        ))
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

    fn region(&self) -> &str {
        &self.region
    }

    fn account_id(&self) -> &str {
        &self.account_id
    }
}
