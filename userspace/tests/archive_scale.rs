//! The lease event archive at carrier scale (issue 17: "who had address A at time T" over 100
//! million events in at most 50 ms). Ignored by default (it fills a real PostgreSQL 15 with
//! about 33 GB and takes about half an hour on the 2-core machine); run on request:
//!
//! ```sh
//! XDHCPD_BIN=$PWD/target/release/xdhcpd \
//!   cargo test --release -p xdhcpd --test archive_scale -- --ignored --nocapture
//! ```
//!
//! (`XDHCPD_ARCHIVE_EVENTS=N` for another size, `XDHCPD_ARCHIVE_ADDRESSES=M` for another
//! number of addresses.) A PostgreSQL of its own in a namespace of its own, in a temporary
//! directory removed at the end, also when the test fails (the table with it).
//!
//! To keep the archive and time the queries again later without the half-hour load:
//! `XDHCPD_ARCHIVE_DIR=/var/tmp/archive100m`. The cluster is then made in that directory
//! (which must not exist or be empty) and kept after the test (shut down cleanly); the file
//! `archive_scale.complete` (the size) is written there only once the load, the keys, the
//! indexes, the vacuum and the checks below have finished. A later run with the same
//! variable and size finds it, skips the load and runs only the query phase, after checking
//! the kept data again (schema and indexes as today's `MIGRATIONS` make them, every index
//! valid, the row count, 1,000 rows against the generator); it fails with the reason when
//! the directory holds another size, or an unfinished build (no marker: remove it to build
//! again), or data that fail a check.
//!
//! The archive's own schema (`xdhcpd::events::archive::MIGRATIONS`, both versions). The rows
//! are synthetic: address `n mod M` of 10.0.0.0/12, one event every 315 ms over a year (so
//! each address has an event every 3.6 days), per address ack, 8 renews, release, each lease
//! (4 days) a new MAC; rows in stream (time) order, as the archiver writes them. The load
//! is one binary `COPY ... FREEZE` from this test's generator into the table emptied in the
//! same transaction (so, with `wal_level = minimal`, no WAL for it, and no later vacuum
//! rewrite of every page); the primary key, the unique `event_id` and the three history
//! indexes are made after the load (sorted builds instead of 500 million single inserts),
//! the secondary ones by the schema's own `CREATE INDEX IF NOT EXISTS`; the result is then
//! checked to have exactly the columns, constraints and indexes of a database the schema
//! made, and 1,000 rows spread over the table to equal the SQL definition of the generator.
//!
//! Then, with PostgreSQL restarted and the database's files written back and dropped from
//! the page cache (`sync -f`, `dd iflag=nocache`: the first query per address reads from
//! the disk), for 24 addresses spread over the table at times spread over the year:
//! - `xdhcpd ctl history --archive ... --ip A --at T --json`, the operator's command: wall
//!   time from spawn to exit (process start, TCP, SCRAM, query, output), started straight in
//!   the namespace (`setns` before exec, not `ip netns exec`, which costs its own mounts);
//!   its answer checked against the generator;
//! - the server's own time for that command's statement (parse + bind/plan + execute, from
//!   `log_min_duration_statement = 0`) and the blocks it read (`auto_explain`, buffers),
//!   cold and warm;
//! - the same SQL under `EXPLAIN (ANALYZE, BUFFERS)` (warm);
//! - the command again (warm);
//! - in this process, the library's connect (TCP + SCRAM) and query separately (warm).

#[path = "common/netns.rs"]
mod netns;

#[path = "common/require.rs"]
mod require;

mod daemon_common;
mod pg_common;

use std::fs::File;
use std::io::Write as _;
use std::os::fd::AsRawFd;
use std::os::unix::process::CommandExt;
use std::path::{Path, PathBuf};
use std::process::Command;
use std::time::{Duration, Instant};

use daemon_common::*;
use pg_common::{run, Pg, PG_BIN, PG_PORT};
use require::{require, Capability};

/// 2025-01-01T00:00:00Z, in ms.
const BASE_MS: u64 = 1_735_689_600_000;
/// PostgreSQL's epoch (2000-01-01T00:00:00Z) in Unix ms.
const PG_EPOCH_MS: u64 = 946_684_800_000;
const YEAR_MS: u64 = 31_536_000_000;
const QUERIES: u64 = 24;
/// The columns the generator writes (the others, schema version 2's, stay NULL).
const COPY_COLUMNS: &str = "id, event_id, server, stream_seq, subject, at, event, ip, mac, \
                            client_id, relay_info, lease_start, lease_end, source";

