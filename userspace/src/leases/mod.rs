//! `xdhcpd leases ...`: inspect and migrate the lease table.
//!
//! - `dump`: every used record (or `--all`) as JSON Lines or CSV, streamed.
//! - `stats`: per-pool counts from the table's maintained counters
//!   (`--recount` reads every record and compares).
//! - `lookup`: the record(s) of an address, MAC or client identifier.
//! - `import`: leases from ISC dhcpd's `dhcpd.leases` or Kea's memfile CSV; Kea's
//!   lease6 CSV into the v6 binding file (`kea6.rs`).
//! - `export`: Kea 2.2 memfile CSV.
//!
//! Every subcommand takes the daemon's configuration (`-c`): its pools give
//! the table's geometry, and `server.lease-file` its path (`--lease-file`
//! overrides it).
//!
//! Access: `LeaseTable::open` takes the file's exclusive lock and may write
//! (repairs, and a rebuild when the pools changed). When a running xdhcpd holds
//! the lock, the reading tools (`dump`, `stats`, `lookup`) open the file with
//! `lease_store::ReadOnlyTable` instead: no lock, nothing written, each record
//! read consistently under its sequence lock while the daemon serves (`stats`
//! then counts the records; `--recount` needs the lock). `import` and `export`
//! still need the lock and name the daemon's pid. The reading tools check the
//! file's pool table against the configuration first and refuse instead of
//! letting `open` rewrite the file for a different configuration.

mod import;
mod isc;
mod kea;
mod kea6;
mod model;
mod record;
pub(crate) mod time;
mod v6;

use std::fs::{self, File};
use std::io::{self, BufWriter, Read, Write};
use std::net::Ipv4Addr;
use std::os::unix::fs::MetadataExt;
use std::path::{Path, PathBuf};
use std::process::ExitCode;
use std::time::Instant;

use anyhow::{anyhow, bail, Context, Result};
use lease_store::{
    unix_now, ClientKey, FileHeader, Lease, LeaseState, LeaseTable, OpenOptions, PoolSpec,
    PoolStats, ReadOnlyTable, StoreError, VarData,
};
use serde::Serialize;

use xdhcpd_config::Config;

pub use import::{apply as import_leases, ImportOptions, ImportRefused, ImportSummary};
pub use isc::{parse as parse_isc, IscFile};
pub use kea::{parse as parse_kea, write_csv as write_kea_csv, ExportSummary, KeaFile, KEA_HEADER};
pub use model::{ParseError, SourceLease};
pub use record::{lease_json, write_record, Format, CSV_HEADER};
pub use time::iso8601;

/// Where the table is and what it must look like.
#[derive(clap::Args, Clone, Debug)]
pub struct TableArgs {
    /// Configuration file (TOML): its pools describe the lease table.
    #[arg(short, long)]
    pub config: PathBuf,
    /// Lease file (default: `server.lease-file` of the configuration).
    #[arg(long)]
    pub lease_file: Option<PathBuf>,
}

#[derive(Clone, Copy, Debug, PartialEq, Eq, clap::ValueEnum)]
pub enum ImportFormat {
    /// ISC dhcpd `dhcpd.leases`.
    Isc,
    /// Kea memfile CSV (DHCPv4).
    Kea,
    /// Kea memfile CSV for DHCPv6 (kea-leases6.csv): into the v6 binding file.
    #[value(name = "kea-lease6")]
    KeaLease6,
}

#[derive(Clone, Copy, Debug, PartialEq, Eq, clap::ValueEnum)]
pub enum ExportFormat {
    /// Kea 2.2 memfile CSV (DHCPv4).
    Kea,
}

