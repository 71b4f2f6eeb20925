//! rustls client configuration for a region: system roots plus `ca_file`, optional client cert.
//!
//! Verification is always on; there is deliberately no switch to turn it off.

use std::path::Path;
use std::sync::{Arc, OnceLock};

use rustls::RootCertStore;
use rustls_pki_types::pem::PemObject;
use rustls_pki_types::{CertificateDer, PrivateKeyDer};

use crate::config::UpstreamTls;

#[derive(Debug, thiserror::Error)]
pub enum TlsError {
    #[error("cannot read {path}: {source}")]
    Pem {
        path: String,
        source: rustls_pki_types::pem::Error,
    },
    #[error("{path} holds no certificate")]
    NoCertificate { path: String },
    #[error("CA certificate in {path} rejected: {source}")]
    BadCa { path: String, source: rustls::Error },
    #[error("client certificate or key rejected: {0}")]
    ClientAuth(rustls::Error),
    #[error("TLS setup failed: {0}")]
    Rustls(#[from] rustls::Error),
}

/// The operating system's trust store, read once per process.
fn system_roots() -> &'static Arc<RootCertStore> {
    static ROOTS: OnceLock<Arc<RootCertStore>> = OnceLock::new();
    ROOTS.get_or_init(|| {
        let mut store = RootCertStore::empty();
        let found = rustls_native_certs::load_native_certs();
        for err in &found.errors {
            tracing::debug!("skipping a system root certificate: {err}");
        }
        let (added, ignored) = store.add_parsable_certificates(found.certs);
        tracing::debug!(added, ignored, "loaded system root certificates");
        Arc::new(store)
    })
}

pub fn provider() -> Arc<rustls::crypto::CryptoProvider> {
    Arc::new(rustls::crypto::ring::default_provider())
}

fn read_certs(path: &Path) -> Result<Vec<CertificateDer<'static>>, TlsError> {
    let shown = path.display().to_string();
    let certs = CertificateDer::pem_file_iter(path)
        .and_then(|it| it.collect::<Result<Vec<_>, _>>())
        .map_err(|source| TlsError::Pem {
            path: shown.clone(),
            source,
        })?;
    if certs.is_empty() {
        return Err(TlsError::NoCertificate { path: shown });
    }
    Ok(certs)
}

pub fn read_key(path: &Path) -> Result<PrivateKeyDer<'static>, TlsError> {
    PrivateKeyDer::from_pem_file(path).map_err(|source| TlsError::Pem {
        path: path.display().to_string(),
        source,
    })
}

pub fn read_cert_chain(path: &Path) -> Result<Vec<CertificateDer<'static>>, TlsError> {
    read_certs(path)
}

/// Builds the client config for one region. ALPN is left to the connector builder.
pub fn client_config(tls: Option<&UpstreamTls>) -> Result<rustls::ClientConfig, TlsError> {
    let mut roots = RootCertStore::clone(system_roots());
    if let Some(ca) = tls.and_then(|t| t.ca_file.as_deref()) {
        for cert in read_certs(ca)? {
            roots.add(cert).map_err(|source| TlsError::BadCa {
                path: ca.display().to_string(),
                source,
            })?;
        }
    }
    let builder = rustls::ClientConfig::builder_with_provider(provider())
        .with_safe_default_protocol_versions()?
        .with_root_certificates(roots);
    let config = match tls.and_then(|t| t.client_cert.as_deref().zip(t.client_key.as_deref())) {
        Some((cert, key)) => builder
            .with_client_auth_cert(read_certs(cert)?, read_key(key)?)
            .map_err(TlsError::ClientAuth)?,
        None => builder.with_no_client_auth(),
    };
    Ok(config)
}
