//! The failover driver: owns the [`FailoverEngine`], the TCP connection to the partner and
//! every lease-table write failover makes. Runs a tokio current-thread runtime on its own OS
//! thread; DHCP workers only hand it changed slots through a bounded channel.
//!
//! Connection rules (draft-12 section 8.2): both partners listen on `address:port` and both
//! connect to `peer-address:peer-port` while they have no connection, retrying with backoff
//! (1 s doubling to 10 s); the secondary waits [`SECONDARY_DIAL_DELAY`] first, so the
//! primary's connection usually comes first. Whoever opened it, the primary sends CONNECT on
//! the connection (as ISC dhcpd does), so a pair also comes up when only the secondary can
//! reach the primary's listener (one-way firewall). An incoming connection from any other
//! address is closed and logged (at most [`REFUSALS_LOGGED`] lines per
//! [`REFUSAL_LOG_WINDOW`], then a count). With an xdhcpd partner every connection, either
//! way, first runs the pre-shared-key handshake (`auth.rs`); one that fails never reaches
//! the engine.
//!
//! Exactly one connection is kept, by one rule both sides apply alike: **an established
//! session (CONNECT/CONNECTACK and STATE exchanged) is never replaced**: a new connection
//! is closed while it lasts. The session ends only when it is dead (the engine's receive
//! timer, `poll-timeout`, closes it) or gone (closed or reset by the partner); then the next
//! connection is taken. Before the session is established, the primary's connection
//! replaces the secondary's and nothing else replaces anything, so when both dial at once
//! both keep the primary's. A partner that restarts closes its old connection with its
//! process; one whose host vanished is let back in after the receive timer.

use std::net::{IpAddr, SocketAddr};
use std::os::fd::{AsFd, AsRawFd, OwnedFd};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

use crossbeam_channel::Receiver;
use lease_store::{DirtySet, LeaseTable, Slot};
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::{TcpListener, TcpSocket, TcpStream};
use tokio::sync::mpsc;
use tokio::task::JoinHandle;
use xdhcpd_failover::{
    Action, BindingSync, FailoverEngine, McltFrom, PartnerDownAccepted, PolicyCell, RejectReason,
    Role, ServerState, UpdateId,
};

use super::auth;
use super::refusals::RefusalSummary;
use super::table_store::{PoolScope, TableStore};
use crate::clock::unix_now;
use crate::control::{fmt_time, FailoverStatus, Request, Response};
use xdhcpd_config::FailoverConfig;

/// Commands from other threads (control socket, daemon shutdown).
pub(crate) enum Command {
    Control(Request, std::sync::mpsc::SyncSender<Response>),
    /// Graceful stop: flush updates, send SHUTDOWN, close; then answer.
    Stop(Duration, std::sync::mpsc::SyncSender<()>),
}

pub(crate) enum Event {
    Connected {
        stream: TcpStream,
        from: SocketAddr,
        outgoing: bool,
    },
    /// An incoming connection from the partner's address failed the handshake.
    AuthFailed(SocketAddr, String),
    ConnectFailed(String),
    Bytes(u64, Vec<u8>),
    Closed(u64, String),
}

struct Link {
    gen: u64,
    tx: mpsc::UnboundedSender<Vec<u8>>,
    reader: JoinHandle<()>,
    writer: JoinHandle<()>,
    /// A duplicate of the socket, only for reading the kernel's round-trip time estimate.
    info_fd: Option<OwnedFd>,
}

/// How often the table is scanned for records the partner lacks that no worker reported
/// (leases the expiry sweeper ended).
const SCAN_EVERY: Duration = Duration::from_secs(5);
/// A partner binding written (or refused) in this round, confirmed after the group flush.
type Applied = (UpdateId, Result<(), (RejectReason, String)>);

/// How often the primary re-balances the pools in NORMAL.
const REBALANCE_EVERY: Duration = Duration::from_secs(3600);
/// Slots taken from the workers' channel per tick.
const DRAIN_MAX: usize = 65_536;
/// The driver's tick while workers report changes: drains them and writes coalesced output.
/// 2 ms rather than 1 halves the per-batch work on both partners (wake-ups, sends, the
/// secondary's flush and BNDACK): pair/standalone 88% -> 91% in 6-round runs, mean
/// queue-to-ack latency unchanged at 4-5 ms (benches/RESULTS.md).
const TICK: Duration = Duration::from_millis(2);
/// The tick after one that found no worker change (timers need no more). A standby secondary
/// then wakes 50 times a second instead of 500; the first change after a quiet spell waits
/// at most this long (lazy updates may; the MCLT rule bounds what the partner lacks).
const IDLE_TICK: Duration = Duration::from_millis(20);
/// Output is written to the partner at the next tick (<= 2 ms later) unless this much is
/// waiting. Writing every few messages at once cost one TCP send per ~10 bindings, and on the
/// sender's core each send also runs the partner's receive path (measured: TCP send and the
/// context switches around it were ~25% of both drivers' CPU at 40k bindings/s).
const COALESCE_BYTES: usize = 64 * 1024;

