//! Failover pairs in network namespaces (root; see `common/require.rs`):
//! * two xdhcpd on the XDP path: both reach NORMAL, a lease granted by the primary is in the
//!   secondary's table, the primary crashes (SIGKILL), the operator declares it down on the
//!   secondary, which keeps serving, the primary restarts, recovers (RECOVER... -> NORMAL),
//!   and the tables converge;
//! * interop with ISC dhcpd 4.4 in both roles: both reach NORMAL, leases granted by either
//!   side are in the other's lease data, restarting either side returns to NORMAL.
//!
//! Topology: server A (10.77.0.1), server B (10.77.0.3) and a client namespace, joined by a
//! bridge in a fourth namespace. Clients come from `xdhcp-loadgen` (AF_PACKET).

#[path = "common/netns.rs"]
mod netns;

#[path = "common/require.rs"]
mod require;

#[path = "daemon_common/mod.rs"]
mod daemon_common;

#[path = "failover_common/mod.rs"]
mod failover_common;

use std::time::Duration;

use daemon_common::{final_counters, read_table, unix_now, write_file, Res};
use failover_common::*;
use require::{require, Capability};

#[test]
fn xdhcpd_pair_serves_survives_a_crash_and_converges() {
    if !require(&[
        Capability::Root,
        Capability::Program("timeout"),
        Capability::Program("ip"),
    ]) {
        return;
    }
    if let Err(e) = pair_scenario() {
        panic!("{e}");
    }
}

