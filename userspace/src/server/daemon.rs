//! Start-up, threads and shutdown of the daemon.

use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::thread::JoinHandle;
use std::time::{Duration, Instant};

use anyhow::{bail, Context};
use lease_store::{default_wal_bytes, LeaseTable, OpenOptions, PoolSpec, StoreError};

use xdhcpd_common::DHCPV4_SERVER_PORT;
use xdhcpd_failover::PolicyCell;

use super::commit::{self, Committer};
use super::iface::Interface;
use super::packet_io::udp::UdpDriver;
use super::packet_io::xsk::{FrameResponder, XskDriver};
use super::packet_io::PacketIo;
use super::reload::{EngineCell, Overrides, Reloader};
use super::v6::{self as v6srv, V6Server};
use super::worker::{run_worker, WorkerCounters, WorkerOps};
use crate::alarms::Alarms;
use crate::api::{ApiServer, ApiState, Listen};
use crate::clock::unix_now;
use crate::control::default_socket;
use crate::events::EventLog;
use crate::failover::{Failover, FailoverTap};
use xdhcpd_config::{CommitMode, Config, IoMode, QueueSel, XdpModeCfg};
use xdhcpd_dhcpv4::{Engine, EngineShared, EngineStats, StatsSnapshot};
use xdhcpd_io::udp::UdpIo;
use xdhcpd_io::xdp::{AttachMode, XdpSteering};
use xdhcpd_io::xsk::{XskConfig, XskSocket};

/// Command-line overrides of the configuration and reporting options.
#[derive(Clone, Debug, Default)]
pub struct RunOptions {
    pub io: Option<IoMode>,
    pub interface: Option<String>,
    pub lease_file: Option<PathBuf>,
    pub ebpf_object: Option<PathBuf>,
    /// Seconds between stats lines (0 = only at exit).
    pub stats_interval: u64,
    /// Write the final counters as JSON here at exit.
    pub stats_json: Option<PathBuf>,
    /// Stop after this long (tests, demos); None = until SIGINT/SIGTERM.
    pub run_for: Option<Duration>,
    /// Let a configuration that shrinks or removes pools drop the live leases outside the
    /// new pools (they are logged). Without it such a start fails and lists them.
    pub allow_shrink: bool,
    /// Override `server.control-socket` (default `/run/xdhcpd-<interface>.sock`).
    pub control_socket: Option<PathBuf>,
}

static STOP: AtomicBool = AtomicBool::new(false);
/// SIGHUP: reload the configuration (never stops the daemon).
static RELOAD: AtomicBool = AtomicBool::new(false);

extern "C" fn on_signal(_: libc::c_int) {
    // Only an atomic store: async-signal-safe.
    STOP.store(true, Ordering::SeqCst);
}

extern "C" fn on_hangup(_: libc::c_int) {
    // Only an atomic store: async-signal-safe.
    RELOAD.store(true, Ordering::SeqCst);
}

fn install_signal_handlers() {
    // SAFETY: the handlers only store to an atomic.
    unsafe {
        libc::signal(libc::SIGINT, on_signal as *const () as libc::sighandler_t);
        libc::signal(libc::SIGTERM, on_signal as *const () as libc::sighandler_t);
        libc::signal(libc::SIGHUP, on_hangup as *const () as libc::sighandler_t);
    }
}

/// The chosen data path.
enum DataPath {
    Xdp {
        steering: Box<XdpSteering>,
        sockets: Vec<XskSocket>,
    },
    Udp(UdpIo),
}

fn attach_mode(m: XdpModeCfg) -> AttachMode {
    match m {
        XdpModeCfg::Auto => AttachMode::Auto,
        XdpModeCfg::Driver => AttachMode::Driver,
        XdpModeCfg::Skb => AttachMode::Skb,
    }
}

fn open_xdp(
    cfg: &Config,
    iface: &Interface,
    object: Option<&std::path::Path>,
) -> anyhow::Result<DataPath> {
    let queues = match cfg.server.queues {
        QueueSel::All => iface.rx_queues,
        QueueSel::First(n) => n.min(iface.rx_queues),
    };
    // With failover, only the configured partners may reach the failover port(s).
    let (flags, failover_port) = match failover_guard_port(cfg)? {
        Some(port) => (
            xdhcpd_common::CFG_DHCPV4 | xdhcpd_common::CFG_GUARD_FAILOVER,
            port,
        ),
        None => (xdhcpd_common::CFG_DHCPV4, 0),
    };
    // DHCPv6 (UDP 547) is steered only when [[subnet6]] is configured.
    let flags = if cfg.v6.subnets.is_empty() {
        flags
    } else {
        flags | xdhcpd_common::CFG_DHCPV6
    };
    let xcfg = xdhcpd_common::XdpConfig {
        flags,
        failover_port,
        standby_max_secs: 0,
    };
    // The map of known MACs is sized at load; only with the unknown-client drop asked for.
    let known_macs = cfg
        .limits
        .xdp_drop_unknown
        .then_some(cfg.limits.xdp_known_macs);
    let mut steering = XdpSteering::attach_sized(
        &iface.name,
        attach_mode(cfg.server.xdp_mode),
        object,
        xcfg,
        known_macs,
    )
    .with_context(|| format!("attaching XDP to {}", iface.name))?;
    if !cfg.failovers.is_empty() {
        let peers: Vec<_> = cfg.failovers.iter().map(|f| f.peer_address).collect();
        steering
            .set_partners(&peers)
            .with_context(|| format!("allowing failover peers {peers:?} in XDP"))?;
    }
    let rl = cfg.rate_limit;
    if rl.any() {
        let (client_interval_ns, client_tau_ns) =
            xdhcpd_common::RateLimitConfig::gcra(rl.client_rate, rl.client_burst);
        let (relay_interval_ns, relay_tau_ns) =
            xdhcpd_common::RateLimitConfig::gcra(rl.relay_rate, rl.relay_burst);
        let (circuit_interval_ns, circuit_tau_ns) =
            xdhcpd_common::RateLimitConfig::gcra(rl.circuit_rate, rl.circuit_burst);
        steering
            .set_rate_limits(xdhcpd_common::RateLimitConfig {
                client_interval_ns,
                client_tau_ns,
                relay_interval_ns,
                relay_tau_ns,
                circuit_interval_ns,
                circuit_tau_ns,
            })
            .context("writing the rate limits into the XDP program")?;
        tracing::info!(
            "rate limits in XDP: per client {}/s (burst {}), per relay {}/s (burst {}), per \
             circuit {}/s (burst {}); 0 = off",
            rl.client_rate,
            rl.client_burst,
            rl.relay_rate,
            rl.relay_burst,
            rl.circuit_rate,
            rl.circuit_burst
        );
    }
    let mut sockets = Vec::new();
    for q in 0..queues {
        let mut xc = XskConfig::new(iface.name.clone(), q);
        xc.tx_frames = 0;
        let s = XskSocket::open(&xc)
            .with_context(|| format!("AF_XDP socket on {} queue {q}", iface.name))?;
        steering
            .register_socket(q, s.fd())
            .with_context(|| format!("registering AF_XDP socket of queue {q}"))?;
        tracing::info!("queue {q}: AF_XDP socket bound ({:?} mode)", s.bound_mode());
        sockets.push(s);
    }
    tracing::info!(
        "XDP attached to {} in {} mode, {queues} queue(s)",
        iface.name,
        steering.mode()
    );
    Ok(DataPath::Xdp {
        steering: Box::new(steering),
        sockets,
    })
}

