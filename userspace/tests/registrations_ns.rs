//! Registrations managed live, end to end in namespaces (issue 10, "Must show"): a subnet
//! with `deny-unknown`, the load generator's 1,000 clients registered, DORA load running;
//! meanwhile a bulk import of 100,000 more registrations through `xdhcpd ctl registrations
//! import`. Shown:
//! - the import takes effect without a restart, and the time to apply it is reported
//!   (printed, `apply_ms`);
//! - no DORA of the registered clients is lost or NAKed meanwhile (the loadgen retries a
//!   lost message twice; a drop after that fails the test);
//! - a newly registered MAC is served at once (a probe client refused before the import is
//!   served right after it), a removed one is refused at its next DISCOVER (counted in
//!   `unknown_refused`);
//! - the registrations survive kill -9 of the daemon (count and refusals after restart).
//!
//! Needs root (namespaces) and the eBPF object (XDP data path).

#[path = "common/netns.rs"]
mod netns;

#[path = "common/require.rs"]
mod require;

mod daemon_common;

use std::fmt::Write as _;
use std::path::{Path, PathBuf};
use std::process::Command;
use std::time::{Duration, Instant};

use daemon_common::*;
use require::{require, Capability};

/// Loadgen MACs: 02:SALT:index (index 0..clients, big-endian u32).
const LOAD_SALT: u8 = 0x4c;
const LOAD_CLIENTS: u32 = 1000;
const BULK_SALT: u8 = 0x77;
const BULK: u32 = 100_000;

fn mac(salt: u8, i: u32) -> String {
    let b = i.to_be_bytes();
    format!(
        "02:{salt:02x}:{:02x}:{:02x}:{:02x}:{:02x}",
        b[0], b[1], b[2], b[3]
    )
}

fn csv(path: &Path, salt: u8, n: u32, group: &str) -> Res<()> {
    let mut s = String::with_capacity(n as usize * 32);
    s.push_str("mac,group\n");
    for i in 0..n {
        let _ = writeln!(s, "{},{group}", mac(salt, i));
    }
    write_file(path, &s)
}

fn config(bed: &Bed) -> Res<PathBuf> {
    let path = bed.path("xdhcpd.toml");
    let text = format!(
        r#"[server]
interface = "{iface}"
server-id = "{SRV_ADDR}"
lease-file = "{leases}"
commit = "ack"
control-socket = "{sock}"
registration-file = "{regs}"

[lease]
default-time = 3600
min-time = 60
max-time = 86400

[[subnet]]
cidr = "10.77.0.0/16"
router = ["{SRV_ADDR}"]
deny-unknown = true

[[subnet.pool]]
range = "10.77.1.0-10.77.8.255"
"#,
        iface = bed.srv_if(),
        leases = bed.path("leases.db").display(),
        sock = bed.path("ctl.sock").display(),
        regs = bed.path("regs/registrations").display(),
    );
    write_file(&path, &text)?;
    Ok(path)
}

fn start(bed: &Bed, config: &Path, log: &Path) -> Res<Proc> {
    let bin = xdhcpd_bin()?;
    let mut cmd = bed.srv.command(&bin.to_string_lossy());
    cmd.arg("run")
        .arg("-c")
        .arg(config)
        .args(["--io", "xdp", "--stats-interval", "1", "--run-for", "150"])
        .arg("--stats-json")
        .arg(bed.path("stats.json"))
        .current_dir(repo_root())
        .env("RUST_LOG", "info")
        .env("NO_COLOR", "1");
    let mut p = Proc::spawn("xdhcpd", &mut cmd, log)?;
    wait_for("xdhcpd to serve", Duration::from_secs(30), || {
        p.check_alive()?;
        Ok(read_text(log)?.contains("serving ").then_some(()))
    })?;
    std::thread::sleep(Duration::from_millis(200));
    Ok(p)
}