fn env_u64(name: &str, default: u64) -> Res<u64> {
    match std::env::var(name) {
        Ok(v) => v.parse().map_err(|e| format!("{name}={v}: {e}")),
        Err(_) => Ok(default),
    }
}

/// Free bytes of the file system holding `dir`.
fn free_bytes(dir: &Path) -> Res<u64> {
    let c = std::ffi::CString::new(dir.to_string_lossy().as_bytes()).map_err(|e| e.to_string())?;
    // SAFETY: an all-zero statvfs is a valid value of this plain C struct.
    let mut st: libc::statvfs = unsafe { std::mem::zeroed() };
    // SAFETY: statvfs on a valid C string into a struct we own.
    if unsafe { libc::statvfs(c.as_ptr(), &mut st) } != 0 {
        return Err(format!("statvfs {}", dir.display()));
    }
    Ok(st.f_bavail * st.f_frsize)
}

fn median(v: &[f64]) -> f64 {
    let mut v = v.to_vec();
    v.sort_by(f64::total_cmp);
    v[v.len() / 2]
}

fn max(v: &[f64]) -> f64 {
    v.iter().copied().fold(0.0, f64::max)
}

/// The generator, in Rust: (event, mac) of event `n`.
fn expected(n: u64, addrs: u64) -> (&'static str, String) {
    let k = (n / addrs) % 10;
    let ev = match k {
        0 => "ack",
        9 => "release",
        _ => "renew",
    };
    (
        ev,
        format!("{:012x}", (n / (addrs * 10)) * addrs + n % addrs),
    )
}

/// The generator's event `n` as one tuple of PostgreSQL's binary COPY format (the columns of
/// [`COPY_COLUMNS`]); the same rows as [`SQL_GENERATOR`].
fn push_row(buf: &mut Vec<u8>, n: u64, addrs: u64, step_ms: u64) {
    fn int8(buf: &mut Vec<u8>, v: i64) {
        buf.extend_from_slice(&8i32.to_be_bytes());
        buf.extend_from_slice(&v.to_be_bytes());
    }
    fn text(buf: &mut Vec<u8>, args: std::fmt::Arguments) {
        let at = buf.len();
        buf.extend_from_slice(&[0; 4]);
        // Writing into a Vec cannot fail.
        let _ = buf.write_fmt(args);
        let len = (buf.len() - at - 4) as i32;
        buf[at..at + 4].copy_from_slice(&len.to_be_bytes());
    }
    let k = (n / addrs) % 10;
    let ev = match k {
        0 => "ack",
        9 => "release",
        _ => "renew",
    };
    let at_us = ((BASE_MS + n * step_ms - PG_EPOCH_MS) * 1000) as i64;
    let end_us = if k == 9 {
        at_us
    } else {
        at_us + 4 * 86_400_000_000
    };
    buf.extend_from_slice(&14i16.to_be_bytes());
    int8(buf, n as i64 + 1);
    text(buf, format_args!("e{n:010}"));
    text(buf, format_args!("srv-{}", n % 4));
    int8(buf, n as i64);
    text(buf, format_args!("xdhcpd.events"));
    int8(buf, at_us);
    text(buf, format_args!("{ev}"));
    // inet: family (PGSQL_AF_INET), bits, is_cidr, address length, address.
    buf.extend_from_slice(&8i32.to_be_bytes());
    buf.extend_from_slice(&[2, 32, 0, 4]);
    buf.extend_from_slice(&(0x0a00_0000u32 + (n % addrs) as u32).to_be_bytes());
    text(
        buf,
        format_args!("{:012x}", (n / (addrs * 10)) * addrs + n % addrs),
    );
    buf.extend_from_slice(&(-1i32).to_be_bytes());
    buf.extend_from_slice(&(-1i32).to_be_bytes());
    int8(buf, at_us);
    int8(buf, end_us);
    text(buf, format_args!("dhcp"));
}

/// The generator in SQL (the definition [`push_row`] follows): the row of event `n` from
/// `g(n, k, t)` with `k = (n / M) % 10` and `t` its time.
const SQL_GENERATOR: &str = "('e' || lpad(n::text, 10, '0'), 'srv-' || (n % 4), n, \
     'xdhcpd.events', t, CASE k WHEN 0 THEN 'ack' WHEN 9 THEN 'release' ELSE 'renew' END, \
     '10.0.0.0'::inet + (n % {addrs}), lpad(to_hex((n / {a10}) * {addrs} + n % {addrs}), 12, \
     '0'), NULL::text, NULL::text, t, CASE k WHEN 9 THEN t ELSE t + interval '4 days' END, \
     'dhcp')";

