//! Packaging and the command line as an operator meets them: the systemd unit passes
//! `systemd-analyze verify`, the failover examples validate, `--version` names the commit,
//! manual pages are generated, exit codes (usage 2, configuration 2, runtime 1), a closed
//! pipe ends a tool quietly, `leases import --dry-run` writes nothing.

#[path = "common/require.rs"]
mod require;

use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};

use require::{require, Capability};

fn bin() -> &'static str {
    env!("CARGO_BIN_EXE_xdhcpd")
}

fn repo() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR"))
        .parent()
        .expect("repo root")
        .to_path_buf()
}

fn run(args: &[&str]) -> std::process::Output {
    Command::new(bin())
        .args(args)
        .stdin(Stdio::null())
        .output()
        .expect("run xdhcpd")
}

#[test]
fn packaging_systemd_unit_passes_systemd_analyze_verify() {
    if !require(&[Capability::Program("systemd-analyze")]) {
        return;
    }
    let dir = tempfile::tempdir().expect("tempdir");
    let unit = std::fs::read_to_string(repo().join("packaging/systemd/xdhcpd.service"))
        .expect("unit file");
    for want in [
        "Type=notify",
        "WatchdogSec=",
        "ExecReload=/bin/kill -HUP $MAINPID",
        "LimitMEMLOCK=infinity",
        "StateDirectory=xdhcpd",
        "RuntimeDirectory=xdhcpd",
        "CapabilityBoundingSet=",
        "AmbientCapabilities=",
        "User=xdhcpd",
        "Group=xdhcpd",
        "NoNewPrivileges=yes",
        "ProtectSystem=strict",
    ] {
        assert!(unit.contains(want), "unit lacks {want}");
    }
    // verify checks that the programs exist: point it at the binary under test.
    let unit = unit.replace("/usr/sbin/xdhcpd", bin());
    let path = dir.path().join("xdhcpd.service");
    std::fs::write(&path, unit).expect("write unit");
    // verify also looks the Documentation= pages up: the generated ones.
    let man = dir.path().join("man");
    let gen = run(&["man", man.to_str().expect("utf-8")]);
    assert!(gen.status.success());
    for (sec, page) in [("man8", "xdhcpd.8"), ("man5", "xdhcpd.toml.5")] {
        std::fs::create_dir_all(man.join(sec)).expect("mkdir");
        std::fs::rename(man.join(page), man.join(sec).join(page)).expect("mv");
    }
    let out = Command::new("systemd-analyze")
        .arg("verify")
        .arg(&path)
        .env("SYSTEMD_LOG_LEVEL", "warning")
        .env("MANPATH", &man)
        .output()
        .expect("systemd-analyze");
    let err = String::from_utf8_lossy(&out.stderr);
    // Lines about other units on this machine are not ours.
    let ours: Vec<&str> = err.lines().filter(|l| l.contains("xdhcpd")).collect();
    assert!(
        out.status.success() && ours.is_empty(),
        "systemd-analyze verify: {}\n{err}",
        out.status
    );
}

#[test]
fn packaging_failover_examples_validate() {
    for name in [
        "failover-primary.toml",
        "failover-secondary.toml",
        "relay.toml",
        "demo.toml",
    ] {
        let p = repo().join("userspace/examples").join(name);
        let out = run(&["check-config", p.to_str().expect("utf-8")]);
        assert!(
            out.status.success(),
            "{name}: {}",
            String::from_utf8_lossy(&out.stderr)
        );
        let cfg = xdhcpd_config::load(&p).expect("valid");
        if name.starts_with("failover") {
            let f = cfg.failovers.first().expect("[failover]");
            assert_eq!(f.name, "pair");
            assert!(cfg.event_log.is_some(), "{name}: shows the event log");
        } else if name == "relay.toml" {
            assert!(cfg.failovers.is_empty());
            assert_eq!(cfg.server.commit, xdhcpd_config::CommitMode::Ack);
        }
    }
    // The two sides are one relationship: roles and addresses mirrored, pools identical.
    let a = xdhcpd_config::load(&repo().join("userspace/examples/failover-primary.toml"))
        .expect("primary");
    let b = xdhcpd_config::load(&repo().join("userspace/examples/failover-secondary.toml"))
        .expect("secondary");
    let (fa, fb) = (
        a.failovers.first().expect("fa"),
        b.failovers.first().expect("fb"),
    );
    assert_eq!(fa.address, fb.peer_address);
    assert_eq!(fb.address, fa.peer_address);
    assert_ne!(fa.role, fb.role);
    assert_eq!(a.pool_specs(), b.pool_specs());
}

