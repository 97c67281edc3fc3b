//! Failover driver and operations: runs the sans-IO `xdhcpd_failover::FailoverEngine` over
//! TCP to the partner, applies its decisions to the lease table, publishes its policy to the
//! DHCP workers, and answers `xdhcpd ctl failover ...` (through the control API, `crate::api`).
//!
//! Threads and data flow:
//! * DHCP workers send the slots each batch changed through a bounded channel
//!   ([`FailoverTap::offer`], `try_send`: a worker never blocks; when the channel is full an
//!   overflow flag makes the driver rescan the table for records the partner lacks);
//! * the driver thread (tokio current-thread runtime) owns the engine, the connection, and
//!   every failover write to the table (partner bindings, acks, pool grants, persisted state);
//! * the control API forwards operator requests to the driver and waits for its answer.
//!
//! Restarts resume from the failover state persisted in the lease file's reserved area; which
//! bindings the partner lacks is recomputed from the records themselves (see `xdhcpd_failover::store`).

mod area;
mod auth;
mod driver;
mod rebalance;
mod refusals;
mod table_store;

use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::thread::JoinHandle;
use std::time::Duration;

use anyhow::Context;
use crossbeam_channel::{bounded, Sender, TrySendError};
use lease_store::{LeaseTable, Slot};
use tokio::sync::mpsc;
use xdhcpd_failover::{
    Config, FailoverEngine, FailoverPersist, PolicyCell, Role, StartError, DEFAULT_EXPIRY_GRACE,
};

use crate::clock::unix_now;
use crate::control::{self, fmt_time, Handler, Request, Response};
use driver::{Command, Driver};
use xdhcpd_config::{FailoverConfig, FailoverRole, PartnerSoftware};

/// Capacity of the workers -> driver channel of changed slots.
pub const CHANGE_CHANNEL: usize = 65_536;

/// The workers' end of the change channels (one per relationship). Cloned into each worker.
#[derive(Clone, Debug)]
pub struct FailoverTap {
    txs: Vec<(Sender<Slot>, Arc<AtomicBool>)>,
}

impl FailoverTap {
    /// Hands changed slots to the failover drivers; never blocks. On a full channel the rest
    /// is dropped and that driver told to rescan the table. With several relationships (N:1)
    /// every driver hears every slot and keeps those of its own pools (one pool lookup).
    pub fn offer(&self, slots: &[Slot]) {
        for (tx, overflow) in &self.txs {
            for s in slots {
                match tx.try_send(*s) {
                    Ok(()) => {}
                    Err(TrySendError::Full(_)) => {
                        overflow.store(true, Ordering::Relaxed);
                        break;
                    }
                    Err(TrySendError::Disconnected(_)) => break,
                }
            }
        }
    }

    /// One tap feeding every relationship's driver.
    pub fn merged(fos: &[Failover]) -> Option<FailoverTap> {
        let txs: Vec<_> = fos.iter().flat_map(|f| f.tap.txs.iter().cloned()).collect();
        (!txs.is_empty()).then_some(FailoverTap { txs })
    }
}

/// The engine configuration for a `[failover]` section.
pub fn engine_config(c: &FailoverConfig) -> Config {
    let role = match c.role {
        FailoverRole::Primary => Role::Primary,
        FailoverRole::Secondary => Role::Secondary,
    };
    let mut e = Config::new(role, &c.name);
    e.mclt = c.mclt;
    e.max_unacked_bndupd = c.max_unacked_updates;
    e.poll_interval = c.poll_interval;
    e.poll_timeout = c.poll_timeout;
    e.use_safe_period = c.use_safe_period;
    e.safe_period = c.safe_period;
    e.lease_period_factor_permille =
        (c.lease_period_factor * 1000.0).round().clamp(0.0, 1e9) as u32;
    e.split = c.split;
    e.load_balance_max_secs = c.load_balance_max_seconds;
    e.backup_pct = c.backup_pct;
    e.rebind_limit = c.rebind_limit;
    e.failback_hold = c.failback_hold;
    e.failover_recover = c.failover_recover;
    e.partner_mclt_min = c.partner_mclt_min;
    e.partner_mclt_max = c.partner_mclt_max;
    // Well above NTP-disciplined clock offsets, but a small fraction of a short MCLT (tests and
    // labs run MCLTs of seconds).
    e.expiry_grace = DEFAULT_EXPIRY_GRACE.min(c.mclt / 4);
    e
}

