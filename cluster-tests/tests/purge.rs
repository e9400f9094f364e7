//! Shard Raft logs are purged, and purging loses nothing (see `spate_node::shard::snapshot`):
//! with a small snapshot threshold the shard's log is purged on every replica; a follower is
//! SIGKILLed, the leader purges past the follower's position, then every node is SIGKILLed
//! and restarted; the follower catches up through a snapshot, and every acknowledged record
//! is readable from TRIM_HORIZON, with the same sequence numbers, through every node and
//! from the caught-up follower's own replica.

use std::collections::BTreeSet;
use std::time::{Duration, Instant};

use anyhow::{bail, ensure, Context, Result};
use spate_cluster_tests::harness::{Cluster, ClusterOpts, ShardReplica};
use spate_cluster_tests::types::PutEntry;
use spate_cluster_tests::workload::final_read;

const STREAM: &str = "purge";

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn purged_logs_lose_no_acknowledged_record() {
    let opts = ClusterOpts {
        env: vec![
            // Snapshot (and purge) every 64 KiB applied, keeping 8 entries below it.
            ("SPATE_RAFT__SHARD_SNAPSHOT_BYTES".into(), "65536".into()),
            ("SPATE_RAFT__SHARD_LOG_KEEP".into(), "8".into()),
            ("SPATE_LIMITS__ENABLED".into(), "false".into()),
        ],
        ..ClusterOpts::default()
    };
    let mut cluster = Cluster::start(opts)
        .await
        .unwrap_or_else(|e| panic!("cluster start: {e:#}"));
    match tokio::time::timeout(Duration::from_secs(240), scenario(&mut cluster)).await {
        Ok(Ok(())) => {}
        Ok(Err(e)) => {
            cluster.dump_logs(40);
            panic!("purge scenario failed: {e:#}")
        }
        Err(_) => {
            cluster.dump_logs(40);
            panic!("purge scenario took over 240 s")
        }
    }
}

/// The node's view of the stream's only shard.
async fn replica(cluster: &Cluster, node: usize) -> Result<ShardReplica> {
    cluster
        .shards(node)
        .await?
        .into_iter()
        .find(|s| s.stream == STREAM)
        .with_context(|| format!("node {node} hosts no replica of {STREAM}"))
}

/// Waits until `ok` holds for node `node`'s replica.
async fn wait_replica(
    cluster: &Cluster,
    node: usize,
    what: &str,
    ok: impl Fn(&ShardReplica) -> bool,
) -> Result<ShardReplica> {
    let deadline = Instant::now() + Duration::from_secs(60);
    loop {
        let last = replica(cluster, node).await;
        if let Ok(r) = &last {
            if ok(r) {
                return Ok(r.clone());
            }
        }
        if Instant::now() > deadline {
            bail!("node {node}: {what}: still {last:?} after 60 s");
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
}

/// Puts `batches` batches of 50 records of 1 KiB through any of `nodes`; returns the
/// sequence numbers of the acknowledged records.
async fn put(cluster: &Cluster, nodes: &[usize], tag: &str, batches: usize) -> Result<Vec<String>> {
    let mut acked = Vec::new();
    for b in 0..batches {
        let mut entries: Vec<PutEntry> = (0..50)
            .map(|i| PutEntry {
                partition_key: format!("{tag}-{b}-{i}"),
                data: vec![b'x'; 1024],
                explicit_hash_key: None,
            })
            .collect();
        for attempt in 0..40 {
            let node = nodes[(b + attempt) % nodes.len()];
            if let Ok(out) = cluster.client(node).put_records(STREAM, &entries).await {
                // Keep the acknowledged records; put the failed ones again.
                let mut failed = Vec::new();
                for (e, r) in entries.into_iter().zip(out.records) {
                    match r.sequence_number {
                        Some(seq) => acked.push(seq),
                        None => failed.push(e),
                    }
                }
                entries = failed;
                if entries.is_empty() {
                    break;
                }
            }
            tokio::time::sleep(Duration::from_millis(250)).await;
        }
        ensure!(entries.is_empty(), "{tag}: batch {b} never fully accepted");
    }
    Ok(acked)
}

/// Every acknowledged sequence number is read back, none twice.
async fn check_all(cluster: &Cluster, node: usize, acked: &BTreeSet<String>) -> Result<()> {
    let read = final_read(&cluster.client(node), STREAM).await?;
    let seqs: Vec<&String> = read
        .iter()
        .flat_map(|s| &s.records)
        .map(|r| &r.seq)
        .collect();
    let unique: BTreeSet<&String> = seqs.iter().copied().collect();
    ensure!(unique.len() == seqs.len(), "node {node}: duplicate records");
    let missing: Vec<&String> = acked.iter().filter(|s| !unique.contains(s)).collect();
    ensure!(
        missing.is_empty(),
        "node {node}: {} of {} acknowledged records missing, e.g. {:?}",
        missing.len(),
        acked.len(),
        missing.iter().take(5).collect::<Vec<_>>()
    );
    Ok(())
}

async fn scenario(cluster: &mut Cluster) -> Result<()> {
    let c0 = cluster.client(0);
    c0.ensure_stream(STREAM, 1, Duration::from_secs(30)).await?;
    let shard = c0.list_shards(STREAM).await?[0].shard_id.clone();

    // 1. Enough writes for several snapshots: every replica purges its log.
    let mut acked: BTreeSet<String> = put(cluster, &[0, 1, 2], "a", 20)
        .await?
        .into_iter()
        .collect();
    for node in 0..3 {
        let r = wait_replica(cluster, node, "log purged", |r| r.log_purged > 0).await?;
        eprintln!("node {node} after phase 1: {r:?}");
    }

    // 2. A follower goes down; the leader purges past its position.
    let leader = cluster
        .wait_leader(STREAM, &shard, Duration::from_secs(30))
        .await?;
    let follower = (0..3).find(|n| *n != leader).context("no follower")?;
    let behind = replica(cluster, follower).await?.last_applied;
    cluster.kill(follower)?;
    let alive: Vec<usize> = (0..3).filter(|n| *n != follower).collect();
    acked.extend(put(cluster, &alive, "b", 30).await?);
    let l = wait_replica(cluster, leader, "purged past the stopped follower", |r| {
        r.log_purged > behind
    })
    .await?;
    eprintln!("leader {leader} purged past follower {follower} (at {behind}): {l:?}");

    // 3. Every node crashes after the purge and comes back.
    cluster.kill_all()?;
    for i in 0..cluster.len() {
        cluster.start_node(i)?;
    }
    cluster.wait_all_ready(Duration::from_secs(60)).await?;

    // 4. The follower catches up. The leader's log no longer holds the entries after the
    //    follower's position, so only a snapshot can have brought it there.
    acked.extend(put(cluster, &[0, 1, 2], "c", 2).await?);
    let target = replica(cluster, leader).await?.next_ordinal;
    let f = wait_replica(cluster, follower, "caught up through a snapshot", |r| {
        r.next_ordinal >= target
    })
    .await?;
    eprintln!("follower {follower} after catch-up: {f:?}");
    ensure!(
        f.log_purged > behind || f.snapshot_index > behind,
        "follower did not move past its old position through a snapshot: {f:?}"
    );

    // 5. Every acknowledged record through every node...
    for node in 0..3 {
        check_all(cluster, node, &acked).await?;
    }
    // ...and from the follower's own replica, with the others down.
    for n in alive {
        cluster.kill(n)?;
    }
    check_all(cluster, follower, &acked).await?;
    Ok(())
}
