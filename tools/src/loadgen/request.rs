//! DHCPv4 client requests written straight into a frame buffer (a UMEM frame
//! or a sendmmsg buffer): no allocation, no intermediate message struct.
//!
//! The DHCP payload is always padded to 300 bytes (the BOOTP minimum some
//! servers and relays insist on), so every request frame is 342 bytes.

use std::net::Ipv4Addr;

use xdhcpd_common::{DHCPV4_CLIENT_PORT, DHCPV4_SERVER_PORT};
use xdhcpd_dhcpv4::wire::{opt, relay_sub, MessageType, FLAG_BROADCAST, MAGIC_COOKIE};
use xdhcpd_io::frame::{write_ipv4_udp_headers, FrameLayout, Ipv4UdpAddrs, BROADCAST_MAC};

/// Length of every DHCP payload we send.
pub const PAYLOAD_LEN: usize = 300;
/// Offset of the DHCP payload in an untagged Ethernet/IPv4/UDP frame.
pub const PAYLOAD_OFFSET: usize = 42;
/// Length of every request frame.
pub const FRAME_LEN: usize = PAYLOAD_OFFSET + PAYLOAD_LEN;

/// Which client message, with the fields that message carries (RFC 2131 table 5).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Msg {
    /// DHCPDISCOVER (broadcast).
    Discover,
    /// DHCPREQUEST in SELECTING state: requested IP and server id, ciaddr 0.
    Select {
        server_id: Ipv4Addr,
        requested: Ipv4Addr,
    },
    /// DHCPREQUEST in RENEWING state: ciaddr set, no requested IP / server id,
    /// unicast to the server.
    Renew { ciaddr: Ipv4Addr },
    /// DHCPREQUEST in INIT-REBOOT state: requested IP, no server id, ciaddr 0.
    InitReboot { requested: Ipv4Addr },
    /// DHCPRELEASE: ciaddr and server id, unicast to the server.
    Release {
        ciaddr: Ipv4Addr,
        server_id: Ipv4Addr,
    },
}

impl Msg {
    pub fn message_type(&self) -> MessageType {
        match self {
            Msg::Discover => MessageType::Discover,
            Msg::Select { .. } | Msg::Renew { .. } | Msg::InitReboot { .. } => MessageType::Request,
            Msg::Release { .. } => MessageType::Release,
        }
    }

    /// Messages a client sends unicast to the server's address (RFC 2131 4.4.5, 4.4.6).
    pub fn is_unicast(&self) -> bool {
        matches!(self, Msg::Renew { .. } | Msg::Release { .. })
    }

    /// The client's own address, for ciaddr and the IP source of unicast messages.
    pub fn ciaddr(&self) -> Ipv4Addr {
        match self {
            Msg::Renew { ciaddr } | Msg::Release { ciaddr, .. } => *ciaddr,
            _ => Ipv4Addr::UNSPECIFIED,
        }
    }
}

/// What a relay agent adds: giaddr and option 82 with per-client sub-options.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Relay {
    pub giaddr: Ipv4Addr,
    pub circuit_id: [u8; 4],
    pub remote_id: [u8; 6],
    /// RFC 6925 relay-id (sub-option 12), the same for every client; empty = none.
    pub relay_id: RelayId,
}

/// A relay-id of at most [`RelayId::MAX`] bytes, kept inline (requests are built without
/// allocation).
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct RelayId {
    bytes: [u8; RelayId::MAX],
    len: u8,
}

impl RelayId {
    /// Longest relay-id the load generator sends (option 82 stays small: servers keep it
    /// whole only up to a size).
    pub const MAX: usize = 16;

    /// `id`, if it is 1 to [`RelayId::MAX`] bytes.
    pub fn new(id: &[u8]) -> Option<RelayId> {
        if id.is_empty() || id.len() > Self::MAX {
            return None;
        }
        let mut bytes = [0u8; Self::MAX];
        bytes[..id.len()].copy_from_slice(id);
        Some(RelayId {
            bytes,
            len: id.len() as u8,
        })
    }

    /// The relay-id's bytes (empty: none).
    pub fn as_bytes(&self) -> &[u8] {
        &self.bytes[..self.len as usize]
    }
}

