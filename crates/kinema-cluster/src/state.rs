//! What each node publishes in its gossiped key-value state, and the typed
//! [`Member`] view parsed back from it.
//!
//! Keys are short and values are decimal strings, so a node's whole state is
//! a few hundred bytes and gossips in one datagram. Parsing refuses anything
//! malformed or out of range: a node that gossips garbage is shown as
//! unusable, with the reason, and never makes anyone panic.

use std::net::SocketAddr;
use std::sync::Arc;

/// Key names, as gossiped.
pub(crate) mod key {
    pub const ROLE: &str = "role";
    pub const URL: &str = "url";
    pub const REGION: &str = "region";
    pub const CAPACITY: &str = "cap_bps";
    pub const EGRESS: &str = "egress_bps";
    pub const SESSIONS: &str = "sessions";
    pub const LOAD: &str = "load";
    pub const HEALTH: &str = "health";
}

/// The optional key a node gossips its network-quality summary under
/// (`kinema_netq::Summary`'s text: its best- and worst-served client
/// prefixes). Not part of [`NodeInfo`]: a node without it, or with a value
/// longer than [`MAX_NETWORK_QUALITY_LEN`], is simply unmeasured.
pub const NETWORK_QUALITY_KEY: &str = "netq";
pub const MAX_NETWORK_QUALITY_LEN: usize = 400;

/// Bounds on what a node may publish, and what a reader accepts.
pub const MAX_URL_LEN: usize = 256;
pub const MAX_REGION_LEN: usize = 64;
pub const MAX_NODE_ID_LEN: usize = 64;

/// What a node does in the delivery path.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum Role {
    Origin,
    Edge,
}

impl Role {
    pub fn as_str(self) -> &'static str {
        match self {
            Role::Origin => "origin",
            Role::Edge => "edge",
        }
    }
}

/// Whether a live node takes new viewers.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum Health {
    Ok,
    /// Leaving: finishes what it serves, takes nothing new.
    Draining,
}

impl Health {
    pub fn as_str(self) -> &'static str {
        match self {
            Health::Ok => "ok",
            Health::Draining => "draining",
        }
    }
}

/// The figures a node republishes as they change.
#[derive(Debug, Clone, Copy, PartialEq, Default)]
pub struct NodeFigures {
    /// Bits per second being sent to viewers now.
    pub egress_bps: u64,
    /// Viewing sessions open now.
    pub sessions: u64,
    /// How busy the serving threads are, 0 to 1 (`ServerStats::load`).
    pub load: f64,
}

impl NodeFigures {
    /// The load as gossiped: three decimals, clamped to 0..1, so a jitter
    /// below a thousandth publishes nothing new.
    pub(crate) fn load_text(&self) -> String {
        let load = if self.load.is_finite() {
            self.load.clamp(0.0, 1.0)
        } else {
            1.0
        };
        format!("{load:.3}")
    }
}

/// A node's published state, parsed and checked.
#[derive(Debug, Clone, PartialEq)]
pub struct NodeInfo {
    pub role: Role,
    /// Where viewers and other nodes reach its HTTP service.
    pub public_url: String,
    pub region: String,
    /// Egress it can sustain, bits per second (> 0).
    pub capacity_bps: u64,
    pub figures: NodeFigures,
    pub health: Health,
}

/// Why a node's state could not be used.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct MalformedState(pub String);

impl std::fmt::Display for MalformedState {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(&self.0)
    }
}

/// One node as this node sees it.
#[derive(Debug, Clone, PartialEq)]
pub struct Member {
    pub node_id: Arc<str>,
    /// Changes at every start of the node, so a restart is a new member.
    pub generation: u64,
    pub gossip_addr: SocketAddr,
    /// This node itself.
    pub is_self: bool,
    /// Its published state, or why it cannot be used.
    pub state: Result<NodeInfo, MalformedState>,
}

impl Member {
    /// Live, well-formed and not draining: may be given new viewers.
    pub fn is_usable(&self) -> bool {
        matches!(&self.state, Ok(info) if info.health == Health::Ok)
    }

    pub fn health(&self) -> Option<Health> {
        self.state.as_ref().ok().map(|info| info.health)
    }
}

fn text<'a>(get: &impl Fn(&str) -> Option<&'a str>, name: &str) -> Result<&'a str, MalformedState> {
    get(name).ok_or_else(|| MalformedState(format!("{name} is missing")))
}

fn number<'a>(get: &impl Fn(&str) -> Option<&'a str>, name: &str) -> Result<u64, MalformedState> {
    let value = get(name).ok_or_else(|| MalformedState(format!("{name} is missing")))?;
    // Plain decimal digits only: no sign, no spaces, at most 20 digits.
    if value.is_empty() || value.len() > 20 || !value.bytes().all(|b| b.is_ascii_digit()) {
        return Err(MalformedState(format!(
            "{name} {value:?} is not a decimal number"
        )));
    }
    value
        .parse()
        .map_err(|_| MalformedState(format!("{name} {value:?} is out of range")))
}

