//! The failover engine fed well-formed but hostile partner messages.
//!
//! Messages are built with the engine's own codec from arbitrary fields: CONNECT and
//! CONNECTACK with odd values (names, versions, MCLT, HBA, max-unacked, clock skew), STATE
//! floods with any state and flags, BNDUPDs for addresses inside and outside the pools with
//! any status and times, BNDACKs for our own updates in or out of order and for unknown xids,
//! UPDREQ/UPDREQALL/UPDDONE, POOLREQ/POOLRESP, DISCONNECT, unknown message types, and now
//! and then raw bytes. They run against one engine, driven like the daemon's driver drives
//! it: actions applied to an in-memory store with the shared `BindingSync` rules, local
//! lease changes queued, timers fired as the clock advances, operator commands.
//!
//! Checked after every step: no panic; everything the engine transmits decodes with its own
//! decoder; unacknowledged BNDUPD messages stay within our `max_unacked_bndupd`, and the
//! unacknowledged bindings within that times the per-message batch.
#![no_main]

use std::net::Ipv4Addr;

use arbitrary::Arbitrary;
use lease_store::{ClientKey, Lease, LeaseState};
use libfuzzer_sys::fuzz_target;
use xdhcpd_failover::codec::{self, BindingTxn, Body, ConnectInfo, Decoder, Message};
use xdhcpd_failover::{Action, BindingStore, BindingSync, Config, FailoverEngine, Role};

const START: u32 = 1_800_000_000;
const POOL_FIRST: u32 = 0x0a00_000a; // 10.0.0.10
const POOL_LEN: u32 = 24;
const MAX_UNACKED: u32 = 4;
const BATCH: usize = 3;

/// The store: one record per pool address, as the simulation's table.
struct Store(Vec<Lease>);

impl Store {
    fn index(a: Ipv4Addr) -> Option<usize> {
        let i = u32::from(a).checked_sub(POOL_FIRST)?;
        (i < POOL_LEN).then_some(i as usize)
    }
}

impl BindingStore for Store {
    fn read(&self, a: Ipv4Addr) -> Option<Lease> {
        Store::index(a).map(|i| self.0[i])
    }
    fn update<R>(&mut self, a: Ipv4Addr, f: impl FnOnce(&mut Lease) -> R) -> Option<(R, bool)> {
        let l = &mut self.0[Store::index(a)?];
        let old = *l;
        let r = f(l);
        l.addr = old.addr;
        Some((r, *l != old))
    }
    fn for_each(&self, f: impl FnMut(&Lease)) {
        self.0.iter().for_each(f);
    }
}

#[derive(Arbitrary, Debug, Clone, Copy)]
enum Addr {
    /// Pool address `n % POOL_LEN`.
    Pool(u8),
    /// Anything (mostly outside the pool).
    Any(u32),
}

impl Addr {
    fn ip(self) -> Ipv4Addr {
        match self {
            Addr::Pool(n) => Ipv4Addr::from(POOL_FIRST + u32::from(n) % POOL_LEN),
            Addr::Any(v) => Ipv4Addr::from(v),
        }
    }
}

#[derive(Arbitrary, Debug, Clone)]
struct Txn {
    addr: Addr,
    status: Option<u8>,
    client: Option<u8>,
    chaddr: Option<(u8, Vec<u8>)>,
    /// Times relative to the message time.
    lease_expiry: Option<i32>,
    potential_expiry: Option<i32>,
    start: Option<i32>,
    cltt: Option<i32>,
    ip_flags: Option<u16>,
    request_options: Option<Vec<u8>>,
    reject_reason: Option<u8>,
}

#[derive(Arbitrary, Debug, Clone)]
struct Connect {
    right_name: bool,
    max_unacked: Option<u32>,
    receive_timer: Option<u32>,
    xdhcpd_vendor: bool,
    protocol_version: Option<u8>,
    tls_request: Option<u8>,
    mclt: Option<u32>,
    hba: Option<Vec<u8>>,
    reject_reason: Option<u8>,
}

/// Which xid a reply carries.
#[derive(Arbitrary, Debug, Clone, Copy)]
enum Xid {
    /// The oldest of our messages of that kind not answered yet.
    Oldest,
    /// The newest.
    Newest,
    /// The n-th (out of order).
    Nth(u8),
    Any(u32),
}

