//! Regression tests for what the `dhcpv4_engine` fuzz target found (`fuzz/`), each the
//! minimized input replayed in plain engine calls.

use std::net::Ipv4Addr;

use lease_store::LeaseState;

use super::engine::{Decision, RxMeta};
use super::test_support::{engine_on, request};
use super::wire::{opt, MessageType};

const SERVER: Ipv4Addr = Ipv4Addr::new(10, 0, 0, 1);
const NOW: u32 = 1_800_000_000;
const RESERVED: Ipv4Addr = Ipv4Addr::new(10, 0, 0, 12);
/// Client 5 (chaddr 02:00:00:00:00:05) holds the reservation.
const OWNER: u8 = 5;

/// A pool of four with a reservation inside it, short offer hold and lease.
const CFG: &str = r#"
[server]
interface = "lo"
lease-file = "/unused"
[lease]
default-time = 60
min-time = 10
max-time = 120
offer-hold = 5
decline-quarantine = 30
[[subnet]]
cidr = "10.0.0.0/24"
router = ["10.0.0.1"]
[[subnet.pool]]
range = "10.0.0.10-10.0.0.13"
[[subnet.reservation]]
hw = "02:00:00:00:00:05"
ip = "10.0.0.12"
"#;

const NONE: Ipv4Addr = Ipv4Addr::UNSPECIFIED;

/// A broadcast from a client at `src` (0.0.0.0 before it has an address).
fn meta(src: Ipv4Addr) -> RxMeta {
    RxMeta {
        local_addr: SERVER,
        src_ip: src,
        dst_ip: Ipv4Addr::BROADCAST,
    }
}

/// The kind and yiaddr of the reply to `req`.
fn answer(e: &mut super::Engine, now: u32, req: &[u8]) -> Option<(MessageType, Ipv4Addr)> {
    answer_from(e, now, NONE, req)
}

fn answer_from(
    e: &mut super::Engine,
    now: u32,
    src: Ipv4Addr,
    req: &[u8],
) -> Option<(MessageType, Ipv4Addr)> {
    let mut out = [0u8; 1500];
    match e.handle(now, &meta(src), req, &mut out) {
        Decision::Reply { kind, .. } => {
            Some((kind, Ipv4Addr::new(out[16], out[17], out[18], out[19])))
        }
        Decision::Silent(_) => None,
    }
}

/// Every other client asks for an address until the pool is empty: none may get the reserved one.
fn others_never_get_the_reserved_address(e: &mut super::Engine, now: u32) {
    for c in 20..40u8 {
        let d = request(c, NONE, NONE, &[(opt::MESSAGE_TYPE, &[1])]);
        if let Some((_, ip)) = answer(e, now, &d) {
            assert_ne!(
                ip, RESERVED,
                "client {c} was offered {RESERVED}, reserved for client {OWNER}"
            );
        }
    }
}

/// Found by `dhcpv4_engine` (minimized: the reserved client's DISCOVER, the offer hold runs
/// out, the sweeper expires the offer, another client's DISCOVER): a reservation inside a
/// pool was protected only at start; once the reserved client's offer or lease ended, the
/// record went back to the free list and another client was offered the address.
#[test]
fn reservation_fuzz_expired_offer_stays_with_its_client() {
    let (_dir, mut e, table) = engine_on(CFG, SERVER, NOW, None);
    e.shared().protect_reservations(NOW);
    let d = request(OWNER, NONE, NONE, &[(opt::MESSAGE_TYPE, &[1])]);
    assert_eq!(
        answer(&mut e, NOW, &d),
        Some((MessageType::Offer, RESERVED))
    );
    let later = NOW + 64;
    table.sweep_expired(later, 64);
    let slot = table
        .slot_of(RESERVED)
        .expect("reserved address in the pool");
    assert_eq!(
        table.read(slot).state,
        LeaseState::Expired,
        "the sweeper ended the offer"
    );
    others_never_get_the_reserved_address(&mut e, later);
    // And the reserved client still gets it.
    assert_eq!(
        answer(&mut e, later, &d),
        Some((MessageType::Offer, RESERVED))
    );
}

/// The same after a whole lease: bound, released, and bound again, expired by the sweeper.
#[test]
fn reservation_fuzz_released_or_expired_lease_stays_with_its_client() {
    let (_dir, mut e, table) = engine_on(CFG, SERVER, NOW, None);
    e.shared().protect_reservations(NOW);
    let discover = request(OWNER, NONE, NONE, &[(opt::MESSAGE_TYPE, &[1])]);
    let select = request(
        OWNER,
        NONE,
        NONE,
        &[
            (opt::MESSAGE_TYPE, &[3]),
            (opt::REQUESTED_IP, &RESERVED.octets()),
            (opt::SERVER_ID, &SERVER.octets()),
        ],
    );
    let release = request(
        OWNER,
        RESERVED,
        NONE,
        &[
            (opt::MESSAGE_TYPE, &[7]),
            (opt::SERVER_ID, &SERVER.octets()),
        ],
    );
    assert_eq!(
        answer(&mut e, NOW, &discover),
        Some((MessageType::Offer, RESERVED))
    );
    assert_eq!(
        answer(&mut e, NOW, &select),
        Some((MessageType::Ack, RESERVED))
    );
    assert_eq!(answer_from(&mut e, NOW + 1, RESERVED, &release), None);
    let slot = table
        .slot_of(RESERVED)
        .expect("reserved address in the pool");
    assert_eq!(table.read(slot).state, LeaseState::Released);
    others_never_get_the_reserved_address(&mut e, NOW + 2);

    let (_dir, mut e, table) = engine_on(CFG, SERVER, NOW, None);
    e.shared().protect_reservations(NOW);
    assert_eq!(
        answer(&mut e, NOW, &discover),
        Some((MessageType::Offer, RESERVED))
    );
    assert_eq!(
        answer(&mut e, NOW, &select),
        Some((MessageType::Ack, RESERVED))
    );
    let after = NOW + 200;
    table.sweep_expired(after, 64);
    let slot = table
        .slot_of(RESERVED)
        .expect("reserved address in the pool");
    assert_eq!(table.read(slot).state, LeaseState::Expired);
    others_never_get_the_reserved_address(&mut e, after);
    assert_eq!(
        answer(&mut e, after, &discover),
        Some((MessageType::Offer, RESERVED))
    );
}
