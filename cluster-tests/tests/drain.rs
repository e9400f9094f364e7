//! Draining a node (the Kubernetes preStop hook) under a light write load: 3 nodes, a 6-shard
//! stream, 2 writers and a tailing reader per shard. The node leading the most shard groups
//! is drained with `POST /v1/drain` (as the hook does: repeat until 200). The drain must answer
//! 200 within 10 s; afterwards the node leads no shard group and not the metadata group, and
//! still leads nothing after several election timeouts (leadership does not bounce back).
//! When the control-plane leader is another node it is drained next: the metadata group moves
//! to the third node, a new stream can still be created, and both drained nodes end up
//! leading nothing. Writes go on through every node, including the drained ones: every record
//! is acknowledged (no put given up), the shards the first node led are written after its
//! drain, and the final read through every node is identical and the history clean (no
//! acknowledged record lost, none duplicated or reordered).

use std::time::{Duration, Instant};

use anyhow::{bail, ensure, Context, Result};
use spate_cluster_tests::harness::{Cluster, ClusterOpts};
use spate_cluster_tests::history::{check, Outcome};
use spate_cluster_tests::steps::stream_with_shards;
use spate_cluster_tests::workload::{final_read, Workload, WorkloadOpts};

const STREAM: &str = "drain";
const SHARDS: usize = 6;

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn drain_moves_leadership_away_without_losing_writes() {
    let mut cluster = Cluster::start(ClusterOpts::default())
        .await
        .unwrap_or_else(|e| panic!("cluster start: {e:#}"));
    match tokio::time::timeout(Duration::from_secs(150), scenario(&mut cluster)).await {
        Ok(Ok(())) => {}
        Ok(Err(e)) => {
            cluster.dump_logs(40);
            panic!("drain scenario failed: {e:#}")
        }
        Err(_) => {
            cluster.dump_logs(40);
            panic!("drain scenario took over 150 s")
        }
    }
}

/// `GET` or `POST` `/v1/drain` on `node`: the status code and the JSON body.
async fn drain_call(
    http: &reqwest::Client,
    cluster: &Cluster,
    node: usize,
    post: bool,
) -> Result<(u16, serde_json::Value)> {
    let url = format!("{}/v1/drain", cluster.admin_url(node));
    let req = if post {
        http.post(&url)
    } else {
        http.get(&url)
    };
    let resp = req.send().await.with_context(|| url.clone())?;
    let code = resp.status().as_u16();
    let body: serde_json::Value = resp.json().await.with_context(|| format!("{url}: body"))?;
    Ok((code, body))
}

/// Shard groups of `STREAM` that `node` reports leading.
async fn led_by(cluster: &Cluster, node: usize) -> Result<Vec<String>> {
    Ok(cluster
        .shards(node)
        .await?
        .into_iter()
        .filter(|r| r.stream == STREAM && r.leader == Some(node as u64))
        .map(|r| r.shard_id)
        .collect())
}

