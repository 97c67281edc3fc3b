//! Per-worker counters. Each worker owns one `EngineStats` (no sharing on the
//! hot path: relaxed increments on its own cache lines); the reporter sums
//! snapshots across workers.

use std::sync::atomic::{AtomicU64, Ordering::Relaxed};

macro_rules! counters {
    ($($name:ident: $doc:literal,)*) => {
        /// Counters of one engine (one worker).
        #[derive(Debug, Default)]
        #[repr(align(64))]
        pub struct EngineStats { $(#[doc = $doc] pub $name: AtomicU64,)* }

        /// A plain copy of the counters, summable.
        #[derive(Clone, Copy, Debug, Default, PartialEq, Eq, serde::Serialize)]
        pub struct StatsSnapshot { $(#[doc = $doc] pub $name: u64,)* }

        impl EngineStats {
            /// Reads every counter (relaxed: each value is exact, the set is not one
            /// instant).
            pub fn snapshot(&self) -> StatsSnapshot {
                StatsSnapshot { $($name: self.$name.load(Relaxed),)* }
            }
        }

        impl std::ops::AddAssign for StatsSnapshot {
            fn add_assign(&mut self, o: Self) { $(self.$name += o.$name;)* }
        }

        impl StatsSnapshot {
            /// `(name, value)` pairs in declaration order, for printing.
            pub fn fields(&self) -> Vec<(&'static str, u64)> {
                vec![$((stringify!($name), self.$name),)*]
            }
        }
    };
}

counters! {
    received: "DHCP messages handed to the engine.",
    discovers: "DISCOVERs received.",
    requests: "REQUESTs received.",
    offers: "OFFERs sent.",
    acks: "ACKs sent (REQUEST and INFORM).",
    naks: "NAKs sent.",
    releases: "RELEASEs applied.",
    declines: "DECLINEs applied (address quarantined).",
    informs: "INFORMs answered.",
    malformed: "Messages that failed to parse (dropped).",
    not_request: "BOOTREPLY or unsupported message types (dropped).",
    bootp_refused: "BOOTP requests (no option 53) refused: no dynamic-bootp on the client's subnet (also counted in not_request).",
    bootp_replies: "BOOTREPLYs sent (dynamic BOOTP: a permanent binding).",
    no_subnet: "No configured subnet for the client's link (dropped).",
    pool_exhausted: "DISCOVERs with no free address (dropped).",
    other_server: "REQUESTs naming another server (offer withdrawn, silent).",
    unknown_client: "INIT-REBOOT/RENEW from a client with no binding here (silent).",
    no_room: "Replies that did not fit the output buffer (dropped).",
    failover_dropped: "Messages the partner answers (failover state or load balancing; dropped).",
    leasequeries: "DHCPLEASEQUERYs received (RFC 4388; answered in every failover state).",
    leasequery_active: "DHCPLEASEACTIVE answers sent.",
    leasequery_unassigned: "DHCPLEASEUNASSIGNED answers sent (address ours, not leased).",
    leasequery_unknown: "DHCPLEASEUNKNOWN answers sent (address or client unknown here).",
    leasequery_dropped: "DHCPLEASEQUERYs not answered: not relayed (giaddr 0) or naming no address, MAC or client id.",
    leasequery_not_allowed: "DHCPLEASEQUERYs from a giaddr not in leasequery-allow (dropped, RFC 4388 §6).",
    untrusted_relay: "Relayed messages whose giaddr is not a trusted relay (dropped: no reply to an untrusted giaddr).",
    relay_info_from_client_dropped: "Messages with option 82 but giaddr 0 (dropped, RFC 3046 §2.1; untrusted-relay-info = \"drop\").",
    relay_info_from_client_stripped: "Messages with option 82 but giaddr 0 served without it (untrusted-relay-info = \"strip\").",
    claims_refused: "Claims without proof: a SELECTING REQUEST for an address not offered to the client, an INIT-REBOOT for an address not its own (NAK or silent), a DECLINE or RELEASE not for its own bound address, without our server id, or (RELEASE) not from that address or hardware address (ignored).",
    reply_hw_not_bindings: "OFFERs/ACKs broadcast instead of unicast because the message's chaddr is not the hardware address of the binding (same client id, another host).",
    subnet_selection_from_client_ignored: "Option 118 from a client not behind a relay (ignored).",
    registration_moved: "REQUESTs NAKed because the client's registration fixes another address (reservation moved).",
    registration_fixed_busy: "DISCOVERs of a registered client whose fixed address is held by another client (served from the pool).",
    registration_lookups: "Messages whose client was looked up in the registrations (not answered by the worker's cache).",
    registration_cache_hits: "Messages whose registration answer came from the worker's cache (same client, registrations unchanged since; a REQUEST after its DISCOVER).",
    unknown_refused: "Messages from UNKNOWN clients (no live registration, no configured host or reservation) refused by deny-unknown (shared network, subnet or pool; no answer).",
    storage_failed_dropped: "DISCOVERs dropped while the lease file's storage has failed (no ACK could leave; the client goes to another server).",
    reconfiguring_naked: "REQUESTs (renew, rebind, init-reboot) of a binding being reconfigured: NAK, binding deleted (FORCERENEW answered).",
    reconfiguring_dropped: "DISCOVERs of a binding being reconfigured: dropped, binding deleted.",
    reconfiguring_ended: "RELEASEs and DECLINEs of a binding being reconfigured: binding deleted.",
    reconfigure_keys_sent: "ACKs carrying an RFC 6704 reconfigure key (the client sent option 145).",
    lease_cap_circuit_refused: "DISCOVERs (no answer) and REQUESTs for a new address (NAK) refused because the client's circuit (relay network + option 82 circuit-id) holds max-leases-per-circuit addresses.",
    lease_cap_remote_id_refused: "DISCOVERs (no answer) and REQUESTs for a new address (NAK) refused because the client's option 82 remote-id holds max-leases-per-remote-id addresses.",
    rhc_served_for_partner: "DISCOVERs answered for the failover partner because the relay they came through seems unable to reach it (relay health check).",
    rhc_too_early: "DISCOVERs from an interrupted relay left unanswered because the client's secs was below rhc-elapsed-time.",
    rhc_not_tracked: "DISCOVERs for the partner from a relay the full relay health table could not follow (rhc-max-relays).",
    class_refused: "DISCOVERs for which no pool of the link admits the client's classes (allow/deny; no answer), and REQUESTs for an address in a pool the client's classes may not use (NAK).",
}

impl EngineStats {
    /// Adds one to a counter of an `EngineStats` the caller alone writes.
    #[inline]
    pub fn inc(c: &AtomicU64) {
        // Only the owning worker writes: a load+store is cheaper than a locked add.
        c.store(c.load(Relaxed) + 1, Relaxed);
    }
}
