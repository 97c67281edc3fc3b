//! Address selection (RFC 2131 §4.3.1): the client's binding, the requested
//! address, else a free one from the subnet's pools.

use std::net::Ipv4Addr;

use lease_store::{Alloc, ClientKey, LeaseState, Owner};
use xdhcpd_failover::Role;

use crate::wire::{Message, Summary};

use super::binding::{bind_granted, may_take};
use super::Engine;

impl Engine {
    /// RFC 2131 §4.3.1 order: the client's current or previous binding, the
    /// requested address if free, else a new address from the pools.
    #[allow(clippy::too_many_arguments)]
    pub(super) fn choose_address(
        &mut self,
        now: u32,
        msg: &Message<'_>,
        sum: &Summary<'_>,
        key: &ClientKey,
        subnet_index: usize,
        desired: u32,
        hold: u32,
    ) -> Option<(Ipv4Addr, u32)> {
        let table = self.shared.table.clone();
        if let Some((slot, _)) = table.find_client(key) {
            if self.subnet_of_slot(slot) == Some(subnet_index) {
                if let Some(g) = self.take(slot, key, msg, LeaseState::Offered, now, desired, hold)
                {
                    return Some((table.addr_of(slot), g));
                }
            }
        }
        if let Some(ip) = sum.requested_ip {
            if let Some(slot) = table.slot_of(ip) {
                if self.subnet_of_slot(slot) == Some(subnet_index) {
                    if let Some(g) =
                        self.take(slot, key, msg, LeaseState::Offered, now, desired, hold)
                    {
                        return Some((ip, g));
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
        let relay = self.relay_info;
        let n = self.shared.config.subnets[subnet_index].pools.len();
        for owner in [Some(own), partner_down.then_some(other)]
            .into_iter()
            .flatten()
        {
            for i in 0..n {
                let pool_id = self.shared.config.subnets[subnet_index].pools[i].id;
                // `allocate_if` re-checks freedom under the record lock and
                // binds there, so no other worker can take it in between.
                // A refused record (failover rules) goes back to its list;
                // bounded retries keep the per-packet cost bounded.
                for _ in 0..16 {
                    match table.allocate_if(pool_id, self.shard, now, owner, |l| {
                        // A reserved address back on a free list after its client's
                        // binding ended: refused (it returns to the list's tail).
                        if !may_take(l, key, now, pol.as_ref())
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
                            &relay,
                        ))
                    }) {
                        Alloc::Taken(slot, g) => {
                            // A free record, bound just now to this message's chaddr.
                            self.hw_is_bindings = true;
                            self.record_volatile_change(slot);
                            return Some((table.addr_of(slot), g));
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
