//! TLS for kinema's servers, by rustls: the server configuration the
//! connection layer's `serve` takes as a [`TlsAcceptor`].
//!
//! - Certificates come from PEM files (a chain and its private key; ECDSA or
//!   RSA, PKCS#8, PKCS#1 or SEC1) or are made on the spot for local use
//!   ([`ServerTls::self_signed`], by rcgen).
//! - ALPN offers `h2` then `http/1.1`, so the connection layer can pick the
//!   protocol from the handshake.
//! - Resumption: TLS 1.3 stateless tickets (rustls's rotating ticketer) and a
//!   session cache for TLS 1.2 session ids, so a returning viewer skips the
//!   public-key operations.
//! - [`ServerTls::reload`] re-reads the files and swaps the certificate the
//!   resolver hands to *new* handshakes; established connections keep the
//!   keys they negotiated and are not dropped. [`ServerTls::reload_on_sighup`]
//!   wires that to SIGHUP. A reload that fails keeps the old certificate.
//!
//! - [`Hsts`] adds `Strict-Transport-Security` to a TLS service's responses;
//!   [`RedirectToHttps`] is the service of an optional plain-HTTP listener
//!   that sends every request to the HTTPS one.
//!
//! This module does not accept connections; the server loop does.

use std::fmt;
use std::path::{Path, PathBuf};
use std::sync::{Arc, RwLock};

use rustls::crypto::CryptoProvider;
use rustls::pki_types::pem::PemObject;
use rustls::pki_types::{CertificateDer, PrivateKeyDer};
use rustls::server::{ClientHello, ResolvesServerCert, ServerConfig, ServerSessionMemoryCache};
use rustls::sign::CertifiedKey;
use tokio_rustls::TlsAcceptor;

use crate::{ConnectionInfo, Handler, RequestBody, ResponseBody};

/// ALPN protocol ids offered, most preferred first (RFC 7301, RFC 9113 §3.2).
pub const ALPN_PROTOCOLS: [&[u8]; 2] = [b"h2", b"http/1.1"];

/// TLS 1.2 sessions remembered for resumption by session id. TLS 1.3
/// resumption uses stateless tickets and needs no server memory.
const SESSION_CACHE_ENTRIES: usize = 16 * 1024;

#[derive(Debug, thiserror::Error)]
pub enum TlsError {
    #[error("cannot read {}: {source}", path.display())]
    Read {
        path: PathBuf,
        source: std::io::Error,
    },
    #[error("{} holds no PEM certificate (expected -----BEGIN CERTIFICATE-----)", path.display())]
    NoCertificate { path: PathBuf },
    #[error("{} is not valid PEM: {message}", path.display())]
    BadPem { path: PathBuf, message: String },
    #[error(
        "{} holds no PEM private key (expected PRIVATE KEY, RSA PRIVATE KEY or EC PRIVATE KEY)",
        path.display()
    )]
    NoKey { path: PathBuf },
    #[error("private key {} cannot be used: {message}", path.display())]
    BadKey { path: PathBuf, message: String },
    #[error("private key {} does not belong to certificate {}", key.display(), cert.display())]
    KeyMismatch { cert: PathBuf, key: PathBuf },
    #[error("cannot make a self-signed certificate: {0}")]
    SelfSigned(String),
    #[error("cannot build the tls configuration: {0}")]
    Config(String),
}

/// Where the certificate comes from, so `reload` knows what to re-read.
#[derive(Debug, Clone)]
enum CertificateSource {
    Files { cert: PathBuf, key: PathBuf },
    SelfSigned,
}

/// Hands every new handshake the current certificate; `reload` swaps it.
struct SwappableCertificate {
    current: RwLock<Arc<CertifiedKey>>,
}

impl fmt::Debug for SwappableCertificate {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("SwappableCertificate")
    }
}

