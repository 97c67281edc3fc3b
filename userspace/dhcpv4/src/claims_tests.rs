//! Claims need proof (RFC 2131 §4.3): attacks by a client that asks for what it was never
//! given, or acts for another client: SELECTING without an OFFER, INIT-REBOOT of a free
//! address, DECLINE of an offer or without our server id, a spoofed RELEASE, and another
//! host's chaddr under a client's identity (unicast / neighbour entry to the wrong host).

use std::net::Ipv4Addr;
use std::sync::Arc;

use lease_store::{LeaseState, LeaseTable};

use super::engine::*;
use super::test_support::{engine_on, request};
use super::wire::{opt, Message, MessageType};
use super::Delivery;

const SERVER: Ipv4Addr = Ipv4Addr::new(10, 0, 0, 1);
const NONE: Ipv4Addr = Ipv4Addr::UNSPECIFIED;
const FREE: Ipv4Addr = Ipv4Addr::new(10, 0, 0, 12);
/// Client A's identity (option 61); A's chaddr ends in 0x0a, the attacker's in 0x0b.
const CID_A: &[u8] = &[0, b'c', b'p', b'e', b'-', b'A'];
const MAC_A: u8 = 0x0a;
const MAC_B: u8 = 0x0b;

fn config(lease_extra: &str) -> String {
    format!(
        r#"
[server]
interface = "lo"
[lease]
default-time = 3600
max-time = 86400
decline-quarantine = 600
{lease_extra}
[[subnet]]
cidr = "10.0.0.0/24"
[[subnet.pool]]
range = "10.0.0.10-10.0.0.13"
"#
    )
}

struct Fx {
    _dir: tempfile::TempDir,
    engine: Engine,
    table: Arc<LeaseTable>,
}

fn fx(lease_extra: &str) -> Fx {
    let (_dir, engine, table) = engine_on(&config(lease_extra), SERVER, 1000, None);
    Fx {
        _dir,
        engine,
        table,
    }
}

/// A broadcast from a client without an address.
fn bcast() -> RxMeta {
    RxMeta {
        local_addr: SERVER,
        src_ip: NONE,
        dst_ip: Ipv4Addr::BROADCAST,
    }
}

/// A unicast to us from `src`.
fn from(src: Ipv4Addr) -> RxMeta {
    RxMeta {
        local_addr: SERVER,
        src_ip: src,
        dst_ip: SERVER,
    }
}

fn handle(f: &mut Fx, m: &RxMeta, r: &[u8]) -> (Decision, Vec<u8>) {
    let mut out = [0u8; 1500];
    let d = f.engine.handle(1000, m, r, &mut out);
    let bytes = match d {
        Decision::Reply { len, .. } => out[..len].to_vec(),
        Decision::Silent(_) => Vec::new(),
    };
    (d, bytes)
}

fn kind(d: &Decision) -> Option<MessageType> {
    match d {
        Decision::Reply { kind, .. } => Some(*kind),
        Decision::Silent(_) => None,
    }
}

fn state(f: &Fx, ip: Ipv4Addr) -> LeaseState {
    f.table
        .read(f.table.slot_of(ip).expect("pool address"))
        .state
}

fn refused(f: &Fx) -> u64 {
    f.engine.stats().snapshot().claims_refused
}

/// Options of a message of type `mt` with client id `cid`, requested ip, server id.
fn msg(
    mac: u8,
    ciaddr: Ipv4Addr,
    mt: u8,
    cid: Option<&[u8]>,
    requested: Option<Ipv4Addr>,
    server_id: bool,
) -> Vec<u8> {
    let sid = SERVER.octets();
    let rip = requested.map(|a| a.octets());
    let mut o: Vec<(u8, &[u8])> = vec![(opt::MESSAGE_TYPE, std::slice::from_ref(&mt))];
    if let Some(c) = cid {
        o.push((opt::CLIENT_ID, c));
    }
    if let Some(r) = &rip {
        o.push((opt::REQUESTED_IP, r));
    }
    if server_id {
        o.push((opt::SERVER_ID, &sid));
    }
    request(mac, ciaddr, NONE, &o)
}

