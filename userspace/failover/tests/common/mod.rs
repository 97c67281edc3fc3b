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
#![allow(dead_code)]

use std::collections::{BTreeMap, VecDeque};
use std::net::Ipv4Addr;

use lease_store::{ClientKey, Lease, LeaseState, Owner};
use xdhcpd_failover::store::lease_to_local;
use xdhcpd_failover::{
    backup_share, Action, Admission, Binding, BindingStore, BindingSync, CommandError, Config,
    FailoverEngine, FailoverPersist, PolicyCell, RequestKind, Role, ServerState,
};

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
/// ("ack mode").
#[derive(Clone, Debug)]
pub struct SimTable(pub Vec<Lease>);

impl SimTable {
    pub fn fresh() -> Self {
        SimTable((0..POOL).map(|i| Lease::free(addr(i))).collect())
    }
}

impl BindingStore for SimTable {
    fn read(&self, a: Ipv4Addr) -> Option<Lease> {
        index_of(a).map(|i| self.0[i])
    }
    fn update<R>(&mut self, a: Ipv4Addr, f: impl FnOnce(&mut Lease) -> R) -> Option<(R, bool)> {
        let l = &mut self.0[index_of(a)?];
        let old = *l;
        let r = f(l);
        l.addr = old.addr;
        Some((r, *l != old))
    }
    fn for_each(&self, f: impl FnMut(&Lease)) {
        self.0.iter().for_each(f);
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

/// TCP-like link: ordered byte streams per direction, delays, resets, partitions.
#[derive(Default)]
pub struct Link {
    pub up: bool,
    /// Per direction (index = sender): (true delivery time, bytes).
    pub q: [VecDeque<(u32, Vec<u8>)>; 2],
    /// Sender closed: after its queue drains, the receiver sees the close.
    pub fin: [bool; 2],
    /// No connection possible before this true time.
    pub blocked_until: u32,
    pub reconnect_at: u32,
    /// Connection silently dead (host crash / partition): data is dropped, nobody is told.
    pub dead: bool,
}

#[derive(Clone, Debug)]
pub struct Client {
    pub key: Vec<u8>,
    /// (address index, true end, granting node, true renew time, true rebind time)
    pub lease: Option<(usize, u32, usize, u32, u32)>,
    pub next_at: u32,
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
    /// Primary reclaims of BACKUP addresses: sent, acknowledged (address FREE on the primary),
    /// rejected (the secondary had leased it meanwhile).
    pub reclaims_sent: u64,
    pub reclaims_acked: u64,
    pub reclaims_rejected: u64,
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
        self.reclaims_sent += o.reclaims_sent;
        self.reclaims_acked += o.reclaims_acked;
        self.reclaims_rejected += o.reclaims_rejected;
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
    pub log: Vec<String>,
    pub verbose: bool,
    /// (true time, node, down seconds): process exits after SHUTDOWN/PAUSE.
    pub pending_stops: Vec<(u32, usize, u32)>,
    pub stuck: u32,
    /// Last true time both engines had communications OK.
    pub last_comm_ok: u32,
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
            log: Vec::new(),
            verbose: false,
            pending_stops: Vec::new(),
            stuck: 0,
            last_comm_ok: t,
            p,
        };
        s.cov.states.insert(ServerState::Startup, 2);
        s.drain(0);
        s.drain(1);
        s
    }

    fn note(&mut self, m: String) {
        if self.verbose {
            eprintln!("[{}] {}", self.t - T0, m);
        }
        if self.log.len() < 4000 {
            self.log.push(format!("[{}] {}", self.t - T0, m));
        }
    }

    // ---------------------------------------------------------------------------------------
    // Driver: actions and transmits

