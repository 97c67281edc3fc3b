//! In-memory lease values and their on-disk record encoding.
//!
//! # Record layout (128 bytes, little-endian, offsets in bytes)
//!
//! | off | size | field |
//! |----:|-----:|-------|
//! | 0   | 4 | `seq`: seqlock sequence; odd while a writer holds the record |
//! | 4   | 4 | `crc`: CRC-32 (crc32fast) of bytes 8..128 |
//! | 8   | 4 | `addr`: IPv4 address (as `u32::from(Ipv4Addr)`) |
//! | 12  | 1 | `state` ([`LeaseState`]) |
//! | 13  | 1 | `owner` ([`Owner`]) |
//! | 14  | 1 | `flags` (bit 0: quarantined by the store; bit 1: reconfiguring (FORCERENEW sent or NAK deferred); bit 2: the client was given an RFC 6704 reconfigure key; bits 3-7 free for callers) |
//! | 15  | 1 | `htype` |
//! | 16  | 1 | `hlen` |
//! | 17  | 1 | client key length |
//! | 18  | 1 | client key kind (low bits: 1 client-id, 2 hardware; 0x80: hashed) |
//! | 19  | 1 | zero |
//! | 20  | 16 | `chaddr` |
//! | 36  | 32 | client key bytes (zero padded) |
//! | 68  | 4 | `start` (unix seconds) |
//! | 72  | 4 | `expiry` (unix seconds; for Declined: end of quarantine) |
//! | 76  | 4 | `cltt` |
//! | 80  | 4 | `potential_expiry` |
//! | 84  | 4 | `acked_potential_expiry` |
//! | 88  | 4 | `tstp` |
//! | 92  | 4 | `tsfp` |
//! | 96  | 4 | `lease_time` |
//! | 100 | 2 | `shard` (worker shard that last allocated the address) |
//! | 102 | 2 | zero |
//! | 104 | 1 | option 82 length (at most 23; see [`Lease::relay_agent_info`]) |
//! | 105 | 23 | option 82 bytes (zero padded) |
//!
//! A record whose 128 bytes are all zero is "pristine": a Free address that
//! was never written (a freshly created file is sparse and all zero).

use std::fmt;
use std::net::Ipv4Addr;

/// Size of one on-disk record.
pub const RECORD_SIZE: usize = 128;
/// Record size in 32-bit words (the unit of atomic access).
pub(crate) const RECORD_WORDS: usize = RECORD_SIZE / 4;
/// Maximum stored client key length; longer client identifiers are hashed.
pub const KEY_MAX: usize = 32;
/// `Lease::flags` bit set by the store on a record it found corrupt at open.
pub const FLAG_QUARANTINED: u8 = 0x01;
/// `Lease::flags` bit: the server asked the client to reconfigure (FORCERENEW sent, or a
/// NAK deferred to its next renewal). It lives in the record so it survives restarts; a
/// record written before this bit existed has it clear (bits 1-7 were always written 0).
pub const FLAG_RECONFIGURING: u8 = 0x02;
/// `Lease::flags` bit: the client's last ACK carried an RFC 6704 reconfigure key (derived
/// from the server's secret and the binding, so the key itself needs no room here).
pub const FLAG_RECONF_KEY: u8 = 0x04;
/// Longest option 82 (relay agent information) value a record keeps.
pub const RELAY_AGENT_INFO_MAX: usize = 23;

const KIND_CLIENT_ID: u8 = 1;
const KIND_HW: u8 = 2;
const KIND_HASHED: u8 = 0x80;

/// Binding state of one address.
#[repr(u8)]
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub enum LeaseState {
    /// Free, owned by this server (failover: the primary's FREE).
    Free = 0,
    /// Offered to a client, waiting for its REQUEST.
    Offered = 1,
    /// Bound (ACKed).
    Active = 2,
    /// Lease time ran out; the client key is kept so the client can get it back.
    Expired = 3,
    /// Released by the client; reusable.
    Released = 4,
    /// Declined by a client (in use by someone else); quarantined until `expiry`.
    Declined = 5,
    /// Abandoned (also: quarantined by the store at open). Never allocated automatically.
    Abandoned = 6,
    /// Free, owned by the failover backup server.
    Backup = 7,
    /// Reserved for a fixed client; never allocated from the free lists.
    Reserved = 8,
}

