//! Dynamic BOOTP on the real XDP path (issue 15 item 7): the daemon (`--io xdp`) on a veth
//! pair with `dynamic-bootp = true` on its subnet; crafted BOOTREQUESTs (no option 53) are sent
//! raw (AF_PACKET) from the client namespace:
//! - one with the RFC 1497 magic cookie gets a BOOTREPLY (op 2, its xid, an address of the
//!   pool, no option 53, the subnet mask option);
//! - one without the cookie (RFC 951, 64-byte vendor area all zero) from another MAC gets a
//!   300-byte BOOTREPLY with an all-zero vendor area and another address;
//! - after the daemon stopped, the lease file holds both bindings as permanent (ACTIVE,
//!   expiry 0xffffffff, the BOOTP flag), and the engine counted two `bootp_replies`.
//!
//! The control run: the same subnet without `dynamic-bootp` answers neither (counted as
//! `bootp_refused` / `not_request`; the cookie-less one as malformed, as always).
//!
//! Needs root (namespaces, XDP). `cargo test --release -p xdhcpd --test bootp_ns -- --nocapture`

#[path = "common/netns.rs"]
mod netns;

#[path = "common/require.rs"]
mod require;

mod daemon_common;

use std::io;
use std::mem::size_of;
use std::net::Ipv4Addr;
use std::os::fd::{AsRawFd, FromRawFd, OwnedFd};
use std::path::PathBuf;
use std::time::{Duration, Instant};

use daemon_common::*;
use require::{require, Capability};

const COOKIE: [u8; 4] = [99, 130, 83, 99];
const XID_COOKIE: u32 = 0xb007_0001;
const XID_PLAIN: u32 = 0xb007_0002;
const MAC_PLAIN: [u8; 6] = [0x02, 0x5a, 0xd1, 0x00, 0x00, 0x03];

fn csum(data: &[u8], mut sum: u32) -> u16 {
    for c in data.chunks(2) {
        let w = if c.len() == 2 {
            u16::from_be_bytes([c[0], c[1]])
        } else {
            u16::from_be_bytes([c[0], 0])
        };
        sum += u32::from(w);
    }
    while sum > 0xffff {
        sum = (sum & 0xffff) + (sum >> 16);
    }
    !(sum as u16)
}

/// A 300-byte BOOTREQUEST from `mac`: with the cookie and END only, or an all-zero vendor area.
fn bootrequest(xid: u32, mac: &[u8; 6], cookie: bool) -> Vec<u8> {
    let mut b = vec![0u8; 300];
    b[0] = 1;
    b[1] = 1;
    b[2] = 6;
    b[4..8].copy_from_slice(&xid.to_be_bytes());
    b[28..34].copy_from_slice(mac);
    if cookie {
        b[236..240].copy_from_slice(&COOKIE);
        b[240] = 255;
    }
    b
}

/// Ethernet (broadcast, from `mac`) + IPv4 0.0.0.0 -> 255.255.255.255 + UDP 68 -> 67.
fn frame(mac: &[u8; 6], payload: &[u8]) -> Vec<u8> {
    let (src, dst) = (Ipv4Addr::UNSPECIFIED, Ipv4Addr::BROADCAST);
    let udp_len = 8 + payload.len();
    let mut ip = vec![0u8; 20];
    ip[0] = 0x45;
    ip[2..4].copy_from_slice(&((20 + udp_len) as u16).to_be_bytes());
    ip[8] = 64;
    ip[9] = 17;
    ip[12..16].copy_from_slice(&src.octets());
    ip[16..20].copy_from_slice(&dst.octets());
    let c = csum(&ip, 0);
    ip[10..12].copy_from_slice(&c.to_be_bytes());
    let mut u = Vec::with_capacity(udp_len);
    u.extend_from_slice(&68u16.to_be_bytes());
    u.extend_from_slice(&67u16.to_be_bytes());
    u.extend_from_slice(&(udp_len as u16).to_be_bytes());
    u.extend_from_slice(&[0, 0]);
    u.extend_from_slice(payload);
    let mut pseudo = Vec::with_capacity(12);
    pseudo.extend_from_slice(&src.octets());
    pseudo.extend_from_slice(&dst.octets());
    pseudo.extend_from_slice(&[0, 17]);
    pseudo.extend_from_slice(&(udp_len as u16).to_be_bytes());
    let mut sum = 0u32;
    for c in pseudo.chunks(2) {
        sum += u32::from(u16::from_be_bytes([c[0], c[1]]));
    }
    let c = match csum(&u, sum) {
        0 => 0xffff,
        c => c,
    };
    u[6..8].copy_from_slice(&c.to_be_bytes());
    let mut f = vec![0xff; 6];
    f.extend_from_slice(mac);
    f.extend_from_slice(&0x0800u16.to_be_bytes());
    f.extend_from_slice(&ip);
    f.extend_from_slice(&u);
    f
}

