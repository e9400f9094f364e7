//! Enhanced fan-out on the cluster: consumer registration through the metadata group, and
//! SubscribeToShard subscriptions.
//!
//! A subscription is one task per (consumer, shard) feeding a bounded channel. It reads
//! with [`ShardRequest::ReadLeased`], which the shard leader answers as soon as records past
//! the position are applied (it waits on the replica's progress watch, locally or behind a
//! forwarded call), so records are pushed when committed without a polling loop. An idle
//! wait ends after [`IDLE_WAIT_MS`] and yields an empty event (the keep-alive). Each
//! subscription has its own 2 MiB/s token bucket, and at most [`CHANNEL_EVENTS`] events of
//! at most [`MAX_EVENT_BYTES`] each wait for a slow reader: a full channel stops reading.
//!
//! Leases are cluster-wide: a subscription takes its consumer's lease on the shard at the
//! shard's Raft leader ([`ShardRequest::LeaseAcquire`], table in
//! [`crate::shard::lease`]) wherever the request arrived. A second subscription within
//! [`TAKEOVER_AFTER`] of the holder's start is refused with `ResourceInUseException`; a later
//! one takes over: a holder on this node is ended at once, a holder elsewhere when its
//! waiting or next read is answered `LeaseLost` (a holder blocked on a slow reader learns
//! it only when it reads again). Every read carries the claim, which also rebuilds the
//! table on a new leader; until the holder's next read reaches it (about one read round
//! after a failover) a new leader may grant a second concurrent subscription.
//! Subscriptions end after [`subscription_duration`] (5 minutes;
//! `SPATE_EFO_SUBSCRIPTION_SECS` overrides it for tests).

use std::collections::HashMap;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use spate_control_plane::meta::consumers::{
    check_stream_deletion, ConsumerCommand, ConsumerMeta, ConsumerStatus, IN_USE, LIMIT, NOT_FOUND,
};
use spate_control_plane::meta::state::{ShardMeta, ShardState, StreamMeta};
use spate_control_plane::meta::{MetaCommand, MetaError, MetaHandle, MetaResponse};
use spate_proto::kinesis::ids::shard_id;
use spate_proto::kinesis::{KinesisError, KinesisResult};
use tokio::sync::{mpsc, watch};

use super::{propose_error, route_error, ClusterBackend};
use crate::api::backend::{
    Backend, ChildShard, ConsumerInfo, ConsumerState, IteratorStart, RecordOut, ShardEvent,
    Subscription,
};
use crate::shard::batcher::now_ms;
use crate::shard::lease::LeaseClaim;
use crate::shard::replica::{ShardReply, ShardRequest};
use crate::shard::ShardIdentity;

/// How long an idle subscription waits for records before sending an empty event.
pub const IDLE_WAIT_MS: u64 = 2_000;
/// Largest event payload (records' data and partition keys).
pub const MAX_EVENT_BYTES: u64 = 1024 * 1024;
/// Most records in one event.
pub const MAX_EVENT_RECORDS: u32 = 10_000;
/// Events buffered per subscription before reading stops.
pub const CHANNEL_EVENTS: usize = 2;
/// Read throughput of each consumer on each shard.
pub const BYTES_PER_SEC: u64 = 2 * 1024 * 1024;
pub use crate::shard::lease::TAKEOVER_AFTER;
/// Delay before a new consumer turns ACTIVE / a deregistered one disappears.
const TRANSITION_DELAY: Duration = Duration::from_millis(300);

/// How long a subscription lasts: 5 minutes, or `SPATE_EFO_SUBSCRIPTION_SECS`.
pub fn subscription_duration() -> Duration {
    let secs = std::env::var("SPATE_EFO_SUBSCRIPTION_SECS")
        .ok()
        .and_then(|v| v.trim().parse::<u64>().ok())
        .filter(|s| *s > 0)
        .unwrap_or(300);
    Duration::from_secs(secs)
}

/// (stream uid, consumer name, consumer creation seconds, shard index).
type SubKey = (u64, String, u64, u32);

/// This node's subscriptions, by lease holder token, so that a takeover arriving at this
/// node ends a local holder at once (remote holders learn it on their next read).
#[derive(Default)]
pub struct EfoState {
    subs: Mutex<HashMap<u64, watch::Sender<bool>>>,
}

