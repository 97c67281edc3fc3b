//! Behaviour of the engine against a real lease table in a temporary file.

use std::net::Ipv4Addr;
use std::sync::Arc;

use dhcproto::{v4, Decodable, Decoder};
use lease_store::{LeaseState, LeaseTable};

use super::engine::*;
use super::test_support::{engine_on, request};
use super::wire::{opt, MessageType, MAGIC_COOKIE};
use super::Delivery;

const SERVER: Ipv4Addr = Ipv4Addr::new(10, 0, 0, 1);

const CFG: &str = r#"
[server]
interface = "lo"
lease-file = "/unused"
[lease]
default-time = 3600
min-time = 60
max-time = 7200
offer-hold = 30
decline-quarantine = 600
[[subnet]]
cidr = "10.0.0.0/24"
router = ["10.0.0.1"]
dns-servers = ["10.0.0.53"]
domain-name = "test.example"
[[subnet.pool]]
range = "10.0.0.10-10.0.0.13"
[[subnet]]
cidr = "10.9.0.0/24"
router = ["10.9.0.1"]
[[subnet.pool]]
range = "10.9.0.10-10.9.0.20"
"#;

struct Fixture {
    _dir: tempfile::TempDir,
    engine: Engine,
    table: Arc<LeaseTable>,
}

fn fixture() -> Fixture {
    let (_dir, engine, table) = engine_on(CFG, SERVER, 1000, None);
    Fixture {
        _dir,
        engine,
        table,
    }
}

/// A client request: chaddr from `mac_last`, options as given.
fn req(mac_last: u8, ciaddr: Ipv4Addr, giaddr: Ipv4Addr, opts: &[(u8, &[u8])]) -> Vec<u8> {
    request(mac_last, ciaddr, giaddr, opts)
}

const NONE: Ipv4Addr = Ipv4Addr::UNSPECIFIED;

fn meta() -> RxMeta {
    RxMeta {
        local_addr: SERVER,
        src_ip: NONE,
        dst_ip: Ipv4Addr::BROADCAST,
    }
}

/// Runs one request; returns the decision and the decoded reply.
fn run(f: &mut Fixture, now: u32, r: &[u8]) -> (Decision, Option<v4::Message>) {
    run_with(f, now, &meta(), r)
}

/// A message unicast to us by a client from its address `src` (RENEW, RELEASE).
fn run_from(f: &mut Fixture, now: u32, src: Ipv4Addr, r: &[u8]) -> Decision {
    let from = RxMeta {
        local_addr: SERVER,
        src_ip: src,
        dst_ip: SERVER,
    };
    run_with(f, now, &from, r).0
}

fn run_with(f: &mut Fixture, now: u32, m: &RxMeta, r: &[u8]) -> (Decision, Option<v4::Message>) {
    let mut out = [0u8; 1500];
    let d = f.engine.handle(now, m, r, &mut out);
    let m = match d {
        Decision::Reply { len, .. } => {
            Some(v4::Message::decode(&mut Decoder::new(&out[..len])).unwrap())
        }
        _ => None,
    };
    (d, m)
}

fn msg_type(m: &v4::Message) -> v4::MessageType {
    match m.opts().get(v4::OptionCode::MessageType) {
        Some(v4::DhcpOption::MessageType(t)) => *t,
        other => panic!("no message type: {other:?}"),
    }
}

fn dora(f: &mut Fixture, now: u32, mac: u8) -> Ipv4Addr {
    let (_, offer) = run(f, now, &req(mac, NONE, NONE, &[(opt::MESSAGE_TYPE, &[1])]));
    let offer = offer.expect("offer");
    assert_eq!(msg_type(&offer), v4::MessageType::Offer);
    let ip = offer.yiaddr();
    let (_, ack) = run(
        f,
        now,
        &req(
            mac,
            NONE,
            NONE,
            &[
                (opt::MESSAGE_TYPE, &[3]),
                (opt::SERVER_ID, &SERVER.octets()),
                (opt::REQUESTED_IP, &ip.octets()),
            ],
        ),
    );
    let ack = ack.expect("ack");
    assert_eq!(msg_type(&ack), v4::MessageType::Ack);
    assert_eq!(ack.yiaddr(), ip);
    ip
}

