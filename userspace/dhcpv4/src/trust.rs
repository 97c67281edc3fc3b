//! Who may make the engine act on relay data (architecture property 8).
//!
//! - A relayed message (giaddr set) is served only when giaddr is a trusted relay
//!   (`server.trusted-relays`; default: every address that selects a subnet as giaddr). So a
//!   reply never goes to a giaddr the sender chose freely (RFC 2131 §4.1: relayed replies go
//!   to giaddr), and option 82, its link-selection sub-option (RFC 3527) and option 118
//!   (RFC 3011) steer subnet selection only when a trusted relay sent them.
//! - Option 82 with giaddr 0 was added by the client itself (only relay agents add it): the
//!   message is dropped (RFC 3046 §2.1) or, with `untrusted-relay-info = "strip"`, served as if
//!   the option were absent: not honoured, not echoed, not stored, so neither the partner nor
//!   leasequery ever sees it.
//! - Option 118 with giaddr 0 is ignored: a directly attached client's link is the receiving
//!   interface's.
//! - A DHCPLEASEQUERY is answered only for a giaddr in `server.leasequery-allow` (default: the
//!   trusted relays; RFC 4388 §6 asks for access control): the answer names the client's MAC,
//!   client id and option 82, which identifies the subscriber.
//!
//! The checks run once per message before anything reads the relay data: one binary search
//! over a few ranges, no allocation, no lock.

use std::net::Ipv4Addr;

use xdhcpd_config::{Config, Ipv4Net, UntrustedRelayInfo};

use crate::wire::{MessageType, Summary};

/// A set of IPv4 addresses as sorted, disjoint, merged ranges.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct AddrSet {
    /// (first, last), sorted by first; no two overlap or touch.
    ranges: Vec<(u32, u32)>,
}

impl AddrSet {
    /// The addresses of `nets`, in any order, overlapping or not.
    pub fn new(nets: &[Ipv4Net]) -> Self {
        let mut r: Vec<(u32, u32)> = nets.iter().map(|n| (n.first_u32(), n.last_u32())).collect();
        r.sort_unstable();
        let mut ranges: Vec<(u32, u32)> = Vec::with_capacity(r.len());
        for (first, last) in r {
            match ranges.last_mut() {
                Some(prev) if first <= prev.1.saturating_add(1) => prev.1 = prev.1.max(last),
                _ => ranges.push((first, last)),
            }
        }
        AddrSet { ranges }
    }

    /// Whether `ip` is in the set: one binary search.
    #[inline]
    pub fn contains(&self, ip: Ipv4Addr) -> bool {
        let v = u32::from(ip);
        let i = self.ranges.partition_point(|&(first, _)| first <= v);
        i.checked_sub(1)
            .and_then(|j| self.ranges.get(j))
            .is_some_and(|&(_, last)| v <= last)
    }
}

/// Why a message was refused before the engine looked at it.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Refusal {
    /// giaddr is not a trusted relay agent.
    UntrustedRelay,
    /// Option 82 with giaddr 0 under `untrusted-relay-info = "drop"`.
    RelayInfoFromClient,
    /// A DHCPLEASEQUERY from a giaddr not in `leasequery-allow`.
    LeaseQueryNotAllowed,
}

/// Relay data taken out of a message that is still served.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct Stripped {
    /// Option 82 (and its link selection) from a client, under `"strip"`.
    pub relay_info: bool,
    /// Option 118 from a client.
    pub subnet_selection: bool,
}

/// The trust rules of one configuration.
#[derive(Clone, Debug)]
pub struct RelayTrust {
    relays: AddrSet,
    leasequery: AddrSet,
    untrusted_info: UntrustedRelayInfo,
}

impl RelayTrust {
    /// The rules of `cfg` (its trusted relays and policies, defaults resolved).
    pub fn new(cfg: &Config) -> Self {
        RelayTrust {
            relays: AddrSet::new(&cfg.trusted_relays()),
            leasequery: AddrSet::new(&cfg.leasequery_allow()),
            untrusted_info: cfg.server.untrusted_relay_info,
        }
    }

    /// Decides whether a message of `kind` with `giaddr` is served, and removes from `sum`
    /// the relay data its sender may not give.
    #[inline]
    pub fn screen(
        &self,
        kind: MessageType,
        giaddr: Ipv4Addr,
        sum: &mut Summary<'_>,
    ) -> Result<Stripped, Refusal> {
        if kind == MessageType::LeaseQuery {
            // giaddr 0 is refused by the leasequery answer itself (not a relay agent).
            if !giaddr.is_unspecified() && !self.leasequery.contains(giaddr) {
                return Err(Refusal::LeaseQueryNotAllowed);
            }
            return Ok(Stripped::default());
        }
        if !giaddr.is_unspecified() {
            return if self.relays.contains(giaddr) {
                Ok(Stripped::default())
            } else {
                Err(Refusal::UntrustedRelay)
            };
        }
        let mut stripped = Stripped::default();
        if sum.relay_agent_info.is_some() {
            if self.untrusted_info == UntrustedRelayInfo::Drop {
                return Err(Refusal::RelayInfoFromClient);
            }
            sum.relay_agent_info = None;
            sum.link_selection = None;
            stripped.relay_info = true;
        }
        if sum.subnet_selection.take().is_some() {
            stripped.subnet_selection = true;
        }
        Ok(stripped)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn net(s: &str) -> Ipv4Net {
        s.parse().expect("test network")
    }

    #[test]
    fn relay_trust_addr_set_merges_and_finds() {
        let set = AddrSet::new(&[
            net("10.0.1.0/24"),
            net("10.0.0.0/24"),
            net("192.0.2.7/32"),
            net("10.0.0.128/25"),
        ]);
        assert_eq!(set.ranges.len(), 2, "{set:?}");
        for (ip, inside) in [
            ("9.255.255.255", false),
            ("10.0.0.0", true),
            ("10.0.1.255", true),
            ("10.0.2.0", false),
            ("192.0.2.6", false),
            ("192.0.2.7", true),
            ("192.0.2.8", false),
            ("255.255.255.255", false),
        ] {
            let a: Ipv4Addr = ip.parse().expect("test address");
            assert_eq!(set.contains(a), inside, "{ip}");
        }
        assert!(!AddrSet::new(&[]).contains(Ipv4Addr::new(10, 0, 0, 1)));
        assert!(AddrSet::new(&[net("0.0.0.0/0")]).contains(Ipv4Addr::BROADCAST));
    }
}
