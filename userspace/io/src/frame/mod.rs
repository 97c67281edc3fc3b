//! Ethernet / VLAN / IPv4 / UDP framing for the AF_XDP path.
//!
//! Parsing uses etherparse's zero-copy slices (it validates every length
//! once). Building writes the headers in front of a DHCP payload that the
//! engine has already written at [`FrameLayout::payload_offset`], so the reply
//! is assembled in place in a UMEM frame with no copy of the payload.
//!
//! The VLAN tags of a request are echoed unchanged in its reply: the reply
//! goes back to the same L2 segment the request came from.

use std::net::{IpAddr, Ipv4Addr, Ipv6Addr};

use etherparse::{
    IpNumber, Ipv4Header, LinkExtSlice, NetSlice, SlicedPacket, TransportSlice, UdpHeader,
};

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
#[derive(Clone, Copy, Debug)]
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

impl<'a> RxFrame<'a> {
    /// Parses an Ethernet frame down to the UDP payload.
    ///
    /// Over IPv4 the header checksum and the UDP checksum are verified: the kernel stack,
    /// which AF_XDP bypasses, would drop a frame failing either. A UDP checksum of 0 means
    /// "none" (RFC 768); one equal to the pseudo-header sum alone is accepted too: that is what
    /// a sender's checksum offload leaves in a frame that crossed a virtual link (veth,
    /// virtio) without being completed, and the kernel would take it (CHECKSUM_PARTIAL). A
    /// UDP length of 0 (an IPv6 jumbogram's) is malformed over IPv4.
    pub fn parse(frame: &'a [u8]) -> Result<Self, FrameDrop> {
        let p = SlicedPacket::from_ethernet(frame).map_err(|_| FrameDrop::Malformed)?;
        let link = p.link.as_ref().ok_or(FrameDrop::Malformed)?;
        let eth = match link {
            etherparse::LinkSlice::Ethernet2(e) => e,
            _ => return Err(FrameDrop::UnsupportedLink),
        };
        let mut vlan_raw = [0u8; VLAN_TAG_LEN * MAX_VLAN_TAGS];
        if p.link_exts.len() > MAX_VLAN_TAGS {
            return Err(FrameDrop::UnsupportedLink);
        }
        for (i, ext) in p.link_exts.iter().enumerate() {
            match ext {
                LinkExtSlice::Vlan(_) => {
                    // Tag i's TPID sits in the preceding ethertype field: copy
                    // TPID(2)+TCI(2) straight from the frame.
                    let at = 12 + i * VLAN_TAG_LEN;
                    let raw = frame
                        .get(at..at + VLAN_TAG_LEN)
                        .ok_or(FrameDrop::Malformed)?;
                    vlan_raw[i * VLAN_TAG_LEN..(i + 1) * VLAN_TAG_LEN].copy_from_slice(raw);
                }
                LinkExtSlice::Macsec(_) => return Err(FrameDrop::UnsupportedLink),
            }
        }
        let (src_ip, dst_ip) = match &p.net {
            Some(NetSlice::Ipv4(v4)) => {
                if v4.is_payload_fragmented() {
                    return Err(FrameDrop::Fragment);
                }
                let h = v4.header();
                if fold(ones_complement_sum(0, h.slice())) != 0xffff {
                    return Err(FrameDrop::BadChecksum);
                }
                (
                    IpAddr::V4(h.source_addr()),
                    IpAddr::V4(h.destination_addr()),
                )
            }
            Some(NetSlice::Ipv6(v6)) => {
                if v6.is_payload_fragmented() {
                    return Err(FrameDrop::Fragment);
                }
                let h = v6.header();
                (
                    IpAddr::V6(h.source_addr()),
                    IpAddr::V6(h.destination_addr()),
                )
            }
            _ => return Err(FrameDrop::NotUdp),
        };
        let udp = match &p.transport {
            Some(TransportSlice::Udp(u)) => u,
            _ => return Err(FrameDrop::NotUdp),
        };
        match (src_ip, dst_ip) {
            (IpAddr::V4(s), IpAddr::V4(d)) => {
                if udp.length() == 0 {
                    return Err(FrameDrop::Malformed);
                }
                if !udp_checksum_ok(s, d, udp.slice()) {
                    return Err(FrameDrop::BadChecksum);
                }
            }
            (IpAddr::V6(s), IpAddr::V6(d)) => {
                if !udp6_checksum_ok(s, d, udp.slice()) {
                    return Err(FrameDrop::BadChecksum);
                }
            }
            _ => return Err(FrameDrop::Malformed),
        }
        Ok(RxFrame {
            src_mac: eth.source(),
            dst_mac: eth.destination(),
            vlan_raw,
            vlan_len: (p.link_exts.len() * VLAN_TAG_LEN) as u8,
            src_ip,
            dst_ip,
            src_port: udp.source_port(),
            dst_port: udp.destination_port(),
            payload: udp.payload(),
        })
    }

