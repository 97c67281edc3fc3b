//! The control API and `/metrics` over a running daemon (XDP data path, namespaces):
//!
//! - `api_ns_endpoints_errors_token_and_live_lookup_under_load`: every endpoint over the
//!   control socket (mode 0600), the error answers, `xdhcpd ctl` over HTTP, the token rule on
//!   the TCP listener, and lease lookups (by address, client id, pool page) answered from the
//!   live table while `xdhcp-loadgen` runs DORAs against the daemon;
//! - `api_ns_metrics_scraped_by_prometheus_under_load`: a real Prometheus (Debian package)
//!   started on the server namespace's loopback with a generated configuration (bearer token
//!   from a file) scrapes `/metrics` while the loadgen runs; the test reads the ACK counter
//!   and the pool's active-lease gauge back through Prometheus's HTTP query API and checks
//!   they moved as the traffic did;
//! - `api_ns_metrics_cost_dora_rate` (ignored; run by hand for benches/RESULTS.md): DORA/s
//!   with `/metrics` scraped every second against `[api] metrics = false`, alternating.
//!
//! Needs root, the eBPF object, `prometheus` (see `common/require.rs`).

#[path = "common/netns.rs"]
mod netns;

#[path = "common/require.rs"]
mod require;

mod daemon_common;
mod lease_common;

use std::net::{Ipv4Addr, SocketAddr};
use std::os::unix::fs::PermissionsExt;
use std::path::{Path, PathBuf};
use std::sync::Mutex;
use std::time::{Duration, Instant};

use daemon_common::{output, read_text, wait_for, write_file, Bed, Proc, Res, SRV_ADDR};
use lease_common::{loadgen_bin, start_daemon, stop_daemon, AckReader};
use require::{require, Capability};
use xdhcpd::api::client::{call, Answer, Endpoint};

const NEEDS: &[Capability] = &[
    Capability::Root,
    Capability::Program("ip"),
    Capability::Program("timeout"),
];

/// One daemon + loadgen at a time (2 cores).
static SERIAL: Mutex<()> = Mutex::new(());

fn lock() -> std::sync::MutexGuard<'static, ()> {
    SERIAL.lock().unwrap_or_else(|e| e.into_inner())
}

/// The API's TCP port on the server namespace's loopback (a namespace of its own: no clash).
const API_PORT: u16 = 8067;
const PROM_PORT: u16 = 9090;
const TOKEN: &str = "api-test-token-0123456789abcdef";

/// A configuration with one 4096-address pool, the API on the control socket in the bed and
/// on loopback TCP with a token.
fn config(bed: &Bed, metrics: bool) -> Res<PathBuf> {
    let token = bed.path("api.token");
    write_file(&token, &format!("{TOKEN}\n"))?;
    std::fs::set_permissions(&token, std::fs::Permissions::from_mode(0o600))
        .map_err(|e| e.to_string())?;
    let path = bed.path("xdhcpd.toml");
    write_file(
        &path,
        &format!(
            r#"[server]
interface = "{iface}"
server-id = "{SRV_ADDR}"
lease-file = "{leases}"
control-socket = "{sock}"
commit = "ack"

[lease]
default-time = 3600

[api]
listen = "127.0.0.1:{API_PORT}"
token-file = "{token}"
metrics = {metrics}

[[subnet]]
cidr = "10.77.0.0/16"
router = ["{SRV_ADDR}"]
pool = [{{ range = "10.77.16.0-10.77.31.255" }}]
"#,
            iface = bed.srv_if(),
            leases = bed.path("leases.db").display(),
            sock = bed.path("api.sock").display(),
            token = token.display(),
        ),
    )?;
    Ok(path)
}

fn sock(bed: &Bed) -> Endpoint {
    Endpoint::Unix(bed.path("api.sock"))
}

fn get(ep: &Endpoint, path: &str) -> Res<Answer> {
    call(ep, "GET", path, None).map_err(|e| format!("GET {path}: {e:#}"))
}

fn json_ok(ep: &Endpoint, path: &str) -> Res<serde_json::Value> {
    let a = get(ep, path)?;
    if a.status != 200 {
        return Err(format!("GET {path}: {} {}", a.status, a.reason()));
    }
    a.json().map_err(|e| format!("GET {path}: {e:#}"))
}

