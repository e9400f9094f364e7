//! The on-demand autoscaler against real processes, with the measurement window shortened
//! by configuration (`autoscale.window_secs = 4`, evaluation every second, no cooldowns) and
//! the per-shard record limit lowered to 200/s (`limits.shard_write_records_per_sec`) so the
//! load stays light on a shared CI machine.
//!
//! An ON_DEMAND stream (4 shards) and a PROVISIONED stream (4 shards) each receive 300
//! records/s — 3× one shard's 50 % split threshold, 1.5× its limit — spread over the hash
//! range of their first shard. Both throttle at first. The ON_DEMAND stream's hot shard is
//! split at its hash-range midpoint; once the split is done the same offered load is spread
//! over the children and throttling stops (per-second throttled count ~0 for several
//! seconds), while the PROVISIONED stream keeps throttling about a third of the load and is
//! never split. Then the PROVISIONED stream receives 2.75 shards of load over its whole
//! range and is switched to ON_DEMAND: it is UPDATING while it is resharded to about
//! `ceil(2.75 / 50 %)` = 6 shards, then ACTIVE. Every acknowledged record of both streams is
//! read back.

use std::collections::HashSet;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

use anyhow::{ensure, Context, Result};
use serde_json::json;
use spate_cluster_tests::client::KinesisClient;
use spate_cluster_tests::harness::{Cluster, ClusterOpts};
use spate_cluster_tests::types::{IteratorType, PutEntry, Shard};

const THROTTLED: &str = "ProvisionedThroughputExceededException";
/// Per-shard record limit of the test cluster.
const RECORD_LIMIT: u64 = 200;
/// Records offered per 100 ms tick: 300/s.
const PER_TICK: u64 = 30;
/// Longest the writers run.
const MAX_RUN: Duration = Duration::from_secs(50);
/// How long the writers keep going after the split is done.
const AFTER_SPLIT: Duration = Duration::from_secs(9);

fn open(shards: &[Shard]) -> Vec<&Shard> {
    shards
        .iter()
        .filter(|s| s.sequence_number_range.ending_sequence_number.is_none())
        .collect()
}

/// What a writer saw in one second of the run.
#[derive(Debug, Default, Clone, Copy)]
struct Second {
    offered: u64,
    acked: u64,
    throttled: u64,
    other: u64,
}

/// Hash key `n` of the load: 64 evenly spaced slots over `[0, 2^126)` (shard 0 of a
/// 4-shard stream; half of them in each midpoint child), each with some spread.
fn hash_key(n: u64) -> String {
    let slot = u128::from(n % 64) << 120;
    let jitter = u128::from(n / 64 % 1000) << 100;
    (slot + jitter).to_string()
}

/// Offers [`PER_TICK`] records every 100 ms until `stop_ms` (ms after `start`; may be
/// moved by the caller). Returns per-second counts and the acknowledged payloads.
async fn hot_writer(
    c: KinesisClient,
    stream: &'static str,
    start: Instant,
    stop_ms: Arc<AtomicU64>,
) -> Result<(Vec<Second>, HashSet<Vec<u8>>)> {
    let mut seconds: Vec<Second> = Vec::new();
    let mut acked = HashSet::new();
    let mut n = 0u64;
    while (start.elapsed().as_millis() as u64) < stop_ms.load(Ordering::Relaxed) {
        let tick = Instant::now();
        let entries: Vec<PutEntry> = (n..n + PER_TICK)
            .map(|i| PutEntry {
                partition_key: format!("p{}", i % 97),
                data: format!("{stream}-{i}").into_bytes(),
                explicit_hash_key: Some(hash_key(i)),
            })
            .collect();
        n += PER_TICK;
        let sec = start.elapsed().as_secs() as usize;
        if seconds.len() <= sec {
            seconds.resize(sec + 1, Second::default());
        }
        let s = &mut seconds[sec];
        s.offered += PER_TICK;
        match c.put_records(stream, &entries).await {
            Ok(out) => {
                for (e, r) in entries.iter().zip(&out.records) {
                    match r.error_code.as_deref() {
                        None => {
                            s.acked += 1;
                            acked.insert(e.data.clone());
                        }
                        Some(THROTTLED) => s.throttled += 1,
                        Some(_) => s.other += 1,
                    }
                }
            }
            Err(e) if e.is_transient() || e.outcome_unknown() => s.other += PER_TICK,
            Err(e) => return Err(e.into()),
        }
        tokio::time::sleep(Duration::from_millis(100).saturating_sub(tick.elapsed())).await;
    }
    Ok((seconds, acked))
}

