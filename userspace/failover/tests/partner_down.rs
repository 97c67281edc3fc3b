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
            .partner_down(0, None)
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
