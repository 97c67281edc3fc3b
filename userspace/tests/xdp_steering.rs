//! The XDP program on a real veth (driver mode) in a pair of namespaces: what it passes,
//! what it drops, and what its counters say.
//!
//! Needs root and the eBPF object (`cargo xtask build-ebpf`); see `common/require.rs` for
//! what happens when they are missing.
#![allow(clippy::unwrap_used)] // tests may panic on setup failures

#[path = "common/netns.rs"]
mod netns;

#[path = "common/require.rs"]
mod require;

use std::{
    io,
    mem::size_of,
    net::{IpAddr, Ipv4Addr, Ipv6Addr, SocketAddr, TcpListener, TcpStream, UdpSocket},
    os::fd::{AsRawFd, FromRawFd, OwnedFd},
    path::PathBuf,
    time::{Duration, Instant},
};

use netns::{veth_pair, Netns};
use require::{require, Capability};
use xdhcpd_common::{XdpConfig, CFG_DHCPV4, CFG_DHCPV6, CFG_GUARD_FAILOVER};
use xdhcpd_io::xdp::{AttachMode, Counters, XdpError, XdpSteering, DEFAULT_OBJECT_PATH};
use xdhcpd_io::xsk::{XskConfig, XskSocket};

const SRV4: Ipv4Addr = Ipv4Addr::new(10, 201, 0, 1);
const PARTNER4: Ipv4Addr = Ipv4Addr::new(10, 201, 0, 2);
const STRANGER4: Ipv4Addr = Ipv4Addr::new(10, 201, 0, 3);
const SRV6: Ipv6Addr = Ipv6Addr::new(0xfd00, 0x201, 0, 0, 0, 0, 0, 1);
const PARTNER6: Ipv6Addr = Ipv6Addr::new(0xfd00, 0x201, 0, 0, 0, 0, 0, 2);
const STRANGER6: Ipv6Addr = Ipv6Addr::new(0xfd00, 0x201, 0, 0, 0, 0, 0, 3);
const FAILOVER_PORT: u16 = 647;
const OTHER_UDP_PORT: u16 = 9999;

/// What this test needs: root, and the eBPF object unless one is embedded in this build.
fn needs() -> Vec<Capability> {
    let mut needs = vec![Capability::Root, Capability::Program("ip")];
    if object().is_none() && !xdhcpd_io::xdp::has_embedded_object() {
        needs.push(Capability::EbpfObject(default_object()));
    }
    needs
}

fn default_object() -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR"))
        .join("..")
        .join(DEFAULT_OBJECT_PATH)
}

/// The object to load: `$XDHCPD_EBPF_OBJECT`, else the default build output; `None` means
/// "use the embedded one".
fn object() -> Option<PathBuf> {
    std::env::var_os("XDHCPD_EBPF_OBJECT")
        .map(PathBuf::from)
        .into_iter()
        .chain([default_object()])
        .find(|p| p.is_file())
}

fn sockaddr(addr: SocketAddr) -> (libc::sockaddr_storage, libc::socklen_t) {
    // SAFETY: all-zero is a valid sockaddr_storage.
    let mut storage: libc::sockaddr_storage = unsafe { std::mem::zeroed() };
    let len = match addr {
        SocketAddr::V4(a) => {
            let sin = libc::sockaddr_in {
                sin_family: libc::AF_INET as libc::sa_family_t,
                sin_port: a.port().to_be(),
                sin_addr: libc::in_addr {
                    s_addr: u32::from_ne_bytes(a.ip().octets()),
                },
                sin_zero: [0; 8],
            };
            // SAFETY: sockaddr_storage is larger than and aligned for sockaddr_in.
            unsafe { std::ptr::write((&raw mut storage).cast(), sin) };
            size_of::<libc::sockaddr_in>()
        }
        SocketAddr::V6(a) => {
            let sin6 = libc::sockaddr_in6 {
                sin6_family: libc::AF_INET6 as libc::sa_family_t,
                sin6_port: a.port().to_be(),
                sin6_flowinfo: 0,
                sin6_addr: libc::in6_addr {
                    s6_addr: a.ip().octets(),
                },
                sin6_scope_id: 0,
            };
            // SAFETY: sockaddr_storage is larger than and aligned for sockaddr_in6.
            unsafe { std::ptr::write((&raw mut storage).cast(), sin6) };
            size_of::<libc::sockaddr_in6>()
        }
    };
    (storage, len as libc::socklen_t)
}

fn check(ret: libc::c_int, what: &str) -> io::Result<()> {
    if ret < 0 {
        let e = io::Error::last_os_error();
        return Err(io::Error::new(e.kind(), format!("{what}: {e}")));
    }
    Ok(())
}

/// TCP connect from a chosen source address (std cannot bind before connecting), giving up
/// after `timeout` (then the error kind is `WouldBlock`: SYN unanswered).
fn tcp_connect_from(src: IpAddr, dst: SocketAddr, timeout: Duration) -> io::Result<TcpStream> {
    let family = if dst.is_ipv4() {
        libc::AF_INET
    } else {
        libc::AF_INET6
    };
    // SAFETY: plain socket(2) call; the fd is owned right away.
    let fd = unsafe { libc::socket(family, libc::SOCK_STREAM | libc::SOCK_CLOEXEC, 0) };
    check(fd, "socket")?;
    // SAFETY: fd is a fresh, valid descriptor owned by nobody else.
    let owned = unsafe { OwnedFd::from_raw_fd(fd) };
    let (local, local_len) = sockaddr(SocketAddr::new(src, 0));
    check(
        // SAFETY: local is a valid sockaddr of local_len bytes.
        unsafe { libc::bind(fd, (&raw const local).cast(), local_len) },
        "bind",
    )?;
    let tv = libc::timeval {
        tv_sec: timeout.as_secs() as libc::time_t,
        tv_usec: timeout.subsec_micros() as libc::suseconds_t,
    };
    // SO_SNDTIMEO bounds a blocking connect.
    check(
        // SAFETY: tv is a valid timeval of the given size.
        unsafe {
            libc::setsockopt(
                fd,
                libc::SOL_SOCKET,
                libc::SO_SNDTIMEO,
                (&raw const tv).cast(),
                size_of::<libc::timeval>() as libc::socklen_t,
            )
        },
        "setsockopt SO_SNDTIMEO",
    )?;
    let (remote, remote_len) = sockaddr(dst);
    // SAFETY: remote is a valid sockaddr of remote_len bytes.
    let ret = unsafe { libc::connect(fd, (&raw const remote).cast(), remote_len) };
    if ret < 0 {
        let e = io::Error::last_os_error();
        let kind = if e.raw_os_error() == Some(libc::EINPROGRESS) {
            io::ErrorKind::WouldBlock
        } else {
            e.kind()
        };
        return Err(io::Error::new(kind, format!("connect {src} -> {dst}: {e}")));
    }
    Ok(TcpStream::from(owned))
}

/// A DHCPDISCOVER-shaped BOOTP message (op, htype, hlen, xid, chaddr, cookie, option 53).
fn discover(xid: u32) -> Vec<u8> {
    let mut m = vec![0u8; 300];
    m[0] = 1; // BOOTREQUEST
    m[1] = 1; // Ethernet
    m[2] = 6;
    m[4..8].copy_from_slice(&xid.to_be_bytes());
    m[10] = 0x80; // broadcast flag
    m[28..34].copy_from_slice(&[0x02, 0, 0, 0, 0, 0x42]);
    m[236..240].copy_from_slice(&[99, 130, 83, 99]);
    m[240..243].copy_from_slice(&[53, 1, 1]);
    m[243] = 255;
    m
}

