//! `xdhcpd leases ...` end to end, through the real binary.
//!
//! The fixtures in `tests/fixtures/` are real lease files written by ISC dhcpd
//! 4.4.3 and Kea 2.2.0 for perfdhcp and udhcpc clients
//! (`tests/fixtures/make-fixtures.sh` made them); `kea-leases6.csv` was written by
//! kea-dhcp6 2.2.0 for perfdhcp -6 (addresses and prefixes, some released;
//! `tests/fixtures/make-kea6-fixture.sh`). The tests read them with an
//! independent, minimal reader here and check that what `leases import` stored
//! (seen through `leases dump`) is what the files say.
//!
//! Root-only tests (Kea loading our export, the daemon holding the file) run
//! in their own network namespaces (see `common/require.rs` when root or Kea is missing).
//! `stats_one_million_leases_under_a_second` is `#[ignore]`d: run it with
//! `cargo test --release -p xdhcpd --test lease_tools -- --ignored --nocapture`.

#[path = "common/netns.rs"]
mod netns;

#[path = "common/require.rs"]
mod require;

use std::collections::BTreeMap;
use std::fs;
use std::net::Ipv4Addr;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Output};
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

use require::{require, Capability};
use serde_json::Value;

const BIN: &str = env!("CARGO_BIN_EXE_xdhcpd");

fn fixture(name: &str) -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR"))
        .join("tests/fixtures")
        .join(name)
}

fn now() -> u64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map(|d| d.as_secs())
        .unwrap_or(0)
}

/// A temporary directory with a configuration whose lease file lives inside it.
struct Ctx {
    dir: tempfile::TempDir,
    config: PathBuf,
}

impl Ctx {
    /// One subnet per `(cidr, pool range)`.
    fn new(subnets: &[(&str, &str)]) -> Ctx {
        let dir = tempfile::tempdir().expect("temporary directory");
        let config = dir.path().join("xdhcpd.toml");
        write_config(&config, &dir.path().join("leases.db"), subnets);
        Ctx { dir, config }
    }

    fn lease_file(&self) -> PathBuf {
        self.dir.path().join("leases.db")
    }

    fn run(&self, args: &[&str]) -> Output {
        run_with_config(&self.config, args)
    }

    /// Runs and requires exit status 0; returns stdout.
    fn ok(&self, args: &[&str]) -> String {
        let out = self.run(args);
        assert!(
            out.status.success(),
            "xdhcpd leases {args:?} failed ({}):\n{}",
            out.status,
            String::from_utf8_lossy(&out.stderr)
        );
        String::from_utf8_lossy(&out.stdout).into_owned()
    }

    /// `dump --all` as address -> record.
    fn dump_all(&self) -> BTreeMap<Ipv4Addr, Value> {
        self.ok(&["dump", "--all"])
            .lines()
            .map(|l| {
                let v: Value = serde_json::from_str(l).expect("dump line is JSON");
                let a: Ipv4Addr = v["address"]
                    .as_str()
                    .and_then(|s| s.parse().ok())
                    .expect("address");
                (a, v)
            })
            .collect()
    }
}

fn write_config(path: &Path, lease_file: &Path, subnets: &[(&str, &str)]) {
    let mut s = format!(
        "[server]\ninterface = \"lo\"\nio = \"udp\"\nserver-id = \"127.0.0.1\"\nlease-file = \"{}\"\n",
        lease_file.display()
    );
    for (cidr, range) in subnets {
        s.push_str(&format!(
            "\n[[subnet]]\ncidr = \"{cidr}\"\n\n[[subnet.pool]]\nrange = \"{range}\"\n"
        ));
    }
    fs::write(path, s).expect("write config");
}

fn run_with_config(config: &Path, args: &[&str]) -> Output {
    let (sub, rest) = args.split_first().expect("a subcommand");
    let out = Command::new(BIN)
        .args(["leases", sub, "-c"])
        .arg(config)
        .args(rest)
        .output()
        .expect("run xdhcpd");
    // A panic would exit with 101: bad input must never get there.
    assert_ne!(
        out.status.code(),
        Some(101),
        "xdhcpd panicked:\n{}",
        String::from_utf8_lossy(&out.stderr)
    );
    out
}

fn stderr(o: &Output) -> String {
    String::from_utf8_lossy(&o.stderr).into_owned()
}

// ------------------------------------------------------------ minimal readers

/// What a fixture says about one address (the last entry wins).
#[derive(Debug, Default, Clone)]
struct Expect {
    line: usize,
    state: String,
    hw: String,
    client_id: String,
    /// ISO 8601 UTC, e.g. 2026-11-22T03:10:04Z.
    expiry_iso: String,
    expiry: u64,
    valid: u64,
    subnet: String,
}

/// `lease A { ... }` blocks of an ISC file: binding state, hardware, ends.
fn isc_blocks(path: &Path) -> BTreeMap<Ipv4Addr, Expect> {
    let text = fs::read_to_string(path).expect("read ISC fixture");
    let mut out = BTreeMap::new();
    let mut cur: Option<(Ipv4Addr, Expect)> = None;
    for (i, line) in text.lines().enumerate() {
        let t = line.trim().trim_end_matches(';');
        if let Some(rest) = t.strip_prefix("lease ") {
            let a = rest
                .trim_end_matches('{')
                .trim()
                .parse()
                .expect("lease address");
            cur = Some((
                a,
                Expect {
                    line: i + 1,
                    ..Expect::default()
                },
            ));
        } else if let Some((_, e)) = cur.as_mut() {
            if let Some(s) = t.strip_prefix("binding state ") {
                e.state = s.to_string();
            } else if let Some(h) = t.strip_prefix("hardware ethernet ") {
                e.hw = h.to_string();
            } else if let Some(d) = t.strip_prefix("ends ") {
                // "0 2026/11/22 03:10:04" -> "2026-11-22T03:10:04Z"
                let f: Vec<&str> = d.split(' ').collect();
                e.expiry_iso = format!("{}T{}Z", f[1].replace('/', "-"), f[2]);
            } else if t == "}" {
                if let Some((a, e)) = cur.take() {
                    out.insert(a, e);
                }
            }
        }
    }
    out
}

