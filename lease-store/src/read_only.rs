//! A read-only view of a lease file for tools that run beside the daemon holding it: no lock
//! is taken and nothing is written (the file is opened read-only and mapped `PROT_READ`).
//! Each record is read as the daemon's own readers read it, under its sequence lock, so every
//! record comes out consistent; the set of records is not one instant (the daemon keeps
//! serving while a dump runs). Counts are made by reading the records (the daemon's in-memory
//! counters live in its process).

use std::fs::File;
use std::net::Ipv4Addr;
use std::path::{Path, PathBuf};
use std::sync::atomic::{fence, AtomicU32, Ordering};

use memmap2::{MmapOptions, MmapRaw};

use crate::error::StoreError;
use crate::header::{FileHeader, Geometry, PoolSpec};
use crate::lease::{
    ClientKey, Lease, LeaseState, SideRef, VarData, EXT_CHUNKS, EXT_CHUNK_PAYLOAD, EXT_CHUNK_SIZE,
    RECORD_SIZE, RECORD_WORDS, VAR_IN_SIDE_AREA,
};
use crate::table::ext::{check_header, ext_len, verify, EXTENT, EXT_HDR};
use crate::table::ext_path;
use crate::table::PoolStats;

/// Spins on a record that stays mid-write this long before taking it as it is (only a writer
/// that died mid-update leaves one so; the daemon repairs it at its next open).
const MAX_SPINS: u32 = 1 << 20;

/// How long [`ReadOnlyTable::open`] retries a header that does not validate (a running daemon's
/// reload may be rewriting it: `LeaseTable::grow` writes the fixed fields, checksum included,
/// in one 64-byte store that a concurrent `read(2)` can see half done).
pub const HEADER_SETTLE: std::time::Duration = std::time::Duration::from_millis(250);
const HEADER_RETRY_GAP: std::time::Duration = std::time::Duration::from_millis(5);

/// A lease file mapped read-only, without the file's lock.
pub struct ReadOnlyTable {
    path: PathBuf,
    geo: Geometry,
    header_len: usize,
    map: MmapRaw,
    /// The side area (variable-length data), when the file has one.
    side: Option<MmapRaw>,
}

impl std::fmt::Debug for ReadOnlyTable {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("ReadOnlyTable")
            .field("path", &self.path)
            .field("records", &self.geo.total)
            .finish_non_exhaustive()
    }
}

impl ReadOnlyTable {
    /// Opens `path` read-only: the header is checked as [`FileHeader::read`] checks it (read
    /// with `read(2)`, not through the mapping), then the records are mapped read-only. A
    /// header that does not validate is read again for up to [`HEADER_SETTLE`] (a daemon's
    /// reload growing the file may be rewriting it) before its error is returned.
    pub fn open(path: &Path) -> Result<Self, StoreError> {
        let start = std::time::Instant::now();
        loop {
            match Self::open_once(path) {
                Err(StoreError::Format { .. }) if start.elapsed() < HEADER_SETTLE => {
                    std::thread::sleep(HEADER_RETRY_GAP);
                }
                r => return r,
            }
        }
    }

    fn open_once(path: &Path) -> Result<Self, StoreError> {
        let header = FileHeader::read(path)?;
        let geo = Geometry::new(&header.extents).map_err(|m| StoreError::format(path, m))?;
        let file = File::open(path).map_err(|e| StoreError::io(path, "open", e))?;
        let len = file
            .metadata()
            .map_err(|e| StoreError::io(path, "stat", e))?
            .len();
        let need = Geometry::file_len_for(header.header_len, geo.total);
        if len < need {
            return Err(StoreError::format(
                path,
                format!("file is {len} bytes, its pools need {need}"),
            ));
        }
        let map = MmapOptions::new()
            .len(usize::try_from(need).map_err(|_| {
                StoreError::format(path, format!("{len} bytes is too large to map"))
            })?)
            .map_raw_read_only(&file)
            .map_err(|e| StoreError::io(path, "mmap", e))?;
        Ok(ReadOnlyTable {
            path: path.to_path_buf(),
            header_len: header.header_len,
            side: Self::open_side(path, geo.total)?,
            geo,
            map,
        })
    }