/// A DHCPv4 request of message type `kind` with `ciaddr` and `secs`; with `id_first` the
/// client-id option comes before option 53 (the standby filter then leaves it to userspace).
fn dhcp_request(xid: u32, kind: u8, ciaddr: [u8; 4], secs: u16, id_first: bool) -> Vec<u8> {
    let mut m = discover(xid);
    m[8..10].copy_from_slice(&secs.to_be_bytes());
    m[12..16].copy_from_slice(&ciaddr);
    let opts: &[u8] = if id_first {
        &[61, 2, 1, 0x42, 53, 1, kind, 255]
    } else {
        &[53, 1, kind, 255]
    };
    m[240..240 + opts.len()].copy_from_slice(opts);
    m
}

fn bind_to_device(socket: &UdpSocket, dev: &str) -> io::Result<()> {
    // SAFETY: dev bytes are valid for dev.len() bytes; the kernel copies them.
    check(
        unsafe {
            libc::setsockopt(
                socket.as_raw_fd(),
                libc::SOL_SOCKET,
                libc::SO_BINDTODEVICE,
                dev.as_ptr().cast(),
                dev.len() as libc::socklen_t,
            )
        },
        "setsockopt SO_BINDTODEVICE",
    )
}

/// Receives datagrams until `timeout` passes without one; returns how many arrived.
fn drain(socket: &UdpSocket, timeout: Duration) -> io::Result<usize> {
    socket.set_read_timeout(Some(timeout))?;
    let mut buf = [0u8; 1500];
    let mut n = 0;
    loop {
        match socket.recv_from(&mut buf) {
            Ok(_) => n += 1,
            Err(e)
                if matches!(
                    e.kind(),
                    io::ErrorKind::WouldBlock | io::ErrorKind::TimedOut
                ) =>
            {
                return Ok(n)
            }
            Err(e) => return Err(e),
        }
    }
}

fn is_unanswered(result: &io::Result<TcpStream>) -> bool {
    matches!(result, Err(e) if e.kind() == io::ErrorKind::WouldBlock)
}

fn reached_server(result: &io::Result<TcpStream>) -> bool {
    // A connection, or a refusal (RST), both mean the SYN got through XDP to the stack.
    match result {
        Ok(_) => true,
        Err(e) => e.kind() == io::ErrorKind::ConnectionRefused,
    }
}

// ---- raw frames (AF_PACKET), to exercise the parser on tags, options, fragments, truncation

const TPID_8021Q: u16 = 0x8100;
const TPID_8021AD: u16 = 0x88a8;

fn eth(tags: &[u16], ethertype: u16) -> Vec<u8> {
    let mut f = vec![0xff; 6];
    f.extend_from_slice(&[0x02, 0, 0, 0, 0, 0x99]);
    for (i, tpid) in tags.iter().enumerate() {
        f.extend_from_slice(&tpid.to_be_bytes());
        f.extend_from_slice(&(100 + i as u16).to_be_bytes()); // VLAN id
    }
    f.extend_from_slice(&ethertype.to_be_bytes());
    f
}

/// IPv4 header of `ihl` 32-bit words (options are NOPs), with flags/fragment field `frag`.
fn ipv4(ihl: u8, frag: u16, proto: u8, payload_len: usize) -> Vec<u8> {
    let hlen = usize::from(ihl.max(5)) * 4;
    let mut h = vec![0u8; hlen];
    h[0] = 0x40 | ihl;
    h[2..4].copy_from_slice(&((hlen + payload_len) as u16).to_be_bytes());
    h[6..8].copy_from_slice(&frag.to_be_bytes());
    h[8] = 64;
    h[9] = proto;
    h[12..16].copy_from_slice(&PARTNER4.octets());
    h[16..20].copy_from_slice(&Ipv4Addr::BROADCAST.octets());
    for b in &mut h[20..] {
        *b = 1; // NOP option
    }
    h
}

/// IPv6 header from `src` to ff02::1:2 (DHCPv6 servers/relays) with `next` header.
fn ipv6(src: Ipv6Addr, next: u8, payload_len: usize) -> Vec<u8> {
    let mut h = vec![0u8; 40];
    h[0] = 0x60;
    h[4..6].copy_from_slice(&(payload_len as u16).to_be_bytes());
    h[6] = next;
    h[7] = 1;
    h[8..24].copy_from_slice(&src.octets());
    h[24..40].copy_from_slice(&"ff02::1:2".parse::<Ipv6Addr>().unwrap().octets());
    h
}

/// An 8-byte options extension header (hop-by-hop / destination options: PadN only).
fn ext_opts(next: u8) -> Vec<u8> {
    vec![next, 0, 1, 4, 0, 0, 0, 0]
}

/// An IPv6 fragment header; `offset_flags` as on the wire (offset << 3 | M).
fn ext_frag(next: u8, offset_flags: u16) -> Vec<u8> {
    let mut h = vec![next, 0];
    h.extend_from_slice(&offset_flags.to_be_bytes());
    h.extend_from_slice(&[0, 0, 0, 7]);
    h
}

/// A TCP SYN header to `dst`.
fn tcp_syn(dst: u16) -> Vec<u8> {
    let mut t = vec![0u8; 20];
    t[0..2].copy_from_slice(&40000u16.to_be_bytes());
    t[2..4].copy_from_slice(&dst.to_be_bytes());
    t[12] = 5 << 4;
    t[13] = 0x02; // SYN
    t
}

fn udp(src: u16, dst: u16, payload: &[u8]) -> Vec<u8> {
    let mut u = Vec::with_capacity(8 + payload.len());
    u.extend_from_slice(&src.to_be_bytes());
    u.extend_from_slice(&dst.to_be_bytes());
    u.extend_from_slice(&((8 + payload.len()) as u16).to_be_bytes());
    u.extend_from_slice(&[0, 0]);
    u.extend_from_slice(payload);
    u
}

fn concat(parts: &[&[u8]]) -> Vec<u8> {
    parts.concat()
}

/// Frames and what the program must make of them.
struct RawCase {
    name: &'static str,
    frame: Vec<u8>,
    expect: Expect,
}

#[derive(Clone, Copy, PartialEq, Eq, Debug)]
enum Expect {
    Dhcpv4,
    Dhcpv6,
    Malformed,
    /// Dropped by the failover guard.
    Dropped,
    Pass,
}

