//! Registrations in PostgreSQL (`registrations.backend = "postgres"`): the schema's
//! migrations (`migrations/*.sql`, `xdhcpd registrations migrate`) and the follower.
//!
//! The follower runs on its own thread (a current-thread tokio runtime with tokio-postgres),
//! never on the packet path. At start the daemon serves from the registration store, the
//! local copy; the follower connects, loads everything when the local copy is not from this
//! database (or is older than the pruned part of the change feed) and otherwise catches up
//! from the last applied sequence number, kept in the store in the same durable transaction
//! as the changes. Then it follows `xdhcpd_registration_changes` in sequence order, woken by
//! `NOTIFY xdhcpd_registrations` (and looking once a second anyway, which is also its
//! heartbeat). Each page of changes is one store transaction (fsync) applied to the index the
//! workers read (lock-free for them: they never wait). When PostgreSQL is unreachable it keeps
//! retrying (1 s, doubling up to 5 s) while the server serves from the local copy.

use std::path::Path;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering::Relaxed};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

use anyhow::{bail, Context};
use serde::Serialize;
use tokio_postgres::{AsyncMessage, Client, NoTls};
use xdhcpd_config::{PostgresConfig, PostgresTls};
use xdhcpd_registrations::{Cursor, FeedChange, Json};

use super::SharedStore;

/// The schema's migrations: (version, name, SQL), applied in order.
pub const MIGRATIONS: &[(i32, &str, &str)] = &[
    (
        1,
        "registrations",
        include_str!("migrations/0001_registrations.sql"),
    ),
    (
        2,
        "changes_old_group",
        include_str!("migrations/0002_changes_old_group.sql"),
    ),
];

/// Serialises migrations of concurrent servers.
const MIGRATION_LOCK: i64 = 7_385_610_018;
/// Changes fetched (and applied as one store transaction) at a time.
const PAGE: i64 = 20_000;
/// Longest pause between two looks at the feed (also the heartbeat).
const POLL: Duration = Duration::from_secs(1);
const MAX_BACKOFF: Duration = Duration::from_secs(5);
/// The channel of the wake-ups.
const CHANNEL: &str = "xdhcpd_registrations";

/// What the follower reports (`/v1/status`, `/metrics`); written by the follower only.
#[derive(Debug, Default)]
pub struct FollowerStatus {
    connected: AtomicBool,
    last_applied_seq: AtomicU64,
    head_seq: AtomicU64,
    /// Unix time of the last successful exchange with PostgreSQL, in ms (0: never).
    last_contact_ms: AtomicU64,
    changes_applied: AtomicU64,
    rejected: AtomicU64,
    full_loads: AtomicU64,
    last_error: Mutex<String>,
}

/// A copy of [`FollowerStatus`].
#[derive(Clone, Debug, Serialize)]
pub struct FollowerSnapshot {
    pub backend: &'static str,
    pub connected: bool,
    pub last_applied_seq: u64,
    pub head_seq: u64,
    /// Changes in PostgreSQL not applied yet (as of the last contact).
    pub lag_changes: u64,
    /// Since the last successful exchange (None: never since start).
    pub seconds_since_contact: Option<f64>,
    pub changes_applied: u64,
    pub rejected: u64,
    pub full_loads: u64,
    pub last_error: Option<String>,
}

fn unix_ms() -> u64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map(|d| d.as_millis() as u64)
        .unwrap_or(0)
}

impl FollowerStatus {
    /// A copy for the API.
    pub fn snapshot(&self) -> FollowerSnapshot {
        let applied = self.last_applied_seq.load(Relaxed);
        let head = self.head_seq.load(Relaxed);
        let contact = self.last_contact_ms.load(Relaxed);
        let err = match self.last_error.lock() {
            Ok(e) => e.clone(),
            Err(p) => p.into_inner().clone(),
        };
        FollowerSnapshot {
            backend: "postgres",
            connected: self.connected.load(Relaxed),
            last_applied_seq: applied,
            head_seq: head,
            lag_changes: head.saturating_sub(applied),
            seconds_since_contact: (contact > 0)
                .then(|| unix_ms().saturating_sub(contact) as f64 / 1000.0),
            changes_applied: self.changes_applied.load(Relaxed),
            rejected: self.rejected.load(Relaxed),
            full_loads: self.full_loads.load(Relaxed),
            last_error: (!err.is_empty()).then_some(err),
        }
    }

