//! Small libc helpers: interface MAC, ARP resolution, sink sockets.

use std::io;
use std::net::{Ipv4Addr, SocketAddrV4, UdpSocket};
use std::os::fd::AsRawFd;
use std::time::{Duration, Instant};

fn ifreq_name(ifname: &str) -> io::Result<[libc::c_char; libc::IFNAMSIZ]> {
    let b = ifname.as_bytes();
    if b.is_empty() || b.len() >= libc::IFNAMSIZ || b.contains(&0) {
        return Err(io::Error::new(
            io::ErrorKind::InvalidInput,
            format!("bad interface name {ifname:?}"),
        ));
    }
    let mut n = [0 as libc::c_char; libc::IFNAMSIZ];
    for (d, s) in n.iter_mut().zip(b) {
        *d = *s as libc::c_char;
    }
    Ok(n)
}

/// The MAC address of `ifname` in the calling thread's network namespace
/// (SIOCGIFHWADDR, so it is right even where /sys belongs to another namespace).
pub fn iface_mac(ifname: &str) -> io::Result<[u8; 6]> {
    let sock = UdpSocket::bind("0.0.0.0:0")?;
    // SAFETY: a zeroed ifreq is valid.
    let mut req: libc::ifreq = unsafe { std::mem::zeroed() };
    req.ifr_name = ifreq_name(ifname)?;
    // SAFETY: SIOCGIFHWADDR reads ifr_name and writes ifr_hwaddr of `req`.
    let rc = unsafe { libc::ioctl(sock.as_raw_fd(), libc::SIOCGIFHWADDR, &mut req) };
    if rc != 0 {
        let e = io::Error::last_os_error();
        return Err(io::Error::new(
            e.kind(),
            format!("SIOCGIFHWADDR {ifname}: {e}"),
        ));
    }
    // SAFETY: the kernel filled the hwaddr member of the union.
    let sa = unsafe { req.ifr_ifru.ifru_hwaddr };
    let mut mac = [0u8; 6];
    for (d, s) in mac.iter_mut().zip(sa.sa_data.iter()) {
        *d = *s as u8;
    }
    Ok(mac)
}

fn arp_lookup(sock: &UdpSocket, ifname: &str, ip: Ipv4Addr) -> io::Result<Option<[u8; 6]>> {
    // SAFETY: a zeroed arpreq is valid.
    let mut req: libc::arpreq = unsafe { std::mem::zeroed() };
    let sin = libc::sockaddr_in {
        sin_family: libc::AF_INET as u16,
        sin_port: 0,
        sin_addr: libc::in_addr {
            s_addr: u32::from(ip).to_be(),
        },
        sin_zero: [0; 8],
    };
    // SAFETY: sockaddr_in fits in sockaddr (both 16 bytes).
    req.arp_pa = unsafe { std::mem::transmute::<libc::sockaddr_in, libc::sockaddr>(sin) };
    let name = ifreq_name(ifname)?;
    for (d, s) in req.arp_dev.iter_mut().zip(name.iter()) {
        *d = *s;
    }
    // SAFETY: SIOCGARP reads arp_pa/arp_dev and writes arp_ha/arp_flags.
    let rc = unsafe { libc::ioctl(sock.as_raw_fd(), libc::SIOCGARP, &mut req) };
    if rc != 0 {
        let e = io::Error::last_os_error();
        if e.raw_os_error() == Some(libc::ENXIO) {
            return Ok(None);
        }
        return Err(io::Error::new(
            e.kind(),
            format!("SIOCGARP {ip} on {ifname}: {e}"),
        ));
    }
    if req.arp_flags & libc::ATF_COM == 0 {
        return Ok(None);
    }
    let mut mac = [0u8; 6];
    for (d, s) in mac.iter_mut().zip(req.arp_ha.sa_data.iter()) {
        *d = *s as u8;
    }
    Ok(Some(mac))
}

