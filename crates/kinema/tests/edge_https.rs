//! `kinema edge` over HTTPS as a user runs it: an HTTPS edge in front of an
//! HTTPS `kinema serve`, both with certificates of a private CA made here
//! (rcgen), the edge trusting that CA by `--origin-ca`; curl speaks h2 and
//! HTTP/1.1 to the edge by ALPN; SIGHUP reloads the edge's certificate. An
//! edge that does not trust the origin's certificate, or reaches it by a
//! name the certificate does not carry, answers 502 and logs why. Three
//! HTTPS edges in a cluster fill from a video's parent edge and send a
//! purge on to each other over HTTPS.

use std::net::TcpListener;
use std::path::{Path, PathBuf};
use std::process::Command;

#[path = "support/clip_library.rs"]
mod clip_library;
#[path = "support/cluster_nodes.rs"]
mod cluster_nodes;

use cluster_nodes::{
    DEADLINE, Joined, Node, edge_with, get, gossip_address, key_file, kinema, metric, shared_port,
};

/// A private CA and one leaf certificate it signed, as PEM files.
struct Certificates {
    ca: PathBuf,
    cert: PathBuf,
    key: PathBuf,
}

/// Makes a CA and a leaf for `names` (DNS names or addresses) in `dir`.
fn certificates(dir: &Path, names: &[&str]) -> Certificates {
    let ca_key = rcgen::KeyPair::generate().unwrap();
    let mut ca_params = rcgen::CertificateParams::new(Vec::<String>::new()).unwrap();
    ca_params.is_ca = rcgen::IsCa::Ca(rcgen::BasicConstraints::Unconstrained);
    ca_params
        .distinguished_name
        .push(rcgen::DnType::CommonName, "kinema test CA");
    let ca = ca_params.self_signed(&ca_key).unwrap();
    let leaf_key = rcgen::KeyPair::generate().unwrap();
    let names: Vec<String> = names.iter().map(|name| name.to_string()).collect();
    let leaf = rcgen::CertificateParams::new(names)
        .unwrap()
        .signed_by(&leaf_key, &ca, &ca_key)
        .unwrap();
    let written = Certificates {
        ca: dir.join("ca.pem"),
        cert: dir.join("cert.pem"),
        key: dir.join("key.pem"),
    };
    std::fs::write(&written.ca, ca.pem()).unwrap();
    std::fs::write(&written.cert, leaf.pem()).unwrap();
    std::fs::write(&written.key, leaf_key.serialize_pem()).unwrap();
    written
}

fn free_port() -> u16 {
    TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port()
}

fn path(path: &Path) -> String {
    path.display().to_string()
}

/// curl over HTTPS trusting `ca`, `localhost` resolved to 127.0.0.1;
/// returns the response head and body, and curl's verbose log.
fn curl(ca: &Path, port: u16, target: &str, version: &str) -> (String, Vec<u8>, String) {
    let resolve = format!("localhost:{port}:127.0.0.1");
    let url = format!("https://localhost:{port}{target}");
    curl_url(ca, &url, &[version, "--resolve", &resolve])
}

/// curl `url` trusting `ca`, with `args`; returns the response head and
/// body, and curl's verbose log.
fn curl_url(ca: &Path, url: &str, args: &[&str]) -> (String, Vec<u8>, String) {
    let output = Command::new("curl")
        .args(["--silent", "--show-error", "--verbose", "--include"])
        .args(["--max-time", &DEADLINE.as_secs().to_string()])
        .args(["--cacert", &path(ca)])
        .args(args)
        .arg(url)
        .output()
        .expect("curl is installed");
    let stderr = String::from_utf8_lossy(&output.stderr).into_owned();
    assert!(output.status.success(), "curl {url}: {stderr}");
    let split = output
        .stdout
        .windows(4)
        .position(|window| window == b"\r\n\r\n")
        .expect("a response head");
    let head = String::from_utf8_lossy(&output.stdout[..split]).into_owned();
    (head, output.stdout[split + 4..].to_vec(), stderr)
}