/// How errors name the relationship's section: `[failover]`, or `[[failover]] "NAME"`.
fn section(c: &FailoverConfig) -> String {
    if c.listed {
        format!("[[failover]] {:?}", c.name)
    } else {
        "[failover]".into()
    }
}

/// The note logged at start when the secondary has `dynamic-bootp-backup-pct`: the primary
/// decides the split, so the secondary ignores it (as it ignores `backup-pct`).
pub fn bootp_pct_note(c: &FailoverConfig) -> Option<String> {
    match (c.role, c.dynamic_bootp_backup_pct) {
        (FailoverRole::Secondary, Some(p)) => Some(format!(
            "{}: dynamic-bootp-backup-pct = {p} ignored on the secondary (the primary's \
             value sets the split)",
            section(c)
        )),
        _ => None,
    }
}

/// The start-up line summarising the failover settings.
pub fn startup_line(c: &FailoverConfig) -> String {
    format!(
        "failover: role={} name={:?} mclt={} backup-pct={} use-safe-period={} safe-period={} \
         split={} max-unacked-updates={} poll-interval={} poll-timeout={} listen={} peer={}",
        match c.role {
            FailoverRole::Primary => "primary",
            FailoverRole::Secondary => "secondary",
        },
        c.name,
        c.mclt,
        c.backup_pct,
        c.use_safe_period,
        c.safe_period,
        c.split.map_or("off".to_string(), |s| s.to_string()),
        c.max_unacked_updates,
        c.poll_interval,
        c.poll_timeout,
        SocketAddr::new(c.address, c.port),
        SocketAddr::new(c.peer_address, c.peer_port),
    )
}

/// The pools' balance settings (`[failover]` and each `[[subnet]]`'s backup-pct and
/// allocation boundary, by pool id): a reload that adds pools writes the new list here before
/// it grows the lease table, and the failover driver reads it when it sees the table grow.
pub type PoolBalanceCell = Arc<std::sync::Mutex<Vec<xdhcpd_config::PoolBalanceCfg>>>;

/// A running failover relationship.
pub struct Failover {
    name: String,
    expiry_grace: u32,
    pool_balance: PoolBalanceCell,
    cell: Arc<PolicyCell>,
    tap: FailoverTap,
    cmd: mpsc::UnboundedSender<Command>,
    thread: Option<JoinHandle<()>>,
}

impl Failover {
    /// Resumes the engine from the lease file's persisted failover state, binds the listener
    /// and starts the driver thread. Workers must be given [`policy_cell`](Self::policy_cell)
    /// (through `EngineShared::with_failover`) and [`tap`](Self::tap).
    pub fn start(cfg: &FailoverConfig, table: Arc<LeaseTable>) -> anyhow::Result<Self> {
        let area = area::SharedArea::open(table.clone(), cfg.listed, 1);
        Self::start_with_events(cfg, table, None, false, area)
    }

    /// Starts every relationship of `cfgs` (none, the single `[failover]`, or the
    /// `[[failover]]` entries of an N:1 server), each with its own engine, listener,
    /// connection and driver, their persisted states kept apart in the lease file.
    pub fn start_all(
        cfgs: &[FailoverConfig],
        table: Arc<LeaseTable>,
        events: Option<crate::events::EventTap>,
        keep_reconfiguring: bool,
    ) -> anyhow::Result<Vec<Self>> {
        let named = cfgs.iter().any(|c| c.listed);
        for (i, a) in cfgs.iter().enumerate() {
            if let Some(b) = cfgs[..i]
                .iter()
                .find(|b| area::name_key(&b.name) == area::name_key(&a.name))
            {
                anyhow::bail!(
                    "[[failover]] names {:?} and {:?} share a storage key in the lease file;                      rename one of them",
                    b.name,
                    a.name
                );
            }
        }
        let area = area::SharedArea::open(table.clone(), named, cfgs.len());
        let mut out = Vec::with_capacity(cfgs.len());
        for c in cfgs {
            out.push(Self::start_with_events(
                c,
                table.clone(),
                events.clone(),
                keep_reconfiguring,
                area.clone(),
            )?);
        }
        Ok(out)
    }

