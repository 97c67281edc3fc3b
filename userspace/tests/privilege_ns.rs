//! Least privilege (`[server] user`), in network namespaces (root; see `common/require.rs`):
//! the test creates a system account (removed afterwards) and runs the daemon with
//! `user = <it>`, on the XDP path and on `--io udp`, and checks:
//! - `/proc/<pid>/status` of every thread: real/effective/saved/fs uid and gid are the
//!   account's, the only group is its group, CapEff = CapPrm = the documented set (none on
//!   XDP, CAP_NET_ADMIN on UDP) and the bounding set is no larger;
//! - a DORA by busybox udhcpc succeeds (UDP: through the ARP entry the daemon installs);
//! - a reload that grows the pool works (the lease table grows as the user) and a second
//!   client gets the new address; the WAL is checkpointed meanwhile (every 200 ms);
//! - the attack: through the control API, importing registrations from `/etc/shadow` (a root
//!   daemon reads it and its parse error quotes it) and exporting into `/etc` (a root daemon
//!   writes anywhere) are both refused with EACCES;
//! - SIGINT ends the daemon cleanly (exit 0), the XDP program is detached;
//! - a restart keeps the leases (same addresses for the same clients, records in the file).
//!
//! And `--io udp` with failover: the nftables guard is installed at start and deleted at
//! shutdown by the unprivileged daemon (`nft` run with the ambient CAP_NET_ADMIN), while
//! failover reconnects to an absent partner go on without a permission error.
//!
//! On main before this change the daemon stayed uid 0 with every capability (CapEff
//! 000001ffffffffff) and the `/etc/shadow` import got past the open.

#[path = "common/netns.rs"]
mod netns;

#[path = "common/require.rs"]
mod require;

#[path = "daemon_common/mod.rs"]
mod daemon_common;

use std::net::Ipv4Addr;
use std::os::unix::fs::{MetadataExt, PermissionsExt};
use std::path::{Path, PathBuf};
use std::process::Command;
use std::time::Duration;

use daemon_common::{
    mac_str, output, read_table, read_text, repo_root, wait_for, write_file, write_script,
    xdhcpd_bin, Bed, Proc, Res, CLI_MAC, PREFIX, SRV_ADDR,
};
use netns::{veth_pair, Netns};
use require::{require, Capability};

/// CAP_NET_ADMIN (12).
const NET_ADMIN: u64 = 1 << 12;

/// A system account (and its group) for the test; removed on Drop.
struct SysUser {
    name: String,
    uid: u32,
    gid: u32,
}

impl SysUser {
    fn create() -> Res<SysUser> {
        // One account per test: the tests of this binary run in parallel, and a shared name
        // made one test's useradd fail, or its userdel pull the account from under another.
        static NEXT: std::sync::atomic::AtomicU32 = std::sync::atomic::AtomicU32::new(0);
        let n = NEXT.fetch_add(1, std::sync::atomic::Ordering::Relaxed);
        let name = format!("xdpriv{:x}n{n}", std::process::id());
        // A leftover of a killed run with the same pid: remove it first.
        let _ = output(Command::new("userdel").arg(&name));
        let out = output(Command::new("useradd").args([
            "--system",
            "--no-create-home",
            "--shell",
            "/usr/sbin/nologin",
            "--user-group",
            &name,
        ]))?;
        if !out.status.success() {
            return Err(format!("useradd {name}: {}{}", out.stdout, out.stderr));
        }
        let id = |flag: &str| -> Res<u32> {
            let o = output(Command::new("id").args([flag, &name]))?;
            o.stdout
                .trim()
                .parse()
                .map_err(|e| format!("id {flag} {name}: {:?}: {e}", o.stdout))
        };
        let user = SysUser {
            uid: id("-u")?,
            gid: id("-g")?,
            name,
        };
        Ok(user)
    }
}

impl Drop for SysUser {
    fn drop(&mut self) {
        // userdel also removes the account's own group (USERGROUPS_ENAB); groupdel is for a
        // system where it does not.
        for cmd in ["userdel", "groupdel"] {
            let _ = Command::new(cmd)
                .arg(&self.name)
                .stdout(std::process::Stdio::null())
                .stderr(std::process::Stdio::null())
                .status();
        }
    }
}

