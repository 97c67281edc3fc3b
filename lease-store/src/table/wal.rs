//! Write-ahead log of record changes (the durability path of ack mode).
//!
//! Every record write (`update` and friends, under the record lock) stages the new 128-byte
//! image with its sequence number. [`LeaseTable::commit`] (the group committer) drains the
//! staged images, appends each as a small checksummed entry to a preallocated, sequential log
//! file (`<lease file>.wal`) and makes them durable with one `fdatasync`. The mapped table
//! itself is written back lazily by [`LeaseTable::checkpoint`] (its dirty pages paced out in
//! small steps with no cache flush, `file::writeback_paced`, then `msync` of the whole mapping),
//! after which the log before the checkpoint's start is no longer needed: the durable log
//! header's `head` moves forward and the space is reused (the log is a ring).
//!
//! # File layout
//! - bytes 0..4096: two copies of the header (at 0 and 512, written alternately, each with a
//!   generation and a CRC; the valid copy with the higher generation counts): magic, version,
//!   record size, generation, capacity, `head` (the stream position replay starts from) and,
//!   from version 2 on, the identity of the table file the log belongs to (`identity.rs`:
//!   a log of another table is never replayed). Version 1 headers (no identity) still read.
//!   Version 3 (written only when the log holds more than one run, [`Runs`]) adds at 56 the
//!   run count and each run's start position and epoch (12 bytes each, up to [`MAX_RUNS`]),
//!   CRC at 156.
//! - bytes 4096..4096+cap: the ring. A stream position (LSN, a byte count that only grows)
//!   lives at `4096 + lsn % cap`. An entry never straddles the end of the ring: when fewer
//!   than [`MAX_ENTRY`] bytes are left before it, the stream skips to the next lap.
//!
//! # Entry (little-endian)
//! `crc32 (of the rest, the run's epoch as initial value) | mask | lsn: u64 | slot: u32 | the
//! record's non-zero words`:
//! bit i of `mask` says word i of the record is non-zero and stored; the others are
//! zero. The ring, its header and its entries are generic over the record size `N` (one bit
//! of mask per 4-byte word: 4 mask bytes for the lease table's 128-byte records, 16 for the
//! DHCPv6 binding table's 512-byte ones, `v6/log.rs`, which shares this code); the header
//! says the record size (0 meaning 128, as logs written before the field read). A typical bound lease is 15-20 words, so an entry is 80-100 bytes, a full image
//! (replay needs nothing else, which is what makes a torn table page repairable).
//!
//! # Replay (at open, before anything else looks at the records)
//! Entries are read from `head` while each one's CRC matches and its LSN is the expected
//! position (a stale entry of an earlier lap, a torn or partial group write, zeros: all stop
//! the replay there, nothing after is applied and nothing is half-applied: an entry is one
//! record, checked as a whole). An entry is applied when the table's record is damaged
//! (checksum mismatch: a torn page) or older (wrapping sequence comparison). Records of one
//! slot are staged in one shard in lock order, so the log holds each slot's versions in order.
//! After the replay the lease table's open ([`Wal::resume`]) writes nothing back: the replayed
//! entries stay in the log (they are what rebuilds the records if the table's pages never
//! reach the disk) and the new run appends right after them, under a new epoch that the
//! header lists before anything is appended. A torn group of the crashed run may have left
//! intact entries past the replay's end, at positions the new run writes again; they carry
//! the old epoch, so their checksums fail where the replay expects the new one, and no stale
//! entry is ever read as a continuation. When that is not possible (no log, another size,
//! the header's run list full, the log switched off, a pool change) the table is flushed and
//! the log starts a fresh lap past everything in it ([`Wal::start`], as the DHCPv6 table's
//! open always does), whose positions no old entry can hold.
//!
//! # Why a checkpoint may drop the log before its start
//! The checkpoint commits what is staged, reads `durable` (the end of the durable log) and
//! only then msyncs. Every
//! entry below that position was staged after its record was written in memory, so the msync
//! covers it. Entries above it stay, so a page torn by a power cut during this (or any later)
//! writeback is rebuilt from the log: every record changed since the previous checkpoint's
//! start has its newest durable image there.
//!
//! # Sticky errors
//! A failed log write or sync (or a failed checkpoint msync) poisons the table (see `flush`):
//! no commit succeeds until the whole table has been rewritten and flushed and the log has
//! been restarted past the failed region with a durable header write. Replies wait on commit,
//! so nothing written after the failure is acknowledged before a later write covered it and a
//! later sync succeeded.

use std::fs::{self, File};
use std::io;
use std::os::unix::fs::{FileExt, OpenOptionsExt};
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Mutex;
use std::time::Instant;

use super::file::{preallocate, sync_dir, LEASE_FILE_MODE};
use super::{lock, LeaseTable};
use crate::error::StoreError;
use crate::identity::TableId;
use crate::lease::{record_crc, RECORD_SIZE};

/// Bytes before the ring (two header copies).
pub(super) const WAL_HDR: u64 = 4096;
const MAGIC: &[u8; 8] = b"XDHCPWAL";
/// Header version written when the log holds more than one run (see [`Runs`]): 3. A log of a
/// single run whose entries are checksummed plainly (epoch 0: every run that starts on a fresh
/// lap) gets a version 2 header, as before runs existed; version 1 (no identity) still reads.
const VERSION: u32 = 3;
const HDR_COPY: u64 = 512;
/// Bytes of a version 1 header (CRC at 40), of a version 2 one (identity at 40..56, CRC at
/// 56) and of a version 3 one (runs at 56..156, CRC at 156).
#[cfg(test)]
const HDR_V1_BYTES: usize = 44;
const HDR_BYTES: usize = 160;
/// Runs a header can list (see [`Runs`]); an open that would need more starts a fresh lap.
pub(crate) const MAX_RUNS: usize = 8;
/// Entry header bytes for records of `n` bytes (crc, mask, lsn, slot).
const fn entry_hdr(n: usize) -> usize {
    16 + n / 32
}
/// Largest entry of a record of `n` bytes (every word non-zero).
pub(crate) const fn max_entry(n: usize) -> usize {
    entry_hdr(n) + n
}
/// Largest entry (every word non-zero) of the lease table's log.
pub const MAX_ENTRY: usize = max_entry(RECORD_SIZE);
/// Smallest ring: a few groups of entries.
pub const MIN_WAL_BYTES: u64 = 1 << 20;
/// Largest default ring (64 MiB: about 900,000 lease changes).
pub const DEFAULT_WAL_BYTES: u64 = 64 << 20;

