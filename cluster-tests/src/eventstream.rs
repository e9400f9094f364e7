//! A SubscribeToShard reader for tests: decodes `application/vnd.amazon.eventstream`
//! messages (prelude, headers, payload, both CRC32s checked) from a streaming HTTP/1.1
//! response.
//!
//! [`Subscription::open`] sends SubscribeToShard to one endpoint and, on success, has read the
//! `initial-response` event; [`Subscription::next`] yields each following message as a
//! [`SubEvent`]. The HTTP client has no overall timeout (a subscription lasts minutes); each
//! read takes a timeout of its own.

use std::time::Duration;

use anyhow::{anyhow, bail, Context, Result};
use serde_json::{json, Value};

use crate::client::{amz_date, parse_error, KinesisError, RawResponse, JSON_CONTENT_TYPE};

/// One decoded message.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Message {
    pub headers: Vec<(String, String)>,
    pub payload: Vec<u8>,
}

impl Message {
    /// The value of a string header.
    pub fn header(&self, name: &str) -> Option<&str> {
        self.headers
            .iter()
            .find(|(n, _)| n == name)
            .map(|(_, v)| v.as_str())
    }
}

/// Splits a byte stream into messages.
#[derive(Debug, Default)]
pub struct Decoder {
    buf: Vec<u8>,
}

fn be32(b: &[u8]) -> u32 {
    u32::from_be_bytes([b[0], b[1], b[2], b[3]])
}

impl Decoder {
    pub fn push(&mut self, bytes: &[u8]) {
        self.buf.extend_from_slice(bytes);
    }

    /// Bytes received but not yet part of a whole message.
    pub fn pending(&self) -> usize {
        self.buf.len()
    }

    /// The next whole message, if one has arrived.
    pub fn next_message(&mut self) -> Result<Option<Message>> {
        if self.buf.len() < 12 {
            return Ok(None);
        }
        let total = be32(&self.buf[0..4]) as usize;
        let hlen = be32(&self.buf[4..8]) as usize;
        if crc32fast::hash(&self.buf[0..8]) != be32(&self.buf[8..12]) {
            bail!("event stream: bad prelude CRC");
        }
        if total < 16 + hlen || total > 16 * 1024 * 1024 {
            bail!("event stream: bad lengths (total {total}, headers {hlen})");
        }
        if self.buf.len() < total {
            return Ok(None);
        }
        let msg: Vec<u8> = self.buf.drain(..total).collect();
        if crc32fast::hash(&msg[..total - 4]) != be32(&msg[total - 4..]) {
            bail!("event stream: bad message CRC");
        }
        let headers = parse_headers(&msg[12..12 + hlen])?;
        Ok(Some(Message {
            headers,
            payload: msg[12 + hlen..total - 4].to_vec(),
        }))
    }
}

fn parse_headers(mut h: &[u8]) -> Result<Vec<(String, String)>> {
    let mut out = Vec::new();
    let take = |h: &mut &[u8], n: usize| -> Result<Vec<u8>> {
        if h.len() < n {
            bail!("event stream: truncated header");
        }
        let (a, b) = h.split_at(n);
        *h = b;
        Ok(a.to_vec())
    };
    while !h.is_empty() {
        let nlen = take(&mut h, 1)?[0] as usize;
        let name = String::from_utf8(take(&mut h, nlen)?)?;
        let ty = take(&mut h, 1)?[0];
        let value = match ty {
            0 => "true".to_string(),
            1 => "false".to_string(),
            2 => format!("{}", take(&mut h, 1)?[0] as i8),
            3 => format!("{:?}", take(&mut h, 2)?),
            4 => format!("{:?}", take(&mut h, 4)?),
            5 | 8 => format!("{:?}", take(&mut h, 8)?),
            9 => format!("{:?}", take(&mut h, 16)?),
            6 | 7 => {
                let l = take(&mut h, 2)?;
                let l = u16::from_be_bytes([l[0], l[1]]) as usize;
                String::from_utf8_lossy(&take(&mut h, l)?).into_owned()
            }
            t => bail!("event stream: unknown header type {t}"),
        };
        out.push((name, value));
    }
    Ok(out)
}

/// What a subscription delivered next.
#[derive(Debug, Clone)]
pub enum SubEvent {
    /// A `SubscribeToShardEvent` (its JSON body).
    Event(Value),
    /// An exception event: type and message.
    Exception(String, String),
    /// The response ended.
    End,
}

/// An open SubscribeToShard response.
pub struct Subscription {
    resp: reqwest::Response,
    dec: Decoder,
}

