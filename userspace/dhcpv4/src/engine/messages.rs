//! One handler per client message: DISCOVER, REQUEST (selecting, init-reboot,
//! renewing, rebinding), DECLINE, RELEASE, INFORM, and the NAK.

use std::net::Ipv4Addr;

use lease_store::{ClientKey, Lease, LeaseState, Slot};

use crate::delivery::Delivery;
use crate::stats::EngineStats;
use crate::wire::{self, opt, Message, MessageType, ReplyWriter, Summary};

use super::binding::{free_state, grant, may_take, same_hw};
use super::{Decision, Engine, RxMeta, Silence, DEFAULT_MAX_PAYLOAD};

/// The REQUEST's state (RFC 2131 §4.3.2), which decides what the client must prove.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(super) enum Claim {
    /// Names our server id: the address must be one we offered it (or its binding).
    Selecting,
    /// Requested address, no ciaddr: the address must be the client's own binding.
    InitReboot,
    /// ciaddr set (RENEWING / REBINDING): an authoritative server may grant a free address
    /// whose binding it lost (see README, commit modes).
    Renewing,
}

impl Engine {
    pub(super) fn discover(
        &mut self,
        now: u32,
        meta: &RxMeta,
        msg: &Message<'_>,
        sum: &Summary<'_>,
        key: &ClientKey,
        out: &mut [u8],
    ) -> Decision {
        let st = self.stats.clone();
        if self.shared.table.storage_failed() {
            return self.silent(&st.storage_failed_dropped, Silence::StorageFailed);
        }
        let Some(subnet) = self.select_subnet(meta, msg, sum) else {
            return self.silent(&st.no_subnet, Silence::NoSubnet);
        };
        let subnet_index = subnet.index;
        if self.refuses_unknown(subnet) {
            return self.silent(&st.unknown_refused, Silence::Unregistered);
        }
        let hold = now.saturating_add(subnet.times.offer_hold);

        let fixed = self.registered_fixed(subnet_index);
        // Lease caps: a configured or registered host's own address is not capped.
        if fixed.is_none()
            && !self.shared.reservations.contains_key(key)
            && self
                .cap_admit(subnet_index, key, sum.relay_agent_info.unwrap_or_default())
                .is_some()
        {
            return Decision::Silent(Silence::LeaseCap);
        }
        let chosen = match self.shared.reservations.get(key) {
            _ if fixed.is_some() => self.offer_fixed(now, msg, sum, key, subnet_index, hold),
            Some(&(si, ip)) if self.shared.scopes.same_scope(si, subnet_index) => {
                let slot = self.shared.table.slot_of(ip);
                let pool = slot.map(|s| self.shared.table.pool_of_slot(s));
                let desired = self.desired_for(pool, si, sum.lease_time);
                let granted = match slot {
                    Some(slot) => {
                        self.take(slot, key, msg, sum, LeaseState::Offered, now, desired, hold)
                    }
                    None => Some(grant(self.pol.as_ref(), now, desired, 0).0),
                };
                self.reply_pool = pool;
                granted.map(|g| (ip, g, si))
            }
            _ => self.choose_address(now, msg, sum, key, subnet_index, hold),
        };
        let Some((addr, lease, reply_subnet)) = chosen else {
            return match self.why_no_pool(subnet_index) {
                Some(Silence::Unregistered) => {
                    self.silent(&st.unknown_refused, Silence::Unregistered)
                }
                Some(why) => self.silent(&st.class_refused, why),
                None => self.silent(&st.pool_exhausted, Silence::PoolExhausted),
            };
        };
        let shared = self.shared.clone();
        let subnet = &shared.config.subnets[reply_subnet];
        self.reply(
            MessageType::Offer,
            msg,
            sum,
            subnet,
            addr,
            Some(lease),
            Ipv4Addr::UNSPECIFIED,
            out,
        )
    }

