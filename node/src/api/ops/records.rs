//! Data-plane operations: PutRecord, PutRecords, GetShardIterator, GetRecords.

use spate_proto::kinesis::model::{
    Blob, ChildShard, GetRecordsInput, GetRecordsOutput, GetShardIteratorInput,
    GetShardIteratorOutput, PutRecordInput, PutRecordOutput, PutRecordsInput, PutRecordsOutput,
    PutRecordsRequestEntry, PutRecordsResultEntry, Record,
};
use spate_proto::kinesis::{KinesisError, KinesisResult};

use super::settings::encryption_of;
use super::{check_arn_scope, check_stream_ref, hash_range, resolve_stream, timestamp, NAME};
use crate::api::backend::{Backend, IteratorStart, PutEntry};
use crate::api::ident::{
    is_hash_key_syntax, is_sequence_number, parse_hash_key, parse_shard_id, shard_id,
    HASH_KEY_PATTERN, SEQUENCE_PATTERN,
};
use crate::api::validate::{blob_shown, Pattern, Violations};

/// Largest record: data plus partition key.
pub const MAX_RECORD_BYTES: usize = 1024 * 1024;
/// Largest PutRecords request: all data plus partition keys.
pub const MAX_PUT_RECORDS_BYTES: usize = 5 * 1024 * 1024;
/// Most records in one PutRecords request.
pub const MAX_PUT_RECORDS: usize = 500;
/// Most records one GetRecords returns (also its default).
pub const MAX_GET_RECORDS: i64 = 10_000;

const ITERATOR_TYPES: &[&str] = &[
    "AFTER_SEQUENCE_NUMBER",
    "AT_SEQUENCE_NUMBER",
    "AT_TIMESTAMP",
    "TRIM_HORIZON",
    "LATEST",
];

const HASH_KEY: Option<Pattern> = Some((HASH_KEY_PATTERN, is_hash_key_syntax));
const SEQUENCE: Option<Pattern> = Some((SEQUENCE_PATTERN, is_sequence_number));

/// The model's bound of `Data` (the largest record size a stream can be set to).
pub const MODEL_MAX_RECORD_BYTES: usize = 10 * 1024 * 1024;

/// Validates one record's members against the model (`prefix` is `""` or
/// `records.N.member.`). The stream's own record-size limit is checked by [`check_size`].
fn check_record(
    v: &mut Violations,
    prefix: &str,
    data: &Option<Blob>,
    key: &Option<String>,
    hash: &Option<String>,
) {
    let data_field = format!("{prefix}data");
    let key_field = format!("{prefix}partitionKey");
    if let Some(data) = v.required(&data_field, data) {
        let len = data.0.len();
        v.length(
            &data_field,
            &blob_shown(len),
            len,
            0,
            MODEL_MAX_RECORD_BYTES,
        );
    }
    if let Some(key) = v.required(&key_field, key) {
        v.string(&key_field, key, 1, 256, None);
    }
    if let Some(hash) = hash {
        v.string(
            &format!("{prefix}explicitHashKey"),
            hash,
            0,
            usize::MAX,
            HASH_KEY,
        );
    }
}

/// Whether `check_record` would surely find nothing wrong with a PutRecords entry: data
/// present within the model bound, a partition key of 1..=256 bytes (hence characters), no
/// explicit hash key. Lets the common case skip building per-record field names.
fn plainly_valid(r: &PutRecordsRequestEntry) -> bool {
    r.explicit_hash_key.is_none()
        && r.data
            .as_ref()
            .is_some_and(|d| d.0.len() <= MODEL_MAX_RECORD_BYTES)
        && r.partition_key
            .as_ref()
            .is_some_and(|k| (1..=256).contains(&k.len()))
}

/// Checks a record against the stream's maximum record size (data + partition key).
fn check_size(v: &mut Violations, prefix: &str, data_len: usize, key_len: usize, max: usize) {
    let data_field = format!("{prefix}data");
    if data_len <= max && data_len + key_len > max {
        // Counted together with the partition key, as the service limit is.
        v.add(
            &data_field,
            Some(&blob_shown(data_len)),
            &format!(
                "have length less than or equal to {} (the data plus the partition key must not exceed {max} bytes)",
                max - key_len.min(max)
            ),
        );
    } else {
        v.length(&data_field, &blob_shown(data_len), data_len, 0, max);
    }
}

/// The stream's record-size limit and the `EncryptionType` its puts report.
async fn put_settings<B: Backend>(backend: &B, name: &str) -> KinesisResult<(usize, String)> {
    let settings = backend.stream_settings(name).await?;
    Ok((settings.max_record_bytes(), encryption_of(&settings).0))
}

