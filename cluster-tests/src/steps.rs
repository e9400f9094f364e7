//! Steps shared by the membership scenarios (decommission, disk loss, rebalance, drain):
//! reading the admin API as JSON, waiting for a workload's acknowledgements, and proving
//! that every open shard of a stream still takes writes.

use std::time::{Duration, Instant};

use anyhow::{bail, ensure, Context, Result};

use crate::client::KinesisClient;
use crate::workload::Workload;

/// `GET url`: the status code and the body as JSON (a non-JSON body becomes a JSON string).
pub async fn get_json(http: &reqwest::Client, url: &str) -> Result<(u16, serde_json::Value)> {
    let resp = http
        .get(url)
        .send()
        .await
        .with_context(|| url.to_string())?;
    let code = resp.status().as_u16();
    let text = resp.text().await?;
    let body = serde_json::from_str(&text).unwrap_or(serde_json::Value::String(text));
    Ok((code, body))
}

/// Waits until the workload's writers have `n` acknowledgements in all.
pub async fn wait_acks(wl: &Workload, n: usize, timeout: Duration) -> Result<()> {
    let t0 = Instant::now();
    while wl.acks_per_shard().values().sum::<usize>() < n {
        ensure!(
            t0.elapsed() < timeout,
            "fewer than {n} acknowledgements after {timeout:?}"
        );
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    Ok(())
}

/// Puts one record (`ExplicitHashKey` = the shard's start) into every open shard of `stream`
/// through `client`, retrying each for up to 30 s; fails if a shard stays unwritable or a
/// put lands elsewhere. Returns the number of records written (one per open shard).
pub async fn every_shard_writable(client: &KinesisClient, stream: &str) -> Result<usize> {
    let listed = client.list_shards(stream).await?;
    let open: Vec<_> = listed
        .iter()
        .filter(|s| s.sequence_number_range.ending_sequence_number.is_none())
        .collect();
    for s in &open {
        let key = s.hash_key_range.starting_hash_key.clone();
        let t = Instant::now();
        loop {
            match client
                .put_record(stream, "after", b"after-kill", Some(&key))
                .await
            {
                Ok(out) if out.shard_id == s.shard_id => break,
                Ok(out) => bail!("put for {} landed on {}", s.shard_id, out.shard_id),
                Err(e) => ensure!(
                    t.elapsed() < Duration::from_secs(30),
                    "{} not writable: {e:?}",
                    s.shard_id
                ),
            }
            tokio::time::sleep(Duration::from_millis(200)).await;
        }
    }
    Ok(open.len())
}
