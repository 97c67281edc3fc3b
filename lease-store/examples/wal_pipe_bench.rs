//! Issue 18, "measure before you choose": do overlapping group commits shorten the tail of the
//! time a DORA waits for the write-ahead log?
//!
//! `cargo run --release -p lease-store --example wal_pipe_bench -- [options]`
//!
//! A simulated committer appends groups to a preallocated, written-once log file (64 MiB, in
//! `--dir`, default a temporary directory in /var/tmp) and makes each durable; DORAs "arrive"
//! at `--rate` per second (Poisson, precomputed; `--bytes` of log entries each, 130 by
//! default: two record changes of ~65 bytes) and each is released when a durable point covers
//! it. The time from a DORA's arrival to its release is its wait. Modes (`--modes`, run
//! alternately `--rounds` times, `--secs` each):
//!
//! - `one`: one syncer, as the committer today: a group is `pwrite` + `fdatasync`; the next
//!   group starts `--coalesce-us` after the previous one ended when the previous one carried at
//!   least 8 DORAs (the committer's `commit-coalesce-us` rule, 16 record changes), else at once.
//! - `two`: two syncers, each with its own descriptor of the log (so a writeback error reaches
//!   both: every `struct file` has its own error cursor), groups written in stream order under
//!   a lock, each synced outside it. A second group starts while one is in flight once that
//!   one is `--overlap-us` old (default 250: the 98 % bound of a group commit). A completed
//!   `fdatasync` covers every byte whose `pwrite` completed before it was called, so its
//!   completion makes durable every group up to its own, even one whose own sync is still in
//!   flight: durable = the end of the highest group whose sync (or a later one's) completed.
//! - `direct1` / `direct2`: one or two syncers with `O_DIRECT` + `pwritev2(RWF_DSYNC)` of
//!   groups padded to 512 bytes; each write covers only itself, so durable = the highest
//!   contiguous completed group.
//!
//! `--fifo` runs the syncers at SCHED_FIFO priority 10 (root): no run-queue delay, so the tail
//! left is the kernel's and the device's. `--slice-us` (default 100) asks for the short slice
//! the daemon's committer asks for otherwise. `--bg-pages P` dirties P random 4 KiB pages a
//! second in a 256 MiB file beside the log and `fdatasync`s it every `--bg-sync-ms` (the
//! table's writeback, emulated).
//!
//! Printed per run: group commit (write + sync) p50/p99/p99.9/max, groups over 1 ms, DORA wait
//! p50/p99/p99.9/max and the share over 1 ms, and the device's flush count and time from
//! /sys/block/<dev>/stat (whole device, everything writing to it meanwhile).

use std::fs::{self, File, OpenOptions as FsOpen};
use std::os::unix::fs::{FileExt, MetadataExt, OpenOptionsExt};
use std::os::unix::io::AsRawFd;
use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

const LOG_LEN: u64 = 64 << 20;

#[derive(Clone)]
struct Opts {
    rate: f64,
    secs: f64,
    bytes: u64,
    coalesce_us: u64,
    overlap_us: u64,
    bg_pages: u64,
    bg_sync_ms: u64,
    slice_us: u64,
    fifo: bool,
}

#[derive(Clone, Copy, PartialEq)]
enum Mode {
    One,
    Two,
    Direct1,
    Direct2,
}

impl Mode {
    fn parse(s: &str) -> Result<Self, String> {
        match s {
            "one" => Ok(Mode::One),
            "two" => Ok(Mode::Two),
            "direct1" => Ok(Mode::Direct1),
            "direct2" => Ok(Mode::Direct2),
            _ => Err(format!(
                "--modes: unknown mode {s:?} (one, two, direct1, direct2)"
            )),
        }
    }
    fn name(self) -> &'static str {
        match self {
            Mode::One => "one",
            Mode::Two => "two",
            Mode::Direct1 => "direct1",
            Mode::Direct2 => "direct2",
        }
    }
    fn syncers(self) -> usize {
        match self {
            Mode::One | Mode::Direct1 => 1,
            Mode::Two | Mode::Direct2 => 2,
        }
    }
    fn direct(self) -> bool {
        matches!(self, Mode::Direct1 | Mode::Direct2)
    }
}

struct Group {
    /// Arrivals `from..to` (indexes).
    to: usize,
    done: bool,
}

