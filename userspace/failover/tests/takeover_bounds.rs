//! Trust boundaries of the failover connection (issue 12, item 1): the primary's MCLT is
//! adopted by the secondary only within the secondary's configured bounds, so whoever holds
//! the connection cannot shrink the lead time that keeps the pair from reusing an address
//! too early.

use xdhcpd_failover::codec::{Body, ConnectInfo, Decoder, Message, PROTOCOL_VERSION};
use xdhcpd_failover::{Config, FailoverEngine, RejectReason, Role};

const NOW: u32 = 1_700_000_000;

fn secondary() -> FailoverEngine {
    let mut c = Config::new(Role::Secondary, "pair");
    c.mclt = 3600;
    c.partner_mclt_min = 300;
    c.partner_mclt_max = 7200;
    let mut e = FailoverEngine::new(c, None, NOW).expect("engine");
    while e.poll_action().is_some() {}
    e.handle_connected(NOW);
    e
}

fn connect_with_mclt(e: &mut FailoverEngine, mclt: u32) -> Vec<Message> {
    let info = ConnectInfo {
        relationship_name: Some(b"pair".to_vec()),
        max_unacked: Some(10),
        receive_timer: Some(60),
        vendor_class: Some(b"xdhcpd-test".to_vec()),
        protocol_version: Some(PROTOCOL_VERSION),
        mclt: Some(mclt),
        hba: Some(vec![0xff; 32]),
        ..ConnectInfo::default()
    };
    let b = Message::new(NOW, 7, Body::Connect(info))
        .to_bytes()
        .expect("encodes");
    e.handle_bytes(NOW, &b);
    let mut d = Decoder::new();
    if let Some(out) = e.poll_transmit() {
        d.push(&out);
    }
    let mut v = Vec::new();
    while let Some(m) = d.next_message().expect("our output decodes") {
        v.push(m);
    }
    v
}

fn reject_reason(out: &[Message]) -> Option<u8> {
    out.iter().find_map(|m| match &m.body {
        Body::ConnectAck(i) => Some(i.reject_reason.unwrap_or(0)),
        _ => None,
    })
}

#[test]
fn takeover_connect_shrinking_mclt_is_refused() {
    let mut e = secondary();
    let out = connect_with_mclt(&mut e, 10);
    assert_eq!(
        reject_reason(&out),
        Some(RejectReason::InvalidMclt.to_wire()),
        "{out:?}"
    );
    assert!(!e.connected(), "a refused CONNECT leaves no session");
    assert_eq!(e.mclt(), 3600, "the shrunk MCLT is not adopted");
    assert_eq!(e.persisted().mclt, 3600, "nor stored");
}

#[test]
fn takeover_connect_with_huge_mclt_is_refused() {
    let mut e = secondary();
    let out = connect_with_mclt(&mut e, 30 * 86_400);
    assert_eq!(
        reject_reason(&out),
        Some(RejectReason::InvalidMclt.to_wire()),
        "{out:?}"
    );
    assert_eq!(e.mclt(), 3600);
}

#[test]
fn takeover_connect_within_bounds_is_adopted() {
    let mut e = secondary();
    let out = connect_with_mclt(&mut e, 600);
    assert_eq!(reject_reason(&out), Some(0), "accepted: {out:?}");
    assert_eq!(
        e.mclt(),
        600,
        "draft-12 7.8.2: the primary's MCLT is adopted"
    );
}

#[test]
fn takeover_default_bounds_follow_the_configured_mclt() {
    // Unset (0): the smaller of mclt and 300 s, the larger of mclt and a day; so a pair
    // configured with a short MCLT on both sides (tests, labs) still connects.
    let mut c = Config::new(Role::Secondary, "pair");
    c.mclt = 30;
    assert_eq!(c.partner_mclt_bounds(), (30, 86_400));
    c.mclt = 3600;
    assert_eq!(c.partner_mclt_bounds(), (300, 86_400));
    c.partner_mclt_min = 900;
    c.partner_mclt_max = 600;
    assert!(c.validate().is_err(), "min above max is refused");
}
