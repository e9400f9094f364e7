//! Cluster time: the wall-clock time a node uses for everything other nodes also judge —
//! arrival timestamps, retention cutoffs, shard expiry, seal times, iterator and `NextToken`
//! ages, the SigV4 time-skew check, `AT_TIMESTAMP` bounds and the per-second meters.
//!
//! One node's `CLOCK_REALTIME` can step by hours (an NTP step, a VM resumed from a snapshot,
//! an operator's `date -s`) while its `CLOCK_MONOTONIC` does not. So every node samples the
//! raw wall clock of every other registered node over the peer port every
//! [`SAMPLE_EVERY`], and extrapolates each sample with its own monotonic clock: a reading
//! `w` of peer `p` received at monotonic instant `i` (corrected by half the round trip) is
//! worth `w + (now - i)` later, whatever this node's own wall clock does meanwhile. Samples
//! older than [`FRESH_FOR`] are dropped (the peer is down or cut off).
//!
//! Cluster time is the **lower median** of this node's own wall clock and the fresh peer
//! estimates. With at most one wrong clock among the readings, the lower median is never
//! later than a correct clock: with three readings it lies between the two correct ones,
//! with two it is the earlier one. A node whose own clock jumps therefore keeps using the
//! others' time at once (no detection delay), and a peer whose clock jumps is outvoted.
//!
//! [`agreed_now_ms`] additionally requires readings from a majority of the registered nodes
//! (decommissioning ones left out)
//! (else `None`): retention trimming, which deletes data, runs only on agreed time.
//!
//! The sample request is a `Forward.Shard` call addressed to the reserved group
//! [`CLOCK_GROUP`] (no shard group has that id; the node answers it itself, with its raw wall
//! clock as a postcard `u64`), so the wire protocol is unchanged; a node that does not know
//! it answers `NotFound` and simply gives no sample.
//!
//! A process may host several nodes (the in-process tests): the process-wide functions use
//! the first node's clock that is still alive, and the raw wall clock when there is none
//! (the single-process dev server, unit tests).

use std::collections::BTreeMap;
use std::sync::{Arc, Mutex, RwLock, Weak};
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

use spate_control_plane::meta::MetaHandle;
use spate_control_plane::raft::codec::{decode, encode};
use spate_control_plane::raft::network::PeerChannels;
use spate_control_plane::raft::GroupId;
use spate_proto::grpc::GroupMessage;

/// The `Forward.Shard` group id that asks a node for its raw wall clock.
pub const CLOCK_GROUP: GroupId = u64::MAX;

/// How often every peer's wall clock is sampled.
pub const SAMPLE_EVERY: Duration = Duration::from_millis(500);
/// How long one sample stays usable.
pub const FRESH_FOR: Duration = Duration::from_secs(10);
/// Timeout of one sample request.
const SAMPLE_TIMEOUT: Duration = Duration::from_secs(1);

/// This process's raw wall clock, epoch ms.
pub fn wall_ms() -> u64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map(|d| d.as_millis() as u64)
        .unwrap_or(0)
}

/// The answer to a [`CLOCK_GROUP`] request: the raw wall clock, never an estimate (peers
/// combine independent readings).
pub fn answer_sample() -> Result<Vec<u8>, tonic::Status> {
    encode(&wall_ms()).map_err(|e| tonic::Status::internal(e.to_string()))
}

#[derive(Debug, Clone, Copy)]
struct Sample {
    /// The peer's wall clock at `at` (its answer plus half the round trip).
    wall_ms: u64,
    at: Instant,
}

/// One node's view of the cluster's clocks.
#[derive(Debug)]
pub struct ClusterClock {
    node: u64,
    samples: Mutex<BTreeMap<u64, Sample>>,
    /// Registered nodes (this one included), for the majority of [`Self::agreed_now_ms`].
    known: Mutex<usize>,
}

