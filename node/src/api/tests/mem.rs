//! A small in-memory [`Backend`] for testing the HTTP layer only: no replication, no
//! throughput limits, trivial iterators. Records whose partition key starts with `fail`
//! are refused with `ProvisionedThroughputExceededException`, to exercise partial failures.

use std::collections::BTreeMap;
use std::sync::Mutex;

use base64::engine::general_purpose::STANDARD;
use base64::Engine as _;
use md5::{Digest as _, Md5};
use spate_proto::kinesis::{KinesisError, KinesisResult};

use crate::api::backend::{AccountSettings, SettingsChange, StreamSettings};
use crate::api::backend::{
    Backend, ConsumerInfo, ConsumerState, GetRecordsOut, IteratorStart, PutEntry, PutOk,
    PutOutcome, RecordOut, ShardEvent, ShardInfo, StreamDescription, StreamMode, StreamStatus,
    Subscription,
};
use crate::api::ident::stream_arn;

pub const REGION: &str = "us-east-1";
pub const ACCOUNT: &str = "000000000000";
pub const CREATED_MS: u64 = 1_795_304_520_743;

struct MemStream {
    desc: StreamDescription,
    /// Records per shard index.
    records: Vec<Vec<RecordOut>>,
    settings: StreamSettings,
    /// Capacity-mode switches (ms), for the 2-per-24-hours limit.
    mode_switches: Vec<u64>,
}

#[derive(Default)]
pub struct MemBackend {
    streams: Mutex<BTreeMap<String, MemStream>>,
    seq: Mutex<u64>,
    /// Consumers by (stream, name); registered consumers are ACTIVE at once.
    consumers: Mutex<BTreeMap<(String, String), ConsumerInfo>>,
    account: Mutex<AccountSettings>,
}

fn not_found(name: &str) -> KinesisError {
    KinesisError::not_found(format!("Stream {name} under account {ACCOUNT} not found."))
}

fn lock<T>(m: &Mutex<T>) -> std::sync::MutexGuard<'_, T> {
    m.lock().unwrap_or_else(|p| p.into_inner())
}

impl MemBackend {
    fn next_seq(&self) -> String {
        let mut s = lock(&self.seq);
        *s += 1;
        format!("{}", 49_000_000_000_000_000u64 + *s)
    }
}

impl Backend for MemBackend {
    async fn create_stream(
        &self,
        name: &str,
        shard_count: Option<u32>,
        mode: StreamMode,
    ) -> KinesisResult<()> {
        let n = shard_count.unwrap_or(4).max(1);
        let step = u128::MAX / u128::from(n);
        let shards = (0..n)
            .map(|i| ShardInfo {
                index: i,
                parent: None,
                adjacent_parent: None,
                hash_start: step * u128::from(i),
                hash_end: if i + 1 == n {
                    u128::MAX
                } else {
                    step * u128::from(i + 1) - 1
                },
                starting_sequence_number: self.next_seq(),
                ending_sequence_number: None,
            })
            .collect();
        let mut streams = lock(&self.streams);
        if streams.contains_key(name) {
            return Err(KinesisError::in_use(format!(
                "Stream {name} under account {ACCOUNT} already exists."
            )));
        }
        streams.insert(
            name.to_string(),
            MemStream {
                desc: StreamDescription {
                    name: name.to_string(),
                    arn: stream_arn(REGION, ACCOUNT, name),
                    status: StreamStatus::Active,
                    mode,
                    created_ms: CREATED_MS,
                    retention_hours: 24,
                    shards,
                    open_shard_count: n,
                    consumer_count: 0,
                },
                records: vec![Vec::new(); n as usize],
                settings: StreamSettings::default(),
                mode_switches: Vec::new(),
            },
        );
        Ok(())
    }

    async fn delete_stream(&self, name: &str, _enforce: bool) -> KinesisResult<()> {
        lock(&self.streams)
            .remove(name)
            .map(|_| ())
            .ok_or_else(|| not_found(name))
    }

    async fn describe_stream(&self, name: &str) -> KinesisResult<StreamDescription> {
        lock(&self.streams)
            .get(name)
            .map(|s| s.desc.clone())
            .ok_or_else(|| not_found(name))
    }

