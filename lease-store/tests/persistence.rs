//! What survives closing and reopening the table, and the file lock.
#![allow(clippy::unwrap_used)] // tests may panic on setup failures

use std::collections::HashSet;

use lease_store::*;

mod common;
use common::*;

#[test]
fn leases_survive_reopen_and_file_is_locked_while_open() {
    let dir = tempfile::tempdir().unwrap();
    let path = db(&dir);
    let mut bound = Vec::new();
    {
        let (t, _) = LeaseTable::open(&path, &small_pools(), &opts(2)).unwrap();
        let err = LeaseTable::open(&path, &small_pools(), &opts(2)).unwrap_err();
        assert!(matches!(err, StoreError::Locked { .. }));
        assert!(err.to_string().contains("leases.db"), "{err}");
        assert!(err.to_string().contains("another xdhcpd"), "{err}");
        for n in 0..30 {
            let (s, ()) = t
                .allocate(1, n as usize % 2, NOW, Owner::Primary, |l| {
                    offer(l, n, NOW);
                    ack(l, NOW, 3600);
                })
                .unwrap();
            bound.push((n, s, t.addr_of(s)));
        }
        t.set_failover_area(b"partner-down since 1234").unwrap();
        let mut d = DirtySet::new();
        for (_, s, _) in &bound {
            d.note(*s);
        }
        t.flush_set(&mut d).unwrap();
        assert!(d.is_empty());
    }
    let (t, rep) = LeaseTable::open(&path, &small_pools(), &opts(3)).unwrap();
    assert!(!rep.created);
    assert_eq!(rep.kept, 30);
    assert!(rep.quarantined.is_empty() && rep.repaired.is_empty());
    for (n, s, addr) in &bound {
        let (f, l) = t.find_client(&key(*n)).unwrap();
        assert_eq!((f, l.addr, l.state), (*s, *addr, LeaseState::Active));
    }
    assert_eq!(t.failover_area(), b"partner-down since 1234");
    let st = t.pool_stats(1).unwrap();
    assert_eq!((st.active, st.free), (30, 70));
    // Bound addresses are not handed out again.
    let taken: HashSet<Slot> = bound.iter().map(|b| b.1).collect();
    while let Some((s, ())) = t.allocate(1, 0, NOW, Owner::Primary, |l| offer(l, 500, NOW)) {
        assert!(!taken.contains(&s));
    }
}

#[test]
fn failover_area_limits() {
    let dir = tempfile::tempdir().unwrap();
    let (t, _) = LeaseTable::open(&db(&dir), &small_pools(), &opts(1)).unwrap();
    assert!(t.failover_area().is_empty());
    let big = vec![7u8; FAILOVER_CAPACITY];
    t.set_failover_area(&big).unwrap();
    assert_eq!(t.failover_area(), big);
    let e = t
        .set_failover_area(&[0; FAILOVER_CAPACITY + 1])
        .unwrap_err();
    assert!(e.to_string().contains("1025 bytes"), "{e}");
}

/// An update that changes nothing leaves a never-used record pristine (all 128 bytes zero,
/// sequence included), so the next open neither quarantines nor repairs it. Also for a closure
/// that changes the record and changes it back, and for `update_tracked`, which says so.
#[test]
fn no_op_update_of_a_pristine_record_keeps_it_pristine() {
    let dir = tempfile::tempdir().unwrap();
    let path = db(&dir);
    let offsets;
    {
        let (t, _) = LeaseTable::open(&path, &small_pools(), &opts(1)).unwrap();
        let (a, b, c) = (t.slot(3).unwrap(), t.slot(4).unwrap(), t.slot(5).unwrap());
        t.update(a, |_| ());
        t.update(b, |l| {
            l.state = LeaseState::Offered;
            l.state = LeaseState::Free;
        });
        let ((), changed) = t.update_tracked(c, |_| ());
        assert!(!changed, "a no-op update reports no change");
        assert_eq!(t.read(a), Lease::free(t.addr_of(a)));
        offsets = [a, b, c].map(|s| t.record_offset(s));
        t.flush().unwrap();
    }
    for off in offsets {
        assert_eq!(
            peek(&path, off, RECORD_SIZE),
            vec![0; RECORD_SIZE],
            "record at {off}"
        );
    }
    let (t, rep) = LeaseTable::open(&path, &small_pools(), &opts(1)).unwrap();
    assert!(rep.quarantined.is_empty(), "{:?}", rep.quarantined);
    assert!(rep.repaired.is_empty(), "{:?}", rep.repaired);
    assert_eq!(rep.kept, 0);
    for i in [3, 4, 5] {
        let s = t.slot(i).unwrap();
        assert_eq!(t.read(s), Lease::free(t.addr_of(s)));
    }
    assert_eq!(t.pool_stats(1).unwrap().free, 100);
}

/// `FileHeader::read` gives the pools in file order, the record count and the creation time,
/// also while the table is open (it takes no lock), and also when the pool table goes past the
/// header's first page.
#[test]
fn file_header_is_readable_while_the_table_is_open() {
    let dir = tempfile::tempdir().unwrap();
    let path = db(&dir);
    // 300 one-address pools (ids descending, so file order is not id order) and a big one.
    let mut pools: Vec<PoolSpec> = (0..300u32)
        .map(|i| {
            pool(
                1000 - i,
                [10, 1, (i >> 8) as u8, i as u8],
                [10, 1, (i >> 8) as u8, i as u8],
            )
        })
        .collect();
    pools.push(pool(7, [10, 2, 0, 0], [10, 2, 3, 255]));
    let (t, _) = LeaseTable::open(&path, &pools, &opts(2)).unwrap();
    let h = FileHeader::read(&path).unwrap();
    assert_eq!(h.pools, pools);
    assert_eq!(h.pools, t.pools());
    assert_eq!(h.records, 300 + 1024);
    assert_eq!(h.records, u64::from(t.len()));
    assert_eq!(h.created, u64::from(NOW));
    drop(t);
    assert_eq!(FileHeader::read(&path).unwrap(), h);
    let e = FileHeader::read(&dir.path().join("missing.db")).unwrap_err();
    assert!(matches!(e, StoreError::Io { .. }), "{e}");
    assert!(e.to_string().contains("missing.db"), "{e}");
}