    pub fn drain(&mut self, i: usize) {
        for _ in 0..10_000 {
            let Some(e) = self.nodes[i].engine.as_mut() else {
                return;
            };
            let Some(a) = e.poll_action() else {
                break;
            };
            self.on_action(i, a);
        }
        let Some(e) = self.nodes[i].engine.as_mut() else {
            return;
        };
        if let Some(bytes) = e.poll_transmit() {
            self.push_bytes(i, bytes);
        }
        // Actions produced while building the transmit (none today) would be picked up next time.
    }

    fn push_bytes(&mut self, from: usize, bytes: Vec<u8>) {
        if !self.link.up || self.link.dead || self.link.fin[from] {
            return;
        }
        // Split into up to three chunks (partial frames on the receiver).
        let mut last = self.link.q[from].back().map_or(self.t, |(at, _)| *at);
        let mut rest = &bytes[..];
        let pieces = self.rng.range(1, 3);
        for k in 0..pieces {
            if rest.is_empty() {
                break;
            }
            let n = if k + 1 == pieces {
                rest.len()
            } else {
                self.rng.range(1, rest.len() as u32) as usize
            };
            let delay = if self.rng.chance(50) {
                self.rng.range(1, 4)
            } else {
                self.rng.range(0, 1)
            };
            last = last.max(self.t + delay);
            self.link.q[from].push_back((last, rest[..n].to_vec()));
            rest = &rest[n..];
        }
    }

    fn on_action(&mut self, i: usize, a: Action) {
        let now = self.nodes[i].now(self.t);
        match a {
            Action::StateChanged {
                from,
                own,
                partner,
                reason,
                ..
            } => {
                if from != own {
                    *self.cov.states.entry(own).or_default() += 1;
                    *self.cov.transitions.entry((from, own)).or_default() += 1;
                    self.note(format!(
                        "node{i}: {from} -> {own} (partner {partner:?}): {reason}"
                    ));
                }
            }
            Action::Persist(p) => {
                // Round-trip through the fixed byte layout, as the lease store would.
                let bytes = p.to_bytes();
                self.nodes[i].persist = FailoverPersist::from_bytes(&bytes).ok();
                assert_eq!(self.nodes[i].persist, Some(p), "persist round trip");
            }
            Action::PolicyChanged(pol) => self.nodes[i].cell.store(&pol),
            Action::ApplyBinding { id, binding } => {
                let node = &mut self.nodes[i];
                let r = node.sync.apply(&mut node.table, now, &binding).map(|_| ());
                if self.verbose {
                    let l = self.nodes[i].table.read(binding.addr);
                    eprintln!(
                        "[{}] node{i}: partner's {} {:?}: {:?} -> {:?}",
                        self.t - T0,
                        binding.addr,
                        binding.status,
                        r,
                        l.map(|l| (l.state, l.expiry.wrapping_sub(T0)))
                    );
                }
                if let Some(e) = self.nodes[i].engine.as_mut() {
                    e.binding_applied(now, id, r);
                }
            }
            Action::BindingAcked { sent, .. } => {
                let node = &mut self.nodes[i];
                let before = node.table.read(sent.addr).map(|l| l.state);
                node.sync.acked(&mut node.table, &sent);
                let after = node.table.read(sent.addr).map(|l| l.state);
                if before == Some(LeaseState::Backup) && after == Some(LeaseState::Free) {
                    self.cov.reclaims_acked += 1;
                }
            }
            Action::BindingRejected {
                sent,
                reason,
                message,
            } => {
                self.nodes[i].sync.refused(&sent);
                if sent.status == xdhcpd_failover::BindingStatus::Free {
                    self.cov.reclaims_rejected += 1;
                }
                self.note(format!(
                    "node{i}: partner rejected {} ({reason:?}: {message})",
                    sent.addr
                ));
            }
            Action::SendBindings { all } => {
                let t = self.t;
                let node = &mut self.nodes[i];
                if let Some(e) = node.engine.as_mut() {
                    node.sync.send_bindings(e, now, t, &node.table, all);
                }
            }
            Action::PoolRequest { id } => {
                let free: Vec<usize> = (0..POOL)
                    .filter(|&k| self.nodes[i].lease(k).state == LeaseState::Free)
                    .collect();
                let backup = (0..POOL)
                    .filter(|&k| self.nodes[i].lease(k).state == LeaseState::Backup)
                    .count();
                let n = backup_share(free.len(), backup, 50);
                // Backup addresses come from the top of the range.
                let t = self.t;
                let node = &mut self.nodes[i];
                let mut granted = 0;
                if let Some(e) = node.engine.as_mut() {
                    for k in free.iter().rev().take(n) {
                        if node
                            .sync
                            .grant_to_backup(e, now, t, &mut node.table, addr(*k))
                        {
                            granted += 1;
                        }
                    }
                    e.pool_response(now, id, granted);
                }
            }
            Action::PoolGranted { .. } => {}
            Action::Close { reason, message } => {
                self.note(format!("node{i}: close ({reason:?}: {message})"));
                self.link.fin[i] = true;
                if self.link.q[i].is_empty() {
                    self.finish_close(i);
                }
            }
            Action::Log(m) => self.note(format!("node{i}: {m}")),
        }
    }

