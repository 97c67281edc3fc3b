//! Deterministic simulation of a failover pair under crashes, partitions, resets, clock steps
//! and operator commands, with random client traffic. Invariants are checked after every step
//! (see `common::Sim::check_invariants` and the MCLT assertions in `common::Sim::grant`).
//!
//! Debug builds run a few hundred seeds; release builds (`cargo test -p xdhcpd-failover
//! --release`) run 10,000. `SIM_SEEDS=n` overrides, `SIM_SEED=s` runs one seed verbosely.

mod common;

use common::{Coverage, Rng, Sim, SimParams, T0};
use xdhcpd_failover::ServerState;

fn run_seed(seed: u64, verbose: bool) -> Coverage {
    let mut r = Rng::new(seed.wrapping_mul(0x2545_f491_4f6c_dd1d));
    let p = SimParams::random(&mut r);
    let mut sim = Sim::new(seed, p.clone());
    sim.verbose = verbose;
    let end = T0 + p.duration;
    let r = std::panic::catch_unwind(std::panic::AssertUnwindSafe(|| sim.run_until(end)));
    if let Err(e) = r {
        eprintln!("seed {seed} failed ({p:?})");
        std::panic::resume_unwind(e);
    }
    for i in 0..2 {
        sim.count_update_stats(i);
    }
    sim.cov
}

#[test]
fn simulation_many_seeds() {
    if let Ok(s) = std::env::var("SIM_SEED") {
        let seed: u64 = s.parse().expect("SIM_SEED must be a number");
        run_seed(seed, true);
        return;
    }
    let default = if cfg!(debug_assertions) { 300 } else { 10_000 };
    let n: u64 = std::env::var("SIM_SEEDS")
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(default);
    let threads = std::thread::available_parallelism()
        .map_or(2, |n| n.get())
        .min(8) as u64;
    let start = std::time::Instant::now();
    let covs: Vec<Coverage> = std::thread::scope(|s| {
        let hs: Vec<_> = (0..threads)
            .map(|k| {
                s.spawn(move || {
                    let mut cov = Coverage::default();
                    let mut seed = k;
                    while seed < n {
                        cov.merge(&run_seed(seed, false));
                        seed += threads;
                    }
                    cov
                })
            })
            .collect();
        hs.into_iter()
            .map(|h| h.join().expect("simulation thread panicked"))
            .collect()
    });
    let mut cov = Coverage::default();
    for c in &covs {
        cov.merge(c);
    }
    eprintln!(
        "simulation: {n} seeds in {:.1}s",
        start.elapsed().as_secs_f64()
    );
    eprintln!(
        "  grants {}, renewals {}, dropped DISCOVERs {}, crashes {}, partitions {}",
        cov.grants, cov.renewals, cov.dropped_discovers, cov.crashes, cov.partitions
    );
    eprintln!(
        "  reclaims: {} sent, {} acknowledged (FREE), {} rejected (backup had leased it)",
        cov.reclaims_sent, cov.reclaims_acked, cov.reclaims_rejected
    );
    eprintln!(
        "  dynamic BOOTP: {} permanent bindings (pools where each side gives only its own)",
        cov.bootp_grants
    );
    eprintln!(
        "  operator partner-down from RECOVER (blind PARTNER-DOWN): {}",
        cov.blind_partner_downs
    );
    eprintln!(
        "  operator partner-down refused without --force: {}, accepted with it: {}",
        cov.partner_downs_refused, cov.forced_partner_downs
    );
    eprintln!(
        "  binding updates: {} in {} BNDUPD messages ({:.2} per message)",
        cov.bndupd_sent,
        cov.bndupd_messages,
        cov.bndupd_sent as f64 / cov.bndupd_messages.max(1) as f64
    );
    // Seeds draw 1 (as for ISC dhcpd) or 2-8 bindings per BNDUPD: batches must have happened.
    assert!(
        cov.bndupd_sent > cov.bndupd_messages && cov.bndupd_messages > 0,
        "no batched BNDUPD in {n} seeds"
    );
    eprintln!("  states entered:");
    for (s, c) in &cov.states {
        eprintln!("    {:<28} {c}", s.name());
    }
    eprintln!("  transitions:");
    for ((a, b), c) in &cov.transitions {
        eprintln!("    {:<28} -> {:<28} {c}", a.name(), b.name());
    }
    assert!(
        cov.grants > n,
        "client traffic too thin: {} grants",
        cov.grants
    );
    let missing: Vec<&str> = ServerState::ALL
        .iter()
        .filter(|s| !cov.states.contains_key(s))
        .map(|s| s.name())
        .collect();
    if n >= 300 {
        assert!(missing.is_empty(), "states never reached: {missing:?}");
        assert!(cov.reclaims_acked > 0, "no reclaim ever completed");
        assert!(cov.bootp_grants > 0, "no BOOTP client was ever served");
    }
}

