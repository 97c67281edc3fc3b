//! The failover event log: what happened to the relationship, told the way operators of an
//! active/standby pair expect it (seed 004's HA event list: configuration created,
//! synchronization in progress, heartbeats up, active, failover invoked, failover active,
//! failback in progress), with the time of each (the caller's clock; shown in UTC). Kept in
//! the engine, bounded ([`EVENT_LOG_LEN`] most recent), each event also logged once through
//! [`Action::Log`]. The draft-12 states stay the protocol's truth; these events are the story.
//!
//! Also here: the resynchronisation progress ([`FailoverEngine::resync_progress`]) and the
//! failback hold (flap guard, [`Config::failback_hold`](super::Config::failback_hold)).

use crate::types::ServerState;

use super::{Action, CommandError, FailoverEngine};

/// How many events the engine keeps (the oldest go first).
pub const EVENT_LOG_LEN: usize = 128;

/// What happened (see [`FailoverEventKind::description`]).
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum FailoverEventKind {
    /// First start of this relationship on this server: no failover state on record.
    ConfigurationCreated,
    /// Started from the failover state on record.
    Started,
    /// CONNECT/CONNECTACK done and the partner's STATE received: the heartbeats run.
    HeartbeatsUp,
    /// A connection that was communicating was lost (or the partner went silent).
    HeartbeatsDown,
    /// A binding resynchronisation began (we sent UPDREQ/UPDREQALL, or the partner did).
    SyncStarted,
    /// It ended: the UPDDONE was sent or received.
    SyncComplete,
    /// We entered NORMAL.
    Active,
    /// We entered PARTNER-DOWN (operator, safe period, the partner's SHUTDOWN, a fresh
    /// primary alone): the takeover began.
    FailoverInvoked,
    /// In PARTNER-DOWN, the MCLT wait ended: the partner's addresses (and expired leases)
    /// are ours to give.
    FailoverActive,
    /// In PARTNER-DOWN the partner is back and recovering (it pulls our bindings).
    FailbackInProgress,
    /// The partner recovered, but the failback hold keeps us PARTNER-DOWN until a time.
    FailbackHeld,
    /// Both served while apart (POTENTIAL-CONFLICT): they exchange what the other lacks.
    SplitBrain,
    /// The partner runs another implementation or version.
    VersionMismatch,
    /// An operator command was accepted (partner-down, recover, pause, failback).
    OperatorCommand,
}

impl FailoverEventKind {
    /// Short machine name (JSON, metrics label).
    pub fn name(self) -> &'static str {
        use FailoverEventKind::*;
        match self {
            ConfigurationCreated => "configuration-created",
            Started => "started",
            HeartbeatsUp => "heartbeats-up",
            HeartbeatsDown => "heartbeats-down",
            SyncStarted => "sync-started",
            SyncComplete => "sync-complete",
            Active => "active",
            FailoverInvoked => "failover-invoked",
            FailoverActive => "failover-active",
            FailbackInProgress => "failback-in-progress",
            FailbackHeld => "failback-held",
            SplitBrain => "split-brain",
            VersionMismatch => "version-mismatch",
            OperatorCommand => "operator-command",
        }
    }

    /// The event description, in the words of seed 004's event log where it has them.
    pub fn description(self) -> &'static str {
        use FailoverEventKind::*;
        match self {
            ConfigurationCreated => "Configuration successfully created",
            Started => "Started from stored failover state",
            HeartbeatsUp => "Heartbeats have been setup successfully",
            HeartbeatsDown => "Heartbeats lost",
            SyncStarted => "Primary and secondary server synchronization in progress",
            SyncComplete => "Primary and secondary server synchronization complete",
            Active => "Active",
            FailoverInvoked => "Failover invoked",
            FailoverActive => "Failover active",
            FailbackInProgress => "Failback in progress",
            FailbackHeld => "Failback held (flap guard)",
            SplitBrain => "Both servers were active: resolving",
            VersionMismatch => "Partner version differs",
            OperatorCommand => "Operator command",
        }
    }
}

/// One entry of the failover event log.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct FailoverEvent {
    /// When, Unix seconds (the engine's `now`).
    pub at: u32,
    /// What.
    pub kind: FailoverEventKind,
    /// Details: states, reasons, counts.
    pub remarks: String,
    /// A time the event names, Unix seconds (when the partner's addresses become usable,
    /// until when a failback is held); 0 = none.
    pub until: u32,
}

