//! Behaviour tests for the lease table: round trips, concurrency, persistence,
//! integrity checks, pool changes, expiry, counters, and SIGKILL survival.

use std::collections::{HashMap, HashSet};
use std::fs;
use std::io::{BufRead, BufReader, Read, Seek, SeekFrom, Write};
use std::net::Ipv4Addr;
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicU8, Ordering};
use std::sync::Arc;

use lease_store::*;

const NOW: u32 = 1_800_000_000;

fn pool(id: u32, a: [u8; 4], b: [u8; 4]) -> PoolSpec {
    PoolSpec {
        id,
        first: Ipv4Addr::from(a),
        last: Ipv4Addr::from(b),
    }
}

fn opts(shards: usize) -> OpenOptions {
    OpenOptions {
        shards,
        now: NOW,
        ..OpenOptions::default()
    }
}

fn key(n: u32) -> ClientKey {
    ClientKey::from_client_id(&[1, 0x02, 0, (n >> 16) as u8, (n >> 8) as u8, n as u8])
}

/// Offers `slot` to client `n` the way the engine would.
fn offer(l: &mut Lease, n: u32, now: u32) {
    l.state = LeaseState::Offered;
    l.client = key(n);
    l.htype = 1;
    l.hlen = 6;
    l.chaddr = [0; 16];
    l.chaddr[..4].copy_from_slice(&n.to_be_bytes());
    l.start = now;
    l.expiry = now + 60;
}

fn ack(l: &mut Lease, now: u32, secs: u32) {
    l.state = LeaseState::Active;
    l.cltt = now;
    l.expiry = now + secs;
    l.lease_time = secs;
}

fn small_pools() -> Vec<PoolSpec> {
    vec![pool(1, [10, 0, 0, 10], [10, 0, 0, 109])]
}

fn db(dir: &tempfile::TempDir) -> PathBuf {
    dir.path().join("leases.db")
}

#[test]
fn table_is_send_and_sync() {
    fn check<T: Send + Sync>() {}
    check::<LeaseTable>();
}

#[test]
fn allocate_update_find_round_trip() {
    let dir = tempfile::tempdir().unwrap();
    let (t, rep) = LeaseTable::open(&db(&dir), &small_pools(), &opts(2)).unwrap();
    assert!(rep.created);
    assert_eq!(rep.records, 100);
    assert_eq!(t.slot_of(Ipv4Addr::new(10, 0, 0, 9)), None);
    assert_eq!(t.slot_of(Ipv4Addr::new(10, 0, 0, 110)), None);

    let (slot, ()) = t
        .allocate(1, 0, NOW, Owner::Primary, |l| offer(l, 7, NOW))
        .unwrap();
    assert_eq!(t.pool_of_slot(slot), 1);
    // Fresh file: the first address of shard 0 is the first address of the pool.
    assert_eq!(t.addr_of(slot), Ipv4Addr::new(10, 0, 0, 10));
    assert_eq!(t.slot_of(t.addr_of(slot)), Some(slot));
    let (found, l) = t.find_client(&key(7)).unwrap();
    assert_eq!(found, slot);
    assert_eq!(l.state, LeaseState::Offered);
    assert_eq!(l.shard, 0);
    assert!(t.find_client(&key(8)).is_none());

    t.update(slot, |l| ack(l, NOW, 3600));
    let l = t.read(slot);
    assert_eq!(l.state, LeaseState::Active);
    assert_eq!(l.expiry, NOW + 3600);
    assert_eq!(l.hw(), &[0, 0, 0, 7, 0, 0]);
    let s = t.pool_stats(1).unwrap();
    assert_eq!((s.total, s.free, s.active, s.offered), (100, 99, 1, 0));

    // Shard 1's first allocation comes from its own half of the pool.
    let (s1, ()) = t
        .allocate(1, 1, NOW, Owner::Primary, |l| offer(l, 8, NOW))
        .unwrap();
    assert_eq!(t.addr_of(s1), Ipv4Addr::new(10, 0, 0, 11));

    // Release puts it back on the free list, at the back (FIFO), key kept.
    t.update(slot, |l| l.state = LeaseState::Released);
    let (f, l) = t.find_client(&key(7)).unwrap();
    assert_eq!((f, l.state), (slot, LeaseState::Released));
    // Reassigning the released address to another client moves the index entry.
    t.update(slot, |l| offer(l, 9, NOW));
    assert!(t.find_client(&key(7)).is_none());
    assert_eq!(t.find_client(&key(9)).unwrap().0, slot);

    // Unknown pool id.
    assert!(t.allocate(99, 0, NOW, Owner::Primary, |_| ()).is_none());
    // Address changes are ignored.
    t.update(slot, |l| l.addr = Ipv4Addr::new(1, 1, 1, 1));
    assert_eq!(t.read(slot).addr, Ipv4Addr::new(10, 0, 0, 10));
}

