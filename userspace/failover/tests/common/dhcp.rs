//! The simulated DHCP clients and the DHCP server model that obeys the engine's policy.

use lease_store::{LeaseState, Owner, EXPIRY_PERMANENT, FLAG_BOOTP};
use xdhcpd_failover::{admit_with_relay_health, Admission, BindingStore, Named, RequestKind};

use super::{addr, client_key, Sim, GRACE, POOL};

#[derive(Clone, Debug)]
pub struct Client {
    pub key: Vec<u8>,
    /// (address index, true end, granting node, true renew time, true rebind time)
    pub lease: Option<(usize, u32, usize, u32, u32)>,
    pub next_at: u32,
    /// True time the client began asking for an address (its `secs` counts from there); 0 =
    /// not asking.
    pub waiting_since: u32,
    /// A BOOTP client: one BOOTREQUEST, a permanent binding, never renewed or released.
    pub bootp: bool,
}

impl Sim {
    fn reachable(&self, i: usize) -> bool {
        self.nodes[i].alive() && self.nodes[i].isolated_until <= self.t && !self.nodes[i].needs_sync
    }

    /// Reachable for a client's broadcast: through the relay when there is one.
    fn reachable_by_client(&self, i: usize) -> bool {
        self.reachable(i) && self.relay.as_ref().is_none_or(|r| !r.cut[i])
    }

    fn find_record(&self, i: usize, key: &[u8]) -> Option<usize> {
        let key = client_key(key);
        (0..POOL).find(|&k| {
            let l = self.nodes[i].lease(k);
            l.state == LeaseState::Active && l.client == key
        })
    }

    /// Grant or extend a lease on node `i`; returns lease seconds. Writes the record as the
    /// DHCP engine does (`bind_granted`), then hands it to the failover driver.
    fn grant(&mut self, i: usize, k: usize, key: &[u8], now: u32) -> u32 {
        let pol = self.nodes[i].cell.load();
        let ck = client_key(key);
        let l = *self.nodes[i].lease(k);
        let same = l.state == LeaseState::Active && l.client == ck;
        let committed = l.acked_potential_expiry;
        let g = pol.lease_time_allowed(now, self.p.desired, committed);
        // Invariant 3: the MCLT rule, checked at every grant.
        assert!(
            g.lease_expiry <= now.max(committed) + pol.mclt,
            "MCLT rule violated on node{i}: lease end {} > max({now},{committed})+{}",
            g.lease_expiry,
            pol.mclt
        );
        assert!(g.lease_secs <= self.p.desired);
        if !same {
            assert!(g.lease_secs <= pol.mclt, "first lease longer than MCLT");
        }
        if self.verbose {
            let m = format!(
                "node{i}: grant {} to {:?} for {}s (committed {}, pot {})",
                addr(k),
                key,
                g.lease_secs,
                committed,
                g.potential_expiry
            );
            self.note(m);
        }
        let t = self.t;
        let node = &mut self.nodes[i];
        let (_, _) = node
            .table
            .update(addr(k), |l| {
                match l.state {
                    LeaseState::Backup => l.owner = Owner::Backup,
                    LeaseState::Free => l.owner = Owner::Primary,
                    _ => {}
                }
                if !same {
                    l.set_relay_agent_info(&[1, 4, b'p', b'o', b'r', b't']);
                }
                l.state = LeaseState::Active;
                l.client = ck;
                l.htype = 1;
                l.hlen = key.len() as u8;
                l.chaddr = [0; 16];
                l.chaddr[..key.len()].copy_from_slice(key);
                l.expiry = g.lease_expiry;
                l.start = now;
                l.cltt = now;
                l.lease_time = g.lease_secs;
                l.potential_expiry = g.potential_expiry;
            })
            .expect("simulated address");
        let l = node.table.0[k];
        if let Some(e) = node.engine.as_mut() {
            node.sync.record_changed(e, now, t, &l);
        }
        self.drain(i);
        g.lease_secs
    }