    fn contact(&self) {
        self.last_contact_ms.store(unix_ms(), Relaxed);
    }

    fn set_error(&self, e: String) {
        match self.last_error.lock() {
            Ok(mut g) => *g = e,
            Err(p) => *p.into_inner() = e,
        }
    }
}

/// The password in `path`: its first line (without the line end).
fn read_password(path: &Path) -> anyhow::Result<String> {
    use std::os::unix::fs::PermissionsExt;
    let text = std::fs::read_to_string(path).with_context(|| {
        format!(
            "registrations.postgres.password-file: reading {}",
            path.display()
        )
    })?;
    if let Ok(md) = std::fs::metadata(path) {
        if md.permissions().mode() & 0o077 != 0 {
            tracing::warn!(
                "registrations.postgres.password-file {} is readable by group or others (mode {:o})",
                path.display(),
                md.permissions().mode() & 0o777
            );
        }
    }
    Ok(text.lines().next().unwrap_or("").to_string())
}

fn pg_config(cfg: &PostgresConfig) -> anyhow::Result<tokio_postgres::Config> {
    let mut c = tokio_postgres::Config::new();
    c.host(&cfg.host)
        .port(cfg.port)
        .dbname(&cfg.dbname)
        .user(&cfg.user)
        .application_name("xdhcpd")
        .connect_timeout(Duration::from_secs(u64::from(cfg.connect_timeout_secs)));
    if let Some(p) = &cfg.password_file {
        c.password(read_password(p)?);
    }
    Ok(c)
}

fn where_(cfg: &PostgresConfig) -> String {
    let tls = match cfg.tls {
        PostgresTls::Disable => "",
        PostgresTls::Require(_) => "?sslmode=require",
    };
    format!(
        "postgresql://{}@{}:{}/{}{tls}",
        cfg.user, cfg.host, cfg.port, cfg.dbname
    )
}

/// Connects (over TLS with `tls = "require"`); the connection's messages are driven by a task
/// that turns notifications into `wake` (the client's requests fail once the connection is
/// gone).
async fn connect(
    cfg: &PostgresConfig,
    wake: Arc<tokio::sync::Notify>,
) -> anyhow::Result<(Client, tokio::task::JoinHandle<()>)> {
    let mut pc = pg_config(cfg)?;
    let limit = Duration::from_secs(u64::from(cfg.connect_timeout_secs));
    let timed_out = || anyhow::anyhow!("connecting to {}: timed out", where_(cfg));
    match &cfg.tls {
        PostgresTls::Disable => {
            let (client, conn) = tokio::time::timeout(limit, pc.connect(NoTls))
                .await
                .map_err(|_| timed_out())?
                .with_context(|| format!("connecting to {}", where_(cfg)))?;
            Ok((client, tokio::spawn(drive(conn, wake))))
        }
        PostgresTls::Require(t) => {
            let tls = crate::tls::PgTls::new(t, "registrations.postgres")?;
            pc.ssl_mode(tokio_postgres::config::SslMode::Require);
            let (client, conn) = tokio::time::timeout(limit, pc.connect(tls))
                .await
                .map_err(|_| timed_out())?
                .with_context(|| format!("connecting to {} (TLS)", where_(cfg)))?;
            Ok((client, tokio::spawn(drive(conn, wake))))
        }
    }
}

/// Drives a connection: its notifications wake the follower, as does its end.
async fn drive<S, T>(mut conn: tokio_postgres::Connection<S, T>, wake: Arc<tokio::sync::Notify>)
where
    S: tokio::io::AsyncRead + tokio::io::AsyncWrite + Unpin,
    T: tokio::io::AsyncRead + tokio::io::AsyncWrite + Unpin,
{
    loop {
        match std::future::poll_fn(|cx| conn.poll_message(cx)).await {
            Some(Ok(AsyncMessage::Notification(_))) => wake.notify_one(),
            Some(Ok(_)) => {}
            Some(Err(e)) => {
                tracing::debug!("registrations: PostgreSQL connection: {e}");
                wake.notify_one();
                return;
            }
            None => {
                wake.notify_one();
                return;
            }
        }
    }
}

