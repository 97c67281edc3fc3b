//! The lease table's per-packet operations and the commit cost, on a table
//! of 1,048,319 records (128 bytes each) in a file in a temporary folder
//! (`$TMPDIR`, else /tmp; on the bench machine /tmp is ext4 on the VM's
//! virtio disk, the same file system as /work).
//!
//! - `allocate` (+ `update` to Active): the lease work of DISCOVER / REQUEST;
//! - `update` alone: a renewal, and the whole per-lease cost in interval
//!   commit mode (the flush is off the packet path);
//! - `find_client` (hit and miss) and `read`;
//! - `flush` after N dirty records: the group-commit cost per batch in ack
//!   mode, N = 1, 64 (one worker batch), 1024. "contiguous" records share
//!   pages (a wave of fresh allocations); "scattered" ones are one per 4 KiB
//!   page (renewals of random clients), the worst case per record.

use std::hint::black_box;
use std::time::{Duration, Instant};

use criterion::measurement::WallTime;
use criterion::{
    criterion_group, criterion_main, BenchmarkGroup, BenchmarkId, Criterion, Throughput,
};
use lease_store::{ClientKey, DirtySet, LeaseState, LeaseTable, Owner, Slot};
use xdhcpd_benches::{big_pool, client_mac, free_slots, in_chunks, open_table_with, NOW};

const CHUNK: u64 = 4096;
const BOUND: u64 = 65_536;
/// Records per 4 KiB page.
const PER_PAGE: u32 = 4096 / lease_store::RECORD_SIZE as u32;

fn key(n: u64) -> ClientKey {
    let mut id = [1u8; 7];
    id[1..].copy_from_slice(&client_mac(n));
    ClientKey::from_client_id(&id)
}

fn offer(l: &mut lease_store::Lease, k: &ClientKey) {
    l.state = LeaseState::Offered;
    l.client = *k;
    l.expiry = NOW + 30;
}

fn activate(l: &mut lease_store::Lease, now: u32) {
    l.state = LeaseState::Active;
    l.start = now;
    l.cltt = now;
    l.expiry = now + 3600;
    l.lease_time = 3600;
}

fn alloc(t: &LeaseTable, k: &ClientKey) -> Slot {
    match t.allocate(1, 0, NOW, Owner::Primary, |l| offer(l, k)) {
        Some((s, ())) => s,
        None => panic!("pool ran dry"),
    }
}

/// Times the allocation of fresh clients' addresses (Offered), `then` done
/// to each new slot inside the timed part; the slots go back to the free
/// lists, untimed, between chunks.
fn bench_allocate(
    g: &mut BenchmarkGroup<'_, WallTime>,
    name: &str,
    table: &LeaseTable,
    next: &mut u64,
    taken: &mut Vec<Slot>,
    then: impl Fn(&LeaseTable, Slot),
) {
    g.bench_function(name, |b| {
        b.iter_custom(|iters| {
            in_chunks(iters, CHUNK, |n| {
                let t = Instant::now();
                for _ in 0..n {
                    let k = key(*next);
                    *next += 1;
                    let s = alloc(table, black_box(&k));
                    then(table, s);
                    taken.push(s);
                }
                let took = t.elapsed();
                free_slots(table, taken);
                taken.clear();
                took
            })
        })
    });
}

