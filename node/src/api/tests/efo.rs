//! HTTP-level tests of the enhanced fan-out operations over the in-memory backend: consumer
//! registration, and SubscribeToShard's event stream (initial-response first) over HTTP/1.1
//! and h2c.

use serde_json::{json, Value};

use super::{assert_error, call, send, start, Server, CBOR};

/// One decoded message: its string headers and payload.
type Message = (Vec<(String, String)>, Vec<u8>);

/// Splits an event-stream body into (headers, payload) messages, checking lengths and CRCs.
fn frames(mut b: &[u8]) -> Vec<Message> {
    let mut out = Vec::new();
    while !b.is_empty() {
        let total = u32::from_be_bytes(b[0..4].try_into().unwrap()) as usize;
        let hlen = u32::from_be_bytes(b[4..8].try_into().unwrap()) as usize;
        let m = &b[..total];
        assert_eq!(
            u32::from_be_bytes(m[8..12].try_into().unwrap()),
            crc32fast::hash(&m[..8])
        );
        assert_eq!(
            u32::from_be_bytes(m[total - 4..].try_into().unwrap()),
            crc32fast::hash(&m[..total - 4])
        );
        let mut h = &m[12..12 + hlen];
        let mut headers = Vec::new();
        while !h.is_empty() {
            let nl = h[0] as usize;
            let name = String::from_utf8(h[1..1 + nl].to_vec()).unwrap();
            assert_eq!(h[1 + nl], 7);
            let vl = u16::from_be_bytes([h[2 + nl], h[3 + nl]]) as usize;
            let value = String::from_utf8(h[4 + nl..4 + nl + vl].to_vec()).unwrap();
            headers.push((name, value));
            h = &h[4 + nl + vl..];
        }
        out.push((headers, m[12 + hlen..total - 4].to_vec()));
        b = &b[total..];
    }
    out
}

fn header<'a>(h: &'a [(String, String)], name: &str) -> Option<&'a str> {
    h.iter().find(|(n, _)| n == name).map(|(_, v)| v.as_str())
}

async fn setup(c: &reqwest::Client, srv: &Server) -> String {
    let r = call(
        c,
        srv,
        "CreateStream",
        json!({"StreamName": "e", "ShardCount": 1}),
    )
    .await;
    assert_eq!(r.status, 200);
    let arn = "arn:aws:kinesis:us-east-1:000000000000:stream/e";
    let r = call(
        c,
        srv,
        "RegisterStreamConsumer",
        json!({"StreamARN": arn, "ConsumerName": "c"}),
    )
    .await;
    assert_eq!(r.status, 200, "{}", String::from_utf8_lossy(&r.raw));
    let v = r.json();
    assert_eq!(v["Consumer"]["ConsumerStatus"], "CREATING");
    let carn = v["Consumer"]["ConsumerARN"].as_str().unwrap().to_string();
    assert!(carn.starts_with(&format!("{arn}/consumer/c:")), "{carn}");
    for i in 0..3 {
        let r = call(
            c,
            srv,
            "PutRecord",
            json!({"StreamName": "e", "Data": "aGk=", "PartitionKey": format!("k{i}")}),
        )
        .await;
        assert_eq!(r.status, 200);
    }
    carn
}

async fn subscribe_and_check(c: reqwest::Client) {
    let srv = start().await;
    let carn = setup(&c, &srv).await;
    let r = call(
        &c,
        &srv,
        "SubscribeToShard",
        json!({"ConsumerARN": carn, "ShardId": "shardId-000000000000",
               "StartingPosition": {"Type": "TRIM_HORIZON"}}),
    )
    .await;
    assert_eq!(r.status, 200);
    assert_eq!(
        r.header("content-type"),
        Some("application/vnd.amazon.eventstream")
    );
    let fs = frames(&r.raw);
    assert_eq!(fs.len(), 2);
    assert_eq!(header(&fs[0].0, ":event-type"), Some("initial-response"));
    assert_eq!(header(&fs[1].0, ":message-type"), Some("event"));
    assert_eq!(
        header(&fs[1].0, ":event-type"),
        Some("SubscribeToShardEvent")
    );
    let ev: Value = serde_json::from_slice(&fs[1].1).unwrap();
    assert_eq!(ev["Records"].as_array().unwrap().len(), 3);
    assert_eq!(ev["Records"][0]["Data"], "aGk=");
    assert!(ev["ContinuationSequenceNumber"].is_string());
}

