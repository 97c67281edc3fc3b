//! Dynamic BOOTP (`engine/bootp.rs`): refused by default and counted, served where a subnet
//! sets `dynamic-bootp`, bound permanently (never swept), reservations first, the DHCP reply
//! rules, and under failover only this server's own addresses, PARTNER-DOWN included.

use std::net::Ipv4Addr;
use std::sync::Arc;

use lease_store::{ClientKey, LeaseState, LeaseTable, Owner, EXPIRY_PERMANENT, FLAG_BOOTP};
use xdhcpd_failover::{FailoverPolicy, PolicyCell, Role, ServerState};

use super::delivery::Delivery;
use super::engine::*;
use super::test_support::{engine_on, request};
use super::wire::{opt, FLAG_BROADCAST, MIN_BOOTP_LEN, OP_BOOTREPLY};

const SERVER: Ipv4Addr = Ipv4Addr::new(10, 0, 0, 1);
const NONE: Ipv4Addr = Ipv4Addr::UNSPECIFIED;
const NOW: u32 = 1_000_000;

fn cfg(dynamic_bootp: bool, extra: &str) -> String {
    format!(
        r#"
[server]
interface = "lo"
[lease]
default-time = 3600
min-time = 60
max-time = 7200
[[subnet]]
cidr = "10.0.0.0/24"
router = ["10.0.0.1"]
next-server = "10.0.0.5"
boot-file = "pxelinux.0"
dynamic-bootp = {dynamic_bootp}
{extra}
[[subnet.pool]]
range = "10.0.0.10-10.0.0.13"
[[subnet]]
cidr = "10.9.0.0/24"
dynamic-bootp = true
[[subnet.pool]]
range = "10.9.0.10-10.9.0.20"
"#
    )
}

/// A BOOTREQUEST with the magic cookie and no option at all (END only), padded to 300.
fn bootreq(mac: u8, giaddr: Ipv4Addr, flags: u16) -> Vec<u8> {
    let mut b = request(mac, NONE, giaddr, &[]);
    b[10..12].copy_from_slice(&flags.to_be_bytes());
    b.push(opt::END);
    b.resize(MIN_BOOTP_LEN, 0);
    b
}

/// An RFC 951 BOOTREQUEST: 300 bytes, the vendor area all zero (no cookie).
fn plain_bootreq(mac: u8) -> Vec<u8> {
    let mut b = request(mac, NONE, NONE, &[]);
    b[236..240].fill(0);
    b.resize(MIN_BOOTP_LEN, 0);
    b
}

fn meta() -> RxMeta {
    RxMeta {
        local_addr: SERVER,
        src_ip: NONE,
        dst_ip: Ipv4Addr::BROADCAST,
    }
}

fn run(e: &mut Engine, now: u32, r: &[u8]) -> (Decision, Vec<u8>) {
    let mut out = [0u8; 1500];
    let d = e.handle(now, &meta(), r, &mut out);
    let bytes = match d {
        Decision::Reply { len, .. } => out[..len].to_vec(),
        Decision::Silent(_) => Vec::new(),
    };
    (d, bytes)
}

fn yiaddr(b: &[u8]) -> Ipv4Addr {
    Ipv4Addr::new(b[16], b[17], b[18], b[19])
}

/// The option codes of a reply (after the cookie), in order.
fn codes(b: &[u8]) -> Vec<u8> {
    let mut v = Vec::new();
    let mut i = 240;
    while i < b.len() {
        match b[i] {
            0 => i += 1,
            255 => break,
            c => {
                v.push(c);
                i += 2 + b[i + 1] as usize;
            }
        }
    }
    v
}

fn key(mac: u8) -> ClientKey {
    ClientKey::from_hw(1, &[2, 0, 0, 0, 0, mac])
}

#[test]
fn bootp_is_refused_by_default_and_counted() {
    let (_d, mut e, _t) = engine_on(
        &cfg(false, "").replace("dynamic-bootp = true", ""),
        SERVER,
        NOW,
        None,
    );
    let (d, _) = run(&mut e, NOW, &bootreq(1, NONE, 0));
    assert_eq!(d, Decision::Silent(Silence::NotRequest));
    let s = e.stats().snapshot();
    assert_eq!((s.not_request, s.bootp_refused, s.bootp_replies), (1, 1, 0));
    // Without the cookie: malformed, as always when no subnet serves BOOTP.
    let (d, _) = run(&mut e, NOW, &plain_bootreq(1));
    assert_eq!(d, Decision::Silent(Silence::Malformed));
}

