//! The leasequery path of the engine allocates nothing: a counting global
//! allocator (this test binary only) sees zero allocations while the engine
//! answers leasequeries of every kind, including through a failover policy.

use std::net::Ipv4Addr;
use std::sync::Arc;

use lease_store::{LeaseTable, OpenOptions, PoolSpec};
use xdhcpd_dhcpv4::wire::{opt, MessageType, MAGIC_COOKIE};
use xdhcpd_dhcpv4::{Decision, Engine, EngineShared, EngineStats, RxMeta};
use xdhcpd_failover::{FailoverPolicy, PolicyCell, Role, ServerState};

#[path = "common/counting_alloc.rs"]
mod counting_alloc;
use counting_alloc::allocs;

const SERVER: Ipv4Addr = Ipv4Addr::new(10, 0, 0, 1);
const RELAY: Ipv4Addr = Ipv4Addr::new(10, 9, 0, 1);
const CFG: &str = r#"
[server]
interface = "lo"
[[subnet]]
cidr = "10.9.0.0/24"
[[subnet.pool]]
range = "10.9.0.10-10.9.0.20"
"#;

fn packet(ciaddr: Ipv4Addr, mac: u8, opts: &[(u8, &[u8])]) -> Vec<u8> {
    let mut b = vec![0u8; 240];
    b[0] = 1;
    if mac != 0 {
        b[1] = 1;
        b[2] = 6;
        b[28..34].copy_from_slice(&[2, 0, 0, 0, 0, mac]);
    }
    b[12..16].copy_from_slice(&ciaddr.octets());
    b[24..28].copy_from_slice(&RELAY.octets());
    b[236..240].copy_from_slice(&MAGIC_COOKIE);
    for (c, v) in opts {
        b.push(*c);
        b.push(v.len() as u8);
        b.extend_from_slice(v);
    }
    b.push(opt::END);
    b
}

fn kind(d: Decision) -> Option<MessageType> {
    match d {
        Decision::Reply { kind, .. } => Some(kind),
        Decision::Silent(_) => None,
    }
}

#[test]
fn leasequery_answers_allocate_nothing() {
    let cfg = Arc::new(xdhcpd_config::parse(CFG, "alloc.toml").expect("config"));
    let dir = tempfile::tempdir().expect("tempdir");
    let pools: Vec<PoolSpec> = cfg
        .pool_specs()
        .into_iter()
        .map(|(id, first, last)| PoolSpec { id, first, last })
        .collect();
    let (table, _) = LeaseTable::open(
        &dir.path().join("l.db"),
        &pools,
        &OpenOptions {
            now: 1000,
            ..OpenOptions::default()
        },
    )
    .expect("table");
    let cell = Arc::new(PolicyCell::new(FailoverPolicy {
        role: Role::Secondary,
        state: ServerState::Normal,
        mclt: 3600,
        lease_period_factor_permille: 1500,
        partner_down_usable_at: 0,
        hba: [0xff; 32],
        load_balance_max_secs: 0,
        rebind_limit: 0,
        own_pool_waits: false,
        expiry_grace: 0,
    }));
    let shared = EngineShared::new(cfg, Arc::new(table), SERVER).with_failover(cell.clone());
    let mut e = Engine::new(Arc::new(shared), 0, Arc::new(EngineStats::default()));
    let meta = RxMeta {
        local_addr: SERVER,
        src_ip: RELAY,
        dst_ip: SERVER,
    };
    let mut out = [0u8; 1500];

    // A binding made while this server is the primary in PARTNER-DOWN (it may allocate).
    cell.store(&FailoverPolicy {
        role: Role::Primary,
        state: ServerState::PartnerDown,
        ..cell.load()
    });
    let o82: &[u8] = &[1, 2, b'c', b'1', 2, 2, b'r', b'1'];
    let id: &[u8] = &[1, 2, 0, 0, 0, 0, 5];
    let d = packet(Ipv4Addr::UNSPECIFIED, 5, &[(53, &[1]), (61, id), (82, o82)]);
    let Decision::Reply { len, .. } = e.handle(1000, &meta, &d, &mut out) else {
        panic!("no offer")
    };
    let ip = Ipv4Addr::new(out[16], out[17], out[18], out[19]);
    assert!(len > 0);
    let sid = SERVER.octets();
    let ipo = ip.octets();
    let r = packet(
        Ipv4Addr::UNSPECIFIED,
        5,
        &[(53, &[3]), (54, &sid), (50, &ipo), (61, id), (82, o82)],
    );
    assert_eq!(
        kind(e.handle(1000, &meta, &r, &mut out)),
        Some(MessageType::Ack)
    );
    // Back to a backup in NORMAL: leasequeries are still answered.
    cell.store(&FailoverPolicy {
        role: Role::Secondary,
        state: ServerState::Normal,
        ..cell.load()
    });

    let lq = |ciaddr: Ipv4Addr, mac: u8, extra: &[(u8, &[u8])]| {
        let mut o: Vec<(u8, &[u8])> = vec![(53, &[10]), (55, &[51, 61, 82, 91])];
        o.extend_from_slice(extra);
        packet(ciaddr, mac, &o)
    };
    let queries = [
        (lq(ip, 0, &[]), MessageType::LeaseActive),
        (lq(Ipv4Addr::UNSPECIFIED, 5, &[]), MessageType::LeaseActive),
        (
            lq(Ipv4Addr::UNSPECIFIED, 0, &[(61, id)]),
            MessageType::LeaseActive,
        ),
        (
            lq(Ipv4Addr::new(10, 9, 0, 19), 0, &[]),
            MessageType::LeaseUnassigned,
        ),
        (
            lq(Ipv4Addr::new(192, 0, 2, 1), 0, &[]),
            MessageType::LeaseUnknown,
        ),
        (lq(Ipv4Addr::UNSPECIFIED, 9, &[]), MessageType::LeaseUnknown),
    ];
    // Warm-up (first use of lazily built things, if any), then count.
    for (q, want) in &queries {
        assert_eq!(kind(e.handle(1001, &meta, q, &mut out)), Some(*want));
    }
    let before = allocs();
    for _ in 0..100 {
        for (q, want) in &queries {
            let d = e.handle(1001, &meta, q, &mut out);
            assert_eq!(kind(d), Some(*want));
        }
    }
    let n = allocs() - before;
    assert_eq!(n, 0, "{n} allocations in 600 leasequeries");
    assert_eq!(e.stats().snapshot().leasequeries, 606);
}
