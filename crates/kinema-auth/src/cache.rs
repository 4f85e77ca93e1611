//! How long a response to a signed request may be reused: no longer than
//! the token it answered.
//!
//! A cache that cannot verify tokens (an edge without the key ring, a
//! browser, any CDN) stores a signed response under its token's URL and
//! serves it to whoever holds that URL for as long as `Cache-Control`
//! allows; so every server answering a signed request caps that field at
//! the seconds the token has left. A cache that does verify each request's
//! token (a kinema edge with the key ring) shares one copy between tokens
//! and caps what it sends on in turn, per request.
//!
//! Text in, text out: this crate knows no HTTP types.

/// `Cache-Control` value `value` with its freshness capped at
/// `seconds_left`: `max-age` and `s-maxage` become at most that (a
/// `max-age` is added when there was none), and `stale-while-revalidate`
/// and `stale-if-error` go, since they would extend use past the expiry.
/// A `no-store` value is returned unchanged: nothing is kept anyway.
pub fn cap_cache_control(value: &str, seconds_left: u64) -> String {
    let directives: Vec<&str> = value
        .split(',')
        .map(str::trim)
        .filter(|directive| !directive.is_empty())
        .collect();
    let name = |directive: &str| {
        directive
            .split('=')
            .next()
            .unwrap_or("")
            .trim()
            .to_ascii_lowercase()
    };
    if directives
        .iter()
        .any(|directive| name(directive) == "no-store")
    {
        return value.to_string();
    }
    let mut capped = Vec::with_capacity(directives.len() + 1);
    let mut has_max_age = false;
    for directive in directives {
        let directive_name = name(directive);
        match directive_name.as_str() {
            "max-age" | "s-maxage" => {
                let seconds = directive
                    .split_once('=')
                    .and_then(|(_, value)| value.trim().trim_matches('"').parse::<u64>().ok())
                    .unwrap_or(0);
                has_max_age |= directive_name == "max-age";
                capped.push(format!("{directive_name}={}", seconds.min(seconds_left)));
            }
            "stale-while-revalidate" | "stale-if-error" => {}
            _ => capped.push(directive.to_string()),
        }
    }
    if !has_max_age {
        capped.push(format!("max-age={seconds_left}"));
    }
    capped.join(", ")
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn signed_freshness_ends_with_the_token() {
        let segment = "public, max-age=31536000, immutable";
        assert_eq!(
            cap_cache_control(segment, 600),
            "public, max-age=600, immutable"
        );
        assert_eq!(
            cap_cache_control(segment, 0),
            "public, max-age=0, immutable"
        );
        assert_eq!(
            cap_cache_control("public, max-age=7", 600),
            "public, max-age=7"
        );
        assert_eq!(
            cap_cache_control(
                "public, max-age=10, s-maxage=60, stale-while-revalidate=30, stale-if-error=600",
                20
            ),
            "public, max-age=10, s-maxage=20"
        );
        assert_eq!(cap_cache_control("public", 90), "public, max-age=90");
        assert_eq!(cap_cache_control("no-store", 90), "no-store");
        assert_eq!(
            cap_cache_control("Max-Age=\"99\", public", 90),
            "max-age=90, public"
        );
        assert_eq!(cap_cache_control("max-age=oops", 90), "max-age=0");
    }
}
