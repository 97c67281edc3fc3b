//! The DHCPv4 server engine (RFC 2131 §4.3), sans-IO.
//!
//! One `Engine` per worker; all engines share an [`EngineShared`] (the
//! configuration and the lease table). `handle` decides on one message.
//!
//! Invariants this module keeps (tested below and in the integration tests):
//! - An address is only offered or acknowledged to client C if, under the
//!   lease record's lock, the record is free-able or already belongs to C.
//!   So no address is bound to two clients (architecture property 1).
//! - Malformed input is counted and dropped; nothing here panics on input.
//! - No wall clock: `now` (unix seconds) comes from the caller.
//!
//! Here: the shared state, `handle` (parse, pick the subnet, dispatch) and
//! the record update under the lock (`take`). The message handlers are in
//! `messages.rs`, address selection in `address.rs`, the reply and its
//! options in `reply.rs`, and the rules for a lease record under a failover
//! policy in `binding.rs`.

mod address;
mod binding;
mod bootp;
mod caps;
pub mod classes;
mod messages;
pub mod pools;
pub mod reconfigure;
mod registration;
mod reply;

pub use registration::{Registered, RegistrationView};

use std::collections::HashMap;
use std::net::Ipv4Addr;
use std::sync::Arc;

use lease_store::{ClientKey, LeaseState, LeaseTable, Slot, VarParts, VarRef};
use xdhcpd_config::{ClassSet, Config, LeaseTimes, ReservationKey, Subnet};
use xdhcpd_failover::{
    admit_with_relay_health, Admission, FailoverPolicy, Named, PolicyCell, RelayHealth,
    RequestKind, RhcVerdict,
};

use crate::delivery::Delivery;
use crate::leasequery::{self, Unanswered};
use crate::stats::EngineStats;
use crate::trust::{Refusal, RelayTrust};
use crate::wire::{self, Message, MessageType, Summary};

use binding::{bind_granted, is_bound, may_take, request_kind, same_hw};
use classes::{classify, Registrations};
use pools::Scopes;

/// Largest DHCP payload we send when the client states no limit (RFC 2131:
/// 576-byte IP datagrams minus IP and UDP headers).
const DEFAULT_MAX_PAYLOAD: usize = 576 - 28;

/// What the engine shares across workers: read-mostly, set up at start.
pub struct EngineShared {
    /// The configuration served: subnets, pools, reservations, options, lease times.
    pub config: Arc<Config>,
    /// The lease table, shared with every worker and the background threads.
    pub table: Arc<LeaseTable>,
    /// Server identifier (option 54) and source address of replies.
    pub server_id: Ipv4Addr,
    /// Reservations: client key -> (subnet index, address).
    reservations: HashMap<ClientKey, (usize, Ipv4Addr)>,
    /// The same by address: nobody else may take a reserved address, whatever its record
    /// says (free, or expired / released after the reserved client's binding ended).
    reserved_addrs: HashMap<Ipv4Addr, ClientKey>,
    /// Pool id -> subnet index.
    pool_subnet: HashMap<u32, usize>,
    /// Some subnet has `dynamic-bootp`: BOOTP requests are looked at (else refused at once,
    /// as before the key existed), and pools with it follow the failover pool rule.
    dynamic_bootp: bool,
    /// Published by the failover drivers, one per relationship (`Config::failovers` order);
    /// empty = standalone server.
    pub failovers: Vec<Arc<PolicyCell>>,
    /// One policy for every subnet (one relationship covering all): no subnet lookup first.
    failover_everywhere: bool,
    /// Trusted relays, leasequery clients, relay data from clients (`trust.rs`).
    trust: RelayTrust,
    /// Live registrations (KNOWN clients, groups, fixed addresses, host options) from the
    /// registration store (`registration.rs`); None = no store.
    pub registrations: Option<Arc<dyn RegistrationView>>,
    /// Configured `[[host]]`s and reservations (KNOWN, group) for class evaluation
    /// (`classes.rs`); a live registration takes precedence.
    hosts: Registrations,
    /// Shared networks and pool locations (`pools.rs`).
    scopes: Scopes,
    /// Server-initiated reconfiguration (`reconfigure.rs`); None = `[reconfigure]` absent.
    pub reconf: Option<Arc<ReconfShared>>,
    /// The daemon's generated secret and the per-slot book, kept for the next reload
    /// whether `[reconfigure]` is on or not.
    pub reconf_base: Option<(Arc<[u8]>, Arc<reconfigure::ReconfBook>)>,
    /// Lease caps per circuit / remote-id (`caps.rs`); None = off at start.
    pub caps: Option<Arc<crate::caps::LeaseCaps>>,
    /// The relay health check (`[failover] relay-health-check`): per-relay times the workers
    /// keep with relaxed atomics; the same table across reloads. None = off.
    pub rhc: Option<Arc<RelayHealth>>,
}