/// The daemon's ring size for a table of `records`: twice the table's record bytes, at least
/// 4 MiB, at most [`DEFAULT_WAL_BYTES`] (a small table on a small file system gets a small
/// log; a checkpoint never writes more than the table, so a larger log buys little).
pub fn default_wal_bytes(records: u64) -> u64 {
    records
        .saturating_mul(2 * RECORD_SIZE as u64)
        .clamp(4 << 20, DEFAULT_WAL_BYTES)
}
const STAGE_SHARDS: usize = 64;
/// Replay reads the ring in chunks of this size.
const READ_CHUNK: usize = 1 << 20;

/// The runs of the log since `head`. A run is what one open of the table appended: it starts
/// where the replay at that open ended (`at`) and checksums its entries with its own `epoch`
/// as the CRC's initial value (epoch 0: plain CRC, as logs before runs). A run that starts on
/// a fresh lap (past every position ever written) needs no epoch of its own; one that goes on
/// right after the replayed entries does: the crashed run may have left entries beyond the
/// replay's end (a torn group) whose positions the new run writes again, and the old epoch
/// makes their checksums fail under the new one, so they can never be read as a continuation.
/// Epochs are the header generation that started the run, so no two runs share one.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) struct Runs {
    n: usize,
    at: [u64; MAX_RUNS],
    epoch: [u32; MAX_RUNS],
}

impl Runs {
    pub(crate) fn single(at: u64, epoch: u32) -> Self {
        let mut r = Runs {
            n: 1,
            at: [0; MAX_RUNS],
            epoch: [0; MAX_RUNS],
        };
        r.at[0] = at;
        r.epoch[0] = epoch;
        r
    }

    /// The epoch of the entry at stream position `lsn` (at or after `head`).
    pub(crate) fn epoch_at(&self, lsn: u64) -> u32 {
        (1..self.n)
            .rev()
            .find(|&i| self.at[i] <= lsn)
            .map_or(self.epoch[0], |i| self.epoch[i])
    }

    /// The runs still needed when the replay starts at `head`: the one `head` falls in
    /// (starting at `head` now) and those after it.
    fn kept_at(&self, head: u64) -> Self {
        let first = (0..self.n).rev().find(|&i| self.at[i] <= head).unwrap_or(0);
        let mut r = Runs::single(head, self.epoch[first]);
        for i in first + 1..self.n {
            r.at[r.n] = self.at[i];
            r.epoch[r.n] = self.epoch[i];
            r.n += 1;
        }
        r
    }

    /// A new run starting at `at` (not before the last one's start); a last run that starts
    /// there too wrote nothing and is replaced. None when the list is full.
    fn then(&self, at: u64, epoch: u32) -> Option<Self> {
        let mut r = *self;
        if r.at[r.n - 1] >= at {
            r.epoch[r.n - 1] = epoch;
            r.at[r.n - 1] = at;
            return Some(r);
        }
        if r.n == MAX_RUNS {
            return None;
        }
        r.at[r.n] = at;
        r.epoch[r.n] = epoch;
        r.n += 1;
        Some(r)
    }

    /// One run of plain checksums (a version 2 header says it all).
    fn plain(&self) -> bool {
        self.n == 1 && self.epoch[0] == 0
    }
}

/// CRC32 of `b` with the run's `epoch` as the initial value (0: the plain CRC).
fn entry_crc(epoch: u32, b: &[u8]) -> u32 {
    let mut h = crc32fast::Hasher::new_with_initial(epoch);
    h.update(b);
    h.finalize()
}

/// One staged record image (the new version, sequence included).
#[derive(Clone, Copy)]
pub(crate) struct Staged<const N: usize = RECORD_SIZE> {
    pub(crate) slot: u32,
    pub(crate) rec: [u8; N],
}

/// Upper bounds (µs) of the commit latency histogram's buckets; the last bucket is open.
pub const COMMIT_LATENCY_BOUNDS_US: [u64; 11] = [
    50, 100, 250, 500, 1_000, 2_500, 5_000, 10_000, 25_000, 50_000, 100_000,
];

/// Counters of the log (cumulative since open), for metrics.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct WalStats {
    /// Group commits that wrote and synced something.
    pub commits: u64,
    /// Entries appended.
    pub entries: u64,
    /// Bytes of entries appended.
    pub bytes: u64,
    /// Checkpoints done (table msync + log head moved).
    pub checkpoints: u64,
    /// Sum of the commit write+sync times (ns).
    pub commit_ns: u64,
    /// Commit write+sync times by bucket ([`COMMIT_LATENCY_BOUNDS_US`], plus one open bucket).
    pub commit_latency: [u64; COMMIT_LATENCY_BOUNDS_US.len() + 1],
    /// Bytes of the log between the replay start and the durable end now.
    pub used: u64,
    /// Ring size.
    pub capacity: u64,
}

#[derive(Default)]
pub(crate) struct Counters {
    commits: AtomicU64,
    entries: AtomicU64,
    bytes: AtomicU64,
    checkpoints: AtomicU64,
    commit_ns: AtomicU64,
    latency: [AtomicU64; COMMIT_LATENCY_BOUNDS_US.len() + 1],
}

pub(crate) struct Writer<const N: usize = RECORD_SIZE> {
    /// Stream position of the next entry.
    next: u64,
    /// Encoded entries not yet written, starting at stream position `buf_at`.
    buf: Vec<u8>,
    buf_at: u64,
    /// Drained staging vectors (kept for their capacity).
    drained: Vec<Vec<Staged<N>>>,
}

/// The last header written.
struct HdrState {
    gen: u64,
    head: u64,
    runs: Runs,
}

/// The log of an open table (records of `N` bytes).
pub(crate) struct Wal<const N: usize = RECORD_SIZE> {
    file: File,
    pub(crate) path: PathBuf,
    pub(crate) cap: u64,
    /// Identity of the table the log belongs to (in every header written).
    id: TableId,
    staging: Box<[Mutex<Vec<Staged<N>>>]>,
    pub(crate) writer: Mutex<Writer<N>>,
    /// One checkpoint at a time.
    pub(crate) ckpt: Mutex<()>,
    /// The last header written: generation, head and runs.
    hdr: Mutex<HdrState>,
    /// This run's epoch (the checksum seed of the entries it appends; see [`Runs`]).
    epoch: u32,
    /// Stream position up to which the log is durable.
    pub(crate) durable: AtomicU64,
    /// Replay start (as durable in the header).
    pub(crate) head: AtomicU64,
    pub(crate) stats: Counters,
    #[cfg(test)]
    pub(crate) fail_writes: std::sync::atomic::AtomicBool,
}

