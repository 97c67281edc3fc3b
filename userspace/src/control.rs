//! The control socket: a Unix stream socket carrying one JSON request per line and one JSON
//! response per line, and the `xdhcpd ctl` client side.
//!
//! Requests: `{"cmd":"failover-status"}`,
//! `{"cmd":"failover-partner-down","since":UNIX|null,"force":false}`,
//! `{"cmd":"failover-recover"}`, `{"cmd":"failover-pause"}`, `{"cmd":"reload"}`. Responses: `{"ok":true,...}` or
//! `{"ok":false,"error":"..."}`.
//! The server runs on its own thread and hands each request to a handler; it never touches a
//! worker or the lease table itself.

use crate::leases::time::{days_from_civil, iso8601};
use std::io::{BufRead, BufReader, Read as _, Write};
use std::os::unix::fs::PermissionsExt;
use std::os::unix::net::{UnixListener, UnixStream};
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::thread::JoinHandle;
use std::time::Duration;

use anyhow::{bail, Context};
use serde::{Deserialize, Serialize};

/// A request line.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(tag = "cmd", rename_all = "kebab-case")]
pub enum Request {
    FailoverStatus,
    FailoverPartnerDown {
        #[serde(default)]
        since: Option<u32>,
        /// Also in NORMAL, STARTUP and PARTNER-DOWN (the operator knows the partner is down).
        #[serde(default)]
        force: bool,
    },
    FailoverRecover,
    /// Planned short stop (draft-12 9.13): enter PAUSED, so the partner goes
    /// COMMUNICATIONS-INTERRUPTED (not PARTNER-DOWN) when this daemon stops.
    FailoverPause,
    /// Re-read and apply the configuration file (as SIGHUP does).
    Reload,
}

/// What `failover status` reports. Times are Unix seconds (0 = never/unknown).
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct FailoverStatus {
    pub role: String,
    pub relationship: String,
    pub peer: String,
    pub state: String,
    pub state_since: u32,
    /// PARTNER-DOWN declared from RECOVER: no new client gets any address before
    /// `partner_down_usable_at` (our own pool waits too).
    #[serde(default)]
    pub blind_partner_down: bool,
    /// In PARTNER-DOWN: when the waited-for addresses become usable (0 otherwise).
    #[serde(default)]
    pub partner_down_usable_at: u32,
    pub partner_state: Option<String>,
    pub partner_state_since: u32,
    pub last_contact: u32,
    /// TCP connection to the partner up.
    pub connected: bool,
    /// CONNECT/CONNECTACK done and the partner's STATE received.
    pub communicating: bool,
    /// Binding updates sent, not yet acknowledged.
    pub unacked_updates: usize,
    /// Binding updates queued, not yet sent (with lease changes the failover thread has not
    /// looked at yet).
    pub bindings_pending: usize,
    /// Mean time from queueing a binding update to the partner's acknowledgement (ms).
    pub mean_update_ack_latency_ms: Option<f64>,
    pub mclt: u32,
    /// Binding transactions sent / acknowledged (several may share one BNDUPD message).
    pub bndupd_sent: u64,
    /// BNDUPD messages sent (`bndupd_sent` / this = bindings per message).
    #[serde(default)]
    pub bndupd_messages_sent: u64,
    pub bndack_received: u64,
    pub bndupd_received: u64,
    pub rejected_by_partner: u64,
    pub rejected_by_us: u64,
    pub connections: u64,
    /// Our implementation and version (the vendor-class we send in CONNECT/CONNECTACK).
    #[serde(default)]
    pub version: String,
    /// The partner's, from its last CONNECT/CONNECTACK (None: not learnt yet).
    #[serde(default)]
    pub partner_version: Option<String>,
    /// The two differ (warned once in the log per partner version).
    #[serde(default)]
    pub version_mismatch: bool,
    /// Round trip to the partner over the failover connection (the kernel's smoothed TCP
    /// estimate, kept current by the heartbeats), ms; None without a connection.
    #[serde(default)]
    pub partner_rtt_ms: Option<f64>,
    /// max-unacked-updates we advertised on the current connection (to a partner that is not
    /// xdhcpd: what we keep in flight, since ISC dhcpd acks at half of it) and the partner's.
    #[serde(default)]
    pub max_unacked_advertised: Option<u32>,
    #[serde(default)]
    pub partner_max_unacked: Option<u32>,
}

