//! [`RaftLogStorage`] for many groups in one RocksDB. A group's entries live under its
//! 8-byte prefix in `raft_log`; its vote, committed id and purge point under the same prefix
//! in `raft_state`. Appends are written unsynced and made durable by the node-wide
//! [`Flusher`] (group commit); votes wait for a sync before returning.
//!
//! The newest entries of each group are also kept in memory ([`EntryCache`]): replication
//! and the state machine read every entry back right after it is appended, and serving those
//! reads from memory saves a RocksDB read and a decode per entry per reader. The cache is
//! bounded per group and node-wide; a read it cannot serve goes to RocksDB.

use std::collections::VecDeque;
use std::fmt::Debug;
use std::io;
use std::marker::PhantomData;
use std::ops::{Bound, RangeBounds};
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};

use openraft::alias::{EntryOf, LogIdOf, VoteOf};
use openraft::entry::RaftEntry;
use openraft::storage::{IOFlushed, LogState, RaftLogStorage};
use openraft::{OptionalSend, RaftLogReader, RaftTypeConfig};
use rocksdb::{Direction, IteratorMode, WriteBatch, DB};

use super::codec::{decode_io, encode_io};
use super::db::{log_key, read_u64, CF_RAFT_LOG, CF_RAFT_STATE};
use super::flusher::Flusher;
use super::{io_err, GroupId};

const TAG_VOTE: u8 = 1;
const TAG_COMMITTED: u8 = 2;
const TAG_PURGED: u8 = 3;

/// Most bytes (encoded size) of cached entries per group.
const CACHE_GROUP_BYTES: usize = 2 << 20;
/// Most bytes of cached entries per node (all groups of one [`Flusher`]).
const CACHE_NODE_BYTES: usize = 8 << 20;

/// The newest entries of one group, contiguous by index, with their encoded sizes.
struct EntryCache<E> {
    entries: VecDeque<(u64, E, usize)>,
    bytes: usize,
    /// Bytes cached by every group of the node.
    node_bytes: Arc<AtomicUsize>,
}

impl<E> EntryCache<E> {
    fn new(node_bytes: Arc<AtomicUsize>) -> Self {
        Self {
            entries: VecDeque::new(),
            bytes: 0,
            node_bytes,
        }
    }

    fn pop_front(&mut self) {
        if let Some((_, _, n)) = self.entries.pop_front() {
            self.bytes -= n;
            self.node_bytes.fetch_sub(n, Ordering::Relaxed);
        }
    }

    fn pop_back(&mut self) {
        if let Some((_, _, n)) = self.entries.pop_back() {
            self.bytes -= n;
            self.node_bytes.fetch_sub(n, Ordering::Relaxed);
        }
    }

    /// Forgets entries at or after `index` (truncation).
    fn truncate_from(&mut self, index: u64) {
        while self.entries.back().is_some_and(|(i, _, _)| *i >= index) {
            self.pop_back();
        }
    }

    /// Forgets entries at or before `index` (purge).
    fn purge_upto(&mut self, index: u64) {
        while self.entries.front().is_some_and(|(i, _, _)| *i <= index) {
            self.pop_front();
        }
    }

    fn clear(&mut self) {
        while !self.entries.is_empty() {
            self.pop_front();
        }
    }
}

impl<E: Clone> EntryCache<E> {
    /// Caches a just-written entry, evicting the oldest ones to stay within both budgets;
    /// an entry that does not fit is not cached (the cache then restarts after it).
    fn push(&mut self, index: u64, entry: E, size: usize) {
        // Keep the cache contiguous: drop everything from `index` on, and everything if
        // `index` does not follow the last cached entry.
        while self.entries.back().is_some_and(|(i, _, _)| *i >= index) {
            self.pop_back();
        }
        if self.entries.back().is_some_and(|(i, _, _)| *i + 1 != index) {
            self.clear();
        }
        while !self.entries.is_empty()
            && (self.bytes + size > CACHE_GROUP_BYTES
                || self.node_bytes.load(Ordering::Relaxed) + size > CACHE_NODE_BYTES)
        {
            self.pop_front();
        }
        if self.bytes + size > CACHE_GROUP_BYTES
            || self.node_bytes.load(Ordering::Relaxed) + size > CACHE_NODE_BYTES
        {
            return;
        }
        self.entries.push_back((index, entry, size));
        self.bytes += size;
        self.node_bytes.fetch_add(size, Ordering::Relaxed);
    }

