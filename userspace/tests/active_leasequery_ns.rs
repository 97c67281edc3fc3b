//! RFC 7724 active leasequery against the real daemon in network namespaces (root; see
//! `common/require.rs`), XDP data path: TCP to port 67 passes the XDP program to the kernel.
//!
//! Two subscribers (`xdhcpd leasequery --active`, live from the moment they subscribe) watch
//! an `xdhcp-loadgen` run (DORA + renew of 1,000 clients at 1,000 units a second for 8 s,
//! every ACK in its ACK log):
//! - the fast one sees every change: each ACK of the log is covered by an ACTIVE line for
//!   that address and client whose lease ends no earlier than the ACK said, and per address
//!   the lines come in order (lease ends never go back); it is never cut off;
//! - the slow one stops reading for 4 s mid-run (`--pause-after`): its queue
//!   (`active-queue = 256`, beyond the kernel's socket buffers) overflows, the server cuts it off (counted in `/metrics`:
//!   `cut_off`, `changes_lost`) without slowing anything (the loadgen loses no exchange,
//!   the fast subscriber goes on); it reconnects with query-start-time, gets the catch-up
//!   and CatchUpComplete, and in the end covers every ACK too: nothing missed.
//!
//! `active_leasequery_ns_rate` (ignored; by hand for benches/RESULTS.md): changes/s
//! delivered to one subscriber under the loadgen's fastest DORA, and the catch-up time of
//! a subscriber that asks for everything since the start.

#[path = "common/netns.rs"]
mod netns;

#[path = "common/require.rs"]
mod require;

mod daemon_common;
mod lease_common;

use std::collections::HashMap;
use std::net::Ipv4Addr;
use std::path::{Path, PathBuf};
use std::time::{Duration, Instant};

use daemon_common::*;
use lease_common::{parse_ack, Ack};
use require::{require, Capability};

/// The subscribers' address: the only one allowed to ask.
const ASKER: &str = "10.77.0.9";

fn config(bed: &Bed, queue: u32) -> Res<PathBuf> {
    let path = bed.path("xdhcpd.toml");
    let text = format!(
        r#"[server]
interface = "{iface}"
server-id = "{SRV_ADDR}"
lease-file = "{leases}"
control-socket = "{sock}"
leasequery-allow = ["{ASKER}"]

[bulk-leasequery]
listen = "{SRV_ADDR}:67"
max-connections = 8
idle-timeout = 10
active-queue = {queue}

[[subnet]]
cidr = "10.77.0.0/16"
router = ["{SRV_ADDR}"]
[[subnet.pool]]
range = "10.77.1.1-10.77.40.255"
"#,
        iface = bed.srv_if(),
        leases = bed.path("leases.db").display(),
        sock = bed.path("ctl.sock").display(),
    );
    write_file(&path, &text)?;
    Ok(path)
}

/// `xdhcpd leasequery --active` in the client namespace, output in `log`.
fn subscriber(bed: &Bed, what: &str, extra: &[&str], log: &Path) -> Res<Proc> {
    let bin = xdhcpd_bin()?;
    let mut args = vec![
        "leasequery",
        "--active",
        "--server",
        SRV_ADDR,
        "--timeout-ms",
        "5000",
        "--duration-s",
        "90",
    ];
    args.extend_from_slice(extra);
    bed.spawn_client(what, &bin.to_string_lossy(), &args, log)
}

fn loadgen(bed: &Bed, clients: &str, rate: &str, secs: &str) -> Res<(Proc, PathBuf, PathBuf)> {
    let lg = loadgen_bin()?;
    let acked = bed.path("acked.log");
    let json = bed.path("loadgen.json");
    let p = Proc::spawn(
        "xdhcp-loadgen",
        bed.cli.command("timeout").args([
            "120",
            &lg.to_string_lossy(),
            "-i",
            bed.cli_if(),
            "--io",
            "packet",
            "--scenario",
            "dora-renew",
            "--clients",
            clients,
            "--rate",
            rate,
            "--duration",
            secs,
            "--timeout-ms",
            "1000",
            "--retries",
            "2",
            "--quiet",
            "--acked-log",
            &acked.to_string_lossy(),
            "--json",
            &json.to_string_lossy(),
        ]),
        &bed.path("loadgen.log"),
    )?;
    Ok((p, acked, json))
}

