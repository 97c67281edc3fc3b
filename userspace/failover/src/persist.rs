//! Persisted failover state: a fixed 64-byte record (the lease store keeps it in its reserved
//! area). Layout, all integers big-endian:
//!
//! | off | size | field |
//! |----:|-----:|-------|
//! | 0 | 4 | magic `XFOP` |
//! | 4 | 2 | version (1) |
//! | 6 | 1 | own state (wire value) |
//! | 7 | 1 | resume state: state to restart from (differs after PAUSED/SHUTDOWN) |
//! | 8 | 4 | own state entered at |
//! | 12 | 1 | partner state (0 = never known) |
//! | 13 | 1 | flags: bit0 ever communicated, bit1 full recovery (UPDREQALL) pending, bit2 blind PARTNER-DOWN (declared from RECOVER: our own pool waits too) |
//! | 14 | 1 | our role: 1 primary, 2 secondary; 0 = not recorded (written before the role was) |
//! | 15 | 1 | reserved (0) |
//! | 16 | 4 | partner state entered at (partner's start-time-of-state) |
//! | 20 | 4 | last contact with the partner |
//! | 24 | 4 | last time this server was operational (heartbeat) |
//! | 28 | 4 | partner-down time (base of the PARTNER-DOWN MCLT wait) |
//! | 32 | 4 | recover base: time of failure for the RECOVER-WAIT timer |
//! | 36 | 4 | MCLT in force (the secondary keeps the primary's) |
//! | 40 | 4 | max-unacked-updates the primary advertises in CONNECT, learnt from a partner that is not xdhcpd (0 = the configured value) |
//! | 44 | 16 | reserved (0) |
//! | 60 | 4 | FNV-1a 32 of bytes 0..60 |

use crate::types::{Role, ServerState};

/// Size of the persisted record, bytes.
pub const PERSIST_LEN: usize = 64;
/// First four bytes of a valid record.
pub const PERSIST_MAGIC: [u8; 4] = *b"XFOP";
/// Layout version written at bytes 4..6; other versions are refused.
pub const PERSIST_VERSION: u16 = 1;

/// Everything the engine needs to resume after a restart.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct FailoverPersist {
    /// Our state when written (draft-12 9.2 stable storage).
    pub own_state: ServerState,
    /// State to resume from at restart (the state before PAUSED/SHUTDOWN; RECOVER when the
    /// partner went PARTNER-DOWN while we were shutting down).
    pub resume_state: ServerState,
    /// When we entered `own_state`, Unix seconds.
    pub own_state_since: u32,
    /// The partner's last reported state (None: never heard from it).
    pub partner_state: Option<ServerState>,
    /// The partner's start-time-of-state for `partner_state`, in our clock, Unix seconds;
    /// compared with `last_operational` at restart (draft-12 9.3.2).
    pub partner_state_since: u32,
    /// Last time we heard from the partner, Unix seconds (see
    /// [`FailoverEngine::last_contact`](crate::FailoverEngine::last_contact)).
    pub last_contact: u32,
    /// Operational heartbeat, Unix seconds: stamped at each state change and every
    /// `heartbeat_interval` while answering clients (or in RECOVER-DONE); compared with the
    /// partner's PARTNER-DOWN time at restart (draft-12 9.3.2 step 5).
    pub last_operational: u32,
    /// Partner-down time, Unix seconds: the partner's addresses become usable MCLT after it
    /// ([`FailoverPolicy::partner_down_usable_at`](crate::FailoverPolicy::partner_down_usable_at)).
    pub partner_down_since: u32,
    /// Time of failure, Unix seconds: RECOVER-WAIT lasts until this plus MCLT (draft-12 9.6.2).
    pub recover_base: u32,
    /// MCLT in force, seconds (the secondary keeps the primary's from CONNECT).
    pub mclt: u32,
    /// We have completed CONNECT/CONNECTACK and received a STATE from the partner at least
    /// once.
    pub ever_communicated: bool,
    /// RECOVER must pull every binding (UPDREQALL, not UPDREQ): set with no earlier
    /// persisted state, by `failover_recover` and by the `recover` command; cleared by the
    /// UPDDONE that completes the pull.
    pub recover_all: bool,
    /// PARTNER-DOWN was declared from RECOVER / RECOVER-WAIT: we never learnt what the partner
    /// leased while it was PARTNER-DOWN, so our own free addresses wait out the MCLT too.
    /// Cleared on reaching NORMAL.
    pub blind_partner_down: bool,
    /// The role this state was written in (None: a file from before the role was recorded).
    /// A server configured in the other role must not resume from it.
    pub role: Option<Role>,
    /// The max-unacked-updates to advertise in CONNECT (primary), learnt from the last
    /// CONNECTACK of a partner that is not xdhcpd (0: the configured value). CONNECT goes out
    /// before the partner says who it is; see `FailoverEngine::max_unacked_for`.
    pub connect_max_unacked: u32,
}

