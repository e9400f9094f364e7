//! The 128-bit hash key space: partition key hashing (MD5, big-endian), parsing decimal
//! hash keys (`ExplicitHashKey`, `NewStartingHashKey`, …), uniform range tiling for
//! CreateStream / UpdateShardCount, and split midpoints. Hash keys are `u128` everywhere;
//! they are strings only on the wire.

use md5::{Digest, Md5};

use super::error::KinesisError;
use super::limits::MAX_EXPLICIT_HASH_KEY_DIGITS;

/// The hash key of a partition key: MD5 of its UTF-8 bytes read as a big-endian `u128`.
pub fn partition_key_hash(partition_key: &str) -> u128 {
    let digest: [u8; 16] = Md5::digest(partition_key.as_bytes()).into();
    u128::from_be_bytes(digest)
}

/// `floor(2^128 / n)` for `n >= 2` (`2^128` itself does not fit in a `u128`).
fn width_for(n: u128) -> u128 {
    u128::MAX / n + (u128::MAX % n + 1) / n
}

/// `n` contiguous inclusive ranges tiling `[0, u128::MAX]`, as CreateStream assigns them:
/// each is `floor(2^128 / n)` wide and the last one also takes the remainder, ending at
/// `u128::MAX`. `n == 0` yields no ranges.
pub fn uniform_ranges(n: u32) -> Vec<(u128, u128)> {
    match n {
        0 => Vec::new(),
        1 => vec![(0, u128::MAX)],
        _ => {
            let width = width_for(u128::from(n));
            (0..u128::from(n))
                .map(|i| {
                    // i < n, so i * width <= (n - 1) * 2^128 / n < 2^128: no overflow.
                    let start = i * width;
                    let end = if i + 1 == u128::from(n) {
                        u128::MAX
                    } else {
                        start + (width - 1)
                    };
                    (start, end)
                })
                .collect()
        }
    }
}

/// The first hash key of the upper child when splitting `[start, end]` in half:
/// `start + (end - start + 1) / 2`, computed without overflow (the full range gives
/// `2^127`). For `start < end` the result lies in `(start, end]`; for `end <= start` the
/// result is `start`.
pub fn split_midpoint(start: u128, end: u128) -> u128 {
    if end <= start {
        return start;
    }
    let span = end - start;
    start + span / 2 + span % 2
}

/// Whether `key` lies in the inclusive range `[start, end]`.
pub fn range_contains(start: u128, end: u128, key: u128) -> bool {
    start <= key && key <= end
}

