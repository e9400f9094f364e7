//! Stream and account settings that are pure metadata: tags, encryption, enhanced
//! monitoring, resource policies, record-size and throughput settings, account settings.
//! Applied through [`MetaCommand::Settings`](super::MetaCommand::Settings).
//!
//! Reserved tags `spate:write-bytes-per-sec`, `spate:write-records-per-sec`,
//! `spate:read-bytes-per-sec` and `spate:read-calls-per-sec` set the stream's own per-shard
//! throughput limits (a positive integer per second, or `unlimited`) over the cluster's
//! `[limits]`; [`StreamSettings::limit_overrides`] reads them. Any other `spate:` key and any
//! other value are refused when the tag is added.
//!
//! Limits that depend on the current state (at most [`MAX_TAGS`] tags per stream) are
//! checked here, inside the state machine, so that concurrent requests cannot overshoot
//! them. Account-wide changes ignore the command's stream name.

use std::collections::{BTreeMap, BTreeSet};

use serde::{Deserialize, Serialize};

use super::state::{MetaError, MetaResponse, MetaState};

/// Most tags a stream may carry.
pub const MAX_TAGS: usize = 50;
/// Default and bounds of a stream's maximum record size, KiB.
pub const DEFAULT_MAX_RECORD_KIB: u32 = 1024;
/// How long a minimum-throughput billing commitment lasts at least, ms (AWS: 24 h here).
pub const COMMITMENT_MIN_MS: u64 = 24 * 3600 * 1000;

/// Prefix of the reserved tag keys (compared case-insensitively).
pub const RESERVED_TAG_PREFIX: &str = "spate:";
/// The per-stream limit tags, in the order of [`LimitOverrides`]' fields.
pub const LIMIT_TAGS: [&str; 4] = [
    "spate:write-bytes-per-sec",
    "spate:write-records-per-sec",
    "spate:read-bytes-per-sec",
    "spate:read-calls-per-sec",
];

/// One per-stream limit.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum LimitValue {
    /// At most this many per second per shard.
    PerSec(u64),
    /// Not limited.
    Unlimited,
}

/// A stream's own limits; `None` keeps the cluster's value.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct LimitOverrides {
    pub write_bytes: Option<LimitValue>,
    pub write_records: Option<LimitValue>,
    pub read_bytes: Option<LimitValue>,
    pub read_calls: Option<LimitValue>,
}

/// Parses one tag: `Ok(None)` for an ordinary tag, the limit (by index into
/// [`LIMIT_TAGS`]) for a limit tag, `Err` (the reason) for a bad reserved tag.
pub fn parse_limit_tag(key: &str, value: &str) -> Result<Option<(usize, LimitValue)>, String> {
    let reserved = key
        .get(..RESERVED_TAG_PREFIX.len())
        .is_some_and(|p| p.eq_ignore_ascii_case(RESERVED_TAG_PREFIX));
    if !reserved {
        return Ok(None);
    }
    let Some(index) = LIMIT_TAGS.iter().position(|k| *k == key) else {
        return Err(format!(
            "the tag key prefix '{RESERVED_TAG_PREFIX}' is reserved for the stream limits {} (key {key}).",
            LIMIT_TAGS.join(", ")
        ));
    };
    let v = value.trim();
    if v.eq_ignore_ascii_case("unlimited") {
        return Ok(Some((index, LimitValue::Unlimited)));
    }
    match v.parse::<u64>() {
        Ok(n) if n > 0 => Ok(Some((index, LimitValue::PerSec(n)))),
        _ => Err(format!(
            "invalid value '{value}' for tag {key}: expected a positive integer (per second per shard) or 'unlimited'."
        )),
    }
}

/// Checks the reserved tags of a tag map about to be added.
pub fn check_limit_tags(tags: &BTreeMap<String, String>) -> Result<(), String> {
    tags.iter()
        .try_for_each(|(k, v)| parse_limit_tag(k, v).map(|_| ()))
}

/// Server-side encryption of a stream (metadata only: data is not encrypted at rest).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Encryption {
    /// The KMS key id, alias or ARN as given to StartStreamEncryption.
    pub key_id: String,
}

/// Per-stream settings.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct StreamSettings {
    pub tags: BTreeMap<String, String>,
    pub encryption: Option<Encryption>,
    /// Enabled shard-level metrics (names as in the API, never `ALL`).
    pub shard_level_metrics: BTreeSet<String>,
    /// Resource policies by resource ARN (the stream's or one of its consumers').
    pub policies: BTreeMap<String, String>,
    /// `None` = the default, [`DEFAULT_MAX_RECORD_KIB`].
    pub max_record_size_kib: Option<u32>,
    /// Warm throughput target, MiB/s (ON_DEMAND streams).
    pub warm_throughput_mibps: Option<u32>,
}

