//! Network-namespace test beds: a "server" and a "client" namespace joined
//! by one veth pair, torn down when the value is dropped (also on panic).
//!
//! Names include the process id and a caller tag, so parallel tests and
//! parallel runs never collide; traffic stays inside the two namespaces.
//! Everything is done with `ip(8)`, which every test machine has.

use std::io;
use std::net::Ipv4Addr;
use std::process::{Child, Command, Output, Stdio};

/// Runs `ip ARGS`, failing with its stderr when it fails.
pub fn ip(args: &[&str]) -> io::Result<()> {
    let out = Command::new("ip")
        .args(args)
        .stdin(Stdio::null())
        .output()?;
    check(&out, &format!("ip {}", args.join(" ")))
}

fn check(out: &Output, what: &str) -> io::Result<()> {
    if out.status.success() {
        return Ok(());
    }
    Err(io::Error::other(format!(
        "`{what}` failed ({}): {}",
        out.status,
        String::from_utf8_lossy(&out.stderr).trim()
    )))
}

/// Whether we run as root (namespaces, XDP and AF_XDP need it).
pub fn is_root() -> bool {
    // SAFETY: geteuid has no preconditions.
    unsafe { libc::geteuid() == 0 }
}

/// One named network namespace; deleted on drop.
#[derive(Debug)]
pub struct Netns {
    name: String,
}

impl Netns {
    pub fn create(name: &str) -> io::Result<Self> {
        ip(&["netns", "add", name])?;
        let ns = Netns {
            name: name.to_owned(),
        };
        ns.ip(&["link", "set", "lo", "up"])?;
        Ok(ns)
    }

    pub fn name(&self) -> &str {
        &self.name
    }

    /// `ip -n NAME ARGS`.
    pub fn ip(&self, args: &[&str]) -> io::Result<()> {
        let mut v = vec!["-n", self.name.as_str()];
        v.extend_from_slice(args);
        ip(&v)
    }

    /// A command that runs `program` inside this namespace (`ip netns exec`).
    pub fn command(&self, program: &str) -> Command {
        let mut c = Command::new("ip");
        c.args(["netns", "exec", &self.name, program]);
        c
    }

    /// Moves the calling thread into this namespace (network namespaces are
    /// per thread; threads it spawns afterwards start there too). For a
    /// dedicated thread: it does not return to the previous namespace.
    pub fn enter_current_thread(&self) -> io::Result<()> {
        let path = format!("/run/netns/{}", self.name);
        let f = std::fs::File::open(&path)
            .map_err(|e| io::Error::new(e.kind(), format!("opening {path}: {e}")))?;
        // SAFETY: a valid namespace descriptor; affects only this thread.
        let rc = unsafe { libc::setns(std::os::fd::AsRawFd::as_raw_fd(&f), libc::CLONE_NEWNET) };
        if rc != 0 {
            let e = io::Error::last_os_error();
            return Err(io::Error::new(e.kind(), format!("setns({path}): {e}")));
        }
        Ok(())
    }

    /// Runs `program args` in the namespace and returns its output.
    pub fn run(&self, program: &str, args: &[&str]) -> io::Result<Output> {
        self.command(program)
            .args(args)
            .stdin(Stdio::null())
            .output()
    }
}

impl Drop for Netns {
    fn drop(&mut self) {
        // Deleting the namespace also deletes the veth end inside it (and so the pair).
        if let Err(e) = ip(&["netns", "del", &self.name]) {
            eprintln!("netns cleanup: {e}");
        }
    }
}

/// How to build a [`NetnsPair`].
#[derive(Clone, Debug)]
pub struct PairConfig {
    /// Short tag in the names (at most 4 characters keeps interface names < 16).
    pub tag: String,
    /// RX/TX queues of each veth end.
    pub queues: u32,
    pub server_addr: Ipv4Addr,
    pub client_addr: Ipv4Addr,
    pub prefix_len: u8,
}

impl PairConfig {
    pub fn new(tag: &str) -> Self {
        PairConfig {
            tag: tag.chars().take(4).collect(),
            queues: 1,
            server_addr: Ipv4Addr::new(10, 77, 0, 1),
            client_addr: Ipv4Addr::new(10, 77, 0, 2),
            prefix_len: 16,
        }
    }
}