#[test]
fn pool_exhaustion_steals_then_returns_none() {
    let dir = tempfile::tempdir().unwrap();
    let (t, _) = LeaseTable::open(&db(&dir), &small_pools(), &opts(4)).unwrap();
    let mut seen = HashSet::new();
    let mut n = 0;
    // Shard 0 alone drains the whole pool by stealing from shards 1-3.
    while let Some((s, ())) = t.allocate(1, 0, NOW, Owner::Primary, |l| offer(l, n, NOW)) {
        assert!(seen.insert(s), "slot {s:?} handed out twice");
        n += 1;
    }
    assert_eq!(seen.len(), 100);
    assert_eq!(t.pool_stats(1).unwrap().offered, 100);
}

#[test]
fn backup_addresses_are_only_given_to_backup() {
    let dir = tempfile::tempdir().unwrap();
    let (t, _) = LeaseTable::open(&db(&dir), &small_pools(), &opts(1)).unwrap();
    // Hand the upper half to the backup (what the pool balancer will do).
    for i in 60..110u8 {
        let s = t.slot_of(Ipv4Addr::new(10, 0, 0, i)).unwrap();
        t.update(s, |l| l.state = LeaseState::Backup);
    }
    assert_eq!(t.pool_stats(1).unwrap().backup, 50);
    let mut prim = 0;
    while let Some((s, ())) = t.allocate(1, 0, NOW, Owner::Primary, |l| offer(l, prim, NOW)) {
        assert!(t.addr_of(s) < Ipv4Addr::new(10, 0, 0, 60));
        prim += 1;
    }
    assert_eq!(prim, 50);
    let (s, ()) = t
        .allocate(1, 0, NOW, Owner::Backup, |l| {
            offer(l, 1000, NOW);
            l.owner = Owner::Backup;
        })
        .unwrap();
    assert!(t.addr_of(s) >= Ipv4Addr::new(10, 0, 0, 60));
    assert_eq!(t.read(s).owner, Owner::Backup);
}