/// Applies the pending migrations (one transaction each, under an advisory lock so that
/// servers starting together do not race). Returns the versions applied.
pub async fn migrate(client: &mut Client) -> anyhow::Result<Vec<i32>> {
    client
        .batch_execute(
            "CREATE TABLE IF NOT EXISTS xdhcpd_schema_migrations (
                 version    integer PRIMARY KEY,
                 name       text NOT NULL,
                 applied_at timestamptz NOT NULL DEFAULT now())",
        )
        .await
        .context("creating xdhcpd_schema_migrations")?;
    client
        .execute("SELECT pg_advisory_lock($1)", &[&MIGRATION_LOCK])
        .await
        .context("taking the migration lock")?;
    let r = migrate_locked(client).await;
    let _ = client
        .execute("SELECT pg_advisory_unlock($1)", &[&MIGRATION_LOCK])
        .await;
    r
}

async fn migrate_locked(client: &mut Client) -> anyhow::Result<Vec<i32>> {
    let have: Vec<i32> = client
        .query("SELECT version FROM xdhcpd_schema_migrations", &[])
        .await
        .context("reading xdhcpd_schema_migrations")?
        .iter()
        .map(|r| r.get(0))
        .collect();
    let known = MIGRATIONS.last().map_or(0, |m| m.0);
    if let Some(v) = have.iter().find(|v| **v > known) {
        bail!(
            "the database's registration schema is at version {v}, newer than this xdhcpd knows \
             ({known}): upgrade xdhcpd"
        );
    }
    let mut applied = Vec::new();
    for (v, name, sql) in MIGRATIONS {
        if have.contains(v) {
            continue;
        }
        let tx = client.transaction().await?;
        tx.batch_execute(sql)
            .await
            .with_context(|| format!("migration {v:04}_{name}.sql"))?;
        tx.execute(
            "INSERT INTO xdhcpd_schema_migrations (version, name) VALUES ($1, $2)",
            &[v, name],
        )
        .await?;
        tx.commit()
            .await
            .with_context(|| format!("committing migration {v:04}_{name}.sql"))?;
        applied.push(*v);
    }
    Ok(applied)
}

/// Fails unless the schema is installed (when the follower does not migrate).
async fn check_schema(client: &Client) -> anyhow::Result<()> {
    let row = client
        .query_one(
            "SELECT to_regclass('xdhcpd_schema_migrations') IS NOT NULL",
            &[],
        )
        .await?;
    let present: bool = row.get(0);
    let version: i32 = if present {
        client
            .query_one(
                "SELECT coalesce(max(version), 0) FROM xdhcpd_schema_migrations",
                &[],
            )
            .await?
            .get(0)
    } else {
        0
    };
    let known = MIGRATIONS.last().map_or(0, |m| m.0);
    if version < known {
        bail!(
            "the registration schema is at version {version}, this xdhcpd needs {known}: run \
             `xdhcpd registrations migrate -c CONFIG` as the tables' owner (or set \
             registrations.postgres.migrate = true)"
        );
    }
    Ok(())
}

/// The follower thread; stopped (and joined) when dropped.
pub struct Follower {
    status: Arc<FollowerStatus>,
    stop: Arc<AtomicBool>,
    thread: Option<std::thread::JoinHandle<()>>,
}

