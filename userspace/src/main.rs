//! The `xdhcpd` command: run the server, check a configuration.
//!
//! Exit codes: 0 success; 1 runtime failure (the daemon could not start or stopped on an
//! error, a tool or `ctl` request failed); 2 usage error (bad command line, from clap) or
//! invalid configuration file.

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
    version = xdhcpd::VERSION,
    about = "Carrier-scale DHCP server (XDP/AF_XDP data path)",
    after_help = "Exit status: 0 success, 1 runtime failure, 2 usage or configuration error."
)]
struct Cli {
    /// Log format: human (colours only on a terminal) or json (one object per line).
    #[arg(long, value_enum, global = true, default_value = "human")]
    log_format: LogFormat,
    #[command(subcommand)]
    cmd: Cmd,
}

#[derive(Clone, Copy, ValueEnum)]
enum LogFormat {
    Human,
    Json,
}

/// Logs go to stderr (stdout carries the tools' output): human-readable with ANSI colours
/// only when stderr is a terminal, or JSON lines.
fn init_logs(format: LogFormat) {
    use std::io::IsTerminal;
    let filter = tracing_subscriber::EnvFilter::try_from_default_env()
        .unwrap_or_else(|_| tracing_subscriber::EnvFilter::new("info"));
    let b = tracing_subscriber::fmt()
        .with_env_filter(filter)
        .with_writer(std::io::stderr)
        .with_target(false);
    match format {
        LogFormat::Human => b.with_ansi(std::io::stderr().is_terminal()).init(),
        LogFormat::Json => b.json().with_ansi(false).init(),
    }
}

#[derive(Clone, Copy, ValueEnum)]
enum IoArg {
    Auto,
    Xdp,
    Udp,
}

#[derive(Subcommand)]
enum RegistrationsCmd {
    /// Apply the registration schema's pending migrations to the configured PostgreSQL
    /// database (as the tables' owner; the daemon does it itself with `migrate = true`).
    Migrate {
        /// Configuration file (TOML) with `[registrations.postgres]`.
        #[arg(short, long)]
        config: PathBuf,
    },
}

#[derive(Subcommand)]
enum EventsCmd {
    /// Store the lease event stream of NATS JetStream (`[event-log.nats]`) in PostgreSQL
    /// (table xdhcpd_lease_events, created if missing) through a durable consumer, each batch
    /// acknowledged after its commit; `xdhcpd ctl history --archive` asks it.
    Archive(xdhcpd::events::archive::ArchiveArgs),
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
    /// Registrations in PostgreSQL (`registrations.backend = "postgres"`).
    Registrations {
        #[command(subcommand)]
        cmd: RegistrationsCmd,
    },
    /// Lease events beyond the local log (the NATS JetStream archive in PostgreSQL).
    Events {
        #[command(subcommand)]
        cmd: EventsCmd,
    },
    /// Ask a server, as a relay agent, about an address, MAC or client id (RFC 4388).
    Leasequery(xdhcpd::lq_client::LeasequeryArgs),
    /// Write the manual pages xdhcpd(8) and xdhcpd.toml(5) into a directory.
    #[command(hide = true)]
    Man { dir: PathBuf },
}

fn main() -> ExitCode {
    let cli = Cli::parse();
    let log_format = cli.log_format;
    init_logs(log_format);
    if !matches!(cli.cmd, Cmd::Run { .. }) {
        // Tools: a closed pipe (`| head`) ends the process quietly, as for any Unix tool,
        // instead of a panic on the next print.
        // SAFETY: restoring the default disposition of SIGPIPE before any thread starts.
        unsafe {
            libc::signal(libc::SIGPIPE, libc::SIG_DFL);
        }
    }
    match cli.cmd {
        Cmd::Leases { cmd } => xdhcpd::leases::main_leases(cmd),
        Cmd::Leasequery(a) => xdhcpd::lq_client::main_leasequery(a),
        Cmd::Events {
            cmd: EventsCmd::Archive(a),
        } => xdhcpd::events::archive::main_archive(a),
        Cmd::Registrations {
            cmd: RegistrationsCmd::Migrate { config },
        } => match xdhcpd::registrations::postgres::main_migrate(&config) {
            Ok(()) => ExitCode::SUCCESS,
            Err(e) => {
                eprintln!("xdhcpd registrations migrate: {e:#}");
                ExitCode::FAILURE
            }
        },
        Cmd::Man { dir } => match write_man(&dir) {
            Ok(()) => ExitCode::SUCCESS,
            Err(e) => {
                eprintln!("xdhcpd man: {e}");
                ExitCode::FAILURE
            }
        },
        Cmd::Ctl { target, cmd } => xdhcpd::api::ctl::main_ctl(target, cmd),
        Cmd::CheckConfig { file } => match xdhcpd_config::load(&file).and_then(|cfg| {
            // `[server] user` / `group` must name accounts of this system.
            server::privilege::resolve(&cfg).map(|_| cfg)
        }) {
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
            let cfg = match xdhcpd_config::load(&path)
                .and_then(|c| server::privilege::resolve(&c).map(|_| c))
            {
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
                    match log_format {
                        // One JSON object per line on stderr, like every other line.
                        LogFormat::Json => tracing::error!("xdhcpd: {e:#}"),
                        LogFormat::Human => eprintln!("xdhcpd: {e:#}"),
                    }
                    ExitCode::FAILURE
                }
            }
        }
    }
}

/// xdhcpd(8) from the command line definition, xdhcpd.toml(5) from the configuration
/// reference.
fn write_man(dir: &std::path::Path) -> std::io::Result<()> {
    use clap::CommandFactory;
    std::fs::create_dir_all(dir)?;
    let cmd = Cli::command();
    let mut buf = Vec::new();
    clap_mangen::Man::new(cmd.clone())
        .section("8")
        .render(&mut buf)?;
    std::fs::write(dir.join("xdhcpd.8"), buf)?;
    // One page per subcommand: xdhcpd-run(8), xdhcpd-ctl(8), ...
    for sub in cmd.get_subcommands().filter(|s| !s.is_hide_set()) {
        let name: &'static str = Box::leak(format!("xdhcpd-{}", sub.get_name()).into_boxed_str());
        let mut buf = Vec::new();
        clap_mangen::Man::new(sub.clone().name(name))
            .section("8")
            .render(&mut buf)?;
        std::fs::write(dir.join(format!("{name}.8")), buf)?;
    }
    std::fs::write(dir.join("xdhcpd.toml.5"), xdhcpd::docs::config_man_page())?;
    Ok(())
}
