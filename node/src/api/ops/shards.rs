//! ListShards: pages over DescribeStream's shard list with `ExclusiveStartShardId`,
//! `MaxResults`, `ShardFilter` and an opaque, expiring `NextToken`.

use std::collections::{HashMap, HashSet};

use spate_proto::kinesis::model::{ListShardsInput, ListShardsOutput};
use spate_proto::kinesis::{KinesisError, KinesisResult};

use super::{check_stream_ref, resolve_stream, shard_model, NAME};
use crate::api::backend::{Backend, ShardInfo};
use crate::api::ident::{parse_shard_id, shard_create_secs};
use crate::api::token::{self, ShardsToken};
use crate::api::validate::Violations;

const FILTER_TYPES: &[&str] = &[
    "AFTER_SHARD_ID",
    "AT_TRIM_HORIZON",
    "FROM_TRIM_HORIZON",
    "AT_LATEST",
    "AT_TIMESTAMP",
    "FROM_TIMESTAMP",
];
/// Page size when `MaxResults` is absent.
const DEFAULT_MAX_RESULTS: usize = 1000;

/// A validated shard filter.
#[derive(Debug, Clone, PartialEq, Eq)]
enum Filter {
    AfterShardId(u32),
    AtTrimHorizon,
    FromTrimHorizon,
    AtLatest,
    AtTimestamp(i64),
    FromTimestamp(i64),
}

impl Filter {
    fn to_token(&self, t: &mut ShardsToken) {
        let (name, fs, ft) = match self {
            Filter::AfterShardId(ix) => ("AFTER_SHARD_ID", Some(*ix), None),
            Filter::AtTrimHorizon => ("AT_TRIM_HORIZON", None, None),
            Filter::FromTrimHorizon => ("FROM_TRIM_HORIZON", None, None),
            Filter::AtLatest => ("AT_LATEST", None, None),
            Filter::AtTimestamp(ms) => ("AT_TIMESTAMP", None, Some(*ms)),
            Filter::FromTimestamp(ms) => ("FROM_TIMESTAMP", None, Some(*ms)),
        };
        t.f = Some(name.to_string());
        t.fs = fs;
        t.ft = ft;
    }

    fn build(kind: &str, shard: Option<u32>, ts: Option<i64>) -> KinesisResult<Filter> {
        let need_shard = || {
            shard.ok_or_else(|| {
                KinesisError::invalid(
                    "ShardFilter of type AFTER_SHARD_ID requires a valid ShardId.",
                )
            })
        };
        let need_ts = || {
            ts.ok_or_else(|| {
                KinesisError::invalid(format!("ShardFilter of type {kind} requires a Timestamp."))
            })
        };
        Ok(match kind {
            "AFTER_SHARD_ID" => Filter::AfterShardId(need_shard()?),
            "AT_TRIM_HORIZON" => Filter::AtTrimHorizon,
            "FROM_TRIM_HORIZON" => Filter::FromTrimHorizon,
            "AT_LATEST" => Filter::AtLatest,
            "AT_TIMESTAMP" => Filter::AtTimestamp(need_ts()?),
            "FROM_TIMESTAMP" => Filter::FromTimestamp(need_ts()?),
            other => {
                return Err(KinesisError::invalid(format!(
                    "Unknown ShardFilter type {other}"
                )))
            }
        })
    }
}

/// Where to start and what to keep, from either the request or its `NextToken`.
struct Plan {
    stream: String,
    after: Option<u32>,
    filter: Option<Filter>,
}

