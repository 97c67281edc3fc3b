//! `[event-log]` (the lease event log: where, rotation), `[event-log.nats]` (the same events
//! on NATS JetStream) and `[alarms]` (thresholds).

use std::path::PathBuf;

use crate::error::Errors;
use crate::reader::{array, boolean, string, u32_in, Field, Table};
use crate::{AlarmsConfig, EventLogConfig, NatsConfig};

pub(crate) const EVENT_LOG_KEYS: &[&str] =
    &["directory", "max-size-mb", "max-age-hours", "keep", "nats"];
pub(crate) const NATS_KEYS: &[&str] = &[
    "urls",
    "stream",
    "subject-prefix",
    "server-name",
    "token-file",
    "credentials-file",
    "user",
    "password-file",
    "tls",
    "ca-file",
    "cert-file",
    "key-file",
    "batch-size",
    "events-per-message",
    "spool-directory",
    "spool-max-mb",
    "create-stream",
    "ack-timeout-secs",
];
pub(crate) const ALARMS_KEYS: &[&str] = &["pool-utilisation-pct", "partner-unreachable-secs"];

pub(super) fn read_event_log(errs: &mut Errors<'_>, t: &Table<'_, '_>) -> Option<EventLogConfig> {
    let d = EventLogConfig::default();
    let directory = match t.get("directory") {
        None => Some(d.directory.clone()),
        Some(f) => string(errs, &f).and_then(|s| {
            if s.is_empty() || s.contains('\0') {
                errs.push(&f.span(), &f.path, "expected a directory path");
                None
            } else {
                Some(PathBuf::from(s))
            }
        }),
    };
    let num = |errs: &mut Errors<'_>, key: &str, lo: u32, hi: u32, dflt: u32| match t.get(key) {
        None => Some(dflt),
        Some(f) => u32_in(errs, &f, lo, hi, &format!("between {lo} and {hi}")),
    };
    let max_size_mb = num(errs, "max-size-mb", 1, 65_536, d.max_size_mb);
    let max_age_hours = num(errs, "max-age-hours", 0, 8760, d.max_age_hours);
    let keep = num(errs, "keep", 1, 10_000, d.keep);
    let nats = match t.get("nats") {
        None => Some(None),
        Some(f) => Table::open(errs, &f, NATS_KEYS)
            .and_then(|nt| read_nats(errs, &nt))
            .map(Some),
    };
    Some(EventLogConfig {
        directory: directory?,
        max_size_mb: max_size_mb?,
        max_age_hours: max_age_hours?,
        keep: keep?,
        nats: nats?,
    })
}

fn path_of(errs: &mut Errors<'_>, f: &Field<'_, '_>) -> Option<PathBuf> {
    let s = string(errs, f)?;
    if s.is_empty() || s.contains('\0') {
        errs.push(&f.span(), &f.path, "expected a file path");
        return None;
    }
    Some(PathBuf::from(s))
}

/// A subject token: letters, digits, `-` and `_` (no `.`, wildcards or spaces).
fn token_ok(s: &str) -> bool {
    !s.is_empty()
        && s.len() <= 64
        && s.bytes()
            .all(|b| b.is_ascii_alphanumeric() || b == b'-' || b == b'_')
}

