//! Unit tests of the history checker: a clean history passes, each kind of broken history is
//! caught.

use super::*;

const S0: &str = "shardId-000000000000";
const S1: &str = "shardId-000000000001";

fn seq(n: u64) -> String {
    // 56-digit shaped, like real Kinesis numbers.
    format!("4963{n:052}")
}

fn rec(shard: &str, n: u64, key: &str, id: &str, counter: u64) -> ReadRecord {
    ReadRecord {
        shard_id: shard.into(),
        seq: seq(n),
        partition_key: key.into(),
        payload_id: Some(id.into()),
        key_counter: counter,
    }
}

fn ack(id: &str, key: &str, counter: u64, shard: &str, n: u64) -> ProducerAttempt {
    ProducerAttempt {
        payload_id: id.into(),
        partition_key: key.into(),
        key_counter: counter,
        attempt: 1,
        started_ms: 0,
        at_ms: 0,
        outcome: Outcome::Ok {
            shard_id: shard.into(),
            seq: seq(n),
        },
    }
}

/// Two shards, two keys each, one reader that saw a prefix of shard 0.
fn clean() -> History {
    let attempts = vec![
        ack("p1", "a", 0, S0, 1),
        ack("p2", "a", 1, S0, 2),
        ack("p3", "b", 0, S0, 3),
        ack("p4", "c", 0, S1, 1),
        ack("p5", "c", 1, S1, 5),
    ];
    let final_read = vec![
        ShardRead {
            shard_id: S0.into(),
            parents: vec![],
            records: vec![
                rec(S0, 1, "a", "p1", 0),
                rec(S0, 2, "a", "p2", 1),
                rec(S0, 3, "b", "p3", 0),
            ],
            ..ShardRead::default()
        },
        ShardRead {
            shard_id: S1.into(),
            parents: vec![],
            records: vec![rec(S1, 1, "c", "p4", 0), rec(S1, 5, "c", "p5", 1)],
            ..ShardRead::default()
        },
    ];
    let observations = vec![
        Observation {
            reader: "r0".into(),
            record: rec(S0, 1, "a", "p1", 0),
        },
        Observation {
            reader: "r0".into(),
            record: rec(S0, 2, "a", "p2", 1),
        },
    ];
    History {
        attempts,
        observations,
        final_read,
    }
}

fn only(h: &History) -> Vec<Violation> {
    let r = check(h);
    assert!(!r.ok(), "expected a violation: {}", r.summary(10));
    r.violations
}

#[test]
fn clean_history_passes() {
    let r = check(&clean());
    assert!(r.ok(), "{}", r.summary(10));
    assert_eq!(r.acked, 5);
    assert_eq!(r.records_read, 5);
    assert_eq!(r.payloads, 5);
}

#[test]
fn seq_compare_is_numeric() {
    assert_eq!(cmp_seq("9", "10"), Ordering::Less);
    assert_eq!(cmp_seq("010", "9"), Ordering::Greater);
    assert_eq!(cmp_seq("123", "123"), Ordering::Equal);
    assert_eq!(cmp_seq(&seq(2), &seq(10)), Ordering::Less);
}

#[test]
fn lost_ack_is_caught() {
    let mut h = clean();
    h.final_read[1].records.pop();
    let v = only(&h);
    assert!(matches!(&v[..], [Violation::LostAck { payload_id, .. }] if payload_id == "p5"));
}

#[test]
fn wrong_seq_is_caught() {
    let mut h = clean();
    // p5 is present, but at a different sequence number than acknowledged.
    h.final_read[1].records[1].seq = seq(6);
    let v = only(&h);
    assert!(
        v.iter().any(
            |x| matches!(x, Violation::WrongAckPosition { payload_id, .. } if payload_id == "p5")
        ),
        "{v:?}"
    );
}

