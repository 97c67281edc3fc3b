//! The shared lease table: memory-mapped records plus in-memory indexes.
//!
//! # Concurrency and the safety argument for the mapping
//!
//! The file is mapped once (`MmapRaw`, `MAP_SHARED`, read-write) and never
//! remapped or unmapped while the table exists, so every record address stays
//! valid for `&self`'s lifetime. Records start at a page-aligned header length
//! and are 128 bytes each, so every record is 4-byte aligned and can be viewed
//! as `[AtomicU32; 32]` (same size and alignment as `[u32; 32]`). All accesses
//! to record memory in this process go through those atomics, so there is no
//! data race in the Rust memory model, even though readers and writers overlap.
//! The header region (below the first record) is only touched during `open`
//! (before the table is shared) and afterwards under `header_lock`.
//! Other processes are kept out with `flock(LOCK_EX)`; a file changed behind
//! our back yields garbage values, never unsoundness, since every bit pattern
//! is a valid `u32`.
//!
//! Per record, word 0 is a sequence lock:
//! - writer: CAS `seq` even -> odd (Acquire), `fence(Release)`, relaxed stores
//!   of words 2..32 and then word 1 (the CRC, last, so that after a crash an
//!   odd record whose CRC matches is a complete old or new version), then
//!   store `seq + 1` (Release). A writer never waits for anything that can wait
//!   for a record lock while holding one (it only takes a free-list mutex,
//!   which nobody holds while locking a record), so there is no deadlock.
//!   Index maintenance (which reads other records) runs after the unlock.
//! - reader: load `seq` (Acquire), retry while odd, relaxed loads of the data,
//!   `fence(Acquire)`, reload `seq`; retry if it changed.

use std::cell::Cell;
use std::collections::hash_map::RandomState;
use std::collections::{HashMap, VecDeque};
use std::fs::{self, File};
use std::hash::BuildHasher;
use std::io;
use std::net::Ipv4Addr;
use std::os::unix::fs::{FileExt, MetadataExt};
use std::os::unix::io::AsRawFd;
use std::path::{Path, PathBuf};
use std::sync::atomic::{fence, AtomicBool, AtomicU32, AtomicU64, AtomicUsize, Ordering};
use std::sync::{Mutex, MutexGuard, RwLock, RwLockReadGuard, RwLockWriteGuard, TryLockError};
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

use hashbrown::HashTable;
use memmap2::{MmapOptions, MmapRaw};

use crate::error::{LostLease, StoreError};
use crate::header::{
    self, FileHeader, Geometry, PoolSpec, FAILOVER_CAPACITY, UNDO_LEN, UNDO_SLOTS,
};
use crate::lease::{
    key_hash, record_crc, ClientKey, Lease, LeaseState, Owner, FLAG_QUARANTINED, RECORD_SIZE,
    RECORD_WORDS,
};

#[cfg(target_endian = "big")]
compile_error!(
    "lease-store maps its little-endian file directly; big-endian hosts are not supported"
);

/// How many addresses a shard takes from another shard's free list at once.
const STEAL_BATCH: usize = 32;
/// How many addresses a failed shrink check lists.
const LOST_LISTED: usize = 10;

/// Index of one record (one address). Only the table hands these out.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct Slot(u32);

impl Slot {
    /// Record number in the file (0-based, pools in configuration order).
    pub fn index(self) -> u32 {
        self.0
    }
}

/// Result of [`LeaseTable::allocate_if`].
#[derive(Debug, PartialEq, Eq)]
pub enum Alloc<R> {
    /// The record was taken; `f` returned this.
    Taken(Slot, R),
    /// `f` refused the record offered to it; it is back on its free list.
    Refused,
    /// No free address of that owner in the pool.
    Empty,
}

/// Options for [`LeaseTable::open`].
#[derive(Clone, Debug)]
pub struct OpenOptions {
    /// Number of worker shards the free addresses are dealt to (at least 1).
    pub shards: usize,
    /// Create the file when it is missing (or empty). Default true.
    pub create: bool,
    /// Allow a configuration change to drop live leases (they are reported).
    pub allow_shrink: bool,
    /// Current time (unix seconds), used to judge which leases are live.
    pub now: u32,
}

impl Default for OpenOptions {
    fn default() -> Self {
        OpenOptions {
            shards: 1,
            create: true,
            allow_shrink: false,
            now: unix_now(),
        }
    }
}

/// What `open` found and did.
#[derive(Debug, Default)]
pub struct OpenReport {
    /// The file was missing or empty and has been created.
    pub created: bool,
    /// The pools changed; the file was rewritten (description of what changed).
    pub rebuilt: Option<String>,
    /// Records in the table (= addresses in all pools).
    pub records: u64,
    /// Records holding something (a state other than Free, or a client key).
    pub kept: u64,
    /// Corrupt records: now state Abandoned with `FLAG_QUARANTINED`, never allocated.
    pub quarantined: Vec<(Ipv4Addr, String)>,
    /// Records found mid-write (odd sequence) whose checksum was still valid: kept.
    pub repaired: Vec<(Ipv4Addr, String)>,
    /// Live leases dropped because `allow_shrink` let the pools shrink.
    pub dropped_by_shrink: Vec<Lease>,
    /// Damage found in the failover area (both copies invalid).
    pub failover_problem: Option<String>,
    /// Wall time of the whole open (including rebuild and index build).
    pub elapsed: Duration,
    /// Time spent in each phase of the open, for benchmarks.
    pub phases: Vec<(&'static str, Duration)>,
}

/// Per-pool counts by state. Exact whenever no update is in flight.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct PoolStats {
    pub id: u32,
    pub total: u64,
    pub free: u64,
    pub offered: u64,
    pub active: u64,
    pub expired: u64,
    pub released: u64,
    pub declined: u64,
    pub abandoned: u64,
    pub backup: u64,
    pub reserved: u64,
    /// Records carrying `FLAG_QUARANTINED` (a subset of the states above, normally abandoned).
    pub quarantined: u64,
}

impl PoolStats {
    fn from_counts(id: u32, total: u64, c: &[u64; LeaseState::COUNT], quarantined: u64) -> Self {
        PoolStats {
            id,
            total,
            free: c[LeaseState::Free as usize],
            offered: c[LeaseState::Offered as usize],
            active: c[LeaseState::Active as usize],
            expired: c[LeaseState::Expired as usize],
            released: c[LeaseState::Released as usize],
            declined: c[LeaseState::Declined as usize],
            abandoned: c[LeaseState::Abandoned as usize],
            backup: c[LeaseState::Backup as usize],
            reserved: c[LeaseState::Reserved as usize],
            quarantined,
        }
    }
}

/// What one `sweep_expired` call did.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct SweepResult {
    pub scanned: usize,
    /// Offered/Active records moved to Expired (and onto a free list).
    pub expired: usize,
    /// Declined records whose quarantine ended, now Free.
    pub unquarantined: usize,
    /// Free-state records that were on no free list and were put back (should stay 0).
    pub relisted: usize,
    /// The cursor passed the last record during this call.
    pub wrapped: bool,
}

/// Records a worker changed in one batch, for [`LeaseTable::flush_set`].
/// Kept as a slot range: one `msync` call covers it, the kernel writes only
/// the dirty pages inside.
#[derive(Clone, Copy, Debug)]
pub struct DirtySet {
    lo: u32,
    hi: u32,
}

impl Default for DirtySet {
    fn default() -> Self {
        Self::new()
    }
}

impl DirtySet {
    pub const fn new() -> Self {
        DirtySet {
            lo: u32::MAX,
            hi: 0,
        }
    }
    pub fn note(&mut self, slot: Slot) {
        self.lo = self.lo.min(slot.0);
        self.hi = self.hi.max(slot.0);
    }
    pub fn is_empty(&self) -> bool {
        self.lo > self.hi
    }
    pub fn clear(&mut self) {
        *self = Self::new();
    }
}

/// Client index shards (power of two). Each shard is an `RwLock` around a
/// table of slot numbers; see `LeaseTable::index`.
const INDEX_SHARDS: usize = 64;

