//! The nemesis: seeded, reproducible fault schedules run against a [`Cluster`] under the
//! [`crate::workload`], then healing, a final read and the history checker.
//!
//! A [`Schedule`] is generated from a seed alone: the kind of every fault, which candidate it
//! picks (a number reduced modulo the candidates at run time: shard leaders move, so the
//! *target* of "kill the leader of shard k" is resolved when the step runs), how long the fault
//! holds and the quiet time after it. The same seed gives the same schedule; the run itself is
//! not deterministic (real processes, real time), so each run prints its seed and fault log.
//!
//! Faults ([`FaultKind`]): SIGKILL of a random node, of a shard leader, of the control-plane
//! leader (each restarted after the hold); SIGSTOP/SIGCONT of a shard leader or a random node
//! for longer than the election timeout (1–2 s); a graceful restart (SIGTERM, start); and, when
//! the cluster runs in a [`NetLab`], nftables partitions: isolate a node (a shard leader or the
//! control-plane leader), isolate a zone, a one-way drop between a leader and a follower,
//! a majority/minority split, a bridge node. One fault at a time; every fault is healed before
//! the next starts.
//!
//! Clock jumps ([`FaultKind::ClockJump`], on a cluster started with
//! [`ClusterOpts::faketime`]): the wall clock (only — not the monotonic clock) of a shard
//! leader, the control-plane leader or a random node steps by minutes to ±25 h (past the
//! default 24 h retention), holds, and steps back. Without libfaketime the step is skipped
//! and the log says why.
//!
//! With [`ChaosOpts::reshard`], the [`crate::resharder`] resizes the stream (UpdateShardCount
//! up and down, SplitShard + MergeShards) the whole time, concurrently with the faults; before
//! every step the nemesis re-reads the open shards (targets and probes follow the resharding).
//!
//! Disk loss ([`FaultKind::DiskLoss`]): a random node is SIGKILLed and its data directory
//! deleted; it starts again on the empty disk, must come back under a new node id, and the
//! step waits until the old id's replicas are rebuilt (on the new node) and the old id is out
//! of the control plane.
//!
//! Not done (documented in docs/reliability.md): latency/loss (no `sch_netem` in this kernel).

use std::collections::{BTreeMap, BTreeSet};
use std::sync::Arc;
use std::time::{Duration, Instant};

use anyhow::{bail, ensure, Context, Result};
use rand::rngs::StdRng;
use rand::{Rng, SeedableRng};

use crate::client::KinesisClient;
use crate::harness::{Cluster, ClusterOpts};
use crate::history::{check, Outcome, ProducerAttempt};
use crate::netns::{self, NetLab};
use crate::resharder::{run_resharder, settle_after_heal, ReshardOpts};
use crate::workload::{encode_payload, final_read, Recorder, Workload, WorkloadOpts};

/// One kind of fault.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord)]
pub enum FaultKind {
    /// SIGKILL a random node, restart it after the hold.
    KillRandom,
    /// SIGKILL the leader of a shard, restart it after the hold.
    KillShardLeader,
    /// SIGKILL the control-plane (metadata group) leader, restart it after the hold.
    KillMetaLeader,
    /// SIGSTOP the leader of a shard for longer than the election timeout, then SIGCONT.
    PauseShardLeader,
    /// SIGSTOP a random node, then SIGCONT.
    PauseRandom,
    /// SIGTERM a random node and start it again at once.
    Restart,
    /// Cut a shard leader off from the other nodes (clients still reach it).
    IsolateLeader,
    /// Cut the control-plane leader off from the other nodes.
    IsolateMetaLeader,
    /// Cut every node of one zone off from the other zones.
    IsolateZone,
    /// Drop packets in one direction only, between a shard leader and a follower (either way).
    OneWay,
    /// Split the nodes into a majority and a minority that contains a shard leader.
    MajoritySplit,
    /// Two halves that only talk through one bridge node.
    Bridge,
    /// SIGKILL a random node and delete its data directory; after the hold it starts again
    /// on the empty disk, rejoins under a new node id and the old id's replicas are rebuilt
    /// on it (the step ends once the old id holds nothing).
    DiskLoss,
    /// Step the wall clock of a shard leader, the control-plane leader or a random node by
    /// one of [`CLOCK_JUMPS_S`], hold, step it back.
    ClockJump,
}

/// Clock jump sizes in seconds: minutes to beyond the 24 h default retention, both ways.
pub const CLOCK_JUMPS_S: &[i64] = &[300, -600, 7_200, -7_200, 90_000, -90_000];

impl FaultKind {
    /// Faults that need no root (process signals only).
    pub const PROCESS: &'static [FaultKind] = &[
        FaultKind::KillRandom,
        FaultKind::KillShardLeader,
        FaultKind::KillMetaLeader,
        FaultKind::PauseShardLeader,
        FaultKind::PauseRandom,
        FaultKind::Restart,
        FaultKind::DiskLoss,
    ];
    /// Faults that need a [`NetLab`].
    pub const NETWORK: &'static [FaultKind] = &[
        FaultKind::IsolateLeader,
        FaultKind::IsolateMetaLeader,
        FaultKind::IsolateZone,
        FaultKind::OneWay,
        FaultKind::MajoritySplit,
        FaultKind::Bridge,
    ];

    /// Faults that need libfaketime ([`ClusterOpts::faketime`]); skipped, with the reason
    /// printed, where it is missing.
    pub const CLOCK: &'static [FaultKind] = &[FaultKind::ClockJump];

    /// Short name for logs and tables.
    pub fn name(self) -> &'static str {
        match self {
            FaultKind::KillRandom => "kill-random",
            FaultKind::KillShardLeader => "kill-shard-leader",
            FaultKind::KillMetaLeader => "kill-meta-leader",
            FaultKind::PauseShardLeader => "pause-shard-leader",
            FaultKind::PauseRandom => "pause-random",
            FaultKind::Restart => "restart",
            FaultKind::IsolateLeader => "isolate-leader",
            FaultKind::IsolateMetaLeader => "isolate-meta-leader",
            FaultKind::IsolateZone => "isolate-zone",
            FaultKind::OneWay => "one-way-drop",
            FaultKind::MajoritySplit => "majority-split",
            FaultKind::Bridge => "bridge",
            FaultKind::DiskLoss => "disk-loss",
            FaultKind::ClockJump => "clock-jump",
        }
    }

    fn is_network(self) -> bool {
        FaultKind::NETWORK.contains(&self)
    }

    /// Hold time range in ms. Pauses and partitions outlast the 1–2 s election timeout.
    fn hold_range(self) -> (u64, u64) {
        match self {
            FaultKind::KillRandom
            | FaultKind::KillShardLeader
            | FaultKind::KillMetaLeader
            | FaultKind::DiskLoss => (1_000, 4_000),
            FaultKind::PauseShardLeader | FaultKind::PauseRandom => (3_000, 6_000),
            FaultKind::Restart => (0, 0),
            FaultKind::ClockJump => (4_000, 8_000),
            _ => (3_000, 8_000),
        }
    }
}

