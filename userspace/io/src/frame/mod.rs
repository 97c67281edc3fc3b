//! Ethernet / VLAN / IPv4 / IPv6 / UDP framing for the AF_XDP path.
//!
//! Parsing is a direct fixed-offset walk over the frame ([`RxFrame::parse`]): every length
//! is checked once, and the checksums are one's complement sums over 64-bit words
//! ([`csum`]). It takes and refuses the same frames as etherparse 0.21's
//! `SlicedPacket::from_ethernet` followed by this module's checks (the parser before issue
//! 18), which the tests and the `frame_differential` fuzz target compare it with
//! ([`reference`], built for tests and with the `etherparse-reference` feature); the
//! differences, all in which counter a refused frame lands on, are listed at
//! [`RxFrame::parse`].
//!
//! Building writes the headers in front of a DHCP payload that the engine has already
//! written at [`FrameLayout::payload_offset`], so the reply is assembled in place in a UMEM
//! frame with no copy of the payload.
//!
//! The VLAN tags of a request are echoed unchanged in its reply: the reply
//! goes back to the same L2 segment the request came from.

use std::net::{IpAddr, Ipv4Addr, Ipv6Addr};

mod csum;
#[cfg(any(test, feature = "etherparse-reference"))]
pub mod reference;

use csum::{add, fold, sum, sum_ipv4_header};

pub const ETH_HDR_LEN: usize = 14;
pub const VLAN_TAG_LEN: usize = 4;
pub const IPV4_HDR_LEN: usize = 20;
pub const IPV6_HDR_LEN: usize = 40;
pub const ETHERTYPE_IPV6: u16 = 0x86dd;
pub const UDP_HDR_LEN: usize = 8;
pub const ETHERTYPE_IPV4: u16 = 0x0800;
pub const BROADCAST_MAC: [u8; 6] = [0xff; 6];
/// At most two VLAN tags are accepted (802.1ad outer + 802.1Q inner).
pub const MAX_VLAN_TAGS: usize = 2;

/// 802.1Q, 802.1ad and the older double-tagging TPID: the tags etherparse walked.
const ETHERTYPE_VLAN: u16 = 0x8100;
const ETHERTYPE_QINQ: u16 = 0x88a8;
const ETHERTYPE_VLAN_DOUBLE: u16 = 0x9100;
const ETHERTYPE_MACSEC: u16 = 0x88e5;
const IPPROTO_HOPOPTS: u8 = 0;
const IPPROTO_UDP: u8 = 17;
const IPPROTO_ROUTING: u8 = 43;
const IPPROTO_FRAGMENT: u8 = 44;
const IPPROTO_AH: u8 = 51;
const IPPROTO_DSTOPTS: u8 = 60;

/// Why a frame was not taken as a DHCP request.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum FrameDrop {
    /// Headers were truncated or inconsistent.
    Malformed,
    /// Not UDP over IPv4/IPv6 (the XDP program should not have sent it).
    NotUdp,
    /// More than two VLAN tags, or MACsec.
    UnsupportedLink,
    /// A non-first IPv4 fragment or a fragmented datagram.
    Fragment,
    /// An IPv4 header checksum or UDP checksum that does not verify (see [`RxFrame::parse`]).
    BadChecksum,
}

/// What the worker needs to know about a received DHCP frame.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct RxFrame<'a> {
    pub src_mac: [u8; 6],
    pub dst_mac: [u8; 6],
    /// Raw TPID+TCI bytes of the VLAN tags, in wire order (`vlan_len` bytes used).
    pub vlan_raw: [u8; VLAN_TAG_LEN * MAX_VLAN_TAGS],
    pub vlan_len: u8,
    pub src_ip: IpAddr,
    pub dst_ip: IpAddr,
    pub src_port: u16,
    pub dst_port: u16,
    /// UDP payload (the DHCP message).
    pub payload: &'a [u8],
}

#[inline(always)]
fn be16(b: [u8; 2]) -> u16 {
    u16::from_be_bytes(b)
}

/// The UDP datagram (header and payload) at the start of `l4`, cut to the UDP length field.
/// A length of 0 (an IPv6 jumbogram's) takes the whole of `l4`.
#[inline(always)]
fn udp_datagram(l4: &[u8]) -> Result<&[u8], FrameDrop> {
    let Some(h) = l4.first_chunk::<UDP_HDR_LEN>() else {
        return Err(FrameDrop::Malformed);
    };
    let len = usize::from(be16([h[4], h[5]]));
    if len == 0 {
        return Ok(l4);
    }
    if len < UDP_HDR_LEN {
        return Err(FrameDrop::Malformed);
    }
    l4.get(..len).ok_or(FrameDrop::Malformed)
}

/// An IP authentication header (RFC 4302) at the start of `rest`: (next header, its length).
/// Its payload-length field counts 32-bit words minus 2 and may not be 0.
fn auth_header(rest: &[u8]) -> Result<(u8, usize), FrameDrop> {
    let Some(h) = rest.first_chunk::<12>() else {
        return Err(FrameDrop::Malformed);
    };
    if h[1] == 0 {
        return Err(FrameDrop::Malformed);
    }
    let len = (usize::from(h[1]) + 2) * 4;
    if rest.len() < len {
        return Err(FrameDrop::Malformed);
    }
    Ok((h[0], len))
}

/// An IPv6 hop-by-hop, routing or destination-options header at the start of `rest`:
/// (next header, its length).
fn ipv6_raw_ext(rest: &[u8]) -> Result<(u8, usize), FrameDrop> {
    let Some(h) = rest.first_chunk::<8>() else {
        return Err(FrameDrop::Malformed);
    };
    let len = (usize::from(h[1]) + 1) * 8;
    if rest.len() < len {
        return Err(FrameDrop::Malformed);
    }
    Ok((h[0], len))
}