/// Where a client key goes in the index. From the key's 64-bit hash: the
/// low bits pick the shard; the high 32 bits (`tag`) are stored in the entry
/// next to the slot, and the table hash is derived from the tag alone, so a
/// shard can grow without reading records, and a lookup reads a record only
/// when the 32-bit tags match.
#[derive(Clone, Copy)]
struct IndexPos {
    shard: usize,
    tag: u32,
}

impl IndexPos {
    #[inline]
    fn of(seed: u64, key: &ClientKey) -> Self {
        let h = key_hash(seed, key);
        IndexPos {
            shard: (h as usize) & (INDEX_SHARDS - 1),
            tag: (h >> 32) as u32,
        }
    }
    /// Table hash: hashbrown uses the low bits for the bucket and the top 7
    /// for its control byte; both come from the tag.
    #[inline]
    fn hash(self) -> u64 {
        entry_hash(self.entry(0))
    }
    #[inline]
    fn entry(self, slot: u32) -> u64 {
        (u64::from(self.tag) << 32) | u64::from(slot)
    }
}

#[inline]
fn entry_hash(e: u64) -> u64 {
    let tag = e >> 32;
    tag | (tag << 32)
}

#[inline]
fn entry_slot(e: u64) -> u32 {
    e as u32
}

#[inline]
fn entry_tag(e: u64) -> u32 {
    (e >> 32) as u32
}

fn read_lock<T>(l: &RwLock<T>) -> RwLockReadGuard<'_, T> {
    l.read().unwrap_or_else(|e| e.into_inner())
}

fn write_lock<T>(l: &RwLock<T>) -> RwLockWriteGuard<'_, T> {
    l.write().unwrap_or_else(|e| e.into_inner())
}

struct PoolRt {
    counts: [AtomicU64; LeaseState::COUNT],
    quarantined: AtomicU64,
    /// Free lists by owner then home shard. FIFO: pop front, push back.
    free: [Vec<Mutex<VecDeque<u32>>>; 2],
}

fn lock<T>(m: &Mutex<T>) -> MutexGuard<'_, T> {
    // A panic elsewhere cannot leave a VecDeque/HashMap in a state unsafe to use.
    m.lock().unwrap_or_else(|e| e.into_inner())
}

fn try_lock<T>(m: &Mutex<T>) -> Option<MutexGuard<'_, T>> {
    match m.try_lock() {
        Ok(g) => Some(g),
        Err(TryLockError::Poisoned(e)) => Some(e.into_inner()),
        Err(TryLockError::WouldBlock) => None,
    }
}

/// Current unix time in seconds (saturating into u32).
pub fn unix_now() -> u32 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map(|d| d.as_secs().min(u64::from(u32::MAX)) as u32)
        .unwrap_or(0)
}

/// Held record lock; releases (seq + 1, even) on drop, also on unwind.
struct RecGuard<'a> {
    w: &'a [AtomicU32; RECORD_WORDS],
    odd: u32,
    /// Whether the body was rewritten. An unchanged record gets its old
    /// sequence back, so a never-used (all-zero) record stays pristine
    /// instead of carrying a sequence with no checksum.
    wrote: std::cell::Cell<bool>,
    /// Undo slot claimed for this write (released after the unlock).
    undo: Option<&'a AtomicBool>,
}

impl RecGuard<'_> {
    fn bytes(&self) -> [u8; RECORD_SIZE] {
        load_words(self.w)
    }
    fn store(&self, b: &[u8; RECORD_SIZE]) {
        self.wrote.set(true);
        store_body(self.w, b);
    }
}

impl Drop for RecGuard<'_> {
    fn drop(&mut self) {
        // Readers of a seqlock accept old == new sequence only when nothing
        // changed, which is exactly the case where the old value comes back.
        let seq = if self.wrote.get() {
            self.odd.wrapping_add(1)
        } else {
            self.odd.wrapping_sub(1)
        };
        self.w[0].store(seq, Ordering::Release);
        if let Some(busy) = self.undo {
            busy.store(false, Ordering::Release);
        }
    }
}

#[inline]
fn load_words(w: &[AtomicU32; RECORD_WORDS]) -> [u8; RECORD_SIZE] {
    let mut b = [0u8; RECORD_SIZE];
    for (i, a) in w.iter().enumerate() {
        b[i * 4..i * 4 + 4].copy_from_slice(&a.load(Ordering::Relaxed).to_ne_bytes());
    }
    b
}

/// Stores words 2.. and then word 1 (CRC); word 0 (seq) is left alone.
#[inline]
fn store_body(w: &[AtomicU32; RECORD_WORDS], b: &[u8; RECORD_SIZE]) {
    let word = |i: usize| u32::from_ne_bytes([b[i * 4], b[i * 4 + 1], b[i * 4 + 2], b[i * 4 + 3]]);
    for (i, a) in w.iter().enumerate().skip(2) {
        a.store(word(i), Ordering::Relaxed);
    }
    // The CRC goes last, also for the compiler (crash consistency, see module doc).
    fence(Ordering::Release);
    w[1].store(word(1), Ordering::Relaxed);
}

/// Undo copies by address.
type UndoMap = HashMap<u32, Vec<[u8; RECORD_SIZE]>>;

fn stored_crc_of(b: &[u8; RECORD_SIZE]) -> u32 {
    u32::from_le_bytes([b[4], b[5], b[6], b[7]])
}

fn add_undo(m: &mut UndoMap, b: &[u8; RECORD_SIZE]) {
    if is_pristine(b) || stored_crc_of(b) != record_crc(b) {
        return;
    }
    if let Ok(l) = Lease::decode(b) {
        m.entry(u32::from(l.addr)).or_default().push(*b);
    }
}

/// The previous version of a record torn while its sequence was `torn_seq`.
fn recover_from_undo(m: &UndoMap, addr: u32, torn_seq: u32) -> Option<[u8; RECORD_SIZE]> {
    m.get(&addr)?
        .iter()
        .find(|b| u32::from_le_bytes([b[0], b[1], b[2], b[3]]) == torn_seq.wrapping_sub(1))
        .copied()
}

fn is_pristine(b: &[u8; RECORD_SIZE]) -> bool {
    b.iter().all(|&x| x == 0)
}

fn rank(l: &Lease) -> (u8, u32) {
    let r = match l.state {
        LeaseState::Reserved => 4,
        LeaseState::Active => 3,
        LeaseState::Offered => 2,
        LeaseState::Expired | LeaseState::Released => 1,
        _ => 0,
    };
    (r, l.expiry)
}

fn is_live(l: &Lease, now: u32) -> bool {
    match l.state {
        LeaseState::Active | LeaseState::Offered => l.expiry > now,
        LeaseState::Reserved => true,
        _ => false,
    }
}

/// The lease table. `Send + Sync`; share it with `Arc`.
pub struct LeaseTable {
    path: PathBuf,
    /// Kept open: holds the flock for the table's lifetime.
    _file: File,
    map: MmapRaw,
    header_len: usize,
    geo: Geometry,
    rt: Vec<PoolRt>,
    /// (pool id, pool index) sorted by id.
    by_id: Vec<(u32, u32)>,
    shards: usize,
    seed: u64,
    /// Client index: per shard, a hash table of slot numbers hashed by the
    /// seeded hash of the record's client key. Entries store only the slot
    /// (4 bytes); the key is compared against the record itself, so 64-bit
    /// hash collisions are harmless and stale entries never match. Record
    /// lock holders never take these locks (index maintenance runs after the
    /// record unlock), so reading records while holding one cannot deadlock.
    index: Box<[RwLock<HashTable<u64>>]>,
    /// One bit per slot and owner: the slot is on some free list of that owner.
    in_free: [Vec<AtomicU64>; 2],
    header_lock: Mutex<()>,
    sweep_cursor: AtomicU64,
    /// Per owner: an allocation found that owner's free lists of some pool empty since the
    /// last [`LeaseTable::take_exhausted`] (failover rebalances on it).
    exhausted: [AtomicBool; 2],
    /// Claim flags of the undo slots.
    undo_busy: Vec<AtomicBool>,
}

impl std::fmt::Debug for LeaseTable {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("LeaseTable")
            .field("path", &self.path)
            .field("records", &self.geo.total)
            .field("pools", &self.geo.pools)
            .field("shards", &self.shards)
            .finish()
    }
}

