//! Enhanced fan-out through the SDK: consumer, subscription, records in order, ChildShards.

use super::*;

use anyhow::bail;
use aws_sdk_kinesis::types::{
    ConsumerStatus, StartingPosition, SubscribeToShardEvent, SubscribeToShardEventStream,
};

/// Waits for the next event of a subscription (at most `secs`).
async fn next_event(
    out: &mut aws_sdk_kinesis::operation::subscribe_to_shard::SubscribeToShardOutput,
    secs: u64,
) -> Result<Option<SubscribeToShardEvent>> {
    let ev = tokio::time::timeout(Duration::from_secs(secs), out.event_stream.recv())
        .await
        .map_err(|_| anyhow!("no event within {secs} s"))?
        .map_err(|e| anyhow!("event stream error: {e:?}"))?;
    match ev {
        None => Ok(None),
        Some(SubscribeToShardEventStream::SubscribeToShardEvent(e)) => Ok(Some(e)),
        Some(other) => bail!("unexpected event {other:?}"),
    }
}

/// Enhanced fan-out with the SDK: register a consumer, wait ACTIVE, subscribe (LATEST),
/// receive every record put during the subscription in order, split the shard and see
/// `ChildShards` in the parent's last event. `transfer_encoding` is what the probe must
/// have seen on the SubscribeToShard answer (`Some("chunked")`: HTTP/1.1; `None`: HTTP/2).
pub async fn efo_round(
    c: &Client,
    probe: &Probe,
    label: &str,
    transfer_encoding: Option<&str>,
) -> Result<()> {
    let name = unique(&format!("rs-efo-{label}"));
    c.create_stream()
        .stream_name(&name)
        .shard_count(1)
        .send()
        .await?;
    wait_active(c, &name).await?;
    let arn = c
        .describe_stream_summary()
        .stream_name(&name)
        .send()
        .await?
        .stream_description_summary()
        .context("summary")?
        .stream_arn()
        .to_string();
    let reg = c
        .register_stream_consumer()
        .stream_arn(&arn)
        .consumer_name("rs")
        .send()
        .await
        .context("register_stream_consumer")?;
    let consumer = reg.consumer().context("no consumer")?;
    ensure!(consumer.consumer_status() == &ConsumerStatus::Creating);
    let carn = consumer.consumer_arn().to_string();
    let suffix = carn
        .strip_prefix(&format!("{arn}/consumer/rs:"))
        .with_context(|| format!("consumer ARN {carn}"))?;
    ensure!(suffix.parse::<u64>().is_ok(), "consumer ARN {carn}");
    let deadline = Instant::now() + Duration::from_secs(30);
    loop {
        match c
            .describe_stream_consumer()
            .consumer_arn(&carn)
            .send()
            .await
        {
            Ok(d) => {
                let d = d.consumer_description().context("description")?;
                if d.consumer_status() == &ConsumerStatus::Active {
                    ensure!(d.stream_arn() == arn && d.consumer_name() == "rs");
                    break;
                }
            }
            // Not applied on this node yet.
            Err(e) => {
                let e = e.into_service_error();
                ensure!(e.is_resource_not_found_exception(), "{e:?}");
            }
        }
        ensure!(Instant::now() < deadline, "consumer not ACTIVE after 30 s");
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
    let listed = c.list_stream_consumers().stream_arn(&arn).send().await?;
    let names: Vec<&str> = listed
        .consumers()
        .iter()
        .map(|c| c.consumer_name())
        .collect();
    ensure!(names == ["rs"], "{names:?}");

    let parent = shard_id(0);
    let probe_before = probe.seen().len();
    let mut sub = c
        .subscribe_to_shard()
        .consumer_arn(&carn)
        .shard_id(&parent)
        .starting_position(
            StartingPosition::builder()
                .r#type(ShardIteratorType::Latest)
                .build()?,
        )
        .send()
        .await
        .context("subscribe_to_shard")?;
    let seen = probe.seen();
    ensure!(
        seen.len() == probe_before + 1,
        "the probe saw {} event-stream answers",
        seen.len() - probe_before
    );
    ensure!(
        seen[probe_before].as_deref() == transfer_encoding,
        "transfer-encoding of the SubscribeToShard answer: {:?}, want {transfer_encoding:?}",
        seen[probe_before]
    );

    let first = next_event(&mut sub, 15)
        .await?
        .context("stream ended at once")?;
    let n = 40;
    let writer = c.clone();
    let stream = name.clone();
    let producer = tokio::spawn(async move {
        let mut seqs = Vec::new();
        for i in 0..n {
            let r = writer
                .put_record()
                .stream_name(&stream)
                .partition_key(format!("k{i}"))
                .data(Blob::new(format!("efo-{i}").into_bytes()))
                .send()
                .await?;
            seqs.push(r.sequence_number().to_string());
        }
        Ok::<_, anyhow::Error>(seqs)
    });
    let mut got: Vec<Record> = first.records().to_vec();
    let mut events = vec![first];
    let deadline = Instant::now() + Duration::from_secs(60);
    while got.len() < n {
        ensure!(
            Instant::now() < deadline,
            "only {} of {n} records",
            got.len()
        );
        let e = next_event(&mut sub, 15)
            .await?
            .context("stream ended early")?;
        got.extend(e.records().iter().cloned());
        events.push(e);
    }
    let sent = producer.await??;
    ensure!(
        datas(&got)
            == (0..n)
                .map(|i| format!("efo-{i}").into_bytes())
                .collect::<Vec<_>>(),
        "{label}: records out of order or missing"
    );
    ensure!(got.iter().map(|r| r.sequence_number()).collect::<Vec<_>>() == sent);
    ensure!(got
        .iter()
        .all(|r| r.approximate_arrival_timestamp().is_some()));
    ensure!(events
        .iter()
        .all(|e| !e.continuation_sequence_number().is_empty()));
    ensure!(
        events.last().map(|e| e.continuation_sequence_number()) == sent.last().map(|s| s.as_str())
    );

    // Split the subscribed shard: the parent's last event names its children, then the
    // subscription ends.
    let mid = 1u128 << 127;
    c.split_shard()
        .stream_name(&name)
        .shard_to_split(&parent)
        .new_starting_hash_key(mid.to_string())
        .send()
        .await
        .context("split_shard")?;
    let deadline = Instant::now() + Duration::from_secs(60);
    let end = loop {
        ensure!(
            Instant::now() < deadline,
            "no ChildShards 60 s after the split"
        );
        let e = next_event(&mut sub, 15)
            .await?
            .context("the subscription ended without ChildShards")?;
        ensure!(e.records().is_empty(), "records after the split: {e:?}");
        if !e.child_shards().is_empty() {
            break e;
        }
    };
    let mut kids: Vec<(String, Vec<String>, u128, u128)> = end
        .child_shards()
        .iter()
        .map(|k| {
            let r = k.hash_key_range().context("child hash range")?;
            Ok((
                k.shard_id().to_string(),
                k.parent_shards().to_vec(),
                r.starting_hash_key().parse()?,
                r.ending_hash_key().parse()?,
            ))
        })
        .collect::<Result<_>>()?;
    kids.sort();
    ensure!(
        kids == [
            (shard_id(1), vec![parent.clone()], 0, mid - 1),
            (shard_id(2), vec![parent.clone()], mid, MAX_HASH),
        ],
        "{kids:?}"
    );
    ensure!(
        next_event(&mut sub, 15).await?.is_none(),
        "events after the ChildShards event"
    );

    wait_active(c, &name).await?;
    c.delete_stream()
        .stream_name(&name)
        .enforce_consumer_deletion(true)
        .send()
        .await?;
    Ok(())
}
