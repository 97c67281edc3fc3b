//! Configuration reload without a restart (SIGHUP, `xdhcpd ctl reload`, the control API).
//!
//! The file is read and validated first (`xdhcpd_config::load`: every error with
//! file:line:col). A file that does not validate, or that changes something only a restart can
//! change, is refused: the running configuration stays, the reason is logged and returned.
//! An accepted file becomes a new, immutable [`EngineShared`] built by the same
//! `EngineShared::new` as at start (so every configuration section the engine reads flows
//! through, whoever adds it) over the same lease table and failover policy. It is published in
//! the [`EngineCell`]; each worker swaps it in at its next batch boundary (one relaxed atomic
//! load per batch), so no message is served half with the old and half with the new
//! configuration, no worker waits, no packet and no lease is dropped.
//!
//! What needs a restart (refused by reload, with the reason): `server.interface`, `io`,
//! `xdp-mode`, `queues`, `server-id`, `lease-file`, `commit`, `ebpf-object`,
//! `control-socket`, the `[failover]` section, and pool changes other than growth.
//!
//! New pools and grown ranges are applied live: the lease file keeps spare records
//! (`[lease] spare-addresses`) and [`LeaseTable::grow`](lease_store::LeaseTable::grow) puts
//! the new addresses there (records zeroed and flushed, header flushed, then the table's new
//! layout published and the records listed free) before the new engine is published, so a
//! worker sees a new pool only once its records are ready. Refused as needing a restart: a
//! pool removed, shrunk or moved, a pool inserted before existing ones (pools are numbered in
//! file order, and the numbers of running pools cannot change), and more new addresses than
//! the spare records.
//!
//! With `[failover]` the same growth applies, on each partner by its own reload. The new
//! records start as on a fresh start of a pair: FREE, owned by the primary, so the secondary
//! gives none of them out until the primary has granted it its share (BACKUP). The failover
//! driver notices the table grew (`failover/driver.rs`, `follow_growth`): the balancer learns
//! the new ranges, the primary grants the backup its share at once, and both ask the partner
//! for its unacknowledged updates (UPDREQ). While only one side has reloaded, the other
//! refuses updates for the new addresses (BNDACK reject reason 1, illegal IP address:
//! counted, logged once a minute) and the sender sends them again after the partner's
//! reload (its UPDREQ) or a backoff; the pair stays NORMAL.

use std::path::PathBuf;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex};

use lease_store::{GrowError, PoolSpec};
use serde::{Deserialize, Serialize};
use xdhcpd_config::{Config, IoMode};
use xdhcpd_dhcpv4::EngineShared;

use crate::clock::unix_now;

/// The engine configuration the workers serve with; replaced as a whole by a reload.
pub struct EngineCell {
    generation: AtomicU64,
    current: Mutex<Arc<EngineShared>>,
}

impl EngineCell {
    /// A cell holding `shared` as generation 0.
    pub fn new(shared: Arc<EngineShared>) -> Self {
        EngineCell {
            generation: AtomicU64::new(0),
            current: Mutex::new(shared),
        }
    }

    /// Number of configurations published after the first (a worker compares it once per
    /// batch and calls [`EngineCell::load`] only when it moved).
    #[inline]
    pub fn generation(&self) -> u64 {
        self.generation.load(Ordering::Acquire)
    }

    /// The current engine configuration.
    pub fn load(&self) -> Arc<EngineShared> {
        self.current
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .clone()
    }

    /// Publishes `shared`; returns its generation.
    fn publish(&self, shared: Arc<EngineShared>) -> u64 {
        let mut g = self.current.lock().unwrap_or_else(|e| e.into_inner());
        *g = shared;
        // Under the lock: a worker that sees the new generation loads the new value.
        self.generation.fetch_add(1, Ordering::AcqRel) + 1
    }
}

/// What an accepted reload did.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct ReloadReport {
    /// The file read.
    pub file: String,
    /// Generation of the configuration now served (1 = first reload).
    pub generation: u64,
    /// Unix time of the reload.
    pub at: u32,
    /// What changed, one line per part (empty: the file had no change).
    pub changes: Vec<String>,
    pub subnets: usize,
    pub pools: usize,
    pub reservations: usize,
    /// Records that were `Reserved` for a reservation the new file dropped, now free.
    pub reservations_released: usize,
}

/// Why a reload was refused; the running configuration is unchanged.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize, thiserror::Error)]
#[serde(tag = "kind", rename_all = "kebab-case")]
pub enum ReloadError {
    /// The file does not validate (each error with file:line:col and field).
    #[error("reload refused, running configuration kept: {file} is invalid:\n{}", errors.join("\n"))]
    Invalid { file: String, errors: Vec<String> },
    /// The file changes what only a restart can change.
    #[error("reload refused, running configuration kept: {file} changes what needs a restart:\n{}", reasons.join("\n"))]
    NeedsRestart { file: String, reasons: Vec<String> },
}

/// Reload counters (for metrics) and the last outcome (for status).
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct ReloadStats {
    pub accepted: u64,
    pub refused: u64,
    /// Generation of the configuration served.
    pub generation: u64,
    /// Unix time of the last attempt (0: none).
    pub last_at: u32,
    /// The last attempt's refusal, if it was refused.
    pub last_error: Option<ReloadError>,
}

