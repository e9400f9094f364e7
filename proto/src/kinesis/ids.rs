//! Kinesis identifiers as strings: shard ids (`shardId-000000000007`), stream names, stream
//! ARNs (`arn:aws:kinesis:{region}:{account}:stream/{name}`) and consumer ARNs
//! (`{stream_arn}/consumer/{name}:{creation_secs}`) — formatting and parsing.

/// Largest shard index Kinesis accepts (`2^31 - 1`).
pub const MAX_SHARD_INDEX: u32 = i32::MAX as u32;

const SHARD_ID_PREFIX: &str = "shardId-";

/// The shard id of a shard index: `shardId-` + 12-digit zero-padded decimal.
pub fn shard_id(index: u32) -> String {
    format!("{SHARD_ID_PREFIX}{index:012}")
}

/// Parses a `ShardId` as clients send it: `shardId-000000000001`, `shardId-1` or `1`.
/// Returns `None` for anything else, including indexes above `2147483647`.
pub fn parse_shard_id(s: &str) -> Option<u32> {
    let digits = s.strip_prefix(SHARD_ID_PREFIX).unwrap_or(s);
    if digits.is_empty() || !digits.bytes().all(|b| b.is_ascii_digit()) {
        return None;
    }
    // Leading zeros are allowed in any number; bound the value, not the length.
    let value = digits.bytes().try_fold(0u32, |acc, b| {
        acc.checked_mul(10)?.checked_add(u32::from(b - b'0'))
    })?;
    (value <= MAX_SHARD_INDEX).then_some(value)
}

fn is_name_char(c: char) -> bool {
    c.is_ascii_alphanumeric() || matches!(c, '_' | '.' | '-')
}

/// Whether `name` is a valid stream name: 1–128 characters of `[a-zA-Z0-9_.-]`.
pub fn is_valid_stream_name(name: &str) -> bool {
    (1..=super::limits::MAX_STREAM_NAME_LEN).contains(&name.len()) && name.chars().all(is_name_char)
}

/// Whether `name` is a valid consumer name: 1–128 characters of `[a-zA-Z0-9_.-]`.
pub fn is_valid_consumer_name(name: &str) -> bool {
    (1..=128).contains(&name.len()) && name.chars().all(is_name_char)
}

/// The ARN of a stream: `arn:aws:kinesis:{region}:{account_id}:stream/{name}`.
pub fn stream_arn(region: &str, account_id: &str, name: &str) -> String {
    format!("arn:aws:kinesis:{region}:{account_id}:stream/{name}")
}

/// The parts of a stream ARN.
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub struct StreamArn {
    /// `aws`, `aws-cn`, `aws-us-gov`, …
    pub partition: String,
    pub region: String,
    /// 12 decimal digits.
    pub account_id: String,
    /// The stream name (not validated beyond "non-empty, no whitespace").
    pub name: String,
}

impl StreamArn {
    /// Formats the ARN back (`arn:{partition}:kinesis:{region}:{account}:stream/{name}`).
    pub fn to_arn(&self) -> String {
        format!(
            "arn:{}:kinesis:{}:{}:stream/{}",
            self.partition, self.region, self.account_id, self.name
        )
    }
}

/// Splits `arn:{partition}:kinesis:{region}:{account}:{resource}` and returns the parts
/// with the resource unparsed. Partition must start with `aws`; account is 12 digits.
fn split_kinesis_arn(arn: &str) -> Option<(&str, &str, &str, &str)> {
    let mut parts = arn.splitn(6, ':');
    let (arn_lit, partition, service, region, account, resource) = (
        parts.next()?,
        parts.next()?,
        parts.next()?,
        parts.next()?,
        parts.next()?,
        parts.next()?,
    );
    let account_ok = account.len() == 12 && account.bytes().all(|b| b.is_ascii_digit());
    (arn_lit == "arn"
        && partition.starts_with("aws")
        && service == "kinesis"
        && account_ok
        && !region.chars().any(char::is_whitespace)
        && !partition.chars().any(char::is_whitespace))
    .then_some((partition, region, account, resource))
}

/// Parses a stream ARN (API pattern `arn:aws.*:kinesis:.*:\d{12}:stream/\S+`).
/// The stream name is everything after `stream/`; it must be non-empty and contain no
/// whitespace. Callers check name validity (an unknown name is simply "not found").
pub fn parse_stream_arn(arn: &str) -> Option<StreamArn> {
    let (partition, region, account, resource) = split_kinesis_arn(arn)?;
    let name = resource.strip_prefix("stream/")?;
    if name.is_empty() || name.chars().any(char::is_whitespace) {
        return None;
    }
    Some(StreamArn {
        partition: partition.to_owned(),
        region: region.to_owned(),
        account_id: account.to_owned(),
        name: name.to_owned(),
    })
}