struct State {
    /// Arrivals taken into groups so far.
    taken: usize,
    /// Next log position.
    pos: u64,
    groups: Vec<Group>,
    /// Groups durable (a prefix of `groups`).
    durable_groups: usize,
    /// Arrivals released (a prefix).
    released: usize,
    in_flight: usize,
    /// Starts of the groups in flight (ns since t0).
    starts: Vec<u64>,
    last_end: u64,
    last_carried: usize,
    /// Write + sync time of each group (ns).
    group_ns: Vec<u64>,
    /// Groups whose sync completed while an earlier group's own sync was still in flight.
    out_of_order: u64,
    /// Completion time of each group's own sync (ns since t0; 0: not yet).
    own_end: Vec<u64>,
    /// For a group that completed right after an earlier overlapping one: the time between
    /// the two completions (ns).
    lag_ns: Vec<u64>,
    /// Involuntary context switches of the syncer threads during their syncs.
    nivcsw: u64,
    /// Of the groups over 1 ms: how many spent at least half of it runnable but off the CPU
    /// (run queue delay from /proc/thread-self/schedstat), and their total run delay (ns).
    slow_sched: u64,
    slow_delay_ns: u64,
    slow_total_ns: u64,
    /// Release time of each arrival (ns since t0).
    done_ns: Vec<u64>,
}

fn device_stat(dir: &Path) -> Option<Vec<u64>> {
    let dev = fs::metadata(dir).ok()?.dev();
    let (maj, min) = (libc::major(dev), libc::minor(dev));
    let s = fs::read_to_string(format!("/sys/dev/block/{maj}:{min}/stat")).ok()?;
    Some(
        s.split_whitespace()
            .filter_map(|v| v.parse().ok())
            .collect(),
    )
}

/// Involuntary context switches of the calling thread so far.
fn nivcsw() -> u64 {
    // SAFETY: getrusage fills the struct we own.
    let mut r: libc::rusage = unsafe { std::mem::zeroed() };
    // SAFETY: valid pointer to an rusage.
    unsafe { libc::getrusage(libc::RUSAGE_THREAD, &mut r) };
    r.ru_nivcsw as u64
}

/// Asks the scheduler for a `us` slice for the calling thread, as the daemon's committer does
/// (`worker-slice-us`, `userspace/src/server/sched.rs`); 0: the kernel's default.
fn ask_slice(us: u64) -> Result<(), String> {
    #[repr(C)]
    #[derive(Default)]
    struct SchedAttr {
        size: u32,
        policy: u32,
        flags: u64,
        nice: i32,
        priority: u32,
        runtime: u64,
        deadline: u64,
        period: u64,
        util_min: u32,
        util_max: u32,
    }
    if us == 0 {
        return Ok(());
    }
    let a = SchedAttr {
        size: std::mem::size_of::<SchedAttr>() as u32,
        runtime: us * 1000,
        ..SchedAttr::default()
    };
    // SAFETY: sched_setattr(2) on the calling thread with a fully initialised struct.
    let r = unsafe { libc::syscall(libc::SYS_sched_setattr, 0, &a as *const SchedAttr, 0u32) };
    if r == 0 {
        Ok(())
    } else {
        Err(format!(
            "--slice-us {us}: sched_setattr: {}",
            std::io::Error::last_os_error()
        ))
    }
}

/// Time the calling thread spent runnable but waiting for a CPU (ns).
fn run_delay() -> u64 {
    fs::read_to_string("/proc/thread-self/schedstat")
        .ok()
        .and_then(|s| s.split_whitespace().nth(1).and_then(|v| v.parse().ok()))
        .unwrap_or(0)
}

fn pct(v: &[u64], p: f64) -> f64 {
    if v.is_empty() {
        return 0.0;
    }
    let i = ((v.len() - 1) as f64 * p / 100.0).round() as usize;
    v[i.min(v.len() - 1)] as f64 / 1000.0
}

/// A 4096-aligned buffer of `len` bytes (for O_DIRECT).
struct Aligned {
    ptr: *mut u8,
    layout: std::alloc::Layout,
}

