//! `xdhcp-loadgen`: DHCPv4 load generator (AF_XDP, AF_PACKET fallback).
//! See `xdhcp-loadgen --help`.

use std::io::Write;
use std::net::{Ipv4Addr, Ipv6Addr};
use std::path::PathBuf;
use std::process::ExitCode;
use std::time::Duration;

use clap::{Parser, ValueEnum};
use xdhcpd_io::xdp::AttachMode;
use xdhcpd_io::xsk::BindMode;
use xdhcpd_tools::loadgen::v6::{Relay6, V6Config};
use xdhcpd_tools::loadgen::{self, sys::parse_mac, Config, EngineConfig, IoMode, Scenario};

#[derive(Clone, Copy, Debug, ValueEnum)]
enum ScenarioArg {
    Dora,
    DoraRenew,
    /// DHCPv6 Solicit, Advertise, Request, Reply (implies --dhcpv6, default na).
    Sarr,
    /// DHCPv6 SARR followed by a Renew of the same client.
    SarrRenew,
    Renew,
    Release,
    InitReboot,
    /// Bind every client asking for an RFC 6704 reconfigure key (option 145), then
    /// listen: a verified FORCERENEW makes a client renew, and after NAK start over
    /// (DISCOVER); ends after --duration, or once --count clients are reconfigured.
    Forcerenew,
}

#[derive(Clone, Copy, Debug, ValueEnum)]
enum IaArg {
    /// IA_NA (an address).
    Na,
    /// IA_PD (a delegated prefix).
    Pd,
    /// IA_NA and IA_PD in every message.
    Both,
}

#[derive(Clone, Copy, Debug, ValueEnum)]
enum IoArg {
    Auto,
    Xdp,
    Packet,
}

#[derive(Clone, Copy, Debug, ValueEnum)]
enum AttachArg {
    Auto,
    Driver,
    Skb,
}

#[derive(Clone, Copy, Debug, ValueEnum)]
enum BindArg {
    Auto,
    Copy,
    ZeroCopy,
}

