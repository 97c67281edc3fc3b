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
//! | 104 | 24 | variable data: inline or a reference to the side area (below) |
//!
//! ## Variable data (bytes 104..128)
//! - **Inline** (byte 104 at most 23, the only form older builds wrote): byte 104 is the
//!   option 82 length, bytes 105.. its value (zero padded); no host name, no vendor class.
//! - **In the side area** (byte 104 = [`VAR_IN_SIDE_AREA`]): byte 105 is the number of side
//!   chunks in use (1..=[`EXT_CHUNKS`]), bytes 106..108 the payload length (u16), bytes
//!   108..112 the CRC-32 of the payload, the rest zero. The payload (`[option 82 length,
//!   host-name length, vendor-class length, option 82, host name, vendor class]`) lives in
//!   this slot's extent of the side area (`table/ext.rs`): [`EXT_CHUNKS`] chunks of 128 bytes,
//!   each `seq | crc | 120 payload bytes`. The record's CRC covers the payload's CRC, so a
//!   record and a side extent that do not belong together (a torn write) are detected.
//!
//! A record whose 128 bytes are all zero is "pristine": a Free address that
//! was never written (a freshly created file is sparse and all zero).

use std::fmt;
use std::net::Ipv4Addr;

use crate::crc32c;

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
/// `Lease::flags` bit: a dynamic BOOTP binding (RFC 2131 §4.1 "permanent" allocation): the
/// lease never ends, so the sweep never expires nor reclaims it (its `expiry` is
/// [`EXPIRY_PERMANENT`]); only an operator frees it. Failover sends it with the B bit of
/// IP-flags (draft-12 5.14).
pub const FLAG_BOOTP: u8 = 0x08;
/// `Lease::expiry` of a permanent (dynamic BOOTP) lease: 0xffffffff, RFC 2131's "infinity"
/// for option 51, also its lease-expiration-time in a binding update.
pub const EXPIRY_PERMANENT: u32 = u32::MAX;
/// Longest option 82 (relay agent information) value a lease keeps: any valid one (the
/// option's length byte bounds it).
pub const RELAY_AGENT_INFO_MAX: usize = 255;
/// Longest option 82 value kept inline in the record (older builds kept only these).
pub const INLINE_RELAY_AGENT_INFO_MAX: usize = 23;
/// Side-area chunks per address (the per-lease bound of the variable data).
pub const EXT_CHUNKS: usize = 4;
/// Size of one side-area chunk (same as a record, so the write-ahead log carries it as one).
pub const EXT_CHUNK_SIZE: usize = RECORD_SIZE;
/// Payload bytes per side-area chunk (after `seq` and `crc`).
pub const EXT_CHUNK_PAYLOAD: usize = EXT_CHUNK_SIZE - 8;
/// Bytes of variable data a lease may hold (option 82, host name and vendor class together):
/// the per-lease bound. Option 82 always fits whole; a host name and vendor class that do not
/// fit beside it are cut (vendor class first), see [`Lease::set_host_name`].
pub const VAR_DATA_MAX: usize = EXT_CHUNKS * EXT_CHUNK_PAYLOAD - 3;
/// Byte 104 of a record whose variable data lives in the side area.
pub const VAR_IN_SIDE_AREA: u8 = 0xff;

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
    /// The handle on the lease's variable data (option 82, host name, vendor class): the
    /// record's bytes 104..128 as they are. Inline (option 82 of at most 23 bytes, nothing
    /// else) or a reference to the side area with the data's length and CRC-32C; the data
    /// itself is read with `LeaseTable::read_with_var` and written with
    /// `LeaseTable::update_var`, only where they are used.
    pub var: VarRef,
}

/// A lease's variable-length data, bounded ([`VAR_DATA_MAX`] bytes in all): fixed size and
/// `Copy`, so reading or writing it never allocates. Unused bytes are zero, so equal values
/// compare equal.
#[derive(Clone, Copy, PartialEq, Eq)]
pub struct VarData {
    /// Lengths of option 82, host name, vendor class.
    lens: [u8; 3],
    /// The three values one after the other, then zeros.
    buf: [u8; VAR_DATA_MAX],
}

