//! The client prefix measurements are kept by: a /24 for IPv4, a /48 for
//! IPv6, as viewers behind one access network share its path to a node
//! (and as a /48 is what one IPv6 site is given). An IPv4-mapped IPv6
//! address counts as the IPv4 address it maps.

use std::fmt;
use std::net::{IpAddr, Ipv4Addr, Ipv6Addr};
use std::str::FromStr;

/// A viewer's network: the first 24 bits of an IPv4 address or the first
/// 48 of an IPv6 one.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub enum ClientPrefix {
    V4([u8; 3]),
    V6([u16; 3]),
}

impl ClientPrefix {
    pub fn of(address: IpAddr) -> ClientPrefix {
        match address {
            IpAddr::V4(v4) => Self::of_v4(v4),
            IpAddr::V6(v6) => match v6.to_ipv4_mapped() {
                Some(v4) => Self::of_v4(v4),
                None => {
                    let segments = v6.segments();
                    ClientPrefix::V6([segments[0], segments[1], segments[2]])
                }
            },
        }
    }

    fn of_v4(address: Ipv4Addr) -> ClientPrefix {
        let [a, b, c, _] = address.octets();
        ClientPrefix::V4([a, b, c])
    }
}

/// `203.0.113.0/24`, `2001:db8:1::/48`.
impl fmt::Display for ClientPrefix {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match *self {
            ClientPrefix::V4([a, b, c]) => write!(f, "{}/24", Ipv4Addr::new(a, b, c, 0)),
            ClientPrefix::V6([a, b, c]) => {
                write!(f, "{}/48", Ipv6Addr::new(a, b, c, 0, 0, 0, 0, 0))
            }
        }
    }
}

/// Why a prefix's text was refused.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct BadPrefix(pub String);

impl fmt::Display for BadPrefix {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(
            f,
            "{:?} is not an IPv4 /24 or IPv6 /48 with its host bits zero",
            self.0
        )
    }
}

impl std::error::Error for BadPrefix {}

/// Parses what [`fmt::Display`] writes, and nothing else: the length must
/// be /24 or /48 and the bits past it zero.
impl FromStr for ClientPrefix {
    type Err = BadPrefix;

    fn from_str(text: &str) -> Result<Self, Self::Err> {
        let bad = || BadPrefix(text.chars().take(64).collect());
        let (address, length) = text.split_once('/').ok_or_else(bad)?;
        let address: IpAddr = address.parse().map_err(|_| bad())?;
        let prefix = match (address, length) {
            (IpAddr::V4(_), "24") | (IpAddr::V6(_), "48") => ClientPrefix::of(address),
            _ => return Err(bad()),
        };
        let exact = match (prefix, address) {
            (ClientPrefix::V4(_), IpAddr::V4(v4)) => v4.octets()[3] == 0,
            (ClientPrefix::V6(_), IpAddr::V6(v6)) => v6.segments()[3..].iter().all(|&s| s == 0),
            // An IPv4-mapped address written as a /48.
            _ => false,
        };
        if exact { Ok(prefix) } else { Err(bad()) }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn prefix(address: &str) -> ClientPrefix {
        ClientPrefix::of(address.parse().unwrap())
    }

    #[test]
    fn addresses_group_by_slash_24_and_slash_48() {
        assert_eq!(prefix("203.0.113.7"), prefix("203.0.113.250"));
        assert_ne!(prefix("203.0.113.7"), prefix("203.0.114.7"));
        assert_eq!(prefix("2001:db8:1:2::1"), prefix("2001:db8:1:ffff::9"));
        assert_ne!(prefix("2001:db8:1::1"), prefix("2001:db8:2::1"));
        assert_eq!(prefix("::ffff:203.0.113.9"), prefix("203.0.113.1"));
        assert_eq!(prefix("203.0.113.7").to_string(), "203.0.113.0/24");
        assert_eq!(prefix("2001:db8:1:2::1").to_string(), "2001:db8:1::/48");
    }

    #[test]
    fn the_text_form_reads_back_and_nothing_else_does() {
        for text in ["203.0.113.0/24", "2001:db8:1::/48", "10.0.0.0/24"] {
            assert_eq!(text.parse::<ClientPrefix>().unwrap().to_string(), text);
        }
        for text in [
            "203.0.113.5/24",
            "203.0.113.0/16",
            "203.0.113.0",
            "2001:db8:1:2::/48",
            "2001:db8::/64",
            "::ffff:203.0.113.0/48",
            "x/24",
            "",
        ] {
            assert!(text.parse::<ClientPrefix>().is_err(), "{text}");
        }
    }
}