/// Command-line overrides that a reloaded file must keep (they win over the file at start).
#[derive(Clone, Debug, Default)]
pub struct Overrides {
    pub interface: Option<String>,
    pub lease_file: Option<PathBuf>,
    pub io: Option<IoMode>,
}

impl Overrides {
    /// Applies the overrides to a freshly loaded configuration.
    pub fn apply(&self, cfg: &mut Config) {
        if let Some(i) = &self.interface {
            cfg.server.interface = i.clone();
        }
        if let Some(l) = &self.lease_file {
            cfg.server.lease_file = l.clone();
        }
        if let Some(io) = self.io {
            cfg.server.io = io;
        }
    }
}

struct Inner {
    path: PathBuf,
    overrides: Overrides,
    cell: Arc<EngineCell>,
    /// Serialises reloads; holds the configuration being served.
    current: Mutex<Arc<Config>>,
    /// The same configuration for readers (the control API): never held during a reload.
    served: Mutex<Arc<Config>>,
    stats: Mutex<ReloadStats>,
    /// With failover: where the pools' balance settings go (the failover driver reads them
    /// when it sees the table grow).
    /// One per relationship, by name.
    failover_pools: Mutex<Vec<(String, crate::failover::PoolBalanceCell)>>,
    /// Told of an accepted configuration before it is served (`Reloader::on_reload`).
    on_reload: Mutex<Option<ReloadHook>>,
}

/// What the daemon does with an accepted configuration before the workers serve it.
pub type ReloadHook = Arc<dyn Fn(&Config) + Send + Sync>;

/// The handle SIGHUP, the control socket and the control API reload through.
#[derive(Clone)]
pub struct Reloader {
    inner: Arc<Inner>,
}

impl Reloader {
    /// A reloader for the daemon started with `running` (read from `path`, with `overrides`
    /// applied) whose workers serve from `cell`.
    pub fn new(
        path: PathBuf,
        overrides: Overrides,
        running: Arc<Config>,
        cell: Arc<EngineCell>,
    ) -> Self {
        Reloader {
            inner: Arc::new(Inner {
                path,
                overrides,
                cell,
                served: Mutex::new(running.clone()),
                current: Mutex::new(running),
                stats: Mutex::new(ReloadStats::default()),
                failover_pools: Mutex::new(Vec::new()),
                on_reload: Mutex::new(None),
            }),
        }
    }

    /// With failover: a reload that adds pools publishes each relationship's balance
    /// settings (its pools) in its cell, by relationship name, before the lease table grows,
    /// for that relationship's failover driver.
    pub fn set_failover_pools(&self, cells: Vec<(String, crate::failover::PoolBalanceCell)>) {
        *self
            .inner
            .failover_pools
            .lock()
            .unwrap_or_else(|e| e.into_inner()) = cells;
    }

    /// Calls `hook` with every accepted configuration, before the workers serve it (the XDP
    /// map of known MACs takes the new hosts first).
    pub fn on_reload(&self, hook: ReloadHook) {
        *self
            .inner
            .on_reload
            .lock()
            .unwrap_or_else(|e| e.into_inner()) = Some(hook);
    }

    /// Counters and the last outcome.
    pub fn stats(&self) -> ReloadStats {
        self.inner
            .stats
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .clone()
    }

    /// The configuration being served (does not wait for a reload in progress).
    pub fn config(&self) -> Arc<Config> {
        self.inner
            .served
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .clone()
    }

    /// Reads, validates and applies the configuration file; logs the outcome.
    pub fn reload(&self) -> Result<ReloadReport, ReloadError> {
        let inner = &*self.inner;
        let mut current = inner.current.lock().unwrap_or_else(|e| e.into_inner());
        let now = unix_now();
        let r = self.reload_locked(&mut current, now);
        let mut st = inner.stats.lock().unwrap_or_else(|e| e.into_inner());
        st.last_at = now;
        match &r {
            Ok(rep) => {
                st.accepted += 1;
                st.generation = rep.generation;
                st.last_error = None;
                tracing::info!(
                    "reload: {} applied (configuration generation {}): {}",
                    rep.file,
                    rep.generation,
                    if rep.changes.is_empty() {
                        "no change".to_string()
                    } else {
                        rep.changes.join("; ")
                    }
                );
            }
            Err(e) => {
                st.refused += 1;
                st.last_error = Some(e.clone());
                tracing::error!("{e}");
            }
        }
        r
    }

