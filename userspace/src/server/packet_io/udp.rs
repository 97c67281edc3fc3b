//! The kernel UDP driver: one socket on port 67, batched with recvmmsg /
//! sendmmsg. The kernel builds the headers; replies are written into a pool
//! of buffers that stay taken while a reply waits for its commit.

use std::net::{Ipv4Addr, SocketAddrV4};
use std::os::fd::RawFd;

use super::{PacketIo, ReplyHold};
use crate::server::worker::{bump, WorkerCounters, BATCH, MAX_HELD};
use xdhcpd_dhcpv4::{Decision, Delivery, LinkDest, RxMeta};
use xdhcpd_io::udp::{UdpIo, UdpTx};

/// Room for one reply's DHCP payload.
const REPLY_BUF: usize = 1500;

/// A reply in the pool, with where it goes.
#[derive(Clone, Copy, Debug)]
pub struct UdpReply {
    slot: u32,
    len: u32,
    to: Delivery,
}

/// A kernel UDP socket and its reply buffers.
pub struct UdpDriver {
    io: UdpIo,
    /// The interface's address: selects the subnet of direct clients.
    local_addr: Ipv4Addr,
    /// `REPLY_BUF` bytes per slot: every reply a worker may hold or queue.
    pool: Vec<u8>,
    free: Vec<u32>,
    /// Replies queued by `send`, sent by `flush`.
    queued: Vec<UdpReply>,
}

impl UdpDriver {
    pub fn new(io: UdpIo, local_addr: Ipv4Addr) -> Self {
        let slots = MAX_HELD + BATCH;
        UdpDriver {
            io,
            local_addr,
            pool: vec![0; slots * REPLY_BUF],
            free: (0..slots as u32).rev().collect(),
            queued: Vec::with_capacity(slots),
        }
    }
}

/// The socket address a reply goes to. A client without an address can only
/// be unicast once its neighbour entry exists (see `io::udp`); if that fails,
/// it gets the broadcast.
fn socket_addr(io: &UdpIo, to: Delivery) -> SocketAddrV4 {
    let dest = to.destination();
    match dest.link {
        LinkDest::Client(mac) if io.set_neighbour(dest.ip, mac).is_err() => {
            let b = Delivery::Broadcast.destination();
            SocketAddrV4::new(b.ip, b.port)
        }
        _ => SocketAddrV4::new(dest.ip, dest.port),
    }
}

impl PacketIo for UdpDriver {
    type Reply = UdpReply;

    /// Every empty receive is a system call: sleep at once.
    const IDLE_SPINS: u32 = 0;

    fn recv_batch<R>(
        &mut self,
        max: usize,
        replies: &mut Vec<UdpReply>,
        holds: &mut Vec<ReplyHold>,
        mut respond: R,
    ) -> usize
    where
        R: FnMut(&RxMeta, &[u8], &mut [u8]) -> Decision,
    {
        // Each request may need a reply buffer: take no more than are free.
        let max = max.min(self.free.len());
        let (pool, free, local_addr) = (&mut self.pool, &mut self.free, self.local_addr);
        let got = self
            .io
            .recv_each(max, |payload, source, destination, _ifindex| {
                let Some(slot) = free.pop() else {
                    return;
                };
                let meta = RxMeta {
                    local_addr,
                    src_ip: *source.ip(),
                    dst_ip: destination,
                };
                let at = slot as usize * REPLY_BUF;
                match respond(&meta, payload, &mut pool[at..at + REPLY_BUF]) {
                    Decision::Reply { len, to, .. } => {
                        replies.push(UdpReply {
                            slot,
                            len: len as u32,
                            to,
                        });
                        holds.push(ReplyHold::Respond);
                    }
                    Decision::Silent(_) => free.push(slot),
                }
            });
        match got {
            Ok(n) => n,
            Err(e) => {
                tracing::warn!("udp receive: {e}");
                0
            }
        }
    }

    fn send(&mut self, reply: UdpReply, _counters: &WorkerCounters) {
        self.queued.push(reply);
    }

    fn discard(&mut self, reply: UdpReply) {
        self.free.push(reply.slot);
    }

    fn flush(&mut self, counters: &WorkerCounters) {
        if self.queued.is_empty() {
            return;
        }
        let (io, pool) = (&self.io, &self.pool);
        let batch: Vec<UdpTx<'_>> = self
            .queued
            .iter()
            .map(|r| {
                let at = r.slot as usize * REPLY_BUF;
                UdpTx {
                    payload: &pool[at..at + r.len as usize],
                    dest: socket_addr(io, r.to),
                }
            })
            .collect();
        match self.io.send_batch(&batch) {
            Ok(n) => bump(&counters.tx_frames, n as u64),
            Err(e) => tracing::warn!("udp send: {e}"),
        }
        self.free.extend(self.queued.drain(..).map(|r| r.slot));
    }

    fn fd(&self) -> RawFd {
        self.io.fd()
    }

    fn wait_readable(&self, timeout_ms: i32) {
        let _ = self.io.wait_readable(timeout_ms);
    }

    fn frame_drops(&self) -> u64 {
        let c = self.io.counters();
        c.rx_truncated + c.rx_no_meta
    }
}
