//! The sans-IO failover endpoint (draft-ietf-dhc-failover-12 section 9), shaped like
//! quinn-proto's `Connection`:
//!
//! * inputs: [`FailoverEngine::handle_connected`], [`handle_disconnected`](FailoverEngine::handle_disconnected),
//!   [`handle_bytes`](FailoverEngine::handle_bytes), [`handle_timeout`](FailoverEngine::handle_timeout),
//!   [`lease_changed`](FailoverEngine::lease_changed), and the driver's answers
//!   [`binding_applied`](FailoverEngine::binding_applied), [`queue_binding`](FailoverEngine::queue_binding) +
//!   [`bindings_queued`](FailoverEngine::bindings_queued), [`pool_response`](FailoverEngine::pool_response);
//! * commands: [`partner_down`](FailoverEngine::partner_down), [`recover`](FailoverEngine::recover),
//!   [`shutdown`](FailoverEngine::shutdown), [`pause`](FailoverEngine::pause);
//! * outputs: [`poll_transmit`](FailoverEngine::poll_transmit) (bytes for the TCP stream),
//!   [`poll_timeout`](FailoverEngine::poll_timeout) (next deadline), [`poll_action`](FailoverEngine::poll_action).
//!
//! Time is the caller's clock as `u32` Unix seconds (the protocol's own unit); deadlines from
//! `poll_timeout` are in the same unit. The engine never reads a clock, sleeps or does I/O.
//!
//! The lease table stays with the driver. The engine asks for what it needs through actions:
//! [`Action::ApplyBinding`] (decide with [`crate::table::resolve_update`], write, then call
//! `binding_applied`, which sends the BNDACK: never before the write), [`Action::SendBindings`]
//! (queue every unacknowledged, or every, binding with `queue_binding`, then call
//! `bindings_queued`), [`Action::PoolRequest`] (primary: turn a share of FREE addresses into
//! BACKUP, report each with `lease_changed` and the count with `pool_response`).
//!
//! This file holds the engine, its entry points and the message dispatch; the rest is split by
//! concern: `config` (configuration and its checks), `connection` (CONNECT/CONNECTACK, STATE,
//! clock offset, losing the connection), `state` (the server state machine and operator
//! commands), `updates` (binding updates, UPDREQ/UPDDONE, pool requests).

mod config;
mod connection;
mod events;
mod state;
mod updates;

pub use config::{Config, ConfigError, StartError, DEFAULT_EXPIRY_GRACE, XDHCPD_VENDOR_PREFIX};
pub use events::{
    FailoverEvent, FailoverEventKind, ResyncDirection, ResyncProgress, EVENT_LOG_LEN,
};
pub use state::{CommandError, McltFrom, PartnerDownAccepted};
pub use updates::{backup_share, binding_from_txn, txn_for_partner, txn_from_binding};

use std::collections::VecDeque;
use std::net::Ipv4Addr;

use crate::codec::{self, Body, ConnectInfo, Decoder, Message};
use crate::persist::FailoverPersist;
use crate::policy::FailoverPolicy;
use crate::types::{Binding, RejectReason, Role, ServerState};

use connection::{Conn, Phase, SKEW_WINDOW};
use state::comm_failed_state;
use updates::{InFlight, Incoming, Pending, Serving};

/// Maps touched once or more per binding update: foldhash (seeded per process) instead of
/// SipHash, which showed in the driver profiles.
type HashMap<K, V> = std::collections::HashMap<K, V, foldhash::fast::RandomState>;

/// Identifies one binding transaction handed out in [`Action::ApplyBinding`].
pub type UpdateId = u64;

