//! File header: magic, version, geometry (pools), and the failover area.
//!
//! # Header layout (little-endian; length a multiple of 4096)
//!
//! | off  | size | field |
//! |-----:|-----:|-------|
//! | 0    | 8  | magic `XDHCPLT1` |
//! | 8    | 4  | format version (1) |
//! | 12   | 4  | record size (128) |
//! | 16   | 4  | header length in bytes (records start here) |
//! | 20   | 4  | number of pool table entries (extents) |
//! | 24   | 8  | number of records (in use) |
//! | 32   | 8  | created (unix seconds) |
//! | 40   | 4  | CRC-32 of bytes 0..40, 44..64 and the pool table |
//! | 44   | 8  | capacity: record slots the file holds (0 in older files: the records) |
//! | 52   | 12 | identity: random, set at creation (zero in older files until their first open by a version that sets it; `identity.rs`) |
//! | 64   | 1040 | failover slot A |
//! | 1104 | 1040 | failover slot B |
//! | 2176 | 16 × extents | pool table: first u32, last u32, id u32, zero u32 |
//! | page-aligned | 64 × 128 | undo area: copies of records being rewritten |
//!
//! The header length is a multiple of 4096 of at least what its entries need; the room left
//! in the pool table and the record slots beyond the records in use (capacity) are where a
//! reload adds pools and grows ranges while the file is mapped: a pool's extra range is one
//! more pool table entry with the same id. Records run from the header length to
//! header length + capacity × 128.
//!
//! A failover slot is: generation u64, length u32, CRC-32 (of generation,
//! length and payload) u32, then [`FAILOVER_CAPACITY`] payload bytes. Writes
//! go to the slot not holding the newest valid copy, so a torn write leaves
//! the previous state readable.

use std::fs::File;
use std::io::Read;
use std::net::Ipv4Addr;
use std::path::Path;

use crate::error::StoreError;
use crate::lease::RECORD_SIZE;

pub(crate) const MAGIC: &[u8; 8] = b"XDHCPLT1";
pub(crate) const VERSION: u32 = 1;
pub(crate) const PAGE: usize = 4096;
/// Payload bytes available to `set_failover_area`.
pub const FAILOVER_CAPACITY: usize = 1024;
const FO_SLOT_LEN: usize = 16 + FAILOVER_CAPACITY;
const FO_OFF: [usize; 2] = [64, 64 + FO_SLOT_LEN];
const POOLS_OFF: usize = 2176;
const POOL_ENTRY: usize = 16;
/// Undo slots: a writer copies the old record here before changing it, so a
/// record torn by a crash mid-update can be rolled back at open.
pub(crate) const UNDO_SLOTS: usize = 64;
pub(crate) const UNDO_LEN: usize = UNDO_SLOTS * RECORD_SIZE;

/// Header length for `npools` pools: the pages holding the fixed fields,
/// failover area and pool table, then the undo area. Records start there.
pub(crate) fn header_len_for(npools: usize) -> usize {
    (POOLS_OFF + POOL_ENTRY * npools).div_ceil(PAGE) * PAGE + UNDO_LEN
}

/// One configured address pool: every address from `first` to `last` inclusive gets a record.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub struct PoolSpec {
    pub id: u32,
    pub first: Ipv4Addr,
    pub last: Ipv4Addr,
}

impl PoolSpec {
    /// Number of addresses.
    pub fn len(&self) -> u64 {
        u64::from(u32::from(self.last)) - u64::from(u32::from(self.first)) + 1
    }
    /// Always false for a valid spec (first <= last); present for clippy's sake.
    pub fn is_empty(&self) -> bool {
        u32::from(self.last) < u32::from(self.first)
    }
}

/// The file's address ranges ("extents") in file order with their first record index, and the
/// pools they make up. A pool is one extent when the file is created or rebuilt; a range grown by
/// a reload adds an extent of the same pool id (in the spare records after the others), so a
/// pool's extents always join into one range.
#[derive(Clone, Debug, PartialEq, Eq)]
pub(crate) struct Geometry {
    /// One entry per pool id, in the order of its first extent, covering all its extents.
    pub pools: Vec<PoolSpec>,
    /// The extents in file order.
    pub extents: Vec<PoolSpec>,
    /// `bases[e]`: slot of `extents[e].first`; increasing.
    pub bases: Vec<u32>,
    /// `ext_pool[e]`: index in `pools` of extent `e`'s pool.
    pub ext_pool: Vec<u32>,
    pub total: u32,
    /// (first, last, extent index) sorted by first address, for address lookups.
    by_addr: Vec<(u32, u32, u32)>,
}