/// IPv4 from `ip` (the Ethernet payload): the addresses and the checked UDP datagram.
#[inline(always)]
fn parse_ipv4(ip: &[u8]) -> Result<(IpAddr, IpAddr, &[u8]), FrameDrop> {
    let Some(h) = ip.first_chunk::<IPV4_HDR_LEN>() else {
        return Err(FrameDrop::Malformed);
    };
    if h[0] >> 4 != 4 {
        return Err(FrameDrop::Malformed);
    }
    let ihl = usize::from(h[0] & 0x0f) * 4;
    let total = usize::from(be16([h[2], h[3]]));
    if ihl < IPV4_HDR_LEN || ip.len() < ihl || total < ihl || ip.len() < total {
        return Err(FrameDrop::Malformed);
    }
    let (header, l4) = ip[..total].split_at(ihl);
    // More-fragments flag or a fragment offset.
    let fragmented = be16([h[6], h[7]]) & 0x3fff != 0;
    let mut proto = h[9];
    let mut l4 = l4;
    if proto == IPPROTO_AH {
        let (next, len) = auth_header(l4)?;
        proto = next;
        l4 = &l4[len..];
    }
    let udp = if !fragmented && proto == IPPROTO_UDP {
        Some(udp_datagram(l4)?)
    } else {
        None
    };
    if fragmented {
        return Err(FrameDrop::Fragment);
    }
    let header_sum = if ihl == IPV4_HDR_LEN {
        sum_ipv4_header(h)
    } else {
        sum(0, header)
    };
    if fold(header_sum) != 0xffff {
        return Err(FrameDrop::BadChecksum);
    }
    let Some(udp) = udp else {
        return Err(FrameDrop::NotUdp);
    };
    // A UDP length of 0 (a jumbogram's) is malformed over IPv4.
    if udp[4] == 0 && udp[5] == 0 {
        return Err(FrameDrop::Malformed);
    }
    let stored = [udp[6], udp[7]];
    if stored != [0, 0] {
        // Pseudo-header: both addresses (one 8-byte word), protocol, UDP length.
        let pseudo = pseudo4(h, udp.len() as u16);
        if !udp_sum_ok(pseudo, udp, stored) {
            return Err(FrameDrop::BadChecksum);
        }
    }
    let src = Ipv4Addr::new(h[12], h[13], h[14], h[15]);
    let dst = Ipv4Addr::new(h[16], h[17], h[18], h[19]);
    Ok((IpAddr::V4(src), IpAddr::V4(dst), udp))
}

/// The IPv4 pseudo-header sum for UDP: both addresses of header `h` (one 8-byte word), the
/// protocol and the UDP length.
#[inline(always)]
fn pseudo4(h: &[u8; IPV4_HDR_LEN], udp_len: u16) -> u64 {
    add(
        u64::from(u16::from_ne_bytes([0, IPPROTO_UDP]))
            + u64::from(u16::from_ne_bytes(udp_len.to_be_bytes())),
        [h[12], h[13], h[14], h[15], h[16], h[17], h[18], h[19]],
    )
}

/// Whether a UDP datagram's checksum verifies over the pseudo-header sum `pseudo`, or the
/// field holds the folded pseudo-header sum alone (what checksum offload leaves, see
/// [`RxFrame::parse`]).
#[inline(always)]
fn udp_sum_ok(pseudo: u64, udp: &[u8], stored: [u8; 2]) -> bool {
    fold(sum(pseudo, udp)) == 0xffff || fold(pseudo) == u16::from_ne_bytes(stored)
}

/// IPv6 from `ip` (the Ethernet payload): the addresses and the checked UDP datagram.
#[inline(always)]
fn parse_ipv6(ip: &[u8]) -> Result<(IpAddr, IpAddr, &[u8]), FrameDrop> {
    let Some(h) = ip.first_chunk::<IPV6_HDR_LEN>() else {
        return Err(FrameDrop::Malformed);
    };
    if h[0] >> 4 != 6 {
        return Err(FrameDrop::Malformed);
    }
    let plen = usize::from(be16([h[4], h[5]]));
    let rest = &ip[IPV6_HDR_LEN..];
    // A payload length of 0 (a jumbogram's) takes the rest of the frame.
    let mut rest = if plen == 0 && !rest.is_empty() {
        rest
    } else {
        rest.get(..plen).ok_or(FrameDrop::Malformed)?
    };
    let mut next = h[6];
    let mut fragmented = false;
    if next != IPPROTO_UDP {
        // Extension headers: hop-by-hop only first; the others in any order and number
        // (each takes at least 8 bytes, so the walk ends).
        if next == IPPROTO_HOPOPTS {
            let (n, len) = ipv6_raw_ext(rest)?;
            rest = &rest[len..];
            next = n;
        }
        loop {
            match next {
                IPPROTO_HOPOPTS => return Err(FrameDrop::Malformed),
                IPPROTO_ROUTING | IPPROTO_DSTOPTS => {
                    let (n, len) = ipv6_raw_ext(rest)?;
                    rest = &rest[len..];
                    next = n;
                }
                IPPROTO_FRAGMENT => {
                    let Some(f) = rest.first_chunk::<8>() else {
                        return Err(FrameDrop::Malformed);
                    };
                    // Fragment offset (13 bits) or more-fragments; the reserved bits do
                    // not count.
                    fragmented |= be16([f[2], f[3]]) & 0xfff9 != 0;
                    next = f[0];
                    rest = &rest[8..];
                }
                IPPROTO_AH => {
                    let (n, len) = auth_header(rest)?;
                    rest = &rest[len..];
                    next = n;
                }
                _ => break,
            }
        }
    }
    let udp = if !fragmented && next == IPPROTO_UDP {
        Some(udp_datagram(rest)?)
    } else {
        None
    };
    if fragmented {
        return Err(FrameDrop::Fragment);
    }
    let Some(udp) = udp else {
        return Err(FrameDrop::NotUdp);
    };
    let stored = [udp[6], udp[7]];
    // 0 is not allowed over IPv6 (RFC 8200 §8.1).
    if stored == [0, 0] || !udp_sum_ok(pseudo6(h, udp.len()), udp, stored) {
        return Err(FrameDrop::BadChecksum);
    }
    let mut s = [0u8; 16];
    s.copy_from_slice(&h[8..24]);
    let mut d = [0u8; 16];
    d.copy_from_slice(&h[24..40]);
    Ok((
        IpAddr::V6(Ipv6Addr::from(s)),
        IpAddr::V6(Ipv6Addr::from(d)),
        udp,
    ))
}

