//! Tags and resource policies: AddTagsToStream, RemoveTagsFromStream, ListTagsForStream,
//! TagResource, UntagResource, ListTagsForResource, PutResourcePolicy, GetResourcePolicy,
//! DeleteResourcePolicy. Resources are named by stream ARN or consumer ARN
//! (`<stream-arn>/consumer/<name>:<epoch>`); tags are kept for streams only.

use std::collections::BTreeMap;

use spate_control_plane::meta::settings::MAX_TAGS;
use spate_proto::kinesis::model::{
    AddTagsToStreamInput, Empty, GetResourcePolicyOutput, ListTagsForResourceOutput,
    ListTagsForStreamInput, ListTagsForStreamOutput, PutResourcePolicyInput,
    RemoveTagsFromStreamInput, ResourceArnInput, Tag, TagResourceInput, UntagResourceInput,
};
use spate_proto::kinesis::{KinesisError, KinesisResult};

use super::settings::require_active;
use super::{check_stream_ref, resolve_stream};
use crate::api::backend::{Backend, SettingsChange};
use crate::api::validate::Violations;

/// Pattern of `ResourceARN`.
const RESOURCE_ARN_PATTERN: &str = "arn:aws.*:kinesis:.*:\\d{12}:.*stream/\\S+";
/// ListTagsForStream page size when `Limit` is absent.
const DEFAULT_TAG_LIMIT: usize = 10;

/// Model checks of a `TagMap` member.
pub(crate) fn check_tag_map(v: &mut Violations, tags: &BTreeMap<String, String>) {
    v.string_map("tags", tags, (1, 200), (1, 128), (0, 256));
}

/// Semantic checks of tags about to be added: reserved prefixes (`aws:`; `spate:` only for
/// valid limit tags), characters, count.
pub(crate) fn check_tags_semantics(
    stream: &str,
    tags: &BTreeMap<String, String>,
) -> KinesisResult<()> {
    if tags.len() > MAX_TAGS {
        return Err(KinesisError::invalid(format!(
            "Failed to add tags to stream {stream}: a stream cannot have more than {MAX_TAGS} tags."
        )));
    }
    if let Some(k) = tags
        .keys()
        .find(|k| k.to_ascii_lowercase().starts_with("aws:"))
    {
        return Err(KinesisError::invalid(format!(
            "Failed to add tags to stream {stream}: the tag key prefix 'aws:' is reserved (key {k})."
        )));
    }
    let legal = |s: &str| {
        s.chars()
            .all(|c| c.is_alphanumeric() || c.is_whitespace() || "_.:/=+-@".contains(c))
    };
    if tags.iter().any(|(k, v)| !legal(k) || !legal(v)) {
        return Err(KinesisError::invalid(format!(
            "Failed to add tags to stream {stream}: tags may contain only letters, digits, white space and _ . : / = + - @."
        )));
    }
    // The reserved `spate:` limit tags (docs/capacity.md).
    spate_control_plane::meta::settings::check_limit_tags(tags).map_err(|m| {
        KinesisError::invalid(format!("Failed to add tags to stream {stream}: {m}"))
    })?;
    Ok(())
}

fn tag_list(tags: &BTreeMap<String, String>) -> Vec<Tag> {
    tags.iter()
        .map(|(k, v)| Tag {
            key: k.clone(),
            value: Some(v.clone()),
        })
        .collect()
}

/// A validated `ResourceARN`: the stream it belongs to, and the consumer it names if any.
struct Resource {
    stream: String,
    consumer: Option<String>,
    arn: String,
}

fn check_resource_arn(v: &mut Violations, arn: &Option<String>) {
    if let Some(arn) = v.required("resourceARN", arn) {
        let ok = |s: &str| {
            let stream_part = s.split("/consumer/").next().unwrap_or(s);
            crate::api::ident::parse_stream_arn(stream_part).is_some()
        };
        v.string(
            "resourceARN",
            arn,
            1,
            2048,
            Some((RESOURCE_ARN_PATTERN, ok)),
        );
    }
}