/// `xdhcpd leases ...`
#[derive(clap::Subcommand, Clone, Debug)]
pub enum LeasesCmd {
    /// Print every used record (state other than free), or all with --all.
    Dump {
        #[command(flatten)]
        table: TableArgs,
        /// json: one object per line (JSON Lines); csv: with a header line.
        #[arg(long, value_enum, default_value_t = Format::Json)]
        format: Format,
        /// Only these states (comma separated: free,offered,active,expired,released,
        /// declined,abandoned,backup,reserved).
        #[arg(long, value_delimiter = ',')]
        state: Vec<String>,
        /// Every record, free ones included.
        #[arg(long, conflicts_with = "state")]
        all: bool,
        /// Write to this file instead of standard output.
        #[arg(long)]
        out: Option<PathBuf>,
    },
    /// Per-pool counts by state and utilisation.
    Stats {
        #[command(flatten)]
        table: TableArgs,
        /// Print JSON.
        #[arg(long)]
        json: bool,
        /// Also count by reading every record and compare with the counters
        /// (exit status 1 on a difference).
        #[arg(long)]
        recount: bool,
    },
    /// Print the record(s) of an address, a MAC address or a client identifier.
    #[command(group(clap::ArgGroup::new("key").required(true).args(["ip", "mac", "client_id"])))]
    Lookup {
        #[command(flatten)]
        table: TableArgs,
        #[arg(long)]
        ip: Option<Ipv4Addr>,
        /// Hardware address, colon separated (records whose chaddr or key matches).
        #[arg(long)]
        mac: Option<String>,
        /// Option 61 value in hex, type byte first (`01:aa:bb:..` or `01aabb..`).
        #[arg(long)]
        client_id: Option<String>,
        #[arg(long, value_enum, default_value_t = Format::Json)]
        format: Format,
    },
    /// Import leases from ISC dhcpd or Kea.
    Import {
        #[command(flatten)]
        table: TableArgs,
        /// Format of FILE (`kea-lease6`: into the v6 binding file, `[dhcpv6] lease-file`
        /// or --lease-file).
        #[arg(long, value_enum, alias = "format")]
        from: ImportFormat,
        /// The lease file to read.
        file: PathBuf,
        /// Skip leases outside the configured pools (default: refuse).
        #[arg(long)]
        skip_outside: bool,
        /// Overwrite live leases of other clients (default: refuse).
        #[arg(long)]
        force: bool,
        /// Check and report, write nothing.
        #[arg(long)]
        dry_run: bool,
    },
    /// Print the DHCPv6 bindings (addresses and prefixes) as JSON Lines.
    Dump6 {
        /// Configuration file (its `[dhcpv6] lease-file` names the v6 binding file).
        #[arg(short, long)]
        config: PathBuf,
        /// The v6 binding file (default: from the configuration).
        #[arg(long)]
        file: Option<PathBuf>,
    },
    /// Export the table for another server.
    Export {
        #[command(flatten)]
        table: TableArgs,
        /// Output format.
        #[arg(long, value_enum)]
        to: ExportFormat,
        /// File to write (`-` for standard output).
        file: PathBuf,
    },
}

/// Runs a `leases` subcommand, printing errors; the process exit code:
/// 0 done, 1 failed (or `--recount` found a difference), 2 refused or bad input.
pub fn main_leases(cmd: LeasesCmd) -> ExitCode {
    let stdout = io::stdout();
    let mut out = stdout.lock();
    match run(cmd, &mut out) {
        Ok(code) => ExitCode::from(code),
        Err(e) => {
            let _ = out.flush();
            eprintln!("xdhcpd leases: {e:#}");
            match e.downcast_ref::<Refused>() {
                Some(_) => ExitCode::from(2),
                None => ExitCode::FAILURE,
            }
        }
    }
}

/// An error caused by the input (bad file, refused import): exit status 2.
#[derive(Debug)]
struct Refused(String);

impl std::fmt::Display for Refused {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(self.0.trim_end())
    }
}

impl std::error::Error for Refused {}