impl Default for VarData {
    fn default() -> Self {
        Self::EMPTY
    }
}

impl fmt::Debug for VarData {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let hex = |b: &[u8]| b.iter().map(|x| format!("{x:02x}")).collect::<String>();
        write!(
            f,
            "VarData {{ ri: {}, host_name: {:?}, vendor_class: {:?} }}",
            hex(self.field(0)),
            String::from_utf8_lossy(self.field(1)),
            String::from_utf8_lossy(self.field(2))
        )
    }
}

impl VarData {
    /// No data.
    pub const EMPTY: VarData = VarData {
        lens: [0; 3],
        buf: [0; VAR_DATA_MAX],
    };

    fn range(&self, i: usize) -> std::ops::Range<usize> {
        let start: usize = self.lens[..i].iter().map(|&n| usize::from(n)).sum();
        let start = start.min(VAR_DATA_MAX);
        start..(start + usize::from(self.lens[i])).min(VAR_DATA_MAX)
    }

    fn field(&self, i: usize) -> &[u8] {
        &self.buf[self.range(i)]
    }

    /// The three values at once (option 82, host name, vendor class), each cut to 255 bytes,
    /// under the same bound and priority as the setters: option 82 always whole.
    pub fn from_parts(relay_agent_info: &[u8], host_name: &[u8], vendor_class: &[u8]) -> Self {
        Self::from_var_parts(VarParts::new(relay_agent_info, host_name, vendor_class))
    }

    /// The data of `p` (already cut to the bound).
    pub fn from_var_parts(p: VarParts<'_>) -> Self {
        let mut v = VarData::EMPTY;
        let mut at = 0;
        for (k, f) in p.fields().iter().enumerate() {
            v.buf[at..at + f.len()].copy_from_slice(f);
            v.lens[k] = f.len() as u8;
            at += f.len();
        }
        v
    }

    /// The three values, borrowed.
    pub fn parts(&self) -> VarParts<'_> {
        VarParts {
            ri: self.field(0),
            hn: self.field(1),
            vc: self.field(2),
        }
    }

    /// The handle a record holds for this data.
    pub fn var_ref(&self) -> VarRef {
        VarRef::of(self.parts())
    }

    /// Sets option 82 (at most [`RELAY_AGENT_INFO_MAX`] bytes, else refused: false) whole,
    /// cutting the vendor class, then the host name, to fit the bound.
    pub fn set_relay_agent_info(&mut self, value: &[u8]) -> bool {
        if value.len() > RELAY_AGENT_INFO_MAX {
            return false;
        }
        self.set(0, value)
    }

    /// Sets the host name; false when it was cut to fit the bound.
    pub fn set_host_name(&mut self, value: &[u8]) -> bool {
        self.set(1, value) && value.len() <= 255
    }

    /// Sets the vendor class; false when it was cut to fit the bound.
    pub fn set_vendor_class(&mut self, value: &[u8]) -> bool {
        self.set(2, value) && value.len() <= 255
    }

    /// Option 82 (empty: none).
    pub fn relay_agent_info(&self) -> &[u8] {
        self.field(0)
    }

    /// Host name, option 12 (empty: none).
    pub fn host_name(&self) -> &[u8] {
        self.field(1)
    }

    /// Vendor class identifier, option 60 (empty: none).
    pub fn vendor_class(&self) -> &[u8] {
        self.field(2)
    }

    /// True when nothing is stored.
    pub fn is_empty(&self) -> bool {
        self.lens == [0; 3]
    }

    /// Bytes of data held (the three values).
    pub fn len(&self) -> usize {
        self.lens.iter().map(|&n| usize::from(n)).sum()
    }

    /// Sets field `i` to `value` (at most 255 bytes), then cuts the lower-priority fields
    /// (vendor class, then host name; option 82 never) until all fit. Returns whether
    /// `value` was kept whole.
    fn set(&mut self, i: usize, value: &[u8]) -> bool {
        let value = &value[..value.len().min(255)];
        let mut vals = [[0u8; 255]; 3];
        let mut lens = [0usize; 3];
        for (k, (v, n)) in vals.iter_mut().zip(lens.iter_mut()).enumerate() {
            let f: &[u8] = if k == i { value } else { self.field(k) };
            v[..f.len()].copy_from_slice(f);
            *n = f.len();
        }
        // Priority: option 82 whole (255 + 3 < VAR_DATA_MAX), then host name, then vendor class.
        let mut room = VAR_DATA_MAX;
        for n in lens.iter_mut() {
            *n = (*n).min(room);
            room -= *n;
        }
        *self = VarData::EMPTY;
        let mut at = 0;
        for ((v, &n), l) in vals.iter().zip(lens.iter()).zip(self.lens.iter_mut()) {
            self.buf[at..at + n].copy_from_slice(&v[..n]);
            *l = n as u8;
            at += n;
        }
        lens[i] == value.len()
    }

    /// Rebuilds the data from a side-area payload; `None` when it is not consistent.
    pub(crate) fn from_payload(p: &[u8]) -> Option<VarData> {
        if p.len() < 3 {
            return None;
        }
        let lens = [p[0], p[1], p[2]];
        let n: usize = lens.iter().map(|&x| usize::from(x)).sum();
        if n > VAR_DATA_MAX || p.len() != 3 + n {
            return None;
        }
        let mut v = VarData::EMPTY;
        v.lens = lens;
        v.buf[..n].copy_from_slice(&p[3..]);
        Some(v)
    }
}

