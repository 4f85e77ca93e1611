//! Serves the files of one directory from memory through kinema's listener:
//! the connection layer alone, without the origin's routes or caches, for
//! benchmarks (`bench/http-throughput.sh`, `bench/http-idle-memory.py`) and
//! profiling (`perf record`).
//!
//! ```sh
//! cargo run --release -p kinema-http --example static_server -- \
//!     --dir DIR [--listen 127.0.0.1:8090] [--threads 2] [--runtime per-core|multi]
//! ```
//!
//! `per-core` (the default) runs one single-threaded runtime per thread,
//! each accepting on its own SO_REUSEPORT socket, as nginx runs one worker
//! process per core; `multi` runs one work-stealing runtime.
//! Not a file server: files are read once at start, and paths map to them
//! verbatim (`/name` → `DIR/name`). As the origin's cache does, files of
//! 64 KiB or more are held in sealed memfds (`SharedFile`, sent by sendfile
//! on plain-TCP HTTP/1.1), smaller ones as `Bytes`.

use std::collections::HashMap;
use std::net::SocketAddr;
use std::path::PathBuf;
use std::sync::Arc;

use bytes::Bytes;
use http::{HeaderValue, Request, Response, StatusCode, header};
use kinema_http::{ConnectionInfo, Handler, RequestBody, ResponseBody, ServerConfig, SharedFile};

/// From this size on a file is held in a memfd (as in kinema-origin).
const SHARED_FILE_MIN: usize = 64 * 1024;

enum Content {
    Bytes(Bytes),
    File(SharedFile),
}

struct Files {
    by_path: HashMap<String, (Content, HeaderValue)>,
}

impl Handler for Files {
    async fn handle(
        &self,
        request: Request<RequestBody>,
        _connection: ConnectionInfo,
    ) -> Response<ResponseBody> {
        match self.by_path.get(request.uri().path()) {
            Some((content, content_type)) => {
                let body = match content {
                    Content::Bytes(bytes) => ResponseBody::Full(bytes.clone()),
                    Content::File(file) => ResponseBody::File(file.slice(0..file.len())),
                };
                let mut response = Response::new(body);
                response
                    .headers_mut()
                    .insert(header::CONTENT_TYPE, content_type.clone());
                response
            }
            None => {
                let mut response =
                    Response::new(ResponseBody::Full(Bytes::from_static(b"not found\n")));
                *response.status_mut() = StatusCode::NOT_FOUND;
                response
            }
        }
    }
}

struct Options {
    dir: PathBuf,
    listen: SocketAddr,
    threads: usize,
    per_core: bool,
}

fn parse_options() -> Result<Options, String> {
    let mut options = Options {
        dir: PathBuf::new(),
        listen: "127.0.0.1:8090".parse().unwrap(),
        threads: std::thread::available_parallelism().map_or(1, |n| n.get()),
        per_core: true,
    };
    let mut args = std::env::args().skip(1);
    while let Some(flag) = args.next() {
        let mut value = || args.next().ok_or(format!("{flag} needs a value"));
        match flag.as_str() {
            "--dir" => options.dir = PathBuf::from(value()?),
            "--listen" => {
                options.listen = value()?
                    .parse()
                    .map_err(|error| format!("--listen: {error}"))?;
            }
            "--threads" => {
                options.threads = value()?
                    .parse()
                    .map_err(|error| format!("--threads: {error}"))?;
            }
            "--runtime" => {
                options.per_core = match value()?.as_str() {
                    "per-core" => true,
                    "multi" => false,
                    other => return Err(format!("--runtime: {other:?} is not per-core or multi")),
                };
            }
            other => return Err(format!("unknown argument {other:?}")),
        }
    }
    if options.dir.as_os_str().is_empty() {
        return Err("--dir is required".into());
    }
    Ok(options)
}

fn load(dir: &PathBuf) -> std::io::Result<Files> {
    let mut by_path = HashMap::new();
    for entry in std::fs::read_dir(dir)? {
        let entry = entry?;
        if !entry.file_type()?.is_file() {
            continue;
        }
        let name = entry.file_name().to_string_lossy().into_owned();
        let content_type = match name.rsplit('.').next() {
            Some("m3u8") => "application/vnd.apple.mpegurl",
            Some("m4s") => "video/iso.segment",
            Some("mp4") => "video/mp4",
            _ => "application/octet-stream",
        };
        let bytes = std::fs::read(entry.path())?;
        let content = if bytes.len() >= SHARED_FILE_MIN {
            Content::File(SharedFile::from_bytes(&bytes)?)
        } else {
            Content::Bytes(Bytes::from(bytes))
        };
        by_path.insert(
            format!("/{name}"),
            (content, HeaderValue::from_static(content_type)),
        );
    }
    Ok(Files { by_path })
}

fn listener(addr: SocketAddr) -> std::io::Result<std::net::TcpListener> {
    let socket = socket2::Socket::new(
        socket2::Domain::for_address(addr),
        socket2::Type::STREAM,
        None,
    )?;
    socket.set_reuse_address(true)?;
    socket.set_reuse_port(true)?;
    socket.set_nonblocking(true)?;
    socket.bind(&addr.into())?;
    socket.listen(4096)?;
    Ok(socket.into())
}

async fn serve_until_ctrl_c(
    listener: std::net::TcpListener,
    files: Arc<Files>,
) -> std::io::Result<()> {
    let listener = tokio::net::TcpListener::from_std(listener)?;
    let shutdown = async {
        let _ = tokio::signal::ctrl_c().await;
    };
    kinema_http::serve(listener, files, ServerConfig::default(), None, shutdown).await
}

fn main() {
    let options = match parse_options() {
        Ok(options) => options,
        Err(error) => {
            eprintln!("static_server: {error}");
            std::process::exit(2);
        }
    };
    let files = match load(&options.dir) {
        Ok(files) => Arc::new(files),
        Err(error) => {
            eprintln!(
                "static_server: cannot read {}: {error}",
                options.dir.display()
            );
            std::process::exit(1);
        }
    };
    eprintln!(
        "static_server: {} files on {} ({} {} thread(s))",
        files.by_path.len(),
        options.listen,
        options.threads,
        if options.per_core {
            "per-core"
        } else {
            "multi"
        }
    );
    let result = if options.per_core {
        let threads: Vec<_> = (0..options.threads)
            .map(|_| {
                let files = files.clone();
                let listener = listener(options.listen);
                std::thread::spawn(move || -> std::io::Result<()> {
                    let runtime = tokio::runtime::Builder::new_current_thread()
                        .enable_all()
                        .build()?;
                    runtime.block_on(serve_until_ctrl_c(listener?, files))
                })
            })
            .collect();
        threads
            .into_iter()
            .map(|thread| {
                thread
                    .join()
                    .unwrap_or_else(|_| Err(std::io::Error::other("panicked")))
            })
            .collect::<std::io::Result<Vec<()>>>()
            .map(|_| ())
    } else {
        tokio::runtime::Builder::new_multi_thread()
            .worker_threads(options.threads)
            .enable_all()
            .build()
            .and_then(|runtime| {
                runtime.block_on(serve_until_ctrl_c(listener(options.listen)?, files))
            })
    };
    if let Err(error) = result {
        eprintln!("static_server: {error}");
        std::process::exit(1);
    }
}
