//! Per-shard throughput limits enforced on the shard leader with token buckets, and the
//! per-second load meter the autoscaler reads.
//!
//! Kinesis' provisioned limits per shard: writes 1 MiB/s (data + partition key) and 1,000
//! records/s; reads 2 MiB/s and 5 `GetRecords` calls/s. A request is admitted when every
//! bucket it draws from holds at least `min(cost, capacity)` tokens; the whole cost is then
//! taken, so a request larger than the burst capacity passes on a full bucket and drives it
//! negative — a large read debits the following seconds, as in Kinesis. Everything here is
//! pure: callers pass the current [`Instant`], so tests drive time explicitly.
//!
//! The cluster's [`Limits`] apply to every stream unless the stream overrides them with its
//! reserved `spate:` tags ([`Limits::effective`]); the shard manager hands every hosted
//! replica its stream's [`EffectiveLimits`] whenever the metadata view changes, and
//! [`ShardThrottle::set_limits`] retunes the buckets in place (no restart, balances kept).

use std::time::{Duration, Instant};

use serde::{Deserialize, Serialize};
use spate_control_plane::meta::settings::{LimitOverrides, LimitValue};

/// Per-shard limits (the `[limits]` configuration section).
#[derive(Debug, Clone, Copy, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct Limits {
    /// Enforce the limits at all. `false` accepts everything (self-hosted, benchmarks).
    pub enabled: bool,
    /// Write bytes (data + partition key) per second per shard.
    pub shard_write_bytes_per_sec: u64,
    /// Records written per second per shard.
    pub shard_write_records_per_sec: u64,
    /// Bytes read per second per shard (shared by all polling consumers).
    pub shard_read_bytes_per_sec: u64,
    /// `GetRecords` calls per second per shard (shared by all polling consumers).
    pub shard_read_calls_per_sec: u64,
    /// Bucket capacity in milliseconds of the rate: how much may be spent in one burst.
    pub burst_ms: u64,
}

impl Default for Limits {
    fn default() -> Self {
        Self {
            enabled: true,
            shard_write_bytes_per_sec: 1 << 20,
            shard_write_records_per_sec: 1_000,
            shard_read_bytes_per_sec: 2 << 20,
            shard_read_calls_per_sec: 5,
            burst_ms: 1_000,
        }
    }
}

/// The limits one shard enforces: per second per shard, `None` = unlimited.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct EffectiveLimits {
    pub write_bytes: Option<u64>,
    pub write_records: Option<u64>,
    pub read_bytes: Option<u64>,
    pub read_calls: Option<u64>,
    pub burst_ms: u64,
}

impl Limits {
    /// The limits of a stream with the per-stream `overrides` (from its reserved tags).
    /// `enabled = false` switches every limit off, overrides included.
    pub fn effective(&self, overrides: &LimitOverrides) -> EffectiveLimits {
        let pick = |o: Option<LimitValue>, base: u64| {
            if !self.enabled {
                return None;
            }
            match o {
                None => Some(base),
                Some(LimitValue::PerSec(n)) => Some(n),
                Some(LimitValue::Unlimited) => None,
            }
        };
        EffectiveLimits {
            write_bytes: pick(overrides.write_bytes, self.shard_write_bytes_per_sec),
            write_records: pick(overrides.write_records, self.shard_write_records_per_sec),
            read_bytes: pick(overrides.read_bytes, self.shard_read_bytes_per_sec),
            read_calls: pick(overrides.read_calls, self.shard_read_calls_per_sec),
            burst_ms: self.burst_ms.max(1),
        }
    }
}

/// A token bucket refilled continuously at `rate` tokens/s up to `capacity`.
#[derive(Debug, Clone)]
pub struct TokenBucket {
    rate: f64,
    capacity: f64,
    tokens: f64,
    last: Instant,
}

impl TokenBucket {
    /// A full bucket.
    pub fn new(rate_per_sec: u64, burst: Duration, now: Instant) -> Self {
        let rate = rate_per_sec as f64;
        let capacity = (rate * burst.as_secs_f64()).max(1.0);
        Self {
            rate,
            capacity,
            tokens: capacity,
            last: now,
        }
    }

    fn refill(&mut self, now: Instant) {
        let dt = now.saturating_duration_since(self.last).as_secs_f64();
        self.tokens = (self.tokens + dt * self.rate).min(self.capacity);
        self.last = self.last.max(now);
    }

