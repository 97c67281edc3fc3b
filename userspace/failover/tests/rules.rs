//! The spec's "testable behaviours" that live in the failover engine (1-12, 14), the MCLT
//! worked example, and the re-integration paths, run on the simulation harness with random
//! faults switched off.

mod common;

use common::{Sim, SimParams, POOL};
use xdhcpd_failover::{
    backup_share, policy::hba_from_split, Admission, BindingStatus, DropReason, FailoverPersist,
    FailoverPolicy, PolicyCell, RequestKind, Role, ServerState,
};

const DAY: u32 = 86_400;

fn params() -> SimParams {
    SimParams {
        use_safe_period: true,
        ..SimParams::scripted()
    }
}

fn quiet(p: SimParams) -> Sim {
    let mut s = Sim::new(7, p);
    s.random_faults = false;
    s.random_clients = false;
    s
}

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

fn both(s: &Sim, state: ServerState) -> bool {
    st(s, 0) == Some(state) && st(s, 1) == Some(state)
}

/// Stops clients, lets updates drain, then requires identical binding sets.
fn assert_converged(s: &mut Sim) {
    s.random_clients = false;
    run_until(s, 120, |s| {
        (0..2).all(|i| {
            s.nodes[i].engine.as_ref().is_some_and(|e| {
                e.pending_updates() == 0 && e.unacked_updates() == 0 && e.communications_ok()
            })
        })
    });
    let t = s.t;
    s.run_until(t + 3);
    for k in 0..POOL {
        let a = &s.nodes[0].binding(k);
        let b = &s.nodes[1].binding(k);
        let class = |x: &xdhcpd_failover::Binding| match x.status {
            BindingStatus::Expired | BindingStatus::Released | BindingStatus::Reset => {
                BindingStatus::Free
            }
            other => other,
        };
        assert_eq!(class(a), class(b), "{}: {a:?} vs {b:?}", a.addr);
        if a.status == BindingStatus::Active {
            assert!(a.same_client(b), "{}: clients differ", a.addr);
            assert_eq!(a.lease_expiry, b.lease_expiry, "{}: expiry differs", a.addr);
        }
    }
}

fn start_pair(p: SimParams) -> Sim {
    let mut s = quiet(p);
    run_until(&mut s, 60, |s| both(s, ServerState::Normal));
    s
}

// -------------------------------------------------------------------------------------------
// MCLT rule (behaviours 2, 3)

#[test]
fn mclt_worked_example() {
    let mut p = FailoverPolicy::standalone();
    p.mclt = 3600;
    p.lease_period_factor_permille = 1500;
    p.state = ServerState::Normal;
    let now = 1_000_000;
    // New client asking 3 days: first ACK is the MCLT, BNDUPD potential expiration 4.5 days.
    let g = p.lease_time_allowed(now, 3 * DAY, 0);
    assert_eq!(g.lease_secs, 3600);
    assert_eq!(g.lease_expiry, now + 3600);
    assert_eq!(g.potential_expiry, now + 3 * DAY + 3 * DAY / 2);
    // Partner acked it; renewal at T1 (half an hour later) gets the full 3 days.
    let later = now + 1800;
    let g2 = p.lease_time_allowed(later, 3 * DAY, g.potential_expiry);
    assert_eq!(g2.lease_secs, 3 * DAY);
    // Without the ack the renewal stays at the MCLT.
    assert_eq!(p.lease_time_allowed(later, 3 * DAY, 0).lease_secs, 3600);
    // Partner acked an older, nearly used-up potential expiration: remainder + MCLT.
    let g3 = p.lease_time_allowed(later, 3 * DAY, later + 600);
    assert_eq!(g3.lease_secs, 600 + 3600);
}

#[test]
fn mclt_bound_holds_for_any_input() {
    let mut r = common::Rng::new(99);
    let mut p = FailoverPolicy::standalone();
    for _ in 0..100_000 {
        p.mclt = r.range(1, 100_000);
        p.lease_period_factor_permille = r.range(1000, 3000);
        let now = r.range(1, u32::MAX / 2);
        let desired = if r.chance(10) {
            u32::MAX
        } else {
            r.range(0, 10 * DAY)
        };
        let acked = if r.chance(300) {
            0
        } else {
            now.wrapping_add(r.range(0, 10 * DAY)).wrapping_sub(5 * DAY)
        };
        let g = p.lease_time_allowed(now, desired, acked);
        assert!(g.lease_expiry as u64 <= now.max(acked) as u64 + p.mclt as u64);
        assert!(g.lease_secs <= desired);
        assert!(g.potential_expiry >= g.lease_expiry);
        if acked <= now {
            assert!(g.lease_secs <= p.mclt);
        }
    }
}

