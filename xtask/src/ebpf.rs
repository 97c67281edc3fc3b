//! `cargo xtask build-ebpf`: build the XDP program with the nightly toolchain.
use std::{path::PathBuf, process::Command};

use anyhow::{bail, Result};

use crate::util;

/// Toolchain used for the eBPF crate (needs `-Z build-std`).
pub const NIGHTLY: &str = "nightly";
/// Target triple of the XDP object.
pub const BPF_TARGET: &str = "bpfel-unknown-none";
/// Name of the eBPF crate's binary (the object file).
pub const OBJECT_NAME: &str = "xdhcpd-ebpf";

#[derive(Debug, clap::Args)]
pub struct BuildEbpfArgs {
    /// Build the dev profile instead of release.
    #[arg(long)]
    pub debug: bool,
}

/// Environment that the outer `cargo xtask` (stable) sets and that would leak into the nightly
/// build: toolchain selection, compiler overrides, and host-only flags.
const LEAKY_ENV: &[&str] = &[
    "RUSTUP_TOOLCHAIN",
    "RUSTC",
    "RUSTC_WRAPPER",
    "RUSTC_WORKSPACE_WRAPPER",
    "RUSTDOC",
    "CARGO",
    "CARGO_BUILD_TARGET",
    "CARGO_TARGET_DIR",
    "RUSTFLAGS",
    "CARGO_ENCODED_RUSTFLAGS",
];

/// Where the object of a build with `debug` lands.
pub fn object_path(debug: bool) -> PathBuf {
    util::target_dir()
        .join(BPF_TARGET)
        .join(if debug { "debug" } else { "release" })
        .join(OBJECT_NAME)
}

/// Builds the XDP object and returns its path.
pub fn build_ebpf(args: &BuildEbpfArgs) -> Result<PathBuf> {
    check_prerequisites()?;
    let crate_dir = util::repo_root().join("ebpf").join("xdhcpd-ebpf");
    let mut cmd = Command::new(util::rustup()?);
    cmd.args(["run", NIGHTLY, "cargo", "build"]);
    if !args.debug {
        cmd.arg("--release");
    }
    cmd.args(["--target", BPF_TARGET, "-Z", "build-std=core"])
        .arg("--target-dir")
        .arg(util::target_dir())
        .current_dir(&crate_dir)
        // aya-ebpf 0.3 needs a newer rustc than our nightly: let the resolver fall back.
        .env("CARGO_RESOLVER_INCOMPATIBLE_RUST_VERSIONS", "fallback");
    for var in LEAKY_ENV {
        cmd.env_remove(var);
    }
    util::run(&mut cmd)?;
    let object = object_path(args.debug);
    if !object.is_file() {
        bail!(
            "the eBPF build succeeded but {} is missing; check ebpf/xdhcpd-ebpf/.cargo/config.toml",
            object.display()
        );
    }
    println!("eBPF object: {}", object.display());
    Ok(object)
}

/// Fails early, with the fix, when the nightly toolchain, rust-src or bpf-linker is missing.
fn check_prerequisites() -> Result<()> {
    let installed = util::output(Command::new(util::rustup()?).args([
        "component",
        "list",
        "--installed",
        "--toolchain",
        NIGHTLY,
    ]))
    .map_err(|e| {
        anyhow::anyhow!("the {NIGHTLY} toolchain is not usable ({e}); run `cargo xtask setup`")
    })?;
    if !installed.lines().any(|l| l.starts_with("rust-src")) {
        bail!("rust-src is not installed for the {NIGHTLY} toolchain; run `cargo xtask setup`");
    }
    if util::which("bpf-linker").is_none() {
        bail!("bpf-linker is not on PATH; run `cargo xtask setup`");
    }
    Ok(())
}
