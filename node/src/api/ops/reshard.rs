//! Resharding and retention operations: SplitShard, MergeShards, UpdateShardCount,
//! IncreaseStreamRetentionPeriod, DecreaseStreamRetentionPeriod.

use spate_proto::kinesis::hash::parse_hash_key;
use spate_proto::kinesis::model::{
    Empty, MergeShardsInput, RetentionPeriodInput, SplitShardInput, UpdateShardCountInput,
    UpdateShardCountOutput,
};
use spate_proto::kinesis::{KinesisError, KinesisResult};

use super::{arn_of, check_stream_ref, resolve_stream, NAME};
use crate::api::backend::Backend;
use crate::api::ident::{is_hash_key_syntax, parse_shard_id};
use crate::api::validate::{Pattern, Violations};

const HASH_KEY: Option<Pattern> = Some((r"0|([1-9]\d{0,38})", is_hash_key_syntax));
const SCALING_TYPES: &[&str] = &["UNIFORM_SCALING"];

fn shard_index(name: &str, shard: &str) -> KinesisResult<u32> {
    parse_shard_id(shard).ok_or_else(|| {
        KinesisError::not_found(format!("Could not find shard {shard} in stream {name}."))
    })
}

pub async fn split_shard<B: Backend>(backend: &B, req: SplitShardInput) -> KinesisResult<Empty> {
    let mut v = Violations::new();
    check_stream_ref(
        &mut v,
        req.stream_name.as_deref(),
        req.stream_arn.as_deref(),
    );
    if let Some(s) = v.required("shardToSplit", &req.shard_to_split) {
        v.string("shardToSplit", s, 1, 128, NAME);
    }
    if let Some(k) = v.required("newStartingHashKey", &req.new_starting_hash_key) {
        v.string("newStartingHashKey", k, 1, 128, HASH_KEY);
    }
    v.finish()?;
    let name = resolve_stream(
        backend,
        req.stream_name.as_deref(),
        req.stream_arn.as_deref(),
    )?;
    let shard = shard_index(&name, req.shard_to_split.as_deref().unwrap_or_default())?;
    let key = parse_hash_key(req.new_starting_hash_key.as_deref().unwrap_or_default())?;
    backend.split_shard(&name, shard, key).await?;
    Ok(Empty {})
}

pub async fn merge_shards<B: Backend>(backend: &B, req: MergeShardsInput) -> KinesisResult<Empty> {
    let mut v = Violations::new();
    check_stream_ref(
        &mut v,
        req.stream_name.as_deref(),
        req.stream_arn.as_deref(),
    );
    if let Some(s) = v.required("shardToMerge", &req.shard_to_merge) {
        v.string("shardToMerge", s, 1, 128, NAME);
    }
    if let Some(s) = v.required("adjacentShardToMerge", &req.adjacent_shard_to_merge) {
        v.string("adjacentShardToMerge", s, 1, 128, NAME);
    }
    v.finish()?;
    let name = resolve_stream(
        backend,
        req.stream_name.as_deref(),
        req.stream_arn.as_deref(),
    )?;
    let a = shard_index(&name, req.shard_to_merge.as_deref().unwrap_or_default())?;
    let b = shard_index(
        &name,
        req.adjacent_shard_to_merge.as_deref().unwrap_or_default(),
    )?;
    backend.merge_shards(&name, a, b).await?;
    Ok(Empty {})
}

pub async fn update_shard_count<B: Backend>(
    backend: &B,
    req: UpdateShardCountInput,
) -> KinesisResult<UpdateShardCountOutput> {
    let mut v = Violations::new();
    check_stream_ref(
        &mut v,
        req.stream_name.as_deref(),
        req.stream_arn.as_deref(),
    );
    if let Some(n) = v.required("targetShardCount", &req.target_shard_count) {
        v.range("targetShardCount", *n, Some(1), Some(100_000));
    }
    if let Some(t) = v.required("scalingType", &req.scaling_type) {
        v.one_of("scalingType", t, SCALING_TYPES);
    }
    v.finish()?;
    let name = resolve_stream(
        backend,
        req.stream_name.as_deref(),
        req.stream_arn.as_deref(),
    )?;
    let target = req.target_shard_count.unwrap_or_default() as u32;
    let current = backend.update_shard_count(&name, target).await?;
    Ok(UpdateShardCountOutput {
        stream_arn: arn_of(backend, &name),
        stream_name: name,
        current_shard_count: current as i64,
        target_shard_count: target as i64,
    })
}

async fn retention<B: Backend>(
    backend: &B,
    req: RetentionPeriodInput,
    increase: bool,
) -> KinesisResult<Empty> {
    let mut v = Violations::new();
    check_stream_ref(
        &mut v,
        req.stream_name.as_deref(),
        req.stream_arn.as_deref(),
    );
    if let Some(h) = v.required("retentionPeriodHours", &req.retention_period_hours) {
        v.range("retentionPeriodHours", *h, Some(1), Some(8760 * 10));
    }
    v.finish()?;
    let name = resolve_stream(
        backend,
        req.stream_name.as_deref(),
        req.stream_arn.as_deref(),
    )?;
    let hours = req.retention_period_hours.unwrap_or_default() as u32;
    backend.set_retention(&name, hours, increase).await?;
    Ok(Empty {})
}

pub async fn increase_retention<B: Backend>(
    backend: &B,
    req: RetentionPeriodInput,
) -> KinesisResult<Empty> {
    retention(backend, req, true).await
}

pub async fn decrease_retention<B: Backend>(
    backend: &B,
    req: RetentionPeriodInput,
) -> KinesisResult<Empty> {
    retention(backend, req, false).await
}