/// One request to build.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct RequestSpec {
    pub msg: Msg,
    pub xid: u32,
    pub mac: [u8; 6],
    /// Add option 61 (type 1 + MAC).
    pub client_id: bool,
    /// Set the BROADCAST flag (asks the server to broadcast its reply).
    pub broadcast: bool,
    pub relay: Option<Relay>,
    /// Add option 145 (RFC 6704: FORCERENEW nonce capable, HMAC-MD5) to DISCOVER / REQUEST.
    pub nonce: bool,
}

/// The buffer cannot hold the request.
#[derive(Clone, Copy, Debug, PartialEq, Eq, thiserror::Error)]
#[error("buffer of {have} bytes cannot hold a {need}-byte request")]
pub struct NoRoom {
    pub have: usize,
    pub need: usize,
}

/// Parameter request list: mask, router, DNS, domain, lease time, server id.
const PARAMS: [u8; 6] = [1, 3, 6, 15, 51, 54];

/// The MAC of simulated client `index`: locally administered unicast
/// `02:salt:ii:ii:ii:ii` (distinct for every index below 2^32).
pub fn client_mac(salt: u8, index: u32) -> [u8; 6] {
    let i = index.to_be_bytes();
    [0x02, salt, i[0], i[1], i[2], i[3]]
}

/// Option 82 of client `g`: circuit-id = its index, remote-id = its MAC.
pub fn relay_info(giaddr: Ipv4Addr, g: u32, salt: u8) -> Relay {
    Relay {
        relay_id: RelayId::default(),
        giaddr,
        circuit_id: g.to_be_bytes(),
        remote_id: client_mac(salt, g),
    }
}

/// Writes the DHCP message (exactly [`PAYLOAD_LEN`] bytes) at the start of `buf`.
pub fn write_dhcp(buf: &mut [u8], spec: &RequestSpec) -> Result<usize, NoRoom> {
    let Some(b) = buf.get_mut(..PAYLOAD_LEN) else {
        return Err(NoRoom {
            have: buf.len(),
            need: PAYLOAD_LEN,
        });
    };
    // The buffer is a reused frame: clear what we do not set.
    b.fill(0);
    b[0] = 1; // BOOTREQUEST
    b[1] = 1; // Ethernet
    b[2] = 6;
    b[3] = u8::from(spec.relay.is_some());
    b[4..8].copy_from_slice(&spec.xid.to_be_bytes());
    if spec.broadcast && !spec.msg.is_unicast() {
        b[10..12].copy_from_slice(&FLAG_BROADCAST.to_be_bytes());
    }
    b[12..16].copy_from_slice(&spec.msg.ciaddr().octets());
    if let Some(r) = &spec.relay {
        b[24..28].copy_from_slice(&r.giaddr.octets());
    }
    b[28..34].copy_from_slice(&spec.mac);
    b[236..240].copy_from_slice(&MAGIC_COOKIE);

    // Options: at most 3 + 9 + 6 + 6 + 8 + 3 + 20 + 1 = 56 bytes, below 60.
    let mut w = OptWriter { b, at: 240 };
    w.put(opt::MESSAGE_TYPE, &[spec.msg.message_type() as u8]);
    if spec.client_id {
        let m = spec.mac;
        w.put(opt::CLIENT_ID, &[1, m[0], m[1], m[2], m[3], m[4], m[5]]);
    }
    match spec.msg {
        Msg::Discover | Msg::Renew { .. } => {}
        Msg::Select {
            server_id,
            requested,
        } => {
            w.put(opt::REQUESTED_IP, &requested.octets());
            w.put(opt::SERVER_ID, &server_id.octets());
        }
        Msg::InitReboot { requested } => w.put(opt::REQUESTED_IP, &requested.octets()),
        Msg::Release { server_id, .. } => w.put(opt::SERVER_ID, &server_id.octets()),
    }
    if !matches!(spec.msg, Msg::Release { .. }) {
        w.put(opt::PARAMETER_LIST, &PARAMS);
        if spec.nonce {
            w.put(opt::FORCERENEW_NONCE, &super::forcerenew::NONCE_CAPABLE);
        }
    }
    if let Some(r) = &spec.relay {
        // Option 82 is the last option before END (RFC 3046 2.1).
        let c = r.circuit_id;
        let m = r.remote_id;
        let mut v = [0u8; 14 + 2 + RelayId::MAX];
        v[..14].copy_from_slice(&[
            relay_sub::CIRCUIT_ID,
            4,
            c[0],
            c[1],
            c[2],
            c[3],
            relay_sub::REMOTE_ID,
            6,
            m[0],
            m[1],
            m[2],
            m[3],
            m[4],
            m[5],
        ]);
        let id = r.relay_id.as_bytes();
        let mut n = 14;
        if !id.is_empty() {
            v[14] = relay_sub::RELAY_ID;
            v[15] = id.len() as u8;
            v[16..16 + id.len()].copy_from_slice(id);
            n = 16 + id.len();
        }
        w.put(opt::RELAY_AGENT_INFO, &v[..n]);
    }
    w.b[w.at] = opt::END;
    Ok(PAYLOAD_LEN)
}

