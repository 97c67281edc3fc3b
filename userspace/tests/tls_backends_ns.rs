//! TLS to the backends (issue 17 item 4), with real servers from Debian started by the test in
//! the server namespace (its own loopback) and removed afterwards, and a test PKI the test
//! makes with `openssl` (a CA, a server certificate for 127.0.0.1 signed by it, and a second,
//! unrelated CA):
//! - PostgreSQL 15 with `ssl = on` that rejects TCP without TLS (`hostnossl ... reject`): the
//!   registration follower (`[registrations.postgres] tls = "require"`, `ca-file`) connects
//!   (its session is in `pg_stat_ssl`) and a registration INSERTed reaches the daemon; with
//!   the other CA as `ca-file` the connection is refused with an error naming the key; a
//!   plain connection is refused by the server;
//! - `nats-server -js --tls` with user/password: the daemon's sink (`[event-log.nats]`
//!   `tls = "require"`, `ca-file`, `user`, `password-file`) publishes every event;
//!   `xdhcpd events archive` reads the stream over TLS (`--nats-ca-file`) into the TLS-only
//!   PostgreSQL (`--postgres-ca-file`), and `xdhcpd ctl history --archive --archive-ca-file`
//!   answers from it; a wrong CA for either is refused, naming the option.
//!
//! Needs root (namespaces, XDP, `runuser`), openssl, nats-server and
//! /usr/lib/postgresql/15/bin.

#[path = "common/netns.rs"]
mod netns;

#[path = "common/require.rs"]
mod require;

mod daemon_common;
mod lease_common;
mod pg_common;

use std::path::{Path, PathBuf};
use std::time::{Duration, Instant};

use daemon_common::*;
use lease_common::*;
use pg_common::{http, run, Pg, PG_BIN, PG_PORT};
use require::{require, Capability};

const NATS_PORT: u16 = 54322;
const NATS_USER: &str = "xdhcpd-events";
const NATS_PASSWORD: &str = "nats-tls-s3cret";

/// The test PKI: `ca` signed `srv_cert` (for IP 127.0.0.1); `other_ca` signed nothing here.
struct Pki {
    ca: PathBuf,
    other_ca: PathBuf,
    srv_cert: PathBuf,
    srv_key: PathBuf,
}

fn openssl(dir: &Path, args: &[&str]) -> Res<()> {
    run(std::process::Command::new("openssl")
        .args(args)
        .current_dir(dir))
    .map(|_| ())
}

/// A CA key and self-signed certificate `<name>.key` / `<name>.crt` in `dir`.
fn make_ca(dir: &Path, name: &str) -> Res<PathBuf> {
    openssl(
        dir,
        &[
            "req",
            "-x509",
            "-newkey",
            "ec",
            "-pkeyopt",
            "ec_paramgen_curve:prime256v1",
            "-nodes",
            "-keyout",
            &format!("{name}.key"),
            "-out",
            &format!("{name}.crt"),
            "-subj",
            &format!("/CN={name}"),
            "-days",
            "2",
        ],
    )?;
    Ok(dir.join(format!("{name}.crt")))
}

fn make_pki(dir: &Path) -> Res<Pki> {
    std::fs::create_dir_all(dir).map_err(|e| format!("{}: {e}", dir.display()))?;
    let ca = make_ca(dir, "test-ca")?;
    let other_ca = make_ca(dir, "other-ca")?;
    openssl(
        dir,
        &[
            "req",
            "-newkey",
            "ec",
            "-pkeyopt",
            "ec_paramgen_curve:prime256v1",
            "-nodes",
            "-keyout",
            "srv.key",
            "-out",
            "srv.csr",
            "-subj",
            "/CN=127.0.0.1",
        ],
    )?;
    write_file(
        &dir.join("srv.ext"),
        "subjectAltName = IP:127.0.0.1\nbasicConstraints = CA:FALSE\n\
         keyUsage = digitalSignature, keyEncipherment\nextendedKeyUsage = serverAuth\n",
    )?;
    openssl(
        dir,
        &[
            "x509",
            "-req",
            "-in",
            "srv.csr",
            "-CA",
            "test-ca.crt",
            "-CAkey",
            "test-ca.key",
            "-CAcreateserial",
            "-out",
            "srv.crt",
            "-days",
            "2",
            "-extfile",
            "srv.ext",
        ],
    )?;
    Ok(Pki {
        ca,
        other_ca,
        srv_cert: dir.join("srv.crt"),
        srv_key: dir.join("srv.key"),
    })
}