/// Per-thread result of the open scan.
struct ScanOut {
    counts: Vec<[u64; LeaseState::COUNT]>,
    quarantined_n: Vec<u64>,
    /// Indexed by `list_idx(pool, owner, shard, phase)`.
    lists: Vec<Vec<u32>>,
    quarantined: Vec<(Ipv4Addr, String)>,
    repaired: Vec<(Ipv4Addr, String)>,
    kept: u64,
    wrote: bool,
    /// Index entries of keyed records, by index shard, in slot order.
    keyed: Vec<Vec<u64>>,
}

impl LeaseTable {
    // ----------------------------------------------------------------- open

    /// Opens (or creates) the lease file for `pools`, checks every record and
    /// rebuilds the indexes. A change of pools rewrites the file (keeping
    /// leases by address); dropping live leases needs `opts.allow_shrink`.
    pub fn open(
        path: &Path,
        pools: &[PoolSpec],
        opts: &OpenOptions,
    ) -> Result<(Self, OpenReport), StoreError> {
        let start = Instant::now();
        if pools.is_empty() {
            return Err(StoreError::Pools("no pools configured".into()));
        }
        let geo = Geometry::new(pools).map_err(StoreError::Pools)?;
        let mut report = OpenReport::default();
        for _ in 0..3 {
            let (file, empty) = open_locked(path, opts.create)?;
            if empty {
                init_file(&file, path, &geo, u64::from(opts.now))?;
                report.created = true;
            }
            let len = file
                .metadata()
                .map_err(|e| StoreError::io(path, "stat", e))?
                .len();
            let len = usize::try_from(len).map_err(|_| {
                StoreError::format(path, format!("{len} bytes is too large to map"))
            })?;
            // Prefault the whole file in one go: much cheaper than a page
            // fault per page during the scan.
            let tm = Instant::now();
            let map = MmapOptions::new()
                .populate()
                .map_raw(&file)
                .map_err(|e| StoreError::io(path, "mmap", e))?;
            report.phases.push(("map", tm.elapsed()));
            // SAFETY: nothing else accesses the mapping yet (we hold the flock and
            // have not shared it); `len` is the mapped length.
            let whole = unsafe { std::slice::from_raw_parts(map.as_ptr(), len) };
            let hdr = header::parse_header(whole, path)?;
            if hdr.geo.pools != geo.pools {
                rebuild(path, whole, &hdr, &geo, opts, &mut report)?;
                continue; // reopen the rewritten file
            }
            if len as u64 > geo.file_len() {
                tracing::warn!(
                    path = %path.display(),
                    "lease file is {len} bytes, geometry needs {}; ignoring the trailing bytes",
                    geo.file_len()
                );
            }
            let table = Self::build(path, file, map, hdr, opts, &mut report)?;
            report.elapsed = start.elapsed();
            return Ok((table, report));
        }
        Err(StoreError::format(
            path,
            "pool geometry still differs after rewriting the file (is another program replacing it?)",
        ))
    }

    fn build(
        path: &Path,
        file: File,
        map: MmapRaw,
        hdr: FileHeader,
        opts: &OpenOptions,
        report: &mut OpenReport,
    ) -> Result<Self, StoreError> {
        let t_build = Instant::now();
        let shards = opts.shards.max(1);
        let geo = hdr.geo;
        let nrec = geo.total as usize;
        let rt: Vec<PoolRt> = geo
            .pools
            .iter()
            .map(|p| {
                let home = (p.len() as usize).div_ceil(shards);
                PoolRt {
                    counts: Default::default(),
                    quarantined: AtomicU64::new(0),
                    free: [
                        (0..shards)
                            .map(|_| Mutex::new(VecDeque::with_capacity(home)))
                            .collect(),
                        (0..shards).map(|_| Mutex::new(VecDeque::new())).collect(),
                    ],
                }
            })
            .collect();
        let mut by_id: Vec<(u32, u32)> = geo
            .pools
            .iter()
            .enumerate()
            .map(|(i, p)| (p.id, i as u32))
            .collect();
        by_id.sort_unstable();
        let bits = nrec.div_ceil(64);
        let table = LeaseTable {
            path: path.to_path_buf(),
            _file: file,
            map,
            header_len: hdr.header_len,
            rt,
            by_id,
            shards,
            seed: RandomState::new().hash_one(0x7864_6863_7064u64),
            // Filled below; sized then for every address bound, so the index
            // practically never grows under load.
            index: (0..INDEX_SHARDS)
                .map(|_| RwLock::new(HashTable::new()))
                .collect(),
            in_free: [
                (0..bits).map(|_| AtomicU64::new(0)).collect(),
                (0..bits).map(|_| AtomicU64::new(0)).collect(),
            ],
            header_lock: Mutex::new(()),
            sweep_cursor: AtomicU64::new(0),
            exhausted: [AtomicBool::new(false), AtomicBool::new(false)],
            undo_busy: (0..UNDO_SLOTS).map(|_| AtomicBool::new(false)).collect(),
            geo,
        };

        // Parallel scan over contiguous slot ranges (chunks aligned to 64 so the
        // free bitmap words are not shared; they are atomics anyway).
        let threads = std::thread::available_parallelism()
            .map(|n| n.get())
            .unwrap_or(1)
            .clamp(1, 8)
            .min(nrec.div_ceil(1 << 16).max(1));
        let chunk = nrec.div_ceil(threads).div_ceil(64) * 64;
        let undo = table.read_undo();
        report.phases.push(("allocate", t_build.elapsed()));
        let t_phase = Instant::now();
        let outs: Vec<ScanOut> = std::thread::scope(|s| {
            let handles: Vec<_> = (0..threads)
                .map(|t| {
                    let lo = (t * chunk).min(nrec) as u32;
                    let hi = ((t + 1) * chunk).min(nrec) as u32;
                    let table = &table;
                    let undo = &undo;
                    s.spawn(move || table.scan(lo, hi, undo))
                })
                .collect();
            handles
                .into_iter()
                .map(|h| h.join().unwrap_or_else(|p| std::panic::resume_unwind(p)))
                .collect()
        });

        // Client index: each thread builds whole shards (no lock contention,
        // and one shard's table stays in cache while it is filled).
        let per_shard = nrec / INDEX_SHARDS + nrec / INDEX_SHARDS / 8 + 64;
        report.phases.push(("scan", t_phase.elapsed()));
        let t_phase = Instant::now();
        std::thread::scope(|s| {
            for t in 0..threads {
                let table = &table;
                let outs = &outs;
                s.spawn(move || {
                    for sh in (t..INDEX_SHARDS).step_by(threads) {
                        let mut ht = HashTable::with_capacity(per_shard);
                        for out in outs {
                            for &e in &out.keyed[sh] {
                                table.index_insert_open(&mut ht, e);
                            }
                        }
                        *write_lock(&table.index[sh]) = ht;
                    }
                });
            }
        });
        report.phases.push(("client index", t_phase.elapsed()));
        let t_phase = Instant::now();
        // Merge: per list, all never-used (phase 0) slots first, then the
        // released/expired ones, each in slot order.
        let mut wrote = false;
        for (p, prt) in table.rt.iter().enumerate() {
            for (o, lists) in prt.free.iter().enumerate() {
                for (sh, m) in lists.iter().enumerate() {
                    let mut q = lock(m);
                    for phase in 0..2 {
                        for out in &outs {
                            q.extend(out.lists[table.list_idx(p, o, sh, phase)].iter().copied());
                        }
                    }
                }
            }
        }
        for out in outs {
            for (p, prt) in table.rt.iter().enumerate() {
                for (c, n) in prt.counts.iter().zip(out.counts[p].iter()) {
                    c.fetch_add(*n, Ordering::Relaxed);
                }
                prt.quarantined
                    .fetch_add(out.quarantined_n[p], Ordering::Relaxed);
            }
            report.quarantined.extend(out.quarantined);
            report.repaired.extend(out.repaired);
            report.kept += out.kept;
            wrote |= out.wrote;
        }
        for (addr, why) in &report.quarantined {
            tracing::warn!(path = %path.display(), %addr, "quarantined lease record: {why}");
        }
        for (addr, why) in &report.repaired {
            tracing::warn!(path = %path.display(), %addr, "repaired lease record: {why}");
        }
        report
            .phases
            .push(("free lists and counters", t_phase.elapsed()));
        let t_phase = Instant::now();
        // The undo copies served their purpose (records are consistent now).
        for i in 0..UNDO_SLOTS {
            for a in table.undo_words(i) {
                if a.swap(0, Ordering::Relaxed) != 0 {
                    wrote = true;
                }
            }
        }
        if wrote {
            table
                .flush()
                .map_err(|e| StoreError::io(path, "msync after repairs", e))?;
        }
        {
            let _g = lock(&table.header_lock);
            if let Err(e) = header::read_failover(table.header_bytes()) {
                tracing::warn!(path = %path.display(), "{e}");
                report.failover_problem = Some(e);
            }
        }
        report.phases.push(("finish", t_phase.elapsed()));
        report.records = nrec as u64;
        Ok(table)
    }