/// The log file of a lease file: the same name with `.wal` appended.
pub fn wal_path(lease_file: &Path) -> PathBuf {
    let mut s = lease_file.as_os_str().to_owned();
    s.push(".wal");
    PathBuf::from(s)
}

/// The header's record-size field: 0 for the lease table's 128-byte records (logs written
/// before the field existed have 0 there), else the size.
fn size_field(n: usize) -> u32 {
    if n == RECORD_SIZE {
        0
    } else {
        n as u32
    }
}

fn encode_header(
    n: usize,
    gen: u64,
    cap: u64,
    head: u64,
    id: &TableId,
    runs: &Runs,
) -> [u8; HDR_BYTES] {
    let mut h = [0u8; HDR_BYTES];
    h[0..8].copy_from_slice(MAGIC);
    h[8..12].copy_from_slice(&(if runs.plain() { 2 } else { VERSION }).to_le_bytes());
    h[12..16].copy_from_slice(&size_field(n).to_le_bytes());
    h[16..24].copy_from_slice(&gen.to_le_bytes());
    h[24..32].copy_from_slice(&cap.to_le_bytes());
    h[32..40].copy_from_slice(&head.to_le_bytes());
    h[40..56].copy_from_slice(id);
    if runs.plain() {
        let crc = crc32fast::hash(&h[..56]);
        h[56..60].copy_from_slice(&crc.to_le_bytes());
        return h;
    }
    // Version 3: the run count, then (start, epoch) of each run (the first starts at head).
    h[56..60].copy_from_slice(&(runs.n as u32).to_le_bytes());
    for i in 0..runs.n {
        let o = 60 + i * 12;
        h[o..o + 8].copy_from_slice(&runs.at[i].to_le_bytes());
        h[o + 8..o + 12].copy_from_slice(&runs.epoch[i].to_le_bytes());
    }
    let crc = crc32fast::hash(&h[..HDR_BYTES - 4]);
    h[HDR_BYTES - 4..].copy_from_slice(&crc.to_le_bytes());
    h
}

/// A version 1 header (no identity), as logs of older versions have it (tests of the
/// upgrade).
#[cfg(test)]
pub(crate) fn encode_header_v1(n: usize, gen: u64, cap: u64, head: u64) -> [u8; HDR_V1_BYTES] {
    let mut h = [0u8; HDR_V1_BYTES];
    h[0..8].copy_from_slice(MAGIC);
    h[8..12].copy_from_slice(&1u32.to_le_bytes());
    h[12..16].copy_from_slice(&size_field(n).to_le_bytes());
    h[16..24].copy_from_slice(&gen.to_le_bytes());
    h[24..32].copy_from_slice(&cap.to_le_bytes());
    h[32..40].copy_from_slice(&head.to_le_bytes());
    let crc = crc32fast::hash(&h[..40]);
    h[40..44].copy_from_slice(&crc.to_le_bytes());
    h
}

/// Rewrites both header copies of the log at `path` as version 1 (no identity), keeping
/// generation, capacity and head (tests: a log written by an older version).
#[cfg(test)]
pub(crate) fn downgrade_header(n: usize, path: &Path) {
    let f = fs::OpenOptions::new()
        .read(true)
        .write(true)
        .open(path)
        .unwrap();
    let mut h = [0u8; HDR_COPY as usize * 2];
    read_full(&f, &mut h, 0).unwrap();
    for o in [0, HDR_COPY as usize] {
        if let Some(d) = decode_header(n, &h[o..o + HDR_BYTES]) {
            let v1 = encode_header_v1(n, d.gen, d.cap, d.head);
            let mut copy = [0u8; HDR_COPY as usize];
            copy[..HDR_V1_BYTES].copy_from_slice(&v1);
            f.write_all_at(&copy, o as u64).unwrap();
        }
    }
}

fn u32_at(b: &[u8], o: usize) -> u32 {
    let mut w = [0u8; 4];
    w.copy_from_slice(&b[o..o + 4]);
    u32::from_le_bytes(w)
}

fn u64_at(b: &[u8], o: usize) -> u64 {
    let mut w = [0u8; 8];
    w.copy_from_slice(&b[o..o + 8]);
    u64::from_le_bytes(w)
}

/// A valid header copy.
struct Header {
    gen: u64,
    cap: u64,
    head: u64,
    /// The table's identity (None in a version 1 header).
    id: Option<TableId>,
    /// The runs from `head` on (one of epoch 0 in a version 1 or 2 header).
    runs: Runs,
}

/// The runs of a version 3 header `h` with replay start `head`: 1 to [`MAX_RUNS`], the first
/// starting at `head`, the others after it in increasing order.
fn decode_runs(h: &[u8], head: u64) -> Option<Runs> {
    let n = usize::try_from(u32_at(h, 56)).ok()?;
    if n == 0 || n > MAX_RUNS {
        return None;
    }
    let mut r = Runs::single(head, 0);
    r.n = n;
    for i in 0..n {
        let o = 60 + i * 12;
        r.at[i] = u64_at(h, o);
        r.epoch[i] = u32_at(h, o + 8);
    }
    (r.at[0] == head && r.at[..n].windows(2).all(|w| w[0] < w[1])).then_some(r)
}

/// The header copy at the start of `h` (at least [`HDR_BYTES`]), of a log of `n`-byte
/// records, if valid (version 1, 2 or 3).
fn decode_header(n: usize, h: &[u8]) -> Option<Header> {
    if h.len() < HDR_BYTES || &h[0..8] != MAGIC || u32_at(h, 12) != size_field(n) {
        return None;
    }
    let head = u64_at(h, 32);
    let (id, runs) = match u32_at(h, 8) {
        1 if crc32fast::hash(&h[..40]) == u32_at(h, 40) => (None, Runs::single(head, 0)),
        2 if crc32fast::hash(&h[..56]) == u32_at(h, 56) => (
            Some(crate::identity::id_of(&h[40..56])?),
            Runs::single(head, 0),
        ),
        3 if crc32fast::hash(&h[..HDR_BYTES - 4]) == u32_at(h, HDR_BYTES - 4) => (
            Some(crate::identity::id_of(&h[40..56])?),
            decode_runs(h, head)?,
        ),
        _ => return None,
    };
    let cap = u64_at(h, 24);
    (cap >= MIN_WAL_BYTES && cap.is_multiple_of(4)).then(|| Header {
        gen: u64_at(h, 16),
        cap,
        head,
        id,
        runs,
    })
}

