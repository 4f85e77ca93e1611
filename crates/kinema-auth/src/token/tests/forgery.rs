//! Tampered, forged and malformed tokens: each is refused with the reason
//! its first failing check gives, and never opens anything.

use super::*;

#[test]
fn claims_no_signer_writes_are_malformed_even_when_signed() {
    let ring = ring();
    let path = "/v/a/master.m3u8";
    let base = Claims::new(video("a"), at(NOW + 3600));
    let forms = [
        // Host bits set: `Claims::client` truncates, so a second
        // encoding of 127.0.0.0/8.
        Claims {
            client: Some("127.0.0.1/8".parse().unwrap()),
            ..base.clone()
        },
        // IPv4-mapped: `Claims::client` stores it as 127.0.0.1/32.
        Claims {
            client: Some("::ffff:127.0.0.1/128".parse().unwrap()),
            ..base.clone()
        },
        // An empty window, which verified within the skew.
        Claims {
            not_before: Some(NOW + 3600),
            ..base.clone()
        },
        Claims {
            session: Some("two words".into()),
            ..base.clone()
        },
    ];
    for claims in forms {
        let token = sign(&ring, &claims).unwrap();
        assert_eq!(
            check(&ring, &token, path, "127.0.0.1", NOW + 3600),
            Err(Refusal::Malformed),
            "{claims:?}"
        );
    }
    let canonical = base
        .client("127.0.0.1/8".parse().unwrap())
        .session("s-1")
        .unwrap();
    let token = sign(&ring, &canonical).unwrap();
    assert!(check(&ring, &token, path, "127.0.0.1", NOW).is_ok());
}

#[test]
fn tampered_signature_is_bad_signature() {
    let ring = ring();
    let token = token_for("/v/a/", 60);
    let mut bytes = URL_SAFE_NO_PAD.decode(&token).unwrap();
    let last = bytes.len() - 1;
    for index in [last, last - 31, last - 16] {
        let mut tampered = bytes.clone();
        tampered[index] ^= 0x01;
        let tampered = URL_SAFE_NO_PAD.encode(tampered);
        assert_eq!(
            check(&ring, &tampered, "/v/a/1.m4s", "127.0.0.1", NOW),
            Err(Refusal::BadSignature),
            "byte {index}"
        );
    }
    // A truncated MAC leaves a payload that does not parse exactly.
    bytes.truncate(bytes.len() - 1);
    assert_eq!(
        check(
            &ring,
            &URL_SAFE_NO_PAD.encode(&bytes),
            "/v/a/1.m4s",
            "127.0.0.1",
            NOW
        ),
        Err(Refusal::Malformed)
    );
}

/// Payload offsets of a token signed by `new` for scope `/v/a/`:
/// version 0, flags 1, key id length 2, key id 3..6, expiry 6..14,
/// scope length 14, scope 15..20.
#[test]
fn tampered_payload_is_bad_signature() {
    let ring = ring();
    let token = token_for("/v/a/", 60);
    let bytes = URL_SAFE_NO_PAD.decode(&token).unwrap();
    assert_eq!(&bytes[3..6], b"new");
    assert_eq!(&bytes[15..20], b"/v/a/");
    // Extend the expiry by a year.
    let mut later = bytes.clone();
    later[10] = later[10].wrapping_add(1);
    // Widen the scope to every video: "/v/a/" -> "/v/b/".
    let mut widened = bytes.clone();
    widened[18] = b'b';
    for tampered in [later, widened] {
        let tampered = URL_SAFE_NO_PAD.encode(tampered);
        assert_eq!(
            check(&ring, &tampered, "/v/b/1.m4s", "127.0.0.1", NOW),
            Err(Refusal::BadSignature)
        );
        assert_eq!(
            check(&ring, &tampered, "/v/a/1.m4s", "127.0.0.1", NOW),
            Err(Refusal::BadSignature)
        );
    }
}

#[test]
fn tampered_key_id_is_unknown_key_or_bad_signature() {
    let ring = ring();
    let token = token_for("/v/a/", 60);
    let bytes = URL_SAFE_NO_PAD.decode(&token).unwrap();
    // A key id the ring does not have.
    let mut unknown = bytes.clone();
    unknown[3..6].copy_from_slice(b"xyz");
    assert_eq!(
        check(
            &ring,
            &URL_SAFE_NO_PAD.encode(unknown),
            "/v/a/1.m4s",
            "127.0.0.1",
            NOW
        ),
        Err(Refusal::UnknownKey)
    );
    // Another key of the ring: the MAC was made with a different secret.
    let mut other = bytes.clone();
    other[2] = 3;
    other.splice(3..6, *b"old");
    assert_eq!(
        check(
            &ring,
            &URL_SAFE_NO_PAD.encode(other),
            "/v/a/1.m4s",
            "127.0.0.1",
            NOW
        ),
        Err(Refusal::BadSignature)
    );
}

