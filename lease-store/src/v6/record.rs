//! The DHCPv6 binding record: one fixed-size, CRC-checked slot of the v6
//! binding file, encoded and decoded with explicit little-endian offsets.
//!
//! A record carries what RFC 8156 (DHCPv6 failover) needs without a format
//! change: the binding state, the client last transaction time (CLTT), the
//! start of the state, the lifetime the partner acknowledged and the owner.

/// Size of one binding record in bytes.
pub const RECORD6_SIZE: usize = 512;
/// Longest DUID stored (RFC 8415 §11.1: at most 128 octets plus the 2-octet type).
pub const DUID_MAX: usize = 130;
/// Longest relay datum (interface-id, remote-id, subscriber-id) stored; longer ones are cut.
pub const RELAY_DATUM_MAX: usize = 64;
/// Longest client link-layer address stored (RFC 6939).
pub const LLADDR_MAX: usize = 20;

const O_CRC: usize = 0;
const O_USED: usize = 4;
const O_KIND: usize = 5;
const O_STATE: usize = 6;
const O_PLEN: usize = 7;
const O_OWNER: usize = 8;
const O_FLAGS: usize = 9;
const O_LINK: usize = 10;
const O_IAID: usize = 12;
const O_ADDR: usize = 16;
const O_CLTT: usize = 32;
const O_PREF: usize = 36;
const O_VALID: usize = 40;
const O_EXPIRY: usize = 44;
const O_STATE_START: usize = 48;
const O_ACKED_EXPIRY: usize = 52;
const O_ACKED_PREF: usize = 56;
const O_ACKED_VALID: usize = 60;
// 64..96 were zero before relay link/peer addresses were kept: old records read as unknown.
const O_RELAY_LINK: usize = 64;
const O_RELAY_PEER: usize = 80;
const O_DUID: usize = 96; // len byte, then DUID_MAX bytes
const O_IFID: usize = O_DUID + 1 + DUID_MAX; // 227
const O_REMOTE: usize = O_IFID + 1 + RELAY_DATUM_MAX; // 292
const O_SUBSCRIBER: usize = O_REMOTE + 1 + RELAY_DATUM_MAX; // 357
const O_LLTYPE: usize = O_SUBSCRIBER + 1 + RELAY_DATUM_MAX; // 422
const O_LLADDR: usize = O_LLTYPE + 2; // 424: len byte, then LLADDR_MAX bytes
                                      // The way to the client (zero in records written before it existed: unknown).
const O_VIA_HOPS: usize = O_LLADDR + 1 + LLADDR_MAX; // 445
const O_VIA_SRC: usize = O_VIA_HOPS + 1; // 446
const O_VIA_LINK: usize = O_VIA_SRC + 16; // 462
const O_VIA_PEER: usize = O_VIA_LINK + 16; // 478
/// The record's write sequence (kept by the table, raised by every write of the slot, also
/// by emptying it; zero in records written before it existed): a write-ahead log replay
/// applies an entry only over an older (or damaged) record.
const O_SEQ: usize = RECORD6_SIZE - 4; // 508
const _: () = assert!(O_VIA_PEER + 16 <= O_SEQ);

/// The write sequence of a record's bytes.
pub(crate) fn seq_of(r: &[u8]) -> u32 {
    u32_at(r, O_SEQ)
}

/// Sets a record's write sequence and recomputes its CRC.
pub(crate) fn seal(r: &mut [u8; RECORD6_SIZE], seq: u32) {
    r[O_SEQ..O_SEQ + 4].copy_from_slice(&seq.to_le_bytes());
    let crc = crc32fast::hash(&r[4..]);
    r[O_CRC..O_CRC + 4].copy_from_slice(&crc.to_le_bytes());
}

/// An emptied slot that keeps its write sequence: unused (`O_USED` 0), CRC'd, reads as
/// `Ok(None)`.
pub(crate) fn tombstone(seq: u32) -> [u8; RECORD6_SIZE] {
    let mut r = [0u8; RECORD6_SIZE];
    seal(&mut r, seq);
    r
}

/// Whether a record image is whole: all zeros (never used) or its CRC and fields check.
pub(crate) fn image_ok(r: &[u8; RECORD6_SIZE]) -> bool {
    Binding6::decode(r).is_ok()
}

