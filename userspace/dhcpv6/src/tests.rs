//! Engine tests: each message type, IA_NA and IA_PD, hints, status codes, relays.

use std::net::Ipv6Addr;
use std::sync::Arc;

use lease_store::v6::{BindingState, BindingTable6, IaKind, FLAG_RECONFIGURE_ACCEPT};

use crate::config::{encode, AddrPool6, Config6, Link6, PrefixPool6, Reservation6};
use crate::engine::{
    duid_en, Decision6, Engine6, RxMeta6, Silence6, QUERY_BY_ADDRESS, QUERY_BY_CLIENTID,
};
use crate::stats::Stats6;
use crate::wire::{msg, opt, status, Ia, IaEntry, Message, Relay, Writer};

const NOW: u32 = 1_000_000;
const RELAY_SRC: Ipv6Addr = Ipv6Addr::new(0x2001, 0xdb8, 9, 0, 0, 0, 0, 1);

fn ip(s: &str) -> Ipv6Addr {
    s.parse().unwrap()
}

fn link(name: &str, prefix: &str, pool: (&str, &str), pd: (&str, u8, u8)) -> Link6 {
    Link6 {
        name: name.into(),
        prefix: ip(prefix),
        prefix_len: 64,
        ifindexes: vec![],
        addr_pools: vec![AddrPool6 {
            start: ip(pool.0),
            end: ip(pool.1),
        }],
        prefix_pools: vec![PrefixPool6 {
            prefix: ip(pd.0),
            prefix_len: pd.1,
            delegated_len: pd.2,
        }],
        preferred: 3000,
        valid: 4000,
        t1: 0,
        t2: 0,
        rapid_commit: true,
        options: vec![(opt::DNS_SERVERS, encode::addresses(&[ip("fd77::53")]))],
        reservations: vec![],
        access: Default::default(),
    }
}

fn config() -> Config6 {
    let mut l1 = link(
        "lan",
        "fd77::",
        ("fd77::100", "fd77::1ff"),
        ("fd77:100::", 40, 56),
    );
    l1.ifindexes = vec![7];
    l1.prefix_pools.push(PrefixPool6 {
        prefix: ip("fd77:200::"),
        prefix_len: 48,
        delegated_len: 60,
    });
    l1.reservations.push(Reservation6 {
        duid: b"\x00\x03reserved".to_vec(),
        address: Some(ip("fd77::1:1")),
        prefix: Some((ip("fd77:300::"), 56)),
    });
    let l2 = link(
        "relayed",
        "2001:db8:2::",
        ("2001:db8:2::10", "2001:db8:2::12"),
        ("2001:db8:2200::", 48, 56),
    );
    Config6 {
        links: vec![l1, l2],
        trusted_relays: vec![RELAY_SRC],
        decline_hold: 600,
        leasequery_allow: vec![(RELAY_SRC, 128), (ip("fd77:ffff::"), 64)],
        classes: vec![],
    }
}

struct H {
    e: Engine6,
    t: BindingTable6,
    out: Vec<u8>,
}

fn sduid() -> Vec<u8> {
    duid_en(4491, b"xdhcpd-test")
}

impl H {
    fn new() -> Self {
        H {
            e: Engine6::new(config(), sduid(), Arc::new(Stats6::default())),
            t: BindingTable6::in_memory(64),
            out: vec![0; 1500],
        }
    }
    fn send_meta(&mut self, meta: RxMeta6, p: &[u8]) -> Decision6 {
        self.e.handle(&mut self.t, NOW, &meta, p, &mut self.out)
    }
    fn send(&mut self, p: &[u8]) -> Decision6 {
        self.send_meta(direct(), p)
    }
    fn reply(&mut self, p: &[u8]) -> Vec<u8> {
        match self.send(p) {
            Decision6::Reply { len, port, .. } => {
                assert_eq!(port, 546);
                self.out[..len].to_vec()
            }
            d => panic!("no reply: {d:?}"),
        }
    }
}

fn direct() -> RxMeta6 {
    RxMeta6 {
        src: ip("fe80::1"),
        multicast: true,
        ifindex: 7,
        src_port: 546,
    }
}