/// Where a record says its variable data is, when it is in the side area.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) struct SideRef {
    /// Chunks in use (1..=EXT_CHUNKS).
    pub chunks: usize,
    /// Payload bytes.
    pub len: usize,
    /// CRC-32 of the payload.
    pub crc: u32,
}

impl SideRef {
    /// The reference in record bytes, if the record's variable data is in the side area.
    /// `Err` for a reference this build never writes.
    pub(crate) fn of_record(b: &[u8; RECORD_SIZE]) -> Result<Option<SideRef>, String> {
        let mut r = [0u8; 24];
        r.copy_from_slice(&b[104..128]);
        VarRef(r).side()
    }
}

/// The three values of a lease's variable data, borrowed and cut to the per-lease bound
/// ([`VAR_DATA_MAX`]: option 82 always whole, then host name, then vendor class). Built from a
/// message's options without copying; `Copy`.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct VarParts<'a> {
    ri: &'a [u8],
    hn: &'a [u8],
    vc: &'a [u8],
}

impl<'a> VarParts<'a> {
    /// Option 82, host name and vendor class, each cut to 255 bytes, the later ones cut to
    /// what the bound leaves.
    #[inline]
    pub fn new(relay_agent_info: &'a [u8], host_name: &'a [u8], vendor_class: &'a [u8]) -> Self {
        let mut room = VAR_DATA_MAX;
        let mut cut = |f: &'a [u8]| {
            let n = f.len().min(255).min(room);
            room -= n;
            &f[..n]
        };
        let ri = cut(relay_agent_info);
        let hn = cut(host_name);
        let vc = cut(vendor_class);
        VarParts { ri, hn, vc }
    }

    /// Option 82 (empty: none).
    pub fn relay_agent_info(&self) -> &'a [u8] {
        self.ri
    }

    /// Host name (empty: none).
    pub fn host_name(&self) -> &'a [u8] {
        self.hn
    }

    /// Vendor class (empty: none).
    pub fn vendor_class(&self) -> &'a [u8] {
        self.vc
    }

    fn fields(&self) -> [&'a [u8]; 3] {
        [self.ri, self.hn, self.vc]
    }

    /// Whether the data has the form kept in the record itself (option 82 of at most 23
    /// bytes, nothing else).
    #[inline]
    pub fn fits_inline(&self) -> bool {
        self.hn.is_empty() && self.vc.is_empty() && self.ri.len() <= INLINE_RELAY_AGENT_INFO_MAX
    }

    /// Bytes of the side-area payload (`[lens; 3]` then the values).
    #[inline]
    pub(crate) fn payload_len(&self) -> usize {
        3 + self.ri.len() + self.hn.len() + self.vc.len()
    }

    /// Side chunks the payload takes.
    #[inline]
    pub(crate) fn chunks(&self) -> usize {
        self.payload_len().div_ceil(EXT_CHUNK_PAYLOAD)
    }

    /// Copies payload bytes `i * 120..(i + 1) * 120` into `c[8..]` (zero padded; `c[..8]`
    /// zero): side chunk `i`, built without a buffer of the whole payload.
    #[inline]
    pub(crate) fn fill_chunk(&self, i: usize, c: &mut [u8; EXT_CHUNK_SIZE]) {
        *c = [0; EXT_CHUNK_SIZE];
        let lens = [
            self.ri.len() as u8,
            self.hn.len() as u8,
            self.vc.len() as u8,
        ];
        let (lo, hi) = (i * EXT_CHUNK_PAYLOAD, (i + 1) * EXT_CHUNK_PAYLOAD);
        let mut at = 0;
        for seg in [&lens[..], self.ri, self.hn, self.vc] {
            let (s, e) = (at, at + seg.len());
            at = e;
            let (from, to) = (s.max(lo), e.min(hi));
            if from < to {
                c[8 + from - lo..8 + to - lo].copy_from_slice(&seg[from - s..to - s]);
            }
        }
    }

    /// Copies the payload into side chunks (`out[i][8..]`, zero padded); returns the chunks.
    #[cfg(test)]
    pub(crate) fn write_chunks(&self, out: &mut [[u8; EXT_CHUNK_SIZE]; EXT_CHUNKS]) -> usize {
        let n = self.chunks();
        for (i, c) in out.iter_mut().enumerate().take(n) {
            self.fill_chunk(i, c);
        }
        n
    }
}

