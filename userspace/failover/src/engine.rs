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

use std::collections::VecDeque;
use std::net::Ipv4Addr;

use crate::codec::{self, BindingTxn, Body, ConnectInfo, Decoder, Message};
use crate::persist::FailoverPersist;
use crate::policy::{hba_from_split, FailoverPolicy};
use crate::types::{Binding, BindingStatus, RejectReason, Role, ServerState};

/// Maps touched once or more per binding update: foldhash (seeded per process) instead of
/// SipHash, which showed in the driver profiles.
type HashMap<K, V> = std::collections::HashMap<K, V, foldhash::fast::RandomState>;

/// Configuration of one failover relationship. All times in seconds.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Config {
    pub role: Role,
    /// relationship-name; must be identical on both partners.
    pub relationship_name: String,
    /// Maximum client lead time (the secondary uses the primary's from CONNECT).
    pub mclt: u32,
    /// BNDUPDs we accept unacknowledged (advertised), and our own cap on sending.
    pub max_unacked_bndupd: u32,
    /// tSend: a CONTACT goes out when nothing was sent for this long.
    pub poll_interval: u32,
    /// tReceive: silence after which the connection is dropped (advertised as receive-timer).
    pub poll_timeout: u32,
    pub use_safe_period: bool,
    /// Time in COMMUNICATIONS-INTERRUPTED before the automatic move to PARTNER-DOWN.
    pub safe_period: u32,
    /// Potential expiration = now + desired * factor / 1000.
    pub lease_period_factor_permille: u32,
    /// Load balancing (primary): buckets `0..split` are the primary's (ISC `split`); None =
    /// no load balancing (the primary owns every bucket).
    pub split: Option<u16>,
    /// Explicit HBA (primary), overrides `split`.
    pub hba: Option<[u8; 32]>,
    pub load_balance_max_secs: u16,
    /// Percentage of available addresses the primary grants the secondary on POOLREQ.
    pub backup_pct: u8,
    /// T2 = T1 + rebind_limit when serving the partner's client; 0 = off.
    pub rebind_limit: u32,
    /// STARTUP lasts at least this long when the partner cannot be reached.
    pub startup_timeout: u32,
    /// When true (the safe default) a server that cannot reach its partner leaves STARTUP on
    /// timeout only into states that cannot cause a duplicate (PARTNER-DOWN, RECOVER,
    /// RECOVER-WAIT, RECOVER-DONE); otherwise it waits for the partner. When false it resumes
    /// its previous state like ISC dhcpd (the draft's "reasons to go to previous state").
    pub startup_needs_partner: bool,
    /// A primary with no persisted failover state that cannot reach its partner before the
    /// startup timeout goes PARTNER-DOWN and serves (spec: "a main whose partner has never
    /// been seen starts in PARTNER-DOWN"). Unsafe if its database was lost: then set
    /// `failover_recover`.
    pub fresh_primary_partner_down: bool,
    /// `failover-recover`: the database was restored from a copy taken at this time: start
    /// in RECOVER, pull everything (UPDREQALL), wait MCLT from this time.
    pub failover_recover: Option<u32>,
    /// CONNECT/CONNECTACK whose time differs more than this from ours is refused (ISC: 60).
    pub max_time_skew: u32,
    /// The secondary re-sends POOLREQ this often in NORMAL.
    pub pool_request_interval: u32,
    /// `last_operational` is persisted this often.
    pub heartbeat_interval: u32,
    pub vendor_class: String,
    /// Binding transactions packed into one BNDUPD (draft-12 6.3), within the 2048-byte
    /// message limit. Only used with a partner whose vendor-class says it is xdhcpd: ISC
    /// dhcpd refuses a repeated option, so every other partner gets one per message.
    pub max_bindings_per_bndupd: usize,
    /// A lease counts as ended only this many seconds after its end, for every failover rule
    /// (accepting a partner's EXPIRED/FREE over our ACTIVE, the expiry sweeper, counting MCLT
    /// before reusing an address): it absorbs clock offsets between the partners.
    pub expiry_grace: u32,
}

/// Default [`Config::expiry_grace`]: well above NTP-disciplined clock offsets.
pub const DEFAULT_EXPIRY_GRACE: u32 = 30;

impl Config {
    pub fn new(role: Role, relationship_name: &str) -> Self {
        Config {
            role,
            relationship_name: relationship_name.to_string(),
            mclt: 3600,
            max_unacked_bndupd: 100,
            poll_interval: 10,
            poll_timeout: 60,
            use_safe_period: true,
            safe_period: 4 * 3600,
            lease_period_factor_permille: 1500,
            split: None,
            hba: None,
            load_balance_max_secs: 3,
            backup_pct: 50,
            rebind_limit: 0,
            startup_timeout: 10,
            startup_needs_partner: true,
            fresh_primary_partner_down: true,
            failover_recover: None,
            max_time_skew: 60,
            pool_request_interval: 3600,
            heartbeat_interval: 30,
            vendor_class: format!("{XDHCPD_VENDOR_PREFIX}{}", env!("CARGO_PKG_VERSION")),
            max_bindings_per_bndupd: 64,
            expiry_grace: DEFAULT_EXPIRY_GRACE,
        }
    }

    /// Checks values that would make the protocol misbehave.
    pub fn validate(&self) -> Result<(), ConfigError> {
        let bad = |field: &'static str, why: &'static str| Err(ConfigError { field, why });
        if self.relationship_name.is_empty() || self.relationship_name.len() > 255 {
            return bad("relationship_name", "must be 1..=255 bytes");
        }
        if self.mclt == 0 {
            return bad("mclt", "must be > 0");
        }
        if self.max_unacked_bndupd == 0 {
            return bad("max_unacked_bndupd", "must be >= 1");
        }
        if self.max_bindings_per_bndupd == 0 {
            return bad("max_bindings_per_bndupd", "must be >= 1");
        }
        if self.poll_interval == 0 || self.poll_timeout <= self.poll_interval {
            return bad(
                "poll_timeout",
                "must exceed poll_interval, which must be > 0",
            );
        }
        if self.use_safe_period && self.safe_period == 0 {
            return bad("safe_period", "must be > 0 when use_safe_period");
        }
        if self.lease_period_factor_permille < 1000 {
            return bad("lease_period_factor", "must be >= 1.0");
        }
        if self.split.is_some_and(|s| s > 256) {
            return bad("split", "must be 0..=256");
        }
        if self.backup_pct > 100 {
            return bad("backup_pct", "must be 0..=100");
        }
        if self.expiry_grace >= self.mclt {
            return bad("expiry_grace", "must be below mclt");
        }
        if self.heartbeat_interval == 0 || self.pool_request_interval == 0 {
            return bad("heartbeat_interval", "intervals must be > 0");
        }
        Ok(())
    }

    /// The rules a [`crate::BindingSync`] applies to this server's records.
    pub fn store_rules(&self) -> crate::StoreRules {
        crate::StoreRules {
            role: self.role,
            expiry_grace: self.expiry_grace,
        }
    }

