//! Relay trust attacks against the engine (`trust.rs`): relay data from a directly attached
//! client, relayed messages from giaddrs that are no trusted relay, and what a trusted relay
//! still may do.

use std::net::Ipv4Addr;
use std::sync::Arc;

use lease_store::{LeaseState, LeaseTable};

use super::engine::*;
use super::test_support::{engine_on, request};
use super::wire::{opt, relay_sub, Message, MessageType};
use super::Delivery;

const SERVER: Ipv4Addr = Ipv4Addr::new(10, 0, 0, 1);
const NONE: Ipv4Addr = Ipv4Addr::UNSPECIFIED;
/// The relay of the remote subnet 10.9.0.0/24.
const RELAY: Ipv4Addr = Ipv4Addr::new(10, 9, 0, 1);

/// The server's own link is 10.0.0.0/24; 10.9.0.0/24 is behind a relay.
fn config(server_extra: &str) -> String {
    format!(
        r#"
[server]
interface = "lo"
{server_extra}
[lease]
default-time = 3600
[[subnet]]
cidr = "10.0.0.0/24"
[[subnet.pool]]
range = "10.0.0.10-10.0.0.13"
[[subnet]]
cidr = "10.9.0.0/24"
[[subnet.pool]]
range = "10.9.0.10-10.9.0.20"
"#
    )
}

struct Fx {
    _dir: tempfile::TempDir,
    engine: Engine,
    table: Arc<LeaseTable>,
}

fn fx(server_extra: &str) -> Fx {
    let (_dir, engine, table) = engine_on(&config(server_extra), SERVER, 1000, None);
    Fx {
        _dir,
        engine,
        table,
    }
}

/// Option 82 naming the relayed subnet by link selection (RFC 3527), with a circuit id.
const LINK_SEL_REMOTE: &[u8] = &[
    relay_sub::CIRCUIT_ID,
    4,
    b'p',
    b'o',
    b'r',
    b't',
    relay_sub::LINK_SELECTION,
    4,
    10,
    9,
    0,
    0,
];

/// A message received on the server's interface from `src`, broadcast.
fn handle(f: &mut Fx, r: &[u8]) -> (Decision, Vec<u8>) {
    let meta = RxMeta {
        local_addr: SERVER,
        src_ip: NONE,
        dst_ip: Ipv4Addr::BROADCAST,
    };
    let mut out = [0u8; 1500];
    let d = f.engine.handle(1000, &meta, r, &mut out);
    let bytes = match d {
        Decision::Reply { len, .. } => out[..len].to_vec(),
        Decision::Silent(_) => Vec::new(),
    };
    (d, bytes)
}

fn yiaddr(bytes: &[u8]) -> Ipv4Addr {
    Message::new_checked(bytes).expect("reply parses").yiaddr()
}

fn echoed_82(bytes: &[u8]) -> Option<Vec<u8>> {
    let m = Message::new_checked(bytes).expect("reply parses");
    m.summary()
        .expect("reply options")
        .relay_agent_info
        .map(<[u8]>::to_vec)
}

fn on_remote_subnet(ip: Ipv4Addr) -> bool {
    ip.octets()[..3] == [10, 9, 0]
}

/// No record of the relayed subnet's pool was touched.
fn remote_pool_untouched(t: &LeaseTable) {
    for last in 10..=20 {
        let slot = t
            .slot_of(Ipv4Addr::new(10, 9, 0, last))
            .expect("pool address");
        assert_eq!(t.read(slot).state, LeaseState::Free, "10.9.0.{last}");
    }
}

/// Attack: a directly attached host puts option 82 with a link selection naming the relayed
/// subnet into its DISCOVER (giaddr 0). Before: OFFER of a 10.9.0.x address (and the host's
/// option 82 echoed and stored). After: dropped (RFC 3046 §2.1), counted; a plain DISCOVER
/// from the same host is answered on its own link.
#[test]
fn relay_trust_attack_link_selection_from_client_is_dropped() {
    let mut f = fx("");
    let (d, bytes) = handle(
        &mut f,
        &request(
            1,
            NONE,
            NONE,
            &[
                (opt::MESSAGE_TYPE, &[1]),
                (opt::RELAY_AGENT_INFO, LINK_SEL_REMOTE),
            ],
        ),
    );
    assert_eq!(
        d,
        Decision::Silent(Silence::RelayInfoFromClient),
        "answered a client's own option 82: offered {:?}",
        (!bytes.is_empty()).then(|| yiaddr(&bytes))
    );
    assert_eq!(
        f.engine.stats().snapshot().relay_info_from_client_dropped,
        1
    );
    remote_pool_untouched(&f.table);
    let (d, bytes) = handle(
        &mut f,
        &request(1, NONE, NONE, &[(opt::MESSAGE_TYPE, &[1])]),
    );
    assert!(
        matches!(
            d,
            Decision::Reply {
                kind: MessageType::Offer,
                ..
            }
        ),
        "{d:?}"
    );
    assert_eq!(yiaddr(&bytes).octets()[..3], [10, 0, 0]);
}