/// Why persisted bytes were refused.
#[derive(Clone, Debug, PartialEq, Eq, thiserror::Error)]
pub enum PersistError {
    /// The slice is not [`PERSIST_LEN`] bytes long (the length found).
    #[error("failover persisted state: {0} bytes, expected {PERSIST_LEN}")]
    Length(usize),
    /// Bytes 0..4 are not [`PERSIST_MAGIC`] (the bytes found).
    #[error("failover persisted state: bad magic {0:02x?}")]
    Magic([u8; 4]),
    /// Bytes 4..6 hold a version other than [`PERSIST_VERSION`] (the version found).
    #[error("failover persisted state: unsupported version {0}")]
    Version(u16),
    /// The FNV-1a checksum at bytes 60..64 does not match bytes 0..60.
    #[error("failover persisted state: checksum mismatch (stored {stored:08x}, computed {computed:08x})")]
    Checksum {
        /// Checksum read from bytes 60..64.
        stored: u32,
        /// Checksum of bytes 0..60.
        computed: u32,
    },
    /// A state byte (6, 7 or 12) is not a known [`ServerState`] wire value.
    #[error("failover persisted state: invalid state value {value} at byte {offset}")]
    State {
        /// Byte offset of the bad value.
        offset: usize,
        /// The value found.
        value: u8,
    },
    /// Byte 14 is not 0, 1 or 2 (the value found).
    #[error("failover persisted state: invalid role value {0} at byte 14")]
    Role(u8),
}

fn fnv1a(b: &[u8]) -> u32 {
    let mut h: u32 = 0x811c_9dc5;
    for &x in b {
        h ^= x as u32;
        h = h.wrapping_mul(0x0100_0193);
    }
    h
}

fn rd32(b: &[u8], off: usize) -> u32 {
    u32::from_be_bytes([b[off], b[off + 1], b[off + 2], b[off + 3]])
}

impl FailoverPersist {
    /// The 64-byte record (layout in the module doc), checksum included.
    pub fn to_bytes(&self) -> [u8; PERSIST_LEN] {
        let mut b = [0u8; PERSIST_LEN];
        b[0..4].copy_from_slice(&PERSIST_MAGIC);
        b[4..6].copy_from_slice(&PERSIST_VERSION.to_be_bytes());
        b[6] = self.own_state.to_wire();
        b[7] = self.resume_state.to_wire();
        b[8..12].copy_from_slice(&self.own_state_since.to_be_bytes());
        b[12] = self.partner_state.map_or(0, |s| s.to_wire());
        b[13] = self.ever_communicated as u8
            | (self.recover_all as u8) << 1
            | (self.blind_partner_down as u8) << 2;
        b[14] = match self.role {
            None => 0,
            Some(Role::Primary) => 1,
            Some(Role::Secondary) => 2,
        };
        b[16..20].copy_from_slice(&self.partner_state_since.to_be_bytes());
        b[20..24].copy_from_slice(&self.last_contact.to_be_bytes());
        b[24..28].copy_from_slice(&self.last_operational.to_be_bytes());
        b[28..32].copy_from_slice(&self.partner_down_since.to_be_bytes());
        b[32..36].copy_from_slice(&self.recover_base.to_be_bytes());
        b[36..40].copy_from_slice(&self.mclt.to_be_bytes());
        b[40..44].copy_from_slice(&self.connect_max_unacked.to_be_bytes());
        let c = fnv1a(&b[..60]);
        b[60..64].copy_from_slice(&c.to_be_bytes());
        b
    }

    /// Parses and checks a record written by [`to_bytes`](Self::to_bytes).
    pub fn from_bytes(b: &[u8]) -> Result<Self, PersistError> {
        if b.len() != PERSIST_LEN {
            return Err(PersistError::Length(b.len()));
        }
        let magic = [b[0], b[1], b[2], b[3]];
        if magic != PERSIST_MAGIC {
            return Err(PersistError::Magic(magic));
        }
        let version = u16::from_be_bytes([b[4], b[5]]);
        if version != PERSIST_VERSION {
            return Err(PersistError::Version(version));
        }
        let stored = rd32(b, 60);
        let computed = fnv1a(&b[..60]);
        if stored != computed {
            return Err(PersistError::Checksum { stored, computed });
        }
        let st = |offset: usize| {
            ServerState::from_wire(b[offset]).ok_or(PersistError::State {
                offset,
                value: b[offset],
            })
        };
        let role = match b[14] {
            0 => None,
            1 => Some(Role::Primary),
            2 => Some(Role::Secondary),
            v => return Err(PersistError::Role(v)),
        };
        Ok(FailoverPersist {
            role,
            own_state: st(6)?,
            resume_state: st(7)?,
            own_state_since: rd32(b, 8),
            partner_state: if b[12] == 0 { None } else { Some(st(12)?) },
            ever_communicated: b[13] & 1 != 0,
            recover_all: b[13] & 2 != 0,
            blind_partner_down: b[13] & 4 != 0,
            partner_state_since: rd32(b, 16),
            last_contact: rd32(b, 20),
            last_operational: rd32(b, 24),
            partner_down_since: rd32(b, 28),
            recover_base: rd32(b, 32),
            mclt: rd32(b, 36),
            connect_max_unacked: rd32(b, 40),
        })
    }
}
