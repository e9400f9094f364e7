//! One hosted shard group and the requests it serves. Requests arrive from the local API or
//! forwarded from other nodes as postcard-encoded [`ShardRequest`]s.
//!
//! Reads are answered from this replica's applied (hence committed) state; the router sends
//! them to the leader first, so a reader sees its own acknowledged writes, and falls back to
//! a follower when the leader is unreachable.

use openraft::async_runtime::WatchReceiver;
use std::sync::{Arc, Mutex};
use std::time::Instant;

use serde::{Deserialize, Serialize};
use spate_control_plane::raft::GroupId;
use tokio::sync::{mpsc, oneshot, watch};

use super::batcher::now_ms;
use super::batcher::PutJob;
use super::lease::{Acquired, LeaseClaim, LeaseTable};
use super::metrics::CapacityMetrics;
use super::store::{Progress, ShardStore, StoredRecord};
use super::throttle::{EffectiveLimits, Limits, LoadBucket, LoadMeter, ShardThrottle, Throttled};
use super::{RecordIn, ShardCommand, ShardIdentity, ShardRaft, ShardResponse};
use openraft::errors::{ClientWriteError, RaftError};

/// Where an iterator starts, resolved on a replica.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub enum PositionQuery {
    TrimHorizon,
    Latest,
    AtTimestamp(u64),
}

/// A request to a shard group.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub enum ShardRequest {
    Put {
        records: Vec<RecordIn>,
    },
    Read {
        from: u64,
        limit: u32,
        max_bytes: u64,
    },
    Position(PositionQuery),
    Status,
    /// Seal the shard (split/merge); answered with `Sealed`. Leader only; idempotent.
    Seal,
    /// Trim records that arrived before `cutoff_ms` (retention). Leader only.
    Trim {
        cutoff_ms: u64,
    },
    /// A `Read` that first waits (on applied progress, no polling) until records at or
    /// past `from` exist or `wait_ms` passes. Serves SubscribeToShard.
    ReadWait {
        from: u64,
        limit: u32,
        max_bytes: u64,
        wait_ms: u64,
    },
    /// The accepted writes of the last `secs` complete seconds (autoscaler). Leader only.
    Load {
        secs: u32,
    },
    /// Take the subscription lease of a consumer on this shard (SubscribeToShard), answered
    /// `LeaseGranted` or `LeaseInUse`. Leader only.
    LeaseAcquire(LeaseClaim),
    /// A `ReadWait` of the subscription holding `claim`, answered `LeaseLost` (also while
    /// waiting) once another subscription has taken the lease over. Leader only; a follower
    /// that knows no leader serves it as a plain `ReadWait`.
    ReadLeased {
        from: u64,
        limit: u32,
        max_bytes: u64,
        wait_ms: u64,
        claim: LeaseClaim,
    },
    /// The subscription holding `claim` ended. Leader only; answered `LeaseReleased`.
    LeaseRelease(LeaseClaim),
}

/// Longest wait a `ReadWait` may ask for (below the router's per-hop timeout).
pub const MAX_READ_WAIT_MS: u64 = 3_000;

/// A replica's view of its group.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct ReplicaStatus {
    pub group: GroupId,
    pub leader: Option<u64>,
    pub members: Vec<u64>,
    pub last_applied: u64,
    pub next_ordinal: u64,
    pub trim_ordinal: u64,
    pub sealed_end: Option<u64>,
    /// Index of the last purged Raft log entry (0: none purged).
    pub log_purged: u64,
    /// Index of the last log entry (the log holds `log_purged + 1 ..= log_last`).
    pub log_last: u64,
    /// Index covered by the last snapshot (0: none).
    pub snapshot_index: u64,
}

/// The answer to a [`ShardRequest`].
#[derive(Debug, Clone, Serialize, Deserialize)]
pub enum ShardReply {
    Appended {
        first_ordinal: u64,
        arrival_ms: u64,
    },
    Records {
        records: Vec<(u64, StoredRecord)>,
        next_ordinal: u64,
        last_arrival_ms: u64,
        /// The end ordinal once the shard is sealed.
        sealed_end: Option<u64>,
    },
    /// The shard is sealed (answer to `Seal`, and to a put that arrived after the seal).
    Sealed {
        end_ordinal: u64,
        sealed_ms: u64,
    },
    Trimmed {
        trim_ordinal: u64,
    },
    Position(u64),
    Status(ReplicaStatus),
    /// This replica cannot write; `leader` is its best guess of who can.
    NotLeader {
        leader: Option<u64>,
    },
    /// The shard's write queue is full.
    Overloaded,
    /// Refused by the shard's throughput limits; nothing was applied.
    Throttled(String),
    /// Accepted writes per second, oldest first (answer to `Load`).
    Load(Vec<LoadBucket>),
    /// The group cannot serve right now (nothing was applied).
    Unavailable(String),
    /// A put was handed to Raft but its fate is unknown (leadership lost or the group
    /// stopped before the answer): it may or may not be applied, so it must not be retried
    /// on another replica behind the client's back.
    OutcomeUnknown(String),
    /// The lease is the claimant's (`replaced`: the holder it took over from).
    LeaseGranted {
        replaced: Option<u64>,
    },
    /// A subscription younger than the takeover delay holds the lease.
    LeaseInUse {
        age_ms: u64,
    },
    /// Another subscription took the claimant's lease over.
    LeaseLost,
    LeaseReleased,
}

