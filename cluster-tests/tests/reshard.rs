//! Resharding and retention against real processes.
//!
//! * Writers on many partition keys run while the stream is resized (UpdateShardCount
//!   2 → 4 → 3), split and merged; after every step the open shards tile [0, 2^128 − 1] and
//!   every closed parent is covered by its children; a final read (parents before children)
//!   shows every acknowledged record and the history checker finds no violation.
//! * The control-plane leader is killed right after a split starts: the split completes
//!   under the new leader and the invariants hold.
//! * With retention shortened (`kinesis.retention_hour_ms`), a closed parent's records expire,
//!   TRIM_HORIZON moves past them and the parent disappears from ListShards and from every
//!   node's shard replicas.

use std::time::{Duration, Instant};

use anyhow::{bail, ensure, Context, Result};
use serde_json::json;
use spate_cluster_tests::client::KinesisClient;
use spate_cluster_tests::harness::{Cluster, ClusterOpts};
use spate_cluster_tests::history::check;
use spate_cluster_tests::resharder::{check_lineage, is_open, range};
use spate_cluster_tests::types::Shard;
use spate_cluster_tests::workload::{final_read, Workload, WorkloadOpts};

async fn wait_active(c: &KinesisClient, stream: &str, what: &str) -> Result<()> {
    c.wait_active(stream, Duration::from_secs(60))
        .await
        .with_context(|| format!("waiting for ACTIVE after {what}"))
}

async fn call_retrying(
    c: &KinesisClient,
    op: &str,
    body: serde_json::Value,
) -> Result<serde_json::Value> {
    let deadline = Instant::now() + Duration::from_secs(30);
    loop {
        match c.call(op, &body).await {
            Ok(v) => return Ok(v),
            Err(e) if e.kind == "ResourceInUseException" && Instant::now() < deadline => {
                tokio::time::sleep(Duration::from_millis(200)).await;
            }
            Err(e) => bail!("{op}: {e}"),
        }
    }
}

