//! Shard iterator tokens: authenticated, opaque, expiring after 5 minutes.
//!
//! ```text
//! token     = base64std( 00 00 00 00 00 00 00 01 | key_id:u8 | nonce:12 | AES-256-GCM(plaintext) )
//! plaintext = prost { v=1, stream_uid, shard_ix, position, issued_at_ms, flags }
//! ```
//!
//! The 9-byte header (prefix and key id) is authenticated as associated data. Keys are
//! cluster-wide (current plus previous, so rotation does not invalidate live iterators), so
//! any node can decode any iterator. Tokens are about 100 characters.

use aes_gcm::aead::{Aead, KeyInit, Payload};
use aes_gcm::{Aes256Gcm, Nonce};
use base64::engine::general_purpose::STANDARD;
use base64::Engine as _;
use prost::Message as _;
use rand::RngCore as _;

use super::error::{ErrorKind, KinesisError};

/// How long an iterator stays valid after it is issued, in milliseconds.
pub const ITERATOR_TTL_MS: u64 = 300_000;

/// Forward clock skew between nodes tolerated for `issued_at_ms`, in milliseconds.
pub const MAX_ISSUE_SKEW_MS: u64 = 5_000;

/// Longest `ShardIterator` accepted (API constraint).
pub const MAX_TOKEN_CHARS: usize = 512;

const PREFIX: [u8; 8] = [0, 0, 0, 0, 0, 0, 0, 1];
const HEADER_LEN: usize = PREFIX.len() + 1;
const NONCE_LEN: usize = 12;
const TAG_LEN: usize = 16;
const PLAINTEXT_VERSION: u32 = 1;
const INVALID_MESSAGE: &str = "Invalid ShardIterator.";

/// What an iterator token carries.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct IteratorPosition {
    /// Unique id of the stream incarnation (a recreated stream gets a new one).
    pub stream_uid: u64,
    pub shard_index: u32,
    /// The next ordinal to read.
    pub position: u64,
    /// When the iterator was issued, Unix milliseconds.
    pub issued_at_ms: u64,
}

#[derive(Clone, PartialEq, prost::Message)]
struct Plaintext {
    #[prost(uint32, tag = "1")]
    v: u32,
    #[prost(uint64, tag = "2")]
    stream_uid: u64,
    #[prost(uint32, tag = "3")]
    shard_ix: u32,
    #[prost(uint64, tag = "4")]
    position: u64,
    #[prost(uint64, tag = "5")]
    issued_at_ms: u64,
    #[prost(uint32, tag = "6")]
    flags: u32,
}

/// The iterator keys of the cluster: the current one (used to encode) and optionally the
/// previous one (still accepted when decoding). Each is `(key_id, 32-byte key)`.
#[derive(Clone)]
pub struct IteratorKeys {
    current_id: u8,
    current: Aes256Gcm,
    previous: Option<(u8, Aes256Gcm)>,
}

impl std::fmt::Debug for IteratorKeys {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        // Never print key material.
        f.debug_struct("IteratorKeys")
            .field("current_id", &self.current_id)
            .field("previous_id", &self.previous.as_ref().map(|(id, _)| *id))
            .finish_non_exhaustive()
    }
}

fn invalid() -> KinesisError {
    KinesisError::invalid(INVALID_MESSAGE)
}

impl IteratorKeys {
    /// Builds the key set. A `previous` key with the same id as `current` is ignored.
    pub fn new(current: (u8, [u8; 32]), previous: Option<(u8, [u8; 32])>) -> Self {
        let (current_id, current_key) = current;
        let previous = previous
            .filter(|(id, _)| *id != current_id)
            .map(|(id, key)| (id, Aes256Gcm::new(&key.into())));
        Self {
            current_id,
            current: Aes256Gcm::new(&current_key.into()),
            previous,
        }
    }

    /// The id of the key new tokens are encrypted with.
    pub fn current_key_id(&self) -> u8 {
        self.current_id
    }

    fn cipher(&self, key_id: u8) -> Option<&Aes256Gcm> {
        if key_id == self.current_id {
            return Some(&self.current);
        }
        match &self.previous {
            Some((id, c)) if *id == key_id => Some(c),
            _ => None,
        }
    }