    async fn list_streams(&self) -> KinesisResult<Vec<StreamDescription>> {
        Ok(lock(&self.streams)
            .values()
            .map(|s| s.desc.clone())
            .collect())
    }

    async fn put_records(
        &self,
        name: &str,
        entries: Vec<PutEntry>,
    ) -> KinesisResult<Vec<PutOutcome>> {
        let mut out = Vec::with_capacity(entries.len());
        for e in entries {
            if e.partition_key.starts_with("fail") {
                out.push(Err(KinesisError::throttled(
                    "Rate exceeded for shard shardId-000000000000",
                )));
                continue;
            }
            let hash = e.explicit_hash_key.unwrap_or_else(|| {
                u128::from_be_bytes(Md5::digest(e.partition_key.as_bytes()).into())
            });
            let seq = self.next_seq();
            let mut streams = lock(&self.streams);
            let stream = streams.get_mut(name).ok_or_else(|| not_found(name))?;
            let shard = stream
                .desc
                .shards
                .iter()
                .find(|s| s.hash_start <= hash && hash <= s.hash_end)
                .map(|s| s.index)
                .ok_or_else(|| KinesisError::internal("no shard for hash key"))?;
            stream.records[shard as usize].push(RecordOut {
                sequence_number: seq.clone(),
                arrival_ms: CREATED_MS + 1000,
                data: e.data,
                partition_key: e.partition_key,
            });
            out.push(Ok(PutOk {
                shard_index: shard,
                sequence_number: seq,
            }));
        }
        Ok(out)
    }

    async fn get_shard_iterator(
        &self,
        name: &str,
        shard_index: u32,
        start: IteratorStart,
    ) -> KinesisResult<String> {
        let streams = lock(&self.streams);
        let stream = streams.get(name).ok_or_else(|| not_found(name))?;
        let records = stream.records.get(shard_index as usize).ok_or_else(|| {
            KinesisError::not_found(format!(
                "Shard {shard_index} in stream {name} does not exist"
            ))
        })?;
        let pos = match start {
            IteratorStart::TrimHorizon | IteratorStart::AtTimestamp(_) => 0,
            _ => records.len(),
        };
        Ok(STANDARD.encode(format!("{name}/{shard_index}/{pos}")))
    }

    async fn get_records(&self, iterator: &str, limit: u32) -> KinesisResult<GetRecordsOut> {
        let invalid = || KinesisError::invalid("Invalid ShardIterator.");
        let raw = STANDARD.decode(iterator).map_err(|_| invalid())?;
        let raw = String::from_utf8(raw).map_err(|_| invalid())?;
        let mut parts = raw.split('/');
        let (Some(name), Some(shard), Some(pos)) = (parts.next(), parts.next(), parts.next())
        else {
            return Err(invalid());
        };
        let shard: usize = shard.parse().map_err(|_| invalid())?;
        let pos: usize = pos.parse().map_err(|_| invalid())?;
        let streams = lock(&self.streams);
        let stream = streams.get(name).ok_or_else(|| not_found(name))?;
        let records = stream.records.get(shard).ok_or_else(invalid)?;
        let page: Vec<RecordOut> = records
            .iter()
            .skip(pos)
            .take(limit as usize)
            .cloned()
            .collect();
        let next = pos + page.len();
        Ok(GetRecordsOut {
            records: page,
            next_shard_iterator: Some(STANDARD.encode(format!("{name}/{shard}/{next}"))),
            millis_behind_latest: 0,
            child_shards: Vec::new(),
        })
    }

    async fn split_shard(&self, name: &str, _shard: u32, _key: u128) -> KinesisResult<()> {
        self.describe_stream(name).await.map(|_| ())
    }

    async fn merge_shards(&self, name: &str, _a: u32, _b: u32) -> KinesisResult<()> {
        self.describe_stream(name).await.map(|_| ())
    }

    async fn update_shard_count(&self, name: &str, _target: u32) -> KinesisResult<u32> {
        self.describe_stream(name).await.map(|d| d.open_shard_count)
    }

    async fn set_retention(&self, name: &str, _hours: u32, _increase: bool) -> KinesisResult<()> {
        self.describe_stream(name).await.map(|_| ())
    }

