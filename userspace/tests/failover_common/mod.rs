//! Support for the failover pair tests: a four-namespace bed (server A, server B, clients,
//! and a hub namespace holding the bridge that joins them), xdhcpd and ISC dhcpd processes
//! with guards, `xdhcpd ctl failover status` polling, and the client-side load generator.
//! Everything created has a unique name and is removed on Drop; every wait is bounded.
#![allow(dead_code)]

use std::collections::BTreeMap;
use std::net::Ipv4Addr;
use std::path::{Path, PathBuf};
use std::process::Command;
use std::time::Duration;

use crate::daemon_common::{
    output, read_text, repo_root, wait_for, write_file, xdhcpd_bin, Proc, Res,
};
use crate::netns::{veth_pair, Netns, VethPair};

pub const A_ADDR: &str = "10.77.0.1";
pub const B_ADDR: &str = "10.77.0.3";
pub const POOL_FIRST: &str = "10.77.1.0";
pub const POOL_LAST: &str = "10.77.1.255";

/// Servers A and B and a client namespace, each with one veth into a hub namespace whose
/// bridge joins them. Drop order: namespaces (their deletion removes the veths), then the dir.
pub struct PairBed {
    pub a: Netns,
    pub b: Netns,
    pub c: Netns,
    pub hub: Netns,
    pub la: VethPair,
    pub lb: VethPair,
    pub lc: VethPair,
    pub dir: tempfile::TempDir,
}

impl PairBed {
    pub fn new() -> Res<PairBed> {
        Self::with_prefix("fo")
    }

    /// The bed with namespaces named `{prefix}a`, `{prefix}b`, `{prefix}c`, `{prefix}h` (+ a
    /// unique suffix).
    pub fn with_prefix(prefix: &str) -> Res<PairBed> {
        let e = |e: std::io::Error| e.to_string();
        let dir = tempfile::Builder::new()
            .prefix(&format!("xdhcpd-{prefix}-"))
            .tempdir()
            .map_err(|e| format!("creating a temporary directory: {e}"))?;
        let a = Netns::new(&format!("{prefix}a")).map_err(e)?;
        let b = Netns::new(&format!("{prefix}b")).map_err(e)?;
        let c = Netns::new(&format!("{prefix}c")).map_err(e)?;
        let hub = Netns::new(&format!("{prefix}h")).map_err(e)?;
        let la = veth_pair(&a, &hub, 1).map_err(e)?;
        let lb = veth_pair(&b, &hub, 1).map_err(e)?;
        let lc = veth_pair(&c, &hub, 1).map_err(e)?;
        hub.ip(&["link", "add", "br0", "type", "bridge"])
            .map_err(e)?;
        for l in [&la, &lb, &lc] {
            hub.ip(&["link", "set", &l.b, "master", "br0"]).map_err(e)?;
        }
        hub.ip(&["link", "set", "br0", "up"]).map_err(e)?;
        // The hub is a plain L2 switch: bridged frames skip iptables (br_netfilter, when the
        // host has it loaded, would run every frame through the hooks). Best effort: the knob
        // exists only with br_netfilter.
        let _ = hub
            .command("sysctl")
            .args([
                "-q",
                "-w",
                "net.bridge.bridge-nf-call-iptables=0",
                "net.bridge.bridge-nf-call-ip6tables=0",
                "net.bridge.bridge-nf-call-arptables=0",
            ])
            .status();
        a.add_addr(&la.a, &format!("{A_ADDR}/16")).map_err(e)?;
        b.add_addr(&lb.a, &format!("{B_ADDR}/16")).map_err(e)?;
        Ok(PairBed {
            a,
            b,
            c,
            hub,
            la,
            lb,
            lc,
            dir,
        })
    }

    pub fn path(&self, name: &str) -> PathBuf {
        self.dir.path().join(name)
    }
}

/// Failover timers short enough for tests.
pub struct Timers {
    pub mclt: u32,
    pub split: Option<u16>,
}

/// The pre-shared failover key of the tests' xdhcpd pairs (both sides read the same file,
/// `failover.key` beside the lease file, created 0600 on first use).
pub const TEST_AUTH_KEY: &str = "xdhcpd-test-pair-key-0123456789abcdef";

