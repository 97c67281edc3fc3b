//! Support for the daemon namespace tests (`daemon_ns.rs`): locating or building the release
//! daemon, a two-namespace test bed, process guards (daemon, clients, tcpdump) that are killed
//! on Drop, lease-table reads (also of a running daemon's file, through a copy), and a small
//! pcap reader for the server's DHCP replies.
//!
//! Everything is bounded in time: waits take a deadline, external one-shot commands run under
//! `timeout`, long-lived ones are killed by their guard, and the daemon also gets `--run-for`.
#![allow(dead_code)] // not every test uses every helper

use std::collections::HashMap;
use std::fs;
use std::net::Ipv4Addr;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, ExitStatus, Stdio};
use std::sync::OnceLock;
use std::time::{Duration, Instant};

use lease_store::{Lease, LeaseTable, OpenOptions, PoolSpec};

use crate::netns::{veth_pair, Netns, VethPair};

pub type Res<T> = Result<T, String>;

/// Server address on the test link (the examples' `server-id`).
pub const SRV_ADDR: &str = "10.77.0.1";
/// Prefix length of the test link (`10.77.0.0/16`, as in `examples/demo.toml`).
pub const PREFIX: &str = "16";
/// Fixed MAC of the client end, so lease records can be matched to the client.
pub const CLI_MAC: [u8; 6] = [0x02, 0x5a, 0xd1, 0x00, 0x00, 0x02];

/// The data path under test.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Io {
    Xdp,
    Udp,
}

impl Io {
    /// The `--io` value, also the `io` field of the stats JSON.
    pub fn as_str(self) -> &'static str {
        match self {
            Io::Xdp => "xdp",
            Io::Udp => "udp",
        }
    }
}

/// The repository root (parent of the `userspace` crate).
pub fn repo_root() -> PathBuf {
    let dir = Path::new(env!("CARGO_MANIFEST_DIR"));
    dir.parent()
        .map_or_else(|| dir.to_path_buf(), Path::to_path_buf)
}

fn target_dir() -> PathBuf {
    match std::env::var_os("CARGO_TARGET_DIR") {
        Some(d) if !d.is_empty() => repo_root().join(d),
        _ => repo_root().join("target"),
    }
}

/// A binary named by environment variable `var`, if set and not empty. Tests run in the crate
/// directory: a relative path is taken from the repository root (where `cargo` is usually
/// typed), else from here.
fn bin_from_env(var: &str) -> Option<Res<PathBuf>> {
    let b = PathBuf::from(std::env::var_os(var).filter(|v| !v.is_empty())?);
    Some(
        [repo_root().join(&b), b.clone()]
            .into_iter()
            .find(|p| p.is_file())
            .ok_or_else(|| format!("{var}={} is not a file", b.display())),
    )
}

/// The release `xdhcp-loadgen`: `XDHCP_LOADGEN_BIN` if set, else built once with
/// `cargo build --release -p xdhcpd-tools --bin xdhcp-loadgen`.
pub fn loadgen_bin() -> Res<PathBuf> {
    static BIN: OnceLock<Res<PathBuf>> = OnceLock::new();
    BIN.get_or_init(|| {
        if let Some(p) = bin_from_env("XDHCP_LOADGEN_BIN") {
            return p;
        }
        let cargo = std::env::var_os("CARGO").unwrap_or_else(|| "cargo".into());
        eprintln!("tests: cargo build --release -p xdhcpd-tools --bin xdhcp-loadgen");
        let st = Command::new(cargo)
            .args([
                "build",
                "--release",
                "-p",
                "xdhcpd-tools",
                "--bin",
                "xdhcp-loadgen",
            ])
            .current_dir(repo_root())
            .status()
            .map_err(|e| format!("could not start cargo: {e}"))?;
        if !st.success() {
            return Err(format!("building xdhcp-loadgen failed ({st})"));
        }
        let bin = target_dir().join("release").join("xdhcp-loadgen");
        if bin.is_file() {
            Ok(bin)
        } else {
            Err(format!("{} missing after the build", bin.display()))
        }
    })
    .clone()
}