/// The IPv6 pseudo-header sum: the source and destination of header `h` (four 8-byte
/// words), the upper-layer length (32 bits) and the next header (UDP).
#[inline(always)]
fn pseudo6(h: &[u8; IPV6_HDR_LEN], len: usize) -> u64 {
    let len = (len as u32).to_be_bytes();
    let acc = u64::from(u16::from_ne_bytes([len[0], len[1]]))
        + u64::from(u16::from_ne_bytes([len[2], len[3]]))
        + u64::from(u16::from_ne_bytes([0, IPPROTO_UDP]));
    let (words, _) = h[8..].as_chunks::<8>();
    words.iter().fold(acc, |a, w| add(a, *w))
}

impl<'a> RxFrame<'a> {
    /// Parses an Ethernet frame down to the UDP payload.
    ///
    /// Ethernet II, then 0 to 2 VLAN tags (TPID 0x8100, 0x88a8 or 0x9100), then IPv4 (any
    /// IHL, total length honoured, one authentication header allowed) or IPv6 (payload
    /// length honoured, 0 taking the rest of the frame; hop-by-hop first, then routing,
    /// destination options, fragment and authentication headers), then UDP (cut to its
    /// length field; 0 takes the rest, and is malformed over IPv4). Bytes past the IP or
    /// UDP length (Ethernet padding) are ignored. Fragmented datagrams are refused.
    ///
    /// Over IPv4 the header checksum and the UDP checksum are verified: the kernel stack,
    /// which AF_XDP bypasses, would drop a frame failing either. A UDP checksum of 0 means
    /// "none" (RFC 768); one equal to the pseudo-header sum alone is accepted too: that is what
    /// a sender's checksum offload leaves in a frame that crossed a virtual link (veth,
    /// virtio) without being completed, and the kernel would take it (CHECKSUM_PARTIAL). A
    /// UDP length of 0 (an IPv6 jumbogram's) is malformed over IPv4. Over IPv6 the UDP
    /// checksum is mandatory (0 refused), the pseudo-header-only case accepted.
    ///
    /// Where the etherparse-based parser it replaced counted a refused frame as
    /// `Malformed`, this one may give another reason, because it stops earlier; no frame
    /// is taken or refused differently:
    /// - a third VLAN tag, or MACsec, is `UnsupportedLink` whatever follows (etherparse
    ///   parsed on, and a truncated header further in made the frame `Malformed`);
    /// - an IP datagram that is not UDP is `NotUdp` (or `BadChecksum` for a bad IPv4
    ///   header checksum) without its TCP, ICMP, IGMP or ARP header being length-checked.
    pub fn parse(frame: &'a [u8]) -> Result<Self, FrameDrop> {
        let Some((eth, mut rest)) = frame.split_first_chunk::<ETH_HDR_LEN>() else {
            return Err(FrameDrop::Malformed);
        };
        let mut ethertype = be16([eth[12], eth[13]]);
        let mut vlan_raw = [0u8; VLAN_TAG_LEN * MAX_VLAN_TAGS];
        let mut tags = 0usize;
        while matches!(
            ethertype,
            ETHERTYPE_VLAN | ETHERTYPE_QINQ | ETHERTYPE_VLAN_DOUBLE
        ) {
            if tags == MAX_VLAN_TAGS {
                return Err(FrameDrop::UnsupportedLink);
            }
            let Some((tag, r)) = rest.split_first_chunk::<VLAN_TAG_LEN>() else {
                return Err(FrameDrop::Malformed);
            };
            // The tag's TPID is the ethertype field before it: TPID(2)+TCI(2) as on the wire.
            let tpid = ethertype.to_be_bytes();
            let at = tags * VLAN_TAG_LEN;
            vlan_raw[at..at + VLAN_TAG_LEN].copy_from_slice(&[tpid[0], tpid[1], tag[0], tag[1]]);
            ethertype = be16([tag[2], tag[3]]);
            rest = r;
            tags += 1;
        }
        let (src_ip, dst_ip, udp) = match ethertype {
            ETHERTYPE_IPV4 => parse_ipv4(rest)?,
            ETHERTYPE_IPV6 => parse_ipv6(rest)?,
            ETHERTYPE_MACSEC => return Err(FrameDrop::UnsupportedLink),
            _ => return Err(FrameDrop::NotUdp),
        };
        let mut dst_mac = [0u8; 6];
        dst_mac.copy_from_slice(&eth[0..6]);
        let mut src_mac = [0u8; 6];
        src_mac.copy_from_slice(&eth[6..12]);
        Ok(RxFrame {
            src_mac,
            dst_mac,
            vlan_raw,
            vlan_len: (tags * VLAN_TAG_LEN) as u8,
            src_ip,
            dst_ip,
            src_port: be16([udp[0], udp[1]]),
            dst_port: be16([udp[2], udp[3]]),
            payload: &udp[UDP_HDR_LEN..],
        })
    }

    pub fn vlan_tags(&self) -> &[u8] {
        &self.vlan_raw[..self.vlan_len as usize]
    }
}

/// Offset of the UDP payload in an IPv6/UDP frame with `vlan_len` bytes of VLAN tags.
pub fn ipv6_payload_offset(vlan_len: usize) -> usize {
    ETH_HDR_LEN + vlan_len + IPV6_HDR_LEN + UDP_HDR_LEN
}

/// Addresses of an IPv6/UDP reply.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Ipv6UdpAddrs {
    pub src_mac: [u8; 6],
    pub dst_mac: [u8; 6],
    pub src_ip: Ipv6Addr,
    pub dst_ip: Ipv6Addr,
    pub src_port: u16,
    pub dst_port: u16,
}

/// Ethernet header and VLAN tags; returns the offset of the network header.
#[inline(always)]
fn write_link(
    frame: &mut [u8],
    vlan_tags: &[u8],
    dst_mac: [u8; 6],
    src_mac: [u8; 6],
    ethertype: u16,
) -> usize {
    frame[0..6].copy_from_slice(&dst_mac);
    frame[6..12].copy_from_slice(&src_mac);
    frame[12..12 + vlan_tags.len()].copy_from_slice(vlan_tags);
    let et = 12 + vlan_tags.len();
    frame[et..et + 2].copy_from_slice(&ethertype.to_be_bytes());
    et + 2
}

