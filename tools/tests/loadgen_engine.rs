//! The engine's state machine against an in-memory server (no sockets, no
//! root): exchanges are accounted for, lost replies become drops or
//! retransmissions, renew/init-reboot/release follow the scenario.

use std::collections::{HashSet, VecDeque};
use std::io;
use std::net::Ipv4Addr;
use std::sync::atomic::{AtomicBool, AtomicU32};
use std::sync::mpsc::sync_channel;
use std::sync::Arc;
use std::time::Instant;

use xdhcpd_dhcpv4::engine::reconfigure::{write_forcerenew, Auth, ForceRenew};
use xdhcpd_dhcpv4::wire::{opt, Message, MessageType, ReplyWriter};
use xdhcpd_io::frame::{write_ipv4_udp_headers, Ipv4UdpAddrs, RxFrame, BROADCAST_MAC};
use xdhcpd_tools::loadgen::addrbook::AddrBook;
use xdhcpd_tools::loadgen::engine::Engine;
use xdhcpd_tools::loadgen::port::{Port, TxOutcome};
use xdhcpd_tools::loadgen::request::Peer;
use xdhcpd_tools::loadgen::scenario::{Phase, Scenario};
use xdhcpd_tools::loadgen::shared::{EngineConfig, Live, Shared, ThreadReport};

const SERVER: Ipv4Addr = Ipv4Addr::new(10, 0, 0, 1);

/// A DHCP server in a Port: answers in the same loop iteration, gives client
/// with chaddr index i the address 10.1.x.y = i + 1, drops every
/// `drop_every`-th request (0: none; each client's DISCOVER and REQUEST are lost at most once,
/// so retries always recover whatever the interleaving), optionally hands out one address to
/// all.
struct MockServer {
    queue: VecDeque<Vec<u8>>,
    seen: u64,
    drop_every: u64,
    /// (chaddr, message type) already lost once.
    lost: HashSet<(Vec<u8>, u8)>,
    same_address: bool,
    nak_requests: bool,
    releases: u64,
    /// `Some`: the FORCERENEW server (RFC 6704 keys to option 145 clients; see `ReconfMock`).
    reconf: Option<ReconfMock>,
}

/// The reconfiguring server of the `forcerenew` tests: keys every option-145 client, and
/// once all `clients` are bound (and the engine had a few loop turns to start listening)
/// sends each one a FORCERENEW signed with its key (plus one forged, one stale and one
/// repeated); a renewal of a reconfiguring client gets NAK, its next DORA an address from
/// 10.2.0.0/16 instead of 10.1.0.0/16.
struct ReconfMock {
    clients: u32,
    bound: HashSet<u32>,
    reconfiguring: HashSet<u32>,
    moved: HashSet<u32>,
    polls_after_bound: u32,
    sent: bool,
    /// Hand out keys to clients whose REQUEST lists HMAC-MD5 in option 145 (false: none).
    give_keys: bool,
}

fn reconf_key(i: u32) -> [u8; 16] {
    let b = i.to_be_bytes();
    let mut k = [0x5au8; 16];
    k[..4].copy_from_slice(&b);
    k[12..].copy_from_slice(&b);
    k
}

fn frame_to_client(payload: &[u8]) -> Vec<u8> {
    let mut f = vec![0u8; 42 + payload.len()];
    f[42..].copy_from_slice(payload);
    let addrs = Ipv4UdpAddrs {
        src_mac: [2, 0, 0, 0, 0, 1],
        dst_mac: BROADCAST_MAC,
        src_ip: SERVER,
        dst_ip: Ipv4Addr::BROADCAST,
        src_port: 67,
        dst_port: 68,
    };
    let Ok(total) = write_ipv4_udp_headers(&mut f, &[], &addrs, payload.len()) else {
        panic!("headers")
    };
    f.truncate(total);
    f
}

impl ReconfMock {
    fn new(clients: u32) -> Self {
        ReconfMock {
            clients,
            bound: HashSet::new(),
            reconfiguring: HashSet::new(),
            moved: HashSet::new(),
            polls_after_bound: 0,
            sent: false,
            give_keys: true,
        }
    }