#[test]
fn two_threads_never_get_the_same_address() {
    let dir = tempfile::tempdir().unwrap();
    let pools = vec![pool(1, [10, 1, 0, 0], [10, 1, 0, 255])];
    let (t, _) = LeaseTable::open(&db(&dir), &pools, &opts(2)).unwrap();
    let t = Arc::new(t);
    // holder[slot]: 0 = nobody, else thread id + 1. Claimed with a CAS right
    // after allocate: a failing CAS means the table gave one address twice.
    let holder: Arc<Vec<AtomicU8>> = Arc::new((0..256).map(|_| AtomicU8::new(0)).collect());
    let handles: Vec<_> = (0..2u32)
        .map(|tid| {
            let t = t.clone();
            let holder = holder.clone();
            std::thread::spawn(move || {
                let mut mine: Vec<Slot> = Vec::new();
                let mut rng = 0x1234_5678u64 + u64::from(tid);
                let mut allocs = 0u32;
                for i in 0..200_000u32 {
                    rng ^= rng << 13;
                    rng ^= rng >> 7;
                    rng ^= rng << 17;
                    let client = tid * 1_000_000 + i;
                    if !rng.is_multiple_of(3) || mine.is_empty() {
                        if let Some((s, ())) =
                            t.allocate(1, tid as usize, NOW, Owner::Primary, |l| {
                                offer(l, client, NOW)
                            })
                        {
                            let prev = holder[s.index() as usize].compare_exchange(
                                0,
                                tid as u8 + 1,
                                Ordering::AcqRel,
                                Ordering::Acquire,
                            );
                            assert!(prev.is_ok(), "slot {s:?} given to both threads");
                            mine.push(s);
                            allocs += 1;
                        }
                    } else {
                        let s = mine.swap_remove((rng as usize / 3) % mine.len());
                        holder[s.index() as usize].store(0, Ordering::Release);
                        let state = if rng & 1 == 0 {
                            LeaseState::Released
                        } else {
                            LeaseState::Expired
                        };
                        t.update(s, |l| {
                            l.state = state;
                            l.expiry = NOW;
                        });
                    }
                }
                (allocs, mine)
            })
        })
        .collect();
    let mut held = HashSet::new();
    let mut total = 0;
    for h in handles {
        let (allocs, mine) = h.join().unwrap();
        total += allocs;
        for s in mine {
            assert!(held.insert(s));
        }
    }
    assert!(total > 100_000, "too few allocations: {total}");
    // Every held slot is Offered, everything else is free.
    let stats = t.recount(1).unwrap();
    assert_eq!(stats.offered, held.len() as u64);
    assert_eq!(t.pool_stats(1).unwrap(), stats);
    // And the free lists still hold exactly the free addresses.
    let mut n = 0;
    while t
        .allocate(1, 0, NOW, Owner::Primary, |l| offer(l, 9_999_999, NOW))
        .is_some()
    {
        n += 1;
    }
    assert_eq!(n, 256 - held.len());
}

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

fn patch(path: &Path, off: u64, bytes: &[u8]) {
    let mut f = fs::OpenOptions::new().write(true).open(path).unwrap();
    f.seek(SeekFrom::Start(off)).unwrap();
    f.write_all(bytes).unwrap();
}

fn peek(path: &Path, off: u64, n: usize) -> Vec<u8> {
    let mut f = fs::File::open(path).unwrap();
    f.seek(SeekFrom::Start(off)).unwrap();
    let mut b = vec![0; n];
    f.read_exact(&mut b).unwrap();
    b
}

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

