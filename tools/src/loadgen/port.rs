//! Packet I/O of one loadgen thread: an AF_XDP socket ([`XskPort`]) or an
//! AF_PACKET socket with recvmmsg/sendmmsg ([`PacketPort`]). Both hand whole
//! Ethernet frames to the engine and take whole frames from it, in batches.

use std::ffi::CString;
use std::io;
use std::os::fd::{AsRawFd, FromRawFd, OwnedFd, RawFd};

use xdhcpd_io::xsk::{Desc, TxPushError, XskSocket};

/// Frames per receive / transmit batch.
pub const BATCH: usize = 64;

/// What happened to one frame offered for transmit.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum TxOutcome {
    /// Built and queued (sent at the next flush).
    Queued,
    /// No frame or ring slot free: flush and try again later.
    NoRoom,
    /// The builder had nothing to send; the frame was given back.
    Nothing,
}

/// Frame I/O for the engine.
pub trait Port {
    /// Calls `on_frame` for up to [`BATCH`] received frames (non-blocking);
    /// returns how many.
    fn recv_batch<F: FnMut(&[u8])>(&mut self, on_frame: F) -> io::Result<usize>;
    /// Offers one free transmit buffer to `build`, which writes a frame and
    /// returns its length (or None to send nothing).
    fn send_with<F: FnOnce(&mut [u8]) -> Option<usize>>(
        &mut self,
        build: F,
    ) -> io::Result<TxOutcome>;
    /// Publishes queued frames to the kernel and reclaims finished ones.
    fn flush(&mut self) -> io::Result<()>;
    /// Short description for the report ("xdp copy queue 0").
    fn describe(&self) -> String;
    /// Receive drops the kernel reports for this socket (ring full / no buffer).
    fn kernel_rx_drops(&self) -> u64;
}

/// One or more AF_XDP sockets (the XDP program steering replies to them is
/// set up by the caller, see [`crate::loadgen::run`]). An XSK only receives
/// what arrives on its own RX queue, and the server's replies may arrive on
/// any queue, so every RX queue of the interface gets a socket and a thread
/// with fewer threads than queues polls several. It transmits on the first.
pub struct XskPort {
    socks: Vec<XskSocket>,
    descs: Vec<Desc>,
    /// Socket to read first next time (fairness between queues).
    next_rx: usize,
}

impl XskPort {
    /// `socks` must not be empty.
    pub fn new(socks: Vec<XskSocket>) -> Self {
        XskPort {
            socks,
            descs: Vec::with_capacity(BATCH),
            next_rx: 0,
        }
    }

    pub fn fds(&self) -> Vec<RawFd> {
        self.socks.iter().map(|s| s.fd()).collect()
    }
}

impl Port for XskPort {
    fn recv_batch<F: FnMut(&[u8])>(&mut self, mut on_frame: F) -> io::Result<usize> {
        let k = self.socks.len();
        let mut total = 0;
        for j in 0..k {
            let sock = &mut self.socks[(self.next_rx + j) % k];
            self.descs.clear();
            let n = sock.recv(&mut self.descs, BATCH - total);
            for d in &self.descs {
                on_frame(sock.packet(d));
            }
            for d in &self.descs {
                sock.recycle(d.addr);
            }
            total += n;
            if total >= BATCH {
                break;
            }
        }
        self.next_rx = (self.next_rx + 1) % k.max(1);
        Ok(total)
    }

