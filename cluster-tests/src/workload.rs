//! Workload for the scenario tests: producers that log every attempt and acknowledgement,
//! tailing readers that log every record they see, and the final full read of a stream.
//!
//! Producer `w` owns the partition keys `w{w}-k{j}`; each key has at most one record in flight,
//! and a key's counter advances only once its record is acknowledged (or given up after too many
//! definite failures), so per-key order is well defined. A record's data is
//! `spate1|<payload id>|<partition key>|<counter>|<padding>`. Producers mix `PutRecords` batches
//! (one record per key per batch) with `PutRecord` calls and rotate to the next endpoint on
//! transport errors.

use std::collections::HashMap;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use anyhow::{bail, Context, Result};
use tokio::task::JoinHandle;

use crate::client::{retry, IteratorType, KinesisClient, PutEntry, Record, RetryPolicy};
use crate::history::{History, Observation, Outcome, ProducerAttempt, ReadRecord, ShardRead};

/// Collects producer attempts and reader observations, timestamped from one epoch.
pub struct Recorder {
    start: Instant,
    attempts: Mutex<Vec<ProducerAttempt>>,
    observations: Mutex<Vec<Observation>>,
}

impl Default for Recorder {
    fn default() -> Self {
        Recorder {
            start: Instant::now(),
            attempts: Mutex::new(Vec::new()),
            observations: Mutex::new(Vec::new()),
        }
    }
}

impl Recorder {
    /// Milliseconds since the recorder was created.
    pub fn now_ms(&self) -> u64 {
        self.start.elapsed().as_millis() as u64
    }

    /// Log one producer attempt.
    pub fn attempt(&self, a: ProducerAttempt) {
        self.attempts.lock().unwrap().push(a);
    }

    /// Log one record seen by a reader.
    pub fn observe(&self, reader: &str, record: ReadRecord) {
        self.observations.lock().unwrap().push(Observation {
            reader: reader.to_string(),
            record,
        });
    }

    /// A copy of every attempt so far.
    pub fn attempts(&self) -> Vec<ProducerAttempt> {
        self.attempts.lock().unwrap().clone()
    }

    /// The full history with the given final read.
    pub fn history(&self, final_read: Vec<ShardRead>) -> History {
        History {
            attempts: self.attempts(),
            observations: self.observations.lock().unwrap().clone(),
            final_read,
        }
    }
}

/// The data of a workload record (`pad` bytes of padding).
pub fn encode_payload(payload_id: &str, key: &str, counter: u64, pad: usize) -> Vec<u8> {
    let mut s = format!("spate1|{payload_id}|{key}|{counter}|");
    s.extend(std::iter::repeat_n('.', pad));
    s.into_bytes()
}

/// Decode a record read from `shard_id`; undecodable data gives `payload_id: None`.
pub fn decode(shard_id: &str, r: &Record) -> ReadRecord {
    let text = String::from_utf8_lossy(&r.data);
    let mut parts = text.splitn(5, '|');
    let (tag, id, key, counter) = (parts.next(), parts.next(), parts.next(), parts.next());
    let parsed = match (tag, id, key, counter.and_then(|c| c.parse::<u64>().ok())) {
        (Some("spate1"), Some(id), Some(key), Some(c)) if key == r.partition_key => {
            Some((id.to_string(), c))
        }
        _ => None,
    };
    ReadRecord {
        shard_id: shard_id.to_string(),
        seq: r.sequence_number.clone(),
        partition_key: r.partition_key.clone(),
        key_counter: parsed.as_ref().map(|p| p.1).unwrap_or(0),
        payload_id: parsed.map(|p| p.0),
    }
}

/// One producer's configuration.
#[derive(Clone)]
pub struct WriterOpts {
    pub stream: String,
    pub writer: usize,
    pub keys: usize,
    /// Payloads this writer creates in total.
    pub records: usize,
    pub batch_max: usize,
    /// Every `single_every`-th round uses `PutRecord` instead of `PutRecords`.
    pub single_every: usize,
    pub pad: usize,
    /// Definite failures after which a record is given up.
    pub max_attempts: u32,
    pub endpoints: Vec<KinesisClient>,
}