/// A record's handle on its variable data: the record's bytes 104..128, copied as they are.
///
/// - inline (byte 0 at most 23, the only form older builds wrote): option 82's length, then
///   its bytes, zero padded;
/// - side area (byte 0 = [`VAR_IN_SIDE_AREA`]): byte 1 chunks in use, bytes 2..4 the payload
///   length, bytes 4..8 the payload's CRC-32C, the rest zero.
///
/// Two leases with equal data have equal handles, so "the handle did not change" means "the
/// data did not change" (up to a CRC-32C collision between two values of one address).
#[derive(Clone, Copy, Default, PartialEq, Eq)]
pub struct VarRef(pub(crate) [u8; 24]);

impl fmt::Debug for VarRef {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self.inline_relay_agent_info() {
            Some(ri) => write!(f, "VarRef(inline {ri:02x?})"),
            None => write!(
                f,
                "VarRef(side {} chunks, {} bytes, crc {:08x})",
                self.0[1],
                u16::from_le_bytes([self.0[2], self.0[3]]),
                u32::from_le_bytes([self.0[4], self.0[5], self.0[6], self.0[7]])
            ),
        }
    }
}

impl VarRef {
    /// No data.
    pub const EMPTY: VarRef = VarRef([0; 24]);

    /// True when the lease holds no variable data.
    #[inline]
    pub fn is_empty(&self) -> bool {
        self.0[0] == 0
    }

    /// True when the data lives in the side area.
    #[inline]
    pub fn is_side(&self) -> bool {
        self.0[0] == VAR_IN_SIDE_AREA
    }

    /// The option 82 kept inline; `None` when the data is in the side area.
    #[inline]
    pub fn inline_relay_agent_info(&self) -> Option<&[u8]> {
        if self.is_side() {
            return None;
        }
        let n = usize::from(self.0[0]).min(INLINE_RELAY_AGENT_INFO_MAX);
        Some(&self.0[1..1 + n])
    }