/// The UDP header with its checksum over `pseudo` (the pseudo-header sum), the header and
/// `payload`; a computed 0 is sent as 0xffff (RFC 768).
#[inline(always)]
fn udp_header(pseudo: u64, src_port: u16, dst_port: u16, len: u16, payload: &[u8]) -> [u8; 8] {
    let (s, d, l) = (
        src_port.to_be_bytes(),
        dst_port.to_be_bytes(),
        len.to_be_bytes(),
    );
    let mut h = [s[0], s[1], d[0], d[1], l[0], l[1], 0, 0];
    let mut c = !fold(sum(sum(pseudo, &h), payload));
    if c == 0 {
        c = 0xffff;
    }
    // The sum was taken over native-order words: store it back in native order.
    [h[6], h[7]] = c.to_ne_bytes();
    h
}

/// Writes Ethernet (+ VLAN tags) / IPv6 / UDP headers in front of `payload_len` bytes
/// already at [`ipv6_payload_offset`]. Returns the frame length. The UDP checksum
/// (mandatory over IPv6) is computed.
pub fn write_ipv6_udp_headers(
    frame: &mut [u8],
    vlan_tags: &[u8],
    addrs: &Ipv6UdpAddrs,
    payload_len: usize,
) -> Result<usize, FrameTooSmall> {
    let off = ipv6_payload_offset(vlan_tags.len());
    let total = off + payload_len;
    if frame.len() < total || payload_len > u16::MAX as usize - UDP_HDR_LEN {
        return Err(FrameTooSmall {
            have: frame.len(),
            need: total,
        });
    }
    let ip = write_link(
        frame,
        vlan_tags,
        addrs.dst_mac,
        addrs.src_mac,
        ETHERTYPE_IPV6,
    );
    let udp_len = (UDP_HDR_LEN + payload_len) as u16;
    let mut h = [0u8; IPV6_HDR_LEN];
    h[0] = 0x60;
    h[4..6].copy_from_slice(&udp_len.to_be_bytes());
    h[6] = IPPROTO_UDP;
    h[7] = 64;
    h[8..24].copy_from_slice(&addrs.src_ip.octets());
    h[24..40].copy_from_slice(&addrs.dst_ip.octets());
    let (head, payload) = frame.split_at_mut(off);
    head[ip..ip + IPV6_HDR_LEN].copy_from_slice(&h);
    let udp = udp_header(
        pseudo6(&h, usize::from(udp_len)),
        addrs.src_port,
        addrs.dst_port,
        udp_len,
        &payload[..payload_len],
    );
    head[ip + IPV6_HDR_LEN..off].copy_from_slice(&udp);
    Ok(total)
}

/// Where the parts of an IPv4/UDP reply frame go.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct FrameLayout {
    pub vlan_len: usize,
}

impl FrameLayout {
    pub fn new(vlan_len: usize) -> Self {
        FrameLayout { vlan_len }
    }
    /// Offset of the UDP payload in the frame.
    pub fn payload_offset(&self) -> usize {
        ETH_HDR_LEN + self.vlan_len + IPV4_HDR_LEN + UDP_HDR_LEN
    }
}

/// Addresses of an IPv4/UDP reply.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Ipv4UdpAddrs {
    pub src_mac: [u8; 6],
    pub dst_mac: [u8; 6],
    pub src_ip: Ipv4Addr,
    pub dst_ip: Ipv4Addr,
    pub src_port: u16,
    pub dst_port: u16,
}

/// The frame buffer is too small for headers plus payload.
#[derive(Clone, Copy, Debug, PartialEq, Eq, thiserror::Error)]
#[error("frame of {have} bytes cannot hold {need}")]
pub struct FrameTooSmall {
    pub have: usize,
    pub need: usize,
}

/// Writes Ethernet (+ the given VLAN tags) / IPv4 / UDP headers in front of
/// `payload_len` bytes already at `layout.payload_offset()`. Returns the frame
/// length. Checksums (IPv4 header and UDP) are computed.
///
/// The IPv4 header is 20 bytes: no DSCP, identification 0, don't-fragment, TTL 64.
pub fn write_ipv4_udp_headers(
    frame: &mut [u8],
    vlan_tags: &[u8],
    addrs: &Ipv4UdpAddrs,
    payload_len: usize,
) -> Result<usize, FrameTooSmall> {
    let layout = FrameLayout::new(vlan_tags.len());
    let off = layout.payload_offset();
    let total = off + payload_len;
    if frame.len() < total || payload_len > u16::MAX as usize - IPV4_HDR_LEN - UDP_HDR_LEN {
        return Err(FrameTooSmall {
            have: frame.len(),
            need: total,
        });
    }
    let ip_at = write_link(
        frame,
        vlan_tags,
        addrs.dst_mac,
        addrs.src_mac,
        ETHERTYPE_IPV4,
    );
    let udp_len = (UDP_HDR_LEN + payload_len) as u16;
    let t = (IPV4_HDR_LEN as u16 + udp_len).to_be_bytes();
    let (s, d) = (addrs.src_ip.octets(), addrs.dst_ip.octets());
    // The header and pseudo-header sums from the fields (native-order words), not from
    // the bytes written.
    let w = |a: u8, b: u8| u64::from(u16::from_ne_bytes([a, b]));
    let both = u64::from(u32::from_ne_bytes(s)) + u64::from(u32::from_ne_bytes(d));
    let c =
        (!fold(w(0x45, 0) + w(t[0], t[1]) + w(0x40, 0) + w(64, IPPROTO_UDP) + both)).to_ne_bytes();
    #[rustfmt::skip]
    let ip: [u8; IPV4_HDR_LEN] = [
        0x45, 0, t[0], t[1],
        0, 0, 0x40, 0,
        64, IPPROTO_UDP, c[0], c[1],
        s[0], s[1], s[2], s[3],
        d[0], d[1], d[2], d[3],
    ];
    let ul = udp_len.to_be_bytes();
    let pseudo = w(0, IPPROTO_UDP) + w(ul[0], ul[1]) + both;
    let (head, payload) = frame.split_at_mut(off);
    head[ip_at..ip_at + IPV4_HDR_LEN].copy_from_slice(&ip);
    let udp = udp_header(
        pseudo,
        addrs.src_port,
        addrs.dst_port,
        udp_len,
        &payload[..payload_len],
    );
    head[ip_at + IPV4_HDR_LEN..off].copy_from_slice(&udp);
    Ok(total)
}
#[cfg(test)]
mod tests {
    use super::*;
    use etherparse::{NetSlice, SlicedPacket, TransportSlice};

