//! HTTP-level tests of the front door: `serve` on 127.0.0.1:0 over the in-memory test
//! backend, driven with reqwest over HTTP/1.1 and h2c.

mod efo;
mod mem;
mod settings;

use std::net::SocketAddr;
use std::sync::Arc;

use reqwest::header::HeaderMap;
use serde_json::{json, Value};
use tokio::io::{AsyncReadExt as _, AsyncWriteExt as _};
use tokio::sync::oneshot;

use mem::MemBackend;

const JSON: &str = "application/x-amz-json-1.1";
const CBOR: &str = "application/x-amz-cbor-1.1";
const DUMMY_AUTH: &str = "AWS4-HMAC-SHA256 Credential=AKID/20250101/us-east-1/kinesis/aws4_request, SignedHeaders=content-type;host;x-amz-date;x-amz-target, Signature=00";

struct Server {
    addr: SocketAddr,
    _stop: oneshot::Sender<()>,
}

async fn start() -> Server {
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    let (tx, rx) = oneshot::channel::<()>();
    let backend = Arc::new(MemBackend::default());
    tokio::spawn(async move {
        super::serve(listener, backend, async {
            let _ = rx.await;
        })
        .await
        .unwrap();
    });
    Server { addr, _stop: tx }
}

struct Reply {
    status: u16,
    headers: HeaderMap,
    version: reqwest::Version,
    raw: Vec<u8>,
}

impl Reply {
    fn json(&self) -> Value {
        serde_json::from_slice(&self.raw).unwrap()
    }
    fn header(&self, name: &str) -> Option<&str> {
        self.headers.get(name).and_then(|v| v.to_str().ok())
    }
}

async fn send(
    client: &reqwest::Client,
    srv: &Server,
    target: Option<&str>,
    content_type: &str,
    body: Vec<u8>,
) -> Reply {
    let mut req = client
        .post(format!("http://{}/", srv.addr))
        .header("content-type", content_type)
        .header("x-amz-date", "20250101T000000Z")
        .header("authorization", DUMMY_AUTH)
        .body(body);
    if let Some(t) = target {
        req = req.header("x-amz-target", t);
    }
    let resp = req.send().await.unwrap();
    Reply {
        status: resp.status().as_u16(),
        headers: resp.headers().clone(),
        version: resp.version(),
        raw: resp.bytes().await.unwrap().to_vec(),
    }
}

async fn call(client: &reqwest::Client, srv: &Server, op: &str, body: Value) -> Reply {
    let target = format!("Kinesis_20131202.{op}");
    send(
        client,
        srv,
        Some(&target),
        JSON,
        serde_json::to_vec(&body).unwrap(),
    )
    .await
}

fn assert_error(r: &Reply, status: u16, type_name: &str) {
    assert_eq!(r.status, status, "{}", String::from_utf8_lossy(&r.raw));
    let v = r.json();
    assert_eq!(v["__type"], type_name, "{v}");
    assert!(v["message"].is_string(), "{v}");
    assert_eq!(r.header("x-amzn-errortype"), Some(type_name));
    assert_eq!(r.header("content-type"), Some(JSON));
}

fn assert_ids(r: &Reply) {
    let id = r.header("x-amzn-requestid").expect("request id");
    assert!(uuid::Uuid::parse_str(id).is_ok(), "{id}");
    assert!(r.header("x-amz-id-2").is_some_and(|v| v.len() >= 64));
}