/// What the engines need for reconfiguration: the key derivation, the book of the last
/// ACK's xid and relay per slot (shared across reloads), the policy.
pub struct ReconfShared {
    /// Per-client reconfigure keys.
    pub keys: reconfigure::ReconfKeys,
    /// xid and giaddr of each binding's last ACK.
    pub book: Arc<reconfigure::ReconfBook>,
    /// The `[reconfigure]` section.
    pub policy: xdhcpd_config::ReconfigureConfig,
}

impl EngineShared {
    /// Indexes `config`'s reservations (client key -> subnet and address) and pools
    /// (pool id -> subnet) over `table`; no failover policy until
    /// [`EngineShared::with_failover`].
    pub fn new(config: Arc<Config>, table: Arc<LeaseTable>, server_id: Ipv4Addr) -> Self {
        let mut reservations = HashMap::new();
        let mut pool_subnet = HashMap::new();
        for s in &config.subnets {
            for p in &s.pools {
                pool_subnet.insert(p.id, s.index);
            }
            for r in &s.reservations {
                reservations.insert(reservation_key(&r.key), (s.index, r.ip));
            }
        }
        let reserved_addrs = reservations.iter().map(|(k, &(_, ip))| (ip, *k)).collect();
        let dynamic_bootp = config.subnets.iter().any(|s| s.dynamic_bootp);
        EngineShared {
            dynamic_bootp,
            trust: RelayTrust::new(&config),
            hosts: Registrations::from_config(&config),
            scopes: Scopes::new(&config),
            config,
            table,
            server_id,
            reservations,
            reserved_addrs,
            pool_subnet,
            failovers: Vec::new(),
            failover_everywhere: false,
            registrations: None,
            reconf: None,
            reconf_base: None,
            caps: None,
            rhc: None,
        }
    }

    /// Makes the engines run the relay health check over `rhc` (keep the same table across
    /// reloads: it holds each relay's times).
    pub fn with_relay_health(mut self, rhc: Arc<RelayHealth>) -> Self {
        self.rhc = Some(rhc);
        self
    }

    /// Makes the engines enforce `[limits]` lease caps with `caps` (the same one across
    /// reloads: it holds the counts; attach it to the table once, at start).
    pub fn with_lease_caps(mut self, caps: Arc<crate::caps::LeaseCaps>) -> Self {
        self.caps = Some(caps);
        self
    }

    /// Turns on reconfiguration: keys from `secret`, the per-slot `book` (keep the same one
    /// across reloads; its count of flagged records follows the table from here on, see
    /// [`reconfigure::ReconfBook::attach`]). Without `[reconfigure]` in the configuration
    /// this does nothing else.
    pub fn with_reconfigure(mut self, secret: &[u8], book: Arc<reconfigure::ReconfBook>) -> Self {
        book.attach(&self.table);
        self.reconf_base = Some((Arc::from(secret), book.clone()));
        if let Some(policy) = self.config.reconfigure.clone() {
            self.reconf = Some(Arc::new(ReconfShared {
                keys: reconfigure::ReconfKeys::new(policy.secret.as_deref().unwrap_or(secret)),
                book,
                policy,
            }));
        }
        self
    }

    /// Makes the engines consult registrations (`engine/registration.rs`).
    pub fn with_registrations(mut self, view: Arc<dyn RegistrationView>) -> Self {
        self.registrations = Some(view);
        self
    }

    /// Makes the engines obey a failover relationship's policy (in every subnet when the
    /// configuration has no relationships of its own: tests and tools).
    pub fn with_failover(self, cell: Arc<PolicyCell>) -> Self {
        self.with_failovers(vec![cell])
    }

    /// Makes the engines obey each relationship's policy in the subnets it covers
    /// (`Subnet::failover`; cells in `Config::failovers` order); a subnet out of failover is
    /// served as by a standalone server.
    pub fn with_failovers(mut self, cells: Vec<Arc<PolicyCell>>) -> Self {
        self.failover_everywhere = cells.len() == 1
            && (self.config.failovers.is_empty() || self.config.failover_everywhere());
        self.failovers = cells;
        self
    }

    /// Whether a failover policy may apply to any message.
    #[inline]
    pub fn has_failover(&self) -> bool {
        !self.failovers.is_empty()
    }

    /// Whether `addr` is reserved for a client other than `key`.
    #[inline]
    fn reserved_for_other(&self, addr: Ipv4Addr, key: &ClientKey) -> bool {
        !self.reserved_addrs.is_empty() && self.reserved_addrs.get(&addr).is_some_and(|k| k != key)
    }

