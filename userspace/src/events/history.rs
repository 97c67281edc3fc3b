//! Lease history from the event log files: who held an address at a given time
//! (`xdhcpd ctl history --ip A --at TIME`, and [`who_held`] for the control API).

use std::io::{BufRead, BufReader};
use std::net::Ipv4Addr;
use std::path::{Path, PathBuf};
use std::process::ExitCode;

use anyhow::Context;
use serde::{Deserialize, Serialize};

use super::{LeaseEvent, CURRENT};
use crate::clock::unix_now;
use crate::control::{fmt_time, parse_since};

/// The answer to "who held `ip` at `at`".
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct HistoryAnswer {
    pub ip: String,
    pub at: u32,
    /// The ACK or RENEW whose lease covered `at`, if any.
    pub holder: Option<LeaseEvent>,
    /// The last event for `ip` at or before `at` (the holder's, or the RELEASE / EXPIRE /
    /// DECLINE that ended it); None: nothing logged for `ip` before `at`.
    pub last_event: Option<LeaseEvent>,
}

/// Rotated files (`events-<unix time>.jsonl`) of `dir`, oldest first.
pub fn rotated_files(dir: &Path) -> std::io::Result<Vec<(u64, PathBuf)>> {
    let mut v = Vec::new();
    for e in std::fs::read_dir(dir)? {
        let e = e?;
        let name = e.file_name();
        let Some(n) = name.to_str() else { continue };
        if let Some(t) = n
            .strip_prefix("events-")
            .and_then(|r| r.strip_suffix(".jsonl"))
            .and_then(|t| t.parse::<u64>().ok())
        {
            v.push((t, e.path()));
        }
    }
    v.sort();
    Ok(v)
}

/// Every event for `ip` in one file, in file order (lines that are not events are skipped).
fn events_in(path: &Path, ip: &str) -> std::io::Result<Vec<LeaseEvent>> {
    let f = match std::fs::File::open(path) {
        Ok(f) => f,
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Ok(Vec::new()),
        Err(e) => return Err(e),
    };
    let needle = format!("\"ip\":\"{ip}\"");
    let mut v = Vec::new();
    for line in BufReader::new(f).lines() {
        let line = line?;
        if !line.contains(&needle) {
            continue;
        }
        if let Ok(ev) = serde_json::from_str::<LeaseEvent>(&line) {
            if ev.ip == ip {
                v.push(ev);
            }
        }
    }
    Ok(v)
}

/// Who held `ip` at `at`, from the event log in `dir`: the last event for `ip` at or before
/// `at` (files read newest first, stopping at the first that has one); if it is an ACK or
/// RENEW whose lease had not ended at `at`, its client held the address.
pub fn who_held(dir: &Path, ip: Ipv4Addr, at: u32) -> std::io::Result<HistoryAnswer> {
    let ip_s = ip.to_string();
    let mut files: Vec<PathBuf> = rotated_files(dir)?.into_iter().map(|(_, p)| p).collect();
    files.push(dir.join(CURRENT));
    let mut last: Option<LeaseEvent> = None;
    for f in files.iter().rev() {
        for ev in events_in(f, &ip_s)? {
            // Later in the file wins a tie: it was written after.
            if ev.time <= at && last.as_ref().is_none_or(|l| ev.time >= l.time) {
                last = Some(ev);
            }
        }
        if last.is_some() {
            break;
        }
    }
    Ok(HistoryAnswer::from_last(ip, at, last))
}

impl HistoryAnswer {
    /// The answer given the last event for `ip` at or before `at`: if it is an ACK or RENEW
    /// whose lease had not ended at `at`, its client held the address.
    pub fn from_last(ip: Ipv4Addr, at: u32, last: Option<LeaseEvent>) -> Self {
        let holder = last
            .as_ref()
            .filter(|e| matches!(e.event.as_str(), "ack" | "renew") && e.expiry > at)
            .cloned();
        HistoryAnswer {
            ip: ip.to_string(),
            at,
            holder,
            last_event: last,
        }
    }
}

/// `xdhcpd ctl history` arguments.
#[derive(clap::Args, Clone, Debug)]
pub struct HistoryArgs {
    /// The address.
    #[arg(long)]
    pub ip: Ipv4Addr,
    /// The time: RFC 3339 (2026-11-22T10:00:00Z), a Unix time, or relative (-3d, -12h, -30m,
    /// -90s); default now.
    #[arg(long, allow_hyphen_values = true)]
    pub at: Option<String>,
    /// Event log directory (default: `[event-log] directory` of --config).
    #[arg(long, conflicts_with = "archive")]
    pub dir: Option<PathBuf>,
    /// Ask the PostgreSQL archive of `xdhcpd events archive` instead of the local files:
    /// `host=... port=... dbname=... user=...` or a postgresql:// URL.
    #[arg(long)]
    pub archive: Option<String>,
    /// File whose first line is the archive's PostgreSQL password.
    #[arg(long, requires = "archive")]
    pub archive_password_file: Option<PathBuf>,
    /// TLS to the archive (required when set): the CA certificate(s) (PEM) that sign the
    /// server's.
    #[arg(long, requires = "archive")]
    pub archive_ca_file: Option<PathBuf>,
    /// TLS to the archive: this client's certificate (PEM), with --archive-key-file.
    #[arg(long, requires_all = ["archive_key_file", "archive_ca_file"])]
    pub archive_cert_file: Option<PathBuf>,
    /// TLS to the archive: the key of --archive-cert-file (PEM).
    #[arg(long, requires = "archive_cert_file")]
    pub archive_key_file: Option<PathBuf>,
    /// Print the answer as JSON.
    #[arg(long)]
    pub json: bool,
}

