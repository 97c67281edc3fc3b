//! Opening a table: map the file, check the header, rebuild the file when
//! the pools changed, then scan every record (repair, quarantine, count) and
//! build the client index and free lists from it.

use std::collections::hash_map::RandomState;
use std::fs::File;
use std::hash::BuildHasher;
use std::net::Ipv4Addr;
use std::path::Path;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::{Arc, Mutex, RwLock};
use std::time::{Duration, Instant};

use hashbrown::HashTable;
use memmap2::{MmapOptions, MmapRaw};

use super::ext::SideArea;
use super::file::{capacity_for, init_file, open_locked, preallocate};
use super::index::{write_lock, IndexPos, INDEX_SHARDS};
use super::rebuild::{finish_rebuild, rebuild};
use super::record::{load_words, store_body};
use super::undo::{is_pristine, recover_from_undo, stored_crc_of, UndoMap};
use super::wal::{self, apply_entry, Replay, Staged, Wal};
use super::{lock, unix_now, Layout, LeaseTable, PoolRt};
use crate::error::StoreError;
use crate::header::{self, Geometry, PoolSpec, ValidHeader, ID_BYTES, UNDO_SLOTS};
use crate::identity::{self, TableId};
use crate::lease::{
    record_crc, ClientKey, Lease, LeaseState, Owner, SideRef, VarRef, FLAG_QUARANTINED,
};

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
    /// Keep a write-ahead log of record changes with a ring of this many bytes (`commit`
    /// appends to it, `checkpoint` writes the table back); `None`: no log (`flush_set` and
    /// `commit` msync the mapping). A log left by an earlier run is replayed either way (and
    /// removed when the log is off).
    pub wal: Option<u64>,
    /// Spare record slots the file keeps beyond its records, for pools and grown ranges a
    /// reload adds ([`LeaseTable::grow`]). A new or rebuilt file gets them; an existing file
    /// with fewer is lengthened at open. Default 0.
    pub spare: u32,
}