/// A response line.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct Response {
    pub ok: bool,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub error: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub message: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub status: Option<FailoverStatus>,
    /// `reload`: the `ReloadReport` (accepted) or `ReloadError` (refused), as JSON.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub reload: Option<serde_json::Value>,
}

impl Response {
    pub fn error(e: impl Into<String>) -> Self {
        Response {
            ok: false,
            error: Some(e.into()),
            message: None,
            status: None,
            reload: None,
        }
    }
    pub fn message(m: impl Into<String>) -> Self {
        Response {
            ok: true,
            error: None,
            message: Some(m.into()),
            status: None,
            reload: None,
        }
    }
    pub fn status(s: FailoverStatus) -> Self {
        Response {
            ok: true,
            error: None,
            message: None,
            status: Some(s),
            reload: None,
        }
    }
}

/// Handles one request (called on the control thread).
pub type Handler = Arc<dyn Fn(Request) -> Response + Send + Sync>;

/// Default control socket path for an interface.
pub fn default_socket(interface: &str) -> PathBuf {
    PathBuf::from(format!("/run/xdhcpd-{interface}.sock"))
}

/// A running control socket; removed from the file system on `stop`/drop.
pub struct ControlServer {
    path: PathBuf,
    stop: Arc<AtomicBool>,
    thread: Option<JoinHandle<()>>,
}

/// Longest request line accepted.
const MAX_LINE: usize = 4096;

impl ControlServer {
    /// Binds `path` (refusing if another live daemon answers there; a stale file is removed).
    pub fn start(path: &Path, handler: Handler) -> anyhow::Result<Self> {
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
        let listener = UnixListener::bind(path)
            .with_context(|| format!("binding control socket {}", path.display()))?;
        // Commands change the failover state: owner only.
        std::fs::set_permissions(path, std::fs::Permissions::from_mode(0o600))
            .with_context(|| format!("chmod 600 {}", path.display()))?;
        listener
            .set_nonblocking(true)
            .context("control socket: non-blocking accept")?;
        let stop = Arc::new(AtomicBool::new(false));
        let st = stop.clone();
        let thread = std::thread::Builder::new()
            .name("xdhcpd-control".into())
            .spawn(move || serve(listener, handler, st))?;
        Ok(ControlServer {
            path: path.to_path_buf(),
            stop,
            thread: Some(thread),
        })
    }

    pub fn path(&self) -> &Path {
        &self.path
    }

    pub fn stop(&mut self) {
        self.stop.store(true, Ordering::SeqCst);
        if let Some(t) = self.thread.take() {
            let _ = t.join();
        }
        let _ = std::fs::remove_file(&self.path);
    }
}

impl Drop for ControlServer {
    fn drop(&mut self) {
        self.stop();
    }
}

fn serve(listener: UnixListener, handler: Handler, stop: Arc<AtomicBool>) {
    while !stop.load(Ordering::Relaxed) {
        match listener.accept() {
            Ok((s, _)) => {
                if let Err(e) = serve_one(s, &handler) {
                    tracing::debug!("control connection: {e:#}");
                }
            }
            Err(e) if e.kind() == std::io::ErrorKind::WouldBlock => {
                std::thread::sleep(Duration::from_millis(50));
            }
            Err(e) => {
                tracing::warn!("control socket accept: {e}");
                std::thread::sleep(Duration::from_millis(200));
            }
        }
    }
}

