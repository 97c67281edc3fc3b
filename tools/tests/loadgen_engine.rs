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
        let kind = match sum.message_type {
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
        let ch = req.chaddr();
        let index = u32::from_be_bytes([ch[2], ch[3], ch[4], ch[5]]);
        let yiaddr = if self.same_address {
            Ipv4Addr::new(10, 1, 0, 1)
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
        client_id: true,
        broadcast: false,
        mac_salt: 0x4c,
        self_test: false,
        v6: None,
    }
}

fn run(cfg: EngineConfig, server: MockServer) -> (ThreadReport, Arc<Shared>) {
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
