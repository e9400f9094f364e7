//! Stream and account settings that are pure metadata: tags, encryption, enhanced
//! monitoring, resource policies, record-size and throughput settings, account settings.
//! Applied through [`MetaCommand::Settings`](super::MetaCommand::Settings).
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
    use super::super::state::{ClusterSecrets, MetaCommand, NodeInfo};
    use super::*;

    fn state_with_stream() -> MetaState {
        let mut st = MetaState::default();
        st.apply(&MetaCommand::Bootstrap {
            secrets: ClusterSecrets {
                iterator_key_id: 1,
                iterator_key: [7; 32],
                cluster_id: 1,
            },
            nodes: vec![NodeInfo {
                id: 1,
                zone: "a".into(),
                peer_addr: "x:1".into(),
            }],
        });
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
