//! The listener reads a viewer's `TCP_INFO` after a large response: over
//! loopback the sample shows a fast path, through a veth pair shaped to
//! 2 Mbit/s (`tc` tbf) it shows that rate and the queue the link builds,
//! and through TLS it samples the socket under the TLS stream.
//!
//! The shaped tests need root and iproute2 (CI runs as root); a missing
//! piece fails it with what to do, never skips it.

use std::net::SocketAddr;
use std::os::fd::AsFd;
use std::sync::Arc;
use std::time::Duration;

use bytes::Bytes;
use kinema_http::tcp_info::{TcpInfoObserver, TcpInfoSample, TcpInfoSampling};
use kinema_http::tls::ServerTls;
use kinema_http::{ConnectionInfo, Handler, RequestBody, ResponseBody, ServerConfig, ServerStats};
use kinema_test_support::shaped_link;
use tokio::io::{AsyncRead, AsyncReadExt, AsyncWrite, AsyncWriteExt};
use tokio::net::{TcpListener, TcpStream};
use tokio::sync::mpsc;

/// Answers every request with `length` bytes.
struct Body(Bytes);

impl Handler for Body {
    async fn handle(
        &self,
        _request: http::Request<RequestBody>,
        _connection: ConnectionInfo,
    ) -> http::Response<ResponseBody> {
        http::Response::new(ResponseBody::Full(self.0.clone()))
    }
}

/// Passes every sample on to the test.
struct Forward(mpsc::UnboundedSender<(SocketAddr, TcpInfoSample)>);

impl TcpInfoObserver for Forward {
    fn observe(&self, peer: SocketAddr, sample: TcpInfoSample) {
        let _ = self.0.send((peer, sample));
    }
}

/// A server answering every request with `body_bytes`, sampling through
/// `sampling`; `tls` when the protocol wants it.
struct Served {
    address: SocketAddr,
    stop: tokio::sync::oneshot::Sender<()>,
    server: tokio::task::JoinHandle<std::io::Result<()>>,
}

impl Served {
    fn start(
        listener: std::net::TcpListener,
        body_bytes: usize,
        sampling: TcpInfoSampling,
        tls: Option<&ServerTls>,
    ) -> Self {
        listener.set_nonblocking(true).unwrap();
        let listener = TcpListener::from_std(listener).unwrap();
        let address = listener.local_addr().unwrap();
        let (stop, stopped) = tokio::sync::oneshot::channel::<()>();
        let server = tokio::spawn(kinema_http::serve_sampled(
            listener,
            Arc::new(Body(Bytes::from(vec![7u8; body_bytes]))),
            ServerConfig::default(),
            tls.map(ServerTls::acceptor),
            Arc::new(ServerStats::default()),
            Some(sampling),
            async move {
                let _ = stopped.await;
            },
        ));
        Self {
            address,
            stop,
            server,
        }
    }

    async fn stop(self) {
        let _ = self.stop.send(());
        self.server.await.unwrap().unwrap();
    }
}

