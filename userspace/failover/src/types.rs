//! Protocol-level enums and the `Binding` record exchanged between the engine and its driver.
//!
//! Every time in this crate is an absolute `u32` count of seconds since the Unix epoch (the wire
//! format of draft-12), read from the caller's clock; intervals are `u32` seconds.

use std::net::Ipv4Addr;

/// Our role in the failover relationship.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum Role {
    /// The "main" server: sends CONNECT, owns FREE addresses, answers POOLREQ.
    Primary,
    /// The "backup" server: answers CONNECT, owns BACKUP addresses, sends POOLREQ.
    Secondary,
}

impl Role {
    /// Lower-case name ("primary", "secondary"), as in configuration and logs.
    pub fn name(self) -> &'static str {
        match self {
            Role::Primary => "primary",
            Role::Secondary => "secondary",
        }
    }
}

impl std::fmt::Display for Role {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(self.name())
    }
}

/// Failover endpoint states (draft-12 section 9, wire values from section 12.24; RECOVER-WAIT
/// has no number in the draft and ISC dhcpd uses 254).
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub enum ServerState {
    /// After a restart, until the partner's state is known or `startup_timeout` passes;
    /// answers no client.
    Startup,
    /// In contact with the partner: each answers the clients of its own hash buckets and
    /// allocates only from its own pool (primary FREE, secondary BACKUP).
    Normal,
    /// NORMAL, but the partner cannot be reached: both answer every client, allocate only
    /// from their own pool, and keep lease ends within MCLT of what the partner acknowledged.
    CommunicationsInterrupted,
    /// The partner is known to be down (operator command or safe period): answers every client;
    /// the partner's addresses become usable MCLT after the partner-down time.
    PartnerDown,
    /// Both may have given the same address to different clients: answers no client until
    /// both have exchanged their unacknowledged updates (UPDREQ/UPDDONE).
    PotentialConflict,
    /// Our bindings may be missing or stale (fresh or restored database, the `recover`
    /// command, or the partner went PARTNER-DOWN while we were away): answers no client and
    /// pulls the partner's bindings (UPDREQ/UPDREQALL).
    Recover,
    /// Operator pause, a short planned stop: answers no client; the partner goes
    /// COMMUNICATIONS-INTERRUPTED.
    Paused,
    /// Operator shutdown, a long stop: answers no client; a partner in NORMAL or
    /// COMMUNICATIONS-INTERRUPTED goes PARTNER-DOWN at once.
    Shutdown,
    /// Recovery over, waiting for the partner to go NORMAL; answers only RENEW/REBIND.
    RecoverDone,
    /// Communications lost in POTENTIAL-CONFLICT; answers every client, like
    /// COMMUNICATIONS-INTERRUPTED.
    ResolutionInterrupted,
    /// Primary only: our conflicts are resolved (UPDDONE received in POTENTIAL-CONFLICT), the
    /// secondary's are not yet; answers every client.
    ConflictDone,
    /// RECOVER finished (UPDDONE); waits until MCLT after the failure time before
    /// RECOVER-DONE; answers no client.
    RecoverWait,
}

impl ServerState {
    /// Every state, in wire order (handy for coverage reports).
    pub const ALL: [ServerState; 12] = [
        ServerState::Startup,
        ServerState::Normal,
        ServerState::CommunicationsInterrupted,
        ServerState::PartnerDown,
        ServerState::PotentialConflict,
        ServerState::Recover,
        ServerState::Paused,
        ServerState::Shutdown,
        ServerState::RecoverDone,
        ServerState::ResolutionInterrupted,
        ServerState::ConflictDone,
        ServerState::RecoverWait,
    ];