    fn send_with<F: FnOnce(&mut [u8]) -> Option<usize>>(
        &mut self,
        build: F,
    ) -> io::Result<TxOutcome> {
        let Some(sock) = self.socks.first_mut() else {
            return Ok(TxOutcome::NoRoom);
        };
        if sock.tx_free() == 0 {
            return Ok(TxOutcome::NoRoom);
        }
        let Some(addr) = sock.alloc_tx_frame() else {
            return Ok(TxOutcome::NoRoom);
        };
        let Some(len) = build(sock.frame_mut(addr)) else {
            sock.recycle(addr);
            return Ok(TxOutcome::Nothing);
        };
        match sock.tx_push(Desc {
            addr,
            len: len as u32,
        }) {
            Ok(()) => Ok(TxOutcome::Queued),
            Err(TxPushError::RingFull) => {
                sock.recycle(addr);
                Ok(TxOutcome::NoRoom)
            }
            Err(e) => {
                sock.recycle(addr);
                Err(io::Error::other(format!(
                    "AF_XDP tx on {} queue {}: {e}",
                    sock.ifname(),
                    sock.queue()
                )))
            }
        }
    }

    fn flush(&mut self) -> io::Result<()> {
        for s in &mut self.socks {
            s.flush().map_err(io::Error::other)?;
        }
        Ok(())
    }

    fn describe(&self) -> String {
        let queues: Vec<String> = self.socks.iter().map(|s| s.queue().to_string()).collect();
        match self.socks.first() {
            Some(s) => format!(
                "af_xdp {:?} {} rx queue(s) {} tx queue {}",
                s.bound_mode(),
                s.ifname(),
                queues.join(","),
                s.queue()
            ),
            None => "af_xdp (no socket)".into(),
        }
    }

    fn kernel_rx_drops(&self) -> u64 {
        self.socks
            .iter()
            .filter_map(|s| s.stats().ok())
            .map(|s| s.rx_dropped + s.rx_ring_full)
            .sum()
    }
}

/// Size of each recvmmsg / sendmmsg buffer.
const PKT_BUF: usize = 2048;

/// An AF_PACKET raw socket on one interface, promiscuous (replies to the
/// simulated clients' MACs are unicast to MACs that are not the
/// interface's), filtered in the kernel to IPv4 UDP to port 67 or 68, and
/// batched with recvmmsg / sendmmsg. Several ports on one interface share a
/// fanout group so each frame reaches exactly one of them.
pub struct PacketPort {
    fd: OwnedFd,
    ifname: String,
    rx_bufs: Vec<u8>,
    tx_bufs: Vec<u8>,
    tx_lens: [usize; BATCH],
    tx_queued: usize,
    /// Frames sendmmsg refused (ENOBUFS etc.) and dropped.
    tx_dropped: u64,
}

// SAFETY: only plain buffers and an owned descriptor.
unsafe impl Send for PacketPort {}

fn os_err(what: &str, ifname: &str) -> io::Error {
    let e = io::Error::last_os_error();
    io::Error::new(e.kind(), format!("AF_PACKET {what} on {ifname}: {e}"))
}

fn setsockopt<T>(fd: RawFd, level: i32, name: i32, val: &T) -> i32 {
    // SAFETY: `val` points to a live T of the size given.
    unsafe {
        libc::setsockopt(
            fd,
            level,
            name,
            (val as *const T).cast(),
            std::mem::size_of::<T>() as libc::socklen_t,
        )
    }
}

/// Index of interface `ifname` in the calling thread's network namespace.
pub fn ifindex(ifname: &str) -> io::Result<u32> {
    let c = CString::new(ifname).map_err(|_| {
        io::Error::new(
            io::ErrorKind::InvalidInput,
            format!("interface name {ifname:?} contains NUL"),
        )
    })?;
    // SAFETY: valid C string.
    let i = unsafe { libc::if_nametoindex(c.as_ptr()) };
    if i == 0 {
        return Err(io::Error::new(
            io::ErrorKind::NotFound,
            format!("no interface {ifname:?} in this network namespace"),
        ));
    }
    Ok(i)
}