/// Path of `userspace/examples/NAME`.
pub fn example(name: &str) -> PathBuf {
    repo_root().join("userspace").join("examples").join(name)
}

/// The release daemon, found or built once per test binary:
/// 1. `XDHCPD_BIN` if set (`cargo xtask ci` sets it after `cargo xtask build`);
/// 2. else the eBPF object (`XDHCPD_EBPF_OBJECT`, else `target/bpfel-unknown-none/release/
///    xdhcpd-ebpf`, built with `cargo xtask build-ebpf` when missing) is embedded by
///    `cargo build --release -p xdhcpd`, exactly as `cargo xtask build` does, so the two share
///    one build and neither rebuilds the other's output.
pub fn xdhcpd_bin() -> Res<PathBuf> {
    static BIN: OnceLock<Res<PathBuf>> = OnceLock::new();
    BIN.get_or_init(find_or_build).clone()
}

fn find_or_build() -> Res<PathBuf> {
    if let Some(found) = bin_from_env("XDHCPD_BIN") {
        let found = found?;
        return found
            .canonicalize()
            .map_err(|e| format!("XDHCPD_BIN={}: {e}", found.display()));
    }
    let root = repo_root();
    let cargo = std::env::var_os("CARGO").unwrap_or_else(|| "cargo".into());
    let object = match std::env::var_os("XDHCPD_EBPF_OBJECT").filter(|v| !v.is_empty()) {
        Some(o) => PathBuf::from(o),
        None => target_dir()
            .join("bpfel-unknown-none")
            .join("release")
            .join("xdhcpd-ebpf"),
    };
    if !object.is_file() {
        eprintln!("daemon tests: building the eBPF object (cargo xtask build-ebpf)");
        let mut cmd = Command::new(&cargo);
        cmd.args(["xtask", "build-ebpf"]).current_dir(&root);
        run_status(&mut cmd)?;
        if !object.is_file() {
            return Err(format!(
                "`cargo xtask build-ebpf` succeeded but {} is missing",
                object.display()
            ));
        }
    }
    eprintln!("daemon tests: cargo build --release -p xdhcpd (eBPF object embedded)");
    let mut cmd = Command::new(&cargo);
    cmd.args(["build", "--release", "-p", "xdhcpd"])
        .env("XDHCPD_EBPF_OBJECT", &object)
        .current_dir(&root);
    run_status(&mut cmd)?;
    let bin = target_dir().join("release").join("xdhcpd");
    if !bin.is_file() {
        return Err(format!(
            "cargo build succeeded but {} is missing",
            bin.display()
        ));
    }
    Ok(bin)
}

fn run_status(cmd: &mut Command) -> Res<()> {
    let status = cmd
        .status()
        .map_err(|e| format!("could not start {cmd:?}: {e}"))?;
    if !status.success() {
        return Err(format!("{cmd:?} failed ({status})"));
    }
    Ok(())
}

/// Runs a one-shot command to completion (the caller bounds it with `timeout`).
pub struct Output {
    pub status: ExitStatus,
    pub stdout: String,
    pub stderr: String,
}

pub fn output(cmd: &mut Command) -> Res<Output> {
    let out = cmd
        .stdin(Stdio::null())
        .output()
        .map_err(|e| format!("could not start {cmd:?}: {e}"))?;
    Ok(Output {
        status: out.status,
        stdout: String::from_utf8_lossy(&out.stdout).into_owned(),
        stderr: String::from_utf8_lossy(&out.stderr).into_owned(),
    })
}

/// Polls `f` every 50 ms until it returns `Some`, or fails naming `what` after `limit`.
pub fn wait_for<T>(what: &str, limit: Duration, mut f: impl FnMut() -> Res<Option<T>>) -> Res<T> {
    let end = Instant::now() + limit;
    loop {
        if let Some(v) = f()? {
            return Ok(v);
        }
        if Instant::now() >= end {
            return Err(format!("timed out after {limit:?} waiting for {what}"));
        }
        std::thread::sleep(Duration::from_millis(50));
    }
}