impl Aligned {
    fn new(len: usize) -> Result<Self, String> {
        let layout =
            std::alloc::Layout::from_size_align(len, 4096).map_err(|e| format!("layout: {e}"))?;
        // SAFETY: non-zero size layout.
        let ptr = unsafe { std::alloc::alloc_zeroed(layout) };
        if ptr.is_null() {
            return Err("out of memory".into());
        }
        // SAFETY: `ptr` is valid for `len` bytes.
        unsafe { std::ptr::write_bytes(ptr, 0xa5, len) };
        Ok(Aligned { ptr, layout })
    }
}

impl Drop for Aligned {
    fn drop(&mut self) {
        // SAFETY: allocated with this layout in `new`.
        unsafe { std::alloc::dealloc(self.ptr, self.layout) }
    }
}

fn syncer(
    mode: Mode,
    path: &Path,
    o: &Opts,
    arrivals: &[u64],
    st: &Mutex<State>,
    t0: Instant,
) -> Result<(), String> {
    let mut f = FsOpen::new();
    f.write(true);
    if mode.direct() {
        f.custom_flags(libc::O_DIRECT);
    }
    let file = f
        .open(path)
        .map_err(|e| format!("{}: open: {e}", path.display()))?;
    let buf = Aligned::new(1 << 20)?;
    if o.fifo {
        // Real-time priority: the syncers never wait on a run queue, so what is left of a
        // slow group is the kernel's and the device's (the RT throttle still bounds us).
        let p = libc::sched_param { sched_priority: 10 };
        // SAFETY: sched_setscheduler(2) on the calling thread with a valid sched_param.
        if unsafe { libc::sched_setscheduler(0, libc::SCHED_FIFO, &p) } != 0 {
            return Err(format!(
                "--fifo: sched_setscheduler: {}",
                std::io::Error::last_os_error()
            ));
        }
    } else {
        ask_slice(o.slice_us)?;
    }
    let ns = || t0.elapsed().as_nanos() as u64;
    let overlap = o.overlap_us * 1000;
    loop {
        let (g, at, len, started) = {
            let mut s = st.lock().map_err(|_| "poisoned")?;
            let now = ns();
            if s.taken == arrivals.len() {
                return Ok(());
            }
            let avail = arrivals[s.taken..].partition_point(|&a| a <= now) + s.taken;
            let coalesce_wait = if s.last_carried >= 8 {
                (s.last_end + o.coalesce_us * 1000).saturating_sub(now)
            } else {
                0
            };
            let may = match s.in_flight {
                0 => coalesce_wait == 0,
                1 => mode.syncers() == 2 && now >= s.starts[0] + overlap,
                _ => false,
            };
            if !may || avail == s.taken {
                let next = if avail == s.taken {
                    arrivals[s.taken].saturating_sub(now)
                } else {
                    0
                };
                let wait = next
                    .max(coalesce_wait)
                    .max(if s.in_flight > 0 {
                        (s.starts[0] + overlap).saturating_sub(now)
                    } else {
                        0
                    })
                    .clamp(5_000, 100_000);
                drop(s);
                std::thread::sleep(Duration::from_nanos(wait));
                continue;
            }
            let n = (avail - s.taken) as u64;
            let mut len = n * o.bytes;
            if mode.direct() {
                len = len.div_ceil(512) * 512;
            }
            let len = len.min(1 << 20);
            if s.pos % LOG_LEN + len > LOG_LEN {
                s.pos = s.pos.div_ceil(LOG_LEN) * LOG_LEN;
            }
            let at = s.pos % LOG_LEN;
            s.pos += len;
            s.taken = avail;
            s.last_carried = n as usize;
            s.starts.push(now);
            s.in_flight += 1;
            let g = s.groups.len();
            s.groups.push(Group {
                to: avail,
                done: false,
            });
            s.own_end.push(0);
            if !mode.direct() {
                // Buffered: the write (a copy into the page cache) in stream order, under
                // the lock, so it completes before any later group's sync is called.
                // SAFETY: `buf` holds 1 MiB, len <= 1 MiB.
                let b = unsafe { std::slice::from_raw_parts(buf.ptr, len as usize) };
                file.write_all_at(b, at)
                    .map_err(|e| format!("{}: pwrite at {at}: {e}", path.display()))?;
            }
            (g, at, len, now)
        };
        let cs0 = nivcsw();
        let rd0 = run_delay();
        if mode.direct() {
            let iov = libc::iovec {
                iov_base: buf.ptr.cast(),
                iov_len: len as usize,
            };
            // SAFETY: one valid iovec over `buf`, a valid descriptor.
            let rc =
                unsafe { libc::pwritev2(file.as_raw_fd(), &iov, 1, at as i64, libc::RWF_DSYNC) };
            if rc != len as isize {
                return Err(format!(
                    "{}: pwritev2 at {at}: {}",
                    path.display(),
                    std::io::Error::last_os_error()
                ));
            }
        } else {
            file.sync_data()
                .map_err(|e| format!("{}: fdatasync: {e}", path.display()))?;
        }
        let end = ns();
        let cs = nivcsw() - cs0;
        // The pwrite of a buffered group ran under the lock before `cs0`: its run delay is
        // not counted (a copy of a few KiB).
        let rd = run_delay().saturating_sub(rd0);
        let mut s = st.lock().map_err(|_| "poisoned")?;
        if end - started > 1_000_000 {
            s.slow_total_ns += end - started;
            s.slow_delay_ns += rd;
            if rd * 2 >= end - started {
                s.slow_sched += 1;
            }
        }
        s.nivcsw += cs;
        s.group_ns.push(end - started);
        s.own_end[g] = end;
        if s.own_end[..g].iter().rev().take(2).any(|&e| e == 0) {
            s.out_of_order += 1;
        } else if g > 0 {
            let prev = s.own_end[g - 1];
            if prev > end {
                // It completed after our sync returned (recorded before we took the lock).
                s.out_of_order += 1;
            } else if prev > started {
                // The previous group was in flight when this one started.
                s.lag_ns.push(end - prev);
            }
        }
        if mode.direct() {
            s.groups[g].done = true;
        } else {
            // This sync covers every group written before it was called (all up to g).
            let from = s.durable_groups;
            for k in from..=g {
                s.groups[k].done = true;
            }
        }
        while s.durable_groups < s.groups.len() && s.groups[s.durable_groups].done {
            s.durable_groups += 1;
        }
        let upto = s.groups[..s.durable_groups].last().map_or(0, |g| g.to);
        for k in s.released..upto {
            s.done_ns[k] = end;
        }
        s.released = s.released.max(upto);
        s.in_flight -= 1;
        if let Some(i) = s.starts.iter().position(|&x| x == started) {
            s.starts.remove(i);
        }
        s.last_end = end;
    }
}

