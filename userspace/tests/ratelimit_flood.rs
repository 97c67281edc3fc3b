//! Rate limits against a flood (issue 12, item 5; root, eBPF object, see `common/require.rs`).
//!
//! Three namespaces on one bridge: the server (XDP), relay R1 and relay R2 (each an
//! `xdp-loadgen` in relay mode, giaddr = its own address). R2's 1,000 clients bind and then
//! renew at 400/s while R1 floods DISCOVERs from 100,000 MACs as fast as the load generator
//! can (`--self-test`). With `[rate-limit] relay-rate` the flood is cut in XDP per relay and
//! at least 99 % of R2's renewals are answered; the run without limits is reported beside
//! it (figures in `benches/RESULTS.md`).
//!
//! `cargo test --release -p xdhcpd --test ratelimit_flood -- --nocapture` prints both runs.

#[path = "common/netns.rs"]
mod netns;

#[path = "common/require.rs"]
mod require;

#[path = "daemon_common/mod.rs"]
mod daemon_common;

#[path = "failover_common/mod.rs"]
mod failover_common;

use std::process::Stdio;
use std::time::Duration;

use daemon_common::{loadgen_bin, read_text, write_file, Res};
use failover_common::{PairBed, Xd, A_ADDR};

const R1: &str = "10.77.0.21";
const R2: &str = "10.77.0.22";
const RENEW_CLIENTS: u32 = 1_000;
const FLOOD_CLIENTS: u32 = 100_000;

fn config(bed: &PairBed, limits: bool) -> String {
    format!(
        "[server]\ninterface = \"{}\"\nio = \"xdp\"\nserver-id = \"{A_ADDR}\"\n\
         lease-file = \"{}\"\ncontrol-socket = \"{}\"\n\n\
         [lease]\ndefault-time = 3600\nmin-time = 10\nmax-time = 86400\noffer-hold = 5\n\n\
         [[subnet]]\ncidr = \"10.77.0.0/16\"\nrouter = [\"{A_ADDR}\"]\n\n\
         [[subnet.pool]]\nrange = \"10.77.1.0-10.77.250.255\"\n\n{}",
        bed.la.a,
        bed.path(if limits { "l.db" } else { "n.db" }).display(),
        bed.path(if limits { "l.sock" } else { "n.sock" }).display(),
        if limits {
            "[rate-limit]\nrelay-rate = 2000\nrelay-burst = 2000\nclient-rate = 10\nclient-burst = 20\n"
        } else {
            ""
        }
    )
}

