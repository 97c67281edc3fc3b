//! The side area: variable-length lease data (option 82 of any length, host name, vendor
//! class) that does not fit in a 128-byte record.
//!
//! # File (`<lease file>.ext`)
//! - bytes 0..4096: header: magic `XDHCPEXT`, version, chunks per slot, chunk size, CRC-32 of
//!   the bytes before it.
//! - then one extent per record slot (the table's `capacity`, spare slots included, so growth
//!   needs nothing here): [`EXT_CHUNKS`] chunks of 128 bytes, each `seq: u32 | crc: u32 | 120
//!   payload bytes` (the CRC-32C covers bytes 8..128).
//!
//! The file is sparse: it is sized with `ftruncate` and each 64 KiB block is `fallocate`d
//! before its first write by this process (so a full disk is an error of that write, never a
//! fault on the mapping); a table whose leases all fit inline has no side blocks on disk.
//!
//! An address's extent belongs to its record: it is written only under that record's lock,
//! before the record (whose variable-data reference carries the payload's length and CRC), so
//! readers use the record's sequence lock for both, no other lock is taken, nothing is
//! allocated, and the area can never be full: each lease is bounded ([`VAR_DATA_MAX`]) and has
//! its place. It is written only when the record's handle changes (a renewal with the same
//! data writes nothing). A freed lease's data is dropped with it (the record goes inline) and
//! the next binding of the address reuses the extent.
//!
//! # Crash guarantees (the records' own)
//! - ack mode: the chunks are staged for the write-ahead log under the record lock before the
//!   record image, so the group commit that makes a record durable makes its data durable in
//!   the same `fdatasync`; replay applies them by their own sequence numbers and CRCs
//!   (log ids [`EXT_ID`]` | slot * EXT_CHUNKS + i`).
//! - interval mode: `flush` msyncs this file with the table.
//! - torn writes: a record whose reference does not match its extent (payload CRC, or a
//!   chunk's own CRC) keeps its lease and loses only the variable data; open reports it
//!   (`OpenReport::side_dropped`).

use std::fs::{self, File};
use std::io;
use std::os::unix::fs::{FileExt, OpenOptionsExt};
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicU32, Ordering};

use memmap2::{MmapOptions, MmapRaw};

use std::os::fd::AsRawFd;
use std::sync::atomic::AtomicU64;

use super::file::{sync_dir, LEASE_FILE_MODE};
use super::record::{load_words, store_body};
use super::wal::Staged;
use crate::crc32c;
use crate::error::StoreError;
use crate::lease::{
    SideRef, VarData, VarParts, EXT_CHUNKS, EXT_CHUNK_PAYLOAD, EXT_CHUNK_SIZE, RECORD_WORDS,
    VAR_DATA_MAX,
};

/// Bytes before the first extent.
pub(crate) const EXT_HDR: usize = 4096;
const MAGIC: &[u8; 8] = b"XDHCPEXT";
const VERSION: u32 = 2;
/// Bytes `fallocate`d at once before the first write into them.
const BLOCK: usize = 64 * 1024;
/// Bytes of one slot's extent.
pub(crate) const EXTENT: usize = EXT_CHUNKS * EXT_CHUNK_SIZE;
/// Write-ahead log ids of side chunks have this bit set (record slots never do).
pub(crate) const EXT_ID: u32 = 0x8000_0000;

/// The side-area file of a lease file: the same name with `.ext` appended.
pub fn ext_path(lease_file: &Path) -> PathBuf {
    let mut s = lease_file.as_os_str().to_owned();
    s.push(".ext");
    PathBuf::from(s)
}

fn header_bytes() -> [u8; 28] {
    let mut h = [0u8; 28];
    h[0..8].copy_from_slice(MAGIC);
    h[8..12].copy_from_slice(&VERSION.to_le_bytes());
    h[12..16].copy_from_slice(&(EXT_CHUNKS as u32).to_le_bytes());
    h[16..20].copy_from_slice(&(EXT_CHUNK_SIZE as u32).to_le_bytes());
    let crc = crc32c::hash(&h[..24]);
    h[24..28].copy_from_slice(&crc.to_le_bytes());
    h
}

/// File length for `capacity` slots.
pub(crate) fn ext_len(capacity: u32) -> u64 {
    EXT_HDR as u64 + u64::from(capacity) * EXTENT as u64
}

/// Checks a side file's header; `Ok(false)` for an all-zero (never written) one.
pub(crate) fn check_header(h: &[u8], path: &Path) -> Result<bool, StoreError> {
    if h.len() < 28 || h[..28].iter().all(|&b| b == 0) {
        return Ok(false);
    }
    if h[..28] != header_bytes() {
        return Err(StoreError::format(
            path,
            format!(
                "not a side area of this build (magic, version {VERSION}, {EXT_CHUNKS} chunks \
                 of {EXT_CHUNK_SIZE} bytes, checksum: one of them differs)"
            ),
        ));
    }
    Ok(true)
}

