//! Lease events on NATS JetStream (issue 17, part 2), end to end with real servers from Debian:
//! `nats-server -js` (token auth, its own store directory) and PostgreSQL 15, both started by
//! the test inside the server namespace (own loopback) and removed afterwards.
//!
//! The daemon (XDP) serves `xdhcp-loadgen` DORA+renew load with its ACK log
//! (`spawn_acked_load`) and publishes its lease events through `[event-log.nats]`. Mid-load
//! nats-server is killed (SIGKILL) for `OUTAGE`, then restarted on the same store. Shown:
//! - during the outage the daemon keeps serving, reports NATS disconnected and a growing
//!   spool (`/v1/status`), and counts the failures (`/metrics`);
//! - after it, the spool drains; `xdhcpd events archive --once` (a durable JetStream consumer)
//!   stores the stream in PostgreSQL: the stream holds exactly the events the daemon logged
//!   locally (no loss, no duplicate stored), in messages of many events (`events-per-message`)
//!   with sequence numbers 1..M (no gap);
//! - every ACK of the loadgen's log is covered by an event for that address and client whose
//!   lease lasts at least as long as the ACK said (an ACK and the renew right after it in the
//!   same second are one record change, so one event);
//! - per address, the events are in order in the stream (times and lease ends never go back);
//! - `xdhcpd ctl history --archive` gives the same answers as the local event log files.
//!
//! Needs root (namespaces, XDP, `runuser`), nats-server and /usr/lib/postgresql/15/bin.

#[path = "common/netns.rs"]
mod netns;

#[path = "common/require.rs"]
mod require;

mod daemon_common;
mod lease_common;
mod pg_common;

use std::collections::HashMap;
use std::net::Ipv4Addr;
use std::path::{Path, PathBuf};
use std::time::{Duration, Instant};

use daemon_common::*;
use lease_common::*;
use pg_common::{http, Pg, PG_BIN, PG_PORT};
use require::{require, Capability};

const NATS_PORT: u16 = 54222;
const NATS_TOKEN: &str = "nats-s3cret-token";
const LEASE_SECS: u32 = 3600;
const CLIENTS: &str = "1500";
/// DORA+renew units started per second.
const RATE: &str = "400";
/// How long NATS is down mid-load.
const OUTAGE: Duration = Duration::from_secs(12);

fn config(bed: &Bed) -> Res<PathBuf> {
    let tok = bed.path("nats-token");
    write_file(&tok, &format!("{NATS_TOKEN}\n"))?;
    let path = bed.path("xdhcpd.toml");
    let text = format!(
        r#"[server]
interface = "{iface}"
server-id = "{SRV_ADDR}"
lease-file = "{leases}"
commit = "ack"
control-socket = "{sock}"

[lease]
default-time = {LEASE_SECS}
min-time = 1
max-time = 86400

[[subnet]]
cidr = "10.77.0.0/16"
router = ["{SRV_ADDR}"]

[[subnet.pool]]
range = "10.77.1.0-10.77.16.255"

[event-log]
directory = "{events}"

[event-log.nats]
urls = ["nats://127.0.0.1:{NATS_PORT}"]
server-name = "srv-a"
token-file = "{tok}"
batch-size = 128
ack-timeout-secs = 2
"#,
        iface = bed.srv_if(),
        leases = bed.path("leases.db").display(),
        sock = bed.path("ctl.sock").display(),
        events = bed.path("events").display(),
        tok = tok.display(),
    );
    write_file(&path, &text)?;
    Ok(path)
}

/// nats-server with JetStream in the server namespace, on `store`; waits until it is ready.
fn start_nats(bed: &Bed, store: &Path, log: &Path) -> Res<Proc> {
    let mut cmd = bed.srv.command("nats-server");
    cmd.args(["-js", "-a", "127.0.0.1", "-p", &NATS_PORT.to_string()])
        .args(["--auth", NATS_TOKEN, "-n", "xdhcpd-test"])
        .arg("-sd")
        .arg(store);
    let mut p = Proc::spawn("nats-server", &mut cmd, log)?;
    wait_for("nats-server to be ready", Duration::from_secs(20), || {
        p.check_alive()?;
        Ok(read_text(log)?.contains("Server is ready").then_some(()))
    })?;
    Ok(p)
}

