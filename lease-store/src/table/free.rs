//! Free lists and allocation: per (pool, owner, shard) FIFO lists of free
//! slots, a bitmap saying which slots are listed, and stealing between shards.

use std::sync::atomic::Ordering;
use std::sync::{Mutex, MutexGuard, TryLockError};

use super::record::VarEdit;
use super::{lock, LeaseTable, Slot};
use crate::lease::{Lease, LeaseState, Owner};

/// How many addresses a shard takes from another shard's free list at once.
const STEAL_BATCH: usize = 32;

/// Result of [`LeaseTable::allocate_if`].
#[derive(Debug, PartialEq, Eq)]
pub enum Alloc<R> {
    /// The record was taken; `f` returned this.
    Taken(Slot, R),
    /// `f` refused the record offered to it; it is back on its free list.
    Refused,
    /// No free address of that owner in the pool.
    Empty,
}

fn try_lock<T>(m: &Mutex<T>) -> Option<MutexGuard<'_, T>> {
    match m.try_lock() {
        Ok(g) => Some(g),
        Err(TryLockError::Poisoned(e)) => Some(e.into_inner()),
        Err(TryLockError::WouldBlock) => None,
    }
}

impl LeaseTable {
    #[inline]
    fn home_shard(&self, slot: u32) -> usize {
        let geo = self.geo();
        ((slot - geo.bases[geo.ext_idx_of_slot(slot)]) as usize) % self.shards
    }

    pub(super) fn set_free_bit(&self, owner: Owner, slot: u32) -> bool {
        let m = 1u64 << (slot % 64);
        self.in_free[owner.idx()][(slot / 64) as usize].fetch_or(m, Ordering::AcqRel) & m == 0
    }

    fn clear_free_bit(&self, owner: Owner, slot: u32) {
        let m = 1u64 << (slot % 64);
        self.in_free[owner.idx()][(slot / 64) as usize].fetch_and(!m, Ordering::AcqRel);
    }

    pub(super) fn free_bit(&self, owner: Owner, slot: u32) -> bool {
        let m = 1u64 << (slot % 64);
        self.in_free[owner.idx()][(slot / 64) as usize].load(Ordering::Acquire) & m != 0
    }

    /// Puts `slot` on its home free list of `owner` unless it is on one already.
    pub(super) fn push_free(&self, p: usize, slot: u32, owner: Owner) -> bool {
        if !self.set_free_bit(owner, slot) {
            return false;
        }
        let sh = self.home_shard(slot);
        lock(&self.rt(p).free[owner.idx()][sh]).push_back(slot);
        true
    }

    /// Pops a candidate from the shard's list, else steals a batch from the
    /// back of another shard's list (try_lock only: never waits on another shard).
    fn pop_free(&self, p: usize, shard: usize, owner: Owner) -> Option<u32> {
        let lists = &self.rt(p).free[owner.idx()];
        if let Some(s) = lock(&lists[shard]).pop_front() {
            self.clear_free_bit(owner, s);
            return Some(s);
        }
        let n = lists.len();
        let mut stolen = [0u32; STEAL_BATCH];
        for _round in 0..2 {
            for k in 1..n {
                let victim = (shard + k) % n;
                let Some(mut vq) = try_lock(&lists[victim]) else {
                    continue;
                };
                let take = vq.len().div_ceil(2).min(STEAL_BATCH);
                if take == 0 {
                    continue;
                }
                for s in stolen.iter_mut().take(take) {
                    *s = vq.pop_back().unwrap_or(u32::MAX);
                }
                drop(vq);
                let first = stolen[0];
                if take > 1 {
                    // These keep their in-free bit: they are still on a list.
                    lock(&lists[shard]).extend(stolen[1..take].iter().copied());
                }
                self.clear_free_bit(owner, first);
                return Some(first);
            }
            std::hint::spin_loop();
        }
        None
    }

