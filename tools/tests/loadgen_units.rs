//! Pure unit tests of the loadgen's parts: request builder (decoded by an
//! independent implementation, dhcproto), histogram percentiles, duplicate
//! detector, reply parser.

use std::net::Ipv4Addr;

use dhcproto::v4::{self, relay, DhcpOption, OptionCode};
use dhcproto::{Decodable, Decoder};
use etherparse_free_checks::*;
use xdhcpd_tools::loadgen::addrbook::{AckCheck, AddrBook};
use xdhcpd_tools::loadgen::hist::Histogram;
use xdhcpd_tools::loadgen::reply::parse_reply;
use xdhcpd_tools::loadgen::request::{
    addressing, client_mac, relay_info, write_frame, Msg, Peer, RequestSpec, FRAME_LEN,
    PAYLOAD_LEN, PAYLOAD_OFFSET,
};

/// Frame-level checks without another dependency: IPv4 header checksum and
/// the fields the server looks at.
mod etherparse_free_checks {
    pub fn ipv4_checksum_ok(ip: &[u8]) -> bool {
        let mut sum = 0u32;
        for w in ip[..20].chunks(2) {
            sum += u32::from(u16::from_be_bytes([w[0], w[1]]));
        }
        while sum > 0xffff {
            sum = (sum & 0xffff) + (sum >> 16);
        }
        sum == 0xffff
    }
}

const SERVER: Ipv4Addr = Ipv4Addr::new(10, 77, 0, 1);
const SERVER_MAC: [u8; 6] = [2, 0, 0, 0, 0, 1];
const IFACE_MAC: [u8; 6] = [2, 0, 0, 0, 0, 2];

fn peer() -> Peer {
    Peer {
        server: Some((SERVER, SERVER_MAC)),
        iface_mac: IFACE_MAC,
    }
}

fn spec(msg: Msg, relay: Option<Ipv4Addr>) -> RequestSpec {
    RequestSpec {
        msg,
        xid: 0x0100_0007,
        mac: client_mac(0x4c, 7),
        client_id: true,
        broadcast: false,
        relay: relay.map(|g| relay_info(g, 7, 0x4c)),
        nonce: false,
    }
}

/// Builds the frame and decodes its DHCP payload with dhcproto.
fn build(s: &RequestSpec) -> (Vec<u8>, v4::Message) {
    let mut frame = vec![0xaa; 2048];
    let addrs = addressing(s, &peer()).expect("server known");
    let n = write_frame(&mut frame, s, &addrs).expect("fits");
    assert_eq!(n, FRAME_LEN);
    frame.truncate(n);
    let payload = &frame[PAYLOAD_OFFSET..];
    assert_eq!(payload.len(), PAYLOAD_LEN);
    let m = v4::Message::decode(&mut Decoder::new(payload)).expect("dhcproto decodes it");
    (frame, m)
}

fn udp_ports(frame: &[u8]) -> (u16, u16) {
    (
        u16::from_be_bytes([frame[34], frame[35]]),
        u16::from_be_bytes([frame[36], frame[37]]),
    )
}

#[test]
fn discover_is_a_valid_broadcast_request() {
    let (f, m) = build(&spec(Msg::Discover, None));
    assert_eq!(m.opts().msg_type(), Some(v4::MessageType::Discover));
    assert_eq!(m.opcode(), v4::Opcode::BootRequest);
    assert_eq!(m.xid(), 0x0100_0007);
    assert_eq!(&m.chaddr()[..6], &client_mac(0x4c, 7));
    assert_eq!(m.giaddr(), Ipv4Addr::UNSPECIFIED);
    assert_eq!(m.hops(), 0);
    match m.opts().get(OptionCode::ClientIdentifier) {
        Some(DhcpOption::ClientIdentifier(id)) => {
            assert_eq!(id[0], 1);
            assert_eq!(&id[1..], &client_mac(0x4c, 7));
        }
        other => panic!("client id missing: {other:?}"),
    }
    assert!(m.opts().get(OptionCode::RelayAgentInformation).is_none());
    assert!(m.opts().get(OptionCode::RequestedIpAddress).is_none());
    // Ethernet: broadcast from the client's MAC; IP 0.0.0.0 -> 255.255.255.255; 68 -> 67.
    assert_eq!(&f[0..6], &[0xff; 6]);
    assert_eq!(&f[6..12], &client_mac(0x4c, 7));
    assert_eq!(&f[26..30], &[0, 0, 0, 0]);
    assert_eq!(&f[30..34], &[255, 255, 255, 255]);
    assert_eq!(udp_ports(&f), (68, 67));
    assert!(ipv4_checksum_ok(&f[14..34]));
}