/// Runs a subcommand writing its normal output to `out` (messages go to
/// stderr). Returns the exit status.
pub fn run(cmd: LeasesCmd, out: &mut dyn Write) -> Result<u8> {
    match cmd {
        LeasesCmd::Dump {
            table,
            format,
            state,
            all,
            out: path,
        } => {
            let filter = if all {
                [true; LeaseState::COUNT]
            } else if state.is_empty() {
                let mut f = [true; LeaseState::COUNT];
                f[LeaseState::Free as usize] = false;
                f
            } else {
                record::parse_states(&state).map_err(|e| anyhow!(Refused(e)))?
            };
            let (_cfg, t) = open_reading(&table)?;
            let n = match path {
                Some(p) => {
                    let f =
                        create_private(&p).with_context(|| format!("creating {}", p.display()))?;
                    let mut w = BufWriter::with_capacity(1 << 20, f);
                    let n = t.dump(format, &filter, &mut w)?;
                    w.into_inner()
                        .map_err(|e| e.into_error())
                        .and_then(|f| f.sync_all())
                        .with_context(|| format!("writing {}", p.display()))?;
                    n
                }
                None => {
                    let mut w = BufWriter::with_capacity(1 << 20, out);
                    let n = t.dump(format, &filter, &mut w)?;
                    w.flush()?;
                    n
                }
            };
            eprintln!("{n} record(s)");
            Ok(0)
        }
        LeasesCmd::Dump6 { config, file } => {
            let n = v6::dump6(&config, file, out)?;
            eprintln!("{n} binding(s)");
            Ok(0)
        }
        LeasesCmd::Stats {
            table,
            json,
            recount,
        } => {
            let started = Instant::now();
            let (_cfg, t) = open_reading(&table)?;
            let t = match t {
                Reading::Locked(t) => *t,
                Reading::Beside(ro) => {
                    if recount {
                        bail!(Refused(format!(
                            "--recount compares the daemon's counters with the records and \
                             needs the lease file's lock: {}",
                            in_use_message(ro.path())
                        )));
                    }
                    let stats = ro.count();
                    write_stats(&stats, ro.pools(), json, out)?;
                    eprintln!(
                        "({} records counted beside the running daemon, {:?})",
                        ro.len(),
                        started.elapsed()
                    );
                    return Ok(0);
                }
            };
            let stats = t.all_stats();
            let mut code = 0;
            let mut diffs = Vec::new();
            if recount {
                for s in &stats {
                    let c = t
                        .recount(s.id)
                        .ok_or_else(|| anyhow!("pool {} vanished", s.id))?;
                    if c != *s {
                        diffs.push(format!("pool {}: counters {s:?}, records {c:?}", s.id));
                    }
                }
            }
            write_stats(&stats, t.pools(), json, out)?;
            if recount {
                if diffs.is_empty() {
                    eprintln!("recount: every pool's counters match its records");
                } else {
                    for d in &diffs {
                        eprintln!("recount MISMATCH {d}");
                    }
                    code = 1;
                }
            }
            eprintln!("({} records, {:?})", t.len(), started.elapsed());
            Ok(code)
        }
        LeasesCmd::Lookup {
            table,
            ip,
            mac,
            client_id,
            format,
        } => {
            let (_cfg, t) = open_reading(&table)?;
            let found = match &t {
                Reading::Locked(t) => lookup(&**t, ip, mac.as_deref(), client_id.as_deref())?,
                Reading::Beside(t) => lookup(t, ip, mac.as_deref(), client_id.as_deref())?,
            };
            record::write_header(format, out)?;
            for (pool, l) in &found {
                let v = match &t {
                    Reading::Locked(t) => t.var(l),
                    Reading::Beside(t) => t.var(l),
                };
                write_record(format, *pool, l, &v, out)?;
            }
            out.flush()?;
            if found.is_empty() {
                eprintln!("no record found");
                return Ok(1);
            }
            Ok(0)
        }
        LeasesCmd::Import {
            table,
            from,
            file,
            skip_outside,
            force,
            dry_run,
        } => {
            let name = file.display().to_string();
            let mut src = Vec::new();
            File::open(&file)
                .and_then(|mut f| f.read_to_end(&mut src))
                .with_context(|| format!("reading {name}"))?;
            if from == ImportFormat::KeaLease6 {
                let cfg = xdhcpd_config::load(&table.config)
                    .map_err(|e| anyhow!(Refused(e.to_string())))?;
                if cfg.v6.subnets.is_empty() {
                    return Err(anyhow!(Refused(format!(
                        "{}: no [[subnet6]]: nowhere to import DHCPv6 leases",
                        table.config.display()
                    ))));
                }
                let path = table
                    .lease_file
                    .clone()
                    .unwrap_or_else(|| cfg.v6.lease_file.clone());
                let opts = kea6::Import6Options {
                    skip_outside,
                    force,
                    dry_run,
                    now: unix_now(),
                };
                return match kea6::import_file(&cfg.v6, &path, &src, &name, &opts)? {
                    Ok(report) => {
                        write!(out, "{report}")?;
                        Ok(0)
                    }
                    Err(refused) => Err(anyhow!(Refused(refused))),
                };
            }
            let parsed: Vec<SourceLease> = match from {
                ImportFormat::Isc => parse_isc(&src, &name)
                    .map_err(|e| anyhow!(Refused(e.to_string())))?
                    .leases
                    .into_values()
                    .collect(),
                ImportFormat::Kea => parse_kea(&src, &name)
                    .map_err(|e| anyhow!(Refused(e.to_string())))?
                    .leases
                    .into_values()
                    .collect(),
                ImportFormat::KeaLease6 => Vec::new(),
            };
            drop(src);
            // A dry run writes nothing: it works on a private copy of the lease file (or a
            // new table, when there is none), so neither creating the file nor rebuilding it
            // for changed pools touches the real one.
            let scratch = dry_run.then(DryRunCopy::new);
            let (_cfg, t) = match &scratch {
                Some(c) => {
                    let cfg = xdhcpd_config::load(&table.config)
                        .map_err(|e| anyhow!(Refused(e.to_string())))?;
                    let real = table
                        .lease_file
                        .clone()
                        .unwrap_or_else(|| cfg.server.lease_file.clone());
                    c.fill_from(&real)?;
                    let t = open_table(&c.path, &pool_specs(&cfg), Access::Write)?;
                    (cfg, t)
                }
                None => open(&table, Access::Write)?,
            };
            let opts = ImportOptions {
                skip_outside,
                force,
                dry_run,
                now: unix_now(),
            };
            match import_leases(&t, &name, &parsed, &opts) {
                Ok(sum) => {
                    if sum.written {
                        t.flush()
                            .with_context(|| format!("flushing {}", t.path().display()))?;
                    }
                    write!(out, "{}", sum.report(&name))?;
                    Ok(0)
                }
                Err(r) => Err(anyhow!(Refused(r.to_string()))),
            }
        }
        LeasesCmd::Export { table, to, file } => {
            let ExportFormat::Kea = to;
            let (cfg, t) = open(&table, Access::Read)?;
            let subnet_id = |a: Ipv4Addr| {
                cfg.subnet_for(a)
                    .filter(|s| s.net.contains(a))
                    .map(|s| s.index as u32 + 1)
            };
            let sum = if file.as_os_str() == "-" {
                let mut w = BufWriter::with_capacity(1 << 20, out);
                write_kea_csv(&t, subnet_id, &mut w)?
            } else {
                // Write next to the target and rename, so a reader never sees half a file.
                let mut tmp = file.as_os_str().to_owned();
                tmp.push(".tmp");
                let tmp = PathBuf::from(tmp);
                let f =
                    create_private(&tmp).with_context(|| format!("creating {}", tmp.display()))?;
                let mut w = BufWriter::with_capacity(1 << 20, f);
                let sum = write_kea_csv(&t, subnet_id, &mut w)
                    .with_context(|| format!("writing {}", tmp.display()))?;
                w.into_inner()
                    .map_err(|e| e.into_error())
                    .and_then(|f| f.sync_all())
                    .with_context(|| format!("writing {}", tmp.display()))?;
                fs::rename(&tmp, &file)
                    .with_context(|| format!("renaming to {}", file.display()))?;
                sum
            };
            eprintln!(
                "{}: wrote {} lease(s) (active {}, declined {}, expired-reclaimed {}); left out: {} offered/free/backup record(s), {} without hardware address, {} outside every subnet; {} client-id(s) too long to export",
                file.display(),
                sum.written,
                sum.active,
                sum.declined,
                sum.expired,
                sum.not_leases,
                sum.skipped_no_hw,
                sum.skipped_no_subnet,
                sum.client_id_dropped
            );
            Ok(0)
        }
    }
}

