//! `cargo xtask ci`: everything CI checks, in order, stopping at the first failure:
//! setup, fmt, clippy, eBPF build, daemon build (object embedded), all tests
//! (namespace tests included: CI runs as root), then every fuzz target for a short time box
//! (after freeing the test outputs when the disk is short: `disk.rs`).

use std::process::Command;

use anyhow::Result;

use crate::{build, disk, ebpf, fuzz, setup, util};

#[derive(Debug, clap::Args)]
pub struct CiArgs {
    /// Skip `cargo xtask setup`.
    #[arg(long)]
    pub no_setup: bool,
    /// Seconds each fuzz target runs after the tests (0 skips fuzzing). Seven targets at 20 s
    /// plus their first build keep this step within about five minutes.
    #[arg(long, default_value_t = 20)]
    pub fuzz_seconds: u64,
}

fn cargo(args: &[&str]) -> Result<()> {
    let mut c = Command::new(util::cargo());
    c.args(args).current_dir(util::repo_root());
    util::run(&mut c)
}

pub fn ci(args: &CiArgs) -> Result<()> {
    if !args.no_setup {
        setup::setup(&setup::SetupArgs { no_apt: false })?;
    }
    cargo(&["fmt", "--all", "--check"])?;
    for manifest in ["ebpf/xdhcpd-ebpf/Cargo.toml", "fuzz/Cargo.toml"] {
        let manifest = util::repo_root().join(manifest);
        cargo(&[
            "fmt",
            "--check",
            "--manifest-path",
            &manifest.to_string_lossy(),
        ])?;
    }
    cargo(&[
        "clippy",
        "--workspace",
        "--all-targets",
        "--",
        "-D",
        "warnings",
    ])?;
    ebpf::build_ebpf(&ebpf::BuildEbpfArgs { debug: false })?;
    let daemon = build::build(&build::BuildArgs { debug_ebpf: false })?;
    // Tests find the release daemon (with the object embedded) through XDHCPD_BIN.
    let mut c = Command::new(util::cargo());
    c.args(["test", "--workspace", "--release"])
        .env("XDHCPD_BIN", &daemon)
        .current_dir(util::repo_root());
    util::run(&mut c)?;
    if args.fuzz_seconds > 0 {
        disk::reclaim_before_fuzz(&util::target_dir())?;
        fuzz::fuzz(&fuzz::FuzzArgs {
            seconds: args.fuzz_seconds,
            targets: Vec::new(),
        })?;
    }
    println!("ci: all checks passed");
    Ok(())
}
