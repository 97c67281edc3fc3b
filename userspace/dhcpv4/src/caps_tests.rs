//! Lease caps per circuit and per remote-id (`caps.rs`, `engine/caps.rs`): the engine
//! refuses a client that would exceed its circuit's cap, never a renewal or a client's own
//! address, and the counts follow every writer of the table (hook) and the table at start.

use std::net::Ipv4Addr;
use std::sync::Arc;

use lease_store::{ClientKey, LeaseState, LeaseTable, OpenOptions, PoolSpec};

use super::caps::{link_of_subnet, CapKind, LeaseCaps};
use super::engine::*;
use super::stats::EngineStats;
use super::test_support::request;
use super::wire::{opt, relay_sub, Message, MessageType};

const SERVER: Ipv4Addr = Ipv4Addr::new(10, 0, 0, 1);
const NONE: Ipv4Addr = Ipv4Addr::UNSPECIFIED;
const RELAY: Ipv4Addr = Ipv4Addr::new(10, 9, 0, 1);
const NOW: u32 = 1000;

fn config(limits: &str) -> String {
    format!(
        r#"
[server]
interface = "lo"
[lease]
default-time = 3600
[limits]
{limits}
[[subnet]]
cidr = "10.0.0.0/24"
[[subnet.pool]]
range = "10.0.0.10-10.0.0.13"
[[subnet]]
cidr = "10.9.0.0/24"
[[subnet.pool]]
range = "10.9.0.10-10.9.0.250"
"#
    )
}

struct Fx {
    _dir: tempfile::TempDir,
    shared: Arc<EngineShared>,
    engine: Engine,
    table: Arc<LeaseTable>,
    caps: Arc<LeaseCaps>,
}

fn open(
    text: &str,
) -> (
    tempfile::TempDir,
    Arc<xdhcpd_config::Config>,
    Arc<LeaseTable>,
) {
    let cfg = Arc::new(xdhcpd_config::parse(text, "test.toml").expect("test config"));
    let dir = tempfile::tempdir().expect("tempdir");
    let pools: Vec<PoolSpec> = cfg
        .pool_specs()
        .into_iter()
        .map(|(id, first, last)| PoolSpec { id, first, last })
        .collect();
    let (table, _) = LeaseTable::open(
        &dir.path().join("leases.db"),
        &pools,
        &OpenOptions {
            now: NOW,
            ..OpenOptions::default()
        },
    )
    .expect("open lease table");
    (dir, cfg, Arc::new(table))
}

/// An engine with caps attached to a fresh table.
fn fx(limits: &str) -> Fx {
    let (dir, cfg, table) = open(&config(limits));
    let caps = Arc::new(LeaseCaps::new(&cfg));
    assert!(caps.attach(&table));
    let shared =
        Arc::new(EngineShared::new(cfg, table.clone(), SERVER).with_lease_caps(caps.clone()));
    let engine = Engine::new(shared.clone(), 0, Arc::new(EngineStats::default()));
    Fx {
        _dir: dir,
        shared,
        engine,
        table,
        caps,
    }
}

/// Option 82 with circuit-id `c` and, if given, remote-id `r`.
fn o82(c: &[u8], r: Option<&[u8]>) -> Vec<u8> {
    let mut v = vec![relay_sub::CIRCUIT_ID, c.len() as u8];
    v.extend_from_slice(c);
    if let Some(r) = r {
        v.extend_from_slice(&[relay_sub::REMOTE_ID, r.len() as u8]);
        v.extend_from_slice(r);
    }
    v
}

fn relayed(engine: &mut Engine, now: u32, msg: &[u8]) -> (Decision, Option<Ipv4Addr>) {
    let meta = RxMeta {
        local_addr: SERVER,
        src_ip: RELAY,
        dst_ip: SERVER,
    };
    let mut out = [0u8; 1500];
    let d = engine.handle(now, &meta, msg, &mut out);
    let ip = match d {
        Decision::Reply { len, .. } => {
            Some(Message::new_checked(&out[..len]).expect("reply").yiaddr())
        }
        Decision::Silent(_) => None,
    };
    (d, ip)
}

