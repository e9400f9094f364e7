//! The shard state machine over the node's RocksDB.
//!
//! Apply is deterministic: ordinals are assigned from the stored `next_ordinal`, and the
//! arrival time of an `Append` is `max(proposed, last applied arrival)`, so every replica
//! writes the same records under the same keys. Records, the sparse arrival-time index (one
//! key per appended batch) and the state header are written in one RocksDB batch.
//!
//! Keys in `shard_data`: `group · 'h'` → [`Header`]; `group · 'r' · ordinal` → record;
//! `group · 't' · arrival_ms · ordinal` → (). The header shares the column family with the
//! records it describes, so any flush of it is a consistent prefix of the state machine.

use std::io;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;

use bytes::Bytes;
use futures::{Stream, TryStreamExt};
use openraft::alias::{LogIdOf, SnapshotMetaOf, SnapshotOf, StoredMembershipOf};
use openraft::entry::RaftEntry;
use openraft::storage::{EntryResponder, RaftStateMachine};
use openraft::{EntryPayload, OptionalSend, RaftSnapshotBuilder};
use rocksdb::{Direction, IteratorMode, WriteBatch, WriteOptions, DB};
use serde::{Deserialize, Serialize};
use spate_control_plane::raft::codec::{decode_io, encode_io};
use spate_control_plane::raft::db::{group_prefix, read_u64, CF_SHARD_DATA};
use spate_control_plane::raft::snapshot::ChunkStream;
use spate_control_plane::raft::{GroupId, SnapshotData};
use tokio::sync::watch;

use super::checkpoint::Checkpoints;
use super::purge::LogMarks;
use super::{ShardCommand, ShardResponse, ShardTypeConfig as C};

pub(super) const KIND_HEADER: u8 = b'h';
pub(super) const KIND_RECORD: u8 = b'r';
pub(super) const KIND_TIME: u8 = b't';

fn io_err(e: impl std::fmt::Display) -> io::Error {
    io::Error::other(e.to_string())
}

/// Persistent header of a shard group's state machine.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct Header {
    pub last_applied: Option<LogIdOf<C>>,
    pub membership: StoredMembershipOf<C>,
    /// Ordinal the next record gets. Ordinal 0 is the shard's starting sequence number.
    pub next_ordinal: u64,
    pub last_arrival_ms: u64,
    /// First ordinal still stored (records below it were trimmed).
    pub trim_ordinal: u64,
    /// Set by `Seal`: (end ordinal, seal time ms).
    pub sealed: Option<(u64, u64)>,
}

impl Default for Header {
    fn default() -> Self {
        Self {
            last_applied: None,
            membership: Default::default(),
            next_ordinal: 1,
            last_arrival_ms: 0,
            trim_ordinal: 1,
            sealed: None,
        }
    }
}

/// A stored record.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct StoredRecord {
    pub arrival_ms: u64,
    pub partition_key: String,
    pub data: Bytes,
}

/// [`StoredRecord`]'s encoding, borrowed from a proposed record (no copies per record).
#[derive(Serialize)]
struct StoredRecordRef<'a> {
    arrival_ms: u64,
    partition_key: &'a str,
    data: &'a Bytes,
}

impl StoredRecordRef<'_> {
    /// Encodes into `buf` (reused across records) and returns the encoded bytes.
    fn encode_into<'b>(&self, buf: &'b mut Vec<u8>) -> io::Result<&'b [u8]> {
        // Varint u64 (≤ 10 B), two varint lengths (≤ 10 B each), the key and the data.
        let max = 30 + self.partition_key.len() + self.data.len();
        if buf.len() < max {
            buf.resize(max, 0);
        }
        let used = postcard::to_slice(self, &mut buf[..]).map_err(io_err)?;
        Ok(used)
    }
}

/// Write options of state machine writes: no WAL (see `apply`).
pub(super) fn unlogged() -> WriteOptions {
    let mut o = WriteOptions::default();
    o.disable_wal(true);
    o
}

