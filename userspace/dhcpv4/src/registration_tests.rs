//! Registrations in the engine: KNOWN / unknown and `deny-unknown`, fixed addresses,
//! host options over the subnet's, reservations that move.

use std::collections::HashMap;
use std::net::Ipv4Addr;
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
}

impl RegistrationView for MapView {
    fn find(&self, key: &ClientKey, visit: &mut dyn FnMut(&Registered<'_>)) -> bool {
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
    _table: Arc<LeaseTable>,
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
        let shared = EngineShared::new(cfg, table.clone(), SERVER).with_registrations(view.clone());
        let engine = Engine::new(Arc::new(shared), 0, Arc::new(EngineStats::default()));
        Fx {
            _dir: dir,
            engine,
            view,
            _table: table,
        }
    }

    fn register(&self, key: ClientKey, r: Reg) {
        self.view.regs.lock().unwrap().insert(key, r);
    }

    fn unregister(&self, key: &ClientKey) {
        self.view.regs.lock().unwrap().remove(key);
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
}