/// One step of a schedule.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Step {
    pub kind: FaultKind,
    /// Picks the target among the candidates at run time (modulo their number).
    pub pick: u64,
    /// A second pick (the follower of a one-way drop, its direction).
    pub pick2: u64,
    pub hold_ms: u64,
    /// Quiet time after healing, before the next fault.
    pub quiet_ms: u64,
}

/// A seeded fault schedule.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Schedule {
    pub seed: u64,
    pub steps: Vec<Step>,
}

impl Schedule {
    /// A schedule of faults drawn from `kinds` until `steps` faults or `budget` of fault+quiet
    /// time, whichever comes first. The first faults cycle through every kind once (in a
    /// seeded order), so even a short schedule covers each kind.
    pub fn generate(seed: u64, kinds: &[FaultKind], steps: usize, budget: Duration) -> Schedule {
        assert!(!kinds.is_empty());
        let mut rng = StdRng::seed_from_u64(seed);
        let mut order: Vec<FaultKind> = kinds.to_vec();
        // Fisher-Yates with our rng (stable across rand minor versions).
        for i in (1..order.len()).rev() {
            let j = rng.gen_range(0..=i);
            order.swap(i, j);
        }
        let mut out = Vec::new();
        let mut total = 0u64;
        while out.len() < steps && total < budget.as_millis() as u64 {
            let kind = if out.len() < order.len() {
                order[out.len()]
            } else {
                kinds[rng.gen_range(0..kinds.len())]
            };
            let (lo, hi) = kind.hold_range();
            let hold_ms = if hi > lo { rng.gen_range(lo..=hi) } else { lo };
            let quiet_ms = rng.gen_range(2_000..=4_000);
            total += hold_ms + quiet_ms;
            out.push(Step {
                kind,
                pick: rng.gen(),
                pick2: rng.gen(),
                hold_ms,
                quiet_ms,
            });
        }
        Schedule { seed, steps: out }
    }

    /// The faults usable on this cluster.
    pub fn kinds_for(cluster: &Cluster) -> Vec<FaultKind> {
        let mut k = FaultKind::PROCESS.to_vec();
        k.extend_from_slice(FaultKind::CLOCK);
        if cluster.net().is_some() {
            k.extend_from_slice(FaultKind::NETWORK);
        }
        k
    }
}

/// What a step did.
#[derive(Debug, Clone)]
pub struct FaultEvent {
    pub step: usize,
    pub kind: FaultKind,
    /// Affected nodes (killed / paused / isolated / the minority / the bridge).
    pub nodes: Vec<usize>,
    /// The shard whose leader was targeted, if any.
    pub shard: Option<String>,
    /// When the fault started and was healed (ms on the recorder clock).
    pub start_ms: u64,
    pub end_ms: u64,
    pub note: String,
    /// Leaders just before the fault.
    pub leaders: String,
    /// Ack times of the probes that ran during the fault, per shard.
    pub probe_acks: BTreeMap<String, Vec<u64>>,
}

/// Runs faults against a cluster.
pub struct Nemesis<'a> {
    pub cluster: &'a mut Cluster,
    pub stream: String,
    pub shard_ids: Vec<String>,
    pub recorder: Arc<Recorder>,
    pub events: Vec<FaultEvent>,
    paused: BTreeSet<usize>,
    /// Nodes whose wall clock is off.
    jumped: BTreeSet<usize>,
    /// Starting hash key of every shard (for probes with `ExplicitHashKey`).
    probe_keys: BTreeMap<String, String>,
}

impl<'a> Nemesis<'a> {
    pub fn new(
        cluster: &'a mut Cluster,
        stream: &str,
        shard_ids: &[String],
        recorder: Arc<Recorder>,
    ) -> Self {
        Nemesis {
            cluster,
            stream: stream.to_string(),
            shard_ids: shard_ids.to_vec(),
            recorder,
            events: Vec::new(),
            paused: BTreeSet::new(),
            jumped: BTreeSet::new(),
            probe_keys: BTreeMap::new(),
        }
    }

    /// Enable failover probes: `shard id -> starting hash key`.
    pub fn with_probes(mut self, keys: BTreeMap<String, String>) -> Self {
        self.probe_keys = keys;
        self
    }

    /// Hold a fault for `hold` while one probe per shard writes through the nodes not in
    /// `exclude`: a new single-record `PutRecord` every 200 ms (round-robin over the nodes, 1 s
    /// timeouts, at most 8 in flight per shard, each its own payload and partition key with
    /// `ExplicitHashKey` = the shard's start, so no retry and no per-key order is involved).
    /// Because a fresh request starts every 200 ms whether or not earlier ones still hang on a
    /// dead or cut-off leader, the ack times give failover and unavailability to within ~200 ms,
    /// independent of client timeouts and of where the writers happen to be stuck. Every probe
    /// attempt goes into the history. Fills `ev.probe_acks`.
    async fn hold_probing(&self, ev: &mut FaultEvent, exclude: &[usize], hold: Duration) {
        let eps: Vec<KinesisClient> = (0..self.cluster.len())
            .filter(|i| !exclude.contains(i))
            .map(|i| KinesisClient::with_timeout(&self.cluster.api_url(i), Duration::from_secs(1)))
            .collect();
        if eps.is_empty() || self.probe_keys.is_empty() {
            tokio::time::sleep(hold).await;
            return;
        }
        let stop = Arc::new(std::sync::atomic::AtomicBool::new(false));
        let mut tasks = Vec::new();
        for (si, (shard, hash)) in self.probe_keys.iter().enumerate() {
            let (eps, stop, rec) = (eps.clone(), stop.clone(), self.recorder.clone());
            let (stream, shard, hash) = (self.stream.clone(), shard.clone(), hash.clone());
            let key = format!("probe-{}-{si}", ev.step);
            tasks.push(tokio::spawn(async move {
                let acks = Arc::new(std::sync::Mutex::new(Vec::new()));
                let errors = Arc::new(std::sync::Mutex::new(BTreeMap::<String, usize>::new()));
                let mut inflight = tokio::task::JoinSet::new();
                let mut n = 0usize;
                // Bounded: stops at the heal (the caller sets `stop`), at most 10,000 requests.
                while !stop.load(std::sync::atomic::Ordering::Relaxed) && n < 10_000 {
                    while inflight.try_join_next().is_some() {}
                    if inflight.len() < 8 {
                        n += 1;
                        let c = eps[n % eps.len()].clone();
                        let (rec, acks, errors) = (rec.clone(), acks.clone(), errors.clone());
                        let (stream, hash) = (stream.clone(), hash.clone());
                        let id = format!("{key}-{n}");
                        inflight.spawn(async move {
                            let data = encode_payload(&id, &id, 0, 0);
                            let started = rec.now_ms();
                            let res = c.put_record(&stream, &id, &data, Some(&hash)).await;
                            let at = rec.now_ms();
                            let outcome = match &res {
                                Ok(a) => Outcome::Ok {
                                    shard_id: a.shard_id.clone(),
                                    seq: a.sequence_number.clone(),
                                },
                                Err(e) if e.outcome_unknown() => Outcome::Unknown(e.to_string()),
                                Err(e) => Outcome::Failed(e.to_string()),
                            };
                            rec.attempt(ProducerAttempt {
                                payload_id: id.clone(),
                                partition_key: id,
                                key_counter: 0,
                                attempt: 1,
                                started_ms: started,
                                at_ms: at,
                                outcome,
                            });
                            match res {
                                Ok(_) => acks.lock().unwrap().push(at),
                                Err(e) => {
                                    *errors.lock().unwrap().entry(e.kind.clone()).or_default() += 1
                                }
                            }
                        });
                    }
                    tokio::time::sleep(Duration::from_millis(200)).await;
                }
                // Requests still in flight at the heal are abandoned (recorded if they finish).
                inflight.detach_all();
                let mut acks = acks.lock().unwrap().clone();
                acks.sort_unstable();
                let errors = errors.lock().unwrap().clone();
                (shard, acks, errors)
            }));
        }
        tokio::time::sleep(hold).await;
        stop.store(true, std::sync::atomic::Ordering::Relaxed);
        let mut notes = Vec::new();
        for t in tasks {
            if let Ok((shard, acks, errors)) = t.await {
                if !errors.is_empty() {
                    notes.push(format!("{shard} probe errors {errors:?}"));
                }
                ev.probe_acks.insert(shard, acks);
            }
        }
        if !notes.is_empty() {
            ev.note = format!("{} {}", ev.note, notes.join("; "));
        }
    }

