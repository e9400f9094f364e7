//! Node-wide checkpoints of the shard state machines.
//!
//! Every shard replica of a node writes its state machine into the one `shard_data` column
//! family without the WAL, so a flush of that column family makes all of them durable at
//! once. A checkpoint is such a flush; after it, each group snapshots (which, with the
//! flush just done, costs nothing more) and purges its Raft log below the snapshot.
//!
//! Checkpoints are paced by the bytes all groups of the node applied together, not per
//! group: the log bytes left unpurged on a node are then at most about one checkpoint
//! interval plus the kept tail of each group, whatever the number of groups, which is what
//! lets purged log entries die in the `raft_log` memtable instead of being flushed to disk
//! (see `spate_control_plane::raft::db`).
//!
//! Flushes are coalesced: a snapshot build asks [`Checkpoints::flush`] for a flush that
//! started after its own call, and any flush in progress or completed since serves every
//! caller it covers, so the groups of one round share one flush.

use std::io;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;

use rocksdb::{FlushOptions, DB};
use spate_control_plane::raft::db::CF_SHARD_DATA;
use tokio::sync::{watch, Mutex};

/// The checkpoint pacing and flush coalescing of one node's shard groups.
pub struct Checkpoints {
    db: Arc<DB>,
    /// Applied bytes that make a checkpoint round.
    every: u64,
    /// Bytes applied by all groups since the last round.
    applied: AtomicU64,
    /// Round counter; replicas snapshot when it changes.
    round: watch::Sender<u64>,
    /// Flushes started so far (the number of the latest one).
    started: AtomicU64,
    /// Number of the latest completed flush; held while a flush runs.
    completed: Mutex<u64>,
}

impl Checkpoints {
    /// Checkpoints of `db`'s shard state machines, one round every `every` applied bytes.
    pub fn new(db: Arc<DB>, every: u64) -> Arc<Self> {
        Arc::new(Self {
            db,
            every: every.max(1),
            applied: AtomicU64::new(0),
            round: watch::Sender::new(0),
            started: AtomicU64::new(0),
            completed: Mutex::new(0),
        })
    }

    /// Counts bytes a group applied; starts a round when the node's total crosses the
    /// interval.
    pub fn applied(&self, bytes: u64) {
        let total = self.applied.fetch_add(bytes, Ordering::AcqRel) + bytes;
        // Only the caller that takes a total past the interval back to zero starts the round.
        if total >= self.every && self.applied.swap(0, Ordering::AcqRel) >= self.every {
            self.round.send_modify(|r| *r += 1);
        }
    }

    /// Changes whenever a round starts.
    pub fn rounds(&self) -> watch::Receiver<u64> {
        self.round.subscribe()
    }

    /// Returns once a flush of `shard_data` that started after this call has completed:
    /// everything any state machine applied before the call is then on disk.
    pub async fn flush(&self) -> io::Result<()> {
        let seen = self.started.load(Ordering::Acquire);
        let mut completed = self.completed.lock().await;
        if *completed > seen {
            // A flush numbered after `seen` started after this call began, and completed.
            return Ok(());
        }
        let number = self.started.fetch_add(1, Ordering::AcqRel) + 1;
        let db = self.db.clone();
        tokio::task::spawn_blocking(move || flush_data(&db))
            .await
            .map_err(io::Error::other)??;
        *completed = number;
        Ok(())
    }

    /// Flushes started so far (tests check the coalescing with it).
    pub fn flushes(&self) -> u64 {
        self.started.load(Ordering::Acquire)
    }
}

/// Flushes `shard_data`, waiting for the flush: after it returns, everything applied before
/// the call survives a crash.
pub(super) fn flush_data(db: &DB) -> io::Result<()> {
    let data = db
        .cf_handle(CF_SHARD_DATA)
        .ok_or_else(|| io::Error::other("missing cf shard_data"))?;
    let mut fo = FlushOptions::default();
    fo.set_wait(true);
    db.flush_cf_opt(&data, &fo).map_err(io::Error::other)
}

#[cfg(test)]
mod tests {
    use super::*;
    use spate_control_plane::raft::db;

    #[test]
    fn a_round_starts_once_per_interval_of_applied_bytes() {
        let dir = tempfile::tempdir().unwrap();
        let c = Checkpoints::new(db::open(dir.path()).unwrap(), 1000);
        let mut rounds = c.rounds();
        c.applied(600);
        assert!(!rounds.has_changed().unwrap());
        c.applied(600);
        assert!(rounds.has_changed().unwrap());
        assert_eq!(*rounds.borrow_and_update(), 1);
        c.applied(999);
        assert!(
            !rounds.has_changed().unwrap(),
            "the counter restarted at zero"
        );
        c.applied(1);
        assert_eq!(*rounds.borrow_and_update(), 2);
    }

    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn concurrent_callers_share_flushes_and_each_gets_one_started_after_it() {
        let dir = tempfile::tempdir().unwrap();
        let db = db::open(dir.path()).unwrap();
        let c = Checkpoints::new(db.clone(), 1000);
        let cf = db.cf_handle(CF_SHARD_DATA).unwrap();
        let mut no_wal = rocksdb::WriteOptions::default();
        no_wal.disable_wal(true);
        db.put_cf_opt(cf, b"k", b"v", &no_wal).unwrap();
        let in_memtable = |db: &DB| {
            db.property_int_value_cf(cf, "rocksdb.num-entries-active-mem-table")
                .unwrap()
        };
        assert_eq!(in_memtable(&db), Some(1));
        c.flush().await.unwrap();
        assert_eq!(c.flushes(), 1);
        assert_eq!(in_memtable(&db), Some(0), "the unlogged write was flushed");
        // A later call never reuses a flush that started before it.
        c.flush().await.unwrap();
        assert_eq!(c.flushes(), 2);
        let calls: Vec<_> = (0..16)
            .map(|_| {
                let c = c.clone();
                tokio::spawn(async move { c.flush().await })
            })
            .collect();
        for call in calls {
            call.await.unwrap().unwrap();
        }
        let n = c.flushes();
        assert!(
            (3..=2 + 16).contains(&n),
            "16 concurrent callers: at least one flush, at most one each ({n} in all)"
        );
    }
}