/// A private scratch copy of a lease file for `leases import --dry-run`; removed on drop.
struct DryRunCopy {
    path: PathBuf,
}

impl DryRunCopy {
    fn new() -> Self {
        let path = std::env::temp_dir().join(format!(
            "xdhcpd-dry-run-{}-{}.db",
            std::process::id(),
            unix_now()
        ));
        DryRunCopy { path }
    }

    /// Copies `real` (if it exists) to the scratch path, private to the owner.
    fn fill_from(&self, real: &Path) -> Result<()> {
        match fs::metadata(real) {
            Ok(_) => {
                let mut from =
                    File::open(real).with_context(|| format!("reading {}", real.display()))?;
                let mut to = create_private(&self.path)
                    .with_context(|| format!("creating {}", self.path.display()))?;
                io::copy(&mut from, &mut to)
                    .with_context(|| format!("copying {} for the dry run", real.display()))?;
                // The side area (option 82, host names, vendor classes) goes with it.
                let side = lease_store::ext_path(real);
                if side.exists() {
                    let mut from =
                        File::open(&side).with_context(|| format!("reading {}", side.display()))?;
                    let scratch = lease_store::ext_path(&self.path);
                    let mut to = create_private(&scratch)
                        .with_context(|| format!("creating {}", scratch.display()))?;
                    io::copy(&mut from, &mut to)
                        .with_context(|| format!("copying {} for the dry run", side.display()))?;
                }
                Ok(())
            }
            Err(e) if e.kind() == io::ErrorKind::NotFound => Ok(()),
            Err(e) => Err(e).with_context(|| format!("lease file {}", real.display())),
        }
    }
}