/// A shard group hosted on this node.
pub struct ShardReplica {
    pub group: GroupId,
    pub identity: ShardIdentity,
    pub raft: ShardRaft,
    pub store: ShardStore,
    pub progress: Arc<Progress>,
    puts: mpsc::Sender<PutJob>,
    capacity: Capacity,
    throttle: Mutex<ShardThrottle>,
    meter: Mutex<LoadMeter>,
    /// Subscription leases, meaningful while this replica leads (in memory only).
    leases: Mutex<LeaseTable>,
    /// Triggers a snapshot (and so a log purge) every checkpoint round of the node.
    snapshotter: tokio::task::JoinHandle<()>,
}

impl Drop for ShardReplica {
    fn drop(&mut self) {
        self.snapshotter.abort();
    }
}

/// The node-wide capacity settings every replica shares.
#[derive(Debug, Clone, Default)]
pub struct Capacity {
    pub limits: Limits,
    pub metrics: CapacityMetrics,
}

impl ShardReplica {
    pub fn new(
        group: GroupId,
        identity: ShardIdentity,
        raft: ShardRaft,
        store: ShardStore,
        capacity: Capacity,
        checkpoint_rounds: watch::Receiver<u64>,
        keep_entries: u64,
    ) -> Self {
        let puts = super::batcher::spawn(raft.clone());
        let progress = store.progress();
        let throttle = Mutex::new(ShardThrottle::new(&capacity.limits, Instant::now()));
        let snapshotter = tokio::spawn(snapshot_and_purge(
            group,
            raft.clone(),
            store.clone(),
            checkpoint_rounds,
            keep_entries,
        ));
        Self {
            group,
            identity,
            raft,
            store,
            progress,
            puts,
            capacity,
            throttle,
            meter: Mutex::new(LoadMeter::default()),
            leases: Mutex::new(LeaseTable::default()),
            snapshotter,
        }
    }