// -------------------------------------------------------------------------------------------
// Per-packet policy (behaviours 1, 5, 7, 11, 12)

fn policy(role: Role, state: ServerState, split: Option<u16>) -> FailoverPolicy {
    FailoverPolicy {
        role,
        state,
        mclt: 3600,
        lease_period_factor_permille: 1500,
        partner_down_usable_at: 10_000,
        hba: hba_from_split(split.unwrap_or(256)),
        load_balance_max_secs: 3,
        rebind_limit: 300,
        own_pool_waits: false,
        expiry_grace: 30,
    }
}

#[test]
fn backup_drops_discover_in_normal() {
    let key = [1u8, 2, 3, 4, 5, 6];
    let b = policy(Role::Secondary, ServerState::Normal, None);
    assert_eq!(
        b.admit(RequestKind::Discover, &key, 0),
        Admission::Drop(DropReason::PartnersBucket)
    );
    // Renewals are answered by whoever gets them, except the partner's clients' RENEWs when
    // rebind-limit is set (tests/guards.rs).
    assert_eq!(
        b.admit(RequestKind::Renew, &key, 0),
        Admission::Drop(DropReason::PartnersRenew)
    );
    assert_eq!(
        FailoverPolicy {
            rebind_limit: 0,
            ..b
        }
        .admit(RequestKind::Renew, &key, 0),
        Admission::ServeForPartner
    );
    assert_eq!(
        b.admit(RequestKind::Rebind, &key, 0),
        Admission::ServeForPartner
    );
    let m = policy(Role::Primary, ServerState::Normal, None);
    assert_eq!(m.admit(RequestKind::Discover, &key, 0), Admission::Serve);
    for s in [
        ServerState::CommunicationsInterrupted,
        ServerState::PartnerDown,
    ] {
        assert_ne!(
            policy(Role::Secondary, s, None).admit(RequestKind::Discover, &key, 0),
            Admission::Drop(DropReason::PartnersBucket)
        );
    }
    for s in [
        ServerState::Startup,
        ServerState::Recover,
        ServerState::RecoverWait,
        ServerState::PotentialConflict,
        ServerState::Shutdown,
        ServerState::Paused,
    ] {
        assert_eq!(
            policy(Role::Primary, s, None).admit(RequestKind::Discover, &key, 0),
            Admission::Drop(DropReason::Unresponsive(s))
        );
    }
    let rd = policy(Role::Primary, ServerState::RecoverDone, None);
    assert_eq!(
        rd.admit(RequestKind::Discover, &key, 0),
        Admission::Drop(DropReason::RenewOnly)
    );
    assert_eq!(rd.admit(RequestKind::Rebind, &key, 0), Admission::Serve);
}

#[test]
fn load_balancing_one_owner_in_normal_everyone_outside() {
    let mut mine = [0u32; 2];
    for i in 0..2000u32 {
        let key = i.to_be_bytes();
        let p = policy(Role::Primary, ServerState::Normal, Some(128));
        let s = policy(Role::Secondary, ServerState::Normal, Some(128));
        let a = p.admit(RequestKind::Discover, &key, 0) == Admission::Serve;
        let b = s.admit(RequestKind::Discover, &key, 0) == Admission::Serve;
        assert!(a ^ b, "exactly one server answers a DISCOVER in NORMAL");
        mine[a as usize] += 1;
        // Past load_balance_max_secs the other server answers too.
        assert_ne!(
            s.admit(RequestKind::Discover, &key, 10),
            Admission::Drop(DropReason::PartnersBucket)
        );
        for st in [
            ServerState::CommunicationsInterrupted,
            ServerState::PartnerDown,
            ServerState::ConflictDone,
        ] {
            assert!(!matches!(
                policy(Role::Secondary, st, Some(128)).admit(RequestKind::Discover, &key, 0),
                Admission::Drop(_)
            ));
        }
    }
    // split 128: roughly half each.
    assert!(mine[0] > 800 && mine[1] > 800, "{mine:?}");
    // The RFC 3074 table is a permutation.
    let mut seen = [false; 256];
    for v in xdhcpd_failover::policy::RFC3074_TABLE {
        seen[v as usize] = true;
    }
    assert!(seen.iter().all(|&x| x));
}