#[test]
fn dora_gives_a_pool_address_with_options() {
    let mut f = fixture();
    let (d, offer) = run(
        &mut f,
        1000,
        &req(
            1,
            NONE,
            NONE,
            &[
                (opt::MESSAGE_TYPE, &[1]),
                (opt::PARAMETER_LIST, &[1, 3, 6, 15]),
            ],
        ),
    );
    let offer = offer.unwrap();
    assert!(
        matches!(
            d,
            Decision::Reply {
                kind: MessageType::Offer,
                to: Delivery::ToClient { .. },
                ..
            }
        ),
        "{d:?}"
    );
    let ip = offer.yiaddr();
    assert!(
        (u32::from(ip) >= u32::from(Ipv4Addr::new(10, 0, 0, 10)))
            && u32::from(ip) <= u32::from(Ipv4Addr::new(10, 0, 0, 13))
    );
    let o = offer.opts();
    assert_eq!(
        o.get(v4::OptionCode::ServerIdentifier),
        Some(&v4::DhcpOption::ServerIdentifier(SERVER))
    );
    assert_eq!(
        o.get(v4::OptionCode::AddressLeaseTime),
        Some(&v4::DhcpOption::AddressLeaseTime(3600))
    );
    assert_eq!(
        o.get(v4::OptionCode::Renewal),
        Some(&v4::DhcpOption::Renewal(1800))
    );
    assert_eq!(
        o.get(v4::OptionCode::Rebinding),
        Some(&v4::DhcpOption::Rebinding(3150))
    );
    assert_eq!(
        o.get(v4::OptionCode::SubnetMask),
        Some(&v4::DhcpOption::SubnetMask(Ipv4Addr::new(255, 255, 255, 0)))
    );
    assert_eq!(
        o.get(v4::OptionCode::Router),
        Some(&v4::DhcpOption::Router(vec![SERVER]))
    );
    assert!(o.get(v4::OptionCode::DomainName).is_some());
    let slot = f.table.slot_of(ip).unwrap();
    assert_eq!(f.table.read(slot).state, LeaseState::Offered);
    dora(&mut f, 1000, 1);
    assert_eq!(f.table.read(slot).state, LeaseState::Active);
    assert_eq!(f.table.read(slot).expiry, 1000 + 3600);
}

#[test]
fn requested_lease_time_is_clamped() {
    let mut f = fixture();
    let (_, o) = run(
        &mut f,
        1000,
        &req(
            1,
            NONE,
            NONE,
            &[
                (opt::MESSAGE_TYPE, &[1]),
                (opt::LEASE_TIME, &99999u32.to_be_bytes()),
            ],
        ),
    );
    assert_eq!(
        o.unwrap().opts().get(v4::OptionCode::AddressLeaseTime),
        Some(&v4::DhcpOption::AddressLeaseTime(7200))
    );
    let (_, o) = run(
        &mut f,
        1000,
        &req(
            2,
            NONE,
            NONE,
            &[
                (opt::MESSAGE_TYPE, &[1]),
                (opt::LEASE_TIME, &5u32.to_be_bytes()),
            ],
        ),
    );
    assert_eq!(
        o.unwrap().opts().get(v4::OptionCode::AddressLeaseTime),
        Some(&v4::DhcpOption::AddressLeaseTime(60))
    );
}

#[test]
fn pool_exhaustion_and_no_address_twice() {
    let mut f = fixture();
    let mut seen = std::collections::HashSet::new();
    for mac in 1..=4 {
        assert!(seen.insert(dora(&mut f, 1000, mac)), "address given twice");
    }
    let (d, _) = run(
        &mut f,
        1000,
        &req(5, NONE, NONE, &[(opt::MESSAGE_TYPE, &[1])]),
    );
    assert_eq!(d, Decision::Silent(Silence::PoolExhausted));
    // The same clients get their own addresses back.
    for mac in 1..=4 {
        let (_, o) = run(
            &mut f,
            1001,
            &req(mac, NONE, NONE, &[(opt::MESSAGE_TYPE, &[1])]),
        );
        assert!(seen.contains(&o.unwrap().yiaddr()));
    }
    // After expiry (plus the sweep) a new client can have one.
    let now = 1000 + 3601;
    f.table.sweep_expired(now, 1000);
    let (_, o) = run(
        &mut f,
        now,
        &req(5, NONE, NONE, &[(opt::MESSAGE_TYPE, &[1])]),
    );
    assert!(seen.contains(&o.unwrap().yiaddr()));
}