#[test]
fn packaging_version_names_the_commit() {
    let out = run(&["--version"]);
    assert!(out.status.success());
    let v = String::from_utf8_lossy(&out.stdout);
    let head = Command::new("git")
        .args(["rev-parse", "--short=12", "HEAD"])
        .current_dir(repo())
        .output()
        .ok()
        .filter(|o| o.status.success())
        .map(|o| String::from_utf8_lossy(&o.stdout).trim().to_string());
    assert!(v.starts_with("xdhcpd "), "{v}");
    assert!(v.contains("(commit "), "{v}");
    if let Some(h) = head {
        // Built from this checkout (build.rs reruns when HEAD moves).
        assert!(v.contains(&format!("(commit {h})")), "{v} vs HEAD {h}");
    }
}

#[test]
fn packaging_man_pages_generated_from_the_cli() {
    let dir = tempfile::tempdir().expect("tempdir");
    let out = run(&["man", dir.path().to_str().expect("utf-8")]);
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let m8 = std::fs::read_to_string(dir.path().join("xdhcpd.8")).expect("xdhcpd.8");
    assert!(
        m8.starts_with(".ie") || m8.contains(".TH xdhcpd 8"),
        "{}",
        &m8[..200.min(m8.len())]
    );
    assert!(m8.contains("log\\-format"), "global options documented");
    let run8 = std::fs::read_to_string(dir.path().join("xdhcpd-run.8")).expect("xdhcpd-run.8");
    assert!(run8.contains("allow\\-shrink"));
    let ctl8 = std::fs::read_to_string(dir.path().join("xdhcpd-ctl.8")).expect("xdhcpd-ctl.8");
    assert!(ctl8.contains("reload") && ctl8.contains("history"));
    let m5 = std::fs::read_to_string(dir.path().join("xdhcpd.toml.5")).expect("xdhcpd.toml.5");
    assert!(m5.contains(".TH XDHCPD.TOML 5"));
    assert!(m5.contains("pool\\-utilisation\\-pct"));
}

