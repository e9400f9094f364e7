//! The history checker: given what producers attempted and were told, what tailing readers saw
//! during the run, and a final full read of every shard, find every safety violation.
//!
//! Checks:
//! * every acknowledged record is in the final read at exactly its acknowledged shard and
//!   sequence number ([`Violation::LostAck`], [`Violation::WrongAckPosition`]);
//! * every record a reader observed is still there, at the same place ([`Violation::VanishedRead`]);
//! * a payload appears more than once only if a producer attempt for it had an unknown outcome and
//!   was retried ([`Violation::Duplicate`]);
//! * sequence numbers strictly increase per shard, and per reader per shard
//!   ([`Violation::NonIncreasingSeq`], [`Violation::ReaderWentBackwards`]); a child's first number
//!   is above its parents' last ([`Violation::ChildBeforeParent`]);
//! * per partition key, acknowledged records keep the producer's counter order along the
//!   lineage: within a shard and from parents to children, the final read's order
//!   ([`Violation::KeyOrder`]);
//! * when the final read carries hash ranges: the open shards tile [0, 2^128 − 1]
//!   ([`Violation::HashSpace`]) and every closed shard is covered by its children
//!   ([`Violation::ParentNotCovered`]);
//! * nothing is read that no producer attempted ([`Violation::Phantom`]).
//!
//! Sequence numbers are compared as unsigned big integers (length, then lexicographic).

use std::cmp::Ordering;
use std::collections::{BTreeMap, HashMap, HashSet};

use serde::Serialize;

/// The outcome of one producer attempt.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub enum Outcome {
    /// Acknowledged at this shard and sequence number.
    Ok { shard_id: String, seq: String },
    /// Definitely not applied (throttled, validation error, connection refused).
    Failed(String),
    /// May or may not have been applied (timeout, reset, 5xx, InternalFailure).
    Unknown(String),
}

/// One producer attempt to write one record.
#[derive(Debug, Clone, Serialize)]
pub struct ProducerAttempt {
    /// Unique id of the record's payload (the same across retries).
    pub payload_id: String,
    pub partition_key: String,
    /// Per-partition-key counter assigned by the producer (increasing per key).
    pub key_counter: u64,
    /// 1-based attempt number for this payload.
    pub attempt: u32,
    /// Milliseconds since the start of the run when the attempt was sent.
    pub started_ms: u64,
    /// Milliseconds since the start of the run when the attempt finished.
    pub at_ms: u64,
    pub outcome: Outcome,
}

/// A record as read back (by a tailing reader or by the final read), decoded.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct ReadRecord {
    pub shard_id: String,
    pub seq: String,
    pub partition_key: String,
    /// `None` if the data could not be decoded as a workload payload.
    pub payload_id: Option<String>,
    pub key_counter: u64,
}

/// One record seen by a tailing reader during the run.
#[derive(Debug, Clone, Serialize)]
pub struct Observation {
    pub reader: String,
    pub record: ReadRecord,
}

/// The final read of one shard, from TRIM_HORIZON, in order.
#[derive(Debug, Clone, Default, Serialize)]
pub struct ShardRead {
    pub shard_id: String,
    /// Parent shard ids (must be listed earlier in [`History::final_read`]).
    pub parents: Vec<String>,
    pub records: Vec<ReadRecord>,
    /// The shard's hash key range (decimal start, end) as listed; `None` skips the tiling checks.
    pub hash_range: Option<(String, String)>,
    /// Closed by a reshard (it has an ending sequence number).
    pub closed: bool,
}

/// Everything the checker needs.
#[derive(Debug, Clone, Default, Serialize)]
pub struct History {
    pub attempts: Vec<ProducerAttempt>,
    pub observations: Vec<Observation>,
    /// Every shard, parents before children.
    pub final_read: Vec<ShardRead>,
}

