//! Client classes, shared networks and settings precedence: each class matcher alone, the
//! precedence order of every setting, the PROV example (modem, eMTA, CPE, unregistered), and
//! the failover policy over a shared network.

use std::net::Ipv4Addr;
use std::sync::Arc;

use lease_store::{LeaseState, LeaseTable, Owner};
use xdhcpd_config::{BytesMatch, ClassMatch, Ipv4Net};
use xdhcpd_failover::{FailoverPolicy, PolicyCell, Role, ServerState};

use super::engine::classes::{classify, matches, ClientFacts};
use super::engine::*;
use super::test_support::engine_on;
use super::wire::{opt, relay_sub, Message, MessageType, MAGIC_COOKIE, OP_BOOTREQUEST};

const SERVER: Ipv4Addr = Ipv4Addr::new(10, 77, 0, 1);
const CMTS: Ipv4Addr = Ipv4Addr::new(10, 77, 0, 9);
const NONE: Ipv4Addr = Ipv4Addr::UNSPECIFIED;

// ---- each matcher alone ---------------------------------------------------------------

fn facts<'a>() -> ClientFacts<'a> {
    ClientFacts {
        hw: Some(&[0, 0xe0, 0x6f, 1, 2, 3]),
        giaddr: CMTS,
        ..ClientFacts::default()
    }
}

#[test]
fn class_matcher_vendor_class_exact_prefix_contains() {
    let f = ClientFacts {
        vendor_class: Some(b"docsis3.0:053701"),
        ..facts()
    };
    let m = |t: BytesMatch| ClassMatch {
        vendor_class: vec![t],
        ..ClassMatch::default()
    };
    assert!(matches(&m(BytesMatch::Prefix(b"docsis".to_vec())), &f));
    assert!(!matches(&m(BytesMatch::Prefix(b"pktc1.0:".to_vec())), &f));
    assert!(matches(
        &m(BytesMatch::Exact(b"docsis3.0:053701".to_vec())),
        &f
    ));
    assert!(!matches(&m(BytesMatch::Exact(b"docsis3.0".to_vec())), &f));
    assert!(matches(&m(BytesMatch::Contains(b"3.0:".to_vec())), &f));
    assert!(!matches(
        &m(BytesMatch::Contains(b"dslforum.org".to_vec())),
        &f
    ));
    // Without option 60 no vendor test passes.
    assert!(!matches(&m(BytesMatch::Contains(b"d".to_vec())), &facts()));
}

#[test]
fn class_matcher_user_class_option_77() {
    let f = ClientFacts {
        user_class: Some(b"\x04iptv"),
        ..facts()
    };
    let m = ClassMatch {
        user_class: vec![BytesMatch::Exact(b"\x04iptv".to_vec())],
        ..ClassMatch::default()
    };
    assert!(matches(&m, &f));
    assert!(!matches(&m, &facts()));
    let other = ClientFacts {
        user_class: Some(b"\x04voip"),
        ..facts()
    };
    assert!(!matches(&m, &other));
}

#[test]
fn class_matcher_option_82_circuit_remote_subscriber_ids() {
    let f = ClientFacts {
        circuit_id: Some(b"Cable2/0"),
        remote_id: Some(b"modem-7"),
        subscriber_id: Some(b"sub-42"),
        ..facts()
    };
    let exact = |v: &[u8]| Some(BytesMatch::Exact(v.to_vec()));
    for (m, ok) in [
        (
            ClassMatch {
                circuit_id: exact(b"Cable2/0"),
                ..ClassMatch::default()
            },
            true,
        ),
        (
            ClassMatch {
                circuit_id: exact(b"Cable2/1"),
                ..ClassMatch::default()
            },
            false,
        ),
        (
            ClassMatch {
                remote_id: exact(b"modem-7"),
                ..ClassMatch::default()
            },
            true,
        ),
        (
            ClassMatch {
                remote_id: exact(b"modem-8"),
                ..ClassMatch::default()
            },
            false,
        ),
        (
            ClassMatch {
                subscriber_id: exact(b"sub-42"),
                ..ClassMatch::default()
            },
            true,
        ),
        (
            ClassMatch {
                subscriber_id: exact(b"sub-43"),
                ..ClassMatch::default()
            },
            false,
        ),
    ] {
        assert_eq!(matches(&m, &f), ok, "{m:?}");
        // Without option 82 none of them passes.
        assert!(!matches(&m, &facts()), "{m:?}");
    }
}