impl Drop for DryRunCopy {
    fn drop(&mut self) {
        let _ = fs::remove_file(&self.path);
        let _ = fs::remove_file(lease_store::ext_path(&self.path));
    }
}

/// How the table is opened.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Access {
    /// Inspection: the file must exist and have been written for the configured pools.
    Read,
    /// Import: a missing file is created; a change of pools rebuilds it (as the daemon would).
    Write,
}

/// The pools of the configuration as lease-store wants them.
pub fn pool_specs(cfg: &Config) -> Vec<PoolSpec> {
    cfg.pool_specs()
        .into_iter()
        .map(|(id, first, last)| PoolSpec { id, first, last })
        .collect()
}

/// Loads the configuration and opens its lease table.
pub fn open(args: &TableArgs, access: Access) -> Result<(Config, LeaseTable)> {
    let cfg = xdhcpd_config::load(&args.config).map_err(|e| anyhow!(Refused(e.to_string())))?;
    let path = args
        .lease_file
        .clone()
        .unwrap_or_else(|| cfg.server.lease_file.clone());
    let t = open_table(&path, &pool_specs(&cfg), access)?;
    Ok((cfg, t))
}

/// Opens the table at `path` for `pools`, with the tools' checks (see the module doc).
pub fn open_table(path: &Path, pools: &[PoolSpec], access: Access) -> Result<LeaseTable> {
    if access == Access::Read {
        match fs::metadata(path) {
            Err(e) if e.kind() == io::ErrorKind::NotFound => {
                bail!(Refused(format!(
                    "lease file {} does not exist",
                    path.display()
                )))
            }
            Err(e) => return Err(e).with_context(|| format!("lease file {}", path.display())),
            Ok(_) => {}
        }
        let file_pools = match FileHeader::read(path) {
            Ok(header) => Some(header.pools),
            // Not a readable lease file: `LeaseTable::open` below reports the
            // same problem in the same words.
            Err(StoreError::Format { .. }) => None,
            Err(e) => return Err(anyhow!(e)),
        };
        if let Some(file_pools) = file_pools {
            let mut want = pools.to_vec();
            want.sort_by_key(|p| u32::from(p.first));
            let mut have = file_pools;
            have.sort_by_key(|p| u32::from(p.first));
            if want != have {
                bail!(Refused(format!(
                    "lease file {} was written for other pools than the configuration's \
                     (file: {}; configuration: {}); opening it would rewrite it for the new pools, \
                     which only the daemon or `leases import` do",
                    path.display(),
                    list_pools(&have),
                    list_pools(&want)
                )));
            }
        }
    }
    let opts = OpenOptions {
        create: access == Access::Write,
        ..OpenOptions::default()
    };
    match LeaseTable::open(path, pools, &opts) {
        Ok((t, report)) => {
            for (a, why) in &report.quarantined {
                eprintln!("warning: record of {a} is corrupt and quarantined: {why}");
            }
            if let Some(r) = &report.rebuilt {
                eprintln!("note: {}: {r}", path.display());
            }
            if report.created {
                eprintln!("note: created {}", path.display());
            }
            Ok(t)
        }
        Err(StoreError::Locked { path }) => Err(anyhow!(in_use_message(&path))),
        Err(e) => Err(anyhow!(e)),
    }
}

/// A table opened for reading: with its lock, or beside the daemon that holds it.
pub enum Reading {
    Locked(Box<LeaseTable>),
    Beside(ReadOnlyTable),
}

impl Reading {
    /// Streams the records whose state is in `filter`; returns how many.
    pub fn dump(
        &self,
        format: Format,
        filter: &[bool; LeaseState::COUNT],
        out: &mut dyn Write,
    ) -> io::Result<u64> {
        match self {
            Reading::Locked(t) => dump(t, format, filter, out),
            Reading::Beside(t) => dump_records(t, format, filter, out),
        }
    }
}

