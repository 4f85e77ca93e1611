//! Tests of signing and verifying: scopes and clean paths, the time window,
//! client binding, session ids and refusal reasons. Tampered and forged
//! tokens are in `forgery`.

use super::*;

use std::time::UNIX_EPOCH;

use kinema_core::VideoId;

use crate::keyring::KeyId;

mod forgery;

const NOW: u64 = 1_750_000_000;
const SKEW: Duration = Duration::from_secs(30);

fn at(seconds: u64) -> SystemTime {
    UNIX_EPOCH + Duration::from_secs(seconds)
}

fn ring() -> KeyRing {
    let mut ring = KeyRing::empty();
    ring.add_key(KeyId::new("old").unwrap(), vec![1; 32], at(NOW - 1000))
        .unwrap();
    ring.add_key(KeyId::new("new").unwrap(), vec![2; 32], at(NOW - 10))
        .unwrap();
    ring
}

fn video(id: &str) -> TokenScope {
    TokenScope::video(&VideoId::new(id).unwrap())
}

fn localhost() -> IpAddr {
    "127.0.0.1".parse().unwrap()
}

fn check(
    ring: &KeyRing,
    token: &str,
    path: &str,
    client: &str,
    now: u64,
) -> Result<VerifiedClaims, Refusal> {
    verify(ring, token, path, client.parse().unwrap(), at(now), SKEW)
}

fn token_for(scope: &str, ttl: u64) -> String {
    sign(
        &ring(),
        &Claims::new(TokenScope::new(scope).unwrap(), at(NOW + ttl)),
    )
    .unwrap()
}

#[test]
fn a_valid_token_opens_every_file_of_its_video() {
    let ring = ring();
    let token = sign(&ring, &Claims::new(video("abc"), at(NOW + 3600))).unwrap();
    assert!(token.len() < 120, "{} chars: {token}", token.len());
    assert!(
        token
            .bytes()
            .all(|b| b.is_ascii_alphanumeric() || b == b'-' || b == b'_'),
        "{token}"
    );
    for path in [
        "/v/abc/master.m3u8",
        "/v/abc/manifest.mpd",
        "/v/abc/v360/index.m3u8",
        "/v/abc/v360/init.mp4",
        "/v/abc/v360/12.m4s",
        "/v/abc/thumbs/thumbs.vtt",
        // Every generation's files: what the playlists point to.
        "/v/abc/g1765067871000/v360/index.m3u8",
        "/v/abc/g1765067871000/v360/init.mp4",
        "/v/abc/g1765067871000/v360/12.m4s",
        "/v/abc/g1/thumbs/thumbs.vtt",
    ] {
        let claims = check(&ring, &token, path, "127.0.0.1", NOW).unwrap();
        assert_eq!(claims.key_id, "new");
        assert_eq!(claims.scope.as_str(), "/v/abc/");
        assert_eq!(claims.expires_at, at(NOW + 3600));
        assert_eq!(claims.client, None);
    }
}

#[test]
fn token_for_a_never_opens_b() {
    let ring = ring();
    let token = sign(&ring, &Claims::new(video("a"), at(NOW + 3600))).unwrap();
    for path in [
        "/v/b/master.m3u8",
        "/v/ab/master.m3u8",
        "/v/a-b/master.m3u8",
        "/v/A/master.m3u8",
        "/v/master.m3u8",
        "/v/a",
        "/v/b/../a/master.m3u8",
    ] {
        assert_eq!(
            check(&ring, &token, path, "127.0.0.1", NOW),
            Err(Refusal::OutOfScope),
            "{path}"
        );
    }
}