impl ResolvesServerCert for SwappableCertificate {
    fn resolve(&self, _client_hello: ClientHello<'_>) -> Option<Arc<CertifiedKey>> {
        // A read lock held for one Arc clone: uncontended except for the
        // instant of a reload. A poisoned lock still holds a whole Arc.
        let current = match self.current.read() {
            Ok(guard) => guard,
            Err(poisoned) => poisoned.into_inner(),
        };
        Some(Arc::clone(&current))
    }
}

/// A server's TLS setup: the rustls configuration and the certificate that
/// can be swapped under it.
#[derive(Debug, Clone)]
pub struct ServerTls {
    config: Arc<ServerConfig>,
    certificate: Arc<SwappableCertificate>,
    source: CertificateSource,
}

fn provider() -> Arc<CryptoProvider> {
    // Named explicitly rather than the process default, so the choice does
    // not depend on which rustls features other crates switch on.
    Arc::new(rustls::crypto::ring::default_provider())
}

impl ServerTls {
    /// Loads a PEM certificate chain (leaf first) and its PEM private key.
    pub fn from_pem_files(cert: &Path, key: &Path) -> Result<Self, TlsError> {
        let certified = load_certified_key(cert, key)?;
        Self::build(
            certified,
            CertificateSource::Files {
                cert: cert.to_path_buf(),
                key: key.to_path_buf(),
            },
        )
    }

    /// Makes a self-signed ECDSA P-256 certificate for `hosts` (DNS names or
    /// IP addresses). For local use only: no client trusts it unless told to.
    /// Returns the configuration and the certificate in PEM, so a caller can
    /// hand it to a client (`curl --cacert`).
    pub fn self_signed(hosts: &[String]) -> Result<(Self, String), TlsError> {
        let generated = rcgen::generate_simple_self_signed(hosts.to_vec())
            .map_err(|error| TlsError::SelfSigned(error.to_string()))?;
        let cert_pem = generated.cert.pem();
        let key = PrivateKeyDer::Pkcs8(generated.key_pair.serialize_der().into());
        let certified =
            CertifiedKey::from_der(vec![generated.cert.der().clone()], key, &provider())
                .map_err(|error| TlsError::SelfSigned(error.to_string()))?;
        let tls = Self::build(certified, CertificateSource::SelfSigned)?;
        Ok((tls, cert_pem))
    }

    fn build(certified: CertifiedKey, source: CertificateSource) -> Result<Self, TlsError> {
        let certificate = Arc::new(SwappableCertificate {
            current: RwLock::new(Arc::new(certified)),
        });
        let mut config = ServerConfig::builder_with_provider(provider())
            .with_safe_default_protocol_versions()
            .map_err(|error| TlsError::Config(error.to_string()))?
            .with_no_client_auth()
            .with_cert_resolver(certificate.clone());
        config.alpn_protocols = ALPN_PROTOCOLS.iter().map(|id| id.to_vec()).collect();
        config.session_storage = ServerSessionMemoryCache::new(SESSION_CACHE_ENTRIES);
        config.ticketer = rustls::crypto::ring::Ticketer::new()
            .map_err(|error| TlsError::Config(error.to_string()))?;
        // One ticket per handshake is enough for a player that reconnects;
        // each extra ticket is an extra encryption on every handshake.
        config.send_tls13_tickets = 1;
        Ok(Self {
            config: Arc::new(config),
            certificate,
            source,
        })
    }

    /// The rustls configuration (shared; cheap to clone).
    pub fn server_config(&self) -> Arc<ServerConfig> {
        Arc::clone(&self.config)
    }

    /// An acceptor for the connection layer.
    pub fn acceptor(&self) -> TlsAcceptor {
        TlsAcceptor::from(self.server_config())
    }

