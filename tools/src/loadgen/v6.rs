//! DHCPv6 (RFC 8415) for the load generator: client messages written straight into a frame
//! buffer (no allocation), and a server's reply reduced to what the engine matches on and
//! checks. Written from the RFC, independently of the server's own wire code, so the
//! loadgen does not share the server's mistakes.
//!
//! Identity: simulated client `g` uses the DUID-LL `00 03 00 01` + its MAC
//! ([`super::request::client_mac`]); the server echoes it in its replies, which is how a
//! reply finds its client (the 24-bit transaction id only carries the exchange number and
//! the low 16 bits of `g`, see [`wire_xid`]). IAID 1 for its IA_NA and for its IA_PD.
//!
//! Direct clients send from their link-local address (EUI-64 of the MAC) to ff02::1:2;
//! relayed ones are wrapped in a Relay-Forward from the relay's address (the loadgen's
//! interface) to the server, with an interface-id (the client's index, 4 bytes) and a
//! remote-id (enterprise 3561 + the client's MAC, RFC 4649); the Relay-Reply must echo the
//! interface-id.

use std::net::Ipv6Addr;

use xdhcpd_io::frame::{ipv6_payload_offset, write_ipv6_udp_headers, Ipv6UdpAddrs, RxFrame};

use super::reply::{NotAReply, Reply};
use super::request::NoRoom;
use xdhcpd_dhcpv4::wire::MessageType;

pub const CLIENT_PORT: u16 = 546;
pub const SERVER_PORT: u16 = 547;
/// All_DHCP_Relay_Agents_and_Servers.
pub const ALL_SERVERS: Ipv6Addr = Ipv6Addr::new(0xff02, 0, 0, 0, 0, 0, 1, 2);
/// Its Ethernet multicast address (33:33 + the low 32 bits).
pub const ALL_SERVERS_MAC: [u8; 6] = [0x33, 0x33, 0, 1, 0, 2];
/// Enterprise number put in the remote-id option (DSL Forum, as relays commonly use).
pub const REMOTE_ID_ENTERPRISE: u32 = 3561;
/// The IAID of every simulated client's IA_NA and IA_PD.
pub const IAID: u32 = 1;
/// Longest server DUID the engine keeps (RFC 8415 allows 128; servers use 10-18 bytes).
pub const MAX_DUID: usize = 32;

/// Message types.
pub mod msg {
    pub const SOLICIT: u8 = 1;
    pub const ADVERTISE: u8 = 2;
    pub const REQUEST: u8 = 3;
    pub const RENEW: u8 = 5;
    pub const REPLY: u8 = 7;
    pub const RELAY_FORW: u8 = 12;
    pub const RELAY_REPL: u8 = 13;
}

/// Option codes.
pub mod opt {
    pub const CLIENTID: u16 = 1;
    pub const SERVERID: u16 = 2;
    pub const IA_NA: u16 = 3;
    pub const IAADDR: u16 = 5;
    pub const ORO: u16 = 6;
    pub const ELAPSED_TIME: u16 = 8;
    pub const RELAY_MSG: u16 = 9;
    pub const STATUS_CODE: u16 = 13;
    pub const INTERFACE_ID: u16 = 18;
    pub const DNS_SERVERS: u16 = 23;
    pub const DOMAIN_LIST: u16 = 24;
    pub const IA_PD: u16 = 25;
    pub const IAPREFIX: u16 = 26;
    pub const REMOTE_ID: u16 = 37;
}

/// Which IAs the simulated clients ask for, and the relay they go through.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct V6Config {
    pub ia_na: bool,
    pub ia_pd: bool,
    pub relay: Option<Relay6>,
}

impl V6Config {
    /// "na", "pd" or "both".
    pub fn ia_name(&self) -> &'static str {
        match (self.ia_na, self.ia_pd) {
            (true, true) => "both",
            (false, true) => "pd",
            _ => "na",
        }
    }
}

/// Relay mode: the loadgen is a relay agent at `relay_addr` (an address of its interface)
/// that forwards every client message to `server` with `link_addr` naming the link.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Relay6 {
    pub relay_addr: Ipv6Addr,
    pub link_addr: Ipv6Addr,
    pub server: Ipv6Addr,
    pub server_mac: [u8; 6],
}

/// Which client message.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Msg6 {
    Solicit,
    Request,
    Renew,
}

/// One message to build. `addr` / `prefix` go into the IA_NA / IA_PD when set (Request:
/// what was advertised; Renew: what is bound).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Spec6 {
    pub msg: Msg6,
    /// 24-bit transaction id.
    pub xid: u32,
    pub mac: [u8; 6],
    /// Client index (the interface-id of relayed messages).
    pub index: u32,
    pub ia_na: bool,
    pub ia_pd: bool,
    pub addr: Option<Ipv6Addr>,
    pub prefix: Option<(Ipv6Addr, u8)>,
    /// The server's DUID (Request and Renew must carry it).
    pub server_duid: Option<([u8; MAX_DUID], u8)>,
}

