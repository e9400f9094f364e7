//! Control loops run by whichever node leads the metadata group: a CREATING stream becomes
//! ACTIVE once every one of its shard groups has elected a leader.

use std::sync::Arc;
use std::time::Duration;

use spate_control_plane::meta::state::StreamStatus;
use spate_control_plane::meta::{MetaCommand, MetaHandle};

use super::router::ShardRouter;
use crate::shard::replica::{ShardReply, ShardRequest};

/// Runs the activation loop until the task is dropped.
pub async fn run(meta: MetaHandle, router: Arc<ShardRouter>) {
    let mut tick = tokio::time::interval(Duration::from_millis(100));
    tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Skip);
    loop {
        tick.tick().await;
        if !meta.raft().is_leader() {
            continue;
        }
        let view = meta.view();
        for stream in view.state.streams.values() {
            if stream.status != StreamStatus::Creating {
                continue;
            }
            let mut ready = true;
            for shard in &stream.shards {
                match router.call(shard, ShardRequest::Status).await {
                    Ok(ShardReply::Status(st)) if st.leader.is_some() => {}
                    _ => {
                        ready = false;
                        break;
                    }
                }
            }
            if ready {
                let cmd = MetaCommand::ActivateStream {
                    name: stream.name.clone(),
                    uid: stream.uid,
                };
                if let Err(e) = meta.propose(cmd).await {
                    tracing::warn!(stream = %stream.name, error = %e, "cannot activate stream");
                } else {
                    tracing::info!(stream = %stream.name, shards = stream.shards.len(), "stream active");
                }
            }
        }
    }
}