#[test]
fn distinct_clients_get_distinct_macs_and_ids() {
    let a = client_mac(0x4c, 1);
    let b = client_mac(0x4c, 256);
    let c = client_mac(0x4d, 1);
    assert_ne!(a, b);
    assert_ne!(a, c);
    assert_eq!(a[0] & 0x03, 0x02, "locally administered unicast");
}

#[test]
fn select_request_carries_server_id_and_requested_ip() {
    let s = spec(
        Msg::Select {
            server_id: SERVER,
            requested: Ipv4Addr::new(10, 77, 1, 9),
        },
        None,
    );
    let (_, m) = build(&s);
    assert_eq!(m.opts().msg_type(), Some(v4::MessageType::Request));
    assert_eq!(
        m.opts().get(OptionCode::RequestedIpAddress),
        Some(&DhcpOption::RequestedIpAddress(Ipv4Addr::new(10, 77, 1, 9)))
    );
    assert_eq!(
        m.opts().get(OptionCode::ServerIdentifier),
        Some(&DhcpOption::ServerIdentifier(SERVER))
    );
    assert_eq!(m.ciaddr(), Ipv4Addr::UNSPECIFIED);
}

#[test]
fn renew_is_unicast_from_ciaddr_without_server_id() {
    let me = Ipv4Addr::new(10, 77, 1, 9);
    let (f, m) = build(&spec(Msg::Renew { ciaddr: me }, None));
    assert_eq!(m.opts().msg_type(), Some(v4::MessageType::Request));
    assert_eq!(m.ciaddr(), me);
    assert!(m.opts().get(OptionCode::ServerIdentifier).is_none());
    assert!(m.opts().get(OptionCode::RequestedIpAddress).is_none());
    assert_eq!(&f[0..6], &SERVER_MAC);
    assert_eq!(&f[26..30], &me.octets());
    assert_eq!(&f[30..34], &SERVER.octets());
    assert_eq!(udp_ports(&f), (68, 67));
}

#[test]
fn init_reboot_requests_its_address_without_server_id() {
    let me = Ipv4Addr::new(10, 77, 1, 10);
    let (f, m) = build(&spec(Msg::InitReboot { requested: me }, None));
    assert_eq!(m.opts().msg_type(), Some(v4::MessageType::Request));
    assert_eq!(m.ciaddr(), Ipv4Addr::UNSPECIFIED);
    assert_eq!(
        m.opts().get(OptionCode::RequestedIpAddress),
        Some(&DhcpOption::RequestedIpAddress(me))
    );
    assert!(m.opts().get(OptionCode::ServerIdentifier).is_none());
    assert_eq!(&f[0..6], &[0xff; 6], "INIT-REBOOT is broadcast");
}

#[test]
fn release_names_address_and_server() {
    let me = Ipv4Addr::new(10, 77, 1, 11);
    let (_, m) = build(&spec(
        Msg::Release {
            ciaddr: me,
            server_id: SERVER,
        },
        None,
    ));
    assert_eq!(m.opts().msg_type(), Some(v4::MessageType::Release));
    assert_eq!(m.ciaddr(), me);
    assert_eq!(
        m.opts().get(OptionCode::ServerIdentifier),
        Some(&DhcpOption::ServerIdentifier(SERVER))
    );
}

