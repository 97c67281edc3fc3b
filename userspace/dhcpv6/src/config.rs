//! The engine's view of the DHCPv6 configuration: links (`[[subnet6]]`) with
//! address pools, prefix pools, reservations, lifetimes and the options
//! sent to clients, already encoded. The daemon builds it from
//! `xdhcpd-config`; tests build it directly.

use std::net::Ipv6Addr;

pub use xdhcpd_config::{BytesMatch, ClassId, ClassMatch, ClassSet, PoolAccess6};

/// A client class as the DHCPv6 engine evaluates it (from a `[[class]]`; the conditions
/// are the DHCPv4 ones read for DHCPv6, see `engine/classes.rs`).
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Class6 {
    /// Its id (position in file order; `Config6::classes[id]`).
    pub id: ClassId,
    /// Name for logs.
    pub name: String,
    /// When a client is a member.
    pub matches: ClassMatch,
    /// Option 17 bodies (enterprise number first) members get; each replaces the link's
    /// option 17 of the same enterprise number.
    pub vendor_options: Vec<Vec<u8>>,
}

/// Who may use a link and its pools.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct LinkAccess6 {
    /// Unregistered clients (no reservation for their DUID) get no answer on the link.
    pub deny_unknown: bool,
    /// Rules of `Link6::addr_pools` by index (a pool without an entry admits everyone).
    pub addr_pools: Vec<PoolAccess6>,
    /// Rules of `Link6::prefix_pools` by index.
    pub prefix_pools: Vec<PoolAccess6>,
}

impl LinkAccess6 {
    /// Whether a client in `classes` (registered when `known`) may draw from pool `i`
    /// (a prefix pool when `pd`, else an address pool).
    #[inline]
    pub fn permits(&self, pd: bool, i: usize, classes: ClassSet, known: bool) -> bool {
        let rules = if pd {
            &self.prefix_pools
        } else {
            &self.addr_pools
        };
        rules.get(i).is_none_or(|r| {
            (known || !r.deny_unknown)
                && !classes.intersects(r.deny)
                && (r.allow.is_empty() || classes.intersects(r.allow))
        })
    }

    /// Whether the link or one of its pools asks whether a client is registered.
    pub fn asks_known(&self) -> bool {
        self.deny_unknown
            || self
                .addr_pools
                .iter()
                .chain(&self.prefix_pools)
                .any(|r| r.deny_unknown)
    }
}

/// A range of addresses handed to IA_NA.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct AddrPool6 {
    /// First address.
    pub start: Ipv6Addr,
    /// Last address (inclusive).
    pub end: Ipv6Addr,
}

/// A prefix carved into delegated prefixes for IA_PD.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct PrefixPool6 {
    /// The pool's prefix.
    pub prefix: Ipv6Addr,
    /// Its length.
    pub prefix_len: u8,
    /// Length of each delegated prefix (>= `prefix_len`, <= 128).
    pub delegated_len: u8,
}

impl PrefixPool6 {
    /// Number of delegated prefixes in the pool (saturating at u64::MAX).
    pub fn count(&self) -> u64 {
        let bits = u32::from(self.delegated_len.saturating_sub(self.prefix_len));
        if bits >= 64 {
            u64::MAX
        } else {
            1u64 << bits
        }
    }
    /// The `i`-th delegated prefix.
    pub fn nth(&self, i: u64) -> [u8; 16] {
        let base = u128::from(self.prefix) & mask(self.prefix_len);
        let shift = 128 - u32::from(self.delegated_len);
        let off = if shift >= 128 {
            0
        } else {
            u128::from(i) << shift
        };
        (base | (off & !mask(self.prefix_len))).to_be_bytes()
    }
    /// `p`/`len` is one of this pool's delegated prefixes.
    pub fn contains(&self, p: &[u8; 16], len: u8) -> bool {
        len == self.delegated_len
            && len >= self.prefix_len
            && prefix_contains(self.prefix, self.prefix_len, p)
            && u128::from_be_bytes(*p) & !mask(len) == 0
    }
}

/// The network mask of a prefix length as a u128.
pub fn mask(len: u8) -> u128 {
    match len {
        0 => 0,
        l if l >= 128 => u128::MAX,
        l => u128::MAX << (128 - u32::from(l)),
    }
}

/// `a` lies in `prefix`/`len`.
pub fn prefix_contains(prefix: Ipv6Addr, len: u8, a: &[u8; 16]) -> bool {
    let m = mask(len);
    u128::from(prefix) & m == u128::from_be_bytes(*a) & m
}

