//! `cargo xtask demo --cluster`: two xdhcpd failover pairs and one back office, end to end in
//! network namespaces (the show of `userspace/tests/cluster_ns.rs`, printed for a person).
//!
//! A hub namespace holds two bridges (one link per pair: 10.77.0.0/16 and 10.78.0.0/16),
//! PostgreSQL 15 (registrations and the lease event archive) and `nats-server -js`. Each pair
//! (servers a and b, XDP, failover, registrations from PostgreSQL, lease events to NATS) and a
//! client namespace hang off their bridge. The demo prints: the registration propagation time
//! to every server, the registered client's address on each link, the spool depths while NATS
//! is down under xdhcp-loadgen load, the archive's count against the loadgen's ACKs, `xdhcpd
//! ctl servers` and one `ctl history --archive` answer. Everything it created (processes,
//! namespaces, PostgreSQL's data directory, the scratch directory) is removed at the end, also
//! on failure or Ctrl-C.

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

fn wait(what: &str, limit: Duration, mut f: impl FnMut() -> Result<bool>) -> Result<Duration> {
    let t0 = Instant::now();
    loop {
        check_interrupt()?;
        if f()? {
            return Ok(t0.elapsed());
        }
        if t0.elapsed() > limit {
            bail!("{what}: not within {limit:?}");
        }
        std::thread::sleep(Duration::from_millis(2));
    }
}

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
    util::run(
        Command::new(util::cargo())
            .args(["build", "--release", "-p", "xdhcpd-tools"])
            .current_dir(util::repo_root()),
    )?;
    let loadgen = util::target_dir().join("release/xdhcp-loadgen");
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
        ])
        .arg("-sd")
        .arg(c.path("js"));
        let log = c.path(&format!("nats-{n}.log"));
        c.spawn("nats-server", cmd, &log)?;
        wait("nats-server to be ready", Duration::from_secs(20), || {
            Ok(std::fs::read_to_string(&log).is_ok_and(|t| t.contains("Server is ready")))
        })
        .map(drop)
    };
    start_nats(&mut c, 0)?;
    std::fs::write(c.path("pg-password"), format!("{PG_PW}\n"))?;
    std::fs::write(c.path("nats-token"), format!("{TOKEN}\n"))?;
    std::fs::write(
        c.path("failover.key"),
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
            || Ok(std::fs::read_to_string(&log).is_ok_and(|t| t.contains("serving "))),
        )?;
    }
    let took = wait(
        "both pairs NORMAL, PostgreSQL and NATS connected",
        Duration::from_secs(60),
        || {
            for s in &servers {
                let st = status(&s.sock)?;
                if st["registrations"]["connected"] != true
                    || st["event_log"]["nats"]["connected"] != true
                {
                    return Ok(false);
                }
                let (_, f) = http(&s.sock, "GET", "/v1/failover", "")?;
                if f.matches("\"NORMAL\"").count() < 2 {
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
        }
    }
    println!(
        "   servers that handed out a registered fixed address: {} of 4",
        served_by.len()
    );

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
    std::thread::sleep(Duration::from_secs(u64::from(secs / 4)));
    check_interrupt()?;
    c.stop("nats-server", libc::SIGKILL);
    println!("   nats-server killed");
    std::thread::sleep(Duration::from_secs(u64::from(secs / 2)));
    check_interrupt()?;
    for s in &servers {
        let st = status(&s.sock)?;
        println!(
            "   {}: NATS connected {}, spool depth {}",
            s.name, st["event_log"]["nats"]["connected"], st["event_log"]["nats"]["spool_depth"]
        );
    }
    start_nats(&mut c, 1)?;
    println!("   nats-server back (same store)");
    std::thread::sleep(Duration::from_secs(u64::from(secs / 4) + 2));
    for p in 0..2 {
        c.stop(&format!("loadgen-{p}"), libc::SIGINT);
    }
    let drained = wait("the spools to drain", Duration::from_secs(60), || {
        for s in &servers {
            if status(&s.sock)?["event_log"]["nats"]["spool_depth"] != 0 {
                return Ok(false);
            }
        }
        Ok(true)
    })?;
    println!("   every spool sent {drained:?} after the load ended");

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
    let mut acked_lines = 0usize;
    let mut one = None;
    for p in 0..2 {
        let t = std::fs::read_to_string(c.path(&format!("acked-{p}.log"))).unwrap_or_default();
        acked_lines += t.lines().count();
        one = one.or_else(|| {
            t.lines()
                .next()
                .and_then(|l| l.split_whitespace().nth(2))
                .map(str::to_string)
        });
    }
    let archived = c.psql("archive", "SELECT count(*) FROM xdhcpd_lease_events")?;
    println!(
        "   loadgen ACKs {acked_lines}, archived events {} (a DORA's ACK and the renew in the \
         same second are one event; the secondaries also log their partners' updates)",
        archived.trim()
    );

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
    drop(c);
    println!(
        "== the cluster demo took {:?} (and {:?} to build before it)",
        shown.elapsed(),
        built
    );
    Ok(())
}