impl EfoState {
    fn subs(&self) -> std::sync::MutexGuard<'_, HashMap<u64, watch::Sender<bool>>> {
        self.subs.lock().unwrap_or_else(|p| p.into_inner())
    }

    /// A fresh holder token and the receiver that says when to stop.
    fn register(&self) -> (u64, watch::Receiver<bool>) {
        let mut subs = self.subs();
        loop {
            let token = rand::random::<u64>();
            if let std::collections::hash_map::Entry::Vacant(v) = subs.entry(token) {
                let (tx, rx) = watch::channel(false);
                v.insert(tx);
                return (token, rx);
            }
        }
    }

    fn cancel(&self, token: u64) {
        if let Some(tx) = self.subs().get(&token) {
            tx.send_replace(true);
        }
    }

    fn remove(&self, token: u64) {
        self.subs().remove(&token);
    }
}

/// Takes the cluster-wide lease of `claim` at the shard's leader.
async fn acquire(b: &ClusterBackend, shard: &ShardMeta, claim: &LeaseClaim) -> KinesisResult<()> {
    match b
        .router
        .call(shard, ShardRequest::LeaseAcquire(claim.clone()))
        .await
    {
        Ok(ShardReply::LeaseGranted { replaced }) => {
            if let Some(old) = replaced {
                b.efo.cancel(old);
            }
            Ok(())
        }
        Ok(ShardReply::LeaseInUse { age_ms }) => Err(KinesisError::in_use(format!(
            "Another active subscription exists for consumer {} on {} (started {age_ms} ms ago); \
             retry after 5 seconds.",
            claim.consumer,
            shard_id(shard.index)
        ))),
        Ok(other) => Err(KinesisError::internal(format!(
            "unexpected shard reply {other:?}"
        ))),
        Err(e) => Err(route_error(e)),
    }
}

fn info(c: &ConsumerMeta) -> ConsumerInfo {
    ConsumerInfo {
        name: c.name.clone(),
        created_secs: c.created_secs,
        status: match c.status {
            ConsumerStatus::Creating => ConsumerState::Creating,
            ConsumerStatus::Active => ConsumerState::Active,
            ConsumerStatus::Deleting => ConsumerState::Deleting,
        },
    }
}

fn consumer_not_found(b: &ClusterBackend, stream: &str, consumer: &str) -> KinesisError {
    KinesisError::not_found(format!(
        "Consumer {consumer} on stream {stream} under account {} not found.",
        b.account_id
    ))
}

/// The consumer `consumer` of `s` (of incarnation `created_secs` if given).
fn find<'a>(
    b: &ClusterBackend,
    s: &'a StreamMeta,
    consumer: &str,
    created_secs: Option<u64>,
) -> KinesisResult<&'a ConsumerMeta> {
    s.consumers
        .iter()
        .find(|c| c.name == consumer && created_secs.is_none_or(|t| t == c.created_secs))
        .ok_or_else(|| consumer_not_found(b, &s.name, consumer))
}

/// Proposes a consumer command and maps refusals to Kinesis errors.
async fn propose(b: &ClusterBackend, stream: &str, cmd: ConsumerCommand) -> KinesisResult<()> {
    let answer = b
        .meta
        .propose(MetaCommand::Consumer(cmd))
        .await
        .map_err(propose_error)?;
    match answer {
        MetaResponse::Failed(MetaError::StreamNotFound(_)) => Err(b.not_found(stream)),
        MetaResponse::Failed(MetaError::Invalid(m)) => {
            Err(if let Some(m) = m.strip_prefix(IN_USE) {
                KinesisError::in_use(m)
            } else if let Some(m) = m.strip_prefix(LIMIT) {
                KinesisError::limit(m)
            } else if let Some(m) = m.strip_prefix(NOT_FOUND) {
                KinesisError::not_found(m)
            } else {
                KinesisError::invalid(m)
            })
        }
        MetaResponse::Failed(e) => Err(KinesisError::internal(e.to_string())),
        _ => Ok(()),
    }
}

/// Proposes a follow-up transition after [`TRANSITION_DELAY`], retrying while the
/// control plane has no leader.
fn later(meta: MetaHandle, cmd: ConsumerCommand) {
    tokio::spawn(async move {
        for _ in 0..20 {
            tokio::time::sleep(TRANSITION_DELAY).await;
            match meta.propose(MetaCommand::Consumer(cmd.clone())).await {
                Ok(_) => return,
                Err(e) => tracing::debug!(error = %e, "consumer transition not proposed yet"),
            }
        }
        tracing::warn!(command = %cmd, "consumer transition abandoned");
    });
}

