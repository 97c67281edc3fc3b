//! The daemon end to end, in network namespaces, on both data paths (`--io xdp` and
//! `--io udp`): real DHCP clients (busybox udhcpc, ISC dhclient) obtain, renew and release a
//! lease; perfdhcp completes >= 10,000 4-way exchanges with no NAK and no address given to
//! two clients; plus the start-up errors (missing eBPF object, bad configuration) and
//! `check-config`.
//!
//! Needs root and the clients' programs (see `common/require.rs`). The daemon is `XDHCPD_BIN`
//! if set, else built once (see `daemon_common::xdhcpd_bin`). Every test makes its own
//! namespaces, veth and temporary directory and removes them on Drop, also when it fails.
//! The perfdhcp tests take an exclusive lock (the machine has 2 cores); the other tests share.

#[path = "common/netns.rs"]
mod netns;

#[path = "common/require.rs"]
mod require;

mod daemon_common;

use std::cmp::Ordering;
use std::net::Ipv4Addr;
use std::path::{Path, PathBuf};
use std::process::Command;
use std::sync::{RwLock, RwLockReadGuard, RwLockWriteGuard};
use std::time::{Duration, Instant};

use daemon_common::*;
use lease_store::{Lease, LeaseState, PoolSpec};
use require::{require, Capability};

static NS_LOCK: RwLock<()> = RwLock::new(());

/// Shared slot for light tests (a panicking test must not block the others: ignore poison).
fn light() -> RwLockReadGuard<'static, ()> {
    NS_LOCK.read().unwrap_or_else(|e| e.into_inner())
}

/// Exclusive slot for the load tests.
fn heavy() -> RwLockWriteGuard<'static, ()> {
    NS_LOCK.write().unwrap_or_else(|e| e.into_inner())
}

/// Pool of the real-client tests.
const POOL_FIRST: Ipv4Addr = Ipv4Addr::new(10, 77, 1, 0);
const POOL_LAST: Ipv4Addr = Ipv4Addr::new(10, 77, 1, 255);

/// A small configuration for the real-client tests, with lease time `lease` seconds.
fn client_config(bed: &Bed, lease: u32) -> Res<PathBuf> {
    let path = bed.path("xdhcpd.toml");
    let text = format!(
        r#"[server]
interface = "{iface}"
server-id = "{SRV_ADDR}"
lease-file = "{leases}"
commit = "ack"

[lease]
default-time = {lease}
min-time = 1
max-time = 86400

[[subnet]]
cidr = "10.77.0.0/16"
router = ["{SRV_ADDR}"]
dns-servers = ["{SRV_ADDR}"]
domain-name = "test.xdhcpd"

[[subnet.pool]]
range = "{POOL_FIRST}-{POOL_LAST}"
"#,
        iface = bed.srv_if(),
        leases = bed.path("leases.db").display(),
    );
    write_file(&path, &text)?;
    Ok(path)
}

fn in_pool(a: Ipv4Addr) -> bool {
    (POOL_FIRST..=POOL_LAST).contains(&a)
}

/// Lines of a client's event log (written by its script).
fn events(path: &Path) -> Res<Vec<String>> {
    Ok(read_text(path)?.lines().map(str::to_owned).collect())
}

/// Waits for an event line `<word> <addr> ...` after the first `skip` lines; returns the
/// address and the line count at that point.
fn wait_event(
    path: &Path,
    word: &str,
    skip: usize,
    client: &mut Proc,
    limit: Duration,
) -> Res<(Option<Ipv4Addr>, usize)> {
    wait_for(&format!("client event `{word}`"), limit, || {
        client.check_alive()?;
        let lines = events(path)?;
        for (i, l) in lines.iter().enumerate().skip(skip) {
            let mut f = l.split_whitespace();
            if f.next() == Some(word) {
                let addr = f.next().and_then(|a| a.parse().ok());
                return Ok(Some((addr, i + 1)));
            }
        }
        Ok(None)
    })
}

/// The record of `addr` must be an Active lease of our client, of `lease` seconds, whose
/// expiry is within the window in which the ACK could have been given.
fn check_active(rec: &Lease, lease: u32, acked_from: u32, acked_by: u32) -> Res<()> {
    if rec.state != LeaseState::Active {
        return Err(format!(
            "record of {} is {}, expected active: {rec:?}",
            rec.addr, rec.state
        ));
    }
    if rec.hw() != CLI_MAC {
        return Err(format!(
            "record of {} belongs to {}, not the client {}",
            rec.addr,
            mac_str(rec.hw()),
            mac_str(&CLI_MAC)
        ));
    }
    if rec.lease_time != lease {
        return Err(format!(
            "lease time {} != configured {lease}: {rec:?}",
            rec.lease_time
        ));
    }
    let (lo, hi) = (acked_from + lease, acked_by + lease + 1);
    if !(lo..=hi).contains(&rec.expiry) {
        return Err(format!(
            "expiry {} outside [{lo}, {hi}] (ACK between {acked_from} and {acked_by}): {rec:?}",
            rec.expiry
        ));
    }
    Ok(())
}

