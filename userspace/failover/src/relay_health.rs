//! Relay health check (CPNR "DHCP relay health check", seed 000; `rhc-*` settings): a server
//! of a failover pair in NORMAL notices that a relay agent's path to its *partner* is broken
//! while its own path works, and then answers the relay's clients its partner would serve.
//!
//! How it is detected (the spec's rule, by passive observation; no message between the
//! partners): a relay forwards every broadcast to both servers. A DISCOVER from one of the
//! partner's clients (its load-balancing bucket, or every DISCOVER on a backup without load
//! balancing) is dropped here, and a healthy partner answers it: the client's next message is a
//! REQUEST naming another server (option 54), which reaches us through the same relay. So, per
//! relay (giaddr):
//! * a REQUEST naming another server marks the partner heard through that relay: every count
//!   restarts and a takeover ends;
//! * a DISCOVER this server leaves to the partner is counted as unanswered; once the oldest
//!   unanswered one is `unresponsive_time` old and at least `request_count` of them came, the
//!   relay is **interrupted** (it seems unable to reach the partner) and this server answers the
//!   partner's DISCOVERs from that relay whose `secs` is at least `elapsed_time`, for
//!   `response_time` seconds (0 = until a REQUEST naming another server is seen); then it falls
//!   silent again and the detection starts over, so a partner that came back gets its clients
//!   back;
//! * when no DISCOVER for the partner came for `restart_time`, the relay's time and count restart
//!   (the check only judges recent traffic).
//!
//! What the server may give such a client is still the failover policy's rule (its own pool,
//! MCLT-bounded lease, `rebind-limit`): the takeover changes *whom* it answers, never *what*.
//!
//! The table is fixed-size, allocated once, and written by the workers with relaxed atomics
//! (no lock, no allocation on the packet path). Two workers racing on one relay may lose a
//! count or restart a time a few milliseconds apart: the check is a heuristic over seconds,
//! never a safety rule, so that is harmless. The daemon's background check reads
//! [`RelayHealth::snapshot`] for the operator's view, the metrics and the warning log.

use std::net::Ipv4Addr;
use std::sync::atomic::{AtomicU32, AtomicU64, Ordering::Relaxed};

use crate::policy::{Admission, DropReason, FailoverPolicy, RequestKind};
use crate::types::ServerState;

/// The `rhc-*` settings (seconds, counts). Off unless [`RhcConfig::enabled`].
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct RhcConfig {
    /// `relay-health-check = "v4"`.
    pub enabled: bool,
    /// `rhc-unresponsive-time`: least age of the oldest unanswered DISCOVER before the relay
    /// counts as interrupted.
    pub unresponsive_time: u32,
    /// `rhc-request-count`: least number of unanswered DISCOVERs before that.
    pub request_count: u32,
    /// `rhc-elapsed-time`: a client's `secs` must be at least this for us to answer it for
    /// the partner.
    pub elapsed_time: u16,
    /// `rhc-response-time`: how long a takeover lasts (0 = until the partner is heard).
    pub response_time: u32,
    /// `rhc-restart-time`: no DISCOVER for the partner for this long restarts the relay's
    /// time and count.
    pub restart_time: u32,
    /// `rhc-warning-interval`: least seconds between two warnings about one relay.
    pub warning_interval: u32,
    /// `rhc-max-relays`: relays the table can follow (rounded up to a power of two).
    pub max_relays: u32,
}

impl Default for RhcConfig {
    fn default() -> Self {
        RhcConfig {
            enabled: false,
            unresponsive_time: 30,
            request_count: 10,
            elapsed_time: 10,
            response_time: 60,
            restart_time: 120,
            warning_interval: 300,
            max_relays: 4096,
        }
    }
}

/// What [`RelayHealth::partner_discover`] decided.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum RhcVerdict {
    /// The partner answers this relay's clients (or it is too early to tell): stay silent.
    LeaveToPartner,
    /// The relay is interrupted, but the client's `secs` is below `elapsed_time`: stay silent.
    TooEarly,
    /// The relay is interrupted and the client has waited long enough: answer it.
    Serve,
    /// The table is full and this relay is not in it: stay silent (counted).
    NotTracked,
}

/// How a relay looks from here, for the operator (`ctl failover relays`).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum RelayState {
    /// The partner answers this relay's clients, or none of its clients is the partner's.
    Ok,
    /// DISCOVERs for the partner came and no REQUEST to it followed yet, but not for long
    /// enough (or not enough of them) to act.
    Suspect,
    /// The relay seems unable to reach the partner: we answer its clients for the partner.
    Interrupted,
}