/// Serves `body_bytes` per request on `listener`, sampling every response
/// of at least half that; fetches it over one connection until a sample
/// arrives, at most 16 requests or 60 s. A sample taken while the sender
/// was application-limited is dropped by the listener, so a request may
/// pass without one: over loopback, whose 64 KiB segments exceed the 32 KiB
/// of unsent data the server queues, about half do.
async fn sample_one_download(
    listener: std::net::TcpListener,
    body_bytes: usize,
    protocol: Protocol,
) -> (SocketAddr, SocketAddr, TcpInfoSample) {
    let (samples, mut received) = mpsc::unbounded_channel();
    let sampling = TcpInfoSampling::new(Arc::new(Forward(samples)), body_bytes as u64 / 2, 1);
    let tls = matches!(protocol, Protocol::Http1Tls).then(|| {
        ServerTls::self_signed(&["localhost".to_string()])
            .unwrap()
            .0
    });
    let served = Served::start(listener, body_bytes, sampling, tls.as_ref());
    let (local, mut client) = Client::connect(served.address, protocol, tls.as_ref()).await;
    let deadline = tokio::time::Instant::now() + Duration::from_secs(60);
    let mut sample = None;
    for download in 1..=16 {
        let fetched = tokio::time::timeout_at(deadline, client.fetch(body_bytes, false)).await;
        assert!(fetched.is_ok(), "the download did not finish within 60 s");
        // The sample is taken right after the body's last write returns,
        // so it is due about when the client has read the body; one that
        // was application-limited never comes.
        if let Ok(Some((peer, taken))) =
            tokio::time::timeout(Duration::from_secs(1), received.recv()).await
        {
            println!("{protocol:?}: a sample after {download} downloads of {body_bytes} bytes");
            sample = Some((peer, taken));
            break;
        }
    }
    let (peer, sample) = sample.expect("no network-limited sample in 16 downloads");
    served.stop().await;
    (peer, local, sample)
}

#[derive(Debug, Clone, Copy)]
enum Protocol {
    Http1,
    /// HTTP/1.1 through TLS: the socket under the TLS stream is sampled.
    Http1Tls,
    /// With prior knowledge (h2c).
    Http2,
}

enum Client {
    Http1(TcpStream),
    Http1Tls(Box<tokio_rustls::client::TlsStream<TcpStream>>),
    Http2(hyper::client::conn::http2::SendRequest<http_body_util::Empty<Bytes>>),
}

impl Client {
    /// A connection to `address` speaking `protocol` (trusting `tls`'s
    /// certificate for TLS), and its local address.
    async fn connect(
        address: SocketAddr,
        protocol: Protocol,
        tls: Option<&ServerTls>,
    ) -> (SocketAddr, Self) {
        let client = match protocol {
            // Over loopback only: a shaped link is the bottleneck itself,
            // and a full receive window lets its queue ride out a busy
            // client.
            Protocol::Http1 | Protocol::Http1Tls if address.ip().is_loopback() => {
                connect_receiver_limited(address).await
            }
            Protocol::Http1 | Protocol::Http1Tls => TcpStream::connect(address).await.unwrap(),
            // HTTP/2's own flow control already paces the sender (and with
            // loopback's 64 KiB segments, a sender that waits is
            // application-limited): a plain connection.
            Protocol::Http2 => TcpStream::connect(address).await.unwrap(),
        };
        let local = client.local_addr().unwrap();
        let client = match protocol {
            Protocol::Http1 => Client::Http1(client),
            Protocol::Http1Tls => {
                let tls = tls.expect("a certificate");
                let mut roots = rustls::RootCertStore::empty();
                roots.add(tls.current_certificate()).unwrap();
                let config = rustls::ClientConfig::builder_with_provider(Arc::new(
                    rustls::crypto::ring::default_provider(),
                ))
                .with_safe_default_protocol_versions()
                .unwrap()
                .with_root_certificates(roots)
                .with_no_client_auth();
                let name = rustls::pki_types::ServerName::try_from("localhost").unwrap();
                let stream = tokio_rustls::TlsConnector::from(Arc::new(config))
                    .connect(name, client)
                    .await
                    .unwrap();
                Client::Http1Tls(Box::new(stream))
            }
            Protocol::Http2 => {
                let (sender, connection) = hyper::client::conn::http2::handshake(
                    hyper_util::rt::TokioExecutor::new(),
                    hyper_util::rt::TokioIo::new(client),
                )
                .await
                .unwrap();
                tokio::spawn(connection);
                Client::Http2(sender)
            }
        };
        (local, client)
    }