    /// Re-read the open shards (they change while the resharder runs): the targets of shard
    /// faults and the probes follow. Keeps the old list if no node answers.
    pub async fn refresh_shards(&mut self) {
        for i in 0..self.cluster.len() {
            let c = KinesisClient::with_timeout(&self.cluster.api_url(i), Duration::from_secs(3));
            let Ok(shards) = c.list_shards(&self.stream).await else {
                continue;
            };
            let open: Vec<_> = shards
                .into_iter()
                .filter(|s| s.sequence_number_range.ending_sequence_number.is_none())
                .collect();
            if open.is_empty() {
                continue;
            }
            self.shard_ids = open.iter().map(|s| s.shard_id.clone()).collect();
            if !self.probe_keys.is_empty() {
                self.probe_keys = open
                    .iter()
                    .map(|s| {
                        (
                            s.shard_id.clone(),
                            s.hash_key_range.starting_hash_key.clone(),
                        )
                    })
                    .collect();
            }
            return;
        }
    }

    /// Who leads what right now: `shardId-…=n1 …, meta=n0`.
    pub async fn leaders_snapshot(&mut self) -> String {
        let mut parts = Vec::new();
        for shard in self.shard_ids.clone() {
            let l = self.cluster.find_leader(&self.stream, &shard).await;
            parts.push(format!(
                "{}=n{}",
                shard.trim_start_matches("shardId-0000000"),
                l.map_or("?".into(), |l| l.to_string())
            ));
        }
        let m = self.cluster.find_meta_leader().await;
        parts.push(format!("meta=n{}", m.map_or("?".into(), |l| l.to_string())));
        parts.join(" ")
    }

    async fn shard_leader(&mut self, pick: u64) -> (String, Option<usize>) {
        let shard = self.shard_ids[(pick as usize) % self.shard_ids.len()].clone();
        let l = self
            .cluster
            .wait_leader(&self.stream, &shard, Duration::from_secs(5))
            .await
            .ok();
        (shard, l)
    }

    fn random_node(&self, pick: u64) -> usize {
        (pick as usize) % self.cluster.len()
    }

    fn lab(&self) -> Result<Arc<NetLab>> {
        self.cluster
            .net()
            .cloned()
            .context("network faults need a NetLab (root + nftables)")
    }