/// Appends one entry for `rec` at stream position `lsn`, checksummed with the run's `epoch`;
/// returns its length.
///
/// One pass over the record 32 bytes at a time: a zero block (most of a DHCPv6 record, whose
/// variable fields are short) costs one test; in a non-zero one each non-zero word sets its
/// mask bit and is copied. The bytes are the same as word by word ([`encode_entry_by_words`], the
/// tests' reference), at about a fifth of the instructions (callgrind: 4,195 Ir per 512-byte
/// v6 record, `benches/RESULTS.md`).
pub(super) fn encode_entry<const N: usize>(
    out: &mut Vec<u8>,
    lsn: u64,
    slot: u32,
    rec: &[u8; N],
    epoch: u32,
) -> usize {
    const { assert!(N.is_multiple_of(32) && N <= 512) };
    let start = out.len();
    let eh = entry_hdr(N);
    // Room for the largest entry; cut to the real length below.
    out.resize(start + eh + N, 0);
    let e = &mut out[start..];
    let mut mask = 0u128;
    let mut k = eh;
    let word = |c: &[u8]| {
        let mut w = [0u8; 8];
        w.copy_from_slice(c);
        u64::from_le_bytes(w)
    };
    for (b, block) in rec.chunks_exact(32).enumerate() {
        let w = [
            word(&block[0..8]),
            word(&block[8..16]),
            word(&block[16..24]),
            word(&block[24..32]),
        ];
        if w[0] | w[1] | w[2] | w[3] == 0 {
            continue;
        }
        for (i, &w) in w.iter().enumerate() {
            let j = 4 * b + i;
            if w as u32 != 0 {
                mask |= 1 << (2 * j);
                e[k..k + 4].copy_from_slice(&(w as u32).to_le_bytes());
                k += 4;
            }
            if w >> 32 != 0 {
                mask |= 1 << (2 * j + 1);
                e[k..k + 4].copy_from_slice(&((w >> 32) as u32).to_le_bytes());
                k += 4;
            }
        }
    }
    e[4..4 + N / 32].copy_from_slice(&mask.to_le_bytes()[..N / 32]);
    e[eh - 12..eh - 4].copy_from_slice(&lsn.to_le_bytes());
    e[eh - 4..eh].copy_from_slice(&slot.to_le_bytes());
    let crc = entry_crc(epoch, &e[4..k]);
    e[..4].copy_from_slice(&crc.to_le_bytes());
    out.truncate(start + k);
    k
}

/// The entry encoder as it was, one word at a time (the tests' reference for
/// [`encode_entry`]'s bytes).
#[cfg(test)]
pub(super) fn encode_entry_by_words<const N: usize>(
    out: &mut Vec<u8>,
    lsn: u64,
    slot: u32,
    rec: &[u8; N],
    epoch: u32,
) -> usize {
    let start = out.len();
    let mut mask = 0u128;
    for i in 0..N / 4 {
        if rec[i * 4..i * 4 + 4] != [0; 4] {
            mask |= 1 << i;
        }
    }
    out.extend_from_slice(&[0; 4]);
    out.extend_from_slice(&mask.to_le_bytes()[..N / 32]);
    out.extend_from_slice(&lsn.to_le_bytes());
    out.extend_from_slice(&slot.to_le_bytes());
    for i in 0..N / 4 {
        if mask & (1 << i) != 0 {
            out.extend_from_slice(&rec[i * 4..i * 4 + 4]);
        }
    }
    let crc = entry_crc(epoch, &out[start + 4..]);
    out[start..start + 4].copy_from_slice(&crc.to_le_bytes());
    out.len() - start
}

/// The mask of an entry of `n`-byte records at the start of `b` (which holds its header).
fn mask_at(n: usize, b: &[u8]) -> u128 {
    let mut m = [0u8; 16];
    m[..n / 32].copy_from_slice(&b[4..4 + n / 32]);
    u128::from_le_bytes(m)
}

fn entry_len(n: usize, mask: u128) -> usize {
    entry_hdr(n) + 4 * mask.count_ones() as usize
}

/// Where an entry at `lsn` of length up to `max` goes: `lsn` itself, or the start of
/// the next lap when the ring's end is too close.
fn place(lsn: u64, cap: u64, max: usize) -> u64 {
    let off = lsn % cap;
    if cap - off < max as u64 {
        lsn + (cap - off)
    } else {
        lsn
    }
}

/// Newer in sequence order (wrapping).
pub(crate) fn seq_newer(a: u32, b: u32) -> bool {
    (a.wrapping_sub(b) as i32) > 0
}

/// What the replay at open found.
#[derive(Debug, Default)]
pub(crate) struct Replay {
    /// Valid entries read.
    pub entries: u64,
    /// The entry that ended the replay had the expected position but a bad checksum or
    /// content (a torn or partial write): what was wrong.
    pub discarded: Option<String>,
    /// Stream position after the last valid entry.
    pub end: u64,
    /// Header (gen, cap) of the file, when it had a valid one.
    pub hdr: Option<(u64, u64)>,
    /// Replay start and the runs from there on (from the header).
    pub head: u64,
    pub runs: Option<Runs>,
    /// The identity of the table the log belongs to (None: no valid header, or a header of
    /// an older version without one).
    pub id: Option<TableId>,
}

/// Reads the lease table's log at `path` (if any) for a table of `total` records: the valid
/// entries from `head`, sorted by slot (each slot's versions in log order), for
/// [`apply_entry`].
///
/// Entries with [`EXT_ID`](super::ext::EXT_ID) set name side-area chunks (below `side_ids`).
pub(super) fn read_log(
    path: &Path,
    total: u32,
    side_ids: u32,
) -> Result<(Replay, Vec<Staged>), StoreError> {
    read_log_of::<RECORD_SIZE>(path, total, side_ids, |id, rec| {
        if id & super::ext::EXT_ID != 0 {
            super::ext::chunk_ok(rec)
        } else {
            u32_at(rec, 4) == record_crc(rec)
        }
    })
}

