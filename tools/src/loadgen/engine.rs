//! The per-thread engine: simulated clients' state machines, rate control,
//! timeouts, reply matching and statistics, over any [`Port`].
//!
//! Hot-path data is flat and preallocated: clients live in a `Vec` indexed by
//! their local index (from the xid: `xid & 0xff_ffff` is the global client
//! index `g`, owned by thread `g % threads` at local index `g / threads`);
//! the send queue and the timeout FIFO are ring buffers reserved up front.
//! Replies that arrive on another thread's socket are parsed there and
//! forwarded as a small `Reply` value through a bounded channel.

use std::collections::VecDeque;
use std::net::{Ipv4Addr, Ipv6Addr};
use std::sync::atomic::Ordering::Relaxed;
use std::sync::mpsc::{Receiver, SyncSender, TrySendError};
use std::sync::Arc;

use xdhcpd_dhcpv4::wire::MessageType;

use super::acklog::{self, AckLog};
use super::addrbook::AckCheck;
use super::forcerenew::{self, FrAuth};
use super::port::{Port, TxOutcome, BATCH};
use super::reply::{parse_reply_payload, Reply};
use super::request::{self, client_mac, relay_info, Msg, Peer, Relay, RequestSpec};
use super::scenario::{Phase, PhaseStats, Scenario, PHASES};
use super::shared::{EngineConfig, Shared, ThreadReport, ThreadTotals};
use super::v6::{self, Msg6, Spec6, V6Config, MAX_DUID};

/// Largest number of simulated clients: the global index lives in the low
/// 24 bits of the xid (the top 8 bits count exchanges per client).
pub const MAX_CLIENTS: u32 = 1 << 24;
const INDEX_MASK: u32 = MAX_CLIENTS - 1;

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum Step {
    Idle,
    Bound,
    NeedSend,
    WaitOffer,
    WaitAck,
}

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum Next {
    Discover,
    Select,
    Renew,
    InitReboot,
    Release,
}

/// One simulated client (48 bytes; 120 with the DHCPv6 fields).
#[derive(Clone, Copy, Debug)]
struct Client {
    step: Step,
    next: Next,
    phase: Phase,
    tries: u8,
    xid: u32,
    /// Bumped on every send; a timeout entry is live only while it matches.
    seq: u32,
    offered: Ipv4Addr,
    server_id: Ipv4Addr,
    bound: Ipv4Addr,
    started_ns: u64,
    /// DHCPv6: what the Advertise offered (address, prefix and its length)...
    off6: Ipv6Addr,
    off_pd6: Ipv6Addr,
    off_pd_len: u8,
    /// ... and what the last Reply bound (`bound6` says whether anything is).
    addr6: Ipv6Addr,
    pd6: Ipv6Addr,
    pd_len: u8,
    bound6: bool,
    /// `--scenario forcerenew`: the replay value of the last authenticated message taken
    /// (ACK or FORCERENEW; RFC 3118 RDM 0), the address held when the FORCERENEW came,
    /// and where the reconfiguration stands.
    replay: u64,
    from: Ipv4Addr,
    reconf: Reconf,
}

/// Where a client's reconfiguration stands (`--scenario forcerenew`).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum Reconf {
    None,
    Started,
    /// New ACK after NAK and DISCOVER.
    Done,
    /// The renewal was ACKed: the server kept the binding.
    Kept,
}

impl Client {
    fn is_bound(&self) -> bool {
        !self.bound.is_unspecified() || self.bound6
    }
}

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum Mode {
    Warmup,
    /// Waiting for the other threads to finish their warm-up.
    WarmWait,
    Main,
    Drain,
    Done,
}

const MAX_DUP_EXAMPLES: usize = 8;

/// One thread's engine.
pub struct Engine<P: Port> {
    port: P,
    core: Core,
}

struct Core {
    sh: Arc<Shared>,
    me: u32,
    clients: Vec<Client>,
    pending: VecDeque<u32>,
    /// (local index, seq, deadline ns), in deadline order (the timeout is constant).
    timeouts: VecDeque<(u32, u32, u64)>,
    cursor: u32,
    outstanding: u64,
    mode: Mode,
    stats: Vec<PhaseStats>,
    totals: ThreadTotals,
    server: Option<(Ipv4Addr, [u8; 6])>,
    inbox: Receiver<Reply>,
    outboxes: Vec<SyncSender<Reply>>,
    /// Measured-phase limits of this thread.
    concurrency: u64,
    rate_per_s: Option<u64>,
    count: Option<u64>,
    main_phase: Phase,
    /// Starts made in the current phase (for rate and count).
    started: u64,
    phase_start_ns: u64,
    /// Warm-up: next local index to start.
    warm_next: u32,
    drain_deadline: u64,
    now: u64,
    /// `--acked-log`: the shared file and this thread's pending lines.
    ack_log: Option<(Arc<AckLog>, Vec<u8>)>,
    /// DHCPv6 mode (`--dhcpv6`).
    v6: Option<V6Config>,
    /// DHCPv6: the server's DUID, learnt from the first Advertise.
    server_duid: Option<([u8; MAX_DUID], u8)>,
}