/// Calls the TCP listener from a thread inside the server namespace.
fn tcp_call(bed: &Bed, token: Option<&str>, method: &str, path: &str) -> Res<Answer> {
    let ep = Endpoint::Tcp(
        SocketAddr::from(([127, 0, 0, 1], API_PORT)),
        token.map(str::to_string),
    );
    let (m, p) = (method.to_string(), path.to_string());
    bed.srv
        .run(move || call(&ep, &m, &p, None).map_err(|e| format!("{e:#}")))
        .map_err(|e| e.to_string())?
}

/// Starts the loadgen in the client namespace: `count` DORAs of distinct clients at `rate`/s.
fn loadgen(bed: &Bed, tag: &str, count: u64, rate: u64, json: &Path) -> Res<(Proc, PathBuf)> {
    let lg = loadgen_bin()?;
    let acked = bed.path(&format!("acked-{tag}.log"));
    let n = count.to_string();
    let r = rate.to_string();
    let p = bed.spawn_client(
        "xdhcp-loadgen",
        "timeout",
        &[
            "120",
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
            "--rate",
            &r,
            "--timeout-ms",
            "1000",
            "--retries",
            "3",
            "--quiet",
            "--acked-log",
            &acked.to_string_lossy(),
            "--json",
            &json.to_string_lossy(),
        ],
        &bed.path(&format!("loadgen-{tag}.log")),
    )?;
    Ok((p, acked))
}

fn hex_plain(s: &str) -> String {
    s.chars()
        .filter(|c| c.is_ascii_hexdigit())
        .collect::<String>()
        .to_lowercase()
}