/// Rows of a Kea CSV (last row per address wins).
fn kea_rows(path: &Path) -> BTreeMap<Ipv4Addr, Expect> {
    let text = fs::read_to_string(path).expect("read Kea CSV");
    let mut out = BTreeMap::new();
    for (i, line) in text.lines().enumerate().skip(1) {
        let f: Vec<&str> = line.split(',').collect();
        let a: Ipv4Addr = f[0].parse().expect("address");
        out.insert(
            a,
            Expect {
                line: i + 1,
                state: f[9].to_string(),
                hw: f[1].to_string(),
                client_id: f[2].to_string(),
                valid: f[3].parse().expect("valid_lifetime"),
                expiry: f[4].parse().expect("expire"),
                subnet: f[5].to_string(),
                ..Expect::default()
            },
        );
    }
    out
}

const NET: (&str, &str) = ("10.99.0.0/24", "10.99.0.100-10.99.0.199");

// ------------------------------------------------------------------- imports

#[test]
fn isc_fixture_import_matches_the_file() {
    let ctx = Ctx::new(&[NET]);
    let report = ctx.ok(&[
        "import",
        "--from",
        "isc",
        fixture("isc-dhcpd.leases").to_str().unwrap_or(""),
    ]);
    let want = isc_blocks(&fixture("isc-dhcpd.leases"));
    assert!(want.len() >= 10, "fixture has {} leases", want.len());
    assert!(
        report.contains(&format!(
            "{} address(es); imported {}",
            want.len(),
            want.len()
        )),
        "{report}"
    );
    let got = ctx.dump_all();
    for (a, e) in &want {
        let r = &got[a];
        assert_eq!(r["hwaddr"], e.hw.as_str(), "{a}");
        assert_eq!(r["expiry_iso"], e.expiry_iso.as_str(), "{a}");
        // dhcpd writes a released lease as `free` with its last client: kept as released.
        let state = if e.state == "free" {
            "released"
        } else {
            e.state.as_str()
        };
        assert_eq!(r["state"], state, "{a}");
    }
    let used = got.values().filter(|v| v["state"] != "free").count();
    assert_eq!(used, want.len());
    // The udhcpc client that kept its lease: uid "\001\002\000\000\252\000\001".
    let keep = &got[&Ipv4Addr::new(10, 99, 0, 120)];
    assert_eq!(keep["client_id"], "01:02:00:00:aa:00:01");
    assert_eq!(keep["state"], "active");
    assert_eq!(keep["lease_time"], 3600);
    // The one that released it (fixture: `binding state free` + tstp); dhcpd's tstp
    // (expiry told to the failover peer) is kept as tstp and potential expiry.
    let rel = &got[&Ipv4Addr::new(10, 99, 0, 121)];
    assert_eq!(rel["state"], "released");
    let text = fs::read_to_string(fixture("isc-dhcpd.leases")).expect("fixture");
    let tstp = text
        .lines()
        .rev()
        .find_map(|l| l.trim().strip_prefix("tstp 0 "))
        .map(|d| {
            format!(
                "{}Z",
                d.trim_end_matches(';').replace('/', "-").replace(' ', "T")
            )
        })
        .expect("a tstp line in the fixture");
    assert_eq!(rel["potential_expiry_iso"], tstp.as_str());
    assert_eq!(rel["tstp"], rel["potential_expiry"]);
}

#[test]
fn kea_fixture_import_matches_the_file() {
    let ctx = Ctx::new(&[NET]);
    ctx.ok(&[
        "import",
        "--from",
        "kea",
        fixture("kea-leases4.csv").to_str().unwrap_or(""),
    ]);
    let want = kea_rows(&fixture("kea-leases4.csv"));
    let got = ctx.dump_all();
    let mut deleted = 0;
    for (a, e) in &want {
        let r = &got[a];
        if e.valid == 0 {
            // Kea's record of a released (deleted) lease.
            assert_eq!(r["state"], "free", "{a}");
            deleted += 1;
            continue;
        }
        assert_eq!(r["state"], "active", "{a}");
        assert_eq!(r["hwaddr"], e.hw.as_str(), "{a}");
        assert_eq!(r["client_id"], e.client_id.as_str(), "{a}");
        assert_eq!(r["expiry"], e.expiry, "{a}");
        assert_eq!(r["cltt"], e.expiry - e.valid, "{a}");
        assert_eq!(r["lease_time"], e.valid, "{a}");
    }
    assert_eq!(deleted, 1, "the fixture has one released lease");
    let used = got.values().filter(|v| v["state"] != "free").count();
    assert_eq!(used, want.len() - deleted);
}

#[test]
fn isc_to_kea_and_back_keeps_the_bindings() {
    let a = Ctx::new(&[NET]);
    a.ok(&[
        "import",
        "--from",
        "isc",
        fixture("isc-dhcpd.leases").to_str().unwrap_or(""),
    ]);
    let csv = a.dir.path().join("export.csv");
    a.ok(&["export", "--to", "kea", csv.to_str().unwrap_or("")]);
    let text = fs::read_to_string(&csv).expect("export written");
    assert!(text.starts_with(
        "address,hwaddr,client_id,valid_lifetime,expire,subnet_id,fqdn_fwd,fqdn_rev,hostname,state,user_context\n"
    ));
    let b = Ctx::new(&[NET]);
    b.ok(&["import", "--from", "kea", csv.to_str().unwrap_or("")]);
    let (da, db) = (a.dump_all(), b.dump_all());
    assert_eq!(da.len(), db.len());
    let mut compared = 0;
    for (addr, ra) in &da {
        let rb = &db[addr];
        // Kea has no "released": a released lease goes out as expired-reclaimed (state 2).
        let sa = match ra["state"].as_str() {
            Some("released") => "expired",
            s => s.unwrap_or(""),
        };
        assert_eq!(rb["state"], sa, "{addr}");
        for k in ["hwaddr", "client_id", "expiry", "cltt", "pool"] {
            assert_eq!(ra[k], rb[k], "{addr} {k}");
        }
        compared += usize::from(sa != "free");
    }
    assert!(compared >= 10);
}

