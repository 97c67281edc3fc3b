//! Server-initiated reconfiguration across failover and restarts (issue 16, items 1-2), in
//! network namespaces with real peers (root; see `common/require.rs`):
//!
//! * an xdhcpd pair (XDP, ack mode): dhcpcd holds a lease; the operator moves its class to
//!   the other pool on both servers and starts a `deferred-nak` campaign on the primary;
//!   dhcpcd ignores the FORCERENEW (unauthenticated, and dhcpcd requires authentication), so
//!   the campaign aborts with the flag kept, and the flag travels to the secondary in a
//!   binding update. The primary is killed; dhcpcd's renewal reaches the secondary, which
//!   NAKs it (the flag it received), and dhcpcd ends with an address from the new pool,
//!   given by the secondary;
//! * one server, clients behind a relay (the load generator in relay mode, `--scenario
//!   forcerenew`, RFC 6704 keys): the clients bind, the server restarts with the class moved,
//!   and a campaign started after the restart reaches every relayed client through its relay
//!   with the xid of its last exchange (both kept in `<lease file>.reconf`): all renew, are
//!   NAKed and end in the new pool.

#[path = "common/netns.rs"]
mod netns;

#[path = "common/require.rs"]
mod require;

#[path = "daemon_common/mod.rs"]
mod daemon_common;

#[path = "failover_common/mod.rs"]
mod failover_common;

use std::net::Ipv4Addr;
use std::path::Path;
use std::time::{Duration, Instant};

use daemon_common::{
    loadgen_bin, output, read_text, wait_for, write_file, xdhcpd_bin, Bed, Daemon, Io, Res,
    SRV_ADDR,
};
use failover_common::{auth_line, PairBed, Xd, A_ADDR, B_ADDR};
use require::{require, Capability};

/// `xdhcpd ctl --socket SOCK ARGS`, checked; stdout.
fn ctl(sock: &Path, args: &[&str]) -> Res<String> {
    let bin = xdhcpd_bin()?;
    let mut all = vec![
        "20".to_string(),
        bin.to_string_lossy().into_owned(),
        "ctl".into(),
        "--socket".into(),
        sock.to_string_lossy().into_owned(),
    ];
    all.extend(args.iter().map(|s| s.to_string()));
    let out = output(std::process::Command::new("timeout").args(&all))?;
    if !out.status.success() {
        return Err(format!("xdhcpd ctl {args:?}: {}{}", out.stdout, out.stderr));
    }
    Ok(out.stdout)
}

fn status(sock: &Path) -> Res<serde_json::Value> {
    let text = ctl(sock, &["reconfigure", "--status"])?;
    serde_json::from_str(&text).map_err(|e| format!("reconfigure status {text:?}: {e}"))
}

fn count(v: &serde_json::Value, k: &str) -> u64 {
    v.get(k).and_then(|x| x.as_u64()).unwrap_or(u64::MAX)
}

/// Addresses dhcpcd reported as leased, in order.
fn leased(log: &str) -> Vec<Ipv4Addr> {
    log.lines()
        .filter_map(|l| l.split("leased ").nth(1))
        .filter_map(|r| r.split_whitespace().next())
        .filter_map(|a| a.parse().ok())
        .collect()
}

const DHCPCD_MAC: &str = "02:5a:d1:00:00:02";
const SECRET: &str = "00112233445566778899aabbccddeeff";

fn in_new_pool(a: Ipv4Addr) -> bool {
    let o = a.octets();
    o[..3] == [10, 77, 2] && (10..=59).contains(&o[3])
}

/// One side of the pair: two pools, class `moved` (dhcpcd's MAC prefix when `moved`) only
/// in the second; short leases (dhcpcd renews at 10 s, rebinds at 17.5 s).
#[allow(clippy::too_many_arguments)]
fn pair_config(
    iface: &str,
    me: &str,
    peer: &str,
    primary: bool,
    lease_file: &Path,
    socket: &Path,
    moved: bool,
) -> String {
    let prefix = if moved { "02:5a:d1" } else { "aa:bb:cc" };
    format!(
        "[server]\ninterface = \"{iface}\"\nio = \"xdp\"\nserver-id = \"{me}\"\n\
         lease-file = \"{}\"\ncommit = \"ack\"\ncontrol-socket = \"{}\"\n\n\
         [lease]\ndefault-time = 20\nmin-time = 10\nmax-time = 20\noffer-hold = 10\n\n\
         [reconfigure]\nsecret = \"{SECRET}\"\nnonce = false\nallow-unauthenticated = true\n\
         deferred-nak = true\nretries = 2\nfirst-retry-ms = 300\nrate = 0\n\n\
         [[class]]\nname = \"moved\"\nhw-prefix = \"{prefix}\"\n\n\
         [[subnet]]\ncidr = \"10.77.0.0/16\"\nrouter = [\"{A_ADDR}\"]\n\n\
         [[subnet.pool]]\nrange = \"10.77.1.10-10.77.1.59\"\ndeny = [\"moved\"]\n\n\
         [[subnet.pool]]\nrange = \"10.77.2.10-10.77.2.59\"\nallow = [\"moved\"]\n\n\
         [failover]\nrole = \"{}\"\nname = \"pair\"\naddress = \"{me}\"\nport = 647\n\
         peer-address = \"{peer}\"\npeer-port = 647\nmclt = 60\npoll-interval = 2\n\
         poll-timeout = 8\nuse-safe-period = false\nbackup-pct = 50\n{}",
        lease_file.display(),
        socket.display(),
        if primary { "primary" } else { "secondary" },
        auth_line(lease_file.parent().unwrap_or(Path::new("/tmp"))),
    )
}