    #[inline]
    fn list_idx(&self, pool: usize, owner: usize, shard: usize, phase: usize) -> usize {
        ((pool * 2 + owner) * self.shards + shard) * 2 + phase
    }

    /// Validates, repairs or quarantines, counts and indexes slots `lo..hi`.
    fn scan(&self, lo: u32, hi: u32, undo: &UndoMap) -> ScanOut {
        let np = self.geo.pools.len();
        let mut out = ScanOut {
            counts: vec![[0; LeaseState::COUNT]; np],
            quarantined_n: vec![0; np],
            lists: vec![Vec::new(); np * 2 * self.shards * 2],
            quarantined: Vec::new(),
            repaired: Vec::new(),
            kept: 0,
            wrote: false,
            keyed: (0..INDEX_SHARDS).map(|_| Vec::new()).collect(),
        };
        if lo >= hi {
            return out;
        }
        let mut p = self.geo.pool_idx_of_slot(lo);
        for slot in lo..hi {
            while p + 1 < np && self.geo.bases[p + 1] <= slot {
                p += 1;
            }
            let base = self.geo.bases[p];
            let addr = u32::from(self.geo.pools[p].first) + (slot - base);
            let home = ((slot - base) as usize) % self.shards;
            let w = self.words(slot);
            let raw = load_words(w);
            // A never-written body (everything but the sequence zero) is a
            // free record, also when a crash hit while it was locked and
            // before anything was written (odd sequence): nothing to roll
            // back, so reset the sequence and keep it free.
            if raw[4..].iter().all(|&x| x == 0) {
                if !is_pristine(&raw) {
                    w[0].store(0, Ordering::Release);
                    out.wrote = true;
                }
                out.counts[p][LeaseState::Free as usize] += 1;
                out.lists[self.list_idx(p, 0, home, 0)].push(slot);
                self.set_free_bit(Owner::Primary, slot);
                continue;
            }
            let mut raw = raw;
            let seq = u32::from_le_bytes([raw[0], raw[1], raw[2], raw[3]]);
            let mut stored = u32::from_le_bytes([raw[4], raw[5], raw[6], raw[7]]);
            let mut computed = record_crc(&raw);
            let mut rolled_back = false;
            if stored != computed && seq & 1 == 1 {
                if let Some(b) = recover_from_undo(undo, addr, seq) {
                    store_body(w, &b);
                    raw = b;
                    stored = stored_crc_of(&raw);
                    computed = stored;
                    rolled_back = true;
                }
            }
            let decoded = if stored != computed {
                Err(if seq & 1 == 1 {
                    format!("torn write: interrupted update (sequence {seq} is odd) and checksum mismatch")
                } else {
                    format!("checksum mismatch (stored {stored:#010x}, computed {computed:#010x})")
                })
            } else {
                Lease::decode(&raw).and_then(|l| {
                    if u32::from(l.addr) == addr {
                        Ok(l)
                    } else {
                        Err(format!(
                            "record holds address {} at the position of {}",
                            l.addr,
                            Ipv4Addr::from(addr)
                        ))
                    }
                })
            };
            let l = match decoded {
                Ok(l) => {
                    if rolled_back {
                        w[0].store(seq.wrapping_add(1), Ordering::Release);
                        out.wrote = true;
                        out.repaired.push((
                            l.addr,
                            format!("update interrupted by a crash (sequence {seq} is odd, checksum mismatch); rolled back to the previous version from the undo area"),
                        ));
                    } else if seq & 1 == 1 {
                        // Complete old or new version (CRC is written last): keep it.
                        w[0].store(seq.wrapping_add(1), Ordering::Release);
                        out.wrote = true;
                        out.repaired.push((
                            l.addr,
                            format!("interrupted update (sequence {seq} is odd) but the checksum is valid; kept"),
                        ));
                    }
                    l
                }
                Err(why) => {
                    let mut q = Lease::decode_lossy(&raw);
                    q.addr = Ipv4Addr::from(addr);
                    q.state = LeaseState::Abandoned;
                    q.flags |= FLAG_QUARANTINED;
                    q.client = ClientKey::NONE;
                    let mut b = q.encode();
                    let crc = record_crc(&b);
                    b[4..8].copy_from_slice(&crc.to_le_bytes());
                    store_body(w, &b);
                    w[0].store((seq | 1).wrapping_add(1), Ordering::Release);
                    out.wrote = true;
                    out.counts[p][LeaseState::Abandoned as usize] += 1;
                    out.quarantined_n[p] += 1;
                    out.kept += 1;
                    out.quarantined.push((Ipv4Addr::from(addr), why));
                    continue;
                }
            };
            out.counts[p][l.state as usize] += 1;
            if l.is_quarantined() {
                out.quarantined_n[p] += 1;
            }
            if l.state != LeaseState::Free || !l.client.is_none() {
                out.kept += 1;
            }
            if !l.client.is_none() {
                let pos = IndexPos::of(self.seed, &l.client);
                out.keyed[pos.shard].push(pos.entry(slot));
            }
            if let Some(o) = l.state.free_list_owner() {
                if !l.is_quarantined() {
                    let phase =
                        usize::from(!matches!(l.state, LeaseState::Free | LeaseState::Backup));
                    out.lists[self.list_idx(p, o.idx(), home, phase)].push(slot);
                    self.set_free_bit(o, slot);
                }
            }
        }
        out
    }

    /// Index insert during open (no writers exist). Of two records with the
    /// same key the better one (state rank, expiry) wins.
    fn index_insert_open(&self, ht: &mut HashTable<u64>, e: u64) {
        let (slot, tag) = (entry_slot(e), entry_tag(e));
        let same =
            |x: &u64| entry_tag(*x) == tag && self.key_at(entry_slot(*x)) == self.key_at(slot);
        match ht.find_mut(entry_hash(e), same) {
            Some(x) => {
                let mine = self.decode_at(slot, &load_words(self.words(slot)));
                let other = self.decode_at(entry_slot(*x), &load_words(self.words(entry_slot(*x))));
                if rank(&mine) > rank(&other) {
                    *x = e;
                }
            }
            None => {
                ht.insert_unique(entry_hash(e), e, |x| entry_hash(*x));
            }
        }
    }

    /// Client key currently in a record (seqlock read).
    #[inline]
    fn key_at(&self, slot: u32) -> ClientKey {
        Lease::decode_lossy(&self.read_bytes(slot)).client
    }

    // ------------------------------------------------------------ records

    /// The record's 32 words.
    #[inline]
    fn words(&self, slot: u32) -> &[AtomicU32; RECORD_WORDS] {
        assert!(
            slot < self.geo.total,
            "slot {slot} out of range ({} records): slot from another table",
            self.geo.total
        );
        // SAFETY: in bounds (checked above; the map covers header_len +
        // total * RECORD_SIZE bytes), 4-byte aligned (page-aligned map, header
        // a multiple of 4096, records of 128 bytes), valid for &self's lifetime
        // (the map lives in self), and only ever accessed through atomics (see
        // the module documentation).
        unsafe {
            &*(self
                .map
                .as_mut_ptr()
                .add(self.header_len + slot as usize * RECORD_SIZE)
                as *const [AtomicU32; RECORD_WORDS])
        }
    }

