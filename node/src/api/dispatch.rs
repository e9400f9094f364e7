//! The dispatch table: `X-Amz-Target: Kinesis_20131202.<Operation>` → [`Operation`] →
//! handler. Every operation of the Kinesis API model is named here; those without a handler
//! yet answer `UnknownOperationException` ("not supported by this server yet"). Adding an
//! operation means one arm in [`dispatch`].

use spate_proto::kinesis::{ErrorKind, KinesisError, KinesisResult};

use super::backend::Backend;
use super::codec::Encoding;
use super::ops::{consumers, records, reshard, settings, shards, streams, tags};

/// The `X-Amz-Target` prefix of the Kinesis API.
pub const TARGET_PREFIX: &str = "Kinesis_20131202.";

macro_rules! operations {
    ($($name:ident),* $(,)?) => {
        /// Every operation of the Kinesis Data Streams API model.
        #[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
        pub enum Operation { $($name),* }

        impl Operation {
            /// All operations, in model (alphabetical) order.
            pub const ALL: &'static [Operation] = &[$(Operation::$name),*];

            /// The operation's name as it appears in `X-Amz-Target`.
            pub fn name(self) -> &'static str {
                match self { $(Operation::$name => stringify!($name)),* }
            }

            /// Looks an operation up by name.
            pub fn from_name(name: &str) -> Option<Operation> {
                match name { $(stringify!($name) => Some(Operation::$name),)* _ => None }
            }
        }
    };
}

operations!(
    AddTagsToStream,
    CreateStream,
    DecreaseStreamRetentionPeriod,
    DeleteResourcePolicy,
    DeleteStream,
    DeregisterStreamConsumer,
    DescribeAccountSettings,
    DescribeLimits,
    DescribeStream,
    DescribeStreamConsumer,
    DescribeStreamSummary,
    DisableEnhancedMonitoring,
    EnableEnhancedMonitoring,
    GetRecords,
    GetResourcePolicy,
    GetShardIterator,
    IncreaseStreamRetentionPeriod,
    ListShards,
    ListStreamConsumers,
    ListStreams,
    ListTagsForResource,
    ListTagsForStream,
    MergeShards,
    PutRecord,
    PutRecords,
    PutResourcePolicy,
    RegisterStreamConsumer,
    RemoveTagsFromStream,
    SplitShard,
    StartStreamEncryption,
    StopStreamEncryption,
    SubscribeToShard,
    TagResource,
    UntagResource,
    UpdateAccountSettings,
    UpdateMaxRecordSize,
    UpdateShardCount,
    UpdateStreamMode,
    UpdateStreamWarmThroughput,
);

impl Operation {
    /// Parses an `X-Amz-Target` value; `None` for a missing prefix or an unknown name.
    pub fn from_target(target: &str) -> Option<Operation> {
        Operation::from_name(target.trim().strip_prefix(TARGET_PREFIX)?)
    }
}

/// Operations of the newest Kinesis model (queues, channels, dead-letter queues, record
/// distribution) that this server does not implement; they are answered with an
/// `UnknownOperationException` saying so.
pub const UNSUPPORTED_NEWER_OPERATIONS: &[&str] = &[
    "AcknowledgeDeadLetterQueueRecords",
    "AcknowledgeQueueRecords",
    "CreateChannel",
    "CreateQueue",
    "DeleteChannel",
    "DeleteQueue",
    "DescribeChannel",
    "DescribeQueue",
    "ListChannels",
    "ListQueues",
    "ReceiveDeadLetterQueueRecords",
    "ReceiveQueueRecords",
    "RestoreDeadLetterQueueRecords",
    "UpdateChannel",
    "UpdateDeadLetterQueueRecordsVisibility",
    "UpdateQueue",
    "UpdateQueueRecordsVisibility",
    "UpdateStreamRecordDistributionStrategy",
];

/// The error for a target that names no operation.
pub fn unknown_operation(target: Option<&str>) -> KinesisError {
    let newer = target
        .and_then(|t| t.trim().strip_prefix(TARGET_PREFIX))
        .filter(|n| UNSUPPORTED_NEWER_OPERATIONS.contains(n));
    let message = match (target, newer) {
        (_, Some(op)) => format!(
            "Operation {op} (queues, channels and dead-letter queues) is not supported by this server"
        ),
        (None | Some(""), _) => "Missing X-Amz-Target header".to_string(),
        (Some(t), None) => format!("Unknown operation {t}"),
    };
    KinesisError::new(ErrorKind::UnknownOperation, message)
}

/// Decodes the request, runs the handler, encodes the response.
macro_rules! call {
    ($backend:expr, $enc:expr, $body:expr, $handler:path) => {{
        let request = $enc.decode($body)?;
        let response = $handler($backend, request).await?;
        $enc.encode(&response)
    }};
}