impl Follower {
    /// Starts following PostgreSQL into `store`.
    pub fn start(cfg: PostgresConfig, store: SharedStore) -> anyhow::Result<Follower> {
        // A misconfiguration (an unreadable password file) stops the start; an unreachable
        // database does not.
        pg_config(&cfg)?;
        if let PostgresTls::Require(t) = &cfg.tls {
            crate::tls::PgTls::new(t, "registrations.postgres")?;
        }
        let status = Arc::new(FollowerStatus::default());
        if let Some(c) = lock(&store).cursor() {
            status.last_applied_seq.store(c.seq, Relaxed);
            status.head_seq.store(c.seq, Relaxed);
        }
        let stop = Arc::new(AtomicBool::new(false));
        let rt = tokio::runtime::Builder::new_current_thread()
            .enable_all()
            .build()
            .context("registrations: the follower's runtime")?;
        let (st, sp) = (status.clone(), stop.clone());
        let thread = std::thread::Builder::new()
            .name("xdhcpd-regs-pg".into())
            .spawn(move || {
                crate::server::sched::background();
                rt.block_on(run(cfg, store, st, sp));
                tracing::info!("registrations: PostgreSQL follower stopped");
            })
            .context("registrations: starting the follower thread")?;
        Ok(Follower {
            status,
            stop,
            thread: Some(thread),
        })
    }

    /// What it reports.
    pub fn status(&self) -> Arc<FollowerStatus> {
        self.status.clone()
    }
}

impl Drop for Follower {
    fn drop(&mut self) {
        self.stop.store(true, Relaxed);
        if let Some(t) = self.thread.take() {
            let _ = t.join();
        }
    }
}

fn lock(store: &SharedStore) -> std::sync::MutexGuard<'_, xdhcpd_registrations::Store> {
    match store.lock() {
        Ok(s) => s,
        Err(p) => p.into_inner(),
    }
}

async fn run(
    cfg: PostgresConfig,
    store: SharedStore,
    status: Arc<FollowerStatus>,
    stop: Arc<AtomicBool>,
) {
    let mut backoff = Duration::from_secs(1);
    let mut last_err = String::new();
    while !stop.load(Relaxed) {
        let was = status.full_loads.load(Relaxed) + status.changes_applied.load(Relaxed);
        // Stopping does not wait for a connection attempt or a query (a page of changes is
        // applied between two awaits, so it is never cut in half).
        let stopped = async {
            while !stop.load(Relaxed) {
                tokio::time::sleep(Duration::from_millis(50)).await;
            }
        };
        let err = tokio::select! {
            r = session(&cfg, &store, &status, &stop) => match r {
                Ok(()) => return,
                Err(e) => format!("{e:#}"),
            },
            _ = stopped => return,
        };
        let reached = status.connected.swap(false, Relaxed)
            || status.full_loads.load(Relaxed) + status.changes_applied.load(Relaxed) != was;
        if reached {
            backoff = Duration::from_secs(1);
        }
        if err != last_err {
            tracing::warn!(
                "registrations: PostgreSQL {}: {err}; serving from the local copy, retrying",
                where_(&cfg)
            );
            last_err = err.clone();
        }
        status.set_error(err);
        let until = Instant::now() + backoff;
        while Instant::now() < until && !stop.load(Relaxed) {
            tokio::time::sleep(Duration::from_millis(100)).await;
        }
        backoff = (backoff * 2).min(MAX_BACKOFF);
    }
}

/// One connection's life: Ok when stopped, Err when the connection or a step failed.
async fn session(
    cfg: &PostgresConfig,
    store: &SharedStore,
    status: &FollowerStatus,
    stop: &AtomicBool,
) -> anyhow::Result<()> {
    let wake = Arc::new(tokio::sync::Notify::new());
    let (mut client, task) = connect(cfg, wake.clone()).await?;
    let _abort = AbortOnDrop(task);
    if cfg.migrate {
        let v = migrate(&mut client).await?;
        if !v.is_empty() {
            tracing::info!("registrations: applied schema migration(s) {v:?}");
        }
    } else {
        check_schema(&client).await?;
    }
    client
        .batch_execute(&format!("LISTEN {CHANNEL}"))
        .await
        .context("LISTEN")?;
    let meta = client
        .query_one(
            "SELECT instance::text, pruned_through FROM xdhcpd_meta",
            &[],
        )
        .await
        .context("reading xdhcpd_meta")?;
    let instance = scope(&meta.get::<_, String>(0), cfg);
    let pruned: i64 = meta.get(1);
    status.connected.store(true, Relaxed);
    status.contact();
    status.set_error(String::new());
    let cursor = lock(store).cursor().cloned();
    match cursor {
        Some(c) if c.source == instance && c.seq >= pruned as u64 => {
            tracing::info!(
                "registrations: following PostgreSQL {} from change {}",
                where_(cfg),
                c.seq
            );
        }
        other => {
            if let Some(c) = other {
                tracing::info!(
                    "registrations: the local copy (database {}, change {}) is not a prefix of \
                     PostgreSQL {} (database {instance}, changes pruned through {pruned}): \
                     loading everything",
                    c.source,
                    c.seq,
                    where_(cfg)
                );
            }
            full_load(&mut client, cfg, store, status).await?;
        }
    }
    loop {
        if stop.load(Relaxed) {
            return Ok(());
        }
        if !catch_up(&mut client, cfg, store, status, &instance).await? {
            full_load(&mut client, cfg, store, status).await?;
            continue;
        }
        tokio::select! {
            _ = wake.notified() => {}
            _ = tokio::time::sleep(POLL) => {}
        }
    }
}

