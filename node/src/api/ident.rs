//! Identifier helpers the front door needs: shard ids, stream names, stream ARNs, hash keys,
//! sequence-number syntax. Kept in one place so they can later be swapped for the shared
//! versions in `spate_proto::kinesis::{ids, hash, seqnum}`.

/// Pattern of stream names (and shard ids, consumer names) in the API model.
pub const NAME_PATTERN: &str = "[a-zA-Z0-9_.-]+";
/// Pattern of `ExplicitHashKey`.
pub const HASH_KEY_PATTERN: &str = "0|([1-9]\\d{0,38})";
/// Pattern of sequence numbers.
pub const SEQUENCE_PATTERN: &str = "0|([1-9]\\d{0,128})";
/// Pattern of stream ARNs.
pub const STREAM_ARN_PATTERN: &str = "arn:aws.*:kinesis:.*:\\d{12}:stream/\\S+";

/// `shardId-%012d`.
pub fn shard_id(index: u32) -> String {
    format!("shardId-{index:012}")
}

/// Parses `shardId-000000000001`, `shardId-1` or `1` into the shard index (0…2^31−1).
pub fn parse_shard_id(s: &str) -> Option<u32> {
    let digits = s.strip_prefix("shardId-").unwrap_or(s);
    if digits.is_empty() || !digits.bytes().all(|b| b.is_ascii_digit()) {
        return None;
    }
    let significant = digits.trim_start_matches('0');
    if significant.len() > 10 {
        return None;
    }
    let v: u64 = if significant.is_empty() {
        0
    } else {
        significant.parse().ok()?
    };
    u32::try_from(v).ok().filter(|v| *v <= i32::MAX as u32)
}

/// Characters of `[a-zA-Z0-9_.-]+` (length is checked separately).
pub fn is_name_chars(s: &str) -> bool {
    !s.is_empty()
        && s.bytes()
            .all(|b| b.is_ascii_alphanumeric() || b == b'_' || b == b'.' || b == b'-')
}

/// A valid stream name: 1–128 characters of `[a-zA-Z0-9_.-]`.
pub fn is_valid_stream_name(s: &str) -> bool {
    s.len() <= 128 && is_name_chars(s)
}

/// `arn:aws:kinesis:<region>:<account>:stream/<name>`.
pub fn stream_arn(region: &str, account: &str, name: &str) -> String {
    format!("arn:aws:kinesis:{region}:{account}:stream/{name}")
}

/// The parts of a stream ARN.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct StreamArn<'a> {
    pub region: &'a str,
    pub account: &'a str,
    pub name: &'a str,
}

/// Parses a stream ARN matching [`STREAM_ARN_PATTERN`].
pub fn parse_stream_arn(arn: &str) -> Option<StreamArn<'_>> {
    let mut parts = arn.splitn(6, ':');
    let (prefix, partition, service, region, account, resource) = (
        parts.next()?,
        parts.next()?,
        parts.next()?,
        parts.next()?,
        parts.next()?,
        parts.next()?,
    );
    if prefix != "arn" || !partition.starts_with("aws") || service != "kinesis" {
        return None;
    }
    if account.len() != 12 || !account.bytes().all(|b| b.is_ascii_digit()) {
        return None;
    }
    let name = resource.strip_prefix("stream/")?;
    if name.is_empty() || name.chars().any(char::is_whitespace) {
        return None;
    }
    Some(StreamArn {
        region,
        account,
        name,
    })
}

/// Why an `ExplicitHashKey` was refused.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum HashKeyError {
    /// Does not match [`HASH_KEY_PATTERN`]: a `ValidationException`.
    Pattern,
    /// Matches the pattern but is ≥ 2^128: an `InvalidArgumentException`.
    OutOfRange,
}

/// Checks the syntax of a decimal hash key.
pub fn is_hash_key_syntax(s: &str) -> bool {
    s == "0"
        || (!s.is_empty()
            && s.len() <= 39
            && !s.starts_with('0')
            && s.bytes().all(|b| b.is_ascii_digit()))
}

/// Parses a decimal hash key (`0|([1-9]\d{0,38})`, below 2^128).
pub fn parse_hash_key(s: &str) -> Result<u128, HashKeyError> {
    if !is_hash_key_syntax(s) {
        return Err(HashKeyError::Pattern);
    }
    s.parse::<u128>().map_err(|_| HashKeyError::OutOfRange)
}