    /// One FORCERENEW to client `i` at its address, signed with `key`.
    fn forcerenew(&self, i: u32, key: [u8; 16], replay: u64) -> Vec<u8> {
        let mut chaddr = [0u8; 16];
        chaddr[..6].copy_from_slice(&[2, 0x4c, 0, 0, (i >> 8) as u8, i as u8]);
        let fr = ForceRenew {
            server_id: SERVER,
            client: Ipv4Addr::from(u32::from(Ipv4Addr::new(10, 1, 0, 0)) + i + 1),
            htype: 1,
            hlen: 6,
            chaddr,
            xid: i,
            giaddr: Ipv4Addr::UNSPECIFIED,
            relay_info: &[],
            replay,
            auth: Auth::Nonce(key),
        };
        let mut buf = [0u8; 576];
        let Ok(n) = write_forcerenew(&mut buf, &fr) else {
            panic!("FORCERENEW buffer")
        };
        frame_to_client(&buf[..n])
    }

    /// Called once per receive: after all clients are bound, the FORCERENEWs.
    fn poll(&mut self, queue: &mut VecDeque<Vec<u8>>) {
        if self.sent || (self.bound.len() as u32) < self.clients {
            return;
        }
        self.polls_after_bound += 1;
        if self.polls_after_bound < 5 {
            return;
        }
        self.sent = true;
        for i in 0..self.clients {
            let key = reconf_key(i);
            match i {
                0 => {
                    let mut forged = key;
                    forged[7] ^= 0xff;
                    queue.push_back(self.forcerenew(i, forged, 5));
                }
                // Not above the ACK's replay value (1): a replay.
                1 => queue.push_back(self.forcerenew(i, key, 1)),
                _ => {}
            }
            queue.push_back(self.forcerenew(i, key, 2));
            if i == 2 {
                // The server's retry, while the client is already renewing.
                queue.push_back(self.forcerenew(i, key, 3));
            }
            self.reconfiguring.insert(i);
        }
    }
}

impl MockServer {
    fn new() -> Self {
        MockServer {
            queue: VecDeque::new(),
            seen: 0,
            drop_every: 0,
            lost: HashSet::new(),
            same_address: false,
            nak_requests: false,
            releases: 0,
            reconf: None,
        }
    }

    fn answer(&mut self, frame: &[u8]) {
        let Ok(rx) = RxFrame::parse(frame) else {
            panic!("engine sent an unparsable frame")
        };
        let Ok(req) = Message::new_checked(rx.payload) else {
            panic!("engine sent a bad DHCP message")
        };
        let Ok(sum) = req.summary() else {
            panic!("engine sent bad options")
        };
        self.seen += 1;
        let ch = req.chaddr();
        let index = u32::from_be_bytes([ch[2], ch[3], ch[4], ch[5]]);
        let renewing = !req.ciaddr().is_unspecified();
        let kind = match sum.message_type {
            Some(MessageType::Request)
                if renewing
                    && self
                        .reconf
                        .as_mut()
                        .is_some_and(|r| r.reconfiguring.remove(&index)) =>
            {
                if let Some(r) = self.reconf.as_mut() {
                    r.moved.insert(index);
                }
                MessageType::Nak
            }
            Some(MessageType::Discover) => MessageType::Offer,
            Some(MessageType::Request) if self.nak_requests => MessageType::Nak,
            Some(MessageType::Request) => MessageType::Ack,
            Some(MessageType::Release) => {
                self.releases += 1;
                return;
            }
            other => panic!("unexpected {other:?}"),
        };
        if self.drop_every > 0
            && self.seen.is_multiple_of(self.drop_every)
            && self.lost.insert((req.chaddr().to_vec(), kind as u8))
        {
            return;
        }
        let moved = self
            .reconf
            .as_ref()
            .is_some_and(|r| r.moved.contains(&index));
        let yiaddr = if self.same_address {
            Ipv4Addr::new(10, 1, 0, 1)
        } else if moved {
            Ipv4Addr::from(u32::from(Ipv4Addr::new(10, 2, 0, 0)) + index + 1)
        } else {
            Ipv4Addr::from(u32::from(Ipv4Addr::new(10, 1, 0, 0)) + index + 1)
        };
        let mut f = vec![0u8; 42 + 576];
        let len = {
            let Ok(mut w) = ReplyWriter::new(&mut f[42..], &req, 576) else {
                panic!("reply buffer")
            };
            if kind != MessageType::Nak {
                w.set_yiaddr(yiaddr);
            }
            let ok = w.option(opt::MESSAGE_TYPE, &[kind as u8]).is_ok()
                && w.option_ip(opt::SERVER_ID, SERVER).is_ok()
                && w.option_u32(opt::LEASE_TIME, 3600).is_ok();
            assert!(ok);
            if let Some(r) = self.reconf.as_mut().filter(|_| kind == MessageType::Ack) {
                r.bound.insert(index);
                if sum.forcerenew_nonce == Some(&[1][..]) && r.give_keys {
                    let mut v = [0u8; 28];
                    v[0] = 3;
                    v[1] = 1;
                    v[3..11].copy_from_slice(&1u64.to_be_bytes());
                    v[11] = 1;
                    v[12..].copy_from_slice(&reconf_key(index));
                    assert!(w.option(opt::AUTHENTICATION, &v).is_ok());
                }
            }
            w.finish()
        };
        let addrs = Ipv4UdpAddrs {
            src_mac: [2, 0, 0, 0, 0, 1],
            dst_mac: BROADCAST_MAC,
            src_ip: SERVER,
            dst_ip: Ipv4Addr::BROADCAST,
            src_port: 67,
            dst_port: 68,
        };
        let Ok(total) = write_ipv4_udp_headers(&mut f, &[], &addrs, len) else {
            panic!("headers")
        };
        f.truncate(total);
        self.queue.push_back(f);
    }
}