/// The MAC of `ip` on `ifname`: sends a datagram to its discard port so the
/// kernel resolves it, then polls the ARP table until `timeout`.
pub fn resolve_mac(ifname: &str, ip: Ipv4Addr, timeout: Duration) -> io::Result<[u8; 6]> {
    let sock = UdpSocket::bind("0.0.0.0:0")?;
    let start = Instant::now();
    let mut probes = 0;
    loop {
        if let Some(mac) = arp_lookup(&sock, ifname, ip)? {
            return Ok(mac);
        }
        if start.elapsed() >= timeout {
            return Err(io::Error::new(
                io::ErrorKind::TimedOut,
                format!(
                    "no ARP answer from {ip} on {ifname} within {timeout:?}; give --server-mac"
                ),
            ));
        }
        if probes % 10 == 0 {
            // Errors (e.g. ICMP from an earlier probe) do not matter: only the ARP does.
            let _ = sock.send_to(&[0], SocketAddrV4::new(ip, 9));
        }
        probes += 1;
        std::thread::sleep(Duration::from_millis(20));
    }
}

/// A UDP socket bound to a port only so that the kernel does not answer
/// unicast DHCP replies (which the loadgen reads from its own socket) with
/// ICMP port unreachable. Never read; its small buffer just overflows.
pub struct SinkSocket {
    _sock: UdpSocket,
}

impl SinkSocket {
    pub fn bind(port: u16) -> io::Result<Self> {
        let sock = UdpSocket::bind(SocketAddrV4::new(Ipv4Addr::UNSPECIFIED, port))?;
        let small: i32 = 4096;
        // SAFETY: valid option value of the given size.
        unsafe {
            libc::setsockopt(
                sock.as_raw_fd(),
                libc::SOL_SOCKET,
                libc::SO_RCVBUF,
                (&small as *const i32).cast(),
                4,
            );
        }
        Ok(SinkSocket { _sock: sock })
    }
}

/// `struct ethtool_channels` (linux/ethtool.h).
#[repr(C)]
#[derive(Default)]
struct EthtoolChannels {
    cmd: u32,
    max_rx: u32,
    max_tx: u32,
    max_other: u32,
    max_combined: u32,
    rx_count: u32,
    tx_count: u32,
    other_count: u32,
    combined_count: u32,
}

const ETHTOOL_GCHANNELS: u32 = 0x3c;

/// Number of RX queues of `ifname` (ETHTOOL_GCHANNELS: the larger of the rx
/// and combined channel counts). Err if the driver does not say.
pub fn rx_queue_count(ifname: &str) -> io::Result<u32> {
    let sock = UdpSocket::bind("0.0.0.0:0")?;
    let mut ch = EthtoolChannels {
        cmd: ETHTOOL_GCHANNELS,
        ..Default::default()
    };
    // SAFETY: a zeroed ifreq is valid.
    let mut req: libc::ifreq = unsafe { std::mem::zeroed() };
    req.ifr_name = ifreq_name(ifname)?;
    req.ifr_ifru.ifru_data = (&mut ch as *mut EthtoolChannels).cast();
    // SAFETY: SIOCETHTOOL reads the command from and writes the answer to `ch`,
    // which outlives the call.
    let rc = unsafe { libc::ioctl(sock.as_raw_fd(), libc::SIOCETHTOOL, &mut req) };
    if rc != 0 {
        let e = io::Error::last_os_error();
        return Err(io::Error::new(
            e.kind(),
            format!("ETHTOOL_GCHANNELS {ifname}: {e}"),
        ));
    }
    Ok(ch.rx_count.max(ch.combined_count).max(1))
}

/// Parses `aa:bb:cc:dd:ee:ff`.
pub fn parse_mac(s: &str) -> Result<[u8; 6], String> {
    let mut mac = [0u8; 6];
    let parts: Vec<&str> = s.split(':').collect();
    if parts.len() != 6 {
        return Err(format!(
            "MAC address {s:?} must have six colon-separated bytes"
        ));
    }
    for (d, p) in mac.iter_mut().zip(parts) {
        *d = u8::from_str_radix(p, 16)
            .map_err(|_| format!("MAC address {s:?}: {p:?} is not a hex byte"))?;
    }
    Ok(mac)
}
