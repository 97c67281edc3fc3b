//! Registrations in PostgreSQL (issue 17, part 1), end to end with a real PostgreSQL 15 from
//! Debian's `postgresql` package, started by the test as the `postgres` user in a temporary
//! directory inside the server's network namespace (its own loopback, so the port is free)
//! and removed afterwards. The daemon (`--io udp`) follows it
//! (`registrations.backend = "postgres"`, password from a file, schema migrated by the
//! daemon). Shown:
//! - one registration INSERTed in PostgreSQL reaches the daemon's index (seen through the
//!   control API) within 1 s; time printed;
//! - 100,000 registrations COPied in one transaction all reach it; time printed;
//! - PostgreSQL stopped: the daemon keeps answering from its index, reports itself
//!   disconnected (status and /metrics), and a restarted daemon starts from its local copy;
//! - changes made while the daemon could not reach PostgreSQL (an update, a delete, an
//!   insert) arrive once it can, caught up from the last applied sequence number (no full
//!   load).
//!
//! Needs root (namespaces, `runuser`) and /usr/lib/postgresql/15/bin.

#[path = "common/netns.rs"]
mod netns;

#[path = "common/require.rs"]
mod require;

mod daemon_common;
mod pg_common;

use std::fmt::Write as _;
use std::path::{Path, PathBuf};
use std::time::{Duration, Instant};

use daemon_common::*;
use pg_common::{http, Pg, PG_BIN, PG_PORT};
use require::{require, Capability};

const BULK: u32 = 100_000;

fn config(bed: &Bed) -> Res<PathBuf> {
    config_with(bed, "")
}

/// The daemon's configuration, `extra` appended to `[registrations.postgres]`.
fn config_with(bed: &Bed, extra: &str) -> Res<PathBuf> {
    let pw = bed.path("pg-password");
    write_file(&pw, "s3cret-xdhcpd\n")?;
    let path = bed.path("xdhcpd.toml");
    let text = format!(
        r#"[server]
interface = "{iface}"
server-id = "{SRV_ADDR}"
lease-file = "{leases}"
control-socket = "{sock}"
registration-file = "{regs}"

[[subnet]]
cidr = "10.77.0.0/16"
router = ["{SRV_ADDR}"]

[[subnet.pool]]
range = "10.77.1.0-10.77.8.255"

[registrations]
backend = "postgres"

[registrations.postgres]
host = "127.0.0.1"
port = {PG_PORT}
dbname = "prov"
user = "xdhcpd"
password-file = "{pw}"
connect-timeout-secs = 2
{extra}
"#,
        iface = bed.srv_if(),
        leases = bed.path("leases.db").display(),
        sock = bed.path("ctl.sock").display(),
        regs = bed.path("regs/registrations").display(),
        pw = pw.display(),
    );
    write_file(&path, &text)?;
    Ok(path)
}

fn start(bed: &Bed, config: &Path, log: &Path) -> Res<Proc> {
    let bin = xdhcpd_bin()?;
    let mut cmd = bed.srv.command(&bin.to_string_lossy());
    cmd.arg("run")
        .arg("-c")
        .arg(config)
        .args(["--io", "udp", "--stats-interval", "0", "--run-for", "150"])
        .current_dir(repo_root())
        .env("RUST_LOG", "info")
        .env("NO_COLOR", "1");
    let mut p = Proc::spawn("xdhcpd", &mut cmd, log)?;
    wait_for("xdhcpd to serve", Duration::from_secs(30), || {
        p.check_alive()?;
        Ok(read_text(log)?.contains("serving ").then_some(()))
    })?;
    std::thread::sleep(Duration::from_millis(200));
    Ok(p)
}