#[test]
fn class_matcher_remote_id_equals_chaddr() {
    let modem_mac: &[u8] = &[0, 0xe0, 0x6f, 1, 2, 3];
    let modem = ClientFacts {
        remote_id: Some(modem_mac),
        ..facts()
    };
    let cpe = ClientFacts {
        hw: Some(&[2, 0, 0, 0, 0, 9]),
        remote_id: Some(modem_mac),
        ..facts()
    };
    let is_modem = ClassMatch {
        remote_id_is_chaddr: Some(true),
        ..ClassMatch::default()
    };
    let is_cpe = ClassMatch {
        remote_id_is_chaddr: Some(false),
        ..ClassMatch::default()
    };
    assert!(matches(&is_modem, &modem));
    assert!(!matches(&is_modem, &cpe));
    assert!(matches(&is_cpe, &cpe));
    assert!(!matches(&is_cpe, &modem));
    // No remote id: neither.
    assert!(!matches(&is_modem, &facts()));
    assert!(!matches(&is_cpe, &facts()));
}

#[test]
fn class_matcher_client_id_hw_prefix_giaddr() {
    let f = ClientFacts {
        client_id: Some(&[1, 0, 0xe0, 0x6f, 1, 2, 3]),
        ..facts()
    };
    let cid = ClassMatch {
        client_id: Some(vec![1, 0, 0xe0, 0x6f, 1, 2, 3]),
        ..ClassMatch::default()
    };
    assert!(matches(&cid, &f));
    assert!(!matches(&cid, &facts()));
    let oui = ClassMatch {
        hw_prefix: Some(vec![0, 0xe0, 0x6f]),
        ..ClassMatch::default()
    };
    assert!(matches(&oui, &f));
    assert!(!matches(
        &oui,
        &ClientFacts {
            hw: Some(&[0, 0xe0, 0x70, 1, 2, 3]),
            ..facts()
        }
    ));
    assert!(!matches(
        &oui,
        &ClientFacts {
            hw: None,
            ..facts()
        }
    ));
    let gi = ClassMatch {
        giaddr: vec![Ipv4Net::new(Ipv4Addr::new(10, 77, 0, 0), 24).unwrap()],
        ..ClassMatch::default()
    };
    assert!(matches(&gi, &f));
    assert!(!matches(
        &gi,
        &ClientFacts {
            giaddr: Ipv4Addr::new(10, 78, 0, 9),
            ..facts()
        }
    ));
    // A directly attached client (giaddr 0) is behind no relay.
    assert!(!matches(
        &gi,
        &ClientFacts {
            giaddr: NONE,
            ..facts()
        }
    ));
}

#[test]
fn class_matcher_known_unknown_and_group() {
    let known = ClassMatch {
        known: Some(true),
        ..ClassMatch::default()
    };
    let unknown = ClassMatch {
        known: Some(false),
        ..ClassMatch::default()
    };
    let reg = ClientFacts {
        known: true,
        group: Some(3),
        ..facts()
    };
    assert!(matches(&known, &reg));
    assert!(!matches(&unknown, &reg));
    assert!(matches(&unknown, &facts()));
    assert!(!matches(&known, &facts()));
    let in_group = ClassMatch {
        group: Some(3),
        ..ClassMatch::default()
    };
    assert!(matches(&in_group, &reg));
    assert!(!matches(
        &in_group,
        &ClientFacts {
            group: Some(4),
            ..reg
        }
    ));
    // A class without conditions has no members of its own...
    assert!(!matches(&ClassMatch::default(), &reg));
}