/// The bed with this branch's namespace prefixes; its directory traversable by the account
/// (the daemon reads the configuration there on reload).
fn bed() -> Res<Bed> {
    let dir = tempfile::Builder::new()
        .prefix("xdhcpd-priv-")
        .tempdir()
        .map_err(|e| format!("creating a temporary directory: {e}"))?;
    std::fs::set_permissions(dir.path(), std::fs::Permissions::from_mode(0o755))
        .map_err(|e| format!("chmod {}: {e}", dir.path().display()))?;
    let srv = Netns::new("prvs").map_err(|e| e.to_string())?;
    let cli = Netns::new("prvc").map_err(|e| e.to_string())?;
    let link = veth_pair(&srv, &cli, 2).map_err(|e| e.to_string())?;
    srv.add_addr(&link.a, &format!("{SRV_ADDR}/{PREFIX}"))
        .map_err(|e| e.to_string())?;
    cli.ip(&["link", "set", &link.b, "address", &mac_str(&CLI_MAC)])
        .map_err(|e| e.to_string())?;
    Ok(Bed {
        srv,
        cli,
        link,
        dir,
    })
}

fn config(bed: &Bed, io: &str, user: &str, last: u8, extra: &str) -> String {
    format!(
        "[server]\ninterface = \"{}\"\nio = \"{io}\"\nserver-id = \"{SRV_ADDR}\"\n\
         lease-file = \"{}\"\ncommit = \"ack\"\ncontrol-socket = \"{}\"\n\
         registration-file = \"{}\"\nuser = \"{user}\"\n\n\
         [lease]\ndefault-time = 3600\nspare-addresses = 16\n\n\
         [event-log]\ndirectory = \"{}\"\n\n\
         [[subnet]]\ncidr = \"10.77.0.0/16\"\nrouter = [\"{SRV_ADDR}\"]\n\n\
         [[subnet.pool]]\nrange = \"10.77.1.10-10.77.1.{last}\"\n{extra}",
        bed.srv_if(),
        bed.path("leases.db").display(),
        bed.path("ctl.sock").display(),
        bed.path("regs/registrations.db").display(),
        bed.path("events").display(),
    )
}

/// `xdhcpd run -c CONFIG` in the server namespace, until its "serving" line.
fn start(bed: &Bed, cfg: &Path, log: &str) -> Res<Proc> {
    start_as(bed, cfg, log, &[])
}

/// As [`start`], through `wrapper` (a program and its arguments that exec the daemon).
fn start_as(bed: &Bed, cfg: &Path, log: &str, wrapper: &[&str]) -> Res<Proc> {
    let bin = xdhcpd_bin()?;
    let log = bed.path(log);
    let mut cmd = match wrapper.split_first() {
        None => bed.srv.command(&bin.to_string_lossy()),
        Some((program, args)) => {
            let mut c = bed.srv.command(program);
            c.args(args).arg(&bin);
            c
        }
    };
    cmd.arg("run")
        .arg("-c")
        .arg(cfg)
        .args(["--stats-interval", "0", "--run-for", "120"])
        .current_dir(repo_root())
        // Checkpoints (WAL truncation, msync) as the account, often.
        .env("XDHCPD_CHECKPOINT_MS", "200")
        .env("RUST_LOG", "info")
        .env("NO_COLOR", "1");
    let mut proc = Proc::spawn("xdhcpd", &mut cmd, &log)?;
    wait_for("xdhcpd to serve", Duration::from_secs(20), || {
        proc.check_alive()?;
        Ok(read_text(&log)?.contains("serving ").then_some(()))
    })?;
    Ok(proc)
}

/// Every thread of `pid`: uids, gids, groups and capability sets as the account must have
/// them; `caps` = CapEff = CapPrm, the bounding set no larger.
fn check_status(pid: u32, user: &SysUser, caps: u64) -> Res<()> {
    check_status_with(pid, user, caps, true)
}