    pub(super) fn request(
        &mut self,
        now: u32,
        meta: &RxMeta,
        msg: &Message<'_>,
        sum: &Summary<'_>,
        key: &ClientKey,
        out: &mut [u8],
    ) -> Decision {
        let st = self.stats.clone();
        let server_id = self.shared.server_id;
        let ciaddr = msg.ciaddr();

        // SELECTING: the client names the server it chose.
        if let Some(sid) = sum.server_id {
            if sid != server_id {
                // Chose another server: withdraw our offer, stay silent.
                if let Some((slot, _)) = self.shared.table.find_client(key) {
                    let withdrawn = self.shared.table.update(slot, |l| {
                        if l.client == *key && l.state == LeaseState::Offered {
                            l.state = free_state(l.owner);
                            true
                        } else {
                            false
                        }
                    });
                    if withdrawn {
                        self.record_volatile_change(slot);
                    }
                }
                return self.silent(&st.other_server, Silence::OtherServer);
            }
            let Some(ip) = sum
                .requested_ip
                .or((!ciaddr.is_unspecified()).then_some(ciaddr))
            else {
                return self.nak(msg, sum, "no requested address", out);
            };
            return self.confirm(now, meta, msg, sum, key, ip, Claim::Selecting, out);
        }
        // INIT-REBOOT: requested address, no ciaddr.
        if let Some(ip) = sum.requested_ip {
            if ciaddr.is_unspecified() {
                return self.confirm(now, meta, msg, sum, key, ip, Claim::InitReboot, out);
            }
        }
        // RENEWING (unicast) / REBINDING (broadcast): ciaddr set.
        if !ciaddr.is_unspecified() {
            return self.confirm(now, meta, msg, sum, key, ciaddr, Claim::Renewing, out);
        }
        self.nak(msg, sum, "request without address", out)
    }

    /// Binds `ip` to the client and ACKs, or NAKs / stays silent per §4.3.2.
    #[allow(clippy::too_many_arguments)]
    pub(super) fn confirm(
        &mut self,
        now: u32,
        meta: &RxMeta,
        msg: &Message<'_>,
        sum: &Summary<'_>,
        key: &ClientKey,
        ip: Ipv4Addr,
        claim: Claim,
        out: &mut [u8],
    ) -> Decision {
        let st = self.stats.clone();
        let Some(subnet) = self.select_subnet(meta, msg, sum) else {
            return self.silent(&st.no_subnet, Silence::NoSubnet);
        };
        let selected = subnet.index;
        let authoritative = subnet.times.authoritative;
        if self.refuses_unknown(subnet) {
            return self.silent(&st.unknown_refused, Silence::Unregistered);
        }
        // The address's subnet: the selected one, or another of its shared network.
        let subnet_index = if subnet.net.contains(ip) {
            Some(selected)
        } else {
            self.shared
                .config
                .subnet_for(ip)
                .filter(|s| s.net.contains(ip) && self.shared.scopes.same_scope(s.index, selected))
                .map(|s| s.index)
        };
        let fixed = self.registered_fixed(selected).map(|(f, _)| f);
        if let Some(f) = fixed {
            if f != ip && self.fixed_grantable(f, key, now) {
                // Its registration now fixes another address (reservation moved): back to
                // DISCOVER, where that address is offered. Only when that address can be
                // given: a fixed address held by another client, or one the failover
                // partner allocates, is replaced by a pool address at DISCOVER
                // (`offer_fixed`), and NAKing the REQUEST for that one looped the client
                // through DISCOVER and NAK for ever.
                EngineStats::inc(&st.registration_moved);
                return self.nak(msg, sum, "reservation moved", out);
            }
        }
        // Wrong network for the client's link.
        let Some(subnet_index) = subnet_index else {
            return if authoritative {
                self.nak(msg, sum, "address not on this network", out)
            } else {
                self.silent(&st.unknown_client, Silence::UnknownClient)
            };
        };

        // The host's own address (configured reservation or registered fixed address)
        // passes the pool's class rules.
        let reserved = fixed == Some(ip)
            || matches!(self.shared.reservations.get(key), Some(&(si, rip)) if si == subnet_index && rip == ip);
        let table = self.shared.table.clone();
        let pool = table.slot_of(ip).map(|s| table.pool_of_slot(s));
        self.reply_pool = pool;
        let desired = self.desired_for(pool, subnet_index, sum.lease_time);
        let lease = match table.slot_of(ip) {
            Some(slot) if self.subnet_of_slot(slot) == Some(subnet_index) => {
                // The pool's class rules (a reservation is the host's own and passes).
                if !reserved {
                    if let Some(why) = pool.and_then(|p| self.pool_refusal(p)) {
                        return if why == Silence::Unregistered {
                            self.silent(&st.unknown_refused, why)
                        } else {
                            EngineStats::inc(&st.class_refused);
                            self.nak(msg, sum, "address not allowed for this client's class", out)
                        };
                    }
                }
                let known = table.read(slot);
                let ours = known.client == *key && known.state != LeaseState::Free;
                // SELECTING proves nothing by naming us: the address must be one we offered
                // this client, or its binding. Otherwise any free address could be bound for
                // the longest lease without an OFFER (cheap pool draining). The record lock
                // in `take` re-checks that nobody else took it meanwhile.
                let offered = known.client == *key
                    && matches!(
                        known.state,
                        LeaseState::Offered | LeaseState::Active | LeaseState::Reserved
                    );
                if claim == Claim::Selecting && !offered {
                    EngineStats::inc(&st.claims_refused);
                    return self.nak(msg, sum, "address not offered to this client", out);
                }
                if !ours {
                    let own_only = self.own_only_pool(table.pool_of_slot(slot));
                    if !may_take(&known, key, now, self.pol.as_ref(), own_only) {
                        return self.nak(msg, sum, "address in use", out);
                    }
                    // RFC 2131 §4.3.2: INIT-REBOOT only for the client's own binding: NAK
                    // when authoritative, else silent (no record of this client).
                    if claim == Claim::InitReboot {
                        EngineStats::inc(&st.claims_refused);
                        return if authoritative {
                            self.nak(msg, sum, "not your address", out)
                        } else {
                            self.silent(&st.unknown_client, Silence::UnknownClient)
                        };
                    }
                    // RENEWING without a record: silent, unless we are authoritative for
                    // the link, in which case a free address is granted (this keeps
                    // clients whose lease we lost from churning).
                    if !authoritative {
                        return self.silent(&st.unknown_client, Silence::UnknownClient);
                    }
                    // A new address for this client: under its circuit's caps.
                    if !reserved
                        && self
                            .cap_admit(subnet_index, key, sum.relay_agent_info.unwrap_or_default())
                            .is_some()
                    {
                        return self.nak(msg, sum, "lease cap of the circuit reached", out);
                    }
                }
                match self.take(slot, key, msg, sum, LeaseState::Active, now, desired, 0) {
                    Some(g) => g,
                    None => return self.nak(msg, sum, "address in use", out),
                }
            }
            Some(_) => return self.nak(msg, sum, "address belongs to another subnet", out),
            None if reserved => grant(self.pol.as_ref(), now, desired, 0).0,
            None => {
                // Inside the subnet but outside every pool and not reserved.
                return if authoritative {
                    self.nak(msg, sum, "address not in any pool", out)
                } else {
                    self.silent(&st.unknown_client, Silence::UnknownClient)
                };
            }
        };
        let subnet = &self.shared.config.subnets[subnet_index];
        self.reply(
            MessageType::Ack,
            msg,
            sum,
            subnet,
            ip,
            Some(lease),
            msg.ciaddr(),
            out,
        )
    }