/// [`open`] for the reading tools: when a running daemon holds the file, a read-only view
/// beside it (said on stderr).
pub fn open_reading(args: &TableArgs) -> Result<(Config, Reading)> {
    let cfg = xdhcpd_config::load(&args.config).map_err(|e| anyhow!(Refused(e.to_string())))?;
    let path = args
        .lease_file
        .clone()
        .unwrap_or_else(|| cfg.server.lease_file.clone());
    match open_table(&path, &pool_specs(&cfg), Access::Read) {
        Ok(t) => Ok((cfg, Reading::Locked(Box::new(t)))),
        Err(e) if e.to_string().contains(" is in use by ") => {
            let ro = ReadOnlyTable::open(&path).map_err(|e| anyhow!(e))?;
            eprintln!(
                "note: {} is held by a running daemon: reading it without the lock (read-only; \
                 each record consistent, the daemon keeps serving meanwhile)",
                path.display()
            );
            Ok((cfg, Reading::Beside(ro)))
        }
        Err(e) => Err(e),
    }
}

/// What `lookup` needs of a table.
pub trait Records {
    /// The record of an address in a pool, with its pool id.
    fn at(&self, ip: Ipv4Addr) -> Option<(u32, Lease)>;
    /// Every record with its pool id.
    fn records(&self) -> Box<dyn Iterator<Item = (u32, Lease)> + '_>;
    /// The record bound to a client.
    fn bound(&self, key: &ClientKey) -> Option<(u32, Lease)>;
    /// Every record with its pool id and variable data (option 82, host name, vendor class).
    fn records_with_var(&self) -> Box<dyn Iterator<Item = (u32, Lease, VarData)> + '_>;
    /// The variable data of `l` (a copy this table gave out): read again with the record,
    /// none when its data changed since.
    fn var(&self, l: &Lease) -> VarData;
}

impl Records for LeaseTable {
    fn at(&self, ip: Ipv4Addr) -> Option<(u32, Lease)> {
        self.slot_of(ip)
            .map(|s| (self.pool_of_slot(s), self.read(s)))
    }
    fn records(&self) -> Box<dyn Iterator<Item = (u32, Lease)> + '_> {
        Box::new(self.iter().map(|(s, l)| (self.pool_of_slot(s), l)))
    }
    fn bound(&self, key: &ClientKey) -> Option<(u32, Lease)> {
        self.find_client(key)
            .map(|(s, l)| (self.pool_of_slot(s), l))
    }
    fn records_with_var(&self) -> Box<dyn Iterator<Item = (u32, Lease, VarData)> + '_> {
        Box::new(
            self.iter_with_var()
                .map(|(s, l, v)| (self.pool_of_slot(s), l, v)),
        )
    }
    fn var(&self, l: &Lease) -> VarData {
        var_of_live(self, l)
    }
}

/// The variable data of `l`, a copy `t` gave out: read again with the record (the same
/// handle names the same data); none when the record's data changed since.
pub fn var_of_live(t: &LeaseTable, l: &Lease) -> VarData {
    if !l.var.is_side() {
        return l.var.inline_data();
    }
    match t.slot_of(l.addr).map(|s| t.read_with_var(s)) {
        Some((now, v)) if now.var == l.var => v,
        _ => VarData::EMPTY,
    }
}

impl Records for ReadOnlyTable {
    fn at(&self, ip: Ipv4Addr) -> Option<(u32, Lease)> {
        self.index_of(ip).map(|i| (self.pool_of(i), self.read(i)))
    }
    fn records(&self) -> Box<dyn Iterator<Item = (u32, Lease)> + '_> {
        Box::new(self.iter())
    }
    fn bound(&self, key: &ClientKey) -> Option<(u32, Lease)> {
        self.find_client(key)
    }
    fn records_with_var(&self) -> Box<dyn Iterator<Item = (u32, Lease, VarData)> + '_> {
        Box::new(self.iter_with_var())
    }
    fn var(&self, l: &Lease) -> VarData {
        if !l.var.is_side() {
            return l.var.inline_data();
        }
        match self.index_of(l.addr).map(|i| self.read_with_var(i)) {
            Some((now, v)) if now.var == l.var => v,
            _ => VarData::EMPTY,
        }
    }
}

fn list_pools(p: &[PoolSpec]) -> String {
    p.iter()
        .map(|p| format!("#{} {}-{}", p.id, p.first, p.last))
        .collect::<Vec<_>>()
        .join(", ")
}