/// Applied progress, readable without locks; `tip` changes wake waiting readers.
#[derive(Debug)]
pub struct Progress {
    next_ordinal: AtomicU64,
    last_arrival_ms: AtomicU64,
    trim_ordinal: AtomicU64,
    last_applied_index: AtomicU64,
    /// End ordinal once sealed, `u64::MAX` before.
    sealed_end: AtomicU64,
    tip: watch::Sender<u64>,
}

impl Progress {
    pub fn next_ordinal(&self) -> u64 {
        self.next_ordinal.load(Ordering::Acquire)
    }
    pub fn last_arrival_ms(&self) -> u64 {
        self.last_arrival_ms.load(Ordering::Acquire)
    }
    pub fn trim_ordinal(&self) -> u64 {
        self.trim_ordinal.load(Ordering::Acquire)
    }
    pub fn last_applied_index(&self) -> u64 {
        self.last_applied_index.load(Ordering::Acquire)
    }
    /// The end ordinal if the shard is sealed.
    pub fn sealed_end(&self) -> Option<u64> {
        let v = self.sealed_end.load(Ordering::Acquire);
        (v != u64::MAX).then_some(v)
    }
    /// A receiver woken whenever new records are applied (value: next ordinal).
    pub fn subscribe(&self) -> watch::Receiver<u64> {
        self.tip.subscribe()
    }
    fn publish(&self, h: &Header) {
        self.last_arrival_ms
            .store(h.last_arrival_ms, Ordering::Release);
        self.trim_ordinal.store(h.trim_ordinal, Ordering::Release);
        self.last_applied_index.store(
            h.last_applied.as_ref().map(|l| l.index()).unwrap_or(0),
            Ordering::Release,
        );
        self.sealed_end.store(
            h.sealed.map(|(e, _)| e).unwrap_or(u64::MAX),
            Ordering::Release,
        );
        self.next_ordinal.store(h.next_ordinal, Ordering::Release);
        self.tip.send_replace(h.next_ordinal);
    }
}

/// Rough per-entry overhead counted towards checkpoints besides record bytes (so that many
/// tiny entries also make one).
const ENTRY_OVERHEAD: u64 = 64;

/// The state machine of one shard group.
#[derive(Clone)]
pub struct ShardStore {
    db: Arc<DB>,
    group: GroupId,
    header: Arc<tokio::sync::Mutex<Header>>,
    progress: Arc<Progress>,
    /// Bytes applied since the last snapshot (see [`super::snapshot`]).
    since_snapshot: Arc<AtomicU64>,
    /// The node's checkpoints: applied bytes are counted there, and a snapshot build
    /// flushes through it.
    checkpoints: Arc<Checkpoints>,
    /// Applied bytes per recent entry, to purge the log by bytes (see [`super::purge`]).
    marks: Arc<std::sync::Mutex<LogMarks>>,
    /// Record bytes of log kept below a snapshot.
    keep_bytes: u64,
    /// Set after every snapshot build: where the log may be purged to.
    purge_hint: Arc<watch::Sender<Option<PurgeHint>>>,
}

/// Published after a snapshot build: the replica purges the log from it (see
/// [`super::purge::purge_upto`]).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct PurgeHint {
    pub snapshot_index: u64,
    /// The highest index with at least the kept bytes above it, if any.
    pub bytes_point: Option<u64>,
}

pub(super) fn header_key(group: GroupId) -> [u8; 9] {
    let mut k = [0u8; 9];
    k[..8].copy_from_slice(&group.to_be_bytes());
    k[8] = KIND_HEADER;
    k
}

pub(super) fn record_key(group: GroupId, ordinal: u64) -> [u8; 17] {
    let mut k = [0u8; 17];
    k[..8].copy_from_slice(&group.to_be_bytes());
    k[8] = KIND_RECORD;
    k[9..].copy_from_slice(&ordinal.to_be_bytes());
    k
}

