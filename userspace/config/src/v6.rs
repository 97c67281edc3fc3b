//! DHCPv6 configuration values: `[dhcpv6]` and `[[subnet6]]` (read by
//! `schema/v6.rs`). Plain data; the daemon turns it into the engine's links.

use std::net::Ipv6Addr;
use std::path::PathBuf;

use crate::provisioning::ClassSet;

/// Default binding file of the DHCPv6 server.
pub const DEFAULT_LEASE_FILE6: &str = "/var/lib/xdhcpd/bindings6.db";

/// `[dhcpv6]` plus the `[[subnet6]]` list. No subnet6: DHCPv6 is not served.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct V6Config {
    /// `lease-file`: the v6 binding file.
    pub lease_file: PathBuf,
    /// `capacity`: binding records in the file (addresses plus prefixes).
    pub capacity: u32,
    /// `trusted-relays`: relay source addresses whose Relay-Forward messages are served.
    pub trusted_relays: Vec<Ipv6Addr>,
    /// `decline-hold`: seconds a declined address stays out of the pools.
    pub decline_hold: u32,
    /// `leasequery-allow`: sources (address or network) whose RFC 5007 Leasequery is
    /// answered. `None`: the trusted relays (see [`V6Config::leasequery_allow`]).
    pub leasequery_allow: Option<Vec<(Ipv6Addr, u8)>>,
    /// `server-duid`: a fixed server DUID (hex); None = DUID-LLT generated once and kept
    /// in the binding file.
    pub server_duid: Option<Vec<u8>>,
    /// The links.
    pub subnets: Vec<Subnet6>,
}

impl Default for V6Config {
    fn default() -> Self {
        V6Config {
            lease_file: PathBuf::from(DEFAULT_LEASE_FILE6),
            capacity: 65536,
            trusted_relays: Vec::new(),
            decline_hold: 3600,
            leasequery_allow: None,
            server_duid: None,
            subnets: Vec::new(),
        }
    }
}

impl V6Config {
    /// The sources whose Leasequery is answered: `leasequery-allow` when set, else each
    /// trusted relay (as a /128).
    pub fn leasequery_allow(&self) -> Vec<(Ipv6Addr, u8)> {
        match &self.leasequery_allow {
            Some(l) => l.clone(),
            None => self.trusted_relays.iter().map(|&a| (a, 128)).collect(),
        }
    }
}

/// A prefix pool: delegated prefixes of `delegated_len` carved from `prefix`/`prefix_len`.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct PdPool6 {
    /// The pool's prefix.
    pub prefix: Ipv6Addr,
    /// Its length.
    pub prefix_len: u8,
    /// Delegated length.
    pub delegated_len: u8,
}

/// Vendor-specific information (option 17) for one enterprise number.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct VendorOption6 {
    /// Enterprise number (e.g. 4491 CableLabs).
    pub enterprise: u32,
    /// (sub-option code, data).
    pub options: Vec<(u16, Vec<u8>)>,
}

/// Who may draw from a `[[subnet6.pool]]` or `[[subnet6.pd-pool]]` (the same rules as a
/// DHCPv4 pool's: `allow`, `deny`, `deny-unknown`).
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct PoolAccess6 {
    /// `allow`: when not empty, only members of one of these classes.
    pub allow: ClassSet,
    /// `deny`: never members of these classes (wins over `allow`).
    pub deny: ClassSet,
    /// `deny-unknown`: only registered clients (a DUID with a `[[subnet6.reservation]]`).
    pub deny_unknown: bool,
}

/// A reservation by DUID.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Reservation6 {
    /// The client's DUID.
    pub duid: Vec<u8>,
    /// Its address.
    pub address: Option<Ipv6Addr>,
    /// Its delegated prefix and length.
    pub prefix: Option<(Ipv6Addr, u8)>,
}

/// One `[[subnet6]]`.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Subnet6 {
    /// Position in the file.
    pub index: usize,
    /// `prefix`: the on-link prefix.
    pub prefix: Ipv6Addr,
    /// Its length.
    pub prefix_len: u8,
    /// `interface`: directly connected clients arrive here (None: the server interface
    /// when this is the only subnet6).
    pub interface: Option<String>,
    /// `[[subnet6.pool]]` ranges.
    pub pools: Vec<(Ipv6Addr, Ipv6Addr)>,
    /// Their `allow` / `deny` / `deny-unknown` (parallel to `pools`).
    pub pool_access: Vec<PoolAccess6>,
    /// `[[subnet6.pd-pool]]`.
    pub pd_pools: Vec<PdPool6>,
    /// Their `allow` / `deny` / `deny-unknown` (parallel to `pd_pools`).
    pub pd_pool_access: Vec<PoolAccess6>,
    /// `deny-unknown`: unregistered clients get no answer on this link.
    pub deny_unknown: bool,
    /// `preferred-time`.
    pub preferred: u32,
    /// `valid-time`.
    pub valid: u32,
    /// `renew-time` (T1; 0 = half the preferred lifetime).
    pub t1: u32,
    /// `rebind-time` (T2; 0 = 0.8 of the preferred lifetime).
    pub t2: u32,
    /// `rapid-commit`.
    pub rapid_commit: bool,
    /// `dns-servers` (option 23).
    pub dns_servers: Vec<Ipv6Addr>,
    /// `domain-search` (option 24).
    pub domain_search: Vec<String>,
    /// `ntp-servers` (option 56).
    pub ntp_servers: Vec<Ipv6Addr>,
    /// `[[subnet6.vendor-option]]` grouped by enterprise (option 17).
    pub vendor_options: Vec<VendorOption6>,
    /// `[[subnet6.reservation]]`.
    pub reservations: Vec<Reservation6>,
}

/// Parses `addr/len` (host bits must be zero).
pub fn parse_prefix6(s: &str) -> Result<(Ipv6Addr, u8), String> {
    let (a, l) = s
        .trim()
        .split_once('/')
        .ok_or_else(|| format!("{s} is not an IPv6 prefix (expected addr/len)"))?;
    let a: Ipv6Addr = a
        .parse()
        .map_err(|_| format!("{a} is not an IPv6 address"))?;
    let l: u8 = l
        .parse()
        .ok()
        .filter(|&l| l <= 128)
        .ok_or_else(|| format!("{l} is not a prefix length (0..=128)"))?;
    let m = mask6(l);
    if u128::from(a) & !m != 0 {
        return Err(format!(
            "{s} has host bits set; did you mean {}/{l}?",
            Ipv6Addr::from(u128::from(a) & m)
        ));
    }
    Ok((a, l))
}

/// The mask of a prefix length.
pub fn mask6(len: u8) -> u128 {
    match len {
        0 => 0,
        l if l >= 128 => u128::MAX,
        l => u128::MAX << (128 - u32::from(l)),
    }
}

/// `a` is inside `p`/`len`.
pub fn in_prefix6(p: Ipv6Addr, len: u8, a: Ipv6Addr) -> bool {
    u128::from(p) & mask6(len) == u128::from(a) & mask6(len)
}
