//! Runs one per-packet operation N times inside `timed_loop`, for
//! instruction counts that do not depend on machine load:
//!
//! ```text
//! valgrind --tool=callgrind --collect-atstart=no --toggle-collect='*timed_loop*' \
//!     target/release/perop OP N
//! callgrind_annotate --inclusive=yes callgrind.out.<pid>
//! ```
//! Instructions per operation = total Ir / N (setup is not collected).
//! Without valgrind it prints the wall time per operation.
//!
//! OP: parse_ours | parse_dhcproto | discover | select | renew |
//!     frame_discover | frame_renew | alloc | find_hit | find_miss | update |
//!     framing_parse_v4 | framing_write_v4 | framing_parse_v6 | framing_write_v6
//! The `framing_*` OPs are the frame layer alone (no engine, no table): parse a DISCOVER and a
//! REQUEST frame as the loadgen sends them (client to broadcast, untagged), alternately; write
//! the headers of a 300-byte reply; the same over IPv6 with a 100-byte payload.
//! An engine OP with the suffix `_classes` (`discover_classes`, `select_classes`,
//! `renew_classes`) runs on `classes_config()` (20 classes, shared networks) instead.

use std::hint::black_box;
use std::net::Ipv4Addr;
use std::process::ExitCode;
use std::time::Instant;

use dhcproto::{v4, Decodable, Decoder};
use xdhcpd::server::packet_io::xsk::FrameResponder;
use xdhcpd_benches::{
    build, classes_config, frame_around, patch_payload, request_addrs, set_client_in_frame,
    EngineFixture, Req, CONFIG, FRAME_SIZE, NOW, RELAY, SERVER_ID, SERVER_MAC,
};
use xdhcpd_dhcpv4::wire::Message;
use xdhcpd_dhcpv4::{Decision, Engine, RxMeta};
use xdhcpd_io::frame::{
    ipv6_payload_offset, write_ipv4_udp_headers, write_ipv6_udp_headers, FrameLayout, Ipv4UdpAddrs,
    Ipv6UdpAddrs, RxFrame,
};

const META: RxMeta = RxMeta {
    local_addr: SERVER_ID,
    src_ip: RELAY,
    dst_ip: SERVER_ID,
};

/// The measured region; everything it calls is collected by callgrind.
#[inline(never)]
fn timed_loop(n: u64, f: &mut dyn FnMut(u64) -> bool) -> u64 {
    let mut ok = 0;
    for i in 0..n {
        ok += u64::from(f(i));
    }
    ok
}

fn offer_ip(engine: &mut Engine, client: u64, out: &mut [u8]) -> Result<[u8; 4], String> {
    let d = build(&Req::discover(client));
    match engine.handle(NOW, &META, &d.bytes, out) {
        Decision::Reply { .. } => Ok([out[16], out[17], out[18], out[19]]),
        other => Err(format!("DISCOVER of client {client}: {other:?}")),
    }
}