impl Port for MockServer {
    fn recv_batch<F: FnMut(&[u8])>(&mut self, mut on_frame: F) -> io::Result<usize> {
        if let Some(r) = self.reconf.as_mut() {
            r.poll(&mut self.queue);
        }
        let n = self.queue.len().min(64);
        for _ in 0..n {
            if let Some(f) = self.queue.pop_front() {
                on_frame(&f);
            }
        }
        Ok(n)
    }

    fn send_with<F: FnOnce(&mut [u8]) -> Option<usize>>(
        &mut self,
        build: F,
    ) -> io::Result<TxOutcome> {
        let mut buf = [0u8; 2048];
        match build(&mut buf) {
            Some(len) => {
                self.answer(&buf[..len]);
                Ok(TxOutcome::Queued)
            }
            None => Ok(TxOutcome::Nothing),
        }
    }

    fn flush(&mut self) -> io::Result<()> {
        Ok(())
    }

    fn describe(&self) -> String {
        "mock".into()
    }

    fn kernel_rx_drops(&self) -> u64 {
        0
    }
}

fn config(scenario: Scenario, clients: u32, count: u64) -> EngineConfig {
    EngineConfig {
        scenario,
        clients,
        threads: 1,
        rate: None,
        concurrency: Some(16),
        duration_ns: None,
        count: Some(count),
        timeout_ns: 20_000_000,
        retries: 0,
        relay: None,
        relay_id: Default::default(),
        client_id: true,
        broadcast: false,
        mac_salt: 0x4c,
        self_test: false,
        v6: None,
        pools: Vec::new(),
    }
}

fn run(cfg: EngineConfig, server: MockServer) -> (ThreadReport, Arc<Shared>) {
    let keys = if cfg.scenario == Scenario::ForceRenew {
        cfg.clients as usize
    } else {
        0
    };
    let sh = Arc::new(Shared {
        book: AddrBook::new(cfg.clients as usize),
        book_pd: AddrBook::new(0),
        cfg,
        t0: Instant::now(),
        stop: AtomicBool::new(false),
        warmed: AtomicU32::new(0),
        live: vec![Live::default()],
        peer: Peer {
            server: None,
            iface_mac: [2, 0, 0, 0, 0, 2],
        },
        keys: xdhcpd_tools::loadgen::forcerenew::KeyBook::new(keys),
        reconf_done: std::sync::atomic::AtomicU64::new(0),
    });
    let (tx, rx) = sync_channel(16);
    let e = Engine::new(server, sh.clone(), 0, rx, vec![tx]);
    let r = e.run().unwrap_or_else(|e| panic!("engine: {e}"));
    (r, sh)
}

fn stats(r: &ThreadReport, p: Phase) -> &xdhcpd_tools::loadgen::PhaseStats {
    &r.phases[p as usize]
}