#[test]
fn kea_import_then_export_reproduces_kea_rows() {
    let ctx = Ctx::new(&[NET]);
    ctx.ok(&[
        "import",
        "--from",
        "kea",
        fixture("kea-leases4.csv").to_str().unwrap_or(""),
    ]);
    let csv = ctx.dir.path().join("out.csv");
    ctx.ok(&["export", "--to", "kea", csv.to_str().unwrap_or("")]);
    let want: BTreeMap<_, _> = kea_rows(&fixture("kea-leases4.csv"))
        .into_iter()
        .filter(|(_, e)| e.valid != 0)
        .collect();
    let got = kea_rows(&csv);
    assert_eq!(got.len(), want.len());
    for (a, w) in &want {
        let g = &got[a];
        // Everything but the host name (the table does not keep it).
        assert_eq!(
            (&g.hw, &g.client_id, g.valid, g.expiry, &g.subnet, &g.state),
            (&w.hw, &w.client_id, w.valid, w.expiry, &w.subnet, &w.state),
            "{a}"
        );
    }
}

// ------------------------------------------------------- refusals and errors

#[test]
fn import_refuses_addresses_outside_the_pools_unless_skipped() {
    // A pool that holds .100-.110 but not the udhcpc clients' .120/.121.
    let ctx = Ctx::new(&[("10.99.0.0/24", "10.99.0.100-10.99.0.110")]);
    let file = fixture("isc-dhcpd.leases");
    let f = file.to_str().unwrap_or("");
    let blocks = isc_blocks(&file);
    let out = ctx.run(&["import", "--from", "isc", f]);
    assert_eq!(out.status.code(), Some(2));
    let err = stderr(&out);
    for a in [Ipv4Addr::new(10, 99, 0, 120), Ipv4Addr::new(10, 99, 0, 121)] {
        let line = blocks[&a].line;
        assert!(
            err.contains(&format!(
                "{f}:{line}: address {a} is outside the configured pools"
            )),
            "{err}"
        );
    }
    assert!(err.contains("nothing written"), "{err}");
    // Nothing was written.
    let stats: Value = serde_json::from_str(&ctx.ok(&["stats", "--json"])).expect("json");
    assert_eq!(stats["total"]["active"], 0);
    // Skipped and reported with --skip-outside.
    let report = ctx.ok(&["import", "--from", "isc", f, "--skip-outside"]);
    assert!(
        report.contains("skipped 2 (outside the configured pools)"),
        "{report}"
    );
    assert!(
        report.contains(&format!(
            "skipped {f}:{}: 10.99.0.120",
            blocks[&Ipv4Addr::new(10, 99, 0, 120)].line
        )),
        "{report}"
    );
    let stats: Value = serde_json::from_str(&ctx.ok(&["stats", "--json"])).expect("json");
    assert_eq!(stats["total"]["active"], blocks.len() as u64 - 2);
}

#[test]
fn import_refuses_to_overwrite_a_live_lease_of_another_client() {
    let ctx = Ctx::new(&[NET]);
    let end = now() + 3600;
    let a = ctx.dir.path().join("a.leases");
    fs::write(&a, format!("lease 10.99.0.150 {{\n  starts epoch {};\n  ends epoch {end};\n  binding state active;\n  hardware ethernet 02:00:00:00:00:0a;\n}}\n", now())).expect("write");
    ctx.ok(&["import", "--from", "isc", a.to_str().unwrap_or("")]);
    let b = ctx.dir.path().join("b.leases");
    fs::write(&b, format!("lease 10.99.0.150 {{\n  ends epoch {end};\n  binding state active;\n  hardware ethernet 02:00:00:00:00:0b;\n}}\n")).expect("write");
    let out = ctx.run(&["import", "--from", "isc", b.to_str().unwrap_or("")]);
    assert_eq!(out.status.code(), Some(2), "{}", stderr(&out));
    let err = stderr(&out);
    assert!(err.contains("b.leases:1: address 10.99.0.150 has a live lease in the table (active 01:02:00:00:00:00:0a"), "{err}");
    assert!(err.contains("use --force"), "{err}");
    let who = |ctx: &Ctx| -> Value {
        serde_json::from_str(ctx.ok(&["lookup", "--ip", "10.99.0.150"]).trim()).expect("json")
    };
    assert_eq!(who(&ctx)["hwaddr"], "02:00:00:00:00:0a");
    // Re-importing the same client is no conflict (and changes nothing).
    let r = ctx.ok(&["import", "--from", "isc", a.to_str().unwrap_or("")]);
    assert!(r.contains("imported 0, unchanged 1"), "{r}");
    let r = ctx.ok(&[
        "import",
        "--from",
        "isc",
        b.to_str().unwrap_or(""),
        "--force",
    ]);
    assert!(r.contains("overwrote (--force)"), "{r}");
    assert_eq!(who(&ctx)["hwaddr"], "02:00:00:00:00:0b");
    // The client index followed: lookup by MAC finds the new client only.
    let by_mac = ctx.run(&["lookup", "--mac", "02:00:00:00:00:0a"]);
    assert_eq!(by_mac.status.code(), Some(1), "{}", stderr(&by_mac));
    assert!(by_mac.stdout.is_empty());
}

