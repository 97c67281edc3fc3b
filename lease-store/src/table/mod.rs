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
//!
//! The file holds spare record slots after the records in use (`capacity`), mapped with
//! the rest. `grow` (a reload adding pools or growing ranges) puts new extents there: it
//! zeroes and flushes their records, writes and flushes the header, then publishes a new
//! [`Layout`] (geometry, per-pool state) through an atomic pointer, and only then lists the
//! new slots as free. Layouts are never freed before the table (a reload is rare and a
//! layout is small), so a `&Layout` loaded by a worker stays valid for `&self`'s lifetime;
//! every layout agrees on the slots and pools of the ones before it (growth only appends).
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
//!
//! # Parts
//! `open` maps and checks the file, scans every record and builds the
//! in-memory state (`file`: locking and creating the file; `rebuild`: a
//! pool change); `record`: reads and `update` under the seqlock; `undo`: the
//! copies that roll back a torn record; `index`: client -> slot; `free`: free
//! lists and allocation; `sweep`: expiry; `flush`: durability; `wal`: the
//! write-ahead log (group commit, checkpoint, replay); `stats`: per-pool
//! counters; `failover_area`: failover state in the header; `ext`: the side area of
//! variable-length lease data (option 82, host name, vendor class), one bounded extent per
//! slot in `<file>.ext`, written under the record's lock and covered by the same log.

pub(crate) mod ext;
#[cfg(test)]
mod ext_tests;
mod failover_area;
pub(crate) mod file;
pub(crate) use file::preallocate;
mod flush;
mod free;
mod grow;
mod hook;
mod index;
mod open;
mod rebuild;
mod record;
mod stats;
mod sweep;
mod undo;
pub(crate) mod wal;
#[cfg(test)]
mod wal_tests;

use std::collections::VecDeque;
use std::fs::File;
use std::net::Ipv4Addr;
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicBool, AtomicPtr, AtomicU64, Ordering};
use std::sync::{Arc, Mutex, MutexGuard, OnceLock, RwLock};
use std::time::{SystemTime, UNIX_EPOCH};

use hashbrown::HashTable;
use memmap2::MmapRaw;

use crate::header::{Geometry, PoolSpec};
use crate::lease::{LeaseState, RECORD_SIZE};

pub use ext::ext_path;
pub use flush::DirtySet;
pub use free::Alloc;
pub use grow::{GrowError, GrowReport};
pub use hook::{ChangeHook, MAX_HOOKS};
pub use open::{OpenOptions, OpenReport};
pub use record::VarEdit;
pub use stats::PoolStats;
pub use sweep::SweepResult;
pub use wal::{
    default_wal_bytes, wal_path, WalStats, COMMIT_LATENCY_BOUNDS_US, DEFAULT_WAL_BYTES, MAX_ENTRY,
    MIN_WAL_BYTES,
};

#[cfg(target_endian = "big")]
compile_error!(
    "lease-store maps its little-endian file directly; big-endian hosts are not supported"
);

/// Index of one record (one address). Only the table hands these out.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct Slot(u32);

impl Slot {
    /// Record number in the file (0-based, pools in configuration order).
    pub fn index(self) -> u32 {
        self.0
    }
}

/// Per-pool in-memory state: counters by state and the free lists.
struct PoolRt {
    counts: [AtomicU64; LeaseState::COUNT],
    quarantined: AtomicU64,
    /// Free lists by owner then home shard. FIFO: pop front, push back.
    free: [Vec<Mutex<VecDeque<u32>>>; 2],
}

/// The table's shape: geometry and per-pool state. Replaced (never changed) by `grow`.
struct Layout {
    geo: Geometry,
    /// Per pool (index in `geo.pools`); shared with later layouts.
    rt: Vec<Arc<PoolRt>>,
    /// (pool id, pool index) sorted by id.
    by_id: Vec<(u32, u32)>,
}

impl Layout {
    fn new(geo: Geometry, rt: Vec<Arc<PoolRt>>) -> Self {
        let mut by_id: Vec<(u32, u32)> = geo
            .pools
            .iter()
            .enumerate()
            .map(|(i, p)| (p.id, i as u32))
            .collect();
        by_id.sort_unstable();
        Layout { geo, rt, by_id }
    }
}

impl PoolRt {
    fn new(len: u64, shards: usize) -> Self {
        let home = (len as usize).div_ceil(shards);
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
    }
}

fn lock<T>(m: &Mutex<T>) -> MutexGuard<'_, T> {
    // A panic elsewhere cannot leave a VecDeque/HashMap in a state unsafe to use.
    m.lock().unwrap_or_else(|e| e.into_inner())
}

/// Current unix time in seconds (saturating into u32).
pub fn unix_now() -> u32 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map(|d| d.as_secs().min(u64::from(u32::MAX)) as u32)
        .unwrap_or(0)
}