/// The local copy's source name: the database instance, plus the group filter when there is
/// one, so that a copy made under another filter (or none) is never caught up but loaded
/// again in full.
fn scope(instance: &str, cfg: &PostgresConfig) -> String {
    match &cfg.groups {
        None => instance.to_string(),
        Some(g) => format!("{instance} groups={}", g.join(",")),
    }
}

/// Whether a row of group `group` is in this server's scope (`groups`).
fn in_scope(cfg: &PostgresConfig, group: &str) -> bool {
    cfg.groups
        .as_ref()
        .is_none_or(|g| g.iter().any(|x| x == group))
}

struct AbortOnDrop(tokio::task::JoinHandle<()>);

impl Drop for AbortOnDrop {
    fn drop(&mut self) {
        self.0.abort();
    }
}

/// Everything (of the configured groups), from one consistent snapshot, replacing the local
/// copy.
async fn full_load(
    client: &mut Client,
    cfg: &PostgresConfig,
    store: &SharedStore,
    status: &FollowerStatus,
) -> anyhow::Result<()> {
    let t = Instant::now();
    let tx = client
        .build_transaction()
        .isolation_level(tokio_postgres::IsolationLevel::RepeatableRead)
        .read_only(true)
        .start()
        .await?;
    let meta = tx
        .query_one(
            "SELECT instance::text, pruned_through,
                    (SELECT coalesce(max(seq), 0) FROM xdhcpd_registration_changes)
             FROM xdhcpd_meta",
            &[],
        )
        .await
        .context("full load: xdhcpd_meta")?;
    let instance = scope(&meta.get::<_, String>(0), cfg);
    let head = meta.get::<_, i64>(1).max(meta.get::<_, i64>(2)).max(0) as u64;
    let rows = tx
        .query(
            "SELECT id, xdhcpd_registration_json(mac, client_id, \"group\", fixed_address,
                    host_name, next_server, boot_file, options)::text
             FROM xdhcpd_registrations
             WHERE $1::text[] IS NULL OR \"group\" = ANY($1::text[])",
            &[&cfg.groups],
        )
        .await
        .context("full load: xdhcpd_registrations")?;
    tx.commit().await?;
    status.contact();
    let fetched = t.elapsed();
    let mut regs = Vec::with_capacity(rows.len());
    let mut bad = 0u64;
    for r in &rows {
        let id: i64 = r.get(0);
        let text: &str = r.get(1);
        match serde_json::from_str::<Json>(text) {
            Ok(j) => regs.push((id as u64, j)),
            Err(e) => {
                bad += 1;
                tracing::warn!("registrations: xdhcpd_registrations id {id}: {e}");
            }
        }
    }
    let n = regs.len();
    let rep = lock(store)
        .apply_full(
            regs,
            Cursor {
                source: instance,
                seq: head,
            },
        )
        .context("full load: writing the local copy")?;
    for (id, e) in rep.rejected.iter().take(20) {
        tracing::warn!("registrations: xdhcpd_registrations id {id} refused: {e}");
    }
    status
        .rejected
        .fetch_add(bad + rep.rejected.len() as u64, Relaxed);
    status.full_loads.fetch_add(1, Relaxed);
    status.last_applied_seq.store(head, Relaxed);
    status.head_seq.store(head, Relaxed);
    tracing::info!(
        "registrations: loaded {} of {n} from PostgreSQL at change {head} in {} ms (fetch {} ms)",
        rep.applied,
        t.elapsed().as_millis(),
        fetched.as_millis()
    );
    Ok(())
}

