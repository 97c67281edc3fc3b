//! The OFFER/ACK: fixed fields, the lease and server options, the subnet's
//! configured options in the client's order, within the size it accepts.

use std::net::Ipv4Addr;

use xdhcpd_config::Subnet;

use crate::delivery::Delivery;
use crate::stats::EngineStats;
use crate::wire::{opt, Message, MessageType, ReplyWriter, Summary};

use super::{Decision, Engine, Silence, DEFAULT_MAX_PAYLOAD};

impl Engine {
    /// Builds an OFFER or ACK. `lease` is None for INFORM (no lease options).
    #[allow(clippy::too_many_arguments)]
    pub(super) fn reply(
        &self,
        kind: MessageType,
        msg: &Message<'_>,
        sum: &Summary<'_>,
        subnet: &Subnet,
        yiaddr: Ipv4Addr,
        lease: Option<u32>,
        ciaddr: Ipv4Addr,
        out: &mut [u8],
    ) -> Decision {
        let st = &self.stats;
        let limit = sum
            .max_message_size
            .map(|m| (m as usize).saturating_sub(28))
            .unwrap_or(DEFAULT_MAX_PAYLOAD);
        let Ok(mut w) = ReplyWriter::new(out, msg, limit) else {
            EngineStats::inc(&st.no_room);
            return Decision::Silent(Silence::NoRoom);
        };
        w.set_yiaddr(yiaddr);
        if kind == MessageType::Ack && !ciaddr.is_unspecified() {
            w.set_ciaddr(ciaddr);
        }
        // A registration's values first (host precedence, `registration.rs`).
        if let Some(ns) = self.host_next_server().or(subnet.next_server) {
            w.set_siaddr(ns);
        }
        if let Some(file) = self
            .host_boot_file()
            .or(subnet.boot_file.as_ref().map(|f| f.as_bytes()))
        {
            w.set_file(file);
        }
        let mut r = w
            .option(opt::MESSAGE_TYPE, &[kind as u8])
            .and_then(|_| w.option_ip(opt::SERVER_ID, self.shared.server_id));
        if let Some(lease) = lease {
            let t1 = (lease as f64 * subnet.times.renewal_factor) as u32;
            let mut t2 = (lease as f64 * subnet.times.rebinding_factor) as u32;
            if let Some(p) = &self.pol {
                t2 = p.rebind_time(self.admission, t1, t2);
            }
            r = r
                .and_then(|_| w.option_u32(opt::LEASE_TIME, lease))
                .and_then(|_| w.option_u32(opt::RENEWAL_TIME, t1))
                .and_then(|_| w.option_u32(opt::REBINDING_TIME, t2));
        }
        r = r.and_then(|_| w.option(opt::SUBNET_MASK, &subnet.net.mask().octets()));
        if r.is_err() {
            EngineStats::inc(&st.no_room);
            return Decision::Silent(Silence::NoRoom);
        }
        // Requested parameters in the client's order; without a list, all
        // configured options. Each code at most once.
        let mut sent = [0u64; 4];
        let mut mark = |c: u8| {
            let (i, b) = ((c >> 6) as usize, 1u64 << (c & 63));
            let fresh = sent[i] & b == 0;
            sent[i] |= b;
            fresh
        };
        for c in [
            opt::MESSAGE_TYPE,
            opt::SERVER_ID,
            opt::LEASE_TIME,
            opt::RENEWAL_TIME,
            opt::REBINDING_TIME,
            opt::SUBNET_MASK,
            opt::RELAY_AGENT_INFO,
        ] {
            mark(c);
        }
        match sum.parameter_list {
            Some(list) => {
                for &c in list {
                    if let Some(v) = self.host_option(c).or_else(|| subnet.options.get(c)) {
                        if mark(c) {
                            w.option_if_room(c, v);
                        }
                    }
                }
            }
            None => {
                for c in self.host_option_codes() {
                    if let Some(v) = self.host_option(c) {
                        if mark(c) {
                            w.option_if_room(c, v);
                        }
                    }
                }
                for c in subnet.options.codes() {
                    if let Some(v) = subnet.options.get(c) {
                        if mark(c) {
                            w.option_if_room(c, v);
                        }
                    }
                }
            }
        }
        // Option 82 goes back unchanged, last (RFC 3046 §2.2).
        if let Some(ri) = sum.relay_agent_info {
            if w.option(opt::RELAY_AGENT_INFO, ri).is_err() {
                EngineStats::inc(&st.no_room);
                return Decision::Silent(Silence::NoRoom);
            }
        }
        let len = w.finish();
        match kind {
            MessageType::Offer => EngineStats::inc(&st.offers),
            _ if lease.is_none() => {
                EngineStats::inc(&st.informs);
                EngineStats::inc(&st.acks)
            }
            _ => EngineStats::inc(&st.acks),
        }
        let mut to = Delivery::of_reply(msg, yiaddr, ciaddr);
        if matches!(to, Delivery::ToClient { .. }) && !self.hw_is_bindings {
            // Not the binding's hardware address: never unicast there (nor, in UDP mode,
            // install a neighbour entry that would send the address's traffic to that host).
            EngineStats::inc(&st.reply_hw_not_bindings);
            to = Delivery::Broadcast;
        }
        Decision::Reply { len, kind, to }
    }
}
