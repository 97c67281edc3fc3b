//! Relay health check (issue 15 item 3, CPNR `rhc-*`) in the simulation: a pair in NORMAL with
//! load balancing (split 128, `load-balance-max-seconds` 0), clients behind one relay agent
//! that forwards every broadcast to both servers. The relay's path to one server is cut and
//! later restored; the other server must notice (the partner's clients' DISCOVERs are not
//! followed by REQUESTs naming the partner), report the relay interrupted, answer those
//! clients within the MCLT rules, and give them back once the partner is heard again. The
//! same `admit_with_relay_health` rule the DHCP engine runs decides every admission, the real
//! failover engines run the pair, and the simulation's invariants (no address on two clients,
//! the MCLT rule) are checked after every step.

mod common;

use common::{Client, Rng, Sim, SimParams, SimRelay, T0};
use xdhcpd_failover::policy::{bucket_is_primary, hba_from_split};
use xdhcpd_failover::{rfc3074_hash, RelayState, RhcConfig, ServerState};

fn rhc() -> RhcConfig {
    RhcConfig {
        enabled: true,
        unresponsive_time: 10,
        request_count: 3,
        elapsed_time: 4,
        response_time: 60,
        restart_time: 120,
        warning_interval: 300,
        max_relays: 64,
    }
}

fn params(clients: usize) -> SimParams {
    SimParams {
        split: Some(128),
        load_balance_max_secs: 0,
        clients,
        ..SimParams::scripted()
    }
}

fn both_normal(s: &Sim) -> bool {
    (0..2).all(|i| s.nodes[i].state() == Some(ServerState::Normal))
}

/// A fresh pair in NORMAL with `clients` clients behind the relay.
fn pair(seed: u64, clients: usize) -> Sim {
    let mut s = Sim::new(seed, params(clients));
    s.random_faults = false;
    s.random_clients = false;
    // The takeover gives addresses of the server's own pool only: keep the secondary's share.
    s.random_reclaims = false;
    let end = s.t + 120;
    while !both_normal(&s) {
        assert!(s.step(end), "the pair did not reach NORMAL");
    }
    s.relay = Some(SimRelay::new(rhc()));
    s.random_clients = true;
    s
}

/// Client keys not used yet whose load-balancing bucket is the primary's (`primary`) or not.
fn new_keys(s: &Sim, primary: bool, n: usize) -> Vec<Vec<u8>> {
    let hba = hba_from_split(128);
    let mut out = Vec::new();
    let mut i = 0x1000u32 + s.clients.len() as u32 * 16;
    while out.len() < n {
        let k = vec![0x02, 0x77, 0, (i >> 16) as u8, (i >> 8) as u8, i as u8];
        i += 1;
        if bucket_is_primary(&hba, rfc3074_hash(&k)) == primary
            && !s.clients.iter().any(|c| c.key == k)
        {
            out.push(k);
        }
    }
    out
}

/// Adds clients that start asking `gap` seconds apart from now; returns their indexes.
fn arrive(s: &mut Sim, keys: Vec<Vec<u8>>, gap: u32) -> Vec<usize> {
    let t = s.t;
    keys.into_iter()
        .enumerate()
        .map(|(n, key)| {
            s.clients.push(Client {
                key,
                lease: None,
                next_at: t + 1 + n as u32 * gap,
                waiting_since: 0,
                bootp: false,
            });
            s.clients.len() - 1
        })
        .collect()
}

fn relay(s: &Sim) -> &SimRelay {
    s.relay.as_ref().expect("relay scenario")
}

fn view(s: &Sim, node: usize) -> Option<xdhcpd_failover::RelayView> {
    let r = relay(s);
    let now = s.nodes[node].now(s.t);
    r.rhc[node]
        .snapshot(now)
        .into_iter()
        .find(|v| v.relay == r.giaddr)
}

fn state(s: &Sim, node: usize) -> RelayState {
    view(s, node).map_or(RelayState::Ok, |v| v.state)
}

/// First grant through the relay to client `c` at or after `from`: (true time, node).
fn granted(s: &Sim, c: usize, from: u32) -> Option<(u32, usize)> {
    relay(s)
        .grants
        .iter()
        .find(|g| g.2 == c && g.0 >= from)
        .map(|g| (g.0, g.1))
}

fn run(s: &mut Sim, secs: u32) {
    let end = s.t + secs;
    s.run_until(end);
}