/// The ARN of a stream consumer: `{stream_arn}/consumer/{consumer_name}:{created_secs}`.
pub fn consumer_arn(stream_arn: &str, consumer_name: &str, created_secs: u64) -> String {
    format!("{stream_arn}/consumer/{consumer_name}:{created_secs}")
}

/// Parses a consumer ARN (API pattern
/// `arn:aws.*:kinesis:.*:\d{12}:.*stream/[a-zA-Z0-9_.-]+/consumer/[a-zA-Z0-9_.-]+:[0-9]+`).
/// Returns the stream ARN parts, the consumer name and the creation time in Unix seconds.
pub fn parse_consumer_arn(arn: &str) -> Option<(StreamArn, String, u64)> {
    let (partition, region, account, resource) = split_kinesis_arn(arn)?;
    let rest = resource.strip_prefix("stream/")?;
    let (stream_name, consumer_part) = rest.split_once("/consumer/")?;
    let (consumer_name, secs) = consumer_part.rsplit_once(':')?;
    if !is_valid_stream_name(stream_name)
        || !is_valid_consumer_name(consumer_name)
        || secs.is_empty()
        || !secs.bytes().all(|b| b.is_ascii_digit())
    {
        return None;
    }
    let secs: u64 = secs.parse().ok()?;
    Some((
        StreamArn {
            partition: partition.to_owned(),
            region: region.to_owned(),
            account_id: account.to_owned(),
            name: stream_name.to_owned(),
        },
        consumer_name.to_owned(),
        secs,
    ))
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    #[test]
    fn shard_id_format() {
        assert_eq!(shard_id(0), "shardId-000000000000");
        assert_eq!(shard_id(7), "shardId-000000000007");
        assert_eq!(shard_id(MAX_SHARD_INDEX), "shardId-002147483647");
        assert_eq!(shard_id(u32::MAX), "shardId-004294967295");
    }

    #[test]
    fn parse_shard_id_accepts() {
        assert_eq!(parse_shard_id("shardId-000000000001"), Some(1));
        assert_eq!(parse_shard_id("shardId-1"), Some(1));
        assert_eq!(parse_shard_id("1"), Some(1));
        assert_eq!(parse_shard_id("0"), Some(0));
        assert_eq!(parse_shard_id("shardId-2147483647"), Some(2147483647));
        assert_eq!(parse_shard_id("00000000000000000000005"), Some(5));
    }

    #[test]
    fn parse_shard_id_rejects() {
        for bad in [
            "",
            "shardId-",
            "shardId--1",
            "-1",
            "+1",
            "shardId-2147483648",
            "4294967296",
            "99999999999999999999999",
            "shardid-1",
            "shard-1",
            "shardId-1x",
            "1 ",
            " 1",
            "shardId-000000000001-",
            "junk",
            "١",
        ] {
            assert_eq!(parse_shard_id(bad), None, "{bad:?}");
        }
    }

    #[test]
    fn stream_names() {
        assert!(is_valid_stream_name("a"));
        assert!(is_valid_stream_name("My_stream.name-1"));
        assert!(is_valid_stream_name(&"x".repeat(128)));
        assert!(!is_valid_stream_name(&"x".repeat(129)));
        assert!(!is_valid_stream_name(""));
        assert!(!is_valid_stream_name("a b"));
        assert!(!is_valid_stream_name("a/b"));
        assert!(!is_valid_stream_name("a:b"));
        assert!(!is_valid_stream_name("é"));
    }

    #[test]
    fn stream_arn_round_trip() {
        let arn = stream_arn("us-east-1", "000000000000", "orders");
        assert_eq!(arn, "arn:aws:kinesis:us-east-1:000000000000:stream/orders");
        let parsed = parse_stream_arn(&arn).expect("parses");
        assert_eq!(
            parsed,
            StreamArn {
                partition: "aws".into(),
                region: "us-east-1".into(),
                account_id: "000000000000".into(),
                name: "orders".into(),
            }
        );
        assert_eq!(parsed.to_arn(), arn);
        let cn =
            parse_stream_arn("arn:aws-cn:kinesis:cn-north-1:123456789012:stream/s").expect("cn");
        assert_eq!(cn.partition, "aws-cn");
    }

    #[test]
    fn stream_arn_rejects() {
        for bad in [
            "",
            "orders",
            "arn:aws:kinesis:us-east-1:000000000000:stream/",
            "arn:aws:kinesis:us-east-1:000000000000:stream/a b",
            "arn:aws:kinesis:us-east-1:00000000000:stream/s",
            "arn:aws:kinesis:us-east-1:0000000000000:stream/s",
            "arn:aws:kinesis:us-east-1:00000000000a:stream/s",
            "arn:aws:sqs:us-east-1:000000000000:stream/s",
            "arn:gcp:kinesis:us-east-1:000000000000:stream/s",
            "arn:aws:kinesis:us-east-1:000000000000:table/s",
            "arn:aws:kinesis:us-east-1:000000000000",
            "urn:aws:kinesis:us-east-1:000000000000:stream/s",
        ] {
            assert_eq!(parse_stream_arn(bad), None, "{bad:?}");
        }
    }

    #[test]
    fn consumer_arn_round_trip() {
        let s = stream_arn("us-east-1", "123456789012", "lambda-stream");
        let c = consumer_arn(&s, "con1", 1540591608);
        assert_eq!(
            c,
            "arn:aws:kinesis:us-east-1:123456789012:stream/lambda-stream/consumer/con1:1540591608"
        );
        let (stream, name, secs) = parse_consumer_arn(&c).expect("parses");
        assert_eq!(stream.to_arn(), s);
        assert_eq!(name, "con1");
        assert_eq!(secs, 1540591608);
    }

    #[test]
    fn consumer_arn_rejects() {
        let s = "arn:aws:kinesis:us-east-1:123456789012:stream/st";
        for bad in [
            format!("{s}/consumer/c"),
            format!("{s}/consumer/c:"),
            format!("{s}/consumer/c:12x"),
            format!("{s}/consumer/:12"),
            format!("{s}/consumer/a b:12"),
            format!("{s}/consumers/c:12"),
            format!("{s}/consumer/c:99999999999999999999999"),
            s.to_string(),
            "arn:aws:kinesis:us-east-1:123456789012:stream//consumer/c:1".to_string(),
        ] {
            assert_eq!(parse_consumer_arn(&bad), None, "{bad:?}");
        }
        // A consumer ARN is not a valid stream ARN for a valid stream name, but matches
        // the (loose) stream ARN pattern.
        let c = consumer_arn(s, "c", 1);
        assert!(parse_stream_arn(&c).is_some_and(|a| !is_valid_stream_name(&a.name)));
    }

    proptest! {
        #[test]
        fn shard_id_round_trips(ix in 0u32..=MAX_SHARD_INDEX) {
            let id = shard_id(ix);
            prop_assert_eq!(id.len(), 20);
            prop_assert_eq!(parse_shard_id(&id), Some(ix));
            prop_assert_eq!(parse_shard_id(&ix.to_string()), Some(ix));
            prop_assert_eq!(parse_shard_id(&format!("shardId-{ix}")), Some(ix));
        }

        #[test]
        fn parse_shard_id_rejects_too_large(ix in (MAX_SHARD_INDEX as u64 + 1)..=u64::MAX) {
            prop_assert_eq!(parse_shard_id(&ix.to_string()), None);
        }

        #[test]
        fn parsers_never_panic(s in "\\PC{0,200}") {
            let _ = parse_shard_id(&s);
            let _ = parse_stream_arn(&s);
            let _ = parse_consumer_arn(&s);
            let _ = is_valid_stream_name(&s);
        }

        #[test]
        fn arns_round_trip(
            region in "[a-z]{2}-[a-z]{4,9}-[1-9]",
            account in "[0-9]{12}",
            stream in "[a-zA-Z0-9_.-]{1,128}",
            consumer in "[a-zA-Z0-9_.-]{1,128}",
            secs in any::<u64>(),
        ) {
            let s = stream_arn(&region, &account, &stream);
            let parsed = parse_stream_arn(&s).expect("stream arn parses");
            prop_assert_eq!(&parsed.region, &region);
            prop_assert_eq!(&parsed.account_id, &account);
            prop_assert_eq!(&parsed.name, &stream);
            let c = consumer_arn(&s, &consumer, secs);
            let (ps, pc, psecs) = parse_consumer_arn(&c).expect("consumer arn parses");
            prop_assert_eq!(ps, parsed);
            prop_assert_eq!(pc, consumer);
            prop_assert_eq!(psecs, secs);
        }
    }
}