/// What a binding is for.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum IaKind {
    /// An address of an IA_NA (prefix length 128).
    Na = 1,
    /// A delegated prefix of an IA_PD.
    Pd = 2,
}

/// Binding state (the RFC 8156 §5.2 states a failover partner exchanges).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum BindingState {
    /// Not bound (a reclaimed record kept for its history).
    Free = 0,
    /// Bound to the client until `expiry`.
    Active = 1,
    /// The valid lifetime passed.
    Expired = 2,
    /// The client released it.
    Released = 3,
    /// The client declined it (duplicate address); held out of the pool.
    Declined = 4,
}

impl BindingState {
    fn from_u8(v: u8) -> Option<Self> {
        Some(match v {
            0 => Self::Free,
            1 => Self::Active,
            2 => Self::Expired,
            3 => Self::Released,
            4 => Self::Declined,
            _ => return None,
        })
    }
    /// Lower-case name as the tools print it.
    pub fn name(self) -> &'static str {
        match self {
            Self::Free => "free",
            Self::Active => "active",
            Self::Expired => "expired",
            Self::Released => "released",
            Self::Declined => "declined",
        }
    }
}

/// Which failover server owns the binding (RFC 8156 allocation).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Owner6 {
    /// This server (no failover, or our own pool).
    Local = 0,
    /// The primary server of a pair.
    Primary = 1,
    /// The secondary server of a pair.
    Secondary = 2,
}

/// Flag: the client sent Reconfigure Accept (RFC 8415 §21.20).
pub const FLAG_RECONFIGURE_ACCEPT: u8 = 1;
/// Flag: the client was given its reconfigure key (RFC 8415 §20.4) in a Reply.
pub const FLAG_RECONF_KEY6: u8 = 2;
/// Flag: the binding is being reconfigured (a Reconfigure was sent; the spec's event
/// table applies). Survives restarts only when the daemon keeps it (`deferred-nak`).
pub const FLAG_RECONFIGURING6: u8 = 4;

/// How the client's last message reached the server (the way a Reconfigure goes back,
/// RFC 8415 §18.3.11): the sender's address and, when relayed, the link-address and
/// peer-address of the relay nearest the client (its interface-id is in [`RelayData6`]).
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct Via6 {
    /// Relay levels the message came through (0: direct; 0 with `src` zero: unknown).
    pub hops: u8,
    /// Source of the packet: the client itself (direct) or the relay that sent it to us.
    pub src: [u8; 16],
    /// Link-address of the relay nearest the client.
    pub link: [u8; 16],
    /// Peer-address of the relay nearest the client (the client's address on its link).
    pub peer: [u8; 16],
}

/// A short byte string stored in a fixed field (`len` bytes of `buf` used).
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub struct Bytes<const N: usize> {
    len: u8,
    buf: [u8; N],
}

impl<const N: usize> Default for Bytes<N> {
    fn default() -> Self {
        Bytes {
            len: 0,
            buf: [0; N],
        }
    }
}

impl<const N: usize> Bytes<N> {
    /// Copies at most `N` bytes of `b` (a longer value is cut).
    pub fn new(b: &[u8]) -> Self {
        let mut s = Self::default();
        let n = b.len().min(N);
        s.buf[..n].copy_from_slice(&b[..n]);
        s.len = n as u8;
        s
    }
    /// The stored bytes.
    pub fn as_slice(&self) -> &[u8] {
        &self.buf[..usize::from(self.len).min(N)]
    }
    /// True when nothing is stored.
    pub fn is_empty(&self) -> bool {
        self.len == 0
    }
}

/// Relay data stored with a binding (from the relay nearest the client).
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct RelayData6 {
    /// Interface-ID option (RFC 8415 §21.18).
    pub interface_id: Bytes<RELAY_DATUM_MAX>,
    /// Remote-ID option (RFC 4649): enterprise number and id, as sent.
    pub remote_id: Bytes<RELAY_DATUM_MAX>,
    /// Subscriber-ID option (RFC 4580).
    pub subscriber_id: Bytes<RELAY_DATUM_MAX>,
    /// Client link-layer address type (RFC 6939), 0 when none.
    pub lladdr_type: u16,
    /// Client link-layer address (RFC 6939).
    pub lladdr: Bytes<LLADDR_MAX>,
    /// link-address of that relay's Relay-Forward (RFC 8415 §9.1); zero when unknown.
    pub link_address: [u8; 16],
    /// peer-address of that relay's Relay-Forward (the client's address as the relay
    /// saw it); zero when unknown.
    pub peer_address: [u8; 16],
}

