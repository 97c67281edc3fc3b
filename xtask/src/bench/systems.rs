//! The measured systems: which they are, the sweep's scale for each, their configuration
//! files, and starting a server and waiting until it answers.

use std::fs;
use std::path::Path;
use std::time::{Duration, Instant};

use anyhow::{bail, Context, Result};
use serde_json::{json, Value};

use super::analysis::Point;
use super::loadgen::Load;
use super::process::{check_interrupt, nap, Proc};
use super::{Ctx, LOADGEN_CPU, POOL_FIRST, POOL_LAST, SERVER_CPU, SERVER_IF, SERVER_IP, SUBNET};
use crate::netns::NetnsPair;
use crate::util;

/// One measured system.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum System {
    Ceiling,
    XdpAck,
    /// XDP, commit=ack, with the lease event log on (its cost against `XdpAck`).
    XdpEvents,
    /// `XdpEvents` plus the NATS JetStream sink (`[event-log.nats]`) to a `nats-server -js`
    /// the bench starts in the server namespace on the server's core (issue 17's cost).
    XdpNats,
    /// XDP, commit=ack, with the XDP program's per-client token buckets on (issue 12's cost).
    XdpRateLimit,
    /// XDP, commit=ack with `commit-min-gap-us = 1000` (light group commits at least 1 ms
    /// apart): the gap's effect against the default in the same run.
    XdpGap,
    /// XDP, commit=ack with `commit-coalesce-us = 0` (loaded group commits back to back):
    /// the coalescing's effect on DHCPv4 against the default in the same run.
    XdpNoCoalesce,
    /// XDP, commit=ack, 20 classes, a shared network, deny-unknown and 1,000,000
    /// registrations (issue 10's cost).
    XdpProv,
    XdpInterval,
    Udp,
    Kea,
    Dhcpd,
    /// `xdhcp-echo --v6`: the raw ceiling for DHCPv6 frames.
    Ceiling6,
    /// xdhcpd XDP, commit=ack, DHCPv6: an address pool and a prefix pool on fd78::/64.
    Xdp6,
    /// `Xdp6` with `commit-coalesce-us = 0` (group commits back to back, as before the
    /// coalescing): the coalescing's effect in the same run (`--ab-rounds`).
    Xdp6NoCoalesce,
    /// `Xdp6` with `commit-coalesce-max-us = 200` (the fixed 200 µs wait, as before the
    /// load-adaptive one): the adaptive wait's effect in the same run (`--ab-rounds`).
    Xdp6FixedCoalesce,
    /// Kea 2.2 kea-dhcp6 on the same link and pools.
    Kea6,
}

impl System {
    pub const ALL: [System; 17] = [
        System::Ceiling,
        System::XdpAck,
        System::XdpEvents,
        System::XdpNats,
        System::XdpRateLimit,
        System::XdpGap,
        System::XdpNoCoalesce,
        System::XdpProv,
        System::XdpInterval,
        System::Udp,
        System::Kea,
        System::Dhcpd,
        System::Ceiling6,
        System::Xdp6,
        System::Xdp6NoCoalesce,
        System::Xdp6FixedCoalesce,
        System::Kea6,
    ];

