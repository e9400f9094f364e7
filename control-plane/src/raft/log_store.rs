//! [`RaftLogStorage`] for many groups in one RocksDB. A group's entries live under its
//! 8-byte prefix in `raft_log`; its vote, committed id and purge point under the same prefix
//! in `raft_state`. Appends are written unsynced and made durable by the node-wide
//! [`Flusher`] (group commit); votes wait for a sync before returning.

use std::fmt::Debug;
use std::io;
use std::marker::PhantomData;
use std::ops::{Bound, RangeBounds};
use std::sync::Arc;

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

/// The log of one group, stored in the node's shared RocksDB.
pub struct GroupLogStore<C: RaftTypeConfig> {
    db: Arc<DB>,
    group: GroupId,
    flusher: Flusher,
    _c: PhantomData<C>,
}

impl<C: RaftTypeConfig> Clone for GroupLogStore<C> {
    fn clone(&self) -> Self {
        Self {
            db: self.db.clone(),
            group: self.group,
            flusher: self.flusher.clone(),
            _c: PhantomData,
        }
    }
}

impl<C: RaftTypeConfig> GroupLogStore<C> {
    pub fn new(db: Arc<DB>, group: GroupId, flusher: Flusher) -> Self {
        Self {
            db,
            group,
            flusher,
            _c: PhantomData,
        }
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
        self.db.write(batch).map_err(io_err)
    }
}

impl<C> RaftLogReader<C> for GroupLogStore<C>
where
    C: RaftTypeConfig,
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
        self.get_state(TAG_VOTE)
    }
}

impl<C> RaftLogStorage<C> for GroupLogStore<C>
where
    C: RaftTypeConfig,
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
        self.put_state(TAG_VOTE, vote)?;
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
        for entry in entries {
            batch.put_cf(cf, log_key(self.group, entry.index()), encode_io(&entry)?);
        }
        // Readable now; durable once the flusher's next WAL sync completes.
        self.db.write(batch).map_err(io_err)?;
        self.flusher
            .after_sync(Box::new(move |res| callback.io_completed(res)));
        Ok(())
    }

    async fn truncate_after(&mut self, last_log_id: Option<LogIdOf<C>>) -> Result<(), io::Error> {
        let start = match last_log_id {
            Some(id) => id.index() + 1,
            None => 0,
        };
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
