//! The control API: HTTP/JSON (axum) on the control socket (a UNIX socket, mode 0600) and,
//! with `[api] listen`, on a TCP address where every request needs the bearer token of
//! `[api] token-file`. `GET /metrics` serves Prometheus/OpenMetrics text on the same
//! listeners. `xdhcpd ctl` is its client (`ctl.rs`, `client.rs`).
//!
//! It runs on the daemon's API runtime: a tokio runtime on its own thread (`xdhcpd-api`),
//! never on a worker. Handlers read what the workers publish (their counters are atomics
//! each worker alone writes) and the live lease table through its seqlock reads; blocking
//! work (table scans, failover commands that wait for the failover thread) runs on the
//! runtime's blocking pool. Nothing here takes a lock a worker waits for.
//!
//! Parts: `routes.rs` (the router, one handler per endpoint, JSON errors), `request.rs`
//! (parsing of paths, queries and bodies; fuzzed), `metrics.rs` (`/metrics`), `ctl.rs` and
//! `client.rs` (the command line side). The OpenAPI description is `userspace/openapi.yaml`;
//! a test checks it lists exactly the router's routes.

pub mod client;
pub mod ctl;
mod metrics;
pub mod request;
mod routes;
#[cfg(test)]
mod tests;

use std::net::SocketAddr;
use std::os::unix::fs::PermissionsExt;
use std::os::unix::net::UnixStream;
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::thread::JoinHandle;
use std::time::Instant;

use anyhow::{bail, Context};
use lease_store::LeaseTable;
use xdhcpd_config::Config;
use xdhcpd_dhcpv4::EngineStats;
use xdhcpd_io::xdp::CounterReader;

use crate::control::Handler;
use crate::server::commit::Committer;
use crate::server::worker::WorkerCounters;

pub use routes::{router, ROUTES};

/// Applies a new configuration file (plugged in by the daemon; `None`: reload is not
/// available and `POST /v1/reload` answers 501).
/// The reload hook: the report of an accepted reload, or the refusal as the JSON error body
/// (`{"error": reason, "reload": details}`), answered with 409.
pub type ReloadFn = Arc<dyn Fn() -> Result<serde_json::Value, serde_json::Value> + Send + Sync>;

/// The configuration the API answers from: the one being served, so `/v1/status`,
/// `/v1/pools`, `/v1/subnets` and `/metrics` follow reloads.
#[derive(Clone)]
pub enum ConfigView {
    /// A fixed configuration (a daemon without reload, tests).
    Fixed(Arc<Config>),
    /// The reloader's current configuration.
    Live(crate::server::reload::Reloader),
}

impl ConfigView {
    /// Reload counters and the last outcome (`None`: the configuration is fixed).
    pub fn reload_stats(&self) -> Option<crate::server::reload::ReloadStats> {
        match self {
            ConfigView::Fixed(_) => None,
            ConfigView::Live(r) => Some(r.stats()),
        }
    }

    /// The configuration now.
    pub fn get(&self) -> Arc<Config> {
        match self {
            ConfigView::Fixed(c) => c.clone(),
            ConfigView::Live(r) => r.config(),
        }
    }
}

impl From<Arc<Config>> for ConfigView {
    fn from(c: Arc<Config>) -> Self {
        ConfigView::Fixed(c)
    }
}