/// "lease file X is in use by a running xdhcpd (pid N)", found via /proc/locks.
fn in_use_message(path: &Path) -> String {
    let who = lock_holder(path).map(|(pid, comm)| {
        if comm == "xdhcpd" {
            format!("a running xdhcpd (pid {pid})")
        } else {
            format!("process {pid} ({comm}), probably an xdhcpd")
        }
    });
    format!(
        "lease file {} is in use by {}; this tool needs the file's exclusive lock (dump, \
         stats and lookup read beside the daemon): stop the daemon first",
        path.display(),
        who.unwrap_or_else(|| "a running xdhcpd (pid unknown)".into())
    )
}

/// The pid (and command name) holding a flock on `path`, from /proc/locks.
fn lock_holder(path: &Path) -> Option<(u32, String)> {
    let md = fs::metadata(path).ok()?;
    let (maj, min) = (libc::major(md.dev()), libc::minor(md.dev()));
    let locks = fs::read_to_string("/proc/locks").ok()?;
    for line in locks.lines() {
        // "1: FLOCK  ADVISORY  WRITE 1234 fd:01:5678 0 EOF" (waiters have "->" after the id).
        let f: Vec<&str> = line.split_whitespace().collect();
        if f.get(1) != Some(&"FLOCK") || f.len() < 6 {
            continue;
        }
        let mut id = f[5].split(':');
        let (Some(a), Some(b), Some(ino)) = (id.next(), id.next(), id.next()) else {
            continue;
        };
        let same = u32::from_str_radix(a, 16).ok() == Some(maj)
            && u32::from_str_radix(b, 16).ok() == Some(min)
            && ino.parse::<u64>().ok() == Some(md.ino());
        if same {
            let pid: u32 = f[4].parse().ok()?;
            let comm = fs::read_to_string(format!("/proc/{pid}/comm"))
                .map(|s| s.trim().to_string())
                .unwrap_or_else(|_| "?".into());
            return Some((pid, comm));
        }
    }
    None
}

/// Streams the records whose state is in `filter`; returns how many.
pub fn dump(
    t: &LeaseTable,
    format: Format,
    filter: &[bool; LeaseState::COUNT],
    out: &mut dyn Write,
) -> io::Result<u64> {
    dump_records(t, format, filter, out)
}

fn dump_records(
    t: &dyn Records,
    format: Format,
    filter: &[bool; LeaseState::COUNT],
    out: &mut dyn Write,
) -> io::Result<u64> {
    record::write_header(format, out)?;
    let mut n = 0;
    for (pool, l, v) in t.records_with_var() {
        if filter[l.state as usize] {
            write_record(format, pool, &l, &v, out)?;
            n += 1;
        }
    }
    out.flush()?;
    Ok(n)
}

fn parse_hex_arg(s: &str, what: &str) -> Result<Vec<u8>> {
    let s = s.trim();
    let r = if s.contains(':') || s.contains('-') {
        model::parse_colon_hex(&s.replace('-', ":"))
    } else if s.len().is_multiple_of(2) && !s.is_empty() {
        (0..s.len())
            .step_by(2)
            .map(|i| {
                s.get(i..i + 2)
                    .and_then(|h| u8::from_str_radix(h, 16).ok())
                    .ok_or_else(|| format!("`{s}` is not hex"))
            })
            .collect()
    } else {
        Err(format!("`{s}` is not hex octets"))
    };
    r.map_err(|e| anyhow!(Refused(format!("--{what}: {e}"))))
}

/// The records matching an address, a MAC (chaddr or hardware key), or a
/// client identifier, with their pool ids.
pub fn lookup(
    t: &dyn Records,
    ip: Option<Ipv4Addr>,
    mac: Option<&str>,
    client_id: Option<&str>,
) -> Result<Vec<(u32, lease_store::Lease)>> {
    let mut found = Vec::new();
    if let Some(ip) = ip {
        match t.at(ip) {
            Some(r) => found.push(r),
            None => bail!(Refused(format!("{ip} is in no configured pool"))),
        }
    }
    if let Some(m) = mac {
        let hw = parse_hex_arg(m, "mac")?;
        if hw.is_empty() || hw.len() > 16 {
            bail!(Refused(format!("--mac: {} octets (1 to 16)", hw.len())));
        }
        // A scan: a client may be keyed by its client-id while its chaddr is this MAC,
        // and every record with the MAC is wanted (also non-binding states).
        let key = ClientKey::from_hw(1, &hw);
        found.extend(
            t.records()
                .filter(|(_, l)| l.hw() == hw.as_slice() || l.client == key),
        );
    }
    if let Some(c) = client_id {
        let id = parse_hex_arg(c, "client-id")?;
        let key = ClientKey::from_client_id(&id);
        match t.bound(&key) {
            Some(r) => found.push(r),
            // Not bound: look through the records in other states too.
            None => found.extend(t.records().filter(|(_, l)| l.client == key)),
        }
    }
    Ok(found)
}

