//! Coalesces concurrent puts to one shard into one `Append` entry on the leader (a
//! micro-batch): the batch closes when the queue is momentarily empty or the batch is full.
//! A few batches may be in flight at once so that replication of one overlaps the next.
//! The queue is bounded; a full queue answers with a throttling reply, never grows.

use openraft::errors::{ClientWriteError, RaftError};
use std::sync::Arc;
use tokio::sync::{mpsc, oneshot, Semaphore};

use super::replica::ShardReply;
use super::{RecordIn, ShardCommand, ShardRaft, ShardResponse};

/// Most records in one `Append` entry.
pub const MAX_BATCH_RECORDS: usize = 5_000;
/// Most bytes in one `Append` entry.
pub const MAX_BATCH_BYTES: usize = 8 << 20;
/// Puts waiting for a batch, per shard.
pub const QUEUE_DEPTH: usize = 2_048;
/// Batches proposed but not yet committed, per shard.
pub const IN_FLIGHT: usize = 8;

/// One put waiting to be batched.
pub struct PutJob {
    pub records: Vec<RecordIn>,
    pub reply: oneshot::Sender<ShardReply>,
}

/// Cluster time, epoch ms ([`crate::cluster::clock`]): arrival times, seal times and
/// everything else other nodes judge use it, never one node's raw wall clock.
pub fn now_ms() -> u64 {
    crate::cluster::clock::now_ms()
}

/// Starts the batcher of one shard group; returns its queue.
pub fn spawn(raft: ShardRaft) -> mpsc::Sender<PutJob> {
    let (tx, rx) = mpsc::channel(QUEUE_DEPTH);
    tokio::spawn(run(raft, rx));
    tx
}

async fn run(raft: ShardRaft, mut rx: mpsc::Receiver<PutJob>) {
    let slots = Arc::new(Semaphore::new(IN_FLIGHT));
    while let Some(first) = rx.recv().await {
        let mut records_n = first.records.len();
        let mut bytes: usize = first.records.iter().map(RecordIn::billed_bytes).sum();
        let mut jobs = vec![first];
        while records_n < MAX_BATCH_RECORDS && bytes < MAX_BATCH_BYTES {
            match rx.try_recv() {
                Ok(job) => {
                    records_n += job.records.len();
                    bytes += job
                        .records
                        .iter()
                        .map(RecordIn::billed_bytes)
                        .sum::<usize>();
                    jobs.push(job);
                }
                Err(_) => break,
            }
        }
        let Ok(permit) = slots.clone().acquire_owned().await else {
            break;
        };
        let raft = raft.clone();
        tokio::spawn(async move {
            propose(raft, jobs, records_n).await;
            drop(permit);
        });
    }
}

async fn propose(raft: ShardRaft, jobs: Vec<PutJob>, records_n: usize) {
    let mut counts = Vec::with_capacity(jobs.len());
    let mut replies = Vec::with_capacity(jobs.len());
    let mut records = Vec::with_capacity(records_n);
    for job in jobs {
        counts.push(job.records.len() as u64);
        replies.push(job.reply);
        records.extend(job.records);
    }
    let cmd = ShardCommand::Append {
        arrival_ms: now_ms(),
        records: records.into(),
    };
    let outcome = match raft.client_write(cmd).await {
        Ok(resp) => match resp.data {
            ShardResponse::Appended {
                first_ordinal,
                arrival_ms,
            } => Ok((first_ordinal, arrival_ms)),
            ShardResponse::Sealed {
                end_ordinal,
                sealed_ms,
            } => Err(ShardReply::Sealed {
                end_ordinal,
                sealed_ms,
            }),
            other => Err(ShardReply::OutcomeUnknown(format!(
                "unexpected apply result {other:?}"
            ))),
        },
        Err(RaftError::APIError(ClientWriteError::ForwardToLeader(f))) => {
            Err(ShardReply::NotLeader {
                leader: f.leader_id,
            })
        }
        // Proposed, then leadership was lost or the group stopped: the entry may still
        // commit, so the caller must treat the outcome as unknown.
        Err(e) => Err(ShardReply::OutcomeUnknown(e.to_string())),
    };
    match outcome {
        Ok((mut ordinal, arrival_ms)) => {
            for (reply, n) in replies.into_iter().zip(counts) {
                let _ = reply.send(ShardReply::Appended {
                    first_ordinal: ordinal,
                    arrival_ms,
                });
                ordinal += n;
            }
        }
        Err(err) => {
            for reply in replies {
                let _ = reply.send(err.clone());
            }
        }
    }
}