/// What the API reads. Everything is shared with the running daemon; nothing is copied per
/// request except what an answer holds.
pub struct ApiState {
    pub config: ConfigView,
    pub interface: String,
    pub server_id: std::net::Ipv4Addr,
    /// `"xdp"` or `"udp"`.
    pub io: &'static str,
    pub table: Arc<LeaseTable>,
    /// One per worker (= per RX queue in XDP mode), in queue order.
    pub engine_stats: Vec<Arc<EngineStats>>,
    pub workers: Vec<Arc<WorkerCounters>>,
    pub committer: Option<Arc<Committer>>,
    pub xdp: Option<CounterReader>,
    /// Failover requests, one handler per relationship by name (empty: no failover).
    pub failover: Vec<(String, Handler)>,
    /// Registration requests (`Request::Registrations`; `None`: no `registration-file`).
    pub registrations: Option<Handler>,
    /// The PostgreSQL follower's status (`None`: `registrations.backend = "local"`).
    pub registrations_pg: Option<Arc<crate::registrations::postgres::FollowerStatus>>,
    pub reload: Option<ReloadFn>,
    pub started: Instant,
    pub started_unix: u32,
    /// Serve `GET /metrics`.
    pub metrics: bool,
    /// Alarm counters and states, kept by the main loop's alarm checks.
    pub alarms: Option<Arc<crate::alarms::AlarmCounters>>,
    /// The lease event log's counters and the slots the workers could not hand to it
    /// (`None`: no `[event-log]`).
    pub events: Option<(
        Arc<crate::events::EventLogStats>,
        Arc<std::sync::atomic::AtomicU64>,
    )>,
    /// The reconfigure driver (`[reconfigure]`); None: off.
    pub reconfigure: Option<crate::server::reconfigure::ReconfHandle>,
    /// The XDP unknown-client drop (`[limits] xdp-drop-unknown`); None: off.
    pub known_macs: Option<Arc<crate::server::known_macs::KnownMacs>>,
    /// Requests the API refused by rule (not by malformed input), by reason.
    pub refused: ApiRefusals,
    /// Bulk leasequery counters (`[bulk-leasequery]`); None: off.
    pub bulk_leasequery: Option<Arc<xdhcpd_dhcpv4::bulk_leasequery::BulkStats>>,
    /// The relay health check (`[failover] relay-health-check`); None: off.
    pub relay_health: Option<Arc<xdhcpd_failover::RelayHealth>>,
}

/// Which listener a request came through. Only the control socket (0600: root or the
/// daemon's user) may name files on the server host: a bearer-token holder over TCP is a
/// remote operator, and a registration import or export by path would let them read or
/// overwrite any file the daemon can reach.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Transport {
    /// The UNIX control socket.
    Unix,
    /// `[api] listen`.
    Tcp,
}

/// Counts of requests refused by rule (`/metrics`: `xdhcpd_api_refused`).
#[derive(Debug, Default)]
pub struct ApiRefusals {
    /// A registration import / export naming a server file, over TCP.
    pub server_file_over_tcp: std::sync::atomic::AtomicU64,
}

/// Where the API listens.
#[derive(Clone, Debug)]
pub struct Listen {
    /// The control socket (created mode 0600).
    pub socket: PathBuf,
    /// An optional TCP listener and the bearer token it requires (`None` only on loopback).
    pub tcp: Option<(SocketAddr, Option<String>)>,
}

impl Listen {
    /// From the configuration: reads the token file; refuses a TCP address that is not
    /// loopback without a token.
    pub fn from_config(socket: PathBuf, cfg: &xdhcpd_config::ApiConfig) -> anyhow::Result<Self> {
        let token = match &cfg.token_file {
            Some(p) => Some(read_token(p)?),
            None => None,
        };
        let tcp = match cfg.listen {
            Some(a) if !a.ip().is_loopback() && token.is_none() => bail!(
                "[api] listen = {a} is not a loopback address: refusing to serve the API there \
                 without a bearer token (set api.token-file)"
            ),
            Some(a) => Some((a, token)),
            None => None,
        };
        Ok(Listen { socket, tcp })
    }
}

/// The token in `path`: its first line, trimmed; at least 16 characters.
pub fn read_token(path: &Path) -> anyhow::Result<String> {
    let text = std::fs::read_to_string(path)
        .with_context(|| format!("reading the API token file {}", path.display()))?;
    let token = text.lines().next().unwrap_or("").trim().to_string();
    if token.len() < 16 {
        bail!(
            "API token file {}: the token (first line) has {} characters; at least 16 needed",
            path.display(),
            token.len()
        );
    }
    if let Ok(md) = std::fs::metadata(path) {
        if md.permissions().mode() & 0o077 != 0 {
            tracing::warn!(
                "API token file {} is readable by group or others (mode {:o})",
                path.display(),
                md.permissions().mode() & 0o777
            );
        }
    }
    Ok(token)
}

/// The running API: its thread and listeners; the socket file is removed on drop.
pub struct ApiServer {
    socket: PathBuf,
    tcp: Option<SocketAddr>,
    shutdown: Option<tokio::sync::watch::Sender<bool>>,
    thread: Option<JoinHandle<()>>,
}

