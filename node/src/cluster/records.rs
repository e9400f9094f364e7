//! The data path of the API backend: PutRecord(s) fan-out per shard, GetShardIterator and
//! GetRecords, including the resharding cases — a put that reaches a parent sealed by a
//! split/merge is retried on the children once the shard map shows them, and a reader at
//! the end of a closed shard gets `ChildShards` and no next iterator.

use std::collections::BTreeMap;
use std::time::Duration;

use spate_control_plane::meta::state::{
    ShardMeta, ShardState, StreamMeta, StreamStatus as MetaStatus,
};
use spate_proto::kinesis::hash::partition_key_hash;
use spate_proto::kinesis::iterator::IteratorPosition;
use spate_proto::kinesis::limits;
use spate_proto::kinesis::{ErrorKind, KinesisError, KinesisResult};

use super::{route_error, ClusterBackend};
use crate::api::backend::{
    ChildShard, GetRecordsOut, IteratorStart, PutEntry, PutOk, PutOutcome, RecordOut,
};
use crate::shard::batcher::now_ms;
use crate::shard::replica::{PositionQuery, ShardReply, ShardRequest};
use crate::shard::{RecordIn, ShardIdentity};

/// How long a put waits for the shard map to replace a sealed parent with its children.
const RESHARD_WAIT: Duration = Duration::from_secs(10);
/// Rounds of re-routing after a seal, per put.
const RESHARD_ROUNDS: usize = 4;

/// One shard's part of a put: each record's (request position, hash key), and the records.
type ShardBatch = (Vec<(usize, u128)>, Vec<RecordIn>);

/// What one shard did with its part of a put.
enum ShardOutcome {
    Appended {
        shard: ShardMeta,
        first: u64,
        arrival_ms: u64,
    },
    /// The shard was sealed; its records must go to the children.
    Sealed {
        shard: u32,
    },
    Failed(KinesisError),
}

impl ClusterBackend {
    async fn put_to_shard(&self, shard: &ShardMeta, records: Vec<RecordIn>) -> ShardOutcome {
        match self.router.call(shard, ShardRequest::Put { records }).await {
            Ok(ShardReply::Appended {
                first_ordinal,
                arrival_ms,
            }) => ShardOutcome::Appended {
                shard: shard.clone(),
                first: first_ordinal,
                arrival_ms,
            },
            Ok(ShardReply::Sealed { .. }) => ShardOutcome::Sealed { shard: shard.index },
            Ok(other) => ShardOutcome::Failed(KinesisError::internal(format!(
                "unexpected shard reply {other:?}"
            ))),
            Err(e) => ShardOutcome::Failed(route_error(e)),
        }
    }

    /// Waits until the local shard map no longer shows `shard` as writable.
    async fn wait_resealed(&self, name: &str, shard: u32) {
        let mut rx = self.meta.subscribe();
        let wait = rx.wait_for(|v| {
            v.state
                .streams
                .get(name)
                .and_then(|s| s.shard(shard))
                .is_none_or(|sh| !sh.writable())
        });
        let _ = tokio::time::timeout(RESHARD_WAIT, wait).await;
    }

    pub(crate) async fn put_records_impl(
        &self,
        name: &str,
        entries: Vec<PutEntry>,
    ) -> KinesisResult<Vec<PutOutcome>> {
        let n = entries.len();
        let mut out: Vec<Option<PutOutcome>> = (0..n).map(|_| None).collect();
        let mut pending: Vec<(usize, u128, RecordIn)> = entries
            .into_iter()
            .enumerate()
            .map(|(i, e)| {
                let key = e
                    .explicit_hash_key
                    .unwrap_or_else(|| partition_key_hash(&e.partition_key));
                (
                    i,
                    key,
                    RecordIn {
                        partition_key: e.partition_key,
                        data: e.data,
                    },
                )
            })
            .collect();
        for round in 0..RESHARD_ROUNDS {
            if pending.is_empty() {
                break;
            }
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
            // Group by writable shard, remembering each record's place in the request.
            let mut per_shard: BTreeMap<u32, ShardBatch> = BTreeMap::new();
            for (i, key, rec) in pending.drain(..) {
                let Some(shard) = s.open_shard_for(key) else {
                    out[i] = Some(Err(KinesisError::internal(format!(
                        "no open shard covers hash key {key}"
                    ))));
                    continue;
                };
                let slot = per_shard.entry(shard.index).or_default();
                slot.0.push((i, key));
                slot.1.push(rec);
            }
            let calls = per_shard.into_iter().map(|(index, (slots, records))| {
                let s = &s;
                async move {
                    let outcome = match s.shard(index) {
                        Some(shard) => self.put_to_shard(shard, records.clone()).await,
                        None => ShardOutcome::Failed(KinesisError::internal("shard vanished")),
                    };
                    (slots, records, outcome)
                }
            });
            let results = futures::future::join_all(calls).await;
            let mut sealed = Vec::new();
            for (slots, records, outcome) in results {
                match outcome {
                    ShardOutcome::Appended {
                        shard,
                        first,
                        arrival_ms,
                    } => {
                        let id = ShardIdentity {
                            stream_uid: s.uid,
                            shard_index: shard.index,
                            create_secs: shard.create_secs,
                        };
                        for (k, (i, _)) in slots.into_iter().enumerate() {
                            out[i] = Some(Ok(PutOk {
                                shard_index: shard.index,
                                sequence_number: id.sequence_number(first + k as u64, arrival_ms),
                            }));
                        }
                    }
                    ShardOutcome::Sealed { shard } => {
                        // Not applied: safe to send again once the children take over.
                        sealed.push(shard);
                        for ((i, key), rec) in slots.into_iter().zip(records) {
                            pending.push((i, key, rec));
                        }
                    }
                    ShardOutcome::Failed(e) => {
                        let e = if e.kind == ErrorKind::ProvisionedThroughputExceeded {
                            e
                        } else {
                            KinesisError::internal(e.message)
                        };
                        for (i, _) in slots {
                            out[i] = Some(Err(e.clone()));
                        }
                    }
                }
            }
            if !pending.is_empty() && round + 1 < RESHARD_ROUNDS {
                for shard in sealed {
                    self.wait_resealed(name, shard).await;
                }
            }
        }
        for (i, _, _) in pending {
            out[i] = Some(Err(KinesisError::internal(
                "the shard is being resharded; retry",
            )));
        }
        Ok(out
            .into_iter()
            .map(|o| o.unwrap_or_else(|| Err(KinesisError::internal("record lost in fan-out"))))
            .collect())
    }