/// Classic BPF: accept IPv4, UDP, first fragment, destination port 67 or 68.
/// (ldh [12]; jeq 0x800; ldb [23]; jeq 17; ldh [20]; jset 0x1fff → drop;
/// ldxb 4*([14]&0xf); ldh [x+16]; jeq 67 / jeq 68 → accept.)
fn dhcp_filter() -> [libc::sock_filter; 12] {
    let f = |code: u16, jt: u8, jf: u8, k: u32| libc::sock_filter { code, jt, jf, k };
    [
        f(0x28, 0, 0, 12),          // ldh [12]
        f(0x15, 0, 9, 0x0800),      // jeq IPv4 else drop
        f(0x30, 0, 0, 23),          // ldb [23]
        f(0x15, 0, 7, 17),          // jeq UDP else drop
        f(0x28, 0, 0, 20),          // ldh [20]
        f(0x45, 5, 0, 0x1fff),      // jset fragment offset -> drop
        f(0xb1, 0, 0, 14),          // ldxb 4*([14]&0xf)
        f(0x48, 0, 0, 16),          // ldh [x+16] (UDP dst port)
        f(0x15, 1, 0, 67),          // jeq 67 -> accept
        f(0x15, 0, 1, 68),          // jeq 68 -> accept else drop
        f(0x06, 0, 0, 0x0004_0000), // accept
        f(0x06, 0, 0, 0),           // drop
    ]
}

/// Classic BPF for DHCPv6: IPv6 without extension headers, UDP, destination port 546 or
/// 547. (ldh [12]; jeq 0x86dd; ldb [20]; jeq 17; ldh [56]; jeq 546 / jeq 547 → accept.)
fn dhcp6_filter() -> [libc::sock_filter; 9] {
    let f = |code: u16, jt: u8, jf: u8, k: u32| libc::sock_filter { code, jt, jf, k };
    [
        f(0x28, 0, 0, 12),          // ldh [12]
        f(0x15, 0, 6, 0x86dd),      // jeq IPv6 else drop
        f(0x30, 0, 0, 20),          // ldb [20] (next header)
        f(0x15, 0, 4, 17),          // jeq UDP else drop
        f(0x28, 0, 0, 56),          // ldh [56] (UDP dst port)
        f(0x15, 1, 0, 546),         // jeq 546 -> accept
        f(0x15, 0, 1, 547),         // jeq 547 -> accept else drop
        f(0x06, 0, 0, 0x0004_0000), // accept
        f(0x06, 0, 0, 0),           // drop
    ]
}

