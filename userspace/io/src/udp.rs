//! Kernel UDP fallback: one socket per interface on 0.0.0.0:67.
//!
//! Used when XDP cannot be attached (or is not wanted). Options:
//! SO_REUSEADDR (several interfaces each bind 0.0.0.0:67), SO_BROADCAST
//! (replies to 255.255.255.255:68), SO_BINDTODEVICE (only this interface's
//! traffic, and broadcasts leave through it), IP_PKTINFO (the header
//! destination, e.g. 255.255.255.255 vs. our unicast address, and the
//! arrival ifindex). Non-blocking; batches go through recvmmsg / sendmmsg.
//!
//! **Unicast to a client without an address (RFC 2131 4.1).** When a
//! client sets no broadcast bit and has no ciaddr, the server should unicast
//! the OFFER/ACK to yiaddr at chaddr. A kernel socket cannot name the
//! link-layer destination, and the client cannot answer ARP for an address it
//! does not have yet, so first install the neighbour entry with
//! [`UdpIo::set_neighbour`] (SIOCSARP, ATF_COM, on this interface), then send
//! to yiaddr:68. The entry is not permanent (no ATF_PERM): it ages out like a
//! learned entry. If that fails, fall back to broadcast. The AF_XDP path does
//! not need this: it writes the Ethernet header itself.

use std::mem::{size_of, zeroed};
use std::net::{Ipv4Addr, SocketAddrV4};
use std::os::fd::{AsRawFd, FromRawFd, OwnedFd, RawFd};

use crate::sys::{self, errno_text};

/// Datagrams are received into buffers of this size; longer ones are
/// counted as truncated and dropped (DHCP over Ethernet fits easily).
pub const RX_BUF: usize = 2048;
/// Most messages per recvmmsg / sendmmsg call.
pub const BATCH: usize = 64;
const CTRL_WORDS: usize = 8; // 64 bytes, u64-aligned: room for one in_pktinfo cmsg

/// A step of the UDP layer that failed.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum UdpOp {
    CreateSocket,
    SetOption(&'static str),
    Bind(u16),
    Receive,
    Send(SocketAddrV4),
    Poll,
    SetNeighbour(Ipv4Addr),
}

impl std::fmt::Display for UdpOp {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            UdpOp::CreateSocket => write!(f, "create UDP socket for"),
            UdpOp::SetOption(o) => write!(f, "set {o} on UDP socket for"),
            UdpOp::Bind(p) => write!(f, "bind UDP 0.0.0.0:{p} on"),
            UdpOp::Receive => write!(f, "receive (recvmmsg) on"),
            UdpOp::Send(to) => write!(f, "send (sendmmsg) to {to} via"),
            UdpOp::Poll => write!(f, "poll UDP socket on"),
            UdpOp::SetNeighbour(ip) => write!(f, "add ARP entry (SIOCSARP) for {ip} on"),
        }
    }
}

impl UdpOp {
    fn hint(&self, errno: i32) -> Option<&'static str> {
        Some(match (self, errno) {
            (UdpOp::Bind(_), libc::EADDRINUSE) => {
                "another server holds the port on this interface without SO_REUSEADDR"
            }
            (UdpOp::Bind(_), libc::EACCES) => "needs CAP_NET_BIND_SERVICE for ports below 1024",
            (UdpOp::SetOption("SO_BINDTODEVICE"), libc::ENODEV) => {
                "no such interface in this network namespace"
            }
            (UdpOp::Send(_), libc::ENETUNREACH) => {
                "no route: is the interface up with an IPv4 address?"
            }
            (UdpOp::Send(_), libc::ENETDOWN) => "interface is down",
            (UdpOp::SetNeighbour(_), libc::ENODEV) | (UdpOp::SetNeighbour(_), libc::ENXIO) => {
                "interface not found"
            }
            (_, libc::EPERM) => "needs CAP_NET_ADMIN / CAP_NET_RAW",
            _ => return None,
        })
    }
}

/// A UDP-layer failure, naming the interface.
#[derive(Debug, thiserror::Error)]
pub enum UdpError {
    #[error("UDP socket for {ifname:?}: {reason}")]
    Config { ifname: String, reason: String },
    #[error("{op} {ifname}: {}", errno_text(*errno, op.hint(*errno)))]
    Os {
        op: UdpOp,
        ifname: String,
        errno: i32,
    },
}

