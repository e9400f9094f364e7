//! Sequence numbers: the 56-digit "version 2" layout AWS emits (reverse-engineered by
//! kinesalite), with Spate's semantics — encoding, decoding/validation and numeric
//! comparison of decimal sequence number strings.
//!
//! The number is a 188-bit value, written here as 47 hex digits (most significant first):
//!
//! ```text
//! hex[0]      2                  constant lead nibble (value in [2^185, 1.5*2^185): 56 digits)
//! hex[1..10]  shard_create_secs  36 bits, logical creation second of the shard
//! hex[10]     shard_index & 0xF  4 bits
//! hex[11..27] ordinal            64 bits, top bit 0 (0 = starting, 2^63-1 = ending sentinel)
//! hex[27..29] 00                 8 bits, always 0
//! hex[29..38] arrival_secs       36 bits, arrival second of the record
//! hex[38..46] shard_index        32 bits (top bit 0)
//! hex[46]     2                  version
//! ```
//!
//! Within a shard numeric order is ordinal order (then arrival); across shards the creation
//! second leads, so children (created later) sort after their parents.

use std::cmp::Ordering;

use super::error::KinesisError;

/// The ordinal of a shard's `EndingSequenceNumber` (`2^63 - 1`).
pub const ORDINAL_END: u64 = (1 << 63) - 1;

/// Creation seconds must be below this (kinesalite's date range check; year 2477).
pub const MAX_SHARD_CREATE_SECS_EXCLUSIVE: u64 = 16_025_175_000;

const MASK_36: u64 = (1 << 36) - 1;
const MAX_SHARD_INDEX: u32 = i32::MAX as u32;

// Bit offsets (from the least significant bit) of the fields of the 188-bit value.
const OFF_VERSION: u32 = 0; // 4 bits
const OFF_SHARD_INDEX: u32 = 4; // 32 bits
const OFF_ARRIVAL: u32 = 36; // 36 bits
const OFF_BYTE1: u32 = 72; // 8 bits
const OFF_ORDINAL: u32 = 80; // 64 bits
const OFF_SHARD_NIBBLE: u32 = 144; // 4 bits
const OFF_CREATE: u32 = 148; // 36 bits
const OFF_LEAD: u32 = 184; // 4 bits (and nothing above)

const LEAD: u64 = 2;
const VERSION: u64 = 2;

/// The most decimal digits a 188-bit number can have (`2^188 - 1` has 57).
const MAX_DIGITS: usize = 57;

/// A decoded sequence number.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct SeqNum {
    /// Logical creation second of the shard (36 bits, `< 16025175000`).
    pub shard_create_secs: u64,
    /// Shard index within the stream (`<= 2^31 - 1`).
    pub shard_index: u32,
    /// Per-shard ordinal: 0 = starting number, records from 1, [`ORDINAL_END`] = ending.
    pub ordinal: u64,
    /// Arrival second (`arrival_ms / 1000`; 36 bits).
    pub arrival_secs: u64,
}

/// Why a string is not one of our sequence numbers.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum SeqNumError {
    #[error("it is not a decimal number without leading zeros")]
    NotDecimal,
    #[error("it is out of range")]
    OutOfRange,
    #[error("it does not have the expected layout (lead nibble {0})")]
    BadLead(u8),
    #[error("it has unsupported version {0}")]
    UnsupportedVersion(u8),
    #[error("its reserved byte is not zero")]
    ReservedNonZero,
    #[error("its sequence index is too high")]
    OrdinalTooHigh,
    #[error("its shard index is too high")]
    ShardIndexTooHigh,
    #[error("its shard index fields disagree ({nibble} vs {index})")]
    ShardIndexMismatch { nibble: u8, index: u32 },
    #[error("its creation time {0} is too large")]
    CreateTimeTooLarge(u64),
    #[error("it encodes shardId-{found:012}, while it was used with shardId-{expected:012}")]
    WrongShard { expected: u32, found: u32 },
}

impl SeqNumError {
    /// The `InvalidArgumentException` for a bad sequence number in request field `field`
    /// (e.g. `StartingSequenceNumber`).
    pub fn into_kinesis(self, field: &str) -> KinesisError {
        KinesisError::invalid(format!("Invalid {field}: {self}."))
    }
}

/// A 192-bit unsigned integer as three little-endian `u64` limbs.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
struct U192([u64; 3]);

