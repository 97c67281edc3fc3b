//! `xdhcpd events archive`: the lease event stream on NATS JetStream stored in PostgreSQL, and
//! the history query over it (`xdhcpd ctl history --archive`).
//!
//! A durable pull consumer (explicit acks) fetches batches; each batch is inserted in one
//! transaction (`ON CONFLICT (event_id) DO NOTHING`: a redelivered or re-published event is
//! stored once) and acknowledged to JetStream only after the commit, so a crash between the
//! two redelivers the batch and loses nothing. Rows keep the stream's order (`id`, assigned
//! in stream order by the single archiver of a consumer) for events of the same second.
//!
//! "Who held address A at time T" is the last event for A at or before T (index
//! `(ip, at, id)`, one backward index scan), as for the local files ([`super::history`]).
//!
//! "Which servers feed this archive" (`xdhcpd ctl servers --archive`, [`servers`]) reads
//! `xdhcpd_servers`, which each batch's transaction keeps up to date from the rows it
//! really inserted (schema version 2, [`MIGRATIONS`]).

use std::net::Ipv4Addr;
use std::path::{Path, PathBuf};
use std::process::ExitCode;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

use anyhow::Context;
use futures_util::StreamExt;
use tokio_postgres::{Client, NoTls};

use super::history::HistoryAnswer;
use super::nats::{self, NatsEvent};
use super::{LeaseEvent, Source};
use xdhcpd_config::{NatsConfig, TlsClientConfig};

/// Version 1: the events table and its indexes (idempotent: archives made before the
/// migrations table existed already have it).
const SCHEMA_V1: &str = "
CREATE TABLE IF NOT EXISTS xdhcpd_lease_events (
    id          bigserial PRIMARY KEY,
    event_id    text NOT NULL UNIQUE,
    server      text NOT NULL,
    stream_seq  bigint NOT NULL,
    subject     text NOT NULL,
    at          timestamptz NOT NULL,
    event       text NOT NULL,
    ip          inet NOT NULL,
    mac         text NOT NULL,
    client_id   text,
    relay_info  text,
    lease_start timestamptz NOT NULL,
    lease_end   timestamptz NOT NULL,
    source      text NOT NULL
);
CREATE INDEX IF NOT EXISTS xdhcpd_lease_events_ip_at ON xdhcpd_lease_events (ip, at, id);
CREATE INDEX IF NOT EXISTS xdhcpd_lease_events_mac_at ON xdhcpd_lease_events (mac, at);
CREATE INDEX IF NOT EXISTS xdhcpd_lease_events_server_at ON xdhcpd_lease_events (server, at);
";

/// Version 2 (many pairs, one view): who sent each event (`server_id`, the failover
/// `relationship` and `role`), and `xdhcpd_servers`, one row per server seen, kept up to
/// date by the archiver in the transaction of each batch (so `xdhcpd ctl servers` reads a
/// few rows, not the events); filled once from the events already archived.
const SCHEMA_V2: &str = "
ALTER TABLE xdhcpd_lease_events
    ADD COLUMN IF NOT EXISTS server_id text,
    ADD COLUMN IF NOT EXISTS relationship text,
    ADD COLUMN IF NOT EXISTS role text;
CREATE TABLE IF NOT EXISTS xdhcpd_servers (
    server         text PRIMARY KEY,
    server_id      text,
    relationship   text,
    role           text,
    first_event    timestamptz NOT NULL,
    last_event     timestamptz NOT NULL,
    events         bigint NOT NULL,
    acks           bigint NOT NULL,
    renews         bigint NOT NULL,
    releases       bigint NOT NULL,
    declines       bigint NOT NULL,
    expires        bigint NOT NULL,
    first_archived timestamptz NOT NULL DEFAULT now(),
    last_archived  timestamptz NOT NULL DEFAULT now()
);
INSERT INTO xdhcpd_servers (server, first_event, last_event, events, acks, renews, releases,
                            declines, expires)
SELECT server, min(at), max(at), count(*), count(*) FILTER (WHERE event = 'ack'),
       count(*) FILTER (WHERE event = 'renew'), count(*) FILTER (WHERE event = 'release'),
       count(*) FILTER (WHERE event = 'decline'), count(*) FILTER (WHERE event = 'expire')
FROM xdhcpd_lease_events GROUP BY server
ON CONFLICT (server) DO NOTHING;
";

/// The archive's migrations, in order (version = position + 1). Applied by
/// [`migrate`] under an advisory lock, each in the transaction that records it in
/// `xdhcpd_archive_migrations`.
pub const MIGRATIONS: [&str; 2] = [SCHEMA_V1, SCHEMA_V2];

