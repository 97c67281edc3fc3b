//! Binding updates to ISC dhcpd keep up with the client rate (issue 15, item 6): xdhcpd and
//! ISC dhcpd 4.4 (the common `max-unacked-updates 10`) in either role, default xdhcpd
//! settings, clients arriving at a steady rate (ISC as primary balances them, `split 128`, so
//! xdhcpd serves half). ISC acknowledges only when its pending acks
//! reach half the max-unacked-updates *we* advertised, else on a 2 s timer: with our default
//! (1000) against ISC's window of 10 that was 5 updates/s, the queue grew with every client
//! and the ack latency passed 9 s.
//!
//! Asserted while the load runs and after it: every client got its ACK, `bindings_pending`
//! (queued, not yet sent) never exceeded one second of arrivals, every update was
//! acknowledged within seconds after the load, the mean queue-to-ack latency of the load's
//! updates stayed under 1 s, and ISC's lease file holds every client's lease.
//!
//! Needs root and ISC dhcpd (the test policy in README "Tests": missing ones fail the run
//! unless `XDHCPD_SKIP_NETNS=1` asks to skip). The 2,000-client runs (10 s of traffic each, at
//! 200/s) are ignored by default: `cargo test --release -p xdhcpd --test failover_isc_rate -- --ignored --nocapture`.

#[path = "common/netns.rs"]
mod netns;

#[path = "daemon_common/mod.rs"]
mod daemon_common;

#[path = "failover_common/mod.rs"]
mod failover_common;

#[path = "common/require.rs"]
mod require;

use std::process::Stdio;
use std::time::{Duration, Instant};

use daemon_common::{read_text, write_file, Res};
use failover_common::*;
use require::{require, Capability};

/// 2,560 addresses: the primary keeps 2,304 after granting ISC its 10 %.
const RANGE_FIRST: &str = "10.77.1.0";
const RANGE_LAST: &str = "10.77.10.255";

const ISC_NEEDS: [Capability; 4] = [
    Capability::Root,
    Capability::Program("timeout"),
    Capability::Program("ip"),
    Capability::Program("dhcpd"),
];

/// Which side ISC dhcpd plays.
#[derive(Clone, Copy, PartialEq, Eq, Debug)]
enum IscRole {
    Primary,
    Secondary,
}

#[test]
fn isc_secondary_keeps_up_300_clients_at_100_per_s() {
    if !require(&ISC_NEEDS) {
        return;
    }
    if let Err(e) = run(IscRole::Secondary, 300, 100) {
        panic!("{e}");
    }
}

#[test]
fn isc_primary_keeps_up_300_clients_at_100_per_s() {
    if !require(&ISC_NEEDS) {
        return;
    }
    if let Err(e) = run(IscRole::Primary, 300, 100) {
        panic!("{e}");
    }
}

#[test]
#[ignore = "10 s of traffic: run with --ignored"]
fn isc_secondary_keeps_up_2000_clients_at_200_per_s() {
    if !require(&ISC_NEEDS) {
        return;
    }
    if let Err(e) = run(IscRole::Secondary, 2_000, 200) {
        panic!("{e}");
    }
}

#[test]
#[ignore = "10 s of traffic: run with --ignored"]
fn isc_primary_keeps_up_2000_clients_at_200_per_s() {
    if !require(&ISC_NEEDS) {
        return;
    }
    if let Err(e) = run(IscRole::Primary, 2_000, 200) {
        panic!("{e}");
    }
}

/// Mean queue-to-ack latency (ms) and acknowledged count from a status.
fn ack_figures(st: &serde_json::Value) -> (f64, u64) {
    (
        st["mean_update_ack_latency_ms"].as_f64().unwrap_or(0.0),
        st["bndack_received"].as_u64().unwrap_or(0),
    )
}