/// DHCPv4 client simulator for load tests against any DHCP server.
///
/// Examples:
///   xdhcp-loadgen -i veth0 --scenario dora --clients 100000 --concurrency 512 --duration 10s
///   xdhcp-loadgen -i veth0 --scenario renew --rate 50000 --duration 10s --json out.json
///   xdhcp-loadgen -i veth0 --relay 10.1.0.1 --server 10.0.0.1 --count 10000
///   xdhcp-loadgen -i veth0 --self-test --duration 3s
///   xdhcp-loadgen -i veth0 --scenario forcerenew --clients 10000 --count 10000 --duration 120s
///                 --pool 10.77.128.0/18 --pool 10.77.192.0/18 --ready-file /run/lg.ready
///   xdhcp-loadgen -i veth0 --scenario sarr --dhcpv6 both --concurrency 256 --duration 10s
///   xdhcp-loadgen -i veth0 --scenario renew --dhcpv6 pd --relay6 fd77::2 --link-address fd77::
///                 --server6 fd77::1 --server-mac 02:00:00:00:00:01 --count 10000
#[derive(Parser, Debug)]
#[command(name = "xdhcp-loadgen", version, verbatim_doc_comment)]
struct Args {
    /// Interface facing the DHCP server.
    #[arg(short, long)]
    interface: String,
    #[arg(long, value_enum, default_value = "dora")]
    scenario: ScenarioArg,
    /// Number of simulated clients (distinct MACs and client-ids).
    #[arg(long, default_value_t = 10_000)]
    clients: u32,
    /// Open-loop target: exchanges started per second (e.g. 50000 or 50000/s).
    #[arg(long, value_parser = parse_rate)]
    rate: Option<u64>,
    /// Closed loop: outstanding exchanges at most (default 256 without --rate).
    #[arg(long)]
    concurrency: Option<u32>,
    /// How long the measured phase runs (e.g. 10s, 500ms, 2m).
    #[arg(long, value_parser = parse_duration)]
    duration: Option<Duration>,
    /// Exchanges to start in the measured phase.
    #[arg(long)]
    count: Option<u64>,
    /// Time to wait for each reply.
    #[arg(long, default_value_t = 1000)]
    timeout_ms: u64,
    /// Retransmissions before an exchange counts as dropped.
    #[arg(long, default_value_t = 0)]
    retries: u8,
    /// Relay mode: giaddr to put in requests (sent unicast from port 67 to --server).
    #[arg(long)]
    relay: Option<Ipv4Addr>,
    /// Relay mode: an RFC 6925 relay-id (option 82 sub-option 12, up to 16 bytes) in every
    /// relayed request.
    #[arg(long, requires = "relay")]
    relay_id: Option<String>,
    /// Server address (required with --relay).
    #[arg(long)]
    server: Option<Ipv4Addr>,
    /// DHCPv6 instead of DHCPv4: which IAs every client asks for (with --scenario sarr,
    /// sarr-renew, renew; dora means sarr).
    #[arg(long, value_enum)]
    dhcpv6: Option<IaArg>,
    /// DHCPv6 relay mode: the relay's address (an address of the interface); every client
    /// message goes in a Relay-Forward with interface-id and remote-id to --server6.
    #[arg(long, requires_all = ["link_address", "server6", "server_mac"])]
    relay6: Option<Ipv6Addr>,
    /// DHCPv6 relay mode: the link-address of the Relay-Forward (selects the server's link).
    #[arg(long)]
    link_address: Option<Ipv6Addr>,
    /// DHCPv6 relay mode: the server's address.
    #[arg(long)]
    server6: Option<Ipv6Addr>,
    /// Server MAC (else resolved by ARP; required with --relay6).
    #[arg(long, value_parser = parse_mac)]
    server_mac: Option<[u8; 6]>,
    /// Threads: one per RX queue of the interface.
    #[arg(long, default_value_t = 1)]
    queues: u32,
    /// CPUs to pin the threads to, e.g. 0 or 0,1.
    #[arg(long, value_delimiter = ',')]
    cpus: Vec<usize>,
    #[arg(long, value_enum, default_value = "auto")]
    io: IoArg,
    /// XDP attach mode (AF_XDP only).
    #[arg(long, value_enum, default_value = "auto")]
    xdp_mode: AttachArg,
    /// AF_XDP bind mode.
    #[arg(long, value_enum, default_value = "auto")]
    bind: BindArg,
    /// XDP object (default: embedded, or target/bpfel-unknown-none/release/xdhcpd-ebpf).
    #[arg(long)]
    ebpf_object: Option<PathBuf>,
    /// Do not send a client identifier option (61).
    #[arg(long)]
    no_client_id: bool,
    /// Set the BROADCAST flag so servers broadcast their replies.
    #[arg(long)]
    broadcast_flag: bool,
    /// Second byte of the simulated MACs (02:SALT:..): differ it to run several loadgens.
    #[arg(long, default_value_t = 0x4c)]
    mac_salt: u8,
    /// Measure the sender alone: DISCOVERs as fast as possible, replies ignored.
    #[arg(long)]
    self_test: bool,
    /// Write the JSON report to this file ("-" for stdout).
    #[arg(long)]
    json: Option<PathBuf>,
    /// No progress lines.
    #[arg(long)]
    quiet: bool,
    /// Append one line per ACK received to FILE: unix-ms time, client key (hex
    /// client-id, or MAC with --no-client-id), address, lease seconds;
    /// written once per receive batch.
    #[arg(long, value_name = "FILE")]
    acked_log: Option<PathBuf>,
    /// Report how many clients end holding an address in this range (CIDR, e.g.
    /// 10.77.128.0/18); repeat or separate with commas.
    #[arg(long, value_delimiter = ',', value_parser = parse_cidr)]
    pool: Vec<(Ipv4Addr, u8)>,
    /// Write FILE once every client's warm-up is over (forcerenew: now trigger the server).
    #[arg(long, value_name = "FILE")]
    ready_file: Option<PathBuf>,
}

fn parse_cidr(s: &str) -> Result<(Ipv4Addr, u8), String> {
    let bad = || format!("{s:?} is not an IPv4 range like 10.77.128.0/18");
    let (a, l) = s.split_once('/').ok_or_else(bad)?;
    let addr: Ipv4Addr = a.parse().map_err(|_| bad())?;
    let len: u8 = l.parse().map_err(|_| bad())?;
    if len > 32 {
        return Err(bad());
    }
    Ok((addr, len))
}

fn parse_rate(s: &str) -> Result<u64, String> {
    let t = s.trim_end_matches("/s");
    let (num, mult) = match t.strip_suffix(['k', 'K']) {
        Some(n) => (n, 1_000),
        None => match t.strip_suffix(['m', 'M']) {
            Some(n) => (n, 1_000_000),
            None => (t, 1),
        },
    };
    num.parse::<u64>()
        .ok()
        .and_then(|n| n.checked_mul(mult))
        .filter(|n| *n > 0)
        .ok_or_else(|| format!("rate {s:?} must be a positive number, e.g. 50000, 50k or 50000/s"))
}

fn parse_duration(s: &str) -> Result<Duration, String> {
    let bad = || format!("duration {s:?} must look like 10s, 500ms or 2m");
    let (num, unit) = s
        .find(|c: char| !c.is_ascii_digit() && c != '.')
        .map_or((s, "s"), |i| s.split_at(i));
    let v: f64 = num.parse().map_err(|_| bad())?;
    let secs = match unit {
        "ms" => v / 1000.0,
        "s" => v,
        "m" => v * 60.0,
        _ => return Err(bad()),
    };
    if !(secs > 0.0 && secs < 1e7) {
        return Err(bad());
    }
    Ok(Duration::from_secs_f64(secs))
}