fn read_nats(errs: &mut Errors<'_>, t: &Table<'_, '_>) -> Option<NatsConfig> {
    let d = NatsConfig::default();
    let urls = t.require(errs, "urls").and_then(|f| {
        let items = array(errs, &f)?;
        if items.is_empty() {
            errs.push(&f.span(), &f.path, "expected at least one NATS server URL");
            return None;
        }
        let mut out = Vec::new();
        let mut ok = true;
        for it in &items {
            match string(errs, it) {
                Some(u) if valid_url(u) => out.push(u.to_string()),
                Some(u) => {
                    errs.push(
                        &it.span(),
                        &it.path,
                        format!("`{u}` is not a NATS URL (nats://host:port, tls://host:port or host:port)"),
                    );
                    ok = false;
                }
                None => ok = false,
            }
        }
        ok.then_some(out)
    });
    let stream = match t.get("stream") {
        None => Some(d.stream.clone()),
        Some(f) => string(errs, &f).and_then(|s| {
            if token_ok(s) {
                Some(s.to_string())
            } else {
                errs.push(
                    &f.span(),
                    &f.path,
                    "expected a stream name (letters, digits, - and _)",
                );
                None
            }
        }),
    };
    let subject_prefix = match t.get("subject-prefix") {
        None => Some(d.subject_prefix.clone()),
        Some(f) => string(errs, &f).and_then(|s| {
            if s.split('.').all(token_ok) {
                Some(s.to_string())
            } else {
                errs.push(
                    &f.span(),
                    &f.path,
                    "expected dot-separated subject tokens (letters, digits, - and _; no wildcards)",
                );
                None
            }
        }),
    };
    let server_name = match t.get("server-name") {
        None => Some(None),
        Some(f) => string(errs, &f).and_then(|s| {
            if token_ok(s) {
                Some(Some(s.to_string()))
            } else {
                errs.push(
                    &f.span(),
                    &f.path,
                    "expected one subject token (letters, digits, - and _)",
                );
                None
            }
        }),
    };
    let token_file = t.get("token-file").map(|f| path_of(errs, &f));
    let credentials_file = t.get("credentials-file").map(|f| path_of(errs, &f));
    let user = match t.get("user") {
        None => Some(None),
        Some(f) => string(errs, &f).and_then(|s| {
            if s.is_empty() || s.contains(['\0', ' ', '\t', '\n']) {
                errs.push(&f.span(), &f.path, "expected a user name (no spaces)");
                None
            } else {
                Some(Some(s.to_string()))
            }
        }),
    };
    let password_file = t.get("password-file").map(|f| path_of(errs, &f));
    // One way to authenticate.
    let ways: Vec<Field<'_, '_>> = ["token-file", "credentials-file", "user"]
        .iter()
        .filter_map(|k| t.get(k))
        .collect();
    if ways.len() > 1 {
        errs.push(
            &ways[1].span(),
            &ways[1].path,
            "set one of token-file, credentials-file or user (+ password-file), not both",
        );
        return None;
    }
    match (t.get("user"), t.get("password-file")) {
        (Some(f), None) => {
            errs.push(&f.span(), &f.path, "user needs password-file");
            return None;
        }
        (None, Some(f)) => {
            errs.push(&f.span(), &f.path, "password-file needs user");
            return None;
        }
        _ => {}
    }
    let tls = super::tls::read_tls(errs, t, "NATS");
    let num = |errs: &mut Errors<'_>, key: &str, lo: u32, hi: u32, dflt: u32| match t.get(key) {
        None => Some(dflt),
        Some(f) => u32_in(errs, &f, lo, hi, &format!("between {lo} and {hi}")),
    };
    let batch_size = num(errs, "batch-size", 1, 10_000, d.batch_size);
    let events_per_message = num(errs, "events-per-message", 1, 1_000, d.events_per_message);
    let spool_max_mb = num(errs, "spool-max-mb", 1, 1_048_576, d.spool_max_mb);
    let ack_timeout_secs = num(errs, "ack-timeout-secs", 1, 300, d.ack_timeout_secs);
    let spool_directory = t.get("spool-directory").map(|f| path_of(errs, &f));
    let create_stream = match t.get("create-stream") {
        None => Some(d.create_stream),
        Some(f) => boolean(errs, &f),
    };
    Some(NatsConfig {
        urls: urls?,
        stream: stream?,
        subject_prefix: subject_prefix?,
        server_name: server_name?,
        token_file: token_file.map_or(Some(None), |p| p.map(Some))?,
        credentials_file: credentials_file.map_or(Some(None), |p| p.map(Some))?,
        user: user?,
        password_file: password_file.map_or(Some(None), |p| p.map(Some))?,
        tls: tls?,
        batch_size: batch_size?,
        events_per_message: events_per_message?,
        spool_directory: spool_directory.map_or(Some(None), |p| p.map(Some))?,
        spool_max_mb: spool_max_mb?,
        create_stream: create_stream?,
        ack_timeout_secs: ack_timeout_secs?,
    })
}

/// `nats://h:p`, `tls://h:p`, `h:p` or `h` with a host that has no spaces.
fn valid_url(u: &str) -> bool {
    let rest = u
        .strip_prefix("nats://")
        .or_else(|| u.strip_prefix("tls://"))
        .unwrap_or(u);
    let host_port = rest.rsplit('@').next().unwrap_or(rest);
    !host_port.is_empty()
        && !host_port.contains(['/', ' ', '\t'])
        && host_port
            .rsplit_once(':')
            .is_none_or(|(h, p)| !h.is_empty() && p.parse::<u16>().is_ok_and(|p| p > 0))
}

pub(super) fn read_alarms(errs: &mut Errors<'_>, t: &Table<'_, '_>) -> Option<AlarmsConfig> {
    let d = AlarmsConfig::default();
    let pct = match t.get("pool-utilisation-pct") {
        None => Some(d.pool_utilisation_pct),
        Some(f) => u32_in(errs, &f, 1, 100, "between 1 and 100").map(|v| v as u8),
    };
    let unreachable = match t.get("partner-unreachable-secs") {
        None => Some(d.partner_unreachable_secs),
        Some(f) => u32_in(errs, &f, 1, 86_400, "between 1 and 86400"),
    };
    Some(AlarmsConfig {
        pool_utilisation_pct: pct?,
        partner_unreachable_secs: unreachable?,
    })
}
