//! Operating a running daemon, in network namespaces (root; see `common/require.rs`):
//! * reload under load: while `xdhcp-loadgen` runs DORAs, SIGHUP applies new options and a
//!   new lease time (a real client, busybox udhcpc, is served them), then a file that adds a
//!   pool is accepted by `xdhcpd ctl reload` (the lease table grows live) and a file with an
//!   error is refused by SIGHUP and by `ctl reload` with file:line:col; the refused files change
//!   nothing (the client still gets the accepted options), no DORA failed, no ACKed lease is
//!   missing from the table, the daemon never stopped;
//! * lease history: an address moves from one client to another (a one-address pool); the
//!   event log answers `xdhcpd ctl history --ip A --at T` with the right client at each time;
//! * SIGHUP in a failover pair: both stay NORMAL, the connection is not re-made, leases
//!   still replicate.

#[path = "common/netns.rs"]
mod netns;

#[path = "common/require.rs"]
mod require;

#[path = "daemon_common/mod.rs"]
mod daemon_common;

#[path = "failover_common/mod.rs"]
mod failover_common;

#[path = "lease_common/mod.rs"]
mod lease_common;

use std::collections::HashMap;
use std::net::Ipv4Addr;
use std::path::{Path, PathBuf};
use std::process::Command;
use std::time::Duration;

use daemon_common::{
    output, read_table, read_text, unix_now, wait_for, write_file, write_script, xdhcpd_bin, Bed,
    Proc, Res, SRV_ADDR,
};
use failover_common::{PairBed, Timers, Xd};
use lease_common::{ack_problem, loadgen_bin, AckReader};
use require::{require, Capability};

fn run(more: &[Capability], f: fn() -> Res<()>) {
    let mut needs = vec![
        Capability::Root,
        Capability::Program("timeout"),
        Capability::Program("ip"),
        Capability::Program("busybox"),
    ];
    needs.extend_from_slice(more);
    if !require(&needs) {
        return;
    }
    if let Err(e) = f() {
        panic!("{e}");
    }
}

/// The single-server configuration: `dns` served, `default` lease seconds, `pools` ranges,
/// plus `extra` text (e.g. an error).
fn config(bed: &Bed, dns: &str, default: u32, pools: &[&str], extra: &str) -> String {
    let mut t = format!(
        "[server]\ninterface = \"{}\"\nio = \"xdp\"\nserver-id = \"{SRV_ADDR}\"\n\
         lease-file = \"{}\"\ncommit = \"ack\"\ncontrol-socket = \"{}\"\n\n\
         [lease]\ndefault-time = {default}\nmin-time = 60\nmax-time = 86400\n\n\
         [event-log]\ndirectory = \"{}\"\n\n\
         [[subnet]]\ncidr = \"10.77.0.0/16\"\nrouter = [\"{SRV_ADDR}\"]\ndns-servers = [\"{dns}\"]\n{extra}\n",
        bed.srv_if(),
        bed.path("leases.db").display(),
        bed.path("ctl.sock").display(),
        bed.path("events").display(),
    );
    for p in pools {
        t.push_str(&format!("\n[[subnet.pool]]\nrange = \"{p}\"\n"));
    }
    t
}

fn start(bed: &Bed, cfg: &Path) -> Res<Xd> {
    Xd::start(
        &bed.srv,
        cfg,
        &bed.path("leases.db"),
        &bed.path("ctl.sock"),
        &bed.path("xdhcpd.log"),
    )
}

/// One DHCP exchange by busybox udhcpc (MAC of the client interface), quitting once bound:
/// (address, DNS servers, lease seconds) as its script saw them.
fn udhcpc_once(bed: &Bed, tag: &str) -> Res<(Ipv4Addr, String, u32)> {
    let ev = bed.path(&format!("udhcpc-{tag}.events"));
    let script = bed.path("udhcpc-once.sh");
    write_script(
        &script,
        &format!(
            "#!/bin/sh\n[ \"$1\" = bound ] && echo \"$ip|$dns|$lease\" >> '{}'\nexit 0\n",
            ev.display()
        ),
    )?;
    let out = output(bed.cli.command("timeout").args([
        "20",
        "busybox",
        "udhcpc",
        "-i",
        bed.cli_if(),
        "-f",
        "-q",
        "-n",
        "-t",
        "5",
        "-T",
        "1",
        "-s",
        &script.to_string_lossy(),
    ]))?;
    let text = read_text(&ev)?;
    let line = text.lines().last().ok_or_else(|| {
        format!(
            "udhcpc got no lease ({}): {}{}",
            out.status, out.stdout, out.stderr
        )
    })?;
    let mut f = line.split('|');
    let ip = f
        .next()
        .and_then(|a| a.parse().ok())
        .ok_or("udhcpc: no ip")?;
    let dns = f.next().unwrap_or_default().trim().to_string();
    let lease = f
        .next()
        .and_then(|l| l.trim().parse().ok())
        .ok_or("udhcpc: no lease")?;
    Ok((ip, dns, lease))
}

