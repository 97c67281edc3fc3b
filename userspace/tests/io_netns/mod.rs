//! Test support for the packet I/O tests: a pair of network namespaces
//! joined by a veth, created per test with unique names and always removed
//! (Drop), and per-thread namespace switching.
#![allow(dead_code)]

use std::fs::File;
use std::os::fd::AsRawFd;
use std::process::Command;
use std::sync::atomic::{AtomicU32, Ordering};

pub const SRV_MAC: [u8; 6] = [0x02, 0xdd, 0, 0, 0, 0x01];
pub const CLI_MAC: [u8; 6] = [0x02, 0xdd, 0, 0, 0, 0x02];
pub const SRV_IP: [u8; 4] = [10, 77, 0, 1];
pub const CLI_IP: [u8; 4] = [10, 77, 0, 2];

fn mac_str(m: [u8; 6]) -> String {
    m.iter()
        .map(|b| format!("{b:02x}"))
        .collect::<Vec<_>>()
        .join(":")
}

/// Runs `ip ARGS`, failing with its stderr.
pub fn ip(args: &[&str]) -> Result<String, String> {
    let out = Command::new("ip")
        .args(args)
        .output()
        .map_err(|e| format!("run ip {args:?}: {e}"))?;
    if !out.status.success() {
        return Err(format!(
            "ip {}: {}",
            args.join(" "),
            String::from_utf8_lossy(&out.stderr).trim()
        ));
    }
    Ok(String::from_utf8_lossy(&out.stdout).into_owned())
}

/// Two namespaces `srv` and `cli` joined by veth `srv_if` <-> `cli_if`, both
/// up, with SRV_IP/24 and CLI_IP/24 and fixed MACs. Deleted on drop.
pub struct NetnsPair {
    pub srv: String,
    pub cli: String,
    pub srv_if: String,
    pub cli_if: String,
}

impl NetnsPair {
    pub fn new(tag: &str) -> Result<Self, String> {
        static SEQ: AtomicU32 = AtomicU32::new(0);
        let n = SEQ.fetch_add(1, Ordering::Relaxed);
        let id = format!("{tag}{}x{n}", std::process::id());
        let pair = NetnsPair {
            srv: format!("xdio-{id}-s"),
            cli: format!("xdio-{id}-c"),
            // veth names are limited to 15 bytes: keep them short.
            srv_if: format!("s{id}"),
            cli_if: format!("c{id}"),
        };
        if pair.srv_if.len() > 15 {
            return Err(format!("interface name {} too long", pair.srv_if));
        }
        // The guard exists from here on, so a failure below still cleans up.
        ip(&["netns", "add", &pair.srv])?;
        ip(&["netns", "add", &pair.cli])?;
        ip(&[
            "-n",
            &pair.srv,
            "link",
            "add",
            &pair.srv_if,
            "address",
            &mac_str(SRV_MAC),
            "numrxqueues",
            "2",
            "numtxqueues",
            "2",
            "type",
            "veth",
            "peer",
            "name",
            &pair.cli_if,
            "address",
            &mac_str(CLI_MAC),
            "numrxqueues",
            "2",
            "numtxqueues",
            "2",
            "netns",
            &pair.cli,
        ])?;
        for (ns, ifc, addr) in [
            (&pair.srv, &pair.srv_if, "10.77.0.1/24"),
            (&pair.cli, &pair.cli_if, "10.77.0.2/24"),
        ] {
            ip(&["-n", ns, "addr", "add", addr, "dev", ifc])?;
            ip(&["-n", ns, "link", "set", "lo", "up"])?;
            ip(&["-n", ns, "link", "set", ifc, "up"])?;
        }
        Ok(pair)
    }
}

impl Drop for NetnsPair {
    fn drop(&mut self) {
        // Deleting the namespaces destroys the veth pair with them.
        for ns in [&self.srv, &self.cli] {
            if let Err(e) = ip(&["netns", "del", ns]) {
                eprintln!("cleanup: {e}");
            }
        }
    }
}

/// Switches the calling thread into namespace `name` until dropped.
pub struct InNetns {
    orig: File,
}

impl InNetns {
    pub fn enter(name: &str) -> Result<Self, String> {
        let orig =
            File::open("/proc/thread-self/ns/net").map_err(|e| format!("open own netns: {e}"))?;
        let target = File::open(format!("/var/run/netns/{name}"))
            .map_err(|e| format!("open netns {name}: {e}"))?;
        // SAFETY: setns on an open namespace fd affects only this thread.
        if unsafe { libc::setns(target.as_raw_fd(), libc::CLONE_NEWNET) } != 0 {
            return Err(format!("setns {name}: {}", std::io::Error::last_os_error()));
        }
        Ok(Self { orig })
    }
}

impl Drop for InNetns {
    fn drop(&mut self) {
        // SAFETY: as above.
        unsafe { libc::setns(self.orig.as_raw_fd(), libc::CLONE_NEWNET) };
    }
}

/// Internet checksum (RFC 1071) of `data`, starting from `sum`.
pub fn csum_add(mut sum: u32, data: &[u8]) -> u32 {
    let mut chunks = data.chunks_exact(2);
    for c in &mut chunks {
        sum += u32::from(u16::from_be_bytes([c[0], c[1]]));
    }
    if let [b] = chunks.remainder() {
        sum += u32::from(*b) << 8;
    }
    sum
}

pub fn csum_fold(mut sum: u32) -> u16 {
    while sum > 0xffff {
        sum = (sum & 0xffff) + (sum >> 16);
    }
    !(sum as u16)
}