impl U192 {
    /// ORs `value` (already within its field width, at most 64 bits) in at bit `offset`.
    fn or_field(&mut self, offset: u32, value: u64) {
        let limb = (offset / 64) as usize;
        let shift = offset % 64;
        if let Some(l) = self.0.get_mut(limb) {
            *l |= value << shift;
        }
        if shift != 0 {
            if let Some(l) = self.0.get_mut(limb + 1) {
                *l |= value >> (64 - shift);
            }
        }
    }

    /// Reads the `width`-bit field (`1..=64`) at bit `offset`.
    fn field(&self, offset: u32, width: u32) -> u64 {
        let limb = (offset / 64) as usize;
        let shift = offset % 64;
        let mut v = self.0.get(limb).copied().unwrap_or(0) >> shift;
        if shift != 0 {
            v |= self.0.get(limb + 1).copied().unwrap_or(0) << (64 - shift);
        }
        if width < 64 {
            v &= (1u64 << width) - 1;
        }
        v
    }

    /// `self * 10^k + add` for a chunk of decimal digits; `None` on overflow.
    fn mul_add(&self, mul: u64, add: u64) -> Option<U192> {
        let mut out = [0u64; 3];
        let mut carry = u128::from(add);
        for (o, &l) in out.iter_mut().zip(self.0.iter()) {
            let v = u128::from(l) * u128::from(mul) + carry;
            *o = v as u64;
            carry = v >> 64;
        }
        (carry == 0).then_some(U192(out))
    }

    /// Divides in place by `d` (non-zero) and returns the remainder.
    fn div_rem(&mut self, d: u64) -> u64 {
        let mut rem: u128 = 0;
        for l in self.0.iter_mut().rev() {
            let cur = (rem << 64) | u128::from(*l);
            *l = (cur / u128::from(d)) as u64;
            rem = cur % u128::from(d);
        }
        rem as u64
    }

    fn is_zero(&self) -> bool {
        self.0.iter().all(|&l| l == 0)
    }

    fn to_decimal(mut self) -> String {
        const CHUNK: u64 = 10_000_000_000_000_000_000; // 10^19
        let mut chunks = Vec::with_capacity(4);
        loop {
            chunks.push(self.div_rem(CHUNK));
            if self.is_zero() {
                break;
            }
        }
        let mut out = String::with_capacity(MAX_DIGITS);
        let mut iter = chunks.iter().rev();
        if let Some(first) = iter.next() {
            out.push_str(&first.to_string());
        }
        for c in iter {
            out.push_str(&format!("{c:019}"));
        }
        out
    }

    /// Parses a decimal string of ASCII digits; `None` if it exceeds 192 bits.
    fn from_decimal(digits: &[u8]) -> Option<U192> {
        let mut acc = U192::default();
        for chunk in digits.chunks(19) {
            let mut value = 0u64;
            let mut mul = 1u64;
            for &b in chunk {
                value = value * 10 + u64::from(b - b'0');
                mul *= 10;
            }
            acc = acc.mul_add(mul, value)?;
        }
        Some(acc)
    }
}

impl SeqNum {
    /// The shard's `StartingSequenceNumber`: ordinal 0, arrival = creation second.
    pub fn starting(shard_create_secs: u64, shard_index: u32) -> SeqNum {
        SeqNum {
            shard_create_secs,
            shard_index,
            ordinal: 0,
            arrival_secs: shard_create_secs,
        }
    }

    /// The shard's `EndingSequenceNumber`: ordinal [`ORDINAL_END`].
    pub fn ending(shard_create_secs: u64, shard_index: u32, arrival_secs: u64) -> SeqNum {
        SeqNum {
            shard_create_secs,
            shard_index,
            ordinal: ORDINAL_END,
            arrival_secs,
        }
    }

    /// The 56-digit decimal string.
    ///
    /// Fields are expected within their widths (create/arrival 36 bits, ordinal
    /// `<= ORDINAL_END`, shard index `<= 2^31 - 1`); out-of-range values are clamped to the
    /// field maximum (which keeps encoding monotonic) and will not round-trip.
    pub fn encode(&self) -> String {
        let mut v = U192::default();
        v.or_field(OFF_LEAD, LEAD);
        v.or_field(OFF_CREATE, self.shard_create_secs.min(MASK_36));
        let index = self.shard_index.min(MAX_SHARD_INDEX);
        v.or_field(OFF_SHARD_NIBBLE, u64::from(index & 0xF));
        v.or_field(OFF_ORDINAL, self.ordinal.min(ORDINAL_END));
        v.or_field(OFF_ARRIVAL, self.arrival_secs.min(MASK_36));
        v.or_field(OFF_SHARD_INDEX, u64::from(index));
        v.or_field(OFF_VERSION, VERSION);
        v.to_decimal()
    }