    /// DECLINE (RFC 2131 §4.3.3): the client found its ACKed address in use. Honoured only
    /// with our server id (a MUST in Table 5) for the client's own Active binding, from its
    /// hardware address: an address only offered, or someone else's, is not quarantined.
    pub(super) fn decline(
        &mut self,
        now: u32,
        msg: &Message<'_>,
        sum: &Summary<'_>,
        key: &ClientKey,
    ) -> Decision {
        let st = self.stats.clone();
        match sum.server_id {
            Some(s) if s == self.shared.server_id => {}
            Some(_) => return self.silent(&st.other_server, Silence::OtherServer),
            None => return self.silent(&st.claims_refused, Silence::Unproven),
        }
        let Some(ip) = sum.requested_ip else {
            return self.silent(&st.malformed, Silence::Malformed);
        };
        let table = self.shared.table.clone();
        let Some(slot) = table.slot_of(ip) else {
            return self.silent(&st.unknown_client, Silence::UnknownClient);
        };
        let known = table.read(slot);
        if known.client == *key
            && (known.state != LeaseState::Active || !same_hw(&known, msg))
            && known.state.binds_client()
        {
            return self.silent(&st.claims_refused, Silence::Unproven);
        }
        let quarantine = self
            .subnet_of_slot(slot)
            .map(|s| self.shared.config.subnets[s].times.decline_quarantine)
            .unwrap_or(self.shared.config.lease.decline_quarantine);
        // Someone else answers ARP for it: keep it out of use.
        let until = now.saturating_add(quarantine);
        self.end_binding(slot, &st.declines, |l| {
            let go = l.client == *key && l.state == LeaseState::Active && same_hw(l, msg);
            if go {
                l.state = LeaseState::Declined;
                l.expiry = until;
                // A client transaction: the partner orders updates by it (draft-12 7.1.3).
                l.cltt = l.cltt.max(now);
            }
            go
        })
    }