#[test]
fn different_payload_at_acked_seq_is_caught() {
    let mut h = clean();
    h.attempts[4].outcome = Outcome::Ok {
        shard_id: S0.into(),
        seq: seq(3),
    };
    let v = only(&h);
    assert!(v.iter().any(
        |x| matches!(x, Violation::WrongAckPosition { payload_id, .. } if payload_id == "p5")
    ));
}

#[test]
fn vanished_read_is_caught() {
    let mut h = clean();
    h.observations.push(Observation {
        reader: "r1".into(),
        record: rec(S1, 3, "c", "p9", 7),
    });
    let v = only(&h);
    assert!(v
        .iter()
        .any(|x| matches!(x, Violation::VanishedRead { reader, .. } if reader == "r1")));
}

#[test]
fn reader_going_backwards_is_caught() {
    let mut h = clean();
    h.observations.push(Observation {
        reader: "r0".into(),
        record: rec(S0, 1, "a", "p1", 0),
    });
    let v = only(&h);
    assert!(
        matches!(&v[..], [Violation::ReaderWentBackwards { .. }]),
        "{v:?}"
    );
}

#[test]
fn reordered_key_is_caught() {
    let mut h = clean();
    // Producer acked counter 1 before counter 0 for key "c"... as read, 1 precedes 0.
    h.attempts[3] = ack("p4", "c", 1, S1, 1);
    h.attempts[4] = ack("p5", "c", 0, S1, 5);
    h.final_read[1].records = vec![rec(S1, 1, "c", "p4", 1), rec(S1, 5, "c", "p5", 0)];
    let v = only(&h);
    assert!(matches!(&v[..], [Violation::KeyOrder { partition_key, .. }] if partition_key == "c"));
}

#[test]
fn non_increasing_seq_is_caught() {
    let mut h = clean();
    h.final_read[0].records.swap(1, 2);
    let v = only(&h);
    assert!(v
        .iter()
        .any(|x| matches!(x, Violation::NonIncreasingSeq { .. })));
    // Equal numbers are not increasing either.
    let mut h = clean();
    h.attempts[4].outcome = Outcome::Ok {
        shard_id: S1.into(),
        seq: seq(1),
    };
    h.final_read[1].records[1].seq = seq(1);
    let v = only(&h);
    assert!(v
        .iter()
        .any(|x| matches!(x, Violation::NonIncreasingSeq { .. })));
}

#[test]
fn unexplained_duplicate_is_caught() {
    let mut h = clean();
    h.final_read[1].records.push(rec(S1, 7, "c", "p5", 1));
    let v = only(&h);
    assert!(matches!(&v[..], [Violation::Duplicate { payload_id, .. }] if payload_id == "p5"));
}

#[test]
fn duplicate_after_unknown_outcome_and_retry_is_allowed() {
    let mut h = clean();
    let mut first = h.attempts[4].clone();
    first.outcome = Outcome::Unknown("timeout".into());
    h.attempts.insert(4, first);
    h.attempts[5].attempt = 2;
    // The timed-out attempt was applied too, before the retry.
    h.final_read[1].records.insert(1, rec(S1, 4, "c", "p5", 1));
    let r = check(&h);
    assert!(r.ok(), "{}", r.summary(10));
    assert_eq!(r.duplicates_explained, 1);
    // But not three copies from two attempts.
    h.final_read[1].records.push(rec(S1, 9, "c", "p5", 1));
    let v = only(&h);
    assert!(matches!(&v[..], [Violation::Duplicate { .. }]), "{v:?}");
}

#[test]
fn unacked_unknown_record_may_appear_once() {
    let mut h = clean();
    h.attempts.push(ProducerAttempt {
        payload_id: "p6".into(),
        partition_key: "b".into(),
        key_counter: 1,
        attempt: 1,
        started_ms: 0,
        at_ms: 0,
        outcome: Outcome::Unknown("reset".into()),
    });
    h.final_read[0].records.push(rec(S0, 8, "b", "p6", 1));
    let r = check(&h);
    assert!(r.ok(), "{}", r.summary(10));
    assert_eq!(r.unknown_unacked, 1);
}

