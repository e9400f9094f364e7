//! Bad input against a running 3-node cluster: every malformed or out-of-limit request gets
//! HTTP 400 with the right `__type`, through every node, and the cluster still serves a valid
//! put and get afterwards. The same checks over h2c (HTTP/2 prior knowledge) in `h2c_api`.

use std::time::Duration;

use spate_cluster_tests::bad_input;
use spate_cluster_tests::client::KinesisClient;
use spate_cluster_tests::harness::{Cluster, ClusterOpts};

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn bad_input_is_rejected_and_the_cluster_keeps_serving() {
    let cluster = Cluster::start(ClusterOpts::default())
        .await
        .unwrap_or_else(|e| panic!("cluster start: {e:#}"));
    let result = tokio::time::timeout(Duration::from_secs(90), scenario(&cluster)).await;
    match result {
        Ok(Ok(())) => {}
        Ok(Err(e)) => panic!("bad_input scenario failed: {e:#}"),
        Err(_) => panic!("bad_input scenario took over 90 s"),
    }
}

async fn scenario(cluster: &Cluster) -> anyhow::Result<()> {
    let stream = "bad-input";
    let c0 = cluster.client(0);
    c0.ensure_stream(stream, 1, Duration::from_secs(30)).await?;
    for node in 0..cluster.len() {
        let c = cluster.client(node);
        c.wait_active(stream, Duration::from_secs(30)).await?;
        bad_input::run(&c, stream)
            .await
            .map_err(|e| e.context(format!("via node {node}")))?;
    }

    Ok(())
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn h2c_api_rejects_bad_input_and_serves() {
    let cluster = Cluster::start(ClusterOpts::default())
        .await
        .unwrap_or_else(|e| panic!("cluster start: {e:#}"));
    let run = async {
        let h2 = KinesisClient::h2c(&cluster.api_url(1));
        h2.ensure_stream("bad-input-h2", 1, Duration::from_secs(30))
            .await?;
        bad_input::run(&h2, "bad-input-h2").await
    };
    match tokio::time::timeout(Duration::from_secs(90), run).await {
        Ok(Ok(())) => {}
        Ok(Err(e)) => panic!("h2c scenario failed: {e:#}"),
        Err(_) => panic!("h2c scenario took over 90 s"),
    }
}