/// One decoded binding.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Binding6 {
    /// IA_NA address or IA_PD prefix.
    pub kind: IaKind,
    /// State.
    pub state: BindingState,
    /// The address, or the prefix (host bits zero).
    pub addr: [u8; 16],
    /// 128 for an address; the delegated length for a prefix.
    pub prefix_len: u8,
    /// Owner for failover.
    pub owner: Owner6,
    /// `FLAG_*` bits.
    pub flags: u8,
    /// Index of the link (configured `[[subnet6]]`) the binding belongs to.
    pub link: u16,
    /// The client's IAID.
    pub iaid: u32,
    /// The client's DUID.
    pub duid: Bytes<DUID_MAX>,
    /// Client last transaction time (unix seconds).
    pub cltt: u32,
    /// Preferred lifetime given (seconds).
    pub preferred: u32,
    /// Valid lifetime given (seconds).
    pub valid: u32,
    /// End of the valid lifetime (unix seconds).
    pub expiry: u32,
    /// When the current state began (unix seconds).
    pub state_start: u32,
    /// Expiry the failover partner acknowledged (RFC 8156 "partner lifetime"), 0 if none.
    pub acked_expiry: u32,
    /// Preferred lifetime the partner acknowledged.
    pub acked_preferred: u32,
    /// Valid lifetime the partner acknowledged.
    pub acked_valid: u32,
    /// Relay data from the relay nearest the client.
    pub relay: RelayData6,
    /// How the client's last message reached us.
    pub via: Via6,
}

impl Binding6 {
    /// A fresh binding for `duid`/`iaid` (state Free, times zero).
    pub fn new(kind: IaKind, duid: &[u8], iaid: u32, addr: [u8; 16], prefix_len: u8) -> Self {
        Binding6 {
            kind,
            state: BindingState::Free,
            addr,
            prefix_len,
            owner: Owner6::Local,
            flags: 0,
            link: 0,
            iaid,
            duid: Bytes::new(duid),
            cltt: 0,
            preferred: 0,
            valid: 0,
            expiry: 0,
            state_start: 0,
            acked_expiry: 0,
            acked_preferred: 0,
            acked_valid: 0,
            relay: RelayData6::default(),
            via: Via6::default(),
        }
    }

    /// Encodes into a record buffer (CRC included).
    pub fn encode(&self, r: &mut [u8; RECORD6_SIZE]) {
        self.encode_fields(r);
        let crc = crc32fast::hash(&r[4..]);
        r[O_CRC..O_CRC + 4].copy_from_slice(&crc.to_le_bytes());
    }