    fn reload_locked(
        &self,
        current: &mut Arc<Config>,
        now: u32,
    ) -> Result<ReloadReport, ReloadError> {
        let inner = &*self.inner;
        let file = inner.path.display().to_string();
        let mut cfg = xdhcpd_config::load(&inner.path).map_err(|e| ReloadError::Invalid {
            file: file.clone(),
            errors: e.errors.iter().map(|e| e.to_string()).collect(),
        })?;
        inner.overrides.apply(&mut cfg);
        let old = inner.cell.load();
        let mut reasons = needs_restart(current, &cfg);
        let pools = pool_specs(&cfg);
        if current.pool_specs() != cfg.pool_specs() && reasons.is_empty() {
            // With [failover] too: the failover driver follows the growth (module docs).
            if let Err(e) = old.table.growth_for(&pools) {
                reasons.push(pool_refusal(&e));
            }
        }
        if !reasons.is_empty() {
            return Err(ReloadError::NeedsRestart { file, reasons });
        }
        let mut changes = describe_changes(current, &cfg);
        // With failover, the new pools' balance settings are in place before the failover
        // driver can see the table grow (it reads them then).
        let fo_cells = inner
            .failover_pools
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .clone();
        let publish = |c: &Config| {
            for (name, cell) in &fo_cells {
                if let Some(f) = c.failover_named(name) {
                    *cell.lock().unwrap_or_else(|e| e.into_inner()) = f.pools.clone();
                }
            }
        };
        publish(&cfg);
        // New records are ready (and on the free lists) before any engine knows the new
        // pools; a grown range of a running pool is served from now on.
        let grown = old.table.grow(&pools).map_err(|e| {
            publish(current);
            ReloadError::NeedsRestart {
                file: file.clone(),
                reasons: vec![pool_refusal(&e)],
            }
        })?;
        if grown.addresses > 0 {
            changes.push(format!(
                "lease table grown by {} address(es): {} ({} spare left)",
                grown.addresses,
                grown
                    .added
                    .iter()
                    .map(|p| format!("pool {} {}-{}", p.id, p.first, p.last))
                    .collect::<Vec<_>>()
                    .join(", "),
                grown.spare_left
            ));
        }
        let cfg = Arc::new(cfg);
        let mut shared = EngineShared::new(cfg.clone(), old.table.clone(), old.server_id);
        if !old.failovers.is_empty() {
            shared = shared.with_failovers(old.failovers.clone());
        }
        // The relay health check's table: the same relays and times (its settings are
        // `[failover]` keys, which need a restart).
        if let Some(r) = &old.rhc {
            shared = shared.with_relay_health(r.clone());
        }
        // The live registration store is not part of the file: the new engine reads the same.
        if let Some(r) = &old.registrations {
            shared = shared.with_registrations(r.clone());
        }
        // Reconfiguration: the same secret and per-slot book; policy and keys from the file.
        if let Some((secret, book)) = &old.reconf_base {
            shared = shared.with_reconfigure(secret, book.clone());
        }
        // Lease caps: the same counts; the new caps and the networks of added pools.
        if let Some(caps) = &old.caps {
            caps.configure(&cfg);
            shared = shared.with_lease_caps(caps.clone());
        }
        // New reservations are protected before any worker serves with them; the records of
        // dropped ones are freed after (until then the old engines keep them reserved).
        shared.protect_reservations(now);
        let hook = inner
            .on_reload
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .clone();
        if let Some(h) = hook {
            h(&cfg);
        }
        let shared = Arc::new(shared);
        let generation = inner.cell.publish(shared.clone());
        let released = shared.unprotect_dropped_reservations(&old);
        *current = cfg.clone();
        *inner.served.lock().unwrap_or_else(|e| e.into_inner()) = cfg.clone();
        Ok(ReloadReport {
            file,
            generation,
            at: now,
            changes,
            subnets: cfg.subnets.len(),
            pools: cfg.subnets.iter().map(|s| s.pools.len()).sum(),
            reservations: shared.reservation_count(),
            reservations_released: released,
        })
    }
}