/// Only `addr` may hold anything in the table (one client, one address).
fn check_only(table: &[Lease], addr: Ipv4Addr) -> Res<()> {
    let others: Vec<&Lease> = table
        .iter()
        .filter(|l| l.addr != addr && l.state != LeaseState::Free)
        .collect();
    if others.is_empty() {
        Ok(())
    } else {
        Err(format!("records other than {addr} are in use: {others:?}"))
    }
}

/// End of a client lifecycle: stop the daemon, check its counters, and
/// check that the client's record (and only it) ended Released on disk.
fn finish_released(
    daemon: Daemon,
    io: Io,
    bed: &Bed,
    pools: &[PoolSpec],
    addr: Ipv4Addr,
) -> Res<()> {
    let fin = daemon.stop()?;
    check_client_run(&fin, io, 2)?;
    let table = read_table(&bed.path("leases.db"), pools)?;
    let released = record(&table, addr)?;
    if released.state != LeaseState::Released {
        return Err(format!(
            "after release the record is {}: {released:?}",
            released.state
        ));
    }
    check_only(&table, addr)
}

fn check_client_run(fin: &Finished, io: Io, min_acks: u64) -> Res<()> {
    fin.check_io(io)?;
    let acks = fin.counter("engine", "acks")?;
    let releases = fin.counter("engine", "releases")?;
    let naks = fin.counter("engine", "naks")?;
    let offers = fin.counter("engine", "offers")?;
    if acks < min_acks || releases != 1 || naks != 0 || offers < 1 {
        return Err(format!(
            "engine counters: acks {acks} (want >= {min_acks}), releases {releases} (want 1), \
             naks {naks} (want 0), offers {offers} (want >= 1): {}",
            fin.stats
        ));
    }
    Ok(())
}

// ------------------------------------------------------------------- udhcpc

const UDHCPC_NEEDS: &[Capability] = &[
    Capability::Root,
    Capability::Program("busybox"),
    Capability::Program("ip"),
];

/// busybox udhcpc: DISCOVER/REQUEST (obtain), SIGUSR1 (unicast RENEW), SIGUSR2 (RELEASE).
fn udhcpc_lifecycle(io: Io) -> Res<()> {
    const LEASE: u32 = 3600;
    let bed = Bed::new(None)?;
    let cfg = client_config(&bed, LEASE)?;
    let pools = pools_of(&cfg)?;
    let daemon = Daemon::start(&bed, &cfg, io)?;
    if bed.srv_has_xdp()? != (io == Io::Xdp) {
        return Err(format!("XDP attached = {} in {io:?} mode", io == Io::Udp));
    }
    let ev = bed.path("udhcpc.events");
    let script = bed.path("udhcpc.sh");
    // Configures the address (renew and release are unicast from it), then logs the event.
    write_script(
        &script,
        &format!(
            r#"#!/bin/sh
case "$1" in
  bound|renew) ip addr replace "$ip/$mask" dev "$interface" || exit 1 ;;
  deconfig) ip -4 addr flush dev "$interface" ;;
esac
echo "$1 $ip $lease" >> '{}'
exit 0
"#,
            ev.display()
        ),
    )?;
    let t0 = unix_now();
    let s = script.to_string_lossy().into_owned();
    let args = [
        "udhcpc",
        "-i",
        bed.cli_if(),
        "-f",
        "-n",
        "-t",
        "5",
        "-T",
        "1",
        "-A",
        "1",
        "-s",
        &s,
    ];
    let mut client = bed.spawn_client("udhcpc", "busybox", &args, &bed.path("udhcpc.log"))?;

    // Obtain.
    let (addr, seen) = wait_event(&ev, "bound", 0, &mut client, Duration::from_secs(20))?;
    let t1 = unix_now();
    let addr = addr.ok_or("udhcpc reported no address")?;
    if !in_pool(addr) {
        return Err(format!(
            "udhcpc got {addr}, outside the pool {POOL_FIRST}-{POOL_LAST}"
        ));
    }
    let snap = snapshot_table(&daemon, bed.dir.path(), &pools)?;
    let obtained = record(&snap, addr)?;
    check_active(&obtained, LEASE, t0, t1)?;
    check_only(&snap, addr)?;

    // Renew, at least a second later so the new expiry must be later.
    std::thread::sleep(Duration::from_millis(1100));
    let t2 = unix_now();
    client.signal(libc::SIGUSR1)?;
    let (raddr, seen) = wait_event(&ev, "renew", seen, &mut client, Duration::from_secs(10))?;
    let t3 = unix_now();
    if raddr != Some(addr) {
        return Err(format!("renewed {raddr:?}, obtained {addr}"));
    }
    let snap = snapshot_table(&daemon, bed.dir.path(), &pools)?;
    let renewed = record(&snap, addr)?;
    check_active(&renewed, LEASE, t2, t3)?;
    if renewed.expiry <= obtained.expiry {
        return Err(format!(
            "renew did not move the expiry: {} then {}",
            obtained.expiry, renewed.expiry
        ));
    }
    check_only(&snap, addr)?;

    // Release: udhcpc sends RELEASE, then deconfigures.
    client.signal(libc::SIGUSR2)?;
    wait_event(&ev, "deconfig", seen, &mut client, Duration::from_secs(10))?;
    wait_for(
        "the release in the lease file",
        Duration::from_secs(5),
        || {
            let snap = snapshot_table(&daemon, bed.dir.path(), &pools)?;
            Ok((record(&snap, addr)?.state == LeaseState::Released).then_some(()))
        },
    )?;
    client.signal(libc::SIGTERM)?;
    client.wait_exit(Duration::from_secs(5))?;

    finish_released(daemon, io, &bed, &pools, addr)
}