impl Geometry {
    pub fn new(extents: &[PoolSpec]) -> Result<Self, String> {
        let mut bases = Vec::with_capacity(extents.len());
        let mut total: u64 = 0;
        for p in extents {
            if u32::from(p.first) > u32::from(p.last) {
                return Err(format!(
                    "pool {}: first address {} is after last address {}",
                    p.id, p.first, p.last
                ));
            }
            bases.push(total as u32);
            total += p.len();
            // Slot numbers are u32 and u32::MAX is kept free as a sentinel.
            if total >= u64::from(u32::MAX) {
                return Err(format!(
                    "pools hold {total} or more addresses; at most {} are supported",
                    u32::MAX - 1
                ));
            }
        }
        let mut by_addr: Vec<(u32, u32, u32)> = extents
            .iter()
            .enumerate()
            .map(|(i, p)| (u32::from(p.first), u32::from(p.last), i as u32))
            .collect();
        by_addr.sort_unstable();
        if let Some(w) = by_addr.windows(2).find(|w| w[1].0 <= w[0].1) {
            let (a, b) = (extents[w[0].2 as usize], extents[w[1].2 as usize]);
            return Err(format!(
                "pool {} ({}-{}) overlaps pool {} ({}-{})",
                a.id, a.first, a.last, b.id, b.first, b.last
            ));
        }
        // Merge the extents of each id; they must join into one range.
        let mut pools: Vec<PoolSpec> = Vec::new();
        let mut ext_pool = Vec::with_capacity(extents.len());
        for e in extents {
            match pools.iter().position(|p| p.id == e.id) {
                Some(i) => ext_pool.push(i as u32),
                None => {
                    ext_pool.push(pools.len() as u32);
                    pools.push(*e);
                }
            }
        }
        for (i, pool) in pools.iter_mut().enumerate() {
            let mut mine: Vec<&(u32, u32, u32)> = by_addr
                .iter()
                .filter(|x| ext_pool[x.2 as usize] == i as u32)
                .collect();
            mine.sort_unstable();
            if let Some(w) = mine
                .windows(2)
                .find(|w| w[0].1.checked_add(1) != Some(w[1].0))
            {
                return Err(format!(
                    "pool id {} is used twice for ranges that do not join ({}-{} and {}-{})",
                    pool.id,
                    Ipv4Addr::from(w[0].0),
                    Ipv4Addr::from(w[0].1),
                    Ipv4Addr::from(w[1].0),
                    Ipv4Addr::from(w[1].1)
                ));
            }
            if let (Some(a), Some(b)) = (mine.first(), mine.last()) {
                pool.first = Ipv4Addr::from(a.0);
                pool.last = Ipv4Addr::from(b.1);
            }
        }
        Ok(Geometry {
            pools,
            extents: extents.to_vec(),
            bases,
            ext_pool,
            total: total as u32,
            by_addr,
        })
    }

    /// Record index of an address, if it is in a pool. O(log extents).
    #[inline]
    pub fn slot_of(&self, addr: u32) -> Option<u32> {
        let i = self.by_addr.partition_point(|e| e.0 <= addr);
        let &(first, last, ext) = self.by_addr.get(i.checked_sub(1)?)?;
        (addr <= last).then(|| self.bases[ext as usize] + (addr - first))
    }

    /// Index (in file order) of the extent holding `slot`.
    #[inline]
    pub fn ext_idx_of_slot(&self, slot: u32) -> usize {
        self.bases.partition_point(|&b| b <= slot).saturating_sub(1)
    }

    /// Index (in `pools`) of the pool holding `slot`.
    #[inline]
    pub fn pool_idx_of_slot(&self, slot: u32) -> usize {
        self.ext_pool[self.ext_idx_of_slot(slot)] as usize
    }

    /// Address of `slot`.
    #[inline]
    pub fn addr_of(&self, slot: u32) -> u32 {
        let e = self.ext_idx_of_slot(slot);
        u32::from(self.extents[e].first) + (slot - self.bases[e])
    }

