//! `cargo xtask <command>`: build and run entry points of xdhcpd.
//!
//! One file per subcommand; `util` holds the shared command helpers.
mod bench;
mod build;
mod ci;
mod demo;
mod demo_cluster;
mod disk;
mod ebpf;
mod fuzz;
mod netns;
mod run;
mod setup;
mod util;

use anyhow::Result;
use clap::{Parser, Subcommand};

#[derive(Debug, Parser)]
#[command(
    name = "cargo xtask",
    bin_name = "cargo xtask",
    about = "Build, set up and run xdhcpd"
)]
struct Cli {
    #[command(subcommand)]
    command: Cmd,
}

#[derive(Debug, Subcommand)]
enum Cmd {
    /// Install the nightly rust-src, bpf-linker and the Debian packages tests and demo use.
    Setup(setup::SetupArgs),
    /// Build the XDP program (nightly, bpfel-unknown-none) and print the object path.
    BuildEbpf(ebpf::BuildEbpfArgs),
    /// Build the XDP program, then the daemon (release) with the object embedded.
    Build(build::BuildArgs),
    /// Build, then run target/release/xdhcpd with the arguments after `--`.
    Run(run::RunArgs),
    /// The main job on the embedded default: xdhcpd (XDP) in a namespace, a real client and perfdhcp.
    Demo(demo::DemoArgs),
    /// End-to-end benchmark: raw ceiling, xdhcpd (XDP, UDP), Kea and ISC dhcpd over one veth pair.
    Bench(bench::BenchArgs),
    /// Everything CI checks: setup, fmt, clippy, eBPF build, all tests (namespace tests too),
    /// then every fuzz target for a short time box.
    Ci(ci::CiArgs),
    /// Run the cargo-fuzz targets (fuzz/) for N seconds each; fails on a crash.
    Fuzz(fuzz::FuzzArgs),
}

fn main() -> Result<()> {
    // `cargo run` (the `cargo xtask` alias) sets the package variables of the xtask binary;
    // the cargo builds started from here would inherit them, and build scripts that watch
    // them (ring's `rerun-if-env-changed=CARGO_PKG_NAME`, `CARGO_MANIFEST_DIR`, ...) would
    // run again, rebuilding ring and the daemon at every switch between `cargo xtask` and a
    // plain `cargo test` (the cluster demo's build step took 10-16 minutes for that).
    let inherited: Vec<_> = std::env::vars_os()
        .map(|(k, _)| k)
        .filter(|k| {
            k.to_str().is_some_and(|k| {
                k.starts_with("CARGO_PKG_")
                    || k.starts_with("CARGO_MANIFEST_")
                    || matches!(
                        k,
                        "CARGO_CRATE_NAME" | "CARGO_BIN_NAME" | "CARGO_PRIMARY_PACKAGE"
                    )
            })
        })
        .collect();
    for k in inherited {
        // Single-threaded here: nothing else reads the environment yet.
        std::env::remove_var(k);
    }
    match Cli::parse().command {
        Cmd::Setup(args) => setup::setup(&args),
        Cmd::BuildEbpf(args) => ebpf::build_ebpf(&args).map(drop),
        Cmd::Build(args) => build::build(&args).map(drop),
        Cmd::Run(args) => run::run(&args),
        Cmd::Demo(args) => demo::demo(&args),
        Cmd::Bench(args) => bench::bench(&args),
        Cmd::Ci(args) => ci::ci(&args),
        Cmd::Fuzz(args) => fuzz::fuzz(&args),
    }
}