    /// One GET whose `body_bytes` are read whole; through an intermediary
    /// (with `Via`) when `via`.
    async fn fetch(&mut self, body_bytes: usize, via: bool) {
        match self {
            Client::Http1(stream) => fetch(stream, body_bytes, via).await,
            Client::Http1Tls(stream) => fetch(&mut **stream, body_bytes, via).await,
            Client::Http2(sender) => {
                use http_body_util::BodyExt;
                let mut request = http::Request::get("http://t/segment");
                if via {
                    request = request.header(http::header::VIA, VIA);
                }
                let request = request.body(http_body_util::Empty::new()).unwrap();
                let response = sender.send_request(request).await.unwrap();
                let body = response.into_body().collect().await.unwrap().to_bytes();
                assert_eq!(body.len(), body_bytes);
            }
        }
    }
}

/// What a cluster node's forwarded request carries.
const VIA: &str = "1.1 edge-b";

/// One GET on a keep-alive connection, its `body_bytes` read whole.
async fn fetch<S: AsyncRead + AsyncWrite + Unpin>(client: &mut S, body_bytes: usize, via: bool) {
    let via = if via {
        format!("Via: {VIA}\r\n")
    } else {
        String::new()
    };
    client
        .write_all(format!("GET /segment HTTP/1.1\r\nHost: t\r\n{via}\r\n").as_bytes())
        .await
        .unwrap();
    let mut received = Vec::with_capacity(body_bytes + 1024);
    let mut chunk = vec![0u8; 64 * 1024];
    loop {
        let n = client.read(&mut chunk).await.unwrap();
        assert!(n > 0, "connection closed mid-response");
        received.extend_from_slice(&chunk[..n]);
        if let Some(end) = received.windows(4).position(|w| w == b"\r\n\r\n")
            && received.len() >= end + 4 + body_bytes
        {
            return;
        }
    }
}

#[tokio::test]
async fn a_loopback_download_is_sampled_after_four_megabytes() {
    let listener = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    let (peer, client, sample) = sample_one_download(listener, 4 << 20, Protocol::Http1).await;
    assert_eq!(peer, client, "the sample names the viewer's address");
    assert!(sample.delivery_rate_bytes_per_second > 0, "{sample:?}");
    assert!(sample.min_rtt <= sample.smoothed_rtt, "{sample:?}");
    assert!(!sample.app_limited, "{sample:?}");
}

/// Through TLS the listener samples the TCP socket under the TLS stream.
/// The download crosses a 20 Mbit/s link: over loopback a busy machine's
/// CPU, encrypting, limits most TLS downloads instead of the network, and
/// the listener rightly drops those samples; a real viewer's path is the
/// limit, as the link is here.
#[tokio::test]
async fn a_download_through_tls_is_sampled() {
    let link = shaped_link::ShapedLink::new("20mbit");
    let listener = listen_inside(link.namespace(), link.address());
    // About 0.4 s at 20 Mbit/s.
    let (peer, client, sample) = sample_one_download(listener, 1 << 20, Protocol::Http1Tls).await;
    assert_eq!(peer, client, "the sample names the viewer's address");
    let bits = sample.delivery_rate_bytes_per_second * 8;
    assert!(
        (10_000_000..30_000_000).contains(&bits),
        "a 20 Mbit/s link delivered at {bits} bit/s through TLS: {sample:?}"
    );
    assert!(sample.min_rtt <= sample.smoothed_rtt, "{sample:?}");
}

/// HTTP/2 samples by bytes written on the connection, not per response.
#[tokio::test]
async fn a_loopback_http2_download_is_sampled_too() {
    let listener = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    let (peer, client, sample) = sample_one_download(listener, 4 << 20, Protocol::Http2).await;
    assert_eq!(peer, client, "the sample names the viewer's address");
    assert!(sample.delivery_rate_bytes_per_second > 0, "{sample:?}");
    assert!(sample.min_rtt <= sample.smoothed_rtt, "{sample:?}");
}

