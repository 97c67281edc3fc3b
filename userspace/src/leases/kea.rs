//! Kea memfile CSV (DHCPv4): reader and writer.
//!
//! Kea 2.2 writes `address,hwaddr,client_id,valid_lifetime,expire,subnet_id,
//! fqdn_fwd,fqdn_rev,hostname,state,user_context` (later versions append
//! `pool_id`; older ones lack the last columns). Like ISC's file it is a log:
//! a later line for an address replaces the earlier one, and a line with
//! `valid_lifetime` 0 records a deleted lease. Commas inside `hostname` and
//! `user_context` are escaped as `&#x2c`. `expire` is unix seconds; the
//! client's last transaction time is `expire - valid_lifetime`.
//!
//! States: 0 default (an assigned lease) -> Active, 1 declined -> Declined,
//! 2 expired-reclaimed -> Expired (client kept, so it can get the address back).

use std::collections::BTreeMap;
use std::io::{self, Write};
use std::net::Ipv4Addr;

use lease_store::{KeyKind, LeaseState, LeaseTable};

use super::model::{parse_colon_hex, push_hex, ParseError, SourceLease};

/// The header Kea 2.2 writes, byte for byte.
pub const KEA_HEADER: &str =
    "address,hwaddr,client_id,valid_lifetime,expire,subnet_id,fqdn_fwd,fqdn_rev,hostname,state,user_context";

const REQUIRED: [&str; 6] = [
    "address",
    "hwaddr",
    "client_id",
    "valid_lifetime",
    "expire",
    "subnet_id",
];
const OPTIONAL: [&str; 6] = [
    "fqdn_fwd",
    "fqdn_rev",
    "hostname",
    "state",
    "user_context",
    "pool_id",
];

/// The leases of a Kea file (last line per address), by address.
#[derive(Debug, Default)]
pub struct KeaFile {
    pub leases: BTreeMap<Ipv4Addr, SourceLease>,
    /// Data rows read (including ones overridden later).
    pub rows: usize,
}

#[derive(Default)]
struct Cols {
    idx: [Option<usize>; 12],
    n: usize,
}

impl Cols {
    fn get(&self, name: &str) -> Option<usize> {
        let i = REQUIRED
            .iter()
            .chain(OPTIONAL.iter())
            .position(|c| *c == name)?;
        self.idx[i]
    }
}

