//! N:1 backup (issue 15 item 4): one standby server, the secondary of two primaries, in two
//! failover relationships. Each relationship is the pair simulation of `sim.rs` (the code the
//! daemon ships: `FailoverEngine`, `BindingSync`, `FailoverPolicy`), and the two run in
//! lockstep, one simulated second at a time, sharing what is one host's: the standby's
//! crashes and restarts (the same moment, the same kind), its graceful stops, its isolation
//! from clients, its clock. Partitions, resets and operator commands stay per relationship,
//! so one relationship's link can be cut while the other's is up; each relationship's
//! addresses, clients and lease records are its own (the daemon keeps them apart in one
//! lease file: `userspace/src/failover/table_store.rs`, `PoolScope`).
//!
//! What this adds to the pair simulation: the standby can die while a main is down (in the
//! pair model a server crashes only while its partner is up), because the standby's crash
//! comes from the other relationship. Invariants (no address on two clients, every ACKed
//! lease on a durable table, the MCLT rule) are checked after every step of each pair.
//!
//! `SIM_N1_SEEDS=n` (default 300 in debug, 2,000 in release; the 10,000-seed run is
//! `--ignored`), `SIM_N1_SEED=s` runs one seed verbosely.

mod common;

use common::{Coverage, Rng, Sim, SimParams, T0};
use xdhcpd_failover::ServerState;

/// The standby is node 1 of both relationships.
const STANDBY: usize = 1;

/// What the lockstep last saw of each relationship's standby, to repeat its changes in the
/// other relationship.
#[derive(Clone, Copy, Default)]
struct Seen {
    crashes: usize,
    offset: i64,
    isolated_until: u32,
    stops: usize,
}

fn seen(s: &Sim) -> Seen {
    Seen {
        crashes: s.crash_log.len(),
        offset: s.nodes[STANDBY].offset,
        isolated_until: s.nodes[STANDBY].isolated_until,
        stops: s
            .pending_stops
            .iter()
            .filter(|(_, i, _)| *i == STANDBY)
            .count(),
    }
}

/// Counts of the shared-host events (for the coverage report).
#[derive(Default, Clone, Copy)]
struct N1Cov {
    mirrored_crashes: u64,
    /// The standby crashed while a main of the relationship it was repeated in was down.
    double_outages: u64,
    mirrored_stops: u64,
    mirrored_isolations: u64,
}

/// Repeats in `dst` what happened to the standby in `src` since `before` (this second).
fn mirror(src: &mut Sim, dst: &mut Sim, before: Seen, cov: &mut N1Cov) {
    let t = dst.t;
    // Crashes: one process, so one crash for every relationship, restarting together.
    let new: Vec<(u32, usize, bool)> = src.crash_log[before.crashes..]
        .iter()
        .copied()
        .filter(|c| c.1 == STANDBY)
        .collect();
    for (_, _, rst) in new {
        let restart_at = src.nodes[STANDBY].restart_at;
        if dst.nodes[STANDBY].alive() {
            if !dst.nodes[0].alive() {
                cov.double_outages += 1;
            }
            cov.mirrored_crashes += 1;
            dst.note("standby: CRASH repeated from the other relationship".into());
            dst.pending_stops.retain(|(_, i, _)| *i != STANDBY);
            dst.crash(STANDBY, rst, restart_at.saturating_sub(t));
        }
        // Both dead (each crashed on its own in this second): restart together.
        let at = restart_at.max(dst.nodes[STANDBY].restart_at);
        dst.nodes[STANDBY].restart_at = at;
        src.nodes[STANDBY].restart_at = at;
    }
    // A graceful stop (SHUTDOWN or PAUSE, then exit): the daemon stops every relationship
    // with SHUTDOWN and exits once.
    let stops: Vec<(u32, usize, u32)> = src
        .pending_stops
        .iter()
        .copied()
        .filter(|(_, i, _)| *i == STANDBY)
        .collect();
    if stops.len() > before.stops
        && dst.nodes[STANDBY].alive()
        && !dst.pending_stops.iter().any(|(_, i, _)| *i == STANDBY)
    {
        if let Some(&stop) = stops.last() {
            let now = dst.nodes[STANDBY].now(t);
            if let Some(e) = dst.nodes[STANDBY].engine.as_mut() {
                if !matches!(e.state(), ServerState::Paused | ServerState::Shutdown) {
                    e.shutdown(now);
                }
            }
            dst.note("standby: SHUTDOWN repeated from the other relationship".into());
            dst.drain(STANDBY);
            dst.nodes[STANDBY].restart_at = 0;
            dst.pending_stops.push(stop);
            cov.mirrored_stops += 1;
        }
    }
    // Cut off from clients (and from every partner): one host.
    let until = src.nodes[STANDBY].isolated_until;
    if until > before.isolated_until && until > t && dst.nodes[STANDBY].isolated_until < until {
        dst.note(format!(
            "standby: ISOLATED {}s (repeated from the other relationship)",
            until - t
        ));
        dst.nodes[STANDBY].isolated_until = until;
        dst.nodes[STANDBY].isolated_from = src.nodes[STANDBY].isolated_from;
        dst.nodes[STANDBY].needs_sync = true;
        dst.partition(until - t);
        cov.mirrored_isolations += 1;
    }
    // One clock.
    let off = src.nodes[STANDBY].offset;
    if off != before.offset {
        dst.nodes[STANDBY].offset = off;
    }
}

