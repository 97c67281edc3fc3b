//! Refused binding updates, summarised (issue 15 item 6): after a partition both partners
//! re-send what the other lacks, and every address the other has newer information for is
//! refused (typically "outdated binding information"). One log line per address flooded both
//! logs; here each direction (updates we refused, ours the partner refused) is counted by
//! reason and logged as one line per burst: when no refusal came for [`QUIET`], after
//! [`MAX_WINDOW`] at the latest, and when the connection ends. The line gives the counts per
//! reason and the first [`FIRST_ADDRESSES`] addresses; each address is logged at debug level.
//! The counts since start are in `ctl failover` and `/metrics`.
//!
//! Refusals because the address is in none of the receiver's pools (reject reason 1, a
//! reload on one side first) keep their own line and counters (`refused_not_in_pool`).

use std::net::Ipv4Addr;
use std::time::{Duration, Instant};

use xdhcpd_failover::RejectReason;

/// A burst ends when no refusal came for this long.
pub const QUIET: Duration = Duration::from_secs(2);
/// A burst that goes on is logged at least this often.
pub const MAX_WINDOW: Duration = Duration::from_secs(60);
/// Addresses named in a summary line.
pub const FIRST_ADDRESSES: usize = 5;

/// Reject reasons counted apart (draft-12 reject-reason codes); the rest is "other".
const KINDS: [(RejectReason, &str); 4] = [
    (
        RejectReason::OutdatedBindingInfo,
        "outdated binding information",
    ),
    (RejectReason::FatalConflict, "fatal conflict"),
    (
        RejectReason::LessCriticalBindingInfo,
        "less critical binding information",
    ),
    (
        RejectReason::MissingBindingInfo,
        "missing binding information",
    ),
];

fn kind(r: RejectReason) -> usize {
    KINDS
        .iter()
        .position(|(k, _)| *k == r)
        .unwrap_or(KINDS.len())
}

/// Refusals of one direction: the totals since start and the burst not yet logged.
#[derive(Debug, Default)]
pub struct RefusalSummary {
    /// Since start, per [`KINDS`] entry plus "other" last.
    total: [u64; KINDS.len() + 1],
    /// The burst not yet logged.
    burst: [u64; KINDS.len() + 1],
    first: Vec<Ipv4Addr>,
    started: Option<Instant>,
    last: Option<Instant>,
}

impl RefusalSummary {
    /// Counts one refusal of `addr` for `reason` at `now`.
    pub fn note(&mut self, now: Instant, addr: Ipv4Addr, reason: RejectReason) {
        let k = kind(reason);
        self.total[k] += 1;
        self.burst[k] += 1;
        if self.first.len() < FIRST_ADDRESSES {
            self.first.push(addr);
        }
        self.started.get_or_insert(now);
        self.last = Some(now);
    }

    /// Refusals for "outdated binding information" since start.
    pub fn outdated_total(&self) -> u64 {
        self.total[kind(RejectReason::OutdatedBindingInfo)]
    }

    /// The summary of the burst when it is due at `now` (quiet for [`QUIET`], open for
    /// [`MAX_WINDOW`], or `force`: the connection ended); the burst is then reset.
    pub fn take_due(&mut self, now: Instant, force: bool) -> Option<String> {
        let (started, last) = (self.started?, self.last?);
        let due = force
            || now.saturating_duration_since(last) >= QUIET
            || now.saturating_duration_since(started) >= MAX_WINDOW;
        if !due {
            return None;
        }
        let n: u64 = self.burst.iter().sum();
        let mut parts = Vec::new();
        for (i, c) in self.burst.iter().enumerate() {
            if *c > 0 {
                let what = KINDS.get(i).map_or("other reasons", |(_, w)| *w);
                parts.push(format!("{c} {what}"));
            }
        }
        let first = self
            .first
            .iter()
            .map(|a| a.to_string())
            .collect::<Vec<_>>()
            .join(", ");
        let more = if n > self.first.len() as u64 {
            ", ..."
        } else {
            ""
        };
        let secs = last.saturating_duration_since(started).as_secs_f64();
        self.burst = Default::default();
        self.first.clear();
        self.started = None;
        self.last = None;
        Some(format!(
            "{n} update(s) in {secs:.1} s: {} (addresses {first}{more}; each at debug level)",
            parts.join(", ")
        ))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn addr(i: u32) -> Ipv4Addr {
        Ipv4Addr::from(0x0a4d_0000 + i)
    }

    #[test]
    fn failover_outdated_refusals_summarised_one_line_per_burst() {
        let t0 = Instant::now();
        let mut s = RefusalSummary::default();
        for i in 0..500 {
            let r = if i % 100 == 0 {
                RejectReason::FatalConflict
            } else {
                RejectReason::OutdatedBindingInfo
            };
            s.note(t0 + Duration::from_millis(i), addr(u32::from(i as u16)), r);
            // Not due while the burst goes on.
            assert!(s.take_due(t0 + Duration::from_millis(i), false).is_none());
        }
        let line = s
            .take_due(t0 + Duration::from_millis(499) + QUIET, false)
            .expect("due after the quiet period");
        assert!(line.starts_with("500 update(s)"), "{line}");
        assert!(line.contains("495 outdated binding information"), "{line}");
        assert!(line.contains("5 fatal conflict"), "{line}");
        assert!(
            line.contains("10.77.0.0, 10.77.0.1, 10.77.0.2, 10.77.0.3, 10.77.0.4, ..."),
            "{line}"
        );
        assert!(!line.contains("10.77.0.5"), "{line}");
        // Reset: nothing more to log, the totals stay.
        assert!(s.take_due(t0 + MAX_WINDOW * 2, true).is_none());
        assert_eq!(s.outdated_total(), 495);
        assert_eq!(s.total.iter().sum::<u64>(), 500);
    }

    #[test]
    fn failover_outdated_refusals_long_burst_logged_every_window() {
        let t0 = Instant::now();
        let mut s = RefusalSummary::default();
        let mut lines = 0;
        // One refusal every second for 5 minutes: never quiet, logged once per window.
        for i in 0..300u64 {
            let now = t0 + Duration::from_secs(i);
            s.note(now, addr(i as u32), RejectReason::OutdatedBindingInfo);
            if s.take_due(now, false).is_some() {
                lines += 1;
            }
        }
        assert!((4..=5).contains(&lines), "{lines} lines");
        assert!(s.take_due(t0, true).is_some() || lines == 5);
        assert_eq!(s.outdated_total(), 300);
    }

    #[test]
    fn failover_outdated_refusals_forced_at_link_loss() {
        let t0 = Instant::now();
        let mut s = RefusalSummary::default();
        s.note(t0, addr(7), RejectReason::OutdatedBindingInfo);
        assert!(s.take_due(t0, false).is_none());
        let line = s.take_due(t0, true).expect("forced");
        assert!(line.starts_with("1 update(s)"), "{line}");
        assert!(line.contains("(addresses 10.77.0.7;"), "{line}");
    }
}
