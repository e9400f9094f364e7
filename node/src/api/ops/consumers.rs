//! Enhanced fan-out: RegisterStreamConsumer, DeregisterStreamConsumer,
//! DescribeStreamConsumer, ListStreamConsumers, and SubscribeToShard's streamed response
//! (an `initial-response` event, then `SubscribeToShardEvent` events, errors after the
//! start as exception events; see [`eventstream`](crate::api::eventstream)).

use std::convert::Infallible;

use axum::body::Body;
use axum::http::{header, HeaderValue, Response};
use bytes::Bytes;
use futures::StreamExt as _;
use serde::Serialize;
use spate_proto::kinesis::ids::{consumer_arn, parse_consumer_arn};
use spate_proto::kinesis::model::{Blob, ChildShard, Empty, Record};
use spate_proto::kinesis::model_efo::{
    Consumer, ConsumerDescription, ConsumerRefInput, DescribeStreamConsumerOutput,
    ListStreamConsumersInput, ListStreamConsumersOutput, RegisterStreamConsumerInput,
    RegisterStreamConsumerOutput, SubscribeToShardEvent, SubscribeToShardInput,
};
use spate_proto::kinesis::{KinesisError, KinesisResult};

use super::{arn_of, check_stream_ref, hash_range, resolve_stream, timestamp, NAME};
use crate::api::backend::{Backend, ConsumerInfo, IteratorStart, ShardEvent};
use crate::api::codec::Encoding;
use crate::api::errors::error_response;
use crate::api::eventstream;
use crate::api::ident::{is_sequence_number, parse_shard_id, shard_id, SEQUENCE_PATTERN};
use crate::api::token;
use crate::api::validate::Violations;

/// Content type of SubscribeToShard's response.
pub const EVENT_STREAM_CONTENT_TYPE: &str = "application/vnd.amazon.eventstream";
const CONSUMER_ARN_PATTERN: &str =
    "^(arn):aws.*:kinesis:.*:\\d{12}:.*stream\\/[a-zA-Z0-9_.-]+\\/consumer\\/[a-zA-Z0-9_.-]+:[0-9]+";
const POSITION_TYPES: &[&str] = &[
    "AT_SEQUENCE_NUMBER",
    "AFTER_SEQUENCE_NUMBER",
    "TRIM_HORIZON",
    "LATEST",
    "AT_TIMESTAMP",
];
/// ListStreamConsumers page size limits.
const MAX_LIST: i64 = 10_000;
const DEFAULT_LIST: usize = 100;

fn consumer_model<B: Backend>(backend: &B, stream: &str, c: &ConsumerInfo) -> Consumer {
    Consumer {
        consumer_name: c.name.clone(),
        consumer_arn: consumer_arn(&arn_of(backend, stream), &c.name, c.created_secs),
        consumer_status: c.status.as_str().to_string(),
        consumer_creation_timestamp: timestamp(c.created_secs.saturating_mul(1000)),
    }
}

fn check_consumer_arn(v: &mut Violations, arn: Option<&str>) {
    if let Some(arn) = arn {
        v.string(
            "consumerARN",
            arn,
            1,
            2048,
            Some((CONSUMER_ARN_PATTERN, |s| parse_consumer_arn(s).is_some())),
        );
    }
}

/// A consumer named by its ARN: (stream name, consumer name, creation seconds). An ARN of
/// another region or account names no consumer of this cluster.
fn resolve_consumer_arn<B: Backend>(
    backend: &B,
    arn: &str,
) -> KinesisResult<(String, String, u64)> {
    let (stream, name, secs) = parse_consumer_arn(arn)
        .ok_or_else(|| KinesisError::invalid(format!("Invalid ConsumerARN {arn}")))?;
    if stream.region != backend.region() || stream.account_id != backend.account_id() {
        return Err(KinesisError::not_found(format!(
            "Consumer {arn} not found."
        )));
    }
    tracing::Span::current().record("stream", stream.name.as_str());
    Ok((stream.name, name, secs))
}

/// Resolves `ConsumerARN`, or `StreamARN` + `ConsumerName`.
fn resolve_ref<B: Backend>(
    backend: &B,
    req: &ConsumerRefInput,
) -> KinesisResult<(String, String, Option<u64>)> {
    let mut v = Violations::new();
    check_stream_ref(&mut v, None, req.stream_arn.as_deref());
    if let Some(n) = &req.consumer_name {
        v.string("consumerName", n, 1, 128, NAME);
    }
    check_consumer_arn(&mut v, req.consumer_arn.as_deref());
    v.finish()?;
    match (&req.consumer_arn, &req.stream_arn, &req.consumer_name) {
        (Some(arn), _, _) => {
            let (s, c, secs) = resolve_consumer_arn(backend, arn)?;
            Ok((s, c, Some(secs)))
        }
        (None, Some(stream_arn), Some(name)) => {
            let s = resolve_stream(backend, None, Some(stream_arn))?;
            Ok((s, name.clone(), None))
        }
        _ => Err(KinesisError::invalid(
            "Either ConsumerARN or both StreamARN and ConsumerName must be provided.",
        )),
    }
}