fn header<'a>(head: &'a str, name: &str) -> Option<&'a str> {
    head.lines().find_map(|line| {
        let (field, value) = line.split_once(':')?;
        field.eq_ignore_ascii_case(name).then_some(value.trim())
    })
}

/// A library holding `clip` under `dir`.
fn library(dir: &Path) -> String {
    let library = dir.join("library");
    std::fs::create_dir_all(&library).unwrap();
    tokio::runtime::Runtime::new()
        .unwrap()
        .block_on(clip_library::publish(
            &library,
            &dir.join("staging"),
            "clip",
            kinema_core::AccessPolicy::Public,
        ));
    path(&library)
}

/// `kinema serve` over HTTPS on 127.0.0.1:`port`, logging every request.
fn https_origin(dir: &Path, certificates: &Certificates, port: u16) -> Node {
    let origin = Node::start(
        kinema()
            .args(["serve", "--library", &library(dir)])
            .args(["--listen", &format!("127.0.0.1:{port}")])
            .args(["--web-root", "/nonexistent", "--access-log", "true"])
            .args(["--tls-cert", &path(&certificates.cert)])
            .args(["--tls-key", &path(&certificates.key)])
            .current_dir(dir),
    );
    origin.wait_for_line(&["origin serving", "tls=true"]);
    origin
}

#[test]
fn an_https_edge_fills_from_an_https_origin_it_trusts_by_its_ca() {
    let dir = tempfile::tempdir().unwrap();
    let certificates = certificates(dir.path(), &["localhost"]);
    let origin_port = free_port();
    let origin = https_origin(dir.path(), &certificates, origin_port);

    let (edge_port, redirect_port) = (free_port(), free_port());
    let edge = Node::start(
        kinema()
            .args([
                "edge",
                "--origin",
                &format!("https://localhost:{origin_port}"),
            ])
            .args(["--origin-ca", &path(&certificates.ca)])
            .args(["--listen", &format!("127.0.0.1:{edge_port}")])
            .args(["--tls-cert", &path(&certificates.cert)])
            .args(["--tls-key", &path(&certificates.key)])
            .args(["--redirect-http", &format!("127.0.0.1:{redirect_port}")])
            .args(["--hsts"])
            .current_dir(dir.path()),
    );
    edge.wait_for_line(&["edge serving", "tls=true"]);
    edge.wait_for_line(&["redirecting plain http to https"]);

    // A miss over h2, filled over TLS from the origin; then a hit over
    // HTTP/1.1.
    let segment = "/v/clip/v180/1.m4s";
    let (head, body, verbose) = curl(&certificates.ca, edge_port, segment, "--http2");
    assert!(head.starts_with("HTTP/2 200"), "{head}");
    assert!(verbose.contains("ALPN: server accepted h2"), "{verbose}");
    assert_eq!(body, vec![1u8; 90_000]);
    let status = header(&head, "cache-status").unwrap();
    assert!(status.contains("fwd=uri-miss"), "{status}");
    assert_eq!(
        header(&head, "strict-transport-security"),
        Some("max-age=31536000")
    );
    // The origin logs a request once its response is sent; over h2 (what
    // the edge negotiated with it) with the scheme and authority.
    let upstream_url = format!("https://localhost:{origin_port}{segment}");
    origin.wait_for_line(&["kinema::access", &format!("path={upstream_url} ")]);

    let (head, body, verbose) = curl(&certificates.ca, edge_port, segment, "--http1.1");
    assert!(head.starts_with("HTTP/1.1 200"), "{head}");
    assert!(
        verbose.contains("ALPN: server accepted http/1.1"),
        "{verbose}"
    );
    assert_eq!(body, vec![1u8; 90_000]);
    let status = header(&head, "cache-status").unwrap();
    assert!(status.contains("hit"), "{status}");
    assert_eq!(origin.fetches_of(&upstream_url), 1);

    // The playlist: a second object, a second fetch over the pooled client.
    let (head, body, _) = curl(
        &certificates.ca,
        edge_port,
        "/v/clip/master.m3u8",
        "--http2",
    );
    assert!(head.starts_with("HTTP/2 200"), "{head}");
    assert_eq!(String::from_utf8(body).unwrap(), clip_library::MASTER);

    // The plain listener sends every request to the HTTPS one.
    let redirect = get(&format!("127.0.0.1:{redirect_port}"), segment, "");
    assert_eq!(redirect.status, 308, "{}", redirect.head);
    let expected = format!("https://127.0.0.1:{edge_port}{segment}");
    assert_eq!(redirect.header("location"), Some(expected.as_str()));
    assert!(redirect.header("strict-transport-security").is_none());

    // SIGHUP re-reads the certificate files without stopping the edge.
    edge.signal("-HUP");
    edge.wait_for_line(&["tls certificate reloaded"]);
    let (head, _, _) = curl(&certificates.ca, edge_port, segment, "--http2");
    assert!(head.starts_with("HTTP/2 200"), "{head}");
}

