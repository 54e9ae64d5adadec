//! TLS client configuration (rustls with the ring provider). Certificates are always
//! verified: the roots are the webpki (Mozilla) set, plus any custom roots the user adds.
//!
//! Also the one place that tells a TLS refusal that no new connection can change (a refused
//! certificate) from a handshake that merely broke off ([`is_permanent_tls_failure`]).

use crate::error::{ConfigError, Error};
use rustls::pki_types::{CertificateDer, InvalidDnsNameError};
use rustls::{AlertDescription, RootCertStore};
use std::io;
use std::sync::Arc;

/// Which certificate authorities to trust for `https` endpoints.
#[derive(Clone, Debug, Default)]
pub struct TlsRoots {
    webpki: Option<bool>,
    extra: Vec<CertificateDer<'static>>,
}

impl TlsRoots {
    /// Adds every certificate of a PEM bundle.
    ///
    /// # Errors
    ///
    /// [`Error::Config`]: [`ConfigError::InvalidPem`] (the reader's error as the source)
    /// when the PEM data cannot be read, [`ConfigError::NoCertificateInPem`] when it holds
    /// no certificate. Nothing is added then.
    pub fn add_pem(&mut self, pem: &[u8]) -> Result<(), Error> {
        let mut reader = pem;
        let certs = rustls_pemfile::certs(&mut reader)
            .collect::<Result<Vec<_>, _>>()
            .map_err(|e| ConfigError::InvalidPem(Arc::new(e)))?;
        if certs.is_empty() {
            return Err(ConfigError::NoCertificateInPem.into());
        }
        self.extra.extend(certs);
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
    ///
    /// # Errors
    ///
    /// [`Error::Config`]: [`ConfigError::InvalidRootCertificate`] when rustls refuses an
    /// added root, [`ConfigError::Tls`] when it refuses the protocol versions.
    pub fn client_config(&self) -> Result<Arc<rustls::ClientConfig>, Error> {
        let mut roots = RootCertStore::empty();
        if self.webpki.unwrap_or(true) {
            roots.extend(webpki_roots::TLS_SERVER_ROOTS.iter().cloned());
        }
        for cert in &self.extra {
            roots
                .add(cert.clone())
                .map_err(ConfigError::InvalidRootCertificate)?;
        }
        let provider = Arc::new(rustls::crypto::ring::default_provider());
        let config = rustls::ClientConfig::builder_with_provider(provider)
            .with_safe_default_protocol_versions()
            .map_err(ConfigError::Tls)?
            .with_root_certificates(roots)
            .with_no_client_auth();
        Ok(Arc::new(config))
    }
}

/// Whether a failed connection attempt was refused by TLS for a reason that a new connection
/// cannot change ([`mq_proto::machine::FailureKind::Tls`]).
///
/// The runtimes report a TLS failure as the `io::Error` of the handshake whose inner error is
/// the [`rustls::Error`] (what tokio-rustls and futures-rustls do), and a host that is no
/// valid TLS server name as an `io::Error` holding [`InvalidDnsNameError`]
/// ([`crate::ConnectTarget::server_name`]). An `io::Error` without either — refused, reset,
/// end of stream during the handshake — is an ordinary, transient connection failure.
pub(crate) fn is_permanent_tls_failure(error: &io::Error) -> bool {
    for e in crate::error::io_causes(error) {
        if let Some(tls) = e.downcast_ref::<rustls::Error>() {
            return rustls_error_is_permanent(tls);
        }
        if e.is::<InvalidDnsNameError>() {
            return true;
        }
    }
    false
}

/// Whether repeating a handshake that failed with `error` against the same server and with
/// the same configuration fails again.
///
/// Transient: the local clock or random source failed, or the peer ended the handshake
/// without blaming us (`close_notify`, `user_canceled`, `internal_error`). Everything else
/// follows from the certificates and the configurations of both ends: the server's
/// certificate refused (`InvalidCertificate`: unknown issuer, wrong name, expired, not yet
/// valid, revoked, bad signature; `NoCertificatesPresented`), an incompatible or misbehaving
/// peer (`PeerIncompatible`, `PeerMisbehaved`, unexpected or malformed messages — a plain-HTTP
/// server on an https port lands here), a fatal alert blaming us (`bad_certificate`,
/// `unknown_ca`, `handshake_failure`, `protocol_version`, `certificate_required`, ...), and
/// errors rustls may add later.
fn rustls_error_is_permanent(error: &rustls::Error) -> bool {
    !matches!(
        error,
        rustls::Error::FailedToGetCurrentTime
            | rustls::Error::FailedToGetRandomBytes
            | rustls::Error::AlertReceived(
                AlertDescription::CloseNotify
                    | AlertDescription::UserCanceled
                    | AlertDescription::InternalError
            )
    )
}

#[cfg(test)]
mod tests {
    use super::*;
    use rustls::{CertificateError, PeerIncompatible, PeerMisbehaved};