#[tokio::test]
async fn stream_lifecycle_and_records_over_http1() {
    let srv = start().await;
    let c = reqwest::Client::new();
    let r = call(
        &c,
        &srv,
        "CreateStream",
        json!({"StreamName": "s1", "ShardCount": 2}),
    )
    .await;
    assert_eq!(r.status, 200);
    assert_eq!(r.json(), json!({}));
    assert_ids(&r);
    assert_eq!(r.header("content-type"), Some(JSON));
    assert_eq!(r.version, reqwest::Version::HTTP_11);

    let r = call(&c, &srv, "DescribeStream", json!({"StreamName": "s1"})).await;
    assert_eq!(r.status, 200);
    let dv = r.json();
    let d = &dv["StreamDescription"];
    assert_eq!(
        d["StreamARN"],
        "arn:aws:kinesis:us-east-1:000000000000:stream/s1"
    );
    assert_eq!(d["StreamStatus"], "ACTIVE");
    assert_eq!(d["StreamModeDetails"]["StreamMode"], "PROVISIONED");
    assert_eq!(d["HasMoreShards"], false);
    assert_eq!(d["EncryptionType"], "NONE");
    assert_eq!(
        d["StreamCreationTimestamp"].as_f64(),
        Some(1_795_304_520.743)
    );
    assert_eq!(d["EnhancedMonitoring"], json!([{"ShardLevelMetrics": []}]));
    let shard0 = d["Shards"][0].as_object().unwrap();
    assert_eq!(shard0["ShardId"], "shardId-000000000000");
    assert!(
        !shard0.contains_key("ParentShardId"),
        "absent members are omitted"
    );
    assert!(!shard0["SequenceNumberRange"]
        .as_object()
        .unwrap()
        .contains_key("EndingSequenceNumber"));
    assert_eq!(shard0["HashKeyRange"]["StartingHashKey"], "0");

    let r = call(
        &c,
        &srv,
        "DescribeStreamSummary",
        json!({"StreamARN": d["StreamARN"]}),
    )
    .await;
    assert_eq!(r.status, 200);
    assert_eq!(r.json()["StreamDescriptionSummary"]["OpenShardCount"], 2);

    let r = call(
        &c,
        &srv,
        "PutRecord",
        json!({"StreamName": "s1", "PartitionKey": "k", "Data": "aGVsbG8=", "ExplicitHashKey": "0"}),
    )
    .await;
    assert_eq!(r.status, 200, "{}", r.json());
    let put = r.json();
    assert_eq!(put["ShardId"], "shardId-000000000000");
    assert_eq!(put["EncryptionType"], "NONE");

    let r = call(
        &c,
        &srv,
        "GetShardIterator",
        json!({"StreamName": "s1", "ShardId": "shardId-0", "ShardIteratorType": "TRIM_HORIZON"}),
    )
    .await;
    assert_eq!(r.status, 200);
    let it = r.json()["ShardIterator"].as_str().unwrap().to_string();

    let r = call(
        &c,
        &srv,
        "GetRecords",
        json!({"ShardIterator": it, "Limit": 10}),
    )
    .await;
    assert_eq!(r.status, 200);
    let g = r.json();
    assert_eq!(g["Records"][0]["Data"], "aGVsbG8=");
    assert_eq!(g["Records"][0]["PartitionKey"], "k");
    assert_eq!(g["Records"][0]["SequenceNumber"], put["SequenceNumber"]);
    assert_eq!(
        g["Records"][0]["ApproximateArrivalTimestamp"].as_f64(),
        Some(1_795_304_521.743)
    );
    assert!(g["NextShardIterator"].is_string());
    assert!(g.get("ChildShards").is_none());
    assert_eq!(g["MillisBehindLatest"], 0);

    let r = call(&c, &srv, "ListStreams", json!({})).await;
    let l = r.json();
    assert_eq!(l["StreamNames"], json!(["s1"]));
    assert_eq!(l["HasMoreStreams"], false);
    assert!(l.get("NextToken").is_none());
    assert_eq!(l["StreamSummaries"][0]["StreamName"], "s1");

    let r = call(&c, &srv, "DeleteStream", json!({"StreamName": "s1"})).await;
    assert_eq!(r.status, 200);
    let r = call(&c, &srv, "DescribeStream", json!({"StreamName": "s1"})).await;
    assert_error(&r, 400, "ResourceNotFoundException");
}

#[tokio::test]
async fn h2c_prior_knowledge() {
    let srv = start().await;
    let c = reqwest::Client::builder()
        .http2_prior_knowledge()
        .build()
        .unwrap();
    let r = call(&c, &srv, "CreateStream", json!({"StreamName": "h2"})).await;
    assert_eq!(r.status, 200);
    assert_eq!(r.version, reqwest::Version::HTTP_2);
    assert_ids(&r);
    let r = call(
        &c,
        &srv,
        "DescribeStreamSummary",
        json!({"StreamName": "h2"}),
    )
    .await;
    let sv = r.json();
    let s = &sv["StreamDescriptionSummary"];
    assert_eq!(s["StreamModeDetails"]["StreamMode"], "ON_DEMAND");
    assert_eq!(s["OpenShardCount"], 4);
    let r = call(&c, &srv, "Nope", json!({})).await;
    assert_error(&r, 400, "UnknownOperationException");
    assert_ids(&r);
}

