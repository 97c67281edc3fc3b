//! Where a reply goes (RFC 2131 §4.1): the engine decides a [`Delivery`], and
//! [`Delivery::destination`] turns it into the addresses and port on the wire.
//! Both packet drivers (AF_XDP framing, kernel UDP) read it from here only.

use std::net::Ipv4Addr;

use xdhcpd_common::{DHCPV4_CLIENT_PORT, DHCPV4_SERVER_PORT};

use crate::wire::Message;

/// Where a reply goes, as the engine decides it (RFC 2131 §4.1).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Delivery {
    /// To the relay agent at giaddr, UDP port 67.
    Relay(Ipv4Addr),
    /// Unicast to the client's ciaddr, UDP port 68 (L2: the request's source).
    Unicast(Ipv4Addr),
    /// Broadcast 255.255.255.255:68, ff:ff:ff:ff:ff:ff.
    Broadcast,
    /// Unicast to yiaddr at the client's hardware address (no ARP needed).
    ToClient {
        /// The address being given (yiaddr).
        ip: Ipv4Addr,
        /// The client's Ethernet address (chaddr).
        mac: [u8; 6],
    },
}

impl Delivery {
    /// Where an OFFER or ACK for `msg` goes, given the reply's yiaddr and ciaddr.
    pub fn of_reply(msg: &Message<'_>, yiaddr: Ipv4Addr, ciaddr: Ipv4Addr) -> Delivery {
        let giaddr = msg.giaddr();
        if !giaddr.is_unspecified() {
            return Delivery::Relay(giaddr);
        }
        if !ciaddr.is_unspecified() {
            return Delivery::Unicast(ciaddr);
        }
        let chaddr = msg.chaddr();
        if msg.broadcast_flag() || yiaddr.is_unspecified() || msg.htype() != 1 || chaddr.len() != 6
        {
            return Delivery::Broadcast;
        }
        let mut mac = [0u8; 6];
        mac.copy_from_slice(chaddr);
        Delivery::ToClient { ip: yiaddr, mac }
    }
}

/// The link-layer destination of a reply.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum LinkDest {
    /// The request's source hardware address: the relay agent, or a client
    /// that already has an address (ARP would find the same).
    Sender,
    /// ff:ff:ff:ff:ff:ff.
    Broadcast,
    /// The client's hardware address: it has no address yet, so ARP cannot
    /// find it; a kernel socket needs the neighbour entry installed first.
    Client([u8; 6]),
}

/// A reply's destination on the wire.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Destination {
    /// IPv4 destination address.
    pub ip: Ipv4Addr,
    /// UDP destination port: 67 to a relay agent, 68 to a client.
    pub port: u16,
    /// Ethernet destination.
    pub link: LinkDest,
}

impl Delivery {
    /// The reply's destination address, UDP port and link-layer destination.
    pub fn destination(self) -> Destination {
        let (ip, port, link) = match self {
            Delivery::Relay(giaddr) => (giaddr, DHCPV4_SERVER_PORT, LinkDest::Sender),
            Delivery::Unicast(ciaddr) => (ciaddr, DHCPV4_CLIENT_PORT, LinkDest::Sender),
            Delivery::Broadcast => (Ipv4Addr::BROADCAST, DHCPV4_CLIENT_PORT, LinkDest::Broadcast),
            Delivery::ToClient { ip, mac } => (ip, DHCPV4_CLIENT_PORT, LinkDest::Client(mac)),
        };
        Destination { ip, port, link }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn relays_get_port_67_and_clients_port_68() {
        let g = Ipv4Addr::new(10, 0, 0, 1);
        let c = Ipv4Addr::new(10, 0, 0, 9);
        let mac = [2, 0, 0, 0, 0, 9];
        assert_eq!(
            Delivery::Relay(g).destination(),
            Destination {
                ip: g,
                port: 67,
                link: LinkDest::Sender
            }
        );
        assert_eq!(
            Delivery::Unicast(c).destination(),
            Destination {
                ip: c,
                port: 68,
                link: LinkDest::Sender
            }
        );
        assert_eq!(
            Delivery::Broadcast.destination(),
            Destination {
                ip: Ipv4Addr::BROADCAST,
                port: 68,
                link: LinkDest::Broadcast
            }
        );
        assert_eq!(
            Delivery::ToClient { ip: c, mac }.destination(),
            Destination {
                ip: c,
                port: 68,
                link: LinkDest::Client(mac)
            }
        );
    }
}