/// As [`check_status`]; `from_root`: started as root, so the groups and the bounding set were
/// set by the switch too (started as the user they are what the starter gave).
fn check_status_with(pid: u32, user: &SysUser, caps: u64, from_root: bool) -> Res<()> {
    let tasks = std::fs::read_dir(format!("/proc/{pid}/task"))
        .map_err(|e| format!("/proc/{pid}/task: {e}"))?;
    let mut n = 0;
    for t in tasks.flatten() {
        let status = std::fs::read_to_string(t.path().join("status")).unwrap_or_default();
        if status.is_empty() {
            continue; // ended meanwhile
        }
        n += 1;
        let field = |k: &str| -> String {
            status
                .lines()
                .find_map(|l| l.strip_prefix(k))
                .unwrap_or("")
                .split_whitespace()
                .collect::<Vec<_>>()
                .join(" ")
        };
        let hex = |k: &str| u64::from_str_radix(&field(k), 16).unwrap_or(u64::MAX);
        let uids = format!("{0} {0} {0} {0}", user.uid);
        let gids = format!("{0} {0} {0} {0}", user.gid);
        let bad = field("Uid:") != uids
            || field("Gid:") != gids
            || (from_root && field("Groups:") != user.gid.to_string())
            || hex("CapEff:") != caps
            || hex("CapPrm:") != caps
            || hex("CapAmb:") & !caps != 0
            || (from_root && hex("CapBnd:") & !caps != 0);
        if bad {
            return Err(format!(
                "thread {:?} of {pid}: want uid {} gid {} caps {caps:x}, has:\n{status}",
                t.file_name(),
                user.uid,
                user.gid
            ));
        }
        // The attack surface named in the issue: no DAC override, no CAP_SYS_ADMIN.
        for (bit, name) in [
            (1, "CAP_DAC_OVERRIDE"),
            (2, "CAP_DAC_READ_SEARCH"),
            (21, "CAP_SYS_ADMIN"),
        ] {
            if hex("CapEff:") & (1 << bit) != 0 {
                return Err(format!("thread {:?} keeps {name}", t.file_name()));
            }
        }
    }
    if n < 3 {
        return Err(format!("only {n} thread(s) of {pid} seen"));
    }
    Ok(())
}

/// One DORA by busybox udhcpc as `mac`; its address or None after `tries` seconds.
fn udhcpc(bed: &Bed, mac: &str, tries: u32) -> Res<Option<Ipv4Addr>> {
    bed.cli
        .ip(&["link", "set", bed.cli_if(), "address", mac])
        .map_err(|e| e.to_string())?;
    let tag = mac.replace(':', "");
    let ev = bed.path(&format!("udhcpc-{tag}.events"));
    let _ = std::fs::remove_file(&ev);
    let script = bed.path(&format!("udhcpc-{tag}.sh"));
    write_script(
        &script,
        &format!(
            "#!/bin/sh\n[ \"$1\" = bound ] && echo \"$ip\" >> '{}'\nexit 0\n",
            ev.display()
        ),
    )?;
    output(bed.cli.command("timeout").args([
        "20",
        "busybox",
        "udhcpc",
        "-i",
        bed.cli_if(),
        "-f",
        "-q",
        "-n",
        "-t",
        &tries.to_string(),
        "-T",
        "1",
        "-s",
        &script.to_string_lossy(),
    ]))?;
    match read_text(&ev)?.lines().last() {
        Some(l) => l
            .trim()
            .parse()
            .map(Some)
            .map_err(|e| format!("udhcpc bound to {l:?}: {e}")),
        None => Ok(None),
    }
}

fn ctl(sock: &Path, args: &[&str]) -> Res<(bool, String)> {
    let bin = xdhcpd_bin()?;
    let out = output(
        Command::new("timeout")
            .arg("10")
            .arg(&bin)
            .args(["ctl", "--socket"])
            .arg(sock)
            .args(args),
    )?;
    Ok((
        out.status.success(),
        format!("{}{}", out.stdout, out.stderr),
    ))
}

/// SIGINT, a clean exit; the log.
fn stop(mut proc: Proc) -> Res<String> {
    proc.signal(libc::SIGINT)?;
    let st = proc.wait_exit(Duration::from_secs(15))?;
    let log = proc.log_text();
    if !st.success() {
        return Err(format!("xdhcpd exited with {st} after SIGINT; log:\n{log}"));
    }
    // EPERM is what a missing capability looks like (EACCES is the attack's, expected).
    for bad in ["panicked", "Operation not permitted"] {
        if log.contains(bad) {
            return Err(format!("`{bad}` in the log:\n{log}"));
        }
    }
    Ok(log)
}