impl ApiServer {
    /// Binds the listeners (a live daemon already on the socket is an error; a stale file is
    /// removed) and starts the API thread.
    pub fn start(listen: &Listen, state: Arc<ApiState>) -> anyhow::Result<Self> {
        let path = &listen.socket;
        if path.exists() {
            if UnixStream::connect(path).is_ok() {
                bail!(
                    "control socket {} is in use by a running process (another xdhcpd on this \
                     interface?); set server.control-socket or --control-socket",
                    path.display()
                );
            }
            std::fs::remove_file(path)
                .with_context(|| format!("removing stale control socket {}", path.display()))?;
        }
        if let Some(dir) = path.parent() {
            if !dir.as_os_str().is_empty() && !dir.exists() {
                std::fs::create_dir_all(dir)
                    .with_context(|| format!("creating {}", dir.display()))?;
            }
        }
        let unix = std::os::unix::net::UnixListener::bind(path)
            .with_context(|| format!("binding control socket {}", path.display()))?;
        // Commands change the failover state and answers name subscribers: owner only.
        std::fs::set_permissions(path, std::fs::Permissions::from_mode(0o600))
            .with_context(|| format!("chmod 600 {}", path.display()))?;
        unix.set_nonblocking(true)
            .context("control socket: non-blocking accept")?;
        let (tcp, tcp_addr) = match &listen.tcp {
            Some((addr, token)) => {
                let l = std::net::TcpListener::bind(addr)
                    .with_context(|| format!("binding the API's TCP address {addr}"))?;
                l.set_nonblocking(true)
                    .context("API TCP listener: non-blocking accept")?;
                let bound = l.local_addr().unwrap_or(*addr);
                (Some((l, token.clone())), Some(bound))
            }
            None => (None, None),
        };
        let (tx, rx) = tokio::sync::watch::channel(false);
        let thread = std::thread::Builder::new()
            .name("xdhcpd-api".into())
            .spawn(move || {
                crate::server::sched::background();
                serve(unix, tcp, state, rx)
            })
            .context("spawning the API thread")?;
        Ok(ApiServer {
            socket: path.clone(),
            tcp: tcp_addr,
            shutdown: Some(tx),
            thread: Some(thread),
        })
    }

    pub fn socket(&self) -> &Path {
        &self.socket
    }

    /// The bound TCP address (the real port when the configuration said 0).
    pub fn tcp_addr(&self) -> Option<SocketAddr> {
        self.tcp
    }

    pub fn stop(&mut self) {
        if let Some(tx) = self.shutdown.take() {
            let _ = tx.send(true);
        }
        if let Some(t) = self.thread.take() {
            let _ = t.join();
        }
        let _ = std::fs::remove_file(&self.socket);
    }
}

impl Drop for ApiServer {
    fn drop(&mut self) {
        self.stop();
    }
}

fn serve(
    unix: std::os::unix::net::UnixListener,
    tcp: Option<(std::net::TcpListener, Option<String>)>,
    state: Arc<ApiState>,
    stop: tokio::sync::watch::Receiver<bool>,
) {
    let rt = match tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .max_blocking_threads(4)
        .thread_name("xdhcpd-api-blocking")
        .build()
    {
        Ok(rt) => rt,
        Err(e) => {
            tracing::error!("control API: no tokio runtime: {e}");
            return;
        }
    };
    rt.block_on(async move {
        let stopped = |mut rx: tokio::sync::watch::Receiver<bool>| async move {
            let _ = rx.wait_for(|s| *s).await;
        };
        let mut tasks = Vec::new();
        match tokio::net::UnixListener::from_std(unix) {
            Ok(l) => {
                let app = router(state.clone(), None, Transport::Unix);
                let fut = axum::serve(l, app).with_graceful_shutdown(stopped(stop.clone()));
                tasks.push(tokio::spawn(async move {
                    if let Err(e) = fut.await {
                        tracing::error!("control API (socket): {e}");
                    }
                }));
            }
            Err(e) => tracing::error!("control API: socket listener: {e}"),
        }
        if let Some((l, token)) = tcp {
            match tokio::net::TcpListener::from_std(l) {
                Ok(l) => {
                    let app = router(state.clone(), token.map(Arc::from), Transport::Tcp);
                    let fut = axum::serve(l, app).with_graceful_shutdown(stopped(stop.clone()));
                    tasks.push(tokio::spawn(async move {
                        if let Err(e) = fut.await {
                            tracing::error!("control API (TCP): {e}");
                        }
                    }));
                }
                Err(e) => tracing::error!("control API: TCP listener: {e}"),
            }
        }
        for t in tasks {
            let _ = t.await;
        }
    });
}
