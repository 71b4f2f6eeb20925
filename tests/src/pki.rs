//! `TestPki`: a throwaway CA with a server and a client certificate, as PEM files and rustls configs.
//!
//! The server certificate covers `localhost` and `127.0.0.1`, so it fits both a TLS fake region
//! and a TLS listener of the proxy. The client certificate is signed by the same CA for mTLS.

use std::path::{Path, PathBuf};
use std::sync::Arc;

use anyhow::{Context, Result};
use rcgen::{
    BasicConstraints, CertificateParams, CertifiedIssuer, DnType, ExtendedKeyUsagePurpose, IsCa,
    KeyPair, KeyUsagePurpose,
};
use rustls::server::WebPkiClientVerifier;
use rustls::{ClientConfig, RootCertStore, ServerConfig};
use rustls_pki_types::{CertificateDer, PrivateKeyDer, PrivatePkcs8KeyDer};
use tempfile::TempDir;

/// ALPN protocols a TLS fake region offers: h2 first, like a real HTTPS origin.
pub const ALPN_H2_H1: [&[u8]; 2] = [b"h2", b"http/1.1"];

/// One CA, one server certificate (`localhost`, `127.0.0.1`) and one client certificate,
/// written as PEM files to a temp dir that lives as long as this value.
pub struct TestPki {
    dir: TempDir,
    ca: CertificateDer<'static>,
    server: CertificateDer<'static>,
    server_key: Vec<u8>,
    client: CertificateDer<'static>,
    client_key: Vec<u8>,
}

impl TestPki {
    /// Generates the certificates and writes `ca.pem`, `server.pem`, `server.key`,
    /// `client.pem` and `client.key`.
    pub fn new() -> Self {
        Self::generate().expect("generate test PKI")
    }

    fn generate() -> Result<Self> {
        let mut ca_params = CertificateParams::new(Vec::<String>::new())?;
        ca_params.is_ca = IsCa::Ca(BasicConstraints::Unconstrained);
        ca_params
            .distinguished_name
            .push(DnType::CommonName, "Switchyard Test CA");
        ca_params.key_usages = vec![
            KeyUsagePurpose::KeyCertSign,
            KeyUsagePurpose::CrlSign,
            KeyUsagePurpose::DigitalSignature,
        ];
        let ca = CertifiedIssuer::self_signed(ca_params, KeyPair::generate()?)?;

        let mut server_params =
            CertificateParams::new(vec!["localhost".to_owned(), "127.0.0.1".to_owned()])?;
        server_params
            .distinguished_name
            .push(DnType::CommonName, "localhost");
        server_params.extended_key_usages = vec![ExtendedKeyUsagePurpose::ServerAuth];
        let server_key = KeyPair::generate()?;
        let server = server_params.signed_by(&server_key, &ca)?;

        let mut client_params = CertificateParams::new(vec!["switchyard-client".to_owned()])?;
        client_params
            .distinguished_name
            .push(DnType::CommonName, "switchyard-test-client");
        client_params.extended_key_usages = vec![ExtendedKeyUsagePurpose::ClientAuth];
        let client_key = KeyPair::generate()?;
        let client = client_params.signed_by(&client_key, &ca)?;

        let dir = tempfile::Builder::new()
            .prefix("switchyard-pki-")
            .tempdir()?;
        let files = [
            ("ca.pem", ca.pem()),
            ("server.pem", server.pem()),
            ("server.key", server_key.serialize_pem()),
            ("client.pem", client.pem()),
            ("client.key", client_key.serialize_pem()),
        ];
        for (name, pem) in files {
            let path = dir.path().join(name);
            std::fs::write(&path, pem).with_context(|| format!("write {}", path.display()))?;
        }
        Ok(Self {
            dir,
            ca: ca.der().clone(),
            server: server.der().clone(),
            server_key: server_key.serialize_der(),
            client: client.der().clone(),
            client_key: client_key.serialize_der(),
        })
    }

    /// The temp dir holding the PEM files.
    pub fn dir(&self) -> &Path {
        self.dir.path()
    }

    /// `ca.pem`: the CA that signed both certificates (use as `ca_file`).
    pub fn ca_pem(&self) -> PathBuf {
        self.dir.path().join("ca.pem")
    }

    /// `server.pem`: server certificate for `localhost` and `127.0.0.1`.
    pub fn server_cert(&self) -> PathBuf {
        self.dir.path().join("server.pem")
    }

    /// `server.key`: PKCS#8 key of the server certificate.
    pub fn server_key(&self) -> PathBuf {
        self.dir.path().join("server.key")
    }

    /// `client.pem`: client certificate for mTLS.
    pub fn client_cert(&self) -> PathBuf {
        self.dir.path().join("client.pem")
    }

    /// `client.key`: PKCS#8 key of the client certificate.
    pub fn client_key(&self) -> PathBuf {
        self.dir.path().join("client.key")
    }

    /// Copies the five PEM files into `dir` (e.g. the proxy's temp dir, for relative paths).
    pub fn copy_to(&self, dir: &Path) -> Result<()> {
        for name in [
            "ca.pem",
            "server.pem",
            "server.key",
            "client.pem",
            "client.key",
        ] {
            std::fs::copy(self.dir.path().join(name), dir.join(name))
                .with_context(|| format!("copy {name} to {}", dir.display()))?;
        }
        Ok(())
    }

    fn roots(&self) -> Result<RootCertStore> {
        let mut roots = RootCertStore::empty();
        roots.add(self.ca.clone())?;
        Ok(roots)
    }

    /// A server config with the server certificate, ALPN h2 and http/1.1, and, when
    /// `require_client_cert`, mandatory client certificates signed by the CA.
    pub fn server_config(&self, require_client_cert: bool) -> Result<Arc<ServerConfig>> {
        let provider = Arc::new(rustls::crypto::ring::default_provider());
        let builder = ServerConfig::builder_with_provider(provider.clone())
            .with_safe_default_protocol_versions()?;
        let builder = if require_client_cert {
            let verifier =
                WebPkiClientVerifier::builder_with_provider(Arc::new(self.roots()?), provider)
                    .build()?;
            builder.with_client_cert_verifier(verifier)
        } else {
            builder.with_no_client_auth()
        };
        let key = PrivateKeyDer::Pkcs8(PrivatePkcs8KeyDer::from(self.server_key.clone()));
        let mut config = builder.with_single_cert(vec![self.server.clone()], key)?;
        config.alpn_protocols = ALPN_H2_H1.iter().map(|p| p.to_vec()).collect();
        Ok(Arc::new(config))
    }

    /// A client config trusting only the CA, without ALPN (hyper-rustls sets it), presenting
    /// the client certificate when `with_client_cert`.
    pub fn client_config(&self, with_client_cert: bool) -> Result<ClientConfig> {
        let provider = Arc::new(rustls::crypto::ring::default_provider());
        let builder = ClientConfig::builder_with_provider(provider)
            .with_safe_default_protocol_versions()?
            .with_root_certificates(self.roots()?);
        let config = if with_client_cert {
            let key = PrivateKeyDer::Pkcs8(PrivatePkcs8KeyDer::from(self.client_key.clone()));
            builder.with_client_auth_cert(vec![self.client.clone()], key)?
        } else {
            builder.with_no_client_auth()
        };
        Ok(config)
    }
}

impl Default for TestPki {
    fn default() -> Self {
        Self::new()
    }
}