pub(crate) struct Driver {
    /// The lease event log's end: records the partner's updates changed.
    pub events: Option<crate::events::EventTap>,
    /// `[reconfigure] deferred-nak` at start: a takeover (PARTNER-DOWN) keeps the
    /// reconfiguring flags; without it the takeover clears them (the reconfigure spec).
    pub keep_reconfiguring: bool,
    /// The pools' balance settings as the last accepted reload left them (read on growth).
    pub pool_balance: Option<super::PoolBalanceCell>,
    pub engine: FailoverEngine,
    pub table: Arc<LeaseTable>,
    /// The pools of this relationship (all of the table's with one relationship covering
    /// every subnet); another relationship's records are never read, sent or written here.
    scope: PoolScope,
    /// Where the persisted state goes (shared by the relationships of an N:1 server; the
    /// single form's own area until the caller sets it).
    pub area: Arc<super::area::SharedArea>,
    pub cell: Arc<PolicyCell>,
    pub cfg: FailoverConfig,
    pub role: Role,
    pub changes: Receiver<Slot>,
    pub overflow: Arc<AtomicBool>,
    link: Option<Link>,
    gen: u64,
    ev_tx: mpsc::UnboundedSender<Event>,
    connecting: bool,
    backoff: Duration,
    next_connect: Instant,
    /// The current link was opened by the primary (see the connection rules above).
    link_by_primary: bool,
    /// What the partner has of our records, and every rule about it (the sans-IO crate's;
    /// the simulation runs the same code).
    sync: BindingSync<Instant>,
    lat_sum_ms: f64,
    lat_n: u64,
    next_scan: Instant,
    /// Primary: balance the pools (grant the backup its share) at the next chance. Set on
    /// entering NORMAL and hourly: ISC dhcpd as secondary never sends POOLREQ, it expects
    /// the primary to hand out BACKUP addresses by itself.
    rebalance_due: bool,
    next_rebalance: Instant,
    /// Address balance between the partners (grants, reclaims, exhaustion; `rebalance.rs`).
    balance: super::rebalance::Rebalancer,
    /// Slots drained from the workers in this tick (reused, so no allocation per tick).
    seen: Vec<Slot>,
    /// Encoded messages not yet handed to the writer (see [`COALESCE_BYTES`]).
    out: Vec<u8>,
    /// Write `out` at once instead of at the next tick (graceful stop).
    write_through: bool,
    /// The pre-shared key of an xdhcpd partner; `None` for ISC dhcpd (plain TCP).
    auth_key: Option<Arc<Vec<u8>>>,
    /// Rate limit of refusal log lines.
    refusals: RefusalLog,
    /// The lease file's storage has failed (sticky error): we hold no ACK and no BNDACK, so
    /// the link is closed and kept closed; the partner, COMMUNICATIONS-INTERRUPTED, serves
    /// alone until our writes succeed again.
    storage_down: bool,
    /// Records in the lease table when last looked (a reload that adds a pool or grows a
    /// range adds records: see [`Driver::follow_growth`]).
    table_len: u32,
    /// Ask the partner for its unacknowledged updates (UPDREQ) as soon as the state allows:
    /// our table grew, so updates it sent for the new addresses and we refused are wanted now.
    want_updreq: bool,
    /// Partner updates refused because the address is in none of our pools, and ours the
    /// partner refused for that reason (counters), each logged once per
    /// [`NOT_IN_POOL_LOG_EVERY`] with the count in between.
    refused_not_in_pool: u64,
    partner_refused_not_in_pool: u64,
    not_in_pool_log: [NotInPoolLog; 2],
    /// Other refusals (outdated binding information after a partition, conflicts): partner
    /// updates we refused and ours the partner refused, logged as one summary line per
    /// burst (`refusals.rs`), each address at debug level.
    refused_by_us: RefusalSummary,
    refused_by_partner: RefusalSummary,
}

/// See [`Driver::refused_not_in_pool`].
const NOT_IN_POOL_LOG_EVERY: Duration = Duration::from_secs(60);

/// One log line per [`NOT_IN_POOL_LOG_EVERY`] for refusals of one kind; the rest counted.
#[derive(Default)]
struct NotInPoolLog {
    last: Option<Instant>,
    since: u64,
}

impl NotInPoolLog {
    /// Returns the number of refusals not logged since the last line, when this one is to
    /// be logged.
    fn note(&mut self) -> Option<u64> {
        let now = Instant::now();
        if self
            .last
            .is_some_and(|t| now.saturating_duration_since(t) < NOT_IN_POOL_LOG_EVERY)
        {
            self.since += 1;
            return None;
        }
        self.last = Some(now);
        Some(std::mem::take(&mut self.since))
    }
}

/// Refused connections (wrong address, failed authentication, a session already
/// established) are logged at most this many times per [`REFUSAL_LOG_WINDOW`]; the rest are
/// counted and summarised, so a connection flood cannot flood the log.
pub(crate) const REFUSALS_LOGGED: u32 = 5;
/// See [`REFUSALS_LOGGED`].
pub(crate) const REFUSAL_LOG_WINDOW: Duration = Duration::from_secs(60);

/// Rate limit of the refused-connection log lines.
pub(crate) struct RefusalLog {
    window_start: Instant,
    logged: u32,
    suppressed: u64,
}

impl RefusalLog {
    pub(crate) fn new() -> Self {
        RefusalLog {
            window_start: Instant::now(),
            logged: 0,
            suppressed: 0,
        }
    }

    /// Logs `what` unless this window's lines are used up (then it is counted).
    pub(crate) fn refused(&mut self, what: std::fmt::Arguments<'_>) {
        let now = Instant::now();
        if now.saturating_duration_since(self.window_start) >= REFUSAL_LOG_WINDOW {
            if self.suppressed > 0 {
                tracing::warn!(
                    "failover: {} more connection(s) refused in the last {} s (not logged \
                     one by one)",
                    self.suppressed,
                    REFUSAL_LOG_WINDOW.as_secs()
                );
            }
            self.window_start = now;
            self.logged = 0;
            self.suppressed = 0;
        }
        if self.logged < REFUSALS_LOGGED {
            self.logged += 1;
            tracing::warn!("failover: {what}");
        } else {
            self.suppressed += 1;
        }
    }
}

/// Without a connection the secondary waits this long before dialling (the primary 1 s): the
/// primary's connection is the preferred one, and this makes a simultaneous dial rare.
const SECONDARY_DIAL_DELAY: Duration = Duration::from_secs(3);

/// How long to wait before dialling the partner after start or after losing the connection.
fn redial_delay(role: Role) -> Duration {
    match role {
        Role::Primary => Duration::from_secs(1),
        Role::Secondary => SECONDARY_DIAL_DELAY,
    }
}

fn peer_ip(ip: IpAddr) -> IpAddr {
    ip.to_canonical()
}