    /// Seqlock read of a consistent copy of the record bytes.
    #[inline]
    fn read_bytes(&self, slot: u32) -> [u8; RECORD_SIZE] {
        let w = self.words(slot);
        loop {
            let s1 = w[0].load(Ordering::Acquire);
            if s1 & 1 == 1 {
                std::hint::spin_loop();
                continue;
            }
            let b = load_words(w);
            fence(Ordering::Acquire);
            if w[0].load(Ordering::Relaxed) == s1 {
                return b;
            }
        }
    }

    /// Takes the record's write lock (spins; held only for a few hundred ns).
    #[inline]
    fn lock_record(&self, slot: u32) -> RecGuard<'_> {
        let w = self.words(slot);
        loop {
            let s = w[0].load(Ordering::Relaxed);
            if s & 1 == 0
                && w[0]
                    .compare_exchange_weak(
                        s,
                        s.wrapping_add(1),
                        Ordering::Acquire,
                        Ordering::Relaxed,
                    )
                    .is_ok()
            {
                fence(Ordering::Release);
                return RecGuard {
                    w,
                    odd: s.wrapping_add(1),
                    wrote: std::cell::Cell::new(false),
                    undo: None,
                };
            }
            std::hint::spin_loop();
        }
    }

    /// Decodes record bytes; the address comes from the position (a
    /// never-written record is all zero).
    #[inline]
    fn decode_at(&self, slot: u32, raw: &[u8; RECORD_SIZE]) -> Lease {
        let mut l = Lease::decode_lossy(raw);
        l.addr = Ipv4Addr::from(self.geo.addr_of(slot));
        l
    }

    #[inline]
    fn pool_idx_of_slot(&self, slot: u32) -> usize {
        self.geo.pool_idx_of_slot(slot)
    }

    #[inline]
    fn home_shard(&self, p: usize, slot: u32) -> usize {
        ((slot - self.geo.bases[p]) as usize) % self.shards
    }

    fn set_free_bit(&self, owner: Owner, slot: u32) -> bool {
        let m = 1u64 << (slot % 64);
        self.in_free[owner.idx()][(slot / 64) as usize].fetch_or(m, Ordering::AcqRel) & m == 0
    }

    fn clear_free_bit(&self, owner: Owner, slot: u32) {
        let m = 1u64 << (slot % 64);
        self.in_free[owner.idx()][(slot / 64) as usize].fetch_and(!m, Ordering::AcqRel);
    }

    fn free_bit(&self, owner: Owner, slot: u32) -> bool {
        let m = 1u64 << (slot % 64);
        self.in_free[owner.idx()][(slot / 64) as usize].load(Ordering::Acquire) & m != 0
    }

    /// Puts `slot` on its home free list of `owner` unless it is on one already.
    fn push_free(&self, p: usize, slot: u32, owner: Owner) -> bool {
        if !self.set_free_bit(owner, slot) {
            return false;
        }
        let sh = self.home_shard(p, slot);
        lock(&self.rt[p].free[owner.idx()][sh]).push_back(slot);
        true
    }

    /// Writes `new` under the held lock and keeps counters and free lists in
    /// step. Returns whether anything changed.
    fn apply_locked<'a>(
        &'a self,
        slot: u32,
        g: &mut RecGuard<'a>,
        old_raw: &[u8; RECORD_SIZE],
        old: &Lease,
        new: &mut Lease,
    ) -> bool {
        new.addr = old.addr;
        if new == old {
            return false;
        }
        let mut b = new.encode();
        let crc = record_crc(&b);
        b[4..8].copy_from_slice(&crc.to_le_bytes());
        self.save_undo(g, old_raw, old);
        g.store(&b);
        let p = self.pool_idx_of_slot(slot);
        let rt = &self.rt[p];
        if old.state != new.state {
            rt.counts[old.state as usize].fetch_sub(1, Ordering::Relaxed);
            rt.counts[new.state as usize].fetch_add(1, Ordering::Relaxed);
        }
        match (old.is_quarantined(), new.is_quarantined()) {
            (false, true) => {
                rt.quarantined.fetch_add(1, Ordering::Relaxed);
            }
            (true, false) => {
                rt.quarantined.fetch_sub(1, Ordering::Relaxed);
            }
            _ => {}
        }
        if let Some(o) = new.state.free_list_owner() {
            if !new.is_quarantined() {
                self.push_free(p, slot, o);
            }
        }
        true
    }

    /// Copies the record's current version into a claimed undo slot (kept
    /// until the unlock), so a crash in the middle of `g.store` can be rolled back.
    fn save_undo<'a>(&'a self, g: &mut RecGuard<'a>, old_raw: &[u8; RECORD_SIZE], old: &Lease) {
        // The seq word is odd now (we hold the lock): look at the rest.
        let mut b = if old_raw[4..].iter().all(|&x| x == 0) {
            // Never written: store the free record it stands for, with a CRC.
            let mut b = old.encode();
            let crc = record_crc(&b);
            b[4..8].copy_from_slice(&crc.to_le_bytes());
            b
        } else {
            *old_raw
        };
        b[0..4].copy_from_slice(&g.odd.wrapping_sub(1).to_le_bytes());
        let i = self.claim_undo();
        let u = self.undo_words(i);
        for (k, a) in u.iter().enumerate() {
            let o = k * 4;
            a.store(
                u32::from_ne_bytes([b[o], b[o + 1], b[o + 2], b[o + 3]]),
                Ordering::Relaxed,
            );
        }
        // The copy must be in memory before the record changes.
        fence(Ordering::Release);
        g.undo = Some(&self.undo_busy[i]);
    }

    fn claim_undo(&self) -> usize {
        thread_local! {
            static HINT: Cell<usize> = const { Cell::new(usize::MAX) };
        }
        static NEXT: AtomicUsize = AtomicUsize::new(0);
        let start = HINT.with(|h| {
            if h.get() == usize::MAX {
                h.set(NEXT.fetch_add(1, Ordering::Relaxed) % UNDO_SLOTS);
            }
            h.get()
        });
        loop {
            for k in 0..UNDO_SLOTS {
                let i = (start + k) % UNDO_SLOTS;
                if !self.undo_busy[i].swap(true, Ordering::Acquire) {
                    return i;
                }
            }
            std::hint::spin_loop();
        }
    }

    fn undo_words(&self, i: usize) -> &[AtomicU32; RECORD_WORDS] {
        assert!(i < UNDO_SLOTS);
        // SAFETY: the undo area is the last UNDO_LEN bytes of the header, inside
        // the map, 4-byte aligned, and only accessed through atomics.
        unsafe {
            &*(self
                .map
                .as_mut_ptr()
                .add(self.header_len - UNDO_LEN + i * RECORD_SIZE)
                as *const [AtomicU32; RECORD_WORDS])
        }
    }

    /// Valid undo copies by address (read at open, before any writer exists).
    fn read_undo(&self) -> UndoMap {
        let mut m = UndoMap::new();
        for i in 0..UNDO_SLOTS {
            let b = load_words(self.undo_words(i));
            add_undo(&mut m, &b);
        }
        m
    }

    /// Index maintenance after a record's client changed (runs unlocked).
    fn reindex(&self, slot: u32, old: &ClientKey, new: &ClientKey) {
        if old == new {
            return;
        }
        if !old.is_none() {
            self.index_remove(old, slot);
        }
        if !new.is_none() {
            self.index_insert(new, slot);
        }
    }

    fn index_remove(&self, key: &ClientKey, slot: u32) {
        let pos = IndexPos::of(self.seed, key);
        let mut ht = write_lock(&self.index[pos.shard]);
        if let Ok(e) = ht.find_entry(pos.hash(), |x| *x == pos.entry(slot)) {
            e.remove();
        }
    }

    fn index_insert(&self, key: &ClientKey, slot: u32) {
        let pos = IndexPos::of(self.seed, key);
        {
            let mut ht = write_lock(&self.index[pos.shard]);
            // Same slot already there, or the same client at another record:
            // the newest binding wins.
            let same = |x: &u64| {
                entry_tag(*x) == pos.tag
                    && (entry_slot(*x) == slot || self.key_at(entry_slot(*x)) == *key)
            };
            match ht.find_mut(pos.hash(), same) {
                Some(x) => *x = pos.entry(slot),
                None => {
                    ht.insert_unique(pos.hash(), pos.entry(slot), |x| entry_hash(*x));
                }
            }
        }
        // A concurrent reassignment of `slot` may have run its removal before
        // this insert: do not leave a stale entry behind.
        if self.key_at(slot) != *key {
            self.index_remove(key, slot);
        }
    }

    fn pool_idx(&self, pool: u32) -> Option<usize> {
        self.by_id
            .binary_search_by_key(&pool, |e| e.0)
            .ok()
            .map(|i| self.by_id[i].1 as usize)
    }

    /// Pops a candidate from the shard's list, else steals a batch from the
    /// back of another shard's list (try_lock only: never waits on another shard).
    fn pop_free(&self, p: usize, shard: usize, owner: Owner) -> Option<u32> {
        let lists = &self.rt[p].free[owner.idx()];
        if let Some(s) = lock(&lists[shard]).pop_front() {
            self.clear_free_bit(owner, s);
            return Some(s);
        }
        let n = lists.len();
        let mut stolen = [0u32; STEAL_BATCH];
        for _round in 0..2 {
            for k in 1..n {
                let victim = (shard + k) % n;
                let Some(mut vq) = try_lock(&lists[victim]) else {
                    continue;
                };
                let take = vq.len().div_ceil(2).min(STEAL_BATCH);
                if take == 0 {
                    continue;
                }
                for s in stolen.iter_mut().take(take) {
                    *s = vq.pop_back().unwrap_or(u32::MAX);
                }
                drop(vq);
                let first = stolen[0];
                if take > 1 {
                    // These keep their in-free bit: they are still on a list.
                    lock(&lists[shard]).extend(stolen[1..take].iter().copied());
                }
                self.clear_free_bit(owner, first);
                return Some(first);
            }
            std::hint::spin_loop();
        }
        None
    }

    // ------------------------------------------------------------ public API

    /// The file this table maps.
    pub fn path(&self) -> &Path {
        &self.path
    }

    /// Number of records (addresses in all pools).
    pub fn len(&self) -> u32 {
        self.geo.total
    }

    /// True when the table has no records (never, since open needs a pool).
    pub fn is_empty(&self) -> bool {
        self.geo.total == 0
    }

    /// Number of free-list shards.
    pub fn shards(&self) -> usize {
        self.shards
    }

    /// Byte offset of a slot's record in the file (for tools and tests).
    pub fn record_offset(&self, slot: Slot) -> u64 {
        self.header_len as u64 + u64::from(slot.0) * RECORD_SIZE as u64
    }

    /// Test support: performs the first half of an update as a process
    /// killed in the middle of it would (undo copy saved, half of the new
    /// words stored, sequence left odd) and leaves the record locked. The
    /// table must be dropped right after; nothing else may touch the slot.
    #[doc(hidden)]
    pub fn simulate_crash_mid_update(&self, slot: Slot, f: impl FnOnce(&mut Lease)) {
        let mut g = self.lock_record(slot.0);
        let raw = g.bytes();
        let old = self.decode_at(slot.0, &raw);
        let mut new = old;
        f(&mut new);
        let b = new.encode();
        self.save_undo(&mut g, &raw, &old);
        for (i, a) in g.w.iter().enumerate().skip(2).take(RECORD_WORDS / 2) {
            a.store(
                u32::from_ne_bytes([b[i * 4], b[i * 4 + 1], b[i * 4 + 2], b[i * 4 + 3]]),
                Ordering::Relaxed,
            );
        }
        std::mem::forget(g);
    }

    /// The pools, in file order.
    pub fn pools(&self) -> &[PoolSpec] {
        &self.geo.pools
    }

    /// The slot with this record number, if in range.
    pub fn slot(&self, index: u32) -> Option<Slot> {
        (index < self.geo.total).then_some(Slot(index))
    }

    /// The record of an address, if it is in a pool. O(log pools).
    #[inline]
    pub fn slot_of(&self, ip: Ipv4Addr) -> Option<Slot> {
        self.geo.slot_of(u32::from(ip)).map(Slot)
    }

    /// The address of a slot (no record access).
    #[inline]
    pub fn addr_of(&self, slot: Slot) -> Ipv4Addr {
        Ipv4Addr::from(self.geo.addr_of(slot.0))
    }

    /// Id of the pool holding `slot`.
    #[inline]
    pub fn pool_of_slot(&self, slot: Slot) -> u32 {
        self.geo.pools[self.pool_idx_of_slot(slot.0)].id
    }

    /// A consistent copy of the record (seqlock read; never blocks writers).
    #[inline]
    pub fn read(&self, slot: Slot) -> Lease {
        self.decode_at(slot.0, &self.read_bytes(slot.0))
    }

    /// The record bound to `key`: its key equals `key` and its state is one
    /// of Offered, Active, Expired, Released, Reserved. The copy returned is a
    /// snapshot; re-check it inside `update` before acting on it.
    pub fn find_client(&self, key: &ClientKey) -> Option<(Slot, Lease)> {
        if key.is_none() {
            return None;
        }
        let pos = IndexPos::of(self.seed, key);
        let s = {
            let ht = read_lock(&self.index[pos.shard]);
            let same = |x: &u64| entry_tag(*x) == pos.tag && self.key_at(entry_slot(*x)) == *key;
            entry_slot(*ht.find(pos.hash(), same)?)
        };
        let l = self.read(Slot(s));
        (l.client == *key && l.state.binds_client()).then_some((Slot(s), l))
    }

    /// Takes a free address of `pool` for `owner` (Primary: Free, Released,
    /// or Expired with `expiry <= now`; Backup: Backup) from `shard`'s list,
    /// stealing from other shards when it is empty. Under the record lock it
    /// re-checks that the record is still free, then runs `f` on it (with
    /// `shard` already set); `f` must move it out of the free states, normally
    /// to Offered with the client's key. Returns `None` when the pool (or the
    /// id) has no free address. Never scans the table.
    pub fn allocate<R>(
        &self,
        pool: u32,
        shard: usize,
        now: u32,
        owner: Owner,
        f: impl FnOnce(&mut Lease) -> R,
    ) -> Option<(Slot, R)> {
        match self.allocate_if(pool, shard, now, owner, |l| Some(f(l))) {
            Alloc::Taken(slot, r) => Some((slot, r)),
            Alloc::Refused | Alloc::Empty => None,
        }
    }

    /// Like [`allocate`](Self::allocate), but `f` may refuse the record (return
    /// `None`, leaving it unchanged): it then goes back to the tail of its free
    /// list and `Alloc::Refused` is returned. Failover uses this to skip
    /// released/expired addresses the partner has not acknowledged yet.
    /// Callers bound their retries (every refusal requeues the address).
    pub fn allocate_if<R>(
        &self,
        pool: u32,
        shard: usize,
        now: u32,
        owner: Owner,
        f: impl FnOnce(&mut Lease) -> Option<R>,
    ) -> Alloc<R> {
        let Some(p) = self.pool_idx(pool) else {
            return Alloc::Empty;
        };
        let shard = shard % self.shards;
        let (slot, mut g, raw, old) = loop {
            let Some(slot) = self.pop_free(p, shard, owner) else {
                self.note_exhausted(owner);
                return Alloc::Empty;
            };
            let g = self.lock_record(slot);
            let raw = g.bytes();
            let old = self.decode_at(slot, &raw);
            let usable = old.state.is_free_for(owner)
                && !old.is_quarantined()
                && !(old.state == LeaseState::Expired && old.expiry > now);
            if usable {
                break (slot, g, raw, old);
            }
            // Stale list entry (the record was bound meanwhile): drop it.
        };
        let mut new = old;
        new.shard = shard as u16;
        let Some(r) = f(&mut new) else {
            drop(g);
            self.push_free(p, slot, owner);
            return Alloc::Refused;
        };
        self.apply_locked(slot, &mut g, &raw, &old, &mut new);
        drop(g);
        self.reindex(slot, &old.client, &new.client);
        Alloc::Taken(Slot(slot), r)
    }

    /// True when some allocation for `owner` found a pool's free lists empty since the last
    /// call (then cleared). Also set when stealing from other shards failed only because their
    /// lists were busy, so treat it as a hint to look at [`pool_stats`](Self::pool_stats).
    pub fn take_exhausted(&self, owner: Owner) -> bool {
        self.exhausted[owner.idx()].swap(false, Ordering::Relaxed)
    }

    /// Packet path: a plain load first, so an exhausted pool does not make every worker write
    /// the same cache line on every DISCOVER.
    fn note_exhausted(&self, owner: Owner) {
        let f = &self.exhausted[owner.idx()];
        if !f.load(Ordering::Relaxed) {
            f.store(true, Ordering::Relaxed);
        }
    }

    /// Changes one record under its lock: `f` sees the current record and may
    /// change anything but the address. Counters, client index and free
    /// lists follow: a record that becomes Free/Released/Expired (or Backup)
    /// goes back on its home shard's free list for its owner. Unchanged
    /// records are not rewritten. The write is in the page cache at return;
    /// it is durable after `flush`/`flush_set`.
    pub fn update<R>(&self, slot: Slot, f: impl FnOnce(&mut Lease) -> R) -> R {
        self.update_tracked(slot, f).0
    }

    /// [`update`](Self::update), also saying whether the record changed (an
    /// unchanged record was not rewritten, so nobody needs telling).
    pub fn update_tracked<R>(&self, slot: Slot, f: impl FnOnce(&mut Lease) -> R) -> (R, bool) {
        let mut g = self.lock_record(slot.0);
        let raw = g.bytes();
        let old = self.decode_at(slot.0, &raw);
        let mut new = old;
        let r = f(&mut new);
        let changed = self.apply_locked(slot.0, &mut g, &raw, &old, &mut new);
        drop(g);
        self.reindex(slot.0, &old.client, &new.client);
        (r, changed)
    }

    /// Background expiry: visits up to `budget` records from a persistent
    /// cursor. Offered/Active with `expiry <= now` become Expired (free again,
    /// client key kept so the client can get it back); Declined whose
    /// quarantine (`expiry`) ended become Free; free records missing from the
    /// free lists are put back. Each change is a normal per-record update, so
    /// workers are never stalled.
    pub fn sweep_expired(&self, now: u32, budget: usize) -> SweepResult {
        let n = u64::from(self.geo.total);
        let mut r = SweepResult::default();
        for _ in 0..(budget as u64).min(n) {
            let c = self.sweep_cursor.fetch_add(1, Ordering::Relaxed);
            let slot = (c % n) as u32;
            if u64::from(slot) == n - 1 {
                r.wrapped = true;
            }
            r.scanned += 1;
            let l = self.read(Slot(slot));
            match l.state {
                LeaseState::Active | LeaseState::Offered if l.expiry <= now => {
                    let done = self.update(Slot(slot), |l| {
                        let go = matches!(l.state, LeaseState::Active | LeaseState::Offered)
                            && l.expiry <= now;
                        if go {
                            l.state = LeaseState::Expired;
                        }
                        go
                    });
                    r.expired += usize::from(done);
                }
                LeaseState::Declined if l.expiry <= now => {
                    let done = self.update(Slot(slot), |l| {
                        let go = l.state == LeaseState::Declined && l.expiry <= now;
                        if go {
                            l.state = LeaseState::Free;
                            l.clear_binding();
                        }
                        go
                    });
                    r.unquarantined += usize::from(done);
                }
                s => {
                    if let Some(o) = s.free_list_owner() {
                        if !l.is_quarantined() && !self.free_bit(o, slot) {
                            let p = self.pool_idx_of_slot(slot);
                            r.relisted += usize::from(self.push_free(p, slot, o));
                        }
                    }
                }
            }
        }
        r
    }

    /// Makes every change so far durable (`msync(MS_SYNC)` over the whole
    /// mapping; the kernel writes only dirty pages). For the interval mode.
    pub fn flush(&self) -> io::Result<()> {
        self.map.flush()
    }

    /// Makes the records in `set` durable (one `msync(MS_SYNC)` over their
    /// page range) and clears the set: group commit for one worker batch.
    pub fn flush_set(&self, set: &mut DirtySet) -> io::Result<()> {
        if set.is_empty() {
            return Ok(());
        }
        let off = self.header_len + set.lo as usize * RECORD_SIZE;
        let len = (set.hi - set.lo) as usize * RECORD_SIZE + RECORD_SIZE;
        self.map.flush_range(off, len)?;
        set.clear();
        Ok(())
    }

    /// Counters of one pool (by id); `None` for an unknown id.
    pub fn pool_stats(&self, pool: u32) -> Option<PoolStats> {
        let p = self.pool_idx(pool)?;
        let rt = &self.rt[p];
        let mut c = [0u64; LeaseState::COUNT];
        for (d, s) in c.iter_mut().zip(rt.counts.iter()) {
            *d = s.load(Ordering::Relaxed);
        }
        Some(PoolStats::from_counts(
            pool,
            self.geo.pools[p].len(),
            &c,
            rt.quarantined.load(Ordering::Relaxed),
        ))
    }

    /// Counters of every pool, in file order.
    pub fn all_stats(&self) -> Vec<PoolStats> {
        self.geo
            .pools
            .iter()
            .filter_map(|p| self.pool_stats(p.id))
            .collect()
    }

    /// Counts one pool by reading all its records (for checks and tools).
    pub fn recount(&self, pool: u32) -> Option<PoolStats> {
        let p = self.pool_idx(pool)?;
        let base = self.geo.bases[p];
        let n = self.geo.pools[p].len() as u32;
        let mut c = [0u64; LeaseState::COUNT];
        let mut q = 0;
        for s in base..base + n {
            let l = self.read(Slot(s));
            c[l.state as usize] += 1;
            q += u64::from(l.is_quarantined());
        }
        Some(PoolStats::from_counts(pool, u64::from(n), &c, q))
    }

    /// Every record in slot order (seqlock copies).
    pub fn iter(&self) -> impl Iterator<Item = (Slot, Lease)> + '_ {
        (0..self.geo.total).map(move |i| (Slot(i), self.read(Slot(i))))
    }

    // ------------------------------------------------------------ failover area

    /// The header bytes. Callers hold `header_lock` (or are inside `open`).
    fn header_bytes(&self) -> &[u8] {
        // SAFETY: the header lies below the first record, is inside the map,
        // and after open is only accessed under `header_lock`.
        unsafe { std::slice::from_raw_parts(self.map.as_ptr(), self.header_len - UNDO_LEN) }
    }

    /// The failover state last stored with `set_failover_area` (empty if
    /// never set, or if both copies were damaged: see `OpenReport`).
    pub fn failover_area(&self) -> Vec<u8> {
        let _g = lock(&self.header_lock);
        header::read_failover(self.header_bytes()).unwrap_or_default()
    }

    /// Stores up to [`FAILOVER_CAPACITY`] bytes of failover state durably
    /// (double-buffered with a checksum, msync before returning).
    pub fn set_failover_area(&self, bytes: &[u8]) -> Result<(), StoreError> {
        if bytes.len() > FAILOVER_CAPACITY {
            return Err(StoreError::FailoverAreaTooLarge {
                len: bytes.len(),
                cap: FAILOVER_CAPACITY,
            });
        }
        let _g = lock(&self.header_lock);
        // SAFETY: as for header_bytes; we hold header_lock so nobody else
        // reads or writes the header while this exclusive slice lives.
        let h = unsafe {
            std::slice::from_raw_parts_mut(self.map.as_mut_ptr(), self.header_len - UNDO_LEN)
        };
        let (off, len) = header::write_failover(h, bytes);
        self.map
            .flush_range(off, len)
            .map_err(|e| StoreError::io(&self.path, "msync failover area", e))
    }
}

