//! Server-initiated reconfiguration (FORCERENEW, RFC 3203 / RFC 6704) under a simulated
//! clock: the engine's event table, the retry schedule, abort / clear-on-abort /
//! deferred-nak, the rate, and the HMAC-MD5 signature as a client checks it.

use std::net::Ipv4Addr;
use std::sync::Arc;

use lease_store::{
    LeaseState, LeaseTable, OpenOptions, PoolSpec, Slot, FLAG_RECONFIGURING, FLAG_RECONF_KEY,
};
use xdhcpd_config::ReconfigureConfig;

use super::engine::reconfigure::*;
use super::engine::{Decision, Engine, EngineShared, RxMeta, Silence};
use super::md5::hmac_md5;
use super::stats::EngineStats;
use super::test_support::request;
use super::wire::{opt, Message, MessageType};

const SERVER: Ipv4Addr = Ipv4Addr::new(10, 0, 0, 1);
const NONE: Ipv4Addr = Ipv4Addr::UNSPECIFIED;
const T0: u32 = 1_000_000;
const SECRET: [u8; 16] = [7; 16];

fn cfg(section: &str) -> String {
    format!(
        r#"
[server]
interface = "lo"
lease-file = "/unused"
trusted-relays = ["10.0.0.254"]
[lease]
default-time = 3600
min-time = 60
max-time = 7200
{section}
[[subnet]]
cidr = "10.0.0.0/24"
router = ["10.0.0.1"]
[[subnet.pool]]
range = "10.0.0.10-10.0.0.20"
"#
    )
}

struct Fx {
    _dir: tempfile::TempDir,
    engine: Engine,
    table: Arc<LeaseTable>,
    book: Arc<ReconfBook>,
    policy: ReconfigureConfig,
    stats: Arc<EngineStats>,
}

fn fixture(section: &str) -> Fx {
    let cfg = Arc::new(xdhcpd_config::parse(&cfg(section), "t.toml").expect("test config"));
    let dir = tempfile::tempdir().expect("tempdir");
    let pools: Vec<PoolSpec> = cfg
        .pool_specs()
        .into_iter()
        .map(|(id, first, last)| PoolSpec { id, first, last })
        .collect();
    let (table, _) = LeaseTable::open(
        &dir.path().join("leases.db"),
        &pools,
        &OpenOptions {
            now: T0,
            ..OpenOptions::default()
        },
    )
    .expect("open lease table");
    let table = Arc::new(table);
    let book = Arc::new(ReconfBook::new(table.len()));
    let policy = cfg.reconfigure.clone().unwrap_or_default();
    let shared =
        EngineShared::new(cfg, table.clone(), SERVER).with_reconfigure(&SECRET, book.clone());
    let stats = Arc::new(EngineStats::default());
    Fx {
        _dir: dir,
        engine: Engine::new(Arc::new(shared), 0, stats.clone()),
        table,
        book,
        policy,
        stats,
    }
}

const SECTION: &str = "[reconfigure]\nretries = 8\nfirst-retry-ms = 2000\nrate = 0\n";

fn meta() -> RxMeta {
    RxMeta {
        local_addr: SERVER,
        src_ip: NONE,
        dst_ip: Ipv4Addr::BROADCAST,
    }
}

fn run(f: &mut Fx, now: u32, m: &RxMeta, r: &[u8]) -> (Decision, Vec<u8>) {
    let mut out = vec![0u8; 1500];
    let d = f.engine.handle(now, m, r, &mut out);
    if let Decision::Reply { len, .. } = d {
        out.truncate(len);
    } else {
        out.clear();
    }
    (d, out)
}

fn kind_of(d: &Decision) -> Option<MessageType> {
    match d {
        Decision::Reply { kind, .. } => Some(*kind),
        Decision::Silent(_) => None,
    }
}

/// The option 90 value of a reply, if any.
fn auth_option(reply: &[u8]) -> Option<Vec<u8>> {
    let m = Message::new_checked(reply).ok()?;
    m.options()
        .filter_map(|o| o.ok())
        .find(|(c, _, _)| *c == opt::AUTHENTICATION)
        .map(|(_, v, _)| v.to_vec())
}

/// DISCOVER + SELECTING REQUEST for client `mac`; `nonce`: the client sends option 145
/// with HMAC-MD5. Returns the bound address, its slot and the ACK.
fn bind(f: &mut Fx, mac: u8, nonce: bool, now: u32) -> (Ipv4Addr, Slot, Vec<u8>) {
    let cap: &[(u8, &[u8])] = if nonce {
        &[(opt::FORCERENEW_NONCE, &[1])]
    } else {
        &[]
    };
    let mut d_opts: Vec<(u8, &[u8])> = vec![(opt::MESSAGE_TYPE, &[1])];
    d_opts.extend_from_slice(cap);
    let (d, offer) = run(f, now, &meta(), &request(mac, NONE, NONE, &d_opts));
    assert_eq!(kind_of(&d), Some(MessageType::Offer), "{d:?}");
    let ip = Ipv4Addr::new(offer[16], offer[17], offer[18], offer[19]);
    let sid = SERVER.octets();
    let rip = ip.octets();
    let mut r_opts: Vec<(u8, &[u8])> = vec![
        (opt::MESSAGE_TYPE, &[3]),
        (opt::SERVER_ID, &sid),
        (opt::REQUESTED_IP, &rip),
    ];
    r_opts.extend_from_slice(cap);
    let (d, ack) = run(f, now, &meta(), &request(mac, NONE, NONE, &r_opts));
    assert_eq!(kind_of(&d), Some(MessageType::Ack), "{d:?}");
    let slot = f.table.slot_of(ip).expect("slot of bound address");
    (ip, slot, ack)
}

