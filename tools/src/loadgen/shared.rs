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
    /// Relay mode: the RFC 6925 relay-id every relayed request carries (empty: none).
    pub relay_id: super::request::RelayId,
    pub client_id: bool,
    pub broadcast: bool,
    pub mac_salt: u8,
    /// Blast DISCOVERs as fast as possible, ignore replies (measures the sender).
    pub self_test: bool,
    /// DHCPv6 instead of DHCPv4: SARR (Solicit, Advertise, Request, Reply) for the
    /// DORA phases, Renew / Reply for the renew phase.
    pub v6: Option<super::v6::V6Config>,
    /// Address ranges (network, prefix length) the report counts the clients' final
    /// addresses in (`--pool`).
    pub pools: Vec<(Ipv4Addr, u8)>,
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
    /// `--scenario forcerenew`: every client's RFC 6704 key (empty otherwise).
    pub keys: super::forcerenew::KeyBook,
    /// `--scenario forcerenew`: clients whose reconfiguration ended (new ACK, or the
    /// renewal ACKed), all threads together (`--count` ends the run on it).
    pub reconf_done: AtomicU64,
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
    pub reconf: ReconfCounts,
}

/// `--scenario forcerenew`: what the clients did with the FORCERENEWs they received
/// (one thread's, or merged).
#[derive(Clone, Debug, Default, serde::Serialize)]
pub struct ReconfCounts {
    /// ACKs that carried an RFC 6704 reconfigure key (option 90, type 1).
    pub keys_received: u64,
    /// FORCERENEW messages received for our clients.
    pub forcerenews: u64,
    /// ... whose HMAC-MD5 matched the client's key.
    pub verified: u64,
    /// ... refused: digest mismatch, the client has no key, no option 90 at all, option
    /// 90 of another kind (token, other algorithm), replay value not above the last one.
    pub bad_digest: u64,
    pub no_key: u64,
    pub unauthenticated: u64,
    pub unsupported: u64,
    pub replayed: u64,
    /// Verified, but the client was not bound and idle (already reconfiguring: the
    /// server's retry of a FORCERENEW already acted on) or not listening yet / any more.
    pub ignored: u64,
    /// Reconfigurations started (a client left BOUND to renew).
    pub started: u64,
    /// The renewal answered with NAK (the binding deleted, as RFC 3203 expects).
    pub renew_naks: u64,
    /// The renewal answered with ACK (the server kept the binding: not renumbered).
    pub renew_acks: u64,
    /// New ACK after NAK and DISCOVER.
    pub completed: u64,
    /// ... with another address than before.
    pub moved: u64,
    /// At the end: clients that took a FORCERENEW and hold no address.
    pub lost: u64,
    /// At the end: clients that took a FORCERENEW, did not finish, still hold the old address.
    pub unfinished: u64,
    /// At the end: bound clients that never took a FORCERENEW.
    pub not_reached: u64,
    /// First FORCERENEW taken / last reconfiguration finished, ns since the run started.
    #[serde(skip)]
    pub first_ns: u64,
    #[serde(skip)]
    pub last_ns: u64,
}

impl ReconfCounts {
    pub fn merge(&mut self, o: &ReconfCounts) {
        self.keys_received += o.keys_received;
        self.forcerenews += o.forcerenews;
        self.verified += o.verified;
        self.bad_digest += o.bad_digest;
        self.no_key += o.no_key;
        self.unauthenticated += o.unauthenticated;
        self.unsupported += o.unsupported;
        self.replayed += o.replayed;
        self.ignored += o.ignored;
        self.started += o.started;
        self.renew_naks += o.renew_naks;
        self.renew_acks += o.renew_acks;
        self.completed += o.completed;
        self.moved += o.moved;
        self.lost += o.lost;
        self.unfinished += o.unfinished;
        self.not_reached += o.not_reached;
        if o.first_ns != 0 && (self.first_ns == 0 || o.first_ns < self.first_ns) {
            self.first_ns = o.first_ns;
        }
        self.last_ns = self.last_ns.max(o.last_ns);
    }
}

/// Result of one thread.
#[derive(Clone, Debug, Default)]
pub struct ThreadReport {
    pub phases: Vec<PhaseStats>,
    pub totals: ThreadTotals,
    /// Self-test: frames sent and the time taken.
    pub blast: Option<(u64, u64)>,
}
