//! Lease caps per circuit against the real daemon (issue 12 item 5; root and the eBPF object,
//! see `common/require.rs`).
//!
//! The client namespace is a relay agent (giaddr 10.77.0.9, a trusted relay: inside the
//! served subnet) that forwards, on one access circuit `port-A`, DISCOVER + REQUEST from 24
//! different MACs (one attacker cycling its MAC), and on another circuit `port-B` from 3
//! MACs. With `[limits] max-leases-per-circuit = 4`: port-A ends with exactly 4 addresses
//! (20 DISCOVERs unanswered, counted `lease_cap_circuit_refused`), port-B gets all 3, and a
//! port-A client's renewal and re-DISCOVER are still answered. The same run without the cap
//! is the control: port-A takes 24 addresses (the figures are printed side by side).
//!
//! `cargo test --release -p xdhcpd --test lease_cap_ns -- --nocapture`

#[path = "common/netns.rs"]
mod netns;

#[path = "common/require.rs"]
mod require;

mod daemon_common;

use std::collections::BTreeMap;
use std::net::{Ipv4Addr, SocketAddrV4, UdpSocket};
use std::path::PathBuf;
use std::time::{Duration, Instant};

use daemon_common::*;
use require::{require, Capability};
use xdhcpd_dhcpv4::wire::{opt, relay_sub, Message, MessageType, MAGIC_COOKIE, OP_BOOTREQUEST};

/// The relay agent's address (the client namespace), inside the served subnet.
const RELAY: Ipv4Addr = Ipv4Addr::new(10, 77, 0, 9);
const CAP: usize = 4;
const FLOOD_MACS: u8 = 24;
const OTHER_MACS: u8 = 3;

fn config(bed: &Bed, cap: Option<usize>) -> Res<PathBuf> {
    let path = bed.path("xdhcpd.toml");
    let limits = cap
        .map(|n| format!("[limits]\nmax-leases-per-circuit = {n}\n"))
        .unwrap_or_default();
    let text = format!(
        r#"[server]
interface = "{iface}"
server-id = "{SRV_ADDR}"
lease-file = "{leases}"

[lease]
default-time = 3600
offer-hold = 30

{limits}
[[subnet]]
cidr = "10.77.0.0/16"
router = ["{SRV_ADDR}"]
[[subnet.pool]]
range = "10.77.1.0-10.77.1.200"
"#,
        iface = bed.srv_if(),
        leases = bed.path("leases.db").display(),
    );
    write_file(&path, &text)?;
    Ok(path)
}

fn o82(circuit: &[u8]) -> Vec<u8> {
    let mut v = vec![relay_sub::CIRCUIT_ID, circuit.len() as u8];
    v.extend_from_slice(circuit);
    v.extend_from_slice(&[relay_sub::REMOTE_ID, 4, b'o', b'l', b't', b'1']);
    v
}

fn mac(circuit: u8, i: u8) -> [u8; 6] {
    [0x02, 0xca, 0x9e, 0x00, circuit, i]
}

/// A relayed message of `kind` from chaddr `mac` (giaddr RELAY, hops 1) with option 82 last.
fn relayed(
    kind: MessageType,
    xid: u32,
    mac: &[u8; 6],
    ciaddr: Ipv4Addr,
    extra: &[(u8, &[u8])],
    ri: &[u8],
) -> Vec<u8> {
    let mut b = vec![0u8; 240];
    b[0] = OP_BOOTREQUEST;
    b[1] = 1;
    b[2] = 6;
    b[3] = 1;
    b[4..8].copy_from_slice(&xid.to_be_bytes());
    b[12..16].copy_from_slice(&ciaddr.octets());
    b[24..28].copy_from_slice(&RELAY.octets());
    b[28..34].copy_from_slice(mac);
    b[236..240].copy_from_slice(&MAGIC_COOKIE);
    b.extend_from_slice(&[opt::MESSAGE_TYPE, 1, kind as u8]);
    for (c, v) in extra {
        b.push(*c);
        b.push(v.len() as u8);
        b.extend_from_slice(v);
    }
    b.push(opt::RELAY_AGENT_INFO);
    b.push(ri.len() as u8);
    b.extend_from_slice(ri);
    b.push(opt::END);
    b
}