/// The 24-bit transaction id of an exchange whose 32-bit engine id is `xid`
/// (exchange number << 24 | client index): exchange number and the low 16 bits of the index.
pub fn wire_xid(xid: u32) -> u32 {
    ((xid >> 24) << 16) | (xid & 0xffff)
}

/// The link-local address of a MAC (modified EUI-64, RFC 4291 appendix A).
pub fn link_local(mac: [u8; 6]) -> Ipv6Addr {
    Ipv6Addr::from([
        0xfe,
        0x80,
        0,
        0,
        0,
        0,
        0,
        0,
        mac[0] ^ 0x02,
        mac[1],
        mac[2],
        0xff,
        0xfe,
        mac[3],
        mac[4],
        mac[5],
    ])
}

/// Folds an address (or prefix) into 32 bits for the duplicate check: the XOR of its four
/// words, one-to-one over any set of addresses that differ in one 32-bit word only (a
/// pool inside one /96, delegated prefixes of up to /64 inside one /32).
pub fn fold(a: Ipv6Addr) -> u32 {
    let o = a.octets();
    let w = |i: usize| u32::from_be_bytes([o[i], o[i + 1], o[i + 2], o[i + 3]]);
    w(0) ^ w(4) ^ w(8) ^ w(12)
}

/// Bounded writer of options into a buffer; `ok` turns false on the first overflow.
struct W<'a> {
    b: &'a mut [u8],
    at: usize,
    ok: bool,
}

impl W<'_> {
    fn bytes(&mut self, v: &[u8]) {
        match self.b.get_mut(self.at..self.at + v.len()) {
            Some(d) => {
                d.copy_from_slice(v);
                self.at += v.len();
            }
            None => self.ok = false,
        }
    }
    fn u16(&mut self, v: u16) {
        self.bytes(&v.to_be_bytes());
    }
    fn u32(&mut self, v: u32) {
        self.bytes(&v.to_be_bytes());
    }
    fn opt(&mut self, code: u16, v: &[u8]) {
        self.u16(code);
        self.u16(v.len() as u16);
        self.bytes(v);
    }
}

/// Writes the client message (not relayed) at the start of `buf`; returns its length.
pub fn write_message(buf: &mut [u8], s: &Spec6) -> Result<usize, NoRoom> {
    let have = buf.len();
    let mut w = W {
        b: buf,
        at: 0,
        ok: true,
    };
    let kind = match s.msg {
        Msg6::Solicit => msg::SOLICIT,
        Msg6::Request => msg::REQUEST,
        Msg6::Renew => msg::RENEW,
    };
    let x = s.xid.to_be_bytes();
    w.bytes(&[kind, x[1], x[2], x[3]]);
    let m = s.mac;
    w.opt(
        opt::CLIENTID,
        &[0, 3, 0, 1, m[0], m[1], m[2], m[3], m[4], m[5]],
    );
    if s.msg != Msg6::Solicit {
        if let Some((d, n)) = &s.server_duid {
            w.opt(opt::SERVERID, &d[..usize::from(*n).min(MAX_DUID)]);
        }
    }
    w.opt(opt::ELAPSED_TIME, &[0, 0]);
    w.opt(opt::ORO, &[0, 23, 0, 24]);
    if s.ia_na {
        let with = s.addr.filter(|_| s.msg != Msg6::Solicit);
        w.u16(opt::IA_NA);
        w.u16(if with.is_some() { 12 + 28 } else { 12 });
        w.u32(IAID);
        w.u32(0);
        w.u32(0);
        if let Some(a) = with {
            w.u16(opt::IAADDR);
            w.u16(24);
            w.bytes(&a.octets());
            w.u32(0);
            w.u32(0);
        }
    }
    if s.ia_pd {
        let with = s.prefix.filter(|_| s.msg != Msg6::Solicit);
        w.u16(opt::IA_PD);
        w.u16(if with.is_some() { 12 + 29 } else { 12 });
        w.u32(IAID);
        w.u32(0);
        w.u32(0);
        if let Some((p, len)) = with {
            w.u16(opt::IAPREFIX);
            w.u16(25);
            w.u32(0);
            w.u32(0);
            w.bytes(&[len]);
            w.bytes(&p.octets());
        }
    }
    if w.ok {
        Ok(w.at)
    } else {
        Err(NoRoom { have, need: w.at })
    }
}

/// Bytes a Relay-Forward adds in front of the client message: header (34), interface-id
/// (4 + 4), remote-id (4 + 4 + 6), relay-message option header (4).
pub const RELAY_OVERHEAD: usize = 34 + 8 + 14 + 4;

