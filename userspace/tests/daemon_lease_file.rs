//! The lease file at the daemon level (issue 4): what `xdhcpd run` does with a damaged file
//! and with configuration changes that move pool boundaries.
//!
//! - a truncated file, a file of another format version, a file that is not a lease file:
//!   exit non-zero, and stderr names the file and what is wrong;
//! - a file with corrupted records: the daemon starts, logs each quarantined address, and
//!   never hands those addresses out, even when the pool runs dry around them;
//! - adding a pool or growing a range keeps every lease (returning clients get their address
//!   back);
//! - shrinking a range or removing a pool with live leases outside the new pools: refused,
//!   with the leases listed, unless `--allow-shrink` is given; with it the leases inside are
//!   kept and the dropped ones are logged.
//!
//! Clients are `xdhcp-loadgen` (AF_PACKET) with `--acked-log`, the daemon runs in XDP mode in
//! its namespace. Needs root (see `common/require.rs`).

#[path = "common/netns.rs"]
mod netns;

#[path = "common/require.rs"]
mod require;

mod daemon_common;
mod lease_common;

use std::collections::{HashMap, HashSet};
use std::fs;
use std::net::Ipv4Addr;
use std::path::{Path, PathBuf};
use std::process::Command;
use std::sync::Mutex;

use daemon_common::{final_counters, output, read_text, repo_root, Bed, Res};
use lease_common::*;
use lease_store::{LeaseState, LeaseTable, OpenOptions, PoolSpec, FLAG_QUARANTINED};
use require::{require, Capability};

/// Every test here runs the daemon and clients in namespaces, under `timeout`.
const NEEDS: &[Capability] = &[
    Capability::Root,
    Capability::Program("ip"),
    Capability::Program("timeout"),
];

/// One daemon + loadgen at a time (2 cores).
static SERIAL: Mutex<()> = Mutex::new(());

const LEASE_SECS: u32 = 3600;

fn ip(a: u8, b: u8) -> Ipv4Addr {
    Ipv4Addr::new(10, 77, a, b)
}

/// A bed, its config path and lease file.
struct Setup {
    bed: Bed,
    leases: PathBuf,
    runs: u32,
}

impl Setup {
    fn new() -> Res<Setup> {
        let bed = Bed::new(None)?;
        let leases = bed.path("leases.db");
        Ok(Setup {
            bed,
            leases,
            runs: 0,
        })
    }

    fn config(&self, name: &str, pools: &[(Ipv4Addr, Ipv4Addr)]) -> Res<PathBuf> {
        write_config(&self.bed, name, "ack", LEASE_SECS, pools)
    }

    fn log(&mut self) -> PathBuf {
        self.runs += 1;
        self.bed.path(&format!("xdhcpd-{}.log", self.runs))
    }

    /// Runs the daemon with `config`, `clients` DORAs (clients 0..clients, each once), stops
    /// it cleanly; returns the ACKs and the daemon's log.
    fn serve(&mut self, config: &Path, clients: u32, extra: &[&str]) -> Res<(Vec<Ack>, String)> {
        let log = self.log();
        let d = start_daemon(&self.bed, config, "xdp", &self.leases, &log, extra)?;
        let acks = dora(&self.bed, clients, self.runs)?;
        stop_daemon(d)?;
        Ok((acks, read_text(&log)?))
    }

    /// Runs `xdhcpd run` expecting it to fail at start; returns its stderr.
    fn start_fails(&mut self, config: &Path, extra: &[&str]) -> Res<String> {
        let bin = daemon_common::xdhcpd_bin()?;
        let bin = bin.to_string_lossy();
        let mut cmd: Command = self.bed.srv.command("timeout");
        cmd.args(["30", &bin, "run", "-c"])
            .arg(config)
            .args(["--interface", self.bed.srv_if(), "--io", "xdp"])
            .arg("--lease-file")
            .arg(&self.leases)
            .args(["--run-for", "5"])
            .args(extra)
            .current_dir(repo_root())
            .env("NO_COLOR", "1");
        let out = output(&mut cmd)?;
        if out.status.success() {
            return Err(format!(
                "xdhcpd started although it should have refused; stdout:\n{}\nstderr:\n{}",
                out.stdout, out.stderr
            ));
        }
        if out.status.code() == Some(124) {
            return Err(format!("xdhcpd did not exit within 30 s:\n{}", out.stderr));
        }
        Ok(out.stderr)
    }
}

