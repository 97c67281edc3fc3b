//! Types and constants shared by the XDP program (`xdhcpd-ebpf`) and the daemon.
//!
//! Everything here is `#[repr(C)]` plain data so both sides agree on the layout
//! of map keys and values without serialisation.
#![no_std]

/// UDP port of a DHCPv4 server.
pub const DHCPV4_SERVER_PORT: u16 = 67;
/// UDP port of a DHCPv6 server/relay.
pub const DHCPV6_SERVER_PORT: u16 = 547;
pub const DHCPV6_CLIENT_PORT: u16 = 546;
/// Default TCP port of DHCP failover (draft-ietf-dhc-failover-12).
pub const FAILOVER_PORT: u16 = 647;
/// UDP port of a DHCPv4 client (replies to a client go here).
pub const DHCPV4_CLIENT_PORT: u16 = 68;

/// Name of the `XskMap` (RX queue index -> AF_XDP socket).
pub const MAP_XSKS: &str = "XSKS";
/// Name of the per-CPU counter array (index = [`counter_index`]`(rx queue, Counter)`).
pub const MAP_COUNTERS: &str = "COUNTERS";
/// Name of the configuration array (index 0 = `XdpConfig`).
pub const MAP_CONFIG: &str = "CONFIG";
/// Name of the hash map of failover partner addresses allowed to reach the failover port.
pub const MAP_PARTNERS: &str = "PARTNERS";
/// Name of the rate-limit configuration array (index 0 = `RateLimitConfig`).
pub const MAP_RATE_LIMITS: &str = "RATE_LIMITS";
/// Name of the LRU hash of per-client (chaddr) token buckets.
pub const MAP_CLIENT_BUCKETS: &str = "CLIENT_BUCKETS";
/// Name of the LRU hash of per-relay (giaddr) token buckets.
pub const MAP_RELAY_BUCKETS: &str = "RELAY_BUCKETS";
/// Name of the LRU hash of per-circuit (giaddr + option 82 circuit-id) token buckets.
pub const MAP_CIRCUIT_BUCKETS: &str = "CIRCUIT_BUCKETS";
/// Name of the hash of known client hardware addresses ([`KnownMacKey`] -> 1), written by the
/// daemon (registrations and configured hosts); sized at load from `[limits] xdp-known-macs`.
pub const MAP_KNOWN_MACS: &str = "KNOWN_MACS";
/// Name of the array whose index 0 switches the unknown-client drop (non-zero = on).
pub const MAP_UNKNOWN_FILTER: &str = "UNKNOWN_FILTER";

/// Per-CPU counters kept by the XDP program. Userspace sums them across CPUs.
#[repr(u32)]
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Counter {
    /// Every frame the program looked at.
    Seen = 0,
    /// DHCP frames redirected to an AF_XDP socket.
    Redirected = 1,
    /// Frames handed to the kernel stack (not DHCP, or no socket for the queue).
    Passed = 2,
    /// Frames whose headers were truncated or inconsistent (passed to the kernel).
    Malformed = 3,
    /// DHCP frames passed because no socket was registered for the RX queue.
    NoSocket = 4,
    /// Frames to the failover port from an address that is not a configured partner (dropped).
    FailoverDropped = 5,
    /// Frames to the failover port from a configured partner (always passed).
    FailoverPassed = 6,
    /// DHCPv4 frames redirected.
    Dhcpv4 = 7,
    /// DHCPv6 frames redirected.
    Dhcpv6 = 8,
    /// DHCPv4 client messages dropped because this server is a failover standby that answers
    /// them in no case (`CFG_DHCPV4_STANDBY`).
    StandbyDropped = 9,
    /// DHCPv4 requests dropped by the per-client (chaddr) token bucket.
    RateLimitClient = 10,
    /// DHCPv4 requests dropped by the per-relay token bucket (the IPv4 sender of a message
    /// with giaddr set).
    RateLimitRelay = 11,
    /// With the failover guard on: frames dropped because their headers could not be read far
    /// enough to rule out TCP to the failover port (malformed, too many IPv6 extension
    /// headers, a TCP header split over fragments). The guard fails closed.
    GuardUnparsable = 12,
    /// DHCPv4 requests dropped by the per-circuit (relay + circuit-id) token bucket.
    RateLimitCircuit = 13,
    /// DHCPv4 DISCOVERs and REQUESTs dropped because their chaddr is not in `KNOWN_MACS`
    /// while the unknown-client drop is on (`UNKNOWN_FILTER`).
    UnknownDropped = 14,
}

