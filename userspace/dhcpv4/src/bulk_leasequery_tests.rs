//! RFC 6926 bulk leasequery sessions over a real lease table: every query
//! type, time windows, the stream framing, bad input and the bounds.

use std::net::Ipv4Addr;
use std::sync::Arc;

use lease_store::{ClientKey, LeaseState, LeaseTable};

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

/// Option 82 with a relay-id and a remote-id.
fn opt82(relay: &[u8], remote: &[u8]) -> Vec<u8> {
    let mut v = vec![12, relay.len() as u8];
    v.extend_from_slice(relay);
    v.extend_from_slice(&[2, remote.len() as u8]);
    v.extend_from_slice(remote);
    v
}

/// Binds address `ip` to MAC 02:..:mac with option 82 `ri`, in `state`, started at `start`.
fn bind(t: &LeaseTable, ip: Ipv4Addr, mac: u8, ri: &[u8], state: LeaseState, start: u32) {
    let slot = t.slot_of(ip).expect("pool address");
    t.update(slot, |l| {
        l.state = state;
        l.client = ClientKey::from_hw(1, &[2, 0, 0, 0, 0, mac]);
        l.htype = 1;
        l.hlen = 6;
        l.chaddr[..6].copy_from_slice(&[2, 0, 0, 0, 0, mac]);
        l.start = start;
        l.cltt = start;
        l.expiry = if state == LeaseState::Expired {
            start + 10
        } else {
            NOW + 3600
        };
        assert!(l.set_relay_agent_info(ri));
    });
}

fn ip(last: u8) -> Ipv4Addr {
    Ipv4Addr::new(10, 0, 0, last)
}

/// Feeds `input` whole and polls until the session idles or closes; returns the
/// answers and whether it closed.
fn run(s: &mut Session, t: &LeaseTable, input: &[u8], stats: &BulkStats) -> (Vec<Reply>, bool) {
    let mut out = vec![0u8; MIN_OUT];
    let mut replies = Vec::new();
    let mut rest = input;
    loop {
        let n = s.feed(rest, stats).expect("well-framed input");
        rest = &rest[n..];
        match s.poll(t, NOW, &mut out, stats) {
            Poll::Send(n) => {
                let len = usize::from(u16::from_be_bytes([out[0], out[1]]));
                assert_eq!(len + 2, n, "length prefix matches the message");
                replies.push(parse_reply(&out[2..n]).expect("answer parses"));
            }
            Poll::Again => {}
            Poll::Idle if rest.is_empty() => return (replies, false),
            Poll::Idle => {}
            Poll::Close => return (replies, true),
            Poll::Subscribe => {}
            Poll::StartTls => s.tls_established(),
        }
    }
}

fn query(t: &LeaseTable, xid: u32, q: QuerySpec<'_>, start: Option<u32>) -> Vec<Reply> {
    let stats = BulkStats::default();
    let mut s = Session::new(true, SERVER);
    let (r, closed) = run(&mut s, t, &build_query(xid, &q, start, None), &stats);
    assert!(!closed);
    assert!(
        r.iter().all(|m| m.xid == xid),
        "every answer echoes the xid"
    );
    let last = r.last().expect("a DONE at least");
    assert_eq!(last.kind, MessageType::LeaseQueryDone);
    assert_eq!(last.status, None, "success carries no status");
    r
}

fn addrs(r: &[Reply], kind: MessageType) -> Vec<Ipv4Addr> {
    r.iter()
        .filter(|m| m.kind == kind)
        .map(|m| m.addr)
        .collect()
}

#[test]
fn bulk_leasequery_by_relay_id_returns_that_relays_active_bindings_only() {
    let f = fx(CFG);
    bind(
        &f.table,
        ip(10),
        1,
        &opt82(b"olt-1", b"cpe-1"),
        LeaseState::Active,
        900,
    );
    bind(
        &f.table,
        ip(11),
        2,
        &opt82(b"olt-2", b"cpe-2"),
        LeaseState::Active,
        900,
    );
    bind(
        &f.table,
        ip(12),
        3,
        &opt82(b"olt-1", b"cpe-3"),
        LeaseState::Active,
        900,
    );
    bind(
        &f.table,
        ip(13),
        4,
        &opt82(b"olt-1", b"cpe-4"),
        LeaseState::Expired,
        900,
    );
    // A relay-id that is a prefix of another must not match it.
    bind(
        &f.table,
        ip(14),
        5,
        &opt82(b"olt-10", b"cpe-5"),
        LeaseState::Active,
        900,
    );
    let r = query(&f.table, 7, QuerySpec::RelayId(b"olt-1"), None);
    assert_eq!(addrs(&r, MessageType::LeaseActive), vec![ip(10), ip(12)]);
    assert_eq!(r.len(), 3);
    let a = &r[0];
    assert_eq!(a.hw, vec![2, 0, 0, 0, 0, 1]);
    assert_eq!(a.state, Some(DhcpState::Active as u8));
    assert_eq!(a.lease_time, Some(3600));
    assert_eq!(a.relay_agent_info, Some(opt82(b"olt-1", b"cpe-1")));
}

