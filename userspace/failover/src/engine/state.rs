//! The server state machine (draft-12 section 9): operator commands, leaving STARTUP,
//! transitions driven by the partner's state, RECOVER and RECOVER-WAIT.

use crate::types::{Role, ServerState};

use super::{Action, FailoverEngine};

/// A command refused in the current state, with the reason for the operator.
#[derive(Clone, Debug, PartialEq, Eq, thiserror::Error)]
#[error("failover command {command} not allowed in state {state}: {why}")]
pub struct CommandError {
    /// The command as the operator typed it ("partner-down", "recover", "pause"...).
    pub command: &'static str,
    /// Our state when the command was refused.
    pub state: ServerState,
    /// Why it is refused in that state.
    pub why: &'static str,
}

pub(super) fn comm_failed_state(s: ServerState) -> ServerState {
    match s {
        ServerState::Normal => ServerState::CommunicationsInterrupted,
        ServerState::PotentialConflict => ServerState::ResolutionInterrupted,
        other => other,
    }
}

/// What an accepted `partner-down` did: the operator's reply says which time the MCLT wait
/// counts from and when the waited-for addresses become usable.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct PartnerDownAccepted {
    /// The MCLT wait counts from this time (Unix seconds).
    pub mclt_from: u32,
    /// Where `mclt_from` came from.
    pub from: McltFrom,
    /// `mclt_from` + MCLT: from then the partner's addresses (and, blind, ours) are usable.
    pub usable_at: u32,
    /// Declared from RECOVER / RECOVER-WAIT: our own free addresses wait too.
    pub blind: bool,
}

/// Where the MCLT wait of a `partner-down` counts from.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum McltFrom {
    /// The operator's `since`.
    Since,
    /// The moment the command was accepted (no `since`).
    Now,
    /// Already PARTNER-DOWN and no `since`: the time it was declared, unchanged.
    Unchanged,
}