    /// The server-state option value (RECOVER-WAIT: 254, as ISC dhcpd).
    pub fn to_wire(self) -> u8 {
        match self {
            ServerState::Startup => 1,
            ServerState::Normal => 2,
            ServerState::CommunicationsInterrupted => 3,
            ServerState::PartnerDown => 4,
            ServerState::PotentialConflict => 5,
            ServerState::Recover => 6,
            ServerState::Paused => 7,
            ServerState::Shutdown => 8,
            ServerState::RecoverDone => 9,
            ServerState::ResolutionInterrupted => 10,
            ServerState::ConflictDone => 11,
            ServerState::RecoverWait => 254,
        }
    }

    /// The state for a server-state option value; None for a value draft-12 (and ISC's 254)
    /// does not define.
    pub fn from_wire(v: u8) -> Option<Self> {
        Some(match v {
            1 => ServerState::Startup,
            2 => ServerState::Normal,
            3 => ServerState::CommunicationsInterrupted,
            4 => ServerState::PartnerDown,
            5 => ServerState::PotentialConflict,
            6 => ServerState::Recover,
            7 => ServerState::Paused,
            8 => ServerState::Shutdown,
            9 => ServerState::RecoverDone,
            10 => ServerState::ResolutionInterrupted,
            11 => ServerState::ConflictDone,
            254 => ServerState::RecoverWait,
            _ => return None,
        })
    }

    /// Upper-case draft name, for log lines.
    pub fn name(self) -> &'static str {
        match self {
            ServerState::Startup => "STARTUP",
            ServerState::Normal => "NORMAL",
            ServerState::CommunicationsInterrupted => "COMMUNICATIONS-INTERRUPTED",
            ServerState::PartnerDown => "PARTNER-DOWN",
            ServerState::PotentialConflict => "POTENTIAL-CONFLICT",
            ServerState::Recover => "RECOVER",
            ServerState::Paused => "PAUSED",
            ServerState::Shutdown => "SHUTDOWN",
            ServerState::RecoverDone => "RECOVER-DONE",
            ServerState::ResolutionInterrupted => "RESOLUTION-INTERRUPTED",
            ServerState::ConflictDone => "CONFLICT-DONE",
            ServerState::RecoverWait => "RECOVER-WAIT",
        }
    }
}

impl std::fmt::Display for ServerState {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(self.name())
    }
}

/// Binding status of one address (draft-12 section 5.11 / 12.3).
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum BindingStatus {
    /// Available to the primary.
    Free,
    /// Leased to a client until its lease expiration time.
    Active,
    /// The lease ran out; becomes FREE once the partner acknowledges it.
    Expired,
    /// The client released it; becomes FREE once the partner acknowledges it.
    Released,
    /// Declined by a client or found in use: neither server allocates it.
    Abandoned,
    /// Made available by the operator; becomes FREE once the partner acknowledges it.
    Reset,
    /// Available to the secondary.
    Backup,
}

impl BindingStatus {
    /// The binding-status option value (FREE 1 ... BACKUP 7).
    pub fn to_wire(self) -> u8 {
        match self {
            BindingStatus::Free => 1,
            BindingStatus::Active => 2,
            BindingStatus::Expired => 3,
            BindingStatus::Released => 4,
            BindingStatus::Abandoned => 5,
            BindingStatus::Reset => 6,
            BindingStatus::Backup => 7,
        }
    }

    /// The status for a binding-status option value; None outside 1..=7.
    pub fn from_wire(v: u8) -> Option<Self> {
        Some(match v {
            1 => BindingStatus::Free,
            2 => BindingStatus::Active,
            3 => BindingStatus::Expired,
            4 => BindingStatus::Released,
            5 => BindingStatus::Abandoned,
            6 => BindingStatus::Reset,
            7 => BindingStatus::Backup,
            _ => return None,
        })
    }

    /// EXPIRED, RELEASED and RESET become FREE once the partner acknowledges them.
    pub fn frees_on_ack(self) -> bool {
        matches!(
            self,
            BindingStatus::Expired | BindingStatus::Released | BindingStatus::Reset
        )
    }
}

