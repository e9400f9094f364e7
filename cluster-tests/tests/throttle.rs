//! Per-shard throughput limits against real processes (default `[limits]`).
//!
//! * PutRecords at about twice a shard's 1,000 records/s for 6 s: the excess comes back per
//!   record as `ProvisionedThroughputExceededException` with `FailedRecordCount` (HTTP 200),
//!   the accepted rate stays near the limit, and exactly the acknowledged records are read back.
//! * PutRecord over the byte budget gets `ProvisionedThroughputExceededException`.
//! * GetRecords at 10 calls/s for 10 s is throttled to 5/s (± 10 %, after the 5-call burst).
//! * PutRecords at twice a shard's 1 MiB/s for 11 s (128 KiB calls every 62.5 ms): the
//!   accepted rate beyond the 1 MiB initial burst is 1 MiB/s ± 10 %, and every refused record
//!   carries `ProvisionedThroughputExceededException`.
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

    // GetRecords at 10 calls/s for 10 s: 5/s (plus the 5-call burst) get through.
    tokio::time::sleep(Duration::from_secs(2)).await;
    let it = c
        .get_shard_iterator("throttled", "shardId-000000000000", &IteratorType::Latest)
        .await?;
    let (mut ok, mut throttled) = (0u32, 0u32);
    let start = Instant::now();
    for _ in 0..100 {
        let tick = Instant::now();
        match c.get_records(&it, Some(1)).await {
            Ok(_) => ok += 1,
            Err(e) if e.kind == THROTTLED => throttled += 1,
            Err(e) => return Err(e.into()),
        }
        tokio::time::sleep(Duration::from_millis(100).saturating_sub(tick.elapsed())).await;
    }
    let secs = start.elapsed().as_secs_f64();
    let admitted_rate = (f64::from(ok) - 5.0) / secs;
    eprintln!(
        "GetRecords: {ok} ok, {throttled} throttled in {secs:.1} s ({admitted_rate:.2}/s beyond the burst)"
    );
    ensure!(throttled > 0, "10 calls/s were not throttled");
    ensure!(
        (4.5..=5.5).contains(&admitted_rate),
        "{ok} calls admitted in {secs:.1} s: {admitted_rate:.2}/s beyond the burst, not 5/s +- 10%"
    );
    ensure!(metric(&cluster, "ReadProvisionedThroughputExceeded").await? >= u64::from(throttled));
    write_bytes_at_twice_the_limit(&cluster).await
}

/// PutRecords at 2 MiB/s (8 records of exactly 16 KiB billed every 62.5 ms) for 11 s on a
/// fresh shard: beyond the 1 MiB initial burst, 1 MiB/s ± 10 % is accepted.
async fn write_bytes_at_twice_the_limit(cluster: &Cluster) -> Result<()> {
    const MIB: f64 = (1 << 20) as f64;
    const RECORD: usize = 16 << 10;
    let c = cluster.client(1);
    c.create_stream("bytes", 1).await?;
    c.wait_active("bytes", Duration::from_secs(20)).await?;
    let (mut offered, mut accepted, mut refused) = (0u64, 0u64, 0u64);
    let start = Instant::now();
    let mut n = 0u64;
    while start.elapsed() < Duration::from_secs(11) {
        let tick = Instant::now();
        let entries: Vec<PutEntry> = (0..8)
            .map(|i| {
                let key = format!("k{}", (n + i) % 10);
                PutEntry {
                    data: vec![b'b'; RECORD - key.len()],
                    partition_key: key,
                    explicit_hash_key: None,
                }
            })
            .collect();
        n += 8;
        offered += 8 * RECORD as u64;
        let out = c.put_records("bytes", &entries).await?;
        for r in &out.records {
            match (&r.error_code, &r.error_message) {
                (None, _) => accepted += RECORD as u64,
                (Some(code), Some(msg)) if code == THROTTLED && !msg.is_empty() => refused += 1,
                other => anyhow::bail!("unexpected per-record answer {other:?}"),
            }
        }
        tokio::time::sleep(Duration::from_micros(62_500).saturating_sub(tick.elapsed())).await;
    }
    let secs = start.elapsed().as_secs_f64();
    let offered_rate = offered as f64 / secs / MIB;
    let rate = (accepted as f64 - MIB) / secs / MIB;
    eprintln!(
        "bytes: offered {offered_rate:.2} MiB/s for {secs:.1} s, accepted {:.2} MiB ({rate:.3} MiB/s beyond the burst), {refused} records refused",
        accepted as f64 / MIB
    );
    ensure!(
        offered_rate >= 1.6,
        "the client offered only {offered_rate:.2} MiB/s, not about twice the limit"
    );
    ensure!(refused > 0, "nothing was refused at twice the byte limit");
    ensure!(
        (0.9..=1.1).contains(&rate),
        "accepted {rate:.3} MiB/s, not 1 MiB/s +- 10%"
    );
    ensure!(metric(cluster, "IncomingBytes").await? >= accepted);
    Ok(())
}