    /// Encodes every field, without the CRC (the table's writer seals the image with its
    /// write sequence and computes the CRC once: [`seal`]).
    pub(super) fn encode_fields(&self, r: &mut [u8; RECORD6_SIZE]) {
        r.fill(0);
        r[O_USED] = 1;
        r[O_KIND] = self.kind as u8;
        r[O_STATE] = self.state as u8;
        r[O_PLEN] = self.prefix_len;
        r[O_OWNER] = self.owner as u8;
        r[O_FLAGS] = self.flags;
        r[O_LINK..O_LINK + 2].copy_from_slice(&self.link.to_le_bytes());
        r[O_IAID..O_IAID + 4].copy_from_slice(&self.iaid.to_le_bytes());
        r[O_ADDR..O_ADDR + 16].copy_from_slice(&self.addr);
        for (o, v) in [
            (O_CLTT, self.cltt),
            (O_PREF, self.preferred),
            (O_VALID, self.valid),
            (O_EXPIRY, self.expiry),
            (O_STATE_START, self.state_start),
            (O_ACKED_EXPIRY, self.acked_expiry),
            (O_ACKED_PREF, self.acked_preferred),
            (O_ACKED_VALID, self.acked_valid),
        ] {
            r[o..o + 4].copy_from_slice(&v.to_le_bytes());
        }
        put_bytes(r, O_DUID, self.duid.as_slice());
        put_bytes(r, O_IFID, self.relay.interface_id.as_slice());
        put_bytes(r, O_REMOTE, self.relay.remote_id.as_slice());
        put_bytes(r, O_SUBSCRIBER, self.relay.subscriber_id.as_slice());
        r[O_LLTYPE..O_LLTYPE + 2].copy_from_slice(&self.relay.lladdr_type.to_le_bytes());
        put_bytes(r, O_LLADDR, self.relay.lladdr.as_slice());
        r[O_VIA_HOPS] = self.via.hops;
        r[O_VIA_SRC..O_VIA_SRC + 16].copy_from_slice(&self.via.src);
        r[O_VIA_LINK..O_VIA_LINK + 16].copy_from_slice(&self.via.link);
        r[O_VIA_PEER..O_VIA_PEER + 16].copy_from_slice(&self.via.peer);
        r[O_RELAY_LINK..O_RELAY_LINK + 16].copy_from_slice(&self.relay.link_address);
        r[O_RELAY_PEER..O_RELAY_PEER + 16].copy_from_slice(&self.relay.peer_address);
    }

