//! Parse + handle of a Solicit (IA_NA + IA_PD) and of a Renew allocates
//! nothing: a counting global allocator (this test binary only) sees zero
//! allocations while the engine answers them, directly and through a relay.

use std::net::Ipv6Addr;
use std::sync::Arc;

use lease_store::v6::BindingTable6;
use xdhcpd_dhcpv6::wire::{msg, opt, Writer};
use xdhcpd_dhcpv6::{
    duid_en, AddrPool6, Config6, Decision6, Engine6, Link6, PrefixPool6, RxMeta6, Stats6,
};

#[path = "../../tests/common/counting_alloc.rs"]
mod counting_alloc;
use counting_alloc::allocs;

fn ip(s: &str) -> Ipv6Addr {
    s.parse().expect("test address")
}

fn message(typ: u8, duid: &[u8], server: Option<&[u8]>, extra: &[(u16, &[u8])]) -> Vec<u8> {
    let mut b = vec![0u8; 512];
    let mut w = Writer::new(&mut b);
    w.header(typ, [1, 2, 3]);
    w.option(opt::CLIENTID, duid);
    if let Some(s) = server {
        w.option(opt::SERVERID, s);
    }
    w.open_ia(opt::IA_NA, 1, 0, 0);
    w.close();
    w.open_ia(opt::IA_PD, 2, 0, 0);
    w.close();
    for (c, d) in extra {
        w.option(*c, d);
    }
    let n = w.finish().expect("test message fits");
    b.truncate(n);
    b
}

#[test]
fn dhcpv6_alloc_free_solicit_renew_and_leasequery_dhcpv6() {
    let link = Link6 {
        name: "lan".into(),
        prefix: ip("fd77::"),
        prefix_len: 64,
        ifindexes: vec![3],
        addr_pools: vec![AddrPool6 {
            start: ip("fd77::1000"),
            end: ip("fd77::ffff"),
        }],
        prefix_pools: vec![PrefixPool6 {
            prefix: ip("fd77:100::"),
            prefix_len: 40,
            delegated_len: 56,
        }],
        preferred: 3000,
        valid: 4000,
        t1: 0,
        t2: 0,
        rapid_commit: true,
        options: vec![(23, ip("fd77::1").octets().to_vec())],
        reservations: vec![],
        access: Default::default(),
    };
    let relay: Ipv6Addr = ip("fd77::2");
    let cfg = Config6 {
        links: vec![link],
        trusted_relays: vec![relay],
        decline_hold: 600,
        leasequery_allow: vec![(relay, 128)],
        classes: vec![],
    };
    let sduid = duid_en(4491, b"alloc");
    let e = Engine6::new(cfg, sduid.clone(), Arc::new(Stats6::default()));
    let mut t = BindingTable6::in_memory(1024);
    let mut out = vec![0u8; 1500];
    let meta = RxMeta6 {
        src: ip("fe80::1"),
        multicast: true,
        ifindex: 3,
        src_port: 546,
    };
    // Bind 100 clients first (rapid commit), so Renew finds a binding.
    let duids: Vec<Vec<u8>> = (0..100u32)
        .map(|i| [&[0u8, 3, 0, 1][..], &i.to_be_bytes()].concat())
        .collect();
    for d in &duids {
        let m = message(msg::SOLICIT, d, None, &[(opt::RAPID_COMMIT, &[])]);
        assert!(matches!(
            e.handle(&mut t, 1000, &meta, &m, &mut out),
            Decision6::Reply {
                committed: true,
                ..
            }
        ));
    }
    let solicits: Vec<Vec<u8>> = (1000..1100u32)
        .map(|i| message(msg::SOLICIT, &i.to_be_bytes(), None, &[]))
        .collect();
    let renews: Vec<Vec<u8>> = duids
        .iter()
        .map(|d| message(msg::RENEW, d, Some(&sduid), &[]))
        .collect();
    // A relayed Solicit.
    let inner = message(msg::SOLICIT, b"relayed-client", None, &[]);
    let mut relayed = vec![0u8; 1024];
    let n = {
        let mut w = Writer::new(&mut relayed);
        w.relay_header(
            msg::RELAY_FORW,
            0,
            &ip("fd77::2").octets(),
            &ip("fe80::9").octets(),
        );
        w.option(opt::INTERFACE_ID, b"port1");
        w.option(opt::REMOTE_ID, &[0, 0, 0x11, 0x8b, 1]);
        w.option(opt::RELAY_MSG, &inner);
        w.finish().unwrap()
    };
    relayed.truncate(n);
    let rmeta = RxMeta6 {
        src: relay,
        multicast: false,
        ifindex: 3,
        src_port: 546,
    };

    // RFC 5007 leasequeries from the relay (allowed): by client id (each bound client)
    // and by an address.
    let lq = |qtype: u8, qopt: u16, v: &[u8]| {
        let mut body = vec![qtype];
        body.extend_from_slice(&[0; 16]);
        body.extend_from_slice(&qopt.to_be_bytes());
        body.extend_from_slice(&(v.len() as u16).to_be_bytes());
        body.extend_from_slice(v);
        message(msg::LEASEQUERY, b"requestor", None, &[(44, &body)])
    };
    let by_id: Vec<Vec<u8>> = duids.iter().map(|d| lq(2, opt::CLIENTID, d)).collect();
    let mut iaaddr = ip("fd77::1:5").octets().to_vec();
    iaaddr.extend_from_slice(&[0; 8]);
    let by_addr = lq(1, opt::IAADDR, &iaaddr);

    let before = allocs();
    let mut replies = 0;
    for ((s, r), q) in solicits.iter().zip(&renews).zip(&by_id) {
        for (m, meta) in [
            (s, &meta),
            (r, &meta),
            (&relayed, &rmeta),
            (q, &rmeta),
            (&by_addr, &rmeta),
        ] {
            if let Decision6::Reply { .. } = e.handle(&mut t, 2000, meta, m, &mut out) {
                replies += 1;
            }
        }
    }
    let after = allocs();
    assert_eq!(replies, 500);
    assert_eq!(e.stats().snapshot().leasequery_answered, 100);
    assert_eq!(after - before, 0, "the DHCPv6 per-packet path allocated");
    assert_eq!(e.stats().snapshot().renewed, 200);
}