/// What differs between the running and the new configuration that a reload cannot apply,
/// one sentence per difference (empty: the reload may go ahead).
pub fn needs_restart(old: &Config, new: &Config) -> Vec<String> {
    let mut v = Vec::new();
    let (a, b) = (&old.server, &new.server);
    let mut field = |name: &str, differs: bool, from: String, to: String| {
        if differs {
            v.push(format!(
                "server.{name} changed ({from} -> {to}): needs a restart"
            ));
        }
    };
    field(
        "interface",
        a.interface != b.interface,
        a.interface.clone(),
        b.interface.clone(),
    );
    field(
        "io",
        a.io != b.io,
        format!("{:?}", a.io),
        format!("{:?}", b.io),
    );
    field(
        "xdp-mode",
        a.xdp_mode != b.xdp_mode,
        format!("{:?}", a.xdp_mode),
        format!("{:?}", b.xdp_mode),
    );
    field(
        "queues",
        a.queues != b.queues,
        format!("{:?}", a.queues),
        format!("{:?}", b.queues),
    );
    field(
        "server-id",
        a.server_id != b.server_id,
        format!("{:?}", a.server_id),
        format!("{:?}", b.server_id),
    );
    field(
        "lease-file",
        a.lease_file != b.lease_file,
        a.lease_file.display().to_string(),
        b.lease_file.display().to_string(),
    );
    field(
        "commit",
        a.commit != b.commit,
        format!("{:?}", a.commit),
        format!("{:?}", b.commit),
    );
    field(
        "commit-min-gap-us",
        a.commit_min_gap != b.commit_min_gap,
        format!("{}", a.commit_min_gap.as_micros()),
        format!("{}", b.commit_min_gap.as_micros()),
    );
    field(
        "worker-slice-us",
        a.worker_slice != b.worker_slice,
        format!("{}", a.worker_slice.as_micros()),
        format!("{}", b.worker_slice.as_micros()),
    );
    field(
        "background-nice",
        a.background_nice != b.background_nice,
        format!("{}", a.background_nice),
        format!("{}", b.background_nice),
    );
    field(
        "commit-coalesce-us",
        a.commit_coalesce != b.commit_coalesce,
        format!("{}", a.commit_coalesce.as_micros()),
        format!("{}", b.commit_coalesce.as_micros()),
    );
    field(
        "commit-coalesce-max-us",
        a.commit_coalesce_max != b.commit_coalesce_max,
        format!("{}", a.commit_coalesce_max.as_micros()),
        format!("{}", b.commit_coalesce_max.as_micros()),
    );
    field(
        "ebpf-object",
        a.ebpf_object != b.ebpf_object,
        format!("{:?}", a.ebpf_object),
        format!("{:?}", b.ebpf_object),
    );
    field(
        "control-socket",
        a.control_socket != b.control_socket,
        format!("{:?}", a.control_socket),
        format!("{:?}", b.control_socket),
    );
    field(
        "registration-file",
        a.registration_file != b.registration_file,
        format!("{:?}", a.registration_file),
        format!("{:?}", b.registration_file),
    );
    let name = |a: &Option<xdhcpd_config::Account>| {
        a.as_ref().map_or("(none)".to_string(), |a| a.name.clone())
    };
    field("user", a.user != b.user, name(&a.user), name(&b.user));
    field("group", a.group != b.group, name(&a.group), name(&b.group));
    if old.registrations != new.registrations {
        v.push(
            "[registrations] changed: the registration backend and its connection are set up \
             at start; needs a restart"
                .to_string(),
        );
    }
    let names = |c: &Config| {
        c.failovers
            .iter()
            .map(|f| f.name.clone())
            .collect::<Vec<_>>()
    };
    if names(old) != names(new) {
        v.push(
            "[failover] added or removed: the failover relationships are set up at start; \
             needs a restart"
                .into(),
        );
    } else {
        for (a, b) in old.failovers.iter().zip(&new.failovers) {
            // The per-pool balance settings follow the pools: new pools bring theirs (the
            // failover driver applies them), running pools keep theirs; new subnets join
            // their relationship.
            let strip = |f: &xdhcpd_config::FailoverConfig| xdhcpd_config::FailoverConfig {
                pools: Vec::new(),
                subnets: Vec::new(),
                ..f.clone()
            };
            if strip(a) != strip(b) {
                v.push(if a.listed {
                    format!(
                        "[[failover]] {:?} changed: the failover relationship is set up at \
                         start; needs a restart",
                        a.name
                    )
                } else {
                    "[failover] changed: the failover relationship is set up at start; needs \
                     a restart"
                        .into()
                });
            }
            for p in &a.pools {
                if let Some(q) = b.pools.iter().find(|q| q.pool_id == p.pool_id) {
                    if p != q {
                        v.push(format!(
                            "pool {}: its subnet's failover balance (backup-pct, \
                             backup-allocation-boundary, dynamic-bootp) changed: the pools' \
                             balance between the partners is set up at start; needs a restart",
                            p.pool_id
                        ));
                    }
                }
            }
        }
        // A running pool stays in its relationship (or out of failover).
        let rel_of = |c: &Config, pool: u32| {
            c.failovers
                .iter()
                .find(|f| f.pools.iter().any(|p| p.pool_id == pool))
                .map(|f| f.name.clone())
        };
        for s in &old.subnets {
            for p in &s.pools {
                let (was, now) = (rel_of(old, p.id), rel_of(new, p.id));
                let still = new
                    .subnets
                    .iter()
                    .any(|n| n.pools.iter().any(|q| q.id == p.id));
                if still && was != now {
                    let show = |r: &Option<String>| {
                        r.as_ref()
                            .map_or("no failover".into(), |n| format!("relationship {n:?}"))
                    };
                    v.push(format!(
                        "pool {}: moved from {} to {}: a pool's failover relationship is set up \
                         at start; needs a restart",
                        p.id,
                        show(&was),
                        show(&now)
                    ));
                }
            }
        }
    }
    if old.api != new.api {
        v.push(
            "[api] changed: the API listeners and its token are set up at start; needs a restart"
                .into(),
        );
    }
    if !old.limits.caps_on() && new.limits.caps_on() {
        v.push(
            "[limits] max-leases-per-circuit / max-leases-per-remote-id turned on: the counts \
             are built from the lease table at start; needs a restart (changing or turning \
             off a cap reloads live)"
                .into(),
        );
    }
    if old.limits.xdp_drop_unknown != new.limits.xdp_drop_unknown
        || old.limits.xdp_known_macs != new.limits.xdp_known_macs
    {
        v.push(
            "[limits] xdp-drop-unknown / xdp-known-macs changed: the XDP program's map of \
             known hardware addresses is set up at start; needs a restart"
                .into(),
        );
    }
    if old.bulk_leasequery != new.bulk_leasequery {
        v.push(
            "[bulk-leasequery] changed: its TCP listener is set up at start; needs a restart"
                .into(),
        );
    }
    if old.rate_limit != new.rate_limit {
        v.push(
            "[rate-limit] changed: the XDP program's rate-limit map is written at start; \
             needs a restart"
                .into(),
        );
    }
    if old.v6 != new.v6 {
        v.push(
            "[dhcpv6] / [[subnet6]] changed: the DHCPv6 server and its binding file are built \
             at start; needs a restart"
                .into(),
        );
    }
    if !new.v6.subnets.is_empty()
        && old
            .classes
            .iter()
            .zip(&new.classes)
            .any(|(a, b)| a.vendor_options6 != b.vendor_options6)
    {
        v.push(
            "[[class]] vendor-option (DHCPv6) changed: the DHCPv6 engine reads classes at \
             start; needs a restart"
                .into(),
        );
    }
    if old.reconfigure.is_none() && new.reconfigure.is_some() {
        v.push(
            "[reconfigure] added: its key secret and per-binding book are set up at start; \
             needs a restart (changes to an existing section reload live)"
                .into(),
        );
    }
    if old.event_log != new.event_log {
        v.push(
            "[event-log] changed: the event log writer is set up at start; needs a restart".into(),
        );
    }
    v
}