/// What the driver must do next.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Action {
    /// Own or partner state changed: log one line, publish the new policy.
    StateChanged {
        /// Our state before the change (equal to `own` when only the partner's changed).
        from: ServerState,
        /// Our state now.
        own: ServerState,
        /// The partner's last reported state (None: no STATE received yet).
        partner: Option<ServerState>,
        /// When the change happened, Unix seconds (the `now` of the call that caused it).
        at: u32,
        /// Why, for the log line ("start", "partner state", an operator command...).
        reason: &'static str,
    },
    /// Persisted state changed: write it to the lease store's reserved area.
    Persist(FailoverPersist),
    /// Publish this snapshot to the DHCP workers (e.g. [`crate::PolicyCell::store`]).
    PolicyChanged(FailoverPolicy),
    /// A partner's binding update: decide ([`crate::table::resolve_update`]), write it durably,
    /// then call [`FailoverEngine::binding_applied`].
    ApplyBinding {
        /// Pass back to [`FailoverEngine::binding_applied`]; identifies the BNDACK slot.
        id: UpdateId,
        /// The partner's binding, its times already converted to our clock.
        binding: Binding,
    },
    /// The partner acknowledged `sent`; apply with [`crate::table::apply_ack`].
    BindingAcked {
        /// The acknowledged address (`sent.addr`).
        addr: Ipv4Addr,
        /// The potential expiration we sent, now acknowledged (our clock, Unix seconds): the
        /// lease may be extended up to this plus MCLT.
        acked_potential_expiry: u32,
        /// The binding as we sent it.
        sent: Binding,
    },
    /// The partner refused `sent`. Do not resend at once (draft-12 7.2.2); it goes out again
    /// with the next UPDREQ or lease change.
    BindingRejected {
        /// The binding as we sent it.
        sent: Binding,
        /// The partner's reject-reason ([`RejectReason::Misc`] when the BNDACK left the
        /// address out).
        reason: RejectReason,
        /// The partner's message option, empty when it sent none.
        message: String,
    },
    /// Queue bindings with [`FailoverEngine::queue_binding`] (all = every binding that ever had
    /// a client; else only those the partner has not acknowledged), then call
    /// [`FailoverEngine::bindings_queued`].
    SendBindings {
        /// True for UPDREQALL (every binding), false for UPDREQ or a new connection (only
        /// bindings the partner has not acknowledged).
        all: bool,
    },
    /// Primary: the secondary asked for addresses (POOLREQ). Move `backup_pct` of the available
    /// FREE addresses to BACKUP (see [`backup_share`]), report each with `lease_changed`, then
    /// call [`FailoverEngine::pool_response`] with the count.
    PoolRequest {
        /// Pass back to [`FailoverEngine::pool_response`]; identifies the POOLREQ to answer.
        id: u32,
    },
    /// Secondary: the primary granted this many addresses (they arrive as BNDUPD BACKUP).
    PoolGranted {
        /// addresses-transferred from the primary's POOLRESP.
        addresses: u32,
    },
    /// Flush [`FailoverEngine::poll_transmit`], then close the TCP connection. The engine
    /// already treats the connection as gone.
    Close {
        /// Why the connection ends (our reason, or the partner's refusal).
        reason: RejectReason,
        /// Human-readable detail for the log.
        message: String,
    },
    /// Something to log (partner's DISCONNECT text, protocol errors).
    Log(String),
    /// The partner's vendor-class (its implementation and version) differs from ours: warn.
    /// Once per distinct partner version, not at every reconnect.
    VersionMismatch {
        /// Our vendor-class.
        ours: String,
        /// The partner's vendor-class (lossy UTF-8).
        partner: String,
    },
}

/// Counters for `ctl failover status` and the simulation.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct Stats {
    /// Binding transactions sent (several may share one BNDUPD message).
    pub bndupd_sent: u64,
    /// BNDUPD messages sent.
    pub bndupd_messages_sent: u64,
    /// Binding transactions acknowledged.
    pub bndack_received: u64,
    /// Binding transactions the partner refused (reject-reason, or left out of the BNDACK).
    pub bndupd_rejected_by_partner: u64,
    /// Binding transactions received from the partner.
    pub bndupd_received: u64,
    /// Binding transactions we refused (missing binding information, or refused by the
    /// driver in [`FailoverEngine::binding_applied`]).
    pub bndupd_rejected_by_us: u64,
    /// Sum over acknowledged transactions of seconds from sending to the BNDACK (see
    /// [`FailoverEngine::mean_ack_latency`]).
    pub ack_latency_sum: u64,
    /// Undecodable messages, and messages not allowed where they arrived (e.g. before
    /// CONNECT/CONNECTACK, or a CONNECT sent to the primary); each closes the connection.
    pub protocol_errors: u64,
    /// TCP connections handed to [`FailoverEngine::handle_connected`].
    pub connections: u64,
}