/// `xdhcpd ctl --socket S registrations ARGS`: stdout, or the error.
fn ctl(bed: &Bed, args: &[&str]) -> Res<String> {
    let bin = xdhcpd_bin()?;
    let out = output(
        Command::new(bin)
            .arg("ctl")
            .arg("--socket")
            .arg(bed.path("ctl.sock"))
            .arg("registrations")
            .args(args),
    )?;
    if !out.status.success() {
        return Err(format!("ctl {args:?}: {}{}", out.stdout, out.stderr));
    }
    Ok(out.stdout)
}

/// A one-shot loadgen run of `clients` DORAs with MAC salt `salt`; its JSON report.
fn probe(bed: &Bed, salt: u8, clients: u32, name: &str) -> Res<serde_json::Value> {
    let lg = loadgen_bin()?;
    let json = bed.path(&format!("{name}.json"));
    let salt_s = format!("{salt}");
    let clients_s = clients.to_string();
    let out = output(bed.cli.command(&lg.to_string_lossy()).args([
        "-i",
        bed.cli_if(),
        "--io",
        "packet",
        "--scenario",
        "dora",
        "--clients",
        &clients_s,
        "--count",
        &clients_s,
        "--mac-salt",
        &salt_s,
        "--timeout-ms",
        "500",
        "--retries",
        "1",
        "--quiet",
        "--json",
        &json.to_string_lossy(),
    ]))?;
    if !out.status.success() {
        return Err(format!("probe {name}: {}{}", out.stdout, out.stderr));
    }
    let text = read_text(&json)?;
    serde_json::from_str(&text).map_err(|e| format!("{}: {e}", json.display()))
}

fn counts(report: &serde_json::Value) -> (u64, u64, u64) {
    let mut acks = 0;
    let mut naks = 0;
    let mut drops = 0;
    for p in report["phases"].as_array().into_iter().flatten() {
        acks += p["acks"].as_u64().unwrap_or(0);
        naks += p["naks"].as_u64().unwrap_or(0);
        drops += p["drops"].as_u64().unwrap_or(0);
    }
    (acks, naks, drops)
}

/// The latest `unknown_refused N` of the daemon's periodic stats lines (0 before any).
fn denied_in(log: &Path) -> Res<u64> {
    let text = read_text(log)?;
    Ok(text
        .rsplit("unknown_refused ")
        .next()
        .filter(|_| text.contains("unknown_refused "))
        .and_then(|s| s.split_whitespace().next())
        .and_then(|n| n.parse().ok())
        .unwrap_or(0))
}

