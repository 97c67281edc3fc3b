//! Pipelined group commit for `commit = "ack"`.
//!
//! A durable write costs a device cache flush (hundreds of µs to milliseconds) whatever is
//! written. Syncing inside each worker batch would cap a worker at one batch per sync. Instead
//! workers hand the commit to one committer thread and hold their replies until a commit that
//! *started after* their records were written has completed:
//!
//! 1. a worker writes its batch's records (page cache; each change is also staged for the
//!    lease table's write-ahead log under the record lock), then takes a ticket
//!    `t = written.fetch_add(1) + 1` (Release: the writes happen-before it);
//! 2. the committer loads `target = written` (Acquire), calls [`LeaseTable::commit`] (the
//!    staged changes appended to the log as small checksummed entries, one `fdatasync`), then
//!    publishes `durable = target`;
//! 3. the worker transmits the held replies of ticket `t` once `durable >= t`.
//!
//! So every ACK leaves after the durable log write that covers its lease record (the
//! guarantee of ack mode), while workers keep processing new batches during the sync; they
//! sleep on an eventfd while replies are held, never spin. The mapped table is written back
//! by the checkpointer thread (`daemon.rs`), never on this path. If a commit fails, `durable`
//! stops advancing and the held ACKs never leave until a later commit succeeded under the
//! sticky-error rule (the table rewritten and flushed, the log restarted past the failure):
//! the server degrades to silence, never to lying.
//!
//! DHCPv6 bindings (`v6.rs`) ride on the same tickets: a worker (XDP, or the `--io udp`
//! v6 thread) whose batch wrote v6 records takes a ticket like a v4 batch and holds the
//! batch's replies; the committer's group commit also commits the v6 table's own
//! write-ahead log ([`Durable`]: the images staged under the v6 table lock appended to
//! `<v6 file>.wal` and `fdatasync`ed, without that lock) before it publishes `durable`. So
//! no worker syncs, and a Reply that grants or extends a v6 binding leaves only after a
//! durable log write covers the record change. The v6 table itself is checkpointed by the
//! v6 background thread (`daemon.rs`).
//!
//! How often: under light load a ticket is committed at once. Under load (group commits
//! carrying [`COALESCE_LOADED_ENTRIES`] or more record changes on average) the next group
//! commit starts `commit-coalesce-us` after the previous one ended, and so carries what was
//! written meanwhile: each group commit costs the core about the same whatever it carries
//! (the device's notifications are VM exits on the bench VM), so fewer, fuller ones leave
//! more of it to the workers. The wait grows with the load (`commit-coalesce-max-us`): above
//! [`COALESCE_REF_RATE`] record changes a second it is `commit-coalesce-us` times the rate
//! over that reference, up to the maximum, so the busier the server the fewer syncs (and
//! device notifications) per exchange, while at moderate rates the wait, and the latency it
//! adds, stays short. The rule above is unchanged: `target` is read after the wait, and a
//! reply leaves only after a commit that started after its records were written.

use std::os::fd::{AsRawFd, FromRawFd, OwnedFd, RawFd};
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::{Arc, OnceLock, RwLock};
use std::time::Duration;

use lease_store::LeaseTable;

/// Another store the committer makes durable in each group commit, after the lease
/// table's log (the DHCPv6 binding table). It must cover every write made before the call.
pub trait Durable: Send + Sync {
    fn make_durable(&self) -> std::io::Result<()>;
    /// Record changes this store's log has taken so far (the committer's load measure).
    fn entries_logged(&self) -> u64 {
        0
    }
}

impl Durable for super::v6::V6Server {
    fn make_durable(&self) -> std::io::Result<()> {
        let r = super::v6::V6Server::make_durable(self);
        if r.is_err() {
            self.flush_errors.fetch_add(1, Ordering::Relaxed);
        }
        r
    }

    fn entries_logged(&self) -> u64 {
        super::v6::V6Server::entries_logged(self)
    }
}