/// Two relationships in lockstep until `end`.
fn run_lockstep(sims: &mut [Sim; 2], end: u32, cov: &mut N1Cov) {
    let mut t = sims[0].t.max(sims[1].t);
    while t < end {
        t += 1;
        let before = [seen(&sims[0]), seen(&sims[1])];
        for s in sims.iter_mut() {
            s.run_until(t);
        }
        let [a, b] = &mut *sims;
        mirror(a, b, before[0], cov);
        mirror(b, a, before[1], cov);
        for s in sims.iter() {
            s.check_invariants();
        }
    }
}

fn new_n1(seed: u64) -> ([Sim; 2], [SimParams; 2]) {
    let mut r = Rng::new(seed.wrapping_mul(0x2545_f491_4f6c_dd1d) ^ 0x4e31);
    let pa = SimParams::random(&mut r);
    let pb = SimParams::random(&mut r);
    let a = Sim::new(seed.wrapping_mul(2), pa.clone());
    let b = Sim::new(seed.wrapping_mul(2) + 1, pb.clone());
    ([a, b], [pa, pb])
}

fn run_seed(seed: u64, verbose: bool) -> (Coverage, N1Cov) {
    let (mut sims, ps) = new_n1(seed);
    for s in sims.iter_mut() {
        s.verbose = verbose;
    }
    let end = T0 + ps[0].duration.max(ps[1].duration);
    let mut n1 = N1Cov::default();
    let r = std::panic::catch_unwind(std::panic::AssertUnwindSafe(|| {
        run_lockstep(&mut sims, end, &mut n1)
    }));
    if let Err(e) = r {
        eprintln!(
            "N:1 seed {seed} failed (relationship A {:?}, B {:?})\nA's log:\n{}\nB's log:\n{}",
            ps[0],
            ps[1],
            sims[0].log_tail(),
            sims[1].log_tail()
        );
        std::panic::resume_unwind(e);
    }
    let mut cov = Coverage::default();
    for s in sims.iter_mut() {
        for i in 0..2 {
            s.count_update_stats(i);
        }
        cov.merge(&s.cov);
    }
    (cov, n1)
}

fn many_seeds(n: u64) {
    let threads = std::thread::available_parallelism()
        .map_or(2, |n| n.get())
        .min(8) as u64;
    let start = std::time::Instant::now();
    let results: Vec<(Coverage, N1Cov)> = std::thread::scope(|s| {
        let hs: Vec<_> = (0..threads)
            .map(|k| {
                s.spawn(move || {
                    let mut cov = Coverage::default();
                    let mut n1 = N1Cov::default();
                    let mut seed = k;
                    while seed < n {
                        let (c, m) = run_seed(seed, false);
                        cov.merge(&c);
                        n1.mirrored_crashes += m.mirrored_crashes;
                        n1.double_outages += m.double_outages;
                        n1.mirrored_stops += m.mirrored_stops;
                        n1.mirrored_isolations += m.mirrored_isolations;
                        seed += threads;
                    }
                    (cov, n1)
                })
            })
            .collect();
        hs.into_iter()
            .map(|h| h.join().expect("N:1 simulation thread panicked"))
            .collect()
    });
    let mut cov = Coverage::default();
    let mut n1 = N1Cov::default();
    for (c, m) in &results {
        cov.merge(c);
        n1.mirrored_crashes += m.mirrored_crashes;
        n1.double_outages += m.double_outages;
        n1.mirrored_stops += m.mirrored_stops;
        n1.mirrored_isolations += m.mirrored_isolations;
    }
    eprintln!(
        "N:1 simulation: {n} seeds (2 relationships each) in {:.1}s",
        start.elapsed().as_secs_f64()
    );
    eprintln!(
        "  grants {}, renewals {}, crashes {}, partitions {}",
        cov.grants, cov.renewals, cov.crashes, cov.partitions
    );
    eprintln!(
        "  standby: {} crash(es) repeated in the other relationship ({} while that \
         relationship's main was down), {} graceful stop(s), {} isolation(s)",
        n1.mirrored_crashes, n1.double_outages, n1.mirrored_stops, n1.mirrored_isolations
    );
    eprintln!(
        "  operator partner-down: blind {}, refused without --force {}, forced {}",
        cov.blind_partner_downs, cov.partner_downs_refused, cov.forced_partner_downs
    );
    assert!(
        cov.grants > n,
        "client traffic too thin: {} grants",
        cov.grants
    );
    assert!(n1.mirrored_crashes > 0, "no standby crash was shared");
    if n >= 300 {
        assert!(
            n1.double_outages > 0,
            "the standby never died while a main was down: the N:1 case is not exercised"
        );
        for s in [
            ServerState::Normal,
            ServerState::CommunicationsInterrupted,
            ServerState::PartnerDown,
            ServerState::Recover,
        ] {
            assert!(cov.states.contains_key(&s), "{} never reached", s.name());
        }
    }
}