/// Which way a resynchronisation runs.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum ResyncDirection {
    /// We answer the partner's UPDREQ/UPDREQALL: we know how many bindings it needs.
    Sending,
    /// We sent UPDREQ/UPDREQALL: the partner does not say how many will come.
    Receiving,
}

/// A resynchronisation in progress ([`FailoverEngine::resync_progress`]).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct ResyncProgress {
    /// Sending (percent known) or receiving (count only).
    pub direction: ResyncDirection,
    /// UPDREQALL (every binding) rather than UPDREQ (only what is unacknowledged).
    pub all: bool,
    /// Sending: bindings acknowledged by the partner; receiving: bindings received.
    pub done: u64,
    /// Sending: bindings the request covers (None until the driver has queued them all);
    /// receiving: None.
    pub total: Option<u64>,
}

impl ResyncProgress {
    /// `done` of `total` in percent (0..=100), when the total is known.
    pub fn percent(&self) -> Option<f64> {
        let total = self.total?;
        Some(if total == 0 {
            100.0
        } else {
            (self.done.min(total) as f64 * 100.0 / total as f64 * 10.0).round() / 10.0
        })
    }
}

impl FailoverEngine {
    /// The failover event log, oldest first (at most [`EVENT_LOG_LEN`]).
    pub fn events(&self) -> impl Iterator<Item = &FailoverEvent> {
        self.events.iter()
    }

    /// Events recorded since start (also those the bounded log no longer holds).
    pub fn events_total(&self) -> u64 {
        self.events_total
    }

    pub(super) fn event(&mut self, now: u32, kind: FailoverEventKind, remarks: String, until: u32) {
        self.actions.push_back(Action::Log(format!(
            "failover event: {}: {remarks}",
            kind.description()
        )));
        if self.events.len() >= EVENT_LOG_LEN {
            self.events.pop_front();
        }
        self.events.push_back(FailoverEvent {
            at: now,
            kind,
            remarks,
            until,
        });
        self.events_total += 1;
    }

    /// The events a state change tells (called by `set_state`).
    pub(super) fn state_event(
        &mut self,
        now: u32,
        from: ServerState,
        to: ServerState,
        reason: &str,
    ) {
        use FailoverEventKind as K;
        match to {
            ServerState::Normal => {
                let back = if from == ServerState::PartnerDown {
                    "; failback complete"
                } else {
                    ""
                };
                self.event(
                    now,
                    K::Active,
                    format!("NORMAL from {from}: {reason}{back}"),
                    0,
                );
            }
            ServerState::PartnerDown => {
                self.takeover_noted = false;
                self.failback_waived = false;
                let until = self.policy().partner_down_usable_at;
                let what = if self.persist.blind_partner_down {
                    "every address (blind, from RECOVER)"
                } else {
                    "the partner's addresses"
                };
                self.event(
                    now,
                    K::FailoverInvoked,
                    format!(
                        "PARTNER-DOWN from {from}: {reason}; {what} usable from {}",
                        utc(until)
                    ),
                    until,
                );
            }
            ServerState::PotentialConflict => self.event(
                now,
                K::SplitBrain,
                format!("POTENTIAL-CONFLICT from {from}: {reason}"),
                0,
            ),
            _ => {}
        }
    }

    /// PARTNER-DOWN's MCLT wait ended: tell it once (called after every input and timeout).
    pub(super) fn note_takeover(&mut self, now: u32) {
        if self.state != ServerState::PartnerDown || self.takeover_noted {
            return;
        }
        let at = self.policy().partner_down_usable_at;
        if now < at {
            return;
        }
        self.takeover_noted = true;
        let what = if self.persist.blind_partner_down {
            "every address may be given (blind PARTNER-DOWN)"
        } else {
            "the partner's addresses and expired leases may be given"
        };
        self.event(
            now,
            FailoverEventKind::FailoverActive,
            format!("MCLT wait over: {what}"),
            0,
        );
    }

    /// The time before which the failback hold keeps us PARTNER-DOWN (None: not held).
    pub(super) fn failback_held_until(&self, now: u32) -> Option<u32> {
        let hold = self.cfg.failback_hold;
        if hold == 0 || self.failback_waived || self.state != ServerState::PartnerDown {
            return None;
        }
        let until = self.state_since.max(self.comm_up_at).saturating_add(hold);
        (now < until).then_some(until)
    }

