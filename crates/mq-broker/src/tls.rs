//! TLS for the broker's listener (`mq-broker --tls-cert CHAIN.pem --tls-key KEY.pem`):
//! rustls with the ring provider, TLS 1.2 and 1.3, ALPN `http/1.1`.
//!
//! The handshake runs inside each connection's task, driven by the first read of the HTTP
//! server, so it is bounded by the header read timeout ([`crate::Limits::header_read_timeout`]):
//! a client that stalls its handshake holds one connection slot for at most that long and
//! never blocks the accept loop. A failed handshake closes the connection.
//!
//! ```
//! use mq_broker::TlsConfig;
//! let key = rcgen::KeyPair::generate()?;
//! let cert = rcgen::CertificateParams::new(vec!["localhost".to_owned()])?.self_signed(&key)?;
//! let tls = TlsConfig::from_pem(cert.pem().as_bytes(), key.serialize_pem().as_bytes())?;
//! assert_eq!(format!("{tls:?}"), "TlsConfig { .. }");
//! assert!(TlsConfig::from_pem(b"", key.serialize_pem().as_bytes()).is_err());
//! # Ok::<(), Box<dyn std::error::Error>>(())
//! ```

use std::fmt;
use std::future::Future;
use std::io;
use std::path::{Path, PathBuf};
use std::pin::Pin;
use std::sync::Arc;
use std::task::{Context, Poll};

use tokio::io::{AsyncRead, AsyncWrite, ReadBuf};
use tokio::net::TcpStream;
use tokio_rustls::TlsAcceptor;

/// Why a certificate or key could not be used.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum TlsError {
    /// A file could not be read.
    #[error("reading {path}: {source}")]
    Read {
        /// The file.
        path: PathBuf,
        /// The I/O error.
        #[source]
        source: io::Error,
    },
    /// The PEM data could not be parsed.
    #[error("invalid PEM in the {what}: {source}")]
    Pem {
        /// `certificate chain` or `private key`.
        what: &'static str,
        /// The parse error.
        #[source]
        source: io::Error,
    },
    /// The certificate PEM holds no certificate.
    #[error("no certificate found in the certificate PEM")]
    NoCertificate,
    /// The key PEM holds no private key.
    #[error("no private key found in the key PEM")]
    NoKey,
    /// rustls refused the chain or the key (e.g. they do not match).
    #[error("the certificate chain and key are not usable: {0}")]
    Rustls(#[from] rustls::Error),
}

/// A certificate chain and private key, ready to serve TLS. Its `Debug` output shows
/// nothing of the key.
#[derive(Clone)]
pub struct TlsConfig {
    acceptor: TlsAcceptor,
}

impl fmt::Debug for TlsConfig {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("TlsConfig").finish_non_exhaustive()
    }
}

impl TlsConfig {
    /// A configuration from a PEM certificate chain (leaf first) and a PEM private key
    /// (PKCS#8, PKCS#1 or SEC1).
    ///
    /// # Errors
    ///
    /// [`TlsError::Pem`] for unreadable PEM, [`TlsError::NoCertificate`] /
    /// [`TlsError::NoKey`] when either is missing, [`TlsError::Rustls`] when rustls refuses
    /// the chain or key.
    pub fn from_pem(cert_chain_pem: &[u8], key_pem: &[u8]) -> Result<Self, TlsError> {
        let chain = rustls_pemfile::certs(&mut &cert_chain_pem[..])
            .collect::<Result<Vec<_>, _>>()
            .map_err(|source| TlsError::Pem {
                what: "certificate chain",
                source,
            })?;
        if chain.is_empty() {
            return Err(TlsError::NoCertificate);
        }
        let key = rustls_pemfile::private_key(&mut &key_pem[..])
            .map_err(|source| TlsError::Pem {
                what: "private key",
                source,
            })?
            .ok_or(TlsError::NoKey)?;
        let provider = Arc::new(rustls::crypto::ring::default_provider());
        let mut config = rustls::ServerConfig::builder_with_provider(provider)
            .with_safe_default_protocol_versions()?
            .with_no_client_auth()
            .with_single_cert(chain, key)?;
        config.alpn_protocols = vec![b"http/1.1".to_vec()];
        Ok(Self {
            acceptor: TlsAcceptor::from(Arc::new(config)),
        })
    }

    /// [`TlsConfig::from_pem`] with the contents of two files.
    ///
    /// # Errors
    ///
    /// [`TlsError::Read`] when a file cannot be read, then as [`from_pem`](Self::from_pem).
    pub fn from_files(cert_chain: &Path, key: &Path) -> Result<Self, TlsError> {
        let read = |path: &Path| {
            std::fs::read(path).map_err(|source| TlsError::Read {
                path: path.to_owned(),
                source,
            })
        };
        Self::from_pem(&read(cert_chain)?, &read(key)?)
    }
}

