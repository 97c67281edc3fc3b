//! Keeping the partner's copy of our records in step: which bindings to send, and what a
//! partner's update, acknowledgement or refusal does to a record. The daemon's failover driver
//! and the simulation both run exactly this code over their own [`BindingStore`].

use std::collections::HashMap;
use std::net::Ipv4Addr;

use lease_store::{Lease, LeaseState, VarData, VarRef};

use super::record::{
    binding_change_time, binding_for_change, change_time, grant_to_backup, lease_to_binding,
    lease_to_binding_var, lease_to_local, stop_reconfiguring, unacked, worth_sending_all,
    write_ack, write_binding_var,
};
use crate::engine::FailoverEngine;
use crate::table::{reclaim_binding, resolve_update, UpdateDecision};
use crate::types::{Binding, RejectReason, Role, ServerState};

type Map<K, V> = HashMap<K, V, foldhash::fast::RandomState>;

/// Where failover's per-address records live: the daemon's memory-mapped lease table or the
/// simulation's in-memory model. A store only reads, writes and lists records; every decision
/// about what a record becomes is in this module.
pub trait BindingStore {
    /// A consistent copy of the record of `addr`; None when no pool of ours holds `addr`.
    fn read(&self, addr: Ipv4Addr) -> Option<Lease>;
    /// Runs `f` on the record of `addr` atomically (no other writer sees a half change) and
    /// keeps the result; returns `f`'s value and whether the record changed, or None when no
    /// pool of ours holds `addr`. A changed record must reach stable storage before the
    /// caller confirms it to the partner (the store notes it for the next flush).
    fn update<R>(&mut self, addr: Ipv4Addr, f: impl FnOnce(&mut Lease) -> R) -> Option<(R, bool)>;
    /// Calls `f` with a copy of every record.
    fn for_each(&self, f: impl FnMut(&Lease));

    /// The variable data (option 82 whole, host name, vendor class) of the record `l` (a copy
    /// this store gave out); none when the record's data changed since. The default: what
    /// the record holds inline (a store without a side area).
    fn var_of(&self, l: &Lease) -> VarData {
        l.var.inline_data()
    }

    /// [`update`](Self::update) with the record's variable data: `f` changes a copy of both,
    /// the store keeps them together. The default keeps only what fits in the record (a store
    /// without a side area: longer data are dropped, never cut).
    fn update_full<R>(
        &mut self,
        addr: Ipv4Addr,
        f: impl FnOnce(&mut Lease, &mut VarData) -> R,
    ) -> Option<(R, bool)> {
        self.update(addr, |l| {
            let mut v = l.var.inline_data();
            let r = f(l, &mut v);
            let vr = v.var_ref();
            l.var = if vr.is_side() { VarRef::EMPTY } else { vr };
            r
        })
    }
}

/// Whether a state change from `from` to `to` is a failover takeover: this server starts
/// serving the partner's clients and pool on its own (PARTNER-DOWN). The reconfigure spec's
/// "HA switchover" that stops a running reconfiguration.
pub fn is_takeover(from: ServerState, to: ServerState) -> bool {
    to == ServerState::PartnerDown && from != ServerState::PartnerDown
}

/// How a partner's update is judged against our record.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct StoreRules {
    /// Our role (the secondary yields in a conflict between two live clients).
    pub role: Role,
    /// A local lease counts as ended only this long after its end (clock offsets between
    /// the partners); the expiry sweeper and allocation use the same value.
    pub expiry_grace: u32,
}