/// Applies every change after the cursor, a page at a time. `Ok(false)`: the changes after
/// the cursor were pruned (a full load is needed).
async fn catch_up(
    client: &mut Client,
    cfg: &PostgresConfig,
    store: &SharedStore,
    status: &FollowerStatus,
    instance: &str,
) -> anyhow::Result<bool> {
    let head_row = client
        .query_one(
            "SELECT pruned_through,
                    (SELECT coalesce(max(seq), 0) FROM xdhcpd_registration_changes)
             FROM xdhcpd_meta",
            &[],
        )
        .await
        .context("reading the change feed's head")?;
    status.contact();
    let pruned = head_row.get::<_, i64>(0).max(0) as u64;
    let head = head_row.get::<_, i64>(1).max(0) as u64;
    status.head_seq.store(head.max(pruned), Relaxed);
    let mut from = status.last_applied_seq.load(Relaxed);
    if from < pruned {
        return Ok(false);
    }
    // The feed is read a window of `PAGE` sequence numbers at a time; with `groups` set,
    // PostgreSQL returns only the changes that concern them: a row whose new group is one of
    // them, or whose old group was (an update that moves it out, a delete: the row must
    // go), or whose old group is unknown (changes written before schema 2 recorded it).
    // Every change up to `head` is committed (writers draw sequence numbers under one
    // lock, in commit order), so the window's end is the cursor even when nothing in it was
    // ours.
    while from < head {
        let to = from.saturating_add(PAGE as u64).min(head);
        let rows = client
            .query(
                "SELECT seq, old_mac, old_client_id, new::text FROM xdhcpd_registration_changes
                 WHERE seq > $1 AND seq <= $2
                   AND ($3::text[] IS NULL
                        OR new->>'group' = ANY($3::text[])
                        OR old_group = ANY($3::text[])
                        OR (old_group IS NULL
                            AND (old_mac IS NOT NULL OR old_client_id IS NOT NULL)))
                 ORDER BY seq",
                &[&(from as i64), &(to as i64), &cfg.groups],
            )
            .await
            .context("reading xdhcpd_registration_changes")?;
        status.contact();
        let mut bad = 0u64;
        let changes: Vec<FeedChange> = rows
            .iter()
            .map(|r| {
                let seq = r.get::<_, i64>(0) as u64;
                // The new row outside the configured groups (a row moved out of them) is
                // not kept: its old keys are removed here.
                let new = r
                    .get::<_, Option<&str>>(3)
                    .and_then(|t| {
                        serde_json::from_str::<Json>(t)
                            .map_err(|e| {
                                bad += 1;
                                tracing::warn!("registrations: change {seq}: {e}");
                            })
                            .ok()
                    })
                    .filter(|j| in_scope(cfg, &j.group));
                FeedChange {
                    seq,
                    old_mac: r.get(1),
                    old_client_id: r.get(2),
                    new,
                }
            })
            .collect();
        // A window with nothing of ours moves the cursor in memory only; the last window
        // writes it (one store transaction, one fsync, per window with changes).
        if !changes.is_empty() || to == head {
            let rep = lock(store)
                .apply_feed(
                    &changes,
                    Cursor {
                        source: instance.to_string(),
                        seq: to,
                    },
                )
                .context("applying changes to the local copy")?;
            for (seq, e) in rep.rejected.iter().take(20) {
                tracing::warn!("registrations: change {seq} refused: {e}");
            }
            status
                .rejected
                .fetch_add(bad + rep.rejected.len() as u64, Relaxed);
            status
                .changes_applied
                .fetch_add(rep.applied as u64, Relaxed);
        }
        status.last_applied_seq.store(to, Relaxed);
        from = to;
    }
    Ok(true)
}

