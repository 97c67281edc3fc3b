//! Deterministic simulation harness: two failover engines, a simulated clock and TCP-like
//! network, durable in-memory lease tables, and a minimal DHCP server model that obeys the
//! engine's `FailoverPolicy` and the MCLT rule.
//!
//! The tables hold the daemon's own records (`lease_store::Lease`), and every failover
//! decision about a record (what to send, what a partner's update or acknowledgement does,
//! pool grants and reclaims, which records may go to a new client) is made by the code the
//! daemon runs: `xdhcpd_failover::BindingSync` over the `BindingStore` below, and
//! `FailoverPolicy::may_allocate_lease`. Only the storage (a `Vec`) and the DHCP server model
//! are the simulation's own.
//!
//! Model assumptions (the protocol's own operating assumptions, see draft-12 sections 9.4 and
//! 10): the operator declares a partner down only when it has crashed (or is cut off from
//! clients too), and a partition between two *client-reachable* servers ends before
//! `safe_period - MCLT`. Lease tables are durable at every change ("ack mode").
//!
//! Layout: `net` (the TCP-like link), `driver` (the failover driver: engine actions applied to
//! the tables, the expiry sweeper, reclaims), `dhcp` (clients and the DHCP server model),
//! `faults` (crashes, partitions, clock steps, operator commands), `invariants` (the safety
//! checks run after every step); here the parameters, the nodes and the main loop.
#![allow(dead_code)]

mod dhcp;
mod driver;
mod faults;
mod invariants;
mod net;

use std::collections::BTreeMap;
use std::net::Ipv4Addr;

use lease_store::{ClientKey, Lease};
use xdhcpd_failover::store::lease_to_local;
use xdhcpd_failover::{
    Binding, BindingStore, BindingSync, Config, FailoverEngine, FailoverPersist, PolicyCell, Role,
    ServerState,
};

pub use dhcp::Client;
use net::Link;

pub const T0: u32 = 1_700_000_000;
pub const POOL: usize = 32;
/// The expiry grace of both servers (the daemon's default).
pub const GRACE: u32 = xdhcpd_failover::DEFAULT_EXPIRY_GRACE;
pub const MAX_SKEW: i64 = 20;

/// splitmix64: tiny deterministic PRNG (no dependency).
#[derive(Clone, Debug)]
pub struct Rng(u64);
impl Rng {
    pub fn new(seed: u64) -> Self {
        Rng(seed ^ 0x9e37_79b9_7f4a_7c15)
    }
    pub fn next(&mut self) -> u64 {
        self.0 = self.0.wrapping_add(0x9e37_79b9_7f4a_7c15);
        let mut z = self.0;
        z = (z ^ (z >> 30)).wrapping_mul(0xbf58_476d_1ce4_e5b9);
        z = (z ^ (z >> 27)).wrapping_mul(0x94d0_49bb_1331_11eb);
        z ^ (z >> 31)
    }
    pub fn below(&mut self, n: u64) -> u64 {
        if n == 0 {
            0
        } else {
            self.next() % n
        }
    }
    pub fn range(&mut self, lo: u32, hi: u32) -> u32 {
        lo + self.below((hi - lo + 1) as u64) as u32
    }
    pub fn chance(&mut self, p_permille: u32) -> bool {
        self.below(1000) < p_permille as u64
    }
}

pub fn addr(i: usize) -> Ipv4Addr {
    Ipv4Addr::new(10, 0, 0, (i + 1) as u8)
}

/// Index of `a` in the simulated pool, if it is one of ours.
pub fn index_of(a: Ipv4Addr) -> Option<usize> {
    let o = a.octets();
    let i = (o[3] as usize).wrapping_sub(1);
    (o[..3] == [10, 0, 0] && i < POOL).then_some(i)
}

/// The durable lease table of one node: the daemon's record type, durable at every change
/// ("ack mode"). Only the first `.1` records are in the node's configured pools (the rest
/// are the lease file's spare records: a reload that adds addresses makes them present, FREE,
/// as `LeaseTable::grow` does); the others are "in no pool of this server".
#[derive(Clone, Debug)]
pub struct SimTable(pub Vec<Lease>, pub usize);

impl SimTable {
    pub fn fresh() -> Self {
        SimTable((0..POOL).map(|i| Lease::free(addr(i))).collect(), POOL)
    }

    /// Records in the node's pools.
    pub fn present(&self) -> usize {
        self.1
    }

    /// A reload added addresses up to record `n`: they join as FREE records (the primary's).
    pub fn grow(&mut self, n: usize) {
        assert!(n >= self.1 && n <= POOL, "grow to {n} from {}", self.1);
        for k in self.1..n {
            self.0[k] = Lease::free(addr(k));
        }
        self.1 = n;
    }
}