    /// The leaf certificate new handshakes are served, in DER.
    pub fn current_certificate(&self) -> CertificateDer<'static> {
        let current = match self.certificate.current.read() {
            Ok(guard) => guard,
            Err(poisoned) => poisoned.into_inner(),
        };
        current.cert[0].clone()
    }

    /// Re-reads the certificate files; new handshakes get the new
    /// certificate, open connections are untouched. On error the old
    /// certificate stays in service. A self-signed setup has nothing to
    /// re-read and keeps its certificate.
    pub fn reload(&self) -> Result<(), TlsError> {
        let CertificateSource::Files { cert, key } = &self.source else {
            return Ok(());
        };
        let certified = Arc::new(load_certified_key(cert, key)?);
        let mut current = match self.certificate.current.write() {
            Ok(guard) => guard,
            Err(poisoned) => poisoned.into_inner(),
        };
        *current = certified;
        Ok(())
    }

    /// Reloads the certificate every time the process gets SIGHUP, logging
    /// the outcome, until the returned task is aborted. Must be called
    /// inside a tokio runtime; the handler is installed before this returns,
    /// so a SIGHUP sent afterwards never kills the process.
    pub fn reload_on_sighup(&self) -> std::io::Result<tokio::task::JoinHandle<()>> {
        use tokio::signal::unix::{SignalKind, signal};
        let mut hangups = signal(SignalKind::hangup())?;
        let tls = self.clone();
        Ok(tokio::spawn(async move {
            while hangups.recv().await.is_some() {
                // File reads are small; still, keep them off the reactor.
                let reloading = tls.clone();
                match tokio::task::spawn_blocking(move || reloading.reload()).await {
                    Ok(Ok(())) => tracing::info!("tls certificate reloaded"),
                    Ok(Err(error)) => {
                        tracing::error!(%error, "tls certificate reload failed; keeping the old one")
                    }
                    Err(error) => tracing::error!(%error, "tls certificate reload panicked"),
                }
            }
        }))
    }
}

/// Wraps a service so every response over TLS carries
/// `Strict-Transport-Security` (RFC 6797 §7.2: never over plain HTTP).
#[derive(Debug)]
pub struct Hsts<H> {
    inner: Arc<H>,
    value: http::HeaderValue,
}

impl<H: Handler> Hsts<H> {
    /// `max_age` is how long browsers remember to use HTTPS only.
    pub fn new(inner: Arc<H>, max_age: std::time::Duration) -> Self {
        let value = http::HeaderValue::from_str(&format!("max-age={}", max_age.as_secs()))
            .expect("digits are a valid header value");
        Self { inner, value }
    }
}

impl<H: Handler> Handler for Hsts<H> {
    async fn handle(
        &self,
        request: http::Request<RequestBody>,
        connection: ConnectionInfo,
    ) -> http::Response<ResponseBody> {
        let mut response = self.inner.handle(request, connection).await;
        if connection.secure {
            response
                .headers_mut()
                .insert(http::header::STRICT_TRANSPORT_SECURITY, self.value.clone());
        }
        response
    }
}

/// The service of a plain-HTTP listener next to an HTTPS one: answers every
/// request with a permanent redirect to the same host, path and query on
/// the HTTPS port. 308 rather than 301 so a POST stays a POST (RFC 9110
/// §15.4.9).
#[derive(Debug, Clone)]
pub struct RedirectToHttps {
    https_port: u16,
}

impl RedirectToHttps {
    pub fn new(https_port: u16) -> Self {
        Self { https_port }
    }

    /// Where a request for `authority` and `path_and_query` goes; `None`
    /// when the request names no usable host.
    pub fn location(&self, host: &str, path_and_query: &str) -> Option<String> {
        let host = strip_port(host)?;
        let path = if path_and_query.starts_with('/') {
            path_and_query
        } else {
            "/"
        };
        Some(if self.https_port == 443 {
            format!("https://{host}{path}")
        } else {
            format!("https://{host}:{}{path}", self.https_port)
        })
    }
}