/// One cut of the relay's path to node `down` and its repair: the other node takes the
/// partner's new clients over while the path is cut and gives them back afterwards.
fn cut_and_restore(s: &mut Sim, down: usize) {
    let up = 1 - down;
    let takeovers_before = relay(s).rhc[up].takeovers();
    let served_before = relay(s).granted_for_partner[up];
    // The cut node's clients (its bucket) and the other node's, arriving 3 s apart.
    let keys = new_keys(s, down == 0, 3);
    let theirs = arrive(s, keys, 3);
    let keys = new_keys(s, down == 1, 1);
    let ours = arrive(s, keys, 5);
    let cut_at = s.t;
    s.relay.as_mut().expect("relay").cut[down] = true;
    let mut saw_interrupted_at = None;
    for _ in 0..90 {
        run(s, 1);
        if saw_interrupted_at.is_none() && state(s, up) == RelayState::Interrupted {
            saw_interrupted_at = Some(s.t);
        }
    }
    let at = saw_interrupted_at.unwrap_or_else(|| {
        panic!(
            "node{up} never reported the relay interrupted after the cut to node{down}: {:?}\n{}",
            view(s, up),
            s.log_tail()
        )
    });
    // Detection needs rhc-unresponsive-time from the first unanswered DISCOVER and
    // rhc-request-count of them: not before 10 s, well within a minute.
    assert!(
        at >= cut_at + 10 && at <= cut_at + 40,
        "interrupted {} s after the cut",
        at - cut_at
    );
    assert!(relay(s).rhc[up].takeovers() > takeovers_before);
    // The node cut off hears nothing from the relay: it acts on nothing.
    assert_ne!(state(s, down), RelayState::Interrupted);
    // Every new client was served, the cut node's by the other node, for the partner.
    for &c in &theirs {
        let (t, by) = granted(s, c, cut_at).unwrap_or_else(|| {
            panic!(
                "client {c} (node{down}'s bucket) got no address: {:?}; relay at node{up}: \
                 {:?}; grants {:?}; free for node{up}: {}\n{}",
                s.clients[c],
                view(s, up),
                relay(s).grants,
                (0..s.nodes[up].table.present())
                    .filter(|&k| {
                        let now = s.nodes[up].now(s.t);
                        s.nodes[up]
                            .cell
                            .load()
                            .may_allocate_lease(now, s.nodes[up].lease(k))
                    })
                    .count(),
                s.log_tail()
            )
        });
        assert_eq!(
            by, up,
            "client {c} bound by node{by} though the relay cannot reach it"
        );
        assert!(t <= at + 30, "client {c} waited {} s", t - cut_at);
    }
    for &c in &ours {
        let (_, by) = granted(s, c, cut_at).unwrap_or_else(|| panic!("client {c} unserved"));
        assert_eq!(by, up);
    }
    assert!(relay(s).granted_for_partner[up] >= served_before + theirs.len() as u64);
    let v = view(s, up).expect("the relay is listed");
    assert!(v.served >= theirs.len() as u64 && v.takeovers > 0, "{v:?}");
    assert!(
        both_normal(s),
        "the pair stays NORMAL: only one relay's path is cut"
    );

    // Repair. The takeover lasts at most rhc-response-time; then the partner is heard again
    // (its OFFERs win, REQUESTs name it) and the relay is healthy.
    let restored_at = s.t;
    s.relay.as_mut().expect("relay").cut[down] = false;
    let keys = new_keys(s, down == 0, 4);
    let back = arrive(s, keys, 20);
    let mut ok_at = None;
    for _ in 0..150 {
        run(s, 1);
        if ok_at.is_none() && state(s, up) == RelayState::Ok {
            ok_at = Some(s.t);
        }
    }
    let ok_at = ok_at.unwrap_or_else(|| {
        panic!(
            "node{up} still reports the relay {:?} after the repair",
            view(s, up)
        )
    });
    assert!(
        ok_at <= restored_at + rhc().response_time + 30,
        "healthy only {} s after the repair",
        ok_at - restored_at
    );
    // Clients that arrive once the relay is healthy again go to their own server.
    for &c in &back {
        if let Some((t, by)) = granted(s, c, restored_at) {
            if t > ok_at {
                assert_eq!(by, down, "client {c} served by node{by} after the recovery");
            }
        }
    }
    assert!(
        back.iter().all(|&c| granted(s, c, restored_at).is_some()),
        "every client after the repair is served"
    );
}

#[test]
fn relay_health_failover_cut_relay_is_taken_over_and_recovers_in_simulation() {
    let mut s = pair(11, 4);
    // Healthy: a few minutes of traffic; nobody takes anybody's clients over.
    let keys = new_keys(&s, true, 2);
    let fresh = arrive(&mut s, keys, 4);
    run(&mut s, 200);
    for i in 0..2 {
        assert_eq!(
            relay(&s).rhc[i].takeovers(),
            0,
            "node{i} took over a healthy relay"
        );
        assert_eq!(relay(&s).granted_for_partner[i], 0);
        assert_ne!(state(&s, i), RelayState::Interrupted);
    }
    for &c in &fresh {
        assert_eq!(granted(&s, c, T0).map(|g| g.1), Some(0), "client {c}");
    }
    // The relay loses the primary, then (after the repair) the secondary.
    cut_and_restore(&mut s, 0);
    cut_and_restore(&mut s, 1);
}

/// Random cuts, partitions between the partners, crashes and restarts, with the relay health
/// check on: the takeovers never break the pair's invariants (checked at every step).
#[test]
fn relay_health_random_cuts_keep_the_failover_invariants() {
    let seeds: u64 = std::env::var("SIM_SEEDS")
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(if cfg!(debug_assertions) { 40 } else { 400 });
    let mut takeovers = 0;
    for seed in 0..seeds {
        let mut r = Rng::new(seed ^ 0x5eed);
        let p = SimParams {
            split: if r.chance(700) { Some(128) } else { None },
            load_balance_max_secs: 0,
            clients: r.range(6, 20) as usize,
            faults: r.range(50, 300),
            ..SimParams::scripted()
        };
        let mut s = Sim::new(seed, p);
        s.relay = Some(SimRelay::new(rhc()));
        let end = T0 + 2400;
        let mut next_cut = T0 + r.range(60, 400);
        let res = std::panic::catch_unwind(std::panic::AssertUnwindSafe(|| {
            while s.step(end) {
                if s.t >= next_cut {
                    let i = r.below(2) as usize;
                    let rel = s.relay.as_mut().expect("relay");
                    rel.cut[i] = !rel.cut[i];
                    next_cut = s.t + r.range(30, 400);
                }
            }
        }));
        if let Err(e) = res {
            eprintln!("seed {seed} failed\n{}", s.log_tail());
            std::panic::resume_unwind(e);
        }
        takeovers += relay(&s).rhc[0].takeovers() + relay(&s).rhc[1].takeovers();
    }
    assert!(takeovers > 0, "no seed exercised a takeover");
}