    /// Tokens available at `now` (negative while paying off a large request).
    pub fn available(&mut self, now: Instant) -> f64 {
        self.refill(now);
        self.tokens
    }

    /// Whether a request costing `cost` may go now.
    pub fn can_take(&mut self, cost: f64, now: Instant) -> bool {
        self.available(now) >= cost.min(self.capacity)
    }

    /// Takes `cost` tokens unconditionally (the balance may go negative).
    pub fn debit(&mut self, cost: f64, now: Instant) {
        self.refill(now);
        self.tokens -= cost;
    }

    /// Changes the rate (and the capacity with it): what was earned at the old rate until
    /// `now` is kept, capped at the new capacity; a debt stays a debt.
    pub fn retune(&mut self, rate_per_sec: u64, burst: Duration, now: Instant) {
        self.refill(now);
        self.rate = rate_per_sec as f64;
        self.capacity = (self.rate * burst.as_secs_f64()).max(1.0);
        self.tokens = self.tokens.min(self.capacity);
    }
}

/// A bucket per limit, `None` when unlimited.
fn bucket(rate: Option<u64>, burst: Duration, now: Instant) -> Option<TokenBucket> {
    rate.map(|r| TokenBucket::new(r, burst, now))
}

fn can_take(b: &mut Option<TokenBucket>, cost: f64, now: Instant) -> bool {
    b.as_mut().is_none_or(|b| b.can_take(cost, now))
}

fn debit(b: &mut Option<TokenBucket>, cost: f64, now: Instant) {
    if let Some(b) = b {
        b.debit(cost, now);
    }
}

fn retune(
    b: &mut Option<TokenBucket>,
    old: Option<u64>,
    new: Option<u64>,
    burst: Duration,
    old_burst: Duration,
    now: Instant,
) {
    if old == new && burst == old_burst {
        return;
    }
    match (b.as_mut(), new) {
        (Some(bucket), Some(rate)) => bucket.retune(rate, burst, now),
        (None, Some(rate)) => *b = Some(TokenBucket::new(rate, burst, now)),
        (_, None) => *b = None,
    }
}

/// Why a request was refused.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Throttled {
    WriteBytes,
    WriteRecords,
    ReadBytes,
    ReadCalls,
}

impl Throttled {
    /// The message of the `ProvisionedThroughputExceededException`.
    pub fn message(self) -> &'static str {
        match self {
            Throttled::WriteBytes => "Rate exceeded for shard: write bytes per second.",
            Throttled::WriteRecords => "Rate exceeded for shard: write records per second.",
            Throttled::ReadBytes => "Rate exceeded for shard: read bytes per second.",
            Throttled::ReadCalls => "Rate exceeded for shard: GetRecords calls per second.",
        }
    }
}

/// The four buckets of one shard.
#[derive(Debug, Clone)]
pub struct ShardThrottle {
    limits: EffectiveLimits,
    write_bytes: Option<TokenBucket>,
    write_records: Option<TokenBucket>,
    read_bytes: Option<TokenBucket>,
    read_calls: Option<TokenBucket>,
}

impl ShardThrottle {
    /// Full buckets for the cluster's limits (no per-stream overrides).
    pub fn new(limits: &Limits, now: Instant) -> Self {
        Self::with_limits(limits.effective(&LimitOverrides::default()), now)
    }

    /// Full buckets for `limits`.
    pub fn with_limits(limits: EffectiveLimits, now: Instant) -> Self {
        let burst = Duration::from_millis(limits.burst_ms.max(1));
        Self {
            limits,
            write_bytes: bucket(limits.write_bytes, burst, now),
            write_records: bucket(limits.write_records, burst, now),
            read_bytes: bucket(limits.read_bytes, burst, now),
            read_calls: bucket(limits.read_calls, burst, now),
        }
    }

    /// The limits in force.
    pub fn limits(&self) -> EffectiveLimits {
        self.limits
    }

    /// Switches to new limits in place: changed buckets are retuned (balances kept,
    /// capped at the new capacity), newly limited ones start full, unlimited ones go.
    pub fn set_limits(&mut self, limits: EffectiveLimits, now: Instant) {
        if limits == self.limits {
            return;
        }
        let old = self.limits;
        let burst = Duration::from_millis(limits.burst_ms.max(1));
        let old_burst = Duration::from_millis(old.burst_ms.max(1));
        retune(
            &mut self.write_bytes,
            old.write_bytes,
            limits.write_bytes,
            burst,
            old_burst,
            now,
        );
        retune(
            &mut self.write_records,
            old.write_records,
            limits.write_records,
            burst,
            old_burst,
            now,
        );
        retune(
            &mut self.read_bytes,
            old.read_bytes,
            limits.read_bytes,
            burst,
            old_burst,
            now,
        );
        retune(
            &mut self.read_calls,
            old.read_calls,
            limits.read_calls,
            burst,
            old_burst,
            now,
        );
        self.limits = limits;
    }

