//! `cargo xtask demo --cluster`: two xdhcpd failover pairs and one back office, end to end in
//! network namespaces (the show of `userspace/tests/cluster_ns.rs`, printed for a person).
//!
//! A hub namespace holds two bridges (one link per pair: 10.77.0.0/16 and 10.78.0.0/16),
//! PostgreSQL 15 (registrations and the lease event archive) and `nats-server -js`. Each pair
//! (servers a and b, XDP, failover, registrations from PostgreSQL, lease events to NATS) and a
//! client namespace hang off their bridge. The demo prints: the registration propagation time
//! to every server, the registered clients' addresses on each link and which server gave them,
//! the spool depths while NATS is down under xdhcp-loadgen load and how soon each spool catches
//! up after NATS' return, per link how many of the loadgen's ACKs the archive holds (checked
//! as in `userspace/tests/cluster_ns.rs`), `xdhcpd ctl servers` and one `ctl history
//! --archive` answer; it fails when a fixed address or an archived event is missing.
//! Everything it created (processes, namespaces, PostgreSQL's data directory, the scratch
//! directory) is removed at the end, also on failure or Ctrl-C.

use std::io::{Read, Write};
use std::os::unix::net::UnixStream;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::{Duration, Instant};

use anyhow::{bail, Context, Result};

use crate::{build, setup, util};

const PG_BIN: &str = "/usr/lib/postgresql/15/bin";
const PG_PORT: u16 = 55433;
const NATS_PORT: u16 = 54223;
const TOKEN: &str = "demo-cluster-token";
const PG_PW: &str = "demo-cluster-pw";

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

/// Sleeps `d`, a Ctrl-C ending it within 100 ms.
fn nap(d: Duration) -> Result<()> {
    let t0 = Instant::now();
    while t0.elapsed() < d {
        check_interrupt()?;
        std::thread::sleep((d - t0.elapsed()).min(Duration::from_millis(100)));
    }
    check_interrupt()
}

/// Writes a password, token or key readable by its owner only (the daemon refuses a
/// failover key others may read, and warns about the other secrets).
fn write_secret(path: &Path, text: &str) -> Result<()> {
    use std::os::unix::fs::OpenOptionsExt;
    let mut f = std::fs::OpenOptions::new()
        .write(true)
        .create(true)
        .truncate(true)
        .mode(0o600)
        .open(path)
        .with_context(|| format!("{}", path.display()))?;
    f.write_all(text.as_bytes())
        .with_context(|| format!("{}", path.display()))
}

/// Everything the demo starts or creates; [`Drop`] removes it in reverse order.
struct Cluster {
    work: PathBuf,
    hub: String,
    ns: Vec<String>,
    children: Vec<(String, Child)>,
    pg_started: bool,
}

impl Cluster {
    fn path(&self, name: &str) -> PathBuf {
        self.work.join(name)
    }

    fn in_ns(ns: &str, program: &str) -> Command {
        let mut c = Command::new("ip");
        c.args(["netns", "exec", ns, program]);
        c
    }

    fn spawn(&mut self, what: &str, mut cmd: Command, log: &Path) -> Result<()> {
        let f = std::fs::File::create(log).with_context(|| format!("{}", log.display()))?;
        let child = cmd
            .stdin(Stdio::null())
            .stdout(f.try_clone()?)
            .stderr(f)
            .spawn()
            .with_context(|| format!("starting {what}"))?;
        self.children.push((what.to_string(), child));
        Ok(())
    }

    /// SIGTERM (SIGKILL after 10 s) and reap the child named `what`.
    fn stop(&mut self, what: &str, sig: libc::c_int) {
        if let Some(i) = self.children.iter().position(|(w, _)| w == what) {
            let (_, mut c) = self.children.remove(i);
            // SAFETY: kill(2) on our own unreaped child.
            unsafe {
                libc::kill(c.id() as i32, sig);
            }
            let t0 = Instant::now();
            while t0.elapsed() < Duration::from_secs(10) {
                if let Ok(Some(_)) = c.try_wait() {
                    return;
                }
                std::thread::sleep(Duration::from_millis(50));
            }
            let _ = c.kill();
            let _ = c.wait();
        }
    }