/// A RENEWING REQUEST (unicast from ciaddr).
fn renew(f: &mut Fx, mac: u8, ip: Ipv4Addr, now: u32) -> (Decision, Vec<u8>) {
    let m = RxMeta {
        local_addr: SERVER,
        src_ip: ip,
        dst_ip: SERVER,
    };
    run(
        f,
        now,
        &m,
        &request(mac, ip, NONE, &[(opt::MESSAGE_TYPE, &[3])]),
    )
}

fn ms(secs: u32) -> u64 {
    u64::from(secs) * 1000
}

/// Runs the campaign from `from_ms` to `to_ms` in 100 ms steps, collecting actions.
fn drive(r: &mut Reconfigurer, table: &LeaseTable, from_ms: u64, to_ms: u64) -> Vec<(u64, Action)> {
    let mut all = Vec::new();
    let mut out = Vec::new();
    let mut t = from_ms;
    while t <= to_ms {
        r.poll(t, table, &mut out);
        all.extend(out.drain(..).map(|a| (t, a)));
        t += 100;
    }
    all
}

fn send_times(actions: &[(u64, Action)]) -> Vec<u64> {
    actions
        .iter()
        .filter(|(_, a)| matches!(a, Action::Send { .. }))
        .map(|(t, _)| *t)
        .collect()
}

#[test]
fn forcerenew_retry_schedule_eight_attempts_doubling_from_two_seconds() {
    let p = ReconfigureConfig::default();
    assert_eq!((p.retries, p.first_retry_ms, p.backoff), (8, 2000, 2));
    let mut r = Retry::new(0, &p);
    let mut sends = Vec::new();
    let mut exhausted = None;
    for t in (0..=600_000u64).step_by(100) {
        match r.poll(t) {
            Step::Send(n) => sends.push((n, t)),
            Step::Exhausted => {
                exhausted = Some(t);
                break;
            }
            Step::Wait => {}
        }
    }
    let want: Vec<(u32, u64)> = [0u64, 2, 6, 14, 30, 62, 126, 254]
        .iter()
        .enumerate()
        .map(|(i, s)| (i as u32 + 1, s * 1000))
        .collect();
    assert_eq!(sends, want);
    // One last interval (256 s) after the 8th send.
    assert_eq!(exhausted, Some(510_000));
    // Configurable: 3 attempts, 500 ms, constant interval.
    let q = ReconfigureConfig {
        retries: 3,
        first_retry_ms: 500,
        backoff: 1,
        ..p
    };
    let mut r = Retry::new(10_000, &q);
    let mut seen = Vec::new();
    for t in (10_000..=20_000u64).step_by(100) {
        match r.poll(t) {
            Step::Send(_) => seen.push(t),
            Step::Exhausted => {
                seen.push(u64::MAX - t);
                break;
            }
            Step::Wait => {}
        }
    }
    assert_eq!(seen, vec![10_000, 10_500, 11_000, u64::MAX - 11_500]);
}

#[test]
fn forcerenew_key_in_ack_only_for_option_145_clients_and_hmac_md5_verifiable() {
    let mut f = fixture(SECTION);
    let (ip, slot, ack) = bind(&mut f, 1, true, T0);
    let v = auth_option(&ack).expect("ACK carries the reconfigure key");
    assert_eq!(v.len(), KEY_OPTION_LEN);
    assert_eq!(
        (v[0], v[1], v[2], v[11]),
        (3, 1, 0, 1),
        "protocol 3, HMAC-MD5, RDM 0, key"
    );
    let key: [u8; 16] = v[12..28].try_into().expect("16-byte key");
    let lease = f.table.read(slot);
    assert_eq!(lease.flags & FLAG_RECONF_KEY, FLAG_RECONF_KEY);
    // The key is the binding's, derivable again (restarts) and different per client.
    assert_eq!(ReconfKeys::new(&SECRET).key_for(&lease.client, ip), key);
    assert_ne!(ReconfKeys::new(&[8; 16]).key_for(&lease.client, ip), key);
    assert_eq!(f.stats.snapshot().reconfigure_keys_sent, 1);
    // A client without option 145 gets no key.
    let (_, slot2, ack2) = bind(&mut f, 2, false, T0);
    assert!(auth_option(&ack2).is_none());
    assert_eq!(f.table.read(slot2).flags & FLAG_RECONF_KEY, 0);
    // The book has the ACK's xid for the FORCERENEW.
    assert_eq!(f.book.get(slot).0, u32::from_be_bytes([0xde, 0xad, 0, 1]));

    // FORCERENEW signed with the key: verifiable as a client does (RFC 3118 §2: MAC,
    // hops and giaddr zeroed), independently recomputed here.
    let mut buf = [0u8; 600];
    let fr = ForceRenew {
        server_id: SERVER,
        client: ip,
        htype: 1,
        hlen: 6,
        chaddr: lease.chaddr,
        xid: 0xdead_0001,
        giaddr: Ipv4Addr::new(10, 1, 0, 1),
        relay_info: &[1, 2, b'a', b'b'],
        replay: 42,
        auth: Auth::Nonce(key),
    };
    let n = write_forcerenew(&mut buf, &fr).expect("fits");
    let msg = &buf[..n];
    assert_eq!(n, 300, "padded to the BOOTP minimum");
    assert_eq!(msg[0], 2, "BOOTREPLY");
    let m = Message::new_checked(msg).expect("parses");
    let sum = m.summary().expect("options");
    assert_eq!(sum.message_type, Some(MessageType::ForceRenew));
    assert_eq!(sum.server_id, Some(SERVER));
    assert_eq!(m.ciaddr(), ip);
    assert_eq!(m.xid(), 0xdead_0001);
    assert!(verify_forcerenew(msg, &key));
    let a = auth_option(msg).expect("auth option");
    assert_eq!(
        (a[0], a[1], a[2], a[11]),
        (3, 1, 0, 2),
        "type 2: HMAC-MD5 digest"
    );
    assert_eq!(u64::from_be_bytes(a[3..11].try_into().expect("8")), 42);
    let at = msg
        .windows(a.len())
        .position(|w| w == &a[..])
        .expect("option value in message")
        + 12;
    let mut zeroed = msg.to_vec();
    zeroed[at..at + 16].fill(0);
    zeroed[3] = 0;
    zeroed[24..28].fill(0);
    assert_eq!(hmac_md5(&key, &[&zeroed]), a[12..28]);
    // A relay that changes hops / giaddr does not break it; any other byte does.
    let mut relayed = msg.to_vec();
    relayed[3] = 1;
    relayed[24..28].copy_from_slice(&[10, 2, 0, 1]);
    assert!(verify_forcerenew(&relayed, &key));
    let mut tampered = msg.to_vec();
    tampered[12] ^= 1;
    assert!(!verify_forcerenew(&tampered, &key));
    let mut wrong = key;
    wrong[0] ^= 1;
    assert!(!verify_forcerenew(msg, &wrong));

    // RFC 3118 §4 token: in the clear, protocol 0.
    let tok = ForceRenew {
        auth: Auth::Token(b"s3cret"),
        giaddr: NONE,
        relay_info: &[],
        ..fr
    };
    let n = write_forcerenew(&mut buf, &tok).expect("fits");
    let a = auth_option(&buf[..n]).expect("token option");
    assert_eq!(a[0], 0);
    assert_eq!(&a[11..], b"s3cret");
}

