//! Registrations in the engine: KNOWN / unknown and `deny-unknown`, fixed addresses,
//! host options over the subnet's, reservations that move.

use std::collections::HashMap;
use std::net::Ipv4Addr;
use std::sync::atomic::{AtomicU64, AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};

use dhcproto::{v4, Decodable, Decoder};
use lease_store::{ClientKey, LeaseTable, OpenOptions, PoolSpec};

use super::engine::*;
use super::stats::EngineStats;
use super::test_support::request;
use super::wire::opt;

const SERVER: Ipv4Addr = Ipv4Addr::new(10, 0, 0, 1);
const NONE: Ipv4Addr = Ipv4Addr::UNSPECIFIED;

const CFG: &str = r#"
[server]
interface = "lo"
lease-file = "/unused"
[lease]
default-time = 3600
[[subnet]]
cidr = "10.0.0.0/24"
router = ["10.0.0.1"]
domain-name = "test.example"
next-server = "10.0.0.2"
boot-file = "subnet.cfg"
deny-unknown = true
[[subnet.pool]]
range = "10.0.0.10-10.0.0.13"
"#;

/// A registration as the test view holds it (what the daemon's adapter gives the engine
/// from the `xdhcpd-registrations` index).
#[derive(Clone, Default)]
struct Reg {
    group: String,
    fixed: Option<Ipv4Addr>,
    next_server: Option<Ipv4Addr>,
    file: Option<Vec<u8>>,
    tlv: Vec<u8>,
}

#[derive(Default)]
struct MapView {
    regs: Mutex<HashMap<ClientKey, Reg>>,
    /// Raised by every change (the index's change generation).
    gen: AtomicU64,
    /// `find` calls (each is a lookup in the daemon's index).
    finds: AtomicUsize,
}

impl RegistrationView for MapView {
    fn generation(&self) -> u64 {
        self.gen.load(Ordering::Acquire)
    }

    fn find(&self, key: &ClientKey, visit: &mut dyn FnMut(&Registered<'_>)) -> bool {
        self.finds.fetch_add(1, Ordering::Relaxed);
        let m = self.regs.lock().unwrap();
        let Some(r) = m.get(key) else { return false };
        visit(&Registered {
            group: &r.group,
            fixed_address: r.fixed,
            next_server: r.next_server,
            boot_file: r.file.as_deref(),
            options: &r.tlv,
        });
        true
    }

    fn reserved_for_other(&self, addr: Ipv4Addr, key: &ClientKey, hw: &ClientKey) -> bool {
        let m = self.regs.lock().unwrap();
        m.iter()
            .any(|(k, r)| r.fixed == Some(addr) && k != key && k != hw)
    }
}

fn mac(last: u8) -> ClientKey {
    ClientKey::from_hw(1, &[2, 0, 0, 0, 0, last])
}

struct Fx {
    _dir: tempfile::TempDir,
    engine: Engine,
    view: Arc<MapView>,
    table: Arc<LeaseTable>,
    cfg: Arc<xdhcpd_config::Config>,
}

impl Fx {
    fn new(cfg: &str) -> Fx {
        let cfg = Arc::new(xdhcpd_config::parse(cfg, "test.toml").expect("test config"));
        let dir = tempfile::tempdir().unwrap();
        let pools: Vec<PoolSpec> = cfg
            .pool_specs()
            .into_iter()
            .map(|(id, first, last)| PoolSpec { id, first, last })
            .collect();
        let (table, _) = LeaseTable::open(
            &dir.path().join("leases.db"),
            &pools,
            &OpenOptions {
                now: 1000,
                ..OpenOptions::default()
            },
        )
        .unwrap();
        let table = Arc::new(table);
        let view = Arc::new(MapView::default());
        let shared =
            EngineShared::new(cfg.clone(), table.clone(), SERVER).with_registrations(view.clone());
        let engine = Engine::new(Arc::new(shared), 0, Arc::new(EngineStats::default()));
        Fx {
            _dir: dir,
            engine,
            view,
            table,
            cfg,
        }
    }

    /// A reload: the same configuration and table over `view`.
    fn reload_with(&mut self, view: Arc<MapView>) {
        let shared = EngineShared::new(self.cfg.clone(), self.table.clone(), SERVER)
            .with_registrations(view.clone());
        self.engine.set_shared(Arc::new(shared));
        self.view = view;
    }

