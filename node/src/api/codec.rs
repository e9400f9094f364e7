//! Request/response body encodings. The request's `Content-Type` picks an [`Encoding`];
//! requests are decoded into the `spate_proto::kinesis::model` types and responses (errors
//! included) are encoded in the same encoding, with the same content type echoed back.
//!
//! The model types carry the per-encoding differences themselves (blobs, timestamps; see
//! `spate_proto::kinesis::model`), so a codec is just "serde format + content type".

use serde::de::DeserializeOwned;
use serde::Serialize;
use spate_proto::kinesis::{ErrorKind, KinesisError, KinesisResult};

/// A supported body encoding, remembering the exact content type to echo.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Encoding {
    /// `application/x-amz-json-1.1` (what the AWS CLI, boto3 and most SDKs send).
    AmzJson11,
    /// `application/x-amz-json-1.0`, accepted and echoed.
    AmzJson10,
    /// `application/json`, accepted and echoed.
    Json,
    /// `application/x-amz-cbor-1.1` (the AWS SDKs for Java, KCL, KPL).
    Cbor,
}

impl Encoding {
    /// The encoding a `Content-Type` header names (parameters such as `charset` ignored);
    /// `None` when absent or unsupported.
    pub fn from_content_type(value: Option<&str>) -> Option<Encoding> {
        let essence = value?.split(';').next()?.trim().to_ascii_lowercase();
        match essence.as_str() {
            "application/x-amz-json-1.1" => Some(Encoding::AmzJson11),
            "application/x-amz-json-1.0" => Some(Encoding::AmzJson10),
            "application/json" => Some(Encoding::Json),
            "application/x-amz-cbor-1.1" => Some(Encoding::Cbor),
            _ => None,
        }
    }

    /// The content type responses carry.
    pub fn content_type(self) -> &'static str {
        match self {
            Encoding::AmzJson11 => "application/x-amz-json-1.1",
            Encoding::AmzJson10 => "application/x-amz-json-1.0",
            Encoding::Json => "application/json",
            Encoding::Cbor => "application/x-amz-cbor-1.1",
        }
    }

    pub fn is_json(self) -> bool {
        !matches!(self, Encoding::Cbor)
    }

    /// Decodes a request body. An empty body is an empty structure. Anything that is not a
    /// structure of correctly typed members is a `SerializationException`.
    pub fn decode<T: DeserializeOwned>(self, body: &[u8]) -> KinesisResult<T> {
        let first = body.iter().find(|b| !b.is_ascii_whitespace());
        if self.is_json() {
            match first {
                None => serde_json::from_slice(b"{}").map_err(serialization),
                Some(b'{') => serde_json::from_slice(body).map_err(serialization),
                Some(_) => Err(KinesisError::new(
                    ErrorKind::Serialization,
                    "Request body must be a JSON object",
                )),
            }
        } else if body.is_empty() {
            // An empty CBOR map.
            ciborium::de::from_reader(&[0xa0u8][..]).map_err(serialization)
        } else {
            ciborium::de::from_reader(body).map_err(serialization)
        }
    }

    /// Encodes a response body.
    pub fn encode<T: Serialize>(self, value: &T) -> KinesisResult<Vec<u8>> {
        if self.is_json() {
            serde_json::to_vec(value)
                .map_err(|e| KinesisError::internal(format!("response encoding failed: {e}")))
        } else {
            let mut out = Vec::new();
            ciborium::ser::into_writer(value, &mut out)
                .map_err(|e| KinesisError::internal(format!("response encoding failed: {e}")))?;
            Ok(out)
        }
    }
}

fn serialization(e: impl std::fmt::Display) -> KinesisError {
    KinesisError::new(ErrorKind::Serialization, e.to_string())
}

#[cfg(test)]
mod tests {
    use super::*;
    use bytes::Bytes;
    use spate_proto::kinesis::model::{
        Blob, GetShardIteratorInput, PutRecordInput, Record, Timestamp,
    };