impl<P: Port> Engine<P> {
    /// `inbox` receives replies other threads got for our clients;
    /// `outboxes[t]` sends to thread `t`.
    pub fn new(
        port: P,
        sh: Arc<Shared>,
        me: u32,
        inbox: Receiver<Reply>,
        outboxes: Vec<SyncSender<Reply>>,
    ) -> Self {
        let cfg = &sh.cfg;
        let n = cfg.clients_of(me);
        let threads = cfg.threads;
        let clients = (0..n)
            .map(|l| {
                let g = l * threads + me;
                Client {
                    step: Step::Idle,
                    next: Next::Discover,
                    phase: Phase::Dora,
                    tries: 0,
                    xid: g,
                    seq: 0,
                    offered: Ipv4Addr::UNSPECIFIED,
                    server_id: Ipv4Addr::UNSPECIFIED,
                    bound: Ipv4Addr::UNSPECIFIED,
                    started_ns: 0,
                    off6: Ipv6Addr::UNSPECIFIED,
                    off_pd6: Ipv6Addr::UNSPECIFIED,
                    off_pd_len: 0,
                    addr6: Ipv6Addr::UNSPECIFIED,
                    pd6: Ipv6Addr::UNSPECIFIED,
                    pd_len: 0,
                    bound6: false,
                    replay: 0,
                    from: Ipv4Addr::UNSPECIFIED,
                    reconf: Reconf::None,
                }
            })
            .collect();
        let concurrency = match (cfg.concurrency, cfg.rate) {
            (Some(c), _) => cfg.share(u64::from(c), me).max(1),
            // Open loop: outstanding is bounded only by the clients.
            (None, Some(_)) => u64::MAX,
            (None, None) => cfg.share(256, me).max(1),
        };
        let main_phase = match cfg.scenario {
            Scenario::Dora | Scenario::DoraRenew | Scenario::Release => Phase::Dora,
            Scenario::Renew => Phase::Renew,
            Scenario::InitReboot => Phase::InitReboot,
            Scenario::ForceRenew => Phase::Reconfigure,
        };
        let stats = vec![PhaseStats::default(); PHASES];
        let rate_per_s = cfg.rate.map(|r| cfg.share(r, me));
        let count = cfg.count.map(|c| cfg.share(c, me));
        let server = sh.peer.server;
        let mode = if cfg.scenario.needs_warmup() && !cfg.self_test {
            Mode::Warmup
        } else {
            Mode::Main
        };
        let cap = (n as usize).min(1 << 20) + BATCH;
        Engine {
            port,
            core: Core {
                me,
                clients,
                pending: VecDeque::with_capacity(cap),
                timeouts: VecDeque::with_capacity(cap * 2),
                cursor: 0,
                outstanding: 0,
                mode,
                stats,
                totals: ThreadTotals::default(),
                server,
                inbox,
                outboxes,
                concurrency,
                rate_per_s,
                count,
                main_phase,
                started: 0,
                phase_start_ns: 0,
                warm_next: 0,
                drain_deadline: 0,
                now: 0,
                ack_log: None,
                v6: cfg.v6,
                server_duid: None,
                sh,
            },
        }
    }

    /// Records every ACK this thread's clients receive in `log` (see
    /// [`acklog`]): the lines of one loop iteration are appended together.
    pub fn with_ack_log(mut self, log: Arc<AckLog>) -> Self {
        self.core.ack_log = Some((log, Vec::with_capacity(BATCH * 48)));
        self
    }

    /// Runs until the measured phase is over and every exchange is answered
    /// or timed out (or `stop` is set).
    pub fn run(mut self) -> std::io::Result<ThreadReport> {
        let c = &mut self.core;
        c.now = c.sh.now_ns();
        let start = c.now;
        c.enter_phase_start();
        if c.sh.cfg.self_test {
            return self.blast(start);
        }
        let result = self.main_loop();
        let c = &mut self.core;
        c.totals.kernel_rx_drops = self.port.kernel_rx_drops();
        c.totals.port = self.port.describe();
        c.totals.wall_ns = c.sh.now_ns().saturating_sub(start);
        if c.main_phase == Phase::Reconfigure {
            c.reconf_tally();
        }
        let live = &c.sh.live[c.me as usize];
        live.done.store(true, Relaxed);
        if let Err(e) = result {
            // Let the other threads finish cleanly, then report the error.
            c.sh.stop.store(true, Relaxed);
            return Err(e);
        }
        Ok(ThreadReport {
            phases: std::mem::take(&mut c.stats),
            totals: std::mem::take(&mut c.totals),
            blast: None,
        })
    }

    fn main_loop(&mut self) -> std::io::Result<()> {
        loop {
            let now = self.core.sh.now_ns();
            self.core.now = now;
            let core = &mut self.core;
            let rx = self.port.recv_batch(|f| core.on_frame(f))?;
            while let Ok(r) = core.inbox.try_recv() {
                core.on_reply(&r);
            }
            // The ACKs of this batch reach the log before anything else is sent.
            if let Some((log, buf)) = &mut core.ack_log {
                log.append(buf)?;
            }
            core.expire();
            core.advance_mode();
            if core.mode == Mode::Done {
                self.port.flush()?;
                return Ok(());
            }
            let mut tx = 0;
            while tx < BATCH {
                match self.port.send_with(|buf| core.next_frame(buf))? {
                    TxOutcome::Queued => tx += 1,
                    TxOutcome::NoRoom | TxOutcome::Nothing => break,
                }
            }
            self.port.flush()?;
            core.totals.tx_packets += tx as u64;
            if rx > 0 || tx > 0 {
                core.totals.busy_ns += core.sh.now_ns().saturating_sub(now);
            }
            core.publish();
        }
    }