fn pair_scenario() -> Res<()> {
    let bed = PairBed::new()?;
    let t = Timers {
        mclt: 30,
        split: None,
    };
    let s = xd_sides(&bed, &t)?;
    let mut a = Xd::start(&bed.a, &s.a_cfg, &s.a_db, &s.a_sock, &bed.path("a.log"))?;
    let mut b = Xd::start(&bed.b, &s.b_cfg, &s.b_db, &s.b_sock, &bed.path("b.log"))?;
    a.wait_state("NORMAL", "NORMAL", Duration::from_secs(30))?;
    b.wait_state("NORMAL", "NORMAL", Duration::from_secs(10))?;
    // Both versions are shown; the same software warns nothing; the round trip is measured.
    let st = a.status()?;
    assert!(
        st["version"]
            .as_str()
            .is_some_and(|v| v.starts_with("xdhcpd-"))
            && st["partner_version"] == st["version"]
            && st["version_mismatch"] == false
            && st["partner_rtt_ms"].is_number(),
        "{st}"
    );
    let startup = std::fs::read_to_string(&a.log).unwrap_or_default();
    assert!(
        startup.contains("failover: role=primary") && startup.contains("mclt=30"),
        "startup line missing:\n{startup}"
    );

    // The backup's main loop switches XDP to standby within ~100 ms of NORMAL; phase 1's
    // DISCOVERs must come after that for the drop count checked in phase 2 to be meaningful.
    daemon_common::wait_for("backup to enter standby", Duration::from_secs(5), || {
        let log = std::fs::read_to_string(&b.log).unwrap_or_default();
        Ok(log.contains("failover standby: DISCOVER").then_some(()))
    })
    .map_err(|e| {
        let log = std::fs::read_to_string(&b.log).unwrap_or_default();
        format!("{e} (the backup never switched XDP to standby):\n{log}")
    })?;

    // 1. The primary serves; its leases reach the secondary's table.
    let first = dora(&bed, 97, 10, "1")?;
    assert_eq!(first.len(), 10, "phase 1 ACKs: {first:?}");
    a.wait_drained(Duration::from_secs(10))?;
    check_acked_bound(
        &table_snapshot(&b, &bed, "b1")?,
        &first,
        "secondary after phase 1",
    )?;
    check_acked_bound(
        &table_snapshot(&a, &bed, "a1")?,
        &first,
        "primary after phase 1",
    )?;
    let st = a.status()?;
    assert!(st["bndack_received"].as_u64().unwrap_or(0) >= 10, "{st}");
    assert!(st["mean_update_ack_latency_ms"].is_number(), "{st}");
    // `/metrics` of the control API shows the pair: both states, the link, the update queue,
    // the BNDACKs and their latency.
    let m = xdhcpd::api::client::call(
        &xdhcpd::api::client::Endpoint::Unix(a.socket.clone()),
        "GET",
        "/metrics",
        None,
    )
    .map_err(|e| format!("GET /metrics: {e:#}"))?;
    let m = String::from_utf8_lossy(&m.body).into_owned();
    let value = |series: &str| -> Option<f64> {
        m.lines()
            .find_map(|l| l.strip_prefix(series)?.strip_prefix(' '))
            .and_then(|v| v.trim().parse().ok())
    };
    assert_eq!(
        value("xdhcpd_failover_state{state=\"NORMAL\"}"),
        Some(1.0),
        "{m}"
    );
    assert_eq!(
        value("xdhcpd_failover_state{state=\"PARTNER-DOWN\"}"),
        Some(0.0),
        "{m}"
    );
    assert_eq!(
        value("xdhcpd_failover_partner_state{state=\"NORMAL\"}"),
        Some(1.0),
        "{m}"
    );
    assert_eq!(value("xdhcpd_failover_connected"), Some(1.0), "{m}");
    assert_eq!(value("xdhcpd_failover_updates_pending"), Some(0.0), "{m}");
    assert!(
        value("xdhcpd_failover_bndack_received_total").is_some_and(|v| v >= 10.0),
        "{m}"
    );
    assert!(
        value("xdhcpd_failover_update_ack_latency_seconds").is_some_and(|v| v > 0.0),
        "{m}"
    );
    assert!(
        value("xdhcpd_failover_rebalance_moves_total{direction=\"granted\"}").is_some(),
        "{m}"
    );

    // 2. The primary crashes; the operator declares it down; the secondary serves.
    a.kill()?;
    wait_partner_lost(&mut b)?;
    // Standby ends with NORMAL (else phase 2 could not be served), reporting its drops: at
    // least the 10 DISCOVERs of phase 1.
    daemon_common::wait_for("backup to leave standby", Duration::from_secs(5), || {
        let log = std::fs::read_to_string(&b.log).unwrap_or_default();
        Ok(log
            .lines()
            .filter_map(|l| l.split("reaches the server (").nth(1))
            .next_back()
            .and_then(|r| r.split(' ').next()?.parse::<u64>().ok())
            .map(|n| assert!(n >= 10, "standby dropped only {n} in XDP:\n{log}")))
    })?;
    let msg = ctl(&b.socket, &["partner-down", "--since", "-1s"])?;
    assert!(msg.contains("PARTNER-DOWN"), "{msg}");
    let second = dora(&bed, 98, 10, "2")?;
    assert_eq!(
        second.len(),
        10,
        "phase 2 (secondary in PARTNER-DOWN) ACKs: {second:?}"
    );
    check_acked_bound(
        &table_snapshot(&b, &bed, "b2")?,
        &second,
        "secondary in PARTNER-DOWN",
    )?;

    // 3. The primary restarts from its lease file, learns what it missed, recovers.
    let mut a = Xd::start(&bed.a, &s.a_cfg, &s.a_db, &s.a_sock, &bed.path("a2.log"))?;
    daemon_common::wait_for(
        "primary to pull the partner's bindings",
        Duration::from_secs(20),
        || {
            let st = a.status()?;
            Ok(matches!(
                st["state"].as_str(),
                Some("RECOVER-WAIT" | "RECOVER-DONE" | "NORMAL")
            )
            .then_some(()))
        },
    )?;
    check_acked_bound(
        &table_snapshot(&a, &bed, "a3")?,
        &second,
        "restarted primary",
    )?;
    a.wait_state("NORMAL", "NORMAL", Duration::from_secs(t.mclt as u64 + 20))?;
    b.wait_state("NORMAL", "NORMAL", Duration::from_secs(10))?;
    let log = std::fs::read_to_string(&a.log).unwrap_or_default();
    assert!(
        (log.contains("STARTUP -> RECOVER") || log.contains("STARTUP -> POTENTIAL-CONFLICT"))
            && log.contains("-> NORMAL"),
        "restart path not logged:\n{log}"
    );

    // 4. Serving again through the primary; then both tables hold the same bindings.
    let third = dora(&bed, 99, 10, "3")?;
    assert_eq!(third.len(), 10, "phase 3 ACKs: {third:?}");
    a.wait_drained(Duration::from_secs(10))?;
    b.wait_drained(Duration::from_secs(10))?;
    let a_log = a.stop()?;
    let b_log = b.stop()?;
    assert!(
        a_log.contains("stopped in SHUTDOWN"),
        "graceful stop:\n{a_log}"
    );
    assert!(
        b_log.contains("partner now SHUTDOWN"),
        "partner saw no SHUTDOWN:\n{b_log}"
    );
    let ta = read_table(&s.a_db, &pair_pools())?;
    let tb = read_table(&s.b_db, &pair_pools())?;
    check_acked_bound(&ta, &third, "primary at the end")?;
    check_acked_bound(&tb, &third, "secondary at the end")?;
    let at = unix_now() + 1;
    let (aa, ab) = (active_bindings(&ta, at), active_bindings(&tb, at));
    assert_eq!(aa, ab, "active bindings differ between the partners");
    assert!(aa.len() >= 10);
    Ok(())
}

