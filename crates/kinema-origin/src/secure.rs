//! HTTPS for the origin: the TLS setup `kinema serve` asks for
//! (`--tls-cert`/`--tls-key` or `--tls-self-signed`), and the SIGHUP reload
//! of the certificate, the key ring and the admin tokens.
//!
//! The TLS machinery itself lives in `kinema_http::tls`; this module only
//! checks that the settings make sense together and wires them up.

use std::sync::Arc;
use std::time::Duration;

use kinema_http::tls::ServerTls;

use crate::Error;
use crate::access::Access;
use crate::config::Config;

/// `Strict-Transport-Security` max-age with `--hsts`: one year, the value
/// browsers' preload lists ask for.
pub const HSTS_MAX_AGE: Duration = Duration::from_secs(365 * 24 * 60 * 60);

/// The TLS setup the settings ask for, or `None` for plain HTTP.
pub(crate) fn server_tls(config: &Config) -> Result<Option<ServerTls>, Error> {
    let tls = match (&config.tls_cert, &config.tls_key, config.tls_self_signed) {
        (Some(_), Some(_), true) => {
            return Err(Error::Config(
                "tls_self_signed and tls_cert/tls_key exclude each other; pick one".into(),
            ));
        }
        (Some(cert), Some(key), false) => Some(ServerTls::from_pem_files(cert, key)?),
        (Some(_), None, _) => {
            return Err(Error::Config(
                "tls_cert needs tls_key (the certificate's private key)".into(),
            ));
        }
        (None, Some(_), _) => {
            return Err(Error::Config(
                "tls_key needs tls_cert (the certificate chain)".into(),
            ));
        }
        (None, None, true) => {
            let hosts = ["localhost", "127.0.0.1", "::1"].map(String::from);
            let (tls, _pem) = ServerTls::self_signed(&hosts)?;
            tracing::warn!(
                "serving https with a self-signed certificate for localhost: clients must skip verification (curl -k)"
            );
            Some(tls)
        }
        (None, None, false) => None,
    };
    if tls.is_none() && config.redirect_http.is_some() {
        return Err(Error::Config(
            "redirect_http sends clients to https, so it needs tls_cert/tls_key or tls_self_signed"
                .into(),
        ));
    }
    if tls.is_none() && config.hsts {
        return Err(Error::Config(
            "hsts is only sent over https; it needs tls_cert/tls_key or tls_self_signed".into(),
        ));
    }
    Ok(tls)
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