/// The TCP port the data path's failover guard covers: every relationship's local port (one
/// port for all; N:1 relationships tell themselves apart by local address). None: no failover.
fn failover_guard_port(cfg: &Config) -> anyhow::Result<Option<u16>> {
    let Some(first) = cfg.failovers.first() else {
        return Ok(None);
    };
    if let Some(f) = cfg.failovers.iter().find(|f| f.port != first.port) {
        anyhow::bail!(
            "[[failover]] {:?} listens on port {} and {:?} on {}: the failover guard (XDP or \
             nftables) covers one port, so every relationship must use the same `port` (give \
             each its own `address` instead)",
            first.name,
            first.port,
            f.name,
            f.port
        );
    }
    Ok(Some(first.port))
}

/// Opens the data path the configuration asks for (`auto`: XDP, else kernel UDP).
fn open_data_path(
    cfg: &Config,
    iface: &Interface,
    object: Option<&Path>,
) -> anyhow::Result<DataPath> {
    let udp = || {
        if cfg.rate_limit.any() {
            tracing::warn!(
                "[rate-limit] is enforced by the XDP program only: kernel UDP mode serves \
                 without it"
            );
        }
        UdpIo::open(&iface.name, DHCPV4_SERVER_PORT)
            .map(DataPath::Udp)
            .context("opening the UDP fallback socket")
    };
    match cfg.server.io {
        IoMode::Udp => udp(),
        IoMode::Xdp => open_xdp(cfg, iface, object),
        IoMode::Auto => open_xdp(cfg, iface, object).or_else(|e| {
            tracing::warn!("XDP unavailable, falling back to kernel UDP sockets: {e:#}");
            udp()
        }),
    }
}

/// Opens (or creates) the lease file for the configured pools, logging what it found.
fn open_lease_table(cfg: &Config, shards: usize, allow_shrink: bool) -> anyhow::Result<LeaseTable> {
    let pools: Vec<PoolSpec> = cfg
        .pool_specs()
        .into_iter()
        .map(|(id, first, last)| PoolSpec { id, first, last })
        .collect();
    let started = Instant::now();
    let open_opts = OpenOptions {
        shards,
        now: unix_now(),
        allow_shrink,
        // Ack mode commits through the write-ahead log (group commit = one small sequential
        // append and fdatasync; the table is checkpointed in the background).
        wal: (cfg.server.commit == CommitMode::Ack)
            .then(|| default_wal_bytes(pools.iter().map(|p| p.len()).sum())),
        // Room for pools and grown ranges a reload adds (`LeaseTable::grow`).
        spare: cfg.lease_spare_addresses(),
        ..OpenOptions::default()
    };
    let (table, report) = match LeaseTable::open(&cfg.server.lease_file, &pools, &open_opts) {
        Ok(v) => v,
        Err(e @ StoreError::Shrink { .. }) => bail!(
            "opening lease file {}: {e} (to drop those leases, start once with --allow-shrink)",
            cfg.server.lease_file.display()
        ),
        Err(e) => {
            return Err(anyhow::Error::new(e).context(format!(
                "opening lease file {}",
                cfg.server.lease_file.display()
            )))
        }
    };
    for (addr, why) in &report.quarantined {
        tracing::warn!("lease record for {addr} quarantined: {why}");
    }
    for (addr, why) in &report.repaired {
        tracing::warn!("lease record for {addr} found mid-write, kept: {why}");
    }
    if let Some(what) = &report.rebuilt {
        tracing::info!("lease file rebuilt for the new pools: {what}");
    }
    for l in &report.dropped_by_shrink {
        tracing::warn!(
            "--allow-shrink: dropped the {} lease of {} for {} (expiry {}): no longer in a pool",
            l.state,
            l.addr,
            l.client,
            l.expiry
        );
    }
    tracing::info!(
        "lease file {}: {} records ({}), opened in {:?}",
        cfg.server.lease_file.display(),
        report.records,
        if report.created {
            "created"
        } else {
            "existing"
        },
        started.elapsed()
    );
    Ok(table)
}

/// What every worker shares.
struct WorkerShared {
    ops: WorkerOps,
    committer: Option<Arc<Committer>>,
    stop: Arc<AtomicBool>,
    tap: Option<FailoverTap>,
}

/// The worker threads and what the reporter reads of them.
#[derive(Default)]
struct Workers {
    threads: Vec<JoinHandle<()>>,
    stats: Vec<Arc<EngineStats>>,
    counters: Vec<Arc<WorkerCounters>>,
}

impl Workers {
    /// Starts the worker of shard `shard` on its driver.
    fn spawn<P: PacketIo + Send + 'static>(
        &mut self,
        name: String,
        shard: usize,
        io: P,
        shared: &WorkerShared,
    ) -> std::io::Result<()> {
        let st = Arc::new(EngineStats::default());
        let wc = Arc::new(WorkerCounters::default());
        self.stats.push(st.clone());
        self.counters.push(wc.clone());
        let engine = Engine::new(shared.ops.config.load(), shard, st);
        let (committer, stop, tap, ops) = (
            shared.committer.clone(),
            shared.stop.clone(),
            shared.tap.clone(),
            shared.ops.clone(),
        );
        self.threads
            .push(std::thread::Builder::new().name(name).spawn(move || {
                super::sched::packet();
                run_worker(io, engine, committer, stop, wc, tap, ops)
            })?);
        Ok(())
    }
}

