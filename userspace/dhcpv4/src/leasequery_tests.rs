//! RFC 4388 leasequery through the engine: each answer for each query kind,
//! what refuses an answer, bad input, and a failover backup answering.

use std::net::Ipv4Addr;
use std::sync::Arc;

use dhcproto::{v4, Decodable, Decoder};
use lease_store::{ClientKey, LeaseState, LeaseTable};
use xdhcpd_failover::{FailoverPolicy, PolicyCell, Role, ServerState};

use super::engine::*;
use super::test_support::{engine_on, request};
use super::wire::{opt, Message, MessageType, MAGIC_COOKIE};
use super::Delivery;

const SERVER: Ipv4Addr = Ipv4Addr::new(10, 0, 0, 1);
const RELAY: Ipv4Addr = Ipv4Addr::new(10, 9, 0, 1);
const NONE: Ipv4Addr = Ipv4Addr::UNSPECIFIED;
/// Circuit-id "port-7", remote-id "cpe-42".
const OPT82: &[u8] = &[
    1, 6, b'p', b'o', b'r', b't', b'-', b'7', 2, 6, b'c', b'p', b'e', b'-', b'4', b'2',
];

const CFG: &str = r#"
[server]
interface = "lo"
[lease]
default-time = 3600
min-time = 60
max-time = 7200
[[subnet]]
cidr = "10.0.0.0/24"
[[subnet.pool]]
range = "10.0.0.10-10.0.0.13"
[[subnet]]
cidr = "10.9.0.0/24"
[[subnet.pool]]
range = "10.9.0.10-10.9.0.20"
"#;

struct Fx {
    _dir: tempfile::TempDir,
    engine: Engine,
    table: Arc<LeaseTable>,
}

fn fx(policy: Option<Arc<PolicyCell>>) -> Fx {
    let (_dir, engine, table) = engine_on(CFG, SERVER, 1000, policy);
    Fx {
        _dir,
        engine,
        table,
    }
}

/// One answer: the decision and the answer's options in wire order.
struct Answer {
    d: Decision,
    bytes: Vec<u8>,
}

impl Answer {
    fn kind(&self) -> Option<MessageType> {
        match self.d {
            Decision::Reply { kind, .. } => Some(kind),
            Decision::Silent(_) => None,
        }
    }
    fn msg(&self) -> Message<'_> {
        Message::new_checked(&self.bytes).expect("answer parses")
    }
    fn opt(&self, code: u8) -> Option<Vec<u8>> {
        self.msg()
            .options()
            .map(|o| o.expect("answer options parse"))
            .find(|(c, _, _)| *c == code)
            .map(|(_, v, _)| v.to_vec())
    }
    fn u32_opt(&self, code: u8) -> Option<u32> {
        self.opt(code)
            .map(|v| u32::from_be_bytes(v.try_into().expect("4-byte option")))
    }
}

fn handle(f: &mut Fx, now: u32, r: &[u8]) -> Answer {
    let meta = RxMeta {
        local_addr: SERVER,
        src_ip: RELAY,
        dst_ip: SERVER,
    };
    let mut out = [0u8; 1500];
    let d = f.engine.handle(now, &meta, r, &mut out);
    let bytes = match d {
        Decision::Reply { len, .. } => {
            // dhcproto, an independent decoder, must accept it too.
            v4::Message::decode(&mut Decoder::new(&out[..len])).expect("dhcproto decodes");
            out[..len].to_vec()
        }
        Decision::Silent(_) => Vec::new(),
    };
    Answer { d, bytes }
}

/// DORA through the relay at RELAY with option 82; `client_id` optional.
fn relayed_dora(f: &mut Fx, now: u32, mac: u8, client_id: Option<&[u8]>) -> Ipv4Addr {
    let mut o: Vec<(u8, &[u8])> = vec![(opt::MESSAGE_TYPE, &[1])];
    if let Some(id) = client_id {
        o.push((opt::CLIENT_ID, id));
    }
    o.push((opt::RELAY_AGENT_INFO, OPT82));
    let offer = handle(f, now, &request(mac, NONE, RELAY, &o));
    assert_eq!(offer.kind(), Some(MessageType::Offer));
    let ip = offer.msg().yiaddr();
    let sid = SERVER.octets();
    let rip = ip.octets();
    o[0] = (opt::MESSAGE_TYPE, &[3]);
    o.push((opt::SERVER_ID, &sid));
    o.push((opt::REQUESTED_IP, &rip));
    let ack = handle(f, now, &request(mac, NONE, RELAY, &o));
    assert_eq!(ack.kind(), Some(MessageType::Ack));
    ip
}