#[test]
fn forcerenew_request_while_reconfiguring_gets_nak_binding_deleted_then_discover_served() {
    let mut f = fixture(SECTION);
    let (ip, slot, _) = bind(&mut f, 1, true, T0);
    let mut r = Reconfigurer::new(f.policy.clone());
    assert!(r.trigger(slot));
    let acts = drive(&mut r, &f.table, ms(T0), ms(T0));
    assert_eq!(send_times(&acts), vec![ms(T0)]);
    assert!(is_reconfiguring(&f.table.read(slot)));
    // A second trigger is ignored, and a DISCOVER of another client is untouched.
    assert!(!r.trigger(slot));
    // The client renews (as FORCERENEW asks): NAK, binding deleted.
    let (d, nak) = renew(&mut f, 1, ip, T0 + 1);
    assert_eq!(kind_of(&d), Some(MessageType::Nak), "{d:?}");
    // Unicast to the renewing client's address (it listens there only), not broadcast.
    assert!(
        matches!(d, Decision::Reply { to: crate::Delivery::Unicast(a), .. } if a == ip),
        "{d:?}"
    );
    assert!(Message::new_checked(&nak).is_ok());
    let l = f.table.read(slot);
    assert_eq!(l.state, LeaseState::Released);
    assert_eq!(l.flags & FLAG_RECONFIGURING, 0);
    assert_eq!(f.stats.snapshot().reconfiguring_naked, 1);
    // The campaign sees it ended: succeeded, no more sends.
    let acts = drive(&mut r, &f.table, ms(T0 + 1), ms(T0 + 20));
    assert_eq!(acts.len(), 1, "{acts:?}");
    assert!(matches!(acts[0].1, Action::Succeeded(s) if s == slot));
    assert_eq!(
        r.stats.succeeded.load(std::sync::atomic::Ordering::Relaxed),
        1
    );
    // Nothing flagged any more: the engines stop looking clients up per message.
    assert!(!f.book.any_flagged());
    // The client starts over: DISCOVER is served normally (the new configuration).
    let (ip2, _, _) = bind(&mut f, 1, true, T0 + 2);
    assert!(f.table.read(f.table.slot_of(ip2).expect("slot")).state == LeaseState::Active);
}

#[test]
fn forcerenew_discover_drops_release_and_init_reboot_delete_while_reconfiguring() {
    let mut f = fixture(SECTION);
    let (_, s1, _) = bind(&mut f, 1, true, T0);
    let (ip2, s2, _) = bind(&mut f, 2, true, T0);
    let (ip3, s3, _) = bind(&mut f, 3, true, T0);
    let mut r = Reconfigurer::new(f.policy.clone());
    for s in [s1, s2, s3] {
        assert!(r.trigger(s));
    }
    drive(&mut r, &f.table, ms(T0), ms(T0));
    // DISCOVER: dropped, binding deleted.
    let (d, _) = run(
        &mut f,
        T0 + 1,
        &meta(),
        &request(1, NONE, NONE, &[(opt::MESSAGE_TYPE, &[1])]),
    );
    assert_eq!(d, Decision::Silent(Silence::Reconfiguring));
    assert_eq!(f.table.read(s1).state, LeaseState::Released);
    // RELEASE: deleted, no reply.
    let sid = SERVER.octets();
    let from2 = RxMeta {
        local_addr: SERVER,
        src_ip: ip2,
        dst_ip: SERVER,
    };
    let (d, _) = run(
        &mut f,
        T0 + 1,
        &from2,
        &request(
            2,
            ip2,
            NONE,
            &[(opt::MESSAGE_TYPE, &[7]), (opt::SERVER_ID, &sid)],
        ),
    );
    assert_eq!(d, Decision::Silent(Silence::NoReplyExpected));
    assert_eq!(f.table.read(s2).state, LeaseState::Released);
    assert_eq!(f.table.read(s2).flags & FLAG_RECONFIGURING, 0);
    // INIT-REBOOT: NAK, deleted.
    let rip = ip3.octets();
    let (d, _) = run(
        &mut f,
        T0 + 1,
        &meta(),
        &request(
            3,
            NONE,
            NONE,
            &[(opt::MESSAGE_TYPE, &[3]), (opt::REQUESTED_IP, &rip)],
        ),
    );
    assert_eq!(kind_of(&d), Some(MessageType::Nak));
    assert_eq!(f.table.read(s3).state, LeaseState::Released);
    let st = f.stats.snapshot();
    assert_eq!(
        (
            st.reconfiguring_dropped,
            st.reconfiguring_ended,
            st.reconfiguring_naked
        ),
        (1, 1, 1)
    );
}

