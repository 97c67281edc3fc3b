//! RFC 7724 active leasequery sessions over a real lease table: subscribing, the catch-up
//! from query-start-time and its CatchUpComplete, live changes in order and filtered, the
//! changes that race the catch-up scan, the cut-off of a subscriber that fell behind, and
//! the refusals (ConnectionActive, TLSConnectionRefused, NotAllowed, MalformedQuery).

use std::collections::VecDeque;
use std::net::Ipv4Addr;
use std::sync::Arc;

use lease_store::{ClientKey, Lease, LeaseState, LeaseTable};

use super::bulk_leasequery::*;
use super::test_support::engine_on;
use super::wire::MessageType;

const SERVER: Ipv4Addr = Ipv4Addr::new(10, 0, 0, 1);
const NOW: u32 = 10_000;

const CFG: &str = r#"
[server]
interface = "lo"
[[subnet]]
cidr = "10.0.0.0/24"
[[subnet.pool]]
range = "10.0.0.10-10.0.0.29"
"#;

/// 8,192 addresses: more than one poll's scan budget.
const BIG: &str = r#"
[server]
interface = "lo"
[[subnet]]
cidr = "10.1.0.0/16"
[[subnet.pool]]
range = "10.1.0.1-10.1.32.0"
"#;

struct Fx {
    _dir: tempfile::TempDir,
    table: Arc<LeaseTable>,
}

fn fx(cfg: &str) -> Fx {
    let (_dir, _engine, table) = engine_on(cfg, SERVER, 1000, None);
    Fx { _dir, table }
}

fn opt82(relay: &[u8]) -> Vec<u8> {
    let mut v = vec![12, relay.len() as u8];
    v.extend_from_slice(relay);
    v
}

/// Binds `ip` to MAC 02:..:mac via relay `relay`, started at `start`, ending at NOW +
/// `start` (so its lease time left names the change); returns the change.
fn bind(t: &LeaseTable, ip: Ipv4Addr, mac: u8, relay: &[u8], start: u32) -> Change {
    let slot = t.slot_of(ip).expect("pool address");
    t.update(slot, |l| {
        l.state = LeaseState::Active;
        l.client = ClientKey::from_hw(1, &[2, 0, 0, 0, 0, mac]);
        l.htype = 1;
        l.hlen = 6;
        l.chaddr[..6].copy_from_slice(&[2, 0, 0, 0, 0, mac]);
        l.start = start;
        l.cltt = start;
        l.expiry = NOW + start;
        assert!(l.set_relay_agent_info(&opt82(relay)));
    });
    Change {
        slot: slot.index(),
        lease: t.read(slot),
    }
}

/// A queue as the driver keeps it; `inject` adds changes when the session has drained
/// the queue `at` times (to race the catch-up scan).
#[derive(Default)]
struct Src {
    q: VecDeque<Change>,
    lost: u64,
    drains: u32,
    inject: Vec<(u32, Change)>,
}

impl ChangeSource for Src {
    fn next_change(&mut self) -> Option<Change> {
        if self.q.is_empty() {
            self.drains += 1;
            let d = self.drains;
            self.inject.retain(|(at, c)| {
                if *at == d {
                    self.q.push_back(*c);
                    false
                } else {
                    true
                }
            });
        }
        self.q.pop_front()
    }
    fn lost(&self) -> u64 {
        self.lost
    }
}

/// Polls until idle or closed (input fed first); answers Subscribe as the driver would.
fn drive(
    s: &mut Session,
    t: &LeaseTable,
    input: &[u8],
    src: &mut Src,
    stats: &BulkStats,
) -> (Vec<Reply>, bool, u32) {
    let mut out = vec![0u8; MIN_OUT];
    let mut replies = Vec::new();
    let mut rest = input;
    let mut subscribes = 0;
    loop {
        let n = s.feed(rest, stats).expect("well-framed input");
        rest = &rest[n..];
        match s.poll_with(t, NOW, &mut out, stats, src) {
            Poll::Send(n) => {
                let len = usize::from(u16::from_be_bytes([out[0], out[1]]));
                assert_eq!(len + 2, n, "length prefix matches the message");
                replies.push(parse_reply(&out[2..n]).expect("message parses"));
            }
            Poll::Again => {}
            Poll::Subscribe => subscribes += 1,
            // The driver's TLS handshake, done: the rest of the input is what TLS carries.
            Poll::StartTls => s.tls_established(),
            Poll::Idle if rest.is_empty() => return (replies, false, subscribes),
            Poll::Idle => {}
            Poll::Close => return (replies, true, subscribes),
        }
    }
}