pub(super) fn time_key(group: GroupId, arrival_ms: u64, ordinal: u64) -> [u8; 25] {
    let mut k = [0u8; 25];
    k[..8].copy_from_slice(&group.to_be_bytes());
    k[8] = KIND_TIME;
    k[9..17].copy_from_slice(&arrival_ms.to_be_bytes());
    k[17..].copy_from_slice(&ordinal.to_be_bytes());
    k
}

/// A record read back, with its ordinal.
#[derive(Debug, Clone)]
pub struct ReadRecord {
    pub ordinal: u64,
    pub record: StoredRecord,
}

impl ShardStore {
    /// Opens the state machine of `group`, loading its persisted header. Its applied bytes
    /// count towards the node's `checkpoints`; after a snapshot, the newest `keep_bytes` of
    /// applied records stay in the log.
    pub fn open(
        db: Arc<DB>,
        group: GroupId,
        checkpoints: Arc<Checkpoints>,
        keep_bytes: u64,
    ) -> io::Result<Self> {
        let cf = db
            .cf_handle(CF_SHARD_DATA)
            .ok_or_else(|| io_err("missing cf shard_data"))?;
        let header: Header = match db.get_cf(cf, header_key(group)).map_err(io_err)? {
            Some(b) => decode_io(&b)?,
            None => Header::default(),
        };
        let (tip, _) = watch::channel(header.next_ordinal);
        let progress = Arc::new(Progress {
            next_ordinal: AtomicU64::new(0),
            last_arrival_ms: AtomicU64::new(0),
            trim_ordinal: AtomicU64::new(0),
            last_applied_index: AtomicU64::new(0),
            sealed_end: AtomicU64::new(u64::MAX),
            tip,
        });
        progress.publish(&header);
        Ok(Self {
            db,
            group,
            header: Arc::new(tokio::sync::Mutex::new(header)),
            progress,
            since_snapshot: Arc::new(AtomicU64::new(0)),
            checkpoints,
            marks: Arc::new(std::sync::Mutex::new(LogMarks::new(keep_bytes))),
            keep_bytes,
            purge_hint: Arc::new(watch::Sender::new(None)),
        })
    }

    /// Changes after every snapshot build (see [`PurgeHint`]).
    pub fn purge_hints(&self) -> watch::Receiver<Option<PurgeHint>> {
        self.purge_hint.subscribe()
    }

    /// Whether anything was applied since the last snapshot (a checkpoint round then asks
    /// the replica to trigger one, which lets openraft purge the log).
    pub fn applied_since_snapshot(&self) -> bool {
        self.since_snapshot.load(Ordering::Relaxed) > 0
    }

    /// The current snapshot: its header and the payload, streamed (see
    /// [`super::snapshot`]); returned once the state machine is flushed up to the header,
    /// so openraft may purge the log up to it.
    async fn current_snapshot(&self) -> io::Result<SnapshotOf<C, SnapshotData>> {
        let (h, rx) =
            super::snapshot::spawn_stream(self.db.clone(), self.group, self.header.clone()).await?;
        self.checkpoints.flush().await?;
        Ok(SnapshotOf::<C, SnapshotData> {
            meta: SnapshotMetaOf::<C> {
                last_log_id: h.last_applied,
                last_membership: h.membership.clone(),
            },
            snapshot: SnapshotData::Stream(rx),
        })
    }

    pub fn progress(&self) -> Arc<Progress> {
        self.progress.clone()
    }

