//! The resharder: resizes a stream in a loop while the nemesis injects faults (F13/F15) —
//! `UpdateShardCount` up and down, then `SplitShard` + `MergeShards` pairs (the server allows
//! 10 `UpdateShardCount` calls per stream per 24 h, like Kinesis; once refused with
//! `LimitExceededException` only splits and merges follow). After every operation it waits for
//! the stream to be ACTIVE again, checks the lineage of `ListShards` ([`check_lineage`]: open
//! shards tile the hash space, every closed parent is covered by its children) and starts a
//! tailing reader on every new shard.
//!
//! Calls go through every node in turn with 5 s timeouts; an attempt whose outcome is unknown
//! (timeout, 5xx) is followed by a look at the shards: if the operation's effect is visible it
//! counts as done, otherwise it is sent again. Transient errors and `ResourceInUseException`
//! are retried until the operation's deadline.

use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::time::Duration;

use anyhow::{bail, ensure, Context, Result};
use rand::rngs::StdRng;
use rand::{Rng, SeedableRng};
use serde_json::json;

use crate::client::KinesisClient;
use crate::types::Shard;
use crate::workload::{Recorder, Tailers};

/// A shard's hash key range as numbers.
pub fn range(s: &Shard) -> Result<(u128, u128)> {
    Ok((
        s.hash_key_range.starting_hash_key.parse()?,
        s.hash_key_range.ending_hash_key.parse()?,
    ))
}

/// Open: no ending sequence number.
pub fn is_open(s: &Shard) -> bool {
    s.sequence_number_range.ending_sequence_number.is_none()
}

/// Open shards tile [0, 2^128 − 1]; every closed parent is covered by its children.
pub fn check_lineage(shards: &[Shard]) -> Result<()> {
    let mut open: Vec<(u128, u128)> = shards
        .iter()
        .filter(|s| is_open(s))
        .map(range)
        .collect::<Result<_>>()?;
    open.sort();
    ensure!(
        open.first().map(|r| r.0) == Some(0),
        "open shards do not start at 0: {open:?}"
    );
    ensure!(
        open.last().map(|r| r.1) == Some(u128::MAX),
        "open shards do not end at 2^128-1: {open:?}"
    );
    for w in open.windows(2) {
        ensure!(
            w[0].1.checked_add(1) == Some(w[1].0),
            "gap or overlap between {:?} and {:?}",
            w[0],
            w[1]
        );
    }
    for p in shards.iter().filter(|s| !is_open(s)) {
        let (ps, pe) = range(p)?;
        let mut kids: Vec<(u128, u128)> = shards
            .iter()
            .filter(|c| {
                c.parent_shard_id.as_ref() == Some(&p.shard_id)
                    || c.adjacent_parent_shard_id.as_ref() == Some(&p.shard_id)
            })
            .map(range)
            .collect::<Result<_>>()?;
        kids.sort();
        ensure!(!kids.is_empty(), "closed {} has no children", p.shard_id);
        ensure!(
            kids[0].0 <= ps && kids[kids.len() - 1].1 >= pe,
            "children of {} do not cover it",
            p.shard_id
        );
    }
    Ok(())
}

/// One resharding operation.
#[derive(Debug, Clone, PartialEq, Eq)]
enum Op {
    Count(u32),
    Split(String, u128),
    Merge(String, String),
}

/// What one operation did.
#[derive(Debug, Clone)]
pub struct ReshardEvent {
    pub op: String,
    /// Recorder clock: sent, and ACTIVE again (None: did not finish).
    pub started_ms: u64,
    pub active_ms: Option<u64>,
    /// Open shards afterwards.
    pub open_after: usize,
    pub note: String,
}

impl ReshardEvent {
    /// Completed (ACTIVE again with a checked lineage).
    pub fn done(&self) -> bool {
        self.active_ms.is_some()
    }
}

/// Options for [`run_resharder`].
#[derive(Debug, Clone)]
pub struct ReshardOpts {
    pub stream: String,
    /// The stream's initial shard count; `UpdateShardCount` alternates base+1, base, 2·base, base.
    pub base: u32,
    pub seed: u64,
    /// Pause between operations (seeded, in this range, ms).
    pub gap_ms: (u64, u64),
    /// Give up on one operation after this long (faults may hold the control plane).
    pub op_timeout: Duration,
}

struct Ctx<'a> {
    eps: &'a [KinesisClient],
    stream: &'a str,
    n: usize,
}

