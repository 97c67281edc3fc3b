//! `xdhcpd ctl history --archive` asks a real PostgreSQL 15 (Debian's `postgresql`, in a
//! namespace of its own, removed at the end) the least it can per command (issue 17: the
//! answer over 100 million events within 50 ms, most of which is the connection): through a
//! TCP relay in this test that records what the command sends, it checks that
//! - the connection starts with the startup message itself (no `SSLRequest` round trip when
//!   no TLS is asked for);
//! - the command waits for the server 4 times in all: startup, the two SCRAM messages, then
//!   the query as one flight (Parse, Bind, Describe, Execute, Sync: no separate prepare);
//! - it sends exactly one statement (no catalogue or type look-up queries), and the server
//!   logs exactly that one for the command's connection;
//! - the times of the answer are those the SQL `extract(epoch FROM ...)::int8` gives for the
//!   same row (the query sends and receives `inet` / `timestamptz` in binary and rounds on
//!   the client), for rows with sub-second times, halves included.

#[path = "common/netns.rs"]
mod netns;

#[path = "common/require.rs"]
mod require;

mod daemon_common;
mod pg_common;

use std::io::{Read, Write};
use std::net::{TcpListener, TcpStream};
use std::path::Path;
use std::sync::{Arc, Mutex};

use daemon_common::*;
use pg_common::{Pg, PG_BIN, PG_PORT};
use require::{require, Capability};

/// What went through the relay, in order: (from the client?, the bytes of one read).
type Wire = Arc<Mutex<Vec<(bool, Vec<u8>)>>>;

/// A relay in `ns` from a port of its own on 127.0.0.1 to PostgreSQL (127.0.0.1:PG_PORT), for
/// one connection; returns its port and the record. Each side's bytes are recorded before
/// they are passed on, so the record's order is the order of the exchange.
fn relay(ns: &str) -> Res<(u16, Wire)> {
    let wire: Wire = Arc::default();
    let (tx, rx) = std::sync::mpsc::channel();
    let ns = ns.to_string();
    let w = wire.clone();
    std::thread::spawn(move || {
        let setup = (|| -> Res<(TcpListener, TcpStream)> {
            netns::enter_netns(&ns).map_err(|e| format!("entering {ns}: {e}"))?;
            let l = TcpListener::bind("127.0.0.1:0").map_err(|e| format!("relay bind: {e}"))?;
            // PostgreSQL waits for the startup message (authentication_timeout).
            let up = TcpStream::connect(("127.0.0.1", PG_PORT))
                .map_err(|e| format!("relay to PostgreSQL: {e}"))?;
            Ok((l, up))
        })();
        let (l, up) = match setup {
            Ok(x) => x,
            Err(e) => {
                let _ = tx.send(Err(e));
                return;
            }
        };
        let _ = tx.send(l.local_addr().map(|a| a.port()).map_err(|e| e.to_string()));
        let Ok((down, _)) = l.accept() else { return };
        let pump = |mut from: TcpStream, mut to: TcpStream, client: bool, w: Wire| {
            let mut buf = vec![0u8; 65536];
            loop {
                let n = match from.read(&mut buf) {
                    Ok(0) | Err(_) => break,
                    Ok(n) => n,
                };
                if let Ok(mut g) = w.lock() {
                    g.push((client, buf[..n].to_vec()));
                }
                if to.write_all(&buf[..n]).is_err() {
                    break;
                }
            }
            let _ = to.shutdown(std::net::Shutdown::Write);
        };
        let (Ok(d2), Ok(u2)) = (down.try_clone(), up.try_clone()) else {
            return;
        };
        let w2 = w.clone();
        let t = std::thread::spawn(move || pump(u2, d2, false, w2));
        pump(down, up, true, w);
        let _ = t.join();
    });
    let port = rx.recv().map_err(|e| format!("relay thread: {e}"))??;
    Ok((port, wire))
}