    /// An inline handle for option 82 `ri`, if it fits (at most 23 bytes).
    #[inline]
    pub fn inline(ri: &[u8]) -> Option<VarRef> {
        if ri.len() > INLINE_RELAY_AGENT_INFO_MAX {
            return None;
        }
        let mut r = [0u8; 24];
        r[0] = ri.len() as u8;
        r[1..1 + ri.len()].copy_from_slice(ri);
        Some(VarRef(r))
    }

    /// The handle of `p`: inline when it fits, else the side reference (CRC-32C of the
    /// payload, computed here: callers compute it once per message).
    #[inline]
    pub fn of(p: VarParts<'_>) -> VarRef {
        if p.fits_inline() {
            if let Some(r) = Self::inline(p.ri) {
                return r;
            }
        }
        Self::side_of(p)
    }

    #[inline(never)]
    fn side_of(p: VarParts<'_>) -> VarRef {
        let n = p.payload_len();
        let lens = [p.ri.len() as u8, p.hn.len() as u8, p.vc.len() as u8];
        let c = crc32c::update_all(crc32c::begin(), [&lens[..], p.ri, p.hn, p.vc]);
        let mut r = [0u8; 24];
        r[0] = VAR_IN_SIDE_AREA;
        r[1] = n.div_ceil(EXT_CHUNK_PAYLOAD) as u8;
        r[2..4].copy_from_slice(&(n as u16).to_le_bytes());
        r[4..8].copy_from_slice(&crc32c::finish(c).to_le_bytes());
        VarRef(r)
    }

    /// The side reference, if the data is in the side area; `Err` for one this build never
    /// writes.
    pub(crate) fn side(&self) -> Result<Option<SideRef>, String> {
        let b = &self.0;
        if b[0] != VAR_IN_SIDE_AREA {
            return Ok(None);
        }
        let chunks = usize::from(b[1]);
        let len = usize::from(u16::from_le_bytes([b[2], b[3]]));
        let crc = u32::from_le_bytes([b[4], b[5], b[6], b[7]]);
        if chunks == 0
            || chunks > EXT_CHUNKS
            || len < 3
            || len > chunks * EXT_CHUNK_PAYLOAD
            || len <= (chunks - 1) * EXT_CHUNK_PAYLOAD
            || b[8..].iter().any(|&x| x != 0)
        {
            return Err(format!(
                "variable data reference out of range ({chunks} chunks, {len} bytes)"
            ));
        }
        Ok(Some(SideRef { chunks, len, crc }))
    }

