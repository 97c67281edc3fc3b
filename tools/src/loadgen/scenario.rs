//! What the simulated clients do (the scenario), which phase an exchange counts in, and the
//! counters of one phase.

use serde::Serialize;

use super::hist::Histogram;

/// What the clients do.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Scenario {
    /// DISCOVER, OFFER, REQUEST, ACK.
    Dora,
    /// Every DORA is followed at once by a renewal of the same client.
    DoraRenew,
    /// Warm-up DORA of every client (reported as its own phase), then renewals only.
    Renew,
    /// Every DORA is followed by a RELEASE (no reply expected).
    Release,
    /// Warm-up DORA, then INIT-REBOOT REQUESTs (requested IP, no server id).
    InitReboot,
    /// Warm-up DORA asking for an RFC 6704 reconfigure key (option 145), then the clients
    /// only listen: a verified FORCERENEW makes a client renew (REQUEST), and on NAK start
    /// over with DISCOVER (one exchange of the `reconfigure` phase, timed from the
    /// FORCERENEW to the new ACK).
    ForceRenew,
}

impl Scenario {
    pub fn name(self) -> &'static str {
        match self {
            Scenario::Dora => "dora",
            Scenario::DoraRenew => "dora-renew",
            Scenario::Renew => "renew",
            Scenario::Release => "release",
            Scenario::InitReboot => "init-reboot",
            Scenario::ForceRenew => "forcerenew",
        }
    }

    /// The name of the DHCPv6 counterpart (DORA -> SARR).
    pub fn name6(self) -> &'static str {
        match self {
            Scenario::Dora => "sarr",
            Scenario::DoraRenew => "sarr-renew",
            other => other.name(),
        }
    }

    pub(super) fn needs_warmup(self) -> bool {
        matches!(
            self,
            Scenario::Renew | Scenario::InitReboot | Scenario::ForceRenew
        )
    }
}

/// Which statistics an exchange counts in.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
#[repr(u8)]
pub enum Phase {
    WarmupDora = 0,
    Dora = 1,
    Renew = 2,
    InitReboot = 3,
    Release = 4,
    /// FORCERENEW received .. new ACK (renew, NAK, DISCOVER, OFFER, REQUEST, ACK).
    Reconfigure = 5,
}

pub const PHASES: usize = 6;

impl Phase {
    pub const ALL: [Phase; PHASES] = [
        Phase::WarmupDora,
        Phase::Dora,
        Phase::Renew,
        Phase::InitReboot,
        Phase::Release,
        Phase::Reconfigure,
    ];

    /// The phase's name in DHCPv6 runs (a SARR is counted as one exchange, like a DORA).
    pub fn name6(self) -> &'static str {
        match self {
            Phase::WarmupDora => "warmup-sarr",
            Phase::Dora => "sarr",
            other => other.name(),
        }
    }

    pub fn name(self) -> &'static str {
        match self {
            Phase::WarmupDora => "warmup-dora",
            Phase::Dora => "dora",
            Phase::Renew => "renew",
            Phase::InitReboot => "init-reboot",
            Phase::Release => "release",
            Phase::Reconfigure => "reconfigure",
        }
    }
}

/// The exchange and packet counts of one phase: what the report lists of
/// it as they are.
#[derive(Clone, Debug, Default, Serialize)]
pub struct PhaseCounts {
    /// Exchanges started (first message sent).
    pub sent: u64,
    /// Exchanges that ended with an ACK or a NAK.
    pub answered: u64,
    pub acks: u64,
    pub naks: u64,
    /// Exchanges that ended without an answer after all retries.
    pub drops: u64,
    /// ACKs of an address still bound to another client.
    pub duplicates: u64,
    pub offers: u64,
    pub retransmits: u64,
    /// Exchanges that could not be sent (server address unknown): also drops.
    pub unsendable: u64,
    /// ACKs without an address (yiaddr 0): answered, not bound.
    pub bad_acks: u64,
    /// DHCPv6: answers with a failure status code (NoAddrsAvail, NoBinding, NoPrefixAvail,
    /// NotOnLink, ...), counted as NAKs too.
    pub status_errors: u64,
    /// DHCPv6: Advertise / Reply without the server identifier or without an address (a
    /// prefix) for an IA_NA (IA_PD) asked for, counted as NAKs too.
    pub incomplete: u64,
    /// DHCPv6 relayed: Relay-Reply without the client's interface-id, counted as NAKs too.
    pub relay_errors: u64,
    /// RELEASEs sent (no reply expected).
    pub releases: u64,
    pub tx_packets: u64,
    pub rx_replies: u64,
}

impl PhaseCounts {
    pub fn merge(&mut self, o: &PhaseCounts) {
        self.sent += o.sent;
        self.answered += o.answered;
        self.acks += o.acks;
        self.naks += o.naks;
        self.drops += o.drops;
        self.duplicates += o.duplicates;
        self.offers += o.offers;
        self.retransmits += o.retransmits;
        self.unsendable += o.unsendable;
        self.bad_acks += o.bad_acks;
        self.status_errors += o.status_errors;
        self.incomplete += o.incomplete;
        self.relay_errors += o.relay_errors;
        self.releases += o.releases;
        self.tx_packets += o.tx_packets;
        self.rx_replies += o.rx_replies;
    }
}

/// Counters of one phase (one thread's, or merged).
#[derive(Clone, Debug, Default)]
pub struct PhaseStats {
    pub counts: PhaseCounts,
    /// Open-loop starts that could not be made in time (sender behind).
    pub rate_deficit: u64,
    /// Starts wanted but no client was free for a new exchange.
    pub starved: u64,
    /// When this thread entered / left (stopped starting) the phase, ns since run start.
    pub start_ns: u64,
    pub end_ns: u64,
    /// When the last exchange of the phase was answered, ns since run start.
    pub last_answer_ns: u64,
    /// Exchange latency (first request sent to ACK), ns.
    pub latency: Histogram,
}

impl PhaseStats {
    pub fn merge(&mut self, o: &PhaseStats) {
        self.counts.merge(&o.counts);
        self.rate_deficit += o.rate_deficit;
        self.starved += o.starved;
        // end_ns == 0 means "phase not entered by that thread".
        if o.end_ns > 0 {
            if self.end_ns == 0 {
                self.start_ns = o.start_ns;
            } else {
                self.start_ns = self.start_ns.min(o.start_ns);
            }
            self.end_ns = self.end_ns.max(o.end_ns);
        }
        self.last_answer_ns = self.last_answer_ns.max(o.last_answer_ns);
        self.latency.merge(&o.latency);
    }

    /// Whether anything happened in this phase.
    pub fn is_used(&self) -> bool {
        self.counts.sent > 0 || self.counts.releases > 0
    }
}