/// `xdhcpd ctl --socket S reload --json`: (exit success, answer).
fn ctl_reload(sock: &Path) -> Res<(bool, serde_json::Value)> {
    let bin = xdhcpd_bin()?;
    let out = output(
        Command::new("timeout")
            .arg("10")
            .arg(&bin)
            .args(["ctl", "--socket"])
            .arg(sock)
            .args(["reload", "--json"]),
    )?;
    let v = serde_json::from_str(&out.stdout)
        .map_err(|e| format!("ctl reload JSON: {e}: {}{}", out.stdout, out.stderr))?;
    Ok((out.status.success(), v))
}

/// Waits for the log to contain `what` after byte `from`.
fn wait_log(xd: &mut Xd, from: usize, what: &str) -> Res<()> {
    let log = xd.log.clone();
    wait_for(
        &format!("`{what}` in the log"),
        Duration::from_secs(10),
        || {
            xd.proc.check_alive()?;
            Ok(read_text(&log)?
                .get(from..)
                .is_some_and(|t| t.contains(what))
                .then_some(()))
        },
    )
    .map_err(|e| format!("{e}; log:\n{}", read_text(&log).unwrap_or_default()))
}

// ---------------------------------------------------------------------------------------------
// 1. Reload under load

#[test]
fn daemon_reload_under_load_applies_options_and_refuses_bad_files() {
    run(&[], reload_under_load);
}