impl StreamSettings {
    /// The stream's own throughput limits, from its reserved tags.
    pub fn limit_overrides(&self) -> LimitOverrides {
        let mut o = LimitOverrides::default();
        for (k, v) in self.tags.range(RESERVED_TAG_PREFIX.to_string()..) {
            if !k.starts_with(RESERVED_TAG_PREFIX) {
                break;
            }
            if let Ok(Some((i, value))) = parse_limit_tag(k, v) {
                let slot = match i {
                    0 => &mut o.write_bytes,
                    1 => &mut o.write_records,
                    2 => &mut o.read_bytes,
                    _ => &mut o.read_calls,
                };
                *slot = Some(value);
            }
        }
        o
    }

    /// The stream's maximum record size in bytes (data + partition key).
    pub fn max_record_bytes(&self) -> usize {
        self.max_record_size_kib.unwrap_or(DEFAULT_MAX_RECORD_KIB) as usize * 1024
    }
}

/// The account's minimum-throughput billing commitment.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct BillingCommitment {
    pub started_ms: u64,
    /// Set once disabled.
    pub ended_ms: Option<u64>,
    pub earliest_allowed_end_ms: u64,
}

/// Account-wide settings.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct AccountSettings {
    pub commitment: Option<BillingCommitment>,
}

/// A change of settings.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub enum SettingsChange {
    /// Adds or overwrites tags; fails if the stream would carry more than [`MAX_TAGS`].
    AddTags(BTreeMap<String, String>),
    /// Removes tags (absent keys are ignored).
    RemoveTags(Vec<String>),
    /// `Some` starts KMS encryption with that key, `None` stops it.
    Encryption(Option<Encryption>),
    /// Enables (`true`) or disables shard-level metrics.
    Metrics {
        enable: bool,
        names: Vec<String>,
    },
    /// Sets (`Some`) or deletes the policy of a resource ARN.
    Policy {
        arn: String,
        policy: Option<String>,
    },
    MaxRecordSize(u32),
    WarmThroughput(u32),
    /// Account-wide: enables or disables the billing commitment at `now_ms`.
    Commitment {
        enable: bool,
        now_ms: u64,
    },
}

impl std::fmt::Display for SettingsChange {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            SettingsChange::AddTags(t) => write!(f, "AddTags({})", t.len()),
            SettingsChange::RemoveTags(t) => write!(f, "RemoveTags({})", t.len()),
            SettingsChange::Encryption(e) => write!(f, "Encryption({})", e.is_some()),
            SettingsChange::Metrics { enable, names } => {
                write!(f, "Metrics({enable}, {})", names.join(","))
            }
            SettingsChange::Policy { arn, policy } => {
                write!(f, "Policy({arn}, {})", policy.is_some())
            }
            SettingsChange::MaxRecordSize(k) => write!(f, "MaxRecordSize({k})"),
            SettingsChange::WarmThroughput(m) => write!(f, "WarmThroughput({m})"),
            SettingsChange::Commitment { enable, .. } => write!(f, "Commitment({enable})"),
        }
    }
}

impl StreamSettings {
    /// Applies a stream-level change to the settings of stream `name`.
    pub fn apply(&mut self, name: &str, change: &SettingsChange) -> Result<(), MetaError> {
        match change {
            SettingsChange::AddTags(tags) => {
                check_limit_tags(tags).map_err(|m| {
                    MetaError::Invalid(format!("Failed to add tags to stream {name}: {m}"))
                })?;
                let added = tags.keys().filter(|k| !self.tags.contains_key(*k)).count();
                if self.tags.len() + added > MAX_TAGS {
                    return Err(MetaError::Invalid(format!(
                        "Failed to add tags to stream {name}: a stream cannot have more than {MAX_TAGS} tags."
                    )));
                }
                self.tags
                    .extend(tags.iter().map(|(k, v)| (k.clone(), v.clone())));
            }
            SettingsChange::RemoveTags(keys) => {
                for k in keys {
                    self.tags.remove(k);
                }
            }
            SettingsChange::Encryption(e) => self.encryption = e.clone(),
            SettingsChange::Metrics { enable, names } => {
                for n in names {
                    if *enable {
                        self.shard_level_metrics.insert(n.clone());
                    } else {
                        self.shard_level_metrics.remove(n);
                    }
                }
            }
            SettingsChange::Policy { arn, policy } => match policy {
                Some(p) => {
                    self.policies.insert(arn.clone(), p.clone());
                }
                None => {
                    self.policies.remove(arn);
                }
            },
            SettingsChange::MaxRecordSize(kib) => self.max_record_size_kib = Some(*kib),
            SettingsChange::WarmThroughput(mibps) => self.warm_throughput_mibps = Some(*mibps),
            SettingsChange::Commitment { .. } => {
                return Err(MetaError::Invalid("not a stream setting".into()))
            }
        }
        Ok(())
    }
}