impl Driver {
    pub(crate) fn new(
        engine: FailoverEngine,
        table: Arc<LeaseTable>,
        cell: Arc<PolicyCell>,
        cfg: FailoverConfig,
        changes: Receiver<Slot>,
        overflow: Arc<AtomicBool>,
        auth_key: Option<Arc<Vec<u8>>>,
    ) -> (Self, mpsc::UnboundedReceiver<Event>) {
        let (ev_tx, ev_rx) = mpsc::unbounded_channel();
        let role = engine.config().role;
        let rules = engine.config().store_rules();
        let balance = super::rebalance::Rebalancer::new(&cfg, &table, role);
        let table_len = table.len();
        (
            Driver {
                events: None,
                keep_reconfiguring: false,
                pool_balance: None,
                engine,
                scope: PoolScope::of(&cfg.pools),
                area: super::area::SharedArea::open(table.clone(), cfg.listed, 1),
                table,
                cell,
                cfg,
                role,
                changes,
                overflow,
                link: None,
                gen: 0,
                ev_tx,
                connecting: false,
                backoff: Duration::from_secs(1),
                // The primary dials at once; the secondary gives it a head start.
                next_connect: Instant::now()
                    + match role {
                        Role::Primary => Duration::ZERO,
                        Role::Secondary => SECONDARY_DIAL_DELAY,
                    },
                link_by_primary: false,
                sync: BindingSync::new(rules),
                seen: Vec::new(),
                lat_sum_ms: 0.0,
                lat_n: 0,
                next_scan: Instant::now() + SCAN_EVERY,
                rebalance_due: false,
                next_rebalance: Instant::now() + REBALANCE_EVERY,
                balance,
                out: Vec::new(),
                write_through: false,
                auth_key,
                refusals: RefusalLog::new(),
                storage_down: false,
                table_len,
                want_updreq: false,
                refused_not_in_pool: 0,
                partner_refused_not_in_pool: 0,
                not_in_pool_log: Default::default(),
                refused_by_us: RefusalSummary::default(),
                refused_by_partner: RefusalSummary::default(),
            },
            ev_rx,
        )
    }

    fn peer(&self) -> SocketAddr {
        SocketAddr::new(self.cfg.peer_address, self.cfg.peer_port)
    }

    // -----------------------------------------------------------------------------------------
    // Event loop

    async fn run(
        mut self,
        listener: TcpListener,
        mut ev_rx: mpsc::UnboundedReceiver<Event>,
        mut cmd_rx: mpsc::UnboundedReceiver<Command>,
    ) {
        let acceptor = tokio::spawn(accept_loop(
            listener,
            self.peer(),
            self.ev_tx.clone(),
            self.auth_key
                .clone()
                .map(|k| (k, self.cfg.name.clone(), self.role)),
        ));
        let tick = tokio::time::sleep(TICK);
        tokio::pin!(tick);
        self.pump();
        loop {
            tokio::select! {
                Some(ev) = ev_rx.recv() => self.on_event(ev),
                cmd = cmd_rx.recv() => match cmd {
                    Some(Command::Control(req, reply)) => {
                        let r = self.control(req);
                        let _ = reply.send(r);
                    }
                    Some(Command::Stop(grace, done)) => {
                        self.graceful_stop(grace, &mut ev_rx).await;
                        let _ = done.send(());
                        break;
                    }
                    None => break,
                },
                () = &mut tick => {
                    let busy = self.on_tick();
                    self.pump();
                    self.write_out();
                    let next = if busy { TICK } else { IDLE_TICK };
                    tick.as_mut().reset(tokio::time::Instant::now() + next);
                    continue;
                }
            }
            // What an event produced (BNDACKs for a read, state messages) goes out at once:
            // the partner's reads already arrive batched by its tick, and holding our replies
            // for ours stalled ISC dhcpd 4.4 (its acks stopped for seconds in 5 of 12 interop
            // runs) and cost the secondary a second wake-up per batch.
            self.pump();
            self.write_out();
        }
        acceptor.abort();
        if let Some(l) = self.link.take() {
            l.reader.abort();
            l.writer.abort();
        }
    }

    /// Lets queued updates reach the partner (bounded by `grace`), then sends SHUTDOWN and
    /// gives the writer a moment to put it on the wire.
    async fn graceful_stop(&mut self, grace: Duration, ev_rx: &mut mpsc::UnboundedReceiver<Event>) {
        let deadline = Instant::now() + grace;
        self.write_through = true;
        self.on_tick();
        self.pump();
        while self.engine.communications_ok()
            && (self.engine.pending_updates() > 0 || self.engine.unacked_updates() > 0)
            && Instant::now() < deadline
        {
            if let Ok(Some(ev)) =
                tokio::time::timeout(Duration::from_millis(20), ev_rx.recv()).await
            {
                self.on_event(ev);
            }
            self.pump();
        }
        let now = unix_now();
        self.engine.shutdown(now);
        self.pump();
        // Give the partner the SHUTDOWN state before the connection goes away.
        let settle = Instant::now() + Duration::from_millis(300);
        while Instant::now() < settle {
            if let Ok(Some(ev)) =
                tokio::time::timeout(Duration::from_millis(20), ev_rx.recv()).await
            {
                self.on_event(ev);
            }
            self.pump();
        }
        if let Some(l) = self.link.take() {
            drop(l.tx);
            let _ = tokio::time::timeout(Duration::from_millis(500), l.writer).await;
            l.reader.abort();
        }
        if let Err(e) = self.table.flush() {
            tracing::error!("failover: final lease table flush failed: {e}");
        }
        tracing::info!(
            "failover: stopped in {} ({} updates still unacknowledged)",
            self.engine.state(),
            self.engine.pending_updates() + self.engine.unacked_updates()
        );
    }

    /// Returns whether workers reported changes (the next tick comes sooner).
    fn on_tick(&mut self) -> bool {
        let now = unix_now();
        let busy = self.drain_changes(now) > 0;
        if self.overflow.swap(false, Ordering::Relaxed) {
            tracing::warn!("failover: change channel overflowed; rescanning the lease table");
            self.scan_unacked(now);
        }
        if Instant::now() >= self.next_scan {
            self.next_scan = Instant::now() + SCAN_EVERY;
            self.scan_unacked(now);
        }
        self.follow_growth(now);
        if self.role == Role::Primary && Instant::now() >= self.next_rebalance {
            self.next_rebalance = Instant::now() + REBALANCE_EVERY;
            self.rebalance_due = true;
        }
        if self.engine.state() == ServerState::Normal && self.engine.communications_ok() {
            let due = std::mem::take(&mut self.rebalance_due);
            self.balance
                .tick(now, due, &self.table, &mut self.engine, &mut self.sync);
        }
        if self.engine.poll_timeout().is_some_and(|t| now >= t) {
            self.engine.handle_timeout(now);
        }
        self.follow_storage(now);
        self.log_refusals(false);
        if self.link.is_none()
            && !self.connecting
            && !self.storage_down
            && Instant::now() >= self.next_connect
        {
            self.start_connect();
        }
        busy
    }