/// Brings the archive schema to the newest version; returns (from, to).
pub async fn migrate(pg: &mut Client) -> anyhow::Result<(i32, i32)> {
    let tx = pg.transaction().await.context("BEGIN (migrations)")?;
    // One archiver migrates at a time (key: "xdhcparc" as 8 bytes).
    tx.batch_execute(
        "SELECT pg_advisory_xact_lock(8675309424242);
         CREATE TABLE IF NOT EXISTS xdhcpd_archive_migrations (
             version    int PRIMARY KEY,
             applied_at timestamptz NOT NULL DEFAULT now()
         );",
    )
    .await
    .context("creating xdhcpd_archive_migrations")?;
    let from: i32 = tx
        .query_one(
            "SELECT coalesce(max(version), 0) FROM xdhcpd_archive_migrations",
            &[],
        )
        .await
        .context("reading xdhcpd_archive_migrations")?
        .try_get(0)?;
    let mut to = from;
    for (i, sql) in MIGRATIONS.iter().enumerate() {
        let v = i as i32 + 1;
        if v <= from {
            continue;
        }
        tx.batch_execute(sql)
            .await
            .with_context(|| format!("archive migration {v}"))?;
        tx.execute(
            "INSERT INTO xdhcpd_archive_migrations (version) VALUES ($1)",
            &[&v],
        )
        .await
        .with_context(|| format!("recording archive migration {v}"))?;
        to = v;
    }
    tx.commit().await.context("COMMIT (migrations)")?;
    Ok((from, to))
}

/// One batch: the new events (a redelivered one is skipped) in the order given (stream order,
/// and a batch message's order within it) and, from exactly those, the per-server summary.
const INSERT: &str = "
WITH ins AS (
    INSERT INTO xdhcpd_lease_events (event_id, server, stream_seq, subject, at, event, ip, mac,
                                     client_id, relay_info, lease_start, lease_end, source,
                                     server_id, relationship, role)
    SELECT e, s, q, sub, to_timestamp(t), ev, ip::inet, m, c, r, to_timestamp(ls),
           to_timestamp(le), src, sid, rel, rol
    FROM unnest($1::text[], $2::text[], $3::int8[], $4::text[], $5::int8[], $6::text[],
                $7::text[], $8::text[], $9::text[], $10::text[], $11::int8[], $12::int8[],
                $13::text[], $14::text[], $15::text[], $16::text[])
         WITH ORDINALITY AS u(e, s, q, sub, t, ev, ip, m, c, r, ls, le, src, sid, rel, rol, o)
    ORDER BY o
    ON CONFLICT (event_id) DO NOTHING
    RETURNING server, server_id, relationship, role, at, event
)
INSERT INTO xdhcpd_servers AS x (server, server_id, relationship, role, first_event,
                                 last_event, events, acks, renews, releases, declines,
                                 expires)
SELECT server, max(server_id), max(relationship), max(role), min(at), max(at), count(*),
       count(*) FILTER (WHERE event = 'ack'), count(*) FILTER (WHERE event = 'renew'),
       count(*) FILTER (WHERE event = 'release'), count(*) FILTER (WHERE event = 'decline'),
       count(*) FILTER (WHERE event = 'expire')
FROM ins GROUP BY server
ON CONFLICT (server) DO UPDATE SET
    server_id = coalesce(EXCLUDED.server_id, x.server_id),
    relationship = coalesce(EXCLUDED.relationship, x.relationship),
    role = coalesce(EXCLUDED.role, x.role),
    first_event = least(x.first_event, EXCLUDED.first_event),
    last_event = greatest(x.last_event, EXCLUDED.last_event),
    events = x.events + EXCLUDED.events,
    acks = x.acks + EXCLUDED.acks,
    renews = x.renews + EXCLUDED.renews,
    releases = x.releases + EXCLUDED.releases,
    declines = x.declines + EXCLUDED.declines,
    expires = x.expires + EXCLUDED.expires,
    last_archived = now()";

/// `xdhcpd events archive` arguments.
#[derive(clap::Args, Clone, Debug)]
pub struct ArchiveArgs {
    /// NATS server URL(s), comma-separated.
    #[arg(long)]
    pub nats: String,
    /// The JetStream stream.
    #[arg(long, default_value = "XDHCPD_EVENTS")]
    pub stream: String,
    /// The durable consumer's name (one archiver per name; its position survives restarts).
    #[arg(long, default_value = "xdhcpd-archive")]
    pub consumer: String,
    /// File whose first line is the NATS token.
    #[arg(long)]
    pub nats_token_file: Option<PathBuf>,
    /// NATS credentials (.creds) file.
    #[arg(long)]
    pub nats_credentials_file: Option<PathBuf>,
    /// NATS user (with --nats-password-file).
    #[arg(long, requires = "nats_password_file")]
    pub nats_user: Option<String>,
    /// File whose first line is the NATS user's password.
    #[arg(long, requires = "nats_user")]
    pub nats_password_file: Option<PathBuf>,
    /// TLS to NATS (required when set): the CA certificate(s) (PEM) that sign the server's.
    #[arg(long)]
    pub nats_ca_file: Option<PathBuf>,
    /// TLS to NATS: this client's certificate (PEM), with --nats-key-file.
    #[arg(long, requires_all = ["nats_key_file", "nats_ca_file"])]
    pub nats_cert_file: Option<PathBuf>,
    /// TLS to NATS: the key of --nats-cert-file (PEM).
    #[arg(long, requires = "nats_cert_file")]
    pub nats_key_file: Option<PathBuf>,
    /// PostgreSQL connection: `host=... port=... dbname=... user=...` or a postgresql:// URL
    /// (no password in it: use --postgres-password-file).
    #[arg(long)]
    pub postgres: String,
    /// File whose first line is the PostgreSQL password.
    #[arg(long)]
    pub postgres_password_file: Option<PathBuf>,
    #[command(flatten)]
    pub postgres_tls: PgTlsArgs,
    /// Messages per fetch and per transaction (a batch message carries up to the
    /// publisher's `events-per-message` events).
    #[arg(long, default_value_t = 1000)]
    pub batch: usize,
    /// Exit once the consumer has nothing pending (else run until SIGINT/SIGTERM).
    #[arg(long)]
    pub once: bool,
}

