//! DHCPv6 Reconfigure under a simulated clock: the key in the Reply, the signed
//! Reconfigure (test vector, wrong key), the campaign's retry schedule and abort rules,
//! the spec's event table, relayed clients, the admission rate, restarts.

use std::sync::atomic::Ordering::Relaxed;

use lease_store::v6::{Binding6, FLAG_RECONFIGURING6, FLAG_RECONF_KEY6};

use super::*;
use crate::reconfigure::*;

const SECRET: &[u8] = b"0123456789abcdef-test-secret";
const T0_MS: u64 = NOW as u64 * 1000;

fn shared() -> Arc<Reconf6Shared> {
    Arc::new(Reconf6Shared::new(Reconf6Keys::new(SECRET)))
}

fn h_reconf() -> (H, Arc<Reconf6Shared>) {
    let sh = shared();
    let mut h = H::new();
    h.e = Engine6::new(config(), sduid(), Arc::new(Stats6::default())).with_reconfigure(sh.clone());
    (h, sh)
}

/// Sends `p` at unix time `now` from `meta`.
fn at(h: &mut H, now: u32, meta: RxMeta6, p: &[u8]) -> Decision6 {
    h.e.handle(&mut h.t, now, &meta, p, &mut h.out)
}

fn reply_at(h: &mut H, now: u32, p: &[u8]) -> Vec<u8> {
    match at(h, now, direct(), p) {
        Decision6::Reply { len, .. } => h.out[..len].to_vec(),
        d => panic!("no reply: {d:?}"),
    }
}

/// Binds `duid` with IA_NA 1 (and IA_PD 2) by Rapid Commit, with Reconfigure Accept when
/// `accept`; returns the reply's raw bytes.
fn bind_accept(h: &mut H, duid: &[u8], accept: bool) -> Vec<u8> {
    let mut extra: Vec<(u16, &[u8])> = vec![(opt::RAPID_COMMIT, &[])];
    if accept {
        extra.push((opt::RECONF_ACCEPT, &[]));
    }
    h.reply(&client_msg(
        msg::SOLICIT,
        duid,
        None,
        &[(IaKind::Na, 1, &[]), (IaKind::Pd, 2, &[])],
        &extra,
    ))
}

fn slots_of(t: &BindingTable6, duid: &[u8]) -> Vec<u32> {
    t.iter()
        .filter(|(_, b)| b.duid.as_slice() == duid)
        .map(|(s, _)| s)
        .collect()
}

fn bindings(t: &BindingTable6, duid: &[u8]) -> Vec<Binding6> {
    t.iter()
        .filter(|(_, b)| b.duid.as_slice() == duid)
        .map(|(_, b)| b)
        .collect()
}

fn renew(duid: &[u8]) -> Vec<u8> {
    client_msg(
        msg::RENEW,
        duid,
        Some(&sduid()),
        &[(IaKind::Na, 1, &[]), (IaKind::Pd, 2, &[])],
        &[],
    )
}

/// Polls the campaign at `ms`, returning the actions.
fn poll(c: &mut Reconfigurer6, h: &mut H, ms: u64) -> Vec<Action6> {
    let mut out = Vec::new();
    c.poll(ms, &mut h.t, &mut out);
    out
}

fn sends(a: &[Action6]) -> Vec<u32> {
    a.iter()
        .filter_map(|a| match a {
            Action6::Send { attempt, .. } => Some(*attempt),
            _ => None,
        })
        .collect()
}