#[derive(Arbitrary, Debug, Clone)]
enum Msg {
    Connect(Connect),
    ConnectAck(Xid, Connect),
    State { state: u8, flags: u8, start: i16 },
    BndUpd(Vec<Txn>),
    BndAck(Xid, Vec<Txn>),
    UpdReq,
    UpdReqAll,
    UpdDone(Xid),
    PoolReq,
    PoolResp(Xid, u32),
    Contact,
    Disconnect(u8, Option<Vec<u8>>),
    Optional(u8),
}

#[derive(Arbitrary, Debug, Clone)]
enum Step {
    Connected,
    Disconnected,
    /// Seconds to advance (timers fire as the driver fires them).
    Advance(u8),
    /// A partner message; its time is ours plus the skew.
    Send {
        skew: i16,
        msg: Box<Msg>,
    },
    /// Any bytes on the stream.
    Raw(Vec<u8>),
    /// A DHCP worker changed a record.
    Local {
        addr: u8,
        state: u8,
        client: u8,
        expiry: u16,
    },
    ScanUnacked,
    PartnerDown(Option<u16>, bool),
    Recover,
    Pause,
    Shutdown,
    RequestPool,
}

#[derive(Arbitrary, Debug)]
struct Input {
    secondary: bool,
    split: Option<u8>,
    steps: Vec<Step>,
}

fn rel(now: u32, d: i32) -> u32 {
    (i64::from(now) + i64::from(d)).clamp(0, i64::from(u32::MAX)) as u32
}

fn txn(now: u32, t: &Txn) -> BindingTxn {
    let mut b = BindingTxn::new(t.addr.ip());
    b.status = t.status.map(|s| if s < 200 { s % 8 } else { s });
    b.client_id = t.client.map(|c| vec![1, 2, 0, 0, 0, 0, c]);
    b.chaddr = t
        .chaddr
        .clone()
        .map(|(h, mut a)| {
            a.truncate(16);
            (h, a)
        })
        .or(t.client.map(|c| (1, vec![2, 0, 0, 0, 0, c])));
    b.lease_expiry = t.lease_expiry.map(|d| rel(now, d));
    b.potential_expiry = t.potential_expiry.map(|d| rel(now, d));
    b.start_time = t.start.map(|d| rel(now, d));
    b.cltt = t.cltt.map(|d| rel(now, d));
    b.ip_flags = t.ip_flags;
    b.request_options = t.request_options.clone().map(|mut v| {
        v.truncate(200);
        v
    });
    b.reject_reason = t.reject_reason;
    b
}

fn connect_info(c: &Connect) -> ConnectInfo {
    ConnectInfo {
        relationship_name: Some(if c.right_name {
            b"fuzz".to_vec()
        } else {
            b"other".to_vec()
        }),
        max_unacked: c.max_unacked,
        receive_timer: c.receive_timer,
        vendor_class: Some(if c.xdhcpd_vendor {
            b"xdhcpd-fuzz".to_vec()
        } else {
            b"isc-dhcpd-4.4.3".to_vec()
        }),
        protocol_version: c.protocol_version,
        tls_request: c.tls_request,
        tls_reply: None,
        mclt: c.mclt,
        hba: c.hba.clone().map(|mut h| {
            h.truncate(64);
            h
        }),
        delayed_service: None,
        reject_reason: c.reject_reason,
        message: None,
    }
}

struct Harness {
    engine: FailoverEngine,
    sync: BindingSync<u32>,
    store: Store,
    now: u32,
    /// Decodes what the engine sends, as the partner would.
    partner_rx: Decoder,
    /// Xids of our BNDUPDs, CONNECTs, UPDREQs, POOLREQs not answered yet (in send order).
    our_bndupd: Vec<u32>,
    our_connect: Vec<u32>,
    our_updreq: Vec<u32>,
    our_poolreq: Vec<u32>,
}

fn pick(list: &mut Vec<u32>, x: Xid) -> u32 {
    let i = match x {
        Xid::Any(v) => return v,
        _ if list.is_empty() => return 0,
        Xid::Oldest => 0,
        Xid::Newest => list.len() - 1,
        Xid::Nth(n) => usize::from(n) % list.len(),
    };
    list.remove(i)
}

