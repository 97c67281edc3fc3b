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

use std::collections::HashMap;
use std::net::Ipv4Addr;
use std::sync::Arc;

use lease_store::{Alloc, ClientKey, Lease, LeaseState, LeaseTable, Owner, Slot};
use xdhcpd_failover::{Admission, BindingStatus, FailoverPolicy, PolicyCell, RequestKind, Role};

use super::delivery::Delivery;
use super::leasequery::{self, Unanswered};
use super::stats::EngineStats;
use super::wire::{self, opt, Message, MessageType, ReplyWriter, Summary};
use xdhcpd_config::{Config, LeaseTimes, ReservationKey, Subnet};

/// Largest DHCP payload we send when the client states no limit (RFC 2131:
/// 576-byte IP datagrams minus IP and UDP headers).
const DEFAULT_MAX_PAYLOAD: usize = 576 - 28;

/// What the engine shares across workers: read-mostly, set up at start.
pub struct EngineShared {
    pub config: Arc<Config>,
    pub table: Arc<LeaseTable>,
    /// Server identifier (option 54) and source address of replies.
    pub server_id: Ipv4Addr,
    /// Reservations: client key -> (subnet index, address).
    reservations: HashMap<ClientKey, (usize, Ipv4Addr)>,
    /// Pool id -> subnet index.
    pool_subnet: HashMap<u32, usize>,
    /// Published by the failover driver; None = standalone server.
    pub failover: Option<Arc<PolicyCell>>,
}

impl EngineShared {
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
        EngineShared {
            config,
            table,
            server_id,
            reservations,
            pool_subnet,
            failover: None,
        }
    }

    /// Makes the engines obey a failover relationship's policy.
    pub fn with_failover(mut self, cell: Arc<PolicyCell>) -> Self {
        self.failover = Some(cell);
        self
    }

    /// Marks reserved addresses that lie inside pools so allocation never
    /// hands them to another client. Call once at start.
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
    pub src_ip: Ipv4Addr,
    pub dst_ip: Ipv4Addr,
}

/// Why no reply was sent.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Silence {
    Malformed,
    NotRequest,
    NoSubnet,
    PoolExhausted,
    OtherServer,
    UnknownClient,
    /// The failover state or load balancing says the partner answers.
    Failover,
    /// RELEASE / DECLINE: applied, no reply by design.
    NoReplyExpected,
    NoRoom,
    /// A DHCPLEASEQUERY not from a relay agent (giaddr 0), or naming no
    /// address, MAC or client identifier (RFC 4388).
    LeaseQueryRefused,
}

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Decision {
    Reply {
        len: usize,
        kind: MessageType,
        to: Delivery,
    },
    Silent(Silence),
}

pub struct Engine {
    shared: Arc<EngineShared>,
    shard: usize,
    stats: Arc<EngineStats>,
    /// Slots changed since the last `take_changed` (group commit, failover).
    changed: Vec<Slot>,
    /// Some change since the last `take_needs_commit` must be durable.
    needs_commit: bool,
    /// Failover policy and admission of the message being handled.
    pol: Option<FailoverPolicy>,
    admission: Admission,
    /// Option 82 of the message being handled, stored with the binding so
    /// binding updates can carry it (first 23 bytes; byte 0 = length).
    relay_info: [u8; 24],
}

/// Failover binding status of a record offered to a *new* client.
// TODO(lead): a second LeaseState -> BindingStatus map. This one reads Declined as Expired,
// the failover driver's (`userspace/src/failover/convert.rs`) as Abandoned; the map is being
// unified in the failover crate, after which this function should call it.
fn binding_status(l: &Lease, now: u32) -> BindingStatus {
    match l.state {
        LeaseState::Free => BindingStatus::Free,
        LeaseState::Backup => BindingStatus::Backup,
        LeaseState::Released => BindingStatus::Released,
        LeaseState::Expired | LeaseState::Declined => BindingStatus::Expired,
        LeaseState::Offered | LeaseState::Active if l.expiry <= now => BindingStatus::Expired,
        LeaseState::Offered | LeaseState::Active | LeaseState::Reserved => BindingStatus::Active,
        LeaseState::Abandoned => BindingStatus::Abandoned,
    }
}