fn wait_partner_lost(b: &mut Xd) -> Res<()> {
    daemon_common::wait_for(
        "secondary to lose its partner",
        Duration::from_secs(15),
        || {
            let st = b.status()?;
            Ok((st["state"] == "COMMUNICATIONS-INTERRUPTED").then_some(()))
        },
    )
}

// ---------------------------------------------------------------------------------------------
// ISC dhcpd interop

/// Which side ISC dhcpd plays.
#[derive(Clone, Copy, PartialEq, Eq, Debug)]
enum IscRole {
    Primary,
    Secondary,
}

/// The ISC interop tests run ISC dhcpd (Debian's isc-dhcp-server) as the partner.
const ISC_NEEDS: [Capability; 4] = [
    Capability::Root,
    Capability::Program("timeout"),
    Capability::Program("ip"),
    Capability::Program("dhcpd"),
];

#[test]
fn isc_interop_xdhcpd_primary() {
    if !require(&ISC_NEEDS) {
        return;
    }
    if let Err(e) = isc_scenario(IscRole::Secondary) {
        panic!("{e}");
    }
}

#[test]
fn isc_interop_xdhcpd_secondary() {
    if !require(&ISC_NEEDS) {
        return;
    }
    if let Err(e) = isc_scenario(IscRole::Primary) {
        panic!("{e}");
    }
}