    /// Ends `key`'s binding in `slot` with `end` (under the record lock; false: not
    /// that client's binding in a state it may end, left alone), counts it in `counter`;
    /// silent either way (RELEASE and DECLINE get no reply).
    pub(super) fn end_binding(
        &mut self,
        slot: Slot,
        counter: &std::sync::atomic::AtomicU64,
        end: impl FnOnce(&mut Lease) -> bool,
    ) -> Decision {
        let done = self.shared.table.update(slot, end);
        if !done {
            return self.silent(&self.stats.unknown_client, Silence::UnknownClient);
        }
        self.record_change(slot);
        EngineStats::inc(counter);
        Decision::Silent(Silence::NoReplyExpected)
    }

    /// RELEASE (RFC 2131 §4.4.6): the client gives up its address. Honoured only with our
    /// server id (a MUST in Table 5), for the client's own Active binding at ciaddr, from the
    /// binding's hardware address, and, unless a trusted relay forwarded it, sent from ciaddr
    /// itself: a host that knows another's client id and address cannot free it.
    pub(super) fn release(
        &mut self,
        now: u32,
        meta: &RxMeta,
        msg: &Message<'_>,
        sum: &Summary<'_>,
        key: &ClientKey,
    ) -> Decision {
        let st = self.stats.clone();
        match sum.server_id {
            Some(s) if s == self.shared.server_id => {}
            Some(_) => return self.silent(&st.other_server, Silence::OtherServer),
            None => return self.silent(&st.claims_refused, Silence::Unproven),
        }
        let ciaddr = msg.ciaddr();
        if msg.giaddr().is_unspecified() && meta.src_ip != ciaddr {
            return self.silent(&st.claims_refused, Silence::Unproven);
        }
        let table = self.shared.table.clone();
        let Some(slot) = table.slot_of(ciaddr) else {
            return self.silent(&st.unknown_client, Silence::UnknownClient);
        };
        let known = table.read(slot);
        if known.client == *key && known.state == LeaseState::Active && !same_hw(&known, msg) {
            return self.silent(&st.claims_refused, Silence::Unproven);
        }
        // The failover crate's rule, which the simulation runs too: RELEASED, the client kept
        // on the record (RFC 2131 §4.3.1), the release as its last transaction.
        self.end_binding(slot, &st.releases, |l| {
            same_hw(l, msg) && xdhcpd_failover::store::release(l, key, now)
        })
    }

    pub(super) fn inform(
        &mut self,
        meta: &RxMeta,
        msg: &Message<'_>,
        sum: &Summary<'_>,
        out: &mut [u8],
    ) -> Decision {
        let st = self.stats.clone();
        let ciaddr = msg.ciaddr();
        // The client's own address identifies its subnet (RFC 2131 §4.3.5).
        let link = if ciaddr.is_unspecified() {
            meta.src_ip
        } else {
            ciaddr
        };
        let subnet = self
            .shared
            .config
            .subnet_for(link)
            .or_else(|| self.select_subnet(meta, msg, sum));
        let Some(subnet) = subnet else {
            return self.silent(&st.no_subnet, Silence::NoSubnet);
        };
        let subnet_index = subnet.index;
        let subnet = &self.shared.config.subnets[subnet_index];
        self.reply(
            MessageType::Ack,
            msg,
            sum,
            subnet,
            Ipv4Addr::UNSPECIFIED,
            None,
            ciaddr,
            out,
        )
    }

    pub(super) fn nak(
        &mut self,
        msg: &Message<'_>,
        sum: &Summary<'_>,
        why: &str,
        out: &mut [u8],
    ) -> Decision {
        let st = self.stats.clone();
        let Ok(mut w) = ReplyWriter::new(out, msg, DEFAULT_MAX_PAYLOAD) else {
            return self.silent(&st.no_room, Silence::NoRoom);
        };
        let giaddr = msg.giaddr();
        // NAK via a relay: the relay must broadcast it (RFC 2131 §4.1).
        if !giaddr.is_unspecified() {
            w.set_flags(msg.flags() | wire::FLAG_BROADCAST);
        }
        let r = w
            .option(opt::MESSAGE_TYPE, &[MessageType::Nak as u8])
            .and_then(|_| w.option_ip(opt::SERVER_ID, self.shared.server_id));
        if r.is_err() {
            return self.silent(&st.no_room, Silence::NoRoom);
        }
        w.option_if_room(opt::MESSAGE, why.as_bytes());
        if let Some(ri) = sum.relay_agent_info {
            w.option_if_room(opt::RELAY_AGENT_INFO, ri);
        }
        let len = w.finish();
        EngineStats::inc(&st.naks);
        let to = if giaddr.is_unspecified() {
            Delivery::Broadcast
        } else {
            Delivery::Relay(giaddr)
        };
        Decision::Reply {
            len,
            kind: MessageType::Nak,
            to,
        }
    }
}