impl BindingStore for SimTable {
    fn read(&self, a: Ipv4Addr) -> Option<Lease> {
        index_of(a).filter(|&i| i < self.1).map(|i| self.0[i])
    }
    fn update<R>(&mut self, a: Ipv4Addr, f: impl FnOnce(&mut Lease) -> R) -> Option<(R, bool)> {
        let i = index_of(a).filter(|&i| i < self.1)?;
        let l = &mut self.0[i];
        let old = *l;
        let r = f(l);
        l.addr = old.addr;
        Some((r, *l != old))
    }
    fn for_each(&self, f: impl FnMut(&Lease)) {
        self.0[..self.1].iter().for_each(f);
    }
}

/// The simulated clients' identity: hardware type 1 and a 6-byte address.
pub fn client_key(key: &[u8]) -> ClientKey {
    ClientKey::from_hw(1, key)
}

#[derive(Clone, Debug)]
pub struct SimParams {
    pub mclt: u32,
    pub desired: u32,
    pub safe_period: u32,
    pub use_safe_period: bool,
    pub split: Option<u16>,
    pub fresh_primary_partner_down: bool,
    pub clients: usize,
    pub duration: u32,
    /// Fault intensity in permille per fault-tick.
    pub faults: u32,
    /// `max_bindings_per_bndupd` (both engines identify as xdhcpd, so it applies).
    pub bndupd_batch: usize,
    /// `load-balance-max-seconds` (the relay scenarios set 0: only the relay health check
    /// may answer the partner's clients in NORMAL).
    pub load_balance_max_secs: u16,
    /// `failback-hold` of both nodes (0 = off).
    pub failback_hold: u32,
    /// The pool has dynamic BOOTP: every fourth client is a BOOTP client (one exchange, a
    /// permanent binding, never renewed), and both partners allocate, DHCP included, only
    /// from their own side in every state (draft-12 5.14, `may_allocate_own_only`).
    pub dynamic_bootp: bool,
}

impl SimParams {
    /// A scripted scenario: 12 clients, no random faults, MCLT 120 s, no safe period.
    pub fn scripted() -> Self {
        SimParams {
            mclt: 120,
            desired: 480,
            safe_period: 600,
            use_safe_period: false,
            split: None,
            fresh_primary_partner_down: false,
            clients: 12,
            duration: 0,
            faults: 0,
            bndupd_batch: 1,
            load_balance_max_secs: 3,
            failback_hold: 0,
            dynamic_bootp: false,
        }
    }
}

impl SimParams {
    pub fn random(rng: &mut Rng) -> Self {
        SimParams {
            mclt: 120,
            desired: 480,
            safe_period: 600,
            use_safe_period: rng.chance(700),
            split: if rng.chance(500) { Some(128) } else { None },
            fresh_primary_partner_down: rng.chance(500),
            clients: rng.range(8, 28) as usize,
            duration: rng.range(1500, 3000),
            faults: rng.range(50, 400),
            // Drawn last so the earlier draws (and seeds found before) stay as they were.
            bndupd_batch: if rng.chance(300) {
                1
            } else {
                rng.range(2, 8) as usize
            },
            load_balance_max_secs: 3,
            failback_hold: 0,
            // Drawn after the others, for the same reason.
            dynamic_bootp: rng.chance(400),
        }
    }
}

pub fn config(role: Role, p: &SimParams) -> Config {
    let mut c = Config::new(role, "sim-pair");
    c.expiry_grace = GRACE;
    c.mclt = p.mclt;
    c.max_unacked_bndupd = 4;
    c.max_bindings_per_bndupd = p.bndupd_batch;
    c.poll_interval = 5;
    c.poll_timeout = 20;
    c.use_safe_period = p.use_safe_period;
    c.safe_period = p.safe_period;
    c.split = p.split;
    c.load_balance_max_secs = p.load_balance_max_secs;
    c.failback_hold = p.failback_hold;
    c.backup_pct = 50;
    c.startup_timeout = 10;
    c.startup_needs_partner = true;
    c.fresh_primary_partner_down = p.fresh_primary_partner_down;
    c.heartbeat_interval = 15;
    c.pool_request_interval = 300;
    c
}

