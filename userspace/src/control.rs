//! Failover operator requests as the failover driver takes them ([`Request`], answered with a
//! [`Response`] by a [`Handler`]), the status it reports, the control socket's default path,
//! and the time formats of `xdhcpd ctl`. The control socket itself serves the HTTP/JSON API
//! (`crate::api`), which turns `POST /v1/failover/...` into these requests.

use crate::leases::time::{days_from_civil, iso8601};
use std::path::PathBuf;
use std::sync::Arc;

use serde::{Deserialize, Serialize};

/// A failover operator request.
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
    /// End the failback hold now (`[failover] failback-hold`): PARTNER-DOWN with the partner
    /// connected only; NORMAL follows once the partner has recovered.
    FailoverFailback,
    /// Registrations: add, modify, remove, show, import, export
    /// (`crate::registrations::ctl`; its own module so it can move onto the HTTP API).
    Registrations {
        request: Box<crate::registrations::ctl::RegRequest>,
    },
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
    /// Address balance since start (primary): addresses granted to the backup and reclaims
    /// sent.
    #[serde(default)]
    pub rebalance_granted: u64,
    #[serde(default)]
    pub rebalance_reclaimed: u64,
    /// Partner updates we refused because the address is in none of our pools (reject
    /// reason 1): the partner reloaded a new pool or range before us.
    #[serde(default)]
    pub refused_not_in_pool: u64,
    /// Our updates the partner refused for the same reason (it has not reloaded the new pool
    /// yet), since start; and those now waiting to be sent again.
    #[serde(default)]
    pub partner_refused_not_in_pool: u64,
    #[serde(default)]
    pub waiting_for_partner_pool: usize,
    /// Partner updates we refused as outdated binding information (reject reason 15), and
    /// ours the partner refused so, since start (after a partition both partners re-send
    /// what the other lacks; logged as one summary line per burst).
    #[serde(default)]
    pub refused_outdated: u64,
    #[serde(default)]
    pub partner_refused_outdated: u64,
    /// A binding resynchronisation in progress (None: none).
    #[serde(default)]
    pub resync: Option<ResyncStatus>,
    /// `failback-hold` in seconds (0 = off) and, while it keeps us PARTNER-DOWN, until when.
    #[serde(default)]
    pub failback_hold: u32,
    #[serde(default)]
    pub failback_held_until: Option<u32>,
    /// The failover event log, oldest first (the engine keeps the last 128), and how many
    /// events were recorded since start.
    #[serde(default)]
    pub events: Vec<FailoverEventStatus>,
    #[serde(default)]
    pub events_total: u64,
}

/// A binding resynchronisation (UPDREQ / UPDREQALL) in progress.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct ResyncStatus {
    /// "sending" (we answer the partner's request: the percent is known) or "receiving".
    pub direction: String,
    /// UPDREQALL (every binding) rather than UPDREQ.
    pub all: bool,
    /// Sending: bindings the partner acknowledged; receiving: bindings received.
    pub done: u64,
    /// Sending: bindings the request covers (None until all are queued); receiving: None
    /// (draft-12 does not say how many will come).
    pub total: Option<u64>,
    pub percent: Option<f64>,
}

/// One entry of the failover event log.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct FailoverEventStatus {
    /// Unix seconds, and the same in UTC (RFC 3339).
    pub at: u32,
    pub at_utc: String,
    /// Machine name (`failover-invoked`...) and the description (seed 004's wording).
    pub event: String,
    pub description: String,
    pub remarks: String,
    /// A time the event names (addresses usable from, failback held until); None: none.
    #[serde(default)]
    pub until: Option<u32>,
}

/// The failover driver's answer.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct Response {
    pub ok: bool,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub error: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub message: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub status: Option<FailoverStatus>,
    /// A structured answer (registrations: a record, an import report).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub data: Option<serde_json::Value>,
}

impl Response {
    pub fn error(e: impl Into<String>) -> Self {
        Response {
            ok: false,
            error: Some(e.into()),
            message: None,
            status: None,
            data: None,
        }
    }
    pub fn message(m: impl Into<String>) -> Self {
        Response {
            ok: true,
            error: None,
            message: Some(m.into()),
            status: None,
            data: None,
        }
    }
    pub fn status(s: FailoverStatus) -> Self {
        Response {
            ok: true,
            error: None,
            message: None,
            status: Some(s),
            data: None,
        }
    }
}

/// Handles one request (called from the API's blocking pool; may wait for the driver).
pub type Handler = Arc<dyn Fn(Request) -> Response + Send + Sync>;

/// Default control socket path for an interface.
pub fn default_socket(interface: &str) -> PathBuf {
    PathBuf::from(format!("/run/xdhcpd-{interface}.sock"))
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
        // The unit is the last character, not the last byte: a request may end in any
        // UTF-8 character (found by the control_request fuzz target: a panic on `-3m&ce\u{fffd}`).
        let cut = rel.char_indices().last().map_or(0, |(i, _)| i);
        let (num, unit) = rel.split_at(cut);
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
        // A multi-byte last character is an error, not a panic (fuzz regression).
        assert!(parse_since("-3m&ce\u{fffd}", NOW).is_err());
        assert!(parse_since("-\u{e9}", NOW).is_err());
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
}