    /// The entries `start..end`, if all are cached.
    fn get(&self, start: u64, end: u64) -> Option<Vec<E>> {
        let first = self.entries.front()?.0;
        let last = self.entries.back()?.0;
        if start < first || end > last + 1 || start > end {
            return None;
        }
        let from = (start - first) as usize;
        let to = (end - first) as usize;
        Some(
            self.entries
                .range(from..to)
                .map(|(_, e, _)| e.clone())
                .collect(),
        )
    }
}

impl<E> Drop for EntryCache<E> {
    fn drop(&mut self) {
        self.node_bytes.fetch_sub(self.bytes, Ordering::Relaxed);
    }
}

/// State shared by a store and its log readers.
struct Shared<C: RaftTypeConfig> {
    cache: Mutex<EntryCache<C::Entry>>,
    /// The stored vote once read or saved (`None`: not loaded yet).
    vote: Mutex<Option<Option<VoteOf<C>>>>,
}

/// The log of one group, stored in the node's shared RocksDB.
pub struct GroupLogStore<C: RaftTypeConfig> {
    db: Arc<DB>,
    group: GroupId,
    flusher: Flusher,
    shared: Arc<Shared<C>>,
    _c: PhantomData<C>,
}

impl<C: RaftTypeConfig> Clone for GroupLogStore<C> {
    fn clone(&self) -> Self {
        Self {
            db: self.db.clone(),
            group: self.group,
            flusher: self.flusher.clone(),
            shared: self.shared.clone(),
            _c: PhantomData,
        }
    }
}

impl<C: RaftTypeConfig> GroupLogStore<C> {
    pub fn new(db: Arc<DB>, group: GroupId, flusher: Flusher) -> Self {
        let shared = Arc::new(Shared {
            cache: Mutex::new(EntryCache::new(flusher.cache_bytes())),
            vote: Mutex::new(None),
        });
        Self {
            db,
            group,
            flusher,
            shared,
            _c: PhantomData,
        }
    }

    fn cache(&self) -> std::sync::MutexGuard<'_, EntryCache<C::Entry>> {
        self.shared.cache.lock().unwrap_or_else(|p| p.into_inner())
    }

    fn vote_cell(&self) -> std::sync::MutexGuard<'_, Option<Option<VoteOf<C>>>> {
        self.shared.vote.lock().unwrap_or_else(|p| p.into_inner())
    }

    fn state_key(&self, tag: u8) -> [u8; 9] {
        let mut k = [0u8; 9];
        k[..8].copy_from_slice(&self.group.to_be_bytes());
        k[8] = tag;
        k
    }

    fn get_state<T: serde::de::DeserializeOwned>(&self, tag: u8) -> io::Result<Option<T>> {
        let cf = self
            .db
            .cf_handle(CF_RAFT_STATE)
            .ok_or_else(|| io_err("missing cf raft_state"))?;
        match self.db.get_cf(cf, self.state_key(tag)).map_err(io_err)? {
            Some(bytes) => Ok(Some(decode_io(&bytes)?)),
            None => Ok(None),
        }
    }

    fn put_state<T: serde::Serialize>(&self, tag: u8, value: &T) -> io::Result<()> {
        let cf = self
            .db
            .cf_handle(CF_RAFT_STATE)
            .ok_or_else(|| io_err("missing cf raft_state"))?;
        self.db
            .put_cf(cf, self.state_key(tag), encode_io(value)?)
            .map_err(io_err)
    }

    /// Deletes every log entry and state key of this group (the group was removed).
    pub fn destroy(&self) -> io::Result<()> {
        let log = self
            .db
            .cf_handle(CF_RAFT_LOG)
            .ok_or_else(|| io_err("missing cf raft_log"))?;
        let st = self
            .db
            .cf_handle(CF_RAFT_STATE)
            .ok_or_else(|| io_err("missing cf raft_state"))?;
        let mut batch = WriteBatch::default();
        batch.delete_range_cf(log, log_key(self.group, 0), log_key(self.group + 1, 0));
        batch.delete_range_cf(st, self.state_key(0), self.state_key(u8::MAX));
        batch.delete_cf(st, self.state_key(u8::MAX));
        self.db.write(batch).map_err(io_err)?;
        self.cache().clear();
        *self.vote_cell() = None;
        Ok(())
    }
}