/// TLS to the archive's PostgreSQL: `--postgres-ca-file` (then TLS is required),
/// `--postgres-cert-file` / `--postgres-key-file`.
#[derive(clap::Args, Clone, Debug, Default)]
pub struct PgTlsArgs {
    /// TLS to PostgreSQL (required when set): the CA certificate(s) (PEM) that sign the
    /// server's; the server's name or address must be in its certificate.
    #[arg(long)]
    pub postgres_ca_file: Option<PathBuf>,
    /// TLS to PostgreSQL: this client's certificate (PEM), with --postgres-key-file.
    #[arg(long, requires_all = ["postgres_key_file", "postgres_ca_file"])]
    pub postgres_cert_file: Option<PathBuf>,
    /// TLS to PostgreSQL: the key of --postgres-cert-file (PEM).
    #[arg(long, requires = "postgres_cert_file")]
    pub postgres_key_file: Option<PathBuf>,
}

impl PgTlsArgs {
    /// The TLS settings (None: no CA file given).
    pub fn config(&self) -> Option<TlsClientConfig> {
        self.postgres_ca_file.as_ref().map(|ca| TlsClientConfig {
            ca_file: ca.clone(),
            cert_file: self.postgres_cert_file.clone(),
            key_file: self.postgres_key_file.clone(),
        })
    }
}

impl ArchiveArgs {
    /// The NATS connection settings of the options.
    fn nats_config(&self) -> NatsConfig {
        NatsConfig {
            urls: self.nats.split(',').map(|s| s.trim().to_string()).collect(),
            token_file: self.nats_token_file.clone(),
            credentials_file: self.nats_credentials_file.clone(),
            user: self.nats_user.clone(),
            password_file: self.nats_password_file.clone(),
            tls: self.nats_ca_file.as_ref().map(|ca| TlsClientConfig {
                ca_file: ca.clone(),
                cert_file: self.nats_cert_file.clone(),
                key_file: self.nats_key_file.clone(),
            }),
            ..NatsConfig::default()
        }
    }
}

/// Runs `xdhcpd events archive`.
pub fn main_archive(a: ArchiveArgs) -> ExitCode {
    let rt = match tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
    {
        Ok(rt) => rt,
        Err(e) => {
            eprintln!("xdhcpd events archive: tokio runtime: {e}");
            return ExitCode::FAILURE;
        }
    };
    let stop = Arc::new(AtomicBool::new(false));
    for sig in [libc::SIGINT, libc::SIGTERM] {
        let st = stop.clone();
        rt.spawn(async move {
            use tokio::signal::unix::{signal, SignalKind};
            if let Ok(mut s) = signal(SignalKind::from_raw(sig)) {
                s.recv().await;
                st.store(true, Ordering::SeqCst);
            }
        });
    }
    match rt.block_on(archive(a, stop)) {
        Ok(n) => {
            println!("archived {n} event(s)");
            ExitCode::SUCCESS
        }
        Err(e) => {
            eprintln!("xdhcpd events archive: {e:#}");
            ExitCode::FAILURE
        }
    }
}

/// Connects to the archive for the `ctl` readers (`ctl history --archive`, `ctl servers`):
/// `--archive-ca-file`, `--archive-cert-file`, `--archive-key-file` as given (TLS when the CA
/// is).
pub async fn archive_connect(
    conn: &str,
    password_file: Option<&Path>,
    [ca, cert, key]: [&Option<PathBuf>; 3],
) -> anyhow::Result<Client> {
    let tls = ca.as_ref().map(|ca| TlsClientConfig {
        ca_file: ca.clone(),
        cert_file: cert.clone(),
        key_file: key.clone(),
    });
    pg_connect(conn, password_file, tls.as_ref(), "--archive").await
}