    /// The HBA the primary sends (bit set = primary's bucket, ISC convention).
    pub fn primary_hba(&self) -> [u8; 32] {
        if let Some(h) = self.hba {
            h
        } else {
            hba_from_split(self.split.unwrap_or(256))
        }
    }
}

/// A configuration value the engine cannot work with.
#[derive(Clone, Debug, PartialEq, Eq, thiserror::Error)]
#[error("failover configuration: {field} {why}")]
pub struct ConfigError {
    pub field: &'static str,
    pub why: &'static str,
}

/// A command refused in the current state.
#[derive(Clone, Debug, PartialEq, Eq, thiserror::Error)]
#[error("failover command {command} not allowed in state {state}")]
pub struct CommandError {
    pub command: &'static str,
    pub state: ServerState,
}

/// Identifies one binding transaction handed out in [`Action::ApplyBinding`].
pub type UpdateId = u64;

/// What the driver must do next.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Action {
    /// Own or partner state changed: log one line, publish the new policy.
    StateChanged {
        from: ServerState,
        own: ServerState,
        partner: Option<ServerState>,
        at: u32,
        reason: &'static str,
    },
    /// Persisted state changed: write it to the lease store's reserved area.
    Persist(FailoverPersist),
    /// Publish this snapshot to the DHCP workers (e.g. [`crate::PolicyCell::store`]).
    PolicyChanged(FailoverPolicy),
    /// A partner's binding update: decide ([`crate::table::resolve_update`]), write it durably,
    /// then call [`FailoverEngine::binding_applied`].
    ApplyBinding { id: UpdateId, binding: Binding },
    /// The partner acknowledged `sent`; apply with [`crate::table::apply_ack`].
    BindingAcked {
        addr: Ipv4Addr,
        acked_potential_expiry: u32,
        sent: Binding,
    },
    /// The partner refused `sent`. Do not resend at once (draft-12 7.2.2); it goes out again
    /// with the next UPDREQ or lease change.
    BindingRejected {
        sent: Binding,
        reason: RejectReason,
        message: String,
    },
    /// Queue bindings with [`FailoverEngine::queue_binding`] (all = every binding that ever had
    /// a client; else only those the partner has not acknowledged), then call
    /// [`FailoverEngine::bindings_queued`].
    SendBindings { all: bool },
    /// Primary: the secondary asked for addresses (POOLREQ). Move `backup_pct` of the available
    /// FREE addresses to BACKUP (see [`backup_share`]), report each with `lease_changed`, then
    /// call [`FailoverEngine::pool_response`] with the count.
    PoolRequest { id: u32 },
    /// Secondary: the primary granted this many addresses (they arrive as BNDUPD BACKUP).
    PoolGranted { addresses: u32 },
    /// Flush [`FailoverEngine::poll_transmit`], then close the TCP connection. The engine
    /// already treats the connection as gone.
    Close {
        reason: RejectReason,
        message: String,
    },
    /// Something to log (partner's DISCONNECT text, protocol errors).
    Log(String),
}