#[tokio::test]
async fn protocol_errors() {
    let srv = start().await;
    let c = reqwest::Client::new();
    let r = call(&c, &srv, "NoSuchOperation", json!({})).await;
    assert_error(&r, 400, "UnknownOperationException");
    assert_ids(&r);
    let r = send(&c, &srv, None, JSON, b"{}".to_vec()).await;
    assert_error(&r, 400, "UnknownOperationException");
    // Resharding is dispatched: an empty request fails validation, not dispatch.
    let r = call(&c, &srv, "SplitShard", json!({})).await;
    assert_error(&r, 400, "ValidationException");
    let r = call(&c, &srv, "CreateQueue", json!({})).await;
    assert_error(&r, 400, "UnknownOperationException");
    assert!(r.json()["message"]
        .as_str()
        .is_some_and(|m| m.contains("CreateQueue") && m.contains("not supported")));
    let r = send(
        &c,
        &srv,
        Some("Kinesis_20131202.ListStreams"),
        JSON,
        b"{\"Limit\":".to_vec(),
    )
    .await;
    assert_error(&r, 400, "SerializationException");
    assert_ids(&r);
    let r = call(&c, &srv, "ListStreams", json!({"Limit": "ten"})).await;
    assert_error(&r, 400, "SerializationException");
    let r = call(
        &c,
        &srv,
        "CreateStream",
        json!({"StreamName": "bad name!", "ShardCount": 0}),
    )
    .await;
    assert_error(&r, 400, "ValidationException");
    assert_eq!(
        r.json()["message"],
        "2 validation errors detected: Value 'bad name!' at 'streamName' failed to satisfy constraint: Member must satisfy regular expression pattern: [a-zA-Z0-9_.-]+; Value '0' at 'shardCount' failed to satisfy constraint: Member must have value greater than or equal to 1"
    );
    let r = call(&c, &srv, "DescribeStream", json!({})).await;
    assert_error(&r, 400, "InvalidArgumentException");
    let other = "arn:aws:kinesis:eu-west-1:000000000000:stream/s";
    let r = call(&c, &srv, "DescribeStream", json!({"StreamARN": other})).await;
    assert_error(&r, 400, "ResourceNotFoundException");
}

#[tokio::test]
async fn oversized_body_is_413_without_buffering() {
    let srv = start().await;
    let mut tcp = tokio::net::TcpStream::connect(srv.addr).await.unwrap();
    let head = format!(
        "POST / HTTP/1.1\r\nhost: x\r\ncontent-type: {JSON}\r\nx-amz-target: Kinesis_20131202.PutRecords\r\ncontent-length: {}\r\n\r\n",
        16 * 1024 * 1024 + 1
    );
    tcp.write_all(head.as_bytes()).await.unwrap();
    let mut buf = vec![0u8; 4096];
    let n = tcp.read(&mut buf).await.unwrap();
    let text = String::from_utf8_lossy(&buf[..n]).to_ascii_lowercase();
    assert!(text.starts_with("http/1.1 413"), "{text}");
    assert!(text.contains("x-amzn-requestid"), "{text}");
}

