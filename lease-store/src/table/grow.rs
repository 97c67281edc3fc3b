//! Growing the table while it is served: pools a reload adds and ranges it grows take record
//! slots from the spare ones after the records in use, without remapping the file.
//!
//! Order (each step durable before the next, so a crash at any point reopens cleanly):
//! 1. the new records are zeroed (a zero record is a free one) and flushed;
//! 2. the header: first the new pool table entries (past the count its checksum covers, so
//!    the old header stays valid), flushed; then the fixed fields (entry count, record count,
//!    checksum: one 64-byte sector), flushed. A restart from here on finds the new ranges,
//!    whose records are free;
//! 3. a new layout (geometry, per-pool state for new pools) is published: address lookups see
//!    the new records from here on;
//! 4. the new records are counted free and put on the free lists: allocation can hand them
//!    out (an existing pool's grown range right away, a new pool once an engine that knows its
//!    id asks for it).
//!
//! Workers never wait: they read the layout through one atomic load and take free-list locks
//! as they always do.

use std::net::Ipv4Addr;
use std::sync::atomic::{AtomicU32, Ordering};
use std::sync::Arc;

use super::{lock, Layout, LeaseTable, PoolRt};
use crate::error::StoreError;
use crate::header::{self, extent_room, Geometry, PoolSpec, UNDO_LEN};
use crate::lease::{LeaseState, Owner, RECORD_SIZE, RECORD_WORDS};

/// What [`LeaseTable::grow`] did.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct GrowReport {
    /// The ranges added (a new pool's whole range, or the part a pool grew by), in file order.
    pub added: Vec<PoolSpec>,
    /// Addresses added.
    pub addresses: u64,
    /// Spare record slots left.
    pub spare_left: u32,
}

/// Why [`LeaseTable::grow`] refused; the table is unchanged.
#[derive(Debug, thiserror::Error)]
pub enum GrowError {
    /// A change only a restart can make: a pool removed, shrunk or moved.
    #[error("{0}")]
    Unsupported(String),
    /// More new addresses than spare record slots.
    #[error(
        "{need} addresses more than the lease file's spare capacity {spare} \
         (raise [lease] spare-addresses, or restart: the file is then rebuilt)"
    )]
    Capacity { need: u64, spare: u32 },
    /// The header's pool table has no room for that many more ranges.
    #[error("the lease file's pool table has room for {room} more range(s), {need} needed")]
    PoolTable { need: usize, room: usize },
    /// Writing the file failed (the table is unchanged; the spare records may hold zeros).
    #[error("{0}")]
    Storage(#[from] StoreError),
}

impl LeaseTable {
    /// The ranges `pools` (the whole configured pool list) adds to the table: new pools and
    /// the parts existing pools grew by. Refuses a pool removed, shrunk or moved.
    pub fn growth_for(&self, pools: &[PoolSpec]) -> Result<Vec<PoolSpec>, GrowError> {
        let geo = self.geo();
        let mut added = Vec::new();
        let mut problems = Vec::new();
        for p in pools {
            let (first, last) = (u32::from(p.first), u32::from(p.last));
            if first > last {
                problems.push(format!(
                    "pool {}: first address {} is after last address {}",
                    p.id, p.first, p.last
                ));
                continue;
            }
            match geo.pools.iter().find(|o| o.id == p.id) {
                None => added.push(*p),
                Some(o) => {
                    let (of, ol) = (u32::from(o.first), u32::from(o.last));
                    if first > of || last < ol {
                        problems.push(format!(
                            "pool {} changed from {}-{} to {}-{}: a range can only grow while \
                             running (shrinking or moving it needs a restart)",
                            p.id, o.first, o.last, p.first, p.last
                        ));
                        continue;
                    }
                    if first < of {
                        added.push(PoolSpec {
                            id: p.id,
                            first: p.first,
                            last: Ipv4Addr::from(of - 1),
                        });
                    }
                    if last > ol {
                        added.push(PoolSpec {
                            id: p.id,
                            first: Ipv4Addr::from(ol + 1),
                            last: p.last,
                        });
                    }
                }
            }
        }
        for o in &geo.pools {
            if !pools.iter().any(|p| p.id == o.id) {
                problems.push(format!(
                    "pool {} ({}-{}) is no longer configured: removing a pool needs a restart",
                    o.id, o.first, o.last
                ));
            }
        }
        if !problems.is_empty() {
            return Err(GrowError::Unsupported(problems.join("; ")));
        }
        let need: u64 = added.iter().map(|p| p.len()).sum();
        let spare = self.capacity - geo.total;
        if need > u64::from(spare) {
            return Err(GrowError::Capacity { need, spare });
        }
        let room = extent_room(self.header_len).saturating_sub(geo.extents.len());
        if added.len() > room {
            return Err(GrowError::PoolTable {
                need: added.len(),
                room,
            });
        }
        let mut all = geo.extents.clone();
        all.extend_from_slice(&added);
        Geometry::new(&all).map_err(GrowError::Unsupported)?;
        Ok(added)
    }

