//! A small Kinesis JSON 1.1 client over reqwest, built for tests.
//!
//! Every request is `POST /` with `X-Amz-Target: Kinesis_20131202.<Op>`, content type
//! `application/x-amz-json-1.1` and a dummy SigV4-shaped `Authorization` header (the server does
//! not verify signatures by default). Every request has a timeout. Errors are returned as
//! [`KinesisError`], which classifies the outcome of a failed request: definitely not applied
//! ([`KinesisError::outcome_unknown`] is false) or possibly applied. [`retry`] retries transient
//! errors and records every attempt.

use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

use base64::Engine as _;
use serde::de::DeserializeOwned;
use serde::Deserialize;
use serde_json::{json, Value};

pub use crate::retry::{retry, Attempt, RetryPolicy};
use crate::types::RawGetRecords;
pub use crate::types::*;

/// The JSON 1.1 content type.
pub const JSON_CONTENT_TYPE: &str = "application/x-amz-json-1.1";
/// The target prefix of every Kinesis operation.
pub const TARGET_PREFIX: &str = "Kinesis_20131202";

/// Pseudo error type used for transport failures (no HTTP response).
pub const TRANSPORT: &str = "Transport";

/// A failed Kinesis request.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct KinesisError {
    /// HTTP status, `None` for a transport failure.
    pub status: Option<u16>,
    /// The AWS error name (`__type` without any `namespace#` prefix), or [`TRANSPORT`].
    pub kind: String,
    /// The error message (server message or transport error text).
    pub message: String,
    /// Transport failure before the request could have been sent (connection refused).
    pub not_sent: bool,
}

impl std::fmt::Display for KinesisError {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self.status {
            Some(s) => write!(f, "HTTP {s} {}: {}", self.kind, self.message),
            None => write!(f, "{}: {}", self.kind, self.message),
        }
    }
}

impl std::error::Error for KinesisError {}

impl KinesisError {
    fn transport(e: &reqwest::Error) -> Self {
        let mut message = e.to_string();
        let mut src = std::error::Error::source(e);
        while let Some(s) = src {
            message.push_str(": ");
            message.push_str(&s.to_string());
            src = s.source();
        }
        KinesisError {
            status: None,
            kind: TRANSPORT.to_string(),
            message,
            not_sent: e.is_connect(),
        }
    }

    /// Whether retrying the same request may succeed.
    pub fn is_transient(&self) -> bool {
        match self.status {
            None => true,
            Some(s) if s >= 500 => true,
            _ => matches!(
                self.kind.as_str(),
                "ServiceUnavailable"
                    | "ServiceUnavailableException"
                    | "InternalFailure"
                    | "InternalFailureException"
                    | "ProvisionedThroughputExceededException"
                    | "ThrottlingException"
            ),
        }
    }

    /// Whether a write that failed this way may nevertheless have been applied.
    ///
    /// Connection refused and every 4xx (including throttling, which means "not applied") are
    /// definite failures; timeouts, resets and 5xx are unknown.
    pub fn outcome_unknown(&self) -> bool {
        match self.status {
            None => !self.not_sent,
            Some(s) if s >= 500 => true,
            _ => matches!(self.kind.as_str(), "InternalFailure" | "ServiceUnavailable"),
        }
    }
}

/// Result alias for client calls.
pub type KResult<T> = Result<T, KinesisError>;

/// A Kinesis JSON 1.1 client bound to one endpoint.
#[derive(Clone, Debug)]
pub struct KinesisClient {
    http: reqwest::Client,
    endpoint: String,
}

/// The raw answer of a request: HTTP status and body bytes.
#[derive(Debug, Clone)]
pub struct RawResponse {
    pub status: u16,
    pub body: Vec<u8>,
    pub error_type_header: Option<String>,
}

fn b64(data: &[u8]) -> String {
    base64::engine::general_purpose::STANDARD.encode(data)
}

/// `YYYYMMDDTHHMMSSZ` for now (UTC), for the `X-Amz-Date` header.
pub fn amz_date() -> String {
    let secs = SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map(|d| d.as_secs())
        .unwrap_or(0);
    let (days, rem) = ((secs / 86_400) as i64, secs % 86_400);
    // Howard Hinnant's civil-from-days.
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
        (rem / 60) % 60,
        rem % 60
    )
}

/// Normalise an AWS error name: drop a `namespace#` prefix and a `:details` suffix.
pub fn normalise_error_type(t: &str) -> String {
    let t = t.rsplit('#').next().unwrap_or(t);
    t.split(':').next().unwrap_or(t).trim().to_string()
}