#[test]
fn dora_every_exchange_is_answered_and_bound_once() {
    let (r, sh) = run(config(Scenario::Dora, 500, 500), MockServer::new());
    let d = stats(&r, Phase::Dora);
    assert_eq!(d.counts.sent, 500);
    assert_eq!(d.counts.answered, 500);
    assert_eq!(d.counts.acks, 500);
    assert_eq!(d.counts.offers, 500);
    assert_eq!(d.counts.drops, 0);
    assert_eq!(d.counts.duplicates, 0);
    assert_eq!(d.counts.tx_packets, 1000, "DISCOVER + REQUEST per exchange");
    assert_eq!(d.latency.count(), 500);
    assert_eq!(sh.book.distinct_bound_addresses(), 500);
}

#[test]
fn lost_replies_are_drops_without_retries() {
    let mut s = MockServer::new();
    s.drop_every = 7;
    let (r, _) = run(config(Scenario::Dora, 300, 300), s);
    let d = stats(&r, Phase::Dora);
    assert_eq!(d.counts.sent, 300);
    assert!(d.counts.drops > 0, "{d:?}");
    assert_eq!(d.counts.sent, d.counts.answered + d.counts.drops, "{d:?}");
    assert_eq!(d.counts.retransmits, 0);
}

#[test]
fn lost_replies_are_retransmitted_with_retries() {
    let mut s = MockServer::new();
    s.drop_every = 7;
    let mut c = config(Scenario::Dora, 300, 300);
    c.retries = 3;
    let (r, _) = run(c, s);
    let d = stats(&r, Phase::Dora);
    assert_eq!(d.counts.sent, 300);
    assert!(d.counts.retransmits > 0, "{d:?}");
    // Every 7th packet is lost, at most one DISCOVER and one REQUEST per exchange: 3 retries
    // always recover (before, retransmissions could line up with the 7th packet again).
    assert_eq!(d.counts.drops, 0, "{d:?}");
    assert_eq!(d.counts.answered, 300);
}

#[test]
fn renew_runs_after_a_separately_reported_warmup() {
    let (r, _) = run(config(Scenario::Renew, 200, 1000), MockServer::new());
    let w = stats(&r, Phase::WarmupDora);
    assert_eq!(w.counts.sent, 200, "one warm-up DORA per client");
    assert_eq!(w.counts.acks, 200);
    let n = stats(&r, Phase::Renew);
    assert_eq!(n.counts.sent, 1000);
    assert_eq!(n.counts.acks, 1000);
    assert_eq!(n.counts.tx_packets, 1000, "one REQUEST per renewal");
    assert_eq!(stats(&r, Phase::Dora).counts.sent, 0);
}

#[test]
fn dora_renew_and_release_follow_each_dora() {
    let (r, _) = run(config(Scenario::DoraRenew, 100, 100), MockServer::new());
    assert_eq!(stats(&r, Phase::Dora).counts.acks, 100);
    assert_eq!(stats(&r, Phase::Renew).counts.sent, 100);
    assert_eq!(stats(&r, Phase::Renew).counts.acks, 100);

    let (r, sh) = run(config(Scenario::Release, 100, 100), MockServer::new());
    assert_eq!(stats(&r, Phase::Dora).counts.acks, 100);
    assert_eq!(stats(&r, Phase::Release).counts.releases, 100);
    assert_eq!(sh.book.bound_count(), 0);
}

#[test]
fn init_reboot_and_naks() {
    let (r, _) = run(config(Scenario::InitReboot, 50, 200), MockServer::new());
    assert_eq!(stats(&r, Phase::InitReboot).counts.acks, 200);

    let mut s = MockServer::new();
    s.nak_requests = true;
    let (r, sh) = run(config(Scenario::Dora, 50, 50), s);
    let d = stats(&r, Phase::Dora);
    assert_eq!(d.counts.naks, 50);
    assert_eq!(d.counts.answered, 50);
    assert_eq!(d.counts.acks, 0);
    assert_eq!(sh.book.bound_count(), 0);
}

#[test]
fn a_server_handing_one_address_to_everyone_is_caught() {
    let mut s = MockServer::new();
    s.same_address = true;
    let mut c = config(Scenario::Dora, 10, 10);
    c.concurrency = Some(1);
    let (r, _) = run(c, s);
    let d = stats(&r, Phase::Dora);
    assert_eq!(d.counts.acks, 10);
    assert_eq!(d.counts.duplicates, 9);
    assert_eq!(r.totals.duplicate_examples.len(), 8, "examples are capped");
}