/// Two namespaces, `server` and `client`, with one veth pair between them:
/// `server_if` (with `server_addr`) in the first, `client_if` (with
/// `client_addr`) in the second. Dropped in reverse order of creation.
#[derive(Debug)]
pub struct NetnsPair {
    pub server_if: String,
    pub client_if: String,
    pub server_addr: Ipv4Addr,
    pub client_addr: Ipv4Addr,
    pub prefix_len: u8,
    // Field order is drop order: client namespace, then server namespace.
    pub client: Netns,
    pub server: Netns,
}

impl NetnsPair {
    pub fn create(cfg: &PairConfig) -> io::Result<Self> {
        let pid = std::process::id();
        let base = format!("xl{}{}", cfg.tag, pid);
        let server = Netns::create(&format!("{base}s"))?;
        let client = Netns::create(&format!("{base}c"))?;
        // Interface names are created in the server namespace directly, so
        // nothing ever appears in the caller's namespace.
        let server_if = format!("{base}s");
        let client_if = format!("{base}c");
        let q = cfg.queues.max(1).to_string();
        server.ip(&[
            "link",
            "add",
            &server_if,
            "numrxqueues",
            &q,
            "numtxqueues",
            &q,
            "type",
            "veth",
            "peer",
            "name",
            &client_if,
            "numrxqueues",
            &q,
            "numtxqueues",
            &q,
            "netns",
            client.name(),
        ])?;
        let plen = cfg.prefix_len.to_string();
        let sa = format!("{}/{plen}", cfg.server_addr);
        let ca = format!("{}/{plen}", cfg.client_addr);
        server.ip(&["addr", "add", &sa, "dev", &server_if])?;
        client.ip(&["addr", "add", &ca, "dev", &client_if])?;
        server.ip(&["link", "set", &server_if, "up"])?;
        client.ip(&["link", "set", &client_if, "up"])?;
        Ok(NetnsPair {
            server_if,
            client_if,
            server_addr: cfg.server_addr,
            client_addr: cfg.client_addr,
            prefix_len: cfg.prefix_len,
            client,
            server,
        })
    }
}

/// A child process killed (SIGTERM, then SIGKILL) and reaped on drop.
#[derive(Debug)]
pub struct ChildGuard {
    child: Option<Child>,
    what: String,
}

impl ChildGuard {
    pub fn new(child: Child, what: &str) -> Self {
        ChildGuard {
            child: Some(child),
            what: what.to_owned(),
        }
    }

    /// Whether the process has exited already (and its status).
    pub fn try_wait(&mut self) -> io::Result<Option<std::process::ExitStatus>> {
        match self.child.as_mut() {
            Some(c) => c.try_wait(),
            None => Ok(None),
        }
    }

    /// Stops the process and returns its output (if piped).
    pub fn stop(mut self) -> io::Result<Output> {
        let Some(child) = self.child.take() else {
            return Err(io::Error::other(format!("{} already stopped", self.what)));
        };
        terminate(&child);
        child.wait_with_output()
    }
}

fn terminate(child: &Child) {
    let pid = child.id() as libc::pid_t;
    // SAFETY: signals to our own child (not yet reaped, so the pid is still ours).
    unsafe {
        libc::kill(pid, libc::SIGTERM);
    }
    for _ in 0..50 {
        let mut status = 0;
        // SAFETY: WNOHANG peek; WNOWAIT leaves it reapable by std's wait.
        let rc = unsafe {
            let mut info: libc::siginfo_t = std::mem::zeroed();
            let r = libc::waitid(
                libc::P_PID,
                pid as libc::id_t,
                &mut info,
                libc::WEXITED | libc::WNOHANG | libc::WNOWAIT,
            );
            if r == 0 && info.si_pid() != 0 {
                status = 1;
            }
            r
        };
        if rc != 0 || status == 1 {
            return;
        }
        std::thread::sleep(std::time::Duration::from_millis(20));
    }
    // SAFETY: as above.
    unsafe {
        libc::kill(pid, libc::SIGKILL);
    }
}

impl Drop for ChildGuard {
    fn drop(&mut self) {
        if let Some(mut c) = self.child.take() {
            terminate(&c);
            let _ = c.wait();
        }
    }
}