/// One failover endpoint. See the module documentation.
#[derive(Debug)]
pub struct FailoverEngine {
    cfg: Config,
    now: u32,
    started_at: u32,
    state: ServerState,
    state_since: u32,
    /// STARTUP's target ("previous state", already mapped through communications-failed).
    prev_state: ServerState,
    prev_since: u32,
    /// We stopped serving on purpose before this start (persisted SHUTDOWN or PAUSED): our
    /// last operational time is exactly when we stopped, and a partner PARTNER-DOWN from
    /// about then went PARTNER-DOWN after us (see `leave_startup`).
    stopped_serving: bool,
    fresh: bool,
    partner: Option<ServerState>,
    partner_since: u32,
    partner_startup: bool,
    persist: FailoverPersist,
    mclt: u32,
    hba: [u8; 32],
    conn: Option<Conn>,
    next_gen: u64,
    next_xid: u32,
    out: Vec<u8>,
    actions: VecDeque<Action>,
    // Outgoing binding updates.
    order: VecDeque<Ipv4Addr>,
    pending: HashMap<Ipv4Addr, Pending>,
    inflight: HashMap<u32, InFlight>,
    /// Binding transactions in `inflight` (each message may carry several).
    inflight_bindings: usize,
    /// Scratch buffer for measuring a transaction's encoded size while packing a BNDUPD.
    txn_scratch: Vec<u8>,
    seq: u64,
    // Incoming binding updates awaiting the driver.
    incoming: HashMap<u32, Incoming>,
    update_ids: HashMap<UpdateId, (u64, u32, usize)>,
    next_update_id: UpdateId,
    // UPDREQ/UPDREQALL being answered; owe_all: an UPDREQALL is not finished yet.
    serving: Option<Serving>,
    owe_all: bool,
    // Our outstanding UPDREQ/UPDREQALL on this connection.
    sent_updreq: Option<u32>,
    pc_resolved: bool,
    // Pool management.
    pool_requests: HashMap<u32, (u64, u32)>,
    next_pool_id: u32,
    poolreq_outstanding: bool,
    next_poolreq_at: u32,
    recover_wait_until: u32,
    /// The STARTUP timer fired (we now wait for the partner, or left STARTUP).
    startup_timed_out: bool,
    /// We started without any failover state and no failover-recover time.
    may_skip_recover_wait: bool,
    /// The partner was itself recovering when we asked for its bindings.
    recover_partner_fresh: bool,
    next_heartbeat: u32,
    stats: Stats,
    /// The partner's vendor-class from the last CONNECT/CONNECTACK (kept after a disconnect).
    known_partner_vendor: Option<Vec<u8>>,
    /// The partner version a [`Action::VersionMismatch`] was last emitted for.
    warned_vendor: Option<Vec<u8>>,
    /// The failover event log (bounded, oldest first) and how many events were recorded.
    events: VecDeque<events::FailoverEvent>,
    events_total: u64,
    /// PARTNER-DOWN's "failover active" (MCLT wait over) was told.
    takeover_noted: bool,
    /// When communications with the partner last came up (failback hold).
    comm_up_at: u32,
    /// The operator ended the failback hold of this PARTNER-DOWN.
    failback_waived: bool,
    /// The failback hold was told on this connection.
    failback_hold_noted: bool,
    /// Our outstanding UPDREQ is an UPDREQALL; bindings received since it was sent.
    updreq_all: bool,
    resync_received: u64,
}