    /// [`Failover::start`], also handing the records the partner's updates change to the
    /// lease event log; the persisted state lives in `area`.
    fn start_with_events(
        cfg: &FailoverConfig,
        table: Arc<LeaseTable>,
        events: Option<crate::events::EventTap>,
        keep_reconfiguring: bool,
        shared_area: Arc<area::SharedArea>,
    ) -> anyhow::Result<Self> {
        let ecfg = engine_config(cfg);
        let ecfg_grace = ecfg.expiry_grace;
        let sect = section(cfg);
        ecfg.validate()
            .map_err(|e| anyhow::anyhow!("{sect}: {e}"))?;
        let area = match shared_area.load(&cfg.name) {
            Ok(a) => a,
            Err(why) => {
                tracing::warn!(
                    "failover {:?}: stored failover state in {} not usable ({why}); starting                      as if the database was lost",
                    cfg.name,
                    table.path().display()
                );
                Vec::new()
            }
        };
        let persisted = if area.is_empty() {
            tracing::info!(
                "failover {:?}: no failover state on record (first start or lost database)",
                cfg.name
            );
            None
        } else {
            match FailoverPersist::from_bytes(&area) {
                Ok(p) => {
                    tracing::info!(
                        "failover: resuming: was {} since {}, partner {} since {}, last contact {}",
                        p.own_state,
                        fmt_time(p.own_state_since),
                        p.partner_state.map_or("unknown", |s| s.name()),
                        fmt_time(p.partner_state_since),
                        fmt_time(p.last_contact)
                    );
                    Some(p)
                }
                Err(e) => {
                    // Treat as a lost database: RECOVER and pull everything (safe).
                    tracing::warn!(
                        "failover: stored failover state in {} unusable ({e}); starting as if \
                         the database was lost",
                        table.path().display()
                    );
                    None
                }
            }
        };
        let now = unix_now();
        let engine = FailoverEngine::new(ecfg, persisted, now).map_err(|e| match e {
            StartError::RoleSwapped { stored, configured } => anyhow::anyhow!(
                "{sect} role = \"{configured}\", but the lease file {} holds the failover \
                 state of the {stored} of relationship {:?}: refusing to start in a swapped \
                 role (two primaries or two secondaries would each take the other's pool and \
                 state for their own). Start with the configuration that belongs to this lease \
                 file; to give this server the {configured} role, start it on a new lease file \
                 (it then pulls every binding from the partner)",
                table.path().display(),
                cfg.name
            ),
            StartError::Config(e) => anyhow::anyhow!("{sect}: {e}"),
        })?;
        let cell = Arc::new(PolicyCell::new(engine.policy()));
        let listen = SocketAddr::new(cfg.address, cfg.port);
        let listener = std::net::TcpListener::bind(listen).with_context(|| {
            format!(
                "failover: listening on {listen} (is `failover.address` configured on this host?)"
            )
        })?;
        listener
            .set_nonblocking(true)
            .context("failover: non-blocking listener")?;
        let auth_key = match (cfg.partner_software, &cfg.auth_key_file) {
            (PartnerSoftware::Xdhcpd, Some(path)) => Some(Arc::new(auth::load_key(path)?)),
            (PartnerSoftware::Xdhcpd, None) => {
                anyhow::bail!("{sect}: an xdhcpd partner needs auth-key-file")
            }
            (PartnerSoftware::IscDhcpd, key) => {
                tracing::warn!(
                    "failover: partner-software = \"isc-dhcpd\": the failover connection is \
                     plain TCP, authenticated by the partner's address only (ISC dhcpd has no \
                     authentication); keep the failover link on a trusted segment{}",
                    if key.is_some() {
                        " (auth-key-file is ignored)"
                    } else {
                        ""
                    }
                );
                None
            }
        };
        let (tx, rx) = bounded(CHANGE_CHANNEL);
        let overflow = Arc::new(AtomicBool::new(false));
        let pool_balance: PoolBalanceCell = Arc::new(std::sync::Mutex::new(cfg.pools.clone()));
        let (mut driver, ev_rx) = Driver::new(
            engine,
            table,
            cell.clone(),
            cfg.clone(),
            rx,
            overflow.clone(),
            auth_key,
        );
        driver.area = shared_area;
        driver.events = events;
        driver.keep_reconfiguring = keep_reconfiguring;
        driver.pool_balance = Some(pool_balance.clone());
        let (cmd_tx, cmd_rx) = mpsc::unbounded_channel();
        // With several relationships every log line of a driver names its relationship.
        let span_name = cfg.listed.then(|| cfg.name.clone());
        let thread = std::thread::Builder::new()
            .name("xdhcpd-failover".into())
            .spawn(move || {
                let _span =
                    span_name.map(|n| tracing::info_span!("relationship", name = %n).entered());
                driver::thread_main(driver, ev_rx, listener, cmd_rx)
            })
            .context("spawning the failover thread")?;
        tracing::info!("{}", startup_line(cfg));
        if let Some(note) = bootp_pct_note(cfg) {
            tracing::info!("{note}");
        }
        Ok(Failover {
            name: cfg.name.clone(),
            expiry_grace: ecfg_grace,
            pool_balance,
            cell,
            tap: FailoverTap {
                txs: vec![(tx, overflow)],
            },
            cmd: cmd_tx,
            thread: Some(thread),
        })
    }