impl Ctx<'_> {
    fn next(&mut self) -> &KinesisClient {
        self.n += 1;
        &self.eps[self.n % self.eps.len()]
    }

    /// ListShards through any node (a few tries).
    async fn shards(&mut self) -> Result<Vec<Shard>> {
        let mut last = String::new();
        for _ in 0..(self.eps.len() * 2) {
            let stream = self.stream.to_string();
            match self.next().list_shards(&stream).await {
                Ok(s) => return Ok(s),
                Err(e) => last = e.to_string(),
            }
            tokio::time::sleep(Duration::from_millis(200)).await;
        }
        bail!("ListShards: {last}")
    }

    /// Whether `op` has visibly taken effect.
    async fn applied(&mut self, op: &Op) -> bool {
        let Ok(shards) = self.shards().await else {
            return false;
        };
        match op {
            Op::Count(t) => shards.iter().filter(|s| is_open(s)).count() == *t as usize,
            Op::Split(id, _) => shards.iter().any(|s| &s.shard_id == id && !is_open(s)),
            Op::Merge(a, b) => {
                shards
                    .iter()
                    .filter(|s| (&s.shard_id == a || &s.shard_id == b) && !is_open(s))
                    .count()
                    == 2
            }
        }
    }
}

/// Send `op` until accepted (or visibly applied after an unknown outcome). `Ok(false)`:
/// refused with `LimitExceededException`.
async fn send(ctx: &mut Ctx<'_>, op: &Op, deadline: tokio::time::Instant) -> Result<bool> {
    let stream = ctx.stream.to_string();
    let (name, body) = match op {
        Op::Count(t) => (
            "UpdateShardCount",
            json!({"StreamName": stream, "TargetShardCount": t, "ScalingType": "UNIFORM_SCALING"}),
        ),
        Op::Split(id, key) => (
            "SplitShard",
            json!({"StreamName": stream, "ShardToSplit": id, "NewStartingHashKey": key.to_string()}),
        ),
        Op::Merge(a, b) => (
            "MergeShards",
            json!({"StreamName": stream, "ShardToMerge": a, "AdjacentShardToMerge": b}),
        ),
    };
    let mut unknown = false;
    loop {
        if unknown && ctx.applied(op).await {
            return Ok(true);
        }
        let res = ctx.next().call(name, &body).await;
        match res {
            Ok(_) => return Ok(true),
            Err(e) if e.kind == "LimitExceededException" => return Ok(false),
            Err(e) => {
                if e.outcome_unknown() {
                    unknown = true;
                }
                let retry = e.is_transient()
                    || e.kind == "ResourceInUseException"
                    // After an unknown outcome, a refusal may just mean it already happened.
                    || unknown;
                if !retry {
                    bail!("{name} {body}: {e}");
                }
                if tokio::time::Instant::now() >= deadline {
                    bail!("{name} {body}: not accepted in time, last error {e}");
                }
            }
        }
        tokio::time::sleep(Duration::from_millis(300)).await;
    }
}

/// Wait for ACTIVE (through any node) with `op`'s effect visible (a node cut off from the
/// control plane may answer from a stale view), then check the lineage; returns the shards.
async fn settle(
    ctx: &mut Ctx<'_>,
    op: Option<&Op>,
    deadline: tokio::time::Instant,
) -> Result<Vec<Shard>> {
    let stream = ctx.stream.to_string();
    loop {
        let st = ctx.next().describe_stream_summary(&stream).await;
        if matches!(&st, Ok(s) if s.stream_status == "ACTIVE") {
            match op {
                None => break,
                Some(op) if ctx.applied(op).await => break,
                Some(_) => {}
            }
        }
        if tokio::time::Instant::now() >= deadline {
            bail!("stream {stream} not ACTIVE in time: {st:?}");
        }
        tokio::time::sleep(Duration::from_millis(250)).await;
    }
    let shards = ctx.shards().await?;
    check_lineage(&shards).context("lineage after resharding")?;
    Ok(shards)
}

/// The open shard with the widest range, and its midpoint.
fn widest(shards: &[Shard]) -> Option<(String, u128)> {
    shards
        .iter()
        .filter(|s| is_open(s))
        .filter_map(|s| range(s).ok().map(|r| (s.shard_id.clone(), r)))
        .max_by_key(|(_, (a, b))| b - a)
        .map(|(id, (a, b))| (id, a + (b - a) / 2 + 1))
}