    /// Self-test: DISCOVERs to broadcast as fast as the port takes them.
    fn blast(mut self, start: u64) -> std::io::Result<ThreadReport> {
        let sh = self.core.sh.clone();
        let cfg = &sh.cfg;
        let limit = self.core.count;
        let mut sent = 0u64;
        let mut gen = 0u32;
        let n = self.core.clients.len().max(1) as u32;
        let peer = sh.peer;
        let mut i = 0u32;
        loop {
            let now = sh.now_ns();
            let over = cfg.duration_ns.is_some_and(|d| now - start >= d)
                || limit.is_some_and(|l| sent >= l)
                || sh.stop.load(Relaxed);
            if over {
                break;
            }
            let _ = self.port.recv_batch(|_| {})?;
            let mut tx = 0;
            while tx < BATCH {
                let g = (i % n) * cfg.threads + self.core.me;
                if let Some(v) = &cfg.v6 {
                    let spec = Spec6 {
                        msg: Msg6::Solicit,
                        xid: v6::wire_xid((gen << 24) | g),
                        mac: client_mac(cfg.mac_salt, g),
                        index: g,
                        ia_na: v.ia_na,
                        ia_pd: v.ia_pd,
                        addr: None,
                        prefix: None,
                        server_duid: None,
                    };
                    let mac = peer.iface_mac;
                    match self
                        .port
                        .send_with(|buf| v6::write_frame(buf, &spec, v.relay.as_ref(), mac).ok())?
                    {
                        TxOutcome::Queued => tx += 1,
                        _ => break,
                    }
                    i = i.wrapping_add(1);
                    if i.is_multiple_of(n) {
                        gen = (gen + 1) & 0xff;
                    }
                    continue;
                }
                let spec = RequestSpec {
                    msg: Msg::Discover,
                    xid: (gen << 24) | g,
                    mac: client_mac(cfg.mac_salt, g),
                    client_id: cfg.client_id,
                    broadcast: cfg.broadcast,
                    relay: cfg.relay.map(|giaddr| Relay {
                        relay_id: cfg.relay_id,
                        ..relay_info(giaddr, g, cfg.mac_salt)
                    }),
                    nonce: false,
                };
                let Some(addrs) = request::addressing(&spec, &peer) else {
                    break;
                };
                match self
                    .port
                    .send_with(|buf| request::write_frame(buf, &spec, &addrs).ok())?
                {
                    TxOutcome::Queued => tx += 1,
                    _ => break,
                }
                i = i.wrapping_add(1);
                if i.is_multiple_of(n) {
                    gen = (gen + 1) & 0xff;
                }
            }
            self.port.flush()?;
            sent += tx as u64;
            let live = &sh.live[self.core.me as usize];
            live.tx_packets.store(sent, Relaxed);
            live.sent.store(sent, Relaxed);
        }
        let took = sh.now_ns() - start;
        let live = &sh.live[self.core.me as usize];
        live.done.store(true, Relaxed);
        self.core.totals.tx_packets = sent;
        self.core.totals.wall_ns = took;
        self.core.totals.busy_ns = took;
        self.core.totals.port = self.port.describe();
        Ok(ThreadReport {
            phases: std::mem::take(&mut self.core.stats),
            totals: std::mem::take(&mut self.core.totals),
            blast: Some((sent, took)),
        })
    }
}

impl Core {
    fn cfg(&self) -> &EngineConfig {
        &self.sh.cfg
    }

    fn phase_now(&self) -> Phase {
        if matches!(self.mode, Mode::Warmup | Mode::WarmWait) {
            Phase::WarmupDora
        } else {
            self.main_phase
        }
    }

    fn enter_phase_start(&mut self) {
        let p = self.phase_now();
        self.phase_start_ns = self.now;
        self.started = 0;
        self.stats[p as usize].start_ns = self.now;
        self.sh.live[self.me as usize]
            .phase
            .store(p as u32, Relaxed);
    }

    fn publish(&self) {
        let l = &self.sh.live[self.me as usize];
        let (mut sent, mut answered, mut drops, mut naks) = (0, 0, 0, 0);
        for s in &self.stats {
            sent += s.counts.sent;
            answered += s.counts.answered;
            drops += s.counts.drops;
            naks += s.counts.naks;
        }
        l.sent.store(sent, Relaxed);
        l.answered.store(answered, Relaxed);
        l.drops.store(drops, Relaxed);
        l.naks.store(naks, Relaxed);
        l.tx_packets.store(self.totals.tx_packets, Relaxed);
        l.rx_frames.store(self.totals.rx_frames, Relaxed);
        l.outstanding.store(self.outstanding, Relaxed);
        l.busy_ns.store(self.totals.busy_ns, Relaxed);
    }