    /// Receiver of `from`'s FIN learns the connection is gone.
    fn finish_close(&mut self, from: usize) {
        let other = 1 - from;
        self.link_down();
        let now = self.nodes[other].now(self.t);
        if let Some(e) = self.nodes[other].engine.as_mut() {
            e.handle_disconnected(now);
        }
        let now = self.nodes[from].now(self.t);
        if let Some(e) = self.nodes[from].engine.as_mut() {
            e.handle_disconnected(now);
        }
        self.drain(other);
        self.drain(from);
    }

    fn link_down(&mut self) {
        self.link.up = false;
        self.link.dead = false;
        self.link.q = Default::default();
        self.link.fin = [false; 2];
        let d = self.rng.range(1, 8);
        self.link.reconnect_at = self.link.reconnect_at.max(self.t + d);
    }

    // ---------------------------------------------------------------------------------------
    // Faults

    /// Operator `partner-down` on live node `i` at its own clock; its actions run at once.
    /// A blind one (accepted in RECOVER / RECOVER-WAIT) is counted in the coverage.
    pub fn partner_down(&mut self, i: usize, since: Option<u32>) -> Result<(), CommandError> {
        let now = self.nodes[i].now(self.t);
        let e = self.nodes[i]
            .engine
            .as_mut()
            .expect("partner-down on a live node");
        let blind = matches!(e.state(), ServerState::Recover | ServerState::RecoverWait);
        let r = e.partner_down(now, since);
        if r.is_ok() && blind {
            self.cov.blind_partner_downs += 1;
        }
        self.drain(i);
        r
    }

    /// Adds node `i`'s update counters to the coverage (before its engine goes away).
    pub fn count_update_stats(&mut self, i: usize) {
        if let Some(e) = &self.nodes[i].engine {
            self.cov.bndupd_sent += e.stats().bndupd_sent;
            self.cov.bndupd_messages += e.stats().bndupd_messages_sent;
        }
    }

    /// Crash node `i`; `rst`: the peer's TCP sees the reset at once, else only silence.
    pub fn crash(&mut self, i: usize, rst: bool, down_for: u32) {
        if !self.nodes[i].alive() {
            return;
        }
        self.note(format!("node{i}: CRASH (rst {rst}, down {down_for}s)"));
        self.cov.crashes += 1;
        self.count_update_stats(i);
        self.nodes[i].engine = None;
        self.nodes[i].crashed_at = self.t;
        self.nodes[i].restart_at = self.t + down_for;
        if self.link.up {
            if rst {
                let other = 1 - i;
                self.link_down();
                let now = self.nodes[other].now(self.t);
                if let Some(e) = self.nodes[other].engine.as_mut() {
                    e.handle_disconnected(now);
                }
                self.drain(other);
            } else {
                self.link.dead = true;
                self.link.q = Default::default();
            }
        }
    }