fn open_err(path: &Path) -> String {
    LeaseTable::open(path, &small_pools(), &opts(1))
        .unwrap_err()
        .to_string()
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

/// A tiny deterministic RNG for the randomized tests.
struct Rng(u64);
impl Rng {
    fn next(&mut self) -> u64 {
        self.0 ^= self.0 << 13;
        self.0 ^= self.0 >> 7;
        self.0 ^= self.0 << 17;
        self.0
    }
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

// ------------------------------------------------------------------ crash test

const CHILD_ENV: &str = "LEASE_STORE_CRASH_CHILD";

fn crash_pools() -> Vec<PoolSpec> {
    vec![pool(1, [10, 9, 0, 0], [10, 9, 63, 255])]
}

/// Not a test on its own: the body of the child process that `sigkill_*`
/// starts (it returns at once unless the env var is set).
#[test]
#[ignore = "helper process for leases_flushed_before_sigkill_survive"]
fn crash_child() {
    let Ok(path) = std::env::var(CHILD_ENV) else {
        return;
    };
    let round: u32 = std::env::var("LEASE_STORE_CRASH_ROUND")
        .unwrap()
        .parse()
        .unwrap();
    let (t, _) = LeaseTable::open(Path::new(&path), &crash_pools(), &opts(2)).unwrap();
    let t = Arc::new(t);
    let out = Arc::new(std::sync::Mutex::new(std::io::stdout()));
    let handles: Vec<_> = (0..2u32)
        .map(|tid| {
            let t = t.clone();
            let out = out.clone();
            std::thread::spawn(move || {
                let mut d = DirtySet::new();
                let mut batch = Vec::new();
                for i in 0.. {
                    let n = (round << 20) | (tid << 19) | i;
                    let got = t.allocate(1, tid as usize, NOW, Owner::Primary, |l| {
                        offer(l, n, NOW);
                        ack(l, NOW, 86_400);
                    });
                    let Some((s, ())) = got else { break };
                    d.note(s);
                    batch.push(n);
                    // Renew an older lease too, so kills also hit rewrites.
                    if let Some((s2, _)) = t.find_client(&key(n.saturating_sub(7))) {
                        t.update(s2, |l| l.cltt += 1);
                        d.note(s2);
                    }
                    if batch.len() == 16 {
                        t.flush_set(&mut d).unwrap();
                        let mut o = out.lock().unwrap();
                        for n in batch.drain(..) {
                            writeln!(o, "COMMITTED {n}").unwrap();
                        }
                        o.flush().unwrap();
                    }
                }
            })
        })
        .collect();
    for h in handles {
        h.join().unwrap();
    }
}

#[test]
fn leases_flushed_before_sigkill_survive() {
    let dir = tempfile::tempdir().unwrap();
    let path = db(&dir);
    let exe = std::env::current_exe().unwrap();
    let mut committed: Vec<u32> = Vec::new();
    let mut rng = Rng(0xdead_beef);
    for round in 0..5u32 {
        let mut child = std::process::Command::new(&exe)
            .args([
                "crash_child",
                "--exact",
                "--ignored",
                "--nocapture",
                "--test-threads=1",
            ])
            .env(CHILD_ENV, &path)
            .env("LEASE_STORE_CRASH_ROUND", round.to_string())
            .stdout(std::process::Stdio::piped())
            .stderr(std::process::Stdio::null())
            .spawn()
            .unwrap();
        let stdout = child.stdout.take().unwrap();
        let want = 200 + (rng.next() % 1500) as usize;
        let mut lines = BufReader::new(stdout).lines();
        let mut got = 0;
        while got < want {
            match lines.next() {
                Some(Ok(line)) => {
                    if let Some(n) = line.strip_prefix("COMMITTED ") {
                        committed.push(n.parse().unwrap());
                        got += 1;
                    }
                }
                _ => break,
            }
        }
        // SAFETY: plain kill(2) of our own child.
        unsafe { libc::kill(child.id() as i32, libc::SIGKILL) };
        let _ = child.wait();
        // Lines already printed were flushed before printing: read the rest.
        for line in lines.map_while(Result::ok) {
            if let Some(n) = line.strip_prefix("COMMITTED ") {
                committed.push(n.parse().unwrap());
            }
        }
        assert!(got > 0, "child produced no leases in round {round}");

        let (t, rep) = LeaseTable::open(&path, &crash_pools(), &opts(2)).unwrap();
        let mut owners: HashMap<Ipv4Addr, ClientKey> = HashMap::new();
        for (_, l) in t.iter() {
            if l.state == LeaseState::Active {
                assert!(owners.insert(l.addr, l.client).is_none());
            }
        }
        for n in &committed {
            let hit = t.find_client(&key(*n));
            match hit {
                Some((_, l)) => assert_eq!(l.state, LeaseState::Active),
                None => panic!("round {round}: committed lease {n} missing; report {rep:?}"),
            }
        }
        let clients: HashSet<ClientKey> = owners.values().copied().collect();
        assert_eq!(clients.len(), owners.len(), "a client holds two addresses");
        assert!(rep.quarantined.is_empty(), "round {round}: {rep:?}");
        assert_eq!(t.pool_stats(1), t.recount(1));
        drop(t);
    }
    assert!(committed.len() >= 1000);
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