#[test]
fn packaging_exit_codes_usage_config_runtime() {
    // Usage error (clap): 2.
    assert_eq!(run(&["no-such-command"]).status.code(), Some(2));
    assert_eq!(run(&["run"]).status.code(), Some(2), "--config missing");
    // Invalid configuration: 2, with file:line:col.
    let dir = tempfile::tempdir().expect("tempdir");
    let bad = dir.path().join("bad.toml");
    std::fs::write(&bad, "[server]\ninterface = \"eth0\"\nbogus = 1\n").expect("write");
    let out = run(&["check-config", bad.to_str().expect("utf-8")]);
    assert_eq!(out.status.code(), Some(2));
    assert!(String::from_utf8_lossy(&out.stderr).contains("bad.toml:3:1"));
    let out = run(&["run", "--config", bad.to_str().expect("utf-8")]);
    assert_eq!(out.status.code(), Some(2));
    // Runtime failure: 1 (the history of a missing event log directory).
    let out = run(&[
        "ctl",
        "history",
        "--ip",
        "10.0.0.1",
        "--dir",
        dir.path().join("nope").to_str().expect("utf-8"),
    ]);
    assert_eq!(
        out.status.code(),
        Some(1),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    // Logs: no ANSI colour codes when stderr is not a terminal; JSON on request.
    let out = run(&["run", "--config", bad.to_str().expect("utf-8")]);
    assert!(
        !out.stderr.contains(&0x1b),
        "ANSI escape in {:?}",
        String::from_utf8_lossy(&out.stderr)
    );
}

#[test]
fn packaging_logs_json_and_plain_without_a_terminal() {
    // The daemon logs before it finds the interface missing: one JSON object per line.
    let dir = tempfile::tempdir().expect("tempdir");
    let cfg = dir.path().join("x.toml");
    std::fs::write(
        &cfg,
        format!(
            "[server]\ninterface = \"xd-none-{}\"\nserver-id = \"10.0.0.1\"\nlease-file = \"{}\"\n\
             [[subnet]]\ncidr = \"10.0.0.0/24\"\n[[subnet.pool]]\nrange = \"10.0.0.10-10.0.0.20\"\n",
            std::process::id() % 10_000,
            dir.path().join("l.db").display()
        ),
    )
    .expect("write");
    let out = run(&[
        "--log-format",
        "json",
        "run",
        "--config",
        cfg.to_str().expect("utf-8"),
    ]);
    assert_eq!(
        out.status.code(),
        Some(1),
        "runtime failure (no such interface)"
    );
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(!err.contains('\u{1b}'), "{err}");
    let lines: Vec<serde_json::Value> = err
        .lines()
        .map(|l| serde_json::from_str(l).unwrap_or_else(|e| panic!("not JSON ({e}): {l}")))
        .collect();
    assert!(
        lines.iter().any(|v| v["level"] == "ERROR"
            && v["fields"]["message"]
                .as_str()
                .is_some_and(|m| m.contains("xd-none-"))),
        "{err}"
    );
    // Human format without a terminal: plain text, no escape codes.
    let out = run(&["run", "--config", cfg.to_str().expect("utf-8")]);
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(err.contains("xd-none-") && !err.contains('\u{1b}'), "{err}");
}

#[test]
fn packaging_closed_pipe_ends_a_tool_quietly() {
    if !require(&[Capability::Program("bash")]) {
        return;
    }
    // A 65,534-record table: `leases dump --all` writes megabytes into a pipe `head` closed.
    let dir = tempfile::tempdir().expect("tempdir");
    let cfg = dir.path().join("x.toml");
    let leases = dir.path().join("l.db");
    std::fs::write(
        &cfg,
        format!(
            "[server]\ninterface = \"eth0\"\nserver-id = \"10.0.0.1\"\nlease-file = \"{}\"\n\
             [[subnet]]\ncidr = \"10.99.0.0/16\"\n[[subnet.pool]]\nrange = \"10.99.0.1-10.99.255.254\"\n",
            leases.display()
        ),
    )
    .expect("write");
    let c = xdhcpd_config::load(&cfg).expect("config");
    let pools: Vec<lease_store::PoolSpec> = c
        .pool_specs()
        .into_iter()
        .map(|(id, first, last)| lease_store::PoolSpec { id, first, last })
        .collect();
    drop(
        lease_store::LeaseTable::open(&leases, &pools, &lease_store::OpenOptions::default())
            .expect("table"),
    );
    let script = format!(
        "{} leases dump --all --config {} | head -n 2 >/dev/null; echo \"status=${{PIPESTATUS[0]}}\"",
        bin(),
        cfg.display()
    );
    let out = Command::new("bash")
        .arg("-c")
        .arg(&script)
        .output()
        .expect("bash");
    let err = String::from_utf8_lossy(&out.stderr);
    let so = String::from_utf8_lossy(&out.stdout);
    assert!(err.trim().is_empty(), "a closed pipe printed: {err}");
    // Ended by SIGPIPE (128 + 13), as `cat` or `grep` would be.
    assert!(so.contains("status=141"), "{so}");
}

#[test]
fn packaging_leases_import_dry_run_writes_nothing() {
    let dir = tempfile::tempdir().expect("tempdir");
    let cfg = dir.path().join("x.toml");
    let leases = dir.path().join("l.db");
    std::fs::write(
        &cfg,
        format!(
            "[server]\ninterface = \"eth0\"\nserver-id = \"10.0.0.1\"\nlease-file = \"{}\"\n\
             [[subnet]]\ncidr = \"10.99.0.0/16\"\n[[subnet.pool]]\nrange = \"10.99.0.1-10.99.0.254\"\n",
            leases.display()
        ),
    )
    .expect("write");
    let fixture = repo().join("userspace/tests/fixtures/kea-leases4.csv");
    let out = run(&[
        "leases",
        "import",
        "--config",
        cfg.to_str().expect("utf-8"),
        "--from",
        "kea",
        "--dry-run",
        "--skip-outside",
        fixture.to_str().expect("utf-8"),
    ]);
    assert!(
        !leases.exists(),
        "dry run created the lease file: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    let names: Vec<_> = std::fs::read_dir(dir.path())
        .expect("ls")
        .flatten()
        .map(|e| e.file_name())
        .collect();
    assert_eq!(names.len(), 1, "only the configuration is there: {names:?}");
}
