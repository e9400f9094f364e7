//! The TLS listener of the Kinesis API: rustls (ring provider) with ALPN `h2,http/1.1`,
//! serving the same router as the plain port, HTTP/1.1 or HTTP/2 per connection. Also the
//! self-signed development certificate `spate dev` generates (a CA and a leaf it signs, so
//! clients can verify against the CA).

use std::future::Future;
use std::io;
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::Duration;

use hyper_util::rt::{TokioExecutor, TokioIo};
use hyper_util::server::conn::auto;
use hyper_util::server::graceful::GracefulShutdown;
use hyper_util::service::TowerToHyperService;
use rustls_pki_types::pem::PemObject as _;
use rustls_pki_types::{CertificateDer, PrivateKeyDer};
use tokio::net::TcpListener;
use tokio_rustls::TlsAcceptor;

/// How long a client may take over its TLS handshake.
const HANDSHAKE_TIMEOUT: Duration = Duration::from_secs(10);
/// How long in-flight connections may drain after shutdown.
const DRAIN_TIMEOUT: Duration = Duration::from_secs(30);

fn invalid(msg: String) -> io::Error {
    io::Error::new(io::ErrorKind::InvalidData, msg)
}

/// Builds the server's TLS configuration from PEM files (certificate chain, private key).
pub fn server_config(cert: &Path, key: &Path) -> io::Result<Arc<rustls::ServerConfig>> {
    let certs = CertificateDer::pem_file_iter(cert)
        .and_then(|it| it.collect::<Result<Vec<_>, _>>())
        .map_err(|e| invalid(format!("TLS certificate {}: {e}", cert.display())))?;
    if certs.is_empty() {
        return Err(invalid(format!(
            "TLS certificate {}: no certificate found",
            cert.display()
        )));
    }
    let key = PrivateKeyDer::from_pem_file(key)
        .map_err(|e| invalid(format!("TLS key {}: {e}", key.display())))?;
    let provider = Arc::new(rustls::crypto::ring::default_provider());
    let mut cfg = rustls::ServerConfig::builder_with_provider(provider)
        .with_safe_default_protocol_versions()
        .map_err(|e| invalid(format!("TLS: {e}")))?
        .with_no_client_auth()
        .with_single_cert(certs, key)
        .map_err(|e| invalid(format!("TLS certificate/key: {e}")))?;
    cfg.alpn_protocols = vec![b"h2".to_vec(), b"http/1.1".to_vec()];
    Ok(Arc::new(cfg))
}

/// Serves `app` over TLS on `listener` until `shutdown` completes, then drains.
pub async fn serve_tls(
    listener: TcpListener,
    app: axum::Router,
    tls: Arc<rustls::ServerConfig>,
    shutdown: impl Future<Output = ()> + Send + 'static,
) -> io::Result<()> {
    let acceptor = TlsAcceptor::from(tls);
    let graceful = GracefulShutdown::new();
    tokio::pin!(shutdown);
    loop {
        let (tcp, peer) = tokio::select! {
            accepted = listener.accept() => match accepted {
                Ok(c) => c,
                Err(e) => {
                    tracing::debug!(error = %e, "TLS accept failed");
                    tokio::time::sleep(Duration::from_millis(20)).await;
                    continue;
                }
            },
            _ = &mut shutdown => break,
        };
        if let Err(e) = tcp.set_nodelay(true) {
            tracing::debug!(error = %e, "could not set TCP_NODELAY");
        }
        let acceptor = acceptor.clone();
        let app = app.clone();
        let watcher = graceful.watcher();
        tokio::spawn(async move {
            let stream = match tokio::time::timeout(HANDSHAKE_TIMEOUT, acceptor.accept(tcp)).await {
                Ok(Ok(s)) => s,
                Ok(Err(e)) => {
                    tracing::debug!(%peer, error = %e, "TLS handshake failed");
                    return;
                }
                Err(_) => {
                    tracing::debug!(%peer, "TLS handshake timed out");
                    return;
                }
            };
            let service = TowerToHyperService::new(app);
            let builder = auto::Builder::new(TokioExecutor::new());
            let conn = builder
                .serve_connection_with_upgrades(TokioIo::new(stream), service)
                .into_owned();
            if let Err(e) = watcher.watch(conn).await {
                tracing::debug!(%peer, error = %e, "TLS connection ended with an error");
            }
        });
    }
    drop(listener);
    if tokio::time::timeout(DRAIN_TIMEOUT, graceful.shutdown())
        .await
        .is_err()
    {
        tracing::warn!("TLS connections still open after the drain timeout");
    }
    Ok(())
}