#[test]
fn api_ns_endpoints_errors_token_and_live_lookup_under_load() -> Res<()> {
    if !require(NEEDS) {
        return Ok(());
    }
    let _g = lock();
    let bed = Bed::new(None)?;
    let cfg = config(&bed, true)?;
    let log = bed.path("xdhcpd.log");
    let daemon = start_daemon(&bed, &cfg, "xdp", &bed.path("leases.db"), &log, &[])?;
    let ep = sock(&bed);

    // The socket: owner only.
    let mode = std::fs::metadata(bed.path("api.sock"))
        .map_err(|e| e.to_string())?
        .permissions()
        .mode();
    if mode & 0o777 != 0o600 {
        return Err(format!(
            "control socket mode {:o}, expected 600",
            mode & 0o777
        ));
    }

    // Every endpoint answers.
    let st = json_ok(&ep, "/v1/status")?;
    if st["io"] != "xdp" || st["interface"] != bed.srv_if() || st["version"].as_str().is_none() {
        return Err(format!("status: {st}"));
    }
    json_ok(&ep, "/v1/statistics")?;
    let pools = json_ok(&ep, "/v1/pools")?;
    if pools["pools"][0]["total"] != 4096 || pools["pools"][0]["subnet"] != "10.77.0.0/16" {
        return Err(format!("pools: {pools}"));
    }
    json_ok(&ep, "/v1/pools/0")?;
    json_ok(&ep, "/v1/subnets")?;
    let rec = json_ok(&ep, "/v1/leases/ip/10.77.16.5")?;
    if rec["leases"][0]["state"] != "free" {
        return Err(format!("fresh record: {rec}"));
    }
    let metrics = String::from_utf8_lossy(&get(&ep, "/metrics")?.body).into_owned();
    for m in [
        "xdhcpd_xdp_packets_total{queue=\"0\",counter=\"seen\"}",
        "xdhcpd_xdp_packets_total{queue=\"1\",counter=\"redirected\"}",
        "xdhcpd_reloads_total{outcome=\"accepted\"}",
        "xdhcpd_config_generation",
        "xdhcpd_alarms_raised_total{alarm=\"pool-exhausted\"}",
        "xdhcpd_lease_spare_addresses",
        "xdhcpd_queue_received_total{queue=\"0\"}",
        "xdhcpd_dhcp_messages_in_total{type=\"discover\"}",
        "xdhcpd_dhcp_drops_total{reason=\"malformed\"}",
        "xdhcpd_leases{pool=\"0\",state=\"active\"}",
        "xdhcpd_pool_exhausted{pool=\"0\"} 0.0",
        "xdhcpd_allocation_failures_total",
        "xdhcpd_server_latency_seconds_bucket",
        "xdhcpd_commit_flush_seconds_bucket",
    ] {
        if !metrics.contains(m) {
            return Err(format!("/metrics lacks {m}:\n{metrics}"));
        }
    }

    // Errors: status code and a JSON reason.
    let expect = |a: Answer, code: u16, part: &str| -> Res<()> {
        if a.status != code || !a.reason().contains(part) {
            return Err(format!(
                "expected {code} with {part:?}, got {} {}",
                a.status,
                a.reason()
            ));
        }
        Ok(())
    };
    expect(
        get(&ep, "/v1/leases/ip/10.99.0.1")?,
        404,
        "in no configured pool",
    )?;
    expect(
        get(&ep, "/v1/leases/ip/banana")?,
        400,
        "not an IPv4 address",
    )?;
    expect(
        get(&ep, "/v1/leases/mac/02-00-00-00-00-99")?,
        404,
        "no lease record",
    )?;
    expect(get(&ep, "/v1/pools/9")?, 404, "no pool 9")?;
    expect(get(&ep, "/v1/pools/0/leases?limit=99999")?, 400, "limit")?;
    expect(get(&ep, "/v1/failover")?, 404, "failover is not configured")?;
    expect(
        call(&ep, "POST", "/v1/failover/partner-down", Some(b"{}")).map_err(|e| e.to_string())?,
        404,
        "failover is not configured",
    )?;
    // Reload is wired into the API: the unchanged file is accepted as generation 1.
    expect(
        call(&ep, "POST", "/v1/reload", None).map_err(|e| e.to_string())?,
        200,
        "\"generation\":1",
    )?;
    expect(
        call(&ep, "DELETE", "/v1/status", None).map_err(|e| e.to_string())?,
        405,
        "not allowed",
    )?;
    expect(get(&ep, "/v2/status")?, 404, "no such endpoint")?;

    // The token rule on TCP.
    expect(tcp_call(&bed, None, "GET", "/v1/status")?, 401, "Bearer")?;
    expect(
        tcp_call(&bed, Some("not-the-token-0123456789"), "GET", "/metrics")?,
        401,
        "wrong bearer token",
    )?;
    let ok = tcp_call(&bed, Some(TOKEN), "GET", "/v1/status")?;
    if ok.status != 200 {
        return Err(format!("TCP with the token: {} {}", ok.status, ok.reason()));
    }

    // `xdhcpd ctl` over HTTP.
    let bin = daemon_common::xdhcpd_bin()?;
    let sockp = bed.path("api.sock");
    let ctl = |args: &[&str]| {
        output(
            std::process::Command::new(&bin)
                .arg("ctl")
                .arg("--socket")
                .arg(&sockp)
                .args(args),
        )
    };
    let out = ctl(&["status"])?;
    if !out.status.success() || !out.stdout.contains("\"io\": \"xdp\"") {
        return Err(format!("ctl status: {}{}", out.stdout, out.stderr));
    }
    let out = ctl(&["failover", "status"])?;
    if out.status.success() || !out.stderr.contains("failover is not configured") {
        return Err(format!("ctl failover status: {}{}", out.stdout, out.stderr));
    }

    // Live lookups while the loadgen runs.
    let report = bed.path("loadgen-live.json");
    let (mut lg, acked) = loadgen(&bed, "live", 6000, 1000, &report)?;
    let mut reader = AckReader::new(&acked);
    let t0 = Instant::now();
    let mut checked = 0u32;
    let mut acks_seen = Vec::new();
    let mut page = serde_json::Value::Null;
    while t0.elapsed() < Duration::from_secs(30) && lg.try_wait()?.is_none() {
        std::thread::sleep(Duration::from_millis(150));
        let new = reader.read_new()?;
        let Some(a) = new.last() else { continue };
        acks_seen.extend(new.iter().cloned());
        let by_ip = json_ok(&ep, &format!("/v1/leases/ip/{}", a.addr))?;
        let l = &by_ip["leases"][0];
        if l["state"] != "active" || hex_plain(l["client_id"].as_str().unwrap_or("")) != a.client {
            return Err(format!(
                "live lookup of {} (ACKed to {}): {by_ip}",
                a.addr, a.client
            ));
        }
        let by_id = json_ok(&ep, &format!("/v1/leases/client-id/{}", a.client))?;
        if by_id["leases"][0]["address"] != a.addr.to_string() {
            return Err(format!("live lookup of client {}: {by_id}", a.client));
        }
        if checked == 0 {
            page = json_ok(&ep, "/v1/pools/0/leases?state=active&limit=50")?;
        }
        checked += 1;
    }
    let st = lg.wait_exit(Duration::from_secs(90))?;
    if !st.success() {
        return Err(format!("loadgen: {st}\n{}", lg.log_text()));
    }
    // Each lookup was made after checking the loadgen was still running.
    if checked < 5 {
        return Err(format!("only {checked} live lookups while the loadgen ran"));
    }
    if page["leases"].as_array().map_or(0, Vec::len) == 0 {
        return Err(format!("active page during load: {page}"));
    }
    // After the run: the pool counters and a full paged walk agree with the ACKs.
    acks_seen.extend(reader.read_new()?);
    let distinct: std::collections::HashSet<Ipv4Addr> = acks_seen.iter().map(|a| a.addr).collect();
    let pool = json_ok(&ep, "/v1/pools/0")?;
    let active = pool["active"].as_u64().unwrap_or(0);
    let mut walked = 0u64;
    let mut after = String::new();
    loop {
        let p = json_ok(
            &ep,
            &format!("/v1/pools/0/leases?state=active&limit=1000{after}"),
        )?;
        walked += p["leases"].as_array().map_or(0, |v| v.len() as u64);
        match p["next"].as_str() {
            Some(n) => after = format!("&after={n}"),
            None => break,
        }
    }
    if walked != active || (active as usize) < distinct.len() {
        return Err(format!(
            "pool says {active} active, paged walk found {walked}, loadgen saw {} ACKed addresses",
            distinct.len()
        ));
    }
    let stats = json_ok(&ep, "/v1/statistics")?;
    if stats["engine"]["acks"].as_u64().unwrap_or(0) < distinct.len() as u64 {
        return Err(format!("statistics: {stats}"));
    }
    eprintln!(
        "live lookups during load: {checked}; {} ACKed addresses, {active} active records",
        distinct.len()
    );
    stop_daemon(daemon)?;
    if bed.path("api.sock").exists() {
        return Err("control socket left behind after a clean stop".into());
    }
    let _ = read_text(&log);
    Ok(())
}

