//! The client's address behind trusted proxies: `Forwarded: for=` (RFC
//! 7239) and `X-Forwarded-For`, believed only when the connection comes from
//! a configured trusted proxy (`trusted_proxies`), and then only up to the
//! first address that is not itself a trusted proxy, read from the right.
//!
//! Anyone can send these headers, so what a client wrote itself must never
//! count: a proxy appends the address it saw to whatever the client sent,
//! so the rightmost entries are the trustworthy ones. Walking from the
//! right, each trusted proxy vouches for the entry to its left; the first
//! untrusted entry is the client. An entry that names no address (`unknown`,
//! an obfuscated `_name`, garbage) ends the walk at the proxy that wrote it.
//!
//! When a request carries both headers and they name different clients,
//! there is no telling which one the trusted proxy wrote (another may have
//! passed a forged one through untouched), so neither is believed and the
//! peer's own address is used: a token bound to the client then fails,
//! which is the safe way to fail.
//!
//! This module reads headers and addresses; it knows nothing of tokens or
//! sessions.

use std::fmt;
use std::net::IpAddr;

use http::HeaderMap;
use http::header::FORWARDED;
use ipnet::IpNet;
use serde::Deserialize;

const X_FORWARDED_FOR: &str = "x-forwarded-for";

/// The networks whose `Forwarded` / `X-Forwarded-For` are believed.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct TrustedProxies(Vec<IpNet>);

impl TrustedProxies {
    /// Parses addresses (one host) and CIDR networks.
    pub fn parse<S: AsRef<str>>(entries: &[S]) -> Result<Self, String> {
        entries
            .iter()
            .map(|entry| parse_network(entry.as_ref()))
            .collect::<Result<_, _>>()
            .map(Self)
    }

    fn trusts(&self, address: IpAddr) -> bool {
        self.0.iter().any(|network| network.contains(&address))
    }

    /// The address the request came from: `peer` itself, unless `peer` is a
    /// trusted proxy and the forwarding headers name a client behind it.
    pub fn client_address(&self, peer: IpAddr, headers: &HeaderMap) -> IpAddr {
        let peer = peer.to_canonical();
        if self.0.is_empty() || !self.trusts(peer) {
            return peer;
        }
        let forwarded = self.walk(peer, reversed_entries(headers, FORWARDED.as_str()), true);
        let x_forwarded_for = self.walk(peer, reversed_entries(headers, X_FORWARDED_FOR), false);
        match (forwarded, x_forwarded_for) {
            (Some(one), Some(other)) if one != other => {
                tracing::debug!(
                    %peer,
                    forwarded = %one,
                    x_forwarded_for = %other,
                    "Forwarded and X-Forwarded-For name different clients; believing neither"
                );
                peer
            }
            (Some(client), _) | (None, Some(client)) => client,
            (None, None) => peer,
        }
    }

    /// The client named by one header's entries, rightmost first; `None`
    /// when the header is absent.
    fn walk<'a>(
        &self,
        peer: IpAddr,
        entries: impl Iterator<Item = &'a str>,
        forwarded_syntax: bool,
    ) -> Option<IpAddr> {
        let mut nearest = None;
        for entry in entries {
            let address = if forwarded_syntax {
                forwarded_for(entry)
            } else {
                node_address(entry.trim())
            };
            match address {
                Some(address) if !self.trusts(address) => return Some(address),
                Some(address) => nearest = Some(address),
                // The proxy that wrote it cannot tell us who the client is.
                None => return Some(nearest.unwrap_or(peer)),
            }
        }
        // Every entry a trusted proxy: the leftmost is the client.
        nearest
    }
}

impl fmt::Display for TrustedProxies {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let names: Vec<String> = self.0.iter().map(ToString::to_string).collect();
        f.write_str(&names.join(","))
    }
}

impl<'de> Deserialize<'de> for TrustedProxies {
    fn deserialize<D: serde::Deserializer<'de>>(deserializer: D) -> Result<Self, D::Error> {
        let entries = Vec::<String>::deserialize(deserializer)?;
        Self::parse(&entries).map_err(serde::de::Error::custom)
    }
}

