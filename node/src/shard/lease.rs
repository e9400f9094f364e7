//! Enhanced fan-out subscription leases, held in memory by a shard group's leader.
//!
//! One entry per consumer (name and creation seconds) of the shard: which subscription holds
//! the lease (a random token the subscribing node picked), when that subscription started,
//! and when its holder last showed it was alive. SubscribeToShard takes the lease here
//! ([`LeaseTable::acquire`]) whichever node the request arrived at, so the 5-second rule is
//! cluster-wide: a second subscription within [`TAKEOVER_AFTER`] of the holder's start is
//! refused, a later one takes over. The holder presents its claim on every read
//! ([`LeaseTable::check`]): a taken-over holder is told so (and reads waiting on the leader
//! are woken through [`LeaseTable::changes`]); a claim the table does not know (a new leader
//! starts with an empty table) re-creates the entry with the holder's own start time.
//!
//! Memory is bounded: an entry idle for [`LEASE_IDLE_EXPIRY`] (longer than any subscription
//! lives) is dropped, and at most [`MAX_LEASES`] entries are kept, the least recently
//! touched going first.

use std::collections::HashMap;
use std::time::{Duration, Instant};

use serde::{Deserialize, Serialize};
use tokio::sync::watch;

/// A younger subscription of the same consumer and shard refuses a new one.
pub const TAKEOVER_AFTER: Duration = Duration::from_secs(5);
/// An entry nobody touched for this long is dropped. Longer than a subscription lives
/// (5 minutes), so a superseded holder can no longer be reading when its successor's
/// entry goes.
pub const LEASE_IDLE_EXPIRY: Duration = Duration::from_secs(330);
/// Most entries one shard keeps.
pub const MAX_LEASES: usize = 1024;

/// A subscription's claim on the lease of its consumer on one shard.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct LeaseClaim {
    pub consumer: String,
    pub consumer_created_secs: u64,
    /// Random token naming the subscription.
    pub holder: u64,
    /// How long ago the subscription started (its own clock, so no clock skew matters).
    pub age_ms: u64,
}

/// The answer to [`LeaseTable::acquire`].
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Acquired {
    /// The lease is the claimant's; `replaced` is the holder it took over from, if any.
    Granted { replaced: Option<u64> },
    /// A subscription younger than [`TAKEOVER_AFTER`] holds it; it started `age_ms` ago.
    InUse { age_ms: u64 },
}

struct Entry {
    holder: u64,
    started: Instant,
    touched: Instant,
    /// The holder released the lease (its subscription ended).
    ended: bool,
}

/// The leases of one shard.
pub struct LeaseTable {
    entries: HashMap<(String, u64), Entry>,
    /// Bumped whenever a holder is taken over, to wake its waiting reads.
    changes: watch::Sender<u64>,
}

impl Default for LeaseTable {
    fn default() -> Self {
        Self {
            entries: HashMap::new(),
            changes: watch::channel(0).0,
        }
    }
}

fn key(c: &LeaseClaim) -> (String, u64) {
    (c.consumer.clone(), c.consumer_created_secs)
}

impl LeaseTable {
    /// A receiver that changes whenever some holder of this shard is taken over.
    pub fn changes(&self) -> watch::Receiver<u64> {
        self.changes.subscribe()
    }

    pub fn len(&self) -> usize {
        self.entries.len()
    }

    pub fn is_empty(&self) -> bool {
        self.entries.is_empty()
    }

    /// Drops idle entries, then the least recently touched ones beyond [`MAX_LEASES`] - 1
    /// (making room for one insert).
    fn expire(&mut self, now: Instant) {
        self.entries
            .retain(|_, e| now.saturating_duration_since(e.touched) < LEASE_IDLE_EXPIRY);
        while self.entries.len() >= MAX_LEASES {
            let oldest = self
                .entries
                .iter()
                .min_by_key(|(_, e)| e.touched)
                .map(|(k, _)| k.clone());
            match oldest {
                Some(k) => self.entries.remove(&k),
                None => break,
            };
        }
    }

    /// Takes the lease for a new subscription (`claim.age_ms` is ignored: it starts now).
    pub fn acquire(&mut self, claim: &LeaseClaim, now: Instant) -> Acquired {
        let k = key(claim);
        let mut replaced = None;
        if let Some(e) = self.entries.get(&k) {
            if !e.ended && e.holder != claim.holder {
                let age = now.saturating_duration_since(e.started);
                if age < TAKEOVER_AFTER {
                    return Acquired::InUse {
                        age_ms: age.as_millis() as u64,
                    };
                }
                replaced = Some(e.holder);
            }
        } else {
            self.expire(now);
        }
        self.entries.insert(
            k,
            Entry {
                holder: claim.holder,
                started: now,
                touched: now,
                ended: false,
            },
        );
        if replaced.is_some() {
            self.changes.send_modify(|n| *n = n.wrapping_add(1));
        }
        Acquired::Granted { replaced }
    }