/// Writes an Ethernet/IPv4/UDP frame with valid checksums into `buf`;
/// returns its length.
#[allow(clippy::too_many_arguments)]
pub fn build_udp_frame(
    buf: &mut [u8],
    dst_mac: [u8; 6],
    src_mac: [u8; 6],
    src_ip: [u8; 4],
    dst_ip: [u8; 4],
    sport: u16,
    dport: u16,
    payload: &[u8],
) -> usize {
    let udp_len = 8 + payload.len();
    let ip_len = 20 + udp_len;
    let total = 14 + ip_len;
    assert!(buf.len() >= total, "frame buffer too small");
    buf[0..6].copy_from_slice(&dst_mac);
    buf[6..12].copy_from_slice(&src_mac);
    buf[12..14].copy_from_slice(&0x0800u16.to_be_bytes());
    let ipb = &mut buf[14..34];
    ipb[0] = 0x45;
    ipb[1] = 0;
    ipb[2..4].copy_from_slice(&(ip_len as u16).to_be_bytes());
    ipb[4..6].copy_from_slice(&0u16.to_be_bytes());
    ipb[6..8].copy_from_slice(&0x4000u16.to_be_bytes());
    ipb[8] = 64;
    ipb[9] = 17;
    ipb[10..12].copy_from_slice(&[0, 0]);
    ipb[12..16].copy_from_slice(&src_ip);
    ipb[16..20].copy_from_slice(&dst_ip);
    let c = csum_fold(csum_add(0, ipb));
    ipb[10..12].copy_from_slice(&c.to_be_bytes());
    let u = &mut buf[34..34 + udp_len];
    u[0..2].copy_from_slice(&sport.to_be_bytes());
    u[2..4].copy_from_slice(&dport.to_be_bytes());
    u[4..6].copy_from_slice(&(udp_len as u16).to_be_bytes());
    u[6..8].copy_from_slice(&[0, 0]);
    u[8..].copy_from_slice(payload);
    let mut sum = csum_add(0, &src_ip);
    sum = csum_add(sum, &dst_ip);
    sum += 17 + udp_len as u32;
    sum = csum_add(sum, u);
    let mut c = csum_fold(sum);
    if c == 0 {
        c = 0xffff;
    }
    u[6..8].copy_from_slice(&c.to_be_bytes());
    total
}

/// A raw AF_PACKET socket on one interface (of the calling thread's
/// namespace), to see exactly which frames arrive.
pub struct PacketCapture {
    fd: std::os::fd::OwnedFd,
}

impl PacketCapture {
    pub fn open(ifname: &str) -> Result<Self, String> {
        use std::os::fd::FromRawFd;
        let proto = (libc::ETH_P_ALL as u16).to_be();
        // SAFETY: plain socket(2).
        let raw = unsafe { libc::socket(libc::AF_PACKET, libc::SOCK_RAW, i32::from(proto)) };
        if raw < 0 {
            return Err(format!(
                "AF_PACKET socket: {}",
                std::io::Error::last_os_error()
            ));
        }
        // SAFETY: fresh descriptor.
        let fd = unsafe { std::os::fd::OwnedFd::from_raw_fd(raw) };
        let cname = std::ffi::CString::new(ifname).map_err(|e| e.to_string())?;
        // SAFETY: valid C string.
        let ifindex = unsafe { libc::if_nametoindex(cname.as_ptr()) };
        if ifindex == 0 {
            return Err(format!("no interface {ifname}"));
        }
        // SAFETY: all-zero sockaddr_ll is valid; then filled in.
        let mut sll: libc::sockaddr_ll = unsafe { std::mem::zeroed() };
        sll.sll_family = libc::AF_PACKET as u16;
        sll.sll_protocol = proto;
        sll.sll_ifindex = ifindex as i32;
        // SAFETY: valid sockaddr_ll of the size given.
        let rc = unsafe {
            libc::bind(
                fd.as_raw_fd(),
                (&sll as *const libc::sockaddr_ll).cast(),
                std::mem::size_of::<libc::sockaddr_ll>() as u32,
            )
        };
        if rc != 0 {
            return Err(format!(
                "bind AF_PACKET: {}",
                std::io::Error::last_os_error()
            ));
        }
        Ok(Self { fd })
    }

    /// One frame, or None after `timeout_ms` without one.
    pub fn recv(&self, buf: &mut [u8], timeout_ms: i32) -> Option<usize> {
        let mut pfd = libc::pollfd {
            fd: self.fd.as_raw_fd(),
            events: libc::POLLIN,
            revents: 0,
        };
        // SAFETY: one valid pollfd.
        if unsafe { libc::poll(&mut pfd, 1, timeout_ms) } <= 0 {
            return None;
        }
        // SAFETY: buffer and length match.
        let n = unsafe {
            libc::recv(
                self.fd.as_raw_fd(),
                buf.as_mut_ptr().cast(),
                buf.len(),
                libc::MSG_DONTWAIT,
            )
        };
        (n > 0).then_some(n as usize)
    }
}

/// (dst MAC, dst IP, dst port) of an untagged Ethernet/IPv4/UDP frame.
pub fn udp_frame_dst(f: &[u8]) -> Option<([u8; 6], [u8; 4], u16)> {
    if f.len() < 42 || f[12..14] != [0x08, 0x00] || f[23] != 17 {
        return None;
    }
    let ihl = usize::from(f[14] & 0x0f) * 4;
    let udp = 14 + ihl;
    if f.len() < udp + 8 {
        return None;
    }
    let mut mac = [0u8; 6];
    mac.copy_from_slice(&f[0..6]);
    let mut ip = [0u8; 4];
    ip.copy_from_slice(&f[30..34]);
    Some((mac, ip, u16::from_be_bytes([f[udp + 2], f[udp + 3]])))
}