#[derive(Serialize)]
struct StatsRow {
    pool: Option<u32>,
    first: Option<String>,
    last: Option<String>,
    total: u64,
    free: u64,
    offered: u64,
    active: u64,
    expired: u64,
    released: u64,
    declined: u64,
    abandoned: u64,
    backup: u64,
    reserved: u64,
    quarantined: u64,
    /// (offered + active + reserved) / total, percent.
    utilisation: f64,
}

fn row(s: &PoolStats, pool: Option<&PoolSpec>) -> StatsRow {
    let used = s.offered + s.active + s.reserved;
    StatsRow {
        pool: pool.map(|p| p.id),
        first: pool.map(|p| p.first.to_string()),
        last: pool.map(|p| p.last.to_string()),
        total: s.total,
        free: s.free,
        offered: s.offered,
        active: s.active,
        expired: s.expired,
        released: s.released,
        declined: s.declined,
        abandoned: s.abandoned,
        backup: s.backup,
        reserved: s.reserved,
        quarantined: s.quarantined,
        utilisation: if s.total == 0 {
            0.0
        } else {
            (used as f64 * 10_000.0 / s.total as f64).round() / 100.0
        },
    }
}

fn sum_stats(stats: &[PoolStats]) -> PoolStats {
    let mut t = PoolStats::default();
    for s in stats {
        t.total += s.total;
        t.free += s.free;
        t.offered += s.offered;
        t.active += s.active;
        t.expired += s.expired;
        t.released += s.released;
        t.declined += s.declined;
        t.abandoned += s.abandoned;
        t.backup += s.backup;
        t.reserved += s.reserved;
        t.quarantined += s.quarantined;
    }
    t
}

/// Prints per-pool stats and a total row (table, or JSON `{pools:[..], total:{..}}`).
/// Pools are identified by the order of `stats` (the table's file order).
pub fn write_stats(
    stats: &[PoolStats],
    pools: &[PoolSpec],
    json: bool,
    out: &mut dyn Write,
) -> io::Result<()> {
    let total = sum_stats(stats);
    if json {
        #[derive(Serialize)]
        struct All {
            pools: Vec<StatsRow>,
            total: StatsRow,
        }
        let all = All {
            pools: stats
                .iter()
                .map(|s| row(s, pools.iter().find(|p| p.id == s.id)))
                .collect(),
            total: row(&total, None),
        };
        serde_json::to_writer_pretty(&mut *out, &all).map_err(io::Error::other)?;
        writeln!(out)?;
    } else {
        writeln!(
            out,
            "{:>6} {:>10} {:>10} {:>8} {:>10} {:>8} {:>9} {:>9} {:>9} {:>8} {:>8} {:>9} {:>7}",
            "pool",
            "total",
            "free",
            "offered",
            "active",
            "expired",
            "released",
            "declined",
            "abandoned",
            "backup",
            "reserved",
            "quarant.",
            "util%"
        )?;
        let line = |out: &mut dyn Write, name: String, s: &PoolStats| {
            let r = row(s, None);
            writeln!(
                out,
                "{:>6} {:>10} {:>10} {:>8} {:>10} {:>8} {:>9} {:>9} {:>9} {:>8} {:>8} {:>9} {:>7.2}",
                name, r.total, r.free, r.offered, r.active, r.expired, r.released, r.declined,
                r.abandoned, r.backup, r.reserved, r.quarantined, r.utilisation
            )
        };
        for s in stats {
            line(out, s.id.to_string(), s)?;
        }
        if stats.len() > 1 {
            line(out, "total".into(), &total)?;
        }
    }
    out.flush()
}

/// Creates (or truncates) an output file readable by its owner only: dumps and exports name
/// every subscriber (MAC, client id), as the lease file does.
fn create_private(path: &Path) -> std::io::Result<File> {
    use std::os::unix::fs::{OpenOptionsExt, PermissionsExt};
    let f = fs::OpenOptions::new()
        .write(true)
        .create(true)
        .truncate(true)
        .mode(0o600)
        .open(path)?;
    // An existing regular file keeps its mode through open: set it (not on a device or
    // pipe such as /dev/stdout).
    if f.metadata()?.is_file() {
        f.set_permissions(fs::Permissions::from_mode(0o600))?;
    }
    Ok(f)
}
