//! Class evaluation, pool choice over a shared network and the layered reply allocate
//! nothing: a counting global allocator (this test binary only) sees zero allocations while
//! the engine runs DISCOVER/REQUEST exchanges and renewals for modems, eMTAs and CPEs on the
//! PROV example, and refuses an unregistered modem.

use std::net::Ipv4Addr;
use std::sync::Arc;

use lease_store::{LeaseTable, OpenOptions, PoolSpec, Slot};
use xdhcpd_dhcpv4::wire::{opt, relay_sub, MessageType, MAGIC_COOKIE};
use xdhcpd_dhcpv4::{Decision, Engine, EngineShared, EngineStats, RxMeta, Silence};

#[path = "../../tests/common/counting_alloc.rs"]
mod counting_alloc;
use counting_alloc::allocs;

const SERVER: Ipv4Addr = Ipv4Addr::new(10, 77, 0, 1);
const CMTS: Ipv4Addr = Ipv4Addr::new(10, 77, 0, 9);

/// Writes a relayed request into `b` (reused; no allocation once grown).
fn packet(
    b: &mut Vec<u8>,
    kind: MessageType,
    mac: [u8; 6],
    remote: [u8; 6],
    vendor: &[u8],
    ciaddr: Ipv4Addr,
    extra: &[(u8, &[u8])],
) {
    b.clear();
    b.resize(240, 0);
    b[0] = 1;
    b[1] = 1;
    b[2] = 6;
    b[3] = 1;
    b[4..8].copy_from_slice(&[1, 2, mac[4], mac[5]]);
    b[12..16].copy_from_slice(&ciaddr.octets());
    b[24..28].copy_from_slice(&CMTS.octets());
    b[28..34].copy_from_slice(&mac);
    b[236..240].copy_from_slice(&MAGIC_COOKIE);
    b.extend_from_slice(&[opt::MESSAGE_TYPE, 1, kind as u8]);
    b.extend_from_slice(&[opt::VENDOR_CLASS, vendor.len() as u8]);
    b.extend_from_slice(vendor);
    for (c, v) in extra {
        b.push(*c);
        b.push(v.len() as u8);
        b.extend_from_slice(v);
    }
    b.extend_from_slice(&[opt::RELAY_AGENT_INFO, 8, relay_sub::REMOTE_ID, 6]);
    b.extend_from_slice(&remote);
    b.push(opt::END);
}

#[test]
fn class_dora_and_renew_allocate_nothing() {
    let cfg = xdhcpd_config::parse(xdhcpd_config::PROV_CONFIG, "prov.toml").expect("config");
    let cfg = Arc::new(cfg);
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
    let shared = EngineShared::new(cfg, Arc::new(table), SERVER);
    let mut e = Engine::new(Arc::new(shared), 0, Arc::new(EngineStats::default()));
    let meta = RxMeta {
        local_addr: SERVER,
        src_ip: CMTS,
        dst_ip: SERVER,
    };
    let mut out = [0u8; 1500];
    let mut b = Vec::with_capacity(1500);
    let mut changed: Vec<Slot> = Vec::with_capacity(4096);
    let modem = [0, 0xd0, 0x59, 0, 0, 1];
    let mta = [0, 0xe0, 0x6f, 0x58, 0x4d, 0xa4];
    let sid = SERVER.octets();
    // (client, remote id, option 60): registered modem, registered eMTA, CPEs behind the modem.
    let mut clients: Vec<([u8; 6], [u8; 6], &[u8])> =
        vec![(modem, modem, b"docsis3.0"), (mta, modem, b"pktc1.0:051f")];
    for i in 0..64u8 {
        clients.push(([2, 0, 0, 0, 0xc0, i], modem, b"MSFT 5.0"));
    }
    let mut round = |e: &mut Engine, b: &mut Vec<u8>, changed: &mut Vec<Slot>, now: u32| {
        for (mac, remote, vendor) in &clients {
            packet(
                b,
                MessageType::Discover,
                *mac,
                *remote,
                vendor,
                Ipv4Addr::UNSPECIFIED,
                &[],
            );
            let Decision::Reply {
                kind: MessageType::Offer,
                ..
            } = e.handle(now, &meta, b, &mut out)
            else {
                panic!("no offer for {mac:x?}")
            };
            let ip = Ipv4Addr::new(out[16], out[17], out[18], out[19]);
            let ipo = ip.octets();
            packet(
                b,
                MessageType::Request,
                *mac,
                *remote,
                vendor,
                Ipv4Addr::UNSPECIFIED,
                &[(opt::SERVER_ID, &sid), (opt::REQUESTED_IP, &ipo)],
            );
            let Decision::Reply {
                kind: MessageType::Ack,
                ..
            } = e.handle(now, &meta, b, &mut out)
            else {
                panic!("no ack for {mac:x?}")
            };
            packet(b, MessageType::Request, *mac, *remote, vendor, ip, &[]);
            let Decision::Reply {
                kind: MessageType::Ack,
                ..
            } = e.handle(now + 1, &meta, b, &mut out)
            else {
                panic!("no renewal ack for {mac:x?}")
            };
            e.take_changed(changed);
            changed.clear();
        }
        // An unregistered modem: refused, counted.
        packet(
            b,
            MessageType::Discover,
            [0, 0x11, 0x22, 0x33, 0x44, 0x55],
            [0, 0x11, 0x22, 0x33, 0x44, 0x55],
            b"docsis3.0",
            Ipv4Addr::UNSPECIFIED,
            &[],
        );
        assert_eq!(
            e.handle(now, &meta, b, &mut out),
            Decision::Silent(Silence::Unregistered)
        );
    };
    // Warm-up: the table's client index and the engine's buffers reach their size.
    round(&mut e, &mut b, &mut changed, 1000);
    let before = allocs();
    round(&mut e, &mut b, &mut changed, 1100);
    round(&mut e, &mut b, &mut changed, 1200);
    let n = allocs() - before;
    assert_eq!(
        n,
        0,
        "{n} allocations in two rounds of {} clients",
        clients.len()
    );
    assert!(e.stats().snapshot().unknown_refused >= 3);
}
