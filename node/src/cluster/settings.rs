//! The [`ClusterBackend`] side of the settings operations: reads from the replicated
//! metadata view, changes through `MetaCommand::Settings` on the metadata group.

pub use spate_control_plane::meta::settings::{
    AccountSettings, SettingsChange, SettingsChange as Change, StreamSettings,
};
use spate_control_plane::meta::{MetaCommand, MetaError, MetaResponse};
use spate_proto::kinesis::{KinesisError, KinesisResult};

use super::{propose_error, ClusterBackend};

impl ClusterBackend {
    pub(super) fn settings_of(&self, name: &str) -> KinesisResult<StreamSettings> {
        Ok(self.stream(name)?.settings.clone())
    }

    pub(super) async fn propose_settings(
        &self,
        name: &str,
        change: SettingsChange,
    ) -> KinesisResult<()> {
        let cmd = MetaCommand::Settings {
            name: name.to_string(),
            change,
        };
        match self.meta.propose(cmd).await.map_err(propose_error)? {
            MetaResponse::Failed(MetaError::StreamNotFound(_)) => Err(self.not_found(name)),
            MetaResponse::Failed(MetaError::Invalid(m)) => Err(KinesisError::invalid(m)),
            MetaResponse::Failed(e) => Err(KinesisError::internal(e.to_string())),
            _ => Ok(()),
        }
    }

    pub(super) fn account_of(&self) -> AccountSettings {
        self.meta.view().state.account.clone()
    }
}
