//! The failover rules' [`BindingStore`] over the daemon's memory-mapped lease table.

use std::net::Ipv4Addr;

use lease_store::{DirtySet, Lease, LeaseTable};
use xdhcpd_failover::BindingStore;

/// The lease table seen by `xdhcpd_failover::BindingSync`; every record it changes is noted in
/// `dirty` for the group flush that must precede the BNDACK (or the grant's binding update).
pub(crate) struct TableStore<'a> {
    pub table: &'a LeaseTable,
    pub dirty: &'a mut DirtySet,
}

impl TableStore<'_> {
    /// Runs `f` with a store over `table` that it only reads (sending bindings, scanning): its
    /// dirty set is a throwaway, as nothing it does writes a record.
    pub fn read_only<R>(table: &LeaseTable, f: impl FnOnce(&TableStore<'_>) -> R) -> R {
        let mut no_writes = DirtySet::new();
        f(&TableStore {
            table,
            dirty: &mut no_writes,
        })
    }
}

impl BindingStore for TableStore<'_> {
    fn read(&self, addr: Ipv4Addr) -> Option<Lease> {
        self.table.slot_of(addr).map(|s| self.table.read(s))
    }

    fn update<R>(&mut self, addr: Ipv4Addr, f: impl FnOnce(&mut Lease) -> R) -> Option<(R, bool)> {
        let slot = self.table.slot_of(addr)?;
        let (r, changed) = self.table.update_tracked(slot, f);
        if changed {
            self.dirty.note(slot);
        }
        Some((r, changed))
    }

    fn for_each(&self, mut f: impl FnMut(&Lease)) {
        for (_, l) in self.table.iter() {
            f(&l);
        }
    }
}