#[test]
fn udhcpc_obtains_renews_releases_xdp() -> Res<()> {
    if !require(UDHCPC_NEEDS) {
        return Ok(());
    }
    let _slot = light();
    udhcpc_lifecycle(Io::Xdp)
}

#[test]
fn udhcpc_obtains_renews_releases_udp() -> Res<()> {
    if !require(UDHCPC_NEEDS) {
        return Ok(());
    }
    let _slot = light();
    udhcpc_lifecycle(Io::Udp)
}

// ------------------------------------------------------------------ dhclient

const DHCLIENT_NEEDS: &[Capability] = &[
    Capability::Root,
    Capability::Program("dhclient"),
    Capability::Program("ip"),
    Capability::Program("timeout"),
];

/// ISC dhclient: obtain; renew on its own at T1 (the lease is 8 s, so T1 is 4 s); release
/// with `dhclient -r`, which also stops the running instance.
fn dhclient_lifecycle(io: Io) -> Res<()> {
    const LEASE: u32 = 8;
    let bed = Bed::new(None)?;
    let cfg = client_config(&bed, LEASE)?;
    let pools = pools_of(&cfg)?;
    let daemon = Daemon::start(&bed, &cfg, io)?;
    if bed.srv_has_xdp()? != (io == Io::Xdp) {
        return Err(format!("XDP attached = {} in {io:?} mode", io == Io::Udp));
    }
    let ev = bed.path("dhclient.events");
    let script = bed.path("dhclient.sh");
    write_script(
        &script,
        &format!(
            r#"#!/bin/sh
case "$reason" in
  BOUND|RENEW|REBIND|REBOOT) ip addr replace "$new_ip_address/$new_subnet_mask" dev "$interface" || exit 1 ;;
  RELEASE|EXPIRE|STOP) [ -n "$old_ip_address" ] && ip addr del "$old_ip_address/$old_subnet_mask" dev "$interface" ;;
esac
echo "$reason ${{new_ip_address:-$old_ip_address}}" >> '{}'
exit 0
"#,
            ev.display()
        ),
    )?;
    // Empty configuration: dhclient's defaults, not the host's /etc/dhcp/dhclient.conf.
    let conf = bed.path("dhclient.conf");
    write_file(&conf, "")?;
    let paths: Vec<String> = [
        &script,
        &bed.path("dhclient.leases"),
        &bed.path("dhclient.pid"),
        &conf,
    ]
    .iter()
    .map(|p| p.to_string_lossy().into_owned())
    .collect();
    let common = [
        "-sf", &paths[0], "-lf", &paths[1], "-pf", &paths[2], "-cf", &paths[3],
    ];
    let t0 = unix_now();
    let mut args = vec!["-4", "-d", "-1", "-v"];
    args.extend(common);
    args.push(bed.cli_if());
    let mut client = bed.spawn_client("dhclient", "dhclient", &args, &bed.path("dhclient.log"))?;

    // Obtain.
    let (addr, seen) = wait_event(&ev, "BOUND", 0, &mut client, Duration::from_secs(20))?;
    let t1 = unix_now();
    let addr = addr.ok_or("dhclient reported no address")?;
    if !in_pool(addr) {
        return Err(format!(
            "dhclient got {addr}, outside the pool {POOL_FIRST}-{POOL_LAST}"
        ));
    }
    let snap = snapshot_table(&daemon, bed.dir.path(), &pools)?;
    let obtained = record(&snap, addr)?;
    check_active(&obtained, LEASE, t0, t1)?;
    check_only(&snap, addr)?;

    // Renew: dhclient's own unicast RENEW at T1.
    let (raddr, _) = wait_event(&ev, "RENEW", seen, &mut client, Duration::from_secs(15))?;
    let t3 = unix_now();
    if raddr != Some(addr) {
        return Err(format!("renewed {raddr:?}, obtained {addr}"));
    }
    let snap = snapshot_table(&daemon, bed.dir.path(), &pools)?;
    let renewed = record(&snap, addr)?;
    check_active(&renewed, LEASE, t0 + 1, t3)?;
    if renewed.expiry <= obtained.expiry {
        return Err(format!(
            "renew did not move the expiry: {} then {}",
            obtained.expiry, renewed.expiry
        ));
    }

    // Release.
    let mut args = vec!["20", "dhclient", "-4", "-r", "-v"];
    args.extend(common);
    args.push(bed.cli_if());
    let out = output(bed.cli.command("timeout").args(&args))?;
    if !out.status.success() {
        return Err(format!(
            "dhclient -r failed ({}):\n{}{}",
            out.status, out.stdout, out.stderr
        ));
    }
    // `dhclient -r` stopped the running instance (pid file).
    client.wait_exit(Duration::from_secs(10))?;
    if !events(&ev)?.iter().any(|l| l.starts_with("RELEASE ")) {
        return Err(format!(
            "dhclient -r did not run the RELEASE step:\n{}{}",
            out.stdout, out.stderr
        ));
    }
    finish_released(daemon, io, &bed, &pools, addr)
}

