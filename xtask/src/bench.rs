//! `cargo xtask bench`: xdhcpd against its raw ceiling, Kea and ISC dhcpd, in
//! one run, over one veth pair, with one load generator and one scenario.
//!
//! Two namespaces joined by a 2-queue veth pair. In the server namespace, one
//! system at a time: `xdhcp-echo` (the raw XDP -> AF_XDP ceiling), xdhcpd in
//! XDP mode (commit=ack, then commit=interval:10), xdhcpd with `--io udp`,
//! Kea 2.2 and ISC dhcpd 4.4, each under `taskset -c 1`. In the client
//! namespace `xdhcp-loadgen` (AF_XDP, one thread on core 0) sweeps the offered
//! DORA rate (open loop, geometric) until more than 10% is lost, then measures
//! p99 latency at half the max sustained rate, renew-only (closed loop) and
//! DORA closed loop. Results: a table on stdout, JSON + SVG in
//! `results/bench-<UTC timestamp>/`, and with `--record` the End-to-end
//! section of `benches/RESULTS.md`.
//!
//! Everything created (namespaces, processes, temporary files) is removed on
//! success, on error and on Ctrl-C (Drop guards + a SIGINT flag).

mod analysis;
mod report;
mod svg;

use std::fs;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::{Duration, Instant};

use anyhow::{bail, Context, Result};
use serde_json::{json, Value};

use crate::netns::NetnsPair;
use crate::{build, ebpf, setup, util};
use analysis::{
    fmt_rate, fmt_us, max_sustained, next_target, ratio, refine_between, stop_reason, Point,
};

#[derive(Debug, clap::Args)]
pub struct BenchArgs {
    /// A smoke test: fewer, shorter points (under 3 minutes).
    #[arg(long)]
    pub quick: bool,
    /// Systems to measure, comma-separated (default all): ceiling, xdhcpd-xdp,
    /// xdhcpd-xdp-interval, xdhcpd-udp, kea, dhcpd.
    #[arg(long, value_delimiter = ',')]
    pub systems: Vec<String>,
    /// Seconds of load per point (default 5; 1.5 with --quick).
    #[arg(long)]
    pub duration: Option<f64>,
    /// Skip `cargo xtask setup` (toolchain and packages assumed present).
    #[arg(long)]
    pub no_setup: bool,
    /// Use the binaries already in target/release (for iterating on the harness).
    #[arg(long)]
    pub no_build: bool,
    /// Write the results into the End-to-end section of benches/RESULTS.md.
    #[arg(long)]
    pub record: bool,
    /// Profile both cores with `perf record -a -g` at the max sustained rate of
    /// the ceiling and of xdhcpd XDP (report text in the results folder).
    #[arg(long)]
    pub profile: bool,
}

/// One measured system.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum System {
    Ceiling,
    XdpAck,
    XdpInterval,
    Udp,
    Kea,
    Dhcpd,
}

impl System {
    pub const ALL: [System; 6] = [
        System::Ceiling,
        System::XdpAck,
        System::XdpInterval,
        System::Udp,
        System::Kea,
        System::Dhcpd,
    ];

    pub fn key(self) -> &'static str {
        match self {
            System::Ceiling => "ceiling",
            System::XdpAck => "xdhcpd-xdp",
            System::XdpInterval => "xdhcpd-xdp-interval",
            System::Udp => "xdhcpd-udp",
            System::Kea => "kea",
            System::Dhcpd => "dhcpd",
        }
    }

    pub fn label(self) -> &'static str {
        match self {
            System::Ceiling => "raw ceiling (XDP→AF_XDP echo)",
            System::XdpAck => "xdhcpd XDP, commit=ack",
            System::XdpInterval => "xdhcpd XDP, commit=interval:10",
            System::Udp => "xdhcpd --io udp, commit=ack",
            System::Kea => "Kea 2.2 (MT 2 threads, memfile, raw)",
            System::Dhcpd => "ISC dhcpd 4.4",
        }
    }

    fn color(self) -> &'static str {
        match self {
            System::Ceiling => "#555555",
            System::XdpAck => "#d62728",
            System::XdpInterval => "#ff7f0e",
            System::Udp => "#9467bd",
            System::Kea => "#1f77b4",
            System::Dhcpd => "#2ca02c",
        }
    }

    fn parse(s: &str) -> Result<System> {
        System::ALL
            .into_iter()
            .find(|x| x.key() == s.trim())
            .with_context(|| {
                let keys: Vec<&str> = System::ALL.iter().map(|x| x.key()).collect();
                format!(
                    "--systems: unknown system {s:?} (known: {})",
                    keys.join(", ")
                )
            })
    }

    /// The sweep's scale: first and largest target, simulated clients for the
    /// sweep and for renew (renew first binds every client), closed-loop depth.
    fn scale(self, quick: bool) -> Scale {
        let (start, max, clients, renew_clients, concurrency) = match self {
            System::Ceiling => (25_000, 1_600_000, 50_000, 50_000, 256),
            // commit=ack waits for the disk once per batch: a lower start.
            System::XdpAck => (2_000, 800_000, 50_000, 50_000, 256),
            System::XdpInterval => (10_000, 800_000, 50_000, 50_000, 256),
            System::Udp => (2_000, 400_000, 50_000, 50_000, 256),
            System::Kea => (1_000, 64_000, 16_000, 8_000, 64),
            // fsync per lease: from tens to thousands per second, with the disk.
            System::Dhcpd => (25, 12_800, 1_000, 200, 16),
        };
        let quick_renew = if self == System::Dhcpd { 60 } else { 4_000 };
        Scale {
            start: if quick { start * 2 } else { start },
            max,
            clients,
            renew_clients: if quick {
                renew_clients.min(quick_renew)
            } else {
                renew_clients
            },
            concurrency,
            factor: std::f64::consts::SQRT_2,
            max_points: if quick { 5 } else { 14 },
        }
    }

    fn is_xdhcpd(self) -> bool {
        matches!(self, System::XdpAck | System::XdpInterval | System::Udp)
    }
}

#[derive(Clone, Copy, Debug)]
struct Scale {
    start: u64,
    max: u64,
    clients: u32,
    renew_clients: u32,
    concurrency: u32,
    factor: f64,
    max_points: usize,
}

/// Everything measured for one system.
#[derive(Clone, Debug)]
pub struct SystemResult {
    pub system: System,
    pub sweep: Vec<Point>,
    pub stop: String,
    /// Open loop at 50% of the max sustained rate (for p99).
    pub half: Option<Point>,
    /// Renew-only, closed loop.
    pub renew: Option<Point>,
    /// DORA, closed loop.
    pub dora_closed: Option<Point>,
    pub server_stats: Option<Value>,
    pub error: Option<String>,
    pub notes: Vec<String>,
}

impl SystemResult {
    fn new(system: System) -> Self {
        SystemResult {
            system,
            sweep: Vec::new(),
            stop: String::new(),
            half: None,
            renew: None,
            dora_closed: None,
            server_stats: None,
            error: None,
            notes: Vec::new(),
        }
    }