#[test]
fn dot_segment_and_encoding_games_are_out_of_scope() {
    let ring = ring();
    let token = sign(&ring, &Claims::new(video("a"), at(NOW + 3600))).unwrap();
    for path in [
        "/v/a/../b/master.m3u8",
        "/v/a/../../v/b/master.m3u8",
        "/v/a/./master.m3u8",
        "/v/a/x/../../b/1.m4s",
        "/v/a//master.m3u8",
        "/v/a/",
        "/v/a/%2e%2e/b/master.m3u8",
        "/v/a/%2E%2E/b/master.m3u8",
        "/v/a/..%2fb/master.m3u8",
        "/v/a/%252e%252e/b/master.m3u8",
        "/v/a/..\\b\\master.m3u8",
        "/v/a/master.m3u8\0",
        "/v/a/master.m3u8?x=1",
        "/v/a/master.m3u8#x",
        "/v/a/ma ster.m3u8",
        "/v/a/m\u{e9}.m3u8",
        "v/a/master.m3u8",
        "",
        "/",
    ] {
        assert_eq!(
            check(&ring, &token, path, "127.0.0.1", NOW),
            Err(Refusal::OutOfScope),
            "{path:?}"
        );
    }
    let long = format!("/v/a/{}", "x/".repeat(2000));
    assert_eq!(
        check(&ring, &token, &long, "127.0.0.1", NOW),
        Err(Refusal::OutOfScope)
    );
}

#[test]
fn exact_scopes_cover_one_path_only() {
    let ring = ring();
    let token = token_for("/v/a/master.m3u8", 60);
    assert!(check(&ring, &token, "/v/a/master.m3u8", "127.0.0.1", NOW).is_ok());
    assert_eq!(
        check(&ring, &token, "/v/a/master.m3u8x", "127.0.0.1", NOW),
        Err(Refusal::OutOfScope)
    );
    assert_eq!(
        check(&ring, &token, "/v/a/v360/index.m3u8", "127.0.0.1", NOW),
        Err(Refusal::OutOfScope)
    );
}

#[test]
fn scopes_are_validated() {
    for scope in ["/v/a/", "/", "/v/", "/v/a/master.m3u8"] {
        assert!(TokenScope::new(scope).is_ok(), "{scope}");
    }
    for scope in [
        "", "v/a/", "/v/../a/", "/v/./", "//", "/v//a/", "/v/%61/", "/v/a b/",
    ] {
        assert!(
            matches!(TokenScope::new(scope), Err(ClaimsError::BadScope(_))),
            "{scope:?}"
        );
    }
    assert!(TokenScope::new(format!("/{}", "a".repeat(300))).is_err());
}

#[test]
fn expiry_honours_the_skew_exactly_at_the_boundary() {
    let ring = ring();
    let token = token_for("/v/a/", 100);
    let path = "/v/a/master.m3u8";
    // Valid through expiry + skew - 1 s, refused from expiry + skew on.
    assert!(check(&ring, &token, path, "127.0.0.1", NOW + 100).is_ok());
    assert!(check(&ring, &token, path, "127.0.0.1", NOW + 129).is_ok());
    assert_eq!(
        check(&ring, &token, path, "127.0.0.1", NOW + 130),
        Err(Refusal::Expired)
    );
    assert_eq!(
        check(&ring, &token, path, "127.0.0.1", NOW + 100_000),
        Err(Refusal::Expired)
    );
    // Without skew the expiry itself is the first refused second.
    let strict = verify(
        &ring,
        &token,
        path,
        localhost(),
        at(NOW + 100),
        Duration::ZERO,
    );
    assert_eq!(strict, Err(Refusal::Expired));
    let strict = verify(
        &ring,
        &token,
        path,
        localhost(),
        at(NOW + 99),
        Duration::ZERO,
    );
    assert!(strict.is_ok());
}