#[test]
fn request_for_someone_elses_address_is_naked() {
    let mut f = fixture();
    let ip = dora(&mut f, 1000, 1);
    // Client 2 claims client 1's address by INIT-REBOOT.
    let (d, m) = run(
        &mut f,
        1001,
        &req(
            2,
            NONE,
            NONE,
            &[(opt::MESSAGE_TYPE, &[3]), (opt::REQUESTED_IP, &ip.octets())],
        ),
    );
    assert!(matches!(
        d,
        Decision::Reply {
            kind: MessageType::Nak,
            to: Delivery::Broadcast,
            ..
        }
    ));
    assert_eq!(msg_type(&m.unwrap()), v4::MessageType::Nak);
    let slot = f.table.slot_of(ip).unwrap();
    assert_eq!(f.table.read(slot).chaddr[5], 1);
}

#[test]
fn init_reboot_on_wrong_network_is_naked_and_renew_extends() {
    let mut f = fixture();
    let (d, _) = run(
        &mut f,
        1000,
        &req(
            1,
            NONE,
            NONE,
            &[
                (opt::MESSAGE_TYPE, &[3]),
                (opt::REQUESTED_IP, &[192, 168, 1, 5]),
            ],
        ),
    );
    assert!(matches!(
        d,
        Decision::Reply {
            kind: MessageType::Nak,
            ..
        }
    ));
    let ip = dora(&mut f, 1000, 1);
    // RENEWING: ciaddr set, unicast reply to ciaddr.
    let (d, m) = run(
        &mut f,
        2800,
        &req(1, ip, NONE, &[(opt::MESSAGE_TYPE, &[3])]),
    );
    assert!(
        matches!(d, Decision::Reply { kind: MessageType::Ack, to: Delivery::Unicast(a), .. } if a == ip)
    );
    assert_eq!(m.unwrap().ciaddr(), ip);
    assert_eq!(
        f.table.read(f.table.slot_of(ip).unwrap()).expiry,
        2800 + 3600
    );
}

#[test]
fn selecting_another_server_withdraws_the_offer() {
    let mut f = fixture();
    let (_, o) = run(
        &mut f,
        1000,
        &req(1, NONE, NONE, &[(opt::MESSAGE_TYPE, &[1])]),
    );
    let ip = o.unwrap().yiaddr();
    let (d, _) = run(
        &mut f,
        1000,
        &req(
            1,
            NONE,
            NONE,
            &[
                (opt::MESSAGE_TYPE, &[3]),
                (opt::SERVER_ID, &[10, 0, 0, 99]),
                (opt::REQUESTED_IP, &ip.octets()),
            ],
        ),
    );
    assert_eq!(d, Decision::Silent(Silence::OtherServer));
    assert_eq!(
        f.table.read(f.table.slot_of(ip).unwrap()).state,
        LeaseState::Free
    );
}

#[test]
fn release_and_decline() {
    let mut f = fixture();
    let ip = dora(&mut f, 1000, 1);
    let release = |mac: u8, ip: Ipv4Addr| {
        req(
            mac,
            ip,
            NONE,
            &[
                (opt::MESSAGE_TYPE, &[7]),
                (opt::SERVER_ID, &SERVER.octets()),
            ],
        )
    };
    // Unicast by the client from its address (RFC 2131 §4.4.6).
    let d = run_from(&mut f, 1100, ip, &release(1, ip));
    assert_eq!(d, Decision::Silent(Silence::NoReplyExpected));
    assert_eq!(
        f.table.read(f.table.slot_of(ip).unwrap()).state,
        LeaseState::Released
    );
    // Released by someone else's RELEASE (even a well-formed one from the address): ignored.
    let ip2 = dora(&mut f, 1200, 2);
    let d = run_from(&mut f, 1200, ip2, &release(3, ip2));
    assert_eq!(d, Decision::Silent(Silence::UnknownClient));
    // DECLINE quarantines for 600 s: nobody gets it meanwhile.
    let (d, _) = run(
        &mut f,
        1300,
        &req(
            2,
            NONE,
            NONE,
            &[
                (opt::MESSAGE_TYPE, &[4]),
                (opt::SERVER_ID, &SERVER.octets()),
                (opt::REQUESTED_IP, &ip2.octets()),
            ],
        ),
    );
    assert_eq!(d, Decision::Silent(Silence::NoReplyExpected));
    let l = f.table.read(f.table.slot_of(ip2).unwrap());
    assert_eq!((l.state, l.expiry), (LeaseState::Declined, 1900));
    for mac in 10..20 {
        if let (_, Some(o)) = run(
            &mut f,
            1400,
            &req(mac, NONE, NONE, &[(opt::MESSAGE_TYPE, &[1])]),
        ) {
            assert_ne!(
                o.yiaddr(),
                ip2,
                "declined address offered during quarantine"
            );
        }
    }
}