/// Parses a whole Kea memfile lease file; `file` names it in errors.
pub fn parse(src: &[u8], file: &str) -> Result<KeaFile, ParseError> {
    let err = |line: usize, col: usize, msg: String| ParseError {
        file: file.to_string(),
        line,
        col,
        msg,
    };
    let mut out = KeaFile::default();
    let mut cols: Option<Cols> = None;
    for (n, raw) in src.split(|&b| b == b'\n').enumerate() {
        let line = n + 1;
        let raw = raw.strip_suffix(b"\r").unwrap_or(raw);
        if raw.iter().all(|b| b.is_ascii_whitespace()) {
            continue;
        }
        let text = std::str::from_utf8(raw).map_err(|e| {
            err(
                line,
                e.valid_up_to() + 1,
                "not valid UTF-8 text".to_string(),
            )
        })?;
        // Fields with their 1-based starting column.
        let mut fields: Vec<(usize, &str)> = Vec::with_capacity(12);
        let mut at = 0;
        for f in text.split(',') {
            fields.push((at + 1, f));
            at += f.len() + 1;
        }
        let Some(c) = &cols else {
            let mut c = Cols {
                n: fields.len(),
                ..Cols::default()
            };
            for &(col, name) in &fields {
                let name = name.trim();
                let i = REQUIRED
                    .iter()
                    .chain(OPTIONAL.iter())
                    .position(|k| *k == name)
                    .ok_or_else(|| {
                        err(
                            line,
                            col,
                            format!(
                                "unknown column `{name}` in the header (expected {KEA_HEADER}[,pool_id])"
                            ),
                        )
                    })?;
                if c.idx[i].is_some() {
                    return Err(err(
                        line,
                        col,
                        format!("column `{name}` appears twice in the header"),
                    ));
                }
                c.idx[i] = Some(fields.iter().position(|f| f.0 == col).unwrap_or(0));
            }
            if let Some(missing) = REQUIRED.iter().find(|k| c.get(k).is_none()) {
                return Err(err(
                    line,
                    1,
                    format!("the header lacks column `{missing}` (expected {KEA_HEADER})"),
                ));
            }
            cols = Some(c);
            continue;
        };
        if fields.len() != c.n {
            return Err(err(
                line,
                1,
                format!(
                    "expected {} comma-separated fields (as in the header), found {}",
                    c.n,
                    fields.len()
                ),
            ));
        }
        let field = |name: &str| c.get(name).map(|i| fields[i]);
        let req = |name: &str| field(name).unwrap_or((1, ""));
        let num = |name: &str| -> Result<u64, ParseError> {
            let (col, v) = req(name);
            v.trim().parse::<u64>().map_err(|_| {
                err(
                    line,
                    col,
                    format!("expected a number in `{name}`, found `{v}`"),
                )
            })
        };
        let (acol, a) = req("address");
        let addr: Ipv4Addr = a
            .parse()
            .map_err(|_| err(line, acol, format!("expected an IPv4 address, found `{a}`")))?;
        let mut l = SourceLease::new(addr, line);
        let (hcol, h) = req("hwaddr");
        l.hw = parse_colon_hex(h).map_err(|e| err(line, hcol, format!("bad hwaddr: {e}")))?;
        if l.hw.len() > 16 {
            return Err(err(
                line,
                hcol,
                format!("hwaddr of {} octets (at most 16)", l.hw.len()),
            ));
        }
        let (ccol, cid) = req("client_id");
        l.client_id =
            parse_colon_hex(cid).map_err(|e| err(line, ccol, format!("bad client_id: {e}")))?;
        let valid = num("valid_lifetime")?;
        let valid = u32::try_from(valid).map_err(|_| {
            err(
                line,
                req("valid_lifetime").0,
                format!("valid_lifetime {valid} is larger than 4294967295"),
            )
        })?;
        let expire = num("expire")?;
        let subnet = num("subnet_id")?;
        l.subnet_id = Some(u32::try_from(subnet).map_err(|_| {
            err(
                line,
                req("subnet_id").0,
                format!("subnet_id {subnet} is out of range"),
            )
        })?);
        for flag in ["fqdn_fwd", "fqdn_rev"] {
            if let Some((col, v)) = field(flag) {
                if !matches!(v.trim(), "0" | "1" | "true" | "false" | "") {
                    return Err(err(
                        line,
                        col,
                        format!("expected 0 or 1 in `{flag}`, found `{v}`"),
                    ));
                }
            }
        }
        if let Some((_, h)) = field("hostname") {
            if !h.is_empty() {
                l.hostname = Some(h.replace("&#x2c", ","));
            }
        }
        let state = match field("state") {
            None => 0,
            Some((col, v)) => match v.trim() {
                "0" | "" => 0,
                "1" => 1,
                "2" => 2,
                _ => {
                    return Err(err(
                        line,
                        col,
                        format!(
                        "unknown state `{v}` (expected 0 default, 1 declined, 2 expired-reclaimed)"
                    ),
                    ))
                }
            },
        };
        let (ecol, _) = req("expire");
        let cltt = expire.checked_sub(u64::from(valid)).ok_or_else(|| {
            err(
                line,
                ecol,
                format!("expire {expire} is earlier than valid_lifetime {valid} seconds after 1970 (the last transaction time would be negative)"),
            )
        })?;
        l.cltt = u32::try_from(cltt).map_err(|_| {
            err(
                line,
                ecol,
                format!("expire {expire}: last transaction time beyond 2106"),
            )
        })?;
        l.start = l.cltt;
        out.rows += 1;
        if valid == 0 {
            // Kea's record of a deleted lease: the address is free again.
            let mut d = SourceLease::new(addr, line);
            d.deleted = true;
            d.subnet_id = l.subnet_id;
            out.leases.insert(addr, d);
            continue;
        }
        l.lease_time = valid;
        l.expiry = if valid == u32::MAX {
            u32::MAX
        } else {
            u32::try_from(expire)
                .ok()
                .filter(|&e| e != u32::MAX)
                .ok_or_else(|| err(line, ecol, format!("expire {expire} is beyond 2106")))?
        };
        l.state = match state {
            1 => LeaseState::Declined,
            2 => LeaseState::Expired,
            _ => LeaseState::Active,
        };
        out.leases.insert(addr, l);
    }
    if cols.is_none() {
        return Err(err(
            1,
            1,
            format!("empty file: expected the header `{KEA_HEADER}`"),
        ));
    }
    Ok(out)
}

/// What `write_csv` wrote and left out.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct ExportSummary {
    pub written: u64,
    pub active: u64,
    pub declined: u64,
    pub expired: u64,
    /// Offered (Kea 2.2 does not persist offers), Free and Backup records.
    pub not_leases: u64,
    /// Bound records without a hardware address (Kea requires one unless declined).
    pub skipped_no_hw: u64,
    /// Records whose client identifier was longer than the table keeps (stored hashed):
    /// written without `client_id`.
    pub client_id_dropped: u64,
    /// Records whose address is in no subnet known to `subnet_id_of`.
    pub skipped_no_subnet: u64,
}

