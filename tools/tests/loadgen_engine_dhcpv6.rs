//! The engine's DHCPv6 scenarios against an in-memory DHCPv6 server (no sockets, no root):
//! SARR with IA_NA, IA_PD and both, renew after warm-up, relayed (interface-id and remote-id
//! sent, interface-id checked), and every kind of bad answer counted: failure status codes,
//! incomplete answers, an interface-id not echoed, and an address or a prefix handed to two
//! clients. The mock parses the loadgen's frames by hand (RFC 8415 layout) and asserts what
//! each message must carry.

use std::collections::VecDeque;
use std::io;
use std::net::{IpAddr, Ipv6Addr};
use std::sync::atomic::{AtomicBool, AtomicU32};
use std::sync::mpsc::sync_channel;
use std::sync::Arc;
use std::time::Instant;

use xdhcpd_io::frame::{ipv6_payload_offset, write_ipv6_udp_headers, Ipv6UdpAddrs, RxFrame};
use xdhcpd_tools::loadgen::addrbook::AddrBook;
use xdhcpd_tools::loadgen::engine::Engine;
use xdhcpd_tools::loadgen::port::{Port, TxOutcome};
use xdhcpd_tools::loadgen::request::Peer;
use xdhcpd_tools::loadgen::scenario::{Phase, Scenario};
use xdhcpd_tools::loadgen::shared::{EngineConfig, Live, Shared, ThreadReport};
use xdhcpd_tools::loadgen::v6::{self, Relay6, V6Config};

const SERVER_DUID: [u8; 10] = [0, 3, 0, 1, 2, 0, 0, 0, 0, 1];
const RELAY: Ipv6Addr = Ipv6Addr::new(0xfd77, 0, 0, 0, 0, 0, 0, 2);
const LINK: Ipv6Addr = Ipv6Addr::new(0xfd77, 0, 0, 0, 0, 0, 0, 0);
const SERVER: Ipv6Addr = Ipv6Addr::new(0xfd77, 0, 0, 0, 0, 0, 0, 1);

fn opts(mut b: &[u8]) -> Vec<(u16, Vec<u8>)> {
    let mut out = Vec::new();
    while b.len() >= 4 {
        let code = u16::from_be_bytes([b[0], b[1]]);
        let len = usize::from(u16::from_be_bytes([b[2], b[3]]));
        assert!(b.len() >= 4 + len, "option {code} overruns the message");
        out.push((code, b[4..4 + len].to_vec()));
        b = &b[4 + len..];
    }
    assert!(b.is_empty(), "trailing bytes after the options");
    out
}

fn get(o: &[(u16, Vec<u8>)], code: u16) -> Option<&Vec<u8>> {
    o.iter().find(|(c, _)| *c == code).map(|(_, v)| v)
}

fn put(out: &mut Vec<u8>, code: u16, v: &[u8]) {
    out.extend_from_slice(&code.to_be_bytes());
    out.extend_from_slice(&(v.len() as u16).to_be_bytes());
    out.extend_from_slice(v);
}

/// What the mock does wrong, on purpose.
#[derive(Clone, Copy, Default)]
struct Faults {
    /// Every client gets the same address and prefix.
    same_binding: bool,
    /// Replies to Requests carry NoAddrsAvail (2) in the IA_NA instead of an address.
    no_addrs: bool,
    /// Relay-Replies carry interface-id 0xdeadbeef instead of the client's.
    wrong_interface_id: bool,
    /// Advertises carry no server identifier.
    no_server_id: bool,
}

struct MockServer6 {
    queue: VecDeque<Vec<u8>>,
    faults: Faults,
    relayed: bool,
    /// Counts by message type received (1 Solicit, 3 Request, 5 Renew).
    seen: [u64; 16],
}

impl MockServer6 {
    fn new(relayed: bool, faults: Faults) -> Self {
        MockServer6 {
            queue: VecDeque::new(),
            faults,
            relayed,
            seen: [0; 16],
        }
    }