    /// Reserved addresses of `old` that this configuration no longer reserves: their
    /// `Reserved` records (not bound to the client) become free again (a reload that drops a
    /// reservation). Returns how many records were freed.
    pub fn unprotect_dropped_reservations(&self, old: &EngineShared) -> usize {
        let mut n = 0;
        for (key, (_, ip)) in &old.reservations {
            if self.reservations.get(key).is_some_and(|(_, a)| a == ip) {
                continue;
            }
            if let Some(slot) = self.table.slot_of(*ip) {
                let freed = self.table.update(slot, |l| {
                    let go = l.state == LeaseState::Reserved && l.client == *key;
                    if go {
                        // Back to its failover owner's free state (FREE or BACKUP).
                        l.state = match l.owner {
                            lease_store::Owner::Backup => LeaseState::Backup,
                            _ => LeaseState::Free,
                        };
                        l.clear_binding();
                    }
                    go
                });
                n += usize::from(freed);
            }
        }
        n
    }

    /// Number of reservations (all subnets).
    pub fn reservation_count(&self) -> usize {
        self.reservations.len()
    }

    /// Marks reserved addresses that lie inside pools so allocation never
    /// hands them to another client. Call at start and after a reload.
    pub fn protect_reservations(&self, now: u32) {
        for (key, (_, ip)) in &self.reservations {
            if let Some(slot) = self.table.slot_of(*ip) {
                self.table.update(slot, |l| {
                    let ours = l.client == *key;
                    if !ours && !is_bound(l, now) {
                        l.state = LeaseState::Reserved;
                        l.client = *key;
                    }
                });
            }
        }
    }
}

/// Receive metadata the engine needs (from the frame or the UDP socket).
#[derive(Clone, Copy, Debug)]
pub struct RxMeta {
    /// An address of the interface the message arrived on; selects the
    /// subnet of directly attached clients.
    pub local_addr: Ipv4Addr,
    /// IPv4 source of the request: the relay agent, the client's address, or 0.0.0.0;
    /// names an INFORM client's subnet when ciaddr is 0.
    pub src_ip: Ipv4Addr,
    /// IPv4 destination of the request: broadcast tells a REBINDING client from a
    /// RENEWING one (which unicasts to us).
    pub dst_ip: Ipv4Addr,
}

/// Why no reply was sent.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Silence {
    /// The payload is not a valid DHCP message (header, cookie or options), or a
    /// DECLINE names no address.
    Malformed,
    /// A BOOTREPLY, a BOOTP request (no option 53) or a message type a server does not
    /// handle.
    NotRequest,
    /// No configured subnet for the client's link.
    NoSubnet,
    /// A DISCOVER for which no address may be given.
    PoolExhausted,
    /// A REQUEST, DECLINE or RELEASE whose server identifier is another server's; our
    /// offer to that client, if any, is withdrawn.
    OtherServer,
    /// A message about a binding this server does not have, or (not authoritative for
    /// the link) a REQUEST for an address it cannot confirm (RFC 2131 §4.3.2).
    UnknownClient,
    /// The failover state or load balancing says the partner answers.
    Failover,
    /// RELEASE / DECLINE: applied, no reply by design.
    NoReplyExpected,
    /// The reply did not fit the output buffer.
    NoRoom,
    /// A DHCPLEASEQUERY not from a relay agent (giaddr 0), or naming no
    /// address, MAC or client identifier (RFC 4388).
    LeaseQueryRefused,
    /// A DHCPLEASEQUERY from a giaddr not in `leasequery-allow` (RFC 4388 §6).
    LeaseQueryNotAllowed,
    /// A relayed message whose giaddr is not a trusted relay agent.
    UntrustedRelay,
    /// Option 82 from a client not behind a relay (giaddr 0; RFC 3046 §2.1).
    RelayInfoFromClient,
    /// An UNKNOWN client (no live registration, no configured host or reservation) where
    /// `deny-unknown` refuses it (its network, subnet, or
    /// every pool that its classes would otherwise allow).
    Unregistered,
    /// No pool of the client's link admits its classes (`allow` / `deny`).
    NoPoolForClass,
    /// A DISCOVER while the lease file's storage has failed: no ACK could follow (sticky
    /// storage errors), so no OFFER binds the client to this server.
    StorageFailed,
    /// A DECLINE or RELEASE without the proof RFC 2131 asks for: our server identifier, the
    /// client's own bound address, from its hardware address (RELEASE: from that address).
    Unproven,
    /// A DISCOVER of a binding being reconfigured: dropped, the binding deleted (the
    /// client's next DISCOVER gets the new configuration).
    Reconfiguring,
    /// A DISCOVER from a client that holds no address, whose circuit or remote-id already
    /// holds its `[limits]` cap of addresses.
    LeaseCap,
}

/// What [`Engine::handle`] decided about one message.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Decision {
    /// A reply is in the output buffer.
    Reply {
        /// Bytes of DHCP payload written at the start of the output buffer.
        len: usize,
        /// The reply's message type (OFFER, ACK, NAK or a leasequery answer).
        kind: MessageType,
        /// Where the reply goes.
        to: Delivery,
    },
    /// No reply, and why (each reason is also counted in [`EngineStats`]).
    Silent(Silence),
}