    /// The slot ranges of pool `p` (index in `pools`).
    pub fn slot_ranges(&self, p: usize) -> impl Iterator<Item = std::ops::Range<u32>> + '_ {
        self.extents
            .iter()
            .enumerate()
            .filter(move |(e, _)| self.ext_pool[*e] as usize == p)
            .map(|(e, x)| self.bases[e]..self.bases[e] + x.len() as u32)
    }

    /// Header length of a new file for this geometry: room for [`SPARE_EXTENTS`] more extents.
    pub fn header_len(&self) -> usize {
        header_len_for(self.extents.len() + SPARE_EXTENTS)
    }

    /// Length of a file with this header length holding `capacity` records.
    pub fn file_len_for(header_len: usize, capacity: u32) -> u64 {
        header_len as u64 + u64::from(capacity) * RECORD_SIZE as u64
    }
}

/// Extents a new file's pool table has room for beyond its pools (ranges added by reloads).
pub(crate) const SPARE_EXTENTS: usize = 64;

/// How many extents a header of `header_len` bytes has room for.
pub(crate) fn extent_room(header_len: usize) -> usize {
    header_len.saturating_sub(UNDO_LEN + POOLS_OFF) / POOL_ENTRY
}

fn rd32(b: &[u8], o: usize) -> u32 {
    u32::from_le_bytes([b[o], b[o + 1], b[o + 2], b[o + 3]])
}
fn rd64(b: &[u8], o: usize) -> u64 {
    let mut w = [0u8; 8];
    w.copy_from_slice(&b[o..o + 8]);
    u64::from_le_bytes(w)
}

fn header_crc(h: &[u8], npools: usize) -> u32 {
    let mut c = crc32fast::Hasher::new();
    c.update(&h[0..40]);
    c.update(&h[44..64]);
    c.update(&h[POOLS_OFF..POOLS_OFF + POOL_ENTRY * npools]);
    c.finalize()
}

/// Bytes of the identity field.
pub(crate) const ID_BYTES: usize = 12;
const ID_OFF: usize = 52;

/// Writes the header for `geo` into `h` (at least `header_len` bytes; the bytes it does not
/// write, such as the failover area, are left as they are): `header_len` must have room for
/// `geo`'s extents and `capacity` must be at least `geo.total`. `id`: the file's identity
/// (zeros: none, as older files).
pub(crate) fn write_header(
    h: &mut [u8],
    geo: &Geometry,
    created: u64,
    header_len: usize,
    capacity: u32,
    id: &[u8; ID_BYTES],
) {
    h[0..8].copy_from_slice(MAGIC);
    h[8..12].copy_from_slice(&VERSION.to_le_bytes());
    h[12..16].copy_from_slice(&(RECORD_SIZE as u32).to_le_bytes());
    h[16..20].copy_from_slice(&(header_len as u32).to_le_bytes());
    h[20..24].copy_from_slice(&(geo.extents.len() as u32).to_le_bytes());
    h[24..32].copy_from_slice(&u64::from(geo.total).to_le_bytes());
    h[32..40].copy_from_slice(&created.to_le_bytes());
    h[44..52].copy_from_slice(&u64::from(capacity.max(geo.total)).to_le_bytes());
    h[ID_OFF..ID_OFF + ID_BYTES].copy_from_slice(id);
    for (i, p) in geo.extents.iter().enumerate() {
        let o = POOLS_OFF + i * POOL_ENTRY;
        h[o..o + 4].copy_from_slice(&u32::from(p.first).to_le_bytes());
        h[o + 4..o + 8].copy_from_slice(&u32::from(p.last).to_le_bytes());
        h[o + 8..o + 12].copy_from_slice(&p.id.to_le_bytes());
        h[o + 12..o + 16].fill(0);
    }
    let crc = header_crc(h, geo.extents.len());
    h[40..44].copy_from_slice(&crc.to_le_bytes());
}

/// Sets the identity of the valid header in `h` (whose pool table has `npools` entries) and
/// its checksum: only the fixed fields change ([`FIXED_FIELDS`], one sector).
pub(crate) fn set_id(h: &mut [u8], npools: usize, id: &[u8; ID_BYTES]) {
    h[ID_OFF..ID_OFF + ID_BYTES].copy_from_slice(id);
    let crc = header_crc(h, npools);
    h[40..44].copy_from_slice(&crc.to_le_bytes());
}

/// The identity field as a log carries it.
pub(crate) fn table_id(raw: &[u8; ID_BYTES]) -> Option<crate::identity::TableId> {
    crate::identity::id_of(raw)
}

