//! TLS with rustls (ring provider; no OpenSSL): the listeners' server configs (optionally
//! requiring client certificates), the carbon outputs' client config, and [`Conn`], a TCP
//! connection with or without TLS on it.
//!
//! Certificates and keys are PEM files read when a listener or output is built. A reload
//! (SIGHUP) compares the files' contents ([`files_fingerprint`]), so renewed certificates
//! take effect without a restart of the gateway.

use std::{
    io,
    pin::Pin,
    sync::Arc,
    task::{Context, Poll},
};

use futures::FutureExt;
use rustls::{
    crypto::CryptoProvider,
    pki_types::{pem::PemObject, CertificateDer, PrivateKeyDer},
    server::WebPkiClientVerifier,
    ClientConfig, RootCertStore, ServerConfig,
};
use tokio::{
    io::{AsyncRead, AsyncReadExt, AsyncWrite, ReadBuf},
    net::TcpStream,
};

/// The one crypto provider, named explicitly so that no process-wide default is needed.
fn provider() -> Arc<CryptoProvider> {
    Arc::new(rustls::crypto::ring::default_provider())
}

/// Every certificate of a PEM file.
pub fn load_certs(path: &str) -> Result<Vec<CertificateDer<'static>>, String> {
    let certs = CertificateDer::pem_file_iter(path)
        .and_then(|it| it.collect::<Result<Vec<_>, _>>())
        .map_err(|e| format!("cannot read certificates from {path}: {e}"))?;
    if certs.is_empty() {
        return Err(format!("{path} holds no PEM certificate"));
    }
    Ok(certs)
}

/// The first private key (PKCS#8, PKCS#1 or SEC1) of a PEM file.
pub fn load_key(path: &str) -> Result<PrivateKeyDer<'static>, String> {
    PrivateKeyDer::from_pem_file(path)
        .map_err(|e| format!("cannot read a private key from {path}: {e}"))
}

fn roots(path: &str) -> Result<RootCertStore, String> {
    let mut store = RootCertStore::empty();
    for cert in load_certs(path)? {
        store
            .add(cert)
            .map_err(|e| format!("{path}: not a usable CA certificate: {e}"))?;
    }
    Ok(store)
}

/// A listener's server config for `tls_cert` + `tls_key` (+ `tls_client_ca`: clients must
/// present a certificate that chains to one of its CAs); `None` when TLS is off. `alpn` is
/// offered to clients (`http/1.1` on the HTTP listener).
pub fn server_config(
    cert: Option<&str>,
    key: Option<&str>,
    client_ca: Option<&str>,
    alpn: &[&[u8]],
) -> Result<Option<Arc<ServerConfig>>, String> {
    let (cert, key) = match (cert, key, client_ca) {
        (None, None, None) => return Ok(None),
        (Some(c), Some(k), _) => (c, k),
        (_, _, _) => {
            return Err("TLS needs both tls_cert and tls_key (tls_client_ca only with them)".into())
        }
    };
    let chain = load_certs(cert)?;
    let key = load_key(key)?;
    let builder = ServerConfig::builder_with_provider(provider())
        .with_safe_default_protocol_versions()
        .map_err(|e| e.to_string())?;
    let builder = match client_ca {
        Some(ca) => {
            let verifier =
                WebPkiClientVerifier::builder_with_provider(Arc::new(roots(ca)?), provider())
                    .build()
                    .map_err(|e| format!("tls_client_ca {ca}: {e}"))?;
            builder.with_client_cert_verifier(verifier)
        }
        None => builder.with_no_client_auth(),
    };
    let mut config = builder
        .with_single_cert(chain, key)
        .map_err(|e| format!("tls_cert {cert} / tls_key: {e}"))?;
    config.alpn_protocols = alpn.iter().map(|p| p.to_vec()).collect();
    Ok(Some(Arc::new(config)))
}

/// A client config trusting the CAs of `ca` (a PEM file), or the system's when `None`.
pub fn client_config(ca: Option<&str>) -> Result<Arc<ClientConfig>, String> {
    let store = match ca {
        Some(path) => roots(path)?,
        None => {
            let found = rustls_native_certs::load_native_certs();
            let mut store = RootCertStore::empty();
            let (added, _ignored) = store.add_parsable_certificates(found.certs);
            if added == 0 {
                return Err(format!(
                    "no usable CA certificate in the system store (set tls_ca): {:?}",
                    found.errors
                ));
            }
            store
        }
    };
    let config = ClientConfig::builder_with_provider(provider())
        .with_safe_default_protocol_versions()
        .map_err(|e| e.to_string())?
        .with_root_certificates(store)
        .with_no_client_auth();
    Ok(Arc::new(config))
}

/// TLS to one carbon destination: who to trust, and the name its certificate must carry.
#[derive(Clone)]
pub struct ClientTls {
    connector: tokio_rustls::TlsConnector,
    server_name: rustls::pki_types::ServerName<'static>,
}

impl std::fmt::Debug for ClientTls {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("ClientTls")
            .field("server_name", &self.server_name)
            .finish()
    }
}

impl ClientTls {
    /// `ca`: PEM file of the CAs to trust (else the system's); `server_name`: what the
    /// certificate is checked against.
    pub fn new(ca: Option<&str>, server_name: &str) -> Result<Self, String> {
        let server_name = rustls::pki_types::ServerName::try_from(server_name.to_owned())
            .map_err(|e| format!("server name {server_name:?}: {e}"))?;
        Ok(Self {
            connector: tokio_rustls::TlsConnector::from(client_config(ca)?),
            server_name,
        })
    }