/// A signer may write any 64-bit time into a token; one past what the
/// clock type holds (about 2^63 s) used to panic inside `verify`.
#[test]
fn expiry_beyond_the_clock_is_refused_not_a_panic() {
    let ring = ring();
    let path = "/v/a/master.m3u8";
    for seconds in [1u64 << 63, (1 << 63) + 1, u64::MAX] {
        let claims = Claims {
            scope: video("a"),
            expires_at: seconds,
            not_before: None,
            client: None,
            session: None,
        };
        let token = sign(&ring, &claims).unwrap();
        assert_eq!(
            check(&ring, &token, path, "127.0.0.1", NOW),
            Err(Refusal::Malformed),
            "expiry {seconds}"
        );
        let claims = Claims {
            not_before: Some(seconds),
            expires_at: u64::MAX,
            ..claims
        };
        let token = sign(&ring, &claims).unwrap();
        assert_eq!(
            check(&ring, &token, path, "127.0.0.1", NOW),
            Err(Refusal::Malformed),
            "not-before {seconds}"
        );
    }
    // The largest representable expiry still verifies.
    let far = from_unix_seconds(i64::MAX as u64).unwrap();
    let token = sign(&ring, &Claims::new(video("a"), far)).unwrap();
    assert_eq!(
        check(&ring, &token, path, "127.0.0.1", NOW)
            .unwrap()
            .expires_at,
        far
    );
}

#[test]
fn a_lifetime_past_the_clock_is_an_error_not_a_panic() {
    let huge = Duration::from_secs(300_000_000_000 * 31_557_600);
    let error = Claims::expiring_in(video("a"), at(NOW), huge).unwrap_err();
    assert_eq!(error, ClaimsError::ExpiryOutOfRange(huge));
    assert!(error.to_string().contains("use a shorter one"), "{error}");
    let claims = Claims::expiring_in(video("a"), at(NOW), Duration::from_secs(60)).unwrap();
    assert_eq!(claims, Claims::new(video("a"), at(NOW + 60)));
}

#[test]
fn not_before_honours_the_skew_exactly_at_the_boundary() {
    let ring = ring();
    let claims = Claims::new(video("a"), at(NOW + 3600))
        .not_before(at(NOW + 600))
        .unwrap();
    let token = sign(&ring, &claims).unwrap();
    let path = "/v/a/1.m4s";
    assert_eq!(
        check(&ring, &token, path, "127.0.0.1", NOW),
        Err(Refusal::NotYetValid)
    );
    assert_eq!(
        check(&ring, &token, path, "127.0.0.1", NOW + 569),
        Err(Refusal::NotYetValid)
    );
    let claims = check(&ring, &token, path, "127.0.0.1", NOW + 570).unwrap();
    assert_eq!(claims.not_before, Some(at(NOW + 600)));
    assert!(check(&ring, &token, path, "127.0.0.1", NOW + 600).is_ok());
    assert_eq!(
        Claims::new(video("a"), at(NOW)).not_before(at(NOW)),
        Err(ClaimsError::EmptyWindow)
    );
}

#[test]
fn client_binding_to_an_ipv4_address() {
    let ring = ring();
    let claims = Claims::new(video("a"), at(NOW + 60)).client("192.0.2.7/32".parse().unwrap());
    let token = sign(&ring, &claims).unwrap();
    let verified = check(&ring, &token, "/v/a/1.m4s", "192.0.2.7", NOW).unwrap();
    assert_eq!(verified.client, Some("192.0.2.7/32".parse().unwrap()));
    // The same client through a dual-stack socket.
    assert!(check(&ring, &token, "/v/a/1.m4s", "::ffff:192.0.2.7", NOW).is_ok());
    for other in ["192.0.2.8", "10.0.0.1", "::1", "2001:db8::7"] {
        assert_eq!(
            check(&ring, &token, "/v/a/1.m4s", other, NOW),
            Err(Refusal::AddressMismatch),
            "{other}"
        );
    }
}

