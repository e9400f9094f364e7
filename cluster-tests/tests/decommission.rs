//! Decommissioning a node (scale in) under a write load: 3 voters (zones az-a..az-c) and a
//! 4th node that joined as a learner (az-d, as in `scale.rs`); a 4-shard stream is created
//! after the join, so every node holds replicas. Writers run through the three other nodes
//! while `POST /v1/decommission?node=X` (sent to another node) moves every replica off X, a
//! voter that does not lead the control plane: each move adds the target as a learner of the
//! shard group, changes the voter set and records the swap in the metadata. The endpoint
//! answers 202 until X holds nothing, then 200; X ends up with no shard replica and outside
//! the control-plane membership (the learner was promoted in its place). Every acknowledged
//! record is read back identically through the three remaining nodes with a clean history,
//! every shard's replicas agree (members, applied index, next ordinal), and after SIGKILLing
//! one remaining node every shard still takes writes. `POST /v1/nodes/X/forget` is refused
//! (409) before and during the decommission, then removes X from the registry (200; `/v1/nodes`
//! no longer lists it; a second call is a 404). The second test runs the same scenario
//! with X SIGKILLed before the decommission (the replace path for a node whose disk is lost):
//! its replicas are rebuilt from the survivors' logs.

use std::time::{Duration, Instant};

use anyhow::{ensure, Context, Result};
use spate_cluster_tests::client::KinesisClient;
use spate_cluster_tests::harness::{Cluster, ClusterOpts, ShardReplica};
use spate_cluster_tests::history::{check, Outcome};
use spate_cluster_tests::joiner::Joiner;
use spate_cluster_tests::steps::{
    every_shard_writable, get_json, identical_final_reads, replicas_agree, wait_acks,
};
use spate_cluster_tests::workload::{final_read, Workload, WorkloadOpts};

const STREAM: &str = "decom";
const SHARDS: usize = 4;
const NEW_ID: u64 = 3;

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn decommission_moves_every_replica_off_a_node() {
    run(false).await
}

/// The replace path for a node whose disk is lost: the node is SIGKILLed (and stays down)
/// before its id is decommissioned; its replicas are rebuilt on the other nodes from the
/// surviving replicas' logs.
#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn decommission_rebuilds_the_replicas_of_a_dead_node() {
    run(true).await
}

async fn run(dead: bool) {
    let mut cluster = Cluster::start(ClusterOpts::default())
        .await
        .unwrap_or_else(|e| panic!("cluster start: {e:#}"));
    let mut joiner = None;
    let res = tokio::time::timeout(
        Duration::from_secs(240),
        scenario(&mut cluster, &mut joiner, dead),
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
        Ok(Err(e)) => fail(format!("decommission scenario failed: {e:#}"), &joiner),
        Err(_) => fail("decommission scenario took over 240 s".into(), &joiner),
    }
}

/// The replicas node 3 hosts.
async fn joiner_shards(http: &reqwest::Client, joiner: &Joiner) -> Result<Vec<ShardReplica>> {
    let url = format!("{}/v1/shards", joiner.admin_url());
    Ok(http.get(&url).send().await?.json().await?)
}

/// The replicas of `STREAM` hosted by each remaining node (harness nodes, then node 3).
async fn replicas_by_node(
    http: &reqwest::Client,
    cluster: &Cluster,
    joiner: &Joiner,
    nodes: &[usize],
) -> Result<Vec<(u64, Vec<ShardReplica>)>> {
    let mut out = Vec::new();
    for &n in nodes {
        let mut r = cluster.shards(n).await?;
        r.retain(|s| s.stream == STREAM);
        out.push((n as u64, r));
    }
    let mut r = joiner_shards(http, joiner).await?;
    r.retain(|s| s.stream == STREAM);
    out.push((NEW_ID, r));
    Ok(out)
}