    /// Admits a put of `records` records totalling `bytes` billed bytes, or refuses it
    /// whole (nothing is taken then).
    pub fn admit_write(&mut self, bytes: u64, records: u64, now: Instant) -> Result<(), Throttled> {
        if !can_take(&mut self.write_records, records as f64, now) {
            return Err(Throttled::WriteRecords);
        }
        if !can_take(&mut self.write_bytes, bytes as f64, now) {
            return Err(Throttled::WriteBytes);
        }
        debit(&mut self.write_records, records as f64, now);
        debit(&mut self.write_bytes, bytes as f64, now);
        Ok(())
    }

    /// Admits one `GetRecords` call: a call token must be free and the byte budget must not
    /// be overdrawn. The bytes are charged afterwards with [`Self::charge_read`].
    pub fn admit_read(&mut self, now: Instant) -> Result<(), Throttled> {
        if self
            .read_bytes
            .as_mut()
            .is_some_and(|b| b.available(now) <= 0.0)
        {
            return Err(Throttled::ReadBytes);
        }
        if !can_take(&mut self.read_calls, 1.0, now) {
            return Err(Throttled::ReadCalls);
        }
        debit(&mut self.read_calls, 1.0, now);
        Ok(())
    }

    /// Charges the bytes a read returned; a large read overdraws the budget and throttles
    /// the reads of the following seconds.
    pub fn charge_read(&mut self, bytes: u64, now: Instant) {
        debit(&mut self.read_bytes, bytes as f64, now);
    }
}

/// One second of accepted writes.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct LoadBucket {
    /// Unix second.
    pub sec: u64,
    pub bytes: u64,
    pub records: u64,
    /// Records refused by throttling.
    pub throttled: u64,
}

/// Seconds of history a [`LoadMeter`] keeps.
pub const LOAD_WINDOW_SECS: usize = 120;

/// Accepted writes per 1-second bucket over the last [`LOAD_WINDOW_SECS`] seconds.
#[derive(Debug, Clone)]
pub struct LoadMeter {
    ring: Vec<LoadBucket>,
}

impl Default for LoadMeter {
    fn default() -> Self {
        Self {
            ring: vec![LoadBucket::default(); LOAD_WINDOW_SECS],
        }
    }
}

impl LoadMeter {
    fn slot(&mut self, sec: u64) -> &mut LoadBucket {
        let i = (sec % LOAD_WINDOW_SECS as u64) as usize;
        let b = &mut self.ring[i];
        if b.sec != sec {
            *b = LoadBucket {
                sec,
                ..LoadBucket::default()
            };
        }
        b
    }

    /// Records accepted writes at unix second `sec`.
    pub fn record(&mut self, sec: u64, bytes: u64, records: u64) {
        let b = self.slot(sec);
        b.bytes += bytes;
        b.records += records;
    }

    /// Records throttled records at unix second `sec`.
    pub fn record_throttled(&mut self, sec: u64, records: u64) {
        self.slot(sec).throttled += records;
    }