/// Builds the backend entry of a validated record.
fn entry(data: Option<Blob>, key: Option<String>, hash: Option<String>) -> KinesisResult<PutEntry> {
    let explicit_hash_key = match hash {
        Some(h) => Some(parse_hash_key(&h).map_err(|_| {
            KinesisError::invalid(format!(
                "Invalid ExplicitHashKey. ExplicitHashKey must be in the range: [0, 2^128-1]. Specified value was {h}"
            ))
        })?),
        None => None,
    };
    Ok(PutEntry {
        partition_key: key.unwrap_or_default(),
        explicit_hash_key,
        data: data.unwrap_or_default().0,
    })
}

pub async fn put_record<B: Backend>(
    backend: &B,
    req: PutRecordInput,
) -> KinesisResult<PutRecordOutput> {
    let mut v = Violations::new();
    check_stream_ref(
        &mut v,
        req.stream_name.as_deref(),
        req.stream_arn.as_deref(),
    );
    check_record(
        &mut v,
        "",
        &req.data,
        &req.partition_key,
        &req.explicit_hash_key,
    );
    if let Some(seq) = &req.sequence_number_for_ordering {
        v.string("sequenceNumberForOrdering", seq, 0, usize::MAX, SEQUENCE);
    }
    v.finish()?;
    let entry = entry(req.data, req.partition_key, req.explicit_hash_key)?;
    let name = resolve_stream(
        backend,
        req.stream_name.as_deref(),
        req.stream_arn.as_deref(),
    )?;
    let (max, encryption_type) = put_settings(backend, &name).await?;
    let mut v = Violations::new();
    check_size(&mut v, "", entry.data.len(), entry.partition_key.len(), max);
    v.finish()?;
    let outcome = backend
        .put_records(&name, vec![entry])
        .await?
        .into_iter()
        .next()
        .ok_or_else(|| KinesisError::internal("no outcome for the record"))?;
    let ok = outcome?;
    Ok(PutRecordOutput {
        shard_id: shard_id(ok.shard_index),
        sequence_number: ok.sequence_number,
        encryption_type,
    })
}

pub async fn put_records<B: Backend>(
    backend: &B,
    req: PutRecordsInput,
) -> KinesisResult<PutRecordsOutput> {
    let mut v = Violations::new();
    if let Some(records) = v.required("records", &req.records) {
        let n = records.len();
        v.length("records", &format!("<{n} records>"), n, 1, MAX_PUT_RECORDS);
        for (i, r) in records.iter().enumerate() {
            if plainly_valid(r) {
                continue;
            }
            let prefix = format!("records.{}.member.", i + 1);
            check_record(
                &mut v,
                &prefix,
                &r.data,
                &r.partition_key,
                &r.explicit_hash_key,
            );
        }
    }
    check_stream_ref(
        &mut v,
        req.stream_name.as_deref(),
        req.stream_arn.as_deref(),
    );
    v.finish()?;
    let records = req.records.unwrap_or_default();
    let total: usize = records
        .iter()
        .map(|r| {
            r.data.as_ref().map_or(0, |d| d.0.len())
                + r.partition_key.as_ref().map_or(0, |k| k.len())
        })
        .sum();
    if total > MAX_PUT_RECORDS_BYTES {
        return Err(KinesisError::invalid(format!(
            "Records size exceeds {MAX_PUT_RECORDS_BYTES} bytes: the request holds {total} bytes of data and partition keys."
        )));
    }
    let entries = records
        .into_iter()
        .map(|r| entry(r.data, r.partition_key, r.explicit_hash_key))
        .collect::<KinesisResult<Vec<_>>>()?;
    let count = entries.len();
    let name = resolve_stream(
        backend,
        req.stream_name.as_deref(),
        req.stream_arn.as_deref(),
    )?;
    let (max, encryption_type) = put_settings(backend, &name).await?;
    let mut v = Violations::new();
    for (i, e) in entries.iter().enumerate() {
        if e.data.len() + e.partition_key.len() <= max {
            // Within the limit: `check_size` would find nothing (skips its formatting).
            continue;
        }
        let prefix = format!("records.{}.member.", i + 1);
        check_size(&mut v, &prefix, e.data.len(), e.partition_key.len(), max);
    }
    v.finish()?;
    let outcomes = backend.put_records(&name, entries).await?;
    if outcomes.len() != count {
        return Err(KinesisError::internal(format!(
            "expected {count} record outcomes, got {}",
            outcomes.len()
        )));
    }
    let mut failed = 0u32;
    let results = outcomes
        .into_iter()
        .map(|o| match o {
            Ok(ok) => PutRecordsResultEntry {
                sequence_number: Some(ok.sequence_number),
                shard_id: Some(shard_id(ok.shard_index)),
                ..Default::default()
            },
            Err(e) => {
                failed += 1;
                PutRecordsResultEntry {
                    error_code: Some(e.kind.type_name().to_string()),
                    error_message: Some(e.message),
                    ..Default::default()
                }
            }
        })
        .collect();
    Ok(PutRecordsOutput {
        failed_record_count: failed,
        records: results,
        encryption_type,
    })
}

