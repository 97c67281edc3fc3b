//! The operator's `partner-down`: from when the MCLT counts, and in which states it is taken
//! (issue 15), on the simulation harness with random faults off and the invariants (no address
//! on two clients, the MCLT rule) checked after every step.

mod common;

use common::{Sim, SimParams, POOL};
use lease_store::{LeaseState, Owner};
use xdhcpd_failover::{McltFrom, ServerState};

fn st(s: &Sim, i: usize) -> Option<ServerState> {
    s.nodes[i].state()
}

/// Runs until `f` holds (checking invariants every step), at most `max` seconds.
fn run_until(s: &mut Sim, max: u32, f: impl Fn(&Sim) -> bool) {
    let end = s.t + max;
    while !f(s) {
        assert!(
            s.t < end,
            "condition not reached within {max}s\n{}",
            s.log_tail()
        );
        let next = (s.t + 1).min(end);
        s.run_until(next);
    }
}

/// The partner kept serving its clients through a long partition (as it usually does) and
/// lost them only just before the operator, without `--since`, declared it down. Its leases
/// of the last MCLT are unknown to us, so its addresses may be used only MCLT after the
/// command. Counting from the start of COMMUNICATIONS-INTERRUPTED (the old default) made
/// them usable at once, and this scenario gave addresses to two clients in most seeds.
#[test]
fn partner_down_without_since_counts_mclt_from_now() {
    let mut used_partner_pool = 0;
    let seeds = 12;
    for seed in 0..seeds {
        let p = SimParams {
            clients: 28,
            ..SimParams::scripted()
        };
        let mclt = p.mclt;
        let mut s = Sim::new(seed, p);
        s.random_faults = false;
        run_until(&mut s, 60, |s| {
            st(s, 0) == Some(ServerState::Normal) && st(s, 1) == Some(ServerState::Normal)
        });
        s.run_until(s.t + 300);
        // A long partition; both servers keep serving the clients they reach.
        s.partition(1_000_000);
        run_until(&mut s, 60, |s| {
            st(s, 0) == Some(ServerState::CommunicationsInterrupted)
                && st(s, 1) == Some(ServerState::CommunicationsInterrupted)
        });
        s.run_until(s.t + 5 * mclt);
        // The partner loses its clients; the operator declares it down at once.
        s.nodes[1].isolated_from = s.t;
        s.nodes[1].isolated_until = u32::MAX;
        s.nodes[1].needs_sync = true;
        let now = s.nodes[0].now(s.t);
        let interrupted = s.nodes[0]
            .engine
            .as_ref()
            .expect("node0 runs")
            .interrupted_since();
        assert!(
            interrupted + mclt < now,
            "the interruption is older than MCLT"
        );
        let accepted = s
            .partner_down(0, None, false)
            .expect("partner-down in COMMUNICATIONS-INTERRUPTED");
        assert_eq!(accepted.mclt_from, now, "MCLT counted from the command");
        assert_eq!(accepted.from, McltFrom::Now);
        assert_eq!(accepted.usable_at, now + mclt);
        assert_eq!(s.nodes[0].cell.load().partner_down_usable_at, now + mclt);
        assert!(!accepted.blind);
        // Clients keep coming; node0 alone serves them, from the partner's pool too once
        // allowed. The invariants run after every step.
        let mut partner_pool_used = false;
        for _ in 0..4 * mclt {
            s.run_until(s.t + 1);
            partner_pool_used |= (0..POOL).any(|k| {
                let l = s.nodes[0].lease(k);
                l.state == LeaseState::Active && l.owner == Owner::Backup && l.start >= now + mclt
            });
        }
        used_partner_pool += partner_pool_used as u32;
    }
    eprintln!("{used_partner_pool} of {seeds} seeds used the partner's pool after the wait");
    // Not vacuous: node0 did hand out the partner's addresses after the wait.
    assert!(
        used_partner_pool * 2 >= seeds as u32,
        "only {used_partner_pool} of {seeds} seeds used the partner's pool"
    );
}

fn start_pair() -> Sim {
    let mut s = Sim::new(7, SimParams::scripted());
    s.random_faults = false;
    s.random_clients = false;
    run_until(&mut s, 60, |s| {
        st(s, 0) == Some(ServerState::Normal) && st(s, 1) == Some(ServerState::Normal)
    });
    s
}