    fn on_frame(&mut self, frame: &[u8]) {
        self.totals.rx_frames += 1;
        let parsed = if self.v6.is_some() {
            v6::parse_reply(frame)
        } else {
            parse_reply_payload(frame).map(|(mut r, msg)| {
                if r.kind == MessageType::ForceRenew {
                    // Verified here, by whichever thread received it, with the key its
                    // owner stored when it took the ACK.
                    let key = self.sh.keys.get(r.xid & INDEX_MASK);
                    r.fr = Some(forcerenew::verify(msg, key.as_ref()));
                }
                r
            })
        };
        let Ok(r) = parsed else {
            self.totals.rx_other += 1;
            return;
        };
        let g = r.xid & INDEX_MASK;
        if g >= self.cfg().clients {
            self.totals.rx_stale += 1;
            return;
        }
        let owner = g % self.cfg().threads;
        if owner == self.me {
            self.on_reply(&r);
            return;
        }
        match self.outboxes[owner as usize].try_send(r) {
            Ok(()) => self.totals.forwarded += 1,
            Err(TrySendError::Full(_)) | Err(TrySendError::Disconnected(_)) => {
                self.totals.forward_lost += 1
            }
        }
    }

    fn on_reply(&mut self, r: &Reply) {
        let g = r.xid & INDEX_MASK;
        let threads = self.cfg().threads;
        let local = (g / threads) as usize;
        let salt = self.cfg().mac_salt;
        let Some(c) = self.clients.get(local).copied() else {
            self.totals.rx_stale += 1;
            return;
        };
        if r.kind == MessageType::ForceRenew && r.v6.is_none() {
            if r.chaddr != client_mac(salt, g) {
                self.totals.rx_stale += 1;
            } else {
                self.on_forcerenew(local, r.fr);
            }
            return;
        }
        if c.xid != r.xid || r.chaddr != client_mac(salt, g) {
            self.totals.rx_stale += 1;
            return;
        }
        let now = self.now;
        let mut kind = r.kind;
        if let (Some(r6), Some(v)) = (&r.v6, &self.v6) {
            if !matches!(c.step, Step::WaitOffer | Step::WaitAck) {
                self.totals.rx_stale += 1;
                return;
            }
            // Verify the answer: relayed ones echo the client's interface-id; Advertise and
            // Reply carry the server's DUID and what every IA asked for. Any failure ends
            // the exchange like a NAK and is counted by kind.
            let st = &mut self.stats[c.phase as usize].counts;
            if v.relay.is_some() && r6.interface_id != Some(Some(g)) {
                st.relay_errors += 1;
                kind = MessageType::Nak;
            } else if r6.status != 0 {
                st.status_errors += 1;
            } else if r6.server_duid_len == 0
                || (v.ia_na && r6.addr.is_none())
                || (v.ia_pd && r6.prefix.is_none())
            {
                st.incomplete += 1;
                kind = MessageType::Nak;
            }
        }
        match (kind, c.step) {
            (MessageType::Offer, Step::WaitOffer) if r.v6.is_some() => {
                let Some(r6) = r.v6 else { return };
                let st = &mut self.stats[c.phase as usize];
                st.counts.offers += 1;
                st.counts.rx_replies += 1;
                if self.server_duid.is_none() {
                    self.server_duid = Some((r6.server_duid, r6.server_duid_len));
                }
                let cl = &mut self.clients[local];
                if let Some((a, _)) = r6.addr {
                    cl.off6 = a;
                }
                if let Some((p, l, _)) = r6.prefix {
                    cl.off_pd6 = p;
                    cl.off_pd_len = l;
                }
                cl.next = Next::Select;
                cl.step = Step::NeedSend;
                cl.tries = 0;
                self.pending.push_back(local as u32);
            }
            (MessageType::Ack, Step::WaitAck) if r.v6.is_some() => {
                let Some(r6) = r.v6 else { return };
                let lat = now.saturating_sub(c.started_ns);
                let now_s = (now / 1_000_000_000) as u32;
                let mut dups = [None, None];
                if let Some((a, valid)) = r6.addr {
                    let exp = now_s.saturating_add(valid);
                    if let AckCheck::Duplicate { other } =
                        self.sh.book.ack(g, Ipv4Addr::from(v6::fold(a)), now_s, exp)
                    {
                        dups[0] = Some((a, other));
                    }
                }
                if let Some((p, _, valid)) = r6.prefix {
                    let exp = now_s.saturating_add(valid);
                    if let AckCheck::Duplicate { other } =
                        self.sh
                            .book_pd
                            .ack(g, Ipv4Addr::from(v6::fold(p)), now_s, exp)
                    {
                        dups[1] = Some((p, other));
                    }
                }
                let st = &mut self.stats[c.phase as usize];
                st.counts.rx_replies += 1;
                st.counts.answered += 1;
                st.counts.acks += 1;
                st.last_answer_ns = now;
                st.latency.record(lat);
                for (a, other) in dups.into_iter().flatten() {
                    st.counts.duplicates += 1;
                    if self.totals.duplicate_examples6.len() < MAX_DUP_EXAMPLES {
                        self.totals.duplicate_examples6.push((a, g, other));
                    }
                }
                self.outstanding = self.outstanding.saturating_sub(1);
                let cl = &mut self.clients[local];
                cl.step = Step::Bound;
                cl.bound6 = true;
                if let Some((a, _)) = r6.addr {
                    cl.addr6 = a;
                }
                if let Some((p, l, _)) = r6.prefix {
                    cl.pd6 = p;
                    cl.pd_len = l;
                }
                self.follow_up(local, c.phase);
            }
            (MessageType::Offer, Step::WaitOffer) => {
                let st = &mut self.stats[c.phase as usize];
                st.counts.offers += 1;
                st.counts.rx_replies += 1;
                if self.server.is_none() {
                    self.server = Some((r.server_id, r.src_mac));
                }
                let cl = &mut self.clients[local];
                cl.offered = r.yiaddr;
                cl.server_id = r.server_id;
                cl.next = Next::Select;
                cl.step = Step::NeedSend;
                cl.tries = 0;
                self.pending.push_back(local as u32);
            }
            (MessageType::Ack, Step::WaitAck) => {
                if self.server.is_none() {
                    self.server = Some((r.server_id, r.src_mac));
                }
                let lat = now.saturating_sub(c.started_ns);
                let now_s = (now / 1_000_000_000) as u32;
                let lease = r.lease_time.unwrap_or(3600);
                let expiry = now_s.saturating_add(lease);
                let mut dup = None;
                let bound_ok = !r.yiaddr.is_unspecified();
                if bound_ok {
                    if let AckCheck::Duplicate { other } =
                        self.sh.book.ack(g, r.yiaddr, now_s, expiry)
                    {
                        dup = Some(other);
                    }
                }
                if bound_ok {
                    if let Some((_, buf)) = &mut self.ack_log {
                        acklog::format_line(
                            buf,
                            acklog::unix_ms(),
                            &r.chaddr,
                            self.sh.cfg.client_id,
                            r.yiaddr,
                            r.lease_time.unwrap_or(0),
                        );
                    }
                }
                let st = &mut self.stats[c.phase as usize];
                st.counts.rx_replies += 1;
                st.counts.answered += 1;
                st.counts.acks += 1;
                st.last_answer_ns = now;
                st.latency.record(lat);
                if !bound_ok {
                    st.counts.bad_acks += 1;
                }
                if let Some(other) = dup {
                    st.counts.duplicates += 1;
                    if self.totals.duplicate_examples.len() < MAX_DUP_EXAMPLES {
                        self.totals.duplicate_examples.push((r.yiaddr, g, other));
                    }
                }
                self.outstanding = self.outstanding.saturating_sub(1);
                let cl = &mut self.clients[local];
                cl.step = if bound_ok { Step::Bound } else { Step::Idle };
                cl.bound = if bound_ok {
                    r.yiaddr
                } else {
                    Ipv4Addr::UNSPECIFIED
                };
                if cl.server_id.is_unspecified() {
                    cl.server_id = r.server_id;
                }
                if let Some((key, replay)) = r.key {
                    self.sh.keys.set(g, &key);
                    cl.replay = replay;
                    self.totals.reconf.keys_received += 1;
                }
                if c.phase == Phase::Reconfigure && bound_ok {
                    let rc = &mut self.totals.reconf;
                    if c.next == Next::Renew {
                        rc.renew_acks += 1;
                        cl.reconf = Reconf::Kept;
                    } else {
                        rc.completed += 1;
                        rc.moved += u64::from(r.yiaddr != c.from);
                        cl.reconf = Reconf::Done;
                    }
                    rc.last_ns = now;
                    self.sh.reconf_done.fetch_add(1, Relaxed);
                }
                self.follow_up(local, c.phase);
            }
            (MessageType::Nak, Step::WaitAck)
                if c.phase == Phase::Reconfigure && c.next == Next::Renew =>
            {
                // RFC 3203: the renewal NAKed; the client starts over with DISCOVER, in
                // the same (timed) exchange.
                self.totals.reconf.renew_naks += 1;
                self.stats[c.phase as usize].counts.rx_replies += 1;
                self.sh.book.release(g);
                let cl = &mut self.clients[local];
                cl.bound = Ipv4Addr::UNSPECIFIED;
                cl.next = Next::Discover;
                cl.step = Step::NeedSend;
                cl.tries = 0;
                cl.xid = next_xid(cl.xid);
                self.pending.push_back(local as u32);
            }
            (MessageType::Nak, Step::WaitAck) | (MessageType::Nak, Step::WaitOffer) => {
                let st = &mut self.stats[c.phase as usize];
                st.counts.rx_replies += 1;
                st.counts.answered += 1;
                st.counts.naks += 1;
                st.last_answer_ns = now;
                self.outstanding = self.outstanding.saturating_sub(1);
                self.sh.book.release(g);
                self.sh.book_pd.release(g);
                let cl = &mut self.clients[local];
                cl.step = Step::Idle;
                cl.bound = Ipv4Addr::UNSPECIFIED;
                cl.bound6 = false;
            }
            _ => self.totals.rx_stale += 1,
        }
    }