impl AccountSettings {
    /// Applies an account-wide change; `false` if `change` is not one.
    pub fn apply(&mut self, change: &SettingsChange) -> bool {
        match change {
            SettingsChange::Commitment { enable, now_ms } => {
                self.commitment = commitment(self.commitment.take(), *enable, *now_ms);
                true
            }
            _ => false,
        }
    }
}

impl MetaState {
    /// Applies a settings change to stream `name` (or to the account).
    pub(crate) fn apply_settings(&mut self, name: &str, change: &SettingsChange) -> MetaResponse {
        if self.account.apply(change) {
            return MetaResponse::Done;
        }
        let Some(stream) = self.streams.get_mut(name) else {
            return MetaResponse::Failed(MetaError::StreamNotFound(name.to_string()));
        };
        match stream.settings.apply(name, change) {
            Ok(()) => MetaResponse::Done,
            Err(e) => MetaResponse::Failed(e),
        }
    }
}

/// The commitment after enabling or disabling it at `now_ms`.
fn commitment(
    current: Option<BillingCommitment>,
    enable: bool,
    now_ms: u64,
) -> Option<BillingCommitment> {
    match (current, enable) {
        (Some(c), true) if c.ended_ms.is_none_or(|e| e > now_ms) => Some(BillingCommitment {
            ended_ms: None,
            ..c
        }),
        (_, true) => Some(BillingCommitment {
            started_ms: now_ms,
            ended_ms: None,
            earliest_allowed_end_ms: now_ms.saturating_add(COMMITMENT_MIN_MS),
        }),
        (Some(c), false) => Some(BillingCommitment {
            ended_ms: Some(c.ended_ms.unwrap_or(now_ms.max(c.earliest_allowed_end_ms))),
            ..c
        }),
        (None, false) => None,
    }
}

#[cfg(test)]
mod tests {
    use super::super::state::CapacityMode;
    use super::super::state::MetaCommand;
    use super::*;

    fn state_with_stream() -> MetaState {
        let mut st = crate::meta::testing::bootstrapped(&[(1, "a")]);
        st.apply(&MetaCommand::CreateStream {
            name: "s".into(),
            mode: CapacityMode::Provisioned,
            hash_ranges: vec![(0, u128::MAX)],
            now_ms: 1000,
        });
        st
    }

    fn apply(st: &mut MetaState, change: SettingsChange) -> MetaResponse {
        st.apply(&MetaCommand::Settings {
            name: "s".into(),
            change,
        })
    }

    fn settings(st: &MetaState) -> &StreamSettings {
        &st.streams["s"].settings
    }

    #[test]
    fn tags_add_remove_and_limit() {
        let mut st = state_with_stream();
        let tags: BTreeMap<String, String> = (0..50)
            .map(|i| (format!("k{i}"), "v".to_string()))
            .collect();
        assert_eq!(
            apply(&mut st, SettingsChange::AddTags(tags)),
            MetaResponse::Done
        );
        // Overwriting existing keys does not count against the limit.
        let again = BTreeMap::from([("k1".to_string(), "w".to_string())]);
        assert_eq!(
            apply(&mut st, SettingsChange::AddTags(again)),
            MetaResponse::Done
        );
        assert_eq!(settings(&st).tags["k1"], "w");
        let one_more = BTreeMap::from([("x".to_string(), String::new())]);
        assert!(matches!(
            apply(&mut st, SettingsChange::AddTags(one_more.clone())),
            MetaResponse::Failed(MetaError::Invalid(_))
        ));
        apply(
            &mut st,
            SettingsChange::RemoveTags(vec!["k1".into(), "nope".into()]),
        );
        assert_eq!(settings(&st).tags.len(), 49);
        assert_eq!(
            apply(&mut st, SettingsChange::AddTags(one_more)),
            MetaResponse::Done
        );
    }