    pub fn key(self) -> &'static str {
        match self {
            System::Ceiling => "ceiling",
            System::XdpAck => "xdhcpd-xdp",
            System::XdpEvents => "xdhcpd-xdp-events",
            System::XdpNats => "xdhcpd-xdp-nats",
            System::XdpRateLimit => "xdhcpd-xdp-ratelimit",
            System::XdpGap => "xdhcpd-xdp-gap",
            System::XdpNoCoalesce => "xdhcpd-xdp-nocoalesce",
            System::XdpProv => "xdhcpd-xdp-prov",
            System::XdpInterval => "xdhcpd-xdp-interval",
            System::Udp => "xdhcpd-udp",
            System::Kea => "kea",
            System::Dhcpd => "dhcpd",
            System::Ceiling6 => "ceiling6",
            System::Xdp6 => "xdhcpd-xdp6",
            System::Xdp6NoCoalesce => "xdhcpd-xdp6-nocoalesce",
            System::Xdp6FixedCoalesce => "xdhcpd-xdp6-fixedcoalesce",
            System::Kea6 => "kea-dhcp6",
        }
    }

    pub fn label(self) -> &'static str {
        match self {
            System::Ceiling => "raw ceiling (XDP→AF_XDP echo)",
            System::XdpAck => "xdhcpd XDP, commit=ack",
            System::XdpEvents => "xdhcpd XDP, commit=ack, event log on, /metrics scraped 1/s",
            System::XdpNats => {
                "xdhcpd XDP, commit=ack, event log + NATS JetStream sink, /metrics scraped 1/s"
            }
            System::XdpRateLimit => "xdhcpd XDP, commit=ack, per-client rate limit in XDP",
            System::XdpGap => "xdhcpd XDP, commit=ack, commit-min-gap-us = 1000",
            System::XdpNoCoalesce => "xdhcpd XDP, commit=ack, commit-coalesce-us = 0",
            System::XdpProv => {
                "xdhcpd XDP, commit=ack, 20 classes, shared network, 1M registrations"
            }
            System::XdpInterval => "xdhcpd XDP, commit=interval:10",
            System::Udp => "xdhcpd --io udp, commit=ack",
            System::Kea => "Kea 2.2 (MT 2 threads, memfile, raw)",
            System::Dhcpd => "ISC dhcpd 4.4",
            System::Ceiling6 => "DHCPv6 raw ceiling (XDP→AF_XDP echo, SARR with IA_NA+IA_PD)",
            System::Xdp6 => "xdhcpd XDP DHCPv6, commit=ack (SARR with IA_NA+IA_PD)",
            System::Xdp6NoCoalesce => {
                "xdhcpd XDP DHCPv6, commit=ack, commit-coalesce-us = 0 (SARR with IA_NA+IA_PD)"
            }
            System::Xdp6FixedCoalesce => {
                "xdhcpd XDP DHCPv6, commit=ack, commit-coalesce-max-us = 200 (SARR with IA_NA+IA_PD)"
            }
            System::Kea6 => "Kea 2.2 kea-dhcp6 (MT 2 threads, memfile, SARR with IA_NA+IA_PD)",
        }
    }

    pub(super) fn color(self) -> &'static str {
        match self {
            System::Ceiling => "#555555",
            System::XdpAck => "#d62728",
            System::XdpEvents => "#8c564b",
            System::XdpNats => "#c49c94",
            System::XdpRateLimit => "#e377c2",
            System::XdpGap => "#f7b6d2",
            System::XdpNoCoalesce => "#ffbb78",
            System::XdpProv => "#17becf",
            System::XdpInterval => "#ff7f0e",
            System::Udp => "#9467bd",
            System::Kea => "#1f77b4",
            System::Dhcpd => "#2ca02c",
            System::Ceiling6 => "#999999",
            System::Xdp6 => "#bcbd22",
            System::Xdp6NoCoalesce => "#dbdb8d",
            System::Xdp6FixedCoalesce => "#8c6d31",
            System::Kea6 => "#aec7e8",
        }
    }

    pub(super) fn parse(s: &str) -> Result<System> {
        System::ALL
            .into_iter()
            .find(|x| x.key() == s.trim())
            .with_context(|| {
                let keys: Vec<&str> = System::ALL.iter().map(|x| x.key()).collect();
                format!(
                    "--systems: unknown system {s:?} (known: {})",
                    keys.join(", ")
                )
            })
    }

    /// The sweep's scale: first and largest target, simulated clients for the
    /// sweep and for renew (renew first binds every client), closed-loop depth.
    pub(super) fn scale(self, quick: bool) -> Scale {
        let (start, max, clients, renew_clients, concurrency) = match self {
            System::Ceiling | System::Ceiling6 => (25_000, 1_600_000, 50_000, 50_000, 256),
            // commit=ack waits for the disk once per batch: a lower start.
            System::XdpAck
            | System::XdpEvents
            | System::XdpNats
            | System::XdpRateLimit
            | System::XdpGap
            | System::XdpNoCoalesce
            | System::XdpProv
            | System::Xdp6
            | System::Xdp6NoCoalesce
            | System::Xdp6FixedCoalesce => (2_000, 800_000, 50_000, 50_000, 256),
            System::XdpInterval => (10_000, 800_000, 50_000, 50_000, 256),
            System::Udp => (2_000, 400_000, 50_000, 50_000, 256),
            System::Kea | System::Kea6 => (1_000, 64_000, 16_000, 8_000, 64),
            // fsync per lease: from tens to thousands per second, with the disk.
            System::Dhcpd => (25, 12_800, 1_000, 200, 16),
        };
        let quick_renew = if self == System::Dhcpd { 60 } else { 4_000 };
        Scale {
            start: if quick { start * 2 } else { start },
            max,
            clients,
            renew_clients: if quick {
                renew_clients.min(quick_renew)
            } else {
                renew_clients
            },
            concurrency,
            factor: std::f64::consts::SQRT_2,
            max_points: if quick { 5 } else { 14 },
        }
    }

    pub(super) fn is_xdhcpd(self) -> bool {
        matches!(
            self,
            System::XdpAck
                | System::XdpEvents
                | System::XdpNats
                | System::XdpRateLimit
                | System::XdpGap
                | System::XdpNoCoalesce
                | System::XdpProv
                | System::XdpInterval
                | System::Udp
                | System::Xdp6
                | System::Xdp6NoCoalesce
                | System::Xdp6FixedCoalesce
        )
    }

    /// DHCPv6 systems: the loadgen runs SARR with IA_NA and IA_PD (one SARR = one exchange,
    /// as one DORA is), its phases are named "sarr" / "renew".
    pub(super) fn is_v6(self) -> bool {
        matches!(
            self,
            System::Ceiling6
                | System::Xdp6
                | System::Xdp6NoCoalesce
                | System::Xdp6FixedCoalesce
                | System::Kea6
        )
    }

    /// The loadgen report's name of the phase the bench calls `scenario` ("dora", "renew").
    pub(super) fn phase(self, scenario: &str) -> &str {
        match (self.is_v6(), scenario) {
            (true, "dora") => "sarr",
            (_, s) => s,
        }
    }
}

