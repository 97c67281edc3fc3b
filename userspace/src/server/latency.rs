//! A fixed-bucket latency histogram with one writer (a worker, the committer) and any number
//! of readers (the `/metrics` scraper). The writer does plain relaxed load+store adds on its
//! own cache lines, no locked instruction; a reader sees each bucket exactly, the set of
//! buckets not as one instant (a scrape may see a sample in `count` before its bucket).

use std::sync::atomic::{AtomicU64, Ordering::Relaxed};
use std::time::Duration;

/// Upper bounds of the buckets in microseconds (the last bucket is +Inf).
pub const BOUNDS_US: [u64; 14] = [
    10, 25, 50, 100, 250, 500, 1_000, 2_500, 5_000, 10_000, 25_000, 50_000, 100_000, 1_000_000,
];

/// Counts of samples per bucket (not cumulative), their sum and count.
#[derive(Debug, Default)]
#[repr(align(64))]
pub struct LatencyHistogram {
    buckets: [AtomicU64; BOUNDS_US.len() + 1],
    sum_ns: AtomicU64,
    count: AtomicU64,
}

/// A copy for encoding: cumulative counts per upper bound in seconds (last = +Inf).
#[derive(Clone, Debug, Default, PartialEq)]
pub struct HistogramSnapshot {
    pub sum_seconds: f64,
    pub count: u64,
    /// `(upper bound in seconds, cumulative count)`, the last one `f64::INFINITY`.
    pub buckets: Vec<(f64, u64)>,
}

fn add(c: &AtomicU64, n: u64) {
    // Single writer: a load and a store, no locked instruction.
    c.store(c.load(Relaxed).wrapping_add(n), Relaxed);
}

impl LatencyHistogram {
    /// Records one sample. Only the owning thread may call this.
    #[inline]
    pub fn record(&self, d: Duration) {
        let us = d.as_micros().min(u128::from(u64::MAX)) as u64;
        let i = BOUNDS_US
            .iter()
            .position(|b| us <= *b)
            .unwrap_or(BOUNDS_US.len());
        add(&self.buckets[i], 1);
        add(&self.sum_ns, d.as_nanos().min(u128::from(u64::MAX)) as u64);
        add(&self.count, 1);
    }

    /// Adds this histogram's current values to `into` (cumulative buckets).
    pub fn add_to(&self, into: &mut HistogramSnapshot) {
        if into.buckets.is_empty() {
            into.buckets = BOUNDS_US
                .iter()
                .map(|b| (*b as f64 / 1e6, 0))
                .chain(std::iter::once((f64::INFINITY, 0)))
                .collect();
        }
        let mut cum = 0;
        for (b, out) in self.buckets.iter().zip(into.buckets.iter_mut()) {
            cum += b.load(Relaxed);
            out.1 += cum;
        }
        into.sum_seconds += self.sum_ns.load(Relaxed) as f64 / 1e9;
        into.count += self.count.load(Relaxed);
    }

    /// A snapshot of this histogram alone.
    pub fn snapshot(&self) -> HistogramSnapshot {
        let mut s = HistogramSnapshot::default();
        self.add_to(&mut s);
        s
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn latency_metrics_histogram_buckets_are_cumulative() {
        let h = LatencyHistogram::default();
        h.record(Duration::from_micros(5));
        h.record(Duration::from_micros(10));
        h.record(Duration::from_micros(700));
        h.record(Duration::from_secs(5));
        let s = h.snapshot();
        assert_eq!(s.count, 4);
        assert_eq!(s.buckets.len(), BOUNDS_US.len() + 1);
        assert_eq!(s.buckets[0], (10e-6, 2));
        // 700 us lands in the 1 ms bucket; everything up to 500 us holds 2.
        assert_eq!(s.buckets[5].1, 2);
        assert_eq!(s.buckets[6], (1e-3, 3));
        assert_eq!(s.buckets[BOUNDS_US.len() - 1].1, 3);
        assert_eq!(s.buckets[BOUNDS_US.len()], (f64::INFINITY, 4));
        assert!((s.sum_seconds - 5.000715).abs() < 1e-9, "{}", s.sum_seconds);
        let mut two = HistogramSnapshot::default();
        h.add_to(&mut two);
        h.add_to(&mut two);
        assert_eq!(two.count, 8);
        assert_eq!(two.buckets[0].1, 4);
    }
}