/// [`read_log`] for records of `N` bytes; `image_ok` checks an entry's record image (its own
/// checksum): an entry whose image fails ends the replay like a torn entry. `side_ids` is 0
/// for a table without a side area (the DHCPv6 binding table).
pub(crate) fn read_log_of<const N: usize>(
    path: &Path,
    total: u32,
    side_ids: u32,
    image_ok: impl Fn(u32, &[u8; N]) -> bool,
) -> Result<(Replay, Vec<Staged<N>>), StoreError> {
    let max = max_entry(N);
    let mut out = Replay::default();
    let mut found: Vec<Staged<N>> = Vec::new();
    let file = match File::open(path) {
        Ok(f) => f,
        Err(e) if e.kind() == io::ErrorKind::NotFound => return Ok((out, found)),
        Err(e) => return Err(StoreError::io(path, "open write-ahead log", e)),
    };
    let mut h = [0u8; HDR_COPY as usize * 2];
    let n = read_full(&file, &mut h, 0).map_err(|e| StoreError::io(path, "read log header", e))?;
    let best = [0, HDR_COPY as usize]
        .iter()
        .filter(|&&o| o + HDR_BYTES <= n)
        .filter_map(|&o| decode_header(N, &h[o..o + HDR_BYTES]))
        .max_by_key(|x| x.gen);
    let Some(Header {
        gen,
        cap,
        head,
        id,
        runs,
    }) = best
    else {
        if n > 0 && h.iter().any(|&b| b != 0) {
            tracing::warn!(path = %path.display(), "write-ahead log has no valid header; nothing replayed");
        }
        return Ok((out, found));
    };
    out.hdr = Some((gen, cap));
    out.id = id;
    out.head = head;
    out.runs = Some(runs);
    let flen = file
        .metadata()
        .map_err(|e| StoreError::io(path, "stat log", e))?
        .len();
    if flen < WAL_HDR + cap {
        return Err(StoreError::format(
            path,
            format!(
                "write-ahead log is {flen} bytes, its header says {} (truncated?)",
                WAL_HDR + cap
            ),
        ));
    }
    let mut buf: Vec<u8> = Vec::new();
    // Stream position of buf[0]; buf never crosses a lap boundary.
    let mut buf_at = 0u64;
    let mut lsn = head;
    loop {
        lsn = place(lsn, cap, max);
        if lsn - head >= cap {
            break;
        }
        // Make sure buf covers [lsn, lsn + max) (all within the lap, by `place`).
        if lsn < buf_at || lsn + max as u64 > buf_at + buf.len() as u64 {
            let lap_end = (lsn / cap + 1) * cap;
            let want = (READ_CHUNK as u64).min(lap_end - lsn) as usize;
            buf.resize(want, 0);
            let got = read_full(&file, &mut buf, WAL_HDR + lsn % cap)
                .map_err(|e| StoreError::io(path, "read write-ahead log", e))?;
            buf.truncate(got);
            buf_at = lsn;
        }
        let b = &buf[(lsn - buf_at) as usize..];
        let eh = entry_hdr(N);
        if b.len() < eh {
            break;
        }
        let mask = mask_at(N, b);
        let len = entry_len(N, mask);
        // (No entry has mask 0: the sequence word of a logged image is never zero. Zeros at
        // position 0 of a new log would pass the position check.)
        if mask == 0 || b.len() < len || u64_at(b, eh - 12) != lsn {
            break; // the end: a stale entry or zeros
        }
        if entry_crc(runs.epoch_at(lsn), &b[4..len]) != u32_at(b, 0) {
            if (0..runs.n).any(|i| entry_crc(runs.epoch[i], &b[4..len]) == u32_at(b, 0)) {
                break; // an entry an earlier run wrote past the end it replayed to: stale
            }
            out.discarded = Some(format!(
                "entry at log position {lsn}: checksum mismatch (a torn or partial write); it and \
                 everything after it were never acknowledged and are discarded"
            ));
            break;
        }
        let slot = u32_at(b, eh - 4);
        let side = slot & super::ext::EXT_ID != 0;
        if side && slot & !super::ext::EXT_ID >= side_ids {
            out.discarded = Some(format!(
                "entry at log position {lsn}: side chunk {} beyond the side area's {side_ids}",
                slot & !super::ext::EXT_ID
            ));
            break;
        }
        if !side && slot >= total {
            out.discarded = Some(format!(
                "entry at log position {lsn}: slot {slot} beyond the table's {total} records"
            ));
            break;
        }
        let mut rec = [0u8; N];
        let mut k = eh;
        for i in 0..N / 4 {
            if mask & (1 << i) != 0 {
                rec[i * 4..i * 4 + 4].copy_from_slice(&b[k..k + 4]);
                k += 4;
            }
        }
        if !image_ok(slot, &rec) {
            out.discarded = Some(format!(
                "entry at log position {lsn}: the record image's own checksum does not match"
            ));
            break;
        }
        out.entries += 1;
        found.push(Staged { slot, rec });
        lsn += len as u64;
    }
    out.end = lsn;
    // Applied in slot order (each slot's versions in log order): the table is then read
    // sequentially, by the open's scan, not at random (cold: 400,000 entries applied at random
    // places took 1.2-2.2 s, mostly page faults reading the table). Sorted as 8-byte keys
    // (slot, position in the log), then the images moved once: a stable sort of the images
    // themselves moves each ~20 times.
    if found.len() > u32::MAX as usize {
        found.sort_by_key(|e| e.slot);
        return Ok((out, found));
    }
    let mut keys: Vec<u64> = found
        .iter()
        .enumerate()
        .map(|(i, e)| (u64::from(e.slot) << 32) | i as u64)
        .collect();
    keys.sort_unstable();
    let sorted = keys
        .iter()
        .map(|&k| found[(k & 0xffff_ffff) as usize])
        .collect();
    Ok((out, sorted))
}

/// Applies an entry to `cur` (a record's bytes) when the entry is newer or `cur` is damaged.
/// Returns whether it did.
pub(super) fn apply_entry(cur: &mut [u8; RECORD_SIZE], e: &Staged) -> bool {
    let cur_ok = cur[4..].iter().any(|&x| x != 0) && u32_at(cur, 4) == record_crc(cur);
    if !cur_ok || seq_newer(u32_at(&e.rec, 0), u32_at(cur, 0)) {
        *cur = e.rec;
        true
    } else {
        false
    }
}

