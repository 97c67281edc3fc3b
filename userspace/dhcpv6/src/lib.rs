//! xdhcpd-dhcpv6: the DHCPv6 wire format and the sans-IO server engine
//! (RFC 8415: Solicit/Advertise/Request/Reply, Rapid Commit, Renew, Rebind,
//! Release, Decline, Confirm, Information-request; IA_NA and IA_PD; relays
//! with interface-id, remote-id (RFC 4649), subscriber-id (RFC 4580) and the
//! client link-layer address (RFC 6939) stored with the binding), and
//! server-initiated Reconfigure with the reconfigure key (RFC 8415 §18.3.11, §20.4).
//!
//! The engine takes a UDP payload, the receive metadata, a clock value and
//! the binding table, and returns a [`Decision6`]: a reply written into a
//! caller buffer with its destination, or a counted reason for silence.
#![forbid(unsafe_code)]
#![deny(missing_docs)]

pub mod config;
pub mod engine;
pub mod reconfigure;
pub mod stats;
pub mod wire;

pub use config::{AddrPool6, Class6, Config6, Link6, LinkAccess6, PrefixPool6, Reservation6};
pub use engine::{
    duid_en, duid_llt, Decision6, Engine6, RxMeta6, Silence6, MAX_LQ_BINDINGS, QUERY_BY_ADDRESS,
    QUERY_BY_CLIENTID,
};
pub use stats::{Stats6, Stats6Snapshot};

#[cfg(test)]
mod tests;
