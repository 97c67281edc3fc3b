//! Record access under the per-record sequence lock: reads, the write lock,
//! and `update`, which keeps counters, free lists and the client index in step.

use std::net::Ipv4Addr;
use std::sync::atomic::{fence, AtomicBool, AtomicU32, Ordering};

use super::{LeaseTable, Slot};
use crate::lease::{record_crc, Lease, RECORD_SIZE, RECORD_WORDS};

/// Held record lock; releases (seq + 1, even) on drop, also on unwind.
pub(super) struct RecGuard<'a> {
    w: &'a [AtomicU32; RECORD_WORDS],
    pub(super) odd: u32,
    /// Whether the body was rewritten. An unchanged record gets its old
    /// sequence back, so a never-used (all-zero) record stays pristine
    /// instead of carrying a sequence with no checksum.
    wrote: std::cell::Cell<bool>,
    /// Undo slot claimed for this write (released after the unlock).
    pub(super) undo: Option<&'a AtomicBool>,
}

impl RecGuard<'_> {
    pub(super) fn bytes(&self) -> [u8; RECORD_SIZE] {
        load_words(self.w)
    }
    fn store(&self, b: &[u8; RECORD_SIZE]) {
        self.wrote.set(true);
        store_body(self.w, b);
    }
}

impl Drop for RecGuard<'_> {
    fn drop(&mut self) {
        // Readers of a seqlock accept old == new sequence only when nothing
        // changed, which is exactly the case where the old value comes back.
        let seq = if self.wrote.get() {
            self.odd.wrapping_add(1)
        } else {
            self.odd.wrapping_sub(1)
        };
        self.w[0].store(seq, Ordering::Release);
        if let Some(busy) = self.undo {
            busy.store(false, Ordering::Release);
        }
    }
}

#[inline]
pub(super) fn load_words(w: &[AtomicU32; RECORD_WORDS]) -> [u8; RECORD_SIZE] {
    let mut b = [0u8; RECORD_SIZE];
    for (i, a) in w.iter().enumerate() {
        b[i * 4..i * 4 + 4].copy_from_slice(&a.load(Ordering::Relaxed).to_ne_bytes());
    }
    b
}

/// Stores words 2.. and then word 1 (CRC); word 0 (seq) is left alone.
#[inline]
pub(super) fn store_body(w: &[AtomicU32; RECORD_WORDS], b: &[u8; RECORD_SIZE]) {
    let word = |i: usize| u32::from_ne_bytes([b[i * 4], b[i * 4 + 1], b[i * 4 + 2], b[i * 4 + 3]]);
    for (i, a) in w.iter().enumerate().skip(2) {
        a.store(word(i), Ordering::Relaxed);
    }
    // The CRC goes last, also for the compiler (crash consistency, see module doc).
    fence(Ordering::Release);
    w[1].store(word(1), Ordering::Relaxed);
}

impl LeaseTable {
    /// The record's 32 words.
    #[inline]
    pub(super) fn words(&self, slot: u32) -> &[AtomicU32; RECORD_WORDS] {
        assert!(
            slot < self.geo().total,
            "slot {slot} out of range ({} records): slot from another table",
            self.geo().total
        );
        // SAFETY: in bounds (checked above; the map covers header_len +
        // total * RECORD_SIZE bytes), 4-byte aligned (page-aligned map, header
        // a multiple of 4096, records of 128 bytes), valid for &self's lifetime
        // (the map lives in self), and only ever accessed through atomics (see
        // the module documentation).
        unsafe {
            &*(self
                .map
                .as_mut_ptr()
                .add(self.header_len + slot as usize * RECORD_SIZE)
                as *const [AtomicU32; RECORD_WORDS])
        }
    }

    /// Seqlock read of a consistent copy of the record bytes.
    #[inline]
    pub(super) fn read_bytes(&self, slot: u32) -> [u8; RECORD_SIZE] {
        let w = self.words(slot);
        loop {
            let s1 = w[0].load(Ordering::Acquire);
            if s1 & 1 == 1 {
                std::hint::spin_loop();
                continue;
            }
            let b = load_words(w);
            fence(Ordering::Acquire);
            if w[0].load(Ordering::Relaxed) == s1 {
                return b;
            }
        }
    }

