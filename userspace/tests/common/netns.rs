//! Reusable network-namespace helpers for integration tests (root only: tests check that
//! with `common/require.rs` first).
//!
//! Include with `#[path = "common/netns.rs"] mod netns;`. Everything created here has a name
//! unique to this process and is removed on Drop, also when the test fails:
//! - [`Netns::new`]: a namespace (`ip netns add`), deleted on Drop (which also destroys the
//!   interfaces inside it, e.g. both ends of a veth pair placed in namespaces).
//! - [`veth_pair`]: a veth pair with N RX/TX queues, one end in each namespace, both up.
//! - [`Netns::ip`] / [`Netns::exec`]: run `ip -n NS ...` / `ip netns exec NS ...`.
//! - [`Netns::run`]: run a closure on a fresh thread that has entered the namespace (sockets
//!   created there stay in that namespace when used from other threads).
//! - [`Netns::enter_current_thread`]: `setns` the calling thread (for long-lived workers).
#![allow(dead_code)] // each test binary uses a different subset

use std::{
    fs::File,
    io,
    os::fd::AsRawFd,
    process::{Command, Output},
    sync::atomic::{AtomicU32, Ordering},
};

static SEQ: AtomicU32 = AtomicU32::new(0);

/// `prefix` + pid + a per-process sequence number, short enough for an interface name
/// (at most 15 bytes) when `prefix` has at most 4 bytes.
pub fn unique_name(prefix: &str) -> String {
    let seq = SEQ.fetch_add(1, Ordering::Relaxed);
    format!("{prefix}{:x}{seq:x}", std::process::id())
}

fn failed(what: &str, out: &Output) -> io::Error {
    io::Error::other(format!(
        "`{what}` failed ({}): {}",
        out.status,
        String::from_utf8_lossy(&out.stderr).trim()
    ))
}

/// Runs a command, returning its stdout, or an error carrying its stderr.
pub fn run_checked(cmd: &mut Command) -> io::Result<String> {
    let what = format!("{cmd:?}");
    let out = cmd
        .output()
        .map_err(|e| io::Error::new(e.kind(), format!("could not start `{what}`: {e}")))?;
    if !out.status.success() {
        return Err(failed(&what, &out));
    }
    Ok(String::from_utf8_lossy(&out.stdout).into_owned())
}

/// `ip ARGS` in the current (root) namespace.
pub fn ip_root(args: &[&str]) -> io::Result<String> {
    run_checked(Command::new("ip").args(args))
}

/// A network namespace, deleted on Drop.
#[derive(Debug)]
pub struct Netns {
    name: String,
}

impl Netns {
    /// Creates `<prefix><pid><seq>` and brings its loopback up.
    pub fn new(prefix: &str) -> io::Result<Netns> {
        let name = unique_name(prefix);
        ip_root(&["netns", "add", &name])?;
        let ns = Netns { name };
        ns.ip(&["link", "set", "lo", "up"])?;
        Ok(ns)
    }

    pub fn name(&self) -> &str {
        &self.name
    }

    /// `ip -n NS ARGS`.
    pub fn ip(&self, args: &[&str]) -> io::Result<String> {
        run_checked(Command::new("ip").arg("-n").arg(&self.name).args(args))
    }

    /// `ip netns exec NS PROGRAM ARGS`, checked; returns stdout.
    pub fn exec(&self, program: &str, args: &[&str]) -> io::Result<String> {
        run_checked(
            Command::new("ip")
                .args(["netns", "exec", &self.name, program])
                .args(args),
        )
    }

    /// A `Command` for `PROGRAM` that will run inside the namespace (for spawning daemons).
    pub fn command(&self, program: &str) -> Command {
        let mut cmd = Command::new("ip");
        cmd.args(["netns", "exec", &self.name, program]);
        cmd
    }

    /// Adds `cidr` (e.g. "10.1.0.1/24", "fd00::1/64") to `dev`; IPv6 without DAD so it is
    /// usable at once.
    pub fn add_addr(&self, dev: &str, cidr: &str) -> io::Result<()> {
        if cidr.contains(':') {
            self.ip(&["addr", "add", cidr, "dev", dev, "nodad"])?;
        } else {
            self.ip(&["addr", "add", cidr, "dev", dev])?;
        }
        Ok(())
    }

    /// Moves the calling thread into this namespace (`setns(CLONE_NEWNET)`). Sockets created
    /// afterwards by this thread belong to the namespace; other threads are unaffected.
    pub fn enter_current_thread(&self) -> io::Result<()> {
        enter_netns(&self.name)
    }

    /// Runs `f` on a new thread inside this namespace and returns its result.
    pub fn run<T, F>(&self, f: F) -> io::Result<T>
    where
        T: Send + 'static,
        F: FnOnce() -> T + Send + 'static,
    {
        let name = self.name.clone();
        let handle = std::thread::spawn(move || enter_netns(&name).map(|()| f()));
        handle
            .join()
            .map_err(|_| io::Error::other(format!("thread in netns {} panicked", self.name)))?
    }
}

/// `setns` the calling thread into the named namespace (`/run/netns/NAME`).
pub fn enter_netns(name: &str) -> io::Result<()> {
    let path = format!("/run/netns/{name}");
    let file =
        File::open(&path).map_err(|e| io::Error::new(e.kind(), format!("opening {path}: {e}")))?;
    // SAFETY: the fd is valid for the duration of the call; setns only changes the calling
    // thread's network namespace.
    if unsafe { libc::setns(file.as_raw_fd(), libc::CLONE_NEWNET) } != 0 {
        let e = io::Error::last_os_error();
        return Err(io::Error::new(e.kind(), format!("setns into {path}: {e}")));
    }
    Ok(())
}

impl Drop for Netns {
    fn drop(&mut self) {
        if let Err(e) = ip_root(&["netns", "del", &self.name]) {
            eprintln!("cleanup: deleting netns {}: {e}", self.name);
        }
    }
}

/// The two interface names of a veth pair made by [`veth_pair`].
#[derive(Debug, Clone)]
pub struct VethPair {
    /// The end in the first namespace.
    pub a: String,
    /// The end in the second namespace.
    pub b: String,
}

/// Creates a veth pair with `queues` RX and TX queues per end, moves end `a` into `ns_a` and
/// end `b` into `ns_b`, and brings both up. The pair disappears with either namespace.
pub fn veth_pair(ns_a: &Netns, ns_b: &Netns, queues: u32) -> io::Result<VethPair> {
    let pair = VethPair {
        a: unique_name("va"),
        b: unique_name("vb"),
    };
    let q = queues.to_string();
    ip_root(&[
        "link",
        "add",
        &pair.a,
        "numrxqueues",
        &q,
        "numtxqueues",
        &q,
        "type",
        "veth",
        "peer",
        "name",
        &pair.b,
        "numrxqueues",
        &q,
        "numtxqueues",
        &q,
    ])?;
    let placed = ip_root(&["link", "set", &pair.a, "netns", ns_a.name()])
        .and_then(|_| ip_root(&["link", "set", &pair.b, "netns", ns_b.name()]));
    if let Err(e) = placed {
        // Still (partly) in the root namespace: remove it here, nobody else will.
        let _ = ip_root(&["link", "del", &pair.a]);
        return Err(e);
    }
    ns_a.ip(&["link", "set", &pair.a, "up"])?;
    ns_b.ip(&["link", "set", &pair.b, "up"])?;
    Ok(pair)
}
