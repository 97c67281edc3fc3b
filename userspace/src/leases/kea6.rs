//! Kea memfile CSV for DHCPv6 (`kea-leases6.csv`): reader, and the import into
//! the v6 binding table (`xdhcpd leases import --from kea-lease6 FILE`).
//!
//! Kea 2.2 writes `address,duid,valid_lifetime,expire,subnet_id,pref_lifetime,
//! lease_type,iaid,prefix_len,fqdn_fwd,fqdn_rev,hostname,hwaddr,state,
//! user_context` then `hwtype,hwaddr_source` (Kea's `CSVLeaseFile6::initColumns`,
//! src/lib/dhcpsrv/csv_lease_file6.cc; later versions append `pool_id`, older ones
//! lack the last columns). As for DHCPv4 the file is a log: a later line for an
//! address (or prefix) replaces the earlier one, and `valid_lifetime` 0 records a
//! deleted lease. `lease_type` 0 is IA_NA, 1 IA_TA, 2 IA_PD; `prefix_len` is 128 for
//! addresses. `expire` is unix seconds; the last transaction time is
//! `expire - valid_lifetime`. `duid` is colon-separated hex (a declined lease's
//! DUID is Kea's placeholder `00`).
//!
//! States: 0 default -> Active (Expired when its `expire` has passed), 1 declined ->
//! Declined, 2 expired-reclaimed -> Expired. IA_TA rows are skipped and counted (the
//! server does not serve IA_TA), as are deleted rows (a binding the table holds for
//! that address is left alone: the import never deletes). Host names, hardware
//! addresses and user contexts are not kept (no field in the v6 record) and counted.
//!
//! Checks before anything is written (all-or-nothing, as the v4 import): the
//! address must lie in a `[[subnet6]]` prefix (a prefix in one of its `pd-pool`s or
//! reserved prefixes), else the import is refused unless `--skip-outside`; a live
//! binding of another client for the same address is refused unless `--force`. The
//! link is the `[[subnet6]]` found by address (Kea's `subnet_id` is not ours).

use std::collections::BTreeMap;
use std::fmt::Write as _;
use std::net::Ipv6Addr;
use std::path::Path;

use lease_store::v6::{read_file, Binding6, BindingState, BindingTable6, IaKind, DUID_MAX};
use xdhcpd_config::V6Config;

use super::model::{parse_colon_hex, ParseError};

/// The header Kea 2.2 writes.
pub const KEA6_HEADER: &str = "address,duid,valid_lifetime,expire,subnet_id,pref_lifetime,lease_type,iaid,prefix_len,fqdn_fwd,fqdn_rev,hostname,hwaddr,state,user_context,hwtype,hwaddr_source";

const REQUIRED: [&str; 9] = [
    "address",
    "duid",
    "valid_lifetime",
    "expire",
    "subnet_id",
    "pref_lifetime",
    "lease_type",
    "iaid",
    "prefix_len",
];
const OPTIONAL: [&str; 9] = [
    "fqdn_fwd",
    "fqdn_rev",
    "hostname",
    "hwaddr",
    "state",
    "user_context",
    "hwtype",
    "hwaddr_source",
    "pool_id",
];

/// One row of the file (the last one for its address).
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Row6 {
    /// 1-based line.
    pub line: usize,
    pub kind: IaKind,
    pub addr: Ipv6Addr,
    pub prefix_len: u8,
    pub duid: Vec<u8>,
    pub iaid: u32,
    pub preferred: u32,
    pub valid: u32,
    pub expire: u32,
    pub cltt: u32,
    /// 0 default, 1 declined, 2 expired-reclaimed.
    pub state: u8,
    /// `valid_lifetime` 0: Kea's record of a deleted lease.
    pub deleted: bool,
    /// Host name, hardware address or user context present (not kept).
    pub extras: bool,
}

/// What the file holds.
#[derive(Debug, Default)]
pub struct Kea6File {
    /// Last row per (kind, address, prefix length).
    pub rows: BTreeMap<(u8, [u8; 16], u8), Row6>,
    /// Data rows read (including ones overridden later).
    pub read: usize,
    /// IA_TA rows (not served, skipped).
    pub temporary: usize,
}