impl FailoverEngine {
    /// Creates the endpoint in STARTUP. `persisted` is what the last run stored (None: no
    /// failover state on record, i.e. first start or lost database). State stored in the
    /// other role is refused ([`StartError::RoleSwapped`]); state stored before the role was
    /// recorded is taken, and the role recorded with the next [`Action::Persist`] (queued at
    /// once).
    pub fn new(
        cfg: Config,
        persisted: Option<FailoverPersist>,
        now: u32,
    ) -> Result<Self, StartError> {
        cfg.validate()?;
        if let Some(stored) = persisted.and_then(|p| p.role) {
            if stored != cfg.role {
                return Err(StartError::RoleSwapped {
                    stored,
                    configured: cfg.role,
                });
            }
        }
        let hba = match cfg.role {
            Role::Primary => cfg.primary_hba(),
            // Until the primary's CONNECT arrives, the secondary assumes no load balancing.
            Role::Secondary => [0xff; 32],
        };
        let mut persist = persisted.unwrap_or(FailoverPersist {
            own_state: ServerState::Recover,
            resume_state: ServerState::Recover,
            own_state_since: 0,
            partner_state: None,
            partner_state_since: 0,
            last_contact: 0,
            last_operational: 0,
            partner_down_since: 0,
            recover_base: now,
            mclt: cfg.mclt,
            ever_communicated: false,
            recover_all: true,
            blind_partner_down: false,
            role: Some(cfg.role),
            connect_max_unacked: 0,
        });
        let record_role = persist.role.is_none();
        persist.role = Some(cfg.role);
        let fresh = persisted.is_none();
        // The primary's MCLT rules; the secondary keeps the one it last received.
        let mclt = match cfg.role {
            Role::Primary => cfg.mclt,
            Role::Secondary if persist.mclt != 0 => persist.mclt,
            Role::Secondary => cfg.mclt,
        };
        persist.mclt = mclt;
        let (mut prev, mut prev_since) = if persisted.is_some() {
            let s = match persist.own_state {
                ServerState::Paused | ServerState::Shutdown | ServerState::Startup => {
                    persist.resume_state
                }
                s => s,
            };
            (comm_failed_state(s), persist.own_state_since)
        } else {
            (ServerState::Recover, now)
        };
        if let Some(t) = cfg.failover_recover {
            prev = ServerState::Recover;
            prev_since = now;
            persist.recover_all = true;
            persist.recover_base = t;
        }
        let stopped_serving = persisted.is_some()
            && matches!(
                persist.own_state,
                ServerState::Shutdown | ServerState::Paused
            );
        let mut e = FailoverEngine {
            now,
            started_at: now,
            state: ServerState::Startup,
            state_since: now,
            prev_state: prev,
            prev_since,
            stopped_serving,
            fresh,
            partner: persist.partner_state,
            partner_since: persist.partner_state_since,
            partner_startup: false,
            persist,
            mclt,
            hba,
            conn: None,
            next_gen: 1,
            next_xid: 1,
            out: Vec::new(),
            actions: VecDeque::new(),
            order: VecDeque::new(),
            pending: HashMap::default(),
            inflight: HashMap::default(),
            inflight_bindings: 0,
            txn_scratch: Vec::new(),
            seq: 0,
            incoming: HashMap::default(),
            update_ids: HashMap::default(),
            next_update_id: 1,
            serving: None,
            owe_all: false,
            sent_updreq: None,
            pc_resolved: false,
            pool_requests: HashMap::default(),
            next_pool_id: 1,
            poolreq_outstanding: false,
            next_poolreq_at: 0,
            recover_wait_until: 0,
            startup_timed_out: false,
            may_skip_recover_wait: fresh && cfg.failover_recover.is_none(),
            recover_partner_fresh: false,
            next_heartbeat: now,
            stats: Stats::default(),
            known_partner_vendor: None,
            warned_vendor: None,
            events: VecDeque::new(),
            events_total: 0,
            takeover_noted: false,
            comm_up_at: 0,
            failback_waived: false,
            failback_hold_noted: false,
            updreq_all: false,
            resync_received: 0,
            cfg,
        };
        e.actions.push_back(Action::StateChanged {
            from: ServerState::Startup,
            own: ServerState::Startup,
            partner: e.partner,
            at: now,
            reason: "start",
        });
        e.actions.push_back(Action::PolicyChanged(e.policy()));
        if record_role {
            e.emit_persist();
        }
        let (kind, remarks) = if e.fresh {
            (
                events::FailoverEventKind::ConfigurationCreated,
                format!(
                    "relationship {:?}, {}, mclt {} s: no failover state on record",
                    e.cfg.relationship_name, e.cfg.role, e.mclt
                ),
            )
        } else {
            (
                events::FailoverEventKind::Started,
                format!(
                    "relationship {:?}, {}: stored state {} since {}, resuming {}",
                    e.cfg.relationship_name,
                    e.cfg.role,
                    e.persist.own_state,
                    events::utc(e.persist.own_state_since),
                    e.prev_state
                ),
            )
        };
        e.event(now, kind, remarks, 0);
        Ok(e)
    }

    // -----------------------------------------------------------------------------------------
    // Getters