/// DISCOVER + SELECTING REQUEST; the bound address.
fn dora(f: &mut Fx, mac: u8, cid: Option<&[u8]>) -> Ipv4Addr {
    let (d, offer) = handle(f, &bcast(), &msg(mac, NONE, 1, cid, None, false));
    assert_eq!(kind(&d), Some(MessageType::Offer), "{d:?}");
    let ip = Message::new_checked(&offer).expect("offer").yiaddr();
    let (d, _) = handle(f, &bcast(), &msg(mac, NONE, 3, cid, Some(ip), true));
    assert_eq!(kind(&d), Some(MessageType::Ack), "{d:?}");
    ip
}

/// Attack: a SELECTING REQUEST naming our server id and a free address that was never
/// offered. Before: ACK, the address bound for the full lease (pool draining without an
/// OFFER). After: NAK, the address stays free, counted; the same client is served normally
/// after a DISCOVER.
#[test]
fn claims_attack_selecting_an_address_never_offered() {
    let mut f = fx("");
    let (d, _) = handle(&mut f, &bcast(), &msg(1, NONE, 3, None, Some(FREE), true));
    assert_eq!(kind(&d), Some(MessageType::Nak), "{d:?}");
    assert_eq!(state(&f, FREE), LeaseState::Free);
    assert_eq!(refused(&f), 1);
    // Another client's offer is no proof either.
    let (_, offer) = handle(&mut f, &bcast(), &msg(2, NONE, 1, None, None, false));
    let offered = Message::new_checked(&offer).expect("offer").yiaddr();
    let (d, _) = handle(
        &mut f,
        &bcast(),
        &msg(1, NONE, 3, None, Some(offered), true),
    );
    assert_eq!(kind(&d), Some(MessageType::Nak), "{d:?}");
    assert_eq!(state(&f, offered), LeaseState::Offered);
    // The honest way still works.
    let ip = dora(&mut f, 1, None);
    assert_eq!(state(&f, ip), LeaseState::Active);
}

/// Attack: an INIT-REBOOT (requested address, no ciaddr, no server id) for a free address
/// that was never the client's. Before: ACK and bound (authoritative server). After: NAK
/// when authoritative, silence when not; the address stays free, counted. A client's own
/// binding is still confirmed.
#[test]
fn claims_attack_init_reboot_for_an_address_not_its_own() {
    let mut f = fx("");
    let (d, _) = handle(&mut f, &bcast(), &msg(1, NONE, 3, None, Some(FREE), false));
    assert_eq!(kind(&d), Some(MessageType::Nak), "{d:?}");
    assert_eq!(state(&f, FREE), LeaseState::Free);
    assert_eq!(refused(&f), 1);
    let ip = dora(&mut f, 2, None);
    let (d, _) = handle(&mut f, &bcast(), &msg(2, NONE, 3, None, Some(ip), false));
    assert_eq!(kind(&d), Some(MessageType::Ack), "own binding: {d:?}");

    let mut f = fx("authoritative = false");
    let (d, _) = handle(&mut f, &bcast(), &msg(1, NONE, 3, None, Some(FREE), false));
    assert_eq!(d, Decision::Silent(Silence::UnknownClient));
    assert_eq!(state(&f, FREE), LeaseState::Free);
    assert_eq!(refused(&f), 1);
}

/// Attack: DECLINE of an address that was only offered, and DECLINE without option 54.
/// Before: both quarantined the address (decline-quarantine, here 600 s). After: ignored,
/// counted; a DECLINE with our server id of the client's own bound address still
/// quarantines it.
#[test]
fn claims_attack_decline_needs_a_binding_and_our_server_id() {
    let mut f = fx("");
    let (_, offer) = handle(&mut f, &bcast(), &msg(1, NONE, 1, None, None, false));
    let offered = Message::new_checked(&offer).expect("offer").yiaddr();
    let (d, _) = handle(
        &mut f,
        &bcast(),
        &msg(1, NONE, 4, None, Some(offered), true),
    );
    assert_eq!(d, Decision::Silent(Silence::Unproven));
    assert_eq!(state(&f, offered), LeaseState::Offered, "offer quarantined");

    let ip = dora(&mut f, 2, None);
    let (d, _) = handle(&mut f, &bcast(), &msg(2, NONE, 4, None, Some(ip), false));
    assert_eq!(d, Decision::Silent(Silence::Unproven));
    assert_eq!(
        state(&f, ip),
        LeaseState::Active,
        "declined without option 54"
    );
    assert_eq!(refused(&f), 2);
    assert_eq!(f.engine.stats().snapshot().declines, 0);

    let (d, _) = handle(&mut f, &bcast(), &msg(2, NONE, 4, None, Some(ip), true));
    assert_eq!(d, Decision::Silent(Silence::NoReplyExpected));
    assert_eq!(state(&f, ip), LeaseState::Declined);
}