fn lease_benches(c: &mut Criterion) {
    let dir = tempfile::tempdir().expect("temporary folder for the lease table");
    let path = dir.path().join("leases.db");
    let t0 = Instant::now();
    let table = open_table_with(&path, &[big_pool()]).unwrap_or_else(|e| panic!("{e}"));
    eprintln!(
        "lease: table of {} records created and opened in {:.0?} at {}",
        table.len(),
        t0.elapsed(),
        path.display()
    );
    let mut next: u64 = 1 << 32;
    let mut taken: Vec<Slot> = Vec::with_capacity(CHUNK as usize);

    let mut g = c.benchmark_group("lease/op");
    g.throughput(Throughput::Elements(1));

    bench_allocate(
        &mut g,
        "allocate_offered",
        &table,
        &mut next,
        &mut taken,
        |_, _| {},
    );
    bench_allocate(
        &mut g,
        "allocate_offered_then_update_active",
        &table,
        &mut next,
        &mut taken,
        |t, s| t.update(s, |l| activate(l, NOW)),
    );

    // Bound clients for renew / lookup.
    let bound: Vec<(ClientKey, Slot)> = (0..BOUND)
        .map(|_| {
            let k = key(next);
            next += 1;
            let s = alloc(&table, &k);
            table.update(s, |l| activate(l, NOW));
            (k, s)
        })
        .collect();
    let mut turn: u64 = 0;

    // The interval-mode cost of a lease change: the update, no flush.
    g.bench_function("update_renew_no_flush", |b| {
        b.iter(|| {
            let (_, s) = bound[(turn % BOUND) as usize];
            let now = NOW + 1 + (turn / BOUND) as u32;
            turn += 1;
            table.update(black_box(s), |l| activate(l, now))
        })
    });
    // The same renewal as the first write to its page after a commit: msync
    // write-protects the pages it cleaned, so the next store to each of them
    // takes a page fault (ext4 `page_mkwrite`). In ack mode this is the
    // normal case for renewals (one record per page). Flushes untimed.
    let mut stamp2: u32 = NOW + 100_000;
    g.bench_function("update_first_write_after_flush", |b| {
        b.iter_custom(|iters| {
            let mut page: u64 = 0;
            in_chunks(iters, 64, |n| {
                if let Err(e) = table.flush() {
                    panic!("flush: {e}");
                }
                stamp2 += 1;
                let t = Instant::now();
                for _ in 0..n {
                    // One record per 4 KiB page, cycling over the bound slots.
                    let (_, s) = bound[((page * u64::from(PER_PAGE)) % BOUND) as usize];
                    page += 1;
                    table.update(black_box(s), |l| l.expiry = stamp2);
                }
                t.elapsed()
            })
        })
    });
    g.bench_function("find_client_hit", |b| {
        b.iter(|| {
            let (k, _) = &bound[(turn % BOUND) as usize];
            turn += 1;
            table.find_client(black_box(k)).map(|(s, _)| s)
        })
    });
    g.bench_function("find_client_miss", |b| {
        b.iter(|| {
            let k = key(next);
            next += 1;
            table.find_client(black_box(&k)).map(|(s, _)| s)
        })
    });
    g.bench_function("read", |b| {
        b.iter(|| {
            let (_, s) = bound[(turn % BOUND) as usize];
            turn += 1;
            table.read(black_box(s)).expiry
        })
    });
    g.finish();

    // ------------------------------------------------------------- commit
    let mut g = c.benchmark_group("lease/commit");
    g.sample_size(30);
    let total = table.len();
    let mut base: u32 = 0;
    let mut stamp: u32 = NOW + 10_000;
    // Dirties `n` records (untimed) and returns the set touched.
    let mut dirty = |n: u32, stride: u32, set: &mut DirtySet| {
        let span = n * stride;
        if base + span >= total {
            base = 0;
        }
        stamp += 1;
        for i in 0..n {
            if let Some(s) = table.slot(base + i * stride) {
                table.update(s, |l| l.expiry = stamp);
                set.note(s);
            }
        }
        base += span;
    };
    for n in [1u32, 64, 1024] {
        g.throughput(Throughput::Elements(u64::from(n)));
        for (layout, stride) in [("contiguous", 1u32), ("scattered", PER_PAGE)] {
            if n == 1 && stride != 1 {
                continue;
            }
            // The whole map, or only the pages of the records dirtied.
            for (what, set_only) in [("flush_all", false), ("flush_set", true)] {
                g.bench_function(BenchmarkId::new(format!("{what}/{layout}"), n), |b| {
                    b.iter_custom(|iters| {
                        let mut total = Duration::ZERO;
                        for _ in 0..iters {
                            let mut set = DirtySet::new();
                            dirty(n, stride, &mut set);
                            let t = Instant::now();
                            let flushed = if set_only {
                                table.flush_set(&mut set)
                            } else {
                                table.flush()
                            };
                            if let Err(e) = flushed {
                                panic!("{what}: {e}");
                            }
                            total += t.elapsed();
                        }
                        total
                    })
                });
            }
        }
    }
    // The fixed cost of a commit with nothing to write (msync of a clean
    // 128 MiB mapping).
    g.throughput(Throughput::Elements(1));
    if let Err(e) = table.flush() {
        panic!("flush: {e}");
    }
    g.bench_function("flush_all/clean", |b| b.iter(|| table.flush().is_ok()));
    g.finish();
    drop(bound);
}

criterion_group!(benches, lease_benches);
criterion_main!(benches);
