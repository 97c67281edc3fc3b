//! The engine's registration path allocates nothing per packet: a counting global allocator
//! (this test binary only) sees zero allocations while the engine serves DORAs of registered
//! clients (fixed address, host options) and drops unknown ones on a `deny-unknown` subnet,
//! with the daemon's real view (`IndexView` over the `xdhcpd-registrations` index).

use std::net::Ipv4Addr;
use std::sync::Arc;

use lease_store::{LeaseTable, OpenOptions, PoolSpec};
use xdhcpd::registrations::IndexView;
use xdhcpd_dhcpv4::wire::{opt, MessageType, MAGIC_COOKIE};
use xdhcpd_dhcpv4::{Decision, Engine, EngineShared, EngineStats, RxMeta, Silence};
use xdhcpd_registrations::{Index, Registration};

#[path = "common/counting_alloc.rs"]
mod counting_alloc;
use counting_alloc::allocs;

const SERVER: Ipv4Addr = Ipv4Addr::new(10, 9, 0, 1);
const CFG: &str = r#"
[server]
interface = "lo"
[[subnet]]
cidr = "10.9.0.0/24"
router = ["10.9.0.1"]
deny-unknown = true
[[subnet.pool]]
range = "10.9.0.10-10.9.0.200"
"#;

fn packet(mac: u8, opts: &[(u8, &[u8])]) -> Vec<u8> {
    let mut b = vec![0u8; 240];
    b[0] = 1;
    b[1] = 1;
    b[2] = 6;
    b[4..8].copy_from_slice(&[0xde, 0xad, 0, mac]);
    b[28..34].copy_from_slice(&[2, 0, 0, 0, 0, mac]);
    b[236..240].copy_from_slice(&MAGIC_COOKIE);
    for (c, v) in opts {
        b.push(*c);
        b.push(v.len() as u8);
        b.extend_from_slice(v);
    }
    b.push(255);
    b
}

#[test]
fn registration_path_allocates_nothing() {
    let cfg = Arc::new(xdhcpd_config::parse(CFG, "t.toml").unwrap());
    let dir = tempfile::tempdir().unwrap();
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
    .unwrap();
    let index = Arc::new(Index::new());
    for m in 1..=50u8 {
        index.put(Registration {
            mac: Some([2, 0, 0, 0, 0, m]),
            client_id: None,
            group: "modem".into(),
            fixed_address: m
                .is_multiple_of(2)
                .then(|| Ipv4Addr::new(10, 9, 0, 200 + m / 2)),
            host_name: Some(format!("cm-{m}")),
            next_server: Some(SERVER),
            boot_file: Some("docsis.cfg".into()),
            options: [(2u8, vec![0, 0, 0x7e, 0x90])].into_iter().collect(),
        });
    }
    let shared = EngineShared::new(cfg, Arc::new(table), SERVER)
        .with_registrations(Arc::new(IndexView(index)));
    let mut e = Engine::new(Arc::new(shared), 0, Arc::new(EngineStats::default()));
    let meta = RxMeta {
        local_addr: SERVER,
        src_ip: Ipv4Addr::UNSPECIFIED,
        dst_ip: Ipv4Addr::BROADCAST,
    };
    let prl: &[u8] = &[1, 2, 3, 12];
    let sid = SERVER.octets();
    // Requests built before counting.
    let discovers: Vec<Vec<u8>> = (1..=60u8)
        .map(|m| packet(m, &[(opt::MESSAGE_TYPE, &[1]), (opt::PARAMETER_LIST, prl)]))
        .collect();
    let mut requests: Vec<Vec<u8>> = Vec::new();
    let mut out = vec![0u8; 1500];
    // Warm-up (first-touch allocations of the maps' epoch state are not per packet).
    e.handle(1000, &meta, &discovers[0], &mut out);
    for (i, d) in discovers.iter().enumerate() {
        let m = i as u8 + 1;
        if let Decision::Reply { .. } = e.handle(1000, &meta, d, &mut out) {
            let ip = [out[16], out[17], out[18], out[19]];
            requests.push(packet(
                m,
                &[
                    (opt::MESSAGE_TYPE, &[3]),
                    (opt::SERVER_ID, &sid),
                    (opt::REQUESTED_IP, &ip),
                ],
            ));
        }
    }
    assert_eq!(requests.len(), 50, "the 50 registered clients get an OFFER");
    let before = allocs();
    let mut acks = 0;
    let mut denied = 0;
    for d in &discovers {
        if let Decision::Silent(Silence::Unregistered) = e.handle(1000, &meta, d, &mut out) {
            denied += 1;
        }
    }
    for r in &requests {
        if let Decision::Reply {
            kind: MessageType::Ack,
            ..
        } = e.handle(1000, &meta, r, &mut out)
        {
            acks += 1;
        }
    }
    let n = allocs() - before;
    assert_eq!((acks, denied), (50, 10));
    assert_eq!(n, 0, "{n} allocations on the registration path");
}
