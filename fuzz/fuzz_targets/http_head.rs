//! The HTTP/1.1 request-head parser and its body-framing decision
//! (RFC 9112 §2-§6): never panics, and what it accepts is consistent.

#![no_main]

use bytes::BytesMut;
use http::{Version, header};
use kinema_http::server::fuzzing::{BodyFraming, HeadOutcome, parse_request_head};
use libfuzzer_sys::fuzz_target;

const MAX_URI: usize = 8192;

fuzz_target!(|data: &[u8]| {
    let mut buffer = BytesMut::from(data);
    match parse_request_head(&mut buffer, MAX_URI) {
        HeadOutcome::Incomplete => {
            assert_eq!(
                buffer.len(),
                data.len(),
                "an incomplete head consumed bytes"
            );
        }
        HeadOutcome::Closed => panic!("parsing alone never closes without an answer"),
        HeadOutcome::Refused(status, message) => {
            assert!(
                status.is_client_error() || status.is_server_error(),
                "{status}"
            );
            assert!(
                !message.is_empty() && !message.ends_with('.'),
                "{message:?}"
            );
            assert_eq!(message, message.to_lowercase(), "{message:?}");
        }
        HeadOutcome::Request {
            request,
            framing,
            keep_alive,
            expect_continue,
        } => {
            let head_length = data.len() - buffer.len();
            assert!(
                data.ends_with(&buffer),
                "the rest is not what followed the head"
            );
            assert!(
                data[..head_length].ends_with(b"\n"),
                "a head ends with a blank line"
            );
            assert!(request.uri().to_string().len() <= 2 * MAX_URI);
            let headers = request.headers();
            let version = request.version();
            if version == Version::HTTP_11 {
                assert_eq!(headers.get_all(header::HOST).iter().count(), 1);
            } else {
                assert_eq!(version, Version::HTTP_10);
                assert!(
                    !expect_continue,
                    "100-continue promised to an http/1.0 client"
                );
            }
            if !keep_alive {
                let close = headers.get_all(header::CONNECTION).iter().any(|value| {
                    value
                        .as_bytes()
                        .split(|&b| b == b',')
                        .any(|token| token.trim_ascii().eq_ignore_ascii_case(b"close"))
                });
                assert!(close || version == Version::HTTP_10);
            }
            let has_length = headers.contains_key(header::CONTENT_LENGTH);
            match framing {
                BodyFraming::Chunked => {
                    // Never both: that is how requests are smuggled.
                    assert!(!has_length);
                    assert_eq!(version, Version::HTTP_11);
                    assert!(headers.contains_key(header::TRANSFER_ENCODING));
                }
                BodyFraming::Length(length) => {
                    assert!(length > 0);
                    assert!(!headers.contains_key(header::TRANSFER_ENCODING));
                    for value in headers.get_all(header::CONTENT_LENGTH) {
                        for item in value.as_bytes().split(|&b| b == b',') {
                            let item = std::str::from_utf8(item.trim_ascii()).unwrap();
                            assert_eq!(item.parse::<u64>().unwrap(), length);
                        }
                    }
                }
                BodyFraming::Empty => assert!(!headers.contains_key(header::TRANSFER_ENCODING)),
            }

            // The head alone parses to the same request...
            let mut alone = BytesMut::from(&data[..head_length]);
            let HeadOutcome::Request {
                request: again,
                framing: framing_again,
                ..
            } = parse_request_head(&mut alone, MAX_URI)
            else {
                panic!("the head alone is not accepted");
            };
            assert!(alone.is_empty());
            assert_eq!(again.method(), request.method());
            assert_eq!(again.uri(), request.uri());
            assert_eq!(again.headers(), request.headers());
            assert_eq!(framing_again, framing);
            // ...and the connection, which parses again after every read,
            // waits on any shorter part of it rather than refusing it.
            let stride = (head_length / 256).max(1);
            for end in (0..head_length).step_by(stride) {
                let mut prefix = BytesMut::from(&data[..end]);
                let outcome = parse_request_head(&mut prefix, MAX_URI);
                assert!(
                    matches!(outcome, HeadOutcome::Incomplete),
                    "the first {end} bytes of an accepted head: {outcome:?}"
                );
            }
        }
    }
});
