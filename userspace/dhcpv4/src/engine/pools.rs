//! Shared networks, pool choice by class, and the settings precedence of a reply.
//!
//! The scope of a message is its link: the subnet selected by giaddr / link selection /
//! interface, widened to every subnet of its `[[shared-network]]`. Pools are tried in file
//! order; a pool is usable when its `allow` / `deny` / `deny-unknown` rules admit the
//! client's class set (and its subnet and network do not deny unknown clients); the subnet
//! of the reply is the subnet of the address (the subnet follows the pool).
//!
//! Settings precedence (first that sets a value wins): class (the client's classes in file
//! order) > pool > subnet > shared network > `[lease]` (times only). Everything is
//! pre-encoded at load; a reply only looks up and copies bytes.

use xdhcpd_config::{ClassSet, Config, LeaseTimes, PoolRules, Settings, Subnet};

/// Per-configuration tables for the packet path, built once with the engine.
#[derive(Debug, Default)]
pub struct Scopes {
    /// Pool id -> (subnet index, position in `Subnet::pools`). Pool ids are dense.
    pool_loc: Vec<(usize, usize)>,
    /// Subnet index -> the pool ids of its scope (its network's subnets, file order).
    scope_pools: Vec<Vec<u32>>,
    /// Subnet index -> scope id (equal for subnets of one shared network).
    scope_id: Vec<usize>,
    /// Any class, pool rule, pool/network setting or deny-unknown: classify messages.
    pub(super) active: bool,
}

impl Scopes {
    /// Indexes `cfg`.
    pub fn new(cfg: &Config) -> Self {
        let n_pools = cfg.subnets.iter().map(|s| s.pools.len()).sum::<usize>();
        let mut pool_loc = vec![(usize::MAX, 0); n_pools];
        for s in &cfg.subnets {
            for (i, p) in s.pools.iter().enumerate() {
                if let Some(slot) = pool_loc.get_mut(p.id as usize) {
                    *slot = (s.index, i);
                }
            }
        }
        let nets = cfg.shared_networks.len();
        let scope_id: Vec<usize> = cfg
            .subnets
            .iter()
            .map(|s| s.shared_network.unwrap_or(nets + s.index))
            .collect();
        let scope_pools = cfg
            .subnets
            .iter()
            .map(|s| {
                let members: Vec<usize> =
                    match s.shared_network.and_then(|n| cfg.shared_networks.get(n)) {
                        Some(n) => n.subnets.clone(),
                        None => vec![s.index],
                    };
                members
                    .iter()
                    .filter_map(|&m| cfg.subnets.get(m))
                    .flat_map(|m| m.pools.iter().map(|p| p.id))
                    .collect()
            })
            .collect();
        let active = !cfg.classes.is_empty()
            || !cfg.hosts.is_empty()
            || cfg
                .shared_networks
                .iter()
                .any(|n| n.deny_unknown || !n.settings.is_empty())
            || cfg.subnets.iter().any(|s| {
                s.deny_unknown
                    || s.pool_rules.iter().any(|r| {
                        r.deny_unknown
                            || !r.allow.is_empty()
                            || !r.deny.is_empty()
                            || !r.settings.is_empty()
                    })
            });
        Scopes {
            pool_loc,
            scope_pools,
            scope_id,
            active,
        }
    }

    /// The pools a client of subnet `subnet` may draw from, in order (before class rules).
    #[inline]
    pub fn pools_of_scope(&self, subnet: usize) -> &[u32] {
        self.scope_pools.get(subnet).map_or(&[], Vec::as_slice)
    }

    /// Whether two subnets are on one link (the same subnet or one shared network).
    #[inline]
    pub fn same_scope(&self, a: usize, b: usize) -> bool {
        a == b || (self.scope_id.get(a).is_some() && self.scope_id.get(a) == self.scope_id.get(b))
    }

    /// (subnet index, pool position) of pool `id`.
    #[inline]
    pub fn pool_loc(&self, id: u32) -> Option<(usize, usize)> {
        self.pool_loc
            .get(id as usize)
            .copied()
            .filter(|(s, _)| *s != usize::MAX)
    }
}

/// The pool's rules, its subnet, and that subnet's network's `deny-unknown`.
#[inline]
fn rules<'c>(cfg: &'c Config, scopes: &Scopes, pool: u32) -> Option<(&'c Subnet, &'c PoolRules)> {
    let (si, pi) = scopes.pool_loc(pool)?;
    let s = cfg.subnets.get(si)?;
    Some((s, s.pool_rules.get(pi)?))
}

/// Whether a client with `classes` (registered when `known`) may draw from pool `pool`.
#[inline]
pub fn pool_permits(
    cfg: &Config,
    scopes: &Scopes,
    pool: u32,
    classes: ClassSet,
    known: bool,
) -> bool {
    match rules(cfg, scopes, pool) {
        Some((s, r)) => r.permits(classes, known) && (known || !s.deny_unknown),
        // A pool the configuration does not know (an old lease file): only the plain case.
        None => classes.is_empty(),
    }
}

