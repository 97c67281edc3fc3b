//! End-to-end tests of `xdhcp-loadgen` in network namespaces, against the
//! real xdhcpd, against Kea (when installed), and against a planted-duplicate
//! server. Root only (see `userspace/tests/common/require.rs` when root, the eBPF object or Kea is missing).
//!
//! Every test builds its own namespace pair (names carry the pid and a tag),
//! and tears it down through Drop guards, also when an assertion fails.
//! The tests take a shared lock: on a 2-core machine, two busy-polling load
//! generators at once would only measure each other.

#[path = "../../userspace/tests/common/require.rs"]
mod require;

use std::net::Ipv4Addr;
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::sync::Mutex;
use std::time::{Duration, Instant};

use require::{require, Capability};
use serde_json::Value;
use xdhcpd_dhcpv4::wire::{opt, Message, MessageType, ReplyWriter};
use xdhcpd_io::frame::{write_ipv4_udp_headers, Ipv4UdpAddrs, RxFrame, BROADCAST_MAC};
use xdhcpd_tools::loadgen::port::{PacketPort, Port, TxOutcome};
use xdhcpd_tools::netns::{ChildGuard, NetnsPair, PairConfig};

static SERIAL: Mutex<()> = Mutex::new(());

fn serial() -> std::sync::MutexGuard<'static, ()> {
    SERIAL.lock().unwrap_or_else(|p| p.into_inner())
}

fn repo_root() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR"))
        .parent()
        .map(Path::to_path_buf)
        .unwrap_or_else(|| PathBuf::from("."))
}

/// A scratch directory removed on drop.
struct TempDir(PathBuf);

impl TempDir {
    fn new(tag: &str) -> Self {
        let p = std::env::temp_dir().join(format!("xdhcp-loadgen-{tag}-{}", std::process::id()));
        let _ = std::fs::remove_dir_all(&p);
        std::fs::create_dir_all(&p).unwrap_or_else(|e| panic!("creating {}: {e}", p.display()));
        TempDir(p)
    }
}

impl Drop for TempDir {
    fn drop(&mut self) {
        let _ = std::fs::remove_dir_all(&self.0);
    }
}

fn pair(tag: &str) -> NetnsPair {
    let mut c = PairConfig::new(tag);
    c.queues = 2;
    NetnsPair::create(&c).unwrap_or_else(|e| panic!("creating namespaces: {e}"))
}

/// Runs the loadgen in the client namespace and returns its JSON report.
fn loadgen(p: &NetnsPair, args: &[&str]) -> Value {
    let bin = env!("CARGO_BIN_EXE_xdhcp-loadgen");
    let ebpf = ebpf_object();
    let out = p
        .client
        .command("timeout")
        .arg("120")
        .arg(bin)
        .args(["-i", &p.client_if, "--json", "-", "--quiet"])
        .arg("--ebpf-object")
        .arg(&ebpf)
        .args(args)
        .stdin(Stdio::null())
        .output()
        .unwrap_or_else(|e| panic!("running {bin}: {e}"));
    let stderr = String::from_utf8_lossy(&out.stderr);
    eprintln!("{stderr}");
    assert!(out.status.success(), "loadgen {args:?} failed: {stderr}");
    serde_json::from_slice(&out.stdout).unwrap_or_else(|e| {
        panic!(
            "loadgen JSON: {e}: {}",
            String::from_utf8_lossy(&out.stdout)
        )
    })
}

fn phase<'a>(r: &'a Value, name: &str) -> &'a Value {
    r["phases"]
        .as_array()
        .and_then(|a| a.iter().find(|p| p["name"] == name))
        .unwrap_or_else(|| panic!("no phase {name} in {r:#}"))
}

fn n(v: &Value, k: &str) -> u64 {
    v[k].as_u64()
        .unwrap_or_else(|| panic!("{k} missing in {v:#}"))
}