fn raw_cases() -> Vec<RawCase> {
    let d = udp(68, 67, &discover(0x77));
    let v4 = |tags: &[u16], ihl: u8, frag: u16, l4: &[u8]| {
        concat(&[&eth(tags, 0x0800), &ipv4(ihl, frag, 17, l4.len()), l4])
    };
    let solicit = udp(546, 547, &[1, 0xab, 0xcd, 0xef]);
    // IPv6 frame: fixed header (next = `first`), extension headers `ext`, then `l4`.
    let v6 = |src: Ipv6Addr, ext: &[u8], first: u8, l4: &[u8]| {
        concat(&[
            &eth(&[], 0x86dd),
            &ipv6(src, first, ext.len() + l4.len()),
            ext,
            l4,
        ])
    };
    vec![
        RawCase {
            name: "802.1Q-tagged DISCOVER",
            frame: v4(&[TPID_8021Q], 5, 0, &d),
            expect: Expect::Dhcpv4,
        },
        RawCase {
            name: "802.1ad + 802.1Q (QinQ) DISCOVER",
            frame: v4(&[TPID_8021AD, TPID_8021Q], 5, 0, &d),
            expect: Expect::Dhcpv4,
        },
        RawCase {
            name: "DISCOVER with IPv4 options (IHL 6)",
            frame: v4(&[], 6, 0, &d),
            expect: Expect::Dhcpv4,
        },
        RawCase {
            name: "DHCPv6 SOLICIT to ff02::1:2",
            frame: v6(PARTNER6, &[], 17, &solicit),
            expect: Expect::Dhcpv6,
        },
        RawCase {
            name: "DHCPv6 SOLICIT behind a hop-by-hop header",
            frame: v6(PARTNER6, &ext_opts(17), 0, &solicit),
            expect: Expect::Dhcpv6,
        },
        RawCase {
            name: "DHCPv6 SOLICIT in an atomic fragment (offset 0, no M)",
            frame: v6(PARTNER6, &ext_frag(17, 0), 44, &solicit),
            expect: Expect::Dhcpv6,
        },
        RawCase {
            name: "IPv6 non-first fragment whose bytes look like UDP to 547",
            frame: v6(PARTNER6, &ext_frag(17, 8 << 3), 44, &solicit),
            expect: Expect::Pass,
        },
        RawCase {
            name: "TCP SYN to 647 from a stranger behind destination options",
            frame: v6(STRANGER6, &ext_opts(6), 60, &tcp_syn(FAILOVER_PORT)),
            expect: Expect::Dropped,
        },
        RawCase {
            name: "TCP SYN to 647 from a partner behind destination options",
            frame: v6(PARTNER6, &ext_opts(6), 60, &tcp_syn(FAILOVER_PORT)),
            expect: Expect::Pass,
        },
        RawCase {
            name: "seven destination-options headers (longer chain than walked)",
            frame: v6(
                PARTNER6,
                &[ext_opts(60).repeat(6), ext_opts(17)].concat(),
                60,
                &solicit,
            ),
            expect: Expect::Malformed,
        },
        RawCase {
            name: "three VLAN tags (beyond the two parsed)",
            frame: v4(&[TPID_8021Q, TPID_8021Q, TPID_8021Q], 5, 0, &d),
            expect: Expect::Pass,
        },
        RawCase {
            name: "first fragment (MF) of a DHCP datagram",
            frame: v4(&[], 5, 0x2000, &d),
            expect: Expect::Pass,
        },
        RawCase {
            name: "non-first fragment whose bytes look like UDP to 67",
            frame: v4(&[], 5, 0x0010, &d),
            expect: Expect::Pass,
        },
        RawCase {
            name: "IPv4 header cut at 10 bytes",
            frame: concat(&[&eth(&[], 0x0800), &ipv4(5, 0, 17, 0)[..10]]),
            expect: Expect::Malformed,
        },
        RawCase {
            name: "UDP header cut at 2 bytes",
            frame: concat(&[&eth(&[], 0x0800), &ipv4(5, 0, 17, 2), &[0, 68]]),
            expect: Expect::Malformed,
        },
        RawCase {
            name: "IHL 15 (60-byte header) in a 48-byte packet",
            frame: concat(&[
                &eth(&[], 0x0800),
                &ipv4(5, 0, 17, 8)[..],
                &udp(68, 67, &[])[..],
            ])
            .into_iter()
            .enumerate()
            .map(|(i, b)| if i == 14 { 0x4f } else { b })
            .collect(),
            expect: Expect::Malformed,
        },
        RawCase {
            name: "IHL 3 (shorter than the minimum)",
            frame: v4(&[], 3, 0, &d),
            expect: Expect::Malformed,
        },
        RawCase {
            name: "VLAN tag cut short",
            frame: concat(&[&eth(&[], TPID_8021Q), &[0, 100]]),
            expect: Expect::Malformed,
        },
    ]
}

/// Sends each frame as-is on `dev` through an AF_PACKET socket (from the calling thread's
/// namespace).
fn send_raw(dev: &str, frames: &[Vec<u8>]) -> io::Result<()> {
    let c_dev = std::ffi::CString::new(dev).map_err(io::Error::other)?;
    // SAFETY: c_dev is a valid NUL-terminated string.
    let ifindex = unsafe { libc::if_nametoindex(c_dev.as_ptr()) };
    if ifindex == 0 {
        return Err(io::Error::other(format!("no interface {dev}")));
    }
    // SAFETY: plain socket(2); owned right away. Protocol 0: send only.
    let fd = unsafe { libc::socket(libc::AF_PACKET, libc::SOCK_RAW | libc::SOCK_CLOEXEC, 0) };
    check(fd, "socket AF_PACKET")?;
    // SAFETY: fd is fresh and owned by nobody else.
    let _owned = unsafe { OwnedFd::from_raw_fd(fd) };
    // SAFETY: all-zero is a valid sockaddr_ll.
    let mut ll: libc::sockaddr_ll = unsafe { std::mem::zeroed() };
    ll.sll_family = libc::AF_PACKET as u16;
    ll.sll_ifindex = ifindex as i32;
    ll.sll_halen = 6;
    ll.sll_addr[..6].copy_from_slice(&[0xff; 6]);
    for frame in frames {
        // SAFETY: frame and ll are valid for the lengths given.
        let sent = unsafe {
            libc::sendto(
                fd,
                frame.as_ptr().cast(),
                frame.len(),
                0,
                (&raw const ll).cast(),
                size_of::<libc::sockaddr_ll>() as libc::socklen_t,
            )
        };
        if sent < 0 {
            return Err(io::Error::other(format!(
                "sending a {}-byte raw frame on {dev}: {}",
                frame.len(),
                io::Error::last_os_error()
            )));
        }
    }
    Ok(())
}

/// UDP destination port of an Ethernet frame (after up to two VLAN tags and IPv6 extension
/// headers), if IPv4/IPv6 + UDP.
fn udp_dst_port(f: &[u8]) -> Option<u16> {
    let be16 = |i: usize| Some(u16::from_be_bytes([*f.get(i)?, *f.get(i + 1)?]));
    let mut off = 12;
    let mut ethertype = be16(off)?;
    for _ in 0..2 {
        if ethertype == TPID_8021Q || ethertype == TPID_8021AD {
            off += 4;
            ethertype = be16(off)?;
        }
    }
    let l3 = off + 2;
    let l4 = match ethertype {
        0x0800 if *f.get(l3 + 9)? == 17 => l3 + usize::from(f.get(l3)? & 0x0f) * 4,
        0x86dd => {
            // Skip options (0, 60) and fragment (44) headers, as the test frames use them.
            let (mut next, mut off) = (*f.get(l3 + 6)?, l3 + 40);
            while matches!(next, 0 | 44 | 60) {
                let len = if next == 44 {
                    8
                } else {
                    (usize::from(*f.get(off + 1)?) + 1) * 8
                };
                next = *f.get(off)?;
                off += len;
            }
            if next != 17 {
                return None;
            }
            off
        }
        _ => return None,
    };
    be16(l4 + 2)
}