fn ip(last: u8) -> Ipv4Addr {
    Ipv4Addr::new(10, 0, 0, last)
}

fn status_of(r: &Reply) -> Option<u8> {
    r.status.as_ref().map(|s| s.0)
}

#[test]
fn active_leasequery_live_changes_arrive_in_order_filtered_with_base_time() {
    let f = fx(CFG);
    let stats = BulkStats::default();
    let mut s = Session::new(true, SERVER);
    let mut src = Src::default();
    // Subscribe (no query-start-time: live only): no message yet, one Subscribe.
    let q = build_active_query(7, &QuerySpec::All, None);
    let (r, closed, subs) = drive(&mut s, &f.table, &q, &mut src, &stats);
    assert_eq!((r.len(), closed, subs), (0, false, 1));
    assert!(s.subscribed() && !s.catching_up());
    // Three changes, one address twice (bind, then renew): all, in order.
    let a = bind(&f.table, ip(10), 1, b"olt-a", 9000);
    let b = bind(&f.table, ip(11), 2, b"olt-b", 9001);
    let a2 = bind(&f.table, ip(10), 1, b"olt-a", 9500);
    src.q.extend([a, b, a2]);
    let (r, closed, _) = drive(&mut s, &f.table, &[], &mut src, &stats);
    assert!(!closed);
    let got: Vec<(Ipv4Addr, Option<u32>)> = r.iter().map(|m| (m.addr, m.lease_time)).collect();
    assert_eq!(
        got,
        [
            (ip(10), Some(9000)),
            (ip(11), Some(9001)),
            (ip(10), Some(9500)),
        ],
        "every change, in the order made, each as it was then"
    );
    assert!(r
        .iter()
        .all(|m| m.kind == MessageType::LeaseActive && m.xid == 7));
    assert!(r.iter().all(|m| m.base_time == Some(NOW)));
    assert_eq!(stats.snapshot().changes_sent, 3);
    // A released binding is reported UNASSIGNED.
    let slot = f.table.slot_of(ip(11)).expect("slot");
    f.table.update(slot, |l| {
        l.state = LeaseState::Released;
        l.cltt = 9900;
    });
    src.q.push_back(Change {
        slot: slot.index(),
        lease: f.table.read(slot),
    });
    let (r, _, _) = drive(&mut s, &f.table, &[], &mut src, &stats);
    assert_eq!(r.len(), 1);
    assert_eq!(
        (r[0].kind, r[0].addr, r[0].state),
        (MessageType::LeaseUnassigned, ip(11), Some(4))
    );

    // Filtered by relay-id: only that relay's bindings.
    let mut s = Session::new(true, SERVER);
    let mut src = Src::default();
    let q = build_active_query(8, &QuerySpec::RelayId(b"olt-b"), None);
    drive(&mut s, &f.table, &q, &mut src, &stats);
    src.q.extend([a, b, a2]);
    let (r, _, _) = drive(&mut s, &f.table, &[], &mut src, &stats);
    assert_eq!(r.iter().map(|m| m.addr).collect::<Vec<_>>(), [ip(11)]);
}