pub async fn register_stream_consumer<B: Backend>(
    backend: &B,
    req: RegisterStreamConsumerInput,
) -> KinesisResult<RegisterStreamConsumerOutput> {
    let mut v = Violations::new();
    if let Some(arn) = v.required("streamARN", &req.stream_arn) {
        check_stream_ref(&mut v, None, Some(arn));
    }
    if let Some(n) = v.required("consumerName", &req.consumer_name) {
        v.string("consumerName", n, 1, 128, NAME);
    }
    v.finish()?;
    let stream = resolve_stream(backend, None, req.stream_arn.as_deref())?;
    let name = req.consumer_name.unwrap_or_default();
    let c = backend.register_consumer(&stream, &name).await?;
    Ok(RegisterStreamConsumerOutput {
        consumer: consumer_model(backend, &stream, &c),
    })
}

pub async fn deregister_stream_consumer<B: Backend>(
    backend: &B,
    req: ConsumerRefInput,
) -> KinesisResult<Empty> {
    let (stream, name, secs) = resolve_ref(backend, &req)?;
    backend.deregister_consumer(&stream, &name, secs).await?;
    Ok(Empty {})
}

pub async fn describe_stream_consumer<B: Backend>(
    backend: &B,
    req: ConsumerRefInput,
) -> KinesisResult<DescribeStreamConsumerOutput> {
    let (stream, name, secs) = resolve_ref(backend, &req)?;
    let c = backend.describe_consumer(&stream, &name, secs).await?;
    let m = consumer_model(backend, &stream, &c);
    Ok(DescribeStreamConsumerOutput {
        consumer_description: ConsumerDescription {
            consumer_name: m.consumer_name,
            consumer_arn: m.consumer_arn,
            consumer_status: m.consumer_status,
            consumer_creation_timestamp: m.consumer_creation_timestamp,
            stream_arn: arn_of(backend, &stream),
        },
    })
}

pub async fn list_stream_consumers<B: Backend>(
    backend: &B,
    req: ListStreamConsumersInput,
) -> KinesisResult<ListStreamConsumersOutput> {
    let mut v = Violations::new();
    if let Some(arn) = v.required("streamARN", &req.stream_arn) {
        check_stream_ref(&mut v, None, Some(arn));
    }
    if let Some(m) = req.max_results {
        v.range("maxResults", m, Some(1), Some(MAX_LIST));
    }
    if let Some(t) = &req.next_token {
        v.string("nextToken", t, 1, 1048576, None);
    }
    v.finish()?;
    let stream = resolve_stream(backend, None, req.stream_arn.as_deref())?;
    let offset = match &req.next_token {
        Some(t) => {
            let (s, off): (String, usize) = token::decode("consumers", t, token::now_ms())?;
            if s != stream {
                return Err(KinesisError::invalid(
                    "NextToken was issued for another stream.",
                ));
            }
            off
        }
        None => 0,
    };
    let limit = req
        .max_results
        .and_then(|m| usize::try_from(m).ok())
        .unwrap_or(DEFAULT_LIST);
    let all = backend.list_consumers(&stream).await?;
    let end = offset.saturating_add(limit).min(all.len());
    let consumers = all
        .get(offset.min(end)..end)
        .unwrap_or_default()
        .iter()
        .map(|c| consumer_model(backend, &stream, c))
        .collect();
    let next_token =
        (end < all.len()).then(|| token::encode("consumers", &(&stream, end), token::now_ms()));
    Ok(ListStreamConsumersOutput {
        consumers,
        next_token,
    })
}

