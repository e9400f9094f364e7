//! Scale-out beyond the initial voters: 3 nodes (zones az-a, az-b, az-c) serve a stream; a
//! 4th process starts with node id 3, zone az-d and the same `cluster.peers` (it is not among
//! them) plus `cluster.advertise`. It must register itself, join the metadata group as a
//! learner and become ready; `/v1/nodes` on an original node shows it with its own zone. A
//! stream created afterwards places a replica of every shard on the new node (it holds no
//! replica yet, so placement prefers it); put/get through the new node works. Then an
//! original node that shares those shards with the new node is SIGKILLed under a light write
//! load: the shards keep a majority only because the new node's replicas are real voting
//! members of their groups. Every acknowledged record must be read back through the new node
//! and a survivor, identically, with a clean history. Finally the new node is restarted: it
//! registers nothing new (idempotent) and is ready again.
//!
//! The cluster runs with the replica rebalancer switched off (`SPATE_REBALANCE__ENABLED=false`):
//! this test is about placing new streams on a new node, and it checks the switch — node 3
//! never receives a replica of the stream created before it joined. Rebalancing existing
//! replicas onto a new node is `rebalance.rs`.

use std::time::{Duration, Instant};

use anyhow::{ensure, Context, Result};
use spate_cluster_tests::harness::{Cluster, ClusterOpts};
use spate_cluster_tests::history::{check, Outcome};
use spate_cluster_tests::joiner::{nodes, Joiner};
use spate_cluster_tests::workload::{final_read, Workload, WorkloadOpts};

const BEFORE: &str = "before-join";
const AFTER: &str = "after-join";
const PROBE: &str = "probe";
const NEW_ID: u64 = 3;

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn a_fourth_node_joins_as_non_voter_and_holds_new_replicas() {
    let mut cluster = Cluster::start(ClusterOpts {
        env: vec![("SPATE_REBALANCE__ENABLED".into(), "false".into())],
        ..Default::default()
    })
    .await
    .unwrap_or_else(|e| panic!("cluster start: {e:#}"));
    let mut joiner = None;
    let res = tokio::time::timeout(
        Duration::from_secs(180),
        scenario(&mut cluster, &mut joiner),
    )
    .await;
    let fail = |msg: String, joiner: &Option<Joiner>| {
        cluster.dump_logs(40);
        if let Some(j) = joiner {
            eprintln!("--- node 3 log tail ---\n{}", j.tail(60));
        }
        panic!("{msg}");
    };
    match res {
        Ok(Ok(())) => {}
        Ok(Err(e)) => fail(format!("scale scenario failed: {e:#}"), &joiner),
        Err(_) => fail("scale scenario took over 180 s".into(), &joiner),
    }
}

