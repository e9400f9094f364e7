//! How far a shard group purges its Raft log after a snapshot.
//!
//! openraft's own policy keeps a fixed number of entries below the snapshot. Entry sizes
//! vary by three orders of magnitude (a lone 1 KiB put, a coalesced batch of megabytes), so
//! shard groups turn it off and purge here instead, keeping:
//!
//! - the newest `shard_log_keep_bytes` of applied records below the snapshot, so that a
//!   briefly lagging follower catches up from the log, but no more: the bytes left unpurged
//!   are what the `raft_log` memtable would otherwise flush to disk a second time
//!   (`spate_control_plane::raft::db`);
//! - never more than `shard_log_keep` entries;
//! - on the leader, everything a follower still needs, as long as that follower is within
//!   `shard_log_keep` entries of the snapshot (a follower further behind, e.g. down, gets a
//!   snapshot when it returns instead of pinning the log).
//!
//! [`LogMarks`] remembers, for recently applied entries, how many record bytes the group had
//! applied up to them, sampled so that its size stays bounded.

use std::collections::VecDeque;

/// Most marks kept per group.
const MAX_MARKS: usize = 512;

/// Samples of (log index, cumulative applied bytes) of one group's recent entries.
#[derive(Debug)]
pub struct LogMarks {
    /// Bytes between two marks.
    spacing: u64,
    /// Applied bytes since the replica started.
    total: u64,
    marks: VecDeque<(u64, u64)>,
}

impl LogMarks {
    /// Marks for a group that keeps `keep_bytes` below its snapshot.
    pub fn new(keep_bytes: u64) -> Self {
        Self {
            spacing: (keep_bytes / 64).max(1),
            total: 0,
            marks: VecDeque::new(),
        }
    }

    /// Records that the entries up to `index` added `bytes`.
    pub fn applied(&mut self, index: u64, bytes: u64) {
        self.total += bytes;
        let due = self
            .marks
            .back()
            .is_none_or(|&(_, at)| self.total - at >= self.spacing);
        if due {
            if self.marks.len() == MAX_MARKS {
                self.marks.pop_front();
            }
            self.marks.push_back((index, self.total));
        }
    }

    /// Applied bytes up to the newest entry.
    pub fn total(&self) -> u64 {
        self.total
    }

    /// The highest marked index at least `keep_bytes` older than `total_at_snapshot`
    /// (the applied total when the snapshot was taken); drops the marks below it.
    pub fn purge_point(&mut self, total_at_snapshot: u64, keep_bytes: u64) -> Option<u64> {
        let target = total_at_snapshot.checked_sub(keep_bytes)?;
        let mut point = None;
        while let Some(&mark) = self.marks.front() {
            if mark.1 > target {
                break;
            }
            point = Some(mark);
            self.marks.pop_front();
        }
        // Keep the chosen mark: the next purge point is at or above it.
        if let Some(mark) = point {
            self.marks.push_front(mark);
        }
        point.map(|(index, _)| index)
    }
}

/// Where to purge up to after a snapshot at `snapshot_index`: `bytes_point` (from
/// [`LogMarks::purge_point`]) but at least `keep_entries` below the snapshot, and on a
/// leader not past any follower's matched index that is still within `keep_entries`.
pub fn purge_upto(
    snapshot_index: u64,
    bytes_point: Option<u64>,
    keep_entries: u64,
    followers_matched: &[Option<u64>],
) -> Option<u64> {
    let floor = snapshot_index.saturating_sub(keep_entries);
    let mut upto = bytes_point.unwrap_or(0).max(floor).min(snapshot_index);
    for matched in followers_matched {
        let m = matched.unwrap_or(0);
        if m >= floor && m < upto {
            upto = m;
        }
    }
    (upto > 0).then_some(upto)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn keeps_the_newest_bytes_below_the_snapshot() {
        let mut m = LogMarks::new(64 << 10);
        // Entries 1..=100 of 16 KiB each: 1,600 KiB.
        for i in 1..=100 {
            m.applied(i, 16 << 10);
        }
        // Keep 64 KiB: the purge point is entry 96 (entries 97..=100 are the newest 64 KiB).
        assert_eq!(m.purge_point(m.total(), 64 << 10), Some(96));
        // Nothing new: the same point again, never lower.
        assert_eq!(m.purge_point(m.total(), 64 << 10), Some(96));
        // Less applied than the keep: no purge.
        let mut fresh = LogMarks::new(1 << 20);
        fresh.applied(1, 100);
        assert_eq!(fresh.purge_point(fresh.total(), 1 << 20), None);
    }

    #[test]
    fn marks_stay_bounded_with_many_tiny_entries() {
        let mut m = LogMarks::new(1 << 20);
        for i in 1..=1_000_000 {
            m.applied(i, 100);
        }
        assert!(m.marks.len() <= MAX_MARKS);
        // 100 MB applied; keeping 1 MiB purges up to within a spacing of the exact point.
        let exact = 1_000_000 - (1 << 20) / 100;
        let p = m.purge_point(m.total(), 1 << 20).unwrap();
        assert!(
            p <= exact && exact - p <= (1 << 20) / 64 / 100 + 1,
            "{p} vs {exact}"
        );
    }

    #[test]
    fn a_leader_does_not_purge_past_a_live_follower() {
        // Snapshot at 1000, bytes allow 990, cap 256 entries (floor 744).
        assert_eq!(purge_upto(1000, Some(990), 256, &[]), Some(990));
        // A follower at 980 holds the purge there; one at 500 (down) does not.
        assert_eq!(
            purge_upto(1000, Some(990), 256, &[Some(980), Some(500)]),
            Some(980)
        );
        assert_eq!(purge_upto(1000, Some(990), 256, &[None]), Some(990));
        // Small entries: the entry cap wins over the bytes point.
        assert_eq!(purge_upto(1000, Some(10), 256, &[]), Some(744));
        assert_eq!(purge_upto(1000, None, 256, &[]), Some(744));
        // Never past the snapshot, nothing to purge at the start.
        assert_eq!(purge_upto(1000, Some(5000), 256, &[]), Some(1000));
        assert_eq!(purge_upto(100, None, 256, &[]), None);
    }
}
