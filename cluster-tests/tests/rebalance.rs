//! Rebalancing on scale-out: 3 nodes (zones az-a, az-b, az-c) hold every replica of a
//! 4-shard stream (4 replicas each) while two producers keep writing through them. A 4th
//! process (node id 3) joins in zone az-a, next to node 0. Nothing but the rebalancer on the
//! metadata leader can give it replicas of the existing stream; to keep one replica per zone
//! it may only take node 0's, and to balance it takes half: the test waits (condition-based)
//! until node 3 hosts 2 live replicas of the pre-existing shards, node 0 holds 2, no move is in
//! flight and the leader's rebalancer reports `balanced` (it stops). Then the producers stop:
//! none gave up, every acknowledged record is read back identically through node 3 and
//! node 1 with a clean history, and every shard's replicas (as the nodes host them) sit in
//! three distinct zones with agreeing membership.

use std::collections::{BTreeMap, BTreeSet};
use std::time::{Duration, Instant};

use anyhow::{ensure, Context, Result};
use spate_cluster_tests::harness::{Cluster, ClusterOpts, ShardReplica};
use spate_cluster_tests::history::{check, Outcome};
use spate_cluster_tests::joiner::{nodes, Joiner};
use spate_cluster_tests::steps::stream_with_shards;
use spate_cluster_tests::workload::{final_read, Workload, WorkloadOpts};

const STREAM: &str = "rebal";
const SHARDS: usize = 4;
const NEW_ID: u64 = 3;

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn a_joining_node_receives_existing_replicas_within_its_zone() {
    let mut cluster = Cluster::start(ClusterOpts::default())
        .await
        .unwrap_or_else(|e| panic!("cluster start: {e:#}"));
    let mut joiner = None;
    let res = tokio::time::timeout(
        Duration::from_secs(240),
        scenario(&mut cluster, &mut joiner),
    )
    .await;
    let fail = |msg: String, joiner: &Option<Joiner>| {
        cluster.dump_logs(60);
        if let Some(j) = joiner {
            eprintln!("--- node 3 log tail ---\n{}", j.tail(60));
        }
        panic!("{msg}");
    };
    match res {
        Ok(Ok(())) => {}
        Ok(Err(e)) => fail(format!("rebalance scenario failed: {e:#}"), &joiner),
        Err(_) => fail("rebalance scenario took over 240 s".into(), &joiner),
    }
}

async fn get_json(http: &reqwest::Client, url: &str) -> Result<serde_json::Value> {
    let resp = http
        .get(url)
        .send()
        .await
        .with_context(|| url.to_string())?;
    Ok(resp.json().await?)
}

/// The replicas of `STREAM` each node hosts (harness nodes 0..2, then node 3).
async fn hosted(
    http: &reqwest::Client,
    cluster: &Cluster,
    joiner: &Joiner,
) -> Result<Vec<(u64, Vec<ShardReplica>)>> {
    let mut out = Vec::new();
    for n in 0..3 {
        let mut r = cluster.shards(n).await?;
        r.retain(|s| s.stream == STREAM);
        out.push((n as u64, r));
    }
    let url = format!("{}/v1/shards", joiner.admin_url());
    let mut r: Vec<ShardReplica> = http.get(&url).send().await?.json().await?;
    r.retain(|s| s.stream == STREAM);
    out.push((NEW_ID, r));
    Ok(out)
}