    pub fn restart(&mut self, i: usize) {
        if self.nodes[i].alive() {
            return;
        }
        let now = self.nodes[i].now(self.t);
        let mut cfg = self.nodes[i].cfg.clone();
        if self.nodes[i].failover_recover_on_restart {
            cfg.failover_recover = Some(now);
            self.nodes[i].failover_recover_on_restart = false;
        }
        self.note(format!(
            "node{i}: RESTART (persist {:?})",
            self.nodes[i].persist.map(|p| p.own_state)
        ));
        let e = FailoverEngine::new(cfg, self.nodes[i].persist, now).expect("sim config is valid");
        self.nodes[i].sync = BindingSync::new(self.nodes[i].cfg.store_rules());
        self.nodes[i].engine = Some(e);
        *self.cov.states.entry(ServerState::Startup).or_default() += 1;
        self.drain(i);
    }

    /// Break the connection (silently) and block reconnection for `secs`.
    pub fn partition(&mut self, secs: u32) {
        self.note(format!("PARTITION {secs}s"));
        self.cov.partitions += 1;
        self.link.blocked_until = self.link.blocked_until.max(self.t + secs);
        if self.link.up {
            self.link.dead = true;
            self.link.q = Default::default();
        }
    }

    /// Reset the TCP connection (both sides told).
    pub fn reset_connection(&mut self) {
        if !self.link.up || self.link.dead {
            return;
        }
        self.note("RESET connection".into());
        self.link_down();
        for i in 0..2 {
            let now = self.nodes[i].now(self.t);
            if let Some(e) = self.nodes[i].engine.as_mut() {
                e.handle_disconnected(now);
            }
            self.drain(i);
        }
    }