    /// The TLS handshake over a connected socket.
    pub async fn connect(&self, tcp: TcpStream) -> io::Result<Conn> {
        let s = self
            .connector
            .connect(self.server_name.clone(), tcp)
            .await?;
        Ok(Conn::Client(Box::new(s)))
    }
}

/// A digest of the files' contents (a missing file counts as its error), so a reload can
/// tell a renewed certificate from an unchanged one.
pub fn files_fingerprint<'a>(paths: impl IntoIterator<Item = Option<&'a str>>) -> String {
    let mut ctx = ring::digest::Context::new(&ring::digest::SHA256);
    for path in paths.into_iter().flatten() {
        ctx.update(path.as_bytes());
        ctx.update(&[0]);
        match std::fs::read(path) {
            Ok(bytes) => ctx.update(&bytes),
            Err(e) => ctx.update(e.to_string().as_bytes()),
        }
        ctx.update(&[0]);
    }
    hex(ctx.finish().as_ref())
}

/// A digest of strings (secrets compared on reload without keeping them in a fingerprint).
pub fn digest_strings<'a>(items: impl IntoIterator<Item = Option<&'a str>>) -> String {
    let mut ctx = ring::digest::Context::new(&ring::digest::SHA256);
    for item in items.into_iter().flatten() {
        ctx.update(item.as_bytes());
        ctx.update(&[0]);
    }
    hex(ctx.finish().as_ref())
}

fn hex(bytes: &[u8]) -> String {
    bytes.iter().map(|b| format!("{b:02x}")).collect()
}

/// A TCP connection, with TLS on it or not.
#[derive(Debug)]
pub enum Conn {
    Plain(TcpStream),
    Server(Box<tokio_rustls::server::TlsStream<TcpStream>>),
    Client(Box<tokio_rustls::client::TlsStream<TcpStream>>),
}

impl Conn {
    /// Reads what is already there without waiting: `Ok(0)` at EOF, `WouldBlock` when there
    /// is nothing (for the drain at a stop).
    pub fn try_read_buf(&mut self, buf: &mut bytes::BytesMut) -> io::Result<usize> {
        match self {
            Conn::Plain(s) => s.try_read_buf(buf),
            _ => match self.read_buf(buf).now_or_never() {
                Some(r) => r,
                None => Err(io::ErrorKind::WouldBlock.into()),
            },
        }
    }

    /// The TCP stream when the connection is not TLS: its readiness can then be waited for
    /// without a buffer (over TLS, a readable socket may hold no data yet).
    pub fn plain(&self) -> Option<&TcpStream> {
        match self {
            Conn::Plain(s) => Some(s),
            _ => None,
        }
    }

    /// Whether the peer has closed (or reset) the connection, or sent something. carbon
    /// never sends anything, so readable data or EOF both mean the connection is not the one
    /// to write into. Over TLS, records without data (session tickets) are consumed here.
    pub fn peer_closed(&mut self) -> bool {
        let mut probe = [0u8; 64];
        match self {
            Conn::Plain(s) => match s.try_read(&mut probe) {
                Ok(_) => true,
                Err(e) => e.kind() != io::ErrorKind::WouldBlock,
            },
            _ => self.read(&mut probe).now_or_never().is_some(),
        }
    }
}

impl AsyncRead for Conn {
    fn poll_read(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &mut ReadBuf<'_>,
    ) -> Poll<io::Result<()>> {
        match self.get_mut() {
            Conn::Plain(s) => Pin::new(s).poll_read(cx, buf),
            // Most senders close without a TLS close_notify; for a stream of lines or
            // frames, that is an end like any other (a cut line or frame is still cut).
            Conn::Server(s) => match Pin::new(s.as_mut()).poll_read(cx, buf) {
                Poll::Ready(Err(e)) if e.kind() == io::ErrorKind::UnexpectedEof => {
                    Poll::Ready(Ok(()))
                }
                other => other,
            },
            Conn::Client(s) => Pin::new(s.as_mut()).poll_read(cx, buf),
        }
    }
}

impl AsyncWrite for Conn {
    fn poll_write(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &[u8],
    ) -> Poll<io::Result<usize>> {
        match self.get_mut() {
            Conn::Plain(s) => Pin::new(s).poll_write(cx, buf),
            Conn::Server(s) => Pin::new(s.as_mut()).poll_write(cx, buf),
            Conn::Client(s) => Pin::new(s.as_mut()).poll_write(cx, buf),
        }
    }

    fn poll_flush(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        match self.get_mut() {
            Conn::Plain(s) => Pin::new(s).poll_flush(cx),
            Conn::Server(s) => Pin::new(s.as_mut()).poll_flush(cx),
            Conn::Client(s) => Pin::new(s.as_mut()).poll_flush(cx),
        }
    }

    fn poll_shutdown(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        match self.get_mut() {
            Conn::Plain(s) => Pin::new(s).poll_shutdown(cx),
            Conn::Server(s) => Pin::new(s.as_mut()).poll_shutdown(cx),
            Conn::Client(s) => Pin::new(s.as_mut()).poll_shutdown(cx),
        }
    }

    fn poll_write_vectored(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        bufs: &[io::IoSlice<'_>],
    ) -> Poll<io::Result<usize>> {
        match self.get_mut() {
            Conn::Plain(s) => Pin::new(s).poll_write_vectored(cx, bufs),
            Conn::Server(s) => Pin::new(s.as_mut()).poll_write_vectored(cx, bufs),
            Conn::Client(s) => Pin::new(s.as_mut()).poll_write_vectored(cx, bufs),
        }
    }

    fn is_write_vectored(&self) -> bool {
        match self {
            Conn::Plain(s) => s.is_write_vectored(),
            Conn::Server(s) => s.is_write_vectored(),
            Conn::Client(s) => s.is_write_vectored(),
        }
    }
}