/// Loads events 0..n: one binary `COPY ... FREEZE` into the table truncated in the same
/// transaction, over the server's UNIX socket; progress every 10 million.
fn load(pg: &Pg, n: u64, addrs: u64, step_ms: u64) -> Res<()> {
    use futures_util::SinkExt;
    let rt = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .map_err(|e| format!("tokio runtime: {e}"))?;
    let conn = format!(
        "host={} port={PG_PORT} dbname=archive user=postgres",
        pg.sock().display()
    );
    rt.block_on(async {
        let pgerr = |what: &'static str| move |e: tokio_postgres::Error| format!("{what}: {e}");
        let (client, connection) = tokio_postgres::connect(&conn, tokio_postgres::NoTls)
            .await
            .map_err(pgerr("connecting for the load"))?;
        let driver = tokio::spawn(connection);
        client
            .batch_execute("BEGIN; TRUNCATE xdhcpd_lease_events")
            .await
            .map_err(pgerr("BEGIN; TRUNCATE"))?;
        let sink = client
            .copy_in(&format!(
                "COPY xdhcpd_lease_events ({COPY_COLUMNS}) FROM STDIN (FORMAT binary, FREEZE)"
            ))
            .await
            .map_err(pgerr("COPY"))?;
        futures_util::pin_mut!(sink);
        let mut buf = Vec::with_capacity(1 << 21);
        buf.extend_from_slice(b"PGCOPY\n\xff\r\n\0");
        buf.extend_from_slice(&[0; 8]);
        let t0 = Instant::now();
        for i in 0..n {
            push_row(&mut buf, i, addrs, step_ms);
            if buf.len() >= 1 << 20 {
                let chunk = std::mem::replace(&mut buf, Vec::with_capacity(1 << 21));
                sink.send(std::io::Cursor::new(chunk))
                    .await
                    .map_err(pgerr("COPY data"))?;
            }
            if (i + 1) % 10_000_000 == 0 {
                let s = t0.elapsed().as_secs_f64();
                eprintln!(
                    "archive_scale: {} of {n} events sent in {s:.0} s ({:.0}/s)",
                    i + 1,
                    (i + 1) as f64 / s
                );
            }
        }
        buf.extend_from_slice(&(-1i16).to_be_bytes());
        sink.send(std::io::Cursor::new(buf))
            .await
            .map_err(pgerr("COPY data"))?;
        let rows = sink.finish().await.map_err(pgerr("COPY end"))?;
        client
            .batch_execute("COMMIT")
            .await
            .map_err(pgerr("COMMIT"))?;
        if rows != n {
            return Err(format!("COPY stored {rows} rows, not {n}"));
        }
        drop(client);
        let _ = driver.await;
        Ok(())
    })
}

/// The table's columns, constraints and indexes as the catalog describes them.
fn shape(pg: &Pg, db: &str) -> Res<String> {
    pg.psql(
        db,
        "SELECT 'column ' || attname || ' ' || format_type(atttypid, atttypmod) \
                || CASE WHEN attnotnull THEN ' not null' ELSE '' END \
                || coalesce(' default ' || pg_get_expr(d.adbin, d.adrelid), '') \
         FROM pg_attribute a LEFT JOIN pg_attrdef d ON d.adrelid = a.attrelid AND d.adnum = a.attnum \
         WHERE a.attrelid = 'xdhcpd_lease_events'::regclass AND a.attnum > 0 \
               AND NOT a.attisdropped \
         UNION ALL SELECT 'constraint ' || conname || ' ' || pg_get_constraintdef(oid) \
         FROM pg_constraint WHERE conrelid = 'xdhcpd_lease_events'::regclass \
         UNION ALL SELECT 'index ' || indexdef FROM pg_indexes \
         WHERE tablename = 'xdhcpd_lease_events' ORDER BY 1",
    )
}

