//! `cargo xtask build`: the XDP object, then the daemon with that object embedded.
use std::{path::PathBuf, process::Command};

use anyhow::{bail, Result};

use crate::{ebpf, util};

#[derive(Debug, clap::Args)]
pub struct BuildArgs {
    /// Build the eBPF object with the dev profile (the daemon is always built in release).
    #[arg(long)]
    pub debug_ebpf: bool,
}

/// Variable read by `userspace/io/build.rs` (the XDP loader lives in `xdhcpd-io`): path of the object to embed.
const EMBED_VAR: &str = "XDHCPD_EBPF_OBJECT";

/// Builds everything and returns the path of the daemon binary.
pub fn build(args: &BuildArgs) -> Result<PathBuf> {
    let object = ebpf::build_ebpf(&ebpf::BuildEbpfArgs {
        debug: args.debug_ebpf,
    })?;
    let mut cmd = Command::new(util::cargo());
    cmd.args(["build", "--release", "-p", "xdhcpd"])
        .env(EMBED_VAR, &object)
        .current_dir(util::repo_root());
    util::run(&mut cmd)?;
    let binary = daemon_path();
    if !binary.is_file() {
        bail!("cargo build succeeded but {} is missing", binary.display());
    }
    println!(
        "xdhcpd: {} (eBPF object {} embedded)",
        binary.display(),
        object.display()
    );
    Ok(binary)
}

/// Builds the tools (`xdhcp-loadgen`, `xdhcp-echo`, ...) in release with the same embed
/// variable as [`build`]: the tools share `xdhcpd-io` with the daemon, and a different value
/// of the variable would rebuild that library, and then the daemon, at every switch between
/// the two builds. Returns the `xdhcp-loadgen` path.
pub fn build_tools() -> Result<PathBuf> {
    util::run(
        Command::new(util::cargo())
            .args(["build", "--release", "-p", "xdhcpd-tools", "--bins"])
            .env(EMBED_VAR, ebpf::object_path(false))
            .current_dir(util::repo_root()),
    )?;
    let loadgen = util::target_dir().join("release").join("xdhcp-loadgen");
    if !loadgen.is_file() {
        bail!("cargo build succeeded but {} is missing", loadgen.display());
    }
    Ok(loadgen)
}

/// Where `cargo build --release -p xdhcpd` puts the daemon.
pub fn daemon_path() -> PathBuf {
    util::target_dir().join("release").join("xdhcpd")
}
