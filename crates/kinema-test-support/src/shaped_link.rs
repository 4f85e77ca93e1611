//! A thin last-mile link for tests: a network namespace joined to the test's
//! own by a veth pair, whose namespace side sends at most a given rate
//! (`tc` tbf, the shaper that works here; netem does not). A server started
//! inside with [`ShapedLink::command`] is reached at [`ShapedLink::address`],
//! and everything it sends to the test crosses the shaped link.
//!
//! Needs root (CI runs as root) and iproute2's `ip` and `tc`; a missing
//! piece fails the test with what to do, never skips it. The namespace and
//! both veth ends are removed when the link is dropped.

use std::net::Ipv4Addr;
use std::process::{Command, Stdio};

use crate::netns::{ip, run_checked};

#[derive(Debug)]
pub struct ShapedLink {
    namespace: String,
    address: Ipv4Addr,
}

impl ShapedLink {
    /// Makes the namespace and the veth pair, the namespace side sending at
    /// most `rate` (tc's syntax, e.g. "250kbit").
    pub fn new(rate: &str) -> Self {
        let pid = std::process::id();
        let namespace = format!("kinema-thin-{pid}");
        // Interface names are at most 15 bytes; the pid keeps concurrent
        // runs apart, and picks the /30 the pair uses.
        let host_side = format!("kt{pid}h");
        let server_side = format!("kt{pid}s");
        let subnet = (pid % (1 << 14)) * 4;
        let host_address = Ipv4Addr::new(10, 213, (subnet >> 8) as u8, (subnet & 0xff) as u8 + 1);
        let address = Ipv4Addr::new(10, 213, (subnet >> 8) as u8, (subnet & 0xff) as u8 + 2);
        // A namespace of the same name left by a killed run goes first.
        let _ = Command::new("ip")
            .args(["netns", "delete", &namespace])
            .stderr(Stdio::null())
            .status();
        let link = Self { namespace, address };
        ip(&["netns", "add", &link.namespace]);
        ip(&[
            "link",
            "add",
            &host_side,
            "type",
            "veth",
            "peer",
            "name",
            &server_side,
        ]);
        ip(&["link", "set", &server_side, "netns", &link.namespace]);
        ip(&[
            "addr",
            "add",
            &format!("{host_address}/30"),
            "dev",
            &host_side,
        ]);
        ip(&["link", "set", &host_side, "up"]);
        link.inside(&["ip", "link", "set", "lo", "up"]);
        link.inside(&[
            "ip",
            "addr",
            "add",
            &format!("{address}/30"),
            "dev",
            &server_side,
        ]);
        link.inside(&["ip", "link", "set", &server_side, "up"]);
        // A burst of one full frame keeps the rate honest over any window
        // longer than a packet; 400 ms of queue is what a thin access link
        // buffers.
        link.inside(&[
            "tc",
            "qdisc",
            "add",
            "dev",
            &server_side,
            "root",
            "tbf",
            "rate",
            rate,
            "burst",
            "1600",
            "latency",
            "400ms",
        ]);
        link
    }

    /// The server's address inside the namespace.
    pub fn address(&self) -> Ipv4Addr {
        self.address
    }

    /// The namespace's name (for `ip netns exec`, or to enter it).
    pub fn namespace(&self) -> &str {
        &self.namespace
    }

    /// `program` to be run inside the namespace.
    pub fn command(&self, program: impl AsRef<std::ffi::OsStr>) -> Command {
        let mut command = Command::new("ip");
        command
            .args(["netns", "exec", &self.namespace])
            .arg(program);
        command
    }

    fn inside(&self, args: &[&str]) {
        let mut command = self.command(args[0]);
        command.args(&args[1..]);
        run_checked(&mut command);
    }
}

impl Drop for ShapedLink {
    fn drop(&mut self) {
        // Deleting the namespace deletes the veth end in it, and with it
        // its peer.
        let _ = Command::new("ip")
            .args(["netns", "delete", &self.namespace])
            .status();
    }
}