impl UdpError {
    pub fn errno(&self) -> Option<i32> {
        match self {
            UdpError::Os { errno, .. } => Some(*errno),
            UdpError::Config { .. } => None,
        }
    }
}

/// One received datagram.
#[derive(Clone, Debug)]
pub struct UdpRx {
    /// The UDP payload; `payload[..len]` is the datagram.
    pub payload: Vec<u8>,
    pub len: usize,
    pub source: SocketAddrV4,
    /// The IPv4 header's destination (255.255.255.255 for a broadcast).
    pub destination: Ipv4Addr,
    /// The interface it arrived on.
    pub ifindex: u32,
}

/// One datagram to send.
#[derive(Clone, Copy, Debug)]
pub struct UdpTx<'a> {
    pub payload: &'a [u8],
    /// Any address, including 255.255.255.255:68.
    pub dest: SocketAddrV4,
}

/// Counters of what the batch calls dropped.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct UdpCounters {
    /// Received datagrams longer than [`RX_BUF`] (dropped).
    pub rx_truncated: u64,
    /// Datagrams without IP_PKTINFO or with a non-IPv4 source (dropped).
    pub rx_no_meta: u64,
    /// Messages sendmmsg refused individually (skipped).
    pub tx_errors: u64,
    /// Messages not sent because the socket buffer was full.
    pub tx_would_block: u64,
}

/// A UDP socket bound to 0.0.0.0:`port` on one interface, with scratch space
/// for batches (no allocation per call apart from the received payloads).
pub struct UdpIo {
    fd: OwnedFd,
    ifname: String,
    ifindex: u32,
    port: u16,
    bufs: Vec<u8>,
    ctrl: Vec<[u64; CTRL_WORDS]>,
    names: Vec<libc::sockaddr_in>,
    iovs: Vec<libc::iovec>,
    hdrs: Vec<libc::mmsghdr>,
    counters: UdpCounters,
}

// SAFETY: the raw pointers in `iovs`/`hdrs` only ever point into this
// value's own heap buffers, and are rebuilt before every system call.
unsafe impl Send for UdpIo {}

impl UdpIo {
    /// A socket on 0.0.0.0:`port` of `ifname` (the DHCP server's is
    /// `xdhcpd_common::DHCPV4_SERVER_PORT`).
    pub fn open(ifname: &str, port: u16) -> Result<Self, UdpError> {
        let cname = sys::ifname_cstring(ifname).map_err(|reason| UdpError::Config {
            ifname: ifname.to_owned(),
            reason,
        })?;
        let os = |op: UdpOp| {
            move |errno: i32| UdpError::Os {
                op,
                ifname: ifname.to_owned(),
                errno,
            }
        };
        // SAFETY: plain socket(2).
        let raw = unsafe {
            libc::socket(
                libc::AF_INET,
                libc::SOCK_DGRAM | libc::SOCK_NONBLOCK | libc::SOCK_CLOEXEC,
                0,
            )
        };
        if raw < 0 {
            return Err(os(UdpOp::CreateSocket)(sys::last_errno()));
        }
        // SAFETY: fresh descriptor we own.
        let fd = unsafe { OwnedFd::from_raw_fd(raw) };
        let rfd = fd.as_raw_fd();
        let one: libc::c_int = 1;
        for (opt, name, level) in [
            (libc::SO_REUSEADDR, "SO_REUSEADDR", libc::SOL_SOCKET),
            (libc::SO_BROADCAST, "SO_BROADCAST", libc::SOL_SOCKET),
            (libc::IP_PKTINFO, "IP_PKTINFO", libc::IPPROTO_IP),
        ] {
            sys::setsockopt(rfd, level, opt, &one).map_err(os(UdpOp::SetOption(name)))?;
        }
        let name_bytes = cname.as_bytes_with_nul();
        // SAFETY: the buffer is the NUL-terminated name, of the length given.
        let rc = unsafe {
            libc::setsockopt(
                rfd,
                libc::SOL_SOCKET,
                libc::SO_BINDTODEVICE,
                name_bytes.as_ptr().cast(),
                name_bytes.len() as libc::socklen_t,
            )
        };
        if rc != 0 {
            return Err(os(UdpOp::SetOption("SO_BINDTODEVICE"))(sys::last_errno()));
        }
        // Bigger buffers absorb bursts; best effort (capped by net.core.*mem_max).
        let big: libc::c_int = 4 << 20;
        let _ = sys::setsockopt(rfd, libc::SOL_SOCKET, libc::SO_RCVBUF, &big);
        let _ = sys::setsockopt(rfd, libc::SOL_SOCKET, libc::SO_SNDBUF, &big);
        let sin = sockaddr_in(SocketAddrV4::new(Ipv4Addr::UNSPECIFIED, port));
        // SAFETY: a valid sockaddr_in of the size given.
        let rc = unsafe {
            libc::bind(
                rfd,
                (&sin as *const libc::sockaddr_in).cast(),
                size_of::<libc::sockaddr_in>() as libc::socklen_t,
            )
        };
        if rc != 0 {
            return Err(os(UdpOp::Bind(port))(sys::last_errno()));
        }
        let ifindex = sys::ifindex_of(&cname).map_err(os(UdpOp::SetOption("SO_BINDTODEVICE")))?;
        Ok(Self {
            fd,
            ifname: ifname.to_owned(),
            ifindex,
            port,
            bufs: vec![0; RX_BUF * BATCH],
            ctrl: vec![[0; CTRL_WORDS]; BATCH],
            // SAFETY: all-zero is a valid sockaddr_in (plain integers).
            names: vec![unsafe { zeroed() }; BATCH],
            // SAFETY: all-zero is a valid iovec (null base, length 0).
            iovs: vec![unsafe { zeroed() }; BATCH],
            // SAFETY: all-zero is a valid mmsghdr (null pointers, zero lengths).
            hdrs: vec![unsafe { zeroed() }; BATCH],
            counters: UdpCounters::default(),
        })
    }