/// A fixed assignment by DUID.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Reservation6 {
    /// The client's DUID (bytes as sent in its Client Identifier).
    pub duid: Vec<u8>,
    /// Address for the client's first IA_NA.
    pub address: Option<Ipv6Addr>,
    /// Prefix (and length) for the client's first IA_PD.
    pub prefix: Option<(Ipv6Addr, u8)>,
}

/// One link (an `[[subnet6]]`).
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Link6 {
    /// Name for logs and tools.
    pub name: String,
    /// The on-link prefix (selects the link from a relay's link-address or a client's
    /// global source; Confirm checks addresses against it).
    pub prefix: Ipv6Addr,
    /// Its length.
    pub prefix_len: u8,
    /// Interfaces (ifindex) on which directly connected clients of this link arrive.
    pub ifindexes: Vec<u32>,
    /// Address pools.
    pub addr_pools: Vec<AddrPool6>,
    /// Prefix pools.
    pub prefix_pools: Vec<PrefixPool6>,
    /// Preferred lifetime (seconds).
    pub preferred: u32,
    /// Valid lifetime (seconds).
    pub valid: u32,
    /// T1 (0: half the preferred lifetime).
    pub t1: u32,
    /// T2 (0: 0.8 of the preferred lifetime).
    pub t2: u32,
    /// Answer a Solicit carrying Rapid Commit with a committed Reply.
    pub rapid_commit: bool,
    /// Options sent in every reply to this link's clients: (code, encoded body).
    pub options: Vec<(u16, Vec<u8>)>,
    /// Reservations by DUID.
    pub reservations: Vec<Reservation6>,
    /// `deny-unknown` and the pools' `allow` / `deny` / `deny-unknown`.
    pub access: LinkAccess6,
}

/// The whole DHCPv6 configuration of the engine.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct Config6 {
    /// Links.
    pub links: Vec<Link6>,
    /// Relays whose Relay-Forward messages are served (by source address); relayed
    /// messages from anyone else are dropped and counted.
    pub trusted_relays: Vec<Ipv6Addr>,
    /// Keep a declined address out of the pools this long (seconds).
    pub decline_hold: u32,
    /// Sources (address, prefix length) whose Leasequery (RFC 5007) is answered; anyone
    /// else gets NotAllowed, counted.
    pub leasequery_allow: Vec<(Ipv6Addr, u8)>,
    /// Client classes in file order (`classes[i].id == i`).
    pub classes: Vec<Class6>,
}

/// Option encoders for the configured options.
pub mod encode {
    use std::net::Ipv6Addr;

    /// A list of addresses (options 23, DNS servers).
    pub fn addresses(v: &[Ipv6Addr]) -> Vec<u8> {
        v.iter().flat_map(|a| a.octets()).collect()
    }

    /// A domain search list (option 24): DNS wire names, uncompressed. Errors name the
    /// bad domain.
    pub fn domain_list(v: &[String]) -> Result<Vec<u8>, String> {
        let mut out = Vec::new();
        for d in v {
            let d = d.trim_end_matches('.');
            if d.is_empty() || d.len() > 253 {
                return Err(format!("domain {d:?}: empty or longer than 253"));
            }
            for label in d.split('.') {
                if label.is_empty() || label.len() > 63 {
                    return Err(format!("domain {d:?}: label {label:?} empty or over 63"));
                }
                out.push(label.len() as u8);
                out.extend_from_slice(label.as_bytes());
            }
            out.push(0);
        }
        Ok(out)
    }

    /// NTP servers (option 56) as server-address suboptions (RFC 5908 §4).
    pub fn ntp_servers(v: &[Ipv6Addr]) -> Vec<u8> {
        let mut out = Vec::new();
        for a in v {
            out.extend_from_slice(&1u16.to_be_bytes());
            out.extend_from_slice(&16u16.to_be_bytes());
            out.extend_from_slice(&a.octets());
        }
        out
    }

    /// A vendor-specific information option (17): enterprise number and
    /// (code, data) suboptions.
    pub fn vendor_opts(enterprise: u32, sub: &[(u16, Vec<u8>)]) -> Result<Vec<u8>, String> {
        let mut out = enterprise.to_be_bytes().to_vec();
        for (c, d) in sub {
            let l = u16::try_from(d.len())
                .map_err(|_| format!("vendor suboption {c}: {} bytes", d.len()))?;
            out.extend_from_slice(&c.to_be_bytes());
            out.extend_from_slice(&l.to_be_bytes());
            out.extend_from_slice(d);
        }
        Ok(out)
    }
}