#[derive(Clone, Copy, Debug)]
pub(super) struct Scale {
    pub(super) start: u64,
    pub(super) max: u64,
    pub(super) clients: u32,
    pub(super) renew_clients: u32,
    pub(super) concurrency: u32,
    pub(super) factor: f64,
    pub(super) max_points: usize,
}

fn xdhcpd_config(commit: &str) -> String {
    format!(
        r#"# generated by cargo xtask bench
[server]
interface = "{SERVER_IF}"
queues = "all"
server-id = "{SERVER_IP}"
commit = "{commit}"

[lease]
default-time = 3600
min-time = 60
max-time = 86400
offer-hold = 30
authoritative = true

[[subnet]]
cidr = "{SUBNET}"
router = ["{SERVER_IP}"]

[[subnet.pool]]
range = "{POOL_FIRST}-{POOL_LAST}"
"#
    )
}

/// Per-client token buckets in the XDP program, set well above what one simulated client
/// sends (a DORA is two requests; 50,000 clients at the sweep's top rate send a few a second),
/// so the run measures what the check costs, not what it drops.
const RATE_LIMIT_SECTION: &str = "
[rate-limit]
client-rate = 50
client-burst = 100
relay-rate = 1000000
circuit-rate = 1000000
";

/// Registrations written for `xdhcpd-xdp-prov`: every loadgen client the bench can use
/// (MACs `02:4c:..`, the loadgen's default salt) plus filler MACs (`02:4d:..`) up to this
/// many in all.
const PROV_REGISTRATIONS: u32 = 1_000_000;
/// Loadgen client indices registered (the sweep's and the renew run's clients are below).
const PROV_LOADGEN_CLIENTS: u32 = 100_000;