/// Writes the whole Ethernet frame of `s` (relayed through `relay` when set; `iface_mac`
/// is the relay's source MAC). Returns its length.
pub fn write_frame(
    frame: &mut [u8],
    s: &Spec6,
    relay: Option<&Relay6>,
    iface_mac: [u8; 6],
) -> Result<usize, NoRoom> {
    let have = frame.len();
    let off = ipv6_payload_offset(0);
    let inner_at = off + if relay.is_some() { RELAY_OVERHEAD } else { 0 };
    let room = frame.get_mut(inner_at..).ok_or(NoRoom {
        have,
        need: inner_at,
    })?;
    let n = write_message(room, s)?;
    let (payload, addrs) = match relay {
        None => (
            n,
            Ipv6UdpAddrs {
                src_mac: s.mac,
                dst_mac: ALL_SERVERS_MAC,
                src_ip: link_local(s.mac),
                dst_ip: ALL_SERVERS,
                src_port: CLIENT_PORT,
                dst_port: SERVER_PORT,
            },
        ),
        Some(r) => {
            let mut w = W {
                b: &mut frame[off..inner_at],
                at: 0,
                ok: true,
            };
            w.bytes(&[msg::RELAY_FORW, 0]);
            w.bytes(&r.link_addr.octets());
            w.bytes(&link_local(s.mac).octets());
            w.opt(opt::INTERFACE_ID, &s.index.to_be_bytes());
            let m = s.mac;
            let e = REMOTE_ID_ENTERPRISE.to_be_bytes();
            w.opt(
                opt::REMOTE_ID,
                &[e[0], e[1], e[2], e[3], m[0], m[1], m[2], m[3], m[4], m[5]],
            );
            w.u16(opt::RELAY_MSG);
            w.u16(n as u16);
            debug_assert!(w.ok && w.at == RELAY_OVERHEAD);
            (
                RELAY_OVERHEAD + n,
                Ipv6UdpAddrs {
                    src_mac: iface_mac,
                    dst_mac: r.server_mac,
                    src_ip: r.relay_addr,
                    dst_ip: r.server,
                    src_port: SERVER_PORT,
                    dst_port: SERVER_PORT,
                },
            )
        }
    };
    write_ipv6_udp_headers(frame, &[], &addrs, payload).map_err(|e| NoRoom {
        have: e.have,
        need: e.need,
    })
}

/// What a DHCPv6 reply said, beyond the fields every reply has.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Reply6 {
    /// The IA_NA's first address with a non-zero valid lifetime, and that lifetime.
    pub addr: Option<(Ipv6Addr, u32)>,
    /// The IA_PD's first prefix with a non-zero valid lifetime: prefix, length, lifetime.
    pub prefix: Option<(Ipv6Addr, u8, u32)>,
    /// The first failure status code (top level, in an IA or an IAADDR/IAPREFIX); 0: none.
    pub status: u16,
    pub server_duid: [u8; MAX_DUID],
    /// 0: no server identifier (or one longer than [`MAX_DUID`]).
    pub server_duid_len: u8,
    /// Relay-Reply: the interface-id it carried (4 bytes expected), or `Some(None)` when it
    /// carried none or one of another length; `None` when not relayed.
    pub interface_id: Option<Option<u32>>,
}

fn opts(mut b: &[u8]) -> impl Iterator<Item = Result<(u16, &[u8]), NotAReply>> {
    std::iter::from_fn(move || {
        if b.is_empty() {
            return None;
        }
        if b.len() < 4 {
            b = &[];
            return Some(Err(NotAReply::Dhcp));
        }
        let code = u16::from_be_bytes([b[0], b[1]]);
        let len = usize::from(u16::from_be_bytes([b[2], b[3]]));
        let Some(v) = b.get(4..4 + len) else {
            b = &[];
            return Some(Err(NotAReply::Dhcp));
        };
        b = &b[4 + len..];
        Some(Ok((code, v)))
    })
}

fn status_of(v: &[u8]) -> u16 {
    if v.len() >= 2 {
        u16::from_be_bytes([v[0], v[1]])
    } else {
        // A status option too short to hold a code is itself a failure.
        1
    }
}

fn u32_at(v: &[u8], i: usize) -> u32 {
    v.get(i..i + 4)
        .map_or(0, |b| u32::from_be_bytes([b[0], b[1], b[2], b[3]]))
}