    fn register(&self, key: ClientKey, r: Reg) {
        self.view.regs.lock().unwrap().insert(key, r);
        self.view.gen.fetch_add(1, Ordering::Release);
    }

    fn unregister(&self, key: &ClientKey) {
        self.view.regs.lock().unwrap().remove(key);
        self.view.gen.fetch_add(1, Ordering::Release);
    }

    fn finds(&self) -> usize {
        self.view.finds.load(Ordering::Relaxed)
    }

    fn run(&mut self, r: &[u8]) -> (Decision, Option<v4::Message>) {
        self.run_from(NONE, Ipv4Addr::BROADCAST, r)
    }

    fn run_from(
        &mut self,
        src: Ipv4Addr,
        dst: Ipv4Addr,
        r: &[u8],
    ) -> (Decision, Option<v4::Message>) {
        let mut out = [0u8; 1500];
        let m = RxMeta {
            local_addr: SERVER,
            src_ip: src,
            dst_ip: dst,
        };
        let d = self.engine.handle(1000, &m, r, &mut out);
        let msg = match d {
            Decision::Reply { len, .. } => {
                Some(v4::Message::decode(&mut Decoder::new(&out[..len])).unwrap())
            }
            _ => None,
        };
        (d, msg)
    }

    fn discover(&mut self, m: u8, extra: &[(u8, &[u8])]) -> Option<v4::Message> {
        let mut opts: Vec<(u8, &[u8])> = vec![(opt::MESSAGE_TYPE, &[1])];
        opts.extend_from_slice(extra);
        self.run(&request(m, NONE, NONE, &opts)).1
    }

    fn select(&mut self, m: u8, ip: Ipv4Addr, extra: &[(u8, &[u8])]) -> Option<v4::Message> {
        let sid = SERVER.octets();
        let rip = ip.octets();
        let mut opts: Vec<(u8, &[u8])> = vec![
            (opt::MESSAGE_TYPE, &[3]),
            (opt::SERVER_ID, &sid),
            (opt::REQUESTED_IP, &rip),
        ];
        opts.extend_from_slice(extra);
        self.run(&request(m, NONE, NONE, &opts)).1
    }

    fn release(&mut self, m: u8, ip: Ipv4Addr) {
        let sid = SERVER.octets();
        let r = request(
            m,
            ip,
            NONE,
            &[(opt::MESSAGE_TYPE, &[7]), (opt::SERVER_ID, &sid)],
        );
        let (_, reply) = self.run_from(ip, SERVER, &r);
        assert!(reply.is_none(), "a RELEASE has no answer");
    }

    fn dora(&mut self, m: u8) -> Ipv4Addr {
        let offer = self.discover(m, &[]).expect("offer");
        let ack = self.select(m, offer.yiaddr(), &[]).expect("ack");
        assert_eq!(kind(&ack), v4::MessageType::Ack);
        ack.yiaddr()
    }