    fn build(vlans: &[u8]) -> Vec<u8> {
        let mut f = vec![0u8; 600];
        let layout = FrameLayout::new(vlans.len());
        let p = layout.payload_offset();
        for (i, b) in f[p..p + 300].iter_mut().enumerate() {
            *b = i as u8;
        }
        let addrs = Ipv4UdpAddrs {
            src_mac: [2, 0, 0, 0, 0, 1],
            dst_mac: BROADCAST_MAC,
            src_ip: Ipv4Addr::new(10, 0, 0, 1),
            dst_ip: Ipv4Addr::BROADCAST,
            src_port: 67,
            dst_port: 68,
        };
        let n = write_ipv4_udp_headers(&mut f, vlans, &addrs, 300).unwrap();
        f.truncate(n);
        f
    }

    #[test]
    fn round_trip_without_and_with_vlans() {
        for vlans in [
            &[][..],
            &[0x81, 0x00, 0x00, 0x0a][..],
            &[0x88, 0xa8, 0, 5, 0x81, 0, 0, 7][..],
        ] {
            let f = build(vlans);
            let rx = RxFrame::parse(&f).unwrap();
            assert_eq!(rx.vlan_tags(), vlans);
            assert_eq!(rx.src_port, 67);
            assert_eq!(rx.dst_port, 68);
            assert_eq!(rx.payload.len(), 300);
            assert_eq!(rx.payload[7], 7);
            assert_eq!(rx.src_ip, IpAddr::V4(Ipv4Addr::new(10, 0, 0, 1)));
            // Checksums verify: etherparse recomputation over the parsed headers.
            let p = SlicedPacket::from_ethernet(&f).unwrap();
            let Some(NetSlice::Ipv4(v4)) = p.net else {
                panic!("not v4")
            };
            let h = v4.header().to_header();
            assert_eq!(h.header_checksum, h.calc_header_checksum());
            let Some(TransportSlice::Udp(u)) = p.transport else {
                panic!("not udp")
            };
            let uh = u.to_header();
            assert_eq!(uh.checksum, uh.calc_checksum_ipv4(&h, u.payload()).unwrap());
        }
    }

    #[test]
    fn truncated_frames_are_malformed_not_panics() {
        let f = build(&[]);
        for cut in 0..f.len() - 300 {
            assert!(RxFrame::parse(&f[..cut]).is_err(), "cut at {cut}");
        }
    }

    /// Offsets in an untagged frame from `build`.
    const IP: usize = ETH_HDR_LEN;
    const UDP: usize = ETH_HDR_LEN + IPV4_HDR_LEN;

    #[test]
    fn rx_frame_malformed_checksums_are_refused() {
        let good = build(&[]);
        assert!(RxFrame::parse(&good).is_ok());
        let mut ip = good.clone();
        ip[IP + 10] ^= 0x40;
        assert_eq!(RxFrame::parse(&ip).err(), Some(FrameDrop::BadChecksum));
        // A damaged address behind a right-looking checksum field.
        let mut addr = good.clone();
        addr[IP + 12] ^= 1;
        assert_eq!(RxFrame::parse(&addr).err(), Some(FrameDrop::BadChecksum));
        let mut udp = good.clone();
        udp[UDP + 7] ^= 0x01;
        assert_eq!(RxFrame::parse(&udp).err(), Some(FrameDrop::BadChecksum));
        let mut payload = good.clone();
        payload[UDP + 8 + 100] ^= 0x10;
        assert_eq!(RxFrame::parse(&payload).err(), Some(FrameDrop::BadChecksum));
    }

    #[test]
    fn rx_frame_malformed_udp_checksum_absent_or_left_to_offload_is_taken() {
        let good = build(&[]);
        let mut none = good.clone();
        none[UDP + 6..UDP + 8].fill(0);
        assert!(RxFrame::parse(&none).is_ok(), "0 means no checksum");
        // What Linux leaves for checksum offload (CHECKSUM_PARTIAL) when a frame crosses a
        // veth: the folded pseudo-header sum. 10.0.0.1 -> 255.255.255.255, UDP, length 308.
        let pseudo: u32 = 0x0a00 + 0x0001 + 0xffff + 0xffff + 17 + 308;
        let partial = ((pseudo & 0xffff) + (pseudo >> 16)) as u16;
        let mut offload = good.clone();
        offload[UDP + 6..UDP + 8].copy_from_slice(&partial.to_be_bytes());
        assert!(
            RxFrame::parse(&offload).is_ok(),
            "offload's partial checksum"
        );
        offload[UDP + 8] ^= 1;
        assert!(
            RxFrame::parse(&offload).is_ok(),
            "a partial checksum covers no payload: it cannot tell damage"
        );
    }

    #[test]
    fn rx_frame_malformed_udp_length_zero_over_ipv4() {
        let mut f = build(&[]);
        f[UDP + 4..UDP + 6].fill(0);
        f[UDP + 6..UDP + 8].fill(0);
        assert_eq!(RxFrame::parse(&f).err(), Some(FrameDrop::Malformed));
    }

    #[test]
    fn dhcpv6_frame_round_trip_checksum_verified_by_etherparse() {
        for vlans in [&[][..], &[0x81, 0x00, 0x00, 0x0a][..]] {
            let mut f = vec![0u8; 600];
            let off = ipv6_payload_offset(vlans.len());
            for (i, b) in f[off..off + 301].iter_mut().enumerate() {
                *b = i as u8;
            }
            let addrs = Ipv6UdpAddrs {
                src_mac: [2, 0, 0, 0, 0, 1],
                dst_mac: [2, 0, 0, 0, 0, 2],
                src_ip: "fe80::1".parse().unwrap(),
                dst_ip: "fe80::2".parse().unwrap(),
                src_port: 547,
                dst_port: 546,
            };
            let n = write_ipv6_udp_headers(&mut f, vlans, &addrs, 301).unwrap();
            f.truncate(n);
            let rx = RxFrame::parse(&f).unwrap();
            assert_eq!(
                (rx.src_port, rx.dst_port, rx.payload.len()),
                (547, 546, 301)
            );
            assert_eq!(rx.vlan_tags(), vlans);
            let p = SlicedPacket::from_ethernet(&f).unwrap();
            let Some(NetSlice::Ipv6(v6)) = p.net else {
                panic!("not v6")
            };
            let h = v6.header().to_header();
            let Some(TransportSlice::Udp(u)) = p.transport else {
                panic!("not udp")
            };
            let uh = u.to_header();
            assert_eq!(uh.checksum, uh.calc_checksum_ipv6(&h, u.payload()).unwrap());
            // Damage is refused, as is a zero checksum.
            let mut bad = f.clone();
            bad[n - 1] ^= 1;
            assert_eq!(RxFrame::parse(&bad).err(), Some(FrameDrop::BadChecksum));
            let mut zero = f.clone();
            let u = ETH_HDR_LEN + vlans.len() + IPV6_HDR_LEN;
            zero[u + 6..u + 8].fill(0);
            assert_eq!(RxFrame::parse(&zero).err(), Some(FrameDrop::BadChecksum));
        }
    }

