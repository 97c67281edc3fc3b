//! A reload that adds addresses to both partners of a pair (issue 11), on the simulation
//! harness: the shipped record rules (`BindingSync`, `FailoverPolicy::may_allocate_lease`)
//! over tables whose pools grow while the pair serves, with load balancing so that the
//! secondary gives out addresses too.
//!
//! What must hold: the pair stays NORMAL; while only one side has the new pool, the other
//! refuses the updates for it (reject reason 1) and they reach it after its reload; the
//! secondary gets its share of the new pool and never binds a new address the primary has not
//! granted it; no address is bound to two clients (the harness's invariants, every step).

mod common;

use common::{Sim, SimParams, POOL};
use lease_store::LeaseState;
use xdhcpd_failover::store::sync::{ABSENT_WAIT_MAX, ABSENT_WAIT_MIN};
use xdhcpd_failover::ServerState;

/// Records in the pools before the reload; the reload adds `OLD..POOL`.
const OLD: usize = POOL / 2;

/// A NORMAL pair with `OLD` addresses, the secondary holding its share (BACKUP).
fn pair(seed: u64) -> Sim {
    let p = SimParams {
        split: Some(128),
        clients: 24,
        ..SimParams::scripted()
    };
    let mut s = Sim::new(seed, p);
    s.random_faults = false;
    s.random_clients = false;
    for n in &mut s.nodes {
        n.table.1 = OLD;
    }
    run_until(&mut s, 300, |s| {
        both_normal(s) && backups(s, 1, 0..OLD) == OLD / 2 && idle(s)
    });
    s
}

fn both_normal(s: &Sim) -> bool {
    (0..2).all(|i| s.nodes[i].state() == Some(ServerState::Normal))
}

fn idle(s: &Sim) -> bool {
    (0..2).all(|i| {
        s.nodes[i].engine.as_ref().is_some_and(|e| {
            e.pending_updates() == 0 && e.unacked_updates() == 0 && e.communications_ok()
        })
    })
}

fn backups(s: &Sim, i: usize, r: std::ops::Range<usize>) -> usize {
    r.filter(|&k| s.nodes[i].lease(k).state == LeaseState::Backup)
        .count()
}

/// Binding updates of the primary the secondary refused, since start.
fn refused(s: &Sim) -> u64 {
    s.nodes[0]
        .engine
        .as_ref()
        .map_or(0, |e| e.stats().bndupd_rejected_by_partner)
}

/// What the checked runs saw.
#[derive(Default)]
struct Seen {
    /// Leases the secondary granted on addresses the reload added.
    secondary_new_grants: usize,
}

/// After every step: the pair is NORMAL, and the secondary holds no live binding (in its
/// table or at a client) of an address the primary counts as its own FREE one, nor one
/// outside its pools.
fn check(s: &Sim) {
    assert!(
        both_normal(s),
        "the pair left NORMAL: {:?} {:?}\n{}",
        s.nodes[0].state(),
        s.nodes[1].state(),
        s.log_tail()
    );
    let now1 = s.nodes[1].now(s.t);
    for k in 0..POOL {
        let (p, b) = (s.nodes[0].lease(k), s.nodes[1].lease(k));
        if b.state == LeaseState::Active && b.expiry > now1 {
            assert!(
                k < s.nodes[1].table.present(),
                "secondary bound {k} outside its pools\n{}",
                s.log_tail()
            );
            assert_ne!(
                p.state,
                LeaseState::Free,
                "secondary bound address {k} that the primary holds FREE (never granted)\n{}",
                s.log_tail()
            );
        }
    }
    for c in &s.clients {
        if let Some((k, end, node, ..)) = c.lease {
            if node == 1 && end > s.t && k >= OLD {
                assert_ne!(
                    s.nodes[0].lease(k).state,
                    LeaseState::Free,
                    "a client holds new address {k} from the secondary, FREE on the primary\n{}",
                    s.log_tail()
                );
            }
        }
    }
}

/// Runs (invariants every step) until `f` holds, at most `max` seconds.
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

/// Runs `secs` seconds, checking after every second.
fn run_checked(s: &mut Sim, secs: u32, seen: &mut Seen) {
    let end = s.t + secs;
    while s.t < end {
        let next = s.t + 1;
        s.run_until(next);
        check(s);
        let fresh = s
            .clients
            .iter()
            .filter(|c| matches!(c.lease, Some((k, e, 1, ..)) if k >= OLD && e > s.t))
            .count();
        seen.secondary_new_grants = seen.secondary_new_grants.max(fresh);
    }
}

/// Stops the clients, lets the updates drain, then requires the same live bindings on both.
fn assert_converged(s: &mut Sim) {
    s.random_clients = false;
    run_until(s, 120, idle);
    let t = s.t;
    for k in 0..POOL {
        let (a, b) = (s.nodes[0].lease(k), s.nodes[1].lease(k));
        let live = |i: usize, l: &lease_store::Lease| {
            l.state == LeaseState::Active && l.expiry > s.nodes[i].now(t)
        };
        if live(0, a) || live(1, b) {
            assert_eq!(
                (a.state, a.client),
                (b.state, b.client),
                "address {k} differs after convergence\n{}",
                s.log_tail()
            );
        }
    }
    assert_eq!(s.nodes[0].sync.absent_at_partner(), 0);
    assert_eq!(s.nodes[1].sync.absent_at_partner(), 0);
}