fn reload_under_load() -> Res<()> {
    let bed = Bed::new(None)?;
    let pool = "10.77.1.0-10.77.4.255";
    let cfg = bed.path("xdhcpd.toml");
    write_file(&cfg, &config(&bed, "10.77.0.53", 3600, &[pool], ""))?;
    let mut xd = start(&bed, &cfg)?;
    let (_, dns0, lease0) = udhcpc_once(&bed, "0").map_err(|e| {
        format!(
            "{e}\ndaemon log:\n{}",
            read_text(&xd.log).unwrap_or_default()
        )
    })?;
    if dns0 != "10.77.0.53" || lease0 != 3600 {
        return Err(format!("before any reload: dns {dns0:?} lease {lease0}"));
    }

    // Load: 400 clients doing DORA for 14 s at 3,000/s, answers within 1 s, 4 retries.
    // Open loop on purpose: closed loop (the loadgen as fast as the server answers, ~30,000/s
    // here) saturates the one veth pair, and udhcpc's broadcasts or their OFFERs are lost on
    // the link (seen: the daemon answered every DISCOVER it received, before and after the
    // reload, while udhcpc timed out), which is not what this test is about.
    let lg = loadgen_bin()?;
    let report = bed.path("loadgen.json");
    let acked = bed.path("acked.log");
    let mut load = Proc::spawn(
        "xdhcp-loadgen",
        bed.cli.command("timeout").args([
            "60",
            &lg.to_string_lossy(),
            "-i",
            bed.cli_if(),
            "--io",
            "packet",
            "--scenario",
            "dora",
            "--clients",
            "400",
            "--rate",
            "3000",
            "--duration",
            "14s",
            "--timeout-ms",
            "1000",
            "--retries",
            "4",
            "--quiet",
            "--json",
            &report.to_string_lossy(),
            "--acked-log",
            &acked.to_string_lossy(),
        ]),
        &bed.path("loadgen.log"),
    )?;
    std::thread::sleep(Duration::from_secs(3));

    // (a) SIGHUP: new DNS server and lease time, accepted.
    write_file(&cfg, &config(&bed, "10.77.0.54", 1800, &[pool], ""))?;
    let mark = read_text(&xd.log)?.len();
    xd.proc.signal(libc::SIGHUP)?;
    wait_log(&mut xd, mark, "(configuration generation 1)")?;
    let (_, dns1, lease1) = udhcpc_once(&bed, "1").map_err(|e| {
        format!(
            "{e}\ndaemon log:\n{}",
            read_text(&xd.log).unwrap_or_default()
        )
    })?;
    if dns1 != "10.77.0.54" || lease1 != 1800 {
        return Err(format!(
            "after the reload: dns {dns1:?} lease {lease1} (want 10.77.0.54, 1800)"
        ));
    }

    // (b) A new pool: accepted by `ctl reload` (the lease table grows into its spare records).
    let new_pool = "10.77.9.0-10.77.9.255";
    write_file(
        &cfg,
        &config(&bed, "10.77.0.54", 1800, &[pool, new_pool], ""),
    )?;
    let (ok, v) = ctl_reload(&bed.path("ctl.sock"))?;
    if !ok
        || v["generation"] != 2
        || !v["changes"]
            .to_string()
            .contains("lease table grown by 256 address(es): pool 1 10.77.9.0-10.77.9.255")
    {
        return Err(format!("the new pool was not added: {v}"));
    }

    // (c) An error in the file: refused by SIGHUP (logged) and by `ctl reload` (answered),
    // both with file:line:col.
    let bad = config(
        &bed,
        "10.77.0.56",
        600,
        &[pool, new_pool],
        "domian-name = \"typo.example\"",
    );
    let line = 1 + bad
        .lines()
        .position(|l| l.starts_with("domian-name"))
        .ok_or("no typo line")?;
    write_file(&cfg, &bad)?;
    let mark = read_text(&xd.log)?.len();
    xd.proc.signal(libc::SIGHUP)?;
    wait_log(&mut xd, mark, "reload refused, running configuration kept")?;
    let (ok, v) = ctl_reload(&bed.path("ctl.sock"))?;
    let errors = v["reload"]["errors"].to_string();
    let pos = format!("{}:{line}:1: subnet[0].domian-name", cfg.display());
    if ok || v["reload"]["kind"] != "invalid" || !errors.contains(&pos) {
        return Err(format!("the bad file was not refused with {pos}: {v}"));
    }
    // The refused files changed nothing.
    let (_, dns2, lease2) = udhcpc_once(&bed, "2")?;
    if dns2 != "10.77.0.54" || lease2 != 1800 {
        return Err(format!(
            "after the refused reloads: dns {dns2:?} lease {lease2}"
        ));
    }

    let st = load.wait_exit(Duration::from_secs(40))?;
    let rep: serde_json::Value = serde_json::from_str(&read_text(&report)?)
        .map_err(|e| format!("loadgen report: {e}; log:\n{}", load.log_text()))?;
    if !st.success() {
        return Err(format!("loadgen failed ({st}): {}", load.log_text()));
    }
    let phases = rep["phases"].as_array().cloned().unwrap_or_default();
    let mut acks = 0;
    for p in &phases {
        let n = |k: &str| p[k].as_u64().unwrap_or(u64::MAX);
        if n("drops") != 0 || n("naks") != 0 || n("duplicates") != 0 || p["accounted"] != true {
            return Err(format!("DORAs failed during the reloads: {p}"));
        }
        acks += n("acks");
    }
    if acks < 400 {
        return Err(format!("only {acks} ACKs under load: {rep}"));
    }
    xd.proc.check_alive()?;
    let log = xd.stop()?;
    // Zero leases lost: every ACK the clients got is in the table, bound to them.
    let pools = vec![
        lease_store::PoolSpec {
            id: 0,
            first: Ipv4Addr::new(10, 77, 1, 0),
            last: Ipv4Addr::new(10, 77, 4, 255),
        },
        lease_store::PoolSpec {
            id: 1,
            first: Ipv4Addr::new(10, 77, 9, 0),
            last: Ipv4Addr::new(10, 77, 9, 255),
        },
    ];
    let table: HashMap<Ipv4Addr, lease_store::Lease> = read_table(&bed.path("leases.db"), &pools)?
        .into_iter()
        .map(|l| (l.addr, l))
        .collect();
    let mut last: HashMap<String, lease_common::Ack> = HashMap::new();
    for a in AckReader::new(&acked).read_new()? {
        last.insert(a.client.clone(), a);
    }
    for a in last.values() {
        if let Some(why) = ack_problem(&table, a) {
            return Err(format!("lease {} of {} lost: {why}", a.addr, a.client));
        }
    }
    if last.len() < 300 {
        return Err(format!("only {} clients were ACKed", last.len()));
    }
    if log.contains("panicked") {
        return Err(format!("panic in the log:\n{log}"));
    }
    Ok(())
}

// ---------------------------------------------------------------------------------------------
// 2. History of an address that moved between two clients

