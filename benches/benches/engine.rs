//! The decision step: `Engine::handle` on DISCOVER (a fresh client every
//! time), REQUEST (SELECTING, after our OFFER) and REQUEST (RENEWING), and
//! `FrameResponder::answer` (frame in, frame out: the whole per-packet step
//! of the AF_XDP worker minus the ring I/O), against a real lease table of
//! 1,048,319 addresses in a file in a temporary folder.
//!
//! Addresses handed out in a timed chunk are given back to the free lists
//! between chunks, untimed, so the pool never runs dry however many
//! iterations criterion asks for; every reply is checked to be the expected
//! kind, so a pool running dry (fast silent drops) would fail the run.

use std::hint::black_box;
use std::net::Ipv4Addr;
use std::time::Instant;

use criterion::{criterion_group, criterion_main, Criterion, Throughput};
use lease_store::{LeaseTable, Slot};
use xdhcpd::server::packet_io::xsk::FrameResponder;
use xdhcpd_benches::{
    build, frame_around, free_slots, in_chunks, patch_payload, request_addrs, set_client_in_frame,
    Built, EngineFixture, Req, FRAME_SIZE, NOW, RELAY, SERVER_ID, SERVER_MAC,
};
use xdhcpd_dhcpv4::wire::MessageType;
use xdhcpd_dhcpv4::{Decision, Engine, RxMeta};
use xdhcpd_io::frame::FrameLayout;

/// Requests per timed chunk before the untimed clean-up.
const CHUNK: u64 = 4096;
/// Clients kept bound for the renew benchmarks.
const RENEW_CLIENTS: u64 = 65_536;

fn meta() -> RxMeta {
    RxMeta {
        local_addr: SERVER_ID,
        src_ip: RELAY,
        dst_ip: SERVER_ID,
    }
}

fn reply_kind(d: Decision) -> Option<MessageType> {
    match d {
        Decision::Reply { kind, .. } => Some(kind),
        Decision::Silent(_) => None,
    }
}

/// Offset of option 50's value in a SELECTING request built by `build`.
fn requested_ip_at(b: &Built) -> usize {
    // 53 (3 bytes) + 61 (9 bytes) then 50: code, len, value.
    let at = 240 + 3 + 9 + 2;
    assert_eq!(b.bytes[at - 2], 50, "option 50 not where expected");
    at
}

/// Gives the addresses `engine` bound since the last call back to the free
/// lists (the untimed clean-up after a chunk).
fn give_back(engine: &mut Engine, table: &LeaseTable, changed: &mut Vec<Slot>) {
    engine.take_changed(changed);
    free_slots(table, changed);
    changed.clear();
}

/// DISCOVER + REQUEST for `client`; returns the address, or why not.
fn dora(engine: &mut Engine, client: u64, out: &mut [u8]) -> Result<Ipv4Addr, String> {
    let d = build(&Req::discover(client));
    match engine.handle(NOW, &meta(), &d.bytes, out) {
        Decision::Reply {
            kind: MessageType::Offer,
            ..
        } => {}
        other => return Err(format!("DISCOVER of client {client}: {other:?}")),
    }
    let ip = Ipv4Addr::new(out[16], out[17], out[18], out[19]);
    let r = build(&Req::select(client, ip));
    match engine.handle(NOW, &meta(), &r.bytes, out) {
        Decision::Reply {
            kind: MessageType::Ack,
            ..
        } => Ok(ip),
        other => Err(format!("REQUEST of client {client}: {other:?}")),
    }
}