#[tokio::test]
async fn put_records_partial_failure_is_200() {
    let srv = start().await;
    let c = reqwest::Client::new();
    call(
        &c,
        &srv,
        "CreateStream",
        json!({"StreamName": "p", "ShardCount": 1}),
    )
    .await;
    let r = call(
        &c,
        &srv,
        "PutRecords",
        json!({"StreamName": "p", "Records": [
            {"PartitionKey": "a", "Data": "AA=="},
            {"PartitionKey": "fail-me", "Data": "AA=="},
            {"PartitionKey": "b", "Data": ""},
        ]}),
    )
    .await;
    assert_eq!(r.status, 200);
    let v = r.json();
    assert_eq!(v["FailedRecordCount"], 1);
    assert_eq!(v["EncryptionType"], "NONE");
    let recs = v["Records"].as_array().unwrap();
    assert_eq!(recs.len(), 3);
    assert_eq!(recs[0]["ShardId"], "shardId-000000000000");
    assert!(recs[0].get("ErrorCode").is_none());
    assert_eq!(
        recs[1]["ErrorCode"],
        "ProvisionedThroughputExceededException"
    );
    assert!(recs[1].get("ShardId").is_none());
    assert!(recs[1].get("SequenceNumber").is_none());

    let r = call(
        &c,
        &srv,
        "PutRecords",
        json!({"StreamName": "p", "Records": [{"Data": "AA=="}]}),
    )
    .await;
    assert_error(&r, 400, "ValidationException");
    assert!(r.json()["message"].as_str().unwrap().contains(
        "at 'records.1.member.partitionKey' failed to satisfy constraint: Member must not be null"
    ));
    let r = call(
        &c,
        &srv,
        "PutRecord",
        json!({"StreamName": "p", "PartitionKey": "k", "Data": "AA==",
               "ExplicitHashKey": "340282366920938463463374607431768211456"}),
    )
    .await;
    assert_error(&r, 400, "InvalidArgumentException");
}

#[tokio::test]
async fn list_shards_pages_with_next_token() {
    let srv = start().await;
    let c = reqwest::Client::new();
    call(
        &c,
        &srv,
        "CreateStream",
        json!({"StreamName": "ls", "ShardCount": 5}),
    )
    .await;
    let r = call(
        &c,
        &srv,
        "ListShards",
        json!({"StreamName": "ls", "MaxResults": 2}),
    )
    .await;
    assert_eq!(r.status, 200);
    let v = r.json();
    assert_eq!(v["Shards"].as_array().unwrap().len(), 2);
    let mut token = v["NextToken"].as_str().unwrap().to_string();
    let mut seen = 2;
    loop {
        let r = call(
            &c,
            &srv,
            "ListShards",
            json!({"NextToken": token, "MaxResults": 2}),
        )
        .await;
        assert_eq!(r.status, 200, "{}", r.json());
        let v = r.json();
        seen += v["Shards"].as_array().unwrap().len();
        match v["NextToken"].as_str() {
            Some(t) => token = t.to_string(),
            None => break,
        }
    }
    assert_eq!(seen, 5);
    let r = call(
        &c,
        &srv,
        "ListShards",
        json!({"StreamName": "ls", "ShardFilter": {"Type": "AFTER_SHARD_ID", "ShardId": "shardId-000000000002"}}),
    )
    .await;
    let ids: Vec<Value> = r.json()["Shards"]
        .as_array()
        .unwrap()
        .iter()
        .map(|s| s["ShardId"].clone())
        .collect();
    assert_eq!(
        ids,
        vec![json!("shardId-000000000003"), json!("shardId-000000000004")]
    );
    let r = call(&c, &srv, "ListShards", json!({"NextToken": "garbage"})).await;
    assert_error(&r, 400, "InvalidArgumentException");
    let r = call(
        &c,
        &srv,
        "ListShards",
        json!({"StreamName": "ls", "ShardFilter": {"Type": "SIDEWAYS"}}),
    )
    .await;
    assert_error(&r, 400, "ValidationException");
}