/// Checks the syntax of a sequence number (`0|([1-9]\d{0,128})`).
pub fn is_sequence_number(s: &str) -> bool {
    s == "0"
        || (!s.is_empty()
            && s.len() <= 129
            && !s.starts_with('0')
            && s.bytes().all(|b| b.is_ascii_digit()))
}

/// The shard-creation second encoded in a version-2 sequence number (bits 148…183 of the
/// 188-bit value), if `seq` is one.
pub fn shard_create_secs(seq: &str) -> Option<u64> {
    if !is_sequence_number(seq) || seq.len() > 60 {
        return None;
    }
    // Little-endian 32-bit limbs; 7 limbs hold 224 bits.
    let mut limbs = [0u32; 7];
    for d in seq.bytes() {
        let mut carry = u64::from(d - b'0');
        for limb in limbs.iter_mut() {
            let v = u64::from(*limb) * 10 + carry;
            *limb = v as u32;
            carry = v >> 32;
        }
        if carry != 0 {
            return None;
        }
    }
    let bit = |i: usize| -> u64 { u64::from((limbs[i / 32] >> (i % 32)) & 1) };
    // Version-2 numbers have their top nibble (bits 184..188) equal to 2.
    let top = (184..188).rev().fold(0u64, |acc, i| (acc << 1) | bit(i));
    if top != 2 || (188..224).any(|i| bit(i) != 0) {
        return None;
    }
    Some((148..184).rev().fold(0u64, |acc, i| (acc << 1) | bit(i)))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn shard_ids() {
        assert_eq!(shard_id(1), "shardId-000000000001");
        for (s, want) in [
            ("shardId-000000000001", Some(1)),
            ("shardId-1", Some(1)),
            ("1", Some(1)),
            ("0", Some(0)),
            ("shardId-2147483647", Some(2_147_483_647)),
            ("shardId-2147483648", None),
            ("shardId-", None),
            ("shard-1", None),
            ("-1", None),
            ("", None),
            ("00000000000000000000007", Some(7)),
        ] {
            assert_eq!(parse_shard_id(s), want, "{s}");
        }
    }

    #[test]
    fn stream_names() {
        assert!(is_valid_stream_name("a-b_c.d9"));
        assert!(!is_valid_stream_name(""));
        assert!(!is_valid_stream_name("a b"));
        assert!(!is_valid_stream_name(&"a".repeat(129)));
        assert!(is_valid_stream_name(&"a".repeat(128)));
    }

    #[test]
    fn arns() {
        let arn = stream_arn("us-east-1", "000000000000", "s1");
        assert_eq!(arn, "arn:aws:kinesis:us-east-1:000000000000:stream/s1");
        let p = parse_stream_arn(&arn).unwrap();
        assert_eq!(
            (p.region, p.account, p.name),
            ("us-east-1", "000000000000", "s1")
        );
        assert!(parse_stream_arn("arn:aws-cn:kinesis:cn-north-1:123456789012:stream/x").is_some());
        assert!(parse_stream_arn("arn:aws:kinesis:us-east-1:12345:stream/x").is_none());
        assert!(parse_stream_arn("arn:aws:sqs:us-east-1:000000000000:stream/x").is_none());
        assert!(parse_stream_arn("arn:aws:kinesis:us-east-1:000000000000:stream/").is_none());
        assert!(parse_stream_arn("nope").is_none());
    }

    #[test]
    fn hash_keys() {
        assert_eq!(parse_hash_key("0"), Ok(0));
        assert_eq!(parse_hash_key(&u128::MAX.to_string()), Ok(u128::MAX));
        assert_eq!(
            parse_hash_key("340282366920938463463374607431768211456"),
            Err(HashKeyError::OutOfRange)
        );
        assert_eq!(parse_hash_key("01"), Err(HashKeyError::Pattern));
        assert_eq!(parse_hash_key("-1"), Err(HashKeyError::Pattern));
        assert_eq!(parse_hash_key(&"1".repeat(40)), Err(HashKeyError::Pattern));
    }

    #[test]
    fn sequence_numbers() {
        assert!(is_sequence_number("0"));
        assert!(is_sequence_number(
            "49590338271490256608559692538361571095921575989136588898"
        ));
        assert!(!is_sequence_number("012"));
        assert!(!is_sequence_number("x"));
        assert_eq!(
            shard_create_secs("49590338271490256608559692538361571095921575989136588898"),
            Some(1_542_776_258)
        );
        assert_eq!(shard_create_secs("12"), None);
    }
}