    /// A BOOTP client's one exchange (`xdhcpd_dhcpv4` `engine/bootp.rs`): admitted as
    /// `RequestKind::Bootp`, its binding if the server has one, else the lowest address of the
    /// server's own side (`may_allocate_own_only`, every state), bound for ever.
    fn bootp(&mut self, c: usize) {
        let key = self.clients[c].key.clone();
        let first = self.rng.below(2) as usize;
        for i in [first, 1 - first] {
            if !self.reachable_by_client(i) {
                continue;
            }
            let pol = self.nodes[i].cell.load();
            let now = self.nodes[i].now(self.t);
            if let Admission::Drop(_) = pol.admit(RequestKind::Bootp, &key, 0) {
                continue;
            }
            let k = match self.find_record(i, &key) {
                Some(k) if self.nodes[i].lease(k).is_permanent() => Some(k),
                _ => (0..self.nodes[i].table.present())
                    .find(|&k| pol.may_allocate_own_only(now, self.nodes[i].lease(k))),
            };
            let Some(k) = k else {
                continue;
            };
            self.grant_permanent(i, k, &key, now);
            self.cov.bootp_grants += 1;
            self.clients[c].lease = Some((k, u32::MAX, i, u32::MAX, u32::MAX));
            self.clients[c].next_at = u32::MAX;
            return;
        }
        self.clients[c].next_at = self.t + self.rng.range(5, 30);
    }

    /// The DHCP engine's `bind_bootp`: ACTIVE for ever (lease end and potential end
    /// 0xffffffff, `FLAG_BOOTP`), no MCLT cap; then to the failover driver.
    fn grant_permanent(&mut self, i: usize, k: usize, key: &[u8], now: u32) {
        if self.verbose {
            let m = format!("node{i}: BOOTP {} to {:?} for ever", addr(k), key);
            self.note(m);
        }
        let ck = client_key(key);
        let t = self.t;
        let node = &mut self.nodes[i];
        node.table
            .update(addr(k), |l| {
                match l.state {
                    LeaseState::Backup => l.owner = Owner::Backup,
                    LeaseState::Free => l.owner = Owner::Primary,
                    _ => {}
                }
                l.state = LeaseState::Active;
                l.client = ck;
                l.htype = 1;
                l.hlen = key.len() as u8;
                l.chaddr = [0; 16];
                l.chaddr[..key.len()].copy_from_slice(key);
                l.expiry = EXPIRY_PERMANENT;
                l.start = now;
                l.cltt = now;
                l.lease_time = EXPIRY_PERMANENT;
                l.potential_expiry = EXPIRY_PERMANENT;
                l.flags |= FLAG_BOOTP;
            })
            .expect("simulated address");
        let l = node.table.0[k];
        if let Some(e) = node.engine.as_mut() {
            node.sync.record_changed(e, now, t, &l);
        }
        self.drain(i);
    }

    fn dora(&mut self, c: usize) {
        if self.clients[c].bootp {
            return self.bootp(c);
        }
        let key = self.clients[c].key.clone();
        if self.clients[c].waiting_since == 0 {
            self.clients[c].waiting_since = self.t;
        }
        let secs = (self.t - self.clients[c].waiting_since).min(u16::MAX as u32) as u16;
        let first = self.rng.below(2) as usize;
        for i in [first, 1 - first] {
            if !self.reachable_by_client(i) {
                continue;
            }
            let pol = self.nodes[i].cell.load();
            let now = self.nodes[i].now(self.t);
            // Through a relay: the DHCP engine's rule with the relay health check.
            let (adm, verdict) = match &self.relay {
                Some(r) => admit_with_relay_health(
                    &pol,
                    Some(&r.rhc[i]),
                    RequestKind::Discover,
                    &key,
                    secs,
                    r.giaddr,
                    Named::Nobody,
                    now,
                ),
                None => (pol.admit(RequestKind::Discover, &key, 0), None),
            };
            if let Admission::Drop(_) = adm {
                self.cov.dropped_discovers += 1;
                continue;
            }
            let by_check = verdict == Some(xdhcpd_failover::RhcVerdict::Serve);
            if let Some(r) = self.relay.as_mut() {
                r.served[i] += u64::from(by_check);
            }
            let k = match self.find_record(i, &key) {
                Some(k) if self.nodes[i].lease(k).expiry > now => Some(k),
                _ => {
                    // Lowest address first, by the DHCP engine's failover rule (in a pool
                    // with dynamic BOOTP: own side only).
                    let bootp_pool = self.p.dynamic_bootp;
                    (0..self.nodes[i].table.present()).find(|&k| {
                        let l = self.nodes[i].lease(k);
                        if bootp_pool {
                            pol.may_allocate_own_only(now, l)
                        } else {
                            pol.may_allocate_lease(now, l)
                        }
                    })
                }
            };
            let Some(k) = k else {
                continue;
            };
            // The client's REQUEST names node i: through the relay, both servers see it.
            if let Some(r) = &self.relay {
                for (j, named) in [(i, Named::Us), (1 - i, Named::Other)] {
                    if !self.reachable_by_client(j) {
                        continue;
                    }
                    let pj = self.nodes[j].cell.load();
                    let nj = self.nodes[j].now(self.t);
                    let (a, _) = admit_with_relay_health(
                        &pj,
                        Some(&r.rhc[j]),
                        RequestKind::RequestSelecting,
                        &key,
                        secs,
                        r.giaddr,
                        named,
                        nj,
                    );
                    if j == i {
                        assert!(
                            !matches!(a, Admission::Drop(_)),
                            "node{i} offered to {key:?} but would not confirm the offer: {a:?}"
                        );
                    }
                }
            }
            let secs = self.grant(i, k, &key, now);
            self.cov.grants += 1;
            let t = self.t;
            if let Some(r) = self.relay.as_mut() {
                r.granted_for_partner[i] += u64::from(by_check);
                r.grants.push((t, i, c));
            }
            self.clients[c].waiting_since = 0;
            self.clients[c].lease = Some((k, t + secs, i, t + secs / 2, t + secs * 7 / 8));
            self.clients[c].next_at = t + secs / 2;
            return;
        }
        self.clients[c].next_at = if self.relay.is_some() {
            // A client retransmits within seconds (RFC 2131 4.1: 4 s, then backing off).
            self.t + self.rng.range(2, 6)
        } else {
            self.t + self.rng.range(5, 30)
        };
    }

