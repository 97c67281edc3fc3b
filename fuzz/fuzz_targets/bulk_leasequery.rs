//! Raw bytes as the TCP stream of an RFC 6926 bulk leasequery connection, through the
//! sans-IO session over a small lease table (made once per process: the session only reads
//! it). The first input byte chooses how the stream is cut into reads (1..=64 bytes each) and
//! whether the peer is allowed. Nothing may panic; every message the session writes has a
//! correct length prefix and parses; the session ends (idle, closed or a fatal frame) within a
//! bounded number of polls.
//!
//! RFC 7724 active leasequery: a stream that subscribes (DHCPACTIVELEASEQUERY) gets binding
//! changes from a queue made of the input too (slot numbers from the stream bytes, in range
//! or not, over copies of the table's records; bit 0x80 of the first byte marks changes as
//! lost, which must cut the subscriber off), racing its catch-up scan.
//!
//! RFC 7724 TLS: the second input byte chooses what the server offers (bits 0-1: off, offer,
//! require, require). A `StartTls` (taken as a finished handshake: the rest of the stream is
//! what TLS carries) comes only when TLS is offered, once, right after a DHCPTLS answer that
//! the requestor's parser reads as Start; under "require" no binding, status or subscription
//! goes out before it; every DHCPTLS answer parses as Start or Refused. The requestor's
//! DHCPTLS answer parser also reads the raw stream.
#![no_main]

use std::net::Ipv4Addr;
use std::sync::{Arc, OnceLock};

use lease_store::{ClientKey, LeaseState, LeaseTable, OpenOptions, PoolSpec};
use libfuzzer_sys::fuzz_target;
use xdhcpd_dhcpv4::bulk_leasequery::{
    parse_reply, parse_tls_answer, BulkStats, Change, ChangeSource, Poll, Session, TlsAnswer,
    TlsMode, MIN_OUT,
};
use xdhcpd_dhcpv4::wire::MessageType;
use xdhcpd_fuzz::scratch_dir;

const NOW: u32 = 1_800_000_000;

fn table() -> &'static (tempfile::TempDir, Arc<LeaseTable>) {
    static T: OnceLock<(tempfile::TempDir, Arc<LeaseTable>)> = OnceLock::new();
    T.get_or_init(|| {
        let dir = scratch_dir();
        let pools = [PoolSpec {
            id: 1,
            first: Ipv4Addr::new(10, 0, 0, 10),
            last: Ipv4Addr::new(10, 0, 0, 41),
        }];
        let (t, _) = LeaseTable::open(
            &dir.path().join("l.db"),
            &pools,
            &OpenOptions {
                now: NOW,
                ..OpenOptions::default()
            },
        )
        .expect("lease table");
        for i in 0..16u8 {
            let slot = t.slot_of(Ipv4Addr::new(10, 0, 0, 10 + i)).expect("pool");
            t.update(slot, |l| {
                l.state = if i % 4 == 3 {
                    LeaseState::Expired
                } else {
                    LeaseState::Active
                };
                l.client = if i % 2 == 0 {
                    ClientKey::from_hw(1, &[2, 0, 0, 0, 0, i])
                } else {
                    ClientKey::from_client_id(&[1, 2, 0, 0, 0, 0, i])
                };
                l.htype = 1;
                l.hlen = 6;
                l.chaddr[..6].copy_from_slice(&[2, 0, 0, 0, 0, i]);
                l.start = NOW - 100 * u32::from(i);
                l.cltt = l.start;
                l.expiry = NOW + 600 - 300 * u32::from(i % 4);
                l.set_relay_agent_info(&[12, 1, b'a' + i % 3, 2, 1, b'0' + i]);
            });
        }
        (dir, Arc::new(t))
    })
}

/// Changes made of the input: one per stream byte (at most 64).
struct Src {
    changes: Vec<Change>,
    lost: u64,
}

impl ChangeSource for Src {
    fn next_change(&mut self) -> Option<Change> {
        self.changes.pop()
    }
    fn lost(&self) -> u64 {
        self.lost
    }
}

fuzz_target!(|data: &[u8]| {
    let [first, second, stream @ ..] = data else {
        return;
    };
    let first = *first;
    let (_, t) = table();
    let chunk = usize::from(first & 0x3f) + 1;
    let stats = BulkStats::default();
    let mut s = Session::new(first & 0x40 == 0, Ipv4Addr::new(10, 0, 0, 1));
    let tls = match second & 3 {
        0 => TlsMode::Off,
        1 => TlsMode::Offer,
        _ => TlsMode::Require,
    };
    s.set_tls(tls);
    let _ = parse_tls_answer(stream, 0x1234);
    let mut tls_started = false;
    let mut last_tls_start = false;
    let mut out = vec![0u8; MIN_OUT];
    let mut rest = stream;
    let mut src = Src {
        changes: stream
            .iter()
            .take(64)
            .filter_map(|&b| {
                let rec = t.slot(u32::from(b % 32))?;
                Some(Change {
                    slot: u32::from(b).wrapping_mul(0x0101_0101) >> (b % 8),
                    lease: t.read(rec),
                })
            })
            .collect(),
        lost: u64::from(first >> 7),
    };
    let mut subscribed = false;
    // Each poll either sends, scans up to the budget, or waits; the table is 32 records,
    // the queue is bounded and so are the changes, so this many polls is plenty.
    for _ in 0..(256 + 64 * stream.len()) {
        let n = match s.feed(&rest[..rest.len().min(chunk)], &stats) {
            Ok(n) => n,
            Err(_) => return,
        };
        rest = &rest[n..];
        match s.poll_with(t, NOW, &mut out, &stats, &mut src) {
            Poll::Send(n) => {
                assert!(n >= 2 && n <= out.len());
                let len = usize::from(u16::from_be_bytes([out[0], out[1]]));
                assert_eq!(len + 2, n, "length prefix");
                let r = parse_reply(&out[2..n]).expect("the session's own message parses");
                last_tls_start = false;
                if r.kind == MessageType::Tls {
                    let a = parse_tls_answer(&out[2..n], r.xid).expect("a DHCPTLS answer");
                    last_tls_start = a == TlsAnswer::Start;
                    assert!(tls != TlsMode::Off || a != TlsAnswer::Start, "TLS is off");
                } else if tls == TlsMode::Require && !tls_started {
                    // Before TLS only refusals: NotAllowed (address or TLS required).
                    assert_eq!(r.kind, MessageType::LeaseQueryDone, "{r:?}");
                    assert_eq!(r.status.as_ref().map(|s| s.0), Some(4), "{r:?}");
                }
                if subscribed && src.lost > 0 {
                    // A subscriber that lost changes gets nothing but its cut-off.
                    assert_eq!(r.status.map(|s| s.0), Some(5), "cut off with DataMissing");
                }
            }
            Poll::Subscribe => {
                assert!(!subscribed, "one subscription per connection");
                assert!(
                    tls != TlsMode::Require || tls_started,
                    "subscribed in clear"
                );
                subscribed = true;
            }
            Poll::StartTls => {
                assert!(
                    tls != TlsMode::Off && !tls_started,
                    "one TLS start, when offered"
                );
                assert!(
                    last_tls_start,
                    "StartTls right after a DHCPTLS answered Start"
                );
                assert!(!subscribed);
                tls_started = true;
                s.tls_established();
            }
            Poll::Again => {}
            Poll::Close => return,
            Poll::Idle if rest.is_empty() || !s.wants_input() => return,
            Poll::Idle => {}
        }
    }
    panic!("the session did not finish a {}-byte stream", stream.len());
});
