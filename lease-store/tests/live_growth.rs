//! Growing a running table (a reload adding pools or growing ranges): the new addresses go
//! into the file's spare record slots while other threads allocate, and the file reopens with
//! them.
#![allow(clippy::unwrap_used)] // tests may panic on setup failures

use std::collections::HashSet;
use std::net::Ipv4Addr;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;

use lease_store::*;

mod common;
use common::*;

fn spare_opts(shards: usize, spare: u32) -> OpenOptions {
    OpenOptions {
        spare,
        ..opts(shards)
    }
}

fn bind(t: &LeaseTable, pool: u32, shard: usize, n: u32) -> Option<Ipv4Addr> {
    t.allocate(pool, shard, NOW, Owner::Primary, |l| {
        offer(l, n, NOW);
        ack(l, NOW, 600);
    })
    .map(|(s, ())| t.addr_of(s))
}

#[test]
fn live_growth_adds_a_pool_and_grows_a_range_and_reopens() {
    let dir = tempfile::tempdir().unwrap();
    let path = db(&dir);
    let p1 = vec![pool(0, [10, 0, 0, 10], [10, 0, 0, 19])];
    let mut held = Vec::new();
    {
        let (t, rep) = LeaseTable::open(&path, &p1, &spare_opts(2, 100)).unwrap();
        assert!(rep.created);
        assert_eq!((t.len(), t.capacity(), t.spare()), (10, 110, 100));
        for n in 0..10 {
            held.push(bind(&t, 0, n as usize % 2, n).unwrap());
        }
        assert_eq!(bind(&t, 0, 0, 99), None, "pool 0 is exhausted");
        // Pool 0 grows at both ends, pool 1 is new.
        let p2 = vec![
            pool(0, [10, 0, 0, 5], [10, 0, 0, 29]),
            pool(1, [10, 0, 1, 0], [10, 0, 1, 49]),
        ];
        let g = t.grow(&p2).unwrap();
        assert_eq!(g.addresses, 5 + 10 + 50);
        assert_eq!(g.spare_left, 35);
        assert_eq!(
            g.added,
            vec![
                pool(0, [10, 0, 0, 5], [10, 0, 0, 9]),
                pool(0, [10, 0, 0, 20], [10, 0, 0, 29]),
                pool(1, [10, 0, 1, 0], [10, 0, 1, 49]),
            ]
        );
        assert_eq!(
            t.pools(),
            &p2[..],
            "the pools as configured, grown ranges merged"
        );
        assert_eq!(t.extents().len(), 4);
        let s0 = t.pool_stats(0).unwrap();
        assert_eq!((s0.total, s0.active, s0.free), (25, 10, 15));
        assert_eq!(t.pool_stats(1).unwrap().free, 50);
        assert_eq!(t.recount(0).unwrap(), s0);
        // Lookups by address reach the new records.
        let s = t.slot_of(Ipv4Addr::new(10, 0, 0, 5)).unwrap();
        assert_eq!(t.addr_of(s), Ipv4Addr::new(10, 0, 0, 5));
        assert_eq!(t.pool_of_slot(s), 0);
        assert_eq!(t.read(s).state, LeaseState::Free);
        // The grown range and the new pool allocate, every address once.
        let mut got = HashSet::new();
        for n in 0..15 {
            let a = bind(&t, 0, n as usize % 2, 100 + n).unwrap();
            let o = u32::from(a) - u32::from(Ipv4Addr::new(10, 0, 0, 0));
            assert!((5..10).contains(&o) || (20..30).contains(&o), "{a}");
            assert!(got.insert(a));
        }
        assert_eq!(bind(&t, 0, 0, 999), None);
        for n in 0..50 {
            let a = bind(&t, 1, n as usize % 2, 200 + n).unwrap();
            assert_eq!(t.slot_of(a).map(|s| t.pool_of_slot(s)), Some(1));
            assert!(got.insert(a));
        }
        assert_eq!(bind(&t, 1, 0, 999), None);
        held.extend(got);
        // The same list again adds nothing.
        assert_eq!(t.grow(&p2).unwrap().addresses, 0);
    }
    // Reopened with the grown configuration: no rebuild, every lease where it was.
    let p2 = vec![
        pool(0, [10, 0, 0, 5], [10, 0, 0, 29]),
        pool(1, [10, 0, 1, 0], [10, 0, 1, 49]),
    ];
    let (t, rep) = LeaseTable::open(&path, &p2, &spare_opts(2, 100)).unwrap();
    assert!(rep.rebuilt.is_none(), "{:?}", rep.rebuilt);
    assert!(rep.quarantined.is_empty(), "{:?}", rep.quarantined);
    assert_eq!(rep.kept, 75);
    assert_eq!(t.pool_stats(0).unwrap().active, 25);
    assert_eq!(t.pool_stats(1).unwrap().active, 50);
    for a in &held {
        let s = t.slot_of(*a).unwrap();
        assert_eq!(t.read(s).state, LeaseState::Active, "{a}");
    }
    let h = FileHeader::read(&path).unwrap();
    assert_eq!(h.pools, p2);
    // Reopened asking for 100 spare slots again: the file was lengthened to keep them.
    assert_eq!((h.records, h.capacity), (75, 175));
    // The read-only view (tools beside the daemon) sees the grown pools too.
    let ro = ReadOnlyTable::open(&path).unwrap();
    let counts = ro.count();
    assert_eq!(counts.iter().map(|c| c.active).sum::<u64>(), 75);
    drop(t);
    // A configuration in another order rebuilds the file compactly, keeping every lease.
    let p3 = vec![
        pool(1, [10, 0, 1, 0], [10, 0, 1, 49]),
        pool(0, [10, 0, 0, 5], [10, 0, 0, 29]),
    ];
    let (t, rep) = LeaseTable::open(&path, &p3, &spare_opts(2, 100)).unwrap();
    assert!(rep.rebuilt.is_some());
    assert_eq!(t.extents().len(), 2);
    assert_eq!(rep.kept, 75);
}