#[test]
fn dhclient_obtains_renews_releases_xdp() -> Res<()> {
    if !require(DHCLIENT_NEEDS) {
        return Ok(());
    }
    let _slot = light();
    dhclient_lifecycle(Io::Xdp)
}

#[test]
fn dhclient_obtains_renews_releases_udp() -> Res<()> {
    if !require(DHCLIENT_NEEDS) {
        return Ok(());
    }
    let _slot = light();
    dhclient_lifecycle(Io::Udp)
}

// ------------------------------------------------------------------ perfdhcp

const PERFDHCP_NEEDS: &[Capability] = &[
    Capability::Root,
    Capability::Program("perfdhcp"),
    Capability::Program("tcpdump"),
    Capability::Program("timeout"),
];

/// Offered load: 3,000 exchanges/s (2 cores), 20,000 exchanges started: >= 10,000 must
/// complete. A count rather than a duration, so a slowed machine takes longer instead of
/// completing fewer; `PERF_MAX_SECS` bounds the run anyway. The margin is for perfdhcp: on a
/// busy machine it loses replies in its own receive path (seen with two CPU hogs: up to 40%
/// of the OFFERs, while the server answered every DISCOVER and the link dropped nothing).
const PERF_RATE: &str = "3000";
const PERF_EXCHANGES: &str = "20000";
/// Second run: the first 6,000 clients again.
const PERF_AGAIN: &str = "6000";
const PERF_MAX_SECS: &str = "30";
/// Range of client MACs. perfdhcp numbers its clients from a fixed base, so the first run's
/// 20,000 are all distinct and a second run starts over with the same ones.
const PERF_CLIENTS: &str = "100000";
const MIN_EXCHANGES: u64 = 10_000;

/// Runs perfdhcp (DORA, no broadcast flag) in the client namespace for `exchanges` exchanges
/// and returns its (OFFERs, ACKs) received and its report.
fn perfdhcp(bed: &Bed, exchanges: &str) -> Res<(u64, u64, String)> {
    let out = output(bed.cli.command("timeout").args([
        "60",
        "perfdhcp",
        "-4",
        "-l",
        bed.cli_if(),
        "-r",
        PERF_RATE,
        "-R",
        PERF_CLIENTS,
        "-n",
        exchanges,
        "-p",
        PERF_MAX_SECS,
        "-B",
    ]))?;
    // perfdhcp exits 3 when any packet was dropped; that is judged by the counts.
    if !matches!(out.status.code(), Some(0 | 3)) {
        return Err(format!(
            "perfdhcp failed ({}):\n{}{}",
            out.status, out.stdout, out.stderr
        ));
    }
    let acks = perfdhcp_received(&out.stdout, "REQUEST-ACK").ok_or_else(|| {
        format!(
            "no REQUEST-ACK statistics in perfdhcp's report:\n{}",
            out.stdout
        )
    })?;
    let offers = perfdhcp_received(&out.stdout, "DISCOVER-OFFER").unwrap_or(0);
    Ok((offers, acks, out.stdout))
}

