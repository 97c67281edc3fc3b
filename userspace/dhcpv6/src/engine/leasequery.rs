//! DHCPv6 Leasequery (RFC 5007): a requestor (an access concentrator, a relay,
//! an operator's tool) asks which client holds an address or prefix, or what a
//! client (by DUID) holds. Read-only: the table is read, never written.
//!
//! What we answer (RFC 5007 §4.3.2, in this order):
//! - a Leasequery without a Client Identifier (the requestor's), with two, or
//!   with a Server Identifier that is not ours is dropped and counted
//!   (`bad_ids`), as RFC 8415 §16 drops such messages; bad option framing in
//!   the message is dropped and counted (`malformed`);
//! - a source not in `[dhcpv6] leasequery-allow` (default: the trusted relays)
//!   gets NotAllowed (`leasequery_not_allowed`);
//! - no OPTION_LQ_QUERY, two of them, one shorter than 17 bytes, bad framing in
//!   its query-options, or the query's own IAADDR / Client Identifier missing:
//!   MalformedQuery;
//! - a query type other than QUERY_BY_ADDRESS (1) and QUERY_BY_CLIENTID (2):
//!   UnknownQueryType;
//! - a link-address on none of our links, or (by address) an address in none of
//!   our links, prefix pools or reserved prefixes: NotConfigured;
//! - by address: the unexpired active binding holding the address (IA_NA), or
//!   the delegated prefix containing it (IA_PD); by client id: the client's
//!   unexpired active bindings. Found: OPTION_CLIENT_DATA with the client's
//!   Client Identifier, every active IAADDR / IAPREFIX of the client on that
//!   link with the lifetimes left, OPTION_CLT_TIME (seconds since the latest
//!   transaction) and, when the query's ORO asks for it or there is no ORO,
//!   OPTION_LQ_RELAY_DATA rebuilt from what the binding keeps of the
//!   Relay-Forward it came through (link-address, peer-address,
//!   interface-id, remote-id, subscriber-id, client link-layer address;
//!   RFC 5007 §4.1.2.4 carries the relay message without the client's message;
//!   the hop-count is not kept and is sent as 0, and only the relay nearest the
//!   client is kept). A client with bindings on several links and a query
//!   without link-address: OPTION_LQ_CLIENT_LINK with those links (their
//!   prefixes as link-addresses) and no client data. Nothing found: a reply
//!   without client data.
//! - The reply goes to the query's source address and port.
//!
//! Invariants: no allocation (fixed arrays on the stack), no table write, the
//! same one-lock hold as any other DHCPv6 message (a query by address is one
//! or a few index lookups; by client id one client-index lookup).

use lease_store::v6::{Binding6, BindingState, BindingTable6, IaKind, RelayData6, DUID_MAX};

use super::{Decision6, Engine6, RxMeta6, Silence6};
use crate::config::{mask, prefix_contains};
use crate::stats::Stats6;
use crate::wire::{msg, opt, status, IaEntry, Message, Options, Writer};

/// RFC 5007 query type: who holds this address.
pub const QUERY_BY_ADDRESS: u8 = 1;
/// RFC 5007 query type: what this client (DUID) holds.
pub const QUERY_BY_CLIENTID: u8 = 2;
/// Bindings of one client looked at and answered (more are left out).
pub const MAX_LQ_BINDINGS: usize = 32;
/// Links listed in one OPTION_LQ_CLIENT_LINK.
const MAX_LQ_LINKS: usize = 8;

/// A refused query: its status code and text.
#[derive(Clone, Copy)]
struct Refusal {
    code: u16,
    text: &'static str,
}

const fn refuse(code: u16, text: &'static str) -> Refusal {
    Refusal { code, text }
}

/// The binding is live: active and not past its valid lifetime.
fn live(b: &Binding6, now: u32) -> bool {
    b.state == BindingState::Active && b.expiry > now
}