/// From the server log written during one command: the server's time for its statement
/// (the sum of the parse, bind and execute durations `log_min_duration_statement = 0`
/// logs for `xdhcpd-events`) and the shared blocks its plan read and hit (`auto_explain`).
fn server_side(log: &str) -> Res<(f64, u64, u64)> {
    let mut ms = 0.0;
    let mut phases = 0;
    for line in log.lines() {
        let Some(rest) = line.split("xdhcpd-events: LOG:  duration: ").nth(1) else {
            continue;
        };
        let Some((num, what)) = rest.split_once(" ms  ") else {
            continue;
        };
        if ["parse ", "bind ", "execute "]
            .iter()
            .any(|p| what.starts_with(p))
        {
            ms += num
                .parse::<f64>()
                .map_err(|e| format!("duration {num:?}: {e}"))?;
            phases += 1;
        }
    }
    if phases < 3 {
        return Err(format!(
            "no parse/bind/execute durations of xdhcpd-events in the log:\n{log}"
        ));
    }
    let buffers = log
        .lines()
        .find_map(|l| l.trim().strip_prefix("Buffers: shared "))
        .ok_or_else(|| format!("no auto_explain buffers in the log:\n{log}"))?;
    let count = |key: &str| -> u64 {
        buffers
            .split_whitespace()
            .find_map(|w| w.strip_prefix(key)?.trim_end_matches(',').parse().ok())
            .unwrap_or(0)
    };
    Ok((ms, count("read="), count("hit=")))
}

/// The end of the text of `path` from byte `from` on, and the new end.
fn log_since(path: &Path, from: usize) -> Res<(String, usize)> {
    let b = std::fs::read(path).map_err(|e| format!("{}: {e}", path.display()))?;
    let from = from.min(b.len());
    Ok((String::from_utf8_lossy(&b[from..]).into_owned(), b.len()))
}

fn log_len(path: &Path) -> Res<usize> {
    Ok(std::fs::metadata(path)
        .map_err(|e| format!("{}: {e}", path.display()))?
        .len() as usize)
}

/// The file, in a kept archive's directory (`XDHCPD_ARCHIVE_DIR`), written only after the
/// load, the keys, the indexes, the vacuum and the checks all finished: its text is
/// [`marker_text`] of the archive's size.
const MARKER: &str = "archive_scale.complete";

/// The settings the query phase adds to `postgresql.conf` (once: a reused archive has them).
const QUERY_SETTINGS: &str = "\n# archive_scale: query phase\nlog_min_duration_statement = 0\n\
     log_line_prefix = '%m [%p] %a: '\nshared_preload_libraries = 'auto_explain'\n\
     auto_explain.log_min_duration = 0\nauto_explain.log_analyze = on\n\
     auto_explain.log_buffers = on\nauto_explain.log_timing = off\n";

fn marker_text(n: u64, addrs: u64) -> String {
    format!("events={n}\naddresses={addrs}\n")
}

/// Whether the kept directory `dir` holds a complete archive of `n` events over `addrs`
/// addresses (its marker); `false` when `dir` does not exist or is empty (to be built there);
/// an error for anything else: another size, or a build that did not finish.
fn complete_archive(dir: &Path, n: u64, addrs: u64) -> Res<bool> {
    let marker = dir.join(MARKER);
    match std::fs::read_to_string(&marker) {
        Ok(text) if text == marker_text(n, addrs) => Ok(true),
        Ok(text) => Err(format!(
            "XDHCPD_ARCHIVE_DIR={} holds another archive ({}: {:?}), not {n} events over \
             {addrs} addresses: set XDHCPD_ARCHIVE_EVENTS / XDHCPD_ARCHIVE_ADDRESSES to its \
             size, or another directory",
            dir.display(),
            marker.display(),
            text.trim().replace('\n', ", ")
        )),
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => {
            let empty = match std::fs::read_dir(dir) {
                Ok(mut d) => d.next().is_none(),
                Err(e) if e.kind() == std::io::ErrorKind::NotFound => true,
                Err(e) => return Err(format!("XDHCPD_ARCHIVE_DIR={}: {e}", dir.display())),
            };
            if empty {
                Ok(false)
            } else {
                Err(format!(
                    "XDHCPD_ARCHIVE_DIR={} is not empty but has no {MARKER}: an earlier build \
                     stopped before the end (or it is not this test's); remove it \
                     (`rm -rf {}`) to build the archive again",
                    dir.display(),
                    dir.display()
                ))
            }
        }
        Err(e) => Err(format!("{}: {e}", marker.display())),
    }
}

/// `p` or its nearest ancestor that exists (where a directory to be made would live).
fn existing_ancestor(p: PathBuf) -> PathBuf {
    let mut p = p.as_path();
    while !p.exists() {
        match p.parent() {
            Some(q) => p = q,
            None => break,
        }
    }
    p.to_path_buf()
}