    /// Issues a token for `pos` under the current key, with a fresh random nonce.
    pub fn encode(&self, pos: &IteratorPosition) -> String {
        let plaintext = Plaintext {
            v: PLAINTEXT_VERSION,
            stream_uid: pos.stream_uid,
            shard_ix: pos.shard_index,
            position: pos.position,
            issued_at_ms: pos.issued_at_ms,
            flags: 0,
        }
        .encode_to_vec();
        let mut header = [0u8; HEADER_LEN];
        header[..PREFIX.len()].copy_from_slice(&PREFIX);
        header[PREFIX.len()] = self.current_id;
        let mut nonce = [0u8; NONCE_LEN];
        rand::thread_rng().fill_bytes(&mut nonce);
        // AES-GCM only fails for plaintexts beyond 64 GiB; ours is under 64 bytes. Should it
        // ever fail, the empty ciphertext yields a token that decodes as invalid.
        let ciphertext = self
            .current
            .encrypt(
                Nonce::from_slice(&nonce),
                Payload {
                    msg: &plaintext,
                    aad: &header,
                },
            )
            .unwrap_or_default();
        let mut raw = Vec::with_capacity(HEADER_LEN + NONCE_LEN + ciphertext.len());
        raw.extend_from_slice(&header);
        raw.extend_from_slice(&nonce);
        raw.extend_from_slice(&ciphertext);
        STANDARD.encode(raw)
    }

    /// Authenticates and decodes a token at time `now_ms` (Unix milliseconds).
    ///
    /// Malformed, tampered or foreign tokens (and ones issued more than 5 s in the future)
    /// are `InvalidArgumentException`; tokens older than [`ITERATOR_TTL_MS`] are
    /// `ExpiredIteratorException`. One pair of surrounding double quotes is tolerated, as
    /// AWS does. Whether `stream_uid` still names a live stream is the caller's check.
    pub fn decode(&self, token: &str, now_ms: u64) -> Result<IteratorPosition, KinesisError> {
        let token = token
            .strip_prefix('"')
            .and_then(|t| t.strip_suffix('"'))
            .unwrap_or(token);
        if token.is_empty() || token.len() > MAX_TOKEN_CHARS {
            return Err(invalid());
        }
        let raw = STANDARD.decode(token).map_err(|_| invalid())?;
        if raw.len() < HEADER_LEN + NONCE_LEN + TAG_LEN {
            return Err(invalid());
        }
        let (header, rest) = raw.split_at(HEADER_LEN);
        let (nonce, ciphertext) = rest.split_at(NONCE_LEN);
        if header[..PREFIX.len()] != PREFIX {
            return Err(invalid());
        }
        let cipher = self.cipher(header[PREFIX.len()]).ok_or_else(invalid)?;
        let plaintext = cipher
            .decrypt(
                Nonce::from_slice(nonce),
                Payload {
                    msg: ciphertext,
                    aad: header,
                },
            )
            .map_err(|_| invalid())?;
        let body = Plaintext::decode(plaintext.as_slice()).map_err(|_| invalid())?;
        if body.v != PLAINTEXT_VERSION {
            return Err(invalid());
        }
        let issued = body.issued_at_ms;
        if issued > now_ms.saturating_add(MAX_ISSUE_SKEW_MS) {
            return Err(invalid());
        }
        if now_ms.saturating_sub(issued) > ITERATOR_TTL_MS {
            return Err(KinesisError::new(
                ErrorKind::ExpiredIterator,
                format!(
                    "Iterator expired. The iterator was created at time {} while right now it \
                     is {} which is further in the future than the tolerated delay of \
                     {ITERATOR_TTL_MS} milliseconds.",
                    amz_utc_string(issued),
                    amz_utc_string(now_ms)
                ),
            ));
        }
        Ok(IteratorPosition {
            stream_uid: body.stream_uid,
            shard_index: body.shard_ix,
            position: body.position,
            issued_at_ms: issued,
        })
    }
}

