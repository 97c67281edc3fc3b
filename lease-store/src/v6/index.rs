//! A fixed-capacity open-addressing index of record slots (linear probing,
//! backward-shift deletion). Sized once at open, it never allocates after,
//! so lookups and updates on the packet path are allocation-free. Several
//! entries may share a key (an IA with several addresses); callers compare
//! the record behind each candidate.

const EMPTY: u32 = u32::MAX;

pub(super) struct SlotIndex {
    slots: Vec<u32>,
    /// Home bucket hash of the entry in the same position (kept to shift without rehashing).
    hashes: Vec<u64>,
    mask: usize,
}

impl SlotIndex {
    /// An index for up to `capacity` entries (load factor at most 1/2).
    pub(super) fn new(capacity: usize) -> Self {
        let n = (capacity.max(1) * 2).next_power_of_two();
        SlotIndex {
            slots: vec![EMPTY; n],
            hashes: vec![0; n],
            mask: n - 1,
        }
    }

    pub(super) fn insert(&mut self, hash: u64, slot: u32) {
        let mut i = (hash as usize) & self.mask;
        while self.slots[i] != EMPTY {
            i = (i + 1) & self.mask;
        }
        self.slots[i] = slot;
        self.hashes[i] = hash;
    }

    /// Calls `f` on each slot stored under `hash` until it returns true; returns that slot.
    pub(super) fn find(&self, hash: u64, mut f: impl FnMut(u32) -> bool) -> Option<u32> {
        let mut i = (hash as usize) & self.mask;
        while self.slots[i] != EMPTY {
            if self.hashes[i] == hash && f(self.slots[i]) {
                return Some(self.slots[i]);
            }
            i = (i + 1) & self.mask;
        }
        None
    }

    /// Removes the entry (`hash`, `slot`); returns whether it was there.
    pub(super) fn remove(&mut self, hash: u64, slot: u32) -> bool {
        let mut i = (hash as usize) & self.mask;
        loop {
            if self.slots[i] == EMPTY {
                return false;
            }
            if self.slots[i] == slot && self.hashes[i] == hash {
                break;
            }
            i = (i + 1) & self.mask;
        }
        // Backward shift: move later entries of the run into the hole when their home
        // bucket does not lie cyclically in (hole, position].
        let mut hole = i;
        let mut j = (i + 1) & self.mask;
        while self.slots[j] != EMPTY {
            let home = (self.hashes[j] as usize) & self.mask;
            let in_range = if hole <= j {
                home > hole && home <= j
            } else {
                home > hole || home <= j
            };
            if !in_range {
                self.slots[hole] = self.slots[j];
                self.hashes[hole] = self.hashes[j];
                hole = j;
            }
            j = (j + 1) & self.mask;
        }
        self.slots[hole] = EMPTY;
        true
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn dhcpv6_index_insert_find_remove_with_collisions() {
        let mut ix = SlotIndex::new(8);
        // All in one bucket run, plus wrap-around.
        for s in 0..6u32 {
            ix.insert(7 + u64::from(s % 2) * 16, s);
        }
        for s in 0..6u32 {
            assert_eq!(ix.find(7 + u64::from(s % 2) * 16, |x| x == s), Some(s));
        }
        assert!(ix.remove(7, 0));
        assert!(!ix.remove(7, 0));
        for s in 1..6u32 {
            assert_eq!(
                ix.find(7 + u64::from(s % 2) * 16, |x| x == s),
                Some(s),
                "{s}"
            );
        }
        assert_eq!(ix.find(7, |x| x == 0), None);
    }
}
