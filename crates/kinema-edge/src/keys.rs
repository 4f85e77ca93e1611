//! The edge's key ring kept current: re-read on SIGHUP, as the origin does,
//! so a key added or retired on every node takes effect without a restart.
//! A reload that fails keeps the ring served before and says why.

use std::sync::Arc;

use kinema_auth::LiveKeyRing;

/// Re-reads `keyring`'s file on every SIGHUP, off the reactor.
pub(crate) fn reload_on_sighup(
    keyring: Arc<LiveKeyRing>,
) -> std::io::Result<tokio::task::JoinHandle<()>> {
    use tokio::signal::unix::{SignalKind, signal};
    let mut hangups = signal(SignalKind::hangup())?;
    Ok(tokio::spawn(async move {
        while hangups.recv().await.is_some() {
            let keyring = keyring.clone();
            match tokio::task::spawn_blocking(move || keyring.reload()).await {
                Ok(Ok(())) => tracing::info!("edge key ring reloaded"),
                Ok(Err(error)) => {
                    tracing::error!(%error, "edge key ring reload failed; keeping the old keys")
                }
                Err(error) => tracing::error!(%error, "edge key ring reload panicked"),
            }
        }
    }))
}
