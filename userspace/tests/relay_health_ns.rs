//! Relay health check (issue 15 item 3, CPNR `rhc-*`) in network namespaces (root; see
//! `common/require.rs`).
//!
//! An xdhcpd pair on the XDP path (A primary, B secondary, no load balancing,
//! `load-balance-max-seconds = 0`, `relay-health-check = "v4"`) reaches NORMAL. A relay agent
//! (a UDP socket on port 67 in the client namespace, 10.77.0.50, with both servers as helper
//! addresses) takes clients through DISCOVER/REQUEST: all go to the primary, and the secondary
//! sees the relay healthy (REQUESTs naming the primary come through it). Then an nftables rule
//! in the hub's bridge drops everything between the relay and the primary only. The secondary
//! must notice (its DISCOVERs for the partner are followed by no REQUEST naming it), report the
//! relay interrupted (`ctl failover relays`, the `relay-interrupted` alarm, `/metrics`), and
//! answer the relay's clients with leases no longer than MCLT, while the pair stays NORMAL and
//! the primary reports nothing wrong. After the rule is removed the primary is heard again and
//! the secondary reports the relay healthy (the alarm is cleared).

#[path = "common/netns.rs"]
mod netns;

#[path = "common/require.rs"]
mod require;

#[path = "daemon_common/mod.rs"]
mod daemon_common;

#[path = "failover_common/mod.rs"]
mod failover_common;

use std::net::{Ipv4Addr, SocketAddrV4, UdpSocket};
use std::path::Path;
use std::process::Command;
use std::time::{Duration, Instant};

use daemon_common::{output, read_text, xdhcpd_bin, Res};
use failover_common::*;
use require::{require, Capability};
use xdhcpd_dhcpv4::wire::{opt, Message, MessageType, MAGIC_COOKIE, OP_BOOTREQUEST};

const RELAY: Ipv4Addr = Ipv4Addr::new(10, 77, 0, 50);
const MCLT: u32 = 30;

/// The relay health settings both servers run (short, for a test).
const RHC: &str = "load-balance-max-seconds = 0\nrelay-health-check = \"v4\"\n\
                   rhc-unresponsive-time = 2\nrhc-request-count = 3\nrhc-elapsed-time = 2\n\
                   rhc-response-time = 20\nrhc-restart-time = 30\nrhc-warning-interval = 5\n";

fn mac(i: u16) -> [u8; 6] {
    [0x02, 0x52, 0x48, 0, (i >> 8) as u8, i as u8]
}

/// A relayed BOOTREQUEST (giaddr = RELAY, hops 1) from client `m` with `secs`.
fn packet(xid: u32, m: &[u8; 6], secs: u16, opts: &[(u8, &[u8])]) -> Vec<u8> {
    let mut b = vec![0u8; 240];
    b[0] = OP_BOOTREQUEST;
    b[1] = 1;
    b[2] = 6;
    b[3] = 1;
    b[4..8].copy_from_slice(&xid.to_be_bytes());
    b[8..10].copy_from_slice(&secs.to_be_bytes());
    b[24..28].copy_from_slice(&RELAY.octets());
    b[28..34].copy_from_slice(m);
    b[236..240].copy_from_slice(&MAGIC_COOKIE);
    let mut cid = vec![1u8];
    cid.extend_from_slice(m);
    for (c, v) in opts.iter().chain([(opt::CLIENT_ID, cid.as_slice())].iter()) {
        b.push(*c);
        b.push(v.len() as u8);
        b.extend_from_slice(v);
    }
    b.push(opt::END);
    b
}

/// An answer: its type, the server that sent it (option 54), the address, the lease time.
#[derive(Debug, Clone, Copy)]
struct Answer {
    kind: MessageType,
    server: Ipv4Addr,
    yiaddr: Ipv4Addr,
    lease: Option<u32>,
}

fn parse(b: &[u8]) -> Option<Answer> {
    let m = Message::new_checked(b).ok()?;
    let s = m.summary().ok()?;
    Some(Answer {
        kind: s.message_type?,
        server: s.server_id?,
        yiaddr: m.yiaddr(),
        lease: s.lease_time,
    })
}

