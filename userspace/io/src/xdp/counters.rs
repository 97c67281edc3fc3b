//! Counters of the XDP program, summed over CPUs.
use std::fmt;

use xdhcpd_common::{Counter, COUNTER_COUNT};

/// Totals of the per-CPU counters kept by the XDP program (see `xdhcpd_common::Counter`).
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct Counters {
    /// Every frame the program looked at.
    pub seen: u64,
    /// DHCP frames redirected to an AF_XDP socket.
    pub redirected: u64,
    /// Frames handed to the kernel stack (every XDP_PASS, whatever the reason).
    pub passed: u64,
    /// Frames with truncated or inconsistent headers (passed).
    pub malformed: u64,
    /// DHCP frames passed because no socket was registered for their RX queue.
    pub no_socket: u64,
    /// Frames to the failover port from non-partners (dropped).
    pub failover_dropped: u64,
    /// Frames to the failover port from partners (passed).
    pub failover_passed: u64,
    /// DHCPv4 frames redirected.
    pub dhcpv4: u64,
    /// DHCPv6 frames redirected.
    pub dhcpv6: u64,
    /// DHCPv4 client messages a failover standby dropped in XDP.
    pub standby_dropped: u64,
    /// DHCPv4 requests dropped by the per-client (chaddr) rate limit.
    pub ratelimit_client_dropped: u64,
    /// DHCPv4 requests dropped by the per-relay (giaddr) rate limit.
    pub ratelimit_relay_dropped: u64,
    /// Frames the failover guard dropped because it could not rule out TCP to the failover
    /// port (fails closed: malformed, long IPv6 extension chains, split TCP headers).
    pub guard_unparsable_dropped: u64,
    /// DHCPv4 requests dropped by the per-circuit (giaddr + circuit-id) rate limit.
    pub ratelimit_circuit_dropped: u64,
    /// DHCPv4 DISCOVERs / REQUESTs from hardware addresses not known (not registered, no
    /// configured host) dropped while the unknown-client drop is on.
    pub unknown_dropped: u64,
}

impl Counters {
    /// Builds the totals from one value per counter, in `Counter` index order.
    pub fn from_totals(totals: &[u64; COUNTER_COUNT as usize]) -> Self {
        let at = |c: Counter| totals[c as usize];
        Counters {
            seen: at(Counter::Seen),
            redirected: at(Counter::Redirected),
            passed: at(Counter::Passed),
            malformed: at(Counter::Malformed),
            no_socket: at(Counter::NoSocket),
            failover_dropped: at(Counter::FailoverDropped),
            failover_passed: at(Counter::FailoverPassed),
            dhcpv4: at(Counter::Dhcpv4),
            dhcpv6: at(Counter::Dhcpv6),
            standby_dropped: at(Counter::StandbyDropped),
            ratelimit_client_dropped: at(Counter::RateLimitClient),
            ratelimit_relay_dropped: at(Counter::RateLimitRelay),
            guard_unparsable_dropped: at(Counter::GuardUnparsable),
            ratelimit_circuit_dropped: at(Counter::RateLimitCircuit),
            unknown_dropped: at(Counter::UnknownDropped),
        }
    }

    /// The value of one counter.
    pub fn get(&self, counter: Counter) -> u64 {
        match counter {
            Counter::Seen => self.seen,
            Counter::Redirected => self.redirected,
            Counter::Passed => self.passed,
            Counter::Malformed => self.malformed,
            Counter::NoSocket => self.no_socket,
            Counter::FailoverDropped => self.failover_dropped,
            Counter::FailoverPassed => self.failover_passed,
            Counter::Dhcpv4 => self.dhcpv4,
            Counter::Dhcpv6 => self.dhcpv6,
            Counter::StandbyDropped => self.standby_dropped,
            Counter::RateLimitClient => self.ratelimit_client_dropped,
            Counter::RateLimitRelay => self.ratelimit_relay_dropped,
            Counter::GuardUnparsable => self.guard_unparsable_dropped,
            Counter::RateLimitCircuit => self.ratelimit_circuit_dropped,
            Counter::UnknownDropped => self.unknown_dropped,
        }
    }

    /// Counter-wise difference `self - earlier` (saturating, in case the program was reloaded).
    pub fn since(&self, earlier: &Counters) -> Counters {
        let mut totals = [0u64; COUNTER_COUNT as usize];
        for (i, (c, _)) in Counter::ALL.iter().enumerate() {
            totals[i] = self.get(*c).saturating_sub(earlier.get(*c));
        }
        Counters::from_totals(&totals)
    }
}

/// `seen=.. redirected=.. ...` in `Counter` order, one line.
impl fmt::Display for Counters {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        for (i, (c, name)) in Counter::ALL.iter().enumerate() {
            if i > 0 {
                f.write_str(" ")?;
            }
            write!(f, "{name}={}", self.get(*c))?;
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn totals_map_to_named_fields_in_counter_order() {
        let totals = [1, 2, 3, 4, 5, 6, 7, 8, 9, 10, 11, 12, 13, 14, 15];
        let c = Counters::from_totals(&totals);
        assert_eq!((c.seen, c.redirected, c.passed), (1, 2, 3));
        assert_eq!((c.malformed, c.no_socket), (4, 5));
        assert_eq!((c.failover_dropped, c.failover_passed), (6, 7));
        assert_eq!((c.dhcpv4, c.dhcpv6), (8, 9));
        assert_eq!(c.standby_dropped, 10);
        assert_eq!(c.ratelimit_client_dropped, 11);
        assert_eq!(c.ratelimit_relay_dropped, 12);
        assert_eq!(c.guard_unparsable_dropped, 13);
        assert_eq!(c.ratelimit_circuit_dropped, 14);
        assert_eq!(c.unknown_dropped, 15);
        for (i, (counter, _)) in Counter::ALL.iter().enumerate() {
            assert_eq!(c.get(*counter), totals[i]);
        }
    }

    #[test]
    fn display_lists_every_counter_by_name() {
        let c = Counters::from_totals(&[10, 0, 0, 0, 3, 0, 0, 0, 0, 7, 1, 2, 4, 5, 6]);
        assert_eq!(
            c.to_string(),
            "seen=10 redirected=0 passed=0 malformed=0 no_socket=3 failover_dropped=0 \
             failover_passed=0 dhcpv4=0 dhcpv6=0 standby_dropped=7 ratelimit_client_dropped=1 \
             ratelimit_relay_dropped=2 guard_unparsable_dropped=4 ratelimit_circuit_dropped=5 \
             unknown_dropped=6"
        );
    }

    #[test]
    fn since_subtracts_and_saturates() {
        let a = Counters::from_totals(&[10, 5, 5, 0, 0, 0, 0, 5, 0, 0, 0, 0, 0, 0, 0]);
        let b = Counters::from_totals(&[4, 6, 1, 0, 0, 0, 0, 2, 0, 0, 0, 0, 0, 0, 0]);
        let d = a.since(&b);
        assert_eq!((d.seen, d.redirected, d.passed, d.dhcpv4), (6, 0, 4, 3));
    }
}