fn kind(d: Decision) -> Option<MessageType> {
    match d {
        Decision::Reply { kind, .. } => Some(kind),
        Decision::Silent(_) => None,
    }
}

fn discover(mac: u8, ri: &[u8]) -> Vec<u8> {
    request(
        mac,
        NONE,
        RELAY,
        &[(opt::MESSAGE_TYPE, &[1]), (opt::RELAY_AGENT_INFO, ri)],
    )
}

fn select(mac: u8, ip: Ipv4Addr, ri: &[u8]) -> Vec<u8> {
    request(
        mac,
        NONE,
        RELAY,
        &[
            (opt::MESSAGE_TYPE, &[3]),
            (opt::SERVER_ID, &SERVER.octets()),
            (opt::REQUESTED_IP, &ip.octets()),
            (opt::RELAY_AGENT_INFO, ri),
        ],
    )
}

/// DISCOVER then REQUEST through the relay; the ACKed address, or None if refused.
fn dora(engine: &mut Engine, now: u32, mac: u8, ri: &[u8]) -> Option<Ipv4Addr> {
    let (d, ip) = relayed(engine, now, &discover(mac, ri));
    if kind(d) != Some(MessageType::Offer) {
        return None;
    }
    let ip = ip?;
    let (d, acked) = relayed(engine, now, &select(mac, ip, ri));
    assert_eq!(kind(d), Some(MessageType::Ack), "client {mac}");
    acked
}

fn link(f: &Fx) -> u32 {
    link_of_subnet(&f.shared.config, 1)
}

#[test]
fn lease_cap_per_circuit_refuses_the_next_client_not_another_circuit_nor_a_renewal() {
    let mut f = fx("max-leases-per-circuit = 3");
    let a = o82(b"port-A", None);
    let b = o82(b"port-B", None);
    let mut ips = Vec::new();
    for mac in 1..=3 {
        ips.push(dora(&mut f.engine, NOW, mac, &a).expect("under the cap"));
    }
    assert_eq!(f.caps.held(CapKind::Circuit, link(&f), b"port-A"), 3);
    // The fourth MAC on the circuit: no OFFER, counted by reason.
    let (d, _) = relayed(&mut f.engine, NOW, &discover(4, &a));
    assert_eq!(d, Decision::Silent(Silence::LeaseCap));
    assert_eq!(f.engine.stats().snapshot().lease_cap_circuit_refused, 1);
    // Another circuit of the same relay is unaffected.
    assert!(dora(&mut f.engine, NOW, 10, &b).is_some());
    // A client of the full circuit renews (through the relay) and re-DISCOVERs: served.
    let renew = request(
        1,
        ips[0],
        RELAY,
        &[(opt::MESSAGE_TYPE, &[3]), (opt::RELAY_AGENT_INFO, &a)],
    );
    let (d, ip) = relayed(&mut f.engine, NOW + 100, &renew);
    assert_eq!((kind(d), ip), (Some(MessageType::Ack), Some(ips[0])));
    let (d, ip) = relayed(&mut f.engine, NOW + 100, &discover(2, &a));
    assert_eq!((kind(d), ip), (Some(MessageType::Offer), Some(ips[1])));
    assert_eq!(f.caps.held(CapKind::Circuit, link(&f), b"port-A"), 3);
    assert_eq!(f.engine.stats().snapshot().lease_cap_circuit_refused, 1);
}