#[tokio::test]
async fn cbor_round_trip() {
    use ciborium::Value as C;
    let srv = start().await;
    let c = reqwest::Client::new();
    let enc = |v: C| {
        let mut out = Vec::new();
        ciborium::ser::into_writer(&v, &mut out).unwrap();
        out
    };
    let text = |s: &str| C::Text(s.to_string());
    let body = enc(C::Map(vec![
        (text("StreamName"), text("cb")),
        (text("ShardCount"), C::Integer(1.into())),
    ]));
    let r = send(&c, &srv, Some("Kinesis_20131202.CreateStream"), CBOR, body).await;
    assert_eq!(r.status, 200);
    assert_eq!(r.header("content-type"), Some(CBOR));
    let body = enc(C::Map(vec![
        (text("StreamName"), text("cb")),
        (text("PartitionKey"), text("k")),
        (text("Data"), C::Bytes(b"bin\x00ary".to_vec())),
    ]));
    let r = send(&c, &srv, Some("Kinesis_20131202.PutRecord"), CBOR, body).await;
    assert_eq!(r.status, 200);
    let body = enc(C::Map(vec![
        (text("StreamName"), text("cb")),
        (text("ShardId"), text("0")),
        (text("ShardIteratorType"), text("AT_TIMESTAMP")),
        (
            text("Timestamp"),
            C::Tag(1, Box::new(C::Integer(1_700_000_000_000u64.into()))),
        ),
    ]));
    let r = send(
        &c,
        &srv,
        Some("Kinesis_20131202.GetShardIterator"),
        CBOR,
        body,
    )
    .await;
    assert_eq!(r.status, 200);
    let v: C = ciborium::de::from_reader(r.raw.as_slice()).unwrap();
    let it = v.as_map().unwrap()[0].1.as_text().unwrap().to_string();
    let body = enc(C::Map(vec![(text("ShardIterator"), text(&it))]));
    let r = send(&c, &srv, Some("Kinesis_20131202.GetRecords"), CBOR, body).await;
    assert_eq!(r.status, 200);
    let v: C = ciborium::de::from_reader(r.raw.as_slice()).unwrap();
    let records = v.as_map().unwrap()[0].1.as_array().unwrap();
    let rec = records[0].as_map().unwrap();
    let get = |k: &str| {
        rec.iter()
            .find(|(key, _)| key.as_text() == Some(k))
            .map(|(_, v)| v.clone())
    };
    assert_eq!(get("Data"), Some(C::Bytes(b"bin\x00ary".to_vec())));
    assert_eq!(
        get("ApproximateArrivalTimestamp"),
        Some(C::Tag(1, Box::new(C::Integer(1_795_304_521_743u64.into()))))
    );
    // Errors in CBOR too.
    let r = send(
        &c,
        &srv,
        Some("Kinesis_20131202.DescribeStream"),
        CBOR,
        enc(C::Map(vec![(text("StreamName"), text("nope"))])),
    )
    .await;
    assert_eq!(r.status, 400);
    assert_eq!(r.header("content-type"), Some(CBOR));
    let v: C = ciborium::de::from_reader(r.raw.as_slice()).unwrap();
    assert_eq!(
        v.as_map().unwrap()[0].1.as_text(),
        Some("ResourceNotFoundException")
    );
}

#[tokio::test]
async fn record_limits_and_iterator_arguments() {
    use base64::Engine as _;
    let srv = start().await;
    let c = reqwest::Client::new();
    call(
        &c,
        &srv,
        "CreateStream",
        json!({"StreamName": "lim", "ShardCount": 1}),
    )
    .await;
    let big = base64::engine::general_purpose::STANDARD.encode(vec![0u8; 1024 * 1024 + 1]);
    let r = call(
        &c,
        &srv,
        "PutRecord",
        json!({"StreamName": "lim", "PartitionKey": "k", "Data": big}),
    )
    .await;
    assert_error(&r, 400, "ValidationException");
    assert!(r.json()["message"]
        .as_str()
        .unwrap()
        .contains("at 'data' failed to satisfy constraint: Member must have length less than or equal to 1048576"));
    let r = call(
        &c,
        &srv,
        "GetShardIterator",
        json!({"StreamName": "lim", "ShardId": "0", "ShardIteratorType": "AT_SEQUENCE_NUMBER"}),
    )
    .await;
    assert_error(&r, 400, "InvalidArgumentException");
    let r = call(
        &c,
        &srv,
        "GetShardIterator",
        json!({"StreamName": "lim", "ShardId": "0", "ShardIteratorType": "SOMEWHERE"}),
    )
    .await;
    assert_error(&r, 400, "ValidationException");
    let r = call(
        &c,
        &srv,
        "GetShardIterator",
        json!({"StreamName": "lim", "ShardId": "bogus", "ShardIteratorType": "LATEST"}),
    )
    .await;
    assert_error(&r, 400, "ResourceNotFoundException");
    let r = call(&c, &srv, "GetRecords", json!({"Limit": 0})).await;
    assert_error(&r, 400, "ValidationException");
    assert!(r.json()["message"]
        .as_str()
        .unwrap()
        .starts_with("2 validation errors detected: "));
}