fn needs() -> bool {
    require(&[
        Capability::Root,
        Capability::Program("timeout"),
        Capability::Program("ip"),
        Capability::Program("busybox"),
        Capability::Program("useradd"),
        Capability::Program("userdel"),
    ])
}

#[test]
fn privilege_xdp_daemon_runs_as_user_without_capabilities() {
    if !needs() {
        return;
    }
    if let Err(e) = scenario("xdp", 0) {
        panic!("{e}");
    }
}

#[test]
fn privilege_udp_daemon_keeps_only_net_admin() {
    if !needs() {
        return;
    }
    if let Err(e) = scenario("udp", NET_ADMIN) {
        panic!("{e}");
    }
}

fn scenario(io: &str, caps: u64) -> Res<()> {
    let user = SysUser::create()?;
    let bed = bed()?;
    let cfg = bed.path("xdhcpd.toml");
    write_file(&cfg, &config(&bed, io, &user.name, 10, ""))?;
    let proc = start(&bed, &cfg, "xdhcpd.log")?;
    let dlog = |p: &Proc, e: String| format!("{e}\ndaemon log:\n{}", p.log_text());
    let log = proc.log_text();
    if !log.contains(&format!("privileges: running as user {}", user.name)) {
        return Err(dlog(&proc, "no privilege switch logged".into()));
    }
    check_status(proc.pid(), &user, caps).map_err(|e| dlog(&proc, e))?;
    if io == "xdp" && !bed.srv_has_xdp()? {
        return Err(dlog(&proc, "no XDP program on the server interface".into()));
    }
    // The files and the directories start-up made are the account's.
    for p in ["leases.db", "leases.db.wal", "events", "regs", "ctl.sock"] {
        let md = std::fs::symlink_metadata(bed.path(p)).map_err(|e| format!("{p}: {e}"))?;
        if md.uid() != user.uid {
            return Err(dlog(&proc, format!("{p} is owned by uid {}", md.uid())));
        }
    }

    // DORA.
    let macs = ["02:5a:e2:00:00:01", "02:5a:e2:00:00:02"];
    let first =
        udhcpc(&bed, macs[0], 5)?.ok_or_else(|| dlog(&proc, "first client: no lease".into()))?;
    if first != Ipv4Addr::new(10, 77, 1, 10) {
        return Err(dlog(&proc, format!("first client got {first}")));
    }

    // Reload that grows the pool by one address: the table grows as the account.
    write_file(&cfg, &config(&bed, io, &user.name, 11, ""))?;
    let (ok, answer) = ctl(&bed.path("ctl.sock"), &["reload", "--json"])?;
    if !ok || !answer.contains("lease table grown by 1 address(es)") {
        return Err(dlog(
            &proc,
            format!("the reload was not accepted: {answer}"),
        ));
    }
    let second = udhcpc(&bed, macs[1], 5)?
        .ok_or_else(|| dlog(&proc, "second client: no lease after the reload".into()))?;
    if second != Ipv4Addr::new(10, 77, 1, 11) {
        return Err(dlog(&proc, format!("second client got {second}")));
    }

    // The attack: make the daemon read a root-only file and write into /etc.
    let sock = bed.path("ctl.sock");
    let (ok, answer) = ctl(
        &sock,
        &["registrations", "import", "/etc/shadow", "--format", "csv"],
    )?;
    if ok || !answer.contains("Permission denied") {
        return Err(dlog(
            &proc,
            format!("importing /etc/shadow was not refused with EACCES: {answer}"),
        ));
    }
    let planted = PathBuf::from(format!("/etc/xdhcpd-priv-{:x}.csv", std::process::id()));
    let (ok, answer) = ctl(
        &sock,
        &["registrations", "export", &planted.to_string_lossy()],
    )?;
    let written = planted.exists();
    let _ = std::fs::remove_file(&planted);
    let mut tmp = planted.into_os_string();
    tmp.push(".tmp");
    let _ = std::fs::remove_file(&tmp);
    if ok || written || !answer.contains("Permission denied") {
        return Err(dlog(
            &proc,
            format!("exporting into /etc was not refused with EACCES: {answer}"),
        ));
    }
    // Still itself after all that.
    check_status(proc.pid(), &user, caps).map_err(|e| dlog(&proc, e))?;

    let log = stop(proc)?;
    if io == "xdp" && bed.srv_has_xdp()? {
        return Err(format!(
            "XDP program still attached after SIGINT; log:\n{log}"
        ));
    }

    // Restart (as root again, switching again): the leases are kept.
    let proc = start(&bed, &cfg, "xdhcpd-2.log")?;
    check_status(proc.pid(), &user, caps).map_err(|e| dlog(&proc, e))?;
    let again = udhcpc(&bed, macs[0], 5)?
        .ok_or_else(|| dlog(&proc, "first client: no lease after the restart".into()))?;
    if again != first {
        return Err(dlog(
            &proc,
            format!("after the restart: {again}, had {first}"),
        ));
    }
    stop(proc)?;
    let pools = [lease_store::PoolSpec {
        id: 0,
        first: Ipv4Addr::new(10, 77, 1, 10),
        last: Ipv4Addr::new(10, 77, 1, 11),
    }];
    let bound: Vec<Ipv4Addr> = read_table(&bed.path("leases.db"), &pools)?
        .into_iter()
        .filter(|l| l.state == lease_store::LeaseState::Active)
        .map(|l| l.addr)
        .collect();
    for a in [first, second] {
        if !bound.contains(&a) {
            return Err(format!(
                "lease of {a} not in the table after restart: {bound:?}"
            ));
        }
    }
    Ok(())
}