#[test]
fn malformed_files_give_positioned_errors_and_exit_2() {
    let ctx = Ctx::new(&[NET]);
    let dir = ctx.dir.path();
    // A real file cut in the middle of a lease.
    let isc = fs::read_to_string(fixture("isc-dhcpd.leases")).expect("fixture");
    let cut = dir.join("cut.leases");
    let at = isc.find("lease 10.99.0.103").expect("lease .103") + 60;
    fs::write(&cut, &isc[..at]).expect("write");
    let out = ctx.run(&["import", "--from", "isc", cut.to_str().unwrap_or("")]);
    assert_eq!(out.status.code(), Some(2));
    let line = isc[..at].lines().count();
    let err = stderr(&out);
    assert!(err.contains(&format!("cut.leases:{line}:")), "{err}");
    let decl = isc[..isc.find("lease 10.99.0.103").unwrap_or(0)]
        .lines()
        .count()
        + 1;
    assert!(
        err.contains(&format!("(in the `lease` declaration at line {decl})")),
        "{err}"
    );
    // A bad date in a real file.
    let bad = dir.join("bad.leases");
    fs::write(&bad, isc.replacen("2026/11/22", "2026/11/31", 1)).expect("write");
    let err = stderr(&ctx.run(&["import", "--from", "isc", bad.to_str().unwrap_or("")]));
    assert!(
        err.contains("bad.leases:10:12: bad date `2026/11/31`: day 31 does not exist"),
        "{err}"
    );
    // An unknown Kea state, and a truncated Kea row.
    let kea = fs::read_to_string(fixture("kea-leases4.csv")).expect("fixture");
    let k = dir.join("bad.csv");
    let mut lines: Vec<String> = kea.lines().map(String::from).collect();
    // The state column is the one before the (empty) user context at the end.
    let row = lines[3]
        .strip_suffix(",0,")
        .expect("state 0 at the end")
        .to_string();
    lines[3] = format!("{row},5,");
    fs::write(&k, lines.join("\n")).expect("write");
    let err = stderr(&ctx.run(&["import", "--from", "kea", k.to_str().unwrap_or("")]));
    assert!(
        err.contains("bad.csv:4:") && err.contains("unknown state `5`"),
        "{err}"
    );
    fs::write(&k, &kea[..kea.len() - 30]).expect("write");
    let err = stderr(&ctx.run(&["import", "--from", "kea", k.to_str().unwrap_or("")]));
    assert!(err.contains("comma-separated fields"), "{err}");
    // Nothing was imported by any of these.
    assert!(!ctx.lease_file().exists() || ctx.ok(&["dump"]).trim().is_empty());
}

#[test]
fn reading_tools_refuse_a_file_of_other_pools_and_leave_it_alone() {
    let ctx = Ctx::new(&[NET]);
    ctx.ok(&[
        "import",
        "--from",
        "kea",
        fixture("kea-leases4.csv").to_str().unwrap_or(""),
    ]);
    let before = fs::read(ctx.lease_file()).expect("lease file");
    let other = ctx.dir.path().join("other.toml");
    write_config(
        &other,
        &ctx.lease_file(),
        &[("10.99.0.0/24", "10.99.0.100-10.99.0.250")],
    );
    for sub in ["stats", "dump"] {
        let out = run_with_config(&other, &[sub]);
        assert_eq!(out.status.code(), Some(2));
        let err = stderr(&out);
        assert!(err.contains("was written for other pools than the configuration's (file: #0 10.99.0.100-10.99.0.199; configuration: #0 10.99.0.100-10.99.0.250)"), "{err}");
    }
    assert!(
        fs::read(ctx.lease_file()).expect("lease file") == before,
        "the file changed"
    );
    let missing = Ctx::new(&[NET]);
    let err = stderr(&missing.run(&["stats"]));
    assert!(err.contains("does not exist"), "{err}");
    assert!(!missing.lease_file().exists());
}

#[test]
fn lookup_by_ip_mac_and_client_id_and_dump_filters() {
    let ctx = Ctx::new(&[NET]);
    ctx.ok(&[
        "import",
        "--from",
        "isc",
        fixture("isc-dhcpd.leases").to_str().unwrap_or(""),
    ]);
    let one = |args: &[&str]| -> Vec<Value> {
        let mut a = vec!["lookup"];
        a.extend_from_slice(args);
        ctx.ok(&a)
            .lines()
            .map(|l| serde_json::from_str(l).expect("json"))
            .collect()
    };
    let r = one(&["--mac", "02:00:00:aa:00:01"]);
    assert_eq!(r.len(), 1);
    assert_eq!(r[0]["address"], "10.99.0.120");
    let r = one(&["--client-id", "01020000aa0001"]);
    assert_eq!(r[0]["address"], "10.99.0.120");
    let r = one(&["--client-id", "01:02:00:00:aa:00:02"]);
    assert_eq!(
        (r[0]["address"].as_str(), r[0]["state"].as_str()),
        (Some("10.99.0.121"), Some("released"))
    );
    let r = one(&["--ip", "10.99.0.100"]);
    assert_eq!(r[0]["hwaddr"], "00:0c:01:02:03:04");
    let out = ctx.run(&["lookup", "--mac", "02:00:00:aa:00:77"]);
    assert_eq!(out.status.code(), Some(1));
    let out = ctx.run(&["lookup", "--ip", "10.99.1.1"]);
    assert_eq!(out.status.code(), Some(2));
    assert!(stderr(&out).contains("10.99.1.1 is in no configured pool"));
    let out = ctx.run(&["lookup", "--mac", "zz"]);
    assert_eq!(out.status.code(), Some(2));
    // Dump filters and CSV.
    let csv = ctx.ok(&["dump", "--format", "csv", "--state", "released"]);
    let rows: Vec<&str> = csv.lines().collect();
    assert_eq!(rows.len(), 2, "{csv}");
    assert!(rows[0].starts_with("address,pool,state,owner,htype,hwaddr,client_id,hostname,start,start_iso,expiry,expiry_iso"));
    assert!(
        rows[1].starts_with(
            "10.99.0.121,0,released,primary,1,02:00:00:aa:00:02,01:02:00:00:aa:00:02,,"
        ),
        "{}",
        rows[1]
    );
    let all = ctx.ok(&["dump", "--all"]).lines().count();
    assert_eq!(all, 100);
    let out_file = ctx.dir.path().join("dump.jsonl");
    ctx.ok(&["dump", "--out", out_file.to_str().unwrap_or("")]);
    assert_eq!(
        fs::read_to_string(&out_file)
            .expect("dump file")
            .lines()
            .count(),
        isc_blocks(&fixture("isc-dhcpd.leases")).len()
    );
    let out = ctx.run(&["dump", "--state", "bogus"]);
    assert_eq!(out.status.code(), Some(2));
    assert!(stderr(&out).contains("unknown state `bogus`"));
    // Stats agree with the records.
    let s: Value = serde_json::from_str(&ctx.ok(&["stats", "--json", "--recount"])).expect("json");
    assert_eq!(s["pools"][0]["total"], 100);
    assert_eq!(s["pools"][0]["released"], 1);
    assert_eq!(s["pools"][0]["first"], "10.99.0.100");
}