/// Formats Unix milliseconds as `Tue Nov 22 00:35:47 UTC 2026` (Java `Date` style, UTC).
fn amz_utc_string(ms: u64) -> String {
    const WEEKDAYS: [&str; 7] = ["Sun", "Mon", "Tue", "Wed", "Thu", "Fri", "Sat"];
    const MONTHS: [&str; 12] = [
        "Jan", "Feb", "Mar", "Apr", "May", "Jun", "Jul", "Aug", "Sep", "Oct", "Nov", "Dec",
    ];
    let secs = ms / 1000;
    let days = secs / 86_400;
    let sod = secs % 86_400;
    // 1970-01-01 was a Thursday.
    let weekday = WEEKDAYS[((days + 4) % 7) as usize];
    // Civil-from-days (H. Hinnant), for non-negative day counts.
    let z = days + 719_468;
    let era = z / 146_097;
    let doe = z - era * 146_097;
    let yoe = (doe - doe / 1460 + doe / 36_524 - doe / 146_096) / 365;
    let doy = doe - (365 * yoe + yoe / 4 - yoe / 100);
    let mp = (5 * doy + 2) / 153;
    let day = doy - (153 * mp + 2) / 5 + 1;
    let month = if mp < 10 { mp + 3 } else { mp - 9 };
    let year = yoe + era * 400 + u64::from(month <= 2);
    let month_name = MONTHS
        .get((month as usize).wrapping_sub(1))
        .copied()
        .unwrap_or("???");
    format!(
        "{weekday} {month_name} {day:02} {:02}:{:02}:{:02} UTC {year}",
        sod / 3600,
        (sod / 60) % 60,
        sod % 60
    )
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    const NOW: u64 = 1_795_304_520_743;

    fn keys() -> IteratorKeys {
        IteratorKeys::new((1, [7u8; 32]), None)
    }

    fn pos() -> IteratorPosition {
        IteratorPosition {
            stream_uid: 42,
            shard_index: 3,
            position: 1234,
            issued_at_ms: NOW,
        }
    }

    #[test]
    fn round_trip_and_shape() {
        let k = keys();
        let t = k.encode(&pos());
        assert!(t.len() <= MAX_TOKEN_CHARS && t.len() >= 60, "{}", t.len());
        assert_eq!(k.decode(&t, NOW), Ok(pos()));
        assert_eq!(k.decode(&format!("\"{t}\""), NOW), Ok(pos()));
        // Fresh nonce each time.
        assert_ne!(k.encode(&pos()), t);
        let raw = STANDARD.decode(&t).expect("base64");
        assert_eq!(raw[..8], PREFIX);
        assert_eq!(raw[8], 1);
    }

    #[test]
    fn max_values_fit() {
        let k = keys();
        let p = IteratorPosition {
            stream_uid: u64::MAX,
            shard_index: u32::MAX,
            position: u64::MAX,
            issued_at_ms: u64::MAX,
        };
        let t = k.encode(&p);
        assert!(t.len() <= 128, "{}", t.len());
        assert_eq!(k.decode(&t, u64::MAX), Ok(p));
    }

    #[test]
    fn expiry_boundary_and_message() {
        let k = keys();
        let t = k.encode(&pos());
        assert!(k.decode(&t, NOW + ITERATOR_TTL_MS).is_ok());
        let err = k
            .decode(&t, NOW + ITERATOR_TTL_MS + 1)
            .expect_err("expired");
        assert_eq!(err.kind, ErrorKind::ExpiredIterator);
        assert_eq!(
            err.message,
            "Iterator expired. The iterator was created at time Sat Nov 21 23:42:00 UTC 2026 \
             while right now it is Sat Nov 21 23:47:00 UTC 2026 which is further in the \
             future than the tolerated delay of 300000 milliseconds."
        );
    }

    #[test]
    fn future_issue_time() {
        let k = keys();
        let t = k.encode(&pos());
        assert!(k.decode(&t, NOW - MAX_ISSUE_SKEW_MS).is_ok());
        let err = k
            .decode(&t, NOW - MAX_ISSUE_SKEW_MS - 1)
            .expect_err("future");
        assert_eq!(err.kind, ErrorKind::InvalidArgument);
        assert!(k.decode(&t, 0).is_err());
    }

    #[test]
    fn rejects_garbage() {
        let k = keys();
        let long = "A".repeat(600);
        let short = STANDARD.encode([0u8, 0, 0, 0, 0, 0, 0, 1, 1, 0, 0]);
        for bad in ["", "\"\"", "\"", "not base64!", "AAAA", &long, &short] {
            let err = k.decode(bad, NOW).expect_err(bad);
            assert_eq!(err.kind, ErrorKind::InvalidArgument, "{bad}");
            assert_eq!(err.message, "Invalid ShardIterator.");
        }
        // Valid header, wrong body length / no tag.
        let mut raw = PREFIX.to_vec();
        raw.push(1);
        raw.extend_from_slice(&[0u8; 40]);
        assert!(k.decode(&STANDARD.encode(&raw), NOW).is_err());
    }

    #[test]
    fn key_rotation() {
        let old = IteratorKeys::new((1, [1u8; 32]), None);
        let rotated = IteratorKeys::new((2, [2u8; 32]), Some((1, [1u8; 32])));
        let t_old = old.encode(&pos());
        assert_eq!(rotated.decode(&t_old, NOW), Ok(pos()));
        let t_new = rotated.encode(&pos());
        assert_eq!(STANDARD.decode(&t_new).expect("b64")[8], 2);
        assert!(old.decode(&t_new, NOW).is_err());
        // Same id, different key material: auth tag fails.
        let impostor = IteratorKeys::new((1, [9u8; 32]), None);
        assert_eq!(
            impostor.decode(&t_old, NOW).map_err(|e| e.kind),
            Err(ErrorKind::InvalidArgument)
        );
        assert_eq!(
            format!("{rotated:?}"),
            "IteratorKeys { current_id: 2, previous_id: Some(1), .. }"
        );
        assert_eq!(rotated.current_key_id(), 2);
    }

    #[test]
    fn amz_date_format() {
        assert_eq!(amz_utc_string(0), "Thu Jan 01 00:00:00 UTC 1970");
        assert_eq!(
            amz_utc_string(951_782_400_000),
            "Tue Feb 29 00:00:00 UTC 2000"
        );
        assert_eq!(
            amz_utc_string(1_545_084_650_987),
            "Mon Dec 17 22:10:50 UTC 2018"
        );
        let _ = amz_utc_string(u64::MAX);
    }

    fn position_strategy() -> impl Strategy<Value = IteratorPosition> {
        (
            any::<u64>(),
            any::<u32>(),
            any::<u64>(),
            0u64..=4_000_000_000_000,
        )
            .prop_map(|(stream_uid, shard_index, position, issued_at_ms)| {
                IteratorPosition {
                    stream_uid,
                    shard_index,
                    position,
                    issued_at_ms,
                }
            })
    }

    proptest! {
        #[test]
        fn tokens_round_trip(p in position_strategy(), age in 0..=ITERATOR_TTL_MS) {
            let k = keys();
            let t = k.encode(&p);
            prop_assert!(t.len() <= MAX_TOKEN_CHARS);
            prop_assert_eq!(k.decode(&t, p.issued_at_ms + age), Ok(p));
        }

        #[test]
        fn any_flipped_byte_is_rejected(
            p in position_strategy(),
            index in any::<prop::sample::Index>(),
            bit in 0u8..8,
        ) {
            let k = keys();
            let mut raw = STANDARD.decode(k.encode(&p)).expect("base64");
            let i = index.index(raw.len());
            raw[i] ^= 1 << bit;
            let err = k.decode(&STANDARD.encode(&raw), p.issued_at_ms);
            prop_assert_eq!(err.map_err(|e| e.kind), Err(ErrorKind::InvalidArgument));
        }

        #[test]
        fn expires_after_ttl(p in position_strategy(), late in 1u64..=1_000_000_000) {
            let k = keys();
            let t = k.encode(&p);
            let err = k.decode(&t, p.issued_at_ms + ITERATOR_TTL_MS + late);
            prop_assert_eq!(err.map_err(|e| e.kind), Err(ErrorKind::ExpiredIterator));
        }

        #[test]
        fn rejected_under_other_key(
            p in position_strategy(),
            key_a in any::<[u8; 32]>(),
            key_b in any::<[u8; 32]>(),
            id in any::<u8>(),
        ) {
            prop_assume!(key_a != key_b);
            let t = IteratorKeys::new((id, key_a), None).encode(&p);
            let other = IteratorKeys::new((id, key_b), None);
            let err = other.decode(&t, p.issued_at_ms);
            prop_assert_eq!(err.map_err(|e| e.kind), Err(ErrorKind::InvalidArgument));
        }

        #[test]
        fn decode_never_panics(s in "\\PC{0,600}", now in any::<u64>()) {
            let _ = keys().decode(&s, now);
        }
    }
}