/// Group commits that carried on average (over the last ~8) at least this many record
/// changes mean load: the next one starts without waiting for `commit-min-gap-us`. Under load
/// syncs are already shared by many records (the gap would only add latency: closed-loop
/// renewals measured 382k/s without a gap, 230k/s with 1 ms); the gap is for the light,
/// frequent commits of moderate rates, where syncing ~3,000 times a second for 1-2 records
/// each made the disk stall. An average, not the last commit alone: a closed loop alternates
/// one full commit with one nearly empty one, and the empty one must not bring the gap back.
/// Not enough yet: with a 1 ms gap and this rule the bench's closed-loop renewals stayed at
/// half the no-gap figure (244k/s against 489k/s, 2026-12-04 21:05 UTC), cause not yet found;
/// so the default gap is 0 and the gap is for disks that stall.
pub const LOADED_COMMIT_ENTRIES: u64 = 64;

/// Group commits that carried on average (over the last ~8) at least this many record
/// changes mean load for `commit-coalesce-us`: the next commit waits that long after the
/// previous one ended, so it carries more. Below it (light load, a lone request) a commit
/// starts at once. Each group commit costs the server core ~45 µs whatever it carries (two
/// virtio-blk notifications, each a VM exit, plus the wake-ups: the DHCPv6 bench's profile,
/// `benches/RESULTS.md`), so at high rates fewer, fuller commits leave more of the core to
/// the workers. Once on, commits stay loaded down to about 16 changes per (coalesce +
/// commit) time; back-to-back commits turn it on only above 16 per commit time: at rates
/// in between it may be either (no flapping: each state keeps itself).
pub const COALESCE_LOADED_ENTRIES: u64 = 16;

/// Record changes a second at which the coalescing wait is `commit-coalesce-us`; above it
/// the wait grows in proportion to the rate (twice the rate, twice the wait), up to
/// `commit-coalesce-max-us` ([`coalesce_wait`]). 100,000 changes a second is ~50,000 DHCPv6
/// SARRs (two bindings each) or ~100,000 DORAs: a third of the bench server's top rate.
pub const COALESCE_REF_RATE: u64 = 100_000;

/// The coalescing wait under load for a measured rate of record changes (per second):
/// `base` up to [`COALESCE_REF_RATE`], then `base * rate / COALESCE_REF_RATE`, never above
/// `max` (nor below `base`).
pub fn coalesce_wait(base: Duration, max: Duration, rate: u64) -> Duration {
    let base_us = u64::try_from(base.as_micros()).unwrap_or(u64::MAX);
    let us = if rate <= COALESCE_REF_RATE {
        base_us
    } else {
        u64::try_from(u128::from(base_us) * u128::from(rate) / u128::from(COALESCE_REF_RATE))
            .unwrap_or(u64::MAX)
    };
    Duration::from_micros(us).min(max).max(base)
}

#[derive(Debug, Default)]
pub struct Committer {
    written: AtomicU64,
    durable: AtomicU64,
    /// Flushes done and failed (for the stats).
    pub flushes: AtomicU64,
    pub flush_errors: AtomicU64,
    /// Duration of each group-commit flush (this thread is its only writer).
    pub flush_latency: super::latency::LatencyHistogram,
    /// Eventfds of workers waiting for `durable` to advance.
    waiters: RwLock<Vec<Arc<OwnedFd>>>,
    /// The committer is parked (nothing to flush): the next ticket unparks it. Parking instead
    /// of napping saves thousands of idle wakeups a second (measured: 4k/s per committer).
    idle: AtomicBool,
    thread: OnceLock<std::thread::Thread>,
    /// `commit-min-gap-us`: the least time between the starts of two group commits. Under
    /// load, fewer and larger syncs: this VM's disk stalls for 10-100 ms about ten times a
    /// second when synced ~3,300 times a second, and not below ~1,700 (benches/RESULTS.md,
    /// "Fewer group commits remove the long ones"). Idle, the first ticket is committed at
    /// once: the gap only delays a commit that follows another closer than the gap, and
    /// not after a commit that carried [`LOADED_COMMIT_ENTRIES`] or more record changes.
    min_gap_us: AtomicU64,
    /// `commit-coalesce-us`: under load (group commits carrying on average
    /// [`COALESCE_LOADED_ENTRIES`] or more record changes), the time between the end of a
    /// group commit and the start of the next; 0: back to back. Bounds the latency it adds
    /// (only under load); a closed loop of C clients stays above C / (commit time + this)
    /// exchanges a second.
    coalesce_us: AtomicU64,
    /// `commit-coalesce-max-us`: the longest coalescing wait ([`coalesce_wait`]); below
    /// `coalesce_us` (the default of [`Committer::with_gaps`]): a fixed wait.
    coalesce_max_us: AtomicU64,
    /// Coalescing waits taken and their total (µs), for the stats.
    pub coalesce_waits: AtomicU64,
    pub coalesce_waited_us: AtomicU64,
}

