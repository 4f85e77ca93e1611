//! The caching rules checked against the RFC text.

use std::time::{Duration, SystemTime};

use http::{HeaderMap, Method, StatusCode, header};

use super::*;
use crate::test_support::headers;

fn at(seconds: u64) -> SystemTime {
    SystemTime::UNIX_EPOCH + Duration::from_secs(1_700_000_000 + seconds)
}

fn date(seconds: u64) -> String {
    httpdate::fmt_http_date(at(seconds))
}

fn lifetime(status: u16, pairs: &[(&str, &str)]) -> u64 {
    freshness_lifetime(
        StatusCode::from_u16(status).unwrap(),
        &headers(pairs),
        at(0),
        &FreshnessRules::default(),
    )
    .as_secs()
}

#[test]
fn directives_parse_quoted_arguments_and_lists() {
    let map = headers(&[
        (
            "cache-control",
            "Max-Age=\"60\", private=\"Set-Cookie, X-A\"",
        ),
        ("cache-control", "public"),
    ]);
    let directives = Directives::from_headers(&map, &header::CACHE_CONTROL);
    assert_eq!(directives.seconds("max-age"), Seconds::Value(60));
    assert!(directives.has("public"));
    assert!(!directives.unqualified("private"));
    assert_eq!(directives.field_names("private").len(), 2);
}

#[test]
fn conflicting_or_invalid_max_age_is_invalid() {
    let map = headers(&[("cache-control", "max-age=60, max-age=120")]);
    let directives = Directives::from_headers(&map, &header::CACHE_CONTROL);
    assert_eq!(directives.seconds("max-age"), Seconds::Invalid);
    let map = headers(&[("cache-control", "max-age=60, max-age=60")]);
    let directives = Directives::from_headers(&map, &header::CACHE_CONTROL);
    assert_eq!(directives.seconds("max-age"), Seconds::Value(60));
    assert_eq!(lifetime(200, &[("cache-control", "max-age=abc")]), 0);
    assert_eq!(lifetime(200, &[("cache-control", "max-age=-5")]), 0);
    assert_eq!(
        lifetime(200, &[("cache-control", "max-age=99999999999999999999")]),
        DELTA_SECONDS_MAX
    );
}

#[test]
fn lifetime_precedence_s_maxage_then_max_age_then_expires() {
    let expires = date(300);
    let now = date(0);
    let all = [
        ("cache-control", "max-age=100, s-maxage=50"),
        ("expires", expires.as_str()),
        ("date", now.as_str()),
    ];
    assert_eq!(lifetime(200, &all), 50);
    assert_eq!(
        lifetime(
            200,
            &[
                ("cache-control", "max-age=100"),
                ("expires", &expires),
                ("date", &now)
            ]
        ),
        100
    );
    assert_eq!(lifetime(200, &[("expires", &expires), ("date", &now)]), 300);
    // Without Date, the time the response was received stands in.
    assert_eq!(lifetime(200, &[("expires", &expires)]), 300);
    assert_eq!(lifetime(200, &[("expires", "0"), ("date", &now)]), 0);
    assert_eq!(
        lifetime(200, &[("expires", &expires), ("expires", &date(10))]),
        0
    );
}

#[test]
fn heuristic_only_for_default_cacheable_statuses_with_last_modified() {
    let now = date(100_000);
    let modified = date(0);
    let pairs = [("date", now.as_str()), ("last-modified", modified.as_str())];
    assert_eq!(lifetime(200, &pairs), 10_000);
    assert_eq!(lifetime(404, &pairs), 10_000);
    assert_eq!(lifetime(302, &pairs), 0);
    assert_eq!(lifetime(200, &[("date", now.as_str())]), 0);
    // Capped at a day.
    let long_ago = date(0);
    let much_later = date(10_000_000);
    assert_eq!(
        lifetime(200, &[("date", &much_later), ("last-modified", &long_ago)]),
        86_400
    );
    // No heuristic when explicit information exists.
    assert_eq!(
        lifetime(
            200,
            &[
                ("cache-control", "max-age=5"),
                ("date", &now),
                ("last-modified", &modified)
            ]
        ),
        5
    );
}