async fn scenario(cluster: &mut Cluster) -> Result<()> {
    let http = reqwest::Client::builder()
        .timeout(Duration::from_secs(10))
        .build()?;
    let shard_ids =
        stream_with_shards(cluster, 0, STREAM, SHARDS, Some(Duration::from_secs(15))).await?;

    // Not draining yet: GET answers 200 and reports draining = false.
    let (code, body) = drain_call(&http, cluster, 0, false).await?;
    ensure!(code == 200 && body["draining"] == false, "{code} {body}");

    let opts = WorkloadOpts {
        stream: STREAM.into(),
        writers: 2,
        records_per_writer: 1_500,
        keys_per_writer: 8,
        batch_max: 8,
        pad: 32,
    };
    let mut wl = Workload::start(&opts, &cluster.clients(), &shard_ids);
    let t0 = Instant::now();
    while wl.acks_per_shard().values().sum::<usize>() < 400 {
        ensure!(
            t0.elapsed() < Duration::from_secs(60),
            "only {:?} acks after 60 s",
            wl.acks_per_shard()
        );
        tokio::time::sleep(Duration::from_millis(100)).await;
    }

    // The metadata leader if it leads at least two shard groups (then both kinds of group
    // are handed over), else the node that leads the most.
    let mut best = (0usize, Vec::new());
    for n in 0..cluster.len() {
        let led = led_by(cluster, n).await?;
        if led.len() > best.1.len() {
            best = (n, led);
        }
    }
    if let Some(m) = cluster.find_meta_leader().await {
        let led = led_by(cluster, m).await?;
        if led.len() >= 2 {
            best = (m, led);
        }
    }
    let (node, led_before) = best;
    let was_meta_leader = cluster.is_meta_leader(node).await?;
    ensure!(
        led_before.len() >= 2,
        "node {node} leads only {led_before:?}"
    );
    eprintln!("draining node {node}, which leads {led_before:?} (meta leader: {was_meta_leader})");

    // What the preStop hook does: POST until 200.
    let drain_started = Instant::now();
    let drained_at_ms = wl.recorder.now_ms();
    let mut posts = 0;
    let body = loop {
        posts += 1;
        let (code, body) = drain_call(&http, cluster, node, true).await?;
        match code {
            200 => break body,
            503 => {}
            other => bail!("POST /v1/drain: unexpected {other}: {body}"),
        }
        if drain_started.elapsed() > Duration::from_secs(10) {
            bail!("drain not done after 10 s ({posts} POSTs): {body}");
        }
        tokio::time::sleep(Duration::from_millis(200)).await;
    };
    let took = drain_started.elapsed();
    eprintln!("DRAIN TIME: {took:?} ({posts} POSTs): {body}");
    ensure!(
        body["drained"] == true && body["leads_meta"] == false,
        "{body}"
    );
    ensure!(
        body["leads_shards"]
            .as_array()
            .is_some_and(|a| a.is_empty()),
        "{body}"
    );
    ensure!(
        led_by(cluster, node).await?.is_empty(),
        "still leads shards"
    );

    // Leadership does not come back over several election timeouts, and the other nodes
    // agree on new leaders for the shards the node led.
    tokio::time::sleep(Duration::from_secs(4)).await;
    let (code, status) = drain_call(&http, cluster, node, false).await?;
    ensure!(code == 200 && status["drained"] == true, "{code} {status}");
    ensure!(
        led_by(cluster, node).await?.is_empty(),
        "leadership came back"
    );
    ensure!(
        !cluster.is_meta_leader(node).await?,
        "node {node} leads the control plane again"
    );
    for s in &led_before {
        let l = cluster
            .wait_leader(STREAM, s, Duration::from_secs(10))
            .await?;
        ensure!(l != node, "{s} led by the drained node");
    }

    // Drain the control-plane leader too (when it is another node): the metadata group's
    // leadership moves to the one node not draining, which then serves a CreateStream; the
    // new stream's groups, started on the draining nodes too, end up led by that node.
    let meta_leader = cluster
        .find_meta_leader()
        .await
        .context("no control-plane leader")?;
    if meta_leader != node {
        let t = Instant::now();
        loop {
            let (code, body) = drain_call(&http, cluster, meta_leader, true).await?;
            if code == 200 {
                eprintln!("META DRAIN TIME: {:?}: {body}", t.elapsed());
                break;
            }
            ensure!(
                t.elapsed() < Duration::from_secs(10),
                "meta drain: {code} {body}"
            );
            tokio::time::sleep(Duration::from_millis(200)).await;
        }
        ensure!(
            !cluster.is_meta_leader(meta_leader).await?,
            "node {meta_leader} still leads the control plane"
        );
        let rest = (0..cluster.len())
            .find(|&n| n != node && n != meta_leader)
            .context("third node")?;
        let t = Instant::now();
        while !cluster.is_meta_leader(rest).await? {
            ensure!(
                t.elapsed() < Duration::from_secs(10),
                "node {rest} never led"
            );
            tokio::time::sleep(Duration::from_millis(100)).await;
        }
        cluster
            .client(node)
            .ensure_stream("after-drain", 2, Duration::from_secs(30))
            .await?;
        let t = Instant::now();
        for n in [node, meta_leader] {
            loop {
                let (code, body) = drain_call(&http, cluster, n, false).await?;
                if code == 200 && body["drained"] == true {
                    break;
                }
                ensure!(
                    t.elapsed() < Duration::from_secs(10),
                    "node {n} leads again: {body}"
                );
                tokio::time::sleep(Duration::from_millis(100)).await;
            }
        }
    }

    let stats = wl.join_writers(Duration::from_secs(60)).await?;
    tokio::time::sleep(Duration::from_secs(1)).await;
    let seen = wl.stop_readers().await?;
    let acked: usize = stats.iter().map(|s| s.acked).sum();
    let given_up: usize = stats.iter().map(|s| s.given_up).sum();
    let attempts = wl.recorder.attempts();
    let unknown = attempts
        .iter()
        .filter(|a| matches!(a.outcome, Outcome::Unknown(_)))
        .count();
    let failed = attempts
        .iter()
        .filter(|a| matches!(a.outcome, Outcome::Failed(_)))
        .count();
    eprintln!(
        "writers: acked {acked}, given up {given_up}, attempts {}, failed attempts {failed}, \
         unknown outcomes {unknown}; tailers saw {seen:?}",
        attempts.len()
    );
    ensure!(given_up == 0, "puts given up: {stats:?}");
    ensure!(acked == 3_000, "acked {acked} of 3000");
    for s in &led_before {
        let after = attempts
            .iter()
            .filter(|a| a.started_ms > drained_at_ms)
            .filter(|a| matches!(&a.outcome, Outcome::Ok { shard_id, .. } if shard_id == s))
            .count();
        ensure!(after > 0, "no write acknowledged on {s} after the drain");
    }

    let mut reads = Vec::new();
    for n in 0..cluster.len() {
        reads.push(
            final_read(&cluster.client(n), STREAM)
                .await
                .with_context(|| format!("final read via node {n}"))?,
        );
    }
    for (n, fr) in reads.iter().enumerate().skip(1) {
        let a: Vec<_> = reads[0].iter().map(|s| &s.records).collect();
        let b: Vec<_> = fr.iter().map(|s| &s.records).collect();
        ensure!(a == b, "final read via node {n} differs from node 0");
    }
    let report = check(&wl.recorder.history(reads.swap_remove(0)));
    eprintln!("history: {}", report.summary(20));
    ensure!(report.ok(), "history violations:\n{}", report.summary(50));
    Ok(())
}
