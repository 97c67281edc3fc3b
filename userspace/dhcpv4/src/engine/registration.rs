//! Registrations as the engine sees them: a client registered by MAC or client identifier
//! is KNOWN and a member of its group (class); its fixed address is served to it; its
//! host-name, next-server, boot file and options go in the reply with the highest
//! precedence (registration > class > pool > subnet > shared network, `pools::Layers`).
//!
//! KNOWN, one notion: a client is KNOWN when it has a live registration (the store's
//! index, asked here) or a configured `[[host]]` / reservation (`classes::Registrations`).
//! Its group comes from the registration first, else from the configured host. The
//! registration is looked up once per message and fed into the class evaluation's
//! `ClientFacts`; `deny-unknown` (shared network, subnet, pool: `pools.rs`) asks the same.
//!
//! The engine does no IO: it asks a [`RegistrationView`] (the daemon's adapter over the
//! `xdhcpd-registrations` index) and copies what it needs into the engine's own fixed-size
//! scratch ([`RegHit`]): no lock, no allocation.
//!
//! One lookup per DORA: the answer is kept in a per-worker cache ([`RegCache`], direct
//! mapped, keyed by the message's client key and hardware key) stamped with the view's
//! change generation, read before the lookup. The REQUEST that follows a DISCOVER on the
//! same worker finds the DISCOVER's answer there and uses it while the generation is
//! unchanged; any change to the registrations (add, modify, remove, import) raises the
//! generation, so the next message of every client looks up again: a registration changed
//! or removed between DISCOVER and REQUEST takes effect at the REQUEST. A reload
//! (`Engine::set_shared`) empties the cache (the group's class is resolved at fill time).
//!
//! Reservations that move: a registered client with a fixed address in its subnet that
//! asks for another address (RENEWING, REBINDING, INIT-REBOOT, SELECTING) is NAKed
//! ("reservation moved"), so it comes back with a DISCOVER and is offered its fixed
//! address. A client whose registration was removed (and that no `[[host]]` names) is
//! UNKNOWN: it gets no answer under `deny-unknown` (its lease runs out); elsewhere it keeps its lease like any client. (FORCERENEW, to move
//! it at once, comes with the reconfigure work.)

use std::net::Ipv4Addr;

use lease_store::{ClientKey, LeaseState};
use xdhcpd_config::ClassId;

use crate::stats::EngineStats;
use crate::wire::{Message, Summary};

use super::binding::{grant, may_take};
use super::classes::ClientFacts;
use super::pools::HostLayer;
use super::Engine;

/// One registration, borrowed from the view for the duration of a lookup.
#[derive(Clone, Copy, Debug)]
pub struct Registered<'a> {
    /// The group (a class name).
    pub group: &'a str,
    /// The address this client always gets (when in its subnet).
    pub fixed_address: Option<Ipv4Addr>,
    /// `siaddr`.
    pub next_server: Option<Ipv4Addr>,
    /// The BOOTP `file` field (at most 127 bytes are used).
    pub boot_file: Option<&'a [u8]>,
    /// Options as DHCP TLVs (`code, len, value`...), host-name (12) among them; at most
    /// [`REG_OPTIONS_MAX`] bytes are used.
    pub options: &'a [u8],
}

/// Room for a registration's options in the engine's scratch.
pub const REG_OPTIONS_MAX: usize = 255;
/// Room for a group name.
pub const REG_GROUP_MAX: usize = 64;