impl FailoverEngine {
    /// Operator: the partner is down. MCLT before using its addresses counts from `since`
    /// (when it was last known alive), or without it from now, the moment the command is
    /// accepted (as ISC dhcpd does): the partner may have served clients from its pool until
    /// just before, and a lease it granted then ends at most MCLT later. Counting from the
    /// start of COMMUNICATIONS-INTERRUPTED instead gave addresses to two clients whenever the
    /// partner kept serving through the partition (tests/partner_down.rs). Already in
    /// PARTNER-DOWN, the command without `since` changes nothing; with it, it re-dates.
    ///
    /// From RECOVER or RECOVER-WAIT (the partner is gone for good before we learnt what it
    /// leased, e.g. while it was PARTNER-DOWN) this is a *blind* PARTNER-DOWN: draft-12 has
    /// no way out of RECOVER without the partner, and the partner may have leased any
    /// address, ours included, for up to MCLT past its last activity. So every address, our
    /// own pool too, waits until `since` + MCLT (and the record's last end + MCLT). Forced
    /// from STARTUP it is blind too: we restarted without hearing the partner since, so what
    /// it did while we were down is as unknown.
    ///
    /// Guards: accepted in COMMUNICATIONS-INTERRUPTED and RESOLUTION-INTERRUPTED (where
    /// draft-12 expects it), RECOVER and RECOVER-WAIT (blind). NORMAL, STARTUP and
    /// PARTNER-DOWN (re-dating) need `force`: there we either hear the partner or have not yet
    /// tried, and an operator mistaken about a partner that still serves gives addresses to
    /// two clients. Every other state refuses it, forced or not.
    pub fn partner_down(
        &mut self,
        now: u32,
        since: Option<u32>,
        force: bool,
    ) -> Result<PartnerDownAccepted, CommandError> {
        self.tick(now);
        let refuse = |state, why| {
            Err(CommandError {
                command: "partner-down",
                state,
                why,
            })
        };
        match self.state {
            ServerState::CommunicationsInterrupted | ServerState::ResolutionInterrupted => {}
            ServerState::Recover | ServerState::RecoverWait => {
                self.persist.blind_partner_down = true;
            }
            ServerState::Startup if force => {
                // STARTUP follows a restart, and the partner has not been heard since: it may
                // have served, PARTNER-DOWN included (our addresses), while we were down, and
                // we never learnt what. As from RECOVER: blind, our own pool waits too. (The
                // N:1 simulation found it: a main down first, then the shared standby, which
                // had taken over the main's addresses; the main restarted and was forced
                // PARTNER-DOWN, and gave those addresses out at once.)
                self.persist.blind_partner_down = true;
            }
            ServerState::Normal | ServerState::PartnerDown if force => {}
            s @ ServerState::Normal => {
                return refuse(
                    s,
                    "the partner is connected and serving; declaring it down now gives \
                     addresses to two clients. Only if you know it has stopped serving \
                     clients, add --force",
                )
            }
            s @ ServerState::Startup => {
                return refuse(
                    s,
                    "the partner's state is not known yet (STARTUP waits for it); wait for \
                     COMMUNICATIONS-INTERRUPTED, or, if you know the partner is down, add \
                     --force",
                )
            }
            s @ ServerState::PartnerDown => {
                return refuse(
                    s,
                    "already PARTNER-DOWN; add --force (with --since) to re-date the MCLT wait",
                )
            }
            s => {
                return refuse(
                    s,
                    "only COMMUNICATIONS-INTERRUPTED, RESOLUTION-INTERRUPTED, RECOVER and \
                     RECOVER-WAIT take it (NORMAL, STARTUP and PARTNER-DOWN with --force)",
                )
            }
        }
        let (default, from) = match self.state {
            ServerState::PartnerDown => (self.persist.partner_down_since, McltFrom::Unchanged),
            _ => (now, McltFrom::Now),
        };
        let from = if since.is_some() {
            McltFrom::Since
        } else {
            from
        };
        let base = since.unwrap_or(default).min(now);
        if self.state == ServerState::PartnerDown {
            self.persist.partner_down_since = base;
            self.takeover_noted = false;
            self.emit_persist();
            self.actions.push_back(Action::PolicyChanged(self.policy()));
        } else {
            self.enter_partner_down(now, base, "partner-down command");
        }
        let accepted = PartnerDownAccepted {
            mclt_from: self.persist.partner_down_since,
            from,
            usable_at: self.policy().partner_down_usable_at,
            blind: self.persist.blind_partner_down,
        };
        self.event(
            now,
            super::events::FailoverEventKind::OperatorCommand,
            format!(
                "partner-down{}: MCLT counted from {} ({}), usable from {}",
                if force { " --force" } else { "" },
                super::events::utc(accepted.mclt_from),
                match from {
                    McltFrom::Since => "--since",
                    McltFrom::Now => "now",
                    McltFrom::Unchanged => "unchanged",
                },
                super::events::utc(accepted.usable_at)
            ),
            accepted.usable_at,
        );
        self.after_input(now);
        Ok(accepted)
    }

    /// Operator: `failover recover`: pull the partner's whole database (RECOVER, UPDREQALL)
    /// and wait MCLT from now before serving.
    pub fn recover(&mut self, now: u32) -> Result<(), CommandError> {
        self.tick(now);
        if matches!(self.state, ServerState::Shutdown | ServerState::Paused) {
            return Err(CommandError {
                command: "recover",
                state: self.state,
                why: "a stopping server (SHUTDOWN or PAUSED) is left only by a restart",
            });
        }
        self.event(
            now,
            super::events::FailoverEventKind::OperatorCommand,
            format!(
                "recover in {}: pull every binding, then wait MCLT",
                self.state
            ),
            0,
        );
        self.persist.recover_all = true;
        self.persist.recover_base = now;
        self.may_skip_recover_wait = false;
        self.sent_updreq = None;
        if self.state == ServerState::Startup {
            self.prev_state = ServerState::Recover;
        } else {
            self.set_state(now, ServerState::Recover, "recover command");
            self.react(now);
        }
        self.after_input(now);
        Ok(())
    }

    /// Graceful stop for a long time: tell the partner (it may go PARTNER-DOWN). The driver
    /// should keep the connection a few seconds, then close it and exit.
    pub fn shutdown(&mut self, now: u32) {
        self.tick(now);
        self.stop(now, ServerState::Shutdown, "shutdown command");
    }