#[test]
fn relayed_request_selects_subnet_by_giaddr_and_echoes_option_82() {
    let mut f = fixture();
    let relay = Ipv4Addr::new(10, 9, 0, 1);
    let o82: &[u8] = &[1, 3, b'c', b'i', b'd', 2, 2, 0xab, 0xcd];
    let (d, m) = run(
        &mut f,
        1000,
        &req(
            1,
            NONE,
            relay,
            &[(opt::MESSAGE_TYPE, &[1]), (opt::RELAY_AGENT_INFO, o82)],
        ),
    );
    assert!(matches!(d, Decision::Reply { to: Delivery::Relay(g), .. } if g == relay));
    let m = m.unwrap();
    assert_eq!(m.yiaddr().octets()[..3], [10, 9, 0]);
    // The raw option 82 bytes come back unchanged.
    let mut out = [0u8; 1500];
    let Decision::Reply { len, .. } = f.engine.handle(
        1000,
        &meta(),
        &req(
            1,
            NONE,
            relay,
            &[(opt::MESSAGE_TYPE, &[1]), (opt::RELAY_AGENT_INFO, o82)],
        ),
        &mut out,
    ) else {
        panic!("no reply")
    };
    let r = super::wire::Message::new_checked(&out[..len]).unwrap();
    assert_eq!(r.summary().unwrap().relay_agent_info, Some(o82));
    // Link selection (RFC 3527) overrides giaddr.
    let o82_ls: &[u8] = &[5, 4, 10, 0, 0, 0];
    let (_, m) = run(
        &mut f,
        1000,
        &req(
            2,
            NONE,
            relay,
            &[(opt::MESSAGE_TYPE, &[1]), (opt::RELAY_AGENT_INFO, o82_ls)],
        ),
    );
    assert_eq!(m.unwrap().yiaddr().octets()[..3], [10, 0, 0]);
    // Unknown relay network: no trusted relay (the default trusts the giaddrs that select a
    // subnet), dropped, counted.
    let (d, _) = run(
        &mut f,
        1000,
        &req(
            3,
            NONE,
            Ipv4Addr::new(172, 16, 0, 1),
            &[(opt::MESSAGE_TYPE, &[1])],
        ),
    );
    assert_eq!(d, Decision::Silent(Silence::UntrustedRelay));
    assert_eq!(f.engine.stats().snapshot().untrusted_relay, 1);
}

#[test]
fn relayed_client_renewing_by_unicast_is_acked_on_its_own_subnet() {
    let mut f = fixture();
    let relay = Ipv4Addr::new(10, 9, 0, 1);
    let sel = |mt: u8, ip: Ipv4Addr| {
        req(
            4,
            NONE,
            relay,
            &[
                (opt::MESSAGE_TYPE, &[mt]),
                (opt::SERVER_ID, &SERVER.octets()),
                (opt::REQUESTED_IP, &ip.octets()),
            ],
        )
    };
    let (_, o) = run(&mut f, 1000, &sel(1, NONE));
    let ip = o.expect("offer").yiaddr();
    let (_, a) = run(&mut f, 1000, &sel(3, ip));
    assert_eq!(msg_type(&a.expect("ack")), v4::MessageType::Ack);
    // RENEWING: straight to us (no relay, giaddr 0) from ciaddr, which is on
    // 10.9.0.0/24, not on the interface's 10.0.0.0/24.
    let renew = req(4, ip, NONE, &[(opt::MESSAGE_TYPE, &[3])]);
    let unicast = RxMeta {
        local_addr: SERVER,
        src_ip: ip,
        dst_ip: SERVER,
    };
    let mut out = [0u8; 1500];
    let d = f.engine.handle(2800, &unicast, &renew, &mut out);
    assert!(
        matches!(d, Decision::Reply { kind: MessageType::Ack, to: Delivery::Unicast(a), .. } if a == ip),
        "{d:?}"
    );
    assert_eq!(
        f.table.read(f.table.slot_of(ip).unwrap()).expiry,
        2800 + 3600
    );
}