#[test]
fn cdn_cache_control_takes_precedence_over_cache_control_and_expires() {
    let expires = date(1000);
    assert_eq!(
        lifetime(
            200,
            &[
                ("cache-control", "no-store, max-age=5"),
                ("cdn-cache-control", "max-age=600"),
                ("expires", &expires)
            ]
        ),
        600
    );
    // A targeted field ignores Expires entirely.
    assert_eq!(
        lifetime(
            200,
            &[("cdn-cache-control", "public"), ("expires", &expires)]
        ),
        0
    );
    // An invalid targeted field is ignored: Cache-Control applies.
    assert_eq!(
        lifetime(
            200,
            &[
                ("cache-control", "max-age=5"),
                ("cdn-cache-control", "Max-Age=600")
            ]
        ),
        5
    );
    let response = headers(&[
        ("cache-control", "no-store"),
        ("cdn-cache-control", "max-age=60"),
    ]);
    assert_eq!(
        storable(&Method::GET, &HeaderMap::new(), StatusCode::OK, &response),
        Ok(())
    );
    let response = headers(&[
        ("cache-control", "max-age=60"),
        ("cdn-cache-control", "no-store"),
    ]);
    assert_eq!(
        storable(&Method::GET, &HeaderMap::new(), StatusCode::OK, &response),
        Err(NotStorable::NoStore)
    );
}

#[test]
fn storability_rules() {
    let get = Method::GET;
    let none = HeaderMap::new();
    let store = |request: &HeaderMap, status: u16, response: &[(&str, &str)]| {
        storable(
            &get,
            request,
            StatusCode::from_u16(status).unwrap(),
            &headers(response),
        )
    };
    assert_eq!(store(&none, 200, &[]), Ok(()));
    assert_eq!(
        store(&none, 302, &[]),
        Err(NotStorable::NoFreshnessInformation)
    );
    assert_eq!(store(&none, 302, &[("cache-control", "max-age=5")]), Ok(()));
    assert_eq!(store(&none, 500, &[("cache-control", "max-age=5")]), Ok(()));
    assert_eq!(
        store(&none, 206, &[("cache-control", "max-age=5")]),
        Err(NotStorable::Status)
    );
    assert_eq!(
        store(&none, 200, &[("cache-control", "no-store")]),
        Err(NotStorable::NoStore)
    );
    assert_eq!(
        store(
            &none,
            200,
            &[("cache-control", "no-store, must-understand")]
        ),
        Ok(())
    );
    assert_eq!(
        store(&none, 200, &[("cache-control", "private")]),
        Err(NotStorable::Private)
    );
    assert_eq!(
        store(&none, 200, &[("cache-control", "private=\"set-cookie\"")]),
        Ok(())
    );
    assert_eq!(
        store(&none, 200, &[("vary", "*")]),
        Err(NotStorable::VaryStar)
    );
    assert_eq!(
        store(&none, 200, &[("set-cookie", "a=b")]),
        Err(NotStorable::SetCookie)
    );
    let no_store_request = headers(&[("cache-control", "no-store")]);
    assert_eq!(
        store(&no_store_request, 200, &[]),
        Err(NotStorable::RequestNoStore)
    );
    assert_eq!(
        storable(
            &Method::POST,
            &none,
            StatusCode::OK,
            &headers(&[("cache-control", "max-age=5")])
        ),
        Err(NotStorable::Method)
    );
}

#[test]
fn authorization_needs_explicit_permission() {
    let request = headers(&[("authorization", "Bearer x")]);
    let store = |response: &[(&str, &str)]| {
        storable(&Method::GET, &request, StatusCode::OK, &headers(response))
    };
    assert_eq!(
        store(&[("cache-control", "max-age=60")]),
        Err(NotStorable::Authorization)
    );
    assert_eq!(store(&[("cache-control", "max-age=60, public")]), Ok(()));
    assert_eq!(store(&[("cache-control", "s-maxage=60")]), Ok(()));
    assert_eq!(
        store(&[("cache-control", "max-age=60, must-revalidate")]),
        Ok(())
    );
}

#[test]
fn age_follows_section_4_2_3() {
    // Origin says Age 10; the response took 2 s to arrive and Date is
    // 5 s before it arrived; 20 s resident.
    let map = headers(&[("age", "10"), ("date", &date(95))]);
    let age = current_age(&map, at(98), at(100), at(120));
    assert_eq!(age.as_secs(), 12 + 20);
    // The apparent age wins when larger.
    let map = headers(&[("date", &date(50))]);
    assert_eq!(current_age(&map, at(100), at(100), at(100)).as_secs(), 50);
    // A clock skewed into the future never gives a negative age.
    let map = headers(&[("date", &date(500)), ("age", "bogus")]);
    assert_eq!(current_age(&map, at(100), at(100), at(103)).as_secs(), 3);
    let map = headers(&[("age", "7, 9")]);
    assert_eq!(age_value(&map).as_secs(), 7);
}

fn freshness(lifetime: u64, age: u64) -> Freshness {
    Freshness {
        lifetime: Duration::from_secs(lifetime),
        age: Duration::from_secs(age),
        invalidated: false,
    }
}

fn directives(text: &str) -> Directives {
    Directives::from_headers(&headers(&[("cache-control", text)]), &header::CACHE_CONTROL)
}