    #[test]
    fn content_types() {
        for (ct, want) in [
            (
                Some("application/x-amz-json-1.1"),
                Some(Encoding::AmzJson11),
            ),
            (
                Some("application/x-amz-json-1.1; charset=utf-8"),
                Some(Encoding::AmzJson11),
            ),
            (Some("Application/X-Amz-Cbor-1.1"), Some(Encoding::Cbor)),
            (Some("application/json"), Some(Encoding::Json)),
            (Some("text/plain"), None),
            (None, None),
        ] {
            assert_eq!(Encoding::from_content_type(ct), want, "{ct:?}");
        }
        assert_eq!(Encoding::Cbor.content_type(), "application/x-amz-cbor-1.1");
    }

    #[test]
    fn json_decode_errors_are_serialization_exceptions() {
        let e = Encoding::AmzJson11;
        for body in [
            &b"{"[..],
            b"[1]",
            b"\"x\"",
            b"{\"Data\": 12}",
            b"{\"Data\": \"!!\"}",
        ] {
            let err = e.decode::<PutRecordInput>(body).unwrap_err();
            assert_eq!(err.kind, ErrorKind::Serialization, "{body:?}");
        }
        let err = e
            .decode::<GetShardIteratorInput>(br#"{"Timestamp": "yesterday"}"#)
            .unwrap_err();
        assert_eq!(err.kind, ErrorKind::Serialization);
        let empty: PutRecordInput = e.decode(b"  ").unwrap();
        assert_eq!(empty, PutRecordInput::default());
    }

    #[test]
    fn json_record_shape() {
        let r = Record {
            sequence_number: "1".into(),
            approximate_arrival_timestamp: Timestamp(1_795_304_520_743),
            data: Blob(Bytes::from_static(b"hi")),
            partition_key: "k".into(),
            encryption_type: None,
        };
        let s = String::from_utf8(Encoding::AmzJson11.encode(&r).unwrap()).unwrap();
        assert_eq!(
            s,
            r#"{"SequenceNumber":"1","ApproximateArrivalTimestamp":1795304520.743,"Data":"aGk=","PartitionKey":"k"}"#
        );
    }

    #[test]
    fn cbor_blobs_and_timestamps() {
        let r = Record {
            sequence_number: "1".into(),
            approximate_arrival_timestamp: Timestamp(1_795_304_520_743),
            data: Blob(Bytes::from_static(b"hi")),
            partition_key: "k".into(),
            encryption_type: None,
        };
        let bytes = Encoding::Cbor.encode(&r).unwrap();
        // Data is a byte string (0x42 'h' 'i'); the timestamp is tag 1 (0xc1) + uint64 ms.
        assert!(bytes.windows(3).any(|w| w == [0x42, b'h', b'i']));
        let ms = 1_795_304_520_743u64.to_be_bytes();
        let tagged: Vec<u8> = [0xc1, 0x1b].into_iter().chain(ms).collect();
        assert!(bytes.windows(tagged.len()).any(|w| w == tagged.as_slice()));
        let back: Record = Encoding::Cbor.decode(&bytes).unwrap();
        assert_eq!(back, r);
    }

    #[test]
    fn cbor_request_timestamp_tag() {
        // {"Timestamp": 1(1700000000000)} as a Java SDK sends it.
        let mut body = vec![0xa1, 0x69];
        body.extend_from_slice(b"Timestamp");
        body.extend_from_slice(&[0xc1, 0x1b]);
        body.extend_from_slice(&1_700_000_000_000u64.to_be_bytes());
        let req: GetShardIteratorInput = Encoding::Cbor.decode(&body).unwrap();
        assert_eq!(req.timestamp, Some(Timestamp(1_700_000_000_000)));
        let err = Encoding::Cbor
            .decode::<GetShardIteratorInput>(&[0xff, 0x00])
            .unwrap_err();
        assert_eq!(err.kind, ErrorKind::Serialization);
    }
}