/// A new cluster (not started) made into the archive: the load settings, the schema, the
/// load without keys or indexes, then the keys, the history indexes, a vacuum, and
/// [`check_archive`]. Left running.
fn build_archive(pg: &Pg, conf: &Path, n: u64, addrs: u64, step_ms: u64) -> Res<()> {
    let mut text = read_text(conf)?;
    text.push_str(
        "\nshared_buffers = 1GB\nmaintenance_work_mem = 6GB\nmax_wal_size = 16GB\n\
         checkpoint_timeout = 30min\nsynchronous_commit = off\nfull_page_writes = off\n\
         wal_level = minimal\nmax_wal_senders = 0\nmax_parallel_maintenance_workers = 2\n\
         timezone = 'UTC'\n",
    );
    write_file(conf, &text)?;
    pg.start(true)?;
    pg.psql("postgres", "CREATE DATABASE archive")?;
    for m in xdhcpd::events::archive::MIGRATIONS {
        pg.psql("archive", m)?;
    }
    // Every index out of the way during the load (made again after it).
    pg.psql(
        "archive",
        "DROP INDEX xdhcpd_lease_events_ip_at, xdhcpd_lease_events_mac_at, \
         xdhcpd_lease_events_server_at; \
         ALTER TABLE xdhcpd_lease_events DROP CONSTRAINT xdhcpd_lease_events_pkey, \
         DROP CONSTRAINT xdhcpd_lease_events_event_id_key",
    )?;

    let t0 = Instant::now();
    load(pg, n, addrs, step_ms)?;
    let load_time = t0.elapsed();
    eprintln!(
        "archive_scale: {n} events loaded in {load_time:?} ({:.0}/s)",
        n as f64 / load_time.as_secs_f64()
    );
    let t1 = Instant::now();
    pg.psql(
        "archive",
        &format!(
            "SELECT setval('xdhcpd_lease_events_id_seq', {n}); \
             ALTER TABLE xdhcpd_lease_events \
             ADD CONSTRAINT xdhcpd_lease_events_pkey PRIMARY KEY (id), \
             ADD CONSTRAINT xdhcpd_lease_events_event_id_key UNIQUE (event_id)"
        ),
    )?;
    let keys_time = t1.elapsed();
    let t2 = Instant::now();
    pg.psql("archive", xdhcpd::events::archive::MIGRATIONS[0])?;
    let index_time = t2.elapsed();
    let t3 = Instant::now();
    pg.psql("archive", "VACUUM (ANALYZE) xdhcpd_lease_events")?;
    let vacuum = t3.elapsed();
    check_archive(pg, n, addrs, step_ms)?;
    let sizes = pg.psql(
        "archive",
        "SELECT c.relname || '=' || pg_size_pretty(pg_relation_size(c.oid)) \
         FROM pg_class c WHERE c.relname LIKE 'xdhcpd_lease_events%' AND c.relkind IN ('r', 'i') \
         ORDER BY 1",
    )?;
    eprintln!(
        "archive_scale: loaded in {load_time:?}, primary key + unique event_id in \
         {keys_time:?}, the three history indexes in {index_time:?}, vacuum analyze \
         {vacuum:?}; schema as made by the migrations; sizes: {}",
        sizes.split_whitespace().collect::<Vec<_>>().join(", ")
    );
    Ok(())
}

/// The archive (PostgreSQL running) is what this test asks for: the table has exactly the
/// columns, constraints and indexes a database made by today's `MIGRATIONS` has (compared
/// with a database `fresh` made again from them), every index valid and ready, `n` rows,
/// and 1,000 rows spread over the table equal to the SQL definition of the generator.
fn check_archive(pg: &Pg, n: u64, addrs: u64, step_ms: u64) -> Res<()> {
    pg.psql("postgres", "DROP DATABASE IF EXISTS fresh")?;
    pg.psql("postgres", "CREATE DATABASE fresh")?;
    for m in xdhcpd::events::archive::MIGRATIONS {
        pg.psql("fresh", m)?;
    }
    let (got, want) = (shape(pg, "archive")?, shape(pg, "fresh")?);
    if got != want {
        return Err(format!(
            "the archive's table is not the schema's (MIGRATIONS):\n--- archive:\n{got}\n--- \
             made by MIGRATIONS:\n{want}"
        ));
    }
    let invalid = pg.psql(
        "archive",
        "SELECT count(*) FROM pg_index WHERE indrelid = 'xdhcpd_lease_events'::regclass \
         AND NOT (indisvalid AND indisready AND indislive)",
    )?;
    if invalid.trim() != "0" {
        return Err(format!(
            "{} index(es) of xdhcpd_lease_events not valid (an index build that did not finish)",
            invalid.trim()
        ));
    }
    let count = pg.psql("archive", "SELECT count(*) FROM xdhcpd_lease_events")?;
    if count.trim() != n.to_string() {
        return Err(format!(
            "xdhcpd_lease_events has {} rows, not the {n} asked for",
            count.trim()
        ));
    }
    let same = pg.psql(
        "archive",
        &format!(
            "SELECT count(*) FROM (SELECT n, (n / {addrs}) % 10 AS k, \
                 to_timestamp(({BASE_MS} + n * {step_ms}) / 1000.0) AS t \
               FROM (SELECT ({n}::int8 - 1) * i / 999 AS n FROM generate_series(0, 999) i) s) g \
             JOIN xdhcpd_lease_events e ON e.id = g.n + 1 \
             WHERE (e.event_id, e.server, e.stream_seq, e.subject, e.at, e.event, e.ip, e.mac, \
                    e.client_id, e.relay_info, e.lease_start, e.lease_end, e.source) \
                   IS NOT DISTINCT FROM {}",
            SQL_GENERATOR
                .replace("{addrs}", &addrs.to_string())
                .replace("{a10}", &(addrs * 10).to_string())
        ),
    )?;
    if same.trim() != "1000" {
        return Err(format!(
            "{} of 1000 sampled rows equal the generator's for {n} events over {addrs} \
             addresses",
            same.trim()
        ));
    }
    Ok(())
}