#[test]
fn privilege_udp_failover_guard_removed_by_unprivileged_daemon() {
    if !needs() || !require(&[Capability::Program("nft")]) {
        return;
    }
    if let Err(e) = udp_failover_guard() {
        panic!("{e}");
    }
}

fn udp_failover_guard() -> Res<()> {
    let user = SysUser::create()?;
    let bed = bed()?;
    // A partner that never answers: the driver keeps reconnecting meanwhile.
    let key = bed.path("failover.key");
    write_file(&key, "xdhcpd-test-pair-key-0123456789abcdef\n")?;
    std::fs::set_permissions(&key, std::fs::Permissions::from_mode(0o600))
        .map_err(|e| format!("chmod {}: {e}", key.display()))?;
    let failover = format!(
        "\n[failover]\nrole = \"primary\"\nname = \"pair\"\naddress = \"{SRV_ADDR}\"\nport = 647\n\
         peer-address = \"10.77.0.9\"\npeer-port = 647\nmclt = 60\npoll-interval = 2\n\
         poll-timeout = 8\nuse-safe-period = false\nbackup-pct = 50\nauth-key-file = \"{}\"\n",
        key.display()
    );
    let cfg = bed.path("xdhcpd.toml");
    write_file(&cfg, &config(&bed, "udp", &user.name, 20, &failover))?;
    let proc = start(&bed, &cfg, "xdhcpd.log")?;
    let dlog = |p: &Proc, e: String| format!("{e}\ndaemon log:\n{}", p.log_text());
    check_status(proc.pid(), &user, NET_ADMIN).map_err(|e| dlog(&proc, e))?;
    let amb = std::fs::read_to_string(format!("/proc/{}/status", proc.pid()))
        .map_err(|e| e.to_string())?
        .lines()
        .find_map(|l| l.strip_prefix("CapAmb:").map(|v| v.trim().to_string()))
        .unwrap_or_default();
    if u64::from_str_radix(&amb, 16) != Ok(NET_ADMIN) {
        return Err(dlog(
            &proc,
            format!("CapAmb {amb}, want CAP_NET_ADMIN only"),
        ));
    }
    let tables = output(bed.srv.command("nft").args(["list", "tables"]))?;
    if !tables.stdout.contains("xdhcpd_failover_647") {
        return Err(dlog(&proc, format!("no guard table: {}", tables.stdout)));
    }
    // Let the driver try the absent partner a few times (connect every few seconds).
    std::thread::sleep(Duration::from_secs(3));
    let log = stop(proc)?;
    let tables = output(bed.srv.command("nft").args(["list", "tables"]))?;
    if tables.stdout.contains("xdhcpd_failover") {
        return Err(format!(
            "the guard table is left after shutdown: {}\nlog:\n{log}",
            tables.stdout
        ));
    }
    Ok(())
}

