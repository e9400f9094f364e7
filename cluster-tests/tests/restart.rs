//! Whole-cluster restart: after stopping all three nodes (SIGTERM, or SIGKILL in the second
//! test) and starting them again on the same data dirs and ports, every stream, every shard and
//! every acknowledged record is still there with identical sequence numbers, and the cluster
//! accepts writes again.

use std::os::unix::process::ExitStatusExt;
use std::time::Duration;

use anyhow::{ensure, Context, Result};
use spate_cluster_tests::client::{retry, RetryPolicy, Shard};
use spate_cluster_tests::harness::{Cluster, ClusterOpts};
use spate_cluster_tests::history::{check, History, ShardRead};
use spate_cluster_tests::workload::{final_read, Workload, WorkloadOpts};

#[derive(Clone, Copy, Debug)]
enum Stop {
    Term,
    Kill,
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn graceful_whole_cluster_restart_keeps_everything() {
    run(Stop::Term).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn sigkill_whole_cluster_restart_keeps_every_ack() {
    run(Stop::Kill).await;
}

async fn run(stop: Stop) {
    let mut cluster = Cluster::start(ClusterOpts::default())
        .await
        .unwrap_or_else(|e| panic!("cluster start: {e:#}"));
    match tokio::time::timeout(Duration::from_secs(120), scenario(&mut cluster, stop)).await {
        Ok(Ok(())) => {}
        Ok(Err(e)) => panic!("restart scenario ({stop:?}) failed: {e:#}"),
        Err(_) => panic!("restart scenario ({stop:?}) took over 120 s"),
    }
}

struct Before {
    stream: String,
    shards: Vec<Shard>,
    history: History,
}

/// `(sequence number, payload id)` of every record, per shard.
type Positions = Vec<(String, Vec<(String, Option<String>)>)>;

fn records_of(read: &[ShardRead]) -> Positions {
    read.iter()
        .map(|s| {
            (
                s.shard_id.clone(),
                s.records
                    .iter()
                    .map(|r| (r.seq.clone(), r.payload_id.clone()))
                    .collect(),
            )
        })
        .collect()
}

async fn scenario(cluster: &mut Cluster, stop: Stop) -> Result<()> {
    let c0 = cluster.client(0);
    let streams = [("restart-one", 1u32), ("restart-three", 3u32)];
    let mut before = Vec::new();
    for (name, shard_count) in streams {
        c0.ensure_stream(name, shard_count, Duration::from_secs(30))
            .await?;
        let shards = c0.list_shards(name).await?;
        let ids: Vec<String> = shards.iter().map(|s| s.shard_id.clone()).collect();
        let opts = WorkloadOpts {
            stream: name.into(),
            writers: 2,
            records_per_writer: 600,
            keys_per_writer: 8,
            batch_max: 8,
            pad: 32,
        };
        let mut wl = Workload::start(&opts, &cluster.clients(), &ids);
        let stats = wl.join_writers(Duration::from_secs(40)).await?;
        wl.stop_readers().await?;
        let acked: usize = stats.iter().map(|s| s.acked).sum();
        ensure!(acked == 1_200, "{name}: only {acked} acked: {stats:?}");
        let fr = final_read(&c0, name).await?;
        let history = wl.recorder.history(fr);
        let report = check(&history);
        ensure!(
            report.ok(),
            "{name} before restart:\n{}",
            report.summary(50)
        );
        before.push(Before {
            stream: name.into(),
            shards,
            history,
        });
    }

    match stop {
        Stop::Term => {
            let st = cluster.terminate_all(Duration::from_secs(30))?;
            eprintln!("SIGTERM exit statuses: {st:?}");
            // Graceful shutdown must finish within the grace period (no SIGKILL needed).
            ensure!(
                st.iter().all(|s| s.signal() != Some(libc::SIGKILL)),
                "a node ignored SIGTERM for 30 s: {st:?}"
            );
        }
        Stop::Kill => cluster.kill_all()?,
    }
    for i in 0..cluster.len() {
        cluster.start_node(i)?;
    }
    cluster.wait_all_ready(Duration::from_secs(60)).await?;
    eprintln!("cluster restarted ({stop:?})");

    for b in &before {
        for node in 0..cluster.len() {
            let c = cluster.client(node);
            c.wait_active(&b.stream, Duration::from_secs(30))
                .await
                .with_context(|| format!("{} via node {node} after restart", b.stream))?;
            let (shards, _) = retry(&RetryPolicy::default(), |_| c.list_shards(&b.stream)).await;
            let shards = shards?;
            ensure!(
                shards == b.shards,
                "{} shards changed across restart (node {node}):\n before {:?}\n after  {:?}",
                b.stream,
                b.shards,
                shards
            );
            let fr = final_read(&c, &b.stream).await?;
            ensure!(
                records_of(&fr) == records_of(&b.history.final_read),
                "{}: records via node {node} differ from before the restart",
                b.stream
            );
            let mut h = b.history.clone();
            h.final_read = fr;
            let report = check(&h);
            ensure!(
                report.ok(),
                "{} after restart via node {node}:\n{}",
                b.stream,
                report.summary(50)
            );
        }
        // Still writable, and the new record sorts after everything from before.
        let (ack, _) = retry(&RetryPolicy::default(), |_| {
            c0.put_record(&b.stream, "after-restart", b"after", None)
        })
        .await;
        let ack = ack.context("PutRecord after restart")?;
        let last = b
            .history
            .final_read
            .iter()
            .find(|s| s.shard_id == ack.shard_id)
            .and_then(|s| s.records.last());
        if let Some(last) = last {
            ensure!(
                spate_cluster_tests::history::cmp_seq(&last.seq, &ack.sequence_number).is_lt(),
                "{}: new record {} does not sort after {}",
                b.stream,
                ack.sequence_number,
                last.seq
            );
        }
    }
    Ok(())
}