#[test]
fn live_growth_refuses_beyond_the_spare_capacity_and_shrinking() {
    let dir = tempfile::tempdir().unwrap();
    let path = db(&dir);
    let p1 = vec![pool(0, [10, 0, 0, 10], [10, 0, 0, 19])];
    let (t, _) = LeaseTable::open(&path, &p1, &spare_opts(1, 20)).unwrap();
    let too_big = vec![p1[0], pool(1, [10, 0, 1, 0], [10, 0, 1, 20])];
    let e = t.grow(&too_big).unwrap_err();
    assert!(
        matches!(
            e,
            GrowError::Capacity {
                need: 21,
                spare: 20
            }
        ),
        "{e:?}"
    );
    assert!(
        e.to_string()
            .contains("21 addresses more than the lease file's spare capacity 20"),
        "{e}"
    );
    let shrunk = vec![pool(0, [10, 0, 0, 11], [10, 0, 0, 19])];
    let e = t.grow(&shrunk).unwrap_err();
    assert!(e.to_string().contains("can only grow"), "{e}");
    let e = t
        .grow(&[pool(1, [10, 0, 1, 0], [10, 0, 1, 3])])
        .unwrap_err();
    assert!(e.to_string().contains("no longer configured"), "{e}");
    let overlap = vec![p1[0], pool(1, [10, 0, 0, 15], [10, 0, 0, 25])];
    let e = t.grow(&overlap).unwrap_err();
    assert!(e.to_string().contains("overlaps"), "{e}");
    // Nothing changed.
    assert_eq!((t.len(), t.spare()), (10, 20));
    assert_eq!(t.pools(), &p1[..]);
    // Exactly the spare fits.
    let fits = vec![p1[0], pool(1, [10, 0, 1, 0], [10, 0, 1, 19])];
    assert_eq!(t.grow(&fits).unwrap().spare_left, 0);
}

#[test]
fn live_growth_lengthens_an_older_file_without_spare_slots_at_open() {
    let dir = tempfile::tempdir().unwrap();
    let path = db(&dir);
    let p1 = small_pools();
    {
        let (t, _) = LeaseTable::open(&path, &p1, &opts(1)).unwrap();
        assert_eq!(t.spare(), 0);
        bind(&t, 1, 0, 1).unwrap();
        let e = t.grow(&[p1[0], pool(2, [10, 9, 0, 0], [10, 9, 0, 0])]);
        assert!(matches!(e, Err(GrowError::Capacity { need: 1, spare: 0 })));
    }
    let (t, rep) = LeaseTable::open(&path, &p1, &spare_opts(1, 64)).unwrap();
    assert!(rep.rebuilt.is_none());
    assert_eq!((t.len(), t.spare()), (100, 64));
    assert_eq!(t.pool_stats(1).unwrap().active, 1);
    t.grow(&[p1[0], pool(2, [10, 9, 0, 0], [10, 9, 0, 63])])
        .unwrap();
    assert!(bind(&t, 2, 0, 2).is_some());
}