/// Parses a decimal hash key: pattern `0|([1-9]\d{0,38})` and at most `2^128 - 1`.
/// Any violation is an `InvalidArgumentException`.
pub fn parse_hash_key(s: &str) -> Result<u128, KinesisError> {
    let invalid = || {
        // Bound the echoed value: the input is client-controlled.
        let shown: String = s.chars().take(64).collect();
        let ellipsis = if s.chars().nth(64).is_some() {
            "..."
        } else {
            ""
        };
        KinesisError::invalid(format!(
            "Invalid hash key '{shown}{ellipsis}'. A hash key must be a decimal integer in \
             the range [0, 2^128-1] without leading zeros."
        ))
    };
    let bytes = s.as_bytes();
    if bytes.is_empty()
        || bytes.len() > MAX_EXPLICIT_HASH_KEY_DIGITS
        || !bytes.iter().all(u8::is_ascii_digit)
        || (bytes.len() > 1 && bytes[0] == b'0')
    {
        return Err(invalid());
    }
    bytes.iter().try_fold(0u128, |acc, &b| {
        acc.checked_mul(10)
            .and_then(|v| v.checked_add(u128::from(b - b'0')))
            .ok_or_else(invalid)
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::kinesis::ErrorKind;
    use proptest::prelude::*;

    #[test]
    fn known_md5_vector() {
        assert_eq!(
            partition_key_hash("123"),
            42767516990368493138776584305024125808
        );
        // MD5("") = d41d8cd98f00b204e9800998ecf8427e
        assert_eq!(partition_key_hash(""), 0xd41d8cd98f00b204e9800998ecf8427e);
    }

    #[test]
    fn uniform_ranges_known_values() {
        assert!(uniform_ranges(0).is_empty());
        assert_eq!(uniform_ranges(1), vec![(0, u128::MAX)]);
        let two = uniform_ranges(2);
        assert_eq!(
            two,
            vec![(0, (1u128 << 127) - 1), (1u128 << 127, u128::MAX)]
        );
        // From kinesalite / AWS: 3 shards, first ends at 113427455640312821154458202477256070484.
        let three = uniform_ranges(3);
        assert_eq!(three[0], (0, 113427455640312821154458202477256070484));
        assert_eq!(three[1].0, 113427455640312821154458202477256070485);
        assert_eq!(three[1].1, 226854911280625642308916404954512140969);
        assert_eq!(
            three[2],
            (226854911280625642308916404954512140970, u128::MAX)
        );
    }

    #[test]
    fn split_midpoint_known_values() {
        assert_eq!(split_midpoint(0, u128::MAX), 1u128 << 127);
        assert_eq!(split_midpoint(0, 1), 1);
        assert_eq!(split_midpoint(0, 2), 1);
        assert_eq!(split_midpoint(0, 3), 2);
        assert_eq!(split_midpoint(u128::MAX - 1, u128::MAX), u128::MAX);
        assert_eq!(split_midpoint(5, 5), 5);
        assert_eq!(split_midpoint(9, 5), 9);
    }

    #[test]
    fn range_contains_bounds() {
        assert!(range_contains(3, 7, 3));
        assert!(range_contains(3, 7, 7));
        assert!(!range_contains(3, 7, 2));
        assert!(!range_contains(3, 7, 8));
        assert!(range_contains(0, u128::MAX, u128::MAX));
        assert!(!range_contains(7, 3, 5));
    }

    #[test]
    fn parse_hash_key_accepts_valid() {
        assert_eq!(parse_hash_key("0").ok(), Some(0));
        assert_eq!(parse_hash_key("1").ok(), Some(1));
        assert_eq!(
            parse_hash_key("340282366920938463463374607431768211455").ok(),
            Some(u128::MAX)
        );
        assert_eq!(
            parse_hash_key("42767516990368493138776584305024125808").ok(),
            Some(partition_key_hash("123"))
        );
    }

    #[test]
    fn parse_hash_key_rejects_invalid() {
        for bad in [
            "",
            "00",
            "01",
            "-1",
            "+1",
            " 1",
            "1 ",
            "1.0",
            "1e3",
            "abc",
            "340282366920938463463374607431768211456", // 2^128
            "999999999999999999999999999999999999999",
            "1000000000000000000000000000000000000000", // 40 digits
            "١٢٣",                                      // non-ASCII digits
        ] {
            let err = parse_hash_key(bad).expect_err(bad);
            assert_eq!(err.kind, ErrorKind::InvalidArgument, "{bad}");
            assert!(err.message.contains("hash key"), "{}", err.message);
        }
        let long = "9".repeat(1000);
        let err = parse_hash_key(&long).expect_err("long");
        assert!(err.message.len() < 300);
    }

    proptest! {
        #[test]
        fn md5_matches_independent_big_endian(key in ".{0,300}") {
            let digest = Md5::digest(key.as_bytes());
            let expected = digest.iter().fold(0u128, |acc, &b| (acc << 8) | u128::from(b));
            prop_assert_eq!(partition_key_hash(&key), expected);
        }

        #[test]
        fn uniform_ranges_tile_the_space(n in 1u32..=10_000) {
            let ranges = uniform_ranges(n);
            prop_assert_eq!(ranges.len(), n as usize);
            prop_assert_eq!(ranges[0].0, 0);
            prop_assert_eq!(ranges[ranges.len() - 1].1, u128::MAX);
            for w in ranges.windows(2) {
                prop_assert!(w[0].0 <= w[0].1);
                prop_assert_eq!(w[0].1.checked_add(1), Some(w[1].0));
            }
            // Width is floor(2^128 / n) for every range but the last, which also takes the
            // remainder 2^128 mod n (< n). Widths are measured as end - start (= width - 1).
            let base = ranges[0].1 - ranges[0].0;
            for r in &ranges[..ranges.len() - 1] {
                prop_assert_eq!(r.1 - r.0, base);
            }
            let last = ranges[ranges.len() - 1];
            let extra = (last.1 - last.0) - base;
            prop_assert!(extra < u128::from(n));
            if n > 1 {
                // n * width + remainder == 2^128, checked mod 2^128.
                let width = base + 1;
                prop_assert_eq!(width.wrapping_mul(u128::from(n)).wrapping_add(extra), 0);
            }
        }

        #[test]
        fn split_midpoint_inside(a in any::<u128>(), b in any::<u128>()) {
            prop_assume!(a != b);
            let (start, end) = if a < b { (a, b) } else { (b, a) };
            let mid = split_midpoint(start, end);
            prop_assert!(start < mid && mid <= end);
            // Both halves are within one key of each other in size.
            let lower = mid - 1 - start;
            let upper = end - mid;
            prop_assert!(lower == upper || lower + 1 == upper || upper + 1 == lower);
        }

        #[test]
        fn parse_hash_key_round_trips(k in any::<u128>()) {
            prop_assert_eq!(parse_hash_key(&k.to_string()).ok(), Some(k));
        }

        #[test]
        fn parse_hash_key_never_panics(s in "\\PC{0,50}") {
            let _ = parse_hash_key(&s);
        }
    }
}