#[test]
fn daemon_history_address_moved_between_two_clients() {
    run(&[], history_moved);
}

fn history(dir: &Path, ip: Ipv4Addr, at: u32) -> Res<serde_json::Value> {
    let bin = xdhcpd_bin()?;
    let out = output(
        Command::new("timeout")
            .arg("10")
            .arg(&bin)
            .args([
                "ctl",
                "history",
                "--json",
                "--ip",
                &ip.to_string(),
                "--at",
                &at.to_string(),
            ])
            .arg("--dir")
            .arg(dir),
    )?;
    if !out.status.success() {
        return Err(format!("ctl history failed: {}{}", out.stdout, out.stderr));
    }
    serde_json::from_str(&out.stdout).map_err(|e| format!("history JSON: {e}: {}", out.stdout))
}

/// A long-running udhcpc that releases on SIGUSR2; its script logs `bound IP`.
fn udhcpc_bound(bed: &Bed, tag: &str) -> Res<(Proc, Ipv4Addr, PathBuf)> {
    let ev = bed.path(&format!("c-{tag}.events"));
    let script = bed.path(&format!("c-{tag}.sh"));
    write_script(
        &script,
        // Configures the address: udhcpc's RELEASE is unicast from it.
        &format!(
            "#!/bin/sh\ncase \"$1\" in\n  bound|renew) ip addr replace \"$ip/$mask\" dev \"$interface\" || exit 1 ;;\n  \
             deconfig) ip -4 addr flush dev \"$interface\" ;;\nesac\necho \"$1 $ip\" >> '{}'\nexit 0\n",
            ev.display()
        ),
    )?;
    let s = script.to_string_lossy().into_owned();
    let args = [
        "udhcpc",
        "-i",
        bed.cli_if(),
        "-f",
        "-n",
        "-t",
        "5",
        "-T",
        "1",
        "-s",
        &s,
    ];
    let mut p = bed.spawn_client(
        "udhcpc",
        "busybox",
        &args,
        &bed.path(&format!("c-{tag}.log")),
    )?;
    let ip = wait_for("udhcpc bound", Duration::from_secs(20), || {
        p.check_alive()?;
        Ok(read_text(&ev)?
            .lines()
            .find_map(|l| l.strip_prefix("bound ").and_then(|a| a.trim().parse().ok())))
    })?;
    Ok((p, ip, ev))
}

fn history_moved() -> Res<()> {
    let bed = Bed::new(None)?;
    let cfg = bed.path("xdhcpd.toml");
    // One address: the second client can only get the first one's.
    write_file(
        &cfg,
        &config(&bed, "10.77.0.53", 3600, &["10.77.1.10-10.77.1.10"], ""),
    )?;
    let xd = start(&bed, &cfg)?;
    let a = Ipv4Addr::new(10, 77, 1, 10);
    let mac1 = "02:5a:d1:00:00:02";
    let mac2 = "02:5a:d1:00:00:77";

    bed.cli
        .ip(&["link", "set", bed.cli_if(), "address", mac1])
        .map_err(|e| e.to_string())?;
    let dlog = |e: String| {
        format!(
            "{e}\ndaemon log:\n{}",
            read_text(&xd.log).unwrap_or_default()
        )
    };
    let (mut c1, ip1, ev1) = udhcpc_bound(&bed, "1").map_err(|e| dlog(format!("client 1: {e}")))?;
    let t1 = unix_now();
    std::thread::sleep(Duration::from_secs(2));
    c1.signal(libc::SIGUSR2)?; // RELEASE
    wait_for("the release", Duration::from_secs(10), || {
        Ok(read_text(&ev1)?
            .lines()
            .skip(1)
            .any(|l| l.starts_with("deconfig"))
            .then_some(()))
    })?;
    c1.signal(libc::SIGTERM)?;
    c1.wait_exit(Duration::from_secs(5))?;
    std::thread::sleep(Duration::from_secs(2));
    let t_free = unix_now();
    std::thread::sleep(Duration::from_secs(2));

    bed.cli
        .ip(&["link", "set", bed.cli_if(), "address", mac2])
        .map_err(|e| e.to_string())?;
    let (mut c2, ip2, _) = udhcpc_bound(&bed, "2").map_err(|e| dlog(format!("client 2: {e}")))?;
    let t2 = unix_now();
    c2.signal(libc::SIGTERM)?;
    let _ = c2.wait_exit(Duration::from_secs(5));
    if ip1 != a || ip2 != a {
        return Err(format!("the clients got {ip1} and {ip2}, not both {a}"));
    }
    // The writer flushes within half a second.
    std::thread::sleep(Duration::from_millis(1500));
    let dir = bed.path("events");
    let h1 = history(&dir, a, t1)?;
    let hf = history(&dir, a, t_free)?;
    let h2 = history(&dir, a, t2)?;
    let before = history(&dir, a, t1 - 600)?;
    let events = read_text(&dir.join("events.jsonl"))?;
    let who = |h: &serde_json::Value| h["holder"]["mac"].as_str().map(str::to_string);
    if who(&h1).as_deref() != Some(mac1)
        || who(&hf).is_some()
        || hf["last_event"]["event"] != "release"
        || who(&h2).as_deref() != Some(mac2)
        || !before["holder"].is_null()
    {
        return Err(format!(
            "history at {t1}: {h1}\nat {t_free}: {hf}\nat {t2}: {h2}\nbefore: {before}\nevents:\n{events}"
        ));
    }
    // The human answer names the client too.
    let bin = xdhcpd_bin()?;
    let out = output(
        Command::new(&bin)
            .args([
                "ctl",
                "history",
                "--ip",
                "10.77.1.10",
                "--at",
                &t2.to_string(),
                "--dir",
            ])
            .arg(&dir),
    )?;
    if !out.stdout.contains(&format!("held by {mac2}")) {
        return Err(format!("ctl history: {}{}", out.stdout, out.stderr));
    }
    xd.stop()?;
    Ok(())
}