impl Harness {
    fn send(&mut self, skew: i16, m: &Msg) {
        let time = rel(self.now, i32::from(skew));
        let (xid, body) = match m {
            Msg::Connect(c) => (1, Body::Connect(connect_info(c))),
            Msg::ConnectAck(x, c) => (
                pick(&mut self.our_connect, *x),
                Body::ConnectAck(connect_info(c)),
            ),
            Msg::State {
                state,
                flags,
                start,
            } => (
                7,
                Body::State {
                    state: *state,
                    flags: *flags,
                    start_time: rel(self.now, i32::from(*start)),
                },
            ),
            Msg::BndUpd(ts) => (
                0x1000 + ts.len() as u32,
                Body::BndUpd(ts.iter().take(80).map(|t| txn(time, t)).collect()),
            ),
            Msg::BndAck(x, ts) => (
                pick(&mut self.our_bndupd, *x),
                Body::BndAck(ts.iter().take(80).map(|t| txn(time, t)).collect()),
            ),
            Msg::UpdReq => (9, Body::UpdReq),
            Msg::UpdReqAll => (10, Body::UpdReqAll),
            Msg::UpdDone(x) => (pick(&mut self.our_updreq, *x), Body::UpdDone),
            Msg::PoolReq => (11, Body::PoolReq),
            Msg::PoolResp(x, n) => (
                pick(&mut self.our_poolreq, *x),
                Body::PoolResp {
                    addresses_transferred: *n,
                },
            ),
            Msg::Contact => (12, Body::Contact),
            Msg::Disconnect(r, text) => (
                13,
                Body::Disconnect {
                    reject_reason: *r,
                    message: text.clone().map(|mut t| {
                        t.truncate(200);
                        t
                    }),
                },
            ),
            Msg::Optional(t) => (
                14,
                Body::Optional {
                    msg_type: *t | 0x80,
                },
            ),
        };
        // A message our codec refuses to encode (too long) is not sent: the partner's stack
        // would not produce it either. Raw bytes cover malformed streams.
        if let Ok(bytes) = Message::new(time, xid, body).to_bytes() {
            self.engine.handle_bytes(self.now, &bytes);
        }
    }

    fn local(&mut self, addr: u8, state: u8, client: u8, expiry: u16) {
        let a = Ipv4Addr::from(POOL_FIRST + u32::from(addr) % POOL_LEN);
        let now = self.now;
        let st = LeaseState::ALL[usize::from(state) % LeaseState::ALL.len()];
        let key = ClientKey::from_hw(1, &[2, 0, 0, 0, 0, client % 16]);
        self.store.update(a, |l| {
            l.state = st;
            l.client = key;
            l.htype = 1;
            l.hlen = 6;
            l.chaddr[..6].copy_from_slice(&[2, 0, 0, 0, 0, client % 16]);
            l.start = now;
            l.cltt = now;
            l.expiry = now.saturating_add(u32::from(expiry));
            l.potential_expiry = l.expiry;
        });
        if let Some(l) = self.store.read(a) {
            self.sync.record_changed(&mut self.engine, now, now, &l);
        }
    }

    /// Runs the engine's actions as the daemon's driver does.
    fn drive(&mut self) {
        let now = self.now;
        for _ in 0..10_000 {
            let Some(a) = self.engine.poll_action() else {
                break;
            };
            match a {
                Action::ApplyBinding { id, binding } => {
                    let r = self.sync.apply(&mut self.store, now, &binding);
                    self.engine.binding_applied(now, id, r.map(|_| ()));
                }
                Action::BindingAcked { sent, .. } => {
                    self.sync.acked(&mut self.store, &sent);
                }
                Action::BindingRejected { sent, reason, .. } => {
                    self.sync.refused(&sent, reason, now);
                }
                Action::SendBindings { all } => {
                    self.sync
                        .send_bindings(&mut self.engine, now, now, &self.store, all);
                }
                Action::PoolRequest { id } => {
                    let mut granted = 0;
                    for i in 0..POOL_LEN {
                        let a = Ipv4Addr::from(POOL_FIRST + i);
                        if i % 2 == 0
                            && self.sync.grant_to_backup(
                                &mut self.engine,
                                now,
                                now,
                                &mut self.store,
                                a,
                            )
                        {
                            granted += 1;
                        }
                    }
                    self.engine.pool_response(now, id, granted);
                }
                Action::StateChanged { .. }
                | Action::Persist(_)
                | Action::PolicyChanged(_)
                | Action::PoolGranted { .. }
                | Action::Close { .. }
                | Action::VersionMismatch { .. }
                | Action::Log(_) => {}
            }
        }
        while let Some(bytes) = self.engine.poll_transmit() {
            self.partner_rx.push(&bytes);
            loop {
                match self.partner_rx.next_message() {
                    Ok(Some(m)) => {
                        let list = match m.body {
                            Body::BndUpd(_) => &mut self.our_bndupd,
                            Body::Connect(_) => &mut self.our_connect,
                            Body::UpdReq | Body::UpdReqAll => &mut self.our_updreq,
                            Body::PoolReq => &mut self.our_poolreq,
                            _ => continue,
                        };
                        list.push(m.xid);
                        if list.len() > 64 {
                            list.remove(0);
                        }
                    }
                    Ok(None) => break,
                    Err(e) => panic!("the engine sent bytes its own decoder refuses: {e}"),
                }
            }
        }
    }