/// Parses a whole Kea lease6 memfile; `file` names it in errors (`file:line:col: msg`).
pub fn parse6(src: &[u8], file: &str) -> Result<Kea6File, ParseError> {
    let err = |line: usize, col: usize, msg: String| ParseError {
        file: file.to_string(),
        line,
        col,
        msg,
    };
    let mut out = Kea6File::default();
    let mut cols: Option<(Vec<Option<usize>>, usize)> = None;
    for (n, raw) in src.split(|&b| b == b'\n').enumerate() {
        let line = n + 1;
        let raw = raw.strip_suffix(b"\r").unwrap_or(raw);
        if raw.iter().all(|b| b.is_ascii_whitespace()) {
            continue;
        }
        let text = std::str::from_utf8(raw)
            .map_err(|e| err(line, e.valid_up_to() + 1, "not valid UTF-8 text".into()))?;
        let mut fields: Vec<(usize, &str)> = Vec::with_capacity(18);
        let mut at = 0;
        for f in text.split(',') {
            fields.push((at + 1, f));
            at += f.len() + 1;
        }
        let Some((idx, ncols)) = &cols else {
            let mut idx = vec![None; REQUIRED.len() + OPTIONAL.len()];
            for (i, &(col, name)) in fields.iter().enumerate() {
                let name = name.trim();
                let k = REQUIRED
                    .iter()
                    .chain(OPTIONAL.iter())
                    .position(|k| *k == name)
                    .ok_or_else(|| {
                        err(
                            line,
                            col,
                            format!("unknown column `{name}` in the header (expected {KEA6_HEADER}[,pool_id])"),
                        )
                    })?;
                if idx[k].is_some() {
                    return Err(err(
                        line,
                        col,
                        format!("column `{name}` appears twice in the header"),
                    ));
                }
                idx[k] = Some(i);
            }
            if let Some(k) = (0..REQUIRED.len()).find(|&k| idx[k].is_none()) {
                return Err(err(
                    line,
                    1,
                    format!(
                        "the header lacks column `{}` (expected {KEA6_HEADER})",
                        REQUIRED[k]
                    ),
                ));
            }
            cols = Some((idx, fields.len()));
            continue;
        };
        if fields.len() != *ncols {
            return Err(err(
                line,
                1,
                format!(
                    "expected {ncols} comma-separated fields (as in the header), found {}",
                    fields.len()
                ),
            ));
        }
        let field = |name: &str| {
            let k = REQUIRED
                .iter()
                .chain(OPTIONAL.iter())
                .position(|c| *c == name)?;
            idx[k].map(|i| fields[i])
        };
        let req = |name: &str| field(name).unwrap_or((1, ""));
        let num = |name: &str, max: u64| -> Result<u64, ParseError> {
            let (col, v) = req(name);
            let x = v
                .trim()
                .parse::<u64>()
                .map_err(|_| err(line, col, format!("{name}: expected a number, found `{v}`")))?;
            if x > max {
                return Err(err(line, col, format!("{name}: {x} is larger than {max}")));
            }
            Ok(x)
        };
        let (acol, a) = req("address");
        let addr: Ipv6Addr = a.trim().parse().map_err(|_| {
            err(
                line,
                acol,
                format!("address: expected an IPv6 address, found `{a}`"),
            )
        })?;
        let (dcol, d) = req("duid");
        let duid = parse_colon_hex(d.trim()).map_err(|e| err(line, dcol, format!("duid: {e}")))?;
        if duid.len() > DUID_MAX {
            return Err(err(
                line,
                dcol,
                format!("duid: {} octets (at most {DUID_MAX})", duid.len()),
            ));
        }
        let valid = num("valid_lifetime", u64::from(u32::MAX))? as u32;
        let expire = num("expire", u64::from(u32::MAX))? as u32;
        let _subnet = num("subnet_id", u64::from(u32::MAX))?;
        let preferred = num("pref_lifetime", u64::from(u32::MAX))? as u32;
        let lease_type = num("lease_type", 2)?;
        let iaid = num("iaid", u64::from(u32::MAX))? as u32;
        let prefix_len = num("prefix_len", 128)? as u8;
        out.read += 1;
        let kind = match lease_type {
            0 => IaKind::Na,
            2 => IaKind::Pd,
            _ => {
                out.temporary += 1;
                continue;
            }
        };
        let (pcol, _) = req("prefix_len");
        if kind == IaKind::Na && prefix_len != 128 {
            return Err(err(
                line,
                pcol,
                format!("prefix_len: an IA_NA address has 128, found {prefix_len}"),
            ));
        }
        if kind == IaKind::Pd && u128::from(addr) & !mask(prefix_len) != 0 {
            return Err(err(
                line,
                acol,
                format!("address: prefix {addr}/{prefix_len} has host bits set"),
            ));
        }
        for flag in ["fqdn_fwd", "fqdn_rev"] {
            if let Some((col, v)) = field(flag) {
                if !matches!(v.trim(), "0" | "1" | "true" | "false" | "") {
                    return Err(err(
                        line,
                        col,
                        format!("{flag}: expected 0 or 1, found `{v}`"),
                    ));
                }
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
                        format!("state: unknown `{v}` (expected 0 default, 1 declined, 2 expired-reclaimed)"),
                    ))
                }
            },
        };
        let (ecol, _) = req("expire");
        let deleted = valid == 0;
        let cltt = if valid == u32::MAX || deleted {
            expire
        } else {
            expire.checked_sub(valid).ok_or_else(|| {
                err(
                    line,
                    ecol,
                    format!("expire: {expire} is earlier than valid_lifetime {valid} seconds after 1970"),
                )
            })?
        };
        let extras = ["hostname", "hwaddr", "user_context"]
            .iter()
            .any(|c| field(c).is_some_and(|(_, v)| !v.trim().is_empty()));
        let row = Row6 {
            line,
            kind,
            addr,
            prefix_len,
            duid,
            iaid,
            preferred,
            valid,
            expire,
            cltt,
            state,
            deleted,
            extras,
        };
        out.rows
            .insert((kind as u8, addr.octets(), prefix_len), row);
    }
    if cols.is_none() {
        return Err(err(
            1,
            1,
            format!("empty file: expected the header `{KEA6_HEADER}`"),
        ));
    }
    Ok(out)
}