/// May `key` take this record now, under the failover policy `pol`?
/// The client's own binding is not an allocation; anything else is, and
/// must pass `may_allocate` (own pool; the partner's only in PARTNER-DOWN
/// after MCLT; expired/released only after the partner acknowledged them).
fn may_take(l: &Lease, key: &ClientKey, now: u32, pol: Option<&FailoverPolicy>) -> bool {
    if !can_take(l, key, now) {
        return false;
    }
    let own = l.client == *key && l.state.binds_client();
    match pol {
        None => true,
        Some(_) if own => true,
        Some(p) => p.may_allocate(
            now,
            binding_status(l, now),
            l.expiry.max(l.potential_expiry),
        ),
    }
}

/// Lease time granted: the configured choice, capped by the MCLT rule when
/// in a failover relationship. Returns (seconds, expiry, potential expiry).
fn grant(pol: Option<&FailoverPolicy>, now: u32, desired: u32, acked: u32) -> (u32, u32, u32) {
    match pol {
        None => (
            desired,
            now.saturating_add(desired),
            now.saturating_add(desired),
        ),
        Some(p) => {
            let g = p.lease_time_allowed(now, desired, acked);
            (g.lease_secs, g.lease_expiry, g.potential_expiry)
        }
    }
}

/// Failover's view of the request kind (for admission).
fn request_kind(
    kind: MessageType,
    msg: &Message<'_>,
    sum: &Summary<'_>,
    meta: &RxMeta,
) -> RequestKind {
    match kind {
        MessageType::Discover => RequestKind::Discover,
        MessageType::Release => RequestKind::Release,
        MessageType::Decline => RequestKind::Decline,
        MessageType::Inform => RequestKind::Inform,
        _ if sum.server_id.is_some() => RequestKind::RequestSelecting,
        _ if msg.ciaddr().is_unspecified() => RequestKind::RequestInitReboot,
        _ if meta.dst_ip.is_broadcast() => RequestKind::Rebind,
        _ => RequestKind::Renew,
    }
}

/// A lease that holds its address for a client at `now`.
fn is_bound(l: &Lease, now: u32) -> bool {
    match l.state {
        LeaseState::Active | LeaseState::Offered => l.expiry > now,
        LeaseState::Reserved | LeaseState::Declined | LeaseState::Abandoned => true,
        _ => false,
    }
}

/// The free state of an address owned by `owner` (failover: FREE or BACKUP).
fn free_state(owner: Owner) -> LeaseState {
    match owner {
        Owner::Primary => LeaseState::Free,
        Owner::Backup => LeaseState::Backup,
    }
}

/// `bind` with the failover lease-time rule; returns the lease seconds.
#[allow(clippy::too_many_arguments)]
fn bind_granted(
    l: &mut Lease,
    key: &ClientKey,
    msg: &Message<'_>,
    state: LeaseState,
    now: u32,
    desired: u32,
    hold: u32,
    pol: Option<&FailoverPolicy>,
    relay: &[u8; 24],
) -> u32 {
    if l.state == LeaseState::Backup {
        l.owner = Owner::Backup;
    } else if l.state == LeaseState::Free {
        l.owner = Owner::Primary;
    }
    let (secs, expiry, potential) = grant(pol, now, desired, l.acked_potential_expiry);
    // A renewal unicast by the client itself carries no option 82: the one
    // stored from its relayed messages stays (leasequery and BNDUPD need it).
    let keep_relay = relay[0] == 0
        && msg.giaddr().is_unspecified()
        && l.client == *key
        && l.state.binds_client();
    if state == LeaseState::Offered {
        bind(l, key, msg, state, now, hold);
    } else {
        bind(l, key, msg, state, now, expiry);
        l.potential_expiry = potential;
        if !keep_relay {
            l.extra[..24].copy_from_slice(relay);
        }
    }
    secs
}

