//! Carrier provisioning: client classes, shared networks, per-scope settings (options,
//! siaddr/file, lease times, host-name from the MAC) and registered hosts.
//!
//! Everything here is compiled at load time for the packet path: a class is a set of
//! byte-string matchers, a client's classes are one [`ClassSet`] (a `u64` bitset, so at
//! most [`MAX_CLASSES`] classes), a scope's options are pre-encoded TLVs
//! ([`SubnetOptions`]) with a bitmap of the codes present.
//!
//! Evaluation order and conflicts (documented in the README):
//! - Every class is evaluated once per message, in file order; a client may be in several.
//! - A single-valued setting (an option code, `next-server`, `boot-file`, a lease time,
//!   `host-name-from-mac`) comes from the first scope that sets it in the order
//!   host (registration) > class (the client's classes in file order: the first one that
//!   sets it wins) > pool > subnet > shared network > global (`[lease]`).

use std::net::Ipv4Addr;

use crate::net::Ipv4Net;
use crate::options::SubnetOptions;
use crate::ReservationKey;

/// Most classes a configuration may declare (one bit each in a [`ClassSet`]).
pub const MAX_CLASSES: usize = 64;

/// A class's position in `[[class]]` file order (0..MAX_CLASSES).
pub type ClassId = u8;

/// A set of classes, bit `i` = class `i`.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Hash)]
pub struct ClassSet(pub u64);

impl ClassSet {
    /// The empty set.
    pub const EMPTY: ClassSet = ClassSet(0);

    /// The set holding only `id`.
    #[inline]
    pub fn one(id: ClassId) -> ClassSet {
        ClassSet(1u64 << (id & 63))
    }

    /// Whether `id` is in the set.
    #[inline]
    pub fn contains(self, id: ClassId) -> bool {
        self.0 & (1u64 << (id & 63)) != 0
    }

    /// Adds `id`.
    #[inline]
    pub fn insert(&mut self, id: ClassId) {
        self.0 |= 1u64 << (id & 63);
    }

    /// Whether the sets share a class.
    #[inline]
    pub fn intersects(self, other: ClassSet) -> bool {
        self.0 & other.0 != 0
    }

    /// Whether the set is empty.
    #[inline]
    pub fn is_empty(self) -> bool {
        self.0 == 0
    }

    /// The classes in ascending id (= file) order.
    #[inline]
    pub fn iter(self) -> impl Iterator<Item = ClassId> {
        let mut bits = self.0;
        std::iter::from_fn(move || {
            if bits == 0 {
                return None;
            }
            let i = bits.trailing_zeros() as ClassId;
            bits &= bits - 1;
            Some(i)
        })
    }
}

/// A byte-string test on one client field.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum BytesMatch {
    /// The field is exactly these bytes.
    Exact(Vec<u8>),
    /// The field starts with these bytes.
    Prefix(Vec<u8>),
    /// The field contains these bytes somewhere.
    Contains(Vec<u8>),
}

impl BytesMatch {
    /// Whether `v` passes (allocation-free; a first-byte check before any slice compare, so
    /// most misses cost no `memcmp` call).
    #[inline]
    pub fn test(&self, v: &[u8]) -> bool {
        match self {
            BytesMatch::Exact(p) => {
                v.len() == p.len() && v.first() == p.first() && v == p.as_slice()
            }
            BytesMatch::Prefix(p) => {
                v.len() >= p.len() && v.first() == p.first() && v.starts_with(p)
            }
            BytesMatch::Contains(p) => {
                let Some((&first, rest)) = p.split_first() else {
                    return true;
                };
                if v.len() < p.len() {
                    return false;
                }
                (0..=v.len() - p.len()).any(|i| v[i] == first && v[i + 1..i + p.len()] == *rest)
            }
        }
    }
}

/// The conditions of one class; every condition given must hold (AND). A class with no
/// condition has only the members that registrations put in it (`group`).
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct ClassMatch {
    /// Option 60 (vendor class identifier).
    pub vendor_class: Vec<BytesMatch>,
    /// Option 77 (user class), the whole value.
    pub user_class: Vec<BytesMatch>,
    /// Option 82 sub-option 1 (circuit id).
    pub circuit_id: Option<BytesMatch>,
    /// Option 82 sub-option 2 (remote id).
    pub remote_id: Option<BytesMatch>,
    /// Option 82 sub-option 6 (subscriber id, RFC 3993).
    pub subscriber_id: Option<BytesMatch>,
    /// `Some(true)`: option 82 remote id present and equal to chaddr (a cable modem, the
    /// CMTS puts the modem's MAC there); `Some(false)`: present and different (a CPE behind it).
    pub remote_id_is_chaddr: Option<bool>,
    /// Option 61 exactly (type byte included).
    pub client_id: Option<Vec<u8>>,
    /// chaddr (Ethernet, 6 bytes) starts with these 1..=6 bytes (an OUI is 3).
    pub hw_prefix: Option<Vec<u8>>,
    /// giaddr inside one of these networks (a directly attached client has giaddr 0).
    pub giaddr: Vec<Ipv4Net>,
    /// The client's registration names this class as its group.
    pub group: Option<ClassId>,
    /// `Some(true)`: only registered (known) clients; `Some(false)`: only unknown ones.
    pub known: Option<bool>,
    /// DHCPv6 only: the enterprise number of the client's Vendor Class option (16) (e.g.
    /// 4491 CableLabs). A class with it never matches a DHCPv4 client.
    pub enterprise: Option<u32>,
}

