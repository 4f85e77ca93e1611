//! Signed-URL tokens: the payload parser and the verifier never panic, a
//! token verifies only with its key's MAC, and a token that verifies says
//! exactly what signing its claims again writes (no second encoding of the
//! same claims, nothing the signer could not have meant).

#![no_main]

use std::net::{IpAddr, Ipv4Addr, Ipv6Addr};
use std::sync::OnceLock;
use std::time::{Duration, UNIX_EPOCH};

use base64::Engine;
use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use hmac::{Hmac, Mac};
use kinema_auth::keyring::{KeyId, KeyRing};
use kinema_auth::token::{self, Claims};
use libfuzzer_sys::fuzz_target;
use sha2::Sha256;

const SECRET: [u8; 32] = [7; 32];

/// The fuzzer's bytes: byte 0 bit 0 signs the payload with the ring's key
/// (else it is the token text as it is), bit 1 makes the client IPv4; then
/// the clock (u64 LE), the skew (u16 LE), the client's 16 address bytes, a
/// length byte and the request path; the rest is the payload.
struct Input<'a> {
    sign: bool,
    v4: bool,
    now: u64,
    skew: u16,
    client: [u8; 16],
    path: &'a str,
    payload: &'a [u8],
}

impl<'a> Input<'a> {
    fn read(data: &'a [u8]) -> Option<Self> {
        let (head, rest) = data.split_at_checked(28)?;
        let path_length = usize::from(head[27]);
        let (path, payload) = rest.split_at_checked(path_length)?;
        Some(Input {
            sign: head[0] & 1 != 0,
            v4: head[0] & 2 != 0,
            now: u64::from_le_bytes(head[1..9].try_into().unwrap()),
            skew: u16::from_le_bytes(head[9..11].try_into().unwrap()),
            client: head[11..27].try_into().unwrap(),
            path: std::str::from_utf8(path).ok()?,
            payload,
        })
    }
}

fn ring() -> &'static KeyRing {
    static RING: OnceLock<KeyRing> = OnceLock::new();
    RING.get_or_init(|| {
        let mut ring = KeyRing::empty();
        ring.add_key(KeyId::new("k").unwrap(), SECRET.to_vec(), UNIX_EPOCH)
            .unwrap();
        ring
    })
}

fuzz_target!(|data: &[u8]| {
    let Some(input) = Input::read(data) else {
        return;
    };
    let ring = ring();
    let token = if input.sign {
        let mut mac = Hmac::<Sha256>::new_from_slice(&SECRET).unwrap();
        mac.update(&input.payload);
        let mut bytes = input.payload.to_vec();
        bytes.extend_from_slice(&mac.finalize().into_bytes());
        URL_SAFE_NO_PAD.encode(bytes)
    } else {
        match std::str::from_utf8(input.payload) {
            Ok(text) => text.to_string(),
            Err(_) => return,
        }
    };
    let octets = input.client;
    let client = if input.v4 {
        IpAddr::V4(Ipv4Addr::new(octets[0], octets[1], octets[2], octets[3]))
    } else {
        IpAddr::V6(Ipv6Addr::from(octets))
    };
    let now = UNIX_EPOCH + Duration::from_secs(input.now % (1 << 40));
    let skew = Duration::from_secs(u64::from(input.skew));

    if let Some((inner, rest)) = token::split_signed_path(input.path) {
        assert_eq!(format!("/s/{inner}{rest}"), input.path);
        assert!(!inner.contains('/'));
        assert!(rest.is_empty() || rest.starts_with('/'));
    }

    let Ok(claims) = token::verify(ring, &token, input.path, client, now, skew) else {
        return;
    };
    assert!(input.sign, "a token verified without the key's MAC");
    assert_eq!(claims.key_id, "k");
    let scope = claims.scope.as_str();
    assert!(
        if scope.ends_with('/') {
            input.path.starts_with(scope)
        } else {
            input.path == scope
        },
        "{:?} out of scope {scope:?}",
        input.path
    );
    assert!(
        claims
            .expires_at
            .checked_add(skew)
            .is_none_or(|end| now < end)
    );
    if let Some(network) = claims.client {
        assert!(network.contains(&client.to_canonical()));
    }

    let mut again = Claims::new(claims.scope.clone(), claims.expires_at);
    if let Some(not_before) = claims.not_before {
        again = again
            .not_before(not_before)
            .expect("a verified token's window is not empty");
    }
    if let Some(network) = claims.client {
        again = again.client(network);
    }
    if let Some(session) = &claims.session {
        again = again
            .session(session.clone())
            .expect("a verified token's session is one a signer may set");
    }
    assert_eq!(
        token::sign(ring, &again).unwrap(),
        token,
        "a verified token is not what signing its claims writes"
    );
});
