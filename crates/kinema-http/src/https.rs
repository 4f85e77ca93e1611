//! HTTPS as a server's settings ask for it, the one setup `kinema serve` and
//! `kinema edge` share: the same keys (`tls_cert`, `tls_key`,
//! `tls_self_signed`, `redirect_http`, `hsts`), the same checks that they
//! make sense together, and the same listeners (the HTTPS one, with
//! `Strict-Transport-Security` when asked, and an optional plain one that
//! redirects to it).
//!
//! The TLS machinery itself (certificates, ALPN, resumption, reload) is
//! [`crate::tls`]'s; this module only chooses and wires it. It reloads
//! nothing by itself: a server decides what SIGHUP re-reads.

use std::future::Future;
use std::io;
use std::net::SocketAddr;
use std::path::Path;
use std::sync::Arc;
use std::time::Duration;

use tokio::net::TcpListener;

use crate::Handler;
use crate::server::{ServerConfig, ServerStats, serve, serve_sampled};
use crate::tcp_info::TcpInfoSampling;
use crate::tls::{Hsts, RedirectToHttps, ServerTls, TlsError};

/// `Strict-Transport-Security` max-age with `hsts`: one year, the value
/// browsers' preload lists ask for.
pub const HSTS_MAX_AGE: Duration = Duration::from_secs(365 * 24 * 60 * 60);

/// Host names a `tls_self_signed` certificate is made for.
const SELF_SIGNED_HOSTS: [&str; 3] = ["localhost", "127.0.0.1", "::1"];

/// A server's HTTPS settings, borrowed from its configuration.
#[derive(Debug, Clone, Copy, Default)]
pub struct HttpsSettings<'a> {
    /// PEM certificate chain (leaf first); with `tls_key`, HTTPS only.
    pub tls_cert: Option<&'a Path>,
    /// PEM private key of `tls_cert`.
    pub tls_key: Option<&'a Path>,
    /// A certificate made at start for localhost, 127.0.0.1 and ::1.
    pub tls_self_signed: bool,
    /// A plain-HTTP listener here redirects every request to HTTPS.
    pub redirect_http: Option<SocketAddr>,
    /// Send `Strict-Transport-Security` on HTTPS responses.
    pub hsts: bool,
}

/// Why the HTTPS settings cannot be served.
#[derive(Debug, thiserror::Error)]
pub enum HttpsError {
    /// The settings contradict each other; the message names the fix.
    #[error("{0}")]
    Settings(String),
    #[error(transparent)]
    Tls(#[from] TlsError),
}

impl HttpsSettings<'_> {
    /// The TLS setup the settings ask for, or `None` for plain HTTP.
    pub fn server_tls(&self) -> Result<Option<ServerTls>, HttpsError> {
        let settings = |message: &str| Err(HttpsError::Settings(message.into()));
        let tls = match (self.tls_cert, self.tls_key, self.tls_self_signed) {
            (Some(_), Some(_), true) => {
                return settings(
                    "tls_self_signed and tls_cert/tls_key exclude each other; pick one",
                );
            }
            (Some(cert), Some(key), false) => Some(ServerTls::from_pem_files(cert, key)?),
            (Some(_), None, _) => {
                return settings("tls_cert needs tls_key (the certificate's private key)");
            }
            (None, Some(_), _) => {
                return settings("tls_key needs tls_cert (the certificate chain)");
            }
            (None, None, true) => {
                let hosts = SELF_SIGNED_HOSTS.map(String::from);
                let (tls, _pem) = ServerTls::self_signed(&hosts)?;
                tracing::warn!(
                    "serving https with a self-signed certificate for localhost: clients must skip verification (curl -k)"
                );
                Some(tls)
            }
            (None, None, false) => None,
        };
        if tls.is_none() && self.redirect_http.is_some() {
            return settings(
                "redirect_http sends clients to https, so it needs tls_cert/tls_key or tls_self_signed",
            );
        }
        if tls.is_none() && self.hsts {
            return settings(
                "hsts is only sent over https; it needs tls_cert/tls_key or tls_self_signed",
            );
        }
        Ok(tls)
    }
}

/// What [`serve_https`] serves besides the handler.
#[derive(Debug)]
pub struct HttpsListeners {
    /// The main listener: HTTPS when `tls` is set, else plain HTTP.
    pub listener: TcpListener,
    pub tls: Option<ServerTls>,
    /// Where a plain listener redirecting to HTTPS binds (needs `tls`).
    pub redirect_http: Option<SocketAddr>,
    /// Wrap the handler in [`Hsts`] (needs `tls`).
    pub hsts: bool,
    pub server: ServerConfig,
    pub stats: Arc<ServerStats>,
    pub tcp_info: Option<TcpInfoSampling>,
}