    fn stats(&self) -> crate::StatsSnapshot {
        self.engine.stats().snapshot()
    }
}

fn kind(m: &v4::Message) -> v4::MessageType {
    match m.opts().get(v4::OptionCode::MessageType) {
        Some(v4::DhcpOption::MessageType(t)) => *t,
        other => panic!("no message type: {other:?}"),
    }
}

fn fname(m: &v4::Message) -> Vec<u8> {
    let f = m.fname().unwrap_or(&[]);
    f.iter().copied().take_while(|&b| b != 0).collect()
}

fn known(group: &str) -> Reg {
    Reg {
        group: group.into(),
        ..Default::default()
    }
}

#[test]
fn registration_unknown_client_denied_and_counted() {
    let mut f = Fx::new(CFG);
    assert!(f.discover(7, &[]).is_none());
    let (d, _) = f.run(&request(7, NONE, NONE, &[(opt::MESSAGE_TYPE, &[1])]));
    assert_eq!(d, Decision::Silent(Silence::Unregistered));
    assert_eq!(f.stats().unknown_refused, 2);
    assert!(!f.engine.is_known());
    // Registered: served, a member of its group.
    f.register(mac(7), known("modem"));
    let ip = f.dora(7);
    assert!((10..=13).contains(&ip.octets()[3]));
    assert!(f.engine.is_known());
    assert_eq!(f.engine.registration_group(), Some("modem"));
    assert_eq!(f.stats().unknown_refused, 2);
}

#[test]
fn registration_without_deny_unknown_serves_everyone() {
    let mut f = Fx::new(&CFG.replace("deny-unknown = true", "deny-unknown = false"));
    f.dora(7);
    assert!(!f.engine.is_known());
    assert_eq!(f.stats().unknown_refused, 0);
}

#[test]
fn registration_removed_client_refused_at_next_discover_and_renewal() {
    let mut f = Fx::new(CFG);
    f.register(mac(7), known("modem"));
    let ip = f.dora(7);
    f.unregister(&mac(7));
    assert!(f.discover(7, &[]).is_none());
    let renew = request(7, ip, NONE, &[(opt::MESSAGE_TYPE, &[3])]);
    let (d, _) = f.run_from(ip, SERVER, &renew);
    assert_eq!(d, Decision::Silent(Silence::Unregistered));
    assert_eq!(f.stats().unknown_refused, 2);
}

#[test]
fn registration_fixed_address_outside_pools_served() {
    let mut f = Fx::new(CFG);
    let fixed = Ipv4Addr::new(10, 0, 0, 50);
    f.register(
        mac(7),
        Reg {
            fixed: Some(fixed),
            ..known("modem")
        },
    );
    assert_eq!(f.dora(7), fixed);
    // Renewing it is acknowledged.
    let renew = request(7, fixed, NONE, &[(opt::MESSAGE_TYPE, &[3])]);
    let (_, ack) = f.run_from(fixed, SERVER, &renew);
    assert_eq!(kind(&ack.expect("ack")), v4::MessageType::Ack);
}

#[test]
fn registration_fixed_address_inside_pool_kept_from_others() {
    let mut f = Fx::new(CFG);
    let fixed = Ipv4Addr::new(10, 0, 0, 12);
    f.register(
        mac(9),
        Reg {
            fixed: Some(fixed),
            ..known("modem")
        },
    );
    for m in 1..=3 {
        f.register(mac(m), known("cpe"));
        assert_ne!(f.dora(m), fixed);
    }
    // The pool's last free address is the reserved one: not for client 4.
    f.register(mac(4), known("cpe"));
    assert!(f.discover(4, &[]).is_none());
    assert_eq!(f.dora(9), fixed);
}

#[test]
fn registration_by_mac_recognised_when_the_client_sends_a_client_id() {
    let mut f = Fx::new(CFG);
    let fixed = Ipv4Addr::new(10, 0, 0, 12);
    f.register(
        mac(7),
        Reg {
            fixed: Some(fixed),
            ..known("modem")
        },
    );
    let cid: &[u8] = &[1, 2, 0, 0, 0, 0, 7];
    let offer = f
        .discover(7, &[(opt::CLIENT_ID, cid)])
        .expect("known by MAC");
    assert_eq!(offer.yiaddr(), fixed);
    let ack = f.select(7, fixed, &[(opt::CLIENT_ID, cid)]).expect("ack");
    assert_eq!(kind(&ack), v4::MessageType::Ack);
}

#[test]
fn registration_host_options_take_precedence_over_subnet() {
    let mut f = Fx::new(CFG);
    // Host: router 10.0.0.254, host-name cm-7, next-server and boot file.
    let mut tlv = vec![12, 4];
    tlv.extend_from_slice(b"cm-7");
    tlv.extend_from_slice(&[3, 4, 10, 0, 0, 254]);
    f.register(
        mac(7),
        Reg {
            next_server: Some(Ipv4Addr::new(10, 0, 0, 3)),
            file: Some(b"host.cfg".to_vec()),
            tlv,
            ..known("modem")
        },
    );
    f.register(mac(8), known("cpe"));
    // With a parameter list: host values for what it has, the subnet's for the rest.
    let prl: &[u8] = &[3, 12, 15];
    let o = f.discover(7, &[(opt::PARAMETER_LIST, prl)]).expect("offer");
    assert_eq!(
        o.opts().get(v4::OptionCode::Router),
        Some(&v4::DhcpOption::Router(vec![Ipv4Addr::new(10, 0, 0, 254)]))
    );
    assert_eq!(
        o.opts().get(v4::OptionCode::Hostname),
        Some(&v4::DhcpOption::Hostname("cm-7".into()))
    );
    assert_eq!(
        o.opts().get(v4::OptionCode::DomainName),
        Some(&v4::DhcpOption::DomainName("test.example".into()))
    );
    assert_eq!(o.siaddr(), Ipv4Addr::new(10, 0, 0, 3));
    assert_eq!(fname(&o), b"host.cfg");
    // Without a list: every host option, the subnet's router not repeated.
    let o = f.discover(7, &[]).expect("offer");
    assert_eq!(
        o.opts().get(v4::OptionCode::Router),
        Some(&v4::DhcpOption::Router(vec![Ipv4Addr::new(10, 0, 0, 254)]))
    );
    assert!(o.opts().get(v4::OptionCode::Hostname).is_some());
    // Another registered client without host options gets the subnet's.
    let o = f.discover(8, &[(opt::PARAMETER_LIST, prl)]).expect("offer");
    assert_eq!(
        o.opts().get(v4::OptionCode::Router),
        Some(&v4::DhcpOption::Router(vec![Ipv4Addr::new(10, 0, 0, 1)]))
    );
    assert!(o.opts().get(v4::OptionCode::Hostname).is_none());
    assert_eq!(o.siaddr(), Ipv4Addr::new(10, 0, 0, 2));
    assert_eq!(fname(&o), b"subnet.cfg");
}

#[test]
fn registration_moved_reservation_naks_renewal_then_offers_the_new_address() {
    let mut f = Fx::new(CFG);
    f.register(mac(7), known("modem"));
    let ip = f.dora(7);
    // The operator gives the client a fixed address while it holds `ip`.
    let fixed = Ipv4Addr::new(10, 0, 0, 50);
    f.register(
        mac(7),
        Reg {
            fixed: Some(fixed),
            ..known("modem")
        },
    );
    let renew = request(7, ip, NONE, &[(opt::MESSAGE_TYPE, &[3])]);
    let (_, nak) = f.run_from(ip, SERVER, &renew);
    let nak = nak.expect("nak");
    assert_eq!(kind(&nak), v4::MessageType::Nak);
    assert_eq!(f.stats().registration_moved, 1);
    // Back through DISCOVER: the new fixed address.
    assert_eq!(f.dora(7), fixed);
    // Moved again (to another fixed address): NAK at the next renewal again.
    f.register(
        mac(7),
        Reg {
            fixed: Some(Ipv4Addr::new(10, 0, 0, 51)),
            ..known("modem")
        },
    );
    let renew = request(7, fixed, NONE, &[(opt::MESSAGE_TYPE, &[3])]);
    let (_, nak) = f.run_from(fixed, SERVER, &renew);
    assert_eq!(kind(&nak.expect("nak")), v4::MessageType::Nak);
    assert_eq!(f.stats().registration_moved, 2);
}

#[test]
fn registration_fixed_address_held_by_another_falls_back_to_pool() {
    let mut f = Fx::new(CFG);
    f.register(mac(1), known("cpe"));
    let held = f.dora(1);
    // Registered afterwards with the address client 1 holds.
    f.register(
        mac(7),
        Reg {
            fixed: Some(held),
            ..known("modem")
        },
    );
    let o = f.discover(7, &[]).expect("offer from the pool");
    assert_ne!(o.yiaddr(), held);
    assert_eq!(f.stats().registration_fixed_busy, 1);
    // The REQUEST for the address offered instead is ACKed: its fixed address cannot be
    // given, so "reservation moved" must not NAK it (that was a DISCOVER/NAK loop).
    let ack = f.select(7, o.yiaddr(), &[]).expect("ack");
    assert_eq!(kind(&ack), v4::MessageType::Ack);
    assert_eq!(ack.yiaddr(), o.yiaddr());
    assert_eq!(f.stats().registration_moved, 0);
    // Once the holder releases it, the next renewal moves the client to its fixed address.
    f.release(1, held);
    let renew = request(7, o.yiaddr(), NONE, &[(opt::MESSAGE_TYPE, &[3])]);
    let (_, nak) = f.run_from(o.yiaddr(), SERVER, &renew);
    assert_eq!(kind(&nak.expect("nak")), v4::MessageType::Nak);
    assert_eq!(f.stats().registration_moved, 1);
    assert_eq!(f.dora(7), held);
}

// ---- one registration lookup per DORA (the worker's cache) --------------------------------

#[test]
fn registration_one_lookup_per_dora() {
    let mut f = Fx::new(CFG);
    f.register(mac(7), known("modem"));
    f.dora(7);
    // DISCOVER looked the client up; its REQUEST used that answer.
    assert_eq!(f.finds(), 1);
    assert_eq!(f.stats().registration_lookups, 1);
    assert_eq!(f.stats().registration_cache_hits, 1);
    // Another client: its own lookup.
    f.register(mac(8), known("cpe"));
    f.dora(8);
    assert_eq!(f.finds(), 2);
    assert!(f.engine.is_known());
    assert_eq!(f.engine.registration_group(), Some("cpe"));
}

#[test]
fn registration_changed_between_discover_and_request_takes_effect_at_request() {
    let mut f = Fx::new(CFG);
    let with_file = |file: &[u8]| Reg {
        file: Some(file.to_vec()),
        ..known("modem")
    };
    f.register(mac(7), with_file(b"old.cfg"));
    let offer = f.discover(7, &[]).expect("offer");
    assert_eq!(fname(&offer), b"old.cfg");
    // Modified while the client is between its DISCOVER and its REQUEST.
    f.register(mac(7), with_file(b"new.cfg"));
    let ack = f.select(7, offer.yiaddr(), &[]).expect("ack");
    assert_eq!(kind(&ack), v4::MessageType::Ack);
    assert_eq!(fname(&ack), b"new.cfg");
    assert_eq!(f.finds(), 2, "the change made the REQUEST look up again");
}

#[test]
fn registration_removed_between_discover_and_request_refused_at_request() {
    let mut f = Fx::new(CFG);
    f.register(mac(7), known("modem"));
    let offer = f.discover(7, &[]).expect("offer");
    f.unregister(&mac(7));
    let sid = SERVER.octets();
    let rip = offer.yiaddr().octets();
    let sel = request(
        7,
        NONE,
        NONE,
        &[
            (opt::MESSAGE_TYPE, &[3]),
            (opt::SERVER_ID, &sid),
            (opt::REQUESTED_IP, &rip),
        ],
    );
    let (d, _) = f.run(&sel);
    assert_eq!(d, Decision::Silent(Silence::Unregistered));
    assert!(!f.engine.is_known());
    assert_eq!(f.stats().acks, 0);
    assert_eq!(f.stats().unknown_refused, 1);
    // Registered again before the retransmitted REQUEST: served.
    f.register(mac(7), known("modem"));
    let (_, ack) = f.run(&sel);
    assert_eq!(kind(&ack.expect("ack")), v4::MessageType::Ack);
}

#[test]
fn registration_added_after_a_refused_discover_serves_the_next_one() {
    let mut f = Fx::new(CFG);
    // The refusal is cached like any answer...
    assert!(f.discover(7, &[]).is_none());
    assert!(f.discover(7, &[]).is_none());
    assert_eq!(f.finds(), 1);
    // ...until the registrations change.
    f.register(mac(7), known("modem"));
    assert!(f.discover(7, &[]).is_some());
}

#[test]
fn registration_cached_answer_is_per_client_id_and_hardware_address() {
    let mut f = Fx::new(CFG);
    // Registered by MAC; the client sends a client id.
    f.register(mac(7), known("modem"));
    let cid: &[u8] = &[1, 2, 0, 0, 0, 0, 7];
    assert!(f.discover(7, &[(opt::CLIENT_ID, cid)]).is_some());
    // The same client id from an unregistered MAC is not that registration.
    assert!(f.discover(8, &[(opt::CLIENT_ID, cid)]).is_none());
    assert!(!f.engine.is_known());
    // And the registered MAC is still known.
    assert!(f.discover(7, &[(opt::CLIENT_ID, cid)]).is_some());
    assert!(f.engine.is_known());
}

#[test]
fn registration_cache_emptied_by_reload() {
    let mut f = Fx::new(CFG);
    f.register(mac(7), known("modem"));
    assert!(f.discover(7, &[]).is_some());
    // A reload onto another view that happens to be at the same generation and does
    // not register the client: it is UNKNOWN at once.
    let other = Arc::new(MapView::default());
    other.gen.store(f.view.generation(), Ordering::Release);
    f.reload_with(other);
    assert!(f.discover(7, &[]).is_none());
    assert!(!f.engine.is_known());
}
