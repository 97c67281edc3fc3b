//! Changing the configured pools: growing keeps leases, shrinking needs the
//! flag and reports what it drops.
#![allow(clippy::unwrap_used)] // tests may panic on setup failures

use std::collections::HashSet;
use std::net::Ipv4Addr;

use lease_store::*;

mod common;
use common::*;

#[test]
fn growing_and_adding_pools_keeps_leases() {
    let dir = tempfile::tempdir().unwrap();
    let path = db(&dir);
    let p1 = vec![pool(1, [10, 0, 0, 10], [10, 0, 0, 19])];
    let mut addrs = Vec::new();
    {
        let (t, _) = LeaseTable::open(&path, &p1, &opts(1)).unwrap();
        for n in 0..5 {
            let (s, ()) = t
                .allocate(1, 0, NOW, Owner::Primary, |l| {
                    offer(l, n, NOW);
                    ack(l, NOW, 600);
                })
                .unwrap();
            addrs.push(t.addr_of(s));
        }
        t.set_failover_area(b"fo").unwrap();
    }
    // New pool in front (changes every slot number), and pool 1 grows downwards.
    let p2 = vec![
        pool(9, [192, 168, 0, 1], [192, 168, 0, 200]),
        pool(1, [10, 0, 0, 0], [10, 0, 0, 50]),
    ];
    let (t, rep) = LeaseTable::open(&path, &p2, &opts(2)).unwrap();
    assert!(rep.rebuilt.is_some(), "{rep:?}");
    assert!(rep.dropped_by_shrink.is_empty());
    assert_eq!(rep.records, 200 + 51);
    assert_eq!(rep.kept, 5);
    for (n, a) in addrs.iter().enumerate() {
        let (s, l) = t.find_client(&key(n as u32)).unwrap();
        assert_eq!(
            (t.addr_of(s), l.addr, l.state),
            (*a, *a, LeaseState::Active)
        );
        assert_eq!(t.pool_of_slot(s), 1);
    }
    assert_eq!(t.pool_stats(1).unwrap().active, 5);
    assert_eq!(t.pool_stats(9).unwrap().free, 200);
    assert_eq!(t.failover_area(), b"fo");
    assert!(!dir.path().join("leases.db.rebuild").exists());
}

#[test]
fn shrinking_needs_the_flag_and_reports_lost_leases() {
    let dir = tempfile::tempdir().unwrap();
    let path = db(&dir);
    let p1 = vec![
        pool(1, [10, 0, 0, 0], [10, 0, 0, 99]),
        pool(2, [10, 0, 1, 0], [10, 0, 1, 9]),
    ];
    {
        let (t, _) = LeaseTable::open(&path, &p1, &opts(1)).unwrap();
        // Live leases at .0.95-.0.99 and in pool 2; an expired one at .0.90.
        for (i, a) in [
            [10, 0, 0, 95],
            [10, 0, 0, 99],
            [10, 0, 1, 3],
            [10, 0, 0, 90],
        ]
        .iter()
        .enumerate()
        {
            let s = t.slot_of(Ipv4Addr::from(*a)).unwrap();
            t.update(s, |l| {
                offer(l, i as u32, NOW);
                ack(l, NOW, 600);
                if i == 3 {
                    l.expiry = NOW - 1;
                }
            });
        }
    }
    let p2 = vec![pool(1, [10, 0, 0, 0], [10, 0, 0, 89])];
    let err = LeaseTable::open(&path, &p2, &opts(1)).unwrap_err();
    match &err {
        StoreError::Shrink { count, first, .. } => {
            assert_eq!(*count, 3);
            let lost: HashSet<Ipv4Addr> = first.iter().map(|l| l.addr).collect();
            assert!(lost.contains(&Ipv4Addr::new(10, 0, 0, 95)));
            assert!(lost.contains(&Ipv4Addr::new(10, 0, 1, 3)));
        }
        e => panic!("unexpected {e}"),
    }
    let msg = err.to_string();
    assert!(
        msg.contains("10.0.0.99") && msg.contains("allow the shrink"),
        "{msg}"
    );
    // Nothing was changed by the refusal.
    let (t, rep) = LeaseTable::open(&path, &p1, &opts(1)).unwrap();
    assert!(rep.rebuilt.is_none());
    assert_eq!(t.pool_stats(1).unwrap().active, 3);
    drop(t);
    let o = OpenOptions {
        allow_shrink: true,
        ..opts(1)
    };
    let (t, rep) = LeaseTable::open(&path, &p2, &o).unwrap();
    assert_eq!(rep.dropped_by_shrink.len(), 3);
    assert_eq!(t.len(), 90);
    // .0.90 held only an expired lease: dropped without being listed.
    assert_eq!(t.pool_stats(1).unwrap().active, 0);
    assert!(t.find_client(&key(0)).is_none());
}
