//! Address selection (RFC 2131 §4.3.1): the client's binding, the requested
//! address, else a free one from the subnet's pools.

use std::net::Ipv4Addr;

use lease_store::{Alloc, ClientKey, LeaseState, Owner};
use xdhcpd_failover::Role;

use xdhcpd_config::Subnet;

use crate::wire::{Message, Summary};

use super::binding::{bind_granted, may_take};
use super::pools::{denies_unknown, pool_permits, times_for};
use super::{lease_time, Engine, Silence};

impl Engine {
    /// Whether an unregistered client is refused outright on `subnet`'s link
    /// (`deny-unknown` on its shared network).
    #[inline]
    pub(super) fn refuses_unknown(&self, subnet: &Subnet) -> bool {
        !self.known && self.shared.scopes.active && denies_unknown(&self.shared.config, subnet)
    }

    /// The lease to grant on pool `pool` (None: outside the pools) of subnet `subnet`:
    /// the client's wish clamped to the times of the client's classes, the pool and the
    /// subnet (in that precedence), else their default.
    #[inline]
    pub(super) fn desired_for(
        &self,
        pool: Option<u32>,
        subnet: usize,
        requested: Option<u32>,
    ) -> u32 {
        let cfg = &self.shared.config;
        let Some(s) = cfg.subnets.get(subnet) else {
            return lease_time(&cfg.lease, requested);
        };
        if !self.shared.scopes.active {
            return lease_time(&s.times, requested);
        }
        lease_time(
            &times_for(cfg, &self.shared.scopes, self.classes, pool, s),
            requested,
        )
    }

    /// Why the client may not draw from pool `pool` (None: it may).
    #[inline]
    pub(super) fn pool_refusal(&self, pool: u32) -> Option<Silence> {
        let sh = &self.shared;
        if !sh.scopes.active || pool_permits(&sh.config, &sh.scopes, pool, self.classes, self.known)
        {
            return None;
        }
        if !self.known && pool_permits(&sh.config, &sh.scopes, pool, self.classes, true) {
            Some(Silence::Unregistered)
        } else {
            Some(Silence::NoPoolForClass)
        }
    }

    /// The subnet of pool `pool` when the client may draw from it on the link of `subnet`.
    #[inline]
    pub(super) fn usable_pool(&self, pool: u32, subnet: usize) -> Option<usize> {
        let (si, _) = self.shared.scopes.pool_loc(pool)?;
        (self.shared.scopes.same_scope(si, subnet) && self.pool_refusal(pool).is_none())
            .then_some(si)
    }

    /// After a DISCOVER found no address: the reason when no pool of the link admits the
    /// client at all (None: the admitting pools are full).
    pub(super) fn why_no_pool(&self, subnet: usize) -> Option<Silence> {
        if !self.shared.scopes.active {
            return None;
        }
        let mut why = Some(Silence::NoPoolForClass);
        for &p in self.shared.scopes.pools_of_scope(subnet) {
            match self.pool_refusal(p) {
                None => return None,
                Some(Silence::Unregistered) => why = Some(Silence::Unregistered),
                Some(_) => {}
            }
        }
        why
    }

    /// RFC 2131 §4.3.1 order: the client's current or previous binding, the
    /// requested address if free, else a new address from the pools of the client's link
    /// (its shared network) that admit its classes. Returns the address, the lease and
    /// the address's subnet; notes the address's pool for the reply's settings.
    pub(super) fn choose_address(
        &mut self,
        now: u32,
        msg: &Message<'_>,
        sum: &Summary<'_>,
        key: &ClientKey,
        subnet_index: usize,
        hold: u32,
    ) -> Option<(Ipv4Addr, u32, usize)> {
        let table = self.shared.table.clone();
        if let Some((slot, _)) = table.find_client(key) {
            let pool = table.pool_of_slot(slot);
            if let Some(si) = self.usable_pool(pool, subnet_index) {
                let desired = self.desired_for(Some(pool), si, sum.lease_time);
                if let Some(g) =
                    self.take(slot, key, msg, sum, LeaseState::Offered, now, desired, hold)
                {
                    self.reply_pool = Some(pool);
                    return Some((table.addr_of(slot), g, si));
                }
            }
        }
        if let Some(ip) = sum.requested_ip {
            if let Some(slot) = table.slot_of(ip) {
                let pool = table.pool_of_slot(slot);
                if let Some(si) = self.usable_pool(pool, subnet_index) {
                    let desired = self.desired_for(Some(pool), si, sum.lease_time);
                    if let Some(g) =
                        self.take(slot, key, msg, sum, LeaseState::Offered, now, desired, hold)
                    {
                        self.reply_pool = Some(pool);
                        return Some((ip, g, si));
                    }
                }
            }
        }
        // Which free lists this server may draw from: its own (primary FREE,
        // secondary BACKUP), and in PARTNER-DOWN also the partner's.
        let (own, other) = match self.pol.map(|p| (p.role, p.state)) {
            None | Some((Role::Primary, _)) => (Owner::Primary, Owner::Backup),
            Some((Role::Secondary, _)) => (Owner::Backup, Owner::Primary),
        };
        let partner_down = self
            .pol
            .is_some_and(|p| p.state == xdhcpd_failover::ServerState::PartnerDown);
        let pol = self.pol;
        let var = self.var_for(sum, LeaseState::Offered);
        let shared = self.shared.clone();
        let scope = shared.scopes.pools_of_scope(subnet_index);
        for owner in [Some(own), partner_down.then_some(other)]
            .into_iter()
            .flatten()
        {
            for &pool_id in scope {
                let Some(si) = self.usable_pool(pool_id, subnet_index) else {
                    continue;
                };
                // A pool with dynamic BOOTP: the partner's addresses are never ours, not even
                // in PARTNER-DOWN (draft-12 5.14).
                let own_only = self.own_only_pool(pool_id);
                if own_only && owner != own {
                    continue;
                }
                let desired = self.desired_for(Some(pool_id), si, sum.lease_time);
                // `allocate_if` re-checks freedom under the record lock and
                // binds there, so no other worker can take it in between.
                // A refused record (failover rules) goes back to its list;
                // bounded retries keep the per-packet cost bounded.
                for _ in 0..16 {
                    match table.allocate_if_var(pool_id, self.shard, now, owner, |l, ve| {
                        // A reserved address back on a free list after its client's
                        // binding ended: refused (it returns to the list's tail).
                        if !may_take(l, key, now, pol.as_ref(), own_only)
                            || self.shared.reserved_for_other(l.addr, key)
                            || self.registered_for_other(l.addr, key)
                        {
                            return None;
                        }
                        Some(bind_granted(
                            l,
                            key,
                            msg,
                            LeaseState::Offered,
                            now,
                            desired,
                            hold,
                            pol.as_ref(),
                            ve,
                            var,
                        ))
                    }) {
                        Alloc::Taken(slot, g) => {
                            // A free record, bound just now to this message's chaddr.
                            self.hw_is_bindings = true;
                            self.record_volatile_change(slot);
                            self.reply_pool = Some(pool_id);
                            return Some((table.addr_of(slot), g, si));
                        }
                        Alloc::Refused => continue,
                        Alloc::Empty => break,
                    }
                }
            }
        }
        None
    }
}