    fn random_fault(&mut self) {
        let p = self.p.clone();
        let roll = self.rng.below(100);
        let both_up = self.nodes[0].alive() && self.nodes[1].alive();
        match roll {
            0..=19 => self.reset_connection(),
            20..=39 => {
                // Both servers reachable by clients: the whole time without contact must stay
                // within safe_period - MCLT (the operator's side of the safe-period bargain).
                let max = p.safe_period.saturating_sub(p.mclt + 60);
                let used = self.t.saturating_sub(self.last_comm_ok);
                if both_up && used + 10 < max {
                    let d = self.rng.range(10, max - used);
                    self.partition(d);
                }
            }
            40..=59 => {
                let i = self.rng.below(2) as usize;
                if both_up || !self.nodes[i].alive() {
                    let rst = self.rng.chance(500);
                    let down = if self.rng.chance(500) {
                        self.rng.range(5, 120)
                    } else {
                        self.rng.range(200, 1500)
                    };
                    self.crash(i, rst, down);
                }
            }
            60..=69 => {
                // Clock step on one node, bounded skew.
                let i = self.rng.below(2) as usize;
                let step = self.rng.range(0, 10) as i64 - 5;
                // Small steps (NTP-sized): cltt comparisons across a clock step larger than the
                // spacing of two client events cannot be ordered by any protocol.
                let o = (self.nodes[i].offset + step).clamp(-MAX_SKEW / 4, MAX_SKEW / 4);
                self.note(format!(
                    "node{i}: clock offset {} -> {o}",
                    self.nodes[i].offset
                ));
                self.nodes[i].offset = o;
            }
            70..=77 => {
                // Operator: partner-down on the survivor of a crash.
                let a = self.rng.below(2) as usize;
                let other = 1 - a;
                if self.nodes[a].alive()
                    && !self.nodes[other].alive()
                    && self.t > self.nodes[other].crashed_at + 30
                {
                    let crash_local =
                        self.nodes[a].now(self.nodes[other].crashed_at) + MAX_SKEW as u32;
                    let since = Some(crash_local.min(self.nodes[a].now(self.t)));
                    self.note(format!("node{a}: operator partner-down since {since:?}"));
                    let _ = self.partner_down(a, since);
                }
            }
            78..=83 => {
                // Graceful shutdown or pause, then stop.
                let i = self.rng.below(2) as usize;
                if both_up {
                    let now = self.nodes[i].now(self.t);
                    let pause = self.rng.chance(500);
                    if let Some(e) = self.nodes[i].engine.as_mut() {
                        if pause {
                            // Refused outside NORMAL/COMMUNICATIONS-INTERRUPTED: then stop.
                            if e.pause(now).is_err() {
                                e.shutdown(now);
                            }
                        } else {
                            e.shutdown(now);
                        }
                    }
                    self.note(format!(
                        "node{i}: {}",
                        if pause { "PAUSE" } else { "SHUTDOWN" }
                    ));
                    self.drain(i);
                    // The process exits a few seconds later.
                    let down = self.rng.range(30, 900);
                    self.nodes[i].restart_at = 0;
                    self.schedule_stop(i, down);
                }
            }
            84..=91 => {
                // A server cut off from clients and partner (may stay longer than the safe
                // period: it cannot serve anyone meanwhile).
                let i = self.rng.below(2) as usize;
                if both_up {
                    let d = self.rng.range(100, 1500);
                    self.note(format!("node{i}: ISOLATED {d}s"));
                    self.nodes[i].isolated_until = self.t + d;
                    self.nodes[i].isolated_from = self.t;
                    self.nodes[i].needs_sync = true;
                    self.partition(d);
                }
            }
            92..=95 => {
                // Operator: partner-down on a server whose partner is isolated from clients.
                for a in 0..2 {
                    let other = 1 - a;
                    if self.nodes[a].alive()
                        && self.nodes[other].isolated_until > self.t + 10
                        && self.nodes[a].state() == Some(ServerState::CommunicationsInterrupted)
                    {
                        let now = self.nodes[a].now(self.t);
                        // The operator dates it from when the partner lost its clients (without
                        // a date, MCLT would count from the start of COMMUNICATIONS-INTERRUPTED,
                        // which may be earlier).
                        let cut =
                            self.nodes[a].now(self.nodes[other].isolated_from) + MAX_SKEW as u32;
                        let since = if self.rng.chance(500)
                            && self.nodes[a]
                                .engine
                                .as_ref()
                                .is_some_and(|e| e.interrupted_since() >= cut)
                        {
                            None
                        } else {
                            Some(cut.min(now))
                        };
                        self.note(format!("node{a}: operator partner-down (partner isolated)"));
                        let _ = self.partner_down(a, since);
                    }
                }
            }
            _ => {
                // Operator: failover recover on a node (full pull, MCLT wait).
                let i = self.rng.below(2) as usize;
                if both_up && self.rng.chance(300) {
                    let now = self.nodes[i].now(self.t);
                    if let Some(e) = self.nodes[i].engine.as_mut() {
                        let _ = e.recover(now);
                    }
                    self.note(format!("node{i}: operator recover"));
                    self.drain(i);
                }
            }
        }
    }

    fn schedule_stop(&mut self, i: usize, down: u32) {
        // Encoded as: crash in 3 s (after the STATE went out), restart `down` later.
        self.pending_stops.push((self.t + 3, i, down));
    }

    // ---------------------------------------------------------------------------------------
    // DHCP server model

    fn reachable(&self, i: usize) -> bool {
        self.nodes[i].alive() && self.nodes[i].isolated_until <= self.t && !self.nodes[i].needs_sync
    }

    fn find_record(&self, i: usize, key: &[u8]) -> Option<usize> {
        let key = client_key(key);
        (0..POOL).find(|&k| {
            let l = self.nodes[i].lease(k);
            l.state == LeaseState::Active && l.client == key
        })
    }

