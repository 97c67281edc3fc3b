//! Failover pair operations in network namespaces (root; see `common/require.rs`):
//! * planned restart: `ctl failover pause` on the primary, the secondary goes
//!   COMMUNICATIONS-INTERRUPTED (never PARTNER-DOWN) and serves alone, the primary is stopped
//!   and started again, both return to NORMAL and the lease tables agree;
//! * one-way firewall: the primary cannot reach the secondary's listener (its connects are
//!   rejected by a policy route in its namespace); the secondary's own connection brings the
//!   pair to NORMAL and leases replicate;
//! * IPv6 transport: the `[failover]` addresses are IPv6; both reach NORMAL, leases
//!   replicate, and the XDP failover-port guard drops an IPv6 stranger.
//!
//! * failback hold (issue 15, flap guard): with `failback-hold`, a primary left PARTNER-DOWN by
//!   its secondary's shutdown stays PARTNER-DOWN after the secondary restarts and recovers,
//!   shows the hold in `ctl failover status`, `/metrics` and its event log, refuses a
//!   `failback` on the secondary, and returns to NORMAL on `ctl failover failback`.
//!
//! Same bed as `failover_pair.rs` (`failover_common::PairBed`).

#[path = "common/netns.rs"]
mod netns;

#[path = "common/require.rs"]
mod require;

#[path = "daemon_common/mod.rs"]
mod daemon_common;

#[path = "failover_common/mod.rs"]
mod failover_common;

use std::path::Path;
use std::time::Duration;

use daemon_common::{final_counters, output, read_table, unix_now, wait_for, Res};
use failover_common::*;
use require::{require, Capability};

fn start_a(bed: &PairBed, s: &Sides, log: &str) -> Res<Xd> {
    Xd::start(&bed.a, &s.a_cfg, &s.a_db, &s.a_sock, &bed.path(log))
}

fn start_b(bed: &PairBed, s: &Sides, log: &str) -> Res<Xd> {
    Xd::start(&bed.b, &s.b_cfg, &s.b_db, &s.b_sock, &bed.path(log))
}

/// Both stopped: their files hold the same active bindings, and at least `min` of them.
fn tables_agree(s: &Sides, min: usize) -> Res<()> {
    let ta = read_table(&s.a_db, &pair_pools())?;
    let tb = read_table(&s.b_db, &pair_pools())?;
    let at = unix_now() + 1;
    let (aa, ab) = (active_bindings(&ta, at), active_bindings(&tb, at));
    if aa != ab {
        return Err(format!(
            "active bindings differ: primary {} secondary {}\nonly primary: {:?}\nonly secondary: \
             {:?}",
            aa.len(),
            ab.len(),
            aa.iter()
                .filter(|(k, _)| !ab.contains_key(k))
                .collect::<Vec<_>>(),
            ab.iter()
                .filter(|(k, _)| !aa.contains_key(k))
                .collect::<Vec<_>>()
        ));
    }
    if aa.len() < min {
        return Err(format!(
            "only {} active bindings, expected >= {min}",
            aa.len()
        ));
    }
    Ok(())
}

fn log_of(path: &Path) -> String {
    std::fs::read_to_string(path).unwrap_or_default()
}

/// Runs `f` when the machine has what every test here needs (root, `timeout`, `ip`) and
/// `more`.
fn run(more: &[Capability], f: fn() -> Res<()>) {
    let mut needs = vec![
        Capability::Root,
        Capability::Program("timeout"),
        Capability::Program("ip"),
    ];
    needs.extend_from_slice(more);
    if !require(&needs) {
        return;
    }
    if let Err(e) = f() {
        panic!("{e}");
    }
}

// ---------------------------------------------------------------------------------------------
// 1. Planned restart through PAUSED

#[test]
fn planned_restart_with_pause() {
    run(&[], planned_restart);
}