    /// The relationship's name.
    pub fn name(&self) -> &str {
        &self.name
    }

    /// Seconds after its end that a lease counts as ended (the expiry sweeper uses it too).
    pub fn expiry_grace(&self) -> u32 {
        self.expiry_grace
    }

    /// Where a reload puts the pools' balance settings (see [`PoolBalanceCell`]).
    pub fn pool_balance_cell(&self) -> PoolBalanceCell {
        self.pool_balance.clone()
    }

    pub fn policy_cell(&self) -> Arc<PolicyCell> {
        self.cell.clone()
    }

    pub fn tap(&self) -> FailoverTap {
        self.tap.clone()
    }

    /// Sends one request to the driver and waits (bounded) for its answer.
    pub fn request(&self, req: Request) -> Response {
        request(&self.cmd, req)
    }

    /// Control-socket handler for this relationship.
    pub fn control_handler(&self) -> Handler {
        let cmd = self.cmd.clone();
        Arc::new(move |req| request(&cmd, req))
    }

    /// Graceful stop: lets queued binding updates reach the partner (at most `grace`), sends
    /// SHUTDOWN, closes the connection and flushes the table. Returns when the driver is done.
    pub fn stop(mut self, grace: Duration) {
        self.stop_inner(grace);
    }

    fn stop_inner(&mut self, grace: Duration) {
        let Some(t) = self.thread.take() else {
            return;
        };
        let (done_tx, done_rx) = std::sync::mpsc::sync_channel(1);
        if self.cmd.send(Command::Stop(grace, done_tx)).is_ok() {
            let _ = done_rx.recv_timeout(grace + Duration::from_secs(3));
        }
        let _ = t.join();
    }
}

impl Drop for Failover {
    fn drop(&mut self) {
        self.stop_inner(Duration::from_millis(500));
    }
}

fn request(cmd: &mpsc::UnboundedSender<Command>, req: Request) -> Response {
    let (tx, rx) = std::sync::mpsc::sync_channel(1);
    if cmd.send(Command::Control(req, tx)).is_err() {
        return Response::error("failover driver is not running");
    }
    match rx.recv_timeout(Duration::from_secs(5)) {
        Ok(r) => r,
        Err(_) => Response::error("failover driver did not answer within 5 s"),
    }
}

/// Control handler of a daemon without `[failover]`.
pub fn no_failover_handler() -> Handler {
    Arc::new(|_| Response::error("failover is not configured on this server"))
}

// ---------------------------------------------------------------------------------------------
// `xdhcpd ctl`