/// Byte range of pool table entries `from..to`.
pub(crate) fn pool_entries(from: usize, to: usize) -> std::ops::Range<usize> {
    POOLS_OFF + POOL_ENTRY * from..POOLS_OFF + POOL_ENTRY * to
}

/// The header's fixed fields (magic to capacity, with the checksum): one disk sector.
pub(crate) const FIXED_FIELDS: std::ops::Range<usize> = 0..64;

/// What a valid header says (inside the crate: with the derived geometry).
pub(crate) struct ValidHeader {
    pub geo: Geometry,
    pub header_len: usize,
    pub created: u64,
    /// Record slots the file holds (at least `geo.total`).
    pub capacity: u32,
    /// The identity field (zeros in a file of an older version).
    pub id: [u8; ID_BYTES],
}

/// The header of a lease file, read without opening the table: no lock is
/// taken and nothing is written, so a file in use by a running daemon can be
/// looked at (its pools and record count change only by replacing the file).
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct FileHeader {
    /// The pools, in file order (a range grown by a reload is part of its pool here).
    pub pools: Vec<PoolSpec>,
    /// The pool table's entries in file order (a grown range adds one of the same id).
    pub extents: Vec<PoolSpec>,
    /// Number of records (addresses in all pools).
    pub records: u64,
    /// Record slots the file holds (records plus the spare ones reloads can add pools into).
    pub capacity: u64,
    /// Header length in bytes (records start here).
    pub header_len: usize,
    /// When the file was created (unix seconds).
    pub created: u64,
}

impl FileHeader {
    /// Reads and checks the header of the file at `path`: the same checks
    /// (and error messages) as [`LeaseTable::open`](crate::LeaseTable::open)
    /// makes before it looks at any record.
    pub fn read(path: &Path) -> Result<FileHeader, StoreError> {
        let mut f = File::open(path).map_err(|e| StoreError::io(path, "open", e))?;
        let len = f
            .metadata()
            .map_err(|e| StoreError::io(path, "stat", e))?
            .len();
        let mut head = Vec::with_capacity(PAGE);
        read_up_to(&mut f, &mut head, PAGE as u64, path)?;
        // The pool table may go past the first page: read the whole header
        // when the count is plausible and the file holds it (else
        // `parse_header` reports what is wrong).
        if head.len() >= 24 && &head[0..8] == MAGIC {
            let npools = rd32(&head, 20) as usize;
            let hl = rd32(&head, 16) as usize;
            if npools <= MAX_POOLS && hl <= MAX_HEADER_LEN {
                let want = (hl.max(header_len_for(npools)) as u64).min(len);
                read_up_to(&mut f, &mut head, want, path)?;
            }
        }
        let h = parse_header(&head, len, path)?;
        Ok(FileHeader {
            records: u64::from(h.geo.total),
            capacity: u64::from(h.capacity),
            header_len: h.header_len,
            pools: h.geo.pools,
            extents: h.geo.extents,
            created: h.created,
        })
    }
}

/// Appends bytes from `f` to `buf` until it holds `total` bytes or the file ends.
fn read_up_to(f: &mut File, buf: &mut Vec<u8>, total: u64, path: &Path) -> Result<(), StoreError> {
    let more = total.saturating_sub(buf.len() as u64);
    f.take(more)
        .read_to_end(buf)
        .map_err(|e| StoreError::io(path, "read header", e))?;
    Ok(())
}

/// More pools than this is a corrupt header.
const MAX_POOLS: usize = (u32::MAX as usize) / POOL_ENTRY / 2;
/// A longer header is a corrupt one.
const MAX_HEADER_LEN: usize = 1 << 30;

