//! Chaos: the workload (writers logging every attempt, tailing readers) under a seeded nemesis
//! schedule of kills, pauses, restarts, wall-clock jumps (libfaketime; skipped with the reason
//! printed where it is missing) and — as root with `ip netns` + nftables — partitions;
//! then heal, wait for every replica to agree, read everything through every node and check the
//! history (0 lost, 0 vanished, strictly increasing sequence numbers, per-key order, no
//! unexplained duplicates). Prints failover times and unavailability windows per fault kind.
//!
//! * `chaos_short` (CI, ~3 min): 14 faults, every kind once (SIGTERM restarts, a disk loss and
//!   a clock jump included), with
//!   the resharder (UpdateShardCount up and down, SplitShard, MergeShards) running the whole
//!   time: lineage is checked after every resharding step and in the final read.
//! * `chaos_long` runs only with `SPATE_CHAOS_LONG=1`: `SPATE_CHAOS_MINUTES` (default 30) of
//!   faults, hundreds of them, resharding throughout as well (one operation every 15–45 s).
//!
//! `SPATE_CHAOS_SEED=<n>` replays a schedule; `SPATE_NETNS=0` forces the loopback fallback.

use std::time::Duration;

use spate_cluster_tests::nemesis::{chaos_scenario, lab_if_available, run_in_lab, ChaosOpts};

fn seed(default: u64) -> u64 {
    std::env::var("SPATE_CHAOS_SEED")
        .ok()
        .and_then(|s| s.parse().ok())
        .unwrap_or(default)
}

fn run(o: ChaosOpts, limit: Duration) {
    let lab = lab_if_available(3).unwrap_or_else(|e| panic!("network lab: {e:#}"));
    eprintln!(
        "chaos: seed {}, {} network namespaces",
        o.seed,
        if lab.is_some() {
            "in"
        } else {
            "without (127.0.0.x)"
        }
    );
    let res = run_in_lab(lab, move |lab| async move {
        tokio::time::timeout(limit, chaos_scenario(lab, &o)).await
    });
    match res {
        Ok(Ok(r)) => eprintln!(
            "chaos passed: {} faults, {} acked of {} attempts, {} of {} resharding operations \
             completed\n{}",
            r.faults, r.acked, r.attempts, r.reshards_done, r.reshards, r.table
        ),
        Ok(Err(e)) => panic!("chaos scenario failed (replay with SPATE_CHAOS_SEED): {e:#}"),
        Err(_) => panic!("chaos scenario took over {limit:?}"),
    }
}

#[test]
fn chaos_short() {
    run(
        ChaosOpts {
            seed: seed(7),
            max_faults: 14,
            budget: Duration::from_secs(120),
            stream: "chaos".into(),
            shards: 2,
            writers: 3,
            exclude: Vec::new(),
            reshard: true,
            reshard_gap_ms: (1_000, 4_000),
        },
        Duration::from_secs(480),
    );
}

#[test]
fn chaos_long() {
    if std::env::var("SPATE_CHAOS_LONG").is_err() {
        eprintln!("chaos_long: skipped (set SPATE_CHAOS_LONG=1)");
        return;
    }
    let minutes: u64 = std::env::var("SPATE_CHAOS_MINUTES")
        .ok()
        .and_then(|s| s.parse().ok())
        .unwrap_or(30);
    let seed = seed(
        std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .map(|d| d.as_secs())
            .unwrap_or(1),
    );
    run(
        ChaosOpts {
            seed,
            max_faults: 100_000,
            budget: Duration::from_secs(minutes * 60),
            stream: "chaos-long".into(),
            shards: 2,
            writers: 3,
            exclude: Vec::new(),
            reshard: true,
            // Every closed shard keeps its Raft group until retention expires it; one operation
            // every ~30 s keeps a 30-minute run near a hundred shards instead of ~700.
            reshard_gap_ms: (15_000, 45_000),
        },
        Duration::from_secs(minutes * 60 * 2 + 600),
    );
}
