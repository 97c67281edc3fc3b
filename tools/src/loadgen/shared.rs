//! Run-wide settings, the state the engine threads share (live counters, the address book,
//! the stop flag), and what each thread reports at the end.

use std::net::Ipv4Addr;
use std::sync::atomic::{AtomicBool, AtomicU32, AtomicU64};
use std::time::Instant;

use super::addrbook::AddrBook;
use super::request::Peer;
use super::scenario::{PhaseStats, Scenario};

/// Run-wide settings shared by all threads.
#[derive(Clone, Debug)]
pub struct EngineConfig {
    pub scenario: Scenario,
    pub clients: u32,
    pub threads: u32,
    /// Total offered exchanges per second (open loop), split evenly over threads.
    pub rate: Option<u64>,
    /// Total outstanding exchanges (closed loop), split evenly over threads.
    pub concurrency: Option<u32>,
    pub duration_ns: Option<u64>,
    /// Total exchanges to start in the measured phase.
    pub count: Option<u64>,
    pub timeout_ns: u64,
    pub retries: u8,
    pub relay: Option<Ipv4Addr>,
    pub client_id: bool,
    pub broadcast: bool,
    pub mac_salt: u8,
    /// Blast DISCOVERs as fast as possible, ignore replies (measures the sender).
    pub self_test: bool,
    /// DHCPv6 instead of DHCPv4: SARR (Solicit, Advertise, Request, Reply) for the
    /// DORA phases, Renew / Reply for the renew phase.
    pub v6: Option<super::v6::V6Config>,
}

impl EngineConfig {
    /// Number of clients owned by thread `t`.
    pub fn clients_of(&self, t: u32) -> u32 {
        let (n, k) = (self.clients, self.threads);
        n / k + u32::from(t < n % k)
    }

    pub(super) fn share(&self, total: u64, t: u32) -> u64 {
        let k = u64::from(self.threads);
        total / k + u64::from(u64::from(t) < total % k)
    }
}

/// Live counters of one thread, read by the progress printer.
#[derive(Debug, Default)]
pub struct Live {
    pub phase: AtomicU32,
    pub sent: AtomicU64,
    pub answered: AtomicU64,
    pub drops: AtomicU64,
    pub naks: AtomicU64,
    pub tx_packets: AtomicU64,
    pub rx_frames: AtomicU64,
    pub outstanding: AtomicU64,
    pub busy_ns: AtomicU64,
    pub done: AtomicBool,
}

/// Everything threads share.
pub struct Shared {
    pub cfg: EngineConfig,
    pub t0: Instant,
    /// Addresses (DHCPv6: IA_NA addresses, folded by [`super::v6::fold`]).
    pub book: AddrBook,
    /// DHCPv6 delegated prefixes (folded); unused for DHCPv4.
    pub book_pd: AddrBook,
    /// Set by Ctrl-C or an error: stop starting exchanges, drain, finish.
    pub stop: AtomicBool,
    /// Threads that finished their warm-up.
    pub warmed: AtomicU32,
    pub live: Vec<Live>,
    pub peer: Peer,
}

impl Shared {
    pub fn now_ns(&self) -> u64 {
        self.t0.elapsed().as_nanos() as u64
    }
}

/// Per-thread totals beyond the phases.
#[derive(Clone, Debug, Default)]
pub struct ThreadTotals {
    pub rx_frames: u64,
    /// Frames that were not DHCP replies (other traffic, our own broadcasts).
    pub rx_other: u64,
    /// Replies with no matching outstanding exchange (late, duplicated, foreign).
    pub rx_stale: u64,
    pub forwarded: u64,
    pub forward_lost: u64,
    pub tx_packets: u64,
    pub kernel_rx_drops: u64,
    /// Time spent in loop iterations that moved packets, ns.
    pub busy_ns: u64,
    pub wall_ns: u64,
    pub port: String,
    pub duplicate_examples: Vec<(Ipv4Addr, u32, u32)>,
    pub duplicate_examples6: Vec<(std::net::Ipv6Addr, u32, u32)>,
}

/// Result of one thread.
#[derive(Clone, Debug, Default)]
pub struct ThreadReport {
    pub phases: Vec<PhaseStats>,
    pub totals: ThreadTotals,
    /// Self-test: frames sent and the time taken.
    pub blast: Option<(u64, u64)>,
}
