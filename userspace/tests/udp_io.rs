//! Kernel UDP fallback tests in a private namespace pair (root only; see
//! `common/require.rs`).
//!
//! Run: `cargo test -p xdhcpd --test udp_io -- --nocapture`

mod io_netns;

#[path = "common/require.rs"]
mod require;

use std::net::{Ipv4Addr, SocketAddrV4, UdpSocket};
use std::os::fd::AsRawFd;
use std::sync::mpsc;
use std::time::{Duration, Instant};

use io_netns::*;
use require::{require, Capability};
use xdhcpd_common::DHCPV4_SERVER_PORT;
use xdhcpd_io::udp::{set_neighbour, UdpIo, UdpRx, UdpTx};

/// Every test here makes namespaces and a veth (root, `ip`).
const NEEDS: &[Capability] = &[Capability::Root, Capability::Program("ip")];

fn bind_to_device(sock: &UdpSocket, ifname: &str) {
    // SAFETY: valid fd; the name buffer and length match.
    let rc = unsafe {
        libc::setsockopt(
            sock.as_raw_fd(),
            libc::SOL_SOCKET,
            libc::SO_BINDTODEVICE,
            ifname.as_ptr().cast(),
            ifname.len() as u32,
        )
    };
    assert_eq!(rc, 0, "SO_BINDTODEVICE {ifname}");
}

#[test]
fn udp_broadcast_in_and_out() {
    if !require(NEEDS) {
        return;
    }
    let pair = NetnsPair::new("u").expect("create namespace pair");
    let _ns = InNetns::enter(&pair.srv).expect("enter server netns");
    let mut io = UdpIo::open(&pair.srv_if, DHCPV4_SERVER_PORT).expect("open UDP socket on port 67");

    // Client: from 10.77.0.2:68, one broadcast and one unicast to the server,
    // then wait for the server's broadcast reply on port 68.
    let (sent_tx, sent_rx) = mpsc::channel();
    let (cli_ns, cli_if) = (pair.cli.clone(), pair.cli_if.clone());
    let client = std::thread::spawn(move || -> Result<(Vec<u8>, SocketAddrV4), String> {
        let _ns = InNetns::enter(&cli_ns)?;
        let s = UdpSocket::bind("0.0.0.0:68").map_err(|e| format!("bind :68: {e}"))?;
        s.set_broadcast(true).map_err(|e| e.to_string())?;
        bind_to_device(&s, &cli_if);
        s.send_to(b"hello-broadcast", "255.255.255.255:67")
            .map_err(|e| format!("send broadcast: {e}"))?;
        s.send_to(b"hello-unicast", "10.77.0.1:67")
            .map_err(|e| format!("send unicast: {e}"))?;
        // Longer than the receive buffer: must be counted and dropped.
        s.send_to(&[7u8; 3000], "10.77.0.1:67")
            .map_err(|e| format!("send oversized: {e}"))?;
        let _ = sent_tx.send(());
        s.set_read_timeout(Some(Duration::from_secs(5)))
            .map_err(|e| e.to_string())?;
        let mut buf = [0u8; 1500];
        let (n, from) = s
            .recv_from(&mut buf)
            .map_err(|e| format!("recv reply: {e}"))?;
        match from {
            std::net::SocketAddr::V4(a) => Ok((buf[..n].to_vec(), a)),
            other => Err(format!("reply from {other}")),
        }
    });
    sent_rx
        .recv_timeout(Duration::from_secs(5))
        .expect("client sent");

    let mut got: Vec<UdpRx> = Vec::new();
    let deadline = Instant::now() + Duration::from_secs(5);
    while (got.len() < 2 || io.counters().rx_truncated < 1) && Instant::now() < deadline {
        io.wait_readable(200).expect("poll");
        io.recv_batch(&mut got, 64).expect("recv_batch");
    }
    assert_eq!(got.len(), 2, "both datagrams received: {got:?}");
    let client_addr = SocketAddrV4::new(Ipv4Addr::new(10, 77, 0, 2), 68);
    let b = &got[0];
    assert_eq!(&b.payload[..b.len], b"hello-broadcast");
    assert_eq!(b.source, client_addr);
    assert_eq!(b.destination, Ipv4Addr::BROADCAST);
    assert_eq!(b.ifindex, io.ifindex());
    let u = &got[1];
    assert_eq!(&u.payload[..u.len], b"hello-unicast");
    assert_eq!(u.destination, Ipv4Addr::new(10, 77, 0, 1));
    assert_eq!(u.ifindex, io.ifindex());

    let sent = io
        .send_batch(&[UdpTx {
            payload: b"reply-broadcast",
            dest: SocketAddrV4::new(Ipv4Addr::BROADCAST, 68),
        }])
        .expect("send_batch");
    assert_eq!(sent, 1);
    let (payload, from) = client.join().expect("client thread").expect("client");
    assert_eq!(payload, b"reply-broadcast");
    assert_eq!(from, SocketAddrV4::new(Ipv4Addr::new(10, 77, 0, 1), 67));
    let c = io.counters();
    assert_eq!(c.rx_truncated, 1, "{c:?}");
    assert_eq!(
        (c.rx_no_meta, c.tx_errors, c.tx_would_block),
        (0, 0, 0),
        "{c:?}"
    );
}