/// The configured pools as the lease table takes them.
fn pool_specs(cfg: &Config) -> Vec<PoolSpec> {
    cfg.pool_specs()
        .into_iter()
        .map(|(id, first, last)| PoolSpec { id, first, last })
        .collect()
}

/// The reason a pool change cannot be applied live.
fn pool_refusal(e: &GrowError) -> String {
    match e {
        GrowError::Unsupported(why) => format!(
            "pools changed ({why}); pools are numbered in file order, so new pools go after the \
             existing ones: needs a restart (the lease file is then rebuilt keeping every lease)"
        ),
        GrowError::Capacity { .. } | GrowError::PoolTable { .. } => {
            format!("pools changed: needs a restart: {e}")
        }
        GrowError::Storage(e) => {
            format!("pools changed: growing the lease file failed ({e}): needs a restart")
        }
    }
}

/// One line per changed part: the global lease times, each subnet (by its network), subnets
/// added or removed, anything else in the file.
pub fn describe_changes(old: &Config, new: &Config) -> Vec<String> {
    let mut v = Vec::new();
    if old.lease != new.lease {
        v.push("[lease] times changed".into());
    }
    if old.server.trusted_relays != new.server.trusted_relays
        || old.server.leasequery_allow != new.server.leasequery_allow
        || old.server.untrusted_relay_info != new.server.untrusted_relay_info
    {
        v.push("relay trust / leasequery-allow changed".into());
    }
    for s in &new.subnets {
        match old.subnets.iter().find(|o| o.net == s.net) {
            None => v.push(format!("subnet {} added", s.net)),
            Some(o) => {
                let mut parts = Vec::new();
                if o.options != s.options
                    || o.next_server != s.next_server
                    || o.boot_file != s.boot_file
                {
                    parts.push("options");
                }
                if o.times != s.times {
                    parts.push("lease times");
                }
                if o.reservations != s.reservations {
                    parts.push("reservations");
                }
                if o.relay_addresses != s.relay_addresses {
                    parts.push("relay-addresses");
                }
                if o.pools != s.pools {
                    parts.push("pools");
                }
                if o.dynamic_bootp != s.dynamic_bootp {
                    parts.push("dynamic-bootp");
                }
                if !parts.is_empty() {
                    v.push(format!("subnet {}: {} changed", s.net, parts.join(", ")));
                } else if format!("{o:?}") != format!("{s:?}") {
                    v.push(format!("subnet {} changed", s.net));
                }
            }
        }
    }
    for o in &old.subnets {
        if !new.subnets.iter().any(|s| s.net == o.net) {
            v.push(format!("subnet {} removed", o.net));
        }
    }
    if v.is_empty() && format!("{old:?}") != format!("{new:?}") {
        v.push("other settings changed".into());
    }
    v
}

#[cfg(test)]
mod tests {
    use super::*;
    use lease_store::{LeaseState, LeaseTable, OpenOptions, PoolSpec};
    use std::net::Ipv4Addr;

    #[test]
    fn reload_bootp_key_is_live_outside_failover_and_a_restart_inside() {
        let base = "[server]\ninterface = \"eth0\"\n\n{F}[[subnet]]\ncidr = \"10.0.0.0/24\"\n{B}[[subnet.pool]]\nrange = \"10.0.0.10-10.0.0.20\"\n";
        let parse = |f: &str, b: &str| {
            xdhcpd_config::parse(&base.replace("{F}", f).replace("{B}", b), "t.toml")
                .unwrap_or_else(|e| panic!("{e}"))
        };
        let (off, on) = (parse("", ""), parse("", "dynamic-bootp = true\n"));
        assert!(needs_restart(&off, &on).is_empty());
        assert_eq!(
            describe_changes(&off, &on),
            vec!["subnet 10.0.0.0/24: dynamic-bootp changed".to_string()]
        );
        let fo = "[failover]\nrole = \"primary\"\nname = \"pair\"\naddress = \"10.88.0.1\"\npeer-address = \"10.88.0.2\"\npartner-software = \"isc-dhcpd\"\n\n";
        let (off, on) = (parse(fo, ""), parse(fo, "dynamic-bootp = true\n"));
        let why = needs_restart(&off, &on);
        assert!(why.iter().any(|r| r.contains("dynamic-bootp")), "{why:?}");
        // dynamic-bootp-backup-pct is a [failover] key: a restart.
        let pct = fo.replace("name", "dynamic-bootp-backup-pct = 20\nname");
        let why = needs_restart(&off, &parse(&pct, ""));
        assert!(
            why.iter().any(|r| r.contains("[failover] changed")),
            "{why:?}"
        );
    }