pub struct Node {
    pub role: Role,
    pub cfg: Config,
    pub engine: Option<FailoverEngine>,
    pub cell: PolicyCell,
    pub offset: i64,
    pub table: SimTable,
    /// The failover driver's record rules and in-flight updates (lost with a crash, as the
    /// daemon's are).
    pub sync: BindingSync<u32>,
    pub persist: Option<FailoverPersist>,
    /// Cut off from clients (and the partner) until this true time.
    pub isolated_until: u32,
    pub isolated_from: u32,
    /// After an isolation, clients are served only once the failover state resynchronised.
    pub needs_sync: bool,
    pub crashed_at: u32,
    /// Restart at this true time (when crashed).
    pub restart_at: u32,
    pub failover_recover_on_restart: bool,
    /// `[reconfigure] deferred-nak` of this node: a failover takeover keeps the
    /// reconfiguring flags (else it clears them, as the daemon's driver does).
    pub deferred_nak: bool,
}

impl Node {
    pub fn now(&self, t: u32) -> u32 {
        (t as i64 + self.offset).clamp(0, u32::MAX as i64) as u32
    }
    pub fn alive(&self) -> bool {
        self.engine.is_some()
    }
    pub fn state(&self) -> Option<ServerState> {
        self.engine.as_ref().map(|e| e.state())
    }
    /// Record `k` as the failover rules see it (`lease_to_local`).
    pub fn binding(&self, k: usize) -> Binding {
        lease_to_local(&self.table.0[k])
    }
    pub fn lease(&self, k: usize) -> &Lease {
        &self.table.0[k]
    }
}

#[derive(Default, Clone, Debug)]
pub struct Coverage {
    pub states: BTreeMap<ServerState, u64>,
    pub transitions: BTreeMap<(ServerState, ServerState), u64>,
    pub grants: u64,
    pub renewals: u64,
    pub dropped_discovers: u64,
    /// Binding transactions sent, and the BNDUPD messages that carried them (draft-12 6.3).
    pub bndupd_sent: u64,
    pub bndupd_messages: u64,
    pub crashes: u64,
    pub partitions: u64,
    /// Operator partner-down accepted in RECOVER / RECOVER-WAIT (blind PARTNER-DOWN).
    pub blind_partner_downs: u64,
    /// Operator partner-down refused by the guard (not COMMUNICATIONS-INTERRUPTED etc.), and
    /// accepted with `force`.
    pub partner_downs_refused: u64,
    pub forced_partner_downs: u64,
    /// `Action::VersionMismatch` emitted (the partner runs another version).
    pub version_warnings: u64,
    /// Primary reclaims of BACKUP addresses: sent, acknowledged (address FREE on the primary),
    /// rejected (the secondary had leased it meanwhile).
    pub reclaims_sent: u64,
    pub reclaims_acked: u64,
    pub reclaims_rejected: u64,
    /// Permanent bindings given to BOOTP clients (dynamic BOOTP seeds).
    pub bootp_grants: u64,
}

impl Coverage {
    pub fn merge(&mut self, o: &Coverage) {
        for (k, v) in &o.states {
            *self.states.entry(*k).or_default() += v;
        }
        for (k, v) in &o.transitions {
            *self.transitions.entry(*k).or_default() += v;
        }
        self.grants += o.grants;
        self.renewals += o.renewals;
        self.dropped_discovers += o.dropped_discovers;
        self.bndupd_sent += o.bndupd_sent;
        self.bndupd_messages += o.bndupd_messages;
        self.crashes += o.crashes;
        self.partitions += o.partitions;
        self.blind_partner_downs += o.blind_partner_downs;
        self.partner_downs_refused += o.partner_downs_refused;
        self.forced_partner_downs += o.forced_partner_downs;
        self.version_warnings += o.version_warnings;
        self.reclaims_sent += o.reclaims_sent;
        self.reclaims_acked += o.reclaims_acked;
        self.reclaims_rejected += o.reclaims_rejected;
        self.bootp_grants += o.bootp_grants;
    }
}

pub struct Sim {
    pub rng: Rng,
    pub p: SimParams,
    pub t: u32,
    pub nodes: [Node; 2],
    pub link: Link,
    pub clients: Vec<Client>,
    pub cov: Coverage,
    pub next_fault: u32,
    pub next_sweep: u32,
    /// Random faults enabled (scenario tests drive faults by hand).
    pub random_faults: bool,
    pub random_clients: bool,
    /// The primary reclaims random BACKUP addresses now and then (with `random_clients`).
    pub random_reclaims: bool,
    pub log: Vec<String>,
    pub verbose: bool,
    /// (true time, node, down seconds): process exits after SHUTDOWN/PAUSE.
    pub pending_stops: Vec<(u32, usize, u32)>,
    pub stuck: u32,
    /// Last true time both engines had communications OK.
    pub last_comm_ok: u32,
    /// Clients behind one relay agent whose paths to the servers can be cut (relay health
    /// check scenarios); None: clients reach both servers directly.
    pub relay: Option<SimRelay>,
    /// (true time, node, reset seen by the peer) of every crash: an N:1 simulation repeats a
    /// shared server's crash in its other relationships (`sim_n1.rs`).
    pub crash_log: Vec<(u32, usize, bool)>,
}