/// Answers with `xid` arriving within `wait` (every server's).
fn answers(sock: &UdpSocket, xid: u32, wait: Duration) -> Res<Vec<Answer>> {
    let until = Instant::now() + wait;
    let mut out = Vec::new();
    let mut buf = [0u8; 1500];
    loop {
        let left = until.saturating_duration_since(Instant::now());
        if left.is_zero() {
            return Ok(out);
        }
        sock.set_read_timeout(Some(left.max(Duration::from_millis(1))))
            .map_err(|e| e.to_string())?;
        match sock.recv_from(&mut buf) {
            Ok((n, _)) if n >= 240 && buf[0] == 2 && buf[4..8] == xid.to_be_bytes() => {
                if let Some(a) = parse(&buf[..n]) {
                    out.push(a);
                }
            }
            Ok(_) => {}
            Err(e)
                if matches!(
                    e.kind(),
                    std::io::ErrorKind::WouldBlock | std::io::ErrorKind::TimedOut
                ) =>
            {
                return Ok(out)
            }
            Err(e) => return Err(format!("relay socket: {e}")),
        }
    }
}

/// The relay forwards to both helper addresses (whatever the bridge lets through).
fn to_both(sock: &UdpSocket, b: &[u8]) -> Res<()> {
    for s in [A_ADDR, B_ADDR] {
        let ip: Ipv4Addr = s.parse().map_err(|_| "server address")?;
        sock.send_to(b, SocketAddrV4::new(ip, 67))
            .map_err(|e| format!("sending to {ip}:67: {e}"))?;
    }
    Ok(())
}

/// One DISCOVER (secs `secs`) and, if offered, the REQUEST for the first OFFER, through the
/// relay: the server that ACKed, the address and the lease time.
fn try_lease(sock: &UdpSocket, xid: u32, m: &[u8; 6], secs: u16) -> Res<Option<Answer>> {
    to_both(sock, &packet(xid, m, secs, &[(opt::MESSAGE_TYPE, &[1])]))?;
    let offers = answers(sock, xid, Duration::from_millis(600))?;
    let Some(o) = offers.iter().find(|a| a.kind == MessageType::Offer) else {
        return Ok(None);
    };
    let (sid, ip) = (o.server.octets(), o.yiaddr.octets());
    to_both(
        sock,
        &packet(
            xid + 1,
            m,
            secs,
            &[
                (opt::MESSAGE_TYPE, &[3]),
                (opt::SERVER_ID, &sid),
                (opt::REQUESTED_IP, &ip),
            ],
        ),
    )?;
    let acks = answers(sock, xid + 1, Duration::from_millis(800))?;
    Ok(acks
        .into_iter()
        .find(|a| a.kind == MessageType::Ack && a.server == o.server))
}

/// A client that keeps trying (secs growing by 2 per attempt) until it is bound or `limit`.
fn client(sock: &UdpSocket, i: u16, limit: Duration) -> Res<Option<(Answer, Duration)>> {
    let m = mac(i);
    let t0 = Instant::now();
    let mut n = 0u16;
    while t0.elapsed() < limit {
        let xid = 0x5248_0000 | (u32::from(i) << 8) | u32::from(n * 2);
        if let Some(a) = try_lease(sock, xid, &m, n * 2)? {
            return Ok(Some((a, t0.elapsed())));
        }
        n += 1;
    }
    Ok(None)
}

/// `xdhcpd ctl failover relays [--all] --json`.
fn relays(socket: &Path, all: bool) -> Res<serde_json::Value> {
    let mut args = vec!["relays", "--json"];
    if all {
        args.push("--all");
    }
    let out = ctl(socket, &args)?;
    serde_json::from_str(&out).map_err(|e| format!("relays JSON: {e}: {out}"))
}

fn relay_state(socket: &Path) -> Res<Option<String>> {
    let v = relays(socket, true)?;
    Ok(v["relays"].as_array().and_then(|rs| {
        rs.iter()
            .find(|r| r["relay"] == RELAY.to_string())
            .and_then(|r| r["state"].as_str().map(str::to_string))
    }))
}

fn metrics(socket: &Path) -> Res<String> {
    let bin = xdhcpd_bin()?;
    let out = output(
        Command::new("timeout")
            .arg("10")
            .arg(&bin)
            .args(["ctl", "--socket"])
            .arg(socket)
            .arg("metrics"),
    )?;
    Ok(out.stdout)
}

