//! `cargo xtask ci`: everything CI checks, in order, stopping at the first failure:
//! setup, fmt, clippy, eBPF build, daemon build (object embedded), all tests
//! (namespace tests included: CI runs as root).

use std::process::Command;

use anyhow::Result;

use crate::{build, ebpf, setup, util};

#[derive(Debug, clap::Args)]
pub struct CiArgs {
    /// Skip `cargo xtask setup`.
    #[arg(long)]
    pub no_setup: bool,
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
    let ebpf_manifest = util::repo_root().join("ebpf/xdhcpd-ebpf/Cargo.toml");
    cargo(&[
        "fmt",
        "--check",
        "--manifest-path",
        &ebpf_manifest.to_string_lossy(),
    ])?;
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
    println!("ci: all checks passed");
    Ok(())
}
