//! `kinema keys`, `kinema sign` and `kinema tokens` run as a user runs them:
//! the real binary, real files, and the library's verifier as the judge of
//! what they print.

use std::net::IpAddr;
use std::os::unix::fs::PermissionsExt;
use std::path::Path;
use std::process::{Command, Output};
use std::time::{Duration, SystemTime};

use kinema_auth::{AdminTokens, KeyRing, Refusal, Scope, split_signed_path, verify};

fn kinema(directory: &Path, args: &[&str]) -> Output {
    Command::new(env!("CARGO_BIN_EXE_kinema"))
        .args(args)
        .current_dir(directory)
        // Settings must come from the flags and files of each test alone.
        .env_remove("KINEMA_CONFIG")
        .env_remove("KINEMA_KEYS")
        .env_remove("KINEMA_TOKENS")
        .env_remove("KINEMA_SIGN_TTL")
        .env_remove("KINEMA_BASE_URL")
        .output()
        .expect("kinema runs")
}

fn succeed(directory: &Path, args: &[&str]) -> String {
    let output = kinema(directory, args);
    assert!(
        output.status.success(),
        "kinema {args:?} failed: {}",
        String::from_utf8_lossy(&output.stderr)
    );
    String::from_utf8(output.stdout).unwrap()
}

fn fail(directory: &Path, args: &[&str]) -> String {
    let output = kinema(directory, args);
    assert!(!output.status.success(), "kinema {args:?} succeeded");
    String::from_utf8(output.stderr).unwrap()
}

fn localhost() -> IpAddr {
    "127.0.0.1".parse().unwrap()
}

fn token_and_path(url: &str) -> (String, String) {
    let path = url
        .trim()
        .strip_prefix("http://127.0.0.1:8080")
        .expect("default base url");
    let (token, rest) = split_signed_path(path).unwrap();
    (token.to_string(), rest.to_string())
}

#[test]
fn keys_new_list_retire_and_sign_round_trip() {
    let directory = tempfile::tempdir().unwrap();
    let dir = directory.path();
    let first = succeed(dir, &["keys", "new"]).trim().to_string();
    let mode = std::fs::metadata(dir.join("kinema-keys.toml"))
        .unwrap()
        .permissions()
        .mode();
    assert_eq!(mode & 0o777, 0o600);

    let url = succeed(dir, &["sign", "demo", "--ttl", "10m"]);
    let (token, path) = token_and_path(&url);
    assert_eq!(path, "/v/demo/master.m3u8");
    let ring = KeyRing::load(&dir.join("kinema-keys.toml")).unwrap();
    let now = SystemTime::now();
    let claims = verify(&ring, &token, &path, localhost(), now, Duration::ZERO).unwrap();
    assert_eq!(claims.key_id, first);
    assert!(claims.expires_at > now + Duration::from_secs(9 * 60));
    assert!(claims.expires_at <= now + Duration::from_secs(10 * 60 + 1));
    assert_eq!(
        verify(
            &ring,
            &token,
            "/v/other/master.m3u8",
            localhost(),
            now,
            Duration::ZERO
        ),
        Err(Refusal::OutOfScope)
    );

    // Rotation: a second key signs new URLs; the old URL still verifies.
    let second = succeed(dir, &["keys", "new"]).trim().to_string();
    assert_ne!(first, second);
    let listing = succeed(dir, &["keys", "list"]);
    assert!(
        listing.contains(&first) && listing.contains("active"),
        "{listing}"
    );
    assert!(
        listing
            .lines()
            .any(|line| line.starts_with(&second) && line.ends_with("signing")),
        "{listing}"
    );
    let (newer, _) = token_and_path(&succeed(dir, &["sign", "demo"]));
    let ring = KeyRing::load(&dir.join("kinema-keys.toml")).unwrap();
    assert_eq!(
        verify(&ring, &newer, &path, localhost(), now, Duration::ZERO)
            .unwrap()
            .key_id,
        second
    );
    assert!(verify(&ring, &token, &path, localhost(), now, Duration::ZERO).is_ok());

    // Retiring the first key revokes its URLs.
    succeed(dir, &["keys", "retire", &first]);
    let ring = KeyRing::load(&dir.join("kinema-keys.toml")).unwrap();
    assert_eq!(
        verify(&ring, &token, &path, localhost(), now, Duration::ZERO),
        Err(Refusal::UnknownKey)
    );
    assert!(verify(&ring, &newer, &path, localhost(), now, Duration::ZERO).is_ok());
    let listing = succeed(dir, &["keys", "list"]);
    assert!(
        listing
            .lines()
            .any(|line| line.starts_with(&first) && line.ends_with("retired")),
        "{listing}"
    );
    let error = fail(dir, &["keys", "retire", "nope"]);
    assert!(error.contains("kinema keys list"), "{error}");
}