    /// The side area mapped read-only; `None` when there is none (a file of an older build,
    /// or one never written).
    fn open_side(path: &Path, total: u32) -> Result<Option<MmapRaw>, StoreError> {
        let sp = ext_path(path);
        let file = match File::open(&sp) {
            Ok(f) => f,
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Ok(None),
            Err(e) => return Err(StoreError::io(&sp, "open side area", e)),
        };
        let len = file
            .metadata()
            .map_err(|e| StoreError::io(&sp, "stat side area", e))?
            .len();
        let need = ext_len(total);
        if len < need {
            return Ok(None);
        }
        let mut h = [0u8; 28];
        std::os::unix::fs::FileExt::read_exact_at(&file, &mut h, 0)
            .map_err(|e| StoreError::io(&sp, "read side area header", e))?;
        if !check_header(&h, &sp)? {
            return Ok(None);
        }
        let map = MmapOptions::new()
            .len(usize::try_from(need).map_err(|_| {
                StoreError::format(&sp, format!("{need} bytes is too large to map"))
            })?)
            .map_raw_read_only(&file)
            .map_err(|e| StoreError::io(&sp, "mmap side area", e))?;
        Ok(Some(map))
    }

    /// Loads the side payload of record `index` (relaxed atomic loads; validated by the
    /// caller's sequence check).
    fn load_side(&self, index: u32, r: SideRef, out: &mut [u8; EXT_CHUNKS * EXT_CHUNK_PAYLOAD]) {
        let Some(m) = &self.side else { return };
        for i in 0..r.chunks {
            // SAFETY: index < total and i < EXT_CHUNKS: inside the mapping of ext_len(total)
            // bytes; 4-byte aligned; loaded through atomics only (as `words`).
            let w = unsafe {
                &*(m.as_ptr()
                    .add(EXT_HDR + index as usize * EXTENT + i * EXT_CHUNK_SIZE)
                    as *const [AtomicU32; RECORD_WORDS])
            };
            for (j, a) in w.iter().enumerate().skip(2) {
                let o = i * EXT_CHUNK_PAYLOAD + (j - 2) * 4;
                out[o..o + 4].copy_from_slice(&a.load(Ordering::Relaxed).to_ne_bytes());
            }
        }
    }

    pub fn path(&self) -> &Path {
        &self.path
    }

    /// The pools, in file order.
    pub fn pools(&self) -> &[PoolSpec] {
        &self.geo.pools
    }

    /// Number of records.
    pub fn len(&self) -> u32 {
        self.geo.total
    }

    pub fn is_empty(&self) -> bool {
        self.geo.total == 0
    }

    /// Record index of an address in a pool.
    pub fn index_of(&self, ip: Ipv4Addr) -> Option<u32> {
        self.geo.slot_of(u32::from(ip))
    }

    /// Pool id of record `index`.
    pub fn pool_of(&self, index: u32) -> u32 {
        self.geo.pools[self.geo.pool_idx_of_slot(index)].id
    }

    fn words(&self, index: u32) -> &[AtomicU32; RECORD_WORDS] {
        assert!(index < self.geo.total, "record {index} out of range");
        // SAFETY: in bounds (the mapping covers header_len + total * RECORD_SIZE bytes, checked
        // at open), 4-byte aligned (page-aligned map, header a multiple of 4096, 128-byte
        // records), valid while `self` lives (the map is never unmapped before). The memory is
        // only ever loaded through atomics (loads of a lock-free size are allowed on read-only
        // memory); the daemon writes it through atomics in its own process.
        unsafe {
            &*(self
                .map
                .as_ptr()
                .add(self.header_len + index as usize * RECORD_SIZE)
                as *const [AtomicU32; RECORD_WORDS])
        }
    }

    /// A consistent copy of record `index` (sequence-lock read, as the daemon's readers); its
    /// variable data is the handle only ([`read_with_var`](Self::read_with_var)).
    pub fn read(&self, index: u32) -> Lease {
        self.read_with_var(index).0
    }

