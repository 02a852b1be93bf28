//! HTTPS and WSS: the certificate chain and the private key, PEM files read with rustls (its
//! ring provider), checked at start-up so that a bad file stops the server with a clear error.

use crate::config::TlsFiles;
use anyhow::Context;
use rustls::pki_types::pem::PemObject;
use rustls::pki_types::{CertificateDer, PrivateKeyDer};
use std::sync::Arc;
use tokio_rustls::TlsAcceptor;

/// The TLS acceptor of `files`, or why they do not make one.
pub(crate) fn acceptor(files: &TlsFiles) -> anyhow::Result<TlsAcceptor> {
    let cert_path = files.cert.display();
    let certs = CertificateDer::pem_file_iter(&files.cert)
        .with_context(|| format!("cannot read the web TLS certificate {cert_path}"))?
        .collect::<Result<Vec<_>, _>>()
        .with_context(|| format!("bad PEM in the web TLS certificate {cert_path}"))?;
    anyhow::ensure!(
        !certs.is_empty(),
        "no certificate in the web TLS certificate file {cert_path}"
    );
    let key_path = files.key.display();
    let key = PrivateKeyDer::from_pem_file(&files.key)
        .with_context(|| format!("cannot read a private key from {key_path}"))?;
    let provider = Arc::new(rustls::crypto::ring::default_provider());
    let config = rustls::ServerConfig::builder_with_provider(provider)
        .with_safe_default_protocol_versions()
        .context("TLS has no protocol version")?
        .with_no_client_auth()
        .with_single_cert(certs, key)
        .with_context(|| {
            format!("the web TLS key {key_path} does not go with the certificate {cert_path}")
        })?;
    Ok(TlsAcceptor::from(Arc::new(config)))
}
