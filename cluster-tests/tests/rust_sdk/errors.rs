//! One error of each family through the SDK, asserted as its typed error variants.

use super::*;

use aws_sdk_kinesis::operation::add_tags_to_stream::AddTagsToStreamError;
use aws_sdk_kinesis::operation::create_stream::CreateStreamError;
use aws_sdk_kinesis::operation::decrease_stream_retention_period::DecreaseStreamRetentionPeriodError;
use aws_sdk_kinesis::operation::get_shard_iterator::GetShardIteratorError;
use aws_sdk_kinesis::operation::put_record::PutRecordError;

/// One error of each family, as the SDK's typed variants (retries off).
pub async fn errors(c: &Client, stream: &str) -> Result<()> {
    // ResourceNotFoundException
    let e = c
        .describe_stream()
        .stream_name("no-such-stream")
        .send()
        .await
        .expect_err("describe of a missing stream")
        .into_service_error();
    ensure!(
        matches!(e, DescribeStreamError::ResourceNotFoundException(_)),
        "{e:?}"
    );
    ensure!(
        e.message().is_some_and(|m| m.contains("no-such-stream")),
        "{e:?}"
    );
    let e = c
        .put_record()
        .stream_name("no-such-stream")
        .partition_key("k")
        .data(Blob::new(b"x".to_vec()))
        .send()
        .await
        .expect_err("put to a missing stream")
        .into_service_error();
    ensure!(
        matches!(e, PutRecordError::ResourceNotFoundException(_)),
        "{e:?}"
    );

    // InvalidArgumentException: a decrease that is an increase; an iterator type that needs a
    // sequence number without one.
    let e = c
        .decrease_stream_retention_period()
        .stream_name(stream)
        .retention_period_hours(48)
        .send()
        .await
        .expect_err("decrease to a longer period")
        .into_service_error();
    ensure!(
        matches!(
            e,
            DecreaseStreamRetentionPeriodError::InvalidArgumentException(_)
        ),
        "{e:?}"
    );
    let e = c
        .get_shard_iterator()
        .stream_name(stream)
        .shard_id(shard_id(0))
        .shard_iterator_type(ShardIteratorType::AtSequenceNumber)
        .send()
        .await
        .expect_err("AT_SEQUENCE_NUMBER without a sequence number")
        .into_service_error();
    ensure!(
        matches!(e, GetShardIteratorError::InvalidArgumentException(_)),
        "{e:?}"
    );
    let future = DateTime::from_secs(DateTime::from(std::time::SystemTime::now()).secs() + 3600);
    let e = c
        .get_shard_iterator()
        .stream_name(stream)
        .shard_id(shard_id(0))
        .shard_iterator_type(ShardIteratorType::AtTimestamp)
        .timestamp(future)
        .send()
        .await
        .expect_err("AT_TIMESTAMP in the future")
        .into_service_error();
    ensure!(
        matches!(e, GetShardIteratorError::InvalidArgumentException(_)),
        "{e:?}"
    );

    // ValidationException (modeled on CreateStream): a stream name outside the pattern.
    let e = c
        .create_stream()
        .stream_name("bad name!")
        .shard_count(1)
        .send()
        .await
        .expect_err("create with a bad name")
        .into_service_error();
    ensure!(
        matches!(e, CreateStreamError::ValidationException(_)),
        "{e:?}"
    );
    ensure!(
        e.message()
            .is_some_and(|m| m.starts_with("1 validation error detected: Value 'bad name!' at 'streamName' failed to satisfy constraint: Member must")),
        "{e:?}"
    );
    // Not modeled on AddTagsToStream: the SDK still exposes the code.
    let e = c
        .add_tags_to_stream()
        .stream_name(stream)
        .tags("", "v")
        .send()
        .await
        .expect_err("empty tag key")
        .into_service_error();
    ensure!(
        matches!(e, AddTagsToStreamError::InvalidArgumentException(_))
            || e.code() == Some("ValidationException"),
        "{e:?}"
    );

    // ResourceInUseException: the name is taken.
    let e = c
        .create_stream()
        .stream_name(stream)
        .shard_count(1)
        .send()
        .await
        .expect_err("create of an existing stream")
        .into_service_error();
    ensure!(
        matches!(e, CreateStreamError::ResourceInUseException(_)),
        "{e:?}"
    );

    // LimitExceededException: more shards than the account may have.
    let e = c
        .create_stream()
        .stream_name(unique("rs-huge"))
        .shard_count(100_000)
        .send()
        .await
        .expect_err("create past the shard limit")
        .into_service_error();
    ensure!(
        matches!(e, CreateStreamError::LimitExceededException(_)),
        "{e:?}"
    );
    Ok(())
}