// ---------------------------------------------------------------- file helpers

/// Opens the file read-write, takes the exclusive flock, and makes sure the
/// locked file is still the one at `path`. Returns (file, is empty).
fn open_locked(path: &Path, create: bool) -> Result<(File, bool), StoreError> {
    for _ in 0..5 {
        let exists = match fs::metadata(path) {
            Ok(_) => true,
            Err(e) if e.kind() == io::ErrorKind::NotFound => false,
            Err(e) => return Err(StoreError::io(path, "stat", e)),
        };
        if !exists {
            if !create {
                return Err(StoreError::format(
                    path,
                    "does not exist (and creating it is switched off)",
                ));
            }
            if let Some(parent) = path.parent().filter(|p| !p.as_os_str().is_empty()) {
                if !parent.is_dir() {
                    return Err(StoreError::format(
                        path,
                        format!(
                            "cannot create the lease file: directory {} does not exist",
                            parent.display()
                        ),
                    ));
                }
            }
        }
        let file = fs::OpenOptions::new()
            .read(true)
            .write(true)
            .create(create)
            .truncate(false)
            .open(path)
            .map_err(|e| StoreError::io(path, if exists { "open" } else { "create" }, e))?;
        // A process forked by another thread of ours shares the lock until it execs (our
        // descriptors are close-on-exec), so a busy lock is retried briefly before it counts as
        // held by someone else (a test binary reopening a table hit that window).
        let mut tries = 0;
        loop {
            // SAFETY: plain syscall on a valid descriptor.
            if unsafe { libc::flock(file.as_raw_fd(), libc::LOCK_EX | libc::LOCK_NB) } == 0 {
                break;
            }
            let e = io::Error::last_os_error();
            if e.raw_os_error() != Some(libc::EWOULDBLOCK) {
                return Err(StoreError::io(path, "flock", e));
            }
            tries += 1;
            if tries >= 20 {
                return Err(StoreError::Locked {
                    path: path.to_path_buf(),
                });
            }
            std::thread::sleep(std::time::Duration::from_millis(10));
        }
        let mine = file
            .metadata()
            .map_err(|e| StoreError::io(path, "stat", e))?;
        match fs::metadata(path) {
            Ok(now) if now.dev() == mine.dev() && now.ino() == mine.ino() => {
                return Ok((file, mine.len() == 0));
            }
            // Replaced (rebuilt by a previous owner) between open and flock: retry.
            _ => continue,
        }
    }
    Err(StoreError::format(
        path,
        "the file keeps being replaced while opening it",
    ))
}

