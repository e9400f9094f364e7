//! Wall-clock jumps (libfaketime: `CLOCK_REALTIME` only, like an NTP step) against real nodes,
//! with retention shortened to 24 s (`kinesis.retention_hour_ms = 1000`, trimming every 200 ms).
//!
//! * `leader_clock_jump_trims_nothing_inside_retention`: the shard leader's wall clock jumps
//!   25 h ahead (past the 24 h retention). Every acknowledged record must stay readable
//!   through every node (before the fix the leader trimmed the whole shard within a second);
//!   records written meanwhile carry arrival times near the real time, not 25 h ahead;
//!   after the clock is back, the records do expire once their 24 s are really over, so
//!   trimming still works.
//! * `skewed_node_iterators_work_everywhere`: a node whose clock is 10 min behind issues shard
//!   iterators that another node accepts (before the fix: `ExpiredIteratorException`, the
//!   5-minute TTL judged against two different clocks).
//!
//! Without libfaketime the tests print why and return, unless `SPATE_REQUIRE_FAKETIME=1`
//! (CI) makes that a failure.

use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

use anyhow::{bail, ensure, Context, Result};
use spate_cluster_tests::client::{IteratorType, KinesisClient, Record};
use spate_cluster_tests::harness::{libfaketime, Cluster, ClusterOpts};

const STREAM: &str = "clock";
const RETENTION_MS: u64 = 24_000;

fn real_now_ms() -> u64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map(|d| d.as_millis() as u64)
        .unwrap_or(0)
}

/// `Some(cluster)` when libfaketime is there; `None` (after saying why) when the test is
/// skipped.
async fn start() -> Option<Cluster> {
    if let Err(why) = libfaketime() {
        if std::env::var("SPATE_REQUIRE_FAKETIME").is_ok_and(|v| v == "1") {
            panic!("SPATE_REQUIRE_FAKETIME=1 but {why}");
        }
        eprintln!("clock_jump: SKIPPED: {why}");
        return None;
    }
    let cluster = Cluster::start(ClusterOpts {
        faketime: true,
        env: vec![("SPATE_KINESIS__RETENTION_HOUR_MS".into(), "1000".into())],
        ..ClusterOpts::default()
    })
    .await
    .unwrap_or_else(|e| panic!("cluster start: {e:#}"));
    cluster.clock_faults().expect("clock faults available");
    Some(cluster)
}

/// `GetRecords`, waiting out the 5-calls-per-second read limit of the shard.
async fn get_records(
    c: &KinesisClient,
    it: &str,
) -> Result<spate_cluster_tests::client::GetRecordsOutput> {
    let mut tries = 0;
    loop {
        match c.get_records(it, Some(10_000)).await {
            Err(e) if e.kind == "ProvisionedThroughputExceededException" && tries < 20 => {
                tries += 1;
                tokio::time::sleep(Duration::from_millis(250)).await;
            }
            r => return r.context("GetRecords"),
        }
    }
}

/// Every record of the shard from TRIM_HORIZON, read through `c`.
async fn read_all(c: &KinesisClient, shard: &str) -> Result<Vec<Record>> {
    let mut it = c
        .get_shard_iterator(STREAM, shard, &IteratorType::TrimHorizon)
        .await
        .context("GetShardIterator")?;
    let mut out = Vec::new();
    loop {
        let page = get_records(c, &it).await?;
        let empty = page.records.is_empty();
        out.extend(page.records);
        match page.next_shard_iterator {
            Some(n) if !empty || page.millis_behind_latest.unwrap_or(0) > 0 => it = n,
            _ => return Ok(out),
        }
    }
}

/// Every record `acked` (sequence numbers) is readable through every node.
async fn all_readable(cluster: &Cluster, shard: &str, acked: &[String], when: &str) -> Result<()> {
    for node in 0..cluster.len() {
        let got = read_all(&cluster.client(node), shard)
            .await
            .with_context(|| format!("{when}: read via node {node}"))?;
        let seqs: std::collections::BTreeSet<&str> =
            got.iter().map(|r| r.sequence_number.as_str()).collect();
        let missing: Vec<&String> = acked
            .iter()
            .filter(|s| !seqs.contains(s.as_str()))
            .collect();
        ensure!(
            missing.is_empty(),
            "{when}: {} of {} acknowledged records gone via node {node} (read {} records); \
             first missing {:?}",
            missing.len(),
            acked.len(),
            got.len(),
            missing.first()
        );
    }
    Ok(())
}

async fn put_n(c: &KinesisClient, tag: &str, n: usize) -> Result<Vec<String>> {
    let mut seqs = Vec::with_capacity(n);
    for i in 0..n {
        let data = format!("{tag}-{i}");
        let out = c
            .put_record(STREAM, &format!("k{}", i % 4), data.as_bytes(), None)
            .await
            .with_context(|| format!("put {data}"))?;
        seqs.push(out.sequence_number);
    }
    Ok(seqs)
}

async fn setup(cluster: &mut Cluster) -> Result<(String, usize)> {
    let c0 = cluster.client(0);
    c0.ensure_stream(STREAM, 1, Duration::from_secs(30)).await?;
    let shard = c0.list_shards(STREAM).await?[0].shard_id.clone();
    let leader = cluster
        .wait_leader(STREAM, &shard, Duration::from_secs(10))
        .await?;
    // Every node's cluster clock has fresh samples of the others (sampled every 500 ms).
    tokio::time::sleep(Duration::from_secs(2)).await;
    Ok((shard, leader))
}

