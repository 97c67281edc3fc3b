//! Background expiry: a persistent cursor over the records.

use std::sync::atomic::Ordering;

use super::{LeaseTable, Slot};
use crate::lease::LeaseState;

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

impl LeaseTable {
    /// Background expiry: visits up to `budget` records from a persistent
    /// cursor. Offered/Active with `expiry <= now` (but a permanent BOOTP binding,
    /// [`crate::FLAG_BOOTP`]) become Expired (free again,
    /// client key kept so the client can get it back); Declined whose
    /// quarantine (`expiry`) ended become Free; free records missing from the
    /// free lists are put back. Each change is a normal per-record update, so
    /// workers are never stalled.
    pub fn sweep_expired(&self, now: u32, budget: usize) -> SweepResult {
        let n = u64::from(self.geo().total);
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
                // A permanent (dynamic BOOTP) binding never ends, whatever its expiry says
                // (a partner may send its own "forever", ISC dhcpd 0x7fffffff).
                LeaseState::Active | LeaseState::Offered
                    if l.expiry <= now && !l.is_permanent() =>
                {
                    let done = self.update(Slot(slot), |l| {
                        let go = matches!(l.state, LeaseState::Active | LeaseState::Offered)
                            && l.expiry <= now
                            && !l.is_permanent();
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
}