/// The mapped side area of an open table.
pub(super) struct SideArea {
    path: PathBuf,
    file: File,
    map: MmapRaw,
    capacity: u32,
    /// One bit per [`BLOCK`] of the file: `fallocate`d by this process.
    blocks: Box<[AtomicU64]>,
}

/// CRC-32C of a side chunk's body (bytes 8..128).
#[inline]
pub(crate) fn chunk_crc(c: &[u8; EXT_CHUNK_SIZE]) -> u32 {
    crc32c::hash(&c[8..])
}

/// Whether a chunk image's own CRC holds.
pub(crate) fn chunk_ok(c: &[u8; EXT_CHUNK_SIZE]) -> bool {
    u32::from_le_bytes([c[4], c[5], c[6], c[7]]) == chunk_crc(c)
}

impl SideArea {
    /// Opens (creating or lengthening as needed) the side area of `lease_file` for `capacity`
    /// slots. A lease file from before the side area existed gets an empty one.
    pub(super) fn open(lease_file: &Path, capacity: u32) -> Result<SideArea, StoreError> {
        let path = ext_path(lease_file);
        if u64::from(capacity) * EXT_CHUNKS as u64 >= u64::from(EXT_ID) {
            return Err(StoreError::format(
                &path,
                format!("{capacity} record slots are too many for the side area"),
            ));
        }
        let file = fs::OpenOptions::new()
            .read(true)
            .write(true)
            .create(true)
            .truncate(false)
            .mode(LEASE_FILE_MODE)
            .open(&path)
            .map_err(|e| StoreError::io(&path, "open side area", e))?;
        let have = file
            .metadata()
            .map_err(|e| StoreError::io(&path, "stat side area", e))?
            .len();
        let mut h = [0u8; 28];
        if have >= 28 {
            file.read_exact_at(&mut h, 0)
                .map_err(|e| StoreError::io(&path, "read side area header", e))?;
        }
        let valid = check_header(&h, &path)?;
        let len = ext_len(capacity);
        if have < len {
            // Sparse: blocks are allocated before their first write (`ensure_blocks`).
            file.set_len(len)
                .map_err(|e| StoreError::io(&path, "size side area", e))?;
        }
        if !valid {
            file.write_all_at(&header_bytes(), 0)
                .map_err(|e| StoreError::io(&path, "write side area header", e))?;
            file.sync_all()
                .map_err(|e| StoreError::io(&path, "fsync side area", e))?;
            if have == 0 {
                sync_dir(&path)?;
            }
        }
        let map = MmapOptions::new()
            .len(usize::try_from(len).map_err(|_| {
                StoreError::format(&path, format!("{len} bytes is too large to map"))
            })?)
            .map_raw(&file)
            .map_err(|e| StoreError::io(&path, "mmap side area", e))?;
        let nblocks = usize::try_from(len).unwrap_or(usize::MAX).div_ceil(BLOCK);
        let blocks = (0..nblocks.div_ceil(64))
            .map(|_| AtomicU64::new(0))
            .collect();
        Ok(SideArea {
            path,
            file,
            map,
            capacity,
            blocks,
        })
    }

    pub(super) fn path(&self) -> &Path {
        &self.path
    }

    /// Chunk `i` of `slot`'s extent.
    #[inline]
    pub(super) fn words(&self, slot: u32, i: usize) -> &[AtomicU32; RECORD_WORDS] {
        assert!(
            slot < self.capacity && i < EXT_CHUNKS,
            "side chunk out of range"
        );
        // SAFETY: in bounds (checked above; the map covers EXT_HDR + capacity * EXTENT bytes),
        // 4-byte aligned (page-aligned map, EXT_HDR and chunks multiples of 128), valid for
        // &self's lifetime (never remapped), and only ever accessed through atomics, like the
        // records (see the table's module documentation).
        unsafe {
            &*(self
                .map
                .as_mut_ptr()
                .add(EXT_HDR + slot as usize * EXTENT + i * EXT_CHUNK_SIZE)
                as *const [AtomicU32; RECORD_WORDS])
        }
    }

    /// Copies the payload of `r.chunks` chunks into `out` (relaxed loads: the caller holds the
    /// record lock or validates with the record's sequence afterwards).
    #[inline]
    pub(super) fn load_payload(
        &self,
        slot: u32,
        r: SideRef,
        out: &mut [u8; EXT_CHUNKS * EXT_CHUNK_PAYLOAD],
    ) {
        for i in 0..r.chunks {
            let w = self.words(slot, i);
            for (j, a) in w.iter().enumerate().skip(2) {
                let o = i * EXT_CHUNK_PAYLOAD + (j - 2) * 4;
                out[o..o + 4].copy_from_slice(&a.load(Ordering::Relaxed).to_ne_bytes());
            }
        }
    }