fn check(ret: isize, what: &str) -> io::Result<isize> {
    if ret < 0 {
        Err(io::Error::other(format!(
            "{what}: {}",
            io::Error::last_os_error()
        )))
    } else {
        Ok(ret)
    }
}

/// An AF_PACKET socket on the client's interface (opened in the client namespace).
struct Raw {
    fd: OwnedFd,
    ifindex: i32,
}

impl Raw {
    fn open(bed: &Bed) -> Res<Raw> {
        let dev = bed.cli_if().to_owned();
        bed.cli
            .run(move || -> io::Result<Raw> {
                let c_dev = std::ffi::CString::new(dev.clone()).map_err(io::Error::other)?;
                // SAFETY: c_dev is a valid NUL-terminated string.
                let ifindex = unsafe { libc::if_nametoindex(c_dev.as_ptr()) } as i32;
                if ifindex == 0 {
                    return Err(io::Error::other(format!("no interface {dev}")));
                }
                let proto = (libc::ETH_P_ALL as u16).to_be();
                // SAFETY: plain socket(2); owned right away.
                let fd = unsafe {
                    libc::socket(
                        libc::AF_PACKET,
                        libc::SOCK_RAW | libc::SOCK_CLOEXEC,
                        i32::from(proto),
                    )
                };
                check(fd as isize, "socket AF_PACKET")?;
                // SAFETY: fd is fresh and owned by nobody else.
                let fd = unsafe { OwnedFd::from_raw_fd(fd) };
                // SAFETY: all-zero is a valid sockaddr_ll.
                let mut ll: libc::sockaddr_ll = unsafe { std::mem::zeroed() };
                ll.sll_family = libc::AF_PACKET as u16;
                ll.sll_protocol = proto;
                ll.sll_ifindex = ifindex;
                // SAFETY: ll is a valid sockaddr_ll of the given size.
                let r = unsafe {
                    libc::bind(
                        fd.as_raw_fd(),
                        (&raw const ll).cast(),
                        size_of::<libc::sockaddr_ll>() as libc::socklen_t,
                    )
                };
                check(r as isize, "bind AF_PACKET")?;
                let tv = libc::timeval {
                    tv_sec: 0,
                    tv_usec: 50_000,
                };
                // SAFETY: tv is a valid timeval for SO_RCVTIMEO.
                let r = unsafe {
                    libc::setsockopt(
                        fd.as_raw_fd(),
                        libc::SOL_SOCKET,
                        libc::SO_RCVTIMEO,
                        (&raw const tv).cast(),
                        size_of::<libc::timeval>() as libc::socklen_t,
                    )
                };
                check(r as isize, "SO_RCVTIMEO")?;
                Ok(Raw { fd, ifindex })
            })
            .map_err(|e| e.to_string())?
            .map_err(|e| e.to_string())
    }