#[test]
fn dhcpv6_reconfigure_key_in_reply_only_for_reconfigure_accept_clients() {
    let (mut h, _sh) = h_reconf();
    let r = bind_accept(&mut h, C1, true);
    let m = Message::parse(&r, 0).unwrap();
    let auth = m.options.find(opt::AUTH).expect("key in the Reply");
    let key = Reconf6Keys::new(SECRET).key_for(C1);
    assert_eq!(auth.len(), AUTH_LEN);
    assert_eq!(
        (auth[0], auth[1], auth[2], auth[11]),
        (3, 1, 0, KEY_TYPE_VALUE),
        "protocol 3, HMAC-MD5, RDM 0, type 1"
    );
    assert_eq!(&auth[3..11], &(u64::from(NOW) << 32).to_be_bytes());
    assert_eq!(&auth[12..], &key);
    assert!(m.options.find(opt::RECONF_ACCEPT).is_some());
    for b in bindings(&h.t, C1) {
        assert_ne!(b.flags & FLAG_RECONF_KEY6, 0, "{b:?}");
    }
    // Without Reconfigure Accept: no key, no flag.
    let r = bind_accept(&mut h, C2, false);
    assert!(Message::parse(&r, 0)
        .unwrap()
        .options
        .find(opt::AUTH)
        .is_none());
    for b in bindings(&h.t, C2) {
        assert_eq!(b.flags & FLAG_RECONF_KEY6, 0);
    }
    assert_eq!(h.e.stats().snapshot().reconf_keys, 1);
    // Keys are per client and come from the secret alone (they survive restarts).
    assert_ne!(key, Reconf6Keys::new(SECRET).key_for(C2));
    assert_eq!(key, Reconf6Keys::new(SECRET).key_for(C1));
    assert_ne!(key, Reconf6Keys::new(b"another-secret-0123").key_for(C1));
    // An engine without reconfigure gives no key even to an accepting client.
    let mut plain = H::new();
    let r = bind_accept(&mut plain, C1, true);
    assert!(Message::parse(&r, 0)
        .unwrap()
        .options
        .find(opt::AUTH)
        .is_none());
}

/// A fixed Reconfigure: its bytes and HMAC-MD5 digest computed independently (Python's
/// `hmac.new(bytes(range(16)), msg_with_zero_digest, 'md5')`).
#[test]
fn dhcpv6_reconfigure_message_test_vector_and_wrong_key_rejected() {
    let key: [u8; 16] = core::array::from_fn(|i| i as u8);
    let mut out = [0u8; 256];
    let n = write_reconfigure(
        &mut out,
        &Reconfigure6 {
            server_duid: &[0, 2, 0, 0, 0x11, 0x8b, 1],
            client_duid: &[0, 3, 0, 1, 2, 0, 0, 0, 0, 1],
            msg_type: msg::RENEW,
            replay: 1,
            key,
            relay: None,
        },
    )
    .unwrap();
    let want_prefix: &[u8] = &[
        10, 0, 0, 0, // Reconfigure, transaction-id 0
        0, 2, 0, 7, 0, 2, 0, 0, 0x11, 0x8b, 1, // Server Identifier
        0, 1, 0, 10, 0, 3, 0, 1, 2, 0, 0, 0, 0, 1, // Client Identifier
        0, 19, 0, 1, 5, // Reconfigure Message: Renew
        0, 11, 0, 28, 3, 1, 0, 0, 0, 0, 0, 0, 0, 0, 1, 2, // Authentication header, type 2
    ];
    assert_eq!(n, want_prefix.len() + 16);
    assert_eq!(&out[..want_prefix.len()], want_prefix);
    assert_eq!(hex(&out[n - 16..n]), DIGEST_VECTOR);
    let v = verify_reconfigure(&out[..n], &key).unwrap();
    assert_eq!((v.msg_type, v.replay), (msg::RENEW, 1));
    let mut wrong = key;
    wrong[15] ^= 1;
    assert_eq!(
        verify_reconfigure(&out[..n], &wrong),
        Err("HMAC-MD5 digest does not match the key")
    );
    // A flipped bit anywhere in the message fails too.
    let mut bad = out;
    bad[20] ^= 0x40;
    assert!(verify_reconfigure(&bad[..n], &key).is_err());
}

/// HMAC-MD5 of the vector message above (digest zeroed) under key 00..0f.
const DIGEST_VECTOR: &str = "85bab775f4726b1745c8d33a49062f24";

fn hex(b: &[u8]) -> String {
    b.iter().map(|x| format!("{x:02x}")).collect()
}

