//! Pagination tokens (`NextToken`) of ListStreams and ListShards: opaque base64 of a small
//! JSON document holding where the listing stopped and when the token was issued. Tokens
//! expire after 300 s (`ExpiredNextTokenException`); anything undecodable is an
//! `InvalidArgumentException`.

use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use base64::Engine as _;
use serde::de::DeserializeOwned;
use serde::{Deserialize, Serialize};
use spate_proto::kinesis::{ErrorKind, KinesisError, KinesisResult};

/// How long a token stays valid.
pub const TOKEN_TTL_MS: u64 = 300_000;

/// Where a ListShards listing stopped, and the filter it runs under.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct ShardsToken {
    /// Stream name.
    pub s: String,
    /// Index of the last shard returned.
    pub l: u32,
    /// Shard filter type, if any.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub f: Option<String>,
    /// Shard filter's shard index (AFTER_SHARD_ID).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub fs: Option<u32>,
    /// Shard filter's timestamp, epoch ms (AT_TIMESTAMP, FROM_TIMESTAMP).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub ft: Option<i64>,
}

/// Where a ListStreams listing stopped.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct StreamsToken {
    /// Name of the last stream returned.
    pub l: String,
}

#[derive(Serialize, Deserialize)]
struct Envelope<T> {
    /// Kind: "shards" / "streams".
    k: String,
    /// Issue time, epoch ms.
    t: u64,
    p: T,
}

/// Cluster time, epoch ms ([`crate::cluster::clock`]): a token issued by one node is judged
/// by another, so both use the cluster's time, not their own wall clocks.
pub fn now_ms() -> u64 {
    crate::cluster::clock::now_ms()
}

/// Issues a token of `kind` carrying `payload`, stamped `now_ms`.
pub fn encode<T: Serialize>(kind: &str, payload: &T, now_ms: u64) -> String {
    let env = Envelope {
        k: kind.to_string(),
        t: now_ms,
        p: payload,
    };
    // Serialising plain data to JSON cannot fail; an empty token would be refused later.
    let json = serde_json::to_vec(&env).unwrap_or_default();
    URL_SAFE_NO_PAD.encode(json)
}

/// Decodes a token of `kind` issued at most [`TOKEN_TTL_MS`] before `now_ms`.
pub fn decode<T: DeserializeOwned>(kind: &str, token: &str, now_ms: u64) -> KinesisResult<T> {
    let invalid = || KinesisError::invalid(format!("Invalid NextToken: {token}"));
    let bytes = URL_SAFE_NO_PAD
        .decode(token.trim())
        .map_err(|_| invalid())?;
    let env: Envelope<T> = serde_json::from_slice(&bytes).map_err(|_| invalid())?;
    if env.k != kind {
        return Err(invalid());
    }
    if now_ms.saturating_sub(env.t) > TOKEN_TTL_MS {
        return Err(KinesisError::new(
            ErrorKind::ExpiredNextToken,
            format!(
                "The timestamp of the NextToken is {} while the current time is {}, which is more than {} ms later.",
                env.t, now_ms, TOKEN_TTL_MS
            ),
        ));
    }
    Ok(env.p)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn round_trip_and_expiry() {
        let t = ShardsToken {
            s: "s".into(),
            l: 3,
            f: Some("AT_LATEST".into()),
            fs: None,
            ft: None,
        };
        let tok = encode("shards", &t, 1_000);
        assert_eq!(
            decode::<ShardsToken>("shards", &tok, 1_000 + TOKEN_TTL_MS).unwrap(),
            t
        );
        let err = decode::<ShardsToken>("shards", &tok, 1_001 + TOKEN_TTL_MS).unwrap_err();
        assert_eq!(err.kind, ErrorKind::ExpiredNextToken);
        let err = decode::<StreamsToken>("streams", &tok, 1_000).unwrap_err();
        assert_eq!(err.kind, ErrorKind::InvalidArgument);
        let err = decode::<ShardsToken>("shards", "!!not a token", 1_000).unwrap_err();
        assert_eq!(err.kind, ErrorKind::InvalidArgument);
    }
}