#[test]
fn bootp_is_refused_on_a_subnet_without_dynamic_bootp_and_counted() {
    // The second subnet serves BOOTP; the client's (the first) does not.
    let (_d, mut e, _t) = engine_on(&cfg(false, ""), SERVER, NOW, None);
    let (d, _) = run(&mut e, NOW, &bootreq(1, NONE, 0));
    assert_eq!(d, Decision::Silent(Silence::NotRequest));
    let s = e.stats().snapshot();
    assert_eq!((s.not_request, s.bootp_refused), (1, 1));
}

#[test]
fn bootp_served_when_enabled_gets_a_permanent_binding() {
    let (_d, mut e, t) = engine_on(&cfg(true, ""), SERVER, NOW, None);
    let (d, b) = run(&mut e, NOW, &bootreq(1, NONE, 0));
    let Decision::Reply { len, to, .. } = d else {
        panic!("no reply: {d:?}");
    };
    assert!(len >= MIN_BOOTP_LEN);
    assert_eq!(b[0], OP_BOOTREPLY);
    let ip = yiaddr(&b);
    assert!((10..=13).contains(&ip.octets()[3]), "{ip}");
    // siaddr (next-server) and file as for DHCP.
    assert_eq!(&b[20..24], &[10, 0, 0, 5]);
    assert_eq!(&b[108..118], b"pxelinux.0");
    // RFC 1497 options, but none of DHCP's own.
    let c = codes(&b);
    assert!(c.contains(&opt::SUBNET_MASK) && c.contains(&3), "{c:?}");
    for dhcp_only in [
        opt::MESSAGE_TYPE,
        opt::SERVER_ID,
        opt::LEASE_TIME,
        opt::RENEWAL_TIME,
        opt::REBINDING_TIME,
    ] {
        assert!(!c.contains(&dhcp_only), "option {dhcp_only} in {c:?}");
    }
    assert!(matches!(to, Delivery::ToClient { ip: i, .. } if i == ip));
    // Bound for ever, and flagged.
    let (_, l) = t.find_client(&key(1)).expect("binding");
    assert_eq!(l.addr, ip);
    assert_eq!(l.state, LeaseState::Active);
    assert_eq!(l.expiry, EXPIRY_PERMANENT);
    assert_eq!(l.flags & FLAG_BOOTP, FLAG_BOOTP);
    assert!(l.is_permanent());
    // A permanent binding must be durable before its reply leaves.
    assert!(e.take_needs_commit());
    // The same client asking again gets the same address.
    let (_, b2) = run(&mut e, NOW + 10, &bootreq(1, NONE, 0));
    assert_eq!(yiaddr(&b2), ip);
    assert_eq!(e.stats().snapshot().bootp_replies, 2);
    // The pool runs out after its four addresses; no address twice.
    let mut seen = vec![ip];
    for mac in 2..=4 {
        let (_, b) = run(&mut e, NOW, &bootreq(mac, NONE, 0));
        let a = yiaddr(&b);
        assert!(!seen.contains(&a));
        seen.push(a);
    }
    let (d, _) = run(&mut e, NOW, &bootreq(5, NONE, 0));
    assert_eq!(d, Decision::Silent(Silence::PoolExhausted));
}

#[test]
fn bootp_without_cookie_gets_a_reply_without_options() {
    let (_d, mut e, _t) = engine_on(&cfg(true, ""), SERVER, NOW, None);
    let (d, b) = run(&mut e, NOW, &plain_bootreq(1));
    assert!(matches!(d, Decision::Reply { .. }), "{d:?}");
    assert_eq!(b.len(), MIN_BOOTP_LEN);
    assert_eq!(b[0], OP_BOOTREPLY);
    assert_ne!(yiaddr(&b), NONE);
    assert!(b[236..].iter().all(|&x| x == 0), "vendor area not empty");
}