    fn max_dora(&self) -> Option<f64> {
        max_sustained(&self.sweep).map(|p| p.achieved)
    }

    /// Renew figure for the targets: the closed-loop rate if its loss stayed
    /// under 1%, else nothing.
    fn renew_rate(&self) -> Option<f64> {
        self.renew
            .as_ref()
            .filter(|p| p.sustained())
            .map(|p| p.achieved)
    }

    fn to_json(&self) -> Value {
        let best = max_sustained(&self.sweep);
        json!({
            "system": self.system.key(),
            "label": self.system.label(),
            "max_sustained_dora_per_s": best.map(|p| analysis::round1(p.achieved)),
            "max_sustained_at_offered_per_s": best.map(|p| analysis::round1(p.offered)),
            "p99_us_at_half_max": self.half.as_ref().map(|p| analysis::round1(p.p99_us)),
            "renew_closed_loop": self.renew.as_ref().map(Point::to_json),
            "dora_closed_loop": self.dora_closed.as_ref().map(Point::to_json),
            "half_max_point": self.half.as_ref().map(Point::to_json),
            "sweep": self.sweep.iter().map(Point::to_json).collect::<Vec<_>>(),
            "sweep_stopped_because": self.stop,
            "limit_note": report::limit_note(self),
            "server_stats": self.server_stats,
            "error": self.error,
            "notes": self.notes,
        })
    }
}

// ---------------------------------------------------------------- constants

const SERVER_IF: &str = "xb-srv0";
const CLIENT_IF: &str = "xb-cli0";
const SERVER_IP: &str = "10.78.0.1";
const SUBNET: &str = "10.78.0.0/16";
const POOL_FIRST: &str = "10.78.1.0";
const POOL_LAST: &str = "10.78.250.255";
/// The pool as prefixes: the client namespace treats them as local so its
/// kernel answers the servers' ARP for leased addresses (servers that unicast
/// a renew ACK through a kernel socket need that; the loadgen never ARPs).
const POOL_PREFIXES: &[&str] = &[
    "10.78.1.0/24",
    "10.78.2.0/23",
    "10.78.4.0/22",
    "10.78.8.0/21",
    "10.78.16.0/20",
    "10.78.32.0/19",
    "10.78.64.0/18",
    "10.78.128.0/17",
];
const LOADGEN_CPU: &str = "0";
const SERVER_CPU: &str = "1";

static INTERRUPTED: AtomicBool = AtomicBool::new(false);

extern "C" fn on_sigint(_: libc::c_int) {
    INTERRUPTED.store(true, Ordering::SeqCst);
}

fn check_interrupt() -> Result<()> {
    if INTERRUPTED.load(Ordering::SeqCst) {
        bail!("interrupted; cleaning up");
    }
    Ok(())
}

/// Sleeps in small steps so Ctrl-C is seen quickly.
fn nap(d: Duration) -> Result<()> {
    let end = Instant::now() + d;
    while Instant::now() < end {
        check_interrupt()?;
        std::thread::sleep((end - Instant::now()).min(Duration::from_millis(50)));
    }
    Ok(())
}

// ---------------------------------------------------------------- processes

/// A child process stopped (signal, then SIGKILL after a grace time) on drop.
struct Proc {
    child: Child,
    name: String,
    log: PathBuf,
    stop_signal: libc::c_int,
}

impl Proc {
    fn spawn(mut cmd: Command, name: &str, log: &Path, stop_signal: libc::c_int) -> Result<Proc> {
        let line = util::display(&cmd);
        let out = fs::File::create(log).with_context(|| format!("creating {}", log.display()))?;
        let err = out
            .try_clone()
            .with_context(|| format!("duplicating {}", log.display()))?;
        let child = cmd
            .stdin(Stdio::null())
            .stdout(out)
            .stderr(err)
            .spawn()
            .with_context(|| format!("starting {name}: `{line}`"))?;
        Ok(Proc {
            child,
            name: name.to_string(),
            log: log.to_path_buf(),
            stop_signal,
        })
    }

    fn pid(&self) -> u32 {
        self.child.id()
    }

    fn running(&mut self) -> bool {
        matches!(self.child.try_wait(), Ok(None))
    }

    fn log_tail(&self) -> String {
        let text = fs::read_to_string(&self.log).unwrap_or_default();
        let lines: Vec<&str> = text.lines().collect();
        lines[lines.len().saturating_sub(15)..].join("\n")
    }

    /// Signals the process and waits up to `grace`, then kills it.
    fn stop(&mut self, grace: Duration) -> Result<()> {
        if !self.running() {
            return Ok(());
        }
        // SAFETY: kill(2) on our own child's pid.
        unsafe {
            libc::kill(self.child.id() as i32, self.stop_signal);
        }
        let t0 = Instant::now();
        while t0.elapsed() < grace {
            if !self.running() {
                return Ok(());
            }
            std::thread::sleep(Duration::from_millis(25));
        }
        let _ = self.child.kill();
        let _ = self.child.wait();
        bail!("{} did not stop within {grace:?}; killed", self.name)
    }

    /// Waits for exit until `deadline`; kills it past the deadline.
    fn wait_until(&mut self, deadline: Instant) -> Result<std::process::ExitStatus> {
        loop {
            if let Some(st) = self.child.try_wait()? {
                return Ok(st);
            }
            if INTERRUPTED.load(Ordering::SeqCst) {
                let _ = self.stop(Duration::from_secs(3));
                bail!("interrupted; cleaning up");
            }
            if Instant::now() >= deadline {
                let _ = self.stop(Duration::from_secs(3));
                bail!(
                    "{} ran past its deadline; stopped. Its log:\n{}",
                    self.name,
                    self.log_tail()
                );
            }
            std::thread::sleep(Duration::from_millis(20));
        }
    }
}

impl Drop for Proc {
    fn drop(&mut self) {
        let _ = self.stop(Duration::from_secs(5));
    }
}

struct RemoveDir(PathBuf);
impl Drop for RemoveDir {
    fn drop(&mut self) {
        let _ = fs::remove_dir_all(&self.0);
    }
}

/// Raises a global sysctl for the run and puts the old value back on drop.
struct Sysctl {
    path: PathBuf,
    old: String,
}

impl Sysctl {
    /// Sets `path` to `value` unless it already holds at least that much.
    fn raise(path: &str, value: u64) -> Result<Option<Sysctl>> {
        let path = PathBuf::from(path);
        let old = fs::read_to_string(&path)
            .with_context(|| format!("reading {}", path.display()))?
            .trim()
            .to_string();
        if old.parse::<u64>().is_ok_and(|v| v >= value) {
            return Ok(None);
        }
        fs::write(&path, value.to_string())
            .with_context(|| format!("writing {value} to {}", path.display()))?;
        Ok(Some(Sysctl { path, old }))
    }
}

impl Drop for Sysctl {
    fn drop(&mut self) {
        let _ = fs::write(&self.path, &self.old);
    }
}

// ---------------------------------------------------------------- CPU sampling