#[test]
fn dhcpv6_reconfigure_renew_gets_lifetimes_zero_then_solicit_gets_new_binding() {
    let (mut h, sh) = h_reconf();
    bind_accept(&mut h, C1, true);
    let mut c = Reconfigurer6::new(Reconf6Policy::default(), Some(sh.clone()));
    assert!(c.trigger(C1, slots_of(&h.t, C1)));
    let a = poll(&mut c, &mut h, T0_MS);
    let Some(Action6::Send { binding, attempt }) = a.first().cloned() else {
        panic!("{a:?}")
    };
    assert_eq!(attempt, 1);
    assert!(sh.any_flagged());
    for b in bindings(&h.t, C1) {
        assert!(is_reconfiguring(&b), "both IAs flagged: {b:?}");
    }
    // The message: to the client's address (it came direct), signed with its key.
    let mut buf = [0u8; 512];
    let keys = Reconf6Keys::new(SECRET);
    let (n, route) = build_reconfigure(&mut buf, &binding, &sduid(), &keys, 7, msg::RENEW).unwrap();
    assert_eq!(route, Route6::Direct(ip("fe80::1")));
    assert_eq!(route.dest().1, 546);
    let v = verify_reconfigure(&buf[..n], &keys.key_for(C1)).unwrap();
    assert_eq!(v.msg_type, msg::RENEW);
    let m = Message::parse(&buf[..n], 0).unwrap();
    assert_eq!(m.options.find(opt::CLIENTID), Some(C1));
    assert_eq!(m.options.find(opt::SERVERID), Some(&sduid()[..]));
    assert!(verify_reconfigure(&buf[..n], &keys.key_for(C2)).is_err());

    // The client renews: every lifetime 0, the bindings deleted.
    let r = parse_reply(&reply_at(&mut h, NOW + 1, &renew(C1)));
    assert_eq!(r.typ, msg::REPLY);
    assert_eq!(r.ias.len(), 2);
    for (_, _, t1, t2, st, es) in &r.ias {
        assert_eq!((*t1, *t2, *st), (0, 0, None));
        assert_eq!(es.len(), 1);
        assert_eq!((es[0].preferred, es[0].valid), (0, 0));
    }
    for b in bindings(&h.t, C1) {
        assert_eq!(b.state, BindingState::Released);
        assert_eq!(b.flags & FLAG_RECONFIGURING6, 0);
    }
    assert_eq!(h.e.stats().snapshot().reconf_zeroed, 2);
    // The campaign sees it and stops (no retry).
    let a = poll(&mut c, &mut h, T0_MS + 5_000);
    assert_eq!(a, vec![Action6::Succeeded(ClientDuid::new(C1))]);
    assert!(!sh.any_flagged());
    assert_eq!(c.active(), 0);
    // Solicit now gets a fresh configuration.
    let r = parse_reply(&reply_at(
        &mut h,
        NOW + 2,
        &client_msg(
            msg::SOLICIT,
            C1,
            None,
            &[(IaKind::Na, 1, &[])],
            &[(opt::RAPID_COMMIT, &[])],
        ),
    ));
    assert_eq!(r.typ, msg::REPLY);
    assert_eq!(r.ias[0].5[0].valid, 4000);
    let s = c.stats.as_ref();
    assert_eq!(
        (
            s.triggered.load(Relaxed),
            s.sent.load(Relaxed),
            s.retried.load(Relaxed),
            s.succeeded.load(Relaxed),
            s.aborted.load(Relaxed)
        ),
        (1, 1, 0, 1, 0)
    );
}

/// Runs a campaign for C1 until it aborts; returns the send times (ms after T0) and the
/// outcome.
fn run_to_abort(policy: Reconf6Policy) -> (H, Vec<u64>, Abort6, Arc<Reconf6Shared>) {
    let (mut h, sh) = h_reconf();
    bind_accept(&mut h, C1, true);
    let mut c = Reconfigurer6::new(policy, Some(sh.clone()));
    c.trigger(C1, slots_of(&h.t, C1));
    let mut times = Vec::new();
    let mut ms = T0_MS;
    loop {
        for a in poll(&mut c, &mut h, ms) {
            match a {
                Action6::Send { .. } => times.push(ms - T0_MS),
                Action6::Aborted(k, how) => {
                    assert_eq!(k, ClientDuid::new(C1));
                    assert_eq!(c.stats.aborted.load(Relaxed), 1);
                    assert_eq!(c.stats.retried.load(Relaxed), times.len() as u64 - 1);
                    return (h, times, how, sh);
                }
                other => panic!("{other:?}"),
            }
        }
        ms += 500;
        assert!(ms < T0_MS + 3_600_000, "never aborted");
    }
}

#[test]
fn dhcpv6_reconfigure_retry_schedule_rec_timeout_doubling_rec_max_rc_then_restore() {
    let (h, times, how, sh) = run_to_abort(Reconf6Policy::default());
    // REC_TIMEOUT 2 s doubling, REC_MAX_RC 8 transmissions.
    assert_eq!(
        times,
        vec![0, 2_000, 6_000, 14_000, 30_000, 62_000, 126_000, 254_000]
    );
    assert_eq!(how, Abort6::Restored);
    for b in bindings(&h.t, C1) {
        assert_eq!(b.state, BindingState::Active);
        assert_eq!(b.flags & FLAG_RECONFIGURING6, 0, "back to bound");
        assert_ne!(b.flags & FLAG_RECONF_KEY6, 0, "key kept");
    }
    assert!(!sh.any_flagged());
}