/// How many addresses the backup should hold: `backup_pct` percent of those available to
/// either partner (FREE + BACKUP), minus what it already holds.
pub fn backup_share(free: usize, backup: usize, backup_pct: u8) -> usize {
    let target = (free + backup) * backup_pct.min(100) as usize / 100;
    target.saturating_sub(backup)
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Phase {
    AwaitConnect,
    AwaitConnectAck(u32),
    Established,
}

#[derive(Debug)]
struct Conn {
    gen: u64,
    phase: Phase,
    decoder: Decoder,
    /// A STATE from the partner arrived on this connection: communications are "ok".
    comm_ok: bool,
    opened_at: u32,
    last_rx: u32,
    last_tx: u32,
    partner_max_unacked: u32,
    /// vendor-class the partner sent in CONNECT / CONNECTACK (its implementation).
    partner_vendor: Option<Vec<u8>>,
    partner_receive_timer: u32,
    /// Partner clock minus ours, seconds.
    skew: Option<i64>,
    skew_samples: [Option<i32>; SKEW_WINDOW],
    skew_next: usize,
}

const SKEW_WINDOW: usize = 16;

/// Our vendor-class starts with this; a partner whose vendor-class does too takes BNDUPDs
/// with several binding transactions.
pub const XDHCPD_VENDOR_PREFIX: &str = "xdhcpd-";

#[derive(Debug, Clone)]
struct Pending {
    seq: u64,
    binding: Binding,
}

/// One BNDUPD awaiting its BNDACK: its binding transactions with their queue sequence numbers.
#[derive(Debug, Clone)]
struct InFlight {
    items: Vec<(u64, Binding)>,
    sent_at: u32,
}

#[derive(Debug)]
struct Incoming {
    gen: u64,
    results: Vec<(Ipv4Addr, Option<(RejectReason, String)>)>,
    remaining: usize,
}

#[derive(Debug)]
struct Serving {
    xid: u32,
    all: bool,
    /// Set by `bindings_queued`: every queued entry with seq <= this is covered.
    cover_seq: Option<u64>,
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
    pub bndupd_rejected_by_partner: u64,
    pub bndupd_received: u64,
    pub bndupd_rejected_by_us: u64,
    pub ack_latency_sum: u64,
    pub protocol_errors: u64,
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
}

fn comm_failed_state(s: ServerState) -> ServerState {
    match s {
        ServerState::Normal => ServerState::CommunicationsInterrupted,
        ServerState::PotentialConflict => ServerState::ResolutionInterrupted,
        other => other,
    }
}

impl FailoverEngine {
    /// Creates the endpoint in STARTUP. `persisted` is what the last run stored (None: no
    /// failover state on record, i.e. first start or lost database).
    pub fn new(
        cfg: Config,
        persisted: Option<FailoverPersist>,
        now: u32,
    ) -> Result<Self, ConfigError> {
        cfg.validate()?;
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
        });
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
        let mut e = FailoverEngine {
            now,
            started_at: now,
            state: ServerState::Startup,
            state_since: now,
            prev_state: prev,
            prev_since,
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
        Ok(e)
    }

    // -----------------------------------------------------------------------------------------
    // Getters

    pub fn config(&self) -> &Config {
        &self.cfg
    }
    pub fn state(&self) -> ServerState {
        self.state
    }
    pub fn state_since(&self) -> u32 {
        self.state_since
    }
    pub fn partner_state(&self) -> Option<ServerState> {
        self.partner
    }
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
    pub fn connected(&self) -> bool {
        self.conn.is_some()
    }
    pub fn last_contact(&self) -> u32 {
        self.persist.last_contact
    }
    /// BNDUPDs sent and not yet acknowledged.
    /// The vendor-class the partner sent on this connection (e.g. `xdhcpd-0.1.0`), if any.
    pub fn partner_vendor_class(&self) -> Option<&[u8]> {
        self.conn.as_ref()?.partner_vendor.as_deref()
    }

    /// The partner said (vendor-class in CONNECT/CONNECTACK) it is xdhcpd.
    pub fn partner_is_xdhcpd(&self) -> bool {
        self.partner_vendor_class()
            .is_some_and(|v| v.starts_with(XDHCPD_VENDOR_PREFIX.as_bytes()))
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
    pub fn persisted(&self) -> FailoverPersist {
        self.persist
    }
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
            _ => {}
        }
        t
    }

    fn send_interval(&self, c: &Conn) -> u32 {
        // tSend: our poll interval, and never more than a third of the partner's receive timer.
        let partner = if c.partner_receive_timer > 0 {
            (c.partner_receive_timer / 3).max(1)
        } else {
            self.cfg.poll_interval
        };
        self.cfg.poll_interval.min(partner)
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
            partner_vendor: None,
            partner_receive_timer: 0,
            skew: None,
            skew_samples: [None; SKEW_WINDOW],
            skew_next: 0,
        };
        if self.cfg.role == Role::Primary {
            let xid = self.xid();
            c.phase = Phase::AwaitConnectAck(xid);
            self.conn = Some(c);
            let info = ConnectInfo {
                relationship_name: Some(self.cfg.relationship_name.as_bytes().to_vec()),
                max_unacked: Some(self.cfg.max_unacked_bndupd),
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
            _ => {}
        }
        self.maybe_poolreq(now);
        self.after_input(now);
    }

    /// A DHCP worker changed a lease: queue it for the partner (lazy; sent in batches by
    /// `poll_transmit`, never more than max-unacked-bndupd outstanding).
    pub fn lease_changed(&mut self, now: u32, binding: Binding) {
        self.tick(now);
        self.enqueue(binding);
    }

    /// Same as `lease_changed`, for bindings the driver queues after [`Action::SendBindings`].
    pub fn queue_binding(&mut self, binding: Binding) {
        self.enqueue(binding);
    }

    /// The driver has queued everything [`Action::SendBindings`] asked for.
    pub fn bindings_queued(&mut self, now: u32) {
        self.tick(now);
        if let Some(s) = self.serving.as_mut() {
            if s.cover_seq.is_none() {
                s.cover_seq = Some(self.seq);
            }
        }
        self.check_updreq_done(now);
    }

    /// The driver wrote (or refused) the binding of [`Action::ApplyBinding`] `id`.
    pub fn binding_applied(
        &mut self,
        now: u32,
        id: UpdateId,
        result: Result<(), (RejectReason, String)>,
    ) {
        self.tick(now);
        let Some((gen, xid, idx)) = self.update_ids.remove(&id) else {
            return;
        };
        let done = match self.incoming.get_mut(&xid) {
            Some(inc) if inc.gen == gen => {
                if result.is_ok() {
                    // The partner's newer information replaced our record: an update of ours
                    // for this address that is still queued is stale; drop it (the `order`
                    // entry is skipped when its address has no pending entry).
                    if let Some((addr, _)) = inc.results.get(idx) {
                        self.pending.remove(addr);
                    }
                }
                if let Err(r) = result {
                    self.stats.bndupd_rejected_by_us += 1;
                    if let Some(slot) = inc.results.get_mut(idx) {
                        slot.1 = Some(r);
                    }
                }
                inc.remaining = inc.remaining.saturating_sub(1);
                inc.remaining == 0
            }
            _ => false,
        };
        if done {
            self.finish_incoming(now, xid);
        }
    }

    /// Secondary: the workers found no BACKUP address: send POOLREQ now instead of waiting for
    /// `pool_request_interval` (only in NORMAL with communications OK, and never while one is
    /// outstanding). The caller rate-limits.
    pub fn request_pool_now(&mut self, now: u32) {
        self.tick(now);
        if !self.poolreq_outstanding {
            self.next_poolreq_at = now;
        }
        self.maybe_poolreq(now);
    }

    /// Primary: answer to [`Action::PoolRequest`]: `granted` addresses moved to BACKUP.
    pub fn pool_response(&mut self, now: u32, id: u32, granted: u32) {
        self.tick(now);
        let Some((gen, xid)) = self.pool_requests.remove(&id) else {
            return;
        };
        if self
            .conn
            .as_ref()
            .is_some_and(|c| c.gen == gen && c.phase == Phase::Established)
        {
            self.send(Message::new(
                now,
                xid,
                Body::PoolResp {
                    addresses_transferred: granted,
                },
            ));
        }
    }

    // -----------------------------------------------------------------------------------------
    // Commands

    /// Operator: the partner is down. MCLT before using its addresses counts from `since`
    /// (when it was last known alive), or without it from the start of
    /// COMMUNICATIONS-INTERRUPTED (now, when communicating or recovering).
    ///
    /// From RECOVER or RECOVER-WAIT (the partner is gone for good before we learnt what it
    /// leased, e.g. while it was PARTNER-DOWN) this is a *blind* PARTNER-DOWN: draft-12 has
    /// no way out of RECOVER without the partner, and the partner may have leased any
    /// address, ours included, for up to MCLT past its last activity. So every address, our
    /// own pool too, waits until `since` + MCLT (and the record's last end + MCLT).
    pub fn partner_down(&mut self, now: u32, since: Option<u32>) -> Result<(), CommandError> {
        self.tick(now);
        match self.state {
            ServerState::CommunicationsInterrupted
            | ServerState::ResolutionInterrupted
            | ServerState::Normal
            | ServerState::Startup
            | ServerState::PartnerDown => {}
            ServerState::Recover | ServerState::RecoverWait => {
                self.persist.blind_partner_down = true;
            }
            s => {
                return Err(CommandError {
                    command: "partner-down",
                    state: s,
                })
            }
        }
        let default = match self.state {
            ServerState::CommunicationsInterrupted | ServerState::ResolutionInterrupted => {
                self.interrupted_since()
            }
            ServerState::PartnerDown => self.persist.partner_down_since,
            _ => now,
        };
        let base = since.unwrap_or(default).min(now);
        if self.state == ServerState::PartnerDown {
            self.persist.partner_down_since = base;
            self.emit_persist();
            self.actions.push_back(Action::PolicyChanged(self.policy()));
        } else {
            self.enter_partner_down(now, base, "partner-down command");
        }
        self.after_input(now);
        Ok(())
    }

    /// Operator: `failover recover`: pull the partner's whole database (RECOVER, UPDREQALL)
    /// and wait MCLT from now before serving.
    pub fn recover(&mut self, now: u32) -> Result<(), CommandError> {
        self.tick(now);
        if matches!(self.state, ServerState::Shutdown | ServerState::Paused) {
            return Err(CommandError {
                command: "recover",
                state: self.state,
            });
        }
        self.persist.recover_all = true;
        self.persist.recover_base = now;
        self.may_skip_recover_wait = false;
        self.sent_updreq = None;
        if self.state == ServerState::Startup {
            self.prev_state = ServerState::Recover;
        } else {
            self.set_state(now, ServerState::Recover, "recover command");
            self.react(now);
        }
        self.after_input(now);
        Ok(())
    }

    /// Graceful stop for a long time: tell the partner (it may go PARTNER-DOWN). The driver
    /// should keep the connection a few seconds, then close it and exit.
    pub fn shutdown(&mut self, now: u32) {
        self.tick(now);
        self.stop(now, ServerState::Shutdown, "shutdown command");
    }

    /// Short planned stop: the partner goes COMMUNICATIONS-INTERRUPTED.
    ///
    /// Only from NORMAL or COMMUNICATIONS-INTERRUPTED. A partner that restarts while we are
    /// PAUSED sees only "PAUSED", not the state we paused in: had that been PARTNER-DOWN (we
    /// used its addresses), it would resume NORMAL/COMMUNICATIONS-INTERRUPTED instead of
    /// RECOVER and could hand one of them out again (found by the simulation, seed 5852).
    /// In other states the operator stops the server (SHUTDOWN) instead.
    pub fn pause(&mut self, now: u32) -> Result<(), CommandError> {
        self.tick(now);
        if !matches!(
            self.state,
            ServerState::Normal | ServerState::CommunicationsInterrupted
        ) {
            return Err(CommandError {
                command: "pause",
                state: self.state,
            });
        }
        self.stop(now, ServerState::Paused, "pause command");
        Ok(())
    }

    fn stop(&mut self, now: u32, to: ServerState, reason: &'static str) {
        if matches!(self.state, ServerState::Shutdown | ServerState::Paused) {
            return;
        }
        let resume = if self.state == ServerState::Startup {
            self.prev_state
        } else {
            comm_failed_state(self.state)
        };
        self.persist.resume_state = resume;
        self.set_state(now, to, reason);
        self.after_input(now);
    }

    // -----------------------------------------------------------------------------------------
    // Internals

    fn tick(&mut self, now: u32) {
        // Clocks may step backwards; the engine only needs a monotone-ish "now" for stamps.
        self.now = now;
    }

    /// Start of the current interruption: entry into the state, or the last message from the
    /// partner if one arrived later (a partner that spoke is alive and bound by the
    /// COMMUNICATIONS-INTERRUPTED rules, so the safe period restarts).
    pub fn interrupted_since(&self) -> u32 {
        self.state_since.max(self.persist.last_contact)
    }

    /// Partner clock minus ours as currently estimated (0 when not connected).
    pub fn partner_clock_offset(&self) -> i64 {
        self.conn.as_ref().and_then(|c| c.skew).unwrap_or(0)
    }

    /// Converts a partner timestamp to our clock; 0 ("unset") stays 0.
    fn to_local(&self, t: u32) -> u32 {
        if t == 0 {
            return 0;
        }
        (t as i64 - self.partner_clock_offset()).clamp(1, u32::MAX as i64) as u32
    }

    fn xid(&mut self) -> u32 {
        let x = self.next_xid;
        self.next_xid = self.next_xid.wrapping_add(1).max(1);
        x
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

    fn close(&mut self, now: u32, reason: RejectReason, message: &str) {
        if self
            .conn
            .as_ref()
            .is_some_and(|c| c.phase == Phase::Established)
        {
            let xid = self.xid();
            self.send(Message::new(
                now,
                xid,
                Body::Disconnect {
                    reject_reason: reason.to_wire(),
                    message: Some(message.as_bytes().to_vec()),
                },
            ));
        }
        self.actions.push_back(Action::Close {
            reason,
            message: message.to_string(),
        });
        self.lose_connection(now, "connection dropped");
    }

    fn lose_connection(&mut self, now: u32, why: &'static str) {
        let was_ok = self.communications_ok();
        self.conn = None;
        // Unacknowledged updates go back to the queue: they are re-sent on the next connection.
        let mut back: Vec<(u64, Binding)> =
            self.inflight.drain().flat_map(|(_, f)| f.items).collect();
        self.inflight_bindings = 0;
        back.sort_by_key(|(seq, _)| *seq);
        for (seq, binding) in back.into_iter().rev() {
            let addr = binding.addr;
            match self.pending.get_mut(&addr) {
                Some(p) => p.seq = p.seq.min(seq),
                None => {
                    self.pending.insert(addr, Pending { seq, binding });
                    self.order.push_front(addr);
                }
            }
        }
        // Requests and answers do not survive a connection (draft-12 8.6).
        self.incoming.clear();
        self.update_ids.clear();
        self.serving = None;
        self.sent_updreq = None;
        self.pool_requests.clear();
        self.poolreq_outstanding = false;
        if was_ok {
            self.persist.last_contact = now;
            let to = comm_failed_state(self.state);
            if to != self.state {
                self.set_state(now, to, why);
            } else {
                self.emit_persist();
            }
        }
    }

    fn enqueue(&mut self, b: Binding) {
        self.seq += 1;
        match self.pending.entry(b.addr) {
            // Keep the older sequence number: a newer version of an entry that an UPDREQ
            // covers is still covered (else UPDDONE could go out without this address).
            std::collections::hash_map::Entry::Occupied(mut e) => e.get_mut().binding = b,
            std::collections::hash_map::Entry::Vacant(e) => {
                self.order.push_back(b.addr);
                e.insert(Pending {
                    seq: self.seq,
                    binding: b,
                });
            }
        }
    }

    /// Binding transactions per BNDUPD for this partner (see `Config::max_bindings_per_bndupd`).
    fn bindings_per_bndupd(&self) -> usize {
        if self.partner_is_xdhcpd() {
            self.cfg.max_bindings_per_bndupd
        } else {
            1
        }
    }

    fn may_send_updates(&self) -> bool {
        if !self.communications_ok() {
            return false;
        }
        if self.serving.is_some() {
            return true;
        }
        // PAUSED: the bindings made before the pause still reach the partner while the
        // connection lasts (the operator stops the daemon after `pause`).
        matches!(
            self.state,
            ServerState::Normal
                | ServerState::CommunicationsInterrupted
                | ServerState::PartnerDown
                | ServerState::ConflictDone
                | ServerState::RecoverDone
                | ServerState::RecoverWait
                | ServerState::ResolutionInterrupted
                | ServerState::Paused
        )
    }

    /// Encoded size of one binding transaction inside a BNDUPD/BNDACK (`usize::MAX` when it
    /// cannot be encoded).
    fn txn_len(&mut self, t: &BindingTxn) -> usize {
        self.txn_scratch.clear();
        match codec::encode_txn(&mut self.txn_scratch, t) {
            Ok(()) => self.txn_scratch.len(),
            Err(_) => usize::MAX,
        }
    }

    /// Turns queued bindings into BNDUPD messages within the unacked window.
    fn pump(&mut self) {
        if !self.may_send_updates() {
            return;
        }
        let window = match &self.conn {
            Some(c) => self
                .cfg
                .max_unacked_bndupd
                .min(c.partner_max_unacked.max(1)) as usize,
            None => return,
        };
        let batch = self.bindings_per_bndupd();
        while self.inflight.len() < window && !self.order.is_empty() {
            // Pack transactions until the batch is full or the next one would overflow the
            // 2048-byte message (the header and every transaction are counted exactly).
            let mut txns = Vec::new();
            let mut items = Vec::new();
            let mut len = codec::HEADER_LEN;
            while items.len() < batch {
                let Some(&addr) = self.order.front() else {
                    break;
                };
                let Some(p) = self.pending.get(&addr) else {
                    self.order.pop_front();
                    continue;
                };
                let txn = txn_from_binding(&p.binding);
                // Unencodable: sent alone; `send` logs the encoding error.
                let txn_len = self.txn_len(&txn);
                if !items.is_empty() && len.saturating_add(txn_len) > codec::MAX_MESSAGE_LEN {
                    break;
                }
                len = len.saturating_add(txn_len);
                self.order.pop_front();
                if let Some(p) = self.pending.remove(&addr) {
                    txns.push(txn);
                    items.push((p.seq, p.binding));
                }
            }
            if items.is_empty() {
                break;
            }
            let xid = self.xid();
            self.send(Message::new(self.now, xid, Body::BndUpd(txns)));
            self.stats.bndupd_sent += items.len() as u64;
            self.stats.bndupd_messages_sent += 1;
            self.inflight_bindings += items.len();
            self.inflight.insert(
                xid,
                InFlight {
                    items,
                    sent_at: self.now,
                },
            );
        }
        let now = self.now;
        self.check_updreq_done(now);
    }

    fn check_updreq_done(&mut self, now: u32) {
        let Some(s) = &self.serving else {
            return;
        };
        let Some(cover) = s.cover_seq else {
            return;
        };
        let waiting = self.pending.values().any(|p| p.seq <= cover)
            || self
                .inflight
                .values()
                .any(|f| f.items.iter().any(|(seq, _)| *seq <= cover));
        if waiting {
            return;
        }
        let (xid, all) = (s.xid, s.all);
        self.serving = None;
        if all {
            self.owe_all = false;
        }
        self.send(Message::new(now, xid, Body::UpdDone));
    }

    fn after_input(&mut self, _now: u32) {
        self.pump();
    }

    fn finish_incoming(&mut self, now: u32, xid: u32) {
        let Some(inc) = self.incoming.remove(&xid) else {
            return;
        };
        if self.conn.as_ref().is_none_or(|c| c.gen != inc.gen) {
            return;
        }
        let mut txns = inc
            .results
            .into_iter()
            .map(|(addr, r)| {
                let mut t = BindingTxn::new(addr);
                if let Some((reason, msg)) = r {
                    t.reject_reason = Some(reason.to_wire());
                    t.message = Some(msg.into_bytes());
                }
                t
            })
            .collect::<Vec<BindingTxn>>();
        // A BNDACK must fit the 2048-byte message like its BNDUPD did. Reject texts can make
        // it longer than the BNDUPD (a whole batch refused after a failed flush); they are
        // optional (draft-12 7.2), so they go first, and reasons and addresses always fit.
        let len = txns
            .iter()
            .fold(codec::HEADER_LEN, |n, t| n.saturating_add(self.txn_len(t)));
        if len > codec::MAX_MESSAGE_LEN {
            for t in &mut txns {
                t.message = None;
            }
        }
        self.send(Message::new(now, xid, Body::BndAck(txns)));
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
                });
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

    fn connect_reject(&mut self, now: u32, xid: u32, reason: RejectReason, why: &str, tls: bool) {
        let info = ConnectInfo {
            relationship_name: Some(self.cfg.relationship_name.as_bytes().to_vec()),
            protocol_version: Some(codec::PROTOCOL_VERSION),
            tls_reply: tls.then_some(0),
            reject_reason: Some(reason.to_wire()),
            message: Some(why.as_bytes().to_vec()),
            ..ConnectInfo::default()
        };
        self.send(Message::new(now, xid, Body::ConnectAck(info)));
        self.actions.push_back(Action::Close {
            reason,
            message: why.to_string(),
        });
        self.lose_connection(now, "CONNECT refused");
    }

    fn on_connect(&mut self, now: u32, time: u32, xid: u32, phase: Phase, info: ConnectInfo) {
        let tls = info.tls_request.is_some();
        if self.cfg.role == Role::Primary {
            self.stats.protocol_errors += 1;
            return self.connect_reject(
                now,
                xid,
                RejectReason::InvalidPartner,
                "CONNECT sent to the primary",
                tls,
            );
        }
        if phase != Phase::AwaitConnect {
            return self.connect_reject(
                now,
                xid,
                RejectReason::DuplicateConnection,
                "duplicate CONNECT",
                tls,
            );
        }
        if info.relationship_name.as_deref() != Some(self.cfg.relationship_name.as_bytes()) {
            return self.connect_reject(
                now,
                xid,
                RejectReason::InvalidPartner,
                "unknown relationship name",
                tls,
            );
        }
        if info.protocol_version != Some(codec::PROTOCOL_VERSION) {
            return self.connect_reject(
                now,
                xid,
                RejectReason::VersionMismatch,
                "protocol version mismatch",
                tls,
            );
        }
        if info.tls_request == Some(2) {
            return self.connect_reject(
                now,
                xid,
                RejectReason::TlsUnsupported,
                "TLS not supported",
                tls,
            );
        }
        if time.abs_diff(now) > self.cfg.max_time_skew {
            return self.connect_reject(
                now,
                xid,
                RejectReason::TimeMismatch,
                "time offset too large",
                tls,
            );
        }
        let Some(mclt) = info.mclt.filter(|&m| m > 0) else {
            return self.connect_reject(
                now,
                xid,
                RejectReason::InvalidMclt,
                "missing or zero MCLT",
                tls,
            );
        };
        let hba: Option<[u8; 32]> = info.hba.as_deref().and_then(|h| h.try_into().ok());
        let Some(hba) = hba else {
            return self.connect_reject(now, xid, RejectReason::HbaConflict, "invalid HBA", tls);
        };
        let policy_before = self.policy();
        // Draft-12 7.8.2 step 7: the secondary runs with (and stores) the primary's MCLT.
        self.mclt = mclt;
        self.hba = hba;
        if self.persist.mclt != mclt {
            self.persist.mclt = mclt;
            self.emit_persist();
        }
        if let Some(c) = self.conn.as_mut() {
            c.phase = Phase::Established;
            c.partner_max_unacked = info.max_unacked.unwrap_or(1).max(1);
            c.partner_receive_timer = info.receive_timer.unwrap_or(0);
            c.partner_vendor = info.vendor_class.clone();
        }
        let ack = ConnectInfo {
            relationship_name: Some(self.cfg.relationship_name.as_bytes().to_vec()),
            max_unacked: Some(self.cfg.max_unacked_bndupd),
            receive_timer: Some(self.cfg.poll_timeout),
            vendor_class: Some(self.cfg.vendor_class.as_bytes().to_vec()),
            protocol_version: Some(codec::PROTOCOL_VERSION),
            tls_reply: tls.then_some(0),
            ..ConnectInfo::default()
        };
        self.send(Message::new(now, xid, Body::ConnectAck(ack)));
        self.send_state(now);
        if self.policy() != policy_before {
            self.actions.push_back(Action::PolicyChanged(self.policy()));
        }
    }

    fn on_connectack(&mut self, now: u32, time: u32, xid: u32, phase: Phase, info: ConnectInfo) {
        if self.cfg.role == Role::Secondary || phase != Phase::AwaitConnectAck(xid) {
            // Draft-12 7.9.2: a CONNECTACK not matching our CONNECT is ignored.
            return;
        }
        if let Some(r) = info.reject_reason {
            let text = info
                .message
                .map(|v| String::from_utf8_lossy(&v).into_owned())
                .unwrap_or_default();
            self.actions.push_back(Action::Log(format!(
                "failover: partner refused CONNECT: reason {r}: {text}"
            )));
            self.actions.push_back(Action::Close {
                reason: RejectReason::from_wire(r),
                message: text,
            });
            return self.lose_connection(now, "CONNECT refused by partner");
        }
        if info.protocol_version != Some(codec::PROTOCOL_VERSION) {
            return self.close(
                now,
                RejectReason::VersionMismatch,
                "protocol version mismatch",
            );
        }
        if time.abs_diff(now) > self.cfg.max_time_skew {
            return self.close(now, RejectReason::TimeMismatch, "time offset too large");
        }
        if let Some(c) = self.conn.as_mut() {
            c.phase = Phase::Established;
            c.partner_max_unacked = info.max_unacked.unwrap_or(1).max(1);
            c.partner_receive_timer = info.receive_timer.unwrap_or(0);
            c.partner_vendor = info.vendor_class.clone();
        }
        self.send_state(now);
    }

    fn send_state(&mut self, now: u32) {
        if !self
            .conn
            .as_ref()
            .is_some_and(|c| c.phase == Phase::Established)
        {
            return;
        }
        let (state, flags, since) = if self.state == ServerState::Startup {
            // Draft-12 9.3.1: STARTUP flag with the previously recorded state.
            (self.prev_state, codec::SERVER_FLAG_STARTUP, self.prev_since)
        } else {
            (self.state, 0, self.state_since)
        };
        let xid = self.xid();
        self.send(Message::new(
            now,
            xid,
            Body::State {
                state: state.to_wire(),
                flags,
                start_time: since,
            },
        ));
    }

    fn on_state(&mut self, now: u32, state: u8, flags: u8, start_time: u32) {
        let Some(ps) = ServerState::from_wire(state) else {
            self.actions.push_back(Action::Log(format!(
                "failover: partner sent unknown state {state}; ignored"
            )));
            return;
        };
        let startup = flags & codec::SERVER_FLAG_STARTUP != 0 || ps == ServerState::Startup;
        let changed = self.partner != Some(ps) || self.partner_startup != startup;
        let start_time = self.to_local(start_time);
        self.partner = Some(ps);
        self.partner_since = start_time;
        self.partner_startup = startup;
        self.persist.partner_state = Some(ps);
        self.persist.partner_state_since = start_time;
        self.persist.last_contact = now;
        let first = !self.communications_ok();
        if let Some(c) = self.conn.as_mut() {
            c.comm_ok = true;
        }
        if first {
            self.persist.ever_communicated = true;
            if self.state == ServerState::Paused || self.state == ServerState::Shutdown {
                self.send_state(now);
            }
            // Re-send whatever the partner has not acknowledged (the queue may have been lost
            // in a restart); draft-12 9.8.1.
            self.actions.push_back(Action::SendBindings { all: false });
            if self.cfg.role == Role::Secondary {
                self.next_poolreq_at = now;
            }
        }
        self.emit_persist();
        if changed {
            self.actions.push_back(Action::StateChanged {
                from: self.state,
                own: self.state,
                partner: Some(ps),
                at: now,
                reason: "partner state",
            });
        }
        if self.state == ServerState::Shutdown && ps == ServerState::PartnerDown {
            // Draft-12 9.14.2: restart in RECOVER.
            self.persist.resume_state = ServerState::Recover;
            self.emit_persist();
        }
        if self.state == ServerState::Startup {
            self.leave_startup(now);
        }
        self.react(now);
    }

    fn leave_startup(&mut self, now: u32) {
        // A partner met in SHUTDOWN or PAUSED does not say what it was in before: if that was
        // PARTNER-DOWN it may have leased our addresses while we were down, and it can no
        // longer tell us (simulation seed 5852: resuming NORMAL -> COMMUNICATIONS-INTERRUPTED
        // -> PARTNER-DOWN on its SHUTDOWN re-leased such an address). Assume the worst, as for
        // a partner in PARTNER-DOWN: RECOVER (or POTENTIAL-CONFLICT) until it is back.
        let partner_pd = matches!(
            self.partner,
            Some(ServerState::PartnerDown | ServerState::Shutdown | ServerState::Paused)
        );
        let mut target = self.prev_state;
        let mut since = self.prev_since;
        if partner_pd && target != ServerState::Recover {
            // Draft-12 9.3.2 step 5: down before the partner went PARTNER-DOWN -> RECOVER,
            // else POTENTIAL-CONFLICT. Both times are whole seconds and the draft names only
            // "later" and "earlier": a tie (our last heartbeat stamp in the very second the
            // partner entered PARTNER-DOWN, e.g. a crash right after a heartbeat and an
            // immediate partner-down command) cannot say who was first, so it takes the safe
            // arm, POTENTIAL-CONFLICT (both exchange unacknowledged updates, then NORMAL).
            // Ties are rare but real (tests/restart_after_partner_down.rs); not a bug.
            if self.partner_since > self.persist.last_operational {
                target = ServerState::Recover;
                self.persist.recover_base = self.persist.last_operational;
            } else {
                target = ServerState::PotentialConflict;
            }
            since = now;
        }
        if target == ServerState::Recover && self.fresh {
            self.persist.recover_all = true;
        } else if target == ServerState::Recover && self.cfg.failover_recover.is_none() {
            // Draft-12 9.6.2: wait MCLT from when we stopped serving.
            self.persist.recover_base =
                self.persist.recover_base.max(self.persist.last_operational);
        }
        self.enter_state(now, target, since, "startup complete");
    }

    fn startup_expired(&mut self, now: u32) {
        if self.fresh && self.cfg.role == Role::Primary && self.cfg.fresh_primary_partner_down {
            // Never met the partner: it cannot hold any address of ours.
            self.enter_partner_down(now, now, "startup: partner never seen");
            return;
        }
        let target = self.prev_state;
        let safe_alone = matches!(
            target,
            ServerState::PartnerDown
                | ServerState::Recover
                | ServerState::RecoverWait
                | ServerState::RecoverDone
        );
        if safe_alone || !self.cfg.startup_needs_partner {
            let since = self.prev_since;
            self.enter_state(now, target, since, "startup timeout");
        }
    }

    /// Like set_state, but keeps a persisted entry time when resuming a previous state.
    fn enter_state(&mut self, now: u32, to: ServerState, since: u32, reason: &'static str) {
        if to == ServerState::PartnerDown {
            // Resuming PARTNER-DOWN after a restart: while we were down the partner may have
            // run (e.g. renewing in RECOVER-DONE or COMMUNICATIONS-INTERRUPTED, within MCLT),
            // so its addresses and expired leases wait MCLT from now again.
            self.persist.partner_down_since = self.persist.partner_down_since.max(now);
        }
        self.set_state(now, to, reason);
        if self.state == to && since <= now && since != 0 && to == self.persist.own_state {
            self.state_since = since;
            self.persist.own_state_since = since;
            self.emit_persist();
        }
    }

    fn enter_partner_down(&mut self, now: u32, base: u32, reason: &'static str) {
        self.persist.partner_down_since = base.min(now);
        self.set_state(now, ServerState::PartnerDown, reason);
    }

    fn set_state(&mut self, now: u32, to: ServerState, reason: &'static str) {
        if to == self.state {
            return;
        }
        let from = self.state;
        self.state = to;
        self.state_since = now;
        // Stable storage: the state and when it was entered (draft-12 9.2).
        self.persist.own_state = to;
        self.persist.own_state_since = now;
        self.persist.last_operational = now;
        if !matches!(to, ServerState::Paused | ServerState::Shutdown) {
            self.persist.resume_state = to;
        }
        if to == ServerState::Normal {
            // In step with the partner again: what it leased is known.
            self.persist.blind_partner_down = false;
        }
        match to {
            ServerState::Recover => {
                self.sent_updreq = None;
            }
            ServerState::RecoverWait => {
                // Draft-12 9.6.2: no wait when neither side ever ran failover before.
                let skip = self.may_skip_recover_wait && self.recover_partner_fresh;
                self.recover_wait_until = if skip {
                    now
                } else {
                    self.persist.recover_base.saturating_add(self.mclt)
                };
            }
            ServerState::PotentialConflict => {
                self.pc_resolved = false;
                self.sent_updreq = None;
            }
            // Draft-12 9.8.1: the secondary asks for its pool on entering NORMAL.
            ServerState::Normal if self.cfg.role == Role::Secondary => self.next_poolreq_at = now,
            _ => {}
        }
        self.actions.push_back(Action::StateChanged {
            from,
            own: to,
            partner: self.partner,
            at: now,
            reason,
        });
        self.emit_persist();
        self.actions.push_back(Action::PolicyChanged(self.policy()));
        self.send_state(now);
    }

    /// Transitions that depend on the partner's state while communicating (draft-12 9.x
    /// "communications OK" arcs). Loops because one transition can enable another.
    fn react(&mut self, now: u32) {
        for _ in 0..8 {
            if !self.communications_ok() || self.partner_startup {
                return;
            }
            let Some(p) = self.partner else {
                return;
            };
            let before = self.state;
            use ServerState::*;
            match self.state {
                Normal => match p {
                    // C-I is the partner's transient state until it sees our NORMAL.
                    Normal | CommunicationsInterrupted | RecoverDone | ConflictDone => {}
                    Shutdown => self.enter_partner_down(now, now, "partner shut down"),
                    _ => self.set_state(now, CommunicationsInterrupted, "partner changed state"),
                },
                CommunicationsInterrupted => match p {
                    Normal | CommunicationsInterrupted | RecoverDone => {
                        self.set_state(now, Normal, "partner back")
                    }
                    PartnerDown | PotentialConflict | ConflictDone | ResolutionInterrupted => {
                        self.set_state(now, PotentialConflict, "partner back from PARTNER-DOWN")
                    }
                    Shutdown => self.enter_partner_down(now, now, "partner shut down"),
                    _ => {}
                },
                PartnerDown => match p {
                    Normal
                    | CommunicationsInterrupted
                    | PartnerDown
                    | PotentialConflict
                    | ResolutionInterrupted
                    | ConflictDone => self.set_state(now, PotentialConflict, "partner running"),
                    // While in PARTNER-DOWN we may have used the partner's addresses: it must
                    // hold every such binding before either of us is NORMAL, so flush first.
                    RecoverDone if self.pending.is_empty() && self.inflight.is_empty() => {
                        self.set_state(now, Normal, "partner recovered")
                    }
                    _ => {}
                },
                Recover => match p {
                    PotentialConflict | ResolutionInterrupted | ConflictDone => {
                        self.set_state(now, PotentialConflict, "partner resolving conflicts")
                    }
                    _ => {
                        if self.sent_updreq.is_none() {
                            let all = self.persist.recover_all;
                            let xid = self.xid();
                            self.sent_updreq = Some(xid);
                            self.recover_partner_fresh =
                                matches!(p, Recover | RecoverWait | RecoverDone);
                            self.send(Message::new(
                                now,
                                xid,
                                if all { Body::UpdReqAll } else { Body::UpdReq },
                            ));
                        }
                    }
                },
                RecoverDone => {
                    if matches!(p, Normal | RecoverDone) {
                        self.set_state(now, Normal, "partner ready")
                    }
                }
                PotentialConflict => {
                    let ask = match self.cfg.role {
                        Role::Primary => !self.pc_resolved,
                        // The secondary asks once the primary has its updates (CONFLICT-DONE).
                        Role::Secondary => p == ConflictDone,
                    };
                    if ask && self.sent_updreq.is_none() {
                        let xid = self.xid();
                        self.sent_updreq = Some(xid);
                        self.send(Message::new(now, xid, Body::UpdReq));
                    }
                }
                ResolutionInterrupted => {
                    self.set_state(now, PotentialConflict, "communications restored")
                }
                ConflictDone => {
                    if p == Normal {
                        self.set_state(now, Normal, "partner NORMAL")
                    }
                }
                Startup | RecoverWait | Paused | Shutdown => {}
            }
            if self.state == before {
                return;
            }
        }
    }

    fn on_upddone(&mut self, now: u32, xid: u32) {
        if self.sent_updreq != Some(xid) {
            return;
        }
        self.sent_updreq = None;
        match self.state {
            ServerState::Recover => {
                if self.persist.recover_all {
                    self.persist.recover_all = false;
                }
                self.set_state(now, ServerState::RecoverWait, "UPDDONE");
                self.finish_recover_wait(now);
                self.react(now);
            }
            ServerState::PotentialConflict => {
                self.pc_resolved = true;
                match self.cfg.role {
                    Role::Primary => self.set_state(now, ServerState::ConflictDone, "UPDDONE"),
                    Role::Secondary => self.set_state(now, ServerState::Normal, "UPDDONE"),
                }
                self.react(now);
            }
            _ => {}
        }
    }

    fn on_bndupd(&mut self, now: u32, msg_time: u32, xid: u32, txns: Vec<BindingTxn>) {
        let gen = self.conn.as_ref().map_or(0, |c| c.gen);
        let mut inc = Incoming {
            gen,
            results: Vec::with_capacity(txns.len()),
            remaining: 0,
        };
        let mut to_apply = Vec::new();
        for (i, t) in txns.into_iter().enumerate() {
            self.stats.bndupd_received += 1;
            match binding_from_txn(&t, msg_time) {
                Ok(mut b) => {
                    // Partner's absolute times into our clock (draft-12 7.8.2 step 6).
                    b.lease_expiry = self.to_local(b.lease_expiry);
                    b.potential_expiry = self.to_local(b.potential_expiry);
                    b.cltt = self.to_local(b.cltt);
                    b.start = self.to_local(b.start);
                    inc.results.push((t.addr, None));
                    inc.remaining += 1;
                    to_apply.push((i, b));
                }
                Err(why) => {
                    self.stats.bndupd_rejected_by_us += 1;
                    inc.results.push((
                        t.addr,
                        Some((RejectReason::MissingBindingInfo, why.to_string())),
                    ));
                }
            }
        }
        let remaining = inc.remaining;
        self.incoming.insert(xid, inc);
        for (i, b) in to_apply {
            let id = self.next_update_id;
            self.next_update_id += 1;
            self.update_ids.insert(id, (gen, xid, i));
            self.actions
                .push_back(Action::ApplyBinding { id, binding: b });
        }
        if remaining == 0 {
            self.finish_incoming(now, xid);
        }
    }

    fn on_bndack(&mut self, now: u32, xid: u32, txns: Vec<BindingTxn>) {
        let Some(f) = self.inflight.remove(&xid) else {
            return;
        };
        self.inflight_bindings = self.inflight_bindings.saturating_sub(f.items.len());
        let latency = now.saturating_sub(f.sent_at) as u64;
        for (i, (_, binding)) in f.items.into_iter().enumerate() {
            self.stats.bndack_received += 1;
            self.stats.ack_latency_sum += latency;
            // The BNDACK names every address of its BNDUPD, usually in the same order
            // (draft-12 6.3 allows any order).
            let t = match txns.get(i) {
                Some(t) if t.addr == binding.addr => Some(t),
                _ => txns.iter().find(|t| t.addr == binding.addr),
            };
            let rejected = match t {
                Some(t) => t.reject_reason.map(|r| {
                    let msg = t.message.as_deref().map(String::from_utf8_lossy);
                    (
                        RejectReason::from_wire(r),
                        msg.unwrap_or_default().into_owned(),
                    )
                }),
                // Not confirmed: treated as refused (logged; re-sent on its next change or
                // by the driver's scan) rather than as a commitment the partner never made.
                None => Some((
                    RejectReason::Misc,
                    "address missing from BNDACK".to_string(),
                )),
            };
            match rejected {
                Some((reason, message)) => {
                    self.stats.bndupd_rejected_by_partner += 1;
                    self.actions.push_back(Action::BindingRejected {
                        sent: binding,
                        reason,
                        message,
                    });
                }
                None => {
                    self.actions.push_back(Action::BindingAcked {
                        addr: binding.addr,
                        acked_potential_expiry: binding.potential_expiry,
                        sent: binding,
                    });
                }
            }
        }
        self.check_updreq_done(now);
        if self.state == ServerState::RecoverWait {
            self.pump();
            self.finish_recover_wait(now);
        }
        if self.state == ServerState::PartnerDown {
            // Pending PARTNER-DOWN -> NORMAL waits for the queue to drain.
            self.pump();
            self.react(now);
        }
    }

    /// RECOVER-WAIT -> RECOVER-DONE once the MCLT wait is over and the partner holds every
    /// update of ours: it goes NORMAL as soon as it sees RECOVER-DONE and must not allocate an
    /// address we bound (e.g. in PARTNER-DOWN before a `recover` command) without knowing.
    /// With updates outstanding and no connection we stay (draft-12 9.6.2 allows it).
    fn finish_recover_wait(&mut self, now: u32) {
        if self.state != ServerState::RecoverWait || now < self.recover_wait_until {
            return;
        }
        if !self.pending.is_empty() || !self.inflight.is_empty() {
            return;
        }
        let reason = if self.recover_wait_until == self.state_since {
            "no MCLT wait needed"
        } else {
            "MCLT wait over"
        };
        self.set_state(now, ServerState::RecoverDone, reason);
        self.react(now);
    }

    fn maybe_poolreq(&mut self, now: u32) {
        if self.cfg.role == Role::Secondary
            && self.state == ServerState::Normal
            && self.communications_ok()
            && !self.poolreq_outstanding
            && now >= self.next_poolreq_at
        {
            self.poolreq_outstanding = true;
            self.next_poolreq_at = now.saturating_add(self.cfg.pool_request_interval);
            let xid = self.xid();
            self.send(Message::new(now, xid, Body::PoolReq));
        }
    }
}