async fn scenario(cluster: &mut Cluster, joiner_slot: &mut Option<Joiner>) -> Result<()> {
    let http = reqwest::Client::builder()
        .timeout(Duration::from_secs(5))
        .build()?;
    let c0 = cluster.client(0);
    c0.ensure_stream(BEFORE, 2, Duration::from_secs(30)).await?;

    // The registry before the join: the three voters with their configured zones.
    let before = nodes(&http, &cluster.admin_url(0)).await?;
    ensure!(before.len() == 3, "{before:?}");
    ensure!(before.iter().all(|n| n["role"] == "voter"), "{before:?}");

    let joiner = joiner_slot.insert(Joiner::create(cluster, NEW_ID)?);
    joiner.spawn()?;
    let t0 = Instant::now();
    joiner.wait_ready(&http, Duration::from_secs(60)).await?;
    eprintln!("JOIN TIME: node 3 ready in {:?}", t0.elapsed());
    let registry = nodes(&http, &cluster.admin_url(1)).await?;
    let n3 = registry
        .iter()
        .find(|n| n["id"] == NEW_ID)
        .with_context(|| format!("node 3 not registered: {registry:?}"))?;
    ensure!(
        n3["zone"] == "az-d" && n3["role"] == "learner",
        "node 3 registry entry: {n3}"
    );
    // The learner has the metadata: it lists the stream created before it joined.
    let listed = joiner.client().list_shards(BEFORE).await?;
    ensure!(listed.len() == 2, "node 3 lists {listed:?}");

    // A new stream: node 3 holds no replica, so placement puts it in every shard.
    c0.ensure_stream(AFTER, 2, Duration::from_secs(30)).await?;
    let shard_ids: Vec<String> = c0
        .list_shards(AFTER)
        .await?
        .into_iter()
        .map(|s| s.shard_id)
        .collect();
    let deadline = Instant::now() + Duration::from_secs(20);
    let hosted: Vec<serde_json::Value> = loop {
        let url = format!("{}/v1/shards", joiner.admin_url());
        let all: Vec<serde_json::Value> = http.get(&url).send().await?.json().await?;
        let mine: Vec<_> = all.into_iter().filter(|s| s["stream"] == AFTER).collect();
        if mine.len() == shard_ids.len() && mine.iter().all(|s| s["leader"].is_u64()) {
            break mine;
        }
        ensure!(
            Instant::now() < deadline,
            "node 3 hosts {mine:?} of {shard_ids:?}"
        );
        tokio::time::sleep(Duration::from_millis(200)).await;
    };
    eprintln!("node 3 hosts {hosted:?}");
    let members: Vec<u64> = hosted[0]["members"]
        .as_array()
        .context("members")?
        .iter()
        .filter_map(|m| m.as_u64())
        .collect();
    ensure!(members.contains(&NEW_ID), "members {members:?}");

    // Put and get through the new node, on a third stream (still the least loaded node, so
    // node 3 holds its replica too; the workload's history below covers only AFTER).
    let j = joiner.client();
    j.ensure_stream(PROBE, 1, Duration::from_secs(30)).await?;
    let url = format!("{}/v1/shards", joiner.admin_url());
    let all: Vec<serde_json::Value> = http.get(&url).send().await?.json().await?;
    ensure!(
        all.iter().any(|s| s["stream"] == PROBE),
        "node 3 holds no replica of {PROBE}: {all:?}"
    );
    let ack = j.put_record(PROBE, "via-node-3", b"hello", None).await?;
    let it = j
        .get_shard_iterator(
            PROBE,
            &ack.shard_id,
            &spate_cluster_tests::types::IteratorType::TrimHorizon,
        )
        .await?;
    let got = j.get_records(&it, None).await?;
    ensure!(
        got.records
            .iter()
            .any(|r| r.sequence_number == ack.sequence_number),
        "record not read back through node 3"
    );

    // Light load through every node, then kill an original node sharing shard 0 with node 3.
    let mut endpoints = cluster.clients();
    endpoints.push(joiner.client());
    let opts = WorkloadOpts {
        stream: AFTER.into(),
        writers: 2,
        records_per_writer: 800,
        keys_per_writer: 8,
        batch_max: 8,
        pad: 32,
    };
    let mut wl = Workload::start(&opts, &endpoints, &shard_ids);
    let t0 = Instant::now();
    while wl.acks_per_shard().values().sum::<usize>() < 300 {
        ensure!(t0.elapsed() < Duration::from_secs(60), "slow writes");
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    let victim = members
        .iter()
        .copied()
        .find(|m| *m != NEW_ID)
        .context("no original node in shard 0")? as usize;
    let killed_at = wl.recorder.now_ms();
    cluster.kill(victim)?;
    eprintln!(
        "killed node {victim} (shares {} with node 3)",
        hosted[0]["shard_id"]
    );

    let stats = wl.join_writers(Duration::from_secs(90)).await?;
    tokio::time::sleep(Duration::from_secs(1)).await;
    let seen = wl.stop_readers().await?;
    let acked: usize = stats.iter().map(|s| s.acked).sum();
    let given_up: usize = stats.iter().map(|s| s.given_up).sum();
    eprintln!("writers: acked {acked}, given up {given_up}; tailers saw {seen:?}");
    ensure!(given_up == 0, "puts given up: {stats:?}");
    let attempts = wl.recorder.attempts();
    for s in &shard_ids {
        let after = attempts
            .iter()
            .filter(|a| a.started_ms > killed_at)
            .filter(|a| matches!(&a.outcome, Outcome::Ok { shard_id, .. } if shard_id == s))
            .count();
        ensure!(
            after > 0,
            "no write acknowledged on {s} after node {victim} died"
        );
    }

    let survivor = (0..3).find(|&i| i != victim).unwrap_or(0);
    let via_new = final_read(&joiner.client(), AFTER)
        .await
        .context("final read via node 3")?;
    let via_old = final_read(&cluster.client(survivor), AFTER)
        .await
        .with_context(|| format!("final read via node {survivor}"))?;
    let a: Vec<_> = via_new.iter().map(|s| &s.records).collect();
    let b: Vec<_> = via_old.iter().map(|s| &s.records).collect();
    ensure!(a == b, "final reads via node 3 and node {survivor} differ");
    let report = check(&wl.recorder.history(via_new));
    eprintln!("history: {}", report.summary(20));
    ensure!(report.ok(), "history violations:\n{}", report.summary(50));

    // Restart the new node: same registry entry, ready again, still serving.
    let before_restart = nodes(&http, &cluster.admin_url(survivor)).await?;
    joiner.kill();
    joiner.spawn()?;
    joiner.wait_ready(&http, Duration::from_secs(60)).await?;
    let after_restart = nodes(&http, &cluster.admin_url(survivor)).await?;
    ensure!(
        before_restart == after_restart,
        "registry changed on restart: {before_restart:?} -> {after_restart:?}"
    );
    joiner
        .client()
        .put_record(PROBE, "after-restart", b"again", None)
        .await
        .context("put through node 3 after its restart")?;

    // The rebalancer is off: the stream created before the join never got a replica on it.
    let all: Vec<serde_json::Value> = http.get(&url).send().await?.json().await?;
    ensure!(
        all.iter().all(|s| s["stream"] != BEFORE),
        "node 3 holds a replica of {BEFORE} with rebalancing disabled: {all:?}"
    );
    let rb: serde_json::Value = http
        .get(format!("{}/v1/rebalance", cluster.admin_url(survivor)))
        .send()
        .await?
        .json()
        .await?;
    ensure!(
        rb["params"]["enabled"] == false && rb["moves_started"] == 0,
        "{rb}"
    );
    Ok(())
}
