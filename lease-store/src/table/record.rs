//! Record access under the per-record sequence lock: reads, the write lock,
//! and `update`, which keeps counters, free lists and the client index in step.

use std::net::Ipv4Addr;
use std::sync::atomic::{fence, AtomicBool, AtomicU32, Ordering};

use super::ext::verify;
use super::{LeaseTable, Slot};
use crate::lease::{
    record_crc, Lease, LeaseState, VarData, VarParts, VarRef, EXT_CHUNKS, EXT_CHUNK_PAYLOAD,
    RECORD_SIZE, RECORD_WORDS,
};

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
    /// never-written record is all zero). The variable data's handle is copied as it is.
    #[inline]
    pub(super) fn decode_at(&self, slot: u32, raw: &[u8; RECORD_SIZE]) -> Lease {
        let mut l = Lease::decode_lossy(raw);
        l.addr = Ipv4Addr::from(self.geo().addr_of(slot));
        l
    }

    /// The variable data handle `r` of `slot` refers to, read under the record's lock (or at
    /// open): inline data from the handle, side data checked against it (a mismatch, which
    /// only a torn write leaves, reads as none).
    pub(super) fn var_locked(&self, slot: u32, r: &VarRef) -> VarData {
        match r.side() {
            Ok(None) => r.inline_data(),
            Ok(Some(sr)) => {
                let mut p = [0u8; EXT_CHUNKS * EXT_CHUNK_PAYLOAD];
                self.side.load_payload(slot, sr, &mut p);
                verify(&p, sr).unwrap_or(VarData::EMPTY)
            }
            Err(_) => VarData::EMPTY,
        }
    }

    /// Writes `new` under the held lock and keeps counters and free lists in
    /// step. Returns whether anything changed. `src` is the variable data of `new.var` when
    /// the caller set a new side-area handle (`VarEdit`); without it such a handle is not
    /// written (the lease keeps no variable data).
    #[inline]
    pub(super) fn apply_locked<'a>(
        &'a self,
        slot: u32,
        g: &mut RecGuard<'a>,
        old_raw: &[u8; RECORD_SIZE],
        old: &Lease,
        new: &mut Lease,
        src: Option<&VarSrc<'_>>,
    ) -> bool {
        new.addr = old.addr;
        if !new.var.is_empty()
            && new.client.is_none()
            && matches!(new.state, LeaseState::Free | LeaseState::Backup)
        {
            // A freed address keeps no client data. (Expired and released bindings keep
            // theirs: bulk leasequery reports their end by relay-id / remote-id.) The extent
            // belongs to the address: its next binding reuses it.
            new.var = VarRef::EMPTY;
        }
        if new == old {
            return false;
        }
        let mut b = new.encode();
        let crc = record_crc(&b);
        b[4..8].copy_from_slice(&crc.to_le_bytes());
        self.save_undo(g, old_raw, old);
        if (new.var != old.var && new.var.is_side()) || self.var_hooks.load(Ordering::Relaxed) {
            // Out of line: a new side-area value, or a hook that reads the data.
            self.store_with_var(slot, g, &mut b, old, new, src);
        } else {
            self.store_locked(slot, g, &b);
            self.notify_change(slot, old, new);
        }
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

    /// Stores the record image `b` under the held lock and stages it for the log.
    #[inline]
    fn store_locked(&self, slot: u32, g: &mut RecGuard<'_>, b: &[u8; RECORD_SIZE]) {
        g.store(b);
        if let Some(w) = &self.wal {
            // The image as it will be after the unlock (sequence odd + 1), staged under the
            // lock so the log holds each record's versions in order.
            let mut img = *b;
            img[0..4].copy_from_slice(&g.odd.wrapping_add(1).to_le_bytes());
            w.stage(slot, &img);
        }
    }

    /// [`apply_locked`](Self::apply_locked)'s store when the variable data matters: writes a
    /// new side-area value (its chunks first, staged for the log before the record), and
    /// tells the hooks that read variable data the values before and after.
    #[inline(never)]
    fn store_with_var(
        &self,
        slot: u32,
        g: &mut RecGuard<'_>,
        b: &mut [u8; RECORD_SIZE],
        old: &Lease,
        new: &mut Lease,
        src: Option<&VarSrc<'_>>,
    ) {
        let hooks = self.var_hooks.load(Ordering::Relaxed);
        // Before the extent is overwritten.
        let old_var = if hooks {
            Some(self.var_locked(slot, &old.var))
        } else {
            None
        };
        let mut written = None;
        if new.var != old.var && new.var.is_side() {
            let ok = match src {
                Some(s) if s.r == new.var => {
                    let wal = self.wal.as_ref();
                    match self.side.write(slot, s.parts, |id, img| {
                        if let Some(w) = wal {
                            w.stage(id, img);
                        }
                    }) {
                        Ok(()) => {
                            written = Some(s.parts);
                            true
                        }
                        Err(e) => {
                            tracing::error!(
                                path = %self.side.path().display(),
                                slot,
                                "side area block allocation failed: {e}; the lease is kept \
                                 without its option 82 / host name / vendor class"
                            );
                            false
                        }
                    }
                }
                // A side handle without its data (a caller's bug): never written.
                _ => false,
            };
            if !ok {
                new.var = VarRef::EMPTY;
                *b = new.encode();
                let crc = record_crc(b);
                b[4..8].copy_from_slice(&crc.to_le_bytes());
            }
        }
        self.store_locked(slot, g, b);
        match old_var {
            Some(ov) => {
                let nv = if new.var == old.var {
                    ov
                } else if let Some(p) = written {
                    VarData::from_var_parts(p)
                } else {
                    new.var.inline_data()
                };
                self.notify_change_var(slot, old, &ov, new, &nv);
            }
            None => self.notify_change(slot, old, new),
        }
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

    /// A consistent copy of the record (seqlock read; never blocks writers). Its variable
    /// data is only the handle: [`read_with_var`](Self::read_with_var) reads the data.
    #[inline]
    pub fn read(&self, slot: Slot) -> Lease {
        self.decode_at(slot.0, &self.read_bytes(slot.0))
    }

    /// A consistent copy of the record and its variable data (option 82 whole, host name,
    /// vendor class), read inside the same sequence window; data that do not match the
    /// record's handle (only a torn write leaves such) are never returned: none instead.
    pub fn read_with_var(&self, slot: Slot) -> (Lease, VarData) {
        let w = self.words(slot.0);
        loop {
            let s1 = w[0].load(Ordering::Acquire);
            if s1 & 1 == 1 {
                std::hint::spin_loop();
                continue;
            }
            let b = load_words(w);
            let l = self.decode_at(slot.0, &b);
            let side = l.var.side().ok().flatten();
            let mut p = [0u8; EXT_CHUNKS * EXT_CHUNK_PAYLOAD];
            if let Some(r) = side {
                self.side.load_payload(slot.0, r, &mut p);
            }
            fence(Ordering::Acquire);
            if w[0].load(Ordering::Relaxed) != s1 {
                continue;
            }
            let v = match side {
                Some(r) => verify(&p, r).unwrap_or(VarData::EMPTY),
                None if l.var.is_side() => VarData::EMPTY,
                None => l.var.inline_data(),
            };
            return (l, v);
        }
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
        let changed = self.apply_locked(slot.0, &mut g, &raw, &old, &mut new, None);
        drop(g);
        self.reindex(slot.0, &old.client, &new.client);
        (r, changed)
    }

    /// [`update_tracked`](Self::update_tracked) for writers of variable data: `f` also gets a
    /// [`VarEdit`] that reads the record's current data (only when asked) and sets new data.
    /// The side area is written only when the handle changes.
    pub fn update_var<'d, R>(
        &self,
        slot: Slot,
        f: impl FnOnce(&mut Lease, &mut VarEdit<'_, 'd>) -> R,
    ) -> (R, bool) {
        let mut g = self.lock_record(slot.0);
        let raw = g.bytes();
        let old = self.decode_at(slot.0, &raw);
        let mut new = old;
        let mut ve = VarEdit::new(self, slot.0, old.var);
        let r = f(&mut new, &mut ve);
        let changed = self.apply_locked(slot.0, &mut g, &raw, &old, &mut new, ve.src().as_ref());
        drop(g);
        self.reindex(slot.0, &old.client, &new.client);
        (r, changed)
    }

    /// Replaces a record and its variable data: `f` changes a copy of both (the data read
    /// from the side area first); the side area is written when the data changed. For
    /// writers off the packet path (failover updates from the partner, tools).
    pub fn update_full<R>(
        &self,
        slot: Slot,
        f: impl FnOnce(&mut Lease, &mut VarData) -> R,
    ) -> (R, bool) {
        self.update_var(slot, |l, ve| {
            let mut v = *ve.old();
            let before = v;
            let r = f(l, &mut v);
            if v != before || l.var != ve.old_ref() {
                ve.set_owned(l, v);
            }
            r
        })
    }

    /// Every record with its variable data in slot order (seqlock copies).
    pub fn iter_with_var(&self) -> impl Iterator<Item = (Slot, Lease, VarData)> + '_ {
        (0..self.geo().total).map(move |i| {
            let (l, v) = self.read_with_var(Slot(i));
            (Slot(i), l, v)
        })
    }

    /// Every record in slot order (seqlock copies).
    pub fn iter(&self) -> impl Iterator<Item = (Slot, Lease)> + '_ {
        (0..self.geo().total).map(move |i| (Slot(i), self.read(Slot(i))))
    }
}