#[derive(clap::Subcommand, Clone, Debug)]
pub enum FailoverCtl {
    /// Both states and since when, last contact, queue depths, ack latency.
    Status {
        /// Print the raw JSON answer.
        #[arg(long)]
        json: bool,
    },
    /// Declare the partner down (PARTNER-DOWN). MCLT before using its addresses counts from
    /// --since (when it was last known alive): -3d, -12h, -30m, a Unix time or RFC 3339;
    /// default: now (the partner may have served until now). The reply says which time was
    /// used and when the partner's addresses become usable.
    PartnerDown {
        #[arg(long, allow_hyphen_values = true)]
        since: Option<String>,
        /// Also when this server is NORMAL, STARTUP or already PARTNER-DOWN (only for a partner
        /// you know has stopped serving clients; without it, only COMMUNICATIONS-INTERRUPTED,
        /// RESOLUTION-INTERRUPTED, RECOVER and RECOVER-WAIT take the command).
        #[arg(long)]
        force: bool,
    },
    /// Pull the partner's whole database (RECOVER, UPDREQALL) and wait MCLT before serving.
    Recover,
    /// Relay health check (`relay-health-check`): the relays that seem unable to reach the
    /// partner (this server answers their clients for it); `--all`: every relay followed.
    Relays {
        #[arg(long)]
        all: bool,
        /// Print the raw JSON answer.
        #[arg(long)]
        json: bool,
    },
    /// Planned restart: enter PAUSED (stop serving; the partner goes
    /// COMMUNICATIONS-INTERRUPTED and serves alone), then stop the daemon (SIGTERM) and start
    /// it again; it resumes where it was before the pause. Undone only by a restart.
    Pause,
    /// End the failback hold (`failback-hold`, the flap guard) now: only in PARTNER-DOWN with
    /// the partner connected; NORMAL follows once the partner has recovered.
    Failback,
    /// The failover event log (takeover, failback, synchronisation...) with UTC times.
    Events {
        /// Print the raw JSON answer.
        #[arg(long)]
        json: bool,
    },
}

/// Finds the control socket: --socket, else the configuration's, else the only
/// `/run/xdhcpd-*.sock`.
pub fn resolve_socket(socket: Option<PathBuf>, config: Option<&Path>) -> anyhow::Result<PathBuf> {
    if let Some(s) = socket {
        return Ok(s);
    }
    if let Some(c) = config {
        let cfg = xdhcpd_config::load(c).map_err(|e| anyhow::anyhow!("{e}"))?;
        return Ok(cfg
            .server
            .control_socket
            .clone()
            .unwrap_or_else(|| control::default_socket(&cfg.server.interface)));
    }
    let mut found: Vec<PathBuf> = std::fs::read_dir("/run")
        .map(|d| {
            d.flatten()
                .map(|e| e.path())
                .filter(|p| {
                    p.file_name()
                        .and_then(|n| n.to_str())
                        .is_some_and(|n| n.starts_with("xdhcpd-") && n.ends_with(".sock"))
                })
                .collect()
        })
        .unwrap_or_default();
    match found.len() {
        1 => Ok(found.remove(0)),
        0 => anyhow::bail!("no control socket found in /run; give --socket PATH or --config FILE"),
        _ => anyhow::bail!(
            "several control sockets in /run ({}); give --socket PATH",
            found
                .iter()
                .map(|p| p.display().to_string())
                .collect::<Vec<_>>()
                .join(", ")
        ),
    }
}

fn ago(t: u32, now: u32) -> String {
    if t == 0 {
        "never".into()
    } else {
        format!("{} ({} s ago)", fmt_time(t), now.saturating_sub(t))
    }
}

/// Human-readable `failover events`: one line per event, oldest first, UTC.
pub fn format_events(s: &control::FailoverStatus) -> String {
    let mut o = String::new();
    for e in &s.events {
        o.push_str(&format!(
            "{}  {:<22} {}: {}\n",
            e.at_utc, e.event, e.description, e.remarks
        ));
    }
    if s.events_total > s.events.len() as u64 {
        o.push_str(&format!(
            "({} older events not kept)\n",
            s.events_total - s.events.len() as u64
        ));
    }
    if s.events.is_empty() {
        o.push_str("no failover events\n");
    }
    o
}