/// Per-core jiffies from /proc/stat: (total, idle + iowait, softirq).
fn core_times() -> Vec<(u64, u64, u64)> {
    let Ok(text) = fs::read_to_string("/proc/stat") else {
        return Vec::new();
    };
    text.lines()
        .filter(|l| l.starts_with("cpu") && l.as_bytes().get(3).is_some_and(u8::is_ascii_digit))
        .map(|l| {
            let v: Vec<u64> = l
                .split_whitespace()
                .skip(1)
                .filter_map(|x| x.parse().ok())
                .collect();
            let total = v.iter().take(8).sum();
            let idle = v.get(3).copied().unwrap_or(0) + v.get(4).copied().unwrap_or(0);
            (total, idle, v.get(6).copied().unwrap_or(0))
        })
        .collect()
}

/// utime + stime of a process (all threads), in clock ticks.
fn proc_ticks(pid: u32) -> Option<u64> {
    let text = fs::read_to_string(format!("/proc/{pid}/stat")).ok()?;
    // Fields after the ")" that ends the command name: state is field 3, utime 14, stime 15.
    let rest = &text[text.rfind(')')? + 1..];
    let f: Vec<&str> = rest.split_whitespace().collect();
    let ut: u64 = f.get(11)?.parse().ok()?;
    let st: u64 = f.get(12)?.parse().ok()?;
    Some(ut + st)
}

/// (rx_dropped, tx_dropped) of `ifname` in namespace `ns`.
fn link_drops(ns: &str, ifname: &str) -> Option<(u64, u64)> {
    let text = util::output(
        Command::new("ip").args(["-n", ns, "-s", "-j", "link", "show", "dev", ifname]),
    )
    .ok()?;
    let v: Value = serde_json::from_str(&text).ok()?;
    let st = v.get(0)?.get("stats64")?;
    Some((st["rx"]["dropped"].as_u64()?, st["tx"]["dropped"].as_u64()?))
}

struct CpuSample {
    at: Instant,
    cores: Vec<(u64, u64, u64)>,
    server: Option<u64>,
}

impl CpuSample {
    fn take(server_pid: Option<u32>) -> Self {
        CpuSample {
            at: Instant::now(),
            cores: core_times(),
            server: server_pid.and_then(proc_ticks),
        }
    }

    /// Fills the point's CPU figures from two samples.
    fn apply(&self, later: &CpuSample, p: &mut Point) {
        // SAFETY: sysconf has no preconditions.
        let hz = unsafe { libc::sysconf(libc::_SC_CLK_TCK) }.max(1) as f64;
        let secs = later.at.duration_since(self.at).as_secs_f64();
        if let (Some(a), Some(b)) = (self.server, later.server) {
            if secs > 0.0 {
                p.server_cpu_pct = Some(100.0 * b.saturating_sub(a) as f64 / hz / secs);
            }
        }
        p.core_busy_pct.clear();
        p.core_softirq_pct.clear();
        for (a, b) in self.cores.iter().zip(&later.cores) {
            let total = b.0.saturating_sub(a.0) as f64;
            if total > 0.0 {
                let idle = b.1.saturating_sub(a.1) as f64;
                p.core_busy_pct.push(100.0 * (1.0 - idle / total));
                p.core_softirq_pct
                    .push(100.0 * b.2.saturating_sub(a.2) as f64 / total);
            }
        }
    }
}

// ---------------------------------------------------------------- the run

struct Ctx {
    ns: NetnsPair,
    work: PathBuf,
    raw: PathBuf,
    out: PathBuf,
    daemon: PathBuf,
    loadgen: PathBuf,
    echo: PathBuf,
    secs: f64,
    quick: bool,
    profile: bool,
}

/// One loadgen invocation.
#[derive(Clone, Debug)]
struct Load {
    scenario: &'static str,
    clients: u32,
    rate: Option<u64>,
    concurrency: Option<u32>,
    secs: Option<f64>,
    count: Option<u64>,
    timeout_ms: u64,
    retries: u8,
}

impl Load {
    fn open(clients: u32, rate: u64, secs: f64) -> Load {
        Load {
            scenario: "dora",
            clients,
            rate: Some(rate),
            concurrency: None,
            secs: Some(secs),
            count: None,
            timeout_ms: 1000,
            retries: 0,
        }
    }

    fn closed(scenario: &'static str, clients: u32, concurrency: u32, secs: f64) -> Load {
        Load {
            scenario,
            clients,
            rate: None,
            concurrency: Some(concurrency),
            secs: Some(secs),
            count: None,
            timeout_ms: 500,
            retries: 0,
        }
    }

    fn tag(&self) -> String {
        match (self.rate, self.concurrency) {
            (Some(r), _) => format!("{}-rate{r}", self.scenario),
            (None, Some(c)) => format!("{}-conc{c}", self.scenario),
            _ => format!("{}-probe", self.scenario),
        }
    }

    /// Longest the run may take: warm-up at >= 20/s, the phase, the drain.
    fn deadline(&self) -> Duration {
        let warm = if self.scenario == "renew" {
            f64::from(self.clients) / 20.0
        } else {
            0.0
        };
        let phase = self.secs.unwrap_or(0.0) + self.count.map_or(0.0, |c| c as f64 / 10.0);
        let drain = 2.0 * (self.timeout_ms as f64 / 1000.0) * f64::from(self.retries + 1) + 1.0;
        Duration::from_secs_f64(warm + phase + drain + 30.0)
    }
}

/// When to sample CPU inside an open-loop DORA phase: after start-up, for
/// most of the phase.
const SAMPLE_AFTER: Duration = Duration::from_millis(700);

impl Ctx {
    /// The loadgen on its CPU in the client namespace, AF_XDP on one queue.
    fn loadgen_base(&self) -> Command {
        let mut c = NetnsPair::exec(&self.ns.client_ns, "taskset");
        c.args(["-c", LOADGEN_CPU]).arg(&self.loadgen).args([
            "-i",
            CLIENT_IF,
            "--io",
            "xdp",
            "--queues",
            "1",
            "--cpus",
            LOADGEN_CPU,
        ]);
        c
    }

    fn loadgen_cmd(&self, l: &Load, json_path: &Path) -> Command {
        let mut c = self.loadgen_base();
        c.args([
            "--scenario",
            l.scenario,
            "--clients",
            &l.clients.to_string(),
        ])
        .args(["--timeout-ms", &l.timeout_ms.to_string()])
        .args(["--retries", &l.retries.to_string(), "--quiet", "--json"])
        .arg(json_path);
        if let Some(r) = l.rate {
            c.args(["--rate", &r.to_string()]);
        }
        if let Some(k) = l.concurrency {
            c.args(["--concurrency", &k.to_string()]);
        }
        if let Some(s) = l.secs {
            c.args(["--duration", &format!("{s}s")]);
        }
        if let Some(n) = l.count {
            c.args(["--count", &n.to_string()]);
        }
        c
    }

