//! What open finds in a damaged file: torn and corrupt records (quarantined
//! or rolled back), records locked at a crash, and files it cannot read.
#![allow(clippy::unwrap_used)] // tests may panic on setup failures

use std::collections::{HashMap, HashSet};
use std::fs;
use std::net::Ipv4Addr;
use std::path::Path;

use lease_store::*;

mod common;
use common::*;

#[test]
fn torn_and_corrupt_records_are_quarantined_and_reported() {
    let dir = tempfile::tempdir().unwrap();
    let path = db(&dir);
    let slots: Vec<Slot>;
    let offs: Vec<u64>;
    let garbage_off: u64;
    {
        let (t, _) = LeaseTable::open(&path, &small_pools(), &opts(1)).unwrap();
        garbage_off = t.record_offset(t.slot(50).unwrap());
        slots = (0..4)
            .map(|n| {
                t.allocate(1, 0, NOW, Owner::Primary, |l| {
                    offer(l, n, NOW);
                    ack(l, NOW, 3600);
                })
                .unwrap()
                .0
            })
            .collect();
        t.flush().unwrap();
        offs = slots.iter().map(|s| t.record_offset(*s)).collect();
    }
    let rec_off = |s: Slot| offs[slots.iter().position(|x| *x == s).unwrap()];
    // 0: torn (odd sequence, body half rewritten -> CRC mismatch).
    let seq = u32::from_le_bytes(peek(&path, rec_off(slots[0]), 4).try_into().unwrap());
    patch(&path, rec_off(slots[0]), &(seq + 1).to_le_bytes());
    patch(&path, rec_off(slots[0]) + 40, &[0xee; 8]);
    // 1: flipped bit in the body (even sequence).
    let b = peek(&path, rec_off(slots[1]) + 72, 1)[0];
    patch(&path, rec_off(slots[1]) + 72, &[b ^ 1]);
    // 2: odd sequence but intact body: killed between lock and unlock.
    let seq = u32::from_le_bytes(peek(&path, rec_off(slots[2]), 4).try_into().unwrap());
    patch(&path, rec_off(slots[2]), &(seq + 1).to_le_bytes());
    // Also a never-written record with garbage in it.
    patch(&path, garbage_off + 9, &[0x42]);

    let (t, rep) = LeaseTable::open(&path, &small_pools(), &opts(1)).unwrap();
    let q: HashMap<Ipv4Addr, String> = rep.quarantined.iter().cloned().collect();
    assert_eq!(q.len(), 3, "{:?}", rep.quarantined);
    let a0 = Ipv4Addr::new(10, 0, 0, 10);
    let a1 = Ipv4Addr::new(10, 0, 0, 11);
    assert!(q[&a0].contains("torn"), "{}", q[&a0]);
    assert!(q[&a1].contains("checksum mismatch"), "{}", q[&a1]);
    assert!(q.contains_key(&Ipv4Addr::new(10, 0, 0, 60)));
    assert_eq!(rep.repaired.len(), 1);
    assert_eq!(rep.repaired[0].0, Ipv4Addr::new(10, 0, 0, 12));
    // The repaired record is a usable lease; the quarantined ones are not.
    assert_eq!(t.find_client(&key(2)).unwrap().1.state, LeaseState::Active);
    assert!(t.find_client(&key(0)).is_none());
    assert!(t.find_client(&key(1)).is_none());
    for s in [slots[0], slots[1]] {
        let l = t.read(s);
        assert_eq!(l.state, LeaseState::Abandoned);
        assert!(l.is_quarantined());
    }
    let st = t.pool_stats(1).unwrap();
    assert_eq!((st.abandoned, st.quarantined, st.active), (3, 3, 2));
    assert_eq!(t.recount(1).unwrap(), st);
    let bad: HashSet<Ipv4Addr> = q.keys().copied().collect();
    while let Some((s, ())) = t.allocate(1, 0, NOW, Owner::Primary, |l| offer(l, 99, NOW)) {
        assert!(!bad.contains(&t.addr_of(s)));
    }
    drop(t);
    // Quarantine is persistent and reported as a flag, not re-reported as damage.
    let (t, rep) = LeaseTable::open(&path, &small_pools(), &opts(1)).unwrap();
    assert!(rep.quarantined.is_empty() && rep.repaired.is_empty());
    assert_eq!(t.pool_stats(1).unwrap().quarantined, 3);
}

#[test]
fn update_interrupted_by_a_crash_is_rolled_back() {
    let dir = tempfile::tempdir().unwrap();
    let path = db(&dir);
    let (s_old, s_new);
    {
        let (t, _) = LeaseTable::open(&path, &small_pools(), &opts(1)).unwrap();
        s_old = t
            .allocate(1, 0, NOW, Owner::Primary, |l| {
                offer(l, 1, NOW);
                ack(l, NOW, 3600);
            })
            .unwrap()
            .0;
        // A never-written record torn by its first update.
        s_new = t.slot_of(Ipv4Addr::new(10, 0, 0, 100)).unwrap();
        t.simulate_crash_mid_update(s_old, |l| {
            l.client = key(2);
            l.expiry = NOW + 7200;
        });
        t.simulate_crash_mid_update(s_new, |l| offer(l, 3, NOW));
    }
    let (t, rep) = LeaseTable::open(&path, &small_pools(), &opts(1)).unwrap();
    assert!(rep.quarantined.is_empty(), "{:?}", rep.quarantined);
    assert_eq!(rep.repaired.len(), 2, "{:?}", rep.repaired);
    assert!(
        rep.repaired[0].1.contains("rolled back"),
        "{:?}",
        rep.repaired
    );
    let l = t.read(s_old);
    assert_eq!(
        (l.client, l.state, l.expiry),
        (key(1), LeaseState::Active, NOW + 3600)
    );
    assert_eq!(t.find_client(&key(1)).unwrap().0, s_old);
    assert!(t.find_client(&key(2)).is_none());
    assert_eq!(t.read(s_new), Lease::free(Ipv4Addr::new(10, 0, 0, 100)));
    assert_eq!(t.pool_stats(1).unwrap(), t.recount(1).unwrap());
    // Both records are usable again.
    t.update(s_old, |l| l.cltt += 1);
    t.update(s_new, |l| offer(l, 3, NOW));
    assert_eq!(t.find_client(&key(3)).unwrap().0, s_new);
}

