//! One lease record as the tools print it (JSON Lines or CSV), streaming.

use std::io::{self, Write};

use lease_store::{KeyKind, Lease, LeaseState, Owner, VarData};
use serde::Serialize;

use super::model::colon_hex;
use super::time::iso8601;

/// Output format of `dump` and `lookup`.
#[derive(Clone, Copy, Debug, PartialEq, Eq, clap::ValueEnum)]
pub enum Format {
    /// One JSON object per line (JSON Lines): streams, and `jq` reads it.
    Json,
    /// Comma-separated values with a header line.
    Csv,
}

/// CSV header of [`write_record`].
pub const CSV_HEADER: &str = "address,pool,state,owner,htype,hwaddr,client_id,hostname,start,start_iso,expiry,expiry_iso,cltt,cltt_iso,lease_time,potential_expiry,potential_expiry_iso,acked_potential_expiry,acked_potential_expiry_iso,tstp,tsfp,quarantined,relay_agent_info,vendor_class,bootp";

/// A time for output: unix seconds and ISO 8601 UTC; `None` for 0 (not set).
/// `u32::MAX` (never) prints as `"never"` in the ISO column.
fn iso(t: u32) -> Option<String> {
    match t {
        0 => None,
        u32::MAX => Some("never".into()),
        t => Some(iso8601(u64::from(t))),
    }
}

#[derive(Serialize)]
struct JsonRecord<'a> {
    address: String,
    pool: u32,
    state: &'a str,
    owner: &'a str,
    htype: u8,
    hwaddr: Option<String>,
    /// Option 61, hex; `hash:...` when it was too long and is stored hashed.
    client_id: Option<String>,
    /// Option 12 as the client last sent it (lossy UTF-8); null when none.
    hostname: Option<String>,
    start: u32,
    start_iso: Option<String>,
    expiry: u32,
    expiry_iso: Option<String>,
    cltt: u32,
    cltt_iso: Option<String>,
    lease_time: u32,
    potential_expiry: u32,
    potential_expiry_iso: Option<String>,
    acked_potential_expiry: u32,
    acked_potential_expiry_iso: Option<String>,
    tstp: u32,
    tsfp: u32,
    quarantined: bool,
    /// Option 82 value (its sub-options), whole, hex; null when none.
    relay_agent_info: Option<String>,
    /// Option 60 as the client last sent it (lossy UTF-8); null when none.
    vendor_class: Option<String>,
    /// A permanent dynamic BOOTP binding (expiry `never`; the sweeper never ends it).
    bootp: bool,
}

fn text(b: &[u8]) -> Option<String> {
    (!b.is_empty()).then(|| String::from_utf8_lossy(b).into_owned())
}

fn plain_hex(b: &[u8]) -> Option<String> {
    (!b.is_empty()).then(|| b.iter().map(|x| format!("{x:02x}")).collect())
}

/// A text field for CSV: quoted (and inner quotes doubled) when it holds a comma, quote or
/// line break.
fn csv_text(s: Option<String>) -> String {
    match s {
        None => String::new(),
        Some(s) if s.contains([',', '"', '\n', '\r']) => format!("\"{}\"", s.replace('"', "\"\"")),
        Some(s) => s,
    }
}

fn owner_str(o: Owner) -> &'static str {
    match o {
        Owner::Primary => "primary",
        Owner::Backup => "backup",
    }
}

fn client_id(l: &Lease) -> Option<String> {
    (l.client.kind() == KeyKind::ClientId).then(|| l.client.to_string())
}

fn hwaddr(l: &Lease) -> Option<String> {
    (!l.hw().is_empty()).then(|| colon_hex(l.hw()))
}

/// Writes the CSV header (for `Format::Csv`; nothing for JSON).
pub fn write_header(format: Format, out: &mut dyn Write) -> io::Result<()> {
    match format {
        Format::Csv => writeln!(out, "{CSV_HEADER}"),
        Format::Json => Ok(()),
    }
}

/// One record as a JSON value (the shape of a `dump --format json` line), for the API.
pub fn lease_json(pool: u32, l: &Lease, v: &VarData) -> serde_json::Value {
    let mut line = Vec::with_capacity(512);
    match write_record(Format::Json, pool, l, v, &mut line) {
        Ok(()) => serde_json::from_slice(&line).unwrap_or(serde_json::Value::Null),
        Err(_) => serde_json::Value::Null,
    }
}

/// Writes one record (one line).
pub fn write_record(
    format: Format,
    pool: u32,
    l: &Lease,
    v: &VarData,
    out: &mut dyn Write,
) -> io::Result<()> {
    match format {
        Format::Json => {
            let r = JsonRecord {
                address: l.addr.to_string(),
                pool,
                state: l.state.as_str(),
                owner: owner_str(l.owner),
                htype: l.htype,
                hwaddr: hwaddr(l),
                client_id: client_id(l),
                hostname: text(v.host_name()),
                start: l.start,
                start_iso: iso(l.start),
                expiry: l.expiry,
                expiry_iso: iso(l.expiry),
                cltt: l.cltt,
                cltt_iso: iso(l.cltt),
                lease_time: l.lease_time,
                potential_expiry: l.potential_expiry,
                potential_expiry_iso: iso(l.potential_expiry),
                acked_potential_expiry: l.acked_potential_expiry,
                acked_potential_expiry_iso: iso(l.acked_potential_expiry),
                tstp: l.tstp,
                tsfp: l.tsfp,
                quarantined: l.is_quarantined(),
                relay_agent_info: plain_hex(v.relay_agent_info()),
                vendor_class: text(v.vendor_class()),
                bootp: l.is_permanent(),
            };
            serde_json::to_writer(&mut *out, &r).map_err(io::Error::other)?;
            out.write_all(b"\n")
        }
        Format::Csv => {
            let o = |s: Option<String>| s.unwrap_or_default();
            writeln!(
                out,
                "{},{},{},{},{},{},{},{},{},{},{},{},{},{},{},{},{},{},{},{},{},{},{},{},{}",
                l.addr,
                pool,
                l.state,
                owner_str(l.owner),
                l.htype,
                o(hwaddr(l)),
                o(client_id(l)),
                csv_text(text(v.host_name())),
                l.start,
                o(iso(l.start)),
                l.expiry,
                o(iso(l.expiry)),
                l.cltt,
                o(iso(l.cltt)),
                l.lease_time,
                l.potential_expiry,
                o(iso(l.potential_expiry)),
                l.acked_potential_expiry,
                o(iso(l.acked_potential_expiry)),
                l.tstp,
                l.tsfp,
                u8::from(l.is_quarantined()),
                o(plain_hex(v.relay_agent_info())),
                csv_text(text(v.vendor_class())),
                u8::from(l.is_permanent())
            )
        }
    }
}

/// Parses `active,expired,...` into a state set.
pub fn parse_states(list: &[String]) -> Result<[bool; LeaseState::COUNT], String> {
    let mut set = [false; LeaseState::COUNT];
    for s in list.iter().flat_map(|s| s.split(',')) {
        let s = s.trim();
        let st = LeaseState::ALL
            .iter()
            .find(|x| x.as_str() == s)
            .ok_or_else(|| {
                format!(
                    "unknown state `{s}` (expected one of {})",
                    LeaseState::ALL.map(|x| x.as_str()).join(", ")
                )
            })?;
        set[*st as usize] = true;
    }
    Ok(set)
}
