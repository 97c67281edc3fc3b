//! Active leasequery's change feed (RFC 7724): the lease table's change hook copies every
//! reportable record change into the bounded queue of each subscribed connection.
//!
//! The hook runs under the record's lock on whatever thread changed the record (a packet
//! worker, the sweeper, the failover driver applying the partner's BNDUPDs, a reload), so
//! it never blocks and never allocates: with no subscriber it is one atomic load; with
//! subscribers, one `try_send` of a fixed-size copy per subscriber (a lock-free map read,
//! papaya). A full queue is not waited on: the change is counted as lost for that
//! subscriber and the bulk leasequery driver cuts it off (DataMissing); everyone else,
//! and the worker, go on.

use std::sync::atomic::{AtomicU64, AtomicUsize, Ordering};
use std::sync::Arc;

use crossbeam_channel::{bounded, Receiver, Sender, TrySendError};
use lease_store::{ChangeHook, Lease};
use xdhcpd_dhcpv4::bulk_leasequery::{reportable, BulkStats, Change, ChangeSource};

/// One subscriber's end as the hook sees it.
struct Sub {
    tx: Sender<Change>,
    /// Changes that did not fit its queue.
    lost: AtomicU64,
}

/// Every subscribed connection's queue; installed as a lease table change hook. Its
/// figures are in the driver's [`BulkStats`]: `subscribers`, `changes_queued`,
/// `changes_lost`.
pub struct ActiveFeed {
    subs: papaya::HashMap<u64, Arc<Sub>>,
    count: AtomicUsize,
    next_id: AtomicU64,
    stats: Arc<BulkStats>,
}

impl ActiveFeed {
    /// A feed with no subscriber, counting into `stats`.
    pub fn new(stats: Arc<BulkStats>) -> Self {
        ActiveFeed {
            subs: papaya::HashMap::new(),
            count: AtomicUsize::new(0),
            next_id: AtomicU64::new(0),
            stats,
        }
    }

    /// Subscribers now.
    pub fn subscribers(&self) -> usize {
        self.count.load(Ordering::Relaxed)
    }

    /// Registers a queue of `cap` changes; changes made from now on reach it. Dropping the
    /// returned [`Queue`] unregisters it.
    pub fn subscribe(self: &Arc<Self>, cap: usize) -> Queue {
        let (tx, rx) = bounded(cap.max(1));
        let sub = Arc::new(Sub {
            tx,
            lost: AtomicU64::new(0),
        });
        let id = self.next_id.fetch_add(1, Ordering::Relaxed);
        self.subs.pin().insert(id, sub.clone());
        self.count.fetch_add(1, Ordering::SeqCst);
        self.stats.subscribers.fetch_add(1, Ordering::Relaxed);
        Queue {
            feed: self.clone(),
            id,
            rx,
            sub,
        }
    }
}

impl ChangeHook for ActiveFeed {
    fn record_changed(&self, _pool: u32, _old: &Lease, _new: &Lease) {}

    fn record_changed_at(&self, slot: u32, _pool: u32, old: &Lease, new: &Lease) {
        if self.count.load(Ordering::SeqCst) == 0 || !reportable(old, new) {
            return;
        }
        let c = Change { slot, lease: *new };
        for s in self.subs.pin().values() {
            if s.lost.load(Ordering::Relaxed) > 0 {
                // Already cut off: the driver is closing it.
                continue;
            }
            match s.tx.try_send(c) {
                Ok(()) => {
                    self.stats.changes_queued.fetch_add(1, Ordering::Relaxed);
                }
                Err(TrySendError::Full(_)) => {
                    s.lost.fetch_add(1, Ordering::Relaxed);
                    self.stats.changes_lost.fetch_add(1, Ordering::Relaxed);
                }
                Err(TrySendError::Disconnected(_)) => {}
            }
        }
    }
}

/// A subscribed connection's queue (the driver's end); unregisters on drop.
pub struct Queue {
    feed: Arc<ActiveFeed>,
    id: u64,
    rx: Receiver<Change>,
    sub: Arc<Sub>,
}

impl Queue {
    /// Whether no change was lost so far.
    pub fn lost_none(&self) -> bool {
        self.sub.lost.load(Ordering::Relaxed) == 0
    }

    /// Whether changes wait (or some were lost: the session must say so).
    pub fn ready(&self) -> bool {
        !self.rx.is_empty() || self.sub.lost.load(Ordering::Relaxed) > 0
    }
}

impl ChangeSource for Queue {
    fn next_change(&mut self) -> Option<Change> {
        self.rx.try_recv().ok()
    }
    fn lost(&self) -> u64 {
        self.sub.lost.load(Ordering::Relaxed)
    }
}

impl Drop for Queue {
    fn drop(&mut self) {
        if self.feed.subs.pin().remove(&self.id).is_some() {
            self.feed.count.fetch_sub(1, Ordering::SeqCst);
            self.feed.stats.subscribers.fetch_sub(1, Ordering::Relaxed);
        }
    }
}

#[cfg(test)]
mod tests {
    use std::net::Ipv4Addr;

    use lease_store::LeaseState;

    use super::*;

    fn lease(state: LeaseState) -> Lease {
        let mut l = Lease::free(Ipv4Addr::new(10, 0, 0, 1));
        l.state = state;
        l
    }

    #[test]
    fn active_leasequery_feed_queues_reportable_changes_and_counts_overflow() {
        let stats = Arc::new(BulkStats::default());
        let feed = Arc::new(ActiveFeed::new(stats.clone()));
        let (free, active) = (lease(LeaseState::Free), lease(LeaseState::Active));
        // No subscriber: nothing queued, nothing counted.
        feed.record_changed_at(1, 0, &free, &active);
        assert_eq!(stats.snapshot().changes_queued, 0);
        let mut a = feed.subscribe(2);
        let mut b = feed.subscribe(16);
        assert_eq!(feed.subscribers(), 2);
        // An offer is no binding change.
        feed.record_changed_at(1, 0, &free, &lease(LeaseState::Offered));
        assert!(!a.ready());
        for slot in 0..3 {
            feed.record_changed_at(slot, 0, &free, &active);
        }
        // a holds 2 and lost 1; b holds all 3; the hook never waited.
        assert_eq!((a.lost(), b.lost()), (1, 0));
        assert!(a.ready());
        let got: Vec<u32> = std::iter::from_fn(|| b.next_change())
            .map(|c| c.slot)
            .collect();
        assert_eq!(got, [0, 1, 2], "in the order the records changed");
        assert_eq!(a.next_change().map(|c| c.slot), Some(0));
        drop(a);
        drop(b);
        assert_eq!(feed.subscribers(), 0);
        let s = stats.snapshot();
        assert_eq!((s.changes_queued, s.changes_lost, s.subscribers), (5, 1, 0));
    }
}