    /// Reads committed records from `from` (clamped to the trim point): at most `limit`
    /// records and `max_bytes` bytes (always at least one record if any is available).
    pub fn read(&self, from: u64, limit: usize, max_bytes: usize) -> io::Result<Vec<ReadRecord>> {
        let end = self.progress.next_ordinal();
        let from = from.max(self.progress.trim_ordinal());
        let mut out = Vec::new();
        if from >= end || limit == 0 {
            return Ok(out);
        }
        let cf = self
            .db
            .cf_handle(CF_SHARD_DATA)
            .ok_or_else(|| io_err("missing cf shard_data"))?;
        let start = record_key(self.group, from);
        let mut bytes = 0usize;
        for item in self
            .db
            .iterator_cf(cf, IteratorMode::From(&start, Direction::Forward))
        {
            let (key, val) = item.map_err(io_err)?;
            if read_u64(&key, 0) != Some(self.group) || key.get(8) != Some(&KIND_RECORD) {
                break;
            }
            let ordinal = read_u64(&key, 9).ok_or_else(|| io_err("short record key"))?;
            if ordinal >= end {
                break;
            }
            let record: StoredRecord = decode_io(&val)?;
            let size = record.data.len() + record.partition_key.len();
            if !out.is_empty() && bytes + size > max_bytes {
                break;
            }
            bytes += size;
            out.push(ReadRecord { ordinal, record });
            if out.len() >= limit {
                break;
            }
        }
        Ok(out)
    }

    /// The ordinal of the first record that arrived at or after `ts_ms` (or the next ordinal
    /// if none did).
    pub fn ordinal_at_time(&self, ts_ms: u64) -> io::Result<u64> {
        self.ordinal_at_time_upto(ts_ms, self.progress.next_ordinal())
    }

    fn ordinal_at_time_upto(&self, ts_ms: u64, end: u64) -> io::Result<u64> {
        let cf = self
            .db
            .cf_handle(CF_SHARD_DATA)
            .ok_or_else(|| io_err("missing cf shard_data"))?;
        let start = time_key(self.group, ts_ms, 0);
        if let Some(item) = self
            .db
            .iterator_cf(cf, IteratorMode::From(&start, Direction::Forward))
            .next()
        {
            let (key, _) = item.map_err(io_err)?;
            if read_u64(&key, 0) == Some(self.group) && key.get(8) == Some(&KIND_TIME) {
                let ordinal = read_u64(&key, 17).ok_or_else(|| io_err("short time key"))?;
                return Ok(ordinal.min(end).max(self.progress.trim_ordinal()));
            }
        }
        Ok(end)
    }

    /// Deletes everything this group stored (its shard was removed).
    pub fn destroy(&self) -> io::Result<()> {
        let data = self
            .db
            .cf_handle(CF_SHARD_DATA)
            .ok_or_else(|| io_err("missing cf shard_data"))?;
        let mut batch = WriteBatch::default();
        // The header, records and time index: the whole group prefix.
        batch.delete_range_cf(data, group_prefix(self.group), group_prefix(self.group + 1));
        self.db.write(batch).map_err(io_err)
    }

    fn lock_marks(&self) -> std::sync::MutexGuard<'_, LogMarks> {
        self.marks.lock().unwrap_or_else(|p| p.into_inner())
    }

    fn put_header(&self, batch: &mut WriteBatch, h: &Header) -> io::Result<()> {
        let cf = self
            .db
            .cf_handle(CF_SHARD_DATA)
            .ok_or_else(|| io_err("missing cf shard_data"))?;
        batch.put_cf(cf, header_key(self.group), encode_io(h)?);
        Ok(())
    }
}

impl RaftSnapshotBuilder<C> for ShardStore {
    type SnapshotData = SnapshotData;