/// Validates the header of a file of `file_len` bytes. `head` is the file's
/// beginning: the whole header, or as much of it as the file holds.
pub(crate) fn parse_header(
    head: &[u8],
    file_len: u64,
    path: &Path,
) -> Result<ValidHeader, StoreError> {
    let len = file_len;
    let bad = |m: String| StoreError::format(path, m);
    if head.len() < 8 || &head[0..8] != MAGIC {
        let shown = &head[..head.len().min(8)];
        return Err(bad(format!(
            "not an xdhcpd lease file (magic {:02x?}, expected \"XDHCPLT1\")",
            shown
        )));
    }
    if len < PAGE as u64 || head.len() < PAGE {
        return Err(bad(format!(
            "truncated: {len} bytes, the header alone needs {PAGE}"
        )));
    }
    let version = rd32(head, 8);
    if version != VERSION {
        return Err(bad(format!(
            "format version {version}, this build reads {VERSION}"
        )));
    }
    let rs = rd32(head, 12);
    if rs as usize != RECORD_SIZE {
        return Err(bad(format!(
            "record size {rs}, this build uses {RECORD_SIZE}"
        )));
    }
    let header_len = rd32(head, 16) as usize;
    let npools = rd32(head, 20) as usize;
    if npools > MAX_POOLS {
        return Err(bad(format!("corrupt header: {npools} pools")));
    }
    let need_hdr = header_len_for(npools);
    if header_len < need_hdr || !header_len.is_multiple_of(PAGE) || header_len > MAX_HEADER_LEN {
        return Err(bad(format!(
            "corrupt header: {npools} pools need a {need_hdr}-byte header (a multiple of {PAGE}), header says {header_len}"
        )));
    }
    let Some(head) = head.get(..header_len).filter(|_| len >= header_len as u64) else {
        return Err(bad(format!(
            "truncated: {len} bytes, the header alone needs {header_len}"
        )));
    };
    let stored = rd32(head, 40);
    let computed = header_crc(head, npools);
    if stored != computed {
        return Err(bad(format!(
            "header checksum mismatch (stored {stored:#010x}, computed {computed:#010x})"
        )));
    }
    let pools: Vec<PoolSpec> = (0..npools)
        .map(|i| {
            let o = POOLS_OFF + i * POOL_ENTRY;
            PoolSpec {
                first: Ipv4Addr::from(rd32(head, o)),
                last: Ipv4Addr::from(rd32(head, o + 4)),
                id: rd32(head, o + 8),
            }
        })
        .collect();
    let geo = Geometry::new(&pools).map_err(|e| bad(format!("corrupt pool table: {e}")))?;
    let nrec = rd64(head, 24);
    if nrec != u64::from(geo.total) {
        return Err(bad(format!(
            "corrupt header: {nrec} records but the pools hold {}",
            geo.total
        )));
    }
    let cap = rd64(head, 44);
    let capacity = if cap == 0 { nrec } else { cap };
    if capacity < nrec || capacity >= u64::from(u32::MAX) {
        return Err(bad(format!(
            "corrupt header: capacity {capacity} records for {nrec} records"
        )));
    }
    let capacity = capacity as u32;
    let need = Geometry::file_len_for(header_len, capacity);
    if len < need {
        return Err(bad(format!(
            "truncated: {len} bytes, geometry needs {need} ({} pools, {} records, {capacity} record slots)",
            npools, geo.total
        )));
    }
    let mut id = [0u8; ID_BYTES];
    id.copy_from_slice(&head[ID_OFF..ID_OFF + ID_BYTES]);
    Ok(ValidHeader {
        geo,
        header_len,
        created: rd64(head, 32),
        capacity,
        id,
    })
}

fn fo_slot_crc(s: &[u8], len: usize) -> u32 {
    let mut c = crc32fast::Hasher::new();
    c.update(&s[0..12]);
    c.update(&s[16..16 + len]);
    c.finalize()
}

/// Reads the newest valid failover copy. `Err` describes damage (both slots
/// invalid while at least one was written).
pub(crate) fn read_failover(h: &[u8]) -> Result<Vec<u8>, String> {
    let mut best: Option<(u64, Vec<u8>)> = None;
    let mut damaged = 0;
    for off in FO_OFF {
        let s = &h[off..off + FO_SLOT_LEN];
        let gen = rd64(s, 0);
        let len = rd32(s, 8) as usize;
        if gen == 0 && len == 0 && rd32(s, 12) == 0 {
            continue; // never written
        }
        if len > FAILOVER_CAPACITY || fo_slot_crc(s, len) != rd32(s, 12) {
            damaged += 1;
            continue;
        }
        if best.as_ref().is_none_or(|b| gen > b.0) {
            best = Some((gen, s[16..16 + len].to_vec()));
        }
    }
    match best {
        Some((_, v)) => Ok(v),
        None if damaged > 0 => Err(format!(
            "failover area: {damaged} copy(ies) fail the checksum and none is valid"
        )),
        None => Ok(Vec::new()),
    }
}

