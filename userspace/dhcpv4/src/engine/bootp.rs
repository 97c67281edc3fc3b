//! Dynamic BOOTP (RFC 951, RFC 1542, RFC 1534; RFC 2131 §4.1 "permanent" allocation), only in
//! subnets with `dynamic-bootp = true` (off by default: BOOTP refused and counted).
//!
//! A BOOTREQUEST (no option 53) gets a BOOTREPLY with an address bound for ever: ACTIVE,
//! lease end 0xffffffff, `FLAG_BOOTP` on the record (`binding::bind_bootp`), which the sweep
//! never expires. Order: the client's reservation or registered fixed address, its current
//! binding, else a free address of its link's pools in subnets with dynamic BOOTP.
//!
//! Failover (draft-12 5.14): in a pool with dynamic BOOTP neither partner ever uses an
//! address that was the other's to allocate, in any state (PARTNER-DOWN after MCLT
//! included): `may_take`'s `own_only`, the failover crate's `may_allocate_own_only`. No MCLT
//! cap on the lease (a BOOTP client never comes back to be shortened); the binding update
//! carries the lease end 0xffffffff and the B bit of IP-flags.
//!
//! The reply follows the DHCP rules (relay by giaddr, broadcast flag, RFC 2131 §4.1
//! delivery, at least 300 bytes); options (RFC 1497 vendor extensions) only when the request
//! carried the magic cookie, and never DHCP's own (53, 54, 51, 58, 59).

use std::net::Ipv4Addr;

use lease_store::{Alloc, ClientKey, LeaseState, Owner, EXPIRY_PERMANENT};
use xdhcpd_failover::Role;

use crate::delivery::Delivery;
use crate::stats::EngineStats;
use crate::wire::{opt, Message, MessageType, ReplyWriter, Summary};

use super::binding::{bind_bootp, may_take};
use super::pools::Layers;
use super::reply::{put_configured, Sent};
use super::{Decision, Engine, RxMeta, Silence, DEFAULT_MAX_PAYLOAD};

impl Engine {
    /// A BOOTREQUEST (no option 53). `plain`: it carried no magic cookie.
    #[allow(clippy::too_many_arguments)]
    pub(super) fn bootp(
        &mut self,
        now: u32,
        meta: &RxMeta,
        msg: &Message<'_>,
        sum: &Summary<'_>,
        key: &ClientKey,
        plain: bool,
        out: &mut [u8],
    ) -> Decision {
        let st = self.stats.clone();
        let Some(subnet) = self.select_subnet(meta, msg, sum) else {
            return self.silent(&st.no_subnet, Silence::NoSubnet);
        };
        if !subnet.dynamic_bootp {
            // Refused as before the key existed.
            EngineStats::inc(&st.bootp_refused);
            return self.silent(&st.not_request, Silence::NotRequest);
        }
        let subnet_index = subnet.index;
        if self.shared.table.storage_failed() {
            return self.silent(&st.storage_failed_dropped, Silence::StorageFailed);
        }
        if self.refuses_unknown(subnet) {
            return self.silent(&st.unknown_refused, Silence::Unregistered);
        }
        let fixed = self.registered_fixed(subnet_index);
        let reserved = match self.shared.reservations.get(key) {
            Some(&(si, ip)) if self.shared.scopes.same_scope(si, subnet_index) => Some((ip, si)),
            _ => None,
        };
        // The host's own address first (registration over configuration, as for DHCP); one
        // held by another client falls back to the pools.
        let mut chosen = None;
        if let Some((ip, si)) = fixed.or(reserved) {
            chosen = self.bootp_fixed(now, msg, sum, key, ip, si);
            if chosen.is_none() && fixed.is_some() {
                EngineStats::inc(&st.registration_fixed_busy);
            }
        }
        if chosen.is_none() {
            // Lease caps: a new address for this client counts on its circuit.
            if fixed.is_none()
                && reserved.is_none()
                && self
                    .cap_admit(subnet_index, key, sum.relay_agent_info.unwrap_or_default())
                    .is_some()
            {
                return Decision::Silent(Silence::LeaseCap);
            }
            chosen = self.bootp_address(now, msg, sum, key, subnet_index);
        }
        let Some((addr, reply_subnet)) = chosen else {
            return match self.why_no_pool(subnet_index) {
                Some(Silence::Unregistered) => {
                    self.silent(&st.unknown_refused, Silence::Unregistered)
                }
                Some(why) => self.silent(&st.class_refused, why),
                None => self.silent(&st.pool_exhausted, Silence::PoolExhausted),
            };
        };
        self.bootp_reply(msg, sum, reply_subnet, addr, plain, out)
    }

    /// The host's reserved or registered address `ip` (subnet `si`): bound permanently when
    /// it lies in a pool, as is when it lies outside (no record, like DHCP's reservations).
    fn bootp_fixed(
        &mut self,
        now: u32,
        msg: &Message<'_>,
        sum: &Summary<'_>,
        key: &ClientKey,
        ip: Ipv4Addr,
        si: usize,
    ) -> Option<(Ipv4Addr, usize)> {
        let table = self.shared.table.clone();
        match table.slot_of(ip) {
            None => Some((ip, si)),
            Some(slot) => {
                let pool = table.pool_of_slot(slot);
                self.take(slot, key, msg, sum, LeaseState::Active, now, 0, 0)?;
                self.reply_pool = Some(pool);
                Some((ip, si))
            }
        }
    }