fn status(bed: &Bed) -> Res<serde_json::Value> {
    let (code, body) = http(&bed.path("ctl.sock"), "GET", "/v1/status", "")?;
    if code != 200 {
        return Err(format!("status: {code} {body}"));
    }
    let v: serde_json::Value = serde_json::from_str(&body).map_err(|e| format!("{e}: {body}"))?;
    Ok(v["event_log"].clone())
}

fn metric(text: &str, name: &str) -> Res<f64> {
    text.lines()
        .find_map(|l| l.strip_prefix(name)?.strip_prefix(' ')?.trim().parse().ok())
        .ok_or_else(|| format!("metric {name} not in /metrics"))
}

/// One archived event.
#[derive(Debug)]
struct Row {
    seq: u64,
    ip: Ipv4Addr,
    client: String,
    time: u64,
    expiry: u64,
    event: String,
}

fn rows(pg: &Pg) -> Res<Vec<Row>> {
    let out = pg.psql(
        "archive",
        "SELECT stream_seq, host(ip), coalesce(client_id, replace(mac, ':', '')), \
                extract(epoch FROM at)::int8, extract(epoch FROM lease_end)::int8, event \
         FROM xdhcpd_lease_events ORDER BY stream_seq, id",
    )?;
    out.lines()
        .filter(|l| !l.is_empty())
        .map(|l| {
            let f: Vec<&str> = l.split('|').collect();
            let bad = || format!("archive row {l:?}");
            if f.len() != 6 {
                return Err(bad());
            }
            Ok(Row {
                seq: f[0].parse().map_err(|_| bad())?,
                ip: f[1].parse().map_err(|_| bad())?,
                client: f[2].to_string(),
                time: f[3].parse().map_err(|_| bad())?,
                expiry: f[4].parse().map_err(|_| bad())?,
                event: f[5].to_string(),
            })
        })
        .collect()
}

fn history(bed: &Bed, ip: Ipv4Addr, at: u64, source: &[&str]) -> Res<serde_json::Value> {
    let bin = xdhcpd_bin()?;
    let out = output(
        bed.srv
            .command(&bin.to_string_lossy())
            .args(["ctl", "history", "--ip", &ip.to_string(), "--at"])
            .arg(at.to_string())
            .arg("--json")
            .args(source),
    )?;
    if !out.status.success() {
        return Err(format!("ctl history: {}{}", out.stdout, out.stderr));
    }
    serde_json::from_str(&out.stdout).map_err(|e| format!("{e}: {}", out.stdout))
}