    /// Runs the loadgen once and returns its JSON report; samples CPU inside
    /// the phase of open-loop runs (and profiles with perf when asked).
    fn loadgen(
        &self,
        sys: System,
        l: &Load,
        server_pid: Option<u32>,
        perf_out: Option<&Path>,
    ) -> Result<(Value, Option<(CpuSample, CpuSample)>)> {
        check_interrupt()?;
        let tag = format!("{}-{}", sys.key(), l.tag());
        let json_path = self.raw.join(format!("{tag}.json"));
        let log = self.work.join(format!("loadgen-{tag}.log"));
        let mut p = Proc::spawn(
            self.loadgen_cmd(l, &json_path),
            "xdhcp-loadgen",
            &log,
            libc::SIGINT,
        )?;
        let deadline = Instant::now() + l.deadline();
        let mut samples = None;
        if l.rate.is_some() {
            if let Some(secs) = l.secs {
                let window = Duration::from_secs_f64((secs * 0.6).max(secs - 1.2).max(0.3));
                nap(SAMPLE_AFTER)?;
                let a = CpuSample::take(server_pid);
                let perf = match perf_out {
                    Some(data) => Some(self.start_perf(data, window)?),
                    None => None,
                };
                nap(window)?;
                let b = CpuSample::take(server_pid);
                if let Some(mut perf) = perf {
                    perf.wait_until(Instant::now() + Duration::from_secs(60))?;
                }
                samples = Some((a, b));
            }
        }
        let status = p.wait_until(deadline)?;
        if !status.success() {
            bail!(
                "xdhcp-loadgen ({tag}) failed ({status}); its output:\n{}",
                p.log_tail()
            );
        }
        let text = fs::read_to_string(&json_path)
            .with_context(|| format!("reading the loadgen report {}", json_path.display()))?;
        let v: Value = serde_json::from_str(&text)
            .with_context(|| format!("parsing the loadgen report {}", json_path.display()))?;
        Ok((v, samples))
    }

    fn start_perf(&self, data: &Path, window: Duration) -> Result<Proc> {
        let mut c = Command::new("perf");
        c.args(["record", "-a", "-g", "-F", "999", "-o"])
            .arg(data)
            .args(["--", "sleep", &format!("{:.1}", window.as_secs_f64())]);
        Proc::spawn(
            c,
            "perf record",
            &self.work.join("perf-record.log"),
            libc::SIGINT,
        )
    }

    /// One measured point.
    fn link_drops(&self) -> Option<[u64; 4]> {
        let (a, b) = link_drops(&self.ns.server_ns, SERVER_IF)?;
        let (c, d) = link_drops(&self.ns.client_ns, CLIENT_IF)?;
        Some([a, b, c, d])
    }

    fn point(
        &self,
        sys: System,
        l: &Load,
        server_pid: Option<u32>,
        perf: Option<&Path>,
    ) -> Result<Point> {
        let before = self.link_drops();
        let (v, samples) = self.loadgen(sys, l, server_pid, perf)?;
        let mut p = Point::from_loadgen(&v, l.scenario)?;
        if let (Some(a), Some(b)) = (before, self.link_drops()) {
            p.link_drops = Some([0, 1, 2, 3].map(|i| b[i].saturating_sub(a[i])));
        }
        if let Some((a, b)) = samples {
            a.apply(&b, &mut p);
        }
        if p.duplicates > 0 {
            eprintln!(
                "   WARNING: {} addresses ACKed to two clients at once",
                p.duplicates
            );
        }
        Ok(p)
    }

    /// Waits until the server answers a few DORAs (up to 30 s).
    fn probe(&self, sys: System, server: &mut Proc) -> Result<()> {
        let t0 = Instant::now();
        let mut last = String::new();
        while t0.elapsed() < Duration::from_secs(30) {
            check_interrupt()?;
            if !server.running() {
                bail!(
                    "{} exited during start-up; its log:\n{}",
                    sys.label(),
                    server.log_tail()
                );
            }
            let l = Load {
                scenario: "dora",
                clients: 16,
                rate: None,
                concurrency: Some(4),
                secs: None,
                count: Some(16),
                timeout_ms: 300,
                retries: 2,
            };
            match self.loadgen(sys, &l, None, None) {
                Ok((v, _)) => match Point::from_loadgen(&v, "dora") {
                    Ok(p) if p.acks > 0 => return Ok(()),
                    Ok(_) => last = "no ACK yet".into(),
                    Err(e) => last = format!("{e:#}"),
                },
                Err(e) => last = format!("{e:#}"),
            }
            nap(Duration::from_millis(300))?;
        }
        bail!(
            "{} did not answer within 30 s (last probe: {last}); its log:\n{}",
            sys.label(),
            server.log_tail()
        )
    }

    fn start_server(&self, sys: System) -> Result<Proc> {
        let w = &self.work;
        let key = sys.key();
        let log = w.join(format!("{key}.log"));
        let mut c = NetnsPair::exec(&self.ns.server_ns, "taskset");
        c.args(["-c", SERVER_CPU]);
        let signal = match sys {
            System::Ceiling => {
                c.arg(&self.echo)
                    .args(["-i", SERVER_IF, "--server-ip", SERVER_IP, "--stats-json"])
                    .arg(w.join("ceiling-stats.json"));
                libc::SIGINT
            }
            System::XdpAck | System::XdpInterval | System::Udp => {
                let commit = if sys == System::XdpInterval {
                    "interval:10"
                } else {
                    "ack"
                };
                let cfg = w.join(format!("{key}.toml"));
                fs::write(&cfg, xdhcpd_config(commit))
                    .with_context(|| format!("writing {}", cfg.display()))?;
                let io = if sys == System::Udp { "udp" } else { "xdp" };
                c.arg(&self.daemon)
                    .arg("run")
                    .arg("-c")
                    .arg(&cfg)
                    .args([
                        "--io",
                        io,
                        "--interface",
                        SERVER_IF,
                        "--stats-interval",
                        "0",
                    ])
                    .arg("--lease-file")
                    .arg(w.join(format!("{key}-leases.db")))
                    .arg("--stats-json")
                    .arg(w.join(format!("{key}-stats.json")))
                    .env("NO_COLOR", "1");
                libc::SIGINT
            }
            System::Kea => {
                // Kea writes its pid file under /run/kea unless told otherwise.
                fs::create_dir_all("/run/kea").context("creating /run/kea")?;
                let cfg = w.join("kea.json");
                let leases = w.join("kea-leases4.csv");
                let text = serde_json::to_string_pretty(&kea_config(&leases))?;
                fs::write(&cfg, text).with_context(|| format!("writing {}", cfg.display()))?;
                c.arg("kea-dhcp4")
                    .arg("-c")
                    .arg(&cfg)
                    .env("KEA_PIDFILE_DIR", w)
                    .env("KEA_LOCKFILE_DIR", w);
                libc::SIGTERM
            }
            System::Dhcpd => {
                let cfg = w.join("dhcpd.conf");
                let leases = w.join("dhcpd.leases");
                fs::write(&cfg, dhcpd_config())
                    .with_context(|| format!("writing {}", cfg.display()))?;
                // dhcpd refuses to start without an existing lease file.
                fs::write(&leases, "").with_context(|| format!("creating {}", leases.display()))?;
                c.args(["dhcpd", "-4", "-f", "-d", "-cf"])
                    .arg(&cfg)
                    .arg("-lf")
                    .arg(&leases)
                    .arg("-pf")
                    .arg(w.join("dhcpd.pid"))
                    .arg(SERVER_IF);
                libc::SIGTERM
            }
        };
        eprintln!("+ {}", util::display(&c));
        let mut p = Proc::spawn(c, sys.label(), &log, signal)?;
        self.probe(sys, &mut p)?;
        Ok(p)
    }