/// (xid -> (message type, yiaddr)) of the replies arriving within `limit`, until every xid of
/// `want` has one.
fn collect(sock: &UdpSocket, want: &[u32], limit: Duration) -> Res<BTreeMap<u32, (u8, Ipv4Addr)>> {
    let end = Instant::now() + limit;
    let mut got = BTreeMap::new();
    let mut buf = [0u8; 1500];
    while Instant::now() < end && !want.iter().all(|x| got.contains_key(x)) {
        match sock.recv_from(&mut buf) {
            Ok((n, _)) => {
                let Ok(m) = Message::new_checked(&buf[..n]) else {
                    continue;
                };
                let Ok(s) = m.summary() else { continue };
                if m.op() == 2 {
                    got.insert(m.xid(), (s.message_type.map_or(0, |t| t as u8), m.yiaddr()));
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

/// What one run showed.
struct Outcome {
    /// Addresses ACKed per circuit.
    a_bound: usize,
    b_bound: usize,
    renewed: bool,
    re_offered: bool,
    refused: u64,
}

/// DISCOVER then REQUEST for each MAC of a circuit (pipelined: all DISCOVERs, then the
/// REQUESTs of the offered ones); the ACKed (mac, address) pairs.
fn bind_all(
    sock: &UdpSocket,
    server: SocketAddrV4,
    circuit: u8,
    n: u8,
    ri: &[u8],
) -> Res<Vec<([u8; 6], Ipv4Addr)>> {
    let send = |b: &[u8]| {
        sock.send_to(b, server)
            .map(|_| ())
            .map_err(|e| format!("send: {e}"))
    };
    let xid =
        |kind: u32, i: u8| 0x4c00_0000 | (kind << 16) | (u32::from(circuit) << 8) | u32::from(i);
    let mut offers = BTreeMap::new();
    // Two rounds: the first frames may meet an unresolved neighbour on the way back.
    for _ in 0..2 {
        let want: Vec<u32> = (0..n)
            .filter(|i| !offers.contains_key(i))
            .map(|i| xid(1, i))
            .collect();
        for i in (0..n).filter(|i| !offers.contains_key(i)) {
            send(&relayed(
                MessageType::Discover,
                xid(1, i),
                &mac(circuit, i),
                Ipv4Addr::UNSPECIFIED,
                &[],
                ri,
            ))?;
        }
        for (x, (t, ip)) in collect(sock, &want, Duration::from_millis(1500))? {
            if t == MessageType::Offer as u8 {
                offers.insert((x & 0xff) as u8, ip);
            }
        }
    }
    let mut bound = Vec::new();
    let want: Vec<u32> = offers.keys().map(|&i| xid(3, i)).collect();
    for (&i, ip) in &offers {
        send(&relayed(
            MessageType::Request,
            xid(3, i),
            &mac(circuit, i),
            Ipv4Addr::UNSPECIFIED,
            &[
                (
                    opt::SERVER_ID,
                    &SRV_ADDR
                        .parse::<Ipv4Addr>()
                        .map_err(|e| e.to_string())?
                        .octets(),
                ),
                (opt::REQUESTED_IP, &ip.octets()),
            ],
            ri,
        ))?;
    }
    for (x, (t, ip)) in collect(sock, &want, Duration::from_secs(3))? {
        if t == MessageType::Ack as u8 {
            bound.push((mac(circuit, (x & 0xff) as u8), ip));
        }
    }
    Ok(bound)
}

fn run(cap: Option<usize>) -> Res<Outcome> {
    let bed = Bed::new(Some(&format!("{RELAY}/{PREFIX}")))?;
    let cfg = config(&bed, cap)?;
    let daemon = Daemon::start(&bed, &cfg, Io::Xdp)?;
    let sock = bed
        .cli
        .run(|| -> Res<UdpSocket> {
            let s = UdpSocket::bind(SocketAddrV4::new(RELAY, 67))
                .map_err(|e| format!("binding {RELAY}:67: {e}"))?;
            s.set_read_timeout(Some(Duration::from_millis(100)))
                .map_err(|e| e.to_string())?;
            Ok(s)
        })
        .map_err(|e| e.to_string())??;
    let server = SocketAddrV4::new(SRV_ADDR.parse().map_err(|_| "SRV_ADDR")?, 67);
    let (ra, rb) = (o82(b"port-A"), o82(b"port-B"));
    // The attack: one circuit, many MACs.
    let a = bind_all(&sock, server, 0xa, FLOOD_MACS, &ra)?;
    // Another circuit of the same relay, after it: answered, which also proves the daemon had
    // every chance to answer port-A's refused DISCOVERs.
    let b = bind_all(&sock, server, 0xb, OTHER_MACS, &rb)?;
    // A port-A client renews (relayed, ciaddr set) and asks again (DISCOVER).
    let (renewed, re_offered) = match a.first() {
        Some((m, ip)) => {
            let send = |b: &[u8]| {
                sock.send_to(b, server)
                    .map(|_| ())
                    .map_err(|e| format!("send: {e}"))
            };
            send(&relayed(
                MessageType::Request,
                0x4c77_0001,
                m,
                *ip,
                &[],
                &ra,
            ))?;
            send(&relayed(
                MessageType::Discover,
                0x4c77_0002,
                m,
                Ipv4Addr::UNSPECIFIED,
                &[],
                &ra,
            ))?;
            let got = collect(&sock, &[0x4c77_0001, 0x4c77_0002], Duration::from_secs(3))?;
            (
                got.get(&0x4c77_0001) == Some(&(MessageType::Ack as u8, *ip)),
                got.get(&0x4c77_0002) == Some(&(MessageType::Offer as u8, *ip)),
            )
        }
        None => (false, false),
    };
    let finished = daemon.stop()?;
    finished.check_io(Io::Xdp)?;
    let refused = finished.counter("engine", "lease_cap_circuit_refused")?;
    Ok(Outcome {
        a_bound: a.len(),
        b_bound: b.len(),
        renewed,
        re_offered,
        refused,
    })
}

#[test]
fn lease_cap_attack_one_circuit_many_macs_gets_at_most_the_cap() -> Res<()> {
    if !require(&[Capability::Root, Capability::Program("ip")]) {
        return Ok(());
    }
    let t0 = Instant::now();
    let without = run(None)?;
    let t1 = Instant::now();
    let with = run(Some(CAP))?;
    eprintln!(
        "without cap: port-A {} of {FLOOD_MACS} MACs bound, port-B {}/{OTHER_MACS}, refused {} ({:.1} s)\n\
         with max-leases-per-circuit = {CAP}: port-A {} bound, port-B {}/{OTHER_MACS}, refused {}, \
         renewal {}, re-DISCOVER {} ({:.1} s)",
        without.a_bound,
        without.b_bound,
        without.refused,
        (t1 - t0).as_secs_f64(),
        with.a_bound,
        with.b_bound,
        with.refused,
        with.renewed,
        with.re_offered,
        t1.elapsed().as_secs_f64(),
    );
    // The control: without the cap the attacker takes an address per MAC.
    assert_eq!(without.a_bound, usize::from(FLOOD_MACS), "control run");
    assert_eq!(without.refused, 0);
    // With it: exactly the cap, the other circuit unaffected, renewals served.
    assert_eq!(with.a_bound, CAP);
    assert_eq!(with.b_bound, usize::from(OTHER_MACS));
    assert!(with.renewed, "a capped circuit's client could not renew");
    assert!(
        with.re_offered,
        "a capped circuit's client was refused its own address"
    );
    assert!(
        with.refused >= u64::from(FLOOD_MACS) - CAP as u64,
        "lease_cap_circuit_refused = {}",
        with.refused
    );
    Ok(())
}