/// Collects frames from the sockets until `want` arrived or `timeout` passed, then a short
/// extra wait to catch any surplus. Returns the packets' bytes.
fn collect_xsk(socks: &mut [XskSocket], want: usize, timeout: Duration) -> Vec<Vec<u8>> {
    let mut got = Vec::new();
    let mut rx = Vec::new();
    let mut deadline = Instant::now() + timeout;
    let mut lingering = false;
    while Instant::now() < deadline {
        for s in socks.iter_mut() {
            rx.clear();
            s.recv(&mut rx, 64);
            for d in &rx {
                got.push(s.packet(d).to_vec());
                assert!(s.recycle(d.addr), "recycle a received frame");
            }
            s.flush().expect("flush AF_XDP socket");
        }
        if got.len() >= want && !lingering {
            // Everything expected is here: linger briefly for unexpected extras.
            lingering = true;
            deadline = Instant::now() + Duration::from_millis(200);
        }
        std::thread::sleep(Duration::from_millis(1));
    }
    got
}

struct ServerSockets {
    dhcp4: UdpSocket,
    dhcp6: UdpSocket,
    other: UdpSocket,
    _failover: TcpListener,
}

#[test]
fn xdp_steering_passes_dhcp_without_socket_and_guards_failover() {
    if !require(&needs()) {
        return;
    }
    let server = Netns::new("xdps").expect("create server netns");
    let client = Netns::new("xdpc").expect("create client netns");
    let veth = veth_pair(&server, &client, 2).expect("create veth pair with 2 queues");
    let (srv_if, cli_if) = (veth.a.clone(), veth.b.clone());
    server.add_addr(&srv_if, "10.201.0.1/24").unwrap();
    server.add_addr(&srv_if, "fd00:201::1/64").unwrap();
    for a in [
        "10.201.0.2/24",
        "10.201.0.3/24",
        "fd00:201::2/64",
        "fd00:201::3/64",
    ] {
        client.add_addr(&cli_if, a).unwrap();
    }

    // Sockets in the server namespace: they show what the XDP program let through.
    let sockets = server
        .run(|| -> io::Result<ServerSockets> {
            let dhcp4 = UdpSocket::bind((Ipv4Addr::UNSPECIFIED, 67))?;
            dhcp4.set_broadcast(true)?;
            Ok(ServerSockets {
                dhcp4,
                dhcp6: UdpSocket::bind((Ipv6Addr::UNSPECIFIED, 547))?,
                other: UdpSocket::bind((Ipv4Addr::UNSPECIFIED, OTHER_UDP_PORT))?,
                // Dual-stack ([::] also accepts IPv4): partners complete the handshake.
                _failover: TcpListener::bind((Ipv6Addr::UNSPECIFIED, FAILOVER_PORT))?,
            })
        })
        .expect("enter server netns")
        .expect("bind server sockets");

    // A wrong interface name is reported by name.
    let missing = server
        .run(|| {
            XdpSteering::attach("nosuchif0", AttachMode::Driver, None, XdpConfig::default())
                .map(|_| ())
        })
        .unwrap();
    match missing {
        Err(e @ XdpError::InterfaceNotFound { .. }) => {
            assert!(e.to_string().contains("nosuchif0"), "{e}")
        }
        other => panic!("expected InterfaceNotFound, got {other:?}"),
    }

    let cfg = XdpConfig {
        flags: CFG_DHCPV4 | CFG_DHCPV6 | CFG_GUARD_FAILOVER,
        failover_port: 0, // default 647
        standby_max_secs: 0,
    };
    let object = object();
    let ifname = srv_if.clone();
    let mut xdp = server
        .run(move || XdpSteering::attach(&ifname, AttachMode::Driver, object.as_deref(), cfg))
        .unwrap()
        .expect("attach XDP in driver mode");
    assert_eq!(xdp.mode(), AttachMode::Driver);
    let link = server.ip(&["link", "show", "dev", &srv_if]).unwrap();
    assert!(
        link.contains("prog/xdp"),
        "no XDP program on {srv_if}: {link}"
    );
    eprintln!("attached program id {:?} to {srv_if}", xdp.program_id());

    xdp.set_partners(&[IpAddr::V4(PARTNER4), IpAddr::V6(PARTNER6)])
        .expect("set partners");

    // Registration errors name the interface; a non-AF_XDP fd is refused by the kernel.
    let err = xdp
        .register_socket(10_000, sockets.other.as_raw_fd())
        .unwrap_err();
    assert!(
        matches!(err, XdpError::QueueOutOfRange { queue: 10_000, .. }),
        "{err}"
    );
    assert!(err.to_string().contains(&srv_if), "{err}");
    let err = xdp
        .register_socket(0, sockets.other.as_raw_fd())
        .unwrap_err();
    assert!(err.to_string().contains(&srv_if), "{err}");

    let before = xdp.counters().expect("read counters");

    // Client traffic, from a thread inside the client namespace.
    let dev = cli_if.clone();
    let results = client
        .run(move || -> io::Result<_> {
            let udp4 = UdpSocket::bind((Ipv4Addr::UNSPECIFIED, 68))?;
            udp4.set_broadcast(true)?;
            bind_to_device(&udp4, &dev)?;
            for xid in 1..=3 {
                udp4.send_to(&discover(xid), (Ipv4Addr::BROADCAST, 67))?;
            }
            let other = UdpSocket::bind((PARTNER4, 0))?;
            other.send_to(b"not dhcp", (SRV4, OTHER_UDP_PORT))?;
            other.send_to(b"not dhcp either", (SRV4, OTHER_UDP_PORT))?;
            // DHCPv6-shaped: SOLICIT (type 1) with a transaction id.
            let udp6 = UdpSocket::bind((PARTNER6, 546))?;
            udp6.send_to(&[1, 0xab, 0xcd, 0xef], (SRV6, 547))?;

            let wait = Duration::from_millis(1500);
            let failover = |src: IpAddr, dst: IpAddr| {
                tcp_connect_from(src, SocketAddr::new(dst, FAILOVER_PORT), wait)
            };
            Ok([
                failover(PARTNER4.into(), SRV4.into()),
                failover(STRANGER4.into(), SRV4.into()),
                failover(PARTNER6.into(), SRV6.into()),
                failover(STRANGER6.into(), SRV6.into()),
            ])
        })
        .unwrap()
        .expect("client traffic");
    let [partner4, stranger4, partner6, stranger6] = &results;
    assert!(reached_server(partner4), "v4 partner blocked: {partner4:?}");
    assert!(reached_server(partner6), "v6 partner blocked: {partner6:?}");
    assert!(
        is_unanswered(stranger4),
        "v4 stranger not dropped: {stranger4:?}"
    );
    assert!(
        is_unanswered(stranger6),
        "v6 stranger not dropped: {stranger6:?}"
    );

    // Without an AF_XDP socket the DHCP frames must reach the kernel stack.
    let quiet = Duration::from_millis(300);
    assert_eq!(drain(&sockets.dhcp4, quiet).unwrap(), 3, "DISCOVERs passed");
    assert_eq!(drain(&sockets.dhcp6, quiet).unwrap(), 1, "SOLICIT passed");
    assert_eq!(
        drain(&sockets.other, quiet).unwrap(),
        2,
        "non-DHCP UDP passed"
    );

    let d: Counters = xdp.counters().expect("read counters").since(&before);
    eprintln!("counters during the test: {d}");
    assert_eq!(d.no_socket, 4, "3 DHCPv4 + 1 DHCPv6 without socket: {d}");
    assert_eq!((d.redirected, d.dhcpv4, d.dhcpv6), (0, 0, 0), "{d}");
    assert_eq!(d.malformed, 0, "{d}");
    assert!(
        d.failover_dropped >= 2,
        "one SYN per stranger at least: {d}"
    );
    assert!(d.failover_passed >= 2, "partner SYNs: {d}");
    assert!(d.passed >= d.no_socket + 2 + d.failover_passed, "{d}");
    assert!(d.seen >= d.passed + d.failover_dropped, "{d}");

    // With the guard off, the stranger gets through too.
    xdp.set_config(XdpConfig {
        flags: CFG_DHCPV4 | CFG_DHCPV6,
        ..cfg
    })
    .expect("set config");
    let before = xdp.counters().unwrap();
    let open = client
        .run(|| {
            tcp_connect_from(
                STRANGER4.into(),
                SocketAddr::new(SRV4.into(), FAILOVER_PORT),
                Duration::from_millis(1500),
            )
        })
        .unwrap();
    assert!(
        reached_server(&open),
        "guard off but stranger blocked: {open:?}"
    );
    let d = xdp.counters().unwrap().since(&before);
    assert_eq!((d.failover_dropped, d.failover_passed), (0, 0), "{d}");

    // ---- With an AF_XDP socket on each queue, DHCP is redirected (and only DHCP).
    xdp.set_config(cfg).expect("restore config");
    let ifname = srv_if.clone();
    let mut socks = server
        .run(move || -> Result<Vec<XskSocket>, String> {
            (0..2)
                .map(|queue| {
                    let mut c = XskConfig::new(ifname.clone(), queue);
                    (c.frame_count, c.tx_frames, c.ring_size) = (256, 0, 128);
                    XskSocket::open(&c).map_err(|e| e.to_string())
                })
                .collect()
        })
        .unwrap()
        .expect("open AF_XDP sockets on queues 0 and 1");
    for (queue, sock) in (0u32..).zip(&socks) {
        xdp.register_socket(queue, sock.fd())
            .expect("register AF_XDP socket");
    }
    let cases = raw_cases();
    let frames: Vec<Vec<u8>> = cases.iter().map(|c| c.frame.clone()).collect();
    let dev = cli_if.clone();
    let before = xdp.counters().unwrap();
    client
        .run(move || -> io::Result<()> {
            let udp4 = UdpSocket::bind((Ipv4Addr::UNSPECIFIED, 68))?;
            udp4.set_broadcast(true)?;
            bind_to_device(&udp4, &dev)?;
            for xid in 11..=13 {
                udp4.send_to(&discover(xid), (Ipv4Addr::BROADCAST, 67))?;
            }
            let udp6 = UdpSocket::bind((PARTNER6, 546))?;
            udp6.send_to(&[1, 0xab, 0xcd, 0xef], (SRV6, 547))?;
            UdpSocket::bind((PARTNER4, 0))?.send_to(b"not dhcp", (SRV4, OTHER_UDP_PORT))?;
            send_raw(&dev, &frames)
        })
        .unwrap()
        .expect("client traffic with sockets registered");

    let count = |e: Expect| cases.iter().filter(|c| c.expect == e).count() as u64;
    let (raw4, raw6, raw_bad) = (
        count(Expect::Dhcpv4),
        count(Expect::Dhcpv6),
        count(Expect::Malformed),
    );
    let want = 3 + 1 + raw4 + raw6;
    let got = collect_xsk(&mut socks, want as usize, Duration::from_secs(3));
    let ports: Vec<Option<u16>> = got.iter().map(|f| udp_dst_port(f)).collect();
    assert_eq!(
        got.len() as u64,
        want,
        "frames on the AF_XDP sockets: ports {ports:?}"
    );
    assert_eq!(
        ports.iter().filter(|p| **p == Some(67)).count() as u64,
        3 + raw4,
        "{ports:?}"
    );
    assert_eq!(
        ports.iter().filter(|p| **p == Some(547)).count() as u64,
        1 + raw6,
        "{ports:?}"
    );
    assert_eq!(
        drain(&sockets.dhcp4, quiet).unwrap(),
        0,
        "DISCOVERs went to AF_XDP"
    );
    assert_eq!(
        drain(&sockets.dhcp6, quiet).unwrap(),
        0,
        "SOLICIT went to AF_XDP"
    );
    assert_eq!(
        drain(&sockets.other, quiet).unwrap(),
        1,
        "non-DHCP UDP still passed"
    );

    let d = xdp.counters().unwrap().since(&before);
    eprintln!("counters with sockets registered: {d}");
    let names: Vec<_> = cases.iter().map(|c| (c.name, c.expect)).collect();
    assert_eq!(d.redirected, want, "{d}; cases {names:?}");
    assert_eq!((d.dhcpv4, d.dhcpv6), (3 + raw4, 1 + raw6), "{d}");
    assert_eq!(d.no_socket, 0, "{d}");
    assert_eq!(d.malformed, raw_bad, "{d}; cases {names:?}");
    assert_eq!(d.failover_dropped, count(Expect::Dropped), "{d}");
    assert_eq!(
        d.failover_passed, 1,
        "the partner's SYN behind options: {d}"
    );
    assert_eq!(d.standby_dropped, 0, "{d}");

    // Failover standby: what a backup in NORMAL would not answer is dropped in XDP, the rest
    // still reaches the socket.
    assert!(xdp.set_standby(true, 10).unwrap());
    assert!(
        !xdp.set_standby(true, 10).unwrap(),
        "no change the second time"
    );
    let (none, mine) = ([0u8; 4], [10, 0, 0, 9]);
    let dropped = [
        dhcp_request(21, 1, none, 0, false),  // DISCOVER
        dhcp_request(22, 3, none, 10, false), // REQUEST, SELECTING / INIT-REBOOT
        dhcp_request(23, 8, mine, 0, false),  // INFORM
    ];
    let passed = [
        dhcp_request(31, 3, mine, 0, false), // REQUEST with ciaddr: RENEW/REBIND
        dhcp_request(32, 7, mine, 0, false), // RELEASE
        dhcp_request(33, 4, none, 0, false), // DECLINE
        dhcp_request(34, 10, mine, 0, false), // LEASEQUERY
        dhcp_request(35, 1, none, 11, false), // DISCOVER from a client waiting > 10 s
        dhcp_request(36, 1, none, 0, true),  // DISCOVER with option 53 not first
    ];
    let before = xdp.counters().unwrap();
    let dev = cli_if.clone();
    let msgs: Vec<Vec<u8>> = dropped.iter().chain(&passed).cloned().collect();
    client
        .run(move || -> io::Result<()> {
            let udp4 = UdpSocket::bind((Ipv4Addr::UNSPECIFIED, 68))?;
            udp4.set_broadcast(true)?;
            bind_to_device(&udp4, &dev)?;
            for m in &msgs {
                udp4.send_to(m, (Ipv4Addr::BROADCAST, 67))?;
            }
            Ok(())
        })
        .unwrap()
        .expect("client traffic to a standby");
    let got = collect_xsk(&mut socks, passed.len(), Duration::from_secs(3));
    let xids: Vec<u32> = got
        .iter()
        .filter_map(|f| f.get(f.len() - 300 + 4..f.len() - 300 + 8))
        .map(|b| u32::from_be_bytes([b[0], b[1], b[2], b[3]]))
        .collect();
    let d = xdp.counters().unwrap().since(&before);
    eprintln!("counters in standby: {d}; xids on the sockets {xids:?}");
    assert_eq!(d.standby_dropped, dropped.len() as u64, "{d}");
    assert_eq!(d.redirected, passed.len() as u64, "{d}");
    let mut sorted = xids.clone();
    sorted.sort_unstable();
    assert_eq!(sorted, vec![31, 32, 33, 34, 35, 36], "{d}");
    // Off again: a DISCOVER reaches the socket.
    assert!(xdp.set_standby(false, 10).unwrap());
    let before = xdp.counters().unwrap();
    let dev = cli_if.clone();
    client
        .run(move || -> io::Result<()> {
            let udp4 = UdpSocket::bind((Ipv4Addr::UNSPECIFIED, 68))?;
            udp4.set_broadcast(true)?;
            bind_to_device(&udp4, &dev)?;
            udp4.send_to(
                &dhcp_request(41, 1, none, 0, false),
                (Ipv4Addr::BROADCAST, 67),
            )?;
            Ok(())
        })
        .unwrap()
        .expect("client traffic after standby");
    let got = collect_xsk(&mut socks, 1, Duration::from_secs(3));
    let d = xdp.counters().unwrap().since(&before);
    assert_eq!(
        (got.len(), d.standby_dropped, d.redirected),
        (1, 0, 1),
        "{d}"
    );
    drop(socks);

    // Dropping the loader detaches the program.
    drop(xdp);
    let link = server.ip(&["link", "show", "dev", &srv_if]).unwrap();
    assert!(
        !link.contains("prog/xdp"),
        "XDP still attached after drop: {link}"
    );
}

