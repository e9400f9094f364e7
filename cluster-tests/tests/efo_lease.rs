//! The SubscribeToShard lease is cluster-wide: 3 real nodes, a 1-shard stream, one registered
//! consumer. A subscription through one follower's API port holds the lease; a second one
//! within 5 s through the other follower (and one through the leader) gets
//! `ResourceInUseException`; after 5 s a subscription through the other follower takes over,
//! receives new records, and the first subscription ends without delivering them.

use std::time::{Duration, Instant};

use anyhow::{bail, ensure, Context, Result};
use serde_json::json;
use spate_cluster_tests::client::KinesisClient;
use spate_cluster_tests::eventstream::{event_records, SubEvent, Subscription};
use spate_cluster_tests::harness::{Cluster, ClusterOpts};

const STREAM: &str = "efo-lease";
const SHARD0: &str = "shardId-000000000000";
const OPEN_TIMEOUT: Duration = Duration::from_secs(20);

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn second_subscription_through_another_node_is_refused_then_takes_over() {
    let mut cluster = Cluster::start(ClusterOpts::default())
        .await
        .unwrap_or_else(|e| panic!("cluster start: {e:#}"));
    match tokio::time::timeout(Duration::from_secs(120), scenario(&mut cluster)).await {
        Ok(Ok(())) => {}
        Ok(Err(e)) => {
            cluster.dump_logs(40);
            panic!("lease scenario failed: {e:#}")
        }
        Err(_) => {
            cluster.dump_logs(40);
            panic!("lease scenario took over 120 s")
        }
    }
}

/// Registers the consumer and waits until it is ACTIVE; returns its ARN.
async fn active_consumer(c: &KinesisClient, stream_arn: &str) -> Result<String> {
    let out = c
        .call(
            "RegisterStreamConsumer",
            &json!({"StreamARN": stream_arn, "ConsumerName": "lease-test"}),
        )
        .await?;
    let arn = out["Consumer"]["ConsumerARN"]
        .as_str()
        .context("RegisterStreamConsumer: no ConsumerARN")?
        .to_string();
    let deadline = Instant::now() + Duration::from_secs(30);
    loop {
        let d = c
            .call("DescribeStreamConsumer", &json!({"ConsumerARN": arn}))
            .await?;
        if d["ConsumerDescription"]["ConsumerStatus"] == "ACTIVE" {
            return Ok(arn);
        }
        ensure!(Instant::now() < deadline, "consumer not ACTIVE: {d}");
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
}

async fn subscribe(endpoint: &str, consumer: &str) -> Result<Result<Subscription, String>> {
    let start = json!({"Type": "LATEST"});
    Ok(
        Subscription::open(endpoint, consumer, SHARD0, start, OPEN_TIMEOUT)
            .await?
            .map_err(|e| e.kind),
    )
}

/// Reads `sub` until a record with data `want` arrives.
async fn wait_for_record(sub: &mut Subscription, want: &[u8]) -> Result<()> {
    let deadline = Instant::now() + Duration::from_secs(20);
    loop {
        let left = deadline.saturating_duration_since(Instant::now());
        match sub.next(left).await? {
            SubEvent::Event(ev) => {
                if event_records(&ev)?.iter().any(|(_, d)| d == want) {
                    return Ok(());
                }
            }
            other => bail!("subscription ended before {want:?} arrived: {other:?}"),
        }
    }
}

async fn scenario(cluster: &mut Cluster) -> Result<()> {
    let c0 = cluster.client(0);
    c0.ensure_stream(STREAM, 1, Duration::from_secs(60)).await?;
    let stream_arn = c0.describe_stream_summary(STREAM).await?.stream_arn;
    let consumer = active_consumer(&c0, &stream_arn).await?;
    let leader = cluster
        .wait_leader(STREAM, SHARD0, Duration::from_secs(30))
        .await?;
    // Both subscriptions go through followers, so the lease can only be checked remotely.
    let followers: Vec<usize> = (0..cluster.len()).filter(|&i| i != leader).collect();
    let (a, b) = (followers[0], followers[1]);
    let (url_a, url_b) = (cluster.api_url(a), cluster.api_url(b));

    let mut first = match subscribe(&url_a, &consumer).await? {
        Ok(s) => s,
        Err(kind) => bail!("first subscription (node {a}) refused: {kind}"),
    };
    let opened = Instant::now();
    for (node, url) in [(b, &url_b), (leader, &cluster.api_url(leader))] {
        match subscribe(url, &consumer).await? {
            Err(kind) => ensure!(
                kind == "ResourceInUseException",
                "second subscription through node {node}: {kind}"
            ),
            Ok(_) => bail!(
                "a second subscription through node {node}, {:?} after the first through node \
                 {a}, was accepted",
                opened.elapsed()
            ),
        }
    }
    ensure!(
        opened.elapsed() < Duration::from_secs(5),
        "the refusals took {:?}: the check is void",
        opened.elapsed()
    );

    c0.put_record(STREAM, "k", b"before", None).await?;
    wait_for_record(&mut first, b"before").await?;

    tokio::time::sleep_until((opened + Duration::from_millis(5_300)).into()).await;
    let mut second = match subscribe(&url_b, &consumer).await? {
        Ok(s) => s,
        Err(kind) => bail!(
            "takeover through node {b} {:?} after the first: {kind}",
            opened.elapsed()
        ),
    };
    let took_over = Instant::now();
    c0.put_record(STREAM, "k", b"after", None).await?;
    wait_for_record(&mut second, b"after").await?;

    // The first subscription ends (its node hears it from the shard leader) and never
    // delivers what was put after the takeover.
    let deadline = took_over + Duration::from_secs(15);
    loop {
        let left = deadline.saturating_duration_since(Instant::now());
        let ev = first
            .next(left)
            .await
            .context("the first subscription did not end after the takeover")?;
        match ev {
            SubEvent::End => break,
            SubEvent::Event(ev) => {
                let recs = event_records(&ev)?;
                ensure!(
                    !recs.iter().any(|(_, d)| d == b"after"),
                    "the taken-over subscription delivered a record put after the takeover"
                );
            }
            SubEvent::Exception(t, m) => bail!("first subscription ended with {t}: {m}"),
        }
    }
    println!(
        "first subscription ended {:?} after the takeover",
        took_over.elapsed()
    );
    // The new holder keeps the lease: another subscription right away is refused.
    match subscribe(&cluster.api_url(a), &consumer).await? {
        Err(kind) => ensure!(
            kind == "ResourceInUseException",
            "third subscription: {kind}"
        ),
        Ok(_) => bail!("a subscription right after the takeover was accepted"),
    }
    drop(second);
    Ok(())
}