    #[test]
    fn limit_tags_are_validated_and_read() {
        let mut st = state_with_stream();
        let tags = |pairs: &[(&str, &str)]| {
            SettingsChange::AddTags(
                pairs
                    .iter()
                    .map(|(k, v)| (k.to_string(), v.to_string()))
                    .collect(),
            )
        };
        assert_eq!(settings(&st).limit_overrides(), LimitOverrides::default());
        assert_eq!(
            apply(
                &mut st,
                tags(&[
                    ("spate:write-bytes-per-sec", "4194304"),
                    ("spate:read-calls-per-sec", "Unlimited"),
                    ("team", "x"),
                ])
            ),
            MetaResponse::Done
        );
        let o = settings(&st).limit_overrides();
        assert_eq!(o.write_bytes, Some(LimitValue::PerSec(4 << 20)));
        assert_eq!(o.read_calls, Some(LimitValue::Unlimited));
        assert_eq!((o.write_records, o.read_bytes), (None, None));
        for bad in [
            ("spate:write-records-per-sec", "0"),
            ("spate:write-records-per-sec", "-5"),
            ("spate:write-records-per-sec", "1.5"),
            ("spate:write-records-per-sec", ""),
            ("spate:read-bytes-per-sec", "lots"),
            ("spate:unknown", "1"),
            ("SPATE:write-bytes-per-sec", "1"),
        ] {
            match apply(&mut st, tags(&[bad])) {
                MetaResponse::Failed(MetaError::Invalid(m)) => {
                    assert!(m.contains(bad.0), "{m}")
                }
                other => panic!("{bad:?}: {other:?}"),
            }
        }
        // Nothing of a refused change is applied.
        assert_eq!(settings(&st).tags.len(), 3);
        apply(
            &mut st,
            SettingsChange::RemoveTags(vec!["spate:write-bytes-per-sec".into()]),
        );
        assert_eq!(settings(&st).limit_overrides().write_bytes, None);
    }

    #[test]
    fn unknown_stream_fails() {
        let mut st = state_with_stream();
        let r = st.apply(&MetaCommand::Settings {
            name: "other".into(),
            change: SettingsChange::MaxRecordSize(2048),
        });
        assert_eq!(
            r,
            MetaResponse::Failed(MetaError::StreamNotFound("other".into()))
        );
    }

    #[test]
    fn encryption_metrics_policies_sizes() {
        let mut st = state_with_stream();
        assert_eq!(settings(&st).max_record_bytes(), 1024 * 1024);
        apply(
            &mut st,
            SettingsChange::Encryption(Some(Encryption {
                key_id: "alias/aws/kinesis".into(),
            })),
        );
        apply(
            &mut st,
            SettingsChange::Metrics {
                enable: true,
                names: vec!["IncomingBytes".into(), "OutgoingBytes".into()],
            },
        );
        apply(
            &mut st,
            SettingsChange::Metrics {
                enable: false,
                names: vec!["IncomingBytes".into()],
            },
        );
        apply(
            &mut st,
            SettingsChange::Policy {
                arn: "arn".into(),
                policy: Some("{}".into()),
            },
        );
        apply(&mut st, SettingsChange::MaxRecordSize(2048));
        apply(&mut st, SettingsChange::WarmThroughput(100));
        let s = settings(&st).clone();
        assert_eq!(
            s.encryption.map(|e| e.key_id).as_deref(),
            Some("alias/aws/kinesis")
        );
        assert_eq!(
            s.shard_level_metrics.into_iter().collect::<Vec<_>>(),
            vec!["OutgoingBytes".to_string()]
        );
        assert_eq!(s.policies["arn"], "{}");
        assert_eq!(s.max_record_size_kib, Some(2048));
        assert_eq!(s.warm_throughput_mibps, Some(100));
        apply(&mut st, SettingsChange::Encryption(None));
        apply(
            &mut st,
            SettingsChange::Policy {
                arn: "arn".into(),
                policy: None,
            },
        );
        assert!(settings(&st).encryption.is_none());
        assert!(settings(&st).policies.is_empty());
    }

    #[test]
    fn billing_commitment() {
        let mut st = MetaState::default();
        let cmd = |enable, now_ms| MetaCommand::Settings {
            name: String::new(),
            change: SettingsChange::Commitment { enable, now_ms },
        };
        st.apply(&cmd(false, 5));
        assert_eq!(st.account.commitment, None);
        st.apply(&cmd(true, 1000));
        let c = st.account.commitment.clone().unwrap();
        assert_eq!(c.started_ms, 1000);
        assert_eq!(c.earliest_allowed_end_ms, 1000 + COMMITMENT_MIN_MS);
        // Disabling early ends it at the earliest allowed end.
        st.apply(&cmd(false, 2000));
        let c = st.account.commitment.clone().unwrap();
        assert_eq!(c.ended_ms, Some(1000 + COMMITMENT_MIN_MS));
        // Re-enabling before that end keeps the original start.
        st.apply(&cmd(true, 3000));
        let c = st.account.commitment.clone().unwrap();
        assert_eq!((c.started_ms, c.ended_ms), (1000, None));
    }

    #[test]
    fn settings_survive_postcard() {
        let mut st = state_with_stream();
        apply(
            &mut st,
            SettingsChange::AddTags(BTreeMap::from([("a".into(), "b".into())])),
        );
        let bytes = postcard::to_allocvec(&st).unwrap();
        let back: MetaState = postcard::from_bytes(&bytes).unwrap();
        assert_eq!(back, st);
    }
}