async fn scenario(cluster: &mut Cluster, joiner_slot: &mut Option<Joiner>) -> Result<()> {
    let http = reqwest::Client::builder()
        .timeout(Duration::from_secs(10))
        .build()?;
    let shard_ids = stream_with_shards(cluster, 0, STREAM, SHARDS, None).await?;

    // Three nodes, three zones: every node holds every shard; the rebalancer has nothing to do.
    let rb = get_json(&http, &format!("{}/v1/rebalance", cluster.admin_url(0))).await?;
    ensure!(
        rb["params"]["enabled"] == true && rb["moves"].as_array().is_some_and(|m| m.is_empty()),
        "{rb}"
    );

    // Producers through the three original nodes, for as long as the rebalancing takes.
    let clients = cluster.clients();
    let opts = WorkloadOpts {
        stream: STREAM.into(),
        writers: 2,
        records_per_writer: 1_000_000,
        keys_per_writer: 8,
        batch_max: 8,
        pad: 32,
    };
    let mut wl = Workload::start(&opts, &clients, &shard_ids);
    let t0 = Instant::now();
    while wl.acks_per_shard().values().sum::<usize>() < 200 {
        ensure!(t0.elapsed() < Duration::from_secs(60), "too few acks");
        tokio::time::sleep(Duration::from_millis(100)).await;
    }

    let joiner = joiner_slot.insert(Joiner::create_in(cluster, NEW_ID, "az-a")?);
    joiner.spawn()?;
    joiner.wait_ready(&http, Duration::from_secs(60)).await?;
    let joined_ms = wl.recorder.now_ms();
    let started = Instant::now();

    // Wait until node 3 hosts two live replicas of the existing shards, node 0 two, nothing
    // moves and the metadata leader's rebalancer says it is balanced.
    let status_url = format!("{}/v1/rebalance", cluster.admin_url(1));
    let (rebalanced, leader_view) = loop {
        let by_node = hosted(&http, cluster, joiner).await?;
        let rb = get_json(&http, &status_url).await?;
        let load: BTreeMap<u64, u64> = rb["nodes"]
            .as_array()
            .context("nodes")?
            .iter()
            .filter_map(|n| Some((n["id"].as_u64()?, n["replicas"].as_u64()?)))
            .collect();
        let moving = rb["moves"].as_array().map_or(0, |m| m.len());
        let on_new = by_node
            .iter()
            .find(|(n, _)| *n == NEW_ID)
            .map(|(_, r)| r.iter().filter(|r| r.leader.is_some()).count())
            .unwrap_or(0);
        let meta_leader = cluster.find_meta_leader().await;
        let leader_view = match meta_leader {
            Some(l) => {
                Some(get_json(&http, &format!("{}/v1/rebalance", cluster.admin_url(l))).await?)
            }
            None => None,
        };
        let balanced = leader_view
            .as_ref()
            .is_some_and(|v| v["last"]["idle"]["reason"] == "balanced");
        if on_new == 2
            && load.get(&0) == Some(&2)
            && load.get(&NEW_ID) == Some(&2)
            && moving == 0
            && balanced
        {
            break (by_node, leader_view);
        }
        ensure!(
            started.elapsed() < Duration::from_secs(120),
            "not rebalanced after 120 s: node 3 hosts {on_new}; {rb}; leader: {leader_view:?}"
        );
        tokio::time::sleep(Duration::from_millis(250)).await;
    };
    eprintln!(
        "REBALANCE TIME: {:?} after node 3 was ready; leader's rebalancer: {}",
        started.elapsed(),
        leader_view.map(|v| v.to_string()).unwrap_or_default()
    );
    eprintln!("hosted: {rebalanced:?}");

    // Keep writing a little longer, so writes go on against the new layout too.
    let t = Instant::now();
    let before = wl.acks_per_shard().values().sum::<usize>();
    while wl.acks_per_shard().values().sum::<usize>() < before + 200 {
        ensure!(
            t.elapsed() < Duration::from_secs(60),
            "writes stalled after rebalancing"
        );
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    wl.stop_writers();
    let stats = wl.join_writers(Duration::from_secs(90)).await?;
    tokio::time::sleep(Duration::from_secs(1)).await;
    let seen = wl.stop_readers().await?;
    let acked: usize = stats.iter().map(|s| s.acked).sum();
    let given_up: usize = stats.iter().map(|s| s.given_up).sum();
    eprintln!("writers: acked {acked}, given up {given_up}; tailers saw {seen:?}");
    ensure!(given_up == 0, "puts given up: {stats:?}");
    let during = wl
        .recorder
        .attempts()
        .iter()
        .filter(|a| a.started_ms > joined_ms && matches!(a.outcome, Outcome::Ok { .. }))
        .count();
    eprintln!("acknowledged puts started after node 3 joined: {during}");
    ensure!(during > 0, "no write acknowledged during the rebalancing");

    // Every acknowledged record is readable, identically through the new node and an old one.
    let via_new = final_read(&joiner.client(), STREAM)
        .await
        .context("final read via node 3")?;
    let via_old = final_read(&cluster.client(1), STREAM)
        .await
        .context("final read via node 1")?;
    let a: Vec<_> = via_new.iter().map(|s| &s.records).collect();
    let b: Vec<_> = via_old.iter().map(|s| &s.records).collect();
    ensure!(a == b, "final reads via node 3 and node 1 differ");
    let total: usize = via_new.iter().map(|s| s.records.len()).sum();
    ensure!(total >= acked, "{total} records read, {acked} acknowledged");
    let report = check(&wl.recorder.history(via_new));
    eprintln!("history: {}", report.summary(20));
    ensure!(report.ok(), "history violations:\n{}", report.summary(50));

    // Placement: each shard's replicas in three distinct zones, members agreeing.
    let registry = nodes(&http, &cluster.admin_url(0)).await?;
    let zone: BTreeMap<u64, String> = registry
        .iter()
        .filter_map(|n| Some((n["id"].as_u64()?, n["zone"].as_str()?.to_string())))
        .collect();
    ensure!(
        zone.get(&NEW_ID).map(String::as_str) == Some("az-a"),
        "{registry:?}"
    );
    let t = Instant::now();
    loop {
        let by_node = hosted(&http, cluster, joiner).await?;
        let mut problems = Vec::new();
        for s in &shard_ids {
            let holders: BTreeSet<u64> = by_node
                .iter()
                .filter(|(_, r)| r.iter().any(|r| &r.shard_id == s))
                .map(|(n, _)| *n)
                .collect();
            let zones: BTreeSet<&String> = holders.iter().filter_map(|n| zone.get(n)).collect();
            let agree = by_node
                .iter()
                .flat_map(|(_, r)| r.iter())
                .filter(|r| &r.shard_id == s)
                .all(|r| r.members.iter().copied().collect::<BTreeSet<u64>>() == holders);
            if holders.len() != 3 || zones.len() != 3 || !agree {
                problems.push(format!(
                    "{s}: hosted on {holders:?} (zones {zones:?}), agree {agree}"
                ));
            }
        }
        if problems.is_empty() {
            break;
        }
        ensure!(
            t.elapsed() < Duration::from_secs(30),
            "placement: {problems:?}\n{by_node:?}"
        );
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
    Ok(())
}
