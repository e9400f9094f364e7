//! Stream and account settings that are pure metadata: tags, encryption, enhanced
//! monitoring, resource policies, record-size and throughput settings, account settings.
//! Applied through [`MetaCommand::Settings`](super::MetaCommand::Settings).

use serde::{Deserialize, Serialize};

use super::state::{MetaError, MetaResponse, MetaState};

/// Per-stream settings.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct StreamSettings {}

/// Account-wide settings.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct AccountSettings {}

/// A change of settings.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub enum SettingsChange {}

impl std::fmt::Display for SettingsChange {
    fn fmt(&self, _f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match *self {}
    }
}

impl MetaState {
    /// Applies a settings change to stream `name`.
    pub(crate) fn apply_settings(&mut self, name: &str, change: &SettingsChange) -> MetaResponse {
        if !self.streams.contains_key(name) {
            return MetaResponse::Failed(MetaError::StreamNotFound(name.to_string()));
        }
        match *change {}
    }
}