/// The text of a file, empty when it does not exist yet.
pub fn read_text(path: &Path) -> Res<String> {
    match fs::read(path) {
        Ok(b) => Ok(String::from_utf8_lossy(&b).into_owned()),
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => Ok(String::new()),
        Err(e) => Err(format!("reading {}: {e}", path.display())),
    }
}

pub fn write_file(path: &Path, text: &str) -> Res<()> {
    fs::write(path, text).map_err(|e| format!("writing {}: {e}", path.display()))
}

/// Writes an executable shell script.
pub fn write_script(path: &Path, text: &str) -> Res<()> {
    use std::os::unix::fs::PermissionsExt;
    write_file(path, text)?;
    fs::set_permissions(path, fs::Permissions::from_mode(0o755))
        .map_err(|e| format!("chmod {}: {e}", path.display()))
}

pub fn mac_str(m: &[u8]) -> String {
    m.iter()
        .map(|b| format!("{b:02x}"))
        .collect::<Vec<_>>()
        .join(":")
}

/// Two namespaces joined by a 2-queue veth: the server end has `SRV_ADDR/16`, the client end
/// has [`CLI_MAC`] and, if asked, an address. Fields drop in order: namespaces (which removes
/// the veth), then the scratch directory. Processes must be stopped before the bed drops:
/// declare their guards after the bed.
pub struct Bed {
    pub srv: Netns,
    pub cli: Netns,
    pub link: VethPair,
    pub dir: tempfile::TempDir,
}

impl Bed {
    pub fn new(cli_addr: Option<&str>) -> Res<Bed> {
        let dir = tempfile::Builder::new()
            .prefix("xdhcpd-ns-")
            .tempdir()
            .map_err(|e| format!("creating a temporary directory: {e}"))?;
        let srv = Netns::new("xds").map_err(|e| e.to_string())?;
        let cli = Netns::new("xdc").map_err(|e| e.to_string())?;
        let link = veth_pair(&srv, &cli, 2).map_err(|e| e.to_string())?;
        srv.add_addr(&link.a, &format!("{SRV_ADDR}/{PREFIX}"))
            .map_err(|e| e.to_string())?;
        cli.ip(&["link", "set", &link.b, "address", &mac_str(&CLI_MAC)])
            .map_err(|e| e.to_string())?;
        if let Some(a) = cli_addr {
            cli.add_addr(&link.b, a).map_err(|e| e.to_string())?;
        }
        Ok(Bed {
            srv,
            cli,
            link,
            dir,
        })
    }

    /// The server's interface.
    pub fn srv_if(&self) -> &str {
        &self.link.a
    }

    /// The client's interface.
    pub fn cli_if(&self) -> &str {
        &self.link.b
    }

    pub fn path(&self, name: &str) -> PathBuf {
        self.dir.path().join(name)
    }

    /// Spawns `program args` in the client namespace with stdout/stderr to `log`.
    /// `ip netns exec` execs the program, so the guard's pid is the program's own.
    pub fn spawn_client(&self, what: &str, program: &str, args: &[&str], log: &Path) -> Res<Proc> {
        Proc::spawn(what, self.cli.command(program).args(args), log)
    }

    /// Whether an XDP program is attached to the server interface (`ip link` shows `xdp`).
    pub fn srv_has_xdp(&self) -> Res<bool> {
        let out = self
            .srv
            .ip(&["link", "show", "dev", self.srv_if()])
            .map_err(|e| e.to_string())?;
        Ok(out.contains("xdp"))
    }
}

/// A child process killed (SIGKILL) and reaped on Drop unless it already exited.
pub struct Proc {
    child: Child,
    what: String,
    pub log: PathBuf,
}