/// `xdhcpd registrations migrate -c CONFIG`: applies the pending migrations.
pub fn main_migrate(config: &Path) -> anyhow::Result<()> {
    let cfg = xdhcpd_config::load(config).map_err(|e| anyhow::anyhow!("{e}"))?;
    let xdhcpd_config::RegistrationBackend::Postgres(pg) = &cfg.registrations else {
        bail!(
            "{}: registrations.backend is not \"postgres\": nothing to migrate",
            config.display()
        );
    };
    let rt = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()?;
    rt.block_on(async {
        let (mut client, _task) = connect(pg, Arc::new(tokio::sync::Notify::new())).await?;
        let v = migrate(&mut client).await?;
        let known = MIGRATIONS.last().map_or(0, |m| m.0);
        if v.is_empty() {
            println!("{}: schema at version {known}: nothing to do", where_(pg));
        } else {
            println!(
                "{}: applied migration(s) {v:?}; schema at version {known}",
                where_(pg)
            );
        }
        Ok(())
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    fn cfg(pw: Option<std::path::PathBuf>) -> PostgresConfig {
        PostgresConfig {
            host: "/run/postgresql".into(),
            port: 5433,
            dbname: "prov".into(),
            user: "xdhcpd".into(),
            password_file: pw,
            tls: xdhcpd_config::PostgresTls::Disable,
            connect_timeout_secs: 3,
            migrate: true,
            groups: None,
        }
    }

    #[test]
    fn registration_postgres_password_from_file_first_line() {
        let d = tempfile::tempdir().unwrap();
        let p = d.path().join("pw");
        std::fs::write(&p, "s3cret with spaces\nsecond line\n").unwrap();
        let c = pg_config(&cfg(Some(p))).unwrap();
        assert_eq!(c.get_password(), Some(&b"s3cret with spaces"[..]));
        assert_eq!(c.get_dbname(), Some("prov"));
        assert_eq!(c.get_ports(), &[5433]);
        assert_eq!(c.get_connect_timeout(), Some(&Duration::from_secs(3)));
        // No file: no password (trust / peer authentication).
        assert_eq!(pg_config(&cfg(None)).unwrap().get_password(), None);
    }

    #[test]
    fn registration_postgres_groups_filter_scopes_the_local_copy() {
        let mut c = cfg(None);
        assert_eq!(scope("inst-1", &c), "inst-1");
        assert!(in_scope(&c, "anything"));
        c.groups = Some(vec!["modem".into(), "mta".into()]);
        // A copy made without the filter (or with another) is not caught up but reloaded.
        assert_eq!(scope("inst-1", &c), "inst-1 groups=modem,mta");
        assert!(in_scope(&c, "mta"));
        assert!(!in_scope(&c, "cpe"));
        assert!(!in_scope(&c, ""));
    }

    #[test]
    fn registration_postgres_missing_password_file_names_the_key() {
        let e = pg_config(&cfg(Some("/nonexistent/xdhcpd-pw".into()))).unwrap_err();
        let m = format!("{e:#}");
        assert!(m.contains("registrations.postgres.password-file"), "{m}");
        assert!(m.contains("/nonexistent/xdhcpd-pw"), "{m}");
    }

    #[test]
    fn registration_postgres_status_reports_lag() {
        let s = FollowerStatus::default();
        let snap = s.snapshot();
        assert!(!snap.connected);
        assert_eq!(snap.seconds_since_contact, None);
        s.head_seq.store(120, Relaxed);
        s.last_applied_seq.store(100, Relaxed);
        s.contact();
        let snap = s.snapshot();
        assert_eq!(snap.lag_changes, 20);
        assert!(snap.seconds_since_contact.is_some_and(|t| t < 5.0));
    }

    #[test]
    fn registration_postgres_migrations_are_numbered_in_order() {
        for (i, (v, name, sql)) in MIGRATIONS.iter().enumerate() {
            assert_eq!(*v as usize, i + 1, "{name}");
            assert!(sql.contains("xdhcpd_"), "{name}");
        }
    }
}
