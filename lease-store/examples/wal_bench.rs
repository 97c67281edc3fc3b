//! Ack-mode commit costs: the sync primitives for the write-ahead log, and bytes written per
//! DORA with the old commit (msync of the mapping per group) against the log.
//!
//! `cargo run --release -p lease-store --example wal_bench -- [RECORDS] [DIR]`
//!
//! 1. Sync primitives on a preallocated, written-once 64 MiB file in DIR: a group of 1 and of
//!    64 log entries (96 and 6,144 bytes) appended sequentially and made durable by
//!    (a) `pwrite` + `fdatasync`, (b) `pwritev2(RWF_DSYNC)`, (c) `pwrite` on an `O_DSYNC`
//!    descriptor; median and p99 per group over 400 groups each.
//! 2. DORA cost: a table of RECORDS (default 1,000,000) addresses; each DORA is two record
//!    writes (the OFFER's and the ACK's) to a fresh address; groups of G DORAs (G = 1, 16, 64)
//!    are committed the old way (`flush`: msync of the mapping, no log) or the new way
//!    (`commit`: log append + fdatasync, plus one checkpoint at the end, counted too).
//!    Bytes written are the sectors written to the block device holding DIR
//!    (/sys/dev/block/MAJ:MIN/stat), data and file-system journal together. They include
//!    everything else writing to that device meanwhile: give DIR on a file system of its own
//!    (e.g. ext4 on a loop device, see benches/RESULTS.md) for an exact figure.
//!    (/proc/self/io `write_bytes` is no use here: on this kernel every fdatasync adds the
//!    whole file's size to it, 1 MiB per call on a 1 MiB file, measured.)

use std::fs::{self, File, OpenOptions as FsOpen};
use std::os::unix::fs::{FileExt, MetadataExt, OpenOptionsExt};
use std::os::unix::io::AsRawFd;
use std::path::{Path, PathBuf};
use std::time::{Duration, Instant};

use lease_store::{LeaseState, LeaseTable, OpenOptions, Slot, DEFAULT_WAL_BYTES};

mod common;

fn pct(v: &mut [Duration], p: usize) -> Duration {
    v.sort_unstable();
    v.get((v.len().saturating_sub(1)) * p / 100)
        .copied()
        .unwrap_or_default()
}

fn us(d: Duration) -> f64 {
    d.as_secs_f64() * 1e6
}

/// Sectors written to the block device holding `dir` (whole device, all processes).
fn device_sectors(dir: &Path) -> u64 {
    let Ok(m) = fs::metadata(dir) else { return 0 };
    let dev = m.dev();
    let (maj, min) = (libc::major(dev), libc::minor(dev));
    fs::read_to_string(format!("/sys/dev/block/{maj}:{min}/stat"))
        .ok()
        .and_then(|s| s.split_whitespace().nth(6).and_then(|v| v.parse().ok()))
        .unwrap_or(0)
}

fn sync_primitives(dir: &Path) -> Result<(), Box<dyn std::error::Error>> {
    let path = dir.join("wal-bench.log");
    let len: u64 = 64 << 20;
    {
        let f = File::create(&path)?;
        f.set_len(len)?;
        let zeros = vec![0u8; 1 << 20];
        for off in (0..len).step_by(zeros.len()) {
            f.write_all_at(&zeros, off)?;
        }
        f.sync_all()?;
    }
    println!("sync primitives (sequential appends into a written, preallocated file):");
    for group in [96usize, 6_144] {
        let buf = vec![0xa5u8; group];
        for kind in ["pwrite+fdatasync", "pwritev2(RWF_DSYNC)", "O_DSYNC pwrite"] {
            let f = if kind.starts_with("O_DSYNC") {
                FsOpen::new()
                    .write(true)
                    .custom_flags(libc::O_DSYNC)
                    .open(&path)?
            } else {
                FsOpen::new().write(true).open(&path)?
            };
            let mut off = 0u64;
            let mut v = Vec::with_capacity(400);
            for _ in 0..400 {
                let t = Instant::now();
                match kind {
                    "pwrite+fdatasync" => {
                        f.write_all_at(&buf, off)?;
                        f.sync_data()?;
                    }
                    "pwritev2(RWF_DSYNC)" => {
                        let iov = libc::iovec {
                            iov_base: buf.as_ptr() as *mut libc::c_void,
                            iov_len: buf.len(),
                        };
                        // SAFETY: one valid iovec over `buf`, a valid descriptor.
                        let rc = unsafe {
                            libc::pwritev2(f.as_raw_fd(), &iov, 1, off as i64, libc::RWF_DSYNC)
                        };
                        if rc != buf.len() as isize {
                            return Err(
                                format!("pwritev2: {}", std::io::Error::last_os_error()).into()
                            );
                        }
                    }
                    _ => f.write_all_at(&buf, off)?,
                }
                v.push(t.elapsed());
                off = (off + group as u64) % (len - group as u64);
            }
            println!(
                "  {group:>5} B/group  {kind:<20} median {:>7.1} µs  p99 {:>8.1} µs",
                us(pct(&mut v, 50)),
                us(pct(&mut v, 99))
            );
        }
    }
    fs::remove_file(&path)?;
    Ok(())
}