/// Every started exchange is answered or dropped, drops stay rare, and no
/// address went to two clients.
fn assert_accounted(p: &Value, max_loss_pct: f64) {
    let (sent, answered, drops) = (n(p, "sent"), n(p, "answered"), n(p, "drops"));
    assert!(sent > 0, "nothing sent: {p:#}");
    assert_eq!(sent, answered + drops, "sent != answered + drops: {p:#}");
    assert_eq!(n(p, "acks") + n(p, "naks"), answered, "{p:#}");
    assert!(
        (drops as f64) * 100.0 <= max_loss_pct * sent as f64,
        "{drops} of {sent} dropped: {p:#}"
    );
    assert_eq!(n(p, "duplicates"), 0, "duplicates: {p:#}");
}

/// DORA of `clients` clients exactly once each: every ACK is a distinct address.
fn assert_dora_once_each(r: &Value, clients: u64) {
    let p = phase(r, "dora");
    assert_accounted(p, 1.0);
    assert_eq!(n(p, "sent"), clients, "{p:#}");
    assert_eq!(n(p, "naks"), 0, "{p:#}");
    assert_eq!(
        n(p, "acks"),
        n(r, "distinct_addresses"),
        "ACKs != distinct addresses: {r:#}"
    );
    assert_eq!(n(r, "clients_bound"), n(p, "acks"), "{r:#}");
}

fn wait_for(log: &Path, needle: &str, timeout: Duration, child: &mut ChildGuard) -> bool {
    let t0 = Instant::now();
    while t0.elapsed() < timeout {
        if std::fs::read_to_string(log).is_ok_and(|s| s.contains(needle)) {
            return true;
        }
        if let Ok(Some(status)) = child.try_wait() {
            eprintln!(
                "server exited ({status}): {}",
                std::fs::read_to_string(log).unwrap_or_default()
            );
            return false;
        }
        std::thread::sleep(Duration::from_millis(50));
    }
    eprintln!(
        "no {needle:?} within {timeout:?}: {}",
        std::fs::read_to_string(log).unwrap_or_default()
    );
    false
}

/// The XDP object the daemon and the loadgen load.
fn ebpf_object() -> PathBuf {
    repo_root().join("target/bpfel-unknown-none/release/xdhcpd-ebpf")
}

/// What every test here needs: root for the namespaces, `timeout`, and the XDP object.
fn needs() -> Vec<Capability> {
    vec![
        Capability::Root,
        Capability::Program("timeout"),
        Capability::EbpfObject(ebpf_object()),
    ]
}

/// The xdhcpd binary, built if needed.
fn xdhcpd_binary() -> PathBuf {
    let bin = repo_root().join("target/release/xdhcpd");
    let cargo = std::env::var("CARGO").unwrap_or_else(|_| "cargo".into());
    // Cheap when up to date; makes sure the daemon matches the sources.
    let st = Command::new(cargo)
        .args(["build", "-p", "xdhcpd", "--release", "--quiet"])
        .current_dir(repo_root())
        .status();
    match st {
        Ok(s) if s.success() => {}
        other => eprintln!("note: cargo build -p xdhcpd --release: {other:?}"),
    }
    assert!(
        bin.is_file(),
        "{} is missing and could not be built",
        bin.display()
    );
    bin
}

fn start_xdhcpd(p: &NetnsPair, dir: &TempDir, io: &str) -> ChildGuard {
    let bin = xdhcpd_binary();
    let conf = dir.0.join("xdhcpd.toml");
    let text = format!(
        r#"
[server]
interface = "{ifname}"
io = "{io}"
server-id = "{server}"
lease-file = "{leases}"
commit = "interval:10"

[lease]
default-time = 3600
min-time = 60
max-time = 86400

[[subnet]]
cidr = "10.77.0.0/16"
router = ["10.77.0.1"]

[[subnet.pool]]
range = "10.77.1.0-10.77.250.255"
"#,
        ifname = p.server_if,
        server = p.server_addr,
        leases = dir.0.join("leases.db").display(),
    );
    std::fs::write(&conf, text).unwrap_or_else(|e| panic!("writing {}: {e}", conf.display()));
    let log = dir.0.join("xdhcpd.log");
    let logf = std::fs::File::create(&log).unwrap_or_else(|e| panic!("creating log: {e}"));
    let errf = logf.try_clone().unwrap_or_else(|e| panic!("log: {e}"));
    let child = p
        .server
        .command(&bin.to_string_lossy())
        .args(["run", "--config"])
        .arg(&conf)
        .args(["--io", io, "--stats-interval", "0", "--ebpf-object"])
        .arg(ebpf_object())
        .env("NO_COLOR", "1")
        .stdout(logf)
        .stderr(errf)
        .spawn()
        .unwrap_or_else(|e| panic!("starting xdhcpd: {e}"));
    let mut g = ChildGuard::new(child, "xdhcpd");
    if !wait_for(&log, "serving", Duration::from_secs(20), &mut g) {
        panic!("xdhcpd did not start");
    }
    g
}