/// A started daemon: every thread running, the main thread free to report.
pub struct Daemon {
    opts: RunOptions,
    table: Arc<LeaseTable>,
    /// The failover relationships (none, one, or the N:1 server's several).
    failover: Vec<Failover>,
    /// The control API (HTTP/JSON on the control socket, optional TCP, `/metrics`).
    api: Option<ApiServer>,
    reloader: Reloader,
    events: Option<EventLog>,
    alarms: Alarms,
    steering: Option<Box<XdpSteering>>,
    /// `--io udp` with failover: the nftables twin of the XDP failover guard.
    nft_guard: Option<super::nft_guard::NftGuard>,
    workers: Workers,
    /// Stops the workers, then the background threads.
    stop: Arc<AtomicBool>,
    committer: Option<(Arc<Committer>, JoinHandle<()>)>,
    /// Stops the committer, after the workers.
    commit_stop: Arc<AtomicBool>,
    background: Vec<JoinHandle<()>>,
    started: Instant,
    /// The DHCPv6 server (None without [[subnet6]]).
    v6: Option<Arc<V6Server>>,
    /// XDP mode: the socket joined to ff02::1:2 (keeps the NIC's multicast filter open).
    _v6_join: Option<std::net::UdpSocket>,
    /// `registrations.backend = "postgres"`: the follower (stopped when dropped).
    registrations_pg: Option<crate::registrations::postgres::Follower>,
    /// The reconfigure driver (FORCERENEW); None without `[reconfigure]`.
    reconf: Option<super::reconfigure::ReconfDriver>,
    /// Its book (`<lease file>.reconf`), written back at shutdown.
    reconf_book: Option<Arc<xdhcpd_dhcpv4::engine::reconfigure::ReconfBook>>,
    /// RFC 6926 bulk leasequery over TCP; None without `[bulk-leasequery]`.
    bulk_lq: Option<super::bulk_lq::BulkLq>,
    /// The relay health check's table (`relay-health-check`); None: off.
    rhc: Option<Arc<xdhcpd_failover::RelayHealth>>,
}

/// The failover crate's relay health settings from the configuration's.
pub fn rhc_config(r: &xdhcpd_config::RelayHealthConfig) -> xdhcpd_failover::RhcConfig {
    xdhcpd_failover::RhcConfig {
        enabled: r.enabled,
        unresponsive_time: r.unresponsive_time,
        request_count: r.request_count,
        elapsed_time: r.elapsed_time,
        response_time: r.response_time,
        restart_time: r.restart_time,
        warning_interval: r.warning_interval,
        max_relays: r.max_relays,
    }
}

/// Runs the daemon until a signal (or `run_for`) stops it.
pub fn run(cfg: Config, opts: RunOptions) -> anyhow::Result<()> {
    let mut daemon = Daemon::start(cfg, opts)?;
    daemon.serve();
    daemon.shutdown()
}