/// Parses a node's key-value state; `get` looks a key up.
pub fn parse_node_info<'a>(
    get: impl Fn(&str) -> Option<&'a str>,
) -> Result<NodeInfo, MalformedState> {
    let role = match text(&get, key::ROLE)? {
        "origin" => Role::Origin,
        "edge" => Role::Edge,
        other => {
            return Err(MalformedState(format!(
                "role {other:?} is neither origin nor edge"
            )));
        }
    };
    let public_url = text(&get, key::URL)?;
    if public_url.len() > MAX_URL_LEN
        || !(public_url.starts_with("http://") || public_url.starts_with("https://"))
        || public_url
            .chars()
            .any(|c| c.is_whitespace() || c.is_control())
    {
        return Err(MalformedState(format!(
            "url {public_url:?} is not an http(s) URL"
        )));
    }
    let region = text(&get, key::REGION)?;
    if region.len() > MAX_REGION_LEN || region.chars().any(|c| c.is_whitespace() || c.is_control())
    {
        return Err(MalformedState(format!(
            "region {region:?} is too long or has spaces"
        )));
    }
    let capacity_bps = number(&get, key::CAPACITY)?;
    if capacity_bps == 0 {
        return Err(MalformedState("cap_bps is 0".into()));
    }
    let egress_bps = number(&get, key::EGRESS)?;
    let sessions = number(&get, key::SESSIONS)?;
    let load_text = text(&get, key::LOAD)?;
    let load: f64 = (load_text.len() <= 8
        && load_text.bytes().all(|b| b.is_ascii_digit() || b == b'.'))
    .then(|| load_text.parse().ok())
    .flatten()
    .filter(|load: &f64| (0.0..=1.0).contains(load))
    .ok_or_else(|| MalformedState(format!("load {load_text:?} is not a number from 0 to 1")))?;
    let health = match text(&get, key::HEALTH)? {
        "ok" => Health::Ok,
        "draining" => Health::Draining,
        other => {
            return Err(MalformedState(format!(
                "health {other:?} is neither ok nor draining"
            )));
        }
    };
    Ok(NodeInfo {
        role,
        public_url: public_url.to_owned(),
        region: region.to_owned(),
        capacity_bps,
        figures: NodeFigures {
            egress_bps,
            sessions,
            load,
        },
        health,
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::collections::HashMap;

    fn valid() -> HashMap<&'static str, String> {
        HashMap::from([
            ("role", "edge".to_string()),
            ("url", "http://10.0.0.2:8080".to_string()),
            ("region", "eu-west".to_string()),
            ("cap_bps", "10000000000".to_string()),
            ("egress_bps", "2500000".to_string()),
            ("sessions", "12".to_string()),
            ("load", "0.250".to_string()),
            ("health", "ok".to_string()),
        ])
    }

    fn parse(state: &HashMap<&'static str, String>) -> Result<NodeInfo, MalformedState> {
        parse_node_info(|name| state.get(name).map(String::as_str))
    }

    #[test]
    fn parses_a_well_formed_state() {
        let info = parse(&valid()).unwrap();
        assert_eq!(
            info,
            NodeInfo {
                role: Role::Edge,
                public_url: "http://10.0.0.2:8080".into(),
                region: "eu-west".into(),
                capacity_bps: 10_000_000_000,
                figures: NodeFigures {
                    egress_bps: 2_500_000,
                    sessions: 12,
                    load: 0.25
                },
                health: Health::Ok,
            }
        );
    }

    #[test]
    fn malformed_values_are_refused_with_their_reason() {
        for (name, value, reason) in [
            ("role", "cache", "role \"cache\""),
            ("url", "ftp://x", "not an http(s) URL"),
            ("url", "http://a b", "not an http(s) URL"),
            ("region", "eu west", "has spaces"),
            ("cap_bps", "0", "cap_bps is 0"),
            ("cap_bps", "-5", "not a decimal number"),
            ("cap_bps", "1e9", "not a decimal number"),
            ("egress_bps", "99999999999999999999", "out of range"),
            ("sessions", " 3", "not a decimal number"),
            ("sessions", "", "not a decimal number"),
            ("load", "1.5", "from 0 to 1"),
            ("load", "NaN", "from 0 to 1"),
            ("load", "-0.1", "from 0 to 1"),
            ("load", "inf", "from 0 to 1"),
            ("health", "sick", "health \"sick\""),
        ] {
            let mut state = valid();
            state.insert(name, value.to_string());
            let error = parse(&state).unwrap_err();
            assert!(error.0.contains(reason), "{name}={value:?}: {error}");
        }
        let mut state = valid();
        state.insert("url", format!("http://{}", "a".repeat(300)));
        assert!(parse(&state).is_err());
    }

    #[test]
    fn missing_keys_are_refused() {
        for name in [
            "role",
            "url",
            "region",
            "cap_bps",
            "egress_bps",
            "sessions",
            "load",
            "health",
        ] {
            let mut state = valid();
            state.remove(name);
            assert_eq!(
                parse(&state).unwrap_err(),
                MalformedState(format!("{name} is missing"))
            );
        }
    }

    #[test]
    fn load_is_gossiped_with_three_decimals_and_clamped() {
        let figures = |load| NodeFigures {
            load,
            ..NodeFigures::default()
        };
        assert_eq!(figures(0.12345).load_text(), "0.123");
        assert_eq!(figures(1.7).load_text(), "1.000");
        assert_eq!(figures(-1.0).load_text(), "0.000");
        assert_eq!(figures(f64::NAN).load_text(), "1.000");
    }

    #[test]
    fn draining_member_is_not_usable() {
        let mut state = valid();
        state.insert("health", "draining".into());
        let member = Member {
            node_id: "a".into(),
            generation: 1,
            gossip_addr: "127.0.0.1:1".parse().unwrap(),
            is_self: false,
            state: parse(&state),
        };
        assert_eq!(member.health(), Some(Health::Draining));
        assert!(!member.is_usable());
    }
}
