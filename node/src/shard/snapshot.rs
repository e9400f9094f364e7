//! Snapshots of a shard group, and why they let the group's Raft log be purged safely.
//!
//! # What a snapshot is
//! A shard snapshot is not a copy kept anywhere: it is the state machine itself. Building
//! one (at the node's checkpoints, every [`RaftTuning::shard_snapshot_bytes`] applied by all
//! groups, see [`super::checkpoint`]) only flushes `shard_data`; its payload — every retained record —
//! is produced when a follower needs it, by [`spawn_stream`], from a RocksDB snapshot taken
//! under the state machine lock (so it matches the header it carries exactly), framed and
//! pushed in ~1 MiB chunks through a bounded channel. The receiver spools it to disk
//! (`spate_control_plane::raft::snapshot`) and [`install`] reads it back sequentially, so
//! neither side ever holds more than a few chunks of a snapshot in memory.
//!
//! Cost, amortised: the builds of one checkpoint round share one memtable flush, which
//! RocksDB would do anyway after every `write_buffer_size` bytes, and never rewrite retained
//! data. Reading all retained data happens once per follower catch-up, not per snapshot.
//!
//! # The purge invariant
//! **No acknowledged record is lost when any node crashes after a purge.** The state
//! machine writes without the WAL, so the log is the only durable copy of whatever has not
//! been flushed yet. openraft purges only entries covered by the last snapshot (whether it
//! purges on its own or, for shard groups, when the replica asks, see [`super::purge`]); a
//! snapshot's meta is only handed to openraft (from `build_snapshot`, `get_current_snapshot`
//! or after `install_snapshot`) once `shard_data` is flushed up to at least that entry. So after a crash every purged entry is in the flushed state machine, and every
//! entry after the flushed header is still in the log. `cluster-tests/tests/purge.rs` checks
//! it with real processes (purge, SIGKILL, restart, catch-up through a snapshot).
//!
//! # Crash safety of an install
//! Applied state is a deterministic function of the committed log prefix, so a follower's
//! records are the same keys with the same values as the snapshot's (it is behind, never
//! ahead or different). [`install`] therefore writes the snapshot's keys over the existing
//! ones *before* touching the header, and deletes what the snapshot no longer has (trimmed
//! records, stale time keys) in the same batch as the new header. A crash at any point leaves
//! either the old header with (extra, invisible) newer records, or the new header with all
//! of its records.
//!
//! [`RaftTuning::shard_snapshot_bytes`]: spate_control_plane::raft::RaftTuning

use std::io::{self, Read};
use std::sync::Arc;

use openraft::alias::SnapshotMetaOf;
use rocksdb::{Direction, IteratorMode, ReadOptions, WriteBatch, DB};
use serde::{Deserialize, Serialize};
use spate_control_plane::raft::codec::{decode_io, encode_io};
use spate_control_plane::raft::db::{group_prefix, read_u64, CF_SHARD_DATA};
use spate_control_plane::raft::snapshot::{ChunkStream, SnapshotReader, SNAPSHOT_CHUNK};
use spate_control_plane::raft::GroupId;
use tokio::sync::{mpsc, oneshot, Mutex};

use super::store::{header_key, record_key, time_key, unlogged, Header, KIND_RECORD, KIND_TIME};
use super::ShardTypeConfig as C;

/// Key-value bytes per `Pairs` frame.
const FRAME_BYTES: usize = 256 << 10;
/// Chunks buffered between the producer thread and the transport.
const CHANNEL_CHUNKS: usize = 2;
/// Largest frame a reader accepts (a frame holds about `FRAME_BYTES` plus one record).
const MAX_FRAME: usize = 64 << 20;

/// One frame of the payload; each is written as a 4-byte little-endian length and postcard.
#[derive(Debug, Serialize, Deserialize)]
enum Frame {
    /// The state header fields the payload covers (first frame).
    Header {
        next_ordinal: u64,
        last_arrival_ms: u64,
        trim_ordinal: u64,
        sealed: Option<(u64, u64)>,
    },
    /// Keys of the group without their 8-byte group prefix, in key order, with values.
    Pairs(Vec<(Vec<u8>, Vec<u8>)>),
    /// The end, with the number of pairs sent (a truncated payload is refused).
    End { pairs: u64 },
}

fn io_err(e: impl std::fmt::Display) -> io::Error {
    io::Error::other(e.to_string())
}