impl Daemon {
    /// Opens the data path and the lease file, starts failover, the control
    /// socket, the workers and the background threads.
    pub fn start(mut cfg: Config, opts: RunOptions) -> anyhow::Result<Self> {
        if let Some(i) = &opts.interface {
            cfg.server.interface = i.clone();
        }
        if let Some(l) = &opts.lease_file {
            cfg.server.lease_file = l.clone();
        }
        if let Some(io) = opts.io {
            cfg.server.io = io;
        }
        // Before any thread starts: packet threads ask for a short slice, maintenance
        // threads run niced (`sched.rs`).
        super::sched::ThreadPolicy {
            worker_slice: cfg.server.worker_slice,
            background_nice: cfg.server.background_nice,
        }
        .install();
        let cfg = Arc::new(cfg);
        let iface = Interface::lookup(&cfg.server.interface)?;
        let server_id = match (cfg.server.server_id, iface.ipv4) {
            (Some(s), _) => s,
            (None, Some(a)) => a,
            (None, None) => bail!(
                "interface {} has no IPv4 address and `server.server-id` is not set in {}",
                iface.name,
                cfg.source.display()
            ),
        };
        let local_addr = iface.ipv4.unwrap_or(server_id);
        // `[server] user`: looked up first (an unknown name stops the start before anything
        // is attached); the directories start-up may create are noted now, so that only
        // those are handed to the user.
        let identity = super::privilege::resolve(&cfg).map_err(anyhow::Error::new)?;
        let control_path = opts
            .control_socket
            .clone()
            .or(cfg.server.control_socket.clone())
            .unwrap_or_else(|| default_socket(&iface.name));
        let mut handover = super::privilege::Handover::default();
        if identity.is_some() {
            handover.note_absent(state_dirs(&cfg, &control_path));
        }

        // Data path first: its queue count decides the number of shards.
        let object = opts.ebpf_object.clone().or(cfg.server.ebpf_object.clone());
        let mut path = open_data_path(&cfg, &iface, object.as_deref())?;
        let shards = match &path {
            DataPath::Xdp { sockets, .. } => sockets.len(),
            DataPath::Udp(_) => 1,
        };
        let table = Arc::new(open_lease_table(&cfg, shards, opts.allow_shrink)?);
        // Lease caps: counted from the table before anything else (failover driver, workers,
        // sweeper) writes it; every later change reaches the counts through the table's hook.
        let caps = cfg.limits.caps_on().then(|| {
            let caps = Arc::new(xdhcpd_dhcpv4::caps::LeaseCaps::new(&cfg));
            caps.attach(&table);
            tracing::info!(
                "lease caps: {} per circuit, {} per remote-id (0 = off); {} circuits / remote-ids hold addresses",
                cfg.limits.max_leases_per_circuit,
                cfg.limits.max_leases_per_remote_id,
                caps.keys()
            );
            caps
        });
        // The reconfigure keys' secret (FORCERENEW and DHCPv6 Reconfigure derive theirs
        // from it): configured, or generated once beside the lease file.
        let reconf_secret = match &cfg.reconfigure {
            Some(r) => Some(match r.secret.clone() {
                Some(s) => s,
                None => super::reconfigure::load_or_create_secret(&cfg.server.lease_file)?,
            }),
            None => None,
        };
        // The reconfigure book (xid and relay of each binding's last ACK, in a side file
        // beside the lease table so a campaign after a restart reaches relayed clients; the
        // count of flagged records through the table's hook): before the failover driver,
        // whose partner updates may set flags.
        let reconf_book = match &reconf_secret {
            Some(_) => {
                let b = Arc::new(open_reconf_book(&cfg.server.lease_file, &table));
                b.attach(&table);
                Some(b)
            }
            None => None,
        };
        // Reconfiguration (FORCERENEW): a restart stops it unless deferred-nak keeps the flags
        // (before the failover driver starts: the cleared records are among those the partner
        // lacks, sent when it connects).
        let cleared = xdhcpd_dhcpv4::engine::reconfigure::Reconfigurer::clear_at_start(
            &table,
            cfg.reconfigure.as_ref(),
        );
        if cleared > 0 {
            tracing::info!("reconfigure: {cleared} binding(s) no longer reconfiguring (restart)");
        }
        let v6 = V6Server::open(&cfg, &iface, reconf_secret.as_deref())?;
        let v6_sock = match &v6 {
            Some(_) => Some(v6srv::open_socket(&iface)?),
            None => None,
        };
        let events = match &cfg.event_log {
            Some(ec) => {
                let nets: Vec<_> = cfg.subnets.iter().map(|s| s.net).collect();
                // NATS events name the server's first relationship (N:1: see RESULTS).
                let rel = cfg
                    .failovers
                    .first()
                    .map(|f| crate::events::nats::Relationship {
                        name: f.name.clone(),
                        role: match f.role {
                            xdhcpd_config::FailoverRole::Primary => "primary",
                            xdhcpd_config::FailoverRole::Secondary => "secondary",
                        }
                        .to_string(),
                    });
                Some(EventLog::start(ec, table.clone(), server_id, &nets, rel)?)
            }
            None => None,
        };
        let failover = Failover::start_all(
            &cfg.failovers,
            table.clone(),
            events.as_ref().map(|e| e.tap()),
            cfg.reconfigure.as_ref().is_some_and(|r| r.deferred_nak),
        )?;
        let mut engine = EngineShared::new(cfg.clone(), table.clone(), server_id);
        if !failover.is_empty() {
            engine = engine.with_failovers(failover.iter().map(|f| f.policy_cell()).collect());
        }
        if let Some(c) = &caps {
            engine = engine.with_lease_caps(c.clone());
        }
        // The relay health check: one fixed table for every worker, kept across reloads.
        let rhc = cfg
            .failovers
            .first()
            .filter(|f| f.relay_health.enabled)
            .map(|f| {
                let r = &f.relay_health;
                tracing::info!(
                    "relay health check on: a relay whose DISCOVERs for the partner get no \
                     REQUEST naming it for {} s ({} DISCOVERs) is answered for {} s from secs {} \
                     on (restart {} s, {} relays)",
                    r.unresponsive_time,
                    r.request_count,
                    r.response_time,
                    r.elapsed_time,
                    r.restart_time,
                    r.max_relays
                );
                Arc::new(xdhcpd_failover::RelayHealth::new(rhc_config(r)))
            });
        if let Some(r) = &rhc {
            engine = engine.with_relay_health(r.clone());
        }
        let registrations = match &cfg.server.registration_file {
            Some(p) => Some(crate::registrations::open(p)?),
            None => None,
        };
        if let Some(r) = &registrations {
            let index = match r.lock() {
                Ok(s) => s.index().clone(),
                Err(p) => p.into_inner().index().clone(),
            };
            engine = engine.with_registrations(Arc::new(crate::registrations::IndexView(index)));
        }
        // The unknown-client drop in XDP: the map filled (and the index watched) before the
        // PostgreSQL follower or the API can change registrations.
        let known_macs = match (&mut path, cfg.limits.xdp_drop_unknown) {
            (_, false) => None,
            (DataPath::Udp(_), true) => {
                tracing::warn!(
                    "[limits] xdp-drop-unknown needs XDP mode: kernel UDP mode drops nothing \
                     early (the engine still refuses unknown clients)"
                );
                None
            }
            (DataPath::Xdp { steering, .. }, true) => match steering.take_known_macs() {
                Some(map) => {
                    let index = registrations.as_ref().map(|r| match r.lock() {
                        Ok(s) => s.index().clone(),
                        Err(p) => p.into_inner().index().clone(),
                    });
                    Some(super::known_macs::KnownMacs::start(map, &cfg, index))
                }
                None => {
                    tracing::warn!(
                        "[limits] xdp-drop-unknown: the XDP object has no map of known MACs \
                         (built before it existed?); nothing is dropped early"
                    );
                    None
                }
            },
        };
        // PostgreSQL: followed into the store (the local copy served from meanwhile); off the
        // packet path, stopped when this goes out of scope.
        let registrations_pg = match (&cfg.registrations, &registrations) {
            (xdhcpd_config::RegistrationBackend::Postgres(pg), Some(store)) => Some(
                crate::registrations::postgres::Follower::start((**pg).clone(), store.clone())?,
            ),
            _ => None,
        };
        if let (Some(secret), Some(book)) = (&reconf_secret, &reconf_book) {
            engine = engine.with_reconfigure(secret, book.clone());
        }
        let engine = Arc::new(engine);
        let cell = Arc::new(EngineCell::new(engine.clone()));
        // Ack mode: one committer thread flushes for all workers (and the reconfigure driver's
        // record changes), whatever the data path.
        let committer_shared = (cfg.server.commit == CommitMode::Ack).then(|| {
            Arc::new(Committer::with_adaptive_gaps(
                cfg.server.commit_min_gap,
                cfg.server.commit_coalesce,
                cfg.server.commit_coalesce_max,
            ))
        });
        let reconf = match cfg.reconfigure {
            Some(_) => Some(super::reconfigure::ReconfDriver::start(
                cell.clone(),
                table.clone(),
                server_id,
                v6.clone(),
                super::reconfigure::ChangeSinks {
                    failover: FailoverTap::merged(&failover),
                    events: events.as_ref().map(|e| e.tap()),
                    committer: committer_shared.clone(),
                },
            )?),
            None => None,
        };
        // `on-registration-change` is read live; the watcher is there whenever both are.
        if let (Some(d), Some(r)) = (&reconf, &registrations) {
            let index = match r.lock() {
                Ok(s) => s.index().clone(),
                Err(p) => p.into_inner().index().clone(),
            };
            index.set_watch(super::reconfigure::RegistrationTrigger::new(
                d.handle(),
                table.clone(),
            ));
        }
        let reloader = Reloader::new(
            cfg.source.clone(),
            Overrides {
                interface: opts.interface.clone(),
                lease_file: opts.lease_file.clone(),
                io: opts.io,
            },
            cfg.clone(),
            cell.clone(),
        );
        reloader.set_failover_pools(
            failover
                .iter()
                .map(|f| (f.name().to_string(), f.pool_balance_cell()))
                .collect(),
        );
        if let Some(k) = &known_macs {
            let k = k.clone();
            reloader.on_reload(Arc::new(move |c: &Config| k.reconfigure(c)));
        }
        let api_listen = Listen::from_config(control_path.clone(), &cfg.api)?;
        engine.protect_reservations(unix_now());

        install_signal_handlers();
        let commit = cfg.server.commit;
        let shared = WorkerShared {
            ops: WorkerOps {
                config: cell,
                events: events.as_ref().map(|e| e.tap()),
            },
            committer: committer_shared,
            stop: Arc::new(AtomicBool::new(false)),
            tap: FailoverTap::merged(&failover),
        };
        let mut workers = Workers::default();
        let mut nft_guard = None;
        let mut v6_join = None;
        let io_name = match &path {
            DataPath::Xdp { .. } => "xdp",
            DataPath::Udp(_) => "udp",
        };
        let xdp_reader = match &path {
            DataPath::Xdp { steering, .. } => match steering.counter_reader() {
                Ok(r) => Some(r),
                Err(e) => {
                    tracing::warn!("metrics: no XDP counters: {e}");
                    None
                }
            },
            DataPath::Udp(_) => None,
        };
        let steering = match path {
            DataPath::Xdp { steering, sockets } => {
                for (q, sock) in sockets.into_iter().enumerate() {
                    let frames =
                        FrameResponder::new(iface.mac, local_addr, server_id).with_v6(v6.clone());
                    let io = XskDriver::new(sock, frames);
                    workers.spawn(format!("xdhcpd-q{q}"), q, io, &shared)?;
                }
                v6_join = v6_sock;
                Some(steering)
            }
            DataPath::Udp(io) => {
                if let Some(port) = failover_guard_port(&cfg)? {
                    let peers: Vec<_> = cfg.failovers.iter().map(|f| f.peer_address).collect();
                    nft_guard = Some(
                        super::nft_guard::NftGuard::install(port, &peers)
                            .context("the failover port needs a guard in UDP mode")?,
                    );
                }
                let io = UdpDriver::new(io, local_addr);
                workers.spawn("xdhcpd-udp".into(), 0, io, &shared)?;
                if let (Some(v6), Some(sock)) = (&v6, v6_sock) {
                    workers.threads.push(v6srv::spawn_udp_worker(
                        v6.clone(),
                        sock,
                        shared.committer.clone(),
                        shared.stop.clone(),
                    )?);
                    tracing::info!("kernel UDP DHCPv6 on {} [::]:547, ff02::1:2", iface.name);
                }
                tracing::info!(
                    "kernel UDP data path on {} port {DHCPV4_SERVER_PORT}",
                    iface.name
                );
                None
            }
        };
        // With a partner, a lease ends for the sweeper when it ends for every failover rule.
        let grace = failover.iter().map(|f| f.expiry_grace()).max().unwrap_or(0);
        let mut background = spawn_background(table.clone(), commit, grace, shared.stop.clone())?;
        if let Some(v6) = &v6 {
            background.push(spawn_v6_background(
                v6.clone(),
                commit,
                shared.stop.clone(),
            )?);
        }
        // The committer outlives the workers: it stops after they have.
        let commit_stop = Arc::new(AtomicBool::new(false));
        let committer = match shared.committer {
            Some(c) => {
                // The DHCPv6 bindings are made durable in the same group commit (the XDP
                // workers hold their v6 replies with the same tickets).
                let also = v6.clone().map(|v| v as Arc<dyn commit::Durable>);
                let h = commit::spawn(c.clone(), table.clone(), also, commit_stop.clone())?;
                Some((c, h))
            }
            None => None,
        };
        let bulk_lq = match &cfg.bulk_leasequery {
            Some(b) => {
                // Follows reloads, as the engine's leasequery-allow does.
                let r = reloader.clone();
                let allow: super::bulk_lq::AllowFn =
                    Arc::new(move || r.config().leasequery_allow());
                let l = super::bulk_lq::BulkLq::start(b, allow, table.clone(), server_id)?;
                tracing::info!("bulk leasequery (RFC 6926) on tcp {}", l.addr());
                Some(l)
            }
            None => None,
        };
        let alarms = Alarms::new(&cfg.alarms);
        let state = ApiState {
            // Follows reloads (`/v1/pools`, `/v1/subnets`, `/v1/status`).
            config: crate::api::ConfigView::Live(reloader.clone()),
            interface: iface.name.clone(),
            server_id,
            io: io_name,
            table: table.clone(),
            engine_stats: workers.stats.clone(),
            workers: workers.counters.clone(),
            committer: committer.as_ref().map(|(c, _)| c.clone()),
            xdp: xdp_reader,
            failover: failover
                .iter()
                .map(|f| (f.name().to_string(), f.control_handler()))
                .collect(),
            registrations: registrations.map(|r| {
                let h = crate::registrations::ctl::handler(
                    Some(r),
                    Arc::new(|_| crate::control::Response::error("not a registration request")),
                );
                match &registrations_pg {
                    Some(_) => crate::registrations::ctl::read_only(
                        h,
                        "registrations are managed in PostgreSQL (registrations.backend = \
                         \"postgres\"): change them there; this server follows",
                    ),
                    None => h,
                }
            }),
            registrations_pg: registrations_pg.as_ref().map(|f| f.status()),
            known_macs: known_macs.clone(),
            // SIGHUP and `POST /v1/reload` share one Reloader.
            reload: Some({
                let r = reloader.clone();
                Arc::new(move || match r.reload() {
                    Ok(rep) => serde_json::to_value(&rep)
                        .map_err(|e| serde_json::json!({ "error": e.to_string() })),
                    Err(e) => Err(serde_json::json!({ "error": e.to_string(), "reload": e })),
                })
            }),
            started: Instant::now(),
            started_unix: unix_now(),
            metrics: cfg.api.metrics,
            alarms: Some(alarms.counters()),
            events: events
                .as_ref()
                .map(|e| (e.stats(), e.tap().dropped.clone())),
            reconfigure: reconf.as_ref().map(|r| r.handle()),
            refused: Default::default(),
            bulk_leasequery: bulk_lq.as_ref().map(|b| b.stats()),
            relay_health: rhc.clone(),
        };
        let api = match ApiServer::start(&api_listen, Arc::new(state)) {
            Ok(a) => {
                tracing::info!(
                    "control API on {}{}",
                    a.socket().display(),
                    a.tcp_addr()
                        .map(|t| format!(" and http://{t}"))
                        .unwrap_or_default()
                );
                Some(a)
            }
            // Operators need it to run failover, and a configured TCP listener was asked
            // for; otherwise it is a convenience.
            Err(e) if !failover.is_empty() || cfg.api.listen.is_some() => return Err(e),
            Err(e) => {
                tracing::warn!("no control API: {e:#}");
                None
            }
        };
        // Everything that needs root is done: switch to `[server] user` (every thread).
        match &identity {
            Some(id) => {
                let udp = steering.is_none();
                let plan = super::privilege::runtime_caps(udp, nft_guard.is_some());
                handover.files = owned_files(&cfg, &control_path);
                if let Some(e) = &cfg.event_log {
                    handover.dirs.push((e.directory.clone(), "event log"));
                }
                if let Some(dir) = cfg
                    .server
                    .registration_file
                    .as_deref()
                    .and_then(Path::parent)
                    .filter(|d| !d.as_os_str().is_empty())
                {
                    handover
                        .dirs
                        .push((dir.to_path_buf(), "registration store"));
                }
                handover.apply(id)?;
                super::privilege::switch(id, &plan).with_context(|| {
                    format!(
                        "switching to user {} (uid {}) and group {} (gid {}) with capabilities \
                         {}",
                        id.user,
                        id.uid,
                        id.group,
                        id.gid,
                        plan.names()
                    )
                })?;
                tracing::info!(
                    "privileges: running as user {} (uid {}), group {} (gid {}); capabilities \
                     kept: {} ({} data path)",
                    id.user,
                    id.uid,
                    id.group,
                    id.gid,
                    plan.names(),
                    io_name
                );
                super::privilege::warn_unreadable(&cfg.source, id);
            }
            None => super::privilege::warn_if_root(),
        }
        // Last: tests and operators take this line as "ready" (workers and API up).
        tracing::info!(
            "serving {} subnet(s) on {} as {server_id}, commit mode {:?}",
            cfg.subnets.len(),
            iface.name,
            cfg.server.commit
        );
        Ok(Daemon {
            opts,
            table,
            failover,
            api,
            reloader,
            events,
            alarms,
            steering,
            nft_guard,
            workers,
            stop: shared.stop,
            committer,
            commit_stop,
            background,
            started: Instant::now(),
            v6,
            _v6_join: v6_join,
            registrations_pg,
            reconf,
            reconf_book,
            bulk_lq,
            rhc,
        })
    }