    /// Takes a free address of `pool` for `owner` (Primary: Free, Released,
    /// or Expired with `expiry <= now`; Backup: Backup) from `shard`'s list,
    /// stealing from other shards when it is empty. Under the record lock it
    /// re-checks that the record is still free, then runs `f` on it (with
    /// `shard` already set); `f` must move it out of the free states, normally
    /// to Offered with the client's key. Returns `None` when the pool (or the
    /// id) has no free address. Never scans the table.
    pub fn allocate<R>(
        &self,
        pool: u32,
        shard: usize,
        now: u32,
        owner: Owner,
        f: impl FnOnce(&mut Lease) -> R,
    ) -> Option<(Slot, R)> {
        match self.allocate_if(pool, shard, now, owner, |l| Some(f(l))) {
            Alloc::Taken(slot, r) => Some((slot, r)),
            Alloc::Refused | Alloc::Empty => None,
        }
    }

    /// Like [`allocate`](Self::allocate), but `f` may refuse the record (return
    /// `None`, leaving it unchanged): it then goes back to the tail of its free
    /// list and `Alloc::Refused` is returned. Failover uses this to skip
    /// released/expired addresses the partner has not acknowledged yet.
    /// Callers bound their retries (every refusal requeues the address).
    pub fn allocate_if<R>(
        &self,
        pool: u32,
        shard: usize,
        now: u32,
        owner: Owner,
        f: impl FnOnce(&mut Lease) -> Option<R>,
    ) -> Alloc<R> {
        self.allocate_if_var(pool, shard, now, owner, |l, _| f(l))
    }

    /// [`allocate_if`](Self::allocate_if) for writers of variable data (see
    /// [`update_var`](Self::update_var)).
    pub fn allocate_if_var<'d, R>(
        &self,
        pool: u32,
        shard: usize,
        now: u32,
        owner: Owner,
        f: impl FnOnce(&mut Lease, &mut VarEdit<'_, 'd>) -> Option<R>,
    ) -> Alloc<R> {
        let Some(p) = self.pool_idx(pool) else {
            return Alloc::Empty;
        };
        let shard = shard % self.shards;
        let (slot, mut g, raw, old) = loop {
            let Some(slot) = self.pop_free(p, shard, owner) else {
                self.note_exhausted(owner);
                return Alloc::Empty;
            };
            let g = self.lock_record(slot);
            let raw = g.bytes();
            let old = self.decode_at(slot, &raw);
            let usable = old.state.is_free_for(owner)
                && !old.is_quarantined()
                && !(old.state == LeaseState::Expired && old.expiry > now);
            if usable {
                break (slot, g, raw, old);
            }
            // Stale list entry (the record was bound meanwhile): drop it.
        };
        let mut new = old;
        new.shard = shard as u16;
        let mut ve = VarEdit::new(self, slot, old.var);
        let Some(r) = f(&mut new, &mut ve) else {
            drop(g);
            self.push_free(p, slot, owner);
            return Alloc::Refused;
        };
        self.apply_locked(slot, &mut g, &raw, &old, &mut new, ve.src().as_ref());
        drop(g);
        self.reindex(slot, &old.client, &new.client);
        Alloc::Taken(Slot(slot), r)
    }

    /// True when some allocation for `owner` found a pool's free lists empty since the last
    /// call (then cleared). Also set when stealing from other shards failed only because their
    /// lists were busy, so treat it as a hint to look at [`pool_stats`](Self::pool_stats).
    pub fn take_exhausted(&self, owner: Owner) -> bool {
        self.exhausted[owner.idx()].swap(false, Ordering::Relaxed)
    }

    /// Packet path: a plain load first, so an exhausted pool does not make every worker write
    /// the same cache line on every DISCOVER.
    fn note_exhausted(&self, owner: Owner) {
        let f = &self.exhausted[owner.idx()];
        if !f.load(Ordering::Relaxed) {
            f.store(true, Ordering::Relaxed);
        }
    }
}