    fn answer(&mut self, frame: &[u8]) {
        let rx = RxFrame::parse(frame).expect("the loadgen sent an unparsable frame");
        let (IpAddr::V6(src), IpAddr::V6(dst)) = (rx.src_ip, rx.dst_ip) else {
            panic!("not IPv6")
        };
        let mut m = rx.payload;
        let mut relay_opts = Vec::new();
        if self.relayed {
            assert_eq!((src, dst), (RELAY, SERVER));
            assert_eq!((rx.src_port, rx.dst_port), (547, 547));
            assert_eq!(m[0], 12, "Relay-Forward");
            assert_eq!(&m[2..18], &LINK.octets(), "link-address");
            relay_opts = opts(&m[34..]);
            m = get(&relay_opts, 9).expect("relay-message option");
        } else {
            assert_eq!(dst, v6::ALL_SERVERS);
            assert_eq!((rx.src_port, rx.dst_port), (546, 547));
            assert_eq!(src, v6::link_local(rx.src_mac));
        }
        let kind = m[0];
        self.seen[usize::from(kind)] += 1;
        let o = opts(&m[4..]);
        let cid = get(&o, 1).expect("client identifier").clone();
        assert_eq!(cid.len(), 10);
        assert_eq!(&cid[..4], &[0, 3, 0, 1], "DUID-LL");
        let index = u32::from_be_bytes([cid[6], cid[7], cid[8], cid[9]]);
        if self.relayed {
            let iid = get(&relay_opts, 18).expect("interface-id");
            assert_eq!(iid.as_slice(), &index.to_be_bytes());
            let rid = get(&relay_opts, 37).expect("remote-id");
            assert_eq!(&rid[4..], &cid[4..], "remote-id = enterprise + MAC");
        }
        let reply_kind = match kind {
            1 => {
                assert!(get(&o, 2).is_none(), "Solicit without server id");
                2
            }
            3 | 5 => {
                assert_eq!(
                    get(&o, 2).map(Vec::as_slice),
                    Some(&SERVER_DUID[..]),
                    "Request/Renew carry the server's DUID"
                );
                7
            }
            other => panic!("unexpected message type {other}"),
        };
        let n = if self.faults.same_binding {
            0
        } else {
            index + 1
        };
        let addr = Ipv6Addr::new(0xfd77, 0, 0, 0, 0, 0, (n >> 16) as u16 + 1, n as u16);
        let prefix = Ipv6Addr::new(
            0xfd77,
            0x100 + (n >> 8) as u16,
            (n as u16 & 0xff) << 8,
            0,
            0,
            0,
            0,
            0,
        );
        let mut out = vec![reply_kind, m[1], m[2], m[3]];
        put(&mut out, 1, &cid);
        if !(reply_kind == 2 && self.faults.no_server_id) {
            put(&mut out, 2, &SERVER_DUID);
        }
        if let Some(ia) = get(&o, 3) {
            if kind != 1 {
                let sub = opts(&ia[12..]);
                let a = get(&sub, 5).expect("Request/Renew IA_NA carries the address");
                if !self.faults.same_binding {
                    assert_eq!(&a[..16], &addr.octets(), "the advertised / bound address");
                }
            }
            let mut body = ia[..4].to_vec();
            body.extend_from_slice(&[0, 0, 0x07, 0x08, 0, 0, 0x0b, 0x40]);
            if kind == 3 && self.faults.no_addrs {
                put(&mut body, 13, &[0, 2, b'n', b'o']);
            } else {
                let mut a = addr.octets().to_vec();
                a.extend_from_slice(&3600u32.to_be_bytes());
                a.extend_from_slice(&7200u32.to_be_bytes());
                put(&mut body, 5, &a);
            }
            put(&mut out, 3, &body);
        }
        if let Some(ia) = get(&o, 25) {
            if kind != 1 {
                let sub = opts(&ia[12..]);
                let p = get(&sub, 26).expect("Request/Renew IA_PD carries the prefix");
                assert_eq!(p[8], 56);
            }
            let mut body = ia[..4].to_vec();
            body.extend_from_slice(&[0, 0, 0x07, 0x08, 0, 0, 0x0b, 0x40]);
            let mut p = 3600u32.to_be_bytes().to_vec();
            p.extend_from_slice(&7200u32.to_be_bytes());
            p.push(56);
            p.extend_from_slice(&prefix.octets());
            put(&mut body, 26, &p);
            put(&mut out, 25, &body);
        }
        let payload = if self.relayed {
            let mut r = vec![13, 0];
            r.extend_from_slice(&LINK.octets());
            r.extend_from_slice(&v6::link_local(rx.src_mac).octets());
            let iid = if self.faults.wrong_interface_id {
                0xdead_beef_u32
            } else {
                index
            };
            put(&mut r, 18, &iid.to_be_bytes());
            put(&mut r, 9, &out);
            r
        } else {
            out
        };
        let off = ipv6_payload_offset(0);
        let mut f = vec![0u8; off + payload.len()];
        f[off..].copy_from_slice(&payload);
        let addrs = Ipv6UdpAddrs {
            src_mac: [2, 0, 0, 0, 0, 1],
            dst_mac: rx.src_mac,
            src_ip: SERVER,
            dst_ip: src,
            src_port: 547,
            dst_port: if self.relayed { 547 } else { 546 },
        };
        let total = write_ipv6_udp_headers(&mut f, &[], &addrs, payload.len()).expect("headers");
        f.truncate(total);
        self.queue.push_back(f);
    }
}

