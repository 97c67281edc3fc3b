//! Bulk leasequery (RFC 6926) and active leasequery (RFC 7724) asked of the SECONDARY of an
//! xdhcpd pair, in network namespaces (root; see `common/require.rs`), XDP data path.
//!
//! A and B (primary, secondary; no load balancing) reach NORMAL, both with
//! `[bulk-leasequery]`. An active subscriber (`xdhcpd leasequery --active`) connects to the
//! secondary. `xdhcp-loadgen` in relay mode (giaddr 10.77.0.50, option 82 with circuit-id,
//! remote-id and the relay-id `olt-rhc`) runs DORA + renew against the PRIMARY only. Every
//! binding the secondary holds came from the primary's binding updates. Then:
//! - the subscriber on the secondary has seen every change the primary ACKed (each ACK
//!   covered by an ACTIVE line for that address and client ending no earlier), per address in
//!   order (lease ends never go back), although the secondary was restarted (SIGKILL, then
//!   started again on its files) while the load ran: the subscriber's connection ended, it
//!   reconnected to the restarted secondary with query-start-time and
//!   got the catch-up (CatchUpComplete) of what changed meanwhile, including the bindings the
//!   primary made while the secondary was down and sent it once the pair reconnected;
//! - a bulk leasequery by relay-id to the secondary returns every address the loadgen was
//!   ACKed, each with the relay's data, and the same set as the primary returns.

#[path = "common/netns.rs"]
mod netns;

#[path = "common/require.rs"]
mod require;

#[path = "daemon_common/mod.rs"]
mod daemon_common;

#[path = "failover_common/mod.rs"]
mod failover_common;

#[path = "lease_common/mod.rs"]
mod lease_common;

use std::collections::{BTreeSet, HashMap};
use std::net::Ipv4Addr;
use std::time::Duration;

use daemon_common::{read_text, wait_for, xdhcpd_bin, Proc, Res};
use failover_common::*;
use lease_common::{loadgen_bin, parse_ack, Ack};
use require::{require, Capability};

/// The requestor's address (subscriber and bulk queries) and the relay's, both on the client
/// namespace's link.
const ASKER: &str = "10.77.0.9";
const RELAY: &str = "10.77.0.50";
const RELAY_ID: &str = "olt-rhc";

/// One binding line of a subscriber or bulk answer.
#[derive(Debug, Clone)]
struct Line {
    active: bool,
    addr: Ipv4Addr,
    client: Option<String>,
    expiry: Option<u32>,
    relay_id: Option<String>,
}

fn parse_lines(text: &str) -> Vec<Line> {
    let mut v = Vec::new();
    for l in text.lines() {
        let mut w = l.split_whitespace();
        let active = match w.next() {
            Some("ACTIVE") => true,
            Some("UNASSIGNED") => false,
            _ => continue,
        };
        let Some(addr) = w.next().and_then(|a| a.parse().ok()) else {
            continue;
        };
        let mut line = Line {
            active,
            addr,
            client: None,
            expiry: None,
            relay_id: None,
        };
        for f in w {
            if let Some(c) = f.strip_prefix("client-id=") {
                line.client = Some(c.to_string());
            } else if let Some(e) = f.strip_prefix("expiry=") {
                line.expiry = e.parse().ok();
            } else if let Some(r) = f.strip_prefix("relay-id=") {
                line.relay_id = Some(r.to_string());
            }
        }
        v.push(line);
    }
    v
}

/// ACKs not covered by an ACTIVE line for that address and client ending no earlier.
fn uncovered<'a>(acks: &'a [Ack], lines: &[Line]) -> Vec<&'a Ack> {
    let mut best: HashMap<(Ipv4Addr, &str), u32> = HashMap::new();
    for l in lines.iter().filter(|l| l.active) {
        if let (Some(c), Some(e)) = (&l.client, l.expiry) {
            let b = best.entry((l.addr, c.as_str())).or_insert(0);
            *b = (*b).max(e);
        }
    }
    acks.iter()
        .filter(|a| {
            best.get(&(a.addr, a.client.as_str()))
                .is_none_or(|&e| e < a.min_expiry())
        })
        .collect()
}

/// Addresses whose ACTIVE lines go back in time for the same client.
fn out_of_order(lines: &[Line]) -> Vec<Ipv4Addr> {
    let mut last: HashMap<(Ipv4Addr, String), u32> = HashMap::new();
    let mut bad = Vec::new();
    for l in lines.iter().filter(|l| l.active) {
        let (Some(c), Some(e)) = (&l.client, l.expiry) else {
            continue;
        };
        let prev = last.entry((l.addr, c.clone())).or_insert(0);
        if e < *prev {
            bad.push(l.addr);
        }
        *prev = (*prev).max(e);
    }
    bad
}