    /// The configuration the engine was started with.
    pub fn config(&self) -> &Config {
        &self.cfg
    }
    /// Our failover state.
    pub fn state(&self) -> ServerState {
        self.state
    }
    /// When we entered [`state`](Self::state), Unix seconds (kept across a restart that
    /// resumes the same state).
    pub fn state_since(&self) -> u32 {
        self.state_since
    }
    /// The partner's state from its last STATE message (or the persisted one); None before
    /// we ever heard it.
    pub fn partner_state(&self) -> Option<ServerState> {
        self.partner
    }
    /// The partner's start-time-of-state from its last STATE, converted to our clock.
    pub fn partner_state_since(&self) -> u32 {
        self.partner_since
    }
    /// The MCLT in force (the secondary's comes from the primary).
    pub fn mclt(&self) -> u32 {
        self.mclt
    }
    /// CONNECT/CONNECTACK done and the partner's STATE received on the current connection.
    pub fn communications_ok(&self) -> bool {
        self.conn.as_ref().is_some_and(|c| c.comm_ok)
    }
    /// A TCP connection is open (it may still be waiting for CONNECT/CONNECTACK).
    pub fn connected(&self) -> bool {
        self.conn.is_some()
    }
    /// Last time, Unix seconds, we heard from the partner: stamped by every message received,
    /// by heartbeats while communications are OK, and when an OK connection is lost;
    /// persisted.
    pub fn last_contact(&self) -> u32 {
        self.persist.last_contact
    }
    /// The vendor-class the partner sent on this connection (e.g. `xdhcpd-0.1.0`), if any.
    pub fn partner_vendor_class(&self) -> Option<&[u8]> {
        self.conn.as_ref()?.partner_vendor.as_deref()
    }

    /// Our vendor-class (implementation and version), as sent in CONNECT/CONNECTACK.
    pub fn vendor_class(&self) -> &str {
        &self.cfg.vendor_class
    }

    /// The partner's vendor-class from the last CONNECT/CONNECTACK, also after the connection
    /// is gone (None: never learnt, or the partner sent none).
    pub fn last_partner_vendor_class(&self) -> Option<&[u8]> {
        self.known_partner_vendor.as_deref()
    }

    /// The partner last said it runs another implementation or version than we do.
    pub fn version_mismatch(&self) -> bool {
        self.known_partner_vendor
            .as_deref()
            .is_some_and(|v| v != self.cfg.vendor_class.as_bytes())
    }

    /// The partner said (vendor-class in CONNECT/CONNECTACK) it is xdhcpd.
    pub fn partner_is_xdhcpd(&self) -> bool {
        connection::is_xdhcpd(self.partner_vendor_class())
    }

    /// The max-unacked-updates we advertised on this connection, and the partner's (None
    /// before CONNECT/CONNECTACK).
    pub fn max_unacked_exchanged(&self) -> Option<(u32, u32)> {
        let c = self.conn.as_ref()?;
        (c.phase == Phase::Established).then_some((c.advertised_max_unacked, c.partner_max_unacked))
    }

    /// Binding transactions sent and not yet acknowledged.
    pub fn unacked_updates(&self) -> usize {
        self.inflight_bindings
    }
    /// BNDUPD messages sent and not yet acknowledged (the `max_unacked_bndupd` window).
    pub fn unacked_bndupd_messages(&self) -> usize {
        self.inflight.len()
    }
    /// Binding updates queued and not yet sent.
    pub fn pending_updates(&self) -> usize {
        self.pending.len()
    }
    /// The current persisted state (what the last [`Action::Persist`] carried, or newer).
    pub fn persisted(&self) -> FailoverPersist {
        self.persist
    }
    /// Message and binding counters since the engine started.
    pub fn stats(&self) -> &Stats {
        &self.stats
    }
    /// Mean seconds between sending a BNDUPD and its BNDACK.
    pub fn mean_ack_latency(&self) -> Option<f64> {
        (self.stats.bndack_received > 0)
            .then(|| self.stats.ack_latency_sum as f64 / self.stats.bndack_received as f64)
    }