#[test]
fn retired_and_unknown_keys_are_refused_and_rotation_keeps_old_tokens() {
    let mut ring = ring();
    let old_token = token_for("/v/a/", 3600);
    // The ring signs with "new"; a token under "old" still verifies.
    let mut old_only = KeyRing::empty();
    old_only
        .add_key(KeyId::new("old").unwrap(), vec![1; 32], at(NOW - 1000))
        .unwrap();
    let under_old = sign(&old_only, &Claims::new(video("a"), at(NOW + 3600))).unwrap();
    assert_eq!(
        check(&ring, &under_old, "/v/a/1.m4s", "127.0.0.1", NOW)
            .unwrap()
            .key_id,
        "old"
    );
    ring.retire("old").unwrap();
    assert_eq!(
        check(&ring, &under_old, "/v/a/1.m4s", "127.0.0.1", NOW),
        Err(Refusal::UnknownKey)
    );
    assert!(check(&ring, &old_token, "/v/a/1.m4s", "127.0.0.1", NOW).is_ok());
    ring.retire("new").unwrap();
    assert_eq!(
        check(&ring, &old_token, "/v/a/1.m4s", "127.0.0.1", NOW),
        Err(Refusal::UnknownKey)
    );
    assert_eq!(
        sign(&ring, &Claims::new(video("a"), at(NOW + 1))),
        Err(SignError::NoActiveKey)
    );
    assert_eq!(
        check(
            &KeyRing::empty(),
            &under_old,
            "/v/a/1.m4s",
            "127.0.0.1",
            NOW
        ),
        Err(Refusal::UnknownKey)
    );
}

#[test]
fn a_different_ring_with_the_same_key_id_is_bad_signature() {
    let token = token_for("/v/a/", 60);
    let mut impostor = KeyRing::empty();
    impostor
        .add_key(KeyId::new("new").unwrap(), vec![9; 32], at(NOW))
        .unwrap();
    assert_eq!(
        check(&impostor, &token, "/v/a/1.m4s", "127.0.0.1", NOW),
        Err(Refusal::BadSignature)
    );
}

#[test]
fn malformed_tokens() {
    let ring = ring();
    let valid = URL_SAFE_NO_PAD.decode(token_for("/v/a/", 60)).unwrap();
    let mut wrong_version = valid.clone();
    wrong_version[0] = 2;
    let mut unknown_flag = valid.clone();
    unknown_flag[1] = 0x80;
    let mut trailing = valid[..valid.len() - MAC_LEN].to_vec();
    trailing.push(0);
    trailing.extend_from_slice(&valid[valid.len() - MAC_LEN..]);
    let encoded = |bytes: Vec<u8>| URL_SAFE_NO_PAD.encode(bytes);
    let cases = [
        String::new(),
        "not base64!".to_string(),
        "AAAA".to_string(),
        format!("{}=", encoded(valid.clone())),
        encoded(wrong_version),
        encoded(unknown_flag),
        encoded(trailing),
        encoded(vec![0; MAC_LEN]),
        "A".repeat(MAX_TOKEN_LEN + 4),
    ];
    for token in cases {
        assert_eq!(
            check(&ring, &token, "/v/a/1.m4s", "127.0.0.1", NOW),
            Err(Refusal::Malformed),
            "{token:?}"
        );
    }
}

#[test]
fn checks_run_in_order_so_a_forgery_learns_nothing_about_its_claims() {
    // An expired token for the wrong video from the wrong address, with a
    // broken MAC, is refused as a bad signature, not as expired.
    let ring = ring();
    let claims = Claims::new(video("a"), at(NOW - 1000)).client("192.0.2.1/32".parse().unwrap());
    let mut bytes = URL_SAFE_NO_PAD
        .decode(sign(&ring, &claims).unwrap())
        .unwrap();
    let last = bytes.len() - 1;
    bytes[last] ^= 0xff;
    assert_eq!(
        check(
            &ring,
            &URL_SAFE_NO_PAD.encode(bytes),
            "/v/b/1.m4s",
            "10.0.0.1",
            NOW
        ),
        Err(Refusal::BadSignature)
    );
}