#[test]
fn class_matcher_conditions_are_anded_and_group_joins_its_class() {
    let cfg = xdhcpd_config::parse(xdhcpd_config::PROV_CONFIG, "prov.toml").unwrap();
    let id = |n: &str| cfg.classes.iter().find(|c| c.name == n).unwrap().id;
    // legacy_cm = remote-id equals chaddr AND known.
    let mac: &[u8] = &[0, 0xd0, 0x59, 0, 0, 1];
    let f = ClientFacts {
        hw: Some(mac),
        remote_id: Some(mac),
        ..facts()
    };
    assert!(!classify(&cfg.classes, &f).contains(id("legacy_cm")));
    let f = ClientFacts { known: true, ..f };
    assert!(classify(&cfg.classes, &f).contains(id("legacy_cm")));
    // ... and a registration's group puts the client in that class.
    let f = ClientFacts {
        group: Some(id("basic_cm")),
        ..f
    };
    let set = classify(&cfg.classes, &f);
    assert!(set.contains(id("basic_cm")) && set.contains(id("legacy_cm")));
    assert_eq!(set.iter().count(), 2, "{set:?}");
}

// ---- a relayed client -----------------------------------------------------------------

/// A relayed BOOTREQUEST from `mac` via the CMTS, with option 82 remote-id `remote` (if any).
fn relayed(
    kind: MessageType,
    mac: [u8; 6],
    remote: Option<[u8; 6]>,
    opts: &[(u8, &[u8])],
) -> Vec<u8> {
    let mut b = vec![0u8; 240];
    b[0] = OP_BOOTREQUEST;
    b[1] = 1;
    b[2] = 6;
    b[3] = 1;
    b[4..8].copy_from_slice(&[0x70, 0x72, mac[4], mac[5]]);
    b[24..28].copy_from_slice(&CMTS.octets());
    b[28..34].copy_from_slice(&mac);
    b[236..240].copy_from_slice(&MAGIC_COOKIE);
    b.extend_from_slice(&[opt::MESSAGE_TYPE, 1, kind as u8]);
    for (c, v) in opts {
        b.push(*c);
        b.push(v.len() as u8);
        b.extend_from_slice(v);
    }
    if let Some(r) = remote {
        b.extend_from_slice(&[
            opt::RELAY_AGENT_INFO,
            12,
            relay_sub::CIRCUIT_ID,
            2,
            b'c',
            b'2',
        ]);
        b.extend_from_slice(&[relay_sub::REMOTE_ID, 6]);
        b.extend_from_slice(&r);
    }
    b.push(opt::END);
    b
}

fn meta() -> RxMeta {
    RxMeta {
        local_addr: SERVER,
        src_ip: CMTS,
        dst_ip: SERVER,
    }
}

struct Reply {
    bytes: Vec<u8>,
}

impl Reply {
    fn msg(&self) -> Message<'_> {
        Message::new_checked(&self.bytes).unwrap()
    }
    fn yiaddr(&self) -> Ipv4Addr {
        self.msg().yiaddr()
    }
    fn option(&self, code: u8) -> Option<Vec<u8>> {
        self.msg()
            .options()
            .map(|o| o.unwrap())
            .find(|(c, _, _)| *c == code)
            .map(|(_, v, _)| v.to_vec())
    }
    fn file(&self) -> String {
        let f = self.msg().file();
        String::from_utf8_lossy(&f[..f.iter().position(|&b| b == 0).unwrap_or(f.len())]).into()
    }
    fn lease(&self) -> u32 {
        u32::from_be_bytes(self.option(opt::LEASE_TIME).unwrap().try_into().unwrap())
    }
}

fn handle(e: &mut Engine, now: u32, r: &[u8]) -> Result<Reply, Decision> {
    let mut out = [0u8; 1500];
    match e.handle(now, &meta(), r, &mut out) {
        Decision::Reply { len, .. } => Ok(Reply {
            bytes: out[..len].to_vec(),
        }),
        d => Err(d),
    }
}

/// DISCOVER then REQUEST for the offered address; the ACK.
fn dora(
    e: &mut Engine,
    mac: [u8; 6],
    remote: Option<[u8; 6]>,
    opts: &[(u8, &[u8])],
) -> Result<Reply, Decision> {
    let offer = handle(e, 1000, &relayed(MessageType::Discover, mac, remote, opts))?;
    let ip = offer.yiaddr().octets();
    let sid = SERVER.octets();
    let mut req: Vec<(u8, &[u8])> = opts.to_vec();
    req.push((opt::SERVER_ID, &sid));
    req.push((opt::REQUESTED_IP, &ip));
    let ack = handle(e, 1000, &relayed(MessageType::Request, mac, remote, &req))?;
    assert_eq!(
        ack.msg()
            .options()
            .find_map(|o| o.ok().filter(|(c, _, _)| *c == 53).map(|(_, v, _)| v[0])),
        Some(5)
    );
    assert_eq!(ack.yiaddr(), offer.yiaddr());
    Ok(ack)
}

