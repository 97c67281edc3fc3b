//! Worker threads: one per RX queue in XDP mode, one in UDP mode.
//!
//! A worker owns its socket and its engine; it shares only the lease table
//! (per-record locks) and the stop flag. It never waits on the network, the
//! failover partner or another worker (architecture property 4). In ack
//! commit mode it flushes the table once per batch, after the engine has
//! decided on every frame of the batch and before any reply is queued for
//! transmit (group commit: property 2).

use std::collections::VecDeque;
use std::net::{Ipv4Addr, SocketAddrV4};
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::Arc;

use lease_store::{DirtySet, Slot};

use super::commit::Committer;
use super::respond::{Responder, DHCP_CLIENT_PORT, DHCP_SERVER_PORT};
use crate::clock::unix_now;
use crate::config::CommitMode;
use crate::dhcpv4::{Decision, Delivery, Engine, RxMeta};
use crate::failover::FailoverTap;
use crate::io::udp::{UdpIo, UdpRx, UdpTx};
use crate::io::xsk::{Desc, XskSocket};

/// Frames taken from the RX ring per batch.
pub const BATCH: usize = 64;

/// Counters a worker publishes for the reporter (single writer).
#[derive(Debug, Default)]
pub struct WorkerCounters {
    pub batches: AtomicU64,
    pub tx_frames: AtomicU64,
    pub tx_ring_full: AtomicU64,
    pub flushes: AtomicU64,
    pub flush_errors: AtomicU64,
    pub frame_drops: AtomicU64,
}

impl WorkerCounters {
    /// Totals over all workers, for the stats JSON.
    pub fn sum(all: &[Arc<WorkerCounters>]) -> serde_json::Value {
        let total = |f: fn(&WorkerCounters) -> &AtomicU64| -> u64 {
            all.iter().map(|w| f(w).load(Ordering::Relaxed)).sum()
        };
        serde_json::json!({
            "batches": total(|w| &w.batches),
            "tx_frames": total(|w| &w.tx_frames),
            "tx_ring_full": total(|w| &w.tx_ring_full),
            "flushes": total(|w| &w.flushes),
            "flush_errors": total(|w| &w.flush_errors),
            "frame_drops": total(|w| &w.frame_drops),
        })
    }
}

fn bump(c: &AtomicU64, n: u64) {
    c.store(c.load(Ordering::Relaxed) + n, Ordering::Relaxed);
}

/// Flushes the records this batch changed, if the mode says so (one msync
/// over the batch's dirty range: group commit). Returns false if the flush
/// failed: the batch's replies must then not leave.
fn commit_batch(
    engine: &mut Engine,
    commit: CommitMode,
    changed: &mut Vec<Slot>,
    dirty: &mut DirtySet,
    c: &WorkerCounters,
    tap: Option<&FailoverTap>,
) -> bool {
    engine.take_changed(changed);
    if changed.is_empty() {
        return true;
    }
    if let Some(t) = tap {
        // Lazy binding updates: hand the slots over, never wait (try_send).
        t.offer(changed);
    }
    // Offers alone need no flush (see `Engine::take_needs_commit`).
    if commit != CommitMode::Ack || !engine.take_needs_commit() {
        changed.clear();
        return true;
    }
    for s in changed.drain(..) {
        dirty.note(s);
    }
    bump(&c.flushes, 1);
    match engine.shared().table.flush_set(dirty) {
        Ok(()) => true,
        Err(e) => {
            dirty.clear();
            bump(&c.flush_errors, 1);
            tracing::error!("lease table flush failed, replies of this batch withheld: {e}");
            false
        }
    }
}

/// Most replies a worker holds waiting for a flush; past this it stops
/// taking new frames (back-pressure) until the committer catches up.
const MAX_HELD: usize = 2048;

/// Pushes a reply to the TX ring (one flush-and-retry when the ring is
/// full; else the reply is dropped and counted: the client retransmits).
fn transmit(sock: &mut XskSocket, d: Desc, counters: &WorkerCounters) {
    if sock.tx_push(d).is_ok() {
        bump(&counters.tx_frames, 1);
        return;
    }
    let _ = sock.flush();
    if sock.tx_push(d).is_ok() {
        bump(&counters.tx_frames, 1);
    } else {
        bump(&counters.tx_ring_full, 1);
        sock.recycle(d.addr);
    }
}