    /// One open-loop DORA point of the sweep, printed as it is measured.
    fn sweep_point(&self, sys: System, sc: &Scale, rate: u64, pid: Option<u32>) -> Result<Point> {
        let p = self.point(sys, &Load::open(sc.clients, rate, self.secs), pid, None)?;
        println!(
            "   {:>9}/s offered {:>9}/s  ACKed {:>9}/s  loss {:>6.2}%  p99 {:>9}  server CPU {:>4}  cores {}{}{}",
            fmt_rate(rate as f64),
            fmt_rate(p.offered),
            fmt_rate(p.achieved),
            p.loss_pct,
            fmt_us(p.p99_us),
            p.server_cpu_pct.map_or("-".into(), |c| format!("{c:.0}%")),
            p.core_busy_pct
                .iter()
                .map(|c| format!("{c:.0}%"))
                .collect::<Vec<_>>()
                .join("/"),
            if p.loadgen_limited { "  [loadgen limited]" } else { "" },
            match p.link_drops {
                Some(d) if d.iter().any(|x| *x > 0) => format!(
                    "  [veth drops srv rx {} tx {}, cli rx {} tx {}]",
                    d[0], d[1], d[2], d[3]
                ),
                _ => String::new(),
            },
        );
        Ok(p)
    }

    /// Sweep, p99 at half, renew and DORA closed loop for one system.
    fn measure(&self, sys: System, r: &mut SystemResult) -> Result<()> {
        let sc = sys.scale(self.quick);
        println!("\n== {} ({})", sys.label(), sys.key());
        let mut server = self.start_server(sys)?;
        let pid = Some(server.pid());

        // Coarse steps (factor²) until the first point that is not sustained,
        // then one point between it and the last sustained one, then fine
        // steps (factor) until the sweep stops.
        let mut rate = sc.start;
        let mut coarse = true;
        let mut last_good: Option<u64> = None;
        let mut prev: Option<Point> = None;
        loop {
            let p = self.sweep_point(sys, &sc, rate, pid)?;
            let step = if coarse {
                sc.factor * sc.factor
            } else {
                sc.factor
            };
            let stop = stop_reason(&p, prev.as_ref(), next_target(rate, step), sc.max);
            let sustained = p.sustained();
            r.sweep.push(p.clone());
            prev = Some(p);
            if sustained {
                last_good = Some(rate);
            } else if coarse {
                coarse = false;
                // Bisect (geometrically) between the last sustained and the first failed
                // target while they are > 21% apart: one coarse step alone left the maximum
                // anywhere within a factor of 2 (e.g. 128k sustained, 256k failed).
                let mut failed = rate;
                while let Some(mid) = last_good.and_then(|g| refine_between(g, failed)) {
                    let q = self.sweep_point(sys, &sc, mid, pid)?;
                    if q.sustained() {
                        last_good = Some(mid);
                    } else {
                        failed = mid;
                    }
                    r.sweep.push(q);
                }
            }
            if let Some(why) = stop {
                r.stop = why;
                break;
            }
            if r.sweep.len() >= sc.max_points {
                r.stop = format!("{} points", sc.max_points);
                break;
            }
            if !server.running() {
                bail!(
                    "{} exited during the sweep; its log:\n{}",
                    sys.label(),
                    server.log_tail()
                );
            }
            rate = next_target(
                rate,
                if coarse {
                    sc.factor * sc.factor
                } else {
                    sc.factor
                },
            );
        }
        println!("   sweep stopped: {}", r.stop);

        if let Some(best) = max_sustained(&r.sweep).cloned() {
            let half = ((best.achieved / 2.0).round() as u64).max(1);
            let p = self.point(sys, &Load::open(sc.clients, half, self.secs), pid, None)?;
            println!(
                "   at 50% of max ({}/s): p99 {} (loss {:.2}%)",
                fmt_rate(half as f64),
                fmt_us(p.p99_us),
                p.loss_pct
            );
            r.half = Some(p);
            if self.profile && matches!(sys, System::Ceiling | System::XdpAck | System::XdpInterval)
            {
                let rate = best.target.unwrap_or(half * 2);
                let data = self.work.join(format!("perf-{}.data", sys.key()));
                let p = self.point(
                    sys,
                    &Load::open(sc.clients, rate, self.secs.max(4.0)),
                    pid,
                    Some(&data),
                )?;
                println!(
                    "   profiled at {}/s: ACKed {}/s, loss {:.2}%",
                    fmt_rate(rate as f64),
                    fmt_rate(p.achieved),
                    p.loss_pct
                );
                match self.perf_report(sys, &data) {
                    Ok(path) => r
                        .notes
                        .push(format!("perf profile at {rate}/s: {}", path.display())),
                    Err(e) => r.notes.push(format!("perf report failed: {e:#}")),
                }
            }
        } else {
            r.notes
                .push("no point was sustained (< 1% loss): no p99 at 50%".into());
        }

        let renew_secs = self.secs.max(2.0);
        let p = self.point(
            sys,
            &Load::closed("renew", sc.renew_clients, sc.concurrency, renew_secs),
            pid,
            None,
        )?;
        println!(
            "   renew, closed loop ({} outstanding): {}/s, loss {:.2}%, p99 {}",
            sc.concurrency,
            fmt_rate(p.achieved),
            p.loss_pct,
            fmt_us(p.p99_us)
        );
        r.renew = Some(p);
        if !self.quick {
            let p = self.point(
                sys,
                &Load::closed("dora", sc.clients, sc.concurrency, self.secs),
                pid,
                None,
            )?;
            println!(
                "   DORA, closed loop ({} outstanding): {}/s, loss {:.2}%, p99 {}",
                sc.concurrency,
                fmt_rate(p.achieved),
                p.loss_pct,
                fmt_us(p.p99_us)
            );
            r.dora_closed = Some(p);
        }
        if !server.running() {
            r.notes.push(format!(
                "{} exited before the end; log tail:\n{}",
                sys.label(),
                server.log_tail()
            ));
        }
        server.stop(Duration::from_secs(10))?;
        let stats = match sys {
            System::Ceiling => Some(self.work.join("ceiling-stats.json")),
            s if s.is_xdhcpd() => Some(self.work.join(format!("{}-stats.json", s.key()))),
            _ => None,
        };
        if let Some(path) = stats {
            match fs::read_to_string(&path).map(|t| serde_json::from_str::<Value>(&t)) {
                Ok(Ok(v)) => r.server_stats = Some(v),
                Ok(Err(e)) => r
                    .notes
                    .push(format!("server stats {}: {e}", path.display())),
                Err(e) => r
                    .notes
                    .push(format!("server stats {}: {e}", path.display())),
            }
        }
        Ok(())
    }