/// Applies sorted entries to the records at `recs` (`total` records of [`RECORD_SIZE`] bytes);
/// returns how many were applied.
///
/// # Safety
/// `recs` must point to `total * RECORD_SIZE` writable bytes that nothing else accesses during
/// the call, and every entry's slot must be below `total` (as `read_log` checks).
pub(super) unsafe fn apply_all(recs: *mut u8, total: u32, entries: &[Staged]) -> u64 {
    let mut n = 0;
    for e in entries.iter().filter(|e| e.slot < total) {
        // SAFETY: slot < total, inside `recs` (caller's contract), accessed by nobody else.
        let cur =
            unsafe { &mut *(recs.add(e.slot as usize * RECORD_SIZE) as *mut [u8; RECORD_SIZE]) };
        if apply_entry(cur, e) {
            n += 1;
        }
    }
    n
}

pub(crate) fn read_full(f: &File, buf: &mut [u8], mut off: u64) -> io::Result<usize> {
    let mut n = 0;
    while n < buf.len() {
        match f.read_at(&mut buf[n..], off) {
            Ok(0) => break,
            Ok(k) => {
                n += k;
                off += k as u64;
            }
            Err(e) if e.kind() == io::ErrorKind::Interrupted => {}
            Err(e) => return Err(e),
        }
    }
    Ok(n)
}

impl<const N: usize> Wal<N> {
    const MAX: usize = max_entry(N);

    /// Opens (creating or resizing if needed) the log of the table with identity `id` after
    /// `replay` and starts a fresh lap past everything in it. The table's replayed content
    /// must be durable already.
    pub(crate) fn start(
        path: &Path,
        cap: u64,
        replay: &Replay,
        id: TableId,
    ) -> Result<Wal<N>, StoreError> {
        let cap = cap.max(MIN_WAL_BYTES) / 4 * 4;
        let fresh = replay.hdr.is_none_or(|(_, c)| c != cap) || replay.id != Some(id);
        if fresh {
            // Missing, damaged, another size or another table's (or an older version's, so
            // its header gets the identity): start over (nothing in it is needed any more).
            remove(path)?;
        }
        let file = fs::OpenOptions::new()
            .read(true)
            .write(true)
            .create(true)
            .truncate(false)
            .mode(LEASE_FILE_MODE)
            .open(path)
            .map_err(|e| StoreError::io(path, "open write-ahead log", e))?;
        let len = WAL_HDR + cap;
        let have = file
            .metadata()
            .map_err(|e| StoreError::io(path, "stat write-ahead log", e))?
            .len();
        if have < len {
            file.set_len(len)
                .map_err(|e| StoreError::io(path, "size write-ahead log", e))?;
        }
        // Every block allocated (a full disk cannot fail an append) ...
        preallocate(&file, path, len)?;
        if fresh || have < len {
            // ... and written once: an fallocated block is "unwritten" until its first write,
            // whose fdatasync must then commit the extent change through the file system's
            // journal (behind every other file's metadata). Measured on ext4 here: group
            // commits of 10-25 ms during the first lap, ~0.2 ms after it.
            write_zeroes(&file, have.min(len), len)
                .map_err(|e| StoreError::io(path, "write the new log's blocks once", e))?;
        }
        let (gen, lap) = match replay.hdr {
            Some((g, _)) if !fresh => (g, (replay.end / cap + 1) * cap),
            _ => (0, 0),
        };
        // A fresh lap: nothing was ever written at its positions, plain checksums do.
        let wal = Self::new(file, path, cap, id, lap, lap, gen, Runs::single(lap, 0));
        wal.set_head(lap, true)
            .map_err(|e| StoreError::io(path, "write log header", e))?;
        if fresh {
            sync_dir(path)?;
        }
        Ok(wal)
    }

    /// Opens the log of the table with identity `id` after `replay` and goes on appending right
    /// after the replayed entries, which stay the log's (the table's replayed content need not
    /// be durable: a replay of this log rebuilds it). The new run gets its own epoch, written
    /// (durably) into the header before anything is appended (see [`Runs`]). None, with nothing
    /// written, when the log cannot be continued (missing, damaged, another size or another
    /// table's, or the header's run list is full): then the table is flushed and [`Wal::start`]
    /// starts a fresh lap.
    pub(crate) fn resume(
        path: &Path,
        cap: u64,
        replay: &Replay,
        id: TableId,
    ) -> Result<Option<Wal<N>>, StoreError> {
        let cap = cap.max(MIN_WAL_BYTES) / 4 * 4;
        let (Some((gen, have_cap)), Some(runs)) = (replay.hdr, replay.runs) else {
            return Ok(None);
        };
        if have_cap != cap || replay.id != Some(id) {
            return Ok(None);
        }
        // The generation of the header written below (never 0: that is the plain CRC's).
        let epoch = (gen.wrapping_add(1) as u32).max(1);
        let Some(runs) = runs.then(replay.end, epoch) else {
            return Ok(None);
        };
        let file = fs::OpenOptions::new()
            .read(true)
            .write(true)
            .open(path)
            .map_err(|e| StoreError::io(path, "open write-ahead log", e))?;
        let len = WAL_HDR + cap;
        let have = file
            .metadata()
            .map_err(|e| StoreError::io(path, "stat write-ahead log", e))?
            .len();
        if have < len {
            return Ok(None);
        }
        // Every block allocated (`start`); written once already (the log existed).
        preallocate(&file, path, len)?;
        let wal = Self::new(file, path, cap, id, replay.end, replay.head, gen, runs);
        wal.set_head(replay.head, true)
            .map_err(|e| StoreError::io(path, "write log header", e))?;
        Ok(Some(wal))
    }

    /// The log over `file`, appending at `next`, replay starting at `head`; `gen` and `runs`
    /// of the header about to be written (the last run is this one).
    #[allow(clippy::too_many_arguments)]
    fn new(
        file: File,
        path: &Path,
        cap: u64,
        id: TableId,
        next: u64,
        head: u64,
        gen: u64,
        runs: Runs,
    ) -> Self {
        Wal {
            file,
            path: path.to_path_buf(),
            cap,
            id,
            staging: (0..STAGE_SHARDS).map(|_| Mutex::new(Vec::new())).collect(),
            writer: Mutex::new(Writer {
                next,
                buf: Vec::new(),
                buf_at: next,
                drained: (0..STAGE_SHARDS).map(|_| Vec::new()).collect(),
            }),
            ckpt: Mutex::new(()),
            hdr: Mutex::new(HdrState { gen, head, runs }),
            epoch: runs.epoch[runs.n - 1],
            durable: AtomicU64::new(next),
            head: AtomicU64::new(head),
            stats: Counters::default(),
            #[cfg(test)]
            fail_writes: std::sync::atomic::AtomicBool::new(false),
        }
    }