/// One worker's DHCPv4 server: decides on one message at a time. Not shared between
/// threads; the state it shares with other engines is in [`EngineShared`].
pub struct Engine {
    shared: Arc<EngineShared>,
    shard: usize,
    stats: Arc<EngineStats>,
    /// Slots changed since the last `take_changed` (group commit, failover).
    changed: Vec<Slot>,
    /// Some change since the last `take_needs_commit` must be durable.
    needs_commit: bool,
    /// Changes that must be durable, counted since start (the worker compares it around
    /// each message to tell replies that must wait for a commit from those that need not).
    durable_changes: u64,
    /// Failover policy and admission of the message being handled.
    pol: Option<FailoverPolicy>,
    admission: Admission,
    /// The handle of the message's variable data (option 82 whole, host name, vendor class:
    /// stored with the binding so leasequery and binding updates carry them), computed once
    /// per message when it first binds a record (`msg_var`).
    var_ref: Option<VarRef>,
    /// The message's chaddr is the hardware address of the binding its reply announces, so
    /// the reply may be unicast to it (and in UDP mode its neighbour entry installed).
    hw_is_bindings: bool,
    /// The message's live registration and the worker's cache of them (`registration.rs`).
    reg: registration::RegCache,
    /// Classes of the message being handled (`classes.rs`), evaluated once.
    classes: ClassSet,
    /// The message's client is KNOWN: a live registration or a configured host /
    /// reservation (`registration.rs`, the one place it is decided).
    known: bool,
    /// The pool of the address the reply announces (its settings layer), if any.
    reply_pool: Option<u32>,
    /// The RFC 6704 reconfigure key (and replay value) the ACK hands out, if any.
    reconf_key: Option<([u8; 16], u64)>,
    /// The message carried option 145 with HMAC-MD5 (RFC 6704).
    nonce_capable: bool,
    /// Lease-cap units reserved for the message being handled (`caps.rs`).
    cap_res: crate::caps::Reservation,
    /// The message being handled is a BOOTREQUEST (no option 53): `take` binds permanently.
    bootp_msg: bool,
}

impl Engine {
    /// An engine that allocates from the lease table's free lists of shard `shard` (each
    /// worker its own) and counts into `stats`, which only this engine writes.
    pub fn new(shared: Arc<EngineShared>, shard: usize, stats: Arc<EngineStats>) -> Self {
        Engine {
            shared,
            shard,
            stats,
            changed: Vec::with_capacity(256),
            needs_commit: false,
            durable_changes: 0,
            pol: None,
            admission: Admission::Serve,
            var_ref: None,
            hw_is_bindings: true,
            reg: registration::RegCache::default(),
            classes: ClassSet::EMPTY,
            known: false,
            reply_pool: None,
            reconf_key: None,
            nonce_capable: false,
            cap_res: crate::caps::Reservation::default(),
            bootp_msg: false,
        }
    }

    /// The state shared with the other engines.
    pub fn shared(&self) -> &Arc<EngineShared> {
        &self.shared
    }

    /// Serves from now on with `shared` (a configuration reload: the daemon builds a new
    /// [`EngineShared`] over the same lease table and each worker swaps it in between two
    /// batches, so no message sees half of one configuration and half of another).
    pub fn set_shared(&mut self, shared: Arc<EngineShared>) {
        self.shared = shared;
        // Another view, or classes by other ids: no cached registration answer holds.
        self.reg.clear();
    }

    /// This engine's counters.
    pub fn stats(&self) -> &Arc<EngineStats> {
        &self.stats
    }

    /// Slots whose records changed since the last call, for group commit and
    /// for binding updates to a failover partner.
    pub fn take_changed(&mut self, into: &mut Vec<Slot>) {
        into.append(&mut self.changed);
    }

    /// Decides on one DHCP message. The reply, if any, is written to `out`.
    pub fn handle(&mut self, now: u32, meta: &RxMeta, payload: &[u8], out: &mut [u8]) -> Decision {
        let st = self.stats.clone();
        EngineStats::inc(&st.received);
        match Message::new_checked(payload) {
            Ok(m) => self.handle_message(now, meta, m, false, out),
            // RFC 951: a BOOTREQUEST's vendor area need not start with the RFC 1497 cookie.
            // Looked at only where some subnet serves BOOTP; else malformed, as always.
            Err(wire::ParseError::BadCookie) if self.shared.dynamic_bootp => {
                self.handle_plain_bootp(now, meta, payload, out)
            }
            Err(_) => self.silent(&st.malformed, Silence::Malformed),
        }
    }