    /// The loadgen's sender alone (no server running): frames per second.
    fn self_test(&self) -> Result<f64> {
        let json_path = self.raw.join("loadgen-self-test.json");
        let mut c = self.loadgen_base();
        c.args([
            "--self-test",
            "--clients",
            "50000",
            "--duration",
            "2s",
            "--quiet",
            "--json",
        ])
        .arg(&json_path);
        let log = self.work.join("loadgen-self-test.log");
        let mut p = Proc::spawn(c, "xdhcp-loadgen --self-test", &log, libc::SIGINT)?;
        let st = p.wait_until(Instant::now() + Duration::from_secs(30))?;
        if !st.success() {
            bail!("xdhcp-loadgen --self-test failed ({st}):\n{}", p.log_tail());
        }
        let v: Value = serde_json::from_str(
            &fs::read_to_string(&json_path)
                .with_context(|| format!("reading {}", json_path.display()))?,
        )
        .with_context(|| format!("parsing {}", json_path.display()))?;
        v["loadgen"]["self_test_tx_pps"]
            .as_f64()
            .context("the self-test report has no loadgen.self_test_tx_pps")
    }

    fn perf_report(&self, sys: System, data: &Path) -> Result<PathBuf> {
        let out = self.out.join(format!("perf-{}.txt", sys.key()));
        let mut text = String::new();
        let reports: [(&str, &[&str]); 3] = [
            (
                "who uses each core (self time)",
                &["--sort", "cpu,comm", "--percent-limit", "0.5"],
            ),
            (
                "core 1 (server core) by command and symbol",
                &[
                    "--cpu",
                    SERVER_CPU,
                    "--sort",
                    "comm,dso,sym",
                    "--percent-limit",
                    "0.4",
                ],
            ),
            (
                "core 0 (loadgen core) by command and symbol",
                &[
                    "--cpu",
                    LOADGEN_CPU,
                    "--sort",
                    "comm,dso,sym",
                    "--percent-limit",
                    "0.4",
                ],
            ),
        ];
        for (title, extra) in reports {
            let mut c = Command::new("perf");
            c.args(["report", "--stdio", "--no-children", "-g", "none", "-i"])
                .arg(data)
                .args(extra);
            text.push_str(&format!("#### perf report: {title}\n"));
            text.push_str(&util::output(&mut c)?);
            text.push('\n');
        }
        fs::write(&out, text).with_context(|| format!("writing {}", out.display()))?;
        Ok(out)
    }
}

fn xdhcpd_config(commit: &str) -> String {
    format!(
        r#"# generated by cargo xtask bench
[server]
interface = "{SERVER_IF}"
queues = "all"
server-id = "{SERVER_IP}"
commit = "{commit}"

[lease]
default-time = 3600
min-time = 60
max-time = 86400
offer-hold = 30
authoritative = true

[[subnet]]
cidr = "{SUBNET}"
router = ["{SERVER_IP}"]

[[subnet.pool]]
range = "{POOL_FIRST}-{POOL_LAST}"
"#
    )
}

fn kea_config(leases: &Path) -> Value {
    json!({
        "Dhcp4": {
            "interfaces-config": { "interfaces": [SERVER_IF], "dhcp-socket-type": "raw" },
            "lease-database": {
                "type": "memfile",
                "persist": true,
                "lfc-interval": 0,
                "name": leases.to_string_lossy(),
            },
            "multi-threading": {
                "enable-multi-threading": true,
                "thread-pool-size": 2,
                "packet-queue-size": 64,
            },
            "valid-lifetime": 3600,
            "renew-timer": 1800,
            "rebind-timer": 3150,
            "authoritative": true,
            "subnet4": [{
                "id": 1,
                "subnet": SUBNET,
                "pools": [{ "pool": format!("{POOL_FIRST} - {POOL_LAST}") }],
                "option-data": [{ "name": "routers", "data": SERVER_IP }],
            }],
            // Per-lease INFO lines would measure the logger; warnings still show.
            "loggers": [{
                "name": "kea-dhcp4",
                "output_options": [{ "output": "stdout" }],
                "severity": "WARN",
            }],
        }
    })
}

fn dhcpd_config() -> String {
    format!(
        "# generated by cargo xtask bench\n\
         authoritative;\n\
         ddns-update-style none;\n\
         ping-check false;\n\
         default-lease-time 3600;\n\
         max-lease-time 86400;\n\
         subnet 10.78.0.0 netmask 255.255.0.0 {{\n  range {POOL_FIRST} {POOL_LAST};\n  option routers {SERVER_IP};\n}}\n"
    )
}

// ---------------------------------------------------------------- entry point