fn put_frame(buf: &mut Vec<u8>, frame: &Frame) -> io::Result<()> {
    let body = encode_io(frame)?;
    buf.extend_from_slice(&(body.len() as u32).to_le_bytes());
    buf.extend_from_slice(&body);
    Ok(())
}

/// Reads the next frame; `None` at a clean end of input.
fn read_frame(r: &mut impl Read) -> io::Result<Option<Frame>> {
    let mut len = [0u8; 4];
    let mut got = 0;
    while got < 4 {
        let n = r.read(&mut len[got..])?;
        if n == 0 {
            return if got == 0 {
                Ok(None)
            } else {
                Err(io_err("snapshot payload cut inside a frame length"))
            };
        }
        got += n;
    }
    let len = u32::from_le_bytes(len) as usize;
    if len > MAX_FRAME {
        return Err(io_err(format!("snapshot frame of {len} bytes")));
    }
    let mut body = vec![0u8; len];
    r.read_exact(&mut body)?;
    decode_io(&body).map(Some)
}

/// Whether a key suffix (after the group prefix) belongs to the state `h` describes.
fn covered(suffix: &[u8], h: &Header) -> bool {
    match suffix.first() {
        Some(&KIND_RECORD) => {
            read_u64(suffix, 1).is_some_and(|o| o >= h.trim_ordinal && o < h.next_ordinal)
        }
        Some(&KIND_TIME) => read_u64(suffix, 9).is_some_and(|o| o < h.next_ordinal),
        _ => false,
    }
}

/// Prepares the snapshot payload of `group` on a thread of its own. The header is read and a
/// RocksDB snapshot taken under the state machine lock, so the payload matches the returned
/// header exactly. The thread reads data only once the payload's first chunk is asked for,
/// and stops as soon as the payload is dropped.
pub(super) async fn spawn_stream(
    db: Arc<DB>,
    group: GroupId,
    header: Arc<Mutex<Header>>,
) -> io::Result<(Header, ChunkStream)> {
    let (tx, rx) = mpsc::channel(CHANNEL_CHUNKS);
    let (h_tx, h_rx) = oneshot::channel();
    let (start_tx, start_rx) = oneshot::channel::<()>();
    std::thread::Builder::new()
        .name(format!("spate-snap-{group}"))
        .spawn(move || {
            let guard = header.blocking_lock();
            let h = guard.clone();
            let snap = db.snapshot();
            drop(guard);
            if h_tx.send(h.clone()).is_err() || start_rx.blocking_recv().is_err() {
                return; // never read
            }
            let produced = (|| -> io::Result<()> {
                let cf = db
                    .cf_handle(CF_SHARD_DATA)
                    .ok_or_else(|| io_err("missing cf shard_data"))?;
                let mut ro = ReadOptions::default();
                ro.set_iterate_upper_bound(group_prefix(group + 1).to_vec());
                ro.fill_cache(false);
                let prefix = group_prefix(group);
                let mut chunk = Vec::with_capacity(SNAPSHOT_CHUNK + FRAME_BYTES);
                put_frame(
                    &mut chunk,
                    &Frame::Header {
                        next_ordinal: h.next_ordinal,
                        last_arrival_ms: h.last_arrival_ms,
                        trim_ordinal: h.trim_ordinal,
                        sealed: h.sealed,
                    },
                )?;
                let mut pairs = Vec::new();
                let mut pair_bytes = 0usize;
                let mut count = 0u64;
                for item in
                    snap.iterator_cf_opt(cf, ro, IteratorMode::From(&prefix, Direction::Forward))
                {
                    let (k, v) = item.map_err(io_err)?;
                    if read_u64(&k, 0) != Some(group) || !covered(&k[8..], &h) {
                        continue;
                    }
                    pair_bytes += k.len() + v.len();
                    pairs.push((k[8..].to_vec(), v.to_vec()));
                    count += 1;
                    if pair_bytes >= FRAME_BYTES {
                        put_frame(&mut chunk, &Frame::Pairs(std::mem::take(&mut pairs)))?;
                        pair_bytes = 0;
                        if chunk.len() >= SNAPSHOT_CHUNK {
                            let full = std::mem::replace(
                                &mut chunk,
                                Vec::with_capacity(SNAPSHOT_CHUNK + FRAME_BYTES),
                            );
                            if tx.blocking_send(Ok(full)).is_err() {
                                return Ok(()); // nobody reads any more
                            }
                        }
                    }
                }
                if !pairs.is_empty() {
                    put_frame(&mut chunk, &Frame::Pairs(pairs))?;
                }
                put_frame(&mut chunk, &Frame::End { pairs: count })?;
                let _ = tx.blocking_send(Ok(chunk));
                Ok(())
            })();
            if let Err(e) = produced {
                let _ = tx.blocking_send(Err(e));
            }
        })
        .map_err(io_err)?;
    let h = h_rx
        .await
        .map_err(|_| io_err("snapshot producer stopped"))?;
    Ok((h, ChunkStream::new(rx, Some(start_tx))))
}

