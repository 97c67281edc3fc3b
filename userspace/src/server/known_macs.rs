//! The unknown-client drop in XDP (`[limits] xdp-drop-unknown`), the daemon's side: the XDP
//! program's map of known hardware addresses (`KNOWN_MACS`) kept equal to the MACs of the
//! registrations and of the configured hosts and reservations, and its switch
//! (`UNKNOWN_FILTER`).
//!
//! Off the packet path: filled at start (before the switch goes on), then changed by the
//! registration index's watcher in the thread that changes registrations (local API, bulk
//! import, PostgreSQL follower; the store serialises them) and by a reload (hosts). The map is
//! updated before the writer returns, so a MAC registered live is served at once.
//!
//! The switch is on only while dropping cannot refuse anyone the engine would serve:
//! - every subnet refuses unknown clients (`deny-unknown` on it, its shared network, or every
//!   pool of it);
//! - no registration, host or reservation is keyed by client id only (XDP sees chaddr, not
//!   option 61);
//! - every known MAC fitted in the map (a full map switches the drop off until a restart:
//!   logged, `xdhcpd_xdp_known_macs_overflow` 1; the engine still refuses unknown clients).

use std::collections::HashSet;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::{Arc, Mutex};

use xdhcpd_config::{Config, ReservationKey};
use xdhcpd_io::xdp::KnownMacMap;
use xdhcpd_registrations::{Index, IndexWatch, Registration};

/// The map, the switch and why it is on or off.
pub struct KnownMacs {
    inner: Mutex<Inner>,
    /// The drop is on now.
    on: AtomicBool,
    /// The map overflowed (the drop stays off until a restart).
    overflow: AtomicBool,
    /// Entries written to the map (MACs known).
    entries: AtomicU64,
}

struct Inner {
    map: KnownMacMap,
    /// MACs of configured hosts and reservations.
    hosts: HashSet<[u8; 6]>,
    /// Hosts / reservations keyed by client id only.
    hosts_by_client_id: usize,
    /// Registrations keyed by client id only.
    regs_by_client_id: usize,
    /// Every subnet refuses unknown clients.
    eligible: bool,
    index: Option<Arc<Index>>,
    /// Why the drop is off (for the log, only when it changes).
    last_reason: Option<&'static str>,
}

/// Whether every subnet of `cfg` refuses unknown clients.
pub fn every_subnet_denies_unknown(cfg: &Config) -> bool {
    !cfg.subnets.is_empty()
        && cfg.subnets.iter().all(|s| {
            s.deny_unknown
                || s.shared_network
                    .and_then(|n| cfg.shared_networks.get(n))
                    .is_some_and(|n| n.deny_unknown)
                || (!s.pool_rules.is_empty() && s.pool_rules.iter().all(|r| r.deny_unknown))
        })
}

fn hosts_of(cfg: &Config) -> (HashSet<[u8; 6]>, usize) {
    let mut macs = HashSet::new();
    let mut by_id = 0;
    let keys = cfg.hosts.iter().map(|h| &h.key).chain(
        cfg.subnets
            .iter()
            .flat_map(|s| s.reservations.iter().map(|r| &r.key)),
    );
    for k in keys {
        match k {
            ReservationKey::Hw(m) => {
                macs.insert(*m);
            }
            ReservationKey::ClientId(_) => by_id += 1,
        }
    }
    (macs, by_id)
}