struct OptWriter<'a> {
    b: &'a mut [u8],
    at: usize,
}

impl OptWriter<'_> {
    /// Callers stay far below the 60 bytes of option room (see `write_dhcp`).
    fn put(&mut self, code: u8, val: &[u8]) {
        let end = self.at + 2 + val.len();
        if end >= self.b.len() {
            return;
        }
        self.b[self.at] = code;
        self.b[self.at + 1] = val.len() as u8;
        self.b[self.at + 2..end].copy_from_slice(val);
        self.at = end;
    }
}

/// Where the loadgen's packets go at L2/L3.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Peer {
    /// The server's IPv4 address and MAC, once known.
    pub server: Option<(Ipv4Addr, [u8; 6])>,
    /// The loadgen interface's own MAC (source of relayed frames).
    pub iface_mac: [u8; 6],
}

/// Ethernet/IP/UDP addressing of a request:
/// - relayed: from giaddr:67 (interface MAC) to the server:67;
/// - direct renew/release: from ciaddr:68 (client MAC) to the server:67;
/// - direct otherwise: from 0.0.0.0:68 (client MAC) to broadcast:67.
///
/// `None` when the message needs the server's address and it is not known yet.
pub fn addressing(spec: &RequestSpec, peer: &Peer) -> Option<Ipv4UdpAddrs> {
    if let Some(r) = &spec.relay {
        let (ip, mac) = peer.server?;
        return Some(Ipv4UdpAddrs {
            src_mac: peer.iface_mac,
            dst_mac: mac,
            src_ip: r.giaddr,
            dst_ip: ip,
            src_port: DHCPV4_SERVER_PORT,
            dst_port: DHCPV4_SERVER_PORT,
        });
    }
    if spec.msg.is_unicast() {
        let (ip, mac) = peer.server?;
        return Some(Ipv4UdpAddrs {
            src_mac: spec.mac,
            dst_mac: mac,
            src_ip: spec.msg.ciaddr(),
            dst_ip: ip,
            src_port: DHCPV4_CLIENT_PORT,
            dst_port: DHCPV4_SERVER_PORT,
        });
    }
    Some(Ipv4UdpAddrs {
        src_mac: spec.mac,
        dst_mac: BROADCAST_MAC,
        src_ip: Ipv4Addr::UNSPECIFIED,
        dst_ip: Ipv4Addr::BROADCAST,
        src_port: DHCPV4_CLIENT_PORT,
        dst_port: DHCPV4_SERVER_PORT,
    })
}

/// Writes the whole Ethernet frame (DHCP payload, then headers with
/// checksums) into `frame`. Returns its length ([`FRAME_LEN`]).
pub fn write_frame(
    frame: &mut [u8],
    spec: &RequestSpec,
    addrs: &Ipv4UdpAddrs,
) -> Result<usize, NoRoom> {
    debug_assert_eq!(FrameLayout::new(0).payload_offset(), PAYLOAD_OFFSET);
    let have = frame.len();
    let payload = frame.get_mut(PAYLOAD_OFFSET..).ok_or(NoRoom {
        have,
        need: FRAME_LEN,
    })?;
    let n = write_dhcp(payload, spec).map_err(|_| NoRoom {
        have,
        need: FRAME_LEN,
    })?;
    write_ipv4_udp_headers(frame, &[], addrs, n).map_err(|e| NoRoom {
        have: e.have,
        need: e.need,
    })
}