#[test]
fn active_leasequery_catch_up_from_query_start_time_then_catchupcomplete_then_live() {
    let f = fx(CFG);
    bind(&f.table, ip(10), 1, b"r", 500); // before the start time: not sent
    bind(&f.table, ip(11), 2, b"r", 5000);
    bind(&f.table, ip(12), 3, b"r", 6000);
    // Expired at 4100 + 3600 = 7700, after the start time: UNASSIGNED.
    let slot = f.table.slot_of(ip(13)).expect("slot");
    f.table.update(slot, |l| {
        l.state = LeaseState::Expired;
        l.client = ClientKey::from_hw(1, &[2, 0, 0, 0, 0, 4]);
        l.start = 4100;
        l.cltt = 4100;
        l.expiry = 7700;
    });
    let stats = BulkStats::default();
    let mut s = Session::new(true, SERVER);
    let mut src = Src::default();
    let q = build_active_query(9, &QuerySpec::All, Some(4000));
    // A change already queued when the scan starts is for a record the scan will read.
    src.q.push_back(bind(&f.table, ip(14), 5, b"r", 9990));
    let (r, closed, subs) = drive(&mut s, &f.table, &q, &mut src, &stats);
    assert!(!closed && subs == 1);
    let kinds: Vec<(MessageType, Ipv4Addr)> = r.iter().map(|m| (m.kind, m.addr)).collect();
    assert_eq!(
        kinds[..kinds.len() - 1],
        [
            (MessageType::LeaseActive, ip(11)),
            (MessageType::LeaseActive, ip(12)),
            (MessageType::LeaseUnassigned, ip(13)),
            (MessageType::LeaseActive, ip(14)),
        ],
        "each record changed since 4000 once, the queued change by the scan"
    );
    let last = r.last().expect("status");
    assert_eq!(last.kind, MessageType::LeaseQueryStatus);
    assert_eq!(status_of(last), Some(Status::CatchUpComplete as u8));
    let st = stats.snapshot();
    assert_eq!(
        (st.catchup_sent, st.catchup_complete, st.changes_sent),
        (4, 1, 0)
    );
    // Then live.
    src.q.push_back(bind(&f.table, ip(10), 1, b"r", 9999));
    let (r, _, _) = drive(&mut s, &f.table, &[], &mut src, &stats);
    assert_eq!(r.iter().map(|m| m.addr).collect::<Vec<_>>(), [ip(10)]);
}

#[test]
fn active_leasequery_changes_racing_the_catch_up_are_sent_once_and_never_older() {
    let f = fx(BIG);
    let first = Ipv4Addr::new(10, 1, 0, 1);
    let at = |i: u32| Ipv4Addr::from(u32::from(first) + i);
    for i in [0u32, 100, 5000, 8000] {
        bind(&f.table, at(i), (i % 250) as u8, b"r", 5000);
    }
    let stats = BulkStats::default();
    let mut s = Session::new(true, SERVER);
    // Changes that arrive while the scan is past record 200 (drain 201 happens before
    // record 200 is read): one to record 100 (already scanned: kept, sent after the
    // catch-up) and one to record 8000 (not yet scanned: the scan reads it later).
    let c100 = bind(&f.table, at(100), 100, b"r", 9100);
    let c8000 = bind(&f.table, at(8000), 8000u32 as u8, b"r", 9200);
    let mut src = Src {
        inject: vec![(201, c100), (201, c8000)],
        ..Src::default()
    };
    let q = build_active_query(3, &QuerySpec::All, Some(4000));
    let (r, closed, _) = drive(&mut s, &f.table, &q, &mut src, &stats);
    assert!(!closed);
    let kinds: Vec<MessageType> = r.iter().map(|m| m.kind).collect();
    let (a, st) = (MessageType::LeaseActive, MessageType::LeaseQueryStatus);
    assert_eq!(kinds, [a, a, a, a, st, a]);
    let addrs: Vec<Ipv4Addr> = r.iter().filter(|m| m.kind == a).map(|m| m.addr).collect();
    assert_eq!(
        addrs,
        [at(0), at(100), at(5000), at(8000), at(100)],
        "record 8000's change is in the scan; record 100's comes after CatchUpComplete"
    );
    // Record 100's later message is its newer state.
    assert_eq!(r[5].lease_time, Some(9100));
    assert_eq!(
        r[3].lease_time,
        Some(9200),
        "the scan read record 8000's newer state"
    );
    assert!(
        src.drains > 8000,
        "the queue is drained before every record the scan reads"
    );
}