    #[test]
    fn too_small_buffer_is_an_error() {
        let mut f = vec![0u8; 100];
        let addrs = Ipv4UdpAddrs {
            src_mac: [0; 6],
            dst_mac: [0; 6],
            src_ip: Ipv4Addr::UNSPECIFIED,
            dst_ip: Ipv4Addr::UNSPECIFIED,
            src_port: 1,
            dst_port: 2,
        };
        assert!(write_ipv4_udp_headers(&mut f, &[], &addrs, 300).is_err());
    }

    /// xorshift32: the differential tests' randomness (repeatable, no dependency).
    struct Rng(u32);
    impl Rng {
        fn next(&mut self) -> u32 {
            self.0 ^= self.0 << 13;
            self.0 ^= self.0 >> 17;
            self.0 ^= self.0 << 5;
            self.0
        }
        fn below(&mut self, n: usize) -> usize {
            self.next() as usize % n.max(1)
        }
    }

    /// A seed frame and where its network header starts.
    struct Seed {
        frame: Vec<u8>,
        ip: usize,
    }

    fn v4_seed(vlans: &[u8], payload_len: usize) -> Seed {
        let mut f = vec![0u8; 2048];
        let off = FrameLayout::new(vlans.len()).payload_offset();
        for (i, b) in f[off..off + payload_len].iter_mut().enumerate() {
            *b = (i * 7) as u8;
        }
        let addrs = Ipv4UdpAddrs {
            src_mac: [2, 0, 0, 0, 0, 9],
            dst_mac: BROADCAST_MAC,
            src_ip: Ipv4Addr::UNSPECIFIED,
            dst_ip: Ipv4Addr::BROADCAST,
            src_port: 68,
            dst_port: 67,
        };
        let n = write_ipv4_udp_headers(&mut f, vlans, &addrs, payload_len).unwrap();
        f.truncate(n);
        Seed {
            frame: f,
            ip: ETH_HDR_LEN + vlans.len(),
        }
    }

    fn v6_seed(vlans: &[u8], payload_len: usize) -> Seed {
        let mut f = vec![0u8; 2048];
        let off = ipv6_payload_offset(vlans.len());
        for (i, b) in f[off..off + payload_len].iter_mut().enumerate() {
            *b = (i * 3) as u8;
        }
        let addrs = Ipv6UdpAddrs {
            src_mac: [2, 0, 0, 0, 0, 9],
            dst_mac: [0x33, 0x33, 0, 1, 0, 2],
            src_ip: "fe80::9".parse().unwrap(),
            dst_ip: "ff02::1:2".parse().unwrap(),
            src_port: 546,
            dst_port: 547,
        };
        let n = write_ipv6_udp_headers(&mut f, vlans, &addrs, payload_len).unwrap();
        f.truncate(n);
        Seed {
            frame: f,
            ip: ETH_HDR_LEN + vlans.len(),
        }
    }

    /// Recomputes the IPv4 header checksum of a frame whose network header is at `ip`
    /// (when it still looks like one), so that mutations get past it.
    fn fix_ipv4_checksum(f: &mut [u8], ip: usize) {
        let Some(&vihl) = f.get(ip) else { return };
        let ihl = usize::from(vihl & 0x0f) * 4;
        if vihl >> 4 != 4 || ihl < 20 || f.len() < ip + ihl {
            return;
        }
        f[ip + 10..ip + 12].fill(0);
        let c = !fold(sum(0, &f[ip..ip + ihl]));
        f[ip + 10..ip + 12].copy_from_slice(&c.to_ne_bytes());
    }

    /// Inserts `ext` between the IPv6 header at `ip` and what follows, chaining next-header
    /// fields: `ext` is a list of (header type, bytes with room for the next-header byte).
    fn v6_with_exts(mut s: Seed, exts: &[(u8, Vec<u8>)]) -> Seed {
        let ip = s.ip;
        let mut next = s.frame[ip + 6];
        let mut block = Vec::new();
        for (kind, bytes) in exts.iter().rev() {
            let mut b = bytes.clone();
            b[0] = next;
            next = *kind;
            b.extend_from_slice(&block);
            block = b;
        }
        s.frame[ip + 6] = next;
        let plen = u16::from_be_bytes([s.frame[ip + 4], s.frame[ip + 5]]) as usize + block.len();
        s.frame[ip + 4..ip + 6].copy_from_slice(&(plen as u16).to_be_bytes());
        let at = ip + IPV6_HDR_LEN;
        s.frame.splice(at..at, block);
        s
    }

