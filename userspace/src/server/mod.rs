//! The daemon: drivers around the sans-IO engine (workers, flusher, sweeper,
//! stats reporter) and the start-up that wires them.

pub mod active_feed;
pub mod bulk_lq;
pub mod commit;
pub mod daemon;
pub mod iface;
pub mod known_macs;
pub mod latency;
pub mod nft_guard;
pub mod packet_io;
pub mod privilege;
pub mod reconfigure;
pub mod reload;
pub mod sched;
pub mod v6;
pub mod worker;

pub use daemon::{run, Daemon, RunOptions};
pub use reload::{ReloadError, ReloadReport, ReloadStats, Reloader};
