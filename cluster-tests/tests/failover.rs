//! Leader failover under load: 3 nodes, a 2-shard stream, 4 writers putting ≥ 10,000 records
//! (PutRecords batches and PutRecord), a tailing reader per shard. Mid-run the leader of
//! shardId-000000000000 is SIGKILLed; writes to that shard must be acknowledged again within
//! 15 s (a liveness bound, not a performance claim). The killed node is restarted and must catch
//! up; the final read through every node must be identical and the history clean.

use std::collections::HashMap;
use std::time::{Duration, Instant};

use anyhow::{bail, ensure, Context, Result};
use spate_cluster_tests::harness::{Cluster, ClusterOpts};
use spate_cluster_tests::history::{check, Outcome, ProducerAttempt};
use spate_cluster_tests::workload::{encode_payload, final_read, Recorder, Workload, WorkloadOpts};

const STREAM: &str = "failover";
const SHARD0: &str = "shardId-000000000000";

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn shard_leader_failover_loses_no_acknowledged_record() {
    let mut cluster = Cluster::start(ClusterOpts::default())
        .await
        .unwrap_or_else(|e| panic!("cluster start: {e:#}"));
    match tokio::time::timeout(Duration::from_secs(150), scenario(&mut cluster)).await {
        Ok(Ok(())) => {}
        Ok(Err(e)) => panic!("failover scenario failed: {e:#}"),
        Err(_) => panic!("failover scenario took over 150 s"),
    }
}

/// Put one record with `ExplicitHashKey = 0` (so it lands in shard 0) through the surviving
/// nodes until it is acknowledged; every attempt goes into the history. Returns the ack time.
async fn probe_shard0(cluster: &Cluster, skip: usize, rec: &Recorder) -> Result<u64> {
    let survivors: Vec<_> = (0..cluster.len())
        .filter(|&i| i != skip)
        .map(|i| cluster.client(i))
        .collect();
    let deadline = Instant::now() + Duration::from_secs(30);
    let mut attempt = 0u32;
    loop {
        attempt += 1;
        let c = &survivors[attempt as usize % survivors.len()];
        let data = encode_payload("probe-0", "failover-probe", 0, 0);
        let started = rec.now_ms();
        let res = c
            .put_record(STREAM, "failover-probe", &data, Some("0"))
            .await;
        let at = rec.now_ms();
        let outcome = match &res {
            Ok(a) => Outcome::Ok {
                shard_id: a.shard_id.clone(),
                seq: a.sequence_number.clone(),
            },
            Err(e) if e.outcome_unknown() => Outcome::Unknown(e.to_string()),
            Err(e) => Outcome::Failed(e.to_string()),
        };
        rec.attempt(ProducerAttempt {
            payload_id: "probe-0".into(),
            partition_key: "failover-probe".into(),
            key_counter: 0,
            attempt,
            started_ms: started,
            at_ms: at,
            outcome,
        });
        match res {
            Ok(a) => {
                ensure!(a.shard_id == SHARD0, "probe landed in {}", a.shard_id);
                return Ok(at);
            }
            Err(e) if Instant::now() > deadline => bail!("shard 0 unavailable for 30 s: {e}"),
            Err(_) => tokio::time::sleep(Duration::from_millis(100)).await,
        }
    }
}

