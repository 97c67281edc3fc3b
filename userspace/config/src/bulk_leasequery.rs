//! The `[bulk-leasequery]` section: RFC 6926 bulk leasequery over TCP (off when absent).
//!
//! ```toml
//! [bulk-leasequery]
//! listen = "0.0.0.0:67"      # TCP listener (ip:port; default port 67)
//! max-connections = 16       # connections served at once; more are refused
//! idle-timeout = 60          # seconds a connection may stay silent with no query running
//! active-queue = 16384       # RFC 7724: changes queued per subscriber before it is cut off
//! ```
//! Who may ask: `server.leasequery-allow` (as for RFC 4388 over UDP).

use std::net::SocketAddr;

use super::error::Errors;
use super::reader::{string, u32_in, Table};

pub(crate) const BULK_LEASEQUERY_KEYS: &[&str] =
    &["listen", "max-connections", "idle-timeout", "active-queue"];

/// A validated `[bulk-leasequery]` section.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct BulkLeasequeryConfig {
    /// TCP listen address.
    pub listen: SocketAddr,
    /// Connections served at once; one more is accepted and closed at once (counted).
    pub max_connections: u32,
    /// Seconds a connection may stay without input while no query runs.
    pub idle_timeout: u32,
    /// RFC 7724 active leasequery: binding changes queued per subscriber; a subscriber
    /// whose queue is full is cut off (DataMissing) rather than slow anything down.
    pub active_queue: u32,
}

impl Default for BulkLeasequeryConfig {
    fn default() -> Self {
        BulkLeasequeryConfig {
            listen: SocketAddr::from(([0, 0, 0, 0], 67)),
            max_connections: 16,
            idle_timeout: 60,
            active_queue: 16_384,
        }
    }
}

pub(crate) fn read_bulk_leasequery(
    errs: &mut Errors<'_>,
    t: &Table<'_, '_>,
) -> Option<BulkLeasequeryConfig> {
    let d = BulkLeasequeryConfig::default();
    let mut ok = true;
    let listen = match t.get("listen") {
        None => d.listen,
        Some(f) => match string(errs, &f) {
            None => {
                ok = false;
                d.listen
            }
            Some(s) => {
                let s = s.trim();
                let parsed = s
                    .parse::<SocketAddr>()
                    .ok()
                    .or_else(|| s.parse::<std::net::IpAddr>().ok().map(|ip| (ip, 67).into()));
                match parsed {
                    Some(a) if a.port() != 0 => a,
                    _ => {
                        errs.push(
                            &f.span(),
                            &f.path,
                            format!(
                                "{s:?} is not a listen address: expected ip or ip:port \
                                 (\"0.0.0.0:67\", \"10.0.0.1\")"
                            ),
                        );
                        ok = false;
                        d.listen
                    }
                }
            }
        },
    };
    let mut num = |key: &str, lo: u32, hi: u32, what: &str, default: u32| match t.get(key) {
        None => default,
        Some(f) => u32_in(errs, &f, lo, hi, what).unwrap_or_else(|| {
            ok = false;
            default
        }),
    };
    let max_connections = num(
        "max-connections",
        1,
        1024,
        "between 1 and 1024 connections",
        d.max_connections,
    );
    let idle_timeout = num(
        "idle-timeout",
        1,
        86_400,
        "between 1 and 86400 seconds",
        d.idle_timeout,
    );
    let active_queue = num(
        "active-queue",
        16,
        1 << 20,
        "between 16 and 1048576 changes",
        d.active_queue,
    );
    ok.then_some(BulkLeasequeryConfig {
        listen,
        max_connections,
        idle_timeout,
        active_queue,
    })
}
