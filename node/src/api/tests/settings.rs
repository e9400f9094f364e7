//! HTTP tests of the settings operations (tags, policies, encryption, monitoring, limits,
//! account settings, record size, warm throughput) and their validation tables.

use serde_json::{json, Value};

use super::{assert_error, call, start};

const ARN: &str = "arn:aws:kinesis:us-east-1:000000000000:stream/s";

async fn ok(c: &reqwest::Client, srv: &super::Server, op: &str, body: Value) -> Value {
    let r = call(c, srv, op, body).await;
    assert_eq!(r.status, 200, "{op}: {}", String::from_utf8_lossy(&r.raw));
    r.json()
}

#[tokio::test]
async fn tags_on_streams_and_resources() {
    let srv = start().await;
    let c = reqwest::Client::new();
    ok(
        &c,
        &srv,
        "CreateStream",
        json!({"StreamName": "s", "ShardCount": 1, "Tags": {"team": "a"}}),
    )
    .await;
    ok(
        &c,
        &srv,
        "AddTagsToStream",
        json!({"StreamName": "s", "Tags": {"env": "dev", "empty": ""}}),
    )
    .await;
    let v = ok(&c, &srv, "ListTagsForStream", json!({"StreamName": "s"})).await;
    assert_eq!(
        v,
        json!({"Tags": [{"Key": "empty", "Value": ""}, {"Key": "env", "Value": "dev"}, {"Key": "team", "Value": "a"}], "HasMoreTags": false})
    );
    let v = ok(
        &c,
        &srv,
        "ListTagsForStream",
        json!({"StreamARN": ARN, "Limit": 1, "ExclusiveStartTagKey": "empty"}),
    )
    .await;
    assert_eq!(
        v,
        json!({"Tags": [{"Key": "env", "Value": "dev"}], "HasMoreTags": true})
    );
    ok(
        &c,
        &srv,
        "RemoveTagsFromStream",
        json!({"StreamName": "s", "TagKeys": ["empty", "nope"]}),
    )
    .await;
    ok(
        &c,
        &srv,
        "TagResource",
        json!({"ResourceARN": ARN, "Tags": {"x": "1"}}),
    )
    .await;
    ok(
        &c,
        &srv,
        "UntagResource",
        json!({"ResourceARN": ARN, "TagKeys": ["team"]}),
    )
    .await;
    let v = ok(&c, &srv, "ListTagsForResource", json!({"ResourceARN": ARN})).await;
    assert_eq!(
        v,
        json!({"Tags": [{"Key": "env", "Value": "dev"}, {"Key": "x", "Value": "1"}]})
    );
    // 50 tags per stream.
    let many: serde_json::Map<String, Value> =
        (0..48).map(|i| (format!("k{i}"), json!("v"))).collect();
    ok(
        &c,
        &srv,
        "AddTagsToStream",
        json!({"StreamName": "s", "Tags": many}),
    )
    .await;
    let r = call(
        &c,
        &srv,
        "AddTagsToStream",
        json!({"StreamName": "s", "Tags": {"one-too-many": "v"}}),
    )
    .await;
    assert_error(&r, 400, "InvalidArgumentException");
    let r = call(
        &c,
        &srv,
        "AddTagsToStream",
        json!({"StreamName": "s", "Tags": {"aws:x": "v"}}),
    )
    .await;
    assert_error(&r, 400, "InvalidArgumentException");
    let r = call(&c, &srv, "ListTagsForStream", json!({"StreamName": "nope"})).await;
    assert_error(&r, 400, "ResourceNotFoundException");
}

