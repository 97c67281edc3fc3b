//! The DHCPv4 engine over sequences of client messages, with the invariants checked after
//! every message.
//!
//! The input is a list of steps: messages (DISCOVER, REQUEST, RELEASE, DECLINE, INFORM,
//! LEASEQUERY) from a few dozen client identities, with random options (option 82 raw or
//! with sub-options, relayed or not), clock advances and expiry sweeps. They run through one
//! engine over a small lease table (two subnets, two reservations) in a fresh temporary
//! file. After every step:
//! - every reply parses (`Message::new_checked` + its options), carries option 53 of the
//!   decided kind, and its yiaddr is 0, in a pool, or the client's own reservation;
//! - no address is offered or acknowledged to a client while another client holds an
//!   unexpired ACK for it (a model of the ACKs sent, ended by the holder's RELEASE/DECLINE);
//! - the table agrees: each address of an unexpired ACK is Active for its holder;
//! - a reserved address goes to its reserved client only;
//! - the per-pool counters equal a recount of the records.
#![no_main]

use std::collections::HashMap;
use std::net::Ipv4Addr;
use std::sync::Arc;

use arbitrary::Arbitrary;
use lease_store::{ClientKey, LeaseState, LeaseTable, OpenOptions, PoolSpec};
use libfuzzer_sys::fuzz_target;
use xdhcpd_dhcpv4::engine::client_key;
use xdhcpd_dhcpv4::wire::{opt, Message, MessageType};
use xdhcpd_dhcpv4::{Decision, Engine, EngineShared, EngineStats, RxMeta};
use xdhcpd_fuzz::{dhcp_request, scratch_dir, Header};

const SERVER: Ipv4Addr = Ipv4Addr::new(10, 0, 0, 1);
const RELAY: Ipv4Addr = Ipv4Addr::new(10, 1, 0, 1);
const START: u32 = 1_800_000_000;
/// Distinct client identities (chaddr 02:00:00:00:00:NN; every fourth, from 3 on, also sends
/// option 61).
const CLIENTS: u8 = 40;

/// Two subnets: the server's own link (20 addresses) and one behind the relay (11). The
/// first reservation is inside the pool, the second outside every pool.
const CONFIG: &str = r#"
[server]
interface = "lo"
lease-file = "/unused"
server-id = "10.0.0.1"
[lease]
default-time = 60
min-time = 10
max-time = 120
offer-hold = 5
decline-quarantine = 30
[[subnet]]
cidr = "10.0.0.0/24"
router = ["10.0.0.1"]
dns-servers = ["10.0.0.53"]
domain-name = "fuzz.example"
[[subnet.pool]]
range = "10.0.0.10-10.0.0.29"
[[subnet.reservation]]
hw = "02:00:00:00:00:05"
ip = "10.0.0.12"
[[subnet.reservation]]
client-id = "ff000000000007"
ip = "10.0.0.200"
[[subnet]]
cidr = "10.1.0.0/24"
router = ["10.1.0.1"]
[[subnet.pool]]
range = "10.1.0.10-10.1.0.20"
"#;

#[derive(Arbitrary, Debug, Clone, Copy)]
enum Addr {
    Zero,
    /// Address `n % 36` of the ones the configuration knows (pools, reservations, edges).
    Known(u8),
    /// The last address offered or acknowledged to this client.
    Mine,
    Any(u32),
}

#[derive(Arbitrary, Debug, Clone, Copy)]
enum Kind {
    Discover,
    Request,
    Release,
    Decline,
    Inform,
    LeaseQuery,
    /// A message type outside the client set (replies, FORCERENEW, unknown).
    Other(u8),
}

#[derive(Arbitrary, Debug, Clone)]
enum Relay82 {
    Raw(Vec<u8>),
    Subs {
        circuit: Vec<u8>,
        remote: Vec<u8>,
        link_selection: Option<Addr>,
    },
}