/// What one producer did.
#[derive(Debug, Clone, Default)]
pub struct WriterStats {
    pub created: usize,
    pub acked: usize,
    pub given_up: usize,
    pub attempts: usize,
}

struct Pending {
    id: String,
    counter: u64,
    attempts: u32,
}

struct Key {
    name: String,
    counter: u64,
    pending: Option<Pending>,
}

fn outcome_of(e: &crate::client::KinesisError) -> Outcome {
    if e.outcome_unknown() {
        Outcome::Unknown(e.to_string())
    } else {
        Outcome::Failed(e.to_string())
    }
}

/// Run one producer to completion (or until `stop`).
pub async fn run_writer(o: WriterOpts, rec: Arc<Recorder>, stop: Arc<AtomicBool>) -> WriterStats {
    let mut st = WriterStats::default();
    let mut keys: Vec<Key> = (0..o.keys)
        .map(|j| Key {
            name: format!("w{}-k{j}", o.writer),
            counter: 0,
            pending: None,
        })
        .collect();
    let mut ep = o.writer % o.endpoints.len();
    let mut round = 0usize;
    let mut start_key = 0usize;
    while !stop.load(Ordering::Relaxed) {
        round += 1;
        // Give every key without a record in flight a new record, while the budget lasts.
        for k in keys.iter_mut() {
            if k.pending.is_none() && st.created < o.records {
                st.created += 1;
                k.pending = Some(Pending {
                    id: format!("w{}-{}", o.writer, st.created),
                    counter: k.counter,
                    attempts: 0,
                });
            }
        }
        let ready: Vec<usize> = (0..keys.len())
            .map(|i| (start_key + i) % keys.len())
            .filter(|&i| keys[i].pending.is_some())
            .take(o.batch_max)
            .collect();
        start_key = (start_key + o.batch_max) % keys.len().max(1);
        if ready.is_empty() {
            break;
        }
        let single = round.checked_rem(o.single_every) == Some(0);
        let mut had_error = false;
        let client = o.endpoints[ep].clone();
        if single {
            // PutRecord for a few keys, each through the recording retry helper.
            for &i in ready.iter().take(4) {
                let k = &mut keys[i];
                let p = k.pending.as_mut().expect("pending");
                let data = encode_payload(&p.id, &k.name, p.counter, o.pad);
                let policy = RetryPolicy {
                    max_attempts: 5,
                    deadline: Duration::from_secs(5),
                    ..RetryPolicy::default()
                };
                let started = rec.now_ms();
                let eps = &o.endpoints;
                let (res, tries) = retry(&policy, |n| {
                    let c = eps[(ep + n as usize - 1) % eps.len()].clone();
                    let (s, key, d) = (o.stream.clone(), k.name.clone(), data.clone());
                    async move { c.put_record(&s, &key, &d, None).await }
                })
                .await;
                for t in &tries {
                    p.attempts += 1;
                    st.attempts += 1;
                    let outcome = match (&t.error, &res) {
                        (None, Ok(ack)) => Outcome::Ok {
                            shard_id: ack.shard_id.clone(),
                            seq: ack.sequence_number.clone(),
                        },
                        (Some(e), _) if t.outcome_unknown => Outcome::Unknown(e.clone()),
                        (Some(e), _) => Outcome::Failed(e.clone()),
                        (None, Err(e)) => Outcome::Unknown(e.to_string()),
                    };
                    rec.attempt(ProducerAttempt {
                        payload_id: p.id.clone(),
                        partition_key: k.name.clone(),
                        key_counter: p.counter,
                        attempt: p.attempts,
                        started_ms: started + t.started_after.as_millis() as u64,
                        at_ms: started + (t.started_after + t.took).as_millis() as u64,
                        outcome,
                    });
                }
                if res.is_ok() {
                    ep = (ep + tries.len() - 1) % o.endpoints.len();
                    st.acked += 1;
                    k.pending = None;
                    k.counter += 1;
                } else {
                    had_error = true;
                    ep = (ep + 1) % o.endpoints.len();
                    if p.attempts >= o.max_attempts {
                        st.given_up += 1;
                        k.pending = None;
                        k.counter += 1;
                    }
                }
            }
        } else {
            let entries: Vec<PutEntry> = ready
                .iter()
                .map(|&i| {
                    let k = &keys[i];
                    let p = k.pending.as_ref().expect("pending");
                    PutEntry {
                        partition_key: k.name.clone(),
                        data: encode_payload(&p.id, &k.name, p.counter, o.pad),
                        explicit_hash_key: None,
                    }
                })
                .collect();
            let started = rec.now_ms();
            let res = client.put_records(&o.stream, &entries).await;
            let at = rec.now_ms();
            for (j, &i) in ready.iter().enumerate() {
                let k = &mut keys[i];
                let p = k.pending.as_mut().expect("pending");
                p.attempts += 1;
                st.attempts += 1;
                let outcome = match &res {
                    Ok(out) => {
                        let r = &out.records[j];
                        match (&r.shard_id, &r.sequence_number, &r.error_code) {
                            (Some(s), Some(q), None) => Outcome::Ok {
                                shard_id: s.clone(),
                                seq: q.clone(),
                            },
                            (_, _, Some(code))
                                if code == "ProvisionedThroughputExceededException" =>
                            {
                                Outcome::Failed(code.clone())
                            }
                            _ => Outcome::Unknown(format!(
                                "{:?}: {:?}",
                                r.error_code, r.error_message
                            )),
                        }
                    }
                    Err(e) => outcome_of(e),
                };
                let acked = matches!(outcome, Outcome::Ok { .. });
                rec.attempt(ProducerAttempt {
                    payload_id: p.id.clone(),
                    partition_key: k.name.clone(),
                    key_counter: p.counter,
                    attempt: p.attempts,
                    started_ms: started,
                    at_ms: at,
                    outcome,
                });
                if acked {
                    st.acked += 1;
                    k.pending = None;
                    k.counter += 1;
                } else {
                    had_error = true;
                    if p.attempts >= o.max_attempts {
                        st.given_up += 1;
                        k.pending = None;
                        k.counter += 1;
                    }
                }
            }
            if let Err(e) = &res {
                if e.status.is_none() || e.status.is_some_and(|s| s >= 500) {
                    ep = (ep + 1) % o.endpoints.len();
                }
            }
        }
        if had_error {
            let ms = 50 + rand::random::<u64>() % 150;
            tokio::time::sleep(Duration::from_millis(ms)).await;
        }
    }
    st
}