    fn text(dns: &str, extra_pool: bool, iface: &str, reservation: bool) -> String {
        let mut t = format!(
            "[server]\ninterface = \"{iface}\"\nserver-id = \"10.0.0.1\"\n\
             lease-file = \"LEASES\"\n\n[[subnet]]\ncidr = \"10.0.0.0/24\"\n\
             dns-servers = [\"{dns}\"]\n\n[[subnet.pool]]\nrange = \"10.0.0.10-10.0.0.19\"\n"
        );
        if reservation {
            t.push_str(
                "\n[[subnet.reservation]]\nhw = \"02:00:00:00:00:01\"\nip = \"10.0.0.12\"\n",
            );
        }
        if extra_pool {
            t.push_str("\n[[subnet.pool]]\nrange = \"10.0.0.100-10.0.0.109\"\n");
        }
        t
    }

    struct Bed {
        _dir: tempfile::TempDir,
        file: PathBuf,
        leases: PathBuf,
        reloader: Reloader,
        cell: Arc<EngineCell>,
    }

    impl Bed {
        fn write(&self, t: &str) {
            let t = t.replace("LEASES", &self.leases.display().to_string());
            std::fs::write(&self.file, t).expect("write config");
        }
    }

    fn bed(reservation: bool) -> Bed {
        bed_with_spare(reservation, 0)
    }

    fn bed_with_spare(reservation: bool, spare: u32) -> Bed {
        bed_from(&text("10.0.0.53", false, "eth0", reservation), spare)
    }

    fn bed_from(t: &str, spare: u32) -> Bed {
        let dir = tempfile::tempdir().expect("tempdir");
        let file = dir.path().join("x.toml");
        let leases = dir.path().join("leases.db");
        let b0 = t.replace("LEASES", &leases.display().to_string());
        std::fs::write(&file, &b0).expect("write");
        let cfg = Arc::new(xdhcpd_config::load(&file).expect("valid"));
        let pools: Vec<PoolSpec> = cfg
            .pool_specs()
            .into_iter()
            .map(|(id, first, last)| PoolSpec { id, first, last })
            .collect();
        let opts = OpenOptions {
            spare,
            ..OpenOptions::default()
        };
        let (table, _) = LeaseTable::open(&leases, &pools, &opts).expect("table");
        let shared = EngineShared::new(cfg.clone(), Arc::new(table), Ipv4Addr::new(10, 0, 0, 1));
        shared.protect_reservations(unix_now());
        let cell = Arc::new(EngineCell::new(Arc::new(shared)));
        let reloader = Reloader::new(file.clone(), Overrides::default(), cfg, cell.clone());
        Bed {
            _dir: dir,
            file,
            leases,
            reloader,
            cell,
        }
    }

    fn dns_of(cell: &EngineCell) -> String {
        format!("{:?}", cell.load().config.subnets[0].options)
    }

    #[test]
    fn reload_applies_options_and_publishes_a_new_generation() {
        let b = bed(false);
        let before = dns_of(&b.cell);
        b.write(&text("10.0.0.54", false, "eth0", false));
        let rep = b.reloader.reload().expect("accepted");
        assert_eq!(rep.generation, 1);
        assert_eq!(b.cell.generation(), 1);
        assert_eq!(
            rep.changes,
            vec!["subnet 10.0.0.0/24: options changed".to_string()]
        );
        assert_ne!(dns_of(&b.cell), before, "the engine serves the new options");
        assert_eq!(b.reloader.stats().accepted, 1);
        // The same file again: accepted, nothing changed.
        let rep = b.reloader.reload().expect("accepted");
        assert!(rep.changes.is_empty(), "{:?}", rep.changes);
        assert_eq!(rep.generation, 2);
    }

    #[test]
    fn reload_refuses_an_invalid_file_and_keeps_the_running_configuration() {
        let b = bed(false);
        let before = dns_of(&b.cell);
        b.write(&text("10.0.0.54", false, "eth0", false).replace("dns-servers", "dns-serverz"));
        let e = b.reloader.reload().expect_err("refused");
        let ReloadError::Invalid { errors, .. } = &e else {
            panic!("{e:?}")
        };
        // Positioned: file:line:col and the field.
        assert!(
            errors
                .iter()
                .any(|m| m.contains("x.toml:8:1: subnet[0].dns-serverz")),
            "{errors:?}"
        );
        assert_eq!(b.cell.generation(), 0);
        assert_eq!(dns_of(&b.cell), before);
        let st = b.reloader.stats();
        assert_eq!((st.accepted, st.refused), (0, 1));
        assert_eq!(st.last_error, Some(e));
        // It serialises for the control API.
        let v = serde_json::to_value(&st).expect("json");
        assert_eq!(v["last_error"]["kind"], "invalid");
    }