impl Port for MockServer6 {
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
        "mock6".into()
    }

    fn kernel_rx_drops(&self) -> u64 {
        0
    }
}

fn config(scenario: Scenario, clients: u32, count: u64, v6: V6Config) -> EngineConfig {
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
        v6: Some(v6),
        pools: Vec::new(),
    }
}

fn ia(na: bool, pd: bool) -> V6Config {
    V6Config {
        ia_na: na,
        ia_pd: pd,
        relay: None,
    }
}

fn relayed(na: bool, pd: bool) -> V6Config {
    V6Config {
        ia_na: na,
        ia_pd: pd,
        relay: Some(Relay6 {
            relay_addr: RELAY,
            link_addr: LINK,
            server: SERVER,
            server_mac: [2, 0, 0, 0, 0, 1],
        }),
    }
}

fn run(cfg: EngineConfig, server: MockServer6) -> (ThreadReport, Arc<Shared>) {
    let sh = Arc::new(Shared {
        book: AddrBook::new(cfg.clients as usize),
        book_pd: AddrBook::new(cfg.clients as usize),
        cfg,
        t0: Instant::now(),
        stop: AtomicBool::new(false),
        warmed: AtomicU32::new(0),
        live: vec![Live::default()],
        peer: Peer {
            server: None,
            iface_mac: [2, 0, 0, 0, 0, 2],
        },
        keys: xdhcpd_tools::loadgen::forcerenew::KeyBook::new(0),
        reconf_done: std::sync::atomic::AtomicU64::new(0),
    });
    let (tx, rx) = sync_channel(16);
    let e = Engine::new(server, sh.clone(), 0, rx, vec![tx]);
    let r = e.run().unwrap_or_else(|e| panic!("engine: {e}"));
    (r, sh)
}

fn counts(r: &ThreadReport, p: Phase) -> &xdhcpd_tools::loadgen::PhaseCounts {
    &r.phases[p as usize].counts
}

#[test]
fn loadgen_dhcpv6_sarr_with_ia_na_ia_pd_and_both_counts_one_exchange_per_sarr() {
    for (na, pd) in [(true, false), (false, true), (true, true)] {
        let (r, sh) = run(
            config(Scenario::Dora, 300, 300, ia(na, pd)),
            MockServer6::new(false, Faults::default()),
        );
        let d = counts(&r, Phase::Dora);
        assert_eq!(d.sent, 300, "na {na} pd {pd}: {d:?}");
        assert_eq!(d.acks, 300, "{d:?}");
        assert_eq!(d.offers, 300, "{d:?}");
        assert_eq!(d.tx_packets, 600, "Solicit + Request per SARR");
        assert_eq!(d.drops + d.naks + d.duplicates, 0, "{d:?}");
        assert_eq!(d.status_errors + d.incomplete + d.relay_errors, 0, "{d:?}");
        assert_eq!(r.phases[Phase::Dora as usize].latency.count(), 300);
        let want = |on: bool| if on { 300 } else { 0 };
        assert_eq!(sh.book.distinct_bound_addresses(), want(na));
        assert_eq!(sh.book_pd.distinct_bound_addresses(), want(pd));
    }
}

