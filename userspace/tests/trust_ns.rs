//! Trust-boundary attacks against the real daemon in network namespaces (root; see
//! `common/require.rs`), on both data paths.
//!
//! Relay trust: a directly attached host (giaddr 0) puts option 82 with an RFC 3527 link
//! selection naming a relayed subnet into its DISCOVER; it gets nothing and the daemon counts
//! it (`relay_info_from_client_dropped`). The same host naming that subnet with option 118 is
//! served on its own link (`subnet_selection_from_client_ignored`). A plain DISCOVER from it
//! is then answered, which proves the daemon had the chance to answer the attack.
//!
//! Claims need proof, UDP path: client A binds an address with its option 61; host B sends a
//! DISCOVER with A's option 61 and its own chaddr. The kernel must get no neighbour entry
//! "A's address -> B's MAC" (which would send the server's later replies for A to B); the
//! reply is broadcast instead (`reply_hw_not_bindings`).

#[path = "common/netns.rs"]
mod netns;

#[path = "common/require.rs"]
mod require;

mod daemon_common;

use std::net::{Ipv4Addr, SocketAddrV4, UdpSocket};
use std::path::PathBuf;
use std::time::{Duration, Instant};

use daemon_common::*;
use require::{require, Capability};
use xdhcpd_dhcpv4::wire::{
    opt, relay_sub, Message, MessageType, FLAG_BROADCAST, MAGIC_COOKIE, OP_BOOTREQUEST,
};

/// The attacking host's address on the server's link (10.77.0.0/16).
const HOST_ADDR: Ipv4Addr = Ipv4Addr::new(10, 77, 0, 9);
/// The directly attached pool and the relayed subnet the attacker names.
const OWN_POOL: (Ipv4Addr, Ipv4Addr) = (Ipv4Addr::new(10, 77, 1, 0), Ipv4Addr::new(10, 77, 1, 255));
const REMOTE_NET: [u8; 4] = [10, 88, 0, 0];

fn config(bed: &Bed) -> Res<PathBuf> {
    let path = bed.path("xdhcpd.toml");
    let text = format!(
        r#"[server]
interface = "{iface}"
server-id = "{SRV_ADDR}"
lease-file = "{leases}"

[[subnet]]
cidr = "10.77.0.0/16"
router = ["{SRV_ADDR}"]
[[subnet.pool]]
range = "{first}-{last}"

# Behind a relay agent at 10.88.0.1 (not on the test link).
[[subnet]]
cidr = "10.88.0.0/24"
router = ["10.88.0.1"]
[[subnet.pool]]
range = "10.88.0.10-10.88.0.50"
"#,
        iface = bed.srv_if(),
        leases = bed.path("leases.db").display(),
        first = OWN_POOL.0,
        last = OWN_POOL.1,
    );
    write_file(&path, &text)?;
    Ok(path)
}

/// A DISCOVER from the host (chaddr `CLI_MAC`, giaddr 0, broadcast flag so the OFFER reaches
/// a plain UDP socket) with extra options.
fn discover(xid: u32, extra: &[(u8, &[u8])]) -> Vec<u8> {
    client_msg(MessageType::Discover, xid, &CLI_MAC, true, extra)
}

/// A client message of `kind` from chaddr `mac` (giaddr 0), broadcast flag as given.
fn client_msg(
    kind: MessageType,
    xid: u32,
    mac: &[u8; 6],
    broadcast: bool,
    extra: &[(u8, &[u8])],
) -> Vec<u8> {
    let mut b = vec![0u8; 240];
    b[0] = OP_BOOTREQUEST;
    b[1] = 1;
    b[2] = 6;
    b[4..8].copy_from_slice(&xid.to_be_bytes());
    if broadcast {
        b[10..12].copy_from_slice(&FLAG_BROADCAST.to_be_bytes());
    }
    b[28..34].copy_from_slice(mac);
    b[236..240].copy_from_slice(&MAGIC_COOKIE);
    b.extend_from_slice(&[opt::MESSAGE_TYPE, 1, kind as u8]);
    for (c, v) in extra {
        b.push(*c);
        b.push(v.len() as u8);
        b.extend_from_slice(v);
    }
    b.push(opt::END);
    b
}