    /// Grant or extend a lease on node `i`; returns lease seconds. Writes the record as the
    /// DHCP engine does (`bind_granted`), then hands it to the failover driver.
    fn grant(&mut self, i: usize, k: usize, key: &[u8], now: u32) -> u32 {
        let pol = self.nodes[i].cell.load();
        let ck = client_key(key);
        let l = *self.nodes[i].lease(k);
        let same = l.state == LeaseState::Active && l.client == ck;
        let committed = l.acked_potential_expiry;
        let g = pol.lease_time_allowed(now, self.p.desired, committed);
        // Invariant 3: the MCLT rule, checked at every grant.
        assert!(
            g.lease_expiry <= now.max(committed) + pol.mclt,
            "MCLT rule violated on node{i}: lease end {} > max({now},{committed})+{}",
            g.lease_expiry,
            pol.mclt
        );
        assert!(g.lease_secs <= self.p.desired);
        if !same {
            assert!(g.lease_secs <= pol.mclt, "first lease longer than MCLT");
        }
        if self.verbose {
            let m = format!(
                "node{i}: grant {} to {:?} for {}s (committed {}, pot {})",
                addr(k),
                key,
                g.lease_secs,
                committed,
                g.potential_expiry
            );
            self.note(m);
        }
        let t = self.t;
        let node = &mut self.nodes[i];
        let (_, _) = node
            .table
            .update(addr(k), |l| {
                match l.state {
                    LeaseState::Backup => l.owner = Owner::Backup,
                    LeaseState::Free => l.owner = Owner::Primary,
                    _ => {}
                }
                if !same {
                    l.set_relay_agent_info(&[1, 4, b'p', b'o', b'r', b't']);
                }
                l.state = LeaseState::Active;
                l.client = ck;
                l.htype = 1;
                l.hlen = key.len() as u8;
                l.chaddr = [0; 16];
                l.chaddr[..key.len()].copy_from_slice(key);
                l.expiry = g.lease_expiry;
                l.start = now;
                l.cltt = now;
                l.lease_time = g.lease_secs;
                l.potential_expiry = g.potential_expiry;
            })
            .expect("simulated address");
        let l = node.table.0[k];
        if let Some(e) = node.engine.as_mut() {
            node.sync.record_changed(e, now, t, &l);
        }
        self.drain(i);
        g.lease_secs
    }

    fn dora(&mut self, c: usize) {
        let key = self.clients[c].key.clone();
        let first = self.rng.below(2) as usize;
        for i in [first, 1 - first] {
            if !self.reachable(i) {
                continue;
            }
            let pol = self.nodes[i].cell.load();
            let adm = pol.admit(RequestKind::Discover, &key, 0);
            if let Admission::Drop(_) = adm {
                self.cov.dropped_discovers += 1;
                continue;
            }
            let now = self.nodes[i].now(self.t);
            let k = match self.find_record(i, &key) {
                Some(k) if self.nodes[i].lease(k).expiry > now => Some(k),
                _ => {
                    // Lowest address first, by the DHCP engine's failover rule.
                    (0..POOL).find(|&k| pol.may_allocate_lease(now, self.nodes[i].lease(k)))
                }
            };
            let Some(k) = k else {
                continue;
            };
            let secs = self.grant(i, k, &key, now);
            self.cov.grants += 1;
            let t = self.t;
            self.clients[c].lease = Some((k, t + secs, i, t + secs / 2, t + secs * 7 / 8));
            self.clients[c].next_at = t + secs / 2;
            return;
        }
        self.clients[c].next_at = self.t + self.rng.range(5, 30);
    }