/// Guards (issue 15): without `force`, NORMAL, STARTUP and PARTNER-DOWN refuse the command
/// with a reason that names `--force`, and nothing changes; with it, it is accepted.
#[test]
fn partner_down_needs_force_in_normal_startup_and_partner_down() {
    // NORMAL: the partner is connected and serving.
    let mut s = start_pair();
    let e = s
        .partner_down(0, None, false)
        .expect_err("refused in NORMAL");
    assert_eq!(e.state, ServerState::Normal);
    assert!(e.to_string().contains("--force"), "{e}");
    assert_eq!(st(&s, 0), Some(ServerState::Normal), "nothing changed");
    assert_eq!(s.nodes[0].cell.load().state, ServerState::Normal);
    s.partner_down(0, None, true).expect("forced in NORMAL");
    assert!(s
        .cov
        .transitions
        .contains_key(&(ServerState::Normal, ServerState::PartnerDown)));
    // The partner is alive: the pair resolves the conflict and returns to NORMAL.
    run_until(&mut s, 300, |s| {
        st(s, 0) == Some(ServerState::Normal) && st(s, 1) == Some(ServerState::Normal)
    });

    // STARTUP: both crashed, only node0 came back; it waits for the partner's state.
    let mut s = start_pair();
    s.crash(1, true, 1_000_000);
    s.run_until(s.t + 5);
    s.crash(0, true, 5);
    run_until(&mut s, 30, |s| st(s, 0) == Some(ServerState::Startup));
    s.run_until(s.t + 60);
    assert_eq!(
        st(&s, 0),
        Some(ServerState::Startup),
        "waits for the partner"
    );
    let e = s
        .partner_down(0, None, false)
        .expect_err("refused in STARTUP");
    assert_eq!(e.state, ServerState::Startup);
    assert!(e.to_string().contains("--force"), "{e}");
    assert_eq!(st(&s, 0), Some(ServerState::Startup));
    let now = s.nodes[0].now(s.t);
    let acc = s.partner_down(0, None, true).expect("forced in STARTUP");
    assert_eq!(st(&s, 0), Some(ServerState::PartnerDown));
    assert_eq!((acc.mclt_from, acc.from), (now, McltFrom::Now));
    // A restart without contact since: what the partner did meanwhile is unknown, so our own
    // pool waits out the MCLT too (blind, as from RECOVER).
    assert!(acc.blind, "forced from STARTUP must be blind");
    assert!(s.nodes[0].cell.load().own_pool_waits);

    // PARTNER-DOWN: re-dating the wait needs --force too.
    let before = s.nodes[0].cell.load().partner_down_usable_at;
    s.run_until(s.t + 10);
    let e = s
        .partner_down(0, None, false)
        .expect_err("refused in PARTNER-DOWN");
    assert!(e.to_string().contains("--force"), "{e}");
    let acc = s.partner_down(0, None, true).expect("forced, no date");
    assert_eq!(acc.from, McltFrom::Unchanged);
    assert_eq!(acc.usable_at, before, "no --since: the wait is unchanged");
    let since = now - 500;
    let acc = s.partner_down(0, Some(since), true).expect("re-dated");
    assert_eq!(acc.from, McltFrom::Since);
    assert_eq!(acc.usable_at, since + s.nodes[0].cfg.mclt);
    assert_eq!(s.nodes[0].cell.load().partner_down_usable_at, acc.usable_at);
}

/// Accepted without `force` where communications are interrupted: COMMUNICATIONS-INTERRUPTED
/// (tested above) and RESOLUTION-INTERRUPTED.
#[test]
fn partner_down_accepted_in_resolution_interrupted() {
    let mut s = start_pair();
    // A forced partner-down with the partner alive leads to POTENTIAL-CONFLICT; the
    // connection breaks during the resolution.
    s.partner_down(0, None, true).expect("forced");
    run_until(&mut s, 30, |s| {
        st(s, 0) == Some(ServerState::PotentialConflict)
    });
    s.partition(1_000_000);
    run_until(&mut s, 60, |s| {
        st(s, 0) == Some(ServerState::ResolutionInterrupted)
    });
    let now = s.nodes[0].now(s.t);
    let acc = s
        .partner_down(0, None, false)
        .expect("accepted in RESOLUTION-INTERRUPTED");
    assert_eq!(st(&s, 0), Some(ServerState::PartnerDown));
    assert_eq!((acc.mclt_from, acc.blind), (now, false));
}

/// Where the command makes no sense, `force` does not help either.
#[test]
fn partner_down_refused_in_other_states_even_forced() {
    let mut s = start_pair();
    let now = s.nodes[0].now(s.t);
    s.nodes[0]
        .engine
        .as_mut()
        .expect("node0 runs")
        .pause(now)
        .expect("pause in NORMAL");
    s.drain(0);
    for force in [false, true] {
        let e = s
            .partner_down(0, None, force)
            .expect_err("refused in PAUSED");
        assert_eq!(e.state, ServerState::Paused);
    }
    assert_eq!(st(&s, 0), Some(ServerState::Paused));

    let mut s = start_pair();
    s.partner_down(0, None, true).expect("forced");
    run_until(&mut s, 30, |s| {
        st(s, 0) == Some(ServerState::PotentialConflict)
    });
    let e = s
        .partner_down(0, None, true)
        .expect_err("refused in POTENTIAL-CONFLICT");
    assert_eq!(e.state, ServerState::PotentialConflict);
}