    /// A BOOTREQUEST without the magic cookie (RFC 951): its vendor area holds no options.
    /// The fixed header is copied in front of a cookie and an END (on the stack: no
    /// allocation), so the one parser and the one dispatch see it as a message without
    /// options; its reply carries no options either (`bootp.rs`).
    #[inline(never)]
    fn handle_plain_bootp(
        &mut self,
        now: u32,
        meta: &RxMeta,
        payload: &[u8],
        out: &mut [u8],
    ) -> Decision {
        let st = self.stats.clone();
        let Some(head) = payload.get(..wire::HEADER_LEN) else {
            return self.silent(&st.malformed, Silence::Malformed);
        };
        let mut buf = [0u8; wire::OPTIONS_OFFSET + 1];
        buf[..wire::HEADER_LEN].copy_from_slice(head);
        buf[wire::HEADER_LEN..wire::OPTIONS_OFFSET].copy_from_slice(&wire::MAGIC_COOKIE);
        buf[wire::OPTIONS_OFFSET] = wire::opt::END;
        match Message::new_checked(&buf) {
            Ok(m) => self.handle_message(now, meta, m, true, out),
            Err(_) => self.silent(&st.malformed, Silence::Malformed),
        }
    }

    /// [`Engine::handle`] after the header check. `plain`: a BOOTREQUEST that carried no
    /// magic cookie (its header only, see `handle_plain_bootp`).
    fn handle_message(
        &mut self,
        now: u32,
        meta: &RxMeta,
        msg: Message<'_>,
        plain: bool,
        out: &mut [u8],
    ) -> Decision {
        let st = self.stats.clone();
        if msg.op() != wire::OP_BOOTREQUEST {
            return self.silent(&st.not_request, Silence::NotRequest);
        }
        let mut sum = match msg.summary() {
            Ok(s) => s,
            Err(_) => return self.silent(&st.malformed, Silence::Malformed),
        };
        let kind = match sum.message_type {
            Some(k) => Some(k),
            // BOOTP (no option 53): served only in subnets with `dynamic-bootp` (`bootp.rs`).
            None if self.shared.dynamic_bootp => None,
            // BOOTP is refused (carrier deployments assign by DHCP only).
            None => {
                EngineStats::inc(&st.bootp_refused);
                return self.silent(&st.not_request, Silence::NotRequest);
            }
        };
        self.bootp_msg = kind.is_none();
        // Who sent it, before anything reads giaddr or relay data (`trust.rs`); a
        // BOOTREQUEST as a client's request (RFC 1542 relays forward both alike).
        match self
            .shared
            .trust
            .screen(kind.unwrap_or(MessageType::Request), msg.giaddr(), &mut sum)
        {
            Ok(stripped) => {
                if stripped.relay_info {
                    EngineStats::inc(&st.relay_info_from_client_stripped);
                }
                if stripped.subnet_selection {
                    EngineStats::inc(&st.subnet_selection_from_client_ignored);
                }
            }
            Err(Refusal::UntrustedRelay) => {
                return self.silent(&st.untrusted_relay, Silence::UntrustedRelay)
            }
            Err(Refusal::RelayInfoFromClient) => {
                return self.silent(
                    &st.relay_info_from_client_dropped,
                    Silence::RelayInfoFromClient,
                )
            }
            Err(Refusal::LeaseQueryNotAllowed) => {
                EngineStats::inc(&st.leasequeries);
                return self.silent(&st.leasequery_not_allowed, Silence::LeaseQueryNotAllowed);
            }
        }
        // A leasequery only reads the table: every failover state and every
        // load-balancing bucket answers it, so it goes before admission.
        if kind == Some(MessageType::LeaseQuery) {
            return self.leasequery(now, &msg, &sum, out);
        }
        let key = client_key(&msg, &sum);
        self.pol = self.failover_policy(meta, &msg, &sum);
        self.admission = Admission::Serve;
        if let Some(pol) = &self.pol {
            let hash_key = sum.client_id.unwrap_or(msg.chaddr());
            let named = match sum.server_id {
                None => Named::Nobody,
                Some(s) if s == self.shared.server_id => Named::Us,
                Some(_) => Named::Other,
            };
            // The failover rule, with the relay health check when it is on (the same rule
            // the simulation runs: `xdhcpd_failover::relay_health`).
            let (admission, verdict) = admit_with_relay_health(
                pol,
                self.shared.rhc.as_deref(),
                kind.map_or(RequestKind::Bootp, |k| request_kind(k, &msg, &sum, meta)),
                hash_key,
                msg.secs(),
                msg.giaddr(),
                named,
                now,
            );
            self.admission = admission;
            match verdict {
                Some(RhcVerdict::Serve) => EngineStats::inc(&st.rhc_served_for_partner),
                Some(RhcVerdict::TooEarly) => EngineStats::inc(&st.rhc_too_early),
                Some(RhcVerdict::NotTracked) => EngineStats::inc(&st.rhc_not_tracked),
                Some(RhcVerdict::LeaveToPartner) | None => {}
            }
            if let Admission::Drop(_) = self.admission {
                return self.silent(&st.failover_dropped, Silence::Failover);
            }
        }
        self.lookup_registration(&msg, &key);
        // A binding without a record (a reservation outside the pools) is keyed by the
        // hardware address itself unless the client sent a client id.
        self.hw_is_bindings = sum.client_id.is_none();
        self.var_ref = None;
        // KNOWN and classes: once per message, from the one place the client's facts are
        // built (configured hosts) with the live registration on top.
        self.classes = ClassSet::EMPTY;
        self.reply_pool = None;
        if self.shared.scopes.active
            && matches!(
                kind,
                Some(MessageType::Discover | MessageType::Request | MessageType::Inform) | None
            )
        {
            let mut facts = self.shared.hosts.facts(&msg, &sum, &key);
            self.merge_registration(&mut facts);
            self.known = facts.known;
            self.classes = classify(&self.shared.config.classes, &facts);
        } else {
            self.known = self.reg_known_or_host(&msg, &key);
        }
        self.reconf_key = None;
        self.nonce_capable = reconfigure::nonce_capable(sum.forcerenew_nonce);
        if let Some(
            k @ (MessageType::Discover
            | MessageType::Request
            | MessageType::Release
            | MessageType::Decline),
        ) = kind
        {
            if self
                .shared
                .reconf
                .as_ref()
                .is_some_and(|r| r.book.any_flagged())
            {
                if let Some(d) = self.reconfiguring(now, k, &msg, &sum, &key, out) {
                    return d;
                }
            }
        }
        let Some(kind) = kind else {
            let d = self.bootp(now, meta, &msg, &sum, &key, plain, out);
            self.cap_release();
            return d;
        };
        match kind {
            MessageType::Discover => {
                EngineStats::inc(&st.discovers);
                let d = self.discover(now, meta, &msg, &sum, &key, out);
                self.cap_release();
                d
            }
            MessageType::Request => {
                EngineStats::inc(&st.requests);
                let d = self.request(now, meta, &msg, &sum, &key, out);
                self.cap_release();
                d
            }
            MessageType::Decline => self.decline(now, &msg, &sum, &key),
            MessageType::Release => self.release(now, meta, &msg, &sum, &key),
            MessageType::Inform => self.inform(meta, &msg, &sum, out),
            _ => self.silent(&st.not_request, Silence::NotRequest),
        }
    }