    /// Flushes the state machine and returns the snapshot's meta (openraft keeps only the
    /// meta, and purges the log below it when the replica asks).
    async fn build_snapshot(&mut self) -> Result<SnapshotOf<C, SnapshotData>, io::Error> {
        self.since_snapshot.store(0, Ordering::Relaxed);
        // Applied bytes before the snapshot: it covers at least these.
        let total = self.lock_marks().total();
        let started = std::time::Instant::now();
        // The state the snapshot covers, then a flush that makes it (and more) durable.
        let h = self.header.lock().await.clone();
        self.checkpoints.flush().await?;
        tracing::debug!(
            group = self.group,
            index = h.last_applied.as_ref().map(|l| l.index()),
            ms = started.elapsed().as_millis() as u64,
            "shard snapshot built"
        );
        if let Some(last) = h.last_applied {
            let bytes_point = self.lock_marks().purge_point(total, self.keep_bytes);
            self.purge_hint.send_replace(Some(PurgeHint {
                snapshot_index: last.index(),
                bytes_point,
            }));
        }
        // openraft keeps only the meta of a built snapshot (it calls
        // `get_current_snapshot` when it sends one), so no payload producer is started.
        Ok(SnapshotOf::<C, SnapshotData> {
            meta: SnapshotMetaOf::<C> {
                last_log_id: h.last_applied,
                last_membership: h.membership,
            },
            snapshot: SnapshotData::Stream(ChunkStream::unreadable(
                "the payload of a built shard snapshot is not kept; send the current snapshot",
            )),
        })
    }
}

impl RaftStateMachine<C> for ShardStore {
    type SnapshotData = SnapshotData;
    type SnapshotBuilder = Self;

    async fn applied_state(
        &mut self,
    ) -> Result<(Option<LogIdOf<C>>, StoredMembershipOf<C>), io::Error> {
        let h = self.header.lock().await;
        Ok((h.last_applied, h.membership.clone()))
    }

    async fn apply<Strm>(&mut self, mut entries: Strm) -> Result<(), io::Error>
    where
        Strm: Stream<Item = Result<EntryResponder<C>, io::Error>> + Unpin + OptionalSend,
    {
        let cf = self
            .db
            .cf_handle(CF_SHARD_DATA)
            .ok_or_else(|| io_err("missing cf shard_data"))?;
        let mut h = self.header.lock().await;
        let mut batch = WriteBatch::default();
        let mut responses = Vec::new();
        let no_wal = unlogged();
        let mut value = Vec::new();
        let mut applied_bytes = 0u64;
        while let Some((entry, responder)) = entries.try_next().await? {
            h.last_applied = Some(entry.log_id());
            applied_bytes += ENTRY_OVERHEAD;
            let resp = match &entry.payload {
                EntryPayload::Blank => ShardResponse::Done,
                EntryPayload::Membership(m) => {
                    h.membership = StoredMembershipOf::<C>::new(Some(entry.log_id()), m.clone());
                    ShardResponse::Done
                }
                EntryPayload::Normal(ShardCommand::Seal { now_ms }) => {
                    let (end_ordinal, sealed_ms) = {
                        let next = h.next_ordinal;
                        *h.sealed.get_or_insert((next, *now_ms))
                    };
                    ShardResponse::Sealed {
                        end_ordinal,
                        sealed_ms,
                    }
                }
                EntryPayload::Normal(ShardCommand::Trim { cutoff_ms }) => {
                    // Deterministic: write what this apply call staged so far, so the time
                    // index read below reflects exactly the entries before this one, however
                    // a replica's apply calls are batched.
                    self.db
                        .write_opt(std::mem::take(&mut batch), &no_wal)
                        .map_err(io_err)?;
                    let new_trim = self
                        .ordinal_at_time_upto(*cutoff_ms, h.next_ordinal)?
                        .max(h.trim_ordinal);
                    if new_trim > h.trim_ordinal {
                        batch.delete_range_cf(
                            cf,
                            record_key(self.group, 0),
                            record_key(self.group, new_trim),
                        );
                        batch.delete_range_cf(
                            cf,
                            time_key(self.group, 0, 0),
                            time_key(self.group, *cutoff_ms, 0),
                        );
                        h.trim_ordinal = new_trim;
                    }
                    ShardResponse::Trimmed {
                        trim_ordinal: h.trim_ordinal,
                    }
                }
                EntryPayload::Normal(ShardCommand::Append { .. }) if h.sealed.is_some() => {
                    let (end_ordinal, sealed_ms) = h.sealed.unwrap_or_default();
                    ShardResponse::Sealed {
                        end_ordinal,
                        sealed_ms,
                    }
                }
                EntryPayload::Normal(ShardCommand::Append {
                    arrival_ms,
                    records,
                }) => {
                    let arrival = (*arrival_ms).max(h.last_arrival_ms);
                    let first = h.next_ordinal;
                    if !records.is_empty() {
                        batch.put_cf(cf, time_key(self.group, arrival, first), []);
                    }
                    for (i, r) in records.iter().enumerate() {
                        applied_bytes += (r.partition_key.len() + r.data.len()) as u64;
                        let stored = StoredRecordRef {
                            arrival_ms: arrival,
                            partition_key: &r.partition_key,
                            data: &r.data,
                        };
                        batch.put_cf(
                            cf,
                            record_key(self.group, first + i as u64),
                            stored.encode_into(&mut value)?,
                        );
                    }
                    h.next_ordinal = first + records.len() as u64;
                    h.last_arrival_ms = arrival;
                    ShardResponse::Appended {
                        first_ordinal: first,
                        arrival_ms: arrival,
                    }
                }
            };
            if let Some(r) = responder {
                responses.push((r, resp));
            }
        }
        self.put_header(&mut batch, &h)?;
        // Neither synced nor in the WAL: the Raft log is the durable copy. After a crash the
        // state machine is whatever the last flush of `shard_data` left — a prefix of its
        // write batches, so header and records together — and the replica re-applies the
        // rest from the log; apply is deterministic, so re-applied entries rewrite identical
        // keys.
        self.db.write_opt(batch, &no_wal).map_err(io_err)?;
        self.progress.publish(&h);
        let h_last_index = h.last_applied.as_ref().map(|l| l.index());
        drop(h);
        for (r, resp) in responses {
            r.send(resp);
        }
        if let Some(last) = h_last_index {
            self.lock_marks().applied(last, applied_bytes);
        }
        self.since_snapshot
            .fetch_add(applied_bytes, Ordering::Relaxed);
        self.checkpoints.applied(applied_bytes);
        Ok(())
    }