/// Runs one operation and returns the encoded response body.
pub async fn dispatch<B: Backend>(
    backend: &B,
    op: Operation,
    enc: Encoding,
    body: &[u8],
) -> KinesisResult<Vec<u8>> {
    match op {
        Operation::CreateStream => call!(backend, enc, body, streams::create_stream),
        Operation::DeleteStream => call!(backend, enc, body, streams::delete_stream),
        Operation::DescribeStream => call!(backend, enc, body, streams::describe_stream),
        Operation::DescribeStreamSummary => {
            call!(backend, enc, body, streams::describe_stream_summary)
        }
        Operation::ListStreams => call!(backend, enc, body, streams::list_streams),
        Operation::ListShards => call!(backend, enc, body, shards::list_shards),
        Operation::PutRecord => call!(backend, enc, body, records::put_record),
        Operation::PutRecords => call!(backend, enc, body, records::put_records),
        Operation::GetShardIterator => call!(backend, enc, body, records::get_shard_iterator),
        Operation::GetRecords => call!(backend, enc, body, records::get_records),
        Operation::SplitShard => call!(backend, enc, body, reshard::split_shard),
        Operation::MergeShards => call!(backend, enc, body, reshard::merge_shards),
        Operation::UpdateShardCount => call!(backend, enc, body, reshard::update_shard_count),
        Operation::IncreaseStreamRetentionPeriod => {
            call!(backend, enc, body, reshard::increase_retention)
        }
        Operation::DecreaseStreamRetentionPeriod => {
            call!(backend, enc, body, reshard::decrease_retention)
        }
        Operation::RegisterStreamConsumer => {
            call!(backend, enc, body, consumers::register_stream_consumer)
        }
        Operation::DeregisterStreamConsumer => {
            call!(backend, enc, body, consumers::deregister_stream_consumer)
        }
        Operation::DescribeStreamConsumer => {
            call!(backend, enc, body, consumers::describe_stream_consumer)
        }
        Operation::ListStreamConsumers => {
            call!(backend, enc, body, consumers::list_stream_consumers)
        }
        // SubscribeToShard streams its answer: service.rs hands it to
        // `consumers::subscribe_response` before dispatching.
        Operation::AddTagsToStream => call!(backend, enc, body, tags::add_tags_to_stream),
        Operation::RemoveTagsFromStream => {
            call!(backend, enc, body, tags::remove_tags_from_stream)
        }
        Operation::ListTagsForStream => call!(backend, enc, body, tags::list_tags_for_stream),
        Operation::TagResource => call!(backend, enc, body, tags::tag_resource),
        Operation::UntagResource => call!(backend, enc, body, tags::untag_resource),
        Operation::ListTagsForResource => {
            call!(backend, enc, body, tags::list_tags_for_resource)
        }
        Operation::PutResourcePolicy => call!(backend, enc, body, tags::put_resource_policy),
        Operation::GetResourcePolicy => call!(backend, enc, body, tags::get_resource_policy),
        Operation::DeleteResourcePolicy => {
            call!(backend, enc, body, tags::delete_resource_policy)
        }
        Operation::StartStreamEncryption => {
            call!(backend, enc, body, settings::start_stream_encryption)
        }
        Operation::StopStreamEncryption => {
            call!(backend, enc, body, settings::stop_stream_encryption)
        }
        Operation::EnableEnhancedMonitoring => {
            call!(backend, enc, body, settings::enable_enhanced_monitoring)
        }
        Operation::DisableEnhancedMonitoring => {
            call!(backend, enc, body, settings::disable_enhanced_monitoring)
        }
        Operation::DescribeLimits => call!(backend, enc, body, settings::describe_limits),
        Operation::DescribeAccountSettings => {
            call!(backend, enc, body, settings::describe_account_settings)
        }
        Operation::UpdateAccountSettings => {
            call!(backend, enc, body, settings::update_account_settings)
        }
        Operation::UpdateMaxRecordSize => {
            call!(backend, enc, body, settings::update_max_record_size)
        }
        Operation::UpdateStreamMode => call!(backend, enc, body, settings::update_stream_mode),
        Operation::UpdateStreamWarmThroughput => {
            call!(backend, enc, body, settings::update_stream_warm_throughput)
        }
        other => Err(not_supported(other)),
    }
}

fn not_supported(op: Operation) -> KinesisError {
    KinesisError::new(
        ErrorKind::UnknownOperation,
        format!(
            "Operation {} is not supported by this server yet",
            op.name()
        ),
    )
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn targets() {
        assert_eq!(Operation::ALL.len(), 39);
        assert_eq!(
            Operation::from_target("Kinesis_20131202.PutRecords"),
            Some(Operation::PutRecords)
        );
        assert_eq!(Operation::from_target("Kinesis_20131202.Nope"), None);
        assert_eq!(Operation::from_target("PutRecords"), None);
        assert_eq!(Operation::from_target("DynamoDB_20120810.PutRecords"), None);
        for op in Operation::ALL {
            assert_eq!(Operation::from_name(op.name()), Some(*op));
        }
    }
}