#[test]
fn rebind_limit_for_partners_clients() {
    let key = [7u8; 6];
    let s = policy(
        Role::Secondary,
        ServerState::CommunicationsInterrupted,
        None,
    );
    let a = s.admit(RequestKind::Renew, &key, 0);
    assert_eq!(a, Admission::ServeForPartner);
    assert_eq!(s.rebind_time(a, 1800, 3150), 2100);
    let p = policy(Role::Primary, ServerState::CommunicationsInterrupted, None);
    let a = p.admit(RequestKind::Renew, &key, 0);
    assert_eq!(p.rebind_time(a, 1800, 3150), 3150);
}

#[test]
fn allocation_rules_per_state() {
    use BindingStatus::*;
    let now = 20_000;
    let ci_p = policy(Role::Primary, ServerState::CommunicationsInterrupted, None);
    let ci_s = policy(
        Role::Secondary,
        ServerState::CommunicationsInterrupted,
        None,
    );
    // C-I: own pool only, never an expired/released address.
    assert!(ci_p.may_allocate(now, Free, 0) && !ci_p.may_allocate(now, Backup, 0));
    assert!(ci_s.may_allocate(now, Backup, 0) && !ci_s.may_allocate(now, Free, 0));
    for s in [Expired, Released, Reset, Active, Abandoned] {
        assert!(!ci_p.may_allocate(now, s, 0) && !ci_s.may_allocate(now, s, 0));
    }
    // PARTNER-DOWN: partner's pool only from partner-down time + MCLT.
    let mut pd = policy(Role::Secondary, ServerState::PartnerDown, None);
    pd.partner_down_usable_at = 10_000 + 3600;
    assert!(!pd.may_allocate(13_599, Free, 0));
    assert!(pd.may_allocate(13_600, Free, 0));
    // An expired lease: also MCLT after its end.
    assert!(!pd.may_allocate(14_000, Expired, 12_000));
    assert!(pd.may_allocate(15_600, Expired, 12_000));
    // Not responsive: nothing.
    assert!(!policy(Role::Primary, ServerState::Recover, None).may_allocate(now, Free, 0));
}

#[test]
fn policy_cell_publishes_snapshots() {
    let p = policy(Role::Secondary, ServerState::PartnerDown, Some(77));
    let cell = PolicyCell::new(FailoverPolicy::standalone());
    cell.store(&p);
    assert_eq!(cell.load(), p);
    std::thread::scope(|s| {
        let r = s.spawn(|| {
            for _ in 0..100_000 {
                let q = cell.load();
                assert!(q == p || q.state == ServerState::Normal, "torn read: {q:?}");
            }
        });
        let mut q = p;
        q.state = ServerState::Normal;
        for i in 0..100_000 {
            cell.store(if i % 2 == 0 { &q } else { &p });
        }
        r.join().unwrap();
    });
}

#[test]
fn persist_layout_round_trip_and_corruption() {
    let p = FailoverPersist {
        own_state: ServerState::RecoverWait,
        resume_state: ServerState::Recover,
        own_state_since: 5,
        partner_state: Some(ServerState::PartnerDown),
        partner_state_since: 6,
        last_contact: 7,
        last_operational: 8,
        partner_down_since: 9,
        recover_base: 10,
        mclt: 3600,
        ever_communicated: true,
        recover_all: true,
        blind_partner_down: true,
        role: Some(Role::Secondary),
        connect_max_unacked: 10,
    };
    let mut b = p.to_bytes();
    assert_eq!(b.len(), 64);
    assert_eq!(&b[..4], b"XFOP");
    assert_eq!(b[6], 254);
    assert_eq!(FailoverPersist::from_bytes(&b), Ok(p));
    b[20] ^= 1;
    assert!(matches!(
        FailoverPersist::from_bytes(&b),
        Err(xdhcpd_failover::PersistError::Checksum { .. })
    ));
    assert!(FailoverPersist::from_bytes(&b[..10]).is_err());
}

// -------------------------------------------------------------------------------------------
// Engine behaviours on a simulated pair

#[test]
fn first_contact_recover_and_pool_grant() {
    // Behaviour 10: the backup receives backup-pct of the available addresses.
    let mut s = start_pair(params());
    run_until(&mut s, 30, |s| {
        (0..POOL)
            .filter(|&k| s.nodes[1].binding(k).status == BindingStatus::Backup)
            .count()
            == POOL / 2
    });
    assert_converged(&mut s);
    assert_eq!(backup_share(32, 0, 50), 16);
    assert_eq!(backup_share(20, 16, 50), 2);
    assert_eq!(backup_share(10, 0, 10), 1);
    // Both went STARTUP -> RECOVER -> RECOVER-WAIT -> RECOVER-DONE -> NORMAL.
    for (a, b) in [
        (ServerState::Startup, ServerState::Recover),
        (ServerState::Recover, ServerState::RecoverWait),
        (ServerState::RecoverWait, ServerState::RecoverDone),
        (ServerState::RecoverDone, ServerState::Normal),
    ] {
        assert_eq!(s.cov.transitions.get(&(a, b)), Some(&2), "{a} -> {b}");
    }
}