/// Number of counters kept per RX queue in `MAP_COUNTERS`.
pub const COUNTER_COUNT: u32 = 15;

/// RX queues counted apart in `MAP_COUNTERS`; frames of a higher queue count in the last one.
pub const COUNTER_QUEUES: u32 = 64;

/// Entries of `MAP_COUNTERS`: [`COUNTER_COUNT`] counters for each of [`COUNTER_QUEUES`] queues.
pub const COUNTER_ENTRIES: u32 = COUNTER_COUNT * COUNTER_QUEUES;

/// Index in `MAP_COUNTERS` of counter `counter` (`Counter as u32`) of RX queue `queue`.
#[inline(always)]
pub const fn counter_index(queue: u32, counter: u32) -> u32 {
    let q = if queue < COUNTER_QUEUES {
        queue
    } else {
        COUNTER_QUEUES - 1
    };
    q * COUNTER_COUNT + counter
}

impl Counter {
    /// All counters in index order, with their display names.
    pub const ALL: [(Counter, &'static str); COUNTER_COUNT as usize] = [
        (Counter::Seen, "seen"),
        (Counter::Redirected, "redirected"),
        (Counter::Passed, "passed"),
        (Counter::Malformed, "malformed"),
        (Counter::NoSocket, "no_socket"),
        (Counter::FailoverDropped, "failover_dropped"),
        (Counter::FailoverPassed, "failover_passed"),
        (Counter::Dhcpv4, "dhcpv4"),
        (Counter::Dhcpv6, "dhcpv6"),
        (Counter::StandbyDropped, "standby_dropped"),
        (Counter::RateLimitClient, "ratelimit_client_dropped"),
        (Counter::RateLimitRelay, "ratelimit_relay_dropped"),
        (Counter::GuardUnparsable, "guard_unparsable_dropped"),
        (Counter::RateLimitCircuit, "ratelimit_circuit_dropped"),
        (Counter::UnknownDropped, "unknown_dropped"),
    ];
}

/// Runtime switches for the XDP program, stored at index 0 of `MAP_CONFIG`.
#[repr(C)]
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct XdpConfig {
    /// Bit 0: steer DHCPv4; bit 1: steer DHCPv6; bit 2: guard the failover port;
    /// bit 3: steer DHCPv4 replies to clients (UDP dst 68; for the load generator).
    pub flags: u32,
    /// TCP port of failover, host byte order (0 = `FAILOVER_PORT`).
    pub failover_port: u16,
    /// With `CFG_DHCPV4_STANDBY`: drop only requests whose BOOTP `secs` is at most this
    /// (0 = all); a client that waited longer is answered by the standby (ISC's
    /// "load balance max seconds").
    pub standby_max_secs: u16,
}

pub const CFG_DHCPV4: u32 = 1;
pub const CFG_DHCPV6: u32 = 2;
pub const CFG_GUARD_FAILOVER: u32 = 4;
/// Steer DHCPv4 client-side traffic (UDP dst 68) too: used by `xdhcp-loadgen`,
/// which simulates clients and must see the server's replies.
pub const CFG_DHCPV4_CLIENT: u32 = 8;
/// Failover standby (a server in NORMAL that owns no load-balancing bucket, e.g. the backup
/// without load balancing): drop in XDP the DHCPv4 messages its failover policy would drop
/// anyway, so they cost neither an AF_XDP copy nor a wakeup. Only messages whose *first*
/// option is 53 are judged (any other layout goes to userspace, which decides):
/// DISCOVER and INFORM, and REQUEST with ciaddr 0 (SELECTING / INIT-REBOOT). RENEW/REBIND
/// (ciaddr set), RELEASE, DECLINE, LEASEQUERY and BOOTP still reach userspace.
pub const CFG_DHCPV4_STANDBY: u32 = 16;
/// Steer DHCPv6 client-side traffic (UDP dst 546) too: used by `xdhcp-loadgen`'s DHCPv6
/// scenarios, which simulate clients and must see the server's replies.
pub const CFG_DHCPV6_CLIENT: u32 = 32;

/// Token-bucket settings of the XDP rate limits, stored at index 0 of `MAP_RATE_LIMITS`.
///
/// Each bucket is a GCRA: one u64 per key (its theoretical arrival time, ns). A request is
/// admitted when the bucket's time is at most `tau` ahead of now; admitting adds `interval`.
/// So `interval = 1e9 / rate` and `tau = (burst - 1) * interval`. `interval == 0`: that
/// limit is off. Only DHCPv4 BOOTREQUESTs to the server port are limited.
#[repr(C)]
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct RateLimitConfig {
    /// Per client hardware address (chaddr): ns between admitted requests.
    pub client_interval_ns: u64,
    /// Per client: burst tolerance, ns.
    pub client_tau_ns: u64,
    /// Per relay agent (the IPv4 source of a message with giaddr != 0): ns between admitted
    /// requests.
    pub relay_interval_ns: u64,
    /// Per relay: burst tolerance, ns.
    pub relay_tau_ns: u64,
    /// Per circuit (relay + the circuit-id sub-option of option 82): ns between admitted
    /// requests.
    pub circuit_interval_ns: u64,
    /// Per circuit: burst tolerance, ns.
    pub circuit_tau_ns: u64,
}

impl RateLimitConfig {
    /// The GCRA values of `rate` requests per second with bursts of `burst` (0 rate = off).
    pub const fn gcra(rate: u32, burst: u32) -> (u64, u64) {
        if rate == 0 {
            return (0, 0);
        }
        let interval = 1_000_000_000u64 / rate as u64;
        let interval = if interval == 0 { 1 } else { interval };
        let burst = if burst == 0 { 1 } else { burst };
        (interval, (burst as u64 - 1) * interval)
    }
}

/// Key of `MAP_CLIENT_BUCKETS`: chaddr's first six bytes and hlen, as one word.
pub type ClientBucketKey = u64;
/// Key of `MAP_KNOWN_MACS`: an Ethernet chaddr (htype 1, hlen 6) as one little-endian word:
/// bytes 0-5 the address, byte 6 hlen (6), byte 7 htype (1). See [`known_mac_key`].
pub type KnownMacKey = u64;

/// The `MAP_KNOWN_MACS` key of Ethernet address `mac`.
pub const fn known_mac_key(mac: [u8; 6]) -> KnownMacKey {
    u64::from_le_bytes([mac[0], mac[1], mac[2], mac[3], mac[4], mac[5], 6, 1])
}

/// Key of `MAP_RELAY_BUCKETS`: the relay's IPv4 address in network byte order.
pub type RelayBucketKey = u32;

/// Circuit-id bytes kept in a circuit bucket's key (longer ones are cut: two circuits that
/// differ only after this many bytes share a bucket).
pub const CIRCUIT_KEY_BYTES: usize = 24;

/// Key of `MAP_CIRCUIT_BUCKETS`: the relay's IPv4 address (field `giaddr`), circuit-id
/// length, the circuit-id's first `CIRCUIT_KEY_BYTES` (zero-padded).
#[repr(C)]
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Hash)]
pub struct CircuitBucketKey {
    pub giaddr: [u8; 4],
    pub len: u32,
    pub circuit: [u8; CIRCUIT_KEY_BYTES],
}