#[test]
fn forcerenew_abort_restores_binding_unchanged() {
    let mut f = fixture(SECTION);
    let (ip, slot, _) = bind(&mut f, 1, true, T0);
    let before = f.table.read(slot);
    let mut r = Reconfigurer::new(f.policy.clone());
    r.trigger(slot);
    let acts = drive(&mut r, &f.table, ms(T0), ms(T0 + 600));
    let t0 = ms(T0);
    assert_eq!(
        send_times(&acts),
        [0u64, 2, 6, 14, 30, 62, 126, 254]
            .iter()
            .map(|s| t0 + s * 1000)
            .collect::<Vec<_>>()
    );
    let aborted: Vec<_> = acts
        .iter()
        .filter(|(_, a)| matches!(a, Action::Aborted(..)))
        .collect();
    assert_eq!(aborted.len(), 1);
    assert_eq!(aborted[0].0, t0 + 510_000);
    assert!(matches!(
        aborted[0].1,
        Action::Aborted(_, AbortOutcome::Restored)
    ));
    assert_eq!(f.table.read(slot), before, "bound again, unchanged");
    let s = &r.stats;
    use std::sync::atomic::Ordering::Relaxed;
    assert_eq!(
        (
            s.sent.load(Relaxed),
            s.retried.load(Relaxed),
            s.aborted.load(Relaxed)
        ),
        (8, 7, 1)
    );
    // Its renewal is ACKed again.
    let (d, _) = renew(&mut f, 1, ip, T0 + 601);
    assert_eq!(kind_of(&d), Some(MessageType::Ack));
}

#[test]
fn forcerenew_clear_on_abort_deletes_binding() {
    let mut f =
        fixture("[reconfigure]\nretries = 2\nfirst-retry-ms = 1000\nclear-on-abort = true\n");
    let (ip, slot, _) = bind(&mut f, 1, true, T0);
    let mut r = Reconfigurer::new(f.policy.clone());
    r.trigger(slot);
    let acts = drive(&mut r, &f.table, ms(T0), ms(T0 + 10));
    assert_eq!(send_times(&acts), vec![ms(T0), ms(T0) + 1000]);
    assert!(acts.iter().any(
        |(t, a)| *t == ms(T0) + 3000 && matches!(a, Action::Aborted(_, AbortOutcome::Deleted))
    ));
    let l = f.table.read(slot);
    assert_eq!(l.state, LeaseState::Released);
    assert_eq!(l.flags & FLAG_RECONFIGURING, 0);
    assert_eq!(l.expiry, T0 + 3, "ended at the abort");
    let _ = ip;
}

#[test]
fn forcerenew_deferred_nak_keeps_flag_until_next_renewal_and_across_reopen() {
    let mut f = fixture("[reconfigure]\nretries = 1\nfirst-retry-ms = 1000\ndeferred-nak = true\n");
    let (ip, slot, _) = bind(&mut f, 1, true, T0);
    let mut r = Reconfigurer::new(f.policy.clone());
    r.trigger(slot);
    let acts = drive(&mut r, &f.table, ms(T0), ms(T0 + 5));
    assert!(acts
        .iter()
        .any(|(_, a)| matches!(a, Action::Aborted(_, AbortOutcome::Deferred))));
    assert!(is_reconfiguring(&f.table.read(slot)), "still flagged");
    assert!(f.book.any_flagged(), "the engines keep looking it up");
    // A restart keeps it with deferred-nak, clears it without.
    assert_eq!(Reconfigurer::clear_at_start(&f.table, Some(&f.policy)), 0);
    assert!(is_reconfiguring(&f.table.read(slot)));
    // The next renewal (at T1) gets NAK and the binding is deleted.
    let (d, _) = renew(&mut f, 1, ip, T0 + 1800);
    assert_eq!(kind_of(&d), Some(MessageType::Nak));
    assert_eq!(f.table.read(slot).state, LeaseState::Released);

    // Without deferred-nak, a restart stops reconfiguration.
    let (_, s2, _) = bind(&mut f, 2, true, T0 + 1800);
    f.table.update(s2, |l| l.flags |= FLAG_RECONFIGURING);
    let plain = ReconfigureConfig::default();
    assert_eq!(Reconfigurer::clear_at_start(&f.table, Some(&plain)), 1);
    assert!(!is_reconfiguring(&f.table.read(s2)));
}

