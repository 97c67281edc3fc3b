//! Durability: `flush` for everything, `flush_set` for one batch's records
//! (group commit).

use std::io;

use super::{LeaseTable, Slot};
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

impl LeaseTable {
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
}