impl PacketPort {
    /// Opens the socket on `ifname`; `fanout_group` joins a PACKET_FANOUT
    /// hash group when several ports share the interface; `v6` filters DHCPv6
    /// (UDP 546/547) instead of DHCPv4 (67/68).
    pub fn open(ifname: &str, fanout_group: Option<u16>, v6: bool) -> io::Result<Self> {
        let idx = ifindex(ifname)?;
        let proto = (libc::ETH_P_ALL as u16).to_be();
        // SAFETY: plain socket(2).
        let raw = unsafe {
            libc::socket(
                libc::AF_PACKET,
                libc::SOCK_RAW | libc::SOCK_NONBLOCK | libc::SOCK_CLOEXEC,
                i32::from(proto),
            )
        };
        if raw < 0 {
            return Err(os_err("socket", ifname));
        }
        // SAFETY: fresh descriptor we own.
        let fd = unsafe { OwnedFd::from_raw_fd(raw) };
        let f4 = dhcp_filter();
        let f6 = dhcp6_filter();
        let filter: &[libc::sock_filter] = if v6 { &f6 } else { &f4 };
        let prog = libc::sock_fprog {
            len: filter.len() as u16,
            filter: filter.as_ptr() as *mut libc::sock_filter,
        };
        if setsockopt(raw, libc::SOL_SOCKET, libc::SO_ATTACH_FILTER, &prog) != 0 {
            return Err(os_err("attaching the DHCP filter", ifname));
        }
        // Our own transmitted frames would otherwise be looped back to us.
        let one: i32 = 1;
        if setsockopt(raw, libc::SOL_PACKET, libc::PACKET_IGNORE_OUTGOING, &one) != 0 {
            return Err(os_err("PACKET_IGNORE_OUTGOING", ifname));
        }
        let rcvbuf: i32 = 16 << 20;
        // Best effort: FORCE needs CAP_NET_ADMIN; fall back to the capped size.
        if setsockopt(raw, libc::SOL_SOCKET, libc::SO_RCVBUFFORCE, &rcvbuf) != 0 {
            setsockopt(raw, libc::SOL_SOCKET, libc::SO_RCVBUF, &rcvbuf);
        }
        if setsockopt(raw, libc::SOL_SOCKET, libc::SO_SNDBUFFORCE, &rcvbuf) != 0 {
            setsockopt(raw, libc::SOL_SOCKET, libc::SO_SNDBUF, &rcvbuf);
        }
        // SAFETY: all-zero is a valid sockaddr_ll.
        let mut sll: libc::sockaddr_ll = unsafe { std::mem::zeroed() };
        sll.sll_family = libc::AF_PACKET as u16;
        sll.sll_protocol = proto;
        sll.sll_ifindex = idx as i32;
        // SAFETY: valid sockaddr_ll of the given size.
        let rc = unsafe {
            libc::bind(
                raw,
                (&sll as *const libc::sockaddr_ll).cast(),
                std::mem::size_of::<libc::sockaddr_ll>() as libc::socklen_t,
            )
        };
        if rc != 0 {
            return Err(os_err("bind", ifname));
        }
        let mreq = libc::packet_mreq {
            mr_ifindex: idx as i32,
            mr_type: libc::PACKET_MR_PROMISC as u16,
            mr_alen: 0,
            mr_address: [0; 8],
        };
        if setsockopt(raw, libc::SOL_PACKET, libc::PACKET_ADD_MEMBERSHIP, &mreq) != 0 {
            return Err(os_err("promiscuous mode", ifname));
        }
        if let Some(group) = fanout_group {
            let arg: i32 = i32::from(group) | (libc::PACKET_FANOUT_HASH as i32) << 16;
            if setsockopt(raw, libc::SOL_PACKET, libc::PACKET_FANOUT, &arg) != 0 {
                return Err(os_err("PACKET_FANOUT", ifname));
            }
        }
        Ok(PacketPort {
            fd,
            ifname: ifname.to_owned(),
            rx_bufs: vec![0; PKT_BUF * BATCH],
            tx_bufs: vec![0; PKT_BUF * BATCH],
            tx_lens: [0; BATCH],
            tx_queued: 0,
            tx_dropped: 0,
        })
    }

    pub fn tx_dropped(&self) -> u64 {
        self.tx_dropped
    }

    fn send_queued(&mut self) -> io::Result<()> {
        let mut done = 0;
        while done < self.tx_queued {
            let n = self.tx_queued - done;
            // SAFETY: all-zero is a valid iovec (null base, length 0); filled below.
            let mut iov: [libc::iovec; BATCH] = unsafe { std::mem::zeroed() };
            // SAFETY: all-zero is a valid mmsghdr (null pointers, zero lengths); filled below.
            let mut msgs: [libc::mmsghdr; BATCH] = unsafe { std::mem::zeroed() };
            for i in 0..n {
                let k = done + i;
                iov[i] = libc::iovec {
                    iov_base: self.tx_bufs[k * PKT_BUF..].as_mut_ptr().cast(),
                    iov_len: self.tx_lens[k],
                };
                msgs[i].msg_hdr.msg_iov = &mut iov[i];
                msgs[i].msg_hdr.msg_iovlen = 1;
            }
            // SAFETY: `n` initialised headers pointing into live buffers.
            let rc = unsafe { libc::sendmmsg(self.fd.as_raw_fd(), msgs.as_mut_ptr(), n as u32, 0) };
            if rc < 0 {
                let e = io::Error::last_os_error();
                match e.raw_os_error() {
                    Some(libc::EAGAIN) | Some(libc::ENOBUFS) | Some(libc::EINTR) => {
                        // Drop the rest of this batch: the engine's timeouts account for it.
                        self.tx_dropped += n as u64;
                        break;
                    }
                    _ => {
                        self.tx_queued = 0;
                        return Err(io::Error::new(
                            e.kind(),
                            format!("AF_PACKET sendmmsg on {}: {e}", self.ifname),
                        ));
                    }
                }
            }
            done += rc as usize;
        }
        self.tx_queued = 0;
        Ok(())
    }
}

