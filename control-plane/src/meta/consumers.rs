//! Enhanced fan-out consumers registered on streams. Applied through
//! [`MetaCommand::Consumer`](super::MetaCommand::Consumer).
//!
//! Lifecycle: `Register` adds a consumer in `CREATING`; `Activate` makes it `ACTIVE`;
//! `Deregister` marks it `DELETING`; `Remove` drops it. A stream holds at most
//! [`MAX_CONSUMERS_PER_STREAM`] consumers (those being deleted included, as AWS counts
//! them). Consumers live inside their [`StreamMeta`](super::state::StreamMeta), so deleting
//! a stream deletes its consumers.
//!
//! Refusals are [`MetaError::Invalid`] whose message starts with the Kinesis error name
//! ([`IN_USE`], [`LIMIT`], [`NOT_FOUND`]), so the API can map them back.

use serde::{Deserialize, Serialize};

use super::state::{MetaError, MetaResponse, MetaState, StreamMeta};

/// Most consumers a stream may have registered.
pub const MAX_CONSUMERS_PER_STREAM: usize = 20;
/// Message prefix of refusals that are `ResourceInUseException`s.
pub const IN_USE: &str = "ResourceInUseException: ";
/// Message prefix of refusals that are `LimitExceededException`s.
pub const LIMIT: &str = "LimitExceededException: ";
/// Message prefix of refusals that are `ResourceNotFoundException`s.
pub const NOT_FOUND: &str = "ResourceNotFoundException: ";

/// Lifecycle state of a consumer.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
pub enum ConsumerStatus {
    Creating,
    Active,
    Deleting,
}

impl ConsumerStatus {
    /// The name Kinesis reports.
    pub fn as_str(self) -> &'static str {
        match self {
            ConsumerStatus::Creating => "CREATING",
            ConsumerStatus::Active => "ACTIVE",
            ConsumerStatus::Deleting => "DELETING",
        }
    }
}

/// A registered consumer.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct ConsumerMeta {
    pub name: String,
    /// Registration time in Unix seconds: the last field of the consumer ARN.
    pub created_secs: u64,
    pub status: ConsumerStatus,
}

/// A change of a stream's consumers.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub enum ConsumerCommand {
    /// Registers `name` on `stream` in `CREATING`.
    Register {
        stream: String,
        name: String,
        now_secs: u64,
    },
    /// Makes the consumer registered at `created_secs` `ACTIVE` (no-op otherwise).
    Activate {
        stream: String,
        name: String,
        created_secs: u64,
    },
    /// Marks a consumer `DELETING`.
    Deregister { stream: String, name: String },
    /// Drops a `DELETING` consumer registered at `created_secs` (no-op otherwise).
    Remove {
        stream: String,
        name: String,
        created_secs: u64,
    },
}

impl std::fmt::Display for ConsumerCommand {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            ConsumerCommand::Register { stream, name, .. } => {
                write!(f, "Register({stream}/{name})")
            }
            ConsumerCommand::Activate { stream, name, .. } => {
                write!(f, "Activate({stream}/{name})")
            }
            ConsumerCommand::Deregister { stream, name } => {
                write!(f, "Deregister({stream}/{name})")
            }
            ConsumerCommand::Remove { stream, name, .. } => write!(f, "Remove({stream}/{name})"),
        }
    }
}

fn refuse(prefix: &str, msg: String) -> MetaResponse {
    MetaResponse::Failed(MetaError::Invalid(format!("{prefix}{msg}")))
}

/// Whether a stream may be deleted: with registered consumers only when
/// `EnforceConsumerDeletion` is set. `Err` is a `ResourceInUseException` message.
pub fn check_stream_deletion(
    stream: &StreamMeta,
    enforce_consumer_deletion: bool,
) -> Result<(), String> {
    if enforce_consumer_deletion || stream.consumers.is_empty() {
        Ok(())
    } else {
        Err(format!(
            "Stream {} has {} registered consumers; set EnforceConsumerDeletion to delete it with them.",
            stream.name,
            stream.consumers.len()
        ))
    }
}

