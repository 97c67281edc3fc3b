//! Measures open + index rebuild time, memory per lease, and flush cost.
//!
//! `cargo run --release -p lease-store --example open_bench -- RECORDS [DIR] [--cold]`
//!
//! Creates a table of RECORDS addresses in DIR (default: a temporary
//! directory), binds every address to its own client with 2 threads, closes
//! it, and reopens it (warm page cache; with `--cold` the page cache is dropped first, which
//! needs root; `--cold --sync` writes everything back first, so nothing of the file stays
//! cached). Prints the times and the resident memory.
//! With `--wal`: the table is then opened once more with a write-ahead log, 400,000 random
//! renewals are committed through the log (no checkpoint: about 27 MB of log; the daemon
//! checkpoints when its 64 MiB ring is half full, so a restart replays at most about 32 MiB),
//! and the reopen replays that log.

use std::path::PathBuf;
use std::sync::Arc;
use std::time::Instant;

use lease_store::{DirtySet, LeaseTable, OpenOptions, Owner, PoolSpec};

mod common;

fn rss_kib(field: &str) -> u64 {
    let s = std::fs::read_to_string("/proc/self/status").unwrap_or_default();
    s.lines()
        .find(|l| l.starts_with(field))
        .and_then(|l| l.split_whitespace().nth(1))
        .and_then(|v| v.parse().ok())
        .unwrap_or(0)
}

/// CPU seconds (user, system) this process used so far, all threads.
fn cpu_secs() -> (f64, f64) {
    let mut ru = std::mem::MaybeUninit::<libc::rusage>::zeroed();
    // SAFETY: getrusage fills the buffer it is given; RUSAGE_SELF is always valid.
    let ru = unsafe {
        libc::getrusage(libc::RUSAGE_SELF, ru.as_mut_ptr());
        ru.assume_init()
    };
    let s = |t: libc::timeval| t.tv_sec as f64 + t.tv_usec as f64 / 1e6;
    (s(ru.ru_utime), s(ru.ru_stime))
}

fn main() -> Result<(), Box<dyn std::error::Error>> {
    let args: Vec<String> = std::env::args().skip(1).collect();
    let n: u32 = args
        .first()
        .ok_or("usage: open_bench RECORDS [DIR] [--cold]")?
        .parse()?;
    let cold = args.iter().any(|a| a == "--cold");
    // --reuse: keep the file between runs and skip the fill when it exists.
    let reuse = args.iter().any(|a| a == "--reuse");
    let tmp;
    let dir: PathBuf = match args.get(1).filter(|a| !a.starts_with("--")) {
        Some(d) => d.into(),
        None => {
            tmp = tempfile::tempdir()?;
            tmp.path().to_path_buf()
        }
    };
    let path = dir.join(format!("bench-leases-{n}.db"));
    let skip_fill = reuse && path.exists();
    if !skip_fill {
        let _ = std::fs::remove_file(&path);
    }
    let pools = common::pool_of(n);
    let now = 1_800_000_000;
    let opts = OpenOptions {
        shards: 2,
        now,
        ..OpenOptions::default()
    };

    if !skip_fill {
        fill(&path, &pools, &opts, n, now)?;
    }
    let opts = if args.iter().any(|a| a == "--wal") {
        let opts = OpenOptions {
            wal: Some(lease_store::DEFAULT_WAL_BYTES),
            ..opts
        };
        log_renewals(&path, &pools, &opts, n)?;
        opts
    } else {
        opts
    };
    reopen(&path, &pools, &opts, n, now, cold)?;
    if !reuse {
        std::fs::remove_file(&path)?;
    }
    Ok(())
}

fn fill(
    path: &std::path::Path,
    pools: &[PoolSpec],
    opts: &OpenOptions,
    n: u32,
    now: u32,
) -> Result<(), Box<dyn std::error::Error>> {
    let t0 = Instant::now();
    let (t, rep) = LeaseTable::open(path, pools, opts)?;
    println!(
        "create+open empty {n}: {:.3} s (report {:.3} s)",
        t0.elapsed().as_secs_f64(),
        rep.elapsed.as_secs_f64()
    );

    // Bind every address, 2 threads, the way workers would.
    let t = Arc::new(t);
    let t1 = Instant::now();
    let hs: Vec<_> = (0..2u32)
        .map(|sh| {
            let t = t.clone();
            std::thread::spawn(move || {
                let mut i = sh;
                while t
                    .allocate(1, sh as usize, now, Owner::Primary, |l| {
                        common::bind_client(l, i, now)
                    })
                    .is_some()
                {
                    i += 2;
                }
            })
        })
        .collect();
    for h in hs {
        h.join().map_err(|_| "fill thread panicked")?;
    }
    let fill = t1.elapsed().as_secs_f64();
    println!(
        "bind {n} leases (2 threads): {fill:.3} s, {:.0} ns/lease",
        fill * 1e9 / f64::from(n)
    );
    let tf = Instant::now();
    t.flush()?;
    println!("flush after fill: {:.3} s", tf.elapsed().as_secs_f64());

    // Flush cost: batches of 64 renewals at random places, one flush_set each.
    let mut rng = 0x9e37_79b9_7f4a_7c15u64;
    let rounds = 200;
    let tfl = Instant::now();
    for _ in 0..rounds {
        let mut d = DirtySet::new();
        for _ in 0..64 {
            rng ^= rng << 13;
            rng ^= rng >> 7;
            rng ^= rng << 17;
            let s = t.slot((rng % u64::from(n)) as u32).ok_or("slot")?;
            t.update(s, |l| l.cltt += 1);
            d.note(s);
        }
        t.flush_set(&mut d)?;
    }
    let per = tfl.elapsed().as_secs_f64() / f64::from(rounds);
    println!(
        "flush_set of 64 random renewals: {:.2} ms per batch, {:.1} us per lease",
        per * 1e3,
        per * 1e6 / 64.0
    );
    let tfl = Instant::now();
    for i in 0..rounds {
        let mut d = DirtySet::new();
        for k in 0..64u32 {
            let s = t.slot((i * 64 + k) % n).ok_or("slot")?;
            t.update(s, |l| l.cltt += 1);
            d.note(s);
        }
        t.flush_set(&mut d)?;
    }
    let per = tfl.elapsed().as_secs_f64() / f64::from(rounds);
    println!(
        "flush_set of 64 adjacent renewals: {:.2} ms per batch, {:.1} us per lease",
        per * 1e3,
        per * 1e6 / 64.0
    );
    let tfl = Instant::now();
    for i in 0..rounds {
        let s = t.slot(i * 997 % n).ok_or("slot")?;
        t.update(s, |l| l.cltt += 1);
        t.flush()?;
    }
    println!(
        "flush() (whole map) after 1 update: {:.2} ms",
        tfl.elapsed().as_secs_f64() * 1e3 / f64::from(rounds)
    );
    drop(t);
    Ok(())
}

