//! Disk loss: a node loses its data directory and comes back empty under the same
//! configuration (on Kubernetes: a pod whose PersistentVolume is gone).
//!
//! Invariant: a node that lost its data never answers for the replicas it used to hold —
//! it would have forgotten votes and acknowledged entries, so a committed record could end
//! up on fewer than a quorum of nodes. Instead it rejoins under a new node id, the old id is
//! decommissioned and its replicas are rebuilt on the new node from the survivors by Raft
//! membership changes.
//!
//! The scenario: 3 nodes, a 4-shard stream, writers through the other two nodes. Node 0 —
//! the node that initialised the control plane, the worst case: on an empty disk it must not
//! initialise a second one — is SIGKILLed, its data directory deleted, and it is started
//! again with the same configuration. It must come back as node 3; node 0 must be
//! decommissioned automatically; node 3 must end up holding a replica of every shard and
//! a control-plane vote; every acknowledged record must be read back identically through
//! every node with a clean history; no node may panic. Then the same disk is lost again: the
//! node (still configured as node 0) must replace node 3 — the last of the chain — as node 4.
//! Finally, with node 1 SIGKILLed, every shard must still take writes (the replacement's
//! replicas count in the quorum).

use std::time::{Duration, Instant};

use anyhow::{ensure, Result};
use spate_cluster_tests::client::KinesisClient;
use spate_cluster_tests::harness::{Cluster, ClusterOpts, ShardReplica};
use spate_cluster_tests::history::check;
use spate_cluster_tests::steps::{
    every_shard_writable, get_json, identical_final_reads, replicas_agree, stream_with_shards,
    wait_acks,
};
use spate_cluster_tests::workload::{final_read, Workload, WorkloadOpts};

const STREAM: &str = "diskloss";
const SHARDS: usize = 4;
const LOST: usize = 0;

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn a_node_that_lost_its_disk_rejoins_as_a_new_node() {
    let mut cluster = Cluster::start(ClusterOpts::default())
        .await
        .unwrap_or_else(|e| panic!("cluster start: {e:#}"));
    let res = tokio::time::timeout(Duration::from_secs(240), scenario(&mut cluster)).await;
    let failure = match res {
        Ok(Ok(())) => None,
        Ok(Err(e)) => Some(format!("disk-loss scenario failed: {e:#}")),
        Err(_) => Some("disk-loss scenario took over 240 s".to_string()),
    };
    if let Some(msg) = failure {
        cluster.dump_logs(80);
        panic!("{msg}");
    }
}

/// Waits until `old` is decommissioned without anyone asking, holds nothing and has left the
/// control plane, and `new_id` is a control-plane voter.
async fn wait_replaced(
    cluster: &Cluster,
    http: &reqwest::Client,
    old: u64,
    new_id: u64,
) -> Result<()> {
    let admin = cluster.admin_url(1);
    let started = Instant::now();
    loop {
        let (code, st) = get_json(http, &format!("{admin}/v1/decommission?node={old}")).await?;
        let (_, nodes) = get_json(http, &format!("{admin}/v1/nodes")).await?;
        let voter = nodes
            .as_array()
            .is_some_and(|a| a.iter().any(|n| n["id"] == new_id && n["role"] == "voter"));
        if code == 200 && st["meta_role"] == "none" && voter {
            eprintln!(
                "node {old} replaced by {new_id} in {:?}: {st}",
                started.elapsed()
            );
            return Ok(());
        }
        ensure!(
            started.elapsed() < Duration::from_secs(120),
            "node {old} not replaced by {new_id} after 120 s: decommission {code} {st}; nodes {nodes}"
        );
        tokio::time::sleep(Duration::from_millis(250)).await;
    }
}

fn panics_in_logs(cluster: &Cluster) -> Vec<String> {
    (0..cluster.len())
        .filter_map(|i| {
            let log = std::fs::read_to_string(cluster.log_path(i)).unwrap_or_default();
            log.lines()
                .find(|l| l.contains("panicked"))
                .map(|l| format!("node {i}: {l}"))
        })
        .collect()
}