fn dora_cost(dir: &Path, n: u32) -> Result<(), Box<dyn std::error::Error>> {
    println!("bytes written per DORA (2 record writes each, fresh addresses), {n} records:");
    let now = lease_store::unix_now();
    for mode in ["msync (old)", "log (new)"] {
        for g in [1u32, 16, 64] {
            let path = dir.join(format!("wal-bench-{n}.db"));
            let _ = fs::remove_file(&path);
            let _ = fs::remove_file(lease_store::wal_path(&path));
            let opts = OpenOptions {
                shards: 1,
                wal: (mode == "log (new)").then_some(DEFAULT_WAL_BYTES),
                ..OpenOptions::default()
            };
            let (t, _) = LeaseTable::open(&path, &common::pool_of(n), &opts)?;
            t.flush()?;
            let doras = (n / 2).min(2_000 * g) / g * g;
            let (ds0, t0) = (device_sectors(dir), Instant::now());
            let mut slot = 0u32;
            for _ in 0..doras / g {
                for _ in 0..g {
                    let s: Slot = t.slot(slot).ok_or("slot out of range")?;
                    t.update(s, |l| {
                        common::bind_client(l, slot, now);
                        l.state = LeaseState::Offered;
                    });
                    t.update(s, |l| common::bind_client(l, slot, now));
                    slot += 1;
                }
                t.commit()?;
            }
            let commit_time = t0.elapsed();
            let ds_commit = device_sectors(dir) - ds0;
            t.checkpoint()?;
            let ds = device_sectors(dir) - ds0;
            println!(
                "  {mode:<12} group {g:>2} DORA: {:>7.0} B/DORA written to the device ({:>7.0} \
                 by the commits, the rest by the final checkpoint), {:>6.1} µs/DORA, {doras} DORAs",
                (ds * 512) as f64 / f64::from(doras),
                (ds_commit * 512) as f64 / f64::from(doras),
                us(commit_time) / f64::from(doras)
            );
            drop(t);
            fs::remove_file(&path)?;
            let _ = fs::remove_file(lease_store::wal_path(&path));
        }
    }
    Ok(())
}

/// Random renewals of a full table through the log, then one checkpoint: what the
/// checkpoint's msync writes per renewal (the page-cache folio size decides it).
fn renew_cost(dir: &Path, n: u32) -> Result<(), Box<dyn std::error::Error>> {
    let now = lease_store::unix_now();
    let path = dir.join(format!("wal-bench-renew-{n}.db"));
    let opts = OpenOptions {
        shards: 1,
        wal: Some(DEFAULT_WAL_BYTES),
        ..OpenOptions::default()
    };
    let (t, _) = LeaseTable::open(&path, &common::pool_of(n), &opts)?;
    for i in 0..n {
        let s: Slot = t.slot(i).ok_or("slot out of range")?;
        t.update(s, |l| common::bind_client(l, i, now));
    }
    t.checkpoint()?;
    let mut x = 0x9e37_79b9_7f4a_7c15u64;
    for renewals in [1_000u32, 10_000] {
        let ds0 = device_sectors(dir);
        for k in 0..renewals {
            x ^= x << 13;
            x ^= x >> 7;
            x ^= x << 17;
            let i = (x % u64::from(n)) as u32;
            let s: Slot = t.slot(i).ok_or("slot out of range")?;
            t.update(s, |l| l.expiry = now + 90_000 + k);
            if k % 64 == 63 {
                t.commit()?;
            }
        }
        t.commit()?;
        let ds1 = device_sectors(dir);
        let t0 = Instant::now();
        t.checkpoint()?;
        let ds2 = device_sectors(dir);
        println!(
            "{renewals} random renewals of {n} records: log commits {:.0} B/renewal, checkpoint \
             {:.0} B/renewal ({:.1} MB in {:.0} ms)",
            ((ds1 - ds0) * 512) as f64 / f64::from(renewals),
            ((ds2 - ds1) * 512) as f64 / f64::from(renewals),
            ((ds2 - ds1) * 512) as f64 / 1e6,
            t0.elapsed().as_secs_f64() * 1e3
        );
    }
    drop(t);
    fs::remove_file(&path)?;
    fs::remove_file(lease_store::wal_path(&path))?;
    Ok(())
}

fn main() -> Result<(), Box<dyn std::error::Error>> {
    let args: Vec<String> = std::env::args().skip(1).collect();
    let n: u32 = match args.first() {
        Some(a) => a.parse().map_err(|e| format!("RECORDS {a:?}: {e}"))?,
        None => 1_000_000,
    };
    let tmp;
    let dir: PathBuf = match args.get(1) {
        Some(d) => d.into(),
        None => {
            tmp = tempfile::tempdir_in("/var/tmp")?;
            tmp.path().to_path_buf()
        }
    };
    if args.iter().any(|a| a == "--renew") {
        return renew_cost(&dir, n);
    }
    sync_primitives(&dir)?;
    dora_cost(&dir, n)?;
    Ok(())
}