    /// Short planned stop: the partner goes COMMUNICATIONS-INTERRUPTED.
    ///
    /// Only from NORMAL or COMMUNICATIONS-INTERRUPTED. A partner that restarts while we are
    /// PAUSED sees only "PAUSED", not the state we paused in: had that been PARTNER-DOWN (we
    /// used its addresses), it would resume NORMAL/COMMUNICATIONS-INTERRUPTED instead of
    /// RECOVER and could hand one of them out again (found by the simulation, seed 5852).
    /// In other states the operator stops the server (SHUTDOWN) instead.
    pub fn pause(&mut self, now: u32) -> Result<(), CommandError> {
        self.tick(now);
        if !matches!(
            self.state,
            ServerState::Normal | ServerState::CommunicationsInterrupted
        ) {
            return Err(CommandError {
                command: "pause",
                state: self.state,
                why: "pause is for NORMAL or COMMUNICATIONS-INTERRUPTED; stop the daemon instead",
            });
        }
        self.event(
            now,
            super::events::FailoverEventKind::OperatorCommand,
            format!("pause in {}", self.state),
            0,
        );
        self.stop(now, ServerState::Paused, "pause command");
        Ok(())
    }

    fn stop(&mut self, now: u32, to: ServerState, reason: &'static str) {
        if matches!(self.state, ServerState::Shutdown | ServerState::Paused) {
            return;
        }
        let resume = if self.state == ServerState::Startup {
            self.prev_state
        } else {
            comm_failed_state(self.state)
        };
        self.persist.resume_state = resume;
        self.set_state(now, to, reason);
        self.after_input(now);
    }

    /// Start of the current interruption: entry into the state, or the last message from the
    /// partner if one arrived later (a partner that spoke is alive and bound by the
    /// COMMUNICATIONS-INTERRUPTED rules, so the safe period restarts).
    pub fn interrupted_since(&self) -> u32 {
        self.state_since.max(self.persist.last_contact)
    }

    pub(super) fn leave_startup(&mut self, now: u32) {
        // A partner met in SHUTDOWN or PAUSED does not say what it was in before: if that was
        // PARTNER-DOWN it may have leased our addresses while we were down, and it can no
        // longer tell us (simulation seed 5852: resuming NORMAL -> COMMUNICATIONS-INTERRUPTED
        // -> PARTNER-DOWN on its SHUTDOWN re-leased such an address). Assume the worst, as for
        // a partner in PARTNER-DOWN: RECOVER (or POTENTIAL-CONFLICT) until it is back.
        let partner_pd = matches!(
            self.partner,
            Some(ServerState::PartnerDown | ServerState::Shutdown | ServerState::Paused)
        );
        let mut target = self.prev_state;
        let mut since = self.prev_since;
        if partner_pd && target != ServerState::Recover {
            // Draft-12 9.3.2 step 5: down before the partner went PARTNER-DOWN -> RECOVER,
            // else POTENTIAL-CONFLICT. Both times are whole seconds and the draft names only
            // "later" and "earlier": a tie (our last heartbeat stamp in the very second the
            // partner entered PARTNER-DOWN, e.g. a crash right after a heartbeat and an
            // immediate partner-down command) cannot say who was first, so it takes the safe
            // arm, POTENTIAL-CONFLICT (both exchange unacknowledged updates, then NORMAL).
            // Ties are rare but real (tests/restart_after_partner_down.rs); not a bug.
            //
            // After our own SHUTDOWN or PAUSE, though, our last operational time is the very
            // moment we stopped serving, and a partner that went PARTNER-DOWN in that second
            // (or a clock tolerance earlier: its time is converted with the clocks' offset)
            // went down after us: typically *because* of our SHUTDOWN. It may have leased our
            // addresses since, so RECOVER (the N:1 simulation found a tie taken as
            // POTENTIAL-CONFLICT, then the connection lost: RESOLUTION-INTERRUPTED served an
            // address the partner had leased in PARTNER-DOWN).
            let after_us = if self.stopped_serving {
                self.partner_since.saturating_add(self.cfg.expiry_grace)
                    >= self.persist.last_operational
            } else {
                self.partner_since > self.persist.last_operational
            };
            if after_us {
                target = ServerState::Recover;
                self.persist.recover_base = self.persist.last_operational;
            } else {
                target = ServerState::PotentialConflict;
            }
            since = now;
        }
        if target == ServerState::Recover && self.fresh {
            self.persist.recover_all = true;
        } else if target == ServerState::Recover && self.cfg.failover_recover.is_none() {
            // Draft-12 9.6.2: wait MCLT from when we stopped serving.
            self.persist.recover_base =
                self.persist.recover_base.max(self.persist.last_operational);
        }
        self.enter_state(now, target, since, "startup complete");
    }