fn start_kea(p: &NetnsPair, dir: &TempDir) -> ChildGuard {
    let _ = std::fs::create_dir_all("/run/kea");
    let conf = dir.0.join("kea.json");
    let text = format!(
        r#"{{"Dhcp4": {{
  "interfaces-config": {{"interfaces": ["{ifname}"], "dhcp-socket-type": "raw"}},
  "lease-database": {{"type": "memfile", "persist": false}},
  "multi-threading": {{"enable-multi-threading": true, "thread-pool-size": 2, "packet-queue-size": 1024}},
  "valid-lifetime": 3600,
  "subnet4": [{{"id": 1, "subnet": "10.77.0.0/16", "pools": [{{"pool": "10.77.1.0 - 10.77.250.255"}}]}}],
  "loggers": [{{"name": "kea-dhcp4", "output_options": [{{"output": "stdout"}}], "severity": "INFO"}}]
}}}}"#,
        ifname = p.server_if
    );
    std::fs::write(&conf, text).unwrap_or_else(|e| panic!("writing {}: {e}", conf.display()));
    let log = dir.0.join("kea.log");
    let logf = std::fs::File::create(&log).unwrap_or_else(|e| panic!("creating log: {e}"));
    let errf = logf.try_clone().unwrap_or_else(|e| panic!("log: {e}"));
    let child = p
        .server
        .command("kea-dhcp4")
        .arg("-c")
        .arg(&conf)
        .env("KEA_PIDFILE_DIR", &dir.0)
        .env("KEA_LOCKFILE_DIR", &dir.0)
        .stdout(logf)
        .stderr(errf)
        .spawn()
        .unwrap_or_else(|e| panic!("starting kea-dhcp4: {e}"));
    let mut g = ChildGuard::new(child, "kea-dhcp4");
    if !wait_for(&log, "DHCP4_STARTED", Duration::from_secs(20), &mut g) {
        panic!("kea-dhcp4 did not start");
    }
    g
}

#[test]
fn dora_direct_and_relayed_against_xdhcpd() {
    if !require(&needs()) {
        return;
    }
    let _s = serial();
    let p = pair("xd");
    let dir = TempDir::new("xd");
    let server = start_xdhcpd(&p, &dir, "xdp");
    // Direct, AF_XDP: 3000 clients, one DORA each.
    let r = loadgen(
        &p,
        &[
            "--io",
            "xdp",
            "--scenario",
            "dora",
            "--clients",
            "3000",
            "--count",
            "3000",
            "--concurrency",
            "128",
            "--retries",
            "2",
            "--timeout-ms",
            "500",
        ],
    );
    assert_eq!(r["io"], "af_xdp");
    assert_dora_once_each(&r, 3000);

    // Renew-only after warm-up, the same clients: all renewals ACKed, no duplicates.
    let r = loadgen(
        &p,
        &[
            "--io",
            "xdp",
            "--scenario",
            "renew",
            "--clients",
            "3000",
            "--count",
            "6000",
            "--concurrency",
            "128",
            "--retries",
            "2",
            "--timeout-ms",
            "500",
        ],
    );
    assert_accounted(phase(&r, "warmup-dora"), 1.0);
    let renew = phase(&r, "renew");
    assert_accounted(renew, 1.0);
    assert_eq!(n(renew, "sent"), 6000);
    assert_eq!(n(renew, "naks"), 0, "{renew:#}");

    // Relayed (giaddr = our address, option 82), other clients (other MACs).
    let giaddr = p.client_addr.to_string();
    let server_ip = p.server_addr.to_string();
    let r = loadgen(
        &p,
        &[
            "--io",
            "xdp",
            "--relay",
            &giaddr,
            "--server",
            &server_ip,
            "--mac-salt",
            "77",
            "--clients",
            "2000",
            "--count",
            "2000",
            "--concurrency",
            "128",
            "--retries",
            "2",
            "--timeout-ms",
            "500",
        ],
    );
    assert_eq!(r["relay"], giaddr.as_str());
    assert_dora_once_each(&r, 2000);
    drop(server);
}