/// Reject reasons (draft-12 section 12.21).
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum RejectReason {
    /// 1: the address is in none of the receiver's pools.
    IllegalIpAddress,
    /// 2: the update names another client for an address we have ACTIVE and cannot yield.
    FatalConflict,
    /// 3: the binding transaction lacks an option it needs (e.g. binding-status).
    MissingBindingInfo,
    /// 4: the partners' clocks differ more than `max_time_skew`.
    TimeMismatch,
    /// 5: CONNECT without an MCLT, or with 0.
    InvalidMclt,
    /// 6: any other reason (also: an address missing from a BNDACK).
    Misc,
    /// 7: a second CONNECT on an established connection.
    DuplicateConnection,
    /// 8: wrong relationship name, or a CONNECT sent to the primary.
    InvalidPartner,
    /// 9: the partner requires TLS, which we do not implement.
    TlsUnsupported,
    /// 10: TLS supported but not configured.
    TlsUnconfigured,
    /// 11: TLS required by the sender's configuration.
    TlsRequired,
    /// 12: message digests not supported.
    DigestUnsupported,
    /// 13: message digests supported but not configured.
    DigestUnconfigured,
    /// 14: protocol-version is not ours.
    VersionMismatch,
    /// 15: the update is older than the binding we hold.
    OutdatedBindingInfo,
    /// 16: the update would overwrite a more important status (e.g. ABANDONED).
    LessCriticalBindingInfo,
    /// 17: nothing received for the receive timer (`poll_timeout`).
    NoTraffic,
    /// 18: hash bucket assignment conflict; we send it for a CONNECT whose
    /// hash-bucket-assignment is missing or not 32 bytes.
    HbaConflict,
    /// 19: IP address not reserved.
    IpNotReserved,
    /// 20: IP message digest check failed.
    IpDigestFailure,
    /// 21: IP message digest missing.
    IpMissingDigest,
    /// 254, or any code this implementation does not know (kept verbatim).
    Other(u8),
}

impl RejectReason {
    /// The reject-reason option value.
    pub fn to_wire(self) -> u8 {
        use RejectReason::*;
        match self {
            IllegalIpAddress => 1,
            FatalConflict => 2,
            MissingBindingInfo => 3,
            TimeMismatch => 4,
            InvalidMclt => 5,
            Misc => 6,
            DuplicateConnection => 7,
            InvalidPartner => 8,
            TlsUnsupported => 9,
            TlsUnconfigured => 10,
            TlsRequired => 11,
            DigestUnsupported => 12,
            DigestUnconfigured => 13,
            VersionMismatch => 14,
            OutdatedBindingInfo => 15,
            LessCriticalBindingInfo => 16,
            NoTraffic => 17,
            HbaConflict => 18,
            IpNotReserved => 19,
            IpDigestFailure => 20,
            IpMissingDigest => 21,
            Other(v) => v,
        }
    }

    /// The reason for a reject-reason option value; unknown values become [`Other`](Self::Other).
    pub fn from_wire(v: u8) -> Self {
        use RejectReason::*;
        match v {
            1 => IllegalIpAddress,
            2 => FatalConflict,
            3 => MissingBindingInfo,
            4 => TimeMismatch,
            5 => InvalidMclt,
            6 => Misc,
            7 => DuplicateConnection,
            8 => InvalidPartner,
            9 => TlsUnsupported,
            10 => TlsUnconfigured,
            11 => TlsRequired,
            12 => DigestUnsupported,
            13 => DigestUnconfigured,
            14 => VersionMismatch,
            15 => OutdatedBindingInfo,
            16 => LessCriticalBindingInfo,
            17 => NoTraffic,
            18 => HbaConflict,
            19 => IpNotReserved,
            20 => IpDigestFailure,
            21 => IpMissingDigest,
            other => Other(other),
        }
    }
}

/// IP-flags bit 0: the address is reserved on the sender.
pub const IP_FLAG_RESERVED: u16 = 0x0001;
/// IP-flags bit 1: the lease belongs to a BOOTP client.
pub const IP_FLAG_BOOTP: u16 = 0x0002;