/// The table's writeback, emulated: `--bg-pages` random 4 KiB pages a second dirtied in a
/// 256 MiB file beside the log, and an `fdatasync` of it every `--bg-sync-ms` (a checkpoint's
/// msync, or the kernel's own writeback of the mapping).
fn background(path: &Path, o: &Opts, stop: &std::sync::atomic::AtomicBool) -> Result<(), String> {
    const LEN: u64 = 256 << 20;
    let file = FsOpen::new()
        .create(true)
        .truncate(false)
        .read(true)
        .write(true)
        .open(path)
        .map_err(|e| format!("{}: open: {e}", path.display()))?;
    if file.metadata().map_or(0, |m| m.len()) < LEN {
        let zeros = vec![0u8; 1 << 20];
        for off in (0..LEN).step_by(zeros.len()) {
            file.write_all_at(&zeros, off)
                .map_err(|e| format!("{}: {e}", path.display()))?;
        }
        file.sync_all()
            .map_err(|e| format!("{}: {e}", path.display()))?;
    }
    let page = [0x5au8; 4096];
    let mut x = 0x1234_5678_9abc_def1u64;
    let t0 = Instant::now();
    let mut written = 0u64;
    let mut last_sync = Instant::now();
    while !stop.load(std::sync::atomic::Ordering::Relaxed) {
        let due = (t0.elapsed().as_secs_f64() * o.bg_pages as f64) as u64;
        while written < due {
            x ^= x << 13;
            x ^= x >> 7;
            x ^= x << 17;
            file.write_all_at(&page, (x % (LEN / 4096)) * 4096)
                .map_err(|e| format!("{}: {e}", path.display()))?;
            written += 1;
        }
        if last_sync.elapsed() >= Duration::from_millis(o.bg_sync_ms) {
            file.sync_data()
                .map_err(|e| format!("{}: fdatasync: {e}", path.display()))?;
            last_sync = Instant::now();
        }
        std::thread::sleep(Duration::from_millis(2));
    }
    Ok(())
}