/// Sizes a new file for `geo` (preallocated so later flushes need no block
/// allocation where the filesystem supports it) and writes its header.
fn init_file(file: &File, path: &Path, geo: &Geometry, created: u64) -> Result<(), StoreError> {
    let len = geo.file_len();
    file.set_len(len)
        .map_err(|e| StoreError::io(path, "set file length", e))?;
    preallocate(file, len);
    let mut h = vec![0u8; geo.header_len()];
    header::write_header(&mut h, geo, created);
    file.write_all_at(&h, 0)
        .map_err(|e| StoreError::io(path, "write header", e))?;
    file.sync_all()
        .map_err(|e| StoreError::io(path, "fsync", e))?;
    sync_dir(path)
}

fn preallocate(file: &File, len: u64) {
    let Ok(len) = libc::off_t::try_from(len) else {
        return;
    };
    // SAFETY: plain syscall on a valid descriptor. Failure (e.g. tmpfs without
    // support) only means blocks are allocated on first write.
    let rc = unsafe { libc::fallocate(file.as_raw_fd(), 0, 0, len) };
    if rc != 0 {
        tracing::debug!("fallocate: {}", io::Error::last_os_error());
    }
}

fn sync_dir(path: &Path) -> Result<(), StoreError> {
    let dir = match path.parent().filter(|p| !p.as_os_str().is_empty()) {
        Some(d) => d,
        None => Path::new("."),
    };
    File::open(dir)
        .and_then(|d| d.sync_all())
        .map_err(|e| StoreError::io(dir, "fsync directory", e))
}