fn in_range(ip: Ipv4Addr, first: [u8; 4], last: [u8; 4]) -> bool {
    (u32::from(Ipv4Addr::from(first))..=u32::from(Ipv4Addr::from(last))).contains(&u32::from(ip))
}

const MODEM: [u8; 6] = [0, 0xd0, 0x59, 0, 0, 1];
const GOLD_MODEM: [u8; 6] = [0, 0xe0, 0x6f, 0x39, 0xf9, 0x88];
const MTA: [u8; 6] = [0, 0xe0, 0x6f, 0x58, 0x4d, 0xa4];
const CPE: [u8; 6] = [2, 0, 0, 0, 0xc9, 1];
const STRANGER: [u8; 6] = [0, 0x11, 0x22, 0x33, 0x44, 0x55];

fn prov() -> (tempfile::TempDir, Engine, Arc<LeaseTable>) {
    engine_on(xdhcpd_config::PROV_CONFIG, SERVER, 1000, None)
}

#[test]
fn class_prov_registered_modem_gets_modem_pool_and_docsis_file() {
    let (_d, mut e, _t) = prov();
    let ack = dora(
        &mut e,
        MODEM,
        Some(MODEM),
        &[(opt::VENDOR_CLASS, b"docsis3.0")],
    )
    .unwrap();
    let ip = ack.yiaddr();
    assert!(in_range(ip, [10, 174, 3, 1], [10, 174, 4, 254]), "{ip}");
    assert_eq!(ack.file(), "docsis3.cfg");
    assert_eq!(ack.msg().siaddr(), Ipv4Addr::new(192, 168, 0, 12));
    assert_eq!(ack.option(67).as_deref(), Some(&b"docsis3.cfg"[..]));
    // The subnet follows the pool: router and mask of 10.174.0.0/16.
    assert_eq!(ack.option(3).as_deref(), Some(&[10, 174, 0, 1][..]));
    assert_eq!(ack.option(1).as_deref(), Some(&[255, 255, 0, 0][..]));
    // Class option (log servers), network options (time servers, offset), [lease] time.
    assert_eq!(
        ack.option(7).as_deref(),
        Some(&[192, 168, 0, 12, 192, 168, 0, 11][..])
    );
    assert_eq!(
        ack.option(4).as_deref(),
        Some(&[192, 168, 0, 12, 192, 168, 0, 11][..])
    );
    assert_eq!(
        ack.option(2).as_deref(),
        Some(&(-10800i32).to_be_bytes()[..])
    );
    assert_eq!(ack.lease(), 21600);
    // The group's file wins over the option 60 class's (groups come first in the file).
    let gold = dora(
        &mut e,
        GOLD_MODEM,
        Some(GOLD_MODEM),
        &[(opt::VENDOR_CLASS, b"docsis3.0")],
    )
    .unwrap();
    assert_eq!(gold.file(), "basic_cm.cfg");
    assert!(in_range(gold.yiaddr(), [10, 174, 3, 1], [10, 174, 4, 254]));
    // A DOCSIS 1.0 modem gets the 1.0 file (its class is before docsis_cm in the file).
    let old = dora(
        &mut e,
        [0, 0x40, 0x7b, 0, 0, 2],
        None,
        &[(opt::VENDOR_CLASS, b"docsis1.0:05")],
    )
    .unwrap();
    assert_eq!(old.file(), "docsis10.cfg");
}

