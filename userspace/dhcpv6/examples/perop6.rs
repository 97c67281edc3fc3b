//! Instructions per DHCPv6 message of the bench's SARR and Renew (for callgrind), the v6
//! counterpart of `benches/src/bin/perop.rs`:
//!
//! ```text
//! cargo build --release -p xdhcpd-dhcpv6 --example perop6
//! valgrind --tool=callgrind --collect-atstart=no --toggle-collect='*timed_loop*' \
//!     target/release/examples/perop6 OP 20000
//! callgrind_annotate --inclusive=yes callgrind.out.<pid>
//! ```
//!
//! Instructions per message = total Ir / N (set-up is not collected). OP: `solicit`
//! (Advertise to a new client), `request` (binds what was advertised), `renew` (extends it),
//! each with the suffix `_classes` for 20 classes (one matching, pool allow/deny, a class
//! option 17, as `class_cost`). The messages are the load generator's (`tools/src/loadgen/
//! v6.rs`: DUID-LL, Elapsed Time, ORO 23/24, IA_NA and IA_PD with IAID 1, the Request and
//! Renew listing what was given) and the link is the bench's (`xtask/src/bench/systems.rs`:
//! fd78::/64, an address pool and a /40 prefix pool delegated as /56), on a binding file with
//! its write-ahead log as in ack mode (every write staged; a group commit after each batch
//! of 64, outside the measured region). Without valgrind it prints the wall time per
//! message (log commits included).

use std::net::Ipv6Addr;
use std::sync::Arc;
use std::time::Instant;

use lease_store::v6::{default_log_bytes, BindingTable6};
use xdhcpd_dhcpv6::config::{encode, BytesMatch, ClassMatch, ClassSet, PoolAccess6};
use xdhcpd_dhcpv6::wire::{msg, opt, Ia, IaEntry, Message, Writer};
use xdhcpd_dhcpv6::{
    duid_llt, AddrPool6, Class6, Config6, Decision6, Engine6, Link6, LinkAccess6, PrefixPool6,
    RxMeta6, Stats6,
};

const NOW: u32 = 2_000_000_000;

fn ip(s: &str) -> Ipv6Addr {
    s.parse().expect("example address")
}

/// `class_cost`'s 20 classes: class 0 matches (CableLabs "docsis3.0"), the rest do not.
fn classes() -> Vec<Class6> {
    let class = |id: u8, m: ClassMatch| Class6 {
        id,
        name: format!("c{id}"),
        matches: m,
        vendor_options: vec![],
    };
    let mut v = vec![Class6 {
        vendor_options: vec![encode::vendor_opts(4491, &[(2, b"cm".to_vec())]).expect("small")],
        ..class(
            0,
            ClassMatch {
                enterprise: Some(4491),
                vendor_class: vec![BytesMatch::Prefix(b"docsis".to_vec())],
                ..ClassMatch::default()
            },
        )
    }];
    for i in 1..20usize {
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
        v.push(class(i as u8, m));
    }
    v
}

fn config(with_classes: bool) -> Config6 {
    let cm = ClassSet::one(0);
    let (addr_pools, access) = if with_classes {
        (
            vec![
                AddrPool6 {
                    start: ip("fd78::1:0"),
                    end: ip("fd78::7f:ffff"),
                },
                AddrPool6 {
                    start: ip("fd78::80:0"),
                    end: ip("fd78::ff:ffff"),
                },
            ],
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
            },
        )
    } else {
        (
            vec![AddrPool6 {
                start: ip("fd78::1:0"),
                end: ip("fd78::ff:ffff"),
            }],
            LinkAccess6::default(),
        )
    };
    Config6 {
        links: vec![Link6 {
            name: "bench".into(),
            prefix: ip("fd78::"),
            prefix_len: 64,
            ifindexes: vec![3],
            addr_pools,
            prefix_pools: vec![PrefixPool6 {
                prefix: ip("fd78:100::"),
                prefix_len: 40,
                delegated_len: 56,
            }],
            preferred: 3600,
            valid: 7200,
            t1: 0,
            t2: 0,
            rapid_commit: false,
            options: vec![],
            reservations: vec![],
            access,
        }],
        trusted_relays: vec![],
        decline_hold: 600,
        leasequery_allow: vec![],
        classes: if with_classes { classes() } else { vec![] },
    }
}

/// What the client holds: its address and prefix.
type Held = ([u8; 16], ([u8; 16], u8));

/// The load generator's message for client `i` (`held`: what the Request / Renew lists).
fn message(typ: u8, i: u32, server: &[u8], held: Option<Held>, classes: bool) -> Vec<u8> {
    let mut b = vec![0u8; 512];
    let mut w = Writer::new(&mut b);
    let x = i.to_be_bytes();
    w.header(typ, [x[1], x[2], x[3]]);
    w.option(opt::CLIENTID, &[0, 3, 0, 1, 2, 0, x[0], x[1], x[2], x[3]]);
    if typ != msg::SOLICIT {
        w.option(opt::SERVERID, server);
    }
    w.option(opt::ELAPSED_TIME, &[0, 0]);
    w.option(opt::ORO, &[0, 23, 0, 24]);
    w.open_ia(opt::IA_NA, 1, 0, 0);
    if let Some((a, _)) = held {
        w.entry(&IaEntry {
            addr: a,
            prefix_len: 128,
            preferred: 0,
            valid: 0,
        });
    }
    w.close();
    w.open_ia(opt::IA_PD, 1, 0, 0);
    if let Some((_, (p, len))) = held {
        w.entry(&IaEntry {
            addr: p,
            prefix_len: len,
            preferred: 0,
            valid: 0,
        });
    }
    w.close();
    if classes {
        let mut vc = 4491u32.to_be_bytes().to_vec();
        vc.extend_from_slice(&9u16.to_be_bytes());
        vc.extend_from_slice(b"docsis3.0");
        w.option(opt::VENDOR_CLASS, &vc);
    }
    let n = w.finish().expect("fits");
    b.truncate(n);
    b
}