/// The host of a `Host` header or URI authority without its port, checked
/// to be a plausible host name or IP literal so that nothing else can be
/// reflected into a `Location` header.
fn strip_port(authority: &str) -> Option<&str> {
    let host = if authority.starts_with('[') {
        // An IPv6 literal: "[::1]" or "[::1]:8080".
        let end = authority.find(']')?;
        let (host, rest) = authority.split_at(end + 1);
        if !(rest.is_empty()
            || rest[1..].bytes().all(|b| b.is_ascii_digit()) && rest.starts_with(':'))
        {
            return None;
        }
        host
    } else {
        match authority.rsplit_once(':') {
            Some((host, port)) if port.bytes().all(|b| b.is_ascii_digit()) => host,
            Some(_) => return None,
            None => authority,
        }
    };
    let plausible = !host.is_empty()
        && host.len() <= 255
        && host.bytes().all(|b| {
            b.is_ascii_alphanumeric() || matches!(b, b'.' | b'-' | b'_' | b'[' | b']' | b':')
        });
    plausible.then_some(host)
}

impl Handler for RedirectToHttps {
    async fn handle(
        &self,
        request: http::Request<RequestBody>,
        connection: ConnectionInfo,
    ) -> http::Response<ResponseBody> {
        let host = request
            .uri()
            .authority()
            .map(|authority| authority.as_str().to_string())
            .or_else(|| {
                request
                    .headers()
                    .get(http::header::HOST)
                    .and_then(|value| value.to_str().ok())
                    .map(str::to_string)
            })
            .unwrap_or_else(|| match connection.local.ip() {
                std::net::IpAddr::V4(v4) => v4.to_string(),
                std::net::IpAddr::V6(v6) => format!("[{v6}]"),
            });
        let path = request
            .uri()
            .path_and_query()
            .map_or("/", |path| path.as_str());
        let mut response = http::Response::new(ResponseBody::Empty);
        match self
            .location(&host, path)
            .and_then(|location| http::HeaderValue::from_str(&location).ok())
        {
            Some(location) => {
                *response.status_mut() = http::StatusCode::PERMANENT_REDIRECT;
                response
                    .headers_mut()
                    .insert(http::header::LOCATION, location);
            }
            None => *response.status_mut() = http::StatusCode::BAD_REQUEST,
        }
        response
            .headers_mut()
            .insert(http::header::CONTENT_LENGTH, http::HeaderValue::from(0));
        response
    }
}

fn read_file(path: &Path) -> Result<Vec<u8>, TlsError> {
    std::fs::read(path).map_err(|source| TlsError::Read {
        path: path.to_path_buf(),
        source,
    })
}