#[test]
fn dora_and_release_against_xdhcpd_with_the_packet_socket_fallback() {
    if !require(&needs()) {
        return;
    }
    let _s = serial();
    let p = pair("xp");
    let dir = TempDir::new("xp");
    let _server = start_xdhcpd(&p, &dir, "xdp");
    let r = loadgen(
        &p,
        &[
            "--io",
            "packet",
            "--scenario",
            "dora",
            "--clients",
            "2000",
            "--count",
            "2000",
            "--concurrency",
            "64",
            "--retries",
            "2",
            "--timeout-ms",
            "500",
        ],
    );
    assert_eq!(r["io"], "af_packet");
    assert_dora_once_each(&r, 2000);

    // Release: every ACKed DORA is followed by a RELEASE; nobody stays bound.
    let r = loadgen(
        &p,
        &[
            "--io",
            "packet",
            "--scenario",
            "release",
            "--clients",
            "2000",
            "--count",
            "2000",
            "--concurrency",
            "64",
            "--retries",
            "2",
            "--timeout-ms",
            "500",
        ],
    );
    let d = phase(&r, "dora");
    assert_accounted(d, 1.0);
    assert_eq!(n(phase(&r, "release"), "releases"), n(d, "acks"));
    assert_eq!(n(&r, "clients_bound"), 0, "{r:#}");
}

#[test]
fn dora_renew_and_init_reboot_against_kea() {
    let mut needs = needs();
    needs.push(Capability::Program("kea-dhcp4"));
    if !require(&needs) {
        return;
    }
    let _s = serial();
    let p = pair("kea");
    let dir = TempDir::new("kea");
    let _kea = start_kea(&p, &dir);
    let r = loadgen(
        &p,
        &[
            "--scenario",
            "dora-renew",
            "--clients",
            "1000",
            "--count",
            "1000",
            "--concurrency",
            "32",
            "--retries",
            "3",
            "--timeout-ms",
            "500",
        ],
    );
    assert_dora_once_each(&r, 1000);
    let renew = phase(&r, "renew");
    assert_accounted(renew, 1.0);
    assert_eq!(n(renew, "sent"), 1000);

    let r = loadgen(
        &p,
        &[
            "--io",
            "packet",
            "--scenario",
            "init-reboot",
            "--clients",
            "1000",
            "--count",
            "2000",
            "--concurrency",
            "32",
            "--retries",
            "3",
            "--timeout-ms",
            "500",
        ],
    );
    let ir = phase(&r, "init-reboot");
    assert_accounted(ir, 1.0);
    assert_eq!(n(ir, "sent"), 2000);
    assert_eq!(
        n(ir, "naks"),
        0,
        "Kea NAKed an INIT-REBOOT of a bound address: {ir:#}"
    );
}