/// Writes every lease of `table` as Kea 2.2 memfile CSV, streaming.
/// `subnet_id_of` gives Kea's `subnet_id` for an address.
///
/// Mapping: Active/Reserved -> state 0; Expired/Released -> 2
/// (expired-reclaimed); Declined/Abandoned -> 1 (declined, without client);
/// Offered/Free/Backup are not leases in Kea's file and are left out.
/// `valid_lifetime` is `expiry - cltt` (never 0, which would mean "deleted").
pub fn write_csv(
    table: &LeaseTable,
    subnet_id_of: impl Fn(Ipv4Addr) -> Option<u32>,
    out: &mut dyn Write,
) -> io::Result<ExportSummary> {
    let mut s = ExportSummary::default();
    writeln!(out, "{KEA_HEADER}")?;
    let mut line = String::with_capacity(160);
    for (_, l, v) in table.iter_with_var() {
        let kea_state = match l.state {
            LeaseState::Active | LeaseState::Reserved => 0,
            LeaseState::Expired | LeaseState::Released => 2,
            LeaseState::Declined | LeaseState::Abandoned => 1,
            LeaseState::Offered | LeaseState::Free | LeaseState::Backup => {
                s.not_leases += 1;
                continue;
            }
        };
        let Some(subnet) = subnet_id_of(l.addr) else {
            s.skipped_no_subnet += 1;
            continue;
        };
        let declined = kea_state == 1;
        if !declined && l.hw().is_empty() {
            s.skipped_no_hw += 1;
            continue;
        }
        let (valid, expire): (u32, u64) = if l.expiry == u32::MAX {
            let base = if l.cltt != 0 { l.cltt } else { l.start };
            (u32::MAX, u64::from(base) + u64::from(u32::MAX))
        } else {
            let base = [l.cltt, l.start]
                .into_iter()
                .find(|&t| t != 0 && t < l.expiry)
                .unwrap_or_else(|| l.expiry.saturating_sub(l.lease_time.max(1)));
            ((l.expiry - base).max(1), u64::from(l.expiry))
        };
        line.clear();
        line.push_str(&l.addr.to_string());
        line.push(',');
        if !declined {
            for (i, b) in l.hw().iter().enumerate() {
                if i > 0 {
                    line.push(':');
                }
                push_hex(&mut line, *b);
            }
        }
        line.push(',');
        if !declined && l.client.kind() == KeyKind::ClientId {
            if l.client.is_hashed() {
                s.client_id_dropped += 1;
            } else {
                for (i, b) in l.client.as_bytes().iter().enumerate() {
                    if i > 0 {
                        line.push(':');
                    }
                    push_hex(&mut line, *b);
                }
            }
        }
        use std::fmt::Write as _;
        let _ = write!(line, ",{valid},{expire},{subnet},0,0,");
        if !declined {
            // Kea escapes commas inside a field as `&#x2c`.
            let host = String::from_utf8_lossy(v.host_name()).replace(',', "&#x2c");
            line.push_str(&host);
        }
        let _ = write!(line, ",{kea_state},");
        let ri = v.relay_agent_info();
        if !declined && !ri.is_empty() {
            // Kea 2.2's stored relay data (`store-extended-info`): the option 82 value in hex.
            line.push_str("{ \"ISC\": { \"relay-agent-info\": \"0x");
            for b in ri {
                let _ = write!(line, "{b:02X}");
            }
            line.push_str("\" } }");
            // (No commas in that JSON: nothing to escape.)
        }
        writeln!(out, "{line}")?;
        s.written += 1;
        match kea_state {
            0 => s.active += 1,
            1 => s.declined += 1,
            _ => s.expired += 1,
        }
    }
    out.flush()?;
    Ok(s)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn err(src: &str) -> String {
        match parse(src.as_bytes(), "k.csv") {
            Ok(f) => panic!("accepted: {f:?}"),
            Err(e) => e.to_string(),
        }
    }

    #[test]
    fn rows_states_and_deletion() {
        let src = format!(
            "{KEA_HEADER}\n\
             10.0.0.1,00:0c:01:02:03:04,01:00:0c:01:02:03:04,3600,1795316927,1,0,0,a&#x2cb,0,\n\
             10.0.0.2,,,3600,1795316927,1,0,0,,1,\n\
             10.0.0.3,00:0c:01:02:03:05,,3600,1795316927,1,0,0,,2,{{ \"x\": 1 }}\n\
             10.0.0.4,00:0c:01:02:03:06,,3600,1795316927,1,0,0,,0,\n\
             10.0.0.4,00:0c:01:02:03:06,,0,1795313327,1,0,0,,0,\n"
        );
        let f = parse(src.as_bytes(), "k.csv").unwrap_or_else(|e| panic!("{e}"));
        assert_eq!(f.rows, 5);
        let g = |a: u8| &f.leases[&Ipv4Addr::new(10, 0, 0, a)];
        assert_eq!(g(1).state, LeaseState::Active);
        assert_eq!(
            (g(1).cltt, g(1).expiry, g(1).lease_time),
            (1_795_313_327, 1_795_316_927, 3600)
        );
        assert_eq!(g(1).hostname.as_deref(), Some("a,b"));
        assert_eq!(g(1).client_id, vec![1, 0, 12, 1, 2, 3, 4]);
        assert_eq!(g(2).state, LeaseState::Declined);
        assert_eq!(g(3).state, LeaseState::Expired);
        assert!(g(4).deleted);
        assert_eq!((g(4).state, g(4).line), (LeaseState::Free, 6));
    }

    #[test]
    fn header_variants() {
        let old =
            "address,hwaddr,client_id,valid_lifetime,expire,subnet_id,fqdn_fwd,fqdn_rev,hostname\n\
                   10.0.0.1,00:0c:01:02:03:04,,3600,1795316927,1,0,0,\n";
        assert_eq!(parse(old.as_bytes(), "k").map(|f| f.rows), Ok(1));
        let new = format!(
            "{KEA_HEADER},pool_id\n10.0.0.1,00:0c:01:02:03:04,,3600,1795316927,1,0,0,,0,,0\n"
        );
        assert_eq!(parse(new.as_bytes(), "k").map(|f| f.rows), Ok(1));
        assert_eq!(
            err("address,hwaddr,client_id,valid_lifetime,expire,subnet,x\n"),
            "k.csv:1:48: unknown column `subnet` in the header (expected address,hwaddr,client_id,valid_lifetime,expire,subnet_id,fqdn_fwd,fqdn_rev,hostname,state,user_context[,pool_id])"
        );
        assert!(err("address,hwaddr,client_id,valid_lifetime,expire\n")
            .contains("lacks column `subnet_id`"));
        assert!(err("").contains("empty file"));
    }

    #[test]
    fn malformed_rows_are_positioned() {
        let h = KEA_HEADER;
        let e = err(&format!(
            "{h}\n10.0.0.1,00:0c:01:02:03:04,,3600,1795316927,1,0,0,,7,\n"
        ));
        assert_eq!(
            e,
            "k.csv:2:52: unknown state `7` (expected 0 default, 1 declined, 2 expired-reclaimed)"
        );
        let e = err(&format!(
            "{h}\n10.0.0.1,00:0c:01:02:03:04,,3600,17953x6927,1,0,0,,0,\n"
        ));
        assert_eq!(
            e,
            "k.csv:2:34: expected a number in `expire`, found `17953x6927`"
        );
        let e = err(&format!(
            "{h}\n10.0.0.1,00:0c:01:02:03:04,,3600,100,1,0,0,,0,\n"
        ));
        assert!(
            e.starts_with("k.csv:2:34: expire 100 is earlier than valid_lifetime 3600"),
            "{e}"
        );
        let e = err(&format!(
            "{h}\n10.0.0.1,00:0c:01:02:03:04,,3600,1795316927,1\n"
        ));
        assert_eq!(
            e,
            "k.csv:2:1: expected 11 comma-separated fields (as in the header), found 6"
        );
        let e = err(&format!(
            "{h}\n10.0.0.256,00:0c,,3600,1795316927,1,0,0,,0,\n"
        ));
        assert_eq!(e, "k.csv:2:1: expected an IPv4 address, found `10.0.0.256`");
        let e = err(&format!("{h}\n10.0.0.1,00:0g,,3600,1795316927,1,0,0,,0,\n"));
        assert!(e.starts_with("k.csv:2:10: bad hwaddr"), "{e}");
        let e = err(&format!("{h}\n10.0.0.1,00:01,,3600,9995316927,1,0,0,,0,\n"));
        assert!(e.contains("beyond 2106"), "{e}");
        let e = err(&format!("{h}\n10.0.0.1,00:01,,3600,1795316927,1,2,0,,0,\n"));
        assert_eq!(e, "k.csv:2:35: expected 0 or 1 in `fqdn_fwd`, found `2`");
    }

    #[test]
    fn truncated_files_never_panic() {
        let src = format!("{KEA_HEADER}\n10.0.0.1,00:0c:01:02:03:04,01:00:0c:01:02:03:04,3600,1795316927,1,0,0,x,0,\n");
        for i in 0..src.len() {
            let _ = parse(&src.as_bytes()[..i], "cut");
        }
    }
}