/// The `auth-key-file` line [`xdhcpd_config`] writes; creates the key file if needed.
pub fn auth_line(dir: &Path) -> String {
    use std::os::unix::fs::PermissionsExt;
    let key = dir.join("failover.key");
    if !key.exists() {
        let _ = std::fs::write(&key, format!("{TEST_AUTH_KEY}\n"));
        let _ = std::fs::set_permissions(&key, std::fs::Permissions::from_mode(0o600));
    }
    format!("auth-key-file = \"{}\"\n", key.display())
}

/// Rewrites an [`xdhcpd_config`] for an ISC dhcpd partner: plain TCP, no key.
pub fn for_isc_partner(config: &str) -> String {
    config
        .lines()
        .map(|l| {
            if l.starts_with("auth-key-file") {
                "partner-software = \"isc-dhcpd\"".to_string()
            } else {
                l.to_string()
            }
        })
        .collect::<Vec<_>>()
        .join("\n")
        + "\n"
}

/// An xdhcpd configuration for one side of the pair.
pub fn xdhcpd_config(
    iface: &str,
    me: &str,
    peer: &str,
    primary: bool,
    lease_file: &Path,
    socket: &Path,
    t: &Timers,
) -> String {
    format!(
        "[server]\ninterface = \"{iface}\"\nio = \"xdp\"\nserver-id = \"{me}\"\n\
         lease-file = \"{}\"\ncommit = \"ack\"\ncontrol-socket = \"{}\"\n\n\
         [lease]\ndefault-time = 3600\nmin-time = 10\nmax-time = 86400\noffer-hold = 10\n\n\
         [[subnet]]\ncidr = \"10.77.0.0/16\"\nrouter = [\"{A_ADDR}\"]\n\n\
         [[subnet.pool]]\nrange = \"{POOL_FIRST}-{POOL_LAST}\"\n\n\
         [failover]\nrole = \"{}\"\nname = \"pair\"\naddress = \"{me}\"\nport = 647\n\
         peer-address = \"{peer}\"\npeer-port = 647\nmclt = {}\npoll-interval = 2\n\
         poll-timeout = 8\nuse-safe-period = false\nbackup-pct = 50\n{}{}",
        lease_file.display(),
        socket.display(),
        if primary { "primary" } else { "secondary" },
        t.mclt,
        t.split.map_or(String::new(), |s| format!("split = {s}\n")),
        auth_line(lease_file.parent().unwrap_or(Path::new("/tmp"))),
    )
}

/// An ISC dhcpd 4.4 configuration for one side (the notes' known-good pair settings).
pub fn isc_config(me: &str, peer: &str, primary: bool, t: &Timers) -> String {
    let role = if primary {
        format!(
            "primary;\n  mclt {};\n  split {};\n",
            t.mclt,
            t.split.unwrap_or(128)
        )
    } else {
        "secondary;\n".to_string()
    };
    format!(
        "authoritative;\ndefault-lease-time 600;\nmax-lease-time 7200;\n\
         failover peer \"pair\" {{\n  {role}  address {me};\n  port 647;\n  peer address {peer};\n\
           peer port 647;\n  max-response-delay 60;\n  max-unacked-updates 10;\n\
           load balance max seconds 3;\n}}\n\
         subnet 10.77.0.0 netmask 255.255.0.0 {{\n  option routers {A_ADDR};\n  pool {{\n\
             failover peer \"pair\";\n    range {POOL_FIRST} {POOL_LAST};\n  }}\n}}\n"
    )
}

/// A running xdhcpd with failover.
pub struct Xd {
    pub proc: Proc,
    pub config: PathBuf,
    pub lease_file: PathBuf,
    pub socket: PathBuf,
    pub log: PathBuf,
}

impl Xd {
    pub fn start(
        ns: &Netns,
        config: &Path,
        lease_file: &Path,
        socket: &Path,
        log: &Path,
    ) -> Res<Xd> {
        let bin = xdhcpd_bin()?;
        let mut cmd = ns.command(&bin.to_string_lossy());
        cmd.arg("run")
            .arg("-c")
            .arg(config)
            .args(["--stats-interval", "0", "--run-for", "400"])
            .current_dir(repo_root())
            .env("RUST_LOG", "info")
            .env("NO_COLOR", "1");
        let mut proc = Proc::spawn("xdhcpd", &mut cmd, log)?;
        wait_for("xdhcpd to serve", Duration::from_secs(20), || {
            proc.check_alive()?;
            Ok(read_text(log)?.contains("serving ").then_some(()))
        })?;
        std::thread::sleep(Duration::from_millis(200));
        Ok(Xd {
            proc,
            config: config.to_owned(),
            lease_file: lease_file.to_owned(),
            socket: socket.to_owned(),
            log: log.to_owned(),
        })
    }