#[test]
fn an_origin_certificate_the_edge_cannot_verify_is_a_502_with_the_cause_logged() {
    let dir = tempfile::tempdir().unwrap();
    let certificates = certificates(dir.path(), &["localhost"]);
    let origin_port = free_port();
    let origin = https_origin(dir.path(), &certificates, origin_port);

    // No --origin-ca: the private CA is no public root.
    let untrusting_port = free_port();
    let untrusting = Node::start(
        kinema()
            .args([
                "edge",
                "--origin",
                &format!("https://localhost:{origin_port}"),
            ])
            .args(["--listen", &format!("127.0.0.1:{untrusting_port}")])
            .current_dir(dir.path()),
    );
    untrusting.wait_for_line(&["edge serving"]);
    let address = format!("127.0.0.1:{untrusting_port}");
    let reply = get(&address, "/v/clip/v180/1.m4s", "");
    assert_eq!(reply.status, 502, "{}", reply.head);
    let logged = untrusting.wait_for_line(&["origin fetch failed"]);
    assert!(logged.contains("UnknownIssuer"), "{logged}");
    // The edge lives on and answers what it can.
    assert_eq!(get(&address, "/_kinema/healthz", "").status, 200);

    // The CA trusted, but the origin named by an address its certificate
    // (made for localhost) does not carry.
    let misnamed_port = free_port();
    let misnamed = Node::start(
        kinema()
            .args([
                "edge",
                "--origin",
                &format!("https://127.0.0.1:{origin_port}"),
            ])
            .args(["--origin-ca", &path(&certificates.ca)])
            .args(["--listen", &format!("127.0.0.1:{misnamed_port}")])
            .current_dir(dir.path()),
    );
    misnamed.wait_for_line(&["edge serving"]);
    let reply = get(
        &format!("127.0.0.1:{misnamed_port}"),
        "/v/clip/v180/1.m4s",
        "",
    );
    assert_eq!(reply.status, 502, "{}", reply.head);
    let logged = misnamed.wait_for_line(&["origin fetch failed"]);
    assert!(
        logged.contains("certificate not valid for name"),
        "{logged}"
    );
    assert_eq!(origin.fetches_of("/v/clip/v180/1.m4s"), 0);

    // A CA file that holds no certificate stops the edge at start.
    let empty = dir.path().join("empty.pem");
    std::fs::write(&empty, "not a certificate\n").unwrap();
    let output = kinema()
        .args([
            "edge",
            "--origin",
            &format!("https://localhost:{origin_port}"),
        ])
        .args(["--origin-ca", &path(&empty), "--listen", "127.0.0.1:0"])
        .current_dir(dir.path())
        .output()
        .unwrap();
    assert!(!output.status.success());
    let error = String::from_utf8_lossy(&output.stderr);
    assert!(error.contains("holds no PEM certificate"), "{error}");
}

/// The value of `sample` in the `/metrics` of the HTTPS edge at `address`.
fn https_metric(ca: &Path, address: &str, sample: &str) -> f64 {
    let (_, body, _) = curl_url(ca, &format!("https://{address}/metrics"), &[]);
    let text = String::from_utf8(body).unwrap();
    metric(&text, sample).unwrap_or_else(|| panic!("no {sample} in:\n{text}"))
}