#[test]
fn phantom_record_is_caught() {
    let mut h = clean();
    h.final_read[0]
        .records
        .push(rec(S0, 9, "z", "never-written", 0));
    let v = only(&h);
    assert!(matches!(&v[..], [Violation::Phantom { .. }]));
}

#[test]
fn child_before_parent_is_caught() {
    let mut h = clean();
    h.final_read[1].parents = vec![S0.into()];
    // Child's first number (1) is below the parent's last (3).
    let v = only(&h);
    assert!(
        matches!(&v[..], [Violation::ChildBeforeParent { .. }]),
        "{v:?}"
    );
    let mut h = clean();
    h.final_read[0].parents = vec![S1.into()];
    let v = only(&h);
    assert!(matches!(&v[..], [Violation::UnknownParent { .. }]), "{v:?}");
}

const S2: &str = "shardId-000000000002";
const S3: &str = "shardId-000000000003";
const HALF: u128 = 1 << 127;

fn range(a: u128, b: u128) -> Option<(String, String)> {
    Some((a.to_string(), b.to_string()))
}

/// `clean()` after S0 (lower half) split into S2 and S3; key "a" continues in S2.
fn resharded() -> History {
    let mut h = clean();
    h.final_read[0].hash_range = range(0, HALF - 1);
    h.final_read[0].closed = true;
    h.final_read[1].hash_range = range(HALF, u128::MAX);
    h.attempts.push(ack("p6", "a", 2, S2, 10));
    h.final_read.push(ShardRead {
        shard_id: S2.into(),
        parents: vec![S0.into()],
        records: vec![rec(S2, 10, "a", "p6", 2)],
        hash_range: range(0, HALF / 2 - 1),
        closed: false,
    });
    h.final_read.push(ShardRead {
        shard_id: S3.into(),
        parents: vec![S0.into()],
        records: vec![],
        hash_range: range(HALF / 2, HALF - 1),
        closed: false,
    });
    h
}

#[test]
fn resharded_history_passes() {
    let r = check(&resharded());
    assert!(r.ok(), "{}", r.summary(10));
    assert_eq!(r.shards, 4);
}

#[test]
fn hash_space_gap_and_overlap_are_caught() {
    let mut h = resharded();
    h.final_read[3].hash_range = range(HALF / 2 + 1, HALF - 1);
    let v = only(&h);
    assert!(
        v.iter().any(|x| matches!(x, Violation::HashSpace { .. }))
            && v.iter()
                .any(|x| matches!(x, Violation::ParentNotCovered { .. })),
        "{v:?}"
    );
    let mut h = resharded();
    h.final_read[3].hash_range = range(HALF / 2 - 5, HALF - 1);
    let v = only(&h);
    assert!(
        matches!(&v[..], [Violation::HashSpace { .. }]),
        "overlap: {v:?}"
    );
    // The parent left open as well: it overlaps its children.
    let mut h = resharded();
    h.final_read[0].closed = false;
    let v = only(&h);
    assert!(v.iter().any(|x| matches!(x, Violation::HashSpace { .. })));
}

#[test]
fn closed_parent_without_children_is_caught() {
    let mut h = resharded();
    h.final_read.truncate(2);
    // S0 closed, nothing covers the lower half: a gap and an uncovered parent.
    let v = only(&h);
    assert!(v
        .iter()
        .any(|x| matches!(x, Violation::ParentNotCovered { parent, .. } if parent == S0)));
    assert!(v.iter().any(|x| matches!(x, Violation::HashSpace { .. })));
}

#[test]
fn key_order_is_checked_from_parent_to_child() {
    let mut h = resharded();
    // The child holds an older counter of key "a" than its parent's last one.
    h.attempts.last_mut().unwrap().key_counter = 1;
    h.final_read[2].records[0].key_counter = 1;
    let v = only(&h);
    assert!(
        matches!(&v[..], [Violation::KeyOrder { shard_id, .. }] if shard_id == S2),
        "{v:?}"
    );
}