/// A DHCPLEASEQUERY from RELAY: chaddr of `mac` (0 = none), ciaddr, options.
fn lq(mac: u8, ciaddr: Ipv4Addr, opts: &[(u8, &[u8])]) -> Vec<u8> {
    let mut o: Vec<(u8, &[u8])> = vec![(opt::MESSAGE_TYPE, &[10])];
    o.extend_from_slice(opts);
    let mut b = request(mac, ciaddr, RELAY, &o);
    if mac == 0 {
        // No hardware address: htype, hlen and chaddr all zero (RFC 4388).
        b[1] = 0;
        b[2] = 0;
        b[28..44].fill(0);
    }
    b
}

const PRL_82: (u8, &[u8]) = (opt::PARAMETER_LIST, &[opt::RELAY_AGENT_INFO]);

#[test]
fn by_ip_active_carries_client_lease_and_option_82() {
    let mut f = fx(None);
    let id = [1, 2, 0, 0, 0, 0, 5];
    let ip = relayed_dora(&mut f, 1000, 5, Some(&id));
    let mut changed = Vec::new();
    f.engine.take_changed(&mut changed);
    assert!(f.engine.take_needs_commit());
    let a = handle(&mut f, 1100, &lq(0, ip, &[PRL_82]));
    assert_eq!(a.kind(), Some(MessageType::LeaseActive));
    assert!(matches!(a.d, Decision::Reply { to: Delivery::Relay(g), .. } if g == RELAY));
    let m = a.msg();
    assert_eq!(m.ciaddr(), ip);
    assert_eq!(m.yiaddr(), NONE);
    assert_eq!(m.giaddr(), RELAY);
    assert_eq!((m.htype(), m.chaddr()), (1, &[2, 0, 0, 0, 0, 5][..]));
    assert_eq!(a.opt(opt::SERVER_ID), Some(SERVER.octets().to_vec()));
    // Granted 3600 s at 1000; asked at 1100.
    assert_eq!(a.u32_opt(opt::LEASE_TIME), Some(3500));
    assert_eq!(a.u32_opt(opt::CLIENT_LAST_TRANSACTION_TIME), Some(100));
    assert_eq!(a.opt(opt::CLIENT_ID), Some(id.to_vec()));
    assert_eq!(a.opt(opt::RELAY_AGENT_INFO), Some(OPT82.to_vec()));
    assert_eq!(a.opt(opt::ASSOCIATED_IP), None);
    let s = f.engine.stats().snapshot();
    assert_eq!((s.leasequeries, s.leasequery_active), (1, 1));
    // A read: nothing for the commit or the partner.
    assert!(!f.engine.take_needs_commit());
    changed.clear();
    f.engine.take_changed(&mut changed);
    assert!(changed.is_empty());
}

#[test]
fn option_82_follows_the_parameter_request_list() {
    let mut f = fx(None);
    let ip = relayed_dora(&mut f, 1000, 6, None);
    // A list without 82: not sent.
    let a = handle(&mut f, 1000, &lq(0, ip, &[(opt::PARAMETER_LIST, &[51])]));
    assert_eq!(a.kind(), Some(MessageType::LeaseActive));
    assert_eq!(a.opt(opt::RELAY_AGENT_INFO), None);
    // No list at all: sent.
    let a = handle(&mut f, 1000, &lq(0, ip, &[]));
    assert_eq!(a.opt(opt::RELAY_AGENT_INFO), Some(OPT82.to_vec()));
    // No client identifier was used: none in the answer.
    assert_eq!(a.opt(opt::CLIENT_ID), None);
}