#[test]
fn class_prov_emta_gets_mta_pool_option_122_and_host_name() {
    let (_d, mut e, _t) = prov();
    let ack = dora(
        &mut e,
        MTA,
        Some(MODEM),
        &[(opt::VENDOR_CLASS, b"pktc1.0:051f0101")],
    )
    .unwrap();
    assert!(
        in_range(ack.yiaddr(), [10, 174, 5, 1], [10, 174, 5, 254]),
        "{}",
        ack.yiaddr()
    );
    let o122 = ack.option(122).expect("option 122");
    assert_eq!(&o122[..12], &[1, 4, 192, 168, 0, 11, 2, 4, 192, 168, 0, 12]);
    assert_eq!(ack.option(12).as_deref(), Some(&b"mta-00e06f584da4"[..]));
    // Group test_mta's file, DNS and domain; the MTA class's log servers.
    assert_eq!(ack.file(), "mta_ss.bin");
    assert_eq!(
        ack.option(6).as_deref(),
        Some(&[192, 168, 0, 81, 192, 168, 0, 82][..])
    );
    assert_eq!(
        ack.option(7).as_deref(),
        Some(&[192, 168, 0, 71, 192, 168, 0, 72][..])
    );
    // With a parameter request list, only what it names (and 122 when asked).
    let offer = handle(
        &mut e,
        1001,
        &relayed(
            MessageType::Discover,
            MTA,
            Some(MODEM),
            &[
                (opt::VENDOR_CLASS, b"pktc1.0:"),
                (opt::PARAMETER_LIST, &[1, 3, 122]),
            ],
        ),
    )
    .unwrap();
    assert!(offer.option(122).is_some());
    assert!(offer.option(12).is_none() && offer.option(7).is_none());
}

#[test]
fn class_prov_cpe_gets_cpe_pool_and_stranger_gets_nothing() {
    let (_d, mut e, _t) = prov();
    let ack = dora(&mut e, CPE, Some(MODEM), &[]).unwrap();
    assert!(
        in_range(ack.yiaddr(), [10, 175, 0, 10], [10, 175, 255, 250]),
        "{}",
        ack.yiaddr()
    );
    assert_eq!(ack.option(3).as_deref(), Some(&[10, 175, 0, 1][..]));
    assert!(ack.file().is_empty());
    // An unregistered modem: in docsis_cm, refused by deny-unknown on the modem pools and
    // by `deny` on the CPE pool; no answer, counted.
    let before = e.stats().snapshot();
    let r = handle(
        &mut e,
        1000,
        &relayed(
            MessageType::Discover,
            STRANGER,
            Some(STRANGER),
            &[(opt::VENDOR_CLASS, b"docsis3.0")],
        ),
    );
    assert_eq!(r.err(), Some(Decision::Silent(Silence::Unregistered)));
    // An unregistered eMTA likewise.
    let r = handle(
        &mut e,
        1000,
        &relayed(
            MessageType::Discover,
            [0, 0x11, 0x22, 0, 0, 7],
            Some(MODEM),
            &[(opt::VENDOR_CLASS, b"pktc1.0:")],
        ),
    );
    assert_eq!(r.err(), Some(Decision::Silent(Silence::Unregistered)));
    let after = e.stats().snapshot();
    assert_eq!(after.unknown_refused - before.unknown_refused, 2);
    assert_eq!(after.offers, before.offers);
    // A device with no option 82 at all is in no class: no pool admits it.
    let r = handle(
        &mut e,
        1000,
        &relayed(MessageType::Discover, [2, 0, 0, 0, 0, 0x33], None, &[]),
    );
    assert_eq!(r.err(), Some(Decision::Silent(Silence::NoPoolForClass)));
    assert_eq!(e.stats().snapshot().class_refused, 1);
}

#[test]
fn class_prov_request_outside_the_clients_pools_is_naked() {
    let (_d, mut e, _t) = prov();
    let modem = dora(
        &mut e,
        MODEM,
        Some(MODEM),
        &[(opt::VENDOR_CLASS, b"docsis3.0")],
    )
    .unwrap();
    // A CPE asking for a modem-pool address (INIT-REBOOT style): NAK, counted.
    let ip = Ipv4Addr::new(10, 174, 3, 200).octets();
    let r = handle(
        &mut e,
        1000,
        &relayed(
            MessageType::Request,
            CPE,
            Some(MODEM),
            &[(opt::REQUESTED_IP, &ip)],
        ),
    )
    .unwrap();
    assert_eq!(r.option(53).as_deref(), Some(&[MessageType::Nak as u8][..]));
    assert_eq!(e.stats().snapshot().class_refused, 1);
    // The modem renewing its own address is fine.
    let mut renew = relayed(
        MessageType::Request,
        MODEM,
        Some(MODEM),
        &[(opt::VENDOR_CLASS, b"docsis3.0")],
    );
    renew[12..16].copy_from_slice(&modem.yiaddr().octets());
    let r = handle(&mut e, 1100, &renew).unwrap();
    assert_eq!(r.option(53).as_deref(), Some(&[MessageType::Ack as u8][..]));
    assert_eq!(r.yiaddr(), modem.yiaddr());
}