/// Rewrites the file for a new pool geometry, keeping records by address.
fn rebuild(
    path: &Path,
    old: &[u8],
    hdr: &FileHeader,
    geo: &Geometry,
    opts: &OpenOptions,
    report: &mut OpenReport,
) -> Result<(), StoreError> {
    let og = &hdr.geo;
    let mut undo = UndoMap::new();
    for i in 0..UNDO_SLOTS {
        let o = hdr.header_len - UNDO_LEN + i * RECORD_SIZE;
        let mut b = [0u8; RECORD_SIZE];
        b.copy_from_slice(&old[o..o + RECORD_SIZE]);
        add_undo(&mut undo, &b);
    }
    // A record torn by a crash is rolled back here as `open` would; one that
    // cannot be is copied as it is and quarantined by the scan after the rename.
    let rec = |slot: u32| -> [u8; RECORD_SIZE] {
        let o = hdr.header_len + slot as usize * RECORD_SIZE;
        let mut b = [0u8; RECORD_SIZE];
        b.copy_from_slice(&old[o..o + RECORD_SIZE]);
        let seq = u32::from_le_bytes([b[0], b[1], b[2], b[3]]);
        if seq & 1 == 1 && stored_crc_of(&b) != record_crc(&b) {
            if let Some(mut prev) = recover_from_undo(&undo, og.addr_of(slot), seq) {
                prev[0..4].copy_from_slice(&seq.wrapping_add(1).to_le_bytes());
                return prev;
            }
        }
        b
    };
    // Pass 1: live leases outside the new pools.
    let mut lost: Vec<Lease> = Vec::new();
    for slot in 0..og.total {
        if geo.slot_of(og.addr_of(slot)).is_some() {
            continue;
        }
        let b = rec(slot);
        if is_pristine(&b) || u32::from_le_bytes([b[4], b[5], b[6], b[7]]) != record_crc(&b) {
            continue;
        }
        if let Ok(l) = Lease::decode(&b) {
            if is_live(&l, opts.now) {
                lost.push(l);
            }
        }
    }
    if !lost.is_empty() && !opts.allow_shrink {
        return Err(StoreError::Shrink {
            path: path.to_path_buf(),
            count: lost.len() as u64,
            first: lost
                .iter()
                .take(LOST_LISTED)
                .map(|l| LostLease {
                    addr: l.addr,
                    state: l.state,
                    client: l.client,
                    expiry: l.expiry,
                })
                .collect(),
        });
    }
    // Pass 2: write the new file next to the old one, then rename over it.
    let mut tmp = path.as_os_str().to_owned();
    tmp.push(".rebuild");
    let tmp = PathBuf::from(tmp);
    let f = fs::OpenOptions::new()
        .read(true)
        .write(true)
        .create(true)
        .truncate(true)
        .open(&tmp)
        .map_err(|e| StoreError::io(&tmp, "create", e))?;
    let len = geo.file_len();
    f.set_len(len)
        .map_err(|e| StoreError::io(&tmp, "set file length", e))?;
    preallocate(&f, len);
    // SAFETY: `tmp` was just created by us and is not shared; nothing else
    // resizes or writes it while this mapping lives.
    let mut map =
        unsafe { MmapOptions::new().map_mut(&f) }.map_err(|e| StoreError::io(&tmp, "mmap", e))?;
    let hl = geo.header_len();
    header::write_header(&mut map[..hl], geo, hdr.created);
    header::copy_failover(&old[..hdr.header_len], &mut map[..hl]);
    let mut copied = 0u64;
    for slot in 0..og.total {
        let Some(ns) = geo.slot_of(og.addr_of(slot)) else {
            continue;
        };
        let b = rec(slot);
        if is_pristine(&b) {
            continue;
        }
        let o = hl + ns as usize * RECORD_SIZE;
        map[o..o + RECORD_SIZE].copy_from_slice(&b);
        copied += 1;
    }
    map.flush().map_err(|e| StoreError::io(&tmp, "msync", e))?;
    drop(map);
    f.sync_all().map_err(|e| StoreError::io(&tmp, "fsync", e))?;
    fs::rename(&tmp, path)
        .map_err(|e| StoreError::io(path, "rename rebuilt file into place", e))?;
    sync_dir(path)?;
    let msg = format!(
        "pools changed ({} -> {} records): {copied} used records kept, {} live lease(s) dropped",
        og.total,
        geo.total,
        lost.len()
    );
    tracing::info!(path = %path.display(), "{msg}");
    report.rebuilt = Some(msg);
    report.dropped_by_shrink = lost;
    Ok(())
}