/// One safety violation.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub enum Violation {
    LostAck {
        payload_id: String,
        shard_id: String,
        seq: String,
    },
    WrongAckPosition {
        payload_id: String,
        acked_shard: String,
        acked_seq: String,
        found_at: Vec<(String, String)>,
    },
    VanishedRead {
        reader: String,
        payload_id: Option<String>,
        shard_id: String,
        seq: String,
    },
    Duplicate {
        payload_id: String,
        occurrences: Vec<(String, String)>,
        unknown_attempts: usize,
    },
    NonIncreasingSeq {
        shard_id: String,
        prev: String,
        next: String,
    },
    ReaderWentBackwards {
        reader: String,
        shard_id: String,
        prev: String,
        next: String,
    },
    ChildBeforeParent {
        child: String,
        parent: String,
        child_first: String,
        parent_last: String,
    },
    KeyOrder {
        shard_id: String,
        partition_key: String,
        prev_counter: u64,
        counter: u64,
        seq: String,
    },
    Phantom {
        shard_id: String,
        seq: String,
        payload_id: Option<String>,
    },
    UnknownParent {
        child: String,
        parent: String,
    },
    /// The open shards do not tile [0, 2^128 - 1] (a gap, an overlap, a bad range).
    HashSpace {
        detail: String,
    },
    /// A closed shard whose children do not cover its hash range.
    ParentNotCovered {
        parent: String,
        detail: String,
    },
}

/// The checker's verdict.
#[derive(Debug, Clone, Default, Serialize)]
pub struct Report {
    pub attempts: usize,
    pub payloads: usize,
    pub acked: usize,
    pub failed_only: usize,
    pub unknown_unacked: usize,
    pub observations: usize,
    pub shards: usize,
    pub records_read: usize,
    pub duplicates_explained: usize,
    pub violations: Vec<Violation>,
}

impl Report {
    /// True when there is no violation.
    pub fn ok(&self) -> bool {
        self.violations.is_empty()
    }

    /// A one-paragraph summary plus up to `max` violations.
    pub fn summary(&self, max: usize) -> String {
        let mut s = format!(
            "attempts={} payloads={} acked={} failed_only={} unknown_unacked={} observations={} \
             shards={} records_read={} duplicates_explained={} violations={}",
            self.attempts,
            self.payloads,
            self.acked,
            self.failed_only,
            self.unknown_unacked,
            self.observations,
            self.shards,
            self.records_read,
            self.duplicates_explained,
            self.violations.len()
        );
        for v in self.violations.iter().take(max) {
            s.push_str(&format!("\n  {v:?}"));
        }
        if self.violations.len() > max {
            s.push_str(&format!("\n  ... {} more", self.violations.len() - max));
        }
        s
    }
}

/// Compare two decimal sequence numbers as unsigned big integers.
pub fn cmp_seq(a: &str, b: &str) -> Ordering {
    let a = a.trim_start_matches('0');
    let b = b.trim_start_matches('0');
    a.len().cmp(&b.len()).then_with(|| a.cmp(b))
}

#[derive(Default)]
struct PayloadInfo {
    acks: Vec<(String, String)>,
    unknown: usize,
    attempts: usize,
}

