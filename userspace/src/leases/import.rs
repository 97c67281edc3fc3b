//! Applying leases read from another server's file to the lease table.
//!
//! All-or-nothing on refusal: every lease is checked first (inside the
//! configured pools? would it replace a live lease of another client?), and
//! nothing is written when a check fails without its override flag. Then each
//! lease is written with one `LeaseTable::update` (counters, client index and
//! free lists follow) and the table is flushed to stable storage.

use std::collections::BTreeMap;
use std::fmt::Write as _;
use std::net::Ipv4Addr;

use lease_store::{Lease, LeaseState, LeaseTable};

use super::model::SourceLease;
use super::time::iso8601;

/// Flags of `xdhcpd leases import`.
#[derive(Clone, Copy, Debug, Default)]
pub struct ImportOptions {
    /// Skip (and report) addresses outside the configured pools instead of refusing.
    pub skip_outside: bool,
    /// Overwrite live leases of other clients instead of refusing.
    pub force: bool,
    /// Check and count, write nothing.
    pub dry_run: bool,
    /// Unix seconds: decides which table leases are live.
    pub now: u32,
}

/// What an import did (or, refused, would have done).
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct ImportSummary {
    /// Distinct addresses in the source file (after later entries override earlier ones).
    pub addresses: usize,
    /// Records written (or, in a dry run, that would be written), by resulting state.
    pub imported: BTreeMap<&'static str, usize>,
    /// Already exactly so in the table.
    pub unchanged: usize,
    /// Outside the configured pools (skipped with `--skip-outside`): (line, address).
    pub outside: Vec<(usize, Ipv4Addr)>,
    /// Live leases of other clients that were (with `--force`) or would be overwritten.
    pub conflicts: Vec<String>,
    /// Host names read but not stored (the table has no host-name field).
    pub hostnames_dropped: usize,
    /// ISC `atsfp` values read but not stored (no field).
    pub atsfp_dropped: usize,
    pub written: bool,
}

impl ImportSummary {
    /// Total records written.
    pub fn imported_total(&self) -> usize {
        self.imported.values().sum()
    }

    /// Human-readable report, one fact per line.
    pub fn report(&self, source: &str) -> String {
        let mut s = String::new();
        let verb = if self.written {
            "imported"
        } else {
            "would import"
        };
        let _ = writeln!(
            s,
            "{source}: {} address(es); {verb} {}, unchanged {}, skipped {} (outside the configured pools)",
            self.addresses,
            self.imported_total(),
            self.unchanged,
            self.outside.len()
        );
        if !self.imported.is_empty() {
            let by: Vec<String> = self
                .imported
                .iter()
                .map(|(k, v)| format!("{k} {v}"))
                .collect();
            let _ = writeln!(s, "  {verb} by state: {}", by.join(", "));
        }
        for (line, a) in self.outside.iter().take(20) {
            let _ = writeln!(
                s,
                "  skipped {source}:{line}: {a} is outside the configured pools"
            );
        }
        if self.outside.len() > 20 {
            let _ = writeln!(
                s,
                "  ... and {} more outside the pools",
                self.outside.len() - 20
            );
        }
        for c in self.conflicts.iter().take(20) {
            let _ = writeln!(s, "  overwrote (--force) {c}");
        }
        if self.conflicts.len() > 20 {
            let _ = writeln!(
                s,
                "  ... and {} more overwritten",
                self.conflicts.len() - 20
            );
        }
        if self.hostnames_dropped > 0 {
            let _ = writeln!(
                s,
                "  note: {} host name(s) cut to fit the lease's variable data (over 255 bytes)",
                self.hostnames_dropped
            );
        }
        if self.atsfp_dropped > 0 {
            let _ = writeln!(
                s,
                "  note: {} atsfp value(s) not kept (tstp and tsfp are kept)",
                self.atsfp_dropped
            );
        }
        s
    }
}

/// Why an import was refused (nothing was written).
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct ImportRefused {
    /// One line per problem, each naming `file:line`.
    pub problems: Vec<String>,
    pub summary: Box<ImportSummary>,
}