#[test]
fn unacked_updates_never_exceed_max() {
    let mut s = start_pair(params());
    let now = s.nodes[0].now(s.t);
    for k in 0..POOL {
        let mut b = s.nodes[0].binding(k);
        b.cltt = now;
        s.nodes[0].engine.as_mut().unwrap().lease_changed(now, b);
    }
    let max = s.nodes[0].cfg.max_unacked_bndupd as usize;
    let mut peak = 0;
    for _ in 0..200 {
        let e = s.nodes[0].engine.as_mut().unwrap();
        let _ = e.poll_transmit().map(|_| ());
        peak = peak.max(e.unacked_bndupd_messages());
        assert!(e.unacked_bndupd_messages() <= max);
        let t = s.t;
        s.run_until(t + 1);
        let e = s.nodes[0].engine.as_ref().unwrap();
        peak = peak.max(e.unacked_bndupd_messages());
        assert!(e.unacked_bndupd_messages() <= max);
    }
    assert_eq!(peak, max, "window was used");
    assert_eq!(s.nodes[0].engine.as_ref().unwrap().pending_updates(), 0);
}

/// Draft-12 6.3: with an xdhcpd partner several binding transactions share one BNDUPD; the
/// window still counts messages, every message stays within 2048 bytes, and every transaction
/// is acknowledged and lands in the partner's table.
#[test]
fn bindings_are_batched_within_window_and_message_size() {
    use xdhcpd_failover::codec::{Decoder, MAX_MESSAGE_LEN};
    let batch = 16;
    let mut s = start_pair(SimParams {
        bndupd_batch: batch,
        ..params()
    });
    // Let the pool grant that follows NORMAL drain first.
    run_until(&mut s, 30, |s| {
        let e = s.nodes[0].engine.as_ref().unwrap();
        e.pending_updates() + e.unacked_updates() == 0
    });
    let now = s.nodes[0].now(s.t);
    for k in 0..POOL {
        let mut b = s.nodes[0].binding(k);
        b.status = BindingStatus::Active;
        b.client_id = vec![1, 0, 0x5e, 0, 0, k as u8];
        b.relay_agent_info = vec![1, 200].into_iter().chain([0xab; 200]).collect();
        b.cltt = now;
        b.start = now;
        b.lease_expiry = now + 60;
        b.potential_expiry = now + 90;
        s.nodes[0].engine.as_mut().unwrap().lease_changed(now, b);
    }
    let e = s.nodes[0].engine.as_mut().unwrap();
    let sent_before = e.stats().bndupd_messages_sent;
    let bytes = e.poll_transmit().expect("BNDUPDs");
    let window = s.nodes[0].cfg.max_unacked_bndupd as usize;
    let e = s.nodes[0].engine.as_ref().unwrap();
    assert_eq!(e.unacked_bndupd_messages(), window);
    let (mut msgs, mut txns) = (0usize, 0usize);
    let mut d = Decoder::new();
    d.push(&bytes);
    while let Some(m) = d.next_message().expect("decodes") {
        let xdhcpd_failover::codec::Body::BndUpd(t) = &m.body else {
            continue;
        };
        let len = m.to_bytes().expect("encodes").len();
        assert!(len <= MAX_MESSAGE_LEN, "{len} bytes");
        assert!(
            !t.is_empty() && t.len() <= batch,
            "{} transactions",
            t.len()
        );
        msgs += 1;
        txns += t.len();
    }
    assert_eq!(msgs, window);
    assert_eq!(e.unacked_updates(), txns, "unacked counts transactions");
    assert!(
        txns > window,
        "more than one transaction per message ({txns})"
    );
    assert_eq!(e.stats().bndupd_messages_sent - sent_before, window as u64);
    // Transactions of ~270 bytes (a 200-byte option 82): the 2048-byte limit, not `batch`,
    // caps these messages.
    assert!(
        txns < window * batch,
        "{txns} transactions in {window} messages"
    );
    // The bytes taken from the engine above go onto the link; then the pair drains.
    s.link.q[0].push_back((s.t, bytes));
    let t = s.t;
    s.run_until(t + 30);
    let e = s.nodes[0].engine.as_ref().unwrap();
    assert_eq!(e.pending_updates() + e.unacked_updates(), 0);
    assert_eq!(e.stats().bndack_received - e.stats().bndupd_sent, 0);
    for k in 0..POOL {
        let b = &s.nodes[1].binding(k);
        assert_eq!(b.status, BindingStatus::Active, "{}", b.addr);
        assert_eq!(b.client_id, vec![1, 0, 0x5e, 0, 0, k as u8]);
    }
}