    /// Logs the summary of each direction's refusals that is due (`force`: the link ended).
    fn log_refusals(&mut self, force: bool) {
        let now = Instant::now();
        if let Some(line) = self.refused_by_us.take_due(now, force) {
            tracing::info!("failover: refused the partner's {line}");
        }
        if let Some(line) = self.refused_by_partner.take_due(now, force) {
            tracing::info!("failover: the partner refused {line}");
        }
    }

    /// A reload added pools or grew ranges (`LeaseTable::grow`; one atomic load a tick to
    /// notice). The new records start as on a fresh start of a pair: FREE, owned by the
    /// primary, so the secondary cannot give them out. The balancer learns the new ranges and
    /// the primary grants the secondary its share at once (BACKUP binding updates, as after
    /// a fresh start); a secondary that has not reloaded yet refuses them as outside its
    /// pools, and they are sent again later (`BindingSync::refused`). Both sides ask the
    /// partner for its unacknowledged updates (UPDREQ), so whichever side reloads second
    /// gets at once what the other sent for the new addresses and it refused.
    fn follow_growth(&mut self, now: u32) {
        let len = self.table.len();
        if len == self.table_len {
            if self.want_updreq && self.engine.request_updates(now) {
                self.want_updreq = false;
                tracing::info!(
                    "failover: asked the partner for its unacknowledged updates (UPDREQ) \
                     after the lease table grew"
                );
            }
            return;
        }
        self.table_len = len;
        if let Some(c) = &self.pool_balance {
            // The new pools' settings (the reload wrote them before growing the table).
            self.cfg.pools = c.lock().unwrap_or_else(|e| e.into_inner()).clone();
            self.scope = PoolScope::of(&self.cfg.pools);
        }
        let added = self.balance.learn_pools(&self.cfg, &self.table);
        tracing::info!(
            "failover: the lease table grew to {len} address(es) ({added} new pool(s)); \
             the partners' balance follows{}",
            if self.role == Role::Primary {
                ": granting the backup its share"
            } else {
                ": the primary grants this server its share"
            }
        );
        if self.role == Role::Primary {
            self.rebalance_due = true;
        }
        self.want_updreq = true;
    }

    /// A failed lease-file storage takes us away from the partner (one atomic load a tick):
    /// the connection is closed, which the partner sees as COMMUNICATIONS-INTERRUPTED, a
    /// state in which it answers every client. Draft-12 has no state for "cannot store";
    /// leaving is what lets the pair keep serving while this side can ACK nothing. Once a
    /// rewrite has covered the failure we connect again (the usual resynchronisation).
    fn follow_storage(&mut self, now: u32) {
        let failed = self.table.storage_failed();
        if failed == self.storage_down {
            return;
        }
        self.storage_down = failed;
        if failed {
            tracing::error!(
                "failover: the lease file's storage failed: leaving the partner (it serves \
                 alone, COMMUNICATIONS-INTERRUPTED) until writes succeed again"
            );
            if self.link.is_some() {
                self.lose_link(now);
            }
        } else {
            tracing::info!("failover: the lease file's storage works again: reconnecting");
            self.next_connect = Instant::now();
        }
    }

    fn start_connect(&mut self) {
        self.connecting = true;
        let local = self.cfg.address;
        let peer = self.peer();
        let tx = self.ev_tx.clone();
        let auth = self.auth_key.clone();
        let name = self.cfg.name.clone();
        let role = self.role;
        tokio::spawn(async move {
            let r = async {
                let sock = match peer {
                    SocketAddr::V4(_) => TcpSocket::new_v4()?,
                    SocketAddr::V6(_) => TcpSocket::new_v6()?,
                };
                // From our configured address: the partner accepts only that one.
                sock.bind(SocketAddr::new(local, 0))?;
                let mut stream =
                    match tokio::time::timeout(Duration::from_secs(5), sock.connect(peer)).await {
                        Ok(r) => r?,
                        Err(_) => {
                            return Err(std::io::Error::new(
                                std::io::ErrorKind::TimedOut,
                                "connect timed out after 5 s",
                            ))
                        }
                    };
                if let Some(key) = auth {
                    auth::authenticate(&mut stream, &key, &name, role)
                        .await
                        .map_err(|why| {
                            std::io::Error::new(
                                std::io::ErrorKind::PermissionDenied,
                                format!("partner not authenticated: {why}"),
                            )
                        })?;
                }
                Ok(stream)
            }
            .await;
            let _ = tx.send(match r {
                Ok(stream) => Event::Connected {
                    stream,
                    from: peer,
                    outgoing: true,
                },
                Err(e) => Event::ConnectFailed(format!("connecting to {peer} from {local}: {e}")),
            });
        });
    }