#[test]
fn forcerenew_refused_without_authentication_unless_token_or_allowed() {
    let mut f = fixture(SECTION);
    let (_, slot, _) = bind(&mut f, 1, false, T0);
    let mut r = Reconfigurer::new(f.policy.clone());
    r.trigger(slot);
    let acts = drive(&mut r, &f.table, ms(T0), ms(T0));
    assert_eq!(
        acts.iter().map(|(_, a)| *a).collect::<Vec<_>>(),
        vec![Action::NotStarted(slot, NotStarted::NoAuthentication)]
    );
    assert!(!is_reconfiguring(&f.table.read(slot)));
    assert_eq!(
        r.stats
            .refused_no_auth
            .load(std::sync::atomic::Ordering::Relaxed),
        1
    );
    // With a configured token, or explicitly allowed, it starts.
    for p in [
        ReconfigureConfig {
            token: b"tok".to_vec(),
            ..f.policy.clone()
        },
        ReconfigureConfig {
            allow_unauthenticated: true,
            ..f.policy.clone()
        },
    ] {
        let mut r = Reconfigurer::new(p.clone());
        r.trigger(slot);
        let acts = drive(&mut r, &f.table, ms(T0), ms(T0));
        assert_eq!(send_times(&acts), vec![ms(T0)]);
        assert_eq!(abort(&f.table, slot, T0, &p), AbortOutcome::Restored);
    }
}

#[test]
fn forcerenew_rate_limits_clients_per_second() {
    let mut f = fixture("[reconfigure]\nrate = 2\n");
    let slots: Vec<Slot> = (1..=6).map(|m| bind(&mut f, m, true, T0).1).collect();
    let mut r = Reconfigurer::new(f.policy.clone());
    for s in &slots {
        assert!(r.trigger(*s));
    }
    // First sends only: 1 at once (allowance starts at 1), then 2 per second.
    let acts = drive(&mut r, &f.table, ms(T0), ms(T0) + 2_400);
    let firsts: Vec<u64> = acts
        .iter()
        .filter(|(_, a)| matches!(a, Action::Send { attempt: 1, .. }))
        .map(|(t, _)| t - ms(T0))
        .collect();
    assert_eq!(firsts, vec![0, 500, 1000, 1500, 2000], "{firsts:?}");
    assert_eq!(r.queued(), 1);
}

#[test]
fn forcerenew_relayed_binding_goes_to_its_relay_with_option_82_direct_to_the_client() {
    let mut f = fixture(SECTION);
    // A relayed DORA (giaddr 10.0.0.254, a trusted relay; option 82 circuit "c1").
    let relay = Ipv4Addr::new(10, 0, 0, 254);
    let o82: &[u8] = &[1, 2, b'c', b'1'];
    let from_relay = RxMeta {
        local_addr: SERVER,
        src_ip: relay,
        dst_ip: SERVER,
    };
    let (d, offer) = run(
        &mut f,
        T0,
        &from_relay,
        &request(
            9,
            NONE,
            relay,
            &[
                (opt::MESSAGE_TYPE, &[1]),
                (opt::FORCERENEW_NONCE, &[1]),
                (opt::RELAY_AGENT_INFO, o82),
            ],
        ),
    );
    assert_eq!(kind_of(&d), Some(MessageType::Offer), "{d:?}");
    let ip = Ipv4Addr::new(offer[16], offer[17], offer[18], offer[19]);
    let (sid, rip) = (SERVER.octets(), ip.octets());
    let (d, _) = run(
        &mut f,
        T0,
        &from_relay,
        &request(
            9,
            NONE,
            relay,
            &[
                (opt::MESSAGE_TYPE, &[3]),
                (opt::SERVER_ID, &sid),
                (opt::REQUESTED_IP, &rip),
                (opt::FORCERENEW_NONCE, &[1]),
                (opt::RELAY_AGENT_INFO, o82),
            ],
        ),
    );
    assert_eq!(kind_of(&d), Some(MessageType::Ack), "{d:?}");
    let slot = f.table.slot_of(ip).expect("slot");
    let (lease, var) = f.table.read_with_var(slot);
    let (xid, giaddr) = f.book.get(slot);
    assert_eq!(giaddr, relay);
    let keys = ReconfKeys::new(&SECRET);
    let mut buf = [0u8; 600];
    let ri = var.relay_agent_info();
    let (n, to) = build_forcerenew(
        &mut buf, &lease, ri, xid, giaddr, SERVER, 7, &keys, &f.policy,
    )
    .expect("fits");
    assert_eq!(to, Destination::Relay(relay));
    let m = Message::new_checked(&buf[..n]).expect("parses");
    assert_eq!(m.giaddr(), relay);
    assert_eq!(m.xid(), xid);
    assert_eq!(m.summary().expect("options").relay_agent_info, Some(o82));
    assert!(verify_forcerenew(
        &buf[..n],
        &keys.key_for(&lease.client, ip)
    ));

    // A direct client: to its address, no option 82, no giaddr.
    let (ip2, s2, _) = bind(&mut f, 2, true, T0);
    let (xid2, g2) = f.book.get(s2);
    let (n, to) = build_forcerenew(
        &mut buf,
        &f.table.read(s2),
        &[],
        xid2,
        g2,
        SERVER,
        8,
        &keys,
        &f.policy,
    )
    .expect("fits");
    assert_eq!(to, Destination::Client(ip2));
    let m = Message::new_checked(&buf[..n]).expect("parses");
    assert!(m.giaddr().is_unspecified());
    assert!(m.summary().expect("options").relay_agent_info.is_none());
}

/// A request from client number `n` (chaddr 02:00:00:01:hi:lo), xid `xid`.
fn client_msg(n: u16, xid: u32, ciaddr: Ipv4Addr, opts: &[(u8, &[u8])]) -> Vec<u8> {
    let mut b = request(0, ciaddr, NONE, opts);
    b[4..8].copy_from_slice(&xid.to_be_bytes());
    b[28..34].copy_from_slice(&[2, 0, 0, 1, (n >> 8) as u8, n as u8]);
    b
}