/// A running Prometheus in the server namespace, scraping the API with the bearer token.
struct Prometheus {
    proc: Proc,
}

impl Prometheus {
    fn start(bed: &Bed) -> Res<Prometheus> {
        let cfg = bed.path("prometheus.yml");
        write_file(
            &cfg,
            &format!(
                r#"global:
  scrape_interval: 1s
  scrape_timeout: 900ms
scrape_configs:
  - job_name: xdhcpd
    metrics_path: /metrics
    authorization:
      type: Bearer
      credentials_file: {token}
    static_configs:
      - targets: ["127.0.0.1:{API_PORT}"]
"#,
                token = bed.path("api.token").display()
            ),
        )?;
        let data = bed.path("prometheus-data");
        let proc = Proc::spawn(
            "prometheus",
            bed.srv
                .command("prometheus")
                .arg(format!("--config.file={}", cfg.display()))
                .arg(format!("--storage.tsdb.path={}", data.display()))
                .arg(format!("--web.listen-address=127.0.0.1:{PROM_PORT}")),
            &bed.path("prometheus.log"),
        )?;
        let mut p = Prometheus { proc };
        wait_for("prometheus to be ready", Duration::from_secs(60), || {
            p.proc.check_alive()?;
            let a = prom_get(bed, "/-/ready");
            Ok(a.ok().filter(|a| a.status == 200).map(|_| ()))
        })?;
        Ok(p)
    }
}