// ---------------------------------------------------------- root: real peers

/// Kills (SIGKILL) and reaps a child on Drop.
struct Reap(Child);

impl Drop for Reap {
    fn drop(&mut self) {
        let _ = self.0.kill();
        let _ = self.0.wait();
    }
}

/// Sends one command to Kea's control socket and returns the reply.
fn kea_command(sock: &Path, cmd: &str) -> Option<Value> {
    use std::io::{Read, Write};
    let mut s = std::os::unix::net::UnixStream::connect(sock).ok()?;
    s.write_all(cmd.as_bytes()).ok()?;
    let _ = s.shutdown(std::net::Shutdown::Write);
    let mut buf = String::new();
    s.read_to_string(&mut buf).ok()?;
    serde_json::from_str(&buf).ok()
}

/// Starts kea-dhcp4 in `ns` with `csv` as its lease file; returns (assigned
/// addresses of subnet 1, the log) once it answers on its control socket.
fn kea_load(ns: &netns::Netns, dir: &Path, csv: &Path) -> (u64, String) {
    let sock = dir.join("kea.sock");
    let log = dir.join("kea.log");
    let conf = dir.join("kea.json");
    fs::write(
        &conf,
        format!(
            r#"{{ "Dhcp4": {{
  "interfaces-config": {{ "interfaces": [ ] }},
  "control-socket": {{ "socket-type": "unix", "socket-name": "{}" }},
  "lease-database": {{ "type": "memfile", "persist": true, "name": "{}", "lfc-interval": 0 }},
  "valid-lifetime": 3600,
  "subnet4": [ {{ "id": 1, "subnet": "10.99.0.0/24", "pools": [ {{ "pool": "10.99.0.100 - 10.99.0.199" }} ] }} ],
  "loggers": [ {{ "name": "kea-dhcp4", "output_options": [ {{ "output": "{}" }} ], "severity": "INFO" }} ]
}} }}"#,
            sock.display(),
            csv.display(),
            log.display()
        ),
    )
    .expect("write kea config");
    let _ = fs::remove_file(&sock);
    let _ = fs::remove_file(&log);
    let child = ns
        .command("kea-dhcp4")
        .arg("-c")
        .arg(&conf)
        // Own pid/lock files: other Kea instances on this machine must not matter.
        .env("KEA_PIDFILE_DIR", dir)
        .env("KEA_LOCKFILE_DIR", dir)
        .stdout(std::process::Stdio::null())
        .stderr(std::process::Stdio::null())
        .spawn()
        .expect("start kea-dhcp4");
    let _kea = Reap(child);
    let deadline = Instant::now() + Duration::from_secs(15);
    let assigned = loop {
        let r = kea_command(
            &sock,
            r#"{ "command": "statistic-get", "arguments": { "name": "subnet[1].assigned-addresses" } }"#,
        );
        if let Some(v) =
            r.and_then(|r| r["arguments"]["subnet[1].assigned-addresses"][0][0].as_u64())
        {
            break v;
        }
        assert!(
            Instant::now() < deadline,
            "kea-dhcp4 did not answer; log:\n{}",
            fs::read_to_string(&log).unwrap_or_default()
        );
        std::thread::sleep(Duration::from_millis(100));
    };
    (assigned, fs::read_to_string(&log).unwrap_or_default())
}