#[test]
fn communications_interrupted_and_back() {
    let mut p = params();
    p.clients = 20;
    let mut s = start_pair(p);
    s.random_clients = true;
    s.run_until(s.t + 300);
    s.partition(200);
    run_until(&mut s, 60, |s| {
        both(s, ServerState::CommunicationsInterrupted)
    });
    s.run_until(s.t + 150);
    run_until(&mut s, 100, |s| both(s, ServerState::Normal));
    assert_converged(&mut s);
}

#[test]
fn safe_period_enabled_and_disabled() {
    // Enabled: PARTNER-DOWN exactly safe-period after the interruption, not before.
    let mut s = start_pair(params());
    s.crash(1, true, 100_000);
    run_until(&mut s, 5, |s| {
        st(s, 0) == Some(ServerState::CommunicationsInterrupted)
    });
    let since = s.nodes[0].engine.as_ref().unwrap().interrupted_since();
    let deadline = since + 600;
    assert_eq!(
        s.nodes[0]
            .engine
            .as_ref()
            .unwrap()
            .poll_timeout()
            .map(|d| d <= deadline),
        Some(true)
    );
    run_until(&mut s, 700, |s| s.nodes[0].now(s.t) >= deadline - 1);
    assert_eq!(st(&s, 0), Some(ServerState::CommunicationsInterrupted));
    run_until(&mut s, 5, |s| st(s, 0) == Some(ServerState::PartnerDown));
    assert!(s.nodes[0].now(s.t) >= deadline);
    // The safe period counted from the interruption: partner's pool usable at once.
    let pol = s.nodes[0].cell.load();
    assert_eq!(pol.partner_down_usable_at, since + 120);

    // Disabled: stays COMMUNICATIONS-INTERRUPTED; only the command moves it.
    let mut p = params();
    p.use_safe_period = false;
    let mut s = start_pair(p);
    s.crash(1, true, 100_000);
    s.run_until(s.t + 3000);
    assert_eq!(st(&s, 0), Some(ServerState::CommunicationsInterrupted));
    s.partner_down(0, None, false).unwrap();
    assert_eq!(st(&s, 0), Some(ServerState::PartnerDown));
}

#[test]
fn partner_down_with_date_counts_mclt_from_it() {
    // Behaviours 7 and 8.
    let mut s = start_pair(params());
    s.crash(0, false, 100_000);
    s.run_until(s.t + 200);
    let now = s.nodes[1].now(s.t);
    let since = now - 50;
    s.partner_down(1, Some(since), false).unwrap();
    let pol = s.nodes[1].cell.load();
    assert_eq!(pol.state, ServerState::PartnerDown);
    assert_eq!(pol.partner_down_usable_at, since + 120);
    assert!(!pol.may_allocate(since + 119, BindingStatus::Free, 0));
    assert!(pol.may_allocate(since + 120, BindingStatus::Free, 0));
    assert!(!pol.own_pool_waits);
    // Its own pool (BACKUP) is usable at once: the partner never had it.
    assert!(pol.may_allocate(since, BindingStatus::Backup, 0));
    // A command is refused where it makes no sense.
    let mut s2 = start_pair(params());
    let now = s2.nodes[0].now(s2.t);
    s2.nodes[0].engine.as_mut().unwrap().pause(now).unwrap();
    assert!(s2.partner_down(0, None, false).is_err());
}

