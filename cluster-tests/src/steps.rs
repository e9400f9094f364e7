//! Steps shared by the membership scenarios (decommission, disk loss, rebalance, drain):
//! reading the admin API as JSON, waiting for a workload's acknowledgements, proving that
//! every open shard of a stream still takes writes, identical final reads through every node,
//! and replicas that agree.

use std::time::{Duration, Instant};

use anyhow::{bail, ensure, Context, Result};

use crate::client::KinesisClient;
use crate::harness::{Cluster, ShardReplica};
use crate::history::ShardRead;
use crate::workload::{final_read, Workload};

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

/// Final reads of `stream` (every shard from TRIM_HORIZON) through each of `clients`; fails
/// unless all are identical. Returns the first.
pub async fn identical_final_reads(
    clients: &[KinesisClient],
    stream: &str,
) -> Result<Vec<ShardRead>> {
    let mut reads = Vec::new();
    for c in clients {
        reads.push(final_read(c, stream).await?);
    }
    for (i, fr) in reads.iter().enumerate().skip(1) {
        let a: Vec<_> = reads[0].iter().map(|s| &s.records).collect();
        let b: Vec<_> = fr.iter().map(|s| &s.records).collect();
        ensure!(a == b, "final read via client {i} differs from client 0's");
    }
    reads
        .into_iter()
        .next()
        .context("no client to read through")
}

/// Whether each of `shard_ids` has exactly 3 replicas among `replicas` (every node's
/// `/v1/shards`), each with the voter set `want` and the same applied index and next ordinal.
pub fn replicas_agree(replicas: &[&[ShardReplica]], shard_ids: &[String], want: &[u64]) -> bool {
    let mut want = want.to_vec();
    want.sort_unstable();
    shard_ids.iter().all(|s| {
        let reps: Vec<&ShardReplica> = replicas
            .iter()
            .filter_map(|r| r.iter().find(|r| &r.shard_id == s))
            .collect();
        reps.len() == 3
            && reps.iter().all(|r| {
                let mut m = r.members.clone();
                m.sort_unstable();
                m == want
                    && r.last_applied == reps[0].last_applied
                    && r.next_ordinal == reps[0].next_ordinal
            })
    })
}

/// Creates `stream` with `shards` shards through node `via` (if missing), waits until it is
/// ACTIVE, checks it has exactly `shards` shards and, when `leaders` is set, waits until each
/// has a leader. Returns the shard ids.
pub async fn stream_with_shards(
    cluster: &mut Cluster,
    via: usize,
    stream: &str,
    shards: usize,
    leaders: Option<Duration>,
) -> Result<Vec<String>> {
    let c = cluster.client(via);
    c.ensure_stream(stream, shards as u32, Duration::from_secs(30))
        .await?;
    let shard_ids: Vec<String> = c
        .list_shards(stream)
        .await?
        .into_iter()
        .map(|s| s.shard_id)
        .collect();
    ensure!(shard_ids.len() == shards, "shards: {shard_ids:?}");
    if let Some(timeout) = leaders {
        for s in &shard_ids {
            cluster.wait_leader(stream, s, timeout).await?;
        }
    }
    Ok(shard_ids)
}
