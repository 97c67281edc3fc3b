//! Background expiry and the per-pool counters.
#![allow(clippy::unwrap_used)] // tests may panic on setup failures

use std::collections::HashSet;

use lease_store::*;

mod common;
use common::*;

#[test]
fn sweep_expires_leases_and_ends_quarantine() {
    let dir = tempfile::tempdir().unwrap();
    let (t, _) = LeaseTable::open(&db(&dir), &small_pools(), &opts(1)).unwrap();
    let (a, ()) = t
        .allocate(1, 0, NOW, Owner::Primary, |l| {
            offer(l, 1, NOW);
            ack(l, NOW, 100);
        })
        .unwrap();
    let (b, ()) = t
        .allocate(1, 0, NOW, Owner::Primary, |l| {
            offer(l, 2, NOW);
            ack(l, NOW, 1000);
        })
        .unwrap();
    let (d, ()) = t
        .allocate(1, 0, NOW, Owner::Primary, |l| {
            l.state = LeaseState::Declined;
            l.clear_binding();
            l.expiry = NOW + 50;
        })
        .unwrap();
    let r = t.sweep_expired(NOW + 10, 1000);
    assert_eq!((r.expired, r.unquarantined, r.relisted), (0, 0, 0));
    assert_eq!(r.scanned, 100);
    assert!(r.wrapped);
    let r = t.sweep_expired(NOW + 100, 100);
    assert_eq!((r.expired, r.unquarantined), (1, 1));
    assert_eq!(t.read(a).state, LeaseState::Expired);
    assert_eq!(t.read(b).state, LeaseState::Active);
    assert_eq!(t.read(d).state, LeaseState::Free);
    // The expired lease keeps its client (who can get it back) ...
    assert_eq!(t.find_client(&key(1)).unwrap().0, a);
    let st = t.pool_stats(1).unwrap();
    assert_eq!((st.expired, st.active, st.declined), (1, 1, 0));
    assert_eq!(t.recount(1).unwrap(), st);
    // ... and is allocatable again: drain the pool and see both come back.
    let mut got = HashSet::new();
    while let Some((s, ())) = t.allocate(1, 0, NOW + 100, Owner::Primary, |l| offer(l, 3, NOW)) {
        got.insert(s);
    }
    assert!(got.contains(&a) && got.contains(&d) && !got.contains(&b));
    assert_eq!(got.len(), 99);
    // Budget is respected and the cursor goes on where it stopped.
    let r = t.sweep_expired(NOW, 30);
    assert_eq!(r.scanned, 30);
}

#[test]
fn counters_stay_exact_under_random_operations() {
    let dir = tempfile::tempdir().unwrap();
    let path = db(&dir);
    let pools = vec![
        pool(1, [10, 0, 0, 0], [10, 0, 0, 199]),
        pool(2, [10, 0, 1, 0], [10, 0, 1, 49]),
    ];
    let (t, _) = LeaseTable::open(&path, &pools, &opts(3)).unwrap();
    let mut rng = Rng(42);
    let mut now = NOW;
    for i in 0..50_000u32 {
        let r = rng.next();
        now += (r % 3) as u32;
        match r % 7 {
            0 | 1 => {
                let pid = if r & 8 == 0 { 1 } else { 2 };
                let owner = if r.is_multiple_of(11) {
                    Owner::Backup
                } else {
                    Owner::Primary
                };
                let _ = t.allocate(pid, (r >> 8) as usize % 3, now, owner, |l| {
                    offer(l, i % 300, now)
                });
            }
            _ => {
                let s = t.slot((r >> 16) as u32 % t.len()).unwrap();
                let st = LeaseState::ALL[(r >> 40) as usize % LeaseState::COUNT];
                t.update(s, |l| {
                    l.state = st;
                    l.expiry = now + (r >> 50) as u32 % 20;
                    if r & 16 == 0 {
                        l.client = key((r >> 20) as u32 % 300);
                    }
                });
            }
        }
        if i % 1000 == 0 {
            t.sweep_expired(now, 64);
        }
    }
    for p in [1, 2] {
        assert_eq!(t.pool_stats(p), t.recount(p), "pool {p}");
    }
    // find_client only ever returns a record holding that key in a bound state.
    for n in 0..300 {
        if let Some((s, l)) = t.find_client(&key(n)) {
            assert_eq!(l.client, key(n));
            assert_eq!(t.read(s), l);
            assert!(l.state.binds_client());
        }
    }
    let before: Vec<PoolStats> = t.all_stats();
    drop(t);
    let (t, _) = LeaseTable::open(&path, &pools, &opts(2)).unwrap();
    assert_eq!(t.all_stats(), before);
}