/// Whether the network or subnet `s` refuses unregistered clients outright.
#[inline]
pub fn denies_unknown(cfg: &Config, s: &Subnet) -> bool {
    s.shared_network
        .and_then(|n| cfg.shared_networks.get(n))
        .is_some_and(|n| n.deny_unknown)
}

/// A registration's values for its client (`registration.rs`): the top settings layer.
#[derive(Clone, Copy, Debug, Default)]
pub struct HostLayer<'a> {
    /// Options as DHCP TLVs (`code, len, value`...), whole TLVs only.
    pub options: &'a [u8],
    /// `siaddr`.
    pub next_server: Option<std::net::Ipv4Addr>,
    /// The BOOTP `file` field.
    pub boot_file: Option<&'a [u8]>,
}

impl<'a> HostLayer<'a> {
    /// Option `code`'s value.
    #[inline]
    fn get(&self, code: u8) -> Option<&'a [u8]> {
        let b = self.options;
        let mut i = 0;
        while i + 2 <= b.len() {
            let end = i + 2 + usize::from(b[i + 1]);
            if b[i] == code {
                return b.get(i + 2..end);
            }
            i = end;
        }
        None
    }

    /// The codes it sets, as a 256-bit map.
    #[inline]
    fn codes(&self) -> [u64; 4] {
        let mut m = [0u64; 4];
        let b = self.options;
        let mut i = 0;
        while i + 2 <= b.len() {
            let c = b[i];
            m[usize::from(c >> 6)] |= 1u64 << (c & 63);
            i += 2 + usize::from(b[i + 1]);
        }
        m
    }

    fn is_empty(&self) -> bool {
        self.options.is_empty() && self.next_server.is_none() && self.boot_file.is_none()
    }
}

/// The settings layers of one reply, highest precedence first: the client's registration
/// (host), its classes in file order, the pool, the subnet, the shared network.
pub struct Layers<'c> {
    cfg: &'c Config,
    host: HostLayer<'c>,
    /// Codes set by the host layer.
    host_codes: [u64; 4],
    classes: ClassSet,
    /// Codes set by any of the client's classes (so other codes skip the class layer).
    class_codes: [u64; 4],
    /// Only the subnet has settings: every lookup is the subnet's.
    plain: bool,
    pool: Option<&'c Settings>,
    subnet: &'c Subnet,
    network: Option<&'c Settings>,
}

impl<'c> Layers<'c> {
    /// The layers for a client in `classes` getting an address of pool `pool` (None: no
    /// pool, e.g. INFORM or a reservation outside the pools) in `subnet`.
    #[inline]
    pub fn new(
        cfg: &'c Config,
        scopes: &Scopes,
        classes: ClassSet,
        pool: Option<u32>,
        subnet: &'c Subnet,
    ) -> Self {
        let pool = pool
            .and_then(|p| rules(cfg, scopes, p))
            .map(|(_, r)| &r.settings)
            .filter(|s| !s.is_empty());
        let network = subnet
            .shared_network
            .and_then(|n| cfg.shared_networks.get(n))
            .map(|n| &n.settings)
            .filter(|s| !s.is_empty());
        let mut class_codes = [0u64; 4];
        for id in classes.iter() {
            if let Some(c) = cfg.classes.get(usize::from(id)) {
                for (a, b) in class_codes.iter_mut().zip(c.settings.codes.iter()) {
                    *a |= b;
                }
            }
        }
        let plain = classes.is_empty() && pool.is_none() && network.is_none();
        Layers {
            cfg,
            host: HostLayer::default(),
            host_codes: [0; 4],
            classes,
            class_codes,
            plain,
            pool,
            subnet,
            network,
        }
    }

    /// Puts a registration's values on top of every other layer.
    #[inline]
    pub fn with_host(mut self, host: HostLayer<'c>) -> Self {
        if !host.is_empty() {
            self.host_codes = host.codes();
            self.host = host;
            self.plain = false;
        }
        self
    }

    #[inline]
    fn class_settings(&self) -> impl Iterator<Item = &'c Settings> + '_ {
        let cfg = self.cfg;
        self.classes
            .iter()
            .filter_map(move |id| cfg.classes.get(usize::from(id)))
            .map(|c| &c.settings)
    }