/// The plain bench configuration turned into a provisioning one: the bench subnet in a shared
/// network with a second subnet, 20 classes of every matcher kind evaluated for each message
/// (the loadgen's clients match the `registered` group and `hw-prefix` ones, none of the
/// option-based ones), the bench pool open only to registered clients (`deny-unknown`), and
/// the registration store the run imports 1,000,000 registrations into.
fn prov_config(plain: &str, registrations: &Path, socket: &Path) -> String {
    let mut t = plain.replacen(
        "[server]\n",
        &format!(
            "[server]\ncontrol-socket = \"{}\"\nregistration-file = \"{}\"\n",
            socket.display(),
            registrations.display()
        ),
        1,
    );
    let classes = [
        ("registered", "group = \"registered\"\nboot-file = \"bench.cfg\""),
        ("docsis10", "vendor-class-prefix = \"docsis1.0:\"\nboot-file = \"d10.cfg\""),
        ("docsis", "vendor-class-prefix = \"docsis\"\nboot-file = \"d3.cfg\""),
        ("pktc", "vendor-class-prefix = \"pktc1.0:\"\nboot-file = \"mta.bin\""),
        ("meter", "vendor-class-prefix = \"meter\"\ndefault-time = 86400"),
        ("msft", "vendor-class = \"MSFT 5.0\""),
        ("tr069", "vendor-class-contains = \"dslforum.org\"\noption-43 = [{ code = 1, text = \"http://acs.example.com:7547/\" }]"),
        ("android", "vendor-class-contains = \"android\""),
        ("iptv", "user-class = \"iptv\""),
        ("voip", "user-class-prefix = \"voip\""),
        ("circuit-a", "circuit-id = \"ge-0/0/1.100\""),
        ("circuit-b", "circuit-id = \"ge-0/0/2.100\""),
        ("subscriber", "subscriber-id = \"sub-0001\""),
        ("modem", "remote-id-is-chaddr = true"),
        ("cid", "client-id = \"01aabbccddeeff\""),
        ("oui-bench", "hw-prefix = \"02:4c\"\nntp-servers = [\"10.78.0.1\"]"),
        ("oui-cisco", "hw-prefix = \"00:1b:54\""),
        ("oui-arris", "hw-prefix = \"00:1d:ce\""),
        ("relayed", "giaddr = \"10.200.0.0/16\""),
        ("known", "known = true\ndomain-name = \"bench.example\""),
    ];
    let mut head = String::new();
    for (name, body) in classes {
        head.push_str(&format!("\n[[class]]\nname = \"{name}\"\n{body}\n"));
    }
    head.push_str("\n[[shared-network]]\nname = \"bench-link\"\ndns-servers = [\"10.78.0.1\"]\n");
    // Classes and the shared network before the first subnet; the bench subnet joins the
    // network and its pool takes registered clients only.
    t = t.replacen(
        "[[subnet]]\n",
        &format!("{head}\n[[subnet]]\nshared-network = \"bench-link\"\n"),
        1,
    );
    t = t.replacen(
        &format!("range = \"{POOL_FIRST}-{POOL_LAST}\"\n"),
        &format!(
            "range = \"{POOL_FIRST}-{POOL_LAST}\"\nallow = [\"registered\"]\ndeny-unknown = true\n"
        ),
        1,
    );
    t.push_str(
        "\n[[subnet]]\ncidr = \"10.79.0.0/16\"\nshared-network = \"bench-link\"\n\n\
         [[subnet.pool]]\nrange = \"10.79.1.0-10.79.1.255\"\nallow = [\"meter\", \"pktc\"]\n",
    );
    t
}

/// The CSV the prov run imports: the loadgen's clients first, then filler.
fn write_registrations(path: &Path) -> Result<()> {
    use std::io::Write as _;
    let f = fs::File::create(path).with_context(|| format!("creating {}", path.display()))?;
    let mut w = std::io::BufWriter::new(f);
    let write = |w: &mut std::io::BufWriter<fs::File>| -> std::io::Result<()> {
        writeln!(w, "mac,group")?;
        for i in 0..PROV_REGISTRATIONS {
            let (salt, idx) = if i < PROV_LOADGEN_CLIENTS {
                (0x4c, i)
            } else {
                (0x4d, i)
            };
            let b = idx.to_be_bytes();
            writeln!(
                w,
                "02:{salt:02x}:{:02x}:{:02x}:{:02x}:{:02x},registered",
                b[0], b[1], b[2], b[3]
            )?;
        }
        w.flush()
    };
    write(&mut w).with_context(|| format!("writing {}", path.display()))
}

fn kea_config(leases: &Path) -> Value {
    json!({
        "Dhcp4": {
            "interfaces-config": { "interfaces": [SERVER_IF], "dhcp-socket-type": "raw" },
            "lease-database": {
                "type": "memfile",
                "persist": true,
                "lfc-interval": 0,
                "name": leases.to_string_lossy(),
            },
            "multi-threading": {
                "enable-multi-threading": true,
                "thread-pool-size": 2,
                "packet-queue-size": 64,
            },
            "valid-lifetime": 3600,
            "renew-timer": 1800,
            "rebind-timer": 3150,
            "authoritative": true,
            "subnet4": [{
                "id": 1,
                "subnet": SUBNET,
                "pools": [{ "pool": format!("{POOL_FIRST} - {POOL_LAST}") }],
                "option-data": [{ "name": "routers", "data": SERVER_IP }],
            }],
            // Per-lease INFO lines would measure the logger; warnings still show.
            "loggers": [{
                "name": "kea-dhcp4",
                "output_options": [{ "output": "stdout" }],
                "severity": "WARN",
            }],
        }
    })
}

/// The DHCPv6 link of the v6 systems: fd78::/64 on the server interface, an address pool
/// and a /40 prefix pool delegated as /56 (65,536 prefixes, above the sweep's clients).
const SUBNET6: &str = "fd78::/64";
const POOL6: (&str, &str) = ("fd78::1:0", "fd78::ff:ffff");
const PD_POOL6: (&str, u8, u8) = ("fd78:100::", 40, 56);

