//! Failover time without load: SIGKILL the leader of a shard, then probe that shard through
//! the survivors (1 s timeouts) and watch what every survivor reports as leader, every 250 ms.
//! The acceptance bound is failover p99 < 3 s with the default timeouts (election
//! timeout 1.0–1.5 s); that figure is *recorded* (printed here, and per fault kind by the
//! chaos runs, docs/reliability.md), not asserted: on a loaded shared machine the timing says
//! more about the machine. The test fails only past a generous sanity bound (15 s), which an
//! actual unavailability bug (no new leader, writes never routed to it) would cross.

use std::time::{Duration, Instant};

use spate_cluster_tests::client::KinesisClient;
use spate_cluster_tests::harness::{Cluster, ClusterOpts};
use spate_cluster_tests::nemesis::{lab_if_available, run_in_lab};

const STREAM: &str = "fo";
const SHARD: &str = "shardId-000000000000";

async fn one_kill(cluster: &mut Cluster, round: usize) -> Duration {
    let leader = cluster
        .wait_leader(STREAM, SHARD, Duration::from_secs(20))
        .await
        .expect("leader");
    let survivors: Vec<usize> = (0..cluster.len()).filter(|&i| i != leader).collect();
    let clients: Vec<KinesisClient> = survivors
        .iter()
        .map(|&i| KinesisClient::with_timeout(&cluster.api_url(i), Duration::from_secs(1)))
        .collect();
    let t0 = Instant::now();
    cluster.kill(leader).expect("kill");
    // A fresh PutRecord every 100 ms (round-robin over the survivors, at most 20 in flight),
    // whether or not earlier ones still wait: the first ack is the failover time to ~100 ms,
    // not rounded up to the client timeout.
    let mut inflight = tokio::task::JoinSet::new();
    let mut acked = None;
    let mut new_leader_seen = None;
    let mut n = 0usize;
    let mut last_view = Instant::now() - Duration::from_secs(1);
    while acked.is_none() && t0.elapsed() < Duration::from_secs(20) {
        if last_view.elapsed() >= Duration::from_millis(250) {
            last_view = Instant::now();
            let mut v = Vec::new();
            for &i in &survivors {
                let l = cluster.shards(i).await.ok().and_then(|rs| {
                    rs.into_iter()
                        .find(|r| r.shard_id == SHARD)
                        .map(|r| r.leader)
                });
                if new_leader_seen.is_none() && matches!(l, Some(Some(x)) if x != leader as u64) {
                    new_leader_seen = Some(t0.elapsed());
                }
                v.push(format!("n{i}:{l:?}"));
            }
            eprintln!(
                "  round {round} t={:?} leader views {}",
                t0.elapsed(),
                v.join(" ")
            );
        }
        if inflight.len() < 20 {
            n += 1;
            let c = clients[n % clients.len()].clone();
            let data = format!("r{round}-{n}");
            inflight.spawn(async move {
                let r = c
                    .put_record(STREAM, "probe", data.as_bytes(), Some("0"))
                    .await;
                (r, c.endpoint().to_string())
            });
        }
        let tick = tokio::time::sleep(Duration::from_millis(100));
        tokio::pin!(tick);
        loop {
            tokio::select! {
                _ = &mut tick => break,
                Some(done) = inflight.join_next() => match done {
                    Ok((Ok(_), _)) => {
                        acked = Some(t0.elapsed());
                        break;
                    }
                    Ok((Err(e), via)) => eprintln!(
                        "  round {round} t={:?} via {via}: {} {}",
                        t0.elapsed(),
                        e.kind,
                        e.message.chars().take(120).collect::<String>()
                    ),
                    Err(e) => eprintln!("  round {round}: probe task: {e}"),
                },
            }
        }
    }
    inflight.abort_all();
    eprintln!("round {round}: a survivor first reported a new leader after {new_leader_seen:?}");
    let took = acked.expect("no ack within 20 s of killing the leader");
    eprintln!("round {round}: killed node {leader}, first ack after {took:?}");
    cluster.start_node(leader).expect("restart");
    cluster
        .wait_ready(leader, Duration::from_secs(60))
        .await
        .expect("ready");
    tokio::time::sleep(Duration::from_secs(3)).await;
    took
}

/// Sanity bound: no failover may take longer (the figure itself is recorded, not asserted).
const SANITY: Duration = Duration::from_secs(15);

/// Kill the shard leader 3 times; print the failover times (p50 / p99 / max).
#[test]
fn shard_leader_kill_failover_time() {
    let lab = lab_if_available(3).expect("lab");
    let times = run_in_lab(lab, |lab| async move {
        let mut cluster = Cluster::start(ClusterOpts {
            net: lab,
            ..ClusterOpts::default()
        })
        .await
        .expect("cluster");
        cluster
            .client(0)
            .ensure_stream(STREAM, 1, Duration::from_secs(30))
            .await
            .expect("stream");
        let mut times = Vec::new();
        for round in 0..3 {
            times.push(one_kill(&mut cluster, round).await);
        }
        times
    });
    let mut ms: Vec<u128> = times.iter().map(|t| t.as_millis()).collect();
    ms.sort_unstable();
    let pct = |p: f64| ms[(((ms.len() - 1) as f64) * p).round() as usize];
    eprintln!(
        "failover after SIGKILL of the shard leader (ms): {ms:?}; p50 {} / p99 {} / max {} \
         (target p99 < 3000 with default timeouts; not asserted)",
        pct(0.5),
        pct(0.99),
        pct(1.0)
    );
    for t in times {
        assert!(
            t < SANITY,
            "failover took {t:?}, past the {SANITY:?} sanity bound"
        );
    }
}