fn run(op: &str, n: u64) -> Result<u64, String> {
    let dir = tempfile::tempdir().map_err(|e| format!("temporary folder: {e}"))?;
    let needs_table = !op.starts_with("parse") && !op.starts_with("framing_");
    let (op, config) = match op.strip_suffix("_classes") {
        Some(o) => (o, classes_config()),
        None => (op, CONFIG.to_string()),
    };
    let fx = if needs_table {
        Some(EngineFixture::open_with(
            &dir.path().join("leases.db"),
            &config,
        )?)
    } else {
        None
    };
    let fx = fx.as_ref();
    let mut out = vec![0u8; FRAME_SIZE];
    let base: u64 = 1 << 32;
    let bound = |engine: &mut Engine, out: &mut [u8]| -> Result<Vec<[u8; 4]>, String> {
        // n clients with Active leases (DISCOVER + REQUEST each).
        let mut ips = Vec::with_capacity(n as usize);
        for i in 0..n {
            let ip = offer_ip(engine, base + i, out)?;
            let r = build(&Req::select(base + i, Ipv4Addr::from(ip)));
            if !matches!(
                engine.handle(NOW, &META, &r.bytes, out),
                Decision::Reply { .. }
            ) {
                return Err(format!("REQUEST of client {}", base + i));
            }
            ips.push(ip);
        }
        Ok(ips)
    };
    let engine = || fx.map(|f| f.engine()).ok_or("no table");
    match op {
        "parse_ours" | "parse_dhcproto" => {
            let d = build(&Req::discover(7));
            let b = &d.bytes[..];
            let t = Instant::now();
            let ok = if op == "parse_ours" {
                timed_loop(n, &mut |_| {
                    Message::new_checked(black_box(b))
                        .and_then(|m| m.summary())
                        .is_ok()
                })
            } else {
                timed_loop(n, &mut |_| {
                    v4::Message::decode(&mut Decoder::new(black_box(b))).is_ok()
                })
            };
            report(op, n, ok, t)
        }
        "discover" => {
            let mut e = engine()?;
            let mut d = build(&Req::discover(0));
            let t = Instant::now();
            let ok = timed_loop(n, &mut |i| {
                d.set_client(base + i);
                matches!(
                    e.handle(NOW, &META, &d.bytes, &mut out),
                    Decision::Reply { .. }
                )
            });
            report(op, n, ok, t)
        }
        "select" => {
            let mut e = engine()?;
            let mut ips = Vec::with_capacity(n as usize);
            for i in 0..n {
                ips.push(offer_ip(&mut e, base + i, &mut out)?);
            }
            let reqs: Vec<_> = (0..n)
                .map(|i| build(&Req::select(base + i, Ipv4Addr::from(ips[i as usize]))))
                .collect();
            let t = Instant::now();
            let ok = timed_loop(n, &mut |i| {
                matches!(
                    e.handle(NOW, &META, &reqs[i as usize].bytes, &mut out),
                    Decision::Reply { .. }
                )
            });
            report(op, n, ok, t)
        }
        "renew" => {
            let mut e = engine()?;
            let ips = bound(&mut e, &mut out)?;
            let mut r = build(&Req::renew(0, Ipv4Addr::UNSPECIFIED));
            let t = Instant::now();
            let ok = timed_loop(n, &mut |i| {
                r.set_client(base + i);
                r.bytes[12..16].copy_from_slice(&ips[i as usize]);
                matches!(
                    e.handle(NOW + 5, &META, &r.bytes, &mut out),
                    Decision::Reply { .. }
                )
            });
            report(op, n, ok, t)
        }
        "frame_discover" | "frame_renew" => {
            let mut e = engine()?;
            let renew = op == "frame_renew";
            let ips = if renew {
                bound(&mut e, &mut out)?
            } else {
                Vec::new()
            };
            let mut engine = e;
            let mut resp = FrameResponder::new(SERVER_MAC, SERVER_ID, SERVER_ID);
            let req = if renew {
                Req::renew(0, Ipv4Addr::UNSPECIFIED)
            } else {
                Req::discover(0)
            };
            let tpl = build(&req);
            let (frame, len) =
                frame_around(&tpl.bytes, &[], &request_addrs(&req)).map_err(|e| e.to_string())?;
            let off = FrameLayout::new(0).payload_offset();
            let t = Instant::now();
            let ok = timed_loop(n, &mut |i| {
                out[..len].copy_from_slice(&frame[..len]);
                set_client_in_frame(&mut out, off, tpl.cid_mac_at, base + i);
                if let Some(at) = tpl.ri_mac_at {
                    // The relay's remote-id names this client too.
                    patch_payload(&mut out, off, at, &xdhcpd_benches::client_mac(base + i));
                }
                if renew {
                    patch_payload(&mut out, off, 12, &ips[i as usize]);
                }
                resp.answer(&mut out, len, &mut |m, p, o| {
                    engine.handle(NOW + 5, m, p, o)
                })
                .is_some()
            });
            report(op, n, ok, t)
        }
        "framing_parse_v4" | "framing_parse_v6" => {
            let frames = if op == "framing_parse_v4" {
                let mut v = Vec::new();
                for req in [Req::discover(7), Req::select(7, Ipv4Addr::new(10, 0, 1, 7))] {
                    let req = Req {
                        relayed: false,
                        ..req
                    };
                    let (f, len) = frame_around(&build(&req).bytes, &[], &request_addrs(&req))
                        .map_err(|e| e.to_string())?;
                    v.push(f[..len].to_vec());
                }
                v
            } else {
                let mut f = vec![0u8; FRAME_SIZE];
                let len = v6_frame(&mut f)?;
                vec![f[..len].to_vec(), f[..len].to_vec()]
            };
            let t = Instant::now();
            let ok = timed_loop(n, &mut |i| {
                RxFrame::parse(black_box(&frames[(i & 1) as usize]))
                    .map(|rx| rx.payload.len())
                    .is_ok()
            });
            report(op, n, ok, t)
        }
        "framing_write_v4" => {
            let addrs = Ipv4UdpAddrs {
                src_mac: SERVER_MAC,
                dst_mac: [0xff; 6],
                src_ip: SERVER_ID,
                dst_ip: Ipv4Addr::BROADCAST,
                src_port: 67,
                dst_port: 68,
            };
            let off = FrameLayout::new(0).payload_offset();
            for (i, b) in out[off..off + 300].iter_mut().enumerate() {
                *b = i as u8;
            }
            let t = Instant::now();
            let ok = timed_loop(n, &mut |_| {
                write_ipv4_udp_headers(black_box(&mut out), &[], black_box(&addrs), 300).is_ok()
            });
            report(op, n, ok, t)
        }
        "framing_write_v6" => {
            v6_frame(&mut out)?;
            let addrs = v6_addrs();
            let t = Instant::now();
            let ok = timed_loop(n, &mut |_| {
                write_ipv6_udp_headers(black_box(&mut out), &[], black_box(&addrs), 100).is_ok()
            });
            report(op, n, ok, t)
        }
        "alloc" | "find_hit" | "find_miss" | "update" => {
            let t = &fx.ok_or("no table")?.table;
            let pool_id = t.pools().first().map(|p| p.id).ok_or("no pool")?;
            let key = |i: u64| {
                let mut id = [1u8; 7];
                id[1..].copy_from_slice(&xdhcpd_benches::client_mac(base + i));
                lease_store::ClientKey::from_client_id(&id)
            };
            let offer = |l: &mut lease_store::Lease, k: lease_store::ClientKey| {
                l.state = lease_store::LeaseState::Offered;
                l.client = k;
                l.expiry = NOW + 30;
            };
            let alloc = |i: u64| {
                let k = key(i);
                t.allocate(pool_id, 0, NOW, lease_store::Owner::Primary, |l| {
                    offer(l, k)
                })
                .map(|(s, ())| s)
            };
            if op == "alloc" {
                let st = Instant::now();
                let ok = timed_loop(n, &mut |i| alloc(i).is_some());
                return report(op, n, ok, st);
            }
            let mut slots = Vec::with_capacity(n as usize);
            for i in 0..n {
                slots.push(alloc(i).ok_or("pool ran dry")?);
            }
            let st = Instant::now();
            let ok = match op {
                "find_hit" => timed_loop(n, &mut |i| t.find_client(&key(i)).is_some()),
                "find_miss" => timed_loop(n, &mut |i| t.find_client(&key(n + i)).is_none()),
                _ => timed_loop(n, &mut |i| {
                    t.update(slots[i as usize], |l| {
                        l.expiry = NOW + 60;
                        true
                    })
                }),
            };
            report(op, n, ok, st)
        }
        other => Err(format!("unknown operation `{other}`")),
    }
}