#[test]
fn kea_2_2_loads_the_exported_csv() {
    if !require(&[
        Capability::Root,
        Capability::Program("ip"),
        Capability::Program("kea-dhcp4"),
    ]) {
        return;
    }
    let ctx = Ctx::new(&[NET]);
    ctx.ok(&[
        "import",
        "--from",
        "isc",
        fixture("isc-dhcpd.leases").to_str().unwrap_or(""),
    ]);
    // Add the states Kea knows besides "default": a declined and an expired lease,
    // and a lease without client-id.
    let extra = ctx.dir.path().join("extra.csv");
    let t = now();
    fs::write(
        &extra,
        format!(
            "address,hwaddr,client_id,valid_lifetime,expire,subnet_id,fqdn_fwd,fqdn_rev,hostname,state,user_context\n\
             10.99.0.150,,,3600,{e},1,0,0,,1,\n\
             10.99.0.151,02:00:00:00:01:51,,3600,{e},1,0,0,,2,\n\
             10.99.0.152,02:00:00:00:01:52,,3600,{e},1,0,0,,0,\n",
            e = t + 3600
        ),
    )
    .expect("write");
    ctx.ok(&["import", "--from", "kea", extra.to_str().unwrap_or("")]);
    let csv = ctx.dir.path().join("kea-leases4.csv");
    let out = ctx.run(&["export", "--to", "kea", csv.to_str().unwrap_or("")]);
    assert!(out.status.success(), "{}", stderr(&out));
    let rows = fs::read_to_string(&csv).expect("csv").lines().count() - 1;
    // 12 from ISC (11 active + 1 released -> expired-reclaimed) + 3.
    assert_eq!(rows, 15);
    let ns = netns::Netns::new("ltk").expect("netns");
    // Kea counts declined leases as assigned, expired-reclaimed ones not.
    let (assigned, log) = kea_load(&ns, ctx.dir.path(), &csv);
    assert!(log.contains("DHCPSRV_MEMFILE_LEASE_FILE_LOAD"), "{log}");
    assert!(
        !log.contains("ROW_ERROR") && !log.contains(" ERROR "),
        "Kea rejected rows:\n{log}"
    );
    assert_eq!(assigned, 13, "log:\n{log}");
    // The check above can fail: a damaged row is reported by Kea.
    let bad = ctx.dir.path().join("bad.csv");
    let text = fs::read_to_string(&csv).expect("csv");
    fs::write(
        &bad,
        format!("{text}10.99.0.160,02:00:00:00:01:60,,3600,17x9,1,0,0,,0,\n"),
    )
    .expect("write");
    let (assigned, log) = kea_load(&ns, ctx.dir.path(), &bad);
    assert!(
        log.contains("DHCPSRV_MEMFILE_LEASE_LOAD_ROW_ERROR"),
        "{log}"
    );
    assert_eq!(assigned, 13);
}

#[test]
fn tools_name_the_running_daemon_holding_the_file() {
    if !require(&[Capability::Root, Capability::Program("ip")]) {
        return;
    }
    let ctx = Ctx::new(&[NET]);
    ctx.ok(&[
        "import",
        "--from",
        "kea",
        fixture("kea-leases4.csv").to_str().unwrap_or(""),
    ]);
    // What the tools say with the lock, to compare with what they say beside the daemon.
    let locked_stats = ctx.ok(&["stats", "--json"]);
    let locked_dump = ctx.ok(&["dump"]);
    let ns = netns::Netns::new("ltd").expect("netns");
    let mut child = ns
        .command(BIN)
        .args(["run", "-c"])
        .arg(&ctx.config)
        .args([
            "--io",
            "udp",
            "--interface",
            "lo",
            "--stats-interval",
            "0",
            "--run-for",
            "60",
        ])
        .env("RUST_LOG", "info")
        .stdout(std::process::Stdio::piped())
        .stderr(std::process::Stdio::piped())
        .spawn()
        .expect("start xdhcpd");
    // `ip netns exec` execs the program: the child's pid is the daemon's.
    let pid = child.id();
    // Wait for the daemon's "lease file ... opened" line before touching the file
    // (a tool holding the lock while the daemon starts would make the daemon fail).
    let (tx, rx) = std::sync::mpsc::channel::<String>();
    let pipes: [Option<Box<dyn std::io::Read + Send>>; 2] = [
        child
            .stdout
            .take()
            .map(|p| Box::new(p) as Box<dyn std::io::Read + Send>),
        child
            .stderr
            .take()
            .map(|p| Box::new(p) as Box<dyn std::io::Read + Send>),
    ];
    for pipe in pipes.into_iter().flatten() {
        let tx = tx.clone();
        std::thread::spawn(move || {
            use std::io::BufRead;
            for line in std::io::BufReader::new(pipe).lines().map_while(Result::ok) {
                let _ = tx.send(line);
            }
        });
    }
    let _daemon = Reap(child);
    let mut log = String::new();
    let deadline = Instant::now() + Duration::from_secs(20);
    loop {
        match rx.recv_timeout(deadline.saturating_duration_since(Instant::now())) {
            Ok(line) => {
                log.push_str(&line);
                log.push('\n');
                if line.contains("opened in") {
                    break;
                }
            }
            Err(_) => panic!("xdhcpd did not open its lease file:\n{log}"),
        }
    }
    // The reading tools work beside the daemon: read-only, without the lock.
    let out = ctx.run(&["stats", "--json"]);
    assert_eq!(out.status.code(), Some(0), "{}", stderr(&out));
    assert!(
        stderr(&out).contains("held by a running daemon"),
        "{}",
        stderr(&out)
    );
    let v: serde_json::Value = serde_json::from_slice(&out.stdout).expect("stats JSON");
    let want: serde_json::Value = serde_json::from_str(&locked_stats).expect("stats JSON");
    // The daemon's sweeper may expire imported leases meanwhile; used vs free stays.
    assert_eq!(v["total"]["total"], want["total"]["total"], "{v} vs {want}");
    assert_eq!(v["total"]["free"], want["total"]["free"], "{v} vs {want}");
    assert!(
        want["total"]["free"].as_u64() < want["total"]["total"].as_u64(),
        "{want}"
    );
    let out = ctx.run(&["lookup", "--ip", "10.99.0.100"]);
    assert_eq!(out.status.code(), Some(0), "{}", stderr(&out));
    assert!(
        String::from_utf8_lossy(&out.stdout).contains("\"address\":\"10.99.0.100\""),
        "{}",
        String::from_utf8_lossy(&out.stdout)
    );
    let out = ctx.run(&["dump"]);
    assert_eq!(out.status.code(), Some(0), "{}", stderr(&out));
    assert_eq!(
        String::from_utf8_lossy(&out.stdout).lines().count(),
        locked_dump.lines().count(),
        "records dumped beside the daemon vs with the lock"
    );
    // --recount needs the daemon's counters: refused, naming the daemon.
    let out = ctx.run(&["stats", "--recount"]);
    assert_eq!(out.status.code(), Some(2), "{}", stderr(&out));
    let err = stderr(&out);
    assert!(
        err.contains(&format!(
            "lease file {} is in use by a running xdhcpd (pid {pid})",
            ctx.lease_file().display()
        )),
        "{err}"
    );
    let out = ctx.run(&[
        "import",
        "--from",
        "kea",
        fixture("kea-leases4.csv").to_str().unwrap_or(""),
    ]);
    assert_eq!(out.status.code(), Some(1));
    assert!(stderr(&out).contains("in use by a running xdhcpd"));
}

