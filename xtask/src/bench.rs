//! `cargo xtask bench`: xdhcpd against its raw ceiling, Kea and ISC dhcpd, in
//! one run, over one veth pair, with one load generator and one scenario.
//!
//! Two namespaces joined by a 2-queue veth pair. In the server namespace, one
//! system at a time: `xdhcp-echo` (the raw XDP -> AF_XDP ceiling), xdhcpd in
//! XDP mode (commit=ack, then commit=interval:10), xdhcpd with `--io udp`,
//! Kea 2.2 and ISC dhcpd 4.4, each under `taskset -c 1`. In the client
//! namespace `xdhcp-loadgen` (AF_XDP, one thread on core 0) sweeps the offered
//! DORA rate (open loop, geometric) until more than 10% is lost, then measures
//! p99 latency at half the max sustained rate, renew-only (closed loop) and
//! DORA closed loop. Results: a table on stdout, JSON + SVG in
//! `results/bench-<UTC timestamp>/`, and with `--record` the End-to-end
//! section of `benches/RESULTS.md`.
//!
//! DHCPv6 (issue 14): `ceiling6` (`xdhcp-echo --v6`), `xdhcpd-xdp6` and `kea-dhcp6` run the
//! same sweep with SARR exchanges (IA_NA and IA_PD; one SARR counted as one DORA is), their
//! ratios and targets printed beside the DHCPv4 ones; the server namespace gets a permanent
//! neighbour entry per simulated client (kea-dhcp6 answers link-local addresses through the
//! kernel, and the simulated clients cannot answer neighbour solicitations).
//!
//! Everything created (namespaces, processes, temporary files) is removed on
//! success, on error and on Ctrl-C (Drop guards + a SIGINT flag).
//!
//! Modules: `systems` (what is measured and how each server is configured, started and
//! probed), `loadgen` (one load-generator run and the point it yields), `sweep` (the rate
//! sweep and the other measurements of one system), `process` (child processes, Ctrl-C and
//! the guards that undo the run's changes), `sample` (CPU and link counters), `machine` (the
//! machine and the time of the run), `analysis`, `report` and `svg` (figures, text, plots).

mod ab;
mod analysis;
mod loadgen;
mod machine;
mod process;
mod report;
mod sample;
mod soak;
mod svg;
mod sweep;
mod systems;

use std::fs;
use std::path::{Path, PathBuf};
use std::process::Command;
use std::time::Instant;

use anyhow::{bail, Context, Result};
use serde_json::json;

use crate::netns::NetnsPair;
use crate::{build, ebpf, setup, util};
use analysis::{fmt_rate, ratio, Point};
use machine::{load_average, machine, sync_latency_ms, utc_stamp};
use process::{check_interrupt, on_sigint, RemoveDir, Sysctl};
use sweep::SystemResult;
use systems::System;