async fn resolve_resource<B: Backend>(backend: &B, arn: &str) -> KinesisResult<Resource> {
    let (stream_arn, consumer) = match arn.split_once("/consumer/") {
        Some((s, c)) => (s, Some(c.to_string())),
        None => (arn, None),
    };
    let stream = resolve_stream(backend, None, Some(stream_arn))?;
    // The stream must exist.
    backend.describe_stream(&stream).await?;
    Ok(Resource {
        stream,
        consumer,
        arn: arn.to_string(),
    })
}

fn consumer_tags_unsupported(consumer: &str) -> KinesisError {
    KinesisError::invalid(format!(
        "Tagging consumers ({consumer}) is not supported by this server yet; tag the stream instead."
    ))
}

pub async fn add_tags_to_stream<B: Backend>(
    backend: &B,
    req: AddTagsToStreamInput,
) -> KinesisResult<Empty> {
    let mut v = Violations::new();
    check_stream_ref(
        &mut v,
        req.stream_name.as_deref(),
        req.stream_arn.as_deref(),
    );
    if let Some(tags) = v.required("tags", &req.tags) {
        check_tag_map(&mut v, tags);
    }
    v.finish()?;
    let name = resolve_stream(
        backend,
        req.stream_name.as_deref(),
        req.stream_arn.as_deref(),
    )?;
    let tags = req.tags.unwrap_or_default();
    check_tags_semantics(&name, &tags)?;
    require_active(backend, &name).await?;
    backend
        .change_settings(&name, SettingsChange::AddTags(tags))
        .await?;
    Ok(Empty {})
}

pub async fn remove_tags_from_stream<B: Backend>(
    backend: &B,
    req: RemoveTagsFromStreamInput,
) -> KinesisResult<Empty> {
    let mut v = Violations::new();
    check_stream_ref(
        &mut v,
        req.stream_name.as_deref(),
        req.stream_arn.as_deref(),
    );
    if let Some(keys) = v.required("tagKeys", &req.tag_keys) {
        v.string_list("tagKeys", keys, (1, 50), (1, 128));
    }
    v.finish()?;
    let name = resolve_stream(
        backend,
        req.stream_name.as_deref(),
        req.stream_arn.as_deref(),
    )?;
    require_active(backend, &name).await?;
    backend
        .change_settings(
            &name,
            SettingsChange::RemoveTags(req.tag_keys.unwrap_or_default()),
        )
        .await?;
    Ok(Empty {})
}

pub async fn list_tags_for_stream<B: Backend>(
    backend: &B,
    req: ListTagsForStreamInput,
) -> KinesisResult<ListTagsForStreamOutput> {
    let mut v = Violations::new();
    check_stream_ref(
        &mut v,
        req.stream_name.as_deref(),
        req.stream_arn.as_deref(),
    );
    if let Some(start) = &req.exclusive_start_tag_key {
        v.string("exclusiveStartTagKey", start, 1, 128, None);
    }
    if let Some(limit) = req.limit {
        v.range("limit", limit, Some(1), Some(50));
    }
    v.finish()?;
    let name = resolve_stream(
        backend,
        req.stream_name.as_deref(),
        req.stream_arn.as_deref(),
    )?;
    let settings = backend.stream_settings(&name).await?;
    let limit = req
        .limit
        .and_then(|l| usize::try_from(l).ok())
        .unwrap_or(DEFAULT_TAG_LIMIT);
    let start = req.exclusive_start_tag_key.as_deref();
    let after: Vec<_> = settings
        .tags
        .iter()
        .filter(|(k, _)| start.is_none_or(|s| k.as_str() > s))
        .collect();
    let has_more = after.len() > limit;
    Ok(ListTagsForStreamOutput {
        tags: after
            .into_iter()
            .take(limit)
            .map(|(k, v)| Tag {
                key: k.clone(),
                value: Some(v.clone()),
            })
            .collect(),
        has_more_tags: has_more,
    })
}

pub async fn tag_resource<B: Backend>(backend: &B, req: TagResourceInput) -> KinesisResult<Empty> {
    let mut v = Violations::new();
    if let Some(tags) = v.required("tags", &req.tags) {
        check_tag_map(&mut v, tags);
    }
    check_resource_arn(&mut v, &req.resource_arn);
    v.finish()?;
    let r = resolve_resource(backend, req.resource_arn.as_deref().unwrap_or_default()).await?;
    if let Some(c) = &r.consumer {
        return Err(consumer_tags_unsupported(c));
    }
    let tags = req.tags.unwrap_or_default();
    check_tags_semantics(&r.stream, &tags)?;
    require_active(backend, &r.stream).await?;
    backend
        .change_settings(&r.stream, SettingsChange::AddTags(tags))
        .await?;
    Ok(Empty {})
}