#[test]
fn lease_cap_release_and_decline_give_room_back() {
    let mut f = fx("max-leases-per-circuit = 2");
    let a = o82(b"port-A", None);
    let ip1 = dora(&mut f.engine, NOW, 1, &a).expect("first");
    let ip2 = dora(&mut f.engine, NOW, 2, &a).expect("second");
    assert!(dora(&mut f.engine, NOW, 3, &a).is_none());
    let release = request(
        1,
        ip1,
        RELAY,
        &[
            (opt::MESSAGE_TYPE, &[7]),
            (opt::SERVER_ID, &SERVER.octets()),
        ],
    );
    relayed(&mut f.engine, NOW + 1, &release);
    assert_eq!(f.caps.held(CapKind::Circuit, link(&f), b"port-A"), 1);
    assert!(dora(&mut f.engine, NOW + 1, 3, &a).is_some());
    assert!(dora(&mut f.engine, NOW + 1, 4, &a).is_none());
    let decline = request(
        2,
        NONE,
        RELAY,
        &[
            (opt::MESSAGE_TYPE, &[4]),
            (opt::SERVER_ID, &SERVER.octets()),
            (opt::REQUESTED_IP, &ip2.octets()),
        ],
    );
    relayed(&mut f.engine, NOW + 2, &decline);
    let slot = f.table.slot_of(ip2).expect("slot");
    assert_eq!(f.table.read(slot).state, LeaseState::Declined);
    assert!(dora(&mut f.engine, NOW + 2, 4, &a).is_some());
}

#[test]
fn lease_cap_counts_offers_until_the_sweeper_expires_them() {
    let mut f = fx("max-leases-per-circuit = 2");
    let a = o82(b"port-A", None);
    for mac in 1..=2 {
        let (d, _) = relayed(&mut f.engine, NOW, &discover(mac, &a));
        assert_eq!(kind(d), Some(MessageType::Offer));
    }
    // Two offers outstanding: a third MAC would make three addresses held.
    let (d, _) = relayed(&mut f.engine, NOW, &discover(3, &a));
    assert_eq!(d, Decision::Silent(Silence::LeaseCap));
    // Offers are held for offer-hold; the sweeper expires them and the count follows.
    let later = NOW + 3600;
    f.table.sweep_expired(later, 10_000);
    assert_eq!(f.caps.held(CapKind::Circuit, link(&f), b"port-A"), 0);
    let (d, _) = relayed(&mut f.engine, later, &discover(3, &a));
    assert_eq!(kind(d), Some(MessageType::Offer));
}

#[test]
fn lease_cap_per_remote_id_spans_circuits() {
    let mut f = fx("max-leases-per-remote-id = 1");
    let r = b"modem-7";
    assert!(dora(&mut f.engine, NOW, 1, &o82(b"port-A", Some(r))).is_some());
    let (d, _) = relayed(&mut f.engine, NOW, &discover(2, &o82(b"port-B", Some(r))));
    assert_eq!(d, Decision::Silent(Silence::LeaseCap));
    let s = f.engine.stats().snapshot();
    assert_eq!(
        (s.lease_cap_remote_id_refused, s.lease_cap_circuit_refused),
        (1, 0)
    );
    assert!(dora(&mut f.engine, NOW, 3, &o82(b"port-B", Some(b"modem-8"))).is_some());
}

#[test]
fn lease_cap_new_address_for_a_renewing_stranger_is_naked() {
    let mut f = fx("max-leases-per-circuit = 1");
    let a = o82(b"port-A", None);
    assert!(dora(&mut f.engine, NOW, 1, &a).is_some());
    // A RENEWING client we have no record of (authoritative: would get the free address).
    let renew = request(
        9,
        Ipv4Addr::new(10, 9, 0, 200),
        RELAY,
        &[(opt::MESSAGE_TYPE, &[3]), (opt::RELAY_AGENT_INFO, &a)],
    );
    let (d, _) = relayed(&mut f.engine, NOW, &renew);
    assert_eq!(kind(d), Some(MessageType::Nak));
    assert_eq!(f.engine.stats().snapshot().lease_cap_circuit_refused, 1);
}