/// Binding updates in flight to the partner and the versions it refused. `T` is the caller's
/// timestamp for "first queued" (the daemon: `Instant`, for the queue-to-ack latency figure;
/// the simulation: its clock); the rules never look at it.
#[derive(Debug)]
pub struct BindingSync<T> {
    rules: StoreRules,
    /// Address -> (first queued, change time of the newest version queued).
    queued: Map<Ipv4Addr, (T, u32)>,
    /// Versions the partner refused (draft-12 7.2.2: not re-sent until they change).
    rejected: Map<Ipv4Addr, u32>,
    /// Versions the partner refused with reject reason 1 (illegal IP address: in none of its
    /// pools). That is no verdict on the binding: the partner's configuration lacks a pool
    /// or range ours has (one side reloaded it before the other). They are sent again after
    /// `absent_wait` (doubling while refusals go on, up to [`ABSENT_WAIT_MAX`]), or at once
    /// when the partner asks for our updates (UPDREQ, which a partner sends after its
    /// reload added addresses).
    absent: Map<Ipv4Addr, u32>,
    /// When the refused-as-absent versions are sent again (None: none waiting).
    absent_retry_at: Option<u32>,
    absent_wait: u32,
    /// Addresses sent again after such a refusal: an acknowledgement of one shows the
    /// partner has the pool now (the wait starts from the least again).
    absent_retrying: Map<Ipv4Addr, ()>,
}

/// First wait before updates the partner refused as outside its pools are sent again.
pub const ABSENT_WAIT_MIN: u32 = 10;
/// Longest wait between two such retries.
pub const ABSENT_WAIT_MAX: u32 = 300;

impl<T: Copy> BindingSync<T> {
    /// An empty tracker applying `rules` (see [`Config::store_rules`](crate::Config::store_rules)).
    pub fn new(rules: StoreRules) -> Self {
        BindingSync {
            rules,
            queued: Map::default(),
            rejected: Map::default(),
            absent: Map::default(),
            absent_retry_at: None,
            absent_wait: ABSENT_WAIT_MIN,
            absent_retrying: Map::default(),
        }
    }

    /// The rules this tracker was built with.
    pub fn rules(&self) -> StoreRules {
        self.rules
    }

    /// Updates queued and not yet acknowledged.
    pub fn in_flight(&self) -> usize {
        self.queued.len()
    }

    /// Updates the partner refused as outside its pools, waiting to be sent again.
    pub fn absent_at_partner(&self) -> usize {
        self.absent.len()
    }

    fn queue(&mut self, engine: &mut FailoverEngine, now: u32, at: T, b: Binding, ct: u32) {
        self.queued.entry(b.addr).or_insert((at, 0)).1 = ct;
        engine.lease_changed(now, b);
    }

    /// A record changed on our side (a DHCP worker, the sweeper): queue its binding for the
    /// partner (lazy update). Returns whether anything was queued. The variable data are the
    /// record's inline ones ([`record_changed_var`](Self::record_changed_var) with the
    /// store's).
    pub fn record_changed(
        &mut self,
        engine: &mut FailoverEngine,
        now: u32,
        at: T,
        l: &Lease,
    ) -> bool {
        self.record_changed_var(engine, now, at, l, &l.var.inline_data())
    }

    /// [`record_changed`](Self::record_changed) with the record's variable data `v` (option
    /// 82 whole, host name, vendor class) read with it.
    pub fn record_changed_var(
        &mut self,
        engine: &mut FailoverEngine,
        now: u32,
        at: T,
        l: &Lease,
        v: &VarData,
    ) -> bool {
        let Some(b) = binding_for_change(l, v) else {
            return false;
        };
        self.rejected.remove(&b.addr);
        self.absent.remove(&b.addr);
        self.queue(engine, now, at, b, change_time(l));
        true
    }