#[test]
fn bulk_leasequery_by_remote_id_mac_and_client_id() {
    let f = fx(CFG);
    bind(
        &f.table,
        ip(10),
        1,
        &opt82(b"olt-1", b"cpe-1"),
        LeaseState::Active,
        900,
    );
    bind(
        &f.table,
        ip(11),
        2,
        &opt82(b"olt-1", b"cpe-2"),
        LeaseState::Active,
        900,
    );
    let r = query(&f.table, 1, QuerySpec::RemoteId(b"cpe-2"), None);
    assert_eq!(addrs(&r, MessageType::LeaseActive), vec![ip(11)]);
    let r = query(
        &f.table,
        2,
        QuerySpec::Mac {
            htype: 1,
            hw: &[2, 0, 0, 0, 0, 1],
        },
        None,
    );
    assert_eq!(addrs(&r, MessageType::LeaseActive), vec![ip(10)]);
    // A client keyed by option 61.
    let slot = f.table.slot_of(ip(15)).expect("pool");
    f.table.update(slot, |l| {
        l.state = LeaseState::Active;
        l.client = ClientKey::from_client_id(b"\x00modem-9");
        l.start = 900;
        l.expiry = NOW + 60;
    });
    let r = query(&f.table, 3, QuerySpec::ClientId(b"\x00modem-9"), None);
    assert_eq!(addrs(&r, MessageType::LeaseActive), vec![ip(15)]);
    assert_eq!(r[0].client_id.as_deref(), Some(&b"\x00modem-9"[..]));
    let r = query(&f.table, 4, QuerySpec::ClientId(b"\x00nobody"), None);
    assert_eq!(r.len(), 1, "no binding: DONE only");
}

#[test]
fn bulk_leasequery_all_reports_every_configured_address() {
    let f = fx(CFG);
    bind(&f.table, ip(10), 1, b"", LeaseState::Active, 900);
    bind(&f.table, ip(11), 2, b"", LeaseState::Released, 900);
    let r = query(&f.table, 9, QuerySpec::All, None);
    assert_eq!(r.len(), 21, "20 addresses and DONE");
    assert_eq!(addrs(&r, MessageType::LeaseActive), vec![ip(10)]);
    let un = addrs(&r, MessageType::LeaseUnassigned);
    assert_eq!(un.len(), 19);
    let released = r.iter().find(|m| m.addr == ip(11)).expect("reported");
    assert_eq!(released.state, Some(DhcpState::Released as u8));
    let free = r.iter().find(|m| m.addr == ip(20)).expect("reported");
    assert_eq!(free.state, Some(DhcpState::Available as u8));
}

#[test]
fn bulk_leasequery_query_start_time_reports_changes_since_including_lost_bindings() {
    let f = fx(CFG);
    bind(
        &f.table,
        ip(10),
        1,
        &opt82(b"r", b"a"),
        LeaseState::Active,
        500,
    );
    bind(
        &f.table,
        ip(11),
        2,
        &opt82(b"r", b"b"),
        LeaseState::Active,
        5000,
    );
    // Expired at 5010 (start 5000 + 10).
    bind(
        &f.table,
        ip(12),
        3,
        &opt82(b"r", b"c"),
        LeaseState::Expired,
        5000,
    );
    bind(
        &f.table,
        ip(13),
        4,
        &opt82(b"r", b"d"),
        LeaseState::Expired,
        100,
    );
    let r = query(&f.table, 5, QuerySpec::RelayId(b"r"), Some(4000));
    assert_eq!(addrs(&r, MessageType::LeaseActive), vec![ip(11)]);
    assert_eq!(addrs(&r, MessageType::LeaseUnassigned), vec![ip(12)]);
    // With an end time, only what changed in the window.
    let stats = BulkStats::default();
    let mut s = Session::new(true, SERVER);
    let q = build_query(6, &QuerySpec::RelayId(b"r"), Some(0), Some(600));
    let (r, _) = run(&mut s, &f.table, &q, &stats);
    assert_eq!(addrs(&r, MessageType::LeaseActive), vec![ip(10)]);
    assert_eq!(addrs(&r, MessageType::LeaseUnassigned), vec![ip(13)]);
}