fn mask(len: u8) -> u128 {
    match len {
        0 => 0,
        l if l >= 128 => u128::MAX,
        l => u128::MAX << (128 - u32::from(l)),
    }
}

fn contains(p: Ipv6Addr, len: u8, a: Ipv6Addr) -> bool {
    u128::from(p) & mask(len) == u128::from(a) & mask(len)
}

/// The `[[subnet6]]` (link index) a row belongs to.
fn link_of(v6: &V6Config, r: &Row6) -> Option<u16> {
    v6.subnets
        .iter()
        .position(|s| match r.kind {
            IaKind::Na => contains(s.prefix, s.prefix_len, r.addr),
            IaKind::Pd => {
                s.pd_pools.iter().any(|p| {
                    r.prefix_len >= p.prefix_len && contains(p.prefix, p.prefix_len, r.addr)
                }) || s
                    .reservations
                    .iter()
                    .any(|x| x.prefix == Some((r.addr, r.prefix_len)))
            }
        })
        .map(|i| i as u16)
}

/// Flags of the v6 import (as for DHCPv4).
#[derive(Clone, Copy, Debug, Default)]
pub struct Import6Options {
    pub skip_outside: bool,
    pub force: bool,
    pub dry_run: bool,
    pub now: u32,
}

/// What the import did (or would do).
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct Import6Summary {
    /// Distinct addresses and prefixes in the file (after later rows override earlier ones).
    pub entries: usize,
    /// Written (or that would be), by resulting kind and state (`ia_na active`, ...).
    pub imported: BTreeMap<String, usize>,
    pub unchanged: usize,
    /// Rows of deleted leases (valid_lifetime 0), skipped.
    pub deleted: usize,
    /// IA_TA rows, skipped.
    pub temporary: usize,
    /// Outside every `[[subnet6]]` (skipped with --skip-outside): (line, address/len).
    pub outside: Vec<(usize, String)>,
    /// Live bindings of other clients overwritten (--force).
    pub conflicts: Vec<String>,
    /// Host names, hardware addresses or user contexts not kept.
    pub extras_dropped: usize,
    pub written: bool,
}