    /// Decodes and validates a sequence number string.
    pub fn decode(s: &str) -> Result<SeqNum, SeqNumError> {
        let bytes = s.as_bytes();
        if bytes.is_empty()
            || !bytes.iter().all(u8::is_ascii_digit)
            || (bytes.len() > 1 && bytes[0] == b'0')
        {
            return Err(SeqNumError::NotDecimal);
        }
        if bytes.len() > MAX_DIGITS {
            return Err(SeqNumError::OutOfRange);
        }
        let v = U192::from_decimal(bytes).ok_or(SeqNumError::OutOfRange)?;
        // Everything from bit 184 up: the lead nibble must be exactly 2 (so bits 188..192
        // are zero, i.e. the number has 47 hex digits).
        let lead = v.field(OFF_LEAD, 8);
        if lead != LEAD {
            return Err(SeqNumError::BadLead(lead.min(255) as u8));
        }
        let version = v.field(OFF_VERSION, 4);
        if version != VERSION {
            return Err(SeqNumError::UnsupportedVersion(version as u8));
        }
        if v.field(OFF_BYTE1, 8) != 0 {
            return Err(SeqNumError::ReservedNonZero);
        }
        let ordinal = v.field(OFF_ORDINAL, 64);
        if ordinal > ORDINAL_END {
            return Err(SeqNumError::OrdinalTooHigh);
        }
        let index = v.field(OFF_SHARD_INDEX, 32);
        if index > u64::from(MAX_SHARD_INDEX) {
            return Err(SeqNumError::ShardIndexTooHigh);
        }
        let index = index as u32;
        let nibble = v.field(OFF_SHARD_NIBBLE, 4) as u8;
        if u32::from(nibble) != index & 0xF {
            return Err(SeqNumError::ShardIndexMismatch { nibble, index });
        }
        let shard_create_secs = v.field(OFF_CREATE, 36);
        if shard_create_secs >= MAX_SHARD_CREATE_SECS_EXCLUSIVE {
            return Err(SeqNumError::CreateTimeTooLarge(shard_create_secs));
        }
        Ok(SeqNum {
            shard_create_secs,
            shard_index: index,
            ordinal,
            arrival_secs: v.field(OFF_ARRIVAL, 36),
        })
    }

    /// [`decode`](Self::decode), then checks the number belongs to shard `shard_index`.
    pub fn decode_for_shard(s: &str, shard_index: u32) -> Result<SeqNum, SeqNumError> {
        let seq = Self::decode(s)?;
        if seq.shard_index != shard_index {
            return Err(SeqNumError::WrongShard {
                expected: shard_index,
                found: seq.shard_index,
            });
        }
        Ok(seq)
    }
}

