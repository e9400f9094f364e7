//! The node's one RocksDB: column families and key layouts shared by all groups.
//!
//! | column family | key | value |
//! |---|---|---|
//! | `raft_log` | group (8 B BE) · log index (8 B BE) | postcard `Entry` |
//! | `raft_state` | group (8 B BE) · tag (1 B) | vote / committed / last purged log id |
//! | `meta_sm` | fixed keys | metadata state machine image |
//! | `shard_data` | group · kind · … | shard state machines: header, records, arrival-time index |
//!
//! `raft_log` and `shard_data` keep values of 256 bytes or more in blob files (key-value
//! separation), so compaction does not rewrite record payloads.
//!
//! # Why a shard's log entries are usually never flushed
//! A shard's records reach disk twice per replica: in the WAL, as part of their Raft log entry
//! (that is what makes a put durable), and in `shard_data` when its memtable is flushed (the
//! state machine writes without the WAL). Once the state machine is flushed past an entry,
//! the group purges its log up to it (`spate_node::shard::snapshot`). Column families flush
//! independently (no atomic flush), and `raft_log` has a larger write buffer than the log
//! bytes the groups of a node keep unpurged, so most entries are deleted while still in the
//! memtable, and the flush drops them instead of writing them out a second time.

use std::path::Path;
use std::sync::Arc;

use rocksdb::{ColumnFamilyDescriptor, Options, DB};

pub const CF_RAFT_LOG: &str = "raft_log";
pub const CF_RAFT_STATE: &str = "raft_state";
pub const CF_META_SM: &str = "meta_sm";
pub const CF_SHARD_DATA: &str = "shard_data";

const ALL_CFS: [&str; 4] = [CF_RAFT_LOG, CF_RAFT_STATE, CF_META_SM, CF_SHARD_DATA];

/// Column families whose large values live in blob files.
const BLOB_CFS: [&str; 2] = [CF_RAFT_LOG, CF_SHARD_DATA];
/// Values at least this large go to blob files in [`BLOB_CFS`].
const MIN_BLOB_BYTES: u64 = 256;
/// L0 files of `shard_data` that start a compaction (RocksDB's default is 4).
const L0_COMPACTION_TRIGGER: i32 = 16;
/// Write buffer of `raft_log`: larger than the log bytes the node's shard groups keep
/// unpurged (see the module doc), so that purged entries die in the memtable.
const LOG_WRITE_BUFFER: usize = 32 << 20;
/// Write buffer of every other column family.
const WRITE_BUFFER: usize = 16 << 20;
/// All memtables of the node together: past this RocksDB flushes one, so the write buffers
/// stay within this budget however many column families are busy. It leaves room for one
/// full `raft_log` and one full `shard_data` memtable, so that the budget is not what
/// flushes the log early.
const MEMTABLE_BUDGET: usize = LOG_WRITE_BUFFER + WRITE_BUFFER + (8 << 20);
/// The block cache all column families share (index, filter and small-value blocks; record
/// payloads live in blob files and are read through the page cache).
const BLOCK_CACHE: usize = 8 << 20;

/// Opens (creating if needed) the node's database under `dir`.
pub fn open(dir: &Path) -> Result<Arc<DB>, rocksdb::Error> {
    let mut opts = Options::default();
    opts.create_if_missing(true);
    opts.create_missing_column_families(true);
    opts.set_max_background_jobs(2);
    opts.set_compression_type(rocksdb::DBCompressionType::Lz4);
    opts.set_keep_log_file_num(4);
    // Bound memory: a few MiB of write buffer per column family, a budget for all of them,
    // and one shared block cache.
    opts.set_write_buffer_size(WRITE_BUFFER);
    opts.set_max_write_buffer_number(2);
    opts.set_db_write_buffer_size(MEMTABLE_BUDGET);
    let cache = rocksdb::Cache::new_lru_cache(BLOCK_CACHE);
    let mut table = rocksdb::BlockBasedOptions::default();
    table.set_block_cache(&cache);
    // No atomic flush: a shard state machine (header and records) lives in one column
    // family, whose flushes are a prefix of its writes, so it needs none; and `raft_log`
    // must flush on its own schedule (see the module doc).
    opts.set_atomic_flush(false);
    let cfs = ALL_CFS.iter().map(|name| {
        let mut cf_opts = Options::default();
        cf_opts.set_compression_type(rocksdb::DBCompressionType::Lz4);
        cf_opts.set_write_buffer_size(if *name == CF_RAFT_LOG {
            LOG_WRITE_BUFFER
        } else {
            WRITE_BUFFER
        });
        cf_opts.set_max_write_buffer_number(2);
        cf_opts.set_block_based_table_factory(&table);
        if BLOB_CFS.contains(name) {
            // Key-value separation: record payloads and log entries go to blob files when
            // the memtable is flushed and are not rewritten by compaction (which then only
            // moves small keys and blob references). Payloads are stored uncompressed: they
            // are usually already compressed or random, and LZ4 on them costs CPU for no gain.
            cf_opts.set_enable_blob_files(true);
            cf_opts.set_min_blob_size(MIN_BLOB_BYTES);
            cf_opts.set_blob_compression_type(rocksdb::DBCompressionType::None);
            // No blob garbage collection: it relocates every live blob of the oldest files
            // on each compaction that touches them, rewriting payloads after all. Records
            // leave oldest first (retention) and group removal drops a whole key range, so a
            // blob file becomes obsolete — and is deleted — once compaction has dropped the
            // keys that point into it.
            cf_opts.set_enable_blob_gc(false);
        }
        if *name == CF_SHARD_DATA {
            // Every checkpoint flush writes an L0 file spanning all groups of the node, so
            // each L0 compaction overlaps — and rewrites — every retained key (and small
            // records, kept inline below `MIN_BLOB_BYTES`) of those groups. Compacting after
            // more L0 files amortises that rewrite over more flushes; the write stall
            // triggers move up with it.
            cf_opts.set_level_zero_file_num_compaction_trigger(L0_COMPACTION_TRIGGER);
            cf_opts.set_level_zero_slowdown_writes_trigger(L0_COMPACTION_TRIGGER * 3);
            cf_opts.set_level_zero_stop_writes_trigger(L0_COMPACTION_TRIGGER * 5);
        }
        ColumnFamilyDescriptor::new(*name, cf_opts)
    });
    Ok(Arc::new(DB::open_cf_descriptors(&opts, dir, cfs)?))
}

/// The 8-byte big-endian prefix of a group's keys.
pub fn group_prefix(group: u64) -> [u8; 8] {
    group.to_be_bytes()
}

/// `group · index` key of a log entry.
pub fn log_key(group: u64, index: u64) -> [u8; 16] {
    let mut k = [0u8; 16];
    k[..8].copy_from_slice(&group.to_be_bytes());
    k[8..].copy_from_slice(&index.to_be_bytes());
    k
}

/// Reads the big-endian u64 at `at` of a key, if the key is long enough.
pub fn read_u64(key: &[u8], at: usize) -> Option<u64> {
    let bytes: [u8; 8] = key.get(at..at + 8)?.try_into().ok()?;
    Some(u64::from_be_bytes(bytes))
}
