//! `cargo xtask demo`: the main job on the embedded default configuration.
//!
//! Two namespaces joined by a veth pair; xdhcpd on the server side in XDP
//! mode with `userspace/examples/dual-stack.toml` (the demo's link plus
//! DHCPv6: fd77::/64, server fd77::1, prefixes from fd77:100::/40 as /56);
//! one real DHCPv4 client (busybox udhcpc), one real DHCPv6 client (ISC
//! dhclient -6 asking for an address and a prefix) and perfdhcp load from the
//! client side. Prints the clients' leases, leases/s and the XDP counters, and
//! removes everything it created, also on failure or Ctrl-C.

use std::io::{BufRead, BufReader};
use std::path::{Path, PathBuf};
use std::process::{Child, Stdio};
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::{Duration, Instant};

use anyhow::{bail, Context, Result};

use crate::netns::NetnsPair;
use crate::{build, setup, util};

#[derive(Debug, clap::Args)]
pub struct DemoArgs {
    /// perfdhcp's offered rate (DORA exchanges per second).
    #[arg(long, default_value_t = 4000)]
    pub rate: u32,
    /// Seconds of perfdhcp load.
    #[arg(long, default_value_t = 10)]
    pub seconds: u32,
    /// Data path of the daemon (xdp or udp).
    #[arg(long, default_value = "xdp")]
    pub io: String,
    /// Skip `cargo xtask setup` (packages and toolchain assumed present).
    #[arg(long)]
    pub no_setup: bool,
    /// The cluster demo instead: two failover pairs, one PostgreSQL, one NATS JetStream
    /// (registration propagation, NATS outage under load, archive, `ctl servers`); uses
    /// `--seconds` (at least 12) for its load and `--no-setup`.
    #[arg(long)]
    pub cluster: bool,
}

static INTERRUPTED: AtomicBool = AtomicBool::new(false);

extern "C" fn on_sigint(_: libc::c_int) {
    INTERRUPTED.store(true, Ordering::SeqCst);
}

fn check_interrupt() -> Result<()> {
    if INTERRUPTED.load(Ordering::SeqCst) {
        bail!("interrupted; cleaning up");
    }
    Ok(())
}

/// Kills the daemon (SIGINT first, so it detaches XDP and writes its stats).
struct Daemon(Child);

impl Daemon {
    fn stop(&mut self) -> Result<()> {
        // SAFETY: plain kill(2) on our own child's pid.
        unsafe {
            libc::kill(self.0.id() as i32, libc::SIGINT);
        }
        let t0 = Instant::now();
        while t0.elapsed() < Duration::from_secs(10) {
            if self.0.try_wait()?.is_some() {
                return Ok(());
            }
            std::thread::sleep(Duration::from_millis(50));
        }
        let _ = self.0.kill();
        bail!("xdhcpd did not stop within 10 s after SIGINT")
    }
}

impl Drop for Daemon {
    fn drop(&mut self) {
        if let Ok(None) = self.0.try_wait() {
            let _ = self.stop();
        }
    }
}

fn wait_for_line(log: &Path, needle: &str, timeout: Duration) -> Result<()> {
    let t0 = Instant::now();
    while t0.elapsed() < timeout {
        check_interrupt()?;
        if std::fs::read_to_string(log).is_ok_and(|s| s.contains(needle)) {
            return Ok(());
        }
        std::thread::sleep(Duration::from_millis(100));
    }
    bail!(
        "xdhcpd did not log {needle:?} within {timeout:?}; its log:\n{}",
        std::fs::read_to_string(log).unwrap_or_default()
    )
}