/// A broken "server" that hands the same address to every client: the
/// loadgen must report every ACK after the first as a duplicate.
fn same_address_server(p: &NetnsPair, stop: &std::sync::atomic::AtomicBool) {
    use std::sync::atomic::Ordering::Relaxed;
    if let Err(e) = p.server.enter_current_thread() {
        panic!("entering {}: {e}", p.server.name());
    }
    let mut port = PacketPort::open(&p.server_if, None, false)
        .unwrap_or_else(|e| panic!("packet socket on {}: {e}", p.server_if));
    let planted = Ipv4Addr::new(10, 77, 9, 9);
    let server = p.server_addr;
    let mut replies: Vec<Vec<u8>> = Vec::new();
    while !stop.load(Relaxed) {
        let got = port
            .recv_batch(|f| {
                let Ok(rx) = RxFrame::parse(f) else { return };
                if rx.dst_port != 67 {
                    return;
                }
                let Ok(req) = Message::new_checked(rx.payload) else {
                    return;
                };
                let Ok(sum) = req.summary() else { return };
                let kind = match sum.message_type {
                    Some(MessageType::Discover) => MessageType::Offer,
                    Some(MessageType::Request) => MessageType::Ack,
                    _ => return,
                };
                let mut frame = vec![0u8; 42 + 576];
                let len = {
                    let Ok(mut w) = ReplyWriter::new(&mut frame[42..], &req, 576) else {
                        return;
                    };
                    w.set_yiaddr(planted);
                    let ok = w.option(opt::MESSAGE_TYPE, &[kind as u8]).is_ok()
                        && w.option_ip(opt::SERVER_ID, server).is_ok()
                        && w.option_u32(opt::LEASE_TIME, 3600).is_ok();
                    if !ok {
                        return;
                    }
                    w.finish()
                };
                let addrs = Ipv4UdpAddrs {
                    src_mac: [2, 0, 0, 0, 0, 1],
                    dst_mac: BROADCAST_MAC,
                    src_ip: server,
                    dst_ip: Ipv4Addr::BROADCAST,
                    src_port: 67,
                    dst_port: 68,
                };
                if let Ok(total) = write_ipv4_udp_headers(&mut frame, &[], &addrs, len) {
                    frame.truncate(total);
                    replies.push(frame);
                }
            })
            .unwrap_or_else(|e| panic!("fake server recv: {e}"));
        for f in replies.drain(..) {
            let out = port
                .send_with(|buf| {
                    let b = buf.get_mut(..f.len())?;
                    b.copy_from_slice(&f);
                    Some(f.len())
                })
                .unwrap_or_else(|e| panic!("fake server send: {e}"));
            assert_eq!(out, TxOutcome::Queued);
        }
        port.flush()
            .unwrap_or_else(|e| panic!("fake server flush: {e}"));
        if got == 0 {
            std::thread::sleep(Duration::from_micros(200));
        }
    }
}

#[test]
fn a_planted_duplicate_is_reported() {
    if !require(&needs()) {
        return;
    }
    let _s = serial();
    let p = pair("dup");
    let stop = std::sync::atomic::AtomicBool::new(false);
    struct StopOnDrop<'a>(&'a std::sync::atomic::AtomicBool);
    impl Drop for StopOnDrop<'_> {
        fn drop(&mut self) {
            self.0.store(true, std::sync::atomic::Ordering::Relaxed);
        }
    }
    std::thread::scope(|s| {
        let srv = s.spawn(|| same_address_server(&p, &stop));
        // Stops the fake server also when an assertion below fails.
        let _stop = StopOnDrop(&stop);
        let r = loadgen(
            &p,
            &[
                "--scenario",
                "dora",
                "--clients",
                "20",
                "--count",
                "20",
                "--concurrency",
                "1",
                "--timeout-ms",
                "1000",
            ],
        );
        stop.store(true, std::sync::atomic::Ordering::Relaxed);
        let d = phase(&r, "dora");
        assert_accounted_allowing_duplicates(d);
        assert_eq!(n(d, "acks"), 20, "{d:#}");
        // The first client got it fresh; each later one took it from a holder.
        assert_eq!(n(d, "duplicates"), 19, "{r:#}");
        assert_eq!(n(&r, "distinct_addresses"), 1, "{r:#}");
        let ex = &r["duplicate_examples"][0];
        assert_eq!(ex["address"], "10.77.9.9", "{r:#}");
        assert_ne!(ex["client"], ex["other_client"]);
        if srv.join().is_err() {
            panic!("fake server thread panicked");
        }
    });
}

fn assert_accounted_allowing_duplicates(p: &Value) {
    assert_eq!(n(p, "sent"), n(p, "answered") + n(p, "drops"), "{p:#}");
    assert_eq!(n(p, "drops"), 0, "{p:#}");
}