/// The address and prefix of a reply.
fn given(reply: &[u8]) -> Option<Held> {
    let m = Message::parse(reply, 0).ok()?;
    let (mut a, mut p) = (None, None);
    for (code, body, _) in m.options.flatten() {
        let ia = match code {
            opt::IA_NA | opt::IA_PD => Ia::parse(body, 0).ok()?,
            _ => continue,
        };
        for (c, b, _) in ia.options.flatten() {
            match c {
                opt::IAADDR => a = IaEntry::parse_addr(b, 0).ok().map(|e| e.addr),
                opt::IAPREFIX => {
                    p = IaEntry::parse_prefix(b, 0)
                        .ok()
                        .map(|e| (e.addr, e.prefix_len))
                }
                _ => {}
            }
        }
    }
    Some((a?, p?))
}

/// The measured region; everything it calls is collected by callgrind.
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
        if let Decision6::Reply { .. } = e.handle(t, NOW, meta, m, out) {
            answered += 1;
        }
    }
    answered
}

fn run(op: &str, n: u32) -> Result<(), String> {
    let (op, with_classes) = match op.strip_suffix("_classes") {
        Some(o) => (o, true),
        None => (op, false),
    };
    if !matches!(op, "solicit" | "request" | "renew") {
        return Err(format!("unknown OP `{op}`"));
    }
    let dir = tempfile::tempdir().map_err(|e| format!("temporary folder: {e}"))?;
    let cap = 2 * n + 64;
    let (mut t, _) = BindingTable6::open_with(
        &dir.path().join("v6.db"),
        cap,
        true,
        Some(default_log_bytes(cap)),
    )
    .map_err(|e| format!("binding file: {e}"))?;
    let server = duid_llt(1, [2, 0, 0, 0, 0, 1]);
    let stats = Arc::new(Stats6::default());
    let e = Engine6::new(config(with_classes), server.clone(), stats.clone());
    let meta = RxMeta6 {
        src: ip("fe80::1"),
        multicast: true,
        ifindex: 3,
        src_port: 546,
    };
    let mut out = vec![0u8; 1500];
    // Set-up (not measured): what each client was advertised, and for a Renew, bound.
    let mut held = Vec::with_capacity(n as usize);
    if op != "solicit" {
        for i in 0..n {
            let s = message(msg::SOLICIT, i, &server, None, with_classes);
            let Decision6::Reply { len, .. } = e.handle(&mut t, NOW, &meta, &s, &mut out) else {
                return Err(format!("Solicit {i} not answered"));
            };
            let h = given(&out[..len]).ok_or(format!("Advertise {i} gave nothing"))?;
            if op == "renew" {
                let r = message(msg::REQUEST, i, &server, Some(h), with_classes);
                let Decision6::Reply { len, .. } = e.handle(&mut t, NOW, &meta, &r, &mut out)
                else {
                    return Err(format!("Request {i} not answered"));
                };
                given(&out[..len]).ok_or(format!("Reply {i} bound nothing"))?;
            }
            held.push(h);
        }
    }
    let typ = match op {
        "solicit" => msg::SOLICIT,
        "request" => msg::REQUEST,
        _ => msg::RENEW,
    };
    let msgs: Vec<Vec<u8>> = (0..n)
        .map(|i| message(typ, i, &server, held.get(i as usize).copied(), with_classes))
        .collect();
    // As the daemon in ack mode: the worker's batches of 64, each followed by the committer's
    // group commit (outside the measured region; it empties the staging vectors, whose
    // capacity is then reused).
    let log = t.log();
    let t0 = Instant::now();
    let mut answered = 0;
    for batch in msgs.chunks(64) {
        answered += timed_loop(&e, &mut t, &meta, batch, &mut out);
        if let Some(l) = &log {
            l.commit().map_err(|e| format!("log commit: {e}"))?;
        }
    }
    let dt = t0.elapsed();
    let s = stats.snapshot();
    println!(
        "perop6 {op}{}: {answered} of {n} answered (bound {}, renewed {}, no addrs {}), \
         {:.0} ns each (wall, includes machine noise)",
        if with_classes { "_classes" } else { "" },
        s.bound,
        s.renewed,
        s.no_addrs,
        dt.as_nanos() as f64 / f64::from(n.max(1))
    );
    if answered != n as usize {
        return Err(format!("{} messages unanswered", n as usize - answered));
    }
    Ok(())
}

fn main() -> std::process::ExitCode {
    let mut args = std::env::args().skip(1);
    let op = args.next().unwrap_or_default();
    let Some(n) = args.next().and_then(|a| a.parse::<u32>().ok()) else {
        eprintln!("usage: perop6 OP N  (OP: solicit request renew, each also OP_classes)");
        return std::process::ExitCode::FAILURE;
    };
    match run(&op, n) {
        Ok(()) => std::process::ExitCode::SUCCESS,
        Err(e) => {
            eprintln!("perop6: {e}");
            std::process::ExitCode::FAILURE
        }
    }
}
