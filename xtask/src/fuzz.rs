//! `cargo xtask fuzz`: runs the cargo-fuzz targets in `fuzz/` (nightly, AddressSanitizer,
//! debug assertions on), each for a time box, and fails on the first crash.
//!
//! Each target starts from its committed seeds (`fuzz/corpus/<target>/`, read only) and a
//! working corpus under `target/fuzz-corpus/<target>/` that grows across runs; crashes land
//! in `fuzz/artifacts/<target>/` (cargo-fuzz's place) and the run stops there. A summary
//! line per target gives the executions, executions per second and the corpus size.
use std::{
    fs,
    path::{Path, PathBuf},
    process::Command,
    time::Instant,
};

use anyhow::{bail, Context, Result};

use crate::{ebpf::NIGHTLY, util};

/// Every fuzz target, in the order they run (`fuzz/fuzz_targets/<name>.rs`).
pub const TARGETS: &[&str] = &[
    "dhcpv4_wire",
    "frame_parse",
    "frame_differential",
    "dhcpv4_engine",
    "dhcpv6_engine",
    "failover_engine",
    "lease_file_open",
    "config_parse",
    "control_request",
    "bulk_leasequery",
];

#[derive(Debug, clap::Args)]
pub struct FuzzArgs {
    /// Seconds per target.
    #[arg(long, default_value_t = 60)]
    pub seconds: u64,
    /// Run only this target (repeatable); default: all.
    #[arg(long = "target", value_name = "T")]
    pub targets: Vec<String>,
}

/// What one target's run did.
struct Outcome {
    target: String,
    /// Wall time of the step, the fuzz target's build included.
    secs: f64,
    execs: Option<u64>,
    /// libFuzzer's own average over its run.
    execs_per_sec: Option<u64>,
    corpus: Option<u64>,
}

pub fn fuzz(args: &FuzzArgs) -> Result<()> {
    check_cargo_fuzz()?;
    let targets: Vec<String> = if args.targets.is_empty() {
        TARGETS.iter().map(|t| t.to_string()).collect()
    } else {
        for t in &args.targets {
            if !TARGETS.contains(&t.as_str()) {
                bail!(
                    "unknown fuzz target {t:?}; the targets are: {}",
                    TARGETS.join(", ")
                );
            }
        }
        args.targets.clone()
    };
    let mut outcomes = Vec::new();
    for t in &targets {
        outcomes.push(run_target(t, args.seconds)?);
    }
    println!("fuzz: no crash in {} target(s):", outcomes.len());
    let shown = |v: Option<u64>| v.map_or("?".into(), |v| v.to_string());
    for o in &outcomes {
        println!(
            "  {:<16} {:>10} execs  {:>8} exec/s  corpus {:>6}  ({:.0} s with the build)",
            o.target,
            shown(o.execs),
            shown(o.execs_per_sec),
            shown(o.corpus),
            o.secs,
        );
    }
    Ok(())
}

/// `cargo xtask setup` installs it; fail early with that advice otherwise.
fn check_cargo_fuzz() -> Result<()> {
    let ok = util::succeeds(Command::new(util::rustup()?).args([
        "run",
        NIGHTLY,
        "cargo",
        "fuzz",
        "--version",
    ]));
    if !ok {
        bail!("cargo-fuzz is not installed (or the {NIGHTLY} toolchain is missing); run `cargo xtask setup`");
    }
    Ok(())
}

fn fuzz_dir() -> PathBuf {
    util::repo_root().join("fuzz")
}