/// Everything the failover protocol knows about one address. Independent of the lease-store
/// record layout: the driver converts.
///
/// `potential_expiry` semantics, as stored in a lease table: the potential expiration *the
/// partner has committed to* for this binding, i.e. the maximum of the value it acknowledged
/// (BNDACK of our BNDUPD) and the value it sent us (its BNDUPD we acknowledged). That is the
/// `acked_potential_expiry` input of [`crate::policy::FailoverPolicy::lease_time_allowed`]; it
/// must be reset to 0 whenever the address leaves ACTIVE (see [`crate::table`]). In a
/// BNDUPD we send, it is the potential expiration we ask the partner to commit to.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Binding {
    /// The address this record is about.
    pub addr: Ipv4Addr,
    /// Its binding status; `start` says since when.
    pub status: BindingStatus,
    /// DHCP client identifier (option 61 value); empty when the client sent none.
    pub client_id: Vec<u8>,
    /// ARP hardware type (1 = Ethernet); 0 together with an empty `chaddr` means "no client".
    pub htype: u8,
    /// Client hardware address (`htype` says its kind); empty when no client.
    pub chaddr: Vec<u8>,
    /// Lease end told to the client (absolute seconds); 0 when not ACTIVE.
    pub lease_expiry: u32,
    /// See the type documentation.
    pub potential_expiry: u32,
    /// Client last transaction time; 0 = unknown.
    pub cltt: u32,
    /// Start time of the current binding status.
    pub start: u32,
    /// Relay agent information (DHCP option 82 value, without code/length) from the client's
    /// last request, whole; carried in client-request-options so the partner can answer
    /// leasequery.
    pub relay_agent_info: Vec<u8>,
    /// Host name (option 12) from the client's last request; in client-request-options too.
    pub host_name: Vec<u8>,
    /// Vendor class identifier (option 60) from the client's last request; likewise.
    pub vendor_class: Vec<u8>,
    /// IP-flags (IP_FLAG_RESERVED, IP_FLAG_BOOTP).
    pub flags: u16,
    /// xdhcpd only (vendor-options to an xdhcpd partner, [`crate::codec::xdhcpd_opts`];
    /// never sent to other partners): the server asked this ACTIVE binding's client to
    /// reconfigure (FORCERENEW sent, or its NAK deferred to its next renewal). A partner that
    /// stores it NAKs the client's next REQUEST and deletes the binding.
    pub reconfiguring: bool,
    /// xdhcpd only, like `reconfiguring`: the client's last ACK carried an RFC 6704
    /// reconfigure key (derived from the servers' shared `[reconfigure] secret`).
    pub reconf_key: bool,
}

impl Binding {
    /// A FREE (primary-owned) address with no client.
    pub fn free(addr: Ipv4Addr, start: u32) -> Self {
        Binding {
            addr,
            status: BindingStatus::Free,
            client_id: Vec::new(),
            htype: 0,
            chaddr: Vec::new(),
            lease_expiry: 0,
            potential_expiry: 0,
            cltt: 0,
            start,
            relay_agent_info: Vec::new(),
            host_name: Vec::new(),
            vendor_class: Vec::new(),
            flags: 0,
            reconfiguring: false,
            reconf_key: false,
        }
    }

    /// True when the binding names a client (hardware address or client identifier).
    pub fn has_client(&self) -> bool {
        !self.chaddr.is_empty() || !self.client_id.is_empty()
    }

    /// The key RFC 3074 hashes and conflict checks compare: client identifier if present,
    /// else the hardware address.
    pub fn client_key(&self) -> &[u8] {
        if self.client_id.is_empty() {
            &self.chaddr
        } else {
            &self.client_id
        }
    }

    /// Same client in both bindings (draft-12: client-identifier if either has one, else chaddr).
    pub fn same_client(&self, other: &Binding) -> bool {
        if !self.client_id.is_empty() || !other.client_id.is_empty() {
            self.client_id == other.client_id
        } else {
            self.htype == other.htype && self.chaddr == other.chaddr
        }
    }
}
