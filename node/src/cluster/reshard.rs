//! Resharding and retention requests of the API backend: each is one metadata command; the
//! reshard executor (`controller`) carries splits and merges out.

use spate_control_plane::meta::reshard::{MAX_RETENTION_HOURS, MIN_RETENTION_HOURS};
use spate_control_plane::meta::{MetaCommand, MetaError, MetaResponse};
use spate_proto::kinesis::{KinesisError, KinesisResult};

use super::{propose_error, ClusterBackend};
use crate::shard::batcher::now_ms;

impl ClusterBackend {
    /// Maps a failed metadata command to the Kinesis error family AWS uses.
    pub(crate) fn meta_error(&self, name: &str, e: MetaError) -> KinesisError {
        match e {
            MetaError::StreamNotFound(_) => self.not_found(name),
            MetaError::ShardNotFound(m) => KinesisError::not_found(m),
            MetaError::InUse(m) => KinesisError::in_use(m),
            MetaError::LimitExceeded(m) => KinesisError::limit(m),
            MetaError::Invalid(m) => KinesisError::invalid(m),
            MetaError::StreamExists(m) => KinesisError::in_use(m),
            MetaError::NotBootstrapped | MetaError::NoNodes => {
                KinesisError::unavailable(e.to_string())
            }
        }
    }

    async fn propose_for(&self, name: &str, cmd: MetaCommand) -> KinesisResult<MetaResponse> {
        match self.meta.propose(cmd).await.map_err(propose_error)? {
            MetaResponse::Failed(e) => Err(self.meta_error(name, e)),
            ok => Ok(ok),
        }
    }

    pub(crate) async fn split_shard_impl(
        &self,
        name: &str,
        shard: u32,
        key: u128,
    ) -> KinesisResult<()> {
        self.stream(name)?;
        let cmd = MetaCommand::BeginSplit {
            name: name.to_string(),
            parent: shard,
            new_start: key,
            now_ms: now_ms(),
        };
        self.propose_for(name, cmd).await.map(|_| ())
    }

    pub(crate) async fn merge_shards_impl(
        &self,
        name: &str,
        shard: u32,
        adjacent: u32,
    ) -> KinesisResult<()> {
        self.stream(name)?;
        let cmd = MetaCommand::BeginMerge {
            name: name.to_string(),
            shard,
            adjacent,
            now_ms: now_ms(),
        };
        self.propose_for(name, cmd).await.map(|_| ())
    }

    pub(crate) async fn update_shard_count_impl(
        &self,
        name: &str,
        target: u32,
    ) -> KinesisResult<u32> {
        let s = self.stream(name)?;
        let open = s.open_shards().len() as u32;
        let total_after = s.shards.len() as u32 + target.saturating_sub(open) * 2;
        if target > self.max_shards_per_stream || total_after > self.max_shards_per_stream * 2 {
            return Err(KinesisError::limit(format!(
                "UpdateShardCount to {target} would exceed the shard limit of {} for the account {}.",
                self.max_shards_per_stream, self.account_id
            )));
        }
        let cmd = MetaCommand::SetTargetShardCount {
            name: name.to_string(),
            target,
            now_ms: now_ms(),
        };
        match self.propose_for(name, cmd).await? {
            MetaResponse::ShardCountUpdate { current } => Ok(current),
            _ => Ok(open),
        }
    }

    pub(crate) async fn set_retention_impl(
        &self,
        name: &str,
        hours: u32,
        increase: bool,
    ) -> KinesisResult<()> {
        let s = self.stream(name)?;
        if hours < MIN_RETENTION_HOURS {
            return Err(KinesisError::invalid(format!(
                "Minimum allowed retention period is {MIN_RETENTION_HOURS} hours. Requested retention period ({hours} hours) is too short."
            )));
        }
        if hours > MAX_RETENTION_HOURS {
            return Err(KinesisError::invalid(format!(
                "Maximum allowed retention period is {MAX_RETENTION_HOURS} hours. Requested retention period ({hours} hours) is too long."
            )));
        }
        if increase && hours < s.retention_hours {
            return Err(KinesisError::invalid(format!(
                "Requested retention period ({hours} hours) for stream {name} can not be shorter than existing retention period ({} hours). Use DecreaseRetentionPeriod API.",
                s.retention_hours
            )));
        }
        if !increase && hours > s.retention_hours {
            return Err(KinesisError::invalid(format!(
                "Requested retention period ({hours} hours) for stream {name} can not be longer than existing retention period ({} hours). Use IncreaseRetentionPeriod API.",
                s.retention_hours
            )));
        }
        self.propose_for(
            name,
            MetaCommand::SetRetention {
                name: name.to_string(),
                hours,
            },
        )
        .await
        .map(|_| ())
    }
}