/// Key of `MAP_PARTNERS`: an IPv4 address (mapped as ::ffff:a.b.c.d) or IPv6
/// address, in network byte order.
#[repr(C)]
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Hash)]
pub struct PartnerKey {
    pub addr: [u8; 16],
}

impl PartnerKey {
    pub const fn v4(octets: [u8; 4]) -> Self {
        let mut addr = [0u8; 16];
        addr[10] = 0xff;
        addr[11] = 0xff;
        addr[12] = octets[0];
        addr[13] = octets[1];
        addr[14] = octets[2];
        addr[15] = octets[3];
        PartnerKey { addr }
    }
    pub const fn v6(octets: [u8; 16]) -> Self {
        PartnerKey { addr: octets }
    }
}

#[cfg(feature = "user")]
mod pod {
    // SAFETY: repr(C) with a u32 and two u16 fields: 8 bytes, no padding, and every
    // bit pattern is a valid value.
    unsafe impl aya::Pod for super::XdpConfig {}
    // SAFETY: repr(C) around one [u8; 16]: no padding, every bit pattern is valid.
    unsafe impl aya::Pod for super::PartnerKey {}
    // SAFETY: repr(C) with six u64 fields: 48 bytes, no padding, every bit pattern valid.
    unsafe impl aya::Pod for super::RateLimitConfig {}
}