/// A namespace pair with the program attached in driver mode (guard on, partner PARTNER4 /
/// PARTNER6) and a DHCPv4 UDP socket in the server namespace; returns what the tests need.
struct GuardBed {
    // Dropped in this order: the program detaches before its namespace goes.
    xdp: XdpSteering,
    dhcp4: UdpSocket,
    cli_if: String,
    cfg: XdpConfig,
    client: Netns,
    server: Netns,
}

fn guard_bed(tag: &str) -> GuardBed {
    let server = Netns::new(&format!("{tag}s")).expect("create server netns");
    let client = Netns::new(&format!("{tag}c")).expect("create client netns");
    let veth = veth_pair(&server, &client, 1).expect("create veth pair");
    let (srv_if, cli_if) = (veth.a.clone(), veth.b.clone());
    server.add_addr(&srv_if, "10.201.0.1/24").unwrap();
    server.add_addr(&srv_if, "fd00:201::1/64").unwrap();
    client.add_addr(&cli_if, "10.201.0.2/24").unwrap();
    let dhcp4 = server
        .run(|| -> io::Result<UdpSocket> {
            let s = UdpSocket::bind((Ipv4Addr::UNSPECIFIED, 67))?;
            s.set_broadcast(true)?;
            Ok(s)
        })
        .unwrap()
        .expect("bind port 67");
    let cfg = XdpConfig {
        flags: CFG_DHCPV4 | CFG_GUARD_FAILOVER,
        failover_port: 0,
        standby_max_secs: 0,
    };
    let object = object();
    let ifname = srv_if.clone();
    let mut xdp = server
        .run(move || XdpSteering::attach(&ifname, AttachMode::Driver, object.as_deref(), cfg))
        .unwrap()
        .expect("attach XDP in driver mode");
    xdp.set_partners(&[IpAddr::V4(PARTNER4), IpAddr::V6(PARTNER6)])
        .expect("set partners");
    GuardBed {
        xdp,
        dhcp4,
        cli_if,
        cfg,
        client,
        server,
    }
}