/// Connects to PostgreSQL (the connection driven by a task); over TLS when `tls` is given
/// (`what`: the options' prefix named in errors, e.g. `--postgres` or `--archive`).
pub async fn pg_connect(
    conn: &str,
    password_file: Option<&Path>,
    tls: Option<&TlsClientConfig>,
    what: &str,
) -> anyhow::Result<Client> {
    use tokio_postgres::config::SslMode;
    let mut c: tokio_postgres::Config = conn
        .parse()
        .with_context(|| "parsing the PostgreSQL connection string".to_string())?;
    c.application_name("xdhcpd-events");
    if c.get_connect_timeout().is_none() {
        c.connect_timeout(Duration::from_secs(5));
    }
    if let Some(p) = password_file {
        c.password(nats::read_secret(p).with_context(|| crate::tls::key(what, "password-file"))?);
    }
    match tls {
        Some(t) => {
            let tls = crate::tls::PgTls::new(t, what)?;
            c.ssl_mode(SslMode::Require);
            let (client, connection) = c
                .connect(tls)
                .await
                .context("connecting to PostgreSQL (TLS)")?;
            tokio::spawn(drive(connection));
            Ok(client)
        }
        None => {
            if c.get_ssl_mode() == SslMode::Require {
                anyhow::bail!(
                    "sslmode=require needs {} (the CA that signs the server's certificate)",
                    crate::tls::key(what, "ca-file")
                );
            }
            let (client, connection) =
                c.connect(NoTls).await.context("connecting to PostgreSQL")?;
            tokio::spawn(drive(connection));
            Ok(client)
        }
    }
}

async fn drive<S, T>(connection: tokio_postgres::Connection<S, T>)
where
    S: tokio::io::AsyncRead + tokio::io::AsyncWrite + Unpin,
    T: tokio::io::AsyncRead + tokio::io::AsyncWrite + Unpin,
{
    if let Err(e) = connection.await {
        tracing::warn!("PostgreSQL connection: {e}");
    }
}

/// One row's columns, gathered per batch.
#[derive(Default)]
struct Rows {
    e: Vec<String>,
    s: Vec<String>,
    q: Vec<i64>,
    sub: Vec<String>,
    t: Vec<i64>,
    ev: Vec<String>,
    ip: Vec<String>,
    m: Vec<String>,
    c: Vec<Option<String>>,
    r: Vec<Option<String>>,
    ls: Vec<i64>,
    le: Vec<i64>,
    src: Vec<String>,
    sid: Vec<Option<String>>,
    rel: Vec<Option<String>>,
    rol: Vec<Option<String>>,
}

impl Rows {
    fn push(&mut self, id: String, seq: u64, subject: &str, n: NatsEvent) {
        let ev = n.event;
        self.sid.push(n.server_id);
        self.rel.push(n.relationship);
        self.rol.push(n.role);
        self.e.push(id);
        self.s.push(n.server);
        self.q.push(seq as i64);
        self.sub.push(subject.to_string());
        self.t.push(i64::from(ev.time));
        self.ev.push(ev.event);
        self.ip.push(ev.ip);
        self.m.push(ev.mac);
        self.c.push(ev.client_id);
        self.r.push(ev.relay_info);
        self.ls.push(i64::from(ev.start));
        self.le.push(i64::from(ev.expiry));
        self.src.push(
            match ev.source {
                Source::Dhcp => "dhcp",
                Source::Failover => "failover",
            }
            .to_string(),
        );
    }
}

/// The events of one stream message, each with its event id and its own subject: a single
/// event (id: the message's `Nats-Msg-Id`), or a batch (a JSON array whose events carry their
/// ids; subject `<prefix>.<server>.<subnet>.batch` stored as `...<subnet>.<event>`, what the
/// event would have had alone). All or nothing: a message with one bad event is refused.
pub fn message_rows(
    header_id: Option<&str>,
    subject: &str,
    payload: &[u8],
) -> Result<Vec<(String, String, NatsEvent)>, String> {
    let ok_ip = |e: &NatsEvent| {
        e.event
            .ip
            .parse::<Ipv4Addr>()
            .map(|_| ())
            .map_err(|_| format!("bad address {:?}", e.event.ip))
    };
    if payload.first() == Some(&b'[') {
        let evs: Vec<NatsEvent> = serde_json::from_slice(payload).map_err(|e| e.to_string())?;
        let stem = subject
            .strip_suffix(nats::BATCH_TOKEN)
            .filter(|s| s.ends_with('.'))
            .ok_or_else(|| format!("a batch on subject {subject}"))?;
        evs.into_iter()
            .map(|mut e| {
                ok_ip(&e)?;
                let id = e.id.take().ok_or("a batched event without id")?;
                Ok((id, format!("{stem}{}", e.event.event), e))
            })
            .collect()
    } else {
        let id = header_id.ok_or("no Nats-Msg-Id")?;
        let e: NatsEvent = serde_json::from_slice(payload).map_err(|e| e.to_string())?;
        ok_ip(&e)?;
        Ok(vec![(id.to_string(), subject.to_string(), e)])
    }
}