fn status_of(r: &Reply) -> Option<u8> {
    r.status.as_ref().map(|s| s.0)
}

#[test]
fn bulk_leasequery_malformed_queries_get_done_with_malformedquery() {
    let f = fx(CFG);
    let stats = BulkStats::default();
    let mut s = Session::new(true, SERVER);
    // Two query types (MAC and relay-id).
    let mut two = build_query(1, &QuerySpec::RelayId(b"r"), None, None);
    two[2 + 1] = 1;
    two[2 + 2] = 6;
    two[2 + 28] = 2;
    two[2 + 33] = 9;
    // ciaddr set.
    let mut by_ip = build_query(2, &QuerySpec::All, None, None);
    by_ip[2 + 12..2 + 16].copy_from_slice(&[10, 0, 0, 10]);
    // Not a DHCP message type at all (option 53 missing: the junk's xid 3).
    let mut discover = build_query(3, &QuerySpec::All, None, None);
    discover[2 + 240] = 0; // option 53 -> pad
    discover[2 + 241] = 0;
    discover[2 + 242] = 0;
    // Start after end.
    let window = build_query(4, &QuerySpec::All, Some(10), Some(5));
    // 10 bytes of junk with an xid.
    let junk = [0, 10, 1, 1, 6, 0, 0, 0, 0, 5, 0, 0];
    let mut input = Vec::new();
    for q in [&two[..], &by_ip, &discover, &window, &junk] {
        input.extend_from_slice(q);
    }
    let (r, closed) = run(&mut s, &f.table, &input, &stats);
    assert!(!closed, "a malformed query does not end the connection");
    assert_eq!(r.len(), 5, "{r:?}");
    for (i, m) in r.iter().enumerate() {
        assert_eq!(m.xid, i as u32 + 1);
        assert_eq!(m.kind, MessageType::LeaseQueryDone);
        assert_eq!(status_of(m), Some(Status::MalformedQuery as u8), "{m:?}");
    }
    let snap = stats.snapshot();
    assert_eq!((snap.queries, snap.malformed, snap.done), (5, 5, 0));
    // The session still answers a good query after them.
    let (r, _) = run(
        &mut s,
        &f.table,
        &build_query(6, &QuerySpec::All, None, None),
        &stats,
    );
    assert_eq!(r.len(), 21);
}

#[test]
fn bulk_leasequery_unsupported_message_type_closes_the_connection() {
    // RFC 7724 8.1.1 (updating RFC 6926): a message type not supported over TCP (here a
    // DISCOVER, then an RFC 4388 LEASEQUERY) closes the connection; what follows is not read.
    let f = fx(CFG);
    for t in [MessageType::Discover as u8, MessageType::LeaseQuery as u8] {
        let stats = BulkStats::default();
        let mut s = Session::new(true, SERVER);
        let mut bad = build_query(3, &QuerySpec::All, None, None);
        bad[2 + 242] = t;
        let mut input = bad;
        input.extend(build_query(4, &QuerySpec::All, None, None));
        let (r, closed) = run(&mut s, &f.table, &input, &stats);
        assert!(closed, "type {t}: connection closed");
        assert_eq!(r.len(), 1, "type {t}: only the refusal: {r:?}");
        assert_eq!((r[0].xid, r[0].kind), (3, MessageType::LeaseQueryDone));
        assert_eq!(status_of(&r[0]), Some(Status::MalformedQuery as u8));
        assert!(
            r[0].status.as_ref().is_some_and(|s| s.1.contains("8.1.1")),
            "{r:?}"
        );
        assert_eq!(stats.snapshot().malformed, 1);
        assert!(!s.wants_input());
    }
}

#[test]
fn bulk_leasequery_not_allowed_answers_notallowed_then_closes() {
    let f = fx(CFG);
    bind(
        &f.table,
        ip(10),
        1,
        &opt82(b"r", b"a"),
        LeaseState::Active,
        900,
    );
    let stats = BulkStats::default();
    let mut s = Session::new(false, SERVER);
    let mut input = build_query(3, &QuerySpec::All, None, None);
    input.extend(build_query(4, &QuerySpec::All, None, None));
    let (r, closed) = run(&mut s, &f.table, &input, &stats);
    assert!(closed);
    assert_eq!(r.len(), 1, "no binding leaks: {r:?}");
    assert_eq!(r[0].xid, 3);
    assert_eq!(status_of(&r[0]), Some(Status::NotAllowed as u8));
    assert_eq!(stats.snapshot().not_allowed, 1);
    assert!(!s.wants_input());
}