#[test]
fn bootp_permanent_lease_is_never_swept() {
    let (_d, mut e, t) = engine_on(&cfg(true, ""), SERVER, NOW, None);
    let (_, b) = run(&mut e, NOW, &bootreq(1, NONE, 0));
    let ip = yiaddr(&b);
    let slot = t.slot_of(ip).expect("slot");
    let r = t.sweep_expired(u32::MAX - 1, 1 << 16);
    assert_eq!(r.expired, 0);
    assert_eq!(t.read(slot).state, LeaseState::Active);
    // A partner's "forever" (ISC dhcpd writes 0x7fffffff) on a flagged binding: kept too.
    t.update(slot, |l| {
        l.expiry = 0x7fff_ffff;
        l.potential_expiry = 0x7fff_ffff;
    });
    let r = t.sweep_expired(0x8000_0000, 1 << 16);
    assert_eq!(r.expired, 0);
    assert_eq!(t.read(slot).state, LeaseState::Active);
    // Another client never gets it, whatever the clock says.
    let (_, b2) = run(&mut e, 0x8000_0000, &bootreq(2, NONE, 0));
    assert_ne!(yiaddr(&b2), ip);
}

#[test]
fn bootp_reservation_wins() {
    let extra = r#"
[[subnet.reservation]]
hw = "02:00:00:00:00:07"
ip = "10.0.0.50"
[[subnet.reservation]]
hw = "02:00:00:00:00:08"
ip = "10.0.0.12"
"#;
    let (_d, mut e, t) = engine_on(&cfg(true, extra), SERVER, NOW, None);
    e.shared().protect_reservations(NOW);
    // Outside the pools: the reserved address, no record.
    let (_, b) = run(&mut e, NOW, &bootreq(7, NONE, 0));
    assert_eq!(yiaddr(&b), Ipv4Addr::new(10, 0, 0, 50));
    // Inside a pool: that address, bound permanently.
    let (_, b) = run(&mut e, NOW, &bootreq(8, NONE, 0));
    assert_eq!(yiaddr(&b), Ipv4Addr::new(10, 0, 0, 12));
    let l = t.read(t.slot_of(Ipv4Addr::new(10, 0, 0, 12)).expect("slot"));
    assert!(l.is_permanent());
    assert_eq!(l.client, key(8));
    // Nobody else is given the reserved pool address.
    for mac in 1..=3 {
        let (_, b) = run(&mut e, NOW, &bootreq(mac, NONE, 0));
        assert_ne!(yiaddr(&b), Ipv4Addr::new(10, 0, 0, 12));
    }
}

#[test]
fn bootp_reply_goes_to_the_relay_or_by_broadcast_flag() {
    let (_d, mut e, _t) = engine_on(&cfg(true, ""), SERVER, NOW, None);
    let relay = Ipv4Addr::new(10, 9, 0, 1);
    let (d, b) = run(&mut e, NOW, &bootreq(1, relay, 0));
    assert!(
        matches!(d, Decision::Reply { to: Delivery::Relay(g), .. } if g == relay),
        "{d:?}"
    );
    // The relay's link (giaddr) selects the subnet.
    assert_eq!(yiaddr(&b).octets()[..3], [10, 9, 0]);
    let (d, _) = run(&mut e, NOW, &bootreq(2, NONE, FLAG_BROADCAST));
    assert!(
        matches!(
            d,
            Decision::Reply {
                to: Delivery::Broadcast,
                ..
            }
        ),
        "{d:?}"
    );
}

// ---- failover -------------------------------------------------------------------------

fn policy(role: Role, state: ServerState) -> FailoverPolicy {
    FailoverPolicy {
        role,
        state,
        mclt: 3600,
        lease_period_factor_permille: 1500,
        partner_down_usable_at: 0,
        hba: [0xff; 32],
        load_balance_max_secs: 0,
        rebind_limit: 0,
        own_pool_waits: false,
        expiry_grace: 0,
    }
}

fn failover_engine(p: FailoverPolicy) -> (tempfile::TempDir, Engine, Arc<LeaseTable>) {
    engine_on(
        &cfg(true, ""),
        SERVER,
        NOW,
        Some(Arc::new(PolicyCell::new(p))),
    )
}