fn metric(text: &str, name_and_labels: &str) -> Option<f64> {
    text.lines()
        .find(|l| l.starts_with(name_and_labels))
        .and_then(|l| l.rsplit(' ').next())
        .and_then(|v| v.parse().ok())
}

/// Drops relay <-> primary in the hub's bridge (the primary's XDP program runs before its own
/// netfilter, so the cut is made on the way there).
fn cut(bed: &PairBed) -> Res<()> {
    let rules = format!(
        "table bridge rhc_cut {{\n  chain relay_cut {{\n    type filter hook forward priority 0;\n    \
         ip saddr {RELAY} ip daddr {A_ADDR} drop\n    ip saddr {A_ADDR} ip daddr {RELAY} drop\n  \
         }}\n}}\n"
    );
    let file = bed.path("cut.nft");
    daemon_common::write_file(&file, &rules)?;
    bed.hub
        .exec("nft", &["-f", &file.to_string_lossy()])
        .map_err(|e| format!("nft: {e}"))?;
    Ok(())
}

fn repair(bed: &PairBed) -> Res<()> {
    bed.hub
        .exec("nft", &["delete", "table", "bridge", "rhc_cut"])
        .map_err(|e| format!("nft: {e}"))?;
    Ok(())
}

#[test]
fn relay_health_failover_secondary_takes_over_a_relay_cut_from_the_primary() {
    if !require(&[
        Capability::Root,
        Capability::Program("timeout"),
        Capability::Program("ip"),
        Capability::Program("nft"),
    ]) {
        return;
    }
    if let Err(e) = scenario() {
        panic!("{e}");
    }
}