    /// The handle that reloads the configuration (SIGHUP, control socket, control API).
    pub fn reloader(&self) -> Reloader {
        self.reloader.clone()
    }

    /// Alarm counters and states (for metrics).
    pub fn alarms(&self) -> &Alarms {
        &self.alarms
    }

    /// Lease event log counters (written, write errors, rotations) and the workers' drops;
    /// None without `[event-log]`.
    pub fn event_log_stats(
        &self,
    ) -> Option<(
        Arc<crate::events::EventLogStats>,
        Arc<std::sync::atomic::AtomicU64>,
    )> {
        self.events
            .as_ref()
            .map(|e| (e.stats(), e.tap().dropped.clone()))
    }

    /// Reports and follows the failover standby switch until a signal (or
    /// `run_for`) says stop; reloads on SIGHUP.
    pub fn serve(&mut self) {
        crate::sd_notify::notify("READY=1");
        let watchdog = crate::sd_notify::watchdog_interval();
        let mut last_watchdog = Instant::now();
        let mut last_report = Instant::now();
        let mut last = StatsSnapshot::default();
        // XDP's standby drop is one switch for the server: on only while every relationship is
        // standby and every subnet is in one (a subnet out of failover is always answered).
        let standby_cells: Vec<Arc<PolicyCell>> =
            self.failover.iter().map(|f| f.policy_cell()).collect();
        let all_covered = self
            .reloader
            .config()
            .subnets
            .iter()
            .all(|s| s.failover.is_some());
        let mut standby = StandbyFollow::new();
        loop {
            std::thread::sleep(Duration::from_millis(100));
            if let (false, Some(st)) = (standby_cells.is_empty(), self.steering.as_mut()) {
                let pols: Vec<_> = standby_cells.iter().map(|c| c.load()).collect();
                // The relay health check must see the partner's DISCOVERs and the REQUESTs
                // naming it: no early drop while it is on.
                standby.follow(
                    st,
                    all_covered && pols.iter().all(|p| p.is_standby()) && self.rhc.is_none(),
                    pols.iter()
                        .map(|p| p.load_balance_max_secs)
                        .min()
                        .unwrap_or(0),
                );
            }
            if RELOAD.swap(false, Ordering::SeqCst) {
                crate::sd_notify::notify("RELOADING=1");
                // The outcome is logged (and counted) by the reloader; nothing here stops.
                let _ = self.reloader.reload();
                crate::sd_notify::notify("READY=1");
            }
            if let Some(every) = watchdog {
                if last_watchdog.elapsed() >= every {
                    crate::sd_notify::notify("WATCHDOG=1");
                    last_watchdog = Instant::now();
                }
            }
            self.alarms.check(
                &self.table,
                &self.reloader.config(),
                &self.failover,
                self.rhc.as_deref(),
                unix_now(),
            );
            if STOP.load(Ordering::SeqCst)
                || self
                    .opts
                    .run_for
                    .is_some_and(|d| self.started.elapsed() >= d)
            {
                return;
            }
            let every = self.opts.stats_interval;
            if every > 0 && last_report.elapsed() >= Duration::from_secs(every) {
                let snap = sum(&self.workers.stats);
                let dt = last_report.elapsed().as_secs_f64();
                last_report = Instant::now();
                tracing::info!(
                    "stats: received {} offers {} acks {} naks {} ({:.0} acks/s){}{}{}{}",
                    snap.received,
                    snap.offers,
                    snap.acks,
                    snap.naks,
                    (snap.acks - last.acks) as f64 / dt,
                    // RFC 4388: shown once any arrived (most servers get none).
                    if snap.leasequeries > 0 {
                        format!(
                            " leasequeries {} (active {})",
                            snap.leasequeries, snap.leasequery_active
                        )
                    } else {
                        String::new()
                    },
                    // deny-unknown: shown once any client was refused.
                    if snap.unknown_refused > 0 {
                        format!(" unknown_refused {}", snap.unknown_refused)
                    } else {
                        String::new()
                    },
                    // [limits] lease caps: shown once any client was refused.
                    if snap.lease_cap_circuit_refused + snap.lease_cap_remote_id_refused > 0 {
                        format!(
                            " lease_cap_refused circuit {} remote_id {}",
                            snap.lease_cap_circuit_refused, snap.lease_cap_remote_id_refused
                        )
                    } else {
                        String::new()
                    },
                    self.steering
                        .as_ref()
                        .and_then(|s| s.counters().ok())
                        .map(|c| format!(" xdp: {c}"))
                        .unwrap_or_default()
                );
                last = snap;
            }
        }
    }