impl RelayState {
    /// Lower-case name for JSON, logs and metrics labels.
    pub fn name(self) -> &'static str {
        match self {
            RelayState::Ok => "ok",
            RelayState::Suspect => "suspect",
            RelayState::Interrupted => "interrupted",
        }
    }
}

/// One relay's entry as the background check reads it.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct RelayView {
    /// The relay agent (giaddr).
    pub relay: Ipv4Addr,
    /// Its state at the snapshot's time.
    pub state: RelayState,
    /// Last message of any kind from it (Unix seconds).
    pub last_heard: u32,
    /// Last REQUEST naming another server (the partner heard through it); 0 = never.
    pub partner_heard: u32,
    /// Oldest DISCOVER left to the partner that no REQUEST to the partner followed; 0 = none.
    pub first_unanswered: u32,
    /// DISCOVERs left to the partner since then.
    pub unanswered: u32,
    /// Start of the current takeover; 0 = none.
    pub takeover_since: u32,
    /// Takeovers so far.
    pub takeovers: u32,
    /// DISCOVERs answered for the partner through this relay.
    pub served: u64,
}

#[repr(align(64))]
#[derive(Debug, Default)]
struct Entry {
    relay: AtomicU32,
    last_heard: AtomicU32,
    partner_heard: AtomicU32,
    first_unanswered: AtomicU32,
    last_unanswered: AtomicU32,
    unanswered: AtomicU32,
    takeover_since: AtomicU32,
    takeovers: AtomicU32,
    last_warned: AtomicU32,
    served: AtomicU64,
}

/// Stores `v` unless the slot already holds it (keeps a busy relay's cache line shared
/// between workers when nothing changes).
#[inline]
fn set(a: &AtomicU32, v: u32) {
    if a.load(Relaxed) != v {
        a.store(v, Relaxed);
    }
}

/// The per-relay table. One per server, shared by every worker and the background check.
#[derive(Debug)]
pub struct RelayHealth {
    cfg: RhcConfig,
    entries: Box<[Entry]>,
    mask: usize,
    /// Relays not followed because the table was full.
    full: AtomicU64,
    /// Takeovers started, all relays.
    takeovers: AtomicU64,
}

/// Longest probe sequence: a full neighbourhood means "table full" for that relay.
const PROBE: usize = 32;

impl RelayHealth {
    /// A table for `cfg.max_relays` relays (at least 16, rounded up to a power of two).
    pub fn new(cfg: RhcConfig) -> Self {
        let n = (cfg.max_relays.max(16) as usize).next_power_of_two();
        let entries: Vec<Entry> = (0..n).map(|_| Entry::default()).collect();
        RelayHealth {
            cfg,
            entries: entries.into_boxed_slice(),
            mask: n - 1,
            full: AtomicU64::new(0),
            takeovers: AtomicU64::new(0),
        }
    }

    /// The settings the table was made with.
    pub fn config(&self) -> &RhcConfig {
        &self.cfg
    }

    /// Messages from relays the full table could not follow.
    pub fn table_full(&self) -> u64 {
        self.full.load(Relaxed)
    }

    /// Takeovers started so far, every relay.
    pub fn takeovers(&self) -> u64 {
        self.takeovers.load(Relaxed)
    }

    fn entry(&self, relay: Ipv4Addr) -> Option<&Entry> {
        let key = u32::from(relay);
        if key == 0 {
            return None;
        }
        // Fibonacci hashing spreads consecutive relay addresses.
        let h = (key.wrapping_mul(0x9E37_79B9) as usize) & self.mask;
        for i in 0..PROBE.min(self.entries.len()) {
            let e = &self.entries[(h + i) & self.mask];
            let k = e.relay.load(Relaxed);
            if k == key {
                return Some(e);
            }
            if k == 0 {
                match e.relay.compare_exchange(0, key, Relaxed, Relaxed) {
                    Ok(_) => return Some(e),
                    Err(k2) if k2 == key => return Some(e),
                    Err(_) => continue,
                }
            }
        }
        self.full.fetch_add(1, Relaxed);
        None
    }

    /// A relayed REQUEST naming a server other than us came through `relay`: the partner
    /// answers that relay's clients. Ends a takeover and restarts the relay's count.
    pub fn partner_request(&self, relay: Ipv4Addr, now: u32) {
        let Some(e) = self.entry(relay) else { return };
        set(&e.last_heard, now);
        set(&e.partner_heard, now);
        set(&e.first_unanswered, 0);
        set(&e.unanswered, 0);
        set(&e.takeover_since, 0);
    }