    fn seeds() -> Vec<Seed> {
        let tags: [&[u8]; 5] = [
            &[],
            &[0x81, 0x00, 0x00, 0x0a],
            &[0x88, 0xa8, 0, 5, 0x81, 0, 0, 7],
            &[0x91, 0x00, 0, 5, 0x81, 0, 0, 7],
            &[0x81, 0x00, 0x00, 0x0a, 0x88, 0xa8, 0, 5],
        ];
        let mut v = Vec::new();
        for t in tags {
            for len in [0, 1, 7, 8, 9, 300, 301] {
                v.push(v4_seed(t, len));
                v.push(v6_seed(t, len));
            }
        }
        // IPv4 options (IHL 6..15) and an authentication header.
        for words in 1..=10usize {
            let mut s = v4_seed(&[], 30);
            let ip = s.ip;
            let opts = vec![1u8; words * 4];
            s.frame.splice(ip + 20..ip + 20, opts);
            s.frame[ip] = 0x45 + words as u8;
            let total = u16::from_be_bytes([s.frame[ip + 2], s.frame[ip + 3]]) as usize + words * 4;
            s.frame[ip + 2..ip + 4].copy_from_slice(&(total as u16).to_be_bytes());
            fix_ipv4_checksum(&mut s.frame, ip);
            v.push(s);
        }
        {
            let mut s = v4_seed(&[0x81, 0, 0, 1], 40);
            let ip = s.ip;
            let mut ah = vec![17u8, 2, 0, 0, 0, 0, 0, 1, 0, 0, 0, 9, 0, 0, 0, 0];
            ah[1] = 2; // (2 + 2) * 4 = 16 bytes
            s.frame.splice(ip + 20..ip + 20, ah);
            s.frame[ip + 9] = 51;
            let total = u16::from_be_bytes([s.frame[ip + 2], s.frame[ip + 3]]) as usize + 16;
            s.frame[ip + 2..ip + 4].copy_from_slice(&(total as u16).to_be_bytes());
            // The UDP checksum's pseudo-header is unchanged: the datagram still verifies.
            fix_ipv4_checksum(&mut s.frame, ip);
            v.push(s);
        }
        // IPv6 extension headers: hop-by-hop, destination options, routing, an atomic
        // fragment, an authentication header.
        let hbh = (0u8, vec![0u8, 0, 1, 4, 0, 0, 0, 0]);
        let dst = (
            60u8,
            vec![0u8, 1, 1, 12, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0],
        );
        let rt = (43u8, vec![0u8, 0, 0, 0, 0, 0, 0, 0]);
        let frag = (44u8, vec![0u8, 0, 0, 0, 0, 0, 0, 1]);
        let ah = (51u8, vec![0u8, 1, 0, 0, 0, 0, 0, 1, 0, 0, 0, 2]);
        for exts in [
            vec![hbh.clone()],
            vec![
                hbh.clone(),
                dst.clone(),
                rt.clone(),
                frag.clone(),
                ah.clone(),
            ],
            vec![dst.clone(), dst.clone(), frag.clone(), frag.clone()],
            vec![rt.clone(), hbh.clone()],
            vec![ah.clone(), dst],
            vec![frag],
        ] {
            v.push(v6_with_exts(v6_seed(&[0x81, 0, 0, 3], 50), &exts));
        }
        // Three VLAN tags, MACsec, ARP, TCP and ICMP over IPv4 and IPv6, padding.
        let mut three = v4_seed(&[0x88, 0xa8, 0, 5, 0x81, 0, 0, 7], 20);
        three.frame.splice(20..20, [0x81, 0, 0, 9]);
        three.ip += 4;
        v.push(three);
        let mut macsec = v4_seed(&[], 20);
        macsec.frame[12..14].copy_from_slice(&[0x88, 0xe5]);
        v.push(macsec);
        let mut arp = v4_seed(&[], 20);
        arp.frame[12..14].copy_from_slice(&[0x08, 0x06]);
        v.push(arp);
        for proto in [6u8, 1, 2, 58] {
            let mut s = v4_seed(&[], 40);
            s.frame[s.ip + 9] = proto;
            fix_ipv4_checksum(&mut s.frame, s.ip);
            v.push(s);
            let mut s = v6_seed(&[], 40);
            s.frame[s.ip + 6] = proto;
            v.push(s);
        }
        let mut padded = v4_seed(&[], 1);
        padded.frame.extend_from_slice(&[0; 17]);
        v.push(padded);
        let mut padded6 = v6_seed(&[], 1);
        padded6.frame.extend_from_slice(&[0xaa; 17]);
        v.push(padded6);
        v
    }

    /// Values that sit on the parser's boundaries.
    const INTERESTING: [u8; 20] = [
        0, 1, 2, 4, 5, 6, 7, 8, 15, 16, 17, 0x20, 0x2c, 0x33, 0x3c, 0x40, 0x45, 0x60, 0x81, 0xff,
    ];

    fn mutate(rng: &mut Rng, s: &Seed) -> Vec<u8> {
        let mut f = s.frame.clone();
        for _ in 0..1 + rng.below(3) {
            match rng.below(8) {
                // A header byte set to a boundary or random value.
                0..=2 => {
                    if f.is_empty() {
                        continue;
                    }
                    let at = rng.below(f.len().min(s.ip + 80));
                    f[at] = if rng.below(2) == 0 {
                        INTERESTING[rng.below(INTERESTING.len())]
                    } else {
                        rng.next() as u8
                    };
                }
                // A 16-bit length field nudged (IPv4 total, IPv6 payload, UDP length).
                3 => {
                    let at = [s.ip + 2, s.ip + 4, s.ip + 24, s.ip + 44][rng.below(4)];
                    if at + 2 <= f.len() {
                        let v = u16::from_be_bytes([f[at], f[at + 1]]);
                        let d = [0u16, 1, 2, 7, 8, 9, 40, 0xffff][rng.below(8)];
                        let v = if rng.below(2) == 0 {
                            v.wrapping_add(d)
                        } else {
                            v.wrapping_sub(d)
                        };
                        f[at..at + 2].copy_from_slice(&v.to_be_bytes());
                    }
                }
                4 => f.truncate(rng.below(f.len() + 1)),
                5 => {
                    for _ in 0..rng.below(70) {
                        f.push(rng.next() as u8);
                    }
                }
                // No UDP checksum (IPv4 "none"; refused over IPv6).
                6 => {
                    for at in [s.ip + 26, s.ip + 46] {
                        if at + 2 <= f.len() && rng.below(2) == 0 {
                            f[at..at + 2].fill(0);
                        }
                    }
                }
                _ => {
                    let at = rng.below(f.len().max(1));
                    if at < f.len() {
                        f[at] ^= 1 << rng.below(8);
                    }
                }
            }
        }
        if rng.below(2) == 0 {
            fix_ipv4_checksum(&mut f, s.ip);
        }
        f
    }