/// A worker's handle to sleep until either its socket is readable or the
/// committer made more replies durable (instead of spinning on `durable`).
pub struct Waiter {
    efd: Arc<OwnedFd>,
}

impl Waiter {
    /// Sleeps until `other` is readable, a flush completed, or `timeout_ms`.
    pub fn wait(&self, other: RawFd, timeout_ms: i32) {
        let mut fds = [
            libc::pollfd {
                fd: other,
                events: libc::POLLIN,
                revents: 0,
            },
            libc::pollfd {
                fd: self.efd.as_raw_fd(),
                events: libc::POLLIN,
                revents: 0,
            },
        ];
        // SAFETY: two valid pollfd entries on our stack.
        unsafe { libc::poll(fds.as_mut_ptr(), 2, timeout_ms) };
        if fds[1].revents & libc::POLLIN != 0 {
            let mut v = 0u64;
            // SAFETY: reading 8 bytes from our non-blocking eventfd resets it.
            unsafe { libc::read(self.efd.as_raw_fd(), (&mut v as *mut u64).cast(), 8) };
        }
    }
}

impl Committer {
    pub fn new() -> Self {
        Self::default()
    }

    /// A committer that starts two group commits at least `gap` apart (`commit-min-gap-us`).
    pub fn with_min_gap(gap: Duration) -> Self {
        let c = Self::default();
        c.min_gap_us.store(
            u64::try_from(gap.as_micros()).unwrap_or(u64::MAX),
            Ordering::Relaxed,
        );
        c
    }

    /// A committer with `commit-min-gap-us` = `gap` and `commit-coalesce-us` = `coalesce`.
    pub fn with_gaps(gap: Duration, coalesce: Duration) -> Self {
        let c = Self::with_min_gap(gap);
        c.coalesce_us.store(
            u64::try_from(coalesce.as_micros()).unwrap_or(u64::MAX),
            Ordering::Relaxed,
        );
        c
    }

    /// As [`Committer::with_gaps`], with a coalescing wait that grows with the load up to
    /// `coalesce_max` (`commit-coalesce-max-us`, [`coalesce_wait`]).
    pub fn with_adaptive_gaps(gap: Duration, coalesce: Duration, coalesce_max: Duration) -> Self {
        let c = Self::with_gaps(gap, coalesce);
        c.coalesce_max_us.store(
            u64::try_from(coalesce_max.as_micros()).unwrap_or(u64::MAX),
            Ordering::Relaxed,
        );
        c
    }

    /// Called by a worker after it wrote records: the ticket its replies wait for.
    pub fn ticket(&self) -> u64 {
        // SeqCst pairs with the committer's `idle` store + `written` re-check (a Dekker
        // handshake): either it sees this ticket or we see it idle and unpark it.
        let t = self.written.fetch_add(1, Ordering::SeqCst) + 1;
        if self.idle.load(Ordering::SeqCst) {
            if let Some(th) = self.thread.get() {
                th.unpark();
            }
        }
        t
    }