    /// Whether `claim` still holds its lease; touches it. An unknown claim (this leader is
    /// new, or the entry expired) is re-created with the claim's own start time.
    pub fn check(&mut self, claim: &LeaseClaim, now: Instant) -> bool {
        let k = key(claim);
        if let Some(e) = self.entries.get_mut(&k) {
            if e.holder != claim.holder {
                return false;
            }
            e.touched = now;
            return true;
        }
        self.expire(now);
        let age = Duration::from_millis(claim.age_ms);
        self.entries.insert(
            k,
            Entry {
                holder: claim.holder,
                started: now.checked_sub(age).unwrap_or(now),
                touched: now,
                ended: false,
            },
        );
        true
    }

    /// Marks the lease free if `claim` holds it. The entry stays (until it expires) so that
    /// an older, superseded holder cannot re-create it.
    pub fn release(&mut self, claim: &LeaseClaim, now: Instant) {
        if let Some(e) = self.entries.get_mut(&key(claim)) {
            if e.holder == claim.holder {
                e.ended = true;
                e.touched = now;
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn claim(holder: u64, age_ms: u64) -> LeaseClaim {
        LeaseClaim {
            consumer: "c".into(),
            consumer_created_secs: 7,
            holder,
            age_ms,
        }
    }

    #[test]
    fn second_within_5s_refused_later_takes_over() {
        let mut t = LeaseTable::default();
        let t0 = Instant::now();
        assert_eq!(
            t.acquire(&claim(1, 0), t0),
            Acquired::Granted { replaced: None }
        );
        let later = t0 + Duration::from_secs(2);
        assert_eq!(
            t.acquire(&claim(2, 0), later),
            Acquired::InUse { age_ms: 2000 }
        );
        assert!(t.check(&claim(1, 2000), later));
        let mut changes = t.changes();
        let after = t0 + TAKEOVER_AFTER + Duration::from_millis(1);
        assert_eq!(
            t.acquire(&claim(2, 0), after),
            Acquired::Granted { replaced: Some(1) }
        );
        assert!(changes.has_changed().unwrap());
        changes.mark_unchanged();
        assert!(!t.check(&claim(1, 5001), after));
        assert!(t.check(&claim(2, 0), after));
        // The new holder is young again.
        assert!(matches!(
            t.acquire(&claim(3, 0), after + Duration::from_secs(1)),
            Acquired::InUse { .. }
        ));
    }

    #[test]
    fn released_lease_is_free_and_superseded_holder_stays_out() {
        let mut t = LeaseTable::default();
        let t0 = Instant::now();
        t.acquire(&claim(1, 0), t0);
        let t6 = t0 + Duration::from_secs(6);
        t.acquire(&claim(2, 0), t6);
        t.release(&claim(2, 0), t6);
        // Holder 1 was taken over; the released entry still says so.
        assert!(!t.check(&claim(1, 6000), t6));
        // A released lease does not refuse a new subscription.
        assert_eq!(
            t.acquire(&claim(3, 0), t6 + Duration::from_millis(10)),
            Acquired::Granted { replaced: None }
        );
        // Releasing with a stale claim changes nothing.
        t.release(&claim(1, 0), t6);
        assert!(t.check(&claim(3, 10), t6 + Duration::from_millis(20)));
    }

    #[test]
    fn new_leader_learns_holders_from_their_reads() {
        let mut t = LeaseTable::default();
        let now = Instant::now() + Duration::from_secs(60);
        // A holder that started 1 s ago on the old leader re-creates its entry...
        assert!(t.check(&claim(1, 1000), now));
        // ...so a new subscription is refused until its 5 s are over.
        assert_eq!(
            t.acquire(&claim(2, 0), now + Duration::from_secs(1)),
            Acquired::InUse { age_ms: 2000 }
        );
        assert_eq!(
            t.acquire(&claim(2, 0), now + Duration::from_secs(4)),
            Acquired::Granted { replaced: Some(1) }
        );
    }

    #[test]
    fn memory_is_bounded() {
        let mut t = LeaseTable::default();
        let t0 = Instant::now();
        for i in 0..(MAX_LEASES as u64 + 50) {
            let c = LeaseClaim {
                consumer: format!("c{i}"),
                consumer_created_secs: 1,
                holder: i,
                age_ms: 0,
            };
            t.acquire(&c, t0 + Duration::from_millis(i));
        }
        assert_eq!(t.len(), MAX_LEASES);
        // Idle entries expire.
        t.acquire(
            &claim(1, 0),
            t0 + LEASE_IDLE_EXPIRY + Duration::from_secs(10),
        );
        assert_eq!(t.len(), 1);
    }
}