    pub fn vlan_tags(&self) -> &[u8] {
        &self.vlan_raw[..self.vlan_len as usize]
    }
}

/// One's complement sum (RFC 1071) of `data` on top of `sum`, in 64-bit native-order words
/// (the sum does not depend on byte order; 8 bytes per step keeps it cheap on the per-packet
/// path). Fold with [`fold`].
fn ones_complement_sum(mut sum: u64, data: &[u8]) -> u64 {
    let add = |sum: u64, v: u64| {
        let (s, carry) = sum.overflowing_add(v);
        s + u64::from(carry)
    };
    let mut words = data.chunks_exact(8);
    for w in &mut words {
        let mut b = [0u8; 8];
        b.copy_from_slice(w);
        sum = add(sum, u64::from_ne_bytes(b));
    }
    let rest = words.remainder();
    let mut b = [0u8; 8];
    b[..rest.len()].copy_from_slice(rest);
    add(sum, u64::from_ne_bytes(b))
}

/// Folds a [`ones_complement_sum`] to 16 bits (native order, not inverted).
fn fold(mut sum: u64) -> u16 {
    while sum > 0xffff {
        sum = (sum & 0xffff) + (sum >> 16);
    }
    sum as u16
}

/// Whether an IPv4 UDP datagram's checksum is right, absent (0), or the pseudo-header sum a
/// sender's checksum offload leaves until the NIC completes it (see [`RxFrame::parse`]).
fn udp_checksum_ok(src: Ipv4Addr, dst: Ipv4Addr, udp: &[u8]) -> bool {
    let Some(stored) = udp.get(6..8).map(|c| [c[0], c[1]]) else {
        return false;
    };
    if stored == [0, 0] {
        return true;
    }
    let len = (udp.len() as u16).to_be_bytes();
    let (s, d) = (src.octets(), dst.octets());
    let pseudo = ones_complement_sum(
        0,
        &[
            s[0], s[1], s[2], s[3], d[0], d[1], d[2], d[3], 0, 17, len[0], len[1],
        ],
    );
    if fold(ones_complement_sum(pseudo, udp)) == 0xffff {
        return true;
    }
    // Offload left the folded pseudo-header sum in the field (Linux CHECKSUM_PARTIAL).
    fold(pseudo) == u16::from_ne_bytes(stored)
}

/// Whether an IPv6 UDP datagram's checksum is right or the pseudo-header sum a sender's
/// offload leaves (0 is not allowed over IPv6: RFC 8200 §8.1).
fn udp6_checksum_ok(src: Ipv6Addr, dst: Ipv6Addr, udp: &[u8]) -> bool {
    let Some(stored) = udp.get(6..8).map(|c| [c[0], c[1]]) else {
        return false;
    };
    if stored == [0, 0] {
        return false;
    }
    let pseudo = pseudo6(src, dst, udp.len());
    if fold(ones_complement_sum(pseudo, udp)) == 0xffff {
        return true;
    }
    fold(pseudo) == u16::from_ne_bytes(stored)
}