#[test]
fn reuse_matrix() {
    let none = Directives::default();
    let validate = Reuse::Validate {
        forced_by_request: false,
    };
    let forced = Reuse::Validate {
        forced_by_request: true,
    };
    assert_eq!(reuse(&none, &none, freshness(60, 10)), Reuse::Fresh);
    assert_eq!(reuse(&none, &none, freshness(60, 60)), validate);
    assert_eq!(
        reuse(&none, &directives("no-cache"), freshness(60, 0)),
        validate
    );
    assert_eq!(
        reuse(&directives("no-cache"), &none, freshness(60, 0)),
        forced
    );
    assert_eq!(
        reuse(&directives("max-age=5"), &none, freshness(60, 10)),
        forced
    );
    assert_eq!(
        reuse(&directives("max-age=15"), &none, freshness(60, 10)),
        Reuse::Fresh
    );
    assert_eq!(
        reuse(&directives("min-fresh=55"), &none, freshness(60, 10)),
        forced
    );
    assert_eq!(
        reuse(&directives("min-fresh=50"), &none, freshness(60, 10)),
        Reuse::Fresh
    );
    assert_eq!(
        reuse(&directives("max-stale"), &none, freshness(60, 1000)),
        Reuse::StaleAllowedByClient
    );
    assert_eq!(
        reuse(&directives("max-stale=30"), &none, freshness(60, 80)),
        Reuse::StaleAllowedByClient
    );
    assert_eq!(
        reuse(&directives("max-stale=30"), &none, freshness(60, 100)),
        validate
    );
    assert_eq!(
        reuse(
            &directives("max-stale"),
            &directives("must-revalidate"),
            freshness(60, 100)
        ),
        validate
    );
    assert_eq!(
        reuse(
            &directives("max-stale"),
            &directives("s-maxage=60"),
            freshness(60, 100)
        ),
        validate
    );
    let swr = directives("max-age=60, stale-while-revalidate=30");
    assert_eq!(
        reuse(&none, &swr, freshness(60, 80)),
        Reuse::StaleWhileRevalidate
    );
    assert_eq!(reuse(&none, &swr, freshness(60, 100)), validate);
    let mut purged = freshness(60, 10);
    purged.invalidated = true;
    assert_eq!(reuse(&none, &swr, purged), Reuse::StaleWhileRevalidate);
    assert_eq!(reuse(&none, &none, purged), validate);
}

#[test]
fn stale_if_error_windows() {
    let none = Directives::default();
    let sie = directives("max-age=60, stale-if-error=100");
    assert!(stale_on_error_allowed(
        &none,
        &sie,
        freshness(60, 150),
        Duration::ZERO
    ));
    assert!(!stale_on_error_allowed(
        &none,
        &sie,
        freshness(60, 170),
        Duration::ZERO
    ));
    assert!(!stale_on_error_allowed(
        &none,
        &none,
        freshness(60, 70),
        Duration::ZERO
    ));
    assert!(stale_on_error_allowed(
        &none,
        &none,
        freshness(60, 70),
        Duration::from_secs(30)
    ));
    assert!(stale_on_error_allowed(
        &directives("stale-if-error=20"),
        &none,
        freshness(60, 70),
        Duration::ZERO
    ));
    assert!(!stale_on_error_allowed(
        &none,
        &directives("max-age=60, stale-if-error=100, must-revalidate"),
        freshness(60, 70),
        Duration::from_secs(1000)
    ));
}

#[test]
fn vary_keys_and_matching() {
    let response = headers(&[
        ("vary", "Accept-Encoding, accept-language"),
        ("vary", "x-a"),
    ]);
    let names = vary_names(&response).unwrap();
    assert_eq!(names.len(), 3);
    let request = headers(&[("accept-encoding", "gzip,  br"), ("accept-language", "en")]);
    let key = secondary_key(&names, &request);
    assert!(vary_matches(
        &key,
        &headers(&[("accept-encoding", "gzip, br"), ("accept-language", "en")])
    ));
    assert!(!vary_matches(
        &key,
        &headers(&[("accept-encoding", "gzip"), ("accept-language", "en")])
    ));
    assert!(!vary_matches(
        &key,
        &headers(&[
            ("accept-encoding", "gzip, br"),
            ("accept-language", "en"),
            ("x-a", "1")
        ])
    ));
    assert!(vary_names(&headers(&[("vary", "accept, *")])).is_none());
}

#[test]
fn hop_by_hop_fields_are_removed() {
    let mut map = headers(&[
        ("connection", "close, x-private-hop"),
        ("x-private-hop", "1"),
        ("keep-alive", "timeout=5"),
        ("transfer-encoding", "chunked"),
        ("content-type", "video/mp4"),
    ]);
    strip_hop_by_hop(&mut map);
    assert_eq!(map.len(), 1);
    assert!(map.contains_key("content-type"));
}