fn engine_benches(c: &mut Criterion) {
    let dir = tempfile::tempdir().expect("temporary folder for the lease table");
    let fx = EngineFixture::open(&dir.path().join("leases.db")).unwrap_or_else(|e| panic!("{e}"));
    eprintln!(
        "engine: lease table of {} records opened in {:.0?} at {}",
        fx.table.len(),
        fx.open_time,
        dir.path().display()
    );
    let mut engine = fx.engine();
    let mut out = vec![0u8; FRAME_SIZE];
    let mut changed: Vec<Slot> = Vec::with_capacity(CHUNK as usize);
    let mut next_client: u64 = 1 << 32;

    let mut g = c.benchmark_group("engine/handle");
    g.throughput(Throughput::Elements(1));

    // DISCOVER from a client never seen before: index miss, pop a free
    // address, bind it as Offered, write the OFFER.
    let mut disc = build(&Req::discover(0));
    g.bench_function("discover_fresh_client", |b| {
        b.iter_custom(|iters| {
            in_chunks(iters, CHUNK, |n| {
                let mut offers = 0u64;
                let t = Instant::now();
                for _ in 0..n {
                    disc.set_client(next_client);
                    next_client += 1;
                    let d = engine.handle(NOW, &meta(), black_box(&disc.bytes), &mut out);
                    offers += u64::from(reply_kind(d) == Some(MessageType::Offer));
                }
                let took = t.elapsed();
                assert_eq!(offers, n, "DISCOVERs without an OFFER");
                give_back(&mut engine, &fx.table, &mut changed);
                took
            })
        })
    });

    // REQUEST (SELECTING) after our OFFER: the client's record is found by
    // address, checked, bound Active, ACK written. The DISCOVERs are untimed.
    let mut sel = build(&Req::select(0, Ipv4Addr::UNSPECIFIED));
    let ip_at = requested_ip_at(&sel);
    let mut offered: Vec<(u64, [u8; 4])> = Vec::with_capacity(CHUNK as usize);
    g.bench_function("request_selecting", |b| {
        b.iter_custom(|iters| {
            in_chunks(iters, CHUNK, |n| {
                offered.clear();
                for _ in 0..n {
                    disc.set_client(next_client);
                    match engine.handle(NOW, &meta(), &disc.bytes, &mut out) {
                        Decision::Reply {
                            kind: MessageType::Offer,
                            ..
                        } => offered.push((next_client, [out[16], out[17], out[18], out[19]])),
                        other => panic!("setup DISCOVER: {other:?}"),
                    }
                    next_client += 1;
                }
                let mut acks = 0u64;
                let t = Instant::now();
                for &(client, ip) in &offered {
                    sel.set_client(client);
                    sel.bytes[ip_at..ip_at + 4].copy_from_slice(&ip);
                    let d = engine.handle(NOW, &meta(), black_box(&sel.bytes), &mut out);
                    acks += u64::from(reply_kind(d) == Some(MessageType::Ack));
                }
                let took = t.elapsed();
                assert_eq!(acks, n, "REQUESTs without an ACK");
                give_back(&mut engine, &fx.table, &mut changed);
                took
            })
        })
    });

    // REQUEST (RENEWING, ciaddr set) from bound clients, round robin; the
    // clock moves on each round so every renew rewrites its record.
    let mut bound: Vec<(u64, [u8; 4])> = Vec::with_capacity(RENEW_CLIENTS as usize);
    for _ in 0..RENEW_CLIENTS {
        let ip = dora(&mut engine, next_client, &mut out).unwrap_or_else(|e| panic!("{e}"));
        bound.push((next_client, ip.octets()));
        next_client += 1;
    }
    engine.take_changed(&mut changed);
    changed.clear();
    let mut renew = build(&Req::renew(0, Ipv4Addr::UNSPECIFIED));
    let mut turn: u64 = 0;
    g.bench_function("request_renewing", |b| {
        b.iter_custom(|iters| {
            in_chunks(iters, CHUNK, |n| {
                let mut acks = 0u64;
                let t = Instant::now();
                for _ in 0..n {
                    let (client, ip) = bound[(turn % RENEW_CLIENTS) as usize];
                    let now = NOW + 1 + (turn / RENEW_CLIENTS) as u32;
                    turn += 1;
                    renew.set_client(client);
                    renew.bytes[12..16].copy_from_slice(&ip);
                    let d = engine.handle(now, &meta(), black_box(&renew.bytes), &mut out);
                    acks += u64::from(reply_kind(d) == Some(MessageType::Ack));
                }
                let took = t.elapsed();
                assert_eq!(acks, n, "renewals without an ACK");
                engine.take_changed(&mut changed);
                changed.clear();
                took
            })
        })
    });
    g.finish();

    // ---------------------------------------------------------- responder
    let mut g = c.benchmark_group("engine/responder");
    g.throughput(Throughput::Elements(1));
    let mut engine = fx.engine();
    let mut resp = FrameResponder::new(SERVER_MAC, SERVER_ID, SERVER_ID);
    let off = FrameLayout::new(0).payload_offset();

    // Frame in, frame out for a fresh client's DISCOVER. Each iteration
    // first copies the 377-byte request frame into the working frame (the
    // reply overwrites it in place); that copy (~10 ns) is in the figure.
    let dreq = Req::discover(0);
    let dtpl = build(&dreq);
    let (dframe, dlen) =
        frame_around(&dtpl.bytes, &[], &request_addrs(&dreq)).unwrap_or_else(|e| panic!("{e}"));
    let mut umem = vec![0u8; FRAME_SIZE];
    g.bench_function("handle_frame/discover_fresh_client", |b| {
        b.iter_custom(|iters| {
            in_chunks(iters, CHUNK, |n| {
                let mut replies = 0u64;
                let t = Instant::now();
                for _ in 0..n {
                    umem[..dlen].copy_from_slice(&dframe[..dlen]);
                    set_client_in_frame(&mut umem, off, dtpl.cid_mac_at, next_client);
                    next_client += 1;
                    let r = resp.answer(black_box(&mut umem), dlen, &mut |m, p, o| {
                        engine.handle(NOW, m, p, o)
                    });
                    replies += u64::from(r.is_some());
                }
                let took = t.elapsed();
                assert_eq!(replies, n, "DISCOVER frames without a reply frame");
                give_back(&mut engine, &fx.table, &mut changed);
                took
            })
        })
    });

    // Frame in, frame out for a renew.
    let rreq = Req::renew(0, Ipv4Addr::UNSPECIFIED);
    let rtpl = build(&rreq);
    let (rframe, rlen) =
        frame_around(&rtpl.bytes, &[], &request_addrs(&rreq)).unwrap_or_else(|e| panic!("{e}"));
    g.bench_function("handle_frame/request_renewing", |b| {
        b.iter_custom(|iters| {
            in_chunks(iters, CHUNK, |n| {
                let mut replies = 0u64;
                let t = Instant::now();
                for _ in 0..n {
                    let (client, ip) = bound[(turn % RENEW_CLIENTS) as usize];
                    let now = NOW + 1 + (turn / RENEW_CLIENTS) as u32;
                    turn += 1;
                    umem[..rlen].copy_from_slice(&rframe[..rlen]);
                    set_client_in_frame(&mut umem, off, rtpl.cid_mac_at, client);
                    patch_payload(&mut umem, off, 12, &ip);
                    let r = resp.answer(black_box(&mut umem), rlen, &mut |m, p, o| {
                        engine.handle(now, m, p, o)
                    });
                    replies += u64::from(r.is_some());
                }
                let took = t.elapsed();
                assert_eq!(replies, n, "renew frames without a reply frame");
                engine.take_changed(&mut changed);
                changed.clear();
                took
            })
        })
    });

    // A whole DORA exchange per element, the way the worker commits in ack
    // mode: a batch of 64 DISCOVER frames, commit (`LeaseTable::flush`, as
    // the committer calls it), then 64 REQUEST frames, commit.
    // Figures are per exchange (2 frames in, 2 out, 2/64 of a flush each).
    let sel_at = requested_ip_at(&sel);
    let stpl = build(&Req::select(0, Ipv4Addr::UNSPECIFIED));
    let (sframe, slen) =
        frame_around(&stpl.bytes, &[], &request_addrs(&rreq)).unwrap_or_else(|e| panic!("{e}"));
    let mut batch: Vec<(u64, [u8; 4])> = Vec::with_capacity(64);
    g.sample_size(20);
    g.bench_function("dora_batch64_ack_commit_per_exchange", |b| {
        b.iter_custom(|iters| {
            in_chunks(iters, 64, |n| {
                batch.clear();
                let t = Instant::now();
                for _ in 0..n {
                    umem[..dlen].copy_from_slice(&dframe[..dlen]);
                    set_client_in_frame(&mut umem, off, dtpl.cid_mac_at, next_client);
                    if resp
                        .answer(&mut umem, dlen, &mut |m, p, o| engine.handle(NOW, m, p, o))
                        .is_some()
                    {
                        let y = &umem[off + 16..off + 20];
                        batch.push((next_client, [y[0], y[1], y[2], y[3]]));
                    }
                    next_client += 1;
                }
                engine.take_changed(&mut changed);
                if let Err(e) = fx.table.flush() {
                    panic!("flush: {e}");
                }
                let mut acks = 0u64;
                for &(client, ip) in &batch {
                    umem[..slen].copy_from_slice(&sframe[..slen]);
                    set_client_in_frame(&mut umem, off, stpl.cid_mac_at, client);
                    patch_payload(&mut umem, off, sel_at, &ip);
                    acks += u64::from(
                        resp.answer(&mut umem, slen, &mut |m, p, o| engine.handle(NOW, m, p, o))
                            .is_some(),
                    );
                }
                engine.take_changed(&mut changed);
                if let Err(e) = fx.table.flush() {
                    panic!("flush: {e}");
                }
                let took = t.elapsed();
                assert_eq!(acks, n, "exchanges without an ACK");
                changed.sort_unstable();
                changed.dedup();
                free_slots(&fx.table, &changed);
                changed.clear();
                // The clean-up's writes must not be paid by the next timed flush.
                if let Err(e) = fx.table.flush() {
                    panic!("flush: {e}");
                }
                took
            })
        })
    });
    g.finish();
}

criterion_group!(benches, engine_benches);
criterion_main!(benches);