pub fn bench(args: &BenchArgs) -> Result<()> {
    let started = Instant::now();
    // SAFETY: the handler only stores to an atomic.
    unsafe {
        libc::signal(libc::SIGINT, on_sigint as *const () as libc::sighandler_t);
    }
    let systems: Vec<System> = if args.systems.is_empty() {
        System::ALL.to_vec()
    } else {
        args.systems
            .iter()
            .map(|s| System::parse(s))
            .collect::<Result<_>>()?
    };
    let secs = args.duration.unwrap_or(if args.quick { 1.5 } else { 5.0 });
    if !(0.5..=600.0).contains(&secs) {
        bail!("--duration {secs} must be between 0.5 and 600 seconds");
    }
    if !util::is_root() {
        bail!("cargo xtask bench needs root (network namespaces, XDP)");
    }
    if util::which("taskset").is_none() {
        bail!("taskset (util-linux) is missing");
    }
    if args.profile && util::which("perf").is_none() {
        bail!("--profile needs perf (Debian: apt-get install linux-perf)");
    }

    if !args.no_setup {
        setup::setup(&setup::SetupArgs { no_apt: false })?;
    }
    check_interrupt()?;
    let daemon = if args.no_build {
        build::daemon_path()
    } else {
        let daemon = build::build(&build::BuildArgs { debug_ebpf: false })?;
        check_interrupt()?;
        // Same embed variable as the daemon build, so the shared library is not rebuilt.
        util::run(
            Command::new(util::cargo())
                .args(["build", "--release", "-p", "xdhcpd-tools", "--bins"])
                .env("XDHCPD_EBPF_OBJECT", ebpf::object_path(false))
                .current_dir(util::repo_root()),
        )?;
        daemon
    };
    let bin = util::target_dir().join("release");
    let (loadgen, echo) = (bin.join("xdhcp-loadgen"), bin.join("xdhcp-echo"));
    for b in [&daemon, &loadgen, &echo] {
        if !b.is_file() {
            bail!("{} is missing after the build", b.display());
        }
    }
    for (sys, prog) in [(System::Kea, "kea-dhcp4"), (System::Dhcpd, "dhcpd")] {
        if systems.contains(&sys) && util::which(prog).is_none() {
            bail!(
                "{prog} is not installed (run without --no-setup, or leave {} out of --systems)",
                sys.key()
            );
        }
    }
    check_interrupt()?;

    let stamp = utc_stamp();
    let out = util::repo_root()
        .join("results")
        .join(format!("bench-{}", stamp.1));
    let raw = out.join("raw");
    fs::create_dir_all(&raw).with_context(|| format!("creating {}", raw.display()))?;
    let work = std::env::temp_dir().join(format!("xdhcpd-bench-{}", std::process::id()));
    fs::create_dir_all(&work).with_context(|| format!("creating {}", work.display()))?;
    let _work_guard = RemoveDir(work.clone());
    let load_before = load_average();
    let sync = sync_latency_ms(&work)?;
    let machine = format!(
        "{}; lease files in {} (fdatasync of 4 KiB: p50 {:.2} ms, p90 {:.2} ms)",
        machine(),
        std::env::temp_dir().display(),
        sync.0,
        sync.1
    );
    println!("== machine: {machine}; load average {load_before}");

    let ns = NetnsPair::create(
        "bn",
        SERVER_IF,
        &format!("{SERVER_IP}/16"),
        CLIENT_IF,
        "10.78.0.2/16",
    )?;
    for prefix in POOL_PREFIXES {
        util::output(Command::new("ip").args([
            "-n",
            &ns.client_ns,
            "route",
            "add",
            "local",
            prefix,
            "dev",
            "lo",
        ]))?;
    }
    // xdhcpd --io udp installs a neighbour entry per client it answers
    // (SIOCSARP) and the servers' unicast renew ACKs ARP for every client; the
    // neighbour table is global and holds 1024 entries by default, far fewer
    // than the clients here. Raised for the run, restored on exit.
    let mut _sysctls = Vec::new();
    for (name, value) in [
        ("gc_thresh1", 16_384),
        ("gc_thresh2", 131_072),
        ("gc_thresh3", 262_144),
    ] {
        if let Some(g) = Sysctl::raise(&format!("/proc/sys/net/ipv4/neigh/default/{name}"), value)?
        {
            _sysctls.push(g);
        }
    }
    // Run private copies: a rebuild of target/release during the run (other
    // work in the tree) must neither change what is measured nor leave perf
    // with a deleted binary it cannot symbolize.
    let bin_dir = work.join("bin");
    fs::create_dir_all(&bin_dir).with_context(|| format!("creating {}", bin_dir.display()))?;
    let snapshot = |b: &Path| -> Result<PathBuf> {
        let name = b.file_name().context("binary path without a file name")?;
        let to = bin_dir.join(name);
        fs::copy(b, &to).with_context(|| format!("copying {} to {}", b.display(), to.display()))?;
        Ok(to)
    };
    let ctx = Ctx {
        daemon: snapshot(&daemon)?,
        loadgen: snapshot(&loadgen)?,
        echo: snapshot(&echo)?,
        ns,
        work,
        raw,
        out: out.clone(),
        secs,
        quick: args.quick,
        profile: args.profile && !args.quick,
    };

    let self_test = match ctx.self_test() {
        Ok(pps) => {
            println!(
                "== loadgen self-test (DISCOVERs only, replies ignored, core {LOADGEN_CPU}): {} frames/s",
                fmt_rate(pps)
            );
            Some(pps)
        }
        Err(e) => {
            eprintln!("== loadgen self-test failed: {e:#}");
            None
        }
    };

    let mut results = Vec::new();
    for sys in &systems {
        let mut r = SystemResult::new(*sys);
        if let Err(e) = ctx.measure(*sys, &mut r) {
            check_interrupt()?;
            eprintln!("   {} FAILED: {e:#}", sys.label());
            r.error = Some(
                format!("{e:#}")
                    .lines()
                    .next()
                    .unwrap_or_default()
                    .to_string(),
            );
            r.notes.push(format!("{e:#}"));
        }
        results.push(r);
    }
    drop(ctx);

    // ---- analysis and output
    let get = |s: System| results.iter().find(|r| r.system == s);
    let dora = |s: System| get(s).and_then(SystemResult::max_dora);
    let x = dora(System::XdpAck);
    let ratios = vec![
        (
            "xdhcpd XDP (ack) / Kea".to_string(),
            ratio(x, dora(System::Kea)),
        ),
        (
            "xdhcpd XDP (ack) / ISC dhcpd".to_string(),
            ratio(x, dora(System::Dhcpd)),
        ),
        (
            "xdhcpd XDP (ack) / raw ceiling".to_string(),
            ratio(x, dora(System::Ceiling)),
        ),
        (
            "xdhcpd XDP (interval:10) / raw ceiling".to_string(),
            ratio(dora(System::XdpInterval), dora(System::Ceiling)),
        ),
        (
            "xdhcpd XDP (interval:10) / Kea".to_string(),
            ratio(dora(System::XdpInterval), dora(System::Kea)),
        ),
        (
            "xdhcpd renew (closed loop) / DORA, commit=ack".to_string(),
            ratio(get(System::XdpAck).and_then(SystemResult::renew_rate), x),
        ),
    ];
    let targets = analysis::targets(&analysis::Figures {
        xdhcpd_dora: x,
        xdhcpd_renew: get(System::XdpAck).and_then(SystemResult::renew_rate),
        kea_dora: dora(System::Kea),
        ceiling_dora: dora(System::Ceiling),
    });
    let command = format!(
        "cargo xtask {}",
        std::env::args().skip(1).collect::<Vec<_>>().join(" ")
    );
    let info = report::RunInfo {
        date: stamp.0.clone(),
        command: command.clone(),
        machine: machine.clone(),
        load_before: load_before.clone(),
        load_after: load_average(),
        point_seconds: secs,
        results_dir: out
            .strip_prefix(util::repo_root())
            .unwrap_or(&out)
            .display()
            .to_string(),
        wall_s: started.elapsed().as_secs_f64(),
        loadgen_self_test_pps: self_test,
    };

    let doc = json!({
        "date": info.date,
        "command": command,
        "machine": machine,
        "load_average_before": info.load_before,
        "load_average_after": info.load_after,
        "seconds_per_point": secs,
        "fdatasync_ms": {"p50": sync.0, "p90": sync.1},
        "loadgen_self_test_tx_pps": self_test,
        "quick": args.quick,
        "pinning": {"loadgen_cpu": LOADGEN_CPU, "server_cpu": SERVER_CPU},
        "systems": results.iter().map(SystemResult::to_json).collect::<Vec<_>>(),
        "ratios": ratios.iter().map(|(k, v)| json!({"name": k, "ratio": v})).collect::<Vec<_>>(),
        "targets": targets.iter().map(|t| json!({
            "name": t.name, "measured": t.measured, "required": t.required,
            "verdict": t.verdict(), "detail": t.detail,
        })).collect::<Vec<_>>(),
    });
    let json_path = out.join("results.json");
    fs::write(&json_path, serde_json::to_string_pretty(&doc)? + "\n")
        .with_context(|| format!("writing {}", json_path.display()))?;

    let (mut ach, mut lat) = (Vec::new(), Vec::new());
    for r in &results {
        let mk = |points: Vec<(f64, f64)>| svg::Series {
            key: r.system.key().into(),
            label: r.system.label().into(),
            color: r.system.color().into(),
            points,
        };
        // The sweep may refine out of order: draw by offered rate.
        let mut sweep: Vec<&Point> = r.sweep.iter().collect();
        sweep.sort_by(|a, b| a.offered.total_cmp(&b.offered));
        ach.push(mk(sweep.iter().map(|p| (p.offered, p.achieved)).collect()));
        lat.push(mk(sweep.iter().map(|p| (p.offered, p.p99_us)).collect()));
    }
    let svg_path = out.join("bench.svg");
    let title = format!("xdhcpd end-to-end benchmark, {}", info.date);
    let subtitle = format!(
        "{machine}; loadgen core {LOADGEN_CPU}, server core {SERVER_CPU}; {secs} s per point"
    );
    fs::write(&svg_path, svg::plot(&title, &subtitle, &ach, &lat))
        .with_context(|| format!("writing {}", svg_path.display()))?;

    println!("\n================ cargo xtask bench: results ================");
    println!("{}", report::summary_table(&results));
    println!("Ratios (max sustained DORA/s):");
    print!("{}", report::ratios_text(&ratios));
    println!("Targets:");
    print!("{}", report::targets_text(&targets));
    println!(
        "Note: veth runs the receiver's XDP / receive path on the sender's CPU: core 0 (loadgen) also pays for the server's receive, core 1 for the loadgen's."
    );
    println!(
        "JSON: {}\nSVG:  {}",
        json_path.display(),
        svg_path.display()
    );
    if args.record {
        let md = util::repo_root().join("benches").join("RESULTS.md");
        let section = report::markdown_section(&info, &results, &ratios, &targets);
        report::update_results_md(&md, &section)?;
        println!("recorded in {}", md.display());
    }
    let failed: Vec<&str> = results
        .iter()
        .filter(|r| r.error.is_some())
        .map(|r| r.system.key())
        .collect();
    if !failed.is_empty() {
        bail!("these systems failed: {} (see above)", failed.join(", "));
    }
    Ok(())
}