    fn renew(&mut self, c: usize, rebind: bool) {
        let Some((k, end, via, _, t2)) = self.clients[c].lease else {
            return;
        };
        let key = self.clients[c].key.clone();
        let order: Vec<usize> = if rebind {
            let f = self.rng.below(2) as usize;
            vec![f, 1 - f]
        } else {
            vec![via]
        };
        for i in order {
            if !self.reachable(i) {
                continue;
            }
            let pol = self.nodes[i].cell.load();
            let kind = if rebind {
                RequestKind::Rebind
            } else {
                RequestKind::Renew
            };
            if let Admission::Drop(_) = pol.admit(kind, &key, 0) {
                continue;
            }
            let now = self.nodes[i].now(self.t);
            let l = self.nodes[i].lease(k);
            if l.state == LeaseState::Active
                && l.client == client_key(&key)
                && l.expiry + GRACE > now
            {
                let secs = self.grant(i, k, &key, now);
                self.cov.renewals += 1;
                let t = self.t;
                self.clients[c].lease = Some((k, t + secs, i, t + secs / 2, t + secs * 7 / 8));
                self.clients[c].next_at = t + secs / 2;
                return;
            }
            // NAK: the server knows nothing (or something else) about this lease.
            self.clients[c].lease = None;
            self.clients[c].next_at = self.t + 1;
            return;
        }
        // No answer: try again later (rebind at T2), give up at the end.
        let t = self.t;
        self.clients[c].next_at = if t < t2 {
            t2
        } else if t + 10 < end {
            t + 10
        } else {
            end
        };
    }

    fn release(&mut self, c: usize) {
        let Some((k, _, via, _, _)) = self.clients[c].lease.take() else {
            return;
        };
        self.clients[c].next_at = self.t + self.rng.range(30, 200);
        let key = self.clients[c].key.clone();
        if !self.reachable(via) {
            return; // lost release; the lease simply runs out
        }
        let pol = self.nodes[via].cell.load();
        if let Admission::Drop(_) = pol.admit(RequestKind::Release, &key, 0) {
            return;
        }
        let now = self.nodes[via].now(self.t);
        let t = self.t;
        let ck = client_key(&key);
        let node = &mut self.nodes[via];
        // The DHCP engine's RELEASE (the shared record rule).
        let released = node
            .table
            .update(addr(k), |l| xdhcpd_failover::store::release(l, &ck, now));
        if released == Some((true, true)) {
            let l = node.table.0[k];
            if let Some(e) = node.engine.as_mut() {
                node.sync.record_changed(e, now, t, &l);
            }
            self.drain(via);
        }
    }

    fn client_step(&mut self, c: usize) {
        let t = self.t;
        match self.clients[c].lease {
            None => self.dora(c),
            Some((_, end, _, t1, t2)) => {
                if t >= end {
                    self.clients[c].lease = None;
                    self.clients[c].next_at = t + self.rng.range(1, 60);
                } else if t >= t1 && t < t2 && self.rng.chance(80) {
                    self.release(c);
                } else if t >= t2 {
                    self.renew(c, true);
                } else if t >= t1 {
                    self.renew(c, false);
                } else {
                    self.clients[c].next_at = t1;
                }
            }
        }
    }