    /// Takes the record's write lock (spins; held only for a few hundred ns).
    #[inline]
    pub(super) fn lock_record(&self, slot: u32) -> RecGuard<'_> {
        let w = self.words(slot);
        loop {
            let s = w[0].load(Ordering::Relaxed);
            if s & 1 == 0
                && w[0]
                    .compare_exchange_weak(
                        s,
                        s.wrapping_add(1),
                        Ordering::Acquire,
                        Ordering::Relaxed,
                    )
                    .is_ok()
            {
                fence(Ordering::Release);
                return RecGuard {
                    w,
                    odd: s.wrapping_add(1),
                    wrote: std::cell::Cell::new(false),
                    undo: None,
                };
            }
            std::hint::spin_loop();
        }
    }

    /// Decodes record bytes; the address comes from the position (a
    /// never-written record is all zero).
    #[inline]
    pub(super) fn decode_at(&self, slot: u32, raw: &[u8; RECORD_SIZE]) -> Lease {
        let mut l = Lease::decode_lossy(raw);
        l.addr = Ipv4Addr::from(self.geo().addr_of(slot));
        l
    }

    /// Writes `new` under the held lock and keeps counters and free lists in
    /// step. Returns whether anything changed.
    pub(super) fn apply_locked<'a>(
        &'a self,
        slot: u32,
        g: &mut RecGuard<'a>,
        old_raw: &[u8; RECORD_SIZE],
        old: &Lease,
        new: &mut Lease,
    ) -> bool {
        new.addr = old.addr;
        if new == old {
            return false;
        }
        let mut b = new.encode();
        let crc = record_crc(&b);
        b[4..8].copy_from_slice(&crc.to_le_bytes());
        self.save_undo(g, old_raw, old);
        g.store(&b);
        if let Some(w) = &self.wal {
            // The image as it will be after the unlock (sequence odd + 1), staged under the
            // lock so the log holds each record's versions in order.
            let mut img = b;
            img[0..4].copy_from_slice(&g.odd.wrapping_add(1).to_le_bytes());
            w.stage(slot, &img);
        }
        self.notify_change(slot, old, new);
        let p = self.pool_idx_of_slot(slot);
        let rt = self.rt(p);
        if old.state != new.state {
            rt.counts[old.state as usize].fetch_sub(1, Ordering::Relaxed);
            rt.counts[new.state as usize].fetch_add(1, Ordering::Relaxed);
        }
        match (old.is_quarantined(), new.is_quarantined()) {
            (false, true) => {
                rt.quarantined.fetch_add(1, Ordering::Relaxed);
            }
            (true, false) => {
                rt.quarantined.fetch_sub(1, Ordering::Relaxed);
            }
            _ => {}
        }
        if let Some(o) = new.state.free_list_owner() {
            if !new.is_quarantined() {
                self.push_free(p, slot, o);
            }
        }
        true
    }

    /// Test support: performs the first half of an update as a process
    /// killed in the middle of it would (undo copy saved, half of the new
    /// words stored, sequence left odd) and leaves the record locked. The
    /// table must be dropped right after; nothing else may touch the slot.
    #[doc(hidden)]
    pub fn simulate_crash_mid_update(&self, slot: Slot, f: impl FnOnce(&mut Lease)) {
        let mut g = self.lock_record(slot.0);
        let raw = g.bytes();
        let old = self.decode_at(slot.0, &raw);
        let mut new = old;
        f(&mut new);
        let b = new.encode();
        self.save_undo(&mut g, &raw, &old);
        for (i, a) in g.w.iter().enumerate().skip(2).take(RECORD_WORDS / 2) {
            a.store(
                u32::from_ne_bytes([b[i * 4], b[i * 4 + 1], b[i * 4 + 2], b[i * 4 + 3]]),
                Ordering::Relaxed,
            );
        }
        std::mem::forget(g);
    }

    /// A consistent copy of the record (seqlock read; never blocks writers).
    #[inline]
    pub fn read(&self, slot: Slot) -> Lease {
        self.decode_at(slot.0, &self.read_bytes(slot.0))
    }

    /// Changes one record under its lock: `f` sees the current record and may
    /// change anything but the address. Counters, client index and free
    /// lists follow: a record that becomes Free/Released/Expired (or Backup)
    /// goes back on its home shard's free list for its owner. Unchanged
    /// records are not rewritten. The write is in the page cache at return;
    /// it is durable after `flush`/`flush_set`.
    pub fn update<R>(&self, slot: Slot, f: impl FnOnce(&mut Lease) -> R) -> R {
        self.update_tracked(slot, f).0
    }

    /// [`update`](Self::update), also saying whether the record changed (an
    /// unchanged record was not rewritten, so nobody needs telling).
    pub fn update_tracked<R>(&self, slot: Slot, f: impl FnOnce(&mut Lease) -> R) -> (R, bool) {
        let mut g = self.lock_record(slot.0);
        let raw = g.bytes();
        let old = self.decode_at(slot.0, &raw);
        let mut new = old;
        let r = f(&mut new);
        let changed = self.apply_locked(slot.0, &mut g, &raw, &old, &mut new);
        drop(g);
        self.reindex(slot.0, &old.client, &new.client);
        (r, changed)
    }

    /// Every record in slot order (seqlock copies).
    pub fn iter(&self) -> impl Iterator<Item = (Slot, Lease)> + '_ {
        (0..self.geo().total).map(move |i| (Slot(i), self.read(Slot(i))))
    }
}