pub async fn register(
    b: &ClusterBackend,
    stream: &str,
    consumer: &str,
) -> KinesisResult<ConsumerInfo> {
    let s = b.stream(stream)?;
    let now_secs = now_ms() / 1000;
    propose(
        b,
        stream,
        ConsumerCommand::Register {
            stream: stream.to_string(),
            name: consumer.to_string(),
            now_secs,
        },
    )
    .await?;
    // Make sure the registration belongs to this stream incarnation.
    let view = b.meta.view();
    let current = view.state.streams.get(stream).filter(|x| x.uid == s.uid);
    let c = current
        .and_then(|x| x.consumers.iter().find(|c| c.name == consumer))
        .map(info)
        .ok_or_else(|| consumer_not_found(b, stream, consumer))?;
    later(
        b.meta.clone(),
        ConsumerCommand::Activate {
            stream: stream.to_string(),
            name: consumer.to_string(),
            created_secs: c.created_secs,
        },
    );
    Ok(c)
}

pub async fn deregister(
    b: &ClusterBackend,
    stream: &str,
    consumer: &str,
    created_secs: Option<u64>,
) -> KinesisResult<()> {
    let s = b.stream(stream)?;
    let created = find(b, &s, consumer, created_secs)?.created_secs;
    propose(
        b,
        stream,
        ConsumerCommand::Deregister {
            stream: stream.to_string(),
            name: consumer.to_string(),
        },
    )
    .await?;
    later(
        b.meta.clone(),
        ConsumerCommand::Remove {
            stream: stream.to_string(),
            name: consumer.to_string(),
            created_secs: created,
        },
    );
    Ok(())
}

pub fn describe(
    b: &ClusterBackend,
    stream: &str,
    consumer: &str,
    created_secs: Option<u64>,
) -> KinesisResult<ConsumerInfo> {
    let s = b.stream(stream)?;
    find(b, &s, consumer, created_secs).map(info)
}

pub fn list(b: &ClusterBackend, stream: &str) -> KinesisResult<Vec<ConsumerInfo>> {
    Ok(b.stream(stream)?.consumers.iter().map(info).collect())
}

/// DeleteStream's `EnforceConsumerDeletion` check.
pub fn check_delete(b: &ClusterBackend, stream: &str, enforce: bool) -> KinesisResult<()> {
    let s = b.stream(stream)?;
    check_stream_deletion(&s, enforce).map_err(KinesisError::in_use)
}

/// Everything a subscription task needs, detached from the request.
struct Feed {
    backend: ClusterBackend,
    efo: Arc<EfoState>,
    key: SubKey,
    /// The lease claim (its `age_ms` is refreshed from `started` on each read).
    claim: LeaseClaim,
    started: Instant,
    shard: ShardMeta,
    cancel: watch::Receiver<bool>,
    stopping: NodeStopping,
    stream: String,
    id: ShardIdentity,
    from: u64,
    deadline: tokio::time::Instant,
    tx: mpsc::Sender<KinesisResult<ShardEvent>>,
}

pub async fn subscribe(
    b: &ClusterBackend,
    stream: &str,
    consumer: &str,
    created_secs: u64,
    shard_index: u32,
    start: IteratorStart,
) -> KinesisResult<Subscription> {
    let s = b.stream(stream)?;
    let c = find(b, &s, consumer, Some(created_secs))?;
    match c.status {
        ConsumerStatus::Active => {}
        ConsumerStatus::Creating => {
            return Err(KinesisError::in_use(format!(
                "Consumer {consumer} is not ACTIVE yet."
            )))
        }
        ConsumerStatus::Deleting => return Err(consumer_not_found(b, stream, consumer)),
    }
    let shard = b.shard_of(&s, shard_index)?.clone();
    let iterator = b.get_shard_iterator(stream, shard_index, start).await?;
    let from = b.keys()?.decode(&iterator, now_ms())?.position;
    let key = (s.uid, consumer.to_string(), created_secs, shard_index);
    let (holder, cancel) = b.efo.register();
    let claim = LeaseClaim {
        consumer: consumer.to_string(),
        consumer_created_secs: created_secs,
        holder,
        age_ms: 0,
    };
    if let Err(e) = acquire(b, &shard, &claim).await {
        b.efo.remove(holder);
        return Err(e);
    }
    let started = Instant::now();
    let (tx, rx) = mpsc::channel(CHANNEL_EVENTS);
    let feed = Feed {
        backend: ClusterBackend::new(
            b.meta.clone(),
            b.router.clone(),
            b.region.clone(),
            b.account_id.clone(),
        ),
        efo: b.efo.clone(),
        key,
        claim,
        started,
        shard: shard.clone(),
        cancel,
        stopping: node_stopping(&b.meta),
        stream: stream.to_string(),
        id: ShardIdentity {
            stream_uid: s.uid,
            shard_index,
            create_secs: shard.create_secs,
        },
        from,
        deadline: tokio::time::Instant::now() + subscription_duration(),
        tx,
    };
    tokio::spawn(async move {
        let (efo, router) = (feed.efo.clone(), feed.backend.router.clone());
        let (claim, shard) = (feed.claim.clone(), feed.shard.clone());
        let stopped = feed.run().await;
        efo.remove(claim.holder);
        if !stopped {
            // Best effort: a lease left behind stops mattering 5 s after it was taken.
            let _ = router.call(&shard, ShardRequest::LeaseRelease(claim)).await;
        }
    });
    Ok(rx)
}