#[test]
fn sign_binds_addresses_and_honours_base_url_and_config() {
    let directory = tempfile::tempdir().unwrap();
    let dir = directory.path();
    succeed(dir, &["keys", "new", "--keys", "ring.toml"]);
    let url = succeed(
        dir,
        &[
            "sign",
            "clip_1",
            "--keys",
            "ring.toml",
            "--ip",
            "10.1.0.0/16",
            "--base-url",
            "https://video.example/",
            "--file",
            "manifest.mpd",
        ],
    );
    let path = url.trim().strip_prefix("https://video.example").unwrap();
    let (token, rest) = split_signed_path(path).unwrap();
    assert_eq!(rest, "/v/clip_1/manifest.mpd");
    let ring = KeyRing::load(&dir.join("ring.toml")).unwrap();
    let now = SystemTime::now();
    let inside: IpAddr = "10.1.9.9".parse().unwrap();
    assert!(verify(&ring, token, rest, inside, now, Duration::ZERO).is_ok());
    assert_eq!(
        verify(&ring, token, rest, localhost(), now, Duration::ZERO),
        Err(Refusal::AddressMismatch)
    );

    // The [auth] section supplies what flags do not.
    std::fs::write(
        dir.join("kinema.toml"),
        "[auth]\nkeys = \"ring.toml\"\nttl = \"90s\"\nbase_url = \"https://cdn.example\"\n",
    )
    .unwrap();
    let url = succeed(dir, &["sign", "clip_1"]);
    assert!(url.starts_with("https://cdn.example/s/"), "{url}");
    let (token, rest) =
        split_signed_path(url.trim().strip_prefix("https://cdn.example").unwrap()).unwrap();
    let claims = verify(&ring, token, rest, localhost(), now, Duration::ZERO).unwrap();
    assert!(claims.expires_at <= now + Duration::from_secs(92));

    std::fs::write(dir.join("kinema.toml"), "[auth]\nttl = \"soon\"\n").unwrap();
    let error = fail(dir, &["sign", "clip_1"]);
    assert!(
        error.contains("soon") && error.contains("duration"),
        "{error}"
    );
    std::fs::write(dir.join("kinema.toml"), "[auth]\nkees = \"x\"\n").unwrap();
    let error = fail(dir, &["sign", "clip_1"]);
    assert!(error.contains("kees"), "{error}");
}

#[test]
fn bad_sign_input_is_a_clear_error() {
    let directory = tempfile::tempdir().unwrap();
    let dir = directory.path();
    let error = fail(dir, &["sign", "demo"]);
    // Said once: the cause is part of the message, not repeated after it.
    assert_eq!(error.matches("kinema keys new").count(), 1, "{error}");
    assert_eq!(error.lines().count(), 1, "{error}");
    succeed(dir, &["keys", "new"]);
    let error = fail(dir, &["sign", "../etc"]);
    assert!(error.contains("video id"), "{error}");
    let error = fail(dir, &["sign", "demo", "--ip", "10.0.0.300"]);
    assert!(error.contains("neither an address nor a CIDR"), "{error}");
    let error = fail(dir, &["sign", "demo", "--base-url", "ftp://x"]);
    assert!(error.contains("http://"), "{error}");
}