async fn archive(a: ArchiveArgs, stop: Arc<AtomicBool>) -> anyhow::Result<u64> {
    use async_nats::jetstream::consumer::{pull, AckPolicy};
    let mut pg = pg_connect(
        &a.postgres,
        a.postgres_password_file.as_deref(),
        a.postgres_tls.config().as_ref(),
        "--postgres",
    )
    .await?;
    let (from, to) = migrate(&mut pg).await?;
    if from != to {
        tracing::info!("archive schema migrated from version {from} to {to}");
    }
    let insert = pg.prepare(INSERT).await.context("preparing the insert")?;
    let client = nats::connect(&a.nats_config(), "xdhcpd-archive", "--nats").await?;
    let js = async_nats::jetstream::new(client);
    let stream = js
        .get_stream(&a.stream)
        .await
        .map_err(|e| anyhow::anyhow!("JetStream stream {}: {e}", a.stream))?;
    let mut consumer: async_nats::jetstream::consumer::PullConsumer = stream
        .get_or_create_consumer(
            &a.consumer,
            pull::Config {
                durable_name: Some(a.consumer.clone()),
                ack_policy: AckPolicy::Explicit,
                ack_wait: Duration::from_secs(60),
                ..Default::default()
            },
        )
        .await
        .map_err(|e| anyhow::anyhow!("consumer {} on {}: {e}", a.consumer, a.stream))?;
    let batch = a.batch.clamp(1, 10_000);
    let mut total = 0u64;
    let mut bad = 0u64;
    let mut last_report = Instant::now();
    while !stop.load(Ordering::SeqCst) {
        let mut msgs = consumer
            .fetch()
            .max_messages(batch)
            .expires(Duration::from_millis(500))
            .messages()
            .await
            .map_err(|e| anyhow::anyhow!("fetching from {}: {e}", a.stream))?;
        let mut got = Vec::with_capacity(batch);
        while let Some(m) = msgs.next().await {
            got.push(m.map_err(|e| anyhow::anyhow!("fetching from {}: {e}", a.stream))?);
        }
        if got.is_empty() {
            if a.once {
                let pending = consumer
                    .info()
                    .await
                    .map_err(|e| anyhow::anyhow!("consumer info: {e}"))?
                    .num_pending;
                if pending == 0 {
                    break;
                }
            }
            continue;
        }
        let mut rows = Rows::default();
        for m in &got {
            let seq = m.info().map(|i| i.stream_sequence).unwrap_or(0);
            let id = m
                .headers
                .as_ref()
                .and_then(|h| h.get(async_nats::header::NATS_MESSAGE_ID))
                .map(|v| v.as_str());
            match message_rows(id, m.subject.as_str(), &m.payload) {
                Ok(evs) => {
                    for (id, subject, ev) in evs {
                        rows.push(id, seq, &subject, ev);
                    }
                }
                Err(why) => {
                    bad += 1;
                    tracing::warn!(
                        "stream {} seq {seq}: not a lease event message (id {id:?}, {why}); \
                         acknowledged and skipped ({bad} so far)",
                        a.stream,
                    );
                }
            }
        }
        let tx = pg.transaction().await.context("BEGIN")?;
        let params: [&(dyn tokio_postgres::types::ToSql + Sync); 16] = [
            &rows.e, &rows.s, &rows.q, &rows.sub, &rows.t, &rows.ev, &rows.ip, &rows.m, &rows.c,
            &rows.r, &rows.ls, &rows.le, &rows.src, &rows.sid, &rows.rel, &rows.rol,
        ];
        tx.execute(&insert, &params)
            .await
            .context("inserting lease events")?;
        tx.commit().await.context("COMMIT")?;
        // Only now: JetStream may forget them.
        for m in &got {
            m.ack()
                .await
                .map_err(|e| anyhow::anyhow!("acknowledging to JetStream: {e}"))?;
        }
        total += rows.e.len() as u64;
        if last_report.elapsed() >= Duration::from_secs(10) {
            tracing::info!("archived {total} event(s) so far");
            last_report = Instant::now();
        }
    }
    Ok(total)
}

/// The archive's "who held `$1` at `$2`" (`inet`, `timestamptz`, both sent in binary): the
/// last event for the address at or before the time, one backward scan of the `(ip, at, id)`
/// index. The columns as stored (the times in binary too): no cast, conversion or function
/// for a new backend to look up in its empty catalog caches before it can plan.
pub const HISTORY_QUERY: &str =
    "SELECT at, event, mac, client_id, relay_info, lease_start, lease_end, source
     FROM xdhcpd_lease_events
     WHERE ip = $1 AND at <= $2
     ORDER BY at DESC, id DESC LIMIT 1";

/// A `timestamptz` as PostgreSQL sends it in binary: microseconds since 2000-01-01 UTC.
struct PgTimestamp(i64);

impl<'a> tokio_postgres::types::FromSql<'a> for PgTimestamp {
    fn from_sql(
        _: &tokio_postgres::types::Type,
        raw: &'a [u8],
    ) -> Result<Self, Box<dyn std::error::Error + Sync + Send>> {
        let b: [u8; 8] = raw
            .try_into()
            .map_err(|_| format!("a timestamptz of {} bytes, not 8", raw.len()))?;
        Ok(PgTimestamp(i64::from_be_bytes(b)))
    }

    fn accepts(ty: &tokio_postgres::types::Type) -> bool {
        *ty == tokio_postgres::types::Type::TIMESTAMPTZ
    }
}

/// 2000-01-01T00:00:00Z (PostgreSQL's epoch) in Unix microseconds.
const PG_EPOCH_UNIX_US: i64 = 946_684_800_000_000;