#[test]
fn by_ip_unassigned_for_our_free_or_released_address_unknown_for_others() {
    let mut f = fx(None);
    let a = handle(&mut f, 1000, &lq(0, Ipv4Addr::new(10, 9, 0, 15), &[]));
    assert_eq!(a.kind(), Some(MessageType::LeaseUnassigned));
    assert_eq!(a.msg().ciaddr(), Ipv4Addr::new(10, 9, 0, 15));
    assert_eq!(a.opt(opt::LEASE_TIME), None);

    // Leased, then released: unassigned again.
    let ip = relayed_dora(&mut f, 1000, 7, None);
    let rel = request(
        7,
        ip,
        RELAY,
        &[
            (opt::MESSAGE_TYPE, &[7]),
            (opt::SERVER_ID, &SERVER.octets()),
        ],
    );
    assert_eq!(
        handle(&mut f, 1001, &rel).d,
        Decision::Silent(Silence::NoReplyExpected)
    );
    let a = handle(&mut f, 1002, &lq(0, ip, &[]));
    assert_eq!(a.kind(), Some(MessageType::LeaseUnassigned));

    // Outside every pool (a configured subnet or not): unknown, ciaddr echoed.
    for other in [Ipv4Addr::new(10, 9, 0, 200), Ipv4Addr::new(192, 0, 2, 1)] {
        let a = handle(&mut f, 1000, &lq(0, other, &[]));
        assert_eq!(a.kind(), Some(MessageType::LeaseUnknown));
        assert_eq!(a.msg().ciaddr(), other);
    }
    let s = f.engine.stats().snapshot();
    assert_eq!(
        (
            s.leasequery_unassigned,
            s.leasequery_unknown,
            s.leasequeries
        ),
        (2, 2, 4)
    );
}

#[test]
fn expired_lease_is_no_longer_active() {
    let mut f = fx(None);
    let ip = relayed_dora(&mut f, 1000, 8, None);
    // 3600 s lease from 1000.
    let a = handle(&mut f, 4600, &lq(0, ip, &[]));
    assert_eq!(a.kind(), Some(MessageType::LeaseUnassigned));
    let a = handle(&mut f, 4600, &lq(8, NONE, &[]));
    assert_eq!(a.kind(), Some(MessageType::LeaseUnknown));
    let a = handle(&mut f, 4599, &lq(8, NONE, &[]));
    assert_eq!(a.kind(), Some(MessageType::LeaseActive));
    assert_eq!(a.u32_opt(opt::LEASE_TIME), Some(1));
}

#[test]
fn by_mac_finds_hardware_keyed_and_mac_client_id_keyed_leases() {
    let mut f = fx(None);
    // Client 9 sends no client id: keyed by (htype, MAC).
    let ip9 = relayed_dora(&mut f, 1000, 9, None);
    // Client 10 sends the usual client id 01 + MAC: keyed by that.
    let id10 = [1, 2, 0, 0, 0, 0, 10];
    let ip10 = relayed_dora(&mut f, 1000, 10, Some(&id10));
    // Client 11 sends an unrelated client id: a MAC query cannot find it.
    relayed_dora(&mut f, 1000, 11, Some(b"opaque-id"));

    let a = handle(&mut f, 1000, &lq(9, NONE, &[PRL_82]));
    assert_eq!(a.kind(), Some(MessageType::LeaseActive));
    assert_eq!(a.msg().ciaddr(), ip9);
    assert_eq!(a.opt(opt::RELAY_AGENT_INFO), Some(OPT82.to_vec()));

    let a = handle(&mut f, 1000, &lq(10, NONE, &[]));
    assert_eq!(a.kind(), Some(MessageType::LeaseActive));
    assert_eq!(a.msg().ciaddr(), ip10);
    assert_eq!(a.opt(opt::CLIENT_ID), Some(id10.to_vec()));

    for unknown in [11, 99] {
        let a = handle(&mut f, 1000, &lq(unknown, NONE, &[]));
        assert_eq!(a.kind(), Some(MessageType::LeaseUnknown));
        // The requester's chaddr is echoed; no address.
        assert_eq!(a.msg().chaddr(), &[2, 0, 0, 0, 0, unknown][..]);
        assert_eq!(a.msg().ciaddr(), NONE);
    }
}

#[test]
fn mac_client_id_fallback_checks_the_hardware_address() {
    let mut f = fx(None);
    // A client whose id looks like 01 + MAC of client 12 but whose chaddr is
    // client 13's: a MAC query for 12 must not claim it.
    let id = [1, 2, 0, 0, 0, 0, 12];
    relayed_dora(&mut f, 1000, 13, Some(&id));
    let a = handle(&mut f, 1000, &lq(12, NONE, &[]));
    assert_eq!(a.kind(), Some(MessageType::LeaseUnknown));
}