fn perfdhcp_load(io: Io) -> Res<()> {
    let started = Instant::now();
    let bed = Bed::new(Some("10.77.0.2/16"))?;
    let cfg = example("demo.toml");
    let pools = pools_of(&cfg)?;
    let offer_hold = xdhcpd_config::load(&cfg)
        .map_err(|e| e.to_string())?
        .lease
        .offer_hold;
    let daemon = Daemon::start(&bed, &cfg, io)?;
    let capture = Capture::start(&bed)?;
    let backlog_before = softnet_dropped()?;
    let (got_offers, got, report) = perfdhcp(&bed, PERF_EXCHANGES)?;
    // The same clients again: each must get the address it holds.
    let (again_offers, again, _) = perfdhcp(&bed, PERF_AGAIN)?;
    // The daemon stops first: no reply can follow. The capture has caught up once it holds
    // at least every reply perfdhcp received (each passed the capture point before perfdhcp
    // read it); only then is what it lacks (a NAK, a second binding) absent from the wire
    // rather than still in flight. A capture that dropped packets may stay short.
    let fin = daemon.stop()?;
    let pcap = capture.pcap.clone();
    let caught_up = wait_for(
        "the capture to hold every reply perfdhcp received",
        Duration::from_secs(10),
        || {
            let replies = read_dhcp_replies(&pcap)?;
            let n = |t: u8| replies.iter().filter(|r| r.msg_type == t).count() as u64;
            Ok((n(OFFER) >= got_offers + again_offers && n(ACK) >= got + again).then_some(()))
        },
    );
    let cap_dropped = capture.stop()?;
    if let (Err(e), 0) = (&caught_up, cap_dropped) {
        return Err(format!(
            "{e}: the capture dropped nothing, yet lacks replies perfdhcp received ({got_offers} \
             + {again_offers} OFFERs, {got} + {again} ACKs)"
        ));
    }
    let srv_link = link_stats(&bed.srv, bed.srv_if())?;
    let cli_link = link_stats(&bed.cli, bed.cli_if())?;
    let backlog_drops = softnet_dropped()?.saturating_sub(backlog_before);
    fin.check_io(io)?;
    let server_acks = fin.counter("engine", "acks")?;
    let naks = fin.counter("engine", "naks")?;
    eprintln!(
        "perfdhcp {io:?}: perfdhcp received {got_offers} OFFERs, {got} ACKs, then (same \
         clients) {again_offers} OFFERs, {again} ACKs; server: {}; capture drops {cap_dropped}",
        fin.stats
    );
    if got < MIN_EXCHANGES {
        return Err(format!(
            "perfdhcp completed {got} exchanges, want >= {MIN_EXCHANGES}:\n{report}\n\
             server: {}\nserver link: {srv_link:?}, client link: {cli_link:?}, \
             backlog drops {backlog_drops}",
            fin.stats
        ));
    }
    if naks != 0 {
        return Err(format!("server sent {naks} NAKs: {}", fin.stats));
    }

    // What the clients were told, from the wire.
    let replies = read_dhcp_replies(&pcap)?;
    let of = |t: u8| replies.iter().filter(move |r| r.msg_type == t);
    let acks: Vec<&Reply> = of(ACK).collect();
    if of(NAK).count() != 0 {
        return Err(format!("{} NAKs on the wire", of(NAK).count()));
    }
    if acks.is_empty() {
        return Err("the capture holds no ACK".into());
    }
    let show = |v: &[(Ipv4Addr, Vec<[u8; 6]>)]| {
        v.iter()
            .take(5)
            .map(|(a, ms)| {
                let ms: Vec<String> = ms.iter().map(|m| mac_str(m)).collect();
                format!("{a} -> {}", ms.join(", "))
            })
            .collect::<Vec<_>>()
            .join("; ")
    };
    // Invariant 1: no address ACKed (or, within the offer hold, offered) to two clients.
    let c = conflicts(acks.iter().map(|r| (r.yiaddr, r.chaddr)));
    if !c.is_empty() {
        return Err(format!(
            "{} addresses ACKed to two clients: {}",
            c.len(),
            show(&c)
        ));
    }
    // An offer holds its address for `offer-hold` seconds: another client may get it only
    // later (possible only if a run outlasts the hold).
    let hold = f64::from(offer_hold);
    let mut offers: Vec<&Reply> = of(OFFER).collect();
    offers.sort_by(|a, b| {
        (a.yiaddr, a.at)
            .partial_cmp(&(b.yiaddr, b.at))
            .unwrap_or(Ordering::Equal)
    });
    let early: Vec<(Ipv4Addr, Vec<[u8; 6]>)> = offers
        .windows(2)
        .filter(|w| {
            w[0].yiaddr == w[1].yiaddr && w[0].chaddr != w[1].chaddr && w[1].at - w[0].at < hold
        })
        .map(|w| (w[0].yiaddr, vec![w[0].chaddr, w[1].chaddr]))
        .collect();
    if !early.is_empty() {
        return Err(format!(
            "{} addresses offered to a second client within the {offer_hold} s offer hold: {}",
            early.len(),
            show(&early)
        ));
    }
    // A returning client keeps its address: no leaked second binding. The check means
    // something only if clients did return: the second run must have repeated MACs.
    let mut per_client: std::collections::HashMap<[u8; 6], u32> = Default::default();
    for r in &acks {
        *per_client.entry(r.chaddr).or_default() += 1;
    }
    let returned = per_client.values().filter(|&&n| n > 1).count();
    if again > 0 && returned == 0 {
        return Err(
            "the second perfdhcp run ACKed no returning client: perfdhcp's \
                    client numbering changed, the returning-client check is void"
                .into(),
        );
    }
    let c = conflicts(acks.iter().map(|r| (r.chaddr, r.yiaddr)));
    if !c.is_empty() {
        return Err(format!(
            "{} clients ACKed two addresses, e.g. {:?}",
            c.len(),
            c.first()
        ));
    }

    // The lease file agrees with the wire.
    let table = read_table(&bed.path("leases.db"), &pools)?;
    let active: Vec<&Lease> = table
        .iter()
        .filter(|l| l.state == LeaseState::Active)
        .collect();
    let c = conflicts(active.iter().map(|l| (l.client, l.addr)));
    if !c.is_empty() {
        return Err(format!(
            "{} client keys hold two Active records, e.g. {:?}",
            c.len(),
            c.first().map(|(_, a)| a)
        ));
    }
    for r in &acks {
        let rec = record(&table, r.yiaddr)?;
        if rec.state != LeaseState::Active || rec.hw() != r.chaddr {
            return Err(format!(
                "{} was ACKed to {} but its record is {} for {}: {rec:?}",
                r.yiaddr,
                mac_str(&r.chaddr),
                rec.state,
                mac_str(rec.hw())
            ));
        }
    }
    if active.len() as u64 > server_acks {
        return Err(format!(
            "{} Active records but only {server_acks} ACKs sent",
            active.len()
        ));
    }
    // With a complete capture, Active records and ACKed bindings are the same set.
    if cap_dropped == 0 && acks.len() as u64 == server_acks {
        let mut on_wire: Vec<(Ipv4Addr, [u8; 6])> =
            acks.iter().map(|r| (r.yiaddr, r.chaddr)).collect();
        on_wire.sort_unstable();
        on_wire.dedup();
        if on_wire.len() != active.len() {
            return Err(format!(
                "{} distinct bindings ACKed on the wire but {} Active records",
                on_wire.len(),
                active.len()
            ));
        }
    }
    // Where replies went missing, if any (not an invariant: the clients retransmit).
    eprintln!(
        "perfdhcp {io:?}: {} ACKs captured, {returned} clients ACKed twice or more, {} Active \
         leases, {:.1} s; server {} sent {} (dropped {}), client {} received {} (dropped {}), \
         backlog drops {backlog_drops}",
        acks.len(),
        active.len(),
        started.elapsed().as_secs_f64(),
        bed.srv_if(),
        srv_link.tx_packets,
        srv_link.tx_dropped,
        bed.cli_if(),
        cli_link.rx_packets,
        cli_link.rx_dropped,
    );
    Ok(())
}

