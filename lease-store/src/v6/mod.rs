//! The DHCPv6 binding table: address (IA_NA) and prefix (IA_PD) bindings in
//! a memory-mapped file of fixed-size, CRC-checked records behind a header
//! that also keeps the server DUID (generated once by the daemon, kept for
//! the life of the file).
//!
//! Same durability contract as the DHCPv4 table: an update is in the page
//! cache when [`BindingTable6::put`] returns (it survives the process being
//! killed); [`BindingTable6::flush_dirty`] puts the records changed since the
//! last flush on stable storage ("ack" mode: before the replies leave),
//! [`BindingTable6::flush`] the whole file ("interval" mode). A record torn by
//! a power cut fails its CRC and is quarantined (reported, slot reused) at open.
//!
//! The table is single-writer (`&mut self`); the daemon shares it behind one
//! lock. Lookups by client (DUID, IAID, kind) and by address/prefix go
//! through fixed-capacity indexes built at open: nothing allocates after open.

mod index;
mod log;
mod record;

use std::collections::hash_map::RandomState;
use std::fs::File;
use std::hash::BuildHasher;
use std::io;
use std::os::unix::fs::{FileExt, OpenOptionsExt};
use std::os::unix::io::AsRawFd;
use std::path::{Path, PathBuf};
use std::sync::Arc;

use memmap2::MmapRaw;

pub use record::{
    Binding6, BindingState, Bytes, IaKind, Owner6, RelayData6, Via6, DUID_MAX,
    FLAG_RECONFIGURE_ACCEPT, FLAG_RECONFIGURING6, FLAG_RECONF_KEY6, LLADDR_MAX, RECORD6_SIZE,
    RELAY_DATUM_MAX,
};

use crate::identity;
use crate::table::wal;
use crate::StoreError;
use index::SlotIndex;
pub use log::{default_log_bytes, Log6, Replay6};

/// Magic of a v6 binding file.
pub const MAGIC6: &[u8; 8] = b"XDHCPB6\0";
/// Format version of the v6 binding file.
pub const VERSION6: u32 = 1;
/// Header length (one page).
pub const HEADER6_LEN: usize = 4096;
const H_VERSION: usize = 8;
const H_RECSIZE: usize = 12;
const H_CAPACITY: usize = 16;
const H_DUID: usize = 20; // len byte then DUID_MAX bytes
/// The file's identity (16 random bytes set at creation; zero in files of older versions
/// until their first open by a version that sets it): its write-ahead log carries it
/// (`identity.rs`).
const H_ID: usize = 232;
const H_CRC: usize = 252;

/// The table is full: no free record for a new binding.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct TableFull;

/// What opening found.
#[derive(Debug, Default)]
pub struct Open6Report {
    /// Records in use.
    pub bindings: u32,
    /// Slots whose record was damaged (torn write, bad field) and was dropped: (slot, why).
    pub quarantined: Vec<(u32, &'static str)>,
    /// The file was created by this open.
    pub created: bool,
    /// What the write-ahead log's replay did (None: there was no log).
    pub replay: Option<Replay6>,
}

enum Backing {
    Mem(Vec<u8>),
    /// Shared with the write-ahead log ([`Log6`]), which only `msync`s it.
    Map {
        map: Arc<MmapRaw>,
        _file: File,
    },
}

impl Backing {
    fn bytes(&self) -> &[u8] {
        match self {
            Backing::Mem(v) => v,
            // SAFETY: the mapping lives as long as `map` (never remapped or resized); the
            // table is its only reader and writer, and `&self` / `&mut self` borrows keep
            // Rust's aliasing rules. The log only passes the address to msync(2).
            Backing::Map { map, .. } => unsafe {
                std::slice::from_raw_parts(map.as_ptr(), map.len())
            },
        }
    }
    fn bytes_mut(&mut self) -> &mut [u8] {
        match self {
            Backing::Mem(v) => v,
            // SAFETY: as in `bytes`; `&mut self` makes this the only live slice.
            Backing::Map { map, .. } => unsafe {
                std::slice::from_raw_parts_mut(map.as_mut_ptr(), map.len())
            },
        }
    }
}

/// The v6 binding table (see the module documentation).
pub struct BindingTable6 {
    backing: Backing,
    path: Option<PathBuf>,
    capacity: u32,
    used: u32,
    free: Vec<u32>,
    by_client: SlotIndex,
    by_addr: SlotIndex,
    /// The indexes' random hash seed (per table, per process).
    seed: u64,
    dirty_lo: u32,
    dirty_hi: u32,
    header_dirty: bool,
    /// The write-ahead log (ack mode), when opened with one.
    log: Option<Arc<Log6>>,
    /// The file's identity (zeros in memory).
    id: [u8; 16],
}

impl BindingTable6 {
    /// A table in memory only (tests, tools).
    pub fn in_memory(capacity: u32) -> Self {
        let len = HEADER6_LEN + capacity as usize * RECORD6_SIZE;
        let mut t = Self::with_backing(Backing::Mem(vec![0; len]), None, capacity);
        write_header(t.backing.bytes_mut(), capacity, &[], &[0; 16]);
        t.free.extend((0..capacity).rev());
        t
    }

