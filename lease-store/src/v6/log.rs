//! The DHCPv6 binding table's write-ahead log (`commit = "ack"`).
//!
//! The same log as the lease table's (`table/wal.rs`: a preallocated ring `<v6 file>.wal`,
//! checksummed entries holding a record's non-zero words, two header copies, group commit,
//! checkpoint, replay at open; the code is shared, generic over the record size), for the
//! table's 512-byte records:
//!
//! - every write of a record (`put`, `remove`, under the table's lock: the table has one
//!   writer) raises the record's write sequence and stages the new image;
//! - [`Log6::commit`] (the daemon's committer thread, without the table's lock) appends the
//!   staged images and `fdatasync`s the log once; a Reply that grants or extends a binding
//!   leaves only after a commit that started after its record was written;
//! - [`Log6::checkpoint`] (a background thread, without the table's lock) commits, reads the
//!   durable end of the log, writes the whole mapping back (`msync`) and only then moves the
//!   log's start (`head`) to that end. Workers go on rewriting records during the `msync`, so
//!   a power cut may leave a torn record in the file; every record changed since the start of
//!   the last completed checkpoint has its newest durable image in the log after `head`, so
//!   the replay rebuilds it;
//! - at open ([`super::BindingTable6::open_with`]) the log is replayed before the indexes are
//!   built: an entry is applied when the file's record is damaged or has an older write
//!   sequence; the replay stops at the first entry whose checksum (or record image) does not
//!   check (a torn tail: never acknowledged), so nothing is half-applied. Then the table is
//!   flushed and the log starts a fresh lap.
//!
//! A failed log write, sync or checkpoint `msync` is sticky: [`Log6::commit`] refuses until
//! [`super::BindingTable6::recover_log`] (under the table's lock) has rewritten and flushed
//! the whole table and restarted the log past the failure; held Replies never leave before.

use std::io;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex, MutexGuard};

use memmap2::MmapRaw;

use super::record::{image_ok, seq_of, RECORD6_SIZE};
use crate::table::wal::{seq_newer, Replay, Staged, Wal};
use crate::table::WalStats;

/// The log of an open file-backed v6 table; shared (`Arc`) between the table, which stages
/// into it, and the committer and checkpointer, which write it without the table's lock.
pub struct Log6 {
    pub(super) wal: Wal<RECORD6_SIZE>,
    /// The table's mapping (only `msync`ed from here, never read or written).
    map: Arc<MmapRaw>,
    /// The table's file (a second handle): the checkpoint's paced write-back.
    file: std::fs::File,
    /// A storage error not recovered yet (sticky).
    failed: AtomicBool,
}

fn lock<T>(m: &Mutex<T>) -> MutexGuard<'_, T> {
    m.lock().unwrap_or_else(|e| e.into_inner())
}

/// The ring size for a table of `capacity` records: twice the table's record bytes, at least
/// 4 MiB, at most 64 MiB (as the lease table's).
pub fn default_log_bytes(capacity: u32) -> u64 {
    (u64::from(capacity) * 2 * RECORD6_SIZE as u64).clamp(4 << 20, 64 << 20)
}

impl Log6 {
    pub(super) fn new(wal: Wal<RECORD6_SIZE>, map: Arc<MmapRaw>, file: std::fs::File) -> Self {
        Log6 {
            wal,
            map,
            file,
            failed: AtomicBool::new(false),
        }
    }

    /// Makes every record write staged before the call durable: one group commit (append
    /// the staged images, one `fdatasync`). Refused after a storage error until the table
    /// recovered it ([`super::BindingTable6::recover_log`]).
    pub fn commit(&self) -> io::Result<()> {
        if self.failed() {
            return Err(io::Error::other(
                "the v6 write-ahead log had a storage error; waiting for its recovery",
            ));
        }
        let mut wr = lock(&self.wal.writer);
        let r = self.wal.group_commit(&mut wr, || self.checkpoint_inner());
        if r.is_err() {
            self.failed.store(true, Ordering::Release);
        }
        r
    }

    /// Commits, writes the whole mapping back and drops the log before the point that write
    /// covered (module docs). Runs beside commits and the table's writer.
    pub fn checkpoint(&self) -> io::Result<()> {
        let _one = lock(&self.wal.ckpt);
        self.commit()?;
        // Paced, flush-free write-back first (as the lease table's checkpoint does): the
        // msync then finds little to write and group commits never queue behind a burst.
        if let Err(e) = crate::table::file::writeback_paced(&self.file, self.map.len() as u64) {
            self.failed.store(true, Ordering::Release);
            return Err(e);
        }
        self.checkpoint_inner()
    }

    fn checkpoint_inner(&self) -> io::Result<()> {
        // First the position, then the msync: every entry below it was staged after its
        // record was written in the mapping, so the msync covers it.
        let p = self.wal.durable.load(Ordering::Acquire);
        let r = self.map.flush().and_then(|()| self.wal.set_head(p, false));
        match r {
            Ok(()) => {
                self.wal.note_checkpoint();
                Ok(())
            }
            Err(e) => {
                self.failed.store(true, Ordering::Release);
                Err(e)
            }
        }
    }

    /// A storage error is not recovered yet.
    pub fn failed(&self) -> bool {
        self.failed.load(Ordering::Acquire)
    }

    /// The log is at least half full: time for a checkpoint.
    pub fn wants_checkpoint(&self) -> bool {
        self.wal.used() >= self.wal.cap / 2
    }

    /// Counters (commits and their latency, entries, bytes, checkpoints, use).
    pub fn stats(&self) -> WalStats {
        self.wal.stats()
    }

    /// Under the table's lock (nothing stages meanwhile), after the caller rewrote every
    /// page of the mapping: flush it, restart the log past the failed region.
    pub(super) fn recover(&self, rewrite: impl FnOnce()) -> io::Result<()> {
        let mut wr = lock(&self.wal.writer);
        self.wal.discard_staged(&mut wr);
        rewrite();
        self.map.flush()?;
        self.wal.restart(&mut wr)?;
        self.failed.store(false, Ordering::Release);
        Ok(())
    }

    #[cfg(test)]
    pub(super) fn fail_writes(&self, on: bool) {
        self.wal.fail_writes.store(on, Ordering::Relaxed);
    }
}

/// Applies one log entry to a record's bytes when the record is damaged or older.
pub(super) fn apply(cur: &mut [u8; RECORD6_SIZE], e: &Staged<RECORD6_SIZE>) -> bool {
    let cur_ok = cur.iter().any(|&b| b != 0) && image_ok(cur);
    if !cur_ok || seq_newer(seq_of(&e.rec), seq_of(cur)) {
        *cur = e.rec;
        true
    } else {
        false
    }
}

/// What the replay at open did.
#[derive(Debug, Default, Clone)]
pub struct Replay6 {
    /// Valid entries read from the log.
    pub entries: u64,
    /// Entries applied (the record was older or damaged).
    pub applied: u64,
    /// Why the replay stopped before the log's end, when an entry was torn or damaged (it
    /// and everything after it were discarded: never acknowledged).
    pub discarded: Option<String>,
}

impl Replay6 {
    pub(super) fn of(r: &Replay, applied: u64) -> Self {
        Replay6 {
            entries: r.entries,
            applied,
            discarded: r.discarded.clone(),
        }
    }
}