    /// The per-packet policy snapshot for the current state.
    pub fn policy(&self) -> FailoverPolicy {
        FailoverPolicy {
            role: self.cfg.role,
            state: self.state,
            mclt: self.mclt,
            lease_period_factor_permille: self.cfg.lease_period_factor_permille,
            partner_down_usable_at: self.persist.partner_down_since.saturating_add(self.mclt),
            hba: self.hba,
            load_balance_max_secs: self.cfg.load_balance_max_secs,
            rebind_limit: self.cfg.rebind_limit,
            own_pool_waits: self.persist.blind_partner_down
                && self.state == ServerState::PartnerDown,
            expiry_grace: self.cfg.expiry_grace,
        }
    }

    // -----------------------------------------------------------------------------------------
    // Outputs

    /// Bytes to write to the TCP connection (every message produced so far, batched).
    pub fn poll_transmit(&mut self) -> Option<Vec<u8>> {
        self.pump();
        if self.out.is_empty() {
            None
        } else {
            Some(std::mem::take(&mut self.out))
        }
    }

    /// Next thing the driver must do, in order; call until None after every input.
    pub fn poll_action(&mut self) -> Option<Action> {
        self.actions.pop_front()
    }

    /// Next time [`handle_timeout`](Self::handle_timeout) must be called (Unix seconds).
    pub fn poll_timeout(&self) -> Option<u32> {
        let mut t: Option<u32> = None;
        let mut at = |v: u32| t = Some(t.map_or(v, |x: u32| x.min(v)));
        at(self.next_heartbeat);
        if let Some(c) = &self.conn {
            if c.phase == Phase::Established {
                at(c.last_tx.saturating_add(self.send_interval(c)));
            }
            at(c.last_rx.saturating_add(self.cfg.poll_timeout));
            if !c.comm_ok {
                at(c.opened_at.saturating_add(self.cfg.poll_timeout));
            }
        }
        match self.state {
            ServerState::Startup if !self.startup_timed_out => {
                at(self.started_at.saturating_add(self.cfg.startup_timeout))
            }
            ServerState::CommunicationsInterrupted if self.cfg.use_safe_period => at(self
                .interrupted_since()
                .saturating_add(self.cfg.safe_period)),
            // Past the deadline the transition waits for acknowledgements, not for a timer.
            ServerState::RecoverWait if self.now < self.recover_wait_until => {
                at(self.recover_wait_until)
            }
            ServerState::Normal
                if self.cfg.role == Role::Secondary
                    && self.communications_ok()
                    && !self.poolreq_outstanding =>
            {
                at(self.next_poolreq_at)
            }
            ServerState::PartnerDown => {
                if !self.takeover_noted {
                    at(self.policy().partner_down_usable_at)
                }
                if self.communications_ok() {
                    if let Some(until) = self.failback_held_until(self.now) {
                        at(until)
                    }
                }
            }
            _ => {}
        }
        t
    }

    // -----------------------------------------------------------------------------------------
    // Inputs

    /// A TCP connection to the partner is up (either side may have opened it).
    pub fn handle_connected(&mut self, now: u32) {
        self.tick(now);
        if self.conn.is_some() {
            // A second connection replaces the first.
            self.lose_connection(now, "replaced by a new connection");
        }
        self.out.clear();
        let gen = self.next_gen;
        self.next_gen += 1;
        self.stats.connections += 1;
        let mut c = Conn {
            gen,
            phase: Phase::AwaitConnect,
            decoder: Decoder::new(),
            comm_ok: false,
            opened_at: now,
            last_rx: now,
            last_tx: now,
            partner_max_unacked: self.cfg.max_unacked_bndupd,
            advertised_max_unacked: self.cfg.max_unacked_bndupd,
            partner_vendor: None,
            partner_receive_timer: 0,
            skew: None,
            skew_samples: [None; SKEW_WINDOW],
            skew_next: 0,
        };
        if self.cfg.role == Role::Primary {
            let xid = self.xid();
            c.phase = Phase::AwaitConnectAck(xid);
            // Sent before the partner says who it is: what suited it last time.
            c.advertised_max_unacked = match self.persist.connect_max_unacked {
                0 => self.cfg.max_unacked_bndupd,
                learnt => learnt.min(self.cfg.max_unacked_bndupd),
            };
            let max_unacked = c.advertised_max_unacked;
            self.conn = Some(c);
            let info = ConnectInfo {
                relationship_name: Some(self.cfg.relationship_name.as_bytes().to_vec()),
                max_unacked: Some(max_unacked),
                receive_timer: Some(self.cfg.poll_timeout),
                vendor_class: Some(self.cfg.vendor_class.as_bytes().to_vec()),
                protocol_version: Some(codec::PROTOCOL_VERSION),
                tls_request: Some(0),
                mclt: Some(self.mclt),
                hba: Some(self.hba.to_vec()),
                ..ConnectInfo::default()
            };
            self.send(Message::new(now, xid, Body::Connect(info)));
        } else {
            self.conn = Some(c);
        }
    }