/// DORA for client `n`; its address.
fn dora(e: &mut Engine, n: u16, xid: u32, now: u32) -> Option<Ipv4Addr> {
    let mut out = vec![0u8; 1500];
    let cap: (u8, &[u8]) = (opt::FORCERENEW_NONCE, &[1]);
    let d = e.handle(
        now,
        &meta(),
        &client_msg(n, xid, NONE, &[(opt::MESSAGE_TYPE, &[1]), cap]),
        &mut out,
    );
    if kind_of(&d) != Some(MessageType::Offer) {
        return None;
    }
    let ip = Ipv4Addr::new(out[16], out[17], out[18], out[19]);
    let (sid, rip) = (SERVER.octets(), ip.octets());
    let r = client_msg(
        n,
        xid,
        NONE,
        &[
            (opt::MESSAGE_TYPE, &[3]),
            (opt::SERVER_ID, &sid),
            (opt::REQUESTED_IP, &rip),
            cap,
        ],
    );
    let d = e.handle(now, &meta(), &r, &mut out);
    (kind_of(&d) == Some(MessageType::Ack)).then_some(ip)
}

/// Renumbering 10,000 clients (the engine and the campaign, simulated clients and clock):
/// every client answers its FORCERENEW (REQUEST -> NAK -> DORA) and ends in the new pool,
/// none lost, no address given twice; at `rate` 1000/s the run takes 10 s of clock.
#[test]
fn forcerenew_renumbers_10000_clients_at_rate_none_lost_none_twice() {
    const N: u16 = 10_000;
    let text = |moved: bool| {
        let prefix = if moved { "02:00:00:01" } else { "aa:bb" };
        format!(
            "[server]\ninterface = \"lo\"\nlease-file = \"/unused\"\n\
             [lease]\ndefault-time = 3600\nmin-time = 60\nmax-time = 7200\n\
             [reconfigure]\nrate = 1000\n\
             [[class]]\nname = \"moved\"\nhw-prefix = \"{prefix}\"\n\
             [[subnet]]\ncidr = \"10.0.0.0/8\"\n\
             [[subnet.pool]]\nrange = \"10.1.0.1-10.1.39.255\"\ndeny = [\"moved\"]\n\
             [[subnet.pool]]\nrange = \"10.2.0.1-10.2.39.255\"\nallow = [\"moved\"]\n"
        )
    };
    let cfg = Arc::new(xdhcpd_config::parse(&text(false), "t.toml").expect("config"));
    let dir = tempfile::tempdir().expect("tempdir");
    let pools: Vec<PoolSpec> = cfg
        .pool_specs()
        .into_iter()
        .map(|(id, first, last)| PoolSpec { id, first, last })
        .collect();
    let (table, _) = LeaseTable::open(
        &dir.path().join("l.db"),
        &pools,
        &OpenOptions {
            now: T0,
            ..OpenOptions::default()
        },
    )
    .expect("open");
    let table = Arc::new(table);
    let book = Arc::new(ReconfBook::new(table.len()));
    let shared = EngineShared::new(cfg.clone(), table.clone(), SERVER)
        .with_reconfigure(&SECRET, book.clone());
    let mut e = Engine::new(Arc::new(shared), 0, Arc::new(EngineStats::default()));
    let mut addr_of = std::collections::HashMap::new();
    for n in 0..N {
        let ip = dora(&mut e, n, u32::from(n), T0).expect("first lease");
        assert_eq!(ip.octets()[1], 1, "old pool");
        addr_of.insert(ip, n);
    }
    // Renumber (reload: the clients' class now draws from the new pool only) and trigger all.
    let cfg2 = Arc::new(xdhcpd_config::parse(&text(true), "t.toml").expect("config"));
    let policy = cfg2.reconfigure.clone().expect("section");
    e.set_shared(Arc::new(
        EngineShared::new(cfg2, table.clone(), SERVER).with_reconfigure(&SECRET, book.clone()),
    ));
    let mut r = Reconfigurer::new(policy);
    for (slot, l) in table.iter() {
        if l.state == LeaseState::Active {
            assert!(r.trigger(slot));
        }
    }
    let keys = ReconfKeys::new(&SECRET);
    let mut out = Vec::new();
    let mut buf = [0u8; 600];
    let mut reply = vec![0u8; 1500];
    let mut moved = std::collections::HashMap::new();
    let start = ms(T0 + 1);
    let mut t = start;
    let mut last_send = start;
    while (r.queued() > 0 || r.active() > 0) && t < start + 60_000 {
        r.poll(t, &table, &mut out);
        let now = (t / 1000) as u32;
        for a in out.drain(..) {
            let Action::Send { slot, lease, .. } = a else {
                continue;
            };
            last_send = t;
            // The client checks the signature and xid, then renews.
            let (xid, g) = book.get(slot);
            let ri = book_ri(&table, slot);
            let (len, _) =
                build_forcerenew(&mut buf, &lease, &ri, xid, g, SERVER, t, &keys, r.policy())
                    .expect("fits");
            assert!(verify_forcerenew(
                &buf[..len],
                &keys.key_for(&lease.client, lease.addr)
            ));
            let n = addr_of[&lease.addr];
            let m = RxMeta {
                local_addr: SERVER,
                src_ip: lease.addr,
                dst_ip: SERVER,
            };
            let d = e.handle(
                now,
                &m,
                &client_msg(n, xid, lease.addr, &[(opt::MESSAGE_TYPE, &[3])]),
                &mut reply,
            );
            assert_eq!(kind_of(&d), Some(MessageType::Nak), "client {n}: {d:?}");
            let ip = dora(&mut e, n, xid.wrapping_add(1), now).expect("new lease");
            assert!(moved.insert(n, ip).is_none(), "client {n} renumbered twice");
        }
        t += 10;
    }
    assert_eq!(moved.len(), usize::from(N), "none lost");
    let distinct: std::collections::HashSet<_> = moved.values().collect();
    assert_eq!(distinct.len(), usize::from(N), "no address given twice");
    assert!(
        moved.values().all(|ip| ip.octets()[1] == 2),
        "all in the new pool"
    );
    let secs = (last_send - start) as f64 / 1000.0;
    assert!(
        (9.0..=10.5).contains(&secs),
        "rate 1000/s: {secs} s of clock"
    );
    eprintln!("renumbered {N} clients in {secs:.2} s of (simulated) clock at rate 1000/s");
    assert_eq!(
        r.stats.succeeded.load(std::sync::atomic::Ordering::Relaxed),
        u64::from(N)
    );
    assert!(!book.any_flagged());
}