/// Random renewals committed through the log, left there for the next open to replay.
fn log_renewals(
    path: &std::path::Path,
    pools: &[PoolSpec],
    opts: &OpenOptions,
    n: u32,
) -> Result<(), Box<dyn std::error::Error>> {
    let (t, _) = LeaseTable::open(path, pools, opts)?;
    // The open keeps the log an earlier run left (the daemon's checkpointer writes the table
    // back and empties it later): empty it now, so the reopen replays exactly these renewals.
    t.checkpoint()?;
    let t0 = Instant::now();
    let mut rng = 0x2545_f491_4f6c_dd1du64;
    for k in 0..400_000u32 {
        rng ^= rng << 13;
        rng ^= rng >> 7;
        rng ^= rng << 17;
        let s = t.slot((rng % u64::from(n)) as u32).ok_or("slot")?;
        t.update(s, |l| l.expiry += 1);
        if k % 4096 == 4095 {
            t.commit()?;
        }
    }
    t.commit()?;
    let st = t.wal_stats().ok_or("no log")?;
    println!(
        "400000 renewals through the log: {:.3} s, {} commits, {} checkpoints, {:.1} MB of log \
         left to replay",
        t0.elapsed().as_secs_f64(),
        st.commits,
        st.checkpoints,
        st.used as f64 / 1e6
    );
    drop(t);
    Ok(())
}

fn reopen(
    path: &std::path::Path,
    pools: &[PoolSpec],
    opts: &OpenOptions,
    n: u32,
    now: u32,
    cold: bool,
) -> Result<(), Box<dyn std::error::Error>> {
    if cold {
        if std::env::args().any(|a| a == "--sync") {
            // Everything written back first: dirty pages stay in the page cache through
            // drop_caches, and how many of the table's pages the kernel's writeback (or other
            // programs' writes) has cleaned by now is chance. With --sync none of the file
            // stays cached (a reboot, a power cut); without it the pages the last run dirtied
            // are still there, as after a crash of the process.
            // SAFETY: sync(2) takes no arguments and cannot fail.
            unsafe { libc::sync() };
        }
        std::fs::write("/proc/sys/vm/drop_caches", "3")
            .map_err(|e| format!("--cold needs root to drop the page cache: {e}"))?;
    }
    let anon0 = rss_kib("RssAnon:");
    let (u0, s0) = cpu_secs();
    let t2 = Instant::now();
    let (t, rep) = LeaseTable::open(path, pools, opts)?;
    let open = t2.elapsed().as_secs_f64();
    let (u1, s1) = cpu_secs();
    let anon1 = rss_kib("RssAnon:");
    println!(
        "reopen {n} bound leases ({}): {open:.3} s; kept {}, quarantined {}; log: {} entries \
         replayed, {} applied",
        if cold { "cold cache" } else { "warm cache" },
        rep.kept,
        rep.quarantined.len(),
        rep.wal_entries,
        rep.wal_applied
    );
    println!("  phases: {:?}", rep.phases);
    println!(
        "  cpu of the open: user {:.3} s, system {:.3} s",
        u1 - u0,
        s1 - s0
    );
    let index_bytes = (anon1.saturating_sub(anon0)) as f64 * 1024.0 / f64::from(n);
    println!(
        "memory: record 128 B + in-memory indexes {index_bytes:.1} B = {:.1} B per lease",
        128.0 + index_bytes
    );
    if std::env::args().any(|a| a == "--open-only") {
        return Ok(());
    }
    let st = t.pool_stats(1).ok_or("stats")?;
    println!("stats: active {} free {}", st.active, st.free);
    let ts = Instant::now();
    let recount = t.recount(1).ok_or("recount")?;
    println!(
        "recount by scanning all records: {:.3} s (equal to counters: {})",
        ts.elapsed().as_secs_f64(),
        recount == st
    );
    let tsw = Instant::now();
    let r = t.sweep_expired(now + 100, n as usize);
    println!(
        "sweep of all {} records (nothing due): {:.3} s",
        r.scanned,
        tsw.elapsed().as_secs_f64()
    );
    drop(t);
    Ok(())
}