    /// Run one step (fault, hold, heal); the quiet time is left to the caller.
    pub async fn run_step(&mut self, idx: usize, s: &Step) -> Result<FaultEvent> {
        let n = self.cluster.len();
        let mut ev = FaultEvent {
            step: idx,
            kind: s.kind,
            nodes: Vec::new(),
            shard: None,
            start_ms: 0,
            end_ms: 0,
            note: String::new(),
            leaders: self.leaders_snapshot().await,
            probe_acks: BTreeMap::new(),
        };
        let hold = Duration::from_millis(s.hold_ms);
        match s.kind {
            FaultKind::KillRandom | FaultKind::KillShardLeader | FaultKind::KillMetaLeader => {
                let target = match s.kind {
                    FaultKind::KillShardLeader => {
                        let (shard, l) = self.shard_leader(s.pick).await;
                        ev.shard = Some(shard);
                        l.unwrap_or_else(|| self.random_node(s.pick2))
                    }
                    FaultKind::KillMetaLeader => match self.cluster.find_meta_leader().await {
                        Some(l) => l,
                        None => {
                            ev.note = "no meta leader found; random node".into();
                            self.random_node(s.pick)
                        }
                    },
                    _ => self.random_node(s.pick),
                };
                ev.nodes = vec![target];
                ev.start_ms = self.recorder.now_ms();
                self.cluster.kill(target)?;
                let exclude = ev.nodes.clone();
                self.hold_probing(&mut ev, &exclude, hold).await;
                ev.end_ms = self.recorder.now_ms();
                self.cluster.start_node(target)?;
                self.cluster
                    .wait_ready(target, Duration::from_secs(60))
                    .await
                    .with_context(|| format!("node {target} after SIGKILL"))?;
                ev.note = format!(
                    "{} ready {} ms after restart",
                    ev.note,
                    self.recorder.now_ms() - ev.end_ms
                );
            }
            FaultKind::PauseShardLeader | FaultKind::PauseRandom => {
                let target = if s.kind == FaultKind::PauseShardLeader {
                    let (shard, l) = self.shard_leader(s.pick).await;
                    ev.shard = Some(shard);
                    l.unwrap_or_else(|| self.random_node(s.pick2))
                } else {
                    self.random_node(s.pick)
                };
                ev.nodes = vec![target];
                ev.start_ms = self.recorder.now_ms();
                self.cluster.pause(target)?;
                self.paused.insert(target);
                let exclude = ev.nodes.clone();
                self.hold_probing(&mut ev, &exclude, hold).await;
                self.cluster.resume(target)?;
                self.paused.remove(&target);
                ev.end_ms = self.recorder.now_ms();
            }
            FaultKind::Restart => {
                let target = self.random_node(s.pick);
                ev.nodes = vec![target];
                ev.start_ms = self.recorder.now_ms();
                let st = self.cluster.terminate(target, Duration::from_secs(15))?;
                ev.end_ms = self.recorder.now_ms();
                self.cluster.start_node(target)?;
                self.cluster
                    .wait_ready(target, Duration::from_secs(60))
                    .await
                    .with_context(|| format!("node {target} after SIGTERM"))?;
                ev.note = format!(
                    "exit {st}; stop took {} ms, ready {} ms after start",
                    ev.end_ms - ev.start_ms,
                    self.recorder.now_ms() - ev.end_ms
                );
            }
            FaultKind::DiskLoss => {
                let target = self.random_node(s.pick);
                let old = self.cluster.node_id(target);
                ev.nodes = vec![target];
                ev.start_ms = self.recorder.now_ms();
                self.cluster.kill(target)?;
                self.cluster.wipe(target)?;
                let exclude = ev.nodes.clone();
                self.hold_probing(&mut ev, &exclude, hold).await;
                ev.end_ms = self.recorder.now_ms();
                self.cluster.start_node(target)?;
                self.cluster
                    .wait_ready(target, Duration::from_secs(60))
                    .await
                    .with_context(|| format!("node {target} after the disk loss"))?;
                let new = self.cluster.refresh_node_id(target).await?;
                ensure!(
                    new != old,
                    "node {target} came back on an empty disk under its old id {old}"
                );
                let rebuilt = self.wait_replaced(target, old, ev.end_ms).await?;
                ev.note = format!(
                    "node id {old} -> {new}; ready {} ms after start, old id emptied {} ms after start",
                    rebuilt.0, rebuilt.1
                );
            }
            FaultKind::ClockJump => self.clock_jump(&mut ev, s, hold).await?,
            kind => {
                debug_assert!(kind.is_network());
                let lab = self.lab()?;
                let drops = match kind {
                    FaultKind::IsolateLeader => {
                        let (shard, l) = self.shard_leader(s.pick).await;
                        ev.shard = Some(shard);
                        let t = l.unwrap_or_else(|| self.random_node(s.pick2));
                        ev.nodes = vec![t];
                        netns::isolate(t, n)
                    }
                    FaultKind::IsolateMetaLeader => {
                        let t = match self.cluster.find_meta_leader().await {
                            Some(l) => l,
                            None => self.random_node(s.pick),
                        };
                        ev.nodes = vec![t];
                        netns::isolate(t, n)
                    }
                    FaultKind::IsolateZone => {
                        let zone = self.cluster.zone(self.random_node(s.pick)).to_string();
                        let (inside, outside): (Vec<usize>, Vec<usize>) =
                            (0..n).partition(|&i| self.cluster.zone(i) == zone);
                        ev.note = format!("zone {zone}");
                        ev.nodes = inside.clone();
                        netns::split(&[inside, outside])
                    }
                    FaultKind::OneWay => {
                        let (shard, l) = self.shard_leader(s.pick).await;
                        ev.shard = Some(shard);
                        let leader = l.unwrap_or_else(|| self.random_node(s.pick));
                        let others: Vec<usize> = (0..n).filter(|&i| i != leader).collect();
                        let follower = others[(s.pick2 as usize / 2) % others.len()];
                        let (from, to) = if s.pick2.is_multiple_of(2) {
                            (leader, follower)
                        } else {
                            (follower, leader)
                        };
                        ev.nodes = vec![from, to];
                        ev.note = format!("drop {from} -> {to}");
                        [(from, to)].into_iter().collect()
                    }
                    FaultKind::MajoritySplit => {
                        // The minority holds a shard leader, so that leader must step down.
                        let (shard, l) = self.shard_leader(s.pick).await;
                        ev.shard = Some(shard);
                        let leader = l.unwrap_or_else(|| self.random_node(s.pick2));
                        let mut minority = vec![leader];
                        let others: Vec<usize> = (0..n).filter(|&i| i != leader).collect();
                        // n = 3: 1 vs 2; n = 5: 2 vs 3.
                        let extra = (n - 1) / 2 - 1;
                        minority.extend(others.iter().take(extra));
                        let majority: Vec<usize> =
                            (0..n).filter(|i| !minority.contains(i)).collect();
                        ev.nodes = minority.clone();
                        ev.note = format!("minority {minority:?} / majority {majority:?}");
                        netns::split(&[minority, majority])
                    }
                    FaultKind::Bridge => {
                        let b = self.random_node(s.pick);
                        ev.nodes = vec![b];
                        ev.note = format!("bridge node {b}");
                        netns::bridge(b, n)
                    }
                    _ => unreachable!(),
                };
                lab.set_drops(&drops)?;
                // From here on the drops are in place (installing them takes a few ms).
                ev.start_ms = self.recorder.now_ms();
                // One-way drops and bridges cut links between nodes only: probe via all.
                let exclude = if matches!(kind, FaultKind::OneWay | FaultKind::Bridge) {
                    Vec::new()
                } else {
                    ev.nodes.clone()
                };
                self.hold_probing(&mut ev, &exclude, hold).await;
                lab.heal()?;
                ev.end_ms = self.recorder.now_ms();
            }
        }
        Ok(ev)
    }

    /// After a disk loss: waits (bounded) until the old id `old` holds no replica and is out
    /// of the control plane, asking the other nodes. Returns (ms from the restart to ready,
    /// ms from the restart to done); the restart is the event's `end_ms`.
    async fn wait_replaced(
        &mut self,
        target: usize,
        old: u64,
        restarted: u64,
    ) -> Result<(u64, u64)> {
        let ready_ms = self.recorder.now_ms().saturating_sub(restarted);
        let http = reqwest::Client::builder()
            .timeout(Duration::from_secs(5))
            .build()?;
        let t0 = Instant::now();
        loop {
            for i in (0..self.cluster.len()).filter(|&i| i != target) {
                let url = format!("{}/v1/decommission?node={old}", self.cluster.admin_url(i));
                let Ok(resp) = http.get(&url).send().await else {
                    continue;
                };
                if resp.status().as_u16() == 200 {
                    let body: serde_json::Value = resp.json().await.unwrap_or_default();
                    if body["meta_role"] == "none" {
                        return Ok((ready_ms, self.recorder.now_ms().saturating_sub(restarted)));
                    }
                }
                break;
            }
            ensure!(
                t0.elapsed() < Duration::from_secs(120),
                "node id {old} still holds replicas 120 s after node {target} came back empty"
            );
            tokio::time::sleep(Duration::from_millis(250)).await;
        }
    }

