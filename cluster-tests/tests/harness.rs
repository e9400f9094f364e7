//! Self-test of the process harness against the real binary: pause/resume, kill, restart on the
//! same ports and data dir, `/v1/shards` and leader lookup.

use std::time::Duration;

use spate_cluster_tests::harness::{Cluster, ClusterOpts};

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn pause_resume_kill_restart() {
    let mut cluster = Cluster::start(ClusterOpts::default())
        .await
        .unwrap_or_else(|e| panic!("cluster start: {e:#}"));
    assert_eq!(cluster.len(), 3);
    let c = cluster.client(1);
    c.ensure_stream("harness", 1, Duration::from_secs(30))
        .await
        .expect("stream");
    let leader = cluster
        .wait_leader("harness", "shardId-000000000000", Duration::from_secs(20))
        .await
        .expect("leader");
    for node in 0..3 {
        let shards = cluster.shards(node).await.expect("/v1/shards");
        let mine = shards
            .iter()
            .find(|s| s.stream == "harness")
            .unwrap_or_else(|| panic!("node {node} does not host the shard: {shards:?}"));
        assert_eq!(mine.members.len(), 3, "{mine:?}");
    }
    eprintln!("leader of harness/shardId-000000000000: node {leader}");

    cluster.pause(2).expect("pause");
    assert!(
        !cluster.is_ready(2).await,
        "a stopped process answered /ready"
    );
    cluster.resume(2).expect("resume");
    cluster
        .wait_ready(2, Duration::from_secs(30))
        .await
        .expect("ready after SIGCONT");

    cluster.kill(0).expect("kill");
    assert!(!cluster.is_running(0));
    assert!(!cluster.is_ready(0).await);
    cluster.restart(0).await.expect("restart on the same ports");
    assert!(cluster.is_running(0));
    cluster
        .client(0)
        .wait_active("harness", Duration::from_secs(30))
        .await
        .expect("stream survives a node restart");
}