/// Gives the addresses `last` of 10.0.0.x to the backup (BACKUP, as the primary's grant).
fn grant_to_backup(t: &LeaseTable, last: &[u8]) {
    for &n in last {
        let slot = t.slot_of(Ipv4Addr::new(10, 0, 0, n)).expect("slot");
        t.update(slot, |l| {
            l.state = LeaseState::Backup;
            l.owner = Owner::Backup;
        });
    }
    // The sweeper lists free records on their owner's free list.
    t.sweep_expired(NOW, 1 << 16);
}

#[test]
fn bootp_failover_partner_down_never_gives_a_partners_address() {
    // The primary in PARTNER-DOWN long past MCLT: the partner's BACKUP addresses and an
    // EXPIRED one the partner had leased are usable for DHCP elsewhere, never here.
    let (_d, mut e, t) = failover_engine(policy(Role::Primary, ServerState::PartnerDown));
    grant_to_backup(&t, &[10, 11, 12]);
    // 10.0.0.12 was leased by the partner to client 1 and expired a day ago.
    let slot = t.slot_of(Ipv4Addr::new(10, 0, 0, 12)).expect("slot");
    t.update(slot, |l| {
        l.state = LeaseState::Expired;
        l.owner = Owner::Backup;
        l.client = key(1);
        l.expiry = NOW - 86400;
    });
    let now = NOW + 10 * 86400;
    // Client 1 gets our one FREE address (13), not its old one of the partner's side.
    let (_, b) = run(&mut e, now, &bootreq(1, NONE, 0));
    assert_eq!(yiaddr(&b), Ipv4Addr::new(10, 0, 0, 13));
    // Then nothing is left for BOOTP: the partner's addresses stay the partner's.
    let (d, _) = run(&mut e, now, &bootreq(2, NONE, 0));
    assert_eq!(d, Decision::Silent(Silence::PoolExhausted));
    // Nor for a DHCP client of this pool (draft-12 5.14: the whole pool follows the rule).
    let (d, _) = run(
        &mut e,
        now,
        &request(3, NONE, NONE, &[(opt::MESSAGE_TYPE, &[1])]),
    );
    assert!(matches!(d, Decision::Silent(_)), "{d:?}");
    for n in [10, 11, 12] {
        let l = t.read(t.slot_of(Ipv4Addr::new(10, 0, 0, n)).expect("slot"));
        assert!(
            !l.state.binds_client() || l.state == LeaseState::Expired,
            "{n}: {l:?}"
        );
    }
}

#[test]
fn bootp_failover_secondary_allocates_only_backup_addresses() {
    let (_d, mut e, t) = failover_engine(policy(Role::Secondary, ServerState::PartnerDown));
    grant_to_backup(&t, &[12, 13]);
    let mut got = Vec::new();
    for mac in 1..=3 {
        let (_, b) = run(&mut e, NOW + 10 * 86400, &bootreq(mac, NONE, 0));
        if !b.is_empty() {
            got.push(yiaddr(&b).octets()[3]);
        }
    }
    got.sort_unstable();
    assert_eq!(got, vec![12, 13]);
}

#[test]
fn bootp_failover_lease_is_permanent_not_mclt() {
    let (_d, mut e, t) = failover_engine(policy(Role::Primary, ServerState::Normal));
    let (_, b) = run(&mut e, NOW, &bootreq(1, NONE, 0));
    let l = t.read(t.slot_of(yiaddr(&b)).expect("slot"));
    assert_eq!(l.expiry, EXPIRY_PERMANENT);
    assert_eq!(l.potential_expiry, EXPIRY_PERMANENT);
    // What the partner is sent: the lease end 0xffffffff and the B bit.
    let bnd = xdhcpd_failover::store::lease_to_binding(&l).expect("binding");
    assert_eq!(bnd.lease_expiry, 0xffff_ffff);
    assert_eq!(
        bnd.flags & xdhcpd_failover::types::IP_FLAG_BOOTP,
        xdhcpd_failover::types::IP_FLAG_BOOTP
    );
}

#[test]
fn bootp_failover_backup_in_normal_leaves_bootp_to_the_primary() {
    // Without load balancing the backup answers no new client in NORMAL, BOOTP included.
    let (_d, mut e, t) = failover_engine(policy(Role::Secondary, ServerState::Normal));
    grant_to_backup(&t, &[12, 13]);
    let (d, _) = run(&mut e, NOW, &bootreq(1, NONE, 0));
    assert_eq!(d, Decision::Silent(Silence::Failover));
}
