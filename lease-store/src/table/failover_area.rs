//! The failover state stored in the header (double-buffered, see `header`).

use super::{lock, LeaseTable};
use crate::error::StoreError;
use crate::header::{self, FAILOVER_CAPACITY, UNDO_LEN};

impl LeaseTable {
    /// The header bytes. Callers hold `header_lock` (or are inside `open`).
    pub(super) fn header_bytes(&self) -> &[u8] {
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
        let (off, len) = {
            let _g = lock(&self.header_lock);
            // SAFETY: as for header_bytes; we hold header_lock so nobody else
            // reads or writes the header while this exclusive slice lives.
            let h = unsafe {
                std::slice::from_raw_parts_mut(self.map.as_mut_ptr(), self.header_len - UNDO_LEN)
            };
            header::write_failover(h, bytes)
        };
        // Outside the header lock: a storage recovery takes it.
        self.sticky_flush(|| self.map.flush_range(off, len))
            .map_err(|e| StoreError::io(&self.path, "msync failover area", e))
    }
}