#[test]
fn active_leasequery_subscriber_that_fell_behind_is_cut_off_with_datamissing() {
    let f = fx(CFG);
    let stats = BulkStats::default();
    let mut s = Session::new(true, SERVER);
    let mut src = Src::default();
    let q = build_active_query(4, &QuerySpec::All, None);
    drive(&mut s, &f.table, &q, &mut src, &stats);
    src.q.push_back(bind(&f.table, ip(10), 1, b"r", 9000));
    src.lost = 17;
    let (r, closed, _) = drive(&mut s, &f.table, &[], &mut src, &stats);
    assert!(closed, "the connection closes after the status");
    assert_eq!(r.len(), 1, "nothing after the loss is sent as if complete");
    assert_eq!((r[0].kind, r[0].xid), (MessageType::LeaseQueryDone, 4));
    assert_eq!(status_of(&r[0]), Some(Status::DataMissing as u8));
    assert!(r[0].status.as_ref().is_some_and(|s| s.1.contains("17")));
    assert_eq!(stats.snapshot().cut_off, 1);

    // Catching up with a small queue: more changes for scanned records than it holds.
    let f = fx(BIG);
    let first = Ipv4Addr::new(10, 1, 0, 1);
    let c = bind(&f.table, first, 1, b"r", 9000);
    let mut s = Session::new(true, SERVER);
    s.set_queue_limit(4);
    let mut src = Src {
        inject: (0..5).map(|_| (300, c)).collect(),
        ..Src::default()
    };
    let q = build_active_query(5, &QuerySpec::All, Some(0));
    let (r, closed, _) = drive(&mut s, &f.table, &q, &mut src, &stats);
    assert!(closed);
    let last = r.last().expect("DONE");
    assert_eq!(last.kind, MessageType::LeaseQueryDone);
    assert_eq!(status_of(last), Some(Status::DataMissing as u8));
    assert_eq!(stats.snapshot().cut_off, 2);
}

#[test]
fn active_leasequery_refusals_connectionactive_tls_notallowed_malformed_terminated() {
    let f = fx(CFG);
    let stats = BulkStats::default();
    let mut s = Session::new(true, SERVER);
    let mut src = Src::default();
    let mut input = build_active_query(1, &QuerySpec::All, None);
    // While subscribed: a bulk query and a DHCPTLS.
    input.extend(build_query(2, &QuerySpec::All, None, None));
    input.extend(build_tls_request(3));
    let (r, closed, _) = drive(&mut s, &f.table, &input, &mut src, &stats);
    assert!(!closed && s.subscribed());
    let got: Vec<(u32, MessageType, Option<u8>)> =
        r.iter().map(|m| (m.xid, m.kind, status_of(m))).collect();
    assert_eq!(
        got,
        [
            (
                2,
                MessageType::LeaseQueryDone,
                Some(Status::ConnectionActive as u8)
            ),
            (
                3,
                MessageType::Tls,
                Some(Status::TlsConnectionRefused as u8)
            ),
        ]
    );
    // Shutdown ends the subscription with QueryTerminated for its xid.
    s.terminate();
    let (r, closed, _) = drive(&mut s, &f.table, &[], &mut src, &stats);
    assert!(closed);
    assert_eq!(
        (r[0].xid, status_of(&r[0])),
        (1, Some(Status::QueryTerminated as u8))
    );

    // A requestor not allowed: NotAllowed, closed, never subscribed.
    let mut s = Session::new(false, SERVER);
    let (r, closed, subs) = drive(
        &mut s,
        &f.table,
        &build_active_query(5, &QuerySpec::All, None),
        &mut src,
        &stats,
    );
    assert!(closed && subs == 0);
    assert_eq!(status_of(&r[0]), Some(Status::NotAllowed as u8));

    // By MAC (only relay-id / remote-id filter an active query): MalformedQuery.
    let mut s = Session::new(true, SERVER);
    let mut q = build_active_query(
        6,
        &QuerySpec::Mac {
            htype: 1,
            hw: &[2, 0, 0, 0, 0, 1],
        },
        None,
    );
    let (r, closed, subs) = drive(&mut s, &f.table, &q, &mut src, &stats);
    assert!(!closed && subs == 0 && !s.subscribed());
    assert_eq!(status_of(&r[0]), Some(Status::MalformedQuery as u8));
    // A bad query-start-time length: MalformedQuery too.
    q = build_active_query(7, &QuerySpec::All, Some(5));
    let at = q.iter().rposition(|&b| b == 154).expect("option 154");
    q[at + 1] = 3;
    q.remove(at + 2);
    let len = (q.len() - 2) as u16;
    q[..2].copy_from_slice(&len.to_be_bytes());
    let (r, _, subs) = drive(&mut s, &f.table, &q, &mut src, &stats);
    assert_eq!(subs, 0);
    assert_eq!(status_of(&r[0]), Some(Status::MalformedQuery as u8));
    // A DHCPTLS on a fresh connection: refused, the connection stays (in clear).
    let (r, closed, _) = drive(&mut s, &f.table, &build_tls_request(8), &mut src, &stats);
    assert!(!closed);
    assert_eq!(
        (r[0].kind, status_of(&r[0])),
        (MessageType::Tls, Some(Status::TlsConnectionRefused as u8))
    );
    let st = stats.snapshot();
    assert_eq!(
        (st.connection_active, st.tls_refused, st.subscriptions),
        (1, 2, 1)
    );
}

