//! A server that restarts and first meets its partner in SHUTDOWN or PAUSED cannot learn what
//! the partner was in before. If that was PARTNER-DOWN, the partner may hold leases on our
//! addresses that we have never heard of. The restart must then not serve from our pool
//! (simulation seed 5852 found a primary resuming NORMAL -> COMMUNICATIONS-INTERRUPTED ->
//! PARTNER-DOWN on the partner's SHUTDOWN and re-leasing such an address): it goes RECOVER
//! and waits for the partner, as it would for a partner in PARTNER-DOWN.

mod common;

use common::{Sim, SimParams};
use xdhcpd_failover::ServerState;

fn params() -> SimParams {
    SimParams::scripted()
}

/// Primary crashes; the secondary is declared PARTNER-DOWN and serves alone past the MCLT
/// (using the primary's addresses); the primary restarts while the secondary stops with
/// `stop` (SHUTDOWN or, where allowed, PAUSED) and then dies.
fn scenario(pause: bool) {
    let mut s = Sim::new(23, params());
    s.random_faults = false;
    let t0 = s.t;
    s.run_until(t0 + 100);
    s.crash(0, true, 100_000);
    let t = s.t;
    s.run_until(t + 5);
    let now = s.nodes[1].now(s.t);
    s.nodes[1]
        .engine
        .as_mut()
        .expect("secondary alive")
        .partner_down(now, Some(now), false)
        .expect("partner-down");
    s.drain(1);
    // Well past MCLT: the secondary allocates from the primary's pool too.
    let t = s.t;
    s.run_until(t + 600);
    let recover_before = s
        .cov
        .transitions
        .get(&(ServerState::Startup, ServerState::Recover))
        .copied()
        .unwrap_or(0);
    s.restart(0);
    let now = s.nodes[1].now(s.t);
    let e = s.nodes[1].engine.as_mut().expect("secondary alive");
    assert_eq!(e.state(), ServerState::PartnerDown);
    if pause {
        // Refused in PARTNER-DOWN (the partner could not learn it was PARTNER-DOWN).
        assert!(e.pause(now).is_err());
    }
    e.shutdown(now);
    s.drain(1);
    // The restarted primary meets the partner in SHUTDOWN; then the partner dies.
    let end = s.t + 30;
    while s.nodes[0].engine.as_ref().and_then(|e| e.partner_state()) != Some(ServerState::Shutdown)
    {
        assert!(s.t < end, "primary never met the partner\n{}", s.log_tail());
        let t = s.t;
        s.run_until(t + 1);
    }
    s.crash(1, true, 400);
    // Invariants (no address bound to two clients, ...) are checked after every step, through
    // the secondary's absence and its return.
    let t = s.t;
    s.run_until(t + 1_200);
    assert!(
        s.cov
            .transitions
            .get(&(ServerState::Startup, ServerState::Recover))
            .copied()
            .unwrap_or(0)
            > recover_before,
        "the restarted primary never went RECOVER\n{}",
        s.log_tail()
    );
    assert_eq!(
        (s.nodes[0].state(), s.nodes[1].state()),
        (Some(ServerState::Normal), Some(ServerState::Normal)),
        "{}",
        s.log_tail()
    );
}

#[test]
fn restart_meeting_a_shutdown_partner_recovers_instead_of_serving() {
    scenario(false);
}

#[test]
fn pause_is_refused_in_partner_down() {
    scenario(true);
}