    /// `xdhcpd ctl failover status --json` (the control socket is a file: no namespace needed).
    pub fn status(&self) -> Res<serde_json::Value> {
        ctl_status(&self.socket)
    }

    /// Waits until own and partner state are both `state`.
    pub fn wait_state(&mut self, state: &str, partner: &str, limit: Duration) -> Res<()> {
        let what = format!(
            "{} to be {state} with partner {partner}",
            self.socket.display()
        );
        let r = wait_for(&what, limit, || {
            self.proc.check_alive()?;
            let s = self.status()?;
            Ok((s["state"] == state && s["partner_state"] == partner).then_some(()))
        });
        r.map_err(|e| {
            format!(
                "{e}; last status {:?}; log:\n{}",
                self.status(),
                self.proc.log_text()
            )
        })
    }

    /// Waits until every queued binding update is acknowledged.
    pub fn wait_drained(&mut self, limit: Duration) -> Res<()> {
        let r = wait_for("binding updates to drain", limit, || {
            self.proc.check_alive()?;
            let s = self.status()?;
            Ok((s["unacked_updates"] == 0 && s["bindings_pending"] == 0).then_some(()))
        });
        // Say what was left and what the daemon logged: a stuck queue has a reason there.
        r.map_err(|e| {
            let st = self.status().map(|s| s.to_string()).unwrap_or_default();
            let log = read_text(&self.log).unwrap_or_default();
            let tail: Vec<&str> = log.lines().rev().take(30).collect();
            format!(
                "{e}\nstatus: {st}\nlog tail:\n{}",
                tail.into_iter().rev().collect::<Vec<_>>().join("\n")
            )
        })
    }

    /// SIGTERM (graceful: SHUTDOWN to the partner) and a clean exit.
    pub fn stop(mut self) -> Res<String> {
        self.proc.signal(libc::SIGTERM)?;
        let st = self.proc.wait_exit(Duration::from_secs(15))?;
        let log = self.proc.log_text();
        if !st.success() {
            return Err(format!("xdhcpd exited with {st}; log:\n{log}"));
        }
        Ok(log)
    }

    /// SIGKILL: a crash.
    pub fn kill(mut self) -> Res<()> {
        self.proc.signal(libc::SIGKILL)?;
        self.proc.wait_exit(Duration::from_secs(5))?;
        Ok(())
    }
}

pub fn ctl_status(socket: &Path) -> Res<serde_json::Value> {
    let bin = xdhcpd_bin()?;
    let out = output(
        Command::new("timeout")
            .arg("10")
            .arg(&bin)
            .args(["ctl", "--socket"])
            .arg(socket)
            .args(["failover", "status", "--json"]),
    )?;
    if !out.status.success() {
        return Err(format!("ctl status failed: {} {}", out.stdout, out.stderr));
    }
    let v: serde_json::Value = serde_json::from_str(&out.stdout)
        .map_err(|e| format!("ctl status JSON: {e}: {}", out.stdout))?;
    Ok(v["status"].clone())
}

/// `xdhcpd ctl failover ARGS` (checked), returning stdout.
pub fn ctl(socket: &Path, args: &[&str]) -> Res<String> {
    let bin = xdhcpd_bin()?;
    let out = output(
        Command::new("timeout")
            .arg("10")
            .arg(&bin)
            .args(["ctl", "--socket"])
            .arg(socket)
            .arg("failover")
            .args(args),
    )?;
    if !out.status.success() {
        return Err(format!(
            "ctl failover {args:?} failed: {} {}",
            out.stdout, out.stderr
        ));
    }
    Ok(out.stdout)
}

/// A running ISC dhcpd.
pub struct Isc {
    pub proc: Proc,
    pub leases: PathBuf,
    pub log: PathBuf,
}