/// Frames the failover guard cannot read far enough to rule out TCP to the failover port.
fn unparsable_tcp_frames() -> Vec<(&'static str, Vec<u8>)> {
    let syn = tcp_syn(FAILOVER_PORT);
    let v6 = |src: Ipv6Addr, ext: &[u8], first: u8, l4: &[u8]| {
        concat(&[
            &eth(&[], 0x86dd),
            &ipv6(src, first, ext.len() + l4.len()),
            ext,
            l4,
        ])
    };
    let v4 = |frag: u16, l4: &[u8]| concat(&[&eth(&[], 0x0800), &ipv4(5, frag, 6, l4.len()), l4]);
    vec![
        (
            "TCP SYN to 647 from a stranger behind seven destination-options headers",
            v6(
                STRANGER6,
                &ext_opts(60)
                    .repeat(6)
                    .into_iter()
                    .chain(ext_opts(6))
                    .collect::<Vec<_>>(),
                60,
                &syn,
            ),
        ),
        (
            "IPv6 first fragment (M) whose TCP header is cut before the ports",
            v6(STRANGER6, &ext_frag(6, 1), 44, &syn[..2]),
        ),
        (
            "IPv4 first fragment (MF) whose TCP header is cut before the ports",
            v4(0x2000, &syn[..2]),
        ),
        (
            "IPv4 TCP fragment at offset 8, overlapping the TCP header (RFC 1858)",
            v4(0x0001, &syn[8..]),
        ),
        (
            "IPv4 header cut at 10 bytes (protocol unknown)",
            concat(&[&eth(&[], 0x0800), &ipv4(5, 0, 6, 0)[..10]]),
        ),
    ]
}

#[test]
fn xdp_failover_guard_fails_closed_on_unparsable_tcp() {
    if !require(&needs()) {
        return;
    }
    let mut bed = guard_bed("xdpg");
    let frames = unparsable_tcp_frames();
    let raw: Vec<Vec<u8>> = frames.iter().map(|(_, f)| f.clone()).collect();
    // Controls the guard must keep passing: a later fragment of TCP, TCP to another port.
    let controls = vec![
        concat(&[
            &eth(&[], 0x0800),
            &ipv4(5, 0x0004, 6, 20),
            &tcp_syn(FAILOVER_PORT),
        ]),
        concat(&[&eth(&[], 0x0800), &ipv4(5, 0, 6, 20), &tcp_syn(80)]),
    ];
    let send = |bed: &GuardBed, frames: Vec<Vec<u8>>| {
        let dev = bed.cli_if.clone();
        bed.client
            .run(move || send_raw(&dev, &frames))
            .unwrap()
            .expect("send raw frames");
    };

    let before = bed.xdp.counters().unwrap();
    send(&bed, raw.clone());
    send(&bed, controls.clone());
    // Wait for the program to have seen them all (veth XDP runs in the sender's context, so
    // this is immediate; poll briefly anyway).
    let want = (raw.len() + controls.len()) as u64;
    let deadline = Instant::now() + Duration::from_secs(2);
    let mut d = bed.xdp.counters().unwrap().since(&before);
    while d.seen < want && Instant::now() < deadline {
        std::thread::sleep(Duration::from_millis(10));
        d = bed.xdp.counters().unwrap().since(&before);
    }
    eprintln!("guard on: {d}");
    let names: Vec<&str> = frames.iter().map(|(n, _)| *n).collect();
    assert_eq!(
        d.guard_unparsable_dropped,
        raw.len() as u64,
        "each unparsable frame dropped: {d}; {names:?}"
    );
    // (>=: the kernel's own IPv6 neighbour and router traffic may pass meanwhile.)
    assert!(
        d.passed >= controls.len() as u64,
        "the controls passed: {d}"
    );
    assert_eq!(d.failover_dropped, 0, "{d}");

    // With the guard off (no failover), the same frames go to the kernel as before.
    bed.xdp
        .set_config(XdpConfig {
            flags: CFG_DHCPV4,
            ..bed.cfg
        })
        .unwrap();
    let before = bed.xdp.counters().unwrap();
    send(&bed, raw.clone());
    let deadline = Instant::now() + Duration::from_secs(2);
    let mut d = bed.xdp.counters().unwrap().since(&before);
    while d.seen < raw.len() as u64 && Instant::now() < deadline {
        std::thread::sleep(Duration::from_millis(10));
        d = bed.xdp.counters().unwrap().since(&before);
    }
    eprintln!("guard off: {d}");
    assert_eq!(d.guard_unparsable_dropped, 0, "{d}");
    assert!(d.passed >= raw.len() as u64, "{d}");
    let _ = &bed.server;
}