/// Tail one shard from TRIM_HORIZON until `stop`, logging every record as `reader`.
pub async fn run_tailer(
    reader: String,
    stream: String,
    shard_id: String,
    endpoints: Vec<KinesisClient>,
    rec: Arc<Recorder>,
    stop: Arc<AtomicBool>,
) -> usize {
    let mut ep = 0usize;
    let mut last: Option<String> = None;
    let mut it: Option<String> = None;
    let mut seen = 0usize;
    while !stop.load(Ordering::Relaxed) {
        let c = &endpoints[ep % endpoints.len()];
        if it.is_none() {
            let t = match &last {
                None => IteratorType::TrimHorizon,
                Some(s) => IteratorType::AfterSequenceNumber(s.clone()),
            };
            match c.get_shard_iterator(&stream, &shard_id, &t).await {
                Ok(i) => it = Some(i),
                Err(_) => {
                    ep += 1;
                    tokio::time::sleep(Duration::from_millis(200)).await;
                    continue;
                }
            }
        }
        match c
            .get_records(it.as_deref().expect("iterator"), Some(1000))
            .await
        {
            Ok(out) => {
                for r in &out.records {
                    rec.observe(&reader, decode(&shard_id, r));
                    last = Some(r.sequence_number.clone());
                    seen += 1;
                }
                it = out.next_shard_iterator;
                if it.is_none() {
                    break; // closed shard fully read
                }
            }
            Err(_) => {
                it = None;
                ep += 1;
            }
        }
        tokio::time::sleep(Duration::from_millis(250)).await;
    }
    seen
}