/// A relay agent between the clients and both servers, and each server's relay health table.
pub struct SimRelay {
    /// The relay's giaddr.
    pub giaddr: std::net::Ipv4Addr,
    /// `cut[i]`: the relay cannot reach node `i` (both directions).
    pub cut: [bool; 2],
    /// Node `i`'s relay health check.
    pub rhc: [xdhcpd_failover::RelayHealth; 2],
    /// DISCOVERs node `i` answered for its partner (the check's `Serve`), and grants made so.
    pub served: [u64; 2],
    pub granted_for_partner: [u64; 2],
    /// (true time, node, client) of every grant through the relay.
    pub grants: Vec<(u32, usize, usize)>,
}

impl SimRelay {
    pub fn new(cfg: xdhcpd_failover::RhcConfig) -> Self {
        SimRelay {
            giaddr: std::net::Ipv4Addr::new(10, 99, 0, 1),
            cut: [false; 2],
            rhc: [
                xdhcpd_failover::RelayHealth::new(cfg),
                xdhcpd_failover::RelayHealth::new(cfg),
            ],
            served: [0; 2],
            granted_for_partner: [0; 2],
            grants: Vec::new(),
        }
    }
}

fn node_new(role: Role, p: &SimParams, t: u32) -> Node {
    let cfg = config(role, p);
    let rules = cfg.store_rules();
    let engine = FailoverEngine::new(cfg.clone(), None, t).ok();
    let cell = PolicyCell::new(
        engine
            .as_ref()
            .map(|e| e.policy())
            .unwrap_or_else(xdhcpd_failover::FailoverPolicy::standalone),
    );
    Node {
        role,
        cfg,
        engine,
        cell,
        offset: 0,
        table: SimTable::fresh(),
        sync: BindingSync::new(rules),
        persist: None,
        isolated_until: 0,
        isolated_from: 0,
        needs_sync: false,
        crashed_at: 0,
        restart_at: 0,
        failover_recover_on_restart: false,
        deferred_nak: false,
    }
}

impl Sim {
    pub fn new(seed: u64, p: SimParams) -> Self {
        let rng = Rng::new(seed);
        let t = T0;
        let clients = (0..p.clients)
            .map(|i| Client {
                key: vec![0x02, 0, 0, 0, (i >> 8) as u8, i as u8],
                lease: None,
                next_at: t + 5 + (i as u32 * 7) % 60,
                waiting_since: 0,
                bootp: p.dynamic_bootp && i % 4 == 3,
            })
            .collect();
        let mut s = Sim {
            rng,
            t,
            nodes: [
                node_new(Role::Primary, &p, t),
                node_new(Role::Secondary, &p, t),
            ],
            link: Link {
                reconnect_at: t + 1,
                ..Link::default()
            },
            clients,
            cov: Coverage::default(),
            next_fault: t + 60,
            next_sweep: t + 10,
            random_faults: true,
            random_clients: true,
            random_reclaims: true,
            log: Vec::new(),
            verbose: false,
            pending_stops: Vec::new(),
            stuck: 0,
            last_comm_ok: t,
            relay: None,
            crash_log: Vec::new(),
            p,
        };
        s.cov.states.insert(ServerState::Startup, 2);
        s.drain(0);
        s.drain(1);
        s
    }

    pub fn note(&mut self, m: String) {
        if self.verbose {
            eprintln!("[{}] {}", self.t - T0, m);
        }
        if self.log.len() < 4000 {
            self.log.push(format!("[{}] {}", self.t - T0, m));
        }
    }

    // ---------------------------------------------------------------------------------------
    // Main loop

    fn next_event(&self) -> u32 {
        let mut n = u32::MAX;
        for node in &self.nodes {
            if let Some(e) = &node.engine {
                if let Some(d) = e.poll_timeout() {
                    let tt = (d as i64 - node.offset).clamp(0, u32::MAX as i64) as u32;
                    n = n.min(tt);
                }
            } else if node.restart_at > 0 {
                n = n.min(node.restart_at);
            }
        }
        for q in &self.link.q {
            if let Some((at, _)) = q.front() {
                n = n.min(*at);
            }
        }
        if !self.link.up && self.nodes[0].alive() && self.nodes[1].alive() {
            n = n.min(self.link.reconnect_at.max(self.link.blocked_until));
        }
        if self.random_clients {
            for c in &self.clients {
                n = n.min(c.next_at);
            }
        }
        if self.random_faults {
            n = n.min(self.next_fault);
        }
        for (at, _, _) in &self.pending_stops {
            n = n.min(*at);
        }
        n.min(self.next_sweep)
    }