/// `clients` simulated clients (index 0..clients, the same MACs in every call) each do one
/// DORA; returns the ACKs they received.
fn dora(bed: &Bed, clients: u32, run: u32) -> Res<Vec<Ack>> {
    let lg = loadgen_bin()?;
    let acked = bed.path(&format!("acked-{run}.log"));
    let n = clients.to_string();
    let out = output(bed.cli.command("timeout").args([
        "60",
        &lg.to_string_lossy(),
        "-i",
        bed.cli_if(),
        "--io",
        "packet",
        "--scenario",
        "dora",
        "--clients",
        &n,
        "--count",
        &n,
        "--concurrency",
        "8",
        "--timeout-ms",
        "500",
        "--retries",
        "3",
        "--quiet",
        "--acked-log",
        &acked.to_string_lossy(),
    ]))?;
    if !out.status.success() {
        return Err(format!(
            "loadgen failed ({}):\n{}{}",
            out.status, out.stdout, out.stderr
        ));
    }
    let acks = AckReader::new(&acked).read_new()?;
    if acks.is_empty() {
        return Err(format!("no ACK at all; loadgen:\n{}", out.stdout));
    }
    Ok(acks)
}

/// The records of a lease file no daemon holds (opened on a copy, left untouched).
fn table_of(s: &Setup, pools: &[PoolSpec]) -> Res<HashMap<Ipv4Addr, lease_store::Lease>> {
    let copy = s.bed.path("check.db");
    fs::copy(&s.leases, &copy).map_err(|e| format!("copying the lease file: {e}"))?;
    let (t, _) = open_table(&copy, pools)?;
    Ok(t.into_iter().map(|l| (l.addr, l)).collect())
}

fn check_kept(table: &HashMap<Ipv4Addr, lease_store::Lease>, acks: &[Ack]) -> Res<()> {
    for a in acks {
        if let Some(why) = ack_problem(table, a) {
            return Err(format!("lease {} of {} lost: {why}", a.addr, a.client));
        }
    }
    Ok(())
}

fn lock() -> std::sync::MutexGuard<'static, ()> {
    SERIAL.lock().unwrap_or_else(|e| e.into_inner())
}

/// A valid lease file with a few leases, made by the daemon itself.
fn populated(s: &mut Setup, pools: &[(Ipv4Addr, Ipv4Addr)], clients: u32) -> Res<Vec<Ack>> {
    let cfg = s.config("xdhcpd.toml", pools)?;
    let (acks, _) = s.serve(&cfg, clients, &[])?;
    Ok(acks)
}

#[test]
fn truncated_lease_file_is_refused_naming_the_file() -> Res<()> {
    if !require(NEEDS) {
        return Ok(());
    }
    let _g = lock();
    let mut s = Setup::new()?;
    let pools = [(ip(1, 0), ip(1, 63))];
    populated(&mut s, &pools, 5)?;
    let len = fs::metadata(&s.leases).map_err(|e| e.to_string())?.len();
    let f = fs::OpenOptions::new()
        .write(true)
        .open(&s.leases)
        .map_err(|e| e.to_string())?;
    f.set_len(len - 1000).map_err(|e| e.to_string())?;
    drop(f);
    let cfg = s.bed.path("xdhcpd.toml");
    let err = s.start_fails(&cfg, &[])?;
    let path = s.leases.display().to_string();
    assert!(
        err.contains(&format!("{path}: truncated: {} bytes", len - 1000)),
        "stderr must name the file and the truncation:\n{err}"
    );
    assert!(err.contains("geometry needs"), "{err}");
    // Cut inside the header too.
    let f = fs::OpenOptions::new()
        .write(true)
        .open(&s.leases)
        .map_err(|e| e.to_string())?;
    f.set_len(100).map_err(|e| e.to_string())?;
    drop(f);
    let err = s.start_fails(&cfg, &[])?;
    assert!(
        err.contains(&format!(
            "{path}: truncated: 100 bytes, the header alone needs"
        )),
        "{err}"
    );
    // The refused file is left as it was (no silent re-creation).
    assert_eq!(
        fs::metadata(&s.leases).map_err(|e| e.to_string())?.len(),
        100
    );
    Ok(())
}