/// A DISCOVER from `mac` (last byte), relayed by `giaddr` when set.
fn discover_from(xid: u32, mac: u8, giaddr: [u8; 4]) -> Vec<u8> {
    let mut m = discover(xid);
    m[24..28].copy_from_slice(&giaddr);
    m[33] = mac;
    m
}

/// `m` with option 82 after option 53: circuit-id `circuit` (after a remote-id sub-option
/// when `second`).
fn with_circuit(mut m: Vec<u8>, circuit: &[u8], second: bool) -> Vec<u8> {
    let remote: &[u8] = &[2, 2, b'r', b'1'];
    let mut sub = Vec::new();
    if second {
        sub.extend_from_slice(remote);
    }
    sub.extend_from_slice(&[1, circuit.len() as u8]);
    sub.extend_from_slice(circuit);
    if !second {
        sub.extend_from_slice(remote);
    }
    let mut opts = vec![53, 1, 1, 82, sub.len() as u8];
    opts.extend_from_slice(&sub);
    opts.push(255);
    m[240..240 + opts.len()].copy_from_slice(&opts);
    m
}

#[test]
fn xdp_ratelimit_per_client_relay_and_circuit() {
    if !require(&needs()) {
        return;
    }
    let mut bed = guard_bed("xdpr");
    let send = |bed: &GuardBed, msgs: Vec<Vec<u8>>| {
        let dev = bed.cli_if.clone();
        bed.client
            .run(move || -> io::Result<()> {
                let udp4 = UdpSocket::bind((Ipv4Addr::UNSPECIFIED, 68))?;
                udp4.set_broadcast(true)?;
                bind_to_device(&udp4, &dev)?;
                for m in &msgs {
                    udp4.send_to(m, (Ipv4Addr::BROADCAST, 67))?;
                }
                Ok(())
            })
            .unwrap()
            .expect("send DISCOVERs");
    };
    // Relays send unicast from their own address (the relay buckets' key).
    let send_from = |bed: &GuardBed, relay: Ipv4Addr, msgs: Vec<Vec<u8>>| {
        bed.client
            .run(move || -> io::Result<()> {
                let udp4 = UdpSocket::bind((relay, 67))?;
                for m in &msgs {
                    udp4.send_to(m, (SRV4, 67))?;
                }
                Ok(())
            })
            .unwrap()
            .expect("send relayed DISCOVERs");
    };
    const R1: Ipv4Addr = Ipv4Addr::new(10, 201, 0, 11);
    const R2: Ipv4Addr = Ipv4Addr::new(10, 201, 0, 12);
    for r in [R1, R2] {
        bed.client
            .add_addr(&bed.cli_if, &format!("{r}/24"))
            .unwrap();
    }
    let quiet = Duration::from_millis(300);

    // Per client: 1/s, bursts of 2. One client floods; another still gets its burst.
    let (i, t) = xdhcpd_common::RateLimitConfig::gcra(1, 2);
    bed.xdp
        .set_rate_limits(xdhcpd_common::RateLimitConfig {
            client_interval_ns: i,
            client_tau_ns: t,
            relay_interval_ns: 0,
            relay_tau_ns: 0,
            ..Default::default()
        })
        .unwrap();
    let before = bed.xdp.counters().unwrap();
    let flood: Vec<Vec<u8>> = (0..10)
        .map(|x| discover_from(100 + x, 0x01, [0; 4]))
        .collect();
    let other: Vec<Vec<u8>> = (0..2)
        .map(|x| discover_from(200 + x, 0x02, [0; 4]))
        .collect();
    send(&bed, flood);
    send(&bed, other);
    let got = drain(&bed.dhcp4, quiet).unwrap();
    let d = bed.xdp.counters().unwrap().since(&before);
    eprintln!("per client: {got} reached the server; {d}");
    assert_eq!(
        d.ratelimit_client_dropped, 8,
        "the flooder's 10 - burst 2: {d}"
    );
    assert_eq!(
        got, 4,
        "2 of the flooder's, both of the other client's: {d}"
    );
    assert_eq!(d.ratelimit_relay_dropped, 0, "{d}");

    // Per relay: 1/s, bursts of 3, clients unlimited. 10 clients behind relay R1, 3 behind
    // R2: R1's flood costs R2 nothing, even when R1's clients claim R2's giaddr (a relay
    // forwards a giaddr already set unchanged): the bucket is the sender's.
    let (i, t) = xdhcpd_common::RateLimitConfig::gcra(1, 3);
    bed.xdp
        .set_rate_limits(xdhcpd_common::RateLimitConfig {
            client_interval_ns: 0,
            client_tau_ns: 0,
            relay_interval_ns: i,
            relay_tau_ns: t,
            ..Default::default()
        })
        .unwrap();
    let before = bed.xdp.counters().unwrap();
    let g1: Vec<Vec<u8>> = (0..10)
        .map(|x| {
            let claimed = if x % 2 == 0 { R1 } else { R2 };
            discover_from(300 + x, 0x10 + x as u8, claimed.octets())
        })
        .collect();
    let g2: Vec<Vec<u8>> = (0..3)
        .map(|x| discover_from(400 + x, 0x30 + x as u8, R2.octets()))
        .collect();
    send_from(&bed, R1, g1);
    send_from(&bed, R2, g2);
    let got = drain(&bed.dhcp4, quiet).unwrap();
    let d = bed.xdp.counters().unwrap().since(&before);
    eprintln!("per relay: {got} reached the server; {d}");
    assert_eq!(d.ratelimit_relay_dropped, 7, "R1's 10 - burst 3: {d}");
    assert_eq!(got, 6, "3 from R1, all 3 from R2: {d}");
    assert_eq!(d.ratelimit_client_dropped, 0, "{d}");

    // Per circuit (relay + option 82 circuit-id): 1/s, bursts of 2. One access port floods
    // behind R1; another port of R1, and the same port name behind R2, are not touched. The
    // circuit-id is found as the second sub-option too.
    let (i, t) = xdhcpd_common::RateLimitConfig::gcra(1, 2);
    bed.xdp
        .set_rate_limits(xdhcpd_common::RateLimitConfig {
            circuit_interval_ns: i,
            circuit_tau_ns: t,
            ..Default::default()
        })
        .unwrap();
    let before = bed.xdp.counters().unwrap();
    let g1 = R1.octets();
    let mut msgs: Vec<Vec<u8>> = (0..6)
        .map(|x| with_circuit(discover_from(600 + x, 0x40 + x as u8, g1), b"port-1", false))
        .collect();
    msgs.extend(
        (0..2).map(|x| with_circuit(discover_from(610 + x, 0x50 + x as u8, g1), b"port-2", true)),
    );
    let at_r2: Vec<Vec<u8>> = (0..2)
        .map(|x| {
            with_circuit(
                discover_from(620 + x, 0x60 + x as u8, R2.octets()),
                b"port-1",
                false,
            )
        })
        .collect();
    send_from(&bed, R1, msgs);
    send_from(&bed, R2, at_r2);
    let got = drain(&bed.dhcp4, quiet).unwrap();
    let d = bed.xdp.counters().unwrap().since(&before);
    eprintln!("per circuit: {got} reached the server; {d}");
    assert_eq!(
        d.ratelimit_circuit_dropped, 4,
        "port-1's 6 behind R1 - burst 2: {d}"
    );
    assert_eq!(
        got, 6,
        "2 of port-1@R1, both of port-2@R1 and of port-1@R2: {d}"
    );

    // Off: everything passes again.
    bed.xdp
        .set_rate_limits(xdhcpd_common::RateLimitConfig::default())
        .unwrap();
    let before = bed.xdp.counters().unwrap();
    send(
        &bed,
        (0..10)
            .map(|x| discover_from(500 + x, 0x01, [10, 9, 0, 1]))
            .collect(),
    );
    let got = drain(&bed.dhcp4, quiet).unwrap();
    let d = bed.xdp.counters().unwrap().since(&before);
    assert_eq!(
        (got, d.ratelimit_client_dropped, d.ratelimit_relay_dropped),
        (10, 0, 0),
        "{d}"
    );
    let _ = &bed.server;
}