fn scenario() -> Res<()> {
    let bed = PairBed::with_prefix("relayhc")?;
    bed.c
        .add_addr(&bed.lc.a, &format!("{RELAY}/16"))
        .map_err(|e| e.to_string())?;
    let t = Timers {
        mclt: MCLT,
        split: None,
    };
    let s = xd_sides_with(&bed, &t, |_, c| format!("{c}{RHC}"))?;
    let mut a = Xd::start(&bed.a, &s.a_cfg, &s.a_db, &s.a_sock, &bed.path("a.log"))?;
    let mut b = Xd::start(&bed.b, &s.b_cfg, &s.b_db, &s.b_sock, &bed.path("b.log"))?;
    a.wait_state("NORMAL", "NORMAL", Duration::from_secs(30))?;
    b.wait_state("NORMAL", "NORMAL", Duration::from_secs(10))?;
    let primary: Ipv4Addr = A_ADDR.parse().map_err(|_| "A_ADDR")?;
    let secondary: Ipv4Addr = B_ADDR.parse().map_err(|_| "B_ADDR")?;
    let sock = bed
        .c
        .run(|| -> Res<UdpSocket> {
            UdpSocket::bind(SocketAddrV4::new(RELAY, 67))
                .map_err(|e| format!("binding {RELAY}:67: {e}"))
        })
        .map_err(|e| e.to_string())??;
    let log = |x: &Xd| read_text(&x.log).unwrap_or_default();

    // 1. Healthy: every client is the primary's; the secondary sees REQUESTs naming it.
    for i in 0..4 {
        let (ack, _) = client(&sock, i, Duration::from_secs(10))?
            .ok_or_else(|| format!("client {i} got no lease while the relay is healthy"))?;
        assert_eq!(ack.server, primary, "client {i}: {ack:?}");
    }
    assert_eq!(relay_state(&b.socket)?.as_deref(), Some("ok"));
    let v = relays(&b.socket, false)?;
    assert_eq!(v["relays"].as_array().map(Vec::len), Some(0), "{v}");
    assert_eq!(v["takeovers"], 0, "{v}");

    // 2. The relay loses the primary.
    cut(&bed)?;
    let cut_at = Instant::now();
    let mut by_b = Vec::new();
    for i in 10..16 {
        let (ack, waited) = client(&sock, i, Duration::from_secs(20))?.ok_or_else(|| {
            format!(
                "client {i} got no lease {} s after the cut; B relays: {:?}\nB log:\n{}",
                cut_at.elapsed().as_secs(),
                relays(&b.socket, true),
                log(&b)
            )
        })?;
        assert_eq!(
            ack.server, secondary,
            "client {i} bound by {} though the relay cannot reach it",
            ack.server
        );
        // A client the secondary takes over gets no more than MCLT (a new binding).
        let lease = ack.lease.ok_or("ACK without a lease time")?;
        assert!(lease <= MCLT, "client {i}: lease {lease} s > MCLT {MCLT}");
        by_b.push((i, waited));
    }
    // The first client waited for the detection (rhc-unresponsive-time, rhc-request-count);
    // the later ones are answered at once (their secs reaches rhc-elapsed-time at the 2nd try).
    let first = by_b[0].1;
    assert!(
        first >= Duration::from_secs(2) && first <= Duration::from_secs(15),
        "first client after the cut waited {first:?}"
    );
    assert!(
        by_b[1..].iter().all(|(_, w)| *w <= Duration::from_secs(5)),
        "{by_b:?}"
    );
    eprintln!(
        "relay_health_ns: after the cut, clients bound by the secondary after {:?}",
        by_b.iter().map(|(_, w)| *w).collect::<Vec<_>>()
    );
    let v = relays(&b.socket, false)?;
    let r = v["relays"]
        .as_array()
        .and_then(|rs| rs.iter().find(|r| r["relay"] == RELAY.to_string()))
        .ok_or_else(|| format!("the secondary does not list the relay as interrupted: {v}"))?;
    assert_eq!(r["state"], "interrupted", "{v}");
    assert!(r["served_for_partner"].as_u64().unwrap_or(0) >= 6, "{v}");
    assert!(v["takeovers"].as_u64().unwrap_or(0) >= 1, "{v}");
    // The primary hears nothing from the relay: nothing wrong on its side.
    assert_ne!(relay_state(&a.socket)?.as_deref(), Some("interrupted"));
    assert_eq!(
        relays(&a.socket, false)?["relays"].as_array().map(Vec::len),
        Some(0)
    );
    let m = metrics(&b.socket)?;
    assert!(
        metric(&m, "xdhcpd_rhc_discovers_total{outcome=\"served\"}").unwrap_or(0.0) >= 6.0,
        "{m}"
    );
    assert_eq!(
        metric(&m, "xdhcpd_rhc_relays{state=\"interrupted\"}"),
        Some(1.0),
        "{m}"
    );
    assert!(metric(&m, "xdhcpd_rhc_takeovers_total").unwrap_or(0.0) >= 1.0);
    // The alarm (checked every 5 s by the main loop).
    daemon_common::wait_for(
        "the relay-interrupted alarm",
        Duration::from_secs(12),
        || {
            Ok(log(&b)
                .lines()
                .any(|l| l.contains("ALARM relay 10.77.0.50 seems unable to reach"))
                .then_some(()))
        },
    )?;
    b.wait_state("NORMAL", "NORMAL", Duration::from_secs(2))?;
    a.wait_state("NORMAL", "NORMAL", Duration::from_secs(2))?;

    // 3. Repair: the primary's OFFERs come back. A new client's first DISCOVER (secs 0, below
    // rhc-elapsed-time) is answered by the primary alone, its REQUEST names the primary, and the
    // secondary, seeing it through the relay, ends the takeover: the relay is healthy again.
    repair(&bed)?;
    let repaired = Instant::now();
    let mut i = 20;
    let mut back_to_a = false;
    while repaired.elapsed() < Duration::from_secs(30) {
        if let Some((ack, _)) = client(&sock, i, Duration::from_secs(10))? {
            back_to_a |= ack.server == primary;
        }
        i += 1;
        if back_to_a && relay_state(&b.socket)?.as_deref() == Some("ok") {
            break;
        }
    }
    assert!(
        back_to_a,
        "no client was served by the primary after the repair"
    );
    eprintln!(
        "relay_health_ns: a client served by the primary {:?} after the repair",
        repaired.elapsed()
    );
    assert_eq!(
        relay_state(&b.socket)?.as_deref(),
        Some("ok"),
        "the secondary still reports the relay: {:?}",
        relays(&b.socket, true)
    );
    daemon_common::wait_for("the relay alarm cleared", Duration::from_secs(12), || {
        Ok(log(&b)
            .contains("alarm cleared: relay 10.77.0.50 reaches the failover partner again")
            .then_some(()))
    })?;
    let a_log = a.stop()?;
    let b_log = b.stop()?;
    assert!(
        b_log.contains("relay health check on"),
        "the secondary's start-up line:\n{b_log}"
    );
    assert!(!a_log.contains("ALARM relay"), "primary:\n{a_log}");
    Ok(())
}
