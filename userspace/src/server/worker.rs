//! Worker threads: one per RX queue in XDP mode, one in UDP mode, all running
//! [`run_worker`] over their [`PacketIo`] driver.
//!
//! A worker owns its socket and its engine; it shares only the lease table
//! (per-record locks) and the stop flag. It never waits on the network, the
//! failover partner or another worker (architecture property 4). In ack
//! commit mode the replies of a batch that wrote lease records are held until
//! the committer has flushed those records (property 2; see `commit.rs`).

use std::collections::VecDeque;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::Arc;
use std::time::Instant;

use lease_store::Slot;

use super::commit::Committer;
use super::packet_io::{PacketIo, ReplyHold};
use super::reload::EngineCell;
use crate::clock::unix_now;
use crate::failover::FailoverTap;
use xdhcpd_dhcpv4::wire::MessageType;
use xdhcpd_dhcpv4::{Decision, Engine};

/// Requests taken from the socket per batch.
pub const BATCH: usize = 64;

/// Most replies a worker holds waiting for a flush; past this it stops
/// taking new requests (back-pressure) until the committer catches up.
pub const MAX_HELD: usize = 2048;

/// How long an idle worker sleeps before it looks at `stop` again.
const IDLE_WAIT_MS: i32 = 10;

/// Counters a worker publishes for the reporter (single writer).
#[derive(Debug, Default)]
pub struct WorkerCounters {
    pub batches: AtomicU64,
    pub tx_frames: AtomicU64,
    pub tx_ring_full: AtomicU64,
    pub frame_drops: AtomicU64,
    /// Server latency, sampled: from taking a batch off the socket to handing its replies to
    /// the driver's send (after the commit flush in ack mode), one batch in
    /// [`LATENCY_SAMPLE_EVERY`]. Two clock reads per sampled batch, none per packet.
    pub latency: super::latency::LatencyHistogram,
}

/// One batch in this many is timed for the latency histogram.
pub const LATENCY_SAMPLE_EVERY: u64 = 16;

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
            "frame_drops": total(|w| &w.frame_drops),
        })
    }
}

/// Adds to a single-writer counter (a plain store: no locked instruction).
pub(crate) fn bump(c: &AtomicU64, n: u64) {
    c.store(c.load(Ordering::Relaxed) + n, Ordering::Relaxed);
}

/// What a worker follows besides its socket: the engine configuration (swapped in at a batch
/// boundary after a reload) and, if configured, the lease event log.
#[derive(Clone)]
pub struct WorkerOps {
    pub config: Arc<EngineCell>,
    pub events: Option<crate::events::EventTap>,
}