impl Proc {
    pub fn spawn(what: &str, cmd: &mut Command, log: &Path) -> Res<Proc> {
        let file = fs::File::create(log).map_err(|e| format!("creating {}: {e}", log.display()))?;
        let err = file
            .try_clone()
            .map_err(|e| format!("duplicating {}: {e}", log.display()))?;
        let child = cmd
            .stdin(Stdio::null())
            .stdout(file)
            .stderr(err)
            .spawn()
            .map_err(|e| format!("could not start {what} ({cmd:?}): {e}"))?;
        Ok(Proc {
            child,
            what: what.to_owned(),
            log: log.to_owned(),
        })
    }

    pub fn pid(&self) -> u32 {
        self.child.id()
    }

    /// Sends `sig`; fails if the process is gone.
    pub fn signal(&mut self, sig: libc::c_int) -> Res<()> {
        if let Some(st) = self.try_wait()? {
            return Err(format!(
                "{} exited early ({st}); log:\n{}",
                self.what,
                self.log_text()
            ));
        }
        let pid = libc::pid_t::try_from(self.child.id())
            .map_err(|_| format!("pid of {} out of range", self.what))?;
        // SAFETY: kill(2) on our own, not yet reaped child: the pid cannot have been reused.
        if unsafe { libc::kill(pid, sig) } != 0 {
            return Err(format!(
                "kill({pid}, {sig}) for {}: {}",
                self.what,
                std::io::Error::last_os_error()
            ));
        }
        Ok(())
    }

    pub fn try_wait(&mut self) -> Res<Option<ExitStatus>> {
        self.child
            .try_wait()
            .map_err(|e| format!("waiting for {}: {e}", self.what))
    }

    /// Waits up to `limit` for the process to exit.
    pub fn wait_exit(&mut self, limit: Duration) -> Res<ExitStatus> {
        let what = format!("{} to exit", self.what);
        wait_for(&what, limit, || self.try_wait())
    }

    /// Fails (with the log) if the process has exited.
    pub fn check_alive(&mut self) -> Res<()> {
        match self.try_wait()? {
            None => Ok(()),
            Some(st) => Err(format!(
                "{} exited unexpectedly ({st}); log:\n{}",
                self.what,
                self.log_text()
            )),
        }
    }

    pub fn log_text(&self) -> String {
        read_text(&self.log).unwrap_or_else(|e| e)
    }
}

impl Drop for Proc {
    fn drop(&mut self) {
        if let Ok(None) = self.child.try_wait() {
            let _ = self.child.kill();
            let _ = self.child.wait();
        }
    }
}

/// Final state of a daemon run: exit status, the stats JSON and the log.
pub struct Finished {
    pub stats: serde_json::Value,
    pub log: String,
}

impl Finished {
    /// `stats[section][key]` as an integer.
    pub fn counter(&self, section: &str, key: &str) -> Res<u64> {
        self.stats
            .get(section)
            .and_then(|s| s.get(key))
            .and_then(serde_json::Value::as_u64)
            .ok_or_else(|| format!("stats JSON has no integer {section}.{key}: {}", self.stats))
    }

    pub fn io(&self) -> Option<&str> {
        self.stats.get("io").and_then(serde_json::Value::as_str)
    }

    /// Checks the data path the run really used: `io` in the stats, and for XDP redirected
    /// packets (so the replies came through AF_XDP, not the kernel stack).
    pub fn check_io(&self, io: Io) -> Res<()> {
        if self.io() != Some(io.as_str()) {
            return Err(format!(
                "stats io = {:?}, expected {:?}; log:\n{}",
                self.io(),
                io.as_str(),
                self.log
            ));
        }
        match io {
            Io::Xdp => {
                let r = self.counter("xdp", "redirected")?;
                if r == 0 {
                    return Err(format!(
                        "xdp.redirected = 0 on the XDP path: {}",
                        self.stats
                    ));
                }
            }
            Io::Udp => {
                if self.stats.get("xdp").is_some_and(|v| !v.is_null()) {
                    return Err(format!("udp run reports XDP counters: {}", self.stats));
                }
            }
        }
        Ok(())
    }
}