/// xdhcpd serving DHCPv6 on the pair's link: fd77::/64 (the server's link, an address
/// pool and a /56 prefix pool) and fd78::/64, a relayed link selected by link-address;
/// the client end's fd77::2 is a trusted relay.
fn start_xdhcpd6(p: &NetnsPair, dir: &TempDir) -> ChildGuard {
    for (ns, dev, addr) in [
        (&p.server, &p.server_if, "fd77::1/64"),
        (&p.client, &p.client_if, "fd77::2/64"),
    ] {
        ns.ip(&["-6", "addr", "add", addr, "dev", dev, "nodad"])
            .unwrap_or_else(|e| panic!("adding {addr}: {e}"));
    }
    // The daemon answers from the server end's link-local address: wait until DAD is over.
    let t0 = Instant::now();
    loop {
        let out = p
            .server
            .run(
                "ip",
                &["-6", "addr", "show", "dev", &p.server_if, "scope", "link"],
            )
            .unwrap_or_else(|e| panic!("ip addr: {e}"));
        let text = String::from_utf8_lossy(&out.stdout);
        if text.contains("fe80::") && !text.contains("tentative") {
            break;
        }
        assert!(
            t0.elapsed() < Duration::from_secs(10),
            "no usable link-local address on {}: {text}",
            p.server_if
        );
        std::thread::sleep(Duration::from_millis(100));
    }
    let bin = xdhcpd_binary();
    let conf = dir.0.join("xdhcpd6.toml");
    let text = format!(
        r#"
[server]
interface = "{ifname}"
io = "xdp"
server-id = "{server}"
lease-file = "{leases}"
commit = "interval:10"

[[subnet]]
cidr = "10.77.0.0/16"
[[subnet.pool]]
range = "10.77.1.0-10.77.1.255"

[dhcpv6]
lease-file = "{leases6}"
capacity = 65536
trusted-relays = ["fd77::2"]

[[subnet6]]
prefix = "fd77::/64"
interface = "{ifname}"
preferred-time = 3600
valid-time = 7200
[[subnet6.pool]]
range = "fd77::1:0-fd77::1:ffff"
[[subnet6.pd-pool]]
prefix = "fd77:100::/40"
delegated-length = 56

[[subnet6]]
prefix = "fd78::/64"
preferred-time = 3600
valid-time = 7200
[[subnet6.pool]]
range = "fd78::1:0-fd78::1:ffff"
[[subnet6.pd-pool]]
prefix = "fd78:100::/40"
delegated-length = 56
"#,
        ifname = p.server_if,
        server = p.server_addr,
        leases = dir.0.join("leases.db").display(),
        leases6 = dir.0.join("bindings6.db").display(),
    );
    std::fs::write(&conf, text).unwrap_or_else(|e| panic!("writing {}: {e}", conf.display()));
    let log = dir.0.join("xdhcpd6.log");
    let logf = std::fs::File::create(&log).unwrap_or_else(|e| panic!("creating log: {e}"));
    let errf = logf.try_clone().unwrap_or_else(|e| panic!("log: {e}"));
    let child = p
        .server
        .command(&bin.to_string_lossy())
        .args(["run", "--config"])
        .arg(&conf)
        .args(["--io", "xdp", "--stats-interval", "0", "--ebpf-object"])
        .arg(ebpf_object())
        .env("NO_COLOR", "1")
        .stdout(logf)
        .stderr(errf)
        .spawn()
        .unwrap_or_else(|e| panic!("starting xdhcpd: {e}"));
    let mut g = ChildGuard::new(child, "xdhcpd");
    if !wait_for(&log, "serving", Duration::from_secs(20), &mut g) {
        panic!("xdhcpd did not start");
    }
    g
}

/// A DHCPv6 phase: every exchange accounted for, none lost, no failure status, no
/// incomplete answer, no relay error, no address or prefix on two clients.
fn assert_v6_clean(p: &Value, sent: u64) {
    assert_accounted(p, 0.0);
    assert_eq!(n(p, "sent"), sent, "{p:#}");
    assert_eq!(n(p, "acks"), sent, "{p:#}");
    for k in ["naks", "status_errors", "incomplete", "relay_errors"] {
        assert_eq!(n(p, k), 0, "{k}: {p:#}");
    }
}