/// Installs a snapshot payload into `group` (blocking: run it off the async runtime) and
/// flushes it; returns the new header. See the module doc for why any crash point is safe.
pub(super) fn install(
    db: &DB,
    group: GroupId,
    meta: &SnapshotMetaOf<C>,
    mut payload: SnapshotReader,
) -> io::Result<Header> {
    let cf = db
        .cf_handle(CF_SHARD_DATA)
        .ok_or_else(|| io_err("missing cf shard_data"))?;
    let no_wal = unlogged();
    let Some(Frame::Header {
        next_ordinal,
        last_arrival_ms,
        trim_ordinal,
        sealed,
    }) = read_frame(&mut payload)?
    else {
        return Err(io_err("shard snapshot does not start with its header"));
    };
    let prefix = group_prefix(group);
    let mut count = 0u64;
    let mut first_time_key: Option<Vec<u8>> = None;
    loop {
        match read_frame(&mut payload)? {
            Some(Frame::Pairs(pairs)) => {
                let mut batch = WriteBatch::default();
                for (suffix, v) in pairs {
                    let mut k = Vec::with_capacity(8 + suffix.len());
                    k.extend_from_slice(&prefix);
                    k.extend_from_slice(&suffix);
                    if suffix.first() == Some(&KIND_TIME) && first_time_key.is_none() {
                        first_time_key = Some(k.clone());
                    }
                    batch.put_cf(cf, k, v);
                    count += 1;
                }
                db.write_opt(batch, &no_wal).map_err(io_err)?;
            }
            Some(Frame::End { pairs }) if pairs == count => break,
            Some(Frame::End { pairs }) => {
                return Err(io_err(format!(
                    "shard snapshot announces {pairs} pairs, carried {count}"
                )))
            }
            Some(Frame::Header { .. }) => return Err(io_err("second header in a shard snapshot")),
            None => return Err(io_err("shard snapshot ends before its end frame")),
        }
    }
    let h = Header {
        last_applied: meta.last_log_id,
        membership: meta.last_membership.clone(),
        next_ordinal,
        last_arrival_ms,
        trim_ordinal,
        sealed,
    };
    // What the snapshot no longer has goes in the same batch as the header that says so.
    let mut batch = WriteBatch::default();
    batch.delete_range_cf(cf, record_key(group, 0), record_key(group, trim_ordinal));
    batch.delete_range_cf(
        cf,
        &record_key(group, next_ordinal)[..],
        &time_key(group, 0, 0)[..],
    );
    let time_end = first_time_key.unwrap_or_else(|| group_prefix(group + 1).to_vec());
    batch.delete_range_cf(cf, time_key(group, 0, 0).to_vec(), time_end);
    batch.put_cf(cf, header_key(group), encode_io(&h)?);
    db.write_opt(batch, &no_wal).map_err(io_err)?;
    // Durable before openraft purges the log the snapshot replaces.
    super::checkpoint::flush_data(db)?;
    Ok(h)
}

#[cfg(test)]
mod tests {
    use super::super::checkpoint::Checkpoints;
    use super::super::store::{ShardStore, StoredRecord};
    use super::*;
    use openraft::storage::RaftStateMachine;
    use spate_control_plane::raft::db;
    use spate_control_plane::raft::SnapshotData;

    /// Writes `ordinals` as records (one time key per record) and a header for `group`.
    fn seed(db: &DB, group: GroupId, ordinals: std::ops::Range<u64>, h: &Header) {
        let cf = db.cf_handle(CF_SHARD_DATA).unwrap();
        for o in ordinals {
            let rec = StoredRecord {
                arrival_ms: 1000 + o,
                partition_key: format!("k{o}"),
                data: bytes::Bytes::from(vec![o as u8; 1200]),
            };
            db.put_cf(cf, record_key(group, o), encode_io(&rec).unwrap())
                .unwrap();
            db.put_cf(cf, time_key(group, 1000 + o, o), []).unwrap();
        }
        db.put_cf(cf, header_key(group), encode_io(h).unwrap())
            .unwrap();
    }