/// Unix seconds of a `timestamptz` (microseconds since 2000), rounded as
/// `extract(epoch FROM t)::int8` rounds them (to the nearest second, halves away from zero);
/// `None` for `infinity` or out of the u32 range.
fn unix_secs(us_since_2000: i64) -> Option<u32> {
    let us = us_since_2000.checked_add(PG_EPOCH_UNIX_US)?;
    let secs = if us >= 0 {
        (us + 500_000) / 1_000_000
    } else {
        -((500_000 - us) / 1_000_000)
    };
    u32::try_from(secs).ok()
}

/// Who held `ip` at `at` according to the archive: one round trip (the parameters' types
/// given, so no separate prepare: Parse, Bind, Describe, Execute and Sync go together).
pub async fn who_held(client: &Client, ip: Ipv4Addr, at: u32) -> anyhow::Result<HistoryAnswer> {
    use tokio_postgres::types::Type;
    let when = std::time::UNIX_EPOCH + Duration::from_secs(u64::from(at));
    let row = client
        .query_typed_opt(
            HISTORY_QUERY,
            &[
                (&std::net::IpAddr::V4(ip), Type::INET),
                (&when, Type::TIMESTAMPTZ),
            ],
        )
        .await
        .context("querying xdhcpd_lease_events")?;
    let last = match row {
        None => None,
        Some(r) => {
            let secs = |i: usize| -> anyhow::Result<u32> {
                let PgTimestamp(v) = r.try_get(i)?;
                unix_secs(v).with_context(|| {
                    format!("time {v} µs after 2000-01-01 (column {i}) out of range")
                })
            };
            let time = secs(0)?;
            let source: String = r.try_get(7)?;
            Some(LeaseEvent {
                time,
                ts: crate::leases::time::iso8601(u64::from(time)),
                event: r.try_get(1)?,
                ip: ip.to_string(),
                mac: r.try_get(2)?,
                client_id: r.try_get(3)?,
                relay_info: r.try_get(4)?,
                start: secs(5)?,
                expiry: secs(6)?,
                source: if source == "failover" {
                    Source::Failover
                } else {
                    Source::Dhcp
                },
            })
        }
    };
    Ok(HistoryAnswer::from_last(ip, at, last))
}

/// One server seen through the archive (a row of `xdhcpd_servers`).
#[derive(Clone, Debug, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
pub struct ServerSeen {
    /// Its name (`[event-log.nats] server-name`, the subject token).
    pub server: String,
    /// Its `server.server-id` (None: only events of a publisher older than schema 2).
    pub server_id: Option<String>,
    /// `[failover] name` of its pair (None: no failover, or an older publisher).
    pub relationship: Option<String>,
    /// `primary` / `secondary` in that relationship.
    pub role: Option<String>,
    /// Unix time of its first and last archived event (the events' own times).
    pub first_event: i64,
    pub last_event: i64,
    /// Events archived, in all and per kind.
    pub events: i64,
    pub acks: i64,
    pub renews: i64,
    pub releases: i64,
    pub declines: i64,
    pub expires: i64,
    /// Unix time the archiver last stored an event of it.
    pub last_archived: i64,
}

/// Every server seen through the archive, by relationship then name.
pub async fn servers(client: &Client) -> anyhow::Result<Vec<ServerSeen>> {
    let has: Option<String> = client
        .query_one("SELECT to_regclass('xdhcpd_servers')::text", &[])
        .await
        .context("looking for xdhcpd_servers")?
        .try_get(0)?;
    if has.is_none() {
        anyhow::bail!(
            "the archive has no table xdhcpd_servers (schema older than version 2): run \
             `xdhcpd events archive` of this version once, it migrates the schema"
        );
    }
    let rows = client
        .query(
            "SELECT server, server_id, relationship, role,
                    extract(epoch FROM first_event)::int8, extract(epoch FROM last_event)::int8,
                    events, acks, renews, releases, declines, expires,
                    extract(epoch FROM last_archived)::int8
             FROM xdhcpd_servers
             ORDER BY relationship NULLS LAST, role NULLS LAST, server",
            &[],
        )
        .await
        .context("querying xdhcpd_servers")?;
    rows.iter()
        .map(|r| {
            Ok(ServerSeen {
                server: r.try_get(0)?,
                server_id: r.try_get(1)?,
                relationship: r.try_get(2)?,
                role: r.try_get(3)?,
                first_event: r.try_get(4)?,
                last_event: r.try_get(5)?,
                events: r.try_get(6)?,
                acks: r.try_get(7)?,
                renews: r.try_get(8)?,
                releases: r.try_get(9)?,
                declines: r.try_get(10)?,
                expires: r.try_get(11)?,
                last_archived: r.try_get(12)?,
            })
        })
        .collect()
}

