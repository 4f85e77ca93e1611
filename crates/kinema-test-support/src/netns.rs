//! Separate hosts for one test: each [`Host`] is a network namespace with
//! one address in 10.77.0.0/24 on a bridge that lives in a namespace of its
//! own, so the hosts reach each other and nothing else (the test's own
//! namespace has no address on that network, and no interface of the test
//! machine changes). A process runs on a host through `ip netns exec`
//! ([`Host::command`]); the test itself talks to a host's network from a
//! thread that entered its namespace ([`Host::connect`], [`Host::run`]). A
//! host is cut off ([`Network::partition`]: its bridge port goes down, so
//! gossip and HTTP to and from it both stop) and joined again
//! ([`Network::heal`]).
//!
//! Every network of a test process has its own name prefix (process id and
//! a counter), so tests running in parallel never collide, and every
//! network reuses the same subnet, which is private to its bridge. All of
//! it is deleted when the [`Network`] is dropped (with the processes still
//! running in it), and networks a killed run left behind (their process is
//! gone) are deleted when the next one is made.
//!
//! Needs root and iproute2 (CI runs as root); without them making a network
//! fails the test with what to do, never skips it. What this is not: a link
//! model; see [`crate::shaped_link`] for a thin link.

use std::ffi::OsStr;
use std::io;
use std::net::{Ipv4Addr, SocketAddr, TcpStream};
use std::os::fd::AsFd;
use std::process::{Command, Stdio};
use std::sync::atomic::{AtomicU32, Ordering};
use std::time::Duration;

/// What every namespace a [`Network`] makes is named after.
const NAME_PREFIX: &str = "kinema-net-";

/// Most hosts on one network (addresses .1 to .200 of the /24).
pub const MAX_HOSTS: usize = 200;

/// Longest host name (namespace names become file names and log fields).
pub const MAX_HOST_NAME: usize = 24;

/// Networks made by this process so far: part of each one's name.
static NETWORKS_MADE: AtomicU32 = AtomicU32::new(0);

/// A host: a network namespace with one address on the network's bridge.
#[derive(Debug, Clone)]
pub struct Host {
    name: String,
    namespace: String,
    /// The host's veth end in the bridge's namespace (a bridge port).
    bridge_port: String,
    address: Ipv4Addr,
}

/// Hosts on one bridge; everything is removed when dropped.
#[derive(Debug)]
pub struct Network {
    bridge_namespace: String,
    hosts: Vec<Host>,
}

impl Network {
    /// Makes one host per name, addressed 10.77.0.1, .2, … in that order,
    /// all reaching each other. Names are at most [`MAX_HOST_NAME`] ASCII
    /// letters, digits and dashes, unique, at most [`MAX_HOSTS`] of them.
    pub fn new(host_names: &[&str]) -> Self {
        assert!(
            !host_names.is_empty() && host_names.len() <= MAX_HOSTS,
            "a network has 1 to {MAX_HOSTS} hosts, not {}",
            host_names.len()
        );
        for (index, name) in host_names.iter().enumerate() {
            assert!(
                !name.is_empty()
                    && name.len() <= MAX_HOST_NAME
                    && name.bytes().all(|b| b.is_ascii_alphanumeric() || b == b'-'),
                "host name {name:?} must be 1 to {MAX_HOST_NAME} ASCII letters, digits or dashes"
            );
            assert!(
                !host_names[..index].contains(name),
                "host name {name:?} is given twice"
            );
        }
        require_root();
        delete_leftovers();
        let prefix = format!(
            "{NAME_PREFIX}{}-{}",
            std::process::id(),
            NETWORKS_MADE.fetch_add(1, Ordering::Relaxed)
        );
        let mut network = Self {
            bridge_namespace: format!("{prefix}-bridge"),
            hosts: Vec::new(),
        };
        let bridge = network.bridge_namespace.clone();
        ip(&["netns", "add", &bridge]);
        ip(&["-n", &bridge, "link", "add", "br0", "type", "bridge"]);
        ip(&["-n", &bridge, "link", "set", "br0", "up"]);
        for (index, name) in host_names.iter().enumerate() {
            let host = Host {
                name: (*name).to_owned(),
                namespace: format!("{prefix}-{name}"),
                bridge_port: format!("port{index}"),
                address: Ipv4Addr::new(10, 77, 0, index as u8 + 1),
            };
            ip(&["netns", "add", &host.namespace]);
            // Made inside the namespaces, so no interface name is ever taken
            // in the test's own namespace.
            ip(&[
                "-n",
                &bridge,
                "link",
                "add",
                &host.bridge_port,
                "type",
                "veth",
                "peer",
                "name",
                "eth0",
                "netns",
                &host.namespace,
            ]);
            ip(&[
                "-n",
                &bridge,
                "link",
                "set",
                &host.bridge_port,
                "master",
                "br0",
                "up",
            ]);
            let namespace = host.namespace.clone();
            ip(&[
                "-n",
                &namespace,
                "addr",
                "add",
                &format!("{}/24", host.address),
                "dev",
                "eth0",
            ]);
            ip(&["-n", &namespace, "link", "set", "eth0", "up"]);
            ip(&["-n", &namespace, "link", "set", "lo", "up"]);
            network.hosts.push(host);
        }
        network
    }

    /// The host named `name`.
    pub fn host(&self, name: &str) -> &Host {
        self.hosts
            .iter()
            .find(|host| host.name == name)
            .unwrap_or_else(|| panic!("no host {name:?} on this network"))
    }