/// Attack as above under `untrusted-relay-info = "strip"`. Before: OFFER on the relayed
/// subnet, option 82 echoed, and stored with the binding. After: served on its own link as
/// if it had sent no option 82: nothing echoed, nothing stored, counted.
#[test]
fn relay_trust_attack_strip_policy_serves_without_relay_data() {
    let mut f = fx("untrusted-relay-info = \"strip\"");
    let with_82 = |kind: u8, ip: Option<Ipv4Addr>| {
        let mut o: Vec<(u8, Vec<u8>)> = vec![
            (opt::MESSAGE_TYPE, vec![kind]),
            (opt::RELAY_AGENT_INFO, LINK_SEL_REMOTE.to_vec()),
        ];
        if let Some(ip) = ip {
            o.push((opt::SERVER_ID, SERVER.octets().to_vec()));
            o.push((opt::REQUESTED_IP, ip.octets().to_vec()));
        }
        let o: Vec<(u8, &[u8])> = o.iter().map(|(c, v)| (*c, v.as_slice())).collect();
        request(2, NONE, NONE, &o)
    };
    let (d, offer) = handle(&mut f, &with_82(1, None));
    assert!(
        matches!(
            d,
            Decision::Reply {
                kind: MessageType::Offer,
                ..
            }
        ),
        "{d:?}"
    );
    let ip = yiaddr(&offer);
    assert!(
        !on_remote_subnet(ip),
        "link selection from a client was honoured: {ip}"
    );
    assert_eq!(echoed_82(&offer), None, "a client's option 82 was echoed");
    let (d, ack) = handle(&mut f, &with_82(3, Some(ip)));
    assert!(
        matches!(
            d,
            Decision::Reply {
                kind: MessageType::Ack,
                ..
            }
        ),
        "{d:?}"
    );
    assert_eq!(echoed_82(&ack), None);
    let (l, v) = f
        .table
        .read_with_var(f.table.slot_of(ip).expect("pool address"));
    assert_eq!(l.state, LeaseState::Active);
    assert!(
        v.relay_agent_info().is_empty(),
        "a client's option 82 was stored (and would reach the partner and leasequery): {:?}",
        v.relay_agent_info()
    );
    assert_eq!(
        f.engine.stats().snapshot().relay_info_from_client_stripped,
        2
    );
    remote_pool_untouched(&f.table);
}

/// Attack: a directly attached host names the relayed subnet with option 118 (RFC 3011).
/// Before: OFFER of a 10.9.0.x address. After: option 118 ignored (counted), OFFER on the
/// host's own link.
#[test]
fn relay_trust_attack_subnet_selection_from_client_is_ignored() {
    let mut f = fx("");
    let (d, bytes) = handle(
        &mut f,
        &request(
            3,
            NONE,
            NONE,
            &[
                (opt::MESSAGE_TYPE, &[1]),
                (opt::SUBNET_SELECTION, &[10, 9, 0, 0]),
            ],
        ),
    );
    assert!(matches!(d, Decision::Reply { .. }), "{d:?}");
    let ip = yiaddr(&bytes);
    assert!(
        !on_remote_subnet(ip),
        "option 118 from a client was honoured: {ip}"
    );
    assert_eq!(
        f.engine
            .stats()
            .snapshot()
            .subnet_selection_from_client_ignored,
        1
    );
    remote_pool_untouched(&f.table);
}

/// Attack: a message "relayed" from a giaddr the configuration never mentions, selecting a
/// subnet by link selection. Before: OFFER sent to that giaddr (an address the sender chose).
/// After: dropped and counted; nothing is sent to an untrusted giaddr.
#[test]
fn relay_trust_attack_reply_to_a_giaddr_outside_the_configuration() {
    let mut f = fx("");
    let rogue = Ipv4Addr::new(203, 0, 113, 9);
    let (d, _) = handle(
        &mut f,
        &request(
            4,
            NONE,
            rogue,
            &[
                (opt::MESSAGE_TYPE, &[1]),
                (opt::RELAY_AGENT_INFO, LINK_SEL_REMOTE),
            ],
        ),
    );
    assert_eq!(d, Decision::Silent(Silence::UntrustedRelay), "{d:?}");
    assert_eq!(f.engine.stats().snapshot().untrusted_relay, 1);
    remote_pool_untouched(&f.table);
}

/// With `trusted-relays` set, only those giaddrs are relays: another address inside the
/// relayed subnet is refused (before: served), the listed relay is served, and its link
/// selection and option 82 are honoured and echoed.
#[test]
fn relay_trust_explicit_list_admits_only_the_listed_relays() {
    let mut f = fx("trusted-relays = [\"10.9.0.1\"]");
    let discover = |giaddr: Ipv4Addr, mac: u8| {
        request(
            mac,
            NONE,
            giaddr,
            &[
                (opt::MESSAGE_TYPE, &[1]),
                (opt::RELAY_AGENT_INFO, LINK_SEL_REMOTE),
            ],
        )
    };
    let (d, _) = handle(&mut f, &discover(Ipv4Addr::new(10, 9, 0, 77), 5));
    assert_eq!(d, Decision::Silent(Silence::UntrustedRelay), "{d:?}");
    remote_pool_untouched(&f.table);
    let (d, bytes) = handle(&mut f, &discover(RELAY, 6));
    assert!(
        matches!(d, Decision::Reply { kind: MessageType::Offer, to: Delivery::Relay(g), .. } if g == RELAY),
        "{d:?}"
    );
    assert!(on_remote_subnet(yiaddr(&bytes)));
    assert_eq!(echoed_82(&bytes).as_deref(), Some(LINK_SEL_REMOTE));
    // Option 118 from the trusted relay selects too.
    let (_, bytes) = handle(
        &mut f,
        &request(
            7,
            NONE,
            RELAY,
            &[
                (opt::MESSAGE_TYPE, &[1]),
                (opt::SUBNET_SELECTION, &[10, 0, 0, 0]),
            ],
        ),
    );
    assert_eq!(yiaddr(&bytes).octets()[..3], [10, 0, 0]);
    let s = f.engine.stats().snapshot();
    assert_eq!(
        (s.untrusted_relay, s.subnet_selection_from_client_ignored),
        (1, 0)
    );
}