async fn step(
    c: &KinesisClient,
    stream: &str,
    op: &str,
    body: serde_json::Value,
) -> Result<Vec<Shard>> {
    call_retrying(c, op, body).await?;
    // The call returns with the stream UPDATING; wait for the operation to finish.
    tokio::time::sleep(Duration::from_millis(300)).await;
    wait_active(c, stream, op).await?;
    let shards = c.list_shards(stream).await?;
    check_lineage(&shards).with_context(|| format!("after {op}"))?;
    Ok(shards)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn resharding_under_load_loses_nothing() {
    let mut cluster = Cluster::start(ClusterOpts::default())
        .await
        .unwrap_or_else(|e| panic!("cluster start: {e:#}"));
    match tokio::time::timeout(Duration::from_secs(180), under_load(&mut cluster)).await {
        Ok(Ok(())) => {}
        Ok(Err(e)) => {
            cluster.dump_logs(40);
            panic!("resharding scenario failed: {e:#}")
        }
        Err(_) => panic!("resharding scenario took over 180 s"),
    }
}

async fn under_load(cluster: &mut Cluster) -> Result<()> {
    const STREAM: &str = "reshard";
    let c = cluster.client(0);
    c.ensure_stream(STREAM, 2, Duration::from_secs(30)).await?;
    let shard_ids: Vec<String> = c
        .list_shards(STREAM)
        .await?
        .into_iter()
        .map(|s| s.shard_id)
        .collect();
    let opts = WorkloadOpts {
        stream: STREAM.into(),
        writers: 4,
        records_per_writer: 1_500,
        keys_per_writer: 24,
        batch_max: 12,
        pad: 32,
    };
    let mut wl = Workload::start(&opts, &cluster.clients(), &shard_ids);
    tokio::time::sleep(Duration::from_secs(1)).await;

    let via = cluster.client(1);
    step(
        &via,
        STREAM,
        "UpdateShardCount",
        json!({"StreamName": STREAM, "TargetShardCount": 4, "ScalingType": "UNIFORM_SCALING"}),
    )
    .await?;
    let shards = c.list_shards(STREAM).await?;
    let open: Vec<&Shard> = shards.iter().filter(|s| is_open(s)).collect();
    ensure!(
        open.len() == 4,
        "4 open shards after UpdateShardCount, got {}",
        open.len()
    );
    // Split the first open shard at its midpoint, then merge its two children back.
    let (s0, e0) = range(open[0])?;
    let mid = s0 + (e0 - s0) / 2 + 1;
    let before: Vec<String> = shards.iter().map(|s| s.shard_id.clone()).collect();
    let after = step(&c, STREAM, "SplitShard", json!({"StreamName": STREAM, "ShardToSplit": open[0].shard_id, "NewStartingHashKey": mid.to_string()})).await?;
    let mut kids: Vec<&Shard> = after
        .iter()
        .filter(|s| !before.contains(&s.shard_id))
        .collect();
    ensure!(kids.len() == 2, "split made {} children", kids.len());
    kids.sort_by_key(|s| range(s).map(|r| r.0).unwrap_or(0));
    step(&via, STREAM, "MergeShards", json!({"StreamName": STREAM, "ShardToMerge": kids[0].shard_id, "AdjacentShardToMerge": kids[1].shard_id})).await?;
    step(
        &c,
        STREAM,
        "UpdateShardCount",
        json!({"StreamName": STREAM, "TargetShardCount": 3, "ScalingType": "UNIFORM_SCALING"}),
    )
    .await?;
    let open = c
        .list_shards(STREAM)
        .await?
        .into_iter()
        .filter(is_open)
        .count();
    ensure!(
        open == 3,
        "3 open shards after UpdateShardCount, got {open}"
    );

    let stats = wl.join_writers(Duration::from_secs(90)).await?;
    wl.stop_readers().await?;
    let acked: usize = stats.iter().map(|s| s.acked).sum();
    eprintln!("writers acked {acked} records across the resharding");
    ensure!(acked >= 5_000, "only {acked} acknowledged: {stats:?}");
    let read = final_read(&cluster.client(2), STREAM).await?;
    let report = check(&wl.recorder.history(read));
    eprintln!("history: {}", report.summary(20));
    ensure!(report.ok(), "history violations:\n{}", report.summary(50));
    Ok(())
}

/// The node that leads the control plane, from its metrics.
async fn meta_leader(cluster: &Cluster) -> Option<usize> {
    for i in 0..cluster.len() {
        let url = format!("{}/metrics", cluster.admin_url(i));
        if let Ok(r) = reqwest::get(&url).await {
            if let Ok(body) = r.text().await {
                if body
                    .lines()
                    .any(|l| l.starts_with("spate_meta_is_leader ") && l.ends_with(" 1"))
                {
                    return Some(i);
                }
            }
        }
    }
    None
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn split_survives_control_plane_leader_kill() {
    let mut cluster = Cluster::start(ClusterOpts::default())
        .await
        .unwrap_or_else(|e| panic!("cluster start: {e:#}"));
    let res = tokio::time::timeout(Duration::from_secs(120), async {
        const STREAM: &str = "split-kill";
        let c = cluster.client(0);
        c.ensure_stream(STREAM, 1, Duration::from_secs(30)).await?;
        let leader = meta_leader(&cluster).await.context("no control-plane leader")?;
        let other = cluster.client((leader + 1) % cluster.len());
        other.call("SplitShard", &json!({"StreamName": STREAM, "ShardToSplit": "shardId-000000000000", "NewStartingHashKey": (1u128 << 127).to_string()})).await?;
        cluster.kill(leader)?;
        eprintln!("killed control-plane leader node {leader} right after SplitShard");
        wait_active(&other, STREAM, "split with leader kill").await?;
        let shards = other.list_shards(STREAM).await?;
        check_lineage(&shards)?;
        ensure!(shards.len() == 3, "split completed: {shards:?}");
        cluster.restart(leader).await?;
        // A put through the restarted node lands in a child.
        let ack = cluster.client(leader).put_record(STREAM, "k", b"after", None).await?;
        ensure!(ack.shard_id != "shardId-000000000000", "put landed in the closed parent");
        Ok::<(), anyhow::Error>(())
    })
    .await;
    match res {
        Ok(Ok(())) => {}
        Ok(Err(e)) => {
            cluster.dump_logs(40);
            panic!("{e:#}")
        }
        Err(_) => panic!("scenario took over 120 s"),
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn retention_trims_and_expires_closed_parent() {
    // One retention "hour" = 100 ms: the minimum retention (24 h) is 2.4 s.
    let opts = ClusterOpts {
        env: vec![("SPATE_KINESIS__RETENTION_HOUR_MS".into(), "100".into())],
        ..ClusterOpts::default()
    };
    let cluster = Cluster::start(opts)
        .await
        .unwrap_or_else(|e| panic!("cluster start: {e:#}"));
    let res = tokio::time::timeout(Duration::from_secs(90), async {
        const STREAM: &str = "retention";
        let c = cluster.client(0);
        c.ensure_stream(STREAM, 1, Duration::from_secs(30)).await?;
        for i in 0..20 {
            c.put_record(STREAM, &format!("k{i}"), format!("old-{i}").as_bytes(), None).await?;
        }
        let it = c.get_shard_iterator(STREAM, "shardId-000000000000", &spate_cluster_tests::types::IteratorType::TrimHorizon).await?;
        ensure!(c.get_records(&it, None).await?.records.len() == 20, "records readable before expiry");
        step(&c, STREAM, "SplitShard", json!({"StreamName": STREAM, "ShardToSplit": "shardId-000000000000", "NewStartingHashKey": (1u128 << 127).to_string()})).await?;
        // The old iterator is behind the trim point once the records expire.
        let deadline = Instant::now() + Duration::from_secs(40);
        loop {
            let shards = c.list_shards(STREAM).await?;
            if !shards.iter().any(|s| s.shard_id == "shardId-000000000000") {
                break;
            }
            ensure!(Instant::now() < deadline, "closed parent never expired: {shards:?}");
            tokio::time::sleep(Duration::from_millis(300)).await;
        }
        for node in 0..cluster.len() {
            let replicas = cluster.shards(node).await?;
            ensure!(
                !replicas.iter().any(|r| r.stream == STREAM && r.shard_id == "shardId-000000000000"),
                "node {node} still hosts the expired parent"
            );
        }
        // Records put into a child expire too: TRIM_HORIZON moves past them.
        let key = "child-key";
        let ack = c.put_record(STREAM, key, b"short-lived", None).await?;
        tokio::time::sleep(Duration::from_secs(5)).await;
        let it = c.get_shard_iterator(STREAM, &ack.shard_id, &spate_cluster_tests::types::IteratorType::TrimHorizon).await?;
        let got = c.get_records(&it, None).await?;
        ensure!(got.records.is_empty(), "expired record still readable: {:?}", got.records.len());
        Ok::<(), anyhow::Error>(())
    })
    .await;
    match res {
        Ok(Ok(())) => {}
        Ok(Err(e)) => {
            cluster.dump_logs(40);
            panic!("{e:#}")
        }
        Err(_) => panic!("scenario took over 90 s"),
    }
}