    fn with_backing(backing: Backing, path: Option<PathBuf>, capacity: u32) -> Self {
        BindingTable6 {
            backing,
            path,
            capacity,
            used: 0,
            free: Vec::with_capacity(capacity as usize),
            by_client: SlotIndex::new(capacity as usize),
            by_addr: SlotIndex::new(capacity as usize),
            seed: RandomState::new().hash_one(0x7864_6863_7036u64),
            dirty_lo: u32::MAX,
            dirty_hi: 0,
            header_dirty: false,
            log: None,
            id: [0; 16],
        }
    }

    /// Opens (or creates, when `create`) the binding file at `path` with room for
    /// `capacity` bindings. An existing file keeps its capacity when it is larger; a
    /// smaller file is grown. Takes an exclusive lock on the file. A write-ahead log left
    /// by an ack-mode run (`<path>.wal`) is replayed and then removed (the table is
    /// flushed first): see [`BindingTable6::open_with`].
    pub fn open(
        path: &Path,
        capacity: u32,
        create: bool,
    ) -> Result<(Self, Open6Report), StoreError> {
        Self::open_with(path, capacity, create, None)
    }

    /// [`BindingTable6::open`], and with `log_bytes` a write-ahead log of that ring size at
    /// `<path>.wal` (ack mode, `log.rs`): whatever log the file has is replayed first (torn
    /// tail discarded), the table flushed, and the log started afresh.
    pub fn open_with(
        path: &Path,
        capacity: u32,
        create: bool,
        log_bytes: Option<u64>,
    ) -> Result<(Self, Open6Report), StoreError> {
        let err_io = |op: &'static str| {
            move |e: io::Error| StoreError::Io {
                path: path.to_path_buf(),
                op,
                source: e,
            }
        };
        let fmt = |msg: String| StoreError::Format {
            path: path.to_path_buf(),
            msg,
        };
        let file = std::fs::OpenOptions::new()
            .read(true)
            .write(true)
            .create(create)
            .truncate(false)
            .mode(0o600)
            .open(path)
            .map_err(err_io("open"))?;
        // SAFETY: plain syscall on a valid descriptor.
        if unsafe { libc::flock(file.as_raw_fd(), libc::LOCK_EX | libc::LOCK_NB) } != 0 {
            return Err(StoreError::Locked {
                path: path.to_path_buf(),
            });
        }
        let flen = file.metadata().map_err(err_io("stat"))?.len();
        let mut report = Open6Report::default();
        let mut duid = Vec::new();
        // The file's identity (None: a file of an older version).
        let file_id;
        let cap = if flen == 0 {
            report.created = true;
            file_id = Some(identity::new_id(16));
            capacity
        } else {
            let mut h = [0u8; HEADER6_LEN];
            if flen < HEADER6_LEN as u64 {
                return Err(fmt(format!(
                    "v6 binding file is {flen} bytes, shorter than its header"
                )));
            }
            file.read_exact_at(&mut h, 0)
                .map_err(err_io("read header"))?;
            if &h[..8] != MAGIC6 {
                return Err(fmt("not a v6 binding file (bad magic)".into()));
            }
            let crc = u32::from_le_bytes([h[H_CRC], h[H_CRC + 1], h[H_CRC + 2], h[H_CRC + 3]]);
            if crc != crc32fast::hash(&h[..H_CRC]) {
                return Err(fmt("v6 binding file header: bad checksum".into()));
            }
            let rd = |o: usize| u32::from_le_bytes([h[o], h[o + 1], h[o + 2], h[o + 3]]);
            if rd(H_VERSION) != VERSION6 {
                return Err(fmt(format!(
                    "v6 binding file version {} (this build reads {VERSION6})",
                    rd(H_VERSION)
                )));
            }
            if rd(H_RECSIZE) as usize != RECORD6_SIZE {
                return Err(fmt(format!(
                    "v6 binding file record size {} (expected {RECORD6_SIZE})",
                    rd(H_RECSIZE)
                )));
            }
            let n = usize::from(h[H_DUID]).min(DUID_MAX);
            duid.extend_from_slice(&h[H_DUID + 1..H_DUID + 1 + n]);
            file_id = identity::id_of(&h[H_ID..H_ID + 16]);
            let file_cap = rd(H_CAPACITY);
            if flen < (HEADER6_LEN + file_cap as usize * RECORD6_SIZE) as u64 {
                return Err(fmt(format!(
                    "v6 binding file truncated: {flen} bytes for {file_cap} records"
                )));
            }
            file_cap.max(capacity)
        };
        let len = (HEADER6_LEN + cap as usize * RECORD6_SIZE) as u64;
        if flen < len {
            file.set_len(len).map_err(err_io("set_len"))?;
        }
        // Every block on disk (and written once) before the mapping is used, as the lease
        // table's: a worker's first store into a page then takes no block allocation under
        // the table's lock (and on a full disk no SIGBUS), and the start-up scan below reads
        // a prefaulted mapping instead of taking a fault per page.
        crate::table::preallocate(&file, path, len.max(flen))?;
        // SAFETY: the file is ours (exclusive flock held for the table's life, mode 0600);
        // nothing else resizes or maps it while the map lives.
        let map = memmap2::MmapOptions::new()
            .populate()
            .map_raw(&file)
            .map_err(err_io("mmap"))?;
        let mut t = Self::with_backing(
            Backing::Map {
                map: Arc::new(map),
                _file: file,
            },
            Some(path.to_path_buf()),
            cap,
        );
        t.id = file_id.unwrap_or([0; 16]);
        write_header(t.backing.bytes_mut(), cap, &duid, &t.id);
        let log_path = wal::wal_path(path);
        let (replay, entries) =
            wal::read_log_of::<RECORD6_SIZE>(&log_path, cap, 0, |_, r| record::image_ok(r))?;
        // A log of another binding file is never replayed (`identity.rs`).
        // (No log file, or none with a valid header: nothing of another table.)
        if replay.hdr.is_some() {
            identity::check_log(path, &log_path, file_id, replay.id, replay.entries)?;
        }
        let id = file_id.unwrap_or_else(|| identity::new_id(16));
        if replay.hdr.is_some() {
            let mut applied = 0;
            for e in &entries {
                let off = rec_off(e.slot);
                let cur: &mut [u8; RECORD6_SIZE] = (&mut t.backing.bytes_mut()
                    [off..off + RECORD6_SIZE])
                    .try_into()
                    .map_err(|_| fmt(format!("log entry for slot {} out of range", e.slot)))?;
                if log::apply(cur, e) {
                    applied += 1;
                }
            }
            if let Some(why) = &replay.discarded {
                tracing::warn!(path = %log_path.display(), "v6 write-ahead log: {why}");
            }
            report.replay = Some(Replay6::of(&replay, applied));
        }
        t.rebuild(&mut report);
        t.flush().map_err(err_io("msync"))?;
        match log_bytes {
            Some(bytes) => {
                let w = wal::Wal::<RECORD6_SIZE>::start(&log_path, bytes, &replay, id)?;
                if let Backing::Map { map, _file } = &t.backing {
                    let file = _file.try_clone().map_err(err_io("dup the table's file"))?;
                    t.log = Some(Arc::new(Log6::new(w, map.clone(), file)));
                }
            }
            None => wal::retire(&log_path, &replay)?,
        }
        if file_id.is_none() {
            // A file of an older version gets its identity now that its log carries it (in
            // this order: a crash between the two leaves a log with nothing to replay).
            t.id = id;
            let duid = t.server_duid().map(<[u8]>::to_vec).unwrap_or_default();
            write_header(t.backing.bytes_mut(), cap, &duid, &id);
            t.header_dirty = true;
            t.flush().map_err(err_io("msync header (identity)"))?;
            tracing::info!(path = %path.display(), "v6 binding file given its identity {}", identity::show(Some(id)));
        }
        Ok((t, report))
    }