    /// The complete seconds in `[now_sec - secs, now_sec)`, oldest first, with zero
    /// buckets for seconds without traffic.
    pub fn recent(&self, now_sec: u64, secs: usize) -> Vec<LoadBucket> {
        let secs = secs.min(LOAD_WINDOW_SECS - 1) as u64;
        (now_sec.saturating_sub(secs)..now_sec)
            .map(|sec| {
                let b = self.ring[(sec % LOAD_WINDOW_SECS as u64) as usize];
                if b.sec == sec {
                    b
                } else {
                    LoadBucket {
                        sec,
                        ..LoadBucket::default()
                    }
                }
            })
            .collect()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const MIB: u64 = 1 << 20;

    fn at(t0: Instant, ms: u64) -> Instant {
        t0 + Duration::from_millis(ms)
    }

    #[test]
    fn bucket_refills_at_rate_up_to_capacity() {
        let t0 = Instant::now();
        let mut b = TokenBucket::new(1000, Duration::from_secs(1), t0);
        assert!(b.can_take(1000.0, t0));
        b.debit(1000.0, t0);
        assert!(!b.can_take(1.0, t0));
        assert!(b.can_take(500.0, at(t0, 500)));
        assert!(!b.can_take(501.0, at(t0, 500)));
        assert_eq!(b.available(at(t0, 10_000)), 1000.0);
    }

    #[test]
    fn writes_over_the_record_limit_are_refused_whole() {
        let t0 = Instant::now();
        let mut t = ShardThrottle::new(&Limits::default(), t0);
        assert_eq!(t.admit_write(10_000, 600, t0), Ok(()));
        assert_eq!(t.admit_write(10_000, 600, t0), Err(Throttled::WriteRecords));
        // Nothing was taken by the refusal: 400 remain.
        assert_eq!(t.admit_write(10_000, 400, t0), Ok(()));
        assert_eq!(t.admit_write(10, 1, t0), Err(Throttled::WriteRecords));
        assert_eq!(t.admit_write(10, 100, at(t0, 100)), Ok(()));
    }

    #[test]
    fn writes_over_the_byte_limit_are_refused() {
        let t0 = Instant::now();
        let mut t = ShardThrottle::new(&Limits::default(), t0);
        assert_eq!(t.admit_write(MIB, 1, t0), Ok(()));
        assert_eq!(t.admit_write(1024, 1, t0), Err(Throttled::WriteBytes));
        assert_eq!(t.admit_write(MIB / 2, 1, at(t0, 500)), Ok(()));
    }

    #[test]
    fn sustained_double_rate_is_accepted_at_the_limit() {
        // 2 MiB/s offered in 64 KiB puts every 31.25 ms for 20 s: ~1 MiB/s accepted.
        let t0 = Instant::now();
        let mut t = ShardThrottle::new(&Limits::default(), t0);
        let put = 64 * 1024;
        let mut accepted = 0u64;
        let steps = 20 * 32;
        for i in 0..steps {
            let now = t0 + Duration::from_micros(i * 31_250);
            if t.admit_write(put, 1, now).is_ok() {
                accepted += put;
            }
        }
        let rate = accepted as f64 / 20.0 / MIB as f64;
        assert!((0.9..=1.1 + 1.0 / 20.0).contains(&rate), "rate {rate}");
    }

    #[test]
    fn reads_are_limited_to_five_calls_per_second() {
        let t0 = Instant::now();
        let mut t = ShardThrottle::new(&Limits::default(), t0);
        let mut ok = 0;
        // 10 calls/s for 10 s.
        for i in 0..100u64 {
            if t.admit_read(at(t0, i * 100)).is_ok() {
                t.charge_read(100, at(t0, i * 100));
                ok += 1;
            }
        }
        // 5 in the initial burst, then 5 per second.
        assert!((50..=56).contains(&ok), "{ok} calls admitted");
    }

    #[test]
    fn a_large_read_debits_the_following_seconds() {
        let t0 = Instant::now();
        let mut t = ShardThrottle::new(&Limits::default(), t0);
        assert_eq!(t.admit_read(t0), Ok(()));
        t.charge_read(10 * MIB, t0);
        // 10 MiB at 2 MiB/s with a 2 MiB start: overdrawn 8 MiB = 4 s.
        assert_eq!(t.admit_read(at(t0, 1_000)), Err(Throttled::ReadBytes));
        assert_eq!(t.admit_read(at(t0, 3_900)), Err(Throttled::ReadBytes));
        assert_eq!(t.admit_read(at(t0, 4_100)), Ok(()));
    }

    #[test]
    fn disabled_limits_admit_everything() {
        let t0 = Instant::now();
        let limits = Limits {
            enabled: false,
            ..Limits::default()
        };
        let mut t = ShardThrottle::new(&limits, t0);
        for _ in 0..100 {
            assert_eq!(t.admit_write(MIB, 1000, t0), Ok(()));
            assert_eq!(t.admit_read(t0), Ok(()));
            t.charge_read(10 * MIB, t0);
        }
    }

    fn overrides(pairs: &[(usize, LimitValue)]) -> LimitOverrides {
        let mut o = LimitOverrides::default();
        for (i, v) in pairs {
            let slot = match i {
                0 => &mut o.write_bytes,
                1 => &mut o.write_records,
                2 => &mut o.read_bytes,
                _ => &mut o.read_calls,
            };
            *slot = Some(*v);
        }
        o
    }

    #[test]
    fn stream_overrides_replace_the_cluster_limits() {
        let base = Limits::default();
        let e = base.effective(&overrides(&[
            (1, LimitValue::PerSec(5_000)),
            (3, LimitValue::Unlimited),
        ]));
        assert_eq!(e.write_bytes, Some(MIB));
        assert_eq!(e.write_records, Some(5_000));
        assert_eq!(e.read_bytes, Some(2 * MIB));
        assert_eq!(e.read_calls, None);
        // The cluster switch turns everything off, overrides included.
        let off = Limits {
            enabled: false,
            ..base
        };
        let e = off.effective(&overrides(&[(1, LimitValue::PerSec(5))]));
        assert_eq!(
            (e.write_bytes, e.write_records, e.read_bytes, e.read_calls),
            (None, None, None, None)
        );
        // Unlimited reads: 100 calls at once all pass.
        let t0 = Instant::now();
        let mut t = ShardThrottle::with_limits(
            base.effective(&overrides(&[
                (2, LimitValue::Unlimited),
                (3, LimitValue::Unlimited),
            ])),
            t0,
        );
        for _ in 0..100 {
            assert_eq!(t.admit_read(t0), Ok(()));
            t.charge_read(10 * MIB, t0);
        }
        assert_eq!(t.admit_write(MIB, 1, t0), Ok(()));
        assert_eq!(t.admit_write(1, 1, t0), Err(Throttled::WriteBytes));
    }

    #[test]
    fn raising_a_limit_in_place_stops_throttling() {
        let t0 = Instant::now();
        let base = Limits::default();
        let mut t = ShardThrottle::new(&base, t0);
        // 2,000 records/s offered (20 every 10 ms) for 2 s: the 1 s burst plus 1,000/s
        // pass, about 1,000 are refused.
        let offer = |t: &mut ShardThrottle, from_ms: u64| {
            let mut refused = 0;
            for i in 0..200u64 {
                if t.admit_write(200, 20, at(t0, from_ms + i * 10)).is_err() {
                    refused += 20;
                }
            }
            refused
        };
        let refused = offer(&mut t, 0);
        assert!((800..=1_200).contains(&refused), "{refused} refused");
        // Raised to 5,000/s: the same load passes; the balance was kept, not refilled.
        let raised = base.effective(&overrides(&[(1, LimitValue::PerSec(5_000))]));
        t.set_limits(raised, at(t0, 2_000));
        assert_eq!(t.limits(), raised);
        assert_eq!(offer(&mut t, 2_010), 0);
        // Lowered to 100/s: the balance is capped at the new capacity at once.
        let low = base.effective(&overrides(&[(1, LimitValue::PerSec(100))]));
        t.set_limits(low, at(t0, 4_000));
        assert_eq!(t.admit_write(10, 100, at(t0, 4_000)), Ok(()));
        assert_eq!(
            t.admit_write(10, 1, at(t0, 4_000)),
            Err(Throttled::WriteRecords)
        );
        // Unlimited, then limited again (a fresh full bucket).
        let unlimited = base.effective(&overrides(&[(1, LimitValue::Unlimited)]));
        t.set_limits(unlimited, at(t0, 4_000));
        assert_eq!(t.admit_write(10, 100_000, at(t0, 4_000)), Ok(()));
        t.set_limits(low, at(t0, 4_000));
        assert_eq!(t.admit_write(10, 100, at(t0, 4_000)), Ok(()));
        assert_eq!(
            t.admit_write(10, 1, at(t0, 4_000)),
            Err(Throttled::WriteRecords)
        );
    }

    #[test]
    fn meter_keeps_per_second_buckets() {
        let mut m = LoadMeter::default();
        m.record(100, 10, 1);
        m.record(100, 5, 1);
        m.record(102, 7, 2);
        m.record_throttled(102, 3);
        let r = m.recent(103, 4);
        assert_eq!(r.len(), 4);
        assert_eq!(r[0].sec, 99);
        assert_eq!((r[1].bytes, r[1].records), (15, 2));
        assert_eq!((r[2].bytes, r[2].records), (0, 0));
        assert_eq!((r[3].bytes, r[3].records, r[3].throttled), (7, 2, 3));
        // A wrapped slot from an older second reads as empty.
        m.record(100 + LOAD_WINDOW_SECS as u64, 1, 1);
        assert_eq!(m.recent(103, 4)[1].records, 0);
    }
}