    fn throttle(&self) -> std::sync::MutexGuard<'_, ShardThrottle> {
        self.throttle.lock().unwrap_or_else(|p| p.into_inner())
    }

    /// Applies the stream's current limits (cluster `[limits]` with its per-stream
    /// overrides); a no-op when they are unchanged.
    pub fn set_limits(&self, limits: EffectiveLimits) {
        self.throttle().set_limits(limits, Instant::now());
    }

    fn meter(&self) -> std::sync::MutexGuard<'_, LoadMeter> {
        self.meter.lock().unwrap_or_else(|p| p.into_inner())
    }

    fn leases(&self) -> std::sync::MutexGuard<'_, LeaseTable> {
        self.leases.lock().unwrap_or_else(|p| p.into_inner())
    }

    fn not_leader(&self) -> ShardReply {
        ShardReply::NotLeader {
            leader: self.raft.metrics().borrow_watched().current_leader,
        }
    }

    /// Waits (on applied progress, no polling) until records at or past `from` exist or
    /// `wait_ms` passes, then reads; with a lease claim, answers `LeaseLost` as soon as the
    /// claim is taken over.
    async fn read_wait(
        &self,
        from: u64,
        limit: u32,
        max_bytes: u64,
        wait_ms: u64,
        claim: Option<&LeaseClaim>,
    ) -> ShardReply {
        let mut tip = self.progress.subscribe();
        let mut changes = self.leases().changes();
        let held = |r: &Self| claim.is_none_or(|c| r.leases().check(c, Instant::now()));
        if !held(self) {
            return ShardReply::LeaseLost;
        }
        let wait = std::time::Duration::from_millis(wait_ms.min(MAX_READ_WAIT_MS));
        let until = tokio::time::Instant::now() + wait;
        loop {
            tokio::select! {
                // Timing out just means an empty answer.
                _ = tokio::time::timeout_at(until, tip.wait_for(|next| *next > from)) => break,
                changed = changes.changed(), if claim.is_some() => {
                    if changed.is_err() || !held(self) {
                        return ShardReply::LeaseLost;
                    }
                }
            }
        }
        self.read(from, limit, max_bytes).await
    }

    /// Admits a put against the write limits, counting refusals.
    fn admit_put(&self, records: &[RecordIn]) -> Result<(), Throttled> {
        let bytes: u64 = records.iter().map(|r| r.billed_bytes() as u64).sum();
        let n = records.len() as u64;
        let admitted = self.throttle().admit_write(bytes, n, Instant::now());
        if admitted.is_err() {
            self.capacity.metrics.write_throttled.inc_by(n);
            self.meter().record_throttled(now_ms() / 1000, n);
        }
        admitted
    }

    /// Meters an applied put.
    fn accepted(&self, bytes: u64, records: u64) {
        self.capacity.metrics.incoming_bytes.inc_by(bytes);
        self.capacity.metrics.incoming_records.inc_by(records);
        self.meter().record(now_ms() / 1000, bytes, records);
    }

    /// This replica's view of the group.
    pub fn status(&self) -> ReplicaStatus {
        let m = self.raft.metrics().borrow_watched().clone();
        ReplicaStatus {
            group: self.group,
            leader: m.current_leader,
            members: m.membership_config.membership().voter_ids().collect(),
            last_applied: self.progress.last_applied_index(),
            next_ordinal: self.progress.next_ordinal(),
            trim_ordinal: self.progress.trim_ordinal(),
            sealed_end: self.progress.sealed_end(),
            log_purged: m.purged.map(|l| l.index()).unwrap_or(0),
            log_last: m.last_log_index.unwrap_or(0),
            snapshot_index: m.snapshot.map(|l| l.index()).unwrap_or(0),
        }
    }

    /// Proposes a control entry (seal, trim) on this replica, which must lead the group.
    async fn propose(&self, cmd: ShardCommand) -> ShardReply {
        match self.raft.client_write(cmd).await {
            Ok(resp) => match resp.data {
                ShardResponse::Sealed {
                    end_ordinal,
                    sealed_ms,
                } => ShardReply::Sealed {
                    end_ordinal,
                    sealed_ms,
                },
                ShardResponse::Trimmed { trim_ordinal } => ShardReply::Trimmed { trim_ordinal },
                other => ShardReply::Unavailable(format!("unexpected apply result {other:?}")),
            },
            Err(RaftError::APIError(ClientWriteError::ForwardToLeader(f))) => {
                ShardReply::NotLeader {
                    leader: f.leader_id,
                }
            }
            Err(e) => ShardReply::Unavailable(e.to_string()),
        }
    }

    pub fn is_leader(&self) -> bool {
        self.raft.metrics().borrow_watched().current_leader == Some(*self.raft.node_id())
    }

    /// Reads committed records from `from`.
    async fn read(&self, from: u64, limit: u32, max_bytes: u64) -> ShardReply {
        let store = self.store.clone();
        let progress = self.progress.clone();
        let read = tokio::task::spawn_blocking(move || {
            store.read(from, limit as usize, max_bytes as usize)
        })
        .await;
        match read {
            Ok(Ok(records)) => ShardReply::Records {
                records: records.into_iter().map(|r| (r.ordinal, r.record)).collect(),
                next_ordinal: progress.next_ordinal(),
                last_arrival_ms: progress.last_arrival_ms(),
                sealed_end: progress.sealed_end(),
            },
            Ok(Err(e)) => ShardReply::Unavailable(format!("read failed: {e}")),
            Err(e) => ShardReply::Unavailable(format!("read task failed: {e}")),
        }
    }

    /// Serves one request.
    pub async fn handle(&self, req: ShardRequest) -> ShardReply {
        match req {
            ShardRequest::Put { records } => {
                if !self.is_leader() {
                    return ShardReply::NotLeader {
                        leader: self.raft.metrics().borrow_watched().current_leader,
                    };
                }
                if let Err(t) = self.admit_put(&records) {
                    return ShardReply::Throttled(t.message().into());
                }
                let bytes: u64 = records.iter().map(|r| r.billed_bytes() as u64).sum();
                let n = records.len() as u64;
                let (tx, rx) = oneshot::channel();
                if self.puts.try_send(PutJob { records, reply: tx }).is_err() {
                    return ShardReply::Overloaded;
                }
                let reply = rx
                    .await
                    .unwrap_or_else(|_| ShardReply::OutcomeUnknown("shard batcher stopped".into()));
                if matches!(reply, ShardReply::Appended { .. }) {
                    self.accepted(bytes, n);
                }
                reply
            }
            ShardRequest::Read {
                from,
                limit,
                max_bytes,
            } => {
                // Only the leader (which serves reads first) enforces the read limits; a
                // follower answers reads only while the leader is unreachable.
                let leader = self.is_leader();
                if leader {
                    if let Err(t) = self.throttle().admit_read(Instant::now()) {
                        self.capacity.metrics.read_throttled.inc();
                        return ShardReply::Throttled(t.message().into());
                    }
                }
                let reply = self.read(from, limit, max_bytes).await;
                if let (true, ShardReply::Records { records, .. }) = (leader, &reply) {
                    let bytes: u64 = records
                        .iter()
                        .map(|(_, r)| (r.data.len() + r.partition_key.len()) as u64)
                        .sum();
                    self.throttle().charge_read(bytes, Instant::now());
                }
                reply
            }
            ShardRequest::ReadWait {
                from,
                limit,
                max_bytes,
                wait_ms,
            } => self.read_wait(from, limit, max_bytes, wait_ms, None).await,
            ShardRequest::Position(q) => match q {
                PositionQuery::TrimHorizon => ShardReply::Position(self.progress.trim_ordinal()),
                PositionQuery::Latest => ShardReply::Position(self.progress.next_ordinal()),
                PositionQuery::AtTimestamp(ts) => match self.store.ordinal_at_time(ts) {
                    Ok(o) => ShardReply::Position(o),
                    Err(e) => ShardReply::Unavailable(format!("index lookup failed: {e}")),
                },
            },
            ShardRequest::Status => ShardReply::Status(self.status()),
            ShardRequest::Seal => self.propose(ShardCommand::Seal { now_ms: now_ms() }).await,
            ShardRequest::Trim { cutoff_ms } => {
                self.propose(ShardCommand::Trim { cutoff_ms }).await
            }
            ShardRequest::Load { secs } => {
                if !self.is_leader() {
                    return ShardReply::NotLeader {
                        leader: self.raft.metrics().borrow_watched().current_leader,
                    };
                }
                ShardReply::Load(self.meter().recent(now_ms() / 1000, secs as usize))
            }
            ShardRequest::LeaseAcquire(claim) => {
                if !self.is_leader() {
                    return self.not_leader();
                }
                match self.leases().acquire(&claim, Instant::now()) {
                    Acquired::Granted { replaced } => ShardReply::LeaseGranted { replaced },
                    Acquired::InUse { age_ms } => ShardReply::LeaseInUse { age_ms },
                }
            }
            ShardRequest::ReadLeased {
                from,
                limit,
                max_bytes,
                wait_ms,
                claim,
            } => {
                if self.is_leader() {
                    self.read_wait(from, limit, max_bytes, wait_ms, Some(&claim))
                        .await
                } else if self
                    .raft
                    .metrics()
                    .borrow_watched()
                    .current_leader
                    .is_some()
                {
                    self.not_leader()
                } else {
                    // No leader known (an election): keep the subscription reading.
                    self.read_wait(from, limit, max_bytes, wait_ms, None).await
                }
            }
            ShardRequest::LeaseRelease(claim) => {
                if !self.is_leader() {
                    return self.not_leader();
                }
                self.leases().release(&claim, Instant::now());
                ShardReply::LeaseReleased
            }
        }
    }
}