    fn rebuild(&mut self, report: &mut Open6Report) {
        for slot in (0..self.capacity).rev() {
            let off = rec_off(slot);
            let r = &self.backing.bytes()[off..off + RECORD6_SIZE];
            match Binding6::decode(r) {
                Ok(Some(b)) => {
                    let ch = self.client_hash(b.kind, b.duid.as_slice(), b.iaid);
                    let ah = self.addr_hash(b.kind, &b.addr, b.prefix_len);
                    if self.by_addr.find(ah, |s| self.addr_is(s, &b)).is_some() {
                        report.quarantined.push((slot, "duplicate address"));
                        self.backing.bytes_mut()[off..off + RECORD6_SIZE].fill(0);
                        self.free.push(slot);
                        continue;
                    }
                    self.by_client.insert(ch, slot);
                    self.by_addr.insert(ah, slot);
                    self.used += 1;
                }
                Ok(None) => self.free.push(slot),
                Err(why) => {
                    report.quarantined.push((slot, why));
                    self.backing.bytes_mut()[off..off + RECORD6_SIZE].fill(0);
                    self.free.push(slot);
                }
            }
        }
        report.bindings = self.used;
    }

    /// The client index's key: the DUID alone, so that one lookup finds every IA of a
    /// client (RFC 5007 query by client-id); [`BindingTable6::find_ia`] filters the few
    /// candidates by kind and IAID.
    fn client_hash(&self, _kind: IaKind, duid: &[u8], _iaid: u32) -> u64 {
        seeded_hash(self.seed, 1 << 16, duid)
    }