    /// Advance to the next event and process everything due; returns false at the end.
    pub fn step(&mut self, end: u32) -> bool {
        let n = self.next_event().max(self.t).min(end);
        if n == self.t {
            self.stuck += 1;
            assert!(
                self.stuck < 10_000,
                "simulation livelock at {}\n{}",
                self.t - T0,
                self.log_tail()
            );
        } else {
            self.stuck = 0;
        }
        self.t = n;
        if self.t >= end {
            return false;
        }
        let t = self.t;
        // Scheduled process exits after SHUTDOWN/PAUSE.
        let due: Vec<(u32, usize, u32)> = self
            .pending_stops
            .iter()
            .copied()
            .filter(|s| s.0 <= t)
            .collect();
        self.pending_stops.retain(|s| s.0 > t);
        for (_, i, down) in due {
            self.crash(i, true, down);
        }
        // Restarts.
        for i in 0..2 {
            if !self.nodes[i].alive()
                && self.nodes[i].restart_at > 0
                && self.nodes[i].restart_at <= t
            {
                self.nodes[i].restart_at = 0;
                self.restart(i);
            }
        }
        // Connection setup.
        if !self.link.up
            && self.nodes[0].alive()
            && self.nodes[1].alive()
            && t >= self.link.reconnect_at
            && t >= self.link.blocked_until
        {
            self.link = Link {
                up: true,
                ..Link::default()
            };
            for i in 0..2 {
                let now = self.nodes[i].now(t);
                if let Some(e) = self.nodes[i].engine.as_mut() {
                    e.handle_connected(now);
                }
                self.drain(i);
            }
        }
        // Deliveries.
        for from in 0..2 {
            while self.link.q[from].front().is_some_and(|(at, _)| *at <= t) {
                let Some((_, bytes)) = self.link.q[from].pop_front() else {
                    break;
                };
                let to = 1 - from;
                let now = self.nodes[to].now(t);
                if let Some(e) = self.nodes[to].engine.as_mut() {
                    e.handle_bytes(now, &bytes);
                }
                self.drain(to);
                if !self.link.up {
                    break;
                }
            }
            if self.link.up && self.link.fin[from] && self.link.q[from].is_empty() {
                self.finish_close(from);
            }
        }
        // Timers.
        for i in 0..2 {
            let now = self.nodes[i].now(t);
            if let Some(e) = self.nodes[i].engine.as_mut() {
                if e.poll_timeout().is_some_and(|d| d <= now) {
                    e.handle_timeout(now);
                }
            }
            self.drain(i);
        }
        // A dead connection: when an engine has given up on it, the link can be re-made.
        if self.link.up && self.link.dead {
            let gone = (0..2).all(|i| self.nodes[i].engine.as_ref().is_none_or(|e| !e.connected()));
            if gone {
                self.link_down();
            }
        }
        if (0..2).all(|i| {
            self.nodes[i]
                .engine
                .as_ref()
                .is_some_and(|e| e.communications_ok())
        }) {
            self.last_comm_ok = t;
        }
        for i in 0..2 {
            if self.nodes[i].needs_sync
                && self.nodes[i].isolated_until <= t
                && self.nodes[i].engine.as_ref().is_some_and(|e| {
                    matches!(e.state(), ServerState::Normal | ServerState::ConflictDone)
                })
            {
                // Resynchronised with the partner (which may have been PARTNER-DOWN).
                self.nodes[i].needs_sync = false;
            }
        }
        if t >= self.next_sweep {
            self.next_sweep = t + 10;
            self.sweep();
        }
        if self.random_clients {
            for c in 0..self.clients.len() {
                if self.clients[c].next_at <= t {
                    self.client_step(c);
                }
            }
        }
        if self.random_clients && self.random_reclaims && self.rng.chance(30) {
            self.reclaim_some();
        }
        if self.random_faults && t >= self.next_fault {
            let gap = 60 + self.rng.below((60_000 / self.p.faults.max(1)) as u64) as u32;
            self.next_fault = t + gap;
            self.random_fault();
        }
        self.check_invariants();
        true
    }

    pub fn run_until(&mut self, end: u32) {
        while self.step(end) {}
    }

    pub fn log_tail(&self) -> String {
        let n = self.log.len();
        self.log[n.saturating_sub(60)..].join("\n")
    }
}