fn parse_network(text: &str) -> Result<IpNet, String> {
    let text = text.trim();
    if let Ok(network) = text.parse::<IpNet>() {
        return Ok(network.trunc());
    }
    if let Ok(address) = text.parse::<IpAddr>() {
        return Ok(IpNet::from(address.to_canonical()));
    }
    Err(format!(
        "trusted proxy {text:?} is neither an address nor a CIDR network \
         (e.g. 10.0.0.5 or 10.0.0.0/8)"
    ))
}

/// The comma-separated entries of every `name` field, last field's last
/// entry first.
fn reversed_entries<'a>(headers: &'a HeaderMap, name: &str) -> impl Iterator<Item = &'a str> {
    headers
        .get_all(name)
        .iter()
        .rev()
        .flat_map(|value| match value.to_str() {
            Ok(text) => text.rsplit(',').collect::<Vec<_>>(),
            // Not visible ASCII: an entry that names no address.
            Err(_) => vec![""],
        })
}

/// The address of one `Forwarded` element's `for=` pair (RFC 7239 §4),
/// `None` when it has none or it is not an address.
fn forwarded_for(element: &str) -> Option<IpAddr> {
    element.split(';').find_map(|pair| {
        let (name, value) = pair.trim().split_once('=')?;
        if !name.trim().eq_ignore_ascii_case("for") {
            return None;
        }
        let value = value.trim();
        let value = value
            .strip_prefix('"')
            .and_then(|inner| inner.strip_suffix('"'))
            .unwrap_or(value);
        node_address(value)
    })
}

/// An address in `node` syntax (RFC 7239 §6): `192.0.2.43`,
/// `192.0.2.43:47011`, `[2001:db8::17]`, `[2001:db8::17]:4711`; a bare
/// IPv6 address (as `X-Forwarded-For` carries it) too.
fn node_address(node: &str) -> Option<IpAddr> {
    let address = if let Some(bracketed) = node.strip_prefix('[') {
        bracketed.split_once(']')?.0.parse().ok()?
    } else if let Ok(address) = node.parse::<IpAddr>() {
        address
    } else {
        // IPv4 with a port.
        let (host, port) = node.rsplit_once(':')?;
        port.parse::<u16>().ok()?;
        IpAddr::V4(host.parse().ok()?)
    };
    Some(address.to_canonical())
}

#[cfg(test)]
mod tests {
    use super::*;
    use http::HeaderValue;

    fn proxies(entries: &[&str]) -> TrustedProxies {
        TrustedProxies::parse(entries).unwrap()
    }

    fn client(trusted: &TrustedProxies, peer: &str, fields: &[(&str, &str)]) -> String {
        let mut headers = HeaderMap::new();
        for (name, value) in fields {
            headers.append(
                http::HeaderName::from_bytes(name.as_bytes()).unwrap(),
                HeaderValue::from_str(value).unwrap(),
            );
        }
        trusted
            .client_address(peer.parse().unwrap(), &headers)
            .to_string()
    }

    #[test]
    fn headers_from_an_untrusted_peer_are_ignored() {
        let trusted = proxies(&["10.0.0.0/8"]);
        let forged = [
            ("forwarded", "for=192.0.2.1"),
            ("x-forwarded-for", "192.0.2.1"),
        ];
        assert_eq!(client(&trusted, "198.51.100.7", &forged), "198.51.100.7");
        // No trusted proxies configured: never read.
        assert_eq!(
            client(&TrustedProxies::default(), "10.0.0.1", &forged),
            "10.0.0.1"
        );
        // Nothing forwarded: the peer.
        assert_eq!(client(&trusted, "10.0.0.1", &[]), "10.0.0.1");
    }

