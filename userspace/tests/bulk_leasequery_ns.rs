//! RFC 6926 bulk leasequery against the real daemon in network namespaces (root; see
//! `common/require.rs`), XDP data path: TCP to port 67 passes the XDP program to the kernel.
//!
//! The lease file is written before the daemon starts: 3,000 ACTIVE bindings, each with an
//! option 82 of a relay-id (RFC 6925 sub-option 12; `olt-a` for every third binding, else
//! `olt-b`) and a remote-id (`cpe-N`), the way a relay with option 82 leaves them. Then, from
//! an address in `leasequery-allow`, `xdhcpd leasequery --bulk` asks by relay-id, by
//! remote-id and for all configured addresses: each answer must be exactly the table's. From
//! an address not allowed the query is answered NotAllowed (and counted in `/metrics`).
//!
//! `bulk_leasequery_ns_100k_by_relay_id` (ignored; run by hand for benches/RESULTS.md): the
//! same with 100,000 bindings of one relay-id, timed.

#[path = "common/netns.rs"]
mod netns;

#[path = "common/require.rs"]
mod require;

mod daemon_common;

use std::collections::BTreeSet;
use std::net::Ipv4Addr;
use std::path::{Path, PathBuf};
use std::time::Instant;

use daemon_common::*;
use lease_store::{ClientKey, LeaseState, LeaseTable, OpenOptions};
use require::{require, Capability};

/// The client end's address: the only one allowed to ask.
const ASKER: &str = "10.77.0.9";

/// The daemon's configuration: pool `first`-`last` in subnet `cidr`.
fn config(bed: &Bed, cidr: &str, first: Ipv4Addr, last: Ipv4Addr) -> Res<PathBuf> {
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
max-connections = 4
idle-timeout = 10

[[subnet]]
cidr = "10.77.0.0/16"
router = ["{SRV_ADDR}"]
[[subnet.pool]]
range = "10.77.200.1-10.77.200.10"

[[subnet]]
cidr = "{cidr}"
[[subnet.pool]]
range = "{first}-{last}"
"#,
        iface = bed.srv_if(),
        leases = bed.path("leases.db").display(),
        sock = bed.path("ctl.sock").display(),
    );
    write_file(&path, &text)?;
    Ok(path)
}

fn opt82(relay: &str, remote: &str) -> Vec<u8> {
    let mut v = vec![12, relay.len() as u8];
    v.extend_from_slice(relay.as_bytes());
    v.extend_from_slice(&[2, remote.len() as u8]);
    v.extend_from_slice(remote.as_bytes());
    v
}

/// Writes `n` ACTIVE bindings from address `first` on; `relay_of(i)` names the relay-id of
/// binding `i`. Returns (address, relay-id, remote-id) of each.
fn write_bindings(
    config: &Path,
    lease_file: &Path,
    first: Ipv4Addr,
    n: u32,
    relay_of: impl Fn(u32) -> &'static str,
) -> Res<Vec<(Ipv4Addr, &'static str, String)>> {
    let pools = pools_of(config)?;
    let now = unix_now();
    let (table, _) = LeaseTable::open(
        lease_file,
        &pools,
        &OpenOptions {
            now,
            ..OpenOptions::default()
        },
    )
    .map_err(|e| format!("creating {}: {e}", lease_file.display()))?;
    let first = u32::from(first);
    let mut out = Vec::new();
    for i in 0..n {
        let ip = Ipv4Addr::from(first + i);
        let slot = table
            .slot_of(ip)
            .ok_or_else(|| format!("{ip} is not in the pool"))?;
        let mac = [2, 0x4c, (i >> 16) as u8, (i >> 8) as u8, i as u8, 1];
        let relay = relay_of(i);
        let remote = format!("cpe-{i}");
        let ri = opt82(relay, &remote);
        let (stored, _) = table.update_full(slot, |l, v| {
            l.state = LeaseState::Active;
            l.client = ClientKey::from_hw(1, &mac);
            l.htype = 1;
            l.hlen = 6;
            l.chaddr[..6].copy_from_slice(&mac);
            l.start = now - 10;
            l.cltt = now - 10;
            l.lease_time = 86_400;
            l.expiry = now + 86_400;
            v.set_relay_agent_info(&ri)
        });
        if !stored {
            return Err(format!("option 82 of {ip} did not fit the record"));
        }
        out.push((ip, relay, remote));
    }
    table.flush().map_err(|e| format!("flushing: {e}"))?;
    Ok(out)
}