/// A running `xdhcpd run` in the server namespace.
pub struct Daemon {
    proc: Proc,
    pub lease_file: PathBuf,
    pub stats_json: PathBuf,
    pub config: PathBuf,
}

/// Hard upper bound of any daemon run (`--run-for`), far above what a test needs.
const DAEMON_RUN_FOR: &str = "150";

impl Daemon {
    /// Starts the daemon on the bed's server interface with `config` and waits until it
    /// serves (the lease table is open and the data path bound).
    pub fn start(bed: &Bed, config: &Path, io: Io) -> Res<Daemon> {
        let bin = xdhcpd_bin()?;
        let lease_file = bed.path("leases.db");
        let stats_json = bed.path("stats.json");
        let log = bed.path("xdhcpd.log");
        let mut cmd = bed.srv.command(&bin.to_string_lossy());
        cmd.arg("run")
            .arg("-c")
            .arg(config)
            .args(["--interface", bed.srv_if(), "--io", io.as_str()])
            .arg("--lease-file")
            .arg(&lease_file)
            .args(["--stats-interval", "1", "--run-for", DAEMON_RUN_FOR])
            .arg("--stats-json")
            .arg(&stats_json)
            // The repository root: where a daemon without an embedded object looks for one.
            .current_dir(repo_root())
            .env("RUST_LOG", "info")
            .env("NO_COLOR", "1");
        let mut proc = Proc::spawn("xdhcpd", &mut cmd, &log)?;
        wait_for("xdhcpd to serve", Duration::from_secs(20), || {
            proc.check_alive()?;
            Ok(read_text(&log)?.contains("serving ").then_some(()))
        })?;
        // The signal handler is installed just after the "serving" line.
        std::thread::sleep(Duration::from_millis(200));
        Ok(Daemon {
            proc,
            lease_file,
            stats_json,
            config: config.to_owned(),
        })
    }

    pub fn check_alive(&mut self) -> Res<()> {
        self.proc.check_alive()
    }

    /// The daemon's process id (its threads are under `/proc/PID/task`).
    pub fn pid(&self) -> u32 {
        self.proc.pid()
    }

    pub fn log_text(&self) -> String {
        self.proc.log_text()
    }

    /// SIGTERM, a clean exit within 15 s, and the stats JSON it wrote.
    pub fn stop(mut self) -> Res<Finished> {
        self.proc.signal(libc::SIGTERM)?;
        let st = self.proc.wait_exit(Duration::from_secs(15))?;
        let log = self.proc.log_text();
        if !st.success() {
            return Err(format!("xdhcpd exited with {st}; log:\n{log}"));
        }
        let text = fs::read_to_string(&self.stats_json)
            .map_err(|e| format!("reading {}: {e}; log:\n{log}", self.stats_json.display()))?;
        let stats = serde_json::from_str(&text)
            .map_err(|e| format!("parsing {}: {e}", self.stats_json.display()))?;
        Ok(Finished { stats, log })
    }
}

/// Counters by name.
pub type Counts = std::collections::BTreeMap<String, u64>;

/// The counters of a stopped daemon's final stats line (`final: name=N ... xdp: name=N ...`):
/// the engine's, and the XDP program's (empty without XDP).
pub fn final_counters(log: &str) -> Res<(Counts, Counts)> {
    let line = log
        .lines()
        .rev()
        .find_map(|l| l.split_once("final: ").map(|(_, rest)| rest))
        .ok_or_else(|| format!("no final stats line in the log:\n{log}"))?;
    let (engine, xdp) = line.split_once(" xdp: ").unwrap_or((line, ""));
    let parse = |part: &str| -> Res<Counts> {
        part.split_whitespace()
            .map(|kv| {
                let (k, v) = kv
                    .split_once('=')
                    .ok_or_else(|| format!("`{kv}` in the final stats line: {line}"))?;
                let v = v
                    .parse()
                    .map_err(|_| format!("`{kv}` in the final stats line: {line}"))?;
                Ok((k.to_owned(), v))
            })
            .collect()
    };
    Ok((parse(engine)?, parse(xdp)?))
}