/// The lease table. `Send + Sync`; share it with `Arc`.
pub struct LeaseTable {
    path: PathBuf,
    /// Kept open: holds the flock for the table's lifetime.
    _file: File,
    map: MmapRaw,
    header_len: usize,
    /// The current layout: points into `layouts` (see the module documentation).
    layout: AtomicPtr<Layout>,
    /// Every layout this table had, freed with the table. Locked by `grow` only.
    layouts: Mutex<Vec<Arc<Layout>>>,
    /// Record slots the mapping holds (records in use and spare ones).
    capacity: u32,
    /// The header's creation time (rewritten as it was by `grow`).
    created: u64,
    /// The file's identity (`identity.rs`; set at open for a file of an older version).
    id: [u8; crate::header::ID_BYTES],
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
    /// Sticky storage errors (see `flush`).
    flush_state: flush::FlushState,
    /// The write-ahead log (`OpenOptions::wal`).
    wal: Option<wal::Wal>,
    /// The change hooks (`hook.rs`), told of every record change under its lock; filled
    /// from the first.
    hooks: [OnceLock<Arc<dyn ChangeHook>>; hook::MAX_HOOKS],
    /// The side area of variable-length lease data (`ext.rs`).
    side: ext::SideArea,
    /// Some change hook reads the records' variable data (`ChangeHook::wants_var`).
    var_hooks: AtomicBool,
}

impl std::fmt::Debug for LeaseTable {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        let geo = self.geo();
        f.debug_struct("LeaseTable")
            .field("path", &self.path)
            .field("records", &geo.total)
            .field("capacity", &self.capacity)
            .field("pools", &geo.pools)
            .field("shards", &self.shards)
            .finish()
    }
}

impl Drop for LeaseTable {
    fn drop(&mut self) {
        // The layouts are freed by `layouts`; nothing may use the pointer after this.
        *self.layout.get_mut() = std::ptr::null_mut();
    }
}

impl LeaseTable {
    /// The current layout (one atomic load).
    #[inline]
    fn layout(&self) -> &Layout {
        // SAFETY: the pointer always comes from `Arc::as_ptr` of a layout held by
        // `self.layouts`, which drops none of them before the table is dropped, and layouts
        // are never written after they are published (see the module documentation).
        unsafe { &*self.layout.load(Ordering::Acquire) }
    }

    #[inline]
    fn geo(&self) -> &Geometry {
        &self.layout().geo
    }

    /// Per-pool state of pool index `p` (valid in every later layout).
    #[inline]
    fn rt(&self, p: usize) -> &PoolRt {
        &self.layout().rt[p]
    }

    #[inline]
    fn pool_idx_of_slot(&self, slot: u32) -> usize {
        self.geo().pool_idx_of_slot(slot)
    }

    fn pool_idx(&self, pool: u32) -> Option<usize> {
        let l = self.layout();
        l.by_id
            .binary_search_by_key(&pool, |e| e.0)
            .ok()
            .map(|i| l.by_id[i].1 as usize)
    }

    /// Record slots the file holds: the records in use plus the spare ones a reload can add
    /// pools or grown ranges into without a restart.
    pub fn capacity(&self) -> u32 {
        self.capacity
    }

    /// Spare record slots left for [`grow`](Self::grow).
    pub fn spare(&self) -> u32 {
        self.capacity - self.geo().total
    }

    /// The pool table's entries in file order: a pool's own range, plus one entry per range a
    /// reload added to it.
    pub fn extents(&self) -> &[PoolSpec] {
        &self.geo().extents
    }

    /// The file this table maps.
    pub fn path(&self) -> &Path {
        &self.path
    }

    /// Number of records (addresses in all pools).
    pub fn len(&self) -> u32 {
        self.geo().total
    }

    /// True when the table has no records (never, since open needs a pool).
    pub fn is_empty(&self) -> bool {
        self.geo().total == 0
    }

    /// Number of free-list shards.
    pub fn shards(&self) -> usize {
        self.shards
    }

    /// Byte offset of a slot's record in the file (for tools and tests).
    pub fn record_offset(&self, slot: Slot) -> u64 {
        self.header_len as u64 + u64::from(slot.0) * RECORD_SIZE as u64
    }

    /// The pools, in file order (each with its whole range, grown ones included).
    pub fn pools(&self) -> &[PoolSpec] {
        &self.geo().pools
    }

    /// The slot with this record number, if in range.
    pub fn slot(&self, index: u32) -> Option<Slot> {
        (index < self.geo().total).then_some(Slot(index))
    }

    /// The record of an address, if it is in a pool. O(log pools).
    #[inline]
    pub fn slot_of(&self, ip: Ipv4Addr) -> Option<Slot> {
        self.geo().slot_of(u32::from(ip)).map(Slot)
    }

    /// The address of a slot (no record access).
    #[inline]
    pub fn addr_of(&self, slot: Slot) -> Ipv4Addr {
        Ipv4Addr::from(self.geo().addr_of(slot.0))
    }

    /// Id of the pool holding `slot`.
    #[inline]
    pub fn pool_of_slot(&self, slot: Slot) -> u32 {
        let geo = self.geo();
        geo.pools[geo.pool_idx_of_slot(slot.0)].id
    }
}