/// Reshard `opts.stream` until `stop` (finishing the operation under way). Lineage violations
/// and refusals other than the daily limit are errors; an operation that cannot finish within
/// `op_timeout` (faults) is logged and the loop goes on.
pub async fn run_resharder(
    eps: Vec<KinesisClient>,
    opts: ReshardOpts,
    rec: Arc<Recorder>,
    tailers: Tailers,
    stop: Arc<AtomicBool>,
) -> Result<Vec<ReshardEvent>> {
    let mut rng = StdRng::seed_from_u64(opts.seed ^ 0x5eed_2e5a_2d00);
    let b = opts.base.max(1);
    let counts = [b + 1, b, 2 * b, b];
    let mut ctx = Ctx {
        eps: &eps,
        stream: &opts.stream,
        n: 0,
    };
    let mut events = Vec::new();
    let mut count_ix = 0usize;
    let mut counts_exhausted = false;
    // Children of the last split, to merge next.
    let mut split_kids: Option<(String, String)> = None;
    let mut turn = 0usize;
    while !stop.load(Ordering::Relaxed) {
        let gap = rng.gen_range(opts.gap_ms.0..=opts.gap_ms.1);
        tokio::time::sleep(Duration::from_millis(gap)).await;
        if stop.load(Ordering::Relaxed) {
            break;
        }
        let deadline = tokio::time::Instant::now() + opts.op_timeout;
        turn += 1;
        // Two count changes, then a split/merge pair, repeating; only pairs once the daily
        // UpdateShardCount limit is reached.
        let op = if let Some((a, c)) = split_kids.take() {
            Op::Merge(a, c)
        } else if !counts_exhausted && !turn.is_multiple_of(3) {
            let t = counts[count_ix % counts.len()];
            Op::Count(t)
        } else {
            let shards = match ctx.shards().await {
                Ok(s) => s,
                Err(e) => {
                    eprintln!("resharder: {e:#}");
                    continue;
                }
            };
            match widest(&shards) {
                Some((id, mid)) => Op::Split(id, mid),
                None => continue,
            }
        };
        let before: Vec<String> = match ctx.shards().await {
            Ok(s) => s.into_iter().map(|s| s.shard_id).collect(),
            Err(e) => {
                eprintln!("resharder: {e:#}");
                continue;
            }
        };
        let mut ev = ReshardEvent {
            op: format!("{op:?}"),
            started_ms: rec.now_ms(),
            active_ms: None,
            open_after: 0,
            note: String::new(),
        };
        match send(&mut ctx, &op, deadline).await {
            Ok(true) => {
                if let Op::Count(_) = op {
                    count_ix += 1;
                }
            }
            Ok(false) => {
                counts_exhausted = true;
                ev.note = "UpdateShardCount daily limit reached; splits and merges only".into();
                eprintln!("resharder: {}", ev.note);
                continue;
            }
            Err(e) => {
                ev.note = format!("{e:#}");
                eprintln!("resharder: {:?} not sent: {}", op, ev.note);
                events.push(ev);
                continue;
            }
        }
        tokio::time::sleep(Duration::from_millis(300)).await;
        match settle(&mut ctx, Some(&op), deadline).await {
            Ok(shards) => {
                ev.active_ms = Some(rec.now_ms());
                ev.open_after = shards.iter().filter(|s| is_open(s)).count();
                let mut new: Vec<&Shard> = shards
                    .iter()
                    .filter(|s| !before.contains(&s.shard_id))
                    .collect();
                for s in &new {
                    tailers.tail(&s.shard_id);
                }
                if let Op::Split(..) = op {
                    new.sort_by_key(|s| range(s).map(|r| r.0).unwrap_or(0));
                    if let [a, c] = &new[..] {
                        split_kids = Some((a.shard_id.clone(), c.shard_id.clone()));
                    }
                }
            }
            Err(e) => {
                let lineage = format!("{e:#}").contains("lineage");
                ev.note = format!("{e:#}");
                eprintln!("resharder: {op:?}: {}", ev.note);
                if lineage {
                    events.push(ev);
                    bail!("resharder: {op:?}: {e:#}");
                }
            }
        }
        eprintln!(
            "resharder: {} at {} ms: {} ({} open) {}",
            ev.op,
            ev.started_ms,
            ev.active_ms
                .map(|t| format!("ACTIVE after {} ms", t - ev.started_ms))
                .unwrap_or("not finished".into()),
            ev.open_after,
            ev.note
        );
        events.push(ev);
    }
    Ok(events)
}

/// After the heal: wait for ACTIVE (bounded), check the lineage and tail any shard not yet
/// tailed. Returns the open shard count.
pub async fn settle_after_heal(
    eps: &[KinesisClient],
    stream: &str,
    tailers: &Tailers,
    timeout: Duration,
) -> Result<usize> {
    let mut ctx = Ctx { eps, stream, n: 0 };
    let shards = settle(&mut ctx, None, tokio::time::Instant::now() + timeout).await?;
    for s in &shards {
        tailers.tail(&s.shard_id);
    }
    Ok(shards.iter().filter(|s| is_open(s)).count())
}