/// Parses an Ethernet frame into a [`Reply`] (with [`Reply::v6`] set). `kind` is OFFER for
/// an Advertise and ACK for a Reply, NAK for either carrying a failure status; `xid` is the
/// engine's 32-bit exchange id rebuilt from the client's DUID (index) and the wire xid.
pub fn parse_reply(frame: &[u8]) -> Result<Reply, NotAReply> {
    let rx = RxFrame::parse(frame).map_err(|_| NotAReply::Frame)?;
    if !matches!(rx.src_ip, std::net::IpAddr::V6(_)) {
        return Err(NotAReply::Frame);
    }
    let mut m = rx.payload;
    let mut interface_id = None;
    if m.first() == Some(&msg::RELAY_REPL) {
        let body = m.get(34..).ok_or(NotAReply::Dhcp)?;
        let mut inner = None;
        let mut iid = None;
        for o in opts(body) {
            let (code, v) = o?;
            match code {
                opt::RELAY_MSG => inner = Some(v),
                opt::INTERFACE_ID if v.len() == 4 => iid = Some(u32_at(v, 0)),
                _ => {}
            }
        }
        interface_id = Some(iid);
        m = inner.ok_or(NotAReply::Dhcp)?;
    }
    if m.len() < 4 {
        return Err(NotAReply::Dhcp);
    }
    let advertise = match m[0] {
        msg::ADVERTISE => true,
        msg::REPLY => false,
        _ => return Err(NotAReply::NotReply),
    };
    let wire = u32::from_be_bytes([0, m[1], m[2], m[3]]);
    let mut r6 = Reply6 {
        addr: None,
        prefix: None,
        status: 0,
        server_duid: [0; MAX_DUID],
        server_duid_len: 0,
        interface_id,
    };
    let mut mac = None;
    let note = |st: &mut u16, code: u16| {
        if *st == 0 && code != 0 {
            *st = code;
        }
    };
    for o in opts(&m[4..]) {
        let (code, v) = o?;
        match code {
            // DUID-LL, Ethernet: 00 03 00 01 + MAC.
            opt::CLIENTID if v.len() == 10 && v[..4] == [0, 3, 0, 1] => {
                mac = Some([v[4], v[5], v[6], v[7], v[8], v[9]]);
            }
            opt::SERVERID if !v.is_empty() && v.len() <= MAX_DUID => {
                r6.server_duid[..v.len()].copy_from_slice(v);
                r6.server_duid_len = v.len() as u8;
            }
            opt::STATUS_CODE => note(&mut r6.status, status_of(v)),
            opt::IA_NA | opt::IA_PD => {
                let body = v.get(12..).ok_or(NotAReply::Dhcp)?;
                for s in opts(body) {
                    let (sc, sv) = s?;
                    match (code, sc) {
                        (_, opt::STATUS_CODE) => note(&mut r6.status, status_of(sv)),
                        (opt::IA_NA, opt::IAADDR) if sv.len() >= 24 => {
                            let mut a = [0u8; 16];
                            a.copy_from_slice(&sv[..16]);
                            let valid = u32_at(sv, 20);
                            if valid > 0 && r6.addr.is_none() {
                                r6.addr = Some((Ipv6Addr::from(a), valid));
                            }
                            for n in opts(&sv[24..]) {
                                if let Ok((opt::STATUS_CODE, nv)) = n {
                                    note(&mut r6.status, status_of(nv));
                                }
                            }
                        }
                        (opt::IA_PD, opt::IAPREFIX) if sv.len() >= 25 => {
                            let valid = u32_at(sv, 4);
                            let mut p = [0u8; 16];
                            p.copy_from_slice(&sv[9..25]);
                            if valid > 0 && r6.prefix.is_none() {
                                r6.prefix = Some((Ipv6Addr::from(p), sv[8], valid));
                            }
                            for n in opts(&sv[25..]) {
                                if let Ok((opt::STATUS_CODE, nv)) = n {
                                    note(&mut r6.status, status_of(nv));
                                }
                            }
                        }
                        _ => {}
                    }
                }
            }
            _ => {}
        }
    }
    let mac = mac.ok_or(NotAReply::NotReply)?;
    let g = u32::from_be_bytes([mac[2], mac[3], mac[4], mac[5]]);
    if wire & 0xffff != g & 0xffff {
        return Err(NotAReply::NotReply);
    }
    let xid = ((wire >> 16) << 24) | (g & 0x00ff_ffff);
    let kind = if r6.status != 0 {
        MessageType::Nak
    } else if advertise {
        MessageType::Offer
    } else {
        MessageType::Ack
    };
    Ok(Reply {
        xid,
        kind,
        yiaddr: std::net::Ipv4Addr::UNSPECIFIED,
        server_id: std::net::Ipv4Addr::UNSPECIFIED,
        lease_time: r6.addr.map(|a| a.1).or(r6.prefix.map(|p| p.2)),
        src_mac: rx.src_mac,
        chaddr: mac,
        v6: Some(r6),
        key: None,
        fr: None,
    })
}
