//! `allocate_if`: a refused record stays unchanged and free; a taken one is bound.

use std::net::Ipv4Addr;

use lease_store::{Alloc, ClientKey, LeaseState, LeaseTable, OpenOptions, Owner, PoolSpec};

#[test]
fn refused_records_stay_free_and_listed() {
    let dir = tempfile::tempdir().unwrap();
    let pools = [PoolSpec {
        id: 0,
        first: Ipv4Addr::new(10, 0, 0, 1),
        last: Ipv4Addr::new(10, 0, 0, 2),
    }];
    let (t, _) = LeaseTable::open(
        &dir.path().join("l.db"),
        &pools,
        &OpenOptions {
            now: 100,
            ..OpenOptions::default()
        },
    )
    .unwrap();
    // Refuse everything a few times: nothing changes, nothing is lost.
    for _ in 0..5 {
        let r: Alloc<()> = t.allocate_if(0, 0, 100, Owner::Primary, |_| None);
        assert_eq!(r, Alloc::Refused);
    }
    assert_eq!(t.pool_stats(0).unwrap().free, 2);
    // Take both, then the pool is empty.
    let key = ClientKey::from_hw(1, &[2, 0, 0, 0, 0, 1]);
    for _ in 0..2 {
        match t.allocate_if(0, 0, 100, Owner::Primary, |l| {
            l.state = LeaseState::Offered;
            l.client = key;
            Some(l.addr)
        }) {
            Alloc::Taken(slot, addr) => assert_eq!(t.addr_of(slot), addr),
            other => panic!("expected Taken, got {other:?}"),
        }
    }
    assert!(
        !t.take_exhausted(Owner::Primary),
        "refusals and successful allocations do not mark the pool exhausted"
    );
    let r: Alloc<()> = t.allocate_if(0, 0, 100, Owner::Primary, |_| Some(()));
    assert_eq!(r, Alloc::Empty);
    // The failover driver's cheap hint: set by the empty allocation, cleared by reading it.
    assert!(t.take_exhausted(Owner::Primary));
    assert!(!t.take_exhausted(Owner::Primary));
    assert!(!t.take_exhausted(Owner::Backup));
}

#[test]
fn fresh_pool_allocates_upward_from_the_lowest_address() {
    let dir = tempfile::tempdir().unwrap();
    let pools = [PoolSpec {
        id: 0,
        first: Ipv4Addr::new(10, 0, 0, 10),
        last: Ipv4Addr::new(10, 0, 0, 29),
    }];
    let (t, _) = LeaseTable::open(
        &dir.path().join("l.db"),
        &pools,
        &OpenOptions {
            now: 100,
            shards: 1,
            ..OpenOptions::default()
        },
    )
    .unwrap();
    // One shard: exactly ascending. (With N shards each shard walks its own stride upward,
    // so the order is ascending only up to the interleaving of the shards.)
    let mut got = Vec::new();
    for i in 0..5u8 {
        let key = ClientKey::from_hw(1, &[2, 0, 0, 0, 0, i]);
        if let Alloc::Taken(slot, ()) = t.allocate_if(0, 0, 100, Owner::Primary, |l| {
            l.state = LeaseState::Offered;
            l.client = key;
            Some(())
        }) {
            got.push(t.addr_of(slot).octets()[3]);
        }
    }
    assert_eq!(got, vec![10, 11, 12, 13, 14]);
}