    /// Stops everything in order (failover, control socket, workers, committer,
    /// background threads), flushes the lease table and reports the totals.
    pub fn shutdown(self) -> anyhow::Result<()> {
        tracing::info!("stopping");
        crate::sd_notify::notify("STOPPING=1");
        // Failover first: the partner gets our last updates and SHUTDOWN while we still run.
        // Each relationship's driver stops on its own thread: stop them side by side.
        std::thread::scope(|s| {
            for f in self.failover {
                s.spawn(move || f.stop(Duration::from_secs(2)));
            }
        });
        if let Some(b) = self.bulk_lq {
            b.stop();
        }
        drop(self.api);
        drop(self.registrations_pg);
        drop(self.reconf);
        self.stop.store(true, Ordering::SeqCst);
        for w in self.workers.threads {
            let _ = w.join();
        }
        self.commit_stop.store(true, Ordering::SeqCst);
        if let Some((_, h)) = &self.committer {
            h.thread().unpark(); // it may be parked with nothing to flush
        }
        let committer = self.committer.map(|(c, h)| {
            let _ = h.join();
            c
        });
        for b in self.background {
            let _ = b.join();
        }
        if let Err(e) = self.table.flush() {
            tracing::error!("final flush of the lease table failed: {e}");
        }
        if let Some(b) = &self.reconf_book {
            if let Err(e) = b.flush() {
                tracing::warn!("reconfigure: writing back the xid / relay book failed: {e}");
            }
        }
        if let Some(v6) = &self.v6 {
            // Ack mode: a last checkpoint (commit, msync, the log emptied); then the flush.
            if let Err(e) = v6.table().checkpoint() {
                tracing::error!("final checkpoint of the v6 binding table failed: {e}");
            }
            v6.flush();
            tracing::info!(
                "final dhcpv6: {}",
                v6.stats()
                    .snapshot()
                    .pairs()
                    .iter()
                    .map(|(k, v)| format!("{k}={v}"))
                    .collect::<Vec<_>>()
                    .join(" ")
            );
        }
        // After the workers: the writer drains what they handed over.
        if let Some(e) = self.events {
            e.stop();
        }
        let snap = sum(&self.workers.stats);
        let xdp = self.steering.as_ref().and_then(|s| s.counters().ok());
        tracing::info!(
            "final: {}{}",
            snap.fields()
                .iter()
                .map(|(k, v)| format!("{k}={v}"))
                .collect::<Vec<_>>()
                .join(" "),
            xdp.as_ref()
                .map(|c| format!(" xdp: {c}"))
                .unwrap_or_default()
        );
        if let Some(p) = &self.opts.stats_json {
            let flushes = |f: fn(&Committer) -> &std::sync::atomic::AtomicU64| {
                committer
                    .as_ref()
                    .map_or(0, |c| f(c).load(Ordering::Relaxed))
            };
            let mut v = serde_json::json!({
                "engine": snap,
                "elapsed_s": self.started.elapsed().as_secs_f64(),
                "io": if self.steering.is_some() { "xdp" } else { "udp" },
                "workers": WorkerCounters::sum(&self.workers.counters),
                "commit_flushes": flushes(|c| &c.flushes),
                "commit_flush_errors": flushes(|c| &c.flush_errors),
                "commit_coalesce_waits": flushes(|c| &c.coalesce_waits),
                "commit_coalesce_waited_us": flushes(|c| &c.coalesce_waited_us),
            });
            if let Some(w) = self.table.wal_stats() {
                v["wal"] = wal_json(&w);
            }
            if let Some(v6) = &self.v6 {
                let m: serde_json::Map<String, serde_json::Value> = v6
                    .stats()
                    .snapshot()
                    .pairs()
                    .into_iter()
                    .map(|(k, v)| (k.to_string(), v.into()))
                    .collect();
                let mut m = m;
                m.insert(
                    "commit_flush_errors".into(),
                    v6.flush_errors.load(Ordering::Relaxed).into(),
                );
                if let Some(w) = v6.table().log().map(|l| l.stats()) {
                    m.insert("wal".into(), wal_json(&w));
                }
                v["dhcpv6"] = serde_json::Value::Object(m);
            }
            if let Some(c) = &xdp {
                let m: serde_json::Map<String, serde_json::Value> = xdhcpd_common::Counter::ALL
                    .iter()
                    .map(|(k, name)| (name.to_string(), c.get(*k).into()))
                    .collect();
                v["xdp"] = serde_json::Value::Object(m);
            }
            std::fs::write(p, serde_json::to_vec_pretty(&v)?)
                .with_context(|| format!("writing {}", p.display()))?;
        }
        drop(self.steering);
        drop(self.nft_guard);
        Ok(())
    }
}