/// A server connection: plain TCP, or TLS whose handshake is driven by the first reads and
/// writes.
pub(crate) enum ServerIo {
    Plain(TcpStream),
    Handshake(Box<tokio_rustls::Accept<TcpStream>>),
    Tls(Box<tokio_rustls::server::TlsStream<TcpStream>>),
    Failed,
}

impl ServerIo {
    /// Wraps an accepted stream; with `tls`, the handshake starts on first use.
    pub(crate) fn new(stream: TcpStream, tls: Option<&TlsConfig>) -> Self {
        match tls {
            Some(tls) => Self::Handshake(Box::new(tls.acceptor.accept(stream))),
            None => Self::Plain(stream),
        }
    }

    /// Drives the handshake, if one is under way.
    fn poll_handshake(&mut self, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        if let Self::Handshake(accept) = self {
            match Pin::new(accept.as_mut()).poll(cx) {
                Poll::Ready(Ok(stream)) => *self = Self::Tls(Box::new(stream)),
                Poll::Ready(Err(e)) => {
                    tracing::debug!(error = %e, "TLS handshake failed");
                    *self = Self::Failed;
                    return Poll::Ready(Err(e));
                }
                Poll::Pending => return Poll::Pending,
            }
        }
        Poll::Ready(Ok(()))
    }
}

fn failed() -> io::Error {
    io::Error::new(io::ErrorKind::NotConnected, "the TLS handshake failed")
}

impl AsyncRead for ServerIo {
    fn poll_read(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &mut ReadBuf<'_>,
    ) -> Poll<io::Result<()>> {
        let this = self.get_mut();
        match this.poll_handshake(cx) {
            Poll::Ready(Ok(())) => {}
            not_ready => return not_ready,
        }
        match this {
            Self::Plain(s) => Pin::new(s).poll_read(cx, buf),
            Self::Tls(s) => Pin::new(s.as_mut()).poll_read(cx, buf),
            Self::Handshake(_) | Self::Failed => Poll::Ready(Err(failed())),
        }
    }
}

impl AsyncWrite for ServerIo {
    fn poll_write(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &[u8],
    ) -> Poll<io::Result<usize>> {
        let this = self.get_mut();
        match this.poll_handshake(cx) {
            Poll::Ready(Ok(())) => {}
            Poll::Ready(Err(e)) => return Poll::Ready(Err(e)),
            Poll::Pending => return Poll::Pending,
        }
        match this {
            Self::Plain(s) => Pin::new(s).poll_write(cx, buf),
            Self::Tls(s) => Pin::new(s.as_mut()).poll_write(cx, buf),
            Self::Handshake(_) | Self::Failed => Poll::Ready(Err(failed())),
        }
    }

    fn poll_write_vectored(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        bufs: &[io::IoSlice<'_>],
    ) -> Poll<io::Result<usize>> {
        let this = self.get_mut();
        match this.poll_handshake(cx) {
            Poll::Ready(Ok(())) => {}
            Poll::Ready(Err(e)) => return Poll::Ready(Err(e)),
            Poll::Pending => return Poll::Pending,
        }
        match this {
            Self::Plain(s) => Pin::new(s).poll_write_vectored(cx, bufs),
            Self::Tls(s) => Pin::new(s.as_mut()).poll_write_vectored(cx, bufs),
            Self::Handshake(_) | Self::Failed => Poll::Ready(Err(failed())),
        }
    }

    fn is_write_vectored(&self) -> bool {
        match self {
            Self::Plain(s) => s.is_write_vectored(),
            Self::Tls(s) => s.is_write_vectored(),
            Self::Handshake(_) | Self::Failed => false,
        }
    }

    fn poll_flush(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        match self.get_mut() {
            Self::Plain(s) => Pin::new(s).poll_flush(cx),
            Self::Tls(s) => Pin::new(s.as_mut()).poll_flush(cx),
            // Nothing of the HTTP layer was written yet.
            Self::Handshake(_) | Self::Failed => Poll::Ready(Ok(())),
        }
    }

    fn poll_shutdown(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        match self.get_mut() {
            Self::Plain(s) => Pin::new(s).poll_shutdown(cx),
            Self::Tls(s) => Pin::new(s.as_mut()).poll_shutdown(cx),
            Self::Handshake(accept) => match accept.get_mut() {
                Some(s) => Pin::new(s).poll_shutdown(cx),
                None => Poll::Ready(Ok(())),
            },
            Self::Failed => Poll::Ready(Ok(())),
        }
    }
}