impl Subscription {
    /// SubscribeToShard at `endpoint`; waits (up to `timeout`) for the `initial-response`.
    /// A refusal before the stream starts is `Ok(Err(error))`.
    pub async fn open(
        endpoint: &str,
        consumer_arn: &str,
        shard_id: &str,
        starting_position: Value,
        timeout: Duration,
    ) -> Result<std::result::Result<Subscription, KinesisError>> {
        let http = reqwest::Client::builder()
            .connect_timeout(Duration::from_secs(2))
            .build()?;
        let date = amz_date();
        let auth = format!(
            "AWS4-HMAC-SHA256 Credential=AKIDSPATETEST/{}/us-east-1/kinesis/aws4_request, \
             SignedHeaders=content-type;host;x-amz-date;x-amz-target, Signature={}",
            &date[..8],
            "0".repeat(64)
        );
        let body = json!({"ConsumerARN": consumer_arn, "ShardId": shard_id,
                          "StartingPosition": starting_position});
        let send = http
            .post(format!("{}/", endpoint.trim_end_matches('/')))
            .header("Content-Type", JSON_CONTENT_TYPE)
            .header("X-Amz-Target", "Kinesis_20131202.SubscribeToShard")
            .header("X-Amz-Date", date)
            .header("Authorization", auth)
            .body(body.to_string())
            .send();
        let resp = tokio::time::timeout(timeout, send)
            .await
            .map_err(|_| anyhow!("SubscribeToShard at {endpoint}: no answer in {timeout:?}"))?
            .context("SubscribeToShard")?;
        let status = resp.status().as_u16();
        if !(200..300).contains(&status) {
            let error_type_header = resp
                .headers()
                .get("x-amzn-ErrorType")
                .and_then(|v| v.to_str().ok())
                .map(str::to_string);
            let body = resp.bytes().await.unwrap_or_default().to_vec();
            return Ok(Err(parse_error(&RawResponse {
                status,
                body,
                error_type_header,
            })));
        }
        let mut sub = Subscription {
            resp,
            dec: Decoder::default(),
        };
        let first = sub
            .next_message(timeout)
            .await?
            .ok_or_else(|| anyhow!("SubscribeToShard: stream ended before initial-response"))?;
        if first.header(":event-type") != Some("initial-response") {
            bail!("SubscribeToShard: first message is {:?}", first.headers);
        }
        Ok(Ok(sub))
    }

    async fn next_message(&mut self, timeout: Duration) -> Result<Option<Message>> {
        let deadline = tokio::time::Instant::now() + timeout;
        loop {
            if let Some(m) = self.dec.next_message()? {
                return Ok(Some(m));
            }
            let chunk = tokio::time::timeout_at(deadline, self.resp.chunk())
                .await
                .map_err(|_| anyhow!("no event stream message in {timeout:?}"))?
                .context("reading the event stream")?;
            match chunk {
                Some(c) => self.dec.push(&c),
                None if self.dec.pending() == 0 => return Ok(None),
                None => bail!("event stream ended inside a message"),
            }
        }
    }

    /// The next event, waiting at most `timeout`.
    pub async fn next(&mut self, timeout: Duration) -> Result<SubEvent> {
        let Some(m) = self.next_message(timeout).await? else {
            return Ok(SubEvent::End);
        };
        match m.header(":message-type") {
            Some("event") => {
                let v: Value = serde_json::from_slice(&m.payload)
                    .context("SubscribeToShardEvent payload is not JSON")?;
                Ok(SubEvent::Event(v))
            }
            Some("exception") => {
                let v: Value = serde_json::from_slice(&m.payload).unwrap_or(Value::Null);
                let msg = v["message"].as_str().unwrap_or_default().to_string();
                Ok(SubEvent::Exception(
                    m.header(":exception-type").unwrap_or("?").to_string(),
                    msg,
                ))
            }
            other => bail!("unexpected event stream message type {other:?}"),
        }
    }
}

/// The records of a `SubscribeToShardEvent`, data base64-decoded.
pub fn event_records(ev: &Value) -> Result<Vec<(String, Vec<u8>)>> {
    use base64::Engine as _;
    ev["Records"]
        .as_array()
        .map(Vec::as_slice)
        .unwrap_or_default()
        .iter()
        .map(|r| {
            let seq = r["SequenceNumber"].as_str().unwrap_or_default().to_string();
            let data = base64::engine::general_purpose::STANDARD
                .decode(r["Data"].as_str().unwrap_or_default())
                .context("record Data is not base64")?;
            Ok((seq, data))
        })
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn decodes_the_initial_response_vector_in_pieces() {
        // The initial-response frame the server sends (see node/src/api/eventstream.rs).
        let hex = concat!(
            "0000007200000060ab820d9e",
            "0d3a6d6573736167652d74797065070005",
            "6576656e74",
            "0b3a6576656e742d74797065070010",
            "696e697469616c2d726573706f6e7365",
            "0d3a636f6e74656e742d7479706507001a",
            "6170706c69636174696f6e2f782d616d7a2d6a736f6e2d312e31",
            "7b7d",
            "e16e66e4"
        );
        let bytes: Vec<u8> = (0..hex.len() / 2)
            .map(|i| u8::from_str_radix(&hex[2 * i..2 * i + 2], 16).unwrap())
            .collect();
        let mut d = Decoder::default();
        d.push(&bytes[..20]);
        assert!(d.next_message().unwrap().is_none());
        d.push(&bytes[20..]);
        let m = d.next_message().unwrap().unwrap();
        assert_eq!(m.header(":event-type"), Some("initial-response"));
        assert_eq!(m.header(":message-type"), Some("event"));
        assert_eq!(m.payload, b"{}");
        assert_eq!(d.pending(), 0);
        let mut bad = bytes.clone();
        bad[100] ^= 1;
        let mut d = Decoder::default();
        d.push(&bad);
        assert!(d.next_message().is_err());
    }
}
