//! Engine counters (relaxed atomics; shared by the workers, read by the stats reporter).

use std::sync::atomic::{AtomicU64, Ordering};

macro_rules! counters {
    ($($name:ident: $doc:literal),* $(,)?) => {
        /// DHCPv6 engine counters.
        #[derive(Debug, Default)]
        pub struct Stats6 { $(#[doc = $doc] pub $name: AtomicU64,)* }
        /// A copy of [`Stats6`].
        #[derive(Debug, Default, Clone, Copy, PartialEq, Eq)]
        pub struct Stats6Snapshot { $(#[doc = $doc] pub $name: u64,)* }
        impl Stats6 {
            /// Reads every counter.
            pub fn snapshot(&self) -> Stats6Snapshot {
                Stats6Snapshot { $($name: self.$name.load(Ordering::Relaxed),)* }
            }
        }
        impl Stats6Snapshot {
            /// (name, value) pairs for logs and metrics.
            pub fn pairs(&self) -> Vec<(&'static str, u64)> {
                vec![$((stringify!($name), self.$name),)*]
            }
        }
    };
}

counters! {
    received: "Messages handed to the engine.",
    replies: "Replies written (Advertise and Reply).",
    advertise: "Advertise messages sent.",
    reply: "Reply messages sent.",
    rapid_commit: "Solicits answered with a committed Reply (Rapid Commit).",
    relayed: "Messages that arrived in Relay-Forward.",
    malformed: "Dropped: bad framing (counted with its offset in the debug log).",
    not_for_server: "Dropped: a message type a server does not take.",
    bad_ids: "Dropped: Client/Server Identifier missing, present where forbidden, or not ours.",
    untrusted_relay: "Dropped: Relay-Forward from a source that is no trusted relay.",
    too_many_hops: "Dropped: relay nesting deeper than the limit.",
    no_link: "Dropped: no configured link for the message.",
    use_multicast: "Replied UseMulticast to a unicast Request/Renew/Release/Decline.",
    no_addrs: "IA_NA answered NoAddrsAvail.",
    no_prefix: "IA_PD answered NoPrefixAvail.",
    no_binding: "IA answered NoBinding.",
    table_full: "A binding could not be stored: the table is full.",
    bound: "Bindings written active (Request, Rapid Commit).",
    renewed: "Bindings extended (Renew, Rebind).",
    released: "Bindings released.",
    declined: "Bindings declined.",
    overflow: "Dropped: the reply did not fit the buffer.",
    reconf_keys: "Replies that handed the client its reconfigure key (RFC 8415 §20.4).",
    reconf_solicit_dropped: "Dropped: Solicit from a client being reconfigured (its binding deleted).",
    reconf_zeroed: "Bindings being reconfigured answered with lifetimes 0 and deleted (Request/Renew/Rebind).",
    unknown_refused: "Dropped: an unregistered client (no reservation for its DUID) on a link with deny-unknown.",
    class_refused: "IAs answered NoAddrsAvail/NoPrefixAvail because no pool of the link admits the client's classes.",
    classified: "Messages whose client is in at least one class.",
    leasequery: "Leasequery messages (RFC 5007) taken (client id present, server id ours or absent).",
    leasequery_answered: "Leasequery-replies carrying a client's bindings (OPTION_CLIENT_DATA).",
    leasequery_unknown: "Leasequery-replies without client data: no active binding found.",
    leasequery_client_link: "Leasequery-replies listing the client's links (OPTION_LQ_CLIENT_LINK).",
    leasequery_not_allowed: "Leasequery refused: the source is not in leasequery-allow (NotAllowed).",
    leasequery_malformed: "Leasequery refused: no or a bad OPTION_LQ_QUERY (MalformedQuery).",
    leasequery_unknown_type: "Leasequery refused: a query type other than by address or client id (UnknownQueryType).",
    leasequery_not_configured: "Leasequery refused: the link-address or address is not ours (NotConfigured).",
}

impl Stats6 {
    /// Adds one.
    pub fn inc(c: &AtomicU64) {
        c.fetch_add(1, Ordering::Relaxed);
    }
}