impl LeaseState {
    /// Every state, in numeric order.
    pub const ALL: [LeaseState; 9] = [
        LeaseState::Free,
        LeaseState::Offered,
        LeaseState::Active,
        LeaseState::Expired,
        LeaseState::Released,
        LeaseState::Declined,
        LeaseState::Abandoned,
        LeaseState::Backup,
        LeaseState::Reserved,
    ];
    /// Number of states.
    pub const COUNT: usize = 9;

    /// Decodes the on-disk byte.
    pub fn from_u8(v: u8) -> Option<Self> {
        Self::ALL.get(v as usize).copied()
    }

    /// Lower-case name (`"active"`, ...), as used in dumps.
    pub fn as_str(self) -> &'static str {
        match self {
            LeaseState::Free => "free",
            LeaseState::Offered => "offered",
            LeaseState::Active => "active",
            LeaseState::Expired => "expired",
            LeaseState::Released => "released",
            LeaseState::Declined => "declined",
            LeaseState::Abandoned => "abandoned",
            LeaseState::Backup => "backup",
            LeaseState::Reserved => "reserved",
        }
    }

    /// Whether a record in this state may be handed out by `allocate` for `owner`.
    /// Primary: Free, Released, Expired. Backup: Backup.
    pub fn is_free_for(self, owner: Owner) -> bool {
        match owner {
            Owner::Primary => matches!(
                self,
                LeaseState::Free | LeaseState::Released | LeaseState::Expired
            ),
            Owner::Backup => self == LeaseState::Backup,
        }
    }

    /// The free list (by owner) a record in this state belongs to, if any.
    pub fn free_list_owner(self) -> Option<Owner> {
        if self.is_free_for(Owner::Primary) {
            Some(Owner::Primary)
        } else if self == LeaseState::Backup {
            Some(Owner::Backup)
        } else {
            None
        }
    }

    /// States in which `find_client` reports a record whose key matches:
    /// Offered, Active, Expired, Released, Reserved.
    pub fn binds_client(self) -> bool {
        matches!(
            self,
            LeaseState::Offered
                | LeaseState::Active
                | LeaseState::Expired
                | LeaseState::Released
                | LeaseState::Reserved
        )
    }
}

impl fmt::Display for LeaseState {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

/// Failover owner of a free address / of the server that granted a lease.
#[repr(u8)]
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, Default)]
pub enum Owner {
    /// This (main/primary) server.
    #[default]
    Primary = 0,
    /// The failover backup.
    Backup = 1,
}

impl Owner {
    pub(crate) fn idx(self) -> usize {
        self as usize
    }
    fn from_u8(v: u8) -> Option<Self> {
        match v {
            0 => Some(Owner::Primary),
            1 => Some(Owner::Backup),
            _ => None,
        }
    }
}

/// Kind of a [`ClientKey`].
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum KeyKind {
    /// No client (free record).
    None,
    /// DHCP option 61 client identifier.
    ClientId,
    /// Hardware address: `htype` followed by `chaddr[..hlen]`.
    Hardware,
}

/// Client identity: option 61 if present, else hardware type + address.
///
/// Fixed size and `Copy`: building one never allocates. Identifiers longer
/// than [`KEY_MAX`] bytes are stored as a 32-byte hash of the full identifier
/// (`is_hashed()`); equal identifiers always give equal keys.
#[derive(Clone, Copy, PartialEq, Eq, Hash)]
pub struct ClientKey {
    len: u8,
    kind: u8,
    bytes: [u8; KEY_MAX],
}

impl Default for ClientKey {
    fn default() -> Self {
        Self::NONE
    }
}

impl ClientKey {
    /// The empty key (no client).
    pub const NONE: ClientKey = ClientKey {
        len: 0,
        kind: 0,
        bytes: [0; KEY_MAX],
    };

    /// Key from a DHCP option 61 value (type byte included). An empty value gives `NONE`.
    pub fn from_client_id(id: &[u8]) -> Self {
        if id.is_empty() {
            return Self::NONE;
        }
        let mut k = ClientKey {
            len: 0,
            kind: KIND_CLIENT_ID,
            bytes: [0; KEY_MAX],
        };
        if id.len() <= KEY_MAX {
            k.bytes[..id.len()].copy_from_slice(id);
            k.len = id.len() as u8;
        } else {
            k.bytes = wide_hash(id);
            k.len = KEY_MAX as u8;
            k.kind |= KIND_HASHED;
        }
        k
    }