impl ClusterClock {
    pub fn new(node: u64) -> Arc<Self> {
        Arc::new(Self {
            node,
            samples: Mutex::new(BTreeMap::new()),
            known: Mutex::new(1),
        })
    }

    /// Record peer `peer`'s wall clock `wall_ms` as of monotonic instant `at`.
    pub fn record(&self, peer: u64, wall_ms: u64, at: Instant) {
        if peer == self.node {
            return;
        }
        let mut s = self.samples.lock().unwrap_or_else(|p| p.into_inner());
        s.insert(peer, Sample { wall_ms, at });
    }

    /// Set the number of registered nodes (this one included).
    pub fn set_known(&self, n: usize) {
        *self.known.lock().unwrap_or_else(|p| p.into_inner()) = n.max(1);
    }

    /// This node's wall clock `own_wall_ms` and every fresh peer estimate as of `now`.
    fn readings(&self, own_wall_ms: u64, now: Instant) -> Vec<u64> {
        let s = self.samples.lock().unwrap_or_else(|p| p.into_inner());
        let mut r = Vec::with_capacity(s.len() + 1);
        r.push(own_wall_ms);
        for sample in s.values() {
            let age = now.saturating_duration_since(sample.at);
            if age <= FRESH_FOR {
                r.push(sample.wall_ms + age.as_millis() as u64);
            }
        }
        r
    }

    /// Lower median of the readings, and how many there were.
    fn median_at(&self, own_wall_ms: u64, now: Instant) -> (u64, usize) {
        let mut r = self.readings(own_wall_ms, now);
        r.sort_unstable();
        (r[(r.len() - 1) / 2], r.len())
    }

    /// Cluster time, epoch ms (see the module doc).
    pub fn now_ms(&self) -> u64 {
        self.median_at(wall_ms(), Instant::now()).0
    }

    /// Cluster time read from a majority of the registered nodes, or `None` when fewer
    /// answer: a time no single wrong clock can move past every correct clock.
    pub fn agreed_now_ms(&self) -> Option<u64> {
        self.agreed_at(wall_ms(), Instant::now())
    }

    fn agreed_at(&self, own_wall_ms: u64, now: Instant) -> Option<u64> {
        let known = *self.known.lock().unwrap_or_else(|p| p.into_inner());
        let (t, n) = self.median_at(own_wall_ms, now);
        (n > known / 2).then_some(t)
    }
}

/// Clocks of the nodes in this process, first installed first.
static CLOCKS: RwLock<Vec<Weak<ClusterClock>>> = RwLock::new(Vec::new());

/// Make `clock` the process's cluster clock (the first one still alive is used).
pub fn install(clock: &Arc<ClusterClock>) {
    let mut v = CLOCKS.write().unwrap_or_else(|p| p.into_inner());
    v.retain(|w| w.strong_count() > 0);
    v.push(Arc::downgrade(clock));
}

fn current() -> Option<Arc<ClusterClock>> {
    let v = CLOCKS.read().unwrap_or_else(|p| p.into_inner());
    v.iter().find_map(Weak::upgrade)
}

/// Cluster time, epoch ms: the process's cluster clock, else the raw wall clock.
pub fn now_ms() -> u64 {
    match current() {
        Some(c) => c.now_ms(),
        None => wall_ms(),
    }
}

/// Agreed cluster time ([`ClusterClock::agreed_now_ms`]); the raw wall clock when the
/// process has no cluster clock (a single node is its own majority).
pub fn agreed_now_ms() -> Option<u64> {
    match current() {
        Some(c) => c.agreed_now_ms(),
        None => Some(wall_ms()),
    }
}