// ---------------------------------------------------------------------------------------------
// 3. SIGHUP in a failover pair

#[test]
fn failover_reload_sighup_keeps_the_pair_normal() {
    run(&[], pair_sighup);
}

fn pair_sighup() -> Res<()> {
    let bed = PairBed::new()?;
    let t = Timers {
        mclt: 30,
        split: None,
    };
    let s = failover_common::xd_sides(&bed, &t)?;
    let mut a = Xd::start(&bed.a, &s.a_cfg, &s.a_db, &s.a_sock, &bed.path("a.log"))?;
    let mut b = Xd::start(&bed.b, &s.b_cfg, &s.b_db, &s.b_sock, &bed.path("b.log"))?;
    a.wait_state("NORMAL", "NORMAL", Duration::from_secs(30))?;
    b.wait_state("NORMAL", "NORMAL", Duration::from_secs(10))?;
    let conns = (
        a.status()?["connections"].clone(),
        b.status()?["connections"].clone(),
    );
    let first = failover_common::dora(&bed, 93, 10, "1")?;
    if first.len() != 10 {
        return Err(format!("ACKs before the reload: {first:?}"));
    }
    // A new DNS server on both sides, reloaded by SIGHUP.
    for (cfg, xd) in [(&s.a_cfg, &mut a), (&s.b_cfg, &mut b)] {
        let text = read_text(cfg)?;
        let text = text.replacen(
            "[[subnet]]\n",
            "[[subnet]]\ndns-servers = [\"10.77.0.99\"]\n",
            1,
        );
        write_file(cfg, &text)?;
        let mark = read_text(&xd.log)?.len();
        xd.proc.signal(libc::SIGHUP)?;
        wait_log(xd, mark, "(configuration generation 1)")?;
    }
    std::thread::sleep(Duration::from_secs(3));
    for (xd, c) in [(&mut a, &conns.0), (&mut b, &conns.1)] {
        xd.proc.check_alive()?;
        let st = xd.status()?;
        if st["state"] != "NORMAL" || st["partner_state"] != "NORMAL" || &st["connections"] != c {
            return Err(format!("after SIGHUP: {st} (connections before {c})"));
        }
    }
    let second = failover_common::dora(&bed, 94, 10, "2")?;
    if second.len() != 10 {
        return Err(format!("ACKs after the reload: {second:?}"));
    }
    a.wait_drained(Duration::from_secs(10))?;
    b.wait_drained(Duration::from_secs(10))?;
    // Up to here (before the planned stop) neither left NORMAL.
    for xd in [&a, &b] {
        let l = read_text(&xd.log)?;
        let after_start = l.split("NORMAL (partner").skip(1).collect::<String>();
        if after_start.contains("COMMUNICATIONS-INTERRUPTED")
            || after_start.contains("PARTNER-DOWN")
            || l.contains("panicked")
        {
            return Err(format!("the pair left NORMAL around the reload:\n{l}"));
        }
    }
    a.stop()?;
    b.stop()?;
    Ok(())
}