fn serve_one(s: UnixStream, handler: &Handler) -> anyhow::Result<()> {
    s.set_nonblocking(false)?;
    s.set_read_timeout(Some(Duration::from_secs(5)))?;
    s.set_write_timeout(Some(Duration::from_secs(5)))?;
    let mut w = s.try_clone()?;
    let mut r = BufReader::new(s).take(MAX_LINE as u64 * 16);
    let mut line = String::new();
    loop {
        line.clear();
        let n = r.read_line(&mut line)?;
        if n == 0 {
            return Ok(());
        }
        let resp = respond(&line, handler);
        let mut out = serde_json::to_vec(&resp)?;
        out.push(b'\n');
        w.write_all(&out)?;
    }
}

/// The response to one request line: the handler's answer to a valid request, else an error
/// naming what was wrong (also what the control-socket fuzz target drives).
pub fn respond(line: &str, handler: &Handler) -> Response {
    if line.len() > MAX_LINE {
        return Response::error(format!("request longer than {MAX_LINE} bytes"));
    }
    match serde_json::from_str::<Request>(line.trim()) {
        Ok(req) => handler(req),
        Err(e) => Response::error(format!("bad request {:?}: {e}", line.trim())),
    }
}

/// The answer to `reload`: the report or the refusal, as JSON in `reload`.
pub fn reload_response(
    r: Result<crate::server::ReloadReport, crate::server::ReloadError>,
) -> Response {
    let (mut resp, v) = match r {
        Ok(rep) => (
            Response::message(format!(
                "reloaded {} (configuration generation {})",
                rep.file, rep.generation
            )),
            serde_json::to_value(&rep),
        ),
        Err(e) => (Response::error(e.to_string()), serde_json::to_value(&e)),
    };
    resp.reload = v.ok();
    resp
}

/// `xdhcpd ctl reload`: prints what changed, or why the file was refused (exit 1).
pub fn ctl_reload(path: &Path, json: bool) -> anyhow::Result<std::process::ExitCode> {
    use std::process::ExitCode;
    let resp = call(path, &Request::Reload)?;
    if json {
        println!("{}", serde_json::to_string_pretty(&resp)?);
    } else if resp.ok {
        if let Some(m) = &resp.message {
            println!("{m}");
        }
        let changes = resp
            .reload
            .as_ref()
            .and_then(|r| r.get("changes"))
            .and_then(|c| c.as_array())
            .cloned()
            .unwrap_or_default();
        if changes.is_empty() {
            println!("no change");
        }
        for c in changes {
            println!("  {}", c.as_str().unwrap_or_default());
        }
    } else {
        eprintln!(
            "xdhcpd ctl: {}",
            resp.error.as_deref().unwrap_or("reload failed")
        );
    }
    Ok(if resp.ok {
        ExitCode::SUCCESS
    } else {
        ExitCode::FAILURE
    })
}

/// Client side: sends one request and reads one response.
pub fn call(path: &Path, req: &Request) -> anyhow::Result<Response> {
    let s = UnixStream::connect(path).with_context(|| {
        format!(
            "connecting to control socket {} (is xdhcpd running?)",
            path.display()
        )
    })?;
    s.set_read_timeout(Some(Duration::from_secs(10)))?;
    let mut w = s.try_clone()?;
    let mut line = serde_json::to_vec(req)?;
    line.push(b'\n');
    w.write_all(&line)?;
    let mut r = BufReader::new(s);
    let mut resp = String::new();
    r.read_line(&mut resp)
        .with_context(|| format!("reading the answer on {}", path.display()))?;
    if resp.is_empty() {
        bail!("{} closed the connection without answering", path.display());
    }
    serde_json::from_str(resp.trim())
        .with_context(|| format!("bad answer from {}: {:?}", path.display(), resp.trim()))
}

// ---------------------------------------------------------------------------------------------
// Times