/// The way out of RECOVER when the partner is gone for good: `partner-down` there is a blind
/// PARTNER-DOWN. The partner may have leased any address while it was PARTNER-DOWN and we
/// were down, so our own pool waits out the MCLT like the partner's; the flag survives a
/// restart and ends with NORMAL.
#[test]
fn partner_down_from_recover_holds_our_own_pool_for_mclt() {
    let mut s = start_pair(params());
    let now = s.nodes[0].now(s.t);
    s.nodes[0].engine.as_mut().unwrap().recover(now).unwrap();
    s.drain(0);
    assert_eq!(st(&s, 0), Some(ServerState::Recover));
    // The partner dies before answering the UPDREQALL.
    s.crash(1, true, 100_000);
    s.run_until(s.t + 60);
    assert_eq!(
        st(&s, 0),
        Some(ServerState::Recover),
        "stuck without the partner"
    );
    let now = s.nodes[0].now(s.t);
    let since = now - 60;
    s.partner_down(0, Some(since), false)
        .expect("partner-down is accepted in RECOVER");
    let pol = s.nodes[0].cell.load();
    assert_eq!(pol.state, ServerState::PartnerDown);
    assert!(pol.own_pool_waits);
    // The primary's own FREE addresses wait like the partner's BACKUP ones.
    for status in [BindingStatus::Free, BindingStatus::Backup] {
        assert!(!pol.may_allocate(since + 119, status, 0), "{status:?}");
        assert!(pol.may_allocate(since + 120, status, 0), "{status:?}");
    }
    // ... and a record's last known end counts too.
    assert!(!pol.may_allocate(since + 200, BindingStatus::Free, since + 100));
    assert!(pol.may_allocate(since + 220, BindingStatus::Free, since + 100));
    let persisted = s.nodes[0].engine.as_ref().unwrap().persisted();
    assert!(persisted.blind_partner_down);
    let back = FailoverPersist::from_bytes(&persisted.to_bytes()).expect("round trip");
    assert!(back.blind_partner_down, "survives a restart");
    // The partner returns: once both are NORMAL again, the flag is gone.
    s.nodes[1].restart_at = s.t + 1;
    run_until(&mut s, 1_000, |s| both(s, ServerState::Normal));
    assert!(
        !s.nodes[0]
            .engine
            .as_ref()
            .unwrap()
            .persisted()
            .blind_partner_down
    );
    assert!(!s.nodes[0].cell.load().own_pool_waits);
}

#[test]
fn partner_down_then_partner_returns_down_first() {
    let mut p = params();
    p.clients = 20;
    let mut s = start_pair(p);
    s.random_clients = true;
    s.run_until(s.t + 300);
    s.crash(1, true, 100_000);
    s.run_until(s.t + 30);
    let crashed = s.nodes[0].now(s.nodes[1].crashed_at);
    s.partner_down(0, Some(crashed), false).unwrap();
    s.run_until(s.t + 400);
    s.restart(1);
    run_until(&mut s, 30, |s| st(s, 1) == Some(ServerState::Recover));
    run_until(&mut s, 300, |s| both(s, ServerState::Normal));
    assert_converged(&mut s);
    assert!(s
        .cov
        .transitions
        .contains_key(&(ServerState::PartnerDown, ServerState::Normal)));
}

#[test]
fn potential_conflict_resolution() {
    let mut p = params();
    p.clients = 20;
    let mut s = start_pair(p);
    s.random_clients = true;
    s.run_until(s.t + 300);
    // Node 1 is cut off from everyone; the operator wrongly declares it down.
    s.nodes[1].isolated_until = s.t + 400;
    s.nodes[1].isolated_from = s.t;
    s.nodes[1].needs_sync = true;
    s.partition(400);
    run_until(&mut s, 60, |s| {
        st(s, 0) == Some(ServerState::CommunicationsInterrupted)
    });
    let since = s.nodes[0].now(s.nodes[1].isolated_from);
    s.partner_down(0, Some(since), false).unwrap();
    run_until(&mut s, 500, |s| {
        st(s, 0) == Some(ServerState::PotentialConflict)
            || st(s, 1) == Some(ServerState::PotentialConflict)
    });
    run_until(&mut s, 200, |s| both(s, ServerState::Normal));
    for tr in [
        (ServerState::PartnerDown, ServerState::PotentialConflict),
        (ServerState::PotentialConflict, ServerState::ConflictDone),
        (ServerState::ConflictDone, ServerState::Normal),
        (ServerState::PotentialConflict, ServerState::Normal),
    ] {
        assert!(
            s.cov.transitions.contains_key(&tr),
            "missing {tr:?}\n{}",
            s.log_tail()
        );
    }
    assert_converged(&mut s);
}