impl Isc {
    pub fn start(ns: &Netns, iface: &str, conf: &Path, leases: &Path, log: &Path) -> Res<Isc> {
        if !leases.exists() {
            write_file(leases, "")?;
        }
        let pid = log.with_extension("pid");
        let mut cmd = ns.command("dhcpd");
        cmd.args(["-4", "-f", "-d", "-cf"])
            .arg(conf)
            .arg("-lf")
            .arg(leases)
            .arg("-pf")
            .arg(&pid)
            .arg(iface);
        let mut proc = Proc::spawn("dhcpd", &mut cmd, log)?;
        wait_for("dhcpd to start", Duration::from_secs(15), || {
            proc.check_alive()?;
            Ok(read_text(log)?
                .contains("Server starting service")
                .then_some(()))
        })?;
        Ok(Isc {
            proc,
            leases: leases.to_owned(),
            log: log.to_owned(),
        })
    }

    /// Waits for `n` occurrences of "Both servers normal" in the log.
    pub fn wait_normal(&mut self, n: usize, limit: Duration) -> Res<()> {
        let r = wait_for("ISC dhcpd: Both servers normal", limit, || {
            self.proc.check_alive()?;
            Ok((read_text(&self.log)?.matches("Both servers normal").count() >= n).then_some(()))
        });
        r.map_err(|e| format!("{e}; ISC log:\n{}", self.proc.log_text()))
    }

    pub fn stop(mut self) -> Res<()> {
        self.proc.signal(libc::SIGTERM)?;
        self.proc.wait_exit(Duration::from_secs(10))?;
        Ok(())
    }
}

/// The last `binding state` and hardware address of each lease in an ISC lease file.
pub fn isc_leases(path: &Path) -> Res<BTreeMap<Ipv4Addr, (String, String)>> {
    let text = read_text(path)?;
    let mut out = BTreeMap::new();
    let mut cur: Option<(Ipv4Addr, String, String)> = None;
    for line in text.lines() {
        let t = line.trim();
        if let Some(rest) = t.strip_prefix("lease ") {
            let a = rest.trim_end_matches('{').trim();
            cur = a.parse().ok().map(|a| (a, String::new(), String::new()));
        } else if let Some(rest) = t.strip_prefix("binding state ") {
            if let Some(c) = cur.as_mut() {
                c.1 = rest.trim_end_matches(';').to_string();
            }
        } else if let Some(rest) = t.strip_prefix("hardware ethernet ") {
            if let Some(c) = cur.as_mut() {
                c.2 = rest.trim_end_matches(';').to_string();
            }
        } else if t == "}" {
            if let Some((a, s, h)) = cur.take() {
                out.insert(a, (s, h));
            }
        }
    }
    Ok(out)
}

pub use crate::daemon_common::loadgen_bin;

/// One ACK the load generator received.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Acked {
    /// MAC of the simulated client (02:SALT:00:00:00:II).
    pub mac: [u8; 6],
    pub addr: Ipv4Addr,
    pub secs: u32,
}

/// DORA for `clients` clients with MACs 02:`salt`:..; returns the ACKs received.
pub fn dora(bed: &PairBed, salt: u8, clients: u32, tag: &str) -> Res<Vec<Acked>> {
    let lg = loadgen_bin()?;
    let acked = bed.path(&format!("acked-{tag}.log"));
    let n = clients.to_string();
    let salt_s = salt.to_string();
    let out = output(bed.c.command("timeout").args([
        "60",
        &lg.to_string_lossy(),
        "-i",
        &bed.lc.a,
        "--io",
        "packet",
        "--clients",
        &n,
        "--count",
        &n,
        "--timeout-ms",
        "1500",
        "--retries",
        "3",
        "--quiet",
        "--mac-salt",
        &salt_s,
        "--acked-log",
        &acked.to_string_lossy(),
    ]))?;
    let text =
        read_text(&acked).map_err(|e| format!("{e}; loadgen: {} {}", out.stdout, out.stderr))?;
    let mut v = Vec::new();
    for line in text.lines() {
        let f: Vec<&str> = line.split_whitespace().collect();
        if f.len() < 4 {
            continue;
        }
        // Client key: client-id 01 + MAC.
        let hex = f[1].strip_prefix("01").unwrap_or(f[1]);
        let mut mac = [0u8; 6];
        for (i, m) in mac.iter_mut().enumerate() {
            *m = u8::from_str_radix(hex.get(2 * i..2 * i + 2).unwrap_or("zz"), 16)
                .map_err(|_| format!("bad client key in {}: {line}", acked.display()))?;
        }
        v.push(Acked {
            mac,
            addr: f[2].parse().map_err(|_| format!("bad address in {line}"))?,
            secs: f[3]
                .parse()
                .map_err(|_| format!("bad lease time in {line}"))?,
        });
    }
    v.sort_by_key(|a| a.mac);
    v.dedup_by_key(|a| a.mac);
    Ok(v)
}