impl Import6Summary {
    pub fn imported_total(&self) -> usize {
        self.imported.values().sum()
    }

    /// One fact per line.
    pub fn report(&self, source: &str) -> String {
        let mut s = String::new();
        let verb = if self.written {
            "imported"
        } else {
            "would import"
        };
        let _ = writeln!(
            s,
            "{source}: {} address(es)/prefix(es); {verb} {}, unchanged {}, skipped {} outside the [[subnet6]] prefixes, {} deleted (valid_lifetime 0), {} IA_TA",
            self.entries,
            self.imported_total(),
            self.unchanged,
            self.outside.len(),
            self.deleted,
            self.temporary
        );
        if !self.imported.is_empty() {
            let by: Vec<String> = self
                .imported
                .iter()
                .map(|(k, v)| format!("{k} {v}"))
                .collect();
            let _ = writeln!(s, "  {verb} by type and state: {}", by.join(", "));
        }
        for (line, a) in self.outside.iter().take(20) {
            let _ = writeln!(
                s,
                "  skipped {source}:{line}: {a} is outside the [[subnet6]] prefixes"
            );
        }
        for c in self.conflicts.iter().take(20) {
            let _ = writeln!(s, "  overwrote (--force) {c}");
        }
        if self.extras_dropped > 0 {
            let _ = writeln!(
                s,
                "  note: {} row(s) with a host name, hardware address or user context not kept (no field in the v6 record)",
                self.extras_dropped
            );
        }
        s
    }
}

fn binding_of(r: &Row6, link: u16, now: u32) -> Binding6 {
    let mut b = Binding6::new(r.kind, &r.duid, r.iaid, r.addr.octets(), r.prefix_len);
    b.link = link;
    b.cltt = r.cltt;
    b.state_start = r.cltt;
    b.preferred = r.preferred;
    b.valid = r.valid;
    b.expiry = r.expire;
    b.state = match r.state {
        1 => BindingState::Declined,
        2 => BindingState::Expired,
        _ if r.expire <= now && r.valid != u32::MAX => BindingState::Expired,
        _ => BindingState::Active,
    };
    b
}

fn live(b: &Binding6, now: u32) -> bool {
    b.state == BindingState::Active && b.expiry > now
}

/// Checks every row, then (unless refused or a dry run) writes them into `table`.
/// Errors list every problem, each naming `file:line`; nothing is written then.
pub fn apply6(
    table: &mut BindingTable6,
    v6: &V6Config,
    source: &str,
    file: &Kea6File,
    opts: &Import6Options,
) -> Result<Import6Summary, Vec<String>> {
    let mut sum = Import6Summary {
        temporary: file.temporary,
        ..Import6Summary::default()
    };
    let mut problems = Vec::new();
    let mut todo = Vec::new();
    for r in file.rows.values() {
        sum.entries += 1;
        if r.deleted {
            sum.deleted += 1;
            continue;
        }
        let shown = if r.kind == IaKind::Na {
            r.addr.to_string()
        } else {
            format!("{}/{}", r.addr, r.prefix_len)
        };
        let Some(link) = link_of(v6, r) else {
            sum.outside.push((r.line, shown.clone()));
            if !opts.skip_outside {
                problems.push(format!(
                    "{source}:{}: {shown} is outside the [[subnet6]] prefixes (use --skip-outside to skip such rows)",
                    r.line
                ));
            }
            continue;
        };
        let new = binding_of(r, link, opts.now);
        let slot = table.find_addr(r.kind, &r.addr.octets(), r.prefix_len);
        if let Some(old) = slot.and_then(|s| table.get(s)) {
            if live(&old, opts.now) && old.duid != new.duid {
                let msg = format!(
                    "{source}:{}: {shown} has a live binding in the table (DUID {}, valid until {}); the import gives it to DUID {}",
                    r.line,
                    super::model::colon_hex(old.duid.as_slice()),
                    old.expiry,
                    super::model::colon_hex(&r.duid)
                );
                if opts.force {
                    sum.conflicts.push(msg);
                } else {
                    problems.push(format!("{msg}; use --force to overwrite"));
                }
            }
            if old.kind == new.kind
                && old.duid == new.duid
                && old.iaid == new.iaid
                && old.state == new.state
                && (old.cltt, old.preferred, old.valid, old.expiry, old.link)
                    == (new.cltt, new.preferred, new.valid, new.expiry, new.link)
            {
                sum.unchanged += 1;
                continue;
            }
        }
        sum.extras_dropped += usize::from(r.extras);
        todo.push((r.line, slot, new));
    }
    if !problems.is_empty() {
        return Err(problems);
    }
    for (line, slot, mut new) in todo {
        let key = format!(
            "{} {}",
            if new.kind == IaKind::Na {
                "ia_na"
            } else {
                "ia_pd"
            },
            new.state.name()
        );
        *sum.imported.entry(key).or_default() += 1;
        if opts.dry_run {
            continue;
        }
        // Keep what the server recorded that the file does not carry (relay data, flags).
        if let Some(old) = slot.and_then(|s| table.get(s)) {
            if old.duid == new.duid {
                new.relay = old.relay;
                new.flags = old.flags;
            }
        }
        table.put(slot, &new).map_err(|_| {
            vec![format!(
                "{source}:{line}: the v6 binding table is full ([dhcpv6] capacity)"
            )]
        })?;
    }
    sum.written = !opts.dry_run;
    Ok(sum)
}

