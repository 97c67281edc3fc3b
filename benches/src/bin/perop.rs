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
//!     frame_discover | frame_renew | alloc | find_hit | find_miss | update
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
use xdhcpd_io::frame::FrameLayout;

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
    let needs_table = !op.starts_with("parse");
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
        eprintln!("usage: perop OP N  (OP: parse_ours parse_dhcproto discover select renew frame_discover frame_renew)");
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