/// Attack: a RELEASE of client A's address by a host that knows A's client id and address:
/// sent from another source address, from A's address but another chaddr, or without our
/// server id. Before: each released A's binding (the address free for anyone). After: all
/// ignored and counted; A's own RELEASE from its address releases it.
#[test]
fn claims_attack_spoofed_release() {
    let mut f = fx("");
    let ip = dora(&mut f, MAC_A, Some(CID_A));
    let elsewhere = Ipv4Addr::new(10, 0, 0, 99);
    for (m, r) in [
        (from(elsewhere), msg(MAC_A, ip, 7, Some(CID_A), None, true)),
        (from(ip), msg(MAC_B, ip, 7, Some(CID_A), None, true)),
        (from(ip), msg(MAC_A, ip, 7, Some(CID_A), None, false)),
    ] {
        let (d, _) = handle(&mut f, &m, &r);
        assert_eq!(d, Decision::Silent(Silence::Unproven), "{m:?}");
        assert_eq!(state(&f, ip), LeaseState::Active, "released by {m:?}");
    }
    assert_eq!(refused(&f), 3);
    let (d, _) = handle(
        &mut f,
        &from(ip),
        &msg(MAC_A, ip, 7, Some(CID_A), None, true),
    );
    assert_eq!(d, Decision::Silent(Silence::NoReplyExpected));
    assert_eq!(state(&f, ip), LeaseState::Released);
}

/// Attack: host B sends a DISCOVER and a REQUEST with client A's option 61 and its own
/// chaddr. Before: the OFFER and the ACK of A's address were unicast to B's hardware address
/// (in UDP mode after installing the kernel neighbour entry A's address -> B's MAC, which
/// sends the server's later traffic for A's address to B) and the binding's chaddr became
/// B's. After: both are broadcast, counted, the binding keeps A's hardware address; A itself
/// still gets unicast replies.
#[test]
fn claims_attack_anothers_client_id_gets_no_unicast_to_its_chaddr() {
    let mut f = fx("");
    let ip = dora(&mut f, MAC_A, Some(CID_A));
    let slot = f.table.slot_of(ip).expect("pool address");
    let (d, offer) = handle(
        &mut f,
        &bcast(),
        &msg(MAC_B, NONE, 1, Some(CID_A), None, false),
    );
    assert_eq!(Message::new_checked(&offer).expect("offer").yiaddr(), ip);
    assert!(
        matches!(
            d,
            Decision::Reply {
                kind: MessageType::Offer,
                to: Delivery::Broadcast,
                ..
            }
        ),
        "A's address offered to B's chaddr: {d:?}"
    );
    let (d, _) = handle(
        &mut f,
        &bcast(),
        &msg(MAC_B, NONE, 3, Some(CID_A), Some(ip), true),
    );
    assert!(
        matches!(
            d,
            Decision::Reply {
                kind: MessageType::Ack,
                to: Delivery::Broadcast,
                ..
            }
        ),
        "A's address acknowledged to B's chaddr: {d:?}"
    );
    assert_eq!(f.table.read(slot).chaddr[5], MAC_A, "binding moved to B");
    assert_eq!(f.engine.stats().snapshot().reply_hw_not_bindings, 2);
    // A itself: unicast to its own hardware address.
    let (d, _) = handle(
        &mut f,
        &bcast(),
        &msg(MAC_A, NONE, 1, Some(CID_A), None, false),
    );
    assert!(
        matches!(d, Decision::Reply { to: Delivery::ToClient { ip: i, mac }, .. } if i == ip && mac[5] == MAC_A),
        "{d:?}"
    );
}
