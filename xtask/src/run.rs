//! `cargo xtask run -- <xdhcpd args>`: build, then replace this process with the daemon.
use std::{os::unix::process::CommandExt, process::Command};

use anyhow::{Context, Result};

use crate::build::{self, BuildArgs};

#[derive(Debug, clap::Args)]
pub struct RunArgs {
    #[command(flatten)]
    pub build: BuildArgs,
    /// Arguments for xdhcpd (after `--`).
    #[arg(last = true)]
    pub args: Vec<String>,
}

pub fn run(args: &RunArgs) -> Result<()> {
    let binary = build::build(&args.build)?;
    let mut cmd = Command::new(&binary);
    cmd.args(&args.args);
    eprintln!("+ {}", crate::util::display(&cmd));
    // exec: signals (Ctrl-C) and the exit status go straight to the daemon.
    let err = cmd.exec();
    Err(err).with_context(|| format!("could not execute {}", binary.display()))
}
