//! One frame in, one frame out: the per-packet step of the AF_XDP workers.
//!
//! The request's DHCP payload is copied to a scratch buffer (a few hundred
//! bytes) so the reply can be written in place into the same UMEM frame; the
//! Ethernet/IP/UDP headers are then written in front of it. No allocation.

use std::net::{IpAddr, Ipv4Addr};

use crate::dhcpv4::{Decision, Delivery, Engine, RxMeta};
use crate::frame::{self, FrameLayout, Ipv4UdpAddrs, RxFrame};

pub const DHCP_SERVER_PORT: u16 = 67;
pub const DHCP_CLIENT_PORT: u16 = 68;

/// Counts of frames the responder dropped before the engine saw them.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, serde::Serialize)]
pub struct FrameDrops {
    pub malformed: u64,
    pub ipv6: u64,
    pub not_server_port: u64,
    pub too_big: u64,
}

pub struct Responder {
    engine: Engine,
    mac: [u8; 6],
    /// Address of the interface: selects the subnet of direct clients and is
    /// the source of replies (the server identifier).
    local_addr: Ipv4Addr,
    scratch: Box<[u8; 2048]>,
    pub drops: FrameDrops,
}

impl Responder {
    pub fn new(engine: Engine, mac: [u8; 6], local_addr: Ipv4Addr) -> Self {
        Responder {
            engine,
            mac,
            local_addr,
            scratch: Box::new([0u8; 2048]),
            drops: FrameDrops::default(),
        }
    }

    pub fn engine(&mut self) -> &mut Engine {
        &mut self.engine
    }

    /// Handles the frame in `frame[..len]` (the buffer may be larger: the
    /// reply can be longer than the request). Returns the reply's length.
    pub fn handle_frame(&mut self, now: u32, frame: &mut [u8], len: usize) -> Option<usize> {
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
                // DHCPv6 is steered by XDP but not served yet.
                self.drops.ipv6 += 1;
                return None;
            };
            if rx.dst_port != DHCP_SERVER_PORT {
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
        let off = FrameLayout::new(vlan_len).payload_offset();
        let Decision::Reply { len: dlen, to, .. } =
            self.engine
                .handle(now, &meta, &self.scratch[..plen], &mut frame[off..])
        else {
            return None;
        };
        let server_id = self.engine.shared().server_id;
        let (dst_mac, dst_ip, dst_port) = match to {
            Delivery::Relay(g) => (src_mac, g, DHCP_SERVER_PORT),
            Delivery::Unicast(ip) => (src_mac, ip, DHCP_CLIENT_PORT),
            Delivery::Broadcast => (frame::BROADCAST_MAC, Ipv4Addr::BROADCAST, DHCP_CLIENT_PORT),
            Delivery::ToClient { ip, mac } => (mac, ip, DHCP_CLIENT_PORT),
        };
        let addrs = Ipv4UdpAddrs {
            src_mac: self.mac,
            dst_mac,
            src_ip: server_id,
            dst_ip,
            src_port: DHCP_SERVER_PORT,
            dst_port,
        };
        frame::write_ipv4_udp_headers(frame, &vlan_raw[..vlan_len], &addrs, dlen).ok()
    }
}