    pub(crate) async fn get_shard_iterator_impl(
        &self,
        name: &str,
        shard_index: u32,
        start: IteratorStart,
    ) -> KinesisResult<String> {
        let s = self.stream(name)?;
        let shard = self.shard_of(&s, shard_index)?;
        let closed_end = shard
            .end
            .filter(|_| shard.state == ShardState::Closed)
            .map(|e| e.end_ordinal);
        let position = match start {
            IteratorStart::TrimHorizon => self.position(shard, PositionQuery::TrimHorizon).await?,
            IteratorStart::Latest => match closed_end {
                Some(end) => end,
                None => self.position(shard, PositionQuery::Latest).await?,
            },
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
        let position = match closed_end {
            Some(end) => position.min(end),
            None => position,
        };
        let pos = IteratorPosition {
            stream_uid: s.uid,
            shard_index,
            position,
            issued_at_ms: now_ms(),
        };
        Ok(self.keys()?.encode(&pos))
    }

    fn child_shards(s: &StreamMeta, index: u32) -> Vec<ChildShard> {
        s.children_of(index)
            .filter(|c| c.visible())
            .map(|c| ChildShard {
                index: c.index,
                parents: c.parent.into_iter().chain(c.adjacent_parent).collect(),
                hash_start: c.hash_start,
                hash_end: c.hash_end,
            })
            .collect()
    }

    pub(crate) async fn get_records_impl(
        &self,
        iterator: &str,
        limit: u32,
    ) -> KinesisResult<GetRecordsOut> {
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
        let closed_end = shard
            .end
            .filter(|_| shard.state == ShardState::Closed)
            .map(|e| e.end_ordinal);
        let id = ShardIdentity {
            stream_uid: s.uid,
            shard_index: shard.index,
            create_secs: shard.create_secs,
        };
        let finished = |next_position: u64| closed_end.is_some_and(|end| next_position >= end);
        if finished(pos.position) {
            return Ok(GetRecordsOut {
                records: Vec::new(),
                next_shard_iterator: None,
                millis_behind_latest: 0,
                child_shards: Self::child_shards(&s, shard.index),
            });
        }
        let req = ShardRequest::Read {
            from: pos.position,
            limit: limit.clamp(1, limits::GET_RECORDS_MAX_LIMIT as u32),
            max_bytes: limits::GET_RECORDS_MAX_BYTES as u64,
        };
        let (records, next_ordinal) = match self.router.call(&shard, req).await {
            Ok(ShardReply::Records {
                records,
                next_ordinal,
                ..
            }) => (records, next_ordinal),
            Ok(other) => {
                return Err(KinesisError::internal(format!(
                    "unexpected shard reply {other:?}"
                )))
            }
            Err(e) => return Err(route_error(e)),
        };
        // Reading past the trim point moves the reader forward to it.
        let next_position = records.last().map(|(o, _)| o + 1).unwrap_or(pos.position);
        let millis_behind_latest = match records.last() {
            Some((_, r)) if next_position < next_ordinal => now.saturating_sub(r.arrival_ms),
            _ => 0,
        };
        let out: Vec<RecordOut> = records
            .into_iter()
            .map(|(ordinal, r)| RecordOut {
                sequence_number: id.sequence_number(ordinal, r.arrival_ms),
                arrival_ms: r.arrival_ms,
                data: r.data,
                partition_key: r.partition_key,
            })
            .collect();
        let (next_shard_iterator, child_shards) = if finished(next_position) {
            (None, Self::child_shards(&s, shard.index))
        } else {
            let next = IteratorPosition {
                stream_uid: s.uid,
                shard_index: shard.index,
                position: next_position,
                issued_at_ms: now,
            };
            (Some(keys.encode(&next)), Vec::new())
        };
        Ok(GetRecordsOut {
            records: out,
            next_shard_iterator,
            millis_behind_latest,
            child_shards,
        })
    }
}