/// `SystemTime::now() + ttl` used to overflow and panic for a lifetime
/// past what the clock holds.
#[test]
fn sign_ttl_past_the_clock_is_an_error_not_a_panic() {
    let directory = tempfile::tempdir().unwrap();
    let dir = directory.path();
    succeed(dir, &["keys", "new"]);
    let output = kinema(dir, &["sign", "demo", "--ttl", "300000000000years"]);
    let error = String::from_utf8(output.stderr).unwrap();
    assert_eq!(output.status.code(), Some(1), "{error}");
    assert!(!error.contains("panicked"), "{error}");
    assert!(error.contains("--ttl"), "{error}");
    assert!(error.contains("use a shorter one"), "{error}");
    // A long but representable lifetime still signs a URL that verifies.
    let url = succeed(dir, &["sign", "demo", "--ttl", "1000years"]);
    let (token, path) = token_and_path(&url);
    let ring = KeyRing::load(&dir.join("kinema-keys.toml")).unwrap();
    let claims = verify(
        &ring,
        &token,
        &path,
        localhost(),
        SystemTime::now(),
        Duration::ZERO,
    )
    .unwrap();
    assert!(claims.expires_at > SystemTime::now() + Duration::from_secs(900 * 365 * 86_400));
}

#[test]
fn a_key_file_others_can_read_is_refused() {
    let directory = tempfile::tempdir().unwrap();
    let dir = directory.path();
    succeed(dir, &["keys", "new"]);
    let path = dir.join("kinema-keys.toml");
    std::fs::set_permissions(&path, std::fs::Permissions::from_mode(0o644)).unwrap();
    for args in [&["sign", "demo"][..], &["keys", "list"], &["keys", "new"]] {
        let error = fail(dir, args);
        assert!(
            error.contains("chmod 600") && error.contains("kinema-keys.toml"),
            "{error}"
        );
    }
}

#[test]
fn tokens_new_prints_a_secret_the_file_only_hashes() {
    let directory = tempfile::tempdir().unwrap();
    let dir = directory.path();
    let reader = succeed(dir, &["tokens", "new", "--scope", "read", "--name", "dash"]);
    let admin = succeed(dir, &["tokens", "new", "--scope", "admin"]);
    let file = dir.join("kinema-tokens.toml");
    let text = std::fs::read_to_string(&file).unwrap();
    assert!(!text.contains(reader.trim()) && !text.contains(admin.trim()));
    let tokens = AdminTokens::load(&file).unwrap();
    let header = |secret: &str| format!("Bearer {}", secret.trim()).into_bytes();
    assert_eq!(
        tokens.verify_bearer(Some(&header(&reader))),
        Ok(Scope::Read)
    );
    assert_eq!(
        tokens.verify_bearer(Some(&header(&admin))),
        Ok(Scope::Admin)
    );

    let listing = succeed(dir, &["tokens", "list"]);
    assert!(
        listing.contains("dash") && listing.contains("admin-"),
        "{listing}"
    );
    assert!(!listing.contains(reader.trim()), "{listing}");

    let error = fail(dir, &["tokens", "new", "--scope", "read", "--name", "dash"]);
    assert!(error.contains("already exists"), "{error}");
    let error = fail(dir, &["tokens", "new", "--scope", "root"]);
    assert!(error.contains("root"), "{error}");

    succeed(dir, &["tokens", "revoke", "dash"]);
    let tokens = AdminTokens::load(&file).unwrap();
    assert!(tokens.verify_bearer(Some(&header(&reader))).is_err());
    assert_eq!(
        tokens.verify_bearer(Some(&header(&admin))),
        Ok(Scope::Admin)
    );
}
