//! Faults and operator actions: crashes and restarts, partitions, connection resets, clock
//! steps, isolation from clients, partner-down, shutdown/pause, failover recover.

use xdhcpd_failover::{
    BindingStore, BindingSync, CommandError, FailoverEngine, PartnerDownAccepted, ServerState,
};

use super::{Sim, MAX_SKEW};

impl Sim {
    /// Operator `partner-down` on live node `i` at its own clock; its actions run at once.
    /// Blind ones (accepted in RECOVER / RECOVER-WAIT) and forced ones are counted in the
    /// coverage.
    pub fn partner_down(
        &mut self,
        i: usize,
        since: Option<u32>,
        force: bool,
    ) -> Result<PartnerDownAccepted, CommandError> {
        let now = self.nodes[i].now(self.t);
        let e = self.nodes[i]
            .engine
            .as_mut()
            .expect("partner-down on a live node");
        let blind = matches!(e.state(), ServerState::Recover | ServerState::RecoverWait);
        let r = e.partner_down(now, since, force);
        if r.is_ok() && blind {
            self.cov.blind_partner_downs += 1;
        }
        if r.is_ok() && force {
            self.cov.forced_partner_downs += 1;
        }
        self.drain(i);
        r
    }

    /// Adds node `i`'s update counters to the coverage (before its engine goes away).
    pub fn count_update_stats(&mut self, i: usize) {
        if let Some(e) = &self.nodes[i].engine {
            self.cov.bndupd_sent += e.stats().bndupd_sent;
            self.cov.bndupd_messages += e.stats().bndupd_messages_sent;
        }
    }

    /// Crash node `i`; `rst`: the peer's TCP sees the reset at once, else only silence.
    pub fn crash(&mut self, i: usize, rst: bool, down_for: u32) {
        if !self.nodes[i].alive() {
            return;
        }
        self.note(format!("node{i}: CRASH (rst {rst}, down {down_for}s)"));
        self.cov.crashes += 1;
        self.crash_log.push((self.t, i, rst));
        self.count_update_stats(i);
        self.nodes[i].engine = None;
        self.nodes[i].crashed_at = self.t;
        self.nodes[i].restart_at = self.t + down_for;
        if self.link.up {
            if rst {
                let other = 1 - i;
                self.link_down();
                let now = self.nodes[other].now(self.t);
                if let Some(e) = self.nodes[other].engine.as_mut() {
                    e.handle_disconnected(now);
                }
                self.drain(other);
            } else {
                self.link.dead = true;
                self.link.q = Default::default();
            }
        }
    }

    pub fn restart(&mut self, i: usize) {
        if self.nodes[i].alive() {
            return;
        }
        let now = self.nodes[i].now(self.t);
        let mut cfg = self.nodes[i].cfg.clone();
        if self.nodes[i].failover_recover_on_restart {
            cfg.failover_recover = Some(now);
            self.nodes[i].failover_recover_on_restart = false;
        }
        self.note(format!(
            "node{i}: RESTART (persist {:?})",
            self.nodes[i].persist.map(|p| p.own_state)
        ));
        // The daemon at start: a restart stops reconfiguration unless deferred-nak.
        let keep = self.nodes[i].deferred_nak;
        let mut flagged = Vec::new();
        self.nodes[i].table.for_each(|l| {
            if l.flags & lease_store::FLAG_RECONFIGURING != 0 {
                flagged.push(l.addr);
            }
        });
        for a in flagged {
            self.nodes[i]
                .table
                .update(a, |l| xdhcpd_failover::store::stop_reconfiguring(l, keep));
        }
        let e = FailoverEngine::new(cfg, self.nodes[i].persist, now).expect("sim config is valid");
        self.nodes[i].sync = BindingSync::new(self.nodes[i].cfg.store_rules());
        self.nodes[i].engine = Some(e);
        *self.cov.states.entry(ServerState::Startup).or_default() += 1;
        self.drain(i);
    }

    /// Break the connection (silently) and block reconnection for `secs`.
    pub fn partition(&mut self, secs: u32) {
        self.note(format!("PARTITION {secs}s"));
        self.cov.partitions += 1;
        self.link.blocked_until = self.link.blocked_until.max(self.t + secs);
        if self.link.up {
            self.link.dead = true;
            self.link.q = Default::default();
        }
    }

    /// Reset the TCP connection (both sides told).
    pub fn reset_connection(&mut self) {
        if !self.link.up || self.link.dead {
            return;
        }
        self.note("RESET connection".into());
        self.link_down();
        for i in 0..2 {
            let now = self.nodes[i].now(self.t);
            if let Some(e) = self.nodes[i].engine.as_mut() {
                e.handle_disconnected(now);
            }
            self.drain(i);
        }
    }