#[test]
fn by_client_id_active_and_unknown_echoes_the_id() {
    let mut f = fx(None);
    let id = b"\x00cpe-serial-1234";
    let ip = relayed_dora(&mut f, 1000, 14, Some(id));
    let a = handle(&mut f, 1000, &lq(0, NONE, &[(opt::CLIENT_ID, id)]));
    assert_eq!(a.kind(), Some(MessageType::LeaseActive));
    assert_eq!(a.msg().ciaddr(), ip);
    assert_eq!(a.msg().chaddr(), &[2, 0, 0, 0, 0, 14][..]);
    assert_eq!(a.opt(opt::CLIENT_ID), Some(id.to_vec()));

    let a = handle(
        &mut f,
        1000,
        &lq(0, NONE, &[(opt::CLIENT_ID, b"\x00nobody")]),
    );
    assert_eq!(a.kind(), Some(MessageType::LeaseUnknown));
    assert_eq!(a.opt(opt::CLIENT_ID), Some(b"\x00nobody".to_vec()));
}

#[test]
fn query_order_is_address_then_client_id_then_mac() {
    let mut f = fx(None);
    let ip15 = relayed_dora(&mut f, 1000, 15, None);
    let id16 = b"\x00sixteen";
    let ip16 = relayed_dora(&mut f, 1000, 16, Some(id16));
    // ciaddr of 15, client id of 16, MAC of 16: answered for 15.
    let a = handle(&mut f, 1000, &lq(16, ip15, &[(opt::CLIENT_ID, id16)]));
    assert_eq!(a.msg().ciaddr(), ip15);
    // Client id of 16, MAC of 15: answered for 16.
    let a = handle(&mut f, 1000, &lq(15, NONE, &[(opt::CLIENT_ID, id16)]));
    assert_eq!(a.msg().ciaddr(), ip16);
}

#[test]
fn unrelayed_or_empty_queries_get_no_answer() {
    let mut f = fx(None);
    let ip = relayed_dora(&mut f, 1000, 17, None);
    // giaddr 0: not from a relay agent.
    let mut b = lq(0, ip, &[]);
    b[24..28].fill(0);
    assert_eq!(
        handle(&mut f, 1000, &b).d,
        Decision::Silent(Silence::LeaseQueryRefused)
    );
    // No ciaddr, no client id, no chaddr.
    assert_eq!(
        handle(&mut f, 1000, &lq(0, NONE, &[])).d,
        Decision::Silent(Silence::LeaseQueryRefused)
    );
    // A hardware type with an all-zero address names nothing either.
    let mut b = lq(0, NONE, &[]);
    b[1] = 1;
    b[2] = 6;
    assert_eq!(
        handle(&mut f, 1000, &b).d,
        Decision::Silent(Silence::LeaseQueryRefused)
    );
    let s = f.engine.stats().snapshot();
    assert_eq!((s.leasequeries, s.leasequery_dropped), (3, 3));
}

#[test]
fn malformed_leasequeries_never_panic() {
    let mut f = fx(None);
    let ip = relayed_dora(&mut f, 1000, 18, None);
    // Empty client id (invalid per RFC 2132): malformed.
    let a = handle(&mut f, 1000, &lq(0, NONE, &[(opt::CLIENT_ID, &[])]));
    assert_eq!(a.d, Decision::Silent(Silence::Malformed));
    // Truncated at every length, and bytes flipped everywhere.
    let good = lq(18, ip, &[PRL_82, (opt::CLIENT_ID, b"\x00x")]);
    for n in 0..good.len() {
        let _ = handle(&mut f, 1000, &good[..n]);
    }
    let mut x: u32 = 0x1234_5678;
    for _ in 0..2000 {
        let mut b = good.clone();
        for _ in 0..4 {
            x ^= x << 13;
            x ^= x >> 17;
            x ^= x << 5;
            let at = (x as usize) % b.len();
            b[at] = (x >> 8) as u8;
        }
        b[236..240].copy_from_slice(&MAGIC_COOKIE);
        let _ = handle(&mut f, 1000, &b);
    }
    // An output buffer too small for any answer: counted, no panic.
    let mut small = [0u8; 100];
    let meta = RxMeta {
        local_addr: SERVER,
        src_ip: RELAY,
        dst_ip: SERVER,
    };
    assert_eq!(
        f.engine.handle(1000, &meta, &lq(0, ip, &[]), &mut small),
        Decision::Silent(Silence::NoRoom)
    );
}