/// One run: returns (renew phase sent, answered, flood tx pps, server's final xdp line).
fn run(bed: &PairBed, limits: bool) -> Res<(u64, u64, f64, String)> {
    let tag = if limits { "limits" } else { "nolimits" };
    let cfg = bed.path(&format!("{tag}.toml"));
    write_file(&cfg, &config(bed, limits))?;
    let db = bed.path(if limits { "l.db" } else { "n.db" });
    let sock = bed.path(if limits { "l.sock" } else { "n.sock" });
    let xd = Xd::start(&bed.a, &cfg, &db, &sock, &bed.path(&format!("{tag}.log")))?;
    let lg = loadgen_bin()?;
    let renew_json = bed.path(&format!("{tag}-renew.json"));
    let flood_json = bed.path(&format!("{tag}-flood.json"));
    // Renewals through R2: warm-up DORA of every client, then 16 s of renewals at 400/s.
    let renew = bed
        .b
        .command("timeout")
        .args(["90", &lg.to_string_lossy()])
        .args(["-i", &bed.lb.a, "--relay", R2, "--server", A_ADDR])
        .args([
            "--scenario",
            "renew",
            "--clients",
            &RENEW_CLIENTS.to_string(),
        ])
        .args(["--rate", "400", "--duration", "16s", "--mac-salt", "7"])
        .args([
            "--timeout-ms",
            "1000",
            "--retries",
            "2",
            "--quiet",
            "--json",
        ])
        .arg(&renew_json)
        .stdout(Stdio::null())
        .stderr(Stdio::piped())
        .spawn()
        .map_err(|e| format!("starting the renewing loadgen: {e}"))?;
    // The flood starts once the warm-up is over (1,000 at 400/s: 2.5 s) and stops before
    // the renewals do.
    std::thread::sleep(Duration::from_secs(5));
    let flood = bed
        .c
        .command("timeout")
        .args(["60", &lg.to_string_lossy()])
        .args(["-i", &bed.lc.a, "--relay", R1, "--server", A_ADDR])
        .args(["--self-test", "--clients", &FLOOD_CLIENTS.to_string()])
        .args(["--duration", "10s", "--mac-salt", "9", "--quiet", "--json"])
        .arg(&flood_json)
        .output()
        .map_err(|e| format!("running the flood: {e}"))?;
    let renew = renew
        .wait_with_output()
        .map_err(|e| format!("renewing loadgen: {e}"))?;
    let log = xd.stop()?;
    let xdp_line = log
        .lines()
        .rev()
        .find(|l| l.contains("final:"))
        .and_then(|l| l.split(" xdp: ").nth(1))
        .unwrap_or("")
        .to_string();
    let rj: serde_json::Value = serde_json::from_str(&read_text(&renew_json)?).map_err(|e| {
        format!(
            "renew JSON: {e}; loadgen: {}",
            String::from_utf8_lossy(&renew.stderr)
        )
    })?;
    let fj: serde_json::Value = serde_json::from_str(&read_text(&flood_json)?).map_err(|e| {
        format!(
            "flood JSON: {e}; loadgen: {}",
            String::from_utf8_lossy(&flood.stderr)
        )
    })?;
    let phase = rj["phases"]
        .as_array()
        .and_then(|p| p.iter().find(|p| p["name"] == "renew"))
        .ok_or_else(|| format!("no renew phase: {rj}"))?;
    let sent = phase["sent"].as_u64().unwrap_or(0);
    let acks = phase["acks"].as_u64().unwrap_or(0);
    let pps = fj["loadgen"]["self_test_tx_pps"].as_f64().unwrap_or(0.0);
    eprintln!(
        "{tag}: renewals {acks}/{sent} acked ({:.2} %), flood {pps:.0} DISCOVER/s from \
         {FLOOD_CLIENTS} MACs; server xdp: {xdp_line}\nrenew phase: {phase}",
        100.0 * acks as f64 / sent.max(1) as f64
    );
    Ok((sent, acks, pps, xdp_line))
}

fn counter(line: &str, name: &str) -> u64 {
    line.split_whitespace()
        .find_map(|kv| kv.strip_prefix(&format!("{name}=")))
        .and_then(|v| v.parse().ok())
        .unwrap_or(0)
}

#[test]
fn ratelimit_flood_through_one_relay_spares_renewals_through_another() {
    if !require::require(&[
        require::Capability::Root,
        require::Capability::Program("timeout"),
        require::Capability::Program("ip"),
    ]) {
        return;
    }
    if let Err(e) = scenario() {
        panic!("{e}");
    }
}

fn scenario() -> Res<()> {
    let bed = PairBed::new()?;
    bed.b
        .add_addr(&bed.lb.a, &format!("{R2}/16"))
        .map_err(|e| e.to_string())?;
    bed.c
        .add_addr(&bed.lc.a, &format!("{R1}/16"))
        .map_err(|e| e.to_string())?;
    let baseline = if std::env::var_os("XDHCPD_FLOOD_BASELINE").is_some() {
        Some(run(&bed, false)?)
    } else {
        None
    };
    let (sent, acks, pps, xdp) = run(&bed, true)?;
    assert!(sent >= 4_000, "too few renewals to judge: {sent}");
    assert!(
        acks * 100 >= sent * 99,
        "only {acks} of {sent} renewals answered under the flood; xdp: {xdp}"
    );
    let relay_dropped = counter(&xdp, "ratelimit_relay_dropped");
    assert!(
        relay_dropped > 0,
        "the flood ({pps:.0}/s) was never limited: {xdp}"
    );
    if let Some((s, a, p, x)) = baseline {
        eprintln!(
            "without limits: {a}/{s} renewals ({:.2} %), flood {p:.0}/s, xdp: {x}",
            100.0 * a as f64 / s.max(1) as f64
        );
    }
    Ok(())
}
