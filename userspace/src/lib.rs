//! xdhcpd: the daemon's library. See `ARCHITECTURE.md` at the repository root
//! for the map of modules and the way of one packet through them.

pub mod alarms;
pub mod api;
pub mod clock;
pub mod control;
pub mod docs;
pub mod events;
pub mod failover;
pub mod leases;
pub mod lq6;
pub mod lq_client;
pub mod registrations;
pub mod sd_notify;
pub mod server;
pub mod tls;

/// `xdhcpd --version`: the crate version and the git commit it was built from.
pub const VERSION: &str = concat!(
    env!("CARGO_PKG_VERSION"),
    " (commit ",
    env!("XDHCPD_GIT_COMMIT"),
    ")"
);