impl std::fmt::Display for ImportRefused {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        writeln!(
            f,
            "import refused, nothing written ({} problem(s)):",
            self.problems.len()
        )?;
        for p in self.problems.iter().take(50) {
            writeln!(f, "  {p}")?;
        }
        if self.problems.len() > 50 {
            writeln!(f, "  ... and {} more", self.problems.len() - 50)?;
        }
        Ok(())
    }
}

/// Live: would be served to its client right now.
fn is_live(l: &Lease, now: u32) -> bool {
    match l.state {
        LeaseState::Active | LeaseState::Offered => l.expiry > now,
        LeaseState::Reserved => true,
        _ => false,
    }
}

/// The record without the fields that only the table and the server manage
/// (shard, flags, the variable data: compared apart).
fn same_binding(a: &Lease, b: &Lease) -> bool {
    let strip = |l: &Lease| Lease {
        shard: 0,
        flags: 0,
        var: lease_store::VarRef::EMPTY,
        ..*l
    };
    strip(a) == strip(b)
}

fn describe(l: &Lease) -> String {
    let until = match l.expiry {
        u32::MAX => "never expires".to_string(),
        e => format!("until {}", iso8601(u64::from(e))),
    };
    format!("{} {} {until}", l.state, l.client)
}

/// Checks and (unless refused or a dry run) writes `leases` into `table`.
/// `source` names the input file in messages.
pub fn apply<'a>(
    table: &LeaseTable,
    source: &str,
    leases: impl IntoIterator<Item = &'a SourceLease> + Clone,
    opts: &ImportOptions,
) -> Result<ImportSummary, ImportRefused> {
    let mut sum = ImportSummary::default();
    let mut problems = Vec::new();
    // Pass 1: checks only.
    for s in leases.clone() {
        sum.addresses += 1;
        let Some(slot) = table.slot_of(s.addr) else {
            sum.outside.push((s.line, s.addr));
            if !opts.skip_outside {
                problems.push(format!(
                    "{source}:{}: address {} is outside the configured pools (use --skip-outside to skip such leases)",
                    s.line, s.addr
                ));
            }
            continue;
        };
        let old = table.read(slot);
        let new = s.to_lease();
        if is_live(&old, opts.now) && old.client != new.client {
            let msg = format!(
                "{source}:{}: address {} has a live lease in the table ({}); the import gives it to {} ({})",
                s.line,
                s.addr,
                describe(&old),
                new.client,
                new.state
            );
            if opts.force {
                sum.conflicts.push(msg);
            } else {
                problems.push(format!("{msg}; use --force to overwrite"));
            }
        }
    }
    if !problems.is_empty() {
        return Err(ImportRefused {
            problems,
            summary: Box::new(sum),
        });
    }
    // Pass 2: write.
    for s in leases {
        let Some(slot) = table.slot_of(s.addr) else {
            continue;
        };
        let new = s.to_lease();
        let host = s.host_name();
        sum.hostnames_dropped += usize::from(host.len() > 255);
        sum.atsfp_dropped += usize::from(s.atsfp != 0);
        let (old, old_var) = table.read_with_var(slot);
        if same_binding(&old, &new) && (host.is_empty() || old_var.host_name() == host) {
            sum.unchanged += 1;
            continue;
        }
        *sum.imported.entry(new.state.as_str()).or_default() += 1;
        if !opts.dry_run {
            table.update_full(slot, |l, v| {
                let old = *l;
                *l = new;
                l.shard = old.shard;
                l.flags = old.flags & !lease_store::FLAG_QUARANTINED;
                // What the file does not carry stays: option 82, vendor class (and the host
                // name when the file has none); a freed state keeps none.
                let nv = if matches!(new.state, LeaseState::Free | LeaseState::Backup) {
                    lease_store::VarData::EMPTY
                } else {
                    lease_store::VarData::from_parts(
                        v.relay_agent_info(),
                        if host.is_empty() { v.host_name() } else { host },
                        v.vendor_class(),
                    )
                };
                *v = nv;
            });
        }
    }
    sum.written = !opts.dry_run;
    Ok(sum)
}
