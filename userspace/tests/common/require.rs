//! What a test needs from the machine, and the one policy when it is missing.
//!
//! Include with `#[path = "common/require.rs"] mod require;` (the tools tests include this
//! same file by path). A test that needs root (network namespaces,
//! veth, XDP, AF_XDP), a build output such as the eBPF object, or a Debian program (dhcpd,
//! kea-dhcp4, perfdhcp, udhcpc, dhclient, tcpdump, ...) starts with
//!
//! ```ignore
//! if !require(&[Capability::Root, Capability::Program("dhcpd")]) {
//!     return; // skipped on request (XDHCPD_SKIP_NETNS=1), reason printed
//! }
//! ```
//!
//! - Everything present: `require` returns `true` and the test runs.
//! - Something missing: the test **fails**, naming what is missing and how to get it (run as
//!   root; `cargo xtask setup` installs the programs, `cargo xtask build-ebpf` builds the
//!   object). A test that cannot run never passes silently.
//! - Skipping is only on explicit request: with `XDHCPD_SKIP_NETNS=1` a missing capability
//!   prints `SKIPPED <test>: <reason>` to stderr and `require` returns `false`.
//! - Under CI (`CI=true`) skipping is refused: a missing capability fails the test even with
//!   `XDHCPD_SKIP_NETNS=1`.
#![allow(dead_code)] // each test binary uses a different subset

use std::io::Write;
use std::path::PathBuf;

/// The variable that asks for tests whose capabilities are missing to be skipped.
pub const SKIP_VAR: &str = "XDHCPD_SKIP_NETNS";

/// Something a test needs from the machine.
#[derive(Clone, Debug)]
pub enum Capability {
    /// Root: network namespaces, veth pairs, XDP and AF_XDP.
    Root,
    /// A program on PATH, from the Debian package [`debian_package`] names.
    Program(&'static str),
    /// The eBPF object (XDP program) at this path, built by `cargo xtask build-ebpf`.
    EbpfObject(PathBuf),
    /// A program outside PATH (e.g. PostgreSQL's `initdb`), from the Debian package named.
    File(PathBuf, &'static str),
}

/// The Debian package that provides `program` (the ones `cargo xtask setup` installs, and
/// base-system tools the tests call).
pub fn debian_package(program: &str) -> &'static str {
    match program {
        "dhcpd" => "isc-dhcp-server",
        "dhclient" => "isc-dhcp-client",
        "dhcpcd" => "dhcpcd",
        "kea-dhcp4" => "kea-dhcp4-server",
        "perfdhcp" => "kea-admin",
        "busybox" | "udhcpc" => "busybox",
        "tcpdump" => "tcpdump",
        "bpftool" => "bpftool",
        "prometheus" | "promtool" => "prometheus",
        "timeout" | "cp" => "coreutils",
        "taskset" | "setpriv" => "util-linux",
        "losetup" | "mount" | "umount" => "mount",
        "mkfs.ext4" => "e2fsprogs",
        "ip" => "iproute2",
        "nft" => "nftables",
        "bash" => "bash",
        "useradd" | "userdel" | "groupdel" => "passwd",
        "systemd-analyze" => "systemd",
        "psql" | "initdb" | "pg_ctl" => "postgresql",
        "nats-server" => "nats-server",
        _ => "?",
    }
}

impl Capability {
    /// `None` when present, else what is missing and how to get it.
    fn missing(&self) -> Option<String> {
        match self {
            Capability::Root => {
                // SAFETY: geteuid has no preconditions and cannot fail.
                let root = unsafe { libc::geteuid() } == 0;
                (!root).then(|| {
                    "root (network namespaces, veth, XDP, AF_XDP): run the tests as root".into()
                })
            }
            Capability::Program(name) => (!on_path(name)).then(|| {
                format!(
                    "`{name}` on PATH (Debian package {}): run `cargo xtask setup` as root",
                    debian_package(name)
                )
            }),
            Capability::File(path, package) => (!path.is_file()).then(|| {
                format!(
                    "{} (Debian package {package}): run `cargo xtask setup` as root",
                    path.display()
                )
            }),
            Capability::EbpfObject(path) => (!path.is_file()).then(|| {
                format!(
                    "the eBPF object {}: run `cargo xtask build-ebpf` (after `cargo xtask setup`)",
                    path.display()
                )
            }),
        }
    }
}

fn on_path(program: &str) -> bool {
    std::env::var_os("PATH")
        .is_some_and(|p| std::env::split_paths(&p).any(|d| d.join(program).is_file()))
}

fn env_is(var: &str, values: &[&str]) -> bool {
    std::env::var(var).is_ok_and(|v| values.iter().any(|w| v.eq_ignore_ascii_case(w)))
}

/// `true` when every capability is present. Otherwise panics naming what is missing, unless
/// `XDHCPD_SKIP_NETNS=1` outside CI: then prints `SKIPPED <test>: <reason>` and returns
/// `false`, and the test returns at once. See the module documentation.
#[must_use = "return from the test when require() says it was skipped"]
pub fn require(caps: &[Capability]) -> bool {
    let missing: Vec<String> = caps.iter().filter_map(Capability::missing).collect();
    if missing.is_empty() {
        return true;
    }
    // libtest runs each test on a thread named after it.
    let thread = std::thread::current();
    let test = thread.name().unwrap_or("this test");
    let reason = format!("needs {}", missing.join("; "));
    let skip = env_is(SKIP_VAR, &["1"]);
    if env_is("CI", &["true", "1"]) {
        panic!(
            "{test} cannot run: {reason}. Under CI (CI=true) a test never skips{}",
            if skip {
                format!(", even with {SKIP_VAR}=1")
            } else {
                String::new()
            }
        );
    }
    if skip {
        // Straight to the stderr file (eprintln! would be captured and hidden by libtest):
        // a skip is always visible.
        let _ = writeln!(std::io::stderr(), "SKIPPED {test}: {reason}");
        return false;
    }
    panic!("{test} cannot run: {reason}. To skip such tests on purpose, set {SKIP_VAR}=1");
}