impl Engine6 {
    /// Answers a Leasequery (the caller saw message type 14).
    pub(super) fn leasequery(
        &self,
        table: &BindingTable6,
        now: u32,
        meta: &RxMeta6,
        payload: &[u8],
        out: &mut [u8],
    ) -> Result<Decision6, Silence6> {
        let m = Message::parse(payload, 0).map_err(Silence6::Malformed)?;
        let (mut requestor, mut server_id) = (None, None);
        let mut query: Option<Option<(&[u8], usize)>> = None;
        for o in m.options {
            let (code, b, at) = o.map_err(Silence6::Malformed)?;
            match code {
                opt::CLIENTID => {
                    if requestor.is_some() || b.is_empty() {
                        return Err(Silence6::BadIds);
                    }
                    requestor = Some(b);
                }
                opt::SERVERID => {
                    if server_id.is_some() {
                        return Err(Silence6::BadIds);
                    }
                    server_id = Some(b);
                }
                // A second OPTION_LQ_QUERY makes the query ambiguous: MalformedQuery.
                opt::LQ_QUERY => query = Some(if query.is_none() { Some((b, at)) } else { None }),
                _ => {}
            }
        }
        let Some(requestor) = requestor else {
            return Err(Silence6::BadIds);
        };
        if server_id.is_some_and(|s| s != &self.server_duid[..]) {
            return Err(Silence6::BadIds);
        }
        Stats6::inc(&self.stats.leasequery);
        let mut w = Writer::new(out);
        w.header(msg::LEASEQUERY_REPLY, m.xid);
        w.option(opt::SERVERID, &self.server_duid);
        w.option(opt::CLIENTID, requestor);
        let src = meta.src.octets();
        let allowed = self
            .cfg
            .leasequery_allow
            .iter()
            .any(|&(p, l)| prefix_contains(p, l, &src));
        if !allowed {
            Stats6::inc(&self.stats.leasequery_not_allowed);
            w.status(
                status::NOT_ALLOWED,
                "leasequery not allowed from this source",
            );
        } else if let Err(r) = self.lq_answer(table, now, query.flatten(), &mut w) {
            Stats6::inc(match r.code {
                status::UNKNOWN_QUERY_TYPE => &self.stats.leasequery_unknown_type,
                status::NOT_CONFIGURED => &self.stats.leasequery_not_configured,
                _ => &self.stats.leasequery_malformed,
            });
            w.status(r.code, r.text);
        }
        let len = w.finish().ok_or(Silence6::Overflow)?;
        Stats6::inc(&self.stats.replies);
        Ok(Decision6::Reply {
            len,
            to: meta.src,
            port: if meta.src_port == 0 {
                546
            } else {
                meta.src_port
            },
            committed: false,
            // Bindings read from the table, maybe written by a message whose commit is
            // still pending: the answer waits like any reply after it.
            at_once: false,
        })
    }

    /// The link whose prefix holds `a`.
    fn lq_link_of(&self, a: &[u8; 16]) -> Option<u16> {
        self.cfg
            .links
            .iter()
            .position(|l| prefix_contains(l.prefix, l.prefix_len, a))
            .map(|i| i as u16)
    }

