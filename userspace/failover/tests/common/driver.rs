//! The failover driver as the daemon runs it: engine actions applied to the durable tables,
//! transmits handed to the link, the expiry sweeper and the primary's reclaims.

use lease_store::LeaseState;
use xdhcpd_failover::{backup_share, Action, BindingStore, FailoverPersist, Role, ServerState};

use super::{addr, Sim, POOL, T0};

impl Sim {
    pub fn drain(&mut self, i: usize) {
        for _ in 0..10_000 {
            let Some(e) = self.nodes[i].engine.as_mut() else {
                return;
            };
            let Some(a) = e.poll_action() else {
                break;
            };
            self.on_action(i, a);
        }
        let Some(e) = self.nodes[i].engine.as_mut() else {
            return;
        };
        if let Some(bytes) = e.poll_transmit() {
            self.push_bytes(i, bytes);
        }
        // Actions produced while building the transmit (none today) would be picked up next time.
    }

    fn on_action(&mut self, i: usize, a: Action) {
        let now = self.nodes[i].now(self.t);
        match a {
            Action::StateChanged {
                from,
                own,
                partner,
                reason,
                ..
            } => {
                if xdhcpd_failover::store::is_takeover(from, own) {
                    // The daemon's driver: a takeover stops reconfiguration.
                    let t = self.t;
                    let node = &mut self.nodes[i];
                    let keep = node.deferred_nak;
                    if let Some(e) = node.engine.as_mut() {
                        let n = node
                            .sync
                            .stop_reconfiguring(e, now, t, &mut node.table, keep);
                        if !n.is_empty() {
                            self.note(format!(
                                "node{i}: takeover stopped {} reconfiguration(s)",
                                n.len()
                            ));
                        }
                    }
                }
                if from != own {
                    *self.cov.states.entry(own).or_default() += 1;
                    *self.cov.transitions.entry((from, own)).or_default() += 1;
                    self.note(format!(
                        "node{i}: {from} -> {own} (partner {partner:?}): {reason}"
                    ));
                }
            }
            Action::Persist(p) => {
                // Round-trip through the fixed byte layout, as the lease store would.
                let bytes = p.to_bytes();
                self.nodes[i].persist = FailoverPersist::from_bytes(&bytes).ok();
                assert_eq!(self.nodes[i].persist, Some(p), "persist round trip");
            }
            Action::PolicyChanged(pol) => self.nodes[i].cell.store(&pol),
            Action::ApplyBinding { id, binding } => {
                let node = &mut self.nodes[i];
                let r = node.sync.apply(&mut node.table, now, &binding).map(|_| ());
                if self.verbose {
                    let l = self.nodes[i].table.read(binding.addr);
                    eprintln!(
                        "[{}] node{i}: partner's {} {:?}: {:?} -> {:?}",
                        self.t - T0,
                        binding.addr,
                        binding.status,
                        r,
                        l.map(|l| (l.state, l.expiry.wrapping_sub(T0)))
                    );
                }
                if let Some(e) = self.nodes[i].engine.as_mut() {
                    e.binding_applied(now, id, r);
                }
            }
            Action::BindingAcked { sent, .. } => {
                let node = &mut self.nodes[i];
                let before = node.table.read(sent.addr).map(|l| l.state);
                node.sync.acked(&mut node.table, &sent);
                let after = node.table.read(sent.addr).map(|l| l.state);
                if before == Some(LeaseState::Backup) && after == Some(LeaseState::Free) {
                    self.cov.reclaims_acked += 1;
                }
            }
            Action::BindingRejected {
                sent,
                reason,
                message,
            } => {
                self.nodes[i].sync.refused(&sent, reason, now);
                if sent.status == xdhcpd_failover::BindingStatus::Free {
                    self.cov.reclaims_rejected += 1;
                }
                self.note(format!(
                    "node{i}: partner rejected {} ({reason:?}: {message})",
                    sent.addr
                ));
            }
            Action::SendBindings { all } => {
                let t = self.t;
                let node = &mut self.nodes[i];
                if let Some(e) = node.engine.as_mut() {
                    node.sync.send_bindings(e, now, t, &node.table, all);
                }
            }
            Action::PoolRequest { id } => {
                let granted = self.grant_share(i);
                if let Some(e) = self.nodes[i].engine.as_mut() {
                    e.pool_response(now, id, granted);
                }
            }
            Action::PoolGranted { .. } => {}
            Action::Close { reason, message } => {
                self.note(format!("node{i}: close ({reason:?}: {message})"));
                self.link.fin[i] = true;
                if self.link.q[i].is_empty() {
                    self.finish_close(i);
                }
            }
            Action::Log(m) => self.note(format!("node{i}: {m}")),
            Action::VersionMismatch { ours, partner } => {
                self.cov.version_warnings += 1;
                self.note(format!("node{i}: partner runs {partner}, we run {ours}"));
            }
        }
    }