fn load_certified_key(cert_path: &Path, key_path: &Path) -> Result<CertifiedKey, TlsError> {
    let cert_pem = read_file(cert_path)?;
    let chain = CertificateDer::pem_slice_iter(&cert_pem)
        .collect::<Result<Vec<_>, _>>()
        .map_err(|error| TlsError::BadPem {
            path: cert_path.to_path_buf(),
            message: error.to_string(),
        })?;
    if chain.is_empty() {
        return Err(TlsError::NoCertificate {
            path: cert_path.to_path_buf(),
        });
    }
    let key_pem = read_file(key_path)?;
    let key = PrivateKeyDer::from_pem_slice(&key_pem).map_err(|error| match error {
        rustls::pki_types::pem::Error::NoItemsFound => TlsError::NoKey {
            path: key_path.to_path_buf(),
        },
        other => TlsError::BadPem {
            path: key_path.to_path_buf(),
            message: other.to_string(),
        },
    })?;
    CertifiedKey::from_der(chain, key, &provider()).map_err(|error| match error {
        rustls::Error::InconsistentKeys(_) => TlsError::KeyMismatch {
            cert: cert_path.to_path_buf(),
            key: key_path.to_path_buf(),
        },
        other => TlsError::BadKey {
            path: key_path.to_path_buf(),
            message: other.to_string(),
        },
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    use rustls::client::ClientConfig;
    use rustls::pki_types::ServerName;
    use rustls::{HandshakeKind, RootCertStore};
    use tokio::io::{AsyncReadExt, AsyncWriteExt};
    use tokio::net::{TcpListener, TcpStream};
    use tokio_rustls::TlsConnector;
    use tokio_rustls::client::TlsStream;

    /// A 2048-bit RSA key and a certificate for `localhost` and 127.0.0.1
    /// valid until 2125, made once with
    /// `openssl req -x509 -newkey rsa:2048 -nodes -days 36500 -subj /CN=localhost
    ///  -addext subjectAltName=DNS:localhost,IP:127.0.0.1 -addext basicConstraints=critical,CA:FALSE`
    /// (plus serverAuth key usages), because rcgen (on
    /// ring) cannot generate RSA keys.
    const RSA_CERT: &str = include_str!("tls_test_rsa.crt");
    const RSA_KEY: &str = include_str!("tls_test_rsa.key");

    fn ecdsa_pair(host: &str) -> (String, String) {
        let generated = rcgen::generate_simple_self_signed(vec![host.to_string()]).unwrap();
        (generated.cert.pem(), generated.key_pair.serialize_pem())
    }

    fn write_pair(directory: &Path, cert: &str, key: &str) -> (PathBuf, PathBuf) {
        let cert_path = directory.join("cert.pem");
        let key_path = directory.join("key.pem");
        std::fs::write(&cert_path, cert).unwrap();
        std::fs::write(&key_path, key).unwrap();
        (cert_path, key_path)
    }

    fn client_config(trusted: &[&str], alpn: &[&[u8]]) -> Arc<ClientConfig> {
        let mut roots = RootCertStore::empty();
        for pem in trusted {
            for cert in CertificateDer::pem_slice_iter(pem.as_bytes()) {
                roots.add(cert.unwrap()).unwrap();
            }
        }
        let mut config = ClientConfig::builder_with_provider(provider())
            .with_safe_default_protocol_versions()
            .unwrap()
            .with_root_certificates(roots)
            .with_no_client_auth();
        config.alpn_protocols = alpn.iter().map(|id| id.to_vec()).collect();
        Arc::new(config)
    }

    /// Accepts TLS connections forever; each one gets "hello" and then an
    /// echo of what it sends, so a test can prove a connection still works.
    async fn start_server(tls: &ServerTls) -> std::net::SocketAddr {
        let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
        let address = listener.local_addr().unwrap();
        let acceptor = tls.acceptor();
        tokio::spawn(async move {
            loop {
                let (stream, _) = listener.accept().await.unwrap();
                let acceptor = acceptor.clone();
                tokio::spawn(async move {
                    let Ok(mut stream) = acceptor.accept(stream).await else {
                        return;
                    };
                    if stream.write_all(b"hello").await.is_err() {
                        return;
                    }
                    let _ = stream.flush().await;
                    let mut buffer = [0u8; 64];
                    while let Ok(read) = stream.read(&mut buffer).await {
                        if read == 0 || stream.write_all(&buffer[..read]).await.is_err() {
                            return;
                        }
                    }
                });
            }
        });
        address
    }

    async fn connect(
        address: std::net::SocketAddr,
        config: Arc<ClientConfig>,
        name: &str,
    ) -> TlsStream<TcpStream> {
        let tcp = TcpStream::connect(address).await.unwrap();
        let mut stream = TlsConnector::from(config)
            .connect(ServerName::try_from(name.to_string()).unwrap(), tcp)
            .await
            .unwrap();
        // Reading the greeting also processes the session ticket, which a
        // TLS 1.3 server sends right after the handshake.
        let mut greeting = [0u8; 5];
        stream.read_exact(&mut greeting).await.unwrap();
        assert_eq!(&greeting, b"hello");
        stream
    }

    async fn echo(stream: &mut TlsStream<TcpStream>, message: &[u8]) {
        stream.write_all(message).await.unwrap();
        let mut back = vec![0u8; message.len()];
        stream.read_exact(&mut back).await.unwrap();
        assert_eq!(back, message);
    }

    fn leaf(stream: &TlsStream<TcpStream>) -> CertificateDer<'static> {
        stream.get_ref().1.peer_certificates().unwrap()[0].clone()
    }

    #[tokio::test]
    async fn ecdsa_handshake_negotiates_h2_or_http11_by_alpn() {
        let (cert, key) = ecdsa_pair("localhost");
        let directory = tempfile::tempdir().unwrap();
        let (cert_path, key_path) = write_pair(directory.path(), &cert, &key);
        let tls = ServerTls::from_pem_files(&cert_path, &key_path).unwrap();
        let address = start_server(&tls).await;

        let both = connect(
            address,
            client_config(&[&cert], &[b"h2", b"http/1.1"]),
            "localhost",
        )
        .await;
        assert_eq!(both.get_ref().1.alpn_protocol(), Some(&b"h2"[..]));
        let http11 = connect(
            address,
            client_config(&[&cert], &[b"http/1.1"]),
            "localhost",
        )
        .await;
        assert_eq!(http11.get_ref().1.alpn_protocol(), Some(&b"http/1.1"[..]));
        let none = connect(address, client_config(&[&cert], &[]), "localhost").await;
        assert_eq!(none.get_ref().1.alpn_protocol(), None);
        assert_eq!(
            none.get_ref().1.protocol_version(),
            Some(rustls::ProtocolVersion::TLSv1_3)
        );
    }

    #[tokio::test]
    async fn rsa_certificates_work_too() {
        let directory = tempfile::tempdir().unwrap();
        let (cert_path, key_path) = write_pair(directory.path(), RSA_CERT, RSA_KEY);
        let tls = ServerTls::from_pem_files(&cert_path, &key_path).unwrap();
        let address = start_server(&tls).await;
        let mut stream = connect(address, client_config(&[RSA_CERT], &[b"h2"]), "localhost").await;
        echo(&mut stream, b"rsa").await;
        // The certificate names 127.0.0.1 as well.
        connect(address, client_config(&[RSA_CERT], &[]), "127.0.0.1").await;
    }

    #[tokio::test]
    async fn the_second_connection_resumes_the_session() {
        let (tls, cert) = ServerTls::self_signed(&["localhost".to_string()]).unwrap();
        let address = start_server(&tls).await;
        let client = client_config(&[&cert], &[b"h2"]);
        let first = connect(address, client.clone(), "localhost").await;
        assert_eq!(
            first.get_ref().1.handshake_kind(),
            Some(HandshakeKind::Full)
        );
        let second = connect(address, client.clone(), "localhost").await;
        assert_eq!(
            second.get_ref().1.handshake_kind(),
            Some(HandshakeKind::Resumed)
        );
        // A client without the session state does a full handshake again.
        let stranger = connect(address, client_config(&[&cert], &[b"h2"]), "localhost").await;
        assert_eq!(
            stranger.get_ref().1.handshake_kind(),
            Some(HandshakeKind::Full)
        );
    }

    #[tokio::test]
    async fn tls12_clients_resume_by_session_id() {
        let (tls, cert) = ServerTls::self_signed(&["localhost".to_string()]).unwrap();
        let address = start_server(&tls).await;
        let mut roots = RootCertStore::empty();
        roots
            .add(CertificateDer::from_pem_slice(cert.as_bytes()).unwrap())
            .unwrap();
        let client = Arc::new(
            ClientConfig::builder_with_provider(provider())
                .with_protocol_versions(&[&rustls::version::TLS12])
                .unwrap()
                .with_root_certificates(roots)
                .with_no_client_auth(),
        );
        let first = connect(address, client.clone(), "localhost").await;
        assert_eq!(
            first.get_ref().1.protocol_version(),
            Some(rustls::ProtocolVersion::TLSv1_2)
        );
        let second = connect(address, client, "localhost").await;
        assert_eq!(
            second.get_ref().1.handshake_kind(),
            Some(HandshakeKind::Resumed)
        );
    }

    #[tokio::test]
    async fn reload_serves_the_new_certificate_and_keeps_old_connections() {
        let (old_cert, old_key) = ecdsa_pair("localhost");
        let (new_cert, new_key) = ecdsa_pair("localhost");
        let directory = tempfile::tempdir().unwrap();
        let (cert_path, key_path) = write_pair(directory.path(), &old_cert, &old_key);
        let tls = ServerTls::from_pem_files(&cert_path, &key_path).unwrap();
        let address = start_server(&tls).await;
        let client = client_config(&[&old_cert, &new_cert], &[b"h2"]);
        let old_der = CertificateDer::from_pem_slice(old_cert.as_bytes()).unwrap();
        let new_der = CertificateDer::from_pem_slice(new_cert.as_bytes()).unwrap();

        let mut before = connect(address, client.clone(), "localhost").await;
        assert_eq!(leaf(&before), old_der);

        write_pair(directory.path(), &new_cert, &new_key);
        tls.reload().unwrap();
        assert_eq!(tls.current_certificate(), new_der);

        // A fresh client (no resumption) sees the new certificate...
        let after = connect(address, client_config(&[&new_cert], &[]), "localhost").await;
        assert_eq!(leaf(&after), new_der);
        // ...and the connection made before the reload still works.
        echo(&mut before, b"still here").await;
        assert_eq!(leaf(&before), old_der);
    }

    #[tokio::test]
    async fn a_failed_reload_keeps_the_old_certificate() {
        let (cert, key) = ecdsa_pair("localhost");
        let (_, other_key) = ecdsa_pair("localhost");
        let directory = tempfile::tempdir().unwrap();
        let (cert_path, key_path) = write_pair(directory.path(), &cert, &key);
        let tls = ServerTls::from_pem_files(&cert_path, &key_path).unwrap();
        let address = start_server(&tls).await;
        // Half-written rotation: new key, old certificate.
        std::fs::write(&key_path, other_key).unwrap();
        assert!(matches!(tls.reload(), Err(TlsError::KeyMismatch { .. })));
        connect(address, client_config(&[&cert], &[]), "localhost").await;
    }

    #[tokio::test]
    async fn sighup_reloads_the_certificate() {
        let (old_cert, old_key) = ecdsa_pair("localhost");
        let (new_cert, new_key) = ecdsa_pair("localhost");
        let directory = tempfile::tempdir().unwrap();
        let (cert_path, key_path) = write_pair(directory.path(), &old_cert, &old_key);
        let tls = ServerTls::from_pem_files(&cert_path, &key_path).unwrap();
        let watcher = tls.reload_on_sighup().unwrap();
        write_pair(directory.path(), &new_cert, &new_key);
        let new_der = CertificateDer::from_pem_slice(new_cert.as_bytes()).unwrap();
        let status = std::process::Command::new("kill")
            .args(["-HUP", &std::process::id().to_string()])
            .status()
            .unwrap();
        assert!(status.success());
        // The reload runs on the watcher task: poll for it with a deadline.
        let deadline = tokio::time::Instant::now() + std::time::Duration::from_secs(10);
        while tls.current_certificate() != new_der {
            assert!(
                tokio::time::Instant::now() < deadline,
                "certificate not reloaded after SIGHUP"
            );
            tokio::task::yield_now().await;
            tokio::time::sleep(std::time::Duration::from_millis(5)).await;
        }
        watcher.abort();
    }

    struct Hello;

    impl Handler for Hello {
        async fn handle(
            &self,
            _request: http::Request<RequestBody>,
            _connection: ConnectionInfo,
        ) -> http::Response<ResponseBody> {
            http::Response::new(ResponseBody::Empty)
        }
    }

    fn connection(secure: bool) -> ConnectionInfo {
        ConnectionInfo {
            peer: "127.0.0.1:40000".parse().unwrap(),
            local: "127.0.0.1:8443".parse().unwrap(),
            secure,
        }
    }

    fn get(uri: &str, host: Option<&str>) -> http::Request<RequestBody> {
        let mut builder = http::Request::get(uri);
        if let Some(host) = host {
            builder = builder.header(http::header::HOST, host);
        }
        builder.body(RequestBody::empty()).unwrap()
    }

    #[tokio::test]
    async fn hsts_is_sent_over_tls_only() {
        let hsts = Hsts::new(Arc::new(Hello), std::time::Duration::from_secs(86400));
        let response = hsts.handle(get("/", None), connection(true)).await;
        assert_eq!(
            response.headers()[http::header::STRICT_TRANSPORT_SECURITY],
            "max-age=86400"
        );
        let response = hsts.handle(get("/", None), connection(false)).await;
        assert!(
            !response
                .headers()
                .contains_key(http::header::STRICT_TRANSPORT_SECURITY)
        );
    }

    #[tokio::test]
    async fn plain_http_redirects_to_the_https_port() {
        let redirect = RedirectToHttps::new(8443);
        let cases = [
            (
                "/v/a/master.m3u8?x=1",
                Some("example.com:8080"),
                "https://example.com:8443/v/a/master.m3u8?x=1",
            ),
            ("/", Some("example.com"), "https://example.com:8443/"),
            ("/a", Some("[::1]:8080"), "https://[::1]:8443/a"),
            ("/a", Some("127.0.0.1"), "https://127.0.0.1:8443/a"),
            ("/a", None, "https://127.0.0.1:8443/a"),
            ("http://h2.example:80/a", None, "https://h2.example:8443/a"),
        ];
        for (uri, host, expected) in cases {
            let response = redirect.handle(get(uri, host), connection(false)).await;
            assert_eq!(response.status(), http::StatusCode::PERMANENT_REDIRECT);
            assert_eq!(
                response.headers()[http::header::LOCATION],
                expected,
                "{uri} {host:?}"
            );
        }
        assert_eq!(
            RedirectToHttps::new(443)
                .location("example.com:80", "/x")
                .as_deref(),
            Some("https://example.com/x")
        );
        for host in ["evil.com/x", "a b", "example.com:80x", "[::1]x", "", "a@b"] {
            let response = redirect
                .handle(get("/", Some(host)), connection(false))
                .await;
            assert_eq!(response.status(), http::StatusCode::BAD_REQUEST, "{host:?}");
        }
    }

    #[test]
    fn bad_inputs_are_clear_errors() {
        let directory = tempfile::tempdir().unwrap();
        let (cert, key) = ecdsa_pair("localhost");
        let missing = directory.path().join("missing.pem");
        let error = ServerTls::from_pem_files(&missing, &missing).unwrap_err();
        assert!(matches!(error, TlsError::Read { .. }), "{error}");

        let (cert_path, key_path) = write_pair(directory.path(), "not pem", &key);
        let error = ServerTls::from_pem_files(&cert_path, &key_path).unwrap_err();
        assert!(error.to_string().contains("no PEM certificate"), "{error}");

        let (cert_path, key_path) = write_pair(directory.path(), &cert, &cert);
        let error = ServerTls::from_pem_files(&cert_path, &key_path).unwrap_err();
        assert!(error.to_string().contains("no PEM private key"), "{error}");

        let (cert_path, key_path) = write_pair(directory.path(), &cert, RSA_KEY);
        let error = ServerTls::from_pem_files(&cert_path, &key_path).unwrap_err();
        assert!(error.to_string().contains("does not belong"), "{error}");
    }
}