/// Waits for `fut` unless the subscription ends first (deadline, takeover, reader gone).
async fn guard<T>(
    deadline: tokio::time::Instant,
    cancel: &mut watch::Receiver<bool>,
    stopping: &mut NodeStopping,
    tx: &mpsc::Sender<KinesisResult<ShardEvent>>,
    fut: impl std::future::Future<Output = T>,
) -> Result<T, Stop> {
    tokio::select! {
        v = fut => Ok(v),
        _ = stopping => Err(Stop::NodeStopping),
        _ = tokio::time::sleep_until(deadline) => Err(Stop::Quiet),
        _ = cancel.wait_for(|c| *c) => Err(Stop::Quiet),
        _ = tx.closed() => Err(Stop::Quiet),
    }
}

/// Completes when this node's metadata Raft shuts down (the node is stopping), so that
/// subscriptions do not hold the API's graceful shutdown open.
type NodeStopping = std::pin::Pin<Box<dyn std::future::Future<Output = ()> + Send + Sync>>;

fn node_stopping(meta: &MetaHandle) -> NodeStopping {
    use openraft::async_runtime::WatchReceiver as _;
    let mut metrics = meta.raft().metrics();
    Box::pin(async move {
        loop {
            if metrics.borrow_watched().state == openraft::ServerState::Shutdown {
                return;
            }
            if metrics.changed().await.is_err() {
                return;
            }
        }
    })
}

/// Why a feed step stopped the subscription.
enum Stop {
    /// Ended quietly (deadline, takeover, reader gone).
    Quiet,
    /// This node is stopping.
    NodeStopping,
    /// Ended with an exception event.
    Error(KinesisError),
}

impl Feed {
    /// Feeds until the subscription ends; true if it ended because the node is stopping.
    async fn run(mut self) -> bool {
        let mut bucket = (BYTES_PER_SEC, tokio::time::Instant::now());
        let mut continuation = self.position_sequence(self.from);
        loop {
            match self.step(&mut continuation, &mut bucket).await {
                Ok(()) => {}
                Err(Stop::Quiet) => return false,
                Err(Stop::NodeStopping) => return true,
                Err(Stop::Error(e)) => {
                    let _ = self.tx.send(Err(e)).await;
                    return false;
                }
            }
        }
    }

    /// The sequence number just before `ordinal` (what a subscription continues after).
    fn position_sequence(&self, ordinal: u64) -> String {
        let before = ordinal.saturating_sub(1);
        let arrival = if before == 0 {
            self.id.create_secs * 1000
        } else {
            now_ms()
        };
        self.id.sequence_number(before, arrival)
    }

    /// The current shard, checking stream and consumer still exist.
    fn current(&self) -> Result<(StreamMeta, ShardMeta), Stop> {
        let view = self.backend.meta.view();
        let s = view
            .state
            .streams
            .get(&self.stream)
            .filter(|s| s.uid == self.id.stream_uid)
            .ok_or_else(|| Stop::Error(self.backend.not_found(&self.stream)))?;
        let consumer_ok = s.consumers.iter().any(|c| {
            c.name == self.key.1
                && c.created_secs == self.key.2
                && c.status == ConsumerStatus::Active
        });
        if !consumer_ok {
            return Err(Stop::Error(consumer_not_found(
                &self.backend,
                &self.stream,
                &self.key.1,
            )));
        }
        let shard = s
            .shard(self.id.shard_index)
            .cloned()
            .ok_or_else(|| Stop::Error(KinesisError::not_found("The shard no longer exists.")))?;
        Ok((s.clone(), shard))
    }