fn run_target(target: &str, seconds: u64) -> Result<Outcome> {
    let seeds = fuzz_dir().join("corpus").join(target);
    let work = util::target_dir().join("fuzz-corpus").join(target);
    fs::create_dir_all(&work).with_context(|| format!("creating {}", work.display()))?;
    let log_dir = util::target_dir().join("fuzz-logs");
    fs::create_dir_all(&log_dir).with_context(|| format!("creating {}", log_dir.display()))?;
    let log = log_dir.join(format!("{target}.log"));
    let mut cmd = Command::new(util::rustup()?);
    cmd.args(["run", NIGHTLY, "cargo", "fuzz", "run", target])
        .arg(&work);
    if seeds.is_dir() {
        cmd.arg(&seeds);
    }
    cmd.arg("--")
        .arg(format!("-max_total_time={seconds}"))
        .args(length_args(target))
        // An input that takes over 10 s is a finding too (a hang), not only a crash.
        .arg("-timeout=10")
        .arg("-print_final_stats=1")
        .current_dir(fuzz_dir());
    if spawns_threads(target) {
        // `LeaseTable::open` scans on scoped threads; LeakSanitizer reports the 32-byte
        // thread-local destructor record of a thread that is still exiting (glibc's
        // `__cxa_thread_atexit_impl`), not reproducible on the same input.
        cmd.arg("-detect_leaks=0");
    }
    for var in [
        "RUSTUP_TOOLCHAIN",
        "RUSTC",
        "CARGO",
        "RUSTFLAGS",
        "CARGO_ENCODED_RUSTFLAGS",
        "CARGO_TARGET_DIR",
    ] {
        cmd.env_remove(var);
    }
    // The C parts (mimalloc, ASan objects) write temporaries under TMPDIR: keep them on the
    // target's filesystem, not on a small /tmp.
    let tmp = util::target_dir().join("fuzz-tmp");
    fs::create_dir_all(&tmp).with_context(|| format!("creating {}", tmp.display()))?;
    cmd.env("TMPDIR", &tmp);
    let line = util::display(&cmd);
    eprintln!("+ {line}  (log: {})", log.display());
    let out = fs::File::create(&log).with_context(|| format!("creating {}", log.display()))?;
    let err = out.try_clone()?;
    let started = Instant::now();
    let status = cmd
        .stdout(out)
        .stderr(err)
        .status()
        .with_context(|| format!("could not start `{line}`"))?;
    let secs = started.elapsed().as_secs_f64();
    let text = fs::read_to_string(&log).unwrap_or_default();
    if !status.success() {
        let tail: Vec<&str> = text.lines().rev().take(60).collect();
        let tail: Vec<&str> = tail.into_iter().rev().collect();
        bail!(
            "fuzz target {target} failed ({status}); the input is under {}; last lines of {}:\n{}",
            fuzz_dir().join("artifacts").join(target).display(),
            log.display(),
            tail.join("\n")
        );
    }
    Ok(Outcome {
        target: target.to_owned(),
        secs,
        execs: final_stat(&text, "stat::number_of_executed_units:"),
        execs_per_sec: final_stat(&text, "stat::average_exec_per_sec:"),
        corpus: count_files(&work),
    })
}

/// libFuzzer length options per target. The sequence targets get long inputs from the start
/// (`-len_control=0`): a longer input is a longer sequence of messages, which is where their
/// bugs are. A lease-file input is only the edits (the valid file is built in); TOML gets
/// room for a whole configuration.
fn length_args(target: &str) -> Vec<String> {
    match target {
        "dhcpv4_engine" | "failover_engine" => {
            vec!["-max_len=8192".into(), "-len_control=0".into()]
        }
        "config_parse" => vec!["-max_len=16384".into()],
        "lease_file_open" => vec!["-max_len=1024".into()],
        _ => vec!["-max_len=4096".into()],
    }
}

/// Targets that open a lease table (which spawns threads) on every input.
fn spawns_threads(target: &str) -> bool {
    matches!(
        target,
        "lease_file_open" | "dhcpv4_engine" | "bulk_leasequery"
    )
}

/// A number after `key` in libFuzzer's output (the last occurrence).
fn final_stat(text: &str, key: &str) -> Option<u64> {
    text.lines().rev().find_map(|l| {
        let rest = l.trim().strip_prefix(key)?;
        rest.split_whitespace().next()?.parse().ok()
    })
}

fn count_files(dir: &Path) -> Option<u64> {
    Some(fs::read_dir(dir).ok()?.filter_map(|e| e.ok()).count() as u64)
}