fn deferred_nak_across_failover() -> Res<()> {
    let bed = PairBed::new()?;
    bed.c
        .ip(&["link", "set", &bed.lc.a, "address", DHCPCD_MAC])
        .map_err(|e| e.to_string())?;
    let (a_db, b_db) = (bed.path("a.db"), bed.path("b.db"));
    let (a_sock, b_sock) = (bed.path("a.sock"), bed.path("b.sock"));
    let (a_cfg, b_cfg) = (bed.path("a.toml"), bed.path("b.toml"));
    let write = |moved: bool| -> Res<()> {
        write_file(
            &a_cfg,
            &pair_config(&bed.la.a, A_ADDR, B_ADDR, true, &a_db, &a_sock, moved),
        )?;
        write_file(
            &b_cfg,
            &pair_config(&bed.lb.a, B_ADDR, A_ADDR, false, &b_db, &b_sock, moved),
        )
    };
    write(false)?;
    let mut a = Xd::start(&bed.a, &a_cfg, &a_db, &a_sock, &bed.path("a.log"))?;
    let mut b = Xd::start(&bed.b, &b_cfg, &b_db, &b_sock, &bed.path("b.log"))?;
    a.wait_state("NORMAL", "NORMAL", Duration::from_secs(40))?;
    b.wait_state("NORMAL", "NORMAL", Duration::from_secs(10))?;

    let conf = bed.path("dhcpcd.conf");
    // No hooks (the namespaces share /etc with the host), IPv4 only, no ARP probe. No
    // `noauthrequired`: dhcpcd drops an unauthenticated FORCERENEW.
    write_file(&conf, "ipv4only\nnoarp\nnoipv4ll\nscript /bin/true\n")?;
    let log = bed.path("dhcpcd.log");
    let lease_file = format!("/var/lib/dhcpcd/{}.lease", bed.lc.a);
    let _ = std::fs::remove_file(&lease_file);
    let conf_s = conf.to_string_lossy().into_owned();
    let mut client = daemon_common::Proc::spawn(
        "dhcpcd",
        bed.c
            .command("timeout")
            .args(["120", "dhcpcd", "-4", "-B", "-d", "-f", &conf_s, &bed.lc.a]),
        &log,
    )?;
    let result = (|| -> Res<()> {
        let first = wait_for("dhcpcd's first lease", Duration::from_secs(30), || {
            client.check_alive()?;
            Ok(leased(&read_text(&log)?).first().copied())
        })?;
        if in_new_pool(first) {
            return Err(format!("first lease {first} already in the new pool"));
        }
        // Both servers know the binding before the campaign.
        a.wait_drained(Duration::from_secs(10))?;
        b.wait_drained(Duration::from_secs(10))?;
        // The campaign on the primary.
        let first_s = first.to_string();
        let answer = ctl(&a_sock, &["reconfigure", "--ip", &first_s])?;
        let v: serde_json::Value =
            serde_json::from_str(&answer).map_err(|e| format!("{answer:?}: {e}"))?;
        if count(&v, "matched") != 1 {
            return Err(format!("reconfigure matched: {answer}"));
        }
        // 2 sends (0, 0.3 s), aborted at 0.9 s with the flag kept.
        let st = wait_for(
            "the primary's campaign to abort",
            Duration::from_secs(10),
            || {
                let s = status(&a_sock)?;
                Ok((count(&s, "aborted") == 1).then_some(s))
            },
        )?;
        if count(&st, "sent") != 2 || count(&st, "succeeded") != 0 {
            return Err(format!("primary's counters after the abort: {st}"));
        }
        // The flag reached the secondary (binding update acknowledged).
        a.wait_drained(Duration::from_secs(10))?;
        // Renumber on both servers (the client's class now draws from the new pool).
        write(true)?;
        ctl(&a_sock, &["reload"])?;
        ctl(&b_sock, &["reload"])?;
        if leased(&read_text(&log)?).len() != 1 {
            return Err(format!(
                "dhcpcd renewed on the unauthenticated FORCERENEW:\n{}",
                read_text(&log)?
            ));
        }
        let t0 = Instant::now();
        a.kill()?;
        // dhcpcd renews (10 s) or rebinds (17.5 s) to the secondary: NAK, then a new lease.
        let moved = wait_for(
            "dhcpcd's lease in the new pool",
            Duration::from_secs(40),
            || {
                client.check_alive()?;
                b.proc.check_alive()?;
                Ok(leased(&read_text(&log)?)
                    .into_iter()
                    .find(|a| in_new_pool(*a)))
            },
        )?;
        let text = read_text(&log)?;
        let nak_from_b = text
            .lines()
            .any(|l| l.contains("NAK") && l.contains(B_ADDR));
        if !nak_from_b {
            return Err(format!(
                "no NAK from the secondary in dhcpcd's log:\n{text}"
            ));
        }
        let metrics = ctl(&b_sock, &["metrics"])?;
        let want = "xdhcpd_reconfigure_client_events_total{event=\"nak\"} 1";
        if !metrics.contains(want) {
            return Err(format!("secondary's /metrics lacks {want}:\n{metrics}"));
        }
        eprintln!(
            "reconfigure across failover: {first} -> {moved}, {:.1} s after the primary was \
             killed (NAK by the secondary)",
            t0.elapsed().as_secs_f64()
        );
        Ok(())
    })();
    drop(client);
    let _ = std::fs::remove_file(&lease_file);
    match result {
        Ok(()) => {
            b.stop()?;
            Ok(())
        }
        Err(e) => Err(format!(
            "{e}\n--- dhcpcd log:\n{}\n--- primary log:\n{}\n--- secondary log:\n{}",
            read_text(&log).unwrap_or_default(),
            read_text(&bed.path("a.log")).unwrap_or_default(),
            b.proc.log_text()
        )),
    }
}