#[test]
fn active_leasequery_reportable_changes_and_changed_since() {
    let mut free = Lease::free(Ipv4Addr::new(10, 0, 0, 1));
    let mut act = free;
    act.state = LeaseState::Active;
    let mut off = free;
    off.state = LeaseState::Offered;
    let mut rel = free;
    rel.state = LeaseState::Released;
    assert!(reportable(&free, &act) && reportable(&act, &act) && reportable(&act, &rel));
    assert!(!reportable(&free, &off) && !reportable(&off, &free) && !reportable(&rel, &free));
    // An address freed after its lease ran out changed at its end.
    free.start = 100;
    free.cltt = 100;
    free.expiry = 700;
    assert_eq!(changed_since(&free, 1000), 700);
    assert_eq!(
        changed_since(&free, 500),
        100,
        "an end not yet reached is no change"
    );
}

#[test]
fn active_leasequery_tls_offered_dhcptls_first_then_the_session_goes_on_inside_tls() {
    let f = fx(CFG);
    let stats = BulkStats::default();
    let mut s = Session::new(true, SERVER);
    s.set_tls(TlsMode::Offer);
    let tls = build_tls_request(1);
    // The requestor's ClientHello follows its DHCPTLS at once: not a frame, not taken.
    let hello = b"\x16\x03\x01\x00\x05hello";
    let mut input = tls.clone();
    input.extend_from_slice(hello);
    assert_eq!(s.feed(&input, &stats), Ok(tls.len()), "stops after DHCPTLS");
    let mut out = vec![0u8; MIN_OUT];
    let Poll::Send(n) = s.poll(&f.table, NOW, &mut out, &stats) else {
        panic!("DHCPTLS answered")
    };
    assert_eq!(parse_tls_answer(&out[2..n], 1), Ok(TlsAnswer::Start));
    assert_eq!(s.poll(&f.table, NOW, &mut out, &stats), Poll::StartTls);
    assert_eq!(
        s.feed(hello, &stats),
        Ok(0),
        "nothing taken during the handshake"
    );
    assert_eq!(s.poll(&f.table, NOW, &mut out, &stats), Poll::Idle);
    assert!(!s.in_tls());
    s.tls_established();
    assert!(s.in_tls());
    // Inside TLS: a subscription, then a second DHCPTLS is refused (the subscription goes on).
    let mut src = Src::default();
    let mut input = build_active_query(2, &QuerySpec::All, None);
    input.extend(build_tls_request(3));
    let (r, closed, subs) = drive(&mut s, &f.table, &input, &mut src, &stats);
    assert!(!closed && subs == 1 && s.subscribed());
    assert_eq!(r.len(), 1, "{r:?}");
    assert_eq!(
        (r[0].xid, r[0].kind, status_of(&r[0])),
        (
            3,
            MessageType::Tls,
            Some(Status::TlsConnectionRefused as u8)
        )
    );
    assert!(r[0]
        .status
        .as_ref()
        .is_some_and(|s| s.1.contains("already")));
    let st = stats.snapshot();
    assert_eq!(
        (st.tls_accepted, st.tls_refused, st.tls_required),
        (1, 1, 0)
    );
}