/// Serves `handler` on `listeners.listener` (HTTPS with `tls`: ALPN h2 or
/// http/1.1), and the redirect listener if asked, until `shutdown`
/// resolves; both drain, and the first error is returned.
pub async fn serve_https<H: Handler>(
    listeners: HttpsListeners,
    handler: Arc<H>,
    shutdown: impl Future<Output = ()> + Send,
) -> io::Result<()> {
    let HttpsListeners {
        listener,
        tls,
        redirect_http,
        hsts,
        server,
        stats,
        tcp_info,
    } = listeners;
    let https_port = listener.local_addr()?.port();
    // One shutdown signal, watched by the main and the redirect listener.
    let (stop, stopped) = tokio::sync::watch::channel(false);
    let redirect = match redirect_http {
        Some(address) => {
            let redirect_listener = TcpListener::bind(address).await?;
            tracing::info!(%address, "redirecting plain http to https");
            let mut stopped = stopped.clone();
            Some(tokio::spawn(serve(
                redirect_listener,
                Arc::new(RedirectToHttps::new(https_port)),
                server.clone(),
                None,
                async move {
                    let _ = stopped.wait_for(|stop| *stop).await;
                },
            )))
        }
        None => None,
    };
    let acceptor = tls.as_ref().map(ServerTls::acceptor);
    let stop = &stop;
    let main_shutdown = async move {
        shutdown.await;
        let _ = stop.send(true);
    };
    let served = if hsts && tls.is_some() {
        let handler = Arc::new(Hsts::new(handler, HSTS_MAX_AGE));
        serve_sampled(
            listener,
            handler,
            server,
            acceptor,
            stats,
            tcp_info,
            main_shutdown,
        )
        .await
    } else {
        serve_sampled(
            listener,
            handler,
            server,
            acceptor,
            stats,
            tcp_info,
            main_shutdown,
        )
        .await
    };
    // Also when the main listener failed rather than being asked to stop.
    let _ = stop.send(true);
    if let Some(redirect) = redirect {
        match redirect.await {
            Ok(result) => result?,
            Err(join) => tracing::error!(error = %join, "redirect listener panicked"),
        }
    }
    served
}

#[cfg(test)]
mod tests {
    use super::*;

    fn refused(settings: HttpsSettings<'_>) -> String {
        match settings.server_tls() {
            Err(HttpsError::Settings(message)) => message,
            other => panic!("expected a settings error, got {other:?}"),
        }
    }

    #[test]
    fn settings_that_contradict_each_other_are_refused() {
        let cert = Path::new("/nonexistent/cert.pem");
        let key = Path::new("/nonexistent/key.pem");
        let both = HttpsSettings {
            tls_cert: Some(cert),
            tls_key: Some(key),
            tls_self_signed: true,
            ..HttpsSettings::default()
        };
        assert!(refused(both).contains("exclude each other"));
        let cert_only = HttpsSettings {
            tls_cert: Some(cert),
            ..HttpsSettings::default()
        };
        assert!(refused(cert_only).contains("tls_cert needs tls_key"));
        let key_only = HttpsSettings {
            tls_key: Some(key),
            ..HttpsSettings::default()
        };
        assert!(refused(key_only).contains("tls_key needs tls_cert"));
        let redirect = HttpsSettings {
            redirect_http: Some(SocketAddr::from(([127, 0, 0, 1], 0))),
            ..HttpsSettings::default()
        };
        assert!(refused(redirect).contains("redirect_http"));
        let hsts = HttpsSettings {
            hsts: true,
            ..HttpsSettings::default()
        };
        assert!(refused(hsts).contains("hsts is only sent over https"));
    }

    #[test]
    fn plain_http_self_signed_and_missing_files() {
        assert!(HttpsSettings::default().server_tls().unwrap().is_none());
        let self_signed = HttpsSettings {
            tls_self_signed: true,
            hsts: true,
            ..HttpsSettings::default()
        };
        assert!(self_signed.server_tls().unwrap().is_some());
        let missing = HttpsSettings {
            tls_cert: Some(Path::new("/nonexistent/cert.pem")),
            tls_key: Some(Path::new("/nonexistent/key.pem")),
            ..HttpsSettings::default()
        };
        let error = missing.server_tls().unwrap_err().to_string();
        assert!(error.contains("/nonexistent/cert.pem"), "{error}");
    }
}