    /// The daemon's expiry sweeper (lease-store `sweep_expired` at `now - expiry_grace`),
    /// then the driver's periodic scan for records the partner lacks.
    fn sweep(&mut self) {
        let t = self.t;
        for i in 0..2 {
            if !self.nodes[i].alive() {
                continue;
            }
            let now = self.nodes[i].now(t);
            let cutoff = now.saturating_sub(self.nodes[i].sync.rules().expiry_grace);
            for k in 0..POOL {
                let node = &mut self.nodes[i];
                let r = node.table.update(addr(k), |l| {
                    let go = matches!(l.state, LeaseState::Active | LeaseState::Offered)
                        && l.expiry <= cutoff;
                    if go {
                        l.state = LeaseState::Expired;
                    }
                    go
                });
                if self.verbose && r == Some((true, true)) {
                    eprintln!("[{}] node{i}: expire {}", t - T0, addr(k));
                }
            }
            let node = &mut self.nodes[i];
            if let Some(e) = node.engine.as_mut() {
                node.sync.scan_unacked(e, now, t, &node.table);
            }
            self.drain(i);
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
        if self.random_clients && self.rng.chance(30) {
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

    /// Primary, NORMAL with communications OK: reclaim up to two random BACKUP addresses the
    /// way the daemon does (a FREE update; the record stays BACKUP until acknowledged).
    fn reclaim_some(&mut self) {
        let t = self.t;
        let Some(i) = (0..2).find(|&i| self.nodes[i].role == Role::Primary) else {
            return;
        };
        let now = self.nodes[i].now(t);
        let ok = self.nodes[i]
            .engine
            .as_ref()
            .is_some_and(|e| e.state() == ServerState::Normal && e.communications_ok());
        if !ok {
            return;
        }
        let backups: Vec<usize> = (0..POOL)
            .filter(|&k| self.nodes[i].lease(k).state == LeaseState::Backup)
            .collect();
        for _ in 0..2 {
            if backups.is_empty() {
                break;
            }
            let k = backups[self.rng.below(backups.len() as u64) as usize];
            let node = &mut self.nodes[i];
            let sent = node
                .engine
                .as_mut()
                .is_some_and(|e| node.sync.reclaim(e, now, t, &node.table, addr(k)));
            if sent {
                self.note(format!("node{i}: reclaim {}", addr(k)));
                self.cov.reclaims_sent += 1;
            }
        }
        self.drain(i);
    }

    pub fn run_until(&mut self, end: u32) {
        while self.step(end) {}
    }

    pub fn check_invariants(&self) {
        let t = self.t;
        // (1a) client view: no two clients hold the same address at once.
        let mut holder: [Option<usize>; POOL] = [None; POOL];
        for (c, cl) in self.clients.iter().enumerate() {
            if let Some((k, end, ..)) = cl.lease {
                if end > t {
                    if let Some(o) = holder[k] {
                        panic!(
                            "invariant 1 violated at {}: address {} held by clients {o} and {c}\n{}",
                            t - T0,
                            addr(k),
                            self.log_tail()
                        );
                    }
                    holder[k] = Some(c);
                }
            }
        }
        // (1b) tables: no address ACTIVE and unexpired for two different clients.
        for k in 0..POOL {
            let a = self.nodes[0].lease(k);
            let b = self.nodes[1].lease(k);
            let live = |n: usize, l: &Lease| {
                l.state == LeaseState::Active && l.expiry > self.nodes[n].now(t) + GRACE
            };
            if live(0, a) && live(1, b) && a.client != b.client {
                panic!(
                    "invariant 1 (tables) violated at {}: {} is {} on node0 and {} on node1\n{}",
                    t - T0,
                    addr(k),
                    a.client,
                    b.client,
                    self.log_tail()
                );
            }
        }
        // (2) every lease held by a client is on at least one server's durable table.
        for (c, cl) in self.clients.iter().enumerate() {
            if let Some((k, end, ..)) = cl.lease {
                if end <= t {
                    continue;
                }
                let known = (0..2).any(|n| {
                    let l = self.nodes[n].lease(k);
                    l.state == LeaseState::Active
                        && l.client == client_key(&cl.key)
                        && (l.expiry as i64 - self.nodes[n].offset) + 2 * MAX_SKEW >= end as i64
                });
                if !known {
                    panic!(
                        "invariant 2 violated at {}: client {c}'s lease on {} (end {}) unknown to both servers\nnode0 {:?}\nnode1 {:?}\n{}",
                        t - T0,
                        addr(k),
                        end - T0,
                        self.nodes[0].lease(k),
                        self.nodes[1].lease(k),
                        self.log_tail()
                    );
                }
            }
        }
    }

    pub fn log_tail(&self) -> String {
        let n = self.log.len();
        self.log[n.saturating_sub(60)..].join("\n")
    }
}