    /// Writes the answer (client data, client links, or nothing found); a refusal is
    /// returned before anything is written.
    fn lq_answer(
        &self,
        t: &BindingTable6,
        now: u32,
        query: Option<(&[u8], usize)>,
        w: &mut Writer<'_>,
    ) -> Result<(), Refusal> {
        let Some((b, at)) = query else {
            return Err(refuse(
                status::MALFORMED_QUERY,
                "exactly one OPTION_LQ_QUERY expected",
            ));
        };
        if b.len() < 17 {
            return Err(refuse(
                status::MALFORMED_QUERY,
                "OPTION_LQ_QUERY shorter than 17 bytes",
            ));
        }
        let qtype = b[0];
        let mut la = [0u8; 16];
        la.copy_from_slice(&b[1..17]);
        let qopts = Options::new(&b[17..], at + 17);
        if qopts.check().is_err() {
            return Err(refuse(
                status::MALFORMED_QUERY,
                "truncated option in query-options",
            ));
        }
        if qtype != QUERY_BY_ADDRESS && qtype != QUERY_BY_CLIENTID {
            return Err(refuse(
                status::UNKNOWN_QUERY_TYPE,
                "only query by address and by client id",
            ));
        }
        let link = if la == [0; 16] {
            None
        } else {
            Some(self.lq_link_of(&la).ok_or(refuse(
                status::NOT_CONFIGURED,
                "link-address on none of our links",
            ))?)
        };
        let want_relay = match qopts.find(opt::ORO) {
            None => true,
            Some(oro) => oro
                .chunks_exact(2)
                .any(|c| u16::from_be_bytes([c[0], c[1]]) == opt::LQ_RELAY_DATA),
        };
        let mut slots = [0u32; MAX_LQ_BINDINGS];
        let mut duid = [0u8; DUID_MAX];
        let (duid_len, n) = if qtype == QUERY_BY_ADDRESS {
            let e = qopts
                .find(opt::IAADDR)
                .and_then(|e| IaEntry::parse_addr(e, 0).ok())
                .ok_or(refuse(
                    status::MALFORMED_QUERY,
                    "QUERY_BY_ADDRESS without a valid IAADDR",
                ))?;
            match self.lq_by_addr(t, now, &e.addr, link) {
                Some(b) => {
                    let d = b.duid.as_slice();
                    duid[..d.len()].copy_from_slice(d);
                    let n = self.lq_client(t, now, d, Some(b.link), &mut slots);
                    (d.len(), n)
                }
                None if !self.lq_ours(&e.addr, link) => {
                    return Err(refuse(
                        status::NOT_CONFIGURED,
                        "address on none of our links or prefix pools",
                    ))
                }
                None => (0, 0),
            }
        } else {
            let id = qopts
                .find(opt::CLIENTID)
                .filter(|id| !id.is_empty() && id.len() <= DUID_MAX)
                .ok_or(refuse(
                    status::MALFORMED_QUERY,
                    "QUERY_BY_CLIENTID without a valid Client Identifier",
                ))?;
            duid[..id.len()].copy_from_slice(id);
            (id.len(), self.lq_client(t, now, id, link, &mut slots))
        };
        if n == 0 {
            Stats6::inc(&self.stats.leasequery_unknown);
            return Ok(());
        }
        // Several links and none named: the requestor must ask again per link.
        let mut links = [0u16; MAX_LQ_LINKS];
        let mut n_links = 0;
        for b in slots[..n].iter().filter_map(|&s| t.get(s)) {
            if !links[..n_links].contains(&b.link) && n_links < MAX_LQ_LINKS {
                links[n_links] = b.link;
                n_links += 1;
            }
        }
        if link.is_none() && n_links > 1 {
            Stats6::inc(&self.stats.leasequery_client_link);
            w.open(opt::LQ_CLIENT_LINK);
            for &l in &links[..n_links] {
                if let Some(cfg) = self.cfg.links.get(usize::from(l)) {
                    w.bytes(&cfg.prefix.octets());
                }
            }
            w.close();
            return Ok(());
        }
        Stats6::inc(&self.stats.leasequery_answered);
        self.lq_client_data(t, now, &duid[..duid_len], &slots[..n], want_relay, w);
        Ok(())
    }

    /// The live binding holding `addr`: its IA_NA address, or a delegated prefix holding
    /// it (each delegated length a prefix pool or a reservation of the link(s) uses).
    fn lq_by_addr(
        &self,
        t: &BindingTable6,
        now: u32,
        addr: &[u8; 16],
        link: Option<u16>,
    ) -> Option<Binding6> {
        let ok = |s: Option<u32>| {
            s.and_then(|s| t.get(s))
                .filter(|b| live(b, now) && link.is_none_or(|l| b.link == l))
        };
        if let Some(b) = ok(t.find_addr(IaKind::Na, addr, 128)) {
            return Some(b);
        }
        let a = u128::from_be_bytes(*addr);
        for (li, l) in self.cfg.links.iter().enumerate() {
            if link.is_some_and(|x| usize::from(x) != li) {
                continue;
            }
            for p in &l.prefix_pools {
                if prefix_contains(p.prefix, p.prefix_len, addr) {
                    let pfx = (a & mask(p.delegated_len)).to_be_bytes();
                    if let Some(b) = ok(t.find_addr(IaKind::Pd, &pfx, p.delegated_len)) {
                        return Some(b);
                    }
                }
            }
            for r in &l.reservations {
                if let Some((p, len)) = r.prefix {
                    if prefix_contains(p, len, addr) {
                        let pfx = (a & mask(len)).to_be_bytes();
                        if let Some(b) = ok(t.find_addr(IaKind::Pd, &pfx, len)) {
                            return Some(b);
                        }
                    }
                }
            }
        }
        None
    }