/// How many responses the listener sampled (kept, dropped as
/// application-limited, or unreadable) while a client fetched eight bodies
/// of 4 MiB over one loopback connection, every request carrying `Via`
/// when `via`.
async fn responses_sampled(protocol: Protocol, via: bool) -> u64 {
    let (samples, _received) = mpsc::unbounded_channel();
    let sampling = TcpInfoSampling::new(Arc::new(Forward(samples)), 1 << 20, 1);
    let listener = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    let served = Served::start(listener, 4 << 20, sampling.clone(), None);
    let (_, mut client) = Client::connect(served.address, protocol, None).await;
    for _ in 0..8 {
        client.fetch(4 << 20, via).await;
    }
    served.stop().await;
    let counts = sampling.counts();
    counts.observed + counts.app_limited + counts.unreadable
}

/// A node's fill from its parent, or any request through a proxy, is not a
/// viewer's connection: over HTTP/1.1 and HTTP/2 alike, none of its
/// responses is sampled, where a viewer's are.
#[tokio::test]
async fn responses_to_requests_through_an_intermediary_are_never_sampled() {
    for protocol in [Protocol::Http1, Protocol::Http2] {
        let direct = responses_sampled(protocol, false).await;
        let proxied = responses_sampled(protocol, true).await;
        println!("{protocol:?}: {direct} sampled directly, {proxied} through an intermediary");
        assert!(direct > 0, "{protocol:?}: no response sampled at all");
        assert_eq!(proxied, 0, "{protocol:?}");
    }
}

/// A std listener bound on `address` inside network namespace `namespace`
/// (a thread enters it just to create the socket, which stays there).
fn listen_inside(namespace: &str, address: std::net::Ipv4Addr) -> std::net::TcpListener {
    let path = format!("/var/run/netns/{namespace}");
    std::thread::spawn(move || {
        let handle = std::fs::File::open(&path)
            .unwrap_or_else(|error| panic!("cannot open {path}: {error}"));
        rustix::thread::move_into_link_name_space(
            handle.as_fd(),
            Some(rustix::thread::LinkNameSpaceType::Network),
        )
        .unwrap_or_else(|error| panic!("cannot enter {path} (needs root): {error}"));
        std::net::TcpListener::bind((address, 0)).unwrap()
    })
    .join()
    .unwrap()
}

#[tokio::test]
async fn a_download_over_a_two_megabit_link_samples_about_two_megabits() {
    let unshaped = {
        let listener = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
        sample_one_download(listener, 4 << 20, Protocol::Http1)
            .await
            .2
    };
    let link = shaped_link::ShapedLink::new("2mbit");
    let listener = listen_inside(link.namespace(), link.address());
    // About 4 s at 2 Mbit/s.
    let (_, _, shaped) = sample_one_download(listener, 1 << 20, Protocol::Http1).await;
    println!("unshaped {unshaped:?}\nshaped {shaped:?}");
    let shaped_bits = shaped.delivery_rate_bytes_per_second * 8;
    assert!(
        (1_000_000..3_000_000).contains(&shaped_bits),
        "a 2 Mbit/s link delivered at {shaped_bits} bit/s: {shaped:?}"
    );
    assert!(
        unshaped.delivery_rate_bytes_per_second > 20 * shaped.delivery_rate_bytes_per_second,
        "loopback {unshaped:?} against the shaped link {shaped:?}"
    );
    // The tbf queue (up to 400 ms) fills under a bulk download.
    assert!(
        shaped.rtt_inflation() > Duration::from_millis(5),
        "no queueing delay on the shaped link: {shaped:?}"
    );
}

/// A connection whose receive window (64 KiB), not the server's sending,
/// limits the download, as a real path's capacity would: over loopback a
/// receiver that drains at once leaves a sender application-limited more
/// often, and the listener rightly drops those samples.
async fn connect_receiver_limited(address: std::net::SocketAddr) -> TcpStream {
    let socket = tokio::net::TcpSocket::new_v4().unwrap();
    socket.set_recv_buffer_size(64 * 1024).unwrap();
    socket.connect(address).await.unwrap()
}