pub fn demo(args: &DemoArgs) -> Result<()> {
    if args.cluster {
        return crate::demo_cluster::demo_cluster(args.no_setup, args.seconds);
    }
    // SAFETY: the handler only stores to an atomic.
    unsafe {
        libc::signal(libc::SIGINT, on_sigint as *const () as libc::sighandler_t);
    }
    if !args.no_setup {
        setup::setup(&setup::SetupArgs { no_apt: false })?;
    }
    let daemon_bin = build::build(&build::BuildArgs { debug_ebpf: false })?;
    let loadgen_bin = build::build_tools()?;
    check_interrupt()?;

    let work = std::env::temp_dir().join(format!("xdhcpd-demo-{}", std::process::id()));
    std::fs::create_dir_all(&work).with_context(|| format!("creating {}", work.display()))?;
    let _work_guard = RemoveDir(work.clone());
    // The dual-stack example with its v6 binding file in the scratch directory.
    let example = util::repo_root().join("userspace/examples/dual-stack.toml");
    let text = std::fs::read_to_string(&example)
        .with_context(|| format!("reading {}", example.display()))?;
    let config = work.join("dual-stack.toml");
    std::fs::write(
        &config,
        text.replace(
            "/tmp/xdhcpd-demo/bindings6.db",
            &work.join("bindings6.db").to_string_lossy(),
        ),
    )?;
    let log = work.join("xdhcpd.log");
    let stats = work.join("stats.json");

    println!("== creating namespaces (server 10.77.0.1/16 on xd-srv0, client side xd-cli0)");
    let ns = NetnsPair::create("demo", "xd-srv0", "10.77.0.1/16", "xd-cli0", "10.77.0.2/16")?;
    util::run(NetnsPair::exec(&ns.server_ns, "ip").args([
        "addr",
        "add",
        "fd77::1/64",
        "dev",
        &ns.server_if,
        "nodad",
    ]))?;
    wait_link_local(&ns.client_ns, &ns.client_if)?;

    println!(
        "== starting xdhcpd ({} mode) on {} in {}",
        args.io, ns.server_if, ns.server_ns
    );
    let logf = std::fs::File::create(&log)?;
    let mut daemon = Daemon(
        NetnsPair::exec(&ns.server_ns, &daemon_bin.to_string_lossy())
            .args(["run", "--config"])
            .arg(&config)
            .args(["--io", &args.io, "--stats-interval", "1", "--lease-file"])
            .arg(work.join("leases.db"))
            .arg("--stats-json")
            .arg(&stats)
            .env("NO_COLOR", "1")
            .stdout(logf.try_clone()?)
            .stderr(logf)
            .spawn()
            .context("starting xdhcpd")?,
    );
    wait_for_line(&log, "serving", Duration::from_secs(15))?;

    println!("== a real client: busybox udhcpc on {}", ns.client_if);
    let out = NetnsPair::exec(&ns.client_ns, "timeout")
        .args([
            "15",
            "busybox",
            "udhcpc",
            "-i",
            &ns.client_if,
            "-f",
            "-q",
            "-n",
            "-t",
            "5",
            "-s",
            "/bin/true",
        ])
        .output()
        .context("running udhcpc")?;
    let text = format!(
        "{}{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
    let lease_line = text
        .lines()
        .find(|l| l.contains("obtained"))
        .map(str::to_string);
    for l in text.lines() {
        println!("   {l}");
    }
    check_interrupt()?;

    println!(
        "== a real DHCPv6 client: ISC dhclient -6 (address and prefix) on {}",
        ns.client_if
    );
    let v6_lines = dhclient6(&ns.client_ns, &ns.client_if, &work)?;
    for l in &v6_lines {
        println!("   {l}");
    }
    check_interrupt()?;

    println!(
        "== load: perfdhcp, {} DORA/s offered for {} s, fresh MAC per exchange",
        args.rate, args.seconds
    );
    let t0 = Instant::now();
    let mut perf = NetnsPair::exec(&ns.client_ns, "timeout")
        .arg((args.seconds + 20).to_string())
        .args(["perfdhcp", "-4", "-l", &ns.client_if, "-B", "-R", "1000000"])
        .args([
            "-r",
            &args.rate.to_string(),
            "-p",
            &args.seconds.to_string(),
        ])
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .context("starting perfdhcp")?;
    let mut perf_text = String::new();
    if let Some(o) = perf.stdout.take() {
        for l in BufReader::new(o).lines().map_while(|l| l.ok()) {
            perf_text.push_str(&l);
            perf_text.push('\n');
        }
    }
    let status = perf.wait()?;
    let elapsed = t0.elapsed();
    check_interrupt()?;
    if !status.success() && !perf_text.contains("REQUEST-ACK") {
        bail!("perfdhcp failed ({status}):\n{perf_text}");
    }
    let acked = section_value(&perf_text, "REQUEST-ACK", "received packets").unwrap_or(0);
    let offered = section_value(&perf_text, "DISCOVER-OFFER", "sent packets").unwrap_or(0);

    println!("== load: xdhcp-loadgen (AF_XDP client simulator), closed loop, 5 s, 20,000 clients");
    let lg_json = work.join("loadgen.json");
    let lg = NetnsPair::exec(&ns.client_ns, &loadgen_bin.to_string_lossy())
        .args([
            "-i",
            &ns.client_if,
            "--scenario",
            "dora",
            "--clients",
            "20000",
        ])
        .args([
            "--duration",
            "5s",
            "--concurrency",
            "256",
            "--quiet",
            "--json",
        ])
        .arg(&lg_json)
        .output()
        .context("running xdhcp-loadgen")?;
    check_interrupt()?;
    let loadgen_line = match std::fs::read_to_string(&lg_json)
        .ok()
        .and_then(|t| serde_json::from_str::<serde_json::Value>(&t).ok())
    {
        Some(v) => {
            let p = &v["phases"][0];
            format!(
                "{:.0} DORA/s (ACKs), loss {:.2}%, p99 latency {:.1} ms, duplicate addresses {}",
                p["acked_per_s"].as_f64().unwrap_or(0.0),
                p["loss_pct"].as_f64().unwrap_or(0.0),
                p["latency"]["p99_us"].as_f64().unwrap_or(0.0) / 1000.0,
                p["duplicates"]
            )
        }
        None => format!(
            "no result ({}): {}",
            lg.status,
            String::from_utf8_lossy(&lg.stderr).trim()
        ),
    };
    let naks = daemon_stop_and_read(&mut daemon, &stats)?;

    println!();
    println!("================ xdhcpd demo result ================");
    match &lease_line {
        Some(l) => println!("real client (udhcpc): {}", l.trim()),
        None => println!("real client (udhcpc): NO LEASE OBTAINED"),
    }
    match v6_lines.is_empty() {
        false => println!("real DHCPv6 client (dhclient -6): {}", v6_lines.join(", ")),
        true => println!("real DHCPv6 client (dhclient -6): NO ADDRESS OR PREFIX OBTAINED"),
    }
    println!(
        "perfdhcp: {offered} DISCOVERs sent, {acked} leases ACKed in {:.1} s = {:.0} leases/s (offered {}/s: perfdhcp's own limit)",
        elapsed.as_secs_f64(),
        acked as f64 / args.seconds.max(1) as f64,
        args.rate
    );
    println!("xdhcp-loadgen: {loadgen_line}");
    println!("server: {}", naks.0);
    println!("XDP counters: {}", naks.1);
    println!("=====================================================");
    if lease_line.is_none() {
        bail!("the real client got no lease");
    }
    if v6_lines.len() < 2 {
        bail!("the DHCPv6 client did not get both an address and a prefix");
    }
    if args.io == "xdp" && !naks.1.contains("redirected") {
        bail!("no XDP counters in the daemon's stats");
    }
    Ok(())
}

/// Stops the daemon and summarises its final stats JSON.
fn daemon_stop_and_read(d: &mut Daemon, stats: &Path) -> Result<(String, String)> {
    d.stop()?;
    let text = std::fs::read_to_string(stats)
        .with_context(|| format!("reading the daemon's stats {}", stats.display()))?;
    let v: serde_json::Value = serde_json::from_str(&text)?;
    let e = &v["engine"];
    let server = format!(
        "io={} offers={} acks={} naks={} pool_exhausted={} malformed={}",
        v["io"], e["offers"], e["acks"], e["naks"], e["pool_exhausted"], e["malformed"]
    );
    let xdp = match v.get("xdp").and_then(|x| x.as_object()) {
        Some(m) => m
            .iter()
            .map(|(k, v)| format!("{k}={v}"))
            .collect::<Vec<_>>()
            .join(" "),
        None => "(none: UDP mode)".to_string(),
    };
    Ok((server, xdp))
}

/// Value of `key: N` inside perfdhcp's `***Statistics for: SECTION***` block.
fn section_value(text: &str, section: &str, key: &str) -> Option<u64> {
    let start = text.find(&format!("Statistics for: {section}"))?;
    text[start..]
        .lines()
        .find_map(|l| l.trim().strip_prefix(&format!("{key}:")))
        .and_then(|v| v.trim().parse().ok())
}

struct RemoveDir(PathBuf);
impl Drop for RemoveDir {
    fn drop(&mut self) {
        let _ = std::fs::remove_dir_all(&self.0);
    }
}

/// Waits until `dev` in `ns` has a usable (not tentative) link-local address (DHCPv6 clients
/// send from it).
fn wait_link_local(ns: &str, dev: &str) -> Result<()> {
    let end = Instant::now() + Duration::from_secs(10);
    loop {
        let out = NetnsPair::exec(ns, "ip")
            .args(["-6", "addr", "show", "dev", dev, "scope", "link"])
            .output()
            .context("ip -6 addr")?;
        let t = String::from_utf8_lossy(&out.stdout);
        if t.contains("fe80::") && !t.contains("tentative") {
            return Ok(());
        }
        if Instant::now() >= end {
            bail!("{dev} has no usable link-local address after 10 s");
        }
        std::thread::sleep(Duration::from_millis(100));
    }
}

/// Runs `dhclient -6 -N -P -1` once; returns "address A" / "prefix P" lines it was bound to.
fn dhclient6(ns: &str, dev: &str, work: &Path) -> Result<Vec<String>> {
    let events = work.join("dhclient6.events");
    let script = work.join("dhclient6.sh");
    std::fs::write(
        &script,
        format!(
            "#!/bin/sh\n[ \"$reason\" = BOUND6 ] && echo \"$new_ip6_address $new_ip6_prefix\" >> '{}'\nexit 0\n",
            events.display()
        ),
    )?;
    use std::os::unix::fs::PermissionsExt;
    std::fs::set_permissions(&script, std::fs::Permissions::from_mode(0o755))?;
    let conf = work.join("dhclient6.conf");
    std::fs::write(&conf, "")?;
    let pid = work.join("dhclient6.pid");
    let out = NetnsPair::exec(ns, "timeout")
        .args(["20", "dhclient", "-6", "-N", "-P", "-1", "-d", "-v", "-sf"])
        .arg(&script)
        .arg("-lf")
        .arg(work.join("dhclient6.leases"))
        .arg("-pf")
        .arg(&pid)
        .arg("-cf")
        .arg(&conf)
        .arg(dev)
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .spawn()
        .context("starting dhclient -6")?;
    let mut child = out;
    let end = Instant::now() + Duration::from_secs(20);
    let mut lines = Vec::new();
    while Instant::now() < end {
        let text = std::fs::read_to_string(&events).unwrap_or_default();
        lines = text
            .split_whitespace()
            .map(|w| match w.contains('/') {
                true => format!("prefix {w}"),
                false => format!("address {w}"),
            })
            .collect();
        if lines.len() >= 2 {
            break;
        }
        std::thread::sleep(Duration::from_millis(100));
    }
    // dhclient -d stays to renew: stop it. SIGTERM to `timeout` (our child, by pid), which
    // passes it on to dhclient and exits with it.
    // SAFETY: plain syscall on the pid of a child we have not reaped yet.
    unsafe {
        libc::kill(child.id() as libc::pid_t, libc::SIGTERM);
    }
    let _ = child.wait();
    Ok(lines)
}

#[cfg(test)]
mod tests {
    use super::section_value;
    #[test]
    fn parses_perfdhcp_sections() {
        let t = "***Statistics for: DISCOVER-OFFER***\nsent packets: 10\nreceived packets: 9\n\n***Statistics for: REQUEST-ACK***\nsent packets: 9\nreceived packets: 8\n";
        assert_eq!(section_value(t, "REQUEST-ACK", "received packets"), Some(8));
        assert_eq!(section_value(t, "DISCOVER-OFFER", "sent packets"), Some(10));
        assert_eq!(section_value(t, "NOPE", "sent packets"), None);
    }
}