    /// The TCP connection closed (or failed).
    pub fn handle_disconnected(&mut self, now: u32) {
        self.tick(now);
        if self.conn.is_some() {
            self.lose_connection(now, "connection closed");
        }
    }

    /// Bytes received from the partner.
    pub fn handle_bytes(&mut self, now: u32, bytes: &[u8]) {
        self.tick(now);
        let Some(c) = self.conn.as_mut() else {
            return;
        };
        c.decoder.push(bytes);
        loop {
            let Some(c) = self.conn.as_mut() else {
                return;
            };
            match c.decoder.next_message() {
                Ok(Some(m)) => {
                    c.last_rx = now;
                    self.persist.last_contact = now;
                    // Draft-12 5.10: estimate the partner's clock offset from every message.
                    // A sample is the true offset minus the transit delay, so the largest of
                    // the last 16 samples is the estimate (it follows clock steps within 16
                    // messages); offsets within +-2 s count as none (1-second quantisation).
                    let sample =
                        (m.time as i64 - now as i64).clamp(i32::MIN as i64, i32::MAX as i64) as i32;
                    c.skew_samples[c.skew_next % SKEW_WINDOW] = Some(sample);
                    c.skew_next = c.skew_next.wrapping_add(1);
                    let est = c.skew_samples.iter().flatten().copied().max().unwrap_or(0) as i64;
                    c.skew = Some(if est.abs() <= 2 { 0 } else { est });
                    self.handle_message(now, m);
                }
                Ok(None) => break,
                Err(e) => {
                    self.stats.protocol_errors += 1;
                    self.close(now, RejectReason::Other(254), &e.to_string());
                    return;
                }
            }
        }
        self.after_input(now);
    }

    /// A deadline from [`poll_timeout`](Self::poll_timeout) has passed.
    pub fn handle_timeout(&mut self, now: u32) {
        self.tick(now);
        if now >= self.next_heartbeat {
            self.next_heartbeat = now.saturating_add(self.cfg.heartbeat_interval);
            // "Operational" = answering clients: that is what the partner's PARTNER-DOWN
            // time is compared with when we restart (draft-12 9.3.2 step 5).
            if self.policy().responsive() || self.state == ServerState::RecoverDone {
                self.persist.last_operational = now;
            }
            if self.communications_ok() {
                self.persist.last_contact = now;
            }
            self.emit_persist();
        }
        if let Some(c) = &self.conn {
            if now >= c.last_rx.saturating_add(self.cfg.poll_timeout) {
                self.close(
                    now,
                    RejectReason::NoTraffic,
                    "no traffic within receive timer",
                );
            } else if !c.comm_ok && now >= c.opened_at.saturating_add(self.cfg.poll_timeout) {
                self.close(now, RejectReason::Misc, "connection setup timed out");
            } else if c.phase == Phase::Established
                && now >= c.last_tx.saturating_add(self.send_interval(c))
            {
                let xid = self.xid();
                self.send(Message::new(now, xid, Body::Contact));
            }
        }
        match self.state {
            ServerState::Startup
                if !self.startup_timed_out
                    && now >= self.started_at.saturating_add(self.cfg.startup_timeout) =>
            {
                self.startup_timed_out = true;
                self.startup_expired(now)
            }
            ServerState::CommunicationsInterrupted
                if self.cfg.use_safe_period
                    && now
                        >= self
                            .interrupted_since()
                            .saturating_add(self.cfg.safe_period) =>
            {
                // Safe period over: the partner is assumed down since we last heard from it.
                let base = self.interrupted_since();
                self.enter_partner_down(now, base, "safe period expired");
            }
            ServerState::RecoverWait => self.finish_recover_wait(now),
            // The failback hold may have ended.
            ServerState::PartnerDown => self.react(now),
            _ => {}
        }
        self.maybe_poolreq(now);
        self.after_input(now);
    }

    // -----------------------------------------------------------------------------------------
    // Internals