    /// Registers a worker that wants to be woken after each flush.
    pub fn waiter(&self) -> std::io::Result<Waiter> {
        // SAFETY: plain eventfd(2); the fd is owned from here on.
        let fd = unsafe { libc::eventfd(0, libc::EFD_NONBLOCK | libc::EFD_CLOEXEC) };
        if fd < 0 {
            return Err(std::io::Error::last_os_error());
        }
        // SAFETY: fd is a fresh descriptor nobody else owns.
        let efd = Arc::new(unsafe { OwnedFd::from_raw_fd(fd) });
        if let Ok(mut w) = self.waiters.write() {
            w.push(efd.clone());
        }
        Ok(Waiter { efd })
    }

    fn wake_waiters(&self) {
        if let Ok(w) = self.waiters.read() {
            let one = 1u64;
            for fd in w.iter() {
                // SAFETY: an 8-byte write to an eventfd we own; a full
                // counter (EAGAIN) already means "wake up".
                unsafe { libc::write(fd.as_raw_fd(), (&one as *const u64).cast(), 8) };
            }
        }
    }

    /// Highest ticket whose records are on stable storage.
    pub fn durable(&self) -> u64 {
        self.durable.load(Ordering::Acquire)
    }

    /// The committer loop; returns when `stop` is set (after a last flush). `also` (the
    /// DHCPv6 table) is made durable in every group commit too.
    pub fn run(&self, table: &LeaseTable, also: Option<&dyn Durable>, stop: &AtomicBool) {
        let mut failing = false;
        let _ = self.thread.set(std::thread::current());
        let min_gap = Duration::from_micros(self.min_gap_us.load(Ordering::Relaxed));
        let coalesce = Duration::from_micros(self.coalesce_us.load(Ordering::Relaxed));
        let coalesce_max =
            Duration::from_micros(self.coalesce_max_us.load(Ordering::Relaxed)).max(coalesce);
        let mut last_start: Option<std::time::Instant> = None;
        let mut last_end: Option<std::time::Instant> = None;
        let entries =
            || table.wal_stats().map_or(0, |s| s.entries) + also.map_or(0, |d| d.entries_logged());
        let mut entries_before = entries();
        // Record changes per group commit, moving average over ~8 commits (x8, fixed point).
        let mut carried_x8: u64 = 0;
        // Record changes a second (carried / time from the previous commit's end to this
        // one's), moving average over ~8 commits (x8).
        let mut rate_x8: u64 = 0;
        loop {
            let stopping = stop.load(Ordering::Relaxed);
            if let Some(last) = last_start {
                let since = last.elapsed();
                if since < min_gap && !stopping && carried_x8 / 8 < LOADED_COMMIT_ENTRIES {
                    std::thread::sleep(min_gap - since);
                }
            }
            let mut target = self.written.load(Ordering::Acquire);
            if target > self.durable.load(Ordering::Relaxed) {
                // Under load: let more record changes gather before this commit.
                if let Some(end) = last_end {
                    let since = end.elapsed();
                    let wait = coalesce_wait(coalesce, coalesce_max, rate_x8 / 8);
                    if since < wait && !stopping && carried_x8 / 8 >= COALESCE_LOADED_ENTRIES {
                        let nap = wait - since;
                        self.coalesce_waits.fetch_add(1, Ordering::Relaxed);
                        self.coalesce_waited_us.fetch_add(
                            u64::try_from(nap.as_micros()).unwrap_or(u64::MAX),
                            Ordering::Relaxed,
                        );
                        std::thread::sleep(nap);
                        target = self.written.load(Ordering::Acquire);
                    }
                }
                let started = std::time::Instant::now();
                last_start = Some(started);
                let flushed = table
                    .commit()
                    .and_then(|()| also.map_or(Ok(()), |d| d.make_durable()));
                self.flush_latency.record(started.elapsed());
                let ended = std::time::Instant::now();
                let cycle = last_end.map(|e| ended.saturating_duration_since(e));
                last_end = Some(ended);
                if !min_gap.is_zero() || !coalesce.is_zero() {
                    // The load measure only matters when there is a gap to skip or a
                    // coalescing wait to take.
                    let now_entries = entries();
                    let carried = now_entries.saturating_sub(entries_before).min(1 << 40);
                    carried_x8 = carried_x8 - carried_x8 / 8 + carried;
                    entries_before = now_entries;
                    if coalesce_max > coalesce {
                        // A cycle after an idle park counts its whole span: a low rate.
                        let ns = cycle.map_or(u128::MAX, |c| c.as_nanos().max(1));
                        let rate = u64::try_from(u128::from(carried) * 1_000_000_000 / ns)
                            .unwrap_or(u64::MAX)
                            .min(1 << 40);
                        rate_x8 = rate_x8 - rate_x8 / 8 + rate;
                    }
                }
                match flushed {
                    Ok(()) => {
                        self.durable.store(target, Ordering::Release);
                        self.flushes.fetch_add(1, Ordering::Relaxed);
                        self.wake_waiters();
                        if failing {
                            tracing::info!("lease table flushes succeed again");
                            failing = false;
                        }
                    }
                    Err(e) => {
                        self.flush_errors.fetch_add(1, Ordering::Relaxed);
                        if !failing {
                            tracing::error!("lease table flush failed; ACKs are withheld until it succeeds: {e}");
                            failing = true;
                        }
                        std::thread::sleep(Duration::from_millis(10));
                    }
                }
            } else if stopping {
                return;
            } else {
                // Nothing written: park until a worker takes a ticket. The timeout only bounds
                // the wait for `stop`; a missed unpark cannot happen (see `ticket`).
                self.idle.store(true, Ordering::SeqCst);
                if self.written.load(Ordering::SeqCst) <= self.durable.load(Ordering::Relaxed) {
                    std::thread::park_timeout(Duration::from_millis(20));
                }
                self.idle.store(false, Ordering::Relaxed);
            }
        }
    }
}