async fn scenario(cluster: &mut Cluster) -> Result<()> {
    let http = reqwest::Client::builder()
        .timeout(Duration::from_secs(10))
        .build()?;
    let shard_ids =
        stream_with_shards(cluster, 1, STREAM, SHARDS, Some(Duration::from_secs(20))).await?;
    let held = cluster
        .shards(LOST)
        .await?
        .into_iter()
        .filter(|s| s.stream == STREAM)
        .count();
    ensure!(held == SHARDS, "node {LOST} holds {held} replicas");

    let clients: Vec<KinesisClient> = vec![cluster.client(1), cluster.client(2)];
    let opts = WorkloadOpts {
        stream: STREAM.into(),
        writers: 2,
        records_per_writer: 1_500,
        keys_per_writer: 8,
        batch_max: 8,
        pad: 32,
    };
    let mut wl = Workload::start(&opts, &clients, &shard_ids);
    wait_acks(&wl, 300, Duration::from_secs(60)).await?;

    // The disk is lost.
    cluster.kill(LOST)?;
    cluster.wipe(LOST)?;
    cluster.start_node(LOST)?;
    cluster.wait_ready(LOST, Duration::from_secs(60)).await?;
    let new_id = cluster.refresh_node_id(LOST).await?;
    eprintln!("node {LOST} came back on an empty disk as node {new_id}");
    ensure!(new_id == 3, "the replacement took id {new_id}, expected 3");

    wait_replaced(cluster, &http, LOST as u64, new_id).await?;

    // Nothing acknowledged is lost; every node serves the same records.
    let stats = wl.join_writers(Duration::from_secs(90)).await?;
    let seen = wl.stop_readers().await?;
    let acked: usize = stats.iter().map(|s| s.acked).sum();
    let given_up: usize = stats.iter().map(|s| s.given_up).sum();
    eprintln!("writers: acked {acked}, given up {given_up}; tailers saw {seen:?}");
    ensure!(given_up == 0, "puts given up: {stats:?}");
    ensure!(acked == 3_000, "acked {acked} of 3000");
    let read = identical_final_reads(&cluster.clients(), STREAM).await?;
    let total: usize = read.iter().map(|s| s.records.len()).sum();
    let report = check(&wl.recorder.history(read));
    eprintln!("history: {}", report.summary(20));
    ensure!(report.ok(), "history violations:\n{}", report.summary(50));

    // Every shard: replicas on nodes 1, 2 and 3, all agreeing.
    let want = vec![1u64, 2, new_id];
    let t = Instant::now();
    loop {
        let mut by_node: Vec<Vec<ShardReplica>> = Vec::new();
        for n in 0..cluster.len() {
            let mut r = cluster.shards(n).await?;
            r.retain(|s| s.stream == STREAM);
            by_node.push(r);
        }
        let views: Vec<&[ShardReplica]> = by_node.iter().map(Vec::as_slice).collect();
        if replicas_agree(&views, &shard_ids, &want) {
            break;
        }
        ensure!(
            t.elapsed() < Duration::from_secs(30),
            "replicas disagree: {by_node:?}"
        );
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
    let panics = panics_in_logs(cluster);
    ensure!(panics.is_empty(), "panics: {panics:?}");

    // The same disk is lost again: the node still starts with configured id 0, but the node
    // to replace now is 3 (0 was replaced by 3 before), and it comes back as 4.
    cluster.kill(LOST)?;
    cluster.wipe(LOST)?;
    cluster.start_node(LOST)?;
    cluster.wait_ready(LOST, Duration::from_secs(60)).await?;
    let newer = cluster.refresh_node_id(LOST).await?;
    ensure!(
        newer == 4,
        "the second replacement took id {newer}, expected 4"
    );
    wait_replaced(cluster, &http, new_id, newer).await?;
    let want = vec![1u64, 2, newer];
    let t = Instant::now();
    loop {
        let mut ok = true;
        for n in 0..cluster.len() {
            for r in cluster
                .shards(n)
                .await?
                .iter()
                .filter(|s| s.stream == STREAM)
            {
                let mut m = r.members.clone();
                m.sort_unstable();
                ok &= m == want;
            }
        }
        if ok {
            break;
        }
        ensure!(
            t.elapsed() < Duration::from_secs(30),
            "members after the second loss are not {want:?}"
        );
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
    let again = final_read(&cluster.client(LOST), STREAM).await?;
    let total_again: usize = again.iter().map(|s| s.records.len()).sum();
    ensure!(
        total_again == total,
        "{total_again} records after the second loss, expected {total}"
    );

    // The replacement's replicas count: with node 1 gone, every shard still takes writes.
    cluster.kill(1)?;
    let survivor = cluster.client(LOST);
    let written = every_shard_writable(&survivor, STREAM).await?;
    let after = final_read(&cluster.client(2), STREAM).await?;
    let total_after: usize = after.iter().map(|s| s.records.len()).sum();
    ensure!(
        total_after == total + written,
        "{total_after} records after the kill, expected {total} + {}",
        written
    );
    Ok(())
}