    async fn step(
        &mut self,
        continuation: &mut String,
        bucket: &mut (u64, tokio::time::Instant),
    ) -> Result<(), Stop> {
        let (s, shard) = self.current()?;
        let mut claim = self.claim.clone();
        claim.age_ms = self.started.elapsed().as_millis() as u64;
        let req = ShardRequest::ReadLeased {
            from: self.from,
            limit: MAX_EVENT_RECORDS,
            max_bytes: MAX_EVENT_BYTES,
            wait_ms: IDLE_WAIT_MS,
            claim,
        };
        let router = self.backend.router.clone();
        let reply = guard(
            self.deadline,
            &mut self.cancel,
            &mut self.stopping,
            &self.tx,
            router.call(&shard, req),
        )
        .await?;
        let (records, next_ordinal) = match reply {
            Ok(ShardReply::Records {
                records,
                next_ordinal,
                ..
            }) => (records, next_ordinal),
            Ok(ShardReply::LeaseLost) => {
                tracing::debug!(consumer = %self.key.1, shard = self.key.3, "subscription taken over");
                return Err(Stop::Quiet);
            }
            Ok(other) => {
                return Err(Stop::Error(KinesisError::internal(format!(
                    "unexpected shard reply {other:?}"
                ))))
            }
            Err(e) => return Err(Stop::Error(route_error(e))),
        };
        if records.is_empty() && shard.state == ShardState::Closed && self.from >= next_ordinal {
            let ev = self.shard_end(&s, &shard).await;
            let _ = guard(
                self.deadline,
                &mut self.cancel,
                &mut self.stopping,
                &self.tx,
                self.tx.send(Ok(ev)),
            )
            .await;
            return Err(Stop::Quiet);
        }
        let now = now_ms();
        let mut bytes = 0u64;
        let mut out = Vec::with_capacity(records.len());
        for (ordinal, r) in records {
            bytes += (r.data.len() + r.partition_key.len()) as u64;
            *continuation = self.id.sequence_number(ordinal, r.arrival_ms);
            self.from = ordinal + 1;
            out.push(RecordOut {
                sequence_number: continuation.clone(),
                arrival_ms: r.arrival_ms,
                data: r.data,
                partition_key: r.partition_key,
            });
        }
        let millis_behind_latest = match out.last() {
            Some(r) if self.from < next_ordinal => now.saturating_sub(r.arrival_ms),
            _ => 0,
        };
        let ev = ShardEvent {
            records: out,
            continuation_sequence_number: Some(continuation.clone()),
            millis_behind_latest,
            child_shards: Vec::new(),
        };
        let sent = guard(
            self.deadline,
            &mut self.cancel,
            &mut self.stopping,
            &self.tx,
            self.tx.send(Ok(ev)),
        )
        .await?;
        if sent.is_err() {
            return Err(Stop::Quiet);
        }
        self.throttle(bucket, bytes).await
    }

    /// Token bucket of [`BYTES_PER_SEC`] (burst one second): sleeps off any debt.
    async fn throttle(
        &mut self,
        bucket: &mut (u64, tokio::time::Instant),
        bytes: u64,
    ) -> Result<(), Stop> {
        let now = tokio::time::Instant::now();
        let refill = now.duration_since(bucket.1).as_millis() as u64 * BYTES_PER_SEC / 1000;
        bucket.0 = (bucket.0 + refill).min(BYTES_PER_SEC);
        bucket.1 = now;
        if bytes <= bucket.0 {
            bucket.0 -= bytes;
            return Ok(());
        }
        let debt = bytes - bucket.0;
        bucket.0 = 0;
        let wait = Duration::from_millis(debt * 1000 / BYTES_PER_SEC);
        guard(
            self.deadline,
            &mut self.cancel,
            &mut self.stopping,
            &self.tx,
            tokio::time::sleep(wait),
        )
        .await?;
        bucket.1 = tokio::time::Instant::now();
        Ok(())
    }

    /// The last event of a closed shard: its children, no continuation. Uses what
    /// GetRecords reports at the shard's end, else the shard map.
    async fn shard_end(&self, s: &StreamMeta, shard: &ShardMeta) -> ShardEvent {
        let mut children = Vec::new();
        if let Ok(keys) = self.backend.keys() {
            let it = keys.encode(&spate_proto::kinesis::iterator::IteratorPosition {
                stream_uid: s.uid,
                shard_index: shard.index,
                position: self.from,
                issued_at_ms: now_ms(),
            });
            if let Ok(out) = self.backend.get_records(&it, 1).await {
                children = out.child_shards;
            }
        }
        if children.is_empty() {
            children = s
                .shards
                .iter()
                .filter(|c| c.parent == Some(shard.index) || c.adjacent_parent == Some(shard.index))
                .map(|c| ChildShard {
                    index: c.index,
                    parents: c.parent.into_iter().chain(c.adjacent_parent).collect(),
                    hash_start: c.hash_start,
                    hash_end: c.hash_end,
                })
                .collect();
        }
        ShardEvent {
            records: Vec::new(),
            continuation_sequence_number: None,
            millis_behind_latest: 0,
            child_shards: children,
        }
    }
}