impl Default for OpenOptions {
    fn default() -> Self {
        OpenOptions {
            shards: 1,
            create: true,
            allow_shrink: false,
            now: unix_now(),
            wal: None,
            spare: 0,
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
    /// Valid write-ahead log entries read at open, and how many of them were newer than (or
    /// repaired a damaged) table record and were applied.
    pub wal_entries: u64,
    pub wal_applied: u64,
    /// Why the log replay stopped at a damaged entry (a torn or partial write, discarded).
    pub wal_discarded: Option<String>,
    /// Leases whose variable data (option 82, host name, vendor class) in the side area did
    /// not match their record (a torn write): the lease is kept without it.
    pub side_dropped: Vec<(Ipv4Addr, String)>,
}

/// The write-ahead log as found at open.
struct LogAtOpen {
    path: std::path::PathBuf,
    replay: Replay,
    /// Valid entries, sorted by slot.
    entries: Vec<Staged>,
    /// The table's identity: the file's, or a new one when the file has none yet (a file
    /// of an older version: written into its header once the log has been restarted).
    id: TableId,
    /// The file has no identity yet.
    assign_id: bool,
}

/// After the replayed records are durable: restarts the log (ack mode) of the table with
/// identity `id`, or removes it.
fn finish_log(
    path: &Path,
    opts: &OpenOptions,
    replay: &Replay,
    id: TableId,
) -> Result<Option<Wal>, StoreError> {
    match opts.wal {
        Some(cap) => Wal::start(path, cap, replay, id).map(Some),
        None => wal::retire(path, replay).map(|()| None),
    }
}

/// The lease table's 12 identity bytes of `id`.
fn id12(id: &TableId) -> [u8; ID_BYTES] {
    let mut b = [0u8; ID_BYTES];
    b.copy_from_slice(&id[..ID_BYTES]);
    b
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
    /// Records changed by write-ahead log entries.
    applied: u64,
    /// Records the scan repaired or quarantined (not from the log, not a reset to pristine).
    relog: Vec<u32>,
    /// Index entries of keyed records, by index shard, in slot order.
    keyed: Vec<Vec<u64>>,
    side_dropped: Vec<(Ipv4Addr, String)>,
}

impl LeaseTable {
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
        for _ in 0..4 {
            let (file, empty) = open_locked(path, opts.create)?;
            // A rebuild cut between its two renames is finished first (under the lock).
            if finish_rebuild(path)? {
                continue;
            }
            if empty {
                init_file(&file, path, &geo, opts.spare, u64::from(opts.now))?;
                report.created = true;
            }
            let len = file
                .metadata()
                .map_err(|e| StoreError::io(path, "stat", e))?
                .len();
            // Every block present before the mapping is used (see `preallocate`).
            preallocate(&file, path, len)?;
            let len = usize::try_from(len).map_err(|_| {
                StoreError::format(path, format!("{len} bytes is too large to map"))
            })?;
            // Prefault the whole file in one go: much cheaper than a page
            // fault per page during the scan. (Reading ahead from a helper thread with
            // MADV_WILLNEED while the log is read showed no clear gain here: RESULTS.md,
            // "Issue 18: cold open of 10M leases".)
            let tm = Instant::now();
            let map = MmapOptions::new()
                .populate()
                .map_raw(&file)
                .map_err(|e| StoreError::io(path, "mmap", e))?;
            report.phases.push(("map", tm.elapsed()));
            // SAFETY: nothing else accesses the mapping yet (we hold the flock and
            // have not shared it); `len` is the mapped length.
            let whole = unsafe { std::slice::from_raw_parts(map.as_ptr(), len) };
            let hdr = header::parse_header(whole, len as u64, path)?;
            let side = SideArea::open(path, hdr.capacity)?;
            // The write-ahead log's entries, applied before anything reads the records: by
            // the scan below (in slot order), or here when the file is about to be rebuilt.
            let tr = Instant::now();
            let log_path = wal::wal_path(path);
            let (replay, entries) = wal::read_log(&log_path, hdr.geo.total, side.log_ids())?;
            // A log of another table file is never replayed (`identity.rs`).
            let file_id = header::table_id(&hdr.id);
            // (No log file, or none with a valid header: nothing of another table.)
            if replay.hdr.is_some() {
                identity::check_log(path, &log_path, file_id, replay.id, replay.entries)?;
            }
            let id = file_id.unwrap_or_else(|| identity::new_id(ID_BYTES));
            // Side chunks first (the scan checks records against them); only a log of this
            // table (checked just above) is applied.
            let side_applied = side.apply_log(&entries);
            if side_applied > 0 {
                side.flush().map_err(|e| {
                    StoreError::io(side.path(), "msync side area after the log replay", e)
                })?;
            }
            report.wal_applied += side_applied;
            if let Some(why) = &replay.discarded {
                tracing::warn!(path = %log_path.display(), "write-ahead log: {why}");
            }
            report.wal_entries += replay.entries;
            report.wal_discarded = replay.discarded.clone();
            report.phases.push(("log read", tr.elapsed()));
            if hdr.geo.pools != geo.pools {
                // (A file whose ranges a reload grew holds them as extra extents of the same
                // pools: the same pools, no rebuild.)
                // SAFETY: parse_header checked that the file holds header_len + total records;
                // nothing else uses the mapping now (`whole` is made again below).
                let applied = unsafe {
                    wal::apply_all(
                        map.as_mut_ptr().add(hdr.header_len),
                        hdr.geo.total,
                        &entries,
                    )
                };
                report.wal_applied += applied;
                if applied > 0 {
                    map.flush()
                        .map_err(|e| StoreError::io(path, "msync after the log replay", e))?;
                }
                // The log is covered by the table now (the rebuild reads it from there).
                finish_log(&log_path, opts, &replay, id)?;
                // SAFETY: as above; the replay is done.
                let whole = unsafe { std::slice::from_raw_parts(map.as_ptr(), len) };
                rebuild(
                    path,
                    whole,
                    &hdr,
                    &geo,
                    opts,
                    &mut report,
                    &id12(&id),
                    &side,
                )?;
                continue; // reopen the rewritten file
            }
            let want = capacity_for(&hdr.geo, opts.spare);
            if hdr.capacity < want {
                // Fewer spare record slots than configured: lengthen the file (the records
                // stay where they are) and say so in the header, then map it again.
                let mut h = whole[..hdr.header_len].to_vec();
                drop(map);
                let new_len = Geometry::file_len_for(hdr.header_len, want);
                file.set_len(new_len)
                    .map_err(|e| StoreError::io(path, "lengthen for spare records", e))?;
                preallocate(&file, path, new_len)?;
                header::write_header(&mut h, &hdr.geo, hdr.created, hdr.header_len, want, &hdr.id);
                std::os::unix::fs::FileExt::write_all_at(&file, &h, 0)
                    .map_err(|e| StoreError::io(path, "write header", e))?;
                file.sync_all()
                    .map_err(|e| StoreError::io(path, "fsync", e))?;
                tracing::info!(
                    path = %path.display(),
                    "lease file lengthened: {} -> {want} record slots ({} spare for reloads)",
                    hdr.capacity,
                    want - hdr.geo.total
                );
                continue;
            }
            let need = Geometry::file_len_for(hdr.header_len, hdr.capacity);
            if len as u64 > need {
                tracing::warn!(
                    path = %path.display(),
                    "lease file is {len} bytes, geometry needs {need}; ignoring the trailing bytes"
                );
            }
            let log = LogAtOpen {
                path: log_path,
                replay,
                entries,
                id,
                assign_id: file_id.is_none(),
            };
            let table = Self::build(path, file, map, hdr, opts, &mut report, log, side)?;
            report.elapsed = start.elapsed();
            return Ok((table, report));
        }
        Err(StoreError::format(
            path,
            "pool geometry still differs after rewriting the file (is another program replacing it?)",
        ))
    }

    #[allow(clippy::too_many_arguments)]
    fn build(
        path: &Path,
        file: File,
        map: MmapRaw,
        hdr: ValidHeader,
        opts: &OpenOptions,
        report: &mut OpenReport,
        log: LogAtOpen,
        side: SideArea,
    ) -> Result<Self, StoreError> {
        let t_build = Instant::now();
        let shards = opts.shards.max(1);
        let geo = hdr.geo;
        let nrec = geo.total as usize;
        let rt: Vec<Arc<PoolRt>> = geo
            .pools
            .iter()
            .map(|p| Arc::new(PoolRt::new(p.len(), shards)))
            .collect();
        let bits = (hdr.capacity as usize).div_ceil(64);
        let first = Arc::new(Layout::new(geo, rt));
        // Never written through: the layouts are read-only once published.
        let layout = std::sync::atomic::AtomicPtr::new(Arc::as_ptr(&first).cast_mut());
        let mut table = LeaseTable {
            path: path.to_path_buf(),
            _file: file,
            map,
            header_len: hdr.header_len,
            layout,
            layouts: Mutex::new(vec![first]),
            capacity: hdr.capacity,
            created: hdr.created,
            id: id12(&log.id),
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
            flush_state: super::flush::FlushState::default(),
            // Started once the replayed records are durable (below).
            wal: None,
            hooks: std::array::from_fn(|_| std::sync::OnceLock::new()),
            side,
            var_hooks: AtomicBool::new(false),
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
                    let entries = &log.entries;
                    s.spawn(move || table.scan(lo, hi, undo, entries))
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
        let mut relog = Vec::new();
        for (p, prt) in table.layout().rt.iter().enumerate() {
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
            for (p, prt) in table.layout().rt.iter().enumerate() {
                for (c, n) in prt.counts.iter().zip(out.counts[p].iter()) {
                    c.fetch_add(*n, Ordering::Relaxed);
                }
                prt.quarantined
                    .fetch_add(out.quarantined_n[p], Ordering::Relaxed);
            }
            report.quarantined.extend(out.quarantined);
            report.repaired.extend(out.repaired);
            report.side_dropped.extend(out.side_dropped);
            report.kept += out.kept;
            report.wal_applied += out.applied;
            wrote |= out.wrote;
            relog.extend(out.relog);
        }
        for (addr, why) in &report.quarantined {
            tracing::warn!(path = %path.display(), %addr, "quarantined lease record: {why}");
        }
        for (addr, why) in &report.repaired {
            tracing::warn!(path = %path.display(), %addr, "repaired lease record: {why}");
        }
        for (addr, why) in &report.side_dropped {
            tracing::warn!(path = %path.display(), %addr, "lease kept without its option 82 / host name / vendor class: {why}");
        }
        report
            .phases
            .push(("free lists and counters", t_phase.elapsed()));
        let t_phase = Instant::now();
        if log.replay.entries > 0 {
            tracing::info!(
                path = %log.path.display(),
                "write-ahead log replayed: {} entries, {} records applied",
                log.replay.entries,
                report.wal_applied
            );
        }
        // With a log that can go on (ours, same size): it stays the record of what the table's
        // pages may not hold yet, so nothing is flushed here (the checkpointer writes the
        // table back later, as after any commit); the records the scan repaired join it.
        // Otherwise the table is flushed (when the open wrote anything) and the log starts a
        // fresh lap past everything in it (or goes).
        let resumed = match opts.wal {
            Some(cap) if !log.assign_id => Wal::resume(&log.path, cap, &log.replay, log.id)?,
            _ => None,
        };
        if let Some(w) = resumed {
            for &slot in &relog {
                w.stage(slot, &load_words(table.words(slot)));
            }
            table.wal = Some(w);
            if !relog.is_empty() {
                table.commit().map_err(|e| {
                    StoreError::io(&log.path, "log the records repaired at open", e)
                })?;
            }
            report
                .phases
                .push(("finish: log resume", t_phase.elapsed()));
            // The undo copies served their purpose (records are consistent and their repairs
            // durable now). Stale copies are harmless (`recover_from_undo` matches a torn
            // record's sequence), so clearing them need not be durable at once.
            let t_sub = Instant::now();
            for i in 0..UNDO_SLOTS {
                for a in table.undo_words(i) {
                    a.store(0, Ordering::Relaxed);
                }
            }
            report.phases.push(("finish: undo clear", t_sub.elapsed()));
        } else {
            // The undo copies served their purpose (records are consistent now).
            for i in 0..UNDO_SLOTS {
                for a in table.undo_words(i) {
                    if a.swap(0, Ordering::Relaxed) != 0 {
                        wrote = true;
                    }
                }
            }
            report
                .phases
                .push(("finish: undo clear", t_phase.elapsed()));
            let t_sub = Instant::now();
            if wrote {
                table
                    .flush()
                    .map_err(|e| StoreError::io(path, "msync after repairs", e))?;
            }
            report.phases.push(("finish: msync", t_sub.elapsed()));
            let t_sub = Instant::now();
            // The replayed records are durable now: the log starts a fresh lap (or goes).
            table.wal = finish_log(&log.path, opts, &log.replay, log.id)?;
            if log.assign_id {
                // A file of an older version gets its identity now that its log carries it (in
                // this order: a crash between the two leaves a log with nothing to replay).
                table.write_id()?;
                tracing::info!(path = %path.display(), "lease file given its identity {}", identity::show(Some(log.id)));
            }
            report.phases.push(("finish: log restart", t_sub.elapsed()));
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

    /// Writes the table's identity into the header (fixed fields only) and flushes it.
    fn write_id(&self) -> Result<(), StoreError> {
        let npools = self.geo().extents.len();
        {
            let _g = lock(&self.header_lock);
            let hlen = self.header_len - header::UNDO_LEN;
            // SAFETY: the header lies below the first record and inside the map; we hold
            // header_lock, so nobody else reads or writes it while this slice lives.
            let h = unsafe { std::slice::from_raw_parts_mut(self.map.as_mut_ptr(), hlen) };
            header::set_id(h, npools, &self.id);
        }
        self.map
            .flush_range(0, header::PAGE)
            .map_err(|e| StoreError::io(&self.path, "msync header (identity)", e))
    }

    #[inline]
    fn list_idx(&self, pool: usize, owner: usize, shard: usize, phase: usize) -> usize {
        ((pool * 2 + owner) * self.shards + shard) * 2 + phase
    }

    /// Validates, repairs or quarantines, counts and indexes slots `lo..hi`.
    fn scan(&self, lo: u32, hi: u32, undo: &UndoMap, log: &[Staged]) -> ScanOut {
        let geo = self.geo();
        let np = geo.pools.len();
        let ne = geo.extents.len();
        let mut out = ScanOut {
            counts: vec![[0; LeaseState::COUNT]; np],
            quarantined_n: vec![0; np],
            lists: vec![Vec::new(); np * 2 * self.shards * 2],
            quarantined: Vec::new(),
            repaired: Vec::new(),
            kept: 0,
            wrote: false,
            applied: 0,
            relog: Vec::new(),
            keyed: (0..INDEX_SHARDS).map(|_| Vec::new()).collect(),
            side_dropped: Vec::new(),
        };
        if lo >= hi {
            return out;
        }
        let mut x = geo.ext_idx_of_slot(lo);
        let mut k = log.partition_point(|e| e.slot < lo);
        for slot in lo..hi {
            while x + 1 < ne && geo.bases[x + 1] <= slot {
                x += 1;
            }
            let p = geo.ext_pool[x] as usize;
            let base = geo.bases[x];
            let addr = u32::from(geo.extents[x].first) + (slot - base);
            let home = ((slot - base) as usize) % self.shards;
            let w = self.words(slot);
            let mut raw = load_words(w);
            if log.get(k).is_some_and(|e| e.slot == slot) {
                // Write-ahead log entries of this slot, oldest first.
                let mut changed = false;
                while let Some(e) = log.get(k).filter(|e| e.slot == slot) {
                    changed |= apply_entry(&mut raw, e);
                    k += 1;
                }
                if changed {
                    store_body(w, &raw);
                    w[0].store(
                        u32::from_le_bytes([raw[0], raw[1], raw[2], raw[3]]),
                        Ordering::Release,
                    );
                    out.wrote = true;
                    out.applied += 1;
                }
            }
            let raw = raw;
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
            let mut l = match decoded {
                Ok(l) => {
                    if rolled_back {
                        w[0].store(seq.wrapping_add(1), Ordering::Release);
                        out.wrote = true;
                        out.relog.push(slot);
                        out.repaired.push((
                            l.addr,
                            format!("update interrupted by a crash (sequence {seq} is odd, checksum mismatch); rolled back to the previous version from the undo area"),
                        ));
                    } else if seq & 1 == 1 {
                        // Complete old or new version (CRC is written last): keep it.
                        w[0].store(seq.wrapping_add(1), Ordering::Release);
                        out.wrote = true;
                        out.relog.push(slot);
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
                    out.relog.push(slot);
                    out.counts[p][LeaseState::Abandoned as usize] += 1;
                    out.quarantined_n[p] += 1;
                    out.kept += 1;
                    out.quarantined.push((Ipv4Addr::from(addr), why));
                    continue;
                }
            };
            if let Ok(Some(r)) = SideRef::of_record(&raw) {
                match self.side.var_of(slot, r) {
                    Ok(_) => {}
                    Err(why) => {
                        // The lease stays; only its variable data is gone.
                        l.var = VarRef::EMPTY;
                        let mut b = l.encode();
                        let crc = record_crc(&b);
                        b[4..8].copy_from_slice(&crc.to_le_bytes());
                        store_body(w, &b);
                        let seq = u32::from_le_bytes([raw[0], raw[1], raw[2], raw[3]]);
                        w[0].store((seq | 1).wrapping_add(1), Ordering::Release);
                        out.wrote = true;
                        // A resumed log gets the repaired record (as every repair).
                        out.relog.push(slot);
                        out.side_dropped.push((l.addr, why));
                    }
                }
            }
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
}