    fn send(&self, frame: &[u8]) -> Res<()> {
        // SAFETY: all-zero is a valid sockaddr_ll.
        let mut ll: libc::sockaddr_ll = unsafe { std::mem::zeroed() };
        ll.sll_family = libc::AF_PACKET as u16;
        ll.sll_ifindex = self.ifindex;
        ll.sll_halen = 6;
        ll.sll_addr[..6].copy_from_slice(&[0xff; 6]);
        // SAFETY: frame and ll are valid for the lengths given.
        let sent = unsafe {
            libc::sendto(
                self.fd.as_raw_fd(),
                frame.as_ptr().cast(),
                frame.len(),
                0,
                (&raw const ll).cast(),
                size_of::<libc::sockaddr_ll>() as libc::socklen_t,
            )
        };
        check(sent, "sending a frame").map_err(|e| e.to_string())?;
        Ok(())
    }

    /// The BOOTP payloads (UDP from port 67, op 2) arriving within `limit`, until one per
    /// xid of `want` was seen (then 300 ms more for stragglers).
    fn replies(&self, limit: Duration, want: &[u32]) -> Res<Vec<Vec<u8>>> {
        let end = Instant::now() + limit;
        let mut settle: Option<Instant> = None;
        let mut out: Vec<Vec<u8>> = Vec::new();
        let mut buf = vec![0u8; 4096];
        loop {
            let now = Instant::now();
            if now >= end || settle.is_some_and(|s| now >= s) {
                return Ok(out);
            }
            // SAFETY: buf is valid for its length.
            let n =
                unsafe { libc::recv(self.fd.as_raw_fd(), buf.as_mut_ptr().cast(), buf.len(), 0) };
            if n < 0 {
                let e = io::Error::last_os_error();
                if matches!(
                    e.kind(),
                    io::ErrorKind::WouldBlock | io::ErrorKind::Interrupted
                ) {
                    continue;
                }
                return Err(format!("receiving on the client interface: {e}"));
            }
            if let Some(p) = bootp_payload(&buf[..n as usize]) {
                out.push(p.to_vec());
                let all = want.iter().all(|x| out.iter().any(|p| xid(p) == *x));
                if settle.is_none() && all {
                    settle = Some(Instant::now() + Duration::from_millis(300));
                }
            }
        }
    }
}

/// The UDP payload of an Ethernet/IPv4/UDP frame from port 67 holding a BOOTREPLY.
fn bootp_payload(f: &[u8]) -> Option<&[u8]> {
    if f.get(12..14)? != [0x08, 0x00] {
        return None;
    }
    let ip = f.get(14..)?;
    let ihl = usize::from(ip.first()? & 0x0f) * 4;
    if *ip.get(9)? != 17 {
        return None;
    }
    let udp = ip.get(ihl..)?;
    if udp.get(0..2)? != 67u16.to_be_bytes() {
        return None;
    }
    let d = udp.get(8..)?;
    (d.len() >= 236 && d[0] == 2).then_some(d)
}

fn xid(p: &[u8]) -> u32 {
    u32::from_be_bytes([p[4], p[5], p[6], p[7]])
}

fn yiaddr(p: &[u8]) -> Ipv4Addr {
    Ipv4Addr::new(p[16], p[17], p[18], p[19])
}

/// Option codes after the cookie (empty without it).
fn option_codes(p: &[u8]) -> Vec<u8> {
    let mut v = Vec::new();
    if p.get(236..240) != Some(&COOKIE[..]) {
        return v;
    }
    let mut i = 240;
    while i < p.len() {
        match p[i] {
            0 => i += 1,
            255 => break,
            c => {
                v.push(c);
                i += 2 + usize::from(*p.get(i + 1).unwrap_or(&0));
            }
        }
    }
    v
}

fn config(bed: &Bed, dynamic_bootp: bool) -> Res<PathBuf> {
    let path = bed.path("xdhcpd.toml");
    let text = format!(
        r#"[server]
interface = "{iface}"
server-id = "{SRV_ADDR}"
lease-file = "{leases}"
commit = "ack"

[[subnet]]
cidr = "10.77.0.0/16"
router = ["{SRV_ADDR}"]
dynamic-bootp = {dynamic_bootp}

[[subnet.pool]]
range = "10.77.1.0-10.77.1.255"
"#,
        iface = bed.srv_if(),
        leases = bed.path("leases.db").display(),
    );
    write_file(&path, &text)?;
    Ok(path)
}