fn run(mode: Mode, path: &Path, o: &Opts, seed: u64) -> Result<String, String> {
    // Poisson arrivals.
    let n = (o.rate * o.secs) as usize;
    let mut x = seed | 1;
    let mut t = 1_000_000f64; // start 1 ms in
    let mut arrivals = Vec::with_capacity(n);
    for _ in 0..n {
        x ^= x << 13;
        x ^= x >> 7;
        x ^= x << 17;
        let u = ((x >> 11) as f64 + 1.0) / (1u64 << 53) as f64;
        t += -u.ln() / o.rate * 1e9;
        arrivals.push(t as u64);
    }
    let st = Arc::new(Mutex::new(State {
        taken: 0,
        pos: 0,
        groups: Vec::with_capacity(n),
        durable_groups: 0,
        released: 0,
        in_flight: 0,
        starts: Vec::with_capacity(4),
        last_end: 0,
        last_carried: 0,
        group_ns: Vec::with_capacity(n),
        out_of_order: 0,
        own_end: Vec::with_capacity(n),
        lag_ns: Vec::new(),
        nivcsw: 0,
        slow_sched: 0,
        slow_delay_ns: 0,
        slow_total_ns: 0,
        done_ns: vec![0; n],
    }));
    let dir = path.parent().unwrap_or(Path::new("/"));
    let d0 = device_stat(dir);
    let t0 = Instant::now();
    let arrivals = Arc::new(arrivals);
    let stop = Arc::new(std::sync::atomic::AtomicBool::new(false));
    let bg = (o.bg_pages > 0).then(|| {
        let (stop, o, p) = (stop.clone(), o.clone(), path.with_extension("table"));
        std::thread::spawn(move || background(&p, &o, &stop))
    });
    let handles: Vec<_> = (0..mode.syncers())
        .map(|_| {
            let (st, arr, o, p) = (st.clone(), arrivals.clone(), o.clone(), path.to_path_buf());
            std::thread::spawn(move || syncer(mode, &p, &o, &arr, &st, t0))
        })
        .collect();
    for h in handles {
        h.join().map_err(|_| "syncer panicked")??;
    }
    stop.store(true, std::sync::atomic::Ordering::Relaxed);
    if let Some(h) = bg {
        h.join().map_err(|_| "background writer panicked")??;
    }
    let d1 = device_stat(dir);
    let s = st.lock().map_err(|_| "poisoned")?;
    let mut g = s.group_ns.clone();
    g.sort_unstable();
    let mut w: Vec<u64> = s
        .done_ns
        .iter()
        .zip(arrivals.iter())
        .map(|(&d, &a)| d.saturating_sub(a))
        .collect();
    w.sort_unstable();
    let mut lag = s.lag_ns.clone();
    lag.sort_unstable();
    let over = |v: &[u64]| v.len() - v.partition_point(|&x| x <= 1_000_000);
    let dev = match (d0, d1) {
        (Some(a), Some(b)) if a.len() >= 17 && b.len() >= 17 => format!(
            "  device: {} writes ({:.0} µs each), {} flushes ({:.0} µs each), {} MB written by all",
            b[4] - a[4],
            (b[7] - a[7]) as f64 * 1000.0 / (b[4] - a[4]).max(1) as f64,
            b[15] - a[15],
            (b[16] - a[16]) as f64 * 1000.0 / (b[15] - a[15]).max(1) as f64,
            (b[6] - a[6]) / 2048
        ),
        _ => String::new(),
    };
    Ok(format!(
        "{:<8} groups {:>6} (over 1 ms {:>4}): p50 {:>7.1} p99 {:>7.1} p99.9 {:>7.1} max {:>8.1} µs | \
         DORA wait p50 {:>7.1} p99 {:>7.1} p99.9 {:>7.1} max {:>8.1} µs, over 1 ms {:.3} %\n    \
         overlapped syncs: {} completed before an earlier one, {} right after it (lag p50 {:.1} \
         p99 {:.1} µs); involuntary switches in syncs {}; groups over 1 ms that waited for a CPU \
         at least half the time: {}, run queue delay {:.0} % of their time\n   {dev}",
        mode.name(),
        g.len(),
        over(&g),
        pct(&g, 50.0),
        pct(&g, 99.0),
        pct(&g, 99.9),
        pct(&g, 100.0),
        pct(&w, 50.0),
        pct(&w, 99.0),
        pct(&w, 99.9),
        pct(&w, 100.0),
        100.0 * over(&w) as f64 / w.len().max(1) as f64,
        s.out_of_order,
        lag.len(),
        pct(&lag, 50.0),
        pct(&lag, 99.0),
        s.nivcsw,
        s.slow_sched,
        100.0 * s.slow_delay_ns as f64 / s.slow_total_ns.max(1) as f64,
    ))
}

