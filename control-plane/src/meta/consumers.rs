//! Enhanced fan-out consumers registered on streams. Applied through
//! [`MetaCommand::Consumer`](super::MetaCommand::Consumer).

use serde::{Deserialize, Serialize};

use super::state::{MetaResponse, MetaState};

/// A registered consumer.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct ConsumerMeta {
    pub name: String,
    pub created_secs: u64,
}

/// A change of a stream's consumers.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub enum ConsumerCommand {}

impl std::fmt::Display for ConsumerCommand {
    fn fmt(&self, _f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match *self {}
    }
}

impl MetaState {
    /// Applies a consumer command.
    pub(crate) fn apply_consumer(&mut self, cmd: &ConsumerCommand) -> MetaResponse {
        match *cmd {}
    }
}