#[test]
fn client_id_identifies_the_client_over_chaddr() {
    let mut f = fixture();
    let cid: &[u8] = &[0, b'm', b'o', b'd', b'e', b'm'];
    let (_, o) = run(
        &mut f,
        1000,
        &req(
            1,
            NONE,
            NONE,
            &[(opt::MESSAGE_TYPE, &[1]), (opt::CLIENT_ID, cid)],
        ),
    );
    let ip = o.unwrap().yiaddr();
    // Same client-id, different chaddr: same address.
    let (_, o) = run(
        &mut f,
        1000,
        &req(
            9,
            NONE,
            NONE,
            &[(opt::MESSAGE_TYPE, &[1]), (opt::CLIENT_ID, cid)],
        ),
    );
    assert_eq!(o.unwrap().yiaddr(), ip);
}

#[test]
fn inform_gets_options_without_lease() {
    let mut f = fixture();
    let ci = Ipv4Addr::new(10, 0, 0, 200);
    let (d, m) = run(
        &mut f,
        1000,
        &req(
            1,
            ci,
            NONE,
            &[(opt::MESSAGE_TYPE, &[8]), (opt::PARAMETER_LIST, &[3])],
        ),
    );
    assert!(
        matches!(d, Decision::Reply { kind: MessageType::Ack, to: Delivery::Unicast(a), .. } if a == ci)
    );
    let m = m.unwrap();
    assert!(m.opts().get(v4::OptionCode::AddressLeaseTime).is_none());
    assert_eq!(m.yiaddr(), NONE);
    assert!(m.opts().get(v4::OptionCode::Router).is_some());
}

#[test]
fn garbage_is_counted_not_fatal() {
    let mut f = fixture();
    let mut x: u32 = 12345;
    for len in [0usize, 10, 239, 240, 241, 300, 600] {
        let mut b = vec![0u8; len];
        for v in b.iter_mut() {
            x = x.wrapping_mul(1_103_515_245).wrapping_add(12345);
            *v = (x >> 16) as u8;
        }
        if len >= 240 {
            b[0] = 1;
            b[236..240].copy_from_slice(&MAGIC_COOKIE);
            b[2] = 6;
        }
        let _ = run(&mut f, 1000, &b);
    }
    let s = f.engine.stats().snapshot();
    assert_eq!(s.received, 7);
    assert!(s.malformed + s.not_request >= 3);
}

#[test]
fn offers_need_no_commit_bindings_do() {
    let mut f = fixture();
    let (_, o) = run(
        &mut f,
        1000,
        &req(1, NONE, NONE, &[(opt::MESSAGE_TYPE, &[1])]),
    );
    let ip = o.unwrap().yiaddr();
    assert!(
        !f.engine.take_needs_commit(),
        "an OFFER must not wait for a flush"
    );
    let mut changed = Vec::new();
    f.engine.take_changed(&mut changed);
    assert_eq!(changed.len(), 1, "the offer is still reported as a change");
    run(
        &mut f,
        1000,
        &req(
            1,
            NONE,
            NONE,
            &[
                (opt::MESSAGE_TYPE, &[3]),
                (opt::SERVER_ID, &SERVER.octets()),
                (opt::REQUESTED_IP, &ip.octets()),
            ],
        ),
    );
    assert!(
        f.engine.take_needs_commit(),
        "an ACKed binding must be durable first"
    );
    assert!(!f.engine.take_needs_commit(), "the flag resets");
}

#[test]
fn re_offering_a_bound_client_its_lease_reports_no_change() {
    let mut f = fixture();
    let ip = dora(&mut f, 1000, 7);
    let mut changed = Vec::new();
    f.engine.take_changed(&mut changed);
    assert!(!changed.is_empty(), "the DORA changed the record");
    assert!(f.engine.take_needs_commit());
    changed.clear();
    // The same client DISCOVERs again while its lease runs: same address, record untouched, so
    // no slot for the committer or for a failover partner.
    let (_, o) = run(
        &mut f,
        1001,
        &req(7, NONE, NONE, &[(opt::MESSAGE_TYPE, &[1])]),
    );
    assert_eq!(o.expect("an OFFER").yiaddr(), ip);
    f.engine.take_changed(&mut changed);
    assert!(changed.is_empty(), "unchanged record reported: {changed:?}");
    assert!(!f.engine.take_needs_commit());
    // Another client's offer is still a change.
    run(
        &mut f,
        1001,
        &req(8, NONE, NONE, &[(opt::MESSAGE_TYPE, &[1])]),
    );
    f.engine.take_changed(&mut changed);
    assert_eq!(changed.len(), 1);
}