    /// What a finished exchange leads to, per scenario.
    fn follow_up(&mut self, local: usize, phase: Phase) {
        if phase != Phase::Dora {
            return;
        }
        // Follow-ups complete a started unit (DORA + renew, DORA + release),
        // so they are sent while draining too.
        if !matches!(self.mode, Mode::Main | Mode::Drain) {
            return;
        }
        let cl = &mut self.clients[local];
        if cl.step != Step::Bound {
            return;
        }
        match self.sh.cfg.scenario {
            Scenario::DoraRenew => {
                // A new exchange in the renew phase, started at once.
                cl.next = Next::Renew;
                cl.phase = Phase::Renew;
                cl.tries = 0;
                cl.step = Step::NeedSend;
                cl.xid = next_xid(cl.xid);
                cl.started_ns = self.now;
                self.outstanding += 1;
                self.pending.push_back(local as u32);
            }
            Scenario::Release => {
                cl.next = Next::Release;
                cl.phase = Phase::Release;
                cl.step = Step::NeedSend;
                self.pending.push_back(local as u32);
            }
            _ => {}
        }
    }

    /// Times out exchanges whose deadline passed: retransmit or count a drop.
    fn expire(&mut self) {
        let cfg_retries = self.cfg().retries;
        while let Some(&(local, seq, deadline)) = self.timeouts.front() {
            if deadline > self.now {
                break;
            }
            self.timeouts.pop_front();
            let c = &mut self.clients[local as usize];
            if c.seq != seq || !matches!(c.step, Step::WaitOffer | Step::WaitAck) {
                continue;
            }
            // Warm-up is not measured: give it a few tries so the measured
            // phase starts with as many bound clients as possible.
            let retries = if c.phase == Phase::WarmupDora {
                cfg_retries.max(2)
            } else {
                cfg_retries
            };
            if c.tries < retries {
                c.tries += 1;
                c.next = if c.step == Step::WaitOffer {
                    Next::Discover
                } else {
                    c.next
                };
                c.step = Step::NeedSend;
                self.stats[c.phase as usize].counts.retransmits += 1;
                self.pending.push_back(local);
                continue;
            }
            self.stats[c.phase as usize].counts.drops += 1;
            c.step = if c.is_bound() {
                Step::Bound
            } else {
                Step::Idle
            };
            self.outstanding = self.outstanding.saturating_sub(1);
        }
    }