/// ("2026-11-22 14:03 UTC", "20261122-140312").
fn utc_stamp() -> (String, String) {
    let secs = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map_or(0, |d| d.as_secs());
    let (y, mo, d) = civil_from_days((secs / 86_400) as i64);
    let s = secs % 86_400;
    let (h, mi, se) = (s / 3600, s % 3600 / 60, s % 60);
    (
        format!("{y:04}-{mo:02}-{d:02} {h:02}:{mi:02} UTC"),
        format!("{y:04}{mo:02}{d:02}-{h:02}{mi:02}{se:02}"),
    )
}

/// Days since 1970-01-01 to (year, month, day), proleptic Gregorian.
fn civil_from_days(z: i64) -> (i64, u32, u32) {
    let z = z + 719_468;
    let era = z.div_euclid(146_097);
    let doe = z.rem_euclid(146_097);
    let yoe = (doe - doe / 1460 + doe / 36_524 - doe / 146_096) / 365;
    let doy = doe - (365 * yoe + yoe / 4 - yoe / 100);
    let mp = (5 * doy + 2) / 153;
    let d = (doy - (153 * mp + 2) / 5 + 1) as u32;
    let m = if mp < 10 { mp + 3 } else { mp - 9 } as u32;
    let y = yoe + era * 400 + i64::from(m <= 2);
    (y, m, d)
}

/// Median and 90th percentile of a 4 KiB write + fdatasync in `dir`, ms:
/// the floor of every durable commit (xdhcpd commit=ack, ISC dhcpd) there.
fn sync_latency_ms(dir: &Path) -> Result<(f64, f64)> {
    use std::io::{Seek, SeekFrom, Write};
    let path = dir.join("fsync-probe");
    let mut f = fs::File::create(&path).with_context(|| format!("creating {}", path.display()))?;
    f.write_all(&vec![0u8; 1 << 20])?;
    f.sync_all()?;
    let mut lat = Vec::new();
    for i in 0..40u64 {
        f.seek(SeekFrom::Start((i % 256) * 4096))?;
        f.write_all(&[i as u8; 4096])?;
        let t = Instant::now();
        f.sync_data()
            .with_context(|| format!("fdatasync of {}", path.display()))?;
        lat.push(t.elapsed().as_secs_f64() * 1000.0);
    }
    drop(f);
    let _ = fs::remove_file(&path);
    lat.sort_by(f64::total_cmp);
    Ok((lat[lat.len() / 2], lat[lat.len() * 9 / 10]))
}

fn load_average() -> String {
    fs::read_to_string("/proc/loadavg")
        .map(|s| s.split_whitespace().take(3).collect::<Vec<_>>().join(" "))
        .unwrap_or_else(|_| "?".into())
}

fn machine() -> String {
    let cpu = fs::read_to_string("/proc/cpuinfo")
        .ok()
        .and_then(|t| {
            t.lines().find_map(|l| {
                l.strip_prefix("model name")
                    .map(|v| v.trim_start_matches([' ', '\t', ':']).to_string())
            })
        })
        .unwrap_or_else(|| "?".into());
    let cores = std::thread::available_parallelism().map_or(0, |n| n.get());
    let kernel = fs::read_to_string("/proc/sys/kernel/osrelease")
        .map(|s| s.trim().to_string())
        .unwrap_or_else(|_| "?".into());
    let mem_gib = fs::read_to_string("/proc/meminfo")
        .ok()
        .and_then(|t| {
            t.lines()
                .find_map(|l| l.strip_prefix("MemTotal:"))
                .and_then(|v| v.trim().trim_end_matches("kB").trim().parse::<f64>().ok())
        })
        .map_or(0.0, |kb| kb / 1024.0 / 1024.0);
    format!("{cores} x {cpu}, {mem_gib:.0} GiB, Linux {kernel}")
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn dates_from_days() {
        assert_eq!(civil_from_days(0), (1970, 1, 1));
        assert_eq!(civil_from_days(19_723), (2024, 1, 1));
        assert_eq!(civil_from_days(20_779), (2026, 11, 22));
        assert_eq!(civil_from_days(11_016), (2000, 2, 29));
    }

    #[test]
    fn systems_parse_by_key() {
        for s in System::ALL {
            assert_eq!(System::parse(s.key()).ok(), Some(s));
        }
        assert!(System::parse("bind9").is_err());
    }

    #[test]
    fn configs_name_the_bench_interface_and_pool() {
        let x = xdhcpd_config("interval:10");
        assert!(x.contains(r#"commit = "interval:10""#) && x.contains(SERVER_IF));
        let k = kea_config(Path::new("/tmp/k.csv"));
        assert_eq!(k["Dhcp4"]["multi-threading"]["thread-pool-size"], 2);
        assert_eq!(k["Dhcp4"]["interfaces-config"]["dhcp-socket-type"], "raw");
        assert!(dhcpd_config().contains("ping-check false;"));
    }
}
