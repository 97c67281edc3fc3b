//! xdhcpd-dhcpv4: the DHCPv4 wire format and the sans-IO server engine.
//!
//! The engine takes a DHCP payload, the receive metadata and a clock value
//! and returns a [`Decision`]: a reply written into a caller buffer with its
//! delivery, or a counted reason for silence. It never touches sockets,
//! threads or the wall clock, so it runs unchanged under the AF_XDP workers,
//! the UDP fallback, benchmarks and tests.
#![forbid(unsafe_code)]
#![deny(missing_docs)]

pub mod bulk_leasequery;
pub mod caps;
pub mod delivery;
pub mod engine;
pub mod leasequery;
/// MD5 and HMAC-MD5 (the shared `xdhcpd-md5` crate).
pub use xdhcpd_md5 as md5;
pub mod stats;
pub mod trust;
pub mod wire;

pub use delivery::{Delivery, Destination, LinkDest};
pub use engine::{Decision, Engine, EngineShared, Registered, RegistrationView, RxMeta, Silence};

pub use stats::{EngineStats, StatsSnapshot};
#[cfg(test)]
mod active_leasequery_tests;
#[cfg(test)]
mod bootp_tests;
#[cfg(test)]
mod bulk_leasequery_tests;
#[cfg(test)]
mod caps_tests;
#[cfg(test)]
mod claims_tests;
#[cfg(test)]
mod class_tests;
#[cfg(test)]
mod engine_tests;
#[cfg(test)]
mod failover_tests;
#[cfg(test)]
mod fuzz_regressions;
#[cfg(test)]
mod leasequery_tests;
#[cfg(test)]
mod reconfigure_tests;
#[cfg(test)]
mod registration_tests;
#[cfg(test)]
mod relay_trust_tests;
#[cfg(test)]
mod test_support;