fn isc_scenario(isc_role: IscRole) -> Res<()> {
    let bed = PairBed::new()?;
    let t = Timers {
        mclt: 20,
        split: Some(128),
    };
    // ISC dhcpd has no authentication: plain TCP with the address allowlist.
    let s = xd_sides_with(&bed, &t, |_, c| for_isc_partner(&c))?;
    let isc_conf = bed.path("isc.conf");
    let isc_leases = bed.path("isc.leases");
    // xdhcpd runs on the side ISC does not.
    let (xd_ns, xd_cfg, xd_db, xd_sock, isc_ns, isc_if, isc_me, isc_peer) = match isc_role {
        IscRole::Secondary => (
            &bed.a,
            &s.a_cfg,
            &s.a_db,
            &s.a_sock,
            &bed.b,
            bed.lb.a.clone(),
            B_ADDR,
            A_ADDR,
        ),
        IscRole::Primary => (
            &bed.b,
            &s.b_cfg,
            &s.b_db,
            &s.b_sock,
            &bed.a,
            bed.la.a.clone(),
            A_ADDR,
            B_ADDR,
        ),
    };
    write_file(
        &isc_conf,
        &isc_config(isc_me, isc_peer, isc_role == IscRole::Primary, &t),
    )?;
    let mut isc = Isc::start(
        isc_ns,
        &isc_if,
        &isc_conf,
        &isc_leases,
        &bed.path("isc.log"),
    )?;
    let mut xd = Xd::start(xd_ns, xd_cfg, xd_db, xd_sock, &bed.path("xd.log"))?;
    xd.wait_state("NORMAL", "NORMAL", Duration::from_secs(40))?;
    isc.wait_normal(1, Duration::from_secs(20))?;
    // ISC's vendor-class is shown next to ours, and the mismatch is warned.
    let st = xd.status()?;
    assert!(
        st["partner_version"]
            .as_str()
            .is_some_and(|v| !v.starts_with("xdhcpd-"))
            && st["version_mismatch"] == true
            && st["partner_rtt_ms"].is_number(),
        "{st}"
    );

    // Load balancing (split 128): some clients are served by each partner.
    let acked = dora(&bed, 97, 24, "1")?;
    assert!(
        acked.len() >= 20,
        "ACKs: {acked:?}\nISC log:\n{}",
        isc.proc.log_text()
    );
    xd.wait_drained(Duration::from_secs(15))?;
    // Both partners hold every ACKed lease: xdhcpd's table (ISC's grants arrive by BNDUPD)
    // and ISC's lease file (xdhcpd's grants by BNDUPD, written by ISC).
    let mut last = String::new();
    daemon_common::wait_for(
        "both partners to hold every ACKed lease",
        Duration::from_secs(15),
        || {
            let held = table_snapshot(&xd, &bed, "x1")
                .and_then(|table| check_acked_bound(&table, &acked, "xdhcpd"))
                .and_then(|()| isc_holds_active(&isc_leases, &acked));
            Ok(match held {
                Ok(()) => Some(()),
                Err(e) => {
                    last = e;
                    None
                }
            })
        },
    )
    .map_err(|e| format!("{e}: {last}"))?;
    let isc_log = std::fs::read_to_string(&isc.log).unwrap_or_default();
    let by_isc = acked
        .iter()
        .filter(|a| isc_log.contains(&format!("DHCPACK on {} to {}", a.addr, mac_str(&a.mac))))
        .count();
    assert!(
        by_isc > 0,
        "load balancing should split the clients: ISC acked none of {}",
        acked.len()
    );

    // Restart ISC: back to NORMAL.
    isc.stop()?;
    let mut isc = Isc::start(
        isc_ns,
        &isc_if,
        &isc_conf,
        &isc_leases,
        &bed.path("isc2.log"),
    )?;
    isc.wait_normal(1, Duration::from_secs(40))?;
    xd.wait_state("NORMAL", "NORMAL", Duration::from_secs(20))?;
    // Reconnected to the same ISC version: the mismatch was warned once, not per connection.
    let xd_log = std::fs::read_to_string(&xd.log).unwrap_or_default();
    let warnings = xd_log.matches("failover: the partner runs").count();
    assert!(
        warnings == 1 && xd.status()?["connections"].as_u64().unwrap_or(0) >= 2,
        "{warnings} version warnings:\n{xd_log}"
    );

    // Restart xdhcpd (graceful: ISC goes PARTNER-DOWN; we recover and wait MCLT). Its own
    // ACK counter shows it served its share of the load-balanced clients too.
    let xd_log = xd.stop()?;
    let (engine, _) = final_counters(&xd_log)?;
    let by_xd = engine.get("acks").copied().unwrap_or(0);
    assert!(
        by_xd > 0,
        "load balancing should split the clients: xdhcpd acked none (ISC {by_isc} of {})",
        acked.len()
    );
    let mut xd = Xd::start(xd_ns, xd_cfg, xd_db, xd_sock, &bed.path("xd2.log"))?;
    xd.wait_state("NORMAL", "NORMAL", Duration::from_secs(t.mclt as u64 + 40))?;
    isc.wait_normal(2, Duration::from_secs(20))?;
    xd.wait_drained(Duration::from_secs(20))?;
    xd.stop()?;
    isc.stop()?;
    // ISC checks each BNDACK's xid against the last BNDUPD it sent for that lease (issue 15
    // item 6): every log of both ISC runs, across both restarts.
    let mut mismatches = Vec::new();
    for f in ["isc.log", "isc2.log"] {
        let text = std::fs::read_to_string(bed.path(f)).unwrap_or_default();
        mismatches.extend(
            text.lines()
                .filter(|l| l.contains("xid mismatch"))
                .map(|l| format!("{f}: {l}")),
        );
    }
    println!(
        "ISC dhcpd {isc_role:?}: {} \"xid mismatch\" line(s)",
        mismatches.len()
    );
    assert!(
        mismatches.is_empty(),
        "ISC logged {} xid mismatch(es):\n{}",
        mismatches.len(),
        mismatches.join("\n")
    );
    Ok(())
}

/// Every ACK in `acked` is an active lease of the same client in ISC's lease file.
fn isc_holds_active(leases: &std::path::Path, acked: &[Acked]) -> Res<()> {
    let view = failover_common::isc_leases(leases)?;
    for a in acked {
        match view.get(&a.addr) {
            Some((state, hw)) if state == "active" && *hw == mac_str(&a.mac) => {}
            other => {
                return Err(format!(
                    "ISC lease file: {} for {} is {other:?}, expected active",
                    a.addr,
                    mac_str(&a.mac)
                ))
            }
        }
    }
    Ok(())
}