    fn on_event(&mut self, ev: Event) {
        let now = unix_now();
        match ev {
            Event::Connected {
                stream,
                from,
                outgoing,
            } => {
                if outgoing {
                    self.connecting = false;
                    self.backoff = Duration::from_secs(1);
                }
                if self.storage_down {
                    self.refusals.refused(format_args!(
                        "closed a connection {} {from}: this server's storage has failed",
                        if outgoing { "to" } else { "from" }
                    ));
                    drop(stream);
                    return;
                }
                let by_primary = outgoing == (self.role == Role::Primary);
                if self.link.is_some() {
                    let dir = if outgoing { "to" } else { "from" };
                    if self.engine.communications_ok() {
                        // An established session is never replaced (module docs): a dead one
                        // is closed by the receive timer first.
                        self.refusals.refused(format_args!(
                            "closed a new connection {dir} {from}: the session with the \
                             partner is established and alive"
                        ));
                        drop(stream);
                        return;
                    }
                    if !by_primary || self.link_by_primary {
                        // Before the session: only the primary's replaces the secondary's.
                        tracing::info!(
                            "failover: closed the {} connection {dir} {from}: the {} \
                             connection is kept",
                            if by_primary {
                                "primary's"
                            } else {
                                "secondary's"
                            },
                            if self.link_by_primary {
                                "primary's"
                            } else {
                                "secondary's"
                            },
                        );
                        drop(stream);
                        return;
                    }
                }
                self.link_by_primary = by_primary;
                let _ = stream.set_nodelay(true);
                let info_fd = stream.as_fd().try_clone_to_owned().ok();
                // Output coalesced for the old connection is not for this one.
                self.out.clear();
                if let Some(old) = self.link.take() {
                    old.reader.abort();
                    drop(old.tx);
                }
                self.gen += 1;
                let gen = self.gen;
                let (mut rd, mut wr) = stream.into_split();
                let tx = self.ev_tx.clone();
                let reader = tokio::spawn(async move {
                    let mut buf = vec![0u8; 16 * 1024];
                    loop {
                        match rd.read(&mut buf).await {
                            Ok(0) => {
                                let _ = tx.send(Event::Closed(gen, "closed by partner".into()));
                                return;
                            }
                            Ok(n) => {
                                if tx.send(Event::Bytes(gen, buf[..n].to_vec())).is_err() {
                                    return;
                                }
                            }
                            Err(e) => {
                                let _ = tx.send(Event::Closed(gen, format!("read: {e}")));
                                return;
                            }
                        }
                    }
                });
                let (wtx, mut wrx) = mpsc::unbounded_channel::<Vec<u8>>();
                let etx = self.ev_tx.clone();
                let writer = tokio::spawn(async move {
                    while let Some(b) = wrx.recv().await {
                        if let Err(e) = wr.write_all(&b).await {
                            let _ = etx.send(Event::Closed(gen, format!("write: {e}")));
                            return;
                        }
                    }
                    let _ = wr.shutdown().await;
                });
                self.link = Some(Link {
                    gen,
                    tx: wtx,
                    reader,
                    writer,
                    info_fd,
                });
                tracing::info!(
                    "failover: connection {} {from}",
                    if outgoing { "to" } else { "from" }
                );
                self.engine.handle_connected(now);
            }
            Event::AuthFailed(from, why) => {
                self.refusals
                    .refused(format_args!("refused a connection from {from}: {why}"));
            }
            Event::ConnectFailed(why) => {
                self.connecting = false;
                if self.backoff <= Duration::from_secs(1) {
                    tracing::info!("failover: {why} (retrying)");
                } else {
                    tracing::debug!("failover: {why}");
                }
                self.next_connect = Instant::now() + self.backoff;
                self.backoff = (self.backoff * 2).min(Duration::from_secs(10));
            }
            Event::Bytes(gen, data) => {
                if self.link.as_ref().is_some_and(|l| l.gen == gen) {
                    self.engine.handle_bytes(now, &data);
                }
            }
            Event::Closed(gen, why) => {
                if self.link.as_ref().is_some_and(|l| l.gen == gen) {
                    tracing::info!("failover: connection lost: {why}");
                    self.lose_link(now);
                }
            }
        }
    }

    /// The link is gone (closed by the partner, failed, or left by us): drop it, discard
    /// what was coalesced for it, tell the engine, and redial later.
    fn lose_link(&mut self, now: u32) {
        if let Some(l) = self.link.take() {
            l.reader.abort();
        }
        self.log_refusals(true);
        self.out.clear();
        self.engine.handle_disconnected(now);
        self.next_connect = Instant::now() + redial_delay(self.role);
    }

    fn close_link(&mut self) {
        if let Some(bytes) = self.engine.poll_transmit() {
            self.out.extend_from_slice(&bytes);
        }
        self.write_out();
        if let Some(l) = self.link.take() {
            // The writer sends what is queued, then FIN; the reader is no longer wanted.
            l.reader.abort();
            drop(l.tx);
            self.next_connect = Instant::now() + redial_delay(self.role);
        }
    }

    // -----------------------------------------------------------------------------------------
    // Engine actions

    /// Runs engine actions and writes its output until it has nothing more to say.
    fn pump(&mut self) {
        for _ in 0..1_000 {
            let now = unix_now();
            let mut applied: Vec<Applied> = Vec::new();
            let mut dirty = DirtySet::new();
            let mut any = false;
            // One clock read for every ack of this round (latency figures), taken lazily.
            let mut acked_at = None;
            while let Some(a) = self.engine.poll_action() {
                any = true;
                self.on_action(now, a, &mut applied, &mut dirty, &mut acked_at);
            }
            if !applied.is_empty() {
                // A partner's binding is durable before its BNDACK leaves (group commit).
                let flushed = self.table.flush_set(&mut dirty);
                if let Err(e) = &flushed {
                    tracing::error!("failover: lease table flush failed: {e}");
                }
                for (id, r) in applied {
                    let r = match (&flushed, r) {
                        (Err(e), Ok(())) => {
                            Err((RejectReason::Misc, format!("lease table flush failed: {e}")))
                        }
                        (_, r) => r,
                    };
                    self.engine.binding_applied(now, id, r);
                }
                continue;
            }
            if let Some(bytes) = self.engine.poll_transmit() {
                if self.out.is_empty() {
                    self.out = bytes;
                } else {
                    self.out.extend_from_slice(&bytes);
                }
                if self.write_through || self.out.len() >= COALESCE_BYTES {
                    self.write_out();
                }
                any = true;
            }
            if !any {
                return;
            }
        }
    }

    /// Hands the coalesced output to the connection's writer (dropped with no connection: the
    /// engine re-sends what matters on the next connection).
    fn write_out(&mut self) {
        if self.out.is_empty() {
            return;
        }
        let bytes = std::mem::take(&mut self.out);
        if let Some(l) = &self.link {
            let _ = l.tx.send(bytes);
        }
    }