#[test]
fn reconfigure_failover_deferred_nak_secondary_naks_after_primary_killed_ns() {
    if !require(&[
        Capability::Root,
        Capability::Program("dhcpcd"),
        Capability::Program("timeout"),
        Capability::Program("ip"),
    ]) {
        return;
    }
    if let Err(e) = deferred_nak_across_failover() {
        panic!("{e}");
    }
}

// -------------------------------------------------------------------------------------------
// Relayed clients reconfigured after a restart

const RELAY: &str = "10.77.0.50";
const CLIENTS: u32 = 6;

/// One server behind relay RELAY; class `moved` (the load generator's MACs, 02:4c:..)
/// draws from the second pool only when `moved`.
fn relay_config(bed: &Bed, moved: bool) -> String {
    let prefix = if moved { "02:4c" } else { "aa:bb" };
    format!(
        "[server]\ninterface = \"{ifc}\"\nio = \"udp\"\nserver-id = \"{SRV_ADDR}\"\n\
         lease-file = \"{lf}\"\ncontrol-socket = \"{sock}\"\ntrusted-relays = [\"{RELAY}\"]\n\n\
         [lease]\ndefault-time = 3600\nmin-time = 60\nmax-time = 86400\n\n\
         [reconfigure]\nsecret = \"{SECRET}\"\nretries = 4\nfirst-retry-ms = 500\nrate = 0\n\n\
         [[class]]\nname = \"moved\"\nhw-prefix = \"{prefix}\"\n\n\
         [[subnet]]\ncidr = \"10.77.0.0/16\"\nrouter = [\"{SRV_ADDR}\"]\n\n\
         [[subnet.pool]]\nrange = \"10.77.1.10-10.77.1.59\"\ndeny = [\"moved\"]\n\n\
         [[subnet.pool]]\nrange = \"10.77.2.10-10.77.2.59\"\nallow = [\"moved\"]\n",
        ifc = bed.srv_if(),
        lf = bed.path("leases.db").display(),
        sock = bed.path("ctl.sock").display(),
    )
}