/// Workers allocate and release in a loop while the table grows under them: none fails on
/// the pool it had, and afterwards the new pool's addresses are all usable exactly once.
#[test]
fn live_growth_while_workers_allocate() {
    let dir = tempfile::tempdir().unwrap();
    let path = db(&dir);
    let p1 = vec![pool(0, [10, 0, 0, 0], [10, 0, 0, 255])];
    let (t, _) = LeaseTable::open(&path, &p1, &spare_opts(4, 4096)).unwrap();
    let t = Arc::new(t);
    let stop = Arc::new(AtomicBool::new(false));
    let workers: Vec<_> = (0..4)
        .map(|w| {
            let (t, stop) = (t.clone(), stop.clone());
            std::thread::spawn(move || {
                let mut n = 0u32;
                let mut done = 0u64;
                while !stop.load(Ordering::Relaxed) {
                    let c = w * 1_000_000 + n;
                    n += 1;
                    let Some((s, ())) = t.allocate(0, w as usize, NOW, Owner::Primary, |l| {
                        offer(l, c, NOW);
                    }) else {
                        continue;
                    };
                    assert_eq!(t.pool_of_slot(s), 0);
                    t.update(s, |l| {
                        l.state = LeaseState::Released;
                        true
                    });
                    done += 1;
                }
                done
            })
        })
        .collect();
    let mut pools = p1.clone();
    for k in 1..=8u8 {
        std::thread::sleep(std::time::Duration::from_millis(5));
        pools.push(pool(u32::from(k), [10, 0, k, 0], [10, 0, k, 255]));
        // Pool 0 grows too, by one address downwards each time.
        pools[0].first = Ipv4Addr::from(u32::from(Ipv4Addr::new(10, 0, 0, 0)) - u32::from(k));
        t.grow(&pools).unwrap();
    }
    stop.store(true, Ordering::Relaxed);
    for w in workers {
        assert!(w.join().unwrap() > 0);
    }
    assert_eq!(t.len(), 256 + 8 + 8 * 256);
    let mut seen = HashSet::new();
    for k in 1..=8u32 {
        for n in 0..256 {
            let a = bind(&t, k, n as usize % 4, k * 1000 + n).unwrap();
            assert!(seen.insert(a));
        }
        assert_eq!(bind(&t, k, 0, 1), None);
        assert_eq!(t.recount(k).unwrap().active, 256);
    }
}

/// Ack mode: leases bound in a grown pool are in the write-ahead log; after a power cut that
/// lost every table page written after the growth, the reopened file (whose header the growth
/// made durable first) replays them.
#[test]
fn live_growth_leases_in_a_new_pool_survive_a_power_cut_through_the_log() {
    let dir = tempfile::tempdir().unwrap();
    let path = db(&dir);
    let p1 = vec![pool(0, [10, 0, 0, 10], [10, 0, 0, 19])];
    let p2 = vec![p1[0], pool(1, [10, 0, 1, 0], [10, 0, 1, 99])];
    let wal = OpenOptions {
        wal: Some(MIN_WAL_BYTES),
        ..spare_opts(2, 200)
    };
    let (t, _) = LeaseTable::open(&path, &p1, &wal).unwrap();
    t.grow(&p2).unwrap();
    t.checkpoint().unwrap();
    // What the disk holds once the growth is done.
    let disk = std::fs::read(&path).unwrap();
    let mut bound = Vec::new();
    for n in 0..40 {
        bound.push(bind(&t, 1, n as usize % 2, n).unwrap());
    }
    t.commit().unwrap();
    drop(t);
    std::fs::write(&path, &disk).unwrap();
    let (t, rep) = LeaseTable::open(&path, &p2, &wal).unwrap();
    assert!(rep.rebuilt.is_none());
    assert!(rep.wal_applied >= 40, "{rep:?}");
    assert!(rep.quarantined.is_empty(), "{:?}", rep.quarantined);
    for a in &bound {
        let s = t.slot_of(*a).unwrap();
        assert_eq!(t.pool_of_slot(s), 1);
        assert_eq!(t.read(s).state, LeaseState::Active, "{a}");
    }
    assert_eq!(t.pool_stats(1).unwrap().active, 40);
}

/// A crash after the new pool table entries reached the disk but before the header's count
/// and checksum did: the file opens with the old pools (the entries beyond the count are not
/// part of the header), no rebuild, nothing quarantined.
#[test]
fn live_growth_crash_before_the_header_count_leaves_the_old_header_valid() {
    let dir = tempfile::tempdir().unwrap();
    let path = db(&dir);
    let p1 = vec![pool(0, [10, 0, 0, 10], [10, 0, 0, 19])];
    let p2 = vec![p1[0], pool(1, [10, 0, 1, 0], [10, 0, 1, 9])];
    let before = {
        let (t, _) = LeaseTable::open(&path, &p1, &spare_opts(1, 32)).unwrap();
        bind(&t, 0, 0, 1).unwrap();
        t.checkpoint().unwrap();
        let before = peek(&path, 0, 64);
        t.grow(&p2).unwrap();
        before
    };
    assert_ne!(
        peek(&path, 0, 64),
        before,
        "the grow rewrote the fixed fields"
    );
    patch(&path, 0, &before);
    let (t, rep) = LeaseTable::open(&path, &p1, &spare_opts(1, 32)).unwrap();
    assert!(rep.rebuilt.is_none());
    assert!(rep.quarantined.is_empty(), "{:?}", rep.quarantined);
    assert_eq!((t.len(), t.spare()), (10, 32));
    assert_eq!(t.pool_stats(0).unwrap().active, 1);
    // And the growth can be made again.
    t.grow(&p2).unwrap();
    assert_eq!(t.pool_stats(1).unwrap().free, 10);
}