/// `xdhcpd leasequery --bulk ARGS` in `ns`: (exit ok, stdout, stderr).
fn bulk(ns: &netns::Netns, args: &[&str]) -> Res<(bool, String, String)> {
    let bin = xdhcpd_bin()?;
    let out = ns
        .command(&bin.to_string_lossy())
        .args([
            "leasequery",
            "--bulk",
            "--server",
            SRV_ADDR,
            "--timeout-ms",
            "10000",
        ])
        .args(args)
        .output()
        .map_err(|e| format!("running xdhcpd leasequery: {e}"))?;
    Ok((
        out.status.success(),
        String::from_utf8_lossy(&out.stdout).into_owned(),
        String::from_utf8_lossy(&out.stderr).into_owned(),
    ))
}

/// The addresses of the ACTIVE lines, and the summary line.
fn active_lines(stdout: &str) -> (BTreeSet<Ipv4Addr>, usize, String) {
    let mut set = BTreeSet::new();
    let mut unassigned = 0;
    let mut summary = String::new();
    for l in stdout.lines() {
        let mut w = l.split_whitespace();
        match w.next() {
            Some("ACTIVE") => {
                if let Some(a) = w.next().and_then(|a| a.parse().ok()) {
                    set.insert(a);
                }
            }
            Some("UNASSIGNED") => unassigned += 1,
            _ => summary = l.to_string(),
        }
    }
    (set, unassigned, summary)
}

fn metric(bed: &Bed, event: &str) -> Res<u64> {
    let bin = xdhcpd_bin()?;
    let out = output(
        std::process::Command::new(&bin)
            .args(["ctl", "--socket"])
            .arg(bed.path("ctl.sock"))
            .arg("metrics"),
    )?;
    let key = format!("xdhcpd_bulk_leasequery_total{{event=\"{event}\"}} ");
    out.stdout
        .lines()
        .find_map(|l| l.strip_prefix(&key))
        .and_then(|v| v.trim().parse().ok())
        .ok_or_else(|| format!("no {key} in the metrics:\n{}", out.stdout))
}