#[derive(Debug, clap::Args)]
pub struct BenchArgs {
    /// A smoke test: fewer, shorter points (under 3 minutes).
    #[arg(long)]
    pub quick: bool,
    /// Systems to measure, comma-separated (default all but xdhcpd-xdp-nats,
    /// xdhcpd-xdp-gap, xdhcpd-xdp-nocoalesce, xdhcpd-xdp6-nocoalesce and
    /// xdhcpd-xdp6-fixedcoalesce): ceiling, xdhcpd-xdp, xdhcpd-xdp-events, xdhcpd-xdp-nats
    /// (event log + NATS sink to a nats-server the bench starts), xdhcpd-xdp-ratelimit,
    /// xdhcpd-xdp-gap (commit-min-gap-us = 1000), xdhcpd-xdp-nocoalesce (commit-coalesce-us =
    /// 0), xdhcpd-xdp-prov,
    /// xdhcpd-xdp-interval, xdhcpd-udp, kea, dhcpd; DHCPv6: ceiling6, xdhcpd-xdp6,
    /// xdhcpd-xdp6-nocoalesce (commit-coalesce-us = 0), xdhcpd-xdp6-fixedcoalesce
    /// (commit-coalesce-max-us = 200), kea-dhcp6.
    #[arg(long, value_delimiter = ',')]
    pub systems: Vec<String>,
    /// Seconds of load per point (default 5; 1.5 with --quick).
    #[arg(long)]
    pub duration: Option<f64>,
    /// Skip `cargo xtask setup` (toolchain and packages assumed present).
    #[arg(long)]
    pub no_setup: bool,
    /// Use the binaries already in target/release (for iterating on the harness).
    #[arg(long)]
    pub no_build: bool,
    /// Write the results into the End-to-end section of benches/RESULTS.md.
    #[arg(long)]
    pub record: bool,
    /// Instead of the comparison: soak xdhcpd for this many minutes at half its maximum rate
    /// (DORA + renew, short leases), sampling its memory and descriptors (`bench/soak.rs`).
    #[arg(long)]
    pub soak: Option<f64>,
    /// The soak's rate (DORA+renew units per second) instead of half the measured maximum.
    #[arg(long)]
    pub soak_rate: Option<u64>,
    /// Instead of the comparison: this many rounds of paired measurements of `--systems`
    /// (each round: every system once, rotated order; closed-loop DORA/s and server CPU per
    /// DORA at `--ab-rate`), ratios to the first system listed (`bench/ab.rs`).
    #[arg(long)]
    pub ab_rounds: Option<usize>,
    /// The open-loop rate of `--ab-rounds` (DORA/s; below every system's maximum).
    #[arg(long, default_value_t = 30_000)]
    pub ab_rate: u64,
    /// Profile both cores with `perf record -a -g` at the max sustained rate of
    /// the ceilings and of xdhcpd XDP (v4 and v6; report text in the results folder).
    #[arg(long)]
    pub profile: bool,
}

// ---------------------------------------------------------------- constants

const SERVER_IF: &str = "xb-srv0";
const CLIENT_IF: &str = "xb-cli0";
const SERVER_IP: &str = "10.78.0.1";
const SUBNET: &str = "10.78.0.0/16";
const POOL_FIRST: &str = "10.78.1.0";
const POOL_LAST: &str = "10.78.250.255";
/// Addresses from POOL_FIRST to POOL_LAST.
const POOL_SIZE: u64 = 250 * 256;
/// The pool as prefixes: the client namespace treats them as local so its
/// kernel answers the servers' ARP for leased addresses (servers that unicast
/// a renew ACK through a kernel socket need that; the loadgen never ARPs).
const POOL_PREFIXES: &[&str] = &[
    "10.78.1.0/24",
    "10.78.2.0/23",
    "10.78.4.0/22",
    "10.78.8.0/21",
    "10.78.16.0/20",
    "10.78.32.0/19",
    "10.78.64.0/18",
    "10.78.128.0/17",
];
const LOADGEN_CPU: &str = "0";
const SERVER_CPU: &str = "1";

// ---------------------------------------------------------------- the run

struct Ctx {
    ns: NetnsPair,
    work: PathBuf,
    raw: PathBuf,
    out: PathBuf,
    daemon: PathBuf,
    loadgen: PathBuf,
    echo: PathBuf,
    secs: f64,
    quick: bool,
    profile: bool,
    /// `--soak`: the lease time of the soak's server (short, so that leases expire).
    soak_lease: Option<u32>,
}

// ---------------------------------------------------------------- DHCPv6 link

/// Waits until both ends' link-local addresses are usable (DAD over), then installs a
/// permanent neighbour entry in the server namespace for each of the first `clients`
/// simulated clients' link-local addresses.
fn v6_link(ns: &NetnsPair, clients: u32) -> Result<()> {
    let t0 = Instant::now();
    for (n, dev) in [(&ns.server_ns, SERVER_IF), (&ns.client_ns, CLIENT_IF)] {
        loop {
            let out = util::output(
                Command::new("ip")
                    .args(["-n", n, "-6", "addr", "show", "dev", dev, "scope", "link"]),
            )?;
            if out.contains("fe80::") && !out.contains("tentative") {
                break;
            }
            if t0.elapsed().as_secs() > 15 {
                bail!("no usable IPv6 link-local address on {dev} after 15 s: {out}");
            }
            std::thread::sleep(std::time::Duration::from_millis(100));
        }
    }
    let mut batch = String::new();
    for g in 0..clients {
        let i = g.to_be_bytes();
        // fe80::(02:4c:i0:i1:i2:i3 as modified EUI-64) = fe80::4c:i0ff:fei1:i2i3
        batch.push_str(&format!(
            "neigh replace fe80::4c:{:02x}ff:fe{:02x}:{:02x}{:02x} lladdr 02:4c:{:02x}:{:02x}:{:02x}:{:02x} dev {SERVER_IF} nud permanent\n",
            i[0], i[1], i[2], i[3], i[0], i[1], i[2], i[3]
        ));
    }
    let path = std::env::temp_dir().join(format!("xdhcpd-bench-neigh-{}", std::process::id()));
    fs::write(&path, batch).with_context(|| format!("writing {}", path.display()))?;
    let r = util::output(
        Command::new("ip")
            .args(["-n", &ns.server_ns, "-batch"])
            .arg(&path),
    );
    let _ = fs::remove_file(&path);
    r.map(|_| ())
        .context("installing the simulated DHCPv6 clients' neighbour entries")
}