/// `xdhcpd ctl servers` arguments.
#[derive(clap::Args, Clone, Debug)]
pub struct ServersArgs {
    /// The PostgreSQL archive of `xdhcpd events archive`: `host=... port=... dbname=...
    /// user=...` or a postgresql:// URL.
    #[arg(long)]
    pub archive: String,
    /// File whose first line is the archive's PostgreSQL password.
    #[arg(long)]
    pub archive_password_file: Option<PathBuf>,
    /// TLS to the archive (required when set): the CA certificate(s) (PEM) that sign the
    /// server's.
    #[arg(long)]
    pub archive_ca_file: Option<PathBuf>,
    /// TLS to the archive: this client's certificate (PEM), with --archive-key-file.
    #[arg(long, requires_all = ["archive_key_file", "archive_ca_file"])]
    pub archive_cert_file: Option<PathBuf>,
    /// TLS to the archive: the key of --archive-cert-file (PEM).
    #[arg(long, requires = "archive_cert_file")]
    pub archive_key_file: Option<PathBuf>,
    /// Print the list as JSON.
    #[arg(long)]
    pub json: bool,
}

/// Runs `xdhcpd ctl servers` (reads the archive; no daemon involved).
pub fn main_servers(a: ServersArgs) -> ExitCode {
    let run = || -> anyhow::Result<()> {
        let rt = tokio::runtime::Builder::new_current_thread()
            .enable_all()
            .build()
            .context("tokio runtime")?;
        let list = rt.block_on(async {
            let c = archive_connect(
                &a.archive,
                a.archive_password_file.as_deref(),
                [
                    &a.archive_ca_file,
                    &a.archive_cert_file,
                    &a.archive_key_file,
                ],
            )
            .await?;
            servers(&c).await
        })?;
        if a.json {
            println!("{}", serde_json::to_string_pretty(&list)?);
        } else {
            print!("{}", format_servers(&list));
        }
        Ok(())
    };
    match run() {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => {
            eprintln!("xdhcpd ctl servers: {e:#}");
            ExitCode::FAILURE
        }
    }
}