    async fn get_snapshot_builder(&mut self) -> Self::SnapshotBuilder {
        self.clone()
    }

    async fn install_snapshot(
        &mut self,
        meta: &SnapshotMetaOf<C>,
        snapshot: SnapshotData,
    ) -> Result<(), io::Error> {
        let mut h = self.header.clone().lock_owned().await;
        if h.last_applied.is_some() && h.last_applied >= meta.last_log_id {
            // Already at or past it (openraft does not ask for this; never go back).
            return Ok(());
        }
        let (db, group, meta) = (self.db.clone(), self.group, meta.clone());
        let installed = tokio::task::spawn_blocking(move || {
            super::snapshot::install(&db, group, &meta, snapshot.into_reader())
        })
        .await
        .map_err(io_err)??;
        *h = installed;
        self.since_snapshot.store(0, Ordering::Relaxed);
        self.progress.publish(&h);
        Ok(())
    }

    async fn get_current_snapshot(
        &mut self,
    ) -> Result<Option<SnapshotOf<C, SnapshotData>>, io::Error> {
        if self.header.lock().await.last_applied.is_none() {
            return Ok(None);
        }
        Ok(Some(self.current_snapshot().await?))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn borrowed_record_encoding_matches_stored_record() {
        let mut buf = Vec::new();
        for (key, data) in [("k", vec![]), ("pk-ü", vec![7u8; 300]), ("", vec![1, 2])] {
            let owned = StoredRecord {
                arrival_ms: 1_795_304_520_743,
                partition_key: key.to_string(),
                data: Bytes::from(data),
            };
            let borrowed = StoredRecordRef {
                arrival_ms: owned.arrival_ms,
                partition_key: &owned.partition_key,
                data: &owned.data,
            };
            let bytes = borrowed.encode_into(&mut buf).unwrap().to_vec();
            assert_eq!(bytes, encode_io(&owned).unwrap());
            assert_eq!(decode_io::<StoredRecord>(&bytes).unwrap(), owned);
        }
    }
}