#[tokio::test]
async fn validation_tables() {
    let srv = start().await;
    let c = reqwest::Client::new();
    ok(
        &c,
        &srv,
        "CreateStream",
        json!({"StreamName": "s", "ShardCount": 1}),
    )
    .await;
    let long_key = "k".repeat(129);
    let cases: Vec<(&str, Value, &str, String)> = vec![
        ("AddTagsToStream", json!({"StreamName": "s"}), "ValidationException",
         "1 validation error detected: Value null at 'tags' failed to satisfy constraint: Member must not be null".into()),
        ("AddTagsToStream", json!({"StreamName": "s", "Tags": {}}), "ValidationException",
         "1 validation error detected: Value '{}' at 'tags' failed to satisfy constraint: Member must have length greater than or equal to 1".into()),
        ("AddTagsToStream", json!({"StreamName": "s", "Tags": {long_key.clone(): "v"}}), "ValidationException",
         format!("1 validation error detected: Value '{{{long_key}=v}}' at 'tags' failed to satisfy constraint: Map keys must satisfy constraint: [Member must have length less than or equal to 128]")),
        ("AddTagsToStream", json!({"Tags": {"a": "b"}}), "InvalidArgumentException", String::new()),
        ("AddTagsToStream", json!({"StreamName": "s", "Tags": "x"}), "SerializationException", String::new()),
        ("RemoveTagsFromStream", json!({"StreamName": "s", "TagKeys": []}), "ValidationException",
         "1 validation error detected: Value '[]' at 'tagKeys' failed to satisfy constraint: Member must have length greater than or equal to 1".into()),
        ("RemoveTagsFromStream", json!({"StreamName": "s", "TagKeys": [""]}), "ValidationException",
         "1 validation error detected: Value '[]' at 'tagKeys' failed to satisfy constraint: Member must satisfy constraint: [Member must have length greater than or equal to 1]".into()),
        ("ListTagsForStream", json!({"StreamName": "s", "Limit": 51}), "ValidationException",
         "1 validation error detected: Value '51' at 'limit' failed to satisfy constraint: Member must have value less than or equal to 50".into()),
        ("TagResource", json!({"ResourceARN": "arn:x", "Tags": {"a": "b"}}), "ValidationException",
         "1 validation error detected: Value 'arn:x' at 'resourceARN' failed to satisfy constraint: Member must satisfy regular expression pattern: arn:aws.*:kinesis:.*:\\d{12}:.*stream/\\S+".into()),
        ("TagResource", json!({"ResourceARN": "arn:aws:kinesis:eu-west-1:000000000000:stream/s", "Tags": {"a": "b"}}), "ResourceNotFoundException", String::new()),
        ("ListTagsForResource", json!({}), "ValidationException",
         "1 validation error detected: Value null at 'resourceARN' failed to satisfy constraint: Member must not be null".into()),
        ("StartStreamEncryption", json!({"StreamName": "s", "EncryptionType": "AES", "KeyId": ""}), "ValidationException",
         "2 validation errors detected: Value 'AES' at 'encryptionType' failed to satisfy constraint: Member must satisfy enum value set: [NONE, KMS]; Value '' at 'keyId' failed to satisfy constraint: Member must have length greater than or equal to 1".into()),
        ("StartStreamEncryption", json!({"StreamName": "s", "EncryptionType": "NONE", "KeyId": "k"}), "InvalidArgumentException", String::new()),
        ("EnableEnhancedMonitoring", json!({"StreamName": "s", "ShardLevelMetrics": ["Nope"]}), "ValidationException",
         "1 validation error detected: Value '[Nope]' at 'shardLevelMetrics' failed to satisfy constraint: Member must satisfy constraint: [Member must satisfy enum value set: [IncomingBytes, IncomingRecords, OutgoingBytes, OutgoingRecords, WriteProvisionedThroughputExceeded, ReadProvisionedThroughputExceeded, IteratorAgeMilliseconds, ALL]]".into()),
        ("DisableEnhancedMonitoring", json!({"StreamName": "s"}), "ValidationException",
         "1 validation error detected: Value null at 'shardLevelMetrics' failed to satisfy constraint: Member must not be null".into()),
        ("UpdateMaxRecordSize", json!({"StreamName": "s", "MaxRecordSizeInKiB": 1023}), "ValidationException",
         "1 validation error detected: Value '1023' at 'maxRecordSizeInKiB' failed to satisfy constraint: Member must have value greater than or equal to 1024".into()),
        ("UpdateMaxRecordSize", json!({"StreamName": "s", "MaxRecordSizeInKiB": "big"}), "SerializationException", String::new()),
        ("UpdateStreamWarmThroughput", json!({"StreamName": "s", "WarmThroughputMiBps": -1}), "ValidationException",
         "1 validation error detected: Value '-1' at 'warmThroughputMiBps' failed to satisfy constraint: Member must have value greater than or equal to 0".into()),
        ("UpdateStreamWarmThroughput", json!({"StreamName": "s", "WarmThroughputMiBps": 10}), "InvalidArgumentException", String::new()),
        ("UpdateAccountSettings", json!({"MinimumThroughputBillingCommitment": {"Status": "MAYBE"}}), "ValidationException",
         "1 validation error detected: Value 'MAYBE' at 'minimumThroughputBillingCommitment.status' failed to satisfy constraint: Member must satisfy enum value set: [ENABLED, DISABLED]".into()),
        ("UpdateAccountSettings", json!({}), "ValidationException",
         "1 validation error detected: Value null at 'minimumThroughputBillingCommitment' failed to satisfy constraint: Member must not be null".into()),
        ("PutResourcePolicy", json!({"ResourceARN": ARN}), "ValidationException",
         "1 validation error detected: Value null at 'policy' failed to satisfy constraint: Member must not be null".into()),
        ("PutResourcePolicy", json!({"ResourceARN": ARN, "Policy": "not json"}), "InvalidArgumentException", String::new()),
        ("DeleteResourcePolicy", json!({"ResourceARN": ARN}), "ResourceNotFoundException", String::new()),
        ("UpdateStreamMode", json!({"StreamName": "s"}), "ValidationException",
         "2 validation errors detected: Value null at 'streamARN' failed to satisfy constraint: Member must not be null; Value null at 'streamModeDetails' failed to satisfy constraint: Member must not be null".into()),
        ("UpdateStreamMode", json!({"StreamARN": ARN, "StreamModeDetails": {"StreamMode": "FAST"}}), "ValidationException",
         "1 validation error detected: Value 'FAST' at 'streamModeDetails.streamMode' failed to satisfy constraint: Member must satisfy enum value set: [PROVISIONED, ON_DEMAND]".into()),
        ("UpdateStreamMode", json!({"StreamARN": ARN, "StreamModeDetails": {"StreamMode": "PROVISIONED"}}), "InvalidArgumentException",
         "Stream s under account 000000000000 is already in PROVISIONED mode.".into()),
        ("UpdateStreamMode", json!({"StreamARN": ARN, "StreamModeDetails": {"StreamMode": "ON_DEMAND"}, "WarmThroughputMiBps": -1}), "ValidationException",
         "1 validation error detected: Value '-1' at 'warmThroughputMiBps' failed to satisfy constraint: Member must have value greater than or equal to 0".into()),
        ("UpdateStreamMode", json!({"StreamARN": ARN, "StreamModeDetails": {}}), "ValidationException",
         "1 validation error detected: Value null at 'streamModeDetails.streamMode' failed to satisfy constraint: Member must not be null".into()),
        ("UpdateStreamMode", json!({"StreamARN": "arn:aws:kinesis:us-east-1:000000000000:stream/nope", "StreamModeDetails": {"StreamMode": "ON_DEMAND"}}), "ResourceNotFoundException", String::new()),
        ("UpdateStreamMode", json!({"StreamARN": ARN, "StreamModeDetails": {"StreamMode": 7}}), "SerializationException", String::new()),
        ("AddTagsToStream", json!({"StreamName": "s", "Tags": {"spate:write-bytes-per-sec": "fast"}}), "InvalidArgumentException",
         "Failed to add tags to stream s: invalid value 'fast' for tag spate:write-bytes-per-sec: expected a positive integer (per second per shard) or 'unlimited'.".into()),
        ("AddTagsToStream", json!({"StreamName": "s", "Tags": {"spate:write-records-per-sec": "0"}}), "InvalidArgumentException", String::new()),
        ("AddTagsToStream", json!({"StreamName": "s", "Tags": {"spate:colour": "blue"}}), "InvalidArgumentException", String::new()),
        ("TagResource", json!({"ResourceARN": ARN, "Tags": {"spate:read-calls-per-sec": "-1"}}), "InvalidArgumentException", String::new()),
        ("CreateStream", json!({"StreamName": "t", "ShardCount": 1, "Tags": {"spate:read-bytes-per-sec": "1e6"}}), "InvalidArgumentException", String::new()),
    ];
    for (op, body, kind, message) in cases {
        let r = call(&c, &srv, op, body.clone()).await;
        assert_error(&r, 400, kind);
        if !message.is_empty() {
            assert_eq!(r.json()["message"], message.as_str(), "{op} {body}");
        }
    }
    // The refused CreateStream created nothing.
    let r = call(
        &c,
        &srv,
        "DescribeStreamSummary",
        json!({"StreamName": "t"}),
    )
    .await;
    assert_error(&r, 400, "ResourceNotFoundException");
}