    /// RFC 4388 leasequery (see `leasequery.rs`); the answer goes to the
    /// querying relay agent at giaddr:67.
    fn leasequery(
        &mut self,
        now: u32,
        msg: &Message<'_>,
        sum: &Summary<'_>,
        out: &mut [u8],
    ) -> Decision {
        let st = self.stats.clone();
        EngineStats::inc(&st.leasequeries);
        let limit = sum
            .max_message_size
            .map(|m| (m as usize).saturating_sub(28))
            .unwrap_or(DEFAULT_MAX_PAYLOAD);
        let sid = self.shared.server_id;
        match leasequery::answer(&self.shared.table, sid, now, msg, sum, limit, out) {
            Ok((len, kind)) => {
                EngineStats::inc(match kind {
                    MessageType::LeaseActive => &st.leasequery_active,
                    MessageType::LeaseUnassigned => &st.leasequery_unassigned,
                    _ => &st.leasequery_unknown,
                });
                Decision::Reply {
                    len,
                    kind,
                    to: Delivery::Relay(msg.giaddr()),
                }
            }
            Err(Unanswered::NoRoom) => self.silent(&st.no_room, Silence::NoRoom),
            Err(Unanswered::NotRelayed | Unanswered::NoQuery) => {
                self.silent(&st.leasequery_dropped, Silence::LeaseQueryRefused)
            }
        }
    }

    fn silent(&self, c: &std::sync::atomic::AtomicU64, why: Silence) -> Decision {
        EngineStats::inc(c);
        Decision::Silent(why)
    }

    /// The failover policy for this message: of the relationship covering the client's
    /// subnet (N:1, per-scope failover), None for a subnet out of failover. A message whose
    /// subnet is unknown takes the first relationship's (it is answered by nobody anyway,
    /// and the stricter rule is the safe one).
    #[inline]
    fn failover_policy(
        &self,
        meta: &RxMeta,
        msg: &Message<'_>,
        sum: &Summary<'_>,
    ) -> Option<FailoverPolicy> {
        let cells = &self.shared.failovers;
        if self.shared.failover_everywhere {
            return cells.first().map(|c| c.load());
        }
        if cells.is_empty() {
            return None;
        }
        match self.select_subnet(meta, msg, sum) {
            Some(s) => s.failover.and_then(|i| cells.get(i)).map(|c| c.load()),
            None => cells.first().map(|c| c.load()),
        }
    }

    /// Subnet of the client's link: RFC 3527 link selection, RFC 3011 subnet
    /// selection, the relay's giaddr, else the receiving interface.
    fn select_subnet(
        &self,
        meta: &RxMeta,
        msg: &Message<'_>,
        sum: &Summary<'_>,
    ) -> Option<&Subnet> {
        let cfg = &self.shared.config;
        let giaddr = msg.giaddr();
        // A RENEWING client unicasts from its own address without a relay
        // (RFC 2131 §4.3.2): its ciaddr, not our interface, names its link.
        let ciaddr = msg.ciaddr();
        let renewing = giaddr.is_unspecified()
            && !ciaddr.is_unspecified()
            && !meta.dst_ip.is_broadcast()
            && !meta.dst_ip.is_unspecified();
        let link = sum
            .link_selection
            .or(sum.subnet_selection)
            .or((!giaddr.is_unspecified()).then_some(giaddr))
            .or(renewing.then_some(ciaddr))
            .unwrap_or(meta.local_addr);
        cfg.subnet_for(link)
    }