#[test]
fn perfdhcp_10k_exchanges_no_nak_no_double_binding_xdp() -> Res<()> {
    if !require(PERFDHCP_NEEDS) {
        return Ok(());
    }
    let _slot = heavy();
    perfdhcp_load(Io::Xdp)
}

#[test]
fn perfdhcp_10k_exchanges_no_nak_no_double_binding_udp() -> Res<()> {
    if !require(PERFDHCP_NEEDS) {
        return Ok(());
    }
    let _slot = heavy();
    perfdhcp_load(Io::Udp)
}

// ------------------------------------------------------------- start-up errors

#[test]
fn io_xdp_with_missing_ebpf_object_fails_clearly() -> Res<()> {
    if !require(&[Capability::Root, Capability::Program("timeout")]) {
        return Ok(());
    }
    let _slot = light();
    let bed = Bed::new(None)?;
    let cfg = client_config(&bed, 3600)?;
    let bin = xdhcpd_bin()?;
    let missing = "/nonexistent/xdhcpd-ebpf.o";
    let leases = bed.path("leases.db");
    let started = Instant::now();
    let out = output(
        bed.srv
            .command("timeout")
            .args(["30"])
            .arg(&bin)
            .args(["run", "-c"])
            .arg(&cfg)
            .args(["--interface", bed.srv_if(), "--io", "xdp"])
            .args(["--ebpf-object", missing, "--run-for", "10", "--lease-file"])
            .arg(&leases)
            .env("NO_COLOR", "1"),
    )?;
    let all = format!("{}{}", out.stdout, out.stderr);
    // Failed at once: no fallback to UDP, no serving until --run-for ends.
    if out.status.success() || out.status.code() == Some(124) || started.elapsed().as_secs() >= 10 {
        return Err(format!(
            "xdhcpd --io xdp without its object: {}\n{all}",
            out.status
        ));
    }
    // One line naming the step, the file and the cause, the cause once (not repeated by
    // the error chain).
    let want = format!("reading eBPF object {missing}: No such file or directory");
    if !out.stderr.contains(&want) || out.stderr.matches("No such file").count() != 1 {
        return Err(format!("want one error `{want}`, got:\n{all}"));
    }
    if all.contains("serving ") || all.contains("UDP data path") {
        return Err(format!("xdhcpd served although --io xdp failed:\n{all}"));
    }
    if leases.exists() || bed.srv_has_xdp()? {
        return Err("a failed start left a lease file or an XDP program behind".into());
    }
    Ok(())
}

