//! TLS as curl sees it: the real listener with a [`ServerTls`] acceptor,
//! ALPN picking HTTP/2 or HTTP/1.1, HSTS on TLS responses, and the plain
//! listener that redirects to HTTPS.

use std::net::SocketAddr;
use std::process::Command;
use std::sync::Arc;
use std::time::Duration;

use kinema_http::server::{ServerConfig, serve};
use kinema_http::tls::{Hsts, RedirectToHttps, ServerTls};
use kinema_http::{ConnectionInfo, Handler, RequestBody, ResponseBody};
use tokio::net::TcpListener;
use tokio::sync::oneshot;

/// Answers with the protocol version and whether the connection is TLS.
struct Whoami;

impl Handler for Whoami {
    async fn handle(
        &self,
        request: http::Request<RequestBody>,
        connection: ConnectionInfo,
    ) -> http::Response<ResponseBody> {
        let body = format!("{:?} secure={}", request.version(), connection.secure);
        http::Response::new(ResponseBody::Full(body.into()))
    }
}

struct Running {
    address: SocketAddr,
    stop: Option<oneshot::Sender<()>>,
    task: tokio::task::JoinHandle<std::io::Result<()>>,
}

impl Running {
    async fn stop(mut self) {
        let _ = self.stop.take().unwrap().send(());
        self.task.await.unwrap().unwrap();
    }
}

async fn start<H: Handler>(handler: H, tls: Option<&ServerTls>) -> Running {
    let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
    let address = listener.local_addr().unwrap();
    let (stop, stopped) = oneshot::channel::<()>();
    let acceptor = tls.map(ServerTls::acceptor);
    let task = tokio::spawn(serve(
        listener,
        Arc::new(handler),
        ServerConfig::default(),
        acceptor,
        async move {
            let _ = stopped.await;
        },
    ));
    Running {
        address,
        stop: Some(stop),
        task,
    }
}

/// Runs curl off the reactor; returns (stdout, stderr).
async fn curl(args: Vec<String>) -> (String, String) {
    tokio::task::spawn_blocking(move || {
        let output = Command::new("curl")
            .args(["--silent", "--show-error", "--max-time", "20"])
            .args(&args)
            .output()
            .expect("curl is installed (scripts/install-deps)");
        assert!(
            output.status.success(),
            "curl {args:?}: {}",
            String::from_utf8_lossy(&output.stderr)
        );
        (
            String::from_utf8(output.stdout).unwrap(),
            String::from_utf8(output.stderr).unwrap(),
        )
    })
    .await
    .unwrap()
}

#[tokio::test]
async fn curl_negotiates_h2_and_http11_by_alpn_with_hsts() {
    let (tls, cert_pem) =
        ServerTls::self_signed(&["localhost".to_string(), "127.0.0.1".to_string()]).unwrap();
    let directory = tempfile::tempdir().unwrap();
    let cert_path = directory.path().join("cert.pem");
    std::fs::write(&cert_path, cert_pem).unwrap();
    let server = start(
        Hsts::new(Arc::new(Whoami), Duration::from_secs(31_536_000)),
        Some(&tls),
    )
    .await;
    let port = server.address.port();
    let url = format!("https://localhost:{port}/");
    let resolve = format!("localhost:{port}:127.0.0.1");
    let base = |version: &str| {
        vec![
            "--cacert".to_string(),
            cert_path.display().to_string(),
            "--resolve".to_string(),
            resolve.clone(),
            version.to_string(),
            "--include".to_string(),
            "--verbose".to_string(),
            url.clone(),
        ]
    };

    let (stdout, stderr) = curl(base("--http2")).await;
    assert!(stdout.starts_with("HTTP/2 200"), "{stdout}");
    assert!(stdout.ends_with("HTTP/2.0 secure=true"), "{stdout}");
    assert!(
        stdout
            .to_ascii_lowercase()
            .contains("strict-transport-security: max-age=31536000"),
        "{stdout}"
    );
    assert!(stderr.contains("ALPN: server accepted h2"), "{stderr}");

    let (stdout, stderr) = curl(base("--http1.1")).await;
    assert!(stdout.starts_with("HTTP/1.1 200"), "{stdout}");
    assert!(stdout.ends_with("HTTP/1.1 secure=true"), "{stdout}");
    assert!(
        stderr.contains("ALPN: server accepted http/1.1"),
        "{stderr}"
    );

    // The certificate also names the address itself.
    let (stdout, _) = curl(vec![
        "--cacert".to_string(),
        cert_path.display().to_string(),
        format!("https://127.0.0.1:{port}/"),
    ])
    .await;
    assert_eq!(stdout, "HTTP/2.0 secure=true");
    server.stop().await;
}

#[tokio::test]
async fn the_plain_listener_redirects_to_https() {
    let (tls, cert_pem) = ServerTls::self_signed(&["localhost".to_string()]).unwrap();
    let directory = tempfile::tempdir().unwrap();
    let cert_path = directory.path().join("cert.pem");
    std::fs::write(&cert_path, cert_pem).unwrap();
    let https = start(
        Hsts::new(Arc::new(Whoami), Duration::from_secs(60)),
        Some(&tls),
    )
    .await;
    let redirect = start(RedirectToHttps::new(https.address.port()), None).await;
    let plain_port = redirect.address.port();
    let https_port = https.address.port();

    let (stdout, _) = curl(vec![
        "--include".to_string(),
        format!("http://localhost:{plain_port}/v/a/master.m3u8?x=1"),
    ])
    .await;
    assert!(stdout.starts_with("HTTP/1.1 308"), "{stdout}");
    assert!(
        stdout.to_ascii_lowercase().contains(&format!(
            "location: https://localhost:{https_port}/v/a/master.m3u8?x=1"
        )),
        "{stdout}"
    );
    // No HSTS over plain HTTP (RFC 6797 §7.2).
    assert!(
        !stdout
            .to_ascii_lowercase()
            .contains("strict-transport-security"),
        "{stdout}"
    );

    // curl follows it to the TLS listener.
    let (stdout, _) = curl(vec![
        "--location".to_string(),
        "--cacert".to_string(),
        cert_path.display().to_string(),
        "--resolve".to_string(),
        format!("localhost:{https_port}:127.0.0.1"),
        format!("http://localhost:{plain_port}/"),
    ])
    .await;
    assert_eq!(stdout, "HTTP/2.0 secure=true");
    redirect.stop().await;
    https.stop().await;
}