fn policy(role: Role, state: ServerState) -> FailoverPolicy {
    FailoverPolicy {
        role,
        state,
        mclt: 3600,
        lease_period_factor_permille: 1500,
        partner_down_usable_at: 0,
        // The primary owns every bucket: the backup answers no new client.
        hba: [0xff; 32],
        load_balance_max_secs: 0,
        rebind_limit: 0,
        own_pool_waits: false,
        expiry_grace: 0,
    }
}

#[test]
fn failover_backup_answers_leasequery_in_every_state() {
    let cell = Arc::new(PolicyCell::new(policy(
        Role::Secondary,
        ServerState::Normal,
    )));
    let mut f = fx(Some(cell.clone()));
    // The binding as a BNDUPD from the primary leaves it (xdhcpd_failover::store::record).
    let ip = Ipv4Addr::new(10, 9, 0, 12);
    let slot = f.table.slot_of(ip).expect("pool address");
    f.table.update(slot, |l| {
        l.state = LeaseState::Active;
        l.client = ClientKey::from_hw(1, &[2, 0, 0, 0, 0, 19]);
        l.htype = 1;
        l.hlen = 6;
        l.chaddr[..6].copy_from_slice(&[2, 0, 0, 0, 0, 19]);
        l.start = 900;
        l.cltt = 900;
        l.expiry = 4500;
        assert!(l.set_relay_agent_info(OPT82));
    });
    // The backup in NORMAL drops a DISCOVER...
    let d = handle(
        &mut f,
        1000,
        &request(20, NONE, RELAY, &[(opt::MESSAGE_TYPE, &[1])]),
    );
    assert_eq!(d.d, Decision::Silent(Silence::Failover));
    // ...but answers leasequeries, by address and by MAC, in every state.
    for state in ServerState::ALL {
        cell.store(&policy(Role::Secondary, state));
        let a = handle(&mut f, 1000, &lq(0, ip, &[PRL_82]));
        assert_eq!(a.kind(), Some(MessageType::LeaseActive), "{state:?}");
        assert_eq!(a.opt(opt::RELAY_AGENT_INFO), Some(OPT82.to_vec()));
        assert_eq!(a.u32_opt(opt::LEASE_TIME), Some(3500));
        assert_eq!(a.u32_opt(opt::CLIENT_LAST_TRANSACTION_TIME), Some(100));
        let a = handle(&mut f, 1000, &lq(19, NONE, &[]));
        assert_eq!(a.msg().ciaddr(), ip, "{state:?}");
    }
    assert_eq!(f.engine.stats().snapshot().failover_dropped, 1);
}

#[test]
fn unicast_renewal_keeps_the_relay_information() {
    let mut f = fx(None);
    let ip = relayed_dora(&mut f, 1000, 21, None);
    // RENEWING: the client unicasts to the server, no relay, no option 82.
    let renew = request(21, ip, NONE, &[(opt::MESSAGE_TYPE, &[3])]);
    let meta = RxMeta {
        local_addr: SERVER,
        src_ip: ip,
        dst_ip: SERVER,
    };
    let mut out = [0u8; 1500];
    let d = f.engine.handle(2800, &meta, &renew, &mut out);
    assert!(matches!(
        d,
        Decision::Reply {
            kind: MessageType::Ack,
            ..
        }
    ));
    let a = handle(&mut f, 2900, &lq(0, ip, &[PRL_82]));
    assert_eq!(a.kind(), Some(MessageType::LeaseActive));
    assert_eq!(a.u32_opt(opt::CLIENT_LAST_TRANSACTION_TIME), Some(100));
    assert_eq!(a.opt(opt::RELAY_AGENT_INFO), Some(OPT82.to_vec()));
    // A relayed message with different option 82 replaces it (the client moved port).
    let moved: &[u8] = &[1, 3, b'p', b'-', b'9'];
    let rebind = request(
        21,
        ip,
        RELAY,
        &[(opt::MESSAGE_TYPE, &[3]), (opt::RELAY_AGENT_INFO, moved)],
    );
    assert_eq!(handle(&mut f, 3000, &rebind).kind(), Some(MessageType::Ack));
    let a = handle(&mut f, 3000, &lq(0, ip, &[PRL_82]));
    assert_eq!(a.opt(opt::RELAY_AGENT_INFO), Some(moved.to_vec()));
}