/// Spawns the committer thread.
pub fn spawn(
    committer: Arc<Committer>,
    table: Arc<LeaseTable>,
    also: Option<Arc<dyn Durable>>,
    stop: Arc<AtomicBool>,
) -> std::io::Result<std::thread::JoinHandle<()>> {
    std::thread::Builder::new()
        .name("xdhcpd-commit".into())
        .spawn(move || {
            super::sched::packet();
            committer.run(&table, also.as_deref(), &stop)
        })
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::net::Ipv4Addr;

    /// A table of `n` addresses from 10.0.0.1 in `dir`, with a log of `wal` bytes if given.
    fn table(dir: &std::path::Path, n: u8, wal: Option<u64>) -> Arc<LeaseTable> {
        let pools = [lease_store::PoolSpec {
            id: 0,
            first: Ipv4Addr::new(10, 0, 0, 1),
            last: Ipv4Addr::new(10, 0, 0, n),
        }];
        let opts = lease_store::OpenOptions {
            wal,
            ..lease_store::OpenOptions::default()
        };
        Arc::new(
            LeaseTable::open(&dir.join("l.db"), &pools, &opts)
                .unwrap()
                .0,
        )
    }

    #[test]
    fn tickets_become_durable_only_after_a_flush() {
        let dir = tempfile::tempdir().unwrap();
        let table = table(dir.path(), 8, None);
        let c = Arc::new(Committer::new());
        let stop = Arc::new(AtomicBool::new(false));
        assert_eq!(c.durable(), 0);
        let t1 = c.ticket();
        let t2 = c.ticket();
        assert!(t2 > t1);
        // No committer running yet: nothing is durable.
        std::thread::sleep(Duration::from_millis(20));
        assert!(c.durable() < t1);
        let waiter = c.waiter().unwrap();
        let h = spawn(c.clone(), table, None, stop.clone()).unwrap();
        // The flush wakes a registered waiter (poll ignores fd -1).
        let t0 = std::time::Instant::now();
        waiter.wait(-1, 5000);
        assert!(
            t0.elapsed() < Duration::from_secs(4),
            "waiter not woken by the flush"
        );
        let t0 = std::time::Instant::now();
        while c.durable() < t2 {
            assert!(
                t0.elapsed() < Duration::from_secs(10),
                "committer never flushed"
            );
            std::thread::sleep(Duration::from_millis(1));
        }
        assert!(c.flushes.load(Ordering::Relaxed) >= 1);
        stop.store(true, Ordering::Relaxed);
        h.join().unwrap();
    }

    fn wait_durable(c: &Committer, t: u64) -> std::time::Instant {
        let t0 = std::time::Instant::now();
        while c.durable() < t {
            assert!(t0.elapsed() < Duration::from_secs(20), "never committed");
            std::thread::sleep(Duration::from_micros(200));
        }
        std::time::Instant::now()
    }

    /// `commit-min-gap-us`: a ticket after a quiet spell is committed at once, the next one
    /// only a gap after the previous commit started, and tickets taken without pause are
    /// gathered into one commit per gap (with no gap: one commit per sync).
    #[test]
    fn committer_min_gap_commits_a_lone_ticket_at_once_and_spaces_the_next() {
        let dir = tempfile::tempdir().unwrap();
        let table = table(dir.path(), 8, None);
        let gap = Duration::from_millis(600);
        let c = Arc::new(Committer::with_min_gap(gap));
        let stop = Arc::new(AtomicBool::new(false));
        let h = spawn(c.clone(), table.clone(), None, stop.clone()).unwrap();
        std::thread::sleep(Duration::from_millis(50));
        let asked = std::time::Instant::now();
        let t1 = c.ticket();
        let first = wait_durable(&c, t1);
        assert!(
            first - asked < Duration::from_millis(500),
            "a lone ticket waited {:?}",
            first - asked
        );
        // The next ticket at once: its commit starts a gap after the first one's start.
        let t2 = c.ticket();
        let second = wait_durable(&c, t2);
        assert!(
            second - asked >= gap,
            "second commit after {:?}, within the gap",
            second - asked
        );
        // Tickets taken for 1.5 s without pause: at most one commit per gap (+1 at the edges).
        let flushes0 = c.flushes.load(Ordering::Relaxed);
        let t0 = std::time::Instant::now();
        let mut last = 0;
        while t0.elapsed() < Duration::from_millis(1500) {
            last = c.ticket();
            std::thread::sleep(Duration::from_millis(1));
        }
        wait_durable(&c, last);
        let gathered = c.flushes.load(Ordering::Relaxed) - flushes0;
        assert!(
            (1..=5).contains(&gathered),
            "{gathered} commits for ~1,500 tickets in 1.5 s with a {gap:?} gap"
        );
        stop.store(true, Ordering::Relaxed);
        h.join().unwrap();
    }

    /// Under load the gap steps aside: after group commits that carried on average 64 or
    /// more record changes the next commit starts at once.
    #[test]
    fn committer_min_gap_is_skipped_after_a_loaded_commit() {
        let dir = tempfile::tempdir().unwrap();
        let table = table(dir.path(), 250, Some(lease_store::MIN_WAL_BYTES));
        let write = |n: u32, expiry: u32| {
            for i in 0..n {
                let s = table.slot(i).unwrap();
                table.update(s, |l| {
                    l.state = lease_store::LeaseState::Active;
                    l.expiry = expiry + i;
                });
            }
        };
        let gap = Duration::from_millis(800);
        let c = Arc::new(Committer::with_min_gap(gap));
        let stop = Arc::new(AtomicBool::new(false));
        let h = spawn(c.clone(), table.clone(), None, stop.clone()).unwrap();
        // A light commit (3 changes): the next one waits for the gap.
        write(3, 2_000_000_000);
        let asked = std::time::Instant::now();
        wait_durable(&c, c.ticket());
        write(1, 2_000_001_000);
        let done = wait_durable(&c, c.ticket());
        assert!(
            done - asked >= gap,
            "after a light commit: {:?}",
            done - asked
        );
        // Loaded commits (200 changes each, after quiet gaps): the next one does not wait.
        for k in 0..5 {
            std::thread::sleep(gap);
            write(200, 2_000_002_000 + k * 1000);
            wait_durable(&c, c.ticket());
        }
        let asked = std::time::Instant::now();
        write(1, 2_000_003_000);
        let done = wait_durable(&c, c.ticket());
        assert!(
            done - asked < Duration::from_millis(500),
            "after a loaded commit: {:?}",
            done - asked
        );
        stop.store(true, Ordering::Relaxed);
        h.join().unwrap();
    }

    /// `commit-coalesce-us`: light commits start at once (a lone ticket, and the next one
    /// right after it); once group commits carry 16 or more record changes on average (load),
    /// the next one starts only the coalescing time after the previous one ended, and so
    /// carries everything written meanwhile in one sync.
    #[test]
    fn committer_coalesce_waits_only_under_load() {
        let dir = tempfile::tempdir().unwrap();
        let table = table(dir.path(), 250, Some(lease_store::MIN_WAL_BYTES));
        let write = |n: u32, expiry: u32| {
            for i in 0..n {
                let s = table.slot(i).unwrap();
                table.update(s, |l| {
                    l.state = lease_store::LeaseState::Active;
                    l.expiry = expiry + i;
                });
            }
        };
        let wait = Duration::from_millis(400);
        let c = Arc::new(Committer::with_gaps(Duration::ZERO, wait));
        let stop = Arc::new(AtomicBool::new(false));
        let h = spawn(c.clone(), table.clone(), None, stop.clone()).unwrap();
        // Light commits (1 change each): back to back, none waits.
        for k in 0..4 {
            write(1, 2_000_000_000 + k);
            let asked = std::time::Instant::now();
            let done = wait_durable(&c, c.ticket());
            assert!(
                done - asked < Duration::from_millis(300),
                "light commit {k} took {:?}",
                done - asked
            );
        }
        // Loaded commits (200 changes each, after quiet spells: each starts at once).
        for k in 0..5 {
            std::thread::sleep(wait + Duration::from_millis(50));
            write(200, 2_000_001_000 + k * 1000);
            wait_durable(&c, c.ticket());
        }
        // Right after a loaded commit: the next waits for the coalescing time, and what is
        // written meanwhile goes into that same commit.
        let commits0 = table.wal_stats().unwrap().commits;
        write(1, 2_000_010_000);
        let asked = std::time::Instant::now();
        let t1 = c.ticket();
        std::thread::sleep(Duration::from_millis(100));
        write(3, 2_000_020_000);
        let t2 = c.ticket();
        let done = wait_durable(&c, t2);
        assert!(c.durable() >= t1);
        assert!(
            done - asked >= Duration::from_millis(250),
            "after loaded commits the next one started after {:?}",
            done - asked
        );
        assert_eq!(
            table.wal_stats().unwrap().commits - commits0,
            1,
            "both tickets' changes in one group commit"
        );
        stop.store(true, Ordering::Relaxed);
        h.join().unwrap();
    }

    /// `commit-coalesce-max-us`: the wait is `commit-coalesce-us` up to the reference rate,
    /// grows in proportion above it and stops at the maximum.
    #[test]
    fn committer_coalesce_wait_grows_with_the_rate_up_to_the_maximum() {
        let us = Duration::from_micros;
        let (base, max) = (us(200), us(1000));
        assert_eq!(coalesce_wait(base, max, 0), base);
        assert_eq!(coalesce_wait(base, max, COALESCE_REF_RATE), base);
        assert_eq!(coalesce_wait(base, max, 2 * COALESCE_REF_RATE), us(400));
        assert_eq!(coalesce_wait(base, max, 302_000), us(604));
        assert_eq!(coalesce_wait(base, max, 50 * COALESCE_REF_RATE), max);
        assert_eq!(coalesce_wait(base, max, u64::MAX), max);
        // A maximum equal to the base (or below it): the fixed wait of before.
        assert_eq!(coalesce_wait(base, base, 10 * COALESCE_REF_RATE), base);
        assert_eq!(coalesce_wait(base, us(0), 10 * COALESCE_REF_RATE), base);
        assert_eq!(coalesce_wait(us(0), max, 10 * COALESCE_REF_RATE), us(0));
    }

    /// Under a high rate of record changes (~500,000 a second here, five times the reference)
    /// the committer waits longer than `commit-coalesce-us` between group commits, so it
    /// syncs less often than the fixed wait would (one commit per ~base + sync).
    #[test]
    fn committer_coalesce_waits_longer_at_a_higher_rate() {
        let dir = tempfile::tempdir().unwrap();
        let table = table(dir.path(), 250, Some(lease_store::MIN_WAL_BYTES));
        let base = Duration::from_millis(10);
        let c = Arc::new(Committer::with_adaptive_gaps(
            Duration::ZERO,
            base,
            Duration::from_millis(500),
        ));
        let stop = Arc::new(AtomicBool::new(false));
        let h = spawn(c.clone(), table.clone(), None, stop.clone()).unwrap();
        let t0 = std::time::Instant::now();
        let mut k = 0u32;
        let mut last = 0;
        while t0.elapsed() < Duration::from_millis(2500) {
            for _ in 0..2 {
                for i in 0..250 {
                    let s = table.slot(i).unwrap();
                    k = k.wrapping_add(1);
                    table.update(s, |l| {
                        l.state = lease_store::LeaseState::Active;
                        l.expiry = 2_000_000_000 + (k % 1_000_000);
                    });
                }
            }
            last = c.ticket();
            std::thread::sleep(Duration::from_millis(1));
        }
        let written = table.wal_stats().unwrap().entries;
        wait_durable(&c, last);
        let secs = t0.elapsed().as_secs_f64();
        let waits = c.coalesce_waits.load(Ordering::Relaxed);
        let waited = c.coalesce_waited_us.load(Ordering::Relaxed);
        stop.store(true, Ordering::Relaxed);
        h.join().unwrap();
        let rate = written as f64 / secs;
        assert!(
            rate > 2.0 * COALESCE_REF_RATE as f64,
            "the test's writer reached only {rate:.0} changes/s"
        );
        assert!(waits > 0, "no coalescing wait under load");
        let mean_us = waited / waits;
        assert!(
            mean_us > 15_000,
            "mean wait {mean_us} µs at {rate:.0} changes/s: not above the 10 ms base"
        );
    }

    #[test]
    fn committer_wal_releases_a_ticket_only_after_the_log_holds_its_records() {
        let dir = tempfile::tempdir().unwrap();
        let pools = [lease_store::PoolSpec {
            id: 0,
            first: Ipv4Addr::new(10, 0, 0, 1),
            last: Ipv4Addr::new(10, 0, 0, 64),
        }];
        let path = dir.path().join("l.db");
        let opts = lease_store::OpenOptions {
            wal: Some(lease_store::MIN_WAL_BYTES),
            ..lease_store::OpenOptions::default()
        };
        let (t, _) = LeaseTable::open(&path, &pools, &opts).unwrap();
        let table = Arc::new(t);
        for i in 0..10 {
            let s = table.slot(i).unwrap();
            table.update(s, |l| {
                l.state = lease_store::LeaseState::Active;
                l.expiry = 2_000_000_000 + i;
            });
        }
        let c = Arc::new(Committer::new());
        let t1 = c.ticket();
        assert_eq!(table.wal_stats().unwrap().entries, 0);
        let stop = Arc::new(AtomicBool::new(false));
        let h = spawn(c.clone(), table.clone(), None, stop.clone()).unwrap();
        let t0 = std::time::Instant::now();
        while c.durable() < t1 {
            assert!(t0.elapsed() < Duration::from_secs(10), "never committed");
            std::thread::sleep(Duration::from_millis(1));
        }
        // The ticket was released by a log commit that holds the ten records (no msync of
        // the table: no checkpoint ran).
        let st = table.wal_stats().unwrap();
        assert!(st.commits >= 1 && st.entries == 10, "{st:?}");
        assert_eq!(st.checkpoints, 0);
        stop.store(true, Ordering::Relaxed);
        h.join().unwrap();
        drop(table);
        // What the log holds is what a restart finds.
        let (t, rep) = LeaseTable::open(&path, &pools, &opts).unwrap();
        assert_eq!(rep.wal_entries, 10);
        assert_eq!(t.read(t.slot(9).unwrap()).expiry, 2_000_000_009);
    }
}