impl MetaState {
    /// Applies a consumer command.
    pub(crate) fn apply_consumer(&mut self, cmd: &ConsumerCommand) -> MetaResponse {
        let stream_name = match cmd {
            ConsumerCommand::Register { stream, .. }
            | ConsumerCommand::Activate { stream, .. }
            | ConsumerCommand::Deregister { stream, .. }
            | ConsumerCommand::Remove { stream, .. } => stream,
        };
        let Some(stream) = self.streams.get_mut(stream_name) else {
            return MetaResponse::Failed(MetaError::StreamNotFound(stream_name.clone()));
        };
        match cmd {
            ConsumerCommand::Register { name, now_secs, .. } => {
                if stream.consumers.iter().any(|c| &c.name == name) {
                    return refuse(
                        IN_USE,
                        format!("Consumer {name} already exists on stream {stream_name}."),
                    );
                }
                if stream.consumers.len() >= MAX_CONSUMERS_PER_STREAM {
                    return refuse(
                        LIMIT,
                        format!(
                            "Stream {stream_name} already has {MAX_CONSUMERS_PER_STREAM} registered consumers."
                        ),
                    );
                }
                stream.consumers.push(ConsumerMeta {
                    name: name.clone(),
                    created_secs: *now_secs,
                    status: ConsumerStatus::Creating,
                });
                MetaResponse::Done
            }
            ConsumerCommand::Activate {
                name, created_secs, ..
            } => {
                if let Some(c) = stream.consumers.iter_mut().find(|c| {
                    &c.name == name
                        && c.created_secs == *created_secs
                        && c.status == ConsumerStatus::Creating
                }) {
                    c.status = ConsumerStatus::Active;
                }
                MetaResponse::Done
            }
            ConsumerCommand::Deregister { name, .. } => {
                match stream.consumers.iter_mut().find(|c| &c.name == name) {
                    Some(c) => {
                        c.status = ConsumerStatus::Deleting;
                        MetaResponse::Done
                    }
                    None => refuse(
                        NOT_FOUND,
                        format!("Consumer {name} on stream {stream_name} not found."),
                    ),
                }
            }
            ConsumerCommand::Remove {
                name, created_secs, ..
            } => {
                stream.consumers.retain(|c| {
                    !(&c.name == name
                        && c.created_secs == *created_secs
                        && c.status == ConsumerStatus::Deleting)
                });
                MetaResponse::Done
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::meta::state::MetaCommand;

    fn with_stream() -> MetaState {
        let mut st = crate::meta::testing::bootstrapped(&[(0, "a")]);
        st.apply(&MetaCommand::CreateStream {
            name: "s".into(),
            mode: crate::meta::state::CapacityMode::Provisioned,
            hash_ranges: vec![(0, u128::MAX)],
            now_ms: 1000,
        });
        st
    }

    fn c(cmd: ConsumerCommand) -> MetaCommand {
        MetaCommand::Consumer(cmd)
    }

    fn register(name: &str, secs: u64) -> MetaCommand {
        c(ConsumerCommand::Register {
            stream: "s".into(),
            name: name.into(),
            now_secs: secs,
        })
    }

    fn failed_with(r: MetaResponse, prefix: &str) -> bool {
        matches!(r, MetaResponse::Failed(MetaError::Invalid(m)) if m.starts_with(prefix))
    }

    #[test]
    fn lifecycle() {
        let mut st = with_stream();
        assert_eq!(st.apply(&register("a", 7)), MetaResponse::Done);
        assert_eq!(
            st.streams["s"].consumers[0].status,
            ConsumerStatus::Creating
        );
        assert!(failed_with(st.apply(&register("a", 8)), IN_USE));
        // Activation of another incarnation is ignored.
        st.apply(&c(ConsumerCommand::Activate {
            stream: "s".into(),
            name: "a".into(),
            created_secs: 6,
        }));
        assert_eq!(
            st.streams["s"].consumers[0].status,
            ConsumerStatus::Creating
        );
        st.apply(&c(ConsumerCommand::Activate {
            stream: "s".into(),
            name: "a".into(),
            created_secs: 7,
        }));
        assert_eq!(st.streams["s"].consumers[0].status, ConsumerStatus::Active);
        let dereg = c(ConsumerCommand::Deregister {
            stream: "s".into(),
            name: "a".into(),
        });
        assert_eq!(st.apply(&dereg), MetaResponse::Done);
        assert_eq!(
            st.streams["s"].consumers[0].status,
            ConsumerStatus::Deleting
        );
        st.apply(&c(ConsumerCommand::Remove {
            stream: "s".into(),
            name: "a".into(),
            created_secs: 7,
        }));
        assert!(st.streams["s"].consumers.is_empty());
        assert!(failed_with(st.apply(&dereg), NOT_FOUND));
    }

    #[test]
    fn limit_and_unknown_stream() {
        let mut st = with_stream();
        for i in 0..MAX_CONSUMERS_PER_STREAM {
            assert_eq!(st.apply(&register(&format!("c{i}"), 1)), MetaResponse::Done);
        }
        assert!(failed_with(st.apply(&register("more", 1)), LIMIT));
        let r = st.apply(&c(ConsumerCommand::Register {
            stream: "nope".into(),
            name: "x".into(),
            now_secs: 1,
        }));
        assert_eq!(
            r,
            MetaResponse::Failed(MetaError::StreamNotFound("nope".into()))
        );
    }

    #[test]
    fn stream_deletion_needs_enforcement_with_consumers() {
        let mut st = with_stream();
        assert!(check_stream_deletion(&st.streams["s"], false).is_ok());
        st.apply(&register("a", 1));
        assert!(check_stream_deletion(&st.streams["s"], false).is_err());
        assert!(check_stream_deletion(&st.streams["s"], true).is_ok());
        // Consumers go with their stream.
        st.apply(&MetaCommand::DeleteStream { name: "s".into() });
        assert!(st.streams.is_empty());
    }
}