/// The client's flights (its bytes between two answers of the server), each as the type
/// bytes of its messages (`'0'` for the untyped first message, with its protocol code).
fn flights(wire: &[(bool, Vec<u8>)]) -> Res<(u32, Vec<Vec<u8>>)> {
    let mut out: Vec<Vec<u8>> = Vec::new();
    let mut bytes: Vec<Vec<u8>> = Vec::new();
    let mut last_client = false;
    for (client, b) in wire {
        if *client {
            if !last_client {
                bytes.push(Vec::new());
            }
            if let Some(f) = bytes.last_mut() {
                f.extend_from_slice(b);
            }
        }
        last_client = *client;
    }
    let mut code = 0;
    for (i, f) in bytes.iter().enumerate() {
        let mut types = Vec::new();
        let mut at = 0;
        if i == 0 {
            let head: [u8; 8] = f
                .get(..8)
                .and_then(|h| h.try_into().ok())
                .ok_or("the first flight is shorter than a startup message")?;
            let len = u32::from_be_bytes([head[0], head[1], head[2], head[3]]) as usize;
            code = u32::from_be_bytes([head[4], head[5], head[6], head[7]]);
            types.push(b'0');
            at = len;
        }
        while at < f.len() {
            let len = f
                .get(at + 1..at + 5)
                .map(|l| u32::from_be_bytes([l[0], l[1], l[2], l[3]]) as usize)
                .ok_or_else(|| format!("a message cut at byte {at} of flight {i}"))?;
            types.push(f[at]);
            at += 1 + len;
        }
        out.push(types);
    }
    Ok((code, out))
}

