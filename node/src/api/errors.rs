//! The one mapping from [`KinesisError`] to an HTTP response: status from
//! `ErrorKind::http_status()`, body `{"__type": …, "message": …}` in the request's encoding,
//! header `x-amzn-ErrorType`, content type echoing the request's.

use axum::body::Body;
use axum::http::{header, HeaderValue, Response, StatusCode};
use serde::Serialize;
use spate_proto::kinesis::KinesisError;

use super::codec::Encoding;

/// Header naming the error family.
pub const ERROR_TYPE_HEADER: &str = "x-amzn-errortype";

#[derive(Serialize)]
struct ErrorBody<'a> {
    #[serde(rename = "__type")]
    type_name: &'a str,
    message: &'a str,
}

/// Builds the error response for `err` in `encoding`.
pub fn error_response(err: &KinesisError, encoding: Encoding) -> Response<Body> {
    let type_name = err.kind.type_name();
    let body = ErrorBody {
        type_name,
        message: &err.message,
    };
    // Encoding two strings cannot fail; fall back to a fixed body rather than panic.
    let bytes = encoding
        .encode(&body)
        .unwrap_or_else(|_| br#"{"__type":"InternalFailure"}"#.to_vec());
    let status =
        StatusCode::from_u16(err.kind.http_status()).unwrap_or(StatusCode::INTERNAL_SERVER_ERROR);
    let mut resp = Response::new(Body::from(bytes));
    *resp.status_mut() = status;
    let headers = resp.headers_mut();
    headers.insert(
        header::CONTENT_TYPE,
        HeaderValue::from_static(encoding.content_type()),
    );
    headers.insert(ERROR_TYPE_HEADER, HeaderValue::from_static(type_name));
    resp
}

#[cfg(test)]
mod tests {
    use super::*;
    use http_body_util::BodyExt;
    use spate_proto::kinesis::ErrorKind;

    async fn parts(resp: Response<Body>) -> (u16, String, String, Vec<u8>) {
        let status = resp.status().as_u16();
        let ct = resp.headers()[header::CONTENT_TYPE]
            .to_str()
            .unwrap()
            .to_string();
        let et = resp.headers()[ERROR_TYPE_HEADER]
            .to_str()
            .unwrap()
            .to_string();
        let body = resp
            .into_body()
            .collect()
            .await
            .unwrap()
            .to_bytes()
            .to_vec();
        (status, ct, et, body)
    }

    #[tokio::test]
    async fn maps_kind_to_status_type_and_body() {
        for (kind, status) in [
            (ErrorKind::ResourceNotFound, 400),
            (ErrorKind::Validation, 400),
            (ErrorKind::Serialization, 400),
            (ErrorKind::UnknownOperation, 400),
            (ErrorKind::ExpiredNextToken, 400),
            (ErrorKind::AccessDenied, 403),
            (ErrorKind::InternalFailure, 500),
            (ErrorKind::ServiceUnavailable, 503),
        ] {
            let err = KinesisError::new(kind, "boom");
            let (st, ct, et, body) = parts(error_response(&err, Encoding::AmzJson11)).await;
            assert_eq!(st, status);
            assert_eq!(ct, "application/x-amz-json-1.1");
            assert_eq!(et, kind.type_name());
            let v: serde_json::Value = serde_json::from_slice(&body).unwrap();
            assert_eq!(
                v,
                serde_json::json!({"__type": kind.type_name(), "message": "boom"})
            );
        }
    }

    #[tokio::test]
    async fn cbor_errors_are_cbor() {
        let err = KinesisError::not_found("gone");
        let (st, ct, _, body) = parts(error_response(&err, Encoding::Cbor)).await;
        assert_eq!(st, 400);
        assert_eq!(ct, "application/x-amz-cbor-1.1");
        let v: ciborium::Value = ciborium::de::from_reader(body.as_slice()).unwrap();
        let map = v.as_map().unwrap();
        assert_eq!(map[0].0.as_text(), Some("__type"));
        assert_eq!(map[0].1.as_text(), Some("ResourceNotFoundException"));
    }
}