    /// Any other relayed message from `relay` (for the operator's "last heard").
    pub fn heard(&self, relay: Ipv4Addr, now: u32) {
        if let Some(e) = self.entry(relay) {
            set(&e.last_heard, now);
        }
    }

    /// A DISCOVER through `relay` that the failover policy leaves to the partner (NORMAL, the
    /// partner's bucket), from a client whose `secs` field is `secs`. Says whether to answer it.
    pub fn partner_discover(&self, relay: Ipv4Addr, now: u32, secs: u16) -> RhcVerdict {
        let Some(e) = self.entry(relay) else {
            return RhcVerdict::NotTracked;
        };
        let c = &self.cfg;
        set(&e.last_heard, now);
        let last = e.last_unanswered.load(Relaxed);
        // Nothing for the partner for restart_time: judge only what comes from now on.
        if last != 0 && now.saturating_sub(last) >= c.restart_time {
            set(&e.first_unanswered, 0);
            set(&e.unanswered, 0);
            set(&e.takeover_since, 0);
        }
        set(&e.last_unanswered, now);
        let mut first = e.first_unanswered.load(Relaxed);
        if first == 0 {
            first = now;
            e.first_unanswered.store(now, Relaxed);
        }
        let count = e.unanswered.load(Relaxed).saturating_add(1);
        e.unanswered.store(count, Relaxed);
        let mut take = e.takeover_since.load(Relaxed);
        if take != 0 && c.response_time != 0 && now.saturating_sub(take) >= c.response_time {
            // The takeover has run its time: fall silent and let the partner be heard again
            // (a partner that came back gets its clients back); detection starts over.
            e.takeover_since.store(0, Relaxed);
            e.first_unanswered.store(now, Relaxed);
            e.unanswered.store(1, Relaxed);
            return RhcVerdict::LeaveToPartner;
        }
        if take == 0 && now.saturating_sub(first) >= c.unresponsive_time && count >= c.request_count
        {
            take = now;
            e.takeover_since.store(now, Relaxed);
            e.takeovers.fetch_add(1, Relaxed);
            self.takeovers.fetch_add(1, Relaxed);
        }
        if take == 0 {
            RhcVerdict::LeaveToPartner
        } else if secs < c.elapsed_time {
            RhcVerdict::TooEarly
        } else {
            e.served.fetch_add(1, Relaxed);
            RhcVerdict::Serve
        }
    }

    /// Whether `relay` is in a takeover at `now` (a SELECTING REQUEST naming us through it
    /// follows our OFFER made for the partner).
    pub fn is_interrupted(&self, relay: Ipv4Addr, now: u32) -> bool {
        let key = u32::from(relay);
        let h = (key.wrapping_mul(0x9E37_79B9) as usize) & self.mask;
        for i in 0..PROBE.min(self.entries.len()) {
            let e = &self.entries[(h + i) & self.mask];
            match e.relay.load(Relaxed) {
                k if k == key && key != 0 => {
                    return self.view_of(e, now).state == RelayState::Interrupted
                }
                0 => return false,
                _ => {}
            }
        }
        false
    }

    fn view_of(&self, e: &Entry, now: u32) -> RelayView {
        let c = &self.cfg;
        let last = e.last_unanswered.load(Relaxed);
        let stale = last != 0 && now.saturating_sub(last) >= c.restart_time;
        let mut first = e.first_unanswered.load(Relaxed);
        let mut unanswered = e.unanswered.load(Relaxed);
        let mut take = e.takeover_since.load(Relaxed);
        if stale {
            // What the next DISCOVER would find: the relay's time and count restarted.
            first = 0;
            unanswered = 0;
            take = 0;
        }
        if take != 0 && c.response_time != 0 && now.saturating_sub(take) >= c.response_time {
            take = 0;
        }
        let state = if take != 0 {
            RelayState::Interrupted
        } else if first != 0 && unanswered > 0 {
            RelayState::Suspect
        } else {
            RelayState::Ok
        };
        RelayView {
            relay: Ipv4Addr::from(e.relay.load(Relaxed)),
            state,
            last_heard: e.last_heard.load(Relaxed),
            partner_heard: e.partner_heard.load(Relaxed),
            first_unanswered: first,
            unanswered,
            takeover_since: take,
            takeovers: e.takeovers.load(Relaxed),
            served: e.served.load(Relaxed),
        }
    }

    /// Every relay followed, as at `now` (off the packet path: walks the whole table).
    pub fn snapshot(&self, now: u32) -> Vec<RelayView> {
        let mut v: Vec<RelayView> = self
            .entries
            .iter()
            .filter(|e| e.relay.load(Relaxed) != 0)
            .map(|e| self.view_of(e, now))
            .collect();
        v.sort_by_key(|r| u32::from(r.relay));
        v
    }