#[test]
fn pool_added_by_reload_failover_primary_first_secondary_gets_its_share() {
    let mut s = pair(11);
    let mut seen = Seen::default();
    s.random_clients = true;
    // Clients use up the old pool on both sides.
    run_checked(&mut s, 200, &mut seen);
    // The primary reloads first: its balancer grants the backup half of the new addresses;
    // the secondary, without the pool yet, refuses those updates (and those of the primary's
    // new leases) as outside its pools.
    let refused0 = refused(&s);
    s.reload_pool(0, POOL);
    let granted = backups(&s, 0, OLD..POOL);
    assert!(granted >= 4, "primary granted {granted} new addresses");
    run_until(&mut s, 30, |s| refused(s) >= refused0 + granted as u64);
    check(&s);
    assert_eq!(backups(&s, 1, OLD..POOL), 0);
    assert!(s.nodes[0].sync.absent_at_partner() >= granted);
    // Clients go on for a minute with only the primary serving the new addresses.
    run_checked(&mut s, 60, &mut seen);
    assert_eq!(
        seen.secondary_new_grants, 0,
        "secondary served an address it has no pool for"
    );
    assert!(
        (0..POOL).any(|k| k >= OLD && s.nodes[0].lease(k).state == LeaseState::Active),
        "the primary served the new pool"
    );
    // The secondary reloads: it asks for what it refused (UPDREQ) and has its share at once,
    // before the primary's own retry is due.
    let due = s.nodes[0]
        .sync
        .absent_retry_at()
        .expect("a retry is planned");
    assert!(
        due > s.nodes[0].now(s.t) + 20,
        "the primary's retry is due within the window: {due} at {}",
        s.nodes[0].now(s.t)
    );
    let t_reload = s.t;
    s.reload_pool(1, POOL);
    // Every grant of the new pool and every lease the primary made there reaches it.
    let primary_side_known = |s: &Sim| {
        (OLD..POOL).all(|k| {
            let (p, b) = (s.nodes[0].lease(k), s.nodes[1].lease(k));
            match p.state {
                LeaseState::Backup => b.state == LeaseState::Backup,
                LeaseState::Active => (b.state, b.client) == (p.state, p.client),
                _ => true,
            }
        })
    };
    run_until(&mut s, 20, |s| {
        s.nodes[0].sync.absent_at_partner() == 0
            && backups(s, 1, OLD..POOL) > 0
            && primary_side_known(s)
    });
    assert!(s.t - t_reload <= 20);
    check(&s);
    // Both serve the new pool from now on.
    run_checked(&mut s, 600, &mut seen);
    assert!(
        seen.secondary_new_grants > 0,
        "the secondary never served a new address\n{}",
        s.log_tail()
    );
    assert_converged(&mut s);
}

#[test]
fn pool_added_by_reload_failover_secondary_first_gets_its_share_from_the_primary() {
    let mut s = pair(12);
    let mut seen = Seen::default();
    s.random_clients = true;
    run_checked(&mut s, 200, &mut seen);
    // The secondary reloads first: its new records are FREE (the primary's), so it serves
    // none of them while the primary has not reloaded.
    s.reload_pool(1, POOL);
    run_checked(&mut s, 120, &mut seen);
    assert_eq!(seen.secondary_new_grants, 0);
    assert_eq!(backups(&s, 1, OLD..POOL), 0);
    // The primary reloads: its grants are accepted at once, nothing is refused.
    let refused0 = refused(&s);
    s.reload_pool(0, POOL);
    let granted = backups(&s, 0, OLD..POOL);
    assert!(granted >= 4, "primary granted {granted} new addresses");
    run_until(&mut s, 30, |s| backups(s, 1, OLD..POOL) >= granted);
    check(&s);
    assert_eq!(
        refused0,
        refused(&s),
        "updates refused with both sides reloaded"
    );
    run_checked(&mut s, 600, &mut seen);
    assert!(seen.secondary_new_grants > 0, "{}", s.log_tail());
    assert_converged(&mut s);
}

#[test]
fn pool_added_by_reload_failover_refused_updates_are_retried_with_backoff() {
    let mut s = pair(13);
    let mut seen = Seen::default();
    // No clients: only the primary's grants of the new addresses are in flight.
    s.reload_pool(0, POOL);
    let granted = backups(&s, 0, OLD..POOL) as u64;
    assert!(granted > 0);
    run_until(&mut s, ABSENT_WAIT_MIN - 1, |s| refused(s) >= granted);
    let first = refused(&s);
    assert_eq!(first, granted, "each grant refused once");
    // Ten minutes without the secondary's reload: retried at growing intervals (10 s, then
    // 20, 40, ... up to 300), not at every 10-second scan (that would be 60 rounds).
    run_checked(&mut s, 600, &mut seen);
    let rounds = (refused(&s) - first) / granted;
    eprintln!("reload pool: {rounds} retry rounds of {granted} refused grants in 600 s");
    assert!(
        (3..=7).contains(&rounds),
        "{rounds} retry rounds in 600 s (waits {ABSENT_WAIT_MIN}..{ABSENT_WAIT_MAX} s)"
    );
    // The secondary gets the pool without asking (as if its UPDREQ were lost): the next retry
    // delivers the grants.
    s.nodes[1].table.grow(POOL);
    run_until(&mut s, ABSENT_WAIT_MAX + 20, |s| {
        backups(s, 1, OLD..POOL) as u64 == granted
    });
    assert_eq!(s.nodes[0].sync.absent_at_partner(), 0);
    assert_converged(&mut s);
}