    /// Phase changes: warm-up done, measured phase over, drain finished.
    fn advance_mode(&mut self) {
        let stop = self.sh.stop.load(Relaxed);
        match self.mode {
            Mode::Warmup => {
                let all_started = self.warm_next as usize >= self.clients.len();
                if (all_started && self.outstanding == 0 && self.pending.is_empty()) || stop {
                    self.stats[Phase::WarmupDora as usize].end_ns = self.now;
                    self.sh.warmed.fetch_add(1, Relaxed);
                    self.mode = Mode::WarmWait;
                }
            }
            Mode::WarmWait => {
                if stop {
                    self.mode = Mode::Done;
                } else if self.sh.warmed.load(Relaxed) >= self.cfg().threads {
                    self.mode = Mode::Main;
                    self.cursor = 0;
                    self.enter_phase_start();
                }
            }
            Mode::Main => {
                let elapsed = self.now.saturating_sub(self.phase_start_ns);
                let counted = if self.main_phase == Phase::Reconfigure {
                    // Clients do not start exchanges here: the FORCERENEWs do, on any
                    // thread; the run ends when `--count` reconfigurations ended overall.
                    self.cfg()
                        .count
                        .is_some_and(|c| self.sh.reconf_done.load(Relaxed) >= c)
                } else {
                    self.count.is_some_and(|c| self.started >= c)
                };
                let over = stop || self.cfg().duration_ns.is_some_and(|d| elapsed >= d) || counted;
                if over {
                    self.stats[self.main_phase as usize].end_ns = self.now;
                    if self.cfg().scenario == Scenario::DoraRenew {
                        self.stats[Phase::Renew as usize].end_ns = self.now;
                    }
                    self.mode = Mode::Drain;
                    let per_try = self.cfg().timeout_ns;
                    let mut tries = u64::from(self.cfg().retries) + 1;
                    if self.main_phase == Phase::Reconfigure {
                        // Renewal, then DISCOVER and REQUEST, each with its tries.
                        tries *= 3;
                    }
                    // Every outstanding exchange resolves within its remaining tries.
                    self.drain_deadline = self.now + per_try * tries * 2 + 1_000_000_000;
                }
            }
            Mode::Drain => {
                if (self.outstanding == 0 && self.pending.is_empty())
                    || self.now >= self.drain_deadline
                {
                    // Anything still open (only after the safety deadline) is a drop.
                    for c in &mut self.clients {
                        if matches!(c.step, Step::WaitOffer | Step::WaitAck | Step::NeedSend)
                            && c.next != Next::Release
                        {
                            self.stats[c.phase as usize].counts.drops += 1;
                            c.step = Step::Idle;
                        }
                    }
                    self.outstanding = 0;
                    self.mode = Mode::Done;
                }
            }
            Mode::Done => {}
        }
    }

    /// Builds the next frame to send into `buf`: first messages already due
    /// (REQUEST after OFFER, retransmits, follow-ups), then new exchanges as
    /// the rate / concurrency allow.
    fn next_frame(&mut self, buf: &mut [u8]) -> Option<usize> {
        loop {
            let local = match self.pending.pop_front() {
                Some(l) => l,
                None => self.start_exchange()?,
            };
            if let Some(len) = self.write_for(local, buf) {
                return Some(len);
            }
            // Could not be sent: already counted; try the next one.
        }
    }