/// `2026-11-22T10:00:00Z`; `-` for 0.
pub fn fmt_time(t: u32) -> String {
    if t == 0 {
        return "-".into();
    }
    iso8601(u64::from(t))
}

/// Parses `--since`: `-3d`, `-12h`, `-30m`, `-90s` (relative to `now`), a Unix time in
/// seconds, or RFC 3339 (`2026-11-22T10:00:00Z`, `2026-11-22T11:00:00+01:00`). The result
/// must not be in the future.
pub fn parse_since(s: &str, now: u32) -> Result<u32, String> {
    let s = s.trim();
    if s.is_empty() {
        return Err("--since: empty value (expected -3d, -12h, a Unix time or RFC 3339)".into());
    }
    let t: i64 = if let Some(rel) = s.strip_prefix('-') {
        let (num, unit) = rel.split_at(rel.len().saturating_sub(1));
        let mult = match unit {
            "d" => 86_400,
            "h" => 3600,
            "m" => 60,
            "s" => 1,
            _ => {
                return Err(format!(
                    "--since {s:?}: a relative time needs a unit d, h, m or s (e.g. -3d, -12h)"
                ))
            }
        };
        let n: i64 = num
            .parse()
            .ok()
            .filter(|n: &i64| *n >= 0)
            .ok_or_else(|| format!("--since {s:?}: {num:?} is not a whole number"))?;
        now as i64 - n.saturating_mul(mult)
    } else if s.bytes().all(|b| b.is_ascii_digit()) {
        s.parse()
            .map_err(|_| format!("--since {s:?}: Unix time out of range"))?
    } else {
        parse_rfc3339(s).map_err(|e| format!("--since {s:?}: {e}"))?
    };
    if t <= 0 || t > u32::MAX as i64 {
        return Err(format!("--since {s:?}: time out of range"));
    }
    if t > now as i64 {
        return Err(format!(
            "--since {s:?} is in the future ({}; now {})",
            fmt_time(t as u32),
            fmt_time(now)
        ));
    }
    Ok(t as u32)
}

fn parse_rfc3339(s: &str) -> Result<i64, String> {
    let b = s.as_bytes();
    let num = |from: usize, len: usize, what: &str| -> Result<i64, String> {
        let p = s
            .get(from..from + len)
            .filter(|p| p.bytes().all(|c| c.is_ascii_digit()))
            .ok_or_else(|| {
                format!("expected RFC 3339 like 2026-11-22T10:00:00Z ({what} at byte {from})")
            })?;
        p.parse::<i64>().map_err(|e| e.to_string())
    };
    if b.len() < 20 || b[4] != b'-' || b[7] != b'-' || !matches!(b[10], b'T' | b't' | b' ') {
        return Err("expected RFC 3339 like 2026-11-22T10:00:00Z".into());
    }
    if b[13] != b':' || b[16] != b':' {
        return Err("expected RFC 3339 like 2026-11-22T10:00:00Z (hh:mm:ss)".into());
    }
    let (y, mo, d) = (num(0, 4, "year")?, num(5, 2, "month")?, num(8, 2, "day")?);
    let (h, mi, se) = (
        num(11, 2, "hour")?,
        num(14, 2, "minute")?,
        num(17, 2, "second")?,
    );
    if !(1..=12).contains(&mo) || !(1..=31).contains(&d) || h > 23 || mi > 59 || se > 60 {
        return Err("date or time field out of range".into());
    }
    let mut i = 19;
    if b.get(i) == Some(&b'.') {
        i += 1;
        while b.get(i).is_some_and(|c| c.is_ascii_digit()) {
            i += 1;
        }
    }
    let off = match b.get(i) {
        Some(b'Z') | Some(b'z') if i + 1 == b.len() => 0,
        Some(&c @ (b'+' | b'-')) if i + 6 == b.len() && b[i + 3] == b':' => {
            let oh = num(i + 1, 2, "offset hour")?;
            let om = num(i + 4, 2, "offset minute")?;
            let o = oh * 3600 + om * 60;
            if c == b'+' {
                o
            } else {
                -o
            }
        }
        _ => return Err("missing or bad time zone (Z or +hh:mm)".into()),
    };
    let days = days_from_civil(y, mo as u32, d as u32);
    Ok(days * 86_400 + h * 3600 + mi * 60 + se - off)
}