impl KinesisClient {
    /// A client for `endpoint` (e.g. `http://127.0.0.1:4567`) with a 10 s request timeout.
    pub fn new(endpoint: &str) -> Self {
        Self::with_timeout(endpoint, Duration::from_secs(10))
    }

    /// A client with an explicit per-request timeout.
    pub fn with_timeout(endpoint: &str, timeout: Duration) -> Self {
        let http = reqwest::Client::builder()
            .timeout(timeout)
            .connect_timeout(Duration::from_secs(2))
            .pool_idle_timeout(Duration::from_secs(5))
            .build()
            .expect("reqwest client");
        KinesisClient {
            http,
            endpoint: endpoint.trim_end_matches('/').to_string(),
        }
    }

    /// A client that speaks HTTP/2 over cleartext (h2c, prior knowledge) to `endpoint`.
    pub fn h2c(endpoint: &str) -> Self {
        let http = reqwest::Client::builder()
            .http2_prior_knowledge()
            .timeout(Duration::from_secs(10))
            .connect_timeout(Duration::from_secs(2))
            .build()
            .expect("reqwest client");
        KinesisClient {
            http,
            endpoint: endpoint.trim_end_matches('/').to_string(),
        }
    }

    /// The endpoint this client talks to.
    pub fn endpoint(&self) -> &str {
        &self.endpoint
    }

    /// Send an arbitrary body with an arbitrary target and content type; no error parsing.
    pub async fn raw(
        &self,
        target: Option<&str>,
        content_type: &str,
        body: Vec<u8>,
    ) -> KResult<RawResponse> {
        let date = amz_date();
        let auth = format!(
            "AWS4-HMAC-SHA256 Credential=AKIDSPATETEST/{}/us-east-1/kinesis/aws4_request, \
             SignedHeaders=content-type;host;x-amz-date;x-amz-target, Signature={}",
            &date[..8],
            "0".repeat(64)
        );
        let mut req = self
            .http
            .post(format!("{}/", self.endpoint))
            .header("Content-Type", content_type)
            .header("X-Amz-Date", date)
            .header("Authorization", auth)
            .body(body);
        if let Some(t) = target {
            req = req.header("X-Amz-Target", t);
        }
        let resp = req.send().await.map_err(|e| KinesisError::transport(&e))?;
        let status = resp.status().as_u16();
        let error_type_header = resp
            .headers()
            .get("x-amzn-ErrorType")
            .and_then(|v| v.to_str().ok())
            .map(str::to_string);
        let body = resp
            .bytes()
            .await
            .map_err(|e| KinesisError::transport(&e))?;
        Ok(RawResponse {
            status,
            body: body.to_vec(),
            error_type_header,
        })
    }

    /// Call `op` with a JSON body; a non-2xx answer becomes a [`KinesisError`].
    pub async fn call(&self, op: &str, body: &Value) -> KResult<Value> {
        let target = format!("{TARGET_PREFIX}.{op}");
        let bytes = serde_json::to_vec(body).expect("serialise request");
        let raw = self.raw(Some(&target), JSON_CONTENT_TYPE, bytes).await?;
        if (200..300).contains(&raw.status) {
            if raw.body.is_empty() {
                return Ok(Value::Object(Default::default()));
            }
            return serde_json::from_slice(&raw.body).map_err(|e| KinesisError {
                status: Some(raw.status),
                kind: "ClientDecodeError".into(),
                message: format!("{op}: undecodable response: {e}"),
                not_sent: false,
            });
        }
        Err(parse_error(&raw))
    }

    async fn call_typed<T: DeserializeOwned>(&self, op: &str, body: &Value) -> KResult<T> {
        let v = self.call(op, body).await?;
        serde_json::from_value(v).map_err(|e| KinesisError {
            status: Some(200),
            kind: "ClientDecodeError".into(),
            message: format!("{op}: {e}"),
            not_sent: false,
        })
    }

    /// `CreateStream` in provisioned mode with `shard_count` shards.
    pub async fn create_stream(&self, name: &str, shard_count: u32) -> KResult<()> {
        self.call(
            "CreateStream",
            &json!({"StreamName": name, "ShardCount": shard_count}),
        )
        .await
        .map(|_| ())
    }

