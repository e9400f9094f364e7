//! Operation handlers: each takes the decoded request, validates it, calls the [`Backend`]
//! and builds the response. Shared here: naming a stream by `StreamName` or `StreamARN`,
//! and converting backend shapes into wire shapes.

pub mod consumers;
pub mod records;
pub mod reshard;
pub mod settings;
pub mod shards;
pub mod streams;
pub mod tags;

use spate_proto::kinesis::model;
use spate_proto::kinesis::{KinesisError, KinesisResult};

use super::backend::{Backend, ShardInfo, StreamDescription};
use super::ident::{
    is_name_chars, parse_stream_arn, shard_id, stream_arn, NAME_PATTERN, STREAM_ARN_PATTERN,
};
use super::validate::{Pattern, Violations};

/// The `[a-zA-Z0-9_.-]+` pattern as a validation constraint.
pub(crate) const NAME: Option<Pattern> = Some((NAME_PATTERN, is_name_chars));

fn arn_matches(s: &str) -> bool {
    parse_stream_arn(s).is_some()
}

/// Checks the optional `StreamName` / `StreamARN` members of a request.
pub(crate) fn check_stream_ref(v: &mut Violations, name: Option<&str>, arn: Option<&str>) {
    if let Some(name) = name {
        v.string("streamName", name, 1, 128, NAME);
    }
    if let Some(arn) = arn {
        v.string(
            "streamARN",
            arn,
            1,
            2048,
            Some((STREAM_ARN_PATTERN, arn_matches)),
        );
    }
}

/// Resolves `StreamName` / `StreamARN` (already syntax-checked) to a stream name. An ARN of
/// another region or account names no stream of this cluster.
pub(crate) fn resolve_stream<B: Backend>(
    backend: &B,
    name: Option<&str>,
    arn: Option<&str>,
) -> KinesisResult<String> {
    let resolved = match (name, arn) {
        (None, None) => {
            return Err(KinesisError::invalid(
                "Either StreamName or StreamARN must be provided.",
            ))
        }
        (Some(name), None) => name.to_string(),
        (name, Some(arn)) => {
            let parsed = parse_stream_arn(arn)
                .ok_or_else(|| KinesisError::invalid(format!("Invalid StreamARN {arn}")))?;
            if parsed.region != backend.region() || parsed.account != backend.account_id() {
                return Err(KinesisError::not_found(format!(
                    "Stream {} under account {} not found.",
                    parsed.name, parsed.account
                )));
            }
            if let Some(name) = name.filter(|n| *n != parsed.name) {
                return Err(KinesisError::invalid(format!(
                    "StreamName {name} and StreamARN {arn} name different streams."
                )));
            }
            parsed.name.to_string()
        }
    };
    tracing::Span::current().record("stream", resolved.as_str());
    Ok(resolved)
}

/// Checks only that a `StreamARN` given alongside another identifier (an iterator) belongs
/// to this cluster.
pub(crate) fn check_arn_scope<B: Backend>(backend: &B, arn: Option<&str>) -> KinesisResult<()> {
    match arn {
        None => Ok(()),
        Some(arn) => resolve_stream(backend, None, Some(arn)).map(|_| ()),
    }
}

/// The ARN of a stream of this cluster.
pub(crate) fn arn_of<B: Backend>(backend: &B, name: &str) -> String {
    stream_arn(backend.region(), backend.account_id(), name)
}

pub(crate) fn hash_range(start: u128, end: u128) -> model::HashKeyRange {
    model::HashKeyRange {
        starting_hash_key: start.to_string(),
        ending_hash_key: end.to_string(),
    }
}

pub(crate) fn timestamp(ms: u64) -> model::Timestamp {
    model::Timestamp(i64::try_from(ms).unwrap_or(i64::MAX))
}

/// A backend shard as DescribeStream / ListShards show it.
pub(crate) fn shard_model(s: &ShardInfo) -> model::Shard {
    model::Shard {
        shard_id: shard_id(s.index),
        parent_shard_id: s.parent.map(shard_id),
        adjacent_parent_shard_id: s.adjacent_parent.map(shard_id),
        hash_key_range: hash_range(s.hash_start, s.hash_end),
        sequence_number_range: model::SequenceNumberRange {
            starting_sequence_number: s.starting_sequence_number.clone(),
            ending_sequence_number: s.ending_sequence_number.clone(),
        },
    }
}

pub(crate) fn mode_details(d: &StreamDescription) -> model::StreamModeDetails {
    model::StreamModeDetails {
        stream_mode: Some(d.mode.as_str().to_string()),
    }
}