    #[test]
    fn the_rightmost_untrusted_entry_is_the_client() {
        let trusted = proxies(&["10.0.0.0/8", "2001:db8:ff::/48"]);
        assert_eq!(
            client(&trusted, "10.0.0.1", &[("forwarded", "for=192.0.2.1")]),
            "192.0.2.1"
        );
        // A client's forged entry sits left of what the proxy saw.
        assert_eq!(
            client(
                &trusted,
                "10.0.0.1",
                &[("forwarded", "for=203.0.113.9, for=192.0.2.1")]
            ),
            "192.0.2.1"
        );
        // Two header lines, as a proxy that appends a field writes them.
        assert_eq!(
            client(
                &trusted,
                "10.0.0.1",
                &[
                    ("forwarded", "for=203.0.113.9"),
                    ("forwarded", "for=192.0.2.1;proto=https")
                ]
            ),
            "192.0.2.1"
        );
        // A chain of trusted proxies is walked through.
        assert_eq!(
            client(
                &trusted,
                "10.0.0.1",
                &[("x-forwarded-for", "203.0.113.9, 192.0.2.1, 10.9.9.9")]
            ),
            "192.0.2.1"
        );
        // All trusted: the leftmost.
        assert_eq!(
            client(
                &trusted,
                "10.0.0.1",
                &[("x-forwarded-for", "10.2.0.1, 10.3.0.1")]
            ),
            "10.2.0.1"
        );
        // IPv6, quoted and bracketed, with ports.
        assert_eq!(
            client(
                &trusted,
                "2001:db8:ff::1",
                &[("forwarded", "For=\"[2001:db8:cafe::17]:4711\"")]
            ),
            "2001:db8:cafe::17"
        );
        assert_eq!(
            client(
                &trusted,
                "::ffff:10.0.0.1",
                &[("x-forwarded-for", "192.0.2.43:47011")]
            ),
            "192.0.2.43"
        );
    }

    #[test]
    fn an_entry_without_an_address_stops_at_the_proxy_that_wrote_it() {
        let trusted = proxies(&["10.0.0.0/8"]);
        for value in ["for=unknown", "for=_hidden", "proto=http", "for=\"[::1\""] {
            assert_eq!(
                client(
                    &trusted,
                    "10.0.0.1",
                    &[("forwarded", &format!("for=192.0.2.1, {value}"))]
                ),
                "10.0.0.1",
                "{value}"
            );
        }
        assert_eq!(
            client(
                &trusted,
                "10.0.0.1",
                &[("forwarded", "for=192.0.2.1, for=unknown, for=10.5.5.5")]
            ),
            "10.5.5.5"
        );
    }

    #[test]
    fn disagreeing_headers_are_both_disbelieved() {
        let trusted = proxies(&["10.0.0.0/8"]);
        // A proxy that only appends X-Forwarded-For passed a forged
        // Forwarded through: neither can be told apart, so the peer.
        assert_eq!(
            client(
                &trusted,
                "10.0.0.1",
                &[
                    ("forwarded", "for=203.0.113.9"),
                    ("x-forwarded-for", "192.0.2.1")
                ]
            ),
            "10.0.0.1"
        );
        // The edge appends to both: they agree.
        assert_eq!(
            client(
                &trusted,
                "10.0.0.1",
                &[
                    ("forwarded", "for=203.0.113.9, for=192.0.2.1"),
                    ("x-forwarded-for", "192.0.2.1")
                ]
            ),
            "192.0.2.1"
        );
    }

    #[test]
    fn trusted_proxies_parse_addresses_and_networks() {
        let trusted = proxies(&["10.0.0.5", "192.168.1.9/24", " ::ffff:127.0.0.1 "]);
        assert_eq!(
            trusted.to_string(),
            "10.0.0.5/32,192.168.1.0/24,127.0.0.1/32"
        );
        let error = TrustedProxies::parse(&["10.0.0.300"]).unwrap_err();
        assert!(error.contains("neither an address nor a CIDR"), "{error}");
        let parsed: TrustedProxies = serde_json::from_str(r#"["10.0.0.0/8"]"#).unwrap();
        assert_eq!(parsed, proxies(&["10.0.0.0/8"]));
        assert!(serde_json::from_str::<TrustedProxies>(r#"["nope"]"#).is_err());
    }
}