    /// [`FaultKind::ClockJump`]: `pick2 % 3` picks the target (a shard leader, the
    /// control-plane leader, a random node), `pick2 / 3` the size; probes write through every
    /// node meanwhile (the node keeps serving).
    async fn clock_jump(&mut self, ev: &mut FaultEvent, s: &Step, hold: Duration) -> Result<()> {
        let secs = CLOCK_JUMPS_S[(s.pick2 / 3) as usize % CLOCK_JUMPS_S.len()];
        let target = match s.pick2 % 3 {
            0 => {
                let (shard, l) = self.shard_leader(s.pick).await;
                ev.shard = Some(shard);
                l.unwrap_or_else(|| self.random_node(s.pick))
            }
            1 => match self.cluster.find_meta_leader().await {
                Some(l) => {
                    ev.note = "meta leader;".into();
                    l
                }
                None => self.random_node(s.pick),
            },
            _ => self.random_node(s.pick),
        };
        ev.nodes = vec![target];
        if let Err(why) = self.cluster.clock_faults() {
            ev.start_ms = self.recorder.now_ms();
            ev.end_ms = ev.start_ms;
            ev.note = format!("SKIPPED (no clock jump {secs:+} s): {why}");
            return Ok(());
        }
        self.cluster.set_clock_offset(target, secs)?;
        self.jumped.insert(target);
        ev.start_ms = self.recorder.now_ms();
        ev.note = format!("{} wall clock {secs:+} s", ev.note);
        self.hold_probing(ev, &[], hold).await;
        self.cluster.set_clock_offset(target, 0)?;
        self.jumped.remove(&target);
        ev.end_ms = self.recorder.now_ms();
        Ok(())
    }

    /// Run a whole schedule, printing the fault log as it goes.
    pub async fn run(&mut self, sched: &Schedule) -> Result<()> {
        eprintln!(
            "nemesis: seed {} ({} steps, network faults: {}, clock jumps: {})",
            sched.seed,
            sched.steps.len(),
            self.cluster.net().is_some(),
            match self.cluster.clock_faults() {
                Ok(()) => "libfaketime".to_string(),
                Err(why) => format!("SKIPPED: {why}"),
            }
        );
        for (i, s) in sched.steps.iter().enumerate() {
            self.refresh_shards().await;
            let ev = self
                .run_step(i, s)
                .await
                .with_context(|| format!("step {i}: {s:?}"))?;
            eprintln!(
                "nemesis: [{i:3}] {:>20} nodes {:?} shard {} {}..{} ms ({} ms) [{}] {}",
                ev.kind.name(),
                ev.nodes,
                ev.shard.as_deref().unwrap_or("-"),
                ev.start_ms,
                ev.end_ms,
                ev.end_ms - ev.start_ms,
                ev.leaders,
                ev.note
            );
            self.events.push(ev);
            tokio::time::sleep(Duration::from_millis(s.quiet_ms)).await;
        }
        Ok(())
    }

    /// Heal everything: remove every drop, SIGCONT paused nodes, start stopped nodes, wait for
    /// every node to be ready.
    pub async fn heal_all(&mut self) -> Result<()> {
        if let Some(lab) = self.cluster.net() {
            lab.heal()?;
        }
        for p in std::mem::take(&mut self.paused) {
            let _ = self.cluster.resume(p);
        }
        for j in std::mem::take(&mut self.jumped) {
            self.cluster.set_clock_offset(j, 0)?;
        }
        for i in 0..self.cluster.len() {
            if !self.cluster.is_running(i) {
                let _ = self.cluster.kill(i); // reap an exited child
                self.cluster.start_node(i)?;
            }
        }
        self.cluster.wait_all_ready(Duration::from_secs(60)).await
    }
}

/// Per-fault measurements.
#[derive(Debug, Clone)]
pub struct FaultStats {
    pub kind: FaultKind,
    pub step: usize,
    /// For faults aimed at a shard leader (kill, pause, isolate, minority side): fault start →
    /// first acknowledged write on that shard of a request sent after the start (a probe's or a
    /// writer's).
    pub failover_ms: Option<u64>,
    /// Seen by the probes (through the nodes not faulted, 1 s timeouts): the longest stretch
    /// without an ack on the worst shard between the fault's start and its heal.
    pub probe_unavail_ms: u64,
    /// Seen by the writers (10 s timeouts, endpoint rotation on errors): the longest stretch
    /// without any ack on the worst shard, from the fault's start to 10 s after its heal (or
    /// the next fault).
    pub writer_unavail_ms: u64,
    pub worst_shard: String,
}

fn acks_by_shard(attempts: &[ProducerAttempt]) -> BTreeMap<String, Vec<(u64, u64)>> {
    let mut m: BTreeMap<String, Vec<(u64, u64)>> = BTreeMap::new();
    for a in attempts {
        if let Outcome::Ok { shard_id, .. } = &a.outcome {
            m.entry(shard_id.clone())
                .or_default()
                .push((a.started_ms, a.at_ms));
        }
    }
    for v in m.values_mut() {
        v.sort_by_key(|&(_, at)| at);
    }
    m
}

/// Longest gap between `start`, the ack times in `(start, end]` and `end`.
fn max_gap(start: u64, end: u64, acks: &[u64]) -> u64 {
    let mut t = start;
    let mut gap = 0;
    for &a in acks.iter().filter(|&&a| a > start && a <= end) {
        gap = gap.max(a - t);
        t = a;
    }
    gap.max(end.saturating_sub(t))
}

/// Failover times and unavailability windows for every event.
///
/// `closed`: shards closed by resharding; one without any ack after a fault's start was closed
/// (not unavailable) and is left out of that fault's writer unavailability.
pub fn analyze(
    events: &[FaultEvent],
    attempts: &[ProducerAttempt],
    closed: &BTreeSet<String>,
) -> Vec<FaultStats> {
    let acks = acks_by_shard(attempts);
    let mut out = Vec::new();
    for (i, ev) in events.iter().enumerate() {
        let horizon = events
            .get(i + 1)
            .map(|n| n.start_ms)
            .unwrap_or(u64::MAX)
            .min(ev.end_ms + 10_000);
        let mut worst = (0u64, String::new());
        for (shard, v) in &acks {
            // A shard created during the window (resharding) is measured from its first ack.
            let existed = v.iter().any(|(_, at)| *at <= ev.start_ms);
            let mut t = if existed {
                ev.start_ms
            } else {
                v.iter()
                    .map(|(_, at)| *at)
                    .find(|at| *at > ev.start_ms)
                    .unwrap_or(ev.start_ms)
            };
            let mut gap = 0u64;
            let mut any = false;
            // Gaps between acks from the fault's start, up to the first ack past the horizon.
            for &(_, at) in v.iter().filter(|(_, at)| *at > ev.start_ms) {
                gap = gap.max(at - t);
                t = at;
                any = true;
                if at > horizon {
                    break;
                }
            }
            if !any {
                if closed.contains(shard) {
                    continue;
                }
                gap = horizon.saturating_sub(ev.start_ms);
            }
            if gap > worst.0 {
                worst = (gap, shard.clone());
            }
        }
        let probe_unavail_ms = ev
            .probe_acks
            .values()
            .map(|v| max_gap(ev.start_ms, ev.end_ms, v))
            .max()
            .unwrap_or(0);
        let leader_fault = matches!(
            ev.kind,
            FaultKind::KillShardLeader
                | FaultKind::PauseShardLeader
                | FaultKind::IsolateLeader
                | FaultKind::MajoritySplit
        );
        // The first ack on the shard, or of its probe (which follows the shard's hash key
        // into a child if the shard is split meanwhile).
        let failover_ms = ev.shard.as_ref().filter(|_| leader_fault).and_then(|s| {
            let on_shard = acks.get(s).and_then(|v| {
                v.iter()
                    .filter(|(started, _)| *started >= ev.start_ms)
                    .map(|(_, at)| at - ev.start_ms)
                    .min()
            });
            let probe = ev
                .probe_acks
                .get(s)
                .and_then(|v| v.iter().filter(|&&a| a > ev.start_ms).min())
                .map(|a| a - ev.start_ms);
            match (on_shard, probe) {
                (Some(a), Some(b)) => Some(a.min(b)),
                (a, b) => a.or(b),
            }
        });
        out.push(FaultStats {
            kind: ev.kind,
            step: ev.step,
            failover_ms,
            probe_unavail_ms,
            writer_unavail_ms: worst.0,
            worst_shard: worst.1,
        });
    }
    out
}