fn planned_restart() -> Res<()> {
    let bed = PairBed::new()?;
    let t = Timers {
        mclt: 30,
        split: None,
    };
    let s = xd_sides(&bed, &t)?;
    let mut a = start_a(&bed, &s, "a.log")?;
    let mut b = start_b(&bed, &s, "b.log")?;
    a.wait_state("NORMAL", "NORMAL", Duration::from_secs(30))?;
    b.wait_state("NORMAL", "NORMAL", Duration::from_secs(10))?;
    let first = dora(&bed, 91, 10, "1")?;
    assert_eq!(first.len(), 10, "ACKs before the pause: {first:?}");
    a.wait_drained(Duration::from_secs(10))?;

    // Pause: the secondary goes COMMUNICATIONS-INTERRUPTED at once, the primary stops serving.
    let b_mark = log_of(&b.log).len();
    let msg = ctl(&a.socket, &["pause"])?;
    assert!(msg.contains("paused (was NORMAL"), "{msg}");
    b.wait_state(
        "COMMUNICATIONS-INTERRUPTED",
        "PAUSED",
        Duration::from_secs(10),
    )?;
    assert_eq!(a.status()?["state"], "PAUSED");
    let again = ctl(&a.socket, &["pause"]);
    assert!(again.is_err(), "a second pause must be refused: {again:?}");

    // The planned stop: SIGTERM while PAUSED sends no SHUTDOWN.
    let st = b.status()?;
    assert_eq!(st["connected"], true, "still connected while paused: {st}");
    let a_log = a.stop()?;
    assert!(a_log.contains("stopped in PAUSED"), "{a_log}");
    assert!(!a_log.contains("-> SHUTDOWN"), "{a_log}");
    // The secondary has seen the connection close, so it has handled everything the primary
    // sent before (a SHUTDOWN would precede the close on the same stream).
    wait_for(
        "the secondary to see the primary's connection close",
        Duration::from_secs(10),
        || {
            b.proc.check_alive()?;
            Ok((b.status()?["connected"] == false).then_some(()))
        },
    )?;
    let st = b.status()?;
    assert_eq!(
        st["state"], "COMMUNICATIONS-INTERRUPTED",
        "secondary after the primary stopped: {st}"
    );
    let b_full = log_of(&b.log);
    let b_log = b_full.get(b_mark..).unwrap_or_default();
    assert!(
        !b_log.contains("PARTNER-DOWN") && !b_log.contains("partner now SHUTDOWN"),
        "{b_log}"
    );

    // Alone in COMMUNICATIONS-INTERRUPTED the secondary serves new clients from its pool.
    let second = dora(&bed, 92, 6, "2")?;
    assert_eq!(
        second.len(),
        6,
        "ACKs while the primary is down: {second:?}"
    );

    // Restart: the primary resumes from the state before the pause, without RECOVER.
    let mut a = start_a(&bed, &s, "a2.log")?;
    a.wait_state("NORMAL", "NORMAL", Duration::from_secs(30))?;
    b.wait_state("NORMAL", "NORMAL", Duration::from_secs(10))?;
    let a2 = log_of(&a.log);
    assert!(
        a2.contains("was PAUSED")
            && a2.contains("STARTUP -> COMMUNICATIONS-INTERRUPTED")
            && !a2.contains("RECOVER")
            && !a2.contains("POTENTIAL-CONFLICT"),
        "restart path:\n{a2}"
    );
    a.wait_drained(Duration::from_secs(10))?;
    b.wait_drained(Duration::from_secs(10))?;
    check_acked_bound(
        &table_snapshot(&a, &bed, "a2")?,
        &second,
        "restarted primary",
    )?;
    let third = dora(&bed, 93, 6, "3")?;
    assert_eq!(third.len(), 6, "ACKs after the restart: {third:?}");
    a.wait_drained(Duration::from_secs(10))?;
    b.wait_drained(Duration::from_secs(10))?;
    a.stop()?;
    b.stop()?;
    tables_agree(&s, 22)
}

// ---------------------------------------------------------------------------------------------
// 2. One-way firewall: only the secondary can connect