fn xdhcpd6_config(bindings: &Path) -> String {
    format!(
        r#"{}
[dhcpv6]
lease-file = "{}"
capacity = 262144

[[subnet6]]
prefix = "{SUBNET6}"
interface = "{SERVER_IF}"
preferred-time = 3600
valid-time = 7200

[[subnet6.pool]]
range = "{}-{}"

[[subnet6.pd-pool]]
prefix = "{}/{}"
delegated-length = {}
"#,
        xdhcpd_config("ack"),
        bindings.display(),
        POOL6.0,
        POOL6.1,
        PD_POOL6.0,
        PD_POOL6.1,
        PD_POOL6.2
    )
}

/// kea-dhcp6 as the v4 `kea` system runs: memfile persisted (lfc off), 2 threads, WARN logs;
/// a server id that is not persisted (nothing written outside the run's directory).
fn kea6_config(leases: &Path) -> Value {
    json!({
        "Dhcp6": {
            "interfaces-config": { "interfaces": [SERVER_IF] },
            "lease-database": {
                "type": "memfile",
                "persist": true,
                "lfc-interval": 0,
                "name": leases.to_string_lossy(),
            },
            "server-id": { "type": "LLT", "persist": false },
            "multi-threading": {
                "enable-multi-threading": true,
                "thread-pool-size": 2,
                "packet-queue-size": 64,
            },
            "preferred-lifetime": 3600,
            "valid-lifetime": 7200,
            "renew-timer": 1800,
            "rebind-timer": 2880,
            "subnet6": [{
                "id": 1,
                "subnet": SUBNET6,
                "interface": SERVER_IF,
                "pools": [{ "pool": format!("{} - {}", POOL6.0, POOL6.1) }],
                "pd-pools": [{
                    "prefix": PD_POOL6.0,
                    "prefix-len": PD_POOL6.1,
                    "delegated-len": PD_POOL6.2,
                }],
            }],
            "loggers": [{
                "name": "kea-dhcp6",
                "output_options": [{ "output": "stdout" }],
                "severity": "WARN",
            }],
        }
    })
}

/// The NATS server's port on the server namespace's loopback (`xdhcpd-xdp-nats`).
const BENCH_NATS_PORT: u16 = 14222;

/// Where `nats-server` runs for `xdhcpd-xdp-nats` (its core, and the sentence the bench's
/// output and report give). A deployment runs NATS on other machines, so the bench must not
/// charge its CPU to the server's core when there is another: with 3 or more cores it gets
/// core 2, neither the loadgen's nor the server's. On a 2-core machine there is no
/// "elsewhere": it shares the server's core (the loadgen's would starve the load instead), so
/// the closed-loop DORA/s ratio pays for nats-server's CPU and only the daemon-CPU ratio (the
/// daemon's own process at a fixed rate) is free of it.
pub(super) fn nats_placement() -> (String, String) {
    let cores = std::thread::available_parallelism().map_or(1, |n| n.get());
    if cores >= 3 {
        (
            "2".into(),
            format!(
                "nats-server runs on core 2 of {cores}, its own (server core {SERVER_CPU}, \
                 loadgen core {LOADGEN_CPU}): neither ratio pays for its CPU"
            ),
        )
    } else {
        (
            SERVER_CPU.into(),
            format!(
                "nats-server runs on the server's core {SERVER_CPU}: this machine has {cores} \
                 cores, none free for it (the loadgen has the other), so the closed-loop \
                 DORA/s ratio includes nats-server's CPU; the server-CPU-per-DORA ratio is the \
                 daemon's own process only"
            ),
        )
    }
}

fn dhcpd_config() -> String {
    format!(
        "# generated by cargo xtask bench\n\
         authoritative;\n\
         ddns-update-style none;\n\
         ping-check false;\n\
         default-lease-time 3600;\n\
         max-lease-time 86400;\n\
         subnet 10.78.0.0 netmask 255.255.0.0 {{\n  range {POOL_FIRST} {POOL_LAST};\n  option routers {SERVER_IP};\n}}\n"
    )
}

impl Ctx {
    /// Waits until the server answers a few DORAs (up to 30 s).
    fn probe(&self, sys: System, server: &mut Proc) -> Result<()> {
        let t0 = Instant::now();
        let mut last = String::new();
        while t0.elapsed() < Duration::from_secs(30) {
            check_interrupt()?;
            if !server.running() {
                bail!(
                    "{} exited during start-up; its log:\n{}",
                    sys.label(),
                    server.log_tail()
                );
            }
            let l = Load {
                scenario: "dora",
                clients: 16,
                rate: None,
                concurrency: Some(4),
                secs: None,
                count: Some(16),
                timeout_ms: 300,
                retries: 2,
            };
            match self.loadgen(sys, &l, None, None) {
                Ok((v, _)) => match Point::from_loadgen(&v, sys.phase("dora")) {
                    Ok(p) if p.acks > 0 => return Ok(()),
                    Ok(_) => last = "no ACK yet".into(),
                    Err(e) => last = format!("{e:#}"),
                },
                Err(e) => last = format!("{e:#}"),
            }
            nap(Duration::from_millis(300))?;
        }
        bail!(
            "{} did not answer within 30 s (last probe: {last}); its log:\n{}",
            sys.label(),
            server.log_tail()
        )
    }