#[tokio::test]
async fn update_stream_mode_switches_twice_a_day() {
    let srv = start().await;
    let c = reqwest::Client::new();
    ok(
        &c,
        &srv,
        "CreateStream",
        json!({"StreamName": "s", "ShardCount": 1}),
    )
    .await;
    let mode = |v: &Value| v["StreamDescriptionSummary"]["StreamModeDetails"]["StreamMode"].clone();
    let switch = |m: &str| json!({"StreamARN": ARN, "StreamModeDetails": {"StreamMode": m}});
    // A warm throughput only goes with a switch to ON_DEMAND.
    let r = call(
        &c,
        &srv,
        "UpdateStreamMode",
        json!({"StreamARN": ARN, "StreamModeDetails": {"StreamMode": "PROVISIONED"}, "WarmThroughputMiBps": 5}),
    )
    .await;
    assert_error(&r, 400, "InvalidArgumentException");
    let v = ok(
        &c,
        &srv,
        "UpdateStreamMode",
        json!({"StreamARN": ARN, "StreamModeDetails": {"StreamMode": "ON_DEMAND"}, "WarmThroughputMiBps": 5}),
    )
    .await;
    assert_eq!(v, json!({}));
    let d = ok(
        &c,
        &srv,
        "DescribeStreamSummary",
        json!({"StreamName": "s"}),
    )
    .await;
    assert_eq!(mode(&d), "ON_DEMAND");
    let r = call(&c, &srv, "UpdateStreamMode", switch("ON_DEMAND")).await;
    assert_error(&r, 400, "InvalidArgumentException");
    ok(&c, &srv, "UpdateStreamMode", switch("PROVISIONED")).await;
    let d = ok(
        &c,
        &srv,
        "DescribeStreamSummary",
        json!({"StreamName": "s"}),
    )
    .await;
    assert_eq!(mode(&d), "PROVISIONED");
    // The third switch within 24 hours.
    let r = call(&c, &srv, "UpdateStreamMode", switch("ON_DEMAND")).await;
    assert_error(&r, 400, "LimitExceededException");
    let m = r.json()["message"].as_str().unwrap_or_default().to_string();
    assert!(
        m.contains("at most 2 times in a rolling 24-hour period"),
        "{m}"
    );
    let d = ok(
        &c,
        &srv,
        "DescribeStreamSummary",
        json!({"StreamName": "s"}),
    )
    .await;
    assert_eq!(mode(&d), "PROVISIONED");
}