/// RFC 2131 4.1: a reply unicast to yiaddr/chaddr of a client that has no
/// address arrives only because of the neighbour entry we install; the same
/// send to an address without one stays stuck in ARP resolution.
#[test]
fn udp_unicast_to_addressless_client_via_arp_entry() {
    if !require(NEEDS) {
        return;
    }
    let pair = NetnsPair::new("a").expect("create namespace pair");
    let _ns = InNetns::enter(&pair.srv).expect("enter server netns");
    let mut io = UdpIo::open(&pair.srv_if, DHCPV4_SERVER_PORT).expect("open UDP socket on port 67");
    let yiaddr = Ipv4Addr::new(10, 77, 0, 50);
    let no_entry = Ipv4Addr::new(10, 77, 0, 51);
    io.set_neighbour(yiaddr, CLI_MAC).expect("SIOCSARP");
    let neigh = ip(&["-n", &pair.srv, "neigh", "show", "10.77.0.50"]).expect("ip neigh");
    assert!(
        neigh.contains("02:dd:00:00:00:02"),
        "neighbour entry: {neigh}"
    );

    let (ready_tx, ready_rx) = mpsc::channel();
    let (cli_ns, cli_if) = (pair.cli.clone(), pair.cli_if.clone());
    let capture = std::thread::spawn(move || -> Result<Vec<[u8; 4]>, String> {
        let _ns = InNetns::enter(&cli_ns)?;
        let cap = PacketCapture::open(&cli_if)?;
        let _ = ready_tx.send(());
        let mut seen = Vec::new();
        let mut buf = [0u8; 2048];
        let end = Instant::now() + Duration::from_millis(1500);
        while Instant::now() < end {
            if let Some(n) = cap.recv(&mut buf, 100) {
                if let Some((mac, ip, port)) = udp_frame_dst(&buf[..n]) {
                    if port == 68 && mac == CLI_MAC {
                        seen.push(ip);
                    }
                }
            }
        }
        Ok(seen)
    });
    ready_rx
        .recv_timeout(Duration::from_secs(5))
        .expect("capture ready");
    let sent = io
        .send_batch(&[
            UdpTx {
                payload: b"offer-no-entry",
                dest: SocketAddrV4::new(no_entry, 68),
            },
            UdpTx {
                payload: b"offer-unicast",
                dest: SocketAddrV4::new(yiaddr, 68),
            },
        ])
        .expect("send_batch");
    assert_eq!(sent, 2, "the kernel accepts both (one waits for ARP)");
    let seen = capture.join().expect("capture thread").expect("capture");
    assert!(
        seen.contains(&yiaddr.octets()),
        "unicast to yiaddr reached chaddr: {seen:?}"
    );
    assert!(
        !seen.contains(&no_entry.octets()),
        "without an entry the frame must not leave: {seen:?}"
    );
}

#[test]
fn udp_errors_name_the_interface() {
    if !require(NEEDS) {
        return;
    }
    let pair = NetnsPair::new("e").expect("create namespace pair");
    let _ns = InNetns::enter(&pair.srv).expect("enter server netns");
    let e = match UdpIo::open("xdhcpd-nosuch", DHCPV4_SERVER_PORT) {
        Ok(_) => panic!("opened a socket on a missing interface"),
        Err(e) => e,
    };
    assert_eq!(e.errno(), Some(libc::ENODEV), "{e}");
    assert_eq!(
        e.to_string(),
        "set SO_BINDTODEVICE on UDP socket for xdhcpd-nosuch: ENODEV (no such interface in this network namespace)"
    );
    let e = set_neighbour("xdhcpd-nosuch", Ipv4Addr::new(10, 77, 0, 9), CLI_MAC)
        .expect_err("ARP entry on a missing interface");
    assert_eq!(
        e.to_string(),
        "add ARP entry (SIOCSARP) for 10.77.0.9 on xdhcpd-nosuch: ENODEV (interface not found)"
    );
}