    fn wrapped(e: rustls::Error) -> io::Error {
        // As tokio-rustls and futures-rustls report a failed handshake.
        io::Error::new(io::ErrorKind::InvalidData, e)
    }

    #[test]
    fn refused_certificates_and_broken_peers_are_permanent() {
        for e in [
            rustls::Error::InvalidCertificate(CertificateError::UnknownIssuer),
            rustls::Error::InvalidCertificate(CertificateError::NotValidForName),
            rustls::Error::InvalidCertificate(CertificateError::Expired),
            rustls::Error::InvalidCertificate(CertificateError::BadSignature),
            rustls::Error::InvalidCertificate(CertificateError::Revoked),
            rustls::Error::NoCertificatesPresented,
            rustls::Error::UnsupportedNameType,
            rustls::Error::PeerIncompatible(PeerIncompatible::Tls12NotOffered),
            rustls::Error::PeerMisbehaved(PeerMisbehaved::BadCertChainExtensions),
            rustls::Error::InvalidMessage(rustls::InvalidMessage::InvalidContentType),
            rustls::Error::AlertReceived(AlertDescription::BadCertificate),
            rustls::Error::AlertReceived(AlertDescription::UnknownCA),
            rustls::Error::AlertReceived(AlertDescription::HandshakeFailure),
            rustls::Error::AlertReceived(AlertDescription::ProtocolVersion),
            rustls::Error::AlertReceived(AlertDescription::CertificateRequired),
            rustls::Error::DecryptError,
        ] {
            assert!(is_permanent_tls_failure(&wrapped(e.clone())), "{e:?}");
            // Also when wrapped once more (a runtime adding context).
            let twice = io::Error::other(wrapped(e.clone()));
            assert!(is_permanent_tls_failure(&twice), "{e:?}");
        }
        let name = crate::ConnectTarget {
            host: "not a host name".into(),
            port: 443,
            tls: None,
            tunnel: None,
        }
        .server_name()
        .expect_err("invalid name");
        assert!(is_permanent_tls_failure(&name));
    }

    #[test]
    fn io_failures_and_passing_conditions_are_transient() {
        for e in [
            rustls::Error::AlertReceived(AlertDescription::CloseNotify),
            rustls::Error::AlertReceived(AlertDescription::UserCanceled),
            rustls::Error::AlertReceived(AlertDescription::InternalError),
            rustls::Error::FailedToGetRandomBytes,
            rustls::Error::FailedToGetCurrentTime,
        ] {
            assert!(!is_permanent_tls_failure(&wrapped(e.clone())), "{e:?}");
        }
        for kind in [
            io::ErrorKind::ConnectionRefused,
            io::ErrorKind::ConnectionReset,
            io::ErrorKind::UnexpectedEof,
            io::ErrorKind::TimedOut,
        ] {
            assert!(
                !is_permanent_tls_failure(&io::Error::from(kind)),
                "{kind:?}"
            );
        }
        assert!(!is_permanent_tls_failure(&io::Error::new(
            io::ErrorKind::UnexpectedEof,
            "tls handshake eof"
        )));
        assert!(!is_permanent_tls_failure(&io::Error::other(
            "failed to lookup address information"
        )));
    }
}