fn pct(v: &mut [u64], p: f64) -> u64 {
    if v.is_empty() {
        return 0;
    }
    v.sort_unstable();
    let idx = ((v.len() as f64 - 1.0) * p).round() as usize;
    v[idx.min(v.len() - 1)]
}

/// A table per fault kind: count, failover and the two unavailability measures, each as
/// p50 / p99 / max in ms.
pub fn summarize(stats: &[FaultStats]) -> String {
    let mut by: BTreeMap<FaultKind, Vec<&FaultStats>> = BTreeMap::new();
    for s in stats {
        by.entry(s.kind).or_default().push(s);
    }
    let trio = |v: &mut Vec<u64>| {
        if v.is_empty() {
            "-".to_string()
        } else {
            format!("{} / {} / {}", pct(v, 0.5), pct(v, 0.99), pct(v, 1.0))
        }
    };
    let mut t = String::from(
        "| fault | n | failover (ms) | unavailability, probes (ms) | unavailability, writers (ms) |\n\
         |---|---|---|---|---|\n",
    );
    let mut all_failover = Vec::new();
    for (k, v) in by {
        let mut f: Vec<u64> = v.iter().filter_map(|s| s.failover_ms).collect();
        all_failover.extend(f.iter().copied());
        let mut p: Vec<u64> = v.iter().map(|s| s.probe_unavail_ms).collect();
        let mut w: Vec<u64> = v.iter().map(|s| s.writer_unavail_ms).collect();
        t.push_str(&format!(
            "| {} | {} | {} | {} | {} |\n",
            k.name(),
            v.len(),
            trio(&mut f),
            trio(&mut p),
            trio(&mut w)
        ));
    }
    t.push_str(&format!(
        "| all leader faults | {} | {} | | |\n",
        all_failover.len(),
        trio(&mut all_failover)
    ));
    t
}

/// Options for [`chaos_scenario`].
#[derive(Debug, Clone)]
pub struct ChaosOpts {
    pub seed: u64,
    /// At most this many faults ...
    pub max_faults: usize,
    /// ... and at most this much fault + quiet time.
    pub budget: Duration,
    pub stream: String,
    pub shards: u32,
    pub writers: usize,
    /// Fault kinds left out of the schedule.
    pub exclude: Vec<FaultKind>,
    /// Run the [`crate::resharder`] concurrently with the faults ...
    pub reshard: bool,
    /// ... with a pause drawn from this range (ms) between its operations.
    pub reshard_gap_ms: (u64, u64),
}

/// What a chaos run measured.
#[derive(Debug, Clone)]
pub struct ChaosResult {
    pub faults: usize,
    pub acked: usize,
    pub attempts: usize,
    pub stats: Vec<FaultStats>,
    pub table: String,
    /// Resharding operations completed (ACTIVE again, lineage checked) and attempted.
    pub reshards_done: usize,
    pub reshards: usize,
}

/// Start a cluster (in a [`NetLab`] when available), run the workload under a seeded schedule,
/// heal, wait for the replicas to agree, read everything through every node and check the
/// history. Errors describe the first failure.
pub async fn chaos_scenario(net: Option<Arc<NetLab>>, o: &ChaosOpts) -> Result<ChaosResult> {
    let mut cluster = Cluster::start(ClusterOpts {
        net,
        faketime: true,
        ..ClusterOpts::default()
    })
    .await
    .context("cluster start")?;
    let res = chaos_on(&mut cluster, o).await;
    if res.is_err() {
        cluster.dump_logs(40);
    }
    res
}