#[test]
fn merge_replaces_fields_but_keeps_framing() {
    let mut stored = headers(&[
        ("content-length", "100"),
        ("cache-control", "max-age=10"),
        ("x-old", "1"),
    ]);
    let update = headers(&[
        ("content-length", "0"),
        ("cache-control", "max-age=60"),
        ("x-new", "a"),
        ("x-new", "b"),
        ("connection", "close"),
    ]);
    merge_headers(&mut stored, &update);
    assert_eq!(stored["content-length"], "100");
    assert_eq!(stored["cache-control"], "max-age=60");
    assert_eq!(stored["x-old"], "1");
    assert_eq!(stored.get_all("x-new").iter().count(), 2);
    assert!(!stored.contains_key("connection"));
}

#[test]
fn cache_status_members() {
    let mut status = CacheStatus::forward(ForwardReason::UriMiss);
    status.forward_status = Some(200);
    status.stored = true;
    status.collapsed = true;
    assert_eq!(
        status.member(),
        "kinema; fwd=uri-miss; fwd-status=200; stored; collapsed"
    );
    let mut map = headers(&[("cache-status", "origin-cache; hit")]);
    CacheStatus::hit(42).apply(&mut map);
    assert_eq!(
        map["cache-status"],
        "origin-cache; hit, kinema; hit; ttl=42"
    );
}

/// Every verdict and reason the edge decides with, in the words
/// `Cache-Status` carries (RFC 9211 §2.2 for `fwd`; `detail` is ours).
#[test]
fn cache_status_words_of_every_reason() {
    let member = |status: CacheStatus| status.member();
    for (reason, word) in [
        (ForwardReason::Bypass, "bypass"),
        (ForwardReason::UriMiss, "uri-miss"),
        (ForwardReason::VaryMiss, "vary-miss"),
        (ForwardReason::Miss, "miss"),
        (ForwardReason::Request, "request"),
        (ForwardReason::Stale, "stale"),
    ] {
        assert_eq!(
            member(CacheStatus::forward(reason)),
            format!("kinema; fwd={word}")
        );
    }
    use crate::slice::SliceRefusal;
    for (detail, word) in [
        (Detail::NotStored(NotStored::TooLarge), "too-large"),
        (Detail::NotStored(NotStored::ServerError), "server-error"),
        (
            Detail::NotStored(NotStored::RangeNotSatisfiable),
            "range-not-satisfiable",
        ),
        (
            Detail::NotStored(NotStored::PrefetchError),
            "prefetch-error",
        ),
        (
            Detail::NotStored(NotStored::Policy(NotStorable::Private)),
            "private",
        ),
        (
            Detail::NotStored(NotStored::Policy(NotStorable::NoFreshnessInformation)),
            "no-freshness",
        ),
        (Detail::HitForPass, "hit-for-pass"),
        (Detail::OnlyIfCached, "only-if-cached"),
        (Detail::StaleIfError, "stale-if-error"),
        (Detail::StaleWhileRevalidate, "stale-while-revalidate"),
        (Detail::NotShareable, "not-shareable"),
        (Detail::Sliced, "sliced"),
        (Detail::SliceRefused, "slice-refused"),
        (Detail::SliceChurn, "slice-churn"),
        (Detail::UnusableSlice(SliceRefusal::WeakEtag), "weak-etag"),
        (
            Detail::UnusableSlice(SliceRefusal::NotStorable(NotStorable::NoStore)),
            "no-store",
        ),
        (Detail::Origin(OriginFailure::Timeout), "origin-timeout"),
        (
            Detail::Origin(OriginFailure::Unreachable),
            "origin-unreachable",
        ),
        (Detail::Origin(OriginFailure::Error), "origin-error"),
        (Detail::Origin(OriginFailure::RequestBody), "request-body"),
    ] {
        assert_eq!(
            member(CacheStatus::forward(ForwardReason::UriMiss).with_detail(detail)),
            format!("kinema; fwd=uri-miss; detail={word}")
        );
    }
    // Which reasons keep a response from the requests that waited on it.
    assert!(NotStored::TooLarge.personal());
    assert!(NotStored::Policy(NotStorable::SetCookie).personal());
    assert!(!NotStored::Policy(NotStorable::NoFreshnessInformation).personal());
    assert!(!NotStored::ServerError.personal());
    assert!(!NotStored::PrefetchError.personal());
}

#[test]
fn pragma_no_cache_only_without_cache_control() {
    assert!(request_directives(&headers(&[("pragma", "no-cache")])).has("no-cache"));
    assert!(
        !request_directives(&headers(&[
            ("pragma", "no-cache"),
            ("cache-control", "max-age=5")
        ]))
        .has("no-cache")
    );
}