fn pseudo6(src: Ipv6Addr, dst: Ipv6Addr, len: usize) -> u64 {
    let mut b = [0u8; 40];
    b[..16].copy_from_slice(&src.octets());
    b[16..32].copy_from_slice(&dst.octets());
    b[32..36].copy_from_slice(&(len as u32).to_be_bytes());
    b[39] = 17;
    ones_complement_sum(0, &b)
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
    frame[0..6].copy_from_slice(&addrs.dst_mac);
    frame[6..12].copy_from_slice(&addrs.src_mac);
    frame[12..12 + vlan_tags.len()].copy_from_slice(vlan_tags);
    let et = 12 + vlan_tags.len();
    frame[et..et + 2].copy_from_slice(&ETHERTYPE_IPV6.to_be_bytes());
    let ip = ETH_HDR_LEN + vlan_tags.len();
    let udp_len = (UDP_HDR_LEN + payload_len) as u16;
    frame[ip..ip + 4].copy_from_slice(&[0x60, 0, 0, 0]);
    frame[ip + 4..ip + 6].copy_from_slice(&udp_len.to_be_bytes());
    frame[ip + 6] = 17;
    frame[ip + 7] = 64;
    frame[ip + 8..ip + 24].copy_from_slice(&addrs.src_ip.octets());
    frame[ip + 24..ip + 40].copy_from_slice(&addrs.dst_ip.octets());
    let u = ip + IPV6_HDR_LEN;
    frame[u..u + 2].copy_from_slice(&addrs.src_port.to_be_bytes());
    frame[u + 2..u + 4].copy_from_slice(&addrs.dst_port.to_be_bytes());
    frame[u + 4..u + 6].copy_from_slice(&udp_len.to_be_bytes());
    frame[u + 6..u + 8].fill(0);
    let sum = ones_complement_sum(
        pseudo6(addrs.src_ip, addrs.dst_ip, usize::from(udp_len)),
        &frame[u..total],
    );
    let mut c = !fold(sum);
    if c == 0 {
        c = 0xffff;
    }
    // The sum was taken over native-order words: store it back in native order.
    frame[u + 6..u + 8].copy_from_slice(&c.to_ne_bytes());
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
    frame[0..6].copy_from_slice(&addrs.dst_mac);
    frame[6..12].copy_from_slice(&addrs.src_mac);
    frame[12..12 + vlan_tags.len()].copy_from_slice(vlan_tags);
    let et = 12 + vlan_tags.len();
    frame[et..et + 2].copy_from_slice(&ETHERTYPE_IPV4.to_be_bytes());
    let ip_at = ETH_HDR_LEN + vlan_tags.len();

    let udp_len = (UDP_HDR_LEN + payload_len) as u16;
    let mut ip = Ipv4Header::new(
        udp_len,
        64,
        IpNumber::UDP,
        addrs.src_ip.octets(),
        addrs.dst_ip.octets(),
    )
    .map_err(|_| FrameTooSmall {
        have: frame.len(),
        need: total,
    })?;
    ip.header_checksum = ip.calc_header_checksum();
    let ip_bytes = ip.to_bytes();
    frame[ip_at..ip_at + IPV4_HDR_LEN].copy_from_slice(&ip_bytes);

    let (head, payload) = frame.split_at_mut(off);
    let udp =
        UdpHeader::with_ipv4_checksum(addrs.src_port, addrs.dst_port, &ip, &payload[..payload_len])
            .map_err(|_| FrameTooSmall {
                have: head.len() + payload.len(),
                need: total,
            })?;
    head[ip_at + IPV4_HDR_LEN..off].copy_from_slice(&udp.to_bytes());
    Ok(total)
}

#[cfg(test)]
mod tests {
    use super::*;

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
}