/// Why `path` does not open. Reading its header alone fails with the same words.
fn open_err(path: &Path) -> String {
    let e = LeaseTable::open(path, &small_pools(), &opts(1))
        .unwrap_err()
        .to_string();
    let peeked = FileHeader::read(path).unwrap_err().to_string();
    assert_eq!(peeked, e, "FileHeader::read and open disagree");
    e
}

#[test]
fn bad_files_give_clear_errors() {
    let dir = tempfile::tempdir().unwrap();
    let path = db(&dir);
    drop(LeaseTable::open(&path, &small_pools(), &opts(1)).unwrap());
    let good = fs::read(&path).unwrap();

    // Truncated inside the records.
    fs::write(&path, &good[..good.len() - 100]).unwrap();
    let e = open_err(&path);
    assert!(e.contains("leases.db") && e.contains("truncated"), "{e}");
    assert!(e.contains(&format!("{} bytes", good.len() - 100)), "{e}");
    // Truncated inside the header.
    fs::write(&path, &good[..1000]).unwrap();
    let e = open_err(&path);
    assert!(e.contains("truncated: 1000 bytes"), "{e}");
    // Wrong magic.
    let mut b = good.clone();
    b[0..8].copy_from_slice(b"SQLite f");
    fs::write(&path, &b).unwrap();
    let e = open_err(&path);
    assert!(e.contains("not an xdhcpd lease file"), "{e}");
    // Another version.
    let mut b = good.clone();
    b[8..12].copy_from_slice(&3u32.to_le_bytes());
    fs::write(&path, &b).unwrap();
    let e = open_err(&path);
    assert!(e.contains("format version 3, this build reads 1"), "{e}");
    // Another record size.
    let mut b = good.clone();
    b[12..16].copy_from_slice(&64u32.to_le_bytes());
    fs::write(&path, &b).unwrap();
    assert!(open_err(&path).contains("record size 64"));
    // Damaged pool table.
    let mut b = good.clone();
    b[2176] ^= 0x10;
    fs::write(&path, &b).unwrap();
    assert!(open_err(&path).contains("header checksum mismatch"));
    // Tiny garbage file.
    fs::write(&path, b"hello").unwrap();
    assert!(open_err(&path).contains("not an xdhcpd lease file"));
    // An empty file is initialised (ISC dhcpd needs a touched file; we accept either).
    fs::write(&path, b"").unwrap();
    let (_, rep) = LeaseTable::open(&path, &small_pools(), &opts(1)).unwrap();
    assert!(rep.created);

    // Missing directory / create off.
    let e = LeaseTable::open(&dir.path().join("nope/leases.db"), &small_pools(), &opts(1))
        .unwrap_err()
        .to_string();
    assert!(e.contains("nope") && e.contains("does not exist"), "{e}");
    let o = OpenOptions {
        create: false,
        ..opts(1)
    };
    let e = LeaseTable::open(&dir.path().join("other.db"), &small_pools(), &o)
        .unwrap_err()
        .to_string();
    assert!(
        e.contains("other.db") && e.contains("does not exist"),
        "{e}"
    );
    // Bad pools.
    let e = LeaseTable::open(
        &dir.path().join("x.db"),
        &[
            pool(1, [10, 0, 0, 0], [10, 0, 0, 9]),
            pool(2, [10, 0, 0, 5], [10, 0, 0, 20]),
        ],
        &opts(1),
    )
    .unwrap_err()
    .to_string();
    assert!(e.contains("overlaps"), "{e}");
}

#[test]
fn never_written_record_locked_at_crash_stays_free() {
    // A crash between taking a never-used record's lock (sequence 0 -> 1)
    // and the first write leaves an odd sequence over an all-zero body:
    // nothing was written, so the record is free, not torn.
    let dir = tempfile::tempdir().unwrap();
    let path = db(&dir);
    let off;
    {
        let (t, _) = LeaseTable::open(&path, &small_pools(), &opts(1)).unwrap();
        off = t.record_offset(t.slot(7).unwrap());
        t.flush().unwrap();
    }
    patch(&path, off, &1u32.to_le_bytes());
    let (t, rep) = LeaseTable::open(&path, &small_pools(), &opts(1)).unwrap();
    assert!(rep.quarantined.is_empty(), "{:?}", rep.quarantined);
    let s = t.slot(7).unwrap();
    assert_eq!(t.read(s).state, LeaseState::Free);
    assert_eq!(t.pool_stats(1).unwrap(), t.recount(1).unwrap());
    drop(t);
    // The sequence was reset on disk: the next open finds nothing to report.
    let (_, rep) = LeaseTable::open(&path, &small_pools(), &opts(1)).unwrap();
    assert!(rep.quarantined.is_empty() && rep.repaired.is_empty());
    assert_eq!(peek(&path, off, 4), vec![0, 0, 0, 0]);
}
