//! Per-record words beside the lease table: a small memory-mapped side file of `words` u32
//! values per record slot, read and written with relaxed atomics (one store each, no lock),
//! for facts a caller keeps per binding that the 128-byte record has no room for (the
//! reconfigure driver's xid and relay of a binding's last ACK, `<lease file>.reconf`).
//!
//! The mapping is shared, so whatever a worker stores is in the page cache at once and
//! survives the process (a crash, `kill -9`, a restart); the kernel writes it back like any
//! dirty page, and [`SlotWords::flush`] forces it (the daemon at shutdown). It is not part of
//! the lease table's write-ahead log: after a power loss a value may be older than its
//! record (callers treat the words as hints). Layout: a 64-byte header (`XDSLOTW1`, slots
//! u32, words u32, little-endian, zero padding), then `slots * words` u32 words. A file whose
//! header does not match the table's shape (another lease file, a resized one) starts over
//! zeroed. A sparse file: 10 M slots of 2 words reserve 80 MB of address space and cost
//! disk only where written.

use std::fs::OpenOptions;
use std::path::Path;
use std::sync::atomic::{AtomicU32, Ordering::Relaxed};

use memmap2::MmapMut;

const MAGIC: &[u8; 8] = b"XDSLOTW1";
const HEADER: usize = 64;

/// A mapped array of `slots * words` atomics (file-backed or anonymous).
pub struct SlotWords {
    map: MmapMut,
    base: *const AtomicU32,
    slots: u32,
    words: u32,
}

// SAFETY: every access to the mapped words goes through `&AtomicU32` (atomic loads and
// stores); the mapping lives as long as `self` and is never remapped.
unsafe impl Send for SlotWords {}
// SAFETY: as above: shared access is atomic only.
unsafe impl Sync for SlotWords {}

/// How [`SlotWords::open`] found the file.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum SlotWordsOpen {
    /// Created (no file before).
    Created,
    /// Kept: the header matched; the words are what was stored before.
    Kept,
    /// The header did not match (another shape, damaged): zeroed and rewritten.
    Reset,
}

impl SlotWords {
    /// An anonymous (memory-only) array, all zero.
    pub fn anonymous(slots: u32, words: u32) -> std::io::Result<Self> {
        let len = Self::bytes(slots, words)?;
        let map = MmapMut::map_anon(len)?;
        Ok(Self::from_map(map, slots, words))
    }

    /// Opens (or creates) the side file at `path` for `slots` records of `words` words.
    pub fn open(path: &Path, slots: u32, words: u32) -> std::io::Result<(Self, SlotWordsOpen)> {
        let len = Self::bytes(slots, words)?;
        let file = OpenOptions::new()
            .read(true)
            .write(true)
            .create(true)
            .truncate(false)
            .open(path)?;
        let have = file.metadata()?.len();
        let mut header = [0u8; HEADER];
        header[..8].copy_from_slice(MAGIC);
        header[8..12].copy_from_slice(&slots.to_le_bytes());
        header[12..16].copy_from_slice(&words.to_le_bytes());
        let how = if have == 0 {
            SlotWordsOpen::Created
        } else {
            let mut found = [0u8; HEADER];
            let ok = have == len as u64
                && std::os::unix::fs::FileExt::read_exact_at(&file, &mut found, 0).is_ok()
                && found == header;
            if ok {
                SlotWordsOpen::Kept
            } else {
                SlotWordsOpen::Reset
            }
        };
        if how != SlotWordsOpen::Kept {
            file.set_len(0)?;
            file.set_len(len as u64)?;
            std::os::unix::fs::FileExt::write_all_at(&file, &header, 0)?;
        }
        // SAFETY: a shared mapping of a file this process opened read-write; the daemon is
        // its only writer (the lease table's lock file keeps a second daemon out), and all
        // access after the header goes through atomics.
        let map = unsafe { MmapMut::map_mut(&file)? };
        if map.len() < len {
            return Err(std::io::Error::other(format!(
                "{}: mapped {} bytes, want {len}",
                path.display(),
                map.len()
            )));
        }
        Ok((Self::from_map(map, slots, words), how))
    }

    fn bytes(slots: u32, words: u32) -> std::io::Result<usize> {
        (slots as usize)
            .checked_mul(words as usize)
            .and_then(|n| n.checked_mul(4))
            .and_then(|n| n.checked_add(HEADER))
            .ok_or_else(|| std::io::Error::other("slot words: size overflows"))
    }

    fn from_map(mut map: MmapMut, slots: u32, words: u32) -> Self {
        // The words start after the header; the mapping is page aligned, so they are 4-byte
        // aligned.
        let base = map[HEADER..].as_mut_ptr().cast::<AtomicU32>().cast_const();
        SlotWords {
            map,
            base,
            slots,
            words,
        }
    }

    fn cell(&self, slot: u32, word: u32) -> Option<&AtomicU32> {
        if slot >= self.slots || word >= self.words {
            return None;
        }
        let i = slot as usize * self.words as usize + word as usize;
        // SAFETY: `i` < slots * words, all inside the mapping (checked at construction),
        // aligned, and the mapping outlives the borrow of `self`.
        Some(unsafe { &*self.base.add(i) })
    }

    /// Word `word` of `slot` (0 outside the array).
    #[inline]
    pub fn load(&self, slot: u32, word: u32) -> u32 {
        self.cell(slot, word).map_or(0, |c| c.load(Relaxed))
    }

    /// Stores `v` as word `word` of `slot` (ignored outside the array).
    #[inline]
    pub fn store(&self, slot: u32, word: u32, v: u32) {
        if let Some(c) = self.cell(slot, word) {
            c.store(v, Relaxed);
        }
    }

    /// Record slots covered.
    pub fn slots(&self) -> u32 {
        self.slots
    }

    /// Writes the mapped words back to the file (a no-op when anonymous).
    pub fn flush(&self) -> std::io::Result<()> {
        self.map.flush()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn slot_words_survive_reopen_and_reset_on_another_shape() {
        let dir = tempfile::tempdir().expect("tempdir");
        let p = dir.path().join("t.reconf");
        let (w, how) = SlotWords::open(&p, 100, 2).expect("create");
        assert_eq!(how, SlotWordsOpen::Created);
        w.store(7, 0, 0xdead_beef);
        w.store(7, 1, 42);
        w.store(100, 0, 1); // outside: ignored
        assert_eq!(w.load(100, 0), 0);
        drop(w); // no flush: the shared mapping's pages are the file's
        let (w, how) = SlotWords::open(&p, 100, 2).expect("reopen");
        assert_eq!(how, SlotWordsOpen::Kept);
        assert_eq!(
            (w.load(7, 0), w.load(7, 1), w.load(8, 0)),
            (0xdead_beef, 42, 0)
        );
        w.flush().expect("flush");
        drop(w);
        let (w, how) = SlotWords::open(&p, 200, 2).expect("other shape");
        assert_eq!(how, SlotWordsOpen::Reset);
        assert_eq!(w.load(7, 0), 0, "a reset file starts zeroed");
        let a = SlotWords::anonymous(4, 2).expect("anon");
        a.store(3, 1, 9);
        assert_eq!(a.load(3, 1), 9);
    }
}
