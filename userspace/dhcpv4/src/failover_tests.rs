//! The engine under a failover policy: admission, the MCLT lease rule, which
//! free addresses each side may allocate in each state, rebind-limit.

use std::net::Ipv4Addr;
use std::sync::Arc;

use dhcproto::{v4, Decodable, Decoder};
use lease_store::{LeaseState, LeaseTable, Owner};
use xdhcpd_failover::{FailoverPolicy, PolicyCell, Role, ServerState};

use super::engine::*;
use super::test_support::{engine_on, request};
use super::wire::opt;

const SERVER: Ipv4Addr = Ipv4Addr::new(10, 0, 0, 1);
const NONE: Ipv4Addr = Ipv4Addr::UNSPECIFIED;
const MCLT: u32 = 3600;
const DAY: u32 = 86400;

const CFG: &str = r#"
[server]
interface = "lo"
[lease]
default-time = 259200
min-time = 60
max-time = 259200
[[subnet]]
cidr = "10.0.0.0/24"
[[subnet.pool]]
range = "10.0.0.10-10.0.0.13"
"#;

struct Fx {
    _dir: tempfile::TempDir,
    engine: Engine,
    table: Arc<LeaseTable>,
    cell: Arc<PolicyCell>,
}

fn policy(role: Role, state: ServerState) -> FailoverPolicy {
    FailoverPolicy {
        role,
        state,
        mclt: MCLT,
        lease_period_factor_permille: 1500,
        partner_down_usable_at: 0,
        // No load balancing: the primary owns every bucket.
        hba: [0xff; 32],
        load_balance_max_secs: 0,
        rebind_limit: 0,
        own_pool_waits: false,
        expiry_grace: 0,
    }
}

fn fx(p: FailoverPolicy) -> Fx {
    let cell = Arc::new(PolicyCell::new(p));
    let (_dir, engine, table) = engine_on(CFG, SERVER, 1000, Some(cell.clone()));
    Fx {
        _dir,
        engine,
        table,
        cell,
    }
}

fn req(mac: u8, ciaddr: Ipv4Addr, opts: &[(u8, &[u8])]) -> Vec<u8> {
    request(mac, ciaddr, NONE, opts)
}

fn run(f: &mut Fx, now: u32, dst: Ipv4Addr, r: &[u8]) -> Option<v4::Message> {
    let meta = RxMeta {
        local_addr: SERVER,
        src_ip: NONE,
        dst_ip: dst,
    };
    let mut out = [0u8; 1500];
    match f.engine.handle(now, &meta, r, &mut out) {
        Decision::Reply { len, .. } => {
            Some(v4::Message::decode(&mut Decoder::new(&out[..len])).unwrap())
        }
        Decision::Silent(_) => None,
    }
}

fn lease_of(m: &v4::Message) -> u32 {
    match m.opts().get(v4::OptionCode::AddressLeaseTime) {
        Some(v4::DhcpOption::AddressLeaseTime(t)) => *t,
        other => panic!("no lease time: {other:?}"),
    }
}

fn dora(f: &mut Fx, now: u32, mac: u8) -> Option<(Ipv4Addr, u32)> {
    let offer = run(
        f,
        now,
        Ipv4Addr::BROADCAST,
        &req(mac, NONE, &[(opt::MESSAGE_TYPE, &[1])]),
    )?;
    let ip = offer.yiaddr();
    let ack = run(
        f,
        now,
        Ipv4Addr::BROADCAST,
        &req(
            mac,
            NONE,
            &[
                (opt::MESSAGE_TYPE, &[3]),
                (opt::SERVER_ID, &SERVER.octets()),
                (opt::REQUESTED_IP, &ip.octets()),
            ],
        ),
    )?;
    Some((ack.yiaddr(), lease_of(&ack)))
}