/// What the engine asks about registrations. Implementations must not lock globally or
/// allocate per call: they run on every packet.
pub trait RegistrationView: Send + Sync {
    /// The change generation: must differ from every earlier value whenever an answer of
    /// [`RegistrationView::find`] may have changed since, and a caller that reads it before
    /// a `find` and reads the same value later may reuse that `find`'s answer (so raise it
    /// after the change is visible to `find`). The engine caches answers per client on it.
    fn generation(&self) -> u64;
    /// Calls `visit` with the registration `key` names (a client id key or a hardware
    /// key), if any; returns whether there was one.
    fn find(&self, key: &ClientKey, visit: &mut dyn FnMut(&Registered<'_>)) -> bool;
    /// Whether `addr` is the fixed address of a registration that is neither `key`'s nor
    /// `hw`'s.
    fn reserved_for_other(&self, addr: Ipv4Addr, key: &ClientKey, hw: &ClientKey) -> bool;
}

/// Slots of a worker's registration cache (a power of two). Between a client's DISCOVER
/// and its REQUEST a worker sees the messages of the clients whose exchanges overlap (the
/// offered load times the round trip); with 1,024 slots a REQUEST finds its DISCOVER's
/// answer unless another client took the slot in between (a lookup then, nothing worse).
pub(super) const CACHE_SLOTS: usize = 1024;

/// One message's registration, copied out of the view: the current message's, and a slot
/// of the worker's cache. Hot fields first (`repr(C)`): a cache probe reads one or two
/// lines, the payload only when it is used.
#[repr(C)]
pub(super) struct RegHit {
    /// The slot holds the answer for `key` / `hw` at generation `gen`.
    valid: bool,
    known: bool,
    file_len: u8,
    group_len: u8,
    opts_len: u8,
    /// The class the group names in the configuration the slot was filled under.
    class: Option<ClassId>,
    /// The view's generation read before the lookup.
    gen: u64,
    /// The message's client key (client id if sent, else hardware).
    key: ClientKey,
    /// The message's hardware key (htype, chaddr), looked up when the client id is not
    /// registered.
    hw: ClientKey,
    fixed: Option<Ipv4Addr>,
    next_server: Option<Ipv4Addr>,
    group: [u8; REG_GROUP_MAX],
    file: [u8; 128],
    opts: [u8; REG_OPTIONS_MAX],
}

impl Default for RegHit {
    fn default() -> Self {
        RegHit {
            valid: false,
            known: false,
            file_len: 0,
            group_len: 0,
            opts_len: 0,
            class: None,
            gen: 0,
            key: ClientKey::NONE,
            hw: ClientKey::NONE,
            fixed: None,
            next_server: None,
            group: [0; REG_GROUP_MAX],
            file: [0; 128],
            opts: [0; REG_OPTIONS_MAX],
        }
    }
}

/// A worker's registration answers: slot 0 is the answer when there is no view (never
/// known); slots 1..=[`CACHE_SLOTS`] the cache, allocated once, at the first lookup with a
/// view (never per packet).
pub(super) struct RegCache {
    slots: Vec<RegHit>,
    /// The current message's slot.
    cur: usize,
}

impl Default for RegCache {
    fn default() -> Self {
        RegCache {
            slots: vec![RegHit::default()],
            cur: 0,
        }
    }
}

impl RegCache {
    /// Forgets every answer (a reload: another view or other classes).
    pub(super) fn clear(&mut self) {
        for s in &mut self.slots {
            s.valid = false;
        }
    }
}

/// The cache slot of `key` (1..=CACHE_SLOTS): a multiplicative hash of its bytes.
#[inline]
fn slot_of(key: &ClientKey) -> usize {
    let mut h: u64 = 0xcbf2_9ce4_8422_2325;
    for c in key.as_bytes().chunks(8) {
        let mut w = [0u8; 8];
        w[..c.len()].copy_from_slice(c);
        h = (h ^ u64::from_le_bytes(w)).wrapping_mul(0x9e37_79b9_7f4a_7c15);
    }
    1 + ((h >> 40) as usize & (CACHE_SLOTS - 1))
}

impl RegHit {
    fn fill(&mut self, r: &Registered<'_>) {
        self.known = true;
        self.fixed = r.fixed_address;
        self.next_server = r.next_server;
        let f = r.boot_file.unwrap_or(&[]);
        let n = f.len().min(127);
        self.file[..n].copy_from_slice(&f[..n]);
        self.file_len = n as u8;
        let g = r.group.as_bytes();
        let n = g.len().min(REG_GROUP_MAX);
        self.group[..n].copy_from_slice(&g[..n]);
        self.group_len = n as u8;
        // Whole TLVs only.
        let mut n = 0;
        while n + 2 <= r.options.len() && n < REG_OPTIONS_MAX {
            let end = n + 2 + r.options[n + 1] as usize;
            if end > r.options.len() || end > REG_OPTIONS_MAX {
                break;
            }
            n = end;
        }
        self.opts[..n].copy_from_slice(&r.options[..n]);
        self.opts_len = n as u8;
    }
}

impl Engine {
    /// The current message's registration.
    #[inline]
    fn reg(&self) -> &RegHit {
        &self.reg.slots[self.reg.cur]
    }

    /// Looks the message's client up: by `key` (client id if sent, else hardware), then by
    /// its hardware address; from the worker's cache when the view has not changed since
    /// the answer was cached. Once per message, before dispatch.
    pub(super) fn lookup_registration(&mut self, msg: &Message<'_>, key: &ClientKey) {
        let Some(view) = self.shared.registrations.as_deref() else {
            self.reg.cur = 0;
            return;
        };
        let hw = ClientKey::from_hw(msg.htype(), msg.chaddr());
        // Read before the lookup: a change after this read raises it past `gen`.
        let gen = view.generation();
        if self.reg.slots.len() == 1 {
            self.reg.slots.resize_with(CACHE_SLOTS + 1, RegHit::default);
        }
        let i = slot_of(key);
        let Some(reg) = self.reg.slots.get_mut(i) else {
            self.reg.cur = 0;
            return;
        };
        if reg.valid && reg.gen == gen && reg.key == *key && reg.hw == hw {
            EngineStats::inc(&self.stats.registration_cache_hits);
            self.reg.cur = i;
            return;
        }
        EngineStats::inc(&self.stats.registration_lookups);
        reg.valid = false;
        reg.known = false;
        reg.class = None;
        reg.gen = gen;
        reg.key = *key;
        reg.hw = hw;
        let mut visit = |r: &Registered<'_>| reg.fill(r);
        if !view.find(key, &mut visit) && *key != hw {
            let mut visit = |r: &Registered<'_>| reg.fill(r);
            view.find(&hw, &mut visit);
        }
        if reg.known && reg.group_len > 0 {
            let g = &reg.group[..reg.group_len as usize];
            reg.class = self
                .shared
                .config
                .classes
                .iter()
                .find(|c| c.name.as_bytes() == g)
                .map(|c| c.id);
        }
        reg.valid = true;
        self.reg.cur = i;
    }

    /// Whether the message's client is KNOWN: a live registration or a configured host /
    /// reservation. The one notion of KNOWN (class matching and `deny-unknown` both use
    /// it); set once per message by `Engine::handle`.
    #[inline]
    pub fn is_known(&self) -> bool {
        self.known
    }

    /// The registration group of the message's client (its class), if it has a live
    /// registration.
    pub fn registration_group(&self) -> Option<&str> {
        let reg = self.reg();
        if !reg.known {
            return None;
        }
        std::str::from_utf8(&reg.group[..reg.group_len as usize]).ok()
    }

    /// The class named by the live registration's group, if the configuration has one
    /// (resolved when the answer was looked up).
    #[inline]
    fn registration_class(&self) -> Option<ClassId> {
        let reg = self.reg();
        reg.class.filter(|_| reg.known)
    }

    /// Puts the live registration into the facts built from the configured hosts: KNOWN,
    /// and its group first (else the configured host's).
    #[inline]
    pub(super) fn merge_registration(&self, facts: &mut ClientFacts<'_>) {
        if !self.reg().known {
            return;
        }
        facts.known = true;
        if let Some(g) = self.registration_class() {
            facts.group = Some(g);
        }
    }

    /// KNOWN without class evaluation (no classes, pools rules or deny-unknown configured).
    #[inline]
    pub(super) fn reg_known_or_host(&self, msg: &Message<'_>, key: &ClientKey) -> bool {
        if self.reg().known {
            return true;
        }
        let hosts = &self.shared.hosts;
        if hosts.is_empty() {
            return false;
        }
        let hw = (msg.htype() == 1 && msg.hlen() == 6).then(|| msg.chaddr());
        hosts.lookup(key, hw).is_some()
    }

    /// The client's fixed address from its registration and that address's subnet, if it
    /// lies in `subnet` or another subnet of its shared network.
    #[inline]
    pub(super) fn registered_fixed(&self, subnet: usize) -> Option<(Ipv4Addr, usize)> {
        let reg = self.reg();
        let ip = reg.fixed.filter(|_| reg.known)?;
        let cfg = &self.shared.config;
        let si = cfg
            .subnets
            .get(subnet)
            .filter(|s| s.net.contains(ip))
            .map(|s| s.index)
            .or_else(|| {
                cfg.subnet_for(ip)
                    .filter(|s| {
                        s.net.contains(ip) && self.shared.scopes.same_scope(s.index, subnet)
                    })
                    .map(|s| s.index)
            })?;
        Some((ip, si))
    }

    /// OFFER of the client's registered fixed address (`registered_fixed` is Some): its
    /// record if it lies in a pool, else a lease without a record (like a configured
    /// reservation). Held by another client (bound before the registration): counted, and
    /// an address from the pools of the link instead. Returns (address, lease, subnet).
    pub(super) fn offer_fixed(
        &mut self,
        now: u32,
        msg: &Message<'_>,
        sum: &Summary<'_>,
        key: &ClientKey,
        subnet_index: usize,
        hold: u32,
    ) -> Option<(Ipv4Addr, u32, usize)> {
        let (ip, si) = self.registered_fixed(subnet_index)?;
        let table = self.shared.table.clone();
        let slot = table.slot_of(ip);
        let pool = slot.map(|s| table.pool_of_slot(s));
        let desired = self.desired_for(pool, si, sum.lease_time);
        let granted = match slot {
            Some(slot) => self.take(slot, key, msg, sum, LeaseState::Offered, now, desired, hold),
            None => Some(grant(self.pol.as_ref(), now, desired, 0).0),
        };
        match granted {
            Some(g) => {
                self.reply_pool = pool;
                Some((ip, g, si))
            }
            None => {
                EngineStats::inc(&self.stats.registration_fixed_busy);
                self.choose_address(now, msg, sum, key, subnet_index, hold)
            }
        }
    }

    /// Whether this client's fixed address `ip` could be given to it now: outside the pools
    /// (no record), or a record this server may allocate to it (free, its own, or expired
    /// under the failover rule). `offer_fixed` offers a pool address otherwise.
    pub(super) fn fixed_grantable(&self, ip: Ipv4Addr, key: &ClientKey, now: u32) -> bool {
        let table = &self.shared.table;
        match table.slot_of(ip) {
            None => true,
            Some(slot) => may_take(
                &table.read(slot),
                key,
                now,
                self.pol.as_ref(),
                self.own_only_pool(table.pool_of_slot(slot)),
            ),
        }
    }

    /// Whether `addr` is some other client's registered fixed address.
    #[inline]
    pub(super) fn registered_for_other(&self, addr: Ipv4Addr, key: &ClientKey) -> bool {
        self.shared
            .registrations
            .as_deref()
            .is_some_and(|v| v.reserved_for_other(addr, key, &self.reg().hw))
    }

    /// The registration's values, the top settings layer of the reply (`pools::Layers`).
    #[inline]
    pub(super) fn host_layer(&self) -> HostLayer<'_> {
        let reg = self.reg();
        if !reg.known {
            return HostLayer::default();
        }
        HostLayer {
            options: &reg.opts[..reg.opts_len as usize],
            next_server: reg.next_server,
            boot_file: (reg.file_len > 0).then(|| &reg.file[..reg.file_len as usize]),
        }
    }
}
