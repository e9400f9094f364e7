//! Kinesis service limits and defaults that the API layer enforces: record and request
//! sizes, page sizes, retention bounds, shard quotas and per-shard throughput.
//!
//! Values follow the AWS Kinesis Data Streams API reference and quotas page (see
//! `shared/kinesis-reference.md`). Byte sizes and per-request counts are `usize`, hours and
//! shard counts are `u32`, per-second rates are `u64`.

const KIB: usize = 1024;
const MIB: usize = 1024 * KIB;

/// Maximum size of one record: data blob plus partition key (UTF-8 bytes), 1 MiB.
pub const MAX_RECORD_BYTES: usize = MIB;

/// Maximum partition key length in Unicode characters (minimum is 1).
pub const MAX_PARTITION_KEY_CHARS: usize = 256;

/// Maximum number of decimal digits of an `ExplicitHashKey` (pattern `0|([1-9]\d{0,38})`).
pub const MAX_EXPLICIT_HASH_KEY_DIGITS: usize = 39;

/// Maximum number of entries in one `PutRecords` request (minimum is 1).
pub const PUT_RECORDS_MAX_ENTRIES: usize = 500;

/// Maximum total size of one `PutRecords` request, data plus partition keys: 5 MiB.
pub const PUT_RECORDS_MAX_BYTES: usize = 5 * MIB;

/// Maximum `Limit` of `GetRecords` (minimum is 1).
pub const GET_RECORDS_MAX_LIMIT: usize = 10_000;

/// `GetRecords` `Limit` when the request omits it.
pub const GET_RECORDS_DEFAULT_LIMIT: usize = 10_000;

/// Maximum payload returned by one `GetRecords` call: 10 MiB.
pub const GET_RECORDS_MAX_BYTES: usize = 10 * MIB;

/// Retention period of a new stream, in hours.
pub const DEFAULT_RETENTION_HOURS: u32 = 24;

/// Lowest retention period that can be set, in hours.
pub const MIN_RETENTION_HOURS: u32 = 24;

/// Highest retention period that can be set, in hours (365 days).
pub const MAX_RETENTION_HOURS: u32 = 8760;

/// Number of shards an `ON_DEMAND` stream starts with.
pub const ON_DEMAND_INITIAL_SHARDS: u32 = 4;

/// Default open-shard quota per account (to become configurable).
pub const DEFAULT_SHARD_LIMIT: u32 = 200;

/// Maximum stream name length (names are 1–128 of `[a-zA-Z0-9_.-]`).
pub const MAX_STREAM_NAME_LEN: usize = 128;

/// Per-shard write throughput: 1 MiB per second.
pub const SHARD_WRITE_BYTES_PER_SEC: u64 = MIB as u64;

/// Per-shard write throughput: 1,000 records per second.
pub const SHARD_WRITE_RECORDS_PER_SEC: u64 = 1000;

/// Per-shard read throughput (shared by polling consumers): 2 MiB per second.
pub const SHARD_READ_BYTES_PER_SEC: u64 = 2 * MIB as u64;

/// Per-shard `GetRecords` calls per second.
pub const SHARD_READ_CALLS_PER_SEC: u64 = 5;

/// Maximum `Limit` of `ListStreams`.
pub const LIST_STREAMS_MAX_LIMIT: usize = 10_000;

/// Maximum `MaxResults` of `ListShards`.
pub const LIST_SHARDS_MAX_RESULTS: usize = 10_000;

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn sizes_are_binary_megabytes() {
        assert_eq!(MAX_RECORD_BYTES, 1_048_576);
        assert_eq!(PUT_RECORDS_MAX_BYTES, 5_242_880);
        assert_eq!(GET_RECORDS_MAX_BYTES, 10_485_760);
        assert_eq!(SHARD_WRITE_BYTES_PER_SEC, 1_048_576);
        assert_eq!(SHARD_READ_BYTES_PER_SEC, 2_097_152);
    }

    #[test]
    fn retention_bounds_are_consistent() {
        let (min, def, max) = (
            MIN_RETENTION_HOURS,
            DEFAULT_RETENTION_HOURS,
            MAX_RETENTION_HOURS,
        );
        assert!(min <= def && def <= max);
        assert_eq!(max, 365 * 24);
    }
}