/// Human-readable `failover status`.
pub fn format_status(s: &control::FailoverStatus, now: u32) -> String {
    let mut o = String::new();
    let mut line = |k: &str, v: String| o.push_str(&format!("{k:<22} {v}\n"));
    line("relationship", format!("{} ({})", s.relationship, s.role));
    line("peer", s.peer.clone());
    line(
        "state",
        format!("{} since {}", s.state, ago(s.state_since, now)),
    );
    if s.partner_down_usable_at != 0 {
        line(
            if s.blind_partner_down {
                "every address usable (blind, from RECOVER)"
            } else {
                "partner's addresses usable"
            },
            format!("from {}", control::fmt_time(s.partner_down_usable_at)),
        );
    }
    line(
        "partner state",
        match &s.partner_state {
            Some(p) => format!("{p} since {}", ago(s.partner_state_since, now)),
            None => "unknown".into(),
        },
    );
    line("last contact", ago(s.last_contact, now));
    line(
        "version",
        match &s.partner_version {
            Some(p) if s.version_mismatch => format!("{} (partner {p}: DIFFERENT)", s.version),
            Some(_) => format!("{} (partner the same)", s.version),
            None => format!("{} (partner not known yet)", s.version),
        },
    );
    line(
        "round trip",
        s.partner_rtt_ms
            .map_or("-".into(), |v| format!("{v:.2} ms (TCP, heartbeats)")),
    );
    line(
        "connected",
        format!(
            "{}{}",
            if s.connected { "yes" } else { "no" },
            if s.communicating {
                " (communicating)"
            } else {
                ""
            }
        ),
    );
    line("unacked updates", s.unacked_updates.to_string());
    if let (Some(ours), Some(theirs)) = (s.max_unacked_advertised, s.partner_max_unacked) {
        line(
            "max-unacked-updates",
            format!("{ours} advertised, partner {theirs}"),
        );
    }
    line("bindings pending", s.bindings_pending.to_string());
    line(
        "mean ack latency",
        s.mean_update_ack_latency_ms
            .map_or("-".into(), |v| format!("{v:.1} ms")),
    );
    line("mclt", format!("{} s", s.mclt));
    if let Some(r) = &s.resync {
        line(
            "resync",
            match (r.percent, r.total) {
                (Some(p), Some(t)) => format!(
                    "{} {}: {p:.1}% ({} of {t} acknowledged)",
                    r.direction,
                    if r.all {
                        "all bindings"
                    } else {
                        "unacknowledged bindings"
                    },
                    r.done
                ),
                _ => format!(
                    "{} {}: {} received so far (the partner does not say how many; its status \
                     shows the percent)",
                    r.direction,
                    if r.all {
                        "all bindings"
                    } else {
                        "unacknowledged bindings"
                    },
                    r.done
                ),
            },
        );
    }
    if s.failback_hold != 0 {
        line(
            "failback hold",
            match s.failback_held_until {
                Some(u) => format!(
                    "{} s: NORMAL held until {} (ctl failover failback ends it)",
                    s.failback_hold,
                    control::fmt_time(u)
                ),
                None => format!("{} s (not holding)", s.failback_hold),
            },
        );
    }
    line(
        "updates",
        format!(
            "sent {} (in {} BNDUPD) acked {} received {} rejected-by-partner {} rejected-by-us {} \
             connections {}",
            s.bndupd_sent,
            s.bndupd_messages_sent,
            s.bndack_received,
            s.bndupd_received,
            s.rejected_by_partner,
            s.rejected_by_us,
            s.connections
        ),
    );
    if let Some(e) = s.events.last() {
        line(
            "last event",
            format!("{} {}: {}", e.at_utc, e.description, e.remarks),
        );
    }
    if s.refused_outdated + s.partner_refused_outdated > 0 {
        line(
            "outdated",
            format!(
                "refused by us {}, by the partner {}",
                s.refused_outdated, s.partner_refused_outdated
            ),
        );
    }
    if s.refused_not_in_pool + s.partner_refused_not_in_pool > 0 {
        line(
            "not in a pool",
            format!(
                "refused by us {}, by the partner {} ({} waiting for the partner's reload)",
                s.refused_not_in_pool, s.partner_refused_not_in_pool, s.waiting_for_partner_pool
            ),
        );
    }
    o
}