#[test]
fn secondary_connects_when_the_primary_cannot() {
    run(&[], secondary_connects);
}

fn secondary_connects() -> Res<()> {
    let bed = PairBed::new()?;
    // In the primary's namespace, TCP to the secondary's port 647 is rejected (like a
    // firewall REJECT): a policy rule sends it to a table whose only route is `prohibit`.
    // Replies on a connection the secondary opened have source port 647 and pass.
    let e = |e: std::io::Error| e.to_string();
    bed.a
        .ip(&[
            "rule", "add", "ipproto", "tcp", "dport", "647", "to", B_ADDR, "table", "647",
        ])
        .map_err(e)?;
    bed.a
        .ip(&["route", "add", "prohibit", B_ADDR, "table", "647"])
        .map_err(e)?;
    let t = Timers {
        mclt: 30,
        split: None,
    };
    let s = xd_sides(&bed, &t)?;
    let mut b = start_b(&bed, &s, "b.log")?;
    let mut a = start_a(&bed, &s, "a.log")?;
    a.wait_state("NORMAL", "NORMAL", Duration::from_secs(60))?;
    b.wait_state("NORMAL", "NORMAL", Duration::from_secs(10))?;
    let a_log = log_of(&a.log);
    assert!(
        a_log.contains(&format!("connecting to {B_ADDR}:647")),
        "the primary's own connects should have failed:\n{a_log}"
    );
    assert!(
        a_log.contains(&format!("connection from {B_ADDR}:")),
        "the pair should run on the secondary's connection:\n{a_log}"
    );
    let acked = dora(&bed, 94, 8, "1")?;
    assert_eq!(acked.len(), 8, "ACKs: {acked:?}");
    a.wait_drained(Duration::from_secs(10))?;
    check_acked_bound(&table_snapshot(&b, &bed, "b1")?, &acked, "secondary")?;
    // Exactly one connection on each side: the one the secondary opened.
    let (sa, sb) = (a.status()?, b.status()?);
    assert_eq!(sa["connections"], 1, "primary: {sa}");
    assert_eq!(sb["connections"], 1, "secondary: {sb}");
    a.stop()?;
    b.stop()?;
    tables_agree(&s, 8)
}

// ---------------------------------------------------------------------------------------------
// 3. IPv6 transport

const A6: &str = "fd77::1";
const B6: &str = "fd77::3";
const C6: &str = "fd77::9";
/// A port the primary's namespace listens on for the stranger's control connect.
const CONTROL_PORT: u16 = 7647;

#[test]
fn failover_over_ipv6() {
    run(&[Capability::Program("bash")], ipv6_transport);
}