    /// The last lines of every log the demo kept (printed when a step failed, before the
    /// scratch directory goes).
    fn print_log_tails(&self) {
        let mut logs: Vec<PathBuf> = std::fs::read_dir(&self.work)
            .into_iter()
            .flatten()
            .flatten()
            .map(|e| e.path())
            .filter(|p| p.extension().is_some_and(|x| x == "log"))
            .collect();
        logs.sort();
        logs.push(self.path("pg/pg.log"));
        for p in logs {
            let Ok(text) = std::fs::read_to_string(&p) else {
                continue;
            };
            let lines: Vec<&str> = text.lines().collect();
            println!("-- last lines of {}:", p.display());
            for l in &lines[lines.len().saturating_sub(12)..] {
                println!("   {l}");
            }
        }
    }

    fn pg_ctl(&self, args: &[&str]) -> Command {
        let mut c = Command::new("ip");
        c.args([
            "netns", "exec", &self.hub, "runuser", "-u", "postgres", "--",
        ])
        .arg(format!("{PG_BIN}/pg_ctl"))
        .arg("-D")
        .arg(self.path("pg/data"))
        .args(args);
        c
    }

    fn psql(&self, db: &str, sql: &str) -> Result<String> {
        util::output(
            Command::new("runuser")
                .args(["-u", "postgres", "--"])
                .arg(format!("{PG_BIN}/psql"))
                .arg("-h")
                .arg(self.path("pg"))
                .args(["-p", &PG_PORT.to_string(), "-d", db])
                .args(["-X", "-q", "-A", "-t", "-v", "ON_ERROR_STOP=1", "-c", sql]),
        )
    }
}

impl Drop for Cluster {
    fn drop(&mut self) {
        let names: Vec<String> = self.children.iter().rev().map(|(w, _)| w.clone()).collect();
        for w in names {
            self.stop(&w, libc::SIGTERM);
        }
        if self.pg_started {
            let _ = self
                .pg_ctl(&["-m", "immediate", "-w", "stop"])
                .stdout(Stdio::null())
                .stderr(Stdio::null())
                .status();
        }
        for ns in self.ns.iter().chain(std::iter::once(&self.hub)) {
            let _ = Command::new("ip")
                .args(["netns", "del", ns])
                .stderr(Stdio::null())
                .status();
        }
        let _ = std::fs::remove_dir_all(&self.work);
        println!("== removed the namespaces, processes, PostgreSQL data and scratch directory");
    }
}

fn ip(args: &[&str]) -> Result<()> {
    util::output(Command::new("ip").args(args)).map(drop)
}

/// One request on a control socket: (status, body).
fn http(sock: &Path, method: &str, path: &str, body: &str) -> Result<(u16, String)> {
    let mut s = UnixStream::connect(sock).with_context(|| format!("{}", sock.display()))?;
    s.set_read_timeout(Some(Duration::from_secs(10)))?;
    write!(
        s,
        "{method} {path} HTTP/1.0\r\nHost: xdhcpd\r\nContent-Type: application/json\r\n\
         Content-Length: {}\r\n\r\n{body}",
        body.len()
    )?;
    let mut out = String::new();
    s.read_to_string(&mut out)?;
    let code = out
        .split_whitespace()
        .nth(1)
        .and_then(|c| c.parse().ok())
        .with_context(|| format!("no status line from {}", sock.display()))?;
    Ok((code, out.split("\r\n\r\n").nth(1).unwrap_or("").to_string()))
}

fn status(sock: &Path) -> Result<serde_json::Value> {
    let (_, body) = http(sock, "GET", "/v1/status", "")?;
    serde_json::from_str(&body).context("status JSON")
}

/// Polls `f` every `every` until it holds (the time it took) or `limit` has passed.
fn wait(
    what: &str,
    limit: Duration,
    every: Duration,
    mut f: impl FnMut() -> Result<bool>,
) -> Result<Duration> {
    let t0 = Instant::now();
    loop {
        check_interrupt()?;
        if f()? {
            return Ok(t0.elapsed());
        }
        if t0.elapsed() > limit {
            bail!("{what}: not within {limit:?}");
        }
        std::thread::sleep(every);
    }
}