    /// Create a stream (retrying transient errors; `ResourceInUseException` after a retried
    /// attempt counts as created) and wait until it is ACTIVE.
    pub async fn ensure_stream(
        &self,
        name: &str,
        shard_count: u32,
        timeout: Duration,
    ) -> anyhow::Result<()> {
        let (res, attempts) = retry(&RetryPolicy::default(), |_| {
            self.create_stream(name, shard_count)
        })
        .await;
        match res {
            Ok(()) => {}
            Err(e) if e.kind == "ResourceInUseException" && attempts.len() > 1 => {}
            Err(e) => anyhow::bail!("CreateStream {name}: {e} (attempts: {attempts:?})"),
        }
        self.wait_active(name, timeout).await
    }

    /// `DeleteStream`.
    pub async fn delete_stream(&self, name: &str) -> KResult<()> {
        self.call("DeleteStream", &json!({"StreamName": name}))
            .await
            .map(|_| ())
    }

    /// `DescribeStreamSummary`.
    pub async fn describe_stream_summary(&self, name: &str) -> KResult<StreamSummary> {
        #[derive(Deserialize)]
        #[serde(rename_all = "PascalCase")]
        struct Out {
            stream_description_summary: StreamSummary,
        }
        let out: Out = self
            .call_typed("DescribeStreamSummary", &json!({"StreamName": name}))
            .await?;
        Ok(out.stream_description_summary)
    }

    /// Poll `DescribeStreamSummary` until the stream is ACTIVE (transient errors are retried).
    pub async fn wait_active(&self, name: &str, timeout: Duration) -> anyhow::Result<()> {
        let deadline = Instant::now() + timeout;
        loop {
            let last = match self.describe_stream_summary(name).await {
                Ok(s) if s.stream_status == "ACTIVE" => return Ok(()),
                Ok(s) => format!("status {}", s.stream_status),
                Err(e) => e.to_string(),
            };
            if Instant::now() >= deadline {
                anyhow::bail!("stream {name} not ACTIVE within {timeout:?}: {last}");
            }
            tokio::time::sleep(Duration::from_millis(100)).await;
        }
    }

    /// `ListShards`, following `NextToken` to the end.
    pub async fn list_shards(&self, name: &str) -> KResult<Vec<Shard>> {
        #[derive(Deserialize)]
        #[serde(rename_all = "PascalCase")]
        struct Out {
            shards: Vec<Shard>,
            #[serde(default)]
            next_token: Option<String>,
        }
        let mut all = Vec::new();
        let mut out: Out = self
            .call_typed("ListShards", &json!({"StreamName": name}))
            .await?;
        loop {
            all.append(&mut out.shards);
            match out.next_token.take() {
                Some(t) => {
                    out = self
                        .call_typed("ListShards", &json!({"NextToken": t}))
                        .await?
                }
                None => return Ok(all),
            }
        }
    }

    /// `PutRecord`.
    pub async fn put_record(
        &self,
        stream: &str,
        partition_key: &str,
        data: &[u8],
        explicit_hash_key: Option<&str>,
    ) -> KResult<PutRecordOutput> {
        let mut body =
            json!({"StreamName": stream, "PartitionKey": partition_key, "Data": b64(data)});
        if let Some(h) = explicit_hash_key {
            body["ExplicitHashKey"] = json!(h);
        }
        self.call_typed("PutRecord", &body).await
    }

    /// `PutRecords`; per-record failures are in the output, not an `Err`.
    pub async fn put_records(
        &self,
        stream: &str,
        entries: &[PutEntry],
    ) -> KResult<PutRecordsOutput> {
        let records: Vec<Value> = entries
            .iter()
            .map(|e| {
                let mut r = json!({"PartitionKey": e.partition_key, "Data": b64(&e.data)});
                if let Some(h) = &e.explicit_hash_key {
                    r["ExplicitHashKey"] = json!(h);
                }
                r
            })
            .collect();
        let out: PutRecordsOutput = self
            .call_typed(
                "PutRecords",
                &json!({"StreamName": stream, "Records": records}),
            )
            .await?;
        if out.records.len() != entries.len() {
            return Err(KinesisError {
                status: Some(200),
                kind: "ClientDecodeError".into(),
                message: format!(
                    "PutRecords answered {} results for {} entries",
                    out.records.len(),
                    entries.len()
                ),
                not_sent: false,
            });
        }
        Ok(out)
    }