async fn chaos_on(cluster: &mut Cluster, o: &ChaosOpts) -> Result<ChaosResult> {
    let c0 = cluster.client(0);
    c0.ensure_stream(&o.stream, o.shards, Duration::from_secs(30))
        .await?;
    let shards = c0.list_shards(&o.stream).await?;
    let shard_ids: Vec<String> = shards.iter().map(|s| s.shard_id.clone()).collect();
    let probe_keys: BTreeMap<String, String> = shards
        .iter()
        .map(|s| {
            (
                s.shard_id.clone(),
                s.hash_key_range.starting_hash_key.clone(),
            )
        })
        .collect();
    let sched = Schedule::generate(
        o.seed,
        &Schedule::kinds_for(cluster)
            .into_iter()
            .filter(|k| !o.exclude.contains(k))
            .collect::<Vec<_>>(),
        o.max_faults,
        o.budget,
    );
    let wopts = WorkloadOpts {
        stream: o.stream.clone(),
        writers: o.writers,
        records_per_writer: usize::MAX / 2,
        keys_per_writer: 8,
        batch_max: 8,
        pad: 32,
    };
    let mut wl = Workload::start(&wopts, &cluster.clients(), &shard_ids);
    tokio::time::sleep(Duration::from_secs(3)).await;
    let t_run = Instant::now();
    let reshard_stop = Arc::new(std::sync::atomic::AtomicBool::new(false));
    let short_eps: Vec<KinesisClient> = (0..cluster.len())
        .map(|i| KinesisClient::with_timeout(&cluster.api_url(i), Duration::from_secs(5)))
        .collect();
    let resharder = o.reshard.then(|| {
        tokio::spawn(run_resharder(
            short_eps.clone(),
            ReshardOpts {
                stream: o.stream.clone(),
                base: o.shards,
                seed: o.seed,
                gap_ms: o.reshard_gap_ms,
                op_timeout: Duration::from_secs(60),
            },
            wl.recorder.clone(),
            wl.tailers(),
            reshard_stop.clone(),
        ))
    });
    let events = {
        let mut nem = Nemesis::new(cluster, &o.stream, &shard_ids, wl.recorder.clone())
            .with_probes(probe_keys);
        let run = nem.run(&sched).await;
        let healed = nem.heal_all().await;
        reshard_stop.store(true, std::sync::atomic::Ordering::Relaxed);
        run?;
        healed?;
        nem.events
    };
    let mut reshards = Vec::new();
    if let Some(h) = resharder {
        reshards = h.await.context("resharder task")??;
        let open = settle_after_heal(
            &short_eps,
            &o.stream,
            &wl.tailers(),
            Duration::from_secs(90),
        )
        .await
        .context("stream after resharding and healing")?;
        let done = reshards.iter().filter(|r| r.done()).count();
        eprintln!(
            "resharding: {done} of {} operations completed under faults; {open} open shards",
            reshards.len()
        );
        for r in reshards.iter().filter(|r| !r.done()) {
            eprintln!("  unfinished: {} at {} ms: {}", r.op, r.started_ms, r.note);
        }
        ensure!(done > 0, "no resharding operation completed: {reshards:?}");
    }
    let healed_at = wl.recorder.now_ms();
    // L3: writes succeed again after the heal; keep writing a little to see it.
    tokio::time::sleep(Duration::from_secs(5)).await;
    wl.stop_writers();
    let wstats = wl.join_writers(Duration::from_secs(60)).await?;
    tokio::time::sleep(Duration::from_secs(1)).await;
    let seen = wl.stop_readers().await?;
    let attempts = wl.recorder.attempts();
    let acked: usize = wstats.iter().map(|s| s.acked).sum();
    let acked_after_heal = attempts
        .iter()
        .filter(|a| a.started_ms >= healed_at && matches!(a.outcome, Outcome::Ok { .. }))
        .count();
    eprintln!(
        "workload: acked {acked}, given up {}, attempts {}; acks after heal {acked_after_heal}; \
         tailers saw {seen:?}",
        wstats.iter().map(|s| s.given_up).sum::<usize>(),
        attempts.len()
    );
    ensure!(
        acked_after_heal > 0,
        "no write acknowledged in the 5 s after healing"
    );

    let agree = wait_replicas_agree(cluster, &o.stream, Duration::from_secs(60)).await?;
    eprintln!("replicas agree: {agree}");

    let mut reads = Vec::new();
    for node in 0..cluster.len() {
        let fr = final_read(&cluster.client(node), &o.stream)
            .await
            .with_context(|| format!("final read via node {node}"))?;
        reads.push(fr);
    }
    for (node, fr) in reads.iter().enumerate().skip(1) {
        let a: Vec<_> = reads[0].iter().map(|s| &s.records).collect();
        let b: Vec<_> = fr.iter().map(|s| &s.records).collect();
        ensure!(a == b, "final read via node {node} differs from node 0");
    }
    let history = wl.recorder.history(reads.swap_remove(0));
    if let Ok(path) = std::env::var("SPATE_CHAOS_HISTORY") {
        // For offline analysis: the whole history (attempts, observations, final read).
        let f = std::fs::File::create(&path).with_context(|| format!("creating {path}"))?;
        serde_json::to_writer(std::io::BufWriter::new(f), &history)?;
        eprintln!("history written to {path}");
    }
    let closed: BTreeSet<String> = history
        .final_read
        .iter()
        .filter(|s| s.closed)
        .map(|s| s.shard_id.clone())
        .collect();
    let stats = analyze(&events, &attempts, &closed);
    for s in &stats {
        eprintln!(
            "fault [{:3}] {:>20}: failover {:>6} ms, unavailability probes {:>6} ms, writers \
             {:>6} ms (worst shard {})",
            s.step,
            s.kind.name(),
            s.failover_ms.map(|f| f.to_string()).unwrap_or("-".into()),
            s.probe_unavail_ms,
            s.writer_unavail_ms,
            s.worst_shard
        );
    }
    let table = summarize(&stats);
    eprintln!("seed {}; per fault kind:\n{table}", o.seed);
    let report = check(&history);
    eprintln!("history: {}", report.summary(20));
    let count = |f: fn(&crate::history::Violation) -> bool| {
        report.violations.iter().filter(|v| f(v)).count()
    };
    use crate::history::Violation as V;
    let mut per_kind: BTreeMap<&str, usize> = BTreeMap::new();
    for e in &events {
        *per_kind.entry(e.kind.name()).or_default() += 1;
    }
    eprintln!(
        "chaos summary: seed {}, {} faults in {:?} {per_kind:?}; resharding {} of {} done; \
         shards read {}; acked payloads {}, lost {}, wrong position {}, vanished {}, \
         duplicates explained {} unexplained {}, order violations {}, lineage violations {}",
        o.seed,
        events.len(),
        t_run.elapsed(),
        reshards.iter().filter(|r| r.done()).count(),
        reshards.len(),
        report.shards,
        report.acked,
        count(|v| matches!(v, V::LostAck { .. })),
        count(|v| matches!(v, V::WrongAckPosition { .. })),
        count(|v| matches!(v, V::VanishedRead { .. })),
        report.duplicates_explained,
        count(|v| matches!(v, V::Duplicate { .. })),
        count(|v| matches!(
            v,
            V::KeyOrder { .. } | V::NonIncreasingSeq { .. } | V::ReaderWentBackwards { .. }
        )),
        count(|v| matches!(
            v,
            V::ChildBeforeParent { .. }
                | V::UnknownParent { .. }
                | V::HashSpace { .. }
                | V::ParentNotCovered { .. }
        )),
    );
    ensure!(report.ok(), "history violations:\n{}", report.summary(50));

    Ok(ChaosResult {
        faults: events.len(),
        acked,
        attempts: attempts.len(),
        stats,
        table,
        reshards_done: reshards.iter().filter(|r| r.done()).count(),
        reshards: reshards.len(),
    })
}

/// (node, last_applied, next_ordinal, members) of one replica.
type ReplicaState = (usize, u64, Option<u64>, usize);

/// Wait until, for every shard of `stream`, every node hosting a replica reports the same
/// `last_applied` and `next_ordinal` (R9 after heal). Returns a one-line description.
pub async fn wait_replicas_agree(
    cluster: &mut Cluster,
    stream: &str,
    timeout: Duration,
) -> Result<String> {
    let t0 = Instant::now();
    loop {
        let mut by: BTreeMap<String, Vec<ReplicaState>> = BTreeMap::new();
        let mut err = None;
        for i in 0..cluster.len() {
            match cluster.shards(i).await {
                Ok(v) => {
                    for r in v.into_iter().filter(|r| r.stream == stream) {
                        by.entry(r.shard_id).or_default().push((
                            i,
                            r.last_applied,
                            r.next_ordinal,
                            r.members.len(),
                        ));
                    }
                }
                Err(e) => err = Some(format!("node {i}: {e:#}")),
            }
        }
        let disagree: Vec<String> = by
            .iter()
            .filter(|(_, v)| {
                v.len() < 3
                    || v.iter().any(|r| r.1 != v[0].1 || r.2 != v[0].2)
                    || v.iter().any(|r| r.3 != v[0].3)
            })
            .map(|(s, v)| format!("{s}: {v:?}"))
            .collect();
        if err.is_none() && disagree.is_empty() && !by.is_empty() {
            return Ok(format!(
                "{} in {:?}",
                by.iter()
                    .map(|(s, v)| format!(
                        "{s}: applied {} next_ordinal {:?} x{}",
                        v[0].1,
                        v[0].2,
                        v.len()
                    ))
                    .collect::<Vec<_>>()
                    .join("; "),
                t0.elapsed()
            ));
        }
        if t0.elapsed() > timeout {
            bail!("replicas do not agree after {timeout:?}: {disagree:?} {err:?}");
        }
        tokio::time::sleep(Duration::from_millis(300)).await;
    }
}