#[test]
fn active_leasequery_tls_required_refuses_queries_in_clear_and_a_late_dhcptls() {
    let f = fx(CFG);
    let stats = BulkStats::default();
    let mut src = Src::default();
    // Required, an active leasequery in clear: NotAllowed, closed, never subscribed.
    let mut s = Session::new(true, SERVER);
    s.set_tls(TlsMode::Require);
    let (r, closed, subs) = drive(
        &mut s,
        &f.table,
        &build_active_query(1, &QuerySpec::All, None),
        &mut src,
        &stats,
    );
    assert!(closed && subs == 0, "{r:?}");
    assert_eq!(
        (r[0].kind, status_of(&r[0])),
        (MessageType::LeaseQueryDone, Some(Status::NotAllowed as u8))
    );
    assert!(r[0]
        .status
        .as_ref()
        .is_some_and(|s| s.1.contains("TLS required")));
    // A bulk query in clear too.
    let mut s = Session::new(true, SERVER);
    s.set_tls(TlsMode::Require);
    let (r, closed, _) = drive(
        &mut s,
        &f.table,
        &build_query(2, &QuerySpec::All, None, None),
        &mut src,
        &stats,
    );
    assert!(closed && r.len() == 1 && status_of(&r[0]) == Some(Status::NotAllowed as u8));
    // Required, DHCPTLS first: accepted; inside TLS the query is answered.
    let mut s = Session::new(true, SERVER);
    s.set_tls(TlsMode::Require);
    let mut input = build_tls_request(3);
    input.extend(build_query(4, &QuerySpec::All, None, None));
    let (r, closed, _) = drive(&mut s, &f.table, &input, &mut src, &stats);
    assert!(!closed && s.in_tls());
    assert_eq!((r[0].kind, status_of(&r[0])), (MessageType::Tls, None));
    assert_eq!(r.len(), 1 + 20 + 1, "DHCPTLS, every address, DONE");
    assert_eq!(status_of(&r[21]), None, "DONE Success");
    // Offered, DHCPTLS after a query: refused, the connection goes on in clear.
    let mut s = Session::new(true, SERVER);
    s.set_tls(TlsMode::Offer);
    let mut input = build_query(5, &QuerySpec::All, None, None);
    input.extend(build_tls_request(6));
    let (r, closed, _) = drive(&mut s, &f.table, &input, &mut src, &stats);
    assert!(!closed && !s.in_tls());
    let last = r.last().expect("answers");
    assert_eq!(
        (last.xid, last.kind, status_of(last)),
        (
            6,
            MessageType::Tls,
            Some(Status::TlsConnectionRefused as u8)
        )
    );
    // Not allowed by address: NotAllowed for the DHCPTLS itself (the address check first).
    let mut s = Session::new(false, SERVER);
    s.set_tls(TlsMode::Require);
    let (r, closed, _) = drive(&mut s, &f.table, &build_tls_request(7), &mut src, &stats);
    assert!(closed && !s.in_tls());
    assert_eq!(
        (r[0].kind, status_of(&r[0])),
        (MessageType::LeaseQueryDone, Some(Status::NotAllowed as u8))
    );
    let st = stats.snapshot();
    assert_eq!(
        (st.tls_required, st.tls_accepted, st.tls_refused),
        (2, 1, 1)
    );
}

#[test]
fn active_leasequery_tls_answer_parser_reads_start_refusal_and_errors() {
    let f = fx(CFG);
    let stats = BulkStats::default();
    let mut out = vec![0u8; MIN_OUT];
    // Off: refused with the server's reason.
    let mut s = Session::new(true, SERVER);
    s.feed(&build_tls_request(9), &stats).expect("frame");
    let Poll::Send(n) = s.poll(&f.table, NOW, &mut out, &stats) else {
        panic!("answered")
    };
    assert_eq!(
        parse_tls_answer(&out[2..n], 9),
        Ok(TlsAnswer::Refused("TLS is not offered".into()))
    );
    assert!(parse_tls_answer(&out[2..n], 8)
        .unwrap_err()
        .contains("not the DHCPTLS's"));
    // A NotAllowed DONE is an error naming the status.
    let mut s = Session::new(false, SERVER);
    s.feed(&build_tls_request(9), &stats).expect("frame");
    let Poll::Send(n) = s.poll(&f.table, NOW, &mut out, &stats) else {
        panic!("answered")
    };
    let e = parse_tls_answer(&out[2..n], 9).unwrap_err();
    assert!(e.contains("NotAllowed"), "{e}");
    assert!(parse_tls_answer(b"\x00", 9).is_err());
}