/// One binding line of a subscriber: address, client id, lease end (ACTIVE only).
#[derive(Debug, Clone)]
struct Line {
    active: bool,
    addr: Ipv4Addr,
    client: Option<String>,
    expiry: Option<u32>,
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
        };
        for f in w {
            if let Some(c) = f.strip_prefix("client-id=") {
                line.client = Some(c.to_string());
            } else if let Some(e) = f.strip_prefix("expiry=") {
                line.expiry = e.parse().ok();
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

/// Addresses whose ACTIVE lines go back in time (a lease end lower than an earlier one's
/// for the same client).
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

fn metrics(bed: &Bed) -> Res<String> {
    let bin = xdhcpd_bin()?;
    let out = output(
        std::process::Command::new(&bin)
            .args(["ctl", "--socket"])
            .arg(bed.path("ctl.sock"))
            .arg("metrics"),
    )?;
    Ok(out.stdout)
}

fn metric_in(text: &str, key: &str) -> Res<u64> {
    text.lines()
        .find_map(|l| l.strip_prefix(key).map(str::trim))
        .and_then(|v| v.parse::<f64>().ok())
        .map(|v| v as u64)
        .ok_or_else(|| format!("no {key} in the metrics:\n{text}"))
}

fn event(bed: &Bed, e: &str) -> Res<u64> {
    let key = format!("xdhcpd_bulk_leasequery_total{{event=\"{e}\"}} ");
    metric_in(&metrics(bed)?, &key)
}

fn subscribers(bed: &Bed) -> Res<u64> {
    metric_in(&metrics(bed)?, "xdhcpd_active_leasequery_subscribers ")
}

fn read_acks(path: &Path) -> Res<Vec<Ack>> {
    read_text(path)?.lines().map(parse_ack).collect()
}

#[test]
fn active_leasequery_ns_subscribers_see_every_change_and_resume_after_cut_off() -> Res<()> {
    if !require(&[Capability::Root, Capability::Program("ip")]) {
        return Ok(());
    }
    let started = Instant::now();
    loadgen_bin()?;
    let bed = Bed::new(Some(&format!("{ASKER}/16")))?;
    let cfg = config(&bed, 256)?;
    let mut daemon = Daemon::start(&bed, &cfg, Io::Xdp)?;
    if !bed.srv_has_xdp()? {
        return Err("the XDP program is not attached: the test must cross it".into());
    }
    let (fast_log, slow_log) = (bed.path("fast.out"), bed.path("slow.out"));
    let mut fast = subscriber(&bed, "fast subscriber", &[], &fast_log)?;
    let mut slow = subscriber(
        &bed,
        "slow subscriber",
        &["--pause-after", "300", "--pause-ms", "4000"],
        &slow_log,
    )?;
    wait_for("two subscribers", Duration::from_secs(10), || {
        Ok((subscribers(&bed)? == 2).then_some(()))
    })?;

    let (mut lg, acked, json) = loadgen(&bed, "1000", "1000", "8s")?;
    let st = lg.wait_exit(Duration::from_secs(60))?;
    if !st.success() {
        return Err(format!("loadgen failed ({st}): {}", lg.log_text()));
    }
    let acks = read_acks(&acked)?;
    if acks.len() < 8_000 {
        return Err(format!("only {} ACKs: {}", acks.len(), lg.log_text()));
    }
    // The slow subscriber did not slow the server: the loadgen lost (almost) nothing.
    let rep: serde_json::Value = serde_json::from_str(&read_text(&json)?)
        .map_err(|e| format!("loadgen report: {e}; log:\n{}", lg.log_text()))?;
    for p in rep["phases"].as_array().cloned().unwrap_or_default() {
        let loss = p["loss_pct"].as_f64().unwrap_or(100.0);
        assert!(
            loss < 1.0,
            "the server lost exchanges while a subscriber stalled: {p}"
        );
    }

    // Both end up covering every ACK (the slow one after its reconnect and catch-up).
    let t = Instant::now();
    let covered =
        |log: &Path| -> Res<usize> { Ok(uncovered(&acks, &parse_lines(&read_text(log)?)).len()) };
    wait_for(
        "both subscribers to cover every ACK",
        Duration::from_secs(30),
        || {
            fast.check_alive()?;
            slow.check_alive()?;
            Ok((covered(&fast_log)? == 0 && covered(&slow_log)? == 0).then_some(()))
        },
    )
    .map_err(|e| {
        let f = parse_lines(&read_text(&fast_log).unwrap_or_default());
        let s = parse_lines(&read_text(&slow_log).unwrap_or_default());
        format!(
            "{e}: fast misses {:?}, slow misses {:?}",
            uncovered(&acks, &f).into_iter().take(5).collect::<Vec<_>>(),
            uncovered(&acks, &s).into_iter().take(5).collect::<Vec<_>>()
        )
    })?;
    let settle = t.elapsed();

    let fast_text = read_text(&fast_log)?;
    let slow_text = read_text(&slow_log)?;
    let (fl, sl) = (parse_lines(&fast_text), parse_lines(&slow_text));
    assert!(
        out_of_order(&fl).is_empty(),
        "fast: out of order {:?}",
        out_of_order(&fl)
    );
    assert!(
        out_of_order(&sl).is_empty(),
        "slow: out of order {:?}",
        out_of_order(&sl)
    );
    assert!(
        !fast_text.contains("RECONNECT") && !fast_text.contains("DONE"),
        "the fast subscriber was cut off:\n{}",
        fast_text
            .lines()
            .filter(|l| !l.starts_with("ACTIVE"))
            .collect::<Vec<_>>()
            .join("\n")
    );
    // The slow one was cut off, reconnected with a start time and caught up.
    let reconnect = slow_text
        .lines()
        .find(|l| l.starts_with("RECONNECT start-time="))
        .ok_or_else(|| {
            format!(
                "the slow subscriber was never cut off:\n{}",
                tail(&slow_text)
            )
        })?;
    let catchup = slow_text
        .lines()
        .find(|l| l.starts_with("STATUS CatchUpComplete"))
        .ok_or_else(|| {
            format!(
                "no CatchUpComplete after the reconnect:\n{}",
                tail(&slow_text)
            )
        })?;
    let m = metrics(&bed)?;
    let ev = |e: &str| {
        metric_in(
            &m,
            &format!("xdhcpd_bulk_leasequery_total{{event=\"{e}\"}} "),
        )
    };
    assert!(ev("cut_off")? >= 1, "cut_off not counted:\n{m}");
    assert!(ev("changes_lost")? >= 1, "changes_lost not counted:\n{m}");
    assert!(ev("subscriptions")? >= 3, "{m}");
    assert!(ev("catchup_complete")? >= 1, "{m}");
    assert!(ev("changes_sent")? >= fl.len() as u64, "{m}");
    assert_eq!(subscribers(&bed)?, 2, "both subscribed at the end");
    eprintln!(
        "active_leasequery_ns: {} ACKs; fast saw {} changes, slow {} ({reconnect}; {catchup}); \
         settled {settle:?} after the load; {:?} in all",
        acks.len(),
        fl.len(),
        sl.len(),
        started.elapsed()
    );
    drop(fast);
    drop(slow);
    wait_for("the subscribers to be gone", Duration::from_secs(5), || {
        Ok((subscribers(&bed)? == 0).then_some(()))
    })?;
    assert_eq!(event(&bed, "connections_refused")?, 0);
    daemon.check_alive()?;
    daemon.stop()?;
    Ok(())
}

fn tail(text: &str) -> String {
    let v: Vec<&str> = text.lines().collect();
    v[v.len().saturating_sub(20)..].join("\n")
}

/// Figures for benches/RESULTS.md: changes/s delivered to one subscriber under the
/// loadgen's DORA at 20,000 units/s offered, and the catch-up of everything since the start.
#[test]
#[ignore]
fn active_leasequery_ns_rate() -> Res<()> {
    if !require(&[Capability::Root, Capability::Program("ip")]) {
        return Ok(());
    }
    loadgen_bin()?;
    let bed = Bed::new(Some(&format!("{ASKER}/16")))?;
    let cfg = config(&bed, 16_384)?;
    let daemon = Daemon::start(&bed, &cfg, Io::Xdp)?;
    let t0 = unix_now();
    let log = bed.path("live.out");
    let live = subscriber(&bed, "subscriber", &[], &log)?;
    wait_for("the subscriber", Duration::from_secs(10), || {
        Ok((subscribers(&bed)? == 1).then_some(()))
    })?;
    let (mut lg, acked, json) = loadgen(&bed, "10000", "20000", "5s")?;
    lg.wait_exit(Duration::from_secs(60))?;
    std::thread::sleep(Duration::from_secs(2));
    let acks = read_acks(&acked)?;
    let lines = parse_lines(&read_text(&log)?);
    let m = metrics(&bed)?;
    eprintln!(
        "rate: {} ACKs, subscriber got {} changes, missing {}; loadgen {}; metrics {}",
        acks.len(),
        lines.len(),
        uncovered(&acks, &lines).len(),
        read_text(&json)?
            .lines()
            .filter(|l| l.contains("acked_per_s"))
            .collect::<Vec<_>>()
            .join(" "),
        m.lines()
            .filter(|l| l.contains("leasequery"))
            .collect::<Vec<_>>()
            .join("\n")
    );
    drop(live);
    // Catch-up of everything since before the load.
    let t = Instant::now();
    let bin = xdhcpd_bin()?;
    let out = output(bed.cli.command(&bin.to_string_lossy()).args([
        "leasequery",
        "--active",
        "--server",
        SRV_ADDR,
        "--start-time",
        &t0.to_string(),
        "--duration-s",
        "20",
        "--max-changes",
        &lines.len().to_string(),
    ]))?;
    eprintln!(
        "catch-up: {:?} wall; {}",
        t.elapsed(),
        out.stdout
            .lines()
            .filter(|l| l.starts_with("STATUS"))
            .collect::<Vec<_>>()
            .join(" ")
    );
    eprintln!("{}", out.stderr);
    daemon.stop()?;
    Ok(())
}