#[test]
fn wrong_version_or_foreign_file_is_refused_naming_the_file() -> Res<()> {
    if !require(NEEDS) {
        return Ok(());
    }
    let _g = lock();
    let mut s = Setup::new()?;
    let pools = [(ip(1, 0), ip(1, 63))];
    populated(&mut s, &pools, 3)?;
    let mut bytes = fs::read(&s.leases).map_err(|e| e.to_string())?;
    let original = bytes.clone();
    // Format version: u32 little-endian at offset 8.
    bytes[8..12].copy_from_slice(&99u32.to_le_bytes());
    fs::write(&s.leases, &bytes).map_err(|e| e.to_string())?;
    let cfg = s.bed.path("xdhcpd.toml");
    let err = s.start_fails(&cfg, &[])?;
    let path = s.leases.display().to_string();
    assert!(
        err.contains(&format!(
            "{path}: format version 99, this build reads {}",
            lease_store::FORMAT_VERSION
        )),
        "stderr must name the file and both versions:\n{err}"
    );
    assert_eq!(
        fs::read(&s.leases).map_err(|e| e.to_string())?,
        bytes,
        "a refused file must not be modified"
    );
    // Something that is not a lease file at all (e.g. an ISC dhcpd.leases given by mistake).
    fs::write(
        &s.leases,
        "lease 10.77.1.5 {\n  starts 4 2026/11/19 10:00:00;\n}\n".repeat(200),
    )
    .map_err(|e| e.to_string())?;
    let err = s.start_fails(&cfg, &[])?;
    assert!(
        err.contains(&format!("{path}: not an xdhcpd lease file")),
        "{err}"
    );
    // And the original still works.
    fs::write(&s.leases, &original).map_err(|e| e.to_string())?;
    let (acks, _) = s.serve(&cfg, 3, &[])?;
    assert_eq!(acks.len(), 3);
    Ok(())
}