    pub fn hosts(&self) -> &[Host] {
        &self.hosts
    }

    /// Cuts `name` off the network: its bridge port goes down, so nothing
    /// reaches it and nothing it sends arrives (its own address stays, and
    /// connections to it hang rather than being refused, as a host behind
    /// a broken link).
    pub fn partition(&self, name: &str) {
        let port = &self.host(name).bridge_port;
        ip(&["-n", &self.bridge_namespace, "link", "set", port, "down"]);
    }

    /// Joins `name` to the network again after [`Network::partition`].
    pub fn heal(&self, name: &str) {
        let port = &self.host(name).bridge_port;
        ip(&["-n", &self.bridge_namespace, "link", "set", port, "up"]);
    }
}

impl Drop for Network {
    fn drop(&mut self) {
        for host in &self.hosts {
            delete_namespace(&host.namespace);
        }
        delete_namespace(&self.bridge_namespace);
    }
}

impl Host {
    pub fn name(&self) -> &str {
        &self.name
    }

    /// The network namespace's name (for `ip netns exec`).
    pub fn namespace(&self) -> &str {
        &self.namespace
    }

    pub fn address(&self) -> Ipv4Addr {
        self.address
    }

    /// `address:port` on this host.
    pub fn socket(&self, port: u16) -> SocketAddr {
        SocketAddr::from((self.address, port))
    }

    /// `program` to be run on this host (`ip netns exec`, which execs it:
    /// the child's process id is the program's).
    pub fn command(&self, program: impl AsRef<OsStr>) -> Command {
        let mut command = Command::new("ip");
        command
            .args(["netns", "exec", &self.namespace])
            .arg(program);
        command
    }

    /// Runs `work` on a thread inside this host's network namespace: the
    /// sockets it makes belong to the host and stay there after it returns.
    pub fn run<T: Send>(&self, work: impl FnOnce() -> T + Send) -> T {
        let path = format!("/run/netns/{}", self.namespace);
        std::thread::scope(|scope| {
            scope
                .spawn(|| {
                    let handle = std::fs::File::open(&path)
                        .unwrap_or_else(|error| panic!("cannot open {path}: {error}"));
                    rustix::thread::move_into_link_name_space(
                        handle.as_fd(),
                        Some(rustix::thread::LinkNameSpaceType::Network),
                    )
                    .unwrap_or_else(|error| panic!("cannot enter {path} (needs root): {error}"));
                    work()
                })
                .join()
                .unwrap_or_else(|panic| std::panic::resume_unwind(panic))
        })
    }

    /// A TCP connection from this host to `address`.
    pub fn connect(&self, address: SocketAddr, timeout: Duration) -> io::Result<TcpStream> {
        self.run(|| TcpStream::connect_timeout(&address, timeout))
    }
}

/// Fails the test, saying why, unless it runs as root.
fn require_root() {
    use std::os::unix::fs::MetadataExt;
    // /proc/self belongs to the process's effective user.
    let uid = std::fs::metadata("/proc/self")
        .map(|meta| meta.uid())
        .unwrap_or(u32::MAX);
    assert!(
        uid == 0,
        "the network-namespace tests need root (uid 0, not {uid}): ip netns, veth pairs and a \
         bridge; run them as root (CI does), e.g. sudo -E cargo nextest run"
    );
}

/// Deletes the namespaces of networks whose process is gone (a run that was
/// killed before it could drop them).
fn delete_leftovers() {
    let Ok(output) = Command::new("ip").args(["netns", "list"]).output() else {
        return;
    };
    for line in String::from_utf8_lossy(&output.stdout).lines() {
        let Some(namespace) = line.split_whitespace().next() else {
            continue;
        };
        let Some(rest) = namespace.strip_prefix(NAME_PREFIX) else {
            continue;
        };
        let Some(Ok(pid)) = rest.split('-').next().map(str::parse::<u32>) else {
            continue;
        };
        if !std::path::Path::new(&format!("/proc/{pid}")).exists() {
            delete_namespace(namespace);
        }
    }
}

/// Kills what still runs in `namespace` (processes of this network's own
/// run), then deletes it; deleting a namespace removes its veth ends and,
/// with them, their peers.
fn delete_namespace(namespace: &str) {
    let own = std::process::id().to_string();
    if let Ok(output) = Command::new("ip")
        .args(["netns", "pids", namespace])
        .stderr(Stdio::null())
        .output()
    {
        for pid in String::from_utf8_lossy(&output.stdout).split_whitespace() {
            if pid != own {
                let _ = Command::new("kill").args(["-KILL", pid]).status();
            }
        }
    }
    let _ = Command::new("ip")
        .args(["netns", "delete", namespace])
        .stderr(Stdio::null())
        .status();
}

pub(crate) fn ip(args: &[&str]) {
    run_checked(Command::new("ip").args(args));
}

pub(crate) fn run_checked(command: &mut Command) {
    let output = command
        .stdin(Stdio::null())
        .output()
        .unwrap_or_else(|error| panic!("cannot run {command:?} (install iproute2): {error}"));
    assert!(
        output.status.success(),
        "{command:?} failed ({}): {}; network namespaces need root and iproute2 (CI runs as root)",
        output.status,
        String::from_utf8_lossy(&output.stderr).trim()
    );
}
