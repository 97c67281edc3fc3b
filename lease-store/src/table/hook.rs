//! A change hook: one observer told of every record change, under the record's lock.
//!
//! Whatever changes a record (a worker's offer or ACK, a release, a decline, the expiry
//! sweeper, a failover partner's update, a reload freeing a reservation) goes through
//! `apply_locked`, which calls the hook with the record before and after. Per-key counters
//! kept by deltas (old out, new in) therefore stay exact whatever the writer, and one
//! record's changes reach the hook in the order they were made.

use std::sync::Arc;

use crate::lease::Lease;

use super::LeaseTable;

/// Told of every record change (not of unchanged rewrites). Runs under the record's lock on
/// the packet path: it must be short, must not block and must not touch the table.
pub trait ChangeHook: Send + Sync {
    /// Record of pool `pool` went from `old` to `new`.
    fn record_changed(&self, pool: u32, old: &Lease, new: &Lease);
}

impl LeaseTable {
    /// Installs the change hook (once; a second call returns false and changes nothing).
    /// Install it before anything writes records that the hook's owner counts, then count
    /// what is already there (`iter`).
    pub fn set_change_hook(&self, hook: Arc<dyn ChangeHook>) -> bool {
        self.hook.set(hook).is_ok()
    }

    #[inline]
    pub(super) fn notify_change(&self, slot: u32, old: &Lease, new: &Lease) {
        if let Some(h) = self.hook.get() {
            h.record_changed(self.pool_of_slot(super::Slot(slot)), old, new);
        }
    }
}