#[test]
fn class_prov_tr069_acs_url_and_meter_lease_time() {
    let (_d, mut e, _t) = prov();
    let gw = dora(
        &mut e,
        [2, 0, 0, 0, 0xc9, 2],
        Some(MODEM),
        &[(opt::VENDOR_CLASS, b"dslforum.org")],
    )
    .unwrap();
    let url = b"http://acs.example.com:7547/";
    let mut o43 = vec![1, url.len() as u8];
    o43.extend_from_slice(url);
    assert_eq!(gw.option(43), Some(o43));
    assert_eq!(gw.lease(), 21600);
    let meter = dora(
        &mut e,
        [2, 0, 0, 0, 0xc9, 3],
        Some(MODEM),
        &[(opt::VENDOR_CLASS, b"meter-v2")],
    )
    .unwrap();
    assert_eq!(meter.lease(), 86400, "class default-time over [lease]");
    assert_eq!(meter.option(42).as_deref(), Some(&[192, 168, 0, 12][..]));
    // A client asking for more gets the class's max.
    let long = 1_000_000u32.to_be_bytes();
    let offer = handle(
        &mut e,
        1000,
        &relayed(
            MessageType::Discover,
            [2, 0, 0, 0, 0xc9, 4],
            Some(MODEM),
            &[(opt::VENDOR_CLASS, b"meter"), (opt::LEASE_TIME, &long)],
        ),
    )
    .unwrap();
    assert_eq!(offer.lease(), 86400);
}

// ---- precedence ------------------------------------------------------------------------

const PRECEDENCE: &str = r#"
[server]
interface = "lo"
[lease]
default-time = 1000
max-time = 100000
[[class]]
name = "a"
user-class = "a"
domain-name = "class-a.example"
default-time = 2000
[[class]]
name = "b"
user-class-prefix = "a"
domain-name = "class-b.example"
log-servers = ["192.0.2.2"]
boot-file = "b.cfg"
default-time = 3000
[[shared-network]]
name = "n"
relay-addresses = ["10.77.0.9"]
domain-name = "network.example"
log-servers = ["192.0.2.9"]
ntp-servers = ["192.0.2.9"]
time-servers = ["192.0.2.9"]
boot-file = "network.cfg"
[[subnet]]
cidr = "10.1.0.0/24"
shared-network = "n"
log-servers = ["192.0.2.5"]
ntp-servers = ["192.0.2.5"]
boot-file = "subnet.cfg"
default-time = 1500
[[subnet.pool]]
range = "10.1.0.10-10.1.0.50"
domain-name = "pool.example"
log-servers = ["192.0.2.4"]
default-time = 4000
"#;

#[test]
fn class_precedence_class_over_pool_over_subnet_over_network() {
    let (_d, mut e, _t) = engine_on(PRECEDENCE, SERVER, 1000, None);
    // In classes a and b (a first in the file): a's domain and time, b's log servers/file.
    let ab = dora(&mut e, [2, 0, 0, 0, 1, 1], None, &[(opt::USER_CLASS, b"a")]).unwrap();
    assert_eq!(ab.option(15).as_deref(), Some(&b"class-a.example"[..]));
    assert_eq!(ab.option(7).as_deref(), Some(&[192, 0, 2, 2][..]));
    assert_eq!(ab.file(), "b.cfg");
    assert_eq!(ab.lease(), 2000);
    // In b only.
    let b = dora(
        &mut e,
        [2, 0, 0, 0, 1, 2],
        None,
        &[(opt::USER_CLASS, b"ab")],
    )
    .unwrap();
    assert_eq!(b.option(15).as_deref(), Some(&b"class-b.example"[..]));
    assert_eq!(b.lease(), 3000);
    // In no class: the pool's domain, log servers and time; the subnet's NTP and file;
    // the network's time servers.
    let none = dora(&mut e, [2, 0, 0, 0, 1, 3], None, &[]).unwrap();
    assert_eq!(none.option(15).as_deref(), Some(&b"pool.example"[..]));
    assert_eq!(none.option(7).as_deref(), Some(&[192, 0, 2, 4][..]));
    assert_eq!(none.lease(), 4000);
    assert_eq!(none.option(42).as_deref(), Some(&[192, 0, 2, 5][..]));
    assert_eq!(none.file(), "subnet.cfg");
    assert_eq!(none.option(4).as_deref(), Some(&[192, 0, 2, 9][..]));
}