/// Every record of every shard of `stream`.
async fn read_all(c: &KinesisClient, stream: &str) -> Result<HashSet<Vec<u8>>> {
    let mut seen = HashSet::new();
    for s in c.list_shards(stream).await? {
        let mut it = c
            .get_shard_iterator(stream, &s.shard_id, &IteratorType::TrimHorizon)
            .await?;
        loop {
            let out = match c.get_records(&it, Some(10_000)).await {
                Ok(o) => o,
                Err(e) if e.is_transient() || e.kind == THROTTLED => {
                    tokio::time::sleep(Duration::from_millis(300)).await;
                    continue;
                }
                Err(e) => return Err(e.into()),
            };
            let empty = out.records.is_empty();
            seen.extend(out.records.into_iter().map(|r| r.data));
            match out.next_shard_iterator {
                Some(next) if !empty || out.millis_behind_latest.unwrap_or(0) > 0 => it = next,
                _ => break,
            }
            tokio::time::sleep(Duration::from_millis(210)).await;
        }
    }
    Ok(seen)
}

/// Offers 550 records/s over the whole hash range of `stream` (2.75 shards of load at the
/// 200/s limit, 69 % per shard of 4: nothing throttled) until `stop_ms`.
async fn spread_writer(
    c: KinesisClient,
    stream: &'static str,
    start: Instant,
    stop_ms: Arc<AtomicU64>,
) -> Result<HashSet<Vec<u8>>> {
    let mut acked = HashSet::new();
    let mut n = 0u64;
    while (start.elapsed().as_millis() as u64) < stop_ms.load(Ordering::Relaxed) {
        let tick = Instant::now();
        let entries: Vec<PutEntry> = (n..n + 55)
            .map(|i| PutEntry {
                partition_key: format!("q{i}"),
                data: format!("{stream}-spread-{i}").into_bytes(),
                explicit_hash_key: Some((u128::from(i % 55) * (u128::MAX / 55)).to_string()),
            })
            .collect();
        n += 55;
        match c.put_records(stream, &entries).await {
            Ok(out) => {
                for (e, r) in entries.iter().zip(&out.records) {
                    if r.error_code.is_none() {
                        acked.insert(e.data.clone());
                    }
                }
            }
            Err(e) if e.is_transient() || e.outcome_unknown() => {}
            Err(e) => return Err(e.into()),
        }
        tokio::time::sleep(Duration::from_millis(100).saturating_sub(tick.elapsed())).await;
    }
    Ok(acked)
}