#[test]
fn varlen_option_82_of_any_length_is_stored_and_returned_whole() {
    let mut f = fx(None);
    let ip = relayed_dora(&mut f, 1000, 23, None);
    let rebind = |o82: &[u8]| {
        request(
            23,
            ip,
            RELAY,
            &[(opt::MESSAGE_TYPE, &[3]), (opt::RELAY_AGENT_INFO, o82)],
        )
    };
    // 23 bytes (the most older builds kept, inline in the record), 24, 120 (a CMTS / OLT),
    // 255 (the longest option): each kept whole and returned whole, replacing the previous.
    for (t, n) in [(2000u32, 21usize), (3000, 22), (4000, 118), (5000, 253)] {
        let o82: Vec<u8> = [&[1u8, n as u8][..], &vec![b'a' + (n % 26) as u8; n][..]].concat();
        assert_eq!(
            handle(&mut f, t, &rebind(&o82)).kind(),
            Some(MessageType::Ack),
            "{} bytes",
            o82.len()
        );
        let a = handle(&mut f, t, &lq(0, ip, &[PRL_82]));
        assert_eq!(a.kind(), Some(MessageType::LeaseActive));
        assert_eq!(
            a.opt(opt::RELAY_AGENT_INFO),
            Some(o82.clone()),
            "{} bytes",
            o82.len()
        );
        let (_, v) = f
            .table
            .read_with_var(f.table.slot_of(ip).expect("pool address"));
        assert_eq!(v.relay_agent_info(), &o82[..]);
    }
    // Host name and vendor class are kept beside it; a renewal without them keeps them.
    let with = request(
        23,
        ip,
        RELAY,
        &[
            (opt::MESSAGE_TYPE, &[3]),
            (opt::HOST_NAME, b"cpe-23"),
            (opt::VENDOR_CLASS, b"docsis3.1"),
        ],
    );
    assert_eq!(handle(&mut f, 6000, &with).kind(), Some(MessageType::Ack));
    let (_, l) = f
        .table
        .read_with_var(f.table.slot_of(ip).expect("pool address"));
    assert_eq!(
        (l.host_name(), l.vendor_class()),
        (&b"cpe-23"[..], &b"docsis3.1"[..])
    );
    assert_eq!(
        handle(&mut f, 7000, &rebind(&[1, 1, b'z'])).kind(),
        Some(MessageType::Ack)
    );
    let (_, l) = f
        .table
        .read_with_var(f.table.slot_of(ip).expect("pool address"));
    assert_eq!(l.relay_agent_info(), &[1, 1, b'z']);
    assert_eq!(
        (l.host_name(), l.vendor_class()),
        (&b"cpe-23"[..], &b"docsis3.1"[..])
    );
}

/// Issue 15 item 1, DISCOVER cost: an OFFER writes nothing to the side area (no lease caps
/// here, the only reader of an offered record's option 82); the REQUEST that binds the lease
/// stores option 82, host name and vendor class whole, and leasequery returns them.
#[test]
fn varlen_offer_writes_no_side_data_the_request_stores_it_whole() {
    let mut f = fx(None);
    let o82: Vec<u8> = [&[1u8, 118][..], &[b'c'; 118][..]].concat();
    let mut o: Vec<(u8, &[u8])> = vec![
        (opt::MESSAGE_TYPE, &[1]),
        (opt::HOST_NAME, b"ont-0042"),
        (opt::VENDOR_CLASS, b"docsis3.1"),
        (opt::RELAY_AGENT_INFO, &o82),
    ];
    let offer = handle(&mut f, 1000, &request(31, NONE, RELAY, &o));
    assert_eq!(offer.kind(), Some(MessageType::Offer));
    // RFC 3046: the reply echoes option 82 whole all the same.
    assert_eq!(offer.opt(opt::RELAY_AGENT_INFO), Some(o82.clone()));
    let ip = offer.msg().yiaddr();
    let slot = f.table.slot_of(ip).expect("pool address");
    let l = f.table.read(slot);
    assert_eq!(l.state, LeaseState::Offered);
    assert!(
        !l.var.is_side() && l.var.is_empty(),
        "an offer wrote variable data: {:?}",
        l.var
    );
    let (sid, rip) = (SERVER.octets(), ip.octets());
    o[0] = (opt::MESSAGE_TYPE, &[3]);
    o.push((opt::SERVER_ID, &sid));
    o.push((opt::REQUESTED_IP, &rip));
    let ack = handle(&mut f, 1000, &request(31, NONE, RELAY, &o));
    assert_eq!(ack.kind(), Some(MessageType::Ack));
    let (l, v) = f.table.read_with_var(slot);
    assert!(l.var.is_side());
    assert_eq!(v.relay_agent_info(), &o82[..]);
    assert_eq!(
        (v.host_name(), v.vendor_class()),
        (&b"ont-0042"[..], &b"docsis3.1"[..])
    );
    let a = handle(&mut f, 1100, &lq(0, ip, &[PRL_82]));
    assert_eq!(a.kind(), Some(MessageType::LeaseActive));
    assert_eq!(a.opt(opt::RELAY_AGENT_INFO), Some(o82));
}