    fn addr_hash(&self, kind: IaKind, addr: &[u8; 16], plen: u8) -> u64 {
        self.addr_hash_raw(kind as u8, addr, plen)
    }

    fn addr_hash_raw(&self, kind: u8, addr: &[u8], plen: u8) -> u64 {
        seeded_hash(
            self.seed,
            2 << 16 | u64::from(kind) << 8 | u64::from(plen),
            addr,
        )
    }

    fn rec(&self, slot: u32) -> &[u8] {
        let off = rec_off(slot);
        &self.backing.bytes()[off..off + RECORD6_SIZE]
    }

    fn addr_is(&self, slot: u32, b: &Binding6) -> bool {
        self.get(slot)
            .is_some_and(|r| r.kind == b.kind && r.addr == b.addr && r.prefix_len == b.prefix_len)
    }

    /// Capacity in records.
    pub fn capacity(&self) -> u32 {
        self.capacity
    }

    /// Records in use.
    pub fn len(&self) -> u32 {
        self.used
    }

    /// No record in use.
    pub fn is_empty(&self) -> bool {
        self.used == 0
    }

    /// The file behind the table (None in memory).
    pub fn path(&self) -> Option<&Path> {
        self.path.as_deref()
    }

    /// The binding in `slot`, if used.
    pub fn get(&self, slot: u32) -> Option<Binding6> {
        if slot >= self.capacity {
            return None;
        }
        // Checked at open or written by this table since: no CRC to re-check.
        Binding6::decode_fields(self.rec(slot)).ok().flatten()
    }

    /// Slots of the client's IA (`kind`, `duid`, `iaid`): fills `out`, returns how many
    /// (at most `out.len()`).
    pub fn find_ia(&self, kind: IaKind, duid: &[u8], iaid: u32, out: &mut [u32]) -> usize {
        let h = self.client_hash(kind, duid, iaid);
        let mut n = 0;
        self.by_client.find(h, |s| {
            if n < out.len() && self.key_is(s, kind, duid, iaid) {
                out[n] = s;
                n += 1;
            }
            false
        });
        n
    }

    /// Slots of every binding of the client `duid` (any IA, any state): fills `out`,
    /// returns how many (at most `out.len()`).
    pub fn find_client(&self, duid: &[u8], out: &mut [u32]) -> usize {
        let h = self.client_hash(IaKind::Na, duid, 0);
        let mut n = 0;
        self.by_client.find(h, |s| {
            if n < out.len() && s < self.capacity && Binding6::raw_key_is(self.rec(s), duid, None) {
                out[n] = s;
                n += 1;
            }
            false
        });
        n
    }