pub async fn list_shards<B: Backend>(
    backend: &B,
    req: ListShardsInput,
) -> KinesisResult<ListShardsOutput> {
    let mut v = Violations::new();
    check_stream_ref(
        &mut v,
        req.stream_name.as_deref(),
        req.stream_arn.as_deref(),
    );
    if let Some(tok) = &req.next_token {
        v.string("nextToken", tok, 1, 1_048_576, None);
    }
    if let Some(start) = &req.exclusive_start_shard_id {
        v.string("exclusiveStartShardId", start, 1, 128, NAME);
    }
    if let Some(max) = req.max_results {
        v.range("maxResults", max, Some(1), Some(10_000));
    }
    if let Some(f) = &req.shard_filter {
        if let Some(t) = v.required("shardFilter.type", &f.filter_type) {
            v.one_of("shardFilter.type", t, FILTER_TYPES);
        }
        if let Some(id) = &f.shard_id {
            v.string("shardFilter.shardId", id, 1, 128, NAME);
        }
    }
    v.finish()?;
    let plan = plan(backend, &req)?;
    let max = req
        .max_results
        .and_then(|m| usize::try_from(m).ok())
        .unwrap_or(DEFAULT_MAX_RESULTS);
    let d = backend.describe_stream(&plan.stream).await?;
    let kept = apply_filter(&d.shards, plan.filter.as_ref());
    let after: Vec<&ShardInfo> = kept
        .into_iter()
        .filter(|s| plan.after.is_none_or(|a| s.index > a))
        .collect();
    let has_more = after.len() > max;
    let page: Vec<&ShardInfo> = after.into_iter().take(max).collect();
    let next_token = match (has_more, page.last()) {
        (true, Some(last)) => {
            let mut t = ShardsToken {
                s: plan.stream.clone(),
                l: last.index,
                f: None,
                fs: None,
                ft: None,
            };
            if let Some(f) = &plan.filter {
                f.to_token(&mut t);
            }
            Some(token::encode("shards", &t, token::now_ms()))
        }
        _ => None,
    };
    Ok(ListShardsOutput {
        shards: page.into_iter().map(shard_model).collect(),
        next_token,
    })
}

fn plan<B: Backend>(backend: &B, req: &ListShardsInput) -> KinesisResult<Plan> {
    if let Some(tok) = &req.next_token {
        if req.stream_name.is_some() || req.stream_arn.is_some() {
            return Err(KinesisError::invalid(
                "NextToken and StreamName/StreamARN cannot be provided together.",
            ));
        }
        if req.exclusive_start_shard_id.is_some() || req.shard_filter.is_some() {
            return Err(KinesisError::invalid(
                "NextToken cannot be combined with ExclusiveStartShardId or ShardFilter.",
            ));
        }
        let t: ShardsToken = token::decode("shards", tok, token::now_ms())?;
        tracing::Span::current().record("stream", t.s.as_str());
        let filter = match &t.f {
            Some(kind) => Some(Filter::build(kind, t.fs, t.ft)?),
            None => None,
        };
        return Ok(Plan {
            stream: t.s,
            after: Some(t.l),
            filter,
        });
    }
    let stream = resolve_stream(
        backend,
        req.stream_name.as_deref(),
        req.stream_arn.as_deref(),
    )?;
    let after =
        match &req.exclusive_start_shard_id {
            Some(id) => Some(parse_shard_id(id).ok_or_else(|| {
                KinesisError::invalid(format!("Invalid ExclusiveStartShardId {id}"))
            })?),
            None => None,
        };
    let filter = match &req.shard_filter {
        Some(f) => {
            let kind = f.filter_type.as_deref().unwrap_or_default();
            let shard = f.shard_id.as_deref().and_then(parse_shard_id);
            Some(Filter::build(kind, shard, f.timestamp.map(|t| t.0))?)
        }
        None => None,
    };
    Ok(Plan {
        stream,
        after,
        filter,
    })
}