    /// Adds the pools and grown ranges of `pools` (the whole configured pool list) to the
    /// running table, in the spare record slots: see the module documentation. Returns what
    /// was added (nothing when `pools` matches the table). One growth at a time.
    pub fn grow(&self, pools: &[PoolSpec]) -> Result<GrowReport, GrowError> {
        let mut layouts = lock(&self.layouts);
        let added = self.growth_for(pools)?;
        let cur = self.layout();
        if added.is_empty() {
            return Ok(GrowReport {
                spare_left: self.capacity - cur.geo.total,
                ..GrowReport::default()
            });
        }
        let mut all = cur.geo.extents.clone();
        all.extend_from_slice(&added);
        let geo = Geometry::new(&all).map_err(GrowError::Unsupported)?;
        let (lo, hi) = (cur.geo.total, geo.total);
        // 1. Zero and flush the new records (nobody reads them: no layout covers them yet).
        for slot in lo..hi {
            for w in self.spare_words(slot) {
                w.store(0, Ordering::Relaxed);
            }
        }
        let off = self.header_len + lo as usize * RECORD_SIZE;
        let len = (hi - lo) as usize * RECORD_SIZE;
        self.sticky_flush(|| self.map.flush_range(off, len))
            .map_err(|e| StoreError::io(&self.path, "msync new records", e))?;
        // 2. The header, in two flushed steps so that a crash leaves the old or the new one
        // valid: first the new pool table entries (beyond the count the checksum covers, so
        // not part of the old header), then the fixed fields with the count, the record
        // number and the checksum (the first 64 bytes: one disk sector, written whole).
        let hlen = self.header_len - UNDO_LEN;
        let entries = header::pool_entries(cur.geo.extents.len(), geo.extents.len());
        let mut next = {
            let _g = lock(&self.header_lock);
            self.header_bytes().to_vec()
        };
        header::write_header(
            &mut next,
            &geo,
            self.created,
            self.header_len,
            self.capacity,
            &self.id,
        );
        for part in [entries, header::FIXED_FIELDS] {
            {
                let _g = lock(&self.header_lock);
                // SAFETY: the header lies below the first record and inside the map; we hold
                // header_lock, so nobody else reads or writes it while this slice lives.
                let h = unsafe { std::slice::from_raw_parts_mut(self.map.as_mut_ptr(), hlen) };
                h[part.clone()].copy_from_slice(&next[part]);
            }
            self.sticky_flush(|| self.map.flush_range(0, hlen))
                .map_err(|e| StoreError::io(&self.path, "msync header", e))?;
        }
        // 3. Publish the layout: existing pools keep their state, new ones get theirs.
        let mut rt = cur.rt.clone();
        for p in &geo.pools[rt.len()..] {
            rt.push(Arc::new(PoolRt::new(p.len(), self.shards)));
        }
        let next = Arc::new(Layout::new(geo, rt));
        self.layout
            .store(Arc::as_ptr(&next).cast_mut(), Ordering::Release);
        layouts.push(next);
        // 4. Count the new records free and list them.
        for slot in lo..hi {
            let p = self.pool_idx_of_slot(slot);
            self.rt(p).counts[LeaseState::Free as usize].fetch_add(1, Ordering::Relaxed);
            self.push_free(p, slot, Owner::Primary);
        }
        let addresses = u64::from(hi - lo);
        tracing::info!(
            path = %self.path.display(),
            "lease table grown by {addresses} record(s) ({}); {} spare left",
            added
                .iter()
                .map(|p| format!("pool {} {}-{}", p.id, p.first, p.last))
                .collect::<Vec<_>>()
                .join(", "),
            self.capacity - hi
        );
        Ok(GrowReport {
            added,
            addresses,
            spare_left: self.capacity - hi,
        })
    }

    /// The words of a record slot below the capacity (also a spare one).
    fn spare_words(&self, slot: u32) -> &[AtomicU32; RECORD_WORDS] {
        assert!(
            slot < self.capacity,
            "slot {slot} beyond the file's capacity"
        );
        // SAFETY: in bounds (the map covers header_len + capacity * RECORD_SIZE bytes: open
        // checked the file length), aligned and accessed only through atomics, as in `words`.
        unsafe {
            &*(self
                .map
                .as_mut_ptr()
                .add(self.header_len + slot as usize * RECORD_SIZE)
                as *const [AtomicU32; RECORD_WORDS])
        }
    }
}