    /// Key from a hardware type and address (`chaddr[..hlen]`; at most 16 bytes are used).
    pub fn from_hw(htype: u8, hw: &[u8]) -> Self {
        let hw = &hw[..hw.len().min(16)];
        let mut k = ClientKey {
            len: 1 + hw.len() as u8,
            kind: KIND_HW,
            bytes: [0; KEY_MAX],
        };
        k.bytes[0] = htype;
        k.bytes[1..1 + hw.len()].copy_from_slice(hw);
        k
    }

    /// True for [`ClientKey::NONE`].
    pub fn is_none(&self) -> bool {
        self.len == 0
    }

    /// What the key was built from.
    pub fn kind(&self) -> KeyKind {
        match self.kind & !KIND_HASHED {
            KIND_CLIENT_ID => KeyKind::ClientId,
            KIND_HW => KeyKind::Hardware,
            _ => KeyKind::None,
        }
    }

    /// True when the identifier was longer than [`KEY_MAX`] and is stored as a hash.
    pub fn is_hashed(&self) -> bool {
        self.kind & KIND_HASHED != 0
    }

    /// The stored bytes (the identifier, or its hash when `is_hashed()`).
    pub fn as_bytes(&self) -> &[u8] {
        &self.bytes[..self.len as usize]
    }

    pub(crate) fn raw_parts(&self) -> (u8, u8, &[u8; KEY_MAX]) {
        (self.len, self.kind, &self.bytes)
    }

    /// Rebuilds a key from record bytes; `None` when they are inconsistent.
    fn from_raw(len: u8, kind: u8, bytes: &[u8]) -> Option<Self> {
        if len as usize > KEY_MAX {
            return None;
        }
        let base = kind & !KIND_HASHED;
        let ok = match (len, base) {
            (0, 0) => kind == 0,
            (0, _) | (_, 0) => false,
            (_, KIND_CLIENT_ID) => true,
            (_, KIND_HW) => kind & KIND_HASHED == 0 && len <= 17,
            _ => false,
        };
        // Padding must be zero so that derived equality is exact.
        if !ok || bytes[len as usize..KEY_MAX].iter().any(|&b| b != 0) {
            return None;
        }
        let mut k = ClientKey {
            len,
            kind,
            bytes: [0; KEY_MAX],
        };
        k.bytes.copy_from_slice(&bytes[..KEY_MAX]);
        Some(k)
    }
}

/// Colon-separated hex of the stored bytes (`01:aa:bb:..`); hashed keys are
/// prefixed with `hash:`; the empty key prints as `-`.
impl fmt::Display for ClientKey {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        if self.is_none() {
            return f.write_str("-");
        }
        if self.is_hashed() {
            f.write_str("hash:")?;
        }
        for (i, b) in self.as_bytes().iter().enumerate() {
            if i > 0 {
                f.write_str(":")?;
            }
            write!(f, "{b:02x}")?;
        }
        Ok(())
    }
}

impl fmt::Debug for ClientKey {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let kind = match self.kind() {
            KeyKind::None => "none",
            KeyKind::ClientId => "id",
            KeyKind::Hardware => "hw",
        };
        write!(f, "ClientKey({kind} {self})")
    }
}

/// Deterministic 256-bit digest for identifiers longer than `KEY_MAX`
/// (four independently seeded 64-bit lanes; persisted, so never change it).
fn wide_hash(data: &[u8]) -> [u8; KEY_MAX] {
    const SEEDS: [u64; 4] = [
        0x243f_6a88_85a3_08d3,
        0x1319_8a2e_0370_7344,
        0xa409_3822_299f_31d0,
        0x082e_fa98_ec4e_6c89,
    ];
    let mut out = [0u8; KEY_MAX];
    for (lane, seed) in SEEDS.iter().enumerate() {
        let mut h = seed ^ (data.len() as u64).wrapping_mul(0x9e37_79b9_7f4a_7c15);
        for chunk in data.chunks(8) {
            let mut w = [0u8; 8];
            w[..chunk.len()].copy_from_slice(chunk);
            h = mix64(h ^ u64::from_le_bytes(w)).wrapping_add(*seed);
        }
        out[lane * 8..lane * 8 + 8].copy_from_slice(&mix64(h).to_le_bytes());
    }
    out
}