fn shard_index(id: &str) -> u64 {
    id.rsplit('-')
        .next()
        .and_then(|n| n.parse().ok())
        .unwrap_or(u64::MAX)
}

/// Read every shard of `stream` from TRIM_HORIZON to its current end, parents before children.
pub async fn final_read(c: &KinesisClient, stream: &str) -> Result<Vec<ShardRead>> {
    let policy = RetryPolicy::default();
    let (shards, _) = retry(&policy, |_| c.list_shards(stream)).await;
    let mut shards = shards.context("ListShards for the final read")?;
    shards.sort_by_key(|s| shard_index(&s.shard_id));
    let mut out = Vec::with_capacity(shards.len());
    // Generous: a long chaos run reads about a million records through each node.
    let deadline = Instant::now() + Duration::from_secs(600);
    for s in shards {
        let mut read = ShardRead {
            shard_id: s.shard_id.clone(),
            parents: s
                .parent_shard_id
                .iter()
                .chain(s.adjacent_parent_shard_id.iter())
                .cloned()
                .collect(),
            records: Vec::new(),
            hash_range: Some((
                s.hash_key_range.starting_hash_key.clone(),
                s.hash_key_range.ending_hash_key.clone(),
            )),
            closed: s.sequence_number_range.ending_sequence_number.is_some(),
        };
        let mut it: Option<String> = None;
        loop {
            if Instant::now() > deadline {
                bail!(
                    "final read of {stream} via {} took over 600 s",
                    c.endpoint()
                );
            }
            let cur = match it.take() {
                Some(i) => i,
                None => {
                    let t = match read.records.last() {
                        None => IteratorType::TrimHorizon,
                        Some(r) => IteratorType::AfterSequenceNumber(r.seq.clone()),
                    };
                    let (i, _) =
                        retry(&policy, |_| c.get_shard_iterator(stream, &s.shard_id, &t)).await;
                    i.with_context(|| format!("GetShardIterator {}", s.shard_id))?
                }
            };
            let (res, _) = retry(&policy, |_| c.get_records(&cur, Some(10_000))).await;
            let page = match res {
                Ok(p) => p,
                Err(e) if e.kind == "ExpiredIteratorException" => continue,
                Err(e) => return Err(e).context(format!("GetRecords {}", s.shard_id)),
            };
            let empty = page.records.is_empty();
            read.records
                .extend(page.records.iter().map(|r| decode(&s.shard_id, r)));
            match page.next_shard_iterator {
                None => break,
                Some(_) if empty && page.millis_behind_latest.unwrap_or(0) == 0 => break,
                Some(n) => it = Some(n),
            }
        }
        out.push(read);
    }
    Ok(out)
}

/// Options for [`Workload::start`].
#[derive(Clone)]
pub struct WorkloadOpts {
    pub stream: String,
    pub writers: usize,
    pub records_per_writer: usize,
    pub keys_per_writer: usize,
    pub batch_max: usize,
    pub pad: usize,
}

/// Writers and tailing readers running in the background.
pub struct Workload {
    pub recorder: Arc<Recorder>,
    stop_writers: Arc<AtomicBool>,
    writers: Vec<JoinHandle<WriterStats>>,
    tailers: Tailers,
}

/// A cloneable handle that starts tailing readers (one per shard, at most once per shard):
/// the resharder starts one on every new child shard.
#[derive(Clone)]
pub struct Tailers {
    stream: String,
    endpoints: Vec<KinesisClient>,
    recorder: Arc<Recorder>,
    stop: Arc<AtomicBool>,
    running: Arc<Mutex<Vec<Tailer>>>,
}

/// A running tailing reader: its shard and its task (returns how many records it saw).
type Tailer = (String, JoinHandle<usize>);

