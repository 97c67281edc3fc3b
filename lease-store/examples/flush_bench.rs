//! Flush cost per lease in each commit mode.
//!
//! `cargo run --release -p lease-store --example flush_bench -- [RECORDS] [DIR]`
//!
//! Creates a table of RECORDS addresses (default 1,000,000) in DIR (default: a temporary
//! directory), binds every address, flushes, then measures on the file system of DIR:
//! - ack mode (`flush_set` once per worker batch): batches of 1, 8 and 64 renewals at random
//!   places and of 64 adjacent renewals; time per batch and per lease (median and p90 of
//!   the rounds);
//! - interval mode (`flush` of the whole map every N ms): N random renewals then one
//!   `flush`, for N = 64 .. 100,000 (the number of leases one interval collects, e.g.
//!   10,000 = 50,000 leases/s x 200 ms); time per flush and amortised per lease;
//! - the update itself without any flush, for reference.

use std::path::PathBuf;
use std::time::{Duration, Instant};

use lease_store::{DirtySet, LeaseTable, OpenOptions, Owner};

mod common;

struct Rng(u64);
impl Rng {
    fn next(&mut self) -> u64 {
        self.0 ^= self.0 << 13;
        self.0 ^= self.0 >> 7;
        self.0 ^= self.0 << 17;
        self.0
    }
}

fn pct(v: &mut [Duration], p: usize) -> Duration {
    v.sort_unstable();
    v.get((v.len().saturating_sub(1)) * p / 100)
        .copied()
        .unwrap_or_default()
}

fn us(d: Duration) -> f64 {
    d.as_secs_f64() * 1e6
}

fn main() -> Result<(), Box<dyn std::error::Error>> {
    let args: Vec<String> = std::env::args().skip(1).collect();
    let n: u32 = match args.first() {
        Some(a) => a.parse().map_err(|e| format!("RECORDS {a:?}: {e}"))?,
        None => 1_000_000,
    };
    if n < 64 {
        return Err("RECORDS must be at least 64".into());
    }
    let tmp;
    let dir: PathBuf = match args.get(1) {
        Some(d) => d.into(),
        None => {
            tmp = tempfile::tempdir()?;
            tmp.path().to_path_buf()
        }
    };
    let path = dir.join(format!("flush-bench-{n}.db"));
    let _ = std::fs::remove_file(&path);
    let pools = common::pool_of(n);
    let now = lease_store::unix_now();
    let (t, _) = LeaseTable::open(
        &path,
        &pools,
        &OpenOptions {
            shards: 1,
            now,
            ..OpenOptions::default()
        },
    )?;
    let mut i = 0u32;
    while t
        .allocate(1, 0, now, Owner::Primary, |l| {
            common::bind_client(l, i, now)
        })
        .is_some()
    {
        i += 1;
    }
    t.flush()?;
    println!("table: {n} bound leases in {}", path.display());

    let mut rng = Rng(0x9e37_79b9_7f4a_7c15);
    let slot_at = |rng: &mut Rng| t.slot((rng.next() % u64::from(n)) as u32);

    // Update alone.
    let k = 100_000u32;
    let t0 = Instant::now();
    for _ in 0..k {
        let s = slot_at(&mut rng).ok_or("slot")?;
        t.update(s, |l| l.cltt = l.cltt.wrapping_add(1));
    }
    let per = t0.elapsed() / k;
    println!(
        "update (renewal) without flush: {:.0} ns per lease",
        per.as_nanos()
    );
    // Start every measurement from a clean page cache state for the table.
    t.flush()?;

    println!("ack mode (flush_set per batch):");
    let rounds = 300;
    for (batch, adjacent) in [(1u32, false), (8, false), (64, false), (64, true)] {
        let mut times = Vec::with_capacity(rounds);
        for r in 0..rounds as u32 {
            let mut d = DirtySet::new();
            let base = (rng.next() % u64::from(n - batch)) as u32;
            for j in 0..batch {
                let s = if adjacent {
                    t.slot(base + j)
                } else {
                    slot_at(&mut rng)
                }
                .ok_or("slot")?;
                t.update(s, |l| l.cltt = l.cltt.wrapping_add(r + 1));
                d.note(s);
            }
            let t1 = Instant::now();
            t.flush_set(&mut d)?;
            times.push(t1.elapsed());
        }
        let total: Duration = times.iter().sum();
        let p50 = pct(&mut times, 50);
        let p90 = pct(&mut times, 90);
        println!(
            "  {batch:>2} {} renewals per batch: flush_set p50 {:.0} us, p90 {:.0} us, mean {:.0} us \
             per batch = {:.1} us per lease (mean)",
            if adjacent { "adjacent" } else { "random  " },
            us(p50),
            us(p90),
            us(total / rounds as u32),
            us(total / rounds as u32) / f64::from(batch)
        );
    }

    println!("interval mode (N random renewals, then one flush of the whole map):");
    for per_flush in [64u32, 1_000, 10_000, 100_000] {
        let reps = if per_flush >= 100_000 { 3 } else { 10 };
        let mut times = Vec::new();
        for r in 0..reps {
            for _ in 0..per_flush {
                let s = slot_at(&mut rng).ok_or("slot")?;
                t.update(s, |l| l.cltt = l.cltt.wrapping_add(r + 7));
            }
            let t1 = Instant::now();
            t.flush()?;
            times.push(t1.elapsed());
        }
        let p50 = pct(&mut times, 50);
        println!(
            "  {per_flush:>6} renewals per flush: flush p50 {:.1} ms = {:.2} us per lease amortised",
            p50.as_secs_f64() * 1e3,
            us(p50) / f64::from(per_flush)
        );
    }
    // An idle interval (nothing dirty) still walks the mapping.
    let t1 = Instant::now();
    t.flush()?;
    println!(
        "  flush with nothing dirty: {:.2} ms",
        t1.elapsed().as_secs_f64() * 1e3
    );
    drop(t);
    std::fs::remove_file(&path)?;
    Ok(())
}