    fn key_is(&self, slot: u32, kind: IaKind, duid: &[u8], iaid: u32) -> bool {
        slot < self.capacity && Binding6::raw_key_is(self.rec(slot), duid, Some((kind, iaid)))
    }

    /// The slot holding `addr`/`prefix_len` of `kind`.
    pub fn find_addr(&self, kind: IaKind, addr: &[u8; 16], prefix_len: u8) -> Option<u32> {
        let h = self.addr_hash(kind, addr, prefix_len);
        self.by_addr.find(h, |s| {
            s < self.capacity && Binding6::raw_addr_is(self.rec(s), kind, addr, prefix_len)
        })
    }

    /// Writes `b` into `slot` (an existing record, re-keyed if its client or address
    /// changed) or into a free slot when `slot` is None. Returns the slot.
    pub fn put(&mut self, slot: Option<u32>, b: &Binding6) -> Result<u32, TableFull> {
        let slot = match slot.filter(|&s| s < self.capacity) {
            Some(s) => {
                // Re-keyed only when the client or the address changed (compared on the
                // raw record: a renewal of the same binding hashes nothing).
                let (och, oah) = {
                    let Some((duid, (kind, addr, plen))) = Binding6::raw_keys(self.rec(s)) else {
                        return self.put(None, b);
                    };
                    let same_client = duid == b.duid.as_slice();
                    let same_addr = kind == b.kind as u8 && addr == b.addr && plen == b.prefix_len;
                    (
                        (!same_client).then(|| self.client_hash(b.kind, duid, 0)),
                        (!same_addr).then(|| self.addr_hash_raw(kind, addr, plen)),
                    )
                };
                if let Some(och) = och {
                    let nch = self.client_hash(b.kind, b.duid.as_slice(), b.iaid);
                    self.by_client.remove(och, s);
                    self.by_client.insert(nch, s);
                }
                if let Some(oah) = oah {
                    let nah = self.addr_hash(b.kind, &b.addr, b.prefix_len);
                    self.by_addr.remove(oah, s);
                    self.by_addr.insert(nah, s);
                }
                s
            }
            None => {
                let s = self.free.pop().ok_or(TableFull)?;
                let ch = self.client_hash(b.kind, b.duid.as_slice(), b.iaid);
                let ah = self.addr_hash(b.kind, &b.addr, b.prefix_len);
                self.by_client.insert(ch, s);
                self.by_addr.insert(ah, s);
                self.used += 1;
                s
            }
        };
        let mut buf = [0u8; RECORD6_SIZE];
        b.encode_fields(&mut buf);
        let off = rec_off(slot);
        let seq = record::seq_of(self.rec(slot)).wrapping_add(1);
        record::seal(&mut buf, seq);
        self.backing.bytes_mut()[off..off + RECORD6_SIZE].copy_from_slice(&buf);
        self.note_dirty(slot);
        self.stage(slot, &buf);
        Ok(slot)
    }

    /// Empties `slot` (the record is zeroed, the slot reused).
    pub fn remove(&mut self, slot: u32) {
        let Some(old) = self.get(slot) else { return };
        let ch = self.client_hash(old.kind, old.duid.as_slice(), old.iaid);
        let ah = self.addr_hash(old.kind, &old.addr, old.prefix_len);
        self.by_client.remove(ch, slot);
        self.by_addr.remove(ah, slot);
        let off = rec_off(slot);
        // Emptied, keeping the write sequence (a log replay must see this as newer).
        let t = record::tombstone(record::seq_of(self.rec(slot)).wrapping_add(1));
        self.backing.bytes_mut()[off..off + RECORD6_SIZE].copy_from_slice(&t);
        self.free.push(slot);
        self.used -= 1;
        self.note_dirty(slot);
        self.stage(slot, &t);
    }

    fn note_dirty(&mut self, slot: u32) {
        self.dirty_lo = self.dirty_lo.min(slot);
        self.dirty_hi = self.dirty_hi.max(slot);
    }

    /// Records changed since the last flush.
    pub fn has_dirty(&self) -> bool {
        self.dirty_lo <= self.dirty_hi || self.header_dirty
    }