/// Samples every registered peer's wall clock every [`SAMPLE_EVERY`] until `clock` is dropped.
pub async fn run_sampler(clock: Weak<ClusterClock>, meta: MetaHandle, peers: Arc<PeerChannels>) {
    let mut tick = tokio::time::interval(SAMPLE_EVERY);
    tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Skip);
    loop {
        tick.tick().await;
        let Some(c) = clock.upgrade() else { return };
        // Decommissioned nodes do not count (a node replaced after a disk loss stays
        // registered, decommissioning, until it is forgotten).
        let view = meta.view();
        let nodes: Vec<(u64, String)> = view
            .state
            .nodes
            .values()
            .filter(|n| !view.state.decommissioning.contains(&n.id))
            .map(|n| (n.id, n.peer_addr.clone()))
            .collect();
        drop(view);
        if !nodes.is_empty() {
            c.set_known(nodes.len());
        }
        drop(c);
        let mut calls = tokio::task::JoinSet::new();
        for (id, addr) in nodes {
            let Some(c) = clock.upgrade() else { return };
            if id == c.node {
                continue;
            }
            let Ok(mut client) = peers.forward_client(&addr) else {
                continue;
            };
            calls.spawn(async move {
                let sent = Instant::now();
                // Addressed to `id`: a node that replaced `id` after a disk loss (same
                // address, new id) refuses, so no clock is counted twice.
                let req = GroupMessage {
                    group_id: CLOCK_GROUP,
                    payload: Vec::new(),
                    target_node: Some(id),
                    target_incarnation: None,
                };
                let res = tokio::time::timeout(SAMPLE_TIMEOUT, client.shard(req)).await;
                if let Ok(Ok(reply)) = res {
                    let at = Instant::now();
                    if let Ok(wall) = decode::<u64>(&reply.into_inner().payload) {
                        let half_rtt = at.duration_since(sent).as_millis() as u64 / 2;
                        c.record(id, wall + half_rtt, at);
                    }
                }
            });
        }
        while calls.join_next().await.is_some() {}
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const T: u64 = 1_800_000_000_000;
    const DAY: u64 = 86_400_000;

    #[test]
    fn one_wrong_clock_is_outvoted() {
        let now = Instant::now();
        let c = ClusterClock::new(0);
        c.set_known(3);
        c.record(1, T, now);
        c.record(2, T + 5, now);
        // Own clock right: the median is a correct clock.
        assert_eq!(c.median_at(T + 2, now), (T + 2, 3));
        // Own clock 25 h ahead or 10 min behind: the peers' time wins at once.
        assert_eq!(c.median_at(T + DAY + 3_600_000, now).0, T + 5);
        assert_eq!(c.median_at(T - 600_000, now).0, T);
        // A peer's clock 25 h ahead: outvoted.
        c.record(2, T + DAY + 3_600_000, now);
        assert_eq!(c.median_at(T + 2, now).0, T + 2);
    }

    #[test]
    fn peer_estimates_follow_the_monotonic_clock() {
        let t0 = Instant::now();
        let c = ClusterClock::new(0);
        c.record(1, T, t0);
        c.record(2, T, t0);
        let later = t0 + Duration::from_secs(4);
        // Own wall clock stepped back an hour during those 4 s: ignored.
        assert_eq!(c.median_at(T - 3_600_000, later).0, T + 4_000);
        // Stale samples are dropped: only the own clock is left.
        let much_later = t0 + FRESH_FOR + Duration::from_secs(1);
        assert_eq!(c.median_at(T + 7, much_later), (T + 7, 1));
    }

    #[test]
    fn agreement_needs_a_majority_and_is_never_later_than_a_correct_clock() {
        let now = Instant::now();
        let c = ClusterClock::new(0);
        c.set_known(3);
        // Alone, with a clock 25 h ahead: no agreed time.
        assert_eq!(c.agreed_at(T + DAY, now), None);
        c.record(1, T, now);
        // Two of three: the earlier of the two.
        assert_eq!(c.agreed_at(T + DAY, now), Some(T));
        c.set_known(5);
        // Two of five: no majority.
        assert_eq!(c.agreed_at(T + DAY, now), None);
        c.record(2, T + 1, now);
        // Three of five: the median.
        assert_eq!(c.agreed_at(T + DAY, now), Some(T + 1));
    }
}