pub async fn untag_resource<B: Backend>(
    backend: &B,
    req: UntagResourceInput,
) -> KinesisResult<Empty> {
    let mut v = Violations::new();
    if let Some(keys) = v.required("tagKeys", &req.tag_keys) {
        v.string_list("tagKeys", keys, (1, 50), (1, 128));
    }
    check_resource_arn(&mut v, &req.resource_arn);
    v.finish()?;
    let r = resolve_resource(backend, req.resource_arn.as_deref().unwrap_or_default()).await?;
    if let Some(c) = &r.consumer {
        return Err(consumer_tags_unsupported(c));
    }
    require_active(backend, &r.stream).await?;
    backend
        .change_settings(
            &r.stream,
            SettingsChange::RemoveTags(req.tag_keys.unwrap_or_default()),
        )
        .await?;
    Ok(Empty {})
}

pub async fn list_tags_for_resource<B: Backend>(
    backend: &B,
    req: ResourceArnInput,
) -> KinesisResult<ListTagsForResourceOutput> {
    let mut v = Violations::new();
    check_resource_arn(&mut v, &req.resource_arn);
    v.finish()?;
    let r = resolve_resource(backend, req.resource_arn.as_deref().unwrap_or_default()).await?;
    if r.consumer.is_some() {
        return Ok(ListTagsForResourceOutput { tags: Vec::new() });
    }
    let settings = backend.stream_settings(&r.stream).await?;
    Ok(ListTagsForResourceOutput {
        tags: tag_list(&settings.tags),
    })
}

pub async fn put_resource_policy<B: Backend>(
    backend: &B,
    req: PutResourcePolicyInput,
) -> KinesisResult<Empty> {
    let mut v = Violations::new();
    check_resource_arn(&mut v, &req.resource_arn);
    v.required("policy", &req.policy);
    v.finish()?;
    let r = resolve_resource(backend, req.resource_arn.as_deref().unwrap_or_default()).await?;
    let policy = req.policy.unwrap_or_default();
    let parsed: Result<serde_json::Value, _> = serde_json::from_str(&policy);
    if !matches!(parsed, Ok(serde_json::Value::Object(_))) {
        return Err(KinesisError::invalid(
            "Invalid resource policy: the policy must be a JSON object.",
        ));
    }
    backend
        .change_settings(
            &r.stream,
            SettingsChange::Policy {
                arn: r.arn,
                policy: Some(policy),
            },
        )
        .await?;
    Ok(Empty {})
}

pub async fn get_resource_policy<B: Backend>(
    backend: &B,
    req: ResourceArnInput,
) -> KinesisResult<GetResourcePolicyOutput> {
    let mut v = Violations::new();
    check_resource_arn(&mut v, &req.resource_arn);
    v.finish()?;
    let r = resolve_resource(backend, req.resource_arn.as_deref().unwrap_or_default()).await?;
    let settings = backend.stream_settings(&r.stream).await?;
    Ok(GetResourcePolicyOutput {
        policy: settings
            .policies
            .get(&r.arn)
            .cloned()
            .unwrap_or_else(|| "{}".to_string()),
    })
}

pub async fn delete_resource_policy<B: Backend>(
    backend: &B,
    req: ResourceArnInput,
) -> KinesisResult<Empty> {
    let mut v = Violations::new();
    check_resource_arn(&mut v, &req.resource_arn);
    v.finish()?;
    let r = resolve_resource(backend, req.resource_arn.as_deref().unwrap_or_default()).await?;
    let settings = backend.stream_settings(&r.stream).await?;
    if !settings.policies.contains_key(&r.arn) {
        return Err(KinesisError::not_found(format!(
            "No resource policy found for resource ARN {}.",
            r.arn
        )));
    }
    backend
        .change_settings(
            &r.stream,
            SettingsChange::Policy {
                arn: r.arn,
                policy: None,
            },
        )
        .await?;
    Ok(Empty {})
}