    /// Decodes a record: `Ok(None)` for an unused slot, `Err` for a record whose CRC or
    /// fields are wrong (torn write or damage), naming what was wrong.
    pub fn decode(r: &[u8]) -> Result<Option<Self>, &'static str> {
        if r.len() < RECORD6_SIZE {
            return Err("short record");
        }
        if r[..RECORD6_SIZE].iter().all(|&b| b == 0) {
            return Ok(None);
        }
        let crc = u32_at(r, O_CRC);
        if crc != crc32fast::hash(&r[4..RECORD6_SIZE]) {
            return Err("bad CRC");
        }
        Self::decode_fields(r)
    }

    /// Decodes a record of the open table without checking its CRC: `Ok(None)` for an
    /// unused slot (never used, or emptied), `Err` for a bad field. For records the table
    /// itself checked at open ([`Binding6::decode`]: a damaged one was quarantined, zeroed)
    /// or wrote since (`put`, `remove`, whole images under `&mut self`): the packet path's
    /// reads (`BindingTable6::get`), which re-checked a 508-byte CRC per read.
    pub(super) fn decode_fields(r: &[u8]) -> Result<Option<Self>, &'static str> {
        if r.len() < RECORD6_SIZE {
            return Err("short record");
        }
        if r[O_USED] != 1 {
            return Ok(None);
        }
        let kind = match r[O_KIND] {
            1 => IaKind::Na,
            2 => IaKind::Pd,
            _ => return Err("bad kind"),
        };
        let state = BindingState::from_u8(r[O_STATE]).ok_or("bad state")?;
        let owner = match r[O_OWNER] {
            0 => Owner6::Local,
            1 => Owner6::Primary,
            2 => Owner6::Secondary,
            _ => return Err("bad owner"),
        };
        let prefix_len = r[O_PLEN];
        if prefix_len > 128 || (kind == IaKind::Na && prefix_len != 128) {
            return Err("bad prefix length");
        }
        let mut addr = [0u8; 16];
        addr.copy_from_slice(&r[O_ADDR..O_ADDR + 16]);
        Ok(Some(Binding6 {
            kind,
            state,
            addr,
            prefix_len,
            owner,
            flags: r[O_FLAGS],
            link: u16::from_le_bytes([r[O_LINK], r[O_LINK + 1]]),
            iaid: u32_at(r, O_IAID),
            duid: get_bytes(r, O_DUID)?,
            cltt: u32_at(r, O_CLTT),
            preferred: u32_at(r, O_PREF),
            valid: u32_at(r, O_VALID),
            expiry: u32_at(r, O_EXPIRY),
            state_start: u32_at(r, O_STATE_START),
            acked_expiry: u32_at(r, O_ACKED_EXPIRY),
            acked_preferred: u32_at(r, O_ACKED_PREF),
            acked_valid: u32_at(r, O_ACKED_VALID),
            relay: RelayData6 {
                interface_id: get_bytes(r, O_IFID)?,
                remote_id: get_bytes(r, O_REMOTE)?,
                subscriber_id: get_bytes(r, O_SUBSCRIBER)?,
                lladdr_type: u16::from_le_bytes([r[O_LLTYPE], r[O_LLTYPE + 1]]),
                lladdr: get_bytes(r, O_LLADDR)?,
                link_address: addr16(r, O_RELAY_LINK),
                peer_address: addr16(r, O_RELAY_PEER),
            },
            via: Via6 {
                hops: r[O_VIA_HOPS],
                src: a16(r, O_VIA_SRC),
                link: a16(r, O_VIA_LINK),
                peer: a16(r, O_VIA_PEER),
            },
        }))
    }

    /// Whether the record bytes `r` hold a used binding of `duid` (and, when given, of
    /// `kind`/`iaid`), read from the raw fields without decoding or checking the CRC: the
    /// index's cheap candidate test (the caller's `get` decodes and checks the one it keeps).
    pub(super) fn raw_key_is(r: &[u8], duid: &[u8], ia: Option<(IaKind, u32)>) -> bool {
        if r.len() < RECORD6_SIZE || r[O_USED] != 1 {
            return false;
        }
        if let Some((kind, iaid)) = ia {
            if r[O_KIND] != kind as u8 || u32_at(r, O_IAID) != iaid {
                return false;
            }
        }
        let n = usize::from(r[O_DUID]);
        n == duid.len() && n <= DUID_MAX && &r[O_DUID + 1..O_DUID + 1 + n] == duid
    }

    /// Whether the record bytes `r` hold a used binding of `addr`/`prefix_len` of `kind`,
    /// read from the raw fields (the address index's candidate test; records in the table
    /// were checked when it was opened and are written only by it).
    pub(super) fn raw_addr_is(r: &[u8], kind: IaKind, addr: &[u8; 16], prefix_len: u8) -> bool {
        r.len() >= RECORD6_SIZE
            && r[O_USED] == 1
            && r[O_KIND] == kind as u8
            && r[O_PLEN] == prefix_len
            && r[O_ADDR..O_ADDR + 16] == addr[..]
    }

    /// The index keys of a used record's raw bytes: (DUID, (kind, address, prefix length)).
    pub(super) fn raw_keys(r: &[u8]) -> Option<(&[u8], RawAddrKey<'_>)> {
        if r.len() < RECORD6_SIZE || r[O_USED] != 1 {
            return None;
        }
        let n = usize::from(r[O_DUID]);
        if n > DUID_MAX {
            return None;
        }
        Some((
            &r[O_DUID + 1..O_DUID + 1 + n],
            (r[O_KIND], &r[O_ADDR..O_ADDR + 16], r[O_PLEN]),
        ))
    }

    /// The address or prefix as an `Ipv6Addr`.
    pub fn ip(&self) -> std::net::Ipv6Addr {
        std::net::Ipv6Addr::from(self.addr)
    }
}

/// A record's address key as stored: kind byte, address bytes, prefix length.
pub(super) type RawAddrKey<'a> = (u8, &'a [u8], u8);

fn addr16(r: &[u8], o: usize) -> [u8; 16] {
    let mut a = [0u8; 16];
    a.copy_from_slice(&r[o..o + 16]);
    a
}

fn u32_at(r: &[u8], o: usize) -> u32 {
    u32::from_le_bytes([r[o], r[o + 1], r[o + 2], r[o + 3]])
}

fn put_bytes(r: &mut [u8], o: usize, b: &[u8]) {
    r[o] = b.len() as u8;
    r[o + 1..o + 1 + b.len()].copy_from_slice(b);
}

fn get_bytes<const N: usize>(r: &[u8], o: usize) -> Result<Bytes<N>, &'static str> {
    let n = usize::from(r[o]);
    if n > N {
        return Err("field length out of range");
    }
    Ok(Bytes::new(&r[o + 1..o + 1 + n]))
}

fn a16(r: &[u8], o: usize) -> [u8; 16] {
    let mut a = [0u8; 16];
    a.copy_from_slice(&r[o..o + 16]);
    a
}
