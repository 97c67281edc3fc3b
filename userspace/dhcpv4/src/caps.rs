//! Lease caps per access circuit and per remote-id (`[limits] max-leases-per-circuit`,
//! `max-leases-per-remote-id`), as Kea's limits hook and CPNR's per-circuit limits.
//!
//! What is counted: addresses *held* (records Offered or Active) whose stored option 82
//! names a circuit-id (sub-option 1) or a remote-id (sub-option 2). The circuit key is the
//! relay's network + circuit-id: the network is the link the relay's giaddr selects (its
//! subnet, or its `[[shared-network]]` as a whole), named by the first subnet's network
//! address. A lease record and a failover binding update keep option 82 but not giaddr, so
//! the network (derived from the address) stands for the relay; a redundant relay pair
//! serving one network thus shares its circuits' caps. The remote-id key is the remote-id
//! alone (it names the subscriber's device wherever it is).
//!
//! How counts stay exact across workers without a lock: the lease table calls
//! [`LeaseCaps`] (a [`lease_store::ChangeHook`]) under the record's lock for every record
//! change, whoever the writer is (a worker's OFFER / ACK / RELEASE / DECLINE, the expiry
//! sweeper, a failover partner's update, a reload), and the hook moves one unit from the old
//! record's keys to the new record's. At start the counts are rebuilt from the table
//! ([`LeaseCaps::attach`]). Each key's counter is one `AtomicU64`: the held count in the low
//! half, reservations in flight in the high half. A worker about to give a client its first
//! address reserves one unit on every capped key (one compare-and-swap: admitted only when
//! held + reserved < cap), takes the address (the hook counts it), then drops the
//! reservation. Two workers can therefore never both take the last unit.
//!
//! Never refused: a client that already holds an address (Offered or Active record: its
//! renewal, its REQUEST after our OFFER, a re-DISCOVER) and a client getting back its own
//! expired or released binding (INIT-REBOOT / renewal of its record); failover updates from
//! the partner are counted, never refused. The lease record keeps option 82 whole, so every
//! holder with a circuit-id / remote-id is counted, whatever the option's length.

use std::sync::atomic::{AtomicU32, AtomicU64, Ordering};

use lease_store::{ChangeHook, ClientKey, Lease, LeaseState, LeaseTable, VarData};
use xdhcpd_config::{Config, LimitsConfig};

use crate::wire::relay_sub;

type Hasher = foldhash::fast::RandomState;

const PENDING: u64 = 1 << 32;
const COUNT_MASK: u64 = PENDING - 1;

/// Which cap a key is under.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum CapKind {
    /// Relay network + option 82 circuit-id.
    Circuit = 1,
    /// Option 82 remote-id.
    RemoteId = 2,
}

/// A counted key: fixed size, built without allocating. The id is kept as the lease store
/// keeps client identifiers: up to 32 bytes as they are, a longer one (a sub-option is at
/// most 255 bytes) as a 256-bit hash of it.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub struct CapKey {
    kind: u8,
    link: u32,
    id: ClientKey,
}

impl CapKey {
    fn new(kind: CapKind, link: u32, id: &[u8]) -> Option<CapKey> {
        if id.is_empty() {
            return None;
        }
        Some(CapKey {
            kind: kind as u8,
            link,
            id: ClientKey::from_client_id(id),
        })
    }
}

/// Sub-option `code` of an option 82 value (RFC 3046 TLVs); None when absent or when the
/// value is malformed before it.
pub fn relay_sub_option(ri: &[u8], code: u8) -> Option<&[u8]> {
    let mut i = 0;
    while i + 2 <= ri.len() {
        let c = ri[i];
        let n = usize::from(ri[i + 1]);
        let v = ri.get(i + 2..i + 2 + n)?;
        if c == code {
            return Some(v);
        }
        i += 2 + n;
    }
    None
}

/// The keys (circuit, remote-id) of a holder on network `link` with option 82 `ri`.
fn keys_of(link: u32, ri: &[u8]) -> [Option<CapKey>; 2] {
    if ri.is_empty() {
        return [None, None];
    }
    [
        relay_sub_option(ri, relay_sub::CIRCUIT_ID)
            .and_then(|c| CapKey::new(CapKind::Circuit, link, c)),
        relay_sub_option(ri, relay_sub::REMOTE_ID)
            .and_then(|r| CapKey::new(CapKind::RemoteId, 0, r)),
    ]
}