#[test]
fn loadgen_dhcpv6_renew_after_warmup_and_sarr_renew() {
    let (r, _) = run(
        config(Scenario::Renew, 100, 500, ia(true, true)),
        MockServer6::new(false, Faults::default()),
    );
    assert_eq!(counts(&r, Phase::WarmupDora).acks, 100);
    let n = counts(&r, Phase::Renew);
    assert_eq!((n.sent, n.acks, n.tx_packets), (500, 500, 500), "{n:?}");
    assert_eq!(n.duplicates, 0);

    let (r, _) = run(
        config(Scenario::DoraRenew, 50, 50, ia(true, false)),
        MockServer6::new(false, Faults::default()),
    );
    assert_eq!(counts(&r, Phase::Dora).acks, 50);
    assert_eq!(counts(&r, Phase::Renew).acks, 50);
}

#[test]
fn loadgen_dhcpv6_relayed_sends_interface_and_remote_id_and_checks_the_echo() {
    let (r, _) = run(
        config(Scenario::Dora, 64, 64, relayed(true, true)),
        MockServer6::new(true, Faults::default()),
    );
    let d = counts(&r, Phase::Dora);
    assert_eq!((d.sent, d.acks, d.relay_errors), (64, 64, 0), "{d:?}");

    let faults = Faults {
        wrong_interface_id: true,
        ..Faults::default()
    };
    let (r, _) = run(
        config(Scenario::Dora, 64, 64, relayed(true, false)),
        MockServer6::new(true, faults),
    );
    let d = counts(&r, Phase::Dora);
    assert_eq!(d.acks, 0, "{d:?}");
    assert_eq!(
        d.relay_errors, 64,
        "every Relay-Reply echoed the wrong interface-id"
    );
    assert_eq!(d.sent, d.answered + d.drops, "{d:?}");
}

#[test]
fn loadgen_dhcpv6_failure_status_and_incomplete_answers_are_counted() {
    let faults = Faults {
        no_addrs: true,
        ..Faults::default()
    };
    let (r, sh) = run(
        config(Scenario::Dora, 40, 40, ia(true, false)),
        MockServer6::new(false, faults),
    );
    let d = counts(&r, Phase::Dora);
    assert_eq!((d.acks, d.naks, d.status_errors), (0, 40, 40), "{d:?}");
    assert_eq!(sh.book.bound_count(), 0);

    let faults = Faults {
        no_server_id: true,
        ..Faults::default()
    };
    let (r, _) = run(
        config(Scenario::Dora, 40, 40, ia(true, true)),
        MockServer6::new(false, faults),
    );
    let d = counts(&r, Phase::Dora);
    assert_eq!((d.acks, d.incomplete, d.offers), (0, 40, 0), "{d:?}");
}

#[test]
fn loadgen_dhcpv6_an_address_or_prefix_given_to_two_clients_is_caught() {
    let faults = Faults {
        same_binding: true,
        ..Faults::default()
    };
    let mut c = config(Scenario::Dora, 10, 10, ia(true, true));
    c.concurrency = Some(1);
    let (r, _) = run(c, MockServer6::new(false, faults));
    let d = counts(&r, Phase::Dora);
    assert_eq!(d.acks, 10);
    // 9 later clients each got the first one's address and prefix.
    assert_eq!(d.duplicates, 18, "{d:?}");
    assert_eq!(r.totals.duplicate_examples6.len(), 8, "examples are capped");
}

#[test]
fn loadgen_dhcpv6_wire_xid_and_link_local() {
    assert_eq!(v6::wire_xid(0x0312_3456), 0x03_3456);
    assert!(v6::wire_xid(u32::MAX) <= 0xff_ffff);
    assert_eq!(
        v6::link_local([0x02, 0x4c, 0, 0, 1, 2]),
        "fe80::4c:ff:fe00:102".parse::<Ipv6Addr>().expect("address")
    );
    let a: Ipv6Addr = "fd77::1:5".parse().expect("address");
    let b: Ipv6Addr = "fd77::1:6".parse().expect("address");
    assert_ne!(v6::fold(a), v6::fold(b));
}