/// The worker loop over one driver. Returns when `stop` is set.
///
/// With a committer (ack mode), the replies of a batch that changed lease
/// records are held until the committer reports those records durable;
/// meanwhile the worker goes on with the next batches. If flushing fails,
/// they never leave.
pub fn run_worker<P: PacketIo>(
    mut io: P,
    mut engine: Engine,
    committer: Option<Arc<Committer>>,
    stop: Arc<AtomicBool>,
    counters: Arc<WorkerCounters>,
    tap: Option<FailoverTap>,
    ops: WorkerOps,
) {
    let mut generation = ops.config.generation();
    let mut tx: Vec<P::Reply> = Vec::with_capacity(BATCH);
    let mut changed: Vec<Slot> = Vec::with_capacity(BATCH);
    // Per reply of the batch (in `tx` order): how it stands to the pending commits (the
    // driver's word), and for the responder's replies in order, may it leave before them?
    let mut holds: Vec<ReplyHold> = Vec::with_capacity(BATCH);
    let mut free: Vec<bool> = Vec::with_capacity(BATCH);
    let mut held: VecDeque<(u64, P::Reply)> = VecDeque::with_capacity(MAX_HELD + BATCH);
    let mut idle_spins = 0u32;
    // The sampled batch: (its commit ticket, 0 when it needs none; when it was taken).
    let mut sample: Option<(u64, Instant)> = None;
    let mut batch_no = 0u64;
    let waiter = committer.as_ref().and_then(|c| match c.waiter() {
        Ok(w) => Some(w),
        Err(e) => {
            tracing::warn!("no eventfd for commit wake-ups, polling instead: {e}");
            None
        }
    });
    while !stop.load(Ordering::Relaxed) {
        // A reload published a new engine configuration: serve the next batch with it.
        let g = ops.config.generation();
        if g != generation {
            engine.set_shared(ops.config.load());
            generation = g;
        }
        // Release replies whose records are durable now.
        if let Some(c) = &committer {
            let durable = c.durable();
            while held.front().is_some_and(|(t, _)| *t <= durable) {
                if let Some((_, r)) = held.pop_front() {
                    io.send(r, &counters);
                }
            }
            if let Some((t, at)) = sample {
                if t != 0 && t <= durable {
                    counters.latency.record(at.elapsed());
                    sample = None;
                }
            }
        }
        let n = if held.len() >= MAX_HELD {
            0
        } else {
            // The clock is read once per batch, at its first request.
            let mut now = None;
            batch_no = batch_no.wrapping_add(1);
            let timed = sample.is_none() && batch_no.is_multiple_of(LATENCY_SAMPLE_EVERY);
            let taken = timed.then(Instant::now);
            free.clear();
            holds.clear();
            let n = io.recv_batch(BATCH, &mut tx, &mut holds, |meta, payload, out| {
                let now = *now.get_or_insert_with(unix_now);
                let before = engine.durable_changes();
                let d = engine.handle(now, meta, payload, out);
                if let Decision::Reply { kind, .. } = d {
                    // An OFFER or NAK of a message that changed nothing durable states nothing
                    // a crash could take back: it needs no commit and waits for none.
                    free.push(
                        matches!(kind, MessageType::Offer | MessageType::Nak)
                            && engine.durable_changes() == before,
                    );
                }
                d
            });
            if n > 0 {
                if let Some(at) = taken {
                    sample = Some((0, at));
                }
            }
            n
        };
        if n == 0 {
            // Spin briefly (latency), then sleep (CPU). An AF_XDP fill ring
            // stays full either way, so no frame is lost while idle.
            io.flush(&counters);
            idle_spins += 1;
            if idle_spins > P::IDLE_SPINS {
                if held.is_empty() {
                    io.wait_readable(IDLE_WAIT_MS);
                } else {
                    // Replies wait for the committer: sleep until it flushed
                    // or a request arrives, instead of spinning on the core
                    // the committer also needs.
                    match &waiter {
                        Some(w) => w.wait(io.fd(), IDLE_WAIT_MS),
                        None => std::thread::yield_now(),
                    }
                }
            }
            continue;
        }
        idle_spins = 0;
        bump(&counters.batches, 1);
        engine.take_changed(&mut changed);
        if let (Some(t), false) = (&tap, changed.is_empty()) {
            // Lazy binding updates: hand the slots over, never wait (try_send).
            t.offer(&changed);
        }
        if let (Some(e), false) = (&ops.events, changed.is_empty()) {
            // The lease event log reads the records in its own thread (never waits either).
            e.offer(&changed);
        }
        changed.clear();
        // Only bindings need the flush; a batch of OFFERs goes out at once. DHCPv6
        // bindings the driver's responder wrote (ack mode) take the same ticket.
        let wrote = engine.take_needs_commit() | io.take_needs_commit();
        match &committer {
            // Replies of a batch that wrote records wait for their flush;
            // so do later ones, to keep each client's replies in order.
            Some(c) if wrote || !held.is_empty() => {
                let ticket = if wrote {
                    c.ticket()
                } else {
                    held.back().map_or(0, |(t, _)| *t)
                };
                // The driver said how each reply stands, and the engine's judgement of its
                // own replies is there for each (none lost while framing): OFFERs and NAKs,
                // and DHCPv6 replies that wrote nothing (Advertise), leave now; the rest wait
                // their turn (no reply waits for a commit it does not need: issue 18, item 5).
                // Otherwise every reply waits.
                let judged = holds.len() == tx.len()
                    && holds.iter().filter(|h| **h == ReplyHold::Respond).count() == free.len();
                if judged {
                    let mut engine_free = free.iter();
                    for (r, h) in tx.drain(..).zip(holds.iter()) {
                        let now = match h {
                            ReplyHold::Respond => engine_free.next().copied().unwrap_or(false),
                            ReplyHold::AtOnce => true,
                            ReplyHold::Wait => false,
                        };
                        if now {
                            io.send(r, &counters);
                        } else {
                            held.push_back((ticket, r));
                        }
                    }
                } else {
                    held.extend(tx.drain(..).map(|r| (ticket, r)));
                }
                if let Some((t @ 0, _)) = sample.as_mut() {
                    // Timed when the flush releases it (ticket 0 would mean "now").
                    *t = ticket.max(1);
                }
            }
            _ => {
                for r in tx.drain(..) {
                    io.send(r, &counters);
                }
            }
        }
        io.flush(&counters);
        if let Some((0, at)) = sample {
            counters.latency.record(at.elapsed());
            sample = None;
        }
    }
    // Stopping: replies still held were never made durable; drop them.
    for (_, r) in held.drain(..) {
        io.discard(r);
    }
    io.flush(&counters);
    bump(&counters.frame_drops, io.frame_drops());
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::server::commit::{self, Durable};
    use crate::server::iface::Interface;
    use crate::server::packet_io::xsk::FrameResponder;
    use crate::server::v6::{engine_config, SharedTable6, V6Server};
    use lease_store::v6::{Binding6, BindingState, BindingTable6, IaKind};
    use lease_store::{LeaseTable, OpenOptions, PoolSpec};
    use std::sync::Mutex;
    use std::time::Duration;
    use xdhcpd_dhcpv4::{EngineShared, EngineStats, RxMeta};
    use xdhcpd_dhcpv6::wire::{msg, opt, Writer};
    use xdhcpd_dhcpv6::{Engine6, Stats6};
    use xdhcpd_io::frame::{self, Ipv6UdpAddrs};

    /// The DHCPv6 server (the demo's `[[subnet6]]`, ack mode) behind a gate: its log commit
    /// (the committer's [`Durable`] step, the daemon's [`SharedTable6::make_durable`]) waits
    /// until the test opens the gate, i.e. a stalled committer.
    struct GatedV6 {
        v6: Arc<V6Server>,
        open: AtomicBool,
    }

    impl GatedV6 {
        fn table(&self) -> &SharedTable6 {
            self.v6.table()
        }
    }

    impl Durable for GatedV6 {
        fn make_durable(&self) -> std::io::Result<()> {
            while !self.open.load(Ordering::SeqCst) {
                std::thread::sleep(Duration::from_millis(1));
            }
            self.v6.make_durable()
        }
    }

    /// A driver that answers one DHCPv6 Request per batch by writing a binding into the v6
    /// table, as the AF_XDP responder does in ack mode (and so reports the batch as needing
    /// a commit), and records each reply it sends with the v6 log's (commits, entries) by
    /// then.
    struct V6Io {
        v6: Arc<GatedV6>,
        to_answer: u8,
        wrote: bool,
        sent: Sent,
    }

    /// Each reply sent, with the v6 log's (commits, entries) at that moment.
    type Sent = Arc<Mutex<Vec<(u8, (u64, u64))>>>;

    impl PacketIo for V6Io {
        type Reply = u8;
        const IDLE_SPINS: u32 = 4;

        fn recv_batch<R>(
            &mut self,
            _max: usize,
            replies: &mut Vec<u8>,
            holds: &mut Vec<ReplyHold>,
            _respond: R,
        ) -> usize
        where
            R: FnMut(&RxMeta, &[u8], &mut [u8]) -> Decision,
        {
            if self.to_answer == 0 {
                return 0;
            }
            let n = self.to_answer;
            self.to_answer -= 1;
            let mut addr = [0u8; 16];
            addr[0] = 0xfd;
            addr[15] = n;
            let mut b = Binding6::new(IaKind::Na, b"client-duid", u32::from(n), addr, 128);
            b.state = BindingState::Active;
            b.valid = 3600;
            b.expiry = 2_000_000_000;
            let put = self.v6.table().lock().put(None, &b);
            assert!(put.is_ok(), "v6 table full");
            self.wrote = true;
            replies.push(n);
            holds.push(ReplyHold::Wait);
            1
        }

        fn send(&mut self, r: u8, _counters: &WorkerCounters) {
            let st = self.v6.table().log().expect("a log").stats();
            self.sent
                .lock()
                .unwrap()
                .push((r, (st.commits, st.entries)));
        }

        fn discard(&mut self, _r: u8) {}
        fn flush(&mut self, _counters: &WorkerCounters) {}
        fn fd(&self) -> std::os::fd::RawFd {
            -1
        }
        fn wait_readable(&self, timeout_ms: i32) {
            std::thread::sleep(Duration::from_millis(timeout_ms as u64));
        }
        fn frame_drops(&self) -> u64 {
            0
        }
        fn take_needs_commit(&mut self) -> bool {
            std::mem::take(&mut self.wrote)
        }
    }

    /// The test bed of the worker tests: the demo's dual-stack configuration, its lease table,
    /// an engine, and a committer whose group commit waits on a closed gate (the v6 step).
    struct Bed {
        _dir: tempfile::TempDir,
        shared: Arc<EngineShared>,
        engine: Engine,
        gate: Arc<GatedV6>,
        committer: Arc<Committer>,
        commit_stop: Arc<AtomicBool>,
        commit_thread: std::thread::JoinHandle<()>,
    }

    fn bed() -> Bed {
        let dir = tempfile::tempdir().unwrap();
        let cfg = Arc::new(
            xdhcpd_config::parse(xdhcpd_config::DUAL_STACK_CONFIG, "dual-stack.toml")
                .unwrap_or_else(|e| panic!("{e}")),
        );
        let pools: Vec<PoolSpec> = cfg
            .pool_specs()
            .into_iter()
            .map(|(id, first, last)| PoolSpec { id, first, last })
            .collect();
        let (table, _) =
            LeaseTable::open(&dir.path().join("l.db"), &pools, &OpenOptions::default()).unwrap();
        let table = Arc::new(table);
        let shared = Arc::new(EngineShared::new(
            cfg.clone(),
            table.clone(),
            std::net::Ipv4Addr::new(10, 77, 0, 1),
        ));
        let engine = Engine::new(shared.clone(), 0, Arc::new(EngineStats::default()));
        let (t6, _) = BindingTable6::open_with(
            &dir.path().join("v6.db"),
            64,
            true,
            Some(lease_store::MIN_WAL_BYTES),
        )
        .unwrap();
        let iface = Interface {
            name: "xd-srv0".into(),
            index: 42,
            mac: [2, 0, 0, 0, 0, 1],
            ipv4: None,
            rx_queues: 1,
        };
        let engine6 = Engine6::new(
            engine_config(&cfg, &iface).unwrap(),
            xdhcpd_dhcpv6::duid_en(4491, b"worker-test"),
            Arc::new(Stats6::default()),
        );
        let gate = Arc::new(GatedV6 {
            v6: Arc::new(V6Server::new(
                engine6,
                SharedTable6::new(t6),
                true,
                iface.index,
            )),
            open: AtomicBool::new(false),
        });
        let committer = Arc::new(Committer::new());
        let commit_stop = Arc::new(AtomicBool::new(false));
        let commit_thread = commit::spawn(
            committer.clone(),
            table,
            Some(gate.clone() as Arc<dyn Durable>),
            commit_stop.clone(),
        )
        .unwrap();
        Bed {
            _dir: dir,
            shared,
            engine,
            gate,
            committer,
            commit_stop,
            commit_thread,
        }
    }

    #[test]
    fn worker_holds_dhcpv6_commit_replies_until_the_committer_logged_the_bindings() {
        let Bed {
            _dir,
            shared,
            engine,
            gate: v6,
            committer: c,
            commit_stop,
            commit_thread: ch,
        } = bed();
        let sent = Arc::new(Mutex::new(Vec::new()));
        let io = V6Io {
            v6: v6.clone(),
            to_answer: 3,
            wrote: false,
            sent: sent.clone(),
        };
        let stop = Arc::new(AtomicBool::new(false));
        let ops = WorkerOps {
            config: Arc::new(EngineCell::new(shared)),
            events: None,
        };
        let (s, counters) = (stop.clone(), Arc::new(WorkerCounters::default()));
        let wh =
            std::thread::spawn(move || run_worker(io, engine, Some(c), s, counters, None, ops));
        // The committer is stalled: the worker answered (the bindings are in the table,
        // not yet flushed) but no Reply may leave.
        std::thread::sleep(Duration::from_millis(300));
        assert!(
            sent.lock().unwrap().is_empty(),
            "a DHCPv6 Reply left before its binding was flushed: {:?}",
            sent.lock().unwrap()
        );
        assert_eq!(
            v6.table().lock().len(),
            3,
            "the worker did not go on serving"
        );
        assert_eq!(
            v6.table().log().unwrap().stats().entries,
            0,
            "nothing logged yet"
        );
        // The committer proceeds: every Reply leaves, each after a log commit that covers
        // its binding (the k-th Reply after at least k entries).
        v6.open.store(true, Ordering::SeqCst);
        let t0 = Instant::now();
        while sent.lock().unwrap().len() < 3 {
            assert!(t0.elapsed() < Duration::from_secs(10), "replies never left");
            std::thread::sleep(Duration::from_millis(2));
        }
        let got = sent.lock().unwrap().clone();
        for (k, &(_, (commits, entries))) in got.iter().enumerate() {
            assert!(commits >= 1 && entries > k as u64, "{got:?}");
        }
        stop.store(true, Ordering::SeqCst);
        wh.join().unwrap();
        commit_stop.store(true, Ordering::SeqCst);
        ch.join().unwrap();
    }

    /// DHCPv6 frames answered by the AF_XDP driver's own [`FrameResponder`] (the daemon's
    /// DHCPv6 path: engine, v6 table and its log, reply framed in place), one message per
    /// batch: Solicit and Request of client 1, then Solicit of client 2. Each reply's message
    /// type is recorded when the worker sends it, with the v6 log's entries by then.
    struct V6FrameIo {
        frames: FrameResponder,
        v6: Arc<GatedV6>,
        step: u8,
        wrote: bool,
        sent: Sent,
    }

    /// A direct (multicast) DHCPv6 message of client `c` in a whole Ethernet/IPv6/UDP frame,
    /// at the start of a 2 KiB buffer (room for the reply); with the frame's length.
    fn v6_frame(typ: u8, c: u8, server_duid: Option<&[u8]>) -> (Vec<u8>, usize) {
        let mut f = vec![0u8; 2048];
        let off = frame::ipv6_payload_offset(0);
        let mut w = Writer::new(&mut f[off..]);
        w.header(typ, [0, 0, c]);
        w.option(opt::CLIENTID, &[0, 3, 0, 1, 2, 0, 0, 0, 0xc6, c]);
        if let Some(d) = server_duid {
            w.option(opt::SERVERID, d);
        }
        w.option(opt::ELAPSED_TIME, &[0, 0]);
        w.open_ia(opt::IA_NA, 1, 0, 0);
        w.close();
        let len = w.finish().expect("a small message");
        let addrs = Ipv6UdpAddrs {
            src_mac: [2, 0, 0, 0, 0xc6, c],
            dst_mac: [0x33, 0x33, 0, 1, 0, 2],
            src_ip: std::net::Ipv6Addr::new(0xfe80, 0, 0, 0, 0, 0, 0xc6, u16::from(c)),
            dst_ip: crate::server::v6::ALL_SERVERS_AND_RELAYS,
            src_port: 546,
            dst_port: 547,
        };
        let n = frame::write_ipv6_udp_headers(&mut f, &[], &addrs, len).expect("fits");
        (f, n)
    }

    impl PacketIo for V6FrameIo {
        type Reply = u8;
        const IDLE_SPINS: u32 = 4;

        fn recv_batch<R>(
            &mut self,
            _max: usize,
            replies: &mut Vec<u8>,
            holds: &mut Vec<ReplyHold>,
            mut respond: R,
        ) -> usize
        where
            R: FnMut(&RxMeta, &[u8], &mut [u8]) -> Decision,
        {
            let duid = self.v6.v6.server_duid().to_vec();
            let (mut f, len) = match self.step {
                0 => v6_frame(msg::SOLICIT, 1, None),
                1 => v6_frame(msg::REQUEST, 1, Some(&duid)),
                2 => v6_frame(msg::SOLICIT, 2, None),
                _ => return 0,
            };
            self.step += 1;
            let before = self.frames.v6_committed;
            if self.frames.answer(&mut f, len, &mut respond).is_some() {
                replies.push(f[frame::ipv6_payload_offset(0)]);
                holds.push(self.frames.last_hold());
            }
            self.wrote |= self.frames.v6_committed != before;
            1
        }

        fn send(&mut self, r: u8, _counters: &WorkerCounters) {
            let st = self.v6.table().log().expect("a log").stats();
            self.sent
                .lock()
                .unwrap()
                .push((r, (st.commits, st.entries)));
        }
        fn discard(&mut self, _r: u8) {}
        fn flush(&mut self, _counters: &WorkerCounters) {}
        fn fd(&self) -> std::os::fd::RawFd {
            -1
        }
        fn wait_readable(&self, timeout_ms: i32) {
            std::thread::sleep(Duration::from_millis(timeout_ms as u64));
        }
        fn frame_drops(&self) -> u64 {
            0
        }
        fn take_needs_commit(&mut self) -> bool {
            std::mem::take(&mut self.wrote)
        }
    }

    /// Issue 14 / issue 18 item 5 for DHCPv6: an Advertise (a Solicit writes no binding)
    /// leaves while an earlier client's Reply still waits for the commit of its binding; the
    /// Reply leaves only after the commit.
    #[test]
    fn worker_sends_dhcpv6_advertises_at_once_while_replies_wait_for_their_commit() {
        let Bed {
            _dir,
            shared,
            engine,
            gate,
            committer: c,
            commit_stop,
            commit_thread: ch,
        } = bed();
        let sent = Arc::new(Mutex::new(Vec::new()));
        let io = V6FrameIo {
            frames: FrameResponder::new(
                [2, 0, 0, 0, 0, 1],
                std::net::Ipv4Addr::new(10, 77, 0, 1),
                std::net::Ipv4Addr::new(10, 77, 0, 1),
            )
            .with_v6(Some(gate.v6.clone())),
            v6: gate.clone(),
            step: 0,
            wrote: false,
            sent: sent.clone(),
        };
        let stop = Arc::new(AtomicBool::new(false));
        let ops = WorkerOps {
            config: Arc::new(EngineCell::new(shared)),
            events: None,
        };
        let (s, counters) = (stop.clone(), Arc::new(WorkerCounters::default()));
        let wh =
            std::thread::spawn(move || run_worker(io, engine, Some(c), s, counters, None, ops));
        std::thread::sleep(Duration::from_millis(300));
        let types = |v: &[(u8, (u64, u64))]| v.iter().map(|x| x.0).collect::<Vec<u8>>();
        assert_eq!(
            types(&sent.lock().unwrap()),
            vec![msg::ADVERTISE, msg::ADVERTISE],
            "client 2's Advertise waited behind client 1's Reply, or the Reply left before its \
             commit"
        );
        assert_eq!(
            gate.table().lock().len(),
            1,
            "client 1's binding is in the table"
        );
        gate.open.store(true, Ordering::SeqCst);
        let t0 = Instant::now();
        while sent.lock().unwrap().len() < 3 {
            assert!(
                t0.elapsed() < Duration::from_secs(10),
                "the Reply never left"
            );
            std::thread::sleep(Duration::from_millis(2));
        }
        let got = sent.lock().unwrap().clone();
        assert_eq!(got[2].0, msg::REPLY);
        let (commits, entries) = got[2].1;
        assert!(
            commits >= 1 && entries >= 1,
            "the Reply left before its binding was logged: {got:?}"
        );
        stop.store(true, Ordering::SeqCst);
        wh.join().unwrap();
        commit_stop.store(true, Ordering::SeqCst);
        ch.join().unwrap();
    }

    /// A DHCPv4 client exchange fed to the worker one message per batch: DISCOVER and
    /// REQUEST of client 1, then DISCOVER of client 2. Each reply's message type is recorded
    /// when the worker sends it.
    struct V4Io {
        step: u8,
        offered: [u8; 4],
        sent: Arc<Mutex<Vec<MessageType>>>,
    }

    /// A BOOTREQUEST from client `mac` with the given options (type first).
    fn v4_request(mac: u8, opts: &[(u8, &[u8])]) -> Vec<u8> {
        let mut m = vec![0u8; 236];
        m[0] = 1; // BOOTREQUEST
        m[1] = 1; // Ethernet
        m[2] = 6;
        m[4..8].copy_from_slice(&[0, 0, 0, mac]); // xid
        m[10] = 0x80; // broadcast flag
        m[28..34].copy_from_slice(&[0x02, 0, 0, 0, 0, mac]);
        m.extend_from_slice(&[99, 130, 83, 99]);
        for (code, v) in opts {
            m.push(*code);
            m.push(v.len() as u8);
            m.extend_from_slice(v);
        }
        m.push(255);
        m
    }

    impl PacketIo for V4Io {
        type Reply = MessageType;
        const IDLE_SPINS: u32 = 4;

        fn recv_batch<R>(
            &mut self,
            _max: usize,
            replies: &mut Vec<MessageType>,
            holds: &mut Vec<ReplyHold>,
            mut respond: R,
        ) -> usize
        where
            R: FnMut(&RxMeta, &[u8], &mut [u8]) -> Decision,
        {
            let server = [10, 77, 0, 1];
            let msg = match self.step {
                0 => v4_request(1, &[(53, &[1])]),
                1 => v4_request(1, &[(53, &[3]), (54, &server), (50, &self.offered)]),
                2 => v4_request(2, &[(53, &[1])]),
                _ => return 0,
            };
            self.step += 1;
            let meta = RxMeta {
                local_addr: std::net::Ipv4Addr::from(server),
                src_ip: std::net::Ipv4Addr::UNSPECIFIED,
                dst_ip: std::net::Ipv4Addr::BROADCAST,
            };
            let mut out = [0u8; 1500];
            if let Decision::Reply { kind, .. } = respond(&meta, &msg, &mut out) {
                if self.step == 1 {
                    self.offered.copy_from_slice(&out[16..20]);
                }
                replies.push(kind);
                holds.push(ReplyHold::Respond);
            }
            1
        }

        fn send(&mut self, r: MessageType, _counters: &WorkerCounters) {
            self.sent.lock().unwrap().push(r);
        }
        fn discard(&mut self, _r: MessageType) {}
        fn flush(&mut self, _counters: &WorkerCounters) {}
        fn fd(&self) -> std::os::fd::RawFd {
            -1
        }
        fn wait_readable(&self, timeout_ms: i32) {
            std::thread::sleep(Duration::from_millis(timeout_ms as u64));
        }
        fn frame_drops(&self) -> u64 {
            0
        }
    }

    /// Issue 18, item 5: no reply waits for a commit it does not need. An OFFER states
    /// nothing a crash could take back, so it leaves while an earlier ACK still waits for
    /// its commit; the ACK leaves only after the commit.
    #[test]
    fn worker_sends_offers_at_once_while_acks_wait_for_their_commit() {
        let Bed {
            _dir,
            shared,
            engine,
            gate,
            committer: c,
            commit_stop,
            commit_thread: ch,
        } = bed();
        let sent = Arc::new(Mutex::new(Vec::new()));
        let io = V4Io {
            step: 0,
            offered: [0; 4],
            sent: sent.clone(),
        };
        let stop = Arc::new(AtomicBool::new(false));
        let ops = WorkerOps {
            config: Arc::new(EngineCell::new(shared)),
            events: None,
        };
        let (s, counters) = (stop.clone(), Arc::new(WorkerCounters::default()));
        let wh =
            std::thread::spawn(move || run_worker(io, engine, Some(c), s, counters, None, ops));
        std::thread::sleep(Duration::from_millis(300));
        assert_eq!(
            *sent.lock().unwrap(),
            vec![MessageType::Offer, MessageType::Offer],
            "client 2's OFFER waited behind client 1's ACK, or the ACK left before its commit"
        );
        gate.open.store(true, Ordering::SeqCst);
        let t0 = Instant::now();
        while sent.lock().unwrap().len() < 3 {
            assert!(t0.elapsed() < Duration::from_secs(10), "the ACK never left");
            std::thread::sleep(Duration::from_millis(2));
        }
        assert_eq!(sent.lock().unwrap()[2], MessageType::Ack);
        stop.store(true, Ordering::SeqCst);
        wh.join().unwrap();
        commit_stop.store(true, Ordering::SeqCst);
        ch.join().unwrap();
    }
}