/// The table `xdhcpd ctl servers` prints.
pub fn format_servers(list: &[ServerSeen]) -> String {
    use std::fmt::Write as _;
    let t =
        |s: i64| u64::try_from(s).map_or_else(|_| "-".to_string(), crate::leases::time::iso8601);
    let o = |s: &Option<String>| s.clone().unwrap_or_else(|| "-".into());
    let head = [
        "SERVER",
        "SERVER-ID",
        "RELATIONSHIP",
        "ROLE",
        "FIRST EVENT",
        "LAST EVENT",
        "EVENTS",
        "ACK",
        "RENEW",
        "RELEASE",
        "DECLINE",
        "EXPIRE",
    ];
    let mut rows: Vec<[String; 12]> = vec![head.map(str::to_string)];
    for s in list {
        rows.push([
            s.server.clone(),
            o(&s.server_id),
            o(&s.relationship),
            o(&s.role),
            t(s.first_event),
            t(s.last_event),
            s.events.to_string(),
            s.acks.to_string(),
            s.renews.to_string(),
            s.releases.to_string(),
            s.declines.to_string(),
            s.expires.to_string(),
        ]);
    }
    let mut width = [0usize; 12];
    for r in &rows {
        for (w, c) in width.iter_mut().zip(r) {
            *w = (*w).max(c.len());
        }
    }
    let mut out = String::new();
    for r in &rows {
        let line: Vec<String> = r
            .iter()
            .zip(width)
            .map(|(c, w)| format!("{c:<w$}"))
            .collect();
        let _ = writeln!(out, "{}", line.join("  ").trim_end());
    }
    let mut rels: Vec<&str> = list
        .iter()
        .filter_map(|s| s.relationship.as_deref())
        .collect();
    rels.sort_unstable();
    rels.dedup();
    let _ = writeln!(
        out,
        "{} server(s), {} failover relationship(s), {} event(s)",
        list.len(),
        rels.len(),
        list.iter().map(|s| s.events).sum::<i64>()
    );
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    /// The history query's times are sent as `timestamptz` and rounded here as
    /// `extract(epoch FROM at)::int8` rounded them in SQL before (nearest second, halves away
    /// from zero), so the answers stay what they were for sub-second times.
    #[test]
    fn history_archive_times_round_like_extract_epoch_int8() {
        let at = |unix_us: i64| unix_secs(unix_us - PG_EPOCH_UNIX_US);
        assert_eq!(at(1_735_689_600_000_000), Some(1_735_689_600));
        assert_eq!(at(1_735_689_600_499_999), Some(1_735_689_600));
        assert_eq!(at(1_735_689_600_500_000), Some(1_735_689_601));
        assert_eq!(at(1_735_689_600_999_999), Some(1_735_689_601));
        assert_eq!(at(0), Some(0));
        assert_eq!(at(499_999), Some(0));
        // Before 1970 (and so out of u32): rounded away from zero, then refused.
        assert_eq!(at(-500_000), None);
        assert_eq!(at(-499_999), Some(0));
        assert_eq!(at(i64::from(u32::MAX) * 1_000_000), Some(u32::MAX));
        assert_eq!(at(i64::from(u32::MAX) * 1_000_000 + 500_000), None);
        // timestamptz 'infinity' / '-infinity'.
        assert_eq!(unix_secs(i64::MAX), None);
        assert_eq!(unix_secs(i64::MIN), None);
    }

    fn event(ip: &str, time: u32, kind: &str, id: Option<&str>) -> NatsEvent {
        NatsEvent {
            server: "dhcp-a".into(),
            server_id: Some("10.77.0.1".into()),
            relationship: None,
            role: None,
            id: id.map(Into::into),
            event: LeaseEvent {
                time,
                ts: crate::leases::time::iso8601(u64::from(time)),
                event: kind.into(),
                ip: ip.into(),
                mac: "02:00:00:00:00:01".into(),
                client_id: None,
                relay_info: None,
                start: time,
                expiry: time + 60,
                source: Source::Dhcp,
            },
        }
    }

    #[test]
    fn archive_reads_single_event_and_batch_messages_in_order() {
        // One event per message (the id in the header, the subject names the event).
        let one = event("10.77.1.2", 5, "ack", None);
        let rows = message_rows(
            Some("dhcp-a/10.77.1.2/ack/5/65/02:00:00:00:00:01"),
            "xdhcpd.events.dhcp-a.10-77-0-0_16.ack",
            &serde_json::to_vec(&one).expect("json"),
        )
        .expect("single");
        assert_eq!(rows.len(), 1);
        assert_eq!(rows[0].0, "dhcp-a/10.77.1.2/ack/5/65/02:00:00:00:00:01");
        assert_eq!(rows[0].1, "xdhcpd.events.dhcp-a.10-77-0-0_16.ack");
        assert_eq!(rows[0].2, one);
        // A batch: each event with its own id, stored under the subject it would have had.
        let batch = vec![
            event("10.77.1.2", 5, "ack", Some("i1")),
            event("10.77.1.2", 6, "release", Some("i2")),
            event("10.77.1.3", 6, "ack", Some("i3")),
        ];
        let rows = message_rows(
            Some("i1+3/0123456789abcdef"),
            "xdhcpd.events.dhcp-a.10-77-0-0_16.batch",
            &serde_json::to_vec(&batch).expect("json"),
        )
        .expect("batch");
        let got: Vec<(&str, &str, u32)> = rows
            .iter()
            .map(|(id, sub, e)| (id.as_str(), sub.as_str(), e.event.time))
            .collect();
        assert_eq!(
            got,
            vec![
                ("i1", "xdhcpd.events.dhcp-a.10-77-0-0_16.ack", 5),
                ("i2", "xdhcpd.events.dhcp-a.10-77-0-0_16.release", 6),
                ("i3", "xdhcpd.events.dhcp-a.10-77-0-0_16.ack", 6),
            ]
        );
        assert!(rows.iter().all(|(_, _, e)| e.id.is_none()));
        // Refused whole: an event without id, a bad address, a batch on another subject, a
        // single event without a header id.
        let mut no_id = batch.clone();
        no_id[1].id = None;
        let mut bad_ip = batch.clone();
        bad_ip[2].event.ip = "10.77.1".into();
        for (sub, payload) in [
            (
                "xdhcpd.events.dhcp-a.10-77-0-0_16.batch",
                serde_json::to_vec(&no_id).expect("json"),
            ),
            (
                "xdhcpd.events.dhcp-a.10-77-0-0_16.batch",
                serde_json::to_vec(&bad_ip).expect("json"),
            ),
            (
                "xdhcpd.events.dhcp-a.10-77-0-0_16.ack",
                serde_json::to_vec(&batch).expect("json"),
            ),
        ] {
            assert!(message_rows(Some("x"), sub, &payload).is_err(), "{sub}");
        }
        assert!(message_rows(None, "s.ack", &serde_json::to_vec(&one).expect("json")).is_err());
    }

    #[test]
    fn archive_servers_table_lists_relationships_and_counts() {
        let s = |name: &str, rel: Option<&str>, role: Option<&str>, events| ServerSeen {
            server: name.into(),
            server_id: Some("10.77.0.1".into()),
            relationship: rel.map(Into::into),
            role: role.map(Into::into),
            first_event: 1_764_810_000,
            last_event: 1_764_810_060,
            events,
            acks: events - 1,
            renews: 1,
            releases: 0,
            declines: 0,
            expires: 0,
            last_archived: 1_764_810_061,
        };
        let text = format_servers(&[
            s("dhcp-1a", Some("pair-1"), Some("primary"), 10),
            s("dhcp-1b", Some("pair-1"), Some("secondary"), 7),
            s("old", None, None, 3),
        ]);
        let lines: Vec<&str> = text.lines().collect();
        assert_eq!(lines.len(), 5, "{text}");
        assert!(lines[0].starts_with("SERVER "), "{text}");
        assert!(
            lines[1].contains("dhcp-1a") && lines[1].contains("pair-1"),
            "{text}"
        );
        assert!(lines[1].contains("2025-12-04T01:00:00Z"), "{text}");
        assert!(
            lines[3].contains("old") && lines[3].contains(" - "),
            "{text}"
        );
        assert_eq!(
            lines[4],
            "3 server(s), 1 failover relationship(s), 20 event(s)"
        );
    }
}