/// Runs `xdhcpd ctl history` (reads the files; the daemon need not run).
pub fn main_history(config: Option<PathBuf>, a: HistoryArgs) -> ExitCode {
    match history(config, a) {
        Ok(c) => c,
        Err(e) => {
            eprintln!("xdhcpd ctl history: {e:#}");
            ExitCode::FAILURE
        }
    }
}

fn history(config: Option<PathBuf>, a: HistoryArgs) -> anyhow::Result<ExitCode> {
    let now = unix_now();
    let at = match &a.at {
        Some(s) => {
            parse_since(s, now).map_err(|e| anyhow::anyhow!(e.replace("--since", "--at")))?
        }
        None => now,
    };
    if let Some(conn) = &a.archive {
        let rt = tokio::runtime::Builder::new_current_thread()
            .enable_all()
            .build()
            .context("tokio runtime")?;
        let ans = rt.block_on(async {
            let c = super::archive::archive_connect(
                conn,
                a.archive_password_file.as_deref(),
                [
                    &a.archive_ca_file,
                    &a.archive_cert_file,
                    &a.archive_key_file,
                ],
            )
            .await?;
            super::archive::who_held(&c, a.ip, at).await
        })?;
        return print_answer(&ans, at, "the archive", a.json);
    }
    let dir = match (a.dir, config) {
        (Some(d), _) => d,
        (None, Some(c)) => {
            let cfg = xdhcpd_config::load(&c).map_err(|e| anyhow::anyhow!("{e}"))?;
            super::directory_of(&cfg)
                .map(Path::to_path_buf)
                .with_context(|| format!("{} has no [event-log] section", c.display()))?
        }
        (None, None) => xdhcpd_config::EventLogConfig::default().directory,
    };
    let ans = who_held(&dir, a.ip, at)
        .with_context(|| format!("reading the event log in {}", dir.display()))?;
    print_answer(&ans, at, &dir.display().to_string(), a.json)
}

fn print_answer(
    ans: &HistoryAnswer,
    at: u32,
    source: &str,
    json: bool,
) -> anyhow::Result<ExitCode> {
    if json {
        println!("{}", serde_json::to_string_pretty(ans)?);
        return Ok(ExitCode::SUCCESS);
    }
    match (&ans.holder, &ans.last_event) {
        (Some(h), _) => println!(
            "{} at {}: held by {}{}{} (lease {} to {}, {})",
            ans.ip,
            fmt_time(at),
            h.mac,
            h.client_id
                .as_deref()
                .map(|c| format!(" client-id {c}"))
                .unwrap_or_default(),
            h.relay_info
                .as_deref()
                .map(|r| format!(" option-82 {r}"))
                .unwrap_or_default(),
            fmt_time(h.start),
            fmt_time(h.expiry),
            h.event
        ),
        (None, Some(l)) => println!(
            "{} at {}: held by nobody (last: {} by {} at {})",
            ans.ip,
            fmt_time(at),
            l.event,
            l.mac,
            fmt_time(l.time)
        ),
        (None, None) => println!(
            "{} at {}: held by nobody (no event for it in {source})",
            ans.ip,
            fmt_time(at),
        ),
    }
    Ok(ExitCode::SUCCESS)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::events::Source;
    use std::io::Write;

    fn ev(kind: &str, time: u32, mac: &str, expiry: u32) -> String {
        let e = LeaseEvent {
            time,
            ts: String::new(),
            event: kind.into(),
            ip: "10.0.0.5".into(),
            mac: mac.into(),
            client_id: None,
            relay_info: None,
            start: time,
            expiry,
            source: Source::Dhcp,
        };
        serde_json::to_string(&e).expect("json")
    }

    #[test]
    fn history_address_moved_between_two_clients_across_rotation() {
        let dir = tempfile::tempdir().expect("tempdir");
        let a = "aa:aa:aa:aa:aa:01";
        let b = "bb:bb:bb:bb:bb:02";
        // Rotated file: A got it at 1000 (to 2000), renewed at 1500 (to 2500), released 1800.
        let mut f = std::fs::File::create(dir.path().join("events-1900.jsonl")).expect("f");
        for l in [
            ev("ack", 1000, a, 2000),
            ev("renew", 1500, a, 2500),
            ev("release", 1800, a, 2500),
        ] {
            writeln!(f, "{l}").expect("w");
        }
        // Current file: B got it at 3000 (to 4000); it expired at 4000. Another address too.
        let mut f = std::fs::File::create(dir.path().join(CURRENT)).expect("f");
        writeln!(f, "{}", ev("ack", 3000, b, 4000)).expect("w");
        writeln!(
            f,
            "{}",
            ev("ack", 3000, a, 4000).replace("10.0.0.5", "10.0.0.6")
        )
        .expect("w");
        writeln!(f, "not json").expect("w");
        writeln!(f, "{}", ev("expire", 4000, b, 4000)).expect("w");
        let ip: Ipv4Addr = "10.0.0.5".parse().expect("ip");
        let who = |t| {
            who_held(dir.path(), ip, t)
                .expect("history")
                .holder
                .map(|h| h.mac)
        };
        assert_eq!(who(999), None);
        assert_eq!(who(1000).as_deref(), Some(a));
        assert_eq!(who(1700).as_deref(), Some(a));
        assert_eq!(who(1800), None, "released");
        assert_eq!(who(2900), None);
        assert_eq!(who(3000).as_deref(), Some(b));
        assert_eq!(who(3999).as_deref(), Some(b));
        assert_eq!(who(4000), None, "expired");
        let last = who_held(dir.path(), ip, 2000)
            .expect("h")
            .last_event
            .expect("last");
        assert_eq!(last.event, "release");
    }
}
