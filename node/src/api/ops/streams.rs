//! Stream control operations: CreateStream, DeleteStream, DescribeStream,
//! DescribeStreamSummary, ListStreams.

use spate_proto::kinesis::model::{
    CreateStreamInput, DeleteStreamInput, DescribeStreamInput, DescribeStreamOutput,
    DescribeStreamSummaryInput, DescribeStreamSummaryOutput, Empty, ListStreamsInput,
    ListStreamsOutput, StreamDescription, StreamDescriptionSummary, StreamSummary,
};
use spate_proto::kinesis::{KinesisError, KinesisResult};

use super::settings::{encryption_of, enhanced_monitoring};
use super::tags::{check_tag_map, check_tags_semantics};
use super::{arn_of, check_stream_ref, mode_details, resolve_stream, shard_model, timestamp, NAME};
use crate::api::backend::{Backend, SettingsChange, StreamMode};
use crate::api::ident::{parse_shard_id, shard_id};
use crate::api::token;
use crate::api::validate::Violations;
use spate_proto::kinesis::model::WarmThroughput;

const STREAM_MODES: &[&str] = &["PROVISIONED", "ON_DEMAND"];
/// Upper bound of `ShardCount` accepted by validation.
const MAX_SHARD_COUNT: i64 = 100_000;
/// DescribeStream / ListStreams page size when `Limit` is absent.
const DEFAULT_LIMIT: usize = 100;

pub async fn create_stream<B: Backend>(
    backend: &B,
    req: CreateStreamInput,
) -> KinesisResult<Empty> {
    let mut v = Violations::new();
    if let Some(name) = v.required("streamName", &req.stream_name) {
        v.string("streamName", name, 1, 128, NAME);
    }
    if let Some(n) = req.shard_count {
        v.range("shardCount", n, Some(1), Some(MAX_SHARD_COUNT));
    }
    let mut mode = None;
    if let Some(details) = &req.stream_mode_details {
        if let Some(m) = v.required("streamModeDetails.streamMode", &details.stream_mode) {
            if v.one_of("streamModeDetails.streamMode", m, STREAM_MODES) {
                mode = Some(if m == "ON_DEMAND" {
                    StreamMode::OnDemand
                } else {
                    StreamMode::Provisioned
                });
            }
        }
    }
    if let Some(tags) = &req.tags {
        check_tag_map(&mut v, tags);
    }
    v.finish()?;
    let name = req.stream_name.unwrap_or_default();
    if let Some(tags) = &req.tags {
        check_tags_semantics(&name, tags)?;
    }
    tracing::Span::current().record("stream", name.as_str());
    let shard_count = req.shard_count.and_then(|n| u32::try_from(n).ok());
    let (shard_count, mode) = match (mode, shard_count) {
        (Some(StreamMode::OnDemand), Some(_)) => {
            return Err(KinesisError::invalid(
                "ShardCount must not be specified for an ON_DEMAND stream.",
            ))
        }
        (Some(StreamMode::Provisioned), None) => {
            return Err(KinesisError::invalid(
                "ShardCount must be specified for a PROVISIONED stream.",
            ))
        }
        (Some(StreamMode::OnDemand), None) | (None, None) => (None, StreamMode::OnDemand),
        (_, Some(n)) => (Some(n), StreamMode::Provisioned),
    };
    backend.create_stream(&name, shard_count, mode).await?;
    if let Some(tags) = req.tags.filter(|t| !t.is_empty()) {
        backend
            .change_settings(&name, SettingsChange::AddTags(tags))
            .await?;
    }
    Ok(Empty {})
}

pub async fn delete_stream<B: Backend>(
    backend: &B,
    req: DeleteStreamInput,
) -> KinesisResult<Empty> {
    let mut v = Violations::new();
    check_stream_ref(
        &mut v,
        req.stream_name.as_deref(),
        req.stream_arn.as_deref(),
    );
    v.finish()?;
    let name = resolve_stream(
        backend,
        req.stream_name.as_deref(),
        req.stream_arn.as_deref(),
    )?;
    backend
        .delete_stream(&name, req.enforce_consumer_deletion.unwrap_or(false))
        .await?;
    Ok(Empty {})
}