    /// Imports the prov run's registrations through the daemon's API once its control socket
    /// is up (the probe only gets ACKs afterwards: the pool denies unknown clients).
    fn import_registrations(&self, server: &mut Proc) -> Result<()> {
        let sock = self.work.join("ctl.sock");
        let csv = self.work.join("registrations.csv");
        let t0 = Instant::now();
        while !sock.exists() {
            check_interrupt()?;
            if !server.running() || t0.elapsed() > Duration::from_secs(30) {
                bail!(
                    "no control socket {} within 30 s; the server's log:\n{}",
                    sock.display(),
                    server.log_tail()
                );
            }
            nap(Duration::from_millis(100))?;
        }
        let t1 = Instant::now();
        let out = std::process::Command::new(&self.daemon)
            .arg("ctl")
            .arg("--socket")
            .arg(&sock)
            .args(["registrations", "import"])
            .arg(&csv)
            .output()
            .context("running xdhcpd ctl registrations import")?;
        if !out.status.success() {
            bail!(
                "importing {} registrations failed: {}{}",
                PROV_REGISTRATIONS,
                String::from_utf8_lossy(&out.stdout),
                String::from_utf8_lossy(&out.stderr)
            );
        }
        eprintln!(
            "   imported {PROV_REGISTRATIONS} registrations in {:.1} s",
            t1.elapsed().as_secs_f64()
        );
        Ok(())
    }

    /// `nats-server -js` for `xdhcpd-xdp-nats`: in the server namespace (its loopback), on
    /// the core [`nats_placement`] gives, with a fresh JetStream store; waits until it is
    /// ready.
    fn start_nats(&self) -> Result<Proc> {
        let store = self.work.join("nats-js");
        let _ = fs::remove_dir_all(&store);
        let log = self.work.join("nats-server.log");
        let (core, why) = nats_placement();
        eprintln!("   {why}");
        let mut c = NetnsPair::exec(&self.ns.server_ns, "taskset");
        c.args([
            "-c",
            core.as_str(),
            "nats-server",
            "-js",
            "-a",
            "127.0.0.1",
            "-p",
        ])
        .arg(BENCH_NATS_PORT.to_string())
        .args(["-n", "xdhcpd-bench", "-sd"])
        .arg(&store);
        eprintln!("+ {}", util::display(&c));
        let mut p = Proc::spawn(c, "nats-server", &log, libc::SIGTERM)?;
        let t0 = Instant::now();
        loop {
            check_interrupt()?;
            if fs::read_to_string(&log).is_ok_and(|t| t.contains("Server is ready")) {
                return Ok(p);
            }
            if !p.running() || t0.elapsed() > Duration::from_secs(20) {
                bail!(
                    "nats-server did not become ready within 20 s; its log:\n{}",
                    p.log_tail()
                );
            }
            nap(Duration::from_millis(100))?;
        }
    }