#[test]
fn dhcpv6_reconfigure_abort_clear_on_abort_deletes() {
    let p = Reconf6Policy {
        retries: 2,
        clear_on_abort: true,
        ..Reconf6Policy::default()
    };
    let (h, times, how, _) = run_to_abort(p);
    assert_eq!(times, vec![0, 2_000]);
    assert_eq!(how, Abort6::Deleted);
    for b in bindings(&h.t, C1) {
        assert_eq!(b.state, BindingState::Released);
    }
}

#[test]
fn dhcpv6_reconfigure_abort_deferred_nak_keeps_flag_and_next_renew_gets_lifetimes_zero() {
    let p = Reconf6Policy {
        retries: 1,
        deferred_nak: true,
        ..Reconf6Policy::default()
    };
    let (mut h, times, how, sh) = run_to_abort(p);
    assert_eq!((times, how), (vec![0], Abort6::Deferred));
    assert!(sh.any_flagged(), "the engine keeps looking");
    let r = parse_reply(&reply_at(&mut h, NOW + 100, &renew(C1)));
    assert!(r.ias.iter().all(|ia| ia.5[0].valid == 0));
    // Across a restart the flag is kept only with deferred-nak.
    let (mut h2, _) = h_reconf();
    bind_accept(&mut h2, C1, true);
    let mut c = Reconfigurer6::new(Reconf6Policy::default(), None);
    c.trigger(C1, slots_of(&h2.t, C1));
    poll(&mut c, &mut h2, T0_MS);
    assert_eq!(Reconfigurer6::clear_at_start(&mut h2.t, true), (0, 2));
    assert_eq!(Reconfigurer6::clear_at_start(&mut h2.t, false), (2, 0));
    assert!(bindings(&h2.t, C1).iter().all(|b| !is_reconfiguring(b)));
}

#[test]
fn dhcpv6_reconfigure_events_solicit_dropped_release_ends_second_trigger_ignored_no_key_refused() {
    let (mut h, sh) = h_reconf();
    bind_accept(&mut h, C1, true);
    bind_accept(&mut h, C2, false);
    let unpaced = Reconf6Policy {
        rate: 0,
        ..Reconf6Policy::default()
    };
    let mut c = Reconfigurer6::new(unpaced, Some(sh.clone()));
    assert!(c.trigger(C1, slots_of(&h.t, C1)));
    assert!(!c.trigger(C1, slots_of(&h.t, C1)), "queued twice: ignored");
    assert!(c.trigger(C2, slots_of(&h.t, C2)));
    let a = poll(&mut c, &mut h, T0_MS);
    assert!(a.contains(&Action6::NotStarted(
        ClientDuid::new(C2),
        NotStarted6::NoKey
    )));
    assert_eq!(c.stats.refused_no_auth.load(Relaxed), 1);
    assert!(!c.trigger(C1, slots_of(&h.t, C1)), "running: ignored");
    assert_eq!(c.stats.ignored.load(Relaxed), 2);
    // Solicit while reconfiguring: dropped, the binding deleted.
    let sol = client_msg(msg::SOLICIT, C1, None, &[(IaKind::Na, 1, &[])], &[]);
    assert_eq!(
        at(&mut h, NOW + 1, direct(), &sol),
        Decision6::Silence(Silence6::Reconfiguring)
    );
    assert_eq!(h.e.stats().snapshot().reconf_solicit_dropped, 1);
    let na: Vec<_> = bindings(&h.t, C1)
        .into_iter()
        .filter(|b| b.kind == IaKind::Na)
        .collect();
    assert_eq!(na[0].state, BindingState::Released);
    // Release of the remaining IA_PD ends the campaign too.
    let pd = bindings(&h.t, C1)
        .into_iter()
        .find(|b| b.kind == IaKind::Pd)
        .unwrap();
    let p = pd.ip().to_string();
    let rel = client_msg(
        msg::RELEASE,
        C1,
        Some(&sduid()),
        &[(IaKind::Pd, 2, &[(p.as_str(), pd.prefix_len)])],
        &[],
    );
    reply_at(&mut h, NOW + 2, &rel);
    let a = poll(&mut c, &mut h, T0_MS + 3_000);
    assert_eq!(a, vec![Action6::Succeeded(ClientDuid::new(C1))]);
    // A trigger for a client without a binding.
    c.trigger(b"\x00\x03nobody", vec![]);
    let a = poll(&mut c, &mut h, T0_MS + 4_000);
    assert_eq!(
        a,
        vec![Action6::NotStarted(
            ClientDuid::new(b"\x00\x03nobody"),
            NotStarted6::NotBound
        )]
    );
    // C2's bindings were never touched.
    assert!(bindings(&h.t, C2)
        .iter()
        .all(|b| b.state == BindingState::Active && b.flags & FLAG_RECONFIGURING6 == 0));
}