/// Ethernet/IPv6/UDP headers around a 100-byte payload (a SOLICIT's size), as a DHCPv6 reply
/// is framed. Returns the frame length.
fn v6_frame(f: &mut [u8]) -> Result<usize, String> {
    let off = ipv6_payload_offset(0);
    for (i, b) in f[off..off + 100].iter_mut().enumerate() {
        *b = i as u8;
    }
    write_ipv6_udp_headers(f, &[], &v6_addrs(), 100).map_err(|e| e.to_string())
}

fn v6_addrs() -> Ipv6UdpAddrs {
    Ipv6UdpAddrs {
        src_mac: SERVER_MAC,
        dst_mac: [0x33, 0x33, 0, 1, 0, 2],
        src_ip: std::net::Ipv6Addr::new(0xfe80, 0, 0, 0, 0x53ff, 0xfe52, 0x5600, 1),
        dst_ip: std::net::Ipv6Addr::new(0xff02, 0, 0, 0, 0, 0, 1, 2),
        src_port: 546,
        dst_port: 547,
    }
}

fn report(op: &str, n: u64, ok: u64, t: Instant) -> Result<u64, String> {
    let el = t.elapsed();
    if ok != n {
        return Err(format!("{op}: {ok} of {n} operations succeeded"));
    }
    println!(
        "perop {op}: {n} ops, {:.1} ns/op (wall, includes machine noise)",
        el.as_nanos() as f64 / n as f64
    );
    Ok(ok)
}

fn main() -> ExitCode {
    let mut args = std::env::args().skip(1);
    let (Some(op), Some(n)) = (args.next(), args.next()) else {
        eprintln!("usage: perop OP N  (OP: parse_ours parse_dhcproto discover select renew frame_discover frame_renew framing_parse_v4 framing_write_v4 framing_parse_v6 framing_write_v6 ...)");
        return ExitCode::FAILURE;
    };
    let Ok(n) = n.parse::<u64>() else {
        eprintln!("perop: N `{n}` is not a number");
        return ExitCode::FAILURE;
    };
    match run(&op, n) {
        Ok(_) => ExitCode::SUCCESS,
        Err(e) => {
            eprintln!("perop: {e}");
            ExitCode::FAILURE
        }
    }
}