/// murmur3's 64-bit finaliser: a cheap, well-distributing bijection.
#[inline]
pub(crate) fn mix64(mut h: u64) -> u64 {
    h ^= h >> 33;
    h = h.wrapping_mul(0xff51_afd7_ed55_8ccd);
    h ^= h >> 33;
    h = h.wrapping_mul(0xc4ce_b9fe_1a85_ec53);
    h ^ (h >> 33)
}

/// Seeded 64-bit hash of a client key for the in-memory index.
#[inline]
pub(crate) fn key_hash(seed: u64, k: &ClientKey) -> u64 {
    let mut h = seed ^ ((k.len as u64) << 8 | k.kind as u64);
    for chunk in k.bytes.chunks_exact(8) {
        let mut w = [0u8; 8];
        w.copy_from_slice(chunk);
        h = (h ^ u64::from_le_bytes(w))
            .wrapping_mul(0x9e37_79b9_7f4a_7c15)
            .rotate_left(29);
    }
    mix64(h)
}

/// One address's lease, as a plain value (a consistent copy of its record).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Lease {
    /// The address (fixed by the record's position; `update` ignores changes).
    pub addr: Ipv4Addr,
    pub state: LeaseState,
    pub owner: Owner,
    /// Bit 0 ([`FLAG_QUARANTINED`]) is set by the store; bits 1-7 are free for callers.
    pub flags: u8,
    pub htype: u8,
    pub hlen: u8,
    pub chaddr: [u8; 16],
    pub client: ClientKey,
    pub start: u32,
    /// End of the lease (Declined: end of quarantine). Unix seconds.
    pub expiry: u32,
    pub cltt: u32,
    pub potential_expiry: u32,
    pub acked_potential_expiry: u32,
    pub tstp: u32,
    pub tsfp: u32,
    pub lease_time: u32,
    /// Worker shard that last allocated this address (informational).
    pub shard: u16,
    /// Per-lease variable data: the option 82 value (`extra[0]` = length,
    /// then the bytes). Read and write it with [`Lease::relay_agent_info`]
    /// and [`Lease::set_relay_agent_info`].
    pub extra: [u8; 24],
}

impl Lease {
    /// A never-used free record for `addr`.
    pub fn free(addr: Ipv4Addr) -> Self {
        Lease {
            addr,
            state: LeaseState::Free,
            owner: Owner::Primary,
            flags: 0,
            htype: 0,
            hlen: 0,
            chaddr: [0; 16],
            client: ClientKey::NONE,
            start: 0,
            expiry: 0,
            cltt: 0,
            potential_expiry: 0,
            acked_potential_expiry: 0,
            tstp: 0,
            tsfp: 0,
            lease_time: 0,
            shard: 0,
            extra: [0; 24],
        }
    }

    /// The hardware address (`chaddr[..hlen]`, at most 16 bytes).
    pub fn hw(&self) -> &[u8] {
        &self.chaddr[..(self.hlen as usize).min(16)]
    }

    /// The option 82 (relay agent information) value stored with the
    /// binding: the sub-options, without code and length; empty if none.
    pub fn relay_agent_info(&self) -> &[u8] {
        let n = (self.extra[0] as usize).min(RELAY_AGENT_INFO_MAX);
        &self.extra[1..1 + n]
    }

    /// Stores `value` as the binding's option 82 (empty: none) and returns
    /// true. A value longer than [`RELAY_AGENT_INFO_MAX`] is not stored:
    /// the lease stays as it was and false is returned.
    pub fn set_relay_agent_info(&mut self, value: &[u8]) -> bool {
        if value.len() > RELAY_AGENT_INFO_MAX {
            return false;
        }
        // Zero padding, so equal values give equal records.
        self.extra = [0; 24];
        self.extra[0] = value.len() as u8;
        self.extra[1..1 + value.len()].copy_from_slice(value);
        true
    }

    /// True if the store quarantined this record at open.
    pub fn is_quarantined(&self) -> bool {
        self.flags & FLAG_QUARANTINED != 0
    }

    /// Forgets the client (key, hardware address) and all times; keeps the
    /// address, state, owner and flags.
    pub fn clear_binding(&mut self) {
        let keep = Lease {
            state: self.state,
            owner: self.owner,
            flags: self.flags,
            ..Lease::free(self.addr)
        };
        *self = keep;
    }