#[test]
fn loadgen_dhcpv6_sarr_renew_and_relayed_against_xdhcpd() {
    if !require(&needs()) {
        return;
    }
    let _s = serial();
    let p = pair("v6b");
    let dir = TempDir::new("v6b");
    let server = start_xdhcpd6(&p, &dir);
    let common = [
        "--io",
        "xdp",
        "--concurrency",
        "128",
        "--retries",
        "2",
        "--timeout-ms",
        "500",
    ];
    // SARR with IA_NA and IA_PD, 2000 clients once each: 2000 distinct addresses and prefixes.
    let mut args = common.to_vec();
    args.extend([
        "--scenario",
        "sarr",
        "--dhcpv6",
        "both",
        "--clients",
        "2000",
        "--count",
        "2000",
    ]);
    let r = loadgen(&p, &args);
    assert_eq!(r["io"], "af_xdp");
    assert_eq!(r["dhcpv6"], "both");
    assert_v6_clean(phase(&r, "sarr"), 2000);
    assert_eq!(n(&r, "distinct_addresses"), 2000, "{r:#}");
    assert_eq!(n(&r, "distinct_prefixes"), 2000, "{r:#}");

    // The AF_PACKET fallback (its DHCPv6 socket filter), other clients (MAC salt 78).
    let r = loadgen(
        &p,
        &[
            "--io",
            "packet",
            "--scenario",
            "sarr",
            "--dhcpv6",
            "na",
            "--mac-salt",
            "78",
            "--clients",
            "500",
            "--count",
            "500",
            "--concurrency",
            "64",
            "--retries",
            "2",
            "--timeout-ms",
            "500",
        ],
    );
    assert_eq!(r["io"], "af_packet");
    assert_v6_clean(phase(&r, "sarr"), 500);

    // Renew only (after the warm-up SARR of the same clients), prefixes alone.
    let mut args = common.to_vec();
    args.extend([
        "--scenario",
        "renew",
        "--dhcpv6",
        "pd",
        "--clients",
        "1000",
        "--count",
        "3000",
    ]);
    let r = loadgen(&p, &args);
    assert_v6_clean(phase(&r, "warmup-sarr"), 1000);
    assert_v6_clean(phase(&r, "renew"), 3000);

    // Relayed through fd77::2 for the link fd78::/64, other clients (MAC salt 77).
    let out = p
        .server
        .run("cat", &[&format!("/sys/class/net/{}/address", p.server_if)])
        .unwrap_or_else(|e| panic!("reading the server's MAC: {e}"));
    let server_mac = String::from_utf8_lossy(&out.stdout).trim().to_string();
    let mut args = common.to_vec();
    args.extend([
        "--scenario",
        "sarr",
        "--dhcpv6",
        "both",
        "--relay6",
        "fd77::2",
        "--link-address",
        "fd78::",
        "--server6",
        "fd77::1",
        "--server-mac",
        &server_mac,
        "--mac-salt",
        "77",
        "--clients",
        "500",
        "--count",
        "500",
    ]);
    let r = loadgen(&p, &args);
    assert_v6_clean(phase(&r, "sarr"), 500);

    // The daemon stored the relay data with each relayed binding, on the link the
    // link-address named.
    let out = p
        .server
        .run(
            &xdhcpd_binary().to_string_lossy(),
            &[
                "leases",
                "dump6",
                "-c",
                &dir.0.join("xdhcpd6.toml").to_string_lossy(),
            ],
        )
        .unwrap_or_else(|e| panic!("xdhcpd leases dump6: {e}"));
    let mut relayed = 0;
    for line in String::from_utf8_lossy(&out.stdout).lines() {
        let b: Value = serde_json::from_str(line).unwrap_or_else(|e| panic!("{e}: {line}"));
        let iid = b["interface_id"].as_str().unwrap_or_default();
        if iid.is_empty() {
            continue;
        }
        relayed += 1;
        let addr = b["address"].as_str().unwrap_or_default();
        assert!(
            addr.starts_with("fd78:"),
            "relayed binding off its link: {b}"
        );
        let rid = b["remote_id"].as_str().unwrap_or_default();
        // Enterprise 3561 then the client's MAC (02:4d:..: salt 77).
        assert!(rid.starts_with("00:00:0d:e9:02:4d:"), "remote-id: {b}");
        assert_eq!(
            &rid[18..],
            iid,
            "interface-id = client index = the MAC's low 4 bytes: {b}"
        );
    }
    assert_eq!(relayed, 1000, "500 relayed clients x (address + prefix)");
    drop(server);
}