#[cfg(test)]
mod tests {
    use super::*;

    const NOW: u32 = 1_795_000_000;

    #[test]
    fn since_relative_absolute_and_errors() {
        assert_eq!(parse_since("-3d", NOW), Ok(NOW - 3 * 86_400));
        assert_eq!(parse_since("-12h", NOW), Ok(NOW - 12 * 3600));
        assert_eq!(parse_since("-0s", NOW), Ok(NOW));
        assert_eq!(parse_since("1700000000", NOW), Ok(1_700_000_000));
        assert_eq!(parse_since("2023-11-14T22:13:20Z", NOW), Ok(1_700_000_000));
        assert_eq!(
            parse_since("2023-11-14T23:13:20+01:00", NOW),
            Ok(1_700_000_000)
        );
        assert_eq!(
            parse_since("2023-11-14T22:13:20.5Z", NOW),
            Ok(1_700_000_000)
        );
        for bad in [
            "",
            "-3",
            "-3w",
            "-x d",
            "soon",
            "2023-11-14",
            "2023-13-01T00:00:00Z",
        ] {
            let e = parse_since(bad, NOW).expect_err(bad);
            assert!(e.starts_with("--since"), "{bad}: {e}");
        }
        let e = parse_since(&(NOW + 100).to_string(), NOW).expect_err("future");
        assert!(e.contains("future"), "{e}");
    }

    #[test]
    fn time_format_round_trips() {
        assert_eq!(fmt_time(1_700_000_000), "2023-11-14T22:13:20Z");
        assert_eq!(fmt_time(0), "-");
        for t in [1u32, 951_782_400, 1_700_000_000, 4_000_000_000] {
            assert_eq!(parse_rfc3339(&fmt_time(t)), Ok(t as i64));
        }
    }

    #[test]
    fn request_wire_format() {
        let r: Request =
            serde_json::from_str(r#"{"cmd":"failover-partner-down","since":5}"#).expect("parse");
        assert_eq!(
            r,
            Request::FailoverPartnerDown {
                since: Some(5),
                force: false
            }
        );
        let r: Request =
            serde_json::from_str(r#"{"cmd":"failover-partner-down","since":null,"force":true}"#)
                .expect("parse");
        assert_eq!(
            r,
            Request::FailoverPartnerDown {
                since: None,
                force: true
            }
        );
        let r: Request = serde_json::from_str(r#"{"cmd":"failover-status"}"#).expect("parse");
        assert_eq!(r, Request::FailoverStatus);
        let r: Request = serde_json::from_str(r#"{"cmd":"failover-pause"}"#).expect("parse");
        assert_eq!(r, Request::FailoverPause);
        assert!(serde_json::from_str::<Request>(r#"{"cmd":"reboot"}"#).is_err());
    }

    #[test]
    fn server_answers_and_refuses_a_second_instance() {
        let dir = tempfile::tempdir().expect("tempdir");
        let path = dir.path().join("c.sock");
        let h: Handler = Arc::new(|r| match r {
            Request::FailoverRecover => Response::message("recovering"),
            _ => Response::error("nope"),
        });
        let mut srv = ControlServer::start(&path, h.clone()).expect("start");
        let r = call(&path, &Request::FailoverRecover).expect("call");
        assert_eq!(r.message.as_deref(), Some("recovering"));
        let r = call(&path, &Request::FailoverStatus).expect("call");
        assert!(!r.ok);
        assert!(ControlServer::start(&path, h).is_err());
        srv.stop();
        assert!(!path.exists());
    }
}