/// Run `f` on a fresh multi-threaded tokio runtime whose every thread lives in the network
/// lab's client namespace (when `lab` is set), so the test's sockets reach the nodes' 10.77.0.x
/// addresses and nothing else. The runtime runs on its own OS thread: the caller's thread keeps
/// its namespace.
pub fn run_in_lab<F, Fut, T>(lab: Option<Arc<NetLab>>, f: F) -> T
where
    F: FnOnce(Option<Arc<NetLab>>) -> Fut + Send + 'static,
    Fut: std::future::Future<Output = T>,
    T: Send + 'static,
{
    std::thread::Builder::new()
        .name("chaos-main".into())
        .spawn(move || {
            if let Some(l) = &lab {
                l.enter_client().expect("setns into the client namespace");
            }
            let enter = lab.clone();
            let rt = tokio::runtime::Builder::new_multi_thread()
                .worker_threads(4)
                .enable_all()
                .on_thread_start(move || {
                    if let Some(l) = &enter {
                        l.enter_client().expect("setns into the client namespace");
                    }
                })
                .build()
                .expect("tokio runtime");
            let out = rt.block_on(f(lab));
            rt.shutdown_timeout(Duration::from_secs(5));
            out
        })
        .expect("spawn chaos thread")
        .join()
        .unwrap_or_else(|p| std::panic::resume_unwind(p))
}

/// The network lab to use for `nodes` nodes: `Some` when namespaces work here.
pub fn lab_if_available(nodes: usize) -> Result<Option<Arc<NetLab>>> {
    if NetLab::available() {
        Ok(Some(Arc::new(NetLab::create(nodes)?)))
    } else {
        Ok(None)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn schedules_are_reproducible() {
        let kinds: Vec<FaultKind> = FaultKind::PROCESS
            .iter()
            .chain(FaultKind::CLOCK)
            .chain(FaultKind::NETWORK)
            .copied()
            .collect();
        let a = Schedule::generate(42, &kinds, 50, Duration::from_secs(3600));
        let b = Schedule::generate(42, &kinds, 50, Duration::from_secs(3600));
        let c = Schedule::generate(43, &kinds, 50, Duration::from_secs(3600));
        assert_eq!(a, b);
        assert_ne!(a, c);
        assert_eq!(a.steps.len(), 50);
        // The first |kinds| steps cover every kind once.
        let first: BTreeSet<FaultKind> = a.steps[..kinds.len()].iter().map(|s| s.kind).collect();
        assert_eq!(first.len(), kinds.len());
        for s in &a.steps {
            if matches!(s.kind, FaultKind::PauseRandom | FaultKind::PauseShardLeader) {
                assert!(s.hold_ms > 2_000, "pauses outlast the election timeout");
            }
        }
        let short = Schedule::generate(1, &kinds, 1000, Duration::from_secs(60));
        let total: u64 = short.steps.iter().map(|s| s.hold_ms + s.quiet_ms).sum();
        assert!(total < 60_000 + 12_000, "budget respected: {total}");
    }

    #[test]
    fn chaos_short_schedule_covers_every_kind() {
        // chaos_short: seed 7, 14 faults, 120 s; every kind, the clock jump included.
        let kinds: Vec<FaultKind> = FaultKind::PROCESS
            .iter()
            .chain(FaultKind::CLOCK)
            .chain(FaultKind::NETWORK)
            .copied()
            .collect();
        for k in [
            kinds.clone(),
            [FaultKind::PROCESS, FaultKind::CLOCK].concat(),
        ] {
            let s = Schedule::generate(7, &k, 14, Duration::from_secs(120));
            let seen: BTreeSet<FaultKind> = s.steps.iter().map(|s| s.kind).collect();
            assert_eq!(seen.len(), k.len(), "{s:?}");
        }
    }

    #[test]
    fn analyze_measures_gaps_and_failover() {
        let ack = |shard: &str, started: u64, at: u64| ProducerAttempt {
            payload_id: format!("{shard}-{at}"),
            partition_key: "k".into(),
            key_counter: 0,
            attempt: 1,
            started_ms: started,
            at_ms: at,
            outcome: Outcome::Ok {
                shard_id: shard.into(),
                seq: "1".into(),
            },
        };
        let attempts = vec![
            ack("s0", 900, 950),
            ack("s0", 990, 3_000), // sent before the fault: not a failover ack
            ack("s0", 1_500, 3_200),
            ack("s0", 3_300, 3_400),
            ack("s1", 900, 1_100),
            ack("s1", 1_100, 1_200),
            ack("s1", 1_200, 1_300),
        ];
        let ev = FaultEvent {
            step: 0,
            kind: FaultKind::KillShardLeader,
            nodes: vec![0],
            shard: Some("s0".into()),
            start_ms: 1_000,
            end_ms: 2_000,
            note: String::new(),
            leaders: String::new(),
            probe_acks: [
                ("s0".to_string(), vec![1_700, 1_800]),
                ("s1".into(), vec![1_100]),
            ]
            .into_iter()
            .collect(),
        };
        let mut no_probe = ev.clone();
        no_probe.probe_acks.clear();
        // Without probes: the first writer ack of a request sent after the start.
        let st = analyze(&[no_probe], &attempts, &BTreeSet::new());
        assert_eq!(st[0].failover_ms, Some(2_200));
        let st = analyze(&[ev], &attempts, &BTreeSet::new());
        // The probe of s0 acked at 1700, before any writer request sent after the start.
        assert_eq!(st[0].failover_ms, Some(700));
        // s0: 1000 -> 3000 is the longest gap; s1's last ack at 1300 leaves 1300 -> (none).
        assert_eq!(st[0].worst_shard, "s0");
        assert_eq!(st[0].writer_unavail_ms, 2_000);
        // Probes: s0 1000 -> 1700 (700), s1 1100 -> 2000 (900, the tail to the heal).
        assert_eq!(st[0].probe_unavail_ms, 900);
        let t = summarize(&st);
        assert!(
            t.contains("kill-shard-leader | 1 | 700 / 700 / 700 | 900 / 900 / 900"),
            "{t}"
        );
    }
}
