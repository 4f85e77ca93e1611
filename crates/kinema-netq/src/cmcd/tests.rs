//! The strings are what `@svta/cml-cmcd` 2.3.2 (the encoder hls.js 1.x and
//! dash.js 5.x call) produced for a video segment request, printed by node
//! from `web/node_modules`.

use http::{HeaderMap, HeaderValue};

use super::*;

const SESSION: &str = "6e2fb550-c457-11e9-bb97-0800200c9a66";

fn headers(pairs: &[(&'static str, &str)]) -> HeaderMap {
    let mut map = HeaderMap::new();
    for (name, value) in pairs {
        map.append(*name, HeaderValue::from_str(value).unwrap());
    }
    map
}

fn expected_hls_segment() -> Cmcd {
    Cmcd {
        buffer_length_ms: Some(8200),
        measured_throughput_kbps: Some(48100),
        encoded_bitrate_kbps: Some(2500),
        top_bitrate_kbps: Some(5000),
        requested_throughput_kbps: Some(12000),
        object_duration_ms: Some(4000),
        deadline_ms: Some(8000),
        buffer_starvation: true,
        startup: true,
        session_id: Some(SESSION.into()),
        content_id: Some("clip".into()),
        object_type: Some("v".into()),
        streaming_format: Some("h".into()),
        playback_rate: Some(1.5),
        version: None,
    }
}

#[test]
fn version_one_as_a_query_parameter() {
    let query = "CMCD=bl%3D8200%2Cbr%3D2500%2Cbs%2Ccid%3D%22clip%22%2Cd%3D4000%2Cdl%3D8000%2Cmtp%3D48100%2Cnor%3D%22..%252F720p%252Fseg_00002.m4s%22%2Cot%3Dv%2Cpr%3D1.5%2Crtp%3D12000%2Csf%3Dh%2Csid%3D%226e2fb550-c457-11e9-bb97-0800200c9a66%22%2Cst%3Dv%2Csu%2Ctb%3D5000";
    let cmcd = Cmcd::from_request(Some(&format!("token=abc&{query}")), &HeaderMap::new());
    assert_eq!(cmcd, expected_hls_segment());
}

#[test]
fn version_one_as_headers() {
    let cmcd = Cmcd::from_request(
        None,
        &headers(&[
            (
                "cmcd-request",
                "bl=8200,dl=8000,mtp=48100,nor=\"..%2F720p%2Fseg_00002.m4s\",su",
            ),
            ("cmcd-object", "br=2500,d=4000,ot=v,tb=5000"),
            ("cmcd-status", "bs,pr=1.5,rtp=12000"),
            (
                "cmcd-session",
                "cid=\"clip\",sf=h,sid=\"6e2fb550-c457-11e9-bb97-0800200c9a66\",st=v",
            ),
        ]),
    );
    assert_eq!(cmcd, expected_hls_segment());
}

#[test]
fn version_two_inner_lists_as_a_query_parameter_and_as_headers() {
    let expected = Cmcd {
        buffer_length_ms: Some(8200),
        measured_throughput_kbps: Some(48100),
        encoded_bitrate_kbps: Some(2500),
        top_bitrate_kbps: Some(5000),
        object_duration_ms: Some(4000),
        startup: true,
        session_id: Some(SESSION.into()),
        content_id: Some("clip".into()),
        object_type: Some("v".into()),
        streaming_format: Some("h".into()),
        version: Some(2),
        ..Cmcd::default()
    };
    let query = "CMCD=bl%3D(8200)%2Cbr%3D(2500)%2Ccid%3D%22clip%22%2Cd%3D4000%2Cmtp%3D(48100)%2Cnor%3D(%22..%2F720p%2Fseg_00002.m4s%22)%2Cot%3Dv%2Csf%3Dh%2Csid%3D%226e2fb550-c457-11e9-bb97-0800200c9a66%22%2Cst%3Dv%2Csu%2Ctb%3D(5000)%2Cv%3D2";
    assert_eq!(Cmcd::from_request(Some(query), &HeaderMap::new()), expected);
    let from_headers = Cmcd::from_request(
        None,
        &headers(&[
            (
                "cmcd-request",
                "bl=(8200),mtp=(48100),nor=(\"../720p/seg_00002.m4s\"),su",
            ),
            ("cmcd-object", "br=(2500),d=4000,ot=v,tb=(5000)"),
            (
                "cmcd-session",
                "cid=\"clip\",sf=h,sid=\"6e2fb550-c457-11e9-bb97-0800200c9a66\",st=v,v=2",
            ),
        ]),
    );
    assert_eq!(from_headers, expected);
}

#[test]
fn dash_js_without_starvation_sends_no_flags() {
    let query = "CMCD=bl%3D0%2Cbr%3D800%2Ccid%3D%22clip%22%2Cd%3D4000%2Cdl%3D8000%2Cmtp%3D48100%2Cnor%3D%22..%252F720p%252Fseg_00002.m4s%22%2Cot%3Dv%2Cpr%3D1.5%2Crtp%3D12000%2Csf%3Dd%2Csid%3D%226e2fb550-c457-11e9-bb97-0800200c9a66%22%2Cst%3Dv%2Ctb%3D5000";
    let cmcd = Cmcd::from_request(Some(query), &HeaderMap::new());
    assert_eq!(cmcd.buffer_length_ms, Some(0));
    assert_eq!(cmcd.encoded_bitrate_kbps, Some(800));
    assert_eq!(cmcd.streaming_format.as_deref(), Some("d"));
    assert!(!cmcd.buffer_starvation && !cmcd.startup);
}

#[test]
fn malformed_members_are_skipped_and_the_rest_kept() {
    // A broken inner list ends its member only; an unterminated string
    // runs on to the next quote, and its member is dropped.
    let mut cmcd = Cmcd::default();
    cmcd.merge_field("mtp=(12 ,x=\"unterminated,bl=5,sid=\"b,ot=v");
    assert_eq!(
        cmcd,
        Cmcd {
            object_type: Some("v".into()),
            ..Cmcd::default()
        }
    );
    // `bl=abc` is a token where a number belongs, `BR` is no key, `tb` is
    // negative, `custom-key` is not one of ours.
    let mut cmcd = Cmcd::default();
    cmcd.merge_field(
        "bl=abc,BR=1,br=(300;p=1 400),bs=?1,sid=\"a\\\"b\",tb=-5,ot=v,custom-key=\"x\"",
    );
    assert_eq!(
        cmcd,
        Cmcd {
            encoded_bitrate_kbps: Some(300),
            buffer_starvation: true,
            session_id: Some("a\"b".into()),
            object_type: Some("v".into()),
            ..Cmcd::default()
        }
    );
}

#[test]
fn oversized_fields_and_values_are_ignored() {
    let mut cmcd = Cmcd::default();
    cmcd.merge_field(&format!("br=100,sid=\"{}\"", "x".repeat(MAX_FIELD_BYTES)));
    assert!(cmcd.is_empty());
    cmcd.merge_field(&format!(
        "br=100,sid=\"{}\",mtp=9999999999999999",
        "x".repeat(200)
    ));
    assert_eq!(
        cmcd,
        Cmcd {
            encoded_bitrate_kbps: Some(100),
            ..Cmcd::default()
        }
    );
    // Members past the cap are not read.
    let many: Vec<String> = (0..MAX_MEMBERS).map(|i| format!("k{i}=1")).collect();
    cmcd.merge_field(&format!("{},tb=7", many.join(",")));
    assert_eq!(cmcd.top_bitrate_kbps, None);
}

#[test]
fn garbage_never_panics() {
    for field in [
        "",
        ",",
        "=",
        "(",
        "\"",
        "bl=",
        "bl=(",
        "bl=((1))",
        "bl=?",
        "bl=?2",
        "a;",
        "a;=",
        "a=1;b=",
        "sid=\"\u{7f}\"",
        "bl=1.2.3",
        "bl=--1",
        "pr=1e5",
        "\\",
        "bl=1,,,bl=2",
    ] {
        let mut cmcd = Cmcd::default();
        cmcd.merge_field(field);
    }
    let cmcd = Cmcd::from_request(Some("CMCD=%ZZ&CMCD=%FF%FE&CMCD"), &HeaderMap::new());
    assert!(cmcd.is_empty());
}
