//! The [`ClusterBackend`] side of the settings operations: reads from the replicated
//! metadata view, changes through `MetaCommand::Settings` on the metadata group, and
//! UpdateStreamMode through `MetaCommand::StreamMode` (the metadata leader's autoscaler task
//! finishes the switch: `cluster::autoscaler`).

use spate_control_plane::meta::mode::ModeCommand;
pub use spate_control_plane::meta::settings::{
    AccountSettings, SettingsChange, SettingsChange as Change, StreamSettings,
};
use spate_control_plane::meta::state::CapacityMode;
use spate_control_plane::meta::{MetaCommand, MetaError, MetaResponse};
use spate_proto::kinesis::{KinesisError, KinesisResult};

use super::{propose_error, ClusterBackend};
use crate::api::backend::StreamMode;
use crate::shard::batcher::now_ms;

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

    pub(super) async fn update_stream_mode_impl(
        &self,
        name: &str,
        mode: StreamMode,
    ) -> KinesisResult<()> {
        let mode = match mode {
            StreamMode::Provisioned => CapacityMode::Provisioned,
            StreamMode::OnDemand => CapacityMode::OnDemand,
        };
        let cmd = MetaCommand::StreamMode(ModeCommand::Switch {
            name: name.to_string(),
            mode,
            now_ms: now_ms(),
        });
        match self.meta.propose(cmd).await.map_err(propose_error)? {
            MetaResponse::Failed(e) => Err(self.meta_error(name, e)),
            _ => Ok(()),
        }
    }
}