// ------------------------------------------------------------------- scale

#[test]
#[ignore = "1M-record timing; run with --release -- --ignored --nocapture"]
fn stats_one_million_leases_under_a_second() {
    use lease_store::{ClientKey, LeaseState, LeaseTable, OpenOptions, PoolSpec};
    let dir = tempfile::tempdir().expect("tempdir");
    let lf = dir.path().join("big.db");
    let config = dir.path().join("big.toml");
    // 1,048,576 addresses in one pool.
    write_config(&config, &lf, &[("10.0.0.0/10", "10.16.0.1-10.32.0.0")]);
    let pools = [PoolSpec {
        id: 0,
        first: Ipv4Addr::new(10, 16, 0, 1),
        last: Ipv4Addr::new(10, 32, 0, 0),
    }];
    let t0 = Instant::now();
    {
        let (t, _) = LeaseTable::open(&lf, &pools, &OpenOptions::default()).expect("create");
        let end = now() as u32 + 3600;
        // 60% active, 10% each of expired, released, declined; the rest free.
        for i in 0..t.len() {
            let state = match i % 10 {
                0..=5 => LeaseState::Active,
                6 => LeaseState::Expired,
                7 => LeaseState::Released,
                8 => LeaseState::Declined,
                _ => continue,
            };
            let Some(slot) = t.slot(i) else { continue };
            t.update(slot, |l| {
                l.state = state;
                if state != LeaseState::Declined {
                    let mac = [
                        2,
                        0,
                        (i >> 24) as u8,
                        (i >> 16) as u8,
                        (i >> 8) as u8,
                        i as u8,
                    ];
                    l.htype = 1;
                    l.hlen = 6;
                    l.chaddr[..6].copy_from_slice(&mac);
                    l.client = ClientKey::from_hw(1, &mac);
                }
                l.expiry = end;
            });
        }
        t.flush().expect("flush");
    }
    eprintln!("built 1,048,576 records in {:?}", t0.elapsed());
    let time = |args: &[&str]| {
        let t = Instant::now();
        let out = run_with_config(&config, args);
        let el = t.elapsed();
        assert!(out.status.success(), "{}", stderr(&out));
        (el, String::from_utf8_lossy(&out.stdout).into_owned())
    };
    let _ = time(&["stats"]); // warm the page cache, as on a server that runs
    let mut best = Duration::MAX;
    for _ in 0..3 {
        let (el, out) = time(&["stats", "--json"]);
        best = best.min(el);
        let v: Value = serde_json::from_str(&out).expect("json");
        assert_eq!(v["total"]["total"], 1_048_576);
        assert_eq!(v["total"]["active"], 629_148);
    }
    let (rc, _) = time(&["stats", "--recount"]);
    let (mac, found) = time(&["lookup", "--mac", "02:00:00:01:00:00"]);
    assert!(found.contains("\"10.17.0.1\""), "{found}");
    let (ip, _) = time(&["lookup", "--ip", "10.20.0.1"]);
    let t = Instant::now();
    let out = run_with_config(
        &config,
        &[
            "dump",
            "--out",
            dir.path().join("d.jsonl").to_str().unwrap_or(""),
        ],
    );
    assert!(out.status.success());
    let dump = t.elapsed();
    eprintln!(
        "1M leases: stats {best:?} (whole command: open + counters), stats --recount {rc:?}, \
         lookup --ip {ip:?}, lookup --mac (scan) {mac:?}, dump of 943,719 records {dump:?}"
    );
    assert!(best < Duration::from_secs(1), "stats took {best:?}");
}

// ------------------------------------------------------- least privilege

/// The lease file an import creates and the files `dump --out` and `export` write name every
/// subscriber (MAC, client id): readable by their owner only.
#[test]
fn least_privilege_lease_file_and_tool_outputs_are_0600() {
    use std::os::unix::fs::PermissionsExt;
    let mode = |p: &Path| {
        fs::metadata(p)
            .map(|m| m.permissions().mode() & 0o777)
            .unwrap_or_else(|e| panic!("{}: {e}", p.display()))
    };
    let ctx = Ctx::new(&[NET]);
    ctx.ok(&[
        "import",
        "--from",
        "kea",
        fixture("kea-leases4.csv").to_str().unwrap_or(""),
    ]);
    let csv = ctx.dir.path().join("out.csv");
    ctx.ok(&["export", "--to", "kea", csv.to_str().unwrap_or("")]);
    let dump = ctx.dir.path().join("dump.jsonl");
    ctx.ok(&["dump", "--out", dump.to_str().unwrap_or("")]);
    for p in [ctx.lease_file(), csv, dump] {
        assert_eq!(mode(&p), 0o600, "{}", p.display());
    }
}

// ---------------------------------------------------------- Kea lease6 (DHCPv6)