async fn scenario(
    cluster: &mut Cluster,
    joiner_slot: &mut Option<Joiner>,
    dead: bool,
) -> Result<()> {
    let http = reqwest::Client::builder()
        .timeout(Duration::from_secs(10))
        .build()?;
    let joiner = joiner_slot.insert(Joiner::create(cluster, NEW_ID)?);
    joiner.spawn()?;
    joiner.wait_ready(&http, Duration::from_secs(60)).await?;
    let c0 = cluster.client(0);
    c0.ensure_stream(STREAM, SHARDS as u32, Duration::from_secs(30))
        .await?;
    let shard_ids: Vec<String> = c0
        .list_shards(STREAM)
        .await?
        .into_iter()
        .map(|s| s.shard_id)
        .collect();
    ensure!(shard_ids.len() == SHARDS, "shards: {shard_ids:?}");
    // Every shard has a leader (node 3 may lead some, so ask all four nodes).
    let t = Instant::now();
    loop {
        let by_node = replicas_by_node(&http, cluster, joiner, &[0, 1, 2]).await?;
        let led = shard_ids.iter().all(|s| {
            by_node
                .iter()
                .any(|(_, r)| r.iter().any(|r| &r.shard_id == s && r.leader.is_some()))
        });
        if led {
            break;
        }
        ensure!(
            t.elapsed() < Duration::from_secs(20),
            "no leaders: {by_node:?}"
        );
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    // X: a voter that does not lead the control plane and holds replicas.
    let meta_leader = cluster.find_meta_leader().await.context("no meta leader")?;
    let x = (0..3).find(|n| *n != meta_leader).context("no candidate")?;
    let held = cluster
        .shards(x)
        .await?
        .into_iter()
        .filter(|s| s.stream == STREAM)
        .count();
    ensure!(held > 0, "node {x} holds no replica of {STREAM}");
    let others: Vec<usize> = (0..3).filter(|n| *n != x).collect();
    eprintln!("decommissioning node {x} ({held} replicas); meta leader {meta_leader}");

    // Writers through the nodes that stay.
    let mut clients: Vec<KinesisClient> = others.iter().map(|n| cluster.client(*n)).collect();
    clients.push(joiner.client());
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

    if dead {
        cluster.kill(x)?;
    }
    // Unknown node: 404.
    let url = format!("{}/v1/decommission?node=99", cluster.admin_url(others[0]));
    let code = http.post(&url).send().await?.status().as_u16();
    ensure!(code == 404, "decommission of an unknown node: {code}");

    // Forgetting a node that is not decommissioned is refused.
    let forget_url = |n: usize| format!("{}/v1/nodes/{n}/forget", cluster.admin_url(others[0]));
    let resp = http.post(forget_url(x)).send().await?;
    let code = resp.status().as_u16();
    let text = resp.text().await?;
    ensure!(
        code == 409 && text.contains("not decommissioned"),
        "forget before decommissioning: {code} {text}"
    );
    let code = http.post(forget_url(99)).send().await?.status().as_u16();
    ensure!(code == 404, "forget of an unknown node: {code}");

    let decommission_ms = wl.recorder.now_ms();
    let url = format!("{}/v1/decommission?node={x}", cluster.admin_url(others[0]));
    let resp = http.post(&url).send().await?;
    let code = resp.status().as_u16();
    let body: serde_json::Value = resp.json().await?;
    ensure!(
        code == 202 && body["decommissioning"] == true,
        "{code} {body}"
    );
    // Still holding replicas: forgetting it is refused.
    let resp = http.post(forget_url(x)).send().await?;
    let code = resp.status().as_u16();
    let text = resp.text().await?;
    ensure!(
        code == 409 && text.contains("still"),
        "forget during the decommission: {code} {text}"
    );
    let started = Instant::now();
    let status_url = format!("{}/v1/decommission?node={x}", joiner.admin_url());
    let body = loop {
        let (code, body) = get_json(&http, &status_url).await?;
        if code == 200 {
            break body;
        }
        ensure!(code == 202, "GET decommission: {code} {body}");
        ensure!(
            started.elapsed() < Duration::from_secs(120),
            "decommission not done after 120 s: {body}"
        );
        tokio::time::sleep(Duration::from_millis(250)).await;
    };
    eprintln!("DECOMMISSION TIME: {:?}: {body}", started.elapsed());
    ensure!(body["replicas"] == 0, "{body}");

    // X hosts nothing and leaves the control plane; node 3 is promoted to voter.
    let t = Instant::now();
    loop {
        let hosted = if dead {
            Vec::new()
        } else {
            cluster.shards(x).await?
        };
        let (_, st) = get_json(&http, &status_url).await?;
        let (_, nodes) =
            get_json(&http, &format!("{}/v1/nodes", cluster.admin_url(others[0]))).await?;
        let n3_voter = nodes
            .as_array()
            .is_some_and(|a| a.iter().any(|n| n["id"] == NEW_ID && n["role"] == "voter"));
        if hosted.is_empty() && st["meta_role"] == "none" && n3_voter {
            break;
        }
        ensure!(
            t.elapsed() < Duration::from_secs(30),
            "node {x} still hosts {} replicas / meta role {} / nodes {nodes}",
            hosted.len(),
            st["meta_role"]
        );
        tokio::time::sleep(Duration::from_millis(200)).await;
    }

    // Fully decommissioned: forget it; the registry no longer lists it.
    let resp = http.post(forget_url(x)).send().await?;
    let code = resp.status().as_u16();
    let text = resp.text().await?;
    ensure!(code == 200, "forget after the decommission: {code} {text}");
    let t = Instant::now();
    loop {
        let (_, nodes) = get_json(&http, &format!("{}/v1/nodes", joiner.admin_url())).await?;
        let ids: Vec<u64> = nodes
            .as_array()
            .map(|a| a.iter().filter_map(|n| n["id"].as_u64()).collect())
            .unwrap_or_default();
        if !ids.contains(&(x as u64)) {
            ensure!(ids.len() == 3, "registry after forget: {nodes}");
            break;
        }
        ensure!(
            t.elapsed() < Duration::from_secs(10),
            "node {x} still registered after forget: {nodes}"
        );
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    let code = http.post(forget_url(x)).send().await?.status().as_u16();
    ensure!(code == 404, "second forget: {code}");
    let (code, _) = get_json(&http, &status_url).await?;
    ensure!(
        code == 404,
        "decommission status of a forgotten node: {code}"
    );

    // Writes went on; nothing acknowledged is lost.
    let stats = wl.join_writers(Duration::from_secs(90)).await?;
    tokio::time::sleep(Duration::from_secs(1)).await;
    let seen = wl.stop_readers().await?;
    let acked: usize = stats.iter().map(|s| s.acked).sum();
    let given_up: usize = stats.iter().map(|s| s.given_up).sum();
    eprintln!("writers: acked {acked}, given up {given_up}; tailers saw {seen:?}");
    ensure!(given_up == 0, "puts given up: {stats:?}");
    ensure!(acked == 3_000, "acked {acked} of 3000");
    let after = wl
        .recorder
        .attempts()
        .iter()
        .filter(|a| a.started_ms > decommission_ms && matches!(a.outcome, Outcome::Ok { .. }))
        .count();
    eprintln!("acknowledged puts started after the decommission request: {after}");
    ensure!(
        after > 0,
        "no write acknowledged after the decommission began"
    );
    let read = identical_final_reads(&clients, STREAM).await?;
    let total: usize = read.iter().map(|s| s.records.len()).sum();
    let report = check(&wl.recorder.history(read));
    eprintln!("history: {}", report.summary(20));
    ensure!(report.ok(), "history violations:\n{}", report.summary(50));

    // Every shard: one replica on each remaining node, all agreeing.
    let mut want: Vec<u64> = others.iter().map(|n| *n as u64).collect();
    want.push(NEW_ID);
    let t = Instant::now();
    loop {
        let by_node = replicas_by_node(&http, cluster, joiner, &others).await?;
        let views: Vec<&[ShardReplica]> = by_node.iter().map(|(_, r)| r.as_slice()).collect();
        if replicas_agree(&views, &shard_ids, &want) {
            break;
        }
        ensure!(
            t.elapsed() < Duration::from_secs(30),
            "replicas disagree: {by_node:?}"
        );
        tokio::time::sleep(Duration::from_millis(200)).await;
    }

    // Losing one more node still leaves every shard writable (2 of 3 replicas remain).
    cluster.kill(others[1])?;
    let survivor = cluster.client(others[0]);
    let written = every_shard_writable(&survivor, STREAM).await?;
    let after = final_read(&joiner.client(), STREAM).await?;
    let total_after: usize = after.iter().map(|s| s.records.len()).sum();
    ensure!(
        total_after == total + written,
        "{total_after} records after the kill, expected {total} + {}",
        written
    );
    Ok(())
}