    fn on_action(
        &mut self,
        now: u32,
        a: Action,
        applied: &mut Vec<Applied>,
        dirty: &mut DirtySet,
        acked_at: &mut Option<Instant>,
    ) {
        match a {
            Action::StateChanged {
                from,
                own,
                partner,
                at,
                reason,
            } => {
                let partner = partner.map_or("unknown", |p| p.name());
                if from == own && reason == "partner state" {
                    tracing::info!(
                        "failover: partner now {partner} (own {own}) at {}",
                        fmt_time(at)
                    );
                } else {
                    tracing::info!(
                        "failover: {from} -> {own} (partner {partner}) at {}: {reason}",
                        fmt_time(at)
                    );
                }
                if self.role == Role::Primary && own == ServerState::Normal && from != own {
                    self.rebalance_due = true;
                }
                if xdhcpd_failover::store::is_takeover(from, own) {
                    // HA switchover: a running reconfiguration stops (unless deferred-nak);
                    // the cleared flags are durable and queued for the partner.
                    let mut store = TableStore {
                        table: &self.table,
                        dirty: &mut *dirty,
                        scope: &self.scope,
                    };
                    let keep = self.keep_reconfiguring;
                    let n = self.sync.stop_reconfiguring(
                        &mut self.engine,
                        now,
                        Instant::now(),
                        &mut store,
                        keep,
                    );
                    if !n.is_empty() {
                        tracing::info!(
                            "reconfigure: takeover: {} binding(s) no longer reconfiguring",
                            n.len()
                        );
                        if let Err(e) = self.table.flush_set(dirty) {
                            tracing::error!("failover: lease table flush failed: {e}");
                        }
                    }
                }
            }
            Action::Persist(p) => {
                if let Err(e) = self.area.store(&self.cfg.name, &p.to_bytes()) {
                    tracing::error!(
                        "failover {:?}: storing the failover state failed: {e}",
                        self.cfg.name
                    );
                }
            }
            Action::PolicyChanged(p) => self.cell.store(&p),
            Action::ApplyBinding { id, binding } => {
                let r = self.apply_binding(now, &binding, dirty);
                applied.push((id, r));
            }
            Action::BindingAcked { sent, .. } => {
                let mut store = TableStore {
                    table: &self.table,
                    dirty,
                    scope: &self.scope,
                };
                if let Some(at) = self.sync.acked(&mut store, &sent) {
                    let now = *acked_at.get_or_insert_with(Instant::now);
                    self.lat_sum_ms += now.saturating_duration_since(at).as_secs_f64() * 1000.0;
                    self.lat_n += 1;
                }
            }
            Action::BindingRejected {
                sent,
                reason,
                message,
            } => {
                if reason == RejectReason::IllegalIpAddress {
                    self.partner_refused_not_in_pool += 1;
                    self.sync.refused(&sent, reason, now);
                    if let Some(more) = self.not_in_pool_log[1].note() {
                        tracing::warn!(
                            "failover: the partner has no pool for {} ({:?} refused: {message}); \
                             has it reloaded the configuration with the new pool? Such updates \
                             are sent again when it asks (after its reload) or at {} ({more} \
                             more refused since the last line)",
                            sent.addr,
                            sent.status,
                            self.sync
                                .absent_retry_at()
                                .map_or_else(String::new, fmt_time)
                        );
                    }
                } else {
                    tracing::debug!(
                        "failover: partner rejected the update of {} ({:?}): {reason:?} {message}",
                        sent.addr,
                        sent.status
                    );
                    self.refused_by_partner
                        .note(Instant::now(), sent.addr, reason);
                    self.sync.refused(&sent, reason, now);
                }
            }
            Action::SendBindings { all } => {
                let n = TableStore::read_only(&self.table, &self.scope, |store| {
                    self.sync
                        .send_bindings(&mut self.engine, now, Instant::now(), store, all)
                });
                tracing::info!(
                    "failover: partner asked for {} bindings: {n} queued",
                    if all { "all" } else { "unacknowledged" }
                );
            }
            Action::PoolRequest { id } => {
                let granted = self.grant_pool(now);
                tracing::info!("failover: POOLREQ: {granted} address(es) moved to the backup");
                self.engine.pool_response(now, id, granted);
            }
            Action::PoolGranted { addresses } => {
                tracing::info!("failover: primary granted {addresses} backup address(es)");
            }
            Action::Close { reason, message } => {
                tracing::info!("failover: closing the connection: {reason:?}: {message}");
                self.close_link();
            }
            Action::Log(m) => tracing::info!("{m}"),
            Action::VersionMismatch { ours, partner } => tracing::warn!(
                "failover: the partner runs {partner:?}, this server {ours:?}: a pair should \
                 run the same software version (expected only with ISC dhcpd as partner or \
                 during an upgrade)"
            ),
        }
    }

    fn apply_binding(
        &mut self,
        now: u32,
        b: &xdhcpd_failover::Binding,
        dirty: &mut DirtySet,
    ) -> Result<(), (RejectReason, String)> {
        let mut store = TableStore {
            table: &self.table,
            dirty,
            scope: &self.scope,
        };
        let r = self.sync.apply(&mut store, now, b).map(|_| ());
        match &r {
            Err((RejectReason::IllegalIpAddress, why)) => {
                self.refused_not_in_pool += 1;
                if let Some(more) = self.not_in_pool_log[0].note() {
                    tracing::warn!(
                        "failover: refused the partner's update of {} ({:?}): {why} (the \
                         partner's configuration has a pool or range this server's has not: \
                         reload this server with it; {more} more refused since the last line)",
                        b.addr,
                        b.status
                    );
                }
            }
            Err((reason, why)) => {
                tracing::debug!(
                    "failover: refused the partner's update of {} ({:?}): {why}",
                    b.addr,
                    b.status
                );
                self.refused_by_us.note(Instant::now(), b.addr, *reason);
            }
            Ok(()) => {}
        }
        if let (Ok(()), Some(ev), Some(slot)) = (&r, &self.events, self.table.slot_of(b.addr)) {
            ev.offer_failover(slot);
        }
        r
    }

    /// Primary, POOLREQ: balances every pool now (`rebalance.rs`); returns the addresses
    /// granted to the backup.
    fn grant_pool(&mut self, now: u32) -> u32 {
        use xdhcpd_failover::balance::Trigger;
        let (t, e, q) = (&self.table, &mut self.engine, &mut self.sync);
        self.balance.run(Trigger::Scheduled, now, t, e, q).granted
    }

    // -----------------------------------------------------------------------------------------
    // Lease changes

    /// Returns how many slots the workers reported.
    fn drain_changes(&mut self, now: u32) -> usize {
        // A DORA reports its slot twice (offer, then binding): sort and dedup the batch rather
        // than probing a hash set per slot (that showed in the profile).
        let mut batch = std::mem::take(&mut self.seen);
        batch.clear();
        batch.extend(self.changes.try_iter().take(DRAIN_MAX));
        batch.sort_unstable();
        batch.dedup();
        let n = batch.len();
        let queued_at = Instant::now();
        for &s in &batch {
            self.on_change(now, queued_at, s);
        }
        self.seen = batch;
        n
    }