fn prom_get(bed: &Bed, path: &str) -> Res<Answer> {
    let ep = Endpoint::Tcp(SocketAddr::from(([127, 0, 0, 1], PROM_PORT)), None);
    let p = path.to_string();
    bed.srv
        .run(move || call(&ep, "GET", &p, None).map_err(|e| format!("{e:#}")))
        .map_err(|e| e.to_string())?
}

fn urlencode(s: &str) -> String {
    s.bytes()
        .map(|b| match b {
            b'A'..=b'Z' | b'a'..=b'z' | b'0'..=b'9' | b'_' | b'-' | b'.' => (b as char).to_string(),
            _ => format!("%{b:02X}"),
        })
        .collect()
}

/// The value of an instant PromQL query that yields one sample (None: no sample yet).
fn prom_query(bed: &Bed, q: &str) -> Res<Option<f64>> {
    let a = prom_get(bed, &format!("/api/v1/query?query={}", urlencode(q)))?;
    let v = a.json().map_err(|e| format!("query {q}: {e:#}"))?;
    if v["status"] != "success" {
        return Err(format!("query {q}: {v}"));
    }
    let r = &v["data"]["result"];
    match r.as_array().map(Vec::len) {
        Some(0) => Ok(None),
        Some(1) => r[0]["value"][1]
            .as_str()
            .and_then(|s| s.parse().ok())
            .map(Some)
            .ok_or_else(|| format!("query {q}: {v}")),
        _ => Err(format!("query {q}: several series: {v}")),
    }
}

#[test]
fn api_ns_metrics_scraped_by_prometheus_under_load() -> Res<()> {
    let mut needs = NEEDS.to_vec();
    needs.push(Capability::Program("prometheus"));
    if !require(&needs) {
        return Ok(());
    }
    let _g = lock();
    let bed = Bed::new(None)?;
    let cfg = config(&bed, true)?;
    let daemon = start_daemon(
        &bed,
        &cfg,
        "xdp",
        &bed.path("leases.db"),
        &bed.path("xdhcpd.log"),
        &[],
    )?;
    let prom = Prometheus::start(&bed)?;
    const ACKS: &str = "xdhcpd_dhcp_messages_out_total{type=\"ack\"}";
    const ACTIVE: &str = "xdhcpd_leases{pool=\"0\",state=\"active\"}";
    wait_for(
        "Prometheus to scrape the daemon",
        Duration::from_secs(30),
        || Ok(prom_query(&bed, "up{job=\"xdhcpd\"}")?.filter(|v| *v == 1.0)),
    )
    .map_err(|e| format!("{e}\nprometheus log:\n{}", prom.proc.log_text()))?;
    let acks0 = wait_for(
        "the ACK counter in Prometheus",
        Duration::from_secs(20),
        || prom_query(&bed, ACKS),
    )?;
    let active0 = wait_for(
        "the active gauge in Prometheus",
        Duration::from_secs(20),
        || prom_query(&bed, ACTIVE),
    )?;
    if acks0 != 0.0 || active0 != 0.0 {
        return Err(format!("before traffic: acks {acks0}, active {active0}"));
    }

    // Load, scraped every second meanwhile.
    let report = bed.path("loadgen-prom.json");
    let (mut lg, acked) = loadgen(&bed, "prom", 3000, 1000, &report)?;
    // Mid-run, Prometheus has already seen the counter move.
    let mid = wait_for(
        "the ACK counter to move during the run",
        Duration::from_secs(20),
        || Ok(prom_query(&bed, ACKS)?.filter(|v| *v > 0.0)),
    )?;
    let st = lg.wait_exit(Duration::from_secs(90))?;
    if !st.success() {
        return Err(format!("loadgen: {st}\n{}", lg.log_text()));
    }
    let acks = AckReader::new(&acked).read_new()?;
    let distinct: std::collections::HashSet<Ipv4Addr> = acks.iter().map(|a| a.addr).collect();
    // The daemon's own figures, now that the traffic stopped.
    let ep = sock(&bed);
    let server_acks = json_ok(&ep, "/v1/statistics")?["engine"]["acks"]
        .as_u64()
        .unwrap_or(0) as f64;
    let server_active = json_ok(&ep, "/v1/pools/0")?["active"].as_u64().unwrap_or(0) as f64;
    // Prometheus catches up within a few scrapes and must then hold exactly those.
    let got = wait_for("Prometheus to catch up", Duration::from_secs(20), || {
        let a = prom_query(&bed, ACKS)?;
        let g = prom_query(&bed, ACTIVE)?;
        Ok(match (a, g) {
            (Some(a), Some(g)) if a == server_acks && g == server_active => Some((a, g)),
            _ => None,
        })
    })
    .map_err(|e| format!("{e}: server acks {server_acks}, active {server_active}"))?;
    if got.0 < acks.len() as f64 || got.1 < distinct.len() as f64 || mid >= got.0 {
        return Err(format!(
            "Prometheus: acks {} (mid-run {mid}), active {}; loadgen got {} ACKs for {} addresses",
            got.0,
            got.1,
            acks.len(),
            distinct.len()
        ));
    }
    let rate = prom_query(&bed, &format!("max_over_time(rate({ACKS}[5s])[1m:1s])"))?;
    eprintln!(
        "Prometheus read back: acks {} (mid-run {mid}), active {}, peak ACK rate {:?}/s; loadgen \
         {} ACKs",
        got.0,
        got.1,
        rate,
        acks.len()
    );
    drop(prom);
    stop_daemon(daemon)?;
    Ok(())
}