    /// Encodes into record bytes with `seq` and `crc` zero.
    pub(crate) fn encode(&self) -> [u8; RECORD_SIZE] {
        let mut b = [0u8; RECORD_SIZE];
        b[8..12].copy_from_slice(&u32::from(self.addr).to_le_bytes());
        b[12] = self.state as u8;
        b[13] = self.owner as u8;
        b[14] = self.flags;
        b[15] = self.htype;
        b[16] = self.hlen;
        let (klen, kkind, kbytes) = self.client.raw_parts();
        b[17] = klen;
        b[18] = kkind;
        b[20..36].copy_from_slice(&self.chaddr);
        b[36..68].copy_from_slice(kbytes);
        let words = [
            self.start,
            self.expiry,
            self.cltt,
            self.potential_expiry,
            self.acked_potential_expiry,
            self.tstp,
            self.tsfp,
            self.lease_time,
        ];
        for (i, w) in words.iter().enumerate() {
            b[68 + i * 4..72 + i * 4].copy_from_slice(&w.to_le_bytes());
        }
        b[100..102].copy_from_slice(&self.shard.to_le_bytes());
        b[104..128].copy_from_slice(&self.extra);
        b
    }

    /// Strict decode (used at open): `Err(reason)` for values this build never writes.
    pub(crate) fn decode(b: &[u8; RECORD_SIZE]) -> Result<Self, String> {
        let state = LeaseState::from_u8(b[12]).ok_or_else(|| format!("unknown state {}", b[12]))?;
        let owner = Owner::from_u8(b[13]).ok_or_else(|| format!("unknown owner {}", b[13]))?;
        let client = ClientKey::from_raw(b[17], b[18], &b[36..68])
            .ok_or_else(|| format!("invalid client key (len {}, kind {:#x})", b[17], b[18]))?;
        Ok(Self::decode_with(b, state, owner, client))
    }

    /// Lenient decode for records already validated at open.
    pub(crate) fn decode_lossy(b: &[u8; RECORD_SIZE]) -> Self {
        let state = LeaseState::from_u8(b[12]).unwrap_or(LeaseState::Abandoned);
        let owner = Owner::from_u8(b[13]).unwrap_or(Owner::Primary);
        let client = ClientKey::from_raw(b[17], b[18], &b[36..68]).unwrap_or(ClientKey::NONE);
        Self::decode_with(b, state, owner, client)
    }

    fn decode_with(
        b: &[u8; RECORD_SIZE],
        state: LeaseState,
        owner: Owner,
        client: ClientKey,
    ) -> Self {
        let u = |o: usize| u32::from_le_bytes([b[o], b[o + 1], b[o + 2], b[o + 3]]);
        let mut chaddr = [0u8; 16];
        chaddr.copy_from_slice(&b[20..36]);
        let mut extra = [0u8; 24];
        extra.copy_from_slice(&b[104..128]);
        Lease {
            addr: Ipv4Addr::from(u(8)),
            state,
            owner,
            flags: b[14],
            htype: b[15],
            hlen: b[16],
            chaddr,
            client,
            start: u(68),
            expiry: u(72),
            cltt: u(76),
            potential_expiry: u(80),
            acked_potential_expiry: u(84),
            tstp: u(88),
            tsfp: u(92),
            lease_time: u(96),
            shard: u16::from_le_bytes([b[100], b[101]]),
            extra,
        }
    }
}