#[test]
fn events_nats_outage_under_load_spooled_in_order_archived_and_queried() -> Res<()> {
    if !require(&[
        Capability::Root,
        Capability::Program("ip"),
        Capability::Program("nats-server"),
        Capability::Program("psql"),
        Capability::File(Path::new(PG_BIN).join("initdb"), "postgresql"),
    ]) {
        return Ok(());
    }
    let t0 = Instant::now();
    loadgen_bin()?;
    let bin = xdhcpd_bin()?;
    let bed = Bed::new(None)?;
    let pg = Pg::init(bed.srv.name())?;
    pg.start(true)?;
    pg.psql(
        "postgres",
        "CREATE ROLE archiver LOGIN PASSWORD 'arch1ve-pw'",
    )?;
    pg.psql("postgres", "CREATE DATABASE archive OWNER archiver")?;
    let pg_pw = bed.path("pg-password");
    write_file(&pg_pw, "arch1ve-pw\n")?;
    let pg_conn = format!("host=127.0.0.1 port={PG_PORT} dbname=archive user=archiver");

    let store = bed.path("js-store");
    let mut nats = start_nats(&bed, &store, &bed.path("nats-0.log"))?;
    let cfg = config(&bed)?;
    let mut daemon = start_daemon(
        &bed,
        &cfg,
        "xdp",
        &bed.path("leases.db"),
        &bed.path("xdhcpd.log"),
        &[],
    )?;
    wait_for("the sink to connect", Duration::from_secs(10), || {
        Ok((status(&bed)?["nats"]["connected"] == true).then_some(()))
    })?;

    let (mut lg, acked) = spawn_acked_load(&bed, CLIENTS, RATE)?;
    let mut reader = AckReader::new(&acked);
    let mut acks: Vec<Ack> = Vec::new();
    wait_for("ACKs and published events", Duration::from_secs(20), || {
        lg.check_alive()?;
        acks.extend(reader.read_new()?);
        let st = status(&bed)?;
        Ok((!acks.is_empty() && st["nats"]["published"].as_u64() > Some(100)).then_some(()))
    })?;
    std::thread::sleep(Duration::from_secs(2));

    // NATS dies mid-load.
    nats.signal(libc::SIGKILL)?;
    nats.wait_exit(Duration::from_secs(10))?;
    let down = Instant::now();
    wait_for("the sink to see NATS gone", Duration::from_secs(10), || {
        Ok((status(&bed)?["nats"]["connected"] == false).then_some(()))
    })?;
    let early = status(&bed)?["nats"]["spool_depth"].as_u64().unwrap_or(0);
    std::thread::sleep(OUTAGE.saturating_sub(down.elapsed()));
    daemon.check_alive()?;
    lg.check_alive()?;
    let st = status(&bed)?;
    let depth = st["nats"]["spool_depth"].as_u64().unwrap_or(0);
    eprintln!("events_nats: after {:?} without NATS: {st}", down.elapsed());
    assert_eq!(st["nats"]["connected"], false, "{st}");
    assert!(
        depth > early && depth > 100,
        "the spool grows while NATS is down ({early} -> {depth}): {st}"
    );
    let m = http(&bed.path("ctl.sock"), "GET", "/metrics", "")?.1;
    assert_eq!(metric(&m, "xdhcpd_nats_connected")?, 0.0);
    assert!(metric(&m, "xdhcpd_nats_spool_depth")? > 0.0);
    assert!(
        metric(&m, "xdhcpd_nats_publish_errors_total")?
            + metric(&m, "xdhcpd_nats_connect_errors_total")?
            + metric(&m, "xdhcpd_nats_disconnects_total")?
            > 0.0,
        "failures counted"
    );

    // NATS returns (same store): the spool drains in order under load.
    nats = start_nats(&bed, &store, &bed.path("nats-1.log"))?;
    let back = Instant::now();
    wait_for("the spool to drain", Duration::from_secs(30), || {
        lg.check_alive()?;
        let st = status(&bed)?;
        Ok(
            (st["nats"]["connected"] == true && st["nats"]["spool_depth"].as_u64() < Some(500))
                .then_some(()),
        )
    })?;
    eprintln!(
        "events_nats: {depth}+ spooled events sent within {:?} of NATS' return",
        back.elapsed()
    );
    std::thread::sleep(Duration::from_secs(3));
    lg.signal(libc::SIGKILL)?;
    lg.wait_exit(Duration::from_secs(10))?;
    std::thread::sleep(Duration::from_millis(500));
    acks.extend(reader.read_new()?);
    let st = wait_for("every event published", Duration::from_secs(20), || {
        let a = status(&bed)?;
        std::thread::sleep(Duration::from_millis(700));
        let b = status(&bed)?;
        Ok((b["nats"]["spool_depth"] == 0 && a["written"] == b["written"]).then_some(b))
    })?;
    daemon.check_alive()?;
    let written = st["written"].as_u64().ok_or("written")?;
    assert_eq!(st["dropped"], 0, "the event log lost slots: {st}");
    assert_eq!(st["nats"]["spool_dropped"], 0, "{st}");
    assert_eq!(st["nats"]["spool_errors"], 0, "{st}");

    // The archive: a durable consumer into PostgreSQL.
    let out = output(
        bed.srv
            .command(&bin.to_string_lossy())
            .args(["events", "archive", "--once"])
            .arg("--nats")
            .arg(format!("nats://127.0.0.1:{NATS_PORT}"))
            .arg("--nats-token-file")
            .arg(bed.path("nats-token"))
            .arg("--postgres")
            .arg(&pg_conn)
            .arg("--postgres-password-file")
            .arg(&pg_pw)
            .env("NO_COLOR", "1"),
    )?;
    if !out.status.success() {
        return Err(format!("events archive: {}{}", out.stdout, out.stderr));
    }
    eprintln!("events_nats: {}", out.stdout.trim());
    let rows = rows(&pg)?;
    let n = rows.len() as u64;
    assert_eq!(
        n, written,
        "the stream holds every event the daemon logged, once ({st})"
    );
    // Messages carry batches of events: the stream's sequence numbers, in the archive's
    // order, start at 1 and step by 0 (the next event of the same message) or 1, no gap.
    let mut last_seq = 0;
    for r in &rows {
        assert!(
            r.seq == last_seq || r.seq == last_seq + 1,
            "stream sequence without gaps: {} after {last_seq}",
            r.seq
        );
        last_seq = r.seq;
    }
    // Batched: fewer messages than events (events-per-message, default 100).
    let messages = st["nats"]["messages"].as_u64().ok_or("messages")?;
    assert!(
        last_seq < n && messages < st["nats"]["published"].as_u64().unwrap_or(0),
        "{last_seq} messages in the stream for {n} events ({st})"
    );

    // Every ACK is covered by an event for that address and client lasting at least as long.
    let mut by_ip: HashMap<Ipv4Addr, Vec<&Row>> = HashMap::new();
    for r in &rows {
        by_ip.entry(r.ip).or_default().push(r);
    }
    let mut missing = Vec::new();
    for a in &acks {
        let covered = by_ip.get(&a.addr).is_some_and(|v| {
            v.iter().any(|r| {
                r.client == a.client
                    && matches!(r.event.as_str(), "ack" | "renew")
                    && r.expiry >= u64::from(a.min_expiry())
            })
        });
        if !covered {
            missing.push(a);
        }
    }
    assert!(
        missing.is_empty(),
        "{} of {} ACKs have no event, e.g. {:?}",
        missing.len(),
        acks.len(),
        &missing[..missing.len().min(5)]
    );
    let mut pairs: Vec<(Ipv4Addr, &str)> =
        acks.iter().map(|a| (a.addr, a.client.as_str())).collect();
    pairs.sort_unstable();
    pairs.dedup();
    assert!(n >= pairs.len() as u64);

    // Per address: in stream order, times and (same client) lease ends never go back.
    for (ip, v) in &by_ip {
        for w in v.windows(2) {
            assert!(
                w[1].time >= w[0].time,
                "{ip}: event seq {} at {} after seq {} at {}",
                w[1].seq,
                w[1].time,
                w[0].seq,
                w[0].time
            );
            if w[1].client == w[0].client && w[1].event != "release" {
                assert!(
                    w[1].expiry >= w[0].expiry,
                    "{ip}: lease end went back at seq {}",
                    w[1].seq
                );
            }
        }
    }

    // History from the archive agrees with the local files.
    let archive_args = [
        "--archive",
        pg_conn.as_str(),
        "--archive-password-file",
        &pg_pw.to_string_lossy(),
    ];
    let dir_arg = bed.path("events").to_string_lossy().to_string();
    let step = (acks.len() / 8).max(1);
    let mut asked = 0;
    for a in acks.iter().step_by(step) {
        let at = a.unix_ms / 1000 + 1;
        let from_archive = history(&bed, a.addr, at, &archive_args)?;
        let from_files = history(&bed, a.addr, at, &["--dir", &dir_arg])?;
        assert_eq!(from_archive["holder"], from_files["holder"], "{}", a.addr);
        let h = &from_archive["holder"];
        let client = h["client_id"]
            .as_str()
            .map(str::to_string)
            .or_else(|| h["mac"].as_str().map(|m| m.replace(':', "")))
            .ok_or_else(|| format!("{}: nobody held it at {at}: {from_archive}", a.addr))?;
        assert_eq!(client, a.client, "{}: holder at {at}", a.addr);
        asked += 1;
    }
    let before = history(&bed, Ipv4Addr::new(10, 77, 1, 0), 1_000_000, &archive_args)?;
    assert!(before["holder"].is_null() && before["last_event"].is_null());

    let m = http(&bed.path("ctl.sock"), "GET", "/metrics", "")?.1;
    assert_eq!(metric(&m, "xdhcpd_nats_connected")?, 1.0);
    assert_eq!(metric(&m, "xdhcpd_nats_spool_depth")?, 0.0);
    assert!(metric(&m, "xdhcpd_nats_published_total")? >= n as f64);
    eprintln!(
        "events_nats: {} ACKs ({} address/client pairs), {n} events logged = in the stream = \
         archived, NATS down {OUTAGE:?}, {asked} history answers checked, {:?} in all",
        acks.len(),
        pairs.len(),
        t0.elapsed()
    );
    stop_daemon(daemon)?;
    drop(nats);
    Ok(())
}