async fn scenario(cluster: &mut Cluster) -> Result<()> {
    let c0 = cluster.client(0);
    c0.ensure_stream(STREAM, 2, Duration::from_secs(30)).await?;
    let shard_ids: Vec<String> = c0
        .list_shards(STREAM)
        .await?
        .into_iter()
        .map(|s| s.shard_id)
        .collect();
    ensure!(shard_ids.len() == 2, "expected 2 shards, got {shard_ids:?}");

    let opts = WorkloadOpts {
        stream: STREAM.into(),
        writers: 4,
        records_per_writer: 2_600,
        keys_per_writer: 16,
        batch_max: 16,
        pad: 64,
    };
    let mut wl = Workload::start(&opts, &cluster.clients(), &shard_ids);

    // Let a third of the load through, then kill the leader of shard 0.
    let t0 = Instant::now();
    while wl.acks_per_shard().values().sum::<usize>() < 3_000 {
        ensure!(
            t0.elapsed() < Duration::from_secs(60),
            "only {:?} acks after 60 s",
            wl.acks_per_shard()
        );
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    let leader = cluster
        .wait_leader(STREAM, SHARD0, Duration::from_secs(10))
        .await?;
    let killed_at = wl.recorder.now_ms();
    cluster.kill(leader)?;
    eprintln!("killed node {leader} (leader of {SHARD0}) at {killed_at} ms");

    let acked_at = probe_shard0(cluster, leader, &wl.recorder).await?;
    let failover = Duration::from_millis(acked_at - killed_at);
    eprintln!("FAILOVER TIME: {failover:?} (SIGKILL of the leader -> first ack on {SHARD0})");
    ensure!(
        failover < Duration::from_secs(15),
        "failover took {failover:?} (bound 15 s)"
    );
    let new_leader = cluster
        .wait_leader(STREAM, SHARD0, Duration::from_secs(10))
        .await?;
    ensure!(
        new_leader != leader,
        "killed node {leader} still reported as leader"
    );

    cluster
        .restart(leader)
        .await
        .context("restarting the killed node")?;
    eprintln!("node {leader} restarted");

    let stats = wl.join_writers(Duration::from_secs(60)).await?;
    tokio::time::sleep(Duration::from_secs(1)).await;
    let seen = wl.stop_readers().await?;
    let acked: usize = stats.iter().map(|s| s.acked).sum();
    let given_up: usize = stats.iter().map(|s| s.given_up).sum();
    eprintln!(
        "writers: acked {acked}, given up {given_up}, attempts {}; acks per shard {:?}; \
         tailers saw {seen:?}",
        stats.iter().map(|s| s.attempts).sum::<usize>(),
        wl.acks_per_shard()
    );
    ensure!(
        acked >= 10_000,
        "only {acked} records acknowledged: {stats:?}"
    );
    let writer_acks_after_kill = wl
        .recorder
        .attempts()
        .iter()
        .filter(|a| a.started_ms > killed_at && a.payload_id != "probe-0")
        .filter(|a| matches!(&a.outcome, Outcome::Ok { shard_id, .. } if shard_id == SHARD0))
        .count();
    ensure!(
        writer_acks_after_kill > 0,
        "no writer ack on {SHARD0} after the kill"
    );

    wait_caught_up(cluster, leader, &shard_ids).await?;

    let mut reads = Vec::new();
    for node in 0..cluster.len() {
        let fr = final_read(&cluster.client(node), STREAM)
            .await
            .with_context(|| format!("final read via node {node}"))?;
        reads.push(fr);
    }
    for (node, fr) in reads.iter().enumerate().skip(1) {
        let a: Vec<_> = reads[0].iter().map(|s| &s.records).collect();
        let b: Vec<_> = fr.iter().map(|s| &s.records).collect();
        ensure!(a == b, "final read via node {node} differs from node 0");
    }
    let report = check(&wl.recorder.history(reads.swap_remove(0)));
    eprintln!("history: {}", report.summary(20));
    ensure!(report.ok(), "history violations:\n{}", report.summary(50));
    Ok(())
}

/// Wait until `node`'s `last_applied` for every shard reaches what that shard's leader has
/// applied now (writes have stopped).
async fn wait_caught_up(cluster: &mut Cluster, node: usize, shard_ids: &[String]) -> Result<()> {
    let mut targets: HashMap<String, u64> = HashMap::new();
    for s in shard_ids {
        let l = cluster
            .wait_leader(STREAM, s, Duration::from_secs(10))
            .await?;
        let applied = cluster
            .shards(l)
            .await?
            .into_iter()
            .find(|r| r.stream == STREAM && &r.shard_id == s)
            .with_context(|| format!("leader {l} does not list {s}"))?
            .last_applied;
        targets.insert(s.clone(), applied);
    }
    let t0 = Instant::now();
    loop {
        let mine = cluster.shards(node).await.unwrap_or_default();
        let lagging: Vec<String> = targets
            .iter()
            .filter(|(s, &want)| {
                !mine
                    .iter()
                    .any(|r| r.stream == STREAM && &r.shard_id == *s && r.last_applied >= want)
            })
            .map(|(s, want)| format!("{s} (want {want})"))
            .collect();
        if lagging.is_empty() {
            eprintln!("node {node} caught up in {:?}", t0.elapsed());
            return Ok(());
        }
        if t0.elapsed() > Duration::from_secs(30) {
            bail!("node {node} did not catch up within 30 s: {lagging:?}; it reports {mine:?}");
        }
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
}