/// `handle` with the query arriving from `giaddr` instead of RELAY.
fn lq_from(giaddr: Ipv4Addr, ciaddr: Ipv4Addr) -> Vec<u8> {
    let mut b = lq(0, ciaddr, &[PRL_82]);
    b[24..28].copy_from_slice(&giaddr.octets());
    b
}

/// Attack: anyone who puts an address in giaddr asks who holds an address. Before: a
/// DHCPLEASEACTIVE with the client's MAC and option 82 (sent to that giaddr). After: a giaddr
/// outside `leasequery-allow` (default: the trusted relays, here the two subnets) gets
/// nothing, counted; the relay still gets its answer.
#[test]
fn leasequery_acl_attack_unlisted_giaddr_gets_nothing() {
    let mut f = fx(None);
    let ip = relayed_dora(&mut f, 1000, 8, None);
    let stranger = Ipv4Addr::new(203, 0, 113, 5);
    let a = handle(&mut f, 1001, &lq_from(stranger, ip));
    assert_eq!(
        a.d,
        Decision::Silent(Silence::LeaseQueryNotAllowed),
        "answered {:?} with option 82 {:?}",
        a.kind(),
        (!a.bytes.is_empty()).then(|| a.opt(opt::RELAY_AGENT_INFO))
    );
    let s = f.engine.stats().snapshot();
    assert_eq!((s.leasequeries, s.leasequery_not_allowed), (1, 1));
    let a = handle(&mut f, 1001, &lq_from(RELAY, ip));
    assert_eq!(a.kind(), Some(MessageType::LeaseActive));
}

/// With `leasequery-allow` set, only the listed access devices are answered, even a trusted
/// relay is not (before: answered), and a listed device need not be a relay.
#[test]
fn leasequery_acl_explicit_list_answers_only_the_listed() {
    let text = CFG.replace(
        "[server]\ninterface = \"lo\"\n",
        "[server]\ninterface = \"lo\"\nleasequery-allow = [\"192.0.2.10\"]\n",
    );
    assert_ne!(text, CFG);
    let (_dir, engine, table) = engine_on(&text, SERVER, 1000, None);
    let mut f = Fx {
        _dir,
        engine,
        table,
    };
    let ip = relayed_dora(&mut f, 1000, 9, None);
    let a = handle(&mut f, 1001, &lq_from(RELAY, ip));
    assert_eq!(a.d, Decision::Silent(Silence::LeaseQueryNotAllowed));
    let device = Ipv4Addr::new(192, 0, 2, 10);
    let a = handle(&mut f, 1001, &lq_from(device, ip));
    assert_eq!(a.kind(), Some(MessageType::LeaseActive));
    assert!(matches!(a.d, Decision::Reply { to: Delivery::Relay(g), .. } if g == device));
    assert_eq!(a.opt(opt::RELAY_AGENT_INFO), Some(OPT82.to_vec()));
    let s = f.engine.stats().snapshot();
    assert_eq!(
        (
            s.leasequeries,
            s.leasequery_not_allowed,
            s.leasequery_active
        ),
        (2, 1, 1)
    );
    // A DHCP message from the listed device is still no trusted relay's.
    let d = handle(
        &mut f,
        1001,
        &request(10, NONE, device, &[(opt::MESSAGE_TYPE, &[1])]),
    )
    .d;
    assert_eq!(d, Decision::Silent(Silence::UntrustedRelay));
}