    #[test]
    fn reload_ratelimit_and_api_changes_are_refused_as_needing_a_restart() {
        let b = bed(false);
        let base = text("10.0.0.53", false, "eth0", false);
        b.write(&format!("{base}\n[rate-limit]\nclient-rate = 10\n"));
        let e = b.reloader.reload().expect_err("rate-limit refused");
        let ReloadError::NeedsRestart { reasons, .. } = &e else {
            panic!("{e:?}")
        };
        assert_eq!(reasons.len(), 1, "{reasons:?}");
        assert!(
            reasons[0].starts_with("[rate-limit] changed") && reasons[0].contains("restart"),
            "{reasons:?}"
        );
        b.write(&format!("{base}\n[api]\nmetrics = false\n"));
        let e = b.reloader.reload().expect_err("api refused");
        assert!(e.to_string().contains("[api] changed"), "{e}");
        b.write(&format!(
            "{base}\n[bulk-leasequery]\nlisten = \"127.0.0.1:6767\"\n"
        ));
        let e = b.reloader.reload().expect_err("bulk-leasequery refused");
        assert!(e.to_string().contains("[bulk-leasequery] changed"), "{e}");
        assert_eq!(b.cell.generation(), 0, "nothing was published");
        // Back to the running file: accepted.
        b.write(&base);
        b.reloader.reload().expect("unchanged file accepted");
    }

    #[test]
    fn reload_privilege_user_change_needs_a_restart() {
        let cfg = |head: &str| {
            xdhcpd_config::parse(
                &format!(
                    "[server]\n{head}interface = \"eth0\"\n[[subnet]]\ncidr = \"10.0.0.0/24\"\n"
                ),
                "t.toml",
            )
            .expect("valid")
        };
        let a = cfg("user = \"a\"\n");
        // The same account written elsewhere in the file: nothing to restart for.
        let moved = cfg("\n\nuser = \"a\"\n");
        assert!(needs_restart(&a, &moved).is_empty());
        let b = cfg("user = \"b\"\ngroup = \"g\"\n");
        let reasons = needs_restart(&a, &b);
        assert!(
            reasons.contains(&"server.user changed (a -> b): needs a restart".to_string())
                && reasons
                    .contains(&"server.group changed ((none) -> g): needs a restart".to_string()),
            "{reasons:?}"
        );
    }

    #[test]
    fn reload_refuses_restart_changes_with_the_reason() {
        let b = bed(false);
        // This lease file has no spare records: a new pool does not fit.
        b.write(&text("10.0.0.54", true, "eth0", false));
        let e = b.reloader.reload().expect_err("new pool refused");
        let ReloadError::NeedsRestart { reasons, .. } = &e else {
            panic!("{e:?}")
        };
        assert!(
            reasons.iter().any(|r| r.contains(
                "needs a restart: 10 addresses more than the lease file's spare capacity 0"
            )),
            "{reasons:?}"
        );
        b.write(&text("10.0.0.53", false, "eth1", false));
        let e = b.reloader.reload().expect_err("interface refused");
        assert!(
            e.to_string()
                .contains("server.interface changed (eth0 -> eth1): needs a restart"),
            "{e}"
        );
        assert_eq!(b.cell.generation(), 0);
        // An override from the command line is kept: the file's interface does not matter.
        let r2 = Reloader::new(
            b.file.clone(),
            Overrides {
                interface: Some("eth0".into()),
                ..Overrides::default()
            },
            b.reloader.config(),
            b.cell.clone(),
        );
        r2.reload()
            .expect("interface overridden on the command line");
    }

    #[test]
    fn reload_adds_a_pool_and_grows_a_range_live() {
        let b = bed_with_spare(false, 64);
        let table = b.cell.load().table.clone();
        assert_eq!(table.pool_stats(1), None);
        // Pool 0 grows from .10-.19 to .10-.29 and pool 1 (.100-.109) is new.
        let grown = text("10.0.0.53", true, "eth0", false).replace("10.0.0.19", "10.0.0.29");
        b.write(&grown);
        let rep = b.reloader.reload().expect("accepted");
        assert_eq!(rep.pools, 2);
        assert!(
            rep.changes.iter().any(|c| c.contains(
                "lease table grown by 20 address(es): pool 0 10.0.0.20-10.0.0.29, pool 1 \
                 10.0.0.100-10.0.0.109 (44 spare left)"
            )),
            "{:?}",
            rep.changes
        );
        assert_eq!(b.cell.generation(), 1);
        let shared = b.cell.load();
        assert_eq!(shared.config.pool_specs().len(), 2);
        assert_eq!(b.reloader.config().pool_specs(), shared.config.pool_specs());
        assert_eq!(
            table.pool_stats(0).map(|s| (s.total, s.free)),
            Some((20, 20))
        );
        assert_eq!(
            table.pool_stats(1).map(|s| (s.total, s.free)),
            Some((10, 10))
        );
        let s = table
            .slot_of(Ipv4Addr::new(10, 0, 0, 105))
            .expect("new pool's record");
        assert_eq!(
            (table.pool_of_slot(s), table.read(s).state),
            (1, LeaseState::Free)
        );
        // The new pool's addresses are allocated from its own free lists.
        let (slot, ()) = table
            .allocate(1, 0, unix_now(), lease_store::Owner::Primary, |l| {
                l.state = LeaseState::Offered;
                l.client = lease_store::ClientKey::from_client_id(&[1, 2, 3]);
                l.expiry = unix_now() + 60;
            })
            .expect("an address of the new pool");
        assert!(
            (100..110).contains(&table.addr_of(slot).octets()[3]),
            "{}",
            table.addr_of(slot)
        );
        // Shrinking back is refused and changes nothing.
        b.write(&text("10.0.0.53", true, "eth0", false));
        let e = b.reloader.reload().expect_err("shrink refused");
        assert!(
            e.to_string()
                .contains("pool 0 changed from 10.0.0.10-10.0.0.29 to 10.0.0.10-10.0.0.19")
                && e.to_string().contains("needs a restart"),
            "{e}"
        );
        assert_eq!(b.cell.generation(), 1);
        // A pool inserted before the others renumbers them: refused.
        let front = grown.replacen(
            "[[subnet.pool]]\nrange = \"10.0.0.10-10.0.0.29\"\n",
            "[[subnet.pool]]\nrange = \"10.0.0.200-10.0.0.209\"\n\n[[subnet.pool]]\nrange = \"10.0.0.10-10.0.0.29\"\n",
            1,
        );
        assert_ne!(front, grown);
        b.write(&front);
        let e = b.reloader.reload().expect_err("insert refused");
        assert!(e.to_string().contains("numbered in file order"), "{e}");
        assert_eq!(table.len(), 30);
    }