    /// `addr` lies on one of our links (or `link`), in a prefix pool or a reserved prefix.
    fn lq_ours(&self, addr: &[u8; 16], link: Option<u16>) -> bool {
        self.cfg.links.iter().enumerate().any(|(li, l)| {
            link.is_none_or(|x| usize::from(x) == li)
                && (prefix_contains(l.prefix, l.prefix_len, addr)
                    || l.prefix_pools
                        .iter()
                        .any(|p| prefix_contains(p.prefix, p.prefix_len, addr))
                    || l.reservations.iter().any(|r| {
                        r.prefix
                            .is_some_and(|(p, len)| prefix_contains(p, len, addr))
                    }))
        })
    }

    /// Slots of the client's live bindings (on `link` when given) into `out`.
    fn lq_client(
        &self,
        t: &BindingTable6,
        now: u32,
        duid: &[u8],
        link: Option<u16>,
        out: &mut [u32; MAX_LQ_BINDINGS],
    ) -> usize {
        let mut all = [0u32; MAX_LQ_BINDINGS];
        let found = t.find_client(duid, &mut all);
        let mut n = 0;
        for &s in &all[..found] {
            if t.get(s)
                .is_some_and(|b| live(&b, now) && link.is_none_or(|l| b.link == l))
            {
                out[n] = s;
                n += 1;
            }
        }
        n
    }

    /// OPTION_CLIENT_DATA for the client's bindings in `slots`.
    fn lq_client_data(
        &self,
        t: &BindingTable6,
        now: u32,
        duid: &[u8],
        slots: &[u32],
        want_relay: bool,
        w: &mut Writer<'_>,
    ) {
        w.open(opt::CLIENT_DATA);
        w.option(opt::CLIENTID, duid);
        let mut last = 0u32;
        let mut relay: Option<(u32, RelayData6)> = None;
        for b in slots.iter().filter_map(|&s| t.get(s)) {
            let valid = b.expiry.saturating_sub(now);
            let preferred = b
                .cltt
                .saturating_add(b.preferred)
                .saturating_sub(now)
                .min(valid);
            if b.kind == IaKind::Na {
                w.entry(&IaEntry {
                    addr: b.addr,
                    prefix_len: 128,
                    preferred,
                    valid,
                });
            } else {
                // Written by hand: `Writer::entry` takes length 128 for an address.
                w.open(opt::IAPREFIX);
                w.bytes(&preferred.to_be_bytes());
                w.bytes(&valid.to_be_bytes());
                w.bytes(&[b.prefix_len]);
                w.bytes(&b.addr);
                w.close();
            }
            last = last.max(b.cltt);
            if b.relay != RelayData6::default() && relay.is_none_or(|(c, _)| b.cltt > c) {
                relay = Some((b.cltt, b.relay));
            }
        }
        w.option(opt::CLT_TIME, &now.saturating_sub(last).to_be_bytes());
        if let (true, Some((_, r))) = (want_relay, relay) {
            write_relay_data(w, &r);
        }
        w.close();
    }
}

/// OPTION_LQ_RELAY_DATA: the peer-address, then the Relay-Forward as stored (no
/// Relay Message option: RFC 5007 §4.1.2.4 leaves the client's message out).
fn write_relay_data(w: &mut Writer<'_>, r: &RelayData6) {
    w.open(opt::LQ_RELAY_DATA);
    w.bytes(&r.peer_address);
    w.relay_header(msg::RELAY_FORW, 0, &r.link_address, &r.peer_address);
    for (code, v) in [
        (opt::INTERFACE_ID, r.interface_id.as_slice()),
        (opt::REMOTE_ID, r.remote_id.as_slice()),
        (opt::SUBSCRIBER_ID, r.subscriber_id.as_slice()),
    ] {
        if !v.is_empty() {
            w.option(code, v);
        }
    }
    if r.lladdr_type != 0 || !r.lladdr.is_empty() {
        w.open(opt::CLIENT_LINKLAYER_ADDR);
        w.bytes(&r.lladdr_type.to_be_bytes());
        w.bytes(r.lladdr.as_slice());
        w.close();
    }
    w.close();
}