/// The validated request: stream, consumer, creation seconds, shard and start.
fn subscribe_request<B: Backend>(
    backend: &B,
    enc: Encoding,
    body: &[u8],
) -> KinesisResult<(String, String, u64, u32, IteratorStart)> {
    let req: SubscribeToShardInput = enc.decode(body)?;
    let mut v = Violations::new();
    if let Some(arn) = v.required("consumerARN", &req.consumer_arn) {
        check_consumer_arn(&mut v, Some(arn));
    }
    if let Some(id) = v.required("shardId", &req.shard_id) {
        v.string("shardId", id, 1, 128, NAME);
    }
    if let Some(p) = v.required("startingPosition", &req.starting_position) {
        if let Some(t) = v.required("startingPosition.type", &p.kind) {
            v.one_of("startingPosition.type", t, POSITION_TYPES);
        }
        if let Some(seq) = &p.sequence_number {
            v.string(
                "startingPosition.sequenceNumber",
                seq,
                0,
                usize::MAX,
                Some((SEQUENCE_PATTERN, is_sequence_number)),
            );
        }
    }
    v.finish()?;
    let arn = req.consumer_arn.as_deref().unwrap_or_default();
    let (stream, consumer, secs) = resolve_consumer_arn(backend, arn)?;
    let raw_id = req.shard_id.as_deref().unwrap_or_default();
    let index = parse_shard_id(raw_id).ok_or_else(|| {
        KinesisError::not_found(format!(
            "Shard {raw_id} in stream {stream} under account {} does not exist",
            backend.account_id()
        ))
    })?;
    let p = req.starting_position.unwrap_or_default();
    let seq = || {
        p.sequence_number.clone().ok_or_else(|| {
            KinesisError::invalid(
                "StartingPosition.SequenceNumber must be specified for AT_SEQUENCE_NUMBER and AFTER_SEQUENCE_NUMBER.",
            )
        })
    };
    let start = match p.kind.as_deref().unwrap_or_default() {
        "TRIM_HORIZON" => IteratorStart::TrimHorizon,
        "LATEST" => IteratorStart::Latest,
        "AT_SEQUENCE_NUMBER" => IteratorStart::AtSequenceNumber(seq()?),
        "AFTER_SEQUENCE_NUMBER" => IteratorStart::AfterSequenceNumber(seq()?),
        _ => {
            let ts = p.timestamp.ok_or_else(|| {
                KinesisError::invalid(
                    "StartingPosition.Timestamp must be specified for AT_TIMESTAMP.",
                )
            })?;
            IteratorStart::AtTimestamp(u64::try_from(ts.0).unwrap_or(0))
        }
    };
    Ok((stream, consumer, secs, index, start))
}

/// The payload of a modeled exception event.
#[derive(Serialize)]
struct ExceptionBody<'a> {
    message: &'a str,
}

fn exception_frame(enc: Encoding, err: &KinesisError) -> Bytes {
    let payload = enc
        .encode(&ExceptionBody {
            message: &err.message,
        })
        .unwrap_or_default();
    eventstream::exception(err.kind.type_name(), enc.content_type(), &payload)
}

/// Converts a backend event into its wire shape.
pub fn event_model(ev: ShardEvent) -> SubscribeToShardEvent {
    SubscribeToShardEvent {
        records: ev
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
        continuation_sequence_number: ev.continuation_sequence_number,
        millis_behind_latest: ev.millis_behind_latest,
        child_shards: (!ev.child_shards.is_empty()).then(|| {
            ev.child_shards
                .iter()
                .map(|c| ChildShard {
                    shard_id: shard_id(c.index),
                    parent_shards: c.parents.iter().copied().map(shard_id).collect(),
                    hash_key_range: hash_range(c.hash_start, c.hash_end),
                })
                .collect()
        }),
    }
}

fn event_frame(enc: Encoding, ev: ShardEvent) -> Bytes {
    match enc.encode(&event_model(ev)) {
        Ok(payload) => eventstream::event("SubscribeToShardEvent", enc.content_type(), &payload),
        Err(e) => exception_frame(enc, &e),
    }
}

/// SubscribeToShard: validates, subscribes, and answers with the event stream. Errors
/// before the subscription starts are ordinary error responses.
pub async fn subscribe_response<B: Backend>(
    backend: &B,
    enc: Encoding,
    body: &[u8],
) -> Response<Body> {
    let started = async {
        let (stream, consumer, secs, index, start) = subscribe_request(backend, enc, body)?;
        let sub = backend
            .subscribe_to_shard(&stream, &consumer, secs, index, start)
            .await?;
        let initial = enc.encode(&Empty {})?;
        Ok::<_, KinesisError>((sub, initial))
    }
    .await;
    let (sub, initial) = match started {
        Ok(s) => s,
        Err(err) => {
            tracing::debug!(error = %err, "subscription refused");
            return error_response(&err, enc);
        }
    };
    let first = eventstream::event("initial-response", enc.content_type(), &initial);
    let events = futures::stream::unfold(Some(sub), move |state| async move {
        let mut rx = state?;
        match rx.recv().await? {
            Ok(ev) => Some((event_frame(enc, ev), Some(rx))),
            Err(err) => Some((exception_frame(enc, &err), None)),
        }
    });
    let frames = futures::stream::once(async move { first })
        .chain(events)
        .map(Ok::<Bytes, Infallible>);
    let mut resp = Response::new(Body::from_stream(frames));
    resp.headers_mut().insert(
        header::CONTENT_TYPE,
        HeaderValue::from_static(EVENT_STREAM_CONTENT_TYPE),
    );
    resp
}
