//! The `xdhcpd` command: run the server, check a configuration.

use std::path::PathBuf;
use std::process::ExitCode;
use std::time::Duration;

use clap::{Parser, Subcommand, ValueEnum};
use mimalloc::MiMalloc;
use xdhcpd::server::{self, RunOptions};
use xdhcpd_config::IoMode;

#[global_allocator]
static GLOBAL: MiMalloc = MiMalloc;

#[derive(Parser)]
#[command(
    name = "xdhcpd",
    version,
    about = "Carrier-scale DHCP server (XDP/AF_XDP data path)"
)]
struct Cli {
    #[command(subcommand)]
    cmd: Cmd,
}

#[derive(Clone, Copy, ValueEnum)]
enum IoArg {
    Auto,
    Xdp,
    Udp,
}

#[derive(Subcommand)]
enum Cmd {
    /// Run the server.
    Run {
        /// Configuration file (TOML).
        #[arg(short, long)]
        config: PathBuf,
        /// Data path: xdp (fail if XDP cannot attach), udp (kernel sockets), auto.
        #[arg(long, value_enum)]
        io: Option<IoArg>,
        /// Override `server.interface`.
        #[arg(long)]
        interface: Option<String>,
        /// Override `server.lease-file`.
        #[arg(long)]
        lease_file: Option<PathBuf>,
        /// Path of the eBPF object (default: embedded, else the xtask build output).
        #[arg(long)]
        ebpf_object: Option<PathBuf>,
        /// Seconds between stats lines (0 = only at exit).
        #[arg(long, default_value_t = 10)]
        stats_interval: u64,
        /// Write the final counters as JSON to this file at exit.
        #[arg(long)]
        stats_json: Option<PathBuf>,
        /// Stop after this many seconds (for demos and tests).
        #[arg(long)]
        run_for: Option<u64>,
        /// Accept a configuration that shrinks or removes pools although live leases fall
        /// outside them: those leases are dropped (and logged). Without it the start fails
        /// and lists them.
        #[arg(long)]
        allow_shrink: bool,
        /// Control socket path (overrides `server.control-socket`; default
        /// /run/xdhcpd-<interface>.sock).
        #[arg(long)]
        control_socket: Option<PathBuf>,
    },
    /// Talk to a running daemon through its control API (HTTP/JSON on the control socket).
    Ctl {
        #[command(flatten)]
        target: xdhcpd::api::ctl::CtlTarget,
        #[command(subcommand)]
        cmd: xdhcpd::api::ctl::CtlCmd,
    },
    /// Check a configuration file and print every error with file:line:column.
    CheckConfig { file: PathBuf },
    /// Inspect, import and export the lease table (dump, stats and lookup also beside a running
    /// daemon, read-only; import and export need it stopped).
    Leases {
        #[command(subcommand)]
        cmd: xdhcpd::leases::LeasesCmd,
    },
    /// Ask a server, as a relay agent, about an address, MAC or client id (RFC 4388).
    Leasequery(xdhcpd::lq_client::LeasequeryArgs),
}

fn main() -> ExitCode {
    tracing_subscriber::fmt()
        .with_env_filter(
            tracing_subscriber::EnvFilter::try_from_default_env()
                .unwrap_or_else(|_| tracing_subscriber::EnvFilter::new("info")),
        )
        .with_target(false)
        .init();
    let cli = Cli::parse();
    match cli.cmd {
        Cmd::Leases { cmd } => xdhcpd::leases::main_leases(cmd),
        Cmd::Leasequery(a) => xdhcpd::lq_client::main_leasequery(a),
        Cmd::Ctl { target, cmd } => xdhcpd::api::ctl::main_ctl(target, cmd),
        Cmd::CheckConfig { file } => match xdhcpd_config::load(&file) {
            Ok(cfg) => {
                let pools: u64 = cfg
                    .subnets
                    .iter()
                    .flat_map(|s| &s.pools)
                    .map(|p| p.size() as u64)
                    .sum();
                println!(
                    "{}: OK ({} subnet(s), {} pool address(es))",
                    file.display(),
                    cfg.subnets.len(),
                    pools
                );
                ExitCode::SUCCESS
            }
            Err(e) => {
                eprintln!("{e}");
                ExitCode::from(2)
            }
        },
        Cmd::Run {
            config: path,
            io,
            interface,
            lease_file,
            ebpf_object,
            stats_interval,
            stats_json,
            run_for,
            allow_shrink,
            control_socket,
        } => {
            let cfg = match xdhcpd_config::load(&path) {
                Ok(c) => c,
                Err(e) => {
                    eprintln!("{e}");
                    eprintln!("xdhcpd: refusing to start with an invalid configuration");
                    return ExitCode::from(2);
                }
            };
            let opts = RunOptions {
                io: io.map(|i| match i {
                    IoArg::Auto => IoMode::Auto,
                    IoArg::Xdp => IoMode::Xdp,
                    IoArg::Udp => IoMode::Udp,
                }),
                interface,
                lease_file,
                ebpf_object,
                stats_interval,
                stats_json,
                run_for: run_for.map(Duration::from_secs),
                allow_shrink,
                control_socket,
            };
            match server::run(cfg, opts) {
                Ok(()) => ExitCode::SUCCESS,
                Err(e) => {
                    eprintln!("xdhcpd: {e:#}");
                    ExitCode::FAILURE
                }
            }
        }
    }
}