    /// `GetShardIterator`.
    pub async fn get_shard_iterator(
        &self,
        stream: &str,
        shard_id: &str,
        it: &IteratorType,
    ) -> KResult<String> {
        let mut body = json!({"StreamName": stream, "ShardId": shard_id});
        let (t, seq) = match it {
            IteratorType::TrimHorizon => ("TRIM_HORIZON", None),
            IteratorType::Latest => ("LATEST", None),
            IteratorType::AtSequenceNumber(s) => ("AT_SEQUENCE_NUMBER", Some(s)),
            IteratorType::AfterSequenceNumber(s) => ("AFTER_SEQUENCE_NUMBER", Some(s)),
        };
        body["ShardIteratorType"] = json!(t);
        if let Some(s) = seq {
            body["StartingSequenceNumber"] = json!(s);
        }
        #[derive(Deserialize)]
        #[serde(rename_all = "PascalCase")]
        struct Out {
            shard_iterator: String,
        }
        let out: Out = self.call_typed("GetShardIterator", &body).await?;
        Ok(out.shard_iterator)
    }

    /// `GetRecords` with an optional `Limit`.
    pub async fn get_records(
        &self,
        iterator: &str,
        limit: Option<u32>,
    ) -> KResult<GetRecordsOutput> {
        let mut body = json!({"ShardIterator": iterator});
        if let Some(l) = limit {
            body["Limit"] = json!(l);
        }
        let raw: RawGetRecords = self.call_typed("GetRecords", &body).await?;
        let mut records = Vec::with_capacity(raw.records.len());
        for r in raw.records {
            let data = base64::engine::general_purpose::STANDARD
                .decode(r.data.as_bytes())
                .map_err(|e| KinesisError {
                    status: Some(200),
                    kind: "ClientDecodeError".into(),
                    message: format!("GetRecords: record data not base64: {e}"),
                    not_sent: false,
                })?;
            records.push(Record {
                sequence_number: r.sequence_number,
                partition_key: r.partition_key,
                data,
                approximate_arrival_timestamp: r.approximate_arrival_timestamp,
            });
        }
        Ok(GetRecordsOutput {
            records,
            next_shard_iterator: raw.next_shard_iterator,
            millis_behind_latest: raw.millis_behind_latest,
            child_shards: raw.child_shards,
        })
    }
}

/// Parse an error answer: `__type` from the JSON body, else the `x-amzn-ErrorType` header.
pub fn parse_error(raw: &RawResponse) -> KinesisError {
    let body: Option<Value> = serde_json::from_slice(&raw.body).ok();
    let from_body = body
        .as_ref()
        .and_then(|b| b.get("__type"))
        .and_then(Value::as_str)
        .map(normalise_error_type);
    let kind = from_body
        .or_else(|| raw.error_type_header.as_deref().map(normalise_error_type))
        .unwrap_or_else(|| format!("HTTP{}", raw.status));
    let message = body
        .as_ref()
        .and_then(|b| b.get("message").or_else(|| b.get("Message")))
        .and_then(Value::as_str)
        .map(str::to_string)
        .unwrap_or_else(|| {
            String::from_utf8_lossy(&raw.body)
                .chars()
                .take(500)
                .collect()
        });
    KinesisError {
        status: Some(raw.status),
        kind,
        message,
        not_sent: false,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn error_types_are_normalised() {
        assert_eq!(
            normalise_error_type("com.amazon.coral.service#SerializationException"),
            "SerializationException"
        );
        assert_eq!(
            normalise_error_type("ValidationException:http://internal.amazon.com/"),
            "ValidationException"
        );
    }

    #[test]
    fn error_classification() {
        let e = |status: Option<u16>, kind: &str, not_sent| KinesisError {
            status,
            kind: kind.into(),
            message: String::new(),
            not_sent,
        };
        let throttled = e(Some(400), "ProvisionedThroughputExceededException", false);
        assert!(throttled.is_transient() && !throttled.outcome_unknown());
        let refused = e(None, TRANSPORT, true);
        assert!(refused.is_transient() && !refused.outcome_unknown());
        let reset = e(None, TRANSPORT, false);
        assert!(reset.is_transient() && reset.outcome_unknown());
        let internal = e(Some(500), "InternalFailure", false);
        assert!(internal.is_transient() && internal.outcome_unknown());
        let invalid = e(Some(400), "ValidationException", false);
        assert!(!invalid.is_transient() && !invalid.outcome_unknown());
    }

    #[test]
    fn amz_date_shape() {
        let d = amz_date();
        assert_eq!(d.len(), 16);
        assert!(d.starts_with("20") && d.ends_with('Z') && &d[8..9] == "T");
    }
}