pub async fn get_shard_iterator<B: Backend>(
    backend: &B,
    req: GetShardIteratorInput,
) -> KinesisResult<GetShardIteratorOutput> {
    let mut v = Violations::new();
    check_stream_ref(
        &mut v,
        req.stream_name.as_deref(),
        req.stream_arn.as_deref(),
    );
    if let Some(id) = v.required("shardId", &req.shard_id) {
        v.string("shardId", id, 1, 128, NAME);
    }
    if let Some(t) = v.required("shardIteratorType", &req.shard_iterator_type) {
        v.one_of("shardIteratorType", t, ITERATOR_TYPES);
    }
    if let Some(seq) = &req.starting_sequence_number {
        v.string("startingSequenceNumber", seq, 0, usize::MAX, SEQUENCE);
    }
    v.finish()?;
    let kind = req.shard_iterator_type.as_deref().unwrap_or_default();
    let seq = || {
        req.starting_sequence_number.clone().ok_or_else(|| {
            KinesisError::invalid(format!(
                "StartingSequenceNumber must be specified for ShardIteratorType {kind}."
            ))
        })
    };
    let start = match kind {
        "TRIM_HORIZON" => IteratorStart::TrimHorizon,
        "LATEST" => IteratorStart::Latest,
        "AT_SEQUENCE_NUMBER" => IteratorStart::AtSequenceNumber(seq()?),
        "AFTER_SEQUENCE_NUMBER" => IteratorStart::AfterSequenceNumber(seq()?),
        _ => {
            let ts = req.timestamp.ok_or_else(|| {
                KinesisError::invalid(
                    "Timestamp must be specified for ShardIteratorType AT_TIMESTAMP.",
                )
            })?;
            let ms = u64::try_from(ts.0).map_err(|_| {
                KinesisError::invalid("Timestamp must not be before the Unix epoch.")
            })?;
            IteratorStart::AtTimestamp(ms)
        }
    };
    let name = resolve_stream(
        backend,
        req.stream_name.as_deref(),
        req.stream_arn.as_deref(),
    )?;
    let raw_id = req.shard_id.as_deref().unwrap_or_default();
    let index = parse_shard_id(raw_id).ok_or_else(|| {
        KinesisError::not_found(format!(
            "Shard {raw_id} in stream {name} under account {} does not exist",
            backend.account_id()
        ))
    })?;
    let shard_iterator = backend.get_shard_iterator(&name, index, start).await?;
    Ok(GetShardIteratorOutput { shard_iterator })
}

pub async fn get_records<B: Backend>(
    backend: &B,
    req: GetRecordsInput,
) -> KinesisResult<GetRecordsOutput> {
    let mut v = Violations::new();
    if let Some(it) = v.required("shardIterator", &req.shard_iterator) {
        v.string("shardIterator", it, 1, 512, None);
    }
    if let Some(limit) = req.limit {
        v.range("limit", limit, Some(1), Some(MAX_GET_RECORDS));
    }
    check_stream_ref(&mut v, None, req.stream_arn.as_deref());
    v.finish()?;
    check_arn_scope(backend, req.stream_arn.as_deref())?;
    let raw = req.shard_iterator.as_deref().unwrap_or_default();
    // AWS tolerates an iterator wrapped in double quotes.
    let iterator = raw
        .strip_prefix('"')
        .and_then(|s| s.strip_suffix('"'))
        .unwrap_or(raw);
    let limit = req
        .limit
        .and_then(|l| u32::try_from(l).ok())
        .unwrap_or(MAX_GET_RECORDS as u32);
    let out = backend.get_records(iterator, limit).await?;
    let child_shards = (!out.child_shards.is_empty()).then(|| {
        out.child_shards
            .iter()
            .map(|c| ChildShard {
                shard_id: shard_id(c.index),
                parent_shards: c.parents.iter().copied().map(shard_id).collect(),
                hash_key_range: hash_range(c.hash_start, c.hash_end),
            })
            .collect()
    });
    Ok(GetRecordsOutput {
        records: out
            .records
            .into_iter()
            .map(|r| Record {
                sequence_number: r.sequence_number,
                approximate_arrival_timestamp: timestamp(r.arrival_ms),
                data: Blob(r.data),
                partition_key: r.partition_key,
                encryption_type: None,
            })
            .collect(),
        next_shard_iterator: out.next_shard_iterator,
        millis_behind_latest: out.millis_behind_latest,
        child_shards,
    })
}
