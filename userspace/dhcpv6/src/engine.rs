//! The sans-IO DHCPv6 server engine (RFC 8415 §18.3): one message in, one
//! reply (or a counted silence) out, bindings read and written in the
//! caller's [`BindingTable6`]. No clock, sockets or threads: the caller
//! passes the time and the receive metadata.

use std::collections::HashMap;
use std::net::Ipv6Addr;
use std::sync::Arc;

use lease_store::v6::{
    Binding6, BindingState, BindingTable6, Bytes, IaKind, RelayData6, Via6,
    FLAG_RECONFIGURE_ACCEPT, FLAG_RECONFIGURING6, FLAG_RECONF_KEY6,
};

use crate::config::{prefix_contains, ClassSet, Config6, Link6};
use crate::reconfigure::{delete_binding, is_reconfiguring, key_auth, Reconf6Shared};
use crate::stats::Stats6;
use crate::wire::{msg, opt, status, Ia, IaEntry, Message, Options, Relay, WireError, Writer};

mod classes;
mod leasequery;
pub use classes::{classify, classify_with, duid_lladdr, matches as class_matches, Facts6, Needs};
pub use leasequery::{MAX_LQ_BINDINGS, QUERY_BY_ADDRESS, QUERY_BY_CLIENTID};

/// Deepest relay nesting served (RFC 8415 §7.6 HOP_COUNT_LIMIT is 8; one more for the
/// relay nearest the client).
pub const MAX_RELAYS: usize = 9;
/// IAs of one message served (more are ignored).
pub const MAX_IAS: usize = 8;
/// Addresses or prefixes per IA in one reply.
pub const MAX_ENTRIES: usize = 4;

/// What the caller knows about a received message.
#[derive(Clone, Copy, Debug)]
pub struct RxMeta6 {
    /// Source address of the IPv6 packet (client link-local, or relay).
    pub src: Ipv6Addr,
    /// The destination was a multicast address (ff02::1:2 or ff05::1:3).
    pub multicast: bool,
    /// Receiving interface.
    pub ifindex: u32,
    /// Source UDP port (a Leasequery-reply goes back to it; RFC 5007 requestors need
    /// not use 546).
    pub src_port: u16,
}

/// Why the engine stayed silent.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Silence6 {
    /// Bad framing.
    Malformed(WireError),
    /// Not a message a server takes.
    NotForServer,
    /// Client/Server Identifier missing, forbidden, or not ours.
    BadIds,
    /// Relay-Forward from an untrusted source.
    UntrustedRelay,
    /// Relay nesting too deep.
    TooManyHops,
    /// No configured link.
    NoLink,
    /// A Confirm without addresses (RFC 8415 §18.3.3: no reply).
    NothingToConfirm,
    /// The reply did not fit the output buffer.
    Overflow,
    /// A Solicit from a client being reconfigured: dropped, its binding deleted (the
    /// spec's event table).
    Reconfiguring,
    /// An unregistered client on a link with `deny-unknown`.
    UnknownRefused,
}

/// The engine's answer.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Decision6 {
    /// A reply of `len` bytes was written to the output buffer; send it to `to`:`port`.
    Reply {
        /// Length.
        len: usize,
        /// Destination address (the sender: client or relay).
        to: Ipv6Addr,
        /// Destination port: 546 to a client, 547 to a relay, the query's source port to
        /// a leasequery requestor.
        port: u16,
        /// Bindings were written: in "ack" mode the table must be flushed first.
        committed: bool,
        /// The reply states nothing a crash could take back: this message wrote no binding
        /// (an Advertise, a status such as NoBinding or UseMulticast, a Confirm or
        /// Information-request answer) and it reports none read from the table (unlike a
        /// Leasequery-reply). In "ack" mode it may leave before the commits of earlier
        /// messages that are still pending; every other reply waits its turn.
        at_once: bool,
    },
    /// Nothing to send.
    Silence(Silence6),
}

#[derive(Clone, Copy)]
struct Level<'a> {
    hop: u8,
    link: [u8; 16],
    peer: [u8; 16],
    interface_id: Option<&'a [u8]>,
    options: Options<'a>,
}

#[derive(Clone, Copy)]
struct ClientMsg<'a> {
    typ: u8,
    xid: [u8; 3],
    client_id: Option<&'a [u8]>,
    server_id: Option<&'a [u8]>,
    ias: [Option<(IaKind, Ia<'a>)>; MAX_IAS],
    n_ias: usize,
    rapid: bool,
    reconf_accept: bool,
    /// Option 16 (enterprise number, vendor-class-data).
    vendor_class: Option<&'a [u8]>,
    /// Option 15 (user-class-data).
    user_class: Option<&'a [u8]>,
}

#[derive(Clone, Copy, PartialEq, Eq)]
enum Mode {
    Advertise,
    Commit,
    Extend,
    Release,
    Decline,
    /// A binding being reconfigured: lifetimes 0, binding deleted.
    Zero,
}

struct Ctx<'a> {
    now: u32,
    link: u16,
    cfg: &'a Link6,
    duid: &'a [u8],
    relay: RelayData6,
    via: Via6,
    flags: u8,
    /// The client's classes.
    classes: ClassSet,
    /// The client is registered (a reservation for its DUID).
    known: bool,
}