#[test]
fn archive_history_one_statement_one_round_trip_binary_times() -> Res<()> {
    if !require(&[
        Capability::Root,
        Capability::Program("psql"),
        Capability::File(Path::new(PG_BIN).join("initdb"), "postgresql"),
    ]) {
        return Ok(());
    }
    let bin = xdhcpd_bin()?;
    let ns = netns::Netns::new("ah17").map_err(|e| e.to_string())?;
    let pg = Pg::init(ns.name())?;
    let conf = pg.data().join("postgresql.conf");
    let mut text = read_text(&conf)?;
    text.push_str("\nlog_statement = 'all'\nlog_line_prefix = '%m [%p] %a: '\ntimezone = 'UTC'\n");
    write_file(&conf, &text)?;
    pg.start(true)?;
    pg.psql("postgres", "CREATE DATABASE archive")?;
    for m in xdhcpd::events::archive::MIGRATIONS {
        pg.psql("archive", m)?;
    }
    // Sub-second times, halves included; 10.0.0.1's last event before the question is the
    // renew at .5 s (lease to .499999 s, which the SQL rounds down).
    pg.psql(
        "archive",
        "INSERT INTO xdhcpd_lease_events (event_id, server, stream_seq, subject, at, event, ip, \
             mac, client_id, relay_info, lease_start, lease_end, source) VALUES \
         ('a1', 's', 1, 'x', '2025-03-01 10:00:00.25+00', 'ack', '10.0.0.1', 'aa', 'c1', NULL, \
          '2025-03-01 10:00:00.25+00', '2025-03-01 11:00:00.75+00', 'dhcp'), \
         ('a2', 's', 2, 'x', '2025-03-01 10:30:00.5+00', 'renew', '10.0.0.1', 'aa', 'c1', 'r1', \
          '2025-03-01 10:30:00.5+00', '2025-03-01 11:30:00.499999+00', 'failover'), \
         ('a3', 's', 3, 'x', '2025-03-01 12:00:00+00', 'release', '10.0.0.1', 'aa', NULL, NULL, \
          '2025-03-01 12:00:00+00', '2025-03-01 12:00:00+00', 'dhcp'), \
         ('b1', 's', 4, 'x', '2025-03-01 09:59:59.5+00', 'ack', '10.0.0.2', 'bb', NULL, NULL, \
          '2025-03-01 09:59:59.5+00', '2025-03-01 10:59:59.5+00', 'dhcp')",
    )?;
    let pw = pg.dir.path().join("su-pw");
    let log = pg.dir.path().join("pg.log");
    // 2025-03-01 11:00:00 UTC.
    let at: u64 = 1_740_826_800;
    for (ip, when) in [("10.0.0.1", at), ("10.0.0.2", at), ("10.0.0.3", at)] {
        let (port, wire) = relay(ns.name())?;
        let mark = std::fs::metadata(&log).map_err(|e| e.to_string())?.len() as usize;
        let mut cmd = ns.command(&bin.to_string_lossy());
        cmd.args([
            "ctl",
            "history",
            "--ip",
            ip,
            "--at",
            &when.to_string(),
            "--json",
        ])
        .arg("--archive")
        .arg(format!(
            "host=127.0.0.1 port={port} dbname=archive user=postgres"
        ))
        .arg("--archive-password-file")
        .arg(&pw);
        let out = output(&mut cmd)?;
        if !out.status.success() {
            return Err(format!("ctl history {ip}: {}{}", out.stdout, out.stderr));
        }
        let v: serde_json::Value =
            serde_json::from_str(&out.stdout).map_err(|e| format!("{e}: {}", out.stdout))?;

        // What the command sent.
        std::thread::sleep(std::time::Duration::from_millis(200));
        let record = wire.lock().map_err(|e| e.to_string())?.clone();
        let (code, mut fl) = flights(&record)?;
        assert_eq!(
            code, 196_608,
            "{ip}: the first message is the protocol 3.0 startup (80877103 would be an \
             SSLRequest): {fl:?}"
        );
        // A Terminate alone at the end is not a wait for the server.
        if fl.last().is_some_and(|f| f == b"X") {
            fl.pop();
        }
        let shown: Vec<String> = fl
            .iter()
            .map(|f| String::from_utf8_lossy(f).into_owned())
            .collect();
        assert_eq!(
            shown,
            ["0", "p", "p", "PBDES"],
            "{ip}: the command's flights (startup, SCRAM first, SCRAM final, the query in one)"
        );
        // What the server ran for it.
        let (slice, _) = {
            let b = std::fs::read(&log).map_err(|e| e.to_string())?;
            (
                String::from_utf8_lossy(&b[mark.min(b.len())..]).into_owned(),
                (),
            )
        };
        let statements: Vec<&str> = slice
            .lines()
            .filter(|l| {
                l.contains("xdhcpd-events: LOG:  ") && l.contains("statement:")
                    || l.contains("xdhcpd-events: LOG:  execute")
            })
            .collect();
        assert_eq!(
            statements.len(),
            1,
            "{ip}: exactly one statement logged for the command:\n{slice}"
        );
        let first = xdhcpd::events::archive::HISTORY_QUERY
            .lines()
            .next()
            .unwrap_or_default();
        assert!(
            statements[0].ends_with(&format!("<unnamed>: {first}")),
            "{ip}: the statement logged is the history query: {}",
            statements[0]
        );

        // The answer against the SQL's own rounding of the same row.
        let sql = pg.psql(
            "archive",
            &format!(
                "SELECT extract(epoch FROM at)::int8 || ' ' || \
                        extract(epoch FROM lease_start)::int8 || ' ' || \
                        extract(epoch FROM lease_end)::int8 || ' ' || event || ' ' || source \
                 FROM xdhcpd_lease_events WHERE ip = '{ip}' AND at <= to_timestamp({when}) \
                 ORDER BY at DESC, id DESC LIMIT 1"
            ),
        )?;
        let sql = sql.trim();
        if sql.is_empty() {
            assert!(v["last_event"].is_null(), "{ip}: {v}");
            assert!(v["holder"].is_null(), "{ip}: {v}");
            continue;
        }
        let e = &v["last_event"];
        let got = format!(
            "{} {} {} {} {}",
            e["time"],
            e["start"],
            e["expiry"],
            e["event"].as_str().unwrap_or("?"),
            e["source"].as_str().unwrap_or("?")
        );
        assert_eq!(got, sql, "{ip} at {when}: the answer {v}");
        // 10.0.0.1: the renew at 10:30:00.5, its lease to 11:30:00.499999 (11:30:00): held
        // at 11:00 by aa. 10.0.0.2: the lease to 10:59:59.5 (11:00:00) ended at 11:00.
        match ip {
            "10.0.0.1" => assert_eq!(v["holder"]["mac"], "aa", "{v}"),
            _ => assert!(v["holder"].is_null(), "{v}"),
        }
    }
    Ok(())
}
