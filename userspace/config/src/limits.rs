//! The `[limits]` section: caps on what one access circuit or one subscriber may hold, and
//! the XDP drop of unregistered clients.
//!
//! ```toml
//! [limits]
//! max-leases-per-circuit = 4     # addresses held per relay network + option 82 circuit-id; 0 = off
//! max-leases-per-remote-id = 8   # addresses held per option 82 remote-id; 0 = off
//! xdp-drop-unknown = true        # drop unregistered chaddrs in XDP (needs deny-unknown everywhere)
//! xdp-known-macs = 1048576       # size of the XDP map of known hardware addresses
//! ```

use super::error::Errors;
use super::reader::{boolean, u32_in, Table};

pub(crate) const LIMITS_KEYS: &[&str] = &[
    "max-leases-per-circuit",
    "max-leases-per-remote-id",
    "xdp-drop-unknown",
    "xdp-known-macs",
];

/// Default size of the XDP map of known hardware addresses.
pub const DEFAULT_XDP_KNOWN_MACS: u32 = 1 << 20;

/// A validated `[limits]` section; the default is no cap and no XDP drop.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct LimitsConfig {
    /// Addresses (offered or bound) one circuit may hold: the relay's network (the link
    /// its giaddr selects) + option 82 circuit-id (0 = off).
    pub max_leases_per_circuit: u32,
    /// Addresses (offered or bound) one option 82 remote-id may hold (0 = off).
    pub max_leases_per_remote_id: u32,
    /// Drop DHCPv4 requests from unregistered hardware addresses in the XDP program
    /// (only when every subnet the daemon serves refuses unknown clients).
    pub xdp_drop_unknown: bool,
    /// Entries of the XDP map of known hardware addresses (registrations and hosts).
    pub xdp_known_macs: u32,
}

impl Default for LimitsConfig {
    fn default() -> Self {
        LimitsConfig {
            max_leases_per_circuit: 0,
            max_leases_per_remote_id: 0,
            xdp_drop_unknown: false,
            xdp_known_macs: DEFAULT_XDP_KNOWN_MACS,
        }
    }
}

impl LimitsConfig {
    /// True when a lease cap is set.
    pub fn caps_on(&self) -> bool {
        self.max_leases_per_circuit != 0 || self.max_leases_per_remote_id != 0
    }
}

pub(crate) fn read_limits(errs: &mut Errors<'_>, t: &Table<'_, '_>) -> LimitsConfig {
    let d = LimitsConfig::default();
    let cap = |errs: &mut Errors<'_>, key: &str| {
        t.get(key)
            .and_then(|f| u32_in(errs, &f, 0, 1_000_000, "between 0 and 1000000"))
            .unwrap_or(0)
    };
    let max_leases_per_circuit = cap(errs, "max-leases-per-circuit");
    let max_leases_per_remote_id = cap(errs, "max-leases-per-remote-id");
    let xdp_drop_unknown = t
        .get("xdp-drop-unknown")
        .and_then(|f| boolean(errs, &f))
        .unwrap_or(false);
    let xdp_known_macs = t
        .get("xdp-known-macs")
        .and_then(|f| u32_in(errs, &f, 1, 1 << 26, "between 1 and 67108864"))
        .unwrap_or(d.xdp_known_macs);
    LimitsConfig {
        max_leases_per_circuit,
        max_leases_per_remote_id,
        xdp_drop_unknown,
        xdp_known_macs,
    }
}