impl<C> RaftLogReader<C> for GroupLogStore<C>
where
    C: RaftTypeConfig,
    C::Entry: Clone,
{
    async fn try_get_log_entries<RB: RangeBounds<u64> + Clone + Debug + OptionalSend>(
        &mut self,
        range: RB,
    ) -> Result<Vec<C::Entry>, io::Error> {
        let start = match range.start_bound() {
            Bound::Included(x) => *x,
            Bound::Excluded(x) => x.saturating_add(1),
            Bound::Unbounded => 0,
        };
        let end = match range.end_bound() {
            Bound::Included(x) => x.checked_add(1),
            Bound::Excluded(x) => Some(*x),
            Bound::Unbounded => None,
        };
        if let Some(end) = end {
            if let Some(entries) = self.cache().get(start, end) {
                return Ok(entries);
            }
        }
        let cf = self
            .db
            .cf_handle(CF_RAFT_LOG)
            .ok_or_else(|| io_err("missing cf raft_log"))?;
        let from = log_key(self.group, start);
        let mut out = Vec::new();
        for item in self
            .db
            .iterator_cf(cf, IteratorMode::From(&from, Direction::Forward))
        {
            let (key, val) = item.map_err(io_err)?;
            if read_u64(&key, 0) != Some(self.group) {
                break;
            }
            let index = read_u64(&key, 8).ok_or_else(|| io_err("short log key"))?;
            if !range.contains(&index) {
                break;
            }
            let entry: EntryOf<C> = decode_io(&val)?;
            out.push(entry);
        }
        Ok(out)
    }

    async fn read_vote(&mut self) -> Result<Option<VoteOf<C>>, io::Error> {
        if let Some(vote) = self.vote_cell().as_ref() {
            return Ok(vote.clone());
        }
        let vote: Option<VoteOf<C>> = self.get_state(TAG_VOTE)?;
        *self.vote_cell() = Some(vote.clone());
        Ok(vote)
    }
}