#[test]
fn registration_bulk_import_under_load_xdp() -> Res<()> {
    let object = repo_root().join("target/bpfel-unknown-none/release/xdhcpd-ebpf");
    if !require(&[Capability::Root, Capability::EbpfObject(object)]) {
        return Ok(());
    }
    let loadgen = loadgen_bin()?;
    xdhcpd_bin()?;
    let bed = Bed::new(None)?;
    let cfg = config(&bed)?;
    let log = bed.path("xdhcpd.log");
    let mut daemon = start(&bed, &cfg, &log)?;

    // Nothing registered: the probe client is refused.
    let r = probe(&bed, BULK_SALT, 1, "probe-before")?;
    let (acks, _, _) = counts(&r);
    assert_eq!(acks, 0, "unregistered client served: {r}");
    wait_for("the refusal counted", Duration::from_secs(5), || {
        Ok((denied_in(&log)? > 0).then_some(()))
    })?;

    // The loadgen's clients registered, then load.
    let load_csv = bed.path("load.csv");
    csv(&load_csv, LOAD_SALT, LOAD_CLIENTS, "cpe")?;
    ctl(&bed, &["import", &load_csv.to_string_lossy()])?;
    let lg_json = bed.path("load.json");
    let mut lg = bed.spawn_client(
        "xdhcp-loadgen",
        &loadgen.to_string_lossy(),
        &[
            "-i",
            bed.cli_if(),
            "--io",
            "packet",
            "--scenario",
            "dora",
            "--clients",
            &LOAD_CLIENTS.to_string(),
            "--rate",
            "2000",
            "--duration",
            "12s",
            "--timeout-ms",
            "1000",
            "--retries",
            "2",
            "--quiet",
            "--json",
            &lg_json.to_string_lossy(),
        ],
        &bed.path("loadgen.log"),
    )?;
    std::thread::sleep(Duration::from_secs(3));

    // The bulk import while the load runs.
    let bulk_csv = bed.path("bulk.csv");
    csv(&bulk_csv, BULK_SALT, BULK, "modem")?;
    let t = Instant::now();
    let msg = ctl(&bed, &["import", &bulk_csv.to_string_lossy()])?;
    let wall = t.elapsed();
    eprintln!(
        "bulk import of {BULK} under load: {} (ctl round trip {wall:?})",
        msg.trim()
    );
    assert!(msg.contains(&format!("imported {BULK}")), "{msg}");
    // Served at once: the probe MAC is among the imported.
    let r = probe(&bed, BULK_SALT, 3, "probe-after")?;
    let (acks, naks, _) = counts(&r);
    assert_eq!(
        (acks, naks),
        (3, 0),
        "newly registered clients not served: {r}"
    );

    // Removed: refused at its next DISCOVER.
    ctl(&bed, &["remove", "--mac", &mac(BULK_SALT, 0)])?;
    // The stats line of the next second (after the remove's refusals are all in).
    std::thread::sleep(Duration::from_millis(1100));
    let denied = denied_in(&log)?;
    let r = probe(&bed, BULK_SALT, 1, "probe-removed")?;
    let (acks, _, _) = counts(&r);
    assert_eq!(acks, 0, "removed client still served: {r}");
    wait_for("the refusal counted", Duration::from_secs(5), || {
        Ok((denied_in(&log)? > denied).then_some(()))
    })?;

    // The load: no DORA lost or NAKed.
    let st = lg.wait_exit(Duration::from_secs(60))?;
    if !st.success() {
        return Err(format!("loadgen failed ({st}): {}", lg.log_text()));
    }
    let r: serde_json::Value =
        serde_json::from_str(&read_text(&lg_json)?).map_err(|e| format!("load.json: {e}"))?;
    let (acks, naks, drops) = counts(&r);
    eprintln!("load during the import: {acks} ACKs, {naks} NAKs, {drops} lost");
    assert!(
        acks > 10_000,
        "too little load to show anything: {acks} ACKs"
    );
    assert_eq!(naks, 0, "NAKs under the import: {r}");
    assert_eq!(drops, 0, "DORAs lost under the import: {r}");

    // kill -9, restart: the registrations are there.
    daemon.signal(libc::SIGKILL)?;
    daemon.wait_exit(Duration::from_secs(10))?;
    let log2 = bed.path("xdhcpd-2.log");
    let mut daemon = start(&bed, &cfg, &log2)?;
    let want = LOAD_CLIENTS + BULK - 1;
    let text = read_text(&log2)?;
    assert!(
        text.contains(&format!("{want} loaded")),
        "after kill -9: {text}"
    );
    let show = ctl(&bed, &["show"])?;
    assert!(show.contains(&format!("{want} registrations")), "{show}");
    let r = probe(&bed, BULK_SALT, 1, "probe-removed-after-restart")?;
    assert_eq!(counts(&r).0, 0, "removed client served after restart: {r}");
    let r = probe(&bed, BULK_SALT, 2, "probe-after-restart")?;
    // Client 0 was removed; client 1 is registered.
    assert_eq!(counts(&r).0, 1, "after restart: {r}");
    daemon.signal(libc::SIGTERM)?;
    daemon.wait_exit(Duration::from_secs(15))?;
    Ok(())
}