#[test]
fn lost_database_full_pull_and_mclt_wait() {
    let mut p = params();
    p.clients = 20;
    let mut s = start_pair(p);
    s.random_clients = true;
    s.run_until(s.t + 300);
    s.random_clients = false;
    s.run_until(s.t + 10);
    s.crash(1, true, 100_000);
    // Storage lost: no table, no persisted failover state.
    s.nodes[1].persist = None;
    s.nodes[1].table = common::SimTable::fresh();
    s.run_until(s.t + 5);
    s.restart(1);
    // The MCLT wait counts from entering RECOVER (draft-12 9.6.2), which the restart does.
    let entered = s.t;
    run_until(&mut s, 30, |s| st(s, 1) == Some(ServerState::RecoverWait));
    run_until(&mut s, 300, |s| st(s, 1) == Some(ServerState::RecoverDone));
    assert!(
        s.t - entered >= s.nodes[1].cfg.mclt,
        "RECOVER-DONE came MCLT after RECOVER ({}s)",
        s.t - entered
    );
    run_until(&mut s, 60, |s| both(s, ServerState::Normal));
    assert_converged(&mut s);
}

#[test]
fn failover_recover_setting() {
    let mut s = start_pair(params());
    s.random_clients = true;
    s.run_until(s.t + 200);
    s.nodes[0].failover_recover_on_restart = true;
    s.crash(0, true, 20);
    run_until(&mut s, 60, |s| st(s, 0) == Some(ServerState::RecoverWait));
    assert!(
        s.nodes[0].persist.is_some_and(|p| !p.recover_all),
        "UPDREQALL completed"
    );
    let entered = s.t;
    run_until(&mut s, 300, |s| both(s, ServerState::Normal));
    assert!(s.t - entered >= 100);
    assert_converged(&mut s);
}

#[test]
fn shutdown_and_pause() {
    let mut s = start_pair(params());
    let now = s.nodes[1].now(s.t);
    s.nodes[1].engine.as_mut().unwrap().shutdown(now);
    s.drain(1);
    run_until(&mut s, 10, |s| st(s, 0) == Some(ServerState::PartnerDown));
    // The stopping server learns the partner went PARTNER-DOWN: it restarts in RECOVER.
    run_until(&mut s, 10, |s| {
        s.nodes[1]
            .persist
            .is_some_and(|p| p.resume_state == ServerState::Recover)
    });
    s.crash(1, true, 5);
    run_until(&mut s, 300, |s| both(s, ServerState::Normal));

    let now = s.nodes[0].now(s.t);
    s.nodes[0]
        .engine
        .as_mut()
        .unwrap()
        .pause(now)
        .expect("pause in NORMAL");
    s.drain(0);
    run_until(&mut s, 10, |s| {
        st(s, 1) == Some(ServerState::CommunicationsInterrupted)
    });
    assert_eq!(
        s.nodes[0].persist.map(|p| p.resume_state),
        Some(ServerState::CommunicationsInterrupted)
    );
    s.crash(0, true, 5);
    run_until(&mut s, 60, |s| both(s, ServerState::Normal));
    assert_converged(&mut s);
}

#[test]
fn restart_resumes_persisted_state() {
    let mut s = start_pair(params());
    s.crash(1, true, 100_000);
    run_until(&mut s, 700, |s| st(s, 0) == Some(ServerState::PartnerDown));
    let pd_since = s.nodes[0].persist.unwrap().partner_down_since;
    // Node 0 restarts alone: it resumes PARTNER-DOWN after its startup period, and counts the
    // MCLT wait again from then (the partner may have run while it was down).
    s.crash(0, true, 10);
    run_until(&mut s, 40, |s| st(s, 0) == Some(ServerState::PartnerDown));
    let resumed = s.nodes[0].now(s.t);
    let p = s.nodes[0].persist.unwrap();
    assert!(p.partner_down_since > pd_since && p.partner_down_since <= resumed);
    assert_eq!(
        s.nodes[0].cell.load().partner_down_usable_at,
        p.partner_down_since + 120
    );
}

/// Each side learns the partner's implementation from CONNECT / CONNECTACK (the driver batches
/// its output more only for an xdhcpd partner).
#[test]
fn partner_vendor_class_is_learned_on_connect() {
    let s = start_pair(params());
    for i in 0..2 {
        let v = s.nodes[i]
            .engine
            .as_ref()
            .and_then(|e| e.partner_vendor_class())
            .map(|v| String::from_utf8_lossy(v).into_owned());
        assert!(
            v.as_deref().is_some_and(|v| v.starts_with("xdhcpd-")),
            "node{i} sees vendor {v:?}"
        );
    }
}