#[test]
fn client_binding_to_an_ipv6_address_and_networks() {
    let ring = ring();
    let v6 = sign(
        &ring,
        &Claims::new(video("a"), at(NOW + 60)).client("2001:db8::1/128".parse().unwrap()),
    )
    .unwrap();
    assert!(check(&ring, &v6, "/v/a/1.m4s", "2001:db8::1", NOW).is_ok());
    assert_eq!(
        check(&ring, &v6, "/v/a/1.m4s", "2001:db8::2", NOW),
        Err(Refusal::AddressMismatch)
    );
    assert_eq!(
        check(&ring, &v6, "/v/a/1.m4s", "127.0.0.1", NOW),
        Err(Refusal::AddressMismatch)
    );

    let v4_net = sign(
        &ring,
        &Claims::new(video("a"), at(NOW + 60)).client("10.1.2.3/16".parse().unwrap()),
    )
    .unwrap();
    let verified = check(&ring, &v4_net, "/v/a/1.m4s", "10.1.200.9", NOW).unwrap();
    assert_eq!(verified.client, Some("10.1.0.0/16".parse().unwrap()));
    assert_eq!(
        check(&ring, &v4_net, "/v/a/1.m4s", "10.2.0.1", NOW),
        Err(Refusal::AddressMismatch)
    );

    let v6_net = sign(
        &ring,
        &Claims::new(video("a"), at(NOW + 60)).client("2001:db8:aa::/48".parse().unwrap()),
    )
    .unwrap();
    assert!(check(&ring, &v6_net, "/v/a/1.m4s", "2001:db8:aa:ff::9", NOW).is_ok());
    assert_eq!(
        check(&ring, &v6_net, "/v/a/1.m4s", "2001:db8:ab::1", NOW),
        Err(Refusal::AddressMismatch)
    );

    // An IPv4-mapped network given by the signer is stored as IPv4.
    let mapped =
        Claims::new(video("a"), at(NOW + 60)).client("::ffff:192.0.2.0/120".parse().unwrap());
    let token = sign(&ring, &mapped).unwrap();
    let verified = check(&ring, &token, "/v/a/1.m4s", "192.0.2.200", NOW).unwrap();
    assert_eq!(verified.client, Some("192.0.2.0/24".parse().unwrap()));
}

#[test]
fn session_ids_travel_in_the_token() {
    let ring = ring();
    let claims = Claims::new(video("a"), at(NOW + 60))
        .session("viewer-42")
        .unwrap();
    let token = sign(&ring, &claims).unwrap();
    let verified = check(&ring, &token, "/v/a/1.m4s", "127.0.0.1", NOW).unwrap();
    assert_eq!(verified.session.as_deref(), Some("viewer-42"));
    assert_eq!(
        Claims::new(video("a"), at(NOW)).session(""),
        Err(ClaimsError::BadSession)
    );
    assert_eq!(
        Claims::new(video("a"), at(NOW)).session("a b"),
        Err(ClaimsError::BadSession)
    );
    assert_eq!(
        Claims::new(video("a"), at(NOW)).session("x".repeat(65)),
        Err(ClaimsError::BadSession)
    );
}

#[test]
fn splitting_signed_paths() {
    assert_eq!(
        split_signed_path("/s/TOKEN/v/a/master.m3u8"),
        Some(("TOKEN", "/v/a/master.m3u8"))
    );
    assert_eq!(split_signed_path("/s/TOKEN"), Some(("TOKEN", "")));
    assert_eq!(split_signed_path("/s//v/a"), Some(("", "/v/a")));
    assert_eq!(split_signed_path("/v/a/master.m3u8"), None);
    assert_eq!(split_signed_path("/sx/T/v"), None);
    assert_eq!(split_signed_path("/s"), None);
}

#[test]
fn refusal_reasons_are_machine_readable() {
    let all = [
        Refusal::Expired,
        Refusal::NotYetValid,
        Refusal::BadSignature,
        Refusal::Malformed,
        Refusal::OutOfScope,
        Refusal::UnknownKey,
        Refusal::AddressMismatch,
        Refusal::MissingToken,
    ];
    let names: Vec<_> = all.iter().map(|refusal| refusal.as_str()).collect();
    assert_eq!(
        names,
        [
            "expired",
            "not_yet_valid",
            "bad_signature",
            "malformed",
            "out_of_scope",
            "unknown_key",
            "address_mismatch",
            "missing_token"
        ]
    );
    for refusal in all {
        assert_eq!(refusal.to_string(), refusal.as_str());
    }
}