#[test]
fn forcerenew_subnet_overrides_the_global_schedule() {
    // Global 8 x 2 s; the second subnet: 2 sends, first retry after 300 ms.
    let text = format!(
        "{}\n[[subnet]]\ncidr = \"10.5.0.0/24\"\nreconfigure-retries = 2\nreconfigure-first-retry-ms = 300\n\
         [[subnet.pool]]\nrange = \"10.5.0.10-10.5.0.20\"\n",
        cfg(SECTION)
    );
    let cfg = xdhcpd_config::parse(&text, "t.toml").expect("config");
    let mut f = fixture(SECTION);
    let (_, slot, _) = bind(&mut f, 1, true, T0);
    // The fixture's table has no 10.5.0.0/24 pool: map the override onto the bound slot's pool.
    let mut over = Reconfigurer::overrides_of(&cfg);
    assert_eq!(over.len(), 1, "one pool overridden");
    let o = *over.values().next().expect("override");
    assert_eq!((o.retries, o.first_retry_ms), (Some(2), Some(300)));
    over.clear();
    over.insert(f.table.pool_of_slot(slot), o);
    let mut r = Reconfigurer::new(f.policy.clone());
    r.set_overrides(over);
    r.trigger(slot);
    let acts = drive(&mut r, &f.table, ms(T0), ms(T0 + 5));
    assert_eq!(send_times(&acts), vec![ms(T0), ms(T0) + 300]);
    assert!(acts.iter().any(
        |(t, a)| *t == ms(T0) + 900 && matches!(a, Action::Aborted(_, AbortOutcome::Restored))
    ));
}

/// `POST /v1/reconfigure {"class": ..}`: a bound client's class membership is judged from
/// what its binding keeps (hardware address, client id, stored option 82, the relay of its
/// last ACK, its registration group); a class on vendor-class / user-class cannot select.
#[test]
fn reconfigure_class_selector_judges_the_binding() {
    let text = r#"
[server]
interface = "lo"
lease-file = "/unused"
[lease]
default-time = 3600
min-time = 60
max-time = 7200
[reconfigure]
[[class]]
name = "oui"
hw-prefix = "02:aa:bb"
[[class]]
name = "port7"
circuit-id = "port-7"
[[class]]
name = "relayed"
giaddr = "10.9.0.0/16"
[[class]]
name = "gold"
[[class]]
name = "phones"
vendor-class = "SIP-phone"
[[subnet]]
cidr = "10.0.0.0/24"
router = ["10.0.0.1"]
[[subnet.pool]]
range = "10.0.0.10-10.0.0.20"
"#;
    let cfg = xdhcpd_config::parse(text, "t.toml").expect("test config");
    let class = |n: &str| {
        cfg.classes
            .iter()
            .find(|c| c.name == n)
            .unwrap_or_else(|| panic!("class {n}"))
    };
    fn ri(l: &lease_store::Lease) -> &[u8] {
        l.inline_relay_agent_info().unwrap_or_default()
    }
    let mut l = lease_store::Lease::free(Ipv4Addr::new(10, 0, 0, 10));
    l.state = LeaseState::Active;
    l.htype = 1;
    l.hlen = 6;
    l.chaddr[..6].copy_from_slice(&[2, 0xaa, 0xbb, 0, 0, 1]);
    l.client = lease_store::ClientKey::from_hw(1, &[2, 0xaa, 0xbb, 0, 0, 1]);
    assert!(binding_in_class(class("oui"), &l, ri(&l), NONE, None));
    assert!(!binding_in_class(class("port7"), &l, ri(&l), NONE, None));
    assert!(!binding_in_class(class("relayed"), &l, ri(&l), NONE, None));
    assert!(!binding_in_class(class("gold"), &l, ri(&l), NONE, None));
    // Option 82 kept with the binding: circuit-id sub-option 1.
    assert!(l.set_relay_agent_info(&[1, 6, b'p', b'o', b'r', b't', b'-', b'7']));
    assert!(binding_in_class(class("port7"), &l, ri(&l), NONE, None));
    // The relay of the last ACK.
    assert!(binding_in_class(
        class("relayed"),
        &l,
        ri(&l),
        Ipv4Addr::new(10, 9, 1, 1),
        None
    ));
    // The registration's group (a class without conditions has only registered members).
    let gold = class("gold").id;
    assert!(binding_in_class(
        class("gold"),
        &l,
        ri(&l),
        NONE,
        Some(Some(gold))
    ));
    assert!(!binding_in_class(
        class("gold"),
        &l,
        ri(&l),
        NONE,
        Some(None)
    ));
    l.chaddr[1] = 0xab;
    assert!(!binding_in_class(class("oui"), &l, ri(&l), NONE, None));
    assert_eq!(class_unselectable(class("oui")), None);
    let why = class_unselectable(class("phones")).expect("vendor-class is not kept");
    assert!(
        why.contains("phones") && why.contains("vendor-class"),
        "{why}"
    );
}