    fn header(applied: u64, next: u64, trim: u64) -> Header {
        Header {
            last_applied: Some(openraft::testing::log_id::<C>(1, 0, applied)),
            next_ordinal: next,
            last_arrival_ms: 1000 + next - 1,
            trim_ordinal: trim,
            ..Header::default()
        }
    }

    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn streamed_snapshot_installs_over_an_older_replica() {
        let (da, dbb) = (tempfile::tempdir().unwrap(), tempfile::tempdir().unwrap());
        let (a, b) = (db::open(da.path()).unwrap(), db::open(dbb.path()).unwrap());
        // The source: records 5000..9000 retained (trimmed below 5000), plus a stray record
        // at 9500 past its header (a leftover an interrupted install may leave): not sent.
        seed(&a, 3, 5000..9000, &header(500, 9000, 5000));
        seed(&a, 3, 9500..9501, &header(500, 9000, 5000));
        // The target is behind: records 1..6000, trim 1.
        seed(&b, 3, 1..6000, &header(300, 6000, 1));

        let mut src =
            ShardStore::open(a.clone(), 3, Checkpoints::new(a.clone(), 1 << 20), 1 << 20).unwrap();
        let snap = src.get_current_snapshot().await.unwrap().unwrap();
        assert_eq!(snap.meta.last_log_id.map(|l| l.index), Some(500));
        // Go through the receiver's spool, as a transfer does.
        let mut data = snap.snapshot;
        let spool = tempfile::tempdir().unwrap();
        let mut sink = spate_control_plane::raft::snapshot::SnapshotSink::new(spool.path(), 3);
        while let Some(chunk) = data.next_chunk().await.unwrap() {
            sink.write(&chunk).unwrap();
        }
        let payload = sink.finish().unwrap();
        assert!(
            matches!(payload, SnapshotData::File(_)),
            "4.8 MB is spooled"
        );

        let mut dst =
            ShardStore::open(b.clone(), 3, Checkpoints::new(b.clone(), 1 << 20), 1 << 20).unwrap();
        dst.install_snapshot(&snap.meta, payload).await.unwrap();
        let p = dst.progress();
        assert_eq!((p.trim_ordinal(), p.next_ordinal()), (5000, 9000));
        assert_eq!(p.last_applied_index(), 500);
        let got = dst.read(0, 10_000, usize::MAX).unwrap();
        let want = src.read(0, 10_000, usize::MAX).unwrap();
        assert_eq!(got.len(), 4000);
        assert!(got
            .iter()
            .zip(&want)
            .all(|(x, y)| x.ordinal == y.ordinal && x.record == y.record));
        // Trimmed records and their time keys are gone from the target, the stray one was
        // not copied, and the header survives a reopen (it was flushed).
        let cf = b.cf_handle(CF_SHARD_DATA).unwrap();
        assert!(b.get_cf(cf, record_key(3, 4999)).unwrap().is_none());
        assert!(b
            .get_cf(cf, time_key(3, 1000 + 4999, 4999))
            .unwrap()
            .is_none());
        assert!(b.get_cf(cf, record_key(3, 9500)).unwrap().is_none());
        assert_eq!(dst.ordinal_at_time(0).unwrap(), 5000);
        drop(dst);
        let reopened =
            ShardStore::open(b.clone(), 3, Checkpoints::new(b.clone(), 1 << 20), 1 << 20).unwrap();
        assert_eq!(reopened.progress().next_ordinal(), 9000);
    }

    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn a_truncated_payload_is_refused() {
        let (da, dbb) = (tempfile::tempdir().unwrap(), tempfile::tempdir().unwrap());
        let (a, b) = (db::open(da.path()).unwrap(), db::open(dbb.path()).unwrap());
        seed(&a, 4, 1..3000, &header(50, 3000, 1));
        let mut src =
            ShardStore::open(a.clone(), 4, Checkpoints::new(a, 1 << 20), 1 << 20).unwrap();
        let snap = src.get_current_snapshot().await.unwrap().unwrap();
        let bytes = snap.snapshot.into_bytes(usize::MAX).await.unwrap();
        let cut = bytes[..bytes.len() - 3].to_vec();
        let mut dst =
            ShardStore::open(b.clone(), 4, Checkpoints::new(b, 1 << 20), 1 << 20).unwrap();
        assert!(dst
            .install_snapshot(&snap.meta, SnapshotData::Bytes(cut))
            .await
            .is_err());
        assert_eq!(dst.progress().next_ordinal(), 1, "nothing installed");
    }
}