#[test]
fn class_precedence_subnet_times_over_network_and_global() {
    let text = PRECEDENCE.replace("default-time = 4000\n", "");
    let (_d, mut e, _t) = engine_on(&text, SERVER, 1000, None);
    let none = dora(&mut e, [2, 0, 0, 0, 1, 3], None, &[]).unwrap();
    assert_eq!(none.lease(), 1500);
    let text = text.replace("default-time = 1500\n", "");
    let (_d, mut e, _t) = engine_on(&text, SERVER, 1000, None);
    let none = dora(&mut e, [2, 0, 0, 0, 1, 3], None, &[]).unwrap();
    assert_eq!(none.lease(), 1000);
}

// ---- failover over a shared network ---------------------------------------------------

#[test]
fn class_failover_secondary_allocates_its_backup_addresses_across_the_shared_network() {
    let pol = FailoverPolicy {
        role: Role::Secondary,
        state: ServerState::CommunicationsInterrupted,
        mclt: 3600,
        lease_period_factor_permille: 1500,
        partner_down_usable_at: 0,
        hba: [0xff; 32],
        load_balance_max_secs: 0,
        rebind_limit: 0,
        own_pool_waits: false,
        expiry_grace: 0,
    };
    let cell = Arc::new(PolicyCell::new(pol));
    let (_d, mut e, table) = engine_on(xdhcpd_config::PROV_CONFIG, SERVER, 1000, Some(cell));
    // Nothing is the secondary's yet: no address for anyone.
    assert!(dora(
        &mut e,
        MODEM,
        Some(MODEM),
        &[(opt::VENDOR_CLASS, b"docsis3.0")]
    )
    .is_err());
    // The primary handed one address of the second modem pool and one MTA address over.
    let give = |ip: Ipv4Addr| {
        table.update(table.slot_of(ip).unwrap(), |l| {
            l.state = LeaseState::Backup;
            l.owner = Owner::Backup;
        });
    };
    let (modem_ip, mta_ip) = (Ipv4Addr::new(10, 174, 4, 9), Ipv4Addr::new(10, 174, 5, 7));
    give(mta_ip);
    give(modem_ip);
    // Each class gets the backup address of its own pool, in the other subnet-pool order.
    let m = dora(
        &mut e,
        MODEM,
        Some(MODEM),
        &[(opt::VENDOR_CLASS, b"docsis3.0")],
    )
    .unwrap();
    assert_eq!(m.yiaddr(), modem_ip);
    let t = dora(
        &mut e,
        MTA,
        Some(MODEM),
        &[(opt::VENDOR_CLASS, b"pktc1.0:")],
    )
    .unwrap();
    assert_eq!(t.yiaddr(), mta_ip);
    assert!(dora(
        &mut e,
        GOLD_MODEM,
        Some(GOLD_MODEM),
        &[(opt::VENDOR_CLASS, b"docsis3.0")]
    )
    .is_err());
}

#[test]
fn class_plain_configuration_is_not_classified() {
    // Without classes, registrations or rules the engine skips class evaluation and
    // behaves as before: any client gets an address.
    let text = "[server]\ninterface = \"lo\"\n[[subnet]]\ncidr = \"10.77.0.0/16\"\n[[subnet.pool]]\nrange = \"10.77.1.0-10.77.1.9\"\n";
    let (_d, mut e, _t) = engine_on(text, SERVER, 1000, None);
    let ack = dora(
        &mut e,
        STRANGER,
        Some(STRANGER),
        &[(opt::VENDOR_CLASS, b"docsis3.0")],
    )
    .unwrap();
    assert!(in_range(ack.yiaddr(), [10, 77, 1, 0], [10, 77, 1, 9]));
}