/// The DHCPv6 server engine. `Send + Sync`: one per daemon, shared by the workers
/// (the binding table is passed to each call).
pub struct Engine6 {
    cfg: Config6,
    server_duid: Vec<u8>,
    /// DUID → (link, reservation index) entries.
    res_by_duid: HashMap<Vec<u8>, Vec<(u16, usize)>>,
    /// (address or prefix, length) → (link, reservation index).
    res_by_addr: HashMap<([u8; 16], u8), (u16, usize)>,
    stats: Arc<Stats6>,
    reconf: Option<Arc<Reconf6Shared>>,
    /// A class or a link asks whether a client is registered (else the lookup is skipped).
    asks_known: bool,
    /// What each class (`cfg.classes[i]`) needs of a message before its conditions are read.
    class_needs: Vec<Needs>,
}

impl Engine6 {
    /// An engine for `cfg` answering as `server_duid`.
    pub fn new(cfg: Config6, server_duid: Vec<u8>, stats: Arc<Stats6>) -> Self {
        let mut res_by_duid: HashMap<Vec<u8>, Vec<(u16, usize)>> = HashMap::new();
        let mut res_by_addr = HashMap::new();
        for (li, l) in cfg.links.iter().enumerate() {
            let li = li as u16;
            for (ri, r) in l.reservations.iter().enumerate() {
                res_by_duid
                    .entry(r.duid.clone())
                    .or_default()
                    .push((li, ri));
                if let Some(a) = r.address {
                    res_by_addr.insert((a.octets(), 128), (li, ri));
                }
                if let Some((p, len)) = r.prefix {
                    res_by_addr.insert((p.octets(), len), (li, ri));
                }
            }
        }
        let cfg_class_needs = cfg.classes.iter().map(|c| Needs::of(&c.matches)).collect();
        let asks_known = cfg.classes.iter().any(|c| c.matches.known.is_some())
            || cfg.links.iter().any(|l| l.access.asks_known());
        Engine6 {
            cfg,
            server_duid,
            res_by_duid,
            res_by_addr,
            stats,
            reconf: None,
            asks_known,
            class_needs: cfg_class_needs,
        }
    }

    /// Serves Reconfigure (RFC 8415 §18.3.11): clients that send Reconfigure Accept get
    /// their key in the Reply, and bindings flagged reconfiguring follow the spec's event
    /// table.
    pub fn with_reconfigure(mut self, shared: Arc<Reconf6Shared>) -> Self {
        self.reconf = Some(shared);
        self
    }

    /// The reconfigure side, when enabled.
    pub fn reconfigure(&self) -> Option<&Arc<Reconf6Shared>> {
        self.reconf.as_ref()
    }

    /// The counters.
    pub fn stats(&self) -> &Arc<Stats6> {
        &self.stats
    }

    /// The configuration served.
    pub fn config(&self) -> &Config6 {
        &self.cfg
    }

    /// The server DUID.
    pub fn server_duid(&self) -> &[u8] {
        &self.server_duid
    }

    fn silence(&self, s: Silence6) -> Decision6 {
        let c = match s {
            Silence6::Malformed(_) => &self.stats.malformed,
            Silence6::NotForServer => &self.stats.not_for_server,
            Silence6::BadIds => &self.stats.bad_ids,
            Silence6::UntrustedRelay => &self.stats.untrusted_relay,
            Silence6::TooManyHops => &self.stats.too_many_hops,
            Silence6::NoLink => &self.stats.no_link,
            Silence6::Overflow => &self.stats.overflow,
            Silence6::Reconfiguring => &self.stats.reconf_solicit_dropped,
            Silence6::UnknownRefused => &self.stats.unknown_refused,
            Silence6::NothingToConfirm => return Decision6::Silence(s),
        };
        Stats6::inc(c);
        Decision6::Silence(s)
    }

    /// Handles one message (`payload`: the UDP payload) at unix time `now`; a reply is
    /// written to `out`.
    pub fn handle(
        &self,
        table: &mut BindingTable6,
        now: u32,
        meta: &RxMeta6,
        payload: &[u8],
        out: &mut [u8],
    ) -> Decision6 {
        Stats6::inc(&self.stats.received);
        let r = if payload.first() == Some(&msg::LEASEQUERY) {
            self.leasequery(table, now, meta, payload, out)
        } else {
            self.handle_inner(table, now, meta, payload, out)
        };
        match r {
            Ok(d) => d,
            Err(s) => self.silence(s),
        }
    }

