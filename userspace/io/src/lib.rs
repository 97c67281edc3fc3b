//! xdhcpd-io: packet I/O for the daemon and the tools: AF_XDP sockets
//! ([`xsk`]), the kernel UDP fallback ([`udp`]), Ethernet/VLAN/IPv4/UDP
//! framing ([`frame`]) and the XDP program's loader and counters ([`xdp`]).
//! It knows frames and sockets, not DHCP messages.
//!
//! Two modes, chosen per interface:
//!
//! * **AF_XDP** ([`xsk`]): the XDP program redirects DHCP frames of RX queue
//!   *q* to the AF_XDP socket bound to queue *q*; a worker thread owns that
//!   socket, reads whole Ethernet frames from the rx ring, writes each reply in
//!   place into the request's UMEM frame and pushes it on the tx ring. No
//!   system call per packet: one `flush` per batch publishes tx, reaps
//!   completions and refills the fill ring.
//! * **Kernel UDP** ([`udp`]): the fallback when XDP cannot be attached (or
//!   for tests and small deployments): an ordinary UDP socket per interface on
//!   0.0.0.0:67 (SO_BINDTODEVICE, IP_PKTINFO), batched with recvmmsg /
//!   sendmmsg. The kernel builds the headers; a reply to a client that has no
//!   address yet is unicast by first installing an ARP entry
//!   ([`udp::UdpIo::set_neighbour`], RFC 2131 4.1).
//!
//! **Frame ownership (AF_XDP).** Every UMEM frame is always in exactly one
//! place: our free stash for the fill ring, the kernel's rx side (fill ring /
//! rx ring), the caller (after `recv` or `alloc_tx_frame`), the kernel's tx
//! side (tx ring / completion ring), or the free tx list. A frame handed to
//! the caller must come back exactly once, by `tx_push` (then it returns to
//! its home pool on completion) or by `recycle`. The socket tracks each
//! frame's place and refuses double returns; see [`xsk`] for the details.

pub mod frame;
pub mod sys;
pub mod udp;
pub mod xdp;
pub mod xsk;