impl Tailers {
    /// Start tailing `shard_id` from TRIM_HORIZON unless a reader already tails it (or has).
    pub fn tail(&self, shard_id: &str) {
        let mut running = self.running.lock().unwrap();
        if self.stop.load(Ordering::Relaxed) || running.iter().any(|(s, _)| s == shard_id) {
            return;
        }
        let mut eps = self.endpoints.clone();
        let n = eps.len().max(1);
        eps.rotate_left(running.len() % n);
        let h = tokio::spawn(run_tailer(
            format!("tail-{shard_id}"),
            self.stream.clone(),
            shard_id.to_string(),
            eps,
            self.recorder.clone(),
            self.stop.clone(),
        ));
        running.push((shard_id.to_string(), h));
    }

    /// How many shards have (had) a reader.
    pub fn len(&self) -> usize {
        self.running.lock().unwrap().len()
    }

    /// True before any reader was started.
    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }
}

impl Workload {
    /// Start `opts.writers` producers and one tailing reader per shard in `shard_ids`.
    pub fn start(opts: &WorkloadOpts, endpoints: &[KinesisClient], shard_ids: &[String]) -> Self {
        let recorder = Arc::new(Recorder::default());
        let stop_writers = Arc::new(AtomicBool::new(false));
        let writers = (0..opts.writers)
            .map(|w| {
                let o = WriterOpts {
                    stream: opts.stream.clone(),
                    writer: w,
                    keys: opts.keys_per_writer,
                    records: opts.records_per_writer,
                    batch_max: opts.batch_max,
                    single_every: 4,
                    pad: opts.pad,
                    max_attempts: 200,
                    endpoints: endpoints.to_vec(),
                };
                tokio::spawn(run_writer(o, recorder.clone(), stop_writers.clone()))
            })
            .collect();
        let tailers = Tailers {
            stream: opts.stream.clone(),
            endpoints: endpoints.to_vec(),
            recorder: recorder.clone(),
            stop: Arc::new(AtomicBool::new(false)),
            running: Arc::new(Mutex::new(Vec::new())),
        };
        for s in shard_ids {
            tailers.tail(s);
        }
        Workload {
            recorder,
            stop_writers,
            writers,
            tailers,
        }
    }

    /// The handle that starts readers on new shards.
    pub fn tailers(&self) -> Tailers {
        self.tailers.clone()
    }

    /// Total acknowledged records so far, per shard.
    pub fn acks_per_shard(&self) -> HashMap<String, usize> {
        let mut m = HashMap::new();
        for a in self.recorder.attempts.lock().unwrap().iter() {
            if let Outcome::Ok { shard_id, .. } = &a.outcome {
                *m.entry(shard_id.clone()).or_default() += 1;
            }
        }
        m
    }

    /// Ask writers to stop after their current round.
    pub fn stop_writers(&self) {
        self.stop_writers.store(true, Ordering::Relaxed);
    }

    /// Wait for every writer (bounded by `timeout`, then they are told to stop).
    pub async fn join_writers(&mut self, timeout: Duration) -> Result<Vec<WriterStats>> {
        let deadline = tokio::time::Instant::now() + timeout;
        let mut stats = Vec::new();
        for h in self.writers.drain(..) {
            let mut h = h;
            let s = match tokio::time::timeout_at(deadline, &mut h).await {
                Ok(r) => r?,
                Err(_) => {
                    self.stop_writers.store(true, Ordering::Relaxed);
                    h.await?
                }
            };
            stats.push(s);
        }
        Ok(stats)
    }

    /// Stop the tailing readers and return how many records each saw.
    pub async fn stop_readers(&mut self) -> Result<Vec<usize>> {
        self.tailers.stop.store(true, Ordering::Relaxed);
        let handles: Vec<_> = std::mem::take(&mut *self.tailers.running.lock().unwrap());
        let mut seen = Vec::new();
        for (_, h) in handles {
            seen.push(h.await?);
        }
        Ok(seen)
    }
}

impl Drop for Workload {
    fn drop(&mut self) {
        self.stop_writers.store(true, Ordering::Relaxed);
        self.tailers.stop.store(true, Ordering::Relaxed);
        for h in &self.writers {
            h.abort();
        }
        for (_, h) in self.tailers.running.lock().unwrap().iter() {
            h.abort();
        }
    }
}
