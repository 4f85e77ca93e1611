//! HTTPS for the origin: the TLS setup `kinema serve` asks for
//! (`--tls-cert`/`--tls-key` or `--tls-self-signed`), and the SIGHUP reload
//! of the certificate, the key ring and the admin tokens.
//!
//! The TLS machinery lives in `kinema_http::tls`, the checks of the
//! settings and the listeners (redirect, HSTS) in `kinema_http::https`;
//! this module only hands them the origin's settings and reloads.

use std::sync::Arc;

use kinema_http::tls::ServerTls;

use crate::Error;
use crate::access::Access;
use crate::config::Config;

/// The TLS setup the settings ask for, or `None` for plain HTTP: the checks
/// kinema-http's `https` module makes for every server.
pub(crate) fn server_tls(config: &Config) -> Result<Option<ServerTls>, Error> {
    let settings = kinema_http::https::HttpsSettings {
        tls_cert: config.tls_cert.as_deref(),
        tls_key: config.tls_key.as_deref(),
        tls_self_signed: config.tls_self_signed,
        redirect_http: config.redirect_http,
        hsts: config.hsts,
    };
    settings.server_tls().map_err(|error| match error {
        kinema_http::https::HttpsError::Settings(message) => Error::Config(message),
        kinema_http::https::HttpsError::Tls(error) => Error::Tls(error),
    })
}

/// On every SIGHUP, re-reads the certificate files (if any), the key ring
/// and the admin tokens. Each reload that fails keeps what was loaded
/// before, so a half-finished rotation never takes the server down.
pub(crate) fn reload_on_sighup(
    access: Arc<Access>,
    tls: Option<ServerTls>,
) -> std::io::Result<tokio::task::JoinHandle<()>> {
    use tokio::signal::unix::{SignalKind, signal};
    let mut hangups = signal(SignalKind::hangup())?;
    Ok(tokio::spawn(async move {
        while hangups.recv().await.is_some() {
            let access = access.clone();
            let tls = tls.clone();
            let reloaded = tokio::task::spawn_blocking(move || {
                if let Some(tls) = &tls {
                    match tls.reload() {
                        Ok(()) => tracing::info!("tls certificate reloaded"),
                        Err(error) => {
                            tracing::error!(%error, "tls certificate reload failed; keeping the old one")
                        }
                    }
                }
                match access.reload() {
                    Ok(()) => tracing::info!("key ring and admin tokens reloaded"),
                    Err(error) => {
                        tracing::error!(%error, "access reload failed; keeping the old keys and tokens")
                    }
                }
            })
            .await;
            if let Err(error) = reloaded {
                tracing::error!(%error, "reload panicked");
            }
        }
    }))
}