/// A configuration with the fixture's DHCPv6 link (fd99::/64, /56 prefixes from
/// fd99:100::/40) and the v6 binding file inside `dir`.
fn ctx6() -> (tempfile::TempDir, PathBuf, PathBuf) {
    let dir = tempfile::tempdir().expect("temporary directory");
    let config = dir.path().join("xdhcpd.toml");
    let b6 = dir.path().join("bindings6.db");
    fs::write(
        &config,
        format!(
            "[server]\ninterface = \"lo\"\nio = \"udp\"\nserver-id = \"127.0.0.1\"\nlease-file = \"{}\"\n\
             [[subnet]]\ncidr = \"10.99.0.0/24\"\n[[subnet.pool]]\nrange = \"10.99.0.100-10.99.0.199\"\n\
             [dhcpv6]\nlease-file = \"{}\"\ncapacity = 1024\n\
             [[subnet6]]\nprefix = \"fd99::/64\"\n[[subnet6.pool]]\nrange = \"fd99::100-fd99::1ff\"\n\
             [[subnet6.pd-pool]]\nprefix = \"fd99:100::/40\"\ndelegated-length = 56\n",
            dir.path().join("leases.db").display(),
            b6.display()
        ),
    )
    .expect("write config");
    (dir, config, b6)
}

/// The fixture's rows read independently: last row per (type, address) -> (duid, iaid,
/// valid_lifetime, expire).
fn kea6_rows(path: &Path) -> BTreeMap<(String, String), (String, u64, u64, u64)> {
    let text = fs::read_to_string(path).expect("fixture");
    let mut out = BTreeMap::new();
    for l in text.lines().skip(1) {
        let f: Vec<&str> = l.split(',').collect();
        let kind = if f[6] == "0" { "ia_na" } else { "ia_pd" };
        let addr = if kind == "ia_na" {
            f[0].to_string()
        } else {
            format!("{}/{}", f[0], f[8])
        };
        let n = |i: usize| f[i].parse::<u64>().expect("number");
        out.insert(
            (kind.to_string(), addr),
            (f[1].to_string(), n(7), n(2), n(3)),
        );
    }
    out
}

#[test]
fn kea_lease6_fixture_import_matches_the_file_and_dump6_shows_it() {
    let (dir, config, b6) = ctx6();
    let src = fixture("kea-leases6.csv");
    let src = src.to_str().unwrap_or("");
    // A dry run reports and writes nothing.
    let out = run_with_config(
        &config,
        &["import", "--format", "kea-lease6", "--dry-run", src],
    );
    assert!(out.status.success(), "{}", stderr(&out));
    let report = String::from_utf8_lossy(&out.stdout).into_owned();
    assert!(
        report.contains("46 address(es)/prefix(es); would import 38,"),
        "{report}"
    );
    assert!(report.contains("8 deleted (valid_lifetime 0)"), "{report}");
    assert!(!b6.exists(), "a dry run created the v6 binding file");
    let out = run_with_config(&config, &["import", "--from", "kea-lease6", src]);
    assert!(out.status.success(), "{}", stderr(&out));
    let report = String::from_utf8_lossy(&out.stdout).into_owned();
    assert!(report.contains("; imported 38,"), "{report}");
    // `leases dump6` shows exactly the file's live rows.
    let out = run_with_config(&config, &["dump6"]);
    assert!(out.status.success(), "{}", stderr(&out));
    let got: BTreeMap<(String, String), Value> = String::from_utf8_lossy(&out.stdout)
        .lines()
        .map(|l| {
            let v: Value = serde_json::from_str(l).expect("dump6 line is JSON");
            let k = (
                v["type"].as_str().unwrap_or("").to_string(),
                v["address"].as_str().unwrap_or("").to_string(),
            );
            (k, v)
        })
        .collect();
    let want = kea6_rows(&fixture("kea-leases6.csv"));
    let t = now();
    let mut live = 0;
    for (k, (duid, iaid, valid, expire)) in &want {
        if *valid == 0 {
            assert!(!got.contains_key(k), "deleted {k:?} imported");
            continue;
        }
        live += 1;
        let r = got.get(k).unwrap_or_else(|| panic!("{k:?} not in dump6"));
        assert_eq!(r["duid"], duid.as_str(), "{k:?}");
        assert_eq!(r["iaid"], *iaid, "{k:?}");
        assert_eq!(r["valid"], *valid, "{k:?}");
        assert_eq!(r["preferred"], 3000, "{k:?}");
        assert_eq!(r["expiry"], *expire, "{k:?}");
        assert_eq!(r["cltt"], *expire - *valid, "{k:?}");
        let state = if *expire > t { "active" } else { "expired" };
        assert_eq!(r["state"], state, "{k:?}");
    }
    assert_eq!((live, got.len()), (38, 38));
    // Importing again changes nothing.
    let out = run_with_config(&config, &["import", "--from", "kea-lease6", src]);
    let report = String::from_utf8_lossy(&out.stdout).into_owned();
    assert!(report.contains("; imported 0, unchanged 38"), "{report}");
    // A damaged row: positioned error, exit 2, nothing written.
    let bad = dir.path().join("bad6.csv");
    let text = fs::read_to_string(fixture("kea-leases6.csv")).expect("fixture");
    let lines = text.lines().count();
    fs::write(
        &bad,
        format!("{text}fd99::1ff,00:01,4000,17x9,1,3000,0,1,128,0,0,,,0,,,\n"),
    )
    .expect("write");
    let out = run_with_config(
        &config,
        &["import", "--from", "kea-lease6", bad.to_str().unwrap_or("")],
    );
    assert_eq!(out.status.code(), Some(2));
    let err = stderr(&out);
    assert!(
        err.contains(&format!(
            "bad6.csv:{}:22: expire: expected a number",
            lines + 1
        )),
        "{err}"
    );
}