/// The shards a filter keeps, in index order.
fn apply_filter<'a>(shards: &'a [ShardInfo], filter: Option<&Filter>) -> Vec<&'a ShardInfo> {
    let present: HashSet<u32> = shards.iter().map(|s| s.index).collect();
    let parents = |s: &ShardInfo| -> Vec<u32> {
        [s.parent, s.adjacent_parent]
            .into_iter()
            .flatten()
            .filter(|p| present.contains(p))
            .collect()
    };
    // Creation time in ms; shards with no listed parent count as existing since forever.
    let created = |s: &ShardInfo| -> i64 {
        if parents(s).is_empty() {
            i64::MIN
        } else {
            shard_create_secs(&s.starting_sequence_number)
                .map(|secs| i64::try_from(secs.saturating_mul(1000)).unwrap_or(i64::MAX))
                .unwrap_or(0)
        }
    };
    let mut children: HashMap<u32, Vec<&ShardInfo>> = HashMap::new();
    for s in shards {
        for p in parents(s) {
            children.entry(p).or_default().push(s);
        }
    }
    // A shard is closed at `ts` once one of its children exists at `ts`.
    let closed_by = |s: &ShardInfo, ts: i64| -> bool {
        children
            .get(&s.index)
            .is_some_and(|cs| cs.iter().any(|c| created(c) <= ts))
    };
    shards
        .iter()
        .filter(|s| match filter {
            None | Some(Filter::FromTrimHorizon) => true,
            Some(Filter::AtTrimHorizon) => parents(s).is_empty(),
            Some(Filter::AtLatest) => s.ending_sequence_number.is_none(),
            Some(Filter::AfterShardId(ix)) => s.index > *ix,
            Some(Filter::AtTimestamp(ts)) => created(s) <= *ts && !closed_by(s, *ts),
            Some(Filter::FromTimestamp(ts)) => !closed_by(s, *ts),
        })
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    fn shard(index: u32, parent: Option<u32>, adjacent: Option<u32>, closed: bool) -> ShardInfo {
        ShardInfo {
            index,
            parent,
            adjacent_parent: adjacent,
            hash_start: 0,
            hash_end: 1,
            starting_sequence_number: "1".into(),
            ending_sequence_number: closed.then(|| "2".into()),
        }
    }

    fn ids(v: Vec<&ShardInfo>) -> Vec<u32> {
        v.into_iter().map(|s| s.index).collect()
    }

    #[test]
    fn filters() {
        // 0 and 1 initial; 0 split into 2 and 3; 3 and 1 merged into 4.
        let shards = vec![
            shard(0, None, None, true),
            shard(1, None, None, true),
            shard(2, Some(0), None, false),
            shard(3, Some(0), None, true),
            shard(4, Some(3), Some(1), false),
        ];
        assert_eq!(ids(apply_filter(&shards, None)), vec![0, 1, 2, 3, 4]);
        assert_eq!(
            ids(apply_filter(&shards, Some(&Filter::AtTrimHorizon))),
            vec![0, 1]
        );
        assert_eq!(
            ids(apply_filter(&shards, Some(&Filter::AtLatest))),
            vec![2, 4]
        );
        assert_eq!(
            ids(apply_filter(&shards, Some(&Filter::AfterShardId(2)))),
            vec![3, 4]
        );
        // Before any resharding: only the initial shards are open.
        assert_eq!(
            ids(apply_filter(&shards, Some(&Filter::AtTimestamp(-1)))),
            vec![0, 1]
        );
        assert_eq!(
            ids(apply_filter(&shards, Some(&Filter::FromTimestamp(-1)))),
            vec![0, 1, 2, 3, 4]
        );
        // Trimmed history: once 0 and 1 expired, 2, 3 and 4's parents are gone or present.
        let trimmed = &shards[2..];
        assert_eq!(
            ids(apply_filter(trimmed, Some(&Filter::AtTrimHorizon))),
            vec![2, 3]
        );
    }

    #[test]
    fn filter_requirements() {
        assert!(Filter::build("AFTER_SHARD_ID", None, None).is_err());
        assert!(Filter::build("AT_TIMESTAMP", None, None).is_err());
        assert_eq!(
            Filter::build("FROM_TIMESTAMP", None, Some(5)).unwrap(),
            Filter::FromTimestamp(5)
        );
    }
}