    /// Option `code`'s value from the first layer that has it.
    #[inline]
    pub fn option(&self, code: u8) -> Option<&'c [u8]> {
        if self.plain {
            return self.subnet.options.get(code);
        }
        let bit = |codes: &[u64; 4]| codes[usize::from(code >> 6)] & (1u64 << (code & 63)) != 0;
        if bit(&self.host_codes) {
            if let Some(v) = self.host.get(code) {
                return Some(v);
            }
        }
        if bit(&self.class_codes) {
            if let Some(v) = self
                .class_settings()
                .find(|s| bit(&s.codes))
                .and_then(|s| s.options.get(code))
            {
                return Some(v);
            }
        }
        if let Some(v) = self
            .pool
            .filter(|s| bit(&s.codes))
            .and_then(|s| s.options.get(code))
        {
            return Some(v);
        }
        if let Some(v) = self.subnet.options.get(code) {
            return Some(v);
        }
        self.network.and_then(|s| s.options.get(code))
    }

    /// Codes present in any layer, as a 256-bit map.
    #[inline]
    pub fn codes(&self) -> [u64; 4] {
        let mut m = self.host_codes;
        for c in self.subnet.options.codes() {
            m[usize::from(c >> 6)] |= 1u64 << (c & 63);
        }
        let mut or = |s: &Settings| {
            for (a, b) in m.iter_mut().zip(s.codes.iter()) {
                *a |= b;
            }
        };
        for s in self.class_settings() {
            or(s);
        }
        if let Some(s) = self.pool {
            or(s);
        }
        if let Some(s) = self.network {
            or(s);
        }
        m
    }

    /// Whether any layer above the subnet sets something (else the subnet alone answers).
    #[inline]
    pub fn layered(&self) -> bool {
        !self.host.is_empty()
            || self.pool.is_some()
            || self.network.is_some()
            || self.class_settings().any(|s| !s.is_empty())
    }

    /// `siaddr`.
    pub fn next_server(&self) -> Option<std::net::Ipv4Addr> {
        self.host
            .next_server
            .or_else(|| self.class_settings().find_map(|s| s.next_server))
            .or(self.pool.and_then(|s| s.next_server))
            .or(self.subnet.next_server)
            .or(self.network.and_then(|s| s.next_server))
    }

    /// The BOOTP `file` field.
    pub fn boot_file(&self) -> Option<&'c [u8]> {
        self.host.boot_file.or_else(|| {
            self.class_settings()
                .find_map(|s| s.boot_file.as_deref())
                .or(self.pool.and_then(|s| s.boot_file.as_deref()))
                .or(self.subnet.boot_file.as_deref())
                .or(self.network.and_then(|s| s.boot_file.as_deref()))
                .map(str::as_bytes)
        })
    }

    /// The prefix of a host name built from the MAC, when a layer asks for one.
    pub fn host_name_prefix(&self) -> Option<&'c str> {
        self.class_settings()
            .find_map(|s| s.host_name_from_mac.as_deref())
            .or(self.pool.and_then(|s| s.host_name_from_mac.as_deref()))
            .or(self.network.and_then(|s| s.host_name_from_mac.as_deref()))
    }
}

/// Lease times for a client in `classes` on pool `pool` of subnet `subnet`: the subnet's
/// (global, network and subnet merged at load), then the pool's, then the first class's
/// that sets each value.
#[inline]
pub fn times_for(
    cfg: &Config,
    scopes: &Scopes,
    classes: ClassSet,
    pool: Option<u32>,
    subnet: &Subnet,
) -> LeaseTimes {
    let mut t = subnet.times;
    let apply = |t: &mut LeaseTimes, s: &Settings, done: &mut [bool; 3]| {
        for (i, (v, slot)) in [
            (s.times.default, &mut t.default),
            (s.times.min, &mut t.min),
            (s.times.max, &mut t.max),
        ]
        .into_iter()
        .enumerate()
        {
            if let (Some(v), false) = (v, done[i]) {
                *slot = v;
                done[i] = true;
            }
        }
    };
    let mut done = [false; 3];
    for id in classes.iter() {
        if let Some(c) = cfg.classes.get(usize::from(id)) {
            if c.settings.times.any() {
                apply(&mut t, &c.settings, &mut done);
            }
        }
    }
    if let Some((_, r)) = pool.and_then(|p| rules(cfg, scopes, p)) {
        if r.settings.times.any() {
            apply(&mut t, &r.settings, &mut done);
        }
    }
    // Mixed layers may cross; keep min <= default <= max.
    t.max = t.max.max(t.min);
    t.default = t.default.clamp(t.min, t.max);
    t
}

/// Writes `prefix` + the 6-byte MAC as 12 lowercase hex digits into `buf`; returns the length.
#[inline]
pub fn host_name_from_mac(prefix: &str, mac: &[u8], buf: &mut [u8; 64]) -> usize {
    const HEX: &[u8; 16] = b"0123456789abcdef";
    let p = prefix.as_bytes();
    let n = p.len().min(64 - 12);
    buf[..n].copy_from_slice(&p[..n]);
    let mut at = n;
    for b in mac.iter().take(6) {
        buf[at] = HEX[usize::from(b >> 4)];
        buf[at + 1] = HEX[usize::from(b & 15)];
        at += 2;
    }
    at
}