#[test]
#[ignore = "fills PostgreSQL with 100 million events (~33 GB, ~30 min): run on request"]
fn archive_history_query_over_100m_events_within_50ms() -> Res<()> {
    if !require(&[
        Capability::Root,
        Capability::Program("psql"),
        Capability::Program("fincore"),
        Capability::File(Path::new(PG_BIN).join("initdb"), "postgresql"),
    ]) {
        return Ok(());
    }
    let n = env_u64("XDHCPD_ARCHIVE_EVENTS", 100_000_000)?;
    let addrs = env_u64("XDHCPD_ARCHIVE_ADDRESSES", 1_000_000)?;
    if n < addrs * 10 || addrs == 0 || addrs > 1 << 20 {
        return Err(format!(
            "{n} events over {addrs} addresses: need at least 10 events per address, at most \
             2^20 addresses"
        ));
    }
    let step_ms = YEAR_MS / n;
    let bin = xdhcpd_bin()?;
    let keep = std::env::var_os("XDHCPD_ARCHIVE_DIR").map(PathBuf::from);
    let complete = match &keep {
        Some(d) => complete_archive(d, n, addrs)?,
        None => false,
    };
    if !complete {
        // About 310 bytes per event with the indexes (149 + 159 at 1 million), and the index
        // builds' sort files (with maintenance_work_mem = 6GB, a few GB at most); 4 GiB to
        // spare for the others on the disk.
        let need = n * 330;
        let free = free_bytes(&existing_ancestor(
            keep.clone().unwrap_or_else(std::env::temp_dir),
        ))?;
        eprintln!(
            "archive_scale: {n} events over {addrs} addresses; {:.1} GB free, about {:.1} GB \
             needed",
            free as f64 / 1e9,
            need as f64 / 1e9
        );
        if free < need + (4 << 30) {
            return Err(format!(
                "not enough disk: {free} bytes free, {need} + 4 GiB needed"
            ));
        }
    }
    // Dropped in reverse order, also on failure: PostgreSQL stopped and, unless kept, its
    // directory (the whole archive) removed, then the namespace.
    let ns = netns::Netns::new("tls17a").map_err(|e| e.to_string())?;
    let pg = match &keep {
        None => Pg::init(ns.name())?,
        Some(d) if complete => Pg::reuse(ns.name(), d)?,
        Some(d) => Pg::init_kept(ns.name(), d)?,
    };
    let conf = pg.data().join("postgresql.conf");
    if complete {
        pg.start(true)?;
        eprintln!(
            "archive_scale: reusing the complete archive of {n} events in {}; checking it",
            pg.dir.path().display()
        );
        let t = Instant::now();
        check_archive(&pg, n, addrs, step_ms)?;
        eprintln!(
            "archive_scale: the kept archive checked in {:?} (schema, indexes valid, {n} rows, \
             1,000 rows equal to the generator's)",
            t.elapsed()
        );
    } else {
        build_archive(&pg, &conf, n, addrs, step_ms)?;
        if let Some(d) = &keep {
            // Written last: only a finished, checked archive has it.
            write_file(&d.join(MARKER), &marker_text(n, addrs))?;
            eprintln!(
                "archive_scale: the archive is kept in {} (marker {MARKER}); the next run \
                 with XDHCPD_ARCHIVE_DIR={} and the same size skips the load",
                d.display(),
                d.display()
            );
        }
    }

    // Cold: PostgreSQL restarted, the database's files written back and dropped from the
    // page cache. From now on the server logs each statement's duration and plan.
    pg.stop()?;
    let mut text = read_text(&conf)?;
    if !text.contains(QUERY_SETTINGS) {
        text.push_str(QUERY_SETTINGS);
        write_file(&conf, &text)?;
    }
    let base = pg.data().join("base");
    run(Command::new("sync").arg("-f").arg(&base))?;
    let mut files = Vec::new();
    for d in std::fs::read_dir(&base).map_err(|e| e.to_string())? {
        let d = d.map_err(|e| e.to_string())?.path();
        for f in std::fs::read_dir(&d).map_err(|e| e.to_string())? {
            files.push(f.map_err(|e| e.to_string())?.path());
        }
    }
    for f in &files {
        run(Command::new("dd").arg(format!("if={}", f.display())).args([
            "iflag=nocache",
            "count=0",
            "status=none",
        ]))?;
    }
    let resident: u64 = run(Command::new("fincore")
        .args(["--bytes", "--noheadings", "--output", "RES"])
        .args(&files))?
    .split_whitespace()
    .filter_map(|w| w.parse::<u64>().ok())
    .sum();
    pg.start(true)?;
    eprintln!(
        "archive_scale: PostgreSQL restarted, {} files dropped from the page cache ({} bytes \
         of them still resident)",
        files.len(),
        resident
    );

    let pw = pg.dir.path().join("su-pw");
    let conn = format!("host=127.0.0.1 port={PG_PORT} dbname=archive user=postgres");
    let netns_file = File::open(format!("/run/netns/{}", ns.name()))
        .map_err(|e| format!("/run/netns/{}: {e}", ns.name()))?;
    let netns_fd = netns_file.as_raw_fd();
    let log = pg.dir.path().join("pg.log");
    // The operator's command in the namespace; (wall time, answer, server time of its
    // statement in ms, blocks read, blocks hit).
    let ask = |ip: &str, at: u64| -> Res<(f64, serde_json::Value, f64, u64, u64)> {
        let mut cmd = Command::new(&bin);
        cmd.args([
            "ctl",
            "history",
            "--ip",
            ip,
            "--at",
            &at.to_string(),
            "--json",
            "--archive",
            &conn,
            "--archive-password-file",
        ])
        .arg(&pw);
        // SAFETY: setns is async-signal-safe; the fd stays open for the closure's life
        // (`netns_file` outlives every command).
        unsafe {
            cmd.pre_exec(move || {
                if libc::setns(netns_fd, libc::CLONE_NEWNET) != 0 {
                    return Err(std::io::Error::last_os_error());
                }
                Ok(())
            });
        }
        let mark = log_len(&log)?;
        let t = Instant::now();
        let out = output(&mut cmd)?;
        let took = t.elapsed().as_secs_f64() * 1000.0;
        if !out.status.success() {
            return Err(format!(
                "ctl history {ip} {at}: {}{}",
                out.stdout, out.stderr
            ));
        }
        let v = serde_json::from_str(&out.stdout).map_err(|e| format!("{e}: {}", out.stdout))?;
        // The server writes its log lines before its answer's last message; a few ms for the
        // logging collector-less stderr to reach the file.
        std::thread::sleep(Duration::from_millis(20));
        let (slice, _) = log_since(&log, mark)?;
        let (ms, read, hit) = server_side(&slice)?;
        Ok((took, v, ms, read, hit))
    };
    let mut cold = Vec::new();
    let mut warm = Vec::new();
    let mut cold_server = Vec::new();
    let mut warm_server = Vec::new();
    let mut cold_reads = Vec::new();
    let mut sql_ms = Vec::new();
    let mut connect_ms = Vec::new();
    let mut query_ms = Vec::new();
    let mut plans = String::new();
    for i in 0..QUERIES {
        // Addresses spread over the range, times spread over the year (after the address's
        // first event).
        let a = (i * addrs / QUERIES + i * 7919) % addrs;
        let ip = std::net::Ipv4Addr::from(0x0a00_0000u32 + a as u32);
        let ip_s = ip.to_string();
        let last_n = n - 1 - ((n - 1 - a) % addrs);
        let span_ms = (last_n * step_ms).max(1);
        let at_ms =
            BASE_MS + addrs * step_ms + (span_ms - addrs * step_ms) * (i + 1) / (QUERIES + 1);
        let at = at_ms / 1000;
        // The generator's last event for the address at or before `at`.
        let m = ((at * 1000 - BASE_MS) / step_ms).min(n - 1);
        let want = m - ((m + addrs - a) % addrs);
        let (ev, mac) = expected(want, addrs);
        let (took, v, ms, read, _) = ask(&ip_s, at)?;
        assert_eq!(v["last_event"]["event"], ev, "{ip} at {at}: {v}");
        assert_eq!(v["last_event"]["mac"], mac.as_str(), "{ip} at {at}: {v}");
        // Its time in whole seconds, rounded to the nearest (the generator's are in ms).
        let want_s = (BASE_MS + want * step_ms + 500) / 1000;
        assert_eq!(v["last_event"]["time"], want_s, "{ip} at {at}: {v}");
        // Held at `at` unless released or its 4-day lease ran out before.
        let held = ev != "release" && (BASE_MS + want * step_ms) / 1000 + 4 * 86_400 > at;
        assert_eq!(v["holder"].is_null(), !held, "{ip} at {at}: {v}");
        cold.push(took);
        cold_server.push(ms);
        cold_reads.push(read as f64);
        let q = xdhcpd::events::archive::HISTORY_QUERY
            .replace("$1", &format!("'{ip}'::inet"))
            .replace("$2", &format!("to_timestamp({at})"));
        let plan = pg.psql("archive", &format!("EXPLAIN (ANALYZE, BUFFERS) {q}"))?;
        let exec: f64 = plan
            .lines()
            .find_map(|l| {
                l.trim()
                    .strip_prefix("Execution Time: ")?
                    .strip_suffix(" ms")
            })
            .and_then(|x| x.parse().ok())
            .ok_or_else(|| format!("no execution time in {plan}"))?;
        sql_ms.push(exec);
        if i == 0 {
            plans = plan;
        }
        let (took, v2, ms, _, _) = ask(&ip_s, at)?;
        assert_eq!(v2, v, "the same answer twice");
        warm.push(took);
        warm_server.push(ms);
        // The library's two steps apart, in a thread in the namespace.
        let (c, q, ans) = ns
            .run({
                let conn = conn.clone();
                let pw = pw.clone();
                move || {
                    let rt = tokio::runtime::Builder::new_current_thread()
                        .enable_all()
                        .build()?;
                    rt.block_on(async {
                        let t = Instant::now();
                        let client = xdhcpd::events::archive::archive_connect(
                            &conn,
                            Some(&pw),
                            [&None, &None, &None],
                        )
                        .await?;
                        let c = t.elapsed();
                        let t = Instant::now();
                        let ans = xdhcpd::events::archive::who_held(&client, ip, at as u32).await?;
                        anyhow::Ok((c, t.elapsed(), ans))
                    })
                }
            })
            .map_err(|e| e.to_string())?
            .map_err(|e| format!("{e:#}"))?;
        assert_eq!(
            serde_json::to_value(&ans).map_err(|e| e.to_string())?,
            v,
            "library and command agree"
        );
        connect_ms.push(c.as_secs_f64() * 1000.0);
        query_ms.push(q.as_secs_f64() * 1000.0);
    }
    eprintln!("archive_scale: the first plan:\n{plans}");
    eprintln!(
        "archive_scale: {QUERIES} queries over {n} events:\n  \
         `xdhcpd ctl history --archive`, cold (first query per address after restart + page \
         cache dropped): median {:.1} ms, max {:.1} ms; warm: median {:.1} ms, max {:.1} ms\n  \
         server time of the command's statement (parse + plan + execute): cold median {:.3} \
         ms, max {:.3} ms ({} to {} blocks read); warm median {:.3} ms, max {:.3} ms\n  \
         EXPLAIN ANALYZE execution (warm): median {:.3} ms, max {:.3} ms\n  \
         in process (warm): connect (TCP + SCRAM) median {:.2} ms, max {:.2} ms; query median \
         {:.3} ms, max {:.3} ms",
        median(&cold),
        max(&cold),
        median(&warm),
        max(&warm),
        median(&cold_server),
        max(&cold_server),
        cold_reads.iter().copied().fold(f64::MAX, f64::min),
        max(&cold_reads),
        median(&warm_server),
        max(&warm_server),
        median(&sql_ms),
        max(&sql_ms),
        median(&connect_ms),
        max(&connect_ms),
        median(&query_ms),
        max(&query_ms),
    );
    assert!(
        median(&cold) <= 50.0 && median(&warm) <= 50.0 && max(&cold_server) <= 50.0,
        "the history query within 50 ms: command cold {cold:?} warm {warm:?}; server cold \
         {cold_server:?}"
    );
    drop(netns_file);
    drop(pg);
    drop(ns);
    Ok(())
}