    pub(super) fn random_fault(&mut self) {
        let p = self.p.clone();
        let roll = self.rng.below(100);
        let both_up = self.nodes[0].alive() && self.nodes[1].alive();
        match roll {
            0..=19 => self.reset_connection(),
            20..=39 => {
                // Both servers reachable by clients: the whole time without contact must stay
                // within safe_period - MCLT (the operator's side of the safe-period bargain).
                let max = p.safe_period.saturating_sub(p.mclt + 60);
                let used = self.t.saturating_sub(self.last_comm_ok);
                if both_up && used + 10 < max {
                    let d = self.rng.range(10, max - used);
                    self.partition(d);
                }
            }
            40..=59 => {
                let i = self.rng.below(2) as usize;
                if both_up || !self.nodes[i].alive() {
                    let rst = self.rng.chance(500);
                    let down = if self.rng.chance(500) {
                        self.rng.range(5, 120)
                    } else {
                        self.rng.range(200, 1500)
                    };
                    self.crash(i, rst, down);
                }
            }
            60..=69 => {
                // Clock step on one node, bounded skew.
                let i = self.rng.below(2) as usize;
                let step = self.rng.range(0, 10) as i64 - 5;
                // Small steps (NTP-sized): cltt comparisons across a clock step larger than the
                // spacing of two client events cannot be ordered by any protocol.
                let o = (self.nodes[i].offset + step).clamp(-MAX_SKEW / 4, MAX_SKEW / 4);
                self.note(format!(
                    "node{i}: clock offset {} -> {o}",
                    self.nodes[i].offset
                ));
                self.nodes[i].offset = o;
            }
            70..=77 => {
                // Operator: partner-down on the survivor of a crash.
                let a = self.rng.below(2) as usize;
                let other = 1 - a;
                if self.nodes[a].alive()
                    && !self.nodes[other].alive()
                    && self.t > self.nodes[other].crashed_at + 30
                {
                    let crash_local =
                        self.nodes[a].now(self.nodes[other].crashed_at) + MAX_SKEW as u32;
                    let since = Some(crash_local.min(self.nodes[a].now(self.t)));
                    self.note(format!("node{a}: operator partner-down since {since:?}"));
                    // Refused outside COMMUNICATIONS-INTERRUPTED / RECOVER (e.g. still NORMAL
                    // or STARTUP): this operator knows the partner crashed, so forces it.
                    if self.partner_down(a, since, false).is_err() {
                        self.cov.partner_downs_refused += 1;
                        self.note(format!("node{a}: operator partner-down --force"));
                        let _ = self.partner_down(a, since, true);
                    }
                }
            }
            78..=83 => {
                // Graceful shutdown or pause, then stop.
                let i = self.rng.below(2) as usize;
                if both_up {
                    let now = self.nodes[i].now(self.t);
                    let pause = self.rng.chance(500);
                    if let Some(e) = self.nodes[i].engine.as_mut() {
                        if pause {
                            // Refused outside NORMAL/COMMUNICATIONS-INTERRUPTED: then stop.
                            if e.pause(now).is_err() {
                                e.shutdown(now);
                            }
                        } else {
                            e.shutdown(now);
                        }
                    }
                    self.note(format!(
                        "node{i}: {}",
                        if pause { "PAUSE" } else { "SHUTDOWN" }
                    ));
                    self.drain(i);
                    // The process exits a few seconds later.
                    let down = self.rng.range(30, 900);
                    self.nodes[i].restart_at = 0;
                    self.schedule_stop(i, down);
                }
            }
            84..=91 => {
                // A server cut off from clients and partner (may stay longer than the safe
                // period: it cannot serve anyone meanwhile).
                let i = self.rng.below(2) as usize;
                if both_up {
                    let d = self.rng.range(100, 1500);
                    self.note(format!("node{i}: ISOLATED {d}s"));
                    self.nodes[i].isolated_until = self.t + d;
                    self.nodes[i].isolated_from = self.t;
                    self.nodes[i].needs_sync = true;
                    self.partition(d);
                }
            }
            92..=95 => {
                // Operator: partner-down on a server whose partner is isolated from clients.
                for a in 0..2 {
                    let other = 1 - a;
                    if self.nodes[a].alive()
                        && self.nodes[other].isolated_until > self.t + 10
                        && self.nodes[a].state() == Some(ServerState::CommunicationsInterrupted)
                    {
                        let now = self.nodes[a].now(self.t);
                        // The operator dates it from when the partner lost its clients, or
                        // gives no date: then MCLT counts from now, later than the cut.
                        let cut =
                            self.nodes[a].now(self.nodes[other].isolated_from) + MAX_SKEW as u32;
                        let since = if self.rng.chance(500) {
                            None
                        } else {
                            Some(cut.min(now))
                        };
                        self.note(format!("node{a}: operator partner-down (partner isolated)"));
                        let _ = self.partner_down(a, since, false);
                    }
                }
            }
            _ => {
                // Operator: failover recover on a node (full pull, MCLT wait).
                let i = self.rng.below(2) as usize;
                if both_up && self.rng.chance(300) {
                    let now = self.nodes[i].now(self.t);
                    if let Some(e) = self.nodes[i].engine.as_mut() {
                        let _ = e.recover(now);
                    }
                    self.note(format!("node{i}: operator recover"));
                    self.drain(i);
                }
            }
        }
    }

    fn schedule_stop(&mut self, i: usize, down: u32) {
        // Encoded as: crash in 3 s (after the STATE went out), restart `down` later.
        self.pending_stops.push((self.t + 3, i, down));
    }
}