/// CRC over the record body (everything after `seq` and `crc`).
#[inline]
pub(crate) fn record_crc(b: &[u8; RECORD_SIZE]) -> u32 {
    crc32fast::hash(&b[8..])
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn encode_decode_round_trip() {
        let mut l = Lease::free(Ipv4Addr::new(10, 0, 0, 7));
        l.state = LeaseState::Active;
        l.owner = Owner::Backup;
        l.flags = 0x40;
        l.htype = 1;
        l.hlen = 6;
        l.chaddr[..6].copy_from_slice(&[1, 2, 3, 4, 5, 6]);
        l.client = ClientKey::from_client_id(&[1, 0xaa, 0xbb]);
        l.start = 1;
        l.expiry = 2;
        l.cltt = 3;
        l.potential_expiry = 4;
        l.acked_potential_expiry = 5;
        l.tstp = 6;
        l.tsfp = 7;
        l.lease_time = 8;
        l.shard = 9;
        l.extra[23] = 0x55;
        let b = l.encode();
        assert_eq!(Lease::decode(&b), Ok(l));
        assert_eq!(l.client.to_string(), "01:aa:bb");
    }

    #[test]
    fn relay_agent_info_round_trip_and_limit() {
        let mut l = Lease::free(Ipv4Addr::new(10, 0, 0, 7));
        assert_eq!(l.relay_agent_info(), b"");
        let long = [0xabu8; RELAY_AGENT_INFO_MAX];
        assert!(l.set_relay_agent_info(&long));
        assert_eq!(l.relay_agent_info(), long);
        assert_eq!(l.extra[0], 23);
        // Too long: refused, the stored value stays.
        let before = l;
        assert!(!l.set_relay_agent_info(&[1; RELAY_AGENT_INFO_MAX + 1]));
        assert_eq!(l, before);
        // A shorter value leaves no tail of the longer one behind.
        assert!(l.set_relay_agent_info(&[1, 3, b'a', b'b', b'c']));
        assert_eq!(l.relay_agent_info(), [1, 3, b'a', b'b', b'c']);
        let mut fresh = Lease::free(l.addr);
        assert!(fresh.set_relay_agent_info(&[1, 3, b'a', b'b', b'c']));
        assert_eq!(l, fresh);
        // It is part of the record.
        assert_eq!(Lease::decode(&l.encode()), Ok(l));
        // Empty: none, and the record is a free one again.
        assert!(l.set_relay_agent_info(&[]));
        assert_eq!(l, Lease::free(l.addr));
        // A damaged length byte never reads past the field.
        l.extra[0] = 200;
        assert_eq!(l.relay_agent_info().len(), RELAY_AGENT_INFO_MAX);
    }

    #[test]
    fn long_client_id_is_hashed_and_stable() {
        let long: Vec<u8> = (0..100u8).collect();
        let a = ClientKey::from_client_id(&long);
        let b = ClientKey::from_client_id(&long);
        let mut other = long.clone();
        other[99] ^= 1;
        assert!(a.is_hashed());
        assert_eq!(a, b);
        assert_ne!(a, ClientKey::from_client_id(&other));
        assert!(a.to_string().starts_with("hash:"));
    }

    #[test]
    fn hw_key_differs_from_client_id_with_same_bytes() {
        let hw = ClientKey::from_hw(1, &[1, 2, 3, 4, 5, 6]);
        let id = ClientKey::from_client_id(&[1, 1, 2, 3, 4, 5, 6]);
        assert_eq!(hw.as_bytes(), id.as_bytes());
        assert_ne!(hw, id);
        assert_eq!(hw.kind(), KeyKind::Hardware);
    }

    #[test]
    fn strict_decode_rejects_garbage() {
        let mut b = Lease::free(Ipv4Addr::new(1, 2, 3, 4)).encode();
        b[12] = 200;
        assert!(Lease::decode(&b).unwrap_err().contains("unknown state 200"));
        let mut b = Lease::free(Ipv4Addr::new(1, 2, 3, 4)).encode();
        b[17] = 40;
        b[18] = 1;
        assert!(Lease::decode(&b).is_err());
    }
}

#[cfg(test)]
mod reconfigure_flag_tests {
    use super::*;

    #[test]
    fn record_forcerenew_flag_survives_encode_and_old_records_read_clear() {
        // A record as every earlier build wrote it: flags bits 1-7 zero.
        let mut old = Lease::free(Ipv4Addr::new(10, 0, 0, 9));
        old.state = LeaseState::Active;
        old.client = ClientKey::from_hw(1, &[2, 0, 0, 0, 0, 9]);
        let decoded = Lease::decode(&old.encode()).expect("old record decodes");
        assert_eq!(decoded.flags & (FLAG_RECONFIGURING | FLAG_RECONF_KEY), 0);
        // The flag is part of the record (and of its CRC'd body).
        let mut flagged = old;
        flagged.flags |= FLAG_RECONFIGURING | FLAG_RECONF_KEY;
        let b = flagged.encode();
        assert_ne!(record_crc(&b), record_crc(&old.encode()));
        let back = Lease::decode(&b).expect("flagged record decodes");
        assert_eq!(back.flags & FLAG_RECONFIGURING, FLAG_RECONFIGURING);
        assert!(!back.is_quarantined());
        // clear_binding keeps flags: callers clear the reconfiguring bit themselves.
        let mut c = back;
        c.clear_binding();
        assert_eq!(c.flags, back.flags);
    }
}