async fn leader_jump(cluster: &mut Cluster) -> Result<()> {
    let (shard, leader) = setup(cluster).await?;
    let t_written = real_now_ms();
    let mut acked = put_n(&cluster.client(leader), "before", 40).await?;
    all_readable(cluster, &shard, &acked, "before the jump").await?;

    // +25 h on the leader: past the stream's 24 h retention, by its own clock.
    cluster.set_clock_offset(leader, 90_000)?;
    let t_jump = Instant::now();
    // The jump takes effect within 1 s (libfaketime re-reads the file once a second); the
    // leader's retention loop runs every 200 ms. Write through the leader meanwhile.
    let mut during = Vec::new();
    while t_jump.elapsed() < Duration::from_secs(4) {
        during.extend(put_n(&cluster.client(leader), "during", 5).await?);
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
    ensure!(
        cluster.find_leader(STREAM, &shard).await == Some(leader),
        "the jumped node no longer leads {shard}: the test did not exercise its trimming"
    );
    acked.extend(during.iter().cloned());
    all_readable(cluster, &shard, &acked, "during the +25 h jump").await?;
    // Arrival times of records written through the jumped leader are cluster time.
    let records = read_all(&cluster.client(leader), &shard).await?;
    let now = real_now_ms() as f64 / 1000.0;
    for r in &records {
        let at = r.approximate_arrival_timestamp.unwrap_or(0.0);
        ensure!(
            (at - now).abs() < 60.0,
            "record {} has arrival time {at}, {:.0} s off the real time {now}",
            r.sequence_number,
            at - now
        );
    }
    cluster.set_clock_offset(leader, 0)?;
    tokio::time::sleep(Duration::from_millis(1_500)).await;
    all_readable(cluster, &shard, &acked, "after the jump").await?;
    let left = RETENTION_MS.saturating_sub(real_now_ms() - t_written);
    eprintln!(
        "clock_jump: {} records kept through a +25 h jump of leader node {leader}; {left} ms \
         of retention left for the first ones",
        acked.len()
    );
    ensure!(
        left > 2_000,
        "too slow to prove anything: the first records are nearly past retention"
    );

    // Liveness: once the first 40 records are really past their 24 s, they are trimmed.
    let deadline = Instant::now() + Duration::from_millis(left) + Duration::from_secs(30);
    loop {
        let got = read_all(&cluster.client(0), &shard).await?;
        let first_batch_left = got
            .iter()
            .filter(|r| acked[..40].contains(&r.sequence_number))
            .count();
        if first_batch_left == 0 {
            eprintln!(
                "clock_jump: first records trimmed {} ms after they were written",
                real_now_ms() - t_written
            );
            return Ok(());
        }
        if Instant::now() > deadline {
            bail!("records past retention never trimmed ({first_batch_left} of 40 still there)");
        }
        tokio::time::sleep(Duration::from_millis(500)).await;
    }
}

async fn skewed_iterators(cluster: &mut Cluster) -> Result<()> {
    let (shard, leader) = setup(cluster).await?;
    let acked = put_n(&cluster.client(leader), "rec", 10).await?;
    // A node other than the leader runs 10 min behind; iterators it issues are used elsewhere.
    let skewed = (leader + 1) % cluster.len();
    let other = (leader + 2) % cluster.len();
    cluster.set_clock_offset(skewed, -600)?;
    tokio::time::sleep(Duration::from_millis(1_500)).await;
    let it = cluster
        .client(skewed)
        .get_shard_iterator(STREAM, &shard, &IteratorType::TrimHorizon)
        .await
        .context("GetShardIterator via the skewed node")?;
    let page = get_records(&cluster.client(other), &it)
        .await
        .context("GetRecords via another node with the skewed node's iterator")?;
    ensure!(
        page.records.len() == acked.len(),
        "read {} of {} records",
        page.records.len(),
        acked.len()
    );
    // And the other way round: the skewed node accepts the other node's NextShardIterator.
    let next = page
        .next_shard_iterator
        .context("open shard has a next iterator")?;
    get_records(&cluster.client(skewed), &next)
        .await
        .context("GetRecords via the skewed node with another node's iterator")?;
    cluster.set_clock_offset(skewed, 0)?;
    Ok(())
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn leader_clock_jump_trims_nothing_inside_retention() {
    let Some(mut cluster) = start().await else {
        return;
    };
    match tokio::time::timeout(Duration::from_secs(120), leader_jump(&mut cluster)).await {
        Ok(Ok(())) => {}
        Ok(Err(e)) => panic!("leader clock jump: {e:#}"),
        Err(_) => panic!("leader clock jump: took over 120 s"),
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn skewed_node_iterators_work_everywhere() {
    let Some(mut cluster) = start().await else {
        return;
    };
    match tokio::time::timeout(Duration::from_secs(60), skewed_iterators(&mut cluster)).await {
        Ok(Ok(())) => {}
        Ok(Err(e)) => panic!("skewed iterators: {e:#}"),
        Err(_) => panic!("skewed iterators: took over 60 s"),
    }
}