/// The registration the daemon's index holds for `mac` (None: not registered).
fn show(bed: &Bed, mac: &str) -> Res<Option<serde_json::Value>> {
    let (code, body) = http(
        &bed.path("ctl.sock"),
        "POST",
        "/v1/registrations",
        &format!(r#"{{"op":"show","select":{{"mac":"{mac}"}}}}"#),
    )?;
    let v: serde_json::Value =
        serde_json::from_str(&body).map_err(|e| format!("show {mac}: {e}: {body}"))?;
    match code {
        200 => Ok(Some(v["data"].clone())),
        409 if v["error"]
            .as_str()
            .is_some_and(|e| e.contains("not registered")) =>
        {
            Ok(None)
        }
        _ => Err(format!("show {mac}: {code} {body}")),
    }
}

fn status(bed: &Bed) -> Res<serde_json::Value> {
    let (code, body) = http(&bed.path("ctl.sock"), "GET", "/v1/status", "")?;
    if code != 200 {
        return Err(format!("status: {code} {body}"));
    }
    let v: serde_json::Value = serde_json::from_str(&body).map_err(|e| format!("{e}: {body}"))?;
    Ok(v["registrations"].clone())
}

fn count(bed: &Bed) -> Res<u64> {
    let (_, body) = http(&bed.path("ctl.sock"), "GET", "/v1/registrations", "")?;
    let v: serde_json::Value = serde_json::from_str(&body).map_err(|e| format!("{e}: {body}"))?;
    v["message"]
        .as_str()
        .and_then(|m| m.split_whitespace().next())
        .and_then(|n| n.parse().ok())
        .ok_or_else(|| format!("count: {body}"))
}

/// A DHCP exchange by busybox udhcpc (the client namespace, `CLI_MAC`): the address it was
/// given.
fn dhcp_address(bed: &Bed, name: &str) -> Res<String> {
    let ev = bed.path(&format!("{name}.events"));
    let script = bed.path(&format!("{name}.sh"));
    write_script(
        &script,
        &format!("#!/bin/sh\necho \"$1 $ip\" >> '{}'\nexit 0\n", ev.display()),
    )?;
    let out = output(bed.cli.command("busybox").args([
        "udhcpc",
        "-i",
        bed.cli_if(),
        "-f",
        "-n",
        "-q",
        "-t",
        "4",
        "-T",
        "1",
        "-s",
        &script.to_string_lossy(),
    ]))?;
    let text = read_text(&ev).unwrap_or_default();
    text.lines()
        .find_map(|l| l.strip_prefix("bound ").map(str::to_string))
        .ok_or_else(|| format!("{name}: no lease: {text} {}{}", out.stdout, out.stderr))
}

fn bulk_mac(i: u32) -> String {
    let b = i.to_be_bytes();
    format!("02:70:{:02x}:{:02x}:{:02x}:{:02x}", b[0], b[1], b[2], b[3])
}

/// Polls `f` every 2 ms until it is true; the time it took.
fn until(what: &str, limit: Duration, mut f: impl FnMut() -> Res<bool>) -> Res<Duration> {
    let t = Instant::now();
    loop {
        if f()? {
            return Ok(t.elapsed());
        }
        if t.elapsed() > limit {
            return Err(format!("{what}: not within {limit:?}"));
        }
        std::thread::sleep(Duration::from_millis(2));
    }
}

#[test]
fn registration_postgres_follow_copy_outage_catch_up() -> Res<()> {
    // A missing PostgreSQL fails the test (or skips it only on request, never under CI).
    if !require(&[
        Capability::Root,
        Capability::Program("psql"),
        Capability::File(Path::new(PG_BIN).join("initdb"), "postgresql"),
    ]) {
        return Ok(());
    }
    xdhcpd_bin()?;
    let bed = Bed::new(None)?;
    let pg = Pg::init(bed.srv.name())?;
    pg.start(true)?;
    pg.psql(
        "postgres",
        "CREATE ROLE xdhcpd LOGIN PASSWORD 's3cret-xdhcpd'",
    )?;
    pg.psql("postgres", "CREATE DATABASE prov OWNER xdhcpd")?;

    let cfg = config(&bed)?;
    let log = bed.path("xdhcpd.log");
    let mut daemon = start(&bed, &cfg, &log)?;
    // The daemon migrates the empty database and follows it.
    until("connected to PostgreSQL", Duration::from_secs(10), || {
        Ok(status(&bed)?["connected"] == true)
    })?;
    let v = pg.psql("prov", "SELECT max(version) FROM xdhcpd_schema_migrations")?;
    assert_eq!(v.trim(), "2", "schema migrated by the daemon");

    // One INSERT.
    // The client namespace's MAC: its DHCP client gets the fixed address.
    let one_mac = mac_str(&CLI_MAC);
    let one = one_mac.as_str();
    assert!(show(&bed, one)?.is_none());
    let t = Instant::now();
    pg.psql(
        "prov",
        &format!(
            "INSERT INTO xdhcpd_registrations (mac, \"group\", fixed_address, host_name, options) \
             VALUES ('{one}', 'modem', '10.77.3.3', 'cm-1', '{{\"43\": \"0104deadbeef\"}}')"
        ),
    )?;
    let committed = t.elapsed();
    let seen = until("the INSERT in the index", Duration::from_secs(5), || {
        Ok(show(&bed, one)?.is_some())
    })?;
    eprintln!(
        "registration_postgres: 1 row: committed after {committed:?}, in the daemon's index \
         {seen:?} after the commit"
    );
    assert!(seen < Duration::from_secs(1), "1 row took {seen:?}");
    let r = show(&bed, one)?.ok_or("gone")?;
    assert_eq!(r["group"], "modem", "{r}");
    assert_eq!(r["fixed-address"], "10.77.3.3", "{r}");
    assert_eq!(r["host-name"], "cm-1", "{r}");
    assert_eq!(r["options"]["43"], "0104deadbeef", "{r}");
    assert_eq!(dhcp_address(&bed, "dhcp-1")?, "10.77.3.3");

    // The local API cannot change what PostgreSQL owns.
    let (code, body) = http(
        &bed.path("ctl.sock"),
        "POST",
        "/v1/registrations",
        r#"{"op":"remove","select":{"mac":"02:70:aa:00:00:01"}}"#,
    )?;
    assert_eq!(code, 409, "{body}");
    assert!(body.contains("managed in PostgreSQL"), "{body}");

    // COPY of 100,000 rows in one transaction.
    let csv = pg.dir.path().join("bulk.csv");
    let mut text = String::with_capacity(BULK as usize * 30);
    for i in 0..BULK {
        let _ = writeln!(text, "{},cpe", bulk_mac(i));
    }
    write_file(&csv, &text)?;
    let t = Instant::now();
    pg.psql(
        "prov",
        &format!(
            "\\copy xdhcpd_registrations (mac, \"group\") FROM '{}' WITH (FORMAT csv)",
            csv.display()
        ),
    )?;
    let committed = t.elapsed();
    let seen = until("the COPY in the index", Duration::from_secs(60), || {
        Ok(show(&bed, &bulk_mac(BULK - 1))?.is_some())
    })?;
    eprintln!(
        "registration_postgres: COPY of {BULK} rows: committed after {committed:?}, all in the \
         daemon's index {seen:?} after the commit"
    );
    assert_eq!(count(&bed)?, u64::from(BULK) + 1);
    assert!(show(&bed, &bulk_mac(0))?.is_some());
    let st = status(&bed)?;
    assert_eq!(st["lag_changes"], 0, "{st}");
    assert_eq!(st["last_applied_seq"], u64::from(BULK) + 1, "{st}");

    // PostgreSQL down: the daemon serves on from its index and says it is disconnected.
    pg.stop()?;
    until("disconnected", Duration::from_secs(5), || {
        Ok(status(&bed)?["connected"] == false)
    })?;
    assert!(show(&bed, one)?.is_some());
    assert_eq!(
        dhcp_address(&bed, "dhcp-pg-down")?,
        "10.77.3.3",
        "served while PostgreSQL is down"
    );
    let (_, metrics) = http(&bed.path("ctl.sock"), "GET", "/metrics", "")?;
    assert!(
        metrics.contains("xdhcpd_registrations_pg_connected 0"),
        "{metrics}"
    );
    assert!(
        metrics.contains(&format!(
            "xdhcpd_registrations_pg_last_applied_seq {}",
            BULK + 1
        )),
        "{metrics}"
    );
    // Restarted while PostgreSQL is down: starts from the local copy.
    daemon.signal(libc::SIGTERM)?;
    daemon.wait_exit(Duration::from_secs(15))?;
    let log2 = bed.path("xdhcpd-2.log");
    let mut daemon = start(&bed, &cfg, &log2)?;
    assert_eq!(count(&bed)?, u64::from(BULK) + 1);
    assert_eq!(show(&bed, one)?.ok_or("lost")?["group"], "modem");
    let st = status(&bed)?;
    assert_eq!(st["connected"], false, "{st}");
    assert_eq!(st["last_applied_seq"], u64::from(BULK) + 1, "{st}");
    assert_eq!(
        dhcp_address(&bed, "dhcp-restarted")?,
        "10.77.3.3",
        "served from the local copy"
    );

    // Changes made while the daemon cannot reach PostgreSQL (UNIX socket only).
    pg.start(false)?;
    let late = "02:70:bb:00:00:01";
    pg.psql(
        "prov",
        &format!(
            "BEGIN; UPDATE xdhcpd_registrations SET \"group\" = 'mta' WHERE mac = '{one}'; \
             DELETE FROM xdhcpd_registrations WHERE mac = '{}'; \
             INSERT INTO xdhcpd_registrations (mac, \"group\") VALUES ('{late}', 'cpe'); COMMIT",
            bulk_mac(7)
        ),
    )?;
    std::thread::sleep(Duration::from_millis(500));
    assert_eq!(show(&bed, one)?.ok_or("lost")?["group"], "modem");
    assert!(show(&bed, late)?.is_none());
    pg.stop()?;
    // PostgreSQL back on TCP: the daemon catches up (its retry backoff is at most 5 s).
    pg.start(true)?;
    let t = Instant::now();
    let seen = until("the catch-up", Duration::from_secs(15), || {
        Ok(show(&bed, late)?.is_some())
    })?;
    eprintln!("registration_postgres: caught up {seen:?} after PostgreSQL returned");
    assert_eq!(show(&bed, one)?.ok_or("lost")?["group"], "mta");
    assert!(show(&bed, &bulk_mac(7))?.is_none(), "the DELETE arrived");
    assert_eq!(count(&bed)?, u64::from(BULK) + 1);
    let st = status(&bed)?;
    assert_eq!(st["connected"], true, "{st}");
    assert_eq!(st["full_loads"], 0, "caught up from the cursor: {st}");
    assert_eq!(st["changes_applied"], 3, "{st}");
    assert_eq!(st["last_applied_seq"], u64::from(BULK) + 4, "{st}");
    assert!(t.elapsed() < Duration::from_secs(15));
    daemon.signal(libc::SIGTERM)?;
    daemon.wait_exit(Duration::from_secs(15))?;
    let text = read_text(&log2)?;
    assert!(
        text.contains("serving from the local copy"),
        "the outage is logged: {text}"
    );
    drop(pg);
    Ok(())
}

/// `[registrations.postgres] groups`: PostgreSQL sends the server only the changes of its
/// groups (a bulk insert of another group reaches it as nothing: its `changes_applied` does
/// not move), and a registration that moves between groups is removed by the server that
/// loses it and added by the one that gains it.
#[test]
fn registration_postgres_groups_selected_in_sql_and_moves_between_groups() -> Res<()> {
    if !require(&[
        Capability::Root,
        Capability::Program("psql"),
        Capability::File(Path::new(PG_BIN).join("initdb"), "postgresql"),
    ]) {
        return Ok(());
    }
    xdhcpd_bin()?;
    let bed = Bed::new(None)?;
    let pg = Pg::init(bed.srv.name())?;
    pg.start(true)?;
    pg.psql(
        "postgres",
        "CREATE ROLE xdhcpd LOGIN PASSWORD 's3cret-xdhcpd'",
    )?;
    pg.psql("postgres", "CREATE DATABASE prov OWNER xdhcpd")?;
    let cfg = config_with(&bed, "groups = [\"modem\"]")?;
    let mut daemon = start(&bed, &cfg, &bed.path("xdhcpd.log"))?;
    until("connected to PostgreSQL", Duration::from_secs(10), || {
        Ok(status(&bed)?["connected"] == true)
    })?;

    // One transaction: modem, cpe, modem.
    let (a, b, c) = (
        "02:71:00:00:00:0a",
        "02:71:00:00:00:0b",
        "02:71:00:00:00:0c",
    );
    pg.psql(
        "prov",
        &format!(
            "INSERT INTO xdhcpd_registrations (mac, \"group\") VALUES \
             ('{a}', 'modem'), ('{b}', 'cpe'), ('{c}', 'modem')"
        ),
    )?;
    until("the modem rows", Duration::from_secs(5), || {
        Ok(show(&bed, a)?.is_some() && show(&bed, c)?.is_some())
    })?;
    until("the cursor at the head", Duration::from_secs(5), || {
        Ok(status(&bed)?["last_applied_seq"] == 3)
    })?;
    assert!(show(&bed, b)?.is_none(), "a cpe row on a modem server");
    let st = status(&bed)?;
    assert_eq!(
        st["changes_applied"], 2,
        "only the modem rows were sent: {st}"
    );

    // 50,000 rows of another group, then one modem row: only the modem row is sent.
    let bulk = 50_000u32;
    pg.psql(
        "prov",
        &format!(
            "INSERT INTO xdhcpd_registrations (mac, \"group\") \
             SELECT ('02:72:00:' || lpad(to_hex(i / 65536), 2, '0') || ':' || \
                     lpad(to_hex(i / 256 % 256), 2, '0') || ':' || lpad(to_hex(i % 256), 2, '0'))\
                     ::macaddr, 'cpe' \
             FROM generate_series(0, {}) i",
            bulk - 1
        ),
    )?;
    let d = "02:71:00:00:00:0d";
    pg.psql(
        "prov",
        &format!("INSERT INTO xdhcpd_registrations (mac, \"group\") VALUES ('{d}', 'modem')"),
    )?;
    let head = u64::from(bulk) + 4;
    let took = until(
        "the modem row after the bulk",
        Duration::from_secs(20),
        || Ok(show(&bed, d)?.is_some() && status(&bed)?["last_applied_seq"] == head),
    )?;
    let st = status(&bed)?;
    eprintln!(
        "registration_postgres_groups: {bulk} rows of another group and one of ours: ours in \
         the index {took:?} after the commit; changes sent {}",
        st["changes_applied"]
    );
    assert_eq!(
        st["changes_applied"], 3,
        "the bulk of another group was sent: {st}"
    );
    assert_eq!(st["lag_changes"], 0, "{st}");
    assert_eq!(count(&bed)?, 3);

    // Moves: a modem -> cpe (the server loses it), b cpe -> modem (gains it), c deleted, one
    // cpe row deleted (not sent).
    pg.psql(
        "prov",
        &format!(
            "BEGIN; UPDATE xdhcpd_registrations SET \"group\" = 'cpe' WHERE mac = '{a}'; \
             UPDATE xdhcpd_registrations SET \"group\" = 'modem', host_name = 'moved-in' \
             WHERE mac = '{b}'; \
             DELETE FROM xdhcpd_registrations WHERE mac IN ('{c}', '02:72:00:00:10:10'); COMMIT"
        ),
    )?;
    until("the moves", Duration::from_secs(5), || {
        Ok(status(&bed)?["last_applied_seq"] == head + 4)
    })?;
    assert!(show(&bed, a)?.is_none(), "moved out of modem: removed");
    let r = show(&bed, b)?.ok_or("moved into modem: not added")?;
    assert_eq!(r["group"], "modem", "{r}");
    assert_eq!(r["host-name"], "moved-in", "{r}");
    assert!(show(&bed, c)?.is_none(), "deleted");
    assert_eq!(count(&bed)?, 2, "b and d");
    let st = status(&bed)?;
    assert_eq!(
        st["changes_applied"], 6,
        "a, b and c sent, not the cpe delete: {st}"
    );
    assert_eq!(
        st["full_loads"], 1,
        "only the first one, of the empty database: {st}"
    );

    // A restart catches up from the local copy; a fresh full load selects the same rows.
    daemon.signal(libc::SIGTERM)?;
    daemon.wait_exit(Duration::from_secs(15))?;
    let _ = std::fs::remove_dir_all(bed.path("regs"));
    let mut daemon = start(&bed, &cfg, &bed.path("xdhcpd-2.log"))?;
    until("the full load", Duration::from_secs(20), || {
        Ok(status(&bed)?["full_loads"] == 1)
    })?;
    assert_eq!(count(&bed)?, 2, "full load: b and d");
    assert!(show(&bed, b)?.is_some() && show(&bed, d)?.is_some());
    daemon.signal(libc::SIGTERM)?;
    daemon.wait_exit(Duration::from_secs(15))?;
    drop(pg);
    Ok(())
}