#[tokio::test]
async fn encryption_monitoring_policies_limits() {
    let srv = start().await;
    let c = reqwest::Client::new();
    ok(
        &c,
        &srv,
        "CreateStream",
        json!({"StreamName": "s", "ShardCount": 2}),
    )
    .await;
    ok(&c, &srv, "CreateStream", json!({"StreamName": "od"})).await;
    ok(
        &c,
        &srv,
        "StartStreamEncryption",
        json!({"StreamName": "s", "EncryptionType": "KMS", "KeyId": "alias/aws/kinesis"}),
    )
    .await;
    let v = ok(
        &c,
        &srv,
        "EnableEnhancedMonitoring",
        json!({"StreamName": "s", "ShardLevelMetrics": ["IncomingBytes"]}),
    )
    .await;
    assert_eq!(
        v,
        json!({"StreamName": "s", "CurrentShardLevelMetrics": [], "DesiredShardLevelMetrics": ["IncomingBytes"], "StreamARN": ARN})
    );
    let v = ok(
        &c,
        &srv,
        "EnableEnhancedMonitoring",
        json!({"StreamARN": ARN, "ShardLevelMetrics": ["ALL"]}),
    )
    .await;
    assert_eq!(
        v["DesiredShardLevelMetrics"].as_array().map(Vec::len),
        Some(7)
    );
    let v = ok(
        &c,
        &srv,
        "DisableEnhancedMonitoring",
        json!({"StreamName": "s", "ShardLevelMetrics": ["ALL"]}),
    )
    .await;
    assert_eq!(v["DesiredShardLevelMetrics"], json!([]));
    ok(
        &c,
        &srv,
        "EnableEnhancedMonitoring",
        json!({"StreamName": "s", "ShardLevelMetrics": ["OutgoingBytes", "IncomingRecords"]}),
    )
    .await;
    let d = ok(&c, &srv, "DescribeStream", json!({"StreamName": "s"})).await;
    let d = &d["StreamDescription"];
    assert_eq!(d["EncryptionType"], "KMS");
    assert_eq!(d["KeyId"], "alias/aws/kinesis");
    assert_eq!(
        d["EnhancedMonitoring"],
        json!([{"ShardLevelMetrics": ["IncomingRecords", "OutgoingBytes"]}])
    );
    let p = ok(
        &c,
        &srv,
        "PutRecord",
        json!({"StreamName": "s", "Data": "aGk=", "PartitionKey": "k"}),
    )
    .await;
    assert_eq!(p["EncryptionType"], "KMS");
    ok(
        &c,
        &srv,
        "StopStreamEncryption",
        json!({"StreamName": "s", "EncryptionType": "KMS", "KeyId": "alias/aws/kinesis"}),
    )
    .await;
    let d = ok(
        &c,
        &srv,
        "DescribeStreamSummary",
        json!({"StreamName": "s"}),
    )
    .await;
    let d = &d["StreamDescriptionSummary"];
    assert_eq!(d["EncryptionType"], "NONE");
    assert!(d.get("KeyId").is_none());
    assert_eq!(d["MaxRecordSizeInKiB"], 1024);

    // Resource policies: "{}" when none, stored text returned as given.
    let v = ok(&c, &srv, "GetResourcePolicy", json!({"ResourceARN": ARN})).await;
    assert_eq!(v, json!({"Policy": "{}"}));
    let policy = r#"{"Version":"2012-10-17","Statement":[]}"#;
    ok(
        &c,
        &srv,
        "PutResourcePolicy",
        json!({"ResourceARN": ARN, "Policy": policy}),
    )
    .await;
    let v = ok(&c, &srv, "GetResourcePolicy", json!({"ResourceARN": ARN})).await;
    assert_eq!(v, json!({"Policy": policy}));
    ok(
        &c,
        &srv,
        "DeleteResourcePolicy",
        json!({"ResourceARN": ARN}),
    )
    .await;

    let v = ok(&c, &srv, "DescribeLimits", json!({})).await;
    assert_eq!(
        v,
        json!({"ShardLimit": 200, "OpenShardCount": 2, "OnDemandStreamCount": 1, "OnDemandStreamCountLimit": 50})
    );
    let v = ok(&c, &srv, "DescribeAccountSettings", json!({})).await;
    assert_eq!(
        v,
        json!({"MinimumThroughputBillingCommitment": {"Status": "DISABLED"}})
    );
    let v = ok(
        &c,
        &srv,
        "UpdateAccountSettings",
        json!({"MinimumThroughputBillingCommitment": {"Status": "ENABLED"}}),
    )
    .await;
    let m = &v["MinimumThroughputBillingCommitment"];
    assert_eq!(m["Status"], "ENABLED");
    assert!(m["StartedAt"].is_number() && m["EarliestAllowedEndAt"].is_number());

    let v = ok(
        &c,
        &srv,
        "UpdateStreamWarmThroughput",
        json!({"StreamName": "od", "WarmThroughputMiBps": 100}),
    )
    .await;
    assert_eq!(
        v["WarmThroughput"],
        json!({"TargetMiBps": 100, "CurrentMiBps": 0})
    );
    let d = ok(
        &c,
        &srv,
        "DescribeStreamSummary",
        json!({"StreamName": "od"}),
    )
    .await;
    assert_eq!(
        d["StreamDescriptionSummary"]["WarmThroughput"]["TargetMiBps"],
        100
    );
}