fn relayed_after_restart() -> Res<()> {
    // The relay's address on the client side: the server's FORCERENEW to giaddr:67 is
    // resolved by ARP like any relay's.
    let bed = Bed::new(Some(&format!("{RELAY}/16")))?;
    let cfg = bed.path("xdhcpd.toml");
    write_file(&cfg, &relay_config(&bed, false))?;
    let daemon = Daemon::start(&bed, &cfg, Io::Udp)?;
    let lg = loadgen_bin()?;
    let ready = bed.path("lg.ready");
    let json = bed.path("lg.json");
    let n = CLIENTS.to_string();
    let lg_log = bed.path("loadgen.log");
    let mut gen = daemon_common::Proc::spawn(
        "xdhcp-loadgen",
        bed.cli.command("timeout").args([
            "90",
            &lg.to_string_lossy(),
            "-i",
            bed.cli_if(),
            "--io",
            "packet",
            "--relay",
            RELAY,
            "--server",
            SRV_ADDR,
            "--scenario",
            "forcerenew",
            "--clients",
            &n,
            "--count",
            &n,
            "--duration",
            "60s",
            "--timeout-ms",
            "1000",
            "--retries",
            "3",
            "--pool",
            "10.77.2.0/24",
            "--ready-file",
            &ready.to_string_lossy(),
            "--json",
            &json.to_string_lossy(),
            "--quiet",
        ]),
        &lg_log,
    )?;
    let result = (|| -> Res<serde_json::Value> {
        wait_for(
            "the clients' leases (warm-up)",
            Duration::from_secs(30),
            || {
                gen.check_alive()?;
                Ok(ready.exists().then_some(()))
            },
        )?;
        // Restart with the class moved: the book of xids and relays is all that tells the new
        // process where each client is and which xid it accepts.
        let fin = daemon.stop()?;
        if !fin.log.contains("serving ") {
            return Err("first run did not serve".into());
        }
        if !bed.path("leases.db.reconf").exists() {
            return Err("no leases.db.reconf beside the lease file".into());
        }
        write_file(&cfg, &relay_config(&bed, true))?;
        let daemon = Daemon::start(&bed, &cfg, Io::Udp)?;
        let sock = bed.path("ctl.sock");
        let answer = ctl(&sock, &["reconfigure", "--all"])?;
        let v: serde_json::Value =
            serde_json::from_str(&answer).map_err(|e| format!("{answer:?}: {e}"))?;
        if count(&v, "matched") != u64::from(CLIENTS) {
            return Err(format!("reconfigure --all matched: {answer}"));
        }
        let st = gen.wait_exit(Duration::from_secs(60))?;
        let report: serde_json::Value = serde_json::from_str(&read_text(&json)?)
            .map_err(|e| format!("loadgen JSON: {e} (exit {st})"))?;
        let s = wait_for(
            "the campaign to see every answer",
            Duration::from_secs(10),
            || {
                let s = status(&sock)?;
                Ok((count(&s, "succeeded") == u64::from(CLIENTS)).then_some(s))
            },
        );
        let log = daemon.log_text();
        daemon.stop()?;
        let s = s.map_err(|e| format!("{e}\n{log}"))?;
        if !log.contains(&format!("to {RELAY}:67")) {
            return Err(format!(
                "no FORCERENEW through the relay in the log:\n{log}"
            ));
        }
        Ok(serde_json::json!({ "loadgen": report, "server": s }))
    })();
    let out = match result {
        Ok(v) => v,
        Err(e) => {
            return Err(format!(
                "{e}\n--- loadgen log:\n{}",
                read_text(&lg_log).unwrap_or_default()
            ))
        }
    };
    let r = &out["loadgen"]["reconfigure"];
    let n = u64::from(CLIENTS);
    if r["verified"].as_u64().unwrap_or(0) < n {
        return Err(format!(
            "loadgen verified fewer FORCERENEWs than clients: {out}"
        ));
    }
    for (k, want) in [
        ("completed", n),
        ("lost", 0),
        ("unfinished", 0),
        ("not_reached", 0),
        ("addresses_held_twice", 0),
    ] {
        if r[k].as_u64() != Some(want) {
            return Err(format!(
                "loadgen reconfigure.{k} = {}, want {want}: {out}",
                r[k]
            ));
        }
    }
    let in_new = out["loadgen"]["pools"][0]["clients"].as_u64();
    if in_new != Some(n) {
        return Err(format!(
            "clients in the new pool: {in_new:?}, want {n}: {out}"
        ));
    }
    eprintln!(
        "relayed clients reconfigured after a restart: {}",
        out["server"]
    );
    Ok(())
}

#[test]
fn reconfigure_forcerenew_relayed_client_after_restart_ns() {
    if !require(&[
        Capability::Root,
        Capability::Program("timeout"),
        Capability::Program("ip"),
    ]) {
        return;
    }
    if let Err(e) = relayed_after_restart() {
        panic!("{e}");
    }
}