/// Writes the binding of `key` into a record the caller may take.
fn bind(
    l: &mut Lease,
    key: &ClientKey,
    msg: &Message<'_>,
    state: LeaseState,
    now: u32,
    expiry: u32,
) {
    // Re-offering an unexpired Active lease keeps it Active with its expiry.
    if state == LeaseState::Offered
        && l.client == *key
        && l.state == LeaseState::Active
        && l.expiry > now
    {
        return;
    }
    l.state = state;
    l.client = *key;
    l.htype = msg.htype();
    l.hlen = msg.hlen();
    l.chaddr = *msg.chaddr_field();
    l.expiry = expiry;
    if state == LeaseState::Active {
        l.start = now;
        l.cltt = now;
        l.lease_time = expiry.saturating_sub(now);
    }
}

/// May this record be given to `key` now? Free-able, or already `key`'s.
fn can_take(l: &Lease, key: &ClientKey, now: u32) -> bool {
    match l.state {
        LeaseState::Free | LeaseState::Released | LeaseState::Expired => true,
        LeaseState::Active | LeaseState::Offered => l.client == *key || l.expiry <= now,
        // Quarantine applies to everyone, the decliner included.
        LeaseState::Declined => l.expiry <= now,
        LeaseState::Reserved => l.client == *key,
        // A backup-owned free address: whether this server may use it is
        // the failover policy's call (`may_take`).
        LeaseState::Backup => true,
        LeaseState::Abandoned => false,
    }
}

impl Engine {
    pub fn new(shared: Arc<EngineShared>, shard: usize, stats: Arc<EngineStats>) -> Self {
        Engine {
            shared,
            shard,
            stats,
            changed: Vec::with_capacity(256),
            needs_commit: false,
            pol: None,
            admission: Admission::Serve,
            relay_info: [0; 24],
        }
    }

