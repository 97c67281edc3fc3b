//! Registrations on the packet path (issue 10): the index's lookup and update costs at
//! 1,000,000 registrations, and a whole DORA (DISCOVER + REQUEST through `Engine::handle`)
//! with no registrations against the same with 1,000,000 registrations (every client
//! registered by MAC, in group "cm"; it also sends a client id, which no registration
//! has), each on the plain benchmark configuration and on `classes_config()` (20 classes,
//! two shared networks, pools with allow / deny lists), in the same run, over four lease
//! tables of 1,048,319 addresses.

use std::hint::black_box;
use std::net::Ipv4Addr;
use std::sync::Arc;
use std::time::Instant;

use criterion::{criterion_group, criterion_main, Criterion, Throughput};
use lease_store::{ClientKey, Slot};
use xdhcpd::registrations::IndexView;
use xdhcpd_benches::{
    build, classes_config, client_mac, free_slots, in_chunks, open_table_with, Req, CONFIG,
    FRAME_SIZE, NOW, RELAY, SERVER_ID,
};
use xdhcpd_dhcpv4::wire::MessageType;
use xdhcpd_dhcpv4::{
    Decision, Engine, EngineShared, EngineStats, Registered, RegistrationView, RxMeta,
};
use xdhcpd_registrations::{Index, Registration};

const REGISTRATIONS: u64 = 1_000_000;
/// Client numbers of the registered clients: BASE..BASE + REGISTRATIONS.
const BASE: u64 = 1 << 32;
const CHUNK: u64 = 2048;

fn reg(n: u64) -> Registration {
    Registration {
        mac: Some(client_mac(n)),
        client_id: None,
        group: "cm".into(),
        fixed_address: None,
        host_name: None,
        next_server: None,
        boot_file: None,
        options: Default::default(),
    }
}

fn meta() -> RxMeta {
    RxMeta {
        local_addr: SERVER_ID,
        src_ip: RELAY,
        dst_ip: SERVER_ID,
    }
}

fn engine(dir: &std::path::Path, config: &str, index: Option<Arc<Index>>) -> Engine {
    let cfg = Arc::new(xdhcpd_config::parse(config, "benches/CONFIG").expect("bench config"));
    let pools: Vec<lease_store::PoolSpec> = cfg
        .pool_specs()
        .into_iter()
        .map(|(id, first, last)| lease_store::PoolSpec { id, first, last })
        .collect();
    let table = Arc::new(open_table_with(&dir.join("leases.db"), &pools).expect("lease table"));
    let mut shared = EngineShared::new(cfg, table, SERVER_ID);
    if let Some(ix) = index {
        shared = shared.with_registrations(Arc::new(IndexView(ix)));
    }
    Engine::new(Arc::new(shared), 0, Arc::new(EngineStats::default()))
}

fn benches(c: &mut Criterion) {
    let t = Instant::now();
    let index = Arc::new(Index::new());
    for n in BASE..BASE + REGISTRATIONS {
        index.put(reg(n));
    }
    eprintln!(
        "registrations: {} registrations indexed in {:.0?}",
        index.len(),
        t.elapsed()
    );

    let mut g = c.benchmark_group("registrations/index_1M");
    g.throughput(Throughput::Elements(1));
    let mut i = 0u64;
    // Lookups as the engine makes them: through `IndexView::find`, reading every field the
    // engine copies.
    let view = IndexView(index.clone());
    let mut visit = |r: &Registered<'_>| {
        black_box((
            r.group.len(),
            r.fixed_address,
            r.next_server,
            r.boot_file.map(<[u8]>::len),
            r.options.len(),
        ));
    };
    g.bench_function("lookup_hit", |b| {
        b.iter(|| {
            i = (i + 7919) % REGISTRATIONS;
            let k = ClientKey::from_hw(1, &client_mac(BASE + i));
            black_box(view.find(&k, &mut visit))
        })
    });
    g.bench_function("lookup_miss", |b| {
        b.iter(|| {
            i = (i + 7919) % REGISTRATIONS;
            let k = ClientKey::from_hw(1, &client_mac(i));
            black_box(view.find(&k, &mut visit))
        })
    });
    g.bench_function("modify_one", |b| {
        b.iter(|| {
            i = (i + 7919) % REGISTRATIONS;
            let mut r = reg(BASE + i);
            r.group = if i.is_multiple_of(2) {
                "modem".into()
            } else {
                "cpe".into()
            };
            black_box(index.put(r).len())
        })
    });
    g.finish();

    let classes = classes_config();
    let dirs: Vec<tempfile::TempDir> = (0..4)
        .map(|_| tempfile::tempdir().expect("tempdir"))
        .collect();
    let mut engines = [
        ("no_registrations", engine(dirs[0].path(), CONFIG, None)),
        (
            "registrations_1M",
            engine(dirs[1].path(), CONFIG, Some(index.clone())),
        ),
        (
            "classes_20_no_registrations",
            engine(dirs[2].path(), &classes, None),
        ),
        (
            "classes_20_registrations_1M",
            engine(dirs[3].path(), &classes, Some(index.clone())),
        ),
    ];
    let mut out = vec![0u8; FRAME_SIZE];
    let mut changed: Vec<Slot> = Vec::with_capacity(CHUNK as usize * 2);

    let mut g = c.benchmark_group("registrations/dora");
    g.throughput(Throughput::Elements(1));
    for (name, eng) in engines.iter_mut() {
        let name = *name;
        let mut next = 0u64;
        let mut disc = build(&Req::discover(BASE));
        let mut sel = build(&Req::select(BASE, Ipv4Addr::UNSPECIFIED));
        // 53 (3 bytes) + 61 (9 bytes) then 50: code, len, value.
        let ip_at = 240 + 3 + 9 + 2;
        assert_eq!(sel.bytes[ip_at - 2], 50, "option 50 not where expected");
        g.bench_function(name, |b| {
            b.iter_custom(|iters| {
                in_chunks(iters, CHUNK, |n| {
                    let mut acks = 0u64;
                    let t = Instant::now();
                    for _ in 0..n {
                        let client = BASE + next % REGISTRATIONS;
                        next += 1;
                        disc.set_client(client);
                        if !matches!(
                            eng.handle(NOW, &meta(), black_box(&disc.bytes), &mut out),
                            Decision::Reply {
                                kind: MessageType::Offer,
                                ..
                            }
                        ) {
                            continue;
                        }
                        sel.set_client(client);
                        sel.bytes[ip_at..ip_at + 4].copy_from_slice(&out[16..20]);
                        acks += u64::from(matches!(
                            eng.handle(NOW, &meta(), black_box(&sel.bytes), &mut out),
                            Decision::Reply {
                                kind: MessageType::Ack,
                                ..
                            }
                        ));
                    }
                    let took = t.elapsed();
                    assert_eq!(acks, n, "{name}: exchanges without an ACK");
                    eng.take_changed(&mut changed);
                    changed.sort_unstable();
                    changed.dedup();
                    free_slots(eng.shared().table.as_ref(), &changed);
                    changed.clear();
                    took
                })
            })
        });
    }
    g.finish();
    // Every DORA of the registered engines found its client, in its group.
    for (name, eng) in &engines {
        if name.ends_with("registrations_1M") {
            assert!(eng.is_known(), "{name}");
            assert_eq!(eng.registration_group(), Some("cm"), "{name}");
        }
    }
}

criterion_group!(registration_benches, benches);
criterion_main!(registration_benches);