/// The snapshot and log purge loop of one replica: every checkpoint round of the node, a
/// group that applied anything since its last snapshot takes one (its build joins the
/// round's flush); after each build it purges its log as [`super::purge::purge_upto`] says.
async fn snapshot_and_purge(
    group: GroupId,
    raft: ShardRaft,
    store: ShardStore,
    mut rounds: watch::Receiver<u64>,
    keep_entries: u64,
) {
    let mut hints = store.purge_hints();
    loop {
        let result = tokio::select! {
            changed = rounds.changed() => {
                if changed.is_err() {
                    break;
                }
                if !store.applied_since_snapshot() {
                    continue;
                }
                raft.trigger().snapshot().await
            }
            changed = hints.changed() => {
                if changed.is_err() {
                    break;
                }
                let Some(hint) = *hints.borrow_and_update() else {
                    continue;
                };
                let followers: Vec<Option<u64>> = {
                    let m = raft.metrics();
                    let m = m.borrow_watched();
                    m.replication
                        .as_ref()
                        .map(|r| {
                            r.iter()
                                .filter(|(id, _)| **id != m.id)
                                .map(|(_, matched)| matched.as_ref().map(|l| l.index()))
                                .collect()
                        })
                        .unwrap_or_default()
                };
                match super::purge::purge_upto(
                    hint.snapshot_index,
                    hint.bytes_point,
                    keep_entries,
                    &followers,
                ) {
                    Some(upto) => raft.trigger().purge_log(upto).await,
                    None => Ok(()),
                }
            }
        };
        if let Err(e) = result {
            tracing::debug!(group, error = %e, "snapshot/purge trigger: group stopped");
            break;
        }
    }
}