/// DORA/s of one closed-loop run.
fn dora_rate(bed: &Bed, tag: &str, secs: u32) -> Res<f64> {
    let lg = loadgen_bin()?;
    let report = bed.path(&format!("cost-{tag}.json"));
    let d = format!("{secs}s");
    let out = output(bed.cli.command("timeout").args([
        "120",
        &lg.to_string_lossy(),
        "-i",
        bed.cli_if(),
        "--io",
        "packet",
        "--scenario",
        "dora",
        "--clients",
        "200000",
        "--concurrency",
        "256",
        "--duration",
        &d,
        "--timeout-ms",
        "1000",
        "--mac-salt",
        &(0x10 + tag.len() as u8).to_string(),
        "--quiet",
        "--json",
        &report.to_string_lossy(),
    ]))?;
    if !out.status.success() {
        return Err(format!("loadgen: {}{}", out.stdout, out.stderr));
    }
    let v: serde_json::Value =
        serde_json::from_str(&read_text(&report)?).map_err(|e| e.to_string())?;
    v["phases"]
        .as_array()
        .and_then(|p| p.last())
        .and_then(|p| p["acked_per_s"].as_f64())
        .filter(|r| *r > 0.0)
        .ok_or_else(|| format!("no acked_per_s in {v}"))
}

#[test]
#[ignore = "a measurement (minutes): run by hand, figures go to benches/RESULTS.md"]
fn api_ns_metrics_cost_dora_rate() -> Res<()> {
    let mut needs = NEEDS.to_vec();
    needs.push(Capability::Program("prometheus"));
    if !require(&needs) {
        return Ok(());
    }
    let _g = lock();
    let rounds: u32 = std::env::var("ROUNDS")
        .ok()
        .and_then(|r| r.parse().ok())
        .unwrap_or(3);
    let (mut on, mut off) = (Vec::new(), Vec::new());
    for round in 0..rounds {
        for metrics in [true, false] {
            let bed = Bed::new(None)?;
            let cfg = config(&bed, metrics)?;
            let d = start_daemon(
                &bed,
                &cfg,
                "xdp",
                &bed.path("leases.db"),
                &bed.path("x.log"),
                &[],
            )?;
            let prom = if metrics {
                Some(Prometheus::start(&bed)?)
            } else {
                None
            };
            let r = dora_rate(&bed, if metrics { "on" } else { "off" }, 10)?;
            eprintln!("round {round}: metrics {metrics}: {r:.0} DORA/s");
            if metrics {
                on.push(r);
            } else {
                off.push(r);
            }
            drop(prom);
            stop_daemon(d)?;
        }
    }
    let mean = |v: &[f64]| v.iter().sum::<f64>() / v.len() as f64;
    eprintln!(
        "metrics on (scraped every 1 s): {:.0} DORA/s {on:.0?}; off: {:.0} DORA/s {off:.0?}; ratio {:.3}",
        mean(&on),
        mean(&off),
        mean(&on) / mean(&off)
    );
    Ok(())
}