#[test]
fn relayed_request_has_giaddr_option_82_and_goes_from_67_to_the_server() {
    let giaddr = Ipv4Addr::new(10, 77, 0, 2);
    let (f, m) = build(&spec(Msg::Discover, Some(giaddr)));
    assert_eq!(m.giaddr(), giaddr);
    assert_eq!(m.hops(), 1);
    let Some(DhcpOption::RelayAgentInformation(info)) =
        m.opts().get(OptionCode::RelayAgentInformation)
    else {
        panic!("option 82 missing")
    };
    assert_eq!(
        info.get(relay::RelayCode::AgentCircuitId),
        Some(&relay::RelayInfo::AgentCircuitId(
            7u32.to_be_bytes().to_vec()
        ))
    );
    assert_eq!(
        info.get(relay::RelayCode::AgentRemoteId),
        Some(&relay::RelayInfo::AgentRemoteId(
            client_mac(0x4c, 7).to_vec()
        ))
    );
    // Unicast from the relay (our interface) to the server, port 67 both ways.
    assert_eq!(&f[0..6], &SERVER_MAC);
    assert_eq!(&f[6..12], &IFACE_MAC);
    assert_eq!(&f[26..30], &giaddr.octets());
    assert_eq!(&f[30..34], &SERVER.octets());
    assert_eq!(udp_ports(&f), (67, 67));
    // Another client gets another circuit id.
    let other = relay_info(giaddr, 8, 0x4c);
    assert_ne!(other.circuit_id, 7u32.to_be_bytes());
}

#[test]
fn unicast_messages_need_the_server_address() {
    let s = spec(
        Msg::Renew {
            ciaddr: Ipv4Addr::new(10, 77, 1, 9),
        },
        None,
    );
    let unknown = Peer {
        server: None,
        iface_mac: IFACE_MAC,
    };
    assert!(addressing(&s, &unknown).is_none());
    assert!(addressing(&spec(Msg::Discover, None), &unknown).is_some());
}

#[test]
fn too_small_buffer_is_an_error_not_a_panic() {
    let s = spec(Msg::Discover, None);
    let addrs = addressing(&s, &peer()).expect("broadcast needs no server");
    for len in [0, 10, PAYLOAD_OFFSET, FRAME_LEN - 1] {
        let mut b = vec![0u8; len];
        assert!(write_frame(&mut b, &s, &addrs).is_err(), "len {len}");
    }
}

#[test]
fn reused_buffer_does_not_leak_old_bytes() {
    let s = spec(Msg::Discover, None);
    let addrs = addressing(&s, &peer()).expect("broadcast");
    let mut a = vec![0u8; 2048];
    let mut b = vec![0xffu8; 2048];
    write_frame(&mut a, &s, &addrs).expect("fits");
    write_frame(&mut b, &s, &addrs).expect("fits");
    assert_eq!(a[..FRAME_LEN], b[..FRAME_LEN]);
}

/// A server reply built by hand (BOOTREPLY with options 53/54/51).
fn reply_frame(kind: u8, xid: u32, chaddr: [u8; 6], yiaddr: Ipv4Addr) -> Vec<u8> {
    let mut p = vec![0u8; 300];
    p[0] = 2;
    p[1] = 1;
    p[2] = 6;
    p[4..8].copy_from_slice(&xid.to_be_bytes());
    p[16..20].copy_from_slice(&yiaddr.octets());
    p[28..34].copy_from_slice(&chaddr);
    p[236..240].copy_from_slice(&[99, 130, 83, 99]);
    let opts = [53, 1, kind, 54, 4, 10, 77, 0, 1, 51, 4, 0, 0, 14, 16, 255];
    p[240..240 + opts.len()].copy_from_slice(&opts);
    let mut f = vec![0u8; 42 + 300];
    f[42..].copy_from_slice(&p);
    let addrs = xdhcpd_io::frame::Ipv4UdpAddrs {
        src_mac: SERVER_MAC,
        dst_mac: chaddr,
        src_ip: SERVER,
        dst_ip: yiaddr,
        src_port: 67,
        dst_port: 68,
    };
    xdhcpd_io::frame::write_ipv4_udp_headers(&mut f, &[], &addrs, 300).expect("fits");
    f
}

#[test]
fn reply_parser_extracts_what_the_engine_needs() {
    let mac = client_mac(0x4c, 5);
    let f = reply_frame(5, 0x0200_0005, mac, Ipv4Addr::new(10, 77, 1, 5));
    let r = parse_reply(&f).expect("an ACK");
    assert_eq!(r.kind, xdhcpd_dhcpv4::wire::MessageType::Ack);
    assert_eq!(r.xid, 0x0200_0005);
    assert_eq!(r.yiaddr, Ipv4Addr::new(10, 77, 1, 5));
    assert_eq!(r.server_id, SERVER);
    assert_eq!(r.lease_time, Some(3600));
    assert_eq!(r.chaddr, mac);
    assert_eq!(r.src_mac, SERVER_MAC);
    // Our own requests (BOOTREQUEST) and garbage are not replies.
    let (req, _) = build(&spec(Msg::Discover, None));
    assert!(parse_reply(&req).is_err());
    for cut in [0, 14, 41, 100, 300] {
        assert!(parse_reply(&f[..cut]).is_err(), "cut {cut}");
    }
}

