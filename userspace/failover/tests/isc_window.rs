//! The max-unacked-updates we advertise to ISC dhcpd (issue 15, item 6). ISC acknowledges
//! binding updates only when its pending acks reach half of what *we* advertised (else on a
//! 2 s timer), while we keep at most min(ours, its window) in flight. A partner that is not
//! xdhcpd is therefore told exactly what we keep in flight; an xdhcpd partner, which acks at
//! once, our configured value. The primary's CONNECT goes out before the partner says who it
//! is: when its CONNECTACK shows the value would leave ISC's acks to the timer, the primary
//! reconnects with the right one, and remembers it (persisted) for the next CONNECT.

use xdhcpd_failover::codec::{Body, ConnectInfo, Decoder, Message, PROTOCOL_VERSION};
use xdhcpd_failover::{Action, Config, FailoverEngine, FailoverPersist, Role};

const NOW: u32 = 1_700_000_000;
const OURS: u32 = 1000;

fn config(role: Role) -> Config {
    let mut c = Config::new(role, "pair");
    c.max_unacked_bndupd = OURS;
    c
}

fn messages(e: &mut FailoverEngine) -> Vec<Message> {
    let mut d = Decoder::new();
    if let Some(b) = e.poll_transmit() {
        d.push(&b);
    }
    let mut v = Vec::new();
    while let Some(m) = d.next_message().expect("our output decodes") {
        v.push(m);
    }
    v
}

fn actions(e: &mut FailoverEngine) -> Vec<Action> {
    std::iter::from_fn(|| e.poll_action()).collect()
}

/// What a partner says about itself in CONNECT / CONNECTACK.
fn partner_info(vendor: &str, window: u32) -> ConnectInfo {
    ConnectInfo {
        relationship_name: Some(b"pair".to_vec()),
        max_unacked: Some(window),
        receive_timer: Some(60),
        vendor_class: Some(vendor.as_bytes().to_vec()),
        protocol_version: Some(PROTOCOL_VERSION),
        ..ConnectInfo::default()
    }
}

/// The primary connects: returns (advertised max-unacked, xid of the CONNECT).
fn connect(e: &mut FailoverEngine, now: u32) -> (u32, u32) {
    e.handle_connected(now);
    let m = messages(e);
    let Some(Message {
        xid,
        body: Body::Connect(c),
        ..
    }) = m.first()
    else {
        panic!("no CONNECT: {m:?}");
    };
    (c.max_unacked.expect("max-unacked in CONNECT"), *xid)
}

fn connectack(e: &mut FailoverEngine, now: u32, xid: u32, info: ConnectInfo) {
    let b = Message::new(now, xid, Body::ConnectAck(info))
        .to_bytes()
        .expect("encodes");
    e.handle_bytes(now, &b);
}

