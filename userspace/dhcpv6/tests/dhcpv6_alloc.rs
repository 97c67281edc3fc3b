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
