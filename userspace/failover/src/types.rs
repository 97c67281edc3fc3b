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
    Startup,
    Normal,
    CommunicationsInterrupted,
    PartnerDown,
    PotentialConflict,
    Recover,
    Paused,
    Shutdown,
    RecoverDone,
    ResolutionInterrupted,
    ConflictDone,
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
    Active,
    Expired,
    Released,
    Abandoned,
    Reset,
    /// Available to the secondary.
    Backup,
}

impl BindingStatus {
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
    IllegalIpAddress,
    FatalConflict,
    MissingBindingInfo,
    TimeMismatch,
    InvalidMclt,
    Misc,
    DuplicateConnection,
    InvalidPartner,
    TlsUnsupported,
    TlsUnconfigured,
    TlsRequired,
    DigestUnsupported,
    DigestUnconfigured,
    VersionMismatch,
    OutdatedBindingInfo,
    LessCriticalBindingInfo,
    NoTraffic,
    HbaConflict,
    IpNotReserved,
    IpDigestFailure,
    IpMissingDigest,
    /// 254, or any code this implementation does not know (kept verbatim).
    Other(u8),
}

impl RejectReason {
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
    pub addr: Ipv4Addr,
    pub status: BindingStatus,
    /// DHCP client identifier (option 61 value); empty when the client sent none.
    pub client_id: Vec<u8>,
    /// ARP hardware type (1 = Ethernet); 0 together with an empty `chaddr` means "no client".
    pub htype: u8,
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
    /// last request; carried in client-request-options so the partner can answer leasequery.
    pub relay_agent_info: Vec<u8>,
    /// IP-flags (IP_FLAG_RESERVED, IP_FLAG_BOOTP).
    pub flags: u16,
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
            flags: 0,
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
