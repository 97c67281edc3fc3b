//! The undo area: a writer copies a record's old version there before
//! changing it, so a record torn by a crash is rolled back at open.

use std::cell::Cell;
use std::collections::HashMap;
use std::sync::atomic::{fence, AtomicU32, AtomicUsize, Ordering};

use super::record::{load_words, RecGuard};
use super::LeaseTable;
use crate::header::{UNDO_LEN, UNDO_SLOTS};
use crate::lease::{record_crc, Lease, RECORD_SIZE, RECORD_WORDS};

/// Undo copies by address.
pub(super) type UndoMap = HashMap<u32, Vec<[u8; RECORD_SIZE]>>;

pub(super) fn stored_crc_of(b: &[u8; RECORD_SIZE]) -> u32 {
    u32::from_le_bytes([b[4], b[5], b[6], b[7]])
}

pub(super) fn add_undo(m: &mut UndoMap, b: &[u8; RECORD_SIZE]) {
    if is_pristine(b) || stored_crc_of(b) != record_crc(b) {
        return;
    }
    if let Ok(l) = Lease::decode(b) {
        m.entry(u32::from(l.addr)).or_default().push(*b);
    }
}

/// The previous version of a record torn while its sequence was `torn_seq`.
pub(super) fn recover_from_undo(
    m: &UndoMap,
    addr: u32,
    torn_seq: u32,
) -> Option<[u8; RECORD_SIZE]> {
    m.get(&addr)?
        .iter()
        .find(|b| u32::from_le_bytes([b[0], b[1], b[2], b[3]]) == torn_seq.wrapping_sub(1))
        .copied()
}

pub(super) fn is_pristine(b: &[u8; RECORD_SIZE]) -> bool {
    b.iter().all(|&x| x == 0)
}

impl LeaseTable {
    /// Copies the record's current version into a claimed undo slot (kept
    /// until the unlock), so a crash in the middle of `g.store` can be rolled back.
    pub(super) fn save_undo<'a>(
        &'a self,
        g: &mut RecGuard<'a>,
        old_raw: &[u8; RECORD_SIZE],
        old: &Lease,
    ) {
        // The seq word is odd now (we hold the lock): look at the rest.
        let mut b = if old_raw[4..].iter().all(|&x| x == 0) {
            // Never written: store the free record it stands for, with a CRC.
            let mut b = old.encode();
            let crc = record_crc(&b);
            b[4..8].copy_from_slice(&crc.to_le_bytes());
            b
        } else {
            *old_raw
        };
        b[0..4].copy_from_slice(&g.odd.wrapping_sub(1).to_le_bytes());
        let i = self.claim_undo();
        let u = self.undo_words(i);
        for (k, a) in u.iter().enumerate() {
            let o = k * 4;
            a.store(
                u32::from_ne_bytes([b[o], b[o + 1], b[o + 2], b[o + 3]]),
                Ordering::Relaxed,
            );
        }
        // The copy must be in memory before the record changes.
        fence(Ordering::Release);
        g.undo = Some(&self.undo_busy[i]);
    }

    fn claim_undo(&self) -> usize {
        thread_local! {
            static HINT: Cell<usize> = const { Cell::new(usize::MAX) };
        }
        static NEXT: AtomicUsize = AtomicUsize::new(0);
        let start = HINT.with(|h| {
            if h.get() == usize::MAX {
                h.set(NEXT.fetch_add(1, Ordering::Relaxed) % UNDO_SLOTS);
            }
            h.get()
        });
        loop {
            for k in 0..UNDO_SLOTS {
                let i = (start + k) % UNDO_SLOTS;
                if !self.undo_busy[i].swap(true, Ordering::Acquire) {
                    return i;
                }
            }
            std::hint::spin_loop();
        }
    }

    pub(super) fn undo_words(&self, i: usize) -> &[AtomicU32; RECORD_WORDS] {
        assert!(i < UNDO_SLOTS);
        // SAFETY: the undo area is the last UNDO_LEN bytes of the header, inside
        // the map, 4-byte aligned, and only accessed through atomics.
        unsafe {
            &*(self
                .map
                .as_mut_ptr()
                .add(self.header_len - UNDO_LEN + i * RECORD_SIZE)
                as *const [AtomicU32; RECORD_WORDS])
        }
    }

    /// Valid undo copies by address (read at open, before any writer exists).
    pub(super) fn read_undo(&self) -> UndoMap {
        let mut m = UndoMap::new();
        for i in 0..UNDO_SLOTS {
            let b = load_words(self.undo_words(i));
            add_undo(&mut m, &b);
        }
        m
    }
}