    /// The variable data `r` refers to, if the extent matches it (chunk and payload CRCs).
    pub(super) fn var_of(&self, slot: u32, r: SideRef) -> Result<VarData, String> {
        for i in 0..r.chunks {
            let b = load_words(self.words(slot, i));
            if !chunk_ok(&b) {
                return Err(format!("side chunk {i} checksum mismatch (a torn write)"));
            }
        }
        let mut p = [0u8; EXT_CHUNKS * EXT_CHUNK_PAYLOAD];
        self.load_payload(slot, r, &mut p);
        verify(&p, r).ok_or_else(|| {
            "side data does not match the record's reference (a torn write)".to_string()
        })
    }

    /// `fallocate`s the blocks under `slot`'s first `chunks` chunks that this process has not
    /// allocated yet (once per 64 KiB; then one atomic load).
    #[inline]
    fn ensure_blocks(&self, slot: u32, chunks: usize) -> io::Result<()> {
        let start = EXT_HDR + slot as usize * EXTENT;
        let end = start + chunks * EXT_CHUNK_SIZE;
        let (first, last) = (start / BLOCK, (end - 1) / BLOCK);
        // The usual case: one block, allocated already.
        if first == last
            && self
                .blocks
                .get(first / 64)
                .is_some_and(|w| w.load(Ordering::Relaxed) & (1 << (first % 64)) != 0)
        {
            return Ok(());
        }
        for b in first..=last {
            let (w, bit) = (b / 64, 1u64 << (b % 64));
            let Some(word) = self.blocks.get(w) else {
                return Err(io::Error::other("side block out of range"));
            };
            if word.load(Ordering::Relaxed) & bit != 0 {
                continue;
            }
            // SAFETY: plain syscall on a valid descriptor; mode 0 never shrinks the file or
            // touches data already there.
            let rc = unsafe {
                libc::fallocate(
                    self.file.as_raw_fd(),
                    0,
                    (b * BLOCK) as libc::off_t,
                    BLOCK as libc::off_t,
                )
            };
            if rc != 0 {
                return Err(io::Error::last_os_error());
            }
            word.fetch_or(bit, Ordering::Relaxed);
        }
        Ok(())
    }

    /// Writes `p` into `slot`'s extent (under its record lock): each chunk gets its sequence
    /// advanced and its CRC; the images (sequence included) are handed to `stage` for the log.
    /// Fails (nothing written) when its blocks cannot be allocated.
    pub(super) fn write(
        &self,
        slot: u32,
        p: VarParts<'_>,
        mut stage: impl FnMut(u32, &[u8; EXT_CHUNK_SIZE]),
    ) -> io::Result<()> {
        let n = p.chunks();
        self.ensure_blocks(slot, n)?;
        let mut c = [0u8; EXT_CHUNK_SIZE];
        for i in 0..n {
            p.fill_chunk(i, &mut c);
            let w = self.words(slot, i);
            let seq = w[0].load(Ordering::Relaxed).wrapping_add(2) & !1;
            c[0..4].copy_from_slice(&seq.to_le_bytes());
            let crc = chunk_crc(&c);
            c[4..8].copy_from_slice(&crc.to_le_bytes());
            store_body(w, &c);
            w[0].store(seq, Ordering::Relaxed);
            stage(EXT_ID | (slot * EXT_CHUNKS as u32 + i as u32), &c);
        }
        Ok(())
    }

    /// Applies the log's side entries (ids with [`EXT_ID`]) that are newer than (or repair) the
    /// chunk they name. Only at open, before anything reads the area. Returns how many.
    pub(super) fn apply_log(&self, entries: &[Staged]) -> u64 {
        let mut n = 0;
        for e in entries.iter().filter(|e| e.slot & EXT_ID != 0) {
            let id = e.slot & !EXT_ID;
            let (slot, i) = (id / EXT_CHUNKS as u32, (id % EXT_CHUNKS as u32) as usize);
            if slot >= self.capacity {
                continue;
            }
            if self.ensure_blocks(slot, i + 1).is_err() {
                continue;
            }
            let w = self.words(slot, i);
            let mut cur = load_words(w);
            if apply_side_entry(&mut cur, e) {
                store_body(w, &cur);
                w[0].store(
                    u32::from_le_bytes([cur[0], cur[1], cur[2], cur[3]]),
                    Ordering::Release,
                );
                n += 1;
            }
        }
        n
    }