    pub fn shared(&self) -> &Arc<EngineShared> {
        &self.shared
    }

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
        let msg = match Message::new_checked(payload) {
            Ok(m) => m,
            Err(_) => return self.silent(&st.malformed, Silence::Malformed),
        };
        if msg.op() != wire::OP_BOOTREQUEST {
            return self.silent(&st.not_request, Silence::NotRequest);
        }
        let sum = match msg.summary() {
            Ok(s) => s,
            Err(_) => return self.silent(&st.malformed, Silence::Malformed),
        };
        let Some(kind) = sum.message_type else {
            // BOOTP is refused (carrier deployments assign by DHCP only).
            return self.silent(&st.not_request, Silence::NotRequest);
        };
        // A leasequery only reads the table: every failover state and every
        // load-balancing bucket answers it, so it goes before admission.
        if kind == MessageType::LeaseQuery {
            return self.leasequery(now, &msg, &sum, out);
        }
        let key = client_key(&msg, &sum);
        self.pol = self.shared.failover.as_ref().map(|c| c.load());
        self.admission = Admission::Serve;
        if let Some(pol) = &self.pol {
            let hash_key = sum.client_id.unwrap_or(msg.chaddr());
            self.admission = pol.admit(request_kind(kind, &msg, &sum, meta), hash_key, msg.secs());
            if let Admission::Drop(_) = self.admission {
                return self.silent(&st.failover_dropped, Silence::Failover);
            }
        }
        self.relay_info = [0; 24];
        if let Some(ri) = sum.relay_agent_info.filter(|r| r.len() <= 23) {
            self.relay_info[0] = ri.len() as u8;
            self.relay_info[1..1 + ri.len()].copy_from_slice(ri);
        }
        match kind {
            MessageType::Discover => {
                EngineStats::inc(&st.discovers);
                self.discover(now, meta, &msg, &sum, &key, out)
            }
            MessageType::Request => {
                EngineStats::inc(&st.requests);
                self.request(now, meta, &msg, &sum, &key, out)
            }
            MessageType::Decline => self.decline(now, &sum, &key),
            MessageType::Release => self.release(now, &msg, &sum, &key),
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

    fn subnet_of_slot(&self, slot: Slot) -> Option<usize> {
        let pool = self.shared.table.pool_of_slot(slot);
        self.shared.pool_subnet.get(&pool).copied()
    }

    /// Notes a changed record that must be durable before the reply leaves
    /// (ack mode): a binding, a renewal, a release, a decline.
    fn record_change(&mut self, slot: Slot) {
        self.changed.push(slot);
        self.needs_commit = true;
    }

    /// Notes a change whose loss in a crash is harmless: an offer (or its
    /// withdrawal). A lost offer only means the client's REQUEST finds the
    /// address free and takes it then, so OFFERs need not wait for a flush.
    fn record_volatile_change(&mut self, slot: Slot) {
        self.changed.push(slot);
    }

    /// Whether changes since the last call must be durable before replies
    /// leave; resets the flag.
    pub fn take_needs_commit(&mut self) -> bool {
        std::mem::take(&mut self.needs_commit)
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
        state: LeaseState,
        now: u32,
        desired: u32,
        hold: u32,
    ) -> Option<u32> {
        let pol = self.pol;
        let relay = self.relay_info;
        let (r, changed) = self.shared.table.update_tracked(slot, |l| {
            if !may_take(l, key, now, pol.as_ref()) {
                return None;
            }
            Some(bind_granted(
                l,
                key,
                msg,
                state,
                now,
                desired,
                hold,
                pol.as_ref(),
                &relay,
            ))
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

    fn discover(
        &mut self,
        now: u32,
        meta: &RxMeta,
        msg: &Message<'_>,
        sum: &Summary<'_>,
        key: &ClientKey,
        out: &mut [u8],
    ) -> Decision {
        let st = self.stats.clone();
        let Some(subnet) = self.select_subnet(meta, msg, sum) else {
            return self.silent(&st.no_subnet, Silence::NoSubnet);
        };
        let subnet_index = subnet.index;
        let hold = now.saturating_add(subnet.times.offer_hold);
        let desired = lease_time(&subnet.times, sum.lease_time);

        let chosen = match self.shared.reservations.get(key) {
            Some(&(si, ip)) if si == subnet_index => {
                let granted = match self.shared.table.slot_of(ip) {
                    Some(slot) => {
                        self.take(slot, key, msg, LeaseState::Offered, now, desired, hold)
                    }
                    None => Some(grant(self.pol.as_ref(), now, desired, 0).0),
                };
                granted.map(|g| (ip, g))
            }
            _ => self.choose_address(now, msg, sum, key, subnet_index, desired, hold),
        };
        let Some((addr, lease)) = chosen else {
            return self.silent(&st.pool_exhausted, Silence::PoolExhausted);
        };
        let subnet = &self.shared.config.subnets[subnet_index];
        self.reply(
            MessageType::Offer,
            msg,
            sum,
            subnet,
            addr,
            Some(lease),
            Ipv4Addr::UNSPECIFIED,
            out,
        )
    }

    /// RFC 2131 §4.3.1 order: the client's current or previous binding, the
    /// requested address if free, else a new address from the pools.
    #[allow(clippy::too_many_arguments)]
    fn choose_address(
        &mut self,
        now: u32,
        msg: &Message<'_>,
        sum: &Summary<'_>,
        key: &ClientKey,
        subnet_index: usize,
        desired: u32,
        hold: u32,
    ) -> Option<(Ipv4Addr, u32)> {
        let table = self.shared.table.clone();
        if let Some((slot, _)) = table.find_client(key) {
            if self.subnet_of_slot(slot) == Some(subnet_index) {
                if let Some(g) = self.take(slot, key, msg, LeaseState::Offered, now, desired, hold)
                {
                    return Some((table.addr_of(slot), g));
                }
            }
        }
        if let Some(ip) = sum.requested_ip {
            if let Some(slot) = table.slot_of(ip) {
                if self.subnet_of_slot(slot) == Some(subnet_index) {
                    if let Some(g) =
                        self.take(slot, key, msg, LeaseState::Offered, now, desired, hold)
                    {
                        return Some((ip, g));
                    }
                }
            }
        }
        // Which free lists this server may draw from: its own (primary FREE,
        // secondary BACKUP), and in PARTNER-DOWN also the partner's.
        let (own, other) = match self.pol.map(|p| (p.role, p.state)) {
            None | Some((Role::Primary, _)) => (Owner::Primary, Owner::Backup),
            Some((Role::Secondary, _)) => (Owner::Backup, Owner::Primary),
        };
        let partner_down = self
            .pol
            .is_some_and(|p| p.state == xdhcpd_failover::ServerState::PartnerDown);
        let pol = self.pol;
        let relay = self.relay_info;
        let n = self.shared.config.subnets[subnet_index].pools.len();
        for owner in [Some(own), partner_down.then_some(other)]
            .into_iter()
            .flatten()
        {
            for i in 0..n {
                let pool_id = self.shared.config.subnets[subnet_index].pools[i].id;
                // `allocate_if` re-checks freedom under the record lock and
                // binds there, so no other worker can take it in between.
                // A refused record (failover rules) goes back to its list;
                // bounded retries keep the per-packet cost bounded.
                for _ in 0..16 {
                    match table.allocate_if(pool_id, self.shard, now, owner, |l| {
                        if !may_take(l, key, now, pol.as_ref()) {
                            return None;
                        }
                        Some(bind_granted(
                            l,
                            key,
                            msg,
                            LeaseState::Offered,
                            now,
                            desired,
                            hold,
                            pol.as_ref(),
                            &relay,
                        ))
                    }) {
                        Alloc::Taken(slot, g) => {
                            self.record_volatile_change(slot);
                            return Some((table.addr_of(slot), g));
                        }
                        Alloc::Refused => continue,
                        Alloc::Empty => break,
                    }
                }
            }
        }
        None
    }

    fn request(
        &mut self,
        now: u32,
        meta: &RxMeta,
        msg: &Message<'_>,
        sum: &Summary<'_>,
        key: &ClientKey,
        out: &mut [u8],
    ) -> Decision {
        let st = self.stats.clone();
        let server_id = self.shared.server_id;
        let ciaddr = msg.ciaddr();

        // SELECTING: the client names the server it chose.
        if let Some(sid) = sum.server_id {
            if sid != server_id {
                // Chose another server: withdraw our offer, stay silent.
                if let Some((slot, _)) = self.shared.table.find_client(key) {
                    let withdrawn = self.shared.table.update(slot, |l| {
                        if l.client == *key && l.state == LeaseState::Offered {
                            l.state = free_state(l.owner);
                            true
                        } else {
                            false
                        }
                    });
                    if withdrawn {
                        self.record_volatile_change(slot);
                    }
                }
                return self.silent(&st.other_server, Silence::OtherServer);
            }
            let Some(ip) = sum
                .requested_ip
                .or((!ciaddr.is_unspecified()).then_some(ciaddr))
            else {
                return self.nak(msg, sum, "no requested address", out);
            };
            return self.confirm(now, meta, msg, sum, key, ip, true, out);
        }
        // INIT-REBOOT: requested address, no ciaddr.
        if let Some(ip) = sum.requested_ip {
            if ciaddr.is_unspecified() {
                return self.confirm(now, meta, msg, sum, key, ip, false, out);
            }
        }
        // RENEWING (unicast) / REBINDING (broadcast): ciaddr set.
        if !ciaddr.is_unspecified() {
            return self.confirm(now, meta, msg, sum, key, ciaddr, false, out);
        }
        self.nak(msg, sum, "request without address", out)
    }

    /// Binds `ip` to the client and ACKs, or NAKs / stays silent per §4.3.2.
    #[allow(clippy::too_many_arguments)]
    fn confirm(
        &mut self,
        now: u32,
        meta: &RxMeta,
        msg: &Message<'_>,
        sum: &Summary<'_>,
        key: &ClientKey,
        ip: Ipv4Addr,
        selecting: bool,
        out: &mut [u8],
    ) -> Decision {
        let st = self.stats.clone();
        let Some(subnet) = self.select_subnet(meta, msg, sum) else {
            return self.silent(&st.no_subnet, Silence::NoSubnet);
        };
        let subnet_index = subnet.index;
        let authoritative = subnet.times.authoritative;
        // Wrong network for the client's link.
        if !subnet.net.contains(ip) {
            return if authoritative {
                self.nak(msg, sum, "address not on this network", out)
            } else {
                self.silent(&st.unknown_client, Silence::UnknownClient)
            };
        }
        let desired = lease_time(&subnet.times, sum.lease_time);

        let reserved = matches!(self.shared.reservations.get(key), Some(&(si, rip)) if si == subnet_index && rip == ip);
        let table = self.shared.table.clone();
        let lease = match table.slot_of(ip) {
            Some(slot) if self.subnet_of_slot(slot) == Some(subnet_index) => {
                let known = table.read(slot);
                let ours = known.client == *key && known.state != LeaseState::Free;
                if !ours {
                    if !may_take(&known, key, now, self.pol.as_ref()) {
                        return self.nak(msg, sum, "address in use", out);
                    }
                    // RFC 2131 §4.3.2: no record of an INIT-REBOOT/RENEW
                    // client -> silent, unless we are authoritative for the
                    // link, in which case a free address is granted (this
                    // keeps clients whose lease we lost from churning).
                    if !selecting && !authoritative {
                        return self.silent(&st.unknown_client, Silence::UnknownClient);
                    }
                }
                match self.take(slot, key, msg, LeaseState::Active, now, desired, 0) {
                    Some(g) => g,
                    None => return self.nak(msg, sum, "address in use", out),
                }
            }
            Some(_) => return self.nak(msg, sum, "address belongs to another subnet", out),
            None if reserved => grant(self.pol.as_ref(), now, desired, 0).0,
            None => {
                // Inside the subnet but outside every pool and not reserved.
                return if authoritative {
                    self.nak(msg, sum, "address not in any pool", out)
                } else {
                    self.silent(&st.unknown_client, Silence::UnknownClient)
                };
            }
        };
        let subnet = &self.shared.config.subnets[subnet_index];
        self.reply(
            MessageType::Ack,
            msg,
            sum,
            subnet,
            ip,
            Some(lease),
            msg.ciaddr(),
            out,
        )
    }

    fn decline(&mut self, now: u32, sum: &Summary<'_>, key: &ClientKey) -> Decision {
        let st = self.stats.clone();
        if sum.server_id.is_some_and(|s| s != self.shared.server_id) {
            return self.silent(&st.other_server, Silence::OtherServer);
        }
        let Some(ip) = sum.requested_ip else {
            return self.silent(&st.malformed, Silence::Malformed);
        };
        let table = self.shared.table.clone();
        let Some(slot) = table.slot_of(ip) else {
            return self.silent(&st.unknown_client, Silence::UnknownClient);
        };
        let quarantine = self
            .subnet_of_slot(slot)
            .map(|s| self.shared.config.subnets[s].times.decline_quarantine)
            .unwrap_or(self.shared.config.lease.decline_quarantine);
        // Someone else answers ARP for it: keep it out of use.
        self.end_binding(
            slot,
            key,
            &[LeaseState::Offered, LeaseState::Active],
            LeaseState::Declined,
            now.saturating_add(quarantine),
            &st.declines,
        )
    }

    /// Moves `key`'s binding in `slot` from one of `from` to `to` (expiring at
    /// `expiry`), counts it in `counter`; silent either way (RELEASE and
    /// DECLINE get no reply). Someone else's binding is left alone.
    fn end_binding(
        &mut self,
        slot: Slot,
        key: &ClientKey,
        from: &[LeaseState],
        to: LeaseState,
        expiry: u32,
        counter: &std::sync::atomic::AtomicU64,
    ) -> Decision {
        let done = self.shared.table.update(slot, |l| {
            if l.client == *key && from.contains(&l.state) {
                l.state = to;
                l.expiry = expiry;
                true
            } else {
                false
            }
        });
        if !done {
            return self.silent(&self.stats.unknown_client, Silence::UnknownClient);
        }
        self.record_change(slot);
        EngineStats::inc(counter);
        Decision::Silent(Silence::NoReplyExpected)
    }

    fn release(
        &mut self,
        now: u32,
        msg: &Message<'_>,
        sum: &Summary<'_>,
        key: &ClientKey,
    ) -> Decision {
        let st = self.stats.clone();
        if sum.server_id.is_some_and(|s| s != self.shared.server_id) {
            return self.silent(&st.other_server, Silence::OtherServer);
        }
        let table = self.shared.table.clone();
        let Some(slot) = table.slot_of(msg.ciaddr()) else {
            return self.silent(&st.unknown_client, Silence::UnknownClient);
        };
        // The client keeps its identity on the record so it gets the same
        // address back if it returns soon (RFC 2131 §4.3.1).
        self.end_binding(
            slot,
            key,
            &[LeaseState::Active],
            LeaseState::Released,
            now,
            &st.releases,
        )
    }

    fn inform(
        &mut self,
        meta: &RxMeta,
        msg: &Message<'_>,
        sum: &Summary<'_>,
        out: &mut [u8],
    ) -> Decision {
        let st = self.stats.clone();
        let ciaddr = msg.ciaddr();
        // The client's own address identifies its subnet (RFC 2131 §4.3.5).
        let link = if ciaddr.is_unspecified() {
            meta.src_ip
        } else {
            ciaddr
        };
        let subnet = self
            .shared
            .config
            .subnet_for(link)
            .or_else(|| self.select_subnet(meta, msg, sum));
        let Some(subnet) = subnet else {
            return self.silent(&st.no_subnet, Silence::NoSubnet);
        };
        let subnet_index = subnet.index;
        let subnet = &self.shared.config.subnets[subnet_index];
        self.reply(
            MessageType::Ack,
            msg,
            sum,
            subnet,
            Ipv4Addr::UNSPECIFIED,
            None,
            ciaddr,
            out,
        )
    }

    fn nak(&mut self, msg: &Message<'_>, sum: &Summary<'_>, why: &str, out: &mut [u8]) -> Decision {
        let st = self.stats.clone();
        let Ok(mut w) = ReplyWriter::new(out, msg, DEFAULT_MAX_PAYLOAD) else {
            return self.silent(&st.no_room, Silence::NoRoom);
        };
        let giaddr = msg.giaddr();
        // NAK via a relay: the relay must broadcast it (RFC 2131 §4.1).
        if !giaddr.is_unspecified() {
            w.set_flags(msg.flags() | wire::FLAG_BROADCAST);
        }
        let r = w
            .option(opt::MESSAGE_TYPE, &[MessageType::Nak as u8])
            .and_then(|_| w.option_ip(opt::SERVER_ID, self.shared.server_id));
        if r.is_err() {
            return self.silent(&st.no_room, Silence::NoRoom);
        }
        w.option_if_room(opt::MESSAGE, why.as_bytes());
        if let Some(ri) = sum.relay_agent_info {
            w.option_if_room(opt::RELAY_AGENT_INFO, ri);
        }
        let len = w.finish();
        EngineStats::inc(&st.naks);
        let to = if giaddr.is_unspecified() {
            Delivery::Broadcast
        } else {
            Delivery::Relay(giaddr)
        };
        Decision::Reply {
            len,
            kind: MessageType::Nak,
            to,
        }
    }

    /// Builds an OFFER or ACK. `lease` is None for INFORM (no lease options).
    #[allow(clippy::too_many_arguments)]
    fn reply(
        &self,
        kind: MessageType,
        msg: &Message<'_>,
        sum: &Summary<'_>,
        subnet: &Subnet,
        yiaddr: Ipv4Addr,
        lease: Option<u32>,
        ciaddr: Ipv4Addr,
        out: &mut [u8],
    ) -> Decision {
        let st = &self.stats;
        let limit = sum
            .max_message_size
            .map(|m| (m as usize).saturating_sub(28))
            .unwrap_or(DEFAULT_MAX_PAYLOAD);
        let Ok(mut w) = ReplyWriter::new(out, msg, limit) else {
            EngineStats::inc(&st.no_room);
            return Decision::Silent(Silence::NoRoom);
        };
        w.set_yiaddr(yiaddr);
        if kind == MessageType::Ack && !ciaddr.is_unspecified() {
            w.set_ciaddr(ciaddr);
        }
        if let Some(ns) = subnet.next_server {
            w.set_siaddr(ns);
        }
        if let Some(file) = &subnet.boot_file {
            w.set_file(file.as_bytes());
        }
        let mut r = w
            .option(opt::MESSAGE_TYPE, &[kind as u8])
            .and_then(|_| w.option_ip(opt::SERVER_ID, self.shared.server_id));
        if let Some(lease) = lease {
            let t1 = (lease as f64 * subnet.times.renewal_factor) as u32;
            let mut t2 = (lease as f64 * subnet.times.rebinding_factor) as u32;
            if let Some(p) = &self.pol {
                t2 = p.rebind_time(self.admission, t1, t2);
            }
            r = r
                .and_then(|_| w.option_u32(opt::LEASE_TIME, lease))
                .and_then(|_| w.option_u32(opt::RENEWAL_TIME, t1))
                .and_then(|_| w.option_u32(opt::REBINDING_TIME, t2));
        }
        r = r.and_then(|_| w.option(opt::SUBNET_MASK, &subnet.net.mask().octets()));
        if r.is_err() {
            EngineStats::inc(&st.no_room);
            return Decision::Silent(Silence::NoRoom);
        }
        // Requested parameters in the client's order; without a list, all
        // configured options. Each code at most once.
        let mut sent = [0u64; 4];
        let mut mark = |c: u8| {
            let (i, b) = ((c >> 6) as usize, 1u64 << (c & 63));
            let fresh = sent[i] & b == 0;
            sent[i] |= b;
            fresh
        };
        for c in [
            opt::MESSAGE_TYPE,
            opt::SERVER_ID,
            opt::LEASE_TIME,
            opt::RENEWAL_TIME,
            opt::REBINDING_TIME,
            opt::SUBNET_MASK,
            opt::RELAY_AGENT_INFO,
        ] {
            mark(c);
        }
        match sum.parameter_list {
            Some(list) => {
                for &c in list {
                    if let Some(v) = subnet.options.get(c) {
                        if mark(c) {
                            w.option_if_room(c, v);
                        }
                    }
                }
            }
            None => {
                for c in subnet.options.codes() {
                    if let Some(v) = subnet.options.get(c) {
                        if mark(c) {
                            w.option_if_room(c, v);
                        }
                    }
                }
            }
        }
        // Option 82 goes back unchanged, last (RFC 3046 §2.2).
        if let Some(ri) = sum.relay_agent_info {
            if w.option(opt::RELAY_AGENT_INFO, ri).is_err() {
                EngineStats::inc(&st.no_room);
                return Decision::Silent(Silence::NoRoom);
            }
        }
        let len = w.finish();
        match kind {
            MessageType::Offer => EngineStats::inc(&st.offers),
            _ if lease.is_none() => {
                EngineStats::inc(&st.informs);
                EngineStats::inc(&st.acks)
            }
            _ => EngineStats::inc(&st.acks),
        }
        Decision::Reply {
            len,
            kind,
            to: delivery(msg, yiaddr, ciaddr),
        }
    }
}

/// RFC 2131 §4.1 delivery of OFFER/ACK.
fn delivery(msg: &Message<'_>, yiaddr: Ipv4Addr, ciaddr: Ipv4Addr) -> Delivery {
    let giaddr = msg.giaddr();
    if !giaddr.is_unspecified() {
        return Delivery::Relay(giaddr);
    }
    if !ciaddr.is_unspecified() {
        return Delivery::Unicast(ciaddr);
    }
    let chaddr = msg.chaddr();
    if msg.broadcast_flag() || yiaddr.is_unspecified() || msg.htype() != 1 || chaddr.len() != 6 {
        return Delivery::Broadcast;
    }
    let mut mac = [0u8; 6];
    mac.copy_from_slice(chaddr);
    Delivery::ToClient { ip: yiaddr, mac }
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
