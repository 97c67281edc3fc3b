//! A primary crashes, the operator declares it down on the secondary, the primary restarts:
//! which way it re-integrates depends only on two persisted/sent times (draft-12 9.3.2 step
//! 5): the secondary's PARTNER-DOWN start time (start-time-of-state in its STATE) against the
//! primary's last recorded time of operation (the heartbeat stamp). Later -> RECOVER; not
//! later -> POTENTIAL-CONFLICT. Both times are whole seconds, so when the heartbeat stamp and
//! the operator's command fall in the same second the restart goes through
//! POTENTIAL-CONFLICT: that is the path the real-pair test sees now and then. Both paths end
//! in NORMAL with the same bindings.

mod common;

use common::{Sim, SimParams};
use xdhcpd_failover::ServerState;

fn params() -> SimParams {
    SimParams::scripted()
}

/// Runs a pair with client traffic until the primary has just stamped its heartbeat, crashes
/// the primary in that same second, and `gap` seconds later puts the secondary into
/// PARTNER-DOWN. Returns the simulation just after the primary's restart has left STARTUP,
/// with (last operational, PARTNER-DOWN start, state the restart left STARTUP for).
fn crash_then_partner_down(gap: u32) -> (Sim, u32, u32, ServerState) {
    let mut s = Sim::new(11, params());
    s.random_faults = false;
    let start = s.t;
    s.run_until(start + 100);
    // Step until the primary's heartbeat is due, then process it: last_operational = now.
    loop {
        let now = s.nodes[0].now(s.t);
        let before = s.nodes[0].persist.map(|p| p.last_operational);
        let e = s.nodes[0].engine.as_mut().expect("primary alive");
        if e.poll_timeout().is_some_and(|d| d <= now) {
            e.handle_timeout(now);
            s.drain(0);
            if s.nodes[0].persist.map(|p| p.last_operational) != before {
                break;
            }
        }
        let t = s.t;
        s.run_until(t + 1);
    }
    let last_op = s.nodes[0].persist.expect("persisted").last_operational;
    assert_eq!(last_op, s.nodes[0].now(s.t), "heartbeat stamped now");
    s.crash(0, true, 100_000);
    let t = s.t;
    s.run_until(t + gap);
    let now = s.nodes[1].now(s.t);
    let e = s.nodes[1].engine.as_mut().expect("secondary alive");
    assert_eq!(e.state(), ServerState::CommunicationsInterrupted);
    e.partner_down(now, Some(now.saturating_sub(1)), false)
        .expect("partner-down in COMMUNICATIONS-INTERRUPTED");
    let pd_since = e.state_since();
    s.drain(1);
    let t = s.t;
    s.run_until(t + 20);
    let left_startup = |s: &Sim, to| {
        s.cov
            .transitions
            .get(&(ServerState::Startup, to))
            .copied()
            .unwrap_or(0)
    };
    let before =
        [ServerState::Recover, ServerState::PotentialConflict].map(|to| left_startup(&s, to));
    s.restart(0);
    let end = s.t + 30;
    while s.nodes[0].state() == Some(ServerState::Startup) {
        assert!(s.t < end, "primary stuck in STARTUP\n{}", s.log_tail());
        let t = s.t;
        s.run_until(t + 1);
    }
    let after =
        [ServerState::Recover, ServerState::PotentialConflict].map(|to| left_startup(&s, to));
    let to = if after[0] > before[0] {
        ServerState::Recover
    } else if after[1] > before[1] {
        ServerState::PotentialConflict
    } else {
        panic!("restart left STARTUP another way\n{}", s.log_tail());
    };
    (s, last_op, pd_since, to)
}

fn finish(mut s: Sim) {
    let end = s.t + 400;
    while !(s.nodes[0].state() == Some(ServerState::Normal)
        && s.nodes[1].state() == Some(ServerState::Normal))
    {
        assert!(s.t < end, "pair not NORMAL again\n{}", s.log_tail());
        let t = s.t;
        s.run_until(t + 1);
    }
}

#[test]
fn partner_down_after_last_operation_means_recover() {
    let (s, last_op, pd_since, to) = crash_then_partner_down(1);
    assert!(pd_since > last_op);
    assert_eq!(to, ServerState::Recover, "{}", s.log_tail());
    finish(s);
}

#[test]
fn partner_down_in_the_same_second_means_potential_conflict() {
    let (s, last_op, pd_since, to) = crash_then_partner_down(0);
    assert_eq!(pd_since, last_op);
    assert_eq!(to, ServerState::PotentialConflict, "{}", s.log_tail());
    finish(s);
}
