//! Issue 16 (reconfigure across failover): the reconfiguring flag travels to an xdhcpd
//! partner in binding updates (vendor-options), its acknowledgement settles it like any
//! change, and the takeover rule: a failover takeover (PARTNER-DOWN) or a restart stops a
//! running reconfiguration unless deferred-nak keeps the flag. On the simulation harness
//! (simulated clock and link, the daemon's `BindingSync` over the same records), random
//! faults off, the invariants checked after every step.

mod common;

use common::{addr, Sim, SimParams, POOL};
use lease_store::{LeaseState, FLAG_RECONFIGURING};
use xdhcpd_failover::store::{set_reconfiguring, unacked};
use xdhcpd_failover::{BindingStore, ServerState};

fn st(s: &Sim, i: usize) -> Option<ServerState> {
    s.nodes[i].state()
}

fn run_until(s: &mut Sim, max: u32, what: &str, f: impl Fn(&Sim) -> bool) {
    let end = s.t + max;
    while !f(s) {
        assert!(s.t < end, "{what}: not within {max}s\n{}", s.log_tail());
        let next = (s.t + 1).min(end);
        s.run_until(next);
    }
}

fn flagged(s: &Sim, i: usize, k: usize) -> bool {
    s.nodes[i].lease(k).flags & FLAG_RECONFIGURING != 0
}

/// The reconfigure campaign's write on node `i` (flag set or cleared) and its hand-over to
/// the failover driver, as the daemon's reconfigure driver does through the change channel.
fn campaign_sets(s: &mut Sim, i: usize, k: usize, on: bool) {
    let t = s.t;
    let now = s.nodes[i].now(t);
    let node = &mut s.nodes[i];
    let changed = node.table.update(addr(k), |l| set_reconfiguring(l, on));
    assert_eq!(changed.map(|c| c.0), Some(true), "record {k} flag -> {on}");
    let l = *node.lease(k);
    if let Some(e) = node.engine.as_mut() {
        node.sync.record_changed(e, now, t, &l);
    }
    s.drain(i);
}

/// A pair in NORMAL whose clients hold leases (both tables agree), then the clients stop
/// (nothing renews and clears a flag); returns a record bound on both servers.
fn pair_with_bindings(seed: u64) -> (Sim, usize) {
    let mut s = Sim::new(
        seed,
        SimParams {
            clients: 6,
            desired: 3600,
            mclt: 3600,
            ..SimParams::scripted()
        },
    );
    s.random_faults = false;
    run_until(&mut s, 120, "both NORMAL", |s| {
        st(s, 0) == Some(ServerState::Normal) && st(s, 1) == Some(ServerState::Normal)
    });
    s.run_until(s.t + 200);
    s.random_clients = false;
    s.run_until(s.t + 20);
    let now = s.nodes[0].now(s.t);
    let k = (0..POOL)
        .find(|&k| {
            let (a, b) = (s.nodes[0].lease(k), s.nodes[1].lease(k));
            a.state == LeaseState::Active
                && a.expiry > now + 600
                && b.state == LeaseState::Active
                && a.client == b.client
                && !unacked(a)
        })
        .unwrap_or_else(|| panic!("no binding on both servers\n{}", s.log_tail()));
    (s, k)
}

#[test]
fn failover_reconfiguring_flag_travels_to_the_partner_and_back() {
    let (mut s, k) = pair_with_bindings(1);
    // Primary's campaign flags the binding (FORCERENEW sent).
    campaign_sets(&mut s, 0, k, true);
    assert!(unacked(s.nodes[0].lease(k)), "the partner lacks the flag");
    run_until(&mut s, 10, "flag on the secondary", |s| flagged(s, 1, k));
    run_until(&mut s, 10, "flag acknowledged", |s| {
        !unacked(s.nodes[0].lease(k))
    });
    // Abort without deferred-nak: back to bound; the partner clears it too.
    campaign_sets(&mut s, 0, k, false);
    run_until(&mut s, 10, "flag cleared on the secondary", |s| {
        !flagged(s, 1, k)
    });
    assert_eq!(s.nodes[1].lease(k).state, LeaseState::Active, "still bound");
    // A flag the secondary sets (its campaign) reaches the primary the same way.
    campaign_sets(&mut s, 1, k, true);
    run_until(&mut s, 10, "flag on the primary", |s| flagged(s, 0, k));
    run_until(&mut s, 10, "acknowledged by the primary", |s| {
        !unacked(s.nodes[1].lease(k))
    });
}

/// Deferred-nak or not: the primary flags a binding, then crashes; the operator declares it
/// down on the secondary (the takeover).
fn takeover(deferred_nak: bool) -> bool {
    let (mut s, k) = pair_with_bindings(2);
    s.nodes[1].deferred_nak = deferred_nak;
    campaign_sets(&mut s, 0, k, true);
    run_until(&mut s, 10, "flag on the secondary", |s| flagged(s, 1, k));
    s.crash(0, true, 1_000_000);
    run_until(&mut s, 60, "secondary COMMUNICATIONS-INTERRUPTED", |s| {
        st(s, 1) == Some(ServerState::CommunicationsInterrupted)
    });
    // Not a takeover yet: the flag stays while the partner may still be running it.
    assert!(
        flagged(&s, 1, k),
        "COMMUNICATIONS-INTERRUPTED keeps the flag"
    );
    s.partner_down(1, None, false)
        .expect("partner-down in COMMUNICATIONS-INTERRUPTED");
    run_until(&mut s, 5, "secondary PARTNER-DOWN", |s| {
        st(s, 1) == Some(ServerState::PartnerDown)
    });
    s.run_until(s.t + 5);
    assert_eq!(s.nodes[1].lease(k).state, LeaseState::Active);
    flagged(&s, 1, k)
}

#[test]
fn failover_takeover_stops_reconfiguration_unless_deferred_nak() {
    assert!(!takeover(false), "takeover clears the flag");
    assert!(
        takeover(true),
        "deferred-nak keeps it: NAK at the next renewal"
    );
}

#[test]
fn failover_restart_stops_reconfiguration_unless_deferred_nak_and_partner_follows() {
    for deferred in [false, true] {
        let (mut s, k) = pair_with_bindings(3);
        s.nodes[0].deferred_nak = deferred;
        campaign_sets(&mut s, 0, k, true);
        run_until(&mut s, 10, "flag on the secondary", |s| flagged(s, 1, k));
        run_until(&mut s, 10, "flag acknowledged", |s| {
            !unacked(s.nodes[0].lease(k))
        });
        // The primary restarts; its restart rule runs on its table before the engine.
        s.crash(0, true, 5);
        run_until(&mut s, 120, "pair NORMAL again", |s| {
            st(s, 0) == Some(ServerState::Normal) && st(s, 1) == Some(ServerState::Normal)
        });
        s.run_until(s.t + 10);
        assert_eq!(flagged(&s, 0, k), deferred, "primary after restart");
        assert_eq!(
            flagged(&s, 1, k),
            deferred,
            "the secondary learned the flag's end from the re-sent update"
        );
    }
}