/// The program's cost per DHCPv4 request with and without the rate limits, measured in the
/// kernel with BPF_PROG_TEST_RUN (no veth, no copy: the program alone). Prints the figures
/// for `benches/RESULTS.md`:
/// `cargo test --release -p xdhcpd --test xdp_steering xdp_ratelimit_cost -- --ignored --nocapture`
#[test]
#[ignore = "measurement; run by hand"]
fn xdp_ratelimit_cost_per_request() {
    if !require(&needs()) {
        return;
    }
    let mut bed = guard_bed("xdpk");
    let msg = with_circuit(
        discover_from(1, 0x01, [10, 9, 0, 1]),
        b"ge-0/0/7.100",
        false,
    );
    let frame = concat(&[
        &eth(&[], 0x0800),
        &ipv4(5, 0, 17, 8 + msg.len()),
        &udp(67, 67, &msg),
    ]);
    let repeat = 2_000_000;
    let measure = |bed: &GuardBed, what: &str| -> f64 {
        // Best of 5 runs: the machine is shared.
        let best = (0..5)
            .map(|_| bed.xdp.test_run(&frame, repeat).expect("test run").1)
            .min()
            .unwrap();
        let (action, _) = bed.xdp.test_run(&frame, 1).unwrap();
        let ns = best.as_nanos() as f64;
        eprintln!("{what}: {ns:.0} ns per request (best of 5 x {repeat}), action {action}");
        ns
    };
    let off = measure(&bed, "rate limits off");
    let (ci, ct) = xdhcpd_common::RateLimitConfig::gcra(100_000_000, 100_000_000);
    bed.xdp
        .set_rate_limits(xdhcpd_common::RateLimitConfig {
            client_interval_ns: ci,
            client_tau_ns: ct,
            relay_interval_ns: ci,
            relay_tau_ns: ct,
            circuit_interval_ns: ci,
            circuit_tau_ns: ct,
        })
        .unwrap();
    let admitted = measure(&bed, "client + relay + circuit limits on, admitted");
    let (ci, ct) = xdhcpd_common::RateLimitConfig::gcra(1, 1);
    bed.xdp
        .set_rate_limits(xdhcpd_common::RateLimitConfig {
            client_interval_ns: ci,
            client_tau_ns: ct,
            relay_interval_ns: 0,
            relay_tau_ns: 0,
            ..Default::default()
        })
        .unwrap();
    let dropped = measure(&bed, "client limit on, dropped");
    eprintln!(
        "rate-limit cost: +{:.0} ns admitted, {:+.0} ns dropped (vs {off:.0} ns off)",
        admitted - off,
        dropped - off
    );
}

/// Cost of the unknown-client drop (`known.rs`) per DHCPv4 request, measured in the kernel with
/// BPF_PROG_TEST_RUN: drop off (one array lookup), on with the chaddr known (passed on to the
/// rate limits and the redirect), on with it unknown (dropped). Prints the figures for
/// `benches/RESULTS.md`:
/// `cargo test --release -p xdhcpd --test xdp_steering xdp_deny_unknown_cost -- --ignored --nocapture`
#[test]
#[ignore = "measurement; run by hand"]
fn xdp_deny_unknown_cost_per_request() {
    if !require(&needs()) {
        return;
    }
    let mut bed = guard_bed("xdpu");
    let known = discover_from(1, 0x01, [0; 4]);
    let unknown = discover_from(2, 0x02, [0; 4]);
    let frame = |msg: &[u8]| {
        concat(&[
            &eth(&[], 0x0800),
            &ipv4(5, 0, 17, 8 + msg.len()),
            &udp(68, 67, msg),
        ])
    };
    let (fk, fu) = (frame(&known), frame(&unknown));
    let mut map = bed
        .xdp
        .take_known_macs()
        .expect("the object has the known-MAC map");
    let mut mac = [0u8; 6];
    mac.copy_from_slice(&known[28..34]);
    map.insert(mac).expect("insert");
    // A map holding 1,000 more addresses, as a deployment would.
    for i in 0..1000u32 {
        let b = i.to_be_bytes();
        map.insert([0x02, 0x77, b[0], b[1], b[2], b[3]])
            .expect("insert");
    }
    let repeat = 2_000_000;
    let measure = |bed: &GuardBed, f: &[u8], what: &str| -> f64 {
        let best = (0..5)
            .map(|_| bed.xdp.test_run(f, repeat).expect("test run").1)
            .min()
            .unwrap();
        let (action, _) = bed.xdp.test_run(f, 1).unwrap();
        let ns = best.as_nanos() as f64;
        eprintln!("{what}: {ns:.0} ns per request (best of 5 x {repeat}), action {action}");
        ns
    };
    let off = measure(&bed, &fk, "unknown-client drop off");
    map.set_filter(true).expect("switch on");
    let passed = measure(&bed, &fk, "drop on, chaddr known (passed on)");
    let dropped = measure(&bed, &fu, "drop on, chaddr unknown (dropped)");
    let (action, _) = bed.xdp.test_run(&fu, 1).unwrap();
    assert_eq!(
        action, 1,
        "an unknown chaddr must be dropped (XDP_DROP = 1)"
    );
    let (action, _) = bed.xdp.test_run(&fk, 1).unwrap();
    assert_ne!(action, 1, "a known chaddr must not be dropped");
    eprintln!(
        "unknown-client drop cost: {:+.0} ns known, {:+.0} ns unknown (vs {off:.0} ns off)",
        passed - off,
        dropped - off
    );
}