/// A failover partner's table as the failover rules see it (the daemon's `TableStore`).
struct PartnerStore<'a>(&'a LeaseTable);

impl xdhcpd_failover::BindingStore for PartnerStore<'_> {
    fn read(&self, addr: Ipv4Addr) -> Option<lease_store::Lease> {
        self.0.slot_of(addr).map(|s| self.0.read(s))
    }
    fn update<R>(
        &mut self,
        addr: Ipv4Addr,
        f: impl FnOnce(&mut lease_store::Lease) -> R,
    ) -> Option<(R, bool)> {
        let slot = self.0.slot_of(addr)?;
        Some(self.0.update_tracked(slot, f))
    }
    fn for_each(&self, mut f: impl FnMut(&lease_store::Lease)) {
        for (_, l) in self.0.iter() {
            f(&l);
        }
    }
}

/// `slot`'s record of `from` carried to `to` as one BNDUPD transaction over the wire (to an
/// xdhcpd partner when `xdhcpd`, else as to ISC dhcpd) and applied by the partner's rules.
fn send_binding(from: &LeaseTable, slot: Slot, to: &LeaseTable, xdhcpd: bool, now: u32) {
    use xdhcpd_failover::codec::{decode_message, Body, Message};
    let b = xdhcpd_failover::store::lease_to_binding(&from.read(slot)).expect("exchanged");
    let txn = xdhcpd_failover::engine::txn_for_partner(&b, xdhcpd);
    let bytes = Message::new(now, 1, Body::BndUpd(vec![txn]))
        .to_bytes()
        .expect("encodes");
    let m = decode_message(&bytes, 0).expect("decodes");
    let Body::BndUpd(txns) = m.body else {
        panic!("not a BNDUPD");
    };
    let got = xdhcpd_failover::engine::binding_from_txn(&txns[0], now).expect("a valid binding");
    let rules = xdhcpd_failover::StoreRules {
        role: xdhcpd_failover::Role::Secondary,
        expiry_grace: 0,
    };
    let mut sync = xdhcpd_failover::BindingSync::<u32>::new(rules);
    sync.apply(&mut PartnerStore(to), now, &got)
        .expect("the partner accepts the update");
}

#[test]
fn failover_partner_naks_a_reconfiguring_client_the_primary_flagged() {
    let section = "[reconfigure]\nretries = 1\nfirst-retry-ms = 1000\ndeferred-nak = true\n";
    let mut a = fixture(section);
    let mut b = fixture(section);
    let (ip, slot, _) = bind(&mut a, 1, true, T0);
    send_binding(&a.table, slot, &b.table, true, T0);
    assert_eq!(
        b.table.read(slot).state,
        LeaseState::Active,
        "partner holds it"
    );
    assert!(!b.book.any_flagged());
    // The primary's campaign: FORCERENEW unanswered, deferred-nak keeps the flag.
    let mut r = Reconfigurer::new(a.policy.clone());
    r.trigger(slot);
    let acts = drive(&mut r, &a.table, ms(T0), ms(T0 + 5));
    assert!(acts
        .iter()
        .any(|(_, x)| matches!(x, Action::Aborted(_, AbortOutcome::Deferred))));
    let mut changed = Vec::new();
    r.take_changed(&mut changed);
    assert_eq!(
        changed,
        vec![slot],
        "the flag set is reported for the partner"
    );
    assert!(xdhcpd_failover::store::unacked(&a.table.read(slot)));
    // To ISC dhcpd the flag does not travel (it would ignore it).
    send_binding(&a.table, slot, &b.table, false, T0 + 6);
    assert!(!is_reconfiguring(&b.table.read(slot)));
    // To an xdhcpd partner it does; the partner's engine now looks the client up.
    send_binding(&a.table, slot, &b.table, true, T0 + 6);
    assert!(is_reconfiguring(&b.table.read(slot)), "flag on the partner");
    assert!(b.book.any_flagged(), "counted by the partner's table hook");
    // The primary is gone; the client renews to the partner: NAK, binding deleted.
    let (d, _) = renew(&mut b, 1, ip, T0 + 1800);
    assert_eq!(kind_of(&d), Some(MessageType::Nak), "{d:?}");
    let l = b.table.read(slot);
    assert_eq!(l.state, LeaseState::Released);
    assert!(!b.book.any_flagged());
    assert_eq!(b.stats.snapshot().reconfiguring_naked, 1);
    // The client starts over and the partner serves it (new configuration).
    let (ip2, _, _) = bind(&mut b, 1, true, T0 + 1801);
    assert_eq!(
        b.table.read(b.table.slot_of(ip2).expect("slot")).state,
        LeaseState::Active
    );
    // The deletion goes back to the primary like any RELEASE; its flag goes with it.
    send_binding(&b.table, slot, &a.table, true, T0 + 1802);
    assert!(!is_reconfiguring(&a.table.read(slot)));
    assert!(!a.book.any_flagged());
}

/// The option 82 stored with the binding in `slot` (whole), for a FORCERENEW.
fn book_ri(table: &lease_store::LeaseTable, slot: lease_store::Slot) -> Vec<u8> {
    table.read_with_var(slot).1.relay_agent_info().to_vec()
}