    /// A worker changed this record: queue its binding for the partner (lazy update).
    fn on_change(&mut self, now: u32, queued_at: Instant, slot: Slot) {
        // Every relationship's driver hears every change (N:1): only ours go to our partner.
        if !self.scope.contains_slot(&self.table, slot) {
            return;
        }
        // With its variable data (option 82 whole, host name, vendor class) for the BNDUPD.
        let (l, v) = self.table.read_with_var(slot);
        self.sync
            .record_changed_var(&mut self.engine, now, queued_at, &l, &v);
    }

    /// Queues every record the partner lacks that is not already queued (expirations by the
    /// sweeper, changes lost to a full channel).
    fn scan_unacked(&mut self, now: u32) {
        let n = TableStore::read_only(&self.table, &self.scope, |store| {
            self.sync
                .scan_unacked(&mut self.engine, now, Instant::now(), store)
        });
        if n > 0 {
            tracing::debug!("failover: scan queued {n} binding update(s)");
        }
    }

    // -----------------------------------------------------------------------------------------
    // Control

    fn control(&mut self, req: Request) -> Response {
        let now = unix_now();
        match req {
            Request::FailoverStatus => Response::status(self.status()),
            Request::FailoverPartnerDown { since, force } => {
                match self.engine.partner_down(now, since, force) {
                    Ok(acc) => {
                        self.pump();
                        Response::message(partner_down_reply(
                            &acc,
                            self.engine.state(),
                            self.engine.mclt(),
                        ))
                    }
                    Err(e) => Response::error(e.to_string()),
                }
            }
            Request::FailoverPause => self.pause(now),
            Request::FailoverFailback => match self.engine.failback(now) {
                Ok(()) => {
                    self.pump();
                    Response::message(match self.engine.state() {
                        ServerState::PartnerDown => format!(
                            "failback hold ended: NORMAL follows once the partner has recovered \
                             (it is {}) and holds every update of ours",
                            self.engine
                                .partner_state()
                                .map_or("in an unknown state", |p| p.name())
                        ),
                        s => format!("failback hold ended: state {s}"),
                    })
                }
                Err(e) => Response::error(e.to_string()),
            },
            Request::Registrations { .. } => Response::error("not a failover request"),
            Request::FailoverRecover => match self.engine.recover(now) {
                Ok(()) => {
                    self.pump();
                    Response::message(format!(
                        "recover accepted: state {} (pulling every binding from the partner, \
                         then waiting MCLT {} s)",
                        self.engine.state(),
                        self.engine.mclt()
                    ))
                }
                Err(e) => Response::error(e.to_string()),
            },
        }
    }

    /// `ctl failover pause` (draft-12 9.13): PAUSED is stored with the state to resume from,
    /// and told to the partner, which goes COMMUNICATIONS-INTERRUPTED. The connection stays
    /// open until the daemon stops (queued binding updates still drain, and a graceful stop in
    /// PAUSED sends no SHUTDOWN), so the partner never sees SHUTDOWN and never goes
    /// PARTNER-DOWN on its own before its safe period.
    fn pause(&mut self, now: u32) -> Response {
        let before = self.engine.state();
        if matches!(before, ServerState::Paused | ServerState::Shutdown) {
            return Response::error(format!("already {before}; only a restart leaves it"));
        }
        if let Err(e) = self.engine.pause(now) {
            return Response::error(e.to_string());
        }
        self.pump();
        Response::message(format!(
            "paused (was {before}, resumes {} at restart): no longer serving; the partner goes \
             COMMUNICATIONS-INTERRUPTED and serves alone. Stop this daemon now (SIGTERM sends no \
             SHUTDOWN while PAUSED) and start it again{}",
            self.engine.persisted().resume_state,
            if self.cfg.use_safe_period {
                format!(
                    " within the safe period ({} s) to avoid PARTNER-DOWN",
                    self.cfg.safe_period
                )
            } else {
                String::new()
            }
        ))
    }

    pub(crate) fn status(&self) -> FailoverStatus {
        let e = &self.engine;
        let st = e.stats();
        FailoverStatus {
            role: match self.role {
                Role::Primary => "primary".into(),
                Role::Secondary => "secondary".into(),
            },
            relationship: self.cfg.name.clone(),
            peer: self.peer().to_string(),
            state: e.state().name().into(),
            state_since: e.state_since(),
            blind_partner_down: e.persisted().blind_partner_down,
            partner_down_usable_at: if e.state() == ServerState::PartnerDown {
                e.policy().partner_down_usable_at
            } else {
                0
            },
            partner_state: e.partner_state().map(|s| s.name().to_string()),
            partner_state_since: e.partner_state_since(),
            last_contact: e.last_contact(),
            connected: self.link.is_some() && e.connected(),
            communicating: e.communications_ok(),
            unacked_updates: e.unacked_updates(),
            // Worker changes still in the channel count too: the tick drains them up to
            // IDLE_TICK later, and "0 pending" must mean the partner has been told.
            bindings_pending: e.pending_updates() + self.changes.len(),
            mean_update_ack_latency_ms: (self.lat_n > 0)
                .then(|| (self.lat_sum_ms / self.lat_n as f64 * 1000.0).round() / 1000.0),
            mclt: e.mclt(),
            bndupd_sent: st.bndupd_sent,
            bndupd_messages_sent: st.bndupd_messages_sent,
            bndack_received: st.bndack_received,
            bndupd_received: st.bndupd_received,
            rejected_by_partner: st.bndupd_rejected_by_partner,
            rejected_by_us: st.bndupd_rejected_by_us,
            connections: st.connections,
            version: e.vendor_class().to_string(),
            partner_version: e
                .last_partner_vendor_class()
                .map(|v| String::from_utf8_lossy(v).into_owned()),
            version_mismatch: e.version_mismatch(),
            partner_rtt_ms: self
                .link
                .as_ref()
                .and_then(|l| l.info_fd.as_ref())
                .and_then(tcp_rtt_ms),
            max_unacked_advertised: e.max_unacked_exchanged().map(|(ours, _)| ours),
            partner_max_unacked: e.max_unacked_exchanged().map(|(_, theirs)| theirs),
            rebalance_granted: u64::from(self.balance.total.granted),
            rebalance_reclaimed: u64::from(self.balance.total.reclaimed),
            refused_not_in_pool: self.refused_not_in_pool,
            partner_refused_not_in_pool: self.partner_refused_not_in_pool,
            refused_outdated: self.refused_by_us.outdated_total(),
            partner_refused_outdated: self.refused_by_partner.outdated_total(),
            waiting_for_partner_pool: self.sync.absent_at_partner(),
            resync: e.resync_progress().map(|p| crate::control::ResyncStatus {
                direction: match p.direction {
                    xdhcpd_failover::ResyncDirection::Sending => "sending".into(),
                    xdhcpd_failover::ResyncDirection::Receiving => "receiving".into(),
                },
                all: p.all,
                done: p.done,
                total: p.total,
                percent: p.percent(),
            }),
            failback_hold: e.config().failback_hold,
            failback_held_until: e.failback_hold_until(),
            events: e
                .events()
                .map(|v| crate::control::FailoverEventStatus {
                    at: v.at,
                    at_utc: crate::control::fmt_time(v.at),
                    event: v.kind.name().into(),
                    description: v.kind.description().into(),
                    remarks: v.remarks.clone(),
                    until: (v.until != 0).then_some(v.until),
                })
                .collect(),
            events_total: e.events_total(),
        }
    }
}