#[test]
fn histogram_percentiles_are_within_precision() {
    let mut h = Histogram::new();
    // 1..=100_000 µs in ns: pXX is XX% of 100 ms.
    for v in 1..=100_000u64 {
        h.record(v * 1000);
    }
    assert_eq!(h.count(), 100_000);
    assert_eq!(h.max(), 100_000_000);
    assert_eq!(h.min(), Some(1000));
    for (p, exact) in [
        (50.0, 50_000_000f64),
        (90.0, 90_000_000.0),
        (99.0, 99_000_000.0),
        (99.9, 99_900_000.0),
    ] {
        let got = h.percentile(p) as f64;
        let err = (got - exact).abs() / exact;
        assert!(err <= 1.0 / 64.0 + 1e-9, "p{p}: {got} vs {exact} ({err})");
        assert!(
            got >= exact,
            "percentiles never under-report: p{p} {got} < {exact}"
        );
    }
    assert_eq!(h.percentile(100.0), 100_000_000);
    assert!((h.mean() - 50_000_500.0).abs() < 1.0);
}

#[test]
fn histogram_small_values_are_exact_and_merge_adds() {
    let mut a = Histogram::new();
    let mut b = Histogram::new();
    for v in 0..64u64 {
        a.record(v);
    }
    b.record(1 << 50); // beyond the tracked range: last bucket, max exact
    assert_eq!(a.percentile(50.0), 31);
    a.merge(&b);
    assert_eq!(a.count(), 65);
    assert_eq!(a.max(), 1 << 50);
    assert_eq!(a.percentile(100.0), 1 << 50);
    assert_eq!(Histogram::new().percentile(99.0), 0);
}

#[test]
fn duplicate_detector_reports_a_planted_duplicate() {
    let book = AddrBook::new(100);
    let x = Ipv4Addr::new(10, 77, 1, 1);
    assert_eq!(book.ack(1, x, 0, 3600), AckCheck::Fresh);
    // The same address ACKed to another client while client 1 still holds it.
    assert_eq!(book.ack(2, x, 10, 3600), AckCheck::Duplicate { other: 1 });
}

#[test]
fn duplicate_detector_accepts_distinct_addresses_renewals_and_handovers() {
    let book = AddrBook::new(1000);
    for c in 0..1000u32 {
        let a = Ipv4Addr::from(u32::from(Ipv4Addr::new(10, 77, 1, 0)) + c);
        assert_eq!(book.ack(c, a, 0, 3600), AckCheck::Fresh, "client {c}");
    }
    assert_eq!(book.distinct_bound_addresses(), 1000);
    assert_eq!(book.bound_count(), 1000);
    let a0 = Ipv4Addr::new(10, 77, 1, 0);
    // Renewal of the same address by its holder.
    assert_eq!(book.ack(0, a0, 5, 3600), AckCheck::Fresh);
    // Released, then given to another client: not a duplicate.
    book.release(0);
    assert_eq!(book.bound(0), None);
    assert_eq!(book.ack(5, a0, 6, 3600), AckCheck::Fresh);
    // Client 5 moved off its old address (10.77.1.5): that one is free now.
    assert_eq!(
        book.ack(7, Ipv4Addr::new(10, 77, 1, 5), 7, 3600),
        AckCheck::Fresh
    );
    // Expired lease: the address may go to someone else.
    let b = Ipv4Addr::new(10, 88, 0, 1);
    assert_eq!(book.ack(10, b, 0, 30), AckCheck::Fresh);
    assert_eq!(book.ack(11, b, 31, 3600), AckCheck::Fresh);
    // ...but before expiry it is a duplicate.
    assert_eq!(book.ack(12, b, 32, 3600), AckCheck::Duplicate { other: 11 });
}