#[derive(Arbitrary, Debug, Clone)]
struct Msg {
    client: u8,
    kind: Kind,
    ciaddr: Addr,
    requested: Option<Addr>,
    /// None: no option 54; Some(true): ours; Some(false): another server's.
    server_id: Option<bool>,
    /// 0: not relayed; 1: our relay; else a random giaddr.
    giaddr: u8,
    giaddr_any: u32,
    option82: Option<Relay82>,
    lease_time: Option<u32>,
    max_size: Option<u16>,
    broadcast: bool,
    unicast: bool,
    secs: u16,
    hlen: u8,
    extra: Vec<(u8, Vec<u8>)>,
}

#[derive(Arbitrary, Debug, Clone)]
enum Step {
    Msg(Box<Msg>),
    /// Seconds to advance the clock (0..=255).
    Advance(u8),
    /// The expiry sweeper's pass over the table.
    Sweep,
}

/// Every address the configuration names, plus edges (network, broadcast, server, relay).
fn known_addrs() -> Vec<Ipv4Addr> {
    let mut v: Vec<Ipv4Addr> = (10..=29).map(|i| Ipv4Addr::new(10, 0, 0, i)).collect();
    v.extend((10..=20).map(|i| Ipv4Addr::new(10, 1, 0, i)));
    v.extend([
        Ipv4Addr::new(10, 0, 0, 200),
        Ipv4Addr::new(10, 0, 0, 255),
        SERVER,
        RELAY,
        Ipv4Addr::new(192, 0, 2, 1),
    ]);
    v
}

struct Fixture {
    _dir: tempfile::TempDir,
    engine: Engine,
    table: Arc<LeaseTable>,
    pools: Vec<PoolSpec>,
    known: Vec<Ipv4Addr>,
    /// Reserved address -> its client.
    reserved: HashMap<Ipv4Addr, ClientKey>,
}

fn fixture(now: u32) -> Fixture {
    let cfg = Arc::new(xdhcpd_config::parse(CONFIG, "fuzz.toml").expect("fuzz config"));
    let dir = scratch_dir();
    let pools: Vec<PoolSpec> = cfg
        .pool_specs()
        .into_iter()
        .map(|(id, first, last)| PoolSpec { id, first, last })
        .collect();
    let (table, _) = LeaseTable::open(
        &dir.path().join("leases.db"),
        &pools,
        &OpenOptions {
            now,
            ..OpenOptions::default()
        },
    )
    .expect("open lease table");
    let table = Arc::new(table);
    let shared = EngineShared::new(cfg, table.clone(), SERVER);
    shared.protect_reservations(now);
    let engine = Engine::new(Arc::new(shared), 0, Arc::new(EngineStats::default()));
    let mut reserved = HashMap::new();
    reserved.insert(
        Ipv4Addr::new(10, 0, 0, 12),
        ClientKey::from_hw(1, &[2, 0, 0, 0, 0, 5]),
    );
    reserved.insert(
        Ipv4Addr::new(10, 0, 0, 200),
        ClientKey::from_client_id(&[0xff, 0, 0, 0, 0, 0, 7]),
    );
    Fixture {
        _dir: dir,
        engine,
        table,
        pools,
        known: known_addrs(),
        reserved,
    }
}

fn in_pool(pools: &[PoolSpec], a: Ipv4Addr) -> bool {
    pools.iter().any(|p| (p.first..=p.last).contains(&a))
}

/// Client `c`'s option 61: `ff` + its MAC (clients 3, 7, 11, ...).
fn client_id(c: u8) -> Option<Vec<u8>> {
    (c % 4 == 3).then(|| vec![0xff, 0, 0, 0, 0, 0, c])
}

struct Run {
    f: Fixture,
    now: u32,
    /// Address -> (holder, end) of every ACK sent and not ended by its holder.
    bound: HashMap<Ipv4Addr, (ClientKey, u32)>,
    /// Client -> last address offered or acknowledged to it.
    mine: HashMap<u8, Ipv4Addr>,
    out: Vec<u8>,
}

impl Run {
    fn addr(&self, client: u8, a: Addr) -> Ipv4Addr {
        match a {
            Addr::Zero => Ipv4Addr::UNSPECIFIED,
            Addr::Known(n) => self.f.known[usize::from(n) % self.f.known.len()],
            Addr::Mine => self
                .mine
                .get(&client)
                .copied()
                .unwrap_or(Ipv4Addr::UNSPECIFIED),
            Addr::Any(v) => Ipv4Addr::from(v),
        }
    }

