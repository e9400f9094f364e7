//! Graceful restart (SIGTERM) of a shard leader under load must not duplicate records.
//!
//! Found by the 30-minute chaos run (seed 20261122, docs/reliability.md): every time the
//! nemesis SIGTERMed a node that led a shard, some records that producers had written exactly
//! once (one attempt, acknowledged, no unknown outcome) appeared twice in that shard, the copy
//! 2–4 s later at a higher ordinal — whole per-shard sub-batches of a PutRecords at a time. That
//! violates R6 (duplicates only from client retries): the server re-appends on its own.

use std::time::Duration;

use spate_cluster_tests::harness::{Cluster, ClusterOpts};
use spate_cluster_tests::history::{check, Violation};
use spate_cluster_tests::nemesis::{lab_if_available, run_in_lab};
use spate_cluster_tests::workload::{final_read, Workload, WorkloadOpts};

const STREAM: &str = "sigterm";

#[test]
fn sigterm_of_shard_leader_does_not_duplicate_records() {
    let lab = lab_if_available(3).expect("lab");
    let report = run_in_lab(lab, |lab| async move {
        let mut cluster = Cluster::start(ClusterOpts {
            net: lab,
            ..ClusterOpts::default()
        })
        .await
        .expect("cluster");
        let c0 = cluster.client(0);
        c0.ensure_stream(STREAM, 2, Duration::from_secs(30))
            .await
            .expect("stream");
        let shard_ids: Vec<String> = c0
            .list_shards(STREAM)
            .await
            .expect("shards")
            .into_iter()
            .map(|s| s.shard_id)
            .collect();
        let opts = WorkloadOpts {
            stream: STREAM.into(),
            writers: 3,
            records_per_writer: usize::MAX / 2,
            keys_per_writer: 8,
            batch_max: 8,
            pad: 32,
        };
        let mut wl = Workload::start(&opts, &cluster.clients(), &shard_ids);
        tokio::time::sleep(Duration::from_secs(3)).await;
        for round in 0..6 {
            let shard = &shard_ids[round % shard_ids.len()];
            let leader = cluster
                .wait_leader(STREAM, shard, Duration::from_secs(20))
                .await
                .expect("leader");
            let t = std::time::Instant::now();
            let st = cluster
                .terminate(leader, Duration::from_secs(15))
                .expect("SIGTERM");
            eprintln!(
                "round {round}: SIGTERM leader {leader} of {shard}: {st} after {:?}",
                t.elapsed()
            );
            cluster.start_node(leader).expect("start");
            cluster
                .wait_ready(leader, Duration::from_secs(60))
                .await
                .expect("ready");
            tokio::time::sleep(Duration::from_secs(3)).await;
        }
        wl.stop_writers();
        wl.join_writers(Duration::from_secs(60))
            .await
            .expect("writers");
        wl.stop_readers().await.expect("readers");
        let fr = final_read(&cluster.client(0), STREAM)
            .await
            .expect("final read");
        check(&wl.recorder.history(fr))
    });
    eprintln!("history: {}", report.summary(20));
    let dups = report
        .violations
        .iter()
        .filter(|v| matches!(v, Violation::Duplicate { .. }))
        .count();
    assert!(
        report.ok(),
        "{dups} unexplained duplicates; {}",
        report.summary(20)
    );
}