#[test]
fn corrupted_records_are_quarantined_logged_and_never_handed_out() -> Res<()> {
    if !require(NEEDS) {
        return Ok(());
    }
    let _g = lock();
    let mut s = Setup::new()?;
    // 64 addresses; the first run binds 20.
    let pools = [(ip(1, 0), ip(1, 63))];
    let specs = pool_specs(&pools);
    let first = populated(&mut s, &pools, 20)?;
    assert_eq!(first.len(), 20, "all 20 clients bound in the first run");

    // Corrupt the record of one bound address and of one free address (one byte each, in
    // the middle of the record: the CRC no longer matches).
    let bound = first[7].addr;
    let table = table_of(&s, &specs)?;
    let free = (0..64u8)
        .map(|b| ip(1, b))
        .find(|a| table.get(a).is_some_and(|l| l.state == LeaseState::Free))
        .ok_or("no free address left in the pool")?;
    let offsets: Vec<u64> = {
        let (t, _) = LeaseTable::open(
            &s.leases,
            &specs,
            &OpenOptions {
                create: false,
                ..OpenOptions::default()
            },
        )
        .map_err(|e| e.to_string())?;
        [bound, free]
            .iter()
            .map(|a| t.slot_of(*a).map(|sl| t.record_offset(sl)))
            .collect::<Option<_>>()
            .ok_or("address not in the table")?
    };
    let mut bytes = fs::read(&s.leases).map_err(|e| e.to_string())?;
    for off in &offsets {
        bytes[*off as usize + 60] ^= 0x5a;
    }
    fs::write(&s.leases, &bytes).map_err(|e| e.to_string())?;

    // Restart: 62 clients (the first 20 again + 42 new) for the 62 usable addresses.
    let cfg = s.bed.path("xdhcpd.toml");
    let (acks, log) = s.serve(&cfg, 62, &[])?;
    for a in [bound, free] {
        assert!(
            log.contains(&format!("lease record for {a} quarantined")),
            "the log must name quarantined {a}:\n{log}"
        );
    }
    let handed: HashSet<Ipv4Addr> = acks.iter().map(|a| a.addr).collect();
    assert!(
        !handed.contains(&bound) && !handed.contains(&free),
        "a quarantined address was handed out: {bound} or {free} in {handed:?}"
    );
    // The pool ran dry around them: every other address is now bound.
    assert_eq!(
        handed.len(),
        62,
        "62 clients should hold the 62 usable addresses ({} ACKs)",
        acks.len()
    );
    let after = table_of(&s, &specs)?;
    for a in [bound, free] {
        let l = after.get(&a).ok_or("record missing")?;
        assert_eq!(l.state, LeaseState::Abandoned, "{a}: {l:?}");
        assert_ne!(l.flags & FLAG_QUARANTINED, 0, "{a} must stay quarantined");
    }
    check_kept(&after, &acks)?;
    // A 63rd client gets nothing (no address is left but the quarantined ones).
    let more = dora_expect_none(&mut s, &cfg)?;
    assert!(
        more,
        "a client was served although only quarantined addresses remain"
    );
    Ok(())
}

/// Runs the daemon and 63 clients; true if client 62 (the new one) got no ACK.
fn dora_expect_none(s: &mut Setup, cfg: &Path) -> Res<bool> {
    let log = s.log();
    let d = start_daemon(&s.bed, cfg, "xdp", &s.leases, &log, &[])?;
    let lg = loadgen_bin()?;
    let acked = s.bed.path("acked-extra.log");
    let out = output(s.bed.cli.command("timeout").args([
        "60",
        &lg.to_string_lossy(),
        "-i",
        s.bed.cli_if(),
        "--io",
        "packet",
        "--scenario",
        "dora",
        "--clients",
        "63",
        "--count",
        "63",
        "--concurrency",
        "8",
        "--timeout-ms",
        "300",
        "--retries",
        "1",
        "--quiet",
        "--acked-log",
        &acked.to_string_lossy(),
    ]))?;
    stop_daemon(d)?;
    if !out.status.success() {
        return Err(format!("loadgen failed: {}{}", out.stdout, out.stderr));
    }
    // Client 62's missing ACK means something only if its DISCOVER reached the daemon: the
    // stopped daemon counted it as refused for want of an address.
    let text = read_text(&log)?;
    let (engine, _) = final_counters(&text)?;
    if engine.get("pool_exhausted").copied().unwrap_or(0) == 0 {
        return Err(format!(
            "the daemon refused no DISCOVER for want of an address (pool_exhausted = 0), so \
             the new client's missing ACK proves nothing:\n{text}"
        ));
    }
    let acks = AckReader::new(&acked).read_new()?;
    // Client 62's key: client-id 01 + MAC 02:4c:00:00:00:3e.
    Ok(!acks.iter().any(|a| a.client == "01024c0000003e") && acks.len() == 62)
}

