//! `kinema sign VIDEO`: print a signed URL for one video.
//!
//! The URL is `{base-url}/s/{token}/v/{VIDEO}/master.m3u8`; the token covers
//! every file of the video (scope `/v/{VIDEO}/`), so the player's requests
//! for child playlists and segments, which resolve relative to the master
//! playlist, carry it too.

use std::net::IpAddr;
use std::path::PathBuf;
use std::time::SystemTime;

use anyhow::{Context, Result, bail};
use clap::Args;
use ipnet::IpNet;
use kinema_auth::{AuthConfig, Claims, KeyRing, TokenScope};
use kinema_core::{ObjectPath, VideoId};
use serde::Serialize;

use crate::config::ConfigFile;

#[derive(Debug, Args, Serialize)]
pub struct SignArgs {
    /// The id of the video to sign a URL for.
    #[serde(skip)]
    video: String,

    /// How long the URL stays valid (e.g. 30m, 2h, 7days) [default: 2h]
    #[arg(long, env = "KINEMA_SIGN_TTL", value_name = "DURATION")]
    #[serde(skip_serializing_if = "Option::is_none")]
    ttl: Option<String>,

    /// Bind the URL to a client address or network (203.0.113.7, 2001:db8::/48);
    /// requests from elsewhere are refused with address_mismatch.
    #[arg(long, value_name = "ADDR|CIDR")]
    #[serde(skip)]
    ip: Option<String>,

    /// Session id carried in the token (shows in logs).
    #[arg(long, value_name = "ID")]
    #[serde(skip)]
    session: Option<String>,

    /// File of the video the URL points at; the token covers all of them.
    #[arg(long, default_value = "master.m3u8", value_name = "PATH")]
    #[serde(skip)]
    file: String,

    /// Scheme, host and port of the server [default: http://127.0.0.1:8080]
    #[arg(long, env = "KINEMA_BASE_URL", value_name = "URL")]
    #[serde(skip_serializing_if = "Option::is_none")]
    base_url: Option<String>,

    /// Key ring file [default: kinema-keys.toml]
    #[arg(long, env = "KINEMA_KEYS", value_name = "FILE")]
    #[serde(skip_serializing_if = "Option::is_none")]
    keys: Option<PathBuf>,
}

/// Parses `--ip`: a bare address means exactly that address.
pub fn parse_client(text: &str) -> Result<IpNet> {
    if let Ok(network) = text.parse::<IpNet>() {
        return Ok(network);
    }
    if let Ok(address) = text.parse::<IpAddr>() {
        return Ok(IpNet::from(address));
    }
    bail!(
        "--ip {text:?} is neither an address nor a CIDR network (e.g. 203.0.113.7 or 203.0.113.0/24)"
    )
}

pub fn run(config_file: &ConfigFile, args: SignArgs) -> Result<()> {
    let config: AuthConfig = config_file.resolve("auth", &args)?;
    let video = VideoId::new(args.video.clone()).context("cannot sign a url")?;
    let file = ObjectPath::new(args.file.clone()).context("--file")?;
    let base_url = config.base_url.trim_end_matches('/');
    if !(base_url.starts_with("http://") || base_url.starts_with("https://")) {
        bail!("base url {base_url:?} must start with http:// or https://");
    }
    let ring = KeyRing::load(&config.keys)?;
    let mut claims = Claims::expiring_in(TokenScope::video(&video), SystemTime::now(), config.ttl)
        .context("--ttl")?;
    if let Some(ip) = &args.ip {
        claims = claims.client(parse_client(ip)?);
    }
    if let Some(session) = &args.session {
        claims = claims.session(session.clone())?;
    }
    let token = kinema_auth::sign(&ring, &claims)
        .with_context(|| format!("cannot sign with {}", config.keys.display()))?;
    println!("{base_url}/s/{token}/v/{video}/{file}");
    Ok(())
}