    fn build(&self, m: &Msg) -> (Vec<u8>, RxMeta) {
        let c = m.client % CLIENTS;
        let ciaddr = self.addr(c, m.ciaddr);
        let giaddr = match m.giaddr {
            0 => Ipv4Addr::UNSPECIFIED,
            1..=127 => RELAY,
            _ => Ipv4Addr::from(m.giaddr_any),
        };
        let mut chaddr = [0u8; 16];
        chaddr[..6].copy_from_slice(&[2, 0, 0, 0, 0, c]);
        let h = Header {
            htype: 1,
            // Mostly 6; sometimes any length up to 16 (a different client key).
            hlen: if m.hlen < 200 { 6 } else { m.hlen % 17 },
            xid: u32::from(c) << 16 | u32::from(m.secs),
            secs: m.secs,
            flags: if m.broadcast { 0x8000 } else { 0 },
            ciaddr: ciaddr.octets(),
            giaddr: giaddr.octets(),
            chaddr,
        };
        let kind = match m.kind {
            Kind::Discover => MessageType::Discover as u8,
            Kind::Request => MessageType::Request as u8,
            Kind::Release => MessageType::Release as u8,
            Kind::Decline => MessageType::Decline as u8,
            Kind::Inform => MessageType::Inform as u8,
            Kind::LeaseQuery => MessageType::LeaseQuery as u8,
            Kind::Other(t) => t,
        };
        let mut opts: Vec<(u8, Vec<u8>)> = vec![(opt::MESSAGE_TYPE, vec![kind])];
        if let Some(id) = client_id(c) {
            opts.push((opt::CLIENT_ID, id));
        }
        if let Some(r) = m.requested {
            opts.push((opt::REQUESTED_IP, self.addr(c, r).octets().to_vec()));
        }
        match m.server_id {
            Some(true) => opts.push((opt::SERVER_ID, SERVER.octets().to_vec())),
            Some(false) => opts.push((opt::SERVER_ID, vec![10, 0, 0, 2])),
            None => {}
        }
        if let Some(t) = m.lease_time {
            opts.push((opt::LEASE_TIME, t.to_be_bytes().to_vec()));
        }
        if let Some(s) = m.max_size {
            opts.push((opt::MAX_MESSAGE_SIZE, s.to_be_bytes().to_vec()));
        }
        opts.push((opt::PARAMETER_LIST, vec![1, 3, 6, 15, 28, 42, 51, 54]));
        for (code, val) in m.extra.iter().take(8) {
            // PAD and END carry no length: as option codes they would shift the rest.
            if !matches!(*code, 0 | 255) {
                opts.push((*code, val.clone()));
            }
        }
        match &m.option82 {
            None => {}
            Some(Relay82::Raw(v)) => opts.push((opt::RELAY_AGENT_INFO, v.clone())),
            Some(Relay82::Subs {
                circuit,
                remote,
                link_selection,
            }) => {
                let mut v = Vec::new();
                for (sub, val) in [(1u8, circuit), (2u8, remote)] {
                    let val = &val[..val.len().min(60)];
                    v.push(sub);
                    v.push(val.len() as u8);
                    v.extend_from_slice(val);
                }
                if let Some(a) = link_selection {
                    v.extend_from_slice(&[5, 4]);
                    v.extend_from_slice(&self.addr(c, *a).octets());
                }
                opts.push((opt::RELAY_AGENT_INFO, v));
            }
        }
        let src_ip = if !giaddr.is_unspecified() {
            giaddr
        } else {
            ciaddr
        };
        let meta = RxMeta {
            local_addr: SERVER,
            src_ip,
            dst_ip: if m.unicast {
                SERVER
            } else {
                Ipv4Addr::BROADCAST
            },
        };
        (dhcp_request(&h, &opts), meta)
    }

    fn step(&mut self, s: &Step) {
        match s {
            Step::Advance(n) => self.now = self.now.saturating_add(u32::from(*n)),
            Step::Sweep => {
                self.f.table.sweep_expired(self.now, 64);
            }
            Step::Msg(m) => self.message(m),
        }
        self.check_table();
    }