/// Keeps the XDP program's failover standby switch (`CFG_DHCPV4_STANDBY`) equal to the
/// policy's [`is_standby`](xdhcpd_failover::FailoverPolicy::is_standby), checked every 100 ms
/// by the main loop. Either lag is safe: the switch only drops what the policy drops, so a
/// late "off" delays some clients' retries by at most 100 ms and a late "on" costs only CPU.
struct StandbyFollow {
    logged: u64,
    next_log: Instant,
}

impl StandbyFollow {
    /// Drops are logged as a summary at most this often (a line per packet would flood).
    const LOG_EVERY: Duration = Duration::from_secs(10);

    fn new() -> Self {
        StandbyFollow {
            logged: 0,
            next_log: Instant::now() + Self::LOG_EVERY,
        }
    }

    fn follow(&mut self, st: &mut XdpSteering, standby: bool, max_secs: u16) {
        match st.set_standby(standby, max_secs) {
            Ok(true) if standby => tracing::info!(
                "failover standby: DISCOVER, INFORM and SELECTING/INIT-REBOOT REQUEST are now \
                 dropped in XDP (NORMAL, no load-balancing bucket of ours)"
            ),
            Ok(true) => tracing::info!(
                "failover standby off: every DHCPv4 request reaches the server ({} dropped in \
                 XDP while standby since start)",
                st.counters().map_or(0, |c| c.standby_dropped)
            ),
            Ok(false) => {}
            Err(e) => tracing::warn!("failover standby switch: {e}"),
        }
        if Instant::now() < self.next_log {
            return;
        }
        self.next_log = Instant::now() + Self::LOG_EVERY;
        if let Ok(c) = st.counters() {
            if c.standby_dropped > self.logged {
                tracing::info!(
                    "failover standby: dropped {} DHCPv4 request(s) in XDP in the last {} s \
                     (the backup answers no DISCOVER in NORMAL); {} in all",
                    c.standby_dropped - self.logged,
                    Self::LOG_EVERY.as_secs(),
                    c.standby_dropped
                );
                self.logged = c.standby_dropped;
            }
        }
    }
}

/// The directories start-up may create: the lease files', the registration store's, the
/// event log's, the control socket's.
fn state_dirs(cfg: &Config, control: &Path) -> Vec<PathBuf> {
    let mut v: Vec<PathBuf> = [
        Some(cfg.server.lease_file.as_path()),
        (!cfg.v6.subnets.is_empty()).then_some(cfg.v6.lease_file.as_path()),
        cfg.server.registration_file.as_deref(),
        Some(control),
    ]
    .into_iter()
    .flatten()
    .filter_map(Path::parent)
    .map(Path::to_path_buf)
    .collect();
    if let Some(e) = &cfg.event_log {
        v.push(e.directory.clone());
    }
    v.sort();
    v.dedup();
    v
}

/// The reconfigure book in `<lease file>.reconf` (sized to the table's capacity: records a
/// reload adds into the spare slots have their words too), attached to the table's change
/// hook. A file that cannot be opened leaves an in-memory book (as before the side file:
/// after a restart the xid and relay are known again from each binding's next ACK).
fn open_reconf_book(
    lease_file: &Path,
    table: &LeaseTable,
) -> xdhcpd_dhcpv4::engine::reconfigure::ReconfBook {
    use xdhcpd_dhcpv4::engine::reconfigure::ReconfBook;
    let mut p = lease_file.as_os_str().to_owned();
    p.push(".reconf");
    let path = PathBuf::from(p);
    match ReconfBook::open(&path, table.capacity()) {
        Ok((b, how)) => {
            if how == lease_store::SlotWordsOpen::Reset {
                tracing::warn!(
                    "reconfigure: {} did not match the lease table; started over (the xid and \
                     relay of each binding are known again from its next ACK)",
                    path.display()
                );
            }
            b
        }
        Err(e) => {
            tracing::warn!(
                "reconfigure: {}: {e}; keeping the xid and relay of each binding's last ACK in \
                 memory only",
                path.display()
            );
            ReconfBook::new(table.capacity())
        }
    }
}