/// The wire transaction for one binding (draft-12 table 7.1-1).
pub fn txn_from_binding(b: &Binding) -> BindingTxn {
    let mut t = BindingTxn::new(b.addr);
    t.status = Some(b.status.to_wire());
    if b.status != BindingStatus::Abandoned {
        if !b.client_id.is_empty() {
            t.client_id = Some(b.client_id.clone());
        }
        if b.htype != 0 || !b.chaddr.is_empty() {
            t.chaddr = Some((b.htype, b.chaddr.clone()));
        }
    }
    if b.status == BindingStatus::Active {
        t.lease_expiry = Some(b.lease_expiry);
        t.potential_expiry = Some(b.potential_expiry.max(b.lease_expiry));
    }
    t.start_time = Some(b.start);
    if b.cltt != 0 {
        t.cltt = Some(b.cltt);
    }
    if b.flags != 0 {
        t.ip_flags = Some(b.flags);
    }
    t.request_options = codec::request_options_with_relay_info(&b.relay_agent_info);
    t
}

/// Converts a received transaction; Err names what is missing (reject reason 3).
pub fn binding_from_txn(t: &BindingTxn, msg_time: u32) -> Result<Binding, &'static str> {
    let status = t
        .status
        .ok_or("binding-status missing")
        .and_then(|s| BindingStatus::from_wire(s).ok_or("unknown binding-status"))?;
    let (htype, chaddr) = t.chaddr.clone().unwrap_or((0, Vec::new()));
    let client_id = t.client_id.clone().unwrap_or_default();
    let mut b = Binding {
        addr: t.addr,
        status,
        client_id,
        htype,
        chaddr,
        lease_expiry: 0,
        potential_expiry: 0,
        cltt: t.cltt.unwrap_or(0),
        start: t.start_time.unwrap_or(msg_time),
        relay_agent_info: t
            .request_options
            .as_deref()
            .and_then(codec::relay_info_from_request_options)
            .unwrap_or_default(),
        flags: t.ip_flags.unwrap_or(0),
    };
    if status == BindingStatus::Active {
        if !b.has_client() {
            return Err("ACTIVE binding without client");
        }
        b.lease_expiry = t
            .lease_expiry
            .ok_or("ACTIVE binding without lease-expiration-time")?;
        b.potential_expiry = t
            .potential_expiry
            .unwrap_or(b.lease_expiry)
            .max(b.lease_expiry);
    }
    Ok(b)
}