    pub fn fd(&self) -> RawFd {
        self.fd.as_raw_fd()
    }

    pub fn ifname(&self) -> &str {
        &self.ifname
    }

    pub fn ifindex(&self) -> u32 {
        self.ifindex
    }

    pub fn port(&self) -> u16 {
        self.port
    }

    pub fn counters(&self) -> UdpCounters {
        self.counters
    }

    fn os_err(&self, op: UdpOp, errno: i32) -> UdpError {
        UdpError::Os {
            op,
            ifname: self.ifname.clone(),
            errno,
        }
    }

    /// Receives up to `max` (at most [`BATCH`]) datagrams without blocking,
    /// appending them to `out`. `Ok(0)` when none are waiting. Allocates one
    /// `Vec` per datagram; [`recv_each`](Self::recv_each) does not.
    pub fn recv_batch(&mut self, out: &mut Vec<UdpRx>, max: usize) -> Result<usize, UdpError> {
        self.recv_each(max, |payload, source, destination, ifindex| {
            out.push(UdpRx {
                payload: payload.to_vec(),
                len: payload.len(),
                source,
                destination,
                ifindex,
            })
        })
    }

    /// Receives up to `max` (at most [`BATCH`]) datagrams without blocking
    /// and calls `f(payload, source, destination, ifindex)` for each, with the
    /// payload borrowed from the socket's own buffers. Returns how many.
    pub fn recv_each<F>(&mut self, max: usize, mut f: F) -> Result<usize, UdpError>
    where
        F: FnMut(&[u8], SocketAddrV4, Ipv4Addr, u32),
    {
        let n = max.min(BATCH);
        if n == 0 {
            return Ok(0);
        }
        for i in 0..n {
            self.iovs[i] = libc::iovec {
                // SAFETY: slot `i` of `bufs` is in bounds (n <= BATCH).
                iov_base: unsafe { self.bufs.as_mut_ptr().add(i * RX_BUF) }.cast(),
                iov_len: RX_BUF,
            };
            let h = &mut self.hdrs[i];
            h.msg_hdr.msg_name = (&mut self.names[i] as *mut libc::sockaddr_in).cast();
            h.msg_hdr.msg_namelen = size_of::<libc::sockaddr_in>() as libc::socklen_t;
            h.msg_hdr.msg_iov = &mut self.iovs[i];
            h.msg_hdr.msg_iovlen = 1;
            h.msg_hdr.msg_control = self.ctrl[i].as_mut_ptr().cast();
            h.msg_hdr.msg_controllen = size_of::<[u64; CTRL_WORDS]>() as _;
            h.msg_hdr.msg_flags = 0;
            h.msg_len = 0;
        }
        // SAFETY: `n` headers, each pointing at live buffers of this value.
        let r = unsafe {
            libc::recvmmsg(
                self.fd.as_raw_fd(),
                self.hdrs.as_mut_ptr(),
                n as libc::c_uint,
                libc::MSG_DONTWAIT,
                std::ptr::null_mut(),
            )
        };
        if r < 0 {
            return match sys::last_errno() {
                libc::EAGAIN | libc::EINTR => Ok(0),
                e => Err(self.os_err(UdpOp::Receive, e)),
            };
        }
        let mut taken = 0;
        for i in 0..r as usize {
            let h = &self.hdrs[i];
            if h.msg_hdr.msg_flags & libc::MSG_TRUNC != 0 {
                self.counters.rx_truncated += 1;
                continue;
            }
            let len = (h.msg_len as usize).min(RX_BUF);
            let name = &self.names[i];
            let Some((destination, ifindex)) = pktinfo(&h.msg_hdr) else {
                self.counters.rx_no_meta += 1;
                continue;
            };
            if name.sin_family != libc::AF_INET as libc::sa_family_t {
                self.counters.rx_no_meta += 1;
                continue;
            }
            let source = SocketAddrV4::new(
                Ipv4Addr::from(u32::from_be(name.sin_addr.s_addr)),
                u16::from_be(name.sin_port),
            );
            f(
                &self.bufs[i * RX_BUF..i * RX_BUF + len],
                source,
                destination,
                ifindex,
            );
            taken += 1;
        }
        Ok(taken)
    }