/// A PostgreSQL that takes TCP only over TLS, with `role` (password `pw`) owning `db`.
fn tls_postgres(bed: &Bed, pki: &Pki, role: &str, pw: &str, db: &str) -> Res<Pg> {
    let pg = Pg::init(bed.srv.name())?;
    pg.enable_tls(&pki.srv_cert, &pki.srv_key)?;
    pg.start(true)?;
    pg.psql(
        "postgres",
        &format!("CREATE ROLE \"{role}\" LOGIN PASSWORD '{pw}'"),
    )?;
    pg.psql(
        "postgres",
        &format!("CREATE DATABASE {db} OWNER \"{role}\""),
    )?;
    Ok(pg)
}

fn regs_config(bed: &Bed, name: &str, tls: &str) -> Res<PathBuf> {
    let pw = bed.path("pg-password");
    write_file(&pw, "s3cret-xdhcpd\n")?;
    let path = bed.path(name);
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
{tls}
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

fn status(bed: &Bed) -> Res<serde_json::Value> {
    let (code, body) = http(&bed.path("ctl.sock"), "GET", "/v1/status", "")?;
    if code != 200 {
        return Err(format!("status: {code} {body}"));
    }
    serde_json::from_str(&body).map_err(|e| format!("{e}: {body}"))
}

/// `xdhcpd ARGS` in the server namespace: (success, stdout + stderr).
fn xdhcpd(bed: &Bed, args: &[&str]) -> Res<(bool, String)> {
    let bin = xdhcpd_bin()?;
    let out = output(
        bed.srv
            .command(&bin.to_string_lossy())
            .args(args)
            .env("NO_COLOR", "1"),
    )?;
    Ok((
        out.status.success(),
        format!("{}{}", out.stdout, out.stderr),
    ))
}

#[test]
fn registration_postgres_tls_follower_connects_and_a_wrong_ca_is_refused() -> Res<()> {
    if !require(&[
        Capability::Root,
        Capability::Program("openssl"),
        Capability::Program("psql"),
        Capability::File(Path::new(PG_BIN).join("initdb"), "postgresql"),
    ]) {
        return Ok(());
    }
    let t0 = Instant::now();
    let bin = xdhcpd_bin()?;
    let bed = Bed::new(None)?;
    let pki = make_pki(&bed.path("pki"))?;
    let pg = tls_postgres(&bed, &pki, "xdhcpd", "s3cret-xdhcpd", "prov")?;

    let ca = pki.ca.display().to_string();
    let cfg = regs_config(
        &bed,
        "xdhcpd.toml",
        &format!("tls = \"require\"\nca-file = \"{ca}\""),
    )?;
    let log = bed.path("xdhcpd.log");
    let mut cmd = bed.srv.command(&bin.to_string_lossy());
    cmd.arg("run")
        .arg("-c")
        .arg(&cfg)
        .args(["--io", "udp", "--stats-interval", "0", "--run-for", "120"])
        .env("RUST_LOG", "info")
        .env("NO_COLOR", "1");
    let mut daemon = Proc::spawn("xdhcpd", &mut cmd, &log)?;
    wait_for("xdhcpd to serve", Duration::from_secs(30), || {
        daemon.check_alive()?;
        Ok(read_text(&log)?.contains("serving ").then_some(()))
    })?;
    let st = wait_for(
        "the follower to connect over TLS",
        Duration::from_secs(10),
        || {
            let s = status(&bed)?["registrations"].clone();
            Ok((s["connected"] == true).then_some(s))
        },
    )?;
    assert!(st["last_error"].is_null(), "{st}");
    // The server sees the follower's session as TLS (and takes no other TCP session).
    let tls_sessions = pg.psql(
        "postgres",
        "SELECT count(*) FROM pg_stat_ssl s JOIN pg_stat_activity a USING (pid) \
         WHERE a.application_name = 'xdhcpd' AND s.ssl",
    )?;
    assert_eq!(
        tls_sessions.trim(),
        "1",
        "the follower's session is TLS (pg_stat_ssl)"
    );

    // A registration INSERTed reaches the daemon through the TLS session.
    let mac = "02:70:7e:00:00:01";
    pg.psql(
        "prov",
        &format!(
            "INSERT INTO xdhcpd_registrations (mac, \"group\", fixed_address) \
             VALUES ('{mac}', 'modem', '10.77.3.9')"
        ),
    )?;
    let r = wait_for("the INSERT in the index", Duration::from_secs(5), || {
        let (code, body) = http(
            &bed.path("ctl.sock"),
            "POST",
            "/v1/registrations",
            &format!(r#"{{"op":"show","select":{{"mac":"{mac}"}}}}"#),
        )?;
        Ok((code == 200).then_some(body))
    })?;
    assert!(r.contains("10.77.3.9"), "{r}");

    // The other CA: refused, and the error names the key and the reason.
    let wrong = regs_config(
        &bed,
        "wrong-ca.toml",
        &format!(
            "tls = \"require\"\nca-file = \"{}\"",
            pki.other_ca.display()
        ),
    )?;
    let (ok, text) = xdhcpd(
        &bed,
        &["registrations", "migrate", "-c", &wrong.to_string_lossy()],
    )?;
    eprintln!("registration_postgres_tls: wrong CA: {}", text.trim());
    assert!(
        !ok,
        "a server certificate from another CA is refused: {text}"
    );
    assert!(
        text.contains("registrations.postgres.ca-file") && text.contains("UnknownIssuer"),
        "the error names the key and the reason: {text}"
    );
    // Without TLS the server refuses (TLS is what carried the follower).
    let plain = regs_config(&bed, "plain.toml", "")?;
    let (ok, text) = xdhcpd(
        &bed,
        &["registrations", "migrate", "-c", &plain.to_string_lossy()],
    )?;
    assert!(
        !ok && text.contains("pg_hba.conf rejects connection") && text.contains("no encryption"),
        "plain TCP is rejected by the server: {text}"
    );
    // A CA file that is no certificate: the start is refused, naming the key.
    let junk = bed.path("junk.pem");
    write_file(&junk, "not a certificate\n")?;
    let bad = regs_config(
        &bed,
        "junk-ca.toml",
        &format!("tls = \"require\"\nca-file = \"{}\"", junk.display()),
    )?;
    let (ok, text) = xdhcpd(
        &bed,
        &["registrations", "migrate", "-c", &bad.to_string_lossy()],
    )?;
    assert!(
        !ok && text.contains("registrations.postgres.ca-file")
            && text.contains("no certificate in it"),
        "{text}"
    );

    daemon.check_alive()?;
    daemon.signal(libc::SIGTERM)?;
    daemon.wait_exit(Duration::from_secs(10))?;
    eprintln!(
        "registration_postgres_tls: follower over TLS, wrong CA and plain TCP refused, {:?}",
        t0.elapsed()
    );
    drop(pg);
    Ok(())
}

fn nats_config(bed: &Bed, pki: &Pki) -> Res<PathBuf> {
    let pw = bed.path("nats-password");
    write_file(&pw, &format!("{NATS_PASSWORD}\n"))?;
    let path = bed.path("xdhcpd.toml");
    let text = format!(
        r#"[server]
interface = "{iface}"
server-id = "{SRV_ADDR}"
lease-file = "{leases}"
commit = "ack"
control-socket = "{sock}"

[lease]
default-time = 3600
min-time = 1
max-time = 86400

[[subnet]]
cidr = "10.77.0.0/16"
router = ["{SRV_ADDR}"]

[[subnet.pool]]
range = "10.77.1.0-10.77.4.255"

[event-log]
directory = "{events}"

[event-log.nats]
urls = ["nats://127.0.0.1:{NATS_PORT}"]
server-name = "srv-tls"
user = "{NATS_USER}"
password-file = "{pw}"
tls = "require"
ca-file = "{ca}"
batch-size = 64
"#,
        iface = bed.srv_if(),
        leases = bed.path("leases.db").display(),
        sock = bed.path("ctl.sock").display(),
        events = bed.path("events").display(),
        pw = pw.display(),
        ca = pki.ca.display(),
    );
    write_file(&path, &text)?;
    Ok(path)
}

#[test]
fn events_nats_tls_sink_publishes_and_archive_reads_over_tls() -> Res<()> {
    if !require(&[
        Capability::Root,
        Capability::Program("ip"),
        Capability::Program("openssl"),
        Capability::Program("nats-server"),
        Capability::Program("psql"),
        Capability::File(Path::new(PG_BIN).join("initdb"), "postgresql"),
    ]) {
        return Ok(());
    }
    let t0 = Instant::now();
    loadgen_bin()?;
    let bed = Bed::new(None)?;
    let pki = make_pki(&bed.path("pki"))?;
    let pg = tls_postgres(&bed, &pki, "archiver", "arch1ve-pw", "archive")?;
    let pg_pw = bed.path("pg-password");
    write_file(&pg_pw, "arch1ve-pw\n")?;
    let pg_conn = format!("host=127.0.0.1 port={PG_PORT} dbname=archive user=archiver");

    // nats-server with JetStream, TLS required of every client, user/password.
    let nats_log = bed.path("nats.log");
    let mut cmd = bed.srv.command("nats-server");
    cmd.args(["-js", "-a", "127.0.0.1", "-p", &NATS_PORT.to_string()])
        .args([
            "--user",
            NATS_USER,
            "--pass",
            NATS_PASSWORD,
            "-n",
            "xdhcpd-tls",
        ])
        .arg("--tls")
        .arg("--tlscert")
        .arg(&pki.srv_cert)
        .arg("--tlskey")
        .arg(&pki.srv_key)
        .arg("-sd")
        .arg(bed.path("js-store"));
    let mut nats = Proc::spawn("nats-server", &mut cmd, &nats_log)?;
    wait_for("nats-server to be ready", Duration::from_secs(20), || {
        nats.check_alive()?;
        Ok(read_text(&nats_log)?
            .contains("Server is ready")
            .then_some(()))
    })?;

    let cfg = nats_config(&bed, &pki)?;
    let daemon = start_daemon(
        &bed,
        &cfg,
        "xdp",
        &bed.path("leases.db"),
        &bed.path("xdhcpd.log"),
        &[],
    )?;
    wait_for(
        "the sink to connect over TLS",
        Duration::from_secs(10),
        || Ok((status(&bed)?["event_log"]["nats"]["connected"] == true).then_some(())),
    )?;

    let (mut lg, acked) = spawn_acked_load(&bed, "300", "150")?;
    let mut reader = AckReader::new(&acked);
    let mut acks: Vec<Ack> = Vec::new();
    wait_for("ACKs and published events", Duration::from_secs(20), || {
        lg.check_alive()?;
        acks.extend(reader.read_new()?);
        let st = status(&bed)?;
        Ok(
            (acks.len() >= 100 && st["event_log"]["nats"]["published"].as_u64() >= Some(100))
                .then_some(()),
        )
    })?;
    lg.signal(libc::SIGKILL)?;
    lg.wait_exit(Duration::from_secs(10))?;
    acks.extend(reader.read_new()?);
    let st = wait_for("every event published", Duration::from_secs(20), || {
        let a = status(&bed)?["event_log"].clone();
        std::thread::sleep(Duration::from_millis(700));
        let b = status(&bed)?["event_log"].clone();
        Ok((b["nats"]["spool_depth"] == 0 && a["written"] == b["written"]).then_some(b))
    })?;
    let written = st["written"].as_u64().ok_or("written")?;
    assert!(written >= 100, "{st}");
    assert_eq!(st["nats"]["publish_errors"], 0, "{st}");
    assert_eq!(st["nats"]["spool_dropped"], 0, "{st}");

    // The archive: NATS over TLS (user/password) into PostgreSQL over TLS.
    let nats_url = format!("nats://127.0.0.1:{NATS_PORT}");
    let pw_nats = bed.path("nats-password").display().to_string();
    let pg_pw_s = pg_pw.display().to_string();
    let ca = pki.ca.display().to_string();
    let other = pki.other_ca.display().to_string();
    let archive = |nats_ca: &str, pg_ca: &str| {
        xdhcpd(
            &bed,
            &[
                "events",
                "archive",
                "--once",
                "--nats",
                &nats_url,
                "--nats-user",
                NATS_USER,
                "--nats-password-file",
                &pw_nats,
                "--nats-ca-file",
                nats_ca,
                "--postgres",
                &pg_conn,
                "--postgres-password-file",
                &pg_pw_s,
                "--postgres-ca-file",
                pg_ca,
            ],
        )
    };
    let (ok, text) = archive(&other, &ca)?;
    eprintln!("events_nats_tls: NATS with the wrong CA: {}", text.trim());
    assert!(
        !ok && text.contains("--nats-ca-file"),
        "a NATS server certificate from another CA is refused, naming the option: {text}"
    );
    let (ok, text) = archive(&ca, &other)?;
    eprintln!(
        "events_nats_tls: PostgreSQL with the wrong CA: {}",
        text.trim()
    );
    assert!(
        !ok && text.contains("--postgres-ca-file") && text.contains("UnknownIssuer"),
        "a PostgreSQL server certificate from another CA is refused, naming the option: {text}"
    );
    let (ok, text) = archive(&ca, &ca)?;
    assert!(ok, "events archive over TLS: {text}");
    eprintln!("events_nats_tls: {}", text.trim());
    let n: u64 = pg
        .psql("archive", "SELECT count(*) FROM xdhcpd_lease_events")?
        .trim()
        .parse()
        .map_err(|e| format!("count: {e}"))?;
    assert_eq!(n, written, "every event the daemon logged is archived");

    // History from the archive over TLS.
    let a = acks.last().ok_or("no ACK")?;
    let at = (a.unix_ms / 1000 + 1).to_string();
    let (ok, text) = xdhcpd(
        &bed,
        &[
            "ctl",
            "history",
            "--ip",
            &a.addr.to_string(),
            "--at",
            &at,
            "--json",
            "--archive",
            &pg_conn,
            "--archive-password-file",
            &pg_pw_s,
            "--archive-ca-file",
            &ca,
        ],
    )?;
    assert!(ok, "ctl history --archive over TLS: {text}");
    let v: serde_json::Value = serde_json::from_str(&text).map_err(|e| format!("{e}: {text}"))?;
    let h = &v["holder"];
    let client = h["client_id"]
        .as_str()
        .map(str::to_string)
        .or_else(|| h["mac"].as_str().map(|m| m.replace(':', "")))
        .ok_or_else(|| format!("{}: nobody held it at {at}: {v}", a.addr))?;
    assert_eq!(client, a.client, "{}: holder at {at}", a.addr);

    stop_daemon(daemon)?;
    eprintln!(
        "events_nats_tls: {} ACKs, {written} events published over TLS and archived over TLS, \
         wrong CAs refused, {:?}",
        acks.len(),
        t0.elapsed()
    );
    drop(nats);
    drop(pg);
    Ok(())
}