    /// A `[failover]` section (its key file beside the lease file's directory).
    fn failover_section(dir: &std::path::Path) -> String {
        let key = dir.join("failover.key");
        std::fs::write(&key, "reload-test-key-0123456789abcdef0123\n").expect("key");
        format!(
            "\n[failover]\nrole = \"primary\"\nname = \"pair\"\naddress = \"10.0.0.1\"\n\
             peer-address = \"10.0.0.2\"\nmclt = 60\nauth-key-file = \"{}\"\n",
            key.display()
        )
    }

    #[test]
    fn reload_failover_adds_a_pool_and_publishes_its_balance_settings() {
        let keys = tempfile::tempdir().expect("tempdir");
        let fo = failover_section(keys.path());
        let base = text("10.0.0.53", false, "eth0", false);
        let b = bed_from(&format!("{base}{fo}"), 64);
        let cell: crate::failover::PoolBalanceCell = Arc::new(Mutex::new(
            b.reloader
                .config()
                .failovers
                .first()
                .expect("fo")
                .pools
                .clone(),
        ));
        b.reloader
            .set_failover_pools(vec![("pair".to_string(), cell.clone())]);
        assert_eq!(cell.lock().expect("cell").len(), 1);
        // A new pool (in a new subnet at the end, with its own backup-pct): accepted live.
        let more = format!(
            "{}\n[[subnet]]\ncidr = \"10.0.1.0/24\"\nbackup-pct = 20\n\n[[subnet.pool]]\n\
             range = \"10.0.1.10-10.0.1.29\"\n{fo}",
            base
        );
        b.write(&more);
        let rep = b
            .reloader
            .reload()
            .expect("a new pool with [failover] is accepted");
        assert!(
            rep.changes
                .iter()
                .any(|c| c.contains("lease table grown by 20 address(es): pool 1")),
            "{:?}",
            rep.changes
        );
        let table = b.cell.load().table.clone();
        let s = table
            .slot_of(Ipv4Addr::new(10, 0, 1, 10))
            .expect("new record");
        // As on a fresh start of a pair: FREE, the primary's.
        assert_eq!(table.read(s).state, LeaseState::Free);
        let pools = cell.lock().expect("cell").clone();
        assert_eq!(
            pools
                .iter()
                .map(|p| (p.pool_id, p.backup_pct))
                .collect::<Vec<_>>(),
            vec![(0, None), (1, Some(20))]
        );
        // A running pool's balance settings and the relationship itself need a restart.
        b.write(&more.replace("backup-pct = 20", "backup-pct = 30"));
        let e = b.reloader.reload().expect_err("balance of a running pool");
        assert!(
            e.to_string()
                .contains("pool 1: its subnet's failover balance"),
            "{e}"
        );
        b.write(&more.replace("mclt = 60", "mclt = 90"));
        let e = b.reloader.reload().expect_err("relationship changed");
        assert!(
            e.to_string()
                .contains("[failover] changed: the failover relationship"),
            "{e}"
        );
        assert_eq!(b.cell.generation(), 1);
        assert_eq!(cell.lock().expect("cell").len(), 2);
    }

    #[test]
    fn reload_adds_and_drops_reservations() {
        let b = bed(false);
        let table = b.cell.load().table.clone();
        let slot = table.slot_of(Ipv4Addr::new(10, 0, 0, 12)).expect("slot");
        assert_eq!(table.read(slot).state, LeaseState::Free);
        b.write(&text("10.0.0.53", false, "eth0", true));
        let rep = b.reloader.reload().expect("accepted");
        assert_eq!(rep.reservations, 1);
        assert_eq!(table.read(slot).state, LeaseState::Reserved);
        b.write(&text("10.0.0.53", false, "eth0", false));
        let rep = b.reloader.reload().expect("accepted");
        assert_eq!(rep.reservations_released, 1);
        assert_eq!(table.read(slot).state, LeaseState::Free);
    }
}