    /// Sends the messages, in order, without blocking. Returns how many were
    /// sent. A message the kernel refuses (e.g. no route) is skipped and
    /// counted; when the socket buffer is full the rest are counted as
    /// `tx_would_block` and not sent (the clients retransmit). Errs only if
    /// nothing could be sent because of an error other than a full buffer.
    pub fn send_batch(&mut self, msgs: &[UdpTx<'_>]) -> Result<usize, UdpError> {
        let mut sent = 0usize;
        let mut pos = 0usize;
        let mut first_err: Option<UdpError> = None;
        while pos < msgs.len() {
            let n = (msgs.len() - pos).min(BATCH);
            for (i, m) in msgs[pos..pos + n].iter().enumerate() {
                self.names[i] = sockaddr_in(m.dest);
                self.iovs[i] = libc::iovec {
                    iov_base: m.payload.as_ptr() as *mut libc::c_void,
                    iov_len: m.payload.len(),
                };
                let h = &mut self.hdrs[i];
                h.msg_hdr.msg_name = (&mut self.names[i] as *mut libc::sockaddr_in).cast();
                h.msg_hdr.msg_namelen = size_of::<libc::sockaddr_in>() as libc::socklen_t;
                h.msg_hdr.msg_iov = &mut self.iovs[i];
                h.msg_hdr.msg_iovlen = 1;
                h.msg_hdr.msg_control = std::ptr::null_mut();
                h.msg_hdr.msg_controllen = 0;
                h.msg_hdr.msg_flags = 0;
                h.msg_len = 0;
            }
            // SAFETY: `n` headers pointing at live buffers; the kernel only
            // reads the payloads.
            let r = unsafe {
                libc::sendmmsg(
                    self.fd.as_raw_fd(),
                    self.hdrs.as_mut_ptr(),
                    n as libc::c_uint,
                    libc::MSG_DONTWAIT,
                )
            };
            if r > 0 {
                sent += r as usize;
                pos += r as usize;
                continue;
            }
            // The message at `pos` failed.
            match sys::last_errno() {
                libc::EAGAIN | libc::ENOBUFS => {
                    self.counters.tx_would_block += (msgs.len() - pos) as u64;
                    break;
                }
                libc::EINTR => continue,
                e => {
                    self.counters.tx_errors += 1;
                    if first_err.is_none() {
                        first_err = Some(self.os_err(UdpOp::Send(msgs[pos].dest), e));
                    }
                    pos += 1;
                }
            }
        }
        match first_err {
            Some(e) if sent == 0 => Err(e),
            Some(e) => {
                tracing::debug!("{e} (other messages of the batch were sent)");
                Ok(sent)
            }
            None => Ok(sent),
        }
    }

    /// Waits up to `timeout_ms` (-1: forever) for a datagram. `Ok(false)`
    /// on timeout or signal.
    pub fn wait_readable(&self, timeout_ms: i32) -> Result<bool, UdpError> {
        sys::poll_readable(self.fd.as_raw_fd(), timeout_ms).map_err(|e| self.os_err(UdpOp::Poll, e))
    }

    /// Installs (or replaces) the ARP entry `ip -> mac` on this interface, so
    /// that a reply can be unicast to a client that has no address yet (see
    /// the module documentation).
    pub fn set_neighbour(&self, ip: Ipv4Addr, mac: [u8; 6]) -> Result<(), UdpError> {
        set_neighbour_on(self.fd.as_raw_fd(), &self.ifname, ip, mac)
            .map_err(|e| self.os_err(UdpOp::SetNeighbour(ip), e))
    }
}

/// As [`UdpIo::set_neighbour`], for callers without a `UdpIo` (in the calling
/// thread's network namespace).
pub fn set_neighbour(ifname: &str, ip: Ipv4Addr, mac: [u8; 6]) -> Result<(), UdpError> {
    let os = |errno| UdpError::Os {
        op: UdpOp::SetNeighbour(ip),
        ifname: ifname.to_owned(),
        errno,
    };
    // SAFETY: plain socket(2); any AF_INET socket serves for SIOCSARP.
    let raw = unsafe { libc::socket(libc::AF_INET, libc::SOCK_DGRAM | libc::SOCK_CLOEXEC, 0) };
    if raw < 0 {
        return Err(os(sys::last_errno()));
    }
    // SAFETY: fresh descriptor we own.
    let fd = unsafe { OwnedFd::from_raw_fd(raw) };
    set_neighbour_on(fd.as_raw_fd(), ifname, ip, mac).map_err(os)
}

fn set_neighbour_on(fd: RawFd, ifname: &str, ip: Ipv4Addr, mac: [u8; 6]) -> Result<(), i32> {
    let cname = sys::ifname_cstring(ifname).map_err(|_| libc::ENODEV)?;
    // SAFETY: all-zero is a valid arpreq.
    let mut req: libc::arpreq = unsafe { zeroed() };
    let sin = sockaddr_in(SocketAddrV4::new(ip, 0));
    // SAFETY: sockaddr_in and sockaddr have the same size on Linux; we copy
    // the former into the latter's storage.
    unsafe {
        std::ptr::copy_nonoverlapping(
            (&sin as *const libc::sockaddr_in).cast::<u8>(),
            (&mut req.arp_pa as *mut libc::sockaddr).cast::<u8>(),
            size_of::<libc::sockaddr>(),
        )
    };
    req.arp_ha.sa_family = libc::ARPHRD_ETHER;
    for (d, s) in req.arp_ha.sa_data.iter_mut().zip(mac) {
        *d = s as libc::c_char;
    }
    req.arp_flags = libc::ATF_COM;
    for (d, s) in req.arp_dev.iter_mut().zip(cname.as_bytes()) {
        *d = *s as libc::c_char;
    }
    // SAFETY: SIOCSARP reads one arpreq.
    let rc = unsafe { libc::ioctl(fd, libc::SIOCSARP, &req as *const libc::arpreq) };
    if rc != 0 {
        return Err(sys::last_errno());
    }
    Ok(())
}

fn sockaddr_in(a: SocketAddrV4) -> libc::sockaddr_in {
    libc::sockaddr_in {
        sin_family: libc::AF_INET as libc::sa_family_t,
        sin_port: a.port().to_be(),
        sin_addr: libc::in_addr {
            s_addr: u32::from(*a.ip()).to_be(),
        },
        sin_zero: [0; 8],
    }
}

/// The IP_PKTINFO header destination and ifindex of a received message.
fn pktinfo(h: &libc::msghdr) -> Option<(Ipv4Addr, u32)> {
    // SAFETY: `h` was filled by recvmmsg; the CMSG macros stay within
    // msg_control / msg_controllen.
    unsafe {
        let mut c = libc::CMSG_FIRSTHDR(h);
        while !c.is_null() {
            if (*c).cmsg_level == libc::IPPROTO_IP
                && (*c).cmsg_type == libc::IP_PKTINFO
                && (*c).cmsg_len as usize
                    >= libc::CMSG_LEN(size_of::<libc::in_pktinfo>() as u32) as usize
            {
                let pi: libc::in_pktinfo = std::ptr::read_unaligned(libc::CMSG_DATA(c).cast());
                return Some((
                    Ipv4Addr::from(u32::from_be(pi.ipi_addr.s_addr)),
                    pi.ipi_ifindex as u32,
                ));
            }
            c = libc::CMSG_NXTHDR(h, c);
        }
    }
    None
}