// ---------------------------------------------------------------- entry point

pub fn bench(args: &BenchArgs) -> Result<()> {
    let started = Instant::now();
    // SAFETY: the handler only stores to an atomic.
    unsafe {
        libc::signal(libc::SIGINT, on_sigint as *const () as libc::sighandler_t);
    }
    let systems: Vec<System> = if args.systems.is_empty() {
        // The NATS sink's cost and the no-gap commit rule are measured on request
        // (`--systems ...,xdhcpd-xdp-nats,xdhcpd-xdp-gap`).
        System::ALL
            .into_iter()
            .filter(|s| {
                !matches!(
                    s,
                    System::XdpNats
                        | System::XdpGap
                        | System::XdpNoCoalesce
                        | System::Xdp6NoCoalesce
                        | System::Xdp6FixedCoalesce
                )
            })
            .collect()
    } else {
        args.systems
            .iter()
            .map(|s| System::parse(s))
            .collect::<Result<_>>()?
    };
    let secs = args.duration.unwrap_or(if args.quick { 1.5 } else { 5.0 });
    if !(0.5..=600.0).contains(&secs) {
        bail!("--duration {secs} must be between 0.5 and 600 seconds");
    }
    if !util::is_root() {
        bail!("cargo xtask bench needs root (network namespaces, XDP)");
    }
    if util::which("taskset").is_none() {
        bail!("taskset (util-linux) is missing");
    }
    if args.profile && util::which("perf").is_none() {
        bail!("--profile needs perf (Debian: apt-get install linux-perf)");
    }

    if !args.no_setup {
        setup::setup(&setup::SetupArgs { no_apt: false })?;
    }
    check_interrupt()?;
    let daemon = if args.no_build {
        build::daemon_path()
    } else {
        let daemon = build::build(&build::BuildArgs { debug_ebpf: false })?;
        check_interrupt()?;
        // Same embed variable as the daemon build, so the shared library is not rebuilt.
        util::run(
            Command::new(util::cargo())
                .args(["build", "--release", "-p", "xdhcpd-tools", "--bins"])
                .env("XDHCPD_EBPF_OBJECT", ebpf::object_path(false))
                .current_dir(util::repo_root()),
        )?;
        daemon
    };
    let bin = util::target_dir().join("release");
    let (loadgen, echo) = (bin.join("xdhcp-loadgen"), bin.join("xdhcp-echo"));
    for b in [&daemon, &loadgen, &echo] {
        if !b.is_file() {
            bail!("{} is missing after the build", b.display());
        }
    }
    for (sys, prog) in [
        (System::Kea, "kea-dhcp4"),
        (System::Dhcpd, "dhcpd"),
        (System::Kea6, "kea-dhcp6"),
    ] {
        if systems.contains(&sys) && util::which(prog).is_none() {
            bail!(
                "{prog} is not installed (run without --no-setup, or leave {} out of --systems)",
                sys.key()
            );
        }
    }
    check_interrupt()?;

    let stamp = utc_stamp();
    let out = util::repo_root()
        .join("results")
        .join(format!("bench-{}", stamp.1));
    let raw = out.join("raw");
    fs::create_dir_all(&raw).with_context(|| format!("creating {}", raw.display()))?;
    let work = std::env::temp_dir().join(format!("xdhcpd-bench-{}", std::process::id()));
    fs::create_dir_all(&work).with_context(|| format!("creating {}", work.display()))?;
    let _work_guard = RemoveDir(work.clone());
    let load_before = load_average();
    let sync = sync_latency_ms(&work)?;
    let machine = format!(
        "{}; lease files in {} (fdatasync of 4 KiB: p50 {:.2} ms, p90 {:.2} ms)",
        machine(),
        std::env::temp_dir().display(),
        sync.0,
        sync.1
    );
    println!("== machine: {machine}; load average {load_before}");

    let ns = NetnsPair::create(
        "bn",
        SERVER_IF,
        &format!("{SERVER_IP}/16"),
        CLIENT_IF,
        "10.78.0.2/16",
    )?;
    for prefix in POOL_PREFIXES {
        util::output(Command::new("ip").args([
            "-n",
            &ns.client_ns,
            "route",
            "add",
            "local",
            prefix,
            "dev",
            "lo",
        ]))?;
    }
    // xdhcpd --io udp installs a neighbour entry per client it answers
    // (SIOCSARP) and the servers' unicast renew ACKs ARP for every client; the
    // neighbour table is global and holds 1024 entries by default, far fewer
    // than the clients here. Raised for the run, restored on exit.
    let mut _sysctls = Vec::new();
    for (name, value) in [
        ("gc_thresh1", 16_384),
        ("gc_thresh2", 131_072),
        ("gc_thresh3", 262_144),
    ] {
        if let Some(g) = Sysctl::raise(&format!("/proc/sys/net/ipv4/neigh/default/{name}"), value)?
        {
            _sysctls.push(g);
        }
    }
    if systems.iter().any(|s| s.is_v6()) {
        // kea-dhcp6 answers each client's link-local address through the kernel: the
        // simulated clients cannot answer neighbour solicitations, so their entries are
        // installed (EUI-64 of the loadgen's MACs 02:4c:..), and the server's link-local
        // address must have finished DAD before a v6 server starts.
        let clients = systems
            .iter()
            .filter(|s| s.is_v6())
            .map(|s| s.scale(args.quick).clients)
            .max()
            .unwrap_or(0);
        for (name, value) in [
            ("gc_thresh1", 16_384),
            ("gc_thresh2", 131_072),
            ("gc_thresh3", 262_144),
        ] {
            if let Some(g) =
                Sysctl::raise(&format!("/proc/sys/net/ipv6/neigh/default/{name}"), value)?
            {
                _sysctls.push(g);
            }
        }
        v6_link(&ns, clients)?;
    }
    // Run private copies: a rebuild of target/release during the run (other
    // work in the tree) must neither change what is measured nor leave perf
    // with a deleted binary it cannot symbolize.
    let bin_dir = work.join("bin");
    fs::create_dir_all(&bin_dir).with_context(|| format!("creating {}", bin_dir.display()))?;
    let snapshot = |b: &Path| -> Result<PathBuf> {
        let name = b.file_name().context("binary path without a file name")?;
        let to = bin_dir.join(name);
        fs::copy(b, &to).with_context(|| format!("copying {} to {}", b.display(), to.display()))?;
        Ok(to)
    };
    let ctx = Ctx {
        daemon: snapshot(&daemon)?,
        loadgen: snapshot(&loadgen)?,
        echo: snapshot(&echo)?,
        ns,
        work,
        raw,
        out: out.clone(),
        secs,
        quick: args.quick,
        profile: args.profile && !args.quick,
        soak_lease: None,
    };

    let self_test = match ctx.self_test() {
        Ok(pps) => {
            println!(
                "== loadgen self-test (DISCOVERs only, replies ignored, core {LOADGEN_CPU}): {} frames/s",
                fmt_rate(pps)
            );
            Some(pps)
        }
        Err(e) => {
            eprintln!("== loadgen self-test failed: {e:#}");
            None
        }
    };

    if let Some(rounds) = args.ab_rounds {
        if systems.len() < 2 || rounds == 0 {
            bail!("--ab-rounds needs at least two --systems (the first is the base) and one round");
        }
        let table = ctx.ab(&systems, rounds, args.ab_rate)?;
        drop(ctx);
        let command = format!(
            "cargo xtask {}",
            std::env::args().skip(1).collect::<Vec<_>>().join(" ")
        );
        let text = format!(
            "{}: `{command}`, {rounds} rounds, {} s per point; load average before {load_before}, after {}\n\n{table}",
            stamp.0,
            secs,
            load_average()
        );
        fs::write(out.join("ab.md"), &text)
            .with_context(|| format!("writing {}", out.join("ab.md").display()))?;
        println!(
            "\n================ cargo xtask bench --ab-rounds: results ================\n{text}"
        );
        println!("== results in {}", out.display());
        return Ok(());
    }
    if let Some(minutes) = args.soak {
        let mut ctx = ctx;
        let r = ctx.soak(minutes, args.soak_rate);
        drop(ctx);
        println!("== results in {}", out.display());
        return r;
    }
    let mut results = Vec::new();
    for sys in &systems {
        let mut r = SystemResult::new(*sys);
        if let Err(e) = ctx.measure(*sys, &mut r) {
            check_interrupt()?;
            eprintln!("   {} FAILED: {e:#}", sys.label());
            r.error = Some(
                format!("{e:#}")
                    .lines()
                    .next()
                    .unwrap_or_default()
                    .to_string(),
            );
            r.notes.push(format!("{e:#}"));
        }
        results.push(r);
    }
    drop(ctx);

    // ---- analysis and output
    let get = |s: System| results.iter().find(|r| r.system == s);
    let dora = |s: System| get(s).and_then(SystemResult::max_dora);
    let x = dora(System::XdpAck);
    let ratios = vec![
        (
            "xdhcpd XDP (ack) / Kea".to_string(),
            ratio(x, dora(System::Kea)),
        ),
        (
            "xdhcpd XDP (ack) / ISC dhcpd".to_string(),
            ratio(x, dora(System::Dhcpd)),
        ),
        (
            "xdhcpd XDP (ack) / raw ceiling".to_string(),
            ratio(x, dora(System::Ceiling)),
        ),
        (
            "xdhcpd XDP (interval:10) / raw ceiling".to_string(),
            ratio(dora(System::XdpInterval), dora(System::Ceiling)),
        ),
        (
            "xdhcpd XDP (interval:10) / Kea".to_string(),
            ratio(dora(System::XdpInterval), dora(System::Kea)),
        ),
        (
            "xdhcpd XDP (ack): event log + /metrics on / off".to_string(),
            ratio(dora(System::XdpEvents), x),
        ),
        (
            "xdhcpd XDP (ack): rate limits on / off".to_string(),
            ratio(dora(System::XdpRateLimit), x),
        ),
        (
            "xdhcpd XDP (ack): commit-min-gap-us 1000 / 0 (default)".to_string(),
            ratio(dora(System::XdpGap), x),
        ),
        (
            "xdhcpd XDP (ack): commit-coalesce-us 0 / 200 (default)".to_string(),
            ratio(dora(System::XdpNoCoalesce), x),
        ),
        (
            "xdhcpd XDP (ack): 20 classes + 1M registrations / plain".to_string(),
            ratio(dora(System::XdpProv), x),
        ),
        (
            "xdhcpd renew (closed loop) / DORA, commit=ack".to_string(),
            ratio(get(System::XdpAck).and_then(SystemResult::renew_rate), x),
        ),
    ];
    let any_v4 = systems.iter().any(|s| !s.is_v6());
    let any_v6 = systems.iter().any(|s| s.is_v6());
    let mut ratios = if any_v4 { ratios } else { Vec::new() };
    let mut targets = if any_v4 {
        analysis::targets(&analysis::Figures {
            xdhcpd_dora: x,
            xdhcpd_renew: get(System::XdpAck).and_then(SystemResult::renew_rate),
            kea_dora: dora(System::Kea),
            ceiling_dora: dora(System::Ceiling),
        })
    } else {
        Vec::new()
    };
    if any_v6 {
        let x6 = dora(System::Xdp6);
        ratios.push((
            "xdhcpd-xdp6 / kea-dhcp6 (SARR/s)".to_string(),
            ratio(x6, dora(System::Kea6)),
        ));
        ratios.push((
            "xdhcpd-xdp6 / ceiling6 (SARR/s)".to_string(),
            ratio(x6, dora(System::Ceiling6)),
        ));
        ratios.push((
            "xdhcpd-xdp6 renew (closed loop) / SARR".to_string(),
            ratio(get(System::Xdp6).and_then(SystemResult::renew_rate), x6),
        ));
        targets.extend(analysis::targets6(
            x6,
            dora(System::Kea6),
            dora(System::Ceiling6),
        ));
    }
    let command = format!(
        "cargo xtask {}",
        std::env::args().skip(1).collect::<Vec<_>>().join(" ")
    );
    let info = report::RunInfo {
        date: stamp.0.clone(),
        command: command.clone(),
        machine: machine.clone(),
        load_before: load_before.clone(),
        load_after: load_average(),
        point_seconds: secs,
        results_dir: out
            .strip_prefix(util::repo_root())
            .unwrap_or(&out)
            .display()
            .to_string(),
        wall_s: started.elapsed().as_secs_f64(),
        loadgen_self_test_pps: self_test,
    };

    let doc = json!({
        "date": info.date,
        "command": command,
        "machine": machine,
        "load_average_before": info.load_before,
        "load_average_after": info.load_after,
        "seconds_per_point": secs,
        "fdatasync_ms": {"p50": sync.0, "p90": sync.1},
        "loadgen_self_test_tx_pps": self_test,
        "quick": args.quick,
        "pinning": {"loadgen_cpu": LOADGEN_CPU, "server_cpu": SERVER_CPU},
        "systems": results.iter().map(SystemResult::to_json).collect::<Vec<_>>(),
        "ratios": ratios.iter().map(|(k, v)| json!({"name": k, "ratio": v})).collect::<Vec<_>>(),
        "targets": targets.iter().map(|t| json!({
            "name": t.name, "measured": t.measured, "required": t.required,
            "verdict": t.verdict(), "detail": t.detail,
        })).collect::<Vec<_>>(),
    });
    let json_path = out.join("results.json");
    fs::write(&json_path, serde_json::to_string_pretty(&doc)? + "\n")
        .with_context(|| format!("writing {}", json_path.display()))?;

    let (mut ach, mut lat) = (Vec::new(), Vec::new());
    for r in &results {
        let mk = |points: Vec<(f64, f64)>| svg::Series {
            key: r.system.key().into(),
            label: r.system.label().into(),
            color: r.system.color().into(),
            points,
        };
        // The sweep may refine out of order: draw by offered rate.
        let mut sweep: Vec<&Point> = r.sweep.iter().collect();
        sweep.sort_by(|a, b| a.offered.total_cmp(&b.offered));
        ach.push(mk(sweep.iter().map(|p| (p.offered, p.achieved)).collect()));
        lat.push(mk(sweep.iter().map(|p| (p.offered, p.p99_us)).collect()));
    }
    let svg_path = out.join("bench.svg");
    let title = format!("xdhcpd end-to-end benchmark, {}", info.date);
    let subtitle = format!(
        "{machine}; loadgen core {LOADGEN_CPU}, server core {SERVER_CPU}; {secs} s per point"
    );
    fs::write(&svg_path, svg::plot(&title, &subtitle, &ach, &lat))
        .with_context(|| format!("writing {}", svg_path.display()))?;

    println!("\n================ cargo xtask bench: results ================");
    println!("{}", report::summary_table(&results));
    println!("Ratios (max sustained DORA/s):");
    print!("{}", report::ratios_text(&ratios));
    println!("Targets:");
    print!("{}", report::targets_text(&targets));
    println!(
        "Note: veth runs the receiver's XDP / receive path on the sender's CPU: core 0 (loadgen) also pays for the server's receive, core 1 for the loadgen's."
    );
    println!(
        "JSON: {}\nSVG:  {}",
        json_path.display(),
        svg_path.display()
    );
    if args.record {
        let md = util::repo_root().join("benches").join("RESULTS.md");
        let section = report::markdown_section(&info, &results, &ratios, &targets);
        report::update_results_md(&md, &section)?;
        println!("recorded in {}", md.display());
    }
    let failed: Vec<&str> = results
        .iter()
        .filter(|r| r.error.is_some())
        .map(|r| r.system.key())
        .collect();
    if !failed.is_empty() {
        bail!("these systems failed: {} (see above)", failed.join(", "));
    }
    Ok(())
}
