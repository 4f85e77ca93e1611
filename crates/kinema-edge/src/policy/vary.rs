//! RFC 9111 §4.1: the secondary key of a response that varies.

use http::{HeaderMap, HeaderName, header};

use super::*;

/// The request header names a response varies on, lowercased; `None` for
/// `Vary: *`, which no request ever matches (RFC 9111 §4.1).
pub fn vary_names(headers: &HeaderMap) -> Option<Vec<HeaderName>> {
    let mut names = Vec::new();
    for value in headers.get_all(header::VARY) {
        let text = value.to_str().ok()?;
        for element in split_list(text) {
            if element == "*" {
                return None;
            }
            if let Ok(name) = HeaderName::from_bytes(element.as_bytes())
                && !names.contains(&name)
            {
                names.push(name);
            }
        }
    }
    Some(names)
}

/// The values of the nominated request headers: a stored response's
/// secondary key. Lines are combined and whitespace around list
/// separators dropped (the normalisation §4.1 permits); absent stays absent.
pub fn secondary_key(
    names: &[HeaderName],
    request_headers: &HeaderMap,
) -> Vec<(String, Option<String>)> {
    names
        .iter()
        .map(|name| {
            let mut combined: Option<String> = None;
            for value in request_headers.get_all(name) {
                let text = String::from_utf8_lossy(value.as_bytes());
                let normalised: Vec<&str> = text.split(',').map(str::trim).collect();
                let normalised = normalised.join(",");
                combined = Some(match combined {
                    None => normalised,
                    Some(previous) => format!("{previous},{normalised}"),
                });
            }
            (name.as_str().to_string(), combined)
        })
        .collect()
}

/// True when a request selects a stored response with this secondary key.
pub fn vary_matches(stored: &[(String, Option<String>)], request_headers: &HeaderMap) -> bool {
    let names: Vec<HeaderName> = stored
        .iter()
        .filter_map(|(name, _)| HeaderName::from_bytes(name.as_bytes()).ok())
        .collect();
    names.len() == stored.len() && secondary_key(&names, request_headers) == stored
}