    /// Primary: moves FREE addresses to the backup until it holds its share (50%), from the
    /// top of the range, through the shipped `grant_to_backup` (the daemon's balancer on a
    /// POOLREQ, and after a reload grew its table). Returns how many moved.
    pub fn grant_share(&mut self, i: usize) -> u32 {
        let now = self.nodes[i].now(self.t);
        let present = self.nodes[i].table.present();
        let free: Vec<usize> = (0..present)
            .filter(|&k| self.nodes[i].lease(k).state == LeaseState::Free)
            .collect();
        let backup = (0..present)
            .filter(|&k| self.nodes[i].lease(k).state == LeaseState::Backup)
            .count();
        let n = backup_share(free.len(), backup, 50);
        let t = self.t;
        let node = &mut self.nodes[i];
        let mut granted = 0;
        if let Some(e) = node.engine.as_mut() {
            for k in free.iter().rev().take(n) {
                if node
                    .sync
                    .grant_to_backup(e, now, t, &mut node.table, addr(*k))
                {
                    granted += 1;
                }
            }
        }
        granted
    }

    /// Node `i` reloads a configuration whose pools reach record `n` (the daemon: `grow`, then
    /// the failover driver's `follow_growth`): the new records join FREE, the node asks the
    /// partner for its unacknowledged updates (UPDREQ), and a primary grants the backup its
    /// share of them.
    pub fn reload_pool(&mut self, i: usize, n: usize) {
        self.nodes[i].table.grow(n);
        let now = self.nodes[i].now(self.t);
        let asked = self.nodes[i]
            .engine
            .as_mut()
            .is_some_and(|e| e.request_updates(now));
        self.note(format!(
            "node{i}: reload: pools reach record {n}{}",
            if asked { ", UPDREQ sent" } else { "" }
        ));
        if self.nodes[i].role == Role::Primary
            && self.nodes[i]
                .engine
                .as_ref()
                .is_some_and(|e| e.state() == ServerState::Normal && e.communications_ok())
        {
            let g = self.grant_share(i);
            self.note(format!(
                "node{i}: granted {g} new address(es) to the backup"
            ));
        }
        self.drain(i);
    }

    /// The daemon's expiry sweeper (lease-store `sweep_expired` at `now - expiry_grace`),
    /// then the driver's periodic scan for records the partner lacks.
    pub(super) fn sweep(&mut self) {
        let t = self.t;
        for i in 0..2 {
            if !self.nodes[i].alive() {
                continue;
            }
            let now = self.nodes[i].now(t);
            let cutoff = now.saturating_sub(self.nodes[i].sync.rules().expiry_grace);
            for k in 0..self.nodes[i].table.present() {
                let node = &mut self.nodes[i];
                let r = node.table.update(addr(k), |l| {
                    // A permanent (dynamic BOOTP) binding never ends (lease-store's sweep).
                    let go = matches!(l.state, LeaseState::Active | LeaseState::Offered)
                        && l.expiry <= cutoff
                        && !l.is_permanent();
                    if go {
                        l.state = LeaseState::Expired;
                    }
                    go
                });
                if self.verbose && r == Some((true, true)) {
                    eprintln!("[{}] node{i}: expire {}", t - T0, addr(k));
                }
            }
            let node = &mut self.nodes[i];
            if let Some(e) = node.engine.as_mut() {
                node.sync.scan_unacked(e, now, t, &node.table);
            }
            self.drain(i);
        }
    }

    /// Primary, NORMAL with communications OK: reclaim up to two random BACKUP addresses the
    /// way the daemon does (a FREE update; the record stays BACKUP until acknowledged).
    pub(super) fn reclaim_some(&mut self) {
        let t = self.t;
        let Some(i) = (0..2).find(|&i| self.nodes[i].role == Role::Primary) else {
            return;
        };
        let now = self.nodes[i].now(t);
        let ok = self.nodes[i]
            .engine
            .as_ref()
            .is_some_and(|e| e.state() == ServerState::Normal && e.communications_ok());
        if !ok {
            return;
        }
        let backups: Vec<usize> = (0..POOL)
            .filter(|&k| self.nodes[i].lease(k).state == LeaseState::Backup)
            .collect();
        for _ in 0..2 {
            if backups.is_empty() {
                break;
            }
            let k = backups[self.rng.below(backups.len() as u64) as usize];
            let node = &mut self.nodes[i];
            let sent = node
                .engine
                .as_mut()
                .is_some_and(|e| node.sync.reclaim(e, now, t, &node.table, addr(k)));
            if sent {
                self.note(format!("node{i}: reclaim {}", addr(k)));
                self.cov.reclaims_sent += 1;
            }
        }
        self.drain(i);
    }
}