    /// Whether allocation in pool `pool` follows the dynamic BOOTP failover rule: under a
    /// failover policy, in a subnet with `dynamic-bootp`, only this server's own addresses
    /// are ever given, in every state (draft-12 5.14; `may_take`'s `own_only`).
    #[inline]
    fn own_only_pool(&self, pool: u32) -> bool {
        self.shared.dynamic_bootp
            && self.pol.is_some()
            && self
                .shared
                .pool_subnet
                .get(&pool)
                .and_then(|&si| self.shared.config.subnets.get(si))
                .is_some_and(|s| s.dynamic_bootp)
    }

    fn subnet_of_slot(&self, slot: Slot) -> Option<usize> {
        let pool = self.shared.table.pool_of_slot(slot);
        self.shared.pool_subnet.get(&pool).copied()
    }

    /// Notes a changed record that must be durable before the reply leaves
    /// (ack mode): a binding, a renewal, a release, a decline.
    fn record_change(&mut self, slot: Slot) {
        self.changed.push(slot);
        self.needs_commit = true;
        self.durable_changes += 1;
    }

    /// Notes a change whose loss in a crash is harmless: an offer (or its
    /// withdrawal). A lost offer only means the client's REQUEST is NAKed (it
    /// was not offered, as far as the table knows) and the client starts
    /// over with a DISCOVER, so OFFERs need not wait for a flush.
    fn record_volatile_change(&mut self, slot: Slot) {
        self.changed.push(slot);
    }

    /// The spec's event table for a binding being reconfigured: DISCOVER drops, REQUEST
    /// (renew, rebind, init-reboot, selecting) is NAKed, RELEASE / DECLINE end silently; the
    /// binding is deleted in every case. None: the client has no such binding.
    fn reconfiguring(
        &mut self,
        now: u32,
        kind: MessageType,
        msg: &Message<'_>,
        sum: &Summary<'_>,
        key: &ClientKey,
        out: &mut [u8],
    ) -> Option<Decision> {
        let (slot, l) = self.shared.table.find_client(key)?;
        if !reconfigure::is_reconfiguring(&l) || !binding::same_hw(&l, msg) {
            return None;
        }
        let deleted = self.shared.table.update(slot, |l| {
            l.client == *key && reconfigure::delete_binding(l, now)
        });
        if !deleted {
            return None;
        }
        self.record_change(slot);
        let st = self.stats.clone();
        Some(match kind {
            MessageType::Request => {
                EngineStats::inc(&st.reconfiguring_naked);
                let d = self.nak(msg, sum, "reconfigure: start over with DISCOVER", out);
                // A RENEWING client (ciaddr, no relay) that FORCERENEW woke listens on its
                // address only (dhcpcd closes its raw socket once bound): the NAK goes there,
                // where RFC 2131 §4.1 would broadcast it, or the client would not see it and
                // keep its dead address until rebinding.
                let ciaddr = msg.ciaddr();
                match d {
                    Decision::Reply {
                        len,
                        kind,
                        to: Delivery::Broadcast,
                    } if !ciaddr.is_unspecified() => Decision::Reply {
                        len,
                        kind,
                        to: Delivery::Unicast(ciaddr),
                    },
                    d => d,
                }
            }
            MessageType::Discover => self.silent(&st.reconfiguring_dropped, Silence::Reconfiguring),
            _ => {
                EngineStats::inc(&st.reconfiguring_ended);
                Decision::Silent(Silence::NoReplyExpected)
            }
        })
    }

    /// Whether changes since the last call must be durable before replies
    /// leave; resets the flag.
    pub fn take_needs_commit(&mut self) -> bool {
        std::mem::take(&mut self.needs_commit)
    }

    /// How many changes that must be durable this engine has made since it started.
    pub fn durable_changes(&self) -> u64 {
        self.durable_changes
    }