#[test]
fn privilege_started_as_user_with_ambient_caps_drops_them() {
    if !needs() || !require(&[Capability::Program("setpriv")]) {
        return;
    }
    if let Err(e) = started_as_user() {
        panic!("{e}");
    }
}

/// The systemd unit's way: started as the account with the start-up capabilities as ambient
/// ones (`User=`, `AmbientCapabilities=`; here setpriv) in a directory that is the account's
/// (`StateDirectory=`); the switch only cuts the capabilities.
fn started_as_user() -> Res<()> {
    let user = SysUser::create()?;
    let bed = bed()?;
    std::os::unix::fs::chown(bed.dir.path(), Some(user.uid), Some(user.gid))
        .map_err(|e| format!("chown {}: {e}", bed.dir.path().display()))?;
    let cfg = bed.path("xdhcpd.toml");
    write_file(&cfg, &config(&bed, "xdp", &user.name, 10, ""))?;
    // The unit's AmbientCapabilities= and CapabilityBoundingSet=.
    let caps = "+bpf,+perfmon,+net_admin,+net_raw,+sys_admin,+ipc_lock,+net_bind_service";
    let bounding = format!("-all,{caps}");
    let proc = start_as(
        &bed,
        &cfg,
        "xdhcpd.log",
        &[
            "setpriv",
            "--reuid",
            &user.name,
            "--regid",
            &user.name,
            "--clear-groups",
            "--inh-caps",
            caps,
            "--ambient-caps",
            caps,
            "--bounding-set",
            &bounding,
        ],
    )?;
    let dlog = |p: &Proc, e: String| format!("{e}\ndaemon log:\n{}", p.log_text());
    check_status_with(proc.pid(), &user, 0, false).map_err(|e| dlog(&proc, e))?;
    if !bed.srv_has_xdp()? {
        return Err(dlog(&proc, "no XDP program on the server interface".into()));
    }
    let ip = udhcpc(&bed, "02:5a:e2:00:00:01", 5)?.ok_or_else(|| dlog(&proc, "no lease".into()))?;
    if ip != Ipv4Addr::new(10, 77, 1, 10) {
        return Err(dlog(&proc, format!("the client got {ip}")));
    }
    let log = stop(proc)?;
    if bed.srv_has_xdp()? {
        return Err(format!(
            "XDP program still attached after SIGINT; log:\n{log}"
        ));
    }
    Ok(())
}

#[test]
fn privilege_unknown_user_or_group_is_a_positioned_config_error() {
    let dir = match tempfile::tempdir() {
        Ok(d) => d,
        Err(e) => panic!("tempdir: {e}"),
    };
    let bin = match xdhcpd_bin() {
        Ok(b) => b,
        Err(e) => panic!("{e}"),
    };
    for (lines, want) in [
        (
            "user = \"no-such-user-xdpriv\"\n",
            "x.toml:3:8: server.user: no such user `no-such-user-xdpriv` on this system",
        ),
        (
            "user = \"root\"\ngroup = \"no-such-group-xdpriv\"\n",
            "x.toml:4:9: server.group: no such group `no-such-group-xdpriv` on this system",
        ),
    ] {
        let cfg = dir.path().join("x.toml");
        let text =
            format!("[server]\ninterface = \"eth0\"\n{lines}[[subnet]]\ncidr = \"10.0.0.0/24\"\n");
        if let Err(e) = write_file(&cfg, &text) {
            panic!("{e}");
        }
        for args in [&["check-config"][..], &["run", "--run-for", "1", "-c"][..]] {
            let out = match output(
                Command::new(&bin)
                    .args(args)
                    .arg("x.toml")
                    .current_dir(dir.path()),
            ) {
                Ok(o) => o,
                Err(e) => panic!("{e}"),
            };
            assert_eq!(out.status.code(), Some(2), "{args:?}: {}", out.stderr);
            assert!(out.stderr.contains(want), "{args:?}: {}", out.stderr);
        }
    }
}