#[test]
fn backup_in_normal_drops_discover_and_counts_it() {
    let mut f = fx(policy(Role::Secondary, ServerState::Normal));
    assert!(run(
        &mut f,
        1000,
        Ipv4Addr::BROADCAST,
        &req(1, NONE, &[(opt::MESSAGE_TYPE, &[1])])
    )
    .is_none());
    assert_eq!(f.engine.stats().snapshot().failover_dropped, 1);
    // A server answering nobody (RECOVER) drops everything.
    f.cell.store(&policy(Role::Primary, ServerState::Recover));
    assert!(run(
        &mut f,
        1000,
        Ipv4Addr::BROADCAST,
        &req(1, NONE, &[(opt::MESSAGE_TYPE, &[1])])
    )
    .is_none());
    assert_eq!(f.engine.stats().snapshot().failover_dropped, 2);
}

#[test]
fn first_lease_is_mclt_then_full_after_partner_ack() {
    let mut f = fx(policy(Role::Primary, ServerState::Normal));
    let now = 10_000;
    let (ip, lease) = dora(&mut f, now, 1).expect("lease");
    // Asked (by default) for 3 days: first ACK is MCLT; potential expiry now + 4.5 days.
    assert_eq!(lease, MCLT);
    let slot = f.table.slot_of(ip).unwrap();
    let l = f.table.read(slot);
    assert_eq!(l.expiry, now + MCLT);
    assert_eq!(l.potential_expiry, now + 3 * DAY * 3 / 2);
    // The partner acknowledges the potential expiration (what BNDACK does).
    f.table
        .update(slot, |l| l.acked_potential_expiry = l.potential_expiry);
    let renew_at = now + MCLT / 2;
    let ack = run(
        &mut f,
        renew_at,
        SERVER,
        &req(1, ip, &[(opt::MESSAGE_TYPE, &[3])]),
    )
    .expect("renew ack");
    assert_eq!(lease_of(&ack), 3 * DAY);
    // And never beyond acked potential expiry + MCLT.
    let l = f.table.read(slot);
    assert!(l.expiry <= l.acked_potential_expiry.max(renew_at) + MCLT);
}

#[test]
fn communications_interrupted_never_gives_an_expired_address_to_another_client() {
    let mut f = fx(policy(Role::Primary, ServerState::Normal));
    let mut ips = Vec::new();
    for mac in 1..=4 {
        ips.push(dora(&mut f, 1000, mac).expect("lease").0);
    }
    // All four expire; the partner never acknowledged them as expired.
    let later = 1000 + MCLT + 10;
    f.table.sweep_expired(later, 100);
    f.cell.store(&policy(
        Role::Primary,
        ServerState::CommunicationsInterrupted,
    ));
    assert!(
        dora(&mut f, later, 9).is_none(),
        "expired address reallocated in COMMUNICATIONS-INTERRUPTED"
    );
    // Their own clients get them back.
    let (ip, _) = dora(&mut f, later, 2).expect("own address back");
    assert_eq!(ip, ips[1]);
}

#[test]
fn secondary_allocates_only_from_its_backup_pool() {
    let mut f = fx(policy(
        Role::Secondary,
        ServerState::CommunicationsInterrupted,
    ));
    // Nothing granted yet: no address.
    assert!(dora(&mut f, 1000, 1).is_none());
    // The primary granted one address (BACKUP).
    let granted = Ipv4Addr::new(10, 0, 0, 12);
    f.table.update(f.table.slot_of(granted).unwrap(), |l| {
        l.state = LeaseState::Backup;
        l.owner = Owner::Backup;
    });
    assert_eq!(dora(&mut f, 1000, 1).expect("backup address").0, granted);
    assert!(dora(&mut f, 1000, 2).is_none());
}

#[test]
fn partner_down_waits_mclt_before_using_partner_addresses() {
    let mut p = policy(Role::Secondary, ServerState::PartnerDown);
    p.partner_down_usable_at = 5000;
    let mut f = fx(p);
    assert!(
        dora(&mut f, 4999, 1).is_none(),
        "partner's address used before MCLT passed"
    );
    assert!(dora(&mut f, 5000, 1).is_some());
}