    /// Chunks (log ids) the area holds.
    pub(super) fn log_ids(&self) -> u32 {
        self.capacity * EXT_CHUNKS as u32
    }

    /// msync of the whole area.
    pub(super) fn flush(&self) -> io::Result<()> {
        self.map.flush()
    }

    /// msync of the extents of slots `lo..=hi`.
    pub(super) fn flush_slots(&self, lo: u32, hi: u32) -> io::Result<()> {
        let off = EXT_HDR + lo as usize * EXTENT;
        let len = (hi - lo) as usize * EXTENT + EXTENT;
        self.map.flush_range(off, len)
    }

    /// Dirties every page of the extents of the first `slots` slots again (a no-op
    /// compare-exchange per page), for the storage recovery. Only blocks this process
    /// allocated (every block it wrote is one): a hole stays a hole.
    pub(super) fn redirty(&self, slots: u32) {
        let end = EXT_HDR + slots as usize * EXTENT;
        for off in (EXT_HDR..end).step_by(4096) {
            let b = off / BLOCK;
            let allocated = self
                .blocks
                .get(b / 64)
                .is_some_and(|w| w.load(Ordering::Relaxed) & (1 << (b % 64)) != 0);
            if !allocated {
                continue;
            }
            // SAFETY: `off` starts a chunk inside the mapping (page-aligned, chunk-aligned),
            // memory only ever accessed through atomics.
            let w = unsafe { AtomicU32::from_ptr(self.map.as_mut_ptr().add(off).cast::<u32>()) };
            let mut v = w.load(Ordering::Relaxed);
            while let Err(now) = w.compare_exchange_weak(v, v, Ordering::Relaxed, Ordering::Relaxed)
            {
                v = now;
            }
        }
    }

    /// A copy of `slot`'s extent (for a rebuild).
    pub(super) fn extent(&self, slot: u32) -> [[u8; EXT_CHUNK_SIZE]; EXT_CHUNKS] {
        let mut out = [[0u8; EXT_CHUNK_SIZE]; EXT_CHUNKS];
        for (i, c) in out.iter_mut().enumerate() {
            *c = load_words(self.words(slot, i));
        }
        out
    }
}

/// Applies a log entry to a side chunk `cur` when the entry is newer or `cur` is damaged.
fn apply_side_entry(cur: &mut [u8; EXT_CHUNK_SIZE], e: &Staged) -> bool {
    let cur_ok = cur[4..].iter().any(|&x| x != 0) && chunk_ok(cur);
    if !cur_ok || seq_newer(&e.rec, cur) {
        *cur = e.rec;
        true
    } else {
        false
    }
}

fn seq_newer(a: &[u8; EXT_CHUNK_SIZE], b: &[u8; EXT_CHUNK_SIZE]) -> bool {
    let s = |x: &[u8; EXT_CHUNK_SIZE]| u32::from_le_bytes([x[0], x[1], x[2], x[3]]);
    (s(a).wrapping_sub(s(b)) as i32) > 0
}

/// The data of a payload `p` (at least `r.len` bytes) if its CRC is the reference's.
#[inline]
pub(crate) fn verify(p: &[u8], r: SideRef) -> Option<VarData> {
    let p = p.get(..r.len)?;
    if r.len > VAR_DATA_MAX + 3 || crc32c::hash(p) != r.crc {
        return None;
    }
    VarData::from_payload(p)
}

/// Writes a side file for a rebuilt table: `capacity` slots, each `(new slot, extent)` copied.
/// Renamed into place by the caller.
pub(super) fn write_rebuilt(
    tmp: &Path,
    capacity: u32,
    extents: &[(u32, [[u8; EXT_CHUNK_SIZE]; EXT_CHUNKS])],
) -> Result<(), StoreError> {
    let f = fs::OpenOptions::new()
        .read(true)
        .write(true)
        .create(true)
        .truncate(true)
        .mode(LEASE_FILE_MODE)
        .open(tmp)
        .map_err(|e| StoreError::io(tmp, "create", e))?;
    f.set_len(ext_len(capacity))
        .map_err(|e| StoreError::io(tmp, "set file length", e))?;
    f.write_all_at(&header_bytes(), 0)
        .map_err(|e| StoreError::io(tmp, "write side area header", e))?;
    for (slot, ext) in extents {
        let mut off = EXT_HDR as u64 + u64::from(*slot) * EXTENT as u64;
        for c in ext {
            f.write_all_at(c, off)
                .map_err(|e| StoreError::io(tmp, "write side extent", e))?;
            off += EXT_CHUNK_SIZE as u64;
        }
    }
    f.sync_all().map_err(|e| StoreError::io(tmp, "fsync", e))?;
    Ok(())
}