// ---- live registrations feed KNOWN and the group ------------------------------------------

/// A registration view over a map (what the daemon's `IndexView` gives the engine).
#[derive(Default)]
struct LiveRegs {
    regs: std::sync::Mutex<std::collections::HashMap<lease_store::ClientKey, (String, Vec<u8>)>>,
    /// Raised by every change.
    gen: std::sync::atomic::AtomicU64,
}

impl LiveRegs {
    fn changed(&self) {
        self.gen.fetch_add(1, std::sync::atomic::Ordering::Release);
    }
}

impl RegistrationView for LiveRegs {
    fn generation(&self) -> u64 {
        self.gen.load(std::sync::atomic::Ordering::Acquire)
    }

    fn find(&self, key: &lease_store::ClientKey, visit: &mut dyn FnMut(&Registered<'_>)) -> bool {
        let m = self.regs.lock().unwrap();
        let Some((group, file)) = m.get(key) else {
            return false;
        };
        visit(&Registered {
            group,
            fixed_address: None,
            next_server: None,
            boot_file: Some(file),
            options: &[],
        });
        true
    }

    fn reserved_for_other(
        &self,
        _: Ipv4Addr,
        _: &lease_store::ClientKey,
        _: &lease_store::ClientKey,
    ) -> bool {
        false
    }
}

#[test]
fn class_registration_live_group_selects_pool_and_removal_makes_client_unknown() {
    let view = Arc::new(LiveRegs::default());
    let (_d, mut e, _t) = super::test_support::engine_with(
        xdhcpd_config::PROV_CONFIG,
        SERVER,
        1000,
        None,
        Some(view.clone()),
    );
    let key = lease_store::ClientKey::from_hw(1, &STRANGER);
    // Not registered, not a [[host]]: UNKNOWN. As an MTA (option 60 "pktc1.0:") the only
    // pool its class may use denies unknown clients: no answer, counted.
    let mta = [(opt::VENDOR_CLASS, &b"pktc1.0:xyz"[..])];
    assert_eq!(
        handle(
            &mut e,
            1000,
            &relayed(MessageType::Discover, STRANGER, Some(STRANGER), &mta)
        )
        .err(),
        Some(Decision::Silent(Silence::Unregistered))
    );
    assert!(!e.is_known());
    assert_eq!(e.stats().snapshot().unknown_refused, 1);

    // Registered at runtime in group "docsis_mta", sending no option 60: the group alone
    // makes it a docsis_mta (KNOWN), so it gets the MTA pool; the registration's boot file
    // is above the class's (host > class).
    view.regs
        .lock()
        .unwrap()
        .insert(key, ("docsis_mta".into(), b"reg-mta.bin".to_vec()));
    view.changed();
    let ack = dora(&mut e, STRANGER, Some(STRANGER), &[]).unwrap();
    assert!(e.is_known());
    assert_eq!(e.registration_group(), Some("docsis_mta"));
    let ip = ack.yiaddr();
    assert!(in_range(ip, [10, 174, 5, 1], [10, 174, 5, 254]), "{ip}");
    assert_eq!(ack.file(), "reg-mta.bin");
    // The class's other settings still apply (docsis_mta's log servers, siaddr).
    assert_eq!(
        ack.option(7).as_deref(),
        Some(&[192, 168, 0, 71, 192, 168, 0, 72][..])
    );
    assert_eq!(ack.msg().siaddr(), Ipv4Addr::new(192, 168, 0, 12));

    // Registration removed: UNKNOWN again, refused as the MTA it claims to be.
    view.regs.lock().unwrap().remove(&key);
    view.changed();
    assert_eq!(
        handle(
            &mut e,
            1000,
            &relayed(MessageType::Discover, STRANGER, Some(STRANGER), &mta)
        )
        .err(),
        Some(Decision::Silent(Silence::Unregistered))
    );
    assert!(!e.is_known());
    assert_eq!(e.registration_group(), None);
    assert_eq!(e.stats().snapshot().unknown_refused, 2);
    // Without option 60 no class admits it any more (the group was its only class).
    assert!(handle(
        &mut e,
        1000,
        &relayed(MessageType::Discover, STRANGER, Some(STRANGER), &[])
    )
    .is_err());
}