    /// Binds `slot` to `key` as Offered (held until `hold`) or Active (for
    /// the granted time), if `may_take` allows it under the record lock.
    /// Returns the lease seconds granted (for option 51).
    #[allow(clippy::too_many_arguments)]
    fn take(
        &mut self,
        slot: Slot,
        key: &ClientKey,
        msg: &Message<'_>,
        sum: &Summary<'_>,
        state: LeaseState,
        now: u32,
        desired: u32,
        hold: u32,
    ) -> Option<u32> {
        let addr = self.shared.table.addr_of(slot);
        if self.shared.reserved_for_other(addr, key) || self.registered_for_other(addr, key) {
            return None;
        }
        let pol = self.pol;
        let var = self.var_for(sum, state);
        // A BOOTREQUEST binds permanently (`bootp.rs`).
        let bootp = self.bootp_msg && state == LeaseState::Active;
        // RFC 6704: a client that can take a reconfigure key gets one with its ACK.
        let keyed = state == LeaseState::Active
            && !bootp
            && self.shared.reconf.as_ref().is_some_and(|r| r.policy.nonce)
            && self.nonce_capable;
        let own_only = self.own_only_pool(self.shared.table.pool_of_slot(slot));
        let (r, changed) = self.shared.table.update_var(slot, |l, ve| {
            if !may_take(l, key, now, pol.as_ref(), own_only) {
                return None;
            }
            if bootp {
                binding::bind_bootp(l, key, msg, now, ve, var);
                return Some((lease_store::EXPIRY_PERMANENT, same_hw(l, msg)));
            }
            let secs = bind_granted(
                l,
                key,
                msg,
                state,
                now,
                desired,
                hold,
                pol.as_ref(),
                ve,
                var,
            );
            if state == LeaseState::Active {
                // A fresh binding or renewal is no longer being reconfigured.
                l.flags &= !lease_store::FLAG_RECONFIGURING;
                if keyed {
                    l.flags |= lease_store::FLAG_RECONF_KEY;
                } else {
                    l.flags &= !lease_store::FLAG_RECONF_KEY;
                }
            }
            Some((secs, same_hw(l, msg)))
        });
        if r.is_some() && state == LeaseState::Active && !bootp {
            if let Some(rc) = &self.shared.reconf {
                rc.book.note(slot, msg.xid(), msg.giaddr());
                if keyed {
                    let k = rc.keys.key_for(key, addr);
                    self.reconf_key = Some((k, u64::from(now) << 32));
                }
            }
        }
        let r = r.map(|(secs, hw)| {
            self.hw_is_bindings = hw;
            secs
        });
        if r.is_some() {
            if state == LeaseState::Offered {
                // Re-offering a client its unexpired lease leaves the record as it was: no
                // flush, and no binding update for a failover partner.
                if changed {
                    self.record_volatile_change(slot);
                }
            } else {
                // Even an unchanged ACK is noted: its reply must wait for the flush that
                // makes the earlier, identical write durable.
                self.record_change(slot);
            }
        }
        r
    }
}

impl Engine {
    /// The message's variable data and its handle (computed on the first call per message).
    #[inline]
    fn msg_var<'m>(&mut self, sum: &Summary<'m>) -> binding::MsgVar<'m> {
        let parts = var_parts(sum);
        let r = *self.var_ref.get_or_insert_with(|| VarRef::of(parts));
        binding::MsgVar {
            r,
            parts,
            offer_only: false,
        }
    }

    /// What a record in `state` stores of the message's variable data. An OFFER stores
    /// them only when the lease caps are on (they count offered records by option 82
    /// whole); else at most option 82 inline, as before variable-length data: leasequery,
    /// binding updates (offers are not sent), the event log and reconfiguration read bound
    /// leases, so the side area is written by the REQUEST that binds the lease, and a
    /// DISCOVER pays neither the handle's CRC-32C nor a side write.
    #[inline]
    fn var_for<'m>(&mut self, sum: &Summary<'m>, state: LeaseState) -> binding::MsgVar<'m> {
        if state == LeaseState::Offered && !self.shared.caps.as_ref().is_some_and(|c| c.active()) {
            let parts = var_parts(sum);
            return binding::MsgVar {
                r: VarRef::inline(parts.relay_agent_info()).unwrap_or(VarRef::EMPTY),
                parts,
                offer_only: true,
            };
        }
        self.msg_var(sum)
    }
}

/// Option 82 (whole), host name and vendor class of a message, borrowed.
#[inline]
fn var_parts<'m>(sum: &Summary<'m>) -> VarParts<'m> {
    VarParts::new(
        sum.relay_agent_info.unwrap_or_default(),
        sum.host_name.unwrap_or_default(),
        sum.vendor_class.unwrap_or_default(),
    )
}

/// The lease-table key of a reserved client.
fn reservation_key(k: &ReservationKey) -> ClientKey {
    match k {
        ReservationKey::Hw(mac) => ClientKey::from_hw(1, mac),
        ReservationKey::ClientId(id) => ClientKey::from_client_id(id),
    }
}

/// Client identity: option 61 if present, else (htype, chaddr).
pub fn client_key(msg: &Message<'_>, sum: &Summary<'_>) -> ClientKey {
    match sum.client_id {
        Some(id) => ClientKey::from_client_id(id),
        None => ClientKey::from_hw(msg.htype(), msg.chaddr()),
    }
}

/// The lease time to grant: the client's wish clamped to [min, max], else the default.
pub fn lease_time(t: &LeaseTimes, requested: Option<u32>) -> u32 {
    match requested {
        Some(r) => r.clamp(t.min, t.max),
        None => t.default,
    }
}
