//! The `[rate-limit]` section: token buckets the XDP program applies to DHCPv4 requests
//! before they cost an AF_XDP copy (XDP mode only; `--io udp` has no equivalent).
//!
//! ```toml
//! [rate-limit]
//! client-rate = 10      # requests/s per client hardware address (chaddr); 0 = off
//! client-burst = 20     # requests admitted at once before the rate applies
//! relay-rate = 5000     # requests/s per relay agent (giaddr); 0 = off
//! relay-burst = 10000
//! circuit-rate = 20     # requests/s per access circuit (giaddr + option 82 circuit-id)
//! circuit-burst = 40
//! ```

use super::error::Errors;
use super::reader::{u32_in, Table};

pub(crate) const RATE_LIMIT_KEYS: &[&str] = &[
    "client-rate",
    "client-burst",
    "relay-rate",
    "relay-burst",
    "circuit-rate",
    "circuit-burst",
];

/// A validated `[rate-limit]` section; all zero (the default) = no limit.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct RateLimitConfig {
    /// Requests per second per chaddr (0 = off).
    pub client_rate: u32,
    /// Burst per chaddr (>= 1 when `client_rate` is set).
    pub client_burst: u32,
    /// Requests per second per giaddr (0 = off).
    pub relay_rate: u32,
    /// Burst per giaddr (>= 1 when `relay_rate` is set).
    pub relay_burst: u32,
    /// Requests per second per (giaddr, circuit-id) (0 = off).
    pub circuit_rate: u32,
    /// Burst per circuit (>= 1 when `circuit_rate` is set).
    pub circuit_burst: u32,
}

impl RateLimitConfig {
    /// True when any limit is set.
    pub fn any(&self) -> bool {
        self.client_rate != 0 || self.relay_rate != 0 || self.circuit_rate != 0
    }
}

const MAX_RATE: u32 = 100_000_000;

pub(crate) fn read_rate_limit(errs: &mut Errors<'_>, t: &Table<'_, '_>) -> RateLimitConfig {
    let mut get = |key: &str| {
        t.get(key)
            .and_then(|f| u32_in(errs, &f, 0, MAX_RATE, "between 0 and 100000000"))
    };
    let client_rate = get("client-rate").unwrap_or(0);
    let client_burst = get("client-burst");
    let relay_rate = get("relay-rate").unwrap_or(0);
    let relay_burst = get("relay-burst");
    let circuit_rate = get("circuit-rate").unwrap_or(0);
    let circuit_burst = get("circuit-burst");
    // A burst of 0 admits nothing: take it as 1. Without a burst: one second's worth.
    let burst = |rate: u32, b: Option<u32>| match b {
        _ if rate == 0 => 0,
        Some(b) => b.max(1),
        None => rate,
    };
    RateLimitConfig {
        client_rate,
        client_burst: burst(client_rate, client_burst),
        relay_rate,
        relay_burst: burst(relay_rate, relay_burst),
        circuit_rate,
        circuit_burst: burst(circuit_rate, circuit_burst),
    }
}