/// The lease-store pools of a configuration file.
pub fn pools_of(config: &Path) -> Res<Vec<PoolSpec>> {
    let cfg = xdhcpd_config::load(config).map_err(|e| e.to_string())?;
    Ok(cfg
        .pool_specs()
        .into_iter()
        .map(|(id, first, last)| PoolSpec { id, first, last })
        .collect())
}

/// Every record of a lease file that no daemon holds (open fails on a locked file). Damaged
/// records are an error: the daemon must leave a clean table.
pub fn read_table(path: &Path, pools: &[PoolSpec]) -> Res<Vec<Lease>> {
    let opts = OpenOptions {
        create: false,
        ..OpenOptions::default()
    };
    let (table, report) = LeaseTable::open(path, pools, &opts)
        .map_err(|e| format!("opening lease table {}: {e}", path.display()))?;
    if !report.quarantined.is_empty() || !report.repaired.is_empty() || report.rebuilt.is_some() {
        return Err(format!(
            "lease table {} was not clean: quarantined {:?}, repaired {:?}, rebuilt {:?}",
            path.display(),
            report.quarantined,
            report.repaired,
            report.rebuilt
        ));
    }
    Ok(table.iter().map(|(_, l)| l).collect())
}

/// The records of a running daemon's lease file. The daemon holds the file's lock, so this
/// reads a copy: the daemon writes through a shared mapping, so a plain read of the file sees
/// its current records. Call it while the client is quiet (a copy racing an update could
/// catch a record mid-write, which `read_table` reports).
pub fn snapshot_table(daemon: &Daemon, dir: &Path, pools: &[PoolSpec]) -> Res<Vec<Lease>> {
    static N: std::sync::atomic::AtomicU32 = std::sync::atomic::AtomicU32::new(0);
    let n = N.fetch_add(1, std::sync::atomic::Ordering::Relaxed);
    let copy = dir.join(format!("snapshot-{n}.db"));
    fs::copy(&daemon.lease_file, &copy).map_err(|e| {
        format!(
            "copying {} to {}: {e}",
            daemon.lease_file.display(),
            copy.display()
        )
    })?;
    read_table(&copy, pools)
}

/// The record of `addr` in `table`.
pub fn record(table: &[Lease], addr: Ipv4Addr) -> Res<Lease> {
    table
        .iter()
        .find(|l| l.addr == addr)
        .copied()
        .ok_or_else(|| format!("no lease record for {addr}"))
}

/// Current wall-clock time in unix seconds (the daemon's clock for lease times).
pub fn unix_now() -> u32 {
    lease_store::unix_now()
}

// ----------------------------------------------------------------------- pcap

/// DHCP message types of interest (option 53).
pub const OFFER: u8 = 2;
pub const ACK: u8 = 5;
pub const NAK: u8 = 6;

/// One DHCP reply seen on the wire.
#[derive(Clone, Copy, Debug)]
pub struct Reply {
    /// Capture time, seconds (pcap record timestamp).
    pub at: f64,
    pub msg_type: u8,
    pub chaddr: [u8; 6],
    pub yiaddr: Ipv4Addr,
}