/// Every BOOTREPLY the socket receives until one with `xid` arrives or `limit` passes:
/// (xid, yiaddr) of each.
fn replies_until(sock: &UdpSocket, xid: u32, limit: Duration) -> Res<Vec<(u32, Ipv4Addr)>> {
    let end = Instant::now() + limit;
    let mut got = Vec::new();
    let mut buf = [0u8; 1500];
    while Instant::now() < end {
        match sock.recv_from(&mut buf) {
            Ok((n, _)) => {
                let Ok(m) = Message::new_checked(&buf[..n]) else {
                    continue;
                };
                if m.op() != 2 {
                    continue;
                }
                got.push((m.xid(), m.yiaddr()));
                if m.xid() == xid {
                    return Ok(got);
                }
            }
            Err(e)
                if matches!(
                    e.kind(),
                    std::io::ErrorKind::WouldBlock | std::io::ErrorKind::TimedOut
                ) => {}
            Err(e) => return Err(format!("receiving replies: {e}")),
        }
    }
    Ok(got)
}

/// A UDP socket on port 68 in the client namespace (it receives the broadcast replies).
fn client_socket(bed: &Bed) -> Res<UdpSocket> {
    bed.cli
        .run(|| -> Res<UdpSocket> {
            let s = UdpSocket::bind(SocketAddrV4::new(Ipv4Addr::UNSPECIFIED, 68))
                .map_err(|e| format!("binding 0.0.0.0:68: {e}"))?;
            s.set_read_timeout(Some(Duration::from_millis(200)))
                .map_err(|e| e.to_string())?;
            Ok(s)
        })
        .map_err(|e| e.to_string())?
}

fn server_addr() -> Res<SocketAddrV4> {
    Ok(SocketAddrV4::new(
        SRV_ADDR.parse().map_err(|_| "SRV_ADDR")?,
        67,
    ))
}

fn relay_trust_attack(io: Io) -> Res<()> {
    let bed = Bed::new(Some(&format!("{HOST_ADDR}/{PREFIX}")))?;
    let cfg = config(&bed)?;
    let daemon = Daemon::start(&bed, &cfg, io)?;
    let sock = client_socket(&bed)?;
    let server = server_addr()?;
    let send = |b: &[u8]| {
        sock.send_to(b, server)
            .map(|_| ())
            .map_err(|e| format!("sending to {server}: {e}"))
    };
    let own_pool = |a: Ipv4Addr| (OWN_POOL.0..=OWN_POOL.1).contains(&a);

    // 1. Option 82 with a link selection naming the relayed subnet (giaddr 0), then option
    //    118 naming it, then a plain DISCOVER; the replies come back in order.
    let link_sel: Vec<u8> = [
        &[relay_sub::CIRCUIT_ID, 3, b'e', b'v', b'e'][..],
        &[relay_sub::LINK_SELECTION, 4],
        &REMOTE_NET,
    ]
    .concat();
    let (attack_82, attack_118, plain) = (0x7275_0001, 0x7275_0002, 0x7275_0003);
    let mut seen = Vec::new();
    let mut answered = None;
    for _ in 0..5 {
        send(&discover(attack_82, &[(opt::RELAY_AGENT_INFO, &link_sel)]))?;
        send(&discover(
            attack_118,
            &[(opt::SUBNET_SELECTION, &REMOTE_NET)],
        ))?;
        send(&discover(plain, &[]))?;
        let got = replies_until(&sock, plain, Duration::from_secs(2))?;
        answered = got.iter().find(|(x, _)| *x == plain).map(|(_, a)| *a);
        seen.extend(got);
        if answered.is_some() {
            break;
        }
    }
    let plain_ip = answered.ok_or_else(|| {
        format!(
            "the plain DISCOVER was never answered; replies {seen:x?}; log:\n{}",
            daemon.log_text()
        )
    })?;
    // Stragglers of the attacks would have come before the plain OFFER; give them a moment.
    seen.extend(replies_until(&sock, 0, Duration::from_millis(300))?);
    let finished = daemon.stop()?;
    finished.check_io(io)?;

    let to_82: Vec<_> = seen.iter().filter(|(x, _)| *x == attack_82).collect();
    assert!(
        to_82.is_empty(),
        "a directly attached host's option 82 link selection was answered: {to_82:?}"
    );
    for (x, a) in seen.iter().filter(|(x, _)| *x == attack_118 || *x == plain) {
        assert!(
            own_pool(*a),
            "xid {x:x}: offered {a}, outside the host's own link's pool"
        );
    }
    assert!(own_pool(plain_ip), "{plain_ip}");
    let dropped = finished.counter("engine", "relay_info_from_client_dropped")?;
    let ignored = finished.counter("engine", "subnet_selection_from_client_ignored")?;
    assert!(
        dropped >= 1 && ignored >= 1,
        "relay_info_from_client_dropped = {dropped}, subnet_selection_from_client_ignored = {ignored}"
    );
    Ok(())
}