    /// Puts the records changed since the last flush on stable storage (one `msync`
    /// over their range). In memory: nothing to do.
    pub fn flush_dirty(&mut self) -> io::Result<()> {
        if !self.has_dirty() {
            return Ok(());
        }
        if self.header_dirty {
            return self.flush();
        }
        let (lo, hi) = (self.dirty_lo, self.dirty_hi);
        if let Backing::Map { map, .. } = &self.backing {
            let start = rec_off(lo) & !4095;
            let end = rec_off(hi) + RECORD6_SIZE;
            map.flush_range(start, end - start)?;
        }
        self.dirty_lo = u32::MAX;
        self.dirty_hi = 0;
        Ok(())
    }

    /// The write-ahead log (opened with one, `open_with`): the committer's and the
    /// checkpointer's handle, used without the table's lock.
    pub fn log(&self) -> Option<Arc<Log6>> {
        self.log.clone()
    }

    /// After a storage error of the log ([`Log6::failed`]): rewrites every page of the
    /// mapping (so the kernel writes all of it back again: after a failed writeback it may
    /// count pages clean that never reached the device), flushes it, and restarts the log
    /// past the failure. Without a log: a whole flush.
    pub fn recover_log(&mut self) -> io::Result<()> {
        let Some(log) = self.log.clone() else {
            return self.flush();
        };
        let bytes = self.backing.bytes_mut();
        log.recover(|| {
            let mut p = 0;
            while p < bytes.len() {
                // SAFETY: `p` is inside the slice; a volatile read and write of the same byte
                // (not optimised away) marks the page dirty again. `&mut self` excludes every
                // other writer.
                unsafe {
                    let b = bytes.as_mut_ptr().add(p);
                    std::ptr::write_volatile(b, std::ptr::read_volatile(b));
                }
                p += 4096;
            }
        })?;
        self.dirty_lo = u32::MAX;
        self.dirty_hi = 0;
        self.header_dirty = false;
        Ok(())
    }

    fn stage(&self, slot: u32, rec: &[u8; RECORD6_SIZE]) {
        if let Some(l) = &self.log {
            l.wal.stage(slot, rec);
        }
    }

    /// Puts the whole file on stable storage.
    pub fn flush(&mut self) -> io::Result<()> {
        if let Backing::Map { map, .. } = &self.backing {
            map.flush()?;
        }
        self.dirty_lo = u32::MAX;
        self.dirty_hi = 0;
        self.header_dirty = false;
        Ok(())
    }

    /// The server DUID kept in the header (None until one is set).
    pub fn server_duid(&self) -> Option<&[u8]> {
        let h = self.backing.bytes();
        let n = usize::from(h[H_DUID]).min(DUID_MAX);
        (n > 0).then(|| &h[H_DUID + 1..H_DUID + 1 + n])
    }

    /// Stores the server DUID in the header and flushes it (done once, when the file has
    /// none). An empty or over-long DUID is refused.
    pub fn set_server_duid(&mut self, duid: &[u8]) -> io::Result<()> {
        if duid.is_empty() || duid.len() > DUID_MAX {
            return Err(io::Error::new(
                io::ErrorKind::InvalidInput,
                format!("server DUID of {} bytes (1..={DUID_MAX})", duid.len()),
            ));
        }
        let (cap, id) = (self.capacity, self.id);
        write_header(self.backing.bytes_mut(), cap, duid, &id);
        self.header_dirty = true;
        self.flush()
    }

    /// Marks active bindings whose valid lifetime ended by `now` as expired; returns how
    /// many. Records that have been expired, released or declined for `keep` seconds are
    /// emptied (their slots reused).
    pub fn sweep(&mut self, now: u32, keep: u32) -> (u32, u32) {
        self.sweep_range(now, keep, 0, self.capacity)
    }

    /// [`BindingTable6::sweep`] over slots `start..end` only (bounded work per call, so a
    /// caller holding a lock can release it between parts).
    pub fn sweep_range(&mut self, now: u32, keep: u32, start: u32, end: u32) -> (u32, u32) {
        let (mut expired, mut reclaimed) = (0, 0);
        for slot in start..end.min(self.capacity) {
            // Unused records (most of a large table) are skipped on one byte.
            if Binding6::raw_keys(self.rec(slot)).is_none() {
                continue;
            }
            let Some(mut b) = self.get(slot) else {
                continue;
            };
            match b.state {
                BindingState::Active if b.expiry <= now => {
                    b.state = BindingState::Expired;
                    b.state_start = now;
                    let _ = self.put(Some(slot), &b);
                    expired += 1;
                }
                BindingState::Expired
                | BindingState::Released
                | BindingState::Declined
                | BindingState::Free
                    if now.saturating_sub(b.state_start.max(b.expiry.min(now))) >= keep =>
                {
                    self.remove(slot);
                    reclaimed += 1;
                }
                _ => {}
            }
        }
        (expired, reclaimed)
    }

