//! The AF_XDP driver: one socket per RX queue, whole Ethernet frames.
//!
//! The request's DHCP payload is copied to a scratch buffer (a few hundred
//! bytes) so the reply can be written in place into the same UMEM frame; the
//! Ethernet/IP/UDP headers are then written in front of it. No allocation.

use std::net::{IpAddr, Ipv4Addr, Ipv6Addr};
use std::os::fd::RawFd;
use std::sync::Arc;

use xdhcpd_common::{DHCPV4_SERVER_PORT, DHCPV6_SERVER_PORT};
use xdhcpd_dhcpv6::{Decision6, RxMeta6};

use super::{PacketIo, ReplyHold};
use crate::clock::unix_now;
use crate::server::v6::V6Server;
use crate::server::worker::{bump, WorkerCounters, BATCH};
use xdhcpd_dhcpv4::{Decision, LinkDest, RxMeta};
use xdhcpd_io::frame::{self, FrameLayout, Ipv4UdpAddrs, Ipv6UdpAddrs, RxFrame};
use xdhcpd_io::xsk::{Desc, XskSocket};

/// Counts of frames dropped before the engine saw them.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, serde::Serialize)]
pub struct FrameDrops {
    pub malformed: u64,
    pub ipv6: u64,
    pub not_server_port: u64,
    pub too_big: u64,
}

/// One frame in, one frame out: parses the request frame, hands its payload to
/// the responder and frames the reply in place. Separate from the socket so
/// benchmarks can drive it on plain buffers.
pub struct FrameResponder {
    mac: [u8; 6],
    /// Address of the interface: selects the subnet of direct clients.
    local_addr: Ipv4Addr,
    /// Source address of replies (the server identifier).
    server_id: Ipv4Addr,
    scratch: Box<[u8; 2048]>,
    pub drops: FrameDrops,
    /// The DHCPv6 server, when `[[subnet6]]` is configured.
    v6: Option<Arc<V6Server>>,
    /// DHCPv6 replies written that committed bindings (the driver flushes before they leave).
    pub v6_committed: u64,
    /// How the last reply [`FrameResponder::answer`] made stands to the pending commits.
    last_hold: ReplyHold,
}

impl FrameResponder {
    pub fn new(mac: [u8; 6], local_addr: Ipv4Addr, server_id: Ipv4Addr) -> Self {
        FrameResponder {
            mac,
            local_addr,
            server_id,
            scratch: Box::new([0u8; 2048]),
            drops: FrameDrops::default(),
            v6: None,
            v6_committed: 0,
            last_hold: ReplyHold::Respond,
        }
    }

    /// Serves DHCPv6 frames (UDP 547) with `v6` too.
    pub fn with_v6(mut self, v6: Option<Arc<V6Server>>) -> Self {
        self.v6 = v6;
        self
    }

    /// The DHCPv6 server, if any.
    pub fn v6(&self) -> Option<&Arc<V6Server>> {
        self.v6.as_ref()
    }

    /// How the last reply [`FrameResponder::answer`] returned stands to the pending commits
    /// (ack mode): a DHCPv4 reply is the responder's to judge; a DHCPv6 one that wrote no
    /// binding and reports none from the table (`Decision6::Reply::at_once`) may leave at
    /// once.
    pub fn last_hold(&self) -> ReplyHold {
        self.last_hold
    }

    /// Answers a DHCPv6 frame: the payload is in scratch, the reply is framed in place.
    #[allow(clippy::too_many_arguments)]
    fn answer_v6(
        &mut self,
        frame: &mut [u8],
        src_mac: [u8; 6],
        vlan_raw: &[u8],
        src: Ipv6Addr,
        dst: Ipv6Addr,
        src_port: u16,
        plen: usize,
    ) -> Option<usize> {
        let v6 = self.v6.as_ref()?;
        let meta = RxMeta6 {
            src,
            multicast: dst.is_multicast(),
            ifindex: v6.ifindex,
            src_port,
        };
        let off = frame::ipv6_payload_offset(vlan_raw.len());
        let out = frame.get_mut(off..)?;
        let Decision6::Reply {
            len,
            to,
            port,
            committed,
            at_once,
        } = v6.handle(unix_now(), &meta, &self.scratch[..plen], out)
        else {
            return None;
        };
        let addrs = Ipv6UdpAddrs {
            src_mac: self.mac,
            dst_mac: src_mac,
            src_ip: v6.source_for(&to),
            dst_ip: to,
            src_port: DHCPV6_SERVER_PORT,
            dst_port: port,
        };
        let n = frame::write_ipv6_udp_headers(frame, vlan_raw, &addrs, len).ok()?;
        if committed && v6.ack {
            self.v6_committed += 1;
        }
        self.last_hold = if at_once {
            ReplyHold::AtOnce
        } else {
            ReplyHold::Wait
        };
        Some(n)
    }