fn ipv6_transport() -> Res<()> {
    let bed = PairBed::new()?;
    let e = |e: std::io::Error| e.to_string();
    // nodad: the addresses are usable at once (duplicate address detection would hold them
    // "tentative" for a second or two and the daemons' binds would fail).
    for (ns, dev, addr) in [
        (&bed.a, &bed.la.a, A6),
        (&bed.b, &bed.lb.a, B6),
        (&bed.c, &bed.lc.a, C6),
    ] {
        ns.ip(&["addr", "add", &format!("{addr}/64"), "dev", dev, "nodad"])
            .map_err(e)?;
    }
    let t = Timers {
        mclt: 30,
        split: None,
    };
    let s = xd_sides_with(&bed, &t, |primary, c| {
        let (me, peer) = if primary { (A6, B6) } else { (B6, A6) };
        let (me4, peer4) = if primary {
            (A_ADDR, B_ADDR)
        } else {
            (B_ADDR, A_ADDR)
        };
        c.replace(
            &format!("\naddress = \"{me4}\""),
            &format!("\naddress = \"{me}\""),
        )
        .replace(
            &format!("peer-address = \"{peer4}\""),
            &format!("peer-address = \"{peer}\""),
        )
    })?;
    let a_cfg = log_of(&s.a_cfg);
    assert!(
        a_cfg.contains(&format!("\naddress = \"{A6}\"")) && a_cfg.contains(B6),
        "{a_cfg}"
    );
    let mut a = start_a(&bed, &s, "a.log")?;
    let mut b = start_b(&bed, &s, "b.log")?;
    a.wait_state("NORMAL", "NORMAL", Duration::from_secs(30))?;
    b.wait_state("NORMAL", "NORMAL", Duration::from_secs(10))?;
    let a_log = log_of(&a.log);
    // Either side's connection may come first (the secondary also dials).
    assert!(
        a_log.contains(&format!("connection to [{B6}]:647"))
            || a_log.contains(&format!("connection from [{B6}]:")),
        "the pair should be connected over IPv6:\n{a_log}"
    );
    let acked = dora(&bed, 95, 8, "1")?;
    assert_eq!(acked.len(), 8, "ACKs: {acked:?}");
    a.wait_drained(Duration::from_secs(10))?;
    check_acked_bound(&table_snapshot(&b, &bed, "b1")?, &acked, "secondary")?;

    // The XDP guard drops TCP to the failover port from an IPv6 stranger: its connect goes
    // unanswered (without the guard the kernel would complete it and the driver log the
    // refusal). Then a control connect from the same stranger to another port of the primary
    // must succeed: the path works, so only the guard can have stopped the first one.
    let control = bed
        .a
        .run(|| std::net::TcpListener::bind((std::net::Ipv6Addr::UNSPECIFIED, CONTROL_PORT)))
        .map_err(e)?
        .map_err(|e| format!("listening on port {CONTROL_PORT} in the primary's namespace: {e}"))?;
    let connect = |port: u16| {
        output(bed.c.command("timeout").args([
            "3",
            "bash",
            "-c",
            &format!("exec 3<>/dev/tcp/{A6}/{port}"),
        ]))
    };
    let probe = connect(647)?;
    assert!(
        !probe.status.success(),
        "a stranger reached the failover port: {} {}",
        probe.stdout,
        probe.stderr
    );
    let reached = connect(CONTROL_PORT)?;
    assert!(
        reached.status.success(),
        "the stranger cannot reach the primary on port {CONTROL_PORT} either, so the dropped \
         failover connect proves nothing: {} {}",
        reached.stdout,
        reached.stderr
    );
    drop(control);
    wait_for("binding updates to drain", Duration::from_secs(10), || {
        let st = b.status()?;
        Ok((st["unacked_updates"] == 0).then_some(()))
    })?;
    let a_log = a.stop()?;
    b.stop()?;
    // The primary's XDP program counted the stranger's SYNs as dropped, and the stopped
    // daemon's whole log has no refusal: none of them reached its listener.
    let (_, xdp) = final_counters(&a_log)?;
    let dropped = xdp.get("failover_dropped").copied().unwrap_or(0);
    assert!(
        dropped >= 1,
        "the XDP guard counted no dropped failover SYN ({xdp:?}):\n{a_log}"
    );
    assert!(
        !a_log.contains(&format!("refused a connection from [{C6}]")),
        "the stranger's SYN passed XDP:\n{a_log}"
    );
    tables_agree(&s, 8)
}

// ---------------------------------------------------------------------------------------------
// 4. Failback hold (flap guard), the event log and `ctl failover failback`

#[test]
fn failback_hold_failover_ctl() {
    run(&[], failback_hold);
}