fn main() -> ExitCode {
    let a = Args::parse();
    let scenario = match a.scenario {
        ScenarioArg::Dora | ScenarioArg::Sarr => Scenario::Dora,
        ScenarioArg::DoraRenew | ScenarioArg::SarrRenew => Scenario::DoraRenew,
        ScenarioArg::Renew => Scenario::Renew,
        ScenarioArg::Release => Scenario::Release,
        ScenarioArg::InitReboot => Scenario::InitReboot,
        ScenarioArg::Forcerenew => Scenario::ForceRenew,
    };
    let relay_id = match a.relay_id.as_deref() {
        None => xdhcpd_tools::loadgen::request::RelayId::default(),
        Some(s) => match xdhcpd_tools::loadgen::request::RelayId::new(s.as_bytes()) {
            Some(id) => id,
            None => {
                eprintln!(
                    "xdhcp-loadgen: --relay-id {s:?}: 1 to {} bytes",
                    xdhcpd_tools::loadgen::request::RelayId::MAX
                );
                return ExitCode::from(2);
            }
        },
    };
    let implied =
        matches!(a.scenario, ScenarioArg::Sarr | ScenarioArg::SarrRenew) || a.relay6.is_some();
    let ia = a.dhcpv6.or(implied.then_some(IaArg::Na));
    let v6 = ia.map(|ia| V6Config {
        ia_na: matches!(ia, IaArg::Na | IaArg::Both),
        ia_pd: matches!(ia, IaArg::Pd | IaArg::Both),
        relay: match (a.relay6, a.link_address, a.server6, a.server_mac) {
            (Some(relay_addr), Some(link_addr), Some(server), Some(server_mac)) => Some(Relay6 {
                relay_addr,
                link_addr,
                server,
                server_mac,
            }),
            _ => None,
        },
    });
    let cfg = Config {
        ifname: a.interface.clone(),
        io: match a.io {
            IoArg::Auto => IoMode::Auto,
            IoArg::Xdp => IoMode::Xdp,
            IoArg::Packet => IoMode::Packet,
        },
        attach: match a.xdp_mode {
            AttachArg::Auto => AttachMode::Auto,
            AttachArg::Driver => AttachMode::Driver,
            AttachArg::Skb => AttachMode::Skb,
        },
        bind: match a.bind {
            BindArg::Auto => BindMode::Auto,
            BindArg::Copy => BindMode::Copy,
            BindArg::ZeroCopy => BindMode::ZeroCopy,
        },
        queues: a.queues,
        cpus: a.cpus.clone(),
        ebpf_object: a.ebpf_object.clone(),
        server: a.server,
        server_mac: a.server_mac,
        progress: !a.quiet,
        acked_log: a.acked_log.clone(),
        ready_file: a.ready_file.clone(),
        engine: EngineConfig {
            scenario,
            clients: a.clients,
            threads: a.queues,
            rate: a.rate,
            concurrency: a.concurrency,
            duration_ns: a.duration.map(|d| d.as_nanos() as u64),
            count: a.count,
            timeout_ns: a.timeout_ms.max(1) * 1_000_000,
            retries: a.retries,
            relay: a.relay,
            relay_id,
            client_id: !a.no_client_id,
            broadcast: a.broadcast_flag,
            mac_salt: a.mac_salt,
            self_test: a.self_test,
            v6,
            pools: a.pool.clone(),
        },
    };
    loadgen::install_signal_handlers();
    let report = match loadgen::run(&cfg) {
        Ok(r) => r,
        Err(e) => {
            eprintln!("xdhcp-loadgen: {e:#}");
            return ExitCode::from(2);
        }
    };
    let to_stdout = a.json.as_deref().is_some_and(|p| p.as_os_str() == "-");
    let table = report.table();
    if to_stdout {
        eprint!("{table}");
    } else {
        print!("{table}");
    }
    if let Some(path) = &a.json {
        let json = match serde_json::to_string_pretty(&report) {
            Ok(j) => j,
            Err(e) => {
                eprintln!("xdhcp-loadgen: encoding the JSON report: {e}");
                return ExitCode::from(2);
            }
        };
        let res = if to_stdout {
            writeln!(std::io::stdout(), "{json}")
        } else {
            std::fs::write(path, json + "\n")
        };
        if let Err(e) = res {
            eprintln!(
                "xdhcp-loadgen: writing the JSON report to {}: {e}",
                path.display()
            );
            return ExitCode::from(2);
        }
    }
    ExitCode::SUCCESS
}