/// Compares two non-negative decimal strings numerically (leading zeros ignored, then
/// length, then lexicographic). Meant for well-formed input; non-digit strings compare by
/// the same rule without error.
pub fn cmp_numeric(a: &str, b: &str) -> Ordering {
    let a = a.trim_start_matches('0');
    let b = b.trim_start_matches('0');
    a.len().cmp(&b.len()).then_with(|| a.cmp(b))
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::kinesis::ErrorKind;
    use proptest::prelude::*;

    const AWS_EXAMPLE: &str = "49590338271490256608559692538361571095921575989136588898";

    #[test]
    fn decodes_real_aws_example() {
        let s = SeqNum::decode(AWS_EXAMPLE).expect("decodes");
        assert_eq!(
            s,
            SeqNum {
                shard_create_secs: 1542776258,
                shard_index: 6,
                ordinal: 1734642199,
                arrival_secs: 1545084650,
            }
        );
        assert_eq!(s.encode(), AWS_EXAMPLE);
    }

    #[test]
    fn decodes_other_aws_examples() {
        let s = SeqNum::decode("49546986683135544286507457936321625675700192471156785154")
            .expect("cli tutorial");
        assert_eq!(s.shard_index, 0);
        let start = SeqNum::decode("49554751971385712311965096607999491514675643249030332418")
            .expect("starting number");
        assert_eq!(start.ordinal, 0);
        assert_eq!(start.arrival_secs, start.shard_create_secs + 3);
        let s = SeqNum::decode("49680443364749840976111795783852923162239034335688654850")
            .expect("peer example");
        assert_eq!(
            s.encode(),
            "49680443364749840976111795783852923162239034335688654850"
        );
    }

    #[test]
    fn starting_and_ending() {
        let start = SeqNum::starting(1_700_000_000, 3);
        assert_eq!(start.ordinal, 0);
        assert_eq!(start.arrival_secs, 1_700_000_000);
        let end = SeqNum::ending(1_700_000_000, 3, 1_700_000_500);
        assert_eq!(end.ordinal, ORDINAL_END);
        assert_eq!(SeqNum::decode(&end.encode()), Ok(end));
        let mid = SeqNum {
            ordinal: 42,
            arrival_secs: 1_700_000_100,
            ..start
        };
        assert_eq!(cmp_numeric(&start.encode(), &mid.encode()), Ordering::Less);
        assert_eq!(cmp_numeric(&mid.encode(), &end.encode()), Ordering::Less);
        // A child created one second later sorts after the parent's ending number.
        let child = SeqNum::starting(1_700_000_001, 4);
        assert_eq!(cmp_numeric(&end.encode(), &child.encode()), Ordering::Less);
    }

    #[test]
    fn decode_rejects() {
        use SeqNumError::*;
        let cases: &[(&str, SeqNumError)] = &[
            ("", NotDecimal),
            ("abc", NotDecimal),
            ("-1", NotDecimal),
            (
                "+49590338271490256608559692538361571095921575989136588898",
                NotDecimal,
            ),
            (
                "049590338271490256608559692538361571095921575989136588898",
                NotDecimal,
            ),
            ("0", BadLead(0)),
            ("1", BadLead(0)),
            ("9".repeat(58).leak(), OutOfRange),
            ("9".repeat(200).leak(), OutOfRange),
            // 2^188 - 1: 57 digits, lead byte 0x0f.
            (
                "392318858461667547739736838950479151006397215279002157055",
                BadLead(0x0f),
            ),
        ];
        for (s, err) in cases {
            assert_eq!(SeqNum::decode(s).as_ref(), Err(err), "{s}");
        }
        // Version 2 | 1 = 3.
        let good = SeqNum::starting(1_600_000_000, 1);
        let v1 = with_field(&good, OFF_VERSION, 1);
        assert_eq!(SeqNum::decode(&v1), Err(UnsupportedVersion(3)));
        let byte1 = with_field(&good, OFF_BYTE1, 0x10);
        assert_eq!(SeqNum::decode(&byte1), Err(ReservedNonZero));
        let ord = with_field(&good, OFF_ORDINAL, 1 << 63);
        assert_eq!(SeqNum::decode(&ord), Err(OrdinalTooHigh));
        let idx = with_field(&good, OFF_SHARD_INDEX, 0x8000_0001);
        assert_eq!(SeqNum::decode(&idx), Err(ShardIndexTooHigh));
        let nib = with_field(&good, OFF_SHARD_NIBBLE, 0x2);
        assert_eq!(
            SeqNum::decode(&nib),
            Err(ShardIndexMismatch {
                nibble: 3,
                index: 1
            })
        );
        let late = SeqNum::starting(MAX_SHARD_CREATE_SECS_EXCLUSIVE, 0).encode();
        assert_eq!(
            SeqNum::decode(&late),
            Err(CreateTimeTooLarge(MAX_SHARD_CREATE_SECS_EXCLUSIVE))
        );
        let ok = SeqNum::starting(MAX_SHARD_CREATE_SECS_EXCLUSIVE - 1, 0);
        assert_eq!(SeqNum::decode(&ok.encode()), Ok(ok));
    }

    /// Encodes `s` with `value` ORed into the field at `offset`.
    fn with_field(s: &SeqNum, offset: u32, value: u64) -> String {
        let mut v = U192::from_decimal(s.encode().as_bytes()).expect("fits");
        v.or_field(offset, value);
        v.to_decimal()
    }

    #[test]
    fn decode_for_shard_checks_index() {
        let s = SeqNum::starting(1_600_000_000, 5).encode();
        assert!(SeqNum::decode_for_shard(&s, 5).is_ok());
        let err = SeqNum::decode_for_shard(&s, 6).expect_err("wrong shard");
        assert_eq!(
            err,
            SeqNumError::WrongShard {
                expected: 6,
                found: 5
            }
        );
        let k = err.into_kinesis("StartingSequenceNumber");
        assert_eq!(k.kind, ErrorKind::InvalidArgument);
        assert_eq!(
            k.message,
            "Invalid StartingSequenceNumber: it encodes shardId-000000000005, while it was used \
             with shardId-000000000006."
        );
    }

    #[test]
    fn cmp_numeric_basics() {
        assert_eq!(cmp_numeric("9", "10"), Ordering::Less);
        assert_eq!(cmp_numeric("10", "9"), Ordering::Greater);
        assert_eq!(cmp_numeric("123", "123"), Ordering::Equal);
        assert_eq!(cmp_numeric("007", "7"), Ordering::Equal);
        assert_eq!(cmp_numeric("0", ""), Ordering::Equal);
        assert_eq!(cmp_numeric("124", "123"), Ordering::Greater);
    }

    #[test]
    fn u192_decimal_round_trip_extremes() {
        let max = U192([u64::MAX; 3]);
        let s = max.to_decimal();
        assert_eq!(
            s,
            "6277101735386680763835789423207666416102355444464034512895"
        );
        assert_eq!(U192::from_decimal(s.as_bytes()), Some(max));
        assert_eq!(
            U192::from_decimal(b"6277101735386680763835789423207666416102355444464034512896"),
            None
        );
        assert_eq!(U192::default().to_decimal(), "0");
    }

    fn seqnum_strategy() -> impl Strategy<Value = SeqNum> {
        (
            0..MAX_SHARD_CREATE_SECS_EXCLUSIVE,
            0..=MAX_SHARD_INDEX,
            0..=ORDINAL_END,
            0..=MASK_36,
        )
            .prop_map(|(c, i, o, a)| SeqNum {
                shard_create_secs: c,
                shard_index: i,
                ordinal: o,
                arrival_secs: a,
            })
    }

    proptest! {
        #[test]
        fn round_trips(s in seqnum_strategy()) {
            let enc = s.encode();
            prop_assert_eq!(SeqNum::decode(&enc), Ok(s));
            prop_assert!(enc.len() == 56, "{} has {} digits", enc, enc.len());
        }

        #[test]
        fn realistic_create_secs_give_56_digits(
            c in 1_000_000_000u64..=4_000_000_000,
            i in any::<u32>(),
            o in any::<u64>(),
            a in any::<u64>(),
        ) {
            let s = SeqNum { shard_create_secs: c, shard_index: i, ordinal: o, arrival_secs: a };
            prop_assert_eq!(s.encode().len(), 56);
        }

        #[test]
        fn order_within_shard_follows_ordinal_then_arrival(
            c in 0..MAX_SHARD_CREATE_SECS_EXCLUSIVE,
            i in 0..=MAX_SHARD_INDEX,
            o1 in 0..=ORDINAL_END, o2 in 0..=ORDINAL_END,
            a1 in 0..=MASK_36, a2 in 0..=MASK_36,
        ) {
            let x = SeqNum { shard_create_secs: c, shard_index: i, ordinal: o1, arrival_secs: a1 };
            let y = SeqNum { shard_create_secs: c, shard_index: i, ordinal: o2, arrival_secs: a2 };
            let expected = o1.cmp(&o2).then(a1.cmp(&a2));
            prop_assert_eq!(cmp_numeric(&x.encode(), &y.encode()), expected);
        }

        #[test]
        fn later_created_shard_sorts_after(
            c1 in 0..MAX_SHARD_CREATE_SECS_EXCLUSIVE, c2 in 0..MAX_SHARD_CREATE_SECS_EXCLUSIVE,
            x in seqnum_strategy(), y in seqnum_strategy(),
        ) {
            prop_assume!(c1 != c2);
            let x = SeqNum { shard_create_secs: c1, ..x };
            let y = SeqNum { shard_create_secs: c2, ..y };
            prop_assert_eq!(cmp_numeric(&x.encode(), &y.encode()), c1.cmp(&c2));
        }

        #[test]
        fn cmp_numeric_matches_u128(a in any::<u128>(), b in any::<u128>()) {
            prop_assert_eq!(cmp_numeric(&a.to_string(), &b.to_string()), a.cmp(&b));
        }

        #[test]
        fn decode_never_panics(s in "[0-9]{0,70}|\\PC{0,70}") {
            let _ = SeqNum::decode(&s);
        }

        #[test]
        fn decode_is_canonical(s in "[1-9][0-9]{54,56}") {
            // Whatever decodes re-encodes to the same string.
            if let Ok(seq) = SeqNum::decode(&s) {
                prop_assert_eq!(seq.encode(), s);
            }
        }
    }
}