/// Whether a record in this state holds its address for its client (and counts).
#[inline]
fn holds(l: &Lease) -> bool {
    matches!(l.state, LeaseState::Offered | LeaseState::Active)
}

/// The network (link) id of subnet `subnet` of `cfg`: the network address of the first
/// subnet of its shared network, or its own.
pub fn link_of_subnet(cfg: &Config, subnet: usize) -> u32 {
    let Some(s) = cfg.subnets.get(subnet) else {
        return 0;
    };
    let first = s
        .shared_network
        .and_then(|n| cfg.shared_networks.get(n))
        .and_then(|n| n.subnets.first())
        .and_then(|&i| cfg.subnets.get(i))
        .unwrap_or(s);
    first.net.first_u32()
}

/// The per-circuit and per-remote-id counts and caps, shared by every engine and installed
/// as the lease table's change hook. Lives across reloads (the caps reload live).
pub struct LeaseCaps {
    circuit_cap: AtomicU32,
    remote_cap: AtomicU32,
    /// Key -> held (low 32 bits) and reserved (high 32 bits).
    counts: papaya::HashMap<CapKey, AtomicU64, Hasher>,
    /// Pool id -> network id (pool ids are stable across reloads; a reload adds pools).
    pool_link: papaya::HashMap<u32, u32, Hasher>,
}

impl std::fmt::Debug for LeaseCaps {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("LeaseCaps")
            .field("circuit_cap", &self.circuit_cap)
            .field("remote_cap", &self.remote_cap)
            .field("keys", &self.counts.len())
            .finish()
    }
}

/// A reservation taken by [`LeaseCaps::reserve`]: give it back with [`LeaseCaps::release`].
#[derive(Clone, Copy, Debug, Default)]
pub struct Reservation {
    keys: [Option<CapKey>; 2],
}

impl LeaseCaps {
    /// Caps from `limits`, networks from `cfg`'s pools; nothing counted yet (see `attach`).
    pub fn new(cfg: &Config) -> LeaseCaps {
        let c = LeaseCaps {
            circuit_cap: AtomicU32::new(0),
            remote_cap: AtomicU32::new(0),
            counts: papaya::HashMap::builder()
                .hasher(Hasher::default())
                .resize_mode(papaya::ResizeMode::Blocking)
                .build(),
            pool_link: papaya::HashMap::builder().hasher(Hasher::default()).build(),
        };
        c.configure(cfg);
        c
    }

    /// Takes the caps of `cfg` (0 = off) and the networks of pools it adds (a reload). A
    /// pool keeps the network it had when first seen: a reload that moves a pool into
    /// another shared network counts its leases under the old one until a restart.
    pub fn configure(&self, cfg: &Config) {
        self.set_caps(&cfg.limits);
        let links = self.pool_link.pin();
        for s in &cfg.subnets {
            let link = link_of_subnet(cfg, s.index);
            for p in &s.pools {
                links.get_or_insert(p.id, link);
            }
        }
    }

    /// Sets the two caps (0 = off).
    pub fn set_caps(&self, l: &LimitsConfig) {
        self.circuit_cap
            .store(l.max_leases_per_circuit, Ordering::Relaxed);
        self.remote_cap
            .store(l.max_leases_per_remote_id, Ordering::Relaxed);
    }

    /// Whether some cap is set.
    #[inline]
    pub fn active(&self) -> bool {
        self.circuit_cap.load(Ordering::Relaxed) != 0
            || self.remote_cap.load(Ordering::Relaxed) != 0
    }

    /// Installs `self` as `table`'s change hook and counts what the table holds. Call once,
    /// at start, before any worker, sweeper or failover driver writes the table.
    pub fn attach(self: &std::sync::Arc<Self>, table: &LeaseTable) -> bool {
        if !table.set_change_hook(self.clone()) {
            return false;
        }
        self.counts.pin().clear();
        for (slot, l) in table.iter() {
            if holds(&l) {
                // The option 82 whole (read only for the holders).
                let (l, var) = table.read_with_var(slot);
                if !holds(&l) {
                    continue;
                }
                let link = self.link_of_pool(table.pool_of_slot(slot));
                for k in keys_of(link, var.relay_agent_info()).into_iter().flatten() {
                    self.add(k);
                }
            }
        }
        true
    }

    fn link_of_pool(&self, pool: u32) -> u32 {
        self.pool_link.pin().get(&pool).copied().unwrap_or(0)
    }

