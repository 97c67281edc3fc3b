//! xdhcpd: the daemon's library. See `ARCHITECTURE.md` at the repository root
//! for the map of modules and the way of one packet through them.

pub mod api;
pub mod clock;
pub mod control;
pub mod failover;
pub mod leases;
pub mod lq_client;
pub mod server;
