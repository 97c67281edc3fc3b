//! Failover behaviour 13 in network namespaces (root; see `common/require.rs`):
//! "BNDUPD carries option 82; leasequery on the partner can answer for the client."
//!
//! An xdhcpd pair on the XDP path reaches NORMAL. A relay agent (a UDP socket on port 67 in
//! the client namespace, 10.77.0.50) takes a client through DISCOVER/REQUEST at the PRIMARY
//! with option 82 (circuit-id and remote-id). Once the primary's binding update is
//! acknowledged, the relay sends RFC 4388 DHCPLEASEQUERYs to the SECONDARY (which drops
//! DISCOVERs in NORMAL): by address and by MAC it answers DHCPLEASEACTIVE for the client with
//! the same option 82 bytes; a free pool address is DHCPLEASEUNASSIGNED, an address outside
//! the pools DHCPLEASEUNKNOWN. The primary answers the same query the same way, and the
//! operator's `xdhcpd leasequery` reads the same answer from the secondary.

#[path = "common/netns.rs"]
mod netns;

#[path = "common/require.rs"]
mod require;

#[path = "daemon_common/mod.rs"]
mod daemon_common;

#[path = "failover_common/mod.rs"]
mod failover_common;

use std::net::{Ipv4Addr, SocketAddrV4, UdpSocket};
use std::time::Duration;

use daemon_common::{write_file, Res};
use failover_common::*;
use require::{require, Capability};
use xdhcpd_dhcpv4::wire::{opt, Message, MessageType, MAGIC_COOKIE, OP_BOOTREQUEST};

const RELAY: Ipv4Addr = Ipv4Addr::new(10, 77, 0, 50);
const MAC: [u8; 6] = [0x02, 0x4c, 0x51, 0, 0, 0x07];
/// Circuit-id "ge-0/0/7.100", remote-id "cpe-42": what an access node inserts.
const OPT82: &[u8] = b"\x01\x0cge-0/0/7.100\x02\x06cpe-42";

/// A relayed BOOTREQUEST (giaddr = RELAY). `mac: None` leaves htype/hlen/chaddr zero.
fn packet(xid: u32, ciaddr: Ipv4Addr, mac: Option<&[u8; 6]>, opts: &[(u8, &[u8])]) -> Vec<u8> {
    let mut b = vec![0u8; 240];
    b[0] = OP_BOOTREQUEST;
    b[4..8].copy_from_slice(&xid.to_be_bytes());
    b[12..16].copy_from_slice(&ciaddr.octets());
    b[24..28].copy_from_slice(&RELAY.octets());
    if let Some(m) = mac {
        b[1] = 1;
        b[2] = 6;
        b[28..34].copy_from_slice(m);
    }
    b[3] = 1; // hops: one relay
    b[236..240].copy_from_slice(&MAGIC_COOKIE);
    for (c, v) in opts {
        b.push(*c);
        b.push(v.len() as u8);
        b.extend_from_slice(v);
    }
    b.push(opt::END);
    b
}

/// What the test reads from an answer.
#[derive(Debug)]
struct Reply {
    kind: MessageType,
    ciaddr: Ipv4Addr,
    yiaddr: Ipv4Addr,
    chaddr: Vec<u8>,
    relay_info: Option<Vec<u8>>,
    lease_time: Option<u32>,
    cltt: Option<u32>,
}

fn parse(b: &[u8]) -> Res<Reply> {
    let m = Message::new_checked(b).map_err(|e| format!("reply: {e}"))?;
    let s = m.summary().map_err(|e| format!("reply options: {e}"))?;
    let mut relay_info = None;
    let mut cltt = None;
    for o in m.options() {
        let (c, v, _) = o.map_err(|e| format!("reply options: {e}"))?;
        if c == opt::RELAY_AGENT_INFO {
            relay_info = Some(v.to_vec());
        }
        if c == opt::CLIENT_LAST_TRANSACTION_TIME {
            cltt = <[u8; 4]>::try_from(v).ok().map(u32::from_be_bytes);
        }
    }
    Ok(Reply {
        kind: s.message_type.ok_or("reply without message type")?,
        ciaddr: m.ciaddr(),
        yiaddr: m.yiaddr(),
        chaddr: m.chaddr().to_vec(),
        relay_info,
        lease_time: s.lease_time,
        cltt,
    })
}

