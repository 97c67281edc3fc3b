//! The client index: client key -> slot, sharded, holding slot numbers only.

use std::sync::{RwLock, RwLockReadGuard, RwLockWriteGuard};

use hashbrown::HashTable;

use super::record::load_words;
use super::{LeaseTable, Slot};
use crate::lease::{key_hash, ClientKey, Lease, LeaseState};

/// Client index shards (power of two). Each shard is an `RwLock` around a
/// table of slot numbers; see `LeaseTable::index`.
pub(super) const INDEX_SHARDS: usize = 64;

/// Where a client key goes in the index. From the key's 64-bit hash: the
/// low bits pick the shard; the high 32 bits (`tag`) are stored in the entry
/// next to the slot, and the table hash is derived from the tag alone, so a
/// shard can grow without reading records, and a lookup reads a record only
/// when the 32-bit tags match.
#[derive(Clone, Copy)]
pub(super) struct IndexPos {
    pub(super) shard: usize,
    tag: u32,
}

impl IndexPos {
    #[inline]
    pub(super) fn of(seed: u64, key: &ClientKey) -> Self {
        let h = key_hash(seed, key);
        IndexPos {
            shard: (h as usize) & (INDEX_SHARDS - 1),
            tag: (h >> 32) as u32,
        }
    }
    /// Table hash: hashbrown uses the low bits for the bucket and the top 7
    /// for its control byte; both come from the tag.
    #[inline]
    fn hash(self) -> u64 {
        entry_hash(self.entry(0))
    }
    #[inline]
    pub(super) fn entry(self, slot: u32) -> u64 {
        (u64::from(self.tag) << 32) | u64::from(slot)
    }
}

#[inline]
fn entry_hash(e: u64) -> u64 {
    let tag = e >> 32;
    tag | (tag << 32)
}

#[inline]
fn entry_slot(e: u64) -> u32 {
    e as u32
}

#[inline]
fn entry_tag(e: u64) -> u32 {
    (e >> 32) as u32
}

fn read_lock<T>(l: &RwLock<T>) -> RwLockReadGuard<'_, T> {
    l.read().unwrap_or_else(|e| e.into_inner())
}

pub(super) fn write_lock<T>(l: &RwLock<T>) -> RwLockWriteGuard<'_, T> {
    l.write().unwrap_or_else(|e| e.into_inner())
}

fn rank(l: &Lease) -> (u8, u32) {
    let r = match l.state {
        LeaseState::Reserved => 4,
        LeaseState::Active => 3,
        LeaseState::Offered => 2,
        LeaseState::Expired | LeaseState::Released => 1,
        _ => 0,
    };
    (r, l.expiry)
}

impl LeaseTable {
    /// Index insert during open (no writers exist). Of two records with the
    /// same key the better one (state rank, expiry) wins.
    pub(super) fn index_insert_open(&self, ht: &mut HashTable<u64>, e: u64) {
        let (slot, tag) = (entry_slot(e), entry_tag(e));
        let same =
            |x: &u64| entry_tag(*x) == tag && self.key_at(entry_slot(*x)) == self.key_at(slot);
        match ht.find_mut(entry_hash(e), same) {
            Some(x) => {
                let mine = self.decode_at(slot, &load_words(self.words(slot)));
                let other = self.decode_at(entry_slot(*x), &load_words(self.words(entry_slot(*x))));
                if rank(&mine) > rank(&other) {
                    *x = e;
                }
            }
            None => {
                ht.insert_unique(entry_hash(e), e, |x| entry_hash(*x));
            }
        }
    }

    /// Client key currently in a record (seqlock read).
    #[inline]
    fn key_at(&self, slot: u32) -> ClientKey {
        Lease::decode_lossy(&self.read_bytes(slot)).client
    }

    /// Index maintenance after a record's client changed (runs unlocked).
    pub(super) fn reindex(&self, slot: u32, old: &ClientKey, new: &ClientKey) {
        if old == new {
            return;
        }
        if !old.is_none() {
            self.index_remove(old, slot);
        }
        if !new.is_none() {
            self.index_insert(new, slot);
        }
    }

    fn index_remove(&self, key: &ClientKey, slot: u32) {
        let pos = IndexPos::of(self.seed, key);
        let mut ht = write_lock(&self.index[pos.shard]);
        if let Ok(e) = ht.find_entry(pos.hash(), |x| *x == pos.entry(slot)) {
            e.remove();
        }
    }

    fn index_insert(&self, key: &ClientKey, slot: u32) {
        let pos = IndexPos::of(self.seed, key);
        {
            let mut ht = write_lock(&self.index[pos.shard]);
            // Same slot already there, or the same client at another record:
            // the newest binding wins.
            let same = |x: &u64| {
                entry_tag(*x) == pos.tag
                    && (entry_slot(*x) == slot || self.key_at(entry_slot(*x)) == *key)
            };
            match ht.find_mut(pos.hash(), same) {
                Some(x) => *x = pos.entry(slot),
                None => {
                    ht.insert_unique(pos.hash(), pos.entry(slot), |x| entry_hash(*x));
                }
            }
        }
        // A concurrent reassignment of `slot` may have run its removal before
        // this insert: do not leave a stale entry behind.
        if self.key_at(slot) != *key {
            self.index_remove(key, slot);
        }
    }

    /// The record bound to `key`: its key equals `key` and its state is one
    /// of Offered, Active, Expired, Released, Reserved. The copy returned is a
    /// snapshot; re-check it inside `update` before acting on it.
    pub fn find_client(&self, key: &ClientKey) -> Option<(Slot, Lease)> {
        if key.is_none() {
            return None;
        }
        let pos = IndexPos::of(self.seed, key);
        let s = {
            let ht = read_lock(&self.index[pos.shard]);
            let same = |x: &u64| entry_tag(*x) == pos.tag && self.key_at(entry_slot(*x)) == *key;
            entry_slot(*ht.find(pos.hash(), same)?)
        };
        let l = self.read(Slot(s));
        (l.client == *key && l.state.binds_client()).then_some((Slot(s), l))
    }
}