/// The files the daemon writes, handed to `[server] user` before the switch.
fn owned_files(cfg: &Config, control: &Path) -> Vec<PathBuf> {
    let with = |p: &Path, suffix: &str| {
        let mut s = p.as_os_str().to_owned();
        s.push(suffix);
        PathBuf::from(s)
    };
    let lf = &cfg.server.lease_file;
    let mut v = vec![
        lf.clone(),
        with(lf, ".wal"),
        super::reconfigure::secret_path(lf),
        with(lf, ".reconf"),
        control.to_path_buf(),
    ];
    if !cfg.v6.subnets.is_empty() {
        v.push(cfg.v6.lease_file.clone());
        v.push(with(&cfg.v6.lease_file, ".wal"));
    }
    if let Some(r) = &cfg.server.registration_file {
        v.extend([
            r.clone(),
            with(r, ".log"),
            with(r, ".lock"),
            with(r, ".tmp"),
        ]);
    }
    v
}

/// A write-ahead log's counters in the stats JSON (lease table and DHCPv6 binding table).
fn wal_json(w: &lease_store::WalStats) -> serde_json::Value {
    serde_json::json!({
        "commits": w.commits,
        "entries": w.entries,
        "bytes": w.bytes,
        "checkpoints": w.checkpoints,
        "commit_ns": w.commit_ns,
        "commit_latency_bounds_us": lease_store::COMMIT_LATENCY_BOUNDS_US,
        "commit_latency": w.commit_latency,
        "used": w.used,
    })
}

fn sum(stats: &[Arc<EngineStats>]) -> StatsSnapshot {
    let mut s = StatsSnapshot::default();
    for st in stats {
        s += st.snapshot();
    }
    s
}

/// Longest time between two checkpoints of a table with a write-ahead log (a checkpoint also
/// comes as soon as the log is half full). Bounds the log a restart replays.
const CHECKPOINT_EVERY: Duration = Duration::from_secs(60);

/// Interval flusher (interval mode), checkpointer (ack mode, write-ahead log) and expiry sweeper.
fn spawn_background(
    table: Arc<LeaseTable>,
    commit: CommitMode,
    expiry_grace: u32,
    stop: Arc<AtomicBool>,
) -> anyhow::Result<Vec<JoinHandle<()>>> {
    let mut v = Vec::new();
    if let CommitMode::Interval(every) = commit {
        let table = table.clone();
        let stop = stop.clone();
        v.push(
            std::thread::Builder::new()
                .name("xdhcpd-flush".into())
                .spawn(move || {
                    while !stop.load(Ordering::Relaxed) {
                        std::thread::sleep(every);
                        if let Err(e) = table.flush() {
                            tracing::error!("interval flush of the lease table failed: {e}");
                        }
                    }
                })?,
        );
    }
    if table.has_wal() {
        let table = table.clone();
        let stop = stop.clone();
        v.push(
            std::thread::Builder::new()
                .name("xdhcpd-checkpoint".into())
                .spawn(move || {
                    super::sched::background();
                    let mut last = Instant::now();
                    // Test hook (crash tests: cuts during checkpoints): checkpoint this often.
                    let forced = std::env::var("XDHCPD_CHECKPOINT_MS")
                        .ok()
                        .and_then(|v| v.parse::<u64>().ok())
                        .map(|ms| Duration::from_millis(ms.max(1)));
                    let tick = forced.map_or(Duration::from_millis(100), |f| {
                        f.min(Duration::from_millis(100))
                    });
                    // Ten wake-ups a second at most (unless forced); the work is one msync
                    // when due.
                    while !stop.load(Ordering::Relaxed) {
                        std::thread::sleep(tick);
                        let due = table.wal_wants_checkpoint()
                            || forced.is_some_and(|f| last.elapsed() >= f)
                            // Also commits what the sweeper and failover staged meanwhile.
                            || last.elapsed() >= CHECKPOINT_EVERY;
                        if !due {
                            continue;
                        }
                        last = Instant::now();
                        if let Err(e) = table.checkpoint() {
                            tracing::error!(
                                "checkpoint of the lease table failed (the log is kept; replies \
                                 wait until the storage recovers): {e}"
                            );
                        }
                    }
                })?,
        );
    }
    v.push(
        std::thread::Builder::new()
            .name("xdhcpd-sweep".into())
            .spawn(move || {
                super::sched::background();
                while !stop.load(Ordering::Relaxed) {
                    // Bounded work per step so a 10M table never stalls shutdown.
                    let _ = table.sweep_expired(unix_now().saturating_sub(expiry_grace), 65_536);
                    std::thread::sleep(Duration::from_millis(200));
                }
            })?,
    );
    Ok(v)
}

/// DHCPv6 background: interval flush of the v6 table (interval mode), its checkpoint (ack
/// mode: the write-ahead log half full, or [`CHECKPOINT_EVERY`]; `XDHCPD_CHECKPOINT_MS` as
/// for the lease table) and the expiry sweep.
fn spawn_v6_background(
    v6: Arc<V6Server>,
    commit: CommitMode,
    stop: Arc<AtomicBool>,
) -> anyhow::Result<JoinHandle<()>> {
    let every = match commit {
        CommitMode::Interval(d) => Some(d),
        CommitMode::Ack => None,
    };
    let forced = std::env::var("XDHCPD_CHECKPOINT_MS")
        .ok()
        .and_then(|v| v.parse::<u64>().ok())
        .map(|ms| Duration::from_millis(ms.max(1)));
    Ok(std::thread::Builder::new()
        .name("xdhcpd-v6bg".into())
        .spawn(move || {
            super::sched::background();
            let tick = every.map_or(Duration::from_millis(100), |d| {
                d.min(Duration::from_millis(200))
            });
            let tick = forced.map_or(tick, |f| f.min(tick));
            let mut last_flush = Instant::now();
            let mut last_sweep = Instant::now();
            let mut last_ckpt = Instant::now();
            while !stop.load(Ordering::Relaxed) {
                std::thread::sleep(tick);
                if every.is_some_and(|d| last_flush.elapsed() >= d) {
                    v6.flush();
                    last_flush = Instant::now();
                }
                let log = v6.table().log();
                let due = log.is_some_and(|l| l.wants_checkpoint())
                    || forced.is_some_and(|f| last_ckpt.elapsed() >= f)
                    // Also commits what the sweeper and the reconfigure driver staged.
                    || last_ckpt.elapsed() >= CHECKPOINT_EVERY;
                if log.is_some() && due {
                    last_ckpt = Instant::now();
                    if let Err(e) = v6.table().checkpoint() {
                        v6.flush_errors.fetch_add(1, Ordering::Relaxed);
                        tracing::error!(
                            "checkpoint of the v6 binding table failed (the log is kept; \
                             replies wait until the storage recovers): {e}"
                        );
                    }
                }
                if last_sweep.elapsed() >= Duration::from_secs(10) {
                    v6.sweep();
                    last_sweep = Instant::now();
                }
            }
        })?)
}