impl ClassMatch {
    /// Whether the class has any condition.
    #[inline]
    pub fn has_conditions(&self) -> bool {
        !self.vendor_class.is_empty()
            || !self.user_class.is_empty()
            || self.circuit_id.is_some()
            || self.remote_id.is_some()
            || self.subscriber_id.is_some()
            || self.remote_id_is_chaddr.is_some()
            || self.client_id.is_some()
            || self.hw_prefix.is_some()
            || !self.giaddr.is_empty()
            || self.group.is_some()
            || self.known.is_some()
            || self.enterprise.is_some()
    }
}

/// Lease-time overrides of a scope (None: inherited).
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct TimeOverride {
    /// `default-time`.
    pub default: Option<u32>,
    /// `min-time`.
    pub min: Option<u32>,
    /// `max-time`.
    pub max: Option<u32>,
}

impl TimeOverride {
    /// Whether any time is set.
    pub fn any(&self) -> bool {
        self.default.is_some() || self.min.is_some() || self.max.is_some()
    }
}

/// What one scope (class, pool, shared network) hands out, pre-encoded.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct Settings {
    /// Encoded options (named keys, `[[...options]]`, vendor spaces 43/122/125).
    pub options: SubnetOptions,
    /// Bit `c` set when option `c` is in `options` (4 x 64 bits).
    pub codes: [u64; 4],
    /// `siaddr`.
    pub next_server: Option<Ipv4Addr>,
    /// The BOOTP `file` field (also option 67 in `options`).
    pub boot_file: Option<String>,
    /// Lease-time overrides.
    pub times: TimeOverride,
    /// `host-name-from-mac`: option 12 = this prefix + the chaddr in 12 lowercase hex digits.
    pub host_name_from_mac: Option<String>,
}

impl Settings {
    /// Recomputes `codes` from `options` (call after the last `options.set`).
    pub fn seal(&mut self) {
        self.codes = [0; 4];
        for c in self.options.codes() {
            self.codes[usize::from(c >> 6)] |= 1u64 << (c & 63);
        }
    }

    /// Whether the scope sets nothing (cheap: the code bitmap, not the option table).
    #[inline]
    pub fn is_empty(&self) -> bool {
        self.codes == [0; 4]
            && self.next_server.is_none()
            && self.boot_file.is_none()
            && !self.times.any()
            && self.host_name_from_mac.is_none()
    }
}

/// A `[[class]]`.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Class {
    /// Its id (position in file order).
    pub id: ClassId,
    /// `name`, unique.
    pub name: String,
    /// When a client is a member.
    pub matches: ClassMatch,
    /// What members get.
    pub settings: Settings,
    /// What DHCPv6 members get: `[[class.vendor-option]]`, option 17 per enterprise.
    pub vendor_options6: Vec<crate::v6::VendorOption6>,
}

/// The access rules and settings of one `[[subnet.pool]]` (parallel to `Subnet::pools`).
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct PoolRules {
    /// `allow`: when not empty, only members of one of these classes draw from the pool.
    pub allow: ClassSet,
    /// `deny`: members of these classes never draw from the pool.
    pub deny: ClassSet,
    /// `deny-unknown`: unregistered clients never draw from the pool.
    pub deny_unknown: bool,
    /// Pool-level settings.
    pub settings: Settings,
}

impl PoolRules {
    /// Whether a client in `classes` (registered when `known`) may draw from the pool.
    #[inline]
    pub fn permits(&self, classes: ClassSet, known: bool) -> bool {
        (known || !self.deny_unknown)
            && !classes.intersects(self.deny)
            && (self.allow.is_empty() || classes.intersects(self.allow))
    }
}

/// A `[[shared-network]]`: subnets on one link (behind one relay address).
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct SharedNetwork {
    /// Position in the file.
    pub index: usize,
    /// `name`, unique.
    pub name: String,
    /// Member subnets (indexes into `Config::subnets`), in file order.
    pub subnets: Vec<usize>,
    /// giaddrs (outside every member cidr) that select this network.
    pub relay_addresses: Vec<Ipv4Addr>,
    /// `deny-unknown`: unregistered clients get no answer anywhere in the network.
    pub deny_unknown: bool,
    /// Network-level settings (below subnet in precedence).
    pub settings: Settings,
}

/// A `[[host]]`: a registered client without a fixed address (KNOWN, optionally in a group).
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Host {
    /// How the client is recognised.
    pub key: ReservationKey,
    /// `group`: the class the registration puts the client in.
    pub group: Option<ClassId>,
}