    pub(super) fn startup_expired(&mut self, now: u32) {
        if self.fresh && self.cfg.role == Role::Primary && self.cfg.fresh_primary_partner_down {
            // Never met the partner: it cannot hold any address of ours.
            self.enter_partner_down(now, now, "startup: partner never seen");
            return;
        }
        let target = self.prev_state;
        let safe_alone = matches!(
            target,
            ServerState::PartnerDown
                | ServerState::Recover
                | ServerState::RecoverWait
                | ServerState::RecoverDone
        );
        if safe_alone || !self.cfg.startup_needs_partner {
            let since = self.prev_since;
            self.enter_state(now, target, since, "startup timeout");
        }
    }

    /// Like set_state, but keeps a persisted entry time when resuming a previous state.
    fn enter_state(&mut self, now: u32, to: ServerState, since: u32, reason: &'static str) {
        if to == ServerState::PartnerDown {
            // Resuming PARTNER-DOWN after a restart: while we were down the partner may have
            // run (e.g. renewing in RECOVER-DONE or COMMUNICATIONS-INTERRUPTED, within MCLT),
            // so its addresses and expired leases wait MCLT from now again.
            self.persist.partner_down_since = self.persist.partner_down_since.max(now);
        }
        self.set_state(now, to, reason);
        if self.state == to && since <= now && since != 0 && to == self.persist.own_state {
            self.state_since = since;
            self.persist.own_state_since = since;
            self.emit_persist();
        }
    }

    pub(super) fn enter_partner_down(&mut self, now: u32, base: u32, reason: &'static str) {
        self.persist.partner_down_since = base.min(now);
        self.set_state(now, ServerState::PartnerDown, reason);
    }

    pub(super) fn set_state(&mut self, now: u32, to: ServerState, reason: &'static str) {
        if to == self.state {
            return;
        }
        let from = self.state;
        self.state = to;
        self.state_since = now;
        // Stable storage: the state and when it was entered (draft-12 9.2).
        self.persist.own_state = to;
        self.persist.own_state_since = now;
        self.persist.last_operational = now;
        if !matches!(to, ServerState::Paused | ServerState::Shutdown) {
            self.persist.resume_state = to;
        }
        if to == ServerState::Normal {
            // In step with the partner again: what it leased is known.
            self.persist.blind_partner_down = false;
        }
        match to {
            ServerState::Recover => {
                self.sent_updreq = None;
            }
            ServerState::RecoverWait => {
                // Draft-12 9.6.2: no wait when neither side ever ran failover before.
                let skip = self.may_skip_recover_wait && self.recover_partner_fresh;
                self.recover_wait_until = if skip {
                    now
                } else {
                    self.persist.recover_base.saturating_add(self.mclt)
                };
            }
            ServerState::PotentialConflict => {
                self.pc_resolved = false;
                self.sent_updreq = None;
            }
            // Draft-12 9.8.1: the secondary asks for its pool on entering NORMAL.
            ServerState::Normal if self.cfg.role == Role::Secondary => self.next_poolreq_at = now,
            _ => {}
        }
        self.actions.push_back(Action::StateChanged {
            from,
            own: to,
            partner: self.partner,
            at: now,
            reason,
        });
        self.state_event(now, from, to, reason);
        self.emit_persist();
        self.actions.push_back(Action::PolicyChanged(self.policy()));
        self.send_state(now);
    }