/// The variable data a writer set, for [`LeaseTable::apply_locked`].
pub(super) struct VarSrc<'a> {
    pub(super) r: VarRef,
    pub(super) parts: VarParts<'a>,
}

// On the writer's stack for one update: boxing the owned value would allocate per update.
#[allow(clippy::large_enum_variant)]
enum VarNew<'d> {
    Unset,
    Parts(VarRef, VarParts<'d>),
    Owned(VarRef, VarData),
}

/// A writer's access to a record's variable data under its lock (see
/// [`LeaseTable::update_var`]): the current data read only when asked, new data set with its
/// handle (computed once by the caller on the packet path).
pub struct VarEdit<'t, 'd> {
    table: &'t LeaseTable,
    slot: u32,
    old: VarRef,
    old_data: Option<VarData>,
    new: VarNew<'d>,
}

impl<'t, 'd> VarEdit<'t, 'd> {
    pub(super) fn new(table: &'t LeaseTable, slot: u32, old: VarRef) -> Self {
        VarEdit {
            table,
            slot,
            old,
            old_data: None,
            new: VarNew::Unset,
        }
    }

    /// The record's handle before this change.
    pub fn old_ref(&self) -> VarRef {
        self.old
    }

    /// The record's data before this change (read from the side area on the first call).
    pub fn old(&mut self) -> &VarData {
        let (t, slot, old) = (self.table, self.slot, self.old);
        self.old_data
            .get_or_insert_with(|| t.var_locked(slot, &old))
    }

    /// Sets `l`'s variable data to `parts`, whose handle `r` the caller computed
    /// (`VarRef::of(parts)`). Nothing is written unless the handle differs from the record's.
    #[inline]
    pub fn set(&mut self, l: &mut Lease, r: VarRef, parts: VarParts<'d>) {
        debug_assert_eq!(r, VarRef::of(parts));
        l.var = r;
        if r != self.old && r.is_side() {
            self.new = VarNew::Parts(r, parts);
        }
    }

    /// Sets `l`'s variable data to `v` (an owned value, e.g. merged with the old one).
    pub fn set_owned(&mut self, l: &mut Lease, v: VarData) {
        let r = v.var_ref();
        l.var = r;
        if r != self.old && r.is_side() {
            self.new = VarNew::Owned(r, v);
        }
    }

    pub(super) fn src(&self) -> Option<VarSrc<'_>> {
        match &self.new {
            VarNew::Unset => None,
            VarNew::Parts(r, p) => Some(VarSrc { r: *r, parts: *p }),
            VarNew::Owned(r, v) => Some(VarSrc {
                r: *r,
                parts: v.parts(),
            }),
        }
    }
}
