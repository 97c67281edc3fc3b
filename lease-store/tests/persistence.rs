//! What survives closing and reopening the table, and the file lock.

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