    /// Relays in a takeover at `now` whose last warning is at least `warning_interval` old;
    /// marks them warned. For the background check's log line (one caller).
    pub fn due_warnings(&self, now: u32) -> Vec<RelayView> {
        let mut out = Vec::new();
        for e in self.entries.iter().filter(|e| e.relay.load(Relaxed) != 0) {
            let v = self.view_of(e, now);
            if v.state != RelayState::Interrupted {
                continue;
            }
            let w = e.last_warned.load(Relaxed);
            if w == 0 || now.saturating_sub(w) >= self.cfg.warning_interval {
                e.last_warned.store(now.max(1), Relaxed);
                out.push(v);
            }
        }
        out
    }
}

/// What a REQUEST's server identifier (option 54) names.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Named {
    /// No server identifier (DISCOVER, INIT-REBOOT, RENEW, REBIND).
    Nobody,
    /// Our server identifier.
    Us,
    /// Another server's (in a pair: the partner's).
    Other,
}

/// [`FailoverPolicy::admit`] with the relay health check: the one rule the DHCP engine and the
/// simulation both run. `relay` is the message's giaddr (0: not relayed, no check). Returns
/// the admission and, for a DISCOVER the policy left to the partner, the check's verdict (to
/// count).
#[allow(clippy::too_many_arguments)]
pub fn admit_with_relay_health(
    pol: &FailoverPolicy,
    rhc: Option<&RelayHealth>,
    kind: RequestKind,
    client_key: &[u8],
    secs: u16,
    relay: Ipv4Addr,
    named: Named,
    now: u32,
) -> (Admission, Option<RhcVerdict>) {
    let a = pol.admit(kind, client_key, secs);
    let Some(rhc) = rhc.filter(|r| r.cfg.enabled) else {
        return (a, None);
    };
    // The check acts only in NORMAL (in every other state both servers answer everyone, or
    // nobody) and only on relayed traffic.
    if relay.is_unspecified() || pol.state != ServerState::Normal {
        return (a, None);
    }
    if named == Named::Other {
        rhc.partner_request(relay, now);
        return (a, None);
    }
    match (a, kind) {
        (Admission::Drop(DropReason::PartnersBucket), RequestKind::Discover) => {
            let v = rhc.partner_discover(relay, now, secs);
            let a = if v == RhcVerdict::Serve {
                Admission::ServeForPartner
            } else {
                a
            };
            (a, Some(v))
        }
        // The client took the OFFER we made for the partner: confirm it (the engine still
        // checks that the address was offered to this client).
        (Admission::Drop(DropReason::PartnersBucket), RequestKind::RequestSelecting)
            if named == Named::Us =>
        {
            rhc.heard(relay, now);
            (Admission::ServeForPartner, None)
        }
        _ => {
            rhc.heard(relay, now);
            (a, None)
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const R: Ipv4Addr = Ipv4Addr::new(10, 9, 0, 1);

    fn cfg() -> RhcConfig {
        RhcConfig {
            enabled: true,
            unresponsive_time: 10,
            request_count: 3,
            elapsed_time: 4,
            response_time: 30,
            restart_time: 60,
            warning_interval: 100,
            max_relays: 16,
        }
    }

    #[test]
    fn relay_health_takeover_needs_both_time_and_count() {
        let t = RelayHealth::new(cfg());
        // Three DISCOVERs within 10 s: enough count, not enough time.
        for now in [100, 101, 102] {
            assert_eq!(t.partner_discover(R, now, 9), RhcVerdict::LeaveToPartner);
        }
        assert_eq!(t.snapshot(105)[0].state, RelayState::Suspect);
        // At 110 the oldest is 10 s old and the count is 4: interrupted, and served.
        assert_eq!(t.partner_discover(R, 110, 9), RhcVerdict::Serve);
        assert_eq!(t.snapshot(110)[0].state, RelayState::Interrupted);
        assert!(t.is_interrupted(R, 111));
        assert_eq!(t.takeovers(), 1);
        // Time alone is not enough: a second relay with one DISCOVER 20 s ago and one now.
        let r2 = Ipv4Addr::new(10, 9, 0, 2);
        assert_eq!(t.partner_discover(r2, 100, 9), RhcVerdict::LeaveToPartner);
        assert_eq!(t.partner_discover(r2, 120, 9), RhcVerdict::LeaveToPartner);
        assert_eq!(t.snapshot(120)[1].state, RelayState::Suspect);
    }

    #[test]
    fn relay_health_partner_request_keeps_the_relay_healthy_and_ends_a_takeover() {
        let t = RelayHealth::new(cfg());
        // A healthy partner: every DISCOVER is followed by a REQUEST naming it.
        for i in 0..50 {
            assert_eq!(
                t.partner_discover(R, 100 + i, 9),
                RhcVerdict::LeaveToPartner
            );
            t.partner_request(R, 100 + i);
        }
        assert_eq!(t.snapshot(150)[0].state, RelayState::Ok);
        // Cut: no more REQUESTs to the partner.
        for now in 150..160 {
            t.partner_discover(R, now, 9);
        }
        assert_eq!(t.partner_discover(R, 160, 9), RhcVerdict::Serve);
        // A young client is left alone even then.
        assert_eq!(t.partner_discover(R, 161, 3), RhcVerdict::TooEarly);
        // The partner is heard again: the takeover ends at once.
        t.partner_request(R, 162);
        assert_eq!(t.snapshot(162)[0].state, RelayState::Ok);
        assert_eq!(t.partner_discover(R, 163, 9), RhcVerdict::LeaveToPartner);
    }

    #[test]
    fn relay_health_takeover_ends_after_response_time_and_detection_starts_over() {
        let t = RelayHealth::new(cfg());
        for now in 100..=110 {
            t.partner_discover(R, now, 9);
        }
        assert!(t.is_interrupted(R, 110));
        assert_eq!(t.partner_discover(R, 139, 9), RhcVerdict::Serve);
        // response_time 30 after 110: silent again, detection restarted.
        assert_eq!(t.partner_discover(R, 140, 9), RhcVerdict::LeaveToPartner);
        assert_eq!(t.snapshot(140)[0].state, RelayState::Suspect);
        // Still no partner: interrupted again after unresponsive_time and request_count.
        for now in 141..150 {
            assert_eq!(t.partner_discover(R, now, 9), RhcVerdict::LeaveToPartner);
        }
        assert_eq!(t.partner_discover(R, 150, 9), RhcVerdict::Serve);
        assert_eq!(t.takeovers(), 2);
    }

    #[test]
    fn relay_health_restart_time_forgets_old_discovers() {
        let t = RelayHealth::new(cfg());
        t.partner_discover(R, 100, 9);
        t.partner_discover(R, 101, 9);
        // 60 s of nothing for the partner: the old ones no longer count.
        assert_eq!(t.snapshot(161)[0].state, RelayState::Ok);
        assert_eq!(t.partner_discover(R, 161, 9), RhcVerdict::LeaveToPartner);
        assert_eq!(t.partner_discover(R, 162, 9), RhcVerdict::LeaveToPartner);
        assert_eq!(t.partner_discover(R, 170, 9), RhcVerdict::LeaveToPartner);
        assert_eq!(t.partner_discover(R, 171, 9), RhcVerdict::Serve);
    }

    #[test]
    fn relay_health_full_table_counts_and_never_serves() {
        let t = RelayHealth::new(RhcConfig {
            max_relays: 16,
            request_count: 1,
            unresponsive_time: 0,
            elapsed_time: 0,
            ..cfg()
        });
        let mut not_tracked = 0;
        for i in 1..=40u32 {
            let r = Ipv4Addr::from(0x0a00_0000 + i);
            if t.partner_discover(r, 100, 9) == RhcVerdict::NotTracked {
                not_tracked += 1;
            }
        }
        assert_eq!(not_tracked, 24);
        assert_eq!(t.table_full(), 24);
        assert_eq!(t.snapshot(100).len(), 16);
        // giaddr 0 is no relay.
        assert_eq!(
            t.partner_discover(Ipv4Addr::UNSPECIFIED, 100, 9),
            RhcVerdict::NotTracked
        );
    }

    #[test]
    fn relay_health_warns_once_per_interval() {
        let t = RelayHealth::new(cfg());
        for now in 100..=110 {
            t.partner_discover(R, now, 9);
        }
        assert_eq!(t.due_warnings(110).len(), 1);
        assert!(t.due_warnings(111).is_empty());
        // Still interrupted 100 s later (DISCOVERs keep coming, response_time restarts)...
        let t2 = RelayHealth::new(RhcConfig {
            response_time: 0,
            ..cfg()
        });
        for now in 100..=110 {
            t2.partner_discover(R, now, 9);
        }
        assert_eq!(t2.due_warnings(110).len(), 1);
        t2.partner_discover(R, 150, 9);
        t2.partner_discover(R, 200, 9);
        assert!(t2.due_warnings(205).is_empty());
        assert_eq!(t2.due_warnings(210).len(), 1);
    }
}
