//! Instructions per Solicit with and without client classes (for callgrind):
//!
//! ```text
//! cargo build --release -p xdhcpd-dhcpv6 --example class_cost
//! valgrind --tool=callgrind --collect-atstart=no --toggle-collect='*timed_loop*' \
//!     target/release/examples/class_cost CLASSES 20000
//! ```
//!
//! `CLASSES` classes are configured (0 = none): one that matches the Solicit's vendor class
//! (CableLabs, "docsis3.0") and pools allowing it, the rest of varied kinds that do not
//! match (vendor class prefix / contains, user class, enterprise number, remote-id). Each
//! Solicit (IA_NA + IA_PD, a Vendor Class and a User Class option, a new DUID each) is
//! answered with an Advertise. Prints the answers and the time per Solicit (the time is
//! machine-load dependent; the instruction count under callgrind is not).

use std::net::Ipv6Addr;
use std::sync::Arc;
use std::time::Instant;

use lease_store::v6::BindingTable6;
use xdhcpd_dhcpv6::config::{encode, BytesMatch, ClassMatch, ClassSet, PoolAccess6};
use xdhcpd_dhcpv6::wire::{msg, opt, Writer};
use xdhcpd_dhcpv6::{
    duid_en, AddrPool6, Class6, Config6, Decision6, Engine6, Link6, LinkAccess6, PrefixPool6,
    RxMeta6, Stats6,
};

fn ip(s: &str) -> Ipv6Addr {
    s.parse().expect("example address")
}

fn class(id: u8, m: ClassMatch) -> Class6 {
    Class6 {
        id,
        name: format!("c{id}"),
        matches: m,
        vendor_options: vec![],
    }
}

/// `n` classes: class 0 matches the Solicits; the others do not.
fn classes(n: usize) -> Vec<Class6> {
    let mut v = Vec::new();
    if n == 0 {
        return v;
    }
    v.push(Class6 {
        vendor_options: vec![
            encode::vendor_opts(4491, &[(2, b"cm".to_vec())]).expect("small option")
        ],
        ..class(
            0,
            ClassMatch {
                enterprise: Some(4491),
                vendor_class: vec![BytesMatch::Prefix(b"docsis".to_vec())],
                ..ClassMatch::default()
            },
        )
    });
    for i in 1..n {
        let id = i as u8;
        let m = match i % 5 {
            0 => ClassMatch {
                vendor_class: vec![BytesMatch::Prefix(format!("pktc{i}").into_bytes())],
                ..ClassMatch::default()
            },
            1 => ClassMatch {
                vendor_class: vec![BytesMatch::Contains(format!("mta{i}").into_bytes())],
                ..ClassMatch::default()
            },
            2 => ClassMatch {
                user_class: vec![BytesMatch::Exact(format!("user{i}").into_bytes())],
                ..ClassMatch::default()
            },
            3 => ClassMatch {
                enterprise: Some(9000 + i as u32),
                ..ClassMatch::default()
            },
            _ => ClassMatch {
                remote_id: Some(BytesMatch::Exact(format!("cmts{i}").into_bytes())),
                ..ClassMatch::default()
            },
        };
        v.push(class(id, m));
    }
    v
}

fn solicit(i: u32) -> Vec<u8> {
    let mut b = vec![0u8; 512];
    let mut w = Writer::new(&mut b);
    w.header(msg::SOLICIT, [1, 2, 3]);
    w.option(
        opt::CLIENTID,
        &[&[0u8, 3, 0, 1, 2, 0][..], &i.to_be_bytes()].concat(),
    );
    w.open_ia(opt::IA_NA, 1, 0, 0);
    w.close();
    w.open_ia(opt::IA_PD, 2, 0, 0);
    w.close();
    let mut vc = 4491u32.to_be_bytes().to_vec();
    vc.extend_from_slice(&9u16.to_be_bytes());
    vc.extend_from_slice(b"docsis3.0");
    w.option(opt::VENDOR_CLASS, &vc);
    w.option(opt::USER_CLASS, &[0, 6, b'h', b'o', b'm', b'e', b'g', b'w']);
    let n = w.finish().expect("fits");
    b.truncate(n);
    b
}

#[inline(never)]
fn timed_loop(
    e: &Engine6,
    t: &mut BindingTable6,
    meta: &RxMeta6,
    msgs: &[Vec<u8>],
    out: &mut [u8],
) -> usize {
    let mut answered = 0;
    for m in msgs {
        if let Decision6::Reply { .. } = e.handle(t, 2000, meta, m, out) {
            answered += 1;
        }
    }
    answered
}

fn main() {
    let mut args = std::env::args().skip(1);
    let n_classes: usize = args.next().and_then(|a| a.parse().ok()).unwrap_or(0);
    let n: u32 = args.next().and_then(|a| a.parse().ok()).unwrap_or(20_000);
    let cs = classes(n_classes.min(64));
    let cm = ClassSet::one(0);
    let access = if cs.is_empty() {
        LinkAccess6::default()
    } else {
        // The general pools deny the class, which has its own: every Solicit is judged.
        LinkAccess6 {
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
            prefix_pools: vec![PoolAccess6::default()],
        }
    };
    let link = Link6 {
        name: "lan".into(),
        prefix: ip("fd77::"),
        prefix_len: 64,
        ifindexes: vec![3],
        addr_pools: vec![
            AddrPool6 {
                start: ip("fd77::1:0"),
                end: ip("fd77::1:ffff"),
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
        options: vec![
            (23, ip("fd77::1").octets().to_vec()),
            (
                opt::VENDOR_OPTS,
                encode::vendor_opts(4491, &[(2, b"link".to_vec())]).expect("small option"),
            ),
        ],
        reservations: vec![],
        access,
    };
    let cfg = Config6 {
        links: vec![link],
        trusted_relays: vec![],
        decline_hold: 600,
        leasequery_allow: vec![],
        classes: cs,
    };
    let stats = Arc::new(Stats6::default());
    let e = Engine6::new(cfg, duid_en(4491, b"bench"), stats.clone());
    let mut t = BindingTable6::in_memory(1024);
    let mut out = vec![0u8; 1500];
    let meta = RxMeta6 {
        src: ip("fe80::1"),
        multicast: true,
        ifindex: 3,
        src_port: 546,
    };
    let msgs: Vec<Vec<u8>> = (0..n).map(solicit).collect();
    let t0 = Instant::now();
    let answered = timed_loop(&e, &mut t, &meta, &msgs, &mut out);
    let dt = t0.elapsed();
    let s = stats.snapshot();
    println!(
        "classes {n_classes}: {answered} of {n} Solicits answered ({} classified), {:.0} ns each",
        s.classified,
        dt.as_nanos() as f64 / f64::from(n.max(1))
    );
}