#[test]
fn adding_a_pool_or_growing_a_range_keeps_every_lease() -> Res<()> {
    if !require(NEEDS) {
        return Ok(());
    }
    let _g = lock();
    let mut s = Setup::new()?;
    let small = [(ip(1, 0), ip(1, 31))];
    let acks = populated(&mut s, &small, 30)?;
    assert_eq!(acks.len(), 30);
    // Grow the range and add a pool.
    let grown = [(ip(1, 0), ip(1, 127)), (ip(2, 0), ip(2, 63))];
    let cfg = s.config("grown.toml", &grown)?;
    let log = s.log();
    let d = start_daemon(&s.bed, &cfg, "xdp", &s.leases, &log, &[])?;
    stop_daemon(d)?;
    let text = read_text(&log)?;
    assert!(
        text.contains("lease file rebuilt for the new pools"),
        "the rebuild is logged:\n{text}"
    );
    let table = table_of(&s, &pool_specs(&grown))?;
    check_kept(&table, &acks)?;
    // Returning clients get their own address back; 100 more fill the new space.
    let (again, _) = s.serve(&cfg, 130, &[])?;
    let before: HashMap<&str, Ipv4Addr> =
        acks.iter().map(|a| (a.client.as_str(), a.addr)).collect();
    for a in &again {
        if let Some(old) = before.get(a.client.as_str()) {
            assert_eq!(
                *old, a.addr,
                "client {} moved after the pool change",
                a.client
            );
        }
    }
    assert_eq!(again.len(), 130, "every client served from the grown pools");
    let table = table_of(&s, &pool_specs(&grown))?;
    check_kept(&table, &again)?;
    Ok(())
}

#[test]
fn shrinking_or_removing_pools_needs_allow_shrink_and_lists_the_leases() -> Res<()> {
    if !require(NEEDS) {
        return Ok(());
    }
    let _g = lock();
    let mut s = Setup::new()?;
    let pools = [(ip(1, 0), ip(1, 63)), (ip(2, 0), ip(2, 63))];
    let acks = populated(&mut s, &pools, 100)?;
    assert_eq!(acks.len(), 100);
    // Shrink the first pool to 32 addresses, remove the second.
    let shrunk = [(ip(1, 0), ip(1, 31))];
    let inside = |a: Ipv4Addr| (ip(1, 0)..=ip(1, 31)).contains(&a);
    let lost: HashSet<Ipv4Addr> = acks
        .iter()
        .map(|a| a.addr)
        .filter(|a| !inside(*a))
        .collect();
    assert!(!lost.is_empty());
    let cfg = s.config("shrunk.toml", &shrunk)?;
    let err = s.start_fails(&cfg, &[])?;
    let path = s.leases.display().to_string();
    assert!(
        err.contains(&format!(
            "{path}: the configured pools no longer contain {} address(es) with live leases: ",
            lost.len()
        )),
        "stderr names the file and the count:\n{err}"
    );
    assert!(
        err.contains("--allow-shrink"),
        "stderr names the flag:\n{err}"
    );
    // The listed addresses (the store lists the first 10) are leases that would be lost.
    let listed: Vec<Ipv4Addr> = err
        .split(|c: char| !(c.is_ascii_digit() || c == '.'))
        .filter_map(|w| w.parse().ok())
        .filter(|a: &Ipv4Addr| a.octets()[..2] == [10, 77])
        .collect();
    assert_eq!(
        listed.len(),
        lost.len().min(10),
        "listed: {listed:?}\n{err}"
    );
    for a in &listed {
        assert!(lost.contains(a), "{a} listed but not a lost lease:\n{err}");
    }
    // Nothing was changed by the refusal.
    check_kept(&table_of(&s, &pool_specs(&pools))?, &acks)?;

    // With the flag: starts, logs every dropped lease, keeps those inside.
    let log = s.log();
    let d = start_daemon(&s.bed, &cfg, "xdp", &s.leases, &log, &["--allow-shrink"])?;
    stop_daemon(d)?;
    let text = read_text(&log)?;
    let dropped = text.matches("--allow-shrink: dropped the").count();
    assert_eq!(
        dropped,
        lost.len(),
        "one log line per dropped lease:\n{text}"
    );
    let table = table_of(&s, &pool_specs(&shrunk))?;
    let kept: Vec<Ack> = acks.iter().filter(|a| inside(a.addr)).cloned().collect();
    assert_eq!(kept.len() + lost.len(), acks.len());
    check_kept(&table, &kept)?;
    assert!(table.keys().all(|a| inside(*a)));
    Ok(())
}