    fn message(&mut self, m: &Msg) {
        let c = m.client % CLIENTS;
        let (req, meta) = self.build(m);
        let reqm = Message::new_checked(&req).expect("the harness builds valid headers");
        let key = reqm.summary().ok().map(|s| client_key(&reqm, &s));
        self.out.fill(0);
        let d = self.f.engine.handle(self.now, &meta, &req, &mut self.out);
        let Decision::Reply { len, kind, .. } = d else {
            if let (Some(key), Ok(sum)) = (key, reqm.summary()) {
                self.ended_by_client(&reqm, &sum, key, m);
            }
            return;
        };
        assert!(
            len <= self.out.len(),
            "reply length {len} beyond the buffer"
        );
        let reply = &self.out[..len];
        let r = Message::new_checked(reply)
            .unwrap_or_else(|e| panic!("reply to {m:?} does not parse: {e}"));
        let rs = r
            .summary()
            .unwrap_or_else(|e| panic!("reply options do not parse ({e}): {reply:02x?}"));
        assert_eq!(r.op(), 2, "reply is not a BOOTREPLY");
        assert_eq!(
            rs.message_type,
            Some(kind),
            "option 53 of the reply differs from the decision"
        );
        let key = key.expect("a request the engine answered has parseable options");
        let yiaddr = r.yiaddr();
        if yiaddr.is_unspecified() {
            return;
        }
        assert!(
            matches!(kind, MessageType::Offer | MessageType::Ack),
            "{kind:?} with yiaddr {yiaddr}"
        );
        let reserved_for = self.f.reserved.get(&yiaddr);
        assert!(
            in_pool(&self.f.pools, yiaddr) || reserved_for.is_some(),
            "yiaddr {yiaddr} is in no pool and no reservation"
        );
        if let Some(owner) = reserved_for {
            assert_eq!(
                *owner, key,
                "reserved {yiaddr} given to another client ({kind:?})"
            );
        }
        if let Some((holder, end)) = self.bound.get(&yiaddr) {
            assert!(
                *holder == key || *end <= self.now,
                "{yiaddr} {kind:?} to {key:?} while ACKed to {holder:?} until {end} (now {})",
                self.now
            );
        }
        self.mine.insert(c, yiaddr);
        if kind == MessageType::Ack {
            let secs = rs.lease_time.expect("an ACK with yiaddr carries option 51");
            self.bound
                .insert(yiaddr, (key, self.now.saturating_add(secs)));
        }
    }

    /// RELEASE / DECLINE end the sender's own binding (a model of what the engine may do:
    /// only the holder's message frees the address for others).
    fn ended_by_client(
        &mut self,
        msg: &Message<'_>,
        sum: &xdhcpd_dhcpv4::wire::Summary<'_>,
        key: ClientKey,
        m: &Msg,
    ) {
        let addr = match m.kind {
            Kind::Release => msg.ciaddr(),
            Kind::Decline => match sum.requested_ip {
                Some(a) => a,
                None => return,
            },
            _ => return,
        };
        if self.bound.get(&addr).is_some_and(|(k, _)| *k == key) {
            self.bound.remove(&addr);
        }
    }

    fn check_table(&self) {
        for (addr, (holder, end)) in &self.bound {
            if *end <= self.now {
                continue;
            }
            let Some(slot) = self.f.table.slot_of(*addr) else {
                continue; // a reservation outside the pools has no record
            };
            let l = self.f.table.read(slot);
            assert!(
                l.state == LeaseState::Active && l.client == *holder,
                "{addr} ACKed to {holder:?} until {end} (now {}) but the record is {:?} for {:?}",
                self.now,
                l.state,
                l.client
            );
        }
        for p in &self.f.pools {
            assert_eq!(
                self.f.table.pool_stats(p.id),
                self.f.table.recount(p.id),
                "pool {} counters differ from its records",
                p.id
            );
        }
    }
}

fuzz_target!(|steps: Vec<Step>| {
    let mut run = Run {
        f: fixture(START),
        now: START,
        bound: HashMap::new(),
        mine: HashMap::new(),
        out: vec![0u8; 1500],
    };
    for s in steps.iter().take(256) {
        run.step(s);
    }
});