/// `xdhcpd leases import --from kea-lease6`: reads `src`, opens the v6 binding file (created
/// if missing; a dry run works on a copy in memory), applies, flushes. Returns the report.
pub fn import_file(
    v6: &V6Config,
    path: &Path,
    src: &[u8],
    name: &str,
    opts: &Import6Options,
) -> anyhow::Result<Result<String, String>> {
    let file = match parse6(src, name) {
        Ok(f) => f,
        Err(e) => return Ok(Err(e.to_string())),
    };
    let mut table = if opts.dry_run {
        let existing = if path.is_file() {
            let (_, bs, _) = read_file(path).map_err(|e| anyhow::anyhow!("{e}"))?;
            bs
        } else {
            Vec::new()
        };
        let cap = v6
            .capacity
            .max(existing.len() as u32 + file.rows.len() as u32);
        let mut t = BindingTable6::in_memory(cap);
        for b in &existing {
            let _ = t.put(None, b);
        }
        t
    } else {
        if let Some(dir) = path.parent().filter(|d| !d.as_os_str().is_empty()) {
            std::fs::create_dir_all(dir)
                .map_err(|e| anyhow::anyhow!("creating {}: {e}", dir.display()))?;
        }
        BindingTable6::open(path, v6.capacity, true).map(|(t, _)| t).map_err(|e| {
            anyhow::anyhow!("opening the v6 binding file {}: {e} (a running xdhcpd holds it: stop it first)", path.display())
        })?
    };
    match apply6(&mut table, v6, name, &file, opts) {
        Ok(sum) => {
            if sum.written {
                table
                    .flush()
                    .map_err(|e| anyhow::anyhow!("flushing {}: {e}", path.display()))?;
            }
            Ok(Ok(sum.report(name)))
        }
        Err(p) => {
            let mut s = format!(
                "import refused, nothing written ({} problem(s)):\n",
                p.len()
            );
            for x in p.iter().take(50) {
                let _ = writeln!(s, "  {x}");
            }
            Ok(Err(s))
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Rows in Kea 2.2's lease6 memfile format (header and column order of Kea's
    /// `CSVLeaseFile6`, src/lib/dhcpsrv/csv_lease_file6.cc; values as kea-dhcp6 2.2 writes
    /// them): an IA_NA and an IA_PD of one client, a declined address, an
    /// expired-reclaimed one, an address renewed on a later line, a deleted lease, an IA_TA.
    const CSV: &str = "address,duid,valid_lifetime,expire,subnet_id,pref_lifetime,lease_type,iaid,prefix_len,fqdn_fwd,fqdn_rev,hostname,hwaddr,state,user_context,hwtype,hwaddr_source
fd77::1:5,00:03:00:01:02:00:00:00:00:01,4000,2000004000,1,3000,0,1,128,0,0,,02:00:00:00:00:01,0,,1,2
fd77:100:0:100::,00:03:00:01:02:00:00:00:00:01,4000,2000004000,1,3000,2,2,56,0,0,,,0,,,
fd77::1:6,00,4000,2000004000,1,3000,0,7,128,0,0,,,1,,,
fd77::1:7,00:03:00:01:02:00:00:00:00:03,4000,1000004000,1,3000,0,1,128,0,0,,,2,,,
fd77::1:8,00:03:00:01:02:00:00:00:00:04,4000,2000000000,1,3000,0,1,128,0,0,host-4,,0,,,
fd77::1:8,00:03:00:01:02:00:00:00:00:04,4000,2000004000,1,3000,0,1,128,0,0,host-4,,0,,,
fd77::1:9,00:03:00:01:02:00:00:00:00:05,0,2000004000,1,0,0,1,128,0,0,,,0,,,
fd77::1:a,00:03:00:01:02:00:00:00:00:06,4000,2000004000,1,3000,1,1,128,0,0,,,0,,,
";

    fn v6() -> V6Config {
        let cfg = xdhcpd_config::parse(
            r#"[server]
interface = "eth0"
[[subnet]]
cidr = "10.0.0.0/24"
[[subnet6]]
prefix = "fd77::/64"
[[subnet6.pool]]
range = "fd77::1:0-fd77::1:ffff"
[[subnet6.pd-pool]]
prefix = "fd77:100::/40"
delegated-length = 56
"#,
            "t.toml",
        )
        .unwrap_or_else(|e| panic!("{e}"));
        cfg.v6
    }

    #[test]
    fn kea_lease6_rows_parse_last_line_wins_deleted_and_ia_ta_counted() {
        let f = parse6(CSV.as_bytes(), "kea-leases6.csv").unwrap_or_else(|e| panic!("{e}"));
        assert_eq!((f.read, f.temporary, f.rows.len()), (8, 1, 6));
        let na = f
            .rows
            .values()
            .find(|r| r.addr == "fd77::1:5".parse::<Ipv6Addr>().unwrap())
            .unwrap();
        assert_eq!(
            (na.kind, na.iaid, na.preferred, na.valid),
            (IaKind::Na, 1, 3000, 4000)
        );
        assert_eq!(na.cltt, 2_000_000_000);
        let renewed = f
            .rows
            .values()
            .find(|r| r.addr == "fd77::1:8".parse::<Ipv6Addr>().unwrap())
            .unwrap();
        assert_eq!((renewed.line, renewed.expire), (7, 2_000_004_000));
        let pd = f.rows.values().find(|r| r.kind == IaKind::Pd).unwrap();
        assert_eq!((pd.prefix_len, pd.iaid), (56, 2));
    }

    #[test]
    fn kea_lease6_import_writes_states_and_skips_deleted_then_is_idempotent() {
        let f = parse6(CSV.as_bytes(), "k.csv").unwrap();
        let v6 = v6();
        let mut t = BindingTable6::in_memory(64);
        let now = 1_500_000_000;
        let dry = Import6Options {
            dry_run: true,
            now,
            ..Default::default()
        };
        let s = apply6(&mut t, &v6, "k.csv", &f, &dry).unwrap();
        assert!(!s.written && t.is_empty(), "a dry run writes nothing");
        assert_eq!(s.imported_total(), 5);
        let opts = Import6Options {
            now,
            ..Default::default()
        };
        let s = apply6(&mut t, &v6, "k.csv", &f, &opts).unwrap();
        assert_eq!(s.imported.get("ia_na active"), Some(&2), "{s:?}");
        assert_eq!(s.imported.get("ia_pd active"), Some(&1));
        assert_eq!(s.imported.get("ia_na declined"), Some(&1));
        assert_eq!(s.imported.get("ia_na expired"), Some(&1));
        assert_eq!((s.deleted, s.temporary, s.extras_dropped), (1, 1, 2));
        assert_eq!(t.len(), 5);
        let slot = t
            .find_addr(
                IaKind::Pd,
                &"fd77:100:0:100::".parse::<Ipv6Addr>().unwrap().octets(),
                56,
            )
            .unwrap();
        let b = t.get(slot).unwrap();
        assert_eq!(
            (b.state, b.iaid, b.expiry, b.link),
            (BindingState::Active, 2, 2_000_004_000, 0)
        );
        assert_eq!(b.duid.as_slice(), &[0, 3, 0, 1, 2, 0, 0, 0, 0, 1]);
        let mut out = [0u32; 4];
        assert_eq!(t.find_client(&[0, 3, 0, 1, 2, 0, 0, 0, 0, 1], &mut out), 2);
        // Again: nothing changes.
        let s = apply6(&mut t, &v6, "k.csv", &f, &opts).unwrap();
        assert_eq!((s.imported_total(), s.unchanged), (0, 5));
    }

    #[test]
    fn kea_lease6_import_refuses_outside_and_conflicts_with_lines() {
        let v6 = v6();
        let now = 1_500_000_000;
        let csv = format!("{KEA6_HEADER}\n2001:db8::1,00:01,4000,2000004000,1,3000,0,1,128,0,0,,,0,,,\nfd77::1:5,00:02,4000,2000004000,1,3000,0,1,128,0,0,,,0,,,\n");
        let f = parse6(csv.as_bytes(), "k.csv").unwrap();
        let mut t = BindingTable6::in_memory(16);
        let mut other = Binding6::new(
            IaKind::Na,
            &[9, 9],
            1,
            "fd77::1:5".parse::<Ipv6Addr>().unwrap().octets(),
            128,
        );
        other.state = BindingState::Active;
        other.expiry = now + 100;
        t.put(None, &other).unwrap();
        let opts = Import6Options {
            now,
            ..Default::default()
        };
        let p = apply6(&mut t, &v6, "k.csv", &f, &opts).unwrap_err();
        assert_eq!(p.len(), 2, "{p:?}");
        assert!(p[0].starts_with("k.csv:2: 2001:db8::1 is outside"), "{p:?}");
        assert!(
            p[1].starts_with("k.csv:3: fd77::1:5 has a live binding"),
            "{p:?}"
        );
        assert_eq!(
            t.get(0).unwrap().duid.as_slice(),
            &[9, 9],
            "nothing written"
        );
        let opts = Import6Options {
            now,
            skip_outside: true,
            force: true,
            ..Default::default()
        };
        let s = apply6(&mut t, &v6, "k.csv", &f, &opts).unwrap();
        assert_eq!(
            (s.outside.len(), s.conflicts.len(), s.imported_total()),
            (1, 1, 1)
        );
        assert_eq!(t.get(0).unwrap().duid.as_slice(), &[0, 2]);
    }

    #[test]
    fn kea_lease6_malformed_rows_give_file_line_column_errors() {
        let h = KEA6_HEADER;
        let cases: [(String, &str); 8] = [
            (String::new(), "k.csv:1:1: empty file"),
            (
                "address,duid\n".into(),
                "k.csv:1:1: the header lacks column `valid_lifetime`",
            ),
            (format!("{h},colour\n"), "k.csv:1:"),
            (
                format!("{h}\nfd77::x,00:01,4000,2000004000,1,3000,0,1,128,0,0,,,0,,,\n"),
                "k.csv:2:1: address: expected an IPv6 address",
            ),
            (
                format!("{h}\nfd77::1,00:0g,4000,2000004000,1,3000,0,1,128,0,0,,,0,,,\n"),
                "k.csv:2:9: duid:",
            ),
            (
                format!("{h}\nfd77::1,00:01,4000,2000004000,1,3000,0,1,64,0,0,,,0,,,\n"),
                "k.csv:2:42: prefix_len: an IA_NA address has 128",
            ),
            (
                format!("{h}\nfd77::1,00:01,4000,2000004000,1,3000,3,1,128,0,0,,,0,,,\n"),
                "k.csv:2:38: lease_type: 3 is larger than 2",
            ),
            (
                format!("{h}\nfd77::1,00:01,4000\n"),
                "k.csv:2:1: expected 17 comma-separated fields",
            ),
        ];
        for (src, want) in cases {
            let e = parse6(src.as_bytes(), "k.csv").unwrap_err().to_string();
            assert!(e.starts_with(want), "{e:?} does not start with {want:?}");
        }
    }
}