/// PROVISIONED → ON_DEMAND under 2.75 shards of load: the stream is UPDATING while it is
/// resharded to `ceil(2.75 / 50 %)` = 6 shards (5–7 allowing for measurement jitter), then
/// ACTIVE and ON_DEMAND. Returns the acknowledged records.
async fn switch_sizes_for_the_traffic(
    cluster: &Cluster,
    c: &KinesisClient,
) -> Result<HashSet<Vec<u8>>> {
    let start = Instant::now();
    let stop_ms = Arc::new(AtomicU64::new(60_000));
    let w = tokio::spawn(spread_writer(
        cluster.client(2),
        "prov",
        start,
        stop_ms.clone(),
    ));
    // Let the autoscaler measure a full window (4 s) of the new load.
    tokio::time::sleep(Duration::from_secs(6)).await;
    let arn = c.describe_stream_summary("prov").await?.stream_arn;
    c.call(
        "UpdateStreamMode",
        &json!({"StreamARN": arn, "StreamModeDetails": {"StreamMode": "ON_DEMAND"}}),
    )
    .await?;
    let switched = Instant::now();
    let (mut updating, mut active_after) = (false, None);
    while switched.elapsed() < Duration::from_secs(40) {
        let d = c
            .call("DescribeStreamSummary", &json!({"StreamName": "prov"}))
            .await?;
        let d = &d["StreamDescriptionSummary"];
        let status = d["StreamStatus"].as_str().unwrap_or_default().to_string();
        let mode = d["StreamModeDetails"]["StreamMode"]
            .as_str()
            .unwrap_or_default();
        if mode == "ON_DEMAND" && status == "UPDATING" {
            updating = true;
        }
        if mode == "ON_DEMAND" && status == "ACTIVE" && updating {
            active_after = Some(switched.elapsed());
            break;
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    stop_ms.store(start.elapsed().as_millis() as u64, Ordering::Relaxed);
    let acked = w.await??;
    let took = active_after.context("the switch to ON_DEMAND did not go UPDATING -> ACTIVE")?;
    let n = open(&c.list_shards("prov").await?).len();
    eprintln!("PROVISIONED -> ON_DEMAND: UPDATING for {took:?}, {n} open shards");
    ensure!(
        (5..=7).contains(&n),
        "sized to {n} shards for 2.75 shards of load, not about 6"
    );
    Ok(acked)
}

fn sum(seconds: &[Second], from: usize, to: usize) -> Second {
    let mut t = Second::default();
    for s in seconds.iter().take(to).skip(from) {
        t.offered += s.offered;
        t.acked += s.acked;
        t.throttled += s.throttled;
        t.other += s.other;
    }
    t
}

#[tokio::test(flavor = "multi_thread")]
async fn on_demand_split_spreads_the_load_and_stops_throttling() -> Result<()> {
    let limit = RECORD_LIMIT.to_string();
    let env = [
        ("SPATE_AUTOSCALE__WINDOW_SECS", "4"),
        ("SPATE_AUTOSCALE__INTERVAL_MS", "1000"),
        ("SPATE_AUTOSCALE__ROUND_INTERVAL_MS", "2000"),
        ("SPATE_AUTOSCALE__CHILD_COOLDOWN_MS", "0"),
        ("SPATE_LIMITS__SHARD_WRITE_RECORDS_PER_SEC", limit.as_str()),
    ];
    let mut cluster = Cluster::start(ClusterOpts {
        env: env
            .iter()
            .map(|(k, v)| (k.to_string(), v.to_string()))
            .collect(),
        ..ClusterOpts::default()
    })
    .await?;
    cluster.wait_all_ready(Duration::from_secs(30)).await?;
    let c = cluster.client(0);
    c.call(
        "CreateStream",
        &json!({"StreamName": "od", "StreamModeDetails": {"StreamMode": "ON_DEMAND"}}),
    )
    .await?;
    c.create_stream("prov", 4).await?;
    c.wait_active("od", Duration::from_secs(20)).await?;
    c.wait_active("prov", Duration::from_secs(20)).await?;
    ensure!(
        open(&c.list_shards("od").await?).len() == 4,
        "ON_DEMAND starts with 4 shards"
    );

    let start = Instant::now();
    let stop_ms = Arc::new(AtomicU64::new(MAX_RUN.as_millis() as u64));
    let w1 = tokio::spawn(hot_writer(cluster.client(1), "od", start, stop_ms.clone()));
    let w2 = tokio::spawn(hot_writer(
        cluster.client(2),
        "prov",
        start,
        stop_ms.clone(),
    ));
    // The split is done when shard 0 is closed and its children are open.
    let mut split_done = None;
    while start.elapsed() < MAX_RUN - AFTER_SPLIT {
        let shards = c.list_shards("od").await?;
        let children: Vec<&Shard> = shards
            .iter()
            .filter(|s| s.parent_shard_id.as_deref() == Some("shardId-000000000000"))
            .collect();
        let closed = shards.iter().any(|s| {
            s.shard_id == "shardId-000000000000"
                && s.sequence_number_range.ending_sequence_number.is_some()
        });
        if closed && children.len() == 2 {
            let starts: Vec<u128> = children
                .iter()
                .map(|s| s.hash_key_range.starting_hash_key.parse().unwrap_or(0))
                .collect();
            // Midpoint of shard 0's range [0, 2^126 - 1].
            ensure!(
                starts.contains(&(1u128 << 125)),
                "not split at the midpoint: {starts:?}"
            );
            split_done = Some(start.elapsed());
            stop_ms.store(
                (start.elapsed() + AFTER_SPLIT).as_millis() as u64,
                Ordering::Relaxed,
            );
            break;
        }
        tokio::time::sleep(Duration::from_millis(250)).await;
    }
    let split_done = split_done.context("the hot ON_DEMAND shard was not split in time")?;
    let (od, acked_od) = w1.await??;
    let (prov, acked_prov) = w2.await??;
    eprintln!("split done after {split_done:?}");
    for (i, (a, b)) in od.iter().zip(&prov).enumerate() {
        eprintln!(
            "{i:>3}s  od: offered {:>3} acked {:>3} throttled {:>3} other {:>2} | prov: acked {:>3} throttled {:>3} other {:>2}",
            a.offered, a.acked, a.throttled, a.other, b.acked, b.throttled, b.other
        );
    }

    // Before the split both streams throttle the 1.5x load.
    let split_sec = split_done.as_secs() as usize;
    let before = sum(&od, 1, split_sec);
    ensure!(
        before.throttled * 10 >= before.offered,
        "the ON_DEMAND stream did not throttle before the split: {before:?}"
    );
    // From 2 s after the split to the last complete second: the same load, spread.
    let from = split_sec + 2;
    let to = od.len().min(prov.len()) - 1;
    ensure!(to >= from + 5, "too short after the split ({from}..{to})");
    let after = sum(&od, from, to);
    ensure!(
        after.offered >= (to - from) as u64 * 10 * PER_TICK * 8 / 10,
        "the offered load dropped after the split: {after:?}"
    );
    ensure!(
        after.throttled * 100 <= after.offered,
        "the ON_DEMAND stream still throttles after the split: {after:?}"
    );
    ensure!(
        after.acked * 10 >= after.offered * 9,
        "the ON_DEMAND stream accepts less than 90% after the split: {after:?}"
    );
    // The PROVISIONED stream, same load, same seconds: keeps throttling, never splits.
    let prov_after = sum(&prov, from, to);
    ensure!(
        prov_after.throttled * 100 >= prov_after.offered * 15,
        "the PROVISIONED stream stopped throttling: {prov_after:?}"
    );
    let prov_shards = c.list_shards("prov").await?;
    ensure!(
        prov_shards.len() == 4 && open(&prov_shards).len() == 4,
        "the PROVISIONED stream was resharded"
    );

    // Switching the PROVISIONED stream to ON_DEMAND sizes it for the traffic seen.
    let acked_prov2 = switch_sizes_for_the_traffic(&cluster, &c).await?;
    let acked_prov: HashSet<Vec<u8>> = acked_prov.union(&acked_prov2).cloned().collect();

    // No acknowledged record is lost, on either stream.
    for (stream, acked) in [("od", &acked_od), ("prov", &acked_prov)] {
        let read = read_all(&c, stream).await?;
        let lost = acked.difference(&read).count();
        ensure!(
            lost == 0,
            "{stream}: {lost} of {} acknowledged records not read back",
            acked.len()
        );
    }
    Ok(())
}
