//! Issue 15 item 5, guards and visibility: the rebind-limit RENEW rule, the failback hold
//! (flap guard) and the operator's `failback`, the failover event log, and the resync
//! progress. The pair scenarios run on the simulation harness (random faults off, the
//! invariants checked after every step); the progress test drives two engines by hand so it
//! can stop between round trips.

mod common;

use common::{Sim, SimParams};
use xdhcpd_failover::{
    policy::hba_from_split, Action, Admission, Binding, Config, DropReason, FailoverEngine,
    FailoverEventKind, FailoverPolicy, RequestKind, ResyncDirection, Role, ServerState,
    EVENT_LOG_LEN,
};

fn st(s: &Sim, i: usize) -> Option<ServerState> {
    s.nodes[i].state()
}

fn engine(s: &Sim, i: usize) -> &FailoverEngine {
    s.nodes[i].engine.as_ref().expect("node is alive")
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

fn both(s: &Sim, state: ServerState) -> bool {
    st(s, 0) == Some(state) && st(s, 1) == Some(state)
}

fn kinds(s: &Sim, i: usize) -> Vec<FailoverEventKind> {
    engine(s, i).events().map(|e| e.kind).collect()
}

// -------------------------------------------------------------------------------------------
// rebind-limit: the partner's clients' RENEWs in NORMAL

fn policy(role: Role, state: ServerState, split: Option<u16>, rebind_limit: u32) -> FailoverPolicy {
    FailoverPolicy {
        role,
        state,
        mclt: 3600,
        lease_period_factor_permille: 1500,
        partner_down_usable_at: 10_000,
        hba: hba_from_split(split.unwrap_or(256)),
        load_balance_max_secs: 3,
        rebind_limit,
        own_pool_waits: false,
        expiry_grace: 30,
    }
}

/// With rebind-limit set, NORMAL leaves a RENEW from a client the partner should serve
/// unanswered (the client rebinds at the short T2 it was given and reaches the partner);
/// without it, or outside NORMAL, or for our own clients, RENEW is answered. REBIND is still
/// answered (the partner may not hear that relay), and `secs` does not open the door.
#[test]
fn rebind_limit_failover_partners_renew_unanswered_in_normal() {
    let key = [7u8; 6];
    // The backup without load balancing: every client is the primary's.
    let b = policy(Role::Secondary, ServerState::Normal, None, 300);
    for secs in [0, 3, 60, 600] {
        assert_eq!(
            b.admit(RequestKind::Renew, &key, secs),
            Admission::Drop(DropReason::PartnersRenew),
            "secs {secs}"
        );
    }
    assert_eq!(
        b.admit(RequestKind::Rebind, &key, 0),
        Admission::ServeForPartner
    );
    assert_eq!(
        b.admit(RequestKind::Release, &key, 0),
        Admission::ServeForPartner
    );
    // No rebind-limit: renewals are answered by whoever gets them (draft-12 9.8.2).
    let b0 = policy(Role::Secondary, ServerState::Normal, None, 0);
    assert_eq!(
        b0.admit(RequestKind::Renew, &key, 0),
        Admission::ServeForPartner
    );
    // Outside NORMAL the partner cannot take the client back: answered, T2 capped.
    for s in [
        ServerState::CommunicationsInterrupted,
        ServerState::PartnerDown,
        ServerState::RecoverDone,
    ] {
        let p = policy(Role::Secondary, s, None, 300);
        let a = p.admit(RequestKind::Renew, &key, 0);
        assert_eq!(a, Admission::ServeForPartner, "{s}");
        assert_eq!(p.rebind_time(a, 1800, 3150), 2100);
    }
    // The primary's own clients renew with it as always.
    let m = policy(Role::Primary, ServerState::Normal, None, 300);
    assert_eq!(m.admit(RequestKind::Renew, &key, 0), Admission::Serve);
    // Load balancing: only the partner's buckets are sent back.
    let (mut dropped, mut served) = (0, 0);
    for i in 0..512u32 {
        let k = i.to_be_bytes();
        let p = policy(Role::Primary, ServerState::Normal, Some(128), 300);
        match p.admit(RequestKind::Renew, &k, 0) {
            Admission::Drop(DropReason::PartnersRenew) => {
                dropped += 1;
                assert!(!p.owns_client(&k));
            }
            Admission::Serve => {
                served += 1;
                assert!(p.owns_client(&k));
            }
            other => panic!("{other:?}"),
        }
    }
    assert!(dropped > 100 && served > 100, "{dropped} / {served}");
}

// -------------------------------------------------------------------------------------------
// Failback hold (flap guard)

/// A pair in NORMAL; then the secondary crashes, the primary is declared PARTNER-DOWN and
/// serves alone past the MCLT; the secondary comes back and recovers.
fn takeover_and_return(hold: u32) -> Sim {
    let p = SimParams {
        clients: 12,
        failback_hold: hold,
        ..SimParams::scripted()
    };
    let mut s = Sim::new(11, p);
    s.random_faults = false;
    run_until(&mut s, 60, |s| both(s, ServerState::Normal));
    s.run_until(s.t + 200);
    s.crash(1, true, 1_000_000);
    s.run_until(s.t + 5);
    s.partner_down(0, None, false)
        .expect("COMMUNICATIONS-INTERRUPTED takes partner-down");
    s.run_until(s.t + 200);
    s.restart(1);
    run_until(&mut s, 400, |s| {
        st(s, 1) == Some(ServerState::RecoverDone) || st(s, 1) == Some(ServerState::Normal)
    });
    s
}

/// Without the hold the primary steps back to NORMAL as soon as the secondary has recovered;
/// with `failback-hold` 600 it stays PARTNER-DOWN until it has been PARTNER-DOWN and has
/// heard the partner for 600 s, tells so in the event log, and then fails back.
#[test]
fn failback_hold_failover_keeps_partner_down_until_stable() {
    let mut s = takeover_and_return(0);
    run_until(&mut s, 30, |s| both(s, ServerState::Normal));
    assert!(!kinds(&s, 0).contains(&FailoverEventKind::FailbackHeld));

    let mut s = takeover_and_return(600);
    assert_eq!(st(&s, 1), Some(ServerState::RecoverDone));
    assert_eq!(st(&s, 0), Some(ServerState::PartnerDown));
    let until = engine(&s, 0).failback_hold_until().expect("the hold is on");
    let e = engine(&s, 0);
    assert!(until >= e.state_since() + 600, "counts from PARTNER-DOWN");
    let held = e
        .events()
        .find(|v| v.kind == FailoverEventKind::FailbackHeld)
        .expect("held event");
    assert_eq!(held.until, until);
    // Still PARTNER-DOWN (and the partner RECOVER-DONE) one second before the end.
    let node_now = s.nodes[0].now(s.t);
    s.run_until(s.t + (until - node_now) - 1);
    assert_eq!(st(&s, 0), Some(ServerState::PartnerDown), "held");
    assert_eq!(st(&s, 1), Some(ServerState::RecoverDone));
    run_until(&mut s, 10, |s| both(s, ServerState::Normal));
    assert!(s.nodes[0].now(s.t) >= until);
    let e = engine(&s, 0);
    let active = e.events().last().expect("an event");
    assert_eq!(active.kind, FailoverEventKind::Active);
    assert!(active.remarks.contains("failback complete"), "{active:?}");
}

/// A link that drops during the hold restarts it: the hold counts from the last time the
/// partner came back, so a flapping partner never gets the failback.
#[test]
fn failback_hold_failover_restarts_when_the_link_flaps() {
    let mut s = takeover_and_return(600);
    let first = engine(&s, 0).failback_hold_until().expect("held");
    s.run_until(s.t + 300);
    s.reset_connection();
    run_until(&mut s, 60, |s| {
        s.nodes[0]
            .engine
            .as_ref()
            .is_some_and(|e| e.communications_ok())
            && st(s, 1) == Some(ServerState::RecoverDone)
    });
    let second = engine(&s, 0).failback_hold_until().expect("held again");
    assert!(
        second >= first + 300,
        "the hold restarts at the reconnect: {first} -> {second}"
    );
    let node_now = s.nodes[0].now(s.t);
    s.run_until(s.t + (first - node_now) + 5);
    assert_eq!(
        st(&s, 0),
        Some(ServerState::PartnerDown),
        "not back at the first deadline"
    );
    run_until(&mut s, 400, |s| both(s, ServerState::Normal));
    assert!(s.nodes[0].now(s.t) >= second);
    let held = kinds(&s, 0)
        .iter()
        .filter(|k| **k == FailoverEventKind::FailbackHeld)
        .count();
    assert_eq!(held, 2, "one held event per connection");
}

/// The operator ends the hold with `failback` (only in PARTNER-DOWN with the partner up).
#[test]
fn failback_command_failover_ends_the_hold_only_with_the_partner_up() {
    let mut s = takeover_and_return(3600);
    let now = s.nodes[0].now(s.t);
    s.nodes[0]
        .engine
        .as_mut()
        .expect("alive")
        .failback(now)
        .expect("PARTNER-DOWN, partner connected");
    s.drain(0);
    run_until(&mut s, 10, |s| both(s, ServerState::Normal));
    assert!(kinds(&s, 0).contains(&FailoverEventKind::OperatorCommand));
    // NORMAL: nothing to fail back from.
    let now = s.nodes[0].now(s.t);
    let e = s.nodes[0].engine.as_mut().expect("alive").failback(now);
    assert_eq!(e.expect_err("refused in NORMAL").state, ServerState::Normal);
    // PARTNER-DOWN with the partner gone: refused.
    s.crash(1, true, 1_000_000);
    s.run_until(s.t + 5);
    s.partner_down(0, None, false).expect("accepted");
    let now = s.nodes[0].now(s.t);
    let e = s.nodes[0].engine.as_mut().expect("alive").failback(now);
    let e = e.expect_err("refused without the partner");
    assert_eq!(e.state, ServerState::PartnerDown);
    assert!(e.to_string().contains("not connected"), "{e}");
}

// -------------------------------------------------------------------------------------------
// Event log

fn position(ev: &[FailoverEventKind], k: FailoverEventKind, from: usize) -> usize {
    ev[from..]
        .iter()
        .position(|x| *x == k)
        .map(|p| p + from)
        .unwrap_or_else(|| panic!("{k:?} not after {from} in {ev:?}"))
}

/// The seed 004 story, in order, with times: configuration created, heartbeats up,
/// synchronization in progress / complete, active; heartbeats lost, failover invoked (with
/// the time the partner's addresses become usable), failover active at that time; the
/// partner returns: failback in progress, synchronization, active (failback complete).
#[test]
fn failover_event_log_tells_the_takeover_and_the_failback() {
    let mut s = Sim::new(
        3,
        SimParams {
            clients: 8,
            ..SimParams::scripted()
        },
    );
    s.random_faults = false;
    run_until(&mut s, 60, |s| both(s, ServerState::Normal));
    use FailoverEventKind as K;
    for i in 0..2 {
        let ev = kinds(&s, i);
        let a = position(&ev, K::ConfigurationCreated, 0);
        let b = position(&ev, K::HeartbeatsUp, a);
        let c = position(&ev, K::SyncStarted, b);
        let d = position(&ev, K::SyncComplete, c);
        position(&ev, K::Active, d);
    }
    s.run_until(s.t + 100);
    s.crash(1, true, 1_000_000);
    s.run_until(s.t + 3);
    let acc = s.partner_down(0, None, false).expect("accepted");
    let n0 = kinds(&s, 0).len();
    let e = engine(&s, 0);
    let ev: Vec<_> = e.events().collect();
    let lost = ev
        .iter()
        .position(|v| v.kind == K::HeartbeatsDown)
        .expect("heartbeats down");
    let inv = ev[lost..]
        .iter()
        .find(|v| v.kind == K::FailoverInvoked)
        .expect("failover invoked");
    assert_eq!(inv.until, acc.usable_at);
    assert!(inv.remarks.contains("usable from"), "{inv:?}");
    assert!(
        !kinds(&s, 0).contains(&K::FailoverActive),
        "not before MCLT"
    );
    s.run_until(s.t + s.nodes[0].cfg.mclt + 2);
    let e = engine(&s, 0);
    let act = e
        .events()
        .find(|v| v.kind == K::FailoverActive)
        .expect("failover active after MCLT");
    assert!(
        act.at >= acc.usable_at && act.at <= acc.usable_at + 1,
        "{act:?} vs {acc:?}"
    );
    s.restart(1);
    run_until(&mut s, 400, |s| both(s, ServerState::Normal));
    let ev = kinds(&s, 0);
    let f = position(&ev, K::FailbackInProgress, n0);
    let g = position(&ev, K::SyncStarted, f);
    let h = position(&ev, K::SyncComplete, g);
    position(&ev, K::Active, h);
    let e = engine(&s, 0);
    let times: Vec<u32> = e.events().map(|v| v.at).collect();
    assert!(times.windows(2).all(|w| w[0] <= w[1]), "{times:?}");
    assert_eq!(e.events_total(), e.events().count() as u64);
}

/// The log keeps the last EVENT_LOG_LEN events; the total counts all.
#[test]
fn failover_event_log_is_bounded() {
    let mut s = Sim::new(5, SimParams::scripted());
    s.random_faults = false;
    s.random_clients = false;
    run_until(&mut s, 60, |s| both(s, ServerState::Normal));
    for _ in 0..EVENT_LOG_LEN {
        s.reset_connection();
        run_until(&mut s, 60, |s| both(s, ServerState::Normal));
    }
    let e = engine(&s, 0);
    assert_eq!(e.events().count(), EVENT_LOG_LEN);
    assert!(e.events_total() > 2 * EVENT_LOG_LEN as u64);
    assert_eq!(
        e.events().last().map(|v| v.kind),
        Some(FailoverEventKind::Active)
    );
}

// -------------------------------------------------------------------------------------------
// Resync progress

fn pair_config(role: Role) -> Config {
    let mut c = Config::new(role, "progress");
    c.mclt = 120;
    c.expiry_grace = 10;
    c.max_unacked_bndupd = 4;
    c.max_bindings_per_bndupd = 2;
    c
}

/// Processes node `i`'s actions as a driver would: partner updates applied, `n[i]` bindings
/// queued on a (re)synchronisation request, pool requests answered with nothing.
fn run_actions(e: &mut [FailoverEngine; 2], i: usize, now: u32, n: [u32; 2]) {
    while let Some(a) = e[i].poll_action() {
        match a {
            Action::ApplyBinding { id, .. } => e[i].binding_applied(now, id, Ok(())),
            Action::SendBindings { all } => {
                // The records have never been sent: only UPDREQALL asks for them.
                for k in 0..if all { n[i] } else { 0 } {
                    let addr = std::net::Ipv4Addr::from(0x0a00_0100 + k);
                    e[i].queue_binding(Binding::free(addr, now - 10));
                }
                e[i].bindings_queued(now);
            }
            Action::PoolRequest { id } => e[i].pool_response(now, id, 0),
            _ => {}
        }
    }
}

/// One hop: `from`'s bytes to the other engine, which then runs its actions.
fn hop(e: &mut [FailoverEngine; 2], from: usize, now: u32, n: [u32; 2]) {
    run_actions(e, from, now, n);
    if let Some(b) = e[from].poll_transmit() {
        e[1 - from].handle_bytes(now, &b);
    }
    run_actions(e, 1 - from, now, n);
}

/// The server answering an UPDREQALL reports how many of the bindings it covers the partner
/// has acknowledged, in percent, rising to 100 until the UPDDONE; the receiver counts what
/// arrived (the protocol does not tell it the total).
#[test]
fn failover_resync_progress_in_percent() {
    let now = 1_800_000_000;
    let mut e = [
        FailoverEngine::new(pair_config(Role::Primary), None, now).expect("primary"),
        FailoverEngine::new(pair_config(Role::Secondary), None, now).expect("secondary"),
    ];
    // The primary has 40 bindings, the secondary none; both start fresh (RECOVER, UPDREQALL).
    let n = [40, 0];
    e[0].handle_connected(now);
    e[1].handle_connected(now);
    let mut seen = Vec::new();
    let mut received = Vec::new();
    for _ in 0..200 {
        hop(&mut e, 0, now, n);
        hop(&mut e, 1, now, n);
        if let Some(p) = e[0].resync_progress() {
            if p.direction == ResyncDirection::Sending {
                assert!(p.all);
                if let Some(pc) = p.percent() {
                    assert_eq!(p.total, Some(40));
                    seen.push(pc);
                }
            }
        }
        if let Some(p) = e[1].resync_progress() {
            assert_eq!(p.direction, ResyncDirection::Receiving);
            assert_eq!(p.total, None);
            received.push(p.done);
        }
        if e[0].resync_progress().is_none() && e[1].resync_progress().is_none() && !seen.is_empty()
        {
            break;
        }
    }
    assert!(seen.windows(2).all(|w| w[0] <= w[1]), "{seen:?}");
    assert!(
        seen.iter().any(|p| *p > 0.0 && *p < 100.0),
        "progress seen between 0 and 100: {seen:?}"
    );
    assert!(received.windows(2).all(|w| w[0] <= w[1]), "{received:?}");
    assert_eq!(received.last().copied(), Some(40), "{received:?}");
    assert!(e[0].resync_progress().is_none() && e[1].resync_progress().is_none());
    let done = |i: usize| {
        e[i].events()
            .filter(|v| v.kind == FailoverEventKind::SyncComplete)
            .map(|v| v.remarks.clone())
            .collect::<Vec<_>>()
    };
    assert!(
        done(0).iter().any(|r| r.contains("40 bindings")),
        "{:?}",
        done(0)
    );
    assert!(
        done(1).iter().any(|r| r.contains("40 bindings received")),
        "{:?}",
        done(1)
    );
}
