//! Bytes per lease at one million leases: opens a table of 1,000,000
//! addresses, binds every one of them to its own client as an Active lease
//! through the public API (`allocate`, as the engine does), and reports
//! (file size + growth of the process's memory) / leases.
//!
//! Usage: `lease_memory [FOLDER]` (default: a temporary folder under
//! `$TMPDIR` or /tmp). Prints one result line last.
//!
//! The mapped file's pages count in VmRSS too (RssFile), so "file + VmRSS
//! growth" counts the records twice; the line therefore gives both that and
//! "file + anonymous memory growth" (RssAnon: the in-memory indexes, free
//! lists and bitmaps), which is what the lease store costs.

use std::net::Ipv4Addr;
use std::process::ExitCode;
use std::time::Instant;

use lease_store::{ClientKey, LeaseState, Owner, PoolSpec};
use xdhcpd_benches::{client_mac, open_table_with, proc_status_bytes, NOW};

const LEASES: u32 = 1_000_000;

fn mem() -> Result<(u64, u64, u64), String> {
    let get = |f: &str| proc_status_bytes(f).ok_or(format!("no {f} in /proc/self/status"));
    Ok((get("VmRSS:")?, get("RssAnon:")?, get("RssFile:")?))
}

fn run() -> Result<String, String> {
    let tmp;
    let folder = match std::env::args_os().nth(1) {
        Some(p) => std::path::PathBuf::from(p),
        None => {
            tmp = tempfile::tempdir().map_err(|e| format!("temporary folder: {e}"))?;
            tmp.path().to_path_buf()
        }
    };
    let path = folder.join("lease_memory.db");
    let _ = std::fs::remove_file(&path);
    let first = Ipv4Addr::new(10, 0, 0, 0);
    let last = Ipv4Addr::from(u32::from(first) + LEASES - 1);
    let pool = PoolSpec { id: 1, first, last };

    let (rss0, anon0, file0) = mem()?;
    let t0 = Instant::now();
    let table = open_table_with(&path, &[pool])?;
    let opened = t0.elapsed();
    let (rss1, anon1, _) = mem()?;

    let t1 = Instant::now();
    for n in 0..u64::from(LEASES) {
        let mut id = [1u8; 7];
        id[1..].copy_from_slice(&client_mac(n));
        let key = ClientKey::from_client_id(&id);
        let got = table.allocate(1, 0, NOW, Owner::Primary, |l| {
            l.state = LeaseState::Active;
            l.client = key;
            l.htype = 1;
            l.hlen = 6;
            l.chaddr[..6].copy_from_slice(&client_mac(n));
            l.start = NOW;
            l.cltt = NOW;
            l.expiry = NOW + 86_400;
            l.lease_time = 86_400;
        });
        if got.is_none() {
            return Err(format!("pool ran dry after {n} leases"));
        }
    }
    let filled = t1.elapsed();
    let (rss2, anon2, file2) = mem()?;

    // Every lease must be findable by its client (the index is really built).
    let mut id = [1u8; 7];
    id[1..].copy_from_slice(&client_mac(u64::from(LEASES) - 1));
    if table.find_client(&ClientKey::from_client_id(&id)).is_none() {
        return Err("last client not found in the index".into());
    }
    let stats = table
        .pool_stats(1)
        .ok_or("pool 1 missing from the table's statistics")?;
    if stats.active != u64::from(LEASES) {
        return Err(format!("{} active leases, expected {LEASES}", stats.active));
    }

    let meta = std::fs::metadata(&path).map_err(|e| format!("stat {}: {e}", path.display()))?;
    let file_len = meta.len();
    let n = f64::from(LEASES);
    let per = |b: u64| b as f64 / n;
    eprintln!(
        "lease table {} : open {:.0?}, fill {:.0?} ({:.0} ns/lease)",
        path.display(),
        opened,
        filled,
        filled.as_nanos() as f64 / n
    );
    eprintln!(
        "  file {} B ({:.1} B/lease); VmRSS {} -> {} -> {} B; RssAnon {} -> {} -> {} B; RssFile {} -> {} B",
        file_len,
        per(file_len),
        rss0,
        rss1,
        rss2,
        anon0,
        anon1,
        anon2,
        file0,
        file2
    );
    let rss_growth = rss2.saturating_sub(rss0);
    let anon_growth = anon2.saturating_sub(anon0);
    let target = 192.0;
    let store = per(file_len + anon_growth);
    Ok(format!(
        "lease_memory: {LEASES} active leases: file {:.1} B/lease + in-memory {:.1} B/lease (RssAnon growth) = {:.1} B/lease ({}; target <= {target}); brief's formula (file + VmRSS growth, counts the mapped file twice) = {:.1} B/lease",
        per(file_len),
        per(anon_growth),
        store,
        if store <= target { "meets" } else { "MISSES" },
        per(file_len + rss_growth),
    ))
}

fn main() -> ExitCode {
    match run() {
        Ok(line) => {
            println!("{line}");
            ExitCode::SUCCESS
        }
        Err(e) => {
            eprintln!("lease_memory: {e}");
            ExitCode::FAILURE
        }
    }
}
