//! The etherparse-based parser and header writers that [`RxFrame::parse`] and the writers
//! replaced (issue 18), kept as the independent reference of the differential tests and
//! the `frame_differential` fuzz target. Built for tests and with the
//! `etherparse-reference` feature; never on the packet path.

use std::net::{IpAddr, Ipv4Addr, Ipv6Addr};

use etherparse::{
    IpNumber, Ipv4Header, LinkExtSlice, NetSlice, SlicedPacket, TransportSlice, UdpHeader,
};

use super::{
    FrameDrop, FrameLayout, FrameTooSmall, Ipv4UdpAddrs, RxFrame, ETHERTYPE_IPV4, ETH_HDR_LEN,
    IPV4_HDR_LEN, MAX_VLAN_TAGS, UDP_HDR_LEN, VLAN_TAG_LEN,
};

/// The parser before issue 18: etherparse's `SlicedPacket::from_ethernet`, then the checks.
pub fn parse(frame: &[u8]) -> Result<RxFrame<'_>, FrameDrop> {
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

/// Big-endian 16-bit words, end-around carry (RFC 1071 the plain way; not the packet
/// path's 64-bit words).
fn ones_complement_sum(mut sum: u64, data: &[u8]) -> u64 {
    for c in data.chunks(2) {
        sum += u64::from(u16::from_be_bytes([c[0], c.get(1).copied().unwrap_or(0)]));
    }
    sum
}

fn fold(mut sum: u64) -> u16 {
    while sum > 0xffff {
        sum = (sum & 0xffff) + (sum >> 16);
    }
    sum as u16
}

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
    fold(pseudo) == u16::from_be_bytes(stored)
}

fn udp6_checksum_ok(src: Ipv6Addr, dst: Ipv6Addr, udp: &[u8]) -> bool {
    let Some(stored) = udp.get(6..8).map(|c| [c[0], c[1]]) else {
        return false;
    };
    if stored == [0, 0] {
        return false;
    }
    let mut b = [0u8; 40];
    b[..16].copy_from_slice(&src.octets());
    b[16..32].copy_from_slice(&dst.octets());
    b[32..36].copy_from_slice(&(udp.len() as u32).to_be_bytes());
    b[39] = 17;
    let pseudo = ones_complement_sum(0, &b);
    if fold(ones_complement_sum(pseudo, udp)) == 0xffff {
        return true;
    }
    fold(pseudo) == u16::from_be_bytes(stored)
}

/// The IPv4 header writer before issue 18 (etherparse's header and UDP checksum).
pub fn write_ipv4_udp_headers(
    frame: &mut [u8],
    vlan_tags: &[u8],
    addrs: &Ipv4UdpAddrs,
    payload_len: usize,
) -> Result<usize, FrameTooSmall> {
    let layout = FrameLayout::new(vlan_tags.len());
    let off = layout.payload_offset();
    let total = off + payload_len;
    let too_small = FrameTooSmall {
        have: frame.len(),
        need: total,
    };
    if frame.len() < total || payload_len > u16::MAX as usize - IPV4_HDR_LEN - UDP_HDR_LEN {
        return Err(too_small);
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
    .map_err(|_| too_small)?;
    ip.header_checksum = ip.calc_header_checksum();
    frame[ip_at..ip_at + IPV4_HDR_LEN].copy_from_slice(&ip.to_bytes());
    let (head, payload) = frame.split_at_mut(off);
    let udp =
        UdpHeader::with_ipv4_checksum(addrs.src_port, addrs.dst_port, &ip, &payload[..payload_len])
            .map_err(|_| too_small)?;
    head[ip_at + IPV4_HDR_LEN..off].copy_from_slice(&udp.to_bytes());
    Ok(total)
}

/// Whether the link layer has a third VLAN tag or MACsec within the first three tags: the
/// new parser stops there with `UnsupportedLink` (see [`RxFrame::parse`]).
fn stops_at_link(frame: &[u8]) -> bool {
    for i in 0..=MAX_VLAN_TAGS {
        let at = 12 + i * VLAN_TAG_LEN;
        let Some(et) = frame.get(at..at + 2) else {
            return false;
        };
        match u16::from_be_bytes([et[0], et[1]]) {
            0x88e5 => return true,
            0x8100 | 0x88a8 | 0x9100 if i == MAX_VLAN_TAGS => return true,
            0x8100 | 0x88a8 | 0x9100 => {}
            _ => return false,
        }
    }
    false
}

/// Whether etherparse refused the frame in a header the new parser does not read: a
/// non-UDP transport (TCP, ICMP, ICMPv6, IGMP) or ARP.
fn refused_beyond_ip_not_udp(frame: &[u8]) -> bool {
    use etherparse::err::{packet::SliceError, Layer};
    match SlicedPacket::from_ethernet(frame) {
        Err(SliceError::Tcp(_)) => true,
        Err(SliceError::Len(e)) => matches!(
            e.layer,
            Layer::TcpHeader
                | Layer::Icmpv4
                | Layer::Icmpv4Timestamp
                | Layer::Icmpv4TimestampReply
                | Layer::Icmpv6
                | Layer::Igmp
                | Layer::Arp
        ),
        _ => false,
    }
}

/// Compares [`RxFrame::parse`] with [`parse`] on `frame`: the same frame taken with the
/// same fields, or the same refusal, apart from the documented differences in the reason
/// (see [`RxFrame::parse`]). Returns what differs.
pub fn compare(frame: &[u8]) -> Result<(), String> {
    let new = RxFrame::parse(frame);
    let old = parse(frame);
    if let Ok(rx) = &new {
        let r = frame.as_ptr_range();
        let p = rx.payload.as_ptr_range();
        if p.start < r.start || p.end > r.end {
            return Err("payload outside the frame".into());
        }
    }
    let same = match (&new, &old) {
        (Ok(a), Ok(b)) => a == b && a.payload.as_ptr() == b.payload.as_ptr(),
        (Err(a), Err(b)) if a == b => true,
        (Err(FrameDrop::UnsupportedLink), Err(FrameDrop::Malformed)) => stops_at_link(frame),
        (Err(FrameDrop::NotUdp | FrameDrop::BadChecksum), Err(FrameDrop::Malformed)) => {
            refused_beyond_ip_not_udp(frame)
        }
        _ => false,
    };
    if same {
        Ok(())
    } else {
        Err(format!(
            "new {new:?} / etherparse {old:?} for {} bytes {frame:02x?}",
            frame.len()
        ))
    }
}