#[test]
fn dhcpv6_reconfigure_relayed_client_gets_relay_reply_through_its_relay() {
    let (mut h, sh) = h_reconf();
    let inner = client_msg(
        msg::SOLICIT,
        C1,
        None,
        &[(IaKind::Na, 1, &[])],
        &[(opt::RAPID_COMMIT, &[]), (opt::RECONF_ACCEPT, &[])],
    );
    let f = relay_forw(
        &[("2001:db8:2::1", "fe80::42", Some(b"cm-port-7"), &[])],
        &inner,
    );
    assert!(matches!(
        at(&mut h, NOW, relay_meta(), &f),
        Decision6::Reply { port: 547, .. }
    ));
    let mut c = Reconfigurer6::new(Reconf6Policy::default(), Some(sh));
    c.trigger(C1, slots_of(&h.t, C1));
    let a = poll(&mut c, &mut h, T0_MS);
    let Some(Action6::Send { binding, .. }) = a.first().cloned() else {
        panic!("{a:?}")
    };
    let keys = Reconf6Keys::new(SECRET);
    let mut buf = [0u8; 512];
    let (n, route) = build_reconfigure(&mut buf, &binding, &sduid(), &keys, 9, msg::RENEW).unwrap();
    assert_eq!(
        route,
        Route6::Relay {
            relay: RELAY_SRC,
            link: ip("2001:db8:2::1").octets(),
            peer: ip("fe80::42").octets(),
        }
    );
    assert_eq!(route.dest(), (RELAY_SRC, 547));
    let r = Relay::parse(&buf[..n], 0).unwrap();
    assert_eq!(r.msg_type, msg::RELAY_REPL);
    assert_eq!(r.link, ip("2001:db8:2::1").octets());
    assert_eq!(r.peer, ip("fe80::42").octets());
    assert_eq!(r.options.find(opt::INTERFACE_ID), Some(&b"cm-port-7"[..]));
    let inner = r.options.find(opt::RELAY_MSG).unwrap();
    assert_eq!(
        verify_reconfigure(inner, &keys.key_for(C1))
            .unwrap()
            .msg_type,
        msg::RENEW
    );
    // Nested relays are not stored well enough to route back: refused, not guessed.
    let mut nested = binding.clone();
    nested.via.hops = 2;
    assert_eq!(
        build_reconfigure(&mut buf, &nested, &sduid(), &keys, 9, msg::RENEW),
        Err(BuildError::NoRoute(NoRoute::NestedRelays))
    );
}

#[test]
fn dhcpv6_reconfigure_rate_admits_clients_per_second() {
    let (mut h, sh) = h_reconf();
    let duids: Vec<Vec<u8>> = (0..5u8)
        .map(|i| vec![0, 3, 0, 1, 2, 0, 0, 0, 0x10, i])
        .collect();
    for d in &duids {
        bind_accept(&mut h, d, true);
    }
    let mut c = Reconfigurer6::new(
        Reconf6Policy {
            rate: 2,
            ..Reconf6Policy::default()
        },
        Some(sh),
    );
    for d in &duids {
        c.trigger(d, slots_of(&h.t, d));
    }
    let first = |a: &[Action6]| sends(a).iter().filter(|&&n| n == 1).count();
    assert_eq!(
        first(&poll(&mut c, &mut h, T0_MS)),
        1,
        "one second's worth starts at 1"
    );
    assert_eq!(first(&poll(&mut c, &mut h, T0_MS + 500)), 1);
    assert_eq!(first(&poll(&mut c, &mut h, T0_MS + 1_500)), 2);
    assert_eq!(first(&poll(&mut c, &mut h, T0_MS + 2_000)), 1);
    assert_eq!((c.queued(), c.active()), (0, 5));
}