/// IA in a request: kind, iaid, entries (addr, plen).
type IaSpec<'a> = (IaKind, u32, &'a [(&'a str, u8)]);

fn client_msg(
    typ: u8,
    duid: &[u8],
    server: Option<&[u8]>,
    ias: &[IaSpec<'_>],
    extra: &[(u16, &[u8])],
) -> Vec<u8> {
    let mut buf = vec![0u8; 1024];
    let mut w = Writer::new(&mut buf);
    w.header(typ, [0xab, 0xcd, 0xef]);
    w.option(opt::CLIENTID, duid);
    if let Some(s) = server {
        w.option(opt::SERVERID, s);
    }
    for (kind, iaid, entries) in ias {
        let code = if *kind == IaKind::Na {
            opt::IA_NA
        } else {
            opt::IA_PD
        };
        w.open_ia(code, *iaid, 0, 0);
        for (a, plen) in entries.iter() {
            w.entry(&IaEntry {
                addr: ip(a).octets(),
                prefix_len: *plen,
                preferred: 0,
                valid: 0,
            });
        }
        w.close();
    }
    for (c, b) in extra {
        w.option(*c, b);
    }
    let n = w.finish().unwrap();
    buf.truncate(n);
    buf
}

/// A parsed IA: (kind, iaid, t1, t2, status, entries).
type IaR = (IaKind, u32, u32, u32, Option<u16>, Vec<IaEntry>);

/// A parsed reply: (msg type, status, IAs: (kind, iaid, t1, t2, status, entries)).
#[derive(Debug)]
struct R {
    typ: u8,
    status: Option<u16>,
    ias: Vec<IaR>,
    opts: Vec<u16>,
}

fn parse_reply(b: &[u8]) -> R {
    let m = Message::parse(b, 0).unwrap();
    let mut r = R {
        typ: m.msg_type,
        status: None,
        ias: vec![],
        opts: vec![],
    };
    assert_eq!(m.xid, [0xab, 0xcd, 0xef]);
    assert_eq!(m.options.find(opt::SERVERID), Some(&sduid()[..]));
    for o in m.options {
        let (code, body, _) = o.unwrap();
        r.opts.push(code);
        match code {
            opt::STATUS_CODE => r.status = Some(u16::from_be_bytes([body[0], body[1]])),
            opt::IA_NA | opt::IA_PD => {
                let ia = Ia::parse(body, 0).unwrap();
                let kind = if code == opt::IA_NA {
                    IaKind::Na
                } else {
                    IaKind::Pd
                };
                let mut st = None;
                let mut es = vec![];
                for (c, b, _) in ia.options.flatten() {
                    match c {
                        opt::STATUS_CODE => st = Some(u16::from_be_bytes([b[0], b[1]])),
                        opt::IAADDR => es.push(IaEntry::parse_addr(b, 0).unwrap()),
                        opt::IAPREFIX => es.push(IaEntry::parse_prefix(b, 0).unwrap()),
                        _ => {}
                    }
                }
                r.ias.push((kind, ia.iaid, ia.t1, ia.t2, st, es));
            }
            _ => {}
        }
    }
    r
}

const C1: &[u8] = b"\x00\x03\x00\x01\x02\x00\x00\x00\x00\x01";
const C2: &[u8] = b"\x00\x03\x00\x01\x02\x00\x00\x00\x00\x02";

fn addr_of(e: &IaEntry) -> Ipv6Addr {
    Ipv6Addr::from(e.addr)
}

#[test]
fn dhcpv6_solicit_advertises_address_and_prefix_without_binding() {
    let mut h = H::new();
    let r = parse_reply(&h.reply(&client_msg(
        msg::SOLICIT,
        C1,
        None,
        &[(IaKind::Na, 1, &[]), (IaKind::Pd, 2, &[])],
        &[],
    )));
    assert_eq!(r.typ, msg::ADVERTISE);
    assert!(r.opts.contains(&opt::DNS_SERVERS));
    let (k, iaid, t1, t2, st, es) = &r.ias[0];
    assert_eq!(
        (*k, *iaid, *t1, *t2, *st),
        (IaKind::Na, 1, 1500, 2400, None)
    );
    let a = u128::from(addr_of(&es[0]));
    assert!(a >= u128::from(ip("fd77::100")) && a <= u128::from(ip("fd77::1ff")));
    assert_eq!((es[0].preferred, es[0].valid), (3000, 4000));
    let p = &r.ias[1].5[0];
    assert_eq!(p.prefix_len, 56);
    assert!(crate::config::prefix_contains(
        ip("fd77:100::"),
        40,
        &p.addr
    ));
    assert!(h.t.is_empty(), "an Advertise stores nothing");
}

/// Ack mode: a reply whose message wrote nothing durable (an Advertise, also for a bound
/// client; a NoBinding Renew; a Confirm) leaves at once; a Reply that bound or extended
/// waits for its commit.
#[test]
fn dhcpv6_ack_advertise_writes_nothing_and_may_leave_at_once() {
    let mut h = H::new();
    let solicit = client_msg(
        msg::SOLICIT,
        C1,
        None,
        &[(IaKind::Na, 1, &[]), (IaKind::Pd, 2, &[])],
        &[],
    );
    let d = h.send(&solicit);
    assert!(
        matches!(
            d,
            Decision6::Reply {
                committed: false,
                at_once: true,
                ..
            }
        ),
        "{d:?}"
    );
    assert!(!h.t.has_dirty(), "a Solicit wrote a record");
    let req = client_msg(
        msg::REQUEST,
        C1,
        Some(&sduid()),
        &[(IaKind::Na, 1, &[]), (IaKind::Pd, 2, &[])],
        &[],
    );
    let d = h.send(&req);
    assert!(
        matches!(
            d,
            Decision6::Reply {
                committed: true,
                at_once: false,
                ..
            }
        ),
        "{d:?}"
    );
    assert_eq!(h.t.len(), 2);
    h.t.flush_dirty().unwrap();
    // The bound client solicits again: its bindings are advertised, not rewritten.
    let d = h.send(&solicit);
    let Decision6::Reply {
        len,
        committed: false,
        at_once: true,
        ..
    } = d
    else {
        panic!("{d:?}")
    };
    assert_eq!(parse_reply(&h.out[..len]).typ, msg::ADVERTISE);
    assert!(!h.t.has_dirty(), "an Advertise wrote a record");
    // A Renew is a write (its lifetimes extended): it waits.
    let renew = client_msg(msg::RENEW, C1, Some(&sduid()), &[(IaKind::Na, 1, &[])], &[]);
    assert!(matches!(
        h.send(&renew),
        Decision6::Reply {
            committed: true,
            at_once: false,
            ..
        }
    ));
    h.t.flush_dirty().unwrap();
    // A Renew of an IA with no binding (NoBinding) and a Confirm write nothing.
    let renew2 = client_msg(msg::RENEW, C2, Some(&sduid()), &[(IaKind::Na, 9, &[])], &[]);
    let confirm = client_msg(
        msg::CONFIRM,
        C2,
        None,
        &[(IaKind::Na, 9, &[("fd77::150", 128)])],
        &[],
    );
    for m in [&renew2, &confirm] {
        let d = h.send(m);
        assert!(
            matches!(
                d,
                Decision6::Reply {
                    committed: false,
                    at_once: true,
                    ..
                }
            ),
            "{d:?}"
        );
    }
    assert!(
        !h.t.has_dirty(),
        "a NoBinding Renew or a Confirm wrote a record"
    );
}

#[test]
fn dhcpv6_request_binds_what_was_advertised() {
    let mut h = H::new();
    let adv = parse_reply(&h.reply(&client_msg(
        msg::SOLICIT,
        C1,
        None,
        &[(IaKind::Na, 1, &[])],
        &[],
    )));
    let offered = addr_of(&adv.ias[0].5[0]).to_string();
    let req = client_msg(
        msg::REQUEST,
        C1,
        Some(&sduid()),
        &[(IaKind::Na, 1, &[(&offered, 128)])],
        &[],
    );
    let d = h.send(&req);
    assert!(
        matches!(
            d,
            Decision6::Reply {
                committed: true,
                ..
            }
        ),
        "{d:?}"
    );
    let Decision6::Reply { len, .. } = d else {
        unreachable!()
    };
    let r = parse_reply(&h.out[..len]);
    assert_eq!(r.typ, msg::REPLY);
    assert_eq!(addr_of(&r.ias[0].5[0]).to_string(), offered);
    let mut s = [0u32; 4];
    assert_eq!(h.t.find_ia(IaKind::Na, C1, 1, &mut s), 1);
    let b = h.t.get(s[0]).unwrap();
    assert_eq!(
        (b.state, b.expiry, b.cltt),
        (BindingState::Active, NOW + 4000, NOW)
    );
    assert_eq!(b.ip().to_string(), offered);
    // Another client never gets it.
    let r2 = parse_reply(&h.reply(&client_msg(
        msg::REQUEST,
        C2,
        Some(&sduid()),
        &[(IaKind::Na, 1, &[(&offered, 128)])],
        &[],
    )));
    assert_ne!(addr_of(&r2.ias[0].5[0]).to_string(), offered);
}

#[test]
fn dhcpv6_request_with_wrong_or_missing_server_id_is_dropped() {
    let mut h = H::new();
    let other = duid_en(1, b"other");
    for m in [
        client_msg(msg::REQUEST, C1, Some(&other), &[(IaKind::Na, 1, &[])], &[]),
        client_msg(msg::REQUEST, C1, None, &[(IaKind::Na, 1, &[])], &[]),
        client_msg(
            msg::SOLICIT,
            C1,
            Some(&sduid()),
            &[(IaKind::Na, 1, &[])],
            &[],
        ),
    ] {
        assert_eq!(h.send(&m), Decision6::Silence(Silence6::BadIds));
    }
    assert_eq!(h.e.stats().snapshot().bad_ids, 3);
    assert!(h.t.is_empty());
}

#[test]
fn dhcpv6_rapid_commit_solicit_gets_committed_reply() {
    let mut h = H::new();
    let m = client_msg(
        msg::SOLICIT,
        C1,
        None,
        &[(IaKind::Na, 1, &[]), (IaKind::Pd, 1, &[])],
        &[(opt::RAPID_COMMIT, &[])],
    );
    assert!(matches!(
        h.send(&m),
        Decision6::Reply {
            committed: true,
            ..
        }
    ));
    let r = parse_reply(&h.reply(&m));
    assert_eq!(r.typ, msg::REPLY);
    assert!(r.opts.contains(&opt::RAPID_COMMIT));
    assert_eq!(
        h.t.len(),
        2,
        "same address and prefix again: no new bindings"
    );
    // With rapid commit switched off for the link: a plain Advertise.
    let mut cfg = config();
    cfg.links[0].rapid_commit = false;
    let mut h = H {
        e: Engine6::new(cfg, sduid(), Arc::new(Stats6::default())),
        ..H::new()
    };
    let r = parse_reply(&h.reply(&m));
    assert_eq!(r.typ, msg::ADVERTISE);
    assert!(!r.opts.contains(&opt::RAPID_COMMIT));
    assert!(h.t.is_empty());
}

fn bind(h: &mut H, duid: &[u8], ias: &[IaSpec<'_>]) -> R {
    parse_reply(&h.reply(&client_msg(
        msg::SOLICIT,
        duid,
        None,
        ias,
        &[(opt::RAPID_COMMIT, &[])],
    )))
}

#[test]
fn dhcpv6_renew_extends_and_unknown_ia_gets_no_binding() {
    let mut h = H::new();
    let r = bind(&mut h, C1, &[(IaKind::Na, 1, &[]), (IaKind::Pd, 2, &[])]);
    let a = addr_of(&r.ias[0].5[0]).to_string();
    let p = addr_of(&r.ias[1].5[0]).to_string();
    let later = NOW + 1500;
    let m = client_msg(
        msg::RENEW,
        C1,
        Some(&sduid()),
        &[
            (IaKind::Na, 1, &[(&a, 128)]),
            (IaKind::Pd, 2, &[(&p, 56)]),
            (IaKind::Na, 9, &[]),
        ],
        &[],
    );
    let d = h.e.handle(&mut h.t, later, &direct(), &m, &mut h.out);
    let Decision6::Reply { len, committed, .. } = d else {
        panic!("{d:?}")
    };
    assert!(committed);
    let r = parse_reply(&h.out[..len]);
    assert_eq!(addr_of(&r.ias[0].5[0]).to_string(), a);
    assert_eq!(addr_of(&r.ias[1].5[0]).to_string(), p);
    assert_eq!(r.ias[2].4, Some(status::NO_BINDING));
    let mut s = [0u32; 4];
    h.t.find_ia(IaKind::Pd, C1, 2, &mut s);
    assert_eq!(h.t.get(s[0]).unwrap().expiry, later + 4000);
    assert_eq!(h.e.stats().snapshot().renewed, 2);
}

#[test]
fn dhcpv6_rebind_extends_or_zeroes_off_link_addresses() {
    let mut h = H::new();
    let r = bind(&mut h, C1, &[(IaKind::Na, 1, &[])]);
    let a = addr_of(&r.ias[0].5[0]).to_string();
    let r = parse_reply(&h.reply(&client_msg(
        msg::REBIND,
        C1,
        None,
        &[(IaKind::Na, 1, &[(&a, 128)])],
        &[],
    )));
    assert_eq!(r.typ, msg::REPLY);
    assert_eq!((r.ias[0].5[0].valid, r.ias[0].4), (4000, None));
    // A client that moved here with an address from elsewhere: zero lifetimes.
    let r = parse_reply(&h.reply(&client_msg(
        msg::REBIND,
        C2,
        None,
        &[(IaKind::Na, 5, &[("2001:db8:99::5", 128)])],
        &[],
    )));
    assert_eq!(r.ias[0].5[0].addr, ip("2001:db8:99::5").octets());
    assert_eq!((r.ias[0].5[0].preferred, r.ias[0].5[0].valid), (0, 0));
    // On-link but unknown: NoBinding.
    let r = parse_reply(&h.reply(&client_msg(
        msg::REBIND,
        C2,
        None,
        &[(IaKind::Na, 6, &[("fd77::150", 128)])],
        &[],
    )));
    assert_eq!(r.ias[0].4, Some(status::NO_BINDING));
}

#[test]
fn dhcpv6_release_frees_for_others_and_unknown_gets_no_binding() {
    let mut h = H::new();
    let r = bind(&mut h, C1, &[(IaKind::Pd, 3, &[])]);
    let p = addr_of(&r.ias[0].5[0]).to_string();
    let rel = client_msg(
        msg::RELEASE,
        C1,
        Some(&sduid()),
        &[
            (IaKind::Pd, 3, &[(&p, 56)]),
            (IaKind::Na, 4, &[("fd77::100", 128)]),
        ],
        &[],
    );
    let r = parse_reply(&h.reply(&rel));
    assert_eq!(r.status, Some(status::SUCCESS));
    assert_eq!(r.ias.len(), 1, "only the unknown IA is listed");
    assert_eq!((r.ias[0].1, r.ias[0].4), (4, Some(status::NO_BINDING)));
    let mut s = [0u32; 4];
    h.t.find_ia(IaKind::Pd, C1, 3, &mut s);
    assert_eq!(h.t.get(s[0]).unwrap().state, BindingState::Released);
    // The released prefix may go to another client who asks for it.
    let r = bind(&mut h, C2, &[(IaKind::Pd, 1, &[(&p, 56)])]);
    assert_eq!(addr_of(&r.ias[0].5[0]).to_string(), p);
}

#[test]
fn dhcpv6_decline_holds_address_from_everyone() {
    let mut h = H::new();
    let r = bind(&mut h, C1, &[(IaKind::Na, 1, &[])]);
    let a = addr_of(&r.ias[0].5[0]).to_string();
    let r = parse_reply(&h.reply(&client_msg(
        msg::DECLINE,
        C1,
        Some(&sduid()),
        &[(IaKind::Na, 1, &[(&a, 128)])],
        &[],
    )));
    assert_eq!(r.status, Some(status::SUCCESS));
    let s = h.t.find_addr(IaKind::Na, &ip(&a).octets(), 128).unwrap();
    assert_eq!(h.t.get(s).unwrap().state, BindingState::Declined);
    let r = bind(&mut h, C2, &[(IaKind::Na, 1, &[(&a, 128)])]);
    assert_ne!(addr_of(&r.ias[0].5[0]).to_string(), a);
    // C1 asking again gets a different address too.
    let r = bind(&mut h, C1, &[(IaKind::Na, 1, &[])]);
    assert_ne!(addr_of(&r.ias[0].5[0]).to_string(), a);
}

#[test]
fn dhcpv6_confirm_on_link_off_link_and_empty() {
    let mut h = H::new();
    let on = client_msg(
        msg::CONFIRM,
        C1,
        None,
        &[(IaKind::Na, 1, &[("fd77::123", 128)])],
        &[],
    );
    assert_eq!(parse_reply(&h.reply(&on)).status, Some(status::SUCCESS));
    let off = client_msg(
        msg::CONFIRM,
        C1,
        None,
        &[(IaKind::Na, 1, &[("fd77::123", 128), ("fd78::1", 128)])],
        &[],
    );
    assert_eq!(
        parse_reply(&h.reply(&off)).status,
        Some(status::NOT_ON_LINK)
    );
    let none = client_msg(msg::CONFIRM, C1, None, &[(IaKind::Na, 1, &[])], &[]);
    assert_eq!(
        h.send(&none),
        Decision6::Silence(Silence6::NothingToConfirm)
    );
}

#[test]
fn dhcpv6_information_request_gets_options_only() {
    let mut h = H::new();
    let r = parse_reply(&h.reply(&client_msg(msg::INFORMATION_REQUEST, C1, None, &[], &[])));
    assert_eq!(r.typ, msg::REPLY);
    assert!(r.ias.is_empty());
    assert!(r.opts.contains(&opt::DNS_SERVERS));
    let with_ia = client_msg(
        msg::INFORMATION_REQUEST,
        C1,
        None,
        &[(IaKind::Na, 1, &[])],
        &[],
    );
    assert_eq!(h.send(&with_ia), Decision6::Silence(Silence6::BadIds));
}

#[test]
fn dhcpv6_several_ias_get_distinct_addresses_and_prefixes() {
    let mut h = H::new();
    let r = bind(
        &mut h,
        C1,
        &[
            (IaKind::Na, 1, &[]),
            (IaKind::Na, 2, &[]),
            (IaKind::Pd, 1, &[]),
            (IaKind::Pd, 2, &[]),
        ],
    );
    assert_eq!(r.ias.len(), 4);
    let e: Vec<_> = r.ias.iter().map(|i| i.5[0].addr).collect();
    assert_ne!(e[0], e[1]);
    assert_ne!(e[2], e[3]);
    assert_eq!(h.t.len(), 4);
}

#[test]
fn dhcpv6_prefix_hints_honoured_within_policy() {
    let mut h = H::new();
    // An exact free prefix of the pool.
    let r = bind(
        &mut h,
        C1,
        &[(IaKind::Pd, 1, &[("fd77:100:12:3400::", 56)])],
    );
    assert_eq!(addr_of(&r.ias[0].5[0]), ip("fd77:100:12:3400::"));
    // A length hint: /60 comes from the /60 pool.
    let r = bind(&mut h, C2, &[(IaKind::Pd, 1, &[("::", 60)])]);
    assert_eq!(r.ias[0].5[0].prefix_len, 60);
    assert!(crate::config::prefix_contains(
        ip("fd77:200::"),
        48,
        &r.ias[0].5[0].addr
    ));
    // Two hints in one IA_PD: two prefixes.
    let r = bind(&mut h, b"c3", &[(IaKind::Pd, 1, &[("::", 56), ("::", 60)])]);
    let lens: Vec<u8> = r.ias[0].5.iter().map(|e| e.prefix_len).collect();
    assert_eq!(lens, vec![56, 60]);
    // Outside policy (a /48, not in any pool, or someone else's): ignored, a pool prefix given.
    let r = bind(&mut h, b"c4", &[(IaKind::Pd, 1, &[("fd00::", 48)])]);
    assert_eq!(r.ias[0].5[0].prefix_len, 56);
    let r = bind(
        &mut h,
        b"c5",
        &[(IaKind::Pd, 1, &[("fd77:100:12:3400::", 56)])],
    );
    assert_ne!(addr_of(&r.ias[0].5[0]), ip("fd77:100:12:3400::"));
    // An address hint outside the pools is ignored.
    let r = bind(&mut h, b"c6", &[(IaKind::Na, 1, &[("fd77::9999", 128)])]);
    assert_ne!(addr_of(&r.ias[0].5[0]), ip("fd77::9999"));
}

#[test]
fn dhcpv6_exhausted_pools_give_no_addrs_and_no_prefix() {
    let mut h = H::new();
    let relay_meta = RxMeta6 {
        src: RELAY_SRC,
        multicast: false,
        ifindex: 1,
        src_port: 546,
    };
    // Link 2 has 3 addresses.
    for i in 0..4u8 {
        let inner = client_msg(
            msg::SOLICIT,
            &[0, 3, i],
            None,
            &[(IaKind::Na, 1, &[])],
            &[(opt::RAPID_COMMIT, &[])],
        );
        let f = relay_forw(&[("2001:db8:2::1", "fe80::9", Some(b"p1"), &[])], &inner);
        let d = h.send_meta(relay_meta, &f);
        let Decision6::Reply { len, .. } = d else {
            panic!()
        };
        let r = parse_reply(&unwrap_relay_reply(&h.out[..len], 1));
        if i < 3 {
            assert_eq!(r.ias[0].4, None);
        } else {
            assert_eq!(r.ias[0].4, Some(status::NO_ADDRS_AVAIL));
            assert_eq!((r.ias[0].2, r.ias[0].3), (0, 0));
        }
    }
    assert_eq!(h.e.stats().snapshot().no_addrs, 1);
}

#[test]
fn dhcpv6_reservation_by_duid() {
    let mut h = H::new();
    let res = b"\x00\x03reserved";
    let r = bind(&mut h, res, &[(IaKind::Na, 1, &[]), (IaKind::Pd, 1, &[])]);
    assert_eq!(addr_of(&r.ias[0].5[0]), ip("fd77::1:1"));
    assert_eq!(addr_of(&r.ias[1].5[0]), ip("fd77:300::"));
    // Nobody else gets the reserved address, even when hinting it.
    let r = bind(&mut h, C1, &[(IaKind::Na, 1, &[("fd77::1:1", 128)])]);
    assert_ne!(addr_of(&r.ias[0].5[0]), ip("fd77::1:1"));
    // The reserved client renews it.
    let r = parse_reply(&h.reply(&client_msg(
        msg::RENEW,
        res,
        Some(&sduid()),
        &[(IaKind::Na, 1, &[("fd77::1:1", 128)])],
        &[],
    )));
    assert_eq!(
        (addr_of(&r.ias[0].5[0]), r.ias[0].5[0].valid),
        (ip("fd77::1:1"), 4000)
    );
}

#[test]
fn dhcpv6_unicast_request_gets_use_multicast() {
    let mut h = H::new();
    let m = client_msg(
        msg::REQUEST,
        C1,
        Some(&sduid()),
        &[(IaKind::Na, 1, &[])],
        &[],
    );
    let meta = RxMeta6 {
        multicast: false,
        ..direct()
    };
    let Decision6::Reply { len, committed, .. } = h.send_meta(meta, &m) else {
        panic!()
    };
    assert!(!committed);
    let r = parse_reply(&h.out[..len]);
    assert_eq!(r.status, Some(status::USE_MULTICAST));
    assert!(r.ias.is_empty());
    assert!(h.t.is_empty());
}

#[test]
fn dhcpv6_reconfigure_accept_recorded() {
    let mut h = H::new();
    bind(&mut h, C1, &[(IaKind::Na, 1, &[])]);
    bind(&mut h, C2, &[(IaKind::Na, 1, &[])]);
    let m = client_msg(
        msg::RENEW,
        C1,
        Some(&sduid()),
        &[(IaKind::Na, 1, &[])],
        &[(opt::RECONF_ACCEPT, &[])],
    );
    h.reply(&m);
    let mut s = [0u32; 2];
    h.t.find_ia(IaKind::Na, C1, 1, &mut s);
    assert_eq!(
        h.t.get(s[0]).unwrap().flags & FLAG_RECONFIGURE_ACCEPT,
        FLAG_RECONFIGURE_ACCEPT
    );
    h.t.find_ia(IaKind::Na, C2, 1, &mut s);
    assert_eq!(h.t.get(s[0]).unwrap().flags & FLAG_RECONFIGURE_ACCEPT, 0);
}

#[test]
fn dhcpv6_malformed_and_not_for_server_are_counted() {
    let mut h = H::new();
    let mut m = client_msg(msg::SOLICIT, C1, None, &[(IaKind::Na, 1, &[])], &[]);
    m.truncate(m.len() - 3);
    assert!(matches!(
        h.send(&m),
        Decision6::Silence(Silence6::Malformed(_))
    ));
    assert!(matches!(
        h.send(&[]),
        Decision6::Silence(Silence6::Malformed(_))
    ));
    let adv = client_msg(msg::ADVERTISE, C1, None, &[], &[]);
    assert_eq!(h.send(&adv), Decision6::Silence(Silence6::NotForServer));
    let s = h.e.stats().snapshot();
    assert_eq!((s.malformed, s.not_for_server), (2, 1));
}

// ---- relays ----

type RelaySpec<'a> = (&'a str, &'a str, Option<&'a [u8]>, &'a [(u16, &'a [u8])]);

/// Wraps `inner` in relays, outermost first in `levels`.
fn relay_forw(levels: &[RelaySpec<'_>], inner: &[u8]) -> Vec<u8> {
    let mut cur = inner.to_vec();
    for (i, (link, peer, ifid, opts)) in levels.iter().enumerate().rev() {
        let mut buf = vec![0u8; cur.len() + 512];
        let mut w = Writer::new(&mut buf);
        w.relay_header(
            msg::RELAY_FORW,
            i as u8,
            &ip(link).octets(),
            &ip(peer).octets(),
        );
        if let Some(id) = ifid {
            w.option(opt::INTERFACE_ID, id);
        }
        for (c, b) in opts.iter() {
            w.option(*c, b);
        }
        w.option(opt::RELAY_MSG, &cur);
        let n = w.finish().unwrap();
        buf.truncate(n);
        cur = buf;
    }
    cur
}

/// Unwraps `depth` Relay-Reply levels, checking each.
fn unwrap_relay_reply(b: &[u8], depth: usize) -> Vec<u8> {
    let mut cur = b.to_vec();
    for _ in 0..depth {
        let r = Relay::parse(&cur, 0).unwrap();
        assert_eq!(r.msg_type, msg::RELAY_REPL);
        cur = r.options.find(opt::RELAY_MSG).unwrap().to_vec();
    }
    cur
}

fn relay_meta() -> RxMeta6 {
    RxMeta6 {
        src: RELAY_SRC,
        multicast: false,
        ifindex: 1,
        src_port: 546,
    }
}

#[test]
fn dhcpv6_relay_link_address_selects_link_interface_id_echoed_relay_data_stored() {
    let mut h = H::new();
    let inner = client_msg(
        msg::SOLICIT,
        C1,
        None,
        &[(IaKind::Na, 1, &[]), (IaKind::Pd, 1, &[])],
        &[(opt::RAPID_COMMIT, &[])],
    );
    let remote: &[u8] = &[0, 0, 0x11, 0x8b, b'm', b'o', b'd', b'e', b'm'];
    let lladdr: &[u8] = &[0, 1, 2, 0, 0, 0, 0, 0x42];
    let f = relay_forw(
        &[(
            "2001:db8:2::1",
            "fe80::42",
            Some(b"cm-port-7"),
            &[
                (opt::REMOTE_ID, remote),
                (opt::SUBSCRIBER_ID, b"sub-1"),
                (opt::CLIENT_LINKLAYER_ADDR, lladdr),
            ],
        )],
        &inner,
    );
    let d = h.send_meta(relay_meta(), &f);
    let Decision6::Reply {
        len,
        to,
        port,
        committed,
        at_once,
    } = d
    else {
        panic!("{d:?}")
    };
    assert_eq!(
        (to, port, committed, at_once),
        (RELAY_SRC, 547, true, false)
    );
    let rr = Relay::parse(&h.out[..len], 0).unwrap();
    assert_eq!(rr.msg_type, msg::RELAY_REPL);
    assert_eq!(rr.link, ip("2001:db8:2::1").octets());
    assert_eq!(rr.peer, ip("fe80::42").octets());
    assert_eq!(rr.options.find(opt::INTERFACE_ID), Some(&b"cm-port-7"[..]));
    assert_eq!(
        rr.options.find(opt::REMOTE_ID),
        None,
        "only interface-id is echoed"
    );
    let r = parse_reply(rr.options.find(opt::RELAY_MSG).unwrap());
    assert!(crate::config::prefix_contains(
        ip("2001:db8:2::"),
        64,
        &r.ias[0].5[0].addr
    ));
    assert!(crate::config::prefix_contains(
        ip("2001:db8:2200::"),
        48,
        &r.ias[1].5[0].addr
    ));
    let mut s = [0u32; 2];
    h.t.find_ia(IaKind::Pd, C1, 1, &mut s);
    let b = h.t.get(s[0]).unwrap();
    assert_eq!(b.link, 1);
    assert_eq!(b.relay.interface_id.as_slice(), b"cm-port-7");
    assert_eq!(b.relay.remote_id.as_slice(), remote);
    assert_eq!(b.relay.subscriber_id.as_slice(), b"sub-1");
    assert_eq!(
        (b.relay.lladdr_type, b.relay.lladdr.as_slice()),
        (1, &lladdr[2..])
    );
    assert_eq!(h.e.stats().snapshot().relayed, 1);
}

#[test]
fn dhcpv6_nested_relays_reply_nested_with_each_interface_id() {
    let mut h = H::new();
    let inner = client_msg(msg::SOLICIT, C2, None, &[(IaKind::Na, 1, &[])], &[]);
    // Outer relay (hop 1) has no link-address; the inner one (nearest the client) has.
    let f = relay_forw(
        &[
            ("::", "2001:db8:5::2", Some(b"outer"), &[]),
            (
                "2001:db8:2::1",
                "fe80::7",
                Some(b"inner"),
                &[(opt::REMOTE_ID, &[0, 0, 0, 9, 1])],
            ),
        ],
        &inner,
    );
    let Decision6::Reply { len, port, .. } = h.send_meta(relay_meta(), &f) else {
        panic!()
    };
    assert_eq!(port, 547);
    let outer = Relay::parse(&h.out[..len], 0).unwrap();
    assert_eq!(
        (outer.hop_count, outer.options.find(opt::INTERFACE_ID)),
        (0, Some(&b"outer"[..]))
    );
    assert_eq!(outer.peer, ip("2001:db8:5::2").octets());
    let inner_r = Relay::parse(outer.options.find(opt::RELAY_MSG).unwrap(), 0).unwrap();
    assert_eq!(
        (inner_r.hop_count, inner_r.options.find(opt::INTERFACE_ID)),
        (1, Some(&b"inner"[..]))
    );
    let r = parse_reply(inner_r.options.find(opt::RELAY_MSG).unwrap());
    assert_eq!(r.typ, msg::ADVERTISE);
    assert!(crate::config::prefix_contains(
        ip("2001:db8:2::"),
        64,
        &r.ias[0].5[0].addr
    ));
}

#[test]
fn dhcpv6_relay_trust_untrusted_source_and_deep_nesting_dropped() {
    let mut h = H::new();
    let inner = client_msg(
        msg::SOLICIT,
        C1,
        None,
        &[(IaKind::Na, 1, &[])],
        &[(opt::RAPID_COMMIT, &[])],
    );
    let f = relay_forw(
        &[(
            "2001:db8:2::1",
            "fe80::42",
            None,
            &[(opt::REMOTE_ID, b"\0\0\0\x01x")],
        )],
        &inner,
    );
    let meta = RxMeta6 {
        src: ip("2001:db8:666::1"),
        ..relay_meta()
    };
    assert_eq!(
        h.send_meta(meta, &f),
        Decision6::Silence(Silence6::UntrustedRelay)
    );
    // A client's own message may not claim to be relayed either (link-local source).
    assert_eq!(h.send(&f), Decision6::Silence(Silence6::UntrustedRelay));
    let lv: Vec<RelaySpec<'_>> = (0..10).map(|_| ("::", "fe80::1", None, &[][..])).collect();
    let deep = relay_forw(&lv, &inner);
    assert_eq!(
        h.send_meta(relay_meta(), &deep),
        Decision6::Silence(Silence6::TooManyHops)
    );
    // A relay message whose link-address is on no configured link.
    let nowhere = relay_forw(&[("2001:db8:77::1", "fe80::42", None, &[])], &inner);
    assert_eq!(
        h.send_meta(relay_meta(), &nowhere),
        Decision6::Silence(Silence6::NoLink)
    );
    assert!(h.t.is_empty());
    let s = h.e.stats().snapshot();
    assert_eq!((s.untrusted_relay, s.too_many_hops, s.no_link), (2, 1, 1));
}

#[test]
fn dhcpv6_persisted_bindings_survive_reopen_and_are_renewed() {
    let dir = tempfile::tempdir().unwrap();
    let p = dir.path().join("v6.db");
    let e = Engine6::new(config(), sduid(), Arc::new(Stats6::default()));
    let mut out = vec![0u8; 1500];
    let m = client_msg(
        msg::SOLICIT,
        C1,
        None,
        &[(IaKind::Na, 1, &[])],
        &[(opt::RAPID_COMMIT, &[])],
    );
    let a = {
        let (mut t, _) = BindingTable6::open(&p, 32, true).unwrap();
        let Decision6::Reply { len, .. } = e.handle(&mut t, NOW, &direct(), &m, &mut out) else {
            panic!()
        };
        t.flush_dirty().unwrap();
        parse_reply(&out[..len]).ias[0].5[0].addr
    };
    let (mut t, rep) = BindingTable6::open(&p, 32, false).unwrap();
    assert_eq!(rep.bindings, 1);
    let renew = client_msg(msg::RENEW, C1, Some(&sduid()), &[(IaKind::Na, 1, &[])], &[]);
    let Decision6::Reply { len, .. } = e.handle(&mut t, NOW + 10, &direct(), &renew, &mut out)
    else {
        panic!()
    };
    assert_eq!(parse_reply(&out[..len]).ias[0].5[0].addr, a);
}

/// Reconfigure (RFC 8415 §18.3.11, §20.4) over the same harness.
#[path = "reconfigure_tests.rs"]
mod reconfigure;

// ---- leasequery (RFC 5007) ----

const REQUESTOR: &[u8] = b"\x00\x02\x00\x00\x11\x8brequestor";

/// A Leasequery: OPTION_LQ_QUERY (type, link-address, query options) from REQUESTOR.
fn lq_msg(qtype: u8, link: &str, qopts: &[(u16, &[u8])], server: Option<&[u8]>) -> Vec<u8> {
    let mut buf = vec![0u8; 1024];
    let mut w = Writer::new(&mut buf);
    w.header(msg::LEASEQUERY, [0xab, 0xcd, 0xef]);
    w.option(opt::CLIENTID, REQUESTOR);
    if let Some(s) = server {
        w.option(opt::SERVERID, s);
    }
    w.open(opt::LQ_QUERY);
    w.bytes(&[qtype]);
    w.bytes(&ip(link).octets());
    for (c, b) in qopts {
        w.option(*c, b);
    }
    w.close();
    let n = w.finish().unwrap();
    buf.truncate(n);
    buf
}

fn iaaddr_body(a: &str) -> Vec<u8> {
    let mut v = ip(a).octets().to_vec();
    v.extend_from_slice(&[0; 8]);
    v
}

fn lq_meta(src: Ipv6Addr) -> RxMeta6 {
    RxMeta6 {
        src,
        multicast: false,
        ifindex: 1,
        src_port: 40_547,
    }
}

/// A decoded Leasequery-reply.
#[derive(Debug, Default)]
struct Lq {
    status: Option<u16>,
    client_id: Option<Vec<u8>>,
    /// (address or prefix, prefix length, preferred, valid)
    entries: Vec<(Ipv6Addr, u8, u32, u32)>,
    clt_time: Option<u32>,
    relay_data: Option<Vec<u8>>,
    client_links: Vec<Ipv6Addr>,
    has_client_data: bool,
}

fn lq_send(h: &mut H, meta: RxMeta6, q: &[u8]) -> Lq {
    lq_send_at(h, NOW, meta, q)
}

fn lq_send_at(h: &mut H, now: u32, meta: RxMeta6, q: &[u8]) -> Lq {
    let d = h.e.handle(&mut h.t, now, &meta, q, &mut h.out);
    let Decision6::Reply {
        len,
        to,
        port,
        committed,
        at_once,
    } = d
    else {
        panic!("no leasequery reply: {d:?}")
    };
    assert_eq!((to, port, committed), (meta.src, meta.src_port, false));
    // It reports bindings maybe not yet durable: it waits for the pending commits.
    assert!(
        !at_once,
        "a Leasequery-reply left before the pending commits"
    );
    let m = Message::parse(&h.out[..len], 0).unwrap();
    assert_eq!(m.msg_type, msg::LEASEQUERY_REPLY);
    assert_eq!(m.xid, [0xab, 0xcd, 0xef]);
    assert_eq!(m.options.find(opt::SERVERID), Some(&sduid()[..]));
    assert_eq!(m.options.find(opt::CLIENTID), Some(REQUESTOR));
    let mut r = Lq::default();
    for (code, body, _) in m.options.flatten() {
        match code {
            opt::STATUS_CODE => r.status = Some(u16::from_be_bytes([body[0], body[1]])),
            opt::LQ_CLIENT_LINK => {
                r.client_links = body
                    .chunks_exact(16)
                    .map(|c| Ipv6Addr::from(<[u8; 16]>::try_from(c).unwrap()))
                    .collect()
            }
            opt::CLIENT_DATA => {
                r.has_client_data = true;
                for o in crate::wire::Options::new(body, 0) {
                    let (c, b, _) = o.unwrap();
                    match c {
                        opt::CLIENTID => r.client_id = Some(b.to_vec()),
                        opt::IAADDR => {
                            let e = IaEntry::parse_addr(b, 0).unwrap();
                            r.entries.push((addr_of(&e), 128, e.preferred, e.valid));
                        }
                        opt::IAPREFIX => {
                            let e = IaEntry::parse_prefix(b, 0).unwrap();
                            r.entries
                                .push((addr_of(&e), e.prefix_len, e.preferred, e.valid));
                        }
                        opt::CLT_TIME => {
                            r.clt_time = Some(u32::from_be_bytes(b.try_into().unwrap()))
                        }
                        opt::LQ_RELAY_DATA => r.relay_data = Some(b.to_vec()),
                        other => panic!("unexpected option {other} in client data"),
                    }
                }
            }
            _ => {}
        }
    }
    r
}

/// Binds C1 through the relay (remote-id, subscriber-id, interface-id, lladdr) on link 1.
fn bind_relayed(h: &mut H, duid: &[u8]) -> (Ipv6Addr, Ipv6Addr) {
    let inner = client_msg(
        msg::SOLICIT,
        duid,
        None,
        &[(IaKind::Na, 1, &[]), (IaKind::Pd, 1, &[])],
        &[(opt::RAPID_COMMIT, &[])],
    );
    let lladdr: &[u8] = &[0, 1, 2, 0, 0, 0, 0, 0x42];
    let f = relay_forw(
        &[(
            "2001:db8:2::1",
            "fe80::42",
            Some(b"cm-port-7"),
            &[
                (opt::REMOTE_ID, b"\x00\x00\x11\x8bmodem"),
                (opt::SUBSCRIBER_ID, b"sub-1"),
                (opt::CLIENT_LINKLAYER_ADDR, lladdr),
            ],
        )],
        &inner,
    );
    let Decision6::Reply { len, .. } = h.send_meta(relay_meta(), &f) else {
        panic!("relayed solicit not answered")
    };
    let rr = Relay::parse(&h.out[..len], 0).unwrap();
    let r = parse_reply(rr.options.find(opt::RELAY_MSG).unwrap());
    (addr_of(&r.ias[0].5[0]), addr_of(&r.ias[1].5[0]))
}

#[test]
fn leasequery_dhcpv6_by_address_and_client_id_answer_bindings_with_relay_data() {
    let mut h = H::new();
    let (addr, pfx) = bind_relayed(&mut h, C1);
    // By address (any link), at the binding's time.
    let q = lq_msg(
        QUERY_BY_ADDRESS,
        "::",
        &[(opt::IAADDR, &iaaddr_body(&addr.to_string()))],
        None,
    );
    let r = lq_send(&mut h, lq_meta(RELAY_SRC), &q);
    assert_eq!(r.status, None);
    assert_eq!(r.client_id.as_deref(), Some(C1));
    assert!(r.entries.contains(&(addr, 128, 3000, 4000)), "{r:?}");
    assert!(
        r.entries.iter().any(|e| e.0 == pfx && e.1 == 56),
        "the client's prefix too"
    );
    assert_eq!(r.clt_time, Some(0));
    // Relay data: peer-address, then the Relay-Forward as stored (no Relay Message).
    let rd = r.relay_data.expect("relay data");
    assert_eq!(&rd[..16], &ip("fe80::42").octets());
    let rf = Relay::parse(&rd[16..], 16).unwrap();
    assert_eq!(rf.msg_type, msg::RELAY_FORW);
    assert_eq!(rf.link, ip("2001:db8:2::1").octets());
    assert_eq!(rf.peer, ip("fe80::42").octets());
    assert_eq!(rf.options.find(opt::INTERFACE_ID), Some(&b"cm-port-7"[..]));
    assert_eq!(
        rf.options.find(opt::REMOTE_ID),
        Some(&b"\x00\x00\x11\x8bmodem"[..])
    );
    assert_eq!(rf.options.find(opt::SUBSCRIBER_ID), Some(&b"sub-1"[..]));
    assert_eq!(
        rf.options.find(opt::CLIENT_LINKLAYER_ADDR),
        Some(&[0, 1, 2, 0, 0, 0, 0, 0x42][..])
    );
    assert_eq!(rf.options.find(opt::RELAY_MSG), None);

    // By an address inside the delegated prefix, with the link named.
    let mut inside = pfx.octets();
    inside[15] = 0x99;
    let inside = Ipv6Addr::from(inside).to_string();
    let q = lq_msg(
        QUERY_BY_ADDRESS,
        "2001:db8:2::1",
        &[(opt::IAADDR, &iaaddr_body(&inside))],
        Some(&sduid()),
    );
    let r = lq_send(&mut h, lq_meta(RELAY_SRC), &q);
    assert_eq!(r.client_id.as_deref(), Some(C1));
    assert!(r.entries.iter().any(|e| e.0 == pfx), "{r:?}");

    // By client id 100 s later: lifetimes left; an ORO without 47: no relay data.
    let q = lq_msg(
        QUERY_BY_CLIENTID,
        "::",
        &[(opt::CLIENTID, C1), (opt::ORO, &[0, 23])],
        None,
    );
    let r = lq_send_at(&mut h, NOW + 100, lq_meta(RELAY_SRC), &q);
    assert!(r.entries.contains(&(addr, 128, 2900, 3900)), "{r:?}");
    assert!(r.entries.iter().any(|e| e.0 == pfx && e.1 == 56));
    assert_eq!(r.clt_time, Some(100));
    assert_eq!(r.relay_data, None, "ORO did not ask for it");
    // Past the valid lifetime: not answered.
    let r = lq_send_at(&mut h, NOW + 4000, lq_meta(RELAY_SRC), &q);
    assert!(!r.has_client_data);

    // An address in our pool that nobody holds: a reply without client data.
    let free = if addr == ip("2001:db8:2::12") {
        "2001:db8:2::10"
    } else {
        "2001:db8:2::12"
    };
    let q = lq_msg(
        QUERY_BY_ADDRESS,
        "::",
        &[(opt::IAADDR, &iaaddr_body(free))],
        None,
    );
    let r = lq_send(&mut h, lq_meta(RELAY_SRC), &q);
    assert!(!r.has_client_data && r.status.is_none(), "{r:?}");
    // An unknown client: the same.
    let q = lq_msg(
        QUERY_BY_CLIENTID,
        "::",
        &[(opt::CLIENTID, b"\x00\x03nobody")],
        None,
    );
    let r = lq_send(&mut h, lq_meta(RELAY_SRC), &q);
    assert!(!r.has_client_data && r.status.is_none());
    let s = h.e.stats().snapshot();
    assert_eq!(
        (s.leasequery, s.leasequery_answered, s.leasequery_unknown),
        (6, 3, 3),
        "{s:?}"
    );
}

#[test]
fn leasequery_dhcpv6_client_on_two_links_gets_client_link_then_per_link_answer() {
    let mut h = H::new();
    let (addr1, _) = bind_relayed(&mut h, C1);
    let r0 = bind(&mut h, C1, &[(IaKind::Na, 1, &[])]);
    let addr0 = addr_of(&r0.ias[0].5[0]);
    // From a network in leasequery-allow (fd77:ffff::/64), no link named.
    let requestor = ip("fd77:ffff::5");
    let q = lq_msg(QUERY_BY_CLIENTID, "::", &[(opt::CLIENTID, C1)], None);
    let r = lq_send(&mut h, lq_meta(requestor), &q);
    assert!(!r.has_client_data);
    let mut links = r.client_links.clone();
    links.sort();
    assert_eq!(links, vec![ip("2001:db8:2::"), ip("fd77::")]);
    // Asked again per link.
    for (link, want) in [("fd77::", addr0), ("2001:db8:2::", addr1)] {
        let q = lq_msg(QUERY_BY_CLIENTID, link, &[(opt::CLIENTID, C1)], None);
        let r = lq_send(&mut h, lq_meta(requestor), &q);
        let addrs: Vec<Ipv6Addr> = r
            .entries
            .iter()
            .filter(|e| e.1 == 128)
            .map(|e| e.0)
            .collect();
        assert_eq!(addrs, vec![want], "link {link}");
    }
    // The direct binding has no relay data.
    let q = lq_msg(QUERY_BY_CLIENTID, "fd77::", &[(opt::CLIENTID, C1)], None);
    assert!(lq_send(&mut h, lq_meta(requestor), &q).relay_data.is_none());
    assert_eq!(h.e.stats().snapshot().leasequery_client_link, 1);
}

#[test]
fn leasequery_dhcpv6_hostile_inputs_refused_with_status_or_dropped_and_counted() {
    let mut h = H::new();
    let (addr, _) = bind_relayed(&mut h, C1);
    let snapshot_table = |h: &H| h.t.iter().collect::<Vec<_>>();
    let before = snapshot_table(&h);
    let a = iaaddr_body(&addr.to_string());
    let st = |h: &mut H, src: Ipv6Addr, q: &[u8]| lq_send(h, lq_meta(src), q).status;

    // Not allowed: a source in neither leasequery-allow entry.
    let q = lq_msg(QUERY_BY_ADDRESS, "::", &[(opt::IAADDR, &a)], None);
    let r = lq_send(&mut h, lq_meta(ip("2001:db8:bad::1")), &q);
    assert_eq!(r.status, Some(status::NOT_ALLOWED));
    assert!(!r.has_client_data, "nothing leaks to a disallowed source");
    // Unknown query type (RFC 5460's QUERY_BY_RELAY_ID = 3 is not served).
    let q = lq_msg(3, "::", &[(opt::IAADDR, &a)], None);
    assert_eq!(st(&mut h, RELAY_SRC, &q), Some(status::UNKNOWN_QUERY_TYPE));
    // By address without IAADDR; by client id without a client id; a short IAADDR.
    let q = lq_msg(QUERY_BY_ADDRESS, "::", &[], None);
    assert_eq!(st(&mut h, RELAY_SRC, &q), Some(status::MALFORMED_QUERY));
    let q = lq_msg(QUERY_BY_CLIENTID, "::", &[(opt::IAADDR, &a)], None);
    assert_eq!(st(&mut h, RELAY_SRC, &q), Some(status::MALFORMED_QUERY));
    let q = lq_msg(QUERY_BY_ADDRESS, "::", &[(opt::IAADDR, &a[..20])], None);
    assert_eq!(st(&mut h, RELAY_SRC, &q), Some(status::MALFORMED_QUERY));
    // OPTION_LQ_QUERY shorter than 17 bytes; missing; twice.
    let mut buf = vec![0u8; 256];
    let mut w = Writer::new(&mut buf);
    w.header(msg::LEASEQUERY, [0xab, 0xcd, 0xef]);
    w.option(opt::CLIENTID, REQUESTOR);
    w.option(opt::LQ_QUERY, &[1, 0, 0, 0]);
    let n = w.finish().unwrap();
    assert_eq!(
        st(&mut h, RELAY_SRC, &buf[..n]),
        Some(status::MALFORMED_QUERY)
    );
    let q = client_msg(msg::LEASEQUERY, REQUESTOR, None, &[], &[]);
    assert_eq!(st(&mut h, RELAY_SRC, &q), Some(status::MALFORMED_QUERY));
    let one = lq_msg(QUERY_BY_ADDRESS, "::", &[(opt::IAADDR, &a)], None);
    let mut twice = one.clone();
    let lq_opt = &one[4 + 4 + REQUESTOR.len()..];
    twice.extend_from_slice(lq_opt);
    assert_eq!(st(&mut h, RELAY_SRC, &twice), Some(status::MALFORMED_QUERY));
    // Query-options truncated inside a well-framed OPTION_LQ_QUERY.
    let mut q = lq_msg(QUERY_BY_ADDRESS, "::", &[(opt::IAADDR, &a)], None);
    let lq_at = 4 + 4 + REQUESTOR.len();
    let body_len = u16::from_be_bytes([q[lq_at + 2], q[lq_at + 3]]);
    q[lq_at + 4 + 17 + 3] = 200; // IAADDR claims 200 bytes
    assert_eq!(u16::from_be_bytes([q[lq_at + 2], q[lq_at + 3]]), body_len);
    assert_eq!(st(&mut h, RELAY_SRC, &q), Some(status::MALFORMED_QUERY));
    // A link-address on none of our links; an address on none of our links.
    let q = lq_msg(
        QUERY_BY_ADDRESS,
        "2001:db8:99::1",
        &[(opt::IAADDR, &a)],
        None,
    );
    assert_eq!(st(&mut h, RELAY_SRC, &q), Some(status::NOT_CONFIGURED));
    let q = lq_msg(
        QUERY_BY_ADDRESS,
        "::",
        &[(opt::IAADDR, &iaaddr_body("2001:db8:99::1"))],
        None,
    );
    assert_eq!(st(&mut h, RELAY_SRC, &q), Some(status::NOT_CONFIGURED));

    // Dropped: truncated option in the message, no requestor id, another server's id.
    let mut q = lq_msg(QUERY_BY_ADDRESS, "::", &[(opt::IAADDR, &a)], None);
    q.truncate(q.len() - 5);
    assert!(matches!(
        h.send_meta(lq_meta(RELAY_SRC), &q),
        Decision6::Silence(Silence6::Malformed(_))
    ));
    assert!(matches!(
        h.send_meta(lq_meta(RELAY_SRC), &[msg::LEASEQUERY, 1]),
        Decision6::Silence(Silence6::Malformed(_))
    ));
    let mut buf = vec![0u8; 256];
    let mut w = Writer::new(&mut buf);
    w.header(msg::LEASEQUERY, [0xab, 0xcd, 0xef]);
    w.option(opt::LQ_QUERY, &one[lq_at + 4..]);
    let n = w.finish().unwrap();
    assert_eq!(
        h.send_meta(lq_meta(RELAY_SRC), &buf[..n]),
        Decision6::Silence(Silence6::BadIds)
    );
    let q = lq_msg(
        QUERY_BY_ADDRESS,
        "::",
        &[(opt::IAADDR, &a)],
        Some(b"\x00\x03other"),
    );
    assert_eq!(
        h.send_meta(lq_meta(RELAY_SRC), &q),
        Decision6::Silence(Silence6::BadIds)
    );
    // A Leasequery inside a Relay-Forward is not served.
    let f = relay_forw(&[("2001:db8:2::1", "fe80::42", None, &[])], &one);
    assert_eq!(
        h.send_meta(relay_meta(), &f),
        Decision6::Silence(Silence6::NotForServer)
    );

    let s = h.e.stats().snapshot();
    assert_eq!(s.leasequery_not_allowed, 1);
    assert_eq!(s.leasequery_unknown_type, 1);
    assert_eq!(s.leasequery_malformed, 7);
    assert_eq!(s.leasequery_not_configured, 2);
    assert_eq!(s.leasequery_answered, 0);
    assert_eq!(s.malformed, 2);
    assert_eq!(s.leasequery, 11);
    assert_eq!(
        snapshot_table(&h),
        before,
        "a leasequery never writes the table"
    );
}

// ---- classes ----

use crate::config::{BytesMatch, Class6, ClassMatch, ClassSet, PoolAccess6};

/// Option 16: enterprise number and one vendor-class-data item.
fn vendor_class(ent: u32, item: &[u8]) -> Vec<u8> {
    let mut v = ent.to_be_bytes().to_vec();
    v.extend_from_slice(&(item.len() as u16).to_be_bytes());
    v.extend_from_slice(item);
    v
}

/// Option 15 with the given items.
fn user_class(items: &[&[u8]]) -> Vec<u8> {
    let mut v = Vec::new();
    for i in items {
        v.extend_from_slice(&(i.len() as u16).to_be_bytes());
        v.extend_from_slice(i);
    }
    v
}

/// Link "lan" with two address pools (modems: fd77::1000-10ff; others: fd77::100-1ff as in
/// `config()`), a prefix pool only for routers, and three classes:
/// 0 `cm` (option 16 enterprise 4491, vendor class starting "docsis"), 1 `router` (user
/// class "router"), 2 `cpe-of-modem` (remote-id "modem" from the relay), and `cm` gets a
/// CableLabs option 17 of its own.
fn class_config(n_extra: usize) -> Config6 {
    let mut c = config();
    let l1 = &mut c.links[0];
    l1.addr_pools.push(AddrPool6 {
        start: ip("fd77::1000"),
        end: ip("fd77::10ff"),
    });
    l1.options.push((
        opt::VENDOR_OPTS,
        encode::vendor_opts(4491, &[(1, b"link".to_vec())]).unwrap(),
    ));
    let cm = ClassSet::one(0);
    let router = ClassSet::one(1);
    l1.access.addr_pools = vec![
        PoolAccess6 {
            deny: cm,
            ..PoolAccess6::default()
        },
        PoolAccess6 {
            allow: cm,
            ..PoolAccess6::default()
        },
    ];
    l1.access.prefix_pools = vec![
        PoolAccess6 {
            allow: router,
            ..PoolAccess6::default()
        },
        PoolAccess6 {
            allow: router,
            ..PoolAccess6::default()
        },
    ];
    // Extra classes that never match (the cost of evaluating many), before the real ones
    // would shift ids: they go after.
    c.classes = vec![
        Class6 {
            id: 0,
            name: "cm".into(),
            matches: ClassMatch {
                enterprise: Some(4491),
                vendor_class: vec![BytesMatch::Prefix(b"docsis".to_vec())],
                ..ClassMatch::default()
            },
            vendor_options: vec![encode::vendor_opts(4491, &[(1, b"cm".to_vec())]).unwrap()],
        },
        Class6 {
            id: 1,
            name: "router".into(),
            matches: ClassMatch {
                user_class: vec![BytesMatch::Exact(b"router".to_vec())],
                ..ClassMatch::default()
            },
            vendor_options: vec![],
        },
        Class6 {
            id: 2,
            name: "cpe-of-modem".into(),
            matches: ClassMatch {
                remote_id: Some(BytesMatch::Exact(b"modem".to_vec())),
                ..ClassMatch::default()
            },
            vendor_options: vec![],
        },
    ];
    for i in 0..n_extra {
        let id = c.classes.len() as u8;
        c.classes.push(Class6 {
            id,
            name: format!("extra{i}"),
            matches: ClassMatch {
                vendor_class: vec![BytesMatch::Contains(format!("nomatch{i}").into_bytes())],
                ..ClassMatch::default()
            },
            vendor_options: vec![],
        });
    }
    c
}

fn class_h(n_extra: usize) -> H {
    H {
        e: Engine6::new(class_config(n_extra), sduid(), Arc::new(Stats6::default())),
        t: BindingTable6::in_memory(64),
        out: vec![0; 1500],
    }
}

/// The option 17 bodies of a reply.
fn vendor_opts_of(b: &[u8]) -> Vec<Vec<u8>> {
    let m = Message::parse(b, 0).unwrap();
    m.options
        .flatten()
        .filter(|(c, _, _)| *c == opt::VENDOR_OPTS)
        .map(|(_, b, _)| b.to_vec())
        .collect()
}

fn in_range(e: &IaEntry, a: &str, b: &str) -> bool {
    let x = u128::from(addr_of(e));
    x >= u128::from(ip(a)) && x <= u128::from(ip(b))
}

#[test]
fn dhcpv6_class_vendor_class_enterprise_selects_pool_and_vendor_options() {
    let mut h = class_h(0);
    let vc = vendor_class(4491, b"docsis3.0");
    let r = h.reply(&client_msg(
        msg::SOLICIT,
        C1,
        None,
        &[(IaKind::Na, 1, &[]), (IaKind::Pd, 2, &[])],
        &[(opt::VENDOR_CLASS, &vc)],
    ));
    let p = parse_reply(&r);
    assert!(
        in_range(&p.ias[0].5[0], "fd77::1000", "fd77::10ff"),
        "a modem draws from the modem pool: {:?}",
        addr_of(&p.ias[0].5[0])
    );
    assert_eq!(
        p.ias[1].4,
        Some(status::NO_PREFIX_AVAIL),
        "prefix pools are for routers only"
    );
    assert_eq!(
        vendor_opts_of(&r),
        vec![encode::vendor_opts(4491, &[(1, b"cm".to_vec())]).unwrap()],
        "the class's option 17 replaces the link's of the same enterprise"
    );
    let s = h.e.stats().snapshot();
    assert_eq!((s.classified, s.class_refused), (1, 1));
    // Another enterprise number, same text: not a modem.
    let vc = vendor_class(9, b"docsis3.0");
    let r = h.reply(&client_msg(
        msg::SOLICIT,
        C2,
        None,
        &[(IaKind::Na, 1, &[])],
        &[(opt::VENDOR_CLASS, &vc)],
    ));
    let p = parse_reply(&r);
    assert!(in_range(&p.ias[0].5[0], "fd77::100", "fd77::1ff"));
    assert_eq!(
        vendor_opts_of(&r),
        vec![encode::vendor_opts(4491, &[(1, b"link".to_vec())]).unwrap()]
    );
}

#[test]
fn dhcpv6_class_user_class_gets_prefix_and_remote_id_from_relay_matches() {
    let mut h = class_h(0);
    let uc = user_class(&[b"other", b"router"]);
    let p = parse_reply(&h.reply(&client_msg(
        msg::SOLICIT,
        C1,
        None,
        &[(IaKind::Pd, 2, &[])],
        &[(opt::USER_CLASS, &uc), (opt::RAPID_COMMIT, &[])],
    )));
    assert_eq!(p.typ, msg::REPLY);
    assert_eq!(p.ias[0].4, None, "a router gets a prefix");
    assert_eq!(p.ias[0].5[0].prefix_len, 56);
    // A relayed client whose relay names the modem in its remote-id (after the 4-byte
    // enterprise number) is in `cpe-of-modem`; its vendor class is not a modem's.
    let inner = client_msg(msg::SOLICIT, C2, None, &[(IaKind::Na, 1, &[])], &[]);
    let f = relay_forw(
        &[(
            "fd77::1",
            "fe80::42",
            None,
            &[(opt::REMOTE_ID, b"\x00\x00\x11\x8bmodem")],
        )],
        &inner,
    );
    let before = h.e.stats().snapshot().classified;
    let d = h.send_meta(relay_meta(), &f);
    assert!(matches!(d, Decision6::Reply { .. }), "{d:?}");
    assert_eq!(h.e.stats().snapshot().classified, before + 1);
}

#[test]
fn dhcpv6_class_renew_in_a_pool_the_class_may_no_longer_use_gets_zero_lifetimes() {
    let mut h = class_h(0);
    // Bound as a non-modem (pool fd77::100-1ff).
    let p = parse_reply(&h.reply(&client_msg(
        msg::SOLICIT,
        C1,
        None,
        &[(IaKind::Na, 1, &[])],
        &[(opt::RAPID_COMMIT, &[])],
    )));
    let a = addr_of(&p.ias[0].5[0]).to_string();
    assert!(in_range(&p.ias[0].5[0], "fd77::100", "fd77::1ff"));
    // Now it says it is a modem: that pool denies modems, so the Renew moves it.
    let vc = vendor_class(4491, b"docsis3.1");
    let m = client_msg(
        msg::RENEW,
        C1,
        Some(&sduid()),
        &[(IaKind::Na, 1, &[(&a, 128)])],
        &[(opt::VENDOR_CLASS, &vc)],
    );
    let p = parse_reply(&h.reply(&m));
    let e = &p.ias[0].5[0];
    assert_eq!((addr_of(e).to_string(), e.valid), (a, 0), "{p:?}");
}

#[test]
fn dhcpv6_class_deny_unknown_link_answers_only_reserved_duids() {
    let mut c = config();
    c.links[0].access.deny_unknown = true;
    let mut h = H {
        e: Engine6::new(c, sduid(), Arc::new(Stats6::default())),
        t: BindingTable6::in_memory(64),
        out: vec![0; 1500],
    };
    let d = h.send(&client_msg(
        msg::SOLICIT,
        C1,
        None,
        &[(IaKind::Na, 1, &[])],
        &[],
    ));
    assert_eq!(d, Decision6::Silence(Silence6::UnknownRefused));
    assert_eq!(h.e.stats().snapshot().unknown_refused, 1);
    let p = parse_reply(&h.reply(&client_msg(
        msg::SOLICIT,
        b"\x00\x03reserved",
        None,
        &[(IaKind::Na, 1, &[])],
        &[],
    )));
    assert_eq!(addr_of(&p.ias[0].5[0]), ip("fd77::1:1"));
}

#[test]
fn dhcpv6_class_known_and_deny_unknown_pool() {
    let mut c = config();
    // Only registered clients draw from the address pool; a class of unknown clients.
    c.links[0].access.addr_pools = vec![PoolAccess6 {
        deny_unknown: true,
        ..PoolAccess6::default()
    }];
    c.classes = vec![Class6 {
        id: 0,
        name: "unknown".into(),
        matches: ClassMatch {
            known: Some(false),
            ..ClassMatch::default()
        },
        vendor_options: vec![encode::vendor_opts(4491, &[(2, b"who".to_vec())]).unwrap()],
    }];
    let mut h = H {
        e: Engine6::new(c, sduid(), Arc::new(Stats6::default())),
        t: BindingTable6::in_memory(64),
        out: vec![0; 1500],
    };
    let r = h.reply(&client_msg(
        msg::SOLICIT,
        C1,
        None,
        &[(IaKind::Na, 1, &[])],
        &[],
    ));
    let p = parse_reply(&r);
    assert_eq!(p.ias[0].4, Some(status::NO_ADDRS_AVAIL));
    assert_eq!(vendor_opts_of(&r).len(), 1, "the unknown class's option 17");
    assert_eq!(h.e.stats().snapshot().class_refused, 1);
}