    /// Queues every record the partner lacks that is not already queued or refused in this
    /// version (changes nobody reported: expirations, a full change channel). Returns how many.
    pub fn scan_unacked(
        &mut self,
        engine: &mut FailoverEngine,
        now: u32,
        at: T,
        store: &impl BindingStore,
    ) -> usize {
        if self.absent_retry_at.is_some_and(|t| now >= t) {
            // Try the partner again: it may have reloaded the pool meanwhile.
            self.absent_retrying.clear();
            self.absent_retrying
                .extend(self.absent.drain().map(|(a, _)| (a, ())));
            self.absent_retry_at = None;
        }
        let mut found = Vec::new();
        store.for_each(|l| {
            if !unacked(l) {
                return;
            }
            let ct = change_time(l);
            if self.queued.get(&l.addr).is_some_and(|q| q.1 >= ct)
                || self.rejected.get(&l.addr).is_some_and(|&r| r >= ct)
                || self.absent.get(&l.addr).is_some_and(|&r| r >= ct)
            {
                return;
            }
            if let Some(b) = lease_to_binding_var(l, &store.var_of(l)) {
                found.push((b, ct));
            }
        });
        let n = found.len();
        for (b, ct) in found {
            self.queue(engine, now, at, b, ct);
        }
        n
    }

    /// The partner asked for bindings (UPDREQ: those it lacks; UPDREQALL: all): queue them
    /// and tell the engine the dump is complete. Returns how many were queued.
    pub fn send_bindings(
        &mut self,
        engine: &mut FailoverEngine,
        now: u32,
        at: T,
        store: &impl BindingStore,
        all: bool,
    ) -> usize {
        // What the partner refused as outside its pools goes along (an unacknowledged
        // record is sent whatever it refused before).
        self.absent.clear();
        self.absent_retry_at = None;
        self.absent_wait = ABSENT_WAIT_MIN;
        let mut found = Vec::new();
        store.for_each(|l| {
            let wanted = if all {
                worth_sending_all(l)
            } else {
                unacked(l)
            };
            if wanted {
                if let Some(b) = lease_to_binding_var(l, &store.var_of(l)) {
                    found.push((b, change_time(l)));
                }
            }
        });
        let n = found.len();
        for (b, ct) in found {
            self.queued.entry(b.addr).or_insert((at, 0)).1 = ct;
            engine.queue_binding(b);
        }
        engine.bindings_queued(now);
        n
    }

    /// A partner's binding update (draft-12 7.1.3): accepted into the record or refused with
    /// the reason for its BNDACK. `Ok(true)`: the record changed, and must be durable before
    /// the acknowledgement leaves.
    pub fn apply(
        &mut self,
        store: &mut impl BindingStore,
        now: u32,
        b: &Binding,
    ) -> Result<bool, (RejectReason, String)> {
        let rules = self.rules;
        let r = store.update_full(b.addr, |r, v| {
            if r.state == LeaseState::Reserved {
                // Both partners have the same reservations; nothing to store.
                return Ok(());
            }
            match resolve_update(
                Some(&lease_to_local(r)),
                b,
                now,
                rules.expiry_grace,
                rules.role,
            ) {
                UpdateDecision::Accept(nb) => {
                    write_binding_var(r, v, &nb);
                    Ok(())
                }
                UpdateDecision::Reject(reason, m) => Err((reason, m.to_string())),
            }
        });
        match r {
            None => Err((
                RejectReason::IllegalIpAddress,
                format!("{} is not in any pool of this server", b.addr),
            )),
            Some((Ok(()), changed)) => {
                // The partner's newer binding replaced ours (the engine drops our queued one).
                self.queued.remove(&b.addr);
                Ok(changed)
            }
            Some((Err(e), _)) => Err(e),
        }
    }

    /// The partner acknowledged `sent`. Returns when the update was first queued if this
    /// settles the address (no newer version queued), for the latency figure.
    pub fn acked(&mut self, store: &mut impl BindingStore, sent: &Binding) -> Option<T> {
        store.update(sent.addr, |r| write_ack(r, sent))?;
        if !self.absent_retrying.is_empty() && self.absent_retrying.remove(&sent.addr).is_some() {
            // The partner has that address now: the next such refusal waits the least again.
            self.absent_wait = ABSENT_WAIT_MIN;
        }
        let sent_ct = binding_change_time(sent);
        match self.queued.get(&sent.addr) {
            Some(&(at, ct)) if ct <= sent_ct => {
                self.queued.remove(&sent.addr);
                Some(at)
            }
            _ => None,
        }
    }