    /// Writes a header with `head` (if it moves forward, or `force`) and syncs it.
    pub(crate) fn set_head(&self, head: u64, force: bool) -> io::Result<()> {
        let mut h = lock(&self.hdr);
        if !force && head <= h.head {
            return Ok(());
        }
        let gen = h.gen + 1;
        let runs = h.runs.kept_at(head);
        let bytes = encode_header(N, gen, self.cap, head, &self.id, &runs);
        self.check_injected()?;
        self.file.write_all_at(&bytes, (gen % 2) * HDR_COPY)?;
        self.file.sync_data()?;
        *h = HdrState { gen, head, runs };
        self.head.fetch_max(head, Ordering::AcqRel);
        Ok(())
    }

    fn check_injected(&self) -> io::Result<()> {
        #[cfg(test)]
        if self.fail_writes.load(Ordering::Relaxed) {
            return Err(io::Error::from_raw_os_error(libc::EIO));
        }
        Ok(())
    }

    /// Stages a record image (called under the record's lock).
    #[inline]
    pub(crate) fn stage(&self, slot: u32, rec: &[u8; N]) {
        lock(&self.staging[slot as usize % STAGE_SHARDS]).push(Staged { slot, rec: *rec });
    }

    /// Moves every staged image into the writer's `drained` vectors (their capacity is
    /// swapped back into staging, so the steady state allocates nothing).
    pub(crate) fn drain(&self, wr: &mut Writer<N>) {
        for (s, d) in self.staging.iter().zip(wr.drained.iter_mut()) {
            d.clear();
            std::mem::swap(&mut *lock(s), d);
        }
    }

    /// Writes `wr.buf` at its stream position (within one lap, see `place`).
    fn write_buf(&self, wr: &mut Writer<N>) -> io::Result<()> {
        if wr.buf.is_empty() {
            return Ok(());
        }
        self.check_injected()?;
        self.file
            .write_all_at(&wr.buf, WAL_HDR + wr.buf_at % self.cap)?;
        self.stats
            .bytes
            .fetch_add(wr.next - wr.buf_at, Ordering::Relaxed);
        wr.buf.clear();
        wr.buf_at = wr.next;
        Ok(())
    }

    fn sync(&self, wr: &mut Writer<N>, t0: Instant) -> io::Result<()> {
        self.write_buf(wr)?;
        self.check_injected()?;
        self.file.sync_data()?;
        self.durable.store(wr.next, Ordering::Release);
        let ns = t0.elapsed().as_nanos().min(u128::from(u64::MAX)) as u64;
        let c = &self.stats;
        c.commits.fetch_add(1, Ordering::Relaxed);
        c.commit_ns.fetch_add(ns, Ordering::Relaxed);
        let us = ns / 1000;
        let b = COMMIT_LATENCY_BOUNDS_US
            .iter()
            .position(|&u| us <= u)
            .unwrap_or(COMMIT_LATENCY_BOUNDS_US.len());
        c.latency[b].fetch_add(1, Ordering::Relaxed);
        Ok(())
    }

    pub(crate) fn stats(&self) -> WalStats {
        let c = &self.stats;
        let mut latency = [0; COMMIT_LATENCY_BOUNDS_US.len() + 1];
        for (o, a) in latency.iter_mut().zip(c.latency.iter()) {
            *o = a.load(Ordering::Relaxed);
        }
        WalStats {
            commits: c.commits.load(Ordering::Relaxed),
            entries: c.entries.load(Ordering::Relaxed),
            bytes: c.bytes.load(Ordering::Relaxed),
            checkpoints: c.checkpoints.load(Ordering::Relaxed),
            commit_ns: c.commit_ns.load(Ordering::Relaxed),
            commit_latency: latency,
            used: self.used(),
            capacity: self.cap,
        }
    }

    pub(crate) fn used(&self) -> u64 {
        self.durable
            .load(Ordering::Acquire)
            .saturating_sub(self.head.load(Ordering::Acquire))
    }
}

impl<const N: usize> Wal<N> {
    /// One group commit: drains the staged images, appends them and syncs. `on_full` runs
    /// when the ring has no room (after a sync of what is written): the owner's checkpoint,
    /// which must move `head`. On error the failed bytes stay below `next` (the owner's
    /// recovery restarts the log past them) and the error is returned.
    pub(crate) fn group_commit(
        &self,
        wr: &mut Writer<N>,
        mut on_full: impl FnMut() -> io::Result<()>,
    ) -> io::Result<()> {
        let t0 = Instant::now();
        self.drain(wr);
        let mut drained = std::mem::take(&mut wr.drained);
        let r = self.append(wr, &drained, t0, &mut on_full);
        for d in &mut drained {
            d.clear();
        }
        wr.drained = drained;
        if r.is_err() {
            wr.buf.clear();
            wr.buf_at = wr.next;
        }
        r
    }

    fn append(
        &self,
        wr: &mut Writer<N>,
        drained: &[Vec<Staged<N>>],
        t0: Instant,
        on_full: &mut dyn FnMut() -> io::Result<()>,
    ) -> io::Result<()> {
        let mut n = 0u64;
        for s in drained.iter().flatten() {
            let at = place(wr.next, self.cap, Self::MAX);
            if at != wr.next {
                self.write_buf(wr)?;
                wr.next = at;
                wr.buf_at = at;
            }
            if wr.next + Self::MAX as u64 - self.head.load(Ordering::Acquire) > self.cap {
                // The ring is full: make what we have durable, checkpoint inline, go on.
                self.sync(wr, t0)?;
                on_full()?;
                if wr.next + Self::MAX as u64 - self.head.load(Ordering::Acquire) > self.cap {
                    return Err(io::Error::other("write-ahead log full after a checkpoint"));
                }
            }
            let len = encode_entry(&mut wr.buf, wr.next, s.slot, &s.rec, self.epoch);
            wr.next += len as u64;
            n += 1;
        }
        self.stats.entries.fetch_add(n, Ordering::Relaxed);
        if n == 0 && wr.buf.is_empty() {
            return Ok(());
        }
        self.sync(wr, t0)
    }