    fn handle_inner(
        &self,
        table: &mut BindingTable6,
        now: u32,
        meta: &RxMeta6,
        payload: &[u8],
        out: &mut [u8],
    ) -> Result<Decision6, Silence6> {
        let mut levels: [Option<Level<'_>>; MAX_RELAYS] = [None; MAX_RELAYS];
        let mut n = 0;
        let mut inner = payload;
        let mut base = 0;
        if inner.first() == Some(&msg::RELAY_FORW) {
            if !self.cfg.trusted_relays.contains(&meta.src) {
                return Err(Silence6::UntrustedRelay);
            }
            Stats6::inc(&self.stats.relayed);
        }
        while inner.first() == Some(&msg::RELAY_FORW) {
            if n == MAX_RELAYS {
                return Err(Silence6::TooManyHops);
            }
            let r = Relay::parse(inner, base).map_err(Silence6::Malformed)?;
            let mut body = None;
            let mut interface_id = None;
            for o in r.options {
                let (code, b, at) = o.map_err(Silence6::Malformed)?;
                match code {
                    opt::RELAY_MSG if body.is_none() => body = Some((b, at)),
                    opt::INTERFACE_ID if interface_id.is_none() => interface_id = Some(b),
                    _ => {}
                }
            }
            let Some((b, at)) = body else {
                return Err(Silence6::Malformed(WireError {
                    offset: base,
                    what: "Relay-Forward without a Relay Message option",
                }));
            };
            levels[n] = Some(Level {
                hop: r.hop_count,
                link: r.link,
                peer: r.peer,
                interface_id,
                options: r.options,
            });
            n += 1;
            inner = b;
            base = at;
        }
        let m = Message::parse(inner, base).map_err(Silence6::Malformed)?;
        let cm = parse_client(&m)?;

        // Relay data from the relay nearest the client.
        let mut relay = RelayData6::default();
        if let Some(Some(l)) = n.checked_sub(1).map(|i| levels[i]) {
            relay.link_address = l.link;
            relay.peer_address = l.peer;
            if let Some(id) = l.interface_id {
                relay.interface_id = Bytes::new(id);
            }
            for (code, b, _) in l.options.flatten() {
                match code {
                    opt::REMOTE_ID => relay.remote_id = Bytes::new(b),
                    opt::SUBSCRIBER_ID => relay.subscriber_id = Bytes::new(b),
                    opt::CLIENT_LINKLAYER_ADDR if b.len() >= 2 => {
                        relay.lladdr_type = u16::from_be_bytes([b[0], b[1]]);
                        relay.lladdr = Bytes::new(&b[2..]);
                    }
                    _ => {}
                }
            }
        }
        let link = self
            .select_link(&levels[..n], meta)
            .ok_or(Silence6::NoLink)?;
        let cfg = &self.cfg.links[usize::from(link)];

        // RFC 8415 §16: identifiers.
        let ours = |s: Option<&[u8]>| s == Some(&self.server_duid[..]);
        let ok = match cm.typ {
            msg::SOLICIT | msg::REBIND | msg::CONFIRM => {
                cm.client_id.is_some() && cm.server_id.is_none()
            }
            msg::REQUEST | msg::RENEW | msg::RELEASE | msg::DECLINE => {
                cm.client_id.is_some() && ours(cm.server_id)
            }
            msg::INFORMATION_REQUEST => {
                cm.n_ias == 0 && (cm.server_id.is_none() || ours(cm.server_id))
            }
            _ => return Err(Silence6::NotForServer),
        };
        if !ok {
            return Err(Silence6::BadIds);
        }
        let duid = cm.client_id.unwrap_or(&[]);
        // The way back for a Reconfigure: the sender, and the relay nearest the client.
        let mut via = Via6 {
            hops: n as u8,
            src: meta.src.octets(),
            ..Via6::default()
        };
        if let Some(Some(l)) = n.checked_sub(1).map(|i| levels[i]) {
            via.link = l.link;
            via.peer = l.peer;
        }
        // Classes and registration, once per message.
        let known = self.asks_known && self.res_by_duid.contains_key(duid);
        let classes = if self.cfg.classes.is_empty() {
            ClassSet::EMPTY
        } else {
            self.classify(&cm, duid, &relay, known)
        };
        if cfg.access.deny_unknown && !known && !matches!(cm.typ, msg::RELEASE | msg::DECLINE) {
            return Err(Silence6::UnknownRefused);
        }
        let rapid = cm.typ == msg::SOLICIT && cm.rapid && cfg.rapid_commit;
        let give_key = self.reconf.is_some()
            && cm.reconf_accept
            && (rapid || matches!(cm.typ, msg::REQUEST | msg::RENEW | msg::REBIND));
        let ctx = Ctx {
            now,
            link,
            cfg,
            duid,
            relay,
            via,
            flags: if cm.reconf_accept {
                FLAG_RECONFIGURE_ACCEPT | if give_key { FLAG_RECONF_KEY6 } else { 0 }
            } else {
                0
            },
            classes,
            known,
        };
        // The spec's event table for a client being reconfigured (looked up only while
        // some client may be flagged).
        let reconfiguring = self.reconf.as_ref().is_some_and(|r| r.any_flagged())
            && cm.ias[..cm.n_ias]
                .iter()
                .flatten()
                .any(|&(kind, ia)| ia_reconfiguring(table, kind, duid, ia.iaid));
        if reconfiguring && cm.typ == msg::SOLICIT {
            for &(kind, ia) in cm.ias[..cm.n_ias].iter().flatten() {
                let mut slots = [0u32; MAX_ENTRIES * 2];
                let found = table.find_ia(kind, duid, ia.iaid, &mut slots);
                for &s in &slots[..found] {
                    if let Some(mut b) = table.get(s).filter(is_reconfiguring) {
                        delete_binding(&mut b, now);
                        let _ = table.put(Some(s), &b);
                    }
                }
            }
            return Err(Silence6::Reconfiguring);
        }

        let mut w = Writer::new(out);
        for l in levels[..n].iter().flatten() {
            w.relay_header(msg::RELAY_REPL, l.hop, &l.link, &l.peer);
            if let Some(id) = l.interface_id {
                w.option(opt::INTERFACE_ID, id);
            }
            w.open(opt::RELAY_MSG);
        }
        let reply_type = if cm.typ == msg::SOLICIT && !rapid {
            msg::ADVERTISE
        } else {
            msg::REPLY
        };
        w.header(reply_type, cm.xid);
        w.option(opt::SERVERID, &self.server_duid);
        if let Some(c) = cm.client_id {
            w.option(opt::CLIENTID, c);
        }
        let mut committed = false;
        let unicast = n == 0 && !meta.multicast;
        match cm.typ {
            msg::REQUEST | msg::RENEW | msg::RELEASE | msg::DECLINE if unicast => {
                Stats6::inc(&self.stats.use_multicast);
                w.status(status::USE_MULTICAST, "use multicast");
            }
            msg::SOLICIT | msg::REQUEST | msg::RENEW | msg::REBIND => {
                if rapid {
                    Stats6::inc(&self.stats.rapid_commit);
                    w.option(opt::RAPID_COMMIT, &[]);
                }
                let mode = match cm.typ {
                    msg::SOLICIT if !rapid => Mode::Advertise,
                    msg::SOLICIT | msg::REQUEST => Mode::Commit,
                    _ => Mode::Extend,
                };
                for &(kind, ia) in cm.ias[..cm.n_ias].iter().flatten() {
                    let m = if reconfiguring
                        && mode != Mode::Advertise
                        && ia_reconfiguring(table, kind, duid, ia.iaid)
                    {
                        Mode::Zero
                    } else {
                        mode
                    };
                    committed |= self.do_ia(table, &ctx, kind, &ia, m, &mut w);
                }
                if cm.reconf_accept && mode != Mode::Advertise {
                    // Recorded on the bindings (FLAG_RECONFIGURE_ACCEPT); the server
                    // signals its own willingness by echoing the option.
                    w.option(opt::RECONF_ACCEPT, &[]);
                    if let (true, Some(r)) = (give_key, &self.reconf) {
                        // RFC 8415 §20.4.1: the key, RDM 0 with a counter that the
                        // Reconfigures' (seconds << 32 | n) stay above.
                        Stats6::inc(&self.stats.reconf_keys);
                        let auth = key_auth(&r.keys.key_for(duid), u64::from(now) << 32);
                        w.option(opt::AUTH, &auth);
                    }
                }
            }
            msg::RELEASE | msg::DECLINE => {
                let mode = if cm.typ == msg::RELEASE {
                    Mode::Release
                } else {
                    Mode::Decline
                };
                for &(kind, ia) in cm.ias[..cm.n_ias].iter().flatten() {
                    committed |= self.do_ia(table, &ctx, kind, &ia, mode, &mut w);
                }
                w.status(status::SUCCESS, "done");
            }
            msg::CONFIRM => {
                let (mut any, mut all_on) = (false, true);
                for &(kind, ia) in cm.ias[..cm.n_ias].iter().flatten() {
                    if kind != IaKind::Na {
                        continue;
                    }
                    for (code, b, at) in ia.options.flatten() {
                        if code == opt::IAADDR {
                            let e = IaEntry::parse_addr(b, at).map_err(Silence6::Malformed)?;
                            any = true;
                            all_on &= prefix_contains(cfg.prefix, cfg.prefix_len, &e.addr);
                        }
                    }
                }
                if !any {
                    return Err(Silence6::NothingToConfirm);
                }
                if all_on {
                    w.status(status::SUCCESS, "all on link");
                } else {
                    w.status(status::NOT_ON_LINK, "not on link");
                }
            }
            _ => {} // Information-request: options only.
        }
        for (code, body) in &cfg.options {
            // A member class's option 17 of the same enterprise number replaces the link's.
            if *code == opt::VENDOR_OPTS
                && !classes.is_empty()
                && self.class_vendor(classes, body).is_some()
            {
                continue;
            }
            w.option(*code, body);
        }
        for id in classes.iter() {
            let Some(c) = self.cfg.classes.get(usize::from(id)) else {
                continue;
            };
            for body in &c.vendor_options {
                // The first member class (file order) that sets an enterprise number wins.
                if self.class_vendor(classes, body) == Some(id) {
                    w.option(opt::VENDOR_OPTS, body);
                }
            }
        }
        for _ in 0..n {
            w.close();
        }
        let Some(len) = w.finish() else {
            return Err(Silence6::Overflow);
        };
        Stats6::inc(&self.stats.replies);
        Stats6::inc(if reply_type == msg::ADVERTISE {
            &self.stats.advertise
        } else {
            &self.stats.reply
        });
        Ok(Decision6::Reply {
            len,
            to: meta.src,
            port: if n == 0 { 546 } else { 547 },
            committed,
            at_once: !committed,
        })
    }

    /// The client's classes (file order) from its message and the relay data of the relay
    /// nearest it. Allocation-free.
    fn classify(
        &self,
        cm: &ClientMsg<'_>,
        duid: &[u8],
        relay: &RelayData6,
        known: bool,
    ) -> ClassSet {
        fn opt_of<const N: usize>(b: &Bytes<N>) -> Option<&[u8]> {
            Some(b.as_slice()).filter(|s| !s.is_empty())
        }
        let rid = relay.remote_id.as_slice();
        let f = Facts6 {
            duid,
            known,
            vendor: cm
                .vendor_class
                .filter(|b| b.len() >= 4)
                .map(|b| (u32::from_be_bytes([b[0], b[1], b[2], b[3]]), &b[4..])),
            user_class: cm.user_class,
            interface_id: opt_of(&relay.interface_id),
            remote_id: rid.get(4..).filter(|r| !r.is_empty()),
            subscriber_id: opt_of(&relay.subscriber_id),
            lladdr: opt_of(&relay.lladdr).or_else(|| duid_lladdr(duid)),
        };
        let set = classify_with(&self.cfg.classes, &self.class_needs, &f);
        if !set.is_empty() {
            Stats6::inc(&self.stats.classified);
        }
        set
    }

    /// The first class of `classes` (file order) with an option 17 of the enterprise number
    /// that starts `body` (an option 17 body).
    fn class_vendor(&self, classes: ClassSet, body: &[u8]) -> Option<u8> {
        let ent = body.get(..4)?;
        classes.iter().find(|&id| {
            self.cfg
                .classes
                .get(usize::from(id))
                .is_some_and(|c| c.vendor_options.iter().any(|v| v.get(..4) == Some(ent)))
        })
    }

    /// The link of a message: the link-address of the relay nearest the client that set
    /// one (RFC 8415 §19.1.1); for a direct message, the receiving interface, a global
    /// source address, or the only link.
    fn select_link(&self, levels: &[Option<Level<'_>>], meta: &RxMeta6) -> Option<u16> {
        let by_addr = |a: &[u8; 16]| {
            self.cfg
                .links
                .iter()
                .position(|l| prefix_contains(l.prefix, l.prefix_len, a))
                .map(|i| i as u16)
        };
        for l in levels.iter().rev().flatten() {
            if l.link != [0; 16] {
                return by_addr(&l.link);
            }
        }
        if let Some(i) = self
            .cfg
            .links
            .iter()
            .position(|l| l.ifindexes.contains(&meta.ifindex))
        {
            return Some(i as u16);
        }
        let src = meta.src.octets();
        if src[0] != 0xfe || src[1] & 0xc0 != 0x80 {
            if let Some(i) = by_addr(&src) {
                return Some(i);
            }
        }
        (self.cfg.links.len() == 1).then_some(0)
    }

    /// Answers one IA; returns whether the table was written.
    fn do_ia(
        &self,
        t: &mut BindingTable6,
        ctx: &Ctx<'_>,
        kind: IaKind,
        ia: &Ia<'_>,
        mode: Mode,
        w: &mut Writer<'_>,
    ) -> bool {
        let code = match kind {
            IaKind::Na => opt::IA_NA,
            IaKind::Pd => opt::IA_PD,
        };
        let cfg = ctx.cfg;
        let (t1, t2) = self.t1_t2(cfg);
        let mut slots = [0u32; MAX_ENTRIES * 2];
        let found = t.find_ia(kind, ctx.duid, ia.iaid, &mut slots);
        // The client's entries (hints, or what it renews/releases).
        let mut listed = [None::<IaEntry>; MAX_ENTRIES];
        let mut n_listed = 0;
        for (c, b, at) in ia.options.flatten() {
            let e = match (kind, c) {
                (IaKind::Na, opt::IAADDR) => IaEntry::parse_addr(b, at),
                (IaKind::Pd, opt::IAPREFIX) => IaEntry::parse_prefix(b, at),
                _ => continue,
            };
            if let (Ok(e), true) = (e, n_listed < MAX_ENTRIES) {
                listed[n_listed] = Some(e);
                n_listed += 1;
            }
        }
        let listed = &listed[..n_listed];
        let mut written = false;
        match mode {
            Mode::Advertise | Mode::Commit => {
                // (entry, slot of its record if any)
                let mut give = [None::<([u8; 16], u8, Option<u32>)>; MAX_ENTRIES];
                let mut n_give = 0;
                for &s in &slots[..found] {
                    let Some(b) = t.get(s) else { continue };
                    if b.link == ctx.link
                        && b.state != BindingState::Declined
                        && n_give < MAX_ENTRIES
                        && self.still_valid(ctx, &b)
                    {
                        give[n_give] = Some((b.addr, b.prefix_len, Some(s)));
                        n_give += 1;
                    }
                }
                if n_give == 0 {
                    if let Some((a, l)) = self.reserved_for(ctx.link, ctx.duid, kind) {
                        if let Ok(s) = self.usable(t, ctx, kind, &a, l, ia.iaid) {
                            give[0] = Some((a, l, s));
                            n_give = 1;
                        }
                    }
                }
                if n_give == 0 {
                    for e in listed.iter().flatten() {
                        if n_give == MAX_ENTRIES {
                            break;
                        }
                        let pick = if e.addr != [0; 16] && self.in_pools(ctx, kind, e) {
                            self.usable(t, ctx, kind, &e.addr, e.prefix_len, ia.iaid)
                                .ok()
                                .map(|s| (e.addr, e.prefix_len, s))
                        } else if kind == IaKind::Pd && e.addr == [0; 16] {
                            self.pick(t, ctx, kind, ia.iaid, n_give as u32, Some(e.prefix_len))
                        } else {
                            None
                        };
                        if let Some(p) = pick {
                            if !give[..n_give].iter().flatten().any(|g| g.0 == p.0) {
                                give[n_give] = Some(p);
                                n_give += 1;
                            }
                        }
                    }
                }
                if n_give == 0 {
                    if let Some(p) = self.pick(t, ctx, kind, ia.iaid, 0, None) {
                        give[0] = Some(p);
                        n_give = 1;
                    }
                }
                if n_give == 0 {
                    if self.class_refused(ctx, kind) {
                        Stats6::inc(&self.stats.class_refused);
                    }
                    w.open_ia(code, ia.iaid, 0, 0);
                    if kind == IaKind::Na {
                        Stats6::inc(&self.stats.no_addrs);
                        w.status(status::NO_ADDRS_AVAIL, "no addresses available");
                    } else {
                        Stats6::inc(&self.stats.no_prefix);
                        w.status(status::NO_PREFIX_AVAIL, "no prefixes available");
                    }
                    w.close();
                    return false;
                }
                w.open_ia(code, ia.iaid, t1, t2);
                for &(addr, plen, slot) in give[..n_give].iter().flatten() {
                    if mode == Mode::Commit {
                        let b = self.active(
                            ctx,
                            kind,
                            ia.iaid,
                            addr,
                            plen,
                            slot.and_then(|s| t.get(s)),
                        );
                        if t.put(slot, &b).is_err() {
                            Stats6::inc(&self.stats.table_full);
                            continue;
                        }
                        Stats6::inc(&self.stats.bound);
                        written = true;
                    }
                    w.entry(&IaEntry {
                        addr,
                        prefix_len: plen,
                        preferred: cfg.preferred,
                        valid: cfg.valid,
                    });
                }
                w.close();
            }
            Mode::Extend => {
                w.open_ia(code, ia.iaid, t1, t2);
                let mut any = false;
                // The IA holds a binding here that is no longer the client's to have (its
                // pool's rules no longer admit it, or the pool is gone).
                let mut held = false;
                // What was extended (the client's bindings here, all Active now).
                let mut renewed = [([0u8; 16], 0u8); MAX_ENTRIES * 2];
                let mut n_renewed = 0;
                for &s in &slots[..found] {
                    let Some(b) = t.get(s) else { continue };
                    if b.link != ctx.link || b.state == BindingState::Declined {
                        continue;
                    }
                    if !self.still_valid(ctx, &b) {
                        held |= b.state == BindingState::Active;
                        continue;
                    }
                    let nb = self.active(ctx, kind, ia.iaid, b.addr, b.prefix_len, Some(b));
                    if t.put(Some(s), &nb).is_ok() {
                        Stats6::inc(&self.stats.renewed);
                        written = true;
                        any = true;
                        if let Some(r) = renewed.get_mut(n_renewed) {
                            *r = (b.addr, b.prefix_len);
                            n_renewed += 1;
                        }
                        w.entry(&IaEntry {
                            addr: b.addr,
                            prefix_len: b.prefix_len,
                            preferred: cfg.preferred,
                            valid: cfg.valid,
                        });
                    }
                }
                // Entries the client holds that are not (or no longer) its binding here:
                // zero lifetimes (RFC 8415 §18.3.4, §18.3.5).
                let mut zeroed = false;
                for e in listed.iter().flatten() {
                    // Its binding here (on this link, Active and still its own) is one of
                    // those just extended: every such binding was.
                    let mine = renewed[..n_renewed].contains(&(e.addr, e.prefix_len));
                    if !mine && (any || held || !self.on_link(cfg, kind, e)) {
                        zeroed = true;
                        w.entry(&IaEntry {
                            preferred: 0,
                            valid: 0,
                            ..*e
                        });
                    }
                }
                if !any && !zeroed {
                    Stats6::inc(&self.stats.no_binding);
                    w.status(status::NO_BINDING, "no binding");
                }
                w.close();
            }
            Mode::Zero => {
                w.open_ia(code, ia.iaid, 0, 0);
                for &s in &slots[..found] {
                    let Some(mut b) = t.get(s) else { continue };
                    if !is_reconfiguring(&b) {
                        continue;
                    }
                    w.entry(&IaEntry {
                        addr: b.addr,
                        prefix_len: b.prefix_len,
                        preferred: 0,
                        valid: 0,
                    });
                    delete_binding(&mut b, ctx.now);
                    if t.put(Some(s), &b).is_ok() {
                        Stats6::inc(&self.stats.reconf_zeroed);
                        written = true;
                    }
                }
                w.close();
            }
            Mode::Release | Mode::Decline => {
                let mut any = false;
                for e in listed.iter().flatten() {
                    for &s in &slots[..found] {
                        let Some(mut b) = t.get(s) else { continue };
                        if b.addr != e.addr || b.prefix_len != e.prefix_len {
                            continue;
                        }
                        any = true;
                        b.state = if mode == Mode::Release {
                            Stats6::inc(&self.stats.released);
                            BindingState::Released
                        } else {
                            Stats6::inc(&self.stats.declined);
                            BindingState::Declined
                        };
                        b.state_start = ctx.now;
                        b.cltt = ctx.now;
                        b.expiry = b.expiry.min(ctx.now);
                        written |= t.put(Some(s), &b).is_ok();
                    }
                }
                if !any {
                    Stats6::inc(&self.stats.no_binding);
                    w.open_ia(code, ia.iaid, 0, 0);
                    w.status(status::NO_BINDING, "no binding");
                    w.close();
                }
            }
        }
        written
    }

    fn t1_t2(&self, cfg: &Link6) -> (u32, u32) {
        let t1 = if cfg.t1 == 0 {
            cfg.preferred / 2
        } else {
            cfg.t1
        };
        let t2 = if cfg.t2 == 0 {
            (u64::from(cfg.preferred) * 4 / 5) as u32
        } else {
            cfg.t2
        };
        (t1.min(t2), t2)
    }

    /// The record written for an active binding.
    fn active(
        &self,
        ctx: &Ctx<'_>,
        kind: IaKind,
        iaid: u32,
        addr: [u8; 16],
        plen: u8,
        old: Option<Binding6>,
    ) -> Binding6 {
        let mut b = match old {
            Some(o) if o.duid.as_slice() == ctx.duid && o.iaid == iaid && o.kind == kind => o,
            _ => Binding6::new(kind, ctx.duid, iaid, addr, plen),
        };
        if b.state != BindingState::Active {
            b.state_start = ctx.now;
        }
        b.state = BindingState::Active;
        b.link = ctx.link;
        b.cltt = ctx.now;
        b.preferred = ctx.cfg.preferred;
        b.valid = ctx.cfg.valid;
        b.expiry = ctx.now.saturating_add(ctx.cfg.valid);
        // A record that ended while reconfiguring carries no flag into its next life.
        b.flags = (b.flags & !(FLAG_RECONFIGURE_ACCEPT | FLAG_RECONF_KEY6 | FLAG_RECONFIGURING6))
            | ctx.flags;
        if ctx.relay != RelayData6::default() {
            b.relay = ctx.relay;
        }
        b.via = ctx.via;
        b
    }

    fn reserved_for(&self, link: u16, duid: &[u8], kind: IaKind) -> Option<([u8; 16], u8)> {
        let v = self.res_by_duid.get(duid)?;
        for &(l, ri) in v {
            if l != link {
                continue;
            }
            let r = &self.cfg.links[usize::from(l)].reservations[ri];
            match kind {
                IaKind::Na => {
                    if let Some(a) = r.address {
                        return Some((a.octets(), 128));
                    }
                }
                IaKind::Pd => {
                    if let Some((p, len)) = r.prefix {
                        return Some((p.octets(), len));
                    }
                }
            }
        }
        None
    }

    /// Reserved for another client.
    fn reserved_other(&self, addr: &[u8; 16], plen: u8, duid: &[u8]) -> bool {
        self.res_by_addr
            .get(&(*addr, plen))
            .is_some_and(|&(l, ri)| {
                self.cfg.links[usize::from(l)].reservations[ri]
                    .duid
                    .as_slice()
                    != duid
            })
    }

    /// The binding's address is still the client's to have on its link (in a pool or
    /// reserved to it).
    fn still_valid(&self, ctx: &Ctx<'_>, b: &Binding6) -> bool {
        let duid = ctx.duid;
        let e = IaEntry {
            addr: b.addr,
            prefix_len: b.prefix_len,
            preferred: 0,
            valid: 0,
        };
        (self.in_pools(ctx, b.kind, &e) && !self.reserved_other(&b.addr, b.prefix_len, duid))
            || self.reserved_for(b.link, duid, b.kind) == Some((b.addr, b.prefix_len))
    }

    /// `e` lies in a pool of the link that the client may draw from (its classes and
    /// registration against the pool's `allow` / `deny` / `deny-unknown`).
    fn in_pools(&self, ctx: &Ctx<'_>, kind: IaKind, e: &IaEntry) -> bool {
        let (cfg, acc) = (ctx.cfg, &ctx.cfg.access);
        match kind {
            IaKind::Na => {
                let a = u128::from_be_bytes(e.addr);
                cfg.addr_pools.iter().enumerate().any(|(i, p)| {
                    u128::from(p.start) <= a
                        && a <= u128::from(p.end)
                        && acc.permits(false, i, ctx.classes, ctx.known)
                })
            }
            IaKind::Pd => cfg.prefix_pools.iter().enumerate().any(|(i, p)| {
                p.contains(&e.addr, e.prefix_len) && acc.permits(true, i, ctx.classes, ctx.known)
            }),
        }
    }

    /// The link has pools of `kind` but none the client may draw from.
    fn class_refused(&self, ctx: &Ctx<'_>, kind: IaKind) -> bool {
        let (pd, n) = match kind {
            IaKind::Na => (false, ctx.cfg.addr_pools.len()),
            IaKind::Pd => (true, ctx.cfg.prefix_pools.len()),
        };
        n > 0 && !(0..n).any(|i| ctx.cfg.access.permits(pd, i, ctx.classes, ctx.known))
    }

    fn on_link(&self, cfg: &Link6, kind: IaKind, e: &IaEntry) -> bool {
        match kind {
            IaKind::Na => prefix_contains(cfg.prefix, cfg.prefix_len, &e.addr),
            IaKind::Pd => cfg
                .prefix_pools
                .iter()
                .any(|p| prefix_contains(p.prefix, p.prefix_len, &e.addr)),
        }
    }

    /// May `addr` go to this client's IA? Ok(slot of an existing record to reuse).
    fn usable(
        &self,
        t: &BindingTable6,
        ctx: &Ctx<'_>,
        kind: IaKind,
        addr: &[u8; 16],
        plen: u8,
        iaid: u32,
    ) -> Result<Option<u32>, ()> {
        if self.reserved_other(addr, plen, ctx.duid) {
            return Err(());
        }
        let Some(s) = t.find_addr(kind, addr, plen) else {
            return Ok(None);
        };
        let Some(b) = t.get(s) else { return Ok(None) };
        if b.state == BindingState::Declined
            && ctx.now < b.state_start.saturating_add(self.cfg.decline_hold)
        {
            return Err(());
        }
        if b.duid.as_slice() == ctx.duid && b.iaid == iaid {
            return Ok(Some(s));
        }
        match b.state {
            BindingState::Active if b.expiry > ctx.now => Err(()),
            _ => Ok(Some(s)),
        }
    }

    /// A free address/prefix from the link's pools, starting at a point hashed from the
    /// client (so Advertise and Request agree without storing anything). `want_len`
    /// restricts prefix pools to one delegated length.
    fn pick(
        &self,
        t: &BindingTable6,
        ctx: &Ctx<'_>,
        kind: IaKind,
        iaid: u32,
        salt: u32,
        want_len: Option<u8>,
    ) -> Option<([u8; 16], u8, Option<u32>)> {
        let h = fnv(ctx.duid, iaid, kind as u8, salt);
        match kind {
            IaKind::Na => {
                for (pi, p) in ctx.cfg.addr_pools.iter().enumerate() {
                    let (s, e) = (u128::from(p.start), u128::from(p.end));
                    if e < s || !ctx.cfg.access.permits(false, pi, ctx.classes, ctx.known) {
                        continue;
                    }
                    let n = (e - s).saturating_add(1);
                    let tries = if n <= 4096 { n } else { 256 };
                    for i in 0..tries {
                        let a = (s + (u128::from(h).wrapping_add(i)) % n).to_be_bytes();
                        if let Ok(slot) = self.usable(t, ctx, kind, &a, 128, iaid) {
                            return Some((a, 128, slot));
                        }
                    }
                }
                None
            }
            IaKind::Pd => {
                for (pi, p) in ctx.cfg.prefix_pools.iter().enumerate() {
                    if want_len.is_some_and(|l| l != p.delegated_len)
                        || !ctx.cfg.access.permits(true, pi, ctx.classes, ctx.known)
                    {
                        continue;
                    }
                    let n = p.count();
                    let tries = if n <= 4096 { n } else { 256 };
                    for i in 0..tries {
                        let a = p.nth(h.wrapping_add(i) % n);
                        if let Ok(slot) = self.usable(t, ctx, kind, &a, p.delegated_len, iaid) {
                            return Some((a, p.delegated_len, slot));
                        }
                    }
                }
                None
            }
        }
    }
}

/// Whether the client's IA has a binding being reconfigured.
fn ia_reconfiguring(t: &BindingTable6, kind: IaKind, duid: &[u8], iaid: u32) -> bool {
    let mut slots = [0u32; MAX_ENTRIES * 2];
    let found = t.find_ia(kind, duid, iaid, &mut slots);
    slots[..found]
        .iter()
        .any(|&s| t.get(s).is_some_and(|b| is_reconfiguring(&b)))
}

fn fnv(duid: &[u8], iaid: u32, kind: u8, salt: u32) -> u64 {
    let mut h: u64 = 0xcbf2_9ce4_8422_2325;
    let mut eat = |b: u8| {
        h ^= u64::from(b);
        h = h.wrapping_mul(0x0000_0100_0000_01b3);
    };
    duid.iter().for_each(|&b| eat(b));
    iaid.to_be_bytes().iter().for_each(|&b| eat(b));
    eat(kind);
    salt.to_be_bytes().iter().for_each(|&b| eat(b));
    h ^ (h >> 29)
}

fn parse_client<'a>(m: &Message<'a>) -> Result<ClientMsg<'a>, Silence6> {
    let mut cm = ClientMsg {
        typ: m.msg_type,
        xid: m.xid,
        client_id: None,
        server_id: None,
        ias: [None; MAX_IAS],
        n_ias: 0,
        rapid: false,
        reconf_accept: false,
        vendor_class: None,
        user_class: None,
    };
    for o in m.options {
        let (code, b, at) = o.map_err(Silence6::Malformed)?;
        match code {
            opt::CLIENTID => {
                if cm.client_id.is_some() || b.is_empty() || b.len() > lease_store::v6::DUID_MAX {
                    return Err(Silence6::BadIds);
                }
                cm.client_id = Some(b);
            }
            opt::SERVERID => {
                if cm.server_id.is_some() {
                    return Err(Silence6::BadIds);
                }
                cm.server_id = Some(b);
            }
            opt::IA_NA | opt::IA_PD => {
                let ia = Ia::parse(b, at).map_err(Silence6::Malformed)?;
                let kind = if code == opt::IA_NA {
                    IaKind::Na
                } else {
                    IaKind::Pd
                };
                if cm.n_ias < MAX_IAS {
                    cm.ias[cm.n_ias] = Some((kind, ia));
                    cm.n_ias += 1;
                }
            }
            opt::RAPID_COMMIT => cm.rapid = true,
            opt::RECONF_ACCEPT => cm.reconf_accept = true,
            opt::VENDOR_CLASS if cm.vendor_class.is_none() => cm.vendor_class = Some(b),
            opt::USER_CLASS if cm.user_class.is_none() => cm.user_class = Some(b),
            _ => {}
        }
    }
    Ok(cm)
}

/// A DUID-LLT (RFC 8415 §11.2) for hardware type 1 (Ethernet).
pub fn duid_llt(time_since_2000: u32, mac: [u8; 6]) -> Vec<u8> {
    let mut v = vec![0, 1, 0, 1];
    v.extend_from_slice(&time_since_2000.to_be_bytes());
    v.extend_from_slice(&mac);
    v
}

/// A DUID-EN (RFC 8415 §11.3).
pub fn duid_en(enterprise: u32, id: &[u8]) -> Vec<u8> {
    let mut v = vec![0, 2];
    v.extend_from_slice(&enterprise.to_be_bytes());
    v.extend_from_slice(id);
    v
}