/// How often the demo looks at a step it does not time closely.
const POLL: Duration = Duration::from_millis(100);
/// How often it looks for the registration on the servers (the propagation time it prints).
const POLL_FAST: Duration = Duration::from_millis(2);

struct Srv {
    name: String,
    ns: String,
    sock: PathBuf,
}

pub fn demo_cluster(no_setup: bool, seconds: u32) -> Result<()> {
    // SAFETY: the handler only stores to an atomic.
    unsafe {
        libc::signal(libc::SIGINT, on_sigint as *const () as libc::sighandler_t);
    }
    if !util::is_root() {
        bail!("the cluster demo needs root (network namespaces, XDP, runuser)");
    }
    if !no_setup {
        setup::setup(&setup::SetupArgs { no_apt: false })?;
    }
    let started = Instant::now();
    let bin = build::build(&build::BuildArgs { debug_ebpf: false })?;
    let loadgen = build::build_tools()?;
    check_interrupt()?;
    let built = started.elapsed();
    let shown = Instant::now();
    let pid = std::process::id();
    let work = std::env::temp_dir().join(format!("xdhcpd-cluster-demo-{pid}"));
    std::fs::create_dir_all(work.join("pg"))?;
    let mut c = Cluster {
        work,
        hub: format!("xdclh{pid}"),
        ns: Vec::new(),
        children: Vec::new(),
        pg_started: false,
    };
    // Ctrl-C reaches the whole foreground process group: the daemons and tools stop by
    // themselves and a step may fail on that (a control socket gone) before it sees the flag.
    let shown_result = show(&mut c, &bin, &loadgen, seconds).map_err(|e| {
        if INTERRUPTED.load(Ordering::SeqCst) {
            anyhow::anyhow!("interrupted (Ctrl-C)")
        } else {
            e
        }
    });
    match &shown_result {
        Err(_) if INTERRUPTED.load(Ordering::SeqCst) => println!("== interrupted; cleaning up"),
        Err(e) => {
            println!("== failed: {e:#}");
            c.print_log_tails();
        }
        Ok(()) => {}
    }
    drop(c);
    shown_result?;
    println!(
        "== the cluster demo took {:?} (and {:?} to build before it)",
        shown.elapsed(),
        built
    );
    Ok(())
}