/// Check a history; see the module documentation for the rules.
pub fn check(h: &History) -> Report {
    let mut report = Report {
        attempts: h.attempts.len(),
        observations: h.observations.len(),
        shards: h.final_read.len(),
        ..Report::default()
    };
    let v = &mut report.violations;

    // Producer side, per payload.
    let mut payloads: HashMap<&str, PayloadInfo> = HashMap::new();
    for a in &h.attempts {
        let p = payloads.entry(a.payload_id.as_str()).or_default();
        p.attempts += 1;
        match &a.outcome {
            Outcome::Ok { shard_id, seq } => p.acks.push((shard_id.clone(), seq.clone())),
            Outcome::Unknown(_) => p.unknown += 1,
            Outcome::Failed(_) => {}
        }
    }
    report.payloads = payloads.len();
    for p in payloads.values() {
        if !p.acks.is_empty() {
            report.acked += 1;
        } else if p.unknown > 0 {
            report.unknown_unacked += 1;
        } else {
            report.failed_only += 1;
        }
    }

    // Final read index: (shard, seq) -> record; payload -> positions.
    let mut at: HashMap<(&str, &str), &ReadRecord> = HashMap::new();
    let mut positions: BTreeMap<&str, Vec<(String, String)>> = BTreeMap::new();
    let mut last_seq: HashMap<&str, Option<&str>> = HashMap::new();
    let mut first_seq: HashMap<&str, Option<&str>> = HashMap::new();
    for shard in &h.final_read {
        let sid = shard.shard_id.as_str();
        let mut prev: Option<&str> = None;
        for r in &shard.records {
            report.records_read += 1;
            if let Some(p) = prev {
                if cmp_seq(p, &r.seq) != Ordering::Less {
                    v.push(Violation::NonIncreasingSeq {
                        shard_id: sid.into(),
                        prev: p.into(),
                        next: r.seq.clone(),
                    });
                }
            }
            prev = Some(&r.seq);
            at.insert((sid, r.seq.as_str()), r);
            match &r.payload_id {
                Some(id) if payloads.contains_key(id.as_str()) => positions
                    .entry(id.as_str())
                    .or_default()
                    .push((sid.into(), r.seq.clone())),
                _ => v.push(Violation::Phantom {
                    shard_id: sid.into(),
                    seq: r.seq.clone(),
                    payload_id: r.payload_id.clone(),
                }),
            }
        }
        first_seq.insert(sid, shard.records.first().map(|r| r.seq.as_str()));
        // Lineage: every parent listed earlier, and its last record below our first.
        for parent in &shard.parents {
            match last_seq.get(parent.as_str()) {
                None => v.push(Violation::UnknownParent {
                    child: sid.into(),
                    parent: parent.clone(),
                }),
                Some(Some(pl)) => {
                    if let Some(Some(cf)) = first_seq.get(sid) {
                        if cmp_seq(pl, cf) != Ordering::Less {
                            v.push(Violation::ChildBeforeParent {
                                child: sid.into(),
                                parent: parent.clone(),
                                child_first: (*cf).into(),
                                parent_last: (*pl).into(),
                            });
                        }
                    }
                }
                Some(None) => {}
            }
        }
        last_seq.insert(sid, prev);
    }

    // Acknowledged records are exactly where they were acknowledged.
    let mut payload_ids: Vec<&&str> = payloads.keys().collect();
    payload_ids.sort();
    for id in payload_ids {
        let p = &payloads[*id];
        for (shard_id, seq) in &p.acks {
            match at.get(&(shard_id.as_str(), seq.as_str())) {
                Some(r) if r.payload_id.as_deref() == Some(*id) => {}
                found => {
                    let found_at = positions.get(*id).cloned().unwrap_or_default();
                    if found.is_none() && found_at.is_empty() {
                        v.push(Violation::LostAck {
                            payload_id: (*id).into(),
                            shard_id: shard_id.clone(),
                            seq: seq.clone(),
                        });
                    } else {
                        v.push(Violation::WrongAckPosition {
                            payload_id: (*id).into(),
                            acked_shard: shard_id.clone(),
                            acked_seq: seq.clone(),
                            found_at,
                        });
                    }
                }
            }
        }
        // Duplicates: at most one copy per attempt that succeeded or may have succeeded, and
        // only if some attempt had an unknown outcome.
        if let Some(occ) = positions.get(*id) {
            if occ.len() > 1 {
                let may_have_applied = p.acks.len() + p.unknown;
                if p.unknown == 0 || occ.len() > may_have_applied {
                    v.push(Violation::Duplicate {
                        payload_id: (*id).into(),
                        occurrences: occ.clone(),
                        unknown_attempts: p.unknown,
                    });
                } else {
                    report.duplicates_explained += occ.len() - 1;
                }
            }
        }
    }

    // Observations: still there, same payload; each reader moves forward per shard.
    let mut reader_pos: HashMap<(&str, &str), &str> = HashMap::new();
    for o in &h.observations {
        let r = &o.record;
        match at.get(&(r.shard_id.as_str(), r.seq.as_str())) {
            Some(f) if f.payload_id == r.payload_id => {}
            _ => v.push(Violation::VanishedRead {
                reader: o.reader.clone(),
                payload_id: r.payload_id.clone(),
                shard_id: r.shard_id.clone(),
                seq: r.seq.clone(),
            }),
        }
        let key = (o.reader.as_str(), r.shard_id.as_str());
        if let Some(prev) = reader_pos.get(&key) {
            if cmp_seq(prev, &r.seq) != Ordering::Less {
                v.push(Violation::ReaderWentBackwards {
                    reader: o.reader.clone(),
                    shard_id: r.shard_id.clone(),
                    prev: (*prev).into(),
                    next: r.seq.clone(),
                });
            }
        }
        reader_pos.insert(key, &r.seq);
    }

    // Per-key order along the lineage (the final read lists parents before children, and a
    // key maps to one open shard at a time), over records at their acknowledged position.
    let acked_at: HashSet<(&str, &str)> = payloads
        .values()
        .flat_map(|p| p.acks.iter().map(|(s, q)| (s.as_str(), q.as_str())))
        .collect();
    let mut last: HashMap<&str, u64> = HashMap::new();
    for shard in &h.final_read {
        for r in &shard.records {
            if !acked_at.contains(&(shard.shard_id.as_str(), r.seq.as_str())) {
                continue;
            }
            if let Some(prev) = last.get(r.partition_key.as_str()) {
                if *prev >= r.key_counter {
                    v.push(Violation::KeyOrder {
                        shard_id: shard.shard_id.clone(),
                        partition_key: r.partition_key.clone(),
                        prev_counter: *prev,
                        counter: r.key_counter,
                        seq: r.seq.clone(),
                    });
                }
            }
            last.insert(&r.partition_key, r.key_counter);
        }
    }
    check_hash_space(&h.final_read, v);
    report
}