fn seeds(default_debug: u64, default_release: u64) -> u64 {
    std::env::var("SIM_N1_SEEDS")
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(if cfg!(debug_assertions) {
            default_debug
        } else {
            default_release
        })
}

#[test]
fn failover_n1_simulation_many_seeds() {
    if let Ok(s) = std::env::var("SIM_N1_SEED") {
        let seed: u64 = s.parse().expect("SIM_N1_SEED must be a number");
        run_seed(seed, true);
        return;
    }
    many_seeds(seeds(300, 2_000));
}

/// The must-show figure: 10,000 seeds (`cargo test --release -p xdhcpd-failover --test
/// sim_n1 -- --ignored`).
#[test]
#[ignore = "10,000 seeds: run with --ignored (release)"]
fn failover_n1_simulation_10000_seeds() {
    many_seeds(seeds(10_000, 10_000));
}

/// A partition of one relationship leaves the other NORMAL: relationship A's link is cut
/// (both servers up and serving), A's pair goes COMMUNICATIONS-INTERRUPTED while B's pair,
/// with the same standby, stays NORMAL and keeps granting.
#[test]
fn failover_n1_partition_of_one_relationship_leaves_the_other_normal() {
    let p = SimParams::scripted();
    let mut sims = [Sim::new(11, p.clone()), Sim::new(12, p.clone())];
    for s in sims.iter_mut() {
        s.random_faults = false;
    }
    let mut cov = N1Cov::default();
    run_lockstep(&mut sims, T0 + 200, &mut cov);
    let states = |s: &Sim| [s.nodes[0].state(), s.nodes[1].state()];
    for s in &sims {
        assert_eq!(
            states(s),
            [Some(ServerState::Normal); 2],
            "{}",
            s.log_tail()
        );
    }
    sims[0].partition(400);
    let served = |s: &Sim| s.cov.grants + s.cov.renewals;
    let served_before = served(&sims[1]);
    let t = sims[0].t;
    run_lockstep(&mut sims, t + 120, &mut cov);
    assert_eq!(
        states(&sims[0]),
        [Some(ServerState::CommunicationsInterrupted); 2],
        "{}",
        sims[0].log_tail()
    );
    assert_eq!(
        states(&sims[1]),
        [Some(ServerState::Normal); 2],
        "{}",
        sims[1].log_tail()
    );
    assert!(served(&sims[1]) > served_before, "B stopped serving");
    // The cut heals: A is NORMAL again, B never left it.
    let t = sims[0].t;
    run_lockstep(&mut sims, t + 400, &mut cov);
    assert_eq!(states(&sims[0]), [Some(ServerState::Normal); 2]);
    assert_eq!(states(&sims[1]), [Some(ServerState::Normal); 2]);
}

/// A standby crash is one event for both relationships: both mains go
/// COMMUNICATIONS-INTERRUPTED and both relationships come back to NORMAL when it restarts.
#[test]
fn failover_n1_standby_crash_hits_both_relationships() {
    let p = SimParams::scripted();
    let mut sims = [Sim::new(21, p.clone()), Sim::new(22, p.clone())];
    for s in sims.iter_mut() {
        s.random_faults = false;
    }
    let mut cov = N1Cov::default();
    run_lockstep(&mut sims, T0 + 200, &mut cov);
    let before = seen(&sims[0]);
    sims[0].crash(STANDBY, true, 60);
    {
        let [a, b] = &mut sims;
        mirror(a, b, before, &mut cov);
    }
    let t = sims[0].t;
    run_lockstep(&mut sims, t + 10, &mut cov);
    assert_eq!(cov.mirrored_crashes, 1);
    for s in &sims {
        assert!(!s.nodes[STANDBY].alive());
        assert_eq!(
            s.nodes[0].state(),
            Some(ServerState::CommunicationsInterrupted),
            "{}",
            s.log_tail()
        );
    }
    let t = sims[0].t;
    run_lockstep(&mut sims, t + 300, &mut cov);
    for s in &sims {
        assert_eq!(
            [s.nodes[0].state(), s.nodes[1].state()],
            [Some(ServerState::Normal); 2],
            "{}",
            s.log_tail()
        );
    }
}