/// Sends `req` to `server`:67 from RELAY:67 and returns the answer with the same xid
/// (a few tries: the first frames after start can meet an unresolved neighbour).
fn exchange(sock: &UdpSocket, server: Ipv4Addr, req: &[u8]) -> Res<Reply> {
    let xid = &req[4..8];
    let mut buf = [0u8; 1500];
    for _ in 0..5 {
        sock.send_to(req, SocketAddrV4::new(server, 67))
            .map_err(|e| format!("sending to {server}:67: {e}"))?;
        loop {
            match sock.recv_from(&mut buf) {
                Ok((n, _)) if n >= 240 && &buf[4..8] == xid && buf[0] == 2 => {
                    return parse(&buf[..n]);
                }
                Ok(_) => continue,
                Err(e)
                    if matches!(
                        e.kind(),
                        std::io::ErrorKind::WouldBlock | std::io::ErrorKind::TimedOut
                    ) =>
                {
                    break
                }
                Err(e) => return Err(format!("receiving from {server}: {e}")),
            }
        }
    }
    Err(format!(
        "no answer from {server} to xid {xid:02x?} after 5 tries"
    ))
}

fn leasequery(xid: u32, ciaddr: Ipv4Addr, mac: Option<&[u8; 6]>) -> Vec<u8> {
    packet(
        xid,
        ciaddr,
        mac,
        &[
            (opt::MESSAGE_TYPE, &[MessageType::LeaseQuery as u8]),
            (
                opt::PARAMETER_LIST,
                &[opt::LEASE_TIME, opt::RELAY_AGENT_INFO],
            ),
        ],
    )
}

#[test]
fn secondary_answers_leasequery_with_the_primarys_option_82() {
    if !require(&[
        Capability::Root,
        Capability::Program("timeout"),
        Capability::Program("ip"),
    ]) {
        return;
    }
    if let Err(e) = scenario() {
        panic!("{e}");
    }
}