#[test]
fn primary_reconnects_once_to_advertise_what_isc_acks() {
    let mut e = FailoverEngine::new(config(Role::Primary), None, NOW).expect("engine");
    actions(&mut e);
    // First contact: nothing known, our value goes out.
    let (adv, xid) = connect(&mut e, NOW);
    assert_eq!(adv, OURS);
    connectack(&mut e, NOW, xid, partner_info("isc-4.4.3-P1", 10));
    let acts = actions(&mut e);
    assert!(
        acts.iter().any(|a| matches!(a, Action::Close { .. })),
        "the primary closes to advertise again: {acts:?}"
    );
    assert!(
        acts.iter()
            .any(|a| matches!(a, Action::Log(l) if l.contains("reconnecting to advertise 10"))),
        "{acts:?}"
    );
    let out = messages(&mut e);
    assert!(
        out.iter()
            .any(|m| matches!(m.body, Body::Disconnect { .. })),
        "DISCONNECT tells ISC why: {out:?}"
    );
    assert!(!out.iter().any(|m| matches!(m.body, Body::State { .. })));
    assert!(!e.connected());
    let learnt = acts
        .iter()
        .filter_map(|a| match a {
            Action::Persist(p) => Some(*p),
            _ => None,
        })
        .next_back()
        .expect("the window is persisted");
    assert_eq!(learnt.connect_max_unacked, 10);

    // The next connection advertises exactly what we keep in flight, and stays.
    let (adv, xid) = connect(&mut e, NOW + 1);
    assert_eq!(adv, 10);
    connectack(&mut e, NOW + 1, xid, partner_info("isc-4.4.3-P1", 10));
    let acts = actions(&mut e);
    assert!(
        !acts.iter().any(|a| matches!(a, Action::Close { .. })),
        "{acts:?}"
    );
    assert!(e.connected());
    assert_eq!(e.max_unacked_exchanged(), Some((10, 10)));
    assert!(messages(&mut e)
        .iter()
        .any(|m| matches!(m.body, Body::State { .. })));

    // After a restart the persisted value goes out at once: no reconnect.
    let restarted = FailoverPersist::from_bytes(&e.persisted().to_bytes()).expect("persisted");
    let mut e =
        FailoverEngine::new(config(Role::Primary), Some(restarted), NOW + 10).expect("restart");
    actions(&mut e);
    let (adv, xid) = connect(&mut e, NOW + 10);
    assert_eq!(adv, 10);
    connectack(&mut e, NOW + 10, xid, partner_info("isc-4.4.3-P1", 10));
    assert!(!actions(&mut e)
        .iter()
        .any(|a| matches!(a, Action::Close { .. })));
    assert!(e.connected());
}

#[test]
fn primary_keeps_its_value_for_an_xdhcpd_partner() {
    let mut e = FailoverEngine::new(config(Role::Primary), None, NOW).expect("engine");
    actions(&mut e);
    let (adv, xid) = connect(&mut e, NOW);
    assert_eq!(adv, OURS);
    connectack(&mut e, NOW, xid, partner_info("xdhcpd-0.1.0", 100));
    assert!(!actions(&mut e)
        .iter()
        .any(|a| matches!(a, Action::Close { .. })));
    assert_eq!(e.max_unacked_exchanged(), Some((OURS, 100)));
    assert_eq!(e.persisted().connect_max_unacked, 0);
    // A partner once ISC, now xdhcpd: the learnt value is forgotten.
    let mut p = e.persisted();
    p.connect_max_unacked = 10;
    let mut e = FailoverEngine::new(config(Role::Primary), Some(p), NOW).expect("engine");
    actions(&mut e);
    let (adv, xid) = connect(&mut e, NOW);
    assert_eq!(adv, 10);
    connectack(&mut e, NOW, xid, partner_info("xdhcpd-0.1.0", 100));
    assert!(!actions(&mut e)
        .iter()
        .any(|a| matches!(a, Action::Close { .. })));
    assert_eq!(e.persisted().connect_max_unacked, 0);
}

#[test]
fn secondary_answers_isc_with_what_it_keeps_in_flight() {
    for (vendor, window, expected) in [
        ("isc-4.4.3-P1", 10, 10),
        ("isc-4.4.3-P1", 5000, OURS),
        ("xdhcpd-0.1.0", 10, OURS),
    ] {
        let mut e = FailoverEngine::new(config(Role::Secondary), None, NOW).expect("engine");
        actions(&mut e);
        e.handle_connected(NOW);
        let mut info = partner_info(vendor, window);
        info.mclt = Some(3600);
        info.hba = Some(vec![0xff; 32]);
        let b = Message::new(NOW, 7, Body::Connect(info))
            .to_bytes()
            .expect("encodes");
        e.handle_bytes(NOW, &b);
        let out = messages(&mut e);
        let Some(Body::ConnectAck(ack)) = out.first().map(|m| &m.body) else {
            panic!("no CONNECTACK: {out:?}");
        };
        assert_eq!(ack.max_unacked, Some(expected), "{vendor} window {window}");
        assert_eq!(e.max_unacked_exchanged(), Some((expected, window)));
    }
}