#[test]
fn rebind_limit_caps_t2_for_the_partners_client() {
    // COMMUNICATIONS-INTERRUPTED: the secondary serves the primary's clients (in NORMAL their
    // RENEWs go unanswered: `rebind_limit_failover_renew_unanswered_in_normal_rebind_answered`).
    let mut p = policy(Role::Secondary, ServerState::CommunicationsInterrupted);
    p.rebind_limit = 120;
    let mut f = fx(p);
    // A renewal reaches the secondary for a client the primary serves
    // (no load balancing: every client is the primary's).
    let ip = Ipv4Addr::new(10, 0, 0, 11);
    f.table.update(f.table.slot_of(ip).unwrap(), |l| {
        l.state = LeaseState::Active;
        l.client = lease_store::ClientKey::from_hw(1, &[2, 0, 0, 0, 0, 5]);
        l.expiry = 9000;
        l.acked_potential_expiry = 9000;
    });
    let ack = run(
        &mut f,
        2000,
        SERVER,
        &req(5, ip, &[(opt::MESSAGE_TYPE, &[3])]),
    )
    .expect("renew");
    let t1 = match ack.opts().get(v4::OptionCode::Renewal) {
        Some(v4::DhcpOption::Renewal(t)) => *t,
        o => panic!("{o:?}"),
    };
    let t2 = match ack.opts().get(v4::OptionCode::Rebinding) {
        Some(v4::DhcpOption::Rebinding(t)) => *t,
        o => panic!("{o:?}"),
    };
    assert_eq!(t2, t1 + 120);
}

/// rebind-limit in NORMAL (CPNR's rule): the secondary served the primary's client while the
/// primary could not; now the pair is NORMAL, so its unicast RENEW is not answered (counted as
/// a failover drop) and the client rebinds; the broadcast REBIND is still answered, with T2
/// capped. Without rebind-limit the RENEW is answered as before.
#[test]
fn rebind_limit_failover_renew_unanswered_in_normal_rebind_answered() {
    let bound = |f: &Fx, ip: Ipv4Addr| {
        f.table.update(f.table.slot_of(ip).unwrap(), |l| {
            l.state = LeaseState::Active;
            l.client = lease_store::ClientKey::from_hw(1, &[2, 0, 0, 0, 0, 5]);
            l.expiry = 9000;
            l.acked_potential_expiry = 9000;
        });
    };
    let ip = Ipv4Addr::new(10, 0, 0, 11);
    let renew = req(5, ip, &[(opt::MESSAGE_TYPE, &[3])]);
    let mut p = policy(Role::Secondary, ServerState::Normal);
    p.rebind_limit = 120;
    let mut f = fx(p);
    bound(&f, ip);
    assert!(
        run(&mut f, 2000, SERVER, &renew).is_none(),
        "RENEW left to the partner"
    );
    assert_eq!(f.engine.stats().snapshot().failover_dropped, 1);
    let ack = run(&mut f, 2001, Ipv4Addr::BROADCAST, &renew).expect("REBIND answered");
    assert_eq!(ack.yiaddr(), ip);
    let t = |code| match ack.opts().get(code) {
        Some(v4::DhcpOption::Renewal(t)) | Some(v4::DhcpOption::Rebinding(t)) => *t,
        o => panic!("{o:?}"),
    };
    assert_eq!(
        t(v4::OptionCode::Rebinding),
        t(v4::OptionCode::Renewal) + 120
    );
    // rebind-limit 0: the RENEW is answered by whoever gets it.
    let mut f = fx(policy(Role::Secondary, ServerState::Normal));
    bound(&f, ip);
    assert!(run(&mut f, 2000, SERVER, &renew).is_some());
    assert_eq!(f.engine.stats().snapshot().failover_dropped, 0);
}