/// The DHCPv4 BOOTREPLYs (Ethernet/IPv4/UDP) in a classic pcap file. Other frames are skipped;
/// a record cut short at the end (capture stopped mid-write) ends the file.
pub fn read_dhcp_replies(path: &Path) -> Res<Vec<Reply>> {
    let data = fs::read(path).map_err(|e| format!("reading {}: {e}", path.display()))?;
    let bad = |why: &str| format!("{}: {why}", path.display());
    let head = data
        .get(..24)
        .ok_or_else(|| bad("shorter than a pcap header"))?;
    let magic = [head[0], head[1], head[2], head[3]];
    let le = match magic {
        [0xd4, 0xc3, 0xb2, 0xa1] | [0x4d, 0x3c, 0xb2, 0xa1] => true,
        [0xa1, 0xb2, 0xc3, 0xd4] | [0xa1, 0xb2, 0x3c, 0x4d] => false,
        _ => return Err(bad("not a pcap file (bad magic)")),
    };
    let u32_at = |b: &[u8], at: usize| -> u32 {
        let w = [b[at], b[at + 1], b[at + 2], b[at + 3]];
        if le {
            u32::from_le_bytes(w)
        } else {
            u32::from_be_bytes(w)
        }
    };
    if u32_at(head, 20) != 1 {
        return Err(bad("link type is not Ethernet"));
    }
    let mut out = Vec::new();
    let mut at = 24;
    // Nanosecond-resolution files have a different magic.
    let frac_per_sec = if matches!(magic, [0x4d, 0x3c, 0xb2, 0xa1] | [0xa1, 0xb2, 0x3c, 0x4d]) {
        1e9
    } else {
        1e6
    };
    while let Some(rec) = data.get(at..at + 16) {
        let when = f64::from(u32_at(rec, 0)) + f64::from(u32_at(rec, 4)) / frac_per_sec;
        let len = u32_at(rec, 8) as usize;
        let Some(frame) = data.get(at + 16..at + 16 + len) else {
            break;
        };
        at += 16 + len;
        if let Some(r) = parse_reply(frame, when) {
            out.push(r);
        }
    }
    Ok(out)
}

fn parse_reply(f: &[u8], at: f64) -> Option<Reply> {
    if f.get(12..14)? != [0x08, 0x00] {
        return None;
    }
    let ip = f.get(14..)?;
    let ihl = usize::from(ip.first()? & 0x0f) * 4;
    if ip.first()? >> 4 != 4 || ihl < 20 || *ip.get(9)? != 17 {
        return None;
    }
    let udp = ip.get(ihl..)?;
    if udp.get(0..2)? != 67u16.to_be_bytes() {
        return None;
    }
    let d = udp.get(8..)?;
    // BOOTREPLY, Ethernet, 6-byte hardware address, and the magic cookie.
    if *d.first()? != 2
        || *d.get(1)? != 1
        || *d.get(2)? != 6
        || d.get(236..240)? != [99, 130, 83, 99]
    {
        return None;
    }
    let yiaddr = Ipv4Addr::new(*d.get(16)?, *d.get(17)?, *d.get(18)?, *d.get(19)?);
    let chaddr: [u8; 6] = d.get(28..34)?.try_into().ok()?;
    let mut opts = d.get(240..)?;
    while let Some((&code, rest)) = opts.split_first() {
        match code {
            0 => opts = rest,
            255 => break,
            _ => {
                let (&len, rest) = rest.split_first()?;
                let val = rest.get(..usize::from(len))?;
                if code == 53 && len == 1 {
                    return Some(Reply {
                        at,
                        msg_type: val[0],
                        chaddr,
                        yiaddr,
                    });
                }
                opts = rest.get(usize::from(len)..)?;
            }
        }
    }
    None
}

/// `tcpdump` writing the server's DHCP replies seen on the client interface to a pcap file.
pub struct Capture {
    proc: Proc,
    pub pcap: PathBuf,
}

impl Capture {
    pub fn start(bed: &Bed) -> Res<Capture> {
        let pcap = bed.path("replies.pcap");
        let log = bed.path("tcpdump.log");
        let filter = format!("udp and src host {SRV_ADDR} and src port 67");
        let pcap_s = pcap.to_string_lossy().into_owned();
        // -Z root: keep privileges so it can write into our root-owned temporary directory;
        // -U: write each packet at once; -B: 64 MiB kernel buffer so bursts are not dropped.
        let args = [
            "-i",
            bed.cli_if(),
            "-n",
            "-p",
            "-U",
            "-Z",
            "root",
            "-B",
            "65536",
            "-w",
            &pcap_s,
            &filter,
        ];
        let mut proc = bed.spawn_client("tcpdump", "tcpdump", &args, &log)?;
        wait_for("tcpdump to listen", Duration::from_secs(10), || {
            proc.check_alive()?;
            Ok(read_text(&log)?.contains("listening on").then_some(()))
        })?;
        Ok(Capture { proc, pcap })
    }