    fn check(&self) {
        let window = self.engine.unacked_bndupd_messages();
        assert!(
            window <= MAX_UNACKED as usize,
            "{window} BNDUPD messages unacknowledged, max-unacked-bndupd is {MAX_UNACKED}"
        );
        let bindings = self.engine.unacked_updates();
        assert!(
            bindings <= MAX_UNACKED as usize * BATCH,
            "{bindings} bindings unacknowledged in at most {window} messages of {BATCH}"
        );
    }

    fn step(&mut self, s: &Step) {
        match s {
            Step::Connected => {
                self.engine.handle_connected(self.now);
                // A new stream: the partner's decoder starts afresh.
                self.partner_rx = Decoder::new();
                self.our_bndupd.clear();
                self.our_connect.clear();
                self.our_updreq.clear();
                self.our_poolreq.clear();
            }
            Step::Disconnected => self.engine.handle_disconnected(self.now),
            Step::Advance(n) => {
                self.now = self.now.saturating_add(u32::from(*n));
                // Fire every deadline that has passed (bounded: a deadline in the past
                // that does not move would loop).
                for _ in 0..8 {
                    match self.engine.poll_timeout() {
                        Some(t) if t <= self.now => self.engine.handle_timeout(self.now),
                        _ => break,
                    }
                    self.drive();
                }
            }
            Step::Send { skew, msg } => self.send(*skew, msg),
            Step::Raw(b) => self.engine.handle_bytes(self.now, b),
            Step::Local {
                addr,
                state,
                client,
                expiry,
            } => self.local(*addr, *state, *client, *expiry),
            Step::ScanUnacked => {
                let now = self.now;
                self.sync
                    .scan_unacked(&mut self.engine, now, now, &self.store);
            }
            Step::PartnerDown(since, force) => {
                let since = since.map(|d| self.now.saturating_sub(u32::from(d)));
                let _ = self.engine.partner_down(self.now, since, *force);
            }
            Step::Recover => {
                let _ = self.engine.recover(self.now);
            }
            Step::Pause => {
                let _ = self.engine.pause(self.now);
            }
            Step::Shutdown => self.engine.shutdown(self.now),
            Step::RequestPool => self.engine.request_pool_now(self.now),
        }
        self.drive();
        self.check();
    }
}

fuzz_target!(|inp: Input| {
    let role = if inp.secondary {
        Role::Secondary
    } else {
        Role::Primary
    };
    let mut cfg = Config::new(role, "fuzz");
    cfg.mclt = 60;
    cfg.max_unacked_bndupd = MAX_UNACKED;
    cfg.max_bindings_per_bndupd = BATCH;
    cfg.poll_interval = 3;
    cfg.poll_timeout = 10;
    cfg.safe_period = 40;
    cfg.startup_timeout = 3;
    cfg.heartbeat_interval = 5;
    cfg.pool_request_interval = 20;
    cfg.expiry_grace = 5;
    cfg.split = inp.split.map(u16::from);
    let rules = cfg.store_rules();
    let engine = FailoverEngine::new(cfg, None, START).expect("fuzz failover config");
    let store = Store(
        (0..POOL_LEN)
            .map(|i| Lease::free(Ipv4Addr::from(POOL_FIRST + i)))
            .collect(),
    );
    let mut h = Harness {
        engine,
        sync: BindingSync::new(rules),
        store,
        now: START,
        partner_rx: Decoder::new(),
        our_bndupd: Vec::new(),
        our_connect: Vec::new(),
        our_updreq: Vec::new(),
        our_poolreq: Vec::new(),
    };
    h.drive();
    for s in inp.steps.iter().take(200) {
        h.step(s);
    }
    let _ = codec::MAX_MESSAGE_LEN;
});