    /// The data of an inline handle (empty for a side reference).
    pub fn inline_data(&self) -> VarData {
        VarData::from_parts(self.inline_relay_agent_info().unwrap_or_default(), &[], &[])
    }
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
            var: VarRef::EMPTY,
        }
    }

    /// The hardware address (`chaddr[..hlen]`, at most 16 bytes).
    pub fn hw(&self) -> &[u8] {
        &self.chaddr[..(self.hlen as usize).min(16)]
    }

    /// The option 82 kept in the record itself (at most 23 bytes); `None` when the lease's
    /// variable data is in the side area (read it with `LeaseTable::read_with_var`).
    pub fn inline_relay_agent_info(&self) -> Option<&[u8]> {
        self.var.inline_relay_agent_info()
    }

    /// Replaces the lease's variable data with option 82 `value` kept inline (at most
    /// [`INLINE_RELAY_AGENT_INFO_MAX`] bytes; empty: none) and returns true. A longer value is
    /// not stored here (it needs the side area: `LeaseTable::update_var`): the lease stays as
    /// it was and false is returned.
    pub fn set_relay_agent_info(&mut self, value: &[u8]) -> bool {
        match VarRef::inline(value) {
            Some(r) => {
                self.var = r;
                true
            }
            None => false,
        }
    }

    /// True if the store quarantined this record at open.
    pub fn is_quarantined(&self) -> bool {
        self.flags & FLAG_QUARANTINED != 0
    }

    /// A dynamic BOOTP binding ([`FLAG_BOOTP`]) that holds its address: never expired or
    /// reclaimed by the sweep.
    pub fn is_permanent(&self) -> bool {
        self.flags & FLAG_BOOTP != 0 && self.state == LeaseState::Active
    }

    /// Forgets the client (key, hardware address) and all times; keeps the
    /// address, state, owner and flags (but [`FLAG_BOOTP`], which belongs to the binding).
    pub fn clear_binding(&mut self) {
        let keep = Lease {
            state: self.state,
            owner: self.owner,
            flags: self.flags & !FLAG_BOOTP,
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
        b[104..128].copy_from_slice(&self.var.0);
        b
    }

    /// Strict decode (used at open): `Err(reason)` for values this build never writes.
    pub(crate) fn decode(b: &[u8; RECORD_SIZE]) -> Result<Self, String> {
        let state = LeaseState::from_u8(b[12]).ok_or_else(|| format!("unknown state {}", b[12]))?;
        let owner = Owner::from_u8(b[13]).ok_or_else(|| format!("unknown owner {}", b[13]))?;
        let client = ClientKey::from_raw(b[17], b[18], &b[36..68])
            .ok_or_else(|| format!("invalid client key (len {}, kind {:#x})", b[17], b[18]))?;
        SideRef::of_record(b)?;
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
        // The handle as it is (the data are read where they are used).
        let mut var = [0u8; 24];
        var.copy_from_slice(&b[104..128]);
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
            var: VarRef(var),
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
        assert!(l.set_relay_agent_info(&[0x55; 23]));
        let b = l.encode();
        assert_eq!(Lease::decode(&b), Ok(l));
        assert_eq!(l.client.to_string(), "01:aa:bb");
    }

    #[test]
    fn relay_agent_info_round_trip_and_limit() {
        let mut l = Lease::free(Ipv4Addr::new(10, 0, 0, 7));
        assert_eq!(l.inline_relay_agent_info(), Some(&b""[..]));
        let long = [0xabu8; INLINE_RELAY_AGENT_INFO_MAX];
        assert!(l.set_relay_agent_info(&long));
        assert_eq!(l.inline_relay_agent_info(), Some(&long[..]));
        // Too long for the record: refused here (the side area takes it), the value stays.
        let before = l;
        assert!(!l.set_relay_agent_info(&[1; INLINE_RELAY_AGENT_INFO_MAX + 1]));
        assert_eq!(l, before);
        // Shorter value: no stale bytes remain (equal values give equal records).
        assert!(l.set_relay_agent_info(&[1, 3, b'a', b'b', b'c']));
        let mut fresh = Lease::free(l.addr);
        assert!(fresh.set_relay_agent_info(&[1, 3, b'a', b'b', b'c']));
        assert_eq!(l, fresh);
        assert!(l.set_relay_agent_info(&[]));
        assert_eq!(l, Lease::free(l.addr));
        // A damaged inline length byte never reads past the field.
        let mut b = l.encode();
        b[104] = 200;
        assert_eq!(
            Lease::decode_lossy(&b)
                .inline_relay_agent_info()
                .map(<[u8]>::len),
            Some(INLINE_RELAY_AGENT_INFO_MAX)
        );
    }

    #[test]
    fn varlen_short_option82_stays_inline_as_older_builds_wrote_it() {
        let p = VarParts::new(&[1, 3, b'a', b'b', b'c'], &[], &[]);
        let r = VarRef::of(p);
        assert!(!r.is_side());
        let mut l = Lease::free(Ipv4Addr::new(10, 0, 0, 7));
        l.var = r;
        let b = l.encode();
        assert_eq!(b[104], 5);
        assert_eq!(&b[105..110], &[1, 3, b'a', b'b', b'c']);
        assert_eq!(b[110..128], [0; 18]);
        // The handle is copied as it is both ways.
        assert_eq!(Lease::decode(&b).unwrap().var, r);
        assert_eq!(
            r.inline_data().relay_agent_info(),
            &[1, 3, b'a', b'b', b'c']
        );
    }

    #[test]
    fn varlen_long_values_go_to_the_side_area_with_their_checksum_in_the_handle() {
        let ri: Vec<u8> = (0..120u8).collect();
        let mut v = VarData::EMPTY;
        assert!(v.set_relay_agent_info(&ri));
        assert!(v.set_host_name(b"cpe-0001"));
        assert!(v.set_vendor_class(b"docsis3.1"));
        let r = v.var_ref();
        // The handle from borrowed parts (the packet path's) is the owned value's.
        assert_eq!(r, VarRef::of(VarParts::new(&ri, b"cpe-0001", b"docsis3.1")));
        let mut l = Lease::free(Ipv4Addr::new(10, 0, 0, 7));
        l.var = r;
        let b = l.encode();
        let sr = SideRef::of_record(&b).unwrap().unwrap();
        assert_eq!(sr.len, 3 + 120 + 8 + 9);
        assert_eq!(sr.chunks, 2);
        let mut side = [[0u8; EXT_CHUNK_SIZE]; EXT_CHUNKS];
        assert_eq!(v.parts().write_chunks(&mut side), 2);
        let mut p = Vec::new();
        for c in &side[..2] {
            p.extend_from_slice(&c[8..]);
        }
        p.truncate(sr.len);
        assert_eq!(crate::crc32c::hash(&p), sr.crc);
        assert_eq!(VarData::from_payload(&p).unwrap(), v);
        // Changing only the host name changes the handle, so the record.
        let mut v2 = v;
        assert!(v2.set_host_name(b"cpe-0002"));
        assert_ne!(v2.var_ref(), r);
        // Host name alone (no option 82) is side data too.
        assert!(VarRef::of(VarParts::new(&[], b"h", &[])).is_side());
        // A damaged reference is refused by the strict decode.
        let mut bad = b;
        bad[105] = 9;
        assert!(Lease::decode(&bad).is_err());
    }

    #[test]
    fn varlen_bound_keeps_option82_whole_and_cuts_vendor_class_then_host_name() {
        let mut v = VarData::EMPTY;
        assert!(v.set_host_name(&[b'h'; 200]));
        assert!(v.set_vendor_class(&[b'v'; 200]));
        // 255 + 200 + 200 > VAR_DATA_MAX: option 82 whole, host name whole, vendor class cut.
        assert!(v.set_relay_agent_info(&[7; 255]));
        assert_eq!(v.relay_agent_info(), &[7; 255][..]);
        assert_eq!(v.host_name(), &[b'h'; 200][..]);
        assert_eq!(v.vendor_class(), &[b'v'; VAR_DATA_MAX - 455][..]);
        assert_eq!(v.len(), VAR_DATA_MAX);
        // The borrowed form cuts the same way.
        let p = VarParts::new(&[7; 255], &[b'h'; 200], &[b'v'; 200]);
        assert_eq!(VarData::from_var_parts(p), v);
        assert!(!v.set_vendor_class(&[b'w'; VAR_DATA_MAX - 454]));
        // A longer host name pushes the vendor class out first.
        assert!(!v.set_host_name(&[b'H'; 255]));
        assert_eq!(v.host_name(), &[b'H'; VAR_DATA_MAX - 255][..]);
        assert_eq!(v.vendor_class(), b"");
        // Option 82 of 256 bytes is no valid option: refused, nothing changes.
        let before = v;
        assert!(!v.set_relay_agent_info(&[1; 256]));
        assert_eq!(v, before);
    }

    #[test]
    fn varlen_lease_keeps_main_size() {
        // The handle takes the 24 bytes the inline option 82 took: a `Lease` copy costs what
        // it cost before variable-length data.
        assert_eq!(std::mem::size_of::<VarRef>(), 24);
        assert!(
            std::mem::size_of::<Lease>() <= 144,
            "{}",
            std::mem::size_of::<Lease>()
        );
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