    /// Stops the capture (SIGINT: tcpdump closes the file) and returns the packets the
    /// kernel dropped before tcpdump could read them.
    pub fn stop(mut self) -> Res<u64> {
        self.proc.signal(libc::SIGINT)?;
        self.proc.wait_exit(Duration::from_secs(10))?;
        let log = self.proc.log_text();
        let dropped = log
            .lines()
            .find_map(|l| l.strip_suffix(" packets dropped by kernel"))
            .and_then(|n| n.trim().parse().ok())
            .ok_or_else(|| format!("tcpdump did not report its drops:\n{log}"))?;
        Ok(dropped)
    }
}

/// `received packets:` of one `***Statistics for: NAME***` section of perfdhcp's report.
pub fn perfdhcp_received(report: &str, exchange: &str) -> Option<u64> {
    let head = format!("***Statistics for: {exchange}***");
    let section = report.split(&head).nth(1)?;
    section
        .lines()
        .take_while(|l| !l.starts_with("***"))
        .find_map(|l| l.trim().strip_prefix("received packets:"))
        .and_then(|n| n.trim().parse().ok())
}

/// Groups `(key, value)` pairs and returns keys seen with more than one distinct value.
pub fn conflicts<K, V>(pairs: impl IntoIterator<Item = (K, V)>) -> Vec<(K, Vec<V>)>
where
    K: std::hash::Hash + Eq + Clone,
    V: PartialEq + Clone,
{
    let mut m: HashMap<K, Vec<V>> = HashMap::new();
    for (k, v) in pairs {
        let vs = m.entry(k).or_default();
        if !vs.contains(&v) {
            vs.push(v);
        }
    }
    m.into_iter().filter(|(_, vs)| vs.len() > 1).collect()
}

/// Packet counters of one interface (`ip -s -j link`).
#[derive(Clone, Copy, Debug, Default)]
pub struct LinkStats {
    pub rx_packets: u64,
    pub rx_dropped: u64,
    pub tx_packets: u64,
    pub tx_dropped: u64,
}

pub fn link_stats(ns: &Netns, dev: &str) -> Res<LinkStats> {
    let text = ns
        .ip(&["-s", "-j", "link", "show", "dev", dev])
        .map_err(|e| e.to_string())?;
    let v: serde_json::Value =
        serde_json::from_str(&text).map_err(|e| format!("parsing `ip -s -j link`: {e}"))?;
    let s = v
        .get(0)
        .and_then(|l| l.get("stats64"))
        .ok_or_else(|| format!("no stats64 for {dev}: {text}"))?;
    let n = |dir: &str, key: &str| {
        s.get(dir)
            .and_then(|d| d.get(key))
            .and_then(serde_json::Value::as_u64)
            .unwrap_or(0)
    };
    Ok(LinkStats {
        rx_packets: n("rx", "packets"),
        rx_dropped: n("rx", "dropped"),
        tx_packets: n("tx", "packets"),
        tx_dropped: n("tx", "dropped"),
    })
}

/// Packets dropped by the kernel's per-CPU input backlogs so far (all namespaces: the
/// second column of /proc/net/softnet_stat, summed).
pub fn softnet_dropped() -> Res<u64> {
    let text = read_text(Path::new("/proc/net/softnet_stat"))?;
    Ok(text
        .lines()
        .filter_map(|l| l.split_whitespace().nth(1))
        .filter_map(|h| u64::from_str_radix(h, 16).ok())
        .sum())
}
