//! The failover rules' [`BindingStore`] over the daemon's memory-mapped lease table, limited to
//! the pools of one failover relationship ([`PoolScope`]).

use std::net::Ipv4Addr;

use lease_store::{DirtySet, Lease, LeaseTable, Slot, VarData};
use xdhcpd_config::PoolBalanceCfg;
use xdhcpd_failover::BindingStore;

/// The pools one relationship covers (by pool id). A server in several relationships (N:1
/// backup) keeps them apart: each relationship's driver reads, sends, scans and writes only
/// records of its own pools, and a partner's update for another relationship's address is
/// refused like one for an address in no pool.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub(crate) struct PoolScope {
    pools: Vec<bool>,
}

impl PoolScope {
    /// The pools listed in a relationship's `pools` (its subnets' pools).
    pub(crate) fn of(pools: &[PoolBalanceCfg]) -> Self {
        let mut v = Vec::new();
        for p in pools {
            let i = p.pool_id as usize;
            if v.len() <= i {
                v.resize(i + 1, false);
            }
            v[i] = true;
        }
        PoolScope { pools: v }
    }

    pub(crate) fn contains_pool(&self, id: u32) -> bool {
        self.pools.get(id as usize).copied().unwrap_or(false)
    }

    pub(crate) fn contains_slot(&self, table: &LeaseTable, slot: Slot) -> bool {
        self.contains_pool(table.pool_of_slot(slot))
    }

    /// The slot of `addr` when it lies in one of these pools.
    pub(crate) fn slot_of(&self, table: &LeaseTable, addr: Ipv4Addr) -> Option<Slot> {
        table
            .slot_of(addr)
            .filter(|&s| self.contains_slot(table, s))
    }
}

/// The lease table seen by `xdhcpd_failover::BindingSync`; every record it changes is noted in
/// `dirty` for the group flush that must precede the BNDACK (or the grant's binding update).
pub(crate) struct TableStore<'a> {
    pub table: &'a LeaseTable,
    pub dirty: &'a mut DirtySet,
    pub scope: &'a PoolScope,
}

impl TableStore<'_> {
    /// Runs `f` with a store over `table` that it only reads (sending bindings, scanning): its
    /// dirty set is a throwaway, as nothing it does writes a record.
    pub fn read_only<R>(
        table: &LeaseTable,
        scope: &PoolScope,
        f: impl FnOnce(&TableStore<'_>) -> R,
    ) -> R {
        let mut no_writes = DirtySet::new();
        f(&TableStore {
            table,
            dirty: &mut no_writes,
            scope,
        })
    }
}

impl BindingStore for TableStore<'_> {
    fn read(&self, addr: Ipv4Addr) -> Option<Lease> {
        self.scope
            .slot_of(self.table, addr)
            .map(|s| self.table.read(s))
    }

    fn update<R>(&mut self, addr: Ipv4Addr, f: impl FnOnce(&mut Lease) -> R) -> Option<(R, bool)> {
        let slot = self.scope.slot_of(self.table, addr)?;
        let (r, changed) = self.table.update_tracked(slot, f);
        if changed {
            self.dirty.note(slot);
        }
        Some((r, changed))
    }

    fn for_each(&self, mut f: impl FnMut(&Lease)) {
        for (slot, l) in self.table.iter() {
            if self.scope.contains_slot(self.table, slot) {
                f(&l);
            }
        }
    }

    fn var_of(&self, l: &Lease) -> VarData {
        if !l.var.is_side() {
            return l.var.inline_data();
        }
        let Some(slot) = self.scope.slot_of(self.table, l.addr) else {
            return VarData::EMPTY;
        };
        let (now, v) = self.table.read_with_var(slot);
        // The same handle names the same data; else the record changed since (and is sent
        // again with its new data).
        if now.var == l.var {
            v
        } else {
            VarData::EMPTY
        }
    }

    fn update_full<R>(
        &mut self,
        addr: Ipv4Addr,
        f: impl FnOnce(&mut Lease, &mut VarData) -> R,
    ) -> Option<(R, bool)> {
        // Only this relationship's pools (N:1), as `update`.
        let slot = self.scope.slot_of(self.table, addr)?;
        let (r, changed) = self.table.update_full(slot, f);
        if changed {
            self.dirty.note(slot);
        }
        Some((r, changed))
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use lease_store::{OpenOptions, PoolSpec};
    use xdhcpd_failover::{Binding, BindingStatus, BindingSync, Config, Role};

    /// N:1: one lease table holds two relationships' pools; a partner's update for the other
    /// relationship's address is refused as outside this relationship's pools, and scans see
    /// only its own records.
    #[test]
    fn failover_n1_scope_keeps_relationships_apart() {
        let dir = tempfile::tempdir().expect("tempdir");
        let pools = [
            PoolSpec {
                id: 0,
                first: Ipv4Addr::new(10, 0, 0, 10),
                last: Ipv4Addr::new(10, 0, 0, 19),
            },
            PoolSpec {
                id: 1,
                first: Ipv4Addr::new(10, 0, 1, 10),
                last: Ipv4Addr::new(10, 0, 1, 19),
            },
        ];
        let (table, _) =
            LeaseTable::open(&dir.path().join("l.db"), &pools, &OpenOptions::default())
                .expect("open");
        let scope = PoolScope::of(&[PoolBalanceCfg {
            pool_id: 1,
            backup_pct: None,
            boundary: None,
            dynamic_bootp: false,
        }]);
        let now = 1_800_000_000;
        let mut sync: BindingSync<u32> =
            BindingSync::new(Config::new(Role::Secondary, "b").store_rules());
        let mut dirty = DirtySet::new();
        let mut store = TableStore {
            table: &table,
            dirty: &mut dirty,
            scope: &scope,
        };
        let mut ours = Binding::free(Ipv4Addr::new(10, 0, 1, 12), now);
        ours.status = BindingStatus::Backup;
        assert!(sync.apply(&mut store, now, &ours).is_ok());
        let mut theirs = Binding::free(Ipv4Addr::new(10, 0, 0, 12), now);
        theirs.status = BindingStatus::Backup;
        let refused = sync.apply(&mut store, now, &theirs);
        assert!(
            matches!(
                refused,
                Err((xdhcpd_failover::RejectReason::IllegalIpAddress, _))
            ),
            "{refused:?}"
        );
        assert_ne!(
            table.read(table.slot_of(theirs.addr).expect("slot")).state,
            lease_store::LeaseState::Backup,
            "the other relationship's record was written"
        );
        let mut seen = Vec::new();
        store.for_each(|l| seen.push(l.addr));
        assert_eq!(seen.len(), 10);
        assert!(seen.iter().all(|a| a.octets()[2] == 1), "{seen:?}");
        assert!(store.read(Ipv4Addr::new(10, 0, 0, 10)).is_none());
    }
}