#[test]
fn open_loop_rate_is_respected() {
    let mut c = config(Scenario::Dora, 1000, 0);
    c.count = None;
    c.concurrency = None;
    c.rate = Some(2000);
    c.duration_ns = Some(500_000_000);
    let (r, _) = run(c, MockServer::new());
    let d = stats(&r, Phase::Dora);
    // 2000/s for 0.5 s: 1000 starts, give or take the last batch.
    assert!((950..=1010).contains(&d.counts.sent), "{d:?}");
    assert_eq!(d.counts.sent, d.counts.answered);
}

/// `--scenario forcerenew` against the in-memory reconfiguring server: every client asks
/// for a key, takes it from the ACK, verifies its FORCERENEW (a forged one and a stale one
/// are refused, a repeated one ignored), renews, is NAKed, and ends with a new address;
/// the reconfiguration is one timed exchange per client.
#[test]
fn forcerenew_clients_verify_renew_after_nak_and_move() {
    let clients = 50;
    let mut c = config(Scenario::ForceRenew, clients, u64::from(clients));
    c.duration_ns = Some(10_000_000_000);
    let mut s = MockServer::new();
    s.reconf = Some(ReconfMock::new(clients));
    let (r, sh) = run(c, s);
    let w = stats(&r, Phase::WarmupDora);
    assert_eq!(w.counts.acks, u64::from(clients), "{w:?}");
    let rc = &r.totals.reconf;
    assert_eq!(rc.keys_received, 2 * u64::from(clients), "{rc:?}");
    assert_eq!(rc.forcerenews, u64::from(clients) + 3, "{rc:?}");
    assert_eq!(rc.bad_digest, 1, "{rc:?}");
    assert_eq!(rc.replayed, 1, "{rc:?}");
    assert_eq!(rc.ignored, 1, "{rc:?}");
    assert_eq!(rc.started, u64::from(clients), "{rc:?}");
    assert_eq!(rc.renew_naks, u64::from(clients), "{rc:?}");
    assert_eq!(rc.completed, u64::from(clients), "{rc:?}");
    assert_eq!(rc.moved, u64::from(clients), "{rc:?}");
    assert_eq!(
        (rc.lost, rc.unfinished, rc.not_reached),
        (0, 0, 0),
        "{rc:?}"
    );
    let p = stats(&r, Phase::Reconfigure);
    assert_eq!(p.counts.sent, u64::from(clients), "{p:?}");
    assert_eq!(p.counts.acks, u64::from(clients), "{p:?}");
    assert_eq!(p.counts.answered, u64::from(clients), "{p:?}");
    assert_eq!(p.counts.drops, 0, "{p:?}");
    assert_eq!(p.latency.count(), u64::from(clients));
    // Renewal + DISCOVER + REQUEST per client.
    assert_eq!(p.counts.tx_packets, 3 * u64::from(clients), "{p:?}");
    for i in 0..clients {
        let a = sh.book.bound(i).map(|a| a.octets());
        assert!(matches!(a, Some([10, 2, _, _])), "client {i} holds {a:?}");
    }
    assert_eq!(sh.book.distinct_bound_addresses(), clients as usize);
}

/// A server that hands out no key (as for a client without option 145): every FORCERENEW
/// is refused (no key), nobody renews, and the run ends at --duration with every client
/// still bound where it was ("not reached").
#[test]
fn forcerenew_without_a_key_is_refused() {
    let clients = 10;
    let mut c = config(Scenario::ForceRenew, clients, u64::from(clients));
    c.duration_ns = Some(300_000_000);
    let mut s = MockServer::new();
    let mut m = ReconfMock::new(clients);
    m.give_keys = false;
    s.reconf = Some(m);
    let (r, sh) = run(c, s);
    let rc = &r.totals.reconf;
    assert_eq!(rc.keys_received, 0, "{rc:?}");
    assert_eq!(rc.no_key, u64::from(clients) + 3, "{rc:?}");
    assert_eq!((rc.verified, rc.started, rc.completed), (0, 0, 0), "{rc:?}");
    assert_eq!(rc.not_reached, u64::from(clients), "{rc:?}");
    assert_eq!(stats(&r, Phase::Reconfigure).counts.sent, 0);
    assert_eq!(sh.book.bound_count(), clients as usize);
}