/// A configuration with one error at a known place: line 6, column 16.
const BAD_CONFIG: &str = r#"[server]
interface = "xd-srv0"
lease-file = "/nonexistent-dir/leases.db"

[lease]
default-time = "soon"

[[subnet]]
cidr = "10.77.0.0/16"

[[subnet.pool]]
range = "10.77.1.0-10.77.1.255"
"#;

#[test]
fn bad_config_exits_2_with_file_line_col() -> Res<()> {
    let bin = xdhcpd_bin()?;
    let dir = tempfile::tempdir().map_err(|e| format!("temporary directory: {e}"))?;
    let path = dir.path().join("bad.toml");
    write_file(&path, BAD_CONFIG)?;
    let at = format!("{}:6:16:", path.display());
    let run = output(
        Command::new("timeout")
            .arg("30")
            .arg(&bin)
            .args(["run", "-c"])
            .arg(&path)
            .args(["--io", "udp", "--run-for", "5"]),
    )?;
    if run.status.code() != Some(2) {
        return Err(format!(
            "xdhcpd run on a bad file: {}, want exit 2\n{}{}",
            run.status, run.stdout, run.stderr
        ));
    }
    let line = run
        .stderr
        .lines()
        .find(|l| l.starts_with(&at))
        .ok_or_else(|| format!("stderr has no `{at}` error:\n{}", run.stderr))?;
    if !line.contains("default-time") {
        return Err(format!("the error does not name the field: {line}"));
    }
    // check-config reports the same error, the same way.
    let check = output(
        Command::new("timeout")
            .arg("30")
            .arg(&bin)
            .arg("check-config")
            .arg(&path),
    )?;
    if check.status.code() != Some(2) || !check.stderr.lines().any(|l| l == line) {
        return Err(format!(
            "check-config on the bad file: {}, want exit 2 and `{line}`:\n{}",
            check.status, check.stderr
        ));
    }
    Ok(())
}

#[test]
fn check_config_accepts_demo_example() -> Res<()> {
    let bin = xdhcpd_bin()?;
    let demo = example("demo.toml");
    let out = output(
        Command::new("timeout")
            .arg("30")
            .arg(&bin)
            .arg("check-config")
            .arg(&demo),
    )?;
    let want = format!("{}: OK", demo.display());
    if !out.status.success() || !out.stdout.starts_with(&want) {
        return Err(format!(
            "check-config {}: {}, want `{want} ...`\n{}{}",
            demo.display(),
            out.status,
            out.stdout,
            out.stderr
        ));
    }
    Ok(())
}