impl Port for PacketPort {
    fn recv_batch<F: FnMut(&[u8])>(&mut self, mut on_frame: F) -> io::Result<usize> {
        // SAFETY: all-zero is a valid iovec (null base, length 0); filled below.
        let mut iov: [libc::iovec; BATCH] = unsafe { std::mem::zeroed() };
        // SAFETY: all-zero is a valid mmsghdr (null pointers, zero lengths); filled below.
        let mut msgs: [libc::mmsghdr; BATCH] = unsafe { std::mem::zeroed() };
        for i in 0..BATCH {
            iov[i] = libc::iovec {
                iov_base: self.rx_bufs[i * PKT_BUF..].as_mut_ptr().cast(),
                iov_len: PKT_BUF,
            };
            msgs[i].msg_hdr.msg_iov = &mut iov[i];
            msgs[i].msg_hdr.msg_iovlen = 1;
        }
        // SAFETY: BATCH headers pointing into live buffers of PKT_BUF bytes.
        let rc = unsafe {
            libc::recvmmsg(
                self.fd.as_raw_fd(),
                msgs.as_mut_ptr(),
                BATCH as u32,
                libc::MSG_DONTWAIT,
                std::ptr::null_mut(),
            )
        };
        if rc < 0 {
            let e = io::Error::last_os_error();
            return match e.raw_os_error() {
                Some(libc::EAGAIN) | Some(libc::EINTR) => Ok(0),
                _ => Err(io::Error::new(
                    e.kind(),
                    format!("AF_PACKET recvmmsg on {}: {e}", self.ifname),
                )),
            };
        }
        let n = rc as usize;
        for (i, m) in msgs.iter().enumerate().take(n) {
            let len = (m.msg_len as usize).min(PKT_BUF);
            on_frame(&self.rx_bufs[i * PKT_BUF..i * PKT_BUF + len]);
        }
        Ok(n)
    }

    fn send_with<F: FnOnce(&mut [u8]) -> Option<usize>>(
        &mut self,
        build: F,
    ) -> io::Result<TxOutcome> {
        if self.tx_queued == BATCH {
            self.send_queued()?;
        }
        let k = self.tx_queued;
        let buf = &mut self.tx_bufs[k * PKT_BUF..(k + 1) * PKT_BUF];
        match build(buf) {
            Some(len) if len > 0 && len <= PKT_BUF => {
                self.tx_lens[k] = len;
                self.tx_queued += 1;
                Ok(TxOutcome::Queued)
            }
            _ => Ok(TxOutcome::Nothing),
        }
    }

    fn flush(&mut self) -> io::Result<()> {
        if self.tx_queued > 0 {
            self.send_queued()?;
        }
        Ok(())
    }

    fn describe(&self) -> String {
        format!("af_packet {} (recvmmsg/sendmmsg, promiscuous)", self.ifname)
    }

    fn kernel_rx_drops(&self) -> u64 {
        // PACKET_STATISTICS resets on read; the engine reads it once at the end.
        // SAFETY: zeroed tpacket_stats is valid.
        let mut st: libc::tpacket_stats = unsafe { std::mem::zeroed() };
        let mut len = std::mem::size_of::<libc::tpacket_stats>() as libc::socklen_t;
        // SAFETY: buffer and length match.
        let rc = unsafe {
            libc::getsockopt(
                self.fd.as_raw_fd(),
                libc::SOL_PACKET,
                libc::PACKET_STATISTICS,
                (&mut st as *mut libc::tpacket_stats).cast(),
                &mut len,
            )
        };
        if rc != 0 {
            return 0;
        }
        u64::from(st.tp_drops)
    }
}