    /// A consistent copy of record `index` and its variable data (none when the side area
    /// does not match the record's handle).
    pub fn read_with_var(&self, index: u32) -> (Lease, VarData) {
        let w = self.words(index);
        let load = || {
            let mut b = [0u8; RECORD_SIZE];
            for (i, a) in w.iter().enumerate() {
                b[i * 4..i * 4 + 4].copy_from_slice(&a.load(Ordering::Relaxed).to_ne_bytes());
            }
            b
        };
        let mut spins = 0u32;
        let mut p = [0u8; EXT_CHUNKS * EXT_CHUNK_PAYLOAD];
        let (raw, side) = loop {
            let s1 = w[0].load(Ordering::Acquire);
            if s1 & 1 == 1 && spins < MAX_SPINS {
                spins += 1;
                std::hint::spin_loop();
                continue;
            }
            let b = load();
            let side = if b[104] == VAR_IN_SIDE_AREA {
                SideRef::of_record(&b).ok().flatten()
            } else {
                None
            };
            if let Some(r) = side {
                self.load_side(index, r, &mut p);
            }
            fence(Ordering::Acquire);
            if w[0].load(Ordering::Relaxed) == s1 || spins >= MAX_SPINS {
                break (b, side);
            }
            spins += 1;
        };
        let mut l = Lease::decode_lossy(&raw);
        l.addr = Ipv4Addr::from(self.geo.addr_of(index));
        let v = match side {
            Some(r) => verify(&p, r).unwrap_or(VarData::EMPTY),
            None => l.var.inline_data(),
        };
        (l, v)
    }