/// Lineage of the hash space: open shards tile [0, 2^128 - 1]; each closed shard's children
/// cover its range. Skipped when a shard has no range (histories without them).
fn check_hash_space(shards: &[ShardRead], v: &mut Vec<Violation>) {
    let mut ranges: Vec<(&ShardRead, u128, u128)> = Vec::new();
    for s in shards {
        let Some((a, b)) = &s.hash_range else {
            return;
        };
        match (a.parse::<u128>(), b.parse::<u128>()) {
            (Ok(a), Ok(b)) if a <= b => ranges.push((s, a, b)),
            _ => v.push(Violation::HashSpace {
                detail: format!("{} has a bad range {a}..{b}", s.shard_id),
            }),
        }
    }
    if ranges.is_empty() {
        return;
    }
    let mut open: Vec<(u128, u128, &str)> = ranges
        .iter()
        .filter(|r| !r.0.closed)
        .map(|r| (r.1, r.2, r.0.shard_id.as_str()))
        .collect();
    open.sort();
    match (open.first(), open.last()) {
        (Some(f), Some(l)) => {
            if f.0 != 0 {
                v.push(Violation::HashSpace {
                    detail: format!("the first open shard {} starts at {}", f.2, f.0),
                });
            }
            if l.1 != u128::MAX {
                v.push(Violation::HashSpace {
                    detail: format!("the last open shard {} ends at {}", l.2, l.1),
                });
            }
        }
        _ => v.push(Violation::HashSpace {
            detail: "no open shard".into(),
        }),
    }
    for w in open.windows(2) {
        if w[0].1.checked_add(1) != Some(w[1].0) {
            v.push(Violation::HashSpace {
                detail: format!(
                    "{} ends at {} but {} starts at {} (gap or overlap)",
                    w[0].2, w[0].1, w[1].2, w[1].0
                ),
            });
        }
    }
    for (p, ps, pe) in ranges.iter().filter(|r| r.0.closed) {
        let mut kids: Vec<(u128, u128)> = ranges
            .iter()
            .filter(|c| c.0.parents.contains(&p.shard_id))
            .map(|c| (c.1, c.2))
            .collect();
        kids.sort();
        let mut covered_to: Option<u128> = None; // highest key covered so far, from *ps
        let mut ok = !kids.is_empty() && kids[0].0 <= *ps;
        for (a, b) in &kids {
            if let Some(c) = covered_to {
                if *a > c.saturating_add(1) {
                    ok = false;
                }
            }
            covered_to = Some(covered_to.map_or(*b, |c| c.max(*b)));
        }
        if !ok || covered_to.is_none_or(|c| c < *pe) {
            v.push(Violation::ParentNotCovered {
                parent: p.shard_id.clone(),
                detail: format!("range {ps}..{pe}, children {kids:?}"),
            });
        }
    }
}

#[cfg(test)]
#[path = "history_tests.rs"]
mod tests;