    /// Answers the frame in `frame[..len]` (the buffer may be larger: the
    /// reply can be longer than the request). Returns the reply's length.
    #[inline]
    pub fn answer<R>(&mut self, frame: &mut [u8], len: usize, respond: &mut R) -> Option<usize>
    where
        R: FnMut(&RxMeta, &[u8], &mut [u8]) -> Decision,
    {
        let len = len.min(frame.len());
        let (src_mac, vlan_raw, vlan_len, src_ip, dst_ip, plen) = {
            let rx = match RxFrame::parse(&frame[..len]) {
                Ok(rx) => rx,
                Err(_) => {
                    self.drops.malformed += 1;
                    return None;
                }
            };
            let (IpAddr::V4(src), IpAddr::V4(dst)) = (rx.src_ip, rx.dst_ip) else {
                let (IpAddr::V6(s6), IpAddr::V6(d6), Some(_), DHCPV6_SERVER_PORT) =
                    (rx.src_ip, rx.dst_ip, &self.v6, rx.dst_port)
                else {
                    // DHCPv6 without [[subnet6]] (or not to port 547).
                    self.drops.ipv6 += 1;
                    return None;
                };
                let plen = rx.payload.len();
                if plen > self.scratch.len() {
                    self.drops.too_big += 1;
                    return None;
                }
                self.scratch[..plen].copy_from_slice(rx.payload);
                let (mac, vraw, vlen) = (rx.src_mac, rx.vlan_raw, rx.vlan_len as usize);
                let sport = rx.src_port;
                return self.answer_v6(frame, mac, &vraw[..vlen], s6, d6, sport, plen);
            };
            if rx.dst_port != DHCPV4_SERVER_PORT {
                self.drops.not_server_port += 1;
                return None;
            }
            let plen = rx.payload.len();
            if plen > self.scratch.len() {
                self.drops.too_big += 1;
                return None;
            }
            self.scratch[..plen].copy_from_slice(rx.payload);
            (
                rx.src_mac,
                rx.vlan_raw,
                rx.vlan_len as usize,
                src,
                dst,
                plen,
            )
        };
        let meta = RxMeta {
            local_addr: self.local_addr,
            src_ip,
            dst_ip,
        };
        self.last_hold = ReplyHold::Respond;
        let off = FrameLayout::new(vlan_len).payload_offset();
        let Decision::Reply { len: dlen, to, .. } =
            respond(&meta, &self.scratch[..plen], &mut frame[off..])
        else {
            return None;
        };
        let dest = to.destination();
        let dst_mac = match dest.link {
            LinkDest::Sender => src_mac,
            LinkDest::Broadcast => frame::BROADCAST_MAC,
            LinkDest::Client(mac) => mac,
        };
        let addrs = Ipv4UdpAddrs {
            src_mac: self.mac,
            dst_mac,
            src_ip: self.server_id,
            dst_ip: dest.ip,
            src_port: DHCPV4_SERVER_PORT,
            dst_port: dest.port,
        };
        frame::write_ipv4_udp_headers(frame, &vlan_raw[..vlan_len], &addrs, dlen).ok()
    }
}

/// An AF_XDP socket with its frame responder.
pub struct XskDriver {
    sock: XskSocket,
    frames: FrameResponder,
    rx: Vec<Desc>,
    /// The last batch answered DHCPv6 messages that committed bindings (ack mode): the
    /// worker holds its replies until the committer has flushed the v6 table.
    v6_wrote: bool,
}

impl XskDriver {
    pub fn new(sock: XskSocket, frames: FrameResponder) -> Self {
        XskDriver {
            sock,
            frames,
            rx: Vec::with_capacity(BATCH),
            v6_wrote: false,
        }
    }
}

impl PacketIo for XskDriver {
    /// The request's UMEM frame, holding the reply.
    type Reply = Desc;

    const IDLE_SPINS: u32 = 64;

    #[inline]
    fn recv_batch<R>(
        &mut self,
        max: usize,
        replies: &mut Vec<Desc>,
        holds: &mut Vec<ReplyHold>,
        mut respond: R,
    ) -> usize
    where
        R: FnMut(&RxMeta, &[u8], &mut [u8]) -> Decision,
    {
        self.rx.clear();
        let n = self.sock.recv(&mut self.rx, max);
        let committed = self.frames.v6_committed;
        for d in self.rx.iter() {
            let frame = self.sock.frame_mut(d.addr);
            match self.frames.answer(frame, d.len as usize, &mut respond) {
                Some(len) => {
                    replies.push(Desc {
                        addr: d.addr,
                        len: len as u32,
                    });
                    holds.push(self.frames.last_hold());
                }
                None => {
                    self.sock.recycle(d.addr);
                }
            }
        }
        // DHCPv6 in ack mode: the batch takes a commit ticket, which its replies that wrote
        // bindings wait for (the committer logs the v6 records; if that fails they never
        // leave).
        self.v6_wrote |= self.frames.v6_committed != committed;
        n
    }

    fn take_needs_commit(&mut self) -> bool {
        std::mem::take(&mut self.v6_wrote)
    }

    /// Pushes a reply to the TX ring (one flush-and-retry when the ring is
    /// full; else the reply is dropped and counted: the client retransmits).
    #[inline]
    fn send(&mut self, d: Desc, counters: &WorkerCounters) {
        if self.sock.tx_push(d).is_ok() {
            bump(&counters.tx_frames, 1);
            return;
        }
        let _ = self.sock.flush();
        if self.sock.tx_push(d).is_ok() {
            bump(&counters.tx_frames, 1);
        } else {
            bump(&counters.tx_ring_full, 1);
            self.sock.recycle(d.addr);
        }
    }

    fn discard(&mut self, d: Desc) {
        self.sock.recycle(d.addr);
    }

    fn flush(&mut self, _counters: &WorkerCounters) {
        if let Err(e) = self.sock.flush() {
            tracing::warn!("xsk flush: {e}");
        }
    }

    fn fd(&self) -> RawFd {
        self.sock.fd()
    }

    fn wait_readable(&self, timeout_ms: i32) {
        let _ = self.sock.wait_readable(timeout_ms);
    }

    fn frame_drops(&self) -> u64 {
        self.frames.drops.malformed + self.frames.drops.ipv6
    }
}
