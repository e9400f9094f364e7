//! The Kinesis HTTP front door: an awsJson 1.1 / CBOR 1.1 endpoint, wire-compatible with
//! Amazon Kinesis Data Streams, served over HTTP/1.1 and h2c (HTTP/2 prior knowledge) on
//! one plain port.
//!
//! * [`backend`]: the contract with the replicated cluster behind the door;
//! * [`service`]: the one HTTP handler (headers, size limit, request ids, tracing span);
//! * [`dispatch`]: `X-Amz-Target` → operation → handler;
//! * [`codec`]: body encodings; [`errors`]: errors → responses;
//! * [`validate`]: AWS-style `ValidationException`s; [`ident`]: identifier helpers;
//! * [`token`]: pagination tokens; [`ops`]: the operation handlers;
//! * [`auth`]: SigV4 checks and CORS; [`tls`]: the TLS listener and the dev certificate.

pub mod auth;
pub mod backend;
pub mod codec;
pub mod dispatch;
pub mod errors;
pub mod eventstream;
pub mod ident;
pub mod ops;
pub mod service;
pub mod tls;
pub mod token;
pub mod validate;

#[cfg(test)]
mod tests;

use std::future::Future;
use std::sync::Arc;

use axum::serve::ListenerExt as _;

pub use backend::Backend;

/// Options of the front door beyond the backend.
#[derive(Debug, Clone, Default)]
pub struct ApiOptions {
    /// When set, request signatures are verified against these credentials.
    pub credentials: Option<auth::Credentials>,
}

/// The Kinesis API as an axum router: every method and path goes to the one handler.
pub fn router<B: Backend>(backend: Arc<B>) -> axum::Router {
    router_with(backend, ApiOptions::default())
}

/// [`router`] with options.
pub fn router_with<B: Backend>(backend: Arc<B>, options: ApiOptions) -> axum::Router {
    axum::Router::new()
        .fallback(service::handle::<B>)
        .layer(axum::Extension(Arc::new(options)))
        .with_state(backend)
}

/// Serves the Kinesis API on `listener` (HTTP/1.1 and h2c on the same port) until
/// `shutdown` completes, then drains in-flight requests.
pub async fn serve<B: Backend>(
    listener: tokio::net::TcpListener,
    backend: Arc<B>,
    shutdown: impl Future<Output = ()> + Send + 'static,
) -> std::io::Result<()> {
    serve_router(listener, router(backend), shutdown).await
}

/// Serves an API router (see [`router_with`]) on a plain port: HTTP/1.1 and h2c.
pub async fn serve_router(
    listener: tokio::net::TcpListener,
    app: axum::Router,
    shutdown: impl Future<Output = ()> + Send + 'static,
) -> std::io::Result<()> {
    let listener = listener.tap_io(|tcp| {
        if let Err(e) = tcp.set_nodelay(true) {
            tracing::debug!(error = %e, "could not set TCP_NODELAY");
        }
    });
    axum::serve(listener, app)
        .with_graceful_shutdown(shutdown)
        .await
}