fn in_pool(a: Ipv4Addr) -> bool {
    a.octets()[..3] == [10, 77, 1]
}

fn run(dynamic_bootp: bool) -> Res<()> {
    let bed = Bed::new(None)?;
    let cfg = config(&bed, dynamic_bootp)?;
    let daemon = Daemon::start(&bed, &cfg, Io::Xdp)?;
    let raw = Raw::open(&bed)?;
    raw.send(&frame(&CLI_MAC, &bootrequest(XID_COOKIE, &CLI_MAC, true)))?;
    raw.send(&frame(
        &MAC_PLAIN,
        &bootrequest(XID_PLAIN, &MAC_PLAIN, false),
    ))?;
    let wait = if dynamic_bootp { 5 } else { 2 };
    let replies = raw.replies(Duration::from_secs(wait), &[XID_COOKIE, XID_PLAIN])?;
    let fin = daemon.stop()?;
    fin.check_io(Io::Xdp)?;
    let engine = |k: &str| fin.counter("engine", k);
    if !dynamic_bootp {
        if !replies.is_empty() {
            return Err(format!("BOOTP answered without dynamic-bootp: {replies:?}"));
        }
        let (refused, malformed) = (engine("bootp_refused")?, engine("malformed")?);
        if refused != 1 || malformed != 1 || engine("bootp_replies")? != 0 {
            return Err(format!(
                "control run: bootp_refused {refused} (want 1), malformed {malformed} (want 1); \
                 stats {}",
                fin.stats
            ));
        }
        return Ok(());
    }
    let one = |x: u32| -> Res<&Vec<u8>> {
        let r: Vec<&Vec<u8>> = replies.iter().filter(|p| xid(p) == x).collect();
        match r.as_slice() {
            [p] => Ok(*p),
            _ => Err(format!(
                "xid {x:#x}: {} replies, expected one BOOTREPLY; log:\n{}",
                r.len(),
                fin.log
            )),
        }
    };
    let with_cookie = one(XID_COOKIE)?;
    let plain = one(XID_PLAIN)?;
    let (a, b) = (yiaddr(with_cookie), yiaddr(plain));
    if !in_pool(a) || !in_pool(b) || a == b {
        return Err(format!("addresses {a} and {b}: expected two of the pool"));
    }
    let codes = option_codes(with_cookie);
    if codes.contains(&53) || !codes.contains(&1) || with_cookie.len() < 300 {
        return Err(format!(
            "BOOTREPLY with the cookie: options {codes:?} (want 1, never 53), {} bytes",
            with_cookie.len()
        ));
    }
    if plain.len() != 300 || plain[236..].iter().any(|&x| x != 0) {
        return Err(format!(
            "BOOTREPLY without the cookie: {} bytes, vendor area {:?}",
            plain.len(),
            &plain[236..]
        ));
    }
    if engine("bootp_replies")? != 2 {
        return Err(format!("bootp_replies != 2; stats {}", fin.stats));
    }
    let table = read_table(&bed.path("leases.db"), &pools_of(&cfg)?)?;
    for (addr, mac) in [(a, CLI_MAC), (b, MAC_PLAIN)] {
        let l = record(&table, addr)?;
        if !l.is_permanent() || l.expiry != u32::MAX || l.hw() != mac {
            return Err(format!(
                "{addr}: not a permanent BOOTP binding of {mac:02x?}: {l:?}"
            ));
        }
    }
    eprintln!("BOOTREPLYs: {a} (with cookie, options {codes:?}), {b} (plain); both permanent");
    Ok(())
}

#[test]
fn xdp_bootp_request_gets_a_permanent_bootreply() {
    if !require(&[Capability::Root, Capability::Program("ip")]) {
        return;
    }
    if let Err(e) = run(true) {
        panic!("{e}");
    }
}

#[test]
fn xdp_bootp_refused_without_dynamic_bootp() {
    if !require(&[Capability::Root, Capability::Program("ip")]) {
        return;
    }
    if let Err(e) = run(false) {
        panic!("{e}");
    }
}