#[tokio::test]
async fn max_record_size_is_enforced() {
    use base64::Engine as _;
    let srv = start().await;
    let c = reqwest::Client::new();
    ok(
        &c,
        &srv,
        "CreateStream",
        json!({"StreamName": "s", "ShardCount": 1}),
    )
    .await;
    let big = base64::engine::general_purpose::STANDARD.encode(vec![7u8; 1024 * 1024 + 10]);
    let put = json!({"StreamName": "s", "Data": big, "PartitionKey": "k"});
    let r = call(&c, &srv, "PutRecord", put.clone()).await;
    assert_error(&r, 400, "ValidationException");
    let batch = json!({"StreamName": "s", "Records": [{"Data": big, "PartitionKey": "k"}]});
    let r = call(&c, &srv, "PutRecords", batch.clone()).await;
    assert_error(&r, 400, "ValidationException");
    ok(
        &c,
        &srv,
        "UpdateMaxRecordSize",
        json!({"StreamARN": ARN, "MaxRecordSizeInKiB": 2048}),
    )
    .await;
    ok(&c, &srv, "PutRecord", put).await;
    ok(&c, &srv, "PutRecords", batch).await;
    let d = ok(
        &c,
        &srv,
        "DescribeStreamSummary",
        json!({"StreamName": "s"}),
    )
    .await;
    assert_eq!(d["StreamDescriptionSummary"]["MaxRecordSizeInKiB"], 2048);
}