#[test]
fn bulk_leasequery_ns_by_relay_id_remote_id_and_all() -> Res<()> {
    if !require(&[Capability::Root, Capability::Program("ip")]) {
        return Ok(());
    }
    let started = Instant::now();
    let bed = Bed::new(Some(&format!("{ASKER}/16")))?;
    // A relayed subnet, 10.88.1.1 .. 10.88.16.0: 3,840 addresses.
    let first = Ipv4Addr::new(10, 88, 1, 1);
    let cfg = config(&bed, "10.88.0.0/16", first, Ipv4Addr::new(10, 88, 16, 0))?;
    let bindings = write_bindings(&cfg, &bed.path("leases.db"), first, 3000, |i| {
        if i % 3 == 0 {
            "olt-a"
        } else {
            "olt-b"
        }
    })?;
    let mut daemon = Daemon::start(&bed, &cfg, Io::Xdp)?;
    if !bed.srv_has_xdp()? {
        return Err("the XDP program is not attached: the test must cross it".into());
    }

    // By relay-id: exactly the bindings of olt-a.
    let (ok, out, err) = bulk(&bed.cli, &["--relay-id", "olt-a"])?;
    assert!(ok, "bulk query by relay-id failed: {err}\n{out}");
    let want: BTreeSet<Ipv4Addr> = bindings
        .iter()
        .filter(|b| b.1 == "olt-a")
        .map(|b| b.0)
        .collect();
    let (got, unassigned, summary) = active_lines(&out);
    assert_eq!(want.len(), 1000);
    assert_eq!(got, want, "relay-id olt-a: {summary}");
    assert_eq!(unassigned, 0);
    assert!(
        summary.starts_with("1000 bindings (1000 active"),
        "{summary}"
    );
    // Each line carries the binding's relay data.
    let line = out
        .lines()
        .find(|l| l.starts_with("ACTIVE 10.88.1.1 "))
        .ok_or("no line for 10.88.1.1")?;
    assert!(
        line.contains("relay-id=olt-a") && line.contains("remote-id=cpe-0"),
        "{line}"
    );
    assert!(line.contains("mac=02:4c:00:00:00:01"), "{line}");

    // By remote-id: the one binding.
    let (ok, out, err) = bulk(&bed.cli, &["--remote-id", "cpe-1234"])?;
    assert!(ok, "bulk query by remote-id failed: {err}");
    let (got, _, _) = active_lines(&out);
    assert_eq!(got, BTreeSet::from([bindings[1234].0]), "{out}");

    // All configured addresses: every binding ACTIVE, every other address (both pools)
    // UNASSIGNED.
    let (ok, out, err) = bulk(&bed.cli, &["--all"])?;
    assert!(ok, "bulk query for all failed: {err}");
    let (got, unassigned, summary) = active_lines(&out);
    let all: BTreeSet<Ipv4Addr> = bindings.iter().map(|b| b.0).collect();
    assert_eq!(got, all, "{summary}");
    assert_eq!(unassigned, 3840 - 3000 + 10, "{summary}");

    // From an address not in leasequery-allow (the server's own): NotAllowed, no binding.
    let (ok, out, err) = bulk(&bed.srv, &["--all"])?;
    assert!(!ok, "a disallowed requestor was answered: {out}");
    assert!(err.contains("NotAllowed"), "{err}");
    assert!(!out.contains("ACTIVE"), "{out}");

    assert_eq!(metric(&bed, "not_allowed")?, 1);
    assert_eq!(metric(&bed, "connections_refused")?, 1);
    assert_eq!(metric(&bed, "connections")?, 3);
    assert_eq!(metric(&bed, "done")?, 3);
    assert_eq!(metric(&bed, "active")?, 1000 + 1 + 3000);
    daemon.check_alive()?;
    daemon.stop()?;
    eprintln!("bulk_leasequery_ns: {:?}", started.elapsed());
    Ok(())
}

/// 100,000 bindings of one relay-id, asked by relay-id; prints the time for RESULTS.md.
#[test]
#[ignore]
fn bulk_leasequery_ns_100k_by_relay_id() -> Res<()> {
    if !require(&[Capability::Root, Capability::Program("ip")]) {
        return Ok(());
    }
    let bed = Bed::new(Some(&format!("{ASKER}/16")))?;
    // 10.80.0.1 .. 10.81.134.160: 100,000 addresses, all bound.
    let first = Ipv4Addr::new(10, 80, 0, 1);
    let cfg = config(&bed, "10.80.0.0/14", first, Ipv4Addr::new(10, 81, 134, 160))?;
    let bindings = write_bindings(&cfg, &bed.path("leases.db"), first, 100_000, |_| "olt-big")?;
    let daemon = Daemon::start(&bed, &cfg, Io::Xdp)?;
    let mut times = Vec::new();
    for _ in 0..3 {
        let t = Instant::now();
        let (ok, out, err) = bulk(&bed.cli, &["--relay-id", "olt-big"])?;
        let dt = t.elapsed();
        assert!(ok, "{err}");
        let (got, _, summary) = active_lines(&out);
        assert_eq!(got.len(), bindings.len(), "{summary}");
        eprintln!("100k by relay-id: {summary} (process wall {dt:?})");
        times.push(dt);
    }
    daemon.stop()?;
    eprintln!("100k by relay-id wall times: {times:?}");
    Ok(())
}