/// The way out of RECOVER when the partner is lost for good, under random client traffic:
/// node A crashes; its partner B is declared PARTNER-DOWN and, after the MCLT, leases A's
/// addresses too; A restarts, meets B in PARTNER-DOWN and goes RECOVER; B dies before A has
/// pulled its bindings; the operator declares partner-down on A from RECOVER (a blind
/// PARTNER-DOWN dated from B's death) and clients keep coming; in half the seeds B returns
/// later. The invariants (no address bound to two clients, MCLT) are checked after every
/// step: A must not hand out, even from its own pool, what B may have leased unseen.
#[test]
fn blind_partner_down_from_recover_many_seeds() {
    let n: u64 = std::env::var("SIM_SEEDS")
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(if cfg!(debug_assertions) { 100 } else { 1_000 });
    let mut blind = 0u64;
    for seed in 0..n {
        let mut r = Rng::new(seed.wrapping_mul(0x9e37_79b9_7f4a_7c15) ^ 0xb11d);
        let p = SimParams::random(&mut r);
        let mut sim = Sim::new(seed, p.clone());
        sim.random_faults = false;
        let outcome = std::panic::catch_unwind(std::panic::AssertUnwindSafe(|| {
            sim.run_until(T0 + r.range(200, 600));
            let a = r.below(2) as usize;
            let b = 1 - a;
            if !(sim.nodes[a].alive() && sim.nodes[b].alive()) {
                return false;
            }
            sim.crash(a, r.chance(500), 1_000_000);
            let a_died = sim.t;
            sim.run_until(sim.t + 40);
            let now = sim.nodes[b].now(sim.t);
            let since = (sim.nodes[b].now(a_died) + common::MAX_SKEW as u32).min(now);
            if sim.partner_down(b, Some(since), false).is_err() {
                return false;
            }
            // Past the MCLT: B now leases A's free addresses as well.
            sim.run_until(sim.t + p.mclt + r.range(60, 600));
            sim.nodes[a].restart_at = sim.t + 1;
            let deadline = sim.t + 120;
            while sim.nodes[a].state() != Some(ServerState::Recover) {
                if sim.t >= deadline {
                    return false;
                }
                sim.run_until(sim.t + 1);
            }
            sim.crash(b, r.chance(500), 1_000_000);
            let b_died = sim.t;
            sim.run_until(sim.t + r.range(30, 300));
            if !matches!(
                sim.nodes[a].state(),
                Some(ServerState::Recover | ServerState::RecoverWait)
            ) {
                return false;
            }
            let now = sim.nodes[a].now(sim.t);
            let since = (sim.nodes[a].now(b_died) + common::MAX_SKEW as u32).min(now);
            sim.partner_down(a, Some(since), false)
                .expect("partner-down is accepted in RECOVER");
            sim.run_until(sim.t + r.range(300, 1500));
            if r.chance(500) {
                sim.nodes[b].restart_at = sim.t + 1;
                sim.run_until(sim.t + 1500);
            }
            true
        }));
        match outcome {
            Ok(true) => blind += 1,
            Ok(false) => {}
            Err(e) => {
                eprintln!("blind partner-down seed {seed} failed ({p:?})");
                std::panic::resume_unwind(e);
            }
        }
    }
    eprintln!("blind partner-down from RECOVER: {blind} of {n} seeds reached it");
    assert!(
        blind * 4 > n,
        "only {blind} of {n} seeds reached a blind PARTNER-DOWN"
    );
}

/// The random simulation with the failback hold (flap guard) on: a PARTNER-DOWN server that
/// meets its recovered partner stays PARTNER-DOWN for 30-900 s more (restarted by every
/// reconnect) while crashes, partitions, resets, clock steps and operator commands go on.
/// The invariants are checked after every step; the pair must still fail back.
#[test]
fn simulation_failback_hold_many_seeds() {
    let n: u64 = std::env::var("SIM_SEEDS")
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(if cfg!(debug_assertions) { 100 } else { 2_000 });
    let mut cov = Coverage::default();
    for seed in 0..n {
        let mut r = Rng::new(seed.wrapping_mul(0x2545_f491_4f6c_dd1d));
        let mut p = SimParams::random(&mut r);
        p.failback_hold = 30 + (seed as u32 * 7919) % 871;
        let mut sim = Sim::new(seed, p.clone());
        let end = T0 + p.duration;
        let res = std::panic::catch_unwind(std::panic::AssertUnwindSafe(|| sim.run_until(end)));
        if let Err(e) = res {
            eprintln!("failback-hold seed {seed} failed ({p:?})");
            std::panic::resume_unwind(e);
        }
        cov.merge(&sim.cov);
    }
    let failbacks = cov
        .transitions
        .get(&(ServerState::PartnerDown, ServerState::Normal))
        .copied()
        .unwrap_or(0);
    eprintln!("failback hold: {n} seeds, {failbacks} failbacks (PARTNER-DOWN -> NORMAL)");
    if n >= 300 {
        assert!(failbacks > 0, "no failback completed under the hold");
    }
}