#[tokio::test]
async fn subscribe_over_http1() {
    subscribe_and_check(reqwest::Client::new()).await;
}

#[tokio::test]
async fn subscribe_over_h2c() {
    let c = reqwest::Client::builder()
        .http2_prior_knowledge()
        .build()
        .unwrap();
    subscribe_and_check(c).await;
}

#[tokio::test]
async fn consumer_errors() {
    let srv = start().await;
    let c = reqwest::Client::new();
    let carn = setup(&c, &srv).await;
    let r = call(
        &c,
        &srv,
        "DescribeStreamConsumer",
        json!({"ConsumerARN": carn}),
    )
    .await;
    assert_eq!(r.json()["ConsumerDescription"]["ConsumerStatus"], "ACTIVE");
    let r = call(
        &c,
        &srv,
        "DescribeStreamConsumer",
        json!({"ConsumerName": "c"}),
    )
    .await;
    assert_error(&r, 400, "InvalidArgumentException");
    let r = call(
        &c,
        &srv,
        "DescribeStreamConsumer",
        json!({"ConsumerARN": "arn:aws:kinesis:us-east-1:000000000000:stream/e/consumer/x:1"}),
    )
    .await;
    assert_error(&r, 400, "ResourceNotFoundException");
    let r = call(
        &c,
        &srv,
        "SubscribeToShard",
        json!({"ConsumerARN": carn, "ShardId": "shardId-000000000000"}),
    )
    .await;
    assert_error(&r, 400, "ValidationException");
    let r = call(
        &c,
        &srv,
        "SubscribeToShard",
        json!({"ConsumerARN": carn, "ShardId": "shardId-000000000000",
               "StartingPosition": {"Type": "AT_SEQUENCE_NUMBER"}}),
    )
    .await;
    assert_error(&r, 400, "InvalidArgumentException");
    let r = call(
        &c,
        &srv,
        "ListStreamConsumers",
        json!({"StreamARN": "arn:aws:kinesis:us-east-1:000000000000:stream/e", "MaxResults": 1}),
    )
    .await;
    assert_eq!(r.json()["Consumers"].as_array().unwrap().len(), 1);
    let r = call(
        &c,
        &srv,
        "DeregisterStreamConsumer",
        json!({"ConsumerARN": carn}),
    )
    .await;
    assert_eq!(r.status, 200);
}

#[tokio::test]
async fn subscribe_in_cbor() {
    // What the AWS SDK for Java v2 (and so KCL) sends: CBOR bodies and CBOR event payloads.
    let srv = start().await;
    let c = reqwest::Client::new();
    let carn = setup(&c, &srv).await;
    let req = ciborium::Value::Map(vec![
        ("ConsumerARN".into(), carn.as_str().into()),
        ("ShardId".into(), "shardId-000000000000".into()),
        (
            "StartingPosition".into(),
            ciborium::Value::Map(vec![("Type".into(), "TRIM_HORIZON".into())]),
        ),
    ]);
    let mut body = Vec::new();
    ciborium::ser::into_writer(&req, &mut body).unwrap();
    let r = send(
        &c,
        &srv,
        Some("Kinesis_20131202.SubscribeToShard"),
        CBOR,
        body,
    )
    .await;
    assert_eq!(r.status, 200);
    let fs = frames(&r.raw);
    assert_eq!(header(&fs[1].0, ":content-type"), Some(CBOR));
    let ev: ciborium::Value = ciborium::de::from_reader(&fs[1].1[..]).unwrap();
    let records = ev
        .as_map()
        .unwrap()
        .iter()
        .find(|(k, _)| k.as_text() == Some("Records"))
        .and_then(|(_, v)| v.as_array())
        .unwrap();
    assert_eq!(records.len(), 3);
}