/// Files of the development certificate under a `spate dev` data directory.
#[derive(Debug, Clone)]
pub struct DevCert {
    /// The CA to give verifying clients (`verify=`, `--ca-bundle`, `NODE_EXTRA_CA_CERTS`).
    pub ca: PathBuf,
    /// The server certificate chain (leaf, then CA).
    pub cert: PathBuf,
    pub key: PathBuf,
}

impl DevCert {
    pub fn paths(data_dir: &Path) -> DevCert {
        let dir = data_dir.join("tls");
        DevCert {
            ca: dir.join("ca.pem"),
            cert: dir.join("cert.pem"),
            key: dir.join("key.pem"),
        }
    }
}

/// Creates the development CA and server certificate (for `localhost`, `127.0.0.1`, `::1`
/// and `bind` when it is an address) unless they already exist.
pub fn ensure_dev_cert(data_dir: &Path, bind: &str) -> anyhow::Result<DevCert> {
    use rcgen::{
        BasicConstraints, CertificateParams, DnType, ExtendedKeyUsagePurpose, IsCa, KeyPair,
        KeyUsagePurpose,
    };
    let paths = DevCert::paths(data_dir);
    if paths.ca.exists() && paths.cert.exists() && paths.key.exists() {
        return Ok(paths);
    }
    let ca_key = KeyPair::generate()?;
    let mut ca_params = CertificateParams::new(Vec::<String>::new())?;
    ca_params.is_ca = IsCa::Ca(BasicConstraints::Unconstrained);
    ca_params
        .distinguished_name
        .push(DnType::CommonName, "Spate development CA");
    ca_params.key_usages = vec![
        KeyUsagePurpose::KeyCertSign,
        KeyUsagePurpose::CrlSign,
        KeyUsagePurpose::DigitalSignature,
    ];
    let ca = ca_params.self_signed(&ca_key)?;
    let mut names = vec![
        "localhost".to_string(),
        "127.0.0.1".to_string(),
        "::1".to_string(),
    ];
    if bind.parse::<std::net::IpAddr>().is_ok() && !names.iter().any(|n| n == bind) {
        names.push(bind.to_string());
    }
    let leaf_key = KeyPair::generate()?;
    let mut params = CertificateParams::new(names)?;
    params
        .distinguished_name
        .push(DnType::CommonName, "spate dev");
    params.extended_key_usages = vec![ExtendedKeyUsagePurpose::ServerAuth];
    params.key_usages = vec![
        KeyUsagePurpose::DigitalSignature,
        KeyUsagePurpose::KeyEncipherment,
    ];
    params.use_authority_key_identifier_extension = true;
    let leaf = params.signed_by(&leaf_key, &ca, &ca_key)?;
    if let Some(dir) = paths.ca.parent() {
        std::fs::create_dir_all(dir)?;
    }
    std::fs::write(&paths.ca, ca.pem())?;
    std::fs::write(&paths.cert, format!("{}{}", leaf.pem(), ca.pem()))?;
    std::fs::write(&paths.key, leaf_key.serialize_pem())?;
    Ok(paths)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn dev_cert_loads_into_rustls() {
        let dir = tempfile::tempdir().unwrap();
        let c = ensure_dev_cert(dir.path(), "127.0.0.1").unwrap();
        let cfg = server_config(&c.cert, &c.key).unwrap();
        assert_eq!(cfg.alpn_protocols[0], b"h2");
        // A second call reuses the files.
        let before = std::fs::read(&c.cert).unwrap();
        ensure_dev_cert(dir.path(), "127.0.0.1").unwrap();
        assert_eq!(std::fs::read(&c.cert).unwrap(), before);
    }
}