    fn tick(&mut self, now: u32) {
        // Clocks may step backwards; the engine only needs a monotone-ish "now" for stamps.
        self.now = now;
    }

    fn xid(&mut self) -> u32 {
        let x = self.next_xid;
        self.next_xid = self.next_xid.wrapping_add(1).max(1);
        x
    }

    /// Sends `body` as a new message (next xid).
    fn send_body(&mut self, now: u32, body: Body) {
        let xid = self.xid();
        self.send(Message::new(now, xid, body));
    }

    fn send(&mut self, m: Message) {
        match m.encode(&mut self.out) {
            Ok(_) => {
                if let Some(c) = self.conn.as_mut() {
                    c.last_tx = self.now;
                }
            }
            Err(e) => self
                .actions
                .push_back(Action::Log(format!("failover: cannot encode: {e}"))),
        }
    }

    fn emit_persist(&mut self) {
        self.actions.push_back(Action::Persist(self.persist));
    }

    fn after_input(&mut self, now: u32) {
        self.pump();
        self.note_takeover(now);
    }

    fn handle_message(&mut self, now: u32, m: Message) {
        let Some(phase) = self.conn.as_ref().map(|c| c.phase) else {
            return;
        };
        match m.body {
            Body::Connect(info) => self.on_connect(now, m.time, m.xid, phase, info),
            Body::ConnectAck(info) => self.on_connectack(now, m.time, m.xid, phase, info),
            _ if phase != Phase::Established => {
                self.stats.protocol_errors += 1;
                self.close(now, RejectReason::Misc, "message before CONNECT/CONNECTACK");
            }
            Body::State {
                state,
                flags,
                start_time,
            } => self.on_state(now, state, flags, start_time),
            Body::Contact | Body::Optional { .. } => {}
            Body::Disconnect {
                reject_reason,
                message,
            } => {
                let text = message
                    .map(|v| String::from_utf8_lossy(&v).into_owned())
                    .unwrap_or_default();
                self.actions.push_back(Action::Log(format!(
                    "failover: partner disconnected: reason {reject_reason}: {text}"
                )));
                self.actions.push_back(Action::Close {
                    reason: RejectReason::from_wire(reject_reason),
                    message: text,
                });
                self.lose_connection(now, "partner disconnected");
            }
            Body::BndUpd(txns) => self.on_bndupd(now, m.time, m.xid, txns),
            Body::BndAck(txns) => self.on_bndack(now, m.xid, txns),
            Body::UpdReq | Body::UpdReqAll => {
                let all = matches!(m.body, Body::UpdReqAll) || self.owe_all;
                if all {
                    self.owe_all = true;
                }
                self.serving = Some(Serving {
                    xid: m.xid,
                    all,
                    cover_seq: None,
                    total: 0,
                });
                self.event(
                    now,
                    events::FailoverEventKind::SyncStarted,
                    format!(
                        "partner ({}) asked for {} bindings ({})",
                        self.partner.map_or("state unknown", |p| p.name()),
                        if all { "all" } else { "its unacknowledged" },
                        if all { "UPDREQALL" } else { "UPDREQ" }
                    ),
                    0,
                );
                self.actions.push_back(Action::SendBindings { all });
            }
            Body::UpdDone => self.on_upddone(now, m.xid),
            Body::PoolReq => {
                if self.cfg.role == Role::Primary {
                    let id = self.next_pool_id;
                    self.next_pool_id = self.next_pool_id.wrapping_add(1);
                    let gen = self.conn.as_ref().map_or(0, |c| c.gen);
                    self.pool_requests.insert(id, (gen, m.xid));
                    self.actions.push_back(Action::PoolRequest { id });
                } else {
                    self.actions.push_back(Action::Log(
                        "failover: POOLREQ received by the secondary; ignored".into(),
                    ));
                }
            }
            Body::PoolResp {
                addresses_transferred,
            } => {
                self.poolreq_outstanding = false;
                self.actions.push_back(Action::PoolGranted {
                    addresses: addresses_transferred,
                });
                // Draft-12 7.7.2: ask again while the primary keeps granting.
                self.next_poolreq_at = if addresses_transferred > 0 {
                    now
                } else {
                    now.saturating_add(self.cfg.pool_request_interval)
                };
                self.maybe_poolreq(now);
            }
        }
    }
}