    /// Drops what is staged: called before the owner rewrites and flushes its whole table
    /// after a storage failure (that flush covers every image dropped here; what is staged
    /// after this call stays for the next commit).
    pub(crate) fn discard_staged(&self, wr: &mut Writer<N>) {
        self.drain(wr);
        for d in &mut wr.drained {
            d.clear();
        }
    }

    /// After a storage failure, once the owner has rewritten and flushed its whole table
    /// (after [`Wal::discard_staged`]): restarts the log past the failed region with a
    /// durable header.
    pub(crate) fn restart(&self, wr: &mut Writer<N>) -> io::Result<()> {
        let next = place(wr.next, self.cap, Self::MAX);
        wr.next = next;
        wr.buf.clear();
        wr.buf_at = next;
        self.set_head(next, false)?;
        self.durable.store(next, Ordering::Release);
        tracing::warn!(path = %self.path.display(), "write-ahead log restarted after a storage error");
        Ok(())
    }

    /// Counts a checkpoint (table written back and `head` moved).
    pub(crate) fn note_checkpoint(&self) {
        self.stats.checkpoints.fetch_add(1, Ordering::Relaxed);
    }
}

/// Removes a log file (and makes that durable); a missing file is fine.
fn remove(path: &Path) -> Result<(), StoreError> {
    match fs::remove_file(path) {
        Ok(()) => sync_dir(path),
        Err(e) if e.kind() == io::ErrorKind::NotFound => Ok(()),
        Err(e) => Err(StoreError::io(path, "remove write-ahead log", e)),
    }
}

/// After a replay with the log switched off: the table content is durable, the log goes.
pub(crate) fn retire(path: &Path, replay: &Replay) -> Result<(), StoreError> {
    if replay.hdr.is_some() || path.exists() {
        remove(path)?;
    }
    Ok(())
}

impl LeaseTable {
    /// Makes every record change so far durable: with the write-ahead log, one group commit
    /// (append the staged changes, `fdatasync` the log); without it, `flush` (msync of the
    /// whole mapping). Under the sticky-error rule: after a failure, no commit succeeds until
    /// the failed writes have been covered by later ones and a later sync succeeded.
    pub fn commit(&self) -> io::Result<()> {
        match &self.wal {
            Some(w) => self.wal_commit(w),
            None => self.flush(),
        }
    }

    /// Whether record changes go to a write-ahead log (`OpenOptions::wal`).
    pub fn has_wal(&self) -> bool {
        self.wal.is_some()
    }

    /// The log's counters (commit count and latency histogram, bytes, checkpoints), if the
    /// table has a log.
    pub fn wal_stats(&self) -> Option<WalStats> {
        self.wal.as_ref().map(Wal::stats)
    }

    /// The log is at least half full or `force`: time for a checkpoint.
    pub fn wal_wants_checkpoint(&self) -> bool {
        self.wal.as_ref().is_some_and(|w| w.used() >= w.cap / 2)
    }

    /// Bytes of log a replay would read now (0 without a log).
    pub fn wal_used(&self) -> u64 {
        self.wal.as_ref().map_or(0, Wal::used)
    }

    /// Commits what is staged, writes the mapped table back (paced, then msync of the whole mapping) and
    /// then drops the log before the point that write covered (the durable header moves `head`). Without a log,
    /// the same as `flush`. Runs in the background: commits go on meanwhile.
    pub fn checkpoint(&self) -> io::Result<()> {
        let Some(w) = &self.wal else {
            return self.sticky_flush(|| self.side.flush().and_then(|()| self.map.flush()));
        };
        let _one = lock(&w.ckpt);
        // Staged changes go to the log first (so nothing stays staged for long, whoever
        // made it: the sweeper and the failover driver take no commit tickets). After a
        // storage error this is the recovery, which is a checkpoint itself.
        let recovering = self.storage_failed();
        self.wal_commit(w)?;
        if recovering {
            return Ok(());
        }
        // The table's pages first go out paced, with no flush (`writeback_paced`), so the
        // msync below finds little to write and the log's group commits never queue behind
        // a burst of them.
        if let Err(e) = super::file::writeback_paced(&self._file, self.map.len() as u64) {
            self.note_flush_failure(&e);
            return Err(e);
        }
        self.checkpoint_inner(w)
    }

    fn checkpoint_inner(&self, w: &Wal) -> io::Result<()> {
        let before = self.flush_state.failures.load(Ordering::Acquire);
        // First the position, then the msync (module docs): the side area, then the table.
        let p = w.durable.load(Ordering::Acquire);
        if let Err(e) = self.side.flush().and_then(|()| self.map.flush()) {
            self.note_flush_failure(&e);
            return Err(e);
        }
        if self.flush_state.failures.load(Ordering::Acquire) != before {
            return Err(io::Error::other(
                "a storage failure during the checkpoint; the log is kept until a recovery",
            ));
        }
        if let Err(e) = w.set_head(p, false) {
            self.note_flush_failure(&e);
            return Err(e);
        }
        w.note_checkpoint();
        Ok(())
    }

    fn wal_commit(&self, w: &Wal) -> io::Result<()> {
        let mut wr = lock(&w.writer);
        if self.storage_failed() {
            return self.wal_recover(w, &mut wr);
        }
        let r = w.group_commit(&mut wr, || self.checkpoint_inner(w));
        if let Err(e) = r {
            self.note_flush_failure(&e);
            return Err(e);
        }
        Ok(())
    }

    /// After a storage failure: rewrite and flush the whole table (which covers every change
    /// staged so far, so the staged images are dropped), then restart the log past the failed
    /// region with a durable header.
    fn wal_recover(&self, w: &Wal, wr: &mut super::wal::Writer) -> io::Result<()> {
        w.discard_staged(wr);
        self.recover_storage()?;
        if let Err(e) = w.restart(wr) {
            self.note_flush_failure(&e);
            return Err(e);
        }
        Ok(())
    }

    #[cfg(test)]
    pub(super) fn wal_fail_writes(&self, on: bool) {
        if let Some(w) = &self.wal {
            w.fail_writes.store(on, Ordering::Relaxed);
        }
    }
}

/// Writes zeroes over `from..to` of `file` and makes them durable (1 MiB at a time).
fn write_zeroes(file: &fs::File, from: u64, to: u64) -> io::Result<()> {
    const STEP: u64 = 1 << 20;
    let zeroes = vec![0u8; STEP as usize];
    let mut at = from;
    while at < to {
        let n = (to - at).min(STEP);
        file.write_all_at(&zeroes[..n as usize], at)?;
        at += n;
    }
    file.sync_data()
}
