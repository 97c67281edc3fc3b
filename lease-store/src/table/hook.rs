//! Change hooks: up to [`MAX_HOOKS`] observers told of every record change, under the
//! record's lock (the lease caps' counts, active leasequery's change feed).
//!
//! Whatever changes a record (a worker's offer or ACK, a release, a decline, the expiry
//! sweeper, a failover partner's update, a reload freeing a reservation) goes through
//! `apply_locked`, which calls the hook with the record before and after. Per-key counters
//! kept by deltas (old out, new in) therefore stay exact whatever the writer, and one
//! record's changes reach the hook in the order they were made.

use std::sync::Arc;

use crate::lease::{Lease, VarData};

use super::LeaseTable;

/// Told of every record change (not of unchanged rewrites). Runs under the record's lock on
/// the packet path: it must be short, must not block and must not touch the table.
pub trait ChangeHook: Send + Sync {
    /// Record of pool `pool` went from `old` to `new`.
    fn record_changed(&self, pool: u32, old: &Lease, new: &Lease);

    /// The same with the record's slot index (what [`LeaseTable::slot`] takes); the default
    /// calls [`ChangeHook::record_changed`].
    fn record_changed_at(&self, slot: u32, pool: u32, old: &Lease, new: &Lease) {
        let _ = slot;
        self.record_changed(pool, old, new);
    }

    /// Whether this hook reads the records' variable data (option 82 whole, host name,
    /// vendor class). Asked once, when the hook is set; then every change costs a read of
    /// the side area, so only hooks that need the data say yes.
    fn wants_var(&self) -> bool {
        false
    }

    /// [`record_changed_at`](Self::record_changed_at) with the variable data before and
    /// after, for a hook whose [`wants_var`](Self::wants_var) is true.
    fn record_changed_var(
        &self,
        slot: u32,
        pool: u32,
        old: (&Lease, &VarData),
        new: (&Lease, &VarData),
    ) {
        self.record_changed_at(slot, pool, old.0, new.0);
    }
}

/// How many change hooks a table takes.
pub const MAX_HOOKS: usize = 4;

impl LeaseTable {
    /// Installs a change hook (at most [`MAX_HOOKS`]; one more returns false and changes
    /// nothing). Install it before anything writes records that the hook's owner counts,
    /// then count what is already there (`iter`). Hooks are never removed.
    pub fn set_change_hook(&self, hook: Arc<dyn ChangeHook>) -> bool {
        if hook.wants_var() {
            self.var_hooks
                .store(true, std::sync::atomic::Ordering::Relaxed);
        }
        let mut hook = Some(hook);
        for cell in &self.hooks {
            if let Some(h) = hook.take() {
                match cell.set(h) {
                    Ok(()) => return true,
                    Err(h) => hook = Some(h),
                }
            }
        }
        false
    }

    #[inline]
    pub(super) fn notify_change(&self, slot: u32, old: &Lease, new: &Lease) {
        let Some(first) = self.hooks[0].get() else {
            return;
        };
        let pool = self.pool_of_slot(super::Slot(slot));
        first.record_changed_at(slot, pool, old, new);
        for cell in &self.hooks[1..] {
            match cell.get() {
                Some(h) => h.record_changed_at(slot, pool, old, new),
                None => return,
            }
        }
    }

    /// [`notify_change`](Self::notify_change) with the variable data before and after.
    pub(super) fn notify_change_var(
        &self,
        slot: u32,
        old: &Lease,
        old_var: &VarData,
        new: &Lease,
        new_var: &VarData,
    ) {
        let pool = self.pool_of_slot(super::Slot(slot));
        for cell in &self.hooks {
            match cell.get() {
                Some(h) if h.wants_var() => {
                    h.record_changed_var(slot, pool, (old, old_var), (new, new_var))
                }
                Some(h) => h.record_changed_at(slot, pool, old, new),
                None => return,
            }
        }
    }
}