    async fn register_consumer(&self, name: &str, consumer: &str) -> KinesisResult<ConsumerInfo> {
        self.describe_stream(name).await?;
        let mut all = lock(&self.consumers);
        let key = (name.to_string(), consumer.to_string());
        if all.contains_key(&key) {
            return Err(KinesisError::in_use(format!("Consumer {consumer} exists")));
        }
        let c = ConsumerInfo {
            name: consumer.to_string(),
            created_secs: CREATED_MS / 1000,
            status: ConsumerState::Active,
        };
        all.insert(key, c.clone());
        Ok(ConsumerInfo {
            status: ConsumerState::Creating,
            ..c
        })
    }

    async fn deregister_consumer(
        &self,
        name: &str,
        consumer: &str,
        created_secs: Option<u64>,
    ) -> KinesisResult<()> {
        self.describe_consumer(name, consumer, created_secs).await?;
        lock(&self.consumers).remove(&(name.to_string(), consumer.to_string()));
        Ok(())
    }

    async fn describe_consumer(
        &self,
        name: &str,
        consumer: &str,
        created_secs: Option<u64>,
    ) -> KinesisResult<ConsumerInfo> {
        lock(&self.consumers)
            .get(&(name.to_string(), consumer.to_string()))
            .filter(|c| created_secs.is_none_or(|t| t == c.created_secs))
            .cloned()
            .ok_or_else(|| KinesisError::not_found(format!("Consumer {consumer} not found")))
    }

    async fn list_consumers(&self, name: &str) -> KinesisResult<Vec<ConsumerInfo>> {
        self.describe_stream(name).await?;
        Ok(lock(&self.consumers)
            .iter()
            .filter(|((s, _), _)| s == name)
            .map(|(_, c)| c.clone())
            .collect())
    }

    /// One event with the records from the start position, then the end.
    async fn subscribe_to_shard(
        &self,
        name: &str,
        consumer: &str,
        created_secs: u64,
        shard_index: u32,
        start: IteratorStart,
    ) -> KinesisResult<Subscription> {
        self.describe_consumer(name, consumer, Some(created_secs))
            .await?;
        let it = self.get_shard_iterator(name, shard_index, start).await?;
        let out = self.get_records(&it, 10_000).await?;
        let (tx, rx) = tokio::sync::mpsc::channel(1);
        let continuation = out.records.last().map(|r| r.sequence_number.clone());
        let ev = ShardEvent {
            records: out.records,
            continuation_sequence_number: continuation.or_else(|| Some("0".into())),
            millis_behind_latest: 0,
            child_shards: Vec::new(),
        };
        tx.try_send(Ok(ev))
            .map_err(|_| KinesisError::internal("channel full"))?;
        Ok(rx)
    }

    async fn stream_settings(&self, name: &str) -> KinesisResult<StreamSettings> {
        lock(&self.streams)
            .get(name)
            .map(|s| s.settings.clone())
            .ok_or_else(|| not_found(name))
    }

    async fn change_settings(&self, name: &str, change: SettingsChange) -> KinesisResult<()> {
        if lock(&self.account).apply(&change) {
            return Ok(());
        }
        let mut streams = lock(&self.streams);
        let s = streams.get_mut(name).ok_or_else(|| not_found(name))?;
        s.settings
            .apply(name, &change)
            .map_err(|e| KinesisError::invalid(e.to_string()))
    }

    async fn account_settings(&self) -> KinesisResult<AccountSettings> {
        Ok(lock(&self.account).clone())
    }

    /// Switches at once (no UPDATING phase in memory), with the cluster's 24-hour rule.
    async fn update_stream_mode(&self, name: &str, mode: StreamMode) -> KinesisResult<()> {
        let mut streams = lock(&self.streams);
        let s = streams.get_mut(name).ok_or_else(|| not_found(name))?;
        if s.desc.mode == mode {
            return Err(KinesisError::invalid(format!(
                "Stream {name} is already in {} mode.",
                mode.as_str()
            )));
        }
        let now = crate::api::token::now_ms();
        s.mode_switches =
            spate_control_plane::meta::mode::record_switch(name, &s.mode_switches, now)
                .map_err(KinesisError::limit)?;
        s.desc.mode = mode;
        Ok(())
    }

    fn region(&self) -> &str {
        REGION
    }

    fn account_id(&self) -> &str {
        ACCOUNT
    }
}
