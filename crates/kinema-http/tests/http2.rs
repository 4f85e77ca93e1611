//! HTTP/2 over real TCP: h2c with prior knowledge, and TLS where ALPN picks
//! h2 or HTTP/1.1 on the same listener.

mod common;

use std::sync::Arc;

use bytes::Bytes;
use common::{ResponseReader, TestServer, file_content, pattern, quick_config};
use http::{Method, Request, StatusCode, Version};
use http_body_util::{BodyExt, Full};
use hyper_util::rt::{TokioExecutor, TokioIo};
use kinema_http::tls::ServerTls;
use tokio::io::{AsyncRead, AsyncWrite, AsyncWriteExt};

type Sender = hyper::client::conn::http2::SendRequest<Full<Bytes>>;

async fn h2_client<S>(io: S) -> Sender
where
    S: AsyncRead + AsyncWrite + Unpin + Send + 'static,
{
    let (sender, connection) =
        hyper::client::conn::http2::handshake(TokioExecutor::new(), TokioIo::new(io))
            .await
            .unwrap();
    tokio::spawn(connection);
    sender
}

async fn call(
    sender: &mut Sender,
    method: Method,
    path: &str,
    body: &[u8],
) -> (StatusCode, http::HeaderMap, Vec<u8>) {
    let request = Request::builder()
        .method(method)
        .uri(format!("http://localhost{path}"))
        .body(Full::new(Bytes::copy_from_slice(body)))
        .unwrap();
    let response = sender.send_request(request).await.unwrap();
    assert_eq!(response.version(), Version::HTTP_2);
    let (parts, body) = response.into_parts();
    let body = body.collect().await.unwrap().to_bytes().to_vec();
    (parts.status, parts.headers, body)
}

async fn exercise(sender: &mut Sender) {
    let (status, _, body) = call(sender, Method::GET, "/small", b"").await;
    assert_eq!((status, body.as_slice()), (StatusCode::OK, &b"hello"[..]));

    let (_, _, body) = call(sender, Method::GET, "/big?n=200000", b"").await;
    assert!(body == pattern(200000));

    let (_, headers, body) = call(sender, Method::HEAD, "/big?n=4321", b"").await;
    assert_eq!(headers["content-length"], "4321");
    assert!(body.is_empty());

    // A file body goes as its mapped bytes: HTTP/2 frames them itself.
    let content = file_content(300_000);
    let (_, headers, body) = call(sender, Method::GET, "/file?n=300000", b"").await;
    assert_eq!(headers["content-length"], "300000");
    assert!(body == content, "file body over http/2: wrong bytes");
    let (_, _, body) = call(sender, Method::GET, "/file?n=300000&from=7&to=250007", b"").await;
    assert!(
        body == content[7..250_007],
        "file range over http/2: wrong bytes"
    );
    let (_, headers, body) = call(sender, Method::HEAD, "/file?n=300000", b"").await;
    assert_eq!(headers["content-length"], "300000");
    assert!(body.is_empty());

    let (_, _, body) = call(sender, Method::GET, "/stream", b"").await;
    assert_eq!(body, b"alpha,beta,gamma");

    let upload = pattern(300_000);
    let (_, _, body) = call(sender, Method::POST, "/echo", &upload).await;
    assert!(body == upload);

    let (status, _, _) = call(sender, Method::GET, "/panic", b"").await;
    assert_eq!(status, StatusCode::INTERNAL_SERVER_ERROR);
    let (_, _, body) = call(sender, Method::GET, "/whoami", b"").await;
    assert_eq!(body, b"GET /whoami HTTP/2.0");
}

#[tokio::test]
async fn h2c_with_prior_knowledge() {
    let server = TestServer::start(quick_config()).await;
    let mut sender = h2_client(server.connect().await).await;
    exercise(&mut sender).await;
    // Concurrent streams on the one connection.
    let calls = (0..20).map(|_| {
        let mut sender = sender.clone();
        async move { call(&mut sender, Method::GET, "/small", b"").await.2 }
    });
    for body in futures::future::join_all(calls).await {
        assert_eq!(body, b"hello");
    }
    assert_eq!(server.stats.snapshot().accepted, 1);
}

#[tokio::test]
async fn curl_http2_prior_knowledge() {
    let server = TestServer::start(quick_config()).await;
    let url = format!("http://{}/small", server.addr);
    let output = tokio::process::Command::new("curl")
        .args([
            "-sS",
            "--fail",
            "--http2-prior-knowledge",
            "-w",
            " %{http_version}",
            &url,
        ])
        .output()
        .await
        .unwrap();
    assert!(
        output.status.success(),
        "{}",
        String::from_utf8_lossy(&output.stderr)
    );
    assert_eq!(output.stdout, b"hello 2");
}

async fn tls_connect(
    server: &TestServer,
    tls: &ServerTls,
    alpn: &[u8],
) -> tokio_rustls::client::TlsStream<tokio::net::TcpStream> {
    let mut roots = rustls::RootCertStore::empty();
    roots.add(tls.current_certificate()).unwrap();
    let mut config = rustls::ClientConfig::builder_with_provider(Arc::new(
        rustls::crypto::ring::default_provider(),
    ))
    .with_safe_default_protocol_versions()
    .unwrap()
    .with_root_certificates(roots)
    .with_no_client_auth();
    config.alpn_protocols = vec![alpn.to_vec()];
    let connector = tokio_rustls::TlsConnector::from(Arc::new(config));
    let name = rustls::pki_types::ServerName::try_from("localhost").unwrap();
    connector
        .connect(name, server.connect().await)
        .await
        .unwrap()
}

#[tokio::test]
async fn tls_alpn_selects_h2_or_http_1_1() {
    let (tls, _) = ServerTls::self_signed(&["localhost".to_string()]).unwrap();
    let server = TestServer::start_with_tls(quick_config(), Some(tls.acceptor())).await;

    let stream = tls_connect(&server, &tls, b"h2").await;
    assert_eq!(stream.get_ref().1.alpn_protocol(), Some(&b"h2"[..]));
    let mut sender = h2_client(stream).await;
    exercise(&mut sender).await;

    let stream = tls_connect(&server, &tls, b"http/1.1").await;
    let mut reader = ResponseReader::new(stream);
    for _ in 0..2 {
        reader
            .stream
            .write_all(b"GET /big?n=100000 HTTP/1.1\r\nHost: t\r\n\r\n")
            .await
            .unwrap();
        let response = reader.read(false).await.unwrap();
        assert!(response.body == pattern(100000));
        // HTTP/1.1 through TLS cannot sendfile: the mapped bytes go instead.
        reader
            .stream
            .write_all(b"GET /file?n=1572864&from=3&to=1500003 HTTP/1.1\r\nHost: t\r\n\r\n")
            .await
            .unwrap();
        let response = reader.read(false).await.unwrap();
        assert!(response.body == file_content(1_572_864)[3..1_500_003]);
    }
    assert_eq!(server.stats.snapshot().accepted, 2);
}