pub fn mac_str(m: &[u8]) -> String {
    m.iter()
        .map(|b| format!("{b:02x}"))
        .collect::<Vec<_>>()
        .join(":")
}

// ---------------------------------------------------------------------------------------------
// Lease-table checks shared by the failover operation tests

/// The pair's one pool, as the lease store numbers it.
pub fn pair_pools() -> Vec<lease_store::PoolSpec> {
    let first = POOL_FIRST.parse().unwrap_or(Ipv4Addr::UNSPECIFIED);
    let last = POOL_LAST.parse().unwrap_or(Ipv4Addr::UNSPECIFIED);
    vec![lease_store::PoolSpec { id: 0, first, last }]
}

/// Records of a running daemon's lease file, read from a copy.
pub fn table_snapshot(xd: &Xd, bed: &PairBed, tag: &str) -> Res<Vec<lease_store::Lease>> {
    let copy = bed.path(&format!("snap-{tag}.db"));
    std::fs::copy(&xd.lease_file, &copy)
        .map_err(|e| format!("copying {}: {e}", xd.lease_file.display()))?;
    crate::daemon_common::read_table(&copy, &pair_pools())
}

/// The lease-store key of a load-generator client (client-id 01 + MAC).
pub fn loadgen_key(mac: &[u8; 6]) -> lease_store::ClientKey {
    let mut id = vec![1u8];
    id.extend_from_slice(mac);
    lease_store::ClientKey::from_client_id(&id)
}

/// Every ACK in `acked` is an ACTIVE record for the same client in `table`.
pub fn check_acked_bound(table: &[lease_store::Lease], acked: &[Acked], who: &str) -> Res<()> {
    for a in acked {
        let l = table
            .iter()
            .find(|l| l.addr == a.addr)
            .ok_or_else(|| format!("{who}: no record for {}", a.addr))?;
        if l.state != lease_store::LeaseState::Active || l.client != loadgen_key(&a.mac) {
            return Err(format!(
                "{who}: {} should be active for {} but is {} for {}",
                a.addr,
                mac_str(&a.mac),
                l.state,
                l.client
            ));
        }
    }
    Ok(())
}

/// Active bindings not expired at `at`: address -> (client, lease end).
pub fn active_bindings(
    table: &[lease_store::Lease],
    at: u32,
) -> BTreeMap<Ipv4Addr, (lease_store::ClientKey, u32)> {
    table
        .iter()
        .filter(|l| l.state == lease_store::LeaseState::Active && l.expiry > at)
        .map(|l| (l.addr, (l.client, l.expiry)))
        .collect()
}

/// Configuration, lease file and control socket paths of the two xdhcpd sides of a bed.
pub struct Sides {
    pub a_cfg: PathBuf,
    pub b_cfg: PathBuf,
    pub a_db: PathBuf,
    pub b_db: PathBuf,
    pub a_sock: PathBuf,
    pub b_sock: PathBuf,
}

/// Writes the configurations of A (primary) and B (secondary) for `t`.
pub fn xd_sides(bed: &PairBed, t: &Timers) -> Res<Sides> {
    xd_sides_with(bed, t, |_, c| c)
}

/// [`xd_sides`], with `edit` rewriting each generated configuration (`true` = the primary's).
pub fn xd_sides_with(
    bed: &PairBed,
    t: &Timers,
    edit: impl Fn(bool, String) -> String,
) -> Res<Sides> {
    let s = Sides {
        a_cfg: bed.path("a.toml"),
        b_cfg: bed.path("b.toml"),
        a_db: bed.path("a.db"),
        b_db: bed.path("b.db"),
        a_sock: bed.path("a.sock"),
        b_sock: bed.path("b.sock"),
    };
    let a = xdhcpd_config(&bed.la.a, A_ADDR, B_ADDR, true, &s.a_db, &s.a_sock, t);
    let b = xdhcpd_config(&bed.lb.a, B_ADDR, A_ADDR, false, &s.b_db, &s.b_sock, t);
    crate::daemon_common::write_file(&s.a_cfg, &edit(true, a))?;
    crate::daemon_common::write_file(&s.b_cfg, &edit(false, b))?;
    Ok(s)
}