/// A whole batch refused with long reject texts (e.g. after a failed flush) still gets a
/// BNDACK within 2048 bytes naming every address with its reject reason: the optional texts
/// are dropped when they would not fit, and kept when they do.
#[test]
fn bndack_for_a_refused_batch_fits_the_message_limit() {
    use xdhcpd_failover::codec::{BindingTxn, Body, Decoder, Message, MAX_MESSAGE_LEN};
    use xdhcpd_failover::{Action, RejectReason};
    for (n, texts_kept) in [(64usize, false), (3, true)] {
        let mut s = start_pair(params());
        // Nothing in flight on the link: our bytes start on a message boundary.
        run_until(&mut s, 30, |s| s.link.q.iter().all(|q| q.is_empty()));
        let now = s.nodes[1].now(s.t);
        let txns: Vec<BindingTxn> = (0..n)
            .map(|k| {
                let mut t = BindingTxn::new(std::net::Ipv4Addr::new(192, 0, 2, k as u8));
                t.status = Some(BindingStatus::Free.to_wire());
                t
            })
            .collect();
        let upd = Message::new(now, 0x5eed, Body::BndUpd(txns))
            .to_bytes()
            .expect("the BNDUPD fits");
        let e = s.nodes[1].engine.as_mut().unwrap();
        e.handle_bytes(now, &upd);
        let mut ids = Vec::new();
        while let Some(a) = e.poll_action() {
            if let Action::ApplyBinding { id, .. } = a {
                ids.push(id);
            }
        }
        assert_eq!(ids.len(), n);
        for id in ids {
            let why = format!("lease table flush failed: {}", "x".repeat(80));
            e.binding_applied(now, id, Err((RejectReason::Misc, why)));
        }
        let out = e.poll_transmit().expect("a BNDACK");
        let mut d = Decoder::new();
        d.push(&out);
        let mut found = false;
        while let Some(m) = d.next_message().expect("decodes") {
            let Body::BndAck(t) = &m.body else {
                continue;
            };
            assert_eq!(m.xid, 0x5eed);
            assert!(m.to_bytes().expect("encodes").len() <= MAX_MESSAGE_LEN);
            assert_eq!(t.len(), n, "every address acknowledged");
            assert!(t.iter().all(|t| t.reject_reason.is_some()));
            assert_eq!(t.iter().all(|t| t.message.is_some()), texts_kept);
            found = true;
        }
        assert!(found, "no BNDACK for {n} refused transactions");
    }
}

/// Draft-12 5.14: in a pool with dynamic BOOTP each partner allocates only its own addresses,
/// in every state: PARTNER-DOWN past MCLT opens the partner's addresses to
/// `may_allocate_lease` but never to `may_allocate_own_only`.
#[test]
fn bootp_failover_own_only_rule_holds_in_partner_down() {
    use lease_store::{Lease, LeaseState, Owner};
    let now = 100 * DAY;
    let addr = std::net::Ipv4Addr::new(10, 0, 0, 9);
    let rec = |state: LeaseState, owner: Owner| {
        let mut l = Lease::free(addr);
        l.state = state;
        l.owner = owner;
        l.expiry = DAY;
        l
    };
    for role in [Role::Primary, Role::Secondary] {
        let p = FailoverPolicy {
            partner_down_usable_at: 2 * DAY,
            ..policy(role, ServerState::PartnerDown, None)
        };
        let (own_free, other_free, own, other) = match role {
            Role::Primary => (
                LeaseState::Free,
                LeaseState::Backup,
                Owner::Primary,
                Owner::Backup,
            ),
            Role::Secondary => (
                LeaseState::Backup,
                LeaseState::Free,
                Owner::Backup,
                Owner::Primary,
            ),
        };
        // The DHCP rule lets PARTNER-DOWN take the partner's free and expired addresses...
        assert!(p.may_allocate_lease(now, &rec(other_free, other)));
        assert!(p.may_allocate_lease(now, &rec(LeaseState::Expired, other)));
        // ...the BOOTP pool rule never does.
        assert!(!p.may_allocate_own_only(now, &rec(other_free, other)));
        assert!(!p.may_allocate_own_only(now, &rec(LeaseState::Expired, other)));
        assert!(!p.may_allocate_own_only(now, &rec(LeaseState::Released, other)));
        // Our own side stays usable.
        assert!(p.may_allocate_own_only(now, &rec(own_free, own)));
        assert!(p.may_allocate_own_only(now, &rec(LeaseState::Expired, own)));
        // FREE is the primary's and BACKUP the secondary's whatever the owner byte says.
        assert!(!p.may_allocate_own_only(now, &rec(other_free, own)));
        for s in [ServerState::Normal, ServerState::CommunicationsInterrupted] {
            let q = FailoverPolicy { state: s, ..p };
            assert!(!q.may_allocate_own_only(now, &rec(other_free, other)));
        }
    }
}