/// `xdhcpd leasequery --bulk --relay-id RELAY_ID` to `server` from the client namespace.
fn bulk_by_relay_id(bed: &PairBed, server: &str) -> Res<String> {
    let bin = xdhcpd_bin()?;
    let out = bed
        .c
        .command(&bin.to_string_lossy())
        .args([
            "leasequery",
            "--bulk",
            "--server",
            server,
            "--timeout-ms",
            "10000",
            "--relay-id",
            RELAY_ID,
        ])
        .output()
        .map_err(|e| format!("running xdhcpd leasequery --bulk: {e}"))?;
    if !out.status.success() {
        return Err(format!(
            "bulk leasequery to {server} failed: {} {}",
            String::from_utf8_lossy(&out.stdout),
            String::from_utf8_lossy(&out.stderr)
        ));
    }
    Ok(String::from_utf8_lossy(&out.stdout).into_owned())
}

fn with_leasequery(primary: bool, c: String) -> String {
    let me = if primary { A_ADDR } else { B_ADDR };
    let c = c.replacen(
        "[server]\n",
        &format!("[server]\nleasequery-allow = [\"{ASKER}\", \"{RELAY}\"]\n"),
        1,
    );
    format!(
        "{c}\n[bulk-leasequery]\nlisten = \"{me}:67\"\nmax-connections = 4\n\
         idle-timeout = 30\nactive-queue = 4096\n"
    )
}

#[test]
fn failover_bulk_and_active_leasequery_from_the_secondary_see_the_primarys_bindings() {
    if !require(&[
        Capability::Root,
        Capability::Program("timeout"),
        Capability::Program("ip"),
    ]) {
        return;
    }
    if let Err(e) = scenario() {
        panic!("{e}");
    }
}