fn main() -> Result<(), String> {
    let args: Vec<String> = std::env::args().skip(1).collect();
    let mut o = Opts {
        rate: 50_000.0,
        secs: 5.0,
        bytes: 130,
        coalesce_us: 200,
        overlap_us: 250,
        bg_pages: 0,
        bg_sync_ms: 1000,
        slice_us: 100,
        fifo: false,
    };
    let mut rounds = 3usize;
    let mut modes = vec![Mode::One, Mode::Two];
    let mut dir: Option<PathBuf> = None;
    let mut i = 0;
    while i < args.len() {
        if args[i] == "--fifo" {
            o.fifo = true;
            i += 1;
            continue;
        }
        let v = args
            .get(i + 1)
            .ok_or(format!("{}: value missing", args[i]))?;
        let num = |what: &str| -> Result<f64, String> {
            v.parse::<f64>()
                .map_err(|e| format!("{what} {v:?}: {e}"))
                .and_then(|x| {
                    if x.is_finite() && x >= 0.0 {
                        Ok(x)
                    } else {
                        Err(format!("{what} {v:?}: not a non-negative number"))
                    }
                })
        };
        match args[i].as_str() {
            "--rate" => o.rate = num("--rate")?.max(1.0),
            "--secs" => o.secs = num("--secs")?,
            "--bytes" => o.bytes = num("--bytes")? as u64,
            "--coalesce-us" => o.coalesce_us = num("--coalesce-us")? as u64,
            "--overlap-us" => o.overlap_us = num("--overlap-us")? as u64,
            "--bg-pages" => o.bg_pages = num("--bg-pages")? as u64,
            "--bg-sync-ms" => o.bg_sync_ms = num("--bg-sync-ms")?.max(1.0) as u64,
            "--slice-us" => o.slice_us = num("--slice-us")? as u64,
            "--rounds" => rounds = num("--rounds")? as usize,
            "--dir" => dir = Some(v.into()),
            "--modes" => modes = v.split(',').map(Mode::parse).collect::<Result<_, _>>()?,
            a => return Err(format!("unknown argument {a:?}")),
        }
        i += 2;
    }
    let tmp;
    let dir = match dir {
        Some(d) => d,
        None => {
            tmp = tempfile::tempdir_in("/var/tmp").map_err(|e| format!("tempdir: {e}"))?;
            tmp.path().to_path_buf()
        }
    };
    let path = dir.join("wal-pipe-bench.log");
    {
        let f = File::create(&path).map_err(|e| format!("{}: {e}", path.display()))?;
        let zeros = vec![0u8; 1 << 20];
        for off in (0..LOG_LEN).step_by(zeros.len()) {
            f.write_all_at(&zeros, off)
                .map_err(|e| format!("{}: {e}", path.display()))?;
        }
        f.sync_all()
            .map_err(|e| format!("{}: {e}", path.display()))?;
    }
    println!(
        "rate {} DORA/s, {} B/DORA, coalesce {} µs, overlap after {} µs, {} s per run, \
         background {} pages/s synced every {} ms, syncer slice {} µs, SCHED_FIFO {}",
        o.rate,
        o.bytes,
        o.coalesce_us,
        o.overlap_us,
        o.secs,
        o.bg_pages,
        o.bg_sync_ms,
        o.slice_us,
        o.fifo
    );
    for r in 0..rounds {
        for &m in &modes {
            println!("round {r} {}", run(m, &path, &o, 0x9e37_79b9 + r as u64)?);
        }
    }
    let _ = fs::remove_file(&path);
    let _ = fs::remove_file(path.with_extension("table"));
    Ok(())
}