    /// Every used record with its slot (tools; not for the packet path).
    pub fn iter(&self) -> impl Iterator<Item = (u32, Binding6)> + '_ {
        (0..self.capacity).filter_map(|s| self.get(s).map(|b| (s, b)))
    }
}

/// Seeded 64-bit hash of an index key (`tag` tells the key kinds apart), the lease table's
/// client-index hash (`lease::key_hash`: multiply-rotate per 8 bytes, murmur3's finaliser)
/// over any length: a few instructions per 8 bytes where SipHash took ~300 per key (the v6
/// packet path hashes 4-8 keys per message). The seed is random per table, as SipHash's keys
/// were.
#[inline]
fn seeded_hash(seed: u64, tag: u64, data: &[u8]) -> u64 {
    let mut h = seed ^ tag.wrapping_mul(0x9e37_79b9_7f4a_7c15) ^ (data.len() as u64) << 32;
    let mut chunks = data.chunks_exact(8);
    for c in &mut chunks {
        let mut w = [0u8; 8];
        w.copy_from_slice(c);
        h = (h ^ u64::from_le_bytes(w))
            .wrapping_mul(0x9e37_79b9_7f4a_7c15)
            .rotate_left(29);
    }
    let rest = chunks.remainder();
    if !rest.is_empty() {
        let mut w = [0u8; 8];
        w[..rest.len()].copy_from_slice(rest);
        h = (h ^ u64::from_le_bytes(w))
            .wrapping_mul(0x9e37_79b9_7f4a_7c15)
            .rotate_left(29);
    }
    crate::lease::mix64(h)
}

fn rec_off(slot: u32) -> usize {
    HEADER6_LEN + slot as usize * RECORD6_SIZE
}

fn write_header(h: &mut [u8], capacity: u32, duid: &[u8], id: &[u8; 16]) {
    h[..8].copy_from_slice(MAGIC6);
    h[H_VERSION..H_VERSION + 4].copy_from_slice(&VERSION6.to_le_bytes());
    h[H_RECSIZE..H_RECSIZE + 4].copy_from_slice(&(RECORD6_SIZE as u32).to_le_bytes());
    h[H_CAPACITY..H_CAPACITY + 4].copy_from_slice(&capacity.to_le_bytes());
    let n = duid.len().min(DUID_MAX);
    h[H_DUID] = n as u8;
    h[H_DUID + 1..H_DUID + 1 + DUID_MAX].fill(0);
    h[H_DUID + 1..H_DUID + 1 + n].copy_from_slice(&duid[..n]);
    h[H_ID..H_ID + 16].copy_from_slice(id);
    let crc = crc32fast::hash(&h[..H_CRC]);
    h[H_CRC..H_CRC + 4].copy_from_slice(&crc.to_le_bytes());
}

/// What [`read_file`] found: the server DUID, the bindings, the damaged records skipped.
pub type FileContents6 = (Option<Vec<u8>>, Vec<Binding6>, u32);

/// Reads a v6 binding file without locking or changing it (tools): its server DUID and
/// bindings. Damaged records are skipped and counted.
pub fn read_file(path: &Path) -> Result<FileContents6, StoreError> {
    let data = std::fs::read(path).map_err(|e| StoreError::Io {
        path: path.to_path_buf(),
        op: "read",
        source: e,
    })?;
    if data.len() < HEADER6_LEN || &data[..8] != MAGIC6 {
        return Err(StoreError::Format {
            path: path.to_path_buf(),
            msg: "not a v6 binding file (bad magic or short)".into(),
        });
    }
    let n = usize::from(data[H_DUID]).min(DUID_MAX);
    let duid = (n > 0).then(|| data[H_DUID + 1..H_DUID + 1 + n].to_vec());
    let mut out = Vec::new();
    let mut bad = 0;
    for r in data[HEADER6_LEN..].chunks_exact(RECORD6_SIZE) {
        match Binding6::decode(r) {
            Ok(Some(b)) => out.push(b),
            Ok(None) => {}
            Err(_) => bad += 1,
        }
    }
    Ok((duid, out, bad))
}

#[cfg(test)]
mod tests;