    /// The partner refused `sent` with `reason` at `now`: not sent again until the record
    /// changes, except a refusal because the address is in none of the partner's pools
    /// ([`RejectReason::IllegalIpAddress`]), which is sent again later (see `absent`).
    /// Returns true for the first refusal of the latter kind since the last retry (the
    /// caller logs that one, and counts the others).
    pub fn refused(&mut self, sent: &Binding, reason: RejectReason, now: u32) -> bool {
        self.queued.remove(&sent.addr);
        let ct = binding_change_time(sent);
        if reason != RejectReason::IllegalIpAddress {
            self.rejected.insert(sent.addr, ct);
            return false;
        }
        self.absent_retrying.remove(&sent.addr);
        self.absent.insert(sent.addr, ct);
        if self.absent_retry_at.is_some() {
            return false;
        }
        self.absent_retry_at = Some(now.saturating_add(self.absent_wait));
        self.absent_wait = self.absent_wait.saturating_mul(2).min(ABSENT_WAIT_MAX);
        true
    }

    /// When the updates refused as outside the partner's pools are sent again (None: none
    /// waiting).
    pub fn absent_retry_at(&self) -> Option<u32> {
        self.absent_retry_at
    }

    /// Primary: gives the FREE address `addr` to the backup (BACKUP at once here, so we stop
    /// using it before the partner may) and queues the BACKUP binding. Returns whether it moved
    /// (the record changed: flush it).
    pub fn grant_to_backup(
        &mut self,
        engine: &mut FailoverEngine,
        now: u32,
        at: T,
        store: &mut impl BindingStore,
        addr: Ipv4Addr,
    ) -> bool {
        let Some((true, _)) = store.update(addr, |r| grant_to_backup(r, now)) else {
            return false;
        };
        if let Some(l) = store.read(addr) {
            if let Some(b) = lease_to_binding(&l) {
                self.queue(engine, now, at, b, change_time(&l));
            }
        }
        true
    }

    /// Primary: asks for the BACKUP address `addr` back with a FREE update. The record stays
    /// BACKUP until the partner acknowledges (then [`Self::acked`] makes it FREE); a
    /// secondary that leased it meanwhile refuses, and its binding reaches us as usual.
    pub fn reclaim(
        &mut self,
        engine: &mut FailoverEngine,
        now: u32,
        at: T,
        store: &impl BindingStore,
        addr: Ipv4Addr,
    ) -> bool {
        let Some(l) = store.read(addr) else {
            return false;
        };
        if l.state != LeaseState::Backup {
            return false;
        }
        let b = reclaim_binding(&lease_to_local(&l), now);
        let ct = b.start;
        self.queue(engine, now, at, b, ct);
        true
    }

    /// Failover takeover ([`is_takeover`]): reconfiguration stops. Every reconfiguring flag
    /// is cleared unless `deferred_nak` keeps them (then the client is NAKed at its next
    /// renewal, by whichever server it asks); each cleared record is queued for the partner
    /// (sent when it is back). Returns the addresses whose record changed (the caller
    /// flushes them and tells its other listeners).
    pub fn stop_reconfiguring(
        &mut self,
        engine: &mut FailoverEngine,
        now: u32,
        at: T,
        store: &mut impl BindingStore,
        deferred_nak: bool,
    ) -> Vec<Ipv4Addr> {
        if deferred_nak {
            return Vec::new();
        }
        let mut flagged = Vec::new();
        store.for_each(|l| {
            if l.flags & lease_store::FLAG_RECONFIGURING != 0 {
                flagged.push(l.addr);
            }
        });
        let mut changed = Vec::new();
        for addr in flagged {
            if let Some((true, _)) = store.update(addr, |l| stop_reconfiguring(l, false)) {
                if let Some(l) = store.read(addr) {
                    let v = store.var_of(&l);
                    self.record_changed_var(engine, now, at, &l, &v);
                }
                changed.push(addr);
            }
        }
        changed
    }
}