#[test]
fn relay_trust_attack_from_directly_attached_host_xdp() -> Res<()> {
    if !require(&[Capability::Root, Capability::Program("ip")]) {
        return Ok(());
    }
    relay_trust_attack(Io::Xdp)
}

#[test]
fn relay_trust_attack_from_directly_attached_host_udp() -> Res<()> {
    if !require(&[Capability::Root, Capability::Program("ip")]) {
        return Ok(());
    }
    relay_trust_attack(Io::Udp)
}

/// Sends `req` until a reply with its xid arrives (a few tries: the first frames can meet an
/// unresolved neighbour); returns that reply's yiaddr.
fn exchange(sock: &UdpSocket, server: SocketAddrV4, req: &[u8]) -> Res<Ipv4Addr> {
    let xid = u32::from_be_bytes([req[4], req[5], req[6], req[7]]);
    for _ in 0..5 {
        sock.send_to(req, server)
            .map_err(|e| format!("sending to {server}: {e}"))?;
        let got = replies_until(sock, xid, Duration::from_secs(2))?;
        if let Some((_, a)) = got.iter().find(|(x, _)| *x == xid) {
            return Ok(*a);
        }
    }
    Err(format!("no reply to xid {xid:x}"))
}

#[test]
fn claims_attack_anothers_client_id_installs_no_neighbour_entry_udp() -> Res<()> {
    if !require(&[Capability::Root, Capability::Program("ip")]) {
        return Ok(());
    }
    const CID_A: &[u8] = &[0, b'c', b'p', b'e', b'-', b'A'];
    let mac_a = [0x02, 0x0a, 0, 0, 0, 0x0a];
    let bed = Bed::new(Some(&format!("{HOST_ADDR}/{PREFIX}")))?;
    let cfg = config(&bed)?;
    let daemon = Daemon::start(&bed, &cfg, Io::Udp)?;
    let sock = client_socket(&bed)?;
    let server = server_addr()?;
    let sid = server.ip().octets();

    // Client A binds an address (broadcast replies: no neighbour entry for it yet).
    let cid = (opt::CLIENT_ID, CID_A);
    let offered = exchange(
        &sock,
        server,
        &client_msg(MessageType::Discover, 0x6e65_0001, &mac_a, true, &[cid]),
    )?;
    let rip = offered.octets();
    let acked = exchange(
        &sock,
        server,
        &client_msg(
            MessageType::Request,
            0x6e65_0002,
            &mac_a,
            true,
            &[cid, (opt::SERVER_ID, &sid), (opt::REQUESTED_IP, &rip)],
        ),
    )?;
    if acked != offered {
        return Err(format!("ACK for {acked}, offered {offered}"));
    }
    let a_addr = offered.to_string();
    let neigh = |what: &str| -> Res<String> {
        bed.srv
            .ip(&["neigh", "show", "to", &a_addr, "dev", bed.srv_if()])
            .map_err(|e| format!("{what}: {e}"))
    };
    let before = neigh("neighbours before the attack")?;

    // Host B: A's option 61, B's own chaddr, no broadcast flag (a unicast reply would need
    // the neighbour entry A's address -> B's MAC). Then a plain DISCOVER from B, answered:
    // the daemon has handled the attack by then.
    sock.send_to(
        &client_msg(MessageType::Discover, 0x6e65_0003, &CLI_MAC, false, &[cid]),
        server,
    )
    .map_err(|e| format!("sending to {server}: {e}"))?;
    exchange(&sock, server, &discover(0x6e65_0004, &[]))?;
    let after = neigh("neighbours after the attack")?;
    let finished = daemon.stop()?;
    finished.check_io(Io::Udp)?;
    let b_mac = mac_str(&CLI_MAC);
    assert!(
        !after.to_lowercase().contains(&b_mac),
        "the kernel now sends {a_addr} (client A's) to host B's {b_mac}: `{}` (before: `{}`)",
        after.trim(),
        before.trim()
    );
    let hw = finished.counter("engine", "reply_hw_not_bindings")?;
    assert!(hw >= 1, "reply_hw_not_bindings = {hw}");
    Ok(())
}