fn failback_hold() -> Res<()> {
    let bed = PairBed::new()?;
    let t = Timers {
        mclt: 10,
        split: None,
    };
    // An hour: only the operator's failback ends it within the test.
    let s = xd_sides_with(&bed, &t, |_, c| c + "failback-hold = 3600\n")?;
    let mut a = start_a(&bed, &s, "a.log")?;
    let mut b = start_b(&bed, &s, "b.log")?;
    a.wait_state("NORMAL", "NORMAL", Duration::from_secs(30))?;
    b.wait_state("NORMAL", "NORMAL", Duration::from_secs(10))?;
    let first = dora(&bed, 95, 6, "1")?;
    assert_eq!(first.len(), 6, "ACKs in NORMAL: {first:?}");
    a.wait_drained(Duration::from_secs(10))?;

    // The secondary stops (SHUTDOWN): the primary takes over.
    b.stop()?;
    a.wait_state("PARTNER-DOWN", "SHUTDOWN", Duration::from_secs(10))?;
    let st = a.status()?;
    let events = st["events"].as_array().cloned().unwrap_or_default();
    let invoked = events
        .iter()
        .find(|e| e["event"] == "failover-invoked")
        .ok_or_else(|| format!("no failover-invoked event: {st}"))?;
    assert!(
        invoked["until"].as_u64().is_some()
            && invoked["at_utc"].as_str().is_some_and(|t| t.ends_with('Z')),
        "{invoked}"
    );
    let second = dora(&bed, 96, 4, "2")?;
    assert_eq!(second.len(), 4, "ACKs in PARTNER-DOWN: {second:?}");

    // The secondary returns and recovers; the hold keeps the primary PARTNER-DOWN.
    let mut b = start_b(&bed, &s, "b2.log")?;
    b.wait_state("RECOVER-DONE", "PARTNER-DOWN", Duration::from_secs(60))?;
    std::thread::sleep(Duration::from_secs(3));
    let st = a.status()?;
    assert_eq!(st["state"], "PARTNER-DOWN", "held: {st}");
    assert_eq!(st["failback_hold"], 3600, "{st}");
    let until = st["failback_held_until"]
        .as_u64()
        .ok_or_else(|| format!("no failback_held_until: {st}"))?;
    assert!(until > unix_now() as u64 + 3000, "until {until}");
    let human = ctl(&a.socket, &["status"])?;
    assert!(human.contains("NORMAL held until"), "{human}");
    let log = ctl(&a.socket, &["events"])?;
    for want in [
        "Configuration successfully created",
        "Heartbeats have been setup successfully",
        "Failover invoked",
        "Failback in progress",
        "Failback held",
    ] {
        assert!(
            log.contains(want),
            "{want:?} missing from the event log:\n{log}"
        );
    }
    let metrics = output(
        std::process::Command::new("timeout")
            .arg("10")
            .arg(daemon_common::xdhcpd_bin()?)
            .args(["ctl", "--socket"])
            .arg(&a.socket)
            .arg("metrics"),
    )?;
    assert!(
        metrics.stdout.contains("xdhcpd_failover_failback_held 1"),
        "{}",
        metrics.stdout
    );

    // Failback is the PARTNER-DOWN server's: refused on the secondary.
    let refused = ctl(&b.socket, &["failback"]);
    assert!(
        refused
            .as_ref()
            .is_err_and(|e| e.contains("PARTNER-DOWN back to NORMAL")),
        "{refused:?}"
    );
    let msg = ctl(&a.socket, &["failback"])?;
    assert!(msg.contains("failback hold ended"), "{msg}");
    a.wait_state("NORMAL", "NORMAL", Duration::from_secs(15))?;
    b.wait_state("NORMAL", "NORMAL", Duration::from_secs(10))?;
    let st = a.status()?;
    let last = st["events"]
        .as_array()
        .and_then(|v| v.iter().rev().find(|e| e["event"] == "active").cloned())
        .ok_or_else(|| format!("no active event: {st}"))?;
    assert!(
        last["remarks"]
            .as_str()
            .is_some_and(|r| r.contains("failback complete")),
        "{last}"
    );
    assert!(st["failback_held_until"].is_null(), "{st}");
    a.wait_drained(Duration::from_secs(10))?;
    b.wait_drained(Duration::from_secs(10))?;
    a.stop()?;
    b.stop()?;
    // MCLT 10 s caps the leases: by now they have ended; the tables must still agree.
    tables_agree(&s, 0)
}
