//! Durability: `flush` for everything, `flush_set` for one batch's records
//! (group commit), both under the sticky-error rule ([`FlushState`]).

use std::io;
use std::sync::atomic::{AtomicBool, AtomicU32, AtomicU64, Ordering};
use std::sync::Mutex;

use super::{lock, LeaseTable, Slot};

/// The page size the file layout assumes (header length and record runs are multiples of it).
const PAGE: usize = 4096;
use crate::header::UNDO_LEN;
use crate::lease::RECORD_SIZE;

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

/// Sticky storage errors. Linux reports a failed writeback of a mapped file once (to
/// whichever `msync` checks the file next, whatever range it covers) and may mark the failed
/// pages clean: a later `msync` then returns 0 although the data never reached the disk. So
/// after any failure nothing written since the last good flush is trusted until every page of
/// the file has been dirtied again and one whole-file flush has succeeded.
#[derive(Debug, Default)]
pub(super) struct FlushState {
    /// Failed flushes so far (a flush that saw this change while it ran cannot trust its
    /// own success: the error it did not see may have been its pages').
    pub(super) failures: AtomicU64,
    /// A failure has not been covered by a whole-file rewrite and flush yet.
    poisoned: AtomicBool,
    /// One recovery at a time.
    recovering: Mutex<()>,
    /// The last failure's text (for the daemon's status), kept after recovery.
    last_error: Mutex<Option<String>>,
}

impl LeaseTable {
    /// Flushes that failed since the table was opened.
    pub fn flush_failures(&self) -> u64 {
        self.flush_state.failures.load(Ordering::Relaxed)
    }

    /// A flush failed and no whole-file recovery has succeeded since: every flush fails (so no
    /// reply that depends on one leaves) until one does.
    pub fn storage_failed(&self) -> bool {
        self.flush_state.poisoned.load(Ordering::Acquire)
    }

    /// The last flush failure's text (None: no flush has failed since the table was opened).
    pub fn last_flush_error(&self) -> Option<String> {
        lock(&self.flush_state.last_error).clone()
    }

    /// Runs `op` (an msync) under the sticky-error rule.
    pub(super) fn sticky_flush(&self, op: impl FnOnce() -> io::Result<()>) -> io::Result<()> {
        let st = &self.flush_state;
        if st.poisoned.load(Ordering::Acquire) {
            return self.recover();
        }
        let before = st.failures.load(Ordering::Acquire);
        if let Err(e) = op() {
            self.note_flush_failure(&e);
            return Err(e);
        }
        if st.failures.load(Ordering::Acquire) != before {
            // Another flush failed while ours ran: its error may have been about our pages.
            return self.recover();
        }
        Ok(())
    }

    /// The recovery after a storage error: with a write-ahead log it also restarts the log past
    /// the failed writes (so it goes through the log's writer), without one a rewrite and flush.
    fn recover(&self) -> io::Result<()> {
        if self.wal.is_some() {
            self.commit()
        } else {
            self.recover_storage()
        }
    }

    pub(super) fn note_flush_failure(&self, e: &io::Error) {
        let st = &self.flush_state;
        st.failures.fetch_add(1, Ordering::AcqRel);
        *lock(&st.last_error) = Some(e.to_string());
        if !st.poisoned.swap(true, Ordering::AcqRel) {
            tracing::error!(
                path = %self.path.display(),
                "lease file flush failed: {e}; no reply that depends on a record written since \
                 the last good flush leaves until the whole file has been rewritten and flushed"
            );
        }
    }

    /// Dirties every page of the file again (a compare-exchange of a word with its own value per
    /// page, so a concurrent record writer is never overwritten) and flushes the whole file. Clears the
    /// sticky error on success.
    pub(super) fn recover_storage(&self) -> io::Result<()> {
        let st = &self.flush_state;
        let _one = lock(&st.recovering);
        let before = st.failures.load(Ordering::Acquire);
        {
            // The header is written non-atomically, under `header_lock` only.
            let _h = lock(&self.header_lock);
            for off in (0..self.header_len - UNDO_LEN).step_by(PAGE) {
                // SAFETY: `off` < header_len <= mapped length; header bytes are only accessed
                // under `header_lock`, which we hold.
                unsafe {
                    let p = self.map.as_mut_ptr().add(off);
                    p.write_volatile(p.read_volatile());
                }
            }
        }
        let end = self.header_len + self.geo().total as usize * RECORD_SIZE;
        for off in (self.header_len - UNDO_LEN..end).step_by(PAGE) {
            // SAFETY: the undo area (the header's last pages) and the records that follow
            // start page-aligned, so `off` starts a 128-byte record or undo copy inside the
            // mapping, 4-byte aligned; that memory is only ever accessed through atomics
            // (module docs), so an atomic no-op read-modify-write races with nobody.
            let w = unsafe { AtomicU32::from_ptr(self.map.as_mut_ptr().add(off).cast::<u32>()) };
            // A successful compare-exchange stores. Not `fetch_or(0)`: LLVM turns an idempotent
            // read-modify-write into a plain load, which dirties nothing (seen in release builds).
            let mut v = w.load(Ordering::Relaxed);
            while let Err(now) = w.compare_exchange_weak(v, v, Ordering::Relaxed, Ordering::Relaxed)
            {
                v = now;
            }
        }
        self.side.redirty(self.geo().total);
        match self.side.flush().and_then(|()| self.map.flush()) {
            Err(e) => {
                self.note_flush_failure(&e);
                Err(e)
            }
            Ok(()) if st.failures.load(Ordering::Acquire) != before => Err(io::Error::other(
                "another flush failed during the storage recovery; retrying later",
            )),
            Ok(()) => {
                if st.poisoned.swap(false, Ordering::AcqRel) {
                    tracing::warn!(
                        path = %self.path.display(),
                        "lease file rewritten and flushed after a storage error: serving again"
                    );
                }
                Ok(())
            }
        }
    }
}

impl LeaseTable {
    /// Makes every change so far durable (`msync(MS_SYNC)` over the whole
    /// mapping; the kernel writes only dirty pages). For the interval mode.
    /// With a write-ahead log this is a checkpoint (the log before it is dropped).
    pub fn flush(&self) -> io::Result<()> {
        self.checkpoint()
    }

    /// Makes the records in `set` durable (one `msync(MS_SYNC)` over their
    /// page range) and clears the set: group commit for one worker batch.
    /// With a write-ahead log: one group commit of the log ([`LeaseTable::commit`]), which
    /// covers the set's records (and every other change so far).
    pub fn flush_set(&self, set: &mut DirtySet) -> io::Result<()> {
        if set.is_empty() {
            return Ok(());
        }
        if self.wal.is_some() {
            self.commit()?;
            set.clear();
            return Ok(());
        }
        let off = self.header_len + set.lo as usize * RECORD_SIZE;
        let len = (set.hi - set.lo) as usize * RECORD_SIZE + RECORD_SIZE;
        self.sticky_flush(|| {
            self.side
                .flush_slots(set.lo, set.hi)
                .and_then(|()| self.map.flush_range(off, len))
        })?;
        set.clear();
        Ok(())
    }
}