fn run(isc_role: IscRole, clients: u32, rate: u32) -> Res<()> {
    let bed = PairBed::new()?;
    // ISC as primary balances the clients (split 128), so xdhcpd, its secondary, serves half
    // of them and sends their updates; as secondary it serves none.
    let t = Timers {
        mclt: 60,
        split: (isc_role == IscRole::Primary).then_some(128),
    };
    // Default xdhcpd failover settings but a bigger pool and a 10 % backup share (the
    // primary's grant to ISC is then 256 updates, not half the pool).
    let s = xd_sides_with(&bed, &t, |_, c| {
        for_isc_partner(&c)
            .replace(
                &format!("{POOL_FIRST}-{POOL_LAST}"),
                &format!("{RANGE_FIRST}-{RANGE_LAST}"),
            )
            .replace("backup-pct = 50", "backup-pct = 10")
    })?;
    let isc_conf = bed.path("isc.conf");
    let isc_leases = bed.path("isc.leases");
    let (xd_ns, xd_cfg, xd_db, xd_sock, isc_ns, isc_if, isc_me, isc_peer) = match isc_role {
        IscRole::Secondary => (
            &bed.a, &s.a_cfg, &s.a_db, &s.a_sock, &bed.b, &bed.lb.a, B_ADDR, A_ADDR,
        ),
        IscRole::Primary => (
            &bed.b, &s.b_cfg, &s.b_db, &s.b_sock, &bed.a, &bed.la.a, A_ADDR, B_ADDR,
        ),
    };
    write_file(
        &isc_conf,
        &isc_config(isc_me, isc_peer, isc_role == IscRole::Primary, &t).replace(
            &format!("range {POOL_FIRST} {POOL_LAST}"),
            &format!("range {RANGE_FIRST} {RANGE_LAST}"),
        ),
    )?;
    let mut isc = Isc::start(isc_ns, isc_if, &isc_conf, &isc_leases, &bed.path("isc.log"))?;
    let mut xd = Xd::start(xd_ns, xd_cfg, xd_db, xd_sock, &bed.path("xd.log"))?;
    xd.wait_state("NORMAL", "NORMAL", Duration::from_secs(60))?;
    isc.wait_normal(1, Duration::from_secs(20))?;
    // The pool grant (256 BACKUP updates) goes first.
    xd.wait_drained(Duration::from_secs(30))?;
    let before = xd.status()?;

    // Clients at a steady rate; the failover queue is watched while they come.
    let lg = loadgen_bin()?;
    let acked_log = bed.path("acked.log");
    let json = bed.path("lg.json");
    let n = clients.to_string();
    let r = rate.to_string();
    let limit = (clients / rate + 60).to_string();
    let mut child = bed
        .c
        .command("timeout")
        .args([
            &limit,
            &*lg.to_string_lossy(),
            "-i",
            &bed.lc.a,
            "--io",
            "packet",
        ])
        .args(["--clients", &n, "--count", &n, "--rate", &r])
        .args([
            "--timeout-ms",
            "1500",
            "--retries",
            "3",
            "--quiet",
            "--json",
        ])
        .arg(&json)
        .arg("--acked-log")
        .arg(&acked_log)
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .spawn()
        .map_err(|e| format!("loadgen: {e}"))?;
    let started = Instant::now();
    let (mut max_pending, mut max_unacked, mut samples) = (0u64, 0u64, 0u32);
    let status = loop {
        let st = xd.status()?;
        max_pending = max_pending.max(st["bindings_pending"].as_u64().unwrap_or(0));
        max_unacked = max_unacked.max(st["unacked_updates"].as_u64().unwrap_or(0));
        samples += 1;
        if let Some(status) = child.try_wait().map_err(|e| format!("loadgen: {e}"))? {
            break status;
        }
        std::thread::sleep(Duration::from_millis(100));
    };
    let load_secs = started.elapsed().as_secs_f64();
    // Every update reaches ISC soon after the last client: nothing piled up.
    let drain_started = Instant::now();
    xd.wait_drained(Duration::from_secs(10))?;
    let drain_secs = drain_started.elapsed().as_secs_f64();
    let after = xd.status()?;

    let acked = read_text(&acked_log)?.lines().count() as u64;
    let (m0, n0) = ack_figures(&before);
    let (m1, n1) = ack_figures(&after);
    let load_acks = n1.saturating_sub(n0);
    let load_latency_ms = (m1 * n1 as f64 - m0 * n0 as f64) / load_acks.max(1) as f64;
    println!(
        "{clients} clients at {rate}/s, ISC dhcpd {isc_role:?}: loadgen {status}, \
         {acked} ACKs in {load_secs:.1} s; failover: {load_acks} updates acknowledged, mean \
         queue-to-ack {load_latency_ms:.1} ms, max bindings_pending {max_pending}, max unacked \
         {max_unacked} ({samples} samples); drained {drain_secs:.2} s after the load; \
         max-unacked-updates advertised {} (ISC's {})",
        after["max_unacked_advertised"], after["partner_max_unacked"]
    );
    // First contact: our CONNECT went out before ISC said who it is; one reconnect fixes
    // the value (then remembered in the lease file).
    let log = read_text(&xd.log)?;
    let reconnects: Vec<&str> = log
        .lines()
        .filter(|l| l.contains("acknowledges binding updates when half"))
        .collect();
    for l in &reconnects {
        println!("  {l}");
    }
    assert!(reconnects.len() <= 1, "reconnected more than once:\n{log}");
    assert_eq!(
        after["max_unacked_advertised"], after["partner_max_unacked"],
        "{after}"
    );
    assert!(
        acked >= u64::from(clients),
        "only {acked} of {clients} clients got an ACK (loadgen {status})"
    );
    // Every client's binding reaches ISC: all of them from a primary; from a secondary the
    // half the split gives it (a quarter at least).
    let expected = match isc_role {
        IscRole::Secondary => clients,
        IscRole::Primary => clients / 4,
    };
    assert!(
        load_acks >= u64::from(expected),
        "{load_acks} updates acknowledged for {clients} clients"
    );
    assert!(
        max_pending <= u64::from(rate),
        "bindings_pending reached {max_pending} (more than one second of arrivals): updates to \
         ISC do not keep up; status {after}"
    );
    assert!(
        load_latency_ms < 1000.0,
        "mean queue-to-ack latency {load_latency_ms:.0} ms during the load; status {after}"
    );
    // ISC holds every client's lease.
    let isc_view = failover_common::isc_leases(&isc_leases)?;
    let active = isc_view.values().filter(|(s, _)| s == "active").count() as u64;
    assert!(
        active >= u64::from(clients),
        "ISC's lease file has {active} active leases for {clients} clients"
    );
    xd.stop()?;
    isc.stop()?;
    // ISC checks each BNDACK's xid against the last BNDUPD it sent for that lease: a BNDACK
    // of ours that answers an older update (or under another xid) shows as "xid mismatch".
    let isc_log = read_text(&bed.path("isc.log"))?;
    let mismatches: Vec<&str> = isc_log
        .lines()
        .filter(|l| l.contains("xid mismatch"))
        .collect();
    println!(
        "ISC dhcpd {isc_role:?}: {} \"xid mismatch\" line(s) in its log",
        mismatches.len()
    );
    assert!(
        mismatches.is_empty(),
        "ISC logged {} xid mismatch(es), e.g.:\n{}",
        mismatches.len(),
        mismatches
            .iter()
            .take(10)
            .copied()
            .collect::<Vec<_>>()
            .join("\n")
    );
    Ok(())
}