/// The kernel's smoothed round-trip time of a TCP connection, in ms. The failover connection
/// carries at least one message (a CONTACT heartbeat) every poll interval, and every message
/// is acknowledged, so the estimate stays current. Draft-12 has no request/answer pair that
/// measures the round trip alone (CONTACT and STATE are not answered; BNDACK, UPDDONE and
/// POOLRESP include the partner's work), so this is the heartbeat round trip.
fn tcp_rtt_ms(fd: &OwnedFd) -> Option<f64> {
    // SAFETY: tcp_info is plain old data: all-zero is a valid value.
    let mut info: libc::tcp_info = unsafe { std::mem::zeroed() };
    let mut len = std::mem::size_of::<libc::tcp_info>() as libc::socklen_t;
    // SAFETY: getsockopt writes at most `len` bytes into `info` and reports the length
    // written; the fd is open for the call's duration.
    let r = unsafe {
        libc::getsockopt(
            fd.as_raw_fd(),
            libc::IPPROTO_TCP,
            libc::TCP_INFO,
            (&mut info as *mut libc::tcp_info).cast(),
            &mut len,
        )
    };
    // tcpi_rtt sits well inside the oldest tcp_info layout; a short answer lacks it.
    let needed = std::mem::offset_of!(libc::tcp_info, tcpi_rtt) + 4;
    (r == 0 && len as usize >= needed).then(|| f64::from(info.tcpi_rtt) / 1000.0)
}

/// The operator's answer to an accepted `partner-down`: which time the MCLT counts from and
/// when the waited-for addresses become usable (also logged).
fn partner_down_reply(acc: &PartnerDownAccepted, state: ServerState, mclt: u32) -> String {
    let usable = fmt_time(acc.usable_at);
    let from = match acc.from {
        McltFrom::Since => "--since as given",
        McltFrom::Now => "now: no --since given",
        McltFrom::Unchanged => "already PARTNER-DOWN since then; --since re-dates it",
    };
    let whose = if acc.blind {
        tracing::warn!(
            "failover: partner-down from RECOVER or STARTUP: the partner's last leases are \
             unknown, so no new client gets any address before {usable}"
        );
        "declared without the partner's last leases (from RECOVER or STARTUP): every address, \
         ours too,"
    } else {
        "partner's addresses"
    };
    let m = format!(
        "partner-down accepted: state {state}; MCLT {mclt} s counted from {} ({from}); {whose} \
         usable from {usable}",
        fmt_time(acc.mclt_from)
    );
    tracing::info!("failover: {m}");
    m
}

async fn accept_loop(
    listener: TcpListener,
    peer: SocketAddr,
    tx: mpsc::UnboundedSender<Event>,
    auth: Option<(Arc<Vec<u8>>, String, Role)>,
) {
    let mut refusals = RefusalLog::new();
    loop {
        match listener.accept().await {
            Ok((mut stream, from)) => {
                if peer_ip(from.ip()) != peer_ip(peer.ip()) {
                    refusals.refused(format_args!(
                        "refused a connection from {from}: not the configured peer {}",
                        peer.ip()
                    ));
                    drop(stream);
                    continue;
                }
                let Some((key, name, role)) = auth.clone() else {
                    if tx
                        .send(Event::Connected {
                            stream,
                            from,
                            outgoing: false,
                        })
                        .is_err()
                    {
                        return;
                    }
                    continue;
                };
                // The handshake runs beside the accept loop: a slow or silent peer holds only
                // its own task, for at most the handshake timeout.
                let tx = tx.clone();
                tokio::spawn(async move {
                    let ev = match auth::authenticate(&mut stream, &key, &name, role).await {
                        Ok(()) => Event::Connected {
                            stream,
                            from,
                            outgoing: false,
                        },
                        Err(why) => Event::AuthFailed(from, format!("not authenticated: {why}")),
                    };
                    let _ = tx.send(ev);
                });
            }
            Err(e) => {
                tracing::warn!("failover: accept: {e}");
                tokio::time::sleep(Duration::from_millis(200)).await;
            }
        }
    }
}

/// Thread body: builds the runtime and runs the driver until stopped.
pub(crate) fn thread_main(
    driver: Driver,
    ev_rx: mpsc::UnboundedReceiver<Event>,
    listener: std::net::TcpListener,
    cmd_rx: mpsc::UnboundedReceiver<Command>,
) {
    let rt = match tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
    {
        Ok(rt) => rt,
        Err(e) => {
            tracing::error!("failover: cannot build the runtime: {e}; failover stays in STARTUP");
            return;
        }
    };
    rt.block_on(async move {
        let listener = match TcpListener::from_std(listener) {
            Ok(l) => l,
            Err(e) => {
                tracing::error!("failover: listener: {e}");
                return;
            }
        };
        driver.run(listener, ev_rx, cmd_rx).await;
    });
}