    /// Every record in file order with its pool id and variable data.
    pub fn iter_with_var(&self) -> impl Iterator<Item = (u32, Lease, VarData)> + '_ {
        (0..self.geo.total).map(move |i| {
            let (l, v) = self.read_with_var(i);
            (self.pool_of(i), l, v)
        })
    }

    /// Every record in file order with its pool id.
    pub fn iter(&self) -> impl Iterator<Item = (u32, Lease)> + '_ {
        (0..self.geo.total).map(move |i| (self.pool_of(i), self.read(i)))
    }

    /// The record bound to `key` (a scan; the daemon's client index is in its process).
    pub fn find_client(&self, key: &ClientKey) -> Option<(u32, Lease)> {
        self.iter()
            .find(|(_, l)| l.client == *key && l.state.binds_client())
    }

    /// Counts of every pool by reading its records, in file order.
    pub fn count(&self) -> Vec<PoolStats> {
        self.geo
            .pools
            .iter()
            .enumerate()
            .map(|(p, spec)| {
                let mut s = PoolStats {
                    id: spec.id,
                    total: spec.len(),
                    ..PoolStats::default()
                };
                for i in self.geo.slot_ranges(p).flatten() {
                    let l = self.read(i);
                    *match l.state {
                        LeaseState::Free => &mut s.free,
                        LeaseState::Offered => &mut s.offered,
                        LeaseState::Active => &mut s.active,
                        LeaseState::Expired => &mut s.expired,
                        LeaseState::Released => &mut s.released,
                        LeaseState::Declined => &mut s.declined,
                        LeaseState::Abandoned => &mut s.abandoned,
                        LeaseState::Backup => &mut s.backup,
                        LeaseState::Reserved => &mut s.reserved,
                    } += 1;
                    s.quarantined += u64::from(l.is_quarantined());
                }
                s
            })
            .collect()
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::{LeaseTable, OpenOptions};

    #[test]
    fn read_only_open_beside_a_writer_sees_live_records_and_writes_nothing() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("l.db");
        let pools = [
            PoolSpec {
                id: 0,
                first: Ipv4Addr::new(10, 0, 0, 1),
                last: Ipv4Addr::new(10, 0, 0, 64),
            },
            PoolSpec {
                id: 7,
                first: Ipv4Addr::new(10, 1, 0, 1),
                last: Ipv4Addr::new(10, 1, 0, 8),
            },
        ];
        let (t, _) = LeaseTable::open(&path, &pools, &OpenOptions::default()).unwrap();
        // The writer holds the lock: a second LeaseTable::open is refused...
        assert!(matches!(
            LeaseTable::open(&path, &pools, &OpenOptions::default()),
            Err(StoreError::Locked { .. })
        ));
        let before = std::fs::read(&path).unwrap();
        // ...the read-only view opens beside it.
        let ro = ReadOnlyTable::open(&path).unwrap();
        assert_eq!(ro.len(), 72);
        assert_eq!(ro.pools(), &pools);
        let ip = Ipv4Addr::new(10, 1, 0, 3);
        let key = ClientKey::from_client_id(&[1, 2, 3]);
        let s = t.slot_of(ip).unwrap();
        t.update(s, |l| {
            l.state = LeaseState::Active;
            l.client = key;
            l.start = 2_000_000_000;
            l.expiry = 2_000_000_000;
        });
        // Seen at once (same pages), with the address and pool from the position.
        let i = ro.index_of(ip).unwrap();
        let l = ro.read(i);
        assert_eq!(
            (l.addr, l.state, l.expiry),
            (ip, LeaseState::Active, 2_000_000_000)
        );
        assert_eq!(ro.pool_of(i), 7);
        assert_eq!(
            ro.find_client(&key).map(|(p, l)| (p, l.addr)),
            Some((7, ip))
        );
        let counts = ro.count();
        assert_eq!(counts, t.all_stats());
        assert_eq!(counts[1].active, 1);
        assert_eq!(
            ro.iter()
                .filter(|(_, l)| l.state != LeaseState::Free)
                .count(),
            1
        );
        // A concurrent writer: every read is one whole version of the record.
        std::thread::scope(|sc| {
            sc.spawn(|| {
                for n in 0..20_000u32 {
                    t.update(s, |l| {
                        l.expiry = n;
                        l.start = n;
                    });
                }
            });
            for _ in 0..20_000 {
                let l = ro.read(i);
                assert_eq!(l.start, l.expiry, "torn read");
            }
        });
        drop(ro);
        drop(t);
        // Nothing written by the view (the writer's updates aside, compare the header page).
        let after = std::fs::read(&path).unwrap();
        assert_eq!(before[..4096], after[..4096]);
        // A file that is not a lease file: the header check's error.
        let bad = dir.path().join("bad.db");
        std::fs::write(&bad, b"not a lease file").unwrap();
        assert!(ReadOnlyTable::open(&bad).is_err());
    }

    /// Writes `bytes` at `off` of `path` in place (as the daemon's mapping does).
    fn poke(path: &std::path::Path, off: u64, bytes: &[u8]) {
        use std::os::unix::fs::FileExt;
        let f = std::fs::OpenOptions::new().write(true).open(path).unwrap();
        f.write_all_at(bytes, off).unwrap();
    }

    #[test]
    fn read_only_open_retries_a_header_that_a_reload_growth_is_rewriting() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("leases.db");
        let pools = [PoolSpec {
            id: 0,
            first: Ipv4Addr::new(10, 0, 0, 1),
            last: Ipv4Addr::new(10, 0, 0, 16),
        }];
        let opts = OpenOptions {
            spare: 16,
            ..OpenOptions::default()
        };
        let (t, _) = LeaseTable::open(&path, &pools, &opts).unwrap();
        // The fixed fields half rewritten (the checksum of another version): what a
        // `read(2)` racing `LeaseTable::grow`'s header store can see.
        let good = std::fs::read(&path).unwrap()[40..44].to_vec();
        let torn: Vec<u8> = good.iter().map(|b| b ^ 0x5a).collect();
        poke(&path, 40, &torn);
        assert!(
            crate::header::FileHeader::read(&path).is_err(),
            "the torn header fails its check"
        );
        // The store completes 40 ms later: the read-only open waits for it.
        let started = std::time::Instant::now();
        let ro = std::thread::scope(|sc| {
            sc.spawn(|| {
                std::thread::sleep(std::time::Duration::from_millis(40));
                poke(&path, 40, &good);
            });
            ReadOnlyTable::open(&path)
        })
        .expect("opened once the header settled");
        assert!(started.elapsed() >= std::time::Duration::from_millis(40));
        assert_eq!(ro.len(), 16);
        drop(ro);
        // A header that stays bad is reported (after the settle time), with its reason.
        poke(&path, 40, &torn);
        let started = std::time::Instant::now();
        let e = ReadOnlyTable::open(&path).expect_err("a damaged header");
        assert!(started.elapsed() >= HEADER_SETTLE);
        assert!(e.to_string().contains("header checksum mismatch"), "{e}");
        poke(&path, 40, &good);
        // And beside a table that grows: every open sees the old or the new pools.
        let more = [
            pools[0],
            PoolSpec {
                id: 1,
                first: Ipv4Addr::new(10, 0, 1, 1),
                last: Ipv4Addr::new(10, 0, 1, 8),
            },
        ];
        std::thread::scope(|sc| {
            sc.spawn(|| t.grow(&more).unwrap());
            for _ in 0..50 {
                let ro = ReadOnlyTable::open(&path).expect("open beside a growth");
                assert!(ro.len() == 16 || ro.len() == 24, "{}", ro.len());
            }
        });
        assert_eq!(ReadOnlyTable::open(&path).unwrap().len(), 24);
    }
}