    /// In PARTNER-DOWN with the failback hold on: until when the step back to NORMAL waits
    /// (None: not held now). See [`Config::failback_hold`](super::Config::failback_hold).
    pub fn failback_hold_until(&self) -> Option<u32> {
        self.failback_held_until(self.now)
    }

    /// The failback hold, if it keeps us PARTNER-DOWN now: tell it once per connection.
    pub(super) fn note_failback_held(&mut self, until: u32) {
        if self.failback_hold_noted {
            return;
        }
        self.failback_hold_noted = true;
        let now = self.now;
        self.event(
            now,
            FailoverEventKind::FailbackHeld,
            format!(
                "partner recovered; NORMAL waits until {} (failback-hold {} s: PARTNER-DOWN \
                 and the partner reachable that long)",
                utc(until),
                self.cfg.failback_hold
            ),
            until,
        );
    }

    /// Operator: `failover failback`: end the failback hold now (MSE's forced failback).
    /// Only in PARTNER-DOWN with the partner connected (failback only when the other side
    /// is up); the step to NORMAL still waits until the partner has recovered (RECOVER-DONE)
    /// and holds every update of ours.
    pub fn failback(&mut self, now: u32) -> Result<(), CommandError> {
        self.tick(now);
        if self.state != ServerState::PartnerDown {
            return Err(CommandError {
                command: "failback",
                state: self.state,
                why: "failback is the step from PARTNER-DOWN back to NORMAL",
            });
        }
        if !self.communications_ok() {
            return Err(CommandError {
                command: "failback",
                state: self.state,
                why: "the partner is not connected: failback needs it up (it recovers first)",
            });
        }
        self.failback_waived = true;
        self.event(
            now,
            FailoverEventKind::OperatorCommand,
            "failback: hold ended by the operator".into(),
            0,
        );
        self.react(now);
        self.after_input(now);
        Ok(())
    }

    /// The binding resynchronisation in progress, if any: answering the partner's
    /// UPDREQ/UPDREQALL (percent known), or waiting for the UPDDONE of ours (count only:
    /// draft-12 does not say how many bindings will come).
    pub fn resync_progress(&self) -> Option<ResyncProgress> {
        if let Some(s) = &self.serving {
            let (total, done) = match s.cover_seq {
                Some(cover) => {
                    let remaining = self.pending.values().filter(|p| p.seq <= cover).count()
                        + self
                            .inflight
                            .values()
                            .flat_map(|f| f.items.iter())
                            .filter(|(seq, _)| *seq <= cover)
                            .count();
                    let total = s.total as u64;
                    (Some(total), total.saturating_sub(remaining as u64))
                }
                None => (None, 0),
            };
            return Some(ResyncProgress {
                direction: ResyncDirection::Sending,
                all: s.all,
                done,
                total,
            });
        }
        self.sent_updreq.map(|_| ResyncProgress {
            direction: ResyncDirection::Receiving,
            all: self.updreq_all,
            done: self.resync_received,
            total: None,
        })
    }
}

/// `2026-12-04T21:40:00Z` (UTC) for event remarks; `-` for 0.
pub(super) fn utc(t: u32) -> String {
    if t == 0 {
        return "-".into();
    }
    let days = i64::from(t / 86_400);
    let rem = t % 86_400;
    // Civil date from days since 1970-01-01 (H. Hinnant's algorithm).
    let z = days + 719_468;
    let era = z.div_euclid(146_097);
    let doe = z - era * 146_097;
    let yoe = (doe - doe / 1460 + doe / 36_524 - doe / 146_096) / 365;
    let doy = doe - (365 * yoe + yoe / 4 - yoe / 100);
    let mp = (5 * doy + 2) / 153;
    let d = doy - (153 * mp + 2) / 5 + 1;
    let m = if mp < 10 { mp + 3 } else { mp - 9 };
    let y = yoe + era * 400 + i64::from(m <= 2);
    format!(
        "{y:04}-{m:02}-{d:02}T{:02}:{:02}:{:02}Z",
        rem / 3600,
        rem / 60 % 60,
        rem % 60
    )
}

#[cfg(test)]
mod tests {
    #[test]
    fn failover_event_utc_times() {
        assert_eq!(super::utc(0), "-");
        assert_eq!(super::utc(1), "1970-01-01T00:00:01Z");
        assert_eq!(super::utc(951_782_400), "2000-02-29T00:00:00Z");
        assert_eq!(super::utc(1_796_420_400), "2026-12-04T21:40:00Z");
    }
}