    /// Picks a client for a new exchange and marks it started; None when the
    /// rate, concurrency, count or phase say not now.
    fn start_exchange(&mut self) -> Option<u32> {
        let phase = match self.mode {
            Mode::Warmup => Phase::WarmupDora,
            // FORCERENEW: the clients only listen (see `on_forcerenew`).
            Mode::Main if self.main_phase == Phase::Reconfigure => return None,
            Mode::Main => self.main_phase,
            _ => return None,
        };
        if self.outstanding >= self.concurrency {
            return None;
        }
        if let Some(c) = self.count {
            if self.mode == Mode::Main && self.started >= c {
                return None;
            }
        }
        if let Some(r) = self.rate_per_s {
            let elapsed = self.now.saturating_sub(self.phase_start_ns);
            let allowed = (u128::from(elapsed) * u128::from(r) / 1_000_000_000) as u64;
            if self.started >= allowed {
                return None;
            }
            // Open loop: a sender that fell far behind does not burst to
            // catch up; the missed starts are reported.
            let max_backlog = (r / 100).max(BATCH as u64 * 4);
            if allowed - self.started > max_backlog {
                let skip = allowed - self.started - max_backlog;
                self.stats[phase as usize].rate_deficit += skip;
                self.started += skip;
            }
        }
        let n = self.clients.len() as u32;
        if n == 0 {
            return None;
        }
        let local = if self.mode == Mode::Warmup {
            if self.warm_next >= n {
                return None;
            }
            self.warm_next += 1;
            self.warm_next - 1
        } else {
            // Round robin over clients free for this exchange; a short scan keeps
            // the cost bounded when most are busy.
            let mut found = None;
            for _ in 0..n.min(64) {
                let i = self.cursor;
                self.cursor = if self.cursor + 1 >= n {
                    0
                } else {
                    self.cursor + 1
                };
                let st = self.clients[i as usize].step;
                let ok = match phase {
                    Phase::Renew | Phase::InitReboot => st == Step::Bound,
                    _ => matches!(st, Step::Idle | Step::Bound),
                };
                if ok {
                    found = Some(i);
                    break;
                }
            }
            match found {
                Some(i) => i,
                None => {
                    self.stats[phase as usize].starved += 1;
                    return None;
                }
            }
        };
        self.started += 1;
        self.outstanding += 1;
        let now = self.now;
        let c = &mut self.clients[local as usize];
        c.phase = phase;
        c.tries = 0;
        c.xid = next_xid(c.xid);
        c.started_ns = now;
        c.next = match phase {
            Phase::Renew => Next::Renew,
            Phase::InitReboot => Next::InitReboot,
            _ => Next::Discover,
        };
        c.step = Step::NeedSend;
        Some(local)
    }

    /// A FORCERENEW for client `local`, verified by the receiving thread (`fr`): if it is
    /// authentic, newer than anything the client took, and the client is bound and idle
    /// while the run listens, the client renews at once (RFC 3203 §3: as if T1 expired).
    fn on_forcerenew(&mut self, local: usize, fr: Option<FrAuth>) {
        let rc = &mut self.totals.reconf;
        rc.forcerenews += 1;
        let replay = match fr {
            Some(FrAuth::Verified { replay }) => replay,
            Some(FrAuth::BadDigest) => return rc.bad_digest += 1,
            Some(FrAuth::NoKey) => return rc.no_key += 1,
            Some(FrAuth::Missing) => return rc.unauthenticated += 1,
            Some(FrAuth::Unsupported) | None => return rc.unsupported += 1,
        };
        rc.verified += 1;
        let listening = self.mode == Mode::Main && self.main_phase == Phase::Reconfigure;
        let Some(cl) = self.clients.get_mut(local) else {
            return;
        };
        if replay <= cl.replay {
            return rc.replayed += 1;
        }
        cl.replay = replay;
        if !listening || cl.step != Step::Bound || cl.bound.is_unspecified() {
            return rc.ignored += 1;
        }
        rc.started += 1;
        if rc.first_ns == 0 {
            rc.first_ns = self.now;
        }
        cl.from = cl.bound;
        cl.reconf = Reconf::Started;
        cl.phase = Phase::Reconfigure;
        cl.next = Next::Renew;
        cl.tries = 0;
        cl.xid = next_xid(cl.xid);
        cl.started_ns = self.now;
        cl.step = Step::NeedSend;
        self.outstanding += 1;
        self.started += 1;
        self.stats[Phase::Reconfigure as usize].counts.sent += 1;
        self.pending.push_back(local as u32);
    }

    /// End of a `forcerenew` run: where each of this thread's clients ended.
    fn reconf_tally(&mut self) {
        let rc = &mut self.totals.reconf;
        for c in &self.clients {
            let bound = !c.bound.is_unspecified();
            match c.reconf {
                Reconf::None if bound => rc.not_reached += 1,
                Reconf::None => {}
                _ if !bound => rc.lost += 1,
                Reconf::Started => rc.unfinished += 1,
                Reconf::Done | Reconf::Kept => {}
            }
        }
    }