    /// The client's current binding in a pool with dynamic BOOTP, else a free address of
    /// its own side (failover) from those pools of its link, bound permanently.
    fn bootp_address(
        &mut self,
        now: u32,
        msg: &Message<'_>,
        sum: &Summary<'_>,
        key: &ClientKey,
        subnet_index: usize,
    ) -> Option<(Ipv4Addr, usize)> {
        let table = self.shared.table.clone();
        let shared = self.shared.clone();
        let bootp_pool = |pool: u32| {
            shared
                .scopes
                .pool_loc(pool)
                .and_then(|(si, _)| shared.config.subnets.get(si))
                .is_some_and(|s| s.dynamic_bootp)
        };
        if let Some((slot, _)) = table.find_client(key) {
            let pool = table.pool_of_slot(slot);
            if let Some(si) = self
                .usable_pool(pool, subnet_index)
                .filter(|_| bootp_pool(pool))
            {
                if self
                    .take(slot, key, msg, sum, LeaseState::Active, now, 0, 0)
                    .is_some()
                {
                    self.reply_pool = Some(pool);
                    return Some((table.addr_of(slot), si));
                }
            }
        }
        // Our own side only, in every failover state (draft-12 5.14).
        let own = match self.pol.map(|p| p.role) {
            None | Some(Role::Primary) => Owner::Primary,
            Some(Role::Secondary) => Owner::Backup,
        };
        let pol = self.pol;
        let var = self.var_for(sum, LeaseState::Active);
        for &pool_id in shared.scopes.pools_of_scope(subnet_index) {
            if !bootp_pool(pool_id) {
                continue;
            }
            let Some(si) = self.usable_pool(pool_id, subnet_index) else {
                continue;
            };
            let own_only = pol.is_some();
            for _ in 0..16 {
                match table.allocate_if_var(pool_id, self.shard, now, own, |l, ve| {
                    if !may_take(l, key, now, pol.as_ref(), own_only)
                        || self.shared.reserved_for_other(l.addr, key)
                        || self.registered_for_other(l.addr, key)
                    {
                        return None;
                    }
                    bind_bootp(l, key, msg, now, ve, var);
                    Some(EXPIRY_PERMANENT)
                }) {
                    Alloc::Taken(slot, _) => {
                        self.hw_is_bindings = true;
                        self.record_change(slot);
                        self.reply_pool = Some(pool_id);
                        return Some((table.addr_of(slot), si));
                    }
                    Alloc::Refused => continue,
                    Alloc::Empty => break,
                }
            }
        }
        None
    }

    /// The BOOTREPLY: yiaddr, siaddr (next server), file; with the cookie, the subnet mask
    /// and the configured options (RFC 1497 vendor extensions), option 82 back last.
    fn bootp_reply(
        &self,
        msg: &Message<'_>,
        sum: &Summary<'_>,
        subnet_index: usize,
        yiaddr: Ipv4Addr,
        plain: bool,
        out: &mut [u8],
    ) -> Decision {
        let st = self.stats.clone();
        let shared = self.shared.clone();
        let Some(subnet) = shared.config.subnets.get(subnet_index) else {
            return self.silent(&st.no_subnet, Silence::NoSubnet);
        };
        let limit = sum
            .max_message_size
            .map(|m| (m as usize).saturating_sub(28))
            .unwrap_or(DEFAULT_MAX_PAYLOAD);
        let Ok(mut w) = ReplyWriter::new(out, msg, limit) else {
            return self.silent(&st.no_room, Silence::NoRoom);
        };
        w.set_yiaddr(yiaddr);
        let layers = Layers::new(
            &shared.config,
            &shared.scopes,
            self.classes,
            self.reply_pool,
            subnet,
        )
        .with_host(self.host_layer());
        if let Some(ns) = layers.next_server() {
            w.set_siaddr(ns);
        }
        if let Some(file) = layers.boot_file() {
            w.set_file(file);
        }
        let len = if plain {
            w.finish_plain()
        } else {
            if w.option(opt::SUBNET_MASK, &subnet.net.mask().octets())
                .is_err()
            {
                return self.silent(&st.no_room, Silence::NoRoom);
            }
            // DHCP's own options never go to a BOOTP client.
            let mut sent = Sent::default();
            for c in [
                opt::MESSAGE_TYPE,
                opt::SERVER_ID,
                opt::LEASE_TIME,
                opt::RENEWAL_TIME,
                opt::REBINDING_TIME,
                opt::SUBNET_MASK,
                opt::RELAY_AGENT_INFO,
                opt::AUTHENTICATION,
            ] {
                sent.mark(c);
            }
            put_configured(&mut w, msg, sum, &layers, &mut sent);
            // Option 82 goes back unchanged, last (RFC 3046 §2.2).
            if let Some(ri) = sum.relay_agent_info {
                if w.option(opt::RELAY_AGENT_INFO, ri).is_err() {
                    return self.silent(&st.no_room, Silence::NoRoom);
                }
            }
            w.finish()
        };
        EngineStats::inc(&st.bootp_replies);
        let mut to = Delivery::of_reply(msg, yiaddr, msg.ciaddr());
        if matches!(to, Delivery::ToClient { .. }) && !self.hw_is_bindings {
            EngineStats::inc(&st.reply_hw_not_bindings);
            to = Delivery::Broadcast;
        }
        // A BOOTREPLY grants a binding: it waits for the commit like an ACK.
        Decision::Reply {
            len,
            kind: MessageType::Ack,
            to,
        }
    }
}