#[test]
fn lease_cap_counts_every_writer_and_are_rebuilt_at_start() {
    // Leases bound before the caps existed (another run, or the partner's updates).
    let (dir, cfg, table) = open(&config("max-leases-per-circuit = 2"));
    let plain = Arc::new(EngineShared::new(cfg.clone(), table.clone(), SERVER));
    let mut e = Engine::new(plain, 0, Arc::new(EngineStats::default()));
    let a = o82(b"port-A", None);
    for mac in 1..=3 {
        assert!(dora(&mut e, NOW, mac, &a).is_some());
    }
    // At start: counted from the table.
    let caps = Arc::new(LeaseCaps::new(&cfg));
    assert!(caps.attach(&table));
    let l = link_of_subnet(&cfg, 1);
    assert_eq!(caps.held(CapKind::Circuit, l, b"port-A"), 3);
    let shared =
        Arc::new(EngineShared::new(cfg, table.clone(), SERVER).with_lease_caps(caps.clone()));
    let mut e = Engine::new(shared, 0, Arc::new(EngineStats::default()));
    let (d, _) = relayed(&mut e, NOW, &discover(4, &a));
    assert_eq!(d, Decision::Silent(Silence::LeaseCap));
    // A writer that is no engine (as the failover store applying a partner's update):
    // counted through the table's hook.
    let slot = table.slot_of(Ipv4Addr::new(10, 9, 0, 250)).expect("slot");
    table.update(slot, |l| {
        l.state = LeaseState::Active;
        l.client = ClientKey::from_hw(1, &[2, 0, 0, 0, 0, 77]);
        l.expiry = NOW + 600;
        assert!(l.set_relay_agent_info(&o82(b"port-C", None)));
    });
    assert_eq!(caps.held(CapKind::Circuit, l, b"port-C"), 1);
    // Its circuit changes (the partner's later update): the unit moves.
    table.update(slot, |l| {
        assert!(l.set_relay_agent_info(&a));
    });
    assert_eq!(caps.held(CapKind::Circuit, l, b"port-C"), 0);
    assert_eq!(caps.held(CapKind::Circuit, l, b"port-A"), 4);
    // Expiry by the sweeper.
    table.sweep_expired(NOW + 100_000, 10_000);
    assert_eq!(caps.held(CapKind::Circuit, l, b"port-A"), 0);
    drop(dir);
}

#[test]
fn lease_cap_caps_reload_live_and_zero_turns_them_off() {
    let mut f = fx("max-leases-per-circuit = 1");
    let a = o82(b"port-A", None);
    assert!(dora(&mut f.engine, NOW, 1, &a).is_some());
    assert!(dora(&mut f.engine, NOW, 2, &a).is_none());
    let cfg = xdhcpd_config::parse(&config("max-leases-per-circuit = 2"), "t").expect("cfg");
    f.caps.configure(&cfg);
    assert!(dora(&mut f.engine, NOW, 2, &a).is_some());
    assert!(dora(&mut f.engine, NOW, 3, &a).is_none());
    let cfg = xdhcpd_config::parse(&config(""), "t").expect("cfg");
    f.caps.configure(&cfg);
    assert!(dora(&mut f.engine, NOW, 3, &a).is_some());
    // Still counted while off, so turning the cap back on is exact.
    assert_eq!(f.caps.held(CapKind::Circuit, link(&f), b"port-A"), 3);
}

/// Two workers (engines on two threads, own shards) hammer one circuit with distinct MACs:
/// exactly the cap is bound, never more, and the count matches the table.
#[test]
fn lease_cap_is_exact_across_workers() {
    let f = fx("max-leases-per-circuit = 7");
    let a = o82(b"port-A", None);
    let handles: Vec<_> = (0..2u8)
        .map(|w| {
            let shared = f.shared.clone();
            let a = a.clone();
            std::thread::spawn(move || {
                let mut e = Engine::new(shared, usize::from(w), Arc::new(EngineStats::default()));
                let mut got = 0;
                for i in 0..60u8 {
                    let mac = 1 + w * 100 + i;
                    if dora(&mut e, NOW, mac, &a).is_some() {
                        got += 1;
                    }
                }
                got
            })
        })
        .collect();
    let got: u32 = handles.into_iter().map(|h| h.join().expect("worker")).sum();
    assert_eq!(got, 7);
    let active = f
        .table
        .iter()
        .filter(|(_, l)| matches!(l.state, LeaseState::Active | LeaseState::Offered))
        .count();
    assert_eq!(active, 7);
    assert_eq!(f.caps.held(CapKind::Circuit, link(&f), b"port-A"), 7);
}
