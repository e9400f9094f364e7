//! Malformed and out-of-limit requests, with the AWS error each must produce (HTTP 400 and
//! `__type`), followed by a valid put/get proving the server still serves. Shared by the cluster
//! test and the emulator check.

use std::time::Duration;

use anyhow::{bail, ensure, Context, Result};
use serde_json::json;

use crate::client::{parse_error, IteratorType, KinesisClient, JSON_CONTENT_TYPE, TARGET_PREFIX};

/// One bad request and its expected answer.
#[derive(Debug, Clone)]
pub struct Case {
    pub name: &'static str,
    pub target: Option<String>,
    pub body: Vec<u8>,
    pub expect_status: u16,
    pub expect_type: &'static str,
}

/// The standard list of bad requests against stream `stream` (which must exist).
pub fn cases(stream: &str) -> Vec<Case> {
    let put = |body: serde_json::Value| serde_json::to_vec(&body).expect("json");
    let target = |op: &str| Some(format!("{TARGET_PREFIX}.{op}"));
    let b64 = |data: &[u8]| {
        use base64::Engine as _;
        base64::engine::general_purpose::STANDARD.encode(data)
    };
    vec![
        Case {
            name: "record data over 1 MiB",
            target: target("PutRecord"),
            body: put(json!({
                "StreamName": stream,
                "PartitionKey": "k",
                "Data": b64(&vec![b'x'; 1024 * 1024 + 1]),
            })),
            expect_status: 400,
            expect_type: "ValidationException",
        },
        Case {
            name: "partition key over 256 chars",
            target: target("PutRecord"),
            body: put(json!({
                "StreamName": stream,
                "PartitionKey": "k".repeat(257),
                "Data": b64(b"x"),
            })),
            expect_status: 400,
            expect_type: "ValidationException",
        },
        Case {
            name: "unknown stream",
            target: target("PutRecord"),
            body: put(json!({
                "StreamName": format!("{stream}-does-not-exist"),
                "PartitionKey": "k",
                "Data": b64(b"x"),
            })),
            expect_status: 400,
            expect_type: "ResourceNotFoundException",
        },
        Case {
            name: "malformed JSON",
            target: target("PutRecord"),
            body: b"{\"StreamName\": \"x\", ".to_vec(),
            expect_status: 400,
            expect_type: "SerializationException",
        },
        Case {
            name: "unknown X-Amz-Target operation",
            target: target("FlyToTheMoon"),
            body: b"{}".to_vec(),
            expect_status: 400,
            expect_type: "UnknownOperationException",
        },
        Case {
            name: "unknown stream on GetShardIterator",
            target: target("GetShardIterator"),
            body: put(json!({
                "StreamName": format!("{stream}-nope"),
                "ShardId": "shardId-000000000000",
                "ShardIteratorType": "TRIM_HORIZON",
            })),
            expect_status: 400,
            expect_type: "ResourceNotFoundException",
        },
    ]
}

/// Send every case; collect every mismatch; then check a valid put and get still work.
pub async fn run(client: &KinesisClient, stream: &str) -> Result<()> {
    let mut failures = Vec::new();
    for case in cases(stream) {
        let raw = client
            .raw(case.target.as_deref(), JSON_CONTENT_TYPE, case.body.clone())
            .await
            .with_context(|| format!("case {:?}", case.name))?;
        let err = parse_error(&raw);
        if raw.status != case.expect_status || err.kind != case.expect_type {
            failures.push(format!(
                "{}: expected HTTP {} {}, got HTTP {} {} ({})",
                case.name, case.expect_status, case.expect_type, raw.status, err.kind, err.message
            ));
        } else {
            eprintln!("bad input ok: {} -> {} {}", case.name, raw.status, err.kind);
        }
    }
    if !failures.is_empty() {
        bail!("bad-input mismatches:\n  {}", failures.join("\n  "));
    }
    // Still serving: a valid put, then read it back.
    let payload = format!("after-bad-input-{}", rand::random::<u64>());
    let ack = client
        .put_record(stream, "after-bad-input", payload.as_bytes(), None)
        .await
        .context("valid PutRecord after bad input")?;
    let it = client
        .get_shard_iterator(
            stream,
            &ack.shard_id,
            &IteratorType::AtSequenceNumber(ack.sequence_number.clone()),
        )
        .await
        .context("GetShardIterator after bad input")?;
    let deadline = std::time::Instant::now() + Duration::from_secs(10);
    let mut it = Some(it);
    while let Some(i) = it {
        let out = client.get_records(&i, Some(10)).await?;
        if let Some(r) = out.records.first() {
            ensure!(
                r.sequence_number == ack.sequence_number && r.data == payload.as_bytes(),
                "read back {:?} instead of the record put at {}",
                r,
                ack.sequence_number
            );
            return Ok(());
        }
        ensure!(
            std::time::Instant::now() < deadline,
            "record put after bad input not readable within 10 s"
        );
        tokio::time::sleep(Duration::from_millis(200)).await;
        it = out.next_shard_iterator;
    }
    bail!("shard iterator ended before the record put after bad input")
}