impl KnownMacs {
    /// Fills `map` with the MACs of `cfg`'s hosts and reservations and of `index`'s
    /// registrations, then switches the drop on if it may be. Install the result as the
    /// index's watcher before anything else changes registrations.
    pub fn start(map: KnownMacMap, cfg: &Config, index: Option<Arc<Index>>) -> Arc<KnownMacs> {
        let (hosts, hosts_by_client_id) = hosts_of(cfg);
        let k = Arc::new(KnownMacs {
            inner: Mutex::new(Inner {
                map,
                hosts: HashSet::new(),
                hosts_by_client_id,
                regs_by_client_id: 0,
                eligible: every_subnet_denies_unknown(cfg),
                index: index.clone(),
                last_reason: None,
            }),
            on: AtomicBool::new(false),
            overflow: AtomicBool::new(false),
            entries: AtomicU64::new(0),
        });
        {
            let mut g = k.lock();
            for m in &hosts {
                k.insert(&mut g, *m);
            }
            g.hosts = hosts;
            if let Some(ix) = &index {
                for r in ix.all() {
                    match r.mac {
                        Some(m) => k.insert(&mut g, m),
                        None => g.regs_by_client_id += 1,
                    }
                }
            }
            k.switch(&mut g);
        }
        if let Some(ix) = &index {
            ix.set_watch(k.clone());
        }
        k
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, Inner> {
        self.inner.lock().unwrap_or_else(|e| e.into_inner())
    }

    fn insert(&self, g: &mut Inner, mac: [u8; 6]) {
        if self.overflow.load(Ordering::Relaxed) {
            return;
        }
        if g.map.contains(mac) {
            return;
        }
        match g.map.insert(mac) {
            Ok(()) => {
                self.entries.fetch_add(1, Ordering::Relaxed);
            }
            Err(e) => {
                tracing::error!(
                    "xdp-drop-unknown: the map of known MACs is full ({} entries, \
                     [limits] xdp-known-macs = {}): {e}; the XDP drop is off until a restart \
                     with a larger map (the engine still refuses unknown clients)",
                    self.entries.load(Ordering::Relaxed),
                    g.map.capacity()
                );
                self.overflow.store(true, Ordering::Relaxed);
            }
        }
    }

    fn remove(&self, g: &mut Inner, mac: [u8; 6]) {
        if g.hosts.contains(&mac) {
            return;
        }
        // Still registered (under its other key, or re-registered meanwhile)?
        let key = lease_store::ClientKey::from_hw(1, &mac);
        if g.index.as_ref().is_some_and(|ix| ix.get(&key).is_some()) {
            return;
        }
        if g.map.contains(mac) {
            match g.map.remove(mac) {
                Ok(()) => {
                    self.entries.fetch_sub(1, Ordering::Relaxed);
                }
                Err(e) => tracing::warn!("xdp-drop-unknown: removing a MAC from the map: {e}"),
            }
        }
    }

    /// Sets the switch from the state; logs when the reason changes.
    fn switch(&self, g: &mut Inner) {
        let reason = if !g.eligible {
            Some("not every subnet refuses unknown clients (deny-unknown)")
        } else if self.overflow.load(Ordering::Relaxed) {
            Some("the map of known MACs overflowed ([limits] xdp-known-macs)")
        } else if g.hosts_by_client_id + g.regs_by_client_id > 0 {
            Some("a registration, host or reservation is keyed by client id only")
        } else {
            None
        };
        let on = reason.is_none();
        let was = self.on.load(Ordering::Relaxed);
        if was != on {
            if let Err(e) = g.map.set_filter(on) {
                tracing::error!("xdp-drop-unknown: switching the XDP drop: {e}");
                return;
            }
            self.on.store(on, Ordering::Relaxed);
        }
        if was != on || g.last_reason != reason {
            match reason {
                None => tracing::info!(
                    "xdp-drop-unknown: on ({} known MACs): unregistered clients' DISCOVER and \
                     REQUEST are dropped in XDP",
                    self.entries.load(Ordering::Relaxed)
                ),
                Some(r) => tracing::warn!("xdp-drop-unknown: off: {r}"),
            }
        }
        g.last_reason = reason;
    }

    /// A reload: the new hosts and reservations, and whether every subnet still refuses
    /// unknown clients. Call before the new configuration is served.
    pub fn reconfigure(&self, cfg: &Config) {
        let (hosts, by_id) = hosts_of(cfg);
        let mut g = self.lock();
        for m in hosts.difference(&g.hosts.clone()) {
            self.insert(&mut g, *m);
        }
        let dropped: Vec<[u8; 6]> = g.hosts.difference(&hosts).copied().collect();
        g.hosts = hosts;
        for m in dropped {
            self.remove(&mut g, m);
        }
        g.hosts_by_client_id = by_id;
        g.eligible = every_subnet_denies_unknown(cfg);
        self.switch(&mut g);
    }

    /// The drop is on.
    pub fn is_on(&self) -> bool {
        self.on.load(Ordering::Relaxed)
    }

    /// The map overflowed.
    pub fn overflowed(&self) -> bool {
        self.overflow.load(Ordering::Relaxed)
    }

    /// MACs in the map.
    pub fn entries(&self) -> u64 {
        self.entries.load(Ordering::Relaxed)
    }
}

impl IndexWatch for KnownMacs {
    fn put(&self, new: &Registration, replaced: &[Registration]) {
        let mut g = self.lock();
        match new.mac {
            Some(m) => self.insert(&mut g, m),
            None => g.regs_by_client_id += 1,
        }
        for r in replaced {
            match r.mac {
                Some(m) if Some(m) != new.mac => self.remove(&mut g, m),
                Some(_) => {}
                None => g.regs_by_client_id = g.regs_by_client_id.saturating_sub(1),
            }
        }
        self.switch(&mut g);
    }

    fn removed(&self, old: &Registration) {
        let mut g = self.lock();
        match old.mac {
            Some(m) => self.remove(&mut g, m),
            None => g.regs_by_client_id = g.regs_by_client_id.saturating_sub(1),
        }
        self.switch(&mut g);
    }
}