    fn renew(&mut self, c: usize, rebind: bool) {
        let Some((k, end, via, _, t2)) = self.clients[c].lease else {
            return;
        };
        let key = self.clients[c].key.clone();
        let order: Vec<usize> = if rebind {
            let f = self.rng.below(2) as usize;
            vec![f, 1 - f]
        } else {
            vec![via]
        };
        for i in order {
            if !self.reachable_by_client(i) {
                continue;
            }
            let pol = self.nodes[i].cell.load();
            let kind = if rebind {
                RequestKind::Rebind
            } else {
                RequestKind::Renew
            };
            if let Admission::Drop(_) = pol.admit(kind, &key, 0) {
                continue;
            }
            let now = self.nodes[i].now(self.t);
            let l = self.nodes[i].lease(k);
            if l.state == LeaseState::Active
                && l.client == client_key(&key)
                && l.expiry + GRACE > now
            {
                let secs = self.grant(i, k, &key, now);
                self.cov.renewals += 1;
                let t = self.t;
                self.clients[c].lease = Some((k, t + secs, i, t + secs / 2, t + secs * 7 / 8));
                self.clients[c].next_at = t + secs / 2;
                return;
            }
            // NAK: the server knows nothing (or something else) about this lease.
            self.clients[c].lease = None;
            self.clients[c].next_at = self.t + 1;
            return;
        }
        // No answer: try again later (rebind at T2), give up at the end.
        let t = self.t;
        self.clients[c].next_at = if t < t2 {
            t2
        } else if t + 10 < end {
            t + 10
        } else {
            end
        };
    }

    fn release(&mut self, c: usize) {
        let Some((k, _, via, _, _)) = self.clients[c].lease.take() else {
            return;
        };
        self.clients[c].next_at = self.t + self.rng.range(30, 200);
        let key = self.clients[c].key.clone();
        if !self.reachable_by_client(via) {
            return; // lost release; the lease simply runs out
        }
        let pol = self.nodes[via].cell.load();
        if let Admission::Drop(_) = pol.admit(RequestKind::Release, &key, 0) {
            return;
        }
        let now = self.nodes[via].now(self.t);
        let t = self.t;
        let ck = client_key(&key);
        let node = &mut self.nodes[via];
        // The DHCP engine's RELEASE (the shared record rule).
        let released = node
            .table
            .update(addr(k), |l| xdhcpd_failover::store::release(l, &ck, now));
        if released == Some((true, true)) {
            let l = node.table.0[k];
            if let Some(e) = node.engine.as_mut() {
                node.sync.record_changed(e, now, t, &l);
            }
            self.drain(via);
        }
    }

    pub(super) fn client_step(&mut self, c: usize) {
        let t = self.t;
        match self.clients[c].lease {
            None => self.dora(c),
            Some((_, end, _, t1, t2)) => {
                if t >= end {
                    self.clients[c].lease = None;
                    self.clients[c].next_at = t + self.rng.range(1, 60);
                } else if t >= t1 && t < t2 && self.rng.chance(80) {
                    self.release(c);
                } else if t >= t2 {
                    self.renew(c, true);
                } else if t >= t1 {
                    self.renew(c, false);
                } else {
                    self.clients[c].next_at = t1;
                }
            }
        }
    }
}