#[cfg(test)]
mod tests {
    use lease_store::{LeaseTable, OpenOptions, PoolSpec};
    use std::net::Ipv4Addr;
    use std::sync::Arc;
    use std::time::Duration;

    use super::Failover;
    use xdhcpd_config::{FailoverConfig, FailoverRole, PartnerSoftware};
    use xdhcpd_failover::{FailoverPersist, Role, ServerState};

    fn failover_config(role: FailoverRole) -> FailoverConfig {
        FailoverConfig {
            role,
            name: "pair".into(),
            address: Ipv4Addr::LOCALHOST.into(),
            port: 0,
            // Nobody listens there: the driver keeps dialling until stopped.
            peer_address: Ipv4Addr::new(127, 0, 0, 2).into(),
            peer_port: 9,
            mclt: 3600,
            max_unacked_updates: 100,
            poll_interval: 10,
            poll_timeout: 60,
            use_safe_period: false,
            safe_period: 3600,
            lease_period_factor: 1.5,
            split: None,
            load_balance_max_seconds: 3,
            backup_pct: 50,
            dynamic_bootp_backup_pct: None,
            rebind_limit: 0,
            failback_hold: 0,
            failover_recover: None,
            partner_software: PartnerSoftware::IscDhcpd,
            auth_key_file: None,
            partner_mclt_min: 300,
            partner_mclt_max: 86_400,
            relay_health: Default::default(),
            pools: Vec::new(),
            subnets: Vec::new(),
            listed: false,
        }
    }

    #[test]
    fn bootp_pct_split_of_dynamic_bootp_scopes() {
        use xdhcpd_config::PoolBalanceCfg;
        let pool = |id: u32, pct: Option<u8>, bootp: bool| PoolBalanceCfg {
            pool_id: id,
            backup_pct: pct,
            boundary: None,
            dynamic_bootp: bootp,
        };
        let mut c = failover_config(FailoverRole::Primary);
        c.backup_pct = 40;
        c.pools = vec![
            pool(0, None, true),
            pool(1, Some(30), true),
            pool(2, Some(20), false),
        ];
        // Without dynamic-bootp-backup-pct: the scope's backup-pct, else the pair's.
        let pct = |c: &FailoverConfig, id| super::rebalance::pool_pct(c, id);
        assert_eq!((pct(&c, 0), pct(&c, 1), pct(&c, 2)), (40, 30, 20));
        // With it: every dynamic-bootp scope takes it; the others keep theirs.
        c.dynamic_bootp_backup_pct = Some(10);
        assert_eq!((pct(&c, 0), pct(&c, 1), pct(&c, 2)), (10, 10, 20));
        // Load balancing forces 50 everywhere (spec).
        c.split = Some(128);
        assert_eq!((pct(&c, 0), pct(&c, 2)), (50, 50));
        // Set on the secondary: ignored, with a note; none on the primary.
        assert!(super::bootp_pct_note(&c).is_none());
        let mut s = failover_config(FailoverRole::Secondary);
        s.dynamic_bootp_backup_pct = Some(10);
        let note = super::bootp_pct_note(&s).expect("note");
        assert!(
            note.contains("dynamic-bootp-backup-pct = 10 ignored on the secondary"),
            "{note}"
        );
    }

    fn table_with_area(dir: &std::path::Path, area: Option<[u8; 64]>) -> Arc<LeaseTable> {
        let pools = [PoolSpec {
            id: 0,
            first: Ipv4Addr::new(10, 0, 1, 0),
            last: Ipv4Addr::new(10, 0, 1, 255),
        }];
        let (t, _) = LeaseTable::open(&dir.join("leases.db"), &pools, &OpenOptions::default())
            .expect("create");
        if let Some(a) = area {
            t.set_failover_area(&a).expect("store");
        }
        Arc::new(t)
    }

    fn stored(role: Option<Role>) -> FailoverPersist {
        FailoverPersist {
            own_state: ServerState::Normal,
            resume_state: ServerState::Normal,
            own_state_since: 1_700_000_000,
            partner_state: Some(ServerState::Normal),
            partner_state_since: 1_700_000_000,
            last_contact: 1_700_000_100,
            last_operational: 1_700_000_100,
            partner_down_since: 0,
            recover_base: 1_700_000_000,
            mclt: 3600,
            ever_communicated: true,
            recover_all: false,
            blind_partner_down: false,
            role,
            connect_max_unacked: 0,
        }
    }

