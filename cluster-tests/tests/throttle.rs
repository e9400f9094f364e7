//! Per-shard throughput limits against real processes (default `[limits]`).
//!
//! * PutRecords at about twice a shard's 1,000 records/s for 6 s: the excess comes back per
//!   record as `ProvisionedThroughputExceededException` with `FailedRecordCount` (HTTP 200),
//!   the accepted rate stays near the limit, and exactly the acknowledged records are read back.
//! * PutRecord over the byte budget gets `ProvisionedThroughputExceededException`.
//! * GetRecords at 10 calls/s is throttled to about 5.
//! * The CloudWatch-named counters on `/metrics` count the refusals.

use std::time::{Duration, Instant};

use anyhow::{ensure, Context, Result};
use spate_cluster_tests::harness::{Cluster, ClusterOpts};
use spate_cluster_tests::types::{IteratorType, PutEntry};

const THROTTLED: &str = "ProvisionedThroughputExceededException";

async fn metric(cluster: &Cluster, name: &str) -> Result<u64> {
    let mut total = 0;
    for node in 0..3 {
        let body = reqwest::get(format!("{}/metrics", cluster.admin_url(node)))
            .await?
            .text()
            .await?;
        for line in body.lines() {
            if let Some(v) = line.strip_prefix(&format!("spate_{name}_total ")) {
                total += v.trim().parse::<f64>().context("metric value")? as u64;
            }
        }
    }
    Ok(total)
}

#[tokio::test(flavor = "multi_thread")]
async fn shard_limits_throttle_writes_and_reads() -> Result<()> {
    let mut cluster = Cluster::start(ClusterOpts::default()).await?;
    cluster.wait_all_ready(Duration::from_secs(30)).await?;
    let c = cluster.client(0);
    c.create_stream("throttled", 1).await?;
    c.wait_active("throttled", Duration::from_secs(20)).await?;

    // ~2,000 records/s offered: 100 records every 50 ms, for 6 s.
    let start = Instant::now();
    let (mut acked, mut refused) = (Vec::new(), 0u64);
    let mut n = 0u64;
    while start.elapsed() < Duration::from_secs(6) {
        let tick = Instant::now();
        let entries: Vec<PutEntry> = (0..100)
            .map(|i| PutEntry {
                partition_key: format!("k{i}"),
                data: format!("r{}", n + i).into_bytes(),
                explicit_hash_key: None,
            })
            .collect();
        n += 100;
        let out = c.put_records("throttled", &entries).await?;
        let failed = out
            .records
            .iter()
            .filter(|r| r.error_code.is_some())
            .count() as u64;
        ensure!(
            out.failed_record_count == failed,
            "FailedRecordCount mismatch"
        );
        for (e, r) in entries.iter().zip(&out.records) {
            match &r.error_code {
                None => acked.push(e.data.clone()),
                Some(code) => {
                    ensure!(code == THROTTLED, "unexpected error code {code}");
                    refused += 1;
                }
            }
        }
        tokio::time::sleep(Duration::from_millis(50).saturating_sub(tick.elapsed())).await;
    }
    let secs = start.elapsed().as_secs_f64();
    let rate = acked.len() as f64 / secs;
    eprintln!(
        "offered {n}, accepted {} ({rate:.0}/s), refused {refused}",
        acked.len()
    );
    ensure!(refused > 0, "nothing was throttled at 2x the limit");
    // 1,000/s plus the 1 s initial burst, with scheduling slack.
    ensure!(
        (700.0..=1000.0 * (secs + 1.0) / secs * 1.1).contains(&rate),
        "accepted rate {rate:.0}/s is not near 1000/s"
    );
    ensure!(metric(&cluster, "WriteProvisionedThroughputExceeded").await? >= refused);
    ensure!(metric(&cluster, "IncomingRecords").await? >= acked.len() as u64);

    // Throttled records were not applied: the shard holds exactly the acknowledged ones.
    tokio::time::sleep(Duration::from_secs(2)).await;
    let mut it = c
        .get_shard_iterator(
            "throttled",
            "shardId-000000000000",
            &IteratorType::TrimHorizon,
        )
        .await?;
    let mut read = Vec::new();
    let deadline = Instant::now() + Duration::from_secs(30);
    while read.len() < acked.len() && Instant::now() < deadline {
        match c.get_records(&it, Some(10_000)).await {
            Ok(out) => {
                read.extend(out.records.into_iter().map(|r| r.data));
                it = out
                    .next_shard_iterator
                    .context("open shard has a next iterator")?;
            }
            Err(e) if e.kind == THROTTLED => {}
            Err(e) => return Err(e.into()),
        }
        tokio::time::sleep(Duration::from_millis(250)).await;
    }
    ensure!(
        read == acked,
        "read {} records, acked {}",
        read.len(),
        acked.len()
    );

    // A PutRecord over the byte budget: 1 MiB - 1 KiB drains it, the next one is refused.
    tokio::time::sleep(Duration::from_secs(2)).await;
    let big = vec![7u8; (1 << 20) - 1024];
    c.put_record("throttled", "big", &big, None).await?;
    let err = c
        .put_record("throttled", "big", &big, None)
        .await
        .err()
        .context("second 1 MiB PutRecord within a second was accepted")?;
    ensure!(
        err.kind == THROTTLED && err.status == Some(400),
        "got {err}"
    );

    // GetRecords at 10 calls/s for 4 s: about 5/s (plus the burst) get through.
    tokio::time::sleep(Duration::from_secs(2)).await;
    let it = c
        .get_shard_iterator("throttled", "shardId-000000000000", &IteratorType::Latest)
        .await?;
    let (mut ok, mut throttled) = (0u32, 0u32);
    let start = Instant::now();
    for _ in 0..40 {
        let tick = Instant::now();
        match c.get_records(&it, Some(1)).await {
            Ok(_) => ok += 1,
            Err(e) if e.kind == THROTTLED => throttled += 1,
            Err(e) => return Err(e.into()),
        }
        tokio::time::sleep(Duration::from_millis(100).saturating_sub(tick.elapsed())).await;
    }
    let secs = start.elapsed().as_secs_f64();
    eprintln!("GetRecords: {ok} ok, {throttled} throttled in {secs:.1} s");
    ensure!(throttled > 0, "10 calls/s were not throttled");
    ensure!(
        f64::from(ok) <= 5.0 * secs + 5.0 + 2.0,
        "{ok} calls admitted in {secs:.1} s"
    );
    ensure!(metric(&cluster, "ReadProvisionedThroughputExceeded").await? >= u64::from(throttled));
    Ok(())
}
