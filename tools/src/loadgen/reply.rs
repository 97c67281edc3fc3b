//! A server's reply frame reduced to what the engine matches on.

use std::net::Ipv4Addr;

use xdhcpd_dhcpv4::wire::{opt, Message, MessageType, OP_BOOTREPLY};
use xdhcpd_io::frame::RxFrame;

use super::forcerenew::{self, FrAuth};

/// A reply, reduced to what the engine needs (small and `Copy`, so it can be
/// forwarded between threads without allocation).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Reply {
    pub xid: u32,
    pub kind: MessageType,
    pub yiaddr: Ipv4Addr,
    /// Option 54, else the IP source address.
    pub server_id: Ipv4Addr,
    pub lease_time: Option<u32>,
    pub src_mac: [u8; 6],
    pub chaddr: [u8; 6],
    /// DHCPv6 replies: what they said (`chaddr` is then the MAC in the client's DUID).
    pub v6: Option<super::v6::Reply6>,
    /// An ACK's RFC 6704 reconfigure key (option 90, type 1) and its replay value.
    pub key: Option<([u8; 16], u64)>,
    /// A FORCERENEW: its authentication checked against the client's key (by the thread
    /// that received it; see [`forcerenew::KeyBook`]).
    pub fr: Option<FrAuth>,
}

/// Why a received frame was not a reply for us.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum NotAReply {
    Frame,
    Dhcp,
    /// A BOOTREQUEST (e.g. another client's broadcast) or an unrelated type.
    NotReply,
}

/// Parses an Ethernet frame into a [`Reply`] (OFFER, ACK, NAK; FORCERENEW with `fr` unset).
pub fn parse_reply(frame: &[u8]) -> Result<Reply, NotAReply> {
    parse_reply_payload(frame).map(|(r, _)| r)
}

/// [`parse_reply`], and the DHCP message itself (to verify a FORCERENEW).
pub fn parse_reply_payload(frame: &[u8]) -> Result<(Reply, &[u8]), NotAReply> {
    let rx = RxFrame::parse(frame).map_err(|_| NotAReply::Frame)?;
    let m = Message::new_checked(rx.payload).map_err(|_| NotAReply::Dhcp)?;
    if m.op() != OP_BOOTREPLY {
        return Err(NotAReply::NotReply);
    }
    let s = m.summary().map_err(|_| NotAReply::Dhcp)?;
    let kind = match s.message_type {
        Some(
            k
            @ (MessageType::Offer | MessageType::Ack | MessageType::Nak | MessageType::ForceRenew),
        ) => k,
        _ => return Err(NotAReply::NotReply),
    };
    let src_ip = match rx.src_ip {
        std::net::IpAddr::V4(a) => a,
        std::net::IpAddr::V6(_) => return Err(NotAReply::Frame),
    };
    let key = if kind == MessageType::Ack {
        m.options()
            .filter_map(Result::ok)
            .find(|(code, _, _)| *code == opt::AUTHENTICATION)
            .and_then(|(_, val, _)| forcerenew::parse_ack_key(val))
    } else {
        None
    };
    let ch = m.chaddr_field();
    Ok((
        Reply {
            xid: m.xid(),
            kind,
            yiaddr: m.yiaddr(),
            server_id: s.server_id.unwrap_or(src_ip),
            lease_time: s.lease_time,
            src_mac: rx.src_mac,
            chaddr: [ch[0], ch[1], ch[2], ch[3], ch[4], ch[5]],
            v6: None,
            key,
            fr: None,
        },
        rx.payload,
    ))
}