    /// Writes client `local`'s due message. None if it cannot be sent (counted).
    fn write_for(&mut self, local: u32, buf: &mut [u8]) -> Option<usize> {
        let threads = self.cfg().threads;
        let g = local * threads + self.me;
        let cfg = &self.sh.cfg;
        let c = self.clients[local as usize];
        if c.step != Step::NeedSend {
            return None;
        }
        if let Some(v) = &self.v6 {
            let (msg, addr, prefix) = match c.next {
                Next::Select => (Msg6::Request, c.off6, (c.off_pd6, c.off_pd_len)),
                Next::Renew => (Msg6::Renew, c.addr6, (c.pd6, c.pd_len)),
                // Release and init-reboot are refused for DHCPv6 before the run.
                _ => (
                    Msg6::Solicit,
                    Ipv6Addr::UNSPECIFIED,
                    (Ipv6Addr::UNSPECIFIED, 0),
                ),
            };
            let spec = Spec6 {
                msg,
                xid: v6::wire_xid(c.xid),
                mac: client_mac(cfg.mac_salt, g),
                index: g,
                ia_na: v.ia_na,
                ia_pd: v.ia_pd,
                addr: (!addr.is_unspecified()).then_some(addr),
                prefix: (!prefix.0.is_unspecified()).then_some(prefix),
                server_duid: self.server_duid,
            };
            let first = c.next != Next::Select && c.tries == 0;
            let len = v6::write_frame(buf, &spec, v.relay.as_ref(), self.sh.peer.iface_mac).ok();
            let st = &mut self.stats[c.phase as usize];
            let Some(len) = len else {
                st.counts.sent += u64::from(first);
                st.counts.unsendable += 1;
                st.counts.drops += 1;
                self.outstanding = self.outstanding.saturating_sub(1);
                let cl = &mut self.clients[local as usize];
                cl.step = if cl.is_bound() {
                    Step::Bound
                } else {
                    Step::Idle
                };
                return None;
            };
            st.counts.tx_packets += 1;
            st.counts.sent += u64::from(first);
            let cl = &mut self.clients[local as usize];
            cl.seq = cl.seq.wrapping_add(1);
            cl.step = if c.next == Next::Discover {
                Step::WaitOffer
            } else {
                Step::WaitAck
            };
            let deadline = self.now + self.sh.cfg.timeout_ns;
            self.timeouts.push_back((local, cl.seq, deadline));
            return Some(len);
        }
        let msg = match c.next {
            Next::Discover => Msg::Discover,
            Next::Select => Msg::Select {
                server_id: c.server_id,
                requested: c.offered,
            },
            Next::Renew => Msg::Renew { ciaddr: c.bound },
            Next::InitReboot => Msg::InitReboot { requested: c.bound },
            Next::Release => Msg::Release {
                ciaddr: c.bound,
                server_id: c.server_id,
            },
        };
        let spec = RequestSpec {
            msg,
            xid: c.xid,
            mac: client_mac(cfg.mac_salt, g),
            client_id: cfg.client_id,
            broadcast: cfg.broadcast,
            relay: cfg.relay.map(|giaddr| Relay {
                relay_id: cfg.relay_id,
                ..relay_info(giaddr, g, cfg.mac_salt)
            }),
            nonce: cfg.scenario == Scenario::ForceRenew,
        };
        let peer = Peer {
            server: self.server,
            iface_mac: self.sh.peer.iface_mac,
        };
        // A reconfiguration is one exchange from the FORCERENEW on (counted there).
        let first = c.next != Next::Select && c.tries == 0 && c.phase != Phase::Reconfigure;
        let written = request::addressing(&spec, &peer)
            .and_then(|a| request::write_frame(buf, &spec, &a).ok());
        let st = &mut self.stats[c.phase as usize];
        let Some(len) = written else {
            // No server address yet for a unicast message, or no room.
            if c.next == Next::Release {
                self.clients[local as usize].step = Step::Bound;
                return None;
            }
            st.counts.sent += u64::from(first);
            st.counts.unsendable += 1;
            st.counts.drops += 1;
            self.outstanding = self.outstanding.saturating_sub(1);
            let cl = &mut self.clients[local as usize];
            cl.step = if cl.is_bound() {
                Step::Bound
            } else {
                Step::Idle
            };
            return None;
        };
        st.counts.tx_packets += 1;
        let cl = &mut self.clients[local as usize];
        if c.next == Next::Release {
            st.counts.releases += 1;
            cl.step = Step::Idle;
            cl.bound = Ipv4Addr::UNSPECIFIED;
            self.sh.book.release(g);
            return Some(len);
        }
        st.counts.sent += u64::from(first);
        cl.seq = cl.seq.wrapping_add(1);
        cl.step = if c.next == Next::Discover {
            Step::WaitOffer
        } else {
            Step::WaitAck
        };
        let deadline = self.now + self.sh.cfg.timeout_ns;
        self.timeouts.push_back((local, cl.seq, deadline));
        Some(len)
    }
}

/// Next xid of a client: same index, next exchange number in the top byte.
fn next_xid(xid: u32) -> u32 {
    (xid & INDEX_MASK) | ((xid >> 24).wrapping_add(1) & 0xff) << 24
}
