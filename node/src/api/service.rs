//! The HTTP handler every request goes through: picks the encoding, resolves the operation
//! from `X-Amz-Target`, reads the body under the size limit, dispatches, and stamps every
//! response with `x-amzn-RequestId` and `x-amz-id-2`. Checks run in AWS's order: content
//! type and target first, then the body.

use std::sync::Arc;

use axum::body::Body;
use axum::extract::{Request, State};
use axum::http::{header, HeaderMap, HeaderValue, Method, Response, StatusCode};
use base64::engine::general_purpose::STANDARD;
use base64::Engine as _;
use rand::RngCore as _;
use spate_proto::kinesis::{ErrorKind, KinesisError};
use tracing::Instrument as _;

use super::auth;
use super::backend::Backend;
use super::codec::Encoding;
use super::dispatch::{dispatch, unknown_operation, Operation};
use super::errors::error_response;
use super::ApiOptions;

/// Largest request body accepted; larger ones get 413 before being buffered.
pub const MAX_BODY_BYTES: usize = 16 * 1024 * 1024;
pub const REQUEST_ID_HEADER: &str = "x-amzn-requestid";
pub const ID2_HEADER: &str = "x-amz-id-2";
pub const TARGET_HEADER: &str = "x-amz-target";

/// Handles one request (any method, any path).
pub async fn handle<B: Backend>(State(backend): State<Arc<B>>, req: Request) -> Response<Body> {
    let request_id = uuid::Uuid::new_v4().to_string();
    if req.method() == Method::OPTIONS {
        // CORS preflight.
        let mut resp = Response::new(Body::empty());
        auth::preflight_headers(req.headers(), resp.headers_mut());
        stamp(resp.headers_mut(), &request_id);
        return resp;
    }
    let target = header_str(req.headers(), TARGET_HEADER).map(str::to_string);
    let op = target.as_deref().and_then(Operation::from_target);
    let span = tracing::info_span!(
        "kinesis",
        op = op.map_or("-", Operation::name),
        request_id = %request_id,
        stream = tracing::field::Empty,
    );
    let mut resp = async move {
        let resp = respond(&*backend, req, target.as_deref(), op).await;
        tracing::debug!(status = resp.status().as_u16(), "answered");
        resp
    }
    .instrument(span)
    .await;
    stamp(resp.headers_mut(), &request_id);
    auth::cors_headers(resp.headers_mut());
    resp
}

async fn respond<B: Backend>(
    backend: &B,
    req: Request,
    target: Option<&str>,
    op: Option<Operation>,
) -> Response<Body> {
    let content_type = header_str(req.headers(), header::CONTENT_TYPE.as_str());
    let Some(encoding) = Encoding::from_content_type(content_type) else {
        // Without a usable content type nothing can be decoded: AWS answers as for an
        // unknown operation.
        let err = match op {
            Some(op) => KinesisError::new(
                ErrorKind::UnknownOperation,
                format!(
                    "Unsupported Content-Type {:?} for {}",
                    content_type.unwrap_or(""),
                    op.name()
                ),
            ),
            None => unknown_operation(target),
        };
        return error_response(&err, Encoding::AmzJson11);
    };
    if req.method() != Method::POST {
        let err = KinesisError::new(
            ErrorKind::UnknownOperation,
            format!("Method {} is not supported; use POST", req.method()),
        );
        return error_response(&err, encoding);
    }
    let Some(op) = op else {
        return error_response(&unknown_operation(target), encoding);
    };
    let declared = header_str(req.headers(), header::CONTENT_LENGTH.as_str())
        .and_then(|v| v.trim().parse::<u64>().ok());
    if declared.is_some_and(|n| n > MAX_BODY_BYTES as u64) {
        return too_large();
    }
    let signature = match auth::check_present(req.headers(), req.uri()) {
        Ok(s) => s,
        Err(err) => return error_response(&err, encoding),
    };
    let options = req.extensions().get::<Arc<ApiOptions>>().cloned();
    let (parts, body) = req.into_parts();
    let body = match axum::body::to_bytes(body, MAX_BODY_BYTES).await {
        Ok(b) => b,
        Err(e) => {
            let over_limit = std::error::Error::source(&e)
                .is_some_and(|s| s.is::<http_body_util::LengthLimitError>());
            if over_limit {
                return too_large();
            }
            let err = KinesisError::new(
                ErrorKind::Serialization,
                format!("Could not read the request body: {e}"),
            );
            return error_response(&err, encoding);
        }
    };
    if let Some(creds) = options.as_ref().and_then(|o| o.credentials.as_ref()) {
        let checked = match &signature {
            Some(sig) => auth::verify(
                sig,
                creds,
                backend.region(),
                &parts.method,
                &parts.uri,
                &parts.headers,
                &body,
                auth::now_secs(),
            ),
            None => Err(KinesisError::new(
                ErrorKind::InvalidSignature,
                "Presigned query-string authentication is not supported by this server; sign the Authorization header.",
            )),
        };
        if let Err(err) = checked {
            tracing::debug!(error = %err, "signature refused");
            return error_response(&err, encoding);
        }
    }
    if op == Operation::SubscribeToShard {
        return super::ops::consumers::subscribe_response(backend, encoding, &body).await;
    }
    match dispatch(backend, op, encoding, &body).await {
        Ok(bytes) => {
            let mut resp = Response::new(Body::from(bytes));
            resp.headers_mut().insert(
                header::CONTENT_TYPE,
                HeaderValue::from_static(encoding.content_type()),
            );
            resp
        }
        Err(err) => {
            if err.kind.http_status() >= 500 {
                tracing::warn!(error = %err, "request failed");
            } else {
                tracing::debug!(error = %err, "request refused");
            }
            error_response(&err, encoding)
        }
    }
}

fn too_large() -> Response<Body> {
    let mut resp = Response::new(Body::from(format!(
        "Request body larger than {MAX_BODY_BYTES} bytes"
    )));
    *resp.status_mut() = StatusCode::PAYLOAD_TOO_LARGE;
    resp.headers_mut()
        .insert(header::CONTENT_TYPE, HeaderValue::from_static("text/plain"));
    resp
}

fn header_str<'a>(headers: &'a HeaderMap, name: &str) -> Option<&'a str> {
    headers.get(name).and_then(|v| v.to_str().ok())
}

/// Adds the request-id headers every response carries.
fn stamp(headers: &mut HeaderMap, request_id: &str) {
    if let Ok(v) = HeaderValue::from_str(request_id) {
        headers.insert(REQUEST_ID_HEADER, v);
    }
    let mut id2 = [0u8; 72];
    rand::thread_rng().fill_bytes(&mut id2);
    if let Ok(v) = HeaderValue::from_str(&STANDARD.encode(id2)) {
        headers.insert(ID2_HEADER, v);
    }
}
