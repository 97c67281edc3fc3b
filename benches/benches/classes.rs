//! The cost of client classes and shared networks: DISCOVER + REQUEST (SELECTING) for a fresh
//! client through `Engine::handle`, on the plain benchmark configuration (one subnet, one
//! ~1M pool) and on `classes_config()` (20 classes, 5 of which the client is in; two shared
//! networks; the client's ~1M pool after eight pools its classes may not use; options from
//! class, pool, subnet and network layers), in the same run. Same requests, same lease-table
//! size.

use std::hint::black_box;
use std::net::Ipv4Addr;
use std::time::Instant;

use criterion::{criterion_group, criterion_main, Criterion, Throughput};
use lease_store::Slot;
use xdhcpd_benches::{
    build, classes_config, free_slots, in_chunks, EngineFixture, Req, CONFIG, FRAME_SIZE, NOW,
    RELAY, SERVER_ID,
};
use xdhcpd_dhcpv4::wire::MessageType;
use xdhcpd_dhcpv4::{Decision, RxMeta};

const CHUNK: u64 = 4096;

fn meta() -> RxMeta {
    RxMeta {
        local_addr: SERVER_ID,
        src_ip: RELAY,
        dst_ip: SERVER_ID,
    }
}

fn class_benches(c: &mut Criterion) {
    let mut g = c.benchmark_group("engine/classes");
    g.throughput(Throughput::Elements(1));
    let classes = classes_config();
    for (name, text) in [
        ("dora_plain", CONFIG),
        ("dora_20_classes_shared_networks", classes.as_str()),
    ] {
        let dir = tempfile::tempdir().expect("temporary folder for the lease table");
        let fx = EngineFixture::open_with(&dir.path().join("leases.db"), text)
            .unwrap_or_else(|e| panic!("{e}"));
        let mut engine = fx.engine();
        let mut out = vec![0u8; FRAME_SIZE];
        let mut changed: Vec<Slot> = Vec::with_capacity(2 * CHUNK as usize);
        let mut disc = build(&Req::discover(0));
        let mut sel = build(&Req::select(0, Ipv4Addr::UNSPECIFIED));
        let ip_at = 240 + 3 + 9 + 2;
        assert_eq!(sel.bytes[ip_at - 2], 50, "option 50 not where expected");
        let mut next_client: u64 = 1 << 32;
        // The configuration serves the benchmark client from the big pool with the
        // layered options (checked once, untimed).
        disc.set_client(1);
        match engine.handle(NOW, &meta(), &disc.bytes, &mut out) {
            Decision::Reply {
                kind: MessageType::Offer,
                ..
            } => {
                let ip = Ipv4Addr::new(out[16], out[17], out[18], out[19]);
                assert!(
                    u32::from(ip) >> 20 == u32::from(Ipv4Addr::new(10, 0, 0, 0)) >> 20,
                    "{name}: offered {ip}"
                );
            }
            other => panic!("{name}: {other:?}"),
        }
        g.bench_function(name, |b| {
            b.iter_custom(|iters| {
                in_chunks(iters, CHUNK, |n| {
                    let mut acks = 0u64;
                    let t = Instant::now();
                    for _ in 0..n {
                        disc.set_client(next_client);
                        sel.set_client(next_client);
                        next_client += 1;
                        let d = engine.handle(NOW, &meta(), black_box(&disc.bytes), &mut out);
                        if !matches!(
                            d,
                            Decision::Reply {
                                kind: MessageType::Offer,
                                ..
                            }
                        ) {
                            continue;
                        }
                        let ip = [out[16], out[17], out[18], out[19]];
                        sel.bytes[ip_at..ip_at + 4].copy_from_slice(&ip);
                        let d = engine.handle(NOW, &meta(), black_box(&sel.bytes), &mut out);
                        acks += u64::from(matches!(
                            d,
                            Decision::Reply {
                                kind: MessageType::Ack,
                                ..
                            }
                        ));
                    }
                    let took = t.elapsed();
                    assert_eq!(acks, n, "{name}: exchanges without an ACK");
                    engine.take_changed(&mut changed);
                    free_slots(&fx.table, &changed);
                    changed.clear();
                    took
                })
            })
        });
    }
    g.finish();
}

criterion_group!(benches, class_benches);
criterion_main!(benches);