fn scenario() -> Res<()> {
    let bed = PairBed::new()?;
    bed.c
        .add_addr(&bed.lc.a, &format!("{RELAY}/16"))
        .map_err(|e| e.to_string())?;
    let t = Timers {
        mclt: 30,
        split: None,
    };
    let (a_cfg, b_cfg) = (bed.path("a.toml"), bed.path("b.toml"));
    let (a_db, b_db) = (bed.path("a.db"), bed.path("b.db"));
    let (a_sock, b_sock) = (bed.path("a.sock"), bed.path("b.sock"));
    write_file(
        &a_cfg,
        &xdhcpd_config(&bed.la.a, A_ADDR, B_ADDR, true, &a_db, &a_sock, &t),
    )?;
    write_file(
        &b_cfg,
        &xdhcpd_config(&bed.lb.a, B_ADDR, A_ADDR, false, &b_db, &b_sock, &t),
    )?;
    let mut a = Xd::start(&bed.a, &a_cfg, &a_db, &a_sock, &bed.path("a.log"))?;
    let mut b = Xd::start(&bed.b, &b_cfg, &b_db, &b_sock, &bed.path("b.log"))?;
    a.wait_state("NORMAL", "NORMAL", Duration::from_secs(30))?;
    b.wait_state("NORMAL", "NORMAL", Duration::from_secs(10))?;
    let primary: Ipv4Addr = A_ADDR.parse().map_err(|_| "A_ADDR")?;
    let secondary: Ipv4Addr = B_ADDR.parse().map_err(|_| "B_ADDR")?;

    // The relay socket lives in the client namespace; it is opened on a thread there.
    let relay_sock = bed
        .c
        .run(|| -> Res<UdpSocket> {
            let s = UdpSocket::bind(SocketAddrV4::new(RELAY, 67))
                .map_err(|e| format!("binding {RELAY}:67: {e}"))?;
            s.set_read_timeout(Some(Duration::from_millis(1500)))
                .map_err(|e| e.to_string())?;
            Ok(s)
        })
        .map_err(|e| e.to_string())??;

    // 1. The client leases through the primary via the relay, with option 82.
    let sid = primary.octets();
    let offer = exchange(
        &relay_sock,
        primary,
        &packet(
            0x4c51_0001,
            Ipv4Addr::UNSPECIFIED,
            Some(&MAC),
            &[(opt::MESSAGE_TYPE, &[1]), (opt::RELAY_AGENT_INFO, OPT82)],
        ),
    )?;
    assert_eq!(offer.kind, MessageType::Offer, "{offer:?}");
    assert_eq!(
        offer.relay_info.as_deref(),
        Some(OPT82),
        "82 echoed in OFFER"
    );
    let ip = offer.yiaddr;
    let rip = ip.octets();
    let ack = exchange(
        &relay_sock,
        primary,
        &packet(
            0x4c51_0002,
            Ipv4Addr::UNSPECIFIED,
            Some(&MAC),
            &[
                (opt::MESSAGE_TYPE, &[3]),
                (opt::SERVER_ID, &sid),
                (opt::REQUESTED_IP, &rip),
                (opt::RELAY_AGENT_INFO, OPT82),
            ],
        ),
    )?;
    assert_eq!(ack.kind, MessageType::Ack, "{ack:?}");
    assert_eq!(ack.yiaddr, ip);
    // The binding update (with option 82) reaches the secondary and is acknowledged.
    a.wait_drained(Duration::from_secs(10))?;

    // 2. The secondary, which answers no DISCOVER in NORMAL, answers the leasequery.
    let by_ip = exchange(&relay_sock, secondary, &leasequery(0x4c51_0010, ip, None))?;
    assert_eq!(by_ip.kind, MessageType::LeaseActive, "{by_ip:?}");
    assert_eq!(by_ip.ciaddr, ip);
    assert_eq!(by_ip.chaddr, MAC.to_vec());
    assert_eq!(
        by_ip.relay_info.as_deref(),
        Some(OPT82),
        "the secondary must return the client's option 82 from the BNDUPD"
    );
    let left = by_ip.lease_time.ok_or("LEASEACTIVE without option 51")?;
    assert!(left > 0 && left <= 3600, "remaining lease {left}");
    assert!(by_ip.cltt.is_some_and(|c| c < 60), "{by_ip:?}");

    let by_mac = exchange(
        &relay_sock,
        secondary,
        &leasequery(0x4c51_0011, Ipv4Addr::UNSPECIFIED, Some(&MAC)),
    )?;
    assert_eq!(by_mac.kind, MessageType::LeaseActive, "{by_mac:?}");
    assert_eq!(by_mac.ciaddr, ip);
    assert_eq!(by_mac.relay_info.as_deref(), Some(OPT82));

    // A free pool address and an address outside the pools.
    let free: Ipv4Addr = if ip == Ipv4Addr::new(10, 77, 1, 200) {
        Ipv4Addr::new(10, 77, 1, 201)
    } else {
        Ipv4Addr::new(10, 77, 1, 200)
    };
    let un = exchange(&relay_sock, secondary, &leasequery(0x4c51_0012, free, None))?;
    assert_eq!(un.kind, MessageType::LeaseUnassigned, "{un:?}");
    assert_eq!(un.ciaddr, free);
    let unknown = exchange(
        &relay_sock,
        secondary,
        &leasequery(0x4c51_0013, Ipv4Addr::new(192, 0, 2, 9), None),
    )?;
    assert_eq!(unknown.kind, MessageType::LeaseUnknown, "{unknown:?}");

    // 3. The primary answers the same way.
    let at_a = exchange(&relay_sock, primary, &leasequery(0x4c51_0014, ip, None))?;
    assert_eq!(at_a.kind, MessageType::LeaseActive, "{at_a:?}");
    assert_eq!(at_a.relay_info.as_deref(), Some(OPT82));

    // 4. The operator's tool (`xdhcpd leasequery`, same relay address) asks the secondary.
    drop(relay_sock);
    let bin = daemon_common::xdhcpd_bin()?;
    let ip_s = ip.to_string();
    let relay_s = RELAY.to_string();
    let out = daemon_common::output(bed.c.command("timeout").args([
        "10",
        &bin.to_string_lossy(),
        "leasequery",
        "--server",
        B_ADDR,
        "--relay",
        &relay_s,
        "--ip",
        &ip_s,
        "--json",
    ]))?;
    let v: serde_json::Value = serde_json::from_str(&out.stdout)
        .map_err(|e| format!("leasequery JSON: {e}: {} {}", out.stdout, out.stderr))?;
    assert_eq!(v["answer"], "LEASEACTIVE", "{v}");
    assert_eq!(v["circuit_id"], "ge-0/0/7.100", "{v}");
    assert_eq!(v["remote_id"], "cpe-42", "{v}");
    assert_eq!(v["mac"], "02:4c:51:00:00:07", "{v}");

    // Still NORMAL on both sides; the secondary counted its leasequeries.
    b.wait_state("NORMAL", "NORMAL", Duration::from_secs(5))?;
    let _ = a.stop()?;
    let b_log = b.stop()?;
    assert!(
        b_log.contains("leasequeries=5") && b_log.contains("leasequery_active=3"),
        "secondary's final counters:\n{b_log}"
    );
    Ok(())
}