/// Writes `data` into the older slot; returns the byte range written.
pub(crate) fn write_failover(h: &mut [u8], data: &[u8]) -> (usize, usize) {
    let mut gens = [0u64; 2];
    let mut valid = [false; 2];
    for (i, off) in FO_OFF.iter().enumerate() {
        let s = &h[*off..off + FO_SLOT_LEN];
        let len = rd32(s, 8) as usize;
        gens[i] = rd64(s, 0);
        valid[i] = len <= FAILOVER_CAPACITY && fo_slot_crc(s, len) == rd32(s, 12);
    }
    let newest = (0..2).filter(|&i| valid[i]).max_by_key(|&i| gens[i]);
    let (target, gen) = match newest {
        Some(i) => (1 - i, gens[i] + 1),
        None => (0, 1),
    };
    let off = FO_OFF[target];
    let s = &mut h[off..off + FO_SLOT_LEN];
    s[0..8].copy_from_slice(&gen.to_le_bytes());
    s[8..12].copy_from_slice(&(data.len() as u32).to_le_bytes());
    s[16..16 + data.len()].copy_from_slice(data);
    s[16 + data.len()..].fill(0);
    let crc = fo_slot_crc(s, data.len());
    s[12..16].copy_from_slice(&crc.to_le_bytes());
    (off, FO_SLOT_LEN)
}

/// Copies both failover slots from one header to another (used when rebuilding).
pub(crate) fn copy_failover(from: &[u8], to: &mut [u8]) {
    to[FO_OFF[0]..FO_OFF[1] + FO_SLOT_LEN]
        .copy_from_slice(&from[FO_OFF[0]..FO_OFF[1] + FO_SLOT_LEN]);
}

#[cfg(test)]
mod tests {
    use super::*;

    fn p(id: u32, a: [u8; 4], b: [u8; 4]) -> PoolSpec {
        PoolSpec {
            id,
            first: Ipv4Addr::from(a),
            last: Ipv4Addr::from(b),
        }
    }

    #[test]
    fn geometry_lookup() {
        let g = Geometry::new(&[
            p(7, [10, 0, 1, 0], [10, 0, 1, 9]),
            p(3, [10, 0, 0, 0], [10, 0, 0, 4]),
        ])
        .unwrap();
        assert_eq!(g.total, 15);
        assert_eq!(g.slot_of(u32::from(Ipv4Addr::new(10, 0, 1, 0))), Some(0));
        assert_eq!(g.slot_of(u32::from(Ipv4Addr::new(10, 0, 0, 4))), Some(14));
        assert_eq!(g.slot_of(u32::from(Ipv4Addr::new(10, 0, 0, 5))), None);
        assert_eq!(g.slot_of(0), None);
        assert_eq!(g.pool_idx_of_slot(9), 0);
        assert_eq!(g.pool_idx_of_slot(10), 1);
        assert_eq!(g.addr_of(11), u32::from(Ipv4Addr::new(10, 0, 0, 1)));
    }

    #[test]
    fn geometry_rejects_overlap_and_duplicates() {
        let e = Geometry::new(&[
            p(1, [10, 0, 0, 0], [10, 0, 0, 9]),
            p(2, [10, 0, 0, 9], [10, 0, 0, 20]),
        ])
        .unwrap_err();
        assert!(e.contains("overlaps"), "{e}");
        let e = Geometry::new(&[
            p(1, [10, 0, 0, 0], [10, 0, 0, 9]),
            p(1, [10, 0, 1, 0], [10, 0, 1, 9]),
        ])
        .unwrap_err();
        assert!(e.contains("used twice"), "{e}");
        let e = Geometry::new(&[p(1, [10, 0, 0, 9], [10, 0, 0, 0])]).unwrap_err();
        assert!(e.contains("after last"), "{e}");
    }

    #[test]
    fn failover_slots_alternate_and_survive_a_torn_copy() {
        let mut h = vec![0u8; PAGE];
        assert_eq!(read_failover(&h), Ok(vec![]));
        write_failover(&mut h, b"one");
        write_failover(&mut h, b"two");
        assert_eq!(read_failover(&h).unwrap(), b"two");
        let (off, _) = write_failover(&mut h, b"three");
        h[off + 17] ^= 0xff; // tear the newest copy
        assert_eq!(read_failover(&h).unwrap(), b"two");
    }
}