fn scenario() -> Res<()> {
    let started = std::time::Instant::now();
    let lg = loadgen_bin()?;
    let bed = PairBed::with_prefix("relayhcl")?;
    for a in [ASKER, RELAY] {
        bed.c
            .add_addr(&bed.lc.a, &format!("{a}/16"))
            .map_err(|e| e.to_string())?;
    }
    let t = Timers {
        mclt: 600,
        split: None,
    };
    let s = xd_sides_with(&bed, &t, with_leasequery)?;
    let mut a = Xd::start(&bed.a, &s.a_cfg, &s.a_db, &s.a_sock, &bed.path("a.log"))?;
    let mut b = Xd::start(&bed.b, &s.b_cfg, &s.b_db, &s.b_sock, &bed.path("b.log"))?;
    a.wait_state("NORMAL", "NORMAL", Duration::from_secs(30))?;
    b.wait_state("NORMAL", "NORMAL", Duration::from_secs(10))?;
    // Let the pool balance settle: its FREE->BACKUP updates are changes too, not under test.
    a.wait_drained(Duration::from_secs(20))?;

    // The subscriber on the secondary, live from now; it keeps reconnecting (every 100 ms)
    // while the secondary restarts.
    let bin = xdhcpd_bin()?;
    let sub_log = bed.path("subscriber.out");
    let mut sub = Proc::spawn(
        "subscriber",
        bed.c.command(&bin.to_string_lossy()).args([
            "leasequery",
            "--active",
            "--server",
            B_ADDR,
            "--timeout-ms",
            "5000",
            "--duration-s",
            "120",
            "--max-reconnects",
            "1000",
        ]),
        &sub_log,
    )?;
    std::thread::sleep(Duration::from_millis(1500));
    sub.check_alive()?;

    // The loadgen relays through 10.77.0.50 to the primary only.
    let acked = bed.path("acked.log");
    let mut load = Proc::spawn(
        "xdhcp-loadgen",
        bed.c.command("timeout").args([
            "90",
            &lg.to_string_lossy(),
            "-i",
            &bed.lc.a,
            "--io",
            "packet",
            "--scenario",
            "dora-renew",
            "--relay",
            RELAY,
            "--relay-id",
            RELAY_ID,
            "--server",
            A_ADDR,
            "--clients",
            "300",
            "--rate",
            "200",
            "--duration",
            "8s",
            "--timeout-ms",
            "1000",
            "--retries",
            "2",
            "--quiet",
            "--acked-log",
            &acked.to_string_lossy(),
        ]),
        &bed.path("loadgen.log"),
    )?;
    // Mid-run (every client bound, renewals going on) the secondary stops and comes back.
    std::thread::sleep(Duration::from_millis(2500));
    let b_down_at = daemon_common::unix_now();
    // A crash (SIGKILL): the primary goes COMMUNICATIONS-INTERRUPTED, not PARTNER-DOWN (a
    // graceful stop would make it PARTNER-DOWN and the restarted secondary wait out the MCLT
    // in RECOVER-WAIT), and the subscriber's connection ends without a status.
    b.kill()?;
    std::thread::sleep(Duration::from_millis(1000));
    let mut b = Xd::start(&bed.b, &s.b_cfg, &s.b_db, &s.b_sock, &bed.path("b2.log"))?;
    let b_up_at = daemon_common::unix_now();
    let st = load.wait_exit(Duration::from_secs(60))?;
    if !st.success() {
        // What it ACKed is what is checked; say why it ended so.
        eprintln!("loadgen ended with {st}: {}", load.log_text());
    }
    a.wait_state("NORMAL", "NORMAL", Duration::from_secs(30))?;
    b.wait_state("NORMAL", "NORMAL", Duration::from_secs(10))?;
    let acks: Vec<Ack> = read_text(&acked)
        .map_err(|e| format!("{e}; loadgen: {}", load.log_text()))?
        .lines()
        .map(parse_ack)
        .collect::<Res<_>>()?;
    let addrs: BTreeSet<Ipv4Addr> = acks.iter().map(|x| x.addr).collect();
    if addrs.len() < 250 {
        return Err(format!(
            "only {} addresses ACKed ({} ACKs): {}",
            addrs.len(),
            acks.len(),
            load.log_text()
        ));
    }
    // Every binding reached the secondary.
    a.wait_drained(Duration::from_secs(30))?;

    // 1. The active subscriber on the secondary saw every change, in order.
    wait_for(
        "the secondary's subscriber to cover every ACK",
        Duration::from_secs(20),
        || {
            sub.check_alive()?;
            let lines = parse_lines(&read_text(&sub_log)?);
            Ok(uncovered(&acks, &lines).is_empty().then_some(()))
        },
    )
    .map_err(|e| {
        let lines = parse_lines(&read_text(&sub_log).unwrap_or_default());
        format!(
            "{e}: {} of {} ACKs missed, e.g. {:?}",
            uncovered(&acks, &lines).len(),
            acks.len(),
            uncovered(&acks, &lines)
                .into_iter()
                .take(5)
                .collect::<Vec<_>>()
        )
    })?;
    let sub_text = read_text(&sub_log)?;
    let lines = parse_lines(&sub_text);
    let bad = out_of_order(&lines);
    assert!(bad.is_empty(), "lease ends went back for {bad:?}");
    // It was cut by the restart, reconnected with a start time, and caught up after that.
    let reconnect = sub_text
        .lines()
        .position(|l| l.starts_with("RECONNECT start-time="))
        .ok_or_else(|| format!("the subscriber never reconnected:\n{sub_text}"))?;
    let catchup = sub_text
        .lines()
        .skip(reconnect)
        .find(|l| l.starts_with("STATUS CatchUpComplete"))
        .ok_or_else(|| format!("no CatchUpComplete after the reconnect:\n{sub_text}"))?;
    let reconnects = sub_text
        .lines()
        .filter(|l| l.starts_with("RECONNECT"))
        .count();
    // ACKs made while the secondary was down: covered too (by the catch-up or later).
    let down_acks = acks
        .iter()
        .filter(|x| {
            x.unix_ms / 1000 >= u64::from(b_down_at) && x.unix_ms / 1000 <= u64::from(b_up_at)
        })
        .count();
    assert!(
        down_acks > 0,
        "no ACK while the secondary was down: the restart did not overlap the load"
    );

    // 2. Bulk leasequery by relay-id to the secondary: every ACKed address, with the relay's
    // relay-id; the primary answers the same set.
    let from_b = parse_lines(&bulk_by_relay_id(&bed, B_ADDR)?);
    let got_b: BTreeSet<Ipv4Addr> = from_b.iter().filter(|l| l.active).map(|l| l.addr).collect();
    assert_eq!(
        got_b,
        addrs,
        "secondary: {} answered, {} ACKed",
        got_b.len(),
        addrs.len()
    );
    assert!(
        from_b
            .iter()
            .all(|l| l.relay_id.as_deref() == Some(RELAY_ID)),
        "a line without the relay-id"
    );
    let from_a = parse_lines(&bulk_by_relay_id(&bed, A_ADDR)?);
    let got_a: BTreeSet<Ipv4Addr> = from_a.iter().filter(|l| l.active).map(|l| l.addr).collect();
    assert_eq!(got_a, got_b, "the partners answer different sets");

    sub.signal(libc::SIGTERM)?;
    let _ = sub.wait_exit(Duration::from_secs(5));
    a.stop()?;
    b.stop()?;
    eprintln!(
        "failover_bulk_leasequery_ns: {} addresses, {} ACKs ({down_acks} while the secondary \
         was down), subscriber: {} lines, {reconnects} reconnection attempts, {catchup:?}; {:?}",
        addrs.len(),
        acks.len(),
        lines.len(),
        started.elapsed()
    );
    Ok(())
}