pub async fn describe_stream<B: Backend>(
    backend: &B,
    req: DescribeStreamInput,
) -> KinesisResult<DescribeStreamOutput> {
    let mut v = Violations::new();
    check_stream_ref(
        &mut v,
        req.stream_name.as_deref(),
        req.stream_arn.as_deref(),
    );
    if let Some(limit) = req.limit {
        v.range("limit", limit, Some(1), Some(10_000));
    }
    if let Some(start) = &req.exclusive_start_shard_id {
        v.string("exclusiveStartShardId", start, 1, 128, NAME);
    }
    v.finish()?;
    let name = resolve_stream(
        backend,
        req.stream_name.as_deref(),
        req.stream_arn.as_deref(),
    )?;
    let d = backend.describe_stream(&name).await?;
    let settings = backend.stream_settings(&name).await?;
    let (encryption_type, key_id) = encryption_of(&settings);
    let limit = req
        .limit
        .and_then(|l| usize::try_from(l).ok())
        .unwrap_or(DEFAULT_LIMIT);
    let start = req.exclusive_start_shard_id.as_deref();
    let after: Vec<_> = d
        .shards
        .iter()
        .filter(|s| match start {
            None => true,
            Some(start) => match parse_shard_id(start) {
                Some(ix) => s.index > ix,
                None => shard_id(s.index).as_str() > start,
            },
        })
        .collect();
    let has_more = after.len() > limit;
    let shards = after.into_iter().take(limit).map(shard_model).collect();
    Ok(DescribeStreamOutput {
        stream_description: StreamDescription {
            stream_name: d.name.clone(),
            stream_arn: d.arn.clone(),
            stream_status: d.status.as_str().to_string(),
            stream_mode_details: mode_details(&d),
            shards,
            has_more_shards: has_more,
            retention_period_hours: d.retention_hours,
            stream_creation_timestamp: timestamp(d.created_ms),
            enhanced_monitoring: enhanced_monitoring(&settings),
            encryption_type,
            key_id,
        },
    })
}

pub async fn describe_stream_summary<B: Backend>(
    backend: &B,
    req: DescribeStreamSummaryInput,
) -> KinesisResult<DescribeStreamSummaryOutput> {
    let mut v = Violations::new();
    check_stream_ref(
        &mut v,
        req.stream_name.as_deref(),
        req.stream_arn.as_deref(),
    );
    v.finish()?;
    let name = resolve_stream(
        backend,
        req.stream_name.as_deref(),
        req.stream_arn.as_deref(),
    )?;
    let d = backend.describe_stream(&name).await?;
    let settings = backend.stream_settings(&name).await?;
    let (encryption_type, key_id) = encryption_of(&settings);
    Ok(DescribeStreamSummaryOutput {
        stream_description_summary: StreamDescriptionSummary {
            stream_name: d.name.clone(),
            stream_arn: d.arn.clone(),
            stream_status: d.status.as_str().to_string(),
            stream_mode_details: mode_details(&d),
            retention_period_hours: d.retention_hours,
            stream_creation_timestamp: timestamp(d.created_ms),
            enhanced_monitoring: enhanced_monitoring(&settings),
            encryption_type,
            key_id,
            open_shard_count: d.open_shard_count,
            consumer_count: d.consumer_count,
            warm_throughput: settings.warm_throughput_mibps.map(|m| WarmThroughput {
                target_mibps: Some(m),
                current_mibps: Some(m),
            }),
            max_record_size_in_kib: Some(settings.max_record_size_kib.unwrap_or(1024)),
        },
    })
}

pub async fn list_streams<B: Backend>(
    backend: &B,
    req: ListStreamsInput,
) -> KinesisResult<ListStreamsOutput> {
    let mut v = Violations::new();
    if let Some(limit) = req.limit {
        v.range("limit", limit, Some(1), Some(10_000));
    }
    if let Some(start) = &req.exclusive_start_stream_name {
        v.string("exclusiveStartStreamName", start, 1, 128, NAME);
    }
    if let Some(tok) = &req.next_token {
        v.string("nextToken", tok, 1, 1_048_576, None);
    }
    v.finish()?;
    let start = match (&req.next_token, &req.exclusive_start_stream_name) {
        (Some(_), Some(_)) => {
            return Err(KinesisError::invalid(
                "NextToken and ExclusiveStartStreamName cannot be provided together.",
            ))
        }
        (Some(tok), None) => {
            let t: token::StreamsToken = token::decode("streams", tok, token::now_ms())?;
            Some(t.l)
        }
        (None, start) => start.clone(),
    };
    let limit = req
        .limit
        .and_then(|l| usize::try_from(l).ok())
        .unwrap_or(DEFAULT_LIMIT);
    let mut all = backend.list_streams().await?;
    all.sort_by(|a, b| a.name.cmp(&b.name));
    let after: Vec<_> = all
        .iter()
        .filter(|d| start.as_deref().is_none_or(|s| d.name.as_str() > s))
        .collect();
    let has_more = after.len() > limit;
    let page: Vec<_> = after.into_iter().take(limit).collect();
    let next_token = match (has_more, page.last()) {
        (true, Some(last)) => Some(token::encode(
            "streams",
            &token::StreamsToken {
                l: last.name.clone(),
            },
            token::now_ms(),
        )),
        _ => None,
    };
    Ok(ListStreamsOutput {
        stream_names: page.iter().map(|d| d.name.clone()).collect(),
        has_more_streams: has_more,
        next_token,
        stream_summaries: page
            .iter()
            .map(|d| StreamSummary {
                stream_name: d.name.clone(),
                stream_arn: if d.arn.is_empty() {
                    arn_of(backend, &d.name)
                } else {
                    d.arn.clone()
                },
                stream_status: d.status.as_str().to_string(),
                stream_mode_details: mode_details(d),
                stream_creation_timestamp: timestamp(d.created_ms),
            })
            .collect(),
    })
}