    /// Transitions that depend on the partner's state while communicating (draft-12 9.x
    /// "communications OK" arcs). Loops because one transition can enable another.
    pub(super) fn react(&mut self, now: u32) {
        for _ in 0..8 {
            if !self.communications_ok() || self.partner_startup {
                return;
            }
            let Some(p) = self.partner else {
                return;
            };
            let before = self.state;
            use ServerState::*;
            match self.state {
                Normal => match p {
                    // C-I is the partner's transient state until it sees our NORMAL.
                    Normal | CommunicationsInterrupted | RecoverDone | ConflictDone => {}
                    Shutdown => self.enter_partner_down(now, now, "partner shut down"),
                    _ => self.set_state(now, CommunicationsInterrupted, "partner changed state"),
                },
                CommunicationsInterrupted => match p {
                    Normal | CommunicationsInterrupted | RecoverDone => {
                        self.set_state(now, Normal, "partner back")
                    }
                    PartnerDown | PotentialConflict | ConflictDone | ResolutionInterrupted => {
                        self.set_state(now, PotentialConflict, "partner back from PARTNER-DOWN")
                    }
                    Shutdown => self.enter_partner_down(now, now, "partner shut down"),
                    _ => {}
                },
                PartnerDown => match p {
                    Normal
                    | CommunicationsInterrupted
                    | PartnerDown
                    | PotentialConflict
                    | ResolutionInterrupted
                    | ConflictDone => self.set_state(now, PotentialConflict, "partner running"),
                    // While in PARTNER-DOWN we may have used the partner's addresses: it must
                    // hold every such binding before either of us is NORMAL, so flush first.
                    // The failback hold (flap guard) may keep us here a while longer.
                    RecoverDone if self.pending.is_empty() && self.inflight.is_empty() => {
                        match self.failback_held_until(now) {
                            Some(until) => self.note_failback_held(until),
                            None => self.set_state(now, Normal, "partner recovered"),
                        }
                    }
                    _ => {}
                },
                Recover => match p {
                    PotentialConflict | ResolutionInterrupted | ConflictDone => {
                        self.set_state(now, PotentialConflict, "partner resolving conflicts")
                    }
                    _ => {
                        if self.sent_updreq.is_none() {
                            let all = self.persist.recover_all;
                            self.recover_partner_fresh =
                                matches!(p, Recover | RecoverWait | RecoverDone);
                            self.send_updreq(now, all, "RECOVER: pulling the partner's bindings");
                        }
                    }
                },
                RecoverDone => {
                    if matches!(p, Normal | RecoverDone) {
                        self.set_state(now, Normal, "partner ready")
                    }
                }
                PotentialConflict => {
                    let ask = match self.cfg.role {
                        Role::Primary => !self.pc_resolved,
                        // The secondary asks once the primary has its updates (CONFLICT-DONE).
                        Role::Secondary => p == ConflictDone,
                    };
                    if ask && self.sent_updreq.is_none() {
                        self.send_updreq(
                            now,
                            false,
                            "POTENTIAL-CONFLICT: what the partner did not send",
                        );
                    }
                }
                ResolutionInterrupted => {
                    self.set_state(now, PotentialConflict, "communications restored")
                }
                ConflictDone => {
                    if p == Normal {
                        self.set_state(now, Normal, "partner NORMAL")
                    }
                }
                Startup | RecoverWait | Paused | Shutdown => {}
            }
            if self.state == before {
                return;
            }
        }
    }

    pub(super) fn on_upddone(&mut self, now: u32, xid: u32) {
        if self.sent_updreq != Some(xid) {
            return;
        }
        self.sent_updreq = None;
        let n = self.resync_received;
        self.event(
            now,
            super::events::FailoverEventKind::SyncComplete,
            format!(
                "UPDDONE received in {}: {n} binding{} received{}",
                self.state,
                if n == 1 { "" } else { "s" },
                if self.updreq_all { " (all)" } else { "" }
            ),
            0,
        );
        match self.state {
            ServerState::Recover => {
                if self.persist.recover_all {
                    self.persist.recover_all = false;
                }
                self.set_state(now, ServerState::RecoverWait, "UPDDONE");
                self.finish_recover_wait(now);
                self.react(now);
            }
            ServerState::PotentialConflict => {
                self.pc_resolved = true;
                match self.cfg.role {
                    Role::Primary => self.set_state(now, ServerState::ConflictDone, "UPDDONE"),
                    Role::Secondary => self.set_state(now, ServerState::Normal, "UPDDONE"),
                }
                self.react(now);
            }
            _ => {}
        }
    }

    /// RECOVER-WAIT -> RECOVER-DONE once the MCLT wait is over and the partner holds every
    /// update of ours: it goes NORMAL as soon as it sees RECOVER-DONE and must not allocate an
    /// address we bound (e.g. in PARTNER-DOWN before a `recover` command) without knowing.
    /// With updates outstanding and no connection we stay (draft-12 9.6.2 allows it).
    pub(super) fn finish_recover_wait(&mut self, now: u32) {
        if self.state != ServerState::RecoverWait || now < self.recover_wait_until {
            return;
        }
        if !self.pending.is_empty() || !self.inflight.is_empty() {
            return;
        }
        let reason = if self.recover_wait_until == self.state_since {
            "no MCLT wait needed"
        } else {
            "MCLT wait over"
        };
        self.set_state(now, ServerState::RecoverDone, reason);
        self.react(now);
    }
}
