//! The on-demand autoscaler against real processes, with the measurement window shortened
//! by configuration (`autoscale.window_secs = 4`, evaluation every second, no cooldowns).
//!
//! An ON_DEMAND stream (4 shards) and a PROVISIONED stream (4 shards) each receive about
//! 650 records/s (65 % of one shard's record limit) on the key range of their first shard.
//! The ON_DEMAND stream's hot shard is split at its hash-range midpoint within the bound; the
//! PROVISIONED stream is never split. Every acknowledged record is read back.

use std::time::{Duration, Instant};

use anyhow::{ensure, Context, Result};
use serde_json::json;
use spate_cluster_tests::client::KinesisClient;
use spate_cluster_tests::harness::{Cluster, ClusterOpts};
use spate_cluster_tests::types::{IteratorType, PutEntry, Shard};

fn open(shards: &[Shard]) -> Vec<&Shard> {
    shards
        .iter()
        .filter(|s| s.sequence_number_range.ending_sequence_number.is_none())
        .collect()
}

/// Writes ~650 records/s to hash keys in `[0, 2^120)` (inside shard 0 of a 4-shard stream)
/// until `until`; returns the acknowledged payloads.
async fn hot_writer(c: KinesisClient, stream: &'static str, until: Instant) -> Result<usize> {
    let mut acked = 0usize;
    let mut n = 0u64;
    while Instant::now() < until {
        let tick = Instant::now();
        let entries: Vec<PutEntry> = (0..65)
            .map(|i| PutEntry {
                partition_key: format!("p{i}"),
                data: format!("{stream}-{}", n + i).into_bytes(),
                explicit_hash_key: Some(((n + i) as u128 * 7919 % (1u128 << 120)).to_string()),
            })
            .collect();
        n += 65;
        match c.put_records(stream, &entries).await {
            Ok(out) => {
                acked += out
                    .records
                    .iter()
                    .filter(|r| r.error_code.is_none())
                    .count()
            }
            Err(e) if e.is_transient() => {}
            Err(e) => return Err(e.into()),
        }
        tokio::time::sleep(Duration::from_millis(100).saturating_sub(tick.elapsed())).await;
    }
    Ok(acked)
}

async fn count_all(c: &KinesisClient, stream: &str) -> Result<usize> {
    let mut total = 0;
    for s in c.list_shards(stream).await? {
        let mut it = c
            .get_shard_iterator(stream, &s.shard_id, &IteratorType::TrimHorizon)
            .await?;
        loop {
            let out = match c.get_records(&it, Some(10_000)).await {
                Ok(o) => o,
                Err(e) if e.is_transient() => {
                    tokio::time::sleep(Duration::from_millis(300)).await;
                    continue;
                }
                Err(e) => return Err(e.into()),
            };
            total += out.records.len();
            match out.next_shard_iterator {
                Some(next)
                    if !out.records.is_empty() || out.millis_behind_latest.unwrap_or(0) > 0 =>
                {
                    it = next
                }
                _ => break,
            }
            tokio::time::sleep(Duration::from_millis(210)).await;
        }
    }
    Ok(total)
}

#[tokio::test(flavor = "multi_thread")]
async fn on_demand_stream_splits_a_hot_shard() -> Result<()> {
    let env = [
        ("SPATE_AUTOSCALE__WINDOW_SECS", "4"),
        ("SPATE_AUTOSCALE__INTERVAL_MS", "1000"),
        ("SPATE_AUTOSCALE__ROUND_INTERVAL_MS", "2000"),
        ("SPATE_AUTOSCALE__CHILD_COOLDOWN_MS", "0"),
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

    let until = Instant::now() + Duration::from_secs(20);
    let w1 = tokio::spawn(hot_writer(cluster.client(1), "od", until));
    let w2 = tokio::spawn(hot_writer(cluster.client(2), "prov", until));
    let start = Instant::now();
    let mut split_after = None;
    while Instant::now() < until {
        let shards = c.list_shards("od").await?;
        if let Some(child) = shards
            .iter()
            .find(|s| s.parent_shard_id.as_deref() == Some("shardId-000000000000"))
        {
            let first = open(&shards).len();
            eprintln!(
                "split after {:?}: {first} open shards, child {}",
                start.elapsed(),
                child.shard_id
            );
            // Midpoint of shard 0's range [0, 2^126 - 1].
            let starts: Vec<u128> = shards
                .iter()
                .filter(|s| s.parent_shard_id.as_deref() == Some("shardId-000000000000"))
                .map(|s| s.hash_key_range.starting_hash_key.parse().unwrap_or(0))
                .collect();
            ensure!(
                starts.contains(&(1u128 << 125)),
                "not split at the midpoint: {starts:?}"
            );
            split_after = Some(start.elapsed());
            break;
        }
        tokio::time::sleep(Duration::from_millis(500)).await;
    }
    let split_after = split_after.context("the hot ON_DEMAND shard was not split within 20 s")?;
    ensure!(split_after < Duration::from_secs(20));
    let acked_od = w1.await??;
    let acked_prov = w2.await??;
    ensure!(
        open(&c.list_shards("prov").await?).len() == 4,
        "the PROVISIONED stream was resharded"
    );
    ensure!(acked_od > 0 && acked_prov > 0);
    let read_od = count_all(&c, "od").await?;
    ensure!(
        read_od >= acked_od,
        "read {read_od} of {acked_od} acknowledged records"
    );
    Ok(())
}