#[test]
fn https_edges_fill_from_their_parent_and_send_purges_on_over_https() {
    let dir = tempfile::tempdir().unwrap();
    let hosts = ["127.0.0.2", "127.0.0.3", "127.0.0.4"];
    let certificates = certificates(dir.path(), &hosts);
    let keys = key_file(dir.path());
    let origin_http = format!("127.0.0.1:{}", free_port());
    let origin = Node::start(
        kinema()
            .args(["serve", "--library", &library(dir.path())])
            .args(["--listen", &origin_http])
            .args(["--web-root", "/nonexistent", "--access-log", "true"])
            .args(["--cluster-node-id", "origin"])
            .args(["--cluster-gossip-listen", "127.0.0.1:0"])
            .args(["--cluster-key-file", &keys])
            .args(["--cluster-public-url", &format!("http://{origin_http}")])
            .current_dir(dir.path()),
    );
    let seed = gossip_address(&origin.wait_for_line(&["joined the cluster", "node=origin"]));
    origin.wait_for_line(&["origin serving"]);

    let port = shared_port();
    let addresses: Vec<String> = hosts.iter().map(|host| format!("{host}:{port}")).collect();
    let joined = Joined {
        seed: &seed,
        keys: &keys,
    };
    let (ca, cert, key) = (
        path(&certificates.ca),
        path(&certificates.cert),
        path(&certificates.key),
    );
    let flags = [
        "--tls-cert",
        cert.as_str(),
        "--tls-key",
        key.as_str(),
        "--origin-ca",
        ca.as_str(),
        "--purge-token",
        "secret",
        "--prefetch-segments",
        "0",
    ];
    let origin_url = format!("http://{origin_http}");
    let edges: Vec<Node> = ["edge-a", "edge-b", "edge-c"]
        .iter()
        .zip(&addresses)
        .map(|(id, listen)| {
            let public_url = format!("https://{listen}");
            edge_with(
                dir.path(),
                id,
                listen,
                &origin_url,
                &public_url,
                joined,
                &flags,
            )
        })
        .collect();
    let started = std::time::Instant::now();
    for (edge, address) in edges.iter().zip(&addresses) {
        edge.wait_for_line(&["edge serving", "tls=true"]);
        while https_metric(
            &certificates.ca,
            address,
            "kinema_edge_cluster_live_members",
        ) < 4.0
        {
            assert!(
                started.elapsed() < DEADLINE,
                "{address} never saw the cluster"
            );
            std::thread::sleep(std::time::Duration::from_millis(100));
        }
    }

    let segment = "/v/clip/g1700000000000/v180/1.m4s";
    for address in &addresses {
        let (head, body, _) = curl_url(
            &certificates.ca,
            &format!("https://{address}{segment}"),
            &[],
        );
        assert!(head.contains(" 200"), "{head}");
        assert_eq!(body, vec![1u8; 90_000]);
    }
    // Two edges filled from the video's parent over HTTPS, none failed.
    let total = |name: &str| -> f64 {
        addresses
            .iter()
            .map(|address| https_metric(&certificates.ca, address, name))
            .sum()
    };
    assert_eq!(total("kinema_edge_placement_parent_fills_total"), 2.0);
    assert_eq!(total("kinema_edge_placement_parent_failures_total"), 0.0);
    origin.wait_for_line(&["kinema::access", &format!("path={segment} ")]);
    assert_eq!(origin.fetches_of(segment), 1);

    let (head, body, _) = curl_url(
        &certificates.ca,
        &format!("https://{}/v/clip/*", addresses[1]),
        &["-X", "PURGE", "-H", "Authorization: Bearer secret"],
    );
    assert!(head.contains(" 200"), "{head}");
    let answer: serde_json::Value = serde_json::from_slice(&body).unwrap();
    assert_eq!(answer["failed"], 0, "{answer}");
    assert_eq!(answer["nodes"].as_array().unwrap().len(), 2, "{answer}");
    for address in &addresses {
        let (head, _, _) = curl_url(
            &certificates.ca,
            &format!("https://{address}{segment}"),
            &["-H", "Cache-Control: only-if-cached"],
        );
        assert!(head.contains(" 504"), "{address}: {head}");
    }
}