    /// A primary's configuration over a secondary's lease file (and the reverse) is refused
    /// with both roles and the file named.
    /// Every MCLT the configuration accepts gives an engine configuration that validates
    /// (a 30 s MCLT used to fail: "expiry_grace must be below mclt").
    #[test]
    fn short_mclt_gives_a_valid_engine_config() {
        for mclt in [2, 20, 30, 59, 60, 61, 3600] {
            let mut c = failover_config(FailoverRole::Primary);
            c.mclt = mclt;
            let e = super::engine_config(&c);
            assert_eq!(e.validate(), Ok(()), "mclt {mclt}");
            assert!(e.expiry_grace <= xdhcpd_failover::DEFAULT_EXPIRY_GRACE);
        }
        let c = failover_config(FailoverRole::Primary);
        assert_eq!(
            super::engine_config(&c).expiry_grace,
            xdhcpd_failover::DEFAULT_EXPIRY_GRACE
        );
    }

    #[test]
    fn swapped_role_refused_naming_roles_and_lease_file() {
        for (stored_role, configured) in [
            (Role::Secondary, FailoverRole::Primary),
            (Role::Primary, FailoverRole::Secondary),
        ] {
            let dir = tempfile::tempdir().expect("tempdir");
            let table = table_with_area(dir.path(), Some(stored(Some(stored_role)).to_bytes()));
            let err = match Failover::start(&failover_config(configured), table) {
                Ok(_) => panic!("started as {configured:?} over the {stored_role}'s lease file"),
                Err(e) => format!("{e:#}"),
            };
            let configured_name = match configured {
                FailoverRole::Primary => "primary",
                FailoverRole::Secondary => "secondary",
            };
            let file = dir.path().join("leases.db");
            assert!(
                err.contains(&format!("role = \"{configured_name}\""))
                    && err.contains(&format!("failover state of the {stored_role}"))
                    && err.contains(&file.display().to_string()),
                "{err}"
            );
        }
    }

    /// State stored before the role was recorded is taken, and the role is written back.
    #[test]
    fn old_format_state_accepted_and_role_recorded() {
        let dir = tempfile::tempdir().expect("tempdir");
        let table = table_with_area(dir.path(), Some(stored(None).to_bytes()));
        let fo = Failover::start(&failover_config(FailoverRole::Secondary), table.clone())
            .expect("an old-format state starts");
        let recorded = || {
            FailoverPersist::from_bytes(&table.failover_area())
                .ok()?
                .role
        };
        let deadline = std::time::Instant::now() + Duration::from_secs(5);
        while recorded().is_none() && std::time::Instant::now() < deadline {
            std::thread::sleep(Duration::from_millis(20));
        }
        fo.stop(Duration::from_millis(100));
        assert_eq!(recorded(), Some(Role::Secondary));
    }

    /// Storing the failover state must leave every record readable at the next open.
    #[test]
    fn failover_area_survives_reopen_without_quarantine() {
        let dir = tempfile::tempdir().expect("tempdir");
        let path = dir.path().join("t.db");
        let pools = [PoolSpec {
            id: 0,
            first: Ipv4Addr::new(10, 0, 1, 0),
            last: Ipv4Addr::new(10, 0, 1, 255),
        }];
        let opts = OpenOptions::default();
        {
            let (t, _) = LeaseTable::open(&path, &pools, &opts).expect("create");
            t.set_failover_area(&[7u8; 64]).expect("store");
            for (slot, l) in t.iter().collect::<Vec<_>>() {
                let b = xdhcpd_failover::Binding::free(l.addr, 1_795_000_000);
                t.update(slot, |r| xdhcpd_failover::store::write_binding(r, &b));
            }
            t.flush().expect("flush");
        }
        let (t, report) = LeaseTable::open(&path, &pools, &opts).expect("reopen");
        assert!(
            report.quarantined.is_empty(),
            "{:?}",
            &report.quarantined[..report.quarantined.len().min(3)]
        );
        assert_eq!(t.failover_area(), vec![7u8; 64]);
    }
}
