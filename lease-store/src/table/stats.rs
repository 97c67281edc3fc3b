//! Per-pool counters by state.

use std::sync::atomic::Ordering;

use super::{LeaseTable, Slot};
use crate::lease::LeaseState;

/// Per-pool counts by state. Exact whenever no update is in flight.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct PoolStats {
    pub id: u32,
    pub total: u64,
    pub free: u64,
    pub offered: u64,
    pub active: u64,
    pub expired: u64,
    pub released: u64,
    pub declined: u64,
    pub abandoned: u64,
    pub backup: u64,
    pub reserved: u64,
    /// Records carrying `FLAG_QUARANTINED` (a subset of the states above, normally abandoned).
    pub quarantined: u64,
}

impl PoolStats {
    fn from_counts(id: u32, total: u64, c: &[u64; LeaseState::COUNT], quarantined: u64) -> Self {
        PoolStats {
            id,
            total,
            free: c[LeaseState::Free as usize],
            offered: c[LeaseState::Offered as usize],
            active: c[LeaseState::Active as usize],
            expired: c[LeaseState::Expired as usize],
            released: c[LeaseState::Released as usize],
            declined: c[LeaseState::Declined as usize],
            abandoned: c[LeaseState::Abandoned as usize],
            backup: c[LeaseState::Backup as usize],
            reserved: c[LeaseState::Reserved as usize],
            quarantined,
        }
    }
}

impl LeaseTable {
    /// Counters of one pool (by id); `None` for an unknown id.
    pub fn pool_stats(&self, pool: u32) -> Option<PoolStats> {
        let p = self.pool_idx(pool)?;
        let rt = self.rt(p);
        let mut c = [0u64; LeaseState::COUNT];
        for (d, s) in c.iter_mut().zip(rt.counts.iter()) {
            *d = s.load(Ordering::Relaxed);
        }
        Some(PoolStats::from_counts(
            pool,
            self.geo().pools[p].len(),
            &c,
            rt.quarantined.load(Ordering::Relaxed),
        ))
    }

    /// Counters of every pool, in file order.
    pub fn all_stats(&self) -> Vec<PoolStats> {
        self.geo()
            .pools
            .iter()
            .filter_map(|p| self.pool_stats(p.id))
            .collect()
    }

    /// Counts one pool by reading all its records (for checks and tools).
    pub fn recount(&self, pool: u32) -> Option<PoolStats> {
        let p = self.pool_idx(pool)?;
        let geo = self.geo();
        let n = geo.pools[p].len() as u32;
        let mut c = [0u64; LeaseState::COUNT];
        let mut q = 0;
        for s in geo.slot_ranges(p).flatten() {
            let l = self.read(Slot(s));
            c[l.state as usize] += 1;
            q += u64::from(l.is_quarantined());
        }
        Some(PoolStats::from_counts(pool, u64::from(n), &c, q))
    }
}