/// With `[auth]` configured, requests signed with the right key pass over HTTP/1.1 and h2c
/// (where the signed `host` is the `:authority`), others are refused.
#[tokio::test]
async fn sigv4_verification_end_to_end() {
    use crate::api::auth::{expected_signature, Credentials, Signature};
    use axum::http::{HeaderMap, HeaderValue, Method, Uri};
    use std::sync::Arc;

    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    let creds = Credentials {
        access_key_id: "AKIDSPATE".into(),
        secret_access_key: "s3cret".into(),
    };
    let app = crate::api::router_with(
        Arc::new(super::mem::MemBackend::default()),
        crate::api::ApiOptions {
            credentials: Some(creds.clone()),
        },
    );
    let (tx, rx) = tokio::sync::oneshot::channel::<()>();
    tokio::spawn(crate::api::serve_router(listener, app, async {
        let _ = rx.await;
    }));
    let now = time_now();
    let body = br#"{}"#.to_vec();
    let sign = |secret: &str, akid: &str| {
        let mut h = HeaderMap::new();
        h.insert("host", HeaderValue::from_str(&addr.to_string()).unwrap());
        h.insert("content-type", HeaderValue::from_static(super::JSON));
        h.insert(
            "x-amz-target",
            HeaderValue::from_static("Kinesis_20131202.ListStreams"),
        );
        h.insert("x-amz-date", HeaderValue::from_str(&now).unwrap());
        let mut sig = Signature {
            access_key_id: akid.into(),
            date: now[..8].to_string(),
            region: "us-east-1".into(),
            service: "kinesis".into(),
            signed_headers: vec![
                "content-type".into(),
                "host".into(),
                "x-amz-date".into(),
                "x-amz-target".into(),
            ],
            signature: String::new(),
            amz_date: now.clone(),
        };
        let c = Credentials {
            access_key_id: akid.into(),
            secret_access_key: secret.into(),
        };
        let uri: Uri = "/".parse().unwrap();
        sig.signature = expected_signature(&sig, &c, &Method::POST, &uri, &h, &body);
        format!(
            "AWS4-HMAC-SHA256 Credential={akid}/{}/us-east-1/kinesis/aws4_request, SignedHeaders=content-type;host;x-amz-date;x-amz-target, Signature={}",
            &now[..8],
            sig.signature
        )
    };
    let h1 = reqwest::Client::new();
    let h2 = reqwest::Client::builder()
        .http2_prior_knowledge()
        .build()
        .unwrap();
    for (client, version) in [
        (&h1, reqwest::Version::HTTP_11),
        (&h2, reqwest::Version::HTTP_2),
    ] {
        for (secret, akid, want) in [
            ("s3cret", "AKIDSPATE", None),
            ("wrong", "AKIDSPATE", Some("InvalidSignatureException")),
            ("s3cret", "AKIDOTHER", Some("UnrecognizedClientException")),
        ] {
            let resp = client
                .post(format!("http://{addr}/"))
                .header("content-type", super::JSON)
                .header("x-amz-target", "Kinesis_20131202.ListStreams")
                .header("x-amz-date", &now)
                .header("authorization", sign(secret, akid))
                .body(body.clone())
                .send()
                .await
                .unwrap();
            assert_eq!(resp.version(), version);
            let status = resp.status().as_u16();
            let v: Value = serde_json::from_slice(&resp.bytes().await.unwrap()).unwrap();
            match want {
                None => assert_eq!(status, 200, "{v}"),
                Some(t) => assert_eq!(v["__type"], t, "{v}"),
            }
        }
    }
    let _ = tx.send(());
}

/// Now as `yyyymmddThhmmssZ`.
fn time_now() -> String {
    let secs = crate::api::auth::now_secs();
    let days = secs.div_euclid(86_400);
    let rem = secs.rem_euclid(86_400);
    // Civil from days (Howard Hinnant's algorithm).
    let z = days + 719_468;
    let era = z.div_euclid(146_097);
    let doe = z - era * 146_097;
    let yoe = (doe - doe / 1460 + doe / 36_524 - doe / 146_096) / 365;
    let doy = doe - (365 * yoe + yoe / 4 - yoe / 100);
    let mp = (5 * doy + 2) / 153;
    let d = doy - (153 * mp + 2) / 5 + 1;
    let m = if mp < 10 { mp + 3 } else { mp - 9 };
    let y = yoe + era * 400 + i64::from(m <= 2);
    format!(
        "{y:04}{m:02}{d:02}T{:02}{:02}{:02}Z",
        rem / 3600,
        rem % 3600 / 60,
        rem % 60
    )
}