#[test]
fn dhcpv6_class_alloc_free_classified_solicit_and_relayed_remote_id() {
    use xdhcpd_dhcpv6::config::{encode, BytesMatch, ClassMatch, ClassSet, PoolAccess6};
    use xdhcpd_dhcpv6::{Class6, LinkAccess6};
    let cm = ClassSet::one(0);
    let mut classes = vec![Class6 {
        id: 0,
        name: "cm".into(),
        matches: ClassMatch {
            enterprise: Some(4491),
            vendor_class: vec![BytesMatch::Prefix(b"docsis".to_vec())],
            ..ClassMatch::default()
        },
        vendor_options: vec![encode::vendor_opts(4491, &[(2, b"cm".to_vec())]).unwrap()],
    }];
    for i in 1..20u8 {
        classes.push(Class6 {
            id: i,
            name: format!("c{i}"),
            matches: ClassMatch {
                remote_id: Some(BytesMatch::Exact(vec![i; 3])),
                user_class: vec![BytesMatch::Contains(b"router".to_vec())],
                ..ClassMatch::default()
            },
            vendor_options: vec![],
        });
    }
    let link = Link6 {
        name: "lan".into(),
        prefix: ip("fd77::"),
        prefix_len: 64,
        ifindexes: vec![3],
        addr_pools: vec![
            AddrPool6 {
                start: ip("fd77::1000"),
                end: ip("fd77::ffff"),
            },
            AddrPool6 {
                start: ip("fd77::c:0"),
                end: ip("fd77::c:ffff"),
            },
        ],
        prefix_pools: vec![PrefixPool6 {
            prefix: ip("fd77:100::"),
            prefix_len: 40,
            delegated_len: 56,
        }],
        preferred: 3000,
        valid: 4000,
        t1: 0,
        t2: 0,
        rapid_commit: true,
        options: vec![(
            17,
            encode::vendor_opts(4491, &[(2, b"link".to_vec())]).unwrap(),
        )],
        reservations: vec![],
        access: LinkAccess6 {
            deny_unknown: false,
            addr_pools: vec![
                PoolAccess6 {
                    deny: cm,
                    ..PoolAccess6::default()
                },
                PoolAccess6 {
                    allow: cm,
                    ..PoolAccess6::default()
                },
            ],
            prefix_pools: vec![],
        },
    };
    let relay: Ipv6Addr = ip("fd77::2");
    let cfg = Config6 {
        links: vec![link],
        trusted_relays: vec![relay],
        decline_hold: 600,
        leasequery_allow: vec![],
        classes,
    };
    let stats = Arc::new(Stats6::default());
    let e = Engine6::new(cfg, duid_en(4491, b"alloc"), stats.clone());
    let mut t = BindingTable6::in_memory(1024);
    let mut out = vec![0u8; 1500];
    let meta = RxMeta6 {
        src: ip("fe80::1"),
        multicast: true,
        ifindex: 3,
        src_port: 546,
    };
    let mut vc = 4491u32.to_be_bytes().to_vec();
    vc.extend_from_slice(&9u16.to_be_bytes());
    vc.extend_from_slice(b"docsis3.0");
    let uc: &[u8] = &[0, 6, b'r', b'o', b'u', b't', b'e', b'r'];
    let solicits: Vec<Vec<u8>> = (0..100u32)
        .map(|i| {
            message(
                msg::SOLICIT,
                &[&[0u8, 3, 0, 1, 2, 0][..], &i.to_be_bytes()].concat(),
                None,
                &[
                    (opt::VENDOR_CLASS, &vc),
                    (opt::USER_CLASS, uc),
                    (opt::RAPID_COMMIT, &[]),
                ],
            )
        })
        .collect();
    let inner = message(
        msg::SOLICIT,
        b"relayed-client",
        None,
        &[(opt::USER_CLASS, uc)],
    );
    let mut relayed = vec![0u8; 1024];
    let n = {
        let mut w = Writer::new(&mut relayed);
        w.relay_header(
            msg::RELAY_FORW,
            0,
            &ip("fd77::2").octets(),
            &ip("fe80::9").octets(),
        );
        w.option(opt::REMOTE_ID, &[0, 0, 0x11, 0x8b, 7, 7, 7]);
        w.option(opt::RELAY_MSG, &inner);
        w.finish().unwrap()
    };
    relayed.truncate(n);
    let rmeta = RxMeta6 {
        src: relay,
        multicast: false,
        ifindex: 3,
        src_port: 546,
    };
    let before = allocs();
    let mut replies = 0;
    for s in &solicits {
        for (m, meta) in [(s, &meta), (&relayed, &rmeta)] {
            if let Decision6::Reply { .. } = e.handle(&mut t, 2000, meta, m, &mut out) {
                replies += 1;
            }
        }
    }
    let after = allocs();
    assert_eq!(after - before, 0, "the classified DHCPv6 path allocated");
    assert_eq!(replies, 200);
    let s = stats.snapshot();
    assert_eq!(
        s.classified, 200,
        "modems by vendor class, the relayed one by remote-id"
    );
    assert_eq!(
        t.len(),
        200,
        "100 modems bound an address and a prefix each"
    );
}