impl<C> RaftLogStorage<C> for GroupLogStore<C>
where
    C: RaftTypeConfig,
    C::Entry: Clone,
{
    type LogReader = Self;

    async fn get_log_state(&mut self) -> Result<LogState<C>, io::Error> {
        let cf = self
            .db
            .cf_handle(CF_RAFT_LOG)
            .ok_or_else(|| io_err("missing cf raft_log"))?;
        let upper = log_key(self.group, u64::MAX);
        let mut last_log_id = None;
        let mut it = self
            .db
            .iterator_cf(cf, IteratorMode::From(&upper, Direction::Reverse));
        if let Some(item) = it.next() {
            let (key, val) = item.map_err(io_err)?;
            if read_u64(&key, 0) == Some(self.group) {
                let entry: EntryOf<C> = decode_io(&val)?;
                last_log_id = Some(entry.log_id());
            }
        }
        let last_purged_log_id: Option<LogIdOf<C>> = self.get_state(TAG_PURGED)?;
        let last_log_id = last_log_id.or_else(|| last_purged_log_id.clone());
        Ok(LogState {
            last_purged_log_id,
            last_log_id,
        })
    }

    async fn get_log_reader(&mut self) -> Self::LogReader {
        self.clone()
    }

    async fn save_vote(&mut self, vote: &VoteOf<C>) -> Result<(), io::Error> {
        {
            // Under the lock, so that a concurrent read cannot cache an older vote.
            let mut cell = self.vote_cell();
            self.put_state(TAG_VOTE, vote)?;
            *cell = Some(Some(vote.clone()));
        }
        self.flusher.sync().await
    }

    async fn save_committed(&mut self, committed: Option<LogIdOf<C>>) -> Result<(), io::Error> {
        // Made durable by the next WAL sync; a stale value only delays re-apply on restart.
        self.put_state(TAG_COMMITTED, &committed)
    }

    async fn read_committed(&mut self) -> Result<Option<LogIdOf<C>>, io::Error> {
        Ok(self
            .get_state::<Option<LogIdOf<C>>>(TAG_COMMITTED)?
            .flatten())
    }

    async fn append<I>(&mut self, entries: I, callback: IOFlushed<C>) -> Result<(), io::Error>
    where
        I: IntoIterator<Item = C::Entry> + OptionalSend,
        I::IntoIter: OptionalSend,
    {
        let cf = self
            .db
            .cf_handle(CF_RAFT_LOG)
            .ok_or_else(|| io_err("missing cf raft_log"))?;
        let mut batch = WriteBatch::default();
        let mut written = Vec::new();
        for entry in entries {
            let bytes = encode_io(&entry)?;
            batch.put_cf(cf, log_key(self.group, entry.index()), &bytes);
            written.push((entry.index(), bytes.len(), entry));
        }
        // Readable now; durable once the flusher's next WAL sync completes.
        let mut cache = self.cache();
        if let Err(e) = self.db.write(batch) {
            cache.clear();
            return Err(io_err(e));
        }
        for (index, size, entry) in written {
            cache.push(index, entry, size);
        }
        drop(cache);
        self.flusher
            .after_sync(Box::new(move |res| callback.io_completed(res)));
        Ok(())
    }

    async fn truncate_after(&mut self, last_log_id: Option<LogIdOf<C>>) -> Result<(), io::Error> {
        let start = match last_log_id {
            Some(id) => id.index() + 1,
            None => 0,
        };
        self.cache().truncate_from(start);
        let cf = self
            .db
            .cf_handle(CF_RAFT_LOG)
            .ok_or_else(|| io_err("missing cf raft_log"))?;
        self.db
            .delete_range_cf(
                cf,
                log_key(self.group, start),
                log_key(self.group, u64::MAX),
            )
            .map_err(io_err)?;
        let cf = self
            .db
            .cf_handle(CF_RAFT_LOG)
            .ok_or_else(|| io_err("missing cf raft_log"))?;
        self.db
            .delete_cf(cf, log_key(self.group, u64::MAX))
            .map_err(io_err)
    }

    async fn purge(&mut self, log_id: LogIdOf<C>) -> Result<(), io::Error> {
        self.put_state(TAG_PURGED, &log_id)?;
        self.cache().purge_upto(log_id.index());
        let cf = self
            .db
            .cf_handle(CF_RAFT_LOG)
            .ok_or_else(|| io_err("missing cf raft_log"))?;
        self.db
            .delete_range_cf(
                cf,
                log_key(self.group, 0),
                log_key(self.group, log_id.index() + 1),
            )
            .map_err(io_err)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn cache() -> (EntryCache<String>, Arc<AtomicUsize>) {
        let node = Arc::new(AtomicUsize::new(0));
        (EntryCache::new(node.clone()), node)
    }

    fn push(c: &mut EntryCache<String>, index: u64, size: usize) {
        c.push(index, format!("e{index}"), size);
    }

    #[test]
    fn serves_only_contiguous_cached_ranges() {
        let (mut c, node) = cache();
        for i in 5..10 {
            push(&mut c, i, 100);
        }
        assert_eq!(c.get(6, 9).unwrap(), vec!["e6", "e7", "e8"]);
        assert_eq!(c.get(5, 10).unwrap().len(), 5);
        assert_eq!(c.get(7, 7).unwrap(), Vec::<String>::new());
        assert!(c.get(4, 6).is_none(), "starts before the cache");
        assert!(c.get(8, 11).is_none(), "ends after the cache");
        assert_eq!(node.load(Ordering::Relaxed), 500);
        // A gap restarts the cache.
        push(&mut c, 12, 100);
        assert!(c.get(9, 10).is_none());
        assert_eq!(c.get(12, 13).unwrap(), vec!["e12"]);
        assert_eq!(node.load(Ordering::Relaxed), 100);
    }

    #[test]
    fn rewrite_truncate_and_purge_forget_entries() {
        let (mut c, node) = cache();
        for i in 1..=6 {
            push(&mut c, i, 10);
        }
        // A conflicting append at 4 replaces 4.. .
        c.push(4, "x4".to_string(), 10);
        assert_eq!(c.get(3, 5).unwrap(), vec!["e3", "x4"]);
        assert!(c.get(5, 6).is_none());
        c.truncate_from(3);
        assert!(c.get(3, 4).is_none());
        assert_eq!(c.get(1, 3).unwrap(), vec!["e1", "e2"]);
        c.purge_upto(1);
        assert!(c.get(1, 2).is_none());
        assert_eq!(node.load(Ordering::Relaxed), 10);
        drop(c);
        assert_eq!(node.load(Ordering::Relaxed), 0);
    }

    #[test]
    fn budgets_bound_the_cache() {
        let (mut c, node) = cache();
        let big = CACHE_GROUP_BYTES / 4;
        for i in 1..=10 {
            push(&mut c, i, big);
        }
        assert!(c.bytes <= CACHE_GROUP_BYTES);
        assert_eq!(c.get(7, 11).unwrap().len(), 4);
        assert!(c.get(6, 7).is_none(), "oldest evicted");
        // Too large for the group budget: not cached, and the cache restarts after it.
        push(&mut c, 11, CACHE_GROUP_BYTES + 1);
        assert!(c.get(11, 12).is_none());
        // The node budget is shared: another group's bytes count against it.
        let (mut other, _) = (EntryCache::new(node.clone()), ());
        node.fetch_add(CACHE_NODE_BYTES, Ordering::Relaxed);
        other.push(1, "y".to_string(), 1);
        assert!(other.get(1, 2).is_none());
        node.fetch_sub(CACHE_NODE_BYTES, Ordering::Relaxed);
    }
}
