//! The OFFER/ACK: fixed fields, the lease and server options, the subnet's
//! configured options in the client's order, within the size it accepts.

use std::net::Ipv4Addr;

use xdhcpd_config::Subnet;

use crate::delivery::Delivery;
use crate::stats::EngineStats;
use crate::wire::{opt, Message, MessageType, ReplyWriter, Summary};

use super::pools::{host_name_from_mac, Layers};
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
        // Settings by precedence: registration (host) > classes > pool > subnet > shared
        // network (`pools.rs`, `registration.rs`).
        let layers = Layers::new(
            &self.shared.config,
            &self.shared.scopes,
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
        // RFC 6704 §3.3.1: the client's reconfigure key, for FORCERENEW authentication.
        if let (MessageType::Ack, Some(_), Some((key, replay))) = (kind, lease, self.reconf_key) {
            let v = super::reconfigure::key_option(&key, replay);
            if w.option_if_room(opt::AUTHENTICATION, &v) {
                EngineStats::inc(&st.reconfigure_keys_sent);
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

/// Option codes already written to a reply (each at most once).
#[derive(Default)]
pub(super) struct Sent([u64; 4]);

impl Sent {
    /// Notes `c`; true when it was not written before.
    #[inline]
    pub(super) fn mark(&mut self, c: u8) -> bool {
        let (i, b) = ((c >> 6) as usize, 1u64 << (c & 63));
        let fresh = self.0[i] & b == 0;
        self.0[i] |= b;
        fresh
    }
}

/// The configured options of `layers` the client asks for (option 55, in its order; all of
/// them without a list), then the host name built from the MAC, each where it fits and not
/// already `sent`. Shared by DHCP replies and BOOTREPLYs.
pub(super) fn put_configured(
    w: &mut ReplyWriter<'_>,
    msg: &Message<'_>,
    sum: &Summary<'_>,
    layers: &Layers<'_>,
    sent: &mut Sent,
) {
    match sum.parameter_list {
        Some(list) => {
            for &c in list {
                if let Some(v) = layers.option(c) {
                    if sent.mark(c) {
                        w.option_if_room(c, v);
                    }
                }
            }
        }
        None => {
            for (i, word) in layers.codes().into_iter().enumerate() {
                let mut bits = word;
                while bits != 0 {
                    let c = (i as u8) << 6 | bits.trailing_zeros() as u8;
                    bits &= bits - 1;
                    if let Some(v) = layers.option(c) {
                        if sent.mark(c) {
                            w.option_if_room(c, v);
                        }
                    }
                }
            }
        }
    }
    // Host name built from the MAC (option 12), when a layer asks for it and the client
    // wants it (or sent no list).
    if let Some(prefix) = layers.host_name_prefix() {
        let wanted = sum
            .parameter_list
            .is_none_or(|l| l.contains(&opt::HOST_NAME));
        if wanted && msg.hlen() == 6 && sent.mark(opt::HOST_NAME) {
            let mut buf = [0u8; 64];
            let n = host_name_from_mac(prefix, msg.chaddr(), &mut buf);
            w.option_if_room(opt::HOST_NAME, &buf[..n]);
        }
    }
}