    pub(super) fn start_server(&self, sys: System) -> Result<Proc> {
        let w = &self.work;
        let key = sys.key();
        let log = w.join(format!("{key}.log"));
        let mut c = NetnsPair::exec(&self.ns.server_ns, "taskset");
        c.args(["-c", SERVER_CPU]);
        let mut nats = None;
        let signal = match sys {
            System::Ceiling => {
                c.arg(&self.echo)
                    .args(["-i", SERVER_IF, "--server-ip", SERVER_IP, "--stats-json"])
                    .arg(w.join("ceiling-stats.json"));
                libc::SIGINT
            }
            System::Ceiling6 => {
                c.arg(&self.echo)
                    .args(["-i", SERVER_IF, "--v6", "--stats-json"])
                    .arg(w.join("ceiling6-stats.json"));
                libc::SIGINT
            }
            System::Xdp6 | System::Xdp6NoCoalesce | System::Xdp6FixedCoalesce => {
                let cfg = w.join(format!("{key}.toml"));
                let mut text = xdhcpd6_config(&w.join(format!("{key}-bindings6.db")));
                if sys == System::Xdp6NoCoalesce {
                    text = text.replacen("[server]\n", "[server]\ncommit-coalesce-us = 0\n", 1);
                }
                if sys == System::Xdp6FixedCoalesce {
                    text =
                        text.replacen("[server]\n", "[server]\ncommit-coalesce-max-us = 200\n", 1);
                }
                fs::write(&cfg, text).with_context(|| format!("writing {}", cfg.display()))?;
                c.arg(&self.daemon)
                    .arg("run")
                    .arg("-c")
                    .arg(&cfg)
                    .args([
                        "--io",
                        "xdp",
                        "--interface",
                        SERVER_IF,
                        "--stats-interval",
                        "0",
                    ])
                    .arg("--lease-file")
                    .arg(w.join(format!("{key}-leases.db")))
                    .arg("--stats-json")
                    .arg(w.join(format!("{key}-stats.json")))
                    .env("NO_COLOR", "1");
                libc::SIGINT
            }
            System::Kea6 => {
                fs::create_dir_all("/run/kea").context("creating /run/kea")?;
                let cfg = w.join("kea6.json");
                let leases = w.join("kea-leases6.csv");
                let text = serde_json::to_string_pretty(&kea6_config(&leases))?;
                fs::write(&cfg, text).with_context(|| format!("writing {}", cfg.display()))?;
                c.arg("kea-dhcp6")
                    .arg("-c")
                    .arg(&cfg)
                    .env("KEA_PIDFILE_DIR", w)
                    .env("KEA_LOCKFILE_DIR", w);
                libc::SIGTERM
            }
            System::XdpAck
            | System::XdpEvents
            | System::XdpNats
            | System::XdpRateLimit
            | System::XdpGap
            | System::XdpNoCoalesce
            | System::XdpProv
            | System::XdpInterval
            | System::Udp => {
                let commit = if sys == System::XdpInterval {
                    "interval:10"
                } else {
                    "ack"
                };
                let cfg = w.join(format!("{key}.toml"));
                let mut text = xdhcpd_config(commit);
                if let Some(l) = self.soak_lease {
                    text = text
                        .replace("default-time = 3600", &format!("default-time = {l}"))
                        .replace("min-time = 60", &format!("min-time = {l}"));
                }
                if sys == System::XdpRateLimit {
                    text.push_str(RATE_LIMIT_SECTION);
                }
                if sys == System::XdpGap {
                    text = text.replacen("[server]\n", "[server]\ncommit-min-gap-us = 1000\n", 1);
                }
                if sys == System::XdpNoCoalesce {
                    text = text.replacen("[server]\n", "[server]\ncommit-coalesce-us = 0\n", 1);
                }
                if sys == System::XdpProv {
                    text = prov_config(&text, &w.join("registrations"), &w.join("ctl.sock"));
                    write_registrations(&w.join("registrations.csv"))?;
                }
                if matches!(sys, System::XdpEvents | System::XdpNats) {
                    // The operations cost: the control socket where the scraper finds it
                    // (a `[server]` key, so before the other sections) and the event log.
                    text = text.replacen(
                        "[server]\n",
                        &format!(
                            "[server]\ncontrol-socket = \"{}\"\n",
                            w.join("ctl.sock").display()
                        ),
                        1,
                    );
                    text.push_str(&format!(
                        "\n[event-log]\ndirectory = \"{}\"\n",
                        w.join("events").display()
                    ));
                }
                if sys == System::XdpNats {
                    text.push_str(&format!(
                        "\n[event-log.nats]\nurls = [\"nats://127.0.0.1:{BENCH_NATS_PORT}\"]\n\
                         server-name = \"bench\"\n"
                    ));
                    nats = Some(self.start_nats()?);
                }
                fs::write(&cfg, text).with_context(|| format!("writing {}", cfg.display()))?;
                let io = if sys == System::Udp { "udp" } else { "xdp" };
                c.arg(&self.daemon)
                    .arg("run")
                    .arg("-c")
                    .arg(&cfg)
                    .args([
                        "--io",
                        io,
                        "--interface",
                        SERVER_IF,
                        "--stats-interval",
                        "0",
                    ])
                    .arg("--lease-file")
                    .arg(w.join(format!("{key}-leases.db")))
                    .arg("--stats-json")
                    .arg(w.join(format!("{key}-stats.json")))
                    .env("NO_COLOR", "1");
                libc::SIGINT
            }
            System::Kea => {
                // Kea writes its pid file under /run/kea unless told otherwise.
                fs::create_dir_all("/run/kea").context("creating /run/kea")?;
                let cfg = w.join("kea.json");
                let leases = w.join("kea-leases4.csv");
                let text = serde_json::to_string_pretty(&kea_config(&leases))?;
                fs::write(&cfg, text).with_context(|| format!("writing {}", cfg.display()))?;
                c.arg("kea-dhcp4")
                    .arg("-c")
                    .arg(&cfg)
                    .env("KEA_PIDFILE_DIR", w)
                    .env("KEA_LOCKFILE_DIR", w);
                libc::SIGTERM
            }
            System::Dhcpd => {
                let cfg = w.join("dhcpd.conf");
                let leases = w.join("dhcpd.leases");
                fs::write(&cfg, dhcpd_config())
                    .with_context(|| format!("writing {}", cfg.display()))?;
                // dhcpd refuses to start without an existing lease file.
                fs::write(&leases, "").with_context(|| format!("creating {}", leases.display()))?;
                c.args(["dhcpd", "-4", "-f", "-d", "-cf"])
                    .arg(&cfg)
                    .arg("-lf")
                    .arg(&leases)
                    .arg("-pf")
                    .arg(w.join("dhcpd.pid"))
                    .arg(SERVER_IF);
                libc::SIGTERM
            }
        };
        eprintln!("+ {}", util::display(&c));
        let mut p = Proc::spawn(c, sys.label(), &log, signal)?;
        if let Some(n) = nats {
            p.keep_backend(n);
        }
        if sys == System::XdpProv {
            self.import_registrations(&mut p)?;
        }
        self.probe(sys, &mut p)?;
        if matches!(sys, System::XdpEvents | System::XdpNats) {
            // Prometheus' way: one scrape a second for the whole run, each status code logged
            // (the run's `metrics-scrapes.log` shows the scrapes were answered).
            let mut s = std::process::Command::new("sh");
            s.arg("-c").arg(format!(
                "while sleep 1; do curl -s -o /dev/null -w '%{{http_code}}\\n' \
                 --unix-socket '{}' http://xdhcpd/metrics; done",
                w.join("ctl.sock").display()
            ));
            p.attach(s, &w.join("metrics-scrapes.log"))?;
        }
        Ok(p)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn systems_parse_by_key() {
        for s in System::ALL {
            assert_eq!(System::parse(s.key()).ok(), Some(s));
        }
        assert!(System::parse("bind9").is_err());
    }

    #[test]
    fn configs_name_the_bench_interface_and_pool() {
        let x = xdhcpd_config("interval:10");
        assert!(x.contains(r#"commit = "interval:10""#) && x.contains(SERVER_IF));
        let k = kea_config(Path::new("/tmp/k.csv"));
        assert_eq!(k["Dhcp4"]["multi-threading"]["thread-pool-size"], 2);
        assert_eq!(k["Dhcp4"]["interfaces-config"]["dhcp-socket-type"], "raw");
        assert!(dhcpd_config().contains("ping-check false;"));
    }

    #[test]
    fn dhcpv6_systems_serve_fd78_with_an_address_and_a_prefix_pool() {
        for s in [
            System::Ceiling6,
            System::Xdp6,
            System::Xdp6NoCoalesce,
            System::Xdp6FixedCoalesce,
            System::Kea6,
        ] {
            assert!(s.is_v6());
            assert_eq!(s.phase("dora"), "sarr");
            assert_eq!(s.phase("renew"), "renew");
        }
        assert_eq!(System::Kea.phase("dora"), "dora");
        let x = xdhcpd6_config(Path::new("/w/b6.db"));
        assert!(x.contains(r#"commit = "ack""#) && x.contains("[[subnet6.pd-pool]]"));
        assert!(x.contains("prefix = \"fd78:100::/40\"\ndelegated-length = 56"));
        let k = kea6_config(Path::new("/w/k6.csv"));
        assert_eq!(k["Dhcp6"]["lease-database"]["persist"], true);
        assert_eq!(k["Dhcp6"]["multi-threading"]["thread-pool-size"], 2);
        assert_eq!(k["Dhcp6"]["subnet6"][0]["pd-pools"][0]["delegated-len"], 56);
    }

    #[test]
    fn prov_config_has_20_classes_a_shared_network_and_registered_only_pool() {
        let t = prov_config(
            &xdhcpd_config("ack"),
            Path::new("/w/regs"),
            Path::new("/w/ctl.sock"),
        );
        assert_eq!(t.matches("[[class]]").count(), 20);
        assert_eq!(t.matches("shared-network = \"bench-link\"").count(), 2);
        assert!(t.contains("registration-file = \"/w/regs\""));
        assert!(t.contains("allow = [\"registered\"]\ndeny-unknown = true"));
        // The classes come before the first subnet (TOML array-of-tables order).
        assert!(t.find("[[class]]") < t.find("[[subnet]]"));
    }
}
