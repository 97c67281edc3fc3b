//! Pipelined group commit for `commit = "ack"`.
//!
//! A flush of the lease file costs milliseconds (the disk's cache flush),
//! whatever is dirty. Flushing inside each worker batch would cap a worker at
//! one batch per flush. Instead workers hand the flush to one committer
//! thread and hold their replies until a flush that *started after* their
//! records were written has completed:
//!
//! 1. a worker writes its batch's records (page cache), then takes a ticket
//!    `t = written.fetch_add(1) + 1` (Release: the writes happen-before it);
//! 2. the committer loads `target = written` (Acquire), flushes the whole
//!    mapping, then publishes `durable = target`;
//! 3. the worker transmits the held replies of ticket `t` once `durable >= t`.
//!
//! So every ACK leaves after its lease record is on stable storage (the
//! guarantee of ack mode), while workers keep processing new batches during
//! the flush. If flushing fails, `durable` stops advancing and the held ACKs
//! never leave: the server degrades to silence, never to lying.

use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::Arc;
use std::time::Duration;

use lease_store::LeaseTable;

#[derive(Debug, Default)]
pub struct Committer {
    written: AtomicU64,
    durable: AtomicU64,
    /// Flushes done and failed (for the stats).
    pub flushes: AtomicU64,
    pub flush_errors: AtomicU64,
}

impl Committer {
    pub fn new() -> Self {
        Self::default()
    }

    /// Called by a worker after it wrote records: the ticket its replies wait for.
    pub fn ticket(&self) -> u64 {
        self.written.fetch_add(1, Ordering::AcqRel) + 1
    }

    /// Highest ticket whose records are on stable storage.
    pub fn durable(&self) -> u64 {
        self.durable.load(Ordering::Acquire)
    }

    /// The committer loop; returns when `stop` is set (after a last flush).
    pub fn run(&self, table: &LeaseTable, stop: &AtomicBool) {
        let mut failing = false;
        loop {
            let stopping = stop.load(Ordering::Relaxed);
            let target = self.written.load(Ordering::Acquire);
            if target > self.durable.load(Ordering::Relaxed) {
                match table.flush() {
                    Ok(()) => {
                        self.durable.store(target, Ordering::Release);
                        self.flushes.fetch_add(1, Ordering::Relaxed);
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
                // Nothing written: a short nap bounds the added ACK latency.
                std::thread::sleep(Duration::from_micros(100));
            }
        }
    }
}

/// Spawns the committer thread.
pub fn spawn(
    committer: Arc<Committer>,
    table: Arc<LeaseTable>,
    stop: Arc<AtomicBool>,
) -> std::io::Result<std::thread::JoinHandle<()>> {
    std::thread::Builder::new()
        .name("xdhcpd-commit".into())
        .spawn(move || committer.run(&table, &stop))
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::net::Ipv4Addr;

    #[test]
    fn tickets_become_durable_only_after_a_flush() {
        let dir = tempfile::tempdir().unwrap();
        let pools = [lease_store::PoolSpec {
            id: 0,
            first: Ipv4Addr::new(10, 0, 0, 1),
            last: Ipv4Addr::new(10, 0, 0, 8),
        }];
        let (t, _) = LeaseTable::open(
            &dir.path().join("l.db"),
            &pools,
            &lease_store::OpenOptions::default(),
        )
        .unwrap();
        let table = Arc::new(t);
        let c = Arc::new(Committer::new());
        let stop = Arc::new(AtomicBool::new(false));
        assert_eq!(c.durable(), 0);
        let t1 = c.ticket();
        let t2 = c.ticket();
        assert!(t2 > t1);
        // No committer running yet: nothing is durable.
        std::thread::sleep(Duration::from_millis(20));
        assert!(c.durable() < t1);
        let h = spawn(c.clone(), table, stop.clone()).unwrap();
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
}