/// The AF_XDP worker loop for one queue. Returns when `stop` is set.
///
/// With a committer (ack mode), the replies of a batch that changed lease
/// records are held until the committer reports those records durable
/// (see `commit.rs`); meanwhile the worker goes on with the next batches.
pub fn run_xdp_worker(
    mut sock: XskSocket,
    mut responder: Responder,
    committer: Option<Arc<Committer>>,
    stop: Arc<AtomicBool>,
    counters: Arc<WorkerCounters>,
    tap: Option<FailoverTap>,
) {
    let mut rx: Vec<Desc> = Vec::with_capacity(BATCH);
    let mut tx: Vec<Desc> = Vec::with_capacity(BATCH);
    let mut changed: Vec<Slot> = Vec::with_capacity(BATCH);
    let mut held: VecDeque<(u64, Desc)> = VecDeque::with_capacity(MAX_HELD + BATCH);
    let mut idle_spins = 0u32;
    let waiter = committer.as_ref().and_then(|c| match c.waiter() {
        Ok(w) => Some(w),
        Err(e) => {
            tracing::warn!("no eventfd for commit wake-ups, polling instead: {e}");
            None
        }
    });
    while !stop.load(Ordering::Relaxed) {
        // Release replies whose records are durable now.
        if let Some(c) = &committer {
            let durable = c.durable();
            while held.front().is_some_and(|(t, _)| *t <= durable) {
                if let Some((_, d)) = held.pop_front() {
                    transmit(&mut sock, d, &counters);
                }
            }
        }
        rx.clear();
        let n = if held.len() >= MAX_HELD {
            0
        } else {
            sock.recv(&mut rx, BATCH)
        };
        if n == 0 {
            // Spin briefly (latency), then sleep in poll() (CPU) unless
            // replies wait for the committer. The fill ring stays full
            // either way, so no frame is lost while idle.
            if let Err(e) = sock.flush() {
                tracing::warn!("xsk flush: {e}");
            }
            idle_spins += 1;
            if idle_spins > 64 && held.is_empty() {
                let _ = sock.wait_readable(10);
            } else if idle_spins > 64 {
                // Replies wait for the committer: sleep until it flushed
                // or a frame arrives, instead of spinning on the core the
                // committer also needs.
                match &waiter {
                    Some(w) => w.wait(sock.fd(), 10),
                    None => std::thread::yield_now(),
                }
            }
            continue;
        }
        idle_spins = 0;
        bump(&counters.batches, 1);
        let now = unix_now();
        for d in rx.iter() {
            let frame = sock.frame_mut(d.addr);
            match responder.handle_frame(now, frame, d.len as usize) {
                Some(len) => tx.push(Desc {
                    addr: d.addr,
                    len: len as u32,
                }),
                None => {
                    sock.recycle(d.addr);
                }
            }
        }
        responder.engine().take_changed(&mut changed);
        if let (Some(t), false) = (&tap, changed.is_empty()) {
            // Lazy binding updates: hand the slots over, never wait (try_send).
            t.offer(&changed);
        }
        changed.clear();
        // Only bindings need the flush; a batch of OFFERs goes out at once.
        let wrote = responder.engine().take_needs_commit();
        match &committer {
            // Replies of a batch that wrote records wait for their flush;
            // so do later ones, to keep each client's replies in order.
            Some(c) if wrote || !held.is_empty() => {
                let ticket = if wrote {
                    c.ticket()
                } else {
                    held.back().map_or(0, |(t, _)| *t)
                };
                held.extend(tx.drain(..).map(|d| (ticket, d)));
            }
            _ => {
                for d in tx.drain(..) {
                    transmit(&mut sock, d, &counters);
                }
            }
        }
        if let Err(e) = sock.flush() {
            tracing::warn!("xsk flush: {e}");
        }
    }
    // Stopping: replies still held were never made durable; drop them.
    for (_, d) in held.drain(..) {
        sock.recycle(d.addr);
    }
    let _ = sock.flush();
    bump(
        &counters.frame_drops,
        responder.drops.malformed + responder.drops.ipv6,
    );
}

/// The kernel-UDP worker loop. Returns when `stop` is set.
pub fn run_udp_worker(
    mut io: UdpIo,
    mut engine: Engine,
    local_addr: Ipv4Addr,
    commit: CommitMode,
    stop: Arc<AtomicBool>,
    counters: Arc<WorkerCounters>,
    tap: Option<FailoverTap>,
) {
    let mut rx: Vec<UdpRx> = Vec::with_capacity(BATCH);
    let mut out: Vec<Vec<u8>> = (0..BATCH).map(|_| vec![0u8; 1500]).collect();
    let mut tx: Vec<(usize, usize, SocketAddrV4)> = Vec::with_capacity(BATCH);
    let mut changed: Vec<Slot> = Vec::with_capacity(BATCH);
    let mut dirty = DirtySet::new();
    while !stop.load(Ordering::Relaxed) {
        rx.clear();
        match io.recv_batch(&mut rx, BATCH) {
            Ok(0) => {
                let _ = io.wait_readable(50);
                continue;
            }
            Ok(_) => {}
            Err(e) => {
                tracing::warn!("udp receive: {e}");
                let _ = io.wait_readable(50);
                continue;
            }
        }
        bump(&counters.batches, 1);
        let now = unix_now();
        tx.clear();
        for (i, m) in rx.iter().enumerate() {
            let meta = RxMeta {
                local_addr,
                src_ip: *m.source.ip(),
                dst_ip: m.destination,
            };
            if let Decision::Reply { len, to, .. } =
                engine.handle(now, &meta, &m.payload[..m.len], &mut out[i])
            {
                let dest = match to {
                    Delivery::Relay(g) => SocketAddrV4::new(g, DHCP_SERVER_PORT),
                    Delivery::Unicast(ip) => SocketAddrV4::new(ip, DHCP_CLIENT_PORT),
                    Delivery::Broadcast => SocketAddrV4::new(Ipv4Addr::BROADCAST, DHCP_CLIENT_PORT),
                    Delivery::ToClient { ip, mac } => {
                        // No address on the client yet: a kernel socket can
                        // only unicast to it once the neighbour entry exists.
                        match io.set_neighbour(ip, mac) {
                            Ok(()) => SocketAddrV4::new(ip, DHCP_CLIENT_PORT),
                            Err(_) => SocketAddrV4::new(Ipv4Addr::BROADCAST, DHCP_CLIENT_PORT),
                        }
                    }
                };
                tx.push((i, len, dest));
            }
        }
        if !commit_batch(
            &mut engine,
            commit,
            &mut changed,
            &mut dirty,
            &counters,
            tap.as_ref(),
        ) {
            continue;
        }
        let batch: Vec<UdpTx<'_>> = tx
            .iter()
            .map(|&(i, len, dest)| UdpTx {
                payload: &out[i][..len],
                dest,
            })
            .collect();
        match io.send_batch(&batch) {
            Ok(n) => bump(&counters.tx_frames, n as u64),
            Err(e) => tracing::warn!("udp send: {e}"),
        }
    }
}