    #[test]
    fn rx_frame_differential_seeds_agree_with_etherparse() {
        let seeds = seeds();
        let mut ok = 0;
        for s in &seeds {
            if let Err(e) = reference::compare(&s.frame) {
                panic!("seed: {e}");
            }
            ok += usize::from(RxFrame::parse(&s.frame).is_ok());
        }
        // Most seeds are frames to take (the rest exercise refusals).
        assert!(ok > seeds.len() / 2, "{ok} of {} seeds taken", seeds.len());
    }

    #[test]
    fn rx_frame_differential_mutated_frames_agree_with_etherparse() {
        let mut rng = Rng(0x9e37_79b9);
        let mut outcomes = std::collections::HashMap::new();
        for s in seeds() {
            for _ in 0..3000 {
                let f = mutate(&mut rng, &s);
                if let Err(e) = reference::compare(&f) {
                    panic!("mutated frame: {e}");
                }
                *outcomes
                    .entry(format!("{:?}", RxFrame::parse(&f).map(|_| ())))
                    .or_insert(0u32) += 1;
            }
        }
        // Every outcome is reached, so the comparison covered each path.
        for o in [
            "Ok(())",
            "Err(Malformed)",
            "Err(NotUdp)",
            "Err(UnsupportedLink)",
            "Err(Fragment)",
            "Err(BadChecksum)",
        ] {
            assert!(
                outcomes.get(o).copied().unwrap_or(0) > 50,
                "{o}: {outcomes:?}"
            );
        }
    }

    #[test]
    fn rx_frame_differential_random_bytes_and_fuzz_corpus_agree_with_etherparse() {
        let mut rng = Rng(0x1234_5678);
        for _ in 0..200_000 {
            let len = rng.below(120);
            let mut f: Vec<u8> = (0..len).map(|_| rng.next() as u8).collect();
            // Steer some into IPv4/IPv6 so that random bytes reach the IP layer.
            if len >= 14 && rng.below(2) == 0 {
                let et: [u8; 2] = [[0x08, 0x00], [0x86, 0xdd], [0x81, 0x00]][rng.below(3)];
                f[12..14].copy_from_slice(&et);
                if len > 14 {
                    f[14] = [0x45, 0x46, 0x60, 0x4f][rng.below(4)];
                }
            }
            if let Err(e) = reference::compare(&f) {
                panic!("random frame: {e}");
            }
        }
        let dir =
            std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("../../fuzz/corpus/frame_parse");
        let mut seen = 0;
        for entry in std::fs::read_dir(&dir).unwrap() {
            let bytes = std::fs::read(entry.unwrap().path()).unwrap();
            // The fuzz input is (u16, u8, frame bytes): try the frame and the whole file.
            for f in [&bytes[..], bytes.get(3..).unwrap_or(&[])] {
                if let Err(e) = reference::compare(f) {
                    panic!("corpus {}: {e}", dir.display());
                }
                let s = Seed {
                    frame: f.to_vec(),
                    ip: ETH_HDR_LEN,
                };
                for _ in 0..2000 {
                    let m = mutate(&mut rng, &s);
                    if let Err(e) = reference::compare(&m) {
                        panic!("mutated corpus frame: {e}");
                    }
                }
            }
            seen += 1;
        }
        assert!(seen >= 4, "fuzz corpus seeds in {}", dir.display());
    }

    #[test]
    fn write_headers_differential_ipv4_bytes_match_etherparse_writer() {
        let mut rng = Rng(0xdead_beef);
        for vlans in [
            &[][..],
            &[0x81, 0x00, 0x00, 0x0a][..],
            &[0x88, 0xa8, 0, 5, 0x81, 0, 0, 7][..],
        ] {
            for len in (0..64).chain([299, 300, 301, 548, 1400]) {
                let addrs = Ipv4UdpAddrs {
                    src_mac: [2, 0, 0, 0, 0, rng.next() as u8],
                    dst_mac: BROADCAST_MAC,
                    src_ip: Ipv4Addr::from(rng.next()),
                    dst_ip: Ipv4Addr::from(rng.next()),
                    src_port: rng.next() as u16,
                    dst_port: rng.next() as u16,
                };
                let mut a = vec![0u8; 1600];
                let off = FrameLayout::new(vlans.len()).payload_offset();
                for b in &mut a[off..off + len] {
                    *b = rng.next() as u8;
                }
                let mut b = a.clone();
                let na = write_ipv4_udp_headers(&mut a, vlans, &addrs, len).unwrap();
                let nb = reference::write_ipv4_udp_headers(&mut b, vlans, &addrs, len).unwrap();
                assert_eq!(
                    (na, &a[..na]),
                    (nb, &b[..nb]),
                    "{len} bytes, tags {vlans:?}"
                );
                let rx = reference::parse(&a[..na]).unwrap();
                assert_eq!(rx.payload.len(), len);
            }
        }
        // All-zero data makes the computed UDP sum 0, sent as 0xffff.
        let addrs = Ipv4UdpAddrs {
            src_mac: [0; 6],
            dst_mac: [0; 6],
            src_ip: Ipv4Addr::UNSPECIFIED,
            dst_ip: Ipv4Addr::UNSPECIFIED,
            src_port: 0,
            dst_port: 0xffff - 17 - 2 * 8,
        };
        let mut a = vec![0u8; 100];
        let mut b = a.clone();
        let na = write_ipv4_udp_headers(&mut a, &[], &addrs, 0).unwrap();
        reference::write_ipv4_udp_headers(&mut b, &[], &addrs, 0).unwrap();
        assert_eq!(a, b);
        assert_eq!(a[na - 2..na], [0xff, 0xff]);
    }

    #[test]
    fn write_headers_ipv6_every_length_verified_by_etherparse() {
        for len in 0..80 {
            let s = v6_seed(&[0x81, 0, 0, 2], len);
            let p = SlicedPacket::from_ethernet(&s.frame).unwrap();
            let Some(NetSlice::Ipv6(v6)) = p.net else {
                panic!("not v6")
            };
            let Some(TransportSlice::Udp(u)) = p.transport else {
                panic!("not udp")
            };
            let uh = u.to_header();
            let h = v6.header().to_header();
            assert_eq!(
                uh.checksum,
                uh.calc_checksum_ipv6(&h, u.payload()).unwrap(),
                "{len}"
            );
            assert_eq!((h.hop_limit, h.payload_length as usize), (64, len + 8));
        }
    }
}
