//! TLS client configuration (rustls with the ring provider). Certificates are always
//! verified: the roots are the webpki (Mozilla) set, plus any custom roots the user adds.

use crate::error::Error;
use rustls::RootCertStore;
use rustls::pki_types::CertificateDer;
use std::sync::Arc;

/// Which certificate authorities to trust for `https` endpoints.
#[derive(Clone, Debug, Default)]
pub struct TlsRoots {
    webpki: Option<bool>,
    extra: Vec<CertificateDer<'static>>,
}

impl TlsRoots {
    /// Adds every certificate of a PEM bundle.
    pub fn add_pem(&mut self, pem: &[u8]) -> Result<(), Error> {
        let mut reader = pem;
        let mut added = 0;
        for cert in rustls_pemfile::certs(&mut reader) {
            let cert = cert.map_err(|e| Error::Config(format!("invalid PEM certificate: {e}")))?;
            self.extra.push(cert);
            added += 1;
        }
        if added == 0 {
            return Err(Error::Config("no certificate found in PEM data".into()));
        }
        Ok(())
    }

    /// Adds one DER certificate.
    pub fn add_der(&mut self, der: CertificateDer<'static>) {
        self.extra.push(der);
    }

    /// Whether to include the webpki roots (default: yes).
    pub fn set_webpki_roots(&mut self, enabled: bool) {
        self.webpki = Some(enabled);
    }

    /// Builds the rustls configuration.
    pub fn client_config(&self) -> Result<Arc<rustls::ClientConfig>, Error> {
        let mut roots = RootCertStore::empty();
        if self.webpki.unwrap_or(true) {
            roots.extend(webpki_roots::TLS_SERVER_ROOTS.iter().cloned());
        }
        for cert in &self.extra {
            roots
                .add(cert.clone())
                .map_err(|e| Error::Config(format!("invalid root certificate: {e}")))?;
        }
        let provider = Arc::new(rustls::crypto::ring::default_provider());
        let config = rustls::ClientConfig::builder_with_provider(provider)
            .with_safe_default_protocol_versions()
            .map_err(|e| Error::Config(format!("TLS configuration: {e}")))?
            .with_root_certificates(roots)
            .with_no_client_auth();
        Ok(Arc::new(config))
    }
}
