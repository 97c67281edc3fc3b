//! The worker's view of a packet driver: receive a batch, hand each request's
//! DHCP payload and metadata to the responder (the engine), send the replies.
//!
//! Two drivers implement [`PacketIo`]: [`xsk::XskDriver`] (an AF_XDP socket;
//! replies are written in place into the request's UMEM frame) and
//! [`udp::UdpDriver`] (a kernel UDP socket; replies go to a pool of buffers).
//! The worker loop (`worker.rs`) is generic over the trait, so the per-packet
//! calls are static and inlined.

pub mod udp;
pub mod xsk;

use std::os::fd::RawFd;

use super::worker::WorkerCounters;
use xdhcpd_dhcpv4::{Decision, RxMeta};

/// How one reply of a batch stands to the commits pending when it was made (ack mode).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum ReplyHold {
    /// Made by the batch's `respond` (the DHCPv4 engine): the worker judges it.
    Respond,
    /// Made by the driver itself (DHCPv6) and stating nothing a crash could take back
    /// (`Decision6::Reply::at_once`: an Advertise, a status): it may leave before the pending
    /// commits.
    AtOnce,
    /// Made by the driver itself and waiting its turn: it wrote records that must be durable
    /// first (the driver then reports the batch in [`PacketIo::take_needs_commit`]), or it
    /// may state what an earlier, not yet durable write did.
    Wait,
}

/// A packet driver the worker loop runs.
pub trait PacketIo {
    /// A reply ready to leave: it holds its buffer until [`send`](Self::send)
    /// or [`discard`](Self::discard) gives it back.
    type Reply: Copy;

    /// Empty receives the worker spins through (flushing) before it sleeps:
    /// latency against CPU.
    const IDLE_SPINS: u32;

    /// Takes up to `max` requests without blocking. For each, calls
    /// `respond(meta, payload, out)`, which writes the reply's DHCP payload
    /// into `out`; a [`Decision::Reply`] is then framed for its delivery and
    /// appended to `replies`, and how it stands to the pending commits to `holds` (one
    /// entry per reply, in the same order). Returns how many requests were taken.
    fn recv_batch<R>(
        &mut self,
        max: usize,
        replies: &mut Vec<Self::Reply>,
        holds: &mut Vec<ReplyHold>,
        respond: R,
    ) -> usize
    where
        R: FnMut(&RxMeta, &[u8], &mut [u8]) -> Decision;

    /// Queues a reply for transmit (it leaves at the latest at the next
    /// [`flush`](Self::flush)); counts it as sent or dropped.
    fn send(&mut self, reply: Self::Reply, counters: &WorkerCounters);

    /// Gives a reply's buffer back without sending it.
    fn discard(&mut self, reply: Self::Reply);

    /// Publishes queued replies to the kernel (and, for AF_XDP, refills the
    /// receive side).
    fn flush(&mut self, counters: &WorkerCounters);

    /// The descriptor that becomes readable when requests wait.
    fn fd(&self) -> RawFd;

    /// Sleeps until requests wait or `timeout_ms` passed.
    fn wait_readable(&self, timeout_ms: i32);

    /// Requests dropped before the engine saw them (malformed frames and the like).
    fn frame_drops(&self) -> u64;

    /// The last batch wrote records outside the DHCPv4 engine that must be durable
    /// before its replies leave (ack mode: DHCPv6 bindings the driver's responder
    /// committed); the worker then holds the batch's replies with a commit ticket.
    fn take_needs_commit(&mut self) -> bool {
        false
    }
}