#[test]
fn bulk_leasequery_bad_frame_length_is_fatal() {
    let stats = BulkStats::default();
    let mut s = Session::new(true, SERVER);
    assert_eq!(
        s.feed(&[0, 0], &stats),
        Err(Fatal::FrameLength { len: 0, at: 0 })
    );
    let mut s = Session::new(true, SERVER);
    let mut input = build_query(1, &QuerySpec::All, None, None);
    let first = input.len() as u64;
    input.extend_from_slice(&((MAX_MESSAGE + 1) as u16).to_be_bytes());
    assert_eq!(
        s.feed(&input, &stats),
        Err(Fatal::FrameLength {
            len: MAX_MESSAGE + 1,
            at: first
        })
    );
}

#[test]
fn bulk_leasequery_stream_split_anywhere_gives_the_same_answers() {
    let f = fx(CFG);
    bind(
        &f.table,
        ip(10),
        1,
        &opt82(b"r", b"a"),
        LeaseState::Active,
        900,
    );
    let mut input = build_query(1, &QuerySpec::RelayId(b"r"), None, None);
    input.extend(build_query(2, &QuerySpec::RemoteId(b"a"), None, None));
    let stats = BulkStats::default();
    let mut s = Session::new(true, SERVER);
    let mut out = vec![0u8; MIN_OUT];
    let mut got = Vec::new();
    for b in &input {
        assert_eq!(s.feed(std::slice::from_ref(b), &stats), Ok(1));
        while let Poll::Send(n) = s.poll(&f.table, NOW, &mut out, &stats) {
            got.push(parse_reply(&out[2..n]).expect("parses"));
        }
    }
    let kinds: Vec<_> = got.iter().map(|m| (m.xid, m.kind)).collect();
    assert_eq!(
        kinds,
        vec![
            (1, MessageType::LeaseActive),
            (1, MessageType::LeaseQueryDone),
            (2, MessageType::LeaseActive),
            (2, MessageType::LeaseQueryDone)
        ]
    );
}

#[test]
fn bulk_leasequery_queue_is_bounded_and_holds_input_back() {
    let f = fx(CFG);
    let stats = BulkStats::default();
    let mut s = Session::new(true, SERVER);
    let mut input = Vec::new();
    for xid in 0..(MAX_QUEUED as u32 + 3) {
        input.extend(build_query(xid, &QuerySpec::All, None, None));
    }
    let one = input.len() / (MAX_QUEUED + 3);
    let taken = s.feed(&input, &stats).expect("framed");
    assert_eq!(taken, one * MAX_QUEUED, "takes only what the queue holds");
    assert!(!s.wants_input());
    assert_eq!(s.feed(&input[taken..], &stats), Ok(0));
    // Answering frees the queue; all queries end up answered in order.
    let (r, _) = run(&mut s, &f.table, &input[taken..], &stats);
    let dones: Vec<u32> = r
        .iter()
        .filter(|m| m.kind == MessageType::LeaseQueryDone)
        .map(|m| m.xid)
        .collect();
    assert_eq!(dones, (0..(MAX_QUEUED as u32 + 3)).collect::<Vec<_>>());
}