/// Issue 18 (who gets the core): the packet threads ask for a short scheduler slice and the
/// maintenance threads run niced, as `[server] worker-slice-us` / `background-nice` say
/// (defaults 100 µs and 10); with both set to 0 every thread keeps the kernel's defaults.
#[test]
fn sched_daemon_threads_get_the_configured_slice_and_nice() -> Res<()> {
    if !require(&[Capability::Root, Capability::Program("ip")]) {
        return Ok(());
    }
    let _slot = light();
    /// (name, nice, slice in ns) of every thread of `pid`.
    fn threads(pid: u32) -> Res<Vec<(String, i32, u64)>> {
        let mut v = Vec::new();
        let dir = format!("/proc/{pid}/task");
        for e in std::fs::read_dir(&dir).map_err(|e| format!("{dir}: {e}"))? {
            let e = e.map_err(|e| e.to_string())?;
            let tid: i32 = e.file_name().to_string_lossy().parse().map_err(|_| "tid")?;
            let name = std::fs::read_to_string(e.path().join("comm")).unwrap_or_default();
            // struct sched_attr, version 1 (56 bytes): nice at 16, runtime (slice) at 24.
            let mut a = [0u8; 56];
            // SAFETY: sched_getattr(2) of a thread of the daemon into a 56-byte buffer.
            let r =
                unsafe { libc::syscall(libc::SYS_sched_getattr, tid, a.as_mut_ptr(), 56u32, 0u32) };
            if r != 0 {
                continue; // the thread ended meanwhile
            }
            let nice = i32::from_ne_bytes([a[16], a[17], a[18], a[19]]);
            let slice = u64::from_ne_bytes(a[24..32].try_into().map_err(|_| "slice")?);
            v.push((name.trim().to_string(), nice, slice));
        }
        Ok(v)
    }
    let osrelease = std::fs::read_to_string("/proc/sys/kernel/osrelease").unwrap_or_default();
    let mut nums = osrelease
        .split(|c: char| !c.is_ascii_digit())
        .filter_map(|s| s.parse::<u32>().ok());
    let slices = (nums.next().unwrap_or(0), nums.next().unwrap_or(0)) >= (6, 12);
    for (extra, want_slice, want_nice) in [
        ("", 100_000u64, 10i32),
        ("worker-slice-us = 0\nbackground-nice = 0\n", 0, 0),
    ] {
        let bed = Bed::new(None)?;
        let cfg = client_config(&bed, 3600)?;
        let text = std::fs::read_to_string(&cfg).map_err(|e| e.to_string())?;
        std::fs::write(
            &cfg,
            text.replacen("[server]\n", &format!("[server]\n{extra}"), 1),
        )
        .map_err(|e| e.to_string())?;
        let daemon = Daemon::start(&bed, &cfg, Io::Xdp)?;
        let ts = threads(daemon.pid())?;
        let log = daemon.log_text();
        let find = |n: &str| {
            ts.iter()
                .filter(|t| t.0.starts_with(n))
                .cloned()
                .collect::<Vec<_>>()
        };
        let (workers, commit, sweep, ckpt) = (
            find("xdhcpd-q"),
            find("xdhcpd-commit"),
            find("xdhcpd-sweep"),
            find("xdhcpd-checkpoi"),
        );
        if workers.is_empty() || commit.is_empty() || sweep.is_empty() || ckpt.is_empty() {
            return Err(format!("threads missing: {ts:?}\nlog:\n{log}"));
        }
        for t in workers.iter().chain(&commit) {
            if t.1 != 0 {
                return Err(format!("packet thread {t:?} is niced ({extra:?})"));
            }
            if slices && want_slice != 0 && t.2 != want_slice {
                return Err(format!(
                    "packet thread {t:?}: slice {} ns, want {want_slice} ({extra:?})",
                    t.2
                ));
            }
        }
        if slices && want_slice == 0 && workers[0].2 == 100_000 {
            return Err(format!(
                "worker-slice-us = 0 still set a 100 µs slice: {workers:?}"
            ));
        }
        for t in sweep.iter().chain(&ckpt) {
            if t.1 != want_nice {
                return Err(format!(
                    "maintenance thread {t:?}: nice {}, want {want_nice} ({extra:?})",
                    t.1
                ));
            }
        }
        daemon.stop()?;
    }
    Ok(())
}