/// The demo proper, on the scratch directory and names of `c` (which removes what it made).
fn show(c: &mut Cluster, bin: &Path, loadgen: &Path, seconds: u32) -> Result<()> {
    let pid = std::process::id();

    println!(
        "== namespaces: hub {} with bridges br1 (10.77.0.0/16) and br2 (10.78.0.0/16)",
        c.hub
    );
    ip(&["netns", "add", &c.hub])?;
    ip(&["-n", &c.hub, "link", "set", "lo", "up"])?;
    let mut servers = Vec::new();
    for p in 1..=2u8 {
        let br = format!("br{p}");
        ip(&["-n", &c.hub, "link", "add", &br, "type", "bridge"])?;
        for (r, role) in ["a", "b", "c"].iter().enumerate() {
            let ns = format!("xdcl{p}{role}{pid}");
            ip(&["netns", "add", &ns])?;
            c.ns.push(ns.clone());
            let (ta, tb) = (format!("xq{pid}{p}{r}a"), format!("xq{pid}{p}{r}b"));
            ip(&["link", "add", &ta, "type", "veth", "peer", "name", &tb])?;
            ip(&["link", "set", &ta, "netns", &ns])?;
            ip(&["link", "set", &tb, "netns", &c.hub])?;
            ip(&["-n", &ns, "link", "set", &ta, "name", "dhcp0"])?;
            ip(&["-n", &ns, "link", "set", "dhcp0", "up"])?;
            ip(&["-n", &ns, "link", "set", "lo", "up"])?;
            ip(&["-n", &c.hub, "link", "set", &tb, "master", &br, "up"])?;
            if r < 2 {
                let addr = format!("10.7{}.0.{}/16", 6 + p, 1 + 2 * r);
                ip(&["-n", &ns, "addr", "add", &addr, "dev", "dhcp0"])?;
                let name = format!("dhcp-{p}{role}");
                servers.push(Srv {
                    sock: c.path(&format!("{name}.sock")),
                    name,
                    ns,
                });
            }
        }
        ip(&["-n", &c.hub, "link", "set", &br, "up"])?;
        // Frames crossing the bridges skip iptables (as in cluster_ns.rs) should the host
        // have br_netfilter loaded.
        let _ = Cluster::in_ns(&c.hub, "sysctl")
            .args([
                "-q",
                "-w",
                "net.bridge.bridge-nf-call-iptables=0",
                "net.bridge.bridge-nf-call-arptables=0",
            ])
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .status();
        ip(&[
            "-n",
            &c.hub,
            "addr",
            "add",
            &format!("10.7{}.255.254/16", 6 + p),
            "dev",
            &br,
        ])?;
    }

    println!(
        "== back office in the hub: PostgreSQL 15 on :{PG_PORT}, nats-server -js on :{NATS_PORT}"
    );
    util::output(
        Command::new("chown")
            .arg("postgres:postgres")
            .arg(c.path("pg")),
    )?;
    std::fs::write(c.path("pg/su-pw"), "superpw\n")?;
    util::output(
        Command::new("chown")
            .arg("postgres")
            .arg(c.path("pg/su-pw")),
    )?;
    util::output(
        Command::new("runuser")
            .args(["-u", "postgres", "--"])
            .arg(format!("{PG_BIN}/initdb"))
            .arg("-D")
            .arg(c.path("pg/data"))
            .args([
                "-U",
                "postgres",
                "--auth-local=trust",
                "--auth-host=scram-sha-256",
            ])
            .args(["--no-sync"])
            .arg(format!("--pwfile={}", c.path("pg/su-pw").display())),
    )?;
    let mut hba = std::fs::OpenOptions::new()
        .append(true)
        .open(c.path("pg/data/pg_hba.conf"))?;
    writeln!(hba, "host all all 10.0.0.0/8 scram-sha-256")?;
    drop(hba);
    let pg_opts = format!(
        "-p {PG_PORT} -k {} -c listen_addresses='*' -c fsync=off",
        c.path("pg").display()
    );
    let pg_log = c.path("pg/pg.log").to_string_lossy().to_string();
    util::output(&mut c.pg_ctl(&["-o", &pg_opts, "-l", &pg_log, "-w", "start"]))?;
    c.pg_started = true;
    c.psql(
        "postgres",
        &format!("CREATE ROLE xdhcpd LOGIN PASSWORD '{PG_PW}'"),
    )?;
    c.psql("postgres", "CREATE DATABASE prov OWNER xdhcpd")?;
    c.psql("postgres", "CREATE DATABASE archive OWNER xdhcpd")?;
    let start_nats = |c: &mut Cluster, n: u32| -> Result<()> {
        let mut cmd = Cluster::in_ns(&c.hub, "nats-server");
        cmd.args([
            "-js",
            "-a",
            "0.0.0.0",
            "-p",
            &NATS_PORT.to_string(),
            "--auth",
            TOKEN,
            "-n",
            "xdhcpd-demo-cluster",
        ])
        .arg("-sd")
        .arg(c.path("js"));
        let log = c.path(&format!("nats-{n}.log"));
        c.spawn("nats-server", cmd, &log)?;
        wait(
            "nats-server to be ready",
            Duration::from_secs(20),
            POLL,
            || Ok(std::fs::read_to_string(&log).is_ok_and(|t| t.contains("Server is ready"))),
        )
        .map(drop)
    };
    start_nats(c, 0)?;
    write_secret(&c.path("pg-password"), &format!("{PG_PW}\n"))?;
    write_secret(&c.path("nats-token"), &format!("{TOKEN}\n"))?;
    write_secret(
        &c.path("failover.key"),
        "xdhcpd-demo-cluster-key-0123456789\n",
    )?;

    println!("== four servers: pair-1 (dhcp-1a primary, dhcp-1b) on 10.77.0.0/16, pair-2 on 10.78.0.0/16");
    for (i, s) in servers.iter().enumerate() {
        let p = 1 + i / 2;
        let primary = i % 2 == 0;
        let net = 6 + p;
        let (me, peer) = if primary { (1, 3) } else { (3, 1) };
        let dir = c.path(&s.name);
        std::fs::create_dir_all(&dir)?;
        let cfg = format!(
            "[server]\ninterface = \"dhcp0\"\nio = \"xdp\"\nserver-id = \"10.7{net}.0.{me}\"\n\
             lease-file = \"{d}/leases.db\"\ncommit = \"ack\"\ncontrol-socket = \"{sock}\"\n\
             registration-file = \"{d}/regs/registrations\"\n\n\
             [lease]\ndefault-time = 3600\n\n\
             [[subnet]]\ncidr = \"10.7{net}.0.0/16\"\nrouter = [\"10.7{net}.0.1\"]\n\n\
             [[subnet.pool]]\nrange = \"10.7{net}.1.0-10.7{net}.8.255\"\n\n\
             [failover]\nrole = \"{role}\"\nname = \"pair-{p}\"\naddress = \"10.7{net}.0.{me}\"\n\
             peer-address = \"10.7{net}.0.{peer}\"\nmclt = 10\nsplit = 128\nuse-safe-period = false\n\
             auth-key-file = \"{key}\"\n\n\
             [registrations]\nbackend = \"postgres\"\n\n\
             [registrations.postgres]\nhost = \"10.7{net}.255.254\"\nport = {PG_PORT}\n\
             dbname = \"prov\"\nuser = \"xdhcpd\"\npassword-file = \"{pw}\"\n\
             connect-timeout-secs = 2\n\n\
             [event-log]\ndirectory = \"{d}/events\"\n\n\
             [event-log.nats]\nurls = [\"nats://10.7{net}.255.254:{NATS_PORT}\"]\n\
             server-name = \"{name}\"\ntoken-file = \"{tok}\"\nack-timeout-secs = 2\n",
            d = dir.display(),
            sock = s.sock.display(),
            role = if primary { "primary" } else { "secondary" },
            key = c.path("failover.key").display(),
            pw = c.path("pg-password").display(),
            tok = c.path("nats-token").display(),
            name = s.name,
        );
        let cfg_path = c.path(&format!("{}.toml", s.name));
        std::fs::write(&cfg_path, cfg)?;
        let mut cmd = Cluster::in_ns(&s.ns, &bin.to_string_lossy());
        cmd.arg("run")
            .arg("-c")
            .arg(&cfg_path)
            .args(["--stats-interval", "0", "--run-for", "900"])
            .env("NO_COLOR", "1");
        let log = c.path(&format!("{}.log", s.name));
        c.spawn(&s.name, cmd, &log)?;
        wait(
            &format!("{} to serve", s.name),
            Duration::from_secs(30),
            POLL,
            || Ok(std::fs::read_to_string(&log).is_ok_and(|t| t.contains("serving "))),
        )?;
    }
    let took = wait(
        "both pairs NORMAL, PostgreSQL and NATS connected",
        Duration::from_secs(60),
        POLL,
        || {
            for s in &servers {
                let st = status(&s.sock)?;
                if st["registrations"]["connected"] != true
                    || st["event_log"]["nats"]["connected"] != true
                    || st["failover"]["state"] != "NORMAL"
                    || st["failover"]["partner_state"] != "NORMAL"
                {
                    return Ok(false);
                }
            }
            Ok(true)
        },
    )?;
    println!("   all four NORMAL and connected after {took:?}");

    println!(
        "== registrations INSERTed in PostgreSQL by the back office (one transaction: six \
         clients per link, group modem, fixed addresses outside the pools)"
    );
    // Six per link: each server of a pair answers the clients of its load-balancing bucket,
    // so among six clients both servers of each pair almost surely answer one.
    let regs: Vec<(u8, String, String)> = (1..=2u8)
        .flat_map(|p| {
            (1..=6u8).map(move |n| {
                (
                    p,
                    format!("02:5a:c{p}:00:00:{n:02x}"),
                    format!("10.7{}.200.{n}", 6 + p),
                )
            })
        })
        .collect();
    let values: Vec<String> = regs
        .iter()
        .map(|(_, mac, ip)| format!("('{mac}', 'modem', '{ip}')"))
        .collect();
    c.psql(
        "prov",
        &format!(
            "INSERT INTO xdhcpd_registrations (mac, \"group\", fixed_address) VALUES {}",
            values.join(", ")
        ),
    )?;
    let committed = Instant::now();
    let last = regs.last().map(|r| r.1.clone()).unwrap_or_default();
    let mut seen = vec![None; servers.len()];
    wait(
        "the registrations on every server",
        Duration::from_secs(10),
        POLL_FAST,
        || {
            for (i, s) in servers.iter().enumerate() {
                if seen[i].is_none() {
                    let body = format!(r#"{{"op":"show","select":{{"mac":"{last}"}}}}"#);
                    if http(&s.sock, "POST", "/v1/registrations", &body)?.0 == 200 {
                        seen[i] = Some(committed.elapsed());
                    }
                }
            }
            Ok(seen.iter().all(Option::is_some))
        },
    )?;
    for (s, d) in servers.iter().zip(&seen) {
        println!(
            "   {}: all 12 in its index {:?} after the commit",
            s.name,
            d.unwrap_or_default()
        );
    }
    // What the show found wrong (printed as it goes; the demo fails at its end).
    let mut problems: Vec<String> = Vec::new();
    println!("== the registered clients ask (busybox udhcpc on each link) until both servers of each pair have answered one");
    let mut served_by = std::collections::BTreeSet::new();
    for (p, mac, fixed) in &regs {
        let p = usize::from(*p) - 1;
        let pair_sids = [format!("10.7{}.0.1", 7 + p), format!("10.7{}.0.3", 7 + p)];
        if pair_sids.iter().all(|sid| served_by.contains(sid)) {
            continue;
        }
        let ns = &c.ns[p * 3 + 2];
        ip(&["-n", ns, "link", "set", "dhcp0", "address", mac])?;
        let tag = mac.replace(':', "");
        let script = c.path(&format!("udhcpc-{tag}.sh"));
        let ev = c.path(&format!("udhcpc-{tag}.ev"));
        std::fs::write(
            &script,
            format!(
                "#!/bin/sh\necho \"$1 $ip $serverid\" >> '{}'\n",
                ev.display()
            ),
        )?;
        util::output(Command::new("chmod").arg("755").arg(&script))?;
        let _ = Cluster::in_ns(ns, "timeout")
            .args([
                "20", "busybox", "udhcpc", "-i", "dhcp0", "-f", "-n", "-q", "-t", "6", "-T", "1",
            ])
            .arg("-s")
            .arg(&script)
            .output();
        let got = std::fs::read_to_string(&ev).unwrap_or_default();
        let (addr, sid) = got
            .lines()
            .find_map(|l| {
                let mut f = l.strip_prefix("bound ")?.split_whitespace();
                Some((f.next()?.to_string(), f.next().unwrap_or("?").to_string()))
            })
            .unwrap_or_else(|| ("none".into(), "nobody".into()));
        let by = servers
            .iter()
            .zip([1u8, 3, 1, 3])
            .find(|(s, last)| {
                sid == format!("10.7{}.0.{last}", 7 + p)
                    && s.name.starts_with(&format!("dhcp-{}", p + 1))
            })
            .map_or(sid.clone(), |(s, _)| s.name.clone());
        println!(
            "   link {}: client {mac} (fixed address {fixed}) got {addr} from {by}{}",
            p + 1,
            if addr == *fixed {
                ""
            } else {
                "  <-- NOT its fixed address"
            }
        );
        if addr == *fixed {
            served_by.insert(sid);
        } else {
            problems.push(format!("{mac} got {addr}, not its fixed address {fixed}"));
        }
    }
    println!(
        "   servers that handed out a registered fixed address: {} of 4",
        served_by.len()
    );
    if served_by.len() != 4 {
        problems.push(format!(
            "only {} of 4 servers handed out a fixed address",
            served_by.len()
        ));
    }

    let secs = seconds.max(12);
    println!(
        "== xdhcp-loadgen DORA+renew on both links for {secs} s; NATS killed for {} s mid-load",
        secs / 2
    );
    for p in 0..2usize {
        let ns = c.ns[p * 3 + 2].clone();
        let mut cmd = Cluster::in_ns(&ns, &loadgen.to_string_lossy());
        cmd.args(["-i", "dhcp0", "--io", "packet", "--scenario", "dora-renew"])
            .args([
                "--clients",
                "300",
                "--rate",
                "80",
                "--duration",
                &format!("{secs}s"),
            ])
            .args(["--timeout-ms", "300", "--retries", "0", "--quiet"])
            .args(["--mac-salt", &format!("{}", 0x41 + p)])
            .arg("--acked-log")
            .arg(c.path(&format!("acked-{p}.log")));
        let log = c.path(&format!("loadgen-{p}.log"));
        c.spawn(&format!("loadgen-{p}"), cmd, &log)?;
    }
    nap(Duration::from_secs(u64::from(secs / 4)))?;
    check_interrupt()?;
    c.stop("nats-server", libc::SIGKILL);
    println!("   nats-server killed");
    nap(Duration::from_secs(u64::from(secs / 2)))?;
    check_interrupt()?;
    for s in &servers {
        let st = status(&s.sock)?;
        println!(
            "   {}: NATS connected {}, spool depth {}",
            s.name, st["event_log"]["nats"]["connected"], st["event_log"]["nats"]["spool_depth"]
        );
    }
    start_nats(c, 1)?;
    let back = Instant::now();
    println!("   nats-server back (same store)");
    // Under the load new events keep entering the spools: caught up = reconnected and no
    // more than a few events waiting.
    let mut caught_up = vec![None; servers.len()];
    wait(
        "the spools to catch up with NATS back",
        Duration::from_secs(60),
        Duration::from_millis(20),
        || {
            for (i, s) in servers.iter().enumerate() {
                if caught_up[i].is_none() {
                    let st = status(&s.sock)?;
                    let n = &st["event_log"]["nats"];
                    if n["connected"] == true && n["spool_depth"].as_u64() <= Some(SPOOL_CAUGHT_UP)
                    {
                        caught_up[i] = Some(back.elapsed());
                    }
                }
            }
            Ok(caught_up.iter().all(Option::is_some))
        },
    )?;
    for (s, d) in servers.iter().zip(&caught_up) {
        println!(
            "   {}: spool down to {SPOOL_CAUGHT_UP} events or fewer {:?} after NATS' return",
            s.name,
            d.unwrap_or_default()
        );
    }
    nap((Duration::from_secs(u64::from(secs / 4) + 2)).saturating_sub(back.elapsed()))?;
    for p in 0..2 {
        c.stop(&format!("loadgen-{p}"), libc::SIGINT);
    }
    let drained = wait("the spools to drain", Duration::from_secs(60), POLL, || {
        for s in &servers {
            if status(&s.sock)?["event_log"]["nats"]["spool_depth"] != 0 {
                return Ok(false);
            }
        }
        Ok(true)
    })?;
    println!("   the load ended; every spool empty {drained:?} later");

    println!("== xdhcpd events archive --once (JetStream -> PostgreSQL)");
    let pg_conn = format!("host=127.0.0.1 port={PG_PORT} dbname=archive user=xdhcpd");
    let out = util::output(
        Cluster::in_ns(&c.hub, &bin.to_string_lossy())
            .args(["events", "archive", "--once", "--nats"])
            .arg(format!("nats://127.0.0.1:{NATS_PORT}"))
            .arg("--nats-token-file")
            .arg(c.path("nats-token"))
            .args(["--postgres", &pg_conn])
            .arg("--postgres-password-file")
            .arg(c.path("pg-password"))
            .env("NO_COLOR", "1"),
    )?;
    println!("   {}", out.trim());
    let archive = archived_leases(c)?;
    let mut one = None;
    for p in 1..=2u8 {
        let path = c.path(&format!("acked-{}.log", p - 1));
        let text = std::fs::read_to_string(&path).with_context(|| format!("{}", path.display()))?;
        let (mut acks, mut covered) = (0usize, 0usize);
        for line in text.lines() {
            let f: Vec<&str> = line.split_whitespace().collect();
            let [ms, client, addr, lease] = f[..] else {
                bail!("{}: ACK log line {line:?}", path.display());
            };
            let (Ok(ms), Ok(lease)) = (ms.parse::<u64>(), lease.parse::<u64>()) else {
                bail!("{}: ACK log line {line:?}", path.display());
            };
            acks += 1;
            one = one.or_else(|| Some(addr.to_string()));
            // The server computed the lease end before the ACK left and the loadgen takes
            // no reply later than its timeout (< 1 s): lease end >= ACK second + lease - 1.
            let min_end = ms / 1000 + lease.saturating_sub(1);
            if archive
                .get(&(p, addr.to_string(), client.to_string()))
                .is_some_and(|ends| ends.iter().any(|e| *e >= min_end))
            {
                covered += 1;
            }
        }
        let events = c.psql(
            "archive",
            &format!(
                "SELECT count(*) FILTER (WHERE source = 'dhcp') || ' answered by the server, ' \
                 || count(*) FILTER (WHERE source <> 'dhcp') || ' from its partner' \
                 FROM xdhcpd_lease_events WHERE server LIKE 'dhcp-{p}_'"
            ),
        )?;
        println!(
            "   link {p}: loadgen ACKs {acks}, {covered} of them in the archive (an ack/renew \
             event of pair-{p}: same address and client, lease end at least as late){}; \
             pair-{p}'s archived events: {}",
            if covered == acks {
                ""
            } else {
                "  <-- EVENTS LOST"
            },
            events.trim()
        );
        if covered != acks {
            problems.push(format!(
                "link {p}: {} ACK(s) without an archived event",
                acks - covered
            ));
        }
    }

    println!("== xdhcpd ctl servers --archive ...");
    let pw = c.path("pg-password");
    let out = util::output(
        Cluster::in_ns(&c.hub, &bin.to_string_lossy())
            .args(["ctl", "servers", "--archive", &pg_conn])
            .arg("--archive-password-file")
            .arg(&pw),
    )?;
    print!("{out}");
    if let Some(ip) = one {
        println!("== xdhcpd ctl history --archive ... --ip {ip}");
        let out = util::output(
            Cluster::in_ns(&c.hub, &bin.to_string_lossy())
                .args(["ctl", "history", "--ip", &ip, "--archive", &pg_conn])
                .arg("--archive-password-file")
                .arg(&pw),
        )?;
        print!("{out}");
    }
    if !problems.is_empty() {
        bail!("{}", problems.join("; "));
    }
    Ok(())
}

/// How many events a spool may hold under the demo's load and count as caught up.
const SPOOL_CAUGHT_UP: u64 = 20;

/// The archive's ack and renew events by (pair, address, client key): their lease ends
/// (Unix seconds). The client key is the loadgen's: the client identifier in hex, else the
/// MAC without separators.
fn archived_leases(
    c: &Cluster,
) -> Result<std::collections::HashMap<(u8, String, String), Vec<u64>>> {
    let out = c.psql(
        "archive",
        "SELECT substr(server, 6, 1), host(ip), coalesce(client_id, replace(mac, ':', '')), \
                extract(epoch FROM lease_end)::int8 \
         FROM xdhcpd_lease_events WHERE event IN ('ack', 'renew')",
    )?;
    let mut by_key: std::collections::HashMap<(u8, String, String), Vec<u64>> =
        std::collections::HashMap::new();
    for line in out.lines().filter(|l| !l.is_empty()) {
        let f: Vec<&str> = line.split('|').collect();
        let [pair, ip, client, end] = f[..] else {
            bail!("archive row {line:?}");
        };
        let (Ok(pair), Ok(end)) = (pair.parse::<u8>(), end.parse::<u64>()) else {
            bail!("archive row {line:?}");
        };
        by_key
            .entry((pair, ip.to_string(), client.to_string()))
            .or_default()
            .push(end);
    }
    Ok(by_key)
}
