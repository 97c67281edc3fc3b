//! Who gets the server's core first: the packet threads (workers, the committer) ask the
//! scheduler for a short slice, the maintenance threads run at a lower priority (nice).
//!
//! Why: the bench pins the whole daemon to one core. A perf sched trace at 80,000 DORA/s
//! (interval mode) showed a worker runnable but waiting 3.7 ms while the expiry sweep ran
//! 0.9 + 1.6 ms, the flusher 0.7 ms and a block kworker 0.5 ms: EEVDF lets a running thread
//! finish its slice (0.75-3 ms) before a woken one gets the core. A thread that asks for a
//! short slice (Linux 6.12+: `sched_attr.sched_runtime` of a SCHED_OTHER thread) gets an
//! earlier deadline and cuts the running one's protected time to about that slice. Measured
//! (benches/RESULTS.md, "Issue 18: who gets the core"): DORA p99 at 80,000/s 1.5 ms, 0.8 ms
//! with the slice, 0.4 ms with the slice and nice 10 for the maintenance threads.
//!
//! Both are requests: a kernel before 6.12 ignores the slice, a container may refuse the
//! call. Failure is logged once per kind and never stops the server.

use std::sync::atomic::{AtomicBool, Ordering};
use std::time::Duration;

/// `struct sched_attr` (include/uapi/linux/sched/types.h), version 1 (56 bytes).
#[repr(C)]
#[derive(Default)]
struct SchedAttr {
    size: u32,
    sched_policy: u32,
    sched_flags: u64,
    sched_nice: i32,
    sched_priority: u32,
    sched_runtime: u64,
    sched_deadline: u64,
    sched_period: u64,
    sched_util_min: u32,
    sched_util_max: u32,
}

const SCHED_OTHER: u32 = 0;

static SLICE_WARNED: AtomicBool = AtomicBool::new(false);
static NICE_WARNED: AtomicBool = AtomicBool::new(false);

fn set_attr(attr: &SchedAttr) -> std::io::Result<()> {
    // SAFETY: sched_setattr(2) on the calling thread (pid 0) with a fully initialised
    // struct whose `size` field says how much of it the kernel may read.
    let r = unsafe { libc::syscall(libc::SYS_sched_setattr, 0, attr as *const SchedAttr, 0u32) };
    if r == 0 {
        Ok(())
    } else {
        Err(std::io::Error::last_os_error())
    }
}

/// The calling thread's (policy, nice, slice in ns) as the kernel reports them.
pub fn current() -> std::io::Result<(u32, i32, u64)> {
    let mut a = SchedAttr::default();
    // SAFETY: sched_getattr(2) on the calling thread, writing at most `size` bytes into `a`.
    let r = unsafe {
        libc::syscall(
            libc::SYS_sched_getattr,
            0,
            &mut a as *mut SchedAttr,
            std::mem::size_of::<SchedAttr>() as u32,
            0u32,
        )
    };
    if r == 0 {
        Ok((a.sched_policy, a.sched_nice, a.sched_runtime))
    } else {
        Err(std::io::Error::last_os_error())
    }
}

/// Packet thread (worker, committer): ask for `slice` (zero: keep the kernel's default).
/// Called by the thread itself when it starts.
pub fn packet_thread(slice: Duration) {
    if slice.is_zero() {
        return;
    }
    let attr = SchedAttr {
        size: std::mem::size_of::<SchedAttr>() as u32,
        sched_policy: SCHED_OTHER,
        sched_runtime: u64::try_from(slice.as_nanos()).unwrap_or(u64::MAX),
        ..SchedAttr::default()
    };
    if let Err(e) = set_attr(&attr) {
        if !SLICE_WARNED.swap(true, Ordering::Relaxed) {
            tracing::warn!(
                "could not ask the scheduler for a {} µs slice for the packet threads \
                 (`worker-slice-us`): {e}; they keep the kernel's default",
                slice.as_micros()
            );
        }
    }
}

/// Maintenance thread (sweep, checkpoint, API, ...): lower its priority to `nice` (0: leave
/// it). Called by the thread itself when it starts.
pub fn background_thread(nice: u8) {
    if nice == 0 {
        return;
    }
    let attr = SchedAttr {
        size: std::mem::size_of::<SchedAttr>() as u32,
        sched_policy: SCHED_OTHER,
        sched_nice: i32::from(nice),
        ..SchedAttr::default()
    };
    if let Err(e) = set_attr(&attr) {
        if !NICE_WARNED.swap(true, Ordering::Relaxed) {
            tracing::warn!(
                "could not lower the maintenance threads to nice {nice} (`background-nice`): {e}"
            );
        }
    }
}

/// What the daemon's threads are told (set once at start from `[server]`).
#[derive(Clone, Copy, Debug)]
pub struct ThreadPolicy {
    pub worker_slice: Duration,
    pub background_nice: u8,
}

static POLICY_SLICE_NS: std::sync::atomic::AtomicU64 = std::sync::atomic::AtomicU64::new(0);
static POLICY_NICE: std::sync::atomic::AtomicU8 = std::sync::atomic::AtomicU8::new(0);

impl ThreadPolicy {
    /// Makes this the policy that [`packet`] and [`background`] apply (threads started after).
    pub fn install(self) {
        POLICY_SLICE_NS.store(
            u64::try_from(self.worker_slice.as_nanos()).unwrap_or(u64::MAX),
            Ordering::Relaxed,
        );
        POLICY_NICE.store(self.background_nice, Ordering::Relaxed);
    }
}

/// Applies the installed policy's slice to the calling packet thread.
pub fn packet() {
    packet_thread(Duration::from_nanos(
        POLICY_SLICE_NS.load(Ordering::Relaxed),
    ));
}

/// Applies the installed policy's nice value to the calling maintenance thread.
pub fn background() {
    background_thread(POLICY_NICE.load(Ordering::Relaxed));
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Kernel version (major, minor) from uname.
    fn kernel() -> (u32, u32) {
        let r = std::fs::read_to_string("/proc/sys/kernel/osrelease").unwrap_or_default();
        let mut it = r.trim().split(|c: char| !c.is_ascii_digit());
        let major = it.next().and_then(|s| s.parse().ok()).unwrap_or(0);
        let minor = it.next().and_then(|s| s.parse().ok()).unwrap_or(0);
        (major, minor)
    }

    #[test]
    fn sched_packet_thread_gets_the_short_slice_it_asks_for() {
        let got = std::thread::spawn(|| {
            packet_thread(Duration::from_micros(100));
            current()
        })
        .join()
        .expect("thread");
        let (policy, nice, slice) = got.expect("sched_getattr");
        assert_eq!(policy, SCHED_OTHER);
        assert_eq!(nice, 0, "the slice request must not change the nice value");
        if kernel() >= (6, 12) {
            assert_eq!(slice, 100_000, "the kernel did not take the 100 µs slice");
        }
    }

    #[test]
    fn sched_background_thread_runs_at_the_lower_priority() {
        let got = std::thread::spawn(|| {
            background_thread(10);
            current()
        })
        .join()
        .expect("thread");
        let (policy, nice, _) = got.expect("sched_getattr");
        assert_eq!(policy, SCHED_OTHER);
        assert_eq!(nice, 10);
    }

    #[test]
    fn sched_zero_settings_leave_the_thread_alone() {
        let (before, after) = std::thread::spawn(|| {
            let before = current();
            packet_thread(Duration::ZERO);
            background_thread(0);
            (before, current())
        })
        .join()
        .expect("thread");
        assert_eq!(before.expect("before"), after.expect("after"));
    }
}