#[test]
fn bulk_leasequery_scan_is_resumable_and_bounded_per_poll() {
    let f = fx(BIG);
    let last = Ipv4Addr::new(10, 1, 32, 0);
    let slot = f.table.slot_of(last).expect("pool");
    f.table.update(slot, |l| {
        l.state = LeaseState::Active;
        l.client = ClientKey::from_hw(1, &[2, 0, 0, 0, 0, 1]);
        l.htype = 1;
        l.hlen = 6;
        l.chaddr[..6].copy_from_slice(&[2, 0, 0, 0, 0, 1]);
        l.start = 900;
        l.expiry = NOW + 10;
        assert!(l.set_relay_agent_info(&opt82(b"r", b"a")));
    });
    let stats = BulkStats::default();
    let mut s = Session::new(true, SERVER);
    let q = build_query(1, &QuerySpec::RelayId(b"r"), None, None);
    s.feed(&q, &stats).expect("framed");
    let mut out = vec![0u8; MIN_OUT];
    let mut polls = Vec::new();
    loop {
        let p = s.poll(&f.table, NOW, &mut out, &stats);
        polls.push(p);
        if let Poll::Send(n) = p {
            if parse_reply(&out[2..n]).expect("parses").kind == MessageType::LeaseQueryDone {
                break;
            }
        }
    }
    let again = polls.iter().filter(|p| **p == Poll::Again).count();
    // 8,192 records, the match last: one full budget, then the match, then DONE.
    assert_eq!(SCAN_BUDGET, 4096);
    assert_eq!(again, 1, "{polls:?}");
    assert_eq!(polls.len(), 3, "{polls:?}");
    assert_eq!(stats.snapshot().active, 1);
    // A terminated session answers QueryTerminated and closes.
    let mut s = Session::new(true, SERVER);
    s.feed(&q, &stats).expect("framed");
    assert_eq!(s.poll(&f.table, NOW, &mut out, &stats), Poll::Again);
    s.terminate();
    let Poll::Send(n) = s.poll(&f.table, NOW, &mut out, &stats) else {
        panic!("a DONE after terminate");
    };
    let m = parse_reply(&out[2..n]).expect("parses");
    assert_eq!(status_of(&m), Some(Status::QueryTerminated as u8));
    assert_eq!(s.poll(&f.table, NOW, &mut out, &stats), Poll::Close);
}

/// Random streams (framed and unframed, mutated good queries) never panic: each complete
/// frame is answered (a DONE at least, with its xid when it has one) or the stream is
/// refused as a whole.
#[test]
fn bulk_leasequery_hostile_streams_are_answered_or_refused_never_panic() {
    let f = fx(CFG);
    bind(
        &f.table,
        ip(10),
        1,
        &opt82(b"r", b"a"),
        LeaseState::Active,
        900,
    );
    let mut seed = 0x9e37_79b9_7f4a_7c15u64;
    let mut rnd = move || {
        seed ^= seed << 13;
        seed ^= seed >> 7;
        seed ^= seed << 17;
        seed
    };
    let good = [
        build_query(1, &QuerySpec::RelayId(b"r"), Some(5), Some(50_000)),
        build_query(2, &QuerySpec::All, None, None),
        build_query(3, &QuerySpec::ClientId(b"\x01abc"), None, None),
    ];
    let mut out = vec![0u8; MIN_OUT];
    for round in 0..3000 {
        let stats = BulkStats::default();
        let mut s = Session::new(round % 7 != 0, SERVER);
        let mut input = Vec::new();
        for _ in 0..(rnd() % 4 + 1) {
            let mut q = good[(rnd() % 3) as usize].clone();
            // Mutate a few bytes of the message (never the length prefix: those frames
            // are the fatal case, tested apart).
            for _ in 0..(rnd() % 6) {
                let at = 2 + (rnd() as usize) % (q.len() - 2);
                q[at] = rnd() as u8;
            }
            if rnd() % 5 == 0 {
                // Cut the message short and say so in the prefix.
                let keep = 1 + (rnd() as usize) % (q.len() - 2);
                q.truncate(2 + keep);
                q[..2].copy_from_slice(&(keep as u16).to_be_bytes());
            }
            input.extend_from_slice(&q);
        }
        if rnd() % 10 == 0 {
            // Junk, prefix included.
            for _ in 0..(rnd() % 64) {
                input.push(rnd() as u8);
            }
        }
        let mut rest = &input[..];
        let mut dones = 0;
        let mut fatal = false;
        for _ in 0..100_000 {
            match s.feed(rest, &stats) {
                Ok(n) => rest = &rest[n..],
                Err(_) => {
                    fatal = true;
                    break;
                }
            }
            match s.poll(&f.table, NOW, &mut out, &stats) {
                Poll::Send(n) => {
                    let m = parse_reply(&out[2..n]).expect("our answers parse");
                    if m.kind == MessageType::LeaseQueryDone {
                        dones += 1;
                    }
                }
                Poll::Again | Poll::Subscribe | Poll::StartTls => {}
                Poll::Idle | Poll::Close if rest.is_empty() || !s.wants_input() => break,
                Poll::Idle | Poll::Close => {}
            }
        }
        let q = stats.snapshot().queries;
        // A subscription (RFC 7724) has no DONE until it ends.
        let subs = stats.snapshot().subscriptions;
        if !fatal && s.wants_input() {
            assert_eq!(dones + subs, q, "round {round}: every query gets its DONE");
        }
        assert!(dones <= q, "round {round}");
    }
}