    fn add(&self, k: CapKey) {
        let m = self.counts.pin();
        m.get_or_insert_with(k, || AtomicU64::new(0))
            .fetch_add(1, Ordering::Relaxed);
    }

    fn sub(&self, k: CapKey) {
        if let Some(c) = self.counts.pin().get(&k) {
            // Never below zero (that would borrow from the reservations).
            let _ = c.fetch_update(Ordering::Relaxed, Ordering::Relaxed, |v| {
                (v & COUNT_MASK != 0).then(|| v - 1)
            });
        }
    }

    /// Addresses held under `kind` for network `link` and `id` (circuit-id or remote-id).
    pub fn held(&self, kind: CapKind, link: u32, id: &[u8]) -> u64 {
        let link = if kind == CapKind::RemoteId { 0 } else { link };
        CapKey::new(kind, link, id)
            .and_then(|k| {
                self.counts
                    .pin()
                    .get(&k)
                    .map(|c| c.load(Ordering::Relaxed) & COUNT_MASK)
            })
            .unwrap_or(0)
    }

    /// Keys in the count map (circuits and remote-ids ever seen since start).
    pub fn keys(&self) -> usize {
        self.counts.len()
    }

    /// Reserves one address for a new holder on network `link` with option 82 `ri`: Err with
    /// the cap that is full (nothing reserved), else the reservation to release once the
    /// address is taken (or not).
    pub fn reserve(&self, link: u32, ri: &[u8]) -> Result<Reservation, CapKind> {
        let mut r = Reservation::default();
        let caps = [
            self.circuit_cap.load(Ordering::Relaxed),
            self.remote_cap.load(Ordering::Relaxed),
        ];
        let keys = keys_of(link, ri);
        let m = self.counts.pin();
        for (i, (k, cap)) in keys.into_iter().zip(caps).enumerate() {
            let (Some(k), true) = (k, cap != 0) else {
                continue;
            };
            let c = m.get_or_insert_with(k, || AtomicU64::new(0));
            let ok = c
                .fetch_update(Ordering::AcqRel, Ordering::Acquire, |v| {
                    ((v & COUNT_MASK) + (v >> 32) < u64::from(cap)).then(|| v + PENDING)
                })
                .is_ok();
            if !ok {
                self.release(r);
                return Err(if i == 0 {
                    CapKind::Circuit
                } else {
                    CapKind::RemoteId
                });
            }
            r.keys[i] = Some(k);
        }
        Ok(r)
    }

    /// Gives a reservation back (after the address was taken, counted by the hook, or not).
    pub fn release(&self, r: Reservation) {
        if r.keys.iter().all(Option::is_none) {
            return;
        }
        let m = self.counts.pin();
        for k in r.keys.into_iter().flatten() {
            if let Some(c) = m.get(&k) {
                c.fetch_sub(PENDING, Ordering::AcqRel);
            }
        }
    }
}

impl ChangeHook for LeaseCaps {
    fn record_changed(&self, pool: u32, old: &Lease, new: &Lease) {
        // Not called by the table (`wants_var`); the inline option 82 is all a record has.
        self.changed(
            pool,
            old,
            old.inline_relay_agent_info().unwrap_or_default(),
            new,
            new.inline_relay_agent_info().unwrap_or_default(),
        );
    }

    fn wants_var(&self) -> bool {
        true
    }

    fn record_changed_var(
        &self,
        _slot: u32,
        pool: u32,
        old: (&Lease, &VarData),
        new: (&Lease, &VarData),
    ) {
        self.changed(
            pool,
            old.0,
            old.1.relay_agent_info(),
            new.0,
            new.1.relay_agent_info(),
        );
    }
}

impl LeaseCaps {
    /// Counts a record change by its option 82 (whole) before and after.
    fn changed(&self, pool: u32, old: &Lease, ori: &[u8], new: &Lease, nri: &[u8]) {
        let (was, is) = (holds(old), holds(new));
        if !was && !is {
            return;
        }
        if was && is && ori == nri {
            return;
        }
        if ori.is_empty() && nri.is_empty() {
            return;
        }
        let link = self.link_of_pool(pool);
        let before = if was {
            keys_of(link, ori)
        } else {
            [None, None]
        };
        let after = if is { keys_of(link, nri) } else { [None, None] };
        for i in 0..2 {
            if before[i] == after[i] {
                continue;
            }
            if let Some(k) = after[i] {
                self.add(k);
            }
            if let Some(k) = before[i] {
                self.sub(k);
            }
        }
    }
}
